from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from aegis_plugin.core.contract.checks import ContractRun, ContractSetupError, _compare, load_examples, read_manifest


def output(datatype: str, data: list, shape: list | None = None) -> dict:
    return {"name": "t", "datatype": datatype, "shape": shape if shape is not None else [len(data)], "data": data}


def test_floats_compare_with_tolerance() -> None:
    assert _compare("p", "FP32", output("FP32", [0.0044, 0.9961]), [0.0044, 0.9961], [0.0044, 0.996]) == []
    assert _compare("p", "FP32", output("FP32", [0.5]), [0.5], [0.502]) == [
        "p[0]: got 0.5, expected 0.502 (tolerance 0.001)"]
    assert _compare("p", "FP32", output("FP32", [1000.9]), [1000.9], [1000.0]) == []  # relative 1e-3


def test_bool_int_bytes_compare_exactly() -> None:
    assert _compare("b", "BOOL", output("BOOL", [True, False]), None, [True, False]) == []
    assert _compare("b", "BOOL", output("BOOL", [1, 0]), None, [True, False]) == [
        "b[0]: got 1, expected True", "b[1]: got 0, expected False"]
    assert _compare("i", "INT32", output("INT32", [3]), None, [3]) == []
    assert _compare("i", "INT32", output("INT32", [True]), None, [1]) == ["i[0]: got True, expected 1"]
    assert _compare("s", "BYTES", output("BYTES", ["café"]), None, ["café"]) == []
    assert _compare("s", "BYTES", output("BYTES", ["cafe"]), None, ["café"]) == ["s[0]: got 'cafe', expected 'café'"]


def test_shape_and_datatype_mismatches() -> None:
    assert _compare("t", "FP32", output("FP32", [1.0, 2.0]), None, [1.0]) == ["t: shape [2], expected [1]"]
    assert _compare("t", "FP32", output("FP64", [1.0]), None, [1.0]) == ["t: datatype FP64, the metadata declares FP32"]


def test_load_examples(tmp_path: Path) -> None:
    path = tmp_path / "examples.json"
    path.write_text(json.dumps([{"inputs": {"x": [1]}, "outputs": {"y": [2]}}]))
    assert load_examples(path) == [{"inputs": {"x": [1]}, "outputs": {"y": [2]}}]
    for bad in ([], [{"inputs": {"x": 1}, "outputs": {"y": [2]}}], [{"inputs": {"x": [1]}}], {"inputs": {}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ContractSetupError):
            load_examples(path)
    with pytest.raises(ContractSetupError, match="cannot read examples"):
        load_examples(tmp_path / "missing.json")


def test_read_manifest(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app/manifest.yaml").write_text('# comment\nmodel_id: "fraud-detector"\nversion: 1.0.0\n')
    assert read_manifest(tmp_path) == {"model_id": "fraud-detector", "version": "1.0.0"}
    (tmp_path / "app/manifest.yaml").write_text("version: 1\n")
    with pytest.raises(ContractSetupError, match="no model_id"):
        read_manifest(tmp_path)


def metadata_check(metadata: dict, examples: list) -> tuple[bool, str]:
    run = ContractRun(SimpleNamespace(base_url="127.0.0.1:1"), examples, "m", "1.0.0")  # type: ignore[arg-type]
    run._metadata = metadata
    result = run.check_metadata()
    return result.passed, result.detail


def test_metadata_matches_what_the_examples_imply() -> None:
    examples = [{"inputs": {"x": [1.5], "n": [2], "flag": [True], "text": ["a"]}, "outputs": {"p": [0.5]}}]
    metadata = {"name": "m", "versions": ["1.0.0"],
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]},
                           {"name": "n", "datatype": "INT32", "shape": [-1]},
                           {"name": "flag", "datatype": "BOOL", "shape": [-1]},
                           {"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "p", "datatype": "FP32", "shape": [-1]}]}
    assert metadata_check(metadata, examples)[0]

    wrong = json.loads(json.dumps(metadata))
    wrong["inputs"][0]["datatype"] = "INT32"  # 1.5 is not an integer
    wrong["inputs"][2]["datatype"] = "INT8"  # true is not an INT8
    wrong["outputs"] = []
    wrong["name"] = "other"
    passed, detail = metadata_check(wrong, examples)
    assert not passed
    assert "name is 'other'" in detail
    assert "input 'x' is declared INT32 but the examples give float values" in detail
    assert "input 'flag' is declared INT8 but the examples give bool values" in detail
    assert "output 'p' of the examples is not declared" in detail


def test_the_request_a_cuda_image_must_refuse_is_the_first_example() -> None:
    examples = [{"inputs": {"x": [[1.5, 2]], "n": [[1, 2]], "flag": [True], "text": ["a"], "none": []},
                 "outputs": {"p": [0.5]}},
                {"inputs": {"x": [[0.0, 0.0]]}, "outputs": {"p": [0.0]}}]
    # Nothing listens on port 1, so there is no metadata: the datatypes come from the JSON values.
    run = ContractRun(SimpleNamespace(base_url="127.0.0.1:1"), examples, "m")  # type: ignore[arg-type]
    try:
        assert run._first_request() == {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2]},
            {"name": "n", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]},
            {"name": "flag", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            {"name": "none", "datatype": "FP32", "shape": [0], "data": []},
        ]}
        run._metadata = {"inputs": [{"name": "n", "datatype": "INT32", "shape": [-1, 2]},
                                    {"name": "x", "datatype": "FP64", "shape": [-1, 2]}]}
        assert [t["datatype"] for t in run._first_request()["inputs"]] == ["FP64", "INT32", "BOOL", "BYTES", "FP32"]
    finally:
        run.close()
