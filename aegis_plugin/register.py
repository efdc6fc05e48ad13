"""Aegis: package trained models as reproducible, signed OCI images."""
from aegis_plugin.goals import package, publish, run, test
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.subsystems.publish import PublishSubsystem
from aegis_plugin.subsystems.sbom import SbomSubsystem
from aegis_plugin.target_types import DebianBaseTarget, ModelPackageTarget
from aegis_plugin.util_rules import core_process, download, image, layers, sbom, source_revision


def rules():
    return [
        *package.rules(),
        *test.rules(),
        *publish.rules(),
        *run.rules(),
        *core_process.rules(),
        *download.rules(),
        *image.rules(),
        *layers.rules(),
        *sbom.rules(),
        *source_revision.rules(),
        *AegisSubsystem.rules(),
        *ContractTestSubsystem.rules(),
        *SbomSubsystem.rules(),
        *PublishSubsystem.rules(),
    ]


def target_types():
    return [ModelPackageTarget, DebianBaseTarget]
