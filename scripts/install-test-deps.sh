#!/usr/bin/env bash
# install-test-deps.sh - make sure the Debian packages the tests use are present.
#
# As root: installs the missing ones (one `apt-get update`, then
# `apt-get install -y --no-install-recommends`). Not root: names the missing
# packages and carries on; the tests that need them skip with a reason.
# Silent when everything is already installed (the common case: a fast no-op,
# one dpkg-query call). With arguments, only those needs are checked (make
# demo: install-test-deps.sh nftables iproute2 python3).
#
# The first argument may name what a missing package means:
#   --required     the caller cannot work without them (make deb). Not root:
#                  prints the one `sudo apt-get install` line to run and exits
#                  1. Root: exits 1 if they could not all be installed.
#   --best-effort  the caller skips what it cannot do (make demo). Root: a
#                  failed apt-get is reported (the packages and apt's own
#                  error lines) and the exit status is still 0.
# Without either, not root carries on (make check: the tests that need a
# package skip) and as root a failed apt-get fails.
set -euo pipefail

mode=default
case ${1:-} in
--required | --best-effort)
	mode=${1#--}
	shift
	;;
esac

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
	libwrap0
)

# Run by the tests from an unpacked copy, never installed, because it
# conflicts with a package above: vsftpd with proftpd-core (both provide
# ftp-server). Make check as root only (no arguments): `apt-get download`
# and `dpkg-deb -x` into $UNPACK_DIR/NAME; the one library it links that
# nothing above brings, libwrap0, is in NEEDS. A failure is reported and
# the test that needs it skips.
UNPACK=(vsftpd)
UNPACK_DIR=/var/cache/hbshim-tests
unpack_conflicting() {
	[[ $mode == default && $(id -u) -eq 0 ]] && ((${#UNPACK[@]} > 0)) || return 0
	local p tmp
	for p in "${UNPACK[@]}"; do
		[[ -e $UNPACK_DIR/$p/.unpacked ]] && continue
		tmp=$(mktemp -d)
		# Stale or empty package lists: one update, then try again.
		if ! (cd "$tmp" && apt-get download -qq "$p" >/dev/null 2>&1); then
			apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true
			(cd "$tmp" && apt-get download -qq "$p" >/dev/null 2>&1) || true
		fi
		if compgen -G "$tmp/${p}_*.deb" >/dev/null &&
			rm -rf "$UNPACK_DIR/$p" && mkdir -p "$UNPACK_DIR/$p" &&
			dpkg-deb -x "$tmp/${p}"_*.deb "$UNPACK_DIR/$p"; then
			touch "$UNPACK_DIR/$p/.unpacked"
			echo "install-test-deps: $p unpacked in $UNPACK_DIR/$p (not installed)" >&2
		else
			echo "install-test-deps: could not download and unpack $p; its tests will skip" >&2
		fi
		rm -rf "$tmp"
	done
}

if (($# > 0)); then
	NEEDS=("$@")
	UNPACK=()
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "install-test-deps: not a Debian system (no dpkg-query); install by hand what provides:" \
		"${NEEDS[*]//|/ or }" >&2
	[[ $mode == required ]] && exit 1
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

if ((${#missing[@]} == 0)); then
	unpack_conflicting
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	if [[ $mode == required ]]; then
		# Of "a|b", the first: the one apt-get line must run as printed.
		echo "install-test-deps: missing packages; as root, run:" >&2
		echo "  sudo apt-get install --no-install-recommends ${missing[*]%%|*}" >&2
		exit 1
	fi
	echo "install-test-deps: missing (not root, not installing; what needs them will skip):" \
		"${missing[*]//|/ or }" >&2
	exit 0
fi

# A failed apt-get: its error lines and what it was for, then the exit
# status the mode asks for.
apt_failed() { # WHAT RC ERRFILE
	grep -E '^(E|W|Err):' "$3" | tail -5 | sed 's/^/install-test-deps:   /' >&2 || true
	if [[ $mode == best-effort ]]; then
		echo "install-test-deps: $1 failed (exit $2); not installed: ${missing[*]//|/ or };" \
			"what needs them will skip" >&2
		exit 0
	fi
	echo "install-test-deps: $1 failed (exit $2); not installed: ${missing[*]//|/ or }" >&2
	exit 1
}

export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${missing[*]//|/ or }" >&2
err=$(mktemp)
trap 'rm -f "$err"' EXIT
# A package of another architecture (libcmocka-dev:arm64, make check-cross)
# needs that architecture known to dpkg before the update.
for need in "${missing[@]}"; do
	if [[ $need == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
	fi
done
# Without network apt-get update warns and exits 0; the install then fails.
rc=0
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>"$err" || rc=$?
((rc == 0)) || apt_failed "apt-get update" "$rc" "$err"

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
		unavailable=1
		continue
	fi
	pkgs+=("$pick")
done

if ((${#pkgs[@]} > 0)); then
	rc=0
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" \
		>/dev/null 2>"$err" || rc=$?
	((rc == 0)) || apt_failed "apt-get install ${pkgs[*]}" "$rc" "$err"
fi
[[ $mode == required && -n ${unavailable:-} ]] && exit 1
unpack_conflicting
exit 0
