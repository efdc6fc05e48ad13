"""The package spec: the hand-written list of Debian packages a base image is made of.

Format, one item per line, ``#`` starts a comment:

    libc6                 # a binary package to install
    !ignore debconf       # a dependency deliberately left out (only maintainer scripts use it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aegis_plugin.core.debian.errors import DebianError

_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


@dataclass(frozen=True)
class Spec:
    packages: tuple[str, ...]  # sorted
    ignored: tuple[str, ...]  # sorted; dependencies on these count as satisfied


def parse_spec(text: str, where: str = "spec") -> Spec:
    packages: set[str] = set()
    ignored: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "!ignore":
            names, target = words[1:], ignored
        elif len(words) == 1:
            names, target = words, packages
        else:
            raise DebianError(
                f"{where}:{number}: expected one package name or '!ignore NAME...', got {line!r}"
            )
        for name in names:
            if not _NAME.match(name):
                raise DebianError(f"{where}:{number}: {name!r} is not a Debian package name")
            if name in target:
                raise DebianError(f"{where}:{number}: {name} is listed twice")
            target.add(name)
    both = packages & ignored
    if both:
        raise DebianError(f"{where}: listed and ignored at once: {', '.join(sorted(both))}")
    if not packages:
        raise DebianError(f"{where}: lists no packages")
    return Spec(packages=tuple(sorted(packages)), ignored=tuple(sorted(ignored)))
