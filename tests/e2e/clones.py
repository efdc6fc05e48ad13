"""End-to-end fixtures: real clones of this repository, packaged by a real `./pants` with its own store.

`AEGIS_REPO_ROOT` (set by build-support/test.sh) is the repository under test; tests clone its HEAD, so
commit before running them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = os.environ.get("AEGIS_REPO_ROOT", "")


@dataclass
class Clone:
    root: Path
    store: Path  # this clone's own Pants store and named caches: nothing shared with other clones

    def pants(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [
            "./pants",
            "--no-pantsd",
            f"--local-store-dir={self.store}/lmdb_store",
            f"--named-caches-dir={self.store}/named_caches",
            *args,
        ]
        return self.run(cmd, check=check, env=env)

    def run(self, cmd: list, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            cmd, cwd=self.root, capture_output=True, text=True, timeout=1500, env={**os.environ, **(env or {})}
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=Aegis Tests", "-c", "user.email=tests@aegis.invalid", *args],
            cwd=self.root, check=True, capture_output=True, text=True,
        ).stdout

    def image_summary(self, output_path: str = "models/fraud/fraud") -> dict:
        return json.loads((self.root / "dist" / output_path / "image.json").read_text())


def make_clone(tmp: Path, name: str) -> Clone:
    if not REPO_ROOT:
        pytest.fail("AEGIS_REPO_ROOT is not set: run the tests with build-support/test.sh")
    root = tmp / name
    subprocess.run(["git", "clone", "--quiet", REPO_ROOT, str(root)], check=True)
    return Clone(root=root, store=tmp / f"{name}-store")


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under `root` with its sha256 and mode: the bytes users get."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result[str(path.relative_to(root))] = f"{digest} {oct(path.stat().st_mode & 0o777)}"
    return result
