"""What a model package is built from: the targets its fields name, resolved, hydrated and checked, and its
source revision; the model's files (GBs of weights) are hydrated apart, by `ModelFiles`. Apart from the goals
that build, test, run and publish the image, as Pants' docker backend keeps its build context apart from its
goals; every goal asks for `ModelInputs` by address."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonResolveField, PythonSourceField
from pants.backend.python.util_rules.python_sources import PythonSourceFiles, PythonSourceFilesRequest
from pants.base.build_environment import get_buildroot
from pants.core.target_types import FileSourceField, http_source
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, DigestEntries, DigestSubset, FileEntry, PathGlobs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    InferDependenciesRequest,
    InferredDependencies,
    SourcesPaths,
    SourcesPathsRequest,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.target_types import (
    BaseImageField,
    BaseModelField,
    DebianLockfileField,
    DebianPythonField,
    EvaluationDataField,
    HandlerField,
    MlflowArtifactPathField,
    MlflowFilesField,
    MlflowRunIdField,
    MlflowSourceField,
    ModelCardField,
    TokenizerField,
    TrainingDataField,
    TrainingScriptField,
    WeightsField,
    WeightsSha256Field,
)
from aegis_plugin.util_rules.core_process import AegisBuildError
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest
from aegis_plugin.util_rules.layers import MODEL_DIR, SINGLE_WEIGHTS
from aegis_plugin.util_rules.lineage import Lineage, LineageRequest
from aegis_plugin.util_rules.mlflow import MlflowFiles, MlflowFilesRequest, registry_provenance
from aegis_plugin.util_rules.pants_internals import IntrinsicError
from aegis_plugin.util_rules.source_revision import SourceRevision, SourceRevisionRequest


@dataclass(frozen=True)
class ModelInputsFieldSet(FieldSet):
    """The fields of a `model_package` that name what it is built from."""

    required_fields = (WeightsField, HandlerField, ModelCardField)

    weights: WeightsField
    weights_sha256: WeightsSha256Field
    tokenizer: TokenizerField
    model_card: ModelCardField
    handler: HandlerField
    base_image: BaseImageField
    training_data: TrainingDataField
    evaluation_data: EvaluationDataField
    base_model: BaseModelField
    training_script: TrainingScriptField


@dataclass(frozen=True)
class ModelInputsRequest:
    address: Address  # of a model_package


def _address_fields(fs: "ModelInputsFieldSet | ModelPackageReferencesFieldSet") -> dict[str, str]:
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
class ModelFilesRequest:
    """The weights and tokenizer of a model package, by target. Hydrating them is apart from `ModelInputs`:
    Pants fingerprints every byte of a file it hydrates (about 100 MB/s on 2 GiB of weights), and the image's
    base and dependency layers, which need none of them, are built meanwhile."""

    context: str
    weights: tuple[Target, ...]  # `file` targets, or one `mlflow_artifacts`
    tokenizer: Target | None
    weights_sha256: str | None


@dataclass(frozen=True)
class ModelFiles:
    weights: tuple[tuple[str, Digest], ...]  # (path in the image, digest of that one file), single or sharded
    tokenizer: Digest | None


@dataclass(frozen=True)
class ModelInputs:
    """Everything a model package is built from, resolved and checked; the model's files by target only."""

    context: str  # the target's address, which every error starts with
    files: ModelFilesRequest  # the weights and tokenizer, hydrated apart (see `ModelFiles`)
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


def _weights_in_image(context: str, paths: list[str]) -> dict[str, str]:
    """Each weights file's path in the image, by its path in the repository. One file is
    `/app/model/weights.safetensors` (the seed's anatomy), whatever its name; the files of a sharded checkpoint
    keep their names under `/app/model/`."""
    if len(paths) == 1:
        return {paths[0]: f"{MODEL_DIR}/{SINGLE_WEIGHTS}"}
    in_image: dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if f"{MODEL_DIR}/{name}" in in_image.values():
            raise AegisBuildError(f"{context}: field `weights`: two files are named {name}; a model directory "
                                  f"holds each name once")
        in_image[path] = f"{MODEL_DIR}/{name}"
    return in_image


def _check_pin_count(context: str, pin: str | None, weights: int) -> None:
    if pin and weights != 1:
        raise AegisBuildError(
            f"{context}: field `weights_sha256` pins one weights file, but `weights` names {weights} files: pin "
            f"a sharded checkpoint's files with `http_source(sha256=...)` or git, and drop it"
        )


@dataclass(frozen=True)
class ModelFileRequest:
    """One target named by `weights` or `tokenizer`: a `file` (from the repository or `http_source`) or an
    `mlflow_artifacts`."""

    context: str  # the package's address
    alias: str  # the field that names the target
    target: Target


@dataclass(frozen=True)
class ModelFilePaths:
    paths: tuple[str, ...]  # in the repository: the file, the `http_source` filename, or each registry file
    from_registry: bool  # a registry's files are in no commit


@dataclass(frozen=True)
class ModelFileDigests:
    files: tuple[tuple[str, Digest], ...]  # (path as in `ModelFilePaths`, digest of that one file)


@rule
async def model_file_paths(request: ModelFileRequest) -> ModelFilePaths:
    """Where the file is, without reading it: a missing file fails here, before any slow step."""
    tgt = request.target
    if tgt.has_field(MlflowFilesField):
        names = tgt[MlflowFilesField].value
        return ModelFilePaths(tuple(os.path.join(tgt.address.spec_path, name) for name in names), True)
    source = tgt[FileSourceField].value
    if isinstance(source, http_source):
        return ModelFilePaths((os.path.join(tgt.address.spec_path, source.filename),), False)
    try:
        paths = await Get(SourcesPaths, SourcesPathsRequest(tgt[FileSourceField]))
    except Exception as e:  # e.g. the file is missing
        raise AegisBuildError(
            f"{request.context}: field `{request.alias}` ({tgt.address}): {str(e).strip().splitlines()[-1]}"
        ) from None
    return ModelFilePaths(tuple(paths.files), False)


@rule(desc="Hydrating a model file target")
async def hydrate_model_target(request: ModelFileRequest) -> ModelFileDigests:
    """The bytes of the target's files. Model files given as `http_source` are downloaded by a cacheable process,
    or by Pants when the URL carries secrets (see util_rules/download.py)."""
    tgt = request.target
    where = f"{request.context}: field `{request.alias}` ({tgt.address})"
    if tgt.has_field(MlflowFilesField):
        pins = tgt[MlflowFilesField].value
        fetched = await Get(
            MlflowFiles,
            MlflowFilesRequest(
                where,
                tgt[MlflowSourceField].value,
                tgt[MlflowRunIdField].value,
                tgt[MlflowArtifactPathField].value,
                tuple((name, sha256, size) for name, (sha256, size) in pins.items()),
            ),
        )
        one_each = await MultiGet(Get(Digest, DigestSubset(fetched.digest, PathGlobs([name]))) for name in pins)
        return ModelFileDigests(tuple((os.path.join(tgt.address.spec_path, name), digest)
                                      for name, digest in zip(pins, one_each)))
    source = tgt[FileSourceField].value
    if isinstance(source, http_source):
        fetched = await Get(PinnedDownload, PinnedDownloadRequest(where, source))
        return ModelFileDigests(((os.path.join(tgt.address.spec_path, source.filename), fetched.digest),))
    request_sources = HydrateSourcesRequest(tgt[FileSourceField], for_sources_types=(FileSourceField,))
    try:
        hydrated = await Get(HydratedSources, HydrateSourcesRequest, request_sources)
    except Exception as e:  # e.g. the file went away since its path was found
        raise AegisBuildError(f"{where}: {str(e).strip().splitlines()[-1]}") from None
    return ModelFileDigests(((hydrated.snapshot.files[0], hydrated.snapshot.digest),))


@rule(desc="Hydrating the model's files")
async def hydrate_model_files(request: ModelFilesRequest) -> ModelFiles:
    """Everything a path can tell was checked by `ModelInputs`; what needs the bytes (the pin) is checked here."""
    hydrated = await MultiGet(
        Get(ModelFileDigests, ModelFileRequest(request.context, alias, tgt))
        for alias, tgt in [*((WeightsField.alias, t) for t in request.weights),
                           *((TokenizerField.alias, t) for t in [request.tokenizer] if t is not None)]
    )
    weights_files = [f for found in hydrated[:len(request.weights)] for f in found.files]
    in_image = _weights_in_image(request.context, [path for path, _ in weights_files])
    weights = sorted(((in_image[path], digest) for path, digest in weights_files), key=lambda f: f[0])
    _check_pin_count(request.context, request.weights_sha256, len(weights))
    if request.weights_sha256:
        (weights_entry,) = [
            e for e in await Get(DigestEntries, Digest, weights[0][1]) if isinstance(e, FileEntry)
        ]
        if weights_entry.file_digest.fingerprint != request.weights_sha256:
            raise AegisBuildError(
                f"{request.context}: field `weights_sha256`: {weights_entry.path} has sha256 "
                f"{weights_entry.file_digest.fingerprint}, expected {request.weights_sha256}"
            )
    tokenizer = hydrated[len(request.weights)].files[0][1] if request.tokenizer else None
    return ModelFiles(tuple(weights), tokenizer)


@rule(desc="Resolving the inputs of a model package")
async def resolve_model_inputs(
    request: ModelInputsRequest, aegis: AegisSubsystem, mlflow: MlflowSubsystem, python_setup: PythonSetup
) -> ModelInputs:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="a model_package's inputs")
    )
    fs = ModelInputsFieldSet.create(wrapped.target)
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

    hydrated = []
    for alias, field in ((ModelCardField.alias, fs.model_card), (HandlerField.alias, handler_tgt[PythonSourceField]),
                         (BaseImageField.alias, base_tgt[DebianLockfileField])):
        try:  # e.g. a symlink leaving the repository: Pants' message names neither target nor field
            hydrated.append(await Get(HydratedSources, HydrateSourcesRequest(field)))
        except Exception as e:
            raise AegisBuildError(f"{context}: field `{alias}`: {str(e).strip().splitlines()[-1]}") from None
    card_src, handler_src, base_lock_src = hydrated

    # The model's files by path only, one target after the other (so that of several bad ones, the first is
    # named): their bytes are hydrated apart (`ModelFiles`), and all that paths can tell is checked here.
    weights_paths: list[str] = []
    registry_paths: set[str] = set()
    for tgt in weights_tgts:
        found = await Get(ModelFilePaths, ModelFileRequest(context, WeightsField.alias, tgt))
        weights_paths.extend(found.paths)
        registry_paths.update(found.paths if found.from_registry else ())
    tokenizer_paths = [] if tokenizer_tgt is None else list(
        (await Get(ModelFilePaths, ModelFileRequest(context, TokenizerField.alias, tokenizer_tgt))).paths
    )
    in_image = set(_weights_in_image(context, weights_paths).values())
    if tokenizer_tgt is not None and f"{MODEL_DIR}/tokenizer.json" in in_image:
        raise AegisBuildError(
            f"{context}: field `tokenizer`: the checkpoint named by `weights` has its own tokenizer.json: "
            f"drop one of them"
        )
    if f"{MODEL_DIR}/model_card.md" in in_image:
        raise AegisBuildError(
            f"{context}: field `weights`: the checkpoint has a model_card.md, which `model_card` provides: drop it"
        )
    _check_pin_count(context, fs.weights_sha256.value, len(weights_paths))

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
        files=ModelFilesRequest(context, tuple(weights_tgts), tokenizer_tgt, fs.weights_sha256.value),
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


def rules():
    return [*collect_rules(), UnionRule(InferDependenciesRequest, InferModelPackageDependencies)]
