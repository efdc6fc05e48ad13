"""Assembling layers into one OCI image: config, manifest, index and the layout directory (and image.tar when
asked). The layer blobs are never copied: each layer step wrote its blob under its layout name, so the layout
is a merge of digests, and the image step reads only the layers' descriptors. A small files layer on top (the
SBOM's) is written by the image step itself: a process fewer on every edit."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pants.engine.fs import (
    AddPrefix, CreateDigest, Digest, DigestContents, DigestSubset, FileContent, MergeDigests, PathGlobs, RemovePrefix,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from aegis_plugin.core.oci import image
from aegis_plugin.core.oci.modelpack import REF_NAME_SUFFIX
from aegis_plugin.core.specs import ImageSpec, ModelArtifactLayerSpec, ModelArtifactSpec, to_json
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreCommand, CoreProcess, CoreResult, freeze
from aegis_plugin.util_rules.layers import FilesLayerRequest, Layer, files_layer_inputs

NON_ROOT = "65532:65532"


@dataclass(frozen=True)
class ModelArtifactRequest:
    """The ModelPack artifact to write beside the image (core/oci/modelpack.py), from the image's own layers."""

    layers: tuple[tuple[Layer, str, str], ...]  # (one of the image's layers, its kind, its filepath annotation)
    descriptor: FrozenDict[str, Any]  # the config's `descriptor`
    config: FrozenDict[str, Any]  # the config's `config`
    annotations: FrozenDict[str, str]  # of its manifest


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
    docker_archive: bool = False  # also image.tar: a second full copy of every layer
    model_artifact: ModelArtifactRequest | None = None  # also this ModelPack artifact, tagged `<tag>_modelpack`
    platform: str = "linux/amd64"  # the OCI platform its layers are built for, `os/architecture`
    top_layer: FilesLayerRequest | None = None  # a small layer on top of `layers`, which the image step writes


@dataclass(frozen=True)
class OciImage:
    digest: Digest  # oci/ (layout), image.json, and image.tar when asked
    manifest_digest: str
    model_artifact_digest: str | None = None  # the ModelPack artifact's manifest, in the same layout


@rule(desc="Assembling an OCI image")
async def build_oci_image(request: OciImageRequest) -> OciImage:
    spec = ImageSpec(
        layers=tuple(f"layer{i}/out" for i in range(len(request.layers))),
        architecture=request.platform.partition("/")[2],
        os=request.platform.partition("/")[0],
        created=request.created,
        user=NON_ROOT,
        # The root filesystem is read-only at run time: never write bytecode next to the sources.
        env=("PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", *request.env),
        entrypoint=tuple(request.entrypoint),
        working_dir="/app",
        labels=request.annotations,
        annotations=request.annotations,
        ref_name=request.tag,
        repo_tags=(f"{request.repository}:{request.tag}",),
        docker_archive=request.docker_archive,
        model_artifact=_model_artifact_spec(request, request.model_artifact) if request.model_artifact else None,
    )
    # The layer descriptors only, unless image.tar needs the bytes.
    read = ["out/layer.json", *(["out/blobs/**"] if request.docker_archive else [])]
    subsets = await MultiGet(Get(Digest, DigestSubset(layer.digest, PathGlobs(read))) for layer in request.layers)
    layer_inputs = list(await MultiGet(Get(Digest, AddPrefix(d, f"layer{i}")) for i, d in enumerate(subsets)))
    if request.top_layer is not None:
        top_inputs, top_spec = await files_layer_inputs(request.top_layer)
        layer_inputs.append(top_inputs)
        spec = dataclasses.replace(spec, top_layer=top_spec)
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.IMAGE,
            (),
            await Get(Digest, MergeDigests(layer_inputs)),
            description=f"Assembling the image of {request.context}",
            error_context=request.context,
            spec=freeze(to_json(spec)),
        ),
    )
    layer_blobs = await MultiGet(
        Get(Digest, DigestSubset(layer.digest, PathGlobs([layer.blob_path]))) for layer in request.layers
    )
    # out/blobs/sha256/<hex> of each layer step -> oci/blobs/sha256/<hex>
    unprefixed = await MultiGet(Get(Digest, RemovePrefix(blob, "out")) for blob in layer_blobs)
    in_layout = await MultiGet(Get(Digest, AddPrefix(blob, "oci")) for blob in unprefixed)
    out = await Get(Digest, MergeDigests([await Get(Digest, RemovePrefix(result.output_digest, "out")),
                                          *in_layout]))
    summary = json.loads((await Get(DigestContents, DigestSubset(out, PathGlobs(["image.json"]))))[0].content)
    return OciImage(out, summary["manifest_digest"], summary.get("model_artifact", {}).get("manifest_digest"))


def _model_artifact_spec(request: OciImageRequest, artifact: ModelArtifactRequest) -> ModelArtifactSpec:
    """The artifact's layers named as the image step finds them among its inputs (`layer<i>/out`)."""
    return ModelArtifactSpec(
        layers=tuple(ModelArtifactLayerSpec(f"layer{request.layers.index(layer)}/out", kind, filepath)
                     for layer, kind, filepath in artifact.layers),
        descriptor=artifact.descriptor,
        config=artifact.config,
        annotations=artifact.annotations,
        ref_name=f"{request.tag}{REF_NAME_SUFFIX}",
    )


@dataclass(frozen=True)
class ImageIndexRequest:
    """One image for several platforms: each platform's image (its `oci/` layout among its files)."""

    context: str
    tag: str
    images: tuple[Digest, ...]  # in the target's `platforms` order


@dataclass(frozen=True)
class ImageIndex:
    digest: Digest  # oci/: every platform's blobs, the image index blob, and index.json
    index_digest: str


@rule(desc="Writing an image index", level=LogLevel.DEBUG)
async def build_image_index(request: ImageIndexRequest) -> ImageIndex:
    """The layout's index.json names, tagged `<tag>`, an image index over the platforms' manifests (each with
    its `platform`), and beside it the ModelPack artifact, which is the same in every platform's layout. Small
    canonical JSON, made here: no blob is read or copied."""
    indexes = await MultiGet(
        Get(DigestContents, DigestSubset(layout, PathGlobs(["oci/index.json"]))) for layout in request.images
    )
    manifests, artifacts = [], set()
    for contents in indexes:
        for entry in json.loads(contents[0].content)["manifests"]:
            descriptor = image.parse_descriptor({**entry, "annotations": None})
            if entry.get("artifactType"):
                artifacts.add(image.canonical_json(entry))
            else:
                manifests.append(descriptor)
    if len(artifacts) > 1:
        raise AegisBuildError(f"{request.context}: the platforms' ModelPack artifacts differ (a plumbing error)")
    index_blob = image.build_index(manifests)
    index_descriptor = image.descriptor_for(image.MEDIA_TYPE_INDEX, index_blob,
                                            annotations={image.ANNOTATION_REF_NAME: request.tag})
    artifact_entries = [image.parse_descriptor(json.loads(a)) for a in artifacts]
    index_json = image.build_index([index_descriptor, *artifact_entries])
    written = await Get(Digest, CreateDigest([
        FileContent("oci/index.json", index_json),
        FileContent(f"oci/blobs/sha256/{index_descriptor.digest[len('sha256:'):]}", index_blob),
    ]))
    blobs = await MultiGet(
        Get(Digest, DigestSubset(layout, PathGlobs(["oci/blobs/**", "oci/oci-layout"]))) for layout in request.images
    )
    return ImageIndex(await Get(Digest, MergeDigests([written, *blobs])), index_descriptor.digest)


def rules():
    return collect_rules()
