"""Remote cache on a real REAPI server (BuildGrid, in memory, on 127.0.0.1): a second machine builds nothing.

Clone A packages both models with the cache on; clone B, with its own empty Pants store and named caches,
packages them again: every cacheable process must come from the remote cache and the outputs must be
identical, byte for byte.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.buildgrid import buildgrid as running_buildgrid
from tests.e2e.buildgrid import counters
from tests.e2e.clones import make_clone, tree_digests


@pytest.fixture
def buildgrid(tmp_path: Path):
    with running_buildgrid(tmp_path) as address:
        yield address


def test_a_second_clone_builds_nothing_locally(tmp_path: Path, buildgrid: str) -> None:
    env = {"AEGIS_REMOTE_CACHE": buildgrid}
    a, b = make_clone(tmp_path, "a"), make_clone(tmp_path, "b")
    # The two numpy models: the PyTorch one would put GBs of CUDA wheels through an in-memory cache.
    models = ("models/fraud::", "models/sentiment::")
    cold = counters(a.pants("--stats-log", "package", *models, env=env).stderr)
    assert cold["remote_cache_write_errors"] == 0 and cold["remote_cache_write_successes"] > 0, cold

    warm = b.pants("--stats-log", "package", *models, env=env)
    stats = counters(warm.stderr)
    # Every cacheable process of B came from the cache: none missed, none was raced by a local run. (Pants
    # still runs its uncacheable discovery processes, e.g. finding interpreters, and our `git log`.)
    assert stats["remote_cache_read_errors"] == 0 and stats["remote_cache_requests_uncached"] == 0, stats
    assert stats["remote_cache_requests_cached"] == stats["remote_cache_requests"] == cold["remote_cache_requests"]
    assert stats["remote_cache_speculation_local_completed_first"] == 0, stats
    assert tree_digests(a.root / "dist") == tree_digests(b.root / "dist")
    for model in ("fraud/fraud", "sentiment/sentiment"):
        assert a.image_summary(f"models/{model}")["manifest_digest"] == b.image_summary(f"models/{model}")["manifest_digest"]
