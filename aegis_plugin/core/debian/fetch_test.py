from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aegis_plugin.core.debian.fetch import fetch_debs
from aegis_plugin.core.debian.lock import LockError
from aegis_plugin.core.debian.testutil import M, build_deb, locked, serve_directory


def test_fetch_verify_and_cache(tmp_path: Path) -> None:
    built = build_deb(tmp_path / "libx_1_amd64.deb", "libx", "1", [M("/usr/lib/libx", content=b"x")])
    pkg = locked(built, "libx", "1")
    pool = tmp_path / "mirror/debian" / Path(pkg.filename).parent
    pool.mkdir(parents=True)
    (pool / pkg.deb_basename).write_bytes(built.read_bytes())
    cache = tmp_path / "cache"
    with serve_directory(tmp_path / "mirror") as mirror:
        [got] = fetch_debs([pkg], {"bookworm": mirror}, cache)
        assert got == cache / pkg.deb_basename and got.read_bytes() == built.read_bytes()
        (pool / pkg.deb_basename).unlink()
        assert fetch_debs([pkg], {"bookworm": mirror}, cache) == [got]  # served from the cache

        gone = dataclasses.replace(pkg, filename="pool/main/l/libx/libx_0_amd64.deb", version="0")
        with pytest.raises(LockError, match=r"libx 0 is no longer on .* refresh the lock .* snapshot"):
            fetch_debs([gone], {"bookworm": mirror}, cache)

        (pool / pkg.deb_basename).write_bytes(b"tampered")
        got.unlink()
        with pytest.raises(LockError, match="has 8 bytes with sha256 .*, but the pin is"):
            fetch_debs([pkg], {"bookworm": mirror}, cache)
        assert list(cache.iterdir()) == []  # nothing unverified is left behind

    with pytest.raises(LockError, match="no mirror configured for suite bookworm"):
        fetch_debs([pkg], {}, cache)
