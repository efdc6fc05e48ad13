"""For the tests: the real cosign (installed by build-support/install-cosign.sh) and key pairs made by it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def cosign_binary() -> str:
    path = os.environ.get("AEGIS_COSIGN", "")
    if not os.access(path, os.X_OK):
        pytest.fail("AEGIS_COSIGN must name the cosign binary: run the tests with build-support/test.sh")
    return path


def generate_key_pair(cosign: str, directory: Path, password: str, prefix: str = "cosign") -> Path:
    """`<prefix>.key` (cosign's encrypted format) and `<prefix>.pub` in `directory`; returns the .key path."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([cosign, "generate-key-pair", f"--output-key-prefix={prefix}"], cwd=directory, check=True,
                   capture_output=True, env={**os.environ, "COSIGN_PASSWORD": password})
    return directory / f"{prefix}.key"
