#!/usr/bin/env bash
# Prints the remote-cache figures of `./pants package models::`: the cold time of a clean clone writing to a
# BuildGrid cache on 127.0.0.1, then the time of a second clean clone (empty store and named caches) reading
# from it, with the hit ratio of its cacheable processes. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="$(mktemp -d)"
bgd="$(build-support/install-buildgrid.sh)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed "s/127.0.0.1:50051/127.0.0.1:${port}/" build-support/buildgrid.yml >"${work}/buildgrid.yml"
"${bgd}" server start "${work}/buildgrid.yml" >"${work}/buildgrid.log" 2>&1 &
server=$!
trap 'kill "${server}" 2>/dev/null || true; wait "${server}" 2>/dev/null || true; rm -rf "${work}"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break; sleep 0.2; done

for clone in a b; do
  git clone --quiet "${PWD}" "${work}/${clone}"
  (cd "${work}/${clone}" && ./pants --version >/dev/null 2>&1)  # the launcher's one-time set-up is not measured
done
run() {  # clone -> prints seconds and the stats block to ${work}/<clone>.log
  local start=$SECONDS
  (cd "${work}/$1" && AEGIS_REMOTE_CACHE="grpc://127.0.0.1:${port}" ./pants --no-pantsd --stats-log \
    --local-store-dir="${work}/$1-store" --named-caches-dir="${work}/$1-caches" package models::) \
    >"${work}/$1.log" 2>&1 || { cat "${work}/$1.log"; exit 1; }
  echo $((SECONDS - start))
}
stat() { grep -E "^\s+$2: " "${work}/$1.log" | awk '{print $2}'; }
echo "cold package models:: (empty store, writing the cache): $(run a) s"
echo "remote-hit package models:: (another clone, empty store): $(run b) s"
echo "cacheable processes served by the cache: $(stat b remote_cache_requests_cached) of $(stat b remote_cache_requests)" \
     "(misses $(stat b remote_cache_requests_uncached), read errors $(stat b remote_cache_read_errors));" \
     "uncacheable processes run locally: $(stat b local_execution_requests) ($(stat b local_process_total_time_run_ms) ms)"
for summary in "${work}"/a/dist/models/*/*/image.json; do
  rel="${summary#"${work}/a/"}"
  cmp -s "${summary}" "${work}/b/${rel}" && same=identical || same=DIFFERENT
  echo "${rel}: ${same} in both clones"
done
