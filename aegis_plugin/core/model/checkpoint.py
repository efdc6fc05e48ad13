"""Validation of a model directory's weights, single-file or sharded, without loading them.

A Hugging Face sharded checkpoint is `<prefix>-<k>-of-<n>.safetensors` shards plus
`model.safetensors.index.json`, whose `weight_map` says which shard holds each tensor. Loaders trust the index:
a tensor missing from it is silently left uninitialised and a shard missing from the directory fails only at
load time, inside the running image. So the index and the shards' headers must agree exactly before we ship.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from math import prod
from typing import Mapping

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.model import safetensors

SINGLE = "weights.safetensors"
INDEX = "model.safetensors.index.json"
JSON_OBJECTS = ("config.json", "generation_config.json")
_SHARD = re.compile(r"(?P<prefix>.+)-(?P<k>[0-9]+)-of-(?P<n>[0-9]+)\.safetensors")
_PATTERN = "<prefix>-<k>-of-<n>.safetensors"
_EITHER = f"a model holds either {SINGLE} or {INDEX} with its shards, not both"
_JSON_TYPES = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"
}


class CheckpointError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class CheckpointSummary:
    kind: str  # "single" | "sharded"
    shards: tuple[str, ...]  # the weight files, in shard order
    tensor_count: int
    total_bytes: int  # sum of the tensors' data sizes (what the index's `metadata.total_size` counts)
    parameters: int = 0  # the tensors' elements, all shards together
    dtypes: tuple[str, ...] = ()  # the tensors' safetensors dtypes, sorted


def _with_tensor_facts(summary: CheckpointSummary, headers: list[dict[str, dict]]) -> CheckpointSummary:
    tensors = [t for header in headers for t in header.values()]
    return replace(summary, parameters=sum(prod(t["shape"]) for t in tensors),
                   dtypes=tuple(sorted({t["dtype"] for t in tensors})))


def validate_checkpoint(files: Mapping[str, str]) -> CheckpointSummary:
    """`files` maps each file's name in the model directory to its local path; raises CheckpointError."""
    for name in JSON_OBJECTS:
        if name in files:
            _read_json_object(name, files[name])
    weights = sorted(name for name in files if name.endswith(".safetensors") and name != SINGLE)
    if SINGLE in files:
        extras = ([INDEX] if INDEX in files else []) + weights
        if extras:
            raise CheckpointError(f"{extras[0]}: unexpected next to {SINGLE}; {_EITHER}")
        tensors = _validate_shard(SINGLE, files[SINGLE])
        return _with_tensor_facts(CheckpointSummary("single", (SINGLE,), len(tensors), _data_size(tensors)), [tensors])
    if INDEX not in files:
        if weights:
            raise CheckpointError(
                f"{weights[0]}: shard without {INDEX}; add the index saved with the shards (or ship one {SINGLE})"
            )
        raise CheckpointError(f"no weights: add {SINGLE}, or {INDEX} with its {_PATTERN} shards")
    if not weights:
        raise CheckpointError(f"{INDEX}: no shards next to it; add the {_PATTERN} files it names")
    shards = _shard_order(weights)
    weight_map, total_size = _read_index(files[INDEX])
    headers = {shard: _validate_shard(shard, files[shard]) for shard in shards}
    return _with_tensor_facts(_check_index(shards, headers, weight_map, total_size), list(headers.values()))


def _shard_order(names: list[str]) -> list[str]:
    """The shard names sorted by k, after checking they are exactly k = 1..n of one prefix and one n."""
    by_k: dict[int, str] = {}
    first = None
    for name in names:
        match = _SHARD.fullmatch(name)
        if not match:
            raise CheckpointError(
                f"{name}: not a shard name; name shards {_PATTERN}, e.g. model-00001-of-00002.safetensors"
            )
        prefix, k, n = match["prefix"], int(match["k"]), int(match["n"])
        if first is None:
            first = (name, prefix, n, len(match["k"]), match["n"])
        elif prefix != first[1]:
            raise CheckpointError(
                f"{name}: prefix {prefix!r} differs from {first[1]!r} of {first[0]}; keep one checkpoint's shards"
            )
        elif n != first[2]:
            raise CheckpointError(
                f"{name}: says {n} shards but {first[0]} says {first[2]}; keep one checkpoint's shards"
            )
        if not 1 <= k <= n:
            raise CheckpointError(f"{name}: shard number {k} is outside 1..{n}; rename or remove it")
        if k in by_k:
            raise CheckpointError(f"{name}: shard {k} of {n} is also {by_k[k]}; keep only one of them")
        by_k[k] = name
    assert first is not None
    _, prefix, n, width, n_text = first
    for k in range(1, n + 1):
        if k not in by_k:
            missing = f"{prefix}-{k:0{width}d}-of-{n_text}.safetensors"
            raise CheckpointError(f"{missing}: missing (shards 1..{n} must all be present); add it")
    return [by_k[k] for k in range(1, n + 1)]


def _read_index(path: str) -> tuple[dict[str, str], object]:
    index = _read_json_object(INDEX, path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{INDEX}: `weight_map` must be an object mapping tensor names to shard file names; regenerate the index"
        )
    metadata = index.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{INDEX}: `metadata` must be an object; regenerate the index")
    total_size = metadata.get("total_size")
    if total_size is not None and (isinstance(total_size, bool) or not isinstance(total_size, (int, float))):
        raise CheckpointError(
            f"{INDEX}: `metadata.total_size` must be a number of bytes, found {total_size!r}; regenerate the index"
        )
    return weight_map, total_size


def _check_index(
    shards: list[str], headers: dict[str, dict], weight_map: dict[str, str], total_size: object
) -> CheckpointSummary:
    owner: dict[str, str] = {}
    for shard in shards:
        for tensor in headers[shard]:
            if tensor in owner:
                raise CheckpointError(
                    f"{shard}: tensor {tensor!r} is also in {owner[tensor]}; each tensor belongs in exactly one shard"
                )
            owner[tensor] = shard
    for tensor, shard in weight_map.items():
        if shard not in headers:
            raise CheckpointError(
                f"{INDEX}: tensor {tensor!r} is mapped to {shard}, which is not among the shards; "
                "add that shard or regenerate the index"
            )
        if tensor not in headers[shard]:
            raise CheckpointError(
                f"{INDEX}: tensor {tensor!r} is mapped to {shard} but that shard does not contain it; "
                "regenerate the index"
            )
    listed = set(weight_map.values())
    for shard in shards:
        if shard not in listed:
            raise CheckpointError(
                f"{shard}: not named in {INDEX}'s weight_map; regenerate the index or remove the shard"
            )
    for tensor, shard in owner.items():
        if tensor not in weight_map:
            raise CheckpointError(
                f"{INDEX}: tensor {tensor!r} of {shard} is missing from weight_map; regenerate the index"
            )
    total = sum(_data_size(headers[shard]) for shard in shards)
    if total_size is not None and total_size != total:
        raise CheckpointError(
            f"{INDEX}: metadata.total_size is {total_size} but the shards' tensors hold {total} bytes; "
            f"set it to {total} or regenerate the index"
        )
    return CheckpointSummary("sharded", tuple(shards), len(owner), total)


def _validate_shard(name: str, path: str) -> dict[str, dict]:
    try:
        return safetensors.validate(path)
    except safetensors.SafetensorsError as e:
        raise CheckpointError(f"{name}: not a valid safetensors file: {e}; re-save or re-download it") from None
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read: {e.strerror}") from None


def _data_size(tensors: dict[str, dict]) -> int:
    return sum(end - begin for begin, end in (info["data_offsets"] for info in tensors.values()))


def _read_json_object(name: str, path: str) -> dict:
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{name}: not UTF-8 text; re-save it as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{name}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix or re-save it"
        ) from None
    if not isinstance(value, dict):
        found = _JSON_TYPES.get(type(value), type(value).__name__)
        raise CheckpointError(f"{name}: must be a JSON object, found {found}; fix or re-save it")
    return value
