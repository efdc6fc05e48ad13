"""The Debian package lock: what to install, pinned by sha256, with no host name in it.

The lock is deb822 text (the format of Debian's own Packages files), one paragraph per package,
sorted by name, e.g.::

    Package: libc6
    Version: 2.36-9+deb12u10
    Architecture: amd64
    Source: glibc
    Source-Version: 2.36-9+deb12u10
    Suite: bookworm
    Filename: pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb
    Size: 2757936
    SHA256: 0f5b...

``Filename`` is relative to the mirror serving ``Suite``; the mirror comes from the machine's apt
sources or an option, never from the lock. The sha256 is the trust anchor: every .deb is checked
against it before use.

One lock serves every architecture an image is built for: each package has a paragraph per
architecture (``amd64``, ``arm64``), or one paragraph when it is ``Architecture: all``.
``packages_for`` takes an architecture's set.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Iterable, Sequence

from aegis_plugin.core.debian.deb822 import format_paragraph, parse_paragraphs
from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.digests import file_digests

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LockError(DebianError):
    """The lock is malformed, or a .deb does not match it."""


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    sha256: str
    size: int
    filename: str  # archive-relative, e.g. "pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb"
    source: str  # source package name (what Debian's security tracker is keyed by)
    source_version: str  # differs from version for binNMUs and some multi-binary sources
    suite: str  # e.g. "bookworm" or "bookworm-security": which mirror serves it

    @property
    def deb_basename(self) -> str:
        """The file name a fetcher stores the .deb under."""
        return self.filename.rsplit("/", 1)[-1]


_FIELDS = (
    ("Package", "name"),
    ("Version", "version"),
    ("Architecture", "architecture"),
    ("Source", "source"),
    ("Source-Version", "source_version"),
    ("Suite", "suite"),
    ("Filename", "filename"),
    ("Size", "size"),
    ("SHA256", "sha256"),
)


def format_lock(packages: Iterable[DebPackage], header: Iterable[str] = ()) -> str:
    """Render the lock: ``#`` header lines, then one paragraph per package sorted by name and architecture."""
    lines = [f"# {line}".rstrip() + "\n" for line in header]
    paragraphs = [
        format_paragraph((field, str(getattr(pkg, attr))) for field, attr in _FIELDS)
        for pkg in sorted(packages, key=lambda p: (p.name, p.architecture))
    ]
    return "".join(lines) + "\n" + "\n".join(paragraphs)


def _check(pkg: DebPackage) -> None:
    if not _SHA256.match(pkg.sha256):
        raise LockError(f"lock: {pkg.name}: SHA256 is not 64 lowercase hex digits: {pkg.sha256!r}")
    if pkg.size <= 0:
        raise LockError(f"lock: {pkg.name}: Size must be positive, got {pkg.size}")
    parts = pkg.filename.split("/")
    if (
        "://" in pkg.filename
        or pkg.filename.startswith("/")
        or ".." in parts
        or not pkg.filename.endswith(".deb")
    ):
        raise LockError(
            f"lock: {pkg.name}: Filename must be an archive-relative .deb path, got {pkg.filename!r}"
        )


def parse_lock(text: str) -> list[DebPackage]:
    """Read a lock; every field is required. Returns the packages sorted by name, then architecture."""
    packages: dict[tuple[str, str], DebPackage] = {}
    for para in parse_paragraphs(text):
        missing = [field for field, _ in _FIELDS if field not in para]
        name = para.get("Package", "?")
        if missing:
            raise LockError(f"lock: {name}: missing field(s) {', '.join(missing)}")
        values = {attr: para[field] for field, attr in _FIELDS}
        try:
            values["size"] = int(values["size"])  # type: ignore[assignment]
        except ValueError:
            raise LockError(f"lock: {name}: Size is not a number: {para['Size']!r}") from None
        pkg = DebPackage(**values)  # type: ignore[arg-type]
        _check(pkg)
        key = (pkg.name, pkg.architecture)
        if key in packages:
            raise LockError(f"lock: {pkg.name} ({pkg.architecture}) appears twice")
        packages[key] = pkg
    if not packages:
        raise LockError("lock: no packages")
    for name, architecture in packages:
        if architecture == "all" and any(n == name and a != "all" for n, a in packages):
            raise LockError(f"lock: {name} is locked both for all architectures and for one")
    return [packages[key] for key in sorted(packages)]


def architectures(packages: Iterable[DebPackage]) -> list[str]:
    """The architectures a lock has packages for (``all`` aside)."""
    return sorted({pkg.architecture for pkg in packages} - {"all"})


def packages_for(packages: Sequence[DebPackage], architecture: str, lock_name: str) -> list[DebPackage]:
    """The packages of one architecture's image: its own and the ``all`` ones, sorted by name."""
    if architecture not in architectures(packages):
        locked = architectures(packages)
        raise LockError(
            f"{lock_name} has no packages for {architecture} (it locks {', '.join(locked) or 'none'}): lock it "
            f"with `python3 build-support/lock_debian.py <spec> --arch {','.join(sorted({*locked, architecture}))}`"
        )
    return [pkg for pkg in packages if pkg.architecture in (architecture, "all")]


def fetch_url(mirror: str, pkg: DebPackage) -> str:
    """The download URL of ``pkg`` on ``mirror`` (the mirror root, e.g. what apt sources name)."""
    return mirror.rstrip("/") + "/" + urllib.parse.quote(pkg.filename, safe="/+~")


def verify_deb(path: str | os.PathLike[str], pkg: DebPackage) -> str:
    """Raise a one-line LockError unless the file at ``path`` is exactly the locked .deb; its sha512 (which
    the SBOM gives the package's distribution file) otherwise."""
    size = os.stat(path).st_size
    if size != pkg.size:
        raise LockError(
            f"{pkg.name} {pkg.version}: {os.fspath(path)} has size {size}, the lock expects {pkg.size}"
        )
    actual, sha512 = file_digests(path)
    if actual != pkg.sha256:
        raise LockError(
            f"{pkg.name} {pkg.version}: {os.fspath(path)} has sha256 {actual}, the lock expects {pkg.sha256}"
        )
    return sha512
