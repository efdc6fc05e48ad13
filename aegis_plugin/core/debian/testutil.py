"""Build tiny synthetic .deb files for tests (ar + tar.xz with the stdlib), so no real .deb is committed."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from aegis_plugin.core.debian.lock import DebPackage
from aegis_plugin.testutil.local_servers import serving


@dataclass(frozen=True)
class M:
    """A data member: kind "file" (content), "dir", "symlink" or "hardlink" (target)."""

    path: str
    kind: str = "file"
    content: bytes = b""
    mode: int = 0o644
    target: str = ""


def _ar(members: Sequence[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out.write(header.encode("ascii"))
        out.write(data)
        if len(data) % 2:
            out.write(b"\n")
    return out.getvalue()


def _tar(members: Sequence[tuple[tarfile.TarInfo, bytes | None]], compression: str) -> bytes:
    if compression == "zst":  # tarfile has no zstd before Python 3.14
        import zstandard  # type: ignore[import-not-found]

        return zstandard.ZstdCompressor().compress(_tar(members, ""))  # type: ignore[no-any-return]
    out = io.BytesIO()
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _info(name: str, kind: str, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
    }[kind]
    info.mode, info.size, info.linkname, info.mtime = mode, size, linkname, 0
    return info


def build_deb(
    path: str | Path,
    package: str,
    version: str = "1.0-1",
    members: Sequence[M] = (),
    *,
    architecture: str = "amd64",
    depends: str = "",
    md5sums: bool = True,
    conffiles: Sequence[str] = (),  # member paths dpkg treats as configuration (left out of md5sums)
    compression: str = "xz",  # "xz", "gz", "zst", "" (plain tar) or anything else to test errors
) -> Path:
    """Write a .deb whose data.tar lists parent directories first, as dpkg-deb does."""
    data: list[tuple[tarfile.TarInfo, bytes | None]] = [(_info("./", "dir", 0o755), None)]
    seen = {"/"}
    sums = []
    for member in members:
        parts = member.path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                data.append((_info(f".{parent}/", "dir", 0o755), None))
        seen.add(member.path)
        name = "." + member.path + ("/" if member.kind == "dir" else "")
        if member.kind == "file":
            data.append((_info(name, "file", member.mode, len(member.content)), member.content))
            if member.path not in conffiles:
                sums.append(f"{hashlib.md5(member.content).hexdigest()}  {member.path.lstrip('/')}\n")
        elif member.kind == "hardlink":
            data.append((_info(name, "hardlink", member.mode, linkname="." + member.target), None))
        else:
            data.append((_info(name, member.kind, member.mode, linkname=member.target), None))
    control = f"Package: {package}\nVersion: {version}\nArchitecture: {architecture}\n"
    control += "Maintainer: Test <t@example.invalid>\n"
    if depends:
        control += f"Depends: {depends}\n"
    control += f"Description: test package {package}\n a synthetic package\n"
    control_members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("./", "dir", 0o755), None),
        (_info("./control", "file", 0o644, len(control.encode())), control.encode()),
    ]
    if md5sums:
        text = "".join(sums).encode()
        control_members.append((_info("./md5sums", "file", 0o644, len(text)), text))
    if conffiles:
        text = "".join(f"{path}\n" for path in conffiles).encode()
        control_members.append((_info("./conffiles", "file", 0o644, len(text)), text))
    suffix = f".{compression}" if compression else ""
    tar_compression = compression if compression in ("xz", "gz", "zst", "") else ""
    out = Path(path)
    out.write_bytes(
        _ar(
            [
                ("debian-binary", b"2.0\n"),
                (f"control.tar{suffix}", _tar(control_members, tar_compression)),
                (f"data.tar{suffix}", _tar(data, tar_compression)),
            ]
        )
    )
    return out


def locked(deb: str | Path, name: str, version: str = "1.0-1", suite: str = "bookworm") -> DebPackage:
    """The lock entry matching ``deb`` as it is on disk."""
    content = Path(deb).read_bytes()
    return DebPackage(
        name=name,
        version=version,
        architecture="amd64",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        filename=f"pool/main/{name[0]}/{name}/{Path(deb).name}",
        source=name,
        source_version=version,
        suite=suite,
    )


@contextlib.contextmanager
def serve_directory(root: str | Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a fake mirror); yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as port:
        yield f"http://127.0.0.1:{port}/debian"
