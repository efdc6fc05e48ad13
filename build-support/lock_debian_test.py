"""build-support/lock_debian.py against a fake mirror on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import lzma
import sys
from pathlib import Path
from types import ModuleType

import pytest

from aegis_plugin.core.debian.lock import LockError, packages_for, parse_lock
from aegis_plugin.core.debian.testutil import serve_directory

SCRIPT = Path(__file__).resolve().parent / "lock_debian.py"


@pytest.fixture
def tool(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_debian", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "lock_debian", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DEFAULT_KEYRING", "/nonexistent/keyring.gpg")  # our Release is unsigned
    return module


def para(name: str, version: str, depends: str = "", arch: str = "amd64") -> str:
    digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    text = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nInstalled-Size: 100\n"
    if depends:
        text += f"Depends: {depends}\n"
    return (
        text
        + f"Filename: pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb\nSize: 1000\nSHA256: {digest}\n"
    )


ARCHES = ("amd64", "arm64")


def publish(
    root: Path, suite: str, packages: list[tuple], by_hash: bool = True, corrupt: bool = False,
    arches: tuple = ARCHES,
) -> None:
    """Write dists/<suite>/{InRelease, main/binary-<arch>/Packages.xz} as the archive lays them out.
    `packages`: (name, version, depends[, "all"]), listed for every architecture."""
    dists = root / "debian/dists" / suite
    listed = []
    for arch in arches:
        binary = dists / f"main/binary-{arch}"
        binary.mkdir(parents=True)
        paragraphs = [para(name, version, depends, arch=(kind[0] if kind else arch))
                      for name, version, depends, *kind in packages]
        data = lzma.compress("\n".join(paragraphs).encode())
        digest = hashlib.sha256(data).hexdigest()
        (binary / "Packages.xz").write_bytes(data)
        if by_hash:
            (binary / "by-hash/SHA256").mkdir(parents=True)
            (binary / "by-hash/SHA256" / digest).write_bytes(data)
        listed.append(f" {'0' * 64 if corrupt else digest} {len(data)} main/binary-{arch}/Packages.xz\n")
    (dists / "InRelease").write_text(
        f"Suite: {suite}\nAcquire-By-Hash: {'yes' if by_hash else 'no'}\nSHA256:\n" + "".join(listed)
    )


@pytest.fixture
def mirrors(tmp_path: Path) -> Path:
    publish(
        tmp_path / "main",
        "bookworm",
        [
            ("libc6", "2.36-9", ""),
            ("app", "1.0", "libc6 (>= 2.34), debconf | debconf-2.0, tzdata"),
            ("other", "1", ""),
            ("tzdata", "2025b", "", "all"),
        ],
    )
    publish(
        tmp_path / "security",
        "bookworm-security",
        [("app", "1.0+deb12u1", "libc6 (>= 2.34), debconf, tzdata")],
        by_hash=False,
    )
    return tmp_path


def write_spec(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "base.packages"
    spec.write_text(text)
    return spec


def test_writes_a_sorted_host_free_lock_for_both_architectures(
    tool: ModuleType, mirrors: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, "app\nlibc6\ntzdata\n!ignore debconf\n")
    with serve_directory(mirrors / "main") as main, serve_directory(mirrors / "security") as security:
        args = [str(spec), "--mirror", main, "--security-mirror", security]
        assert tool.main(args) == 0
        first = (tmp_path / "base.lock").read_text()
        assert tool.main(args) == 0
        assert (tmp_path / "base.lock").read_text() == first  # deterministic
    packages = parse_lock(first)
    assert [(p.name, p.architecture, p.version, p.suite) for p in packages] == [
        ("app", "amd64", "1.0+deb12u1", "bookworm-security"),
        ("app", "arm64", "1.0+deb12u1", "bookworm-security"),
        ("libc6", "amd64", "2.36-9", "bookworm"),
        ("libc6", "arm64", "2.36-9", "bookworm"),
        ("tzdata", "all", "2025b", "bookworm"),  # one file for every architecture: locked once
    ]
    assert [p.name for p in packages_for(packages, "arm64", "base.lock")] == ["app", "libc6", "tzdata"]
    assert "127.0.0.1" not in first and "http" not in first
    assert "architectures amd64, arm64" in first.splitlines()[0]
    assert first.splitlines()[2] == f"#   python3 build-support/lock_debian.py {spec}"


def test_one_architecture(tool: ModuleType, mirrors: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "libc6\n")
    with serve_directory(mirrors / "main") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", "none", "--arch", "arm64"]) == 0
    text = (tmp_path / "base.lock").read_text()
    assert [(p.name, p.architecture) for p in parse_lock(text)] == [("libc6", "arm64")]
    assert text.splitlines()[2].endswith("--arch arm64")
    with pytest.raises(LockError, match=r"^base.lock has no packages for amd64 \(it locks arm64\): lock it with "
                                        r"`python3 build-support/lock_debian.py <spec> --arch amd64,arm64`$"):
        packages_for(parse_lock(text), "amd64", "base.lock")


def test_a_package_missing_on_one_architecture_fails(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(tmp_path / "amd64-only", "bookworm", [("libc6", "2.36-9", "")], arches=("amd64",))
    spec = write_spec(tmp_path, "libc6\n")
    with serve_directory(tmp_path / "amd64-only") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", "none"]) == 1
    assert "the Release file lists no main/binary-arm64/Packages.xz" in capsys.readouterr().err
    assert not (tmp_path / "base.lock").exists()


def test_unsatisfied_dependencies_fail(
    tool: ModuleType, mirrors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, "app\n")
    with serve_directory(mirrors / "main") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", "none"]) == 1
    err = capsys.readouterr().err
    assert "app Depends: libc6 (>= 2.34)" in err and "app Depends: debconf | debconf-2.0" in err
    assert not (tmp_path / "base.lock").exists()


def test_unreachable_main_suite_fails_security_is_optional(
    tool: ModuleType, mirrors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, "libc6\n")
    with serve_directory(mirrors / "main") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", main + "-nowhere"]) == 0
        assert "skipping bookworm-security" in capsys.readouterr().err
        assert tool.main([str(spec), "--mirror", main + "-nowhere", "--security-mirror", "none"]) == 1
        assert "cannot read bookworm (amd64) from" in capsys.readouterr().err


def test_index_must_match_the_release_file(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(tmp_path / "bad", "bookworm", [("libc6", "2.36-9", "")], by_hash=False, corrupt=True)
    spec = write_spec(tmp_path, "libc6\n")
    with serve_directory(tmp_path / "bad") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", "none"]) == 1
    assert "the Release file says" in capsys.readouterr().err
