"""Running the guards tool (`aegis_plugin/core/guards/cli.py`) on a built image.

`package` runs it for the pitfalls and fails on an error; `lint` runs it with the vulnerability gate too and
reports. The process is an ordinary cacheable one: its inputs are the image's files, the target's facts, the
pinned database, the VEX documents and the scan date (so an acceptance expires on its day, cache or not).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.engine.fs import CreateDigest, Digest, DigestContents, DigestSubset, FileContent, MergeDigests, PathGlobs
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.util_rules.core_process import CoreTool, CoreToolPexRequest, core_error

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
    pex = await Get(VenvPex, PexRequest, await Get(PexRequest, CoreToolPexRequest(CoreTool.GUARDS, guards.resolve)))
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


def rules():
    return collect_rules()
