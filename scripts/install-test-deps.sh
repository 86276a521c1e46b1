#!/usr/bin/env bash
# install-test-deps.sh - make sure the Debian packages the tests use are present.
#
# As root: installs the missing ones (one `apt-get update`, then
# `apt-get install -y --no-install-recommends`). Not root: names the missing
# packages and carries on; the tests that need them skip with a reason.
# Silent when everything is already installed (the common case: a fast no-op,
# one dpkg-query call). With arguments, only those needs are checked (make
# demo: install-test-deps.sh nftables iproute2 python3).
set -euo pipefail

# One entry per need; "a|b" means either package satisfies it and the first
# one the archive knows is installed.
NEEDS=(
	libcmocka-dev
	bats
	nftables
	socat
	netcat-openbsd
	libjemalloc2
	libgoogle-perftools4
	iproute2
	python3
	python3-yaml
	curl
	clang
	"libclang-rt-14-dev|libclang-rt-dev"
	jq
	procps
	redis-server
	redis-tools
	postgresql
	"nginx-light|nginx"
	wrk
	groff-base
	man-db
	bsdextrautils
	"pkgconf|pkg-config"
	dpkg-dev
	debhelper
	lintian
	fakeroot
	gcc-aarch64-linux-gnu
	libc6-dev-arm64-cross
	musl-tools
	qemu-user-static
	libcmocka-dev:arm64
	openssh-server
	openssh-client
	rsync
	libseccomp2
	ncat
	ucspi-tcp
	busybox
	netcat-traditional
	openbsd-inetd
	systemd
	dropbear-bin
	apache2-bin
	mini-httpd
	lighttpd
	proftpd-core
	wget
)

(($# > 0)) && NEEDS=("$@")

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "install-test-deps: not a Debian system (no dpkg-query); install the test packages by hand" >&2
	exit 0
fi

# Every package installed right now, in one call.
installed=$(dpkg-query -W -f='${binary:Package} ${db:Status-Status}\n' 2>/dev/null |
	awk '$2 == "installed" { print $1; sub(/:.*/, "", $1); print $1 }')
have() { grep -qxF -- "$1" <<<"$installed"; }

missing=()
for need in "${NEEDS[@]}"; do
	IFS='|' read -r -a alts <<<"$need"
	ok=0
	for p in "${alts[@]}"; do
		if have "$p"; then
			ok=1
			break
		fi
	done
	((ok)) || missing+=("$need")
done

((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "install-test-deps: missing (not root, not installing; what needs them will skip):" \
		"${missing[*]//|/ or }" >&2
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${missing[*]//|/ or }" >&2
# A package of another architecture (libcmocka-dev:arm64, make check-cross)
# needs that architecture known to dpkg before the update.
for need in "${missing[@]}"; do
	if [[ $need == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
	fi
done
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null

# Resolve alternatives to the first package the archive offers.
pkgs=()
for need in "${missing[@]}"; do
	IFS='|' read -r -a alts <<<"$need"
	pick=""
	for p in "${alts[@]}"; do
		cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
		if [[ -n $cand && $cand != "(none)" ]]; then
			pick=$p
			break
		fi
	done
	if [[ -z $pick ]]; then
		echo "install-test-deps: no package available for: ${need//|/ or }" >&2
		continue
	fi
	pkgs+=("$pick")
done

((${#pkgs[@]} == 0)) && exit 0
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
