#!/usr/bin/env bats
# Event-loop patterns in framed mode: readiness must match the application's
# view (the shim's SO_RCVLOWAT: a heartbeat alone never makes the fd
# readable), and epoll data must come back unchanged.

load helpers

PR="$HB_ROOT/build/tests/pollread"
FRAMED=(HBSHIM_FRAME='127.0.0.1:*' HBSHIM_INTERVAL=10ms HBSHIM_TIMEOUT=20s)

need_pollread() {
	[ -x "$PR" ] || skip "build/tests/pollread not built (make integration builds it)"
}

@test "eventloop: poll on a blocking fd, then a blocking read: no stall behind 10 ms heartbeats" {
	need_pollread
	run shim "${FRAMED[@]}" "$PR" poll 20 100
	echo "$output"
	assert_status 0
	[[ $output == *"poll: 20 messages, 0 stalls"* ]]
}

@test "eventloop: select on a blocking fd, then a blocking read: no stall behind 10 ms heartbeats" {
	need_pollread
	run shim "${FRAMED[@]}" "$PR" select 20 100
	echo "$output"
	assert_status 0
	[[ $output == *"select: 20 messages, 0 stalls"* ]]
}

# epoll is protected by SO_RCVLOWAT alone (its epoll_data does not name the
# fd, so the shim cannot filter its reports): a heartbeat or two never wakes
# it, but when the background thread is starved for more than two peer
# intervals (here 20 ms; on a loaded CI machine that happens), three
# undrained heartbeats reach the mark. docs/DESIGN.md states this limit; the
# test allows 2 such reports in 20 and fails on any other difference.
@test "eventloop: one fd in an LT set, an ET set and a nested set: data unchanged, no spurious wakeup" {
	need_pollread
	run shim "${FRAMED[@]}" "$PR" epoll2 20 100
	echo "$output"
	[[ $output =~ epoll2:\ 20\ messages,\ ([0-9]+)\ stalls,\ 0\ spurious ]] || fail "$output"
	((BASH_REMATCH[1] <= 2)) || fail "${BASH_REMATCH[1]} readiness reports without application data"
}

@test "eventloop: heartbeats flowed between the messages" {
	need_pollread
	run shim "${FRAMED[@]}" HBSHIM_STATS="$T/st.%p.prom" "$PR" poll 10 100
	assert_status 0
	total=$(cat "$T"/st.*.prom | awk '/^hbshim_heartbeats_received_total/ { s += $2 } END { print s + 0 }')
	echo "heartbeats received: $total"
	[ "$total" -gt 20 ]
}
