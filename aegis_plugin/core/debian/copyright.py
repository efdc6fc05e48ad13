"""The licenses a Debian package declares, read from its `/usr/share/doc/<pkg>/copyright` file.

Machine-readable copyright files (DEP-5: a first paragraph with `Format:`) declare licenses in a form a
program can read: every `License:` field's first line is a short name (`GPL-2+`, `Expat`, `LGPL-2.1+ or
GPL-3`). Free-form files (glibc, gcc, python3.x) only point at the full texts Debian ships, as
`/usr/share/common-licenses/GPL-2`: those names are what they declare, as scanners such as syft read them.
A file with neither yields no license rather than a guess; the SBOM then says NOASSERTION.
"""
from __future__ import annotations

import re

from aegis_plugin.core.debian.deb822 import parse_paragraphs

_COMMON_LICENSE = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9][A-Za-z0-9.+_-]*[A-Za-z0-9+])")


def declared_licenses(text: str) -> tuple[str, ...]:
    """The distinct license short names a copyright file declares, sorted."""
    try:
        paragraphs = parse_paragraphs(text)
    except ValueError:  # free-form text
        paragraphs = []
    if not paragraphs or "Format" not in paragraphs[0]:
        return tuple(sorted(set(_COMMON_LICENSE.findall(text))))
    names = set()
    for paragraph in paragraphs:
        first_line = paragraph.get("License", "").split("\n", 1)[0].strip()
        if first_line:
            names.add(" ".join(first_line.split()))
    return tuple(sorted(names))
