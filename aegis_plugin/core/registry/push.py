"""Push an image from an OCI layout by digest, then tag it, immutably.

Blobs go first (those the registry has are skipped, no bytes sent), then the manifest by its digest (for an
image index: each platform's manifest, then the index), and only then the tag: a push interrupted anywhere
leaves no tag pointing at a partial image, and re-running it completes the push. A tag that already points at
another digest is never moved: versions are immutable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Optional, Tuple, Union

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci.layout import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    LayoutError,
    blob_path,
    image_platforms,
    platform_of,
    read_small_blob,
    select_artifact,
    select_image,
)
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import Reference


class TagConflictError(AegisError):
    """The tag exists with another digest; the message names both."""


@dataclass
class PushReport:
    reference: Reference  # repository@digest
    uploaded_bytes: int = 0
    uploaded_blobs: List[str] = field(default_factory=list)
    skipped_blobs: List[str] = field(default_factory=list)
    tag: Optional[str] = None
    tag_created: bool = False  # False: the tag already pointed at this digest (a no-op)

    def summary(self) -> str:
        blobs = f"{len(self.uploaded_blobs)} blob(s), {self.uploaded_bytes} bytes uploaded"
        if self.skipped_blobs:
            blobs += f", {len(self.skipped_blobs)} already present"
        if not self.uploaded_blobs:
            blobs = f"no layer bytes uploaded ({len(self.skipped_blobs)} blob(s) already present)"
        tag = ""
        if self.tag:
            tag = f"; tag {self.tag} " + ("created" if self.tag_created else "already points to this digest")
        return f"{self.reference}: {blobs}{tag}"


@dataclass(frozen=True)
class LayoutImage:
    """An image of an OCI layout directory (what `package` writes to dist/<path>/oci): one manifest, or an image
    index over several platforms' manifests; or an artifact beside it."""

    layout: str
    media_type: str
    digest: str
    manifest: bytes
    platform: Optional[str] = None  # `os/architecture`, for a manifest of an image index

    @classmethod
    def read(cls, layout: str) -> "LayoutImage":
        """The layout's one image, its manifest (or index) checked against the layout index's descriptor."""
        descriptor = select_image(layout)
        if descriptor.get("mediaType") not in (*MANIFEST_MEDIA_TYPES, *INDEX_MEDIA_TYPES):
            raise LayoutError(f"{layout}: unsupported manifest media type {descriptor.get('mediaType')!r}")
        return cls._of(layout, descriptor)

    @classmethod
    def read_artifact(cls, layout: str, artifact_type: str) -> Optional["LayoutImage"]:
        """The layout's artifact of `artifact_type` beside the image (a ModelPack model), or None."""
        descriptor = select_artifact(layout, artifact_type)
        return cls._of(layout, descriptor) if descriptor is not None else None

    @classmethod
    def _of(cls, layout: str, descriptor: Dict[str, Any], platform: Optional[str] = None) -> "LayoutImage":
        manifest = read_small_blob(layout, descriptor, "manifest")
        return cls(layout, descriptor["mediaType"], descriptor["digest"], manifest, platform)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @cached_property
    def images(self) -> List["LayoutImage"]:
        """The manifests that carry the image's blobs: itself, or an index's platform images in its order."""
        if not self.is_index:
            return [self]
        entries = image_platforms(self.layout, self.descriptor)
        for entry in entries:
            if entry.get("mediaType") not in MANIFEST_MEDIA_TYPES or not isinstance(entry.get("platform"), dict):
                raise LayoutError(f"image index {self.digest}: an entry is not an image manifest with a platform")
        return [LayoutImage._of(self.layout, entry, platform_of(entry)) for entry in entries]

    @property
    def descriptor(self) -> Dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}

    @property
    def blob_digests(self) -> List[str]:
        """Config first, then the layers, as the manifest lists them; an index's images', each once."""
        if self.is_index:
            return list(dict.fromkeys(digest for image in self.images for digest in image.blob_digests))
        data = json.loads(self.manifest)
        return [data["config"]["digest"], *(layer["digest"] for layer in data["layers"])]


def push_image(registry: Registry, image: LayoutImage, target: Reference,
               mount_from: Optional[str] = None) -> PushReport:
    """Pushes `image` to `target`'s repository and, if `target` has a tag, tags it (never moving a tag). An
    image index goes after its platforms' manifests, which are pushed by digest alone."""
    repository = target.repository
    report = PushReport(target.with_digest(image.digest), tag=target.tag)
    if target.tag:
        check_tag(registry, target, image.digest)
    blobs = {digest: blob_path(image.layout, digest) for digest in image.blob_digests}
    report.uploaded_bytes, report.uploaded_blobs, report.skipped_blobs = push_blobs(
        registry, repository, blobs, mount_from
    )
    for platform_image in image.images if image.is_index else ():
        registry.put_manifest(repository, platform_image.digest, platform_image.media_type, platform_image.manifest)
    registry.put_manifest(repository, image.digest, image.media_type, image.manifest)
    if target.tag:
        report.tag_created = tag_image(registry, target, image)
    return report


def push_blobs(registry: Registry, repository: str, blobs: Dict[str, Union[bytes, str]],
               mount_from: Optional[str] = None) -> Tuple[int, List[str], List[str]]:
    """Uploads the blobs (bytes or file paths, by digest) the repository lacks, mounting them from
    `mount_from` where the registry allows: (bytes uploaded, digests uploaded, digests skipped)."""
    uploaded_bytes, uploaded, skipped = 0, [], []
    for digest, content in blobs.items():
        if registry.blob_exists(repository, digest) or (
            mount_from and mount_from != repository and registry.mount_blob(repository, digest, mount_from)
        ):
            skipped.append(digest)
            continue
        uploaded_bytes += registry.upload_blob(repository, digest, content)
        uploaded.append(digest)
    return uploaded_bytes, uploaded, skipped


def tag_image(registry: Registry, target: Reference, image: LayoutImage) -> bool:
    """Points `target.tag` at the image (already pushed by digest); False if it already did."""
    if check_tag(registry, target, image.digest):
        return False
    registry.put_manifest(target.repository, target.tag or "", image.media_type, image.manifest)
    return True


def check_tag(registry: Registry, target: Reference, digest: str) -> bool:
    """True if the tag points at `digest` already; TagConflictError if at another one."""
    existing = registry.manifest_digest(target.repository, target.tag or "")
    if existing is not None and existing != digest:
        raise TagConflictError(
            f"{target} already points to {existing}; refusing to move it to {digest}: versions are immutable, "
            f"publish a new version instead"
        )
    return existing == digest
