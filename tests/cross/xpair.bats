#!/usr/bin/env bats
# The integration subset for other libcs and architectures, driven by the C
# pair tests/cross/xpair.c built with the library under test (no Python or
# glibc program where that library runs). XTARGET picks the build:
#   musl   build/musl: musl programs with the musl library preloaded
#   arm64  build/arm64: aarch64 glibc programs under qemu-aarch64-static
# (scripts/check-cross.sh runs this file once per target.) Under qemu,
# TCP_INFO answers only the state and SO_COOKIE fails: the framed cases
# prove the shim's own bookkeeping stands in (frozen peer, fd identity), and
# every case checks that qemu did answer short (kernel_answers).
#
# Each case: an xpair server and client, both shimmed; 300 KB each way
# byte-exact in odd-sized pieces that look like frame headers; keepalive
# mode shows the kernel's SO_KEEPALIVE and TCP_USER_TIMEOUT set by the
# shim; framed mode keeps a live peer idle for 2 timeouts (heartbeats
# flow) and detects a server that stopped itself (SIGSTOP) within
# [timeout - 5 %, timeout + 10 % + 0.5 s]: the shim's bound is the timeout
# + 10 %; the 0.5 s is slack for scheduling under qemu (an emulated process
# on a loaded machine), applied to both targets.

XTARGET=${XTARGET:-musl}
ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
XB="$ROOT/build/$XTARGET"
N=300000

setup() {
	T=$(mktemp -d)
	[ -x "$XB/helpers/xpair" ] || skip "$XB/helpers/xpair not built (make $XTARGET)"
	if [ "$XTARGET" = arm64 ]; then
		command -v qemu-aarch64-static >/dev/null || skip "qemu-aarch64-static missing (qemu-user-static)"
	fi
}

teardown() {
	local p
	for p in $(cat "$T/.pids" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}

# xrun ENV... -- PROGRAM ARGS...: PROGRAM with the library of the build
# preloaded and ENV set, natively (musl) or under qemu (arm64; the cross
# libc as the loader prefix and the library path, so a multiarch
# libc6:arm64 on the host is never mixed with the cross loader).
xrun() {
	local env=() e
	while [ "$1" != -- ]; do
		env+=("$1")
		shift
	done
	shift
	if [ "$XTARGET" = arm64 ]; then
		local q=(qemu-aarch64-static -L /usr/aarch64-linux-gnu
			-E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib -E "LD_PRELOAD=$XB/libhbshim.so")
		for e in "${env[@]}"; do q+=(-E "$e"); done
		timeout -s KILL 60 "${q[@]}" "$@"
	else
		timeout -s KILL 60 env "LD_PRELOAD=$XB/libhbshim.so" "${env[@]}" "$@"
	fi
}

# server ENV...: start a server, set $PORT and $SPID.
server() {
	xrun "$@" -- "$XB/helpers/xpair" server >"$T/server.out" 2>"$T/server.err" &
	local i
	for ((i = 0; i < 200; i++)); do
		grep -q '^PID ' "$T/server.out" 2>/dev/null && break
		sleep 0.05
	done
	PORT=$(awk '/^PORT /{ print $2 }' "$T/server.out")
	SPID=$(awk '/^PID /{ print $2 }' "$T/server.out")
	[ -n "$PORT" ] && [ -n "$SPID" ] || {
		echo "server did not start: $(cat "$T/server.out" "$T/server.err")"
		return 1
	}
	echo "$SPID" >>"$T/.pids"
}

# pair MODE BYTES HOW ENV...: a server and a client under ENV; the client
# echoes BYTES each way (HOW: "" straight, idle or freeze, see xpair.c). Its
# output in $output; fails unless it exited 0 in shim mode MODE (1 keepalive,
# 2 framed) with every byte echoed.
pair() {
	local mode=$1 n=$2 how=$3
	shift 3
	server "$@"
	run xrun "$@" -- "$XB/helpers/xpair" client "$PORT" "$n" ${how:+"$how"}
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"MODE $mode"* ]]
	[[ $output == *"ECHO OK $n"* ]]
	kernel_answers
}

# The client's own TCP_INFO and SO_COOKIE requests, made as the shim makes
# them. Under qemu these cases exist to exercise the shim's fallbacks, which
# run only when TCP_INFO stops before tcpi_last_data_recv (bytes 52-55, so a
# length under 56) and SO_COOKIE gives no cookie: a qemu that answers in full
# would let them pass without testing the fallbacks, so they fail instead.
# Natively (musl) the kernel answers in full: the client's report of both is
# checked there too, so a client that misreported short could not make the
# qemu check pass.
kernel_answers() {
	local ti ck
	ti=$(sed -n 's/^TCP_INFO LEN \([0-9][0-9]*\)$/\1/p' <<<"$output")
	ck=$(grep '^COOKIE ' <<<"$output")
	echo "kernel answers: TCP_INFO ${ti:-?} bytes, $ck"
	if [ "$XTARGET" = arm64 ]; then
		[ -n "$ti" ] && [ "$ti" -lt 56 ] && [[ $ck =~ ^COOKIE\ ERR\ [0-9]+$ ]] || {
			echo "qemu answered TCP_INFO with ${ti:-?} bytes and '$ck': not short, so this case does not exercise the shim's fallbacks (short TCP_INFO, no SO_COOKIE)"
			return 1
		}
	else
		[ -n "$ti" ] && [ "$ti" -ge 56 ] && [ "$ck" = "COOKIE OK" ] || {
			echo "the kernel answered TCP_INFO with ${ti:-?} bytes and '$ck': expected a full answer natively"
			return 1
		}
	fi
}

@test "$XTARGET: keepalive mode: kernel options set, $N bytes each way byte-exact" {
	pair 1 "$N" "" HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=4s
	# keepalive on, TCP_USER_TIMEOUT from the 4 s timeout (hbshim(7)).
	grep -Eq '^KEEPALIVE 1 UTO [1-9][0-9]*$' <<<"$output"
}

@test "$XTARGET: framed mode: $N bytes each way byte-exact" {
	pair 2 "$N" "" HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=3s "HBSHIM_FRAME=127.0.0.1:*"
}

@test "$XTARGET: framed mode: an idle live peer (3.5 s, timeout 1.5 s) is kept by heartbeats" {
	pair 2 20000 idle HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=1500ms "HBSHIM_FRAME=127.0.0.1:*"
}

@test "$XTARGET: framed mode: a frozen peer is detected between the timeout - 5 % and the timeout + 10 % + 0.5 s (timeout 1.5 s: 1.425-2.15 s)" {
	pair 2 20000 freeze HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=1500ms "HBSHIM_FRAME=127.0.0.1:*"
	# The server really is stopped (it stopped itself after its "Z").
	[ "$(ps -o stat= -p "$SPID" | cut -c1)" = T ]
	local l dt
	l=$(grep '^FROZEN ' <<<"$output")
	[[ $l == "FROZEN ERR 110 "* ]] # ETIMEDOUT
	dt=${l##* }
	awk -v d="$dt" 'BEGIN { exit !(d >= 1.425 && d <= 1.65 + 0.5) }' || {
		echo "detected after $dt s, expected [1.425, 2.15]"
		false
	}
	[[ $output == *"AGAIN ERR 110"* ]]
}
