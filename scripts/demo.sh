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
# Case 2, "frozen peer" (framed mode, no root needed): a python3 server
# answers one message, then is stopped with SIGSTOP. Its kernel still ACKs
# everything, so no keepalive or TCP timeout can tell; only heartbeats can.
# Without hbshim the client waits forever; with hbshim on both sides
# (--interval 500ms --timeout 2s --frame '127.0.0.1:*') recv() fails with
# ETIMEDOUT after ~2 s. Both variants run at the same time.
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
import errno, os, socket, sys, time
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[1])))
print("READY", flush=True)
def since_drop():
    # The demo writes the wall-clock time of the drop into this file.
    try:
        return "%.1f s after the drop" % (time.time() - float(open(sys.argv[2]).read()))
    except (OSError, ValueError):
        return "(drop time unknown)"
try:
    data = s.recv(1)
    print("recv returned %r %s" % (data, since_drop()), flush=True)
except OSError as e:
    print("recv failed: %s %s" % (errno.errorcode.get(e.errno, e.errno), since_drop()),
          flush=True)
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
	ip netns exec "$NS" "$PY" "$TMP/client.py" "$PORT" "$TMP/dropped_at" >"$TMP/without.out" 2>&1 &
	local without=$!
	PIDS+=($without)
	ip netns exec "$NS" "$WRAP" --interval 1s --timeout 3s -- \
		"$PY" "$TMP/client.py" "$PORT" "$TMP/dropped_at" >"$TMP/with.out" 2>&1 &
	local with=$!
	PIDS+=($with)
	wait_for "$TMP/without.out" READY 10
	wait_for "$TMP/with.out" READY 10

	# The server vanishes.
	ip netns exec "$NS" nft add table inet hbdemo
	ip netns exec "$NS" nft add chain inet hbdemo out '{ type filter hook output priority 0; }'
	ip netns exec "$NS" nft add rule inet hbdemo out tcp sport "$PORT" drop
	date +%s.%N >"$TMP/dropped_at"
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

# The frozen-peer pair: the server answers one message, then the demo stops
# it; the client sends that message, reads the answer, then blocks in recv().
cat >"$TMP/frozen_server.py" <<'PY'
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0))
l.listen(8)
print("LISTENING", l.getsockname()[1], flush=True)
c = l.accept()[0]
c.sendall(c.recv(100).upper())
print("ANSWERED", flush=True)
c.recv(100)  # nothing more comes; the demo stops this process here
PY
cat >"$TMP/frozen_client.py" <<'PY'
import errno, socket, sys, time
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"hello")
print("got %r from the server" % s.recv(100), flush=True)
print("READY", flush=True)
t0 = time.monotonic()
try:
    data = s.recv(100)
    print("recv returned %r after %.1f s" % (data, time.monotonic() - t0), flush=True)
except OSError as e:
    print("recv failed: %s after %.1f s" % (errno.errorcode.get(e.errno, e.errno),
                                           time.monotonic() - t0), flush=True)
PY

FROZEN_WAIT=6 # how long the unshimmed client is watched

case_frozen_peer() {
	hr
	say "Case 2: frozen peer"
	say "  A python3 client talks to a python3 server, then blocks in recv(). The"
	say "  server process is then frozen with SIGSTOP (a hung process, a VM paused"
	say "  for migration, a stop-the-world pause). Its kernel still ACKs every"
	say "  packet, so TCP keepalive and TCP_USER_TIMEOUT see a healthy connection;"
	say "  only application-level heartbeats can tell."
	say ""
	if [[ ! -x $PY ]]; then
		say "  SKIPPED: $PY is not installed."
		return 0
	fi
	local -a hb=("$WRAP" --interval 500ms --timeout 2s --frame '127.0.0.1:*' --)
	local port
	# Two servers, one plain and one under hbshim, and a client for each.
	"$PY" "$TMP/frozen_server.py" >"$TMP/fs.without" 2>&1 &
	local srv_without=$!
	PIDS+=("$srv_without")
	"${hb[@]}" "$PY" "$TMP/frozen_server.py" >"$TMP/fs.with" 2>&1 &
	local srv_with=$! # hbshim execs python3: the same pid
	PIDS+=("$srv_with")
	wait_for "$TMP/fs.without" LISTENING 10
	wait_for "$TMP/fs.with" LISTENING 10

	port=$(awk '/^LISTENING/ { print $2 }' "$TMP/fs.without")
	"$PY" "$TMP/frozen_client.py" "$port" >"$TMP/fc.without" 2>&1 &
	local without=$!
	PIDS+=("$without")
	port=$(awk '/^LISTENING/ { print $2 }' "$TMP/fs.with")
	"${hb[@]}" "$PY" "$TMP/frozen_client.py" "$port" >"$TMP/fc.with" 2>&1 &
	local with=$!
	PIDS+=("$with")
	wait_for "$TMP/fc.without" READY 10
	wait_for "$TMP/fc.with" READY 10
	wait_for "$TMP/fs.without" ANSWERED 10
	wait_for "$TMP/fs.with" ANSWERED 10

	# Both servers freeze.
	kill -STOP "$srv_without" "$srv_with"
	local t0=$SECONDS

	say "  WITHOUT hbshim:  $PY server.py  /  $PY client.py"
	sed -n '1p' "$TMP/fc.without" | sed 's/^/    client: /'
	sleep $((FROZEN_WAIT - (SECONDS - t0) > 0 ? FROZEN_WAIT - (SECONDS - t0) : 0))
	if kill -0 "$without" 2>/dev/null && [[ $(tail -1 "$TMP/fc.without") == READY ]]; then
		say "    server frozen: after ${FROZEN_WAIT} s the client is still blocked in recv()"
		say "    (and would stay so for as long as the server stays frozen)"
	else
		say "    unexpected: $(tail -1 "$TMP/fc.without")"
	fi
	say ""
	say "  WITH hbshim on both sides:"
	say "    build/hbshim --interval 500ms --timeout 2s --frame '127.0.0.1:*' -- $PY server.py"
	say "    build/hbshim --interval 500ms --timeout 2s --frame '127.0.0.1:*' -- $PY client.py"
	sed -n '1p' "$TMP/fc.with" | sed 's/^/    client: /'
	local i
	for ((i = 0; i < 100 && $(kill -0 "$with" 2>/dev/null && echo 1 || echo 0); i++)); do
		sleep 0.05
	done
	local res
	res=$(grep -E '^recv ' "$TMP/fc.with" || true)
	if [[ -n $res ]]; then
		say "    server frozen: $res"
		say "    (bound: the 2 s timeout after the last heartbeat; the frozen server's"
		say "    heartbeats stopped with it, while its kernel kept ACKing)"
	else
		say "    unexpected: the client is still blocked:"
		sed 's/^/    /' "$TMP/fc.with"
	fi
	kill -KILL "$srv_without" "$srv_with" 2>/dev/null || true
	# Reaped here, so that no "Killed" job notice follows the demo's output.
	wait "$srv_without" "$srv_with" 2>/dev/null || true
}

if [[ ! -x $WRAP || ! -f $ROOT/build/libhbshim.so ]]; then
	say "demo: build first (make)" >&2
	exit 1
fi
say "hbshim demo: bounded dead-peer detection for unmodified programs"
case_vanished_peer
case_frozen_peer
hr
