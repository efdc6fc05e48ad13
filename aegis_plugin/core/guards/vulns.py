"""The vulnerability gate: every package of the image against the pinned OSV database, findings at or
above the severity gate fail, VEX acceptances (justified, unexpired, naming the vulnerability and the
product) turn a finding into a note."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import List, Sequence

from aegis_plugin.core.guards import osv, severity
from aegis_plugin.core.guards.findings import Finding
from aegis_plugin.core.guards.inventory import Inventory, Package
from aegis_plugin.core.guards.vex import Acceptance


@dataclass(frozen=True)
class Policy:
    fail_at: str = "high"  # the lowest severity that fails
    unknown: str = "high"  # what an advisory without any severity counts as


@dataclass(frozen=True)
class Locations:
    """The repository files findings point at (SARIF locations)."""

    python_lock: str
    debian_lock: str
    target: str  # the BUILD file of the target (for VEX problems)


def scan(inventory: Inventory, database: osv.Database, acceptances: Sequence[Acceptance], vex_problems: Sequence[str],
         policy: Policy, today: datetime.date, locations: Locations) -> List[Finding]:
    findings = [Finding("vex", "error", problem, locations.target) for problem in vex_problems]
    used_expired = set()
    for package in inventory.packages:
        location = locations.python_lock if package.ecosystem == "PyPI" else locations.debian_lock
        for record, entry in _matches(database, package):
            ids = [record["id"], *(record.get("aliases") or [])]
            level_name = severity.of(record, entry)
            effective = level_name or policy.unknown
            subject = f"{package.name} {package.version}"
            fixed = _fixed_versions(entry)
            advice = f"; fixed in {', '.join(fixed)}" if fixed else "; no fixed version"
            message = (f"{subject}: {record['id']}"
                       + (f" ({', '.join(a for a in ids[1:] if a.startswith('CVE-'))})" if any(
                           a.startswith("CVE-") for a in ids[1:]) else "")
                       + f", severity {level_name or 'unknown (counted as ' + policy.unknown + ')'}{advice}")
            covering = [a for a in acceptances if a.covers(ids, package.purl, inventory.image_purl)]
            valid = [a for a in covering if a.expires is None or a.expires >= today]
            for expired in (a for a in covering if a not in valid):
                if expired.origin not in used_expired:
                    used_expired.add(expired.origin)
                    findings.append(Finding("vex", "error", f"{expired.origin} accepting {record['id']} for {subject} "
                                                            f"expired on {expired.expires}", locations.target))
            if valid:
                level = "note"
                message += f"; accepted by {valid[0].origin}: {valid[0].justification}"
            else:
                level = "error" if severity.rank(effective) >= severity.rank(policy.fail_at) else "warning"
            findings.append(Finding("vulnerability", level, message, location, package.purl, record["id"],
                                    level_name or "unknown", {"aliases": ids[1:], "fixed": fixed}))
    return findings


def _matches(database: osv.Database, package: Package):
    """(record, affected entry) for each advisory affecting the package; a Debian binary package is looked
    up by its source package too, whose version the advisories use."""
    seen = set()
    lookups = [(package.name, package.version)]
    if package.source and package.source_version:
        lookups.append((package.source, package.source_version))
    for name, version in lookups:
        for record in database.candidates(package.ecosystem, name):
            if record["id"] in seen:
                continue
            entry = osv.affected(record, package.ecosystem, name, version)
            if entry is not None:
                seen.add(record["id"])
                yield record, entry


def _fixed_versions(entry) -> List[str]:
    return sorted({event["fixed"] for r in entry.get("ranges") or [] if r.get("type") == "ECOSYSTEM"
                   for event in r.get("events") or [] if "fixed" in event})
