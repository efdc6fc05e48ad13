"""The Open Inference Protocol's binary tensor data extension: tensor data as raw bytes after the JSON.

A request with the header `Inference-Header-Content-Length: N` carries N bytes of JSON, then the data of every
input whose `parameters` give `binary_data_size`, back to back in the order of `inputs`. An output comes back the
same way when its entry in `outputs` says `"parameters": {"binary_data": true}`, or when the request's
`parameters` say `"binary_data_output": true` and the output's own `binary_data` does not say false; the response
then has the `Inference-Header-Content-Length` header and each such output a `binary_data_size` parameter instead
of `data`. This is what `tritonclient`'s `set_data_from_numpy()` and `InferRequestedOutput()` send by default.

Elements are little-endian, row-major, in the datatype's native size; BOOL is one byte (0 or 1); a BYTES element is
a 4-byte little-endian length followed by that many bytes, which must be UTF-8 text here (handlers get `str`, as
from JSON).

Standard library only, importable on Python 3.9: this module goes into every image.
"""
from __future__ import annotations

import re
import struct
from typing import Any, Dict, Iterable, Optional, Sequence, Set, Tuple

HEADER = "Inference-Header-Content-Length"
# The struct code of each fixed-size datatype.
_CODES = {
    "BOOL": "B", "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q", "UINT8": "B", "UINT16": "H",
    "UINT32": "I", "UINT64": "Q", "FP16": "e", "FP32": "f", "FP64": "d",
}
_LENGTH = struct.Struct("<I")
_DIGITS = re.compile(r"^[0-9]{1,19}$")


class BinaryDataError(ValueError):
    """A request whose binary tensor data does not add up (HTTP 400); the message says where."""


def split_body(body: bytes, header: Optional[str]) -> Tuple[bytes, bytes]:
    """The JSON part and the binary part of a request body, as `Inference-Header-Content-Length` divides it."""
    if header is None:
        return body, b""
    value = header.strip()
    if not _DIGITS.match(value) or int(value) > len(body):
        raise BinaryDataError(f"{HEADER} {_short(header)} is not a byte count within the {len(body)}-byte body")
    return body[: int(value)], body[int(value):]


def input_chunks(request: Any, binary: bytes, has_header: bool = True) -> Dict[str, bytes]:
    """Each binary input's bytes by tensor name, cut from `binary` in the order of `inputs`.

    A request too malformed to say which inputs are binary is left to the signature check to report.
    """
    inputs = request.get("inputs") if isinstance(request, dict) else None
    chunks: Dict[str, bytes] = {}
    offset = 0
    for tensor in inputs if isinstance(inputs, list) else []:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue
        name = tensor.get("name")
        where = f"tensor {_short(name)}"
        size = parameters["binary_data_size"]
        if type(size) is not int or size < 0:
            raise BinaryDataError(f"{where}: `binary_data_size` must be a non-negative integer, not {_short(size)}")
        if "data" in tensor:
            raise BinaryDataError(f"{where}: has both `data` and `binary_data_size`; send one of them")
        if size > len(binary) - offset:
            if not has_header:
                raise BinaryDataError(f"{where}: has `binary_data_size` but the request has no {HEADER} header")
            raise BinaryDataError(
                f"{where}: binary_data_size {size} runs past the end of the body ({len(binary) - offset} bytes left)"
            )
        if isinstance(name, str):
            chunks[name] = binary[offset:offset + size]
        offset += size
    if offset != len(binary):
        raise BinaryDataError(
            f"{len(binary) - offset} bytes of binary data follow the JSON that no input's binary_data_size claims"
        )
    return chunks


def decode(datatype: str, chunk: bytes) -> list:
    """One tensor's binary data as flat Python values (str for BYTES); ValueError saying what is wrong."""
    if datatype == "BYTES":
        return _decode_strings(chunk)
    code = _CODES[datatype]
    size = struct.calcsize(code)
    if len(chunk) % size:
        raise ValueError(f"binary_data_size {len(chunk)} is not a multiple of the {size}-byte {datatype} element")
    values = list(struct.unpack(f"<{len(chunk) // size}{code}", chunk))
    if datatype == "BOOL":
        for index, value in enumerate(values):
            if value > 1:
                raise ValueError(f"element {index} is the byte {value}, not 0 or 1 (BOOL)")
        return [value == 1 for value in values]
    return values


def _decode_strings(chunk: bytes) -> list:
    values = []
    offset = 0
    while offset < len(chunk):
        if len(chunk) - offset < _LENGTH.size:
            raise ValueError(f"element {len(values)}: the binary data ends inside its 4-byte length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += _LENGTH.size
        if length > len(chunk) - offset:
            raise ValueError(
                f"element {len(values)}: its length says {length} bytes, the binary data has {len(chunk) - offset}"
            )
        try:
            values.append(chunk[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"element {len(values)} is not UTF-8 text (BYTES)") from None
        offset += length
    return values


def encode(datatype: str, flat: Sequence[Any]) -> bytes:
    """Checked flat output values (see signature.format_outputs) as the tensor's binary data."""
    if datatype == "BYTES":
        parts = []
        for item in flat:
            raw = item.encode("utf-8")
            parts += [_LENGTH.pack(len(raw)), raw]
        return b"".join(parts)
    return struct.pack(f"<{len(flat)}{_CODES[datatype]}", *flat)


def binary_outputs(request: dict, names: Iterable[str]) -> Set[str]:
    """Which of the response's outputs the (already checked) request asks to get as binary data."""
    parameters = request.get("parameters") or {}
    default = parameters.get("binary_data_output", False)
    if type(default) is not bool:
        raise BinaryDataError(f"`binary_data_output` must be true or false, not {_short(default)}")
    chosen: Dict[str, bool] = {}
    for item in request.get("outputs") or []:
        flag = (item.get("parameters") or {}).get("binary_data")
        if flag is not None and type(flag) is not bool:
            raise BinaryDataError(f"output {item['name']!r}: `binary_data` must be true or false, not {_short(flag)}")
        if flag is not None:
            chosen[item["name"]] = flag
    return {name for name in names if chosen.get(name, default)}


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 40 else text[:37] + "..."
