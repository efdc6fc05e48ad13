"""The model card (`model_card.md`): parsing and the required-sections check (the SBOM reads the rest of it:
`aegis_plugin/core/sbom/card.py`).

A card is Markdown. Its sections are the level-2 ATX headings (`## Heading`); a section's text runs to the
next level-1 or level-2 heading, so `###` subsections belong to it. Headings inside fenced code blocks are
not headings. Section names are matched after normalisation (case, punctuation, extra spaces and a leading
number such as `3.` are ignored), and each required section accepts a few synonyms (`REQUIRED`).

A required section that is missing, or present but empty, is an error. Empty means nothing is left once
HTML comments, subheadings and placeholder lines (`TBD`, `TODO`, `N/A`, `[More Information Needed]`, …)
are set aside.

Fields come from a `key: value` bullet list in a "Model details" section and from YAML-style front matter
(`---` lines around `key: value` lines at the very top); front matter wins where both give a key. Keys are
lower-cased with spaces and hyphens turned into underscores (`Model ID` -> `model_id`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from aegis_plugin.core.errors import AegisError

# Canonical name (used in messages) -> the headings it accepts, normalised as `normalize` does.
REQUIRED: dict[str, tuple[str, ...]] = {
    "Intended use": ("intended use", "intended uses", "intended use cases"),
    "Out-of-scope use": ("out of scope use", "out of scope uses", "out of scope use cases"),
    "Training data": ("training data", "training dataset", "training datasets"),
    "Evaluation metrics": ("evaluation metrics", "evaluation", "metrics", "evaluation results"),
    "Limitations": ("limitations", "known limitations", "bias risks and limitations"),
    "License": ("license", "licence", "licensing"),
    "Owner": ("owner", "owners", "maintainer", "maintainers", "contact"),
}
DETAILS = ("model details", "details", "model information")
_SYNONYMS: dict[str, tuple[str, ...]] = {**REQUIRED, "Model details": DETAILS}

# A section whose every line is one of these (lower-cased, punctuation dropped) is empty.
PLACEHOLDERS = frozenset({
    "tbd", "tba", "todo", "to do", "fixme", "xxx", "n a", "na", "more information needed",
    "to be determined", "to be done", "coming soon", "",
})

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BULLET = re.compile(r"^ {0,3}[-*+][ \t]+(.*)$")
# `key: value`, `**key:** value` or `**key**: value`, with a word-like key.
_FIELD = re.compile(r"^(?:\*\*|__)?([A-Za-z][A-Za-z0-9 _./-]*?)(?::(?:\*\*|__)|(?:\*\*|__):|:)[ \t]+(.*\S)\s*$")
_TODO = re.compile(r"^(?:todo|tbd|tba|fixme|xxx)\s*[:(-]")


class CardError(AegisError, ValueError):
    """One line naming every missing and every empty required section."""

    def __init__(self, missing: list[str], empty: list[str]) -> None:
        self.missing = list(missing)
        self.empty = list(empty)
        parts = []
        if missing:
            parts.append(f"model card is missing {_plural('section', missing)}: {', '.join(missing)}")
        if empty:
            if parts:
                parts.append(f"empty: {', '.join(empty)}")
            else:
                parts.append(f"model card has empty {_plural('section', empty)}: {', '.join(empty)}")
        super().__init__("; ".join(parts))


@dataclass(frozen=True)
class ModelCard:
    title: str | None
    sections: dict[str, str] = field(default_factory=dict)  # heading as written -> body, document order
    fields: dict[str, str] = field(default_factory=dict)

    def section(self, name: str) -> str | None:
        """The body of a required section (canonical name, e.g. "Evaluation metrics") or of any heading,
        matched with synonyms and normalisation; several matching headings are joined."""
        accepted = _SYNONYMS.get(name, (normalize(name),))
        bodies = [body for heading, body in self.sections.items() if normalize(heading) in accepted]
        return "\n\n".join(bodies) if bodies else None


def normalize(heading: str) -> str:
    """`"3. Out-of-Scope  Uses:"` -> `"out of scope uses"`."""
    words = re.sub(r"[^0-9a-z]+", " ", heading.lower()).split()
    while words and words[0].isdigit():
        words.pop(0)
    return " ".join(words)


def parse(text: str) -> ModelCard:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    front: dict[str, str] = {}
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            front = _front_matter(lines[1:end])
            lines = lines[end + 1:]

    title: str | None = None
    sections: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        if current is None:
            return
        text = "\n".join(body).strip("\n")
        sections[current] = f"{sections[current]}\n\n{text}" if current in sections else text

    for line in lines:
        if fence is not None:
            if re.match(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
                fence = None
            body.append(line)
            continue
        opened = _FENCE.match(line)
        if opened:
            fence = opened.group(1)
            body.append(line)
            continue
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) <= 2:
            name = (heading.group(2) or "").strip()
            if len(heading.group(1)) == 1:
                if title is None:
                    title = name
                close()
                current, body = None, []
            else:
                close()
                current, body = name, []
            continue
        body.append(line)
    close()

    fields = _details_fields(ModelCard(title, sections).section("Model details") or "")
    fields.update(front)
    return ModelCard(title, sections, fields)


def check(card: ModelCard) -> list[str]:
    """Problems, one per required section, in `REQUIRED` order: `missing section: X` / `empty section: X`."""
    missing, empty = _missing_and_empty(card)
    return [f"missing section: {name}" for name in missing] + [f"empty section: {name}" for name in empty]


def validate(text: str) -> ModelCard:
    """`parse` then raise `CardError` naming every missing and empty required section."""
    card = parse(text)
    missing, empty = _missing_and_empty(card)
    if missing or empty:
        raise CardError(missing, empty)
    return card


def is_empty(body: str) -> bool:
    text = _COMMENT.sub("", body)
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            if line.strip():
                return False
            continue
        if _HEADING.match(line):
            continue
        if not _is_placeholder(line):
            return False
    return True


def _missing_and_empty(card: ModelCard) -> tuple[list[str], list[str]]:
    missing, empty = [], []
    for name in REQUIRED:
        body = card.section(name)
        if body is None:
            missing.append(name)
        elif is_empty(body):
            empty.append(name)
    return missing, empty


def _details_fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in _COMMENT.sub("", body).split("\n"):
        bullet = _BULLET.match(line)
        pair = _key_value(bullet.group(1), _FIELD) if bullet else None
        if pair:
            fields.setdefault(_field_key(pair[0]), pair[1])
    return fields


def _front_matter(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip() or line[:1] in (" ", "\t", "#", "-"):
            continue  # blank, nested, comment or list item: only flat scalars are fields
        key, sep, value = line.partition(":")
        value = value.strip()
        if not sep or not value:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[_field_key(key)] = value
    return fields


def _field_key(key: str) -> str:
    return re.sub(r"[\s-]+", "_", key.strip().lower())


def _key_value(item: str, pattern: re.Pattern[str]) -> tuple[str, str] | None:
    match = pattern.match(item.strip())
    if not match:
        return None
    return match.group(1).strip(), match.group(2).strip()


def _is_placeholder(line: str) -> bool:
    """Blank, a rule, or only a placeholder word (`TBD`, `- N/A.`, `*TODO*`, `TODO: write this`)."""
    text = re.sub(r"^(?:[>#*+-]\s*)+", "", line.strip().lower()).strip("*_` ")
    if _TODO.match(text):
        return True
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split()) in PLACEHOLDERS


def _plural(word: str, items: list[str]) -> str:
    return word if len(items) == 1 else word + "s"
