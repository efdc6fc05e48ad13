"""Optional data sets beside the repository (`../shared/`, or `AEGIS_SHARED_DIR`), such as the PyPA advisory
snapshot. A fresh clone has none: outside CI a test that needs one is skipped, saying what is missing and
where it goes; in CI (`CI` set, as `.ci/run` does) it fails, so the data cannot silently go missing there."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pytest


def in_ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_dir(repo_root: str, env: Mapping[str, str]) -> Path:
    return Path(env.get("AEGIS_SHARED_DIR") or Path(repo_root).parent / "shared")


def require_shared(relative: str, what: str, repo_root: str, env: Mapping[str, str] = os.environ) -> Path:
    """The directory `relative` under the shared directory; if it is missing, skips the test, or fails it in CI."""
    path = shared_dir(repo_root, env) / relative
    if path.is_dir():
        return path
    message = f"{path} is missing: {what} (put it there, or point AEGIS_SHARED_DIR at a directory that has it)"
    if in_ci(env):
        pytest.fail(f"{message}; CI requires it")
    pytest.skip(message)
