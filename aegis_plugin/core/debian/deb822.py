"""deb822 paragraphs (Packages indexes, control files, our lock), parsed by hand: no python-debian."""

from __future__ import annotations

from typing import Iterable


def parse_paragraphs(text: str) -> list[dict[str, str]]:
    """Split ``text`` into paragraphs of ``Field: value``; continuation lines keep their newline.

    Lines starting with ``#`` are comments (allowed in our own lock, absent from Debian's files).
    """
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, last = {}, None
        elif line.startswith("#"):
            continue
        elif line[0] in " \t":
            if last is None:
                raise ValueError(f"continuation line without a field: {line!r}")
            current[last] += "\n" + line
        else:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"not a 'Field: value' line: {line!r}")
            last = name.strip()
            current[last] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_paragraph(text: str) -> dict[str, str]:
    """Parse text that must hold exactly one paragraph (a control file)."""
    paragraphs = parse_paragraphs(text)
    if len(paragraphs) != 1:
        raise ValueError(f"expected one deb822 paragraph, found {len(paragraphs)}")
    return paragraphs[0]


def format_paragraph(fields: Iterable[tuple[str, str]]) -> str:
    """Render fields in the given order, one per line, ending with a newline."""
    return "".join(f"{name}: {value}\n" for name, value in fields)
