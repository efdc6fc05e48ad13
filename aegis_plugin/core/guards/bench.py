"""Scan-speed benchmark: prints how long loading an OSV database and scanning an image's SBOM against it take.

    ./pants run aegis_plugin/core/guards/bench.py -- --vulndb ../shared/vulndb/pypa-advisory-database \\
        --sbom dist/models/fraud/fraud/sbom.cdx.json [--repeat 20]

(build-support/bench_scan.sh runs it on the demo.) Figures, not assertions: a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import time
from typing import Optional, Sequence

from aegis_plugin.core.guards import osv, vulns
from aegis_plugin.core.guards.inventory import Package, from_cyclonedx


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vulndb", required=True)
    parser.add_argument("--sbom", required=True)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    database = osv.load(args.vulndb)
    loaded = time.perf_counter() - started
    with open(args.sbom, "rb") as f:
        inventory = from_cyclonedx(f.read())
    locations = vulns.Locations("python.lock", "debian.lock", "BUILD")
    today = datetime.date.today()
    started = time.perf_counter()
    for _ in range(args.repeat):
        found = vulns.scan(inventory, database, [], [], vulns.Policy(), today, locations)
    per_scan = (time.perf_counter() - started) / args.repeat
    # Every PyPI package the database names, each at version 0.0.1: the worst case, every range evaluated.
    names = sorted({name for ecosystem, name in database.by_package if ecosystem == "PyPI"})
    worst = type(inventory)("", [Package("PyPI", name, "0.0.1", f"pkg:pypi/{name}@0.0.1") for name in names])
    started = time.perf_counter()
    worst_found = vulns.scan(worst, database, [], [], vulns.Policy(), today, locations)
    worst_time = time.perf_counter() - started
    print(f"database: {len(database.advisories)} advisories, loaded in {loaded:.2f} s")
    print(f"image: {len(inventory.packages)} packages, {len(found)} finding(s), scanned in {per_scan * 1000:.2f} ms "
          f"(mean of {args.repeat})")
    print(f"every PyPI package of the database ({len(names)}) at 0.0.1: {len(worst_found)} finding(s) in "
          f"{worst_time * 1000:.0f} ms")


if __name__ == "__main__":
    main()
