"""Version order per ecosystem, by the ecosystems' own rules: PEP 440 for PyPI (`packaging`), dpkg's for
Debian (`python-debian`). OSV ranges are only meaningful in these orders."""
from __future__ import annotations

from typing import Any, Callable, Dict

from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion
from packaging.version import Version as PythonVersion


class UnknownVersion(ValueError):
    pass


def _python(text: str) -> Any:
    try:
        return PythonVersion(text)
    except InvalidVersion:
        raise UnknownVersion(f"{text!r} is not a PEP 440 version") from None


def _debian(text: str) -> Any:
    try:
        return DebianVersion(text)
    except ValueError:
        raise UnknownVersion(f"{text!r} is not a Debian version") from None


_PARSERS: Dict[str, Callable[[str], Any]] = {"PyPI": _python, "Debian": _debian}


def parser(ecosystem: str) -> Callable[[str], Any]:
    """The version parser of an OSV ecosystem ("Debian:12" is Debian's); values compare with < and ==."""
    found = _PARSERS.get(ecosystem.split(":", 1)[0])
    if found is None:
        raise UnknownVersion(f"no version order for ecosystem {ecosystem!r}")
    return found


def ecosystem_matches(advisory_ecosystem: str, package_ecosystem: str) -> bool:
    """`Debian` matches every Debian release, `Debian:12` only bookworm's packages."""
    if ":" in advisory_ecosystem:
        return advisory_ecosystem == package_ecosystem
    return advisory_ecosystem == package_ecosystem.split(":", 1)[0]
