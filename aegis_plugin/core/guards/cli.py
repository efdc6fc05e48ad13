"""The guards on a built image, as `package` and `lint` run them:

    python -m aegis_plugin.core.guards.cli --sbom sbom.cdx.json --image image.json --layout oci \
        --facts facts.json [--vulndb DB --vex VEX ... --fail-at high --unknown-severity high --today YYYY-MM-DD] \
        --out DIR

Prints a table of the findings, writes `DIR/guards.json` and `DIR/guards.sarif`, and exits 1 when any
finding is an error (2 for unusable input: one `aegis: ...` line).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import List, Optional, Sequence

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.guards import findings as report
from aegis_plugin.core.guards import osv, pitfalls, severity, vex, vulns
from aegis_plugin.core.guards.inventory import from_cyclonedx
from aegis_plugin.core.oci.layout import blob_path


def _layers(image_json: dict, layout: Optional[str]) -> List[pitfalls.Layer]:
    result = []
    for layer in image_json["layers"]:
        blob = blob_path(layout, layer["digest"]) if layout else None
        result.append(pitfalls.Layer(layer["description"], layer["size"], blob))
    return result


def run(args: argparse.Namespace) -> int:
    with open(args.sbom, "rb") as f:
        inventory = from_cyclonedx(f.read())
    with open(args.facts, encoding="utf-8") as f:
        facts_data = json.load(f)
    facts = pitfalls.Facts(**{k: tuple(v) if isinstance(v, list) else v for k, v in facts_data.items()})
    with open(args.image, encoding="utf-8") as f:
        image = json.load(f)
    found = pitfalls.check(inventory, facts, _layers(image, args.layout))
    summary = {"rules": sorted(report.RULES), "packages": len(inventory.packages)}
    if args.vulndb:
        database = osv.load(args.vulndb)
        acceptances, problems = [], []
        for path in args.vex:
            with open(path, "rb") as f:
                accepted, wrong = vex.load(f.read(), path)
            acceptances += accepted
            problems += wrong
        today = datetime.date.fromisoformat(args.today) if args.today else datetime.date.today()
        found += vulns.scan(inventory, database, acceptances, problems,
                            vulns.Policy(args.fail_at, args.unknown_severity), today,
                            vulns.Locations(facts.python_lock, facts.debian_lock, facts.build_file))
        summary.update({"advisories": len(database.advisories), "database_newest": database.newest_modified(),
                        "vex_acceptances": len(acceptances),
                        "fail_at": args.fail_at, "scanned_as_of": today.isoformat()})
    summary["errors"] = len(report.errors(found))
    summary["findings"] = len(found)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "guards.json"), "wb") as f:
        f.write(report.to_json(facts.target, found, summary))
    with open(os.path.join(args.out, "guards.sarif"), "wb") as f:
        f.write(report.to_sarif(found))
    print(report.table(found))
    for finding in found:
        for layer in finding.details.get("layers", []):
            print(f"    layer {layer['layer']}: {layer['bytes'] / 1e6:.1f} MB")
        for entry in finding.details.get("largest_files", []):
            print(f"    {entry['bytes'] / 1e6:8.1f} MB  {entry['path']}")
    scanned = ""
    if "advisories" in summary:
        newest = summary["database_newest"]
        scanned = f"{summary['advisories']} advisories{f' (newest {newest})' if newest else ''}, "
    print(f"{facts.target}: {len(inventory.packages)} packages, {scanned}{len(found)} finding(s), "
          f"{summary['errors']} error(s)")
    return 1 if summary["errors"] else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="aegis-guards", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sbom", required=True, help="the image's CycloneDX SBOM")
    parser.add_argument("--image", required=True, help="image.json (the layers and their sizes)")
    parser.add_argument("--layout", help="the image's OCI layout (to list the largest files)")
    parser.add_argument("--facts", required=True, help="JSON of pitfalls.Facts: what the target declares")
    parser.add_argument("--vulndb", help="the OSV database (directory, .tar.gz, .zip): runs the vulnerability gate")
    parser.add_argument("--vex", action="append", default=[], help="an OpenVEX or CycloneDX VEX document")
    parser.add_argument("--fail-at", default="high", choices=severity.LEVELS, help="the lowest severity that fails")
    parser.add_argument("--unknown-severity", default="high", choices=severity.LEVELS,
                        help="what an advisory without a severity counts as")
    parser.add_argument("--today", help="the date VEX expiries are checked against (default: today)")
    parser.add_argument("--out", required=True, help="where guards.json and guards.sarif go")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (AegisError, OSError, ValueError, KeyError) as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
