"""Which core files an entry point imports, read statically: the sources a core PEX ships.

Every import of an `aegis_plugin...` module is followed, in `import a.b`, `from a.b import c` (where `c` may
itself be a module) and relative form, at any depth in the file (imports inside functions count), together
with the `__init__.py` of every package on the way, which Python runs first. Third-party and standard
library imports are the resolve's and the interpreter's business, not this one's.
"""
from __future__ import annotations

import ast
from typing import Mapping

_PACKAGE = "aegis_plugin"


def _module_path(module: str, files: Mapping[str, bytes]) -> str | None:
    base = module.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__init__.py"):
        if path in files:
            return path
    return None


def _package_of(path: str) -> str:
    parts = path[: -len(".py")].split("/")
    return ".".join(parts[:-1])


def _imported_modules(path: str, source: bytes) -> set[str]:
    package = _package_of(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m == _PACKAGE or m.startswith(_PACKAGE + ".")}


def closure(entry_module: str, files: Mapping[str, bytes]) -> list[str]:
    """The paths (keys of ``files``) that importing ``entry_module`` executes, sorted."""
    seen: set[str] = set()
    todo = [entry_module]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # the packages on the way, then the module itself
            path = _module_path(".".join(parts[:depth]), files)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_modules(path, files[path]))
    if _module_path(entry_module, files) is None:
        raise ValueError(f"no core module {entry_module}")
    return sorted(seen)
