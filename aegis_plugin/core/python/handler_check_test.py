from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aegis_plugin.core.python.handler_check import (
    HandlerError,
    SourceFile,
    check_handler,
    first_party_modules,
    image_stdlib,
    top_level_modules,
)

REPO = Path(__file__).parents[3]
PATH = "models/m/server/handler.py"
RUNTIME = {"numpy", "safetensors", "tokenizers"}
VALID = """\
SIGNATURE = {"inputs": [], "outputs": []}


class Handler:
    def __init__(self, model_dir):
        self.model_dir = model_dir

    def predict(self, inputs):
        return {}
"""
SHARED = SourceFile("models/shared/textfeatures.py", "import numpy as np\nfrom .base import x\n")


def check(text: str, first_party: list[SourceFile] | None = None, available=RUNTIME) -> None:
    check_handler(SourceFile(PATH, text), first_party or [], available)


def error(text: str, first_party: list[SourceFile] | None = None, available=RUNTIME) -> str:
    with pytest.raises(HandlerError) as e:
        check(text, first_party, available)
    return str(e.value)


def unresolved(line: int, top: str, listing: str = "numpy, safetensors, tokenizers") -> str:
    return (
        f"{PATH}:{line}: imports `{top}`, which is neither in the standard library, `aegis_runtime`, the handler's "
        f"first-party code nor the runtime lock's distributions ({listing}): add it to the runtime resolve or "
        "remove the import"
    )


def test_the_demo_handlers_pass_with_the_runtime_lock_and_the_shared_code() -> None:
    shared = SourceFile("models/shared/textfeatures.py", (REPO / "models/shared/textfeatures.py").read_text())
    for model in ("fraud", "sentiment"):
        path = f"models/{model}/server/handler.py"
        check_handler(SourceFile(path, (REPO / path).read_text()), [shared], RUNTIME)
    # Without the shared code, its import is what fails.
    fraud = SourceFile("models/fraud/server/handler.py", (REPO / "models/fraud/server/handler.py").read_text())
    with pytest.raises(HandlerError, match=r"^models/fraud/server/handler.py:\d+: imports `models`, which"):
        check_handler(fraud, [], RUNTIME)


def test_a_handler_using_the_stdlib_the_runtime_and_the_lock_passes() -> None:
    check("from __future__ import annotations\nimport json, os.path\nimport numpy as np\n"
          "from aegis_runtime import InvalidInput\nfrom xml.etree import ElementTree\n" + VALID)


def test_third_party_imports_outside_the_runtime_lock_are_refused() -> None:
    assert error("import torch\n" + VALID) == unresolved(1, "torch")
    # A training-only package, imported inside a method: it fails when the method runs.
    method = VALID.replace("        return {}", "        import sklearn.linear_model\n        return {}")
    assert error(method) == unresolved(9, "sklearn")
    assert error("from sklearn.linear_model import LogisticRegression\n" + VALID) == unresolved(1, "sklearn")
    assert error("import json, torch.nn\n" + VALID) == unresolved(1, "torch")
    # numpy is importable only when the deps layer has it.
    assert error("import numpy\n" + VALID, available=set()) == unresolved(1, "numpy", "none")


def test_the_available_modules_are_abbreviated_and_private_ones_left_out() -> None:
    available = {f"mod{i:02}" for i in range(13)} | {"_cffi_backend"}
    listing = "mod00, mod01, mod02, mod03, mod04, mod05, mod06, mod07, mod08, mod09 and 3 more"
    assert error("import torch\n" + VALID, available=available) == unresolved(1, "torch", listing)


def test_stdlib_modules_the_image_cannot_import_are_refused() -> None:
    message = (
        f"{PATH}:1: imports `tkinter`, a standard-library module that the image's Python cannot import (its Debian "
        "package or library is not in the base, or it is not for Linux): remove the import"
    )
    assert error("import tkinter\n" + VALID) == message
    assert "imports `readline`, a standard-library module" in error("import readline\n" + VALID)
    assert "imports `winreg`, a standard-library module" in error("import winreg\n" + VALID)


def test_optional_imports_are_not_checked() -> None:
    check("try:\n    import torch\nexcept ImportError:\n    torch = None\n" + VALID)
    check("try:\n    import orjson as json\nexcept (ModuleNotFoundError, ValueError):\n    import json\n" + VALID)
    check("try:\n    import torch\nexcept Exception:\n    pass\n" + VALID)
    check("try:\n    import torch\nexcept:\n    pass\n" + VALID)
    check("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n" + VALID)
    # A try that catches something else guards nothing, nor does the except branch of a guarding try.
    assert error("try:\n    import torch\nexcept KeyError:\n    pass\n" + VALID) == unresolved(2, "torch")
    assert error("try:\n    import torch\nexcept ImportError:\n    import jax\n" + VALID) == unresolved(4, "jax")


def test_syntax_errors_name_the_file_and_line() -> None:
    assert error(VALID + "\ndef broken(:\n    pass\n") == f"{PATH}:11: syntax error: invalid syntax"
    # An error that only the compiler reports, after parsing.
    assert error(VALID + "return 1\n") == f"{PATH}:10: syntax error: 'return' outside function"
    broken = SourceFile("models/shared/textfeatures.py", "import numpy\nif True\n    pass\n")
    assert error(VALID, [broken]) == "models/shared/textfeatures.py:2: syntax error: expected ':'"


def test_first_party_imports_resolve_to_the_shipped_code() -> None:
    check("from models.shared.textfeatures import token_bags\nimport models.shared\n" + VALID, [SHARED])
    assert error("from models.shared.textfeatures import token_bags\n" + VALID) == unresolved(1, "models")
    assert first_party_modules([SHARED, SourceFile("util.py", ""), SourceFile("pkg/__init__.py", "")]) == {
        "models", "util", "pkg"
    }


def test_first_party_code_is_checked_too_and_may_import_relatively() -> None:
    check("from models.shared import textfeatures\n" + VALID, [SHARED])
    relative = SourceFile("models/shared/base.py", "from . import textfeatures\nfrom ..other import y\n")
    check("import models\n" + VALID, [SHARED, relative])
    heavy = SourceFile("models/shared/training.py", "x = 1\n\n\ndef fit():\n    import sklearn\n")
    assert error("import models\n" + VALID, [SHARED, heavy]) == unresolved(5, "sklearn").replace(
        PATH, "models/shared/training.py"
    )


def test_the_handler_cannot_import_relatively() -> None:
    assert error("from . import features\n" + VALID) == (
        f"{PATH}:1: `from . import ...` is a relative import, which fails in the image: the runtime loads the "
        "handler as a top-level module, so import first-party code by its full name (its path under the source "
        "root)"
    )
    assert error("from .features import f\n" + VALID).startswith(f"{PATH}:1: `from .features import ...` is a")
    check("try:\n    from . import features\nexcept ImportError:\n    features = None\n" + VALID)


def test_the_handler_must_define_handler_and_signature() -> None:
    no_handler = 'SIGNATURE = {"inputs": [], "outputs": []}\n\n\nclass Model:\n    pass\n'
    assert error(no_handler) == (
        f"{PATH}: defines no `Handler` class: the runtime constructs `Handler(model_dir)` and calls its "
        "`predict(inputs)`"
    )
    assert error(VALID.replace("SIGNATURE =", "SIGNATURES =")) == (
        f"{PATH}: defines no `SIGNATURE`: the runtime needs the model's tensors, "
        '`SIGNATURE = {"inputs": [...], "outputs": [...]}`'
    )
    # A method's local name is not the module's.
    assert error("def f():\n    Handler = 1\n" + no_handler).startswith(f"{PATH}: defines no `Handler` class")
    # Bound some other way: the check cannot see the class, and trusts it.
    check('SIGNATURE = {}\nfrom models.shared.impl import Handler\n', [SHARED])
    check("from models.shared.impl import *\n", [SHARED])
    check("SIGNATURE: dict = {}\ntry:\n    from fast import Handler\nexcept ImportError:\n" + "\n".join(
        "    " + line for line in VALID.splitlines()[3:]) + "\n")


def test_the_handler_class_must_be_callable_as_the_runtime_calls_it() -> None:
    no_predict = VALID.replace("def predict(self, inputs)", "def infer(self, inputs)")
    assert error(no_predict) == (
        f"{PATH}:4: `Handler` has no `predict` method: the runtime calls `predict(inputs)` with a dict of input "
        "tensors"
    )
    no_init = VALID.replace("def __init__(self, model_dir)", "def load(self, model_dir)")
    assert error(no_init) == (
        f"{PATH}:4: `Handler` takes no arguments, but the runtime constructs `Handler(model_dir)`: define "
        "`__init__(self, model_dir)`"
    )
    assert error(VALID.replace("__init__(self, model_dir)", "__init__(self)")) == (
        f"{PATH}:5: `Handler.__init__(self)` cannot be called as `Handler(model_dir)`, which is how the runtime "
        "calls it"
    )
    assert error(VALID.replace("predict(self, inputs)", "predict(self, inputs, batch_size)")) == (
        f"{PATH}:8: `Handler.predict(self, inputs, batch_size)` cannot be called as `predict(inputs)`, which is "
        "how the runtime calls it"
    )
    no_self = VALID.replace("predict(self, inputs)", "predict(inputs)")
    assert error(no_self).startswith(f"{PATH}:8: `Handler.predict(inputs)` cannot be called as `predict(inputs)`")
    # Signatures the runtime can call.
    for signature in ("predict(self, inputs, parameters)", "predict(self, inputs, *, parameters)",
                      "predict(self, inputs, parameters=None)", "predict(self, *args, **kwargs)",
                      "predict(self, inputs, /, scale=1.0)"):
        check(VALID.replace("predict(self, inputs)", signature))
    check(VALID.replace("__init__(self, model_dir)", "__init__(self, model_dir, device='cpu')"))
    # A base class, metaclass or decorator may supply the methods.
    check(no_predict.replace("class Handler:", "class Handler(Base):"))
    check(no_init.replace("class Handler:", "@dataclass\nclass Handler:"))


def test_top_level_modules_of_a_deps_layer() -> None:
    files = [
        "numpy/__init__.py",
        "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
        "numpy.libs/libscipy_openblas64_-ff651d7f.so",
        "numpy-2.4.6.dist-info/RECORD",
        "safetensors/__init__.py",
        "safetensors/_safetensors_rust.abi3.so",
        "tokenizers/tokenizers.abi3.so",
        "tokenizers/__init__.pyi",
        "six.py",
        "six-1.17.0.dist-info/METADATA",
        "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
        "cffi/__init__.py",
        "_yaml/__init__.py",
        "yaml/__init__.py",
        "google/protobuf/__init__.py",  # a namespace package
        "distutils-precedence.pth",
        "_distutils_hack/__init__.py",
        "bin/f2py",
        "bin/tool.py",
        "share/man/man1/tool.1",
        "include/x/header.h",
        "__pycache__/six.cpython-311.pyc",
        "docs/index.rst",
    ]
    assert top_level_modules(files) == {
        "numpy", "safetensors", "tokenizers", "six", "_cffi_backend", "cffi", "_yaml", "yaml", "google",
        "_distutils_hack",
    }


def test_the_standard_library_is_that_of_cpython_3_11(monkeypatch) -> None:
    stdlib = image_stdlib()
    assert {"json", "tomllib", "asyncio", "__future__", "distutils", "sqlite3"} <= stdlib
    assert "numpy" not in stdlib
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(HandlerError, match=r"^the handler check must run on CPython 3\.11, the image's Python, to "
                                           r"know its standard library; this is CPython 3\.9\.18$"):
        image_stdlib()
