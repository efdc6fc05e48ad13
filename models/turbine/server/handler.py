"""Serving code for the demo turbine-condition classifier, Aegis' PyTorch model: it runs on an NVIDIA GPU only.

The image declares `accelerator="cuda-12.1"` (torch 2.4.1's CUDA 12.1 wheels). The Aegis runtime checks for a
usable GPU before it constructs this handler and reports not-ready otherwise; the constructor checks again, so
the model never runs on the CPU by accident. train.py (numpy, no torch) trains the same network and writes
the expected outputs in examples.json, which the contract test compares with this code's answers on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

try:  # a request the model cannot take is a 400 naming the problem (the runtime's InvalidInput)
    from aegis_runtime import InvalidInput  # pants: no-infer-dep (shipped by Aegis into every image)
except ImportError:  # outside the image
    InvalidInput = ValueError

BANDS = 16  # vibration energy in 16 frequency bands, from 1x rotation speed upwards

# Open Inference Protocol v2 tensor specs; the first dimension of every tensor is the batch.
SIGNATURE = {
    "inputs": [
        {"name": "band_energy", "datatype": "FP32", "shape": [-1, BANDS]},  # >= 0, arbitrary units
    ],
    "outputs": [
        {"name": "condition", "datatype": "BYTES", "shape": [-1]},  # the most probable class
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},  # in the order of CLASSES
    ],
}

MODEL_FORMAT = "aegis-turbine-mlp/1"
METADATA_KEY = "config"  # the one __metadata__ key: one canonical JSON string keeps the file reproducible


class TurbineNet(torch.nn.Module):
    """log1p features, standardised, then one ReLU hidden layer and a softmax over the classes."""

    def __init__(self, hidden: int, classes: int):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(BANDS))
        self.register_buffer("input_scale", torch.ones(BANDS))
        self.hidden = torch.nn.Linear(BANDS, hidden)
        self.output = torch.nn.Linear(hidden, classes)

    def forward(self, band_energy: torch.Tensor) -> torch.Tensor:
        x = (torch.log1p(band_energy) - self.input_mean) / self.input_scale
        return torch.softmax(self.output(torch.relu(self.hidden(x))), dim=1)


class Handler:
    def __init__(self, model_dir: str):
        if not torch.cuda.is_available():
            raise RuntimeError("this model is built for CUDA and no CUDA device is available: it never runs on the CPU")
        self.device = torch.device("cuda")
        # Exact float32 matmuls: the answers must match train.py's within the contract test's 1e-3.
        torch.backends.cuda.matmul.allow_tf32 = False
        with safe_open(str(Path(model_dir) / "weights.safetensors"), framework="pt") as f:
            self.config = json.loads(f.metadata()[METADATA_KEY])
            state = {name: f.get_tensor(name) for name in f.keys()}
        if self.config.get("format") != MODEL_FORMAT:
            raise ValueError(f"unsupported weights format {self.config.get('format')!r}")
        self.classes = list(self.config["classes"])
        self.net = TurbineNet(state["hidden.weight"].shape[0], len(self.classes))
        self.net.load_state_dict(state)
        self.net.to(self.device).eval()

    @torch.inference_mode()
    def predict(self, inputs: dict) -> dict:
        if "band_energy" not in inputs:
            raise InvalidInput("missing inputs: band_energy")
        x = torch.as_tensor(inputs["band_energy"], dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != BANDS:
            raise InvalidInput(f"input 'band_energy' must have shape [-1, {BANDS}], got {list(x.shape)}")
        if not bool(torch.isfinite(x).all()) or bool((x < 0).any()):
            raise InvalidInput("input 'band_energy' must be finite and >= 0")
        probabilities = self.net(x.to(self.device)).cpu()
        condition = [self.classes[i] for i in probabilities.argmax(dim=1).tolist()]
        return {"condition": condition, "probabilities": probabilities}
