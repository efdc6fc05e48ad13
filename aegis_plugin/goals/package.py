"""`pants package` for `model_package`: build the layers and the SBOMs from the package's inputs
(`util_rules/model_inputs.py`), assemble one OCI image, refuse it when a pitfall guard finds an error
(`util_rules/guards.py`), and hand the other goals its typed artifact (`package_types.BuiltModelImage`)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from pants.backend.python.subsystems.setup import PythonSetup
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.fs import AddPrefix, Digest, DigestContents, DigestSubset, MergeDigests, PathGlobs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from aegis_plugin.core.oci import modelpack
from aegis_plugin.core.python.handler_check import top_level_modules
from aegis_plugin.core.python.requirements_lock import canonical_name
from aegis_plugin.core.runtime import manifest as manifest_yaml
from aegis_plugin.package_types import BuiltModelImage, platform_dir
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.subsystems.sbom import SbomSubsystem
from aegis_plugin.target_types import (
    AcceleratorField,
    BaseImageField,
    BaseModelField,
    EvaluationDataField,
    FrameworkField,
    HandlerField,
    ImageAnnotationsField,
    LayerCompressionField,
    ModelCardField,
    ModelIdField,
    ModelPackageOutputPathField,
    ModelVersionField,
    PlatformsField,
    RepositoryField,
    SizeBudgetField,
    TokenizerField,
    TrainingDataField,
    TrainingScriptField,
    WeightsField,
    WeightsSha256Field,
)
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreTool, CoreToolPex, CoreToolPexRequest, freeze
from aegis_plugin.util_rules.guards import GuardFacts, GuardFactsRequest, GuardsRequest, GuardsResult
from aegis_plugin.util_rules.image import ImageIndex, ImageIndexRequest, ModelArtifactRequest, OciImage, OciImageRequest
from aegis_plugin.util_rules.layers import (
    APP_SITE_PACKAGES,
    APP_SRC,
    AppLayerRequest,
    DebianLayerRequest,
    DepsLayerRequest,
    FilesLayerRequest,
    Layer,
    LayerFile,
    debian_architecture,
)
from aegis_plugin.util_rules.mlflow import registry_inventory, registry_manifest_fields
from aegis_plugin.util_rules.model_inputs import ModelFiles, ModelFilesRequest, ModelInputs, ModelInputsRequest
from aegis_plugin.util_rules.sbom import (
    CYCLONEDX_FILE,
    SBOM_IN_IMAGE,
    SPDX3_FILE,
    SPDX_FILE,
    Sbom,
    SbomRequest,
    Spdx3,
    Spdx3Request,
)
from aegis_plugin.util_rules.source_revision import SourceRevision


@dataclass(frozen=True)
class ModelPackageFieldSet(PackageFieldSet):
    required_fields = (ModelIdField, WeightsField, HandlerField, ModelCardField)

    model_id: ModelIdField
    version: ModelVersionField
    weights: WeightsField
    weights_sha256: WeightsSha256Field
    tokenizer: TokenizerField
    model_card: ModelCardField
    handler: HandlerField
    framework: FrameworkField
    accelerator: AcceleratorField
    base_image: BaseImageField
    platforms: PlatformsField
    layer_compression: LayerCompressionField
    repository: RepositoryField
    annotations: ImageAnnotationsField
    size_budget: SizeBudgetField
    training_data: TrainingDataField
    evaluation_data: EvaluationDataField
    base_model: BaseModelField
    training_script: TrainingScriptField
    output_path: ModelPackageOutputPathField


@dataclass(frozen=True)
class ModelImageRequest:
    """The image of a `model_package` for one of its platforms."""

    field_set: ModelPackageFieldSet
    platform: str  # e.g. "linux/arm64"


@dataclass(frozen=True)
class ModelImage:
    """A built image before the guards: its files (OCI layout, image.json, the CycloneDX and SPDX 2.3 SBOMs,
    image.tar when asked) at the root, and what the package's typed artifact says of it."""

    digest: Digest
    artifact: BuiltModelImage
    spdx3: Spdx3Request  # the SPDX 3 SBOM, which names the finished image, is written beside the guards


@dataclass(frozen=True)
class ModelLayersRequest:
    """The model's own layers, apart from the image build: they wait for the model's files to be hydrated
    (seconds per GB), while the base and dependency layers, which need none of them, are built meanwhile."""

    context: str
    files: ModelFilesRequest
    model_card: Digest
    commit_time: int  # of the model's small files
    compression: str  # of the card's and the small files' layers; weights are plain tars


@dataclass(frozen=True)
class ModelLayers:
    card: Layer
    weights: tuple[tuple[Layer, str], ...]  # (layer, path of its one file in the image)
    config: tuple[Layer, ...]  # the tokenizer and configuration files, when there are any
    roles: FrozenDict[str, str]  # path in the image -> weights, tokenizer, config or model_card


@rule(desc="Building the model's layers")
async def build_model_layers(request: ModelLayersRequest) -> ModelLayers:
    context = request.context
    files = await Get(ModelFiles, ModelFilesRequest, request.files)
    # One plain-tar layer per weights file, stamped with mtime 0: the same file gives the same blob in every
    # image that carries it, a retrained file re-ships only its own layer, and nothing compresses float
    # weights at disk speed. The model's small files share one compressed layer, stamped with their own revision,
    # so a code-only commit leaves every model layer as it is.
    weights_files = [(path, d) for path, d in files.weights if path.endswith(".safetensors")]
    weights_requests = [
        FilesLayerRequest(context, f"model weights {os.path.basename(path)}",
                          (LayerFile(path, "field `weights`", digest),), 0, compression="none")
        for path, digest in weights_files
    ]
    card = LayerFile("/app/model/model_card.md", "field `model_card`", request.model_card, check="model_card")
    config_files = [
        *(LayerFile(path, "field `weights`", d, check="json") for path, d in files.weights if path.endswith(".json")),
        *(LayerFile(path, "field `weights`", d) for path, d in files.weights
          if not path.endswith((".json", ".safetensors"))),
    ]
    roles = {path: "weights" for path, _ in weights_files}
    roles["/app/model/model_card.md"] = "model_card"
    if files.tokenizer is not None:  # `ModelInputs` refused a checkpoint with its own tokenizer.json or card
        config_files.append(LayerFile("/app/model/tokenizer.json", "field `tokenizer`", files.tokenizer, check="json"))
        roles["/app/model/tokenizer.json"] = "tokenizer"
    for path, _ in files.weights:
        roles.setdefault(path, "tokenizer" if "tokenizer" in os.path.basename(path) else "config")
    # The model's small files ship in two layers: the card alone (ModelPack's `doc` layer), and the tokenizer
    # and configuration files (its `weight.config` layer), so that the ModelPack artifact is made of the image's
    # own layers. Every model has a card, so the card's layer step also checks the checkpoint as a whole (every
    # shard's header, the index against the shards): it reads the headers only.
    card_request = FilesLayerRequest(
        context, "model card", (card,), request.commit_time, request.compression,
        checkpoint=tuple((os.path.basename(path), d) for path, d in files.weights),
    )
    config_requests = [FilesLayerRequest(context, "model files", tuple(config_files), request.commit_time,
                                         request.compression)] if config_files else []
    card_layer, *layers = await MultiGet(
        Get(Layer, FilesLayerRequest, r) for r in (card_request, *weights_requests, *config_requests)
    )
    return ModelLayers(
        card=card_layer,
        weights=tuple((layer, path) for layer, (path, _) in zip(layers, weights_files)),
        config=tuple(layers[len(weights_requests):]),
        roles=FrozenDict(roles),
    )


@rule(desc="Building a model image")
async def build_model_image(request: ModelImageRequest, aegis: AegisSubsystem, sbom_subsystem: SbomSubsystem,
                            python_setup: PythonSetup) -> ModelImage:
    fs, platform = request.field_set, request.platform
    inputs = await Get(ModelInputs, ModelInputsRequest(fs.address))
    context = inputs.context
    compression = fs.layer_compression.value
    base_lockfile = inputs.base_lockfile.snapshot
    model, base_layer, deps_layer, _ = await MultiGet(
        Get(ModelLayers,
            ModelLayersRequest(context, inputs.files, inputs.model_card, inputs.model_revision.commit_time,
                               compression)),
        Get(
            Layer,
            DebianLayerRequest(f"{context}: field `base_image` ({inputs.base})", base_lockfile.digest,
                               base_lockfile.files[0], platform, compression),
        ),
        # The wheels are chosen for the image's platform, never for the build machine.
        Get(Layer, DepsLayerRequest(f"{context}: field `handler`", inputs.handler, inputs.resolve, platform,
                                    compression)),
        # Built beside the layers rather than after them: the SBOM step, which needs them all, then finds it.
        Get(CoreToolPex, CoreToolPexRequest(CoreTool.SBOM, sbom_subsystem.resolve)),
    )
    card_layer, config_layers = model.card, model.config
    weights_layers = [layer for layer, _ in model.weights]

    # The manifest records the framework's locked version, which the deps layer reports, and the model card's
    # license and owner, which the card's layer reports.
    deps_contents, card_contents = await MultiGet(
        Get(DigestContents, DigestSubset(deps_layer.digest, PathGlobs(["out/inventory.json", "out/requirements.lock"]))),
        Get(DigestContents, DigestSubset(card_layer.digest, PathGlobs(["out/model_card.json"]))),
    )
    deps_files = {c.path: c.content for c in deps_contents}
    deps_inventory = json.loads(deps_files["out/inventory.json"])["python"]
    importable = top_level_modules(
        path[len(APP_SITE_PACKAGES) + 1:] for dist in deps_inventory for path in dist["files"]
    )
    card_fields = json.loads(card_contents[0].content)["fields"]
    distributions = {d["name"]: d["version"] for d in deps_inventory}
    framework = canonical_name(fs.framework.value)
    if framework not in distributions:
        raise AegisBuildError(
            f"{context}: field `framework`: {fs.framework.value!r} is not among the handler's runtime "
            f"dependencies ({', '.join(sorted(distributions)) or 'none'})"
        )
    declared = {"model_id": fs.model_id.value, "version": fs.version.value, "framework": framework}
    for key, value in declared.items():
        if key in card_fields and canonical_name(card_fields[key]) != canonical_name(value):
            raise AegisBuildError(
                f"{context}: field `model_card`: the card says {key} {card_fields[key]!r}, but the target's "
                f"`{key}` is {value!r}: update one of them"
            )
    manifest = manifest_yaml.render(
        {
            **declared,
            "git_sha": inputs.revision.git_sha,
            "framework_version": distributions[framework],
            "accelerator": fs.accelerator.value,
            "signed_by": aegis.signer_identity,
            **{key: card_fields[key] for key in manifest_yaml.OPTIONAL_FIELDS if card_fields.get(key)},
            **(registry_manifest_fields(inputs.registry) if inputs.registry else {}),
        }
    )
    app_layer = await Get(
        Layer,
        AppLayerRequest(
            context,
            inputs.handler_source.snapshot.digest,
            inputs.handler_source.snapshot.files[0],
            inputs.handler_sources,
            manifest.decode(),
            deps_files["out/requirements.lock"].decode(),
            inputs.revision.commit_time,
            tuple(sorted(importable)),
            compression,
        ),
    )

    repository = fs.repository.image_repository(fs.model_id.value)
    # The SBOMs describe the four layers below them; the SPDX one ships in a small layer of its own on top.
    sbom = await Get(
        Sbom,
        SbomRequest(
            context,
            image=FrozenDict(
                name=repository,
                version=fs.version.value,
                created=inputs.revision.commit_time,
                git_sha=inputs.revision.git_sha,
                source_url=aegis.source_url or None,
                architecture=debian_architecture(platform),
                os="linux",
            ),
            model=FrozenDict(
                model_id=fs.model_id.value,
                version=fs.version.value,
                framework=framework,
                framework_version=distributions[framework],
                accelerator=fs.accelerator.value,
                **({"registry": freeze(registry_inventory(inputs.registry))} if inputs.registry else {}),
                **({"lineage": inputs.lineage} if inputs.lineage else {}),
            ),
            model_file_roles=model.roles,
            base=base_layer,
            deps=deps_layer,
            model_files=(*weights_layers, *config_layers, card_layer),
            app=app_layer,
        ),
    )
    annotations = {
        **(fs.annotations.value or {}),
        "org.opencontainers.image.title": fs.model_id.value,
        "org.opencontainers.image.version": fs.version.value,
        "org.opencontainers.image.revision": inputs.revision.git_sha,
        **({"org.opencontainers.image.source": aegis.source_url} if aegis.source_url else {}),
    }
    model_artifact = await _model_artifact(
        fs, aegis, inputs.revision, card_fields, f"{framework}=={distributions[framework]}",
        model.weights, config_layers, card_layer,
    ) if aegis.model_artifact else None
    image = await Get(
        OciImage,
        OciImageRequest(
            context=context,
            layers=(base_layer, deps_layer, *weights_layers, *config_layers, card_layer, app_layer),
            # The SBOM's own small layer, on top: the image step writes it, one process fewer on every edit.
            top_layer=FilesLayerRequest(
                context, "SBOM", (LayerFile(SBOM_IN_IMAGE, "the SBOM", sbom.spdx),), inputs.revision.commit_time,
                compression,
            ),
            created=inputs.revision.commit_time,
            entrypoint=(inputs.python, "-m", "aegis_runtime.server"),
            env=(
                f"PYTHONPATH={APP_SITE_PACKAGES}:{APP_SRC}:/app",
                "AEGIS_APP_DIR=/app",
                "AEGIS_PORT=8080",
            ),
            annotations=FrozenDict(annotations),
            tag=fs.version.value,
            repository=repository,
            docker_archive=aegis.docker_archive,
            model_artifact=model_artifact,
            platform=platform,
        ),
    )
    output_path = fs.output_path.value_or_default(file_ending=None)
    return ModelImage(
        await Get(Digest, MergeDigests([image.digest, sbom.digest])),
        BuiltModelImage(
            relpath=f"{output_path}/oci",
            extra_log_lines=(
                f"    manifest digest: {image.manifest_digest}",
                f"    tag: {repository}:{fs.version.value} (OCI layout in {output_path}/oci)",
                *((f"    ModelPack artifact: {image.model_artifact_digest} (tag {fs.version.value}"
                   f"{modelpack.REF_NAME_SUFFIX}, the same weight blobs)",) if image.model_artifact_digest else ()),
                f"    revision: {inputs.revision.git_sha}",
                f"    {sbom.summary}",
            ),
            manifest_digest=image.manifest_digest,
            model_artifact_digest=image.model_artifact_digest or "",
            repository=repository,
            tag=fs.version.value,
            base_layers=((platform, base_layer.blob_digest),),
            git_sha=inputs.revision.git_sha,
            lockfiles=(python_setup.resolves[inputs.resolve], *inputs.base_lockfile.snapshot.files),
            registry=inputs.registry,
            platforms=((platform, image.manifest_digest),),
        ),
        Spdx3Request(context, sbom.inventory, image.digest, image.manifest_digest, app_layer.blob_digest,
                     image.model_artifact_digest),
    )


async def _model_artifact(
    fs: ModelPackageFieldSet, aegis: AegisSubsystem, revision: SourceRevision, card: dict[str, str],
    framework: str, weights: tuple[tuple[Layer, str], ...], config_layers: tuple[Layer, ...], card_layer: Layer,
) -> ModelArtifactRequest:
    """The ModelPack artifact of the model's layers: the facts of its config come from the target, the model
    card and the checkpoint's safetensors headers."""
    report = await Get(DigestContents, DigestSubset(card_layer.digest, PathGlobs(["out/tensors.json"])))
    tensors = json.loads(report[0].content)  # of the whole checkpoint, which the card's layer step checks
    created = datetime.fromtimestamp(revision.commit_time, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    descriptor = {
        "name": fs.model_id.value, "version": fs.version.value, "revision": revision.git_sha, "createdAt": created,
        **({"licenses": [card["license"]]} if card.get("license") else {}),
        **({"authors": [card["owner"]]} if card.get("owner") else {}),
        **({"sourceURL": aegis.source_url} if aegis.source_url else {}),
    }
    config = {
        "format": "safetensors",
        "paramSize": modelpack.param_size(tensors["parameters"]),
        "precision": modelpack.precision(tensors["dtypes"]),
        **({"architecture": card["architecture"]} if card.get("architecture") else {}),
    }
    annotations = {
        "org.opencontainers.image.title": fs.model_id.value,
        "org.opencontainers.image.version": fs.version.value,
        "org.opencontainers.image.revision": revision.git_sha,
        "org.opencontainers.image.created": created,
        **({"org.opencontainers.image.licenses": card["license"]} if card.get("license") else {}),
        **({"org.opencontainers.image.source": aegis.source_url} if aegis.source_url else {}),
        modelpack.ANNOTATION_FRAMEWORK: framework,
        modelpack.ANNOTATION_ACCELERATOR: fs.accelerator.value,
        **modelpack.card_annotations(card),
    }
    return ModelArtifactRequest(
        layers=(
            *((layer, "weight", path.lstrip("/")) for layer, path in weights),
            *((layer, "weight.config", "app/model") for layer in config_layers),
            (card_layer, "doc", "app/model/model_card.md"),
        ),
        descriptor=freeze(descriptor),
        config=freeze(config),
        annotations=FrozenDict(annotations),
    )


async def _check_output_path_is_its_own(fs: ModelPackageFieldSet) -> None:
    """Two packages writing the same dist/ directory would overwrite each other's image."""
    output_path = fs.output_path.value_or_default(file_ending=None)
    all_targets = await Get(AllTargets)  # parsed already: Pants' import inference reads every BUILD file
    others = sorted(
        str(tgt.address) for tgt in all_targets
        if tgt.has_field(ModelPackageOutputPathField) and tgt.address != fs.address
        and tgt[ModelPackageOutputPathField].value_or_default(file_ending=None) == output_path
    )
    if others:
        raise AegisBuildError(
            f"{fs.address}: field `output_path`: {others[0]} writes dist/{output_path} too: give one of them "
            f"another `output_path`"
        )


@rule(desc="Packaging a model")
async def package_model(fs: ModelPackageFieldSet, guards: GuardsSubsystem) -> BuiltPackage:
    platforms = fs.platforms.value
    *images, facts, _ = await MultiGet(
        *(Get(ModelImage, ModelImageRequest(fs, platform)) for platform in platforms),
        Get(GuardFacts, GuardFactsRequest(fs.address)),
        # Built beside the images rather than after them, for the guards below.
        Get(CoreToolPex, CoreToolPexRequest(CoreTool.GUARDS, guards.resolve)),
    )
    await _check_output_path_is_its_own(fs)
    checked = await MultiGet(
        *(Get(GuardsResult, GuardsRequest(str(fs.address), image.digest, facts.facts)) for image in images),
        *(Get(Spdx3, Spdx3Request, image.spdx3) for image in images),
    )
    guarded, spdx3s = checked[:len(images)], checked[len(images):]
    for platform, result in zip(platforms, guarded):
        if result.errors:
            count = len(result.errors)
            more = f" (and {count - 1} more: see `pants lint {fs.address}`)" if count > 1 else ""
            on = f" (on {platform})" if len(platforms) > 1 else ""
            raise AegisBuildError(result.errors[0] + on + more)
    output_path = images[0].artifact.output_path
    if len(images) == 1:
        files = await Get(Digest, MergeDigests([images[0].digest, spdx3s[0].digest]))
        return BuiltPackage(
            await Get(Digest, AddPrefix(files, output_path)),
            (images[0].artifact, *_sbom_artifacts(output_path)),
        )
    # One image per platform under one image index: the shared blobs (weights, model files, card, app, the
    # ModelPack artifact) are the same files in every platform's layout; each platform's other files (its
    # image.json, SBOMs, image.tar) go to a directory of their own.
    index = await Get(ImageIndex, ImageIndexRequest(str(fs.address), fs.version.value,
                                                    tuple(image.digest for image in images)))
    others = await MultiGet(
        Get(Digest, DigestSubset(image.digest, PathGlobs(["**", "!oci", "!oci/**"]))) for image in images
    )
    merged = await MultiGet(Get(Digest, MergeDigests([files, spdx3.digest])) for files, spdx3 in zip(others, spdx3s))
    per_platform = await MultiGet(
        Get(Digest, AddPrefix(files, platform_dir(platform))) for platform, files in zip(platforms, merged)
    )
    first = images[0].artifact
    artifact = dataclasses.replace(
        first,
        manifest_digest=index.index_digest,
        platforms=tuple((platform, image.artifact.manifest_digest) for platform, image in zip(platforms, images)),
        base_layers=tuple(layer for image in images for layer in image.artifact.base_layers),
        extra_log_lines=(
            f"    image index digest: {index.index_digest}",
            *(line for platform, image in zip(platforms, images) for line in (
                f"    {platform}: {image.artifact.manifest_digest}",
                *(f"  {line}" for line in image.artifact.extra_log_lines if line.lstrip().startswith("SBOM:")),
            )),
            *(line for line in first.extra_log_lines
              if not line.lstrip().startswith(("manifest digest:", "SBOM:"))),
        ),
    )
    return BuiltPackage(
        await Get(Digest, AddPrefix(await Get(Digest, MergeDigests([index.digest, *per_platform])), output_path)),
        (artifact, *(a for platform in platforms for a in _sbom_artifacts(artifact.platform_output_path(platform)))),
    )


def _sbom_artifacts(directory: str) -> tuple[BuiltPackageArtifact, ...]:
    return tuple(BuiltPackageArtifact(f"{directory}/{name}") for name in (CYCLONEDX_FILE, SPDX_FILE, SPDX3_FILE))


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, ModelPackageFieldSet),
    ]
