"""Training must be reproducible: re-running train.py rebuilds the committed artifacts byte for byte."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from models.turbine import train

COMMITTED = Path(__file__).parent
ARTIFACTS = ("weights.safetensors", "server/examples.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("turbine")
    metrics = train.main(["--out-dir", str(out_dir)])
    return out_dir, metrics


@pytest.mark.parametrize("name", ARTIFACTS)
def test_retraining_reproduces_committed_artifact(run, name: str) -> None:
    out_dir, _ = run
    assert (out_dir / name).read_bytes() == (COMMITTED / name).read_bytes(), (
        f"{name} differs from the committed file: if the change to train.py is intended, "
        f"re-run `python models/turbine/train.py` and commit the new artifacts and model card numbers")


def test_model_quality(run) -> None:
    _, metrics = run
    assert metrics["accuracy"] >= 0.88
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"] + 0.25
    assert metrics["macro_f1"] >= 0.85


def test_weights_load_as_the_handlers_state_dict() -> None:
    """The tensor names and shapes TurbineNet.load_state_dict expects (torch.nn.Linear: weight is [out, in])."""
    shapes = {name: list(value.shape) for name, value in load_file(str(COMMITTED / "weights.safetensors")).items()}
    assert shapes == {
        "input_mean": [train.BANDS], "input_scale": [train.BANDS],
        "hidden.weight": [train.HIDDEN, train.BANDS], "hidden.bias": [train.HIDDEN],
        "output.weight": [len(train.CLASSES), train.HIDDEN], "output.bias": [len(train.CLASSES)],
    }


def test_examples_cover_every_class_and_match_the_forward_pass() -> None:
    examples = json.loads((COMMITTED / "server" / "examples.json").read_text())
    params = {k: v.astype(np.float64) for k, v in load_file(str(COMMITTED / "weights.safetensors")).items()}
    assert {c for e in examples for c in e["outputs"]["condition"]} == set(train.CLASSES)
    for example in examples:
        p = train.forward(params, np.array(example["inputs"]["band_energy"], dtype=np.float32))["p"]
        assert np.allclose(p, example["outputs"]["probabilities"], atol=1e-4)
        assert np.allclose(np.sum(example["outputs"]["probabilities"], axis=1), 1.0, atol=1e-3)
