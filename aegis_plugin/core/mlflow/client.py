"""A small client of the MLflow tracking server's REST API (stdlib only): what pinning a model needs.

Aegis needs five calls (a run, a model version, an alias, an artifact listing, an artifact's bytes), so it
speaks the REST API rather than shipping MLflow's client; its download URL (`/get-artifact`) is also what
`package` hands to Pants' downloader. The server comes from `[aegis-mlflow].tracking_uri` or
`MLFLOW_TRACKING_URI`; credentials only from MLflow's own environment variables (`MLFLOW_TRACKING_TOKEN`, or
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`), sent as an Authorization header and named in no
message.
"""
from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from aegis_plugin.core.download import redact_url
from aegis_plugin.core.errors import AegisError

GIT_COMMIT_TAG = "mlflow.source.git.commit"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_CHUNK = 1 << 20


class MlflowError(AegisError):
    """One line naming what was asked of which server, and why it failed; never a credential."""


def tracking_uri(configured: Optional[str], env: Mapping[str, str]) -> str:
    """The server to talk to: `MLFLOW_TRACKING_URI` (where this machine reaches it), else the option."""
    uri = env.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        raise MlflowError(
            "no MLflow tracking server: set `[aegis-mlflow].tracking_uri` in pants.toml or MLFLOW_TRACKING_URI"
        )
    return check_tracking_uri(uri)


def check_tracking_uri(uri: str) -> str:
    """`uri` without a trailing `/`, if it is a plain http(s) URL: credentials belong in the environment."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MlflowError(f"the MLflow tracking URI {redact_url(uri)!r} must be an http:// or https:// URL")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise MlflowError(
            f"the MLflow tracking URI {redact_url(uri)!r} carries credentials or a query: give the URL alone and "
            f"the credentials in MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    return uri.rstrip("/")


def auth_headers(env: Mapping[str, str]) -> Dict[str, str]:
    """The Authorization header MLflow's own client would send for these environment variables."""
    token = env.get("MLFLOW_TRACKING_TOKEN")
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if user or password:
        if not (user and password):
            raise MlflowError("set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or neither")
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def artifact_url(server: str, run_id: str, path: str) -> str:
    """The tracking server's download of one artifact of a run (served from whatever store holds it)."""
    return f"{server}/get-artifact?" + urllib.parse.urlencode({"path": path, "run_uuid": run_id})


def status_hint(status: int) -> str:
    """Why a server answers `status`, in the words a user can act on."""
    if status in (401, 403):
        return (f"the server refused the credentials (HTTP {status}): check MLFLOW_TRACKING_TOKEN, or "
                f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if status == 404:
        return "not found (HTTP 404): check the run id and the artifact path"
    return f"HTTP {status}"


@dataclass(frozen=True)
class Run:
    run_id: str
    experiment_id: str
    status: str
    git_commit: Optional[str]
    params: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)


class Client:
    def __init__(self, server: str, headers: Mapping[str, str], timeout: float = 60) -> None:
        self.server, self._headers, self._timeout = server, dict(headers), timeout

    def _open(self, path: str, params: Mapping[str, str], what: str):
        url = f"{self.server}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self._headers)
        try:
            return urllib.request.urlopen(request, timeout=self._timeout)
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read() or b"{}").get("message", "")
            except ValueError:
                message = ""
            hint = status_hint(e.code)
            if e.code == 404 and message:
                hint = f"{message.splitlines()[0][:200]} (HTTP 404)"
            raise MlflowError(f"{what}: {hint} on {self.server}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise MlflowError(f"{what}: cannot reach the tracking server {self.server}: {reason}") from None

    def _json(self, endpoint: str, what: str, **params: str) -> dict:
        with self._open(f"/api/2.0/mlflow/{endpoint}", params, what) as response:
            return json.loads(response.read())

    def run(self, run_id: str) -> Run:
        data = self._json("runs/get", f"run {run_id}", run_id=run_id)["run"]
        tags = {t["key"]: t.get("value", "") for t in data.get("data", {}).get("tags", [])}
        return Run(
            run_id=run_id,
            experiment_id=data["info"]["experiment_id"],
            status=data["info"].get("status", ""),
            git_commit=tags.get(GIT_COMMIT_TAG),
            params={p["key"]: p.get("value", "") for p in data.get("data", {}).get("params", [])},
            metrics={m["key"]: float(m["value"]) for m in data.get("data", {}).get("metrics", [])},
        )

    def experiment_name(self, experiment_id: str) -> str:
        data = self._json("experiments/get", f"experiment {experiment_id}", experiment_id=experiment_id)
        return data["experiment"]["name"]

    def model_version(self, name: str, version: str) -> Tuple[str, str]:
        """(run id, artifact path in the run) of a registered model version."""
        data = self._json("model-versions/get", f"models:/{name}/{version}", name=name, version=version)
        return _run_and_path(data["model_version"], f"models:/{name}/{version}")

    def alias_version(self, name: str, alias: str) -> str:
        data = self._json("registered-models/alias", f"models:/{name}@{alias}", name=name, alias=alias)
        return str(data["model_version"]["version"])

    def list_files(self, run_id: str, path: str) -> List[Tuple[str, int]]:
        """(path relative to `path`, size) of every file under `path` in the run's artifacts, sorted."""
        found: List[Tuple[str, int]] = []
        pending = [path]
        while pending:
            directory = pending.pop()
            listing = self._json("artifacts/list", f"runs:/{run_id}/{directory}", run_id=run_id, path=directory)
            for entry in listing.get("files", []):
                if entry.get("is_dir"):
                    pending.append(entry["path"])
                else:
                    found.append((entry["path"][len(path) + 1:], int(entry.get("file_size", 0))))
        if not found:
            raise MlflowError(f"runs:/{run_id}/{path}: no files there on {self.server}: check the artifact path")
        return sorted(found)

    def sha256(self, run_id: str, path: str) -> Tuple[str, int]:
        """The SHA-256 and size of one artifact, read as a stream (never held whole)."""
        digest, size = hashlib.sha256(), 0
        with self._open("/get-artifact", {"path": path, "run_uuid": run_id}, f"runs:/{run_id}/{path}") as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


def _run_and_path(version: Mapping[str, str], what: str) -> Tuple[str, str]:
    run_id, source = version.get("run_id") or "", version.get("source") or ""
    if source.startswith(f"runs:/{run_id}/") and run_id:
        return run_id, source[len(f"runs:/{run_id}/"):].strip("/")
    marker = f"/{run_id}/artifacts/"
    if run_id and marker in source:  # the run's artifact store URI (mlflow-artifacts:/, s3://, file://)
        return run_id, source.split(marker, 1)[1].strip("/")
    raise MlflowError(f"{what}: its source {source!r} is not an artifact path of its run {run_id!r}, which is "
                      f"what Aegis can pin")
