"""What the SBOMs say about the model, read from its card's sections and fields.

The card is Markdown split into sections by heading (the inventory carries them). Lists become separate
items (one per bullet; a paragraph is one item), and performance metrics come from the "Evaluation metrics"
section: a Markdown table (a metric column and a value column, optionally a slice column) or
``- name: value`` bullets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from aegis_plugin.core.sbom.inventory import ModelCard

_BULLET = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# `name: value`, `**name:** value` or `**name**: value`
_METRIC_BULLET = re.compile(r"^(?:\*\*|__)?([^:\s][^:]*?)(?::(?:\*\*|__)|(?:\*\*|__):|:)[ \t]+(.*\S)\s*$")
_NUMBER_START = re.compile(r"^[-+±~≈<>≤≥]?\s*\.?\d")

_NAME_COLUMNS = ("metric", "metrics", "name", "measure")
_VALUE_COLUMNS = ("value", "score", "result", "results")
_SLICE_COLUMNS = ("slice", "subset", "split", "segment", "dataset", "data")

# CycloneDX modelParameters.approach.type
APPROACHES = ("supervised", "unsupervised", "reinforcement-learning", "semi-supervised", "self-supervised")


@dataclass(frozen=True)
class Metric:
    name: str
    value: str
    slice: Optional[str] = None


@dataclass(frozen=True)
class CardFacts:
    task: Optional[str]
    approach: Optional[str]  # one of APPROACHES
    architecture_family: Optional[str]
    model_architecture: Optional[str]
    owner: Optional[str]
    license: Optional[str]
    copyright: Optional[str]  # the card's "copyright" field, e.g. "Copyright 2026 Example Corp."
    use_cases: Tuple[str, ...]
    out_of_scope_uses: Tuple[str, ...]
    users: Tuple[str, ...]
    limitations: Tuple[str, ...]
    tradeoffs: Tuple[str, ...]
    ethical_considerations: Tuple[str, ...]
    metrics: Tuple[Metric, ...]
    training_data: Optional[str]
    evaluation_data: Optional[str]


def _text(lines: List[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(line.strip() for line in lines)).strip()


def _is_table_row(line: str) -> bool:
    return line.strip().startswith("|")


def items(markdown: Optional[str]) -> Tuple[str, ...]:
    """One string per bullet and per paragraph, in order; tables and headings are left out."""
    if not markdown:
        return ()
    out: List[str] = []
    current: List[str] = []

    def flush() -> None:
        if current:
            text = _text(current)
            if text:
                out.append(text)
            current.clear()

    for line in markdown.splitlines():
        if not line.strip() or _HEADING.match(line) or _is_table_row(line):
            flush()
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            current.append(bullet.group(1))
        else:
            current.append(line)
    flush()
    return tuple(out)


def paragraphs(markdown: Optional[str]) -> Optional[str]:
    """The section as plain paragraphs separated by blank lines (lines within a paragraph joined)."""
    parts = items(markdown)
    return "\n\n".join(parts) if parts else None


def _cells(line: str) -> List[str]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", text)]


def _column(header: List[str], names: Tuple[str, ...]) -> Optional[int]:
    for i, cell in enumerate(header):
        if re.sub(r"[^a-z]", "", cell.lower()) in names:
            return i
    return None


def metrics(markdown: Optional[str]) -> Tuple[Metric, ...]:
    """Performance metrics, in document order, from Markdown tables (a metric column, a value column headed
    value/score/result or else the first other column, and optionally a slice column) and from
    ``- name: value`` bullets whose value starts with a number (``0.86``, ``6.1%``, ``±0.02``), so prose
    bullets are not taken for metrics. Fenced code is skipped; emphasis and backticks are dropped."""
    if not markdown:
        return ()
    lines = markdown.splitlines()
    out: List[Metric] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence or _FENCE.match(line):
            i += 1
            continue
        if _is_table_row(line) and i + 1 < len(lines) and _is_table_row(lines[i + 1]):
            header = _cells(line)
            separator = _cells(lines[i + 1])
            if all(_TABLE_SEPARATOR_CELL.match(cell) for cell in separator) and len(header) >= 2:
                name_col = _column(header, _NAME_COLUMNS)
                value_col = _column(header, _VALUE_COLUMNS)
                slice_col = _column(header, _SLICE_COLUMNS)
                name_col = 0 if name_col is None else name_col
                if value_col is None:
                    value_col = next(c for c in range(len(header)) if c not in (name_col, slice_col))
                i += 2
                while i < len(lines) and _is_table_row(lines[i]):
                    row = [_plain(cell) for cell in _cells(lines[i])]
                    i += 1
                    if max(name_col, value_col) >= len(row):
                        continue
                    name, value = row[name_col], row[value_col]
                    if not name or not value:
                        continue
                    slice_ = row[slice_col] if slice_col is not None and slice_col < len(row) else None
                    out.append(Metric(name, value, slice_ or None))
                continue
        bullet = _BULLET.match(line)
        pair = _METRIC_BULLET.match(bullet.group(1).strip()) if bullet else None
        if pair:
            name, value = _plain(pair.group(1)), _plain(pair.group(2))
            if name and len(name) <= 80 and _NUMBER_START.match(value):
                out.append(Metric(name, value))
        i += 1
    return tuple(out)


def _plain(text: str) -> str:
    """Markdown emphasis and code marks around a cell or value removed: ``**F1**`` -> ``F1``."""
    text = text.strip()
    for mark in ("**", "__", "`", "*", "_"):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            text = text[len(mark):-len(mark)].strip()
    return text.replace("`", "")


def facts(card: ModelCard) -> CardFacts:
    approach = card.field("approach", "learning type", "learning_type")
    approach = approach.lower() if approach and approach.lower() in APPROACHES else None
    return CardFacts(
        task=card.field("task"),
        approach=approach,
        architecture_family=card.field("architecture_family", "architecture family"),
        model_architecture=card.field("model_architecture", "architecture"),
        owner=card.field("owner"),
        license=card.field("license"),
        copyright=card.field("copyright"),
        use_cases=items(card.section("Intended use", "Intended uses", "Intended use cases", "Use cases", "Uses")),
        out_of_scope_uses=items(card.section("Out-of-scope use", "Out-of-scope uses", "Out-of-scope use cases",
                                             "Out of scope")),
        users=items(card.section("Intended users", "Users", "Primary intended users")),
        limitations=items(card.section("Limitations", "Technical limitations", "Known limitations",
                                       "Bias, risks and limitations")),
        tradeoffs=items(card.section("Performance tradeoffs", "Tradeoffs", "Trade-offs")),
        ethical_considerations=items(card.section("Ethical considerations", "Ethics", "Risks")),
        metrics=metrics(card.section("Evaluation metrics", "Metrics", "Evaluation", "Evaluation results",
                                     "Performance")),
        training_data=paragraphs(card.section("Training data", "Training dataset", "Training datasets")),
        evaluation_data=paragraphs(card.section("Evaluation data", "Evaluation dataset", "Test data")),
    )
