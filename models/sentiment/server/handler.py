"""Serving code for the demo review-sentiment classifier: the Aegis runtime server loads this file in the image.

Only runtime dependencies (numpy, safetensors, tokenizers) and the shared feature code in models/shared/ may
be imported here. train.py imports the same feature code, so training and serving read text identically.
"""

from __future__ import annotations

import json
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
        {"name": "text", "datatype": "BYTES", "shape": [-1]},  # a product review, UTF-8
    ],
    "outputs": [
        {"name": "positive_probability", "datatype": "FP32", "shape": [-1]},
        {"name": "is_positive", "datatype": "BOOL", "shape": [-1]},  # probability >= decision threshold
    ],
}

MODEL_FORMAT = "aegis-sentiment-logreg/1"
METADATA_KEY = "config"  # the one __metadata__ key: one canonical JSON string keeps the file reproducible


class Handler:
    """Logistic regression over the mean bag of known words of each review."""

    def __init__(self, model_dir: str):
        model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        with safe_open(str(model_dir / "weights.safetensors"), framework="numpy") as f:
            self.config = json.loads(f.metadata()[METADATA_KEY])
            self.params = {name: f.get_tensor(name).astype(np.float64) for name in f.keys()}
        if self.config.get("format") != MODEL_FORMAT:
            raise ValueError(f"unsupported weights format {self.config.get('format')!r}")
        if self.params["token.weight"].shape[0] != self.tokenizer.get_vocab_size():
            raise ValueError("tokenizer.json does not match the token weights in weights.safetensors")
        self.threshold = float(self.config["decision_threshold"])

    def predict(self, inputs: dict) -> dict:
        """Batch scoring: `text` is a 1-D list or array of str or UTF-8 bytes."""
        if "text" not in inputs:
            raise InvalidInput("missing inputs: text")
        texts = np.asarray(inputs["text"], dtype=object)
        if texts.ndim != 1:
            raise InvalidInput(f"input 'text' must be 1-D (shape [-1]), got shape {list(texts.shape)}")
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        probability = self.probability(token_bags(self.tokenizer, texts))
        return {"positive_probability": probability.astype(np.float32), "is_positive": probability >= self.threshold}

    def probability(self, bags: np.ndarray) -> np.ndarray:
        """The forward pass on already-computed bags (train.py evaluates with this too)."""
        logit = bags @ self.params["token.weight"] + self.params["bias"][0]
        return 0.5 * (1.0 + np.tanh(0.5 * logit))
