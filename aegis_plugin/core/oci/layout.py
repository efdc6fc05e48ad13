"""OCI image layout directories (oci-layout, index.json, blobs/sha256/...).

Blobs are always copied (never hardlinked) so outputs are independent of
their inputs, and re-hashed while copying so a stale or corrupted input can
never be published under the wrong digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Mapping, Union

from aegis_plugin.core.oci.image import (
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
    check_digest,
    child_descriptors,
)

BlobSource = Union[str, os.PathLike, bytes]  # file path or content

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'
INDEX_FILE = "index.json"
_CHUNK = 1024 * 1024


def blob_path(layout_dir: Union[str, os.PathLike[str]], digest: str) -> str:
    check_digest(digest)
    return os.path.join(os.fspath(layout_dir), "blobs", "sha256", digest[len("sha256:") :])


def _blob_size(source: BlobSource) -> int:
    return len(source) if isinstance(source, bytes) else os.path.getsize(source)


def _read_blob(source: BlobSource) -> bytes:
    if isinstance(source, bytes):
        return source
    with open(source, "rb") as f:
        return f.read()


def _check_references(
    blobs: Mapping[str, BlobSource], index: Mapping[str, Any], external: Mapping[str, int]
) -> None:
    """Fails early if anything reachable from index.json is missing or mis-sized."""
    pending = child_descriptors(index)
    seen = set()
    while pending:
        desc = pending.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        if desc.digest in external and desc.digest not in blobs:
            if external[desc.digest] != desc.size:
                raise ValueError(
                    f"blob {desc.digest} is {external[desc.digest]} bytes but its descriptor says {desc.size}"
                )
            continue
        if desc.digest not in blobs:
            raise ValueError(f"blob {desc.digest} ({desc.media_type}) is referenced but not provided")
        actual = _blob_size(blobs[desc.digest])
        if actual != desc.size:
            raise ValueError(f"blob {desc.digest} is {actual} bytes but its descriptor says {desc.size}")
        if desc.media_type in (MEDIA_TYPE_MANIFEST, MEDIA_TYPE_INDEX):
            pending.extend(child_descriptors(json.loads(_read_blob(blobs[desc.digest]))))


def _copy_blob(digest: str, source: BlobSource, dest: str) -> None:
    sha = hashlib.sha256()
    partial = dest + ".partial"
    try:
        with open(partial, "wb") as out:
            if isinstance(source, bytes):
                sha.update(source)
                out.write(source)
            else:
                with open(source, "rb") as src:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):
                        sha.update(chunk)
                        out.write(chunk)
        actual = "sha256:" + sha.hexdigest()
        if actual != digest:
            origin = "<bytes>" if isinstance(source, bytes) else os.fspath(source)
            raise ValueError(f"blob {digest} content from {origin} has digest {actual}")
        os.replace(partial, dest)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_layout(
    layout_dir: Union[str, os.PathLike[str]],
    blobs: Mapping[str, BlobSource],
    index: bytes,
    external: Mapping[str, int] = {},
) -> None:
    """Writes an OCI image layout into `layout_dir` (created; must be empty).

    `blobs` maps "sha256:<hex>" to a file path or bytes; `index` is the
    index.json content, typically from image.build_index with a ref-named
    descriptor (see image.with_ref_name).  Every descriptor reachable from
    `index` must be in `blobs`, or in `external` (digest -> size): blobs the
    caller adds under their layout names itself, as Pants does by merging the
    layer steps' outputs, which already name their blob `blobs/sha256/<hex>`.
    """
    for digest in blobs:
        check_digest(digest)
    parsed = json.loads(index)
    if parsed.get("schemaVersion") != 2 or not isinstance(parsed.get("manifests"), list):
        raise ValueError("index must be an image index with schemaVersion 2 and a manifests list")
    for digest in external:
        check_digest(digest)
    _check_references(blobs, parsed, external)

    layout_dir = os.fspath(layout_dir)
    os.makedirs(layout_dir, exist_ok=True)
    if os.listdir(layout_dir):
        raise FileExistsError(f"layout directory {layout_dir} is not empty")
    os.makedirs(os.path.join(layout_dir, "blobs", "sha256"))

    for digest in sorted(blobs):
        _copy_blob(digest, blobs[digest], blob_path(layout_dir, digest))
    with open(os.path.join(layout_dir, OCI_LAYOUT_FILE), "wb") as f:
        f.write(OCI_LAYOUT_CONTENT)
    with open(os.path.join(layout_dir, INDEX_FILE), "wb") as f:
        f.write(index)


def read_index(layout_dir: Union[str, os.PathLike[str]]) -> Dict[str, Any]:
    """Loads a layout's index.json after checking its oci-layout marker."""
    layout_dir = os.fspath(layout_dir)
    with open(os.path.join(layout_dir, OCI_LAYOUT_FILE), "rb") as f:
        version = json.load(f).get("imageLayoutVersion")
    if version != "1.0.0":
        raise ValueError(f"{layout_dir}: unsupported imageLayoutVersion {version!r}")
    with open(os.path.join(layout_dir, INDEX_FILE), "rb") as f:
        result: Dict[str, Any] = json.load(f)
    return result
