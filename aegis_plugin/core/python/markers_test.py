import pytest

from aegis_plugin.core.python.interpreter import Interpreter
from aegis_plugin.core.python.markers import MarkerError, Requirement, evaluate, parse_requirement

AMD64 = Interpreter("linux/amd64").marker_environment()
ARM64 = Interpreter("linux/arm64").marker_environment()


@pytest.mark.parametrize("marker, amd64, arm64", [
    ("", True, True),
    ("sys_platform == 'win32'", False, False),
    ("sys_platform != 'emscripten'", True, True),
    ("platform_machine == 'x86_64'", True, False),
    ('platform_system == "Linux" and platform_machine == "aarch64"', False, True),
    ("platform_machine == 'AMD64' or platform_machine == 'aarch64' or platform_machine == 'x86_64'", True, True),
    ("python_version < '3.13'", True, True),
    ("python_version >= '3.12'", False, False),
    ("python_version > '3.9'", True, True),  # numerically: 3.11 > 3.9, though "3.11" < "3.9" as strings
    ("python_full_version >= '3.11.2'", True, True),
    ("python_full_version < '3.11.3' and (os_name == 'posix' or os_name == 'nt')", True, True),
    ("python_version == '3.*'", True, True),
    ("python_version != '3.11.*'", False, False),
    ("python_version ~= '3.10'", True, True),
    ("'linux' in sys_platform", True, True),
    ("'x86' not in platform_machine", False, True),
    ("implementation_name == 'cpython' and platform_python_implementation == 'CPython'", True, True),
])
def test_markers_are_evaluated_for_the_image(marker: str, amd64: bool, arm64: bool) -> None:
    assert evaluate(marker, AMD64) is amd64
    assert evaluate(marker, ARM64) is arm64


def test_extra_terms_hold_for_the_extras_asked() -> None:
    marker = 'python_version >= "3.8" and extra == "Torch_GPU"'
    assert not evaluate(marker, AMD64)
    assert evaluate(marker, AMD64, frozenset({"torch-gpu"}))
    assert evaluate('extra != "docs"', AMD64)


@pytest.mark.parametrize("marker", ["python_version <", "(sys_platform == 'linux'", "colour == 'red'",
                                    "sys_platform = 'linux'", "sys_platform == 'linux' xor"])
def test_malformed_markers_are_refused(marker: str) -> None:
    with pytest.raises(MarkerError, match="cannot parse marker"):
        evaluate(marker, AMD64)


def test_requires_dist_lines() -> None:
    assert parse_requirement("typing-extensions>=4.8.0") == Requirement("typing-extensions", frozenset(), "")
    assert parse_requirement('Huggingface_Hub[CLI, torch] (>=0.16) ; extra == "hub"') == Requirement(
        "huggingface-hub", frozenset({"cli", "torch"}), 'extra == "hub"'
    )
    assert parse_requirement("numpy").name == "numpy"
    with pytest.raises(MarkerError, match="index distribution") as error:
        parse_requirement("foo @ https://ci:s3cret-t0ken@example.invalid/foo-1.whl")
    assert "s3cret-t0ken" not in str(error.value) and "https://***@example.invalid/foo-1.whl" in str(error.value)
