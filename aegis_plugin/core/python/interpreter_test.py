import pytest

from aegis_plugin.core.python.interpreter import Interpreter, InterpreterError


def test_wheel_tags_prefer_the_most_specific() -> None:
    tags = Interpreter("linux/amd64").wheel_tags()
    assert tags[0] == "cp311-cp311-manylinux_2_36_x86_64"
    order = ["cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux2014_x86_64",
             "cp311-abi3-manylinux_2_17_x86_64", "cp310-abi3-manylinux_2_17_x86_64", "cp38-abi3-manylinux1_x86_64",
             "py3-none-manylinux_2_17_x86_64",
             "cp311-none-any", "py3-none-any", "py30-none-any"]
    assert [tags.index(t) for t in order] == sorted(tags.index(t) for t in order)
    # Newer glibc than Debian 12's, another CPython's ABI, another architecture: never.
    for tag in ["cp311-cp311-manylinux_2_38_x86_64", "cp312-cp312-manylinux_2_17_x86_64",
                "cp311-cp311-manylinux_2_17_aarch64", "cp311-cp311-musllinux_1_2_x86_64", "py2-none-any"]:
        assert tag not in tags


def test_arm64_tags() -> None:
    tags = Interpreter("linux/arm64").wheel_tags()
    assert "cp310-abi3-manylinux_2_17_aarch64" in tags and "cp311-cp311-manylinux_2_17_x86_64" not in tags


def test_unknown_platform() -> None:
    with pytest.raises(InterpreterError, match="unsupported platform 'linux/s390x'"):
        Interpreter("linux/s390x")
