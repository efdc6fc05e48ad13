"""`pants lint` for `model_package`: build the image, then run every guard on it (the vulnerability gate on
the pinned OSV database with VEX, and the pitfalls); print the table, write `guards.json` and
`guards.sarif` to `dist/lint/aegis-guards/<target>/`."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from pants.core.goals.lint import LintResult, LintTargetsRequest
from pants.core.util_rules.partitions import PartitionerType
from pants.engine.addresses import Address, AddressInput
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import AddPrefix, Digest, DigestEntries, FileEntry, MergeDigests, PathGlobs, RemovePrefix, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.logging import LogLevel

from aegis_plugin.core.guards.defaults import SEVERITIES
from aegis_plugin.goals.package import ModelImage, ModelImageRequest, ModelPackageFieldSet
from aegis_plugin.package_types import platform_dir
from aegis_plugin.subsystems.guards import GuardsSubsystem
from aegis_plugin.target_types import (
    FailOnSeverityField,
    ModelIdField,
    OsvDatabaseSha256Field,
    OsvDatabaseSourceField,
    VexField,
)
from aegis_plugin.util_rules.core_process import AegisBuildError
from aegis_plugin.util_rules.guards import GuardFacts, GuardFactsRequest, GuardsRequest, GuardsResult, VulnerabilityGate


@dataclass(frozen=True)
class ModelGuardsFieldSet(FieldSet):
    required_fields = (ModelIdField,)

    vex: VexField
    fail_on_severity: FailOnSeverityField


class ModelGuardsRequest(LintTargetsRequest):
    field_set_type = ModelGuardsFieldSet
    tool_subsystem = GuardsSubsystem
    partitioner_type = PartitionerType.DEFAULT_ONE_PARTITION_PER_INPUT


@dataclass(frozen=True)
class PinnedDatabase:
    files: Digest
    path: str


@rule(desc="Checking the pinned vulnerability database")
async def pinned_database(guards: GuardsSubsystem) -> PinnedDatabase:
    if not guards.database:
        raise AegisBuildError(
            "[aegis-guards].database is not set: the vulnerability gate needs an `osv_database` target "
            "(OSV records pinned by sha256), e.g. `database = \"//3rdparty/vulndb:osv\"`"
        )
    address = await Get(
        Address, AddressInput, AddressInput.parse(guards.database, description_of_origin="[aegis-guards].database")
    )
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(address, description_of_origin="[aegis-guards].database"))
    target = wrapped.target
    if not target.has_field(OsvDatabaseSourceField):
        raise AegisBuildError(f"[aegis-guards].database: {address} is not an `osv_database` target")
    sources = await Get(HydratedSources, HydrateSourcesRequest(target[OsvDatabaseSourceField]))
    # Pants already knows the file's SHA-256 (its content digest): no need to read a large database again.
    (entry,) = await Get(DigestEntries, Digest, sources.snapshot.digest)
    assert isinstance(entry, FileEntry)
    actual, expected = entry.file_digest.fingerprint, target[OsvDatabaseSha256Field].value
    if actual != expected:
        raise AegisBuildError(
            f"{address}: field `sha256`: {entry.path} has sha256 {actual}, not {expected}: if the database was "
            f"updated on purpose, pin the new digest"
        )
    return PinnedDatabase(sources.snapshot.digest, entry.path)


@rule(desc="Running the Aegis guards", level=LogLevel.DEBUG)
async def lint_model(
    request: ModelGuardsRequest.Batch[ModelGuardsFieldSet, Any], guards: GuardsSubsystem
) -> LintResult:
    (field_set,) = request.elements
    for option in ("fail_at", "unknown_severity"):
        if getattr(guards, option) not in SEVERITIES:
            raise AegisBuildError(
                f"[aegis-guards].{option}: {getattr(guards, option)!r} is not one of {', '.join(SEVERITIES)}"
            )
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(field_set.address, description_of_origin="`lint`"))
    package_fs = ModelPackageFieldSet.create(wrapped.target)
    platforms = package_fs.platforms.value
    facts, database, *images = await MultiGet(
        Get(GuardFacts, GuardFactsRequest(field_set.address)),
        Get(PinnedDatabase),
        *(Get(ModelImage, ModelImageRequest(package_fs, platform)) for platform in platforms),
    )
    target_vex, repository_vex = await MultiGet(
        Get(HydratedSources, HydrateSourcesRequest(field_set.vex)),
        Get(
            Snapshot,
            PathGlobs(guards.vex, glob_match_error_behavior=GlobMatchErrorBehavior.error,
                      description_of_origin="the option `[aegis-guards].vex`"),
        ),
    )
    gate = VulnerabilityGate(
        files=await Get(Digest, MergeDigests([database.files, target_vex.snapshot.digest, repository_vex.digest])),
        database=database.path,
        vex=tuple(sorted({*target_vex.snapshot.files, *repository_vex.files})),
        fail_at=field_set.fail_on_severity.value or guards.fail_at,
        unknown_severity=guards.unknown_severity,
        # The day of the scan: VEX acceptances expire on their date, cached results with them.
        today=datetime.date.today().isoformat(),
    )
    results = await MultiGet(
        Get(GuardsResult, GuardsRequest(str(field_set.address), image.digest, facts.facts, gate)) for image in images
    )
    if len(results) == 1:
        report = await Get(Digest, RemovePrefix(results[0].report, "reports"))
        return LintResult(results[0].exit_code, results[0].stdout, "", request.tool_name,
                          partition_description=str(field_set.address), report=report)
    # Each platform's image is guarded on its own; its reports go to a directory named after it.
    unprefixed = await MultiGet(Get(Digest, RemovePrefix(result.report, "reports")) for result in results)
    reports = await MultiGet(
        Get(Digest, AddPrefix(report, platform_dir(platform))) for platform, report in zip(platforms, unprefixed)
    )
    return LintResult(
        max(result.exit_code for result in results),
        "".join(f"{platform}:\n{result.stdout}" for platform, result in zip(platforms, results)),
        "", request.tool_name, partition_description=str(field_set.address),
        report=await Get(Digest, MergeDigests(reports)),
    )


def rules():
    return [*collect_rules(), *ModelGuardsRequest.rules()]
