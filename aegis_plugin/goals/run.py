"""`pants run` for `model_package`: serve the packaged image locally (`-- --port N` picks the port)."""
from __future__ import annotations

import os
import platform as py_platform
from dataclasses import dataclass

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexRequest
from pants.backend.python.util_rules.pex_environment import PexEnvironment, PythonExecutable
from pants.core.goals.package import BuiltPackage
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.fs import Digest, DigestSubset, MergeDigests, PathGlobs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest

from aegis_plugin.goals.package import ModelPackageFieldSet
from aegis_plugin.core.python.interpreter import MACHINES
from aegis_plugin.package_types import built_model_image
from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.target_types import ModelIdField
from aegis_plugin.util_rules.core_process import CORE_INTERPRETER_CONSTRAINTS, CoreTool, CoreToolPexRequest


@dataclass(frozen=True)
class ModelPackageRunFieldSet(RunFieldSet):
    required_fields = (ModelIdField,)
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED


@rule(desc="Preparing to serve a model image")
async def run_model_package(
    field_set: ModelPackageRunFieldSet, pex_env: PexEnvironment, contract: ContractTestSubsystem
) -> RunRequest:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(field_set.address, description_of_origin="the `run` goal")
    )
    environment = pex_env.in_sandbox(working_directory=None)
    package, driver, python = await MultiGet(
        Get(BuiltPackage, ModelPackageFieldSet, ModelPackageFieldSet.create(wrapped.target)),
        Get(VenvPex, VenvPexRequest(await Get(PexRequest, CoreToolPexRequest(CoreTool.CONTRACT_SERVE, contract.resolve)), environment)),
        Get(PythonExecutable, InterpreterConstraints, CORE_INTERPRETER_CONSTRAINTS),
    )
    image = built_model_image(package)
    layout = await Get(Digest, DigestSubset(package.digest, PathGlobs([f"{image.relpath}/**"])))
    # Of an image index, this machine's platform when there is one (another is served under emulation).
    platforms = [platform for platform, _ in image.platforms]
    host = [platform for platform in platforms if MACHINES.get(platform) == py_platform.machine()]
    chosen = ["--platform", (host or platforms)[0]] if len(platforms) > 1 else []
    return RunRequest(
        digest=await Get(Digest, MergeDigests([layout, driver.digest])),
        args=[os.path.join("{chroot}", driver.pex.argv0), "--layout", os.path.join("{chroot}", image.relpath or ""),
              *chosen],
        extra_env=environment.environment_dict(python=python),
        append_only_caches={**environment.append_only_caches, **(driver.append_only_caches or {})},
    )


def rules():
    return [*collect_rules(), *ModelPackageRunFieldSet.rules()]
