"""build-support/lock_debian.py against a fake mirror on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import lzma
import sys
from pathlib import Path
from types import ModuleType

import pytest

from aegis_plugin.core.debian.lock import parse_lock
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


def publish(
    root: Path, suite: str, paragraphs: list[str], by_hash: bool = True, corrupt: bool = False
) -> None:
    """Write dists/<suite>/{InRelease, main/binary-amd64/Packages.xz} as the archive lays them out."""
    dists = root / "debian/dists" / suite
    binary = dists / "main/binary-amd64"
    binary.mkdir(parents=True)
    data = lzma.compress("\n".join(paragraphs).encode())
    digest = hashlib.sha256(data).hexdigest()
    (binary / "Packages.xz").write_bytes(data)
    if by_hash:
        (binary / "by-hash/SHA256").mkdir(parents=True)
        (binary / "by-hash/SHA256" / digest).write_bytes(data)
    listed = "0" * 64 if corrupt else digest
    (dists / "InRelease").write_text(
        f"Suite: {suite}\nAcquire-By-Hash: {'yes' if by_hash else 'no'}\nSHA256:\n"
        f" {listed} {len(data)} main/binary-amd64/Packages.xz\n"
    )


@pytest.fixture
def mirrors(tmp_path: Path) -> Path:
    publish(
        tmp_path / "main",
        "bookworm",
        [
            para("libc6", "2.36-9"),
            para("app", "1.0", "libc6 (>= 2.34), debconf | debconf-2.0"),
            para("other", "1"),
        ],
    )
    publish(
        tmp_path / "security",
        "bookworm-security",
        [para("app", "1.0+deb12u1", "libc6 (>= 2.34), debconf")],
        by_hash=False,
    )
    return tmp_path


def write_spec(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "base.packages"
    spec.write_text(text)
    return spec


def test_writes_a_sorted_host_free_lock(tool: ModuleType, mirrors: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "app\nlibc6\n!ignore debconf\n")
    with serve_directory(mirrors / "main") as main, serve_directory(mirrors / "security") as security:
        args = [str(spec), "--mirror", main, "--security-mirror", security]
        assert tool.main(args) == 0
        first = (tmp_path / "base.lock").read_text()
        assert tool.main(args) == 0
        assert (tmp_path / "base.lock").read_text() == first  # deterministic
    packages = parse_lock(first)
    assert [(p.name, p.version, p.suite) for p in packages] == [
        ("app", "1.0+deb12u1", "bookworm-security"),
        ("libc6", "2.36-9", "bookworm"),
    ]
    assert "127.0.0.1" not in first and "http" not in first
    assert "python3 build-support/lock_debian.py" in first.splitlines()[2]


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
        assert "cannot read bookworm from" in capsys.readouterr().err


def test_index_must_match_the_release_file(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(tmp_path / "bad", "bookworm", [para("libc6", "2.36-9")], by_hash=False, corrupt=True)
    spec = write_spec(tmp_path, "libc6\n")
    with serve_directory(tmp_path / "bad") as main:
        assert tool.main([str(spec), "--mirror", main, "--security-mirror", "none"]) == 1
    assert "the Release file says" in capsys.readouterr().err
