from __future__ import annotations

import re
from pathlib import Path

import pytest

from aegis_plugin.core.model.model_card import (
    REQUIRED,
    CardError,
    check,
    is_empty,
    normalize,
    parse,
    validate,
)

REAL_CARD = Path(__file__).resolve().parents[3] / "models" / "fraud" / "model_card.md"

# The headings of the real card, per required section (the card uses the canonical names).
HEADINGS = {
    "Intended use": "Intended use",
    "Out-of-scope use": "Out-of-scope use",
    "Training data": "Training data",
    "Evaluation metrics": "Evaluation metrics",
    "Limitations": "Limitations",
    "License": "License",
    "Owner": "Owner",
}

MINIMAL = """\
# Model card: tiny

## Intended use
Testing.

## Out-of-scope use
Anything real.

## Training data
Synthetic.

## Evaluation metrics
- accuracy: 0.9

## Limitations
Small.

## License
MIT

## Owner
The team.
"""


@pytest.fixture(scope="module")
def real_text() -> str:
    assert REAL_CARD.is_file(), f"{REAL_CARD} is missing (aegis_plugin/BUILD declares it a dependency)"
    return REAL_CARD.read_text(encoding="utf-8")


def drop_section(text: str, heading: str) -> str:
    """The card without the `## heading` section (up to the next level-2 heading or the end)."""
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.M | re.S)
    result, count = pattern.subn("", text)
    assert count == 1, heading
    return result


def replace_body(text: str, heading: str, body: str) -> str:
    pattern = re.compile(rf"(^## {re.escape(heading)}\n).*?(?=^## |\Z)", re.M | re.S)
    result, count = pattern.subn(lambda m: m.group(1) + body, text)
    assert count == 1, heading
    return result


def test_real_card_passes(real_text: str) -> None:
    card = validate(real_text)
    assert check(card) == []
    assert card.title == "Model card: fraud-detector"
    assert list(card.sections)[:2] == ["Model details", "Intended use"]
    assert "Ethical considerations" in card.sections


def test_real_card_fields(real_text: str) -> None:
    fields = parse(real_text).fields
    assert fields["model_id"] == "fraud-detector"
    assert fields["version"] == "1.0.0"
    assert fields["owner"] == "Aegis maintainers <https://github.com/aegis-ml/aegis>"
    assert fields["license"] == "Apache-2.0"
    assert fields["framework"] == "numpy"


@pytest.mark.parametrize("name", list(REQUIRED))
def test_each_missing_section_is_named(real_text: str, name: str) -> None:
    text = drop_section(real_text, HEADINGS[name])
    assert check(parse(text)) == [f"missing section: {name}"]
    with pytest.raises(CardError) as error:
        validate(text)
    assert str(error.value) == f"model card is missing section: {name}"
    assert error.value.missing == [name] and error.value.empty == []


def test_every_problem_in_one_line(real_text: str) -> None:
    text = drop_section(drop_section(real_text, "Training data"), "Owner")
    text = replace_body(text, "Limitations", "TBD\n\n")
    with pytest.raises(CardError) as error:
        validate(text)
    assert str(error.value) == "model card is missing sections: Training data, Owner; empty: Limitations"
    assert "\n" not in str(error.value)
    assert check(parse(text)) == [
        "missing section: Training data",
        "missing section: Owner",
        "empty section: Limitations",
    ]


def test_empty_card() -> None:
    with pytest.raises(CardError) as error:
        validate("# nothing here\n")
    assert str(error.value) == "model card is missing sections: " + ", ".join(REQUIRED)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n   \n",
        "<!-- describe the limits -->\n",
        "<!--\nmulti-line\ncomment\n-->\nTBD\n",
        "TODO\n",
        "- N/A\n",
        "*TBD*.\n",
        "TODO: write this section\n",
        "[More Information Needed]\n",
        "### Known issues\n\nn/a\n",
    ],
)
def test_empty_section(body: str) -> None:
    text = replace_body(MINIMAL, "Limitations", body + "\n")
    with pytest.raises(CardError, match=r"^model card has empty section: Limitations$"):
        validate(text)


@pytest.mark.parametrize("body", ["None known.", "- TBD\n- Small test set.", "```\ncode\n```", "N/A for X: it is Y."])
def test_non_empty_section(body: str) -> None:
    assert not is_empty(body)


def test_several_empty_sections() -> None:
    text = replace_body(replace_body(MINIMAL, "License", "TBD\n\n"), "Owner", "")
    with pytest.raises(CardError, match=r"^model card has empty sections: License, Owner$"):
        validate(text)


def test_subsections_belong_to_their_section() -> None:
    text = replace_body(MINIMAL, "Limitations", "### Data\n\nOnly synthetic data.\n\n")
    card = validate(text)
    assert "Only synthetic data." in card.sections["Limitations"]


def test_headings_in_code_blocks_are_not_sections() -> None:
    text = MINIMAL.replace("## Owner\nThe team.\n", "```\n## Owner\nThe team.\n```\n")
    assert check(parse(text)) == ["missing section: Owner"]


@pytest.mark.parametrize(
    "heading, name",
    [
        ("## Evaluation", "Evaluation metrics"),
        ("## Metrics", "Evaluation metrics"),
        ("## EVALUATION  METRICS:", "Evaluation metrics"),
        ("## Out-of-scope uses", "Out-of-scope use"),
        ("## Out of Scope Use", "Out-of-scope use"),
        ("## 2. Intended uses", "Intended use"),
        ("## Training dataset", "Training data"),
        ("## Known limitations", "Limitations"),
        ("## Licence", "License"),
        ("## Maintainers ##", "Owner"),
    ],
)
def test_synonyms_and_normalisation(heading: str, name: str) -> None:
    original = "## " + next(h for h in HEADINGS.values() if h == name)
    text = MINIMAL.replace(original + "\n", heading + "\n")
    assert text != MINIMAL
    card = validate(text)
    assert card.section(name)


def test_a_level_three_heading_is_not_a_section() -> None:
    text = MINIMAL.replace("## Owner\n", "### Owner\n")
    assert check(parse(text)) == ["missing section: Owner"]


def test_normalize() -> None:
    assert normalize("3. Out-of-Scope  Uses:") == "out of scope uses"
    assert normalize("  Evaluation metrics ") == "evaluation metrics"


def test_fields_from_details_and_front_matter() -> None:
    text = (
        "---\n"
        "model_id: tiny\n"
        'license: "MIT"\n'
        "tags:\n"
        "  - demo\n"
        "---\n"
        "# Tiny\n\n"
        "## Model details\n\n"
        "- Model ID: from-details\n"
        "- **Owner:** Data team\n"
        "- **Framework**: numpy\n"
        "- base model: none\n"
        "Some prose: not a field\n\n"
        + MINIMAL.split("\n", 1)[1]
    )
    card = validate(text)
    assert card.title == "Tiny"
    assert card.fields == {
        "model_id": "tiny",  # front matter wins
        "owner": "Data team",
        "framework": "numpy",
        "base_model": "none",
        "license": "MIT",
    }
    assert list(card.sections)[0] == "Model details"


def test_no_fields() -> None:
    assert parse(MINIMAL).fields == {}


def test_crlf() -> None:
    assert validate(MINIMAL.replace("\n", "\r\n")).sections["Owner"] == "The team."
