"""The `model_package`, `mlflow_artifacts`, `debian_base` and `osv_database` targets: fields only, each with help
text."""
from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Any, Dict, Iterable, Optional, Tuple

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    Dependencies,
    DictStringToStringField,
    Field,
    FloatField,
    InvalidFieldException,
    MultipleSourcesField,
    OptionalSingleSourceField,
    SecondaryOwnerMixin,
    SingleSourceField,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

from aegis_plugin.core import build_fields
from aegis_plugin.core.mlflow import uri as mlflow_uri
from aegis_plugin.core.guards.defaults import SEVERITIES

DEFAULT_BASE_IMAGE = "//3rdparty/debian:python3.11-bookworm"
SUPPORTED_PLATFORMS = ("linux/amd64", "linux/arm64")


def _invalid(field_alias: str, address: Address, why: str) -> InvalidFieldException:
    return InvalidFieldException(f"{address}: field `{field_alias}`: {why}")


class _CheckedStringField(StringField):
    """A string field whose value `problem()` checks when the BUILD file is parsed."""

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        raise NotImplementedError

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None:
            problem = cls.problem(value)
            if problem:
                raise _invalid(cls.alias, address, problem)
        return value


class ModelIdField(_CheckedStringField):
    alias = "model_id"
    required = True
    help = help_text(
        """
        The model's stable identifier, e.g. `fraud-detector`: lowercase letters and digits, separated by
        one `.`, `_` or `__`, or by dashes (one OCI repository path component), at most 128 characters.
        It names the model in `/app/manifest.yaml`, the inference API and the SBOM, and the image's default
        repository, `aegis/<model_id>`.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        if not build_fields.is_model_id(value):
            return (
                f"{value!r} is not a valid model id: lowercase letters and digits separated by `.`, `_`, `__` or "
                f"dashes, at most {build_fields.MAX_MODEL_ID_LENGTH} characters (it names the repository "
                "`aegis/<model_id>`)"
            )
        return None


class ModelVersionField(_CheckedStringField):
    alias = "version"
    required = True
    help = help_text(
        """
        The model's version, a semantic version (`1.4.0`, `2.0.0-rc.1`). It becomes, unchanged, the image's
        immutable tag and its `org.opencontainers.image.version` annotation; `latest` is never accepted.
        Build metadata (`1.0.0+build.5`) is refused: an OCI tag cannot hold `+`, and semver ignores build
        metadata when comparing versions, so `1.0.0+a` and `1.0.0+b` would be two immutable tags of one
        version. The image records its git revision already (`org.opencontainers.image.revision`).
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return build_fields.check_version(value)


class WeightsField(StringField, AsyncFieldMixin):
    alias = "weights"
    required = True
    help = help_text(
        """
        Address of the model's weights in safetensors format: a `file` target (e.g. `:weights`), shipped as
        `/app/model/weights.safetensors`; or a `files` target holding a sharded Hugging Face checkpoint
        (`model-0000k-of-0000n.safetensors` shards, `model.safetensors.index.json`, and optionally
        `config.json`, `generation_config.json` and tokenizer files), shipped under `/app/model/` with
        their own names. Files may be in the repository or downloaded with `http_source(url=..., sha256=...,
        len=...)`; or an `mlflow_artifacts` target: files of an MLflow run or registered model version,
        each pinned by sha256, shipped under `/app/model/` by name. Every weights file is an uncompressed
        layer of its own, so retraining that changes one shard re-ships one shard; every shard's header is
        validated and the index must agree with the shards.
        """
    )


class WeightsSha256Field(_CheckedStringField):
    alias = "weights_sha256"
    help = help_text(
        """
        The sha256 (64 hex digits) the weights must have, when `weights` is one file. Optional for weights
        committed to the repository (git pins them), but recommended: a mismatch stops the build instead
        of shipping other weights. (A sharded checkpoint's files are pinned by `http_source` or git.)
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        if not build_fields.is_sha256_digest(f"sha256:{value}"):
            return f"{value!r} is not 64 lowercase hex digits"
        return None


class TokenizerField(StringField, AsyncFieldMixin):
    alias = "tokenizer"
    help = help_text(
        """
        Address of an optional `file` target with the model's `tokenizer.json`; shipped as
        `/app/model/tokenizer.json`.
        """
    )


# A target has one primary `SourcesField` for Pants' file ownership; the card and the examples are both
# files of the model_package, so both are (also) secondary owners: `--changed-since` sees an edit to either.
class ModelCardField(SingleSourceField, SecondaryOwnerMixin):
    alias = "model_card"
    required = True
    expected_file_extensions = (".md",)
    help = help_text(
        """
        The model card (Markdown), relative to this BUILD file, e.g. `model_card.md`. Required: a model
        without a card does not ship. Shipped as `/app/model/model_card.md`.
        """
    )


class ModelExamplesField(OptionalSingleSourceField, SecondaryOwnerMixin):
    alias = "examples"
    expected_file_extensions = (".json",)
    help = help_text(
        """
        Example requests with their expected outputs (JSON: `[{"inputs": {name: data}, "outputs": {name:
        data}}]`), relative to this BUILD file. `pants test` sends each through the built image and
        compares the answers; floats match within 1e-3.
        """
    )


class HandlerField(StringField, AsyncFieldMixin):
    alias = "handler"
    required = True
    help = help_text(
        """
        Address of the `python_source` with the model author's serving code, e.g. `./server/handler.py`.
        It defines `SIGNATURE` and a `Handler(model_dir)` class with `predict(inputs)`. It is shipped as
        `/app/server/handler.py`; its first-party imports go to `/app/src` and its third-party imports,
        from the runtime resolve, to `/app/site-packages` (the image carries nothing else).
        """
    )


class FrameworkField(StringField):
    alias = "framework"
    required = True
    help = help_text(
        """
        The Python distribution that implements the model (e.g. `numpy`, `torch`, `onnxruntime`). It must be
        one of the handler's runtime dependencies; `/app/manifest.yaml` records it with its locked version.
        """
    )


class AcceleratorField(_CheckedStringField):
    alias = "accelerator"
    default = "cpu"
    help = help_text(
        """
        What the model runs on: `cpu`, or `cuda-MAJOR.MINOR` (e.g. `cuda-12.4`). Declared, never guessed:
        a CUDA image that finds no GPU reports not-ready instead of falling back to the CPU.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        if not build_fields.is_accelerator(value):
            return f"{value!r} is not `cpu` or `cuda-MAJOR.MINOR` (e.g. `cuda-12.4`)"
        return None


class BaseImageField(_CheckedStringField):
    alias = "base_image"
    default = DEFAULT_BASE_IMAGE
    help = help_text(
        f"""
        The image the model runs on: the address of a `debian_base` target (default `{DEFAULT_BASE_IMAGE}`,
        a minimal Python runtime built from hash-pinned Debian packages). References to registry images must
        be pinned by digest (`name@sha256:...`); tags, `latest` included, are refused.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        if value.startswith("//") or value.startswith(":"):
            return None
        return build_fields.check_pinned_reference(value) or (
            f"{value!r}: registry base images are not supported yet; use a `debian_base` target address"
        )


class PlatformsField(StringSequenceField):
    alias = "platforms"
    default = SUPPORTED_PLATFORMS[:1]
    help = help_text(
        f"""
        The OS/architecture pairs to build, as `os/arch`, of {', '.join(SUPPORTED_PLATFORMS)}. Each platform's
        image has that platform's Debian packages and wheels, whatever machine builds it (no emulation at build
        time); with several, the OCI layout tags one image index over them, and the model's layers are the
        same blobs in each. The contract test runs each platform's image, another architecture than the
        machine's under qemu user-mode emulation (`qemu-user-static`). `publish` pushes the index, and signs
        and attests it and each platform's image, each with its own SBOM.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Iterable[str]], address: Address) -> Tuple[str, ...]:
        value = super().compute_value(raw_value, address)
        unsupported = [p for p in value if p not in SUPPORTED_PLATFORMS]
        if unsupported or not value:
            raise _invalid(
                cls.alias,
                address,
                f"unsupported platform(s) {unsupported or '(none given)'}; supported: {list(SUPPORTED_PLATFORMS)}",
            )
        if len(set(value)) != len(value):
            raise _invalid(cls.alias, address, f"{list(value)} names a platform twice")
        return value


LAYER_COMPRESSIONS = ("gzip", "zstd")


class LayerCompressionField(_CheckedStringField):
    alias = "layer_compression"
    default = "gzip"
    help = help_text(
        """
        How the image's compressible layers (the base, the dependencies, the model's small files, the app and
        the SBOM) are compressed: `gzip`, which every registry and runtime reads, or `zstd`, which compresses
        ~5x faster and ~20% smaller (the PyTorch demo: an image of 2,328 MB against gzip's 2,981 MB, its
        dependencies layer step 77 s against 123 s), for runtimes that read OCI zstd layers: containerd 1.5+,
        CRI-O, podman, skopeo; umoci 0.4.7 (Debian 12) cannot unpack them. Weights layers are plain tars either
        way.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return None if value in LAYER_COMPRESSIONS else f"{value!r} is not one of {', '.join(LAYER_COMPRESSIONS)}"


class RepositoryField(_CheckedStringField):
    alias = "repository"
    help = help_text(
        """
        The image repository, without tag or digest, e.g. `registry.example.com/ml/fraud`. Defaults to
        `aegis/<model_id>`. Images are tagged `<repository>:<version>`; `latest` is never used. An optional
        registry host (`host[:port]`), then path components of lowercase letters and digits separated by `.`,
        `_`, `__` or dashes; at most 255 characters in all (a name without host is counted with the
        `docker.io/` or `docker.io/library/` that `docker load` puts in front of it).
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return build_fields.check_repository(value)

    def image_repository(self, model_id: str) -> str:
        """The repository the image is tagged in: this field, else `aegis/<model_id>` (the one default)."""
        return self.value or f"aegis/{model_id}"


class ImageAnnotationsField(DictStringToStringField):
    alias = "annotations"
    help = help_text(
        f"""
        Extra OCI annotations for the image manifest and config, e.g.
        `{{"org.opencontainers.image.vendor": "Acme"}}`: at most {build_fields.MAX_ANNOTATIONS}, keys of letters,
        digits, `.`, `_`, `-` and `/` up to {build_fields.MAX_ANNOTATION_KEY_LENGTH} characters, values up to
        {build_fields.MAX_ANNOTATION_VALUE_BYTES} bytes, {build_fields.MAX_ANNOTATIONS_BYTES} bytes in all. Keys Aegis
        sets itself are refused: `org.opencontainers.image.{{ref.name,title,version,revision,source,created}}`
        and `io.containerd.*` (tools read the image's name and tag from these).
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Dict[str, str]], address: Address
    ) -> Optional[FrozenDict[str, str]]:
        value = super().compute_value(raw_value, address)
        problem = build_fields.check_annotations(value) if value else None
        if problem:
            raise _invalid(cls.alias, address, problem)
        return value


class VexField(MultipleSourcesField, SecondaryOwnerMixin):
    alias = "vex"
    expected_file_extensions = (".json",)
    help = help_text(
        """
        VEX documents (OpenVEX or CycloneDX VEX JSON), relative to this BUILD file, that accept vulnerability
        findings of this image: each statement must name the vulnerability, the product (the package's purl)
        and a justification, and may expire (OpenVEX `expires`, CycloneDX property `aegis:expires`). Added to
        `[aegis-guards].vex`.
        """
    )


class SizeBudgetField(FloatField):
    alias = "size_budget"
    help = help_text(
        """
        The largest compressed image size allowed, in MB (10^6 bytes), e.g. `60`. Over it, `package` fails
        and `lint` lists the size of each layer and the largest files. No budget when unset.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[float], address: Address) -> Optional[float]:
        if isinstance(raw_value, int) and not isinstance(raw_value, bool):
            raw_value = float(raw_value)  # `size_budget=60` reads as naturally as `60.0`
        value = super().compute_value(raw_value, address)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise _invalid(cls.alias, address, f"{value!r} is not a positive, finite size in MB (e.g. `60`)")
        return value


class FailOnSeverityField(_CheckedStringField):
    alias = "fail_on_severity"
    help = help_text(
        f"""
        The lowest vulnerability severity ({', '.join(SEVERITIES)}) that fails `lint` for this image;
        defaults to `[aegis-guards].fail_at`.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return None if value in SEVERITIES else f"{value!r} is not one of {', '.join(SEVERITIES)}"


def _datasets_help(role: str) -> str:
    return help_text(
        f"""
        Addresses of `file` or `files` targets holding the model's {role} data, for its lineage: each file
        becomes a CycloneDX `data` component of the ML-BOM, with its sha256 and size, referenced from the
        model card's `modelParameters.datasets` and an input of the training run. A file given as
        `http_source(url=..., sha256=..., len=...)` is recorded by its URL and pins and never downloaded by
        the build. The model card's "{role.capitalize()} data" section describes them.
        """
    )


class TrainingDataField(StringSequenceField, AsyncFieldMixin):
    alias = "training_data"
    help = _datasets_help("training")


class EvaluationDataField(StringSequenceField, AsyncFieldMixin):
    alias = "evaluation_data"
    help = _datasets_help("evaluation")


class BaseModelField(_CheckedStringField):
    alias = "base_model"
    help = help_text(
        """
        The model this one was fine-tuned from, as a package URL pinned to an exact version, e.g.
        `pkg:huggingface/google-bert/bert-base-uncased@86b5e0934494bd15c9632b12f734a8a67f723594` (a Hugging
        Face commit) or `pkg:generic/acme-encoder@2.1.0`. Recorded as the model component's
        `pedigree.ancestors` in the ML-BOM. A floating version (`latest`, `main`, `master`, `HEAD`) is refused.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        match = _PURL.fullmatch(value)
        if not match:
            return f"expected a package URL with a version (pkg:TYPE/NAME@VERSION), got {value!r}"
        if match.group("version").lower() in _FLOATING_VERSIONS:
            return f"{match.group('version')!r} is a floating version, not a pin: name a commit or release"
        return None


_PURL = re.compile(r"pkg:[a-z][a-z0-9.+-]*/[^@?#\s]+@(?P<version>[^@?#\s/]+)(?:\?[^#\s]*)?(?:#\S*)?")
_FLOATING_VERSIONS = ("latest", "main", "master", "head", "stable")


class TrainingScriptField(_CheckedStringField):
    alias = "training_script"
    help = help_text(
        """
        The script that trained the model, relative to this BUILD file (e.g. `train.py`). Recorded in the
        ML-BOM as the training run (CycloneDX `formulation`: the script's path and sha256 at the image's
        source revision, the datasets as its inputs, the model as its output); an edit to it is an input
        change of the package.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or not value.strip() or value != value.strip():
            return f"expected a path relative to the BUILD file, inside the repository, got {value!r}"
        return None


class ModelPackageOutputPathField(OutputPathField):
    help = help_text(
        """
        Where under `dist/` the image is written. Defaults to the target's path followed by its name,
        e.g. `models/fraud/fraud`, holding `oci/` (an OCI image layout), `image.json` (digests and sizes),
        the SBOMs, and `image.tar` (for `docker load`) when `[aegis].docker_archive` is set. A relative
        path without `..`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value:
            path = PurePosixPath(value)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise _invalid(cls.alias, address, f"{value!r} must be a relative path under `dist/`, without `..`")
        return value

    def value_or_default(self, *, file_ending: Optional[str] = None) -> str:
        return self.value or f"{self.address.spec_path}/{self.address.target_name}"


class ModelPackageDependenciesField(Dependencies):
    help = help_text(
        """
        Extra dependencies. The weights, tokenizer and handler fields are dependencies already; list here
        only what those do not reach.
        """
    )


class ModelPackageTarget(Target):
    alias = "model_package"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ModelIdField,
        ModelVersionField,
        WeightsField,
        WeightsSha256Field,
        TokenizerField,
        ModelCardField,
        ModelExamplesField,
        HandlerField,
        FrameworkField,
        AcceleratorField,
        BaseImageField,
        PlatformsField,
        LayerCompressionField,
        RepositoryField,
        ImageAnnotationsField,
        VexField,
        SizeBudgetField,
        FailOnSeverityField,
        TrainingDataField,
        EvaluationDataField,
        BaseModelField,
        TrainingScriptField,
        ModelPackageOutputPathField,
        ModelPackageDependenciesField,
    )
    help = help_text(
        """
        A trained model packaged as a reproducible OCI image: `pants package` writes an OCI layout whose
        layers are the base OS and Python, the runtime dependencies, one uncompressed layer per weights file,
        the model's small files, the serving app and the SPDX SBOM, in that order, so a code edit never
        re-ships (or re-reads) the weights.
        """
    )


class DebianLockfileField(SingleSourceField):
    alias = "lockfile"
    required = True
    expected_file_extensions = (".lock",)
    help = help_text(
        """
        The Debian package lock (name, version, architecture, sha256, size and archive path of each package),
        written by `build-support/lock_debian.py`. It names no mirror: packages are fetched from the mirror
        configured by `[aegis].debian_mirrors` or, by default, the machine's apt sources, and verified.
        """
    )


class DebianPythonField(StringField):
    alias = "python"
    default = "/usr/bin/python3.11"
    help = "The Python interpreter inside the image that runs the server."


class DebianBaseTarget(Target):
    alias = "debian_base"
    core_fields = (*COMMON_TARGET_FIELDS, DebianLockfileField, DebianPythonField)
    help = help_text(
        """
        A minimal base image built from hash-pinned Debian packages: their files in one layer, plus the
        `/var/lib/dpkg/status.d` records scanners read, a non-root user 65532 and a writable `/tmp`.
        """
    )


class OsvDatabaseSourceField(SingleSourceField):
    alias = "source"
    required = True
    expected_file_extensions = (".json", ".zip", ".gz", ".tgz")  # Pants checks the last suffix: `.tar.gz` is `.gz`
    help = help_text(
        """
        The vulnerability database: OSV records (https://ossf.github.io/osv-schema/) as an archive (`.zip`,
        `.tar.gz`) of `.json`/`.yaml` records, such as an OSV ecosystem export, or one `.json` file holding a
        record or a list of them. Relative to this BUILD file.
        """
    )


class OsvDatabaseSha256Field(_CheckedStringField):
    alias = "sha256"
    required = True
    help = help_text(
        """
        The SHA-256 (hex) of `source`. The database is a pinned build input: the same database always gives
        the same findings, and updating it is a reviewed change of this field.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return None if build_fields.is_sha256_digest(f"sha256:{value}") else f"{value!r} is not a hex SHA-256"


class OsvDatabaseTarget(Target):
    alias = "osv_database"
    core_fields = (*COMMON_TARGET_FIELDS, OsvDatabaseSourceField, OsvDatabaseSha256Field)
    help = help_text(
        """
        A vulnerability database in OSV format, pinned by its sha256, that `pants lint` scans `model_package`
        images against (`[aegis-guards].database`).
        """
    )


class MlflowSourceField(_CheckedStringField):
    alias = "source"
    required = True
    help = help_text(
        """
        The MLflow model URI the files come from: a run's artifact path (`runs:/<run_id>/<path>`) or a
        registered model version (`models:/<name>/<version>`). Aliases (`models:/<name>@champion`), stages
        (`Production`) and `latest` are refused: they move. `build-support/mlflow-pin.sh URI` resolves any of
        them (an alias once) and prints this whole target, pinned.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        try:
            mlflow_uri.parse(value)
        except mlflow_uri.ModelUriError as e:
            return str(e)
        return None


class MlflowRunIdField(_CheckedStringField):
    alias = "run_id"
    required = True
    help = help_text(
        """
        The run that logged the files (32 hex digits): for `models:/` the run of that version, as the pin
        helper found it; for `runs:/` the run of the URI.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return None if mlflow_uri.RUN_ID.fullmatch(value) else f"{value!r} is not 32 lowercase hex digits"


class MlflowArtifactPathField(_CheckedStringField):
    alias = "artifact_path"
    required = True
    help = "The directory of the run's artifacts that holds the files (e.g. `model`); `files` are relative to it."

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        try:
            normalised = mlflow_uri.artifact_path(value)
        except mlflow_uri.ModelUriError as e:
            return str(e)
        return None if normalised == value else f"write it as {normalised!r}"


class MlflowFilesField(Field):
    alias = "files"
    required = True
    value: FrozenDict[str, Tuple[str, int]]
    help = help_text(
        """
        Every file the build takes, relative to `artifact_path`, with its sha256 and size in bytes:
        `{"weights.safetensors": ["<sha256>", 2147483648], "tokenizer.json": ["<sha256>", 1]}`. The download
        is verified against them (a mismatch names both digests), and they are the download's only cache
        key besides the run: neither the server's URL nor its credentials are.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Any], address: Address) -> FrozenDict[str, Tuple[str, int]]:
        value = super().compute_value(raw_value, address)
        example = 'e.g. {"weights.safetensors": ["<64 hex digits>", 1024]}'
        if not isinstance(value, dict) or not value:
            raise _invalid(cls.alias, address, f"expected a dict of file name -> [sha256, size], {example}")
        files = {}
        for name, pin in value.items():
            if not isinstance(name, str) or not isinstance(pin, (list, tuple)) or len(pin) != 2:
                raise _invalid(cls.alias, address, f"{name!r}: expected [sha256, size], {example}")
            sha256, size = pin
            try:
                relative = mlflow_uri.artifact_path(name, "file name")
            except mlflow_uri.ModelUriError as e:
                raise _invalid(cls.alias, address, str(e))
            if relative != name:
                raise _invalid(cls.alias, address, f"write {name!r} as {relative!r}")
            if not isinstance(sha256, str) or not build_fields.is_sha256_digest(f"sha256:{sha256}"):
                raise _invalid(cls.alias, address, f"{name!r}: {sha256!r} is not 64 lowercase hex digits")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _invalid(cls.alias, address, f"{name!r}: the size {size!r} is not a whole number of bytes")
            files[name] = (sha256, size)
        return FrozenDict(sorted(files.items()))


class MlflowExperimentField(StringField):
    alias = "experiment"
    help = "The run's experiment, recorded in the image's provenance (manifest, SBOM, SLSA)."


class MlflowGitCommitField(_CheckedStringField):
    alias = "git_commit"
    help = help_text(
        """
        The training code's commit, as the run recorded it (`mlflow.source.git.commit`); recorded in the
        image's provenance. Empty when the run recorded none.
        """
    )

    @classmethod
    def problem(cls, value: str) -> Optional[str]:
        return None if not value or build_fields.is_git_sha(value) else f"{value!r} is not a 40-digit git commit"


class MlflowParamsField(DictStringToStringField):
    alias = "params"
    help = "The run's parameters, as the pin helper read them; recorded in the image's provenance."


class MlflowMetricsField(Field):
    alias = "metrics"
    value: FrozenDict[str, float]
    default: FrozenDict[str, float] = FrozenDict()
    help = help_text(
        """
        The run's metrics (their latest values), as the pin helper read them; recorded in the image's
        provenance and as the model card's quantitative analysis in the CycloneDX SBOM.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Any], address: Address) -> FrozenDict[str, float]:
        value = super().compute_value(raw_value, address)
        if not value:
            return FrozenDict()
        if not isinstance(value, (dict, FrozenDict)) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in value.items()
        ):
            raise _invalid(cls.alias, address, "expected a dict of metric name -> finite number")
        return FrozenDict(sorted((k, float(v)) for k, v in value.items()))


class MlflowArtifactsTarget(Target):
    alias = "mlflow_artifacts"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        MlflowSourceField,
        MlflowRunIdField,
        MlflowArtifactPathField,
        MlflowFilesField,
        MlflowExperimentField,
        MlflowGitCommitField,
        MlflowParamsField,
        MlflowMetricsField,
    )
    help = help_text(
        """
        Model files from an MLflow tracking server, pinned like a lockfile entry: a run or registered model
        version, and the sha256 and size of every file. `model_package(weights=...)` takes it. `package`
        downloads the files once (from `MLFLOW_TRACKING_URI` or `[aegis-mlflow].tracking_uri`, with MLflow's
        credential variables) in a step keyed by the pins alone, so the remote cache serves them to other
        machines with the server down. Write it with `build-support/mlflow-pin.sh URI`.
        """
    )

    def validate(self) -> None:
        source = mlflow_uri.parse(self[MlflowSourceField].value or "")
        if source.run_id is None:
            return
        for field_type, expected in ((MlflowRunIdField, source.run_id), (MlflowArtifactPathField, source.path)):
            if self[field_type].value != expected:
                raise _invalid(
                    field_type.alias, self.address,
                    f"{self[field_type].value!r} differs from the `source` URI's {expected!r}",
                )
