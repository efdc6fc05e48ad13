"""Whether an image's handler can start: it compiles, every import resolves in the image, and it defines what
the runtime loads.

The runtime (core/runtime/model.py) imports `/app/server/handler.py` when the container starts and exits 1
if that raises, so a handler with a syntax error, or with an import the image cannot satisfy, ships an image
that never serves. These checks read the source only (nothing is imported or run), so they hold for any
target platform.

What the image can import:
- the standard library of its Python, CPython 3.11 from Debian, less the modules the base leaves out. It is
  read from the interpreter running the check, which must therefore be 3.11 too (the core's interpreter);
- `aegis_runtime`, the runtime Aegis ships at `/app/aegis_runtime`;
- the handler's first-party code, shipped under `/app/src` by its path relative to the source root;
- the top-level modules of the deps layer (`top_level_modules`).
"""
from __future__ import annotations

import ast
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Collection, Iterable, Iterator, Sequence

from aegis_plugin.core.errors import AegisError

IMAGE_PYTHON = (3, 11)
RUNTIME_PACKAGE = "aegis_runtime"

# Standard-library modules that the image's Python cannot import: Debian ships them in packages that
# 3rdparty/debian/python3.11-bookworm.packages leaves out, they link libraries it leaves out, or they exist
# only on Windows or macOS.
_STDLIB_NOT_IN_IMAGE = frozenset({
    "_tkinter", "tkinter", "turtle", "turtledemo", "idlelib",  # python3-tk, idle-python3.11
    "lib2to3",  # python3-lib2to3
    "ensurepip",  # python3.11-venv
    "_gdbm",  # python3-gdbm
    "_curses", "_curses_panel", "curses", "readline",  # libncursesw6, libreadline8
    "_dbm",  # libdb5.3
    "nis",  # libnsl2
    "_msi", "_overlapped", "_scproxy", "_winapi", "msilib", "msvcrt", "nt", "winreg", "winsound",
})
# Folders that an installer writes beside the packages for a wheel's scripts, headers and data files.
_DATA_FOLDERS = frozenset({"bin", "etc", "include", "share", "__pycache__"})
_MODULE_FILE = re.compile(r"^(?P<name>[^.]+)(?:\.py|(?:\.[A-Za-z0-9_-]+)?\.so)$")
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_LISTED = 10  # available modules named in an error before "and N more"


@dataclass(frozen=True)
class SourceFile:
    """A Python file. For first-party code the path is relative to the source root, as it is shipped under
    `/app/src`: its first component is the top-level module it provides. The path is also what messages show."""

    path: str
    text: str


class HandlerError(AegisError, ValueError):
    pass


def check_handler(handler: SourceFile, first_party: Sequence[SourceFile], available: Collection[str]) -> None:
    """Raises HandlerError, one line, at the first reason the runtime could not load `handler`.

    `first_party` is the code shipped with it under `/app/src` (the handler excluded); `available` are the
    top-level modules of the deps layer. Imports that a `try` guards with `except ImportError` (or broader)
    are optional and not checked; imports under `if TYPE_CHECKING:` never run.
    """
    stdlib = image_stdlib()
    trees = [(source, _parse(source)) for source in (handler, *first_party)]
    importable = stdlib | {RUNTIME_PACKAGE} | first_party_modules(first_party) | set(available)
    for source, tree in trees:
        for node, optional in _imports(tree):
            if not optional:
                _check_import(source, node, source is handler, importable, available)
    _check_definitions(handler, trees[0][1])


def image_stdlib() -> frozenset[str]:
    """The top-level standard-library modules of CPython 3.11 (those the image's base may lack included)."""
    names = getattr(sys, "stdlib_module_names", None)
    if sys.implementation.name != "cpython" or sys.version_info[:2] != IMAGE_PYTHON or names is None:
        raise HandlerError(
            f"the handler check must run on CPython {'.'.join(map(str, IMAGE_PYTHON))}, the image's Python, to "
            f"know its standard library; this is {platform.python_implementation()} "
            f"{'.'.join(map(str, sys.version_info[:3]))}"
        )
    return frozenset(names)


def first_party_modules(first_party: Iterable[SourceFile]) -> set[str]:
    """Top-level module names of files given relative to the source root: `models/shared/x.py` -> models."""
    modules = set()
    for source in first_party:
        parts = PurePosixPath(source.path).parts
        modules.add(parts[0] if len(parts) > 1 else PurePosixPath(parts[0]).stem)
    return modules


def top_level_modules(files: Iterable[str]) -> set[str]:
    """The top-level modules importable from a site-packages holding `files` (paths relative to it).

    A package (or namespace package) is a folder holding Python code; a module is a top-level `.py` file or
    extension module (`_cffi_backend.cpython-311-x86_64-linux-gnu.so`, `x.abi3.so`). Metadata (`*.dist-info`),
    bundled libraries (`numpy.libs`), `.pth` files and data folders (`bin/`, `share/`, ...) are not modules.
    """
    modules = set()
    for path in files:
        parts = PurePosixPath(path).parts
        if not parts:
            continue
        match = _MODULE_FILE.match(parts[-1])
        if match is None:
            continue
        if len(parts) == 1:
            name = match.group("name")
        elif parts[0] not in _DATA_FOLDERS:
            name = parts[0]
        else:
            continue
        if name.isidentifier():
            modules.add(name)
    return modules


def _parse(source: SourceFile) -> ast.Module:
    # compile(), not only ast.parse(): the compiler also refuses code that parses (`return` outside a
    # function, misplaced `nonlocal`...). dont_inherit: this module's own __future__ flags must not apply.
    try:
        compile(source.text, source.path, "exec", dont_inherit=True)
    except SyntaxError as e:
        where = f"{source.path}:{e.lineno}" if e.lineno else source.path
        raise HandlerError(f"{where}: syntax error: {_one_line(e.msg)}") from None
    except ValueError as e:  # source with NUL bytes
        raise HandlerError(f"{source.path}: syntax error: {_one_line(str(e))}") from None
    return ast.parse(source.text, source.path)


def _imports(node: ast.AST, optional: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under `node`, functions and classes included, each with whether it is optional."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, optional
        return
    if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
        guarded = optional or any(_catches_import_error(handler.type) for handler in node.handlers)
        for statement in node.body:
            yield from _imports(statement, guarded)
        for statement in (*node.handlers, *node.orelse, *node.finalbody):
            yield from _imports(statement, optional)
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.orelse:
            yield from _imports(statement, optional)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports(child, optional)


def _catches_import_error(caught: ast.expr | None) -> bool:
    if caught is None:  # a bare `except:`
        return True
    if isinstance(caught, ast.Tuple):
        return any(_catches_import_error(element) for element in caught.elts)
    name = caught.id if isinstance(caught, ast.Name) else caught.attr if isinstance(caught, ast.Attribute) else None
    return name in _IMPORT_ERRORS


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _check_import(
    source: SourceFile,
    node: ast.Import | ast.ImportFrom,
    is_handler: bool,
    importable: Collection[str],
    available: Collection[str],
) -> None:
    where = f"{source.path}:{node.lineno}"
    if isinstance(node, ast.ImportFrom) and node.level:
        if is_handler:
            raise HandlerError(
                f"{where}: `from {'.' * node.level}{node.module or ''} import ...` is a relative import, which "
                "fails in the image: the runtime loads the handler as a top-level module, so import first-party "
                "code by its full name (its path under the source root)"
            )
        return
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    for top in (name.split(".")[0] for name in names):
        if top in _STDLIB_NOT_IN_IMAGE:
            raise HandlerError(
                f"{where}: imports `{top}`, a standard-library module that the image's Python cannot import "
                "(its Debian package or library is not in the base, or it is not for Linux): remove the import"
            )
        if top not in importable:
            raise HandlerError(
                f"{where}: imports `{top}`, which is neither in the standard library, `{RUNTIME_PACKAGE}`, the "
                f"handler's first-party code nor the runtime lock's distributions ({_listing(available)}): add "
                "it to the runtime resolve or remove the import"
            )


def _check_definitions(handler: SourceFile, tree: ast.Module) -> None:
    """What Model.load and Model.construct in core/runtime/model.py require of the handler module."""
    bound = _bindings(tree.body)
    if "*" in bound:  # `from x import *` may bind anything
        return
    if "SIGNATURE" not in bound:
        raise HandlerError(
            f"{handler.path}: defines no `SIGNATURE`: the runtime needs the model's tensors, "
            '`SIGNATURE = {"inputs": [...], "outputs": [...]}`'
        )
    if "Handler" not in bound:
        raise HandlerError(
            f"{handler.path}: defines no `Handler` class: the runtime constructs `Handler(model_dir)` and calls "
            "its `predict(inputs)`"
        )
    for node in bound["Handler"]:
        if isinstance(node, ast.ClassDef):
            _check_handler_class(handler.path, node)


def _check_handler_class(path: str, cls: ast.ClassDef) -> None:
    # Bases, a metaclass or a decorator (a dataclass) may supply what the body does not define.
    opaque = bool(cls.bases or cls.keywords or cls.decorator_list)
    members = _bindings(cls.body)
    if not opaque and "predict" not in members:
        raise HandlerError(
            f"{path}:{cls.lineno}: `Handler` has no `predict` method: the runtime calls `predict(inputs)` with a "
            "dict of input tensors"
        )
    if not opaque and "__init__" not in members and "__new__" not in members:
        raise HandlerError(
            f"{path}:{cls.lineno}: `Handler` takes no arguments, but the runtime constructs `Handler(model_dir)`: "
            "define `__init__(self, model_dir)`"
        )
    calls = (("__init__", "Handler(model_dir)", ()), ("predict", "predict(inputs)", ("parameters",)))
    for name, call, keywords in calls:
        for method in members.get(name, []):
            if (
                isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not method.decorator_list
                and not _accepts_one_argument(method.args, keywords)
            ):
                raise HandlerError(
                    f"{path}:{method.lineno}: `Handler.{name}({ast.unparse(method.args)})` cannot be called as "
                    f"`{call}`, which is how the runtime calls it"
                )


def _accepts_one_argument(args: ast.arguments, keywords: Sequence[str]) -> bool:
    """Whether a method can be called with one positional argument (after self) and, optionally, `keywords`."""
    positional = [*args.posonlyargs, *args.args]
    required = [a.arg for a in positional[2 : len(positional) - len(args.defaults)]]
    required += [a.arg for a, default in zip(args.kwonlyargs, args.kw_defaults) if default is None]
    return (len(positional) >= 2 or args.vararg is not None) and all(name in keywords for name in required)


def _bindings(body: Sequence[ast.stmt]) -> dict[str, list[ast.stmt]]:
    """The names that statements bind in their own scope (not inside functions or classes), "*" for a star
    import, each with the statements that bind it, in order."""
    found: dict[str, list[ast.stmt]] = {}

    def visit(statements: Sequence[ast.AST]) -> None:
        for node in statements:
            names: list[str] = []
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [name for target in node.targets for name in _target_names(target)]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                names = _target_names(node.target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.asname or alias.name.split(".")[0] for alias in node.names]
            for name in names:
                found.setdefault(name, []).append(node)  # type: ignore[arg-type]
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for field in ("body", "handlers", "orelse", "finalbody"):  # if, try, with, for, while
                    visit(getattr(node, field, None) or [])

    visit(body)
    return found


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _listing(names: Collection[str]) -> str:
    public = sorted(name for name in names if not name.startswith("_"))
    if len(public) <= _LISTED:
        return ", ".join(public) or "none"
    return f"{', '.join(public[:_LISTED])} and {len(public) - _LISTED} more"


def _one_line(text: str) -> str:
    return " ".join(text.split())
