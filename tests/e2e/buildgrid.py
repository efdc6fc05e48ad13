"""For the end-to-end tests: a real REAPI server (BuildGrid, in memory) on 127.0.0.1, and the cache counters
Pants prints with `--stats-log`. Shared by the tests of several resolves (stdlib, pytest and local_servers)."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from aegis_plugin.testutil.local_servers import accepts_connections, free_port, running_process


@contextlib.contextmanager
def buildgrid(tmp_path: Path) -> Iterator[str]:
    """Runs BuildGrid's `bgd` (AEGIS_BGD) until the block ends; yields its `grpc://` address."""
    bgd = os.environ.get("AEGIS_BGD", "")
    if not bgd or not os.access(bgd, os.X_OK):
        pytest.fail("AEGIS_BGD must name BuildGrid's bgd: run the tests with build-support/test.sh")
    port = free_port()
    config = tmp_path / "buildgrid.yml"
    template = (Path(os.environ["AEGIS_REPO_ROOT"]) / "build-support/buildgrid.yml").read_text()
    assert '"127.0.0.1:50051"' in template
    config.write_text(template.replace('"127.0.0.1:50051"', f'"127.0.0.1:{port}"'))
    with running_process([bgd, "server", "start", str(config)], tmp_path / "buildgrid.log",
                         lambda: accepts_connections(port), "BuildGrid", timeout=60, poll=0.2):
        yield f"grpc://127.0.0.1:{port}"


def counters(stderr: str) -> dict[str, int]:
    """The `[stats] log` counters Pants prints at the end of a run."""
    block = stderr.split("Counters:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\w+): (\d+)$", block, re.M)}
