#!/usr/bin/env bats
# HBSHIM_FAULTS: network faults injected into unmodified programs (curl,
# redis-cli, python clients), each checked on bytes, errnos and times, with
# blocking, poll and select callers.

load helpers

FA="$HB_ROOT/tests/app/faultapp.py"

# A faultapp server (plain: the faults are the client's) on $PORT.
start_server() {
	PORT=$(free_port)
	bg srv plain "$PY" "$FA" server 127.0.0.1 "$PORT"
	wait_listen "$PORT"
}

# A static-file server with a 200000-byte random body, on $HPORT.
start_http() {
	need_cmd curl
	mkdir -p "$T/www"
	head -c 200000 /dev/urandom >"$T/www/body.bin"
	HPORT=$(free_port)
	bg http plain "$PY" -m http.server "$HPORT" --bind 127.0.0.1 --directory "$T/www"
	wait_listen "$HPORT"
}

# Seconds (float) a command takes; its status in $RC.
timed() {
	local t0 t1
	t0=$(date +%s.%N)
	RC=0
	"$@" || RC=$?
	t1=$(date +%s.%N)
	ELAPSED=$(echo "$t1 - $t0" | bc)
}

# The fault events of a file as "rule action dir errno" lines.
fault_seq() {
	"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["event"] == "fault":
        print(e["rule"], e["action"], e.get("dir", "-"), e.get("errno", "-"))' "$1"
}

@test "faults: curl under latency=400ms,dir=in: the reply comes 400 ms later, total time grows by about that, body exact" {
	start_http
	local base lat
	base=$(plain curl -sS -w '%{time_starttransfer} %{time_total}' -o "$T/a.bin" \
		"http://127.0.0.1:$HPORT/body.bin")
	lat=$(shim HBSHIM_EVENTS="$T/ev" HBSHIM_FAULTS='latency=400ms,dir=in' \
		curl -sS -w '%{time_starttransfer} %{time_total}' -o "$T/b.bin" \
		"http://127.0.0.1:$HPORT/body.bin")
	echo "plain (first byte, total): $base; latency: $lat"
	cmp "$T/www/body.bin" "$T/b.bin"
	# The first byte reaches curl no sooner than 400 ms after the request
	# (held from the moment it arrived); the whole transfer grows by about
	# the latency (the body follows the first byte without a second wait).
	"$PY" -c 'import sys
b = [float(x) for x in sys.argv[1].split()]
l = [float(x) for x in sys.argv[2].split()]
assert l[0] >= 0.395, l
assert l[1] - b[1] < 1.2, (b, l)
assert l[1] - l[0] < b[1] - b[0] + 0.35, (b, l)' "$base" "$lat"
	[ "$(fault_seq "$T/ev")" = "f1 latency in -" ]
}

@test "faults: curl under bandwidth=100k,dir=in: 200000 bytes take 2 s within 20 %, body exact" {
	start_http
	timed shim HBSHIM_FAULTS='bandwidth=100k,dir=in' \
		curl -sS -o "$T/b.bin" "http://127.0.0.1:$HPORT/body.bin"
	echo "elapsed $ELAPSED s"
	[ "$RC" -eq 0 ] || fail "curl under bandwidth: $RC"
	cmp "$T/www/body.bin" "$T/b.bin"
	echo "$ELAPSED >= 1.6 && $ELAPSED <= 2.4" | bc | grep -qx 1
}

@test "faults: redis-cli under slicer=1 (one byte per call): replies exact; reset: the connection error" {
	need_cmd redis-server redis-cli
	local port val
	port=$(free_port)
	bg redis plain redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no
	wait_listen "$port"
	val=$(head -c 600 /dev/urandom | base64 -w0)
	run shim HBSHIM_EVENTS="$T/ev" HBSHIM_FAULTS='slicer=1' redis-cli -p "$port" set k "$val"
	assert_status 0
	[ "$output" = OK ]
	run shim HBSHIM_FAULTS='slicer=1' HBSHIM_STATS="$T/st" redis-cli -p "$port" get k
	assert_status 0
	[ "$output" = "$val" ]
	grep -qx 'hbshim_faults_injected_total{action="slicer"} 1' "$T/st"
	[ "$(fault_seq "$T/ev")" = "f1 slicer out -" ] # recorded once, when it starts (the request)

	run shim HBSHIM_FAULTS='reset' redis-cli -p "$port" ping
	echo "$output"
	[ "$status" -ne 0 ]
	[[ $output == *"Connection reset by peer"* ]]
}

@test "faults: slicer=100 with blocking, poll, select and SO_RCVTIMEO readers: every read at most 100 bytes, bytes exact" {
	start_server
	local m
	for m in blocking poll select rcvtimeo; do
		run shim HBSHIM_FAULTS='slicer=100' "$PY" "$FA" get 127.0.0.1 "$PORT" 5000 "$m" 5
		echo "$m: $output"
		assert_status 0
		[[ ${lines[1]} == "ok 5000" ]]
		"$PY" -c 'import sys; s=[int(x) for x in sys.argv[1].split()[1].split(",")]; assert max(s) <= 100 and len(s) >= 50, s' "${lines[0]}"
	done
}

@test "faults: reset after 500 bytes in: the client fails ECONNRESET (blocking, poll, select) and the server sees a reset" {
	start_server
	local m n=0
	for m in blocking poll select; do
		run shim HBSHIM_FAULTS='reset,bytes=500,dir=in' "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 5
		echo "$m: $output"
		assert_status 0
		# Whatever the first read got (up to 64 KiB, less on a loaded
		# machine) crossed the trigger; the next call fails.
		[[ $output =~ "err ECONNRESET after "[1-9][0-9]* ]] || fail "$m: $output"
		n=$((n + 1))
		wait_count "$T/srv.out" '^end ' "$n" 5
	done
	[ "$(grep -c '^end ECONNRESET' "$T/srv.out")" -eq 3 ]
	# Without the rule the same exchange ends cleanly.
	run shim "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 blocking 5
	[[ ${lines[1]} == "ok 100000" ]]
	wait_count "$T/srv.out" '^end ' 4 5
	[ "$(tail -1 "$T/srv.out")" = "end EOF" ]
}

@test "faults: reset,after=500ms while the client is blocked in recv: it fails ECONNRESET at 0.5 s, the server sees the reset" {
	start_server
	timed shim HBSHIM_FAULTS='reset,after=500ms' "$PY" "$APP" client-idle 127.0.0.1 "$PORT" >"$T/out"
	cat "$T/out"
	echo "elapsed $ELAPSED"
	grep -q '^RECV.*ECONNRESET' "$T/out"
	# after a reset, writes fail EPIPE (no signal of ours)
	grep -q '^SEND.*EPIPE' "$T/out"
	echo "$ELAPSED >= 0.45 && $ELAPSED < 2.5" | bc | grep -qx 1
	wait_line "$T/srv.out" '^end ECONNRESET' 5
}

@test "faults: close and limit_data=1000: the reader sees EOF (exactly 1000 bytes with the limit), all callers; curl reports the short body" {
	start_server
	local m
	for m in blocking poll select; do
		run shim HBSHIM_FAULTS='limit_data=1000' "$PY" "$FA" get 127.0.0.1 "$PORT" 5000 "$m" 5
		echo "$m: $output"
		[[ ${lines[1]} == "eof after 1000" ]]
		run shim HBSHIM_FAULTS='close,bytes=1' "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 5
		echo "$m: $output"
		[[ ${lines[1]} =~ ^"eof after "[1-9][0-9]*$ ]] || fail "$m: $output"
	done
	start_http
	run shim HBSHIM_FAULTS='limit_data=1000' curl -sS -o "$T/b.bin" "http://127.0.0.1:$HPORT/body.bin"
	echo "$output"
	[ "$status" -eq 18 ] # CURLE_PARTIAL_FILE
	[ -s "$T/b.bin" ]
	cmp -n "$(stat -c %s "$T/b.bin")" "$T/b.bin" "$T/www/body.bin"
}

@test "faults: hang after 500 bytes: the reader gets its own timeout (SO_RCVTIMEO, poll, select, Python's settimeout) after 1 s" {
	start_server
	local m
	for m in rcvtimeo poll select settimeout; do
		timed shim HBSHIM_FAULTS='hang,bytes=500,dir=in' "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 1 >"$T/out"
		echo "$m: $(cat "$T/out") in $ELAPSED s"
		grep -qEx 'timeout after [1-9][0-9]*' "$T/out" || fail "$m: $(cat "$T/out")"
		echo "$ELAPSED >= 0.9 && $ELAPSED < 3" | bc | grep -qx 1
	done
}

@test "faults: hang: a blocked read returns EINTR on a signal" {
	start_server
	cat >"$T/sig.py" <<'EOF'
import os, signal, socket, sys
# Python runs a handler only once the interrupted call returned EINTR (PEP
# 475); this one raises, so the read is not retried.
class Sig(Exception):
    pass
def handler(*a):
    raise Sig()
signal.signal(signal.SIGALRM, handler)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"10\n")
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    os.read(s.fileno(), 100)
    print("read returned")
except Sig:
    print("EINTR")
EOF
	timed shim HBSHIM_FAULTS='hang' "$PY" "$T/sig.py" "$PORT" >"$T/out"
	cat "$T/out"
	grep -qx EINTR "$T/out"
	echo "$ELAPSED < 3" | bc | grep -qx 1
}

@test "faults: errno=ECONNABORTED on the 2nd read: that call fails with it (blocking, poll, select)" {
	start_server
	local m
	for m in blocking poll select; do
		run shim HBSHIM_EVENTS="$T/ev.$m" HBSHIM_FAULTS='name=abort2,errno=ECONNABORTED,call=read,nth=2' \
			"$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 5
		echo "$m: $output"
		# The first read got what had arrived (up to 64 KiB); the second fails.
		[[ ${lines[0]} =~ ^sizes\ ([0-9]+)$ ]] || fail "$m: $output"
		((BASH_REMATCH[1] > 0 && BASH_REMATCH[1] <= 65536)) || fail "$m: $output"
		[[ ${lines[1]} == "err ECONNABORTED after ${BASH_REMATCH[1]}" ]] || fail "$m: $output"
		[ "$(fault_seq "$T/ev.$m")" = "abort2 errno in ECONNABORTED" ]
	done
}

@test "faults: connect refuse and timeout against a reachable server (blocking and non-blocking); delay" {
	start_server
	local m
	for m in blocking poll; do
		run shim HBSHIM_FAULTS='refuse' "$PY" "$FA" connect 127.0.0.1 "$PORT" "$m" 1
		echo "$m refuse: $output"
		[ "${lines[0]}" = "err ECONNREFUSED" ]
		run shim HBSHIM_FAULTS="timeout,peer=127.0.0.1:$PORT" "$PY" "$FA" connect 127.0.0.1 "$PORT" "$m" 1
		echo "$m timeout: $output"
		[ "${lines[0]}" = "timeout" ]
		"$PY" -c 'import sys; e=float(sys.argv[1].split()[1]); assert 0.9 <= e < 2.5, e' "${lines[1]}"
		# A rule for another port leaves this connect alone.
		run shim HBSHIM_FAULTS='refuse,peer=127.0.0.1:1' "$PY" "$FA" connect 127.0.0.1 "$PORT" "$m" 1
		[ "${lines[0]}" = connected ]
	done
	run shim HBSHIM_FAULTS='delay=700ms' "$PY" "$FA" connect 127.0.0.1 "$PORT" blocking 3
	echo "delay: $output"
	[ "${lines[0]}" = connected ]
	"$PY" -c 'import sys; e=float(sys.argv[1].split()[1]); assert 0.65 <= e < 2, e' "${lines[1]}"
	start_http
	timed shim HBSHIM_FAULTS='timeout' curl -sS --connect-timeout 1 -o /dev/null "http://127.0.0.1:$HPORT/body.bin"
	[ "$RC" -eq 28 ] # CURLE_OPERATION_TIMEDOUT
}

@test "faults: the same HBSHIM_SEED twice gives the same fault sequence and read sizes; another seed differs" {
	start_server
	local rules='slicer=300;name=flaky,errno=EINTR,call=read,prob=0.2'
	run1() {
		shim HBSHIM_SEED="$1" HBSHIM_EVENTS="$T/ev.$2" HBSHIM_FAULTS="$rules" \
			"$PY" "$FA" get 127.0.0.1 "$PORT" 20000 poll 5 >"$T/out.$2" || true
		cat "$T/out.$2"
	}
	run1 42 a
	run1 42 b
	run1 43 c
	cmp "$T/out.a" "$T/out.b"
	fault_seq "$T/ev.a" >"$T/seq.a"
	fault_seq "$T/ev.b" >"$T/seq.b"
	cat "$T/seq.a"
	cmp "$T/seq.a" "$T/seq.b"
	grep -q 'flaky errno in EINTR' "$T/seq.a"
	! cmp -s "$T/out.a" "$T/out.c"
}

@test "faults: a framed connection under slicer and latency: bytes exact, still framed" {
	PORT=$(free_port)
	bg srv shim HBSHIM_EVENTS="$T/srv.ev" "$PY" "$FA" server 127.0.0.1 "$PORT"
	wait_listen "$PORT"
	run shim HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_EVENTS="$T/cli.ev" \
		HBSHIM_FAULTS='slicer=7;latency=50ms,dir=out' "$PY" "$FA" get 127.0.0.1 "$PORT" 3000 blocking 5
	echo "$output"
	[[ ${lines[1]} == "ok 3000" ]]
	grep -q '"event":"framed"' "$T/cli.ev"
	! grep -q protocol_error "$T/cli.ev" "$T/srv.ev"
}

@test "faults: invalid rules: the wrapper exits 2 with one line; the variable alone leaves the library passive" {
	run stderr_to "$T/err" "$HB_WRAP" --fault 'reset,peer=nowhere' true
	[ "$status" -eq 2 ]
	[ "$(wc -l <"$T/err")" -eq 1 ]
	grep -q 'HBSHIM_FAULTS: invalid value "reset,peer=nowhere": expected rules separated by' "$T/err"
	start_server
	run stderr_to "$T/err2" shim HBSHIM_FAULTS='slicer=0' "$PY" "$FA" get 127.0.0.1 "$PORT" 5000 blocking 5
	[[ ${lines[1]} == "ok 5000" ]]
	grep -q 'HBSHIM_FAULTS: invalid value "slicer=0"' "$T/err2"
	# Repeated --fault options are joined with ';'.
	run "$HB_WRAP" --fault 'slicer=10' --fault 'limit_data=100' "$PY" "$FA" get 127.0.0.1 "$PORT" 5000 blocking 5
	echo "$output"
	[[ ${lines[1]} == "eof after 100" ]]
	"$PY" -c 'import sys; s=[int(x) for x in sys.argv[1].split()[1].split(",")]; assert max(s) <= 10, s' "${lines[0]}"
}

@test "faults: examples/fault-harness.sh reports each scenario's status and faults" {
	start_server
	printf '%s\n' '# two scenarios and the baseline' '' 'limit_data=10' 'refuse' >"$T/sc"
	# the library under test (HB_LIB), not whatever sits beside the wrapper
	run env HBSHIM_LIBRARY="$HB_LIB" "$HB_ROOT/examples/fault-harness.sh" -f "$T/sc" -- "$PY" "$FA" get 127.0.0.1 "$PORT" 1000 blocking 5
	echo "$output"
	assert_status 0
	[[ ${lines[1]} =~ ^\(none\)\ +0\ +[0-9.]+\ 0$ ]]
	[[ ${lines[2]} =~ ^limit_data=10\ +0\ +[0-9.]+\ 1$ ]]
	[[ ${lines[3]} =~ ^refuse\ +1\ +[0-9.]+\ 1$ ]]
}

@test "faults: rules on the accepting side (side=accept): a server's writes sliced and limited; side=connect rules leave it alone" {
	PORT=$(free_port)
	bg srv shim HBSHIM_EVENTS="$T/ev" \
		HBSHIM_FAULTS='slicer=10,side=accept;limit_data=3000,dir=out,side=accept;reset,side=connect' \
		"$PY" "$FA" server 127.0.0.1 "$PORT"
	wait_listen "$PORT"
	run plain "$PY" "$FA" get 127.0.0.1 "$PORT" 5000 blocking 5
	echo "$output"
	[[ ${lines[1]} == "eof after 3000" ]]
	wait_line "$T/srv.out" '^end EPIPE' 5
	fault_seq "$T/ev" >"$T/seq"
	cat "$T/seq"
	# the slicer starts with the request line (read), the limit ends the reply
	[ "$(cat "$T/seq")" = "$(printf 'f1 slicer in -\nf2 limit_data out -')" ]
}

@test "faults: latency and bandwidth for blocking, poll and select readers; poll and select do not report data held back (no busy loop of EAGAIN reads)" {
	start_server
	local m f
	for m in blocking poll select; do
		for f in 'latency=300ms,dir=in' 'bandwidth=50k,dir=in'; do
			timed run shim HBSHIM_FAULTS="$f" "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 5
			echo "$m $f: $output ($ELAPSED s)"
			[[ ${lines[1]} == "ok 100000" ]]
			[ "${lines[2]#eagain }" -le 2 ]
			# 100000 bytes at 50000 bytes/s: 2 s (the first 2500 at once)
			[[ $f != bandwidth* ]] || echo "$ELAPSED >= 1.8" | bc | grep -qx 1
		done
		[ "$m" != blocking ] || continue # its hang is the SO_RCVTIMEO test above
		run shim HBSHIM_FAULTS='hang,bytes=500,dir=in' "$PY" "$FA" get 127.0.0.1 "$PORT" 100000 "$m" 1
		echo "$m hang: $output"
		[[ ${lines[1]} =~ ^"timeout after "[1-9][0-9]*$ ]] || fail "$m hang: $output"
		[ "${lines[2]#eagain }" -le 2 ]
	done
}

@test "faults: reset,after=500ms reaches a client idle in poll: poll wakes at 0.5 s, the read fails ECONNRESET" {
	start_server
	cat >"$T/idle.py" <<'EOF2'
import select, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setblocking(False)
t0 = time.monotonic()
p = select.poll()
p.register(s, select.POLLIN)
ev = p.poll(5000)
try:
    s.recv(10)
    print("recv returned")
except OSError as e:
    print("recv", e.errno == 104 and "ECONNRESET" or e.errno)
print("elapsed %.2f" % (time.monotonic() - t0))
EOF2
	run shim HBSHIM_FAULTS='reset,after=500ms' "$PY" "$T/idle.py" "$PORT"
	echo "$output"
	[ "${lines[0]}" = "recv ECONNRESET" ]
	"$PY" -c 'import sys; e=float(sys.argv[1].split()[1]); assert 0.45 <= e < 2, e' "${lines[1]}"
	wait_line "$T/srv.out" '^end ECONNRESET' 5
}

@test "faults: live control: hbshim ctl lists the connection, triggers a reset now (the blocked recv fails at once), refuses bad commands; socket 0600, removed at exit" {
	start_server
	bg cli shim HBSHIM_CONTROL="$T/ctl.%p" HBSHIM_FAULTS='name=r,reset,after=1h' \
		"$PY" "$APP" client-idle 127.0.0.1 "$PORT"
	local pid=$BG_PID sock
	wait_line "$T/cli.out" READY 10
	sock=$(echo "$T"/ctl.*)
	[ -S "$sock" ]
	[ "$(stat -c %a "$sock")" = 600 ]
	run "$HB_WRAP" ctl "$sock" list
	echo "$output"
	assert_status 0
	[ "${lines[0]}" = ok ]
	[ "${lines[1]}" = "rule r reset on" ]
	[[ ${lines[2]} == "conn fd="*" peer=127.0.0.1:$PORT rules=r" ]]
	run "$HB_WRAP" ctl "$sock" frobnicate
	[ "$status" -eq 1 ]
	[[ $output == "error: "* ]]
	run "$HB_WRAP" ctl "$sock" add 'name=s,slicer=0'
	[ "$status" -eq 1 ]
	run "$HB_WRAP" ctl "$sock" add 'name=s,slicer=5'
	assert_status 0
	sleep 0.3
	grep -q READY "$T/cli.out"
	! grep -q RECV "$T/cli.out" # still blocked: the reset is an hour away
	run "$HB_WRAP" ctl "$sock" trigger r
	assert_status 0
	[ "$output" = "ok triggered r" ]
	wait_line "$T/cli.out" '^RECV ERR [0-9]+ ECONNRESET' 3
	wait_line "$T/srv.out" '^end ECONNRESET' 5
	bg_wait "$pid" 5
	[ ! -e "$sock" ]
	if command -v setpriv >/dev/null && [ "$(id -u)" -eq 0 ]; then
		# Another user who can reach the socket file is still refused.
		local d
		d=$(mktemp -d /tmp/hbt-ctl.XXXXXX)
		chmod 0711 "$d"
		bg cli2 shim HBSHIM_CONTROL="$d/c2" "$PY" -c 'import time; time.sleep(5)'
		for _ in $(seq 50); do [ -S "$d/c2" ] && break; sleep 0.1; done
		chmod 0777 "$d/c2"
		run setpriv --reuid=65534 --regid=65534 --clear-groups "$HB_WRAP" ctl "$d/c2" list
		rm -rf "$d"
		echo "other user: status $status: $output"
		[ "$status" -eq 1 ]
		[ "$output" = "error: permission denied" ]
	fi
}

@test "faults: hang on a framed connection stops our heartbeats too: the framed peer declares us dead" {
	local -a fr=(HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=600ms)
	PORT=$(free_port)
	bg srv shim "${fr[@]}" HBSHIM_EVENTS="$T/srv.ev" "$PY" "$FA" server 127.0.0.1 "$PORT"
	wait_listen "$PORT"
	bg cli shim "${fr[@]}" HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_EVENTS="$T/cli.ev" \
		HBSHIM_FAULTS='hang,after=500ms' "$PY" "$APP" client-idle 127.0.0.1 "$PORT"
	wait_line "$T/cli.ev" '"event":"framed"' 5
	wait_line "$T/srv.ev" '"event":"dead".*"reason":"heartbeat"' 5
	wait_line "$T/srv.out" '^end ETIMEDOUT' 5
	grep -q '"event":"fault".*"action":"hang"' "$T/cli.ev"
}
