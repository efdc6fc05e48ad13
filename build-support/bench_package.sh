#!/usr/bin/env bash
# Prints the figures of `./pants package models/fraud::`: cold time in a fresh clone with an empty Pants
# store, no-op time with pantsd, the time of the SBOM step, the image's size by layer and its manifest
# digest, and the SBOM's components by type and completeness. A benchmark, not a test.
#
#   build-support/bench_package.sh [TARGET]      (default: models/fraud::)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${1:-models/fraud::}"
work="$(mktemp -d)"
source build-support/bench_timing.sh  # stop_pantsd
trap 'stop_pantsd "${work}/clone"; rm -rf "${work}"' EXIT

git clone --quiet "${PWD}" "${work}/clone"
cd "${work}/clone"
./pants --version >/dev/null 2>&1  # the launcher's one-time venv and pex are not what is measured
store=(--local-store-dir="${work}/store" --named-caches-dir="${work}/named_caches")

seconds() { local start=$SECONDS; "$@" >"${work}/log" 2>&1 || { cat "${work}/log"; exit 1; }; echo $((SECONDS - start)); }
echo "cold package (empty store, no pantsd): $(seconds ./pants --no-pantsd "${store[@]}" package "${target}") s"
seconds ./pants "${store[@]}" package "${target}" >/dev/null  # starts pantsd
start=$(date +%s.%N)
./pants "${store[@]}" package "${target}" >/dev/null 2>&1
echo "no-op package with pantsd: $(python3 -c "print(round($(date +%s.%N) - ${start}, 2))") s"
# A new allow pattern changes only the SBOM process's argv: it runs again, alone; its log lines time it.
./pants "${store[@]}" --level=debug --aegis-sbom-allow="+['/bench-$RANDOM']" package "${target}" >"${work}/log" 2>&1
python3 - "${work}/log" <<'PY'
import re, sys
from datetime import datetime
times = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\d\d:\d\d:\d\d\.\d\d) \[DEBUG\] (Starting|Completed): Writing the SBOMs of (\S+)", line)
    if m:
        times.setdefault(m.group(3), {})[m.group(2)] = datetime.strptime(m.group(1), "%H:%M:%S.%f")
for target, t in sorted(times.items()):
    print(f"SBOM step of {target} (both documents, validation, completeness): "
          f"{(t['Completed'] - t['Starting']).total_seconds():.2f} s")
PY

for summary in dist/*/*/*/image.json dist/*/*/image.json; do
  [[ -f "${summary}" ]] || continue
  python3 - "${summary}" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: manifest {s['manifest_digest']}")
for layer in s["layers"]:
    print(f"  {layer['size'] / 1e6:9.3f} MB  {layer['digest'][:19]}  {layer['description']}")
print(f"  {s['compressed_size'] / 1e6:9.3f} MB  total (compressed)")
PY
done
for bom in dist/*/*/*/sbom.cdx.json dist/*/*/sbom.cdx.json; do
  [[ -f "${bom}" ]] || continue
  python3 - "${bom}" "$(dirname "${bom}")/sbom-completeness.json" <<'PY'
import collections, json, sys
bom, report = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def walk(components):
    for c in components:
        yield c
        yield from walk(c.get("components", []))
kinds = collections.Counter(
    "debian package" if c.get("purl", "").startswith("pkg:deb/") else
    "python distribution" if c.get("purl", "").startswith("pkg:pypi/") else c["type"]
    for c in walk(bom["components"])
)
print(f"{sys.argv[1]}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
print(f"  files attributed: {report['attributed']} of {report['total']} ({100 * report['attributed_share']:.2f}%), "
      f"allow-listed {report['by_type']['allowed']}, unattributed {len(report['unattributed'])}; by type "
      + ", ".join(f"{k} {n}" for k, n in sorted(report["by_type"].items())))
PY
done
