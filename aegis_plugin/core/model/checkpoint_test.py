from __future__ import annotations

import copy
import json
import struct

import pytest

from aegis_plugin.core.model.checkpoint import CheckpointError, CheckpointSummary, validate_checkpoint

S1, S2, S3 = (f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3))
INDEX = "model.safetensors.index.json"
SHARDS = {
    S1: {"embed.weight": ("F32", [2, 3]), "layers.0.w": ("F16", [4])},  # 24 + 8 bytes
    S2: {"layers.1.w": ("BF16", [2, 2]), "layers.1.b": ("I64", [1])},  # 8 + 8 bytes
    S3: {"lm_head.weight": ("F32", [3])},  # 12 bytes
}


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def sharded() -> dict[str, object]:
    """A 3-shard model directory: file name -> tensors (safetensors), bytes, or a JSON value."""
    spec: dict[str, object] = copy.deepcopy(SHARDS)
    spec[INDEX] = {
        "metadata": {"total_size": 60},
        "weight_map": {tensor: shard for shard, tensors in SHARDS.items() for tensor in tensors},
    }
    spec["config.json"] = {"model_type": "llama", "hidden_size": 3}
    spec["generation_config.json"] = {"max_new_tokens": 16}
    spec["tokenizer.json"] = {"version": "1.0"}
    return spec


def build(tmp_path, spec: dict[str, object]) -> dict[str, str]:
    directory = tmp_path / f"model{len(list(tmp_path.iterdir()))}"  # a fresh one per call
    directory.mkdir()
    files = {}
    for i, (name, content) in enumerate(spec.items()):
        if name.endswith(".safetensors") and isinstance(content, dict):
            data = safetensors_bytes(content)
        elif isinstance(content, bytes):
            data = content
        else:
            data = json.dumps(content).encode()
        path = directory / f"{i}.bin"  # the local path need not be the file's name in the model directory
        path.write_bytes(data)
        files[name] = str(path)
    return files


def error(tmp_path, spec: dict[str, object]) -> str:
    with pytest.raises(CheckpointError) as e:
        validate_checkpoint(build(tmp_path, spec))
    return str(e.value)


def test_single_file(tmp_path) -> None:
    spec = {"weights.safetensors": SHARDS[S1], "config.json": {"a": 1}, "tokenizer.json": {}}
    assert validate_checkpoint(build(tmp_path, spec)) == CheckpointSummary(
        "single", ("weights.safetensors",), 2, 32, parameters=10, dtypes=("F16", "F32"))


def test_sharded(tmp_path) -> None:
    spec = sharded()
    spec = dict(reversed(list(spec.items())))  # shard order comes from k, not from the mapping's order
    assert validate_checkpoint(build(tmp_path, spec)) == CheckpointSummary(
        "sharded", (S1, S2, S3), 5, 60, parameters=18, dtypes=("BF16", "F16", "F32", "I64"))


def test_sharded_without_total_size_or_config(tmp_path) -> None:
    spec = {
        "w-1-of-2.safetensors": {"a": ("U8", [3])},
        "w-2-of-2.safetensors": {"b": ("U8", [2])},
        INDEX: {"weight_map": {"a": "w-1-of-2.safetensors", "b": "w-2-of-2.safetensors"}},
    }
    assert validate_checkpoint(build(tmp_path, spec)) == CheckpointSummary(
        "sharded", ("w-1-of-2.safetensors", "w-2-of-2.safetensors"), 2, 5, parameters=5, dtypes=("U8",)
    )


def test_invalid_shard_header(tmp_path) -> None:
    spec = sharded()
    spec[S2] = safetensors_bytes(SHARDS[S2])[:-1]
    assert error(tmp_path, spec) == (
        f"{S2}: not a valid safetensors file: tensors cover 16 bytes but the data buffer has 15; "
        "re-save or re-download it"
    )


def test_invalid_single_file(tmp_path) -> None:
    assert error(tmp_path, {"weights.safetensors": b"abc"}) == (
        "weights.safetensors: not a valid safetensors file: file of 3 bytes is too short for a safetensors header; "
        "re-save or re-download it"
    )


def _renamed(old: str, new: str) -> dict[str, object]:
    spec = sharded()
    spec[new] = spec.pop(old)
    spec[INDEX]["weight_map"] = {t: new if s == old else s for t, s in spec[INDEX]["weight_map"].items()}
    return spec


@pytest.mark.parametrize(
    "old,new,message",
    [
        (S3, "model-00003.safetensors",
         "model-00003.safetensors: not a shard name; name shards <prefix>-<k>-of-<n>.safetensors, "
         "e.g. model-00001-of-00002.safetensors"),
        (S3, "model-00003-of-00004.safetensors",
         f"model-00003-of-00004.safetensors: says 4 shards but {S1} says 3; keep one checkpoint's shards"),
        (S3, "other-00003-of-00003.safetensors",
         f"other-00003-of-00003.safetensors: prefix 'other' differs from 'model' of {S1}; "
         "keep one checkpoint's shards"),
        (S3, "model-00004-of-00003.safetensors",
         "model-00004-of-00003.safetensors: shard number 4 is outside 1..3; rename or remove it"),
        (S3, "model-2-of-3.safetensors",
         f"model-2-of-3.safetensors: shard 2 of 3 is also {S2}; keep only one of them"),
    ],
)
def test_shard_names(tmp_path, old, new, message) -> None:
    assert error(tmp_path, _renamed(old, new)) == message


def test_missing_shard(tmp_path) -> None:
    spec = sharded()
    del spec[S2]
    assert error(tmp_path, spec) == f"{S2}: missing (shards 1..3 must all be present); add it"


@pytest.mark.parametrize(
    "index,message",
    [
        (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2); "
                       "fix or re-save it"),
        (b"\xff{}", "not UTF-8 text; re-save it as UTF-8 JSON"),
        ([], "must be a JSON object, found an array; fix or re-save it"),
        ({"metadata": {}}, "`weight_map` must be an object mapping tensor names to shard file names; "
                           "regenerate the index"),
        ({"weight_map": {"embed.weight": 1}}, "`weight_map` must be an object mapping tensor names to shard file "
                                              "names; regenerate the index"),
        ({"metadata": [], "weight_map": {}}, "`metadata` must be an object; regenerate the index"),
        ({"metadata": {"total_size": "60"}, "weight_map": {}},
         "`metadata.total_size` must be a number of bytes, found '60'; regenerate the index"),
    ],
)
def test_malformed_index(tmp_path, index, message) -> None:
    spec = sharded()
    spec[INDEX] = index
    assert error(tmp_path, spec) == f"{INDEX}: {message}"


def test_tensor_mapped_to_wrong_shard(tmp_path) -> None:
    spec = sharded()
    spec[INDEX]["weight_map"]["lm_head.weight"] = S2
    assert error(tmp_path, spec) == (
        f"{INDEX}: tensor 'lm_head.weight' is mapped to {S2} but that shard does not contain it; regenerate the index"
    )


@pytest.mark.parametrize("target", ["model-00004-of-00003.safetensors", "config.json"])
def test_index_names_missing_shard(tmp_path, target) -> None:
    spec = sharded()
    spec[INDEX]["weight_map"]["extra.weight"] = target
    assert error(tmp_path, spec) == (
        f"{INDEX}: tensor 'extra.weight' is mapped to {target}, which is not among the shards; "
        "add that shard or regenerate the index"
    )


def test_shard_not_in_index(tmp_path) -> None:
    spec = sharded()
    del spec[INDEX]["weight_map"]["lm_head.weight"]
    assert error(tmp_path, spec) == (
        f"{S3}: not named in {INDEX}'s weight_map; regenerate the index or remove the shard"
    )


def test_tensor_not_in_index(tmp_path) -> None:
    spec = sharded()
    del spec[INDEX]["weight_map"]["layers.1.b"]
    assert error(tmp_path, spec) == (
        f"{INDEX}: tensor 'layers.1.b' of {S2} is missing from weight_map; regenerate the index"
    )


def test_tensor_in_two_shards(tmp_path) -> None:
    spec = sharded()
    spec[S3] = {"lm_head.weight": ("F32", [3]), "embed.weight": ("F32", [2, 3])}
    assert error(tmp_path, spec) == (
        f"{S3}: tensor 'embed.weight' is also in {S1}; each tensor belongs in exactly one shard"
    )


@pytest.mark.parametrize("total_size", [61, 59])
def test_total_size_mismatch(tmp_path, total_size) -> None:
    spec = sharded()
    spec[INDEX]["metadata"]["total_size"] = total_size
    assert error(tmp_path, spec) == (
        f"{INDEX}: metadata.total_size is {total_size} but the shards' tensors hold 60 bytes; "
        "set it to 60 or regenerate the index"
    )


def test_total_size_counts_data_not_files(tmp_path) -> None:
    spec = sharded()
    files = build(tmp_path, spec)
    file_bytes = sum(len(safetensors_bytes(SHARDS[s])) for s in (S1, S2, S3))
    spec[INDEX]["metadata"]["total_size"] = file_bytes
    assert error(tmp_path, spec) == (
        f"{INDEX}: metadata.total_size is {file_bytes} but the shards' tensors hold 60 bytes; "
        "set it to 60 or regenerate the index"
    )
    assert validate_checkpoint(files).total_bytes == 60


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("config.json", b"{", "not valid JSON (Expecting property name enclosed in double quotes at line 1 "
                              "column 2); fix or re-save it"),
        ("config.json", [1], "must be a JSON object, found an array; fix or re-save it"),
        ("generation_config.json", "greedy", "must be a JSON object, found a string; fix or re-save it"),
        ("generation_config.json", None, "must be a JSON object, found null; fix or re-save it"),
    ],
)
def test_config_must_be_object(tmp_path, name, content, message) -> None:
    for spec in (sharded(), {"weights.safetensors": SHARDS[S1]}):
        spec[name] = content
        assert error(tmp_path, spec) == f"{name}: {message}"


def test_single_file_next_to_index(tmp_path) -> None:
    spec = sharded()
    spec["weights.safetensors"] = SHARDS[S1]
    assert error(tmp_path, spec) == (
        f"{INDEX}: unexpected next to weights.safetensors; "
        f"a model holds either weights.safetensors or {INDEX} with its shards, not both"
    )


def test_single_file_next_to_shard(tmp_path) -> None:
    spec = {"weights.safetensors": SHARDS[S1], S1: SHARDS[S1]}
    assert error(tmp_path, spec) == (
        f"{S1}: unexpected next to weights.safetensors; "
        f"a model holds either weights.safetensors or {INDEX} with its shards, not both"
    )


def test_shards_without_index(tmp_path) -> None:
    spec = sharded()
    del spec[INDEX]
    assert error(tmp_path, spec) == (
        f"{S1}: shard without {INDEX}; add the index saved with the shards (or ship one weights.safetensors)"
    )


def test_index_without_shards(tmp_path) -> None:
    spec = {name: content for name, content in sharded().items() if not name.endswith(".safetensors")}
    assert error(tmp_path, spec) == (
        f"{INDEX}: no shards next to it; add the <prefix>-<k>-of-<n>.safetensors files it names"
    )


def test_no_weights(tmp_path) -> None:
    assert error(tmp_path, {"config.json": {}}) == (
        f"no weights: add weights.safetensors, or {INDEX} with its <prefix>-<k>-of-<n>.safetensors shards"
    )
