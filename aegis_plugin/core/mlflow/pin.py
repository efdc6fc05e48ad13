"""Pin an MLflow model for a BUILD file, the way `generate-lockfiles` pins wheels:

    build-support/mlflow-pin.sh models:/fraud-detector@champion [--name checkpoint]

resolves the URI (a run's artifact path, a registered model version, or an alias, once) against the tracking
server (`MLFLOW_TRACKING_URI` or `--tracking-uri`; credentials from MLflow's environment variables), hashes
every file under the artifact path as a stream, and prints an `mlflow_artifacts` target to paste into a
BUILD file, followed by the run's parameters and metrics. Exit status 2 with one `aegis: ...` line on error.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from aegis_plugin.core.mlflow.client import (
    Client,
    MlflowError,
    Run,
    auth_headers,
    check_tracking_uri,
    tracking_uri,
)
from aegis_plugin.core.mlflow.uri import ModelUriError, parse


def render_target(name: str, source: str, run: Run, experiment: str, artifact_path: str,
                  files: List[Tuple[str, str, int]]) -> str:
    """The `mlflow_artifacts(...)` BUILD entry: everything a build takes from the registry, pinned."""
    def mapping(values: Dict[str, object], indent: str = "        ") -> str:
        if not values:
            return "{}"
        lines = "".join(f"{indent}{key!r}: {value!r},\n" for key, value in sorted(values.items()))
        return "{\n" + lines + indent[:-4] + "}"

    pinned = {name_: [sha256, size] for name_, sha256, size in files}
    return (
        "mlflow_artifacts(\n"
        f"    name={name!r},\n"
        f"    source={source!r},\n"
        f"    run_id={run.run_id!r},\n"
        f"    artifact_path={artifact_path!r},\n"
        f"    files={mapping(pinned)},\n"
        f"    experiment={experiment!r},\n"
        f"    git_commit={run.git_commit or ''!r},\n"
        f"    params={mapping(dict(run.params))},\n"
        f"    metrics={mapping(dict(run.metrics))},\n"
        ")\n"
    )


def pin(uri: str, name: str, client: Client, out=sys.stdout, err=sys.stderr) -> None:
    parsed = parse(uri, allow_alias=True)
    if parsed.alias is not None:
        version = client.alias_version(parsed.name or "", parsed.alias)
        print(f"# {uri} names version {version} today; pinned as models:/{parsed.name}/{version}", file=err)
        parsed = parse(f"models:/{parsed.name}/{version}")
    if parsed.run_id is not None:
        run_id, path = parsed.run_id, parsed.path or ""
    else:
        run_id, path = client.model_version(parsed.name or "", parsed.version or "")
    run = client.run(run_id)
    if run.status != "FINISHED":
        raise MlflowError(f"{parsed}: run {run_id} is {run.status or 'not finished'}: pin a finished run")
    experiment = client.experiment_name(run.experiment_id)
    files = []
    for relative, _listed_size in client.list_files(run_id, path):
        sha256, size = client.sha256(run_id, f"{path}/{relative}")
        files.append((relative, sha256, size))
    out.write(render_target(name, str(parsed), run, experiment, path, files))
    print(f"# run {run_id} of experiment {experiment!r} ({run.experiment_id}), commit {run.git_commit or 'unknown'}",
          file=err)
    for kind, values in (("parameter", run.params), ("metric", run.metrics)):
        for key, value in sorted(values.items()):
            print(f"#   {kind:9} {key} = {value}", file=err)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="build-support/mlflow-pin.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="runs:/<run_id>/<path>, models:/<name>/<version> or models:/<name>@<alias>")
    parser.add_argument("--name", default="checkpoint", help="the target's name in the BUILD file")
    parser.add_argument("--tracking-uri", help="the tracking server (default: MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    try:
        server = check_tracking_uri(args.tracking_uri) if args.tracking_uri else tracking_uri(None, os.environ)
        pin(args.uri, args.name, Client(server, auth_headers(os.environ)))
    except (MlflowError, ModelUriError) as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
