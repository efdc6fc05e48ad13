"""`/app/manifest.yaml`: what the image is, in a flat `key: value` YAML any tool (or a human) can read.

Written by the build and read by the server, with no YAML library on either side: values are JSON strings,
which YAML accepts as double-quoted scalars. `load` also accepts plain (unquoted) scalars, as YAML does, so a
hand-edited manifest still loads.
"""
from __future__ import annotations

import json
from typing import Dict

FIELDS = ("model_id", "version", "git_sha", "framework", "framework_version", "accelerator", "signed_by")
OPTIONAL_FIELDS = ("license", "owner")  # from the model card, when it declares them
# Where the weights came from, when a model registry (MLflow) served them; then also one key per parameter and
# metric of the training run, `mlflow_param.<name>` and `mlflow_metric.<name>`, in name order.
REGISTRY_FIELDS = (
    "mlflow_source", "mlflow_run_id", "mlflow_experiment", "mlflow_registered_model", "mlflow_model_version",
    "mlflow_tracking_uri", "training_git_sha",
)
REGISTRY_PREFIXES = ("mlflow_param.", "mlflow_metric.")


def render(values: Dict[str, str]) -> bytes:
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise ValueError(f"manifest is missing {missing}")
    known = (*FIELDS, *OPTIONAL_FIELDS, *REGISTRY_FIELDS)
    per_run = sorted(key for key in values if key.startswith(REGISTRY_PREFIXES))
    unknown = sorted(set(values) - set(known) - set(per_run))
    if unknown:
        raise ValueError(f"manifest has unknown fields {unknown}")
    bad = [key for key in per_run if not key.split(".", 1)[1] or any(c in key for c in ": \n#")]
    if bad:
        raise ValueError(f"manifest keys {bad} are not plain names")
    lines = ["# Written by Aegis at build time; describes this image."]
    lines += [f"{key}: {json.dumps(str(values[key]))}" for key in (*known, *per_run) if key in values]
    return ("\n".join(lines) + "\n").encode()


def parse(text: str, source: str = "manifest") -> Dict[str, str]:
    """The manifest's keys and values (all strings); ValueError naming `source` and the line otherwise."""
    values: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, colon, raw = stripped.partition(":")
        key, raw = key.strip(), raw.strip()
        if not colon or not key:
            raise ValueError(f"{source}:{number}: expected `key: value`, got {stripped[:60]!r}")
        if key in values:
            raise ValueError(f"{source}:{number}: {key!r} is given twice")
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError as e:
                raise ValueError(
                    f"{source}:{number}: the value of {key!r} is not a valid quoted string ({e})"
                ) from None
            if not isinstance(value, str):
                raise ValueError(f"{source}:{number}: the value of {key!r} is not a string")
        else:
            value = raw
        values[key] = value
    return values


def load(path: str) -> Dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), path)
