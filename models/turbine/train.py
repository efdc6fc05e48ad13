"""Trains the demo turbine-condition classifier and writes weights.safetensors and server/examples.json.

    python train.py [--out-dir DIR]      # DIR defaults to this script's directory

Training-resolve only (numpy; scikit-learn for metrics): the image serves the network with PyTorch on a GPU
(server/handler.py), but training this small network needs neither, and numpy keeps it byte-reproducible on
any CPU. The forward pass below is the handler's, op for op; examples.json records its answers, which the
contract test compares with the served ones. The synthetic data comes from a seeded numpy Generator and the
network is trained full-batch, so re-running reproduces the committed files byte for byte (train_test.py).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.metrics import accuracy_score, f1_score, log_loss

from models.shared.training import adam_step, quantize

HERE = Path(__file__).resolve().parent

MODEL_FORMAT = "aegis-turbine-mlp/1"  # server/handler.py checks it
METADATA_KEY = "config"
CLASSES = ["normal", "imbalance", "bearing_wear"]
CLASS_SHARE = [0.6, 0.2, 0.2]
BANDS = 16
SEED = 20261201
N_SAMPLES = 8_000
TEST_FRACTION = 0.25
HIDDEN = 24
STEPS = 500
LEARNING_RATE = 0.02
L2 = 1e-4
# Stored weights are rounded to models/shared/training.py's grid: last-bit differences between CPUs' math
# kernels (SIMD exp/log, BLAS summation order) then cannot change the committed bytes.


def make_dataset(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic vibration spectra (energy per band) and condition labels.

    A healthy machine's energy falls off with frequency and scales with its load; imbalance raises the
    1x-rotation band (and a little of 2x), bearing wear the high bands. Faults come in every severity,
    mild ones hidden in the noise, so no model is perfect.
    """
    label = rng.choice(len(CLASSES), size=n, p=CLASS_SHARE)
    bands = np.arange(BANDS)
    profile = 1.0 / (1.0 + 0.35 * bands)
    load = np.exp(rng.normal(0.0, 0.4, size=(n, 1)))
    energy = profile * load * np.exp(rng.normal(0.0, 0.25, size=(n, BANDS)))
    severity = rng.uniform(0.0, 1.0, size=n)
    imbalance = label == 1
    energy[imbalance, 0] *= 1.0 + 4.0 * severity[imbalance]
    energy[imbalance, 1] *= 1.0 + 1.0 * severity[imbalance]
    wear = label == 2
    bump = np.exp(-0.5 * ((bands - 12.5) / 2.0) ** 2)
    energy[wear] *= 1.0 + 3.0 * severity[wear, None] * bump
    return energy.astype(np.float32), label


def features_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logged = np.log1p(x.astype(np.float64))
    return logged.mean(axis=0), logged.std(axis=0)


def forward(params: dict, x: np.ndarray) -> dict:
    """TurbineNet.forward in numpy (linear layers store weight as [out, in], like torch.nn.Linear)."""
    z = (np.log1p(x.astype(np.float64)) - params["input_mean"]) / params["input_scale"]
    pre = z @ params["hidden.weight"].T + params["hidden.bias"]
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ params["output.weight"].T + params["output.bias"]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"z": z, "pre": pre, "hidden": hidden, "p": shifted / shifted.sum(axis=1, keepdims=True)}


def train_mlp(rng: np.random.Generator, x: np.ndarray, label: np.ndarray) -> dict:
    """Full-batch Adam on L2-regularised cross-entropy, in float64."""
    mean, scale = features_scale(x)
    params = {
        "input_mean": mean,
        "input_scale": scale,
        "hidden.weight": rng.normal(0.0, math.sqrt(2.0 / BANDS), size=(HIDDEN, BANDS)),
        "hidden.bias": np.zeros(HIDDEN),
        "output.weight": rng.normal(0.0, math.sqrt(1.0 / HIDDEN), size=(len(CLASSES), HIDDEN)),
        "output.bias": np.zeros(len(CLASSES)),
    }
    trained = ("hidden.weight", "hidden.bias", "output.weight", "output.bias")
    onehot = np.eye(len(CLASSES))[label]
    moment1 = {name: np.zeros_like(params[name]) for name in trained}
    moment2 = {name: np.zeros_like(params[name]) for name in trained}
    for step in range(1, STEPS + 1):
        f = forward(params, x)
        d_logits = (f["p"] - onehot) / len(x)
        d_pre = (d_logits @ params["output.weight"]) * (f["pre"] > 0)
        grads = {
            "output.weight": d_logits.T @ f["hidden"] + L2 * params["output.weight"],
            "output.bias": d_logits.sum(axis=0),
            "hidden.weight": d_pre.T @ f["z"] + L2 * params["hidden.weight"],
            "hidden.bias": d_pre.sum(axis=0),
        }
        adam_step(params, grads, moment1, moment2, step, LEARNING_RATE)
    return params


def examples(params: dict, x: np.ndarray, label: np.ndarray) -> list:
    """Requests for the contract test: one of each class, then a batch of three, with the expected answers."""
    rows = [int(np.flatnonzero(label == c)[0]) for c in range(len(CLASSES))]
    batches = [[r] for r in rows] + [rows[::-1]]
    result = []
    for batch in batches:
        inputs = np.round(x[batch].astype(np.float64), 4)
        p = forward(params, inputs.astype(np.float32))["p"]
        result.append({
            "inputs": {"band_energy": inputs.tolist()},
            "outputs": {"condition": [CLASSES[i] for i in p.argmax(axis=1)],
                        "probabilities": np.round(p, 4).tolist()},
        })
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write the artifacts")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(SEED)
    x, label = make_dataset(rng, N_SAMPLES)
    order = rng.permutation(N_SAMPLES)
    n_test = int(N_SAMPLES * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    params = train_mlp(rng, x[train], label[train])

    config = {"format": MODEL_FORMAT, "classes": CLASSES, "seed": SEED}
    (args.out_dir / "server").mkdir(parents=True, exist_ok=True)
    weights = args.out_dir / "weights.safetensors"
    save_file({name: quantize(value) for name, value in params.items()}, str(weights),
              metadata={METADATA_KEY: json.dumps(config, sort_keys=True, separators=(",", ":"))})
    weights.chmod(0o644)  # safetensors creates it 0600

    # Evaluate exactly what ships: the written weights, through the handler's forward pass.
    shipped = {name: value.astype(np.float64) for name, value in load_file(str(weights)).items()}
    p_test = forward(shipped, x[test])["p"]
    (args.out_dir / "server" / "examples.json").write_text(
        json.dumps(examples(shipped, x[test], label[test]), indent=2) + "\n")
    predicted = p_test.argmax(axis=1)
    metrics = {
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "accuracy": accuracy_score(label[test], predicted),
        "macro_f1": f1_score(label[test], predicted, average="macro"),
        "log_loss": log_loss(label[test], p_test, labels=list(range(len(CLASSES)))),
        "majority_baseline_accuracy": float(np.mean(label[test] == 0)),
    }
    metrics = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
