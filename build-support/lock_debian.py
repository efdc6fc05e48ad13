#!/usr/bin/env python3
"""Refresh a Debian package lock from its spec: the ONE command to run after editing a spec, or to
pick up security updates.

    python3 build-support/lock_debian.py 3rdparty/debian/python3.11-bookworm.packages

It reads Packages.xz of ``<suite>``, ``<suite>-updates`` and (when reachable) ``<suite>-security``
from the mirrors in this machine's apt sources (or ``--mirror``/``--security-mirror``), for each
architecture (``--arch``, default amd64 and arm64), takes the newest version of every listed package,
checks that each architecture's set satisfies its own Depends and Pre-Depends (except the spec's
``!ignore`` names), and writes ``<spec minus .packages>.lock`` beside the spec: a paragraph per
package and architecture, one for an ``Architecture: all`` package. Release files are GPG-checked
with ``gpgv`` when it and the source's keyring exist, and every Packages.xz is checked against the
Release file's sha256. No host name goes into the lock.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the lock format and checks live in the plugin's core

from aegis_plugin.core.debian.deb822 import parse_paragraphs  # noqa: E402
from aegis_plugin.core.debian.errors import DebianError  # noqa: E402
from aegis_plugin.core.debian.index import (  # noqa: E402
    IndexEntry,
    parse_packages,
    select_newest,
    unsatisfied,
    unused_ignores,
)
from aegis_plugin.core.debian.lock import DebPackage, format_lock  # noqa: E402
from aegis_plugin.core.debian.sources import find_source, read_apt_sources  # noqa: E402
from aegis_plugin.core.debian.spec import Spec, parse_spec  # noqa: E402

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_ARCHITECTURES = "amd64,arm64"  # the platforms images are built for (`model_package`'s `platforms`)
TIMEOUT = 60


@dataclass(frozen=True)
class Suite:
    name: str
    mirror: str
    keyring: str  # used only if it exists
    required: bool


def note(message: str) -> None:
    print(f"lock_debian: {message}", file=sys.stderr)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.read()


def unsigned_body(clearsigned: str) -> str:
    """The message of a clearsigned text, without checking the signature."""
    if not clearsigned.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return clearsigned
    body = clearsigned.split("\n\n", 1)[1].split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body.splitlines())


@functools.lru_cache(maxsize=None)
def release_text(suite: Suite) -> str | None:
    """The suite's InRelease content, GPG-verified when gpgv and a keyring are available; fetched once per
    suite, whatever the number of architectures locked."""
    url = f"{suite.mirror.rstrip('/')}/dists/{suite.name}/InRelease"
    try:
        signed = http_get(url)
    except (urllib.error.URLError, OSError) as e:
        note(f"{suite.name}: no InRelease ({e}); Packages.xz is taken unchecked")
        return None
    gpgv = shutil.which("gpgv")
    keyring = suite.keyring if os.path.exists(suite.keyring) else None
    if not gpgv or not keyring:
        note(
            f"{suite.name}: InRelease not GPG-verified (gpgv: {gpgv or 'missing'}, keyring: {keyring or 'missing'})"
        )
        return unsigned_body(signed.decode("utf-8", "replace"))  # still catches a corrupt Packages.xz
    with tempfile.TemporaryDirectory() as tmp:
        signed_path, out_path = Path(tmp, "InRelease"), Path(tmp, "Release")
        signed_path.write_bytes(signed)
        result = subprocess.run(
            [gpgv, "--keyring", keyring, "--output", str(out_path), str(signed_path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise DebianError(f"{suite.name}: InRelease signature check failed:\n{result.stderr.strip()}")
        return out_path.read_text(encoding="utf-8", errors="replace")


def packages_index(suite: Suite, arch: str) -> bytes:
    """Packages.xz of ``main`` for ``arch``, checked against the Release file when there is one."""
    release = release_text(suite)
    path = f"main/binary-{arch}/Packages.xz"
    url_path = path
    expected: tuple[str, int] | None = None
    if release is not None:
        fields = parse_paragraphs(release)[0]
        for line in fields.get("SHA256", "").splitlines():
            words = line.split()
            if len(words) == 3 and words[2] == path:
                expected = (words[0], int(words[1]))
        if expected is None:
            raise DebianError(f"{suite.name}: the Release file lists no {path}")
        if fields.get("Acquire-By-Hash", "no").lower() == "yes":  # immune to a mirror mid-sync
            url_path = f"main/binary-{arch}/by-hash/SHA256/{expected[0]}"
    data = http_get(f"{suite.mirror.rstrip('/')}/dists/{suite.name}/{url_path}")
    if expected is not None:
        actual = (hashlib.sha256(data).hexdigest(), len(data))
        if actual != expected:
            raise DebianError(f"{suite.name}: {path} is {actual}, the Release file says {expected}")
    return lzma.decompress(data)


def suites_to_read(args: argparse.Namespace) -> list[Suite]:
    sources = read_apt_sources()

    def from_apt(name: str) -> tuple[str, str] | None:
        source = find_source(sources, name)
        return (source.uri, source.signed_by or DEFAULT_KEYRING) if source else None

    if args.mirror:
        main = (args.mirror, DEFAULT_KEYRING)
        updates = main
    else:
        found = from_apt(args.suite)
        if found is None:
            raise DebianError(f"no apt source serves '{args.suite} main'; pass --mirror")
        main = found
        updates = from_apt(f"{args.suite}-updates") or main
    suites = [
        Suite(args.suite, main[0], main[1], required=True),
        Suite(f"{args.suite}-updates", updates[0], updates[1], required=False),
    ]
    if args.security_mirror != "none":
        security = (
            (args.security_mirror, DEFAULT_KEYRING)
            if args.security_mirror
            else from_apt(f"{args.suite}-security")
        )
        if security is None:
            note(f"no apt source serves {args.suite}-security; security updates are not considered")
        else:
            suites.append(Suite(f"{args.suite}-security", security[0], security[1], required=False))
    return suites


def lock_path(spec: Path) -> Path:
    return spec.with_suffix(".lock") if spec.suffix == ".packages" else spec.with_name(spec.name + ".lock")


def regenerate_command(args: argparse.Namespace, spec: Path) -> str:
    try:
        shown = spec.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = spec
    command = f"python3 build-support/lock_debian.py {shown}"
    if args.arch != DEFAULT_ARCHITECTURES:
        command += f" --arch {args.arch}"
    if args.suite != "bookworm":
        command += f" --suite {args.suite}"
    return command  # never the mirror: no host names in committed files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="the .packages spec; the lock is written beside it")
    parser.add_argument(
        "--arch", default=DEFAULT_ARCHITECTURES,
        help=f"Debian architectures, comma-separated (default: {DEFAULT_ARCHITECTURES})",
    )
    parser.add_argument("--suite", default="bookworm", help="Debian suite (default: bookworm)")
    parser.add_argument("--mirror", help="mirror root for the suite and -updates (default: from apt sources)")
    parser.add_argument(
        "--security-mirror", help="mirror root for -security (default: from apt sources; 'none' skips it)"
    )
    args = parser.parse_args(argv)

    arches = [a for a in args.arch.split(",") if a]
    try:
        spec = parse_spec(args.spec.read_text(), where=str(args.spec))
        suites = suites_to_read(args)
        selected = {arch: select_for(spec, suites, arch) for arch in arches}
        locked = merge_architectures(selected)
    except DebianError as e:
        print(f"lock_debian: error: {e}", file=sys.stderr)
        return 1
    unused = [name for arch in arches for name in unused_ignores(selected[arch], spec.ignored)]
    for name in sorted({name for name in unused if unused.count(name) == len(arches)}):
        note(f"'!ignore {name}' is not needed by any selected package")

    out = lock_path(args.spec)
    header = [
        f"Debian package lock for {args.spec.name}: suite {args.suite}, architectures {', '.join(arches)}.",
        "Generated; do not edit. Regenerate with:",
        f"  {regenerate_command(args, args.spec)}",
        "Filename is relative to the mirror serving Suite (apt sources, or the mirror option).",
    ]
    out.write_text(format_lock(locked, header))
    for arch in arches:
        debs = sum(entry.package.size for entry in selected[arch].values())
        installed = sum(entry.installed_size_kib for entry in selected[arch].values())
        note(
            f"{arch}: {len(selected[arch])} packages, {debs / 1e6:.1f} MB of .debs, ~{installed / 1024:.1f} MiB "
            f"installed"
        )
    note(f"wrote {out}")
    return 0


def select_for(spec: Spec, suites: list[Suite], arch: str) -> dict[str, IndexEntry]:
    """The newest version of every package of the spec for one architecture, its dependencies checked."""
    indexes: list[list[IndexEntry]] = []
    for suite in suites:
        try:
            text = packages_index(suite, arch).decode("utf-8")
        except (urllib.error.URLError, OSError) as e:
            if suite.required:
                raise DebianError(f"cannot read {suite.name} ({arch}) from {suite.mirror}: {e}") from None
            note(f"skipping {suite.name} ({arch}; {suite.mirror} unreachable: {e})")
            continue
        entries = parse_packages(text, suite.name, arch)
        note(f"{suite.name} ({arch}): {len(entries)} packages")
        indexes.append(entries)
    try:
        selected = select_newest(spec.packages, indexes)
    except DebianError as e:
        raise DebianError(f"{arch}: {e}") from None
    problems = unsatisfied(selected, spec.ignored)
    if problems:
        raise DebianError(
            f"unsatisfied dependencies on {arch} (add the package to the spec, or '!ignore NAME' with a "
            "reason):\n  " + "\n  ".join(problems)
        )
    return selected


def merge_architectures(selected: dict[str, dict[str, IndexEntry]]) -> list[DebPackage]:
    """Every architecture's packages; an `Architecture: all` package, the same file for all, once."""
    locked: dict[tuple[str, str], DebPackage] = {}
    for arch, entries in selected.items():
        for entry in entries.values():
            pkg = entry.package
            key = (pkg.name, pkg.architecture)
            if key in locked and locked[key] != pkg:
                raise DebianError(
                    f"{pkg.name} (all architectures): {arch} has {pkg.version}, another architecture "
                    f"{locked[key].version}: the mirror is mid-sync, try again"
                )
            locked[key] = pkg
    return list(locked.values())


if __name__ == "__main__":
    sys.exit(main())
