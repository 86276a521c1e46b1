#!/usr/bin/env bats
# Connect and idle deadlines.

load helpers

@test "connect deadline: blocking connect to a blackhole fails ETIMEDOUT after 1 s" {
	netns_new
	local port=4001
	# Every SYN to the port vanishes: no listener, no RST, no ICMP.
	nft_drop "$NS" dport "$port"

	# Baseline in parallel: without the shim connect() is still pending at 3 s.
	bg base ip netns exec "$NS" timeout 3 "$PY" "$APP" connect 127.0.0.1 "$port"
	local base=$BG_PID

	run ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_CONNECT_TIMEOUT=1s \
		timeout 10 "$PY" "$APP" connect 127.0.0.1 "$port"
	assert_status 0
	set -- $output
	[ "$1 $2 $3" = "ERR 110 ETIMEDOUT" ] || fail "connect: $output (expected ERR 110 ETIMEDOUT)"
	in_range "$4" 0.8 2.5 || fail "connect failed after $4 s, expected 0.8..2.5 s"

	bg_wait "$base" 6
	[ "$BG_STATUS" -eq 124 ] || fail "baseline connect did not block (status $BG_STATUS): $(cat "$T/base.out")"
}

@test "connect deadline: a non-blocking connect is untouched (EINPROGRESS at once)" {
	netns_new
	local port=4001
	nft_drop "$NS" dport "$port"
	# A 3 s deadline: a wrongly applied one would show as a 3 s wait.
	run ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_CONNECT_TIMEOUT=3s \
		timeout 10 "$PY" "$APP" connect 127.0.0.1 "$port" nonblock
	assert_status 0
	set -- $output
	[ "$1 $2 $3" = "ERR 115 EINPROGRESS" ] || fail "connect: $output (expected ERR 115 EINPROGRESS)"
	in_range "$4" 0 1.0 || fail "non-blocking connect took $4 s"
}

@test "connect deadline: a non-blocking connect that never completes: poll wakes, SO_ERROR is ETIMEDOUT; curl gives up too" {
	netns_new
	local port=4001
	nft_drop "$NS" dport "$port"
	run ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_CONNECT_TIMEOUT=1s timeout 20 "$PY" -c 'import errno, select, socket, sys, time
s = socket.socket(); s.setblocking(False)
t0 = time.time()
r = s.connect_ex(("127.0.0.1", int(sys.argv[1])))
assert r == errno.EINPROGRESS, r
p = select.poll(); p.register(s.fileno(), select.POLLOUT)
ev = p.poll(10000)
e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print("ERR", e, errno.errorcode.get(e, "?"), "%.2f" % (time.time() - t0), "events", ev)' "$port"
	assert_status 0
	set -- $output
	[ "$1 $2 $3" = "ERR 110 ETIMEDOUT" ] || fail "non-blocking connect: $output (expected ERR 110 ETIMEDOUT)"
	in_range "$4" 0.8 2.5 || fail "gave up after $4 s, expected 0.8..2.5 s"

	need_cmd curl
	local t0=$SECONDS
	run ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_CONNECT_TIMEOUT=1s \
		timeout 20 curl -sS --connect-timeout 15 "http://127.0.0.1:$port/"
	# 7 (couldn't connect) or 28 (timed out), depending on curl's version.
	[ "$status" -eq 7 ] || [ "$status" -eq 28 ] || fail "curl status $status: $output"
	((SECONDS - t0 <= 5)) || fail "curl gave up after $((SECONDS - t0)) s, expected about 1 s"
}

@test "connect deadline: a reachable server still connects normally" {
	local port
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_CONNECT_TIMEOUT=1s "$PY" "$APP" connect 127.0.0.1 "$port"
	assert_status 0
	[ "${output%% *}" = CONNECTED ] || fail "connect: $output"
}

@test "idle deadline: no data either way for 2 s -> recv and send fail ETIMEDOUT, no SIGPIPE" {
	local port l
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_IDLE_TIMEOUT=2s HBSHIM_EVENTS="$T/events" "$PY" "$APP" client-idle 127.0.0.1 "$port"
	# 141 = killed by SIGPIPE (the app restored SIGPIPE's default action).
	[ "$status" -ne 141 ] || fail "the process was killed by SIGPIPE: $output"
	assert_status 0
	l=$(line_with RECV) || fail "no recv result: $output"
	set -- $l
	[ "$2 $3 $4" = "ERR 110 ETIMEDOUT" ] || fail "recv: $l (expected ERR 110 ETIMEDOUT)"
	in_range "$5" 1.8 3.5 || fail "recv failed after $5 s, expected 1.8..3.5 s"
	l=$(line_with SEND) || fail "no send result: $output"
	[ "$l" = "SEND ERR 110 ETIMEDOUT" ] || fail "send after the deadline: $l"

	run "$PY" -c 'import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hit = [e for e in ev if e["event"] in ("dead", "deadline") and "idle" in str(e.get("reason", ""))]
assert hit, "no dead/deadline event with reason idle in %r" % ev
print(hit[0]["event"], hit[0]["reason"])' "$T/events"
	assert_status 0
}

@test "idle deadline: a connection with traffic every 0.5 s survives 3 s" {
	local port
	port=$(free_port)
	bg srv plain "$PY" "$APP" echo-server 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_IDLE_TIMEOUT=2s "$PY" "$APP" client-chatty 127.0.0.1 "$port" 3 0.5
	assert_status 0
	[ "$output" = "CHATTY OK" ] || fail "client: $output"
}
