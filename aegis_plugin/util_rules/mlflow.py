"""`mlflow_artifacts` files: into the build through a step keyed by their pins alone, so that no cache key
holds the tracking server's URL or credentials, and another machine's cache serves them with the server down.

The pins (each file's sha256 and size) are the digest of the files before any byte is fetched: the rule
builds that digest and runs one cheap step on it (`pinned-files`, core/cli.py), whose cache key is the source
URI and that digest. A cache hit, local or remote, hands over the files (the remote cache's output blobs)
without the server; this first attempt gives the remote cache time to answer before Pants tries a local run,
which can only fail for want of its inputs. On a miss, the step's inputs are not in the store yet: Pants
reports the missing digest, and only then does the rule download the files with Pants' own downloader
(each checked against its pin; the credentials travel as an Authorization header, which Pants keeps out of
its download cache key) and runs the step again, now with its inputs present. MLflow's client is never involved: `/get-artifact` on the
tracking server streams an artifact from whatever store holds it (core/mlflow/client.py).

The target's record of the training run (run, experiment, registered version, commit, parameters, metrics) is
the images' provenance: `registry_provenance` gathers it once, and the manifest, the SBOM inventory and the
SLSA facts each take their shape of it below.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, FileDigest, FileEntry, NativeDownloadFile, RemovePrefix
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.util.frozendict import FrozenDict

from aegis_plugin.core.mlflow import client as mlflow_client
from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.target_types import (
    MlflowArtifactPathField,
    MlflowExperimentField,
    MlflowFilesField,
    MlflowGitCommitField,
    MlflowMetricsField,
    MlflowParamsField,
    MlflowRunIdField,
    MlflowSourceField,
)
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreCommand, CoreProcess, CoreResult, freeze
from aegis_plugin.util_rules.pants_internals import is_missing_digest

_ENV = ("MLFLOW_TRACKING_URI", *mlflow_client.CREDENTIAL_VARS)
# Pants' downloader reports a mismatch as "... digest Digest { hash: Fingerprint<HEX>, size_bytes: N } ...".
_DIGEST_IN_ERROR = re.compile(r"Fingerprint<([0-9a-f]{64})>, size_bytes: (\d+)")
# ... and an HTTP error as "Client error (404) downloading file ..." (or "Server error (503) ...").
_STATUS_IN_ERROR = re.compile(r"error \(([1-5][0-9]{2})\) downloading")


@dataclass(frozen=True)
class MlflowFilesRequest:
    context: str  # e.g. "models/x:x: field `weights` (models/x:checkpoint)"
    source: str  # the pinned model URI
    run_id: str
    artifact_path: str
    files: tuple[tuple[str, str, int], ...]  # (name relative to artifact_path, sha256, size)


@dataclass(frozen=True)
class MlflowFiles:
    digest: Digest  # the files, by name


# The first attempt can only succeed through a cache, as its inputs are not in the local store yet: Pants must not
# let a local run (which fails at once for want of its inputs) beat the remote cache's answer.
_REMOTE_CACHE_FIRST_MILLIS = 2000


def _pinned_files_process(request: MlflowFilesRequest, inputs: Digest, downloaded: bool) -> CoreProcess:
    pins = (arg for name, sha256, size in request.files for arg in ("--file", name, sha256, str(size)))
    return CoreProcess(
        CoreCommand.PINNED_FILES,
        ("--source", request.source, *pins),
        inputs,
        description=f"Taking the pinned files of {request.source}{' (downloaded)' if downloaded else ''}",
        error_context=request.context,
        remote_cache_speculation_delay_millis=0 if downloaded else _REMOTE_CACHE_FIRST_MILLIS,
    )


def download_error(request: MlflowFilesRequest, name: str, sha256: str, size: int, server: str, error: str) -> str:
    """One line for a failed download of `name`: both digests on a mismatch, else what the server said."""
    where = f"{request.context}: {request.source}: {name}"
    found = [(h, int(n)) for h, n in _DIGEST_IN_ERROR.findall(error) if h != sha256 or int(n) != size]
    if found or ("digest" in error.lower() and "mismatch" in error.lower()):
        got = f"sha256 {found[0][0]} ({found[0][1]} bytes)" if found else "other bytes"
        return (f"{where}: the registry serves {got}, but `files` pins sha256 {sha256} ({size} bytes): the "
                f"artifact changed since it was pinned; re-pin it only if that change is expected")
    status = _STATUS_IN_ERROR.search(error)
    if status:
        return f"{where}: {mlflow_client.status_hint(int(status.group(1)))} on {server}"
    # "Error downloading file: error sending request for url (URL): WHY": the URL names no credential, but WHY
    # is what the user needs.
    why = (error.strip().splitlines() or ["unknown error"])[-1].rsplit("): ", 1)[-1]
    return f"{where}: cannot reach the tracking server {server}: {why[:300]}"


@rule(desc="Fetching pinned MLflow artifacts")
async def fetch_mlflow_files(request: MlflowFilesRequest, mlflow: MlflowSubsystem) -> MlflowFiles:
    entries = [FileEntry(f"in/{name}", FileDigest(sha256, size)) for name, sha256, size in request.files]
    pinned = await Get(Digest, CreateDigest(entries))
    try:
        result = await Get(CoreResult, CoreProcess, _pinned_files_process(request, pinned, downloaded=False))
        return MlflowFiles(await Get(Digest, RemovePrefix(result.output_digest, "out")))
    except Exception as e:  # noqa: BLE001 - only a missing input is expected; anything else is re-raised
        if not is_missing_digest(e):
            raise
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(_ENV))
    try:
        server = mlflow_client.tracking_uri(mlflow.tracking_uri, env)
        headers = mlflow_client.auth_headers(env)
    except mlflow_client.MlflowError as e:
        raise AegisBuildError(f"{request.context}: {request.source}: {e} (the files are in no cache yet)") from None
    for name, sha256, size in request.files:  # one at a time: each error names its file
        url = mlflow_client.artifact_url(server, request.run_id, f"{request.artifact_path}/{name}")
        try:
            await Get(Digest, NativeDownloadFile(url, FileDigest(sha256, size), headers))
        except Exception as e:  # noqa: BLE001 - Pants' message, rewritten to one line without credentials
            raise AegisBuildError(download_error(request, name, sha256, size, server, str(e))) from None
    result = await Get(CoreResult, CoreProcess, _pinned_files_process(request, pinned, downloaded=True))
    return MlflowFiles(await Get(Digest, RemovePrefix(result.output_digest, "out")))


def _plain(name: str) -> str:
    """A parameter or metric name as a flat YAML key: MLflow names may hold spaces."""
    return re.sub(r"[^A-Za-z0-9_./-]", "_", name)


def registry_manifest_fields(registry: FrozenDict[str, Any]) -> dict[str, str]:
    """The provenance of registry files as `manifest.yaml` keys (see core/runtime/manifest.py)."""
    fields = {
        "mlflow_source": registry["source"],
        "mlflow_run_id": registry["run_id"],
        "mlflow_experiment": registry["experiment"],
        "mlflow_registered_model": registry["registered_model"],
        "mlflow_model_version": registry["model_version"],
        "mlflow_tracking_uri": registry["tracking_uri"],
        "training_git_sha": registry["git_commit"],
    }
    fields = {key: value for key, value in fields.items() if value}
    fields.update({f"mlflow_param.{_plain(k)}": v for k, v in registry["params"].items()})
    fields.update({f"mlflow_metric.{_plain(k)}": repr(v) for k, v in registry["metrics"].items()})
    return fields


def registry_inventory(registry: FrozenDict[str, Any]) -> dict[str, Any]:
    """The provenance of registry files as the SBOM inventory's `model.registry` (core/sbom/inventory.py)."""
    return {key: (dict(value) if isinstance(value, FrozenDict) else value)
            for key, value in registry.items() if key != "files"}


def registry_provenance(tgt: Target, tracking_uri: str | None) -> FrozenDict[str, Any]:
    """What an `mlflow_artifacts` target says about where its files came from (`manifest.yaml`, SBOM, SLSA)."""
    source, run_id = tgt[MlflowSourceField].value, tgt[MlflowRunIdField].value
    if tracking_uri:  # recorded in the image: never with credentials
        try:
            tracking_uri = mlflow_client.check_tracking_uri(tracking_uri)
        except mlflow_client.MlflowError as e:
            raise AegisBuildError(f"{tgt.address}: option `[aegis-mlflow].tracking_uri`: {e}") from None
    model = source[len("models:/"):].rsplit("/", 1) if source.startswith("models:/") else None
    return freeze({
        "source": source,
        "run_id": run_id,
        "experiment": tgt[MlflowExperimentField].value or "",
        "registered_model": model[0] if model else "",
        "model_version": model[1] if model else "",
        "git_commit": tgt[MlflowGitCommitField].value or "",
        "tracking_uri": tracking_uri or "",
        "params": dict(tgt[MlflowParamsField].value or {}),
        "metrics": dict(tgt[MlflowMetricsField].value),
        "files": [
            {"uri": f"runs:/{run_id}/{tgt[MlflowArtifactPathField].value}/{name}", "sha256": sha256}
            for name, (sha256, _size) in tgt[MlflowFilesField].value.items()
        ],
    })


def rules():
    return collect_rules()
