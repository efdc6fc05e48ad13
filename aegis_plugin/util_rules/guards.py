"""Running the guards tool (`aegis_plugin/core/guards/cli.py`) on a built image.

`package` runs it for the pitfalls and fails on an error; `lint` runs it with the vulnerability gate too and
reports. The process is an ordinary cacheable one: its inputs are the image's files, the target's facts, the
pinned database, the VEX documents and the scan date (so an acceptance expires on its day, cache or not).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonRequirementResolveField, PythonRequirementsField
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.base.specs import DirGlobSpec, RawSpecs
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Targets, WrappedTarget, WrappedTargetRequest
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from aegis_plugin.core.python.requirements_lock import canonical_name
from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.target_types import AcceleratorField, FrameworkField, SizeBudgetField
from aegis_plugin.util_rules.core_process import CoreTool, CoreToolPex, CoreToolPexRequest, core_error, freeze
from aegis_plugin.util_rules.model_inputs import ModelInputs, ModelInputsRequest

REPORT_FILES = ("guards.json", "guards.sarif")


@dataclass(frozen=True)
class VulnerabilityGate:
    files: Digest  # the database and the VEX documents
    database: str  # path of the database in `files`
    vex: tuple[str, ...]  # paths of the VEX documents in `files`
    fail_at: str
    unknown_severity: str
    today: str  # YYYY-MM-DD


@dataclass(frozen=True)
class GuardsRequest:
    context: str  # the target, for errors
    image: Digest  # sbom.cdx.json, image.json and oci/ at the root
    facts: FrozenDict[str, Any]  # core/guards/pitfalls.Facts
    gate: Optional[VulnerabilityGate] = None


@dataclass(frozen=True)
class GuardsResult:
    exit_code: int  # 0 clean, 1 some finding is an error
    stdout: str  # the table and the summary line
    report: Digest  # guards.json, guards.sarif
    errors: tuple[str, ...]  # the messages of the error findings


@rule(desc="Checking a model image", level=LogLevel.DEBUG)
async def run_guards(request: GuardsRequest, guards: GuardsSubsystem) -> GuardsResult:
    pex = (await Get(CoreToolPex, CoreToolPexRequest(CoreTool.GUARDS, guards.resolve))).pex
    facts = await Get(Digest, CreateDigest([FileContent("facts.json", json.dumps(request.facts, sort_keys=True,
                                                                                  default=dict).encode())]))
    argv = ["--sbom", "sbom.cdx.json", "--image", "image.json", "--layout", "oci", "--facts", "facts.json"]
    inputs = [request.image, facts]
    gate = request.gate
    if gate is not None:
        argv += ["--vulndb", gate.database, *(f"--vex={path}" for path in gate.vex), "--fail-at", gate.fail_at,
                 "--unknown-severity", gate.unknown_severity, "--today", gate.today]
        inputs.append(gate.files)
    process = await Get(
        Process,
        VenvPexProcess(
            pex,
            argv=(*argv, "--out", "reports"),
            input_digest=await Get(Digest, MergeDigests(inputs)),
            output_directories=("reports",),
            description=f"Checking {request.context}" + (" against the vulnerability database" if gate else ""),
            level=LogLevel.DEBUG,
        ),
    )
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code not in (0, 1):  # 1: findings at the failing level, reported in guards.json
        raise core_error(request.context, result.stderr)
    report = await Get(Digest, DigestSubset(result.output_digest, PathGlobs([f"reports/{n}" for n in REPORT_FILES])))
    contents = await Get(DigestContents, DigestSubset(report, PathGlobs(["reports/guards.json"])))
    findings = json.loads(contents[0].content)["findings"]
    errors = tuple(f["message"] for f in findings if f["level"] == "error")
    return GuardsResult(result.exit_code, result.stdout.decode(), report, errors)


@dataclass(frozen=True)
class GuardFactsRequest:
    address: Address  # of a model_package


@dataclass(frozen=True)
class GuardFacts:
    facts: FrozenDict[str, Any]  # core/guards/pitfalls.Facts of the target


@rule
async def guard_facts(request: GuardFactsRequest, guards: GuardsSubsystem, python_setup: PythonSetup) -> GuardFacts:
    wrapped, inputs = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="the pitfall guards")),
        Get(ModelInputs, ModelInputsRequest(request.address)),
    )
    model = wrapped.target
    # The requirement targets live next to their resolve's lockfile: read only those BUILD files, so an error
    # in an unrelated BUILD file elsewhere in the repository cannot fail this package.
    resolves = [r for r in (*guards.training_resolves, inputs.resolve) if r in python_setup.resolves]
    requirement_dirs = sorted({os.path.dirname(python_setup.resolves[r]) for r in resolves})
    addresses = await Get(
        Addresses,
        RawSpecs(
            dir_globs=tuple(DirGlobSpec(d) for d in requirement_dirs),
            description_of_origin="the directories of the resolves' lockfiles ([python].resolves)",
            unmatched_glob_behavior=GlobMatchErrorBehavior.ignore,
        ),
    )
    training: set[str] = set()
    runtime: set[str] = set()
    for tgt in await Get(Targets, Addresses, addresses):
        if not tgt.has_field(PythonRequirementsField):
            continue
        resolve = tgt[PythonRequirementResolveField].normalized_value(python_setup)
        names = {canonical_name(r.project_name) for r in tgt[PythonRequirementsField].value}
        if resolve in guards.training_resolves:
            training |= names
        elif resolve == inputs.resolve:
            runtime |= names
    return GuardFacts(
        freeze(
            {
                "target": str(model.address),
                "build_file": os.path.join(model.address.spec_path, "BUILD"),
                "python_lock": python_setup.resolves[inputs.resolve],
                "debian_lock": inputs.base_lockfile.snapshot.files[0],
                "accelerator": model[AcceleratorField].value,
                "framework": canonical_name(model[FrameworkField].value),
                "size_budget_mb": model[SizeBudgetField].value,
                "deny_python": list(guards.deny_python),
                "deny_debian": list(guards.deny_debian),
                "training_only": sorted(training - runtime),
            }
        )
    )


def rules():
    return collect_rules()
