#!/usr/bin/env bash
# Prints, from one run on this machine, what the PyTorch demo (models/turbine: torch 2.4.1 with its CUDA 12.1
# wheels, ~5.5 GB installed) costs to package: cold (empty Pants store and caches: the wheels are downloaded),
# a one-line handler edit and a no-op with pantsd, the image's layers and the highest RSS of any process during
# the cold build. A benchmark, not a test: it prints figures and asserts nothing.
#
#   build-support/bench_pytorch.sh
#
# Needs ~25 GB free under /var/tmp (the wheels, the installed distributions, the store and the image).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source build-support/bench_timing.sh  # now, since, timed, stop_pantsd
repo="${PWD}"
work="$(mktemp -d /var/tmp/aegis-bench-pytorch.XXXXXX)"
rss_pid=""
cleanup() {
  [[ -n "${rss_pid}" ]] && kill "${rss_pid}" 2>/dev/null || true
  stop_pantsd "${work}/clone"
  rm -rf "${work}"
}
trap cleanup EXIT


git clone --quiet "${repo}" "${work}/clone"
cd "${work}/clone"
git config user.email bench@aegis.invalid && git config user.name bench
./pants --version >/dev/null 2>&1  # the launcher's one-time venv and pex are not what is measured
pants() { ./pants --local-store-dir="${work}/store" --named-caches-dir="${work}/named_caches" "$@"; }
target=models/turbine:turbine

python3 build-support/peak_rss.py "${work}/rss" &
rss_pid=$!
echo "cold package ${target} (empty store and caches, no pantsd)…"
cold=$(timed cold pants --no-pantsd -ldebug package "${target}")
kill "${rss_pid}"; rss_pid=""
timed warm pants package "${target}" >/dev/null  # starts pantsd
echo "# edit $(date +%s%N)" >>models/turbine/server/handler.py
edit=$(timed edit pants package "${target}")
noop=$(timed noop pants package "${target}")

echo
echo "All figures in seconds, measured in this run."
printf '%-48s %9s\n' "cold (empty caches: wheels downloaded)" "${cold}" "one-line handler edit, pantsd" "${edit}" \
  "no-op, pantsd" "${noop}"
echo "cold build, by step (seconds):"
python3 - "${work}/cold.log" <<'PY'
import re, sys
from datetime import datetime
started = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(\d\d:\d\d:\d\d\.\d\d) \[\w+\] (Starting|Completed): (.*)$", line.rstrip())
    # Aegis' and Pants' described steps only, not engine internals (setup_sandbox, pants.backend...).
    if not m or m[3].startswith("Scheduling") or re.fullmatch(r"[a-z_.]+|`\w+` goal", m[3]):
        continue
    t = datetime.strptime(m[1], "%H:%M:%S.%f")
    if m[2] == "Starting":
        started.setdefault(m[3], t)
    elif m[3] in started and (t - started[m[3]]).total_seconds() >= 2:
        print(f"  {(t - started.pop(m[3])).total_seconds():8.1f}  {m[3][:90]}")
PY
python3 - <<'PY'
import json
s = json.load(open("dist/models/turbine/turbine/image.json"))
print(f"image layers ({s['compressed_size'] / 1e6:.1f} MB compressed):")
for layer in s["layers"]:
    kind = "tar" if layer["media_type"].endswith(".tar") else layer["media_type"].rsplit("+", 1)[-1]
    print(f"  {layer['size'] / 1e6:10.2f} MB  {kind:4}  {layer['description']}")
PY
echo "highest RSS per process during the cold build:"
cat "${work}/rss"
