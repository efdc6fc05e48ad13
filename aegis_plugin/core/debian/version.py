"""Debian version ordering (Debian Policy 5.6.12), needed to pick the newest of several suites and to
check versioned dependencies such as ``libpython3.11-minimal (= 3.11.2-6+deb12u9)``."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d*")
_NON_DIGITS = re.compile(r"\D*")


def _split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch or "0"), upstream, revision


def _char_order(char: str) -> int:
    """``~`` sorts before everything, even the end of the string; letters before other symbols."""
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        a_text = _NON_DIGITS.match(a).group()  # type: ignore[union-attr]
        b_text = _NON_DIGITS.match(b).group()  # type: ignore[union-attr]
        a, b = a[len(a_text) :], b[len(b_text) :]
        for i in range(max(len(a_text), len(b_text))):
            a_order = _char_order(a_text[i]) if i < len(a_text) else 0
            b_order = _char_order(b_text[i]) if i < len(b_text) else 0
            if a_order != b_order:
                return -1 if a_order < b_order else 1
        a_num = _DIGITS.match(a).group()  # type: ignore[union-attr]
        b_num = _DIGITS.match(b).group()  # type: ignore[union-attr]
        a, b = a[len(a_num) :], b[len(b_num) :]
        if int(a_num or "0") != int(b_num or "0"):
            return -1 if int(a_num or "0") < int(b_num or "0") else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """Return -1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``."""
    a_epoch, a_upstream, a_revision = _split(a)
    b_epoch, b_upstream, b_revision = _split(b)
    if a_epoch != b_epoch:
        return -1 if a_epoch < b_epoch else 1
    return _compare_part(a_upstream, b_upstream) or _compare_part(a_revision, b_revision)


def satisfies(version: str, op: str, wanted: str) -> bool:
    """Whether ``version`` meets a relation ``op wanted`` as written in a Depends field."""
    result = compare_versions(version, wanted)
    if op == "=":
        return result == 0
    if op in (">=", ">"):  # ">" and "<" are the obsolete spellings of ">=" and "<="
        return result >= 0
    if op in ("<=", "<"):
        return result <= 0
    if op == ">>":
        return result > 0
    if op == "<<":
        return result < 0
    raise ValueError(f"unknown version relation {op!r}")
