"""What `package` hands the other goals: the typed artifact of a `model_package` (as Pants' docker backend's
`package_types.py`), so that `test`, `run` and `publish` never cut paths out of dist/ or re-read image.json."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.util.frozendict import FrozenDict


@dataclass(frozen=True)
class BuiltModelImage(BuiltPackageArtifact):
    """The image a `model_package` builds, typed for the goals that use it (`test`, `run`, `publish`), as Pants'
    `BuiltDockerImage`: `relpath` is its OCI layout directory, e.g. `models.fraud/fraud/oci`."""

    manifest_digest: str = ""  # "sha256:<hex>"
    model_artifact_digest: str = ""  # the ModelPack artifact's manifest in the same layout; "" when turned off
    repository: str = ""  # without registry when the target names none
    tag: str = ""
    # (platform, the Debian base layer's blob digest) of each platform's image: materials of the SLSA provenance
    base_layers: tuple[tuple[str, str], ...] = ()
    git_sha: str = ""  # the source revision of its inputs
    lockfiles: tuple[str, ...] = ()  # the runtime resolve's lockfile, then the base's Debian lockfile
    registry: FrozenDict[str, Any] | None = None  # the MLflow provenance of the model files (util_rules/mlflow.py)
    # (platform, manifest digest) of each platform's image; with several, `manifest_digest` is their image index
    platforms: tuple[tuple[str, str], ...] = ()

    @property
    def output_path(self) -> str:
        """The package's directory under dist/: the layout, image.json and the SBOMs."""
        return os.path.dirname(self.relpath or "")

    @property
    def is_index(self) -> bool:
        """Several platforms' images under one image index."""
        return len(self.platforms) > 1

    def platform_output_path(self, platform: str) -> str:
        """The directory of one platform's image.json, SBOMs and image.tar under dist/."""
        if self.is_index:
            return f"{self.output_path}/{platform_dir(platform)}"
        return self.output_path


def platform_dir(platform: str) -> str:
    """The directory of one platform's files in a multi-platform package (and its lint reports)."""
    return platform.replace("/", "-")  # linux/arm64 -> linux-arm64


def built_model_image(package: BuiltPackage) -> BuiltModelImage:
    """The image of a `model_package`'s BuiltPackage."""
    return next(a for a in package.artifacts if isinstance(a, BuiltModelImage))
