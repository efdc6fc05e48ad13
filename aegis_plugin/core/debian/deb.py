"""Read a .deb without dpkg: an ``ar`` archive holding ``debian-binary``, ``control.tar.*`` and
``data.tar.*``. The data tar is streamed (never held in memory), so a member's content can be read
only while the iteration stands on it.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import IO, BinaryIO, Iterator

from aegis_plugin.core.debian.deb822 import parse_paragraph
from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.oci.compression import zstd_reader

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


class DebFormatError(DebianError):
    """The file is not a .deb this reader understands."""


@dataclass(frozen=True)
class DebControl:
    control: str  # the control file: one deb822 paragraph (Package, Version, Depends, ...)
    md5sums: str | None  # "<md5>  <path without leading slash>" lines; None if the package has none
    conffiles: str | None = None  # absolute paths, one a line, that dpkg leaves out of md5sums

    @property
    def fields(self) -> dict[str, str]:
        return parse_paragraph(self.control)


@dataclass(frozen=True)
class DebMember:
    path: str  # absolute and normalised: "/usr/bin/python3.11"
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int  # permission bits as stored in the archive
    size: int  # content size for files, else 0
    linkname: str | None = None  # symlink: target as written; hardlink: absolute path of the target


class _Slice(io.RawIOBase):
    """A read-only window [offset, offset + size) of an open file: one ar member."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._offset, self._left = f, offset, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        self._f.seek(self._offset)
        data = self._f.read(min(len(buffer), self._left))
        buffer[: len(data)] = data
        self._offset += len(data)
        self._left -= len(data)
        return len(data)


def _ar_members(f: BinaryIO, where: str) -> dict[str, tuple[int, int]]:
    """Name -> (offset, size) of each member of an ar archive."""
    if f.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise DebFormatError(f"{where}: not an ar archive (is it a .deb?)")
    members: dict[str, tuple[int, int]] = {}
    offset = len(_AR_MAGIC)
    while True:
        f.seek(offset)
        header = f.read(_AR_HEADER)
        if not header:
            return members
        if len(header) != _AR_HEADER or header[58:60] != b"`\n":
            raise DebFormatError(f"{where}: corrupt ar header at byte {offset}")
        name = header[:16].decode("ascii", "replace").rstrip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebFormatError(f"{where}: corrupt ar member size at byte {offset}") from None
        members[name] = (offset + _AR_HEADER, size)
        offset += _AR_HEADER + size + (size % 2)  # members are 2-byte aligned


def _open_tar(f: BinaryIO, members: dict[str, tuple[int, int]], stem: str, where: str) -> tarfile.TarFile:
    """Stream-open ``<stem>.tar[.xz|.gz|.zst]`` from the ar archive."""
    for name, (offset, size) in sorted(members.items()):
        if name != f"{stem}.tar" and not name.startswith(f"{stem}.tar."):
            continue
        raw = io.BufferedReader(_Slice(f, offset, size), 1 << 16)  # type: ignore[type-var]
        compression = name[len(f"{stem}.tar") :]
        if compression in ("", ".xz", ".gz", ".bz2"):
            return tarfile.open(fileobj=raw, mode="r|" + compression.lstrip("."))  # type: ignore[call-overload]
        if compression == ".zst":
            return tarfile.open(fileobj=zstd_reader(raw, f"{where}: its zstd data"), mode="r|")
        raise DebFormatError(f"{where}: unsupported compression {name}")
    raise DebFormatError(f"{where}: no {stem}.tar.* member")


def _check_version(f: BinaryIO, members: dict[str, tuple[int, int]], where: str) -> None:
    if "debian-binary" not in members:
        raise DebFormatError(f"{where}: no debian-binary member (not a .deb)")
    offset, size = members["debian-binary"]
    f.seek(offset)
    if not f.read(size).startswith(b"2."):
        raise DebFormatError(f"{where}: unsupported .deb format version")


def _member_path(name: str, where: str) -> str:
    relative = name[2:] if name.startswith("./") else ("" if name == "." else name)
    path = posixpath.normpath("/" + relative)  # "./usr/bin/" -> "/usr/bin"; "./" -> "/"
    if name.startswith("/") or ".." in name.split("/"):
        raise DebFormatError(f"{where}: unsafe path {name!r}")
    return path


def read_control(deb: str | os.PathLike[str]) -> DebControl:
    """The ``control``, ``md5sums`` and ``conffiles`` files of the package."""
    where = os.fspath(deb)
    with open(deb, "rb") as f:
        members = _ar_members(f, where)
        _check_version(f, members, where)
        found: dict[str, str] = {}
        with _open_tar(f, members, "control", where) as tar:
            for info in tar:
                name = _member_path(info.name, where)
                if info.isfile() and name in ("/control", "/md5sums", "/conffiles"):
                    content = tar.extractfile(info)
                    assert content is not None
                    found[name] = content.read().decode("utf-8")
    if "/control" not in found:
        raise DebFormatError(f"{where}: control.tar has no control file")
    return DebControl(control=found["/control"], md5sums=found.get("/md5sums"), conffiles=found.get("/conffiles"))


def iter_data(deb: str | os.PathLike[str]) -> Iterator[tuple[DebMember, IO[bytes] | None]]:
    """Yield each member of ``data.tar.*`` in archive order, with a content stream for regular
    files (valid until the next member is requested) and None otherwise. The root "/" is skipped.
    """
    where = os.fspath(deb)
    with open(deb, "rb") as f:
        members = _ar_members(f, where)
        _check_version(f, members, where)
        with _open_tar(f, members, "data", where) as tar:
            for info in tar:
                path = _member_path(info.name, where)
                if path == "/":
                    continue
                mode = info.mode & 0o7777
                if info.isreg():
                    yield DebMember(path, "file", mode, info.size), tar.extractfile(info)
                elif info.isdir():
                    yield DebMember(path, "dir", mode, 0), None
                elif info.issym():
                    yield DebMember(path, "symlink", mode, 0, info.linkname), None
                elif info.islnk():
                    yield DebMember(path, "hardlink", mode, 0, _member_path(info.linkname, where)), None
                else:
                    raise DebFormatError(f"{where}: {path} is a device or fifo, which a layer cannot carry")
