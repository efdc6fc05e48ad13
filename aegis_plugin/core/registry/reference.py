"""Image references: `registry/repository[:tag][@sha256:digest]`, as the distribution spec names them.

The registry is always explicit (a host with a dot or a port, or `localhost`): Aegis never guesses Docker
Hub, so a typo cannot push a model to a public registry.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from aegis_plugin.core.errors import AegisError

# distribution/reference grammar, simplified to what registries accept in practice.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ReferenceError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """`registry/repository`, what cosign's simple-signing payload calls the docker-reference."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, digest)

    @property
    def is_loopback(self) -> bool:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else self.registry[1:].split("]")[0]
        return is_loopback(host)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def names_registry(component: str) -> bool:
    """Whether the first path component of a name is a registry host: it has a dot or a port, or is
    `localhost` (what the distribution reference grammar says; anything else would be Docker Hub)."""
    return "." in component or ":" in component or component == "localhost"


def parse(text: str) -> Reference:
    """`registry/repo[:tag][@digest]`; a ReferenceError saying what is wrong otherwise."""
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(f"{text!r}: the digest must be sha256: and 64 lowercase hex digits")
    registry, slash, path = rest.partition("/")
    if not slash or not names_registry(registry):
        raise ReferenceError(
            f"{text!r}: name the registry explicitly, e.g. registry.example.com/{rest} or 127.0.0.1:5000/{rest}"
        )
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"{text!r}: {tag!r} is not a valid tag")
    if not _REPOSITORY.match(path):
        raise ReferenceError(f"{text!r}: {path!r} is not a valid repository name (lowercase, digits, . _ - /)")
    return Reference(registry, path, tag, digest)
