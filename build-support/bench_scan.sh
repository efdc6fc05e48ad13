#!/usr/bin/env bash
# Scan-speed benchmark of the vulnerability gate: the demo image's SBOM against the PyPA advisory snapshot
# (../shared/vulndb, or the directory given), then the whole `pants lint` of the demo. Prints figures only.
#
#   build-support/bench_scan.sh [VULNDB_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
vulndb="$(realpath "${1:-../shared/vulndb/pypa-advisory-database}")"
[[ -d "${vulndb}" ]] || { echo "bench_scan.sh: no OSV database at ${vulndb}" >&2; exit 2; }
./pants --no-pantsd package models/fraud:: >/dev/null 2>&1
./pants --no-pantsd run aegis_plugin/core/guards/bench.py -- --vulndb "${vulndb}" \
  --sbom "${PWD}/dist/models/fraud/fraud/sbom.cdx.json" 2>/dev/null
seconds_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
start=$(date +%s%N)
./pants --no-pantsd lint models/fraud:: >/dev/null 2>&1
echo "pants lint models/fraud:: (image already built and cached): $(seconds_since "${start}") s"
start=$(date +%s%N)
./pants --no-pantsd --no-local-cache lint models/fraud:: >/dev/null 2>&1
echo "pants lint models/fraud:: with --no-local-cache (the image rebuilt, every process run again): $(seconds_since "${start}") s"
