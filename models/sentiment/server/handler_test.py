"""Contract tests for the sentiment handler against the committed weights.safetensors and tokenizer.json."""

import json
from pathlib import Path

import numpy as np
import pytest

from models.sentiment.server.handler import SIGNATURE, Handler

SERVER_DIR = Path(__file__).parent
EXAMPLES = json.loads((SERVER_DIR / "examples.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(str(SERVER_DIR.parent))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["inputs"]["text"][0][:30])
def test_examples_match(handler: Handler, example: dict) -> None:
    outputs = handler.predict(example["inputs"])
    expected = example["outputs"]
    assert outputs["positive_probability"].tolist() == pytest.approx(expected["positive_probability"], abs=1e-4)
    assert outputs["is_positive"].tolist() == expected["is_positive"]


def test_opinion_words_move_the_score(handler: Handler) -> None:
    p = handler.predict({"text": ["excellent sturdy kettle, love it", "broken flimsy kettle, refund", "kettle"]})
    good, bad, neutral = p["positive_probability"]
    assert good > 0.9 and bad < 0.1 and bad < neutral < good


def test_bytes_and_unknown_words(handler: Handler) -> None:
    out = handler.predict({"text": [b"excellent", "zzz qqq"]})
    assert out["positive_probability"].dtype == np.float32 and out["is_positive"].dtype == bool
    assert out["is_positive"].tolist()[0] is True


def test_signature_and_bad_input(handler: Handler) -> None:
    assert [s["name"] for s in SIGNATURE["inputs"]] == ["text"]
    with pytest.raises(ValueError, match="missing inputs: text"):
        handler.predict({})
    with pytest.raises(ValueError, match="must be 1-D"):
        handler.predict({"text": [["a"]]})
