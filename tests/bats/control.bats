#!/usr/bin/env bats
# HBSHIM_CONTROL is served by the background thread: a process with a
# control socket and a connection has exactly two threads (its own and the
# shim's "hbshim"), and no control client, however slow or silent, delays
# another client's answer or a framed connection's heartbeats (the control
# step never waits on a client; one that stays silent for 2 s is dropped).

load helpers

# within V LO HI: LO <= V <= HI, strictly (no load slack: the bounds are the
# property under test, and the base's control thread misses them by ~1 s).
within() {
	awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }'
}

# A shimmed $APP server (accepts and holds connections) with a control
# socket at $T/ctl, on $PORT; its pid in $SRV. Extra variables in "$@".
start_server() {
	PORT=$(free_port)
	bg srv shim HBSHIM_CONTROL="$T/ctl" HBSHIM_EVENTS="$T/srv.ev" "$@" \
		"$PY" "$APP" serve 127.0.0.1 "$PORT"
	SRV=$BG_PID
	wait_line "$T/srv.out" LISTENING
	# $SRV is the timeout wrapper's pid: the server is the python process.
	SRVPY=$(pgrep -f -n "$APP serve 127.0.0.1 $PORT")
}

@test "control: with HBSHIM_CONTROL and a connection the process has exactly its own thread and the background thread, which answers hbshim ctl" {
	start_server
	[ -S "$T/ctl" ]
	# Before any connection: already answered (the harness may ask first).
	run "$HB_WRAP" ctl "$T/ctl" list
	assert_status 0
	[ "$output" = ok ]
	bg peer plain "$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("CONNECTED", flush=True)
time.sleep(30)' "$PORT"
	wait_line "$T/srv.out" ACCEPTED 5
	wait_line "$T/peer.out" CONNECTED 5
	sleep 0.3
	local tasks names
	tasks=$(ls "/proc/$SRVPY/task" | wc -l)
	names=$(cat /proc/"$SRVPY"/task/*/comm | sort | tr '\n' ' ')
	echo "tasks $tasks: $names"
	[ "$tasks" -eq 2 ] || fail "$tasks threads ($names), want 2: the program's and hbshim's"
	[ "$(cat /proc/"$SRVPY"/task/*/comm | grep -c '^hbshim$')" -eq 1 ]
	run "$HB_WRAP" ctl "$T/ctl" list
	assert_status 0
	[ "$output" = ok ]
}

@test "control: a control client that connects and stays silent for 3 s delays neither another client's answer nor the heartbeats of a framed connection (within interval + 10 %); it is dropped after 2 s" {
	start_server HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=5s
	cat >"$T/peer.py" <<'PY'
import socket, struct, sys, threading, time
port, ctl = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
# A framed peer by hand: our hello (paced, interval 200 ms, timeout 5 s).
s.sendall(b"\xe5HBS\x01\x01" + struct.pack(">II", 200, 5000))
buf, hbs = b"", []
def need(n, until):
    global buf
    while len(buf) < n:
        left = until - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            d = s.recv(4096)
        except socket.timeout:
            return False
        if not d:
            print("EOF", flush=True); sys.exit(1)
        buf += d
    return True
def silent_client():
    c = socket.socket(socket.AF_UNIX)
    c.connect(ctl)  # and never sends a byte
    t = time.monotonic()
    c.settimeout(3.5)
    try:
        d = c.recv(100)
        print("SILENT GOT %r after %.2f s" % (d, time.monotonic() - t), flush=True)
    except socket.timeout:
        print("SILENT NOT DROPPED", flush=True)
def other_client():
    c = socket.socket(socket.AF_UNIX)
    t = time.monotonic()
    c.connect(ctl)
    c.sendall(b"list\n")
    c.settimeout(2)
    ans = c.recv(100)
    print("OTHER ANSWER %r after %.3f" % (ans, time.monotonic() - t), flush=True)
t_end = time.monotonic() + 10
assert need(14, t_end), "no hello"
buf = buf[14:]
t0 = time.monotonic()
threading.Timer(0.5, silent_client).start()
threading.Timer(1.5, other_client).start()
while time.monotonic() < t0 + 4.5:
    if need(2, t0 + 4.5):
        assert buf[:2] == b"\x00\x01", buf.hex()  # a heartbeat, nothing else
        buf = buf[2:]
        hbs.append(time.monotonic())
gaps = [b - a for a, b in zip(hbs, hbs[1:])]
print("HEARTBEATS %d max gap %.3f" % (len(hbs), max(gaps)), flush=True)
PY
	run timeout 20 "$PY" "$T/peer.py" "$PORT" "$T/ctl"
	echo "$output"
	assert_status 0
	local ans gap n silent
	ans=$(line_with "OTHER ANSWER") || fail "no answer to the second client"
	[[ $ans == "OTHER ANSWER b'ok\\n' after "* ]] || fail "$ans"
	# Bounds with room for a loaded CI machine, still well below what a
	# blocking control step costs (the second client waited 1.0 s, and a
	# heartbeat 1-2 s, while a separate serve() held a silent client).
	within "${ans##* after }" 0 0.6 || fail "answered after ${ans##* after } (a silent client must not hold it up)"
	silent=$(line_with "SILENT GOT") || fail "the silent client was never dropped"
	[[ $silent == "SILENT GOT b'' after "* ]] || fail "$silent (want EOF, no answer)"
	within "$(set -- $silent; echo "$5")" 1.9 3.0 || fail "$silent (dropped after 2 s of silence)"
	read -r _ n _ _ gap < <(line_with HEARTBEATS)
	[ "$n" -ge 15 ] || fail "$n heartbeats in 4.5 s at 200 ms"
	within "$gap" 0 0.5 || fail "a heartbeat came $gap s after the previous one (interval 0.2 s)"
	echo "answer after ${ans##* after } s, silent client dropped after $(set -- $silent; echo "$5") s, $n heartbeats, largest gap $gap s" >&3
}

@test "control: a forked child does not serve its parent's control socket (every answer is the parent's, even while the child runs its own background thread)" {
	PORT=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$PORT"
	wait_line "$T/srv.out" LISTENING
	# The child connects (a connection with rule r: its own background
	# thread starts and its list would show it); the parent has none.
	bg app shim HBSHIM_CONTROL="$T/ctl" HBSHIM_FAULTS='name=r,reset,after=1h' "$PY" -c '
import os, socket, sys, time
if os.fork() == 0:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    print("CHILD CONNECTED", flush=True)
    time.sleep(30)
    os._exit(0)
time.sleep(30)' "$PORT"
	wait_line "$T/app.out" "CHILD CONNECTED" 5
	local i
	for i in $(seq 10); do
		run "$HB_WRAP" ctl "$T/ctl" list
		assert_status 0
		[ "$output" = "ok
rule r reset on" ] || fail "answer $i: $output (a conn line is the child's)"
	done
}
