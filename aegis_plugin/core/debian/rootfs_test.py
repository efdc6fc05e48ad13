from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from aegis_plugin.core.debian.deb822 import parse_paragraph
from aegis_plugin.core.debian.lock import DebPackage, LockError
from aegis_plugin.core.debian.rootfs import (
    CA_BUNDLE,
    OPENSSL_CAFILE,
    LayerEntry,
    RootfsError,
    base_entries,
    build_base,
    file_mode,
    installed_size,
    materialize,
)
from aegis_plugin.core.debian.testutil import M, build_deb, locked


LIBC_COPYRIGHT = b"See /usr/share/common-licenses/LGPL-2.1.\n"


def content(entry: LayerEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    assert entry.source is not None
    return Path(entry.source).read_bytes()


def by_path(entries: list[LayerEntry]) -> dict[str, LayerEntry]:
    return {entry.path: entry for entry in entries}


@pytest.fixture
def debs(tmp_path: Path) -> tuple[list[Path], list[DebPackage]]:
    """A tiny "distribution": a python, a library, and a package with certificates."""
    python = build_deb(
        tmp_path / "python3.11-minimal_3.11.2-6_amd64.deb",
        "python3.11-minimal",
        "3.11.2-6",
        [
            M("/usr/bin/python3.11", content=b"\x7fELF python", mode=0o755),
            M("/usr/share/doc/python3.11-minimal/copyright", content=b"PSF\n", mode=0o600),
            M("/usr/bin/python3.11-alias", "hardlink", target="/usr/bin/python3.11", mode=0o755),
        ],
        depends="libc6 (>= 2.35)",
    )
    libc = build_deb(
        tmp_path / "libc6_2.36-9_amd64.deb",
        "libc6",
        "2.36-9",
        [
            M("/lib/x86_64-linux-gnu/libc.so.6", content=b"\x7fELF libc", mode=0o4755),
            M("/lib64/ld-linux-x86-64.so.2", "symlink", target="/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            M("/usr/share/doc/libc6/copyright", content=LIBC_COPYRIGHT),
            M("/etc/ld.so.conf.d/libc.conf", content=b"/usr/local/lib\n"),
        ],
        conffiles=["/etc/ld.so.conf.d/libc.conf"],
    )
    certs = build_deb(
        tmp_path / "ca-certificates_1_all.deb",
        "ca-certificates",
        "1",
        [
            M("/usr/share/ca-certificates/mozilla/B.crt", content=b"-----B-----"),
            M("/usr/share/ca-certificates/mozilla/A.crt", content=b"-----A-----\n"),
            M("/etc/ssl/certs", "dir"),
        ],
    )
    paths = [python, libc, certs]
    packages = [
        locked(python, "python3.11-minimal", "3.11.2-6", suite="bookworm-security"),
        locked(libc, "libc6", "2.36-9"),
        locked(certs, "ca-certificates", "1"),
    ]
    return paths, packages


def test_files_modes_and_links(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    entries = by_path(base_entries(*debs, tmp_path / "work"))
    python = entries["/usr/bin/python3.11"]
    assert (python.kind, python.mode, content(python)) == ("file", 0o755, b"\x7fELF python")
    assert python.source is not None and str(python.source).startswith(str(tmp_path / "work"))
    # made readable for uid 65532; setuid dropped
    assert entries["/usr/share/doc/python3.11-minimal/copyright"].mode == 0o644
    assert entries["/lib/x86_64-linux-gnu/libc.so.6"].mode == 0o755
    # hardlinks become copies of their target
    alias = entries["/usr/bin/python3.11-alias"]
    assert (alias.kind, alias.mode, alias.source) == ("file", 0o755, python.source)
    assert entries["/lib64/ld-linux-x86-64.so.2"].linkname == "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert entries["/usr/bin/python3"] == LayerEntry(
        "/usr/bin/python3", "symlink", 0o777, linkname="python3.11"
    )
    assert entries["/usr/bin"].kind == "dir"


def test_file_mode() -> None:
    assert file_mode(0o600) == 0o644
    assert file_mode(0o700) == 0o744
    assert file_mode(0o4755) == 0o755
    assert file_mode(0o755) == 0o755


def test_status_records(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    entries = by_path(base_entries(*debs, tmp_path / "work"))
    record = content(entries["/var/lib/dpkg/status.d/python3.11-minimal"]).decode()
    assert record.startswith("Package: python3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6\n")
    fields = parse_paragraph(record)
    assert (fields["Architecture"], fields["Depends"]) == ("amd64", "libc6 (>= 2.35)")
    assert entries["/var/lib/dpkg/status.d/python3.11-minimal"].mode == 0o644
    sums = content(entries["/var/lib/dpkg/status.d/libc6.md5sums"]).decode()
    assert "  lib/x86_64-linux-gnu/libc.so.6\n" in sums
    assert entries["/var/lib/dpkg/status.d"].kind == "dir"


def test_conffiles_are_recorded_in_the_status_record(
    tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]
) -> None:
    entries = by_path(base_entries(*debs, tmp_path / "work"))
    record = content(entries["/var/lib/dpkg/status.d/libc6"]).decode()
    md5 = hashlib.md5(b"/usr/local/lib\n").hexdigest()
    assert record.endswith(f"Conffiles:\n /etc/ld.so.conf.d/libc.conf {md5}\n")
    assert parse_paragraph(record)["Conffiles"] == f"\n /etc/ld.so.conf.d/libc.conf {md5}"
    assert "libc.conf" not in content(entries["/var/lib/dpkg/status.d/libc6.md5sums"]).decode()
    assert "Conffiles" not in content(entries["/var/lib/dpkg/status.d/ca-certificates"]).decode()


def test_installed_packages_report_their_files_and_licenses(
    tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]
) -> None:
    base = build_base(*debs, tmp_path / "work")
    packages = {p.package.name: p for p in base.packages}
    assert [p.package.name for p in base.packages] == ["ca-certificates", "libc6", "python3.11-minimal"]
    libc = packages["libc6"]
    assert libc.files == (
        "/etc/ld.so.conf.d/libc.conf",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/usr/share/doc/libc6/copyright",
    )
    assert libc.licenses == ("LGPL-2.1",)
    assert packages["python3.11-minimal"].licenses == ()  # a copyright file declaring nothing readable
    assert packages["python3.11-minimal"].copyright_file == "/usr/share/doc/python3.11-minimal/copyright"
    assert packages["ca-certificates"].copyright_file == ""  # it ships none
    assert "/usr/bin/python3.11-alias" in packages["python3.11-minimal"].files
    as_json = libc.to_json()
    assert (as_json["source"], as_json["sha256"], as_json["licenses"]) == ("libc6", libc.package.sha256, ["LGPL-2.1"])
    # The .deb's SHA-512, for the SBOM's distribution file, from the same read that checked its sha256.
    (libc_deb,) = [d for d in debs[0] if d.name.startswith("libc6")]
    assert as_json["sha512"] == hashlib.sha512(libc_deb.read_bytes()).hexdigest()


def test_os_files(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    entries = by_path(base_entries(*debs, tmp_path / "work"))
    passwd = content(entries["/etc/passwd"]).decode().splitlines()
    assert passwd == [
        "root:x:0:0:root:/root:/sbin/nologin",
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",
    ]
    assert content(entries["/etc/group"]).decode().splitlines() == ["root:x:0:", "nonroot:x:65532:"]
    assert entries["/tmp"].mode == 0o1777
    assert entries["/home/nonroot"] == LayerEntry("/home/nonroot", "dir", 0o755)
    assert entries["/root"].mode == 0o700
    os_release = content(entries["/etc/os-release"]).decode()  # no base-files here
    assert "ID=debian\n" in os_release and 'VERSION_ID="12"' in os_release
    assert b"hosts: files dns\n" in content(entries["/etc/nsswitch.conf"])
    # the CA bundle update-ca-certificates would have written, in path order, newline-terminated
    assert content(entries[CA_BUNDLE]) == b"-----A-----\n-----B-----\n"
    assert entries[OPENSSL_CAFILE].linkname == CA_BUNDLE


def test_deterministic(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    paths, packages = debs
    first = base_entries(paths, packages, tmp_path / "work")
    again = base_entries(list(reversed(paths)), list(reversed(packages)), tmp_path / "work")
    assert first == again
    assert [e.path for e in first] == sorted(e.path for e in first)
    other = base_entries(paths, packages, tmp_path / "elsewhere")
    assert [(e.path, e.kind, e.mode, e.linkname, content(e)) for e in other if e.kind == "file"] == [
        (e.path, e.kind, e.mode, e.linkname, content(e)) for e in first if e.kind == "file"
    ]
    assert installed_size(first) == installed_size(other) > 0


def test_conflicting_file_names_both_packages(
    tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]
) -> None:
    paths, packages = debs
    clash = build_deb(
        tmp_path / "clash_1_amd64.deb", "clash", "1", [M("/usr/bin/python3.11", content=b"other")]
    )
    with pytest.raises(
        RootfsError, match=r"/usr/bin/python3\.11 is shipped by both clash and python3\.11-minimal"
    ):
        base_entries(paths + [clash], packages + [locked(clash, "clash", "1")], tmp_path / "work")


def test_identical_files_and_directories_merge(
    tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]
) -> None:
    paths, packages = debs
    same = build_deb(
        tmp_path / "same_1_amd64.deb",
        "same",
        "1",
        [M("/usr/share/doc/libc6/copyright", content=LIBC_COPYRIGHT), M("/etc/ssl/certs", "dir")],
    )
    entries = by_path(base_entries(paths + [same], packages + [locked(same, "same", "1")], tmp_path / "work"))
    assert content(entries["/usr/share/doc/libc6/copyright"]) == LIBC_COPYRIGHT


def test_generated_files_conflict_with_packaged_ones(
    tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]
) -> None:
    paths, packages = debs
    passwd = build_deb(
        tmp_path / "base-passwd_1_amd64.deb", "base-passwd", "1", [M("/etc/passwd", content=b"root::0:0\n")]
    )
    with pytest.raises(RootfsError, match="/etc/passwd is shipped by both base-passwd and"):
        base_entries(paths + [passwd], packages + [locked(passwd, "base-passwd", "1")], tmp_path / "work")


def test_sha256_mismatch(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    paths, packages = debs
    wrong = [dataclasses.replace(p, sha256="f" * 64) if p.name == "libc6" else p for p in packages]
    with pytest.raises(
        LockError, match=f"^libc6 2.36-9: .* has sha256 [0-9a-f]{{64}}, the lock expects {'f' * 64}$"
    ):
        base_entries(paths, wrong, tmp_path / "work")


def test_missing_and_unknown_debs(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    paths, packages = debs
    with pytest.raises(RootfsError, match="no .deb given for: libc6"):
        base_entries([p for p in paths if "libc6" not in p.name], packages, tmp_path / "work")
    stray = build_deb(tmp_path / "stray_1_amd64.deb", "stray", "1")
    with pytest.raises(RootfsError, match="stray_1_amd64.deb is not in the lock"):
        base_entries(paths + [stray], packages, tmp_path / "work")


def test_materialize(tmp_path: Path, debs: tuple[list[Path], list[DebPackage]]) -> None:
    root = tmp_path / "root"
    materialize(base_entries(*debs, tmp_path / "work"), root)
    assert (root / "usr/bin/python3.11").read_bytes() == b"\x7fELF python"
    assert (root / "usr/bin/python3").resolve() == (root / "usr/bin/python3.11")
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "etc/passwd").read_text().startswith("root:")
