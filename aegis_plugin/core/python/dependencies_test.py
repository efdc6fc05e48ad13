from pathlib import Path

import pytest

from aegis_plugin.core.python.dependencies import DependencyError, closure
from aegis_plugin.core.python.interpreter import Interpreter
from aegis_plugin.testutil.wheels import make_wheel

AMD64, ARM64 = Interpreter("linux/amd64"), Interpreter("linux/arm64")


@pytest.fixture
def wheels(tmp_path: Path) -> dict[str, str]:
    specs = {
        "torch": ("sympy", "nvidia-cublas-cu12; platform_system == 'Linux' and platform_machine == 'x86_64'",
                  'opt-einsum>=3.3; extra == "opt-einsum"', "typing-extensions>=4.8"),
        "sympy": ("mpmath<1.4",),
        "mpmath": ('pytest; extra == "develop"',),
        "nvidia-cublas-cu12": (),
        "opt-einsum": ("numpy",),
        "numpy": (),
        "typing-extensions": (),
        "unrelated": (),
    }
    return {name: str(make_wheel(tmp_path, name.replace("-", "_"), "1.0", {}, requires))
            for name, requires in specs.items()}


def test_the_closure_on_each_platform(wheels: dict[str, str]) -> None:
    assert closure(["torch==1.0"], wheels, AMD64, "pytorch.lock") == {
        "mpmath": frozenset(), "nvidia-cublas-cu12": frozenset(), "sympy": frozenset(), "torch": frozenset(),
        "typing-extensions": frozenset(),
    }
    assert "nvidia-cublas-cu12" not in closure(["torch"], wheels, ARM64, "pytorch.lock")


def test_extras_bring_their_requirements(wheels: dict[str, str]) -> None:
    needed = closure(["torch[opt-einsum]"], wheels, AMD64, "pytorch.lock")
    assert needed["torch"] == {"opt-einsum"} and "opt-einsum" in needed and "numpy" in needed
    # An extra asked by a second requirement widens the first one's closure.
    assert "numpy" in closure(["torch", "Torch[OPT_EINSUM]"], wheels, AMD64, "pytorch.lock")


def test_a_requirement_the_lock_does_not_pin(wheels: dict[str, str]) -> None:
    with pytest.raises(DependencyError,
                       match="mpmath requires pytest, which pytorch.lock does not pin for linux/amd64"):
        closure(["mpmath[develop]"], wheels, AMD64, "pytorch.lock")
    with pytest.raises(DependencyError, match="the handler requires scipy"):
        closure(["scipy"], wheels, AMD64, "pytorch.lock")
