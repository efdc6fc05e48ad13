"""`mlflow_artifacts` files: into the build through a step keyed by their pins alone, so that no cache key
holds the tracking server's URL or credentials, and another machine's cache serves them with the server down.

The pins (each file's sha256 and size) are the digest of the files before any byte is fetched: the rule
builds that digest and runs one cheap step on it (`pinned-files`, core/cli.py), whose cache key is the source
URI and that digest. A cache hit, local or remote, hands over the files (the remote cache's output blobs)
without the server. On a miss, the step's inputs are not in the store yet: Pants reports the missing digest,
and only then does the rule download the files with Pants' own downloader (each checked against its pin;
the credentials travel as an Authorization header, which Pants keeps out of its download cache key) and runs
the step again, now with its inputs present. MLflow's client is never involved: `/get-artifact` on the
tracking server streams an artifact from whatever store holds it (core/mlflow/client.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileDigest, FileEntry, NativeDownloadFile, RemovePrefix
from pants.engine.rules import Get, MultiGet, collect_rules, rule

from aegis_plugin.core.mlflow import client as mlflow_client
from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreCommand, CoreProcess, CoreResult

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


def _pinned_files_process(request: MlflowFilesRequest, inputs: Digest, attempt: str) -> CoreProcess:
    return CoreProcess(
        CoreCommand.PINNED_FILES,
        ("--source", request.source, *(a for name, sha256, size in request.files for a in ("--file", name, sha256, str(size)))),
        inputs,
        description=f"Taking the pinned files of {request.source}{attempt}",
        error_context=request.context,
    )


def download_error(request: MlflowFilesRequest, name: str, sha256: str, size: int, server: str, error: str) -> str:
    """One line for a failed download of `name`: both digests on a mismatch, else what the server said."""
    where = f"{request.context}: {request.source}: {name}"
    found = [(h, int(n)) for h, n in _DIGEST_IN_ERROR.findall(error) if h != sha256 or int(n) != size]
    if found or "digest" in error.lower() and "mismatch" in error.lower():
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
    pinned = await Get(
        Digest, CreateDigest([FileEntry(f"in/{name}", FileDigest(sha256, size)) for name, sha256, size in request.files])
    )
    try:
        result = await Get(CoreResult, CoreProcess, _pinned_files_process(request, pinned, ""))
        return MlflowFiles(await Get(Digest, RemovePrefix(result.output_digest, "out")))
    except Exception as e:  # noqa: BLE001 - only a missing input is expected; anything else is re-raised
        if "Missing digest" not in str(e) and "not present in" not in str(e):
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
    result = await Get(CoreResult, CoreProcess, _pinned_files_process(request, pinned, " (downloaded)"))
    return MlflowFiles(await Get(Digest, RemovePrefix(result.output_digest, "out")))


def rules():
    return collect_rules()
