#!/usr/bin/env bash
# Serving figures for a packaged model image: throughput and p50/p99 latency at 1, 8 and 32 concurrent
# clients, then 60 s at twice the measured capacity, counting non-2xx responses. A benchmark, not a test.
#
#   build-support/bench_serve.sh [OUTPUT_PATH]   (default: models/fraud/fraud, built by `./pants package`)
#   BENCH_EXAMPLES=path/examples.json  (default: <target dir>/server/examples.json; the first one is sent)
#
# It runs the image the way the contract test does: unpacked with umoci, started with bwrap as 65532 on a
# read-only root. Load comes from `hey` (Debian package `hey`), on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-models/fraud/fraud}"
layout="dist/${out}/oci"
[[ -d "${layout}" ]] || { echo "no ${layout}: run ./pants package first" >&2; exit 1; }
for tool in hey umoci bwrap; do
  command -v "${tool}" >/dev/null || { echo "${tool} is missing (apt-get install hey umoci bubblewrap)" >&2; exit 1; }
done
duration="${BENCH_SECONDS:-10}"
hold="${BENCH_HOLD_SECONDS:-60}"

work="$(mktemp -d)"
server_pid=""
cleanup() { [[ -n "${server_pid}" ]] && kill "${server_pid}" 2>/dev/null; wait 2>/dev/null; rm -rf "${work}"; }
trap cleanup EXIT

tag="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "${layout}/index.json")"
media_types="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1]; print(*[l["mediaType"] for l in json.load(open(f"{sys.argv[2]}/{d}"))["layers"]])' "${layout}/index.json" "${layout}/blobs/sha256")"
if [[ "${media_types}" == *"+zstd"* ]]; then
  # umoci 0.4.7 (Debian 12) reads no zstd layers (`layer_compression="zstd"`): skopeo recompresses them first.
  skopeo --insecure-policy copy --dest-compress-format gzip "oci:${layout}:${tag}" "oci:${work}/gzip:${tag}" >/dev/null
  layout="${work}/gzip"
fi
umoci unpack --rootless --image "${layout}:${tag}" "${work}/bundle" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
model="$(sed -n 's/^model_id: "\(.*\)"$/\1/p' "${work}/bundle/rootfs/app/manifest.yaml")"
env_args=()
while IFS= read -r kv; do env_args+=(--setenv "${kv%%=*}" "${kv#*=}"); done < <(
  python3 -c 'import json,sys; [print(e) for e in json.load(open(sys.argv[1]))["process"]["env"]]' "${work}/bundle/config.json")
bwrap --ro-bind "${work}/bundle/rootfs" / --proc /proc --dev /dev --tmpfs /tmp --unshare-pid --unshare-user \
  --uid 65532 --gid 65532 --die-with-parent --clearenv "${env_args[@]}" --setenv AEGIS_PORT "${port}" \
  --setenv AEGIS_HOST 127.0.0.1 --chdir /app /usr/bin/python3.11 -m aegis_runtime.server >"${work}/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:${port}/v2/health/ready" >/dev/null && break; sleep 0.1; done

# One request body: the first committed example, typed from the model's own metadata.
curl -fs "http://127.0.0.1:${port}/v2/models/${model}" >"${work}/metadata.json"
python3 - "${BENCH_EXAMPLES:-${out%/*}/server/examples.json}" "${work}/metadata.json" "${work}/body.json" <<'PY'
import json, sys
example = json.load(open(sys.argv[1]))[0]["inputs"]
metadata = json.load(open(sys.argv[2]))
tensors = [
    {"name": t["name"], "datatype": t["datatype"], "shape": [len(example[t["name"]])], "data": example[t["name"]]}
    for t in metadata["inputs"]
]
json.dump({"inputs": tensors}, open(sys.argv[3], "w"))
PY
url="http://127.0.0.1:${port}/v2/models/${model}/infer"

run_hey() {  # args: hey options; prints "rps p50_ms p99_ms non2xx"
  hey -m POST -T application/json -D "${work}/body.json" "$@" "${url}" >"${work}/hey.txt"
  python3 - "${work}/hey.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
pct = {m.group(1): float(m.group(2)) * 1000 for m in re.finditer(r"(\d+)%+ in ([\d.]+) secs", text)}
codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
non2xx = sum(n for c, n in codes.items() if not 200 <= c < 300)
failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", text.split("Error distribution:")[1], re.M)) \
    if "Error distribution:" in text else 0
print(f"{rps:.0f} {pct.get('50', 0):.2f} {pct.get('99', 0):.2f} {non2xx} {failed}")
PY
}

echo "model ${model} from ${layout}, ${duration} s per level"
printf "%-12s %10s %10s %10s %8s %8s\n" clients req/s p50_ms p99_ms non2xx failed
best=0
for c in 1 8 32; do
  read -r rps p50 p99 bad errs < <(run_hey -c "${c}" -z "${duration}s")
  printf "%-12s %10s %10s %10s %8s %8s\n" "${c}" "${rps}" "${p50}" "${p99}" "${bad}" "${errs}"
  (( rps > best )) && best="${rps}"
done
target=$(( best * 2 ))
per_client=$(( (target + 31) / 32 ))
read -r rps p50 p99 bad errs < <(run_hey -c 32 -q "${per_client}" -z "${hold}s")
printf "%-12s %10s %10s %10s %8s %8s  (offered %d req/s for %d s)\n" "2x-capacity" "${rps}" "${p50}" "${p99}" "${bad}" "${errs}" "${target}" "${hold}"
