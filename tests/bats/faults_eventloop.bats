#!/usr/bin/env bats
# HBSHIM_FAULTS and event loops: epoll (level-triggered, edge-triggered,
# one-shot; epoll_wait, epoll_pwait, epoll_pwait2) does not report data a
# fault holds back and reports it at its release; non-blocking connects
# under refuse, timeout and delay behave as the kernel's; every action with
# an epoll client; psql under reset.

load helpers

FA="$HB_ROOT/tests/app/faultapp.py"
FL="$HB_ROOT/tests/app/faultloop.py"
FE="$HB_HELPERS/faultepoll"

teardown() {
	hb_teardown
	[ -z "${PGD:-}" ] || rm -rf "$PGD"
}

# A faultapp server (plain: the faults are the client's) on $PORT.
start_server() {
	PORT=$(free_port)
	bg srv plain "$PY" "$FA" server 127.0.0.1 "$PORT"
	wait_listen "$PORT"
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

# A float comparison: ok "$X >= 0.4 && $X < 2"
ok() {
	echo "$1" | bc | grep -qx 1 || fail "not true: $1"
}

need_fe() { need_helper faultepoll; }

@test "faults_eventloop: latency=400ms with epoll (level, edge, one-shot, selectors), poll and select: the first byte no sooner than 0.4 s, bytes exact, no read without data" {
	start_server
	local w
	for w in epoll-lt epoll-et epoll-oneshot selectors poll select; do
		run shim HBSHIM_FAULTS='latency=400ms,dir=in' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 5
		echo "$w: $output"
		assert_status 0
		[ "${lines[1]}" = "ok 100000" ] || fail "$w: ${lines[1]}"
		# Every report had data behind it: none was given while the
		# data was held (a level-triggered loop spun on EAGAIN reads, an
		# edge-triggered one was never told of the data again).
		[ "${lines[2]}" = "eagain 0" ] || fail "$w: ${lines[2]}"
		ok "${lines[3]#first } >= 0.395 && ${lines[3]#first } < 1.5"
	done
}

@test "faults_eventloop: bandwidth=50k with epoll (level, edge, one-shot, selectors): 100000 bytes take 2 s within 20 %, no read without data" {
	start_server
	local w
	for w in epoll-lt epoll-et epoll-oneshot selectors; do
		timed run shim HBSHIM_FAULTS='bandwidth=50k,dir=in' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 5
		echo "$w: $output ($ELAPSED s)"
		[ "${lines[1]}" = "ok 100000" ] || fail "$w: ${lines[1]}"
		[ "${lines[2]}" = "eagain 0" ] || fail "$w: ${lines[2]}"
		ok "$ELAPSED >= 1.6 && $ELAPSED <= 2.4"
	done
}

@test "faults_eventloop: hang after 500 bytes with epoll (level, edge, one-shot, selectors): the wait returns no event at the program's own timeout (1 s), no read without data" {
	start_server
	local w
	for w in epoll-lt epoll-et epoll-oneshot selectors; do
		timed run shim HBSHIM_FAULTS='hang,bytes=500,dir=in' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 1
		echo "$w: $output ($ELAPSED s)"
		[[ ${lines[1]} =~ ^"timeout after "[1-9][0-9]*$ ]] || fail "$w: ${lines[1]}"
		[ "${lines[2]}" = "eagain 0" ] || fail "$w: ${lines[2]}"
		# two waits: the one that got the first bytes, the one that
		# timed out with the rest held
		[ "${lines[4]}" = "waits 2" ] || fail "$w: ${lines[4]}"
		ok "$ELAPSED >= 0.9 && $ELAPSED < 3"
	done
}

@test "faults_eventloop: epoll_wait, epoll_pwait and epoll_pwait2 (C client): latency holds the first byte 0.4 s; under hang the timed wait ends at its timeout with no event" {
	need_fe
	start_server
	local call
	for call in wait pwait pwait2; do
		run shim HBSHIM_FAULTS='latency=400ms,dir=in' "$FE" "$PORT" 100000 "$call" 5
		echo "$call latency: $output"
		assert_status 0
		[ "${lines[0]}" = "ok 100000" ]
		[ "${lines[1]}" = "eagain 0" ]
		((${lines[2]#first } >= 395 && ${lines[2]#first } < 1500)) || fail "$call: ${lines[2]}"
		[ "${lines[3]}" = "empty 0" ]
		timed run shim HBSHIM_FAULTS='hang,bytes=500,dir=in' "$FE" "$PORT" 100000 "$call" 1.5
		echo "$call hang: $output ($ELAPSED s)"
		[[ ${lines[0]} =~ ^"timeout after "[1-9][0-9]*$ ]] || fail "$call: ${lines[0]}"
		[ "${lines[1]}" = "eagain 0" ]
		[ "${lines[3]}" = "empty 0" ] # no wait came back empty before its time
		ok "$ELAPSED >= 1.4 && $ELAPSED < 3.5"
	done
}

@test "faults_eventloop: every data action with an epoll client (slicer, reset, close, limit_data, errno): the same outcome as with blocking, poll and select readers" {
	start_server
	local w
	for w in epoll-lt epoll-et selectors; do
		run shim HBSHIM_FAULTS='slicer=100' "$PY" "$FL" get 127.0.0.1 "$PORT" 5000 "$w" 5
		echo "$w slicer: $output"
		[ "${lines[1]}" = "ok 5000" ]
		"$PY" -c 'import sys; s=[int(x) for x in sys.argv[1].split()[1].split(",")]; assert max(s) <= 100 and len(s) >= 50, s' "${lines[0]}"
		run shim HBSHIM_FAULTS='reset,bytes=500,dir=in' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 5
		echo "$w reset: $output"
		[[ ${lines[1]} =~ ^"err ECONNRESET after "[1-9][0-9]*$ ]] || fail "$w: ${lines[1]}"
		run shim HBSHIM_FAULTS='close,bytes=1' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 5
		echo "$w close: $output"
		[[ ${lines[1]} =~ ^"eof after "[1-9][0-9]*$ ]] || fail "$w: ${lines[1]}"
		run shim HBSHIM_FAULTS='limit_data=1000' "$PY" "$FL" get 127.0.0.1 "$PORT" 5000 "$w" 5
		echo "$w limit_data: $output"
		[ "${lines[1]}" = "eof after 1000" ]
		run shim HBSHIM_FAULTS='errno=ECONNABORTED,call=read,nth=2' "$PY" "$FL" get 127.0.0.1 "$PORT" 100000 "$w" 5
		echo "$w errno: $output"
		[[ ${lines[0]} =~ ^sizes\ ([0-9]+)$ ]] || fail "$w: $output"
		[ "${lines[1]}" = "err ECONNABORTED after ${BASH_REMATCH[1]}" ]
	done
}

@test "faults_eventloop: refuse with a non-blocking connect (epoll, poll, select): EINPROGRESS, then writable with SO_ERROR ECONNREFUSED, exactly as the kernel against a closed port" {
	start_server
	local closed w shimmed kernel
	closed=$(free_port) # nothing listens there
	for w in epoll-lt epoll-et poll select; do
		kernel=$(plain "$PY" "$FL" connect 127.0.0.1 "$closed" "$w" 2 | sed 's/ [0-9.]*$//')
		shimmed=$(shim HBSHIM_EVENTS="$T/ev.$w" HBSHIM_FAULTS='refuse' "$PY" "$FL" connect 127.0.0.1 "$PORT" "$w" 2 |
			sed 's/ [0-9.]*$//')
		echo "$w kernel: $kernel"
		echo "$w shim:   $shimmed"
		[ "$shimmed" = "$kernel" ]
		[ "$(sed -n 1p <<<"$shimmed")" = "connect EINPROGRESS" ]
		[ "$(sed -n 3p <<<"$shimmed")" = "so_error ECONNREFUSED" ]
		grep -q '"event":"fault".*"action":"refuse"' "$T/ev.$w"
		# the connect event names the address the program asked for
		grep -q "\"event\":\"connect\".*\"peer\":\"127.0.0.1:$PORT\"" "$T/ev.$w"
	done
	# A real non-blocking client: asyncio's event loop (epoll) sees the refusal.
	cat >"$T/aio.py" <<'EOF'
import asyncio, sys
async def main():
    try:
        await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
        print("connected")
    except ConnectionRefusedError as e:
        print("refused", e.errno)
asyncio.run(main())
EOF
	run shim HBSHIM_FAULTS='refuse' "$PY" "$T/aio.py" "$PORT"
	[ "$output" = "refused 111" ]
	# curl connects non-blocking too: "Couldn't connect to server".
	need_cmd curl
	run shim HBSHIM_FAULTS='refuse' curl -sS -o /dev/null "http://127.0.0.1:$PORT/"
	echo "$output"
	[ "$status" -eq 7 ]
	[[ $output == *"Couldn't connect to server"* ]]
}

@test "faults_eventloop: delay=500ms with a non-blocking connect (epoll level/edge/one-shot, selectors, poll, select): connect returns EINPROGRESS at once, writable 0.5 s later, SO_ERROR 0; asyncio's loop keeps running meanwhile" {
	start_server
	local w
	for w in epoll-lt epoll-et epoll-oneshot selectors poll select; do
		run shim HBSHIM_FAULTS='delay=500ms' "$PY" "$FL" connect 127.0.0.1 "$PORT" "$w" 3
		echo "$w: $output"
		[[ ${lines[0]} =~ ^"connect EINPROGRESS "([0-9.]+)$ ]] || fail "$w: ${lines[0]}"
		ok "${BASH_REMATCH[1]} < 0.1"
		[[ ${lines[1]} =~ ^"ready OUT "([0-9.]+)$ ]] || fail "$w: ${lines[1]}"
		ok "${BASH_REMATCH[1]} >= 0.49 && ${BASH_REMATCH[1]} < 1.5"
		[ "${lines[2]}" = "so_error OK" ]
	done
	# The program's own shorter wait ends first, with nothing reported.
	run shim HBSHIM_FAULTS='delay=1s' "$PY" "$FL" connect 127.0.0.1 "$PORT" epoll-lt 0.3
	echo "short wait: $output"
	[[ ${lines[1]} =~ ^"timeout "0\.[3-9] ]]
	[ "${lines[2]}" = "so_error OK" ]
	cat >"$T/aio.py" <<'EOF'
import asyncio, sys, time
async def ticker(n):
    while True:
        await asyncio.sleep(0.05)
        n[0] += 1
async def main():
    n = [0]
    t = asyncio.ensure_future(ticker(n))
    t0 = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    print("connected %.2f ticks %d" % (time.monotonic() - t0, n[0]))
    w.write(b"10\n")
    print("read", len(await r.readexactly(10)))
asyncio.run(main())
EOF
	run shim HBSHIM_FAULTS='delay=600ms' "$PY" "$T/aio.py" "$PORT"
	echo "asyncio: $output"
	[[ ${lines[0]} =~ ^"connected "([0-9.]+)" ticks "([0-9]+)$ ]]
	ok "${BASH_REMATCH[1]} >= 0.59"
	((BASH_REMATCH[2] >= 5)) # the loop ran while the connect was delayed
	[ "${lines[1]}" = "read 10" ]
}

@test "faults_eventloop: timeout with a non-blocking connect: nothing until the kernel gives up (TCP_SYNCNT=1: about 3 s), then ETIMEDOUT, as toward a listener that drops SYNs; a shorter wait of the program (epoll, selectors, select) ends first" {
	start_server
	local w kernel shimmed
	# A listener whose accept queue is full drops SYNs: the kernel's own
	# unanswered connect, to compare with.
	cat >"$T/full.py" <<'EOF'
import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
f = socket.create_connection(l.getsockname())
print(l.getsockname()[1], flush=True)
time.sleep(60)
EOF
	bg full plain "$PY" "$T/full.py"
	wait_line "$T/full.out" '^[0-9]+$' 5
	for w in epoll-lt poll; do
		kernel=$(plain "$PY" "$FL" connect 127.0.0.1 "$(cat "$T/full.out")" "$w" 6 1)
		shimmed=$(shim HBSHIM_FAULTS='timeout' "$PY" "$FL" connect 127.0.0.1 "$PORT" "$w" 6 1)
		echo "$w kernel: $kernel"
		echo "$w shim:   $shimmed"
		[ "$(sed 's/ [0-9.]*$//' <<<"$shimmed")" = "$(sed 's/ [0-9.]*$//' <<<"$kernel")" ]
		[ "$(sed -n 3p <<<"$shimmed")" = "so_error ETIMEDOUT" ]
		[[ $(sed -n 2p <<<"$shimmed") =~ ^"ready ERR,HUP,OUT "([0-9.]+)$ ]]
		ok "${BASH_REMATCH[1]} >= 2.5 && ${BASH_REMATCH[1]} < 4.5"
	done
	# The program's own shorter wait decides first: nothing reported, the
	# connect still pending (SO_ERROR 0), with every kind of wait.
	for w in epoll-et epoll-oneshot selectors select; do
		run shim HBSHIM_FAULTS='timeout' "$PY" "$FL" connect 127.0.0.1 "$PORT" "$w" 0.5
		echo "$w: $output"
		[[ ${lines[0]} == "connect EINPROGRESS "* ]]
		[[ ${lines[1]} =~ ^"timeout "0\.[5-9] ]] || fail "$w: ${lines[1]}"
		[ "${lines[2]}" = "so_error OK" ]
	done
}

@test "faults_eventloop: psql under reset,after=500ms while the server runs pg_sleep(2): psql reports the lost connection (exit 2) at 0.5 s, the server sees the reset" {
	local bin pgport u=()
	bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$bin" ] && [ -x "$bin/initdb" ] && [ -x "$bin/postgres" ] ||
		skip "PostgreSQL server not installed (Debian package postgresql)"
	need_cmd psql
	PGD=$(mktemp -d /tmp/hbt-pg.XXXXXX)
	if [ "$(id -u)" -eq 0 ]; then
		# postgres refuses to run as root: the cluster belongs to nobody.
		command -v runuser >/dev/null || skip "root without runuser cannot run postgres"
		chown nobody "$PGD"
		u=(runuser -u nobody --)
		"${u[@]}" true 2>/dev/null || skip "runuser -u nobody does not work here"
	fi
	"${u[@]}" "$bin/initdb" -D "$PGD/data" -U hbtest --auth=trust --no-sync >"$T/initdb.out" 2>&1 ||
		fail "initdb: $(cat "$T/initdb.out")"
	pgport=$(free_port)
	bg pg plain "${u[@]}" "$bin/postgres" -D "$PGD/data" -k "$PGD" -h 127.0.0.1 -p "$pgport" -c fsync=off
	wait_listen "$pgport"
	for _ in $(seq 50); do
		plain psql -h 127.0.0.1 -p "$pgport" -U hbtest -d postgres -Atc 'select 1' >/dev/null 2>&1 && break
		sleep 0.1
	done
	run plain psql -h 127.0.0.1 -p "$pgport" -U hbtest -d postgres -Atc 'select 41 + 1'
	[ "$output" = 42 ] # the cluster answers without faults
	timed run stderr_to "$T/psql.err" shim HBSHIM_EVENTS="$T/ev" HBSHIM_FAULTS='reset,after=500ms' \
		psql -h 127.0.0.1 -p "$pgport" -U hbtest -d postgres -Atc 'select pg_sleep(2)'
	echo "status $status in $ELAPSED s; stderr:"
	cat "$T/psql.err"
	[ "$status" -eq 2 ] # psql: the connection to the server went bad
	# libpq's words for ECONNRESET on its socket
	grep -q '^server closed the connection unexpectedly' "$T/psql.err"
	grep -q '^connection to server was lost' "$T/psql.err"
	ok "$ELAPSED >= 0.45 && $ELAPSED < 3"
	grep -q '"event":"fault".*"action":"reset"' "$T/ev"
	# The backend, asleep, meets the reset when it next reads or sends.
	wait_line "$T/pg.err" 'could not (send|receive) data (to|from) client: Connection reset by peer' 5
}
