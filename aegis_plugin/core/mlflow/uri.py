"""MLflow model URIs that name one immutable thing: `runs:/<run_id>/<path>` or `models:/<name>/<version>`.

A registered model's alias (`models:/fraud@champion`), stage (`models:/fraud/Production`) or `latest` names
whatever the registry says today; a build takes none of them. The pin helper accepts an alias once, to resolve
it to a version (`parse(..., allow_alias=True)`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from aegis_plugin.core.errors import AegisError

RUN_ID = re.compile(r"[0-9a-f]{32}")
_VERSION = re.compile(r"[1-9][0-9]*")
_STAGES = ("none", "staging", "production", "archived", "latest")


class ModelUriError(AegisError, ValueError):
    """One line: what is wrong with the URI and what to write instead."""


@dataclass(frozen=True)
class ModelUri:
    """`runs:/RUN_ID/PATH` (run_id and path set) or `models:/NAME/VERSION` (name and version set; alias
    instead of version only when parsed with allow_alias)."""

    run_id: Optional[str] = None
    path: Optional[str] = None
    name: Optional[str] = None
    version: Optional[str] = None
    alias: Optional[str] = None

    def __str__(self) -> str:
        if self.run_id is not None:
            return f"runs:/{self.run_id}/{self.path}"
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def artifact_path(path: str, what: str = "artifact path") -> str:
    """A relative path inside a run's artifacts, normalised (no leading or doubled `/`, no `.` or `..`)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\\" in path:
        raise ModelUriError(f"{what} {path!r} must be a relative path inside the run's artifacts, without `..`")
    return "/".join(parts)


def parse(uri: str, allow_alias: bool = False) -> ModelUri:
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].partition("/")
        if not RUN_ID.fullmatch(run_id):
            raise ModelUriError(f"{uri!r}: a run id is 32 lowercase hex digits, got {run_id!r}")
        if not path:
            raise ModelUriError(f"{uri!r}: name the artifact path after the run id (`runs:/<run_id>/model`)")
        return ModelUri(run_id=run_id, path=artifact_path(path))
    if uri.startswith("models:/"):
        rest = uri[len("models:/"):]
        name, at, alias = rest.partition("@")
        if at:
            if not allow_alias:
                raise ModelUriError(
                    f"{uri!r} is an alias, which moves when the registry is told to: pin the version it names "
                    f"today (`models:/{name}/<version>`; the pin helper resolves it)"
                )
            if not name or not alias or "/" in alias:
                raise ModelUriError(f"{uri!r}: expected `models:/<name>@<alias>`")
            return ModelUri(name=name, alias=alias)
        name, _, version = rest.rpartition("/")
        if not name or not version:
            raise ModelUriError(f"{uri!r}: expected `models:/<name>/<version>` with a version number")
        if version.lower() in _STAGES:
            raise ModelUriError(
                f"{uri!r} names a stage ({version!r}), which moves: pin a version number (`models:/{name}/<n>`)"
            )
        if not _VERSION.fullmatch(version):
            raise ModelUriError(f"{uri!r}: the version must be a number such as 3, got {version!r}")
        return ModelUri(name=name, version=version)
    raise ModelUriError(f"{uri!r}: expected `runs:/<run_id>/<path>` or `models:/<name>/<version>`")
