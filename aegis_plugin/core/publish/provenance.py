"""SLSA v1 provenance of a model image: who built it from what (https://slsa.dev/spec/v1.0/provenance)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

BUILD_TYPE = "https://github.com/aegis-ml/aegis/pants-package/v1"


def predicate(
    *,
    builder_id: str,
    target: str,
    version: str,
    source_url: str,
    git_sha: str,
    materials: Sequence[Mapping[str, str]],
    invocation: Sequence[str],
    training_run: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """`materials`: {"uri", "sha256"} of each input that decided the image (lockfiles, the base layer, model
    files from a registry). `training_run`: the registry's record of the run that produced those files
    (package.py's `registry_provenance`: run id, experiment, registered version, training commit, parameters,
    metrics). A `-dirty` revision is recorded as such: the provenance never claims a clean commit it was not."""
    commit = git_sha[: -len("-dirty")] if git_sha.endswith("-dirty") else git_sha
    dependencies = [{"uri": f"git+{source_url}@{commit}", "digest": {"gitCommit": commit}}]
    dependencies += [{"uri": m["uri"], "digest": {"sha256": m["sha256"]}} for m in materials]
    if training_run:
        run: Dict[str, Any] = {"uri": f"runs:/{training_run['run_id']}"}
        if training_run.get("git_commit"):
            run["digest"] = {"gitCommit": training_run["git_commit"]}
        run["annotations"] = {k: v for k, v in sorted(training_run.items()) if k not in ("run_id", "files") and v}
        dependencies.append(run)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"target": target, "version": version, "invocation": list(invocation)},
            "internalParameters": {"sourceTreeDirty": git_sha.endswith("-dirty")},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {"builder": {"id": builder_id}},
    }
