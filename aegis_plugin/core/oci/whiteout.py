"""OCI whiteouts, read in one place: by the flattener (`flatten.py`), through which every consumer of layers
(the contract test's unpacker, the SBOM's completeness check, the publisher) reads an image. `.wh.<name>` hides
`<name>` of the layers below, `.wh..wh..opq` hides everything the layers below put in its directory, and any
other `.wh..wh.` name is AUFS metadata, which hides nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aegis_plugin.core.errors import AegisError

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


class WhiteoutError(AegisError):
    """A whiteout that names no entry (`.wh.`, `.wh..`, `.wh...`)."""


@dataclass(frozen=True)
class Whiteout:
    hidden: Optional[str]  # the name it hides in its directory; None: an opaque whiteout (all of the lower ones)


def parse(name: str) -> Optional[Whiteout]:
    """What the directory entry `name` (one path component) hides: None when it is no whiteout or AUFS metadata."""
    if not name.startswith(PREFIX):
        return None
    if name == OPAQUE:
        return Whiteout(None)
    if name.startswith(PREFIX + PREFIX):
        return None
    hidden = name[len(PREFIX):]
    if hidden in ("", ".", ".."):
        raise WhiteoutError(f"invalid whiteout {name!r}: it names no entry")
    return Whiteout(hidden)


def is_whiteout(name: str) -> bool:
    """Whether `name` is whiteout bookkeeping (a whiteout or AUFS metadata): never a file of the image."""
    return name.startswith(PREFIX)
