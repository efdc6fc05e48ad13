#!/usr/bin/env bash
# Runs every test, after installing the system tools the tests use. This is what CI runs (.ci/run).
#
# The end-to-end tests (tests/e2e) clone this repository's HEAD: commit before running them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Real tools, not mocks: umoci and skopeo validate images, bwrap runs them (nsenter from util-linux
# enters them), git stamps revisions, hey loads them in build-support/bench_serve.sh, docker-registry is the
# registry `publish` pushes to (htpasswd from apache2-utils gives it logins), qemu-user-static runs arm64 binaries
# of the images' arm64 base on this amd64 machine.
packages=(umoci skopeo bubblewrap util-linux git ca-certificates hey docker-registry apache2-utils qemu-user-static)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
done
if ((${#missing[@]})); then
  sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  echo "build-support/test.sh: installing ${missing[*]}" >&2
  ${sudo} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BuildGrid, the REAPI server the remote-cache test runs (from its hash-pinned lock, into a cached venv), and
# the real cosign that verifies what `publish` signs (Debian trixie's, see the script).
AEGIS_BGD="$(build-support/install-buildgrid.sh)"
AEGIS_COSIGN="$(build-support/install-cosign.sh)"
export AEGIS_BGD AEGIS_COSIGN

if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  echo "build-support/test.sh: note: the end-to-end tests build HEAD, not your uncommitted changes" >&2
fi

export AEGIS_REPO_ROOT="${PWD}"
# The end-to-end tests build this commit: part of their cache key, so a new commit runs them again.
AEGIS_REPO_HEAD="$(git rev-parse HEAD)"
export AEGIS_REPO_HEAD
exec ./pants --no-pantsd test "$@" ::
