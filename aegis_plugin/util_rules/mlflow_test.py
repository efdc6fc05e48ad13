"""The MLflow files rule: keyed by the pins alone; the server and the credentials are read, and the files
downloaded, only when the pinned files are in no cache; every failure is one line without credentials."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars
from pants.engine.fs import CreateDigest, EMPTY_DIGEST, NativeDownloadFile, RemovePrefix
from pants.engine.rules import Get
from pants.testutil.option_util import create_subsystem

from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreProcess, CoreResult
from aegis_plugin.target_types import MlflowArtifactsTarget
from aegis_plugin.util_rules.mlflow import (
    MlflowFiles,
    MlflowFilesRequest,
    download_error,
    fetch_mlflow_files,
    registry_manifest_fields,
    registry_provenance,
)

RUN = "7211af93442a47abba7694e4e7920b6d"
SHA = "a" * 64
REQUEST = MlflowFilesRequest(
    "m:m: field `weights` (m:checkpoint)", f"runs:/{RUN}/model", RUN, "model",
    (("tokenizer.json", "b" * 64, 10), ("weights.safetensors", SHA, 2048)),
)
TOKEN = "tok-unit-5a4b3c"
MISSING = Exception(  # what Pants raises when a step's inputs are in no store
    "Could not identify a process to backtrack to for: Missing digest: Was not present in the local store"
)


def drive(env: dict[str, str], answer: Callable[[Get], Any], tracking_uri: str | None = None) -> tuple[Any, list]:
    """Runs the rule, answering each Get with `answer` and throwing what it raises back into the rule (as the
    engine does), and records every Get."""
    rule = fetch_mlflow_files(REQUEST, create_subsystem(MlflowSubsystem, tracking_uri=tracking_uri))
    asked: list[Get] = []
    value, error = None, None
    while True:
        try:
            get = rule.throw(error) if error else rule.send(value)
        except StopIteration as stop:
            return stop.value, asked
        asked.append(get)
        value, error = None, None
        try:
            if get.output_type is EnvironmentVars:
                value = EnvironmentVars({k: v for k, v in env.items() if k in get.inputs[0].requested})
            else:
                value = answer(get)
        except Exception as e:  # noqa: BLE001 - handed to the rule like the engine does
            error = e


def kinds(asked: list) -> list[str]:
    return [type(get.inputs[0]).__name__ for get in asked]


def test_a_cache_hit_asks_for_no_server_and_no_credentials() -> None:
    def answer(get: Get) -> Any:
        return {CreateDigest: EMPTY_DIGEST, CoreProcess: CoreResult(EMPTY_DIGEST), RemovePrefix: EMPTY_DIGEST}[
            type(get.inputs[0])
        ]

    result, asked = drive({"MLFLOW_TRACKING_TOKEN": TOKEN}, answer)
    assert result == MlflowFiles(EMPTY_DIGEST)
    assert kinds(asked) == ["CreateDigest", "CoreProcess", "RemovePrefix"]
    (process,) = [g.inputs[0] for g in asked if isinstance(g.inputs[0], CoreProcess)]
    # The key: the source and the pins, nothing about where the server is or who asks.
    assert process.argv == ("--source", f"runs:/{RUN}/model", "--file", "tokenizer.json", "b" * 64, "10",
                            "--file", "weights.safetensors", SHA, "2048")


def test_a_miss_downloads_each_file_with_the_credentials_in_a_header_only() -> None:
    processes: list[CoreProcess] = []

    def answer(get: Get) -> Any:
        request = get.inputs[0]
        if isinstance(request, CoreProcess):
            processes.append(request)
            if len(processes) == 1:
                raise MISSING
            return CoreResult(EMPTY_DIGEST)
        return EMPTY_DIGEST

    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/", "MLFLOW_TRACKING_TOKEN": TOKEN}
    result, asked = drive(env, answer, tracking_uri="https://mlflow.example.com")
    assert result == MlflowFiles(EMPTY_DIGEST)
    assert kinds(asked) == ["CreateDigest", "CoreProcess", "EnvironmentVarsRequest", "NativeDownloadFile",
                            "NativeDownloadFile", "CoreProcess", "RemovePrefix"]
    downloads = [g.inputs[0] for g in asked if isinstance(g.inputs[0], NativeDownloadFile)]
    assert [d.url for d in downloads] == [  # the machine's address wins over the recorded one
        f"http://127.0.0.1:5000/get-artifact?path=model%2Ftokenizer.json&run_uuid={RUN}",
        f"http://127.0.0.1:5000/get-artifact?path=model%2Fweights.safetensors&run_uuid={RUN}",
    ]
    assert [(d.expected_digest.fingerprint, d.expected_digest.serialized_bytes_length) for d in downloads] == [
        ("b" * 64, 10), (SHA, 2048)
    ]
    assert all(dict(d.auth_headers) == {"Authorization": f"Bearer {TOKEN}"} for d in downloads)
    assert processes[0].argv == processes[1].argv
    assert TOKEN not in repr(processes) and "127.0.0.1" not in repr(processes)
    # The first attempt waits for the remote cache; the one after the download has its inputs and need not.
    assert [p.remote_cache_speculation_delay_millis for p in processes] == [2000, 0]


def test_other_failures_of_the_step_are_not_taken_for_a_miss() -> None:
    def answer(get: Get) -> Any:
        if isinstance(get.inputs[0], CoreProcess):
            raise AegisBuildError("m:m: field `weights`: weights.safetensors: 1 bytes, pinned 2048")
        return EMPTY_DIGEST

    with pytest.raises(AegisBuildError, match="pinned 2048"):
        drive({}, answer)


@pytest.mark.parametrize(
    "env, says",
    [
        ({}, "no MLflow tracking server: set `[aegis-mlflow].tracking_uri` in pants.toml or MLFLOW_TRACKING_URI"),
        ({"MLFLOW_TRACKING_URI": f"http://bot:{TOKEN}@127.0.0.1:5000"}, "carries credentials or a query"),
        ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_TRACKING_USERNAME": "bot"},
         "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ],
)
def test_a_miss_without_a_usable_server_is_one_line(env: dict, says: str) -> None:
    def answer(get: Get) -> Any:
        if isinstance(get.inputs[0], CoreProcess):
            raise MISSING
        return EMPTY_DIGEST

    with pytest.raises(AegisBuildError) as error:
        drive(env, answer)
    message = str(error.value)
    assert message.startswith(f"m:m: field `weights` (m:checkpoint): runs:/{RUN}/model: ") and says in message
    assert TOKEN not in message and "\n" not in message


@pytest.mark.parametrize(
    "pants_error, says",
    [
        (
            "Wrong digest for downloaded file: want digest Digest { hash: Fingerprint<" + SHA + ">, "
            "size_bytes: 2048 }, "
            "got Digest { hash: Fingerprint<" + "c" * 64 + ">, size_bytes: 2049 }",
            f"the registry serves sha256 {'c' * 64} (2049 bytes), but `files` pins sha256 {SHA} (2048 bytes)",
        ),
        ("Client error (404) downloading file get-artifact from http://127.0.0.1:5000/get-artifact?path=model",
         "not found (HTTP 404): check the run id and the artifact path on http://127.0.0.1:5000"),
        ("Client error (401) downloading file get-artifact from http://127.0.0.1:5000/get-artifact",
         "the server refused the credentials (HTTP 401)"),
        ("Error downloading file: error sending request for url (http://127.0.0.1:5000/get-artifact?path=m): error "
         "trying to connect: tcp connect error: Connection refused (os error 111)",
         "cannot reach the tracking server http://127.0.0.1:5000: error trying to connect: tcp connect error: "
         "Connection refused (os error 111)"),
    ],
)
def test_download_errors_name_the_target_field_uri_and_file(pants_error: str, says: str) -> None:
    message = download_error(REQUEST, "weights.safetensors", SHA, 2048, "http://127.0.0.1:5000", pants_error)
    assert message.startswith(f"m:m: field `weights` (m:checkpoint): runs:/{RUN}/model: weights.safetensors: ")
    assert says in message and "\n" not in message


def checkpoint(**fields: Any) -> MlflowArtifactsTarget:
    return MlflowArtifactsTarget(
        {"source": "models:/fraud/3", "run_id": RUN, "artifact_path": "model", "files": {"w.safetensors": [SHA, 3]},
         "experiment": "fraud", "params": {"learning rate": "0.05"}, "metrics": {"auc": 0.981}, **fields},
        Address("m", target_name="checkpoint"),
    )


def test_provenance_records_the_tracking_uri_only_without_credentials() -> None:
    provenance = registry_provenance(checkpoint(), "https://mlflow.example.com/")
    assert provenance["tracking_uri"] == "https://mlflow.example.com"
    assert provenance["registered_model"] == "fraud" and provenance["model_version"] == "3"
    assert [dict(f) for f in provenance["files"]] == [{"uri": f"runs:/{RUN}/model/w.safetensors", "sha256": SHA}]
    assert registry_manifest_fields(provenance) == {
        "mlflow_source": "models:/fraud/3", "mlflow_run_id": RUN, "mlflow_experiment": "fraud",
        "mlflow_registered_model": "fraud", "mlflow_model_version": "3",
        "mlflow_tracking_uri": "https://mlflow.example.com",
        "mlflow_param.learning_rate": "0.05", "mlflow_metric.auc": "0.981",
    }
    with pytest.raises(AegisBuildError) as error:
        registry_provenance(checkpoint(), f"https://bot:{TOKEN}@mlflow.example.com")
    assert str(error.value).startswith("m:checkpoint: option `[aegis-mlflow].tracking_uri`: ")
    assert TOKEN not in str(error.value)
