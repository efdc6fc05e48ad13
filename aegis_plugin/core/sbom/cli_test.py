from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_plugin.core.sbom import cli, testutil
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx
from aegis_plugin.core.sbom.spdx import build_spdx


def test_writes_both_documents(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "sbom.cdx.json").read_bytes() == build_cyclonedx(testutil.inventory())
    assert (tmp_path / "out" / "sbom.spdx.json").read_bytes() == build_spdx(testutil.inventory())


def test_bad_inventory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = testutil.inventory()
    data["image"]["git_sha"] = "main"
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(data))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: inventory: image.git_sha: expected 40 lowercase hex digits") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
