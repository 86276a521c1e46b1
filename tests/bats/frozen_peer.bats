#!/usr/bin/env bats
# Framed mode detects a frozen peer: a process stopped with SIGSTOP whose
# kernel still ACKs everything (so TCP keepalive and TCP_USER_TIMEOUT never
# fire). Heartbeats stop, and the other side's blocked recv() fails with
# ETIMEDOUT after HBSHIM_TIMEOUT of silence; without the shim it blocks on.
# Also through an unshimmed relay (socat) that freezes: both ends detect it.
#
# Timing: interval 200 ms, timeout 1 s. A frozen peer stops itself right
# after its last message (the clock starts when that message arrives), and
# detection must fall in [timeout - 5 %, timeout + 10 % + 300 ms of
# scheduling slack]. The frozen relay is stopped from outside, so the last
# heartbeat it forwarded may precede the stop by up to one interval: its
# lower bound is one interval lower.

load helpers

FENV=(HBSHIM_INTERVAL=500ms HBSHIM_TIMEOUT=2500ms "HBSHIM_FRAME=127.0.0.1:*")
LO=2.375
HI=3.05
RELAY_LO=1.95

setup() {
	hb_setup
	FAPP="$BATS_FILE_TMPDIR/frozen.py"
	[ -f "$FAPP" ] || write_frozen_app "$FAPP"
}

# pid_of NAME: the pid on the "PID n" line of $T/NAME.out. It is recorded for
# teardown: a stopped process under `timeout` outlives the timeout process,
# and only its own KILL ends it.
pid_of() {
	wait_line "$T/$1.out" '^PID [0-9]+' >&2 || return 1
	local p
	p=$(awk '/^PID /{ print $2; exit }' "$T/$1.out")
	echo "$p" >>"$T/.pids"
	echo "$p"
}

is_stopped() {
	[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = T ]
}

# Wait until the process stopped itself (it does right after its message).
wait_stopped() {
	local i
	for ((i = 0; i < 100; i++)); do
		is_stopped "$1" && return 0
		sleep 0.05
	done
	fail "pid $1 is not stopped: $(ps -o pid=,stat=,args= -p "$1")"
}

now() { echo "$EPOCHREALTIME"; }
# Sleep until SECS seconds after the EPOCHREALTIME stamp T0.
sleep_until() {
	local left
	left=$(awk -v t0="$1" -v s="$2" -v n="$EPOCHREALTIME" 'BEGIN { d = t0 + s - n; print (d > 0 ? d : 0) }')
	sleep "$left"
}

# expect_timedout FILE P: the first call (P1) of the side that detected the
# freeze failed with ETIMEDOUT, and so did the second one and the write that
# followed. The seconds of the first call in $DT, its wall clock in $WALL.
expect_timedout() {
	local f=$1 p=$2 l
	l=$(grep "^${p}1 " "$f") || fail "no ${p}1 line in $f: $(cat "$f" "${f%.out}.err")" || return 1
	set -- $l
	[ "$2 $3 $4" = "ERR 110 ETIMEDOUT" ] || fail "$f: $l (expected ERR 110 ETIMEDOUT)" || return 1
	DT=$5
	WALL=$(kv "$l" wall || true)
	grep -q "^${p}2 ERR 110 ETIMEDOUT" "$f" || fail "second call after the detection: $(grep "^${p}2" "$f")" || return 1
	grep -Eq '^(SEND|WRITE) ERR 110 ETIMEDOUT' "$f" || fail "write after the detection: $(grep -E '^(SEND|WRITE)' "$f")"
}

# dead_event FILE: a "dead" event in frame mode, reason heartbeat, with the
# silence within [LO, HI]; the connection had been framed.
dead_event() {
	run "$PY" - "$1" "$LO" "$(awk -v h="$HI" -v s="$HB_TIME_SLACK" 'BEGIN { print h + s }')" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
names = [e["event"] for e in ev]
assert "framed" in names, "no framed event: %s" % names
dead = [e for e in ev if e["event"] == "dead"]
assert len(dead) == 1, "dead events: %r" % dead
d = dead[0]
assert d["mode"] == "frame" and d["reason"] == "heartbeat", d
lo, hi = float(sys.argv[2]) * 1000, float(sys.argv[3]) * 1000
assert lo <= d["silent_ms"] <= hi, "silent_ms %d outside [%d, %d]" % (d["silent_ms"], lo, hi)
print("OK", d["silent_ms"])
PY
	assert_status 0
}

# The unshimmed pair, started alongside: still blocked 4 s after WAITING.
control_blocked() {
	local pid=$1 name=$2 t0=$3
	sleep_until "$t0" 4
	kill -0 "$pid" 2>/dev/null || fail "unshimmed $name exited: $(cat "$T/$name.out" "$T/$name.err")"
	[ "$(tail -1 "$T/$name.out")" = WAITING ] || fail "unshimmed $name: $(cat "$T/$name.out")"
}

@test "frozen server: the shimmed client's blocked recv() fails ETIMEDOUT within the bound; unshimmed still blocked at 4 s" {
	local port pport spid pspid
	port=$(free_port)
	pport=$(free_port)
	bg srv shim "${FENV[@]}" HBSHIM_EVENTS="$T/srv.ev" "$PY" "$FAPP" server "$port" 1000 stop
	bg psrv plain "$PY" "$FAPP" server "$pport" 1000 stop
	spid=$(pid_of srv)
	pspid=$(pid_of psrv)
	wait_line "$T/srv.out" LISTENING
	wait_line "$T/psrv.out" LISTENING

	bg cli shim "${FENV[@]}" HBSHIM_EVENTS="$T/cli.ev" "$PY" "$FAPP" client "$port" 1000 bye
	local cli=$BG_PID
	pid_of cli >/dev/null
	bg pcli plain "$PY" "$FAPP" client "$pport" 1000 bye
	local pcli=$BG_PID
	pid_of pcli >/dev/null
	wait_line "$T/cli.out" WAITING
	wait_line "$T/pcli.out" WAITING
	local t0
	t0=$(now)
	wait_stopped "$spid"
	wait_stopped "$pspid"

	bg_wait "$cli" 10
	expect_timedout "$T/cli.out" RECV
	echo "# frozen server: client's recv() failed ETIMEDOUT after $DT s" >&3
	in_range "$DT" "$LO" "$HI" || fail "detected after $DT s, expected $LO..$HI s"
	[ "$BG_STATUS" -eq 0 ] || fail "client status $BG_STATUS: $(cat "$T/cli.err")"
	dead_event "$T/cli.ev"
	control_blocked "$pcli" pcli "$t0"
}

@test "frozen client: the shimmed server's blocked recv() fails ETIMEDOUT within the bound; unshimmed still blocked at 4 s" {
	local port pport
	port=$(free_port)
	pport=$(free_port)
	# The server side needs no rule: it detects the client's hello.
	bg srv shim HBSHIM_INTERVAL=500ms HBSHIM_TIMEOUT=2500ms HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" "$FAPP" server "$port" 1000 wait
	local srv=$BG_PID
	bg psrv plain "$PY" "$FAPP" server "$pport" 1000 wait
	local psrv=$BG_PID
	pid_of srv >/dev/null
	pid_of psrv >/dev/null
	wait_line "$T/srv.out" LISTENING
	wait_line "$T/psrv.out" LISTENING

	local cpid pcpid
	bg cli shim "${FENV[@]}" "$PY" "$FAPP" client "$port" 1000 stop
	cpid=$(pid_of cli)
	bg pcli plain "$PY" "$FAPP" client "$pport" 1000 stop
	pcpid=$(pid_of pcli)
	wait_line "$T/srv.out" WAITING
	wait_line "$T/psrv.out" WAITING
	local t0
	t0=$(now)
	wait_stopped "$cpid"
	wait_stopped "$pcpid"

	bg_wait "$srv" 10
	expect_timedout "$T/srv.out" RECV
	echo "# frozen client: server's recv() failed ETIMEDOUT after $DT s" >&3
	in_range "$DT" "$LO" "$HI" || fail "detected after $DT s, expected $LO..$HI s"
	dead_event "$T/srv.ev"
	control_blocked "$psrv" psrv "$t0"
}

@test "frozen server: a C client blocked in read() gets ETIMEDOUT within the bound, then on read() and write() again" {
	local bin="$HB_HELPERS/frame_client"
	[ -x "$bin" ] || make -s -C "$HB_ROOT" build/helpers/frame_client >&2 ||
		skip "build/helpers/frame_client could not be built (make integration builds it)"
	local port spid
	port=$(free_port)
	bg srv shim "${FENV[@]}" "$PY" "$FAPP" server "$port" 100000 stop
	spid=$(pid_of srv)
	wait_line "$T/srv.out" LISTENING
	bg cli shim "${FENV[@]}" HBSHIM_EVENTS="$T/cli.ev" "$bin" 127.0.0.1 "$port" 100000
	local cli=$BG_PID
	pid_of cli >/dev/null
	wait_line "$T/cli.out" WAITING
	wait_stopped "$spid"
	bg_wait "$cli" 10
	[ "$BG_STATUS" -eq 0 ] || fail "C client status $BG_STATUS: $(cat "$T/cli.out" "$T/cli.err")"
	grep -qx 'ECHO OK 100000' "$T/cli.out" || fail "exchange: $(cat "$T/cli.out")"
	expect_timedout "$T/cli.out" READ
	echo "# frozen server: C client's read() failed ETIMEDOUT after $DT s" >&3
	in_range "$DT" "$LO" "$HI" || fail "detected after $DT s, expected $LO..$HI s"
	dead_event "$T/cli.ev"
}

# Every descendant of pid (children first found, recursively).
descendants() {
	local c
	for c in $(ps -o pid= --ppid "$1"); do
		echo "$c"
		descendants "$c"
	done
}

@test "frozen relay: shimmed client -> unshimmed socat -> shimmed server; SIGSTOP socat: both ends get ETIMEDOUT" {
	# Its timing (a relay stopped from outside; a hello that must beat a 2 ms + 2 RTT
	# wait) does not survive CI-time CPU steal; run it with HB_RUN_TIMING=1.
	[ -z "${CI:-}" ] || [ -n "${HB_RUN_TIMING:-}" ] || skip "timing-sensitive under CI load (HB_RUN_TIMING=1 runs it)"
	need_cmd socat
	local p1 p2
	p1=$(free_port)
	p2=$(free_port)
	bg srv shim HBSHIM_INTERVAL=500ms HBSHIM_TIMEOUT=2500ms HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" "$FAPP" server "$p2" 300000 wait
	local srv=$BG_PID
	pid_of srv >/dev/null
	wait_line "$T/srv.out" LISTENING
	bg relay plain socat "TCP-LISTEN:$p1,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$p2"
	local relay=$BG_PID
	wait_listen "$p1"
	# The client's rule names the relay, the peer it actually connects to.
	bg cli shim HBSHIM_INTERVAL=500ms HBSHIM_TIMEOUT=2500ms "HBSHIM_FRAME=127.0.0.1:$p1" \
		HBSHIM_EVENTS="$T/cli.ev" "$PY" "$FAPP" client "$p1" 300000 wait
	local cli=$BG_PID
	pid_of cli >/dev/null
	wait_line "$T/cli.out" WAITING
	wait_line "$T/srv.out" WAITING
	# 300 kB each way went through the relay byte for byte, framed end to end.
	grep -qx 'ECHO OK 300000' "$T/cli.out" || fail "exchange: $(cat "$T/cli.out")"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "client: no hello from the server: $(cat "$T/cli.ev")"
	grep -q '"event":"framed"' "$T/srv.ev" || fail "server: no hello from the client: $(cat "$T/srv.ev")"

	local p pids
	pids=$(descendants "$relay")
	[ -n "$pids" ] || fail "no socat process under $relay"
	echo "$pids" >>"$T/.pids"
	local tstop
	tstop=$(now)
	for p in $pids; do
		kill -STOP "$p"
	done

	bg_wait "$cli" 10
	bg_wait "$srv" 10
	local dc ds
	expect_timedout "$T/cli.out" RECV
	dc=$(awk -v a="$WALL" -v b="$tstop" 'BEGIN { printf "%.3f", a - b }')
	expect_timedout "$T/srv.out" RECV
	ds=$(awk -v a="$WALL" -v b="$tstop" 'BEGIN { printf "%.3f", a - b }')
	echo "# frozen relay: client detected after $dc s, server after $ds s (from SIGSTOP)" >&3
	in_range "$dc" "$RELAY_LO" "$HI" || fail "client detected after $dc s, expected $RELAY_LO..$HI s"
	in_range "$ds" "$RELAY_LO" "$HI" || fail "server detected after $ds s, expected $RELAY_LO..$HI s"
}

write_frozen_app() {
	cat >"$1" <<'PY'
"""A plain socket server and client for the frozen-peer tests.

  frozen.py server PORT N MODE    MODE: stop | wait
  frozen.py client PORT N MODE    MODE: stop | bye | wait

The client sends N random bytes, the server echoes them, the client checks
them and sends "done". Then:
  server stop: sends "bye!" and stops itself (SIGSTOP) at once;
  server wait: blocks in recv();
  client stop: stops itself right after "done";
  client bye:  reads "bye!", then blocks in recv();
  client wait: blocks in recv().
A side that blocks prints WAITING, then how recv() ended (RECV1), a second
recv() (RECV2) and a send() (SEND), each with the seconds since the last
message arrived and the wall clock: "RECV1 ERR 110 ETIMEDOUT 1.012 wall=...".
"""
import errno, os, signal, socket, sys, time


def say(*w):
    print(*w, flush=True)


def outcome(fn, t0):
    try:
        d = fn()
        r = ("DATA %r" % d) if d else "EOF"
    except OSError as e:
        r = "ERR %d %s" % (e.errno, errno.errorcode.get(e.errno, "?"))
    return "%s %.3f wall=%.3f" % (r, time.monotonic() - t0, time.time())


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            raise SystemExit("EOF after %d of %d bytes" % (len(got), n))
        got += d
    return got


def block(s, t0):
    say("WAITING")
    say("RECV1", outcome(lambda: s.recv(1), t0))
    say("RECV2", outcome(lambda: s.recv(1), t0))
    say("SEND", outcome(lambda: s.send(b"x") and b"", t0))


def server(port, n, mode):
    say("PID", os.getpid())
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(port)))
    l.listen(4)
    say("LISTENING")
    c, _ = l.accept()
    c.sendall(recv_exact(c, int(n)))
    if recv_exact(c, 4) != b"done":
        raise SystemExit("protocol")
    if mode == "stop":
        c.sendall(b"bye!")
        os.kill(os.getpid(), signal.SIGSTOP)
    block(c, time.monotonic())


def client(port, n, mode):
    say("PID", os.getpid())
    s = socket.socket()
    s.connect(("127.0.0.1", int(port)))
    data = os.urandom(int(n))
    s.sendall(data)
    if recv_exact(s, len(data)) != data:
        say("MISMATCH")
        return 1
    say("ECHO OK", len(data))
    s.sendall(b"done")
    if mode == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return 0
    if mode == "bye" and recv_exact(s, 4) != b"bye!":
        raise SystemExit("protocol")
    block(s, time.monotonic())


sys.exit({"server": server, "client": client}[sys.argv[1]](*sys.argv[2:]) or 0)
PY
}
