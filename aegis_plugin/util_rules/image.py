"""Assembling layers into one OCI image: config, manifest, index, the layout directory and image.tar."""
from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.fs import AddPrefix, CreateDigest, Digest, DigestContents, DigestSubset, FileContent
from pants.engine.fs import MergeDigests, PathGlobs, RemovePrefix
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict

from aegis_plugin.util_rules.core_process import CoreCommand, CoreProcess, CoreResult
from aegis_plugin.util_rules.layers import Layer

NON_ROOT = "65532:65532"


@dataclass(frozen=True)
class OciImageRequest:
    context: str
    layers: tuple[Layer, ...]  # bottom first
    created: int  # seconds since the epoch: the source revision's commit time
    entrypoint: tuple[str, ...]
    env: tuple[str, ...]  # on top of PATH and Python's no-bytecode, unbuffered settings
    annotations: FrozenDict[str, str]
    tag: str
    repository: str


@dataclass(frozen=True)
class OciImage:
    digest: Digest  # oci/ (layout), image.tar, image.json
    manifest_digest: str


@rule(desc="Assembling an OCI image")
async def build_oci_image(request: OciImageRequest) -> OciImage:
    spec = {
        "layers": [f"layer{i}/out" for i in range(len(request.layers))],
        "architecture": "amd64",
        "os": "linux",
        "created": request.created,
        "user": NON_ROOT,
        # The root filesystem is read-only at run time: never write bytecode next to the sources.
        "env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
                *request.env],
        "entrypoint": list(request.entrypoint),
        "working_dir": "/app",
        "labels": dict(request.annotations),
        "annotations": dict(request.annotations),
        "ref_name": request.tag,
        "repo_tags": [f"{request.repository}:{request.tag}"],
    }
    layer_inputs = await MultiGet(
        Get(Digest, AddPrefix(layer.digest, f"layer{i}")) for i, layer in enumerate(request.layers)
    )
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("image-spec.json", json.dumps(spec, sort_keys=True).encode())])
    )
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.IMAGE,
            ("--spec", "image-spec.json"),
            await Get(Digest, MergeDigests([spec_digest, *layer_inputs])),
            description=f"Assembling the image of {request.context}",
            error_context=request.context,
        ),
    )
    out = await Get(Digest, RemovePrefix(result.output_digest, "out"))
    summary = await Get(DigestContents, DigestSubset(out, PathGlobs(["image.json"])))
    return OciImage(out, json.loads(summary[0].content)["manifest_digest"])


def rules():
    return collect_rules()
