"""The licenses and copyright notices a Debian package declares, read from its `/usr/share/doc/<pkg>/copyright`.

Machine-readable copyright files (DEP-5: a first paragraph with `Format:`) declare licenses in a form a
program can read: every `License:` field's first line is a short name (`GPL-2+`, `Expat`, `LGPL-2.1+ or
GPL-3`). Free-form files (glibc, gcc, python3.x) only point at the full texts Debian ships, as
`/usr/share/common-licenses/GPL-2`: those names are what they declare, as scanners such as syft read them.
A file with neither yields no license rather than a guess; the SBOM then says NOASSERTION.

Copyright notices are the `Copyright:` fields of a machine-readable file, or, in a free-form one, the lines
that are a notice (`Copyright (C) 1991-2015 Free Software Foundation, Inc.`), each as written.
"""
from __future__ import annotations

import re

from aegis_plugin.core import notices
from aegis_plugin.core.debian.deb822 import parse_paragraphs

_COMMON_LICENSE = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9][A-Za-z0-9.+_-]*[A-Za-z0-9+])")


def _dep5_paragraphs(text: str) -> list[dict[str, str]]:
    """The paragraphs of a machine-readable (DEP-5) file; empty for a free-form one."""
    try:
        paragraphs = parse_paragraphs(text)
    except ValueError:  # free-form text
        return []
    return paragraphs if paragraphs and "Format" in paragraphs[0] else []


def declared_licenses(text: str) -> tuple[str, ...]:
    """The distinct license short names a copyright file declares, sorted."""
    paragraphs = _dep5_paragraphs(text)
    if not paragraphs:
        return tuple(sorted(set(_COMMON_LICENSE.findall(text))))
    names = set()
    for paragraph in paragraphs:
        first_line = paragraph.get("License", "").split("\n", 1)[0].strip()
        if first_line:
            names.add(" ".join(first_line.split()))
    return tuple(sorted(names))


def copyright_notices(text: str) -> tuple[str, ...]:
    """The distinct copyright notices a copyright file states, in the file's order, whitespace collapsed."""
    paragraphs = _dep5_paragraphs(text)
    if not paragraphs:
        return notices.notice_lines(text)
    return notices.distinct([line for p in paragraphs for line in p.get("Copyright", "").split("\n")])
