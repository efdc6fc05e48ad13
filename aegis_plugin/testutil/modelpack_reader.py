"""A reader of ModelPack model artifacts in an OCI layout, written for the tests from the text of the CNCF
model-spec v0.0.7 (`docs/spec.md`, `docs/config.md`, `docs/annotations.md`) and the OCI image layout, not from
Aegis' own writer or another tool's code, so that the tests judge what Aegis writes by what the spec says.

What it checks, each as the spec states it: the manifest is an OCI image manifest whose `artifactType` is the
model manifest type; its config has the model config media type and only `descriptor`, `config` and `modelfs`,
with `modelfs.type` "layers" and one diffId per layer, in order; every layer has a model media type
(`application/vnd.cncf.model.<kind>.v1.<raw|tar|tar+gzip|tar+zstd>`); every blob matches its digest and size,
and every uncompressed tar its diffId. `raw` layers are written at their `org.cncf.model.filepath`; tar layers
are unpacked (regular files and directories only, no path out of the destination).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
FILEPATH = "org.cncf.model.filepath"
_LAYER = re.compile(
    r"application/vnd\.cncf\.model\.(weight|weight\.config|doc|code|dataset)\.v1\.(raw|tar|tar\+gzip|tar\+zstd)"
)


class NotAModel(AssertionError):
    pass


@dataclass(frozen=True)
class ModelArtifact:
    manifest_digest: str
    manifest: dict
    config: dict
    files: Dict[str, bytes]  # path (relative, as unpacked) -> content
    kinds: Dict[str, List[str]]  # layer kind -> its layers' digests


def _blob(layout: Path, descriptor: dict) -> bytes:
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    data = (layout / "blobs" / algorithm / hex_digest).read_bytes()
    if hashlib.new(algorithm, data).hexdigest() != hex_digest or len(data) != descriptor["size"]:
        raise NotAModel(f"blob {descriptor['digest']} does not match its descriptor")
    return data


def read(layout: Path, ref: str) -> ModelArtifact:
    """The model artifact tagged `ref` in the OCI layout `layout`, unpacked in memory."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"]
                if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref]
    manifest = json.loads(_blob(layout, entry))
    if manifest.get("mediaType") != MANIFEST or manifest.get("artifactType") != ARTIFACT:
        raise NotAModel(f"{ref}: not a model artifact manifest: {manifest.get('mediaType')}, "
                        f"{manifest.get('artifactType')}")
    if manifest["config"]["mediaType"] != CONFIG:
        raise NotAModel(f"{ref}: config media type {manifest['config']['mediaType']}")
    config = json.loads(_blob(layout, manifest["config"]))
    if set(config) - {"descriptor", "config", "modelfs"} or not {"descriptor", "config", "modelfs"} <= set(config):
        raise NotAModel(f"{ref}: config keys {sorted(config)}")
    modelfs = config["modelfs"]
    if modelfs.get("type") != "layers" or len(modelfs.get("diffIds", [])) != len(manifest["layers"]):
        raise NotAModel(f"{ref}: modelfs {modelfs} for {len(manifest['layers'])} layers")
    files: Dict[str, bytes] = {}
    kinds: Dict[str, List[str]] = {}
    for layer, diff_id in zip(manifest["layers"], modelfs["diffIds"]):
        match = _LAYER.fullmatch(layer["mediaType"])
        if not match:
            raise NotAModel(f"{ref}: layer media type {layer['mediaType']}")
        kind, archive = match.groups()
        kinds.setdefault(kind, []).append(layer["digest"])
        data = _blob(layout, layer)
        if archive == "raw":
            files[layer["annotations"][FILEPATH]] = data
            continue
        if archive == "tar+zstd":
            raise NotAModel(f"{ref}: this reader has no zstd")
        tar_bytes = gzip.decompress(data) if archive == "tar+gzip" else data
        if "sha256:" + hashlib.sha256(tar_bytes).hexdigest() != diff_id:
            raise NotAModel(f"{ref}: layer {layer['digest']} does not match its diffId {diff_id}")
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")):
                    raise NotAModel(f"{ref}: unsafe path {member.name!r}")
                if member.isfile():
                    files[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
                elif not member.isdir():
                    raise NotAModel(f"{ref}: {member.name!r} is neither a file nor a directory")
    return ModelArtifact(entry["digest"], manifest, config, files, kinds)
