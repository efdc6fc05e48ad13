"""The `fetch` subcommand refuses a URL whose secrets would be in its process's argv, the cache key."""
from __future__ import annotations

from pathlib import Path

import pytest

from aegis_plugin.core.cli import main


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://bot:s3cr3t-pa55@127.0.0.1:9/w.bin", "http://***@127.0.0.1:9/w.bin"),
        ("http://127.0.0.1:9/w.bin?X-Amz-Signature=f00dfeedcafe1234", "http://127.0.0.1:9/w.bin?X-Amz-Signature=***"),
    ],
)
def test_fetch_refuses_a_url_with_secrets(tmp_path: Path, capsys, url: str, shown: str) -> None:
    argv = ["fetch", "--url", url, "--sha256", "0" * 64, "--size", "1", "--name", "w.bin", "--out", str(tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"aegis: {shown} carries credentials or a query string")
    assert "s3cr3t-pa55" not in error and "f00dfeedcafe1234" not in error
