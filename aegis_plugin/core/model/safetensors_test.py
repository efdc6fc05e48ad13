from __future__ import annotations

import json
import struct

import pytest

from aegis_plugin.core.model.safetensors import SafetensorsError, validate


def write(tmp_path, header: dict, data: bytes, header_len: int | None = None):
    raw = json.dumps(header).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return str(path)


def test_valid_file(tmp_path) -> None:
    header = {
        "__metadata__": {"format": "np"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
    }
    tensors = validate(write(tmp_path, header, bytes(24)))
    assert sorted(tensors) == ["a", "b"]


def test_header_longer_than_file(tmp_path) -> None:
    path = write(tmp_path, {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"x", header_len=10_000)
    with pytest.raises(SafetensorsError, match="header length 10000 exceeds the file size"):
        validate(path)


def test_too_short(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"abc")
    with pytest.raises(SafetensorsError, match="too short"):
        validate(str(path))


def test_not_json(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 3) + b"{x}")
    with pytest.raises(SafetensorsError, match="not UTF-8 JSON"):
        validate(str(path))


@pytest.mark.parametrize(
    "header,data,message",
    [
        ({"a": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), "8 expected"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "gap or overlap"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "data buffer has 8"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "non-negative"),
        ({}, b"", "no tensors"),
    ],
)
def test_invalid_tensors(tmp_path, header, data, message) -> None:
    with pytest.raises(SafetensorsError, match=message):
        validate(write(tmp_path, header, data))
