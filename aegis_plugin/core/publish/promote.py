"""Promote a verified image to another repository or registry by digest: the same bytes, its signature and
attestations with it, and a new immutable tag. Never a rebuild."""
from __future__ import annotations

import json
import os
import tempfile
from typing import List

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import TagConflictError, check_tag, push_blobs
from aegis_plugin.core.registry.reference import Reference
from aegis_plugin.core.publish.verify import Policy, Verified, verify


def promote(source_registry: Registry, source: Reference, target_registry: Registry, target: Reference,
            policy: Policy) -> List[str]:
    """Verifies `source` (by digest), copies it with its `.sig`, `.att` and `.msig` images to `target`'s repository
    and tags it `target.tag`, refusing to move an existing tag. Returns what it did, one line each."""
    return copy_verified(verify(source_registry, source, policy), source_registry, source, target_registry, target)


def copy_verified(verified: Verified, source_registry: Registry, source: Reference, target_registry: Registry,
                  target: Reference) -> List[str]:
    """Copies what `verify` read and checked, never a second read of the source: the `.sig`, `.att` and `.msig`
    tags are mutable, and whoever can push to the source could swap them in between. The image's manifest is
    the one verify read by its digest; its blobs, fixed by their digests (checked as they are read), are
    copied by digest, through a file (layers of any size). An image index goes after its platforms' images,
    each with its own signatures, as verify checked them.

    A `.sig`, `.att` or `.msig` image at the target is never overwritten, nor merged: if one there differs
    from the verified one, promote refuses before copying anything and names both digests (the target's
    signatures may be ones the source lacks; someone must decide). One with the same digest is kept as is.
    """
    digest = verified.digest
    check_tag(target_registry, target, digest)
    manifests = [*(image for _, image in verified.platforms), verified]  # an index after its images
    present = set()
    for attached in (a for image in manifests for a in image.attached.values()):
        existing = target_registry.manifest_digest(target.repository, attached.tag)
        if existing == attached.digest:
            present.add(attached.tag)
        elif existing is not None:
            raise TagConflictError(
                f"{target.registry}/{target.repository}:{attached.tag} already holds {existing}, not the verified "
                f"{attached.digest} of {source}; refusing to overwrite the target's signatures: compare and remove "
                f"one of them first")
    same_registry = source.registry == target.registry
    mount_from = source.repository if same_registry else None
    lines = []
    for image in manifests:
        media_type, manifest = image.image
        copied = 0 if image.is_index else _copy_image_blobs(source_registry, source.repository, target_registry,
                                                            target.repository, manifest, same_registry)
        target_registry.put_manifest(target.repository, image.digest, media_type, manifest)
        lines.append(f"copied {image.digest} ({copied} blob(s) transferred)")
        for attached in image.attached.values():
            if attached.tag in present:
                lines.append(f"{attached.tag} already there")
                continue
            _, uploaded, _ = push_blobs(target_registry, target.repository, dict(attached.blobs), mount_from)
            target_registry.put_manifest(target.repository, attached.tag, attached.media_type, attached.manifest)
            lines.append(f"copied {attached.tag} ({len(uploaded)} blob(s) transferred)")
    media_type, manifest = verified.image
    if check_tag(target_registry, target, digest):
        lines.append(f"{target} already -> {digest}")
    else:
        target_registry.put_manifest(target.repository, target.tag or "", media_type, manifest)
        lines.append(f"{target} -> {digest}")
    return lines


def _copy_image_blobs(source_registry: Registry, source_repository: str, target_registry: Registry,
                      target_repository: str, manifest: bytes, same_registry: bool) -> int:
    """Copies an image manifest's config and layers."""
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
