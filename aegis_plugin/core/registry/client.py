"""Blobs, manifests and tags of one registry (OCI distribution spec v1.1, the endpoints every registry has)."""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from typing import BinaryIO, List, Optional, Tuple, Union

from aegis_plugin.core.registry import auth
from aegis_plugin.core.registry.reference import Reference
from aegis_plugin.core.registry.transport import RegistryError, Transport

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


UPLOAD_ATTEMPTS = 3
RETRY_DELAY = 0.5  # seconds before the first retry; doubled each time


def _scope(repository: str, actions: str = "pull,push") -> str:
    return f"repository:{repository}:{actions}"


@dataclass
class Registry:
    transport: Transport

    @classmethod
    def for_reference(cls, ref: Reference, allow_plain_http: bool = False) -> "Registry":
        """TLS, unless the registry is on loopback (or plain HTTP is explicitly allowed). The credentials are
        those bound to this registry's host (see auth.py)."""
        return cls(Transport(ref.registry, auth.lookup(ref.registry), plain_http=ref.is_loopback or allow_plain_http,
                             token_hosts=auth.token_hosts()))

    # Blobs

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", _scope(repository), expect=(200, 404)
        )
        return response.status == 200

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount (no bytes sent); False when the registry wants an upload instead."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_repository})
        scope = f"{_scope(repository)} {_scope(source_repository, 'pull')}"
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}", scope, body=b"", expect=(201, 202)
        )
        if response.status == 202:  # an upload session was opened instead; abandon it
            location = response.headers.get("Location")
            if location:
                self.transport.request("DELETE", location, _scope(repository), expect=(204, 404, 405))
        return response.status == 201

    def upload_blob(self, repository: str, digest: str, content: Union[bytes, str]) -> int:
        """POST an upload session, then PUT the whole blob (registries do not honour a single POST with
        `?digest=`). `content` is bytes or a file path. A failed upload starts over in a new session, up to
        `UPLOAD_ATTEMPTS` times, then the last error is raised. Returns the bytes sent."""
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                return self._upload_once(repository, digest, content)
            except RegistryError as e:
                if not e.transient or attempt == UPLOAD_ATTEMPTS - 1:
                    raise
                time.sleep(RETRY_DELAY * 2**attempt)
        raise AssertionError("unreachable")

    def _upload_once(self, repository: str, digest: str, content: Union[bytes, str]) -> int:
        scope = _scope(repository)
        start = self.transport.request("POST", f"/v2/{repository}/blobs/uploads/", scope, body=b"", expect=(202,))
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.transport.registry}: upload of {digest} started without a Location")
        url = urllib.parse.urljoin(self.transport.base_url + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        if isinstance(content, bytes):
            size = len(content)
            self.transport.request("PUT", url, scope, body=content, headers=_octets(size), expect=(201,))
        else:
            size = os.path.getsize(content)
            with open(content, "rb") as f:
                self.transport.request("PUT", url, scope, body=f, headers=_octets(size), expect=(201,))
        return size

    def download_blob(self, repository: str, digest: str, path: str) -> None:
        """Streams a blob into the file `path`, checking its digest on the way (for layers of any size)."""
        with open(path, "wb") as f:
            sink = _HashingWriter(f)
            self.transport.request("GET", f"/v2/{repository}/blobs/{digest}", _scope(repository, "pull"), sink=sink)
        if "sha256:" + sink.hash.hexdigest() != digest:
            os.remove(path)
            raise RegistryError(f"{self.transport.registry}: blob {digest} of {repository} has other content")

    def get_blob(self, repository: str, digest: str) -> bytes:
        data = self.transport.request("GET", f"/v2/{repository}/blobs/{digest}", _scope(repository, "pull")).body
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"{self.transport.registry}: blob {digest} of {repository} has other content")
        return data

    # Manifests and tags

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """PUT by digest or tag; returns the manifest's digest (checked against the registry's answer)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = self.transport.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", _scope(repository), body=data,
            headers={"Content-Type": media_type}, expect=(201,),
        )
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"{self.transport.registry}: stored manifest {answered}, but sent {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[str, bytes, str]]:
        """(media type, bytes, digest) of a manifest by tag or digest; None if there is none."""
        response = self.transport.request(
            "GET", f"/v2/{repository}/manifests/{reference}", _scope(repository, "pull"),
            headers={"Accept": ", ".join(MANIFEST_TYPES)}, expect=(200, 404),
        )
        if response.status == 404:
            return None
        digest = "sha256:" + hashlib.sha256(response.body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{self.transport.registry}: manifest {reference} of {repository} has other content")
        return response.headers.get("Content-Type", ""), response.body, digest

    def referrers(self, repository: str, digest: str) -> Optional[List[dict]]:
        """The OCI 1.1 referrers of a manifest (descriptors of the manifests whose `subject` it is); None when
        the registry has no referrers API (distribution 2.8 answers 404)."""
        response = self.transport.request(
            "GET", f"/v2/{repository}/referrers/{digest}", _scope(repository, "pull"),
            headers={"Accept": "application/vnd.oci.image.index.v1+json"}, expect=(200, 404),
        )
        if response.status == 404 or not response.headers.get("Content-Type", "").startswith(
                "application/vnd.oci.image.index.v1+json"):
            return None
        return json.loads(response.body).get("manifests") or []

    def manifest_digest(self, repository: str, reference: str) -> Optional[str]:
        """The digest a tag points to (None if it does not exist), by the manifest's own bytes."""
        found = self.get_manifest(repository, reference)
        return found[2] if found else None


class _HashingWriter:
    """A file that also hashes what is written to it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.hash = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.f.write(data)


def _octets(size: int) -> dict:
    return {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
