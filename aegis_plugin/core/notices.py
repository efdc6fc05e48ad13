"""Copyright notices found in free-form text: a Debian copyright file, a Python distribution's license files,
the comments of its source files."""
from __future__ import annotations

import re

# "Copyright", then "(c)", "©" or a year: a notice, not a heading such as "COPYRIGHT STATEMENTS AND ...".
_NOTICE = re.compile(r"^\s*copyright\s*(?:\(c\)|©|\d)", re.IGNORECASE)
# The same notice behind a comment leader (`# `, ` * `, `// `, `-- `, `; `), which is not part of it.
_COMMENTED_NOTICE = re.compile(r"^[\s#*/;!-]*(copyright\s*(?:\(c\)|©|\d).*?)[\s*/]*$", re.IGNORECASE)


def distinct(lines: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """``lines`` with whitespace collapsed, empty ones (and DEP-5's "." blank lines) dropped, first seen first."""
    collapsed = (" ".join(line.split()) for line in lines)
    return tuple(dict.fromkeys(line for line in collapsed if line and line != "."))


def notice_lines(text: str) -> tuple[str, ...]:
    """The distinct lines of ``text`` that are copyright notices, in order."""
    return distinct([line for line in text.splitlines() if _NOTICE.match(line)])


def source_notice_lines(text: str) -> tuple[str, ...]:
    """The distinct copyright notices in the comments of a source file, without their comment leaders."""
    found = (_COMMENTED_NOTICE.match(line) for line in text.splitlines() if "opyright" in line or "OPYRIGHT" in line)
    return distinct([match.group(1) for match in found if match])
