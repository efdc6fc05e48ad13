#!/usr/bin/env bash
# Installs BuildGrid (a REAPI server: the remote cache the tests run against) from its hash-pinned lock into
# a venv cached per lock, and prints the path of its `bgd` command. Needs CPython 3.11 (PATH or pyenv).
#
#   bgd="$(build-support/install-buildgrid.sh)"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lock=build-support/buildgrid.lock
python="$(command -v python3.11 || ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 2>/dev/null | tail -1 || true)"
[[ -x "${python}" ]] || { echo "install-buildgrid.sh: CPython 3.11 not found (PATH or pyenv)" >&2; exit 1; }
venv="${XDG_CACHE_HOME:-$HOME/.cache}/aegis/buildgrid-$(sha256sum "${lock}" | cut -c1-16)"
# A venv records its own path, so it is built in place; the marker says the install finished.
if [[ ! -f "${venv}/.complete" ]]; then
  echo "install-buildgrid.sh: installing BuildGrid into ${venv}" >&2
  rm -rf "${venv}"
  "${python}" -m venv "${venv}"
  PIP_CONFIG_FILE=/dev/null "${venv}/bin/pip" install --quiet --disable-pip-version-check \
    --require-hashes --no-deps -r "${lock}" >&2
  touch "${venv}/.complete"
fi
echo "${venv}/bin/bgd"
