# Helpers the benchmark scripts source: `timed LOG CMD...` runs CMD with its output in ${work}/LOG.log and
# prints its wall-clock seconds; on failure it shows the log's tail and stops the benchmark. `stop_pantsd DIR`
# stops the pantsd of the checkout DIR and waits for it to exit.
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
timed() {
  local log="$1" start; shift
  start=$(now)
  "$@" >"${work}/${log}.log" 2>&1 || { tail -30 "${work}/${log}.log" >&2; echo "FAILED: $*" >&2; exit 1; }
  since "${start}"
}
# Pants 2.17 has no goal that stops pantsd: its pid is in the checkout's .pids directory.
stop_pantsd() {
  local pidfile pid
  for pidfile in "$1"/.pids/*/pantsd/pid; do
    [[ -f "${pidfile}" ]] || continue
    pid="$(cat "${pidfile}")"
    kill "${pid}" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  done
  return 0
}
