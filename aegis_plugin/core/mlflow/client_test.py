from __future__ import annotations

import pytest

from aegis_plugin.core.mlflow.client import (
    MlflowError,
    _run_and_path,
    artifact_url,
    auth_headers,
    check_tracking_uri,
    tracking_uri,
)

RUN = "7211af93442a47abba7694e4e7920b6d"


def test_the_machines_address_wins_over_the_option() -> None:
    assert tracking_uri("https://mlflow.example.com", {}) == "https://mlflow.example.com"
    assert tracking_uri("https://mlflow.example.com", {"MLFLOW_TRACKING_URI": "http://10.0.0.5:5000/"}) == (
        "http://10.0.0.5:5000"
    )
    with pytest.raises(MlflowError, match="no MLflow tracking server: set `\\[aegis-mlflow\\].tracking_uri`"):
        tracking_uri(None, {})


@pytest.mark.parametrize(
    "uri, says",
    [
        ("http://bot:s3cret@mlflow.example.com", "'http://***@mlflow.example.com' carries credentials"),
        ("https://mlflow.example.com/?token=s3cret", "carries credentials or a query"),
        ("databricks", "must be an http:// or https:// URL"),
        ("file:///tmp/mlruns", "must be an http:// or https:// URL"),
    ],
)
def test_a_tracking_uri_is_a_plain_url(uri: str, says: str) -> None:
    with pytest.raises(MlflowError) as error:
        check_tracking_uri(uri)
    assert says in str(error.value) and "s3cret" not in str(error.value)


def test_credentials_as_mlflow_sends_them() -> None:
    assert auth_headers({}) == {}
    assert auth_headers({"MLFLOW_TRACKING_TOKEN": "t0k"}) == {"Authorization": "Bearer t0k"}
    assert auth_headers({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}) == {
        "Authorization": "Basic dTpw"
    }
    with pytest.raises(MlflowError, match="set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        auth_headers({"MLFLOW_TRACKING_PASSWORD": "p"})


def test_artifact_url() -> None:
    assert artifact_url("http://127.0.0.1:5000", RUN, "model/sub dir/w.safetensors") == (
        f"http://127.0.0.1:5000/get-artifact?path=model%2Fsub+dir%2Fw.safetensors&run_uuid={RUN}"
    )


def test_a_model_versions_artifact_path_in_its_run() -> None:
    assert _run_and_path({"run_id": RUN, "source": f"runs:/{RUN}/model"}, "m") == (RUN, "model")
    proxied = f"mlflow-artifacts:/1/{RUN}/artifacts/model/"
    assert _run_and_path({"run_id": RUN, "source": proxied}, "m") == (RUN, "model")
    assert _run_and_path({"run_id": RUN, "source": f"s3://bucket/1/{RUN}/artifacts/ckpt"}, "m") == (RUN, "ckpt")
    with pytest.raises(MlflowError, match="is not an artifact path of its run"):
        _run_and_path({"run_id": "", "source": "models:/m-0123"}, "models:/fraud/3")
