"""`pants test` for `model_package`: the contract test of the built image, not of the source tree.

The test process's inputs are the image's OCI layout, the examples and the driver, so its result is cached
by the image digest: re-running without changes runs nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.core.goals.package import BuiltPackage
from pants.core.goals.test import TestFieldSet, TestRequest, TestResult, TestSubsystem
from pants.core.util_rules.system_binaries import BinaryPathRequest, BinaryPaths
from pants.engine.fs import Digest, DigestSubset, MergeDigests, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import HydratedSources, HydrateSourcesRequest, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from aegis_plugin.goals.package import ModelPackageFieldSet
from aegis_plugin.package_types import built_model_image
from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.target_types import ModelExamplesField, ModelIdField
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreTool, CoreToolPex, CoreToolPexRequest


@dataclass(frozen=True)
class ModelContractTestFieldSet(TestFieldSet):
    required_fields = (ModelIdField,)

    sources: ModelExamplesField


class ModelContractTestRequest(TestRequest):
    tool_subsystem = ContractTestSubsystem
    field_set_type = ModelContractTestFieldSet


@rule(desc="Contract-testing a model image", level=LogLevel.DEBUG)
async def run_contract_test(
    batch: ModelContractTestRequest.Batch,
    subsystem: ContractTestSubsystem,
    test_subsystem: TestSubsystem,
) -> TestResult:
    field_set = batch.single_element
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(field_set.address, description_of_origin="the `test` goal")
    )
    driver, package, examples, bwrap, gpus = await MultiGet(
        Get(CoreToolPex, CoreToolPexRequest(CoreTool.CONTRACT_TEST, subsystem.resolve)),
        Get(BuiltPackage, ModelPackageFieldSet, ModelPackageFieldSet.create(wrapped.target)),
        Get(HydratedSources, HydrateSourcesRequest(field_set.sources)),
        Get(BinaryPaths, BinaryPathRequest(binary_name="bwrap", search_path=("/usr/bin", "/bin"))),
        # Which NVIDIA GPUs this machine has: the contract of a CUDA image depends on it (served on the GPU, or
        # refused without one), so it is part of the test's cache key and a CPU machine's result is never
        # reused on a GPU machine (or the other way round).
        Get(ProcessResult, Process(
            ("/bin/sh", "-c", "ls /dev | grep -E '^nvidia(ctl|[0-9]+)$' || true"),
            description="Listing the NVIDIA GPUs", level=LogLevel.DEBUG, cache_scope=ProcessCacheScope.PER_SESSION,
        )),
    )
    if not examples.snapshot.files:
        raise AegisBuildError(
            f"{field_set.address}: field `examples`: the contract test needs example requests with their "
            f"expected outputs, e.g. `examples=\"server/examples.json\"`"
        )
    if not bwrap.first_path:
        raise AegisBuildError(
            f"{field_set.address}: the contract test runs the image with bwrap, which is not installed "
            f"(Debian: `apt-get install bubblewrap`)"
        )
    # Only the OCI layout goes in: image.tar holds the same bytes again.
    image = built_model_image(package)
    layout = await Get(
        Digest,
        RemovePrefix(
            await Get(Digest, DigestSubset(package.digest, PathGlobs([f"{image.relpath}/**"]))),
            image.output_path,
        ),
    )
    argv = ["--layout", os.path.basename(image.relpath or ""), "--examples", examples.snapshot.files[0], "--report", "contract-report.json",
            "--ready-timeout", str(subsystem.ready_timeout)]
    if len(image.platforms) > 1:  # an image index: each platform's image in turn (another architecture emulated)
        argv += [f"--platform={platform}" for platform, _ in image.platforms]
    process = await Get(
        Process,
        VenvPexProcess(
            driver.pex,
            argv=argv,
            input_digest=await Get(Digest, MergeDigests([layout, examples.snapshot.digest])),
            extra_env={"PATH": f"{os.path.dirname(bwrap.first_path.path)}:/usr/bin:/bin",
                       "AEGIS_CONTRACT_GPUS": " ".join(gpus.stdout.decode().split()) or "none"},
            output_files=("contract-report.json",),
            description=f"Contract test of {field_set.address}",
            level=LogLevel.DEBUG,
            timeout_seconds=(subsystem.ready_timeout + 120) * max(1, len(image.platforms)),
        ),
    )
    result = await Get(FallibleProcessResult, Process, process)
    # The JSON report (every check, the digests, the container's log tail) goes to dist/ for CI.
    report = await Get(Snapshot, Digest, result.output_digest)
    return TestResult.from_fallible_process_result(
        result, field_set.address, test_subsystem.output, extra_output=report, log_extra_output=True
    )


def rules():
    return [*collect_rules(), *ModelContractTestRequest.rules()]
