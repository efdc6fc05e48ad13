"""The `model_package` fields refuse, when the BUILD file is read, what would otherwise fail only after every layer
is built (or never): each with one line naming the target and the field."""
from __future__ import annotations

from typing import Any, Type

import pytest

from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import Field, InvalidFieldException
from pants.testutil.rule_runner import RuleRunner

from aegis_plugin.target_types import (
    ImageAnnotationsField,
    LayerCompressionField,
    MlflowArtifactPathField,
    MlflowArtifactsTarget,
    MlflowFilesField,
    MlflowGitCommitField,
    MlflowMetricsField,
    MlflowRunIdField,
    MlflowSourceField,
    ModelIdField,
    ModelPackageOutputPathField,
    ModelPackageTarget,
    ModelVersionField,
    RepositoryField,
    SizeBudgetField,
)

ADDRESS = Address("m", target_name="m")
GRAMMAR = "must be lowercase letters and digits separated by `.`, `_`, `__` or dashes"


def error(field: Type[Field], raw: Any) -> str:
    with pytest.raises(InvalidFieldException) as e:
        field.compute_value(raw, ADDRESS)
    return str(e.value)


@pytest.mark.parametrize(
    "field,raw,message",
    [
        # Finding 5: a tag or a repository the image step could not write.
        (
            ModelVersionField,
            "1.0.0-rc.1+build",
            "m:m: field `version`: '1.0.0-rc.1+build' has build metadata (`+build`), which an image tag cannot "
            "carry: write '1.0.0-rc.1' (the image records its git revision already)",
        ),
        (
            ModelVersionField,
            "1.0.0-" + "a" * 130,
            f"m:m: field `version`: '1.0.0-{'a' * 130}' is 136 characters long; it is the image's tag, at most 128",
        ),
        (
            ModelVersionField,
            "1.0.0\n",
            "m:m: field `version`: '1.0.0\\n' is not a semantic version (MAJOR.MINOR.PATCH, e.g. `1.0.0`)",
        ),
        (
            ModelIdField,
            "fraud..x-",
            "m:m: field `model_id`: 'fraud..x-' is not a valid model id: lowercase letters and digits separated "
            "by `.`, `_`, `__` or dashes, at most 128 characters (it names the repository `aegis/<model_id>`)",
        ),
        (
            ModelIdField,
            "fraud_-x",
            "m:m: field `model_id`: 'fraud_-x' is not a valid model id: lowercase letters and digits separated "
            "by `.`, `_`, `__` or dashes, at most 128 characters (it names the repository `aegis/<model_id>`)",
        ),
        (
            RepositoryField,
            "registry.example.com/ml/fraud..x-",
            f"m:m: field `repository`: 'registry.example.com/ml/fraud..x-' is not a valid repository name: "
            f"'fraud..x-' {GRAMMAR}",
        ),
        (
            RepositoryField,
            "ml//fraud",
            f"m:m: field `repository`: 'ml//fraud' is not a valid repository name: '' {GRAMMAR}",
        ),
        (
            RepositoryField,
            "-registry.example.com/ml/fraud",
            "m:m: field `repository`: '-registry.example.com/ml/fraud' is not a valid repository name: "
            "'-registry.example.com' is not a `host[:port]`",
        ),
        (
            RepositoryField,
            "registry.example.com/" + "a" * 240,
            f"m:m: field `repository`: 'registry.example.com/{'a' * 39}'… is not a valid repository name: "
            "261 characters long, at most 255",
        ),
        (
            RepositoryField,
            "ml/" + "a" * 243,
            f"m:m: field `repository`: 'ml/{'a' * 57}'… is not a valid repository name: 256 characters long "
            "(with the `docker.io/` that a name without registry host gets), at most 255",
        ),
        # Finding 9: annotations without limits, and keys that re-tag the image.
        (
            ImageAnnotationsField,
            {"org.opencontainers.image.ref.name": "latest"},
            "m:m: field `annotations`: 'org.opencontainers.image.ref.name' is set by Aegis from `version` "
            "(it is the tag); remove it",
        ),
        (
            ImageAnnotationsField,
            {"io.containerd.image.name": "docker.io/aegis/x:latest"},
            "m:m: field `annotations`: 'io.containerd.image.name' is set by Aegis from `repository` and "
            "`version` (the image's name and tag); remove it",
        ),
        (
            ImageAnnotationsField,
            {"org.opencontainers.image.created": "2020-01-01T00:00:00Z"},
            "m:m: field `annotations`: 'org.opencontainers.image.created' is set by Aegis from the source "
            "revision's commit time; remove it",
        ),
        (
            ImageAnnotationsField,
            {"com.example.notes": "x" * 20_000_000},
            "m:m: field `annotations`: the value of 'com.example.notes' is 20000000 bytes, at most 4096",
        ),
        (
            ImageAnnotationsField,
            {"com.example.é": "x"},
            "m:m: field `annotations`: 'com.example.é' is not an annotation key: letters, digits, `.`, `_`, `-` "
            "and `/`, at most 128 characters, e.g. `com.example.team`",
        ),
        (
            ImageAnnotationsField,
            {f"com.example.k{i}": "" for i in range(65)},
            "m:m: field `annotations`: 65 annotations, at most 64",
        ),
        (
            ImageAnnotationsField,
            {f"com.example.k{i:02}": "x" * 4096 for i in range(16)},
            "m:m: field `annotations`: the annotations' keys and values are 65776 bytes, at most 65536 in all",
        ),
        # Finding 10: found only after the build, or never.
        (
            ModelPackageOutputPathField,
            "/tmp/out",
            "m:m: field `output_path`: '/tmp/out' must be a relative path under `dist/`, without `..`",
        ),
        (
            ModelPackageOutputPathField,
            "models/../../out",
            "m:m: field `output_path`: 'models/../../out' must be a relative path under `dist/`, without `..`",
        ),
        (
            ModelPackageOutputPathField,
            ".",
            "m:m: field `output_path`: '.' must be a relative path under `dist/`, without `..`",
        ),
        (SizeBudgetField, float("nan"), "m:m: field `size_budget`: nan is not a positive, finite size in MB (e.g. `60`)"),
        (SizeBudgetField, float("inf"), "m:m: field `size_budget`: inf is not a positive, finite size in MB (e.g. `60`)"),
        (SizeBudgetField, -5, "m:m: field `size_budget`: -5.0 is not a positive, finite size in MB (e.g. `60`)"),
        (SizeBudgetField, 0.0, "m:m: field `size_budget`: 0.0 is not a positive, finite size in MB (e.g. `60`)"),
        (LayerCompressionField, "xz", "m:m: field `layer_compression`: 'xz' is not one of gzip, zstd"),
    ],
)
def test_refused_with_one_line(field: Type[Field], raw: Any, message: str) -> None:
    assert error(field, raw) == message


@pytest.mark.parametrize(
    "field,raw",
    [
        (ModelVersionField, "2.0.0-rc.1"),
        (ModelIdField, "fraud-detector"),
        (ModelIdField, "fraud__v2.x--y"),
        (RepositoryField, "registry.example.com:5000/ml/fraud"),
        (RepositoryField, "localhost/fraud"),
        (ImageAnnotationsField, {"org.opencontainers.image.vendor": "Acme", "com.example/team": "ml"}),
        (ModelPackageOutputPathField, "images/fraud"),
        (SizeBudgetField, 60),
        (LayerCompressionField, "zstd"),
    ],
)
def test_accepted(field: Type[Field], raw: Any) -> None:
    assert field.compute_value(raw, ADDRESS) is not None


def test_errors_come_when_the_build_file_is_read() -> None:
    """`float("nan")` in a BUILD file: refused by `pants` reading the target, not by a step of `package`."""
    rule_runner = RuleRunner(target_types=[ModelPackageTarget])
    rule_runner.write_files(
        {
            "m/BUILD": (
                'model_package(name="m", model_id="demo", version="1.0.0", weights=":w", model_card="card.md", '
                'handler="h.py", framework="numpy", size_budget=float("nan"))\n'
            ),
            "m/card.md": "# card\n",
        }
    )
    with pytest.raises(ExecutionError) as e:
        rule_runner.get_target(ADDRESS)
    assert "m:m: field `size_budget`: nan is not a positive, finite size in MB (e.g. `60`)" in str(e.value)


RUN = "7211af93442a47abba7694e4e7920b6d"


@pytest.mark.parametrize(
    "field,raw,says",
    [
        (MlflowSourceField, "models:/fraud@champion", "is an alias, which moves"),
        (MlflowSourceField, "models:/fraud/Production", "names a stage"),
        (MlflowSourceField, "models:/fraud/latest", "names a stage"),
        (MlflowRunIdField, "run-1", "'run-1' is not 32 lowercase hex digits"),
        (MlflowArtifactPathField, "model/../x", "without `..`"),
        (MlflowArtifactPathField, "/model/", "write it as 'model'"),
        (MlflowFilesField, {}, "expected a dict of file name -> [sha256, size]"),
        (MlflowFilesField, {"w.safetensors": "a" * 64}, "'w.safetensors': expected [sha256, size]"),
        (MlflowFilesField, {"w.safetensors": ["A" * 64, 1]}, "is not 64 lowercase hex digits"),
        (MlflowFilesField, {"w.safetensors": ["a" * 64, -1]}, "the size -1 is not a whole number of bytes"),
        (MlflowFilesField, {"../w": ["a" * 64, 1]}, "without `..`"),
        (MlflowGitCommitField, "main", "'main' is not a 40-digit git commit"),
        (MlflowMetricsField, {"auc": "high"}, "expected a dict of metric name -> finite number"),
        (MlflowMetricsField, {"auc": float("inf")}, "expected a dict of metric name -> finite number"),
    ],
)
def test_mlflow_fields_refuse_floating_or_malformed_pins(field: Type[Field], raw: Any, says: str) -> None:
    message = error(field, raw)
    assert message.startswith(f"m:m: field `{field.alias}`: ") and says in message, message


def test_mlflow_pins_normalise() -> None:
    files = MlflowFilesField.compute_value({"w.safetensors": ["a" * 64, 3], "t.json": ["b" * 64, 0]}, ADDRESS)
    assert list(files.items()) == [("t.json", ("b" * 64, 0)), ("w.safetensors", ("a" * 64, 3))]
    assert dict(MlflowMetricsField.compute_value({"auc": 1, "f1": 0.5}, ADDRESS)) == {"auc": 1.0, "f1": 0.5}


def test_a_runs_uri_must_agree_with_run_id_and_artifact_path() -> None:
    rule_runner = RuleRunner(target_types=[MlflowArtifactsTarget])
    rule_runner.write_files(
        {
            "m/BUILD": (
                f'mlflow_artifacts(name="m", source="runs:/{RUN}/model", run_id="{"f" * 32}", '
                'artifact_path="model", files={"w.safetensors": ["' + "a" * 64 + '", 3]})\n'
            ),
        }
    )
    with pytest.raises(ExecutionError) as e:
        rule_runner.get_target(ADDRESS)
    assert f"m:m: field `run_id`: '{'f' * 32}' differs from the `source` URI's '{RUN}'" in str(e.value)
