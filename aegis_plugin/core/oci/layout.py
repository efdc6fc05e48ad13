"""OCI image layout directories (oci-layout, index.json, blobs/sha256/...): the one writer and the one reader.

Writing: blobs are always copied (never hardlinked) so outputs are independent of their inputs, and re-hashed
while copying so a stale or corrupted input can never be published under the wrong digest.

Reading (the contract test's unpacker, the publisher, the docker-archive writer): index.json -> manifest ->
config, every blob checked against its descriptor's size and digest while it is read, as go-containerregistry's
`layout` package does, so no two consumers can disagree about what an image holds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Optional, Union

from aegis_plugin.core.oci.compression import SeekableZstdReader
from aegis_plugin.core.oci.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD,
    MEDIA_TYPE_MANIFEST,
    check_digest,
    child_descriptors,
)

from aegis_plugin.core.errors import AegisError

BlobSource = Union[str, os.PathLike, bytes]  # file path or content
PathLike = Union[str, "os.PathLike[str]"]

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'
INDEX_FILE = "index.json"
_CHUNK = 1024 * 1024

REF_NAME_ANNOTATION = ANNOTATION_REF_NAME

MANIFEST_MEDIA_TYPES = (
    MEDIA_TYPE_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_MEDIA_TYPES = (
    MEDIA_TYPE_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
CONFIG_MEDIA_TYPES = (
    MEDIA_TYPE_CONFIG,
    "application/vnd.docker.container.image.v1+json",
)
GZIP_LAYERS = (
    MEDIA_TYPE_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
ZSTD_LAYERS = (
    MEDIA_TYPE_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
TAR_LAYERS = (
    MEDIA_TYPE_LAYER_TAR,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)


_ANY_DIGEST = re.compile(r"^(?P<algorithm>sha256|sha512):(?P<hex>[0-9a-f]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_MAX_JSON_BLOB = 8 * 1024 * 1024  # manifests and configs are small; refuse to slurp anything bigger


class LayoutError(AegisError, ValueError):
    """The layout is invalid, or a blob does not match its descriptor."""


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


# --- reading ----------------------------------------------------------------------------------------


def check_descriptor(descriptor: Any, what: str) -> tuple[str, int]:
    if not isinstance(descriptor, dict):
        raise LayoutError(f"{what}: descriptor is not an object")
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not is_digest(digest):
        raise LayoutError(f"{what}: invalid digest {digest!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise LayoutError(f"{what}: invalid size {size!r}")
    return digest, size


def existing_blob(layout_dir: PathLike, digest: str) -> Path:
    """The blob's file, which must exist (any algorithm: a layout written by another tool may use sha512)."""
    algorithm, _, hex_digest = digest.partition(":")
    path = Path(layout_dir) / "blobs" / algorithm / hex_digest
    if not path.is_file():
        raise LayoutError(f"blob {digest} is missing from {layout_dir}")
    return path


class VerifyingReader:
    """A read-only stream over a blob that hashes what passes through and checks it at the end. It can seek,
    for tarfile's random access: the first time through, whatever is read or skipped is hashed, once."""

    def __init__(self, raw: BinaryIO, digest: str, size: Optional[int], what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.new(digest.partition(":")[0])
        self.count = 0  # bytes hashed: always the blob's first bytes
        self._position = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        end = self._position + len(data)
        if data and end > self.count:  # position <= count whenever data comes back (see seek)
            self._hash.update(data[self.count - self._position :])
            self.count = end
            if self._size is not None and self.count > self._size:
                raise LayoutError(f"{self._what} {self._digest}: blob is larger than the {self._size} bytes declared")
        self._position = end
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence != os.SEEK_SET:
            raise OSError(f"{self._what} {self._digest}: a blob stream seeks from its start only")
        if offset > self.count:  # skipped bytes are read, so that the hash sees them
            self._raw.seek(self.count)
            self._position = self.count
            while self._position < offset and self.read(min(_CHUNK, offset - self._position)):
                pass
        self._raw.seek(offset)
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def drain(self) -> None:
        self.seek(self.count)
        while self.read(_CHUNK):
            pass

    def verify(self) -> None:
        if self._size is not None and self.count != self._size:
            raise LayoutError(
                f"{self._what} {self._digest}: blob has {self.count} bytes, its descriptor says {self._size}"
            )
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self._digest:
            raise LayoutError(f"{self._what} {self._digest}: content digest is {actual} (corrupted or tampered blob)")


class LayerReader:
    """A layer blob's uncompressed tar (gzip, zstd or plain), seekable for tarfile's random access. The blob's size
    and digest and the tar's diff_id are checked by `verify()`, which reads whatever the first pass has not:
    call it once the tar's members are listed, before trusting any content."""

    def __init__(self, layout_dir: PathLike, descriptor: dict[str, Any], diff_id: str) -> None:
        digest, size = check_descriptor(descriptor, "layer")
        media_type = descriptor.get("mediaType")
        if media_type not in GZIP_LAYERS + ZSTD_LAYERS + TAR_LAYERS:
            raise LayoutError(f"layer {digest}: unsupported media type {media_type!r} (plain, gzip or zstd tar only)")
        if not is_digest(diff_id):
            raise LayoutError(f"layer {digest}: invalid diff_id {diff_id!r}")
        self.digest = digest
        self._file = open(existing_blob(layout_dir, digest), "rb")
        self._blob = VerifyingReader(self._file, digest, size, "layer")
        blob: Any = self._blob
        self._decompressed: Any = None
        try:
            if media_type in GZIP_LAYERS:
                self._decompressed = gzip.GzipFile(fileobj=blob, mode="rb")
            elif media_type in ZSTD_LAYERS:
                self._decompressed = SeekableZstdReader(blob, f"reading the zstd layer {digest}")
        except BaseException:
            self._file.close()
            raise
        self._tar = VerifyingReader(self._decompressed or blob, diff_id, None, f"layer {digest}: uncompressed")

    def read(self, n: int = -1) -> bytes:
        return self._tar.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._tar.seek(offset, whence)

    def tell(self) -> int:
        return self._tar.tell()

    def verify(self) -> None:
        """Reads what is left (whatever follows the tar's end-of-archive blocks is still part of both digests)
        and checks the blob and the diff_id."""
        try:
            self._tar.drain()
            self._blob.drain()
        except (OSError, EOFError, zlib.error) as e:
            raise LayoutError(f"layer {self.digest}: {e}") from None
        self._blob.verify()
        self._tar.verify()

    def close(self) -> None:
        if self._decompressed is not None:
            self._decompressed.close()
        self._file.close()


def read_small_blob(layout_dir: PathLike, descriptor: dict[str, Any], what: str) -> bytes:
    """A manifest's or config's bytes, checked against its descriptor (size, digest)."""
    digest, size = check_descriptor(descriptor, what)
    if size > _MAX_JSON_BLOB:
        raise LayoutError(f"{what} {digest}: {size} bytes is too large for a JSON document")
    with open(existing_blob(layout_dir, digest), "rb") as f:
        reader = VerifyingReader(f, digest, size, what)
        data = reader.read(size + 1)
        reader.verify()
    return data


def read_json_blob(layout_dir: PathLike, descriptor: dict[str, Any], what: str) -> dict[str, Any]:
    """A manifest or config blob, checked against its descriptor and parsed."""
    data = read_small_blob(layout_dir, descriptor, what)
    try:
        document = json.loads(data)
    except ValueError as e:
        raise LayoutError(f"{what} {descriptor['digest']}: invalid JSON: {e}") from None
    if not isinstance(document, dict):
        raise LayoutError(f"{what} {descriptor['digest']}: not a JSON object")
    return document


def read_index(layout_dir: PathLike) -> dict[str, Any]:
    """index.json, after checking the layout's oci-layout marker."""
    layout_dir = Path(layout_dir)
    try:
        marker = json.loads((layout_dir / "oci-layout").read_text())
        index = json.loads((layout_dir / "index.json").read_text())
    except FileNotFoundError as e:
        raise LayoutError(f"{layout_dir} is not an OCI image layout: {e.filename} is missing") from None
    except ValueError as e:
        raise LayoutError(f"{layout_dir}: invalid JSON in oci-layout or index.json: {e}") from None
    if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0":
        raise LayoutError(f"{layout_dir}: unsupported oci-layout {marker!r}")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise LayoutError(f"{layout_dir}/index.json has no `manifests` list")
    return index


def select_manifest(layout_dir: PathLike, ref: Optional[str] = None, platform: Optional[str] = None) -> dict[str, Any]:
    """The manifest descriptor of `select_image`; when that is an image index (one image for several
    platforms), the manifest of `platform` (`os/architecture`) in it."""
    descriptor = select_image(layout_dir, ref)
    if descriptor.get("mediaType") in INDEX_MEDIA_TYPES:
        descriptor = _platform_manifest(layout_dir, descriptor, platform)
    elif platform is not None and descriptor.get("platform") and platform_of(descriptor) != platform:
        raise LayoutError(f"{layout_dir}: the image is {platform_of(descriptor)}, not {platform}")
    if descriptor.get("mediaType") not in MANIFEST_MEDIA_TYPES:
        raise LayoutError(f"{layout_dir}: unsupported manifest media type {descriptor.get('mediaType')!r}")
    return descriptor


def select_image(layout_dir: PathLike, ref: Optional[str] = None) -> dict[str, Any]:
    """The descriptor tagged `ref`, or, when `ref` is None, the layout's only image: entries with an
    `artifactType` (the ModelPack artifact `package` writes beside the image) are not images. An image
    manifest, or an image index over several platforms' manifests."""
    index = read_index(layout_dir)
    manifests = [m for m in index["manifests"] if isinstance(m, dict)]
    if ref is not None:
        chosen = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) == ref]
        if not chosen:
            names = sorted(str((m.get("annotations") or {}).get(REF_NAME_ANNOTATION)) for m in manifests)
            raise LayoutError(f"{layout_dir}: no manifest tagged {ref!r} (tags: {', '.join(names) or 'none'})")
    else:
        chosen = [m for m in manifests if "artifactType" not in m]
    if len(chosen) != 1:
        raise LayoutError(
            f"{layout_dir}: {len(chosen)} manifests{f' tagged {ref!r}' if ref else ''}; name one with a ref"
        )
    return chosen[0]


def platform_of(descriptor: dict[str, Any]) -> str:
    """`os/architecture` of an image index's entry."""
    platform = descriptor.get("platform") if isinstance(descriptor.get("platform"), dict) else {}
    return f"{platform.get('os')}/{platform.get('architecture')}"


def image_platforms(layout_dir: PathLike, index_descriptor: dict[str, Any]) -> list[dict[str, Any]]:
    """The platform manifests' descriptors of an image index blob of the layout, in its order."""
    index = read_json_blob(layout_dir, index_descriptor, "image index")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise LayoutError(f"image index {index_descriptor.get('digest')}: no `manifests` list")
    return manifests


def _platform_manifest(layout_dir: PathLike, index_descriptor: dict[str, Any], platform: Optional[str]
                       ) -> dict[str, Any]:
    manifests = image_platforms(layout_dir, index_descriptor)
    offered = [platform_of(m) for m in manifests]
    if platform is None:
        raise LayoutError(
            f"{layout_dir}: the image is an index over {', '.join(offered)}: name a platform"
        )
    chosen = [m for m in manifests if platform_of(m) == platform]
    if len(chosen) != 1:
        raise LayoutError(
            f"{layout_dir}: the image index {index_descriptor.get('digest')} has {len(chosen)} manifests for "
            f"{platform} (it offers {', '.join(offered) or 'none'})"
        )
    return chosen[0]


def select_artifact(layout_dir: PathLike, artifact_type: str) -> Optional[dict[str, Any]]:
    """The descriptor of the layout's one manifest of `artifact_type` (an OCI 1.1 artifact beside the image,
    such as the ModelPack model artifact), or None when the layout has none."""
    index = read_index(layout_dir)
    found = [m for m in index["manifests"] if isinstance(m, dict) and m.get("artifactType") == artifact_type]
    if len(found) > 1:
        raise LayoutError(f"{layout_dir}: {len(found)} manifests of artifact type {artifact_type}")
    return found[0] if found else None


def read_image(layout_dir: PathLike, ref: Optional[str] = None, platform: Optional[str] = None
               ) -> tuple[dict, dict, dict]:
    """(manifest descriptor, manifest, config blob), each blob checked against its digest; `platform` picks
    the manifest of an image index."""
    layout_dir = Path(layout_dir)
    descriptor = select_manifest(layout_dir, ref, platform)
    manifest = read_json_blob(layout_dir, descriptor, "manifest")
    if manifest.get("mediaType", descriptor["mediaType"]) not in MANIFEST_MEDIA_TYPES:
        raise LayoutError(f"manifest {descriptor['digest']}: unsupported media type {manifest.get('mediaType')!r}")
    config_descriptor = manifest.get("config")
    if not isinstance(config_descriptor, dict) or config_descriptor.get("mediaType") not in CONFIG_MEDIA_TYPES:
        raise LayoutError(f"manifest {descriptor['digest']}: no image config of a known media type")
    config = read_json_blob(layout_dir, config_descriptor, "config")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise LayoutError(f"manifest {descriptor['digest']}: no `layers` list")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise LayoutError(
            f"config {config_descriptor['digest']}: rootfs.diff_ids does not list one entry per layer "
            f"({len(diff_ids) if isinstance(diff_ids, list) else 'none'} for {len(layers)} layers)"
        )
    return descriptor, manifest, config


def is_digest(value: object) -> bool:
    """A well-formed sha256 or sha512 digest (a diff_id, a descriptor's digest)."""
    match = _ANY_DIGEST.match(value) if isinstance(value, str) else None
    return match is not None and len(match.group("hex")) == _HEX_LENGTH[match.group("algorithm")]
