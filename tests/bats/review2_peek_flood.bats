#!/usr/bin/env bats
# A blocking recv(MSG_PEEK) flooded with heartbeats behaves as the kernel's
# sleeping reader would: a signal whose handler lacks SA_RESTART ends it.

load helpers

FLOODER="$HB_HELPERS/flooder"

setup() {
	hb_setup
	need_helper flooder
	SRV="$T/peek.py"
	cat >"$SRV" <<'PY'
import signal, socket, sys, time
# peek.py PORT intr|restart: accept one connection, then one blocking recv(16, MSG_PEEK)
# without a timeout; SIGALRM after 1 s, whose handler (no SA_RESTART) raises
# (restart: a handler with SA_RESTART that does nothing).
port, how = int(sys.argv[1]), sys.argv[2]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port)); l.listen(8)
print("LISTENING", flush=True)
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
if how == "restart":
    signal.signal(signal.SIGALRM, lambda s, f: None)
    signal.siginterrupt(signal.SIGALRM, False) # SA_RESTART, no raise
c, _ = l.accept()
t0 = time.monotonic()
signal.setitimer(signal.ITIMER_REAL, 1.0)
# The handler may also run just after a recv that ignored it: SIGNAL then,
# with the time the recv took.
try:
    try:
        d = c.recv(16, socket.MSG_PEEK)
        res = "DATA %d" % len(d)
    except OSError as e:
        res = "ERR %d" % e.errno
    el = time.monotonic() - t0
except Alarm:
    res, el = "SIGNAL", time.monotonic() - t0
signal.setitimer(signal.ITIMER_REAL, 0)
print("%s %.2f" % (res, el), flush=True)
PY
}

teardown() { hb_teardown; }

@test "a blocking recv(MSG_PEEK) flooded with heartbeats is still ended by a signal whose handler lacks SA_RESTART" {
	PORT=$(free_port)
	bg srv shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=2s "$PY" "$SRV" "$PORT" intr
	wait_line "$T/srv.out" LISTENING
	run "$FLOODER" flood 127.0.0.1 "$PORT" 3.5
	assert_status 0
	wait_line "$T/srv.out" '^(ERR|DATA|SIGNAL)' 5
	echo "# $(head -3 "$T/srv.out" | tr '\n' ' ')" >&3
	local first
	first=$(grep -m1 -E '^(ERR|DATA|SIGNAL)' "$T/srv.out")
	[[ $first == "SIGNAL "* ]] || fail "the peek ended with: $first"
	local secs=${first##* }
	awk -v s="$secs" 'BEGIN { exit !(s >= 0.9 && s < 1.8) }' || fail "signal at 1 s seen after $secs s"
}

@test "a blocking recv(MSG_PEEK) flooded with heartbeats goes on after a signal whose handler has SA_RESTART" {
	PORT=$(free_port)
	bg srv shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=2s "$PY" "$SRV" "$PORT" restart
	wait_line "$T/srv.out" LISTENING
	run "$FLOODER" flood 127.0.0.1 "$PORT" 2.5
	assert_status 0
	wait_line "$T/srv.out" '^(ERR|DATA|SIGNAL)' 5
	echo "# $(head -3 "$T/srv.out" | tr '\n' ' ')" >&3
	# As the kernel restarts such a call: it goes on until the flood ends
	# with the flooder's close (a reset: it left our heartbeats unread).
	local first
	first=$(grep -m1 -E '^(ERR|DATA|SIGNAL)' "$T/srv.out")
	[[ $first == "DATA 0 "* || $first == "ERR 104 "* ]] || fail "the peek ended with: $first"
	local secs=${first##* }
	awk -v s="$secs" 'BEGIN { exit !(s >= 2.4) }' || fail "the peek ended after $secs s: $first"
}
