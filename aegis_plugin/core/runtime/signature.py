"""A model's declared input/output tensors, and the checks every inference request and response go through.

The handler's `SIGNATURE` is a dict in the shape of the Open Inference Protocol's model metadata:

    SIGNATURE = {
        "inputs": [{"name": "amount", "datatype": "FP32", "shape": [-1]}, ...],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}, ...],
    }

`-1` marks a variable dimension. A request that breaks the signature raises `SignatureError` (the client's
fault: HTTP 400); a handler whose outputs break it raises `OutputError` (the model's fault: HTTP 500). Every
message names the tensor and the problem. A handler rejects input the signature cannot describe (a value out of
its domain, inconsistent batch sizes) by raising `InvalidInput` (HTTP 400 with its message).

Standard library only, importable on Python 3.9: this module goes into every image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import binary

# Integer datatypes and their inclusive ranges.
INT_RANGES: Dict[str, Tuple[int, int]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
# Floating-point datatypes and their largest finite magnitude.
FLOAT_MAX: Dict[str, float] = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": 1.7976931348623157e308}
DATATYPES = frozenset(INT_RANGES) | frozenset(FLOAT_MAX) | {"BOOL", "BYTES"}


class SignatureError(ValueError):
    """A request that does not match the signature (HTTP 400): the message names the tensor and the problem."""


class InvalidInput(ValueError):
    """Raised by a handler's `predict` to reject its input: the client gets HTTP 400 with this message.

    Handlers import it as `from aegis_runtime import InvalidInput`. Any other exception, ValueError included, is
    taken for a bug in the model (HTTP 500, details only in the log): numpy and friends raise ValueError for those.
    """


class OutputError(RuntimeError):
    """The handler returned outputs that break its own signature (HTTP 500)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: Tuple[int, ...]  # -1 marks a variable dimension

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> "TensorSpec":
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be a dict with `name`, `datatype` and `shape`")
        name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: `name` must be a non-empty string")
        if datatype not in DATATYPES:
            raise ValueError(f"tensor {name!r}: unknown datatype {datatype!r} (one of {', '.join(sorted(DATATYPES))})")
        if not isinstance(shape, (list, tuple)) or not all(_is_int(d) and d >= -1 for d in shape):
            raise ValueError(f"tensor {name!r}: `shape` must be a list of integers, -1 for a variable dimension")
        return cls(name, datatype, tuple(shape))

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def shape_problem(self, shape: Sequence[int]) -> Optional[str]:
        """Why `shape` does not fit this tensor, or None."""
        if len(shape) != len(self.shape):
            return f"shape {list(shape)} has rank {len(shape)}, expected rank {len(self.shape)} ({list(self.shape)})"
        for axis, (want, got) in enumerate(zip(self.shape, shape)):
            if want != -1 and want != got:
                return f"shape {list(shape)} has {got} in dimension {axis}, expected {want} ({list(self.shape)})"
        return None


@dataclass(frozen=True)
class InferRequest:
    """A checked inference request: what the handler gets, and what the response must contain."""

    id: Optional[str]
    parameters: dict
    inputs: Dict[str, list]  # each tensor as nested lists shaped as the request says
    outputs: Optional[Tuple[str, ...]]  # the outputs asked for, in order; None for all


@dataclass(frozen=True)
class Signature:
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, raw: Any) -> "Signature":
        """Raises ValueError naming the problem when `raw` is not a valid signature."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"SIGNATURE must be a dict with `inputs` and `outputs`, not {type(raw).__name__}")
        sides = []
        for side in ("inputs", "outputs"):
            tensors = raw.get(side)
            if not isinstance(tensors, (list, tuple)) or not tensors:
                raise ValueError(f"SIGNATURE[{side!r}] must be a non-empty list of tensors")
            specs = tuple(TensorSpec.from_dict(t, f"SIGNATURE[{side!r}][{i}]") for i, t in enumerate(tensors))
            names = [s.name for s in specs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"SIGNATURE[{side!r}] declares {duplicates[0]!r} more than once")
            sides.append(specs)
        return cls(sides[0], sides[1])

    def to_metadata(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def parse_request(self, request: Any, binary_data: Optional[Mapping[str, bytes]] = None) -> InferRequest:
        """Check a decoded `$inference_request` against the signature; raise SignatureError on any problem.

        `binary_data` holds the bytes of the inputs sent as binary tensor data (see binary.py), by name.
        """
        if not isinstance(request, dict):
            raise SignatureError(f"the request body must be a JSON object, not {_json_type(request)}")
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise SignatureError(f"`id` must be a string, not {_json_type(request_id)}")
        parameters = _parameters(request, "the request")
        raw_inputs = request.get("inputs")
        if not isinstance(raw_inputs, list):
            raise SignatureError("the request must have an `inputs` array of tensors")
        given: Dict[str, dict] = {}
        for index, tensor in enumerate(raw_inputs):
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise SignatureError(f"inputs[{index}] must be an object with a string `name`")
            if tensor["name"] in given:
                raise SignatureError(f"tensor {_short(tensor['name'])}: given more than once")
            given[tensor["name"]] = tensor
        declared = {spec.name: spec for spec in self.inputs}
        for name in given:
            if name not in declared:
                raise SignatureError(
                    f"tensor {_short(name)}: not an input of this model (inputs: {', '.join(declared)})"
                )
        inputs = {}
        for spec in self.inputs:
            if spec.name not in given:
                raise SignatureError(f"tensor {spec.name!r}: missing from the request")
            inputs[spec.name] = _parse_input(spec, given[spec.name], (binary_data or {}).get(spec.name))
        return InferRequest(request_id, parameters, inputs, self._requested_outputs(request))

    def _requested_outputs(self, request: dict) -> Optional[Tuple[str, ...]]:
        if "outputs" not in request or request["outputs"] is None:
            return None
        raw = request["outputs"]
        if not isinstance(raw, list):
            raise SignatureError("`outputs` must be an array of objects with a `name`")
        declared = [spec.name for spec in self.outputs]
        names: List[str] = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise SignatureError(f"outputs[{index}] must be an object with a string `name`")
            name = item["name"]
            if name not in declared:
                raise SignatureError(
                    f"output {_short(name)}: not an output of this model (outputs: {', '.join(declared)})"
                )
            if name in names:
                raise SignatureError(f"output {name!r}: requested more than once")
            _parameters(item, f"output {name!r}")
            names.append(name)
        return tuple(names)

    def format_outputs(self, outputs: Any, requested: Optional[Sequence[str]] = None) -> List[dict]:
        """The handler's outputs as `$response_output` tensors (flattened data), checked against the signature.

        Values may be nested lists/tuples, anything with `tolist()` (numpy arrays, torch tensors), or scalars for
        rank-0 tensors. Raises OutputError when they break the signature: the handler is at fault, not the client.
        """
        if not isinstance(outputs, Mapping):
            raise OutputError(f"the handler returned {type(outputs).__name__}, expected a dict of output tensors")
        declared = {spec.name: spec for spec in self.outputs}
        for name in outputs:
            if name not in declared:
                raise OutputError(f"the handler returned {_short(name)}, which is not an output in its SIGNATURE")
        tensors = {}
        for spec in self.outputs:
            if spec.name not in outputs:
                raise OutputError(f"the handler returned no output {spec.name!r}")
            tensors[spec.name] = _format_output(spec, outputs[spec.name])
        return [tensors[name] for name in (requested if requested is not None else declared)]


def _parse_input(spec: TensorSpec, tensor: dict, chunk: Optional[bytes] = None) -> list:
    where = f"tensor {spec.name!r}"
    if tensor.get("datatype") != spec.datatype:
        raise SignatureError(f"{where}: datatype {tensor.get('datatype')!r} does not match the model's {spec.datatype}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise SignatureError(f"{where}: `shape` must be an array of non-negative integers, not {shape!r}")
    problem = spec.shape_problem(shape)
    if problem:
        raise SignatureError(f"{where}: {problem}")
    _parameters(tensor, where)
    if chunk is not None:
        try:
            flat = binary.decode(spec.datatype, chunk)
        except ValueError as e:
            raise SignatureError(f"{where}: {e}") from None
        if len(flat) != math.prod(shape):
            raise SignatureError(
                f"{where}: its {len(chunk)} bytes of binary data hold {len(flat)} elements, "
                f"shape {shape} has {math.prod(shape)}"
            )
    else:
        if "data" not in tensor:
            raise SignatureError(f"{where}: no `data`")
        data = tensor["data"]
        if not isinstance(data, list):
            raise SignatureError(f"{where}: `data` must be an array, not {_json_type(data)}")
        flat = _flatten_input(where, data, shape)
    for index, item in enumerate(flat):
        problem = element_problem(spec.datatype, item)
        if problem:
            raise SignatureError(f"{where}: element {index} ({_short(item)}) {problem}")
    if spec.datatype in FLOAT_MAX:
        flat = [float(item) for item in flat]  # JSON writes 1.0 as 1: the handler gets floats for FP tensors
    return _reshape(flat, shape)


def _flatten_input(where: str, data: list, shape: List[int]) -> list:
    """Tensor data in its flat or its natural nested form (OIP "Tensor Data") as a flat row-major list."""
    count = math.prod(shape)
    if not any(isinstance(item, list) for item in data):
        if len(data) != count:
            raise SignatureError(f"{where}: {len(data)} elements do not fill shape {shape} ({count} elements)")
        return data
    if len(shape) < 2:
        raise SignatureError(f"{where}: `data` is nested, but shape {shape} has rank {len(shape)}")
    flat: list = []

    def walk(value: list, axis: int) -> None:  # recursion depth is bounded by the signature's rank
        if len(value) != shape[axis]:
            raise SignatureError(
                f"{where}: nested `data` has {len(value)} elements in dimension {axis}, "
                f"shape {shape} says {shape[axis]}"
            )
        last = axis == len(shape) - 1
        for item in value:
            if isinstance(item, list) == last:
                raise SignatureError(f"{where}: nested `data` is not a regular array of shape {shape}")
            if last:
                flat.append(item)
            else:
                walk(item, axis + 1)

    walk(data, 0)
    return flat


def element_problem(datatype: str, item: Any) -> Optional[str]:
    """Why `item` (a value decoded from JSON) is not an element of `datatype`, or None."""
    if datatype == "BYTES":
        return None if type(item) is str else f"is {_json_type(item)}, not a string (BYTES)"
    if datatype == "BOOL":
        return None if type(item) is bool else f"is {_json_type(item)}, not a boolean (BOOL)"
    if datatype in INT_RANGES:
        if type(item) is not int:
            return f"is {_json_type(item)}, not an integer ({datatype})"
        low, high = INT_RANGES[datatype]
        return None if low <= item <= high else f"is out of range for {datatype} [{low}, {high}]"
    if type(item) not in (int, float):
        return f"is {_json_type(item)}, not a number ({datatype})"
    if type(item) is float and not math.isfinite(item):
        return f"is not a finite number ({datatype})"
    limit = FLOAT_MAX[datatype]
    return None if -limit <= item <= limit else f"is out of range for {datatype} (magnitude at most {limit:g})"


def _format_output(spec: TensorSpec, value: Any) -> dict:
    where = f"output {spec.name!r}"
    flat: list = []
    shape: List[int] = []

    def walk(node: Any, axis: int) -> None:  # recursion depth is bounded by the signature's rank
        if hasattr(node, "tolist") and not isinstance(node, (str, bytes)):
            node = node.tolist()  # numpy/torch arrays and scalars
        if isinstance(node, (list, tuple)):
            if axis == len(spec.shape):
                raise OutputError(f"{where}: nested deeper than its SIGNATURE shape {list(spec.shape)}")
            if axis == len(shape):
                shape.append(len(node))
            elif shape[axis] != len(node):
                raise OutputError(f"{where}: ragged nested lists (dimension {axis} has {shape[axis]} and {len(node)})")
            for item in node:
                walk(item, axis + 1)
            return
        if axis != len(spec.shape):
            raise OutputError(
                f"{where}: has rank {axis}, its SIGNATURE shape {list(spec.shape)} has rank {len(spec.shape)}"
            )
        if spec.datatype == "BYTES" and isinstance(node, bytes):
            try:
                node = node.decode("utf-8")
            except UnicodeDecodeError:
                raise OutputError(f"{where}: element {len(flat)} is bytes that are not UTF-8 text") from None
        item = _plain(node)
        problem = element_problem(spec.datatype, item)
        if problem:
            raise OutputError(f"{where}: element {len(flat)} ({_short(node)}) {problem}")
        flat.append(float(item) if spec.datatype in FLOAT_MAX else item)

    walk(value, 0)
    if len(shape) < len(spec.shape):  # an empty list ends the walk early: its inner dimensions are the declared ones
        shape += [max(d, 0) for d in spec.shape[len(shape):]]
    problem = spec.shape_problem(shape)
    if problem:
        raise OutputError(f"{where}: {problem}")
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": flat}


def _plain(item: Any) -> Any:
    """A numpy-style scalar (np.float32, np.bool_, ...) as the Python value JSON can carry."""
    if type(item) in (bool, int, float, str):
        return item
    if isinstance(item, bool):
        return bool(item)
    if isinstance(item, float):
        return float(item)
    if isinstance(item, int):
        return int(item)
    return item


def _parameters(obj: dict, where: str) -> dict:
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise SignatureError(f"{where}: `parameters` must be an object, not {_json_type(parameters)}")
    return parameters


def _reshape(flat: list, shape: List[int]) -> list:
    if len(shape) <= 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _is_int(value: Any) -> bool:
    return type(value) is int


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 40 else text[:37] + "..."
