"""For the tests: a real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1, and small
images in OCI layouts to push to it."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import shutil
import subprocess
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from aegis_plugin.core.local_servers import free_port, running_process, serving
from aegis_plugin.core.oci.layout import write_layout
from aegis_plugin.core.registry.push import LayoutImage

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@contextlib.contextmanager
def running_registry(work: Path, login: Optional[Tuple[str, str]] = None) -> Iterator[str]:
    """A fresh registry with filesystem storage under `work`; yields `127.0.0.1:PORT`. With `login`, it
    requires HTTP Basic auth (an htpasswd file with a bcrypt hash, made by `htpasswd` from apache2-utils)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise AssertionError("docker-registry is not installed: run the tests with build-support/test.sh")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    auth = ""
    if login:
        htpasswd = subprocess.run(["htpasswd", "-Bbn", *login], check=True, capture_output=True, text=True).stdout
        (work / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: aegis-tests\n    path: {work / 'htpasswd'}\n"
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    with running_process([binary, "serve", str(config)], work / "registry.log",
                         lambda: _answers(f"http://127.0.0.1:{port}/v2/"), "docker-registry"):
        yield f"127.0.0.1:{port}"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        pass  # 401: up, and asking for a login
    return True


def make_layout(directory: Path, content: bytes, tag: str = "1.0.0") -> LayoutImage:
    """An OCI layout holding one image with one layer (`/app/model/weights.safetensors` = `content`, where
    model images keep their weights), written by hand so that these tests need nothing but this package."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("app/model/weights.safetensors")
        info.size, info.mode = len(content), 0o644
        archive.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = _json({"architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [_digest(tar.getvalue())]}})
    manifest = _json({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                    "size": len(layer)}],
    })
    write_layout(directory, {_digest(b): b for b in (layer, config, manifest)}, _json({"schemaVersion": 2, "manifests": [{
        "mediaType": MANIFEST, "digest": _digest(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return LayoutImage.read(str(directory))


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def faulty_proxy(upstream: str, fail: Callable[[int], bool]) -> Iterator[str]:
    """A loopback HTTP proxy in front of the registry `upstream` (host:port) that answers 500 instead of
    forwarding the n-th blob upload (`PUT` of an upload session, counted from 1) when `fail(n)`; yields its
    own `127.0.0.1:PORT`. The Host header is passed on, so the registry's Location headers point back here."""
    uploads = [0]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "PUT" and "/blobs/uploads/" in self.path:
                with lock:
                    uploads[0] += 1
                    n = uploads[0]
                if fail(n):
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            connection = http.client.HTTPConnection(upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"127.0.0.1:{port}"
