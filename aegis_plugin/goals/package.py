"""`pants package` for `model_package`: gather the inputs, build four layers, assemble one OCI image."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pants.backend.python.target_types import PythonResolveField, PythonSourceField
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.target_types import FileSourceField
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    HydratedSources,
    HydrateSourcesRequest,
    InferDependenciesRequest,
    InferredDependencies,
    FieldSet,
    SourcesField,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule

from aegis_plugin.core.runtime import manifest as manifest_yaml
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.target_types import (
    AcceleratorField,
    BaseImageField,
    DebianLockfileField,
    DebianPythonField,
    FrameworkField,
    HandlerField,
    ImageAnnotationsField,
    ModelCardField,
    ModelIdField,
    ModelPackageOutputPathField,
    ModelVersionField,
    PlatformsField,
    RepositoryField,
    TokenizerField,
    WeightsField,
    WeightsSha256Field,
)
from aegis_plugin.util_rules.core_process import (
    AegisBuildError,
    CoreCommand,
    CoreProcess,
    CoreResult,
    core_files,
)
from aegis_plugin.util_rules.layers import (
    DebianLayerRequest,
    DepsLayerRequest,
    FilesLayerRequest,
    Layer,
    LayerFile,
)
from aegis_plugin.util_rules.source_revision import SourceRevision, SourceRevisionRequest

APP_SITE_PACKAGES = "/app/site-packages"
APP_SRC = "/app/src"


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


class InferModelPackageDependencies(InferDependenciesRequest):
    infer_from = ModelPackageReferencesFieldSet


@rule(desc="Inferring model_package dependencies")
async def infer_model_package_dependencies(request: InferModelPackageDependencies) -> InferredDependencies:
    """The weights, tokenizer, handler and base are dependencies, so `--changed-dependents` sees them."""
    fs = request.field_set
    addresses = await Get(
        Addresses,
        UnparsedAddressInputs(
            _address_fields(fs).values(),
            owning_address=fs.address,
            description_of_origin=f"the address fields of {fs.address}",
        ),
    )
    return InferredDependencies(addresses)


@rule(desc="Packaging a model")
async def package_model(
    fs: ModelPackageFieldSet, aegis: AegisSubsystem, python_setup: PythonSetup
) -> BuiltPackage:
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
    weights_tgt = targets[WeightsField.alias].target
    handler_tgt = targets[HandlerField.alias].target
    base_tgt = targets[BaseImageField.alias].target
    tokenizer_tgt = targets[TokenizerField.alias].target if TokenizerField.alias in targets else None

    def require(tgt: Target, field_type: type, alias: str, kind: str) -> None:
        if not tgt.has_field(field_type):
            raise AegisBuildError(f"{context}: field `{alias}`: {tgt.address} is not a {kind} target")

    require(weights_tgt, FileSourceField, WeightsField.alias, "`file`")
    if tokenizer_tgt is not None:
        require(tokenizer_tgt, FileSourceField, TokenizerField.alias, "`file`")
    require(handler_tgt, PythonSourceField, HandlerField.alias, "`python_source`")
    require(base_tgt, DebianLockfileField, BaseImageField.alias, "`debian_base`")
    resolve = handler_tgt[PythonResolveField].normalized_value(python_setup)
    if resolve != aegis.runtime_resolve:
        raise AegisBuildError(
            f"{context}: field `handler`: {handler_tgt.address} is in resolve {resolve!r}, but images take "
            f"third-party code from the runtime resolve {aegis.runtime_resolve!r} only"
        )

    # Sources: weights, tokenizer, model card, handler, base lockfile.
    model_sources = [(WeightsField.alias, weights_tgt[FileSourceField])]
    if tokenizer_tgt is not None:
        model_sources.append((TokenizerField.alias, tokenizer_tgt[FileSourceField]))
    hydrated = await MultiGet(
        Get(HydratedSources, HydrateSourcesRequest(field))
        for field in [
            *(f for _, f in model_sources),
            fs.model_card,
            handler_tgt[PythonSourceField],
            base_tgt[DebianLockfileField],
        ]
    )
    weights_src, *rest = hydrated
    tokenizer_src = rest.pop(0) if tokenizer_tgt is not None else None
    card_src, handler_src, base_lock_src = rest

    if fs.weights_sha256.value:
        (weights_entry,) = [
            e for e in await Get(DigestEntries, Digest, weights_src.snapshot.digest) if isinstance(e, FileEntry)
        ]
        if weights_entry.file_digest.fingerprint != fs.weights_sha256.value:
            raise AegisBuildError(
                f"{context}: field `weights_sha256`: {weights_entry.path} has sha256 "
                f"{weights_entry.file_digest.fingerprint}, expected {fs.weights_sha256.value}"
            )

    # The handler's closure: its first-party code goes to /app/src.
    transitive = await Get(TransitiveTargets, TransitiveTargetsRequest([handler_tgt.address]))
    sources = await Get(PythonSourceFiles, PythonSourceFilesRequest(transitive.closure))

    # The revision: the newest commit touching any input of this package (checked before any slow step).
    model_paths = {
        *weights_src.snapshot.files,
        *card_src.snapshot.files,
        *(tokenizer_src.snapshot.files if tokenizer_src else ()),
    }
    input_paths = {
        *model_paths,
        *base_lock_src.snapshot.files,
        *sources.source_files.files,
        python_setup.resolves[resolve],
        *(os.path.join(t.address.spec_path, "BUILD") for t in [*transitive.closure, base_tgt]),
        os.path.join(fs.address.spec_path, "BUILD"),
    }
    revision, model_revision = await MultiGet(
        Get(SourceRevision, SourceRevisionRequest(context, tuple(sorted(input_paths)), fs.address.spec_path)),
        Get(SourceRevision, SourceRevisionRequest(context, tuple(sorted(model_paths)), fs.address.spec_path)),
    )

    # The model layer is stamped with the model files' own revision, so a code-only commit leaves it as is.
    model_files = [
        LayerFile("/app/model/weights.safetensors", "field `weights`", weights_src.snapshot.digest,
                  check="safetensors"),
        LayerFile("/app/model/model_card.md", "field `model_card`", card_src.snapshot.digest),
    ]
    if tokenizer_src is not None:
        model_files.append(
            LayerFile("/app/model/tokenizer.json", "field `tokenizer`", tokenizer_src.snapshot.digest, check="json")
        )
    base_context = f"{context}: field `base_image` ({base_tgt.address})"
    model_layer, base_layer, deps_layer, stripped = await MultiGet(
        Get(Layer, FilesLayerRequest(context, "model files", tuple(model_files), model_revision.commit_time)),
        Get(Layer, DebianLayerRequest(base_context, base_lock_src.snapshot.digest, base_lock_src.snapshot.files[0])),
        Get(Layer, DepsLayerRequest(f"{context}: field `handler`", handler_tgt.address, resolve)),
        Get(StrippedPythonSourceFiles, PythonSourceFiles, sources),
    )

    # The manifest needs the framework's locked version, which the deps layer reports.
    deps_contents = await Get(
        DigestContents, DigestSubset(deps_layer.digest, PathGlobs(["out/distributions.json", "out/requirements.lock"]))
    )
    deps_files = {c.path: c.content for c in deps_contents}
    distributions = {d["name"]: d["version"] for d in json.loads(deps_files["out/distributions.json"])}
    framework = fs.framework.value
    framework_key = framework.lower().replace("_", "-")
    if framework_key not in distributions:
        raise AegisBuildError(
            f"{context}: field `framework`: {framework!r} is not among the handler's runtime dependencies "
            f"({', '.join(sorted(distributions)) or 'none'})"
        )
    manifest = manifest_yaml.render(
        {
            "model_id": fs.model_id.value,
            "version": fs.version.value,
            "git_sha": revision.git_sha,
            "framework": framework_key,
            "framework_version": distributions[framework_key],
            "accelerator": fs.accelerator.value,
            "signed_by": aegis.signer_identity,
        }
    )

    handler_path = handler_src.snapshot.files[0]
    runtime_files = core_files("runtime")
    # First-party code the handler imports goes to /app/src; the handler itself to /app/server.
    app_sources = await Get(
        Digest,
        DigestSubset(
            stripped.stripped_source_files.snapshot.digest,
            PathGlobs(["**", *(f"!{p}" for p in stripped.stripped_source_files.snapshot.files
                               if handler_path == p or handler_path.endswith(f"/{p}"))]),
        ),
    )
    app_files = [
        LayerFile("/app/server/handler.py", "field `handler`", handler_src.snapshot.digest),
        LayerFile("/app/manifest.yaml", "manifest", text=manifest.decode()),
        LayerFile("/app/requirements.lock", "runtime lock", text=deps_files["out/requirements.lock"].decode()),
        *(
            LayerFile(
                "/app/server/healthcheck.py" if f.path.endswith("/healthcheck.py") else
                "/app/aegis_runtime/" + f.path.split("/runtime/", 1)[1],
                "aegis runtime",
                text=f.content.decode(),
            )
            for f in runtime_files
        ),
        LayerFile(f"{APP_SRC}/", "the handler's first-party dependencies", app_sources),
    ]
    app_layer = await Get(Layer, FilesLayerRequest(context, "app", tuple(app_files), revision.commit_time))

    python = base_tgt[DebianPythonField].value
    repository = fs.repository.value or f"aegis/{fs.model_id.value}"
    annotations = {
        **(fs.annotations.value or {}),
        "org.opencontainers.image.title": fs.model_id.value,
        "org.opencontainers.image.version": fs.version.value,
        "org.opencontainers.image.revision": revision.git_sha,
        **({"org.opencontainers.image.source": aegis.source_url} if aegis.source_url else {}),
    }
    spec = {
        "layers": ["base/out", "deps/out", "model/out", "app/out"],
        "architecture": "amd64",
        "os": "linux",
        "created": revision.commit_time,
        "user": "65532:65532",
        "env": [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            f"PYTHONPATH={APP_SITE_PACKAGES}:{APP_SRC}:/app",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "AEGIS_APP_DIR=/app",
            "AEGIS_PORT=8080",
        ],
        "entrypoint": [python, "-m", "aegis_runtime.server"],
        "working_dir": "/app",
        "labels": annotations,
        "annotations": annotations,
        "ref_name": fs.version.value,
        "repo_tags": [f"{repository}:{fs.version.value}"],
    }
    layer_inputs = await MultiGet(
        Get(Digest, AddPrefix(layer.digest, name))
        for name, layer in [("base", base_layer), ("deps", deps_layer), ("model", model_layer), ("app", app_layer)]
    )
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("image-spec.json", json.dumps(spec, sort_keys=True).encode())])
    )
    image = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.IMAGE,
            ("--spec", "image-spec.json"),
            await Get(Digest, MergeDigests([spec_digest, *layer_inputs])),
            description=f"Assembling the image of {context}",
            error_context=context,
        ),
    )
    output_path = fs.output_path.value_or_default(file_ending=None)
    out = await Get(Digest, RemovePrefix(image.output_digest, "out"))
    summary_contents = await Get(DigestContents, DigestSubset(out, PathGlobs(["image.json"])))
    summary = json.loads(summary_contents[0].content)
    dist = await Get(Digest, AddPrefix(out, output_path))
    return BuiltPackage(
        dist,
        (
            BuiltPackageArtifact(
                f"{output_path}/image.tar",
                extra_log_lines=(
                    f"    manifest digest: {summary['manifest_digest']}",
                    f"    tag: {summary['repo_tags'][0]} (OCI layout in {output_path}/oci)",
                    f"    revision: {revision.git_sha}",
                ),
            ),
        ),
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, ModelPackageFieldSet),
        UnionRule(InferDependenciesRequest, InferModelPackageDependencies),
    ]
