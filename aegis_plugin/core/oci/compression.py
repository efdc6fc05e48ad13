"""Compressed layer streams: gzip members or zstd frames of fixed-size pieces, compressed on several threads.

See layer.py for why pieces and which levels. Readers take the same streams back: gzip through the standard
library, zstd through `zstandard` (pinned in the core's lock and in each tool's lock that reads layers).
"""
from __future__ import annotations

import contextlib
import os
import tarfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Iterator, List, Optional

from aegis_plugin.core.errors import AegisError

ZSTD_LEVEL = 3
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first bytes of every zstd frame (RFC 8878)
_READ_BYTES = 1024 * 1024
FRAME_BYTES = 16 * 1024 * 1024  # of tar per gzip member or zstd frame: fixed, so the blob does not depend on threads


class ZstdUnavailableError(AegisError, RuntimeError):
    pass


class ParallelFrameWriter:
    """A file-like sink that cuts what it is given into `frame_bytes` pieces and writes `compress(piece)` of
    each to `raw`, in order, compressing up to `threads` pieces at once; at most 2 pieces a thread wait."""

    def __init__(self, raw: BinaryIO, compress: Callable[[bytes], bytes], frame_bytes: Optional[int] = None,
                 threads: Optional[int] = None) -> None:
        self._raw = raw
        self._compress = compress
        self._frame_bytes = frame_bytes or FRAME_BYTES
        self._threads = threads or max(1, min(8, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="aegis-compress")
        self._pending: "List[Future[bytes]]" = []
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= self._frame_bytes:
            self._submit(bytes(self._buffer[: self._frame_bytes]))
            del self._buffer[: self._frame_bytes]
        return len(data)

    def flush(self) -> None:
        pass  # frames are cut at fixed offsets only

    def close(self) -> None:
        try:
            if self._buffer or not self._pending:  # an empty stream is still one (empty) frame
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                self._raw.write(self._pending.pop(0).result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ParallelFrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, piece: bytes) -> None:
        self._pending.append(self._pool.submit(self._compress, piece))
        while len(self._pending) > 2 * self._threads:  # bounded: write out the oldest frame
            self._raw.write(self._pending.pop(0).result())


# A gzip member header without a name, mtime or OS byte (RFC 1952: 255 = unknown), so nothing of the machine or
# the zlib build reaches the bytes.
_GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])


def gzip_member(level: int) -> Callable[[bytes], bytes]:
    """One gzip member per piece, under the machine-free header above."""
    def compress(piece: bytes) -> bytes:
        deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflate.compress(piece) + deflate.flush()
        crc, size = zlib.crc32(piece) & 0xFFFFFFFF, len(piece) & 0xFFFFFFFF
        return _GZIP_HEADER + body + crc.to_bytes(4, "little") + size.to_bytes(4, "little")

    return compress


def zstd_frame(level: int = ZSTD_LEVEL) -> Callable[[bytes], bytes]:
    """One zstd frame per piece, compressed on the calling thread (no zstd workers: their job split would
    depend on the library's defaults), with the content size and without a checksum (the blob has a digest)."""
    zstandard = import_zstandard("writing a zstd layer")

    def compress(piece: bytes) -> bytes:
        # A compressor per piece: one ZstdCompressor is not safe to share between threads.
        compressor = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False, write_dict_id=False, threads=0
        )
        return compressor.compress(piece)  # type: ignore[no-any-return]

    return compress


def import_zstandard(purpose: str) -> Any:
    """The `zstandard` package, which the core's lock pins; a one-line error where it is missing."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise ZstdUnavailableError(
            f"{purpose} needs the 'zstandard' Python package, which is not installed here"
        ) from None
    return zstandard


def zstd_reader(raw: BinaryIO, purpose: str) -> BinaryIO:
    """The decompressed stream of every frame of `raw`, read as one stream (a layer is many frames)."""
    zstandard = import_zstandard(purpose)
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    return reader  # type: ignore[no-any-return]


class SeekableZstdReader:
    """The decompressed stream of a zstd blob, seekable as `gzip.GzipFile` is (for tarfile's random access):
    forward by reading, backward by decompressing again from the blob's first byte. Closing it leaves `raw`
    open."""

    def __init__(self, raw: BinaryIO, purpose: str) -> None:
        self._raw = raw
        self._purpose = purpose
        self._zstd_error = import_zstandard(purpose).ZstdError
        self._stream = self._restart()

    def _restart(self) -> BinaryIO:
        self._raw.seek(0)
        self._position = 0
        return zstd_reader(self._raw, self._purpose)

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._stream.read(n)
        except self._zstd_error as e:  # readers of layers handle OSError (and zlib.error for gzip)
            raise OSError(f"zstd: {e}") from None
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence != os.SEEK_SET:
            raise OSError("a zstd stream seeks from its start or its current position only")
        if offset < self._position:
            self._stream.close()
            self._stream = self._restart()
        while self._position < offset and self.read(min(_READ_BYTES, offset - self._position)):
            pass
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._stream.close()


@contextlib.contextmanager
def open_layer_tar(path: str) -> Iterator[tarfile.TarFile]:
    """A layer blob (plain, gzip or zstd tar: its first bytes tell) opened for tarfile's random access."""
    with open(path, "rb") as f:
        if f.read(len(ZSTD_MAGIC)) != ZSTD_MAGIC:
            f.seek(0)
            with tarfile.open(fileobj=f, mode="r:*") as tar:  # plain or gzip, as tarfile detects
                yield tar
            return
        with contextlib.closing(SeekableZstdReader(f, f"reading the zstd layer {path}")) as reader:
            with tarfile.open(fileobj=reader, mode="r:") as tar:  # type: ignore[call-overload]
                yield tar
