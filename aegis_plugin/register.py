"""Aegis: package trained models as reproducible, signed OCI images."""
from aegis_plugin.goals import package, run, test
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.target_types import DebianBaseTarget, ModelPackageTarget
from aegis_plugin.util_rules import contract_driver, core_process, image, layers, source_revision


def rules():
    return [
        *package.rules(),
        *test.rules(),
        *run.rules(),
        *contract_driver.rules(),
        *core_process.rules(),
        *image.rules(),
        *layers.rules(),
        *source_revision.rules(),
        *AegisSubsystem.rules(),
        *ContractTestSubsystem.rules(),
    ]


def target_types():
    return [ModelPackageTarget, DebianBaseTarget]
