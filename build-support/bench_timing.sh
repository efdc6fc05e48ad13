# Timing helpers the benchmark scripts source: `timed LOG CMD...` runs CMD with its output in ${work}/LOG.log
# and prints its wall-clock seconds; on failure it shows the log's tail and stops the benchmark.
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
timed() {
  local log="$1" start; shift
  start=$(now)
  "$@" >"${work}/${log}.log" 2>&1 || { tail -30 "${work}/${log}.log" >&2; echo "FAILED: $*" >&2; exit 1; }
  since "${start}"
}
