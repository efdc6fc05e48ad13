"""Deterministic layer tarballs.

Layer digests are part of the image identity, so the bytes we write must
depend only on the declared entries, never on the build machine (disk
mtimes, owners, umask, locale, input order).  Content is streamed so that
multi-GB model weights never sit in memory, and each source file is read
once: its own hashes (for the SBOM) are taken while it is copied.

A layer is gzip- or zstd-compressed, or a plain tar: float weights do not compress
(gzip saves a few percent at ~40 MB/s), and the image spec allows plain
tar layers, whose digest is then their diff_id.

Compressed layers are written as a series of independent pieces, one per `FRAME_BYTES` of tar, compressed on
several threads (zlib and zstd release the GIL): gzip members, or zstd frames. A gzip file may hold any number
of members and a zstd stream any number of frames, and every reader (Go's compress/gzip and klauspost/zstd,
containerd, podman, Python) reads them as one stream. The split points are fixed byte offsets, each gzip
member's header is written here (no mtime, no OS byte) and each zstd frame carries its content size and no
checksum, so the blob is the same whatever the number of threads. The gzip level follows the layer's size,
which its entries fix: level 6 below `LARGE_LAYER_BYTES` (seconds at most; level 1 made the numpy demo's layers
13% larger), level 1 above it: on the CUDA libraries of a PyTorch image (GBs of shared objects) level 1 runs
2.4x faster than level 6 for 3-4% more bytes (measured: libtorch_cuda.so 43.6 vs 18.1 MB/s at ratio 0.593 vs
0.565; libcublasLt.so 35.0 vs 14.6 MB/s at 0.656 vs 0.636). zstd (level 3, the `zstandard` package pinned in
the core's lock, so its libzstd is fixed too) does better on both counts: on 2 threads it compressed those
libraries at 671 MB/s to 0.381 of their size, against zlib level 1's 138 MB/s and 0.521, and the 12 torch and
CUDA wheels' 5.5 GB written as one layer took 18.9 s and 2,303 MB against gzip's 50.5 s and 2,952 MB (measured
one after the other).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import queue
import stat
import tarfile
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterable, List, Optional, Tuple, Union

from .compression import ParallelFrameWriter, gzip_member, zstd_frame
from .toc import TocEntry, is_bookkeeping

KINDS = ("file", "dir", "symlink", "hardlink")
DEFAULT_DIR_MODE = 0o755
GZIP_LEVEL = 6
GZIP_LEVEL_LARGE = 1
LARGE_LAYER_BYTES = 512 * 1024 * 1024  # of content: from here on, compression time dominates the build
COMPRESSIONS = ("gzip", "zstd", "none")
MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
_CHUNK = 1024 * 1024
_BACKGROUND_HASH_BYTES = 16 * _CHUNK  # smaller files are hashed inline: a thread costs more than it saves
_MAX_MTIME = 8**11 - 1  # largest value a plain ustar header can hold

_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def _check_image_path(path: str, what: str) -> None:
    # Only canonical absolute paths, so that two spellings of one path can't
    # slip past the duplicate check.
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or path.startswith("//")
        or path == "/"
        or "\x00" in path
        or posixpath.normpath(path) != path
    ):
        raise ValueError(
            f"{what} must be a normalized absolute path other than '/', got {path!r}"
        )


@dataclass(frozen=True)
class LayerEntry:
    """One filesystem object in a layer.

    For hardlinks, `linkname` is the absolute image path of a "file" entry of
    the same layer, and `mode` is ignored (a hardlink shares its target's
    inode, so the target's mode is written).  For symlinks, `linkname` is
    stored verbatim.
    """

    path: str
    kind: str
    mode: int
    source: Optional[Union[str, os.PathLike[str]]] = None
    data: Optional[bytes] = None
    linkname: Optional[str] = None
    sha256: Optional[str] = None  # of `source`, when the caller knows it: recorded as given, not hashed again

    def __post_init__(self) -> None:
        _check_image_path(self.path, "entry path")
        if self.kind not in KINDS:
            raise ValueError(f"{self.path}: kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.mode, bool) or not isinstance(self.mode, int) or not 0 <= self.mode <= 0o7777:
            raise ValueError(f"{self.path}: mode must be an int in 0..0o7777, got {self.mode!r}")
        has_content = self.source is not None or self.data is not None
        if self.kind == "file":
            if (self.source is None) == (self.data is None):
                raise ValueError(f"{self.path}: a file needs exactly one of source or data")
            if self.data is not None and not isinstance(self.data, (bytes, bytearray)):
                raise ValueError(f"{self.path}: data must be bytes")
        elif has_content:
            raise ValueError(f"{self.path}: only files may have source or data")
        if self.sha256 is not None and self.source is None:
            raise ValueError(f"{self.path}: a known sha256 is of a source file")
        if self.kind in ("symlink", "hardlink"):
            if not self.linkname:
                raise ValueError(f"{self.path}: a {self.kind} needs a linkname")
            if self.kind == "hardlink":
                _check_image_path(self.linkname, f"{self.path}: hardlink target")
        elif self.linkname is not None:
            raise ValueError(f"{self.path}: only links may have a linkname")


@dataclass(frozen=True)
class FileFacts:
    """What the SBOM records of a file: SPDX 2.3 wants a SHA1 of every file besides the SHA256."""

    path: str
    sha256: str
    sha1: str
    size: int

    def to_json(self) -> Dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "sha1": self.sha1, "size": self.size}


@dataclass(frozen=True)
class LayerInfo:
    digest: str  # sha256 of the blob: the manifest's layer digest
    diff_id: str  # sha256 of the uncompressed tar: the config's rootfs diff_id
    size: int  # bytes of the blob
    media_type: str = MEDIA_TYPES["gzip"]
    files: Tuple[FileFacts, ...] = ()  # every regular file of the layer (not hardlinks), by path
    toc: Tuple[TocEntry, ...] = ()  # every entry, in archive order, with the bookkeeping files' content


class _HashingWriter:
    """Passes writes through while hashing them, so digests need no re-read."""

    def __init__(self, raw: BinaryIO, background: bool = False) -> None:
        self._raw = raw
        self._sha = _BackgroundHash("sha256") if background else hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._raw.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        # Deliberately not forwarded: flushing a GzipFile emits a sync marker.
        pass

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


class _BackgroundHash:
    """A hash fed on its own thread (hashlib releases the GIL), so a multi-GB file's several digests take
    the time of one; the queue is bounded, so memory stays a few chunks."""

    def __init__(self, name: str) -> None:
        self._hash = _new_hash(name)
        self._hex: Optional[str] = None
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for data in iter(self._queue.get, None):
            self._hash.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(bytes(data))

    def hexdigest(self) -> str:
        if self._hex is None:
            self._queue.put(None)
            self._thread.join()
            self._hex = self._hash.hexdigest()
        return self._hex


def _new_hash(name: str) -> "hashlib._Hash":
    # SHA-1 is recorded for SPDX, not trusted: say so, or FIPS builds of OpenSSL refuse it.
    return hashlib.new(name, usedforsecurity=False) if name == "sha1" else hashlib.new(name)


def _hasher(name: str, size: int) -> "hashlib._Hash | _BackgroundHash":
    return _BackgroundHash(name) if size >= _BACKGROUND_HASH_BYTES else _new_hash(name)


class _HashingReader:
    """Hashes what tarfile reads from a source file, so the file's own digests need no second read; a SHA-256
    the caller already has is not taken again."""

    def __init__(self, raw: BinaryIO, size: int, digests: bool = True, sha256: Optional[str] = None) -> None:
        self._raw = raw
        self._sha256 = sha256
        names = ("sha1",) if sha256 else ("sha256", "sha1")
        self._hashes = {name: _hasher(name, size) for name in names} if digests else {}
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)
        return data

    def facts(self, path: str) -> FileFacts:
        sha256 = self._sha256 or self._hashes["sha256"].hexdigest()
        return FileFacts(path, sha256, self._hashes["sha1"].hexdigest(), self.size)


def _plan(entries: Iterable[LayerEntry]) -> List[LayerEntry]:
    """Validates entries, adds missing parents and fixes the archive order."""
    by_path: Dict[str, LayerEntry] = {}
    for entry in entries:
        if not isinstance(entry, LayerEntry):
            raise TypeError(f"expected LayerEntry, got {type(entry).__name__}")
        if entry.path in by_path:
            raise ValueError(f"duplicate path in layer: {entry.path}")
        by_path[entry.path] = entry

    for entry in list(by_path.values()):
        parent = posixpath.dirname(entry.path)
        while parent != "/":
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = LayerEntry(path=parent, kind="dir", mode=DEFAULT_DIR_MODE)
            elif existing.kind != "dir":
                raise ValueError(f"{parent} is a {existing.kind} but {entry.path} is inside it")
            parent = posixpath.dirname(parent)

    for entry in by_path.values():
        if entry.kind == "hardlink":
            target = by_path.get(entry.linkname)  # type: ignore[arg-type]
            if target is None or target.kind != "file":
                raise ValueError(
                    f"hardlink {entry.path} must point to a file in the same layer, "
                    f"got {entry.linkname}"
                )

    # Sorted by path; hardlinks go last so their targets always exist first
    # when the layer is extracted.
    return sorted(by_path.values(), key=lambda e: (e.kind == "hardlink", e.path))


def _write_planned(plan: List[LayerEntry], fileobj: BinaryIO, mtime: int, file_digests: bool = True) -> List[FileFacts]:
    files: List[FileFacts] = []
    modes = {e.path: e.mode for e in plan}
    # Explicit encoding: tarfile otherwise uses the machine's filesystem encoding.
    with tarfile.TarFile(
        fileobj=fileobj,
        mode="w",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        copybufsize=_CHUNK,
    ) as tar:
        for entry in plan:
            info = tarfile.TarInfo(entry.path[1:])
            info.type = _TAR_TYPES[entry.kind]
            info.mode = entry.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if entry.kind == "symlink":
                info.linkname = entry.linkname  # type: ignore[assignment]
            elif entry.kind == "hardlink":
                info.linkname = entry.linkname[1:]  # type: ignore[index]
                info.mode = modes[entry.linkname]  # type: ignore[index]
            if entry.kind != "file":
                tar.addfile(info)
            elif entry.data is not None:
                info.size = len(entry.data)
                if not file_digests:
                    tar.addfile(info, io.BytesIO(entry.data))
                    continue
                reader = _HashingReader(io.BytesIO(entry.data), info.size)
                tar.addfile(info, reader)  # type: ignore[arg-type]
                files.append(reader.facts(entry.path))
            else:
                with open(entry.source, "rb") as src:  # type: ignore[arg-type]
                    st = os.fstat(src.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        raise ValueError(f"{entry.path}: source {entry.source} is not a regular file")
                    info.size = st.st_size
                    reader = _HashingReader(src, info.size, digests=file_digests, sha256=entry.sha256)
                    tar.addfile(info, reader)  # type: ignore[arg-type]
                    if reader.size != st.st_size:
                        raise ValueError(f"{entry.path}: source {entry.source} changed while it was read")
                    if file_digests:
                        files.append(reader.facts(entry.path))
    return files


def _check_mtime(mtime: int) -> None:
    if isinstance(mtime, bool) or not isinstance(mtime, int) or not 0 <= mtime <= _MAX_MTIME:
        raise ValueError(f"mtime must be an int in 0..{_MAX_MTIME}, got {mtime!r}")


def write_tar(entries: Iterable[LayerEntry], fileobj: BinaryIO, mtime: int) -> None:
    """Writes `entries` as a deterministic uncompressed PAX tar to `fileobj`.

    Member names drop the leading "/"; owners are root with empty names and
    every member gets `mtime`.  Missing parent directories are added (0o755).
    """
    _check_mtime(mtime)
    _write_planned(_plan(entries), fileobj, mtime)


def write_layer(
    entries: Iterable[LayerEntry],
    out_path: Union[str, os.PathLike[str]],
    mtime: int,
    compression: str = "gzip",
    file_digests: bool = True,
) -> LayerInfo:
    """Writes a layer blob (`compression`: "gzip", "zstd" or "none") and returns its descriptor facts and, with
    `file_digests`, the digests of its files (layers whose SBOM part comes from package records skip them)."""
    _check_mtime(mtime)
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    plan = _plan(entries)  # fail before creating the output file
    compress = _compressor(compression, plan)  # before the file exists: without zstandard, nothing is written
    try:
        with open(out_path, "wb", buffering=_CHUNK) as raw:
            blob = _HashingWriter(raw, background=True)
            if compress is None:
                files = _write_planned(plan, blob, mtime, file_digests)  # type: ignore[arg-type]
                uncompressed = blob
            else:
                with ParallelFrameWriter(blob, compress) as compressed:  # type: ignore[arg-type]
                    uncompressed = _HashingWriter(compressed, background=True)  # type: ignore[arg-type]
                    files = _write_planned(plan, uncompressed, mtime, file_digests)  # type: ignore[arg-type]
    except BaseException:
        os.remove(out_path)  # never leave a truncated layer behind
        raise
    return LayerInfo(
        digest=blob.digest(),
        diff_id=uncompressed.digest(),
        size=blob.size,
        media_type=MEDIA_TYPES[compression],
        files=tuple(sorted(files, key=lambda f: f.path)),
        toc=tuple(_toc_entry(entry) for entry in plan),
    )


def _compressor(compression: str, plan: List[LayerEntry]) -> Optional[Callable[[bytes], bytes]]:
    if compression == "gzip":
        return gzip_member(_gzip_level(plan))
    if compression == "zstd":
        return zstd_frame()
    return None


def _gzip_level(plan: List[LayerEntry]) -> int:
    size = sum(len(e.data) if e.data is not None else os.stat(e.source).st_size  # type: ignore[arg-type]
               for e in plan if e.kind == "file")
    return GZIP_LEVEL_LARGE if size >= LARGE_LAYER_BYTES else GZIP_LEVEL


def _toc_entry(entry: LayerEntry) -> TocEntry:
    data = None
    if entry.kind == "file" and is_bookkeeping(entry.path):
        if entry.data is not None:
            data = bytes(entry.data)
        else:
            with open(entry.source, "rb") as f:  # type: ignore[arg-type]
                data = f.read()
    return TocEntry(entry.path, entry.kind, entry.linkname, data)
