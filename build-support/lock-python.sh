#!/usr/bin/env bash
# Regenerates every Python lock (<dir>/<name>.lock) from its <dir>/<name>-requirements.in.
#
#   build-support/lock-python.sh                       # re-lock all, keeping versions already locked
#   build-support/lock-python.sh runtime training      # only these locks (by name)
#   build-support/lock-python.sh runtime -- --upgrade-package numpy   # after --: `uv pip compile` args
#
# The locks are hash-pinned requirement files from `uv pip compile --universal --generate-hashes`.
# They must not name any package index (no URLs, no host names): the machine's pip/uv configuration
# is ignored so that only uv's default public index is used, and the result is checked at the end.
set -euo pipefail

# Each lock and its target Python. Every lock here needs a <name>-requirements.in beside it.
#   lock                                   python
LOCKS="
  3rdparty/python/runtime.lock             3.11
  3rdparty/python/core.lock                3.11
  3rdparty/python/training.lock            3.11
  3rdparty/python/pytorch.lock             3.11
  3rdparty/python/contract-test.lock       3.11
  3rdparty/python/sbom.lock                3.11
  3rdparty/python/publish.lock             3.11
  3rdparty/python/scan.lock                3.11
  3rdparty/python/mlflow.lock              3.11
  3rdparty/python/sbom-check.lock          3.11
  tests/e2e/fixtures/vulnerable/vulnerable.lock 3.11
  3rdparty/python/plugin.lock              3.9
  build-support/bootstrap/pants.lock       3.9
  build-support/buildgrid.lock             3.11
  build-support/zizmor.lock                3.11
"

# uv itself is pinned so that re-locking is reproducible; set UV=/path/to/uv to use another one.
UV_VERSION="0.13.9"

cd "$(dirname "$0")/.."

# Isolation: no pip or uv configuration from the machine or the caller (extra indexes, find-links,
# constraints) may reach the resolver or leak into the locks.
for var in $(compgen -e | grep -E '^(UV|PIP)_' || true); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null

ensure_uv() {
  if [[ -n "${UV:-}" ]]; then return; fi
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/aegis/uv-$UV_VERSION"
  if [[ ! -x "$venv/bin/uv" ]]; then
    echo "Installing uv==$UV_VERSION into $venv" >&2
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV="$venv/bin/uv"
}

lock_path() {
  awk -v name="$1" '{ n = $1; sub(/.*\//, "", n); sub(/\.lock$/, "", n) } n == name { print $1 }' <<<"$LOCKS"
}

python_for() {
  awk -v lock="$1" '$1 == lock { print $2 }' <<<"$LOCKS"
}

# Lock names to regenerate (default: all); arguments after -- go to uv.
names=()
while [[ $# -gt 0 && "$1" != "--" ]]; do names+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
if [[ ${#names[@]} -eq 0 ]]; then
  for lock in $(awk 'NF { print $1 }' <<<"$LOCKS"); do names+=("$(basename "$lock" .lock)"); done
fi

ensure_uv
status=0
for name in "${names[@]}"; do
  lock="$(lock_path "$name")"
  [[ -n "$lock" ]] || { echo "error: no lock named $name in the LOCKS table of $0" >&2; exit 1; }
  input="${lock%.lock}-requirements.in"
  [[ -f "$input" ]] || { echo "error: no $input" >&2; exit 1; }
  python="$(python_for "$lock")"
  echo "Locking $lock for Python $python" >&2
  "$UV" pip compile "$input" \
    --output-file "$lock" \
    --universal \
    --python-version "$python" \
    --generate-hashes \
    --no-config \
    --custom-compile-command "build-support/lock-python.sh" \
    --quiet \
    "$@"
  if grep -nE '[A-Za-z][A-Za-z0-9+.-]*://|^ *--(index-url|extra-index-url|find-links|trusted-host)' "$lock"; then
    echo "error: $lock names a package index; locks must be host-free" >&2
    status=1
  fi
done
exit "$status"
