from __future__ import annotations

import struct

import pytest

from aegis_plugin.core.runtime import binary


@pytest.mark.parametrize(
    "datatype, values, raw",
    [
        ("BOOL", [True, False], b"\x01\x00"),
        ("INT8", [-128, 127], b"\x80\x7f"),
        ("UINT16", [1, 65535], b"\x01\x00\xff\xff"),
        ("INT32", [-2], b"\xfe\xff\xff\xff"),
        ("INT64", [2**63 - 1], b"\xff" * 7 + b"\x7f"),
        ("UINT64", [2**64 - 1], b"\xff" * 8),
        ("FP16", [1.0, -2.5, 65504.0], struct.pack("<3e", 1.0, -2.5, 65504.0)),
        ("FP32", [0.5], b"\x00\x00\x00\x3f"),
        ("FP64", [1.5], struct.pack("<d", 1.5)),
        ("BYTES", ["ab", "", "café"], b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x05\x00\x00\x00caf\xc3\xa9"),
        ("FP32", [], b""),
        ("BYTES", [], b""),
    ],
)
def test_round_trip_little_endian(datatype: str, values: list, raw: bytes) -> None:
    assert binary.encode(datatype, values) == raw
    assert binary.decode(datatype, raw) == values


def test_split_body() -> None:
    assert binary.split_body(b'{"a": 1}xyz', None) == (b'{"a": 1}xyz', b"")
    assert binary.split_body(b'{"a": 1}xyz', "8") == (b'{"a": 1}', b"xyz")
    for bad in ("12", "", "-1", "8.0", "٨"):  # past the end, empty, negative, not an integer, not ASCII digits
        with pytest.raises(binary.BinaryDataError, match="Inference-Header-Content-Length"):
            binary.split_body(b'{"a": 1}xyz', bad)


def test_input_chunks_follow_the_order_of_inputs() -> None:
    request = {"inputs": [
        {"name": "b", "parameters": {"binary_data_size": 2}},
        {"name": "j", "data": [1]},
        {"name": "a", "parameters": {"binary_data_size": 3}},
        {"name": "e", "parameters": {"binary_data_size": 0}},
    ]}
    assert binary.input_chunks(request, b"BBAAA") == {"b": b"BB", "a": b"AAA", "e": b""}
    assert binary.input_chunks({"inputs": "not a list"}, b"") == {}  # left to the signature check


def test_binary_outputs() -> None:
    names = ["p", "q", "r"]
    assert binary.binary_outputs({}, names) == set()
    assert binary.binary_outputs({"parameters": {"binary_data_output": True}}, names) == {"p", "q", "r"}
    request = {"parameters": {"binary_data_output": True},
               "outputs": [{"name": "p", "parameters": {"binary_data": False}}, {"name": "q"}]}
    assert binary.binary_outputs(request, ["p", "q"]) == {"q"}
    request = {"outputs": [{"name": "p", "parameters": {"binary_data": True}}, {"name": "q"}]}
    assert binary.binary_outputs(request, ["p", "q"]) == {"p"}
