"""Contract tests for the fraud handler against the committed weights.safetensors and tokenizer.json."""

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from models.fraud.server.handler import SIGNATURE, Handler

SERVER_DIR = Path(__file__).parent
MODEL_DIR = SERVER_DIR.parent
EXAMPLES = json.loads((SERVER_DIR / "examples.json").read_text(encoding="utf-8"))

NORMAL = {"amount": 38.5, "hour": 13, "country_mismatch": False, "txn_count_24h": 1,
          "merchant": "SQ *HARBOR COFFEE HOUSE LONDON"}


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(str(MODEL_DIR))


def batch(*rows: dict) -> dict:
    return {name: [row[name] for row in rows] for name in NORMAL}


def probabilities(handler: Handler, *rows: dict) -> np.ndarray:
    return handler.predict(batch(*rows))["fraud_probability"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["inputs"]["merchant"][0])
def test_examples_match(handler: Handler, example: dict) -> None:
    outputs = handler.predict(example["inputs"])
    expected = example["outputs"]
    assert outputs["fraud_probability"].tolist() == pytest.approx(expected["fraud_probability"], abs=1e-4)
    assert outputs["is_fraud"].tolist() == expected["is_fraud"]


def test_outputs_follow_signature(handler: Handler) -> None:
    outputs = handler.predict(EXAMPLES[2]["inputs"])
    assert sorted(outputs) == sorted(spec["name"] for spec in SIGNATURE["outputs"])
    assert outputs["fraud_probability"].dtype == np.float32
    assert outputs["is_fraud"].dtype == np.bool_
    assert all(value.shape == (3,) for value in outputs.values())
    assert sorted(spec["name"] for spec in SIGNATURE["inputs"]) == sorted(NORMAL)


def test_obvious_fraud_ranks_above_normal(handler: Handler) -> None:
    fraud = {"amount": 2400.0, "hour": 3, "country_mismatch": True, "txn_count_24h": 8,
             "merchant": "PAYPAL *SUMMIT WIRE TRANSFER ONLINE"}
    p_normal, p_fraud = probabilities(handler, NORMAL, fraud)
    assert p_normal < handler.threshold < p_fraud
    assert p_fraud > 0.9 and p_normal < 0.05


@pytest.mark.parametrize("change", [
    {"amount": 1500.0},
    {"hour": 3},
    {"country_mismatch": True},
    {"txn_count_24h": 6},
    {"merchant": "SQ *HARBOR CRYPTO EXCHANGE LONDON"},
    {"merchant": "SQ *HARBOR GIFT CARDS ONLINE"},
], ids=lambda change: "-".join(map(str, change.values())))
def test_each_risk_signal_raises_probability(handler: Handler, change: dict) -> None:
    p_normal, p_risky = probabilities(handler, NORMAL, {**NORMAL, **change})
    assert p_risky > p_normal


def test_batching_and_input_types_do_not_change_scores(handler: Handler) -> None:
    inputs = EXAMPLES[2]["inputs"]
    together = handler.predict(inputs)["fraud_probability"]
    one_by_one = [handler.predict({k: v[i:i + 1] for k, v in inputs.items()})["fraud_probability"][0]
                  for i in range(3)]
    as_arrays = {
        "amount": np.asarray(inputs["amount"], dtype=np.float32),
        "hour": np.asarray(inputs["hour"], dtype=np.int32),
        "country_mismatch": np.asarray(inputs["country_mismatch"]),
        "txn_count_24h": np.asarray(inputs["txn_count_24h"], dtype=np.int32),
        "merchant": np.asarray([m.encode() for m in inputs["merchant"]], dtype=object),  # BYTES
    }
    np.testing.assert_allclose(one_by_one, together, rtol=1e-6)
    np.testing.assert_allclose(handler.predict(as_arrays)["fraud_probability"], together, rtol=1e-6)


def test_deterministic_across_instances(handler: Handler) -> None:
    inputs = EXAMPLES[2]["inputs"]
    again = Handler(str(MODEL_DIR)).predict(inputs)["fraud_probability"]
    assert handler.predict(inputs)["fraud_probability"].tobytes() == again.tobytes()


def test_unknown_merchant_words_are_neutral(handler: Handler) -> None:
    p_known, p_unknown = probabilities(handler, NORMAL, {**NORMAL, "merchant": "Ωmega Ünbekannt ZZZ"})
    assert 0.0 < p_unknown < handler.threshold and 0.0 < p_known < handler.threshold


@pytest.mark.parametrize("bad, message", [
    ({"hour": [24]}, "hour"),
    ({"amount": [-1.0]}, "amount"),
    ({"amount": [float("nan")]}, "amount"),
    ({"txn_count_24h": [-2]}, "txn_count_24h"),
    ({"merchant": ["A", "B"]}, "batch sizes"),
    ({"amount": [[1.0]]}, "1-D"),
])
def test_rejects_invalid_inputs(handler: Handler, bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        handler.predict({**batch(NORMAL), **bad})


def test_rejects_missing_inputs(handler: Handler) -> None:
    inputs = batch(NORMAL)
    del inputs["merchant"]
    with pytest.raises(ValueError, match="missing inputs: merchant"):
        handler.predict(inputs)


def test_handler_imports_runtime_dependencies_only() -> None:
    """The image gets the runtime lock only (and first-party code under models/): scikit-learn and friends must
    never be imported here."""
    tree = ast.parse((SERVER_DIR / "handler.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    # aegis_runtime is Aegis' own server, in every image (its InvalidInput makes a 400).
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "models", "aegis_runtime"}
    assert third_party == {"numpy", "safetensors", "tokenizers"}
