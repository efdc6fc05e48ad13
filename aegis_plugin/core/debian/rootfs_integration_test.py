"""The real lock, end to end, for each architecture it locks: download the .debs from this machine's mirror,
build the base entries, unpack them, and run the Python inside with bwrap (``apt-get install -y bubblewrap``);
an arm64 base runs under qemu user-mode emulation (``apt-get install -y qemu-user-static``)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aegis_plugin.core.debian.fetch import fetch_debs
from aegis_plugin.core.debian.lock import packages_for, parse_lock
from aegis_plugin.core.debian.rootfs import base_entries, installed_size, materialize
from aegis_plugin.core.debian.sources import mirror_for_suite, read_apt_sources

REPO = Path(__file__).resolve().parents[3]
LOCK = REPO / "3rdparty/debian/python3.11-bookworm.lock"
CHECK = "import ssl, json, sqlite3, zlib, ctypes; print(42)"


def suite_mirrors(suites: set[str]) -> dict[str, str]:
    """suite -> mirror root from apt sources. The Debian mirror is reachable wherever the tests run: a
    missing or unreachable one fails the test rather than skipping it."""
    sources = read_apt_sources()
    mirrors = {}
    for suite in sorted(suites):
        mirror = mirror_for_suite(sources, suite)
        if mirror is None:
            pytest.fail(f"no apt source on this machine serves {suite} main")
        mirrors[suite] = mirror
    for suite, mirror in sorted(mirrors.items()):
        try:
            urllib.request.urlopen(f"{mirror.rstrip('/')}/dists/{suite}/InRelease", timeout=20).close()
        except (urllib.error.URLError, OSError) as e:
            pytest.fail(f"the Debian mirror for {suite} ({mirror}) is unreachable: {e}")
    return mirrors


EMULATORS = {"amd64": None, "arm64": "qemu-aarch64-static"}  # what runs the base's binaries on an amd64 host


def bwrap(root: Path, *command: str, nonroot: bool = False, emulator: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    user = ["--unshare-user", "--uid", "65532", "--gid", "65532"] if nonroot else []
    # The static emulator is bound in beside the image's files and runs the command's binary (and through it
    # the image's own dynamic loader and libraries).
    emulate = ["--ro-bind", str(shutil.which(emulator)), "/tmp/emulator"] if emulator else []
    return subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            str(root),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            *emulate,
            "--unshare-pid",
            *user,
            *(["/tmp/emulator"] if emulator else []),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("architecture", sorted(EMULATORS))
def test_python_runs_in_the_base(tmp_path: Path, capsys: pytest.CaptureFixture[str], architecture: str) -> None:
    packages = packages_for(parse_lock(LOCK.read_text()), architecture, LOCK.name)
    assert {pkg.architecture for pkg in packages} == {architecture, "all"}
    mirrors = suite_mirrors({pkg.suite for pkg in packages})
    assert shutil.which("bwrap"), "bwrap is needed: apt-get install -y bubblewrap"
    emulator = EMULATORS[architecture]
    assert emulator is None or shutil.which(emulator), f"{emulator} is needed: apt-get install -y qemu-user-static"

    debs = fetch_debs(packages, mirrors, tmp_path / "cache")
    entries = base_entries(debs, packages, tmp_path / "work")
    root = tmp_path / "root"
    materialize(entries, root)

    machine = bwrap(root, "/usr/bin/python3.11", "-c", "import platform; print(platform.machine())", emulator=emulator)
    assert machine.stdout == {"amd64": "x86_64\n", "arm64": "aarch64\n"}[architecture], machine.stderr
    result = bwrap(root, "/usr/bin/python3.11", "-c", CHECK, emulator=emulator)
    assert (result.returncode, result.stdout, result.stderr) == (0, "42\n", "")

    # as the image's user: modes readable, passwd resolves, the CA bundle loads, zoneinfo works
    check = (
        "import os, pwd, ssl, zoneinfo, http.server; "
        "print(pwd.getpwuid(os.getuid()).pw_name, ssl.create_default_context().cert_store_stats()['x509_ca'] > 100, "
        "zoneinfo.ZoneInfo('Europe/Paris').key)"
    )
    result = bwrap(root, "/usr/bin/python3", "-c", check, nonroot=True, emulator=emulator)
    assert (result.returncode, result.stdout, result.stderr) == (0, "nonroot True Europe/Paris\n", "")

    size = installed_size(entries)
    with capsys.disabled():
        summary = f"{len(packages)} packages, {len(entries)} entries"
        print(f"\n[debian base, {architecture}] {summary}, {size:,} bytes ({size / 2**20:.1f} MiB) installed")
    assert 35 * 2**20 < size < 65 * 2**20
