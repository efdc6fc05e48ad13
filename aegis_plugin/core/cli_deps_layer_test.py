"""The `deps-layer` subcommand on real wheel files: the handler's closure for the platform, installed as a layer,
with the lock subset and each distribution's wheel digests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aegis_plugin.core.cli import main
from aegis_plugin.testutil.wheels import make_wheel


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    make_wheel(directory, "demo", "1.0", {"demo/__init__.py": b"import dep\n"},
               requires=("dep>=1", "winonly; sys_platform == 'win32'", 'extra-thing; extra == "x"'))
    make_wheel(directory, "dep", "2.0", {"dep.py": b""})
    make_wheel(directory, "unrelated", "3.0", {"unrelated.py": b""})
    return directory


def lock(wheels: Path) -> str:
    blocks = []
    for wheel in sorted(wheels.iterdir()):
        name, version = wheel.name.split("-")[:2]
        blocks.append(f"{name}=={version} \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    return "".join(blocks)


def test_the_layer_holds_the_closure_and_reports_each_wheel(tmp_path: Path, wheels: Path, monkeypatch) -> None:
    (tmp_path / "runtime.lock").write_text(lock(wheels))
    monkeypatch.chdir(tmp_path)  # the step installs under its working directory, as in a sandbox
    argv = ["deps-layer", "--wheels", "wheels", "--require", "demo==1.0", "--platform", "linux/arm64",
            "--lock", "runtime.lock", "--prefix", "/app/site-packages", "--out", "out"]
    assert main(argv) == 0
    inventory = json.loads((tmp_path / "out/inventory.json").read_text())["python"]
    assert [(d["name"], d["version"]) for d in inventory] == [("demo", "1.0"), ("dep", "2.0")]
    demo = inventory[0]
    wheel = (wheels / demo["wheel"]).read_bytes()
    assert (demo["wheel_sha256"], demo["wheel_sha512"]) == (
        hashlib.sha256(wheel).hexdigest(), hashlib.sha512(wheel).hexdigest())
    assert "/app/site-packages/demo-1.0.dist-info/REQUESTED" in demo["files"]
    assert "/app/site-packages/dep-2.0.dist-info/REQUESTED" not in inventory[1]["files"]
    subset = (tmp_path / "out/requirements.lock").read_text()
    assert "demo==1.0" in subset and "dep==2.0" in subset and "unrelated" not in subset
    toc = json.loads((tmp_path / "out/toc.json").read_text())
    assert "app/site-packages/dep.py" in json.dumps(toc)


def test_a_requirement_outside_the_lock_is_one_line(tmp_path: Path, wheels: Path, capsys, monkeypatch) -> None:
    (tmp_path / "runtime.lock").write_text(lock(wheels))
    monkeypatch.chdir(tmp_path)
    argv = ["deps-layer", "--wheels", "wheels", "--require", "demo[x]", "--platform", "linux/amd64",
            "--lock", "runtime.lock", "--prefix", "/app/site-packages", "--out", "out"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "aegis: demo requires extra-thing, which runtime.lock does not pin for linux/amd64: add it to the "
        "resolve's requirements and refresh the lock\n")
    assert not (tmp_path / "out/inventory.json").exists()
