from __future__ import annotations

import pytest

from aegis_plugin.core.debian.deb822 import format_paragraph, parse_paragraph, parse_paragraphs


def test_paragraphs_with_continuations_and_comments() -> None:
    text = "# header\n\nPackage: a\nDescription: short\n long line\n .\n\n\nPackage: b\nVersion: 1\n"
    assert parse_paragraphs(text) == [
        {"Package": "a", "Description": "short\n long line\n ."},
        {"Package": "b", "Version": "1"},
    ]


def test_single_paragraph_and_errors() -> None:
    assert parse_paragraph("A: 1\nB: x: y\n") == {"A": "1", "B": "x: y"}
    with pytest.raises(ValueError):
        parse_paragraph("A: 1\n\nB: 2\n")
    with pytest.raises(ValueError):
        parse_paragraphs(" orphan continuation\n")
    with pytest.raises(ValueError):
        parse_paragraphs("no colon here\n")


def test_format_round_trips() -> None:
    text = format_paragraph([("Package", "a"), ("Version", "1:2-3")])
    assert text == "Package: a\nVersion: 1:2-3\n"
    assert parse_paragraph(text) == {"Package": "a", "Version": "1:2-3"}
