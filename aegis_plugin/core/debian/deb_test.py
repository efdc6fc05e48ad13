from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aegis_plugin.core.debian.deb import DebFormatError, DebMember, iter_data, read_control
from aegis_plugin.core.debian.testutil import M, build_deb
from aegis_plugin.core.oci.compression import ZstdUnavailableError

MEMBERS = [
    M("/usr/bin/tool", content=b"#!/bin/true\n", mode=0o755),
    M("/usr/lib/libx.so.1.2", content=b"odd-sized!"),
    M("/usr/lib/libx.so.1", "symlink", target="libx.so.1.2"),
    M("/usr/bin/tool2", "hardlink", target="/usr/bin/tool", mode=0o755),
    M("/var/cache/x", "dir", mode=0o700),
]


def read_all(deb: Path) -> list[tuple[DebMember, bytes | None]]:
    return [(member, stream.read() if stream else None) for member, stream in iter_data(deb)]


@pytest.mark.parametrize("compression", ["xz", "gz", "zst", ""])
def test_data_members(tmp_path: Path, compression: str) -> None:
    deb = build_deb(tmp_path / "x.deb", "libx", members=MEMBERS, compression=compression)
    found = {member.path: (member, content) for member, content in read_all(deb)}
    assert "/" not in found
    assert found["/usr"] == (DebMember("/usr", "dir", 0o755, 0), None)
    assert found["/usr/bin/tool"] == (DebMember("/usr/bin/tool", "file", 0o755, 12), b"#!/bin/true\n")
    assert found["/usr/lib/libx.so.1.2"][1] == b"odd-sized!"
    assert found["/usr/lib/libx.so.1"][0] == DebMember(
        "/usr/lib/libx.so.1", "symlink", 0o644, 0, "libx.so.1.2"
    )
    assert found["/usr/bin/tool2"][0].kind == "hardlink"
    assert found["/usr/bin/tool2"][0].linkname == "/usr/bin/tool"
    assert found["/var/cache/x"][0].mode == 0o700


def test_control_and_md5sums(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "x.deb", "libx", "2.0-1", MEMBERS, depends="libc6 (>= 2.34)")
    control = read_control(deb)
    assert control.fields["Package"] == "libx"
    assert control.fields["Version"] == "2.0-1"
    assert control.fields["Depends"] == "libc6 (>= 2.34)"
    assert control.control.startswith("Package: libx\n")
    assert control.md5sums is not None
    assert "  usr/bin/tool\n" in control.md5sums
    no_sums = build_deb(tmp_path / "y.deb", "liby", md5sums=False)
    assert read_control(no_sums).md5sums is None


def test_not_a_deb(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(DebFormatError, match="not an ar archive"):
        read_control(bogus)


def test_zstd_without_the_module_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = build_deb(tmp_path / "z.deb", "libz", members=MEMBERS, compression="zst")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # what an interpreter without it does on import
    with pytest.raises(ZstdUnavailableError, match=r"z\.deb: its zstd data needs the 'zstandard' Python package"):
        read_control(deb)


def test_unsupported_compression(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "l.deb", "libl", members=MEMBERS, compression="lz4")
    with pytest.raises(DebFormatError, match="unsupported compression control.tar.lz4"):
        read_control(deb)


def test_unsafe_path(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "evil.deb", "evil", members=[M("/usr/../../etc/passwd", content=b"x")])
    with pytest.raises(DebFormatError, match="unsafe path"):
        read_all(deb)
