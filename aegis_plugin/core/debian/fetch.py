"""Download locked .debs from a mirror into a cache, verified against the lock.

Mirrors drop superseded versions after each point release, so a 404 means the lock is older than the
mirror: the error says how to refresh it (or to point the mirror at a snapshot archive).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from aegis_plugin.core.debian.lock import DebPackage, LockError, fetch_url, verify_deb
from aegis_plugin.core.download import DownloadError, download

REFRESH_HINT = (
    "refresh the lock (python3 build-support/lock_debian.py SPEC) or point the mirror option at a snapshot"
)


def fetch_deb(pkg: DebPackage, mirror: str, cache_dir: str | os.PathLike[str], timeout: float = 60) -> Path:
    """Return the verified .deb of ``pkg`` in ``cache_dir``, downloading it if needed."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / pkg.deb_basename
    if target.exists():
        try:
            verify_deb(target, pkg)
            return target
        except LockError:
            target.unlink()  # a stale or truncated download; fetch it again
    try:
        download(fetch_url(mirror, pkg), pkg.sha256, pkg.size, str(target), timeout=timeout)
    except DownloadError as e:
        if e.status in (404, 410):
            raise LockError(
                f"{pkg.name} {pkg.version} is no longer on {mirror} ({pkg.suite}): {REFRESH_HINT}"
            ) from None
        raise LockError(f"{pkg.name} {pkg.version}: {e}") from None
    return target


def fetch_debs(
    packages: Sequence[DebPackage], mirrors: Mapping[str, str], cache_dir: str | os.PathLike[str]
) -> list[Path]:
    """Fetch every package from the mirror of its suite (``mirrors`` maps suite -> mirror root)."""
    paths = []
    for pkg in packages:
        if pkg.suite not in mirrors:
            raise LockError(f"{pkg.name}: no mirror configured for suite {pkg.suite}")
        paths.append(fetch_deb(pkg, mirrors[pkg.suite], cache_dir))
    return paths
