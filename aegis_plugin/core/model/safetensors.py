"""Validation of safetensors files without loading them: an image must never ship weights that fail to load.

Format (safetensors spec): an 8-byte little-endian header length N, N bytes of JSON header, then the data
buffer. Each tensor names a dtype, a shape and `data_offsets` [begin, end) into the buffer; the tensors must
tile the buffer exactly (no gaps, no overlaps) and each must be as long as its shape and dtype say.
"""
from __future__ import annotations

import json
import os
import struct
from math import prod

from aegis_plugin.core.errors import AegisError

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


class SafetensorsError(AegisError, ValueError):
    pass


def validate(path: str) -> dict[str, dict]:
    """Returns the header's tensors (name -> {dtype, shape, data_offsets}) or raises SafetensorsError."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsError(f"file of {size} bytes is too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise SafetensorsError(f"header length {header_len} exceeds the file size ({size} bytes)")
        if header_len > MAX_HEADER_BYTES:
            raise SafetensorsError(f"header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError("`__metadata__` must map strings to strings")
    buffer_len = size - 8 - header_len
    spans = []
    for name, info in header.items():
        spans.append((*_check_tensor(name, info), name))
    if not spans:
        raise SafetensorsError("the file holds no tensors")
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise SafetensorsError(f"tensor {name!r} starts at {begin}, expected {position} (gap or overlap)")
        position = end
    if position != buffer_len:
        raise SafetensorsError(f"tensors cover {position} bytes but the data buffer has {buffer_len}")
    return header


def _check_tensor(name: str, info: object) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise SafetensorsError(f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise SafetensorsError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SafetensorsError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SafetensorsError(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
    expected = prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise SafetensorsError(
            f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype} ({expected} expected)"
        )
    return offsets[0], offsets[1]
