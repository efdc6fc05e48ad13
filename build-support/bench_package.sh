#!/usr/bin/env bash
# Prints the figures of `./pants package models/fraud::`: cold time in a fresh clone with an empty Pants
# store, no-op time with pantsd, the image's size by layer and its manifest digest. A benchmark, not a test.
#
#   build-support/bench_package.sh [TARGET]      (default: models/fraud::)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${1:-models/fraud::}"
work="$(mktemp -d)"
trap 'cd / && (cd "${work}/clone" 2>/dev/null && ./pants --pantsd kill-pantsd >/dev/null 2>&1 || true); rm -rf "${work}"' EXIT

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
