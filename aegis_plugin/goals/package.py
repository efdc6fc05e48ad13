"""`pants package` for `model_package`: gather the inputs, build the layers and the SBOMs, assemble one OCI image,
and refuse it when a pitfall guard finds an error (`util_rules/guards.py`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import (
    PythonRequirementResolveField,
    PythonRequirementsField,
    PythonResolveField,
    PythonSourceField,
)
from pants.backend.python.util_rules.python_sources import PythonSourceFiles, PythonSourceFilesRequest
from pants.base.build_environment import get_buildroot
from pants.base.specs import DirGlobSpec, RawSpecs
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.target_types import FileSourceField, http_source
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    GlobMatchErrorBehavior,
    AddPrefix,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileEntry,
    MergeDigests,
    PathGlobs,
)
from pants.engine.internals.native_engine import IntrinsicError
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    AllTargets,
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    InferDependenciesRequest,
    InferredDependencies,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from aegis_plugin.core.python.handler_check import top_level_modules
from aegis_plugin.core.python.requirements_lock import canonical_name
from aegis_plugin.core.runtime import manifest as manifest_yaml
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.target_types import (
    AcceleratorField,
    BaseModelField,
    BaseImageField,
    DebianLockfileField,
    EvaluationDataField,
    DebianPythonField,
    FrameworkField,
    HandlerField,
    ImageAnnotationsField,
    ModelCardField,
    ModelIdField,
    ModelPackageOutputPathField,
    ModelVersionField,
    MlflowArtifactPathField,
    MlflowFilesField,
    MlflowRunIdField,
    MlflowSourceField,
    PlatformsField,
    RepositoryField,
    SizeBudgetField,
    TokenizerField,
    TrainingDataField,
    TrainingScriptField,
    WeightsField,
    WeightsSha256Field,
)
from aegis_plugin.util_rules.core_process import AegisBuildError, freeze
from aegis_plugin.util_rules.lineage import Lineage, LineageRequest
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest
from aegis_plugin.util_rules.guards import GuardsRequest, GuardsResult
from aegis_plugin.util_rules.image import OciImage, OciImageRequest
from aegis_plugin.util_rules.mlflow import (
    MlflowFiles,
    MlflowFilesRequest,
    registry_inventory,
    registry_manifest_fields,
    registry_provenance,
)
from aegis_plugin.util_rules.layers import (
    MODEL_DIR,
    SINGLE_WEIGHTS,
    APP_SITE_PACKAGES,
    APP_SRC,
    AppLayerRequest,
    DebianLayerRequest,
    DepsLayerRequest,
    FilesLayerRequest,
    Layer,
    LayerFile,
)
from aegis_plugin.util_rules.sbom import CYCLONEDX_FILE, SBOM_IN_IMAGE, SPDX3_FILE, SPDX_FILE, Sbom, SbomRequest
from aegis_plugin.util_rules.source_revision import SourceRevision, SourceRevisionRequest


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
    repository: RepositoryField
    annotations: ImageAnnotationsField
    size_budget: SizeBudgetField
    training_data: TrainingDataField
    evaluation_data: EvaluationDataField
    base_model: BaseModelField
    training_script: TrainingScriptField
    output_path: ModelPackageOutputPathField


def _address_fields(fs: "ModelPackageFieldSet | ModelPackageReferencesFieldSet") -> dict[str, str]:
    """The fields that name other targets, by alias (only those that are set)."""
    values = {
        WeightsField.alias: fs.weights.value,
        TokenizerField.alias: fs.tokenizer.value,
        HandlerField.alias: fs.handler.value,
        BaseImageField.alias: fs.base_image.value,
    }
    return {alias: value for alias, value in values.items() if value}


@dataclass(frozen=True)
class ModelPackageReferencesFieldSet(FieldSet):
    required_fields = (WeightsField, HandlerField)

    weights: WeightsField
    tokenizer: TokenizerField
    handler: HandlerField
    base_image: BaseImageField
    training_data: TrainingDataField
    evaluation_data: EvaluationDataField


class InferModelPackageDependencies(InferDependenciesRequest):
    infer_from = ModelPackageReferencesFieldSet


@rule(desc="Inferring model_package dependencies")
async def infer_model_package_dependencies(request: InferModelPackageDependencies) -> InferredDependencies:
    """The weights, tokenizer, handler, base and datasets are dependencies, so `--changed-dependents` sees them."""
    fs = request.field_set
    addresses = await Get(
        Addresses,
        UnparsedAddressInputs(
            [*_address_fields(fs).values(), *(fs.training_data.value or ()), *(fs.evaluation_data.value or ())],
            owning_address=fs.address,
            description_of_origin=f"the address fields of {fs.address}",
        ),
    )
    return InferredDependencies(addresses)


@dataclass(frozen=True)
class ModelInputs:
    """Everything a model package is built from, resolved and checked."""

    context: str  # the target's address, which every error starts with
    weights: tuple[tuple[str, Digest], ...]  # (path in the image, digest of that one file), single or sharded
    tokenizer: Digest | None
    model_card: Digest
    handler: Address
    handler_source: HydratedSources
    handler_sources: PythonSourceFiles  # the handler's first-party closure
    resolve: str
    base: Address
    base_lockfile: HydratedSources
    python: str  # the interpreter inside the base image
    revision: SourceRevision  # of all inputs: the image's git_sha and timestamps
    model_revision: SourceRevision  # of the model's small files only: the model files layer's timestamps
    registry: FrozenDict[str, Any] | None = None  # the MLflow provenance of the files, when they came from one
    lineage: FrozenDict[str, Any] | None = None  # datasets, base model, training script (util_rules/lineage.py)


def unparsable_build_file(error: SyntaxError) -> str:
    """Which BUILD file of the repository does not parse (Pants says only `BUILD, line N`)."""
    root = get_buildroot()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "dist")
        for name in sorted(f for f in filenames if f == "BUILD" or f.startswith("BUILD.")):
            path = os.path.join(dirpath, name)
            try:
                with open(path, encoding="utf-8") as f:
                    compile(f.read(), path, "exec")
            except SyntaxError as found:
                return (f"resolving its imports reads every BUILD file, and {os.path.relpath(path, root)}:"
                        f"{found.lineno} does not parse ({found.msg}): fix it")
            except (OSError, UnicodeDecodeError):
                continue
    return f"a BUILD file does not parse: {error}"


def _weights_in_image(context: str, sources: list[tuple[Digest, tuple[str, ...]]]) -> list[tuple[str, Digest]]:
    """One file is `/app/model/weights.safetensors` (the seed's anatomy), whatever its name in the repository;
    the files of a sharded checkpoint keep their names under `/app/model/`."""
    if len(sources) == 1:
        return [(f"{MODEL_DIR}/{SINGLE_WEIGHTS}", sources[0][0])]
    by_name: dict[str, Digest] = {}
    for digest, paths in sources:
        name = os.path.basename(paths[0])
        if name in by_name:
            raise AegisBuildError(f"{context}: field `weights`: two files are named {name}; a model directory "
                                  f"holds each name once")
        by_name[name] = digest
    return [(f"{MODEL_DIR}/{name}", digest) for name, digest in sorted(by_name.items())]


@rule(desc="Resolving the inputs of a model package")
async def resolve_model_inputs(
    fs: ModelPackageFieldSet, aegis: AegisSubsystem, mlflow: MlflowSubsystem, python_setup: PythonSetup
) -> ModelInputs:
    context = str(fs.address)
    references = _address_fields(fs)
    addresses = await MultiGet(
        Get(
            Addresses,
            UnparsedAddressInputs(
                [value], owning_address=fs.address, description_of_origin=f"the `{alias}` field of {fs.address}"
            ),
        )
        for alias, value in references.items()
    )
    targets = dict(
        zip(
            references,
            await MultiGet(
                Get(
                    WrappedTarget,
                    WrappedTargetRequest(a[0], description_of_origin=f"the `{alias}` field of {fs.address}"),
                )
                for alias, a in zip(references, addresses)
            ),
        )
    )
    weights_tgts = await Get(Targets, Addresses, addresses[list(references).index(WeightsField.alias)])
    handler_tgt = targets[HandlerField.alias].target
    base_tgt = targets[BaseImageField.alias].target
    tokenizer_tgt = targets[TokenizerField.alias].target if TokenizerField.alias in targets else None

    def require(tgt: Target, field_type: type, alias: str, kind: str) -> None:
        if not tgt.has_field(field_type):
            raise AegisBuildError(f"{context}: field `{alias}`: {tgt.address} is not a {kind} target")

    registry_tgts = [t for t in weights_tgts if t.has_field(MlflowFilesField)]
    if registry_tgts and len(weights_tgts) > 1:
        raise AegisBuildError(f"{context}: field `weights`: an `mlflow_artifacts` target holds all the model's "
                              f"files; name it alone")
    for weights_tgt in weights_tgts:
        if not weights_tgt.has_field(MlflowFilesField):
            require(weights_tgt, FileSourceField, WeightsField.alias, "`file`, `files` or `mlflow_artifacts`")
    if tokenizer_tgt is not None:
        require(tokenizer_tgt, FileSourceField, TokenizerField.alias, "`file`")
    require(handler_tgt, PythonSourceField, HandlerField.alias, "`python_source`")
    require(base_tgt, DebianLockfileField, BaseImageField.alias, "`debian_base`")
    resolve = handler_tgt[PythonResolveField].normalized_value(python_setup)
    if resolve not in aegis.runtime_resolves:
        raise AegisBuildError(
            f"{context}: field `handler`: {handler_tgt.address} is in resolve {resolve!r}, but images take "
            f"third-party code from `[aegis].runtime_resolves` {list(aegis.runtime_resolves)} only"
        )

    # Sources. Model files given as `http_source` are downloaded by a cacheable process, or by Pants when the
    # URL carries secrets (see util_rules/download.py).
    model_files = [
        *((WeightsField.alias, tgt) for tgt in weights_tgts),
        *([(TokenizerField.alias, tokenizer_tgt)] if tokenizer_tgt else []),
    ]
    model_sources: list[tuple[str, Digest, tuple[str, ...]]] = []  # (alias, digest of one file, its path)
    registry_paths: set[str] = set()  # of those, the files from a model registry: in no commit
    for alias, tgt in model_files:
        if tgt.has_field(MlflowFilesField):
            pins = tgt[MlflowFilesField].value
            fetched = await Get(
                MlflowFiles,
                MlflowFilesRequest(
                    f"{context}: field `{alias}` ({tgt.address})",
                    tgt[MlflowSourceField].value,
                    tgt[MlflowRunIdField].value,
                    tgt[MlflowArtifactPathField].value,
                    tuple((name, sha256, size) for name, (sha256, size) in pins.items()),
                ),
            )
            one_each = await MultiGet(Get(Digest, DigestSubset(fetched.digest, PathGlobs([name]))) for name in pins)
            paths = [os.path.join(tgt.address.spec_path, name) for name in pins]
            model_sources.extend((alias, digest, (path,)) for path, digest in zip(paths, one_each))
            registry_paths.update(paths)
            continue
        source = tgt[FileSourceField].value
        if isinstance(source, http_source):
            fetched = await Get(PinnedDownload, PinnedDownloadRequest(f"{context}: field `{alias}` ({tgt.address})", source))
            model_sources.append((alias, fetched.digest, (os.path.join(tgt.address.spec_path, source.filename),)))
            continue
        request = HydrateSourcesRequest(tgt[FileSourceField], for_sources_types=(FileSourceField,))
        try:
            hydrated_file = await Get(HydratedSources, HydrateSourcesRequest, request)
        except Exception as e:  # e.g. the file is missing
            raise AegisBuildError(f"{context}: field `{alias}` ({tgt.address}): {str(e).strip().splitlines()[-1]}") from None
        model_sources.append((alias, hydrated_file.snapshot.digest, hydrated_file.snapshot.files))
    hydrated = []
    for alias, field in ((ModelCardField.alias, fs.model_card), (HandlerField.alias, handler_tgt[PythonSourceField]),
                         (BaseImageField.alias, base_tgt[DebianLockfileField])):
        try:  # e.g. a symlink leaving the repository: Pants' message names neither target nor field
            hydrated.append(await Get(HydratedSources, HydrateSourcesRequest(field)))
        except Exception as e:
            raise AegisBuildError(f"{context}: field `{alias}`: {str(e).strip().splitlines()[-1]}") from None
    weights_sources = [(d, paths) for alias, d, paths in model_sources if alias == WeightsField.alias]
    weights_paths = [path for _, paths in weights_sources for path in paths]
    tokenizer_digest, tokenizer_paths = next(
        ((d, paths) for alias, d, paths in model_sources if alias == TokenizerField.alias), (None, ())
    )
    card_src, handler_src, base_lock_src = hydrated
    weights = _weights_in_image(context, weights_sources)

    if fs.weights_sha256.value:
        if len(weights) != 1:
            raise AegisBuildError(
                f"{context}: field `weights_sha256` pins one weights file, but `weights` names {len(weights)} "
                f"files: pin a sharded checkpoint's files with `http_source(sha256=...)` or git, and drop it"
            )
        (weights_entry,) = [
            e for e in await Get(DigestEntries, Digest, weights[0][1]) if isinstance(e, FileEntry)
        ]
        if weights_entry.file_digest.fingerprint != fs.weights_sha256.value:
            raise AegisBuildError(
                f"{context}: field `weights_sha256`: {weights_entry.path} has sha256 "
                f"{weights_entry.file_digest.fingerprint}, expected {fs.weights_sha256.value}"
            )

    # The handler's closure: its first-party code goes to /app/src.
    try:
        transitive = await Get(TransitiveTargets, TransitiveTargetsRequest([handler_tgt.address]))
    except SyntaxError as e:
        # Pants' Python dependency inference reads every BUILD file of the repository, and its parse error
        # names none: say which one.
        raise AegisBuildError(f"{context}: field `handler`: {unparsable_build_file(e)}") from None
    except IntrinsicError as e:  # e.g. a symlink leaving the repository, met while globbing for sources
        raise AegisBuildError(
            f"{context}: field `handler`: resolving its imports reads the repository's sources: "
            f"{str(e).strip().splitlines()[-1]}"
        ) from None
    sources = await Get(PythonSourceFiles, PythonSourceFilesRequest(transitive.closure))
    lineage = await Get(
        Lineage,
        LineageRequest(context, fs.address, tuple(fs.training_data.value or ()), tuple(fs.evaluation_data.value or ()),
                       fs.base_model.value, fs.training_script.value),
    )

    # The revision: the newest commit touching any input of this package (checked before any slow step).
    # Files from a registry are in no commit: their pins are, in the BUILD file of their target.
    model_paths = {
        *(set(weights_paths) - registry_paths),
        *(os.path.join(t.address.spec_path, "BUILD") for t in registry_tgts),
        *card_src.snapshot.files,
        *tokenizer_paths,
    }
    input_paths = {
        *model_paths,
        *base_lock_src.snapshot.files,
        *sources.source_files.files,
        *lineage.paths,
        python_setup.resolves[resolve],
        *(os.path.join(t.address.spec_path, "BUILD") for t in [*transitive.closure, base_tgt]),
        os.path.join(fs.address.spec_path, "BUILD"),
    }
    # The model's small files (card, tokenizer, index, config) are stamped with their own revision: the
    # weights layers carry mtime 0, so retraining re-ships the weights files that changed and nothing else.
    small_model_paths = sorted(p for p in model_paths if not p.endswith(".safetensors"))
    revision, model_revision = await MultiGet(
        Get(SourceRevision, SourceRevisionRequest(context, tuple(sorted(input_paths)))),
        Get(SourceRevision, SourceRevisionRequest(context, tuple(small_model_paths))),
    )
    return ModelInputs(
        context=context,
        weights=tuple(weights),
        tokenizer=tokenizer_digest,
        model_card=card_src.snapshot.digest,
        handler=handler_tgt.address,
        handler_source=handler_src,
        handler_sources=sources,
        resolve=resolve,
        base=base_tgt.address,
        base_lockfile=base_lock_src,
        python=base_tgt[DebianPythonField].value,
        revision=revision,
        model_revision=model_revision,
        registry=registry_provenance(registry_tgts[0], mlflow.tracking_uri) if registry_tgts else None,
        lineage=lineage.inventory,
    )


@dataclass(frozen=True)
class ModelImage:
    """A built image before the guards: its files (OCI layout, image.json, the SBOMs, image.tar when asked) at
    the root."""

    digest: Digest
    output_path: str
    log_lines: tuple[str, ...]


@rule(desc="Building a model image")
async def build_model_image(fs: ModelPackageFieldSet, aegis: AegisSubsystem) -> ModelImage:
    inputs = await Get(ModelInputs, ModelPackageFieldSet, fs)
    context = inputs.context

    # One plain-tar layer per weights file, stamped with mtime 0: the same file gives the same blob in every
    # image that carries it, a retrained file re-ships only its own layer, and nothing compresses float
    # weights at disk speed. The model's small files share one gzip layer, stamped with their own revision,
    # so a code-only commit leaves every model layer as it is.
    weights_files = [(path, d) for path, d in inputs.weights if path.endswith(".safetensors")]
    weights_requests = [
        FilesLayerRequest(context, f"model weights {os.path.basename(path)}",
                          (LayerFile(path, "field `weights`", digest),), 0, compression="none")
        for path, digest in weights_files
    ]
    model_files = [
        LayerFile("/app/model/model_card.md", "field `model_card`", inputs.model_card, check="model_card"),
        *(LayerFile(path, "field `weights`", d, check="json") for path, d in inputs.weights if path.endswith(".json")),
        *(LayerFile(path, "field `weights`", d) for path, d in inputs.weights
          if not path.endswith((".json", ".safetensors"))),
    ]
    model_file_roles = {path: "weights" for path, _ in weights_files}
    model_file_roles["/app/model/model_card.md"] = "model_card"
    if inputs.tokenizer is not None:
        if "/app/model/tokenizer.json" in dict(inputs.weights):
            raise AegisBuildError(
                f"{context}: field `tokenizer`: the checkpoint named by `weights` has its own tokenizer.json: "
                f"drop one of them"
            )
        model_files.append(LayerFile("/app/model/tokenizer.json", "field `tokenizer`", inputs.tokenizer, check="json"))
        model_file_roles["/app/model/tokenizer.json"] = "tokenizer"
    if "/app/model/model_card.md" in dict(inputs.weights):
        raise AegisBuildError(
            f"{context}: field `weights`: the checkpoint has a model_card.md, which `model_card` provides: drop it"
        )
    for path, _ in inputs.weights:
        model_file_roles.setdefault(path, "tokenizer" if "tokenizer" in os.path.basename(path) else "config")
    # The model's small files' layer also checks the checkpoint as a whole (every shard's header, the index
    # against the shards): it reads the headers only.
    model_files_request = FilesLayerRequest(
        context, "model files", tuple(model_files), inputs.model_revision.commit_time,
        checkpoint=tuple((os.path.basename(path), d) for path, d in inputs.weights),
    )
    base_lockfile = inputs.base_lockfile.snapshot
    model_layer, base_layer, deps_layer, *weights_layers = await MultiGet([
        Get(Layer, FilesLayerRequest, model_files_request),
        Get(
            Layer,
            DebianLayerRequest(f"{context}: field `base_image` ({inputs.base})", base_lockfile.digest,
                               base_lockfile.files[0]),
        ),
        Get(Layer, DepsLayerRequest(f"{context}: field `handler`", inputs.handler, inputs.resolve)),
        *(Get(Layer, FilesLayerRequest, r) for r in weights_requests),
    ])

    # The manifest records the framework's locked version, which the deps layer reports, and the model card's
    # license and owner, which the model layer reports.
    deps_contents, card_contents = await MultiGet(
        Get(DigestContents, DigestSubset(deps_layer.digest, PathGlobs(["out/inventory.json", "out/requirements.lock"]))),
        Get(DigestContents, DigestSubset(model_layer.digest, PathGlobs(["out/model_card.json"]))),
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
        ),
    )

    repository = fs.repository.value or f"aegis/{fs.model_id.value}"
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
                architecture="amd64",
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
            model_file_roles=FrozenDict(model_file_roles),
            base=base_layer,
            deps=deps_layer,
            model_files=(*weights_layers, model_layer),
            app=app_layer,
        ),
    )
    sbom_layer = await Get(
        Layer,
        FilesLayerRequest(
            context, "SBOM", (LayerFile(SBOM_IN_IMAGE, "the SBOM", sbom.spdx),), inputs.revision.commit_time
        ),
    )
    annotations = {
        **(fs.annotations.value or {}),
        "org.opencontainers.image.title": fs.model_id.value,
        "org.opencontainers.image.version": fs.version.value,
        "org.opencontainers.image.revision": inputs.revision.git_sha,
        **({"org.opencontainers.image.source": aegis.source_url} if aegis.source_url else {}),
    }
    image = await Get(
        OciImage,
        OciImageRequest(
            context=context,
            layers=(base_layer, deps_layer, *weights_layers, model_layer, app_layer, sbom_layer),
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
        ),
    )
    output_path = fs.output_path.value_or_default(file_ending=None)
    return ModelImage(
        await Get(Digest, MergeDigests([image.digest, sbom.digest])),
        output_path,
        (
            f"    manifest digest: {image.manifest_digest}",
            f"    tag: {repository}:{fs.version.value} (OCI layout in {output_path}/oci)",
            f"    revision: {inputs.revision.git_sha}",
            f"    {sbom.summary}",
        ),
    )


@dataclass(frozen=True)
class GuardFacts:
    facts: FrozenDict[str, Any]  # core/guards/pitfalls.Facts of the target


@rule
async def guard_facts(fs: ModelPackageFieldSet, guards: GuardsSubsystem, python_setup: PythonSetup) -> GuardFacts:
    inputs = await Get(ModelInputs, ModelPackageFieldSet, fs)
    # The requirement targets live next to their resolve's lockfile: read only those BUILD files, so an error
    # in an unrelated BUILD file elsewhere in the repository cannot fail this package.
    resolves = [r for r in (*guards.training_resolves, inputs.resolve) if r in python_setup.resolves]
    requirement_dirs = sorted({os.path.dirname(python_setup.resolves[r]) for r in resolves})
    addresses = await Get(
        Addresses,
        RawSpecs(
            dir_globs=tuple(DirGlobSpec(d) for d in requirement_dirs),
            description_of_origin="the directories of the resolves' lockfiles ([python].resolves)",
            unmatched_glob_behavior=GlobMatchErrorBehavior.ignore,
        ),
    )
    training: set[str] = set()
    runtime: set[str] = set()
    for tgt in await Get(Targets, Addresses, addresses):
        if not tgt.has_field(PythonRequirementsField):
            continue
        resolve = tgt[PythonRequirementResolveField].normalized_value(python_setup)
        names = {canonical_name(r.project_name) for r in tgt[PythonRequirementsField].value}
        if resolve in guards.training_resolves:
            training |= names
        elif resolve == inputs.resolve:
            runtime |= names
    return GuardFacts(
        freeze(
            {
                "target": str(fs.address),
                "build_file": os.path.join(fs.address.spec_path, "BUILD"),
                "python_lock": python_setup.resolves[inputs.resolve],
                "debian_lock": inputs.base_lockfile.snapshot.files[0],
                "accelerator": fs.accelerator.value,
                "framework": canonical_name(fs.framework.value),
                "size_budget_mb": fs.size_budget.value,
                "deny_python": list(guards.deny_python),
                "deny_debian": list(guards.deny_debian),
                "training_only": sorted(training - runtime),
            }
        )
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
async def package_model(fs: ModelPackageFieldSet) -> BuiltPackage:
    image, facts = await MultiGet(
        Get(ModelImage, ModelPackageFieldSet, fs), Get(GuardFacts, ModelPackageFieldSet, fs)
    )
    await _check_output_path_is_its_own(fs)
    guarded = await Get(GuardsResult, GuardsRequest(str(fs.address), image.digest, facts.facts))
    if guarded.errors:
        more = f" (and {len(guarded.errors) - 1} more: see `pants lint {fs.address}`)" if len(guarded.errors) > 1 else ""
        raise AegisBuildError(guarded.errors[0] + more)
    output_path = image.output_path
    return BuiltPackage(
        await Get(Digest, AddPrefix(image.digest, output_path)),
        (
            BuiltPackageArtifact(f"{output_path}/oci", extra_log_lines=image.log_lines),
            BuiltPackageArtifact(f"{output_path}/{CYCLONEDX_FILE}"),
            BuiltPackageArtifact(f"{output_path}/{SPDX_FILE}"),
            BuiltPackageArtifact(f"{output_path}/{SPDX3_FILE}"),
        ),
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, ModelPackageFieldSet),
        UnionRule(InferDependenciesRequest, InferModelPackageDependencies),
    ]
