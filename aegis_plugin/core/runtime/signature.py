"""A model's declared input/output tensors, and the checks every inference request goes through."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

_NUMERIC = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
DATATYPES = _NUMERIC | {"BOOL", "BYTES"}


class SignatureError(ValueError):
    """A request that does not match the signature: the message names the tensor and the problem."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 marks a variable dimension

    @classmethod
    def from_dict(cls, raw: dict) -> "TensorSpec":
        spec = cls(str(raw["name"]), str(raw["datatype"]), tuple(int(d) for d in raw["shape"]))
        if spec.datatype not in DATATYPES:
            raise ValueError(f"tensor {spec.name!r}: unknown datatype {spec.datatype!r}")
        return spec

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def check_shape(self, shape: list) -> None:
        if len(shape) != len(self.shape) or any(
            want != -1 and want != got for want, got in zip(self.shape, shape)
        ):
            raise SignatureError(f"tensor {self.name!r}: shape {shape} does not match {list(self.shape)}")


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, raw: dict) -> "Signature":
        return cls(
            tuple(TensorSpec.from_dict(t) for t in raw["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in raw["outputs"]),
        )

    def to_metadata(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def parse_inputs(self, request: Any) -> dict[str, list]:
        """The request's tensors as nested lists shaped as the request says, after checking them."""
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            raise SignatureError("the request must be a JSON object with an `inputs` list")
        given = {}
        for tensor in request["inputs"]:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise SignatureError("each input must be an object with a `name`")
            given[tensor["name"]] = tensor
        declared = {spec.name: spec for spec in self.inputs}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise SignatureError(f"tensor {unknown[0]!r}: not an input of this model (inputs: {sorted(declared)})")
        result = {}
        for spec in self.inputs:
            tensor = given.get(spec.name)
            if tensor is None:
                raise SignatureError(f"tensor {spec.name!r}: missing from the request")
            result[spec.name] = _parse_tensor(spec, tensor)
        return result

    def format_outputs(self, outputs: dict) -> dict:
        """The handler's outputs as protocol tensors; a handler that breaks its own signature is a bug (500)."""
        tensors = []
        for spec in self.outputs:
            if spec.name not in outputs:
                raise RuntimeError(f"handler returned no output {spec.name!r}")
            value = outputs[spec.name]
            value = value.tolist() if hasattr(value, "tolist") else value
            shape = _shape_of(value)
            spec.check_shape(shape)
            tensors.append({"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": _flatten(value)})
        return {"outputs": tensors}


def _parse_tensor(spec: TensorSpec, tensor: dict) -> list:
    if tensor.get("datatype") != spec.datatype:
        raise SignatureError(f"tensor {spec.name!r}: datatype {tensor.get('datatype')!r}, expected {spec.datatype}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SignatureError(f"tensor {spec.name!r}: `shape` must be a list of non-negative integers")
    spec.check_shape(shape)
    data = _flatten(tensor.get("data"))
    if len(data) != prod(shape):
        raise SignatureError(f"tensor {spec.name!r}: {len(data)} elements do not fill shape {shape}")
    for item in data:
        if not _is_element(spec.datatype, item):
            raise SignatureError(f"tensor {spec.name!r}: element {item!r} is not of datatype {spec.datatype}")
    return _reshape(data, shape)


def _is_element(datatype: str, item: Any) -> bool:
    if datatype == "BYTES":
        return isinstance(item, str)
    if datatype == "BOOL":
        return isinstance(item, bool)
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return False
    return datatype.startswith("FP") or float(item).is_integer()


def _flatten(value: Any) -> list:
    if not isinstance(value, list):
        raise SignatureError("tensor `data` must be a list")
    flat: list = []
    for item in value:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _reshape(flat: list, shape: list) -> list:
    if len(shape) <= 1:
        return list(flat)
    step = prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _shape_of(value: Any) -> list:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape
