"""Model files from a real MLflow tracking server (basic auth, SQLite backend, local artifact store) on
127.0.0.1: pinned with the helper, packaged from `runs:/` and `models:/`, refused when tampered with or when
the server, the run, the path or the credentials are wrong, and served by the remote cache with the server
stopped. The password and a token appear in no output, log or cache entry.

Each clone has its own Pants store; every scenario that must reach the download uses files no store has seen.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from aegis_plugin.testutil.local_servers import free_port, running_process
from tests.e2e.buildgrid import buildgrid, counters
from tests.e2e.clones import Clone, make_clone, tree_digests

USER, PASSWORD = "admin", "mlflow-e2e-Passw0rd"
TOKEN = "tok-e2e-9f8e7d6c5b4a"  # not what the server accepts: the wrong-token case
SECRETS = (PASSWORD, TOKEN)
CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD}


class MlflowServer:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = root / "artifacts"

    @contextlib.contextmanager
    def running(self) -> Iterator["MlflowServer"]:
        auth = self.root / "auth.ini"
        auth.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{self.root}/auth.db\n"
            f"admin_username = {USER}\nadmin_password = {PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        os.environ.update(MLFLOW_AUTH_CONFIG_PATH=str(auth), MLFLOW_FLASK_SERVER_SECRET_KEY="e2e-only-secret")
        argv = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
                "--artifacts-destination", str(self.artifacts)]
        # `mlflow server` runs its web server as a child: started in a session of its own, stopped as a group.
        with running_process(argv, self.root / "mlflow.log", self._healthy, "mlflow server", timeout=180,
                             poll=0.5, process_group=True):
            yield self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
            return response.status == 200

    def log_run(self, files: dict[str, bytes], register_as: str | None = None) -> str:
        """Logs `files` under the artifact path `model` of a new finished run; optionally registers them as a new
        version of `register_as`, aliased `champion`. Returns the run id."""
        import mlflow
        from mlflow import MlflowClient

        os.environ.update(CREDENTIALS)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment("fraud-e2e")
        staging = self.root / f"staging-{len(list(self.root.glob('staging-*')))}"
        staging.mkdir()
        for name, content in files.items():
            (staging / name).write_bytes(content)
        with mlflow.start_run() as run:
            mlflow.log_params({"learning_rate": 0.05, "epochs": 200})
            mlflow.log_metrics({"auc": 0.981, "f1": 0.88})
            mlflow.set_tag("mlflow.source.git.commit", "b" * 40)
            mlflow.log_artifacts(str(staging), artifact_path="model")
        if register_as:
            client = MlflowClient()
            if not client.search_registered_models(f"name = '{register_as}'"):
                client.create_registered_model(register_as)
            version = client.create_model_version(register_as, f"runs:/{run.info.run_id}/model", run.info.run_id)
            client.set_registered_model_alias(register_as, "champion", version.version)
        return run.info.run_id

    def artifact(self, run_id: str, name: str) -> Path:
        (path,) = self.artifacts.glob(f"*/{run_id}/artifacts/model/{name}")
        return path


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def server(tmp: Path) -> Iterator[MlflowServer]:
    (tmp / "server").mkdir()
    with MlflowServer(tmp / "server").running() as running:
        yield running


@pytest.fixture(scope="module")
def cache(tmp: Path) -> Iterator[str]:
    with buildgrid(tmp) as address:
        yield address


@pytest.fixture(scope="module")
def clone(tmp: Path) -> Clone:
    return make_clone(tmp, "a")


def weights(seed: int) -> bytes:
    """A valid safetensors file no store has seen (one F32 tensor of seeded bytes)."""
    data = hashlib.sha256(f"weights {seed}".encode()).digest() * 64
    header = b'{"w":{"dtype":"F32","shape":[512],"data_offsets":[0,2048]}}'
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def pin(clone: Clone, server: MlflowServer, uri: str, name: str) -> str:
    """The helper's BUILD entry for `uri` (it prints the run's parameters and metrics on stderr)."""
    result = clone.run([sys.executable, "-m", "aegis_plugin.core.mlflow.pin", uri, "--name", name],
                       env={"MLFLOW_TRACKING_URI": server.uri, **CREDENTIALS})
    assert "parameter learning_rate = 0.05" in result.stderr and "metric    auc = 0.981" in result.stderr
    return result.stdout


def write_package(clone: Clone, name: str, artifacts_target: str) -> None:
    """models/<name>: the pinned target and a model_package of the fraud demo's handler taking it."""
    root = clone.root / "models" / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_card.md").write_text((clone.root / "models/fraud/model_card.md").read_text())
    (root / "BUILD").write_text(
        artifacts_target
        + f'model_package(name="{name}", model_id="fraud-detector", version="1.0.0", weights=":checkpoint", '
        'model_card="model_card.md", handler="models/fraud/server/handler.py", framework="numpy")\n'
    )


def package(clone: Clone, server_uri: str, name: str, cache: str, extra_env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    env = {"MLFLOW_TRACKING_URI": server_uri, "AEGIS_REMOTE_CACHE": cache, **CREDENTIALS, **(extra_env or {})}
    return clone.pants("--stats-log", f"--aegis-mlflow-tracking-uri={TRACKING_URI_OPTION}", "package",
                       f"models/{name}::", env=env, check=check)


# Recorded in the images: the same on every machine (where each machine reaches the server is its own business).
TRACKING_URI_OPTION = "https://mlflow.example.com"


def image_file(clone: Clone, name: str, path: str) -> bytes:
    root = clone.root / "dist/models" / name / name
    for layer in clone.image_summary(f"models/{name}/{name}")["layers"]:
        blob = root / "oci/blobs/sha256" / layer["digest"].split(":")[1]
        with tarfile.open(blob) as tar:
            if path in tar.getnames():
                return tar.extractfile(path).read()
    raise AssertionError(f"{path} is in no layer of {name}")


def no_secrets(clone: Clone, *outputs: str) -> None:
    """Neither secret in the outputs, Pants' logs, dist/, or anything in the clone's Pants store (whose
    action keys hold every process's argv and environment)."""
    for text in outputs:
        assert not [s for s in SECRETS if s in text], text
    places = [clone.root / ".pants.d", clone.root / "dist", clone.store]
    for place in places:
        found = subprocess.run(["grep", "-rlaF", *(f"-e{s}" for s in SECRETS), str(place)], capture_output=True,
                               text=True)
        assert found.returncode == 1 and not found.stdout, f"a secret is in {found.stdout}"


def one_error_line(result: subprocess.CompletedProcess, target: str) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"AegisBuildError: {target}: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_package_from_runs_and_from_a_registered_version(clone: Clone, server: MlflowServer, cache: str) -> None:
    tokenizer = (clone.root / "models/fraud/tokenizer.json").read_bytes()
    files = {"weights.safetensors": weights(1), "tokenizer.json": tokenizer}
    run_id = server.log_run(files, register_as="fraud-e2e")
    by_version = pin(clone, server, "models:/fraud-e2e@champion", "checkpoint")
    assert "source='models:/fraud-e2e/1'" in by_version and f"run_id='{run_id}'" in by_version
    by_run = pin(clone, server, f"runs:/{run_id}/model", "checkpoint")
    write_package(clone, "fromversion", by_version)
    write_package(clone, "fromrun", by_run)

    results = [package(clone, server.uri, name, cache) for name in ("fromversion", "fromrun")]
    for name in ("fromversion", "fromrun"):
        assert image_file(clone, name, "app/model/weights.safetensors") == files["weights.safetensors"]
        assert image_file(clone, name, "app/model/tokenizer.json") == files["tokenizer.json"]
    manifest = image_file(clone, "fromversion", "app/manifest.yaml").decode()
    for line in (f'mlflow_run_id: "{run_id}"', 'mlflow_source: "models:/fraud-e2e/1"', 'mlflow_experiment: "fraud-e2e"',
                 'mlflow_registered_model: "fraud-e2e"', 'mlflow_model_version: "1"',
                 f'mlflow_tracking_uri: "{TRACKING_URI_OPTION}"', f'training_git_sha: "{"b" * 40}"',
                 'mlflow_param.learning_rate: "0.05"', 'mlflow_metric.auc: "0.981"'):
        assert line in manifest.splitlines(), manifest
    # The same weights file is the same layer in both images.
    digests = [{l["description"]: l["digest"] for l in clone.image_summary(f"models/{n}/{n}")["layers"]}
               for n in ("fromversion", "fromrun")]
    assert digests[0]["model weights weights.safetensors"] == digests[1]["model weights weights.safetensors"]

    # A second package downloads nothing: the pinned files come from the cache, the server is not asked.
    again = package(clone, f"http://127.0.0.1:{free_port()}", "fromversion", cache)
    no_secrets(clone, *(r.stdout + r.stderr for r in (*results, again)))


def test_a_tampered_artifact_names_both_digests(clone: Clone, server: MlflowServer, cache: str) -> None:
    run_id = server.log_run({"weights.safetensors": weights(2)})
    write_package(clone, "tampered", pin(clone, server, f"runs:/{run_id}/model", "checkpoint"))
    server.artifact(run_id, "weights.safetensors").write_bytes(weights(3))
    result = package(clone, server.uri, "tampered", cache, check=False)
    line = one_error_line(result, "models/tampered:tampered")
    pinned, served = hashlib.sha256(weights(2)).hexdigest(), hashlib.sha256(weights(3)).hexdigest()
    assert f"field `weights` (models/tampered:checkpoint): runs:/{run_id}/model: weights.safetensors: " in line
    assert f"the registry serves sha256 {served}" in line and f"`files` pins sha256 {pinned}" in line
    assert not (clone.root / "dist/models/tampered").exists()


@pytest.mark.parametrize(
    "case, says",
    [
        ("missing run", "not found (HTTP 404): check the run id and the artifact path"),
        ("missing path", "not found (HTTP 404): check the run id and the artifact path"),
        ("server down", "cannot reach the tracking server http://127.0.0.1:"),
        ("wrong token", "the server refused the credentials (HTTP 401)"),
    ],
)
def test_registry_failures_are_one_line_without_the_token(clone: Clone, server: MlflowServer, cache: str,
                                                         case: str, says: str) -> None:
    seed = {"missing run": 4, "missing path": 5, "server down": 6, "wrong token": 7}[case]
    run_id = server.log_run({"weights.safetensors": weights(seed)})
    target = pin(clone, server, f"runs:/{run_id}/model", "checkpoint")
    uri, env = server.uri, {}
    if case == "missing run":
        run_id, target = "f" * 32, target.replace(run_id, "f" * 32)
    elif case == "missing path":
        target = target.replace("'weights.safetensors'", "'weights-v2.safetensors'")
    elif case == "server down":
        uri = f"http://127.0.0.1:{free_port()}"
    else:
        env = {"MLFLOW_TRACKING_TOKEN": TOKEN}
    write_package(clone, "failing", target)
    result = package(clone, uri, "failing", cache, extra_env=env, check=False)
    line = one_error_line(result, "models/failing:failing")
    assert f"field `weights` (models/failing:checkpoint): runs:/{run_id}/model: " in line and says in line, line
    assert not (clone.root / "dist/models/failing").exists()
    no_secrets(clone, result.stdout + result.stderr)


def test_the_remote_cache_serves_the_files_with_the_server_stopped(tmp: Path, clone: Clone, cache: str) -> None:
    """Runs last: it stops a server of its own. Clone A packages through it with the remote cache on; clone B,
    with its own empty store, packages the same commit after the server is gone."""
    (tmp / "server-2").mkdir()
    with MlflowServer(tmp / "server-2").running() as server:
        run_id = server.log_run({"weights.safetensors": weights(8)}, register_as="fraud-cached")
        write_package(clone, "cached", pin(clone, server, "models:/fraud-cached/1", "checkpoint"))
        clone.git("add", "models/cached")
        clone.git("commit", "-qm", "cached model")
        package(clone, server.uri, "cached", cache)
        stopped_uri = server.uri
    b = make_clone(tmp, "b")
    b.git("pull", "-q", str(clone.root), "HEAD")
    result = package(b, stopped_uri, "cached", cache)
    assert counters(result.stderr)["remote_cache_read_errors"] == 0
    assert image_file(b, "cached", "app/model/weights.safetensors") == weights(8)
    assert tree_digests(clone.root / "dist/models/cached") == tree_digests(b.root / "dist/models/cached")
    assert f'mlflow_run_id: "{run_id}"' in image_file(b, "cached", "app/manifest.yaml").decode()
    no_secrets(b, result.stdout + result.stderr)
