#!/usr/bin/env bash
# tests/install-deps.sh: install what building and testing pgkeep needs on
# Debian 12 (compiler, autotools, libraries, PostgreSQL 15, jq for the tests,
# clang for the fuzz target, openssl to make the certificates of t200).
# Idempotent: runs apt-get only when a package is missing.  As a non-root
# user it uses sudo.
#
#   tests/install-deps.sh           build and test dependencies
#   tests/install-deps.sh --bench   also pgbackrest, for bench/
set -euo pipefail

PACKAGES=(
	build-essential autoconf automake pkg-config
	libzstd-dev liblz4-dev libssl-dev libpq-dev libssh-dev
	postgresql-15 postgresql-contrib-15
	zstd lz4 clang jq openssl util-linux
)
for arg in "$@"; do
	case $arg in
	--bench) PACKAGES+=(pgbackrest) ;;
	-h | --help) sed -n '2,9p' "$0"; exit 0 ;;
	*) echo "install-deps.sh: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

# installed PKG: PKG is installed, or provided by an installed package (on
# Debian 12 postgresql-contrib-15 is a virtual package provided by postgresql-15).
installed() {
	dpkg-query -W -f='${db:Status-Abbrev}\n' "$1" 2>/dev/null | grep -q '^ii' && return 0
	dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
		grep '^ii' | cut -d'|' -f2 | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qx -- "$1"
}

missing=()
for p in "${PACKAGES[@]}"; do
	installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: all ${#PACKAGES[@]} packages are installed"
	exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
	SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
