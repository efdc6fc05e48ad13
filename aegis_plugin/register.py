"""Aegis: package trained models as reproducible, signed OCI images."""
from aegis_plugin.goals import lint, package, publish, run, test
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.subsystems.mlflow import MlflowSubsystem
from aegis_plugin.subsystems.publish import PublishSubsystem
from aegis_plugin.subsystems.sbom import SbomSubsystem
from aegis_plugin.target_types import DebianBaseTarget, MlflowArtifactsTarget, ModelPackageTarget, OsvDatabaseTarget
from aegis_plugin.util_rules import (
    core_process,
    download,
    guards,
    image,
    layers,
    lineage,
    mlflow,
    model_inputs,
    sbom,
    source_revision,
)


def rules():
    return [
        *package.rules(),
        *lint.rules(),
        *test.rules(),
        *publish.rules(),
        *run.rules(),
        *core_process.rules(),
        *download.rules(),
        *guards.rules(),
        *image.rules(),
        *layers.rules(),
        *lineage.rules(),
        *mlflow.rules(),
        *model_inputs.rules(),
        *sbom.rules(),
        *source_revision.rules(),
        *AegisSubsystem.rules(),
        *ContractTestSubsystem.rules(),
        *SbomSubsystem.rules(),
        *PublishSubsystem.rules(),
        *GuardsSubsystem.rules(),
        *MlflowSubsystem.rules(),
    ]


def target_types():
    return [ModelPackageTarget, MlflowArtifactsTarget, DebianBaseTarget, OsvDatabaseTarget]
