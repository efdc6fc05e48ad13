"""`/app/manifest.yaml`: what the image is, in a flat `key: value` YAML any tool (or a human) can read.

Written by the build and read by the server, with no YAML library on either side: values are JSON strings,
which YAML accepts as double-quoted scalars.
"""
from __future__ import annotations

import json

FIELDS = ("model_id", "version", "git_sha", "framework", "framework_version", "accelerator", "signed_by")


def render(values: dict[str, str]) -> bytes:
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise ValueError(f"manifest is missing {missing}")
    lines = ["# Written by Aegis at build time; describes this image."]
    lines += [f"{key}: {json.dumps(str(values[key]))}" for key in FIELDS]
    return ("\n".join(lines) + "\n").encode()


def load(path: str) -> dict[str, str]:
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition(":")
                values[key.strip()] = json.loads(value.strip())
    return values
