"""The SBOMs of an image, written from what each layer step reported, and checked against the layers.

Each layer step writes its part of the inventory next to its layer (see `aegis_plugin/core/cli.py`): the
Debian packages with their licenses and files, the Python distributions with their lock hashes, licenses and
files, and every file of the model and the app with its hashes. This rule joins those parts with the image's
facts into one inventory (`aegis_plugin/core/sbom/inventory.py`) and runs the SBOM tool: it writes the
CycloneDX and SPDX 2.3 documents and fails when a file of the layers belongs to no component (read from each
layer's table of contents, `core/oci/toc.py`). The SPDX 3 document names the image's manifest, so it is
written from the same inventory once the image exists (`write_spdx3`), beside the pitfall guards.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict

from aegis_plugin.core.oci.layout import blob_path
from aegis_plugin.subsystems.sbom import SbomSubsystem
from aegis_plugin.util_rules.core_process import (
    AegisBuildError,
    CoreProcess,
    CoreResult,
    CoreTool,
    CoreToolPexRequest,
    thaw,
)
from aegis_plugin.util_rules.layers import APP_SITE_PACKAGES, Layer

CYCLONEDX_FILE = "sbom.cdx.json"
SPDX_FILE = "sbom.spdx.json"
SPDX3_FILE = "sbom.spdx3.json"
COMPLETENESS_FILE = "sbom-completeness.json"
SBOM_IN_IMAGE = "/app/sbom.spdx.json"  # where the seed's artifact anatomy puts it


@dataclass(frozen=True)
class SbomRequest:
    context: str
    image: FrozenDict[str, Any]  # the inventory's "image" object
    model: FrozenDict[str, Any]  # the inventory's "model" object without "files" and "card" (nested: frozen)
    model_file_roles: FrozenDict[str, str]  # path in the image -> role ("weights", "tokenizer", ...)
    base: Layer
    deps: Layer
    model_files: tuple[Layer, ...]  # one per weights file, then the model's small files with the card
    app: Layer


@dataclass(frozen=True)
class Sbom:
    digest: Digest  # sbom.cdx.json, sbom.spdx.json, sbom-completeness.json
    spdx: Digest  # sbom.spdx.json alone, for the image
    summary: str  # one line for the console
    inventory: Digest  # inventory.json, for the SPDX 3 document


@dataclass(frozen=True)
class Spdx3Request:
    """The finished image, whose blobs say what its components are deployed as (BSI TR-03183-2 asks each
    component's deployable file by name with its SHA-512): its manifest, the app's layer and the model's
    ModelPack artifact. All three are small: no weights are read."""

    context: str
    inventory: Digest  # Sbom.inventory
    layout: Digest  # the image's files: oci/ at the root
    manifest_digest: str  # "sha256:<hex>" of the image's manifest, in `layout`
    app_layer_digest: str
    model_artifact_digest: str | None  # of the ModelPack artifact's manifest, when `package` writes one


@dataclass(frozen=True)
class Spdx3:
    digest: Digest  # sbom.spdx3.json


@rule(desc="Writing the SBOMs of a model image")
async def write_sbom(request: SbomRequest, sbom: SbomSubsystem) -> Sbom:
    reports = [
        (request.base, "inventory.json"),
        (request.deps, "inventory.json"),
        (request.app, "files.json"),
        *((layer, "files.json") for layer in request.model_files),
        *((layer, "model_card.json") for layer in request.model_files),
    ]
    contents = await MultiGet(
        Get(DigestContents, DigestSubset(layer.digest, PathGlobs([f"out/{name}"]))) for layer, name in reports
    )
    base, deps, app_files, *model_reports = [json.loads(c[0].content) if c else None for c in contents]

    model_files = sorted((f for files in model_reports[: len(request.model_files)] for f in files),
                         key=lambda f: f["path"])
    (card,) = [card for card in model_reports[len(request.model_files):] if card is not None]
    try:
        creator = {"creator": sbom.creator()} if sbom.organization.strip() else {}
    except ValueError as e:
        raise AegisBuildError(f"{request.context}: {e}") from None
    inventory = {
        "image": {**request.image, **creator},
        "debian": base["debian"],
        "python": deps["python"],
        "model": {
            **request.model,
            "files": [{**f, "role": request.model_file_roles.get(f["path"], "other")} for f in model_files],
            "card": card,
        },
        "app": {"files": [{k: f[k] for k in ("path", "sha256", "sha1")} for f in app_files]},
    }
    # In image order, as the tables of contents the layer steps wrote beside their blobs: the blobs
    # themselves (GBs of weights and CUDA libraries) never enter this step.
    layers = (request.base, request.deps, *request.model_files, request.app)
    tocs = await MultiGet(Get(Digest, DigestSubset(layer.digest, PathGlobs([layer.toc_path]))) for layer in layers)
    inputs = await MultiGet(Get(Digest, AddPrefix(toc, f"layer{i}")) for i, toc in enumerate(tocs))
    inventory_json = json.dumps(inventory, sort_keys=True, default=thaw).encode()
    inventory_digest = await Get(Digest, CreateDigest([FileContent("inventory.json", inventory_json)]))
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreToolPexRequest(CoreTool.SBOM, sbom.resolve),
            (
                "--inventory", "inventory.json",
                "--layers", *(f"layer{i}/{layer.toc_path}" for i, layer in enumerate(layers)),
                "--site-packages", APP_SITE_PACKAGES,
                *(f"--allow={pattern}" for pattern in sbom.allow),
            ),
            await Get(Digest, MergeDigests([inventory_digest, *inputs])),
            description=f"Writing the SBOMs of {request.context}",
            error_context=request.context,
        ),
    )
    out = await Get(Digest, RemovePrefix(result.output_digest, "out"))
    spdx, report = await MultiGet(
        Get(Digest, DigestSubset(out, PathGlobs([SPDX_FILE]))),
        Get(DigestContents, DigestSubset(out, PathGlobs([COMPLETENESS_FILE]))),
    )
    counts = json.loads(report[0].content)
    summary = (
        f"SBOM: {len(inventory['debian'])} Debian packages, {len(inventory['python'])} Python distributions, "
        f"the model ({len(model_files)} files) and the app ({len(app_files)} files); "
        f"{counts['attributed']} of {counts['total']} image files attributed, {counts['by_type']['allowed']} "
        f"allow-listed"
    )
    return Sbom(out, spdx, summary, inventory_digest)


@rule(desc="Writing the SPDX 3 SBOM of a model image")
async def write_spdx3(request: Spdx3Request, sbom: SbomSubsystem) -> Spdx3:
    digests = {"--image-manifest": request.manifest_digest, "--app-layer": request.app_layer_digest,
               **({"--model-artifact": request.model_artifact_digest} if request.model_artifact_digest else {})}
    args = {flag: blob_path("oci", digest) for flag, digest in digests.items()}
    blobs = await Get(Digest, DigestSubset(request.layout, PathGlobs(list(args.values()))))
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreToolPexRequest(CoreTool.SBOM, sbom.resolve),
            ("--inventory", "inventory.json", *(a for flag, path in args.items() for a in (flag, path))),
            await Get(Digest, MergeDigests([request.inventory, blobs])),
            description=f"Writing the SPDX 3 SBOM of {request.context}",
            error_context=request.context,
        ),
    )
    return Spdx3(await Get(Digest, RemovePrefix(result.output_digest, "out")))


def rules():
    return collect_rules()
