"""PEP 508 requirements and environment markers, evaluated for the image's interpreter, not the build machine's.

The deps layer decides which locked distributions an image needs from the `Requires-Dist` lines of their
wheels, as an installer does; the machine that builds the layer may not even be the platform it is for.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable

from aegis_plugin.core.download import redact_text
from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.python.requirements_lock import canonical_name


class MarkerError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    name: str  # canonical
    extras: frozenset[str]  # canonical
    marker: str  # "" when it applies everywhere


_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<rest>[^;]*)"
    r"(?:;(?P<marker>.*))?$"
)


def parse_requirement(text: str) -> Requirement:
    """`name[extras] specifier ; marker` (the version is the lock's business; a URL requirement is refused)."""
    match = _REQUIREMENT.match(text)
    if not match or match.group("rest").strip().startswith("@"):
        # A direct URL may carry a token (`pkg @ https://user:token@host/...`): never in a message.
        raise MarkerError(f"not a requirement on an index distribution: {redact_text(text)!r}")
    extras = frozenset(canonical_name(e.strip()) for e in (match.group("extras") or "").split(",") if e.strip())
    return Requirement(canonical_name(match.group("name")), extras, (match.group("marker") or "").strip())


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'[^']*'|\"[^\"]*\")|(?P<op>===|==|!=|<=|>=|~=|<|>|\(|\))"
    r"|(?P<word>not\s+in\b|[A-Za-z_][A-Za-z0-9_.]*))"
)
_VARIABLES = {
    "python_version", "python_full_version", "os_name", "sys_platform", "platform_release", "platform_system",
    "platform_version", "platform_machine", "platform_python_implementation", "implementation_name",
    "implementation_version", "extra",
}
_RELEASE = re.compile(r"^\d+(\.\d+)*$")
_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "===": operator.eq,
}


def evaluate(marker: str, environment: dict[str, str], extras: frozenset[str] = frozenset()) -> bool:
    """Whether `marker` holds in `environment` (PEP 508 names -> values) for a requirement asked for with
    `extras` (an `extra == "x"` term holds if x is one of them)."""
    if not marker.strip():
        return True
    tokens = _tokens(marker)
    parser = _Parser(tokens, environment, extras, marker)
    value = parser.disjunction()
    if parser.position != len(tokens):
        raise MarkerError(f"cannot parse marker {marker!r}")
    return value


def _tokens(marker: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(marker):
        if not marker[position:].strip():
            break
        match = _TOKEN.match(marker, position)
        if not match:
            raise MarkerError(f"cannot parse marker {marker!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append((kind, " ".join(value.split()) if kind == "word" else value))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over PEP 508's `marker_or`/`marker_and`/`marker_expr` grammar."""

    def __init__(self, tokens: list[tuple[str, str]], environment: dict[str, str], extras: frozenset[str],
                 text: str) -> None:
        self.tokens, self.environment, self.extras, self.text = tokens, environment, extras, text
        self.position = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("", "")

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if not token[0]:
            raise MarkerError(f"cannot parse marker {self.text!r}: it ends early")
        self.position += 1
        return token

    def disjunction(self) -> bool:
        value = self.conjunction()
        while self._peek() == ("word", "or"):
            self._take()
            value = self.conjunction() or value
        return value

    def conjunction(self) -> bool:
        value = self.comparison()
        while self._peek() == ("word", "and"):
            self._take()
            value = self.comparison() and value
        return value

    def comparison(self) -> bool:
        if self._peek() == ("op", "("):
            self._take()
            value = self.disjunction()
            if self._take() != ("op", ")"):
                raise MarkerError(f"cannot parse marker {self.text!r}: unbalanced parentheses")
            return value
        left = self._operand()
        kind, op = self._take()
        if not (kind == "op" and op in _STRING_OPS or op in ("~=", "in", "not in")):
            raise MarkerError(f"cannot parse marker {self.text!r}: {op!r} is not a comparison")
        right = self._operand()
        if left[0] == "extra" or right[0] == "extra":
            wanted = canonical_name(right[1] if left[0] == "extra" else left[1])
            held = wanted in self.extras
            return held if op == "==" else (not held if op == "!=" else False)
        return _compare(left[1], op, right[1])

    def _operand(self) -> tuple[str, str]:
        kind, value = self._take()
        if kind == "string":
            return "", value[1:-1]
        if kind == "word" and value in _VARIABLES:
            return value, "" if value == "extra" else self.environment[value]
        raise MarkerError(f"cannot parse marker {self.text!r}: unknown name {value!r}")


def _compare(left: str, op: str, right: str) -> bool:
    if op == "in":
        return left in right
    if op == "not in":
        return left not in right
    if op in ("==", "!=") and right.endswith(".*") and _RELEASE.match(right[:-2]) and _RELEASE.match(left):
        prefix = _release(right[:-2])
        equal = _release(left)[: len(prefix)] == prefix
        return equal if op == "==" else not equal
    if op == "===" or not (_RELEASE.match(left) and _RELEASE.match(right)):
        if op == "~=":
            return False
        return _STRING_OPS[op](left, right)
    if op == "~=":
        spec = _release(right)
        return len(spec) > 1 and _release(left) >= spec and _release(left)[: len(spec) - 1] == spec[:-1]
    width = max(len(left.split(".")), len(right.split(".")))
    return _STRING_OPS[op](_release(left, width), _release(right, width))


def _release(version: str, width: int = 0) -> tuple[int, ...]:
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (width - len(parts))
