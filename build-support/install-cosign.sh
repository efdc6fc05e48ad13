#!/usr/bin/env bash
# Installs the real cosign the tests verify signatures with, and prints its path. Debian 12 has no cosign;
# Debian 13 (trixie)'s 2.5.0 runs on it (it needs glibc >= 2.34). The .deb comes through the machine's own
# Debian mirror (read from its apt sources, never a hard-coded host) with the suite switched to trixie; apt
# checks it against the archive's signed index, and this script against the sha256 pinned here.
#
#   cosign="$(build-support/install-cosign.sh)"
set -euo pipefail
VERSION="2.5.0-2+b5"
SHA256="3b6eadd27f3c4c00bfa7eab5c2397a6a15a763630c7a1d40d06ff60d24799eef"

target="${XDG_CACHE_HOME:-$HOME/.cache}/aegis/cosign-${VERSION}"
if [[ ! -x "${target}/usr/bin/cosign" ]]; then
  mirror="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [[ -n "${mirror}" ]] || mirror="$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "${mirror}" ]] || { echo "install-cosign.sh: no Debian mirror in the apt sources" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  mkdir -p "${work}/lists/partial" "${work}/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} trixie main" >"${work}/sources.list"
  apt=(-q -o "Dir::Etc::SourceList=${work}/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=${work}/lists" -o "Dir::Cache=${work}/cache" -o APT::Sandbox::User=root)
  echo "install-cosign.sh: fetching cosign ${VERSION} from ${mirror} (trixie)" >&2
  apt-get "${apt[@]}" update >&2
  (cd "${work}" && apt-get "${apt[@]}" download "cosign=${VERSION}" >&2)
  deb="${work}/cosign_${VERSION//:/%3a}_amd64.deb"
  echo "${SHA256}  ${deb}" | sha256sum --check --quiet || { echo "install-cosign.sh: ${deb} does not match the pinned sha256" >&2; exit 1; }
  rm -rf "${target}.partial" && mkdir -p "${target}.partial"
  dpkg-deb -x "${deb}" "${target}.partial"
  rm -rf "${target}" && mv "${target}.partial" "${target}"
fi
echo "${target}/usr/bin/cosign"
