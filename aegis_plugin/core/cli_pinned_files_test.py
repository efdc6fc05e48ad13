"""The `pinned-files` subcommand hands its pinned inputs on as outputs (the step registry files enter the cache
through), readable by everyone; a size that disagrees with its pin is one line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from aegis_plugin.core.cli import main


def test_pinned_files_are_copied_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in/sub").mkdir(parents=True)
    (tmp_path / "in/weights.safetensors").write_bytes(b"w" * 10)
    (tmp_path / "in/sub/config.json").write_bytes(b"{}")
    os.chmod(tmp_path / "in/weights.safetensors", 0o555)  # as Pants hardlinks large inputs
    argv = ["pinned-files", "--source", "runs:/x/model", "--file", "weights.safetensors", "a" * 64, "10",
            "--file", "sub/config.json", "b" * 64, "2", "--out", "out"]
    assert main(argv) == 0
    assert (tmp_path / "out/weights.safetensors").read_bytes() == b"w" * 10
    assert (tmp_path / "out/sub/config.json").read_bytes() == b"{}"
    assert oct((tmp_path / "out/weights.safetensors").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "in/weights.safetensors").stat().st_mode & 0o777) == "0o555"  # inputs untouched


def test_a_size_that_disagrees_with_its_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/w.bin").write_bytes(b"123")
    argv = ["pinned-files", "--source", "runs:/x/model", "--file", "w.bin", "a" * 64, "4", "--out", "out"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "aegis: w.bin: 3 bytes, pinned 4\n"
