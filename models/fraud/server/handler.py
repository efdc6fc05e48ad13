"""Serving code for the demo fraud detector: the Aegis runtime server loads this file in the image.

Only runtime dependencies (numpy, safetensors, tokenizers) may be imported here: this file and the
runtime lock (and the shared feature code in models/shared/) are all that goes into the image. train.py
loads this same file for its feature code, so training and serving compute features identically (no
train/serve skew).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors import safe_open
from tokenizers import Tokenizer

try:  # a request the model cannot take is a 400 naming the problem (the runtime's InvalidInput)
    from aegis_runtime import InvalidInput  # pants: no-infer-dep (shipped by Aegis into every image)
except ImportError:  # outside the image: the handler's own tests
    InvalidInput = ValueError

from models.shared.textfeatures import token_bags

# Open Inference Protocol v2 tensor specs; the first dimension of every tensor is the batch.
SIGNATURE = {
    "inputs": [
        {"name": "amount", "datatype": "FP32", "shape": [-1]},  # transaction amount, >= 0
        {"name": "hour", "datatype": "INT32", "shape": [-1]},  # local hour of day, 0..23
        {"name": "country_mismatch", "datatype": "BOOL", "shape": [-1]},  # card vs merchant country
        {"name": "txn_count_24h", "datatype": "INT32", "shape": [-1]},  # card's transactions in 24 h
        {"name": "merchant", "datatype": "BYTES", "shape": [-1]},  # merchant descriptor text
    ],
    "outputs": [
        {"name": "fraud_probability", "datatype": "FP32", "shape": [-1]},
        {"name": "is_fraud", "datatype": "BOOL", "shape": [-1]},  # probability >= decision threshold
    ],
}

MODEL_FORMAT = "aegis-fraud-mlp/1"
# The only key of the weights file's __metadata__: safetensors writes several metadata keys in a
# random order, so everything lives in one canonical JSON string to keep the file byte-reproducible.
METADATA_KEY = "config"
NUMERIC_FEATURES = ("log_amount", "hour_sin", "hour_cos", "country_mismatch", "log_txn_count_24h")


def numeric_features(amount, hour, country_mismatch, txn_count_24h) -> np.ndarray:
    """Raw numeric features in NUMERIC_FEATURES order, shape [n, 5], float64 (standardized later).

    Amounts and counts are heavy-tailed, so they enter as logs; the hour is cyclic (23 h is next to 0 h),
    so it enters as a point on the unit circle.
    """
    amount = np.asarray(amount, dtype=np.float64)
    hour = np.asarray(hour, dtype=np.float64)
    angle = hour * (2.0 * math.pi / 24.0)
    return np.stack(
        [
            np.log1p(amount),
            np.sin(angle),
            np.cos(angle),
            np.asarray(country_mismatch, dtype=np.float64),
            np.log1p(np.asarray(txn_count_24h, dtype=np.float64)),
        ],
        axis=1,
    )


class Handler:
    """Scores card transactions with a small MLP over numeric features and merchant-text tokens."""

    def __init__(self, model_dir: str):
        model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        with safe_open(str(model_dir / "weights.safetensors"), framework="numpy") as f:
            self.config = json.loads(f.metadata()[METADATA_KEY])
            # Stored as float32; inference runs in float64 so results don't hinge on float32 rounding.
            self.params = {name: f.get_tensor(name).astype(np.float64) for name in f.keys()}
        if self.config.get("format") != MODEL_FORMAT:
            raise ValueError(f"unsupported weights format {self.config.get('format')!r}")
        if tuple(self.config["numeric_features"]) != NUMERIC_FEATURES:
            raise ValueError("weights were trained on a different numeric feature order")
        if self.params["token_embedding.weight"].shape[0] != self.tokenizer.get_vocab_size():
            raise ValueError("tokenizer.json does not match the token embedding in weights.safetensors")
        self.threshold = float(self.config["decision_threshold"])

    def predict(self, inputs: dict) -> dict:
        """Batch scoring: every input is a 1-D list or array of the same length (BYTES as str/bytes)."""
        missing = [spec["name"] for spec in SIGNATURE["inputs"] if spec["name"] not in inputs]
        if missing:
            raise InvalidInput(f"missing inputs: {', '.join(missing)}")
        amount = _vector(inputs, "amount", np.float64)
        hour = _vector(inputs, "hour", np.float64)
        mismatch = _vector(inputs, "country_mismatch", np.float64)
        txn_count = _vector(inputs, "txn_count_24h", np.float64)
        merchant = [m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in _vector(inputs, "merchant", object)]
        sizes = {len(amount), len(hour), len(mismatch), len(txn_count), len(merchant)}
        if len(sizes) != 1:
            raise InvalidInput(f"inputs have different batch sizes: {sorted(sizes)}")
        if not (np.all(np.isfinite(amount)) and np.all(amount >= 0)):
            raise InvalidInput("amount must be finite and >= 0")
        if not np.all((hour >= 0) & (hour <= 23) & (hour == np.floor(hour))):
            raise InvalidInput("hour must be an integer in 0..23")
        if not np.all(txn_count >= 0):
            raise InvalidInput("txn_count_24h must be >= 0")

        probability = self.probability(
            numeric_features(amount, hour, mismatch, txn_count), token_bags(self.tokenizer, merchant)
        )
        return {"fraud_probability": probability.astype(np.float32), "is_fraud": probability >= self.threshold}

    def probability(self, numeric: np.ndarray, bags: np.ndarray) -> np.ndarray:
        """The model's forward pass on already-computed features (train.py evaluates with this too)."""
        p = self.params
        x = (numeric - p["numeric.mean"]) / p["numeric.std"]
        x = np.concatenate([x, bags @ p["token_embedding.weight"]], axis=1)
        hidden = np.maximum(x @ p["hidden.weight"] + p["hidden.bias"], 0.0)
        logit = hidden @ p["output.weight"] + p["output.bias"]
        return 1.0 / (1.0 + np.exp(-logit))


def _vector(inputs: dict, name: str, dtype) -> np.ndarray:
    """One input as a 1-D array; a scalar is rejected because the first dimension is the batch."""
    value = np.asarray(inputs[name], dtype=dtype)
    if value.ndim != 1:
        raise InvalidInput(f"input {name!r} must be 1-D (shape [-1]), got shape {list(value.shape)}")
    return value
