#!/usr/bin/env bats
# A peer that stops reading is alive: its kernel shuts the receive window
# and answers the window probes. Since Linux 5.11 TCP_USER_TIMEOUT aborts
# such a connection once the window stayed shut for the user timeout, so the
# shim must not leave its own user timeout armed then. A sender blocked on a
# consumer that pauses for several timeouts (a pager, a pipe into a slow
# program) must deliver every byte, in keepalive mode (shimmed sender, any
# receiver) and in framed mode; a receiver that really dies is still found.

load helpers

setup() {
	hb_setup
	SLOW="$T/slow.py"
	cat >"$SLOW" <<'PY'
import hashlib, os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "server":
    # Send N random bytes with blocking sendall, then close.
    n = int(sys.argv[3])
    data = os.urandom(n)
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(1); print("LISTENING", flush=True)
    s, _ = ls.accept()
    t0 = time.time()
    try:
        s.sendall(data)
        print("SENT", hashlib.sha256(data).hexdigest(), n, "%.1f" % (time.time() - t0), flush=True)
    except OSError as e:
        print("SENDERR", e.errno, "%.1f" % (time.time() - t0), flush=True)
        sys.exit(1)
    s.close()
else:
    # Connect, read a little, pause (window shuts), then read to EOF.
    pause = float(sys.argv[3])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    got = bytearray(s.recv(1000))
    time.sleep(pause)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except OSError as e:
        print("RECVERR", e.errno, len(got), flush=True)
        sys.exit(1)
    print("GOT", hashlib.sha256(got).hexdigest(), len(got), flush=True)
PY
}

# slow_transfer CLIENT_ENV... : server shimmed with $SRV_ENV; prints nothing,
# fails on any difference.
slow_transfer() {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s HBSHIM_EVENTS="$T/srv.ev" "${SRV_ENV[@]}" \
		"$PY" "$SLOW" server "$port" 20000000
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run "$@" "$PY" "$SLOW" client "$port" 4
	assert_status 0
	bg_wait "$srv" 30
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	local got sent
	got=$(line_with GOT | cut -d' ' -f2-)
	output=$(cat "$T/srv.out")
	sent=$(line_with SENT | cut -d' ' -f2,3)
	[[ $sent == *" 20000000" ]] || fail "server: $(cat "$T/srv.out")"
	[ "$got" = "$sent" ] || fail "client got '$got', server sent '$sent'"
	! grep -q '"event":"dead"' "$T/srv.ev" 2>/dev/null || fail "a live reader declared dead: $(cat "$T/srv.ev")"
}

@test "slow reader: keepalive-mode sender, unshimmed reader pausing 4 timeouts: every byte arrives" {
	SRV_ENV=()
	slow_transfer plain
}

@test "slow reader: both shimmed in keepalive mode, reader pausing 4 timeouts: every byte arrives" {
	SRV_ENV=()
	slow_transfer shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s HBSHIM_EVENTS="$T/cli.ev"
	! grep -q '"event":"dead"' "$T/cli.ev" 2>/dev/null || fail "reader's side: $(cat "$T/cli.ev")"
}

@test "slow reader: framed both ways, reader pausing 4 timeouts: every byte arrives" {
	SRV_ENV=(HBSHIM_ACCEPT=auto)
	slow_transfer shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s "HBSHIM_FRAME=127.0.0.1:*" \
		HBSHIM_EVENTS="$T/cli.ev"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "not framed: $(cat "$T/cli.ev")"
	! grep -q '"event":"dead"' "$T/cli.ev" || fail "reader's side: $(cat "$T/cli.ev")"
}

@test "slow reader that then vanishes: the keepalive-mode sender still fails ETIMEDOUT (after its unanswered window probes)" {
	netns_new
	local port=4100
	bg srv ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s \
		HBSHIM_EVENTS="$T/srv.ev" "$PY" "$SLOW" server "$port" 20000000
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	bg cli ip netns exec "$NS" "$PY" "$SLOW" client "$port" 120
	# The window shuts, the user timeout goes off; 3 s later the reader's
	# answers to the window probes stop.
	sleep 3
	nft_drop "$NS" dport "$port"
	# About 4 s here: nothing heard for T and two window probes at the
	# kernel's backed-off spacing unanswered (keepalive.c, hb_ka_window).
	bg_wait "$srv" 60
	grep -q '^SENDERR 110 ' "$T/srv.out" ||
		fail "sender: $(cat "$T/srv.out" "$T/srv.err") (status $BG_STATUS), expected SENDERR 110 (ETIMEDOUT)"
}
