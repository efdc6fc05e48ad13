from __future__ import annotations

import copy
import math
from typing import Any, Callable

import pytest

from aegis_plugin.core.runtime.signature import (
    DATATYPES,
    OutputError,
    Signature,
    SignatureError,
    element_problem,
)

SIGNATURE = Signature.from_dict(
    {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "n", "datatype": "INT32", "shape": [-1]},
            {"name": "u", "datatype": "UINT8", "shape": [-1]},
            {"name": "flag", "datatype": "BOOL", "shape": [-1]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
            {"name": "scalar", "datatype": "INT64", "shape": []},
        ],
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "grid", "datatype": "INT8", "shape": [-1, 2]},
        ],
    }
)


def valid() -> dict:
    return {
        "id": "r1",
        "parameters": {"temperature": 0.5},
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6.5]},
            {"name": "n", "datatype": "INT32", "shape": [2], "data": [-(2**31), 2**31 - 1]},
            {"name": "u", "datatype": "UINT8", "shape": [2], "data": [0, 255]},
            {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "ü"]},
            {"name": "scalar", "datatype": "INT64", "shape": [], "data": [7], "parameters": {"p": 1}},
        ],
    }


def tensor(request: dict, name: str) -> dict:
    return next(t for t in request["inputs"] if t["name"] == name)


def test_valid_request_parses_into_shaped_lists() -> None:
    parsed = SIGNATURE.parse_request(valid())
    assert parsed.id == "r1"
    assert parsed.parameters == {"temperature": 0.5}
    assert parsed.outputs is None
    assert parsed.inputs == {
        "x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]],
        "n": [-(2**31), 2**31 - 1],
        "u": [0, 255],
        "flag": [True, False],
        "text": ["a", "ü"],
        "scalar": [7],
    }
    # FP tensors reach the handler as floats even when JSON wrote them as integers.
    assert all(type(v) is float for row in parsed.inputs["x"] for v in row)


def test_nested_data_is_accepted_when_it_matches_the_shape() -> None:
    request = valid()
    tensor(request, "x")["data"] = [[1, 2, 3], [4, 5, 6.5]]
    assert SIGNATURE.parse_request(request).inputs["x"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]


def test_empty_batch_is_valid() -> None:
    request = valid()
    tensor(request, "x").update(shape=[0, 3], data=[])
    assert SIGNATURE.parse_request(request).inputs["x"] == []


def test_request_without_id_or_parameters() -> None:
    request = valid()
    del request["id"], request["parameters"]
    parsed = SIGNATURE.parse_request(request)
    assert parsed.id is None and parsed.parameters == {}


def mutate(fn: Callable[[dict], Any]) -> dict:
    request = copy.deepcopy(valid())
    fn(request)
    return request


@pytest.mark.parametrize(
    "request_, expected",
    [
        (
            mutate(lambda r: tensor(r, "x").update(datatype="FP64")),
            "tensor 'x': datatype 'FP64' does not match the model's FP32",
        ),
        (mutate(lambda r: tensor(r, "x").pop("datatype")), "tensor 'x': datatype None"),
        (mutate(lambda r: tensor(r, "x").update(shape=[6])), "tensor 'x': shape [6] has rank 1, expected rank 2"),
        (
            mutate(lambda r: tensor(r, "x").update(shape=[3, 2])),
            "tensor 'x': shape [3, 2] has 2 in dimension 1, expected 3",
        ),
        (
            mutate(lambda r: tensor(r, "x").update(shape=[2, -3])),
            "tensor 'x': `shape` must be an array of non-negative",
        ),
        (mutate(lambda r: tensor(r, "x").update(shape=[2, True])), "tensor 'x': `shape` must be an array"),
        (mutate(lambda r: tensor(r, "x").update(shape="2,3")), "tensor 'x': `shape` must be an array"),
        (
            mutate(lambda r: tensor(r, "x").update(data=[1, 2, 3, 4, 5])),
            "tensor 'x': 5 elements do not fill shape [2, 3] (6 elements)",
        ),
        (
            mutate(lambda r: tensor(r, "x").update(data=[[1, 2, 3], [4, 5]])),
            "tensor 'x': nested `data` has 2 elements in dimension 1",
        ),
        (mutate(lambda r: tensor(r, "x").update(data=[[1, 2, 3], 4, 5, 6])), "tensor 'x': nested `data`"),
        (mutate(lambda r: tensor(r, "x").update(data=[[[1, 2, 3]], [[4, 5, 6]]])), "tensor 'x': nested `data`"),
        (
            mutate(lambda r: tensor(r, "n").update(data=[[1], [2]])),
            "tensor 'n': `data` is nested, but shape [2] has rank 1",
        ),
        (mutate(lambda r: tensor(r, "x").update(data="1,2,3")), "tensor 'x': `data` must be an array, not a string"),
        (mutate(lambda r: tensor(r, "x").pop("data")), "tensor 'x': no `data`"),
        (
            mutate(lambda r: tensor(r, "x")["data"].__setitem__(1, "2")),
            "tensor 'x': element 1 ('2') is a string, not a number (FP32)",
        ),
        (
            mutate(lambda r: tensor(r, "x")["data"].__setitem__(0, True)),
            "tensor 'x': element 0 (True) is a boolean, not a number",
        ),
        (
            mutate(lambda r: tensor(r, "x")["data"].__setitem__(0, None)),
            "tensor 'x': element 0 (None) is null, not a number",
        ),
        (
            mutate(lambda r: tensor(r, "x")["data"].__setitem__(0, 1e39)),
            "tensor 'x': element 0 (1e+39) is out of range for FP32",
        ),
        (
            mutate(lambda r: tensor(r, "x")["data"].__setitem__(0, math.inf)),
            "tensor 'x': element 0 (inf) is not a finite number",
        ),
        (
            mutate(lambda r: tensor(r, "n")["data"].__setitem__(0, 1.5)),
            "tensor 'n': element 0 (1.5) is a float, not an integer (INT32)",
        ),
        (
            mutate(lambda r: tensor(r, "n")["data"].__setitem__(0, 1.0)),
            "tensor 'n': element 0 (1.0) is a float, not an integer (INT32)",
        ),
        (
            mutate(lambda r: tensor(r, "n")["data"].__setitem__(0, False)),
            "tensor 'n': element 0 (False) is a boolean, not an integer",
        ),
        (
            mutate(lambda r: tensor(r, "n")["data"].__setitem__(1, 2**31)),
            "tensor 'n': element 1 (2147483648) is out of range for INT32",
        ),
        (
            mutate(lambda r: tensor(r, "u")["data"].__setitem__(1, 256)),
            "tensor 'u': element 1 (256) is out of range for UINT8 [0, 255]",
        ),
        (
            mutate(lambda r: tensor(r, "u")["data"].__setitem__(0, -1)),
            "tensor 'u': element 0 (-1) is out of range for UINT8",
        ),
        (
            mutate(lambda r: tensor(r, "flag")["data"].__setitem__(0, 1)),
            "tensor 'flag': element 0 (1) is an integer, not a boolean (BOOL)",
        ),
        (
            mutate(lambda r: tensor(r, "text")["data"].__setitem__(0, 5)),
            "tensor 'text': element 0 (5) is an integer, not a string (BYTES)",
        ),
        (
            mutate(lambda r: tensor(r, "scalar").update(shape=[1])),
            "tensor 'scalar': shape [1] has rank 1, expected rank 0",
        ),
        (
            mutate(lambda r: tensor(r, "scalar").update(parameters=[1])),
            "tensor 'scalar': `parameters` must be an object",
        ),
        (mutate(lambda r: r["inputs"].pop(1)), "tensor 'n': missing from the request"),
        (mutate(lambda r: r["inputs"].append({"name": "zzz", "datatype": "FP32", "shape": [1], "data": [1]})),
         "tensor 'zzz': not an input of this model (inputs: x, n, u, flag, text, scalar)"),
        (mutate(lambda r: r["inputs"].append(copy.deepcopy(r["inputs"][0]))), "tensor 'x': given more than once"),
        (mutate(lambda r: r["inputs"].append("x")), "inputs[6] must be an object with a string `name`"),
        (mutate(lambda r: r.pop("inputs")), "the request must have an `inputs` array"),
        (mutate(lambda r: r.update(inputs={"x": 1})), "the request must have an `inputs` array"),
        (mutate(lambda r: r.update(id=42)), "`id` must be a string, not an integer"),
        (mutate(lambda r: r.update(parameters=["a"])), "the request: `parameters` must be an object, not an array"),
        (
            mutate(lambda r: r.update(outputs=[{"name": "nope"}])),
            "output 'nope': not an output of this model (outputs: score, label, grid)",
        ),
        (
            mutate(lambda r: r.update(outputs=[{"name": "score"}, {"name": "score"}])),
            "output 'score': requested more than once",
        ),
        (mutate(lambda r: r.update(outputs=["score"])), "outputs[0] must be an object with a string `name`"),
        (mutate(lambda r: r.update(outputs={"name": "score"})), "`outputs` must be an array"),
        (
            mutate(lambda r: r.update(outputs=[{"name": "score", "parameters": 3}])),
            "output 'score': `parameters` must be an object",
        ),
        ([], "the request body must be a JSON object, not an array"),
        (None, "the request body must be a JSON object, not null"),
    ],
)
def test_request_errors_name_the_tensor_and_the_problem(request_: Any, expected: str) -> None:
    with pytest.raises(SignatureError) as error:
        SIGNATURE.parse_request(request_)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "datatype, good, bad",
    [
        ("INT8", [-128, 127], [-129, 128]),
        ("INT16", [-(2**15), 2**15 - 1], [-(2**15) - 1, 2**15]),
        ("INT32", [-(2**31), 2**31 - 1], [-(2**31) - 1, 2**31]),
        ("INT64", [-(2**63), 2**63 - 1], [-(2**63) - 1, 2**63]),
        ("UINT8", [0, 255], [-1, 256]),
        ("UINT16", [0, 2**16 - 1], [-1, 2**16]),
        ("UINT32", [0, 2**32 - 1], [-1, 2**32]),
        ("UINT64", [0, 2**64 - 1], [-1, 2**64]),
        ("FP16", [-65504.0, 65504, 0.5], [65520.0, -1e5]),
        ("FP32", [3.4e38, -1, 1e-50], [3.5e38, 10**39]),
        ("FP64", [1.7e308, 10**300], [10**309, math.nan, -math.inf]),
        ("BOOL", [True, False], [0, 1, "true", None]),
        ("BYTES", ["", "text"], [b"x", 1, None, ["a"]]),
    ],
)
def test_element_ranges(datatype: str, good: list, bad: list) -> None:
    for item in good:
        assert element_problem(datatype, item) is None, (datatype, item)
    for item in bad:
        assert element_problem(datatype, item), (datatype, item)
    if datatype not in ("BOOL", "BYTES"):
        assert element_problem(datatype, "1") and element_problem(datatype, None) and element_problem(datatype, True)


def test_long_unknown_names_are_shortened() -> None:
    request = valid()
    request["inputs"].append({"name": "z" * 10_000, "datatype": "FP32", "shape": [1], "data": [1]})
    with pytest.raises(SignatureError) as error:
        SIGNATURE.parse_request(request)
    assert len(str(error.value)) < 200 and "zzz..." in str(error.value)


def test_every_datatype_is_covered() -> None:
    assert DATATYPES == {"BOOL", "BYTES", "FP16", "FP32", "FP64"} | {
        f"{sign}INT{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)
    }


class FakeArray:
    """Stands in for a numpy array: the server only relies on tolist()."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def tolist(self) -> Any:
        return self.value


class FakeScalar:
    def __init__(self, value: Any) -> None:
        self.value = value

    def tolist(self) -> Any:
        return self.value


def test_outputs_are_flattened_and_typed() -> None:
    tensors = SIGNATURE.format_outputs(
        {
            "score": FakeArray([1, 0.5]),
            "label": ("a", b"b"),
            "grid": [[FakeScalar(1), -128], [3, 127]],
        }
    )
    assert tensors == [
        {"name": "score", "datatype": "FP32", "shape": [2], "data": [1.0, 0.5]},
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
        {"name": "grid", "datatype": "INT8", "shape": [2, 2], "data": [1, -128, 3, 127]},
    ]
    assert type(tensors[0]["data"][0]) is float


def test_requested_outputs_are_returned_in_the_requested_order() -> None:
    outputs = {"score": [1.0], "label": ["a"], "grid": [[1, 2]]}
    assert [t["name"] for t in SIGNATURE.format_outputs(outputs, ("grid", "score"))] == ["grid", "score"]
    assert SIGNATURE.format_outputs(outputs, ()) == []


def test_empty_batch_outputs_keep_the_declared_inner_dimensions() -> None:
    tensors = SIGNATURE.format_outputs({"score": [], "label": [], "grid": []})
    assert [t["shape"] for t in tensors] == [[0], [0], [0, 2]]


@pytest.mark.parametrize(
    "outputs, expected",
    [
        ([1.0], "the handler returned list, expected a dict"),
        ({"score": [1.0], "label": ["a"]}, "the handler returned no output 'grid'"),
        ({"score": [1.0], "label": ["a"], "grid": [[1, 2]], "extra": [1]}, "'extra', which is not an output"),
        (
            {"score": [[1.0]], "label": ["a"], "grid": [[1, 2]]},
            "output 'score': nested deeper than its SIGNATURE shape [-1]",
        ),
        (
            {"score": 1.0, "label": ["a"], "grid": [[1, 2]]},
            "output 'score': has rank 0, its SIGNATURE shape [-1] has rank 1",
        ),
        ({"score": [1.0], "label": ["a"], "grid": [[1, 2], [3]]}, "output 'grid': ragged nested lists"),
        (
            {"score": [1.0], "label": ["a"], "grid": [[1, 2, 3]]},
            "output 'grid': shape [1, 3] has 3 in dimension 1, expected 2",
        ),
        (
            {"score": [math.nan], "label": ["a"], "grid": [[1, 2]]},
            "output 'score': element 0 (nan) is not a finite number",
        ),
        ({"score": ["1"], "label": ["a"], "grid": [[1, 2]]}, "output 'score': element 0 ('1') is a string"),
        ({"score": [1.0], "label": [1], "grid": [[1, 2]]}, "output 'label': element 0 (1) is an integer, not a string"),
        (
            {"score": [1.0], "label": [b"\xff"], "grid": [[1, 2]]},
            "output 'label': element 0 is bytes that are not UTF-8",
        ),
        (
            {"score": [1.0], "label": ["a"], "grid": [[1, 200]]},
            "output 'grid': element 1 (200) is out of range for INT8",
        ),
        (
            {"score": [1.0], "label": ["a"], "grid": [[1, 2.5]]},
            "output 'grid': element 1 (2.5) is a float, not an integer",
        ),
    ],
)
def test_outputs_that_break_the_signature(outputs: Any, expected: str) -> None:
    with pytest.raises(OutputError) as error:
        SIGNATURE.format_outputs(outputs)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ([], "SIGNATURE must be a dict"),
        ({"inputs": []}, "SIGNATURE['inputs'] must be a non-empty list"),
        (
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]},
            "SIGNATURE['outputs'] must be a non-empty list",
        ),
        ({"inputs": ["a"], "outputs": []}, "SIGNATURE['inputs'][0] must be a dict"),
        ({"inputs": [{"datatype": "FP32", "shape": [1]}], "outputs": []}, "SIGNATURE['inputs'][0]: `name` must be"),
        (
            {"inputs": [{"name": "a", "datatype": "FLOAT", "shape": [1]}], "outputs": []},
            "tensor 'a': unknown datatype 'FLOAT'",
        ),
        (
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [-2]}], "outputs": []},
            "tensor 'a': `shape` must be a list",
        ),
        (
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": None}], "outputs": []},
            "tensor 'a': `shape` must be a list",
        ),
        (
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}] * 2, "outputs": []},
            "SIGNATURE['inputs'] declares 'a' more than once",
        ),
    ],
)
def test_invalid_signatures(raw: Any, expected: str) -> None:
    with pytest.raises(ValueError) as error:
        Signature.from_dict(raw)
    assert expected in str(error.value)


def test_metadata_is_the_signature() -> None:
    assert SIGNATURE.to_metadata()["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    assert SIGNATURE.to_metadata()["outputs"][2] == {"name": "grid", "datatype": "INT8", "shape": [-1, 2]}
