#!/usr/bin/env bash
# Prints, from one run on this machine, how `pants package` scales with the size of the weights, side by side
# with its two references: the physical floor (`sha256sum w && cp w dest` of the same weights on the same disk)
# and the way users build today (a seed-style multi-stage Containerfile built daemonless by buildah, model
# layer before the code, from a local Debian bookworm + Python base that is not timed, like a cached base).
# A benchmark, not a test: it prints figures and ratios, and asserts nothing.
#
#   build-support/bench_big_model.sh [BIG_MB] [SMALL_MB]     (defaults: 2048 and 20)
#
# Scenarios: a cold build (empty Pants store and caches / empty buildah storage); retrained weights (new bytes,
# same size) with everything else cached; a one-line handler edit and a no-op, with pantsd, for the small and
# the big weights (their times should match: no step reads the weights); the demo's own 3 MB weights. It also
# prints the image's layers and the highest RSS any single process reached during the retrained build.
# Needs root (apt-get for buildah/mmdebstrap, buildah's storage) and ~4×BIG_MB of free disk under /var/tmp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source build-support/bench_timing.sh  # now, since, timed, stop_pantsd
big_mb="${1:-2048}"
small_mb="${2:-20}"
repo="${PWD}"
work="$(mktemp -d /var/tmp/aegis-bench.XXXXXX)"
rss_pid=""
BUILDAH_STORE=(--root "${work}/buildah" --runroot "${work}/buildah-run" --storage-driver overlay)
cleanup() {
  [[ -n "${rss_pid}" ]] && kill "${rss_pid}" 2>/dev/null || true
  stop_pantsd "${work}/clone"
  buildah "${BUILDAH_STORE[@]}" rm --all >/dev/null 2>&1 || true
  umount -R "${work}/buildah" 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT

missing=()
for pkg in buildah mmdebstrap; do
  dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Seconds between a Pants log's `Starting: LABEL` and `Completed: LABEL` lines (-ldebug or -ltrace).
step_seconds() { python3 - "$1" "$2" <<'PY'
import re, sys
times = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\d+):(\d+):([\d.]+) \[\w+\] (Starting|Completed): (.*)$", line.rstrip())
    if m and m[5] == sys.argv[2]:
        times.setdefault(m[4], int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]))
if len(times) < 2:
    print("n/a")  # not in this run
else:
    print(f"{(times['Completed'] - times['Starting']) % 86400:.2f}")  # across midnight too
PY
}
declare -A fig

# --- Weights and the floor -----------------------------------------------------------------------------------
echo "Generating weights: ${big_mb} MiB (two versions) and ${small_mb} MiB…"
python3 build-support/make_safetensors.py "${work}/big1.safetensors" $((big_mb << 20)) --seed 1
python3 build-support/make_safetensors.py "${work}/big2.safetensors" $((big_mb << 20)) --seed 2
python3 build-support/make_safetensors.py "${work}/small.safetensors" $((small_mb << 20)) --seed 3
sync
fig[floor]=$(timed floor bash -c "sha256sum '${work}/big2.safetensors' && cp '${work}/big2.safetensors' '${work}/floor.copy'")
rm -f "${work}/floor.copy"

# --- Aegis -----------------------------------------------------------------------------------------------------
git clone --quiet "${repo}" "${work}/clone"
cd "${work}/clone"
git config core.compression 0  # committing GBs of weights is not what is measured
git config user.email bench@aegis.invalid && git config user.name bench
./pants --version >/dev/null 2>&1  # the launcher's one-time venv and pex are not what is measured
sed -i '/weights_sha256=/d; s/size_budget=60/size_budget=100000/' models/fraud/BUILD
git commit -qam "bench: weights of any size"
store=(--local-store-dir="${work}/store" --named-caches-dir="${work}/named_caches")
pants() { ./pants "${store[@]}" "$@"; }
use_weights() { cp "$1" models/fraud/weights.safetensors && git commit -qam "bench: weights $(basename "$1")"; }
edit_handler() { echo "# edit $(date +%s%N)" >>models/fraud/server/handler.py; }
summary() { python3 - "$1" <<'PY'
import json, sys
s = json.load(open("dist/models/fraud/fraud/image.json"))
print(f"  image layers ({sys.argv[1]}):")
for layer in s["layers"]:
    kind = "tar" if layer["media_type"].endswith(".tar") else layer["media_type"].rsplit("+", 1)[-1]
    print(f"    {layer['size'] / 1e6:10.2f} MB  {kind:4}  {layer['description']}")
PY
}

echo "Aegis: demo (3 MB weights), cold…"
fig[aegis_demo_cold]=$(timed a-demo-cold pants --no-pantsd package models/fraud::)
timed a-demo-pantsd pants package models/fraud:: >/dev/null  # starts pantsd
edit_handler; fig[aegis_demo_edit]=$(timed a-demo-edit pants package models/fraud::)
fig[aegis_demo_noop]=$(timed a-demo-noop pants package models/fraud::)
git checkout -q models/fraud/server/handler.py

echo "Aegis: ${small_mb} MiB weights…"
use_weights "${work}/small.safetensors"
timed a-small-first pants package models/fraud:: >/dev/null
timed a-small-warm pants package models/fraud:: >/dev/null
edit_handler; fig[aegis_small_edit]=$(timed a-small-edit pants package models/fraud::)
fig[aegis_small_noop]=$(timed a-small-noop pants package models/fraud::)
git checkout -q models/fraud/server/handler.py

echo "Aegis: ${big_mb} MiB weights…"
use_weights "${work}/big1.safetensors"
timed a-big-first pants package models/fraud:: >/dev/null
timed a-big-warm pants package models/fraud:: >/dev/null
edit_handler; fig[aegis_big_edit]=$(timed a-big-edit pants package models/fraud::)
fig[aegis_big_noop]=$(timed a-big-noop pants package models/fraud::)
git checkout -q models/fraud/server/handler.py
timed a-big-back pants package models/fraud:: >/dev/null

echo "Aegis: retrained ${big_mb} MiB weights, everything else cached…"
use_weights "${work}/big2.safetensors"
# The highest RSS of any one process during the build, sampled every 0.1 s.
python3 build-support/peak_rss.py "${work}/rss" &
rss_pid=$!
fig[aegis_retrained_pantsd]=$(timed a-retrained pants package models/fraud::)
kill "${rss_pid}"; rss_pid=""
summary "${big_mb} MiB weights"
use_weights "${work}/big1.safetensors"
stop_pantsd .
fig[aegis_retrained_nopantsd]=$(timed a-retrained-nopantsd pants --no-pantsd package models/fraud::)
# What Pants itself spends on the weights, apart from any step: a run without pantsd (every step cached)
# fingerprints the source file again; the same hash in Python (OpenSSL) and in sha256sum, beside it.
timed a-trace pants --no-pantsd -ltrace package models/fraud:: >/dev/null
fig[pants_fingerprint]=$(step_seconds "${work}/a-trace.log" "Fingerprinting: models/fraud/weights.safetensors")
fig[hashlib]=$(timed hashlib python3 -c "
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
        h.update(chunk)" models/fraud/weights.safetensors)
fig[sha256sum]=$(timed sha256sum sha256sum models/fraud/weights.safetensors)

echo "Aegis: ${big_mb} MiB weights, cold…"
rm -rf "${work}/store" "${work}/named_caches" dist
# -ldebug (a few hundred lines of log), so that the weights layer step is timed from this same run.
fig[aegis_big_cold]=$(timed a-big-cold pants --no-pantsd -ldebug package models/fraud::)
fig[cold_weights_step]=$(step_seconds "${work}/a-big-cold.log" "Building the model weights weights.safetensors layer")
requirements="$(python3 - <<'PY'
import json, tarfile
root = "dist/models/fraud/fraud"
summary = json.load(open(f"{root}/image.json"))
(app,) = [l for l in summary["layers"] if l["description"] == "app"]
with tarfile.open(f"{root}/oci/blobs/sha256/{app['digest'][7:]}") as tar:
    print(tar.extractfile("app/requirements.lock").read().decode())
PY
)"
stop_pantsd .

# --- buildah ---------------------------------------------------------------------------------------------------
echo "buildah: a Debian bookworm + Python base (not timed)…"
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"  # this machine's
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm \
  "${work}/base.tar" ${mirror:+"${mirror}"} >"${work}/mmdebstrap.log" 2>&1 || { tail "${work}/mmdebstrap.log"; exit 1; }
ctr=$(buildah "${BUILDAH_STORE[@]}" from scratch)
buildah "${BUILDAH_STORE[@]}" add "${ctr}" "${work}/base.tar" / >/dev/null
# This machine's CA bundle, as a site's base image carries its own: pip in the build reaches PyPI through it.
buildah "${BUILDAH_STORE[@]}" add "${ctr}" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
buildah "${BUILDAH_STORE[@]}" commit --quiet "${ctr}" localhost/bench-python:bookworm >/dev/null
buildah "${BUILDAH_STORE[@]}" rm "${ctr}" >/dev/null

ctx="${work}/context"
mkdir -p "${ctx}/model" "${ctx}/server"
printf '%s\n' "${requirements}" >"${ctx}/requirements.lock"
cp models/fraud/tokenizer.json models/fraud/model_card.md "${ctx}/model/"
cp models/fraud/server/*.py "${ctx}/server/"
cat >"${ctx}/Containerfile" <<'EOF'
# The seed's multi-stage build: dependencies in a builder, then a slim non-root runtime. The model is copied
# before the code, so a code edit reuses the model layer (the order that favours buildah).
FROM localhost/bench-python:bookworm AS builder
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet --no-cache-dir --only-binary=:all: \
    --require-hashes -r /tmp/requirements.lock

FROM localhost/bench-python:bookworm
COPY --from=builder /opt/venv /opt/venv
COPY model/ /app/model/
COPY server/ /app/server/
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/python", "/app/server/handler.py"]
EOF
bud() { buildah "${BUILDAH_STORE[@]}" bud --quiet --layers --isolation chroot -t localhost/bench-model:1 "${ctx}"; }
uncache() {  # everything but the base
  buildah "${BUILDAH_STORE[@]}" rmi --force localhost/bench-model:1 >/dev/null 2>&1 || true
  buildah "${BUILDAH_STORE[@]}" rmi --prune >/dev/null 2>&1 || true
}

echo "buildah: demo weights…"
cp models/fraud/weights.safetensors "${ctx}/model/weights.safetensors"
uncache; fig[buildah_demo_cold]=$(timed b-demo-cold bud)
echo "# edit" >>"${ctx}/server/handler.py"; fig[buildah_demo_edit]=$(timed b-demo-edit bud)
fig[buildah_demo_noop]=$(timed b-demo-noop bud)
echo "buildah: ${big_mb} MiB weights…"
cp "${work}/big1.safetensors" "${ctx}/model/weights.safetensors"
uncache; fig[buildah_big_cold]=$(timed b-big-cold bud)
echo "# edit 2" >>"${ctx}/server/handler.py"; fig[buildah_big_edit]=$(timed b-big-edit bud)
fig[buildah_big_noop]=$(timed b-big-noop bud)
cp "${work}/big2.safetensors" "${ctx}/model/weights.safetensors"
fig[buildah_retrained]=$(timed b-retrained bud)

# --- Report ----------------------------------------------------------------------------------------------------
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "All figures in seconds, measured in this run; ratios are Aegis / reference."
printf '%-52s %9s %9s %9s\n' "scenario" "Aegis" "buildah" "ratio"
row() { printf '%-52s %9s %9s %9s\n' "$1" "$2" "$3" "$( [[ "$3" == "-" ]] && echo - || ratio "$2" "$3")"; }
row "${big_mb} MiB weights, cold (empty caches)" "${fig[aegis_big_cold]}" "${fig[buildah_big_cold]}"
row "${big_mb} MiB weights retrained, rest cached, pantsd" "${fig[aegis_retrained_pantsd]}" "${fig[buildah_retrained]}"
row "${big_mb} MiB weights retrained, rest cached, no pantsd" "${fig[aegis_retrained_nopantsd]}" "-"
row "${big_mb} MiB weights, one-line handler edit, pantsd" "${fig[aegis_big_edit]}" "${fig[buildah_big_edit]}"
row "${big_mb} MiB weights, no-op, pantsd" "${fig[aegis_big_noop]}" "${fig[buildah_big_noop]}"
row "${small_mb} MiB weights, one-line handler edit, pantsd" "${fig[aegis_small_edit]}" "-"
row "${small_mb} MiB weights, no-op, pantsd" "${fig[aegis_small_noop]}" "-"
row "demo (3 MB weights), cold" "${fig[aegis_demo_cold]}" "${fig[buildah_demo_cold]}"
row "demo, one-line handler edit, pantsd" "${fig[aegis_demo_edit]}" "${fig[buildah_demo_edit]}"
row "demo, no-op, pantsd" "${fig[aegis_demo_noop]}" "${fig[buildah_demo_noop]}"
echo
echo "floor for ${big_mb} MiB (sha256sum w && cp w dest): ${fig[floor]} s"
echo "retrained, pantsd / floor:    $(ratio "${fig[aegis_retrained_pantsd]}" "${fig[floor]}")"
echo "retrained, no pantsd / floor: $(ratio "${fig[aegis_retrained_nopantsd]}" "${fig[floor]}")"
echo "handler edit, ${big_mb} MiB / ${small_mb} MiB weights: $(ratio "${fig[aegis_big_edit]}" "${fig[aegis_small_edit]}")"
echo "Pants' own work on the ${big_mb} MiB weights, which no Aegis step does:"
echo "  fingerprinting the source, every step cached (no pantsd): ${fig[pants_fingerprint]} s" \
  "(the same sha256: Python/OpenSSL ${fig[hashlib]} s, sha256sum ${fig[sha256sum]} s)"
echo "  the cold build's weights layer step, Pants' capture of its output included: ${fig[cold_weights_step]} s"
echo "highest RSS per process during the retrained build:"
cat "${work}/rss"
