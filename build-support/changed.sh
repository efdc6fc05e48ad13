#!/usr/bin/env bash
# The CI entry point for changed-only builds: runs a Pants goal on what changed since a git ref, and on
# everything when the change touches what Pants 2.17's change detection cannot see through (the plugin,
# pants.toml, the launcher, a lockfile): those select no target, yet change every build.
#
#   build-support/changed.sh [--since REF] [--list] GOAL [ARGS...]
#
#   --since REF   the base to compare with (default: origin/main, else main); the working tree counts too
#   --list        print the model_package targets GOAL would run on, one a line, and run nothing
#
# Examples: build-support/changed.sh --since origin/main package
#           build-support/changed.sh --since HEAD~1 --list package
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
since="" list=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --since) [[ $# -ge 2 ]] || usage; since="$2"; shift 2 ;;
    --list) list=true; shift ;;
    -h|--help) usage ;;
    -*) echo "changed.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || usage
goal="$1"; shift
if [[ -z "${since}" ]]; then
  since="$(git rev-parse --verify --quiet origin/main >/dev/null && echo origin/main || echo main)"
fi
git rev-parse --verify --quiet "${since}^{commit}" >/dev/null || { echo "changed.sh: unknown git ref ${since}" >&2; exit 2; }

# Paths whose change rebuilds everything (a regular expression on repository-relative paths).
GLOBAL='^(aegis_plugin/|pants$|pants\.toml$|3rdparty/.*\.lock$|build-support/bootstrap/|build-support/bin/)'
changed="$( { git diff --name-only "${since}" --; git ls-files --others --exclude-standard; } | sort -u)"
global="$(grep -E "${GLOBAL}" <<<"${changed}" || true)"

if [[ -n "${global}" ]]; then
  echo "changed.sh: $(wc -l <<<"${global}") change(s) affect every build (e.g. $(head -1 <<<"${global}")): running on everything" >&2
  options=() specs=(::)
else
  options=(--changed-since="${since}" --changed-dependents=transitive) specs=()
fi
if "${list}"; then
  exec ./pants "${options[@]}" --filter-target-type=model_package list "${specs[@]}"
fi
exec ./pants "${options[@]}" "${goal}" "$@" "${specs[@]}"
