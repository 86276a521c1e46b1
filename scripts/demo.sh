#!/usr/bin/env bash
# demo.sh - the README quick-start demo (`make demo`).
#
# Case 1, "vanished peer": an unmodified python3 client is blocked in recv()
# on a connection whose server silently disappears (every packet it sends is
# dropped: no FIN, no RST). Without hbshim the client waits forever; with
# hbshim (--interval 1s --timeout 3s) recv() fails with ETIMEDOUT after ~3 s.
# Both variants run at the same time, inside a private network namespace
# (needs root), and are reported one after the other.
#
# Case 2, "frozen peer" (SIGSTOP, framed mode): placeholder until framed mode
# exists.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
WRAP="$ROOT/build/hbshim"
PY=/usr/bin/python3
WAIT=10    # how long the unshimmed client is watched
PORT=4000
NS="hbdemo-$$"
TMP=$(mktemp -d)
PIDS=()

cleanup() {
	local p
	# No "Killed" job notices for the processes ended here.
	exec 2>/dev/null
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	if ip netns list 2>/dev/null | grep -qw "$NS"; then
		for p in $(ip netns pids "$NS" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$NS" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# unset in case the caller's environment has them
unset LD_PRELOAD HBSHIM_INTERVAL HBSHIM_TIMEOUT HBSHIM_CONNECT_TIMEOUT HBSHIM_IDLE_TIMEOUT \
	HBSHIM_DISABLE HBSHIM_EVENTS HBSHIM_STATS HBSHIM_LOG HBSHIM_LOG_FILE HBSHIM_FRAME

say() { printf '%s\n' "$*"; }
hr() { say "------------------------------------------------------------------------"; }

# The server: accepts, never sends. The client: connects, blocks in recv().
# Neither knows anything about hbshim.
cat >"$TMP/server.py" <<'PY'
import socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(8)
print("LISTENING", flush=True)
held = []
while True:
    held.append(l.accept()[0])
PY
cat >"$TMP/client.py" <<'PY'
import errno, socket, sys, time
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[1])))
print("READY", flush=True)
t0 = time.monotonic()
try:
    data = s.recv(1)
    print("recv returned %r after %.1f s" % (data, time.monotonic() - t0), flush=True)
except OSError as e:
    print("recv failed: %s after %.1f s" % (errno.errorcode.get(e.errno, e.errno),
                                           time.monotonic() - t0), flush=True)
PY

wait_for() { # FILE TEXT SECS
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	say "demo: timed out waiting for '$2' in $1" >&2
	return 1
}

case_vanished_peer() {
	hr
	say "Case 1: vanished peer"
	say "  A python3 client is blocked in recv(). The server then vanishes: every"
	say "  packet it sends is dropped (a pulled cable, a dead VM, a lost NAT entry)."
	say "  No FIN or RST ever arrives, so the kernel has nothing to report."
	say ""
	if [[ $(id -u) -ne 0 ]]; then
		say "  SKIPPED: this case needs root (it builds a private network namespace"
		say "  with 'ip netns' and drops packets with 'nft'). Run: sudo make demo"
		return 0
	fi
	local c
	for c in ip nft "$PY"; do
		if ! command -v "$c" >/dev/null 2>&1; then
			say "  SKIPPED: '$c' is not installed (scripts/install-test-deps.sh installs it)."
			return 0
		fi
	done
	if ! ip netns add "$NS" 2>/dev/null; then
		say "  SKIPPED: cannot create a network namespace here."
		return 0
	fi
	ip -n "$NS" link set lo up

	ip netns exec "$NS" "$PY" "$TMP/server.py" "$PORT" >"$TMP/server.out" 2>&1 &
	PIDS+=($!)
	wait_for "$TMP/server.out" LISTENING 10

	# Both clients at once; reported in order below.
	ip netns exec "$NS" "$PY" "$TMP/client.py" "$PORT" >"$TMP/without.out" 2>&1 &
	local without=$!
	PIDS+=($without)
	ip netns exec "$NS" "$WRAP" --interval 1s --timeout 3s -- \
		"$PY" "$TMP/client.py" "$PORT" >"$TMP/with.out" 2>&1 &
	local with=$!
	PIDS+=($with)
	wait_for "$TMP/without.out" READY 10
	wait_for "$TMP/with.out" READY 10

	# The server vanishes.
	ip netns exec "$NS" nft add table inet hbdemo
	ip netns exec "$NS" nft add chain inet hbdemo out '{ type filter hook output priority 0; }'
	ip netns exec "$NS" nft add rule inet hbdemo out tcp sport "$PORT" drop
	local t0=$SECONDS

	say "  WITHOUT hbshim:  $PY client.py"
	sleep $((WAIT - (SECONDS - t0) > 0 ? WAIT - (SECONDS - t0) : 0))
	if kill -0 "$without" 2>/dev/null; then
		say "    after ${WAIT} s the client is still blocked in recv() (and would stay so"
		say "    for hours: Linux keepalive is off by default, 2 h idle when on)"
	else
		say "    unexpected: $(cat "$TMP/without.out" | tail -1)"
	fi
	say ""
	say "  WITH hbshim:     build/hbshim --interval 1s --timeout 3s -- $PY client.py"
	local i
	for ((i = 0; i < 100 && $(kill -0 "$with" 2>/dev/null && echo 1 || echo 0); i++)); do
		sleep 0.05
	done
	local res
	res=$(grep -E '^recv ' "$TMP/with.out" || true)
	if [[ -n $res ]]; then
		say "    $res"
		say "    (bound: interval + timeout = 4 s; the stream itself is untouched:"
		say "    kernel keepalive + TCP_USER_TIMEOUT, set by the shim)"
	else
		say "    unexpected: the client is still blocked:"
		sed 's/^/    /' "$TMP/with.out"
	fi
}

# Placeholder: the frozen peer (SIGSTOP'ed server process: its kernel still
# ACKs keepalive probes, so only heartbeats in framed mode can tell).
case_frozen_peer() {
	hr
	say "Case 2: frozen peer (the server process is stopped with SIGSTOP)"
	say "  (framed mode: not yet implemented)"
}

if [[ ! -x $WRAP || ! -f $ROOT/build/libhbshim.so ]]; then
	say "demo: build first (make)" >&2
	exit 1
fi
say "hbshim demo: bounded dead-peer detection for unmodified programs"
case_vanished_peer
case_frozen_peer
hr
