"""OCI image config, manifest and index documents.

Every document is canonical JSON (sorted keys, compact, ASCII, no trailing
newline) so that the same inputs always give the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_MEDIA_TYPES = (MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD)
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_CREATED_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
# Grammar of org.opencontainers.image.ref.name from the image-layout spec.
_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"{_REF_COMPONENT}(?:/{_REF_COMPONENT})*")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ValueError(f"expected a digest like 'sha256:<64 lowercase hex>', got {digest!r}")


def _check_str_map(value: Optional[Mapping[str, str]], what: str) -> None:
    if value is None:
        return
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"{what} must map str to str, got {k!r}: {v!r}")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor.

    `platform` is an OCI platform dict (at least "architecture" and "os");
    set it on manifests listed in an index so clients can pick theirs.
    """

    media_type: str
    digest: str
    size: int
    annotations: Optional[Mapping[str, str]] = None
    platform: Optional[Mapping[str, Any]] = None
    artifact_type: Optional[str] = None  # of an artifact's manifest (OCI 1.1), e.g. a ModelPack model

    def __post_init__(self) -> None:
        if not self.media_type:
            raise ValueError("descriptor needs a media_type")
        check_digest(self.digest)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"descriptor size must be a non-negative int, got {self.size!r}")
        _check_str_map(self.annotations, "annotations")
        # Private copies, so later changes to the caller's dicts can't leak in.
        if self.annotations is not None:
            object.__setattr__(self, "annotations", dict(self.annotations))
        if self.platform is not None:
            object.__setattr__(self, "platform", dict(self.platform))
            for key in ("architecture", "os"):
                if not isinstance(self.platform.get(key), str) or not self.platform[key]:
                    raise ValueError(f"platform needs a non-empty {key!r}, got {dict(self.platform)!r}")

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        return out


def with_ref_name(descriptor: Descriptor, ref_name: str) -> Descriptor:
    """Returns `descriptor` annotated with `org.opencontainers.image.ref.name`.

    Use it on the manifest descriptor given to `build_index` for a layout's
    index.json; that name is the tag in `oci:DIR:TAG` / `umoci ... DIR:TAG`.
    """
    if not isinstance(ref_name, str) or not _REF_NAME_RE.fullmatch(ref_name):
        raise ValueError(f"invalid OCI ref name {ref_name!r}")
    return with_annotations(descriptor, {ANNOTATION_REF_NAME: ref_name})


def with_annotations(descriptor: Descriptor, annotations: Mapping[str, str]) -> Descriptor:
    """Returns a copy of `descriptor` with `annotations` merged over its own."""
    merged = dict(descriptor.annotations or {})
    merged.update(annotations)
    return replace(descriptor, annotations=merged)


def build_config(
    *,
    architecture: str,
    os: str,
    diff_ids: Sequence[str],
    created: str,
    user: Optional[str] = None,
    env: Sequence[str] = (),
    entrypoint: Optional[Sequence[str]] = None,
    cmd: Optional[Sequence[str]] = None,
    working_dir: Optional[str] = None,
    labels: Optional[Mapping[str, str]] = None,
    history: Optional[Sequence[Mapping[str, Any]]] = None,
    variant: Optional[str] = None,
) -> bytes:
    """Returns the image config JSON (application/vnd.oci.image.config.v1+json).

    Optional fields left as None (or empty labels) are omitted.  If `history`
    is given, its non-`empty_layer` entries must match the layers one to one.
    """
    if not architecture or not os:
        raise ValueError("architecture and os are required")
    if not isinstance(created, str) or not _CREATED_RE.fullmatch(created):
        raise ValueError(f"created must be RFC 3339 UTC like 2024-01-02T03:04:05Z, got {created!r}")
    for diff_id in diff_ids:
        check_digest(diff_id)
    for item in env:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"env entries must look like KEY=VALUE, got {item!r}")
    _check_str_map(labels, "labels")

    runtime: Dict[str, Any] = {}
    if user is not None:
        runtime["User"] = user
    if env:
        runtime["Env"] = list(env)
    if entrypoint is not None:
        runtime["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        runtime["Cmd"] = list(cmd)
    if working_dir is not None:
        runtime["WorkingDir"] = working_dir
    if labels:
        runtime["Labels"] = dict(labels)

    config: Dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if variant is not None:
        config["variant"] = variant
    if history is not None:
        layer_entries = sum(1 for h in history if not h.get("empty_layer", False))
        if layer_entries != len(diff_ids):
            raise ValueError(
                f"history has {layer_entries} non-empty_layer entries for {len(diff_ids)} layers"
            )
        config["history"] = [dict(h) for h in history]
    return canonical_json(config)


def build_manifest(
    *,
    config: Descriptor,
    layers: Sequence[Descriptor],
    annotations: Optional[Mapping[str, str]] = None,
) -> bytes:
    """Returns the image manifest JSON (application/vnd.oci.image.manifest.v1+json)."""
    if config.media_type != MEDIA_TYPE_CONFIG:
        raise ValueError(f"config descriptor must have media type {MEDIA_TYPE_CONFIG}, got {config.media_type}")
    for layer in layers:
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise ValueError(f"layer {layer.digest} has unsupported media type {layer.media_type}")
    _check_str_map(annotations, "annotations")
    manifest: Dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return canonical_json(manifest)


def build_index(
    manifests: Sequence[Descriptor],
    annotations: Optional[Mapping[str, str]] = None,
) -> bytes:
    """Returns an image index JSON (application/vnd.oci.image.index.v1+json).

    Serves both as a layout's index.json and as a multi-platform index blob:
    for several platforms, list one manifest descriptor per platform (each
    with `platform`), store the result as a blob, and point the layout's
    index.json at it with a single ref-named descriptor of MEDIA_TYPE_INDEX.
    Descriptor order is kept as given.
    """
    seen = set()
    for desc in manifests:
        if desc.media_type not in (MEDIA_TYPE_MANIFEST, MEDIA_TYPE_INDEX):
            raise ValueError(f"index entry {desc.digest} has unsupported media type {desc.media_type}")
        key = canonical_json(desc.to_json())
        if key in seen:
            raise ValueError(f"duplicate index entry for {desc.digest}")
        seen.add(key)
    _check_str_map(annotations, "annotations")
    index: Dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [desc.to_json() for desc in manifests],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    return canonical_json(index)


def descriptor_for(media_type: str, data: bytes, **kwargs: Any) -> Descriptor:
    """Descriptor of an in-memory document such as a config or manifest."""
    return Descriptor(media_type=media_type, digest=sha256_digest(data), size=len(data), **kwargs)


def parse_descriptor(obj: Mapping[str, Any]) -> Descriptor:
    """Inverse of Descriptor.to_json, for reading existing index/manifest JSON."""
    return Descriptor(
        media_type=obj.get("mediaType", ""),
        digest=obj.get("digest", ""),
        size=obj.get("size", -1),
        annotations=obj.get("annotations"),
        platform=obj.get("platform"),
        artifact_type=obj.get("artifactType"),
    )


def child_descriptors(document: Mapping[str, Any]) -> List[Descriptor]:
    """Descriptors a manifest or index refers to (config, layers, manifests)."""
    children: List[Mapping[str, Any]] = []
    if "config" in document:
        children.append(document["config"])
    children.extend(document.get("layers", []))
    children.extend(document.get("manifests", []))
    return [parse_descriptor(c) for c in children]
