from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aegis_plugin.core.debian.lock import (
    DebPackage,
    LockError,
    architectures,
    fetch_url,
    format_lock,
    packages_for,
    parse_lock,
    verify_deb,
)

PKG = DebPackage(
    name="libc6",
    version="2.36-9+deb12u10",
    architecture="amd64",
    sha256="a" * 64,
    size=2757936,
    filename="pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb",
    source="glibc",
    source_version="2.36-9+deb12u10",
    suite="bookworm",
)
OTHER = dataclasses.replace(
    PKG, name="zlib1g", filename="pool/main/z/zlib/zlib1g_1.2.13_amd64.deb", source="zlib"
)


def test_round_trip_sorted_and_deterministic() -> None:
    text = format_lock([OTHER, PKG], header=["how to regenerate", "  python3 build-support/lock_debian.py x"])
    assert text == format_lock(
        [PKG, OTHER], header=["how to regenerate", "  python3 build-support/lock_debian.py x"]
    )
    assert text.startswith(
        "# how to regenerate\n#   python3 build-support/lock_debian.py x\n\nPackage: libc6\n"
    )
    assert parse_lock(text) == [PKG, OTHER]
    assert "://" not in text


@pytest.mark.parametrize(
    "change, message",
    [
        (("SHA256: " + "a" * 64, "SHA256: abc"), "64 lowercase hex"),
        (("Size: 2757936", "Size: big"), "Size is not a number"),
        (("Filename: pool/", "Filename: http://h/pool/"), "archive-relative"),
        (("Filename: pool/", "Filename: ../pool/"), "archive-relative"),
        (("Suite: bookworm\n", ""), "missing field"),
    ],
)
def test_malformed(change: tuple[str, str], message: str) -> None:
    text = format_lock([PKG]).replace(*change)
    with pytest.raises(LockError, match=message):
        parse_lock(text)


def test_duplicates_and_empty() -> None:
    with pytest.raises(LockError, match="twice"):
        parse_lock(format_lock([PKG]) + "\n" + format_lock([PKG]))
    with pytest.raises(LockError, match="no packages"):
        parse_lock("# only a comment\n")


def test_fetch_url() -> None:
    pkg = dataclasses.replace(
        PKG, filename="pool/updates/main/c/ca-certificates/ca-certificates_20250419~deb12u2_all.deb"
    )
    assert (
        fetch_url("http://mirror.example.invalid/debian/", pkg)
        == "http://mirror.example.invalid/debian/pool/updates/main/c/ca-certificates/ca-certificates_20250419~deb12u2_all.deb"
    )
    assert pkg.deb_basename == "ca-certificates_20250419~deb12u2_all.deb"


def test_verify_deb(tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"hello")
    good = dataclasses.replace(
        PKG, size=5, sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    verify_deb(deb, good)
    with pytest.raises(
        LockError, match=r"^libc6 2\.36-9\+deb12u10: .*x\.deb has size 5, the lock expects 6$"
    ):
        verify_deb(deb, dataclasses.replace(good, size=6))
    bad = dataclasses.replace(good, sha256="b" * 64)
    with pytest.raises(LockError, match=f"has sha256 {good.sha256}, the lock expects {'b' * 64}$"):
        verify_deb(deb, bad)


def test_one_lock_for_every_architecture() -> None:
    arm64 = dataclasses.replace(PKG, architecture="arm64", filename="pool/main/g/glibc/libc6_arm64.deb")
    tzdata = dataclasses.replace(PKG, name="tzdata", architecture="all", filename="pool/main/t/tzdata/tzdata.deb")
    packages = parse_lock(format_lock([tzdata, arm64, PKG]))
    assert packages == [PKG, arm64, tzdata] and architectures(packages) == ["amd64", "arm64"]
    assert packages_for(packages, "arm64", "b.lock") == [arm64, tzdata]
    assert packages_for(packages, "amd64", "b.lock") == [PKG, tzdata]
    with pytest.raises(LockError, match=r"^b.lock has no packages for riscv64 \(it locks amd64, arm64\)"):
        packages_for(packages, "riscv64", "b.lock")
    with pytest.raises(LockError, match=r"^lock: tzdata is locked both for all architectures and for one$"):
        parse_lock(format_lock([tzdata, dataclasses.replace(tzdata, architecture="amd64")]))
