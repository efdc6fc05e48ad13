import csv
import zipfile
from pathlib import Path

import pytest

from aegis_plugin.core.python.interpreter import Interpreter
from aegis_plugin.core.python.wheels import WheelError, install, parse_name, requires_dist, tag_rank
from aegis_plugin.testutil.wheels import make_wheel


def test_wheel_names_and_their_tags() -> None:
    name = parse_name("hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")
    assert (name.name, name.version) == ("hf-xet", "1.8.0")
    assert name.tags == {"cp38-abi3-manylinux2014_x86_64", "cp38-abi3-manylinux_2_17_x86_64"}
    assert parse_name("pkg-1.0-1build-py3-none-any.whl").tags == {"py3-none-any"}
    with pytest.raises(WheelError, match="not a wheel file name"):
        parse_name("pkg-1.0.tar.gz")


def test_the_best_tag_wins() -> None:
    amd64, arm64 = Interpreter("linux/amd64").wheel_tags(), Interpreter("linux/arm64").wheel_tags()
    specific = parse_name("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl")
    abi3 = parse_name("tokenizers-0.23.3-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    pure = parse_name("click-8.5.1-py3-none-any.whl")
    assert tag_rank(specific, amd64) < tag_rank(abi3, amd64) < tag_rank(pure, amd64)
    assert tag_rank(specific, arm64) is None and tag_rank(pure, arm64) is not None


def test_install_places_files_as_an_installer_does(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", {
        "demo/__init__.py": b"x = 1\n",
        "demo-1.0.data/platlib/demo_native.so": b"\x7fELF",
        "demo-1.0.data/purelib/demo_extra.py": b"",
        "demo-1.0.data/scripts/demo-cli": b"#!python\n",
        "demo-1.0.data/headers/demo.h": b"",
    }, requires=("numpy>=2", 'rich; extra == "cli"'))
    assert requires_dist(str(wheel)) == ["numpy>=2", 'rich; extra == "cli"']
    target = tmp_path / "site"
    install(str(wheel), str(target), requested=True)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["demo-1.0.dist-info/INSTALLER", "demo-1.0.dist-info/METADATA", "demo-1.0.dist-info/RECORD",
                     "demo-1.0.dist-info/REQUESTED", "demo-1.0.dist-info/WHEEL", "demo/__init__.py",
                     "demo_extra.py", "demo_native.so"]
    with open(target / "demo-1.0.dist-info/RECORD") as f:
        record = {row[0]: row[1:] for row in csv.reader(f)}
    # Every installed file is in RECORD under its installed path (scripts and headers are not installed).
    assert sorted(record) == files
    assert record["demo-1.0.dist-info/RECORD"] == ["", ""]
    assert record["demo-1.0.dist-info/INSTALLER"][1] == "6"

    install(str(wheel), str(tmp_path / "dependency"), requested=False)
    assert not (tmp_path / "dependency/demo-1.0.dist-info/REQUESTED").exists()


@pytest.mark.parametrize("member", ["../escape.py", "/abs.py", "demo/../../escape.py", "demo\\..\\x.py"])
def test_install_refuses_paths_outside_the_target(tmp_path: Path, member: str) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", {member: b""})
    with pytest.raises(WheelError, match="unsafe path"):
        install(str(wheel), str(tmp_path / "site"), requested=False)
    assert not (tmp_path / "escape.py").exists()


def test_a_damaged_wheel_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "demo-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match="not a valid wheel"):
        install(str(broken), str(tmp_path / "site"), requested=False)
    two = tmp_path / "two-1.0-py3-none-any.whl"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a-1.dist-info/METADATA", "")
        archive.writestr("b-1.dist-info/METADATA", "")
    with pytest.raises(WheelError, match="2 .dist-info directories"):
        requires_dist(str(two))
