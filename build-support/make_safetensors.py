"""Writes a valid safetensors file of about SIZE bytes of pseudo-random float32 weights, for benchmarks and
end-to-end tests of large models: `make_safetensors.py OUT SIZE [--seed N] [--tensors K]`.

The data is streamed (memory stays a few MB) and depends only on the seed, so two runs write the same file.
"""
from __future__ import annotations

import argparse
import json
import random
import struct

_CHUNK = 1 << 20


def write(out: str, size: int, seed: int = 0, tensors: int = 4) -> None:
    per_tensor = max(4, (size // tensors) // 4 * 4)
    header = {"__metadata__": {"format": "pt"}}
    for i in range(tensors):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32", "shape": [per_tensor // 4], "data_offsets": [i * per_tensor, (i + 1) * per_tensor],
        }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data buffer starts 8-byte aligned
    remaining = per_tensor * tensors
    rng = random.Random(seed)  # incompressible, like real weights, and the same bytes for the same seed
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        while remaining:
            n = min(remaining, _CHUNK)
            f.write(rng.randbytes(n))
            remaining -= n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("size", type=int, help="bytes of tensor data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensors", type=int, default=4)
    args = parser.parse_args()
    write(args.out, args.size, args.seed, args.tensors)


if __name__ == "__main__":
    main()
