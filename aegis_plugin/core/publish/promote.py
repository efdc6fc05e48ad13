"""Promote a verified image to another repository or registry by digest: the same bytes, its signature and
attestations with it, and a new immutable tag. Never a rebuild."""
from __future__ import annotations

import json
import os
import tempfile
from typing import List

from aegis_plugin.core.publish import model_signature
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import check_tag
from aegis_plugin.core.registry.reference import Reference
from aegis_plugin.core.publish.verify import Policy, Verified, verify
from aegis_plugin.core.sign import cosign


def promote(source_registry: Registry, source: Reference, target_registry: Registry, target: Reference,
            policy: Policy) -> List[str]:
    """Verifies `source` (by digest), copies it with its `.sig`, `.att` and `.msig` images to `target`'s repository
    and tags it `target.tag`, refusing to move an existing tag. Returns what it did, one line each."""
    verified: Verified = verify(source_registry, source, policy)
    digest = verified.digest
    check_tag(target_registry, target, digest)
    same_registry = source.registry == target.registry
    lines = []
    attached = (cosign.tag_for(digest, suffix) for suffix in ("sig", "att", model_signature.SUFFIX))
    for reference in (digest, *attached):
        found = source_registry.get_manifest(source.repository, reference)
        if found is None:
            continue
        media_type, manifest, _ = found
        copied = _copy_blobs(source_registry, source.repository, target_registry, target.repository, manifest,
                             same_registry)
        target_registry.put_manifest(target.repository, reference, media_type, manifest)
        lines.append(f"copied {reference} ({copied} blob(s) transferred)")
    if target_registry.manifest_digest(target.repository, target.tag or "") == digest:
        lines.append(f"{target} already -> {digest}")
    else:
        media_type, manifest, _ = source_registry.get_manifest(source.repository, digest)  # type: ignore[misc]
        target_registry.put_manifest(target.repository, target.tag or "", media_type, manifest)
        lines.append(f"{target} -> {digest}")
    return lines


def _copy_blobs(source_registry: Registry, source_repository: str, target_registry: Registry,
                target_repository: str, manifest: bytes, same_registry: bool) -> int:
    data = json.loads(manifest)
    digests = [data["config"]["digest"], *(layer["digest"] for layer in data.get("layers", []))]
    transferred = 0
    for digest in digests:
        if target_registry.blob_exists(target_repository, digest):
            continue
        if same_registry and target_registry.mount_blob(target_repository, digest, source_repository):
            continue
        with tempfile.TemporaryDirectory(prefix="aegis-promote-") as work:  # layers of any size, via a file
            path = os.path.join(work, "blob")
            source_registry.download_blob(source_repository, digest, path)
            target_registry.upload_blob(target_repository, digest, path)
        transferred += 1
    return transferred
