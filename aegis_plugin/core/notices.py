"""Copyright notices found in free-form text: a Debian copyright file, a Python distribution's license files."""
from __future__ import annotations

import re

# "Copyright", then "(c)", "©" or a year: a notice, not a heading such as "COPYRIGHT STATEMENTS AND ...".
_NOTICE = re.compile(r"^\s*copyright\s*(?:\(c\)|©|\d)", re.IGNORECASE)


def distinct(lines: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """``lines`` with whitespace collapsed, empty ones (and DEP-5's "." blank lines) dropped, first seen first."""
    collapsed = (" ".join(line.split()) for line in lines)
    return tuple(dict.fromkeys(line for line in collapsed if line and line != "."))


def notice_lines(text: str) -> tuple[str, ...]:
    """The distinct lines of ``text`` that are copyright notices, in order."""
    return distinct([line for line in text.splitlines() if _NOTICE.match(line)])
