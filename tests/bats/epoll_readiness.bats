#!/usr/bin/env bats
# epoll readiness on framed connections: epoll_wait, epoll_pwait and
# epoll_pwait2 withdraw a report with no application byte behind it (only
# heartbeats queued because the shim's thread was starved), as poll and
# select do. build/helpers/epollclient runs both ends; it peeks (non-blocking)
# after every report: "empty" counts reports with nothing for the
# application, "eagain" non-blocking reads that failed right after EPOLLIN,
# "recv over 50 ms" blocking reads that waited.

load helpers

EC="$HB_HELPERS/epollclient"
FRAMED=(HBSHIM_FRAME='127.0.0.1:*' HBSHIM_INTERVAL=10ms HBSHIM_TIMEOUT=20s)

# Two busy loops (one per CPU of the CI machine) for the rest of the test;
# the program under test runs at nice 10 behind them, so the shim's thread
# misses its drains now and then (the starvation the filter is for).
hogs() {
	bg hog1 sh -c 'while :; do :; done'
	bg hog2 sh -c 'while :; do :; done'
}

# counts LINE: sets EMPTY EAGAIN SLOW EINTR from the helper's summary line.
counts() {
	[[ $1 =~ ([0-9]+)\ empty,\ ([0-9]+)\ eagain,\ max\ recv\ [0-9]+\ ms,\ ([0-9]+)\ recv\ over\ 50\ ms,\ ([0-9]+)\ eintr ]] ||
		fail "no summary in: $1"
	EMPTY=${BASH_REMATCH[1]} EAGAIN=${BASH_REMATCH[2]} SLOW=${BASH_REMATCH[3]} EINTR=${BASH_REMATCH[4]}
}

# framed_ec WANT CMD...: run CMD (the helper; NAME=VALUE words and nice may
# lead it) under the shim in framed mode, print its output, require exit
# status 0 and "WANT messages" in the output (WANT empty: no such check),
# and set the counts from its summary line.
framed_ec() {
	local want=$1
	shift
	run shim "${FRAMED[@]}" "$@"
	echo "$output"
	assert_status 0
	[ -z "$want" ] || [[ $output == *"$want messages"* ]] || fail "messages lost: no \"$want messages\" in the output"
	counts "$output"
}

@test "epoll: blocking level-triggered client, 2 CPU hogs, 20 runs: every report has application bytes, no recv over 50 ms" {
	need_helper epollclient
	hogs
	framed_ec "lt: 60" nice -n 10 "$EC" client lt 20 3 60 0
	[ "$EMPTY" -eq 0 ] || fail "$EMPTY reports with only heartbeats behind them"
	[ "$SLOW" -eq 0 ] || fail "$SLOW recv calls waited over 50 ms"
}

@test "epoll: single-threaded server (blocking accepted sockets, one recv per report), 2 CPU hogs: no recv over 50 ms" {
	need_helper epollclient
	hogs
	framed_ec "server: 60" nice -n 10 "$EC" server 3 20 100 0
	[ "$EMPTY" -eq 0 ] || fail "$EMPTY reports with only heartbeats behind them"
	[ "$SLOW" -eq 0 ] || fail "$SLOW recv calls waited over 50 ms (the other clients waited meanwhile)"
}

@test "epoll: non-blocking loop at 10 ms heartbeats for 10 s, 2 CPU hogs: no EAGAIN right after EPOLLIN" {
	need_helper epollclient
	hogs
	framed_ec "nb: 50" nice -n 10 "$EC" client nb 1 50 200 0
	[ "$EAGAIN" -eq 0 ] || fail "$EAGAIN reads failed with EAGAIN right after EPOLLIN"
}

# Deterministic starvation: the peer stops the client (SIGSTOP) for 60 ms in
# the middle of each 120 ms gap; six heartbeats arrive meanwhile and nobody
# drains them, so the kernel reports the socket readable at once on SIGCONT.
# The stop also makes a waiting epoll_wait fail with EINTR, which must reach
# the application.
@test "epoll: client stopped in every gap: level, edge, oneshot, exclusive, in+out and non-blocking loops see no report without data; EINTR passes" {
	need_helper epollclient
	local m
	for m in lt et oneshot excl inout nb; do
		framed_ec "$m: 10" "$EC" client "$m" 2 5 120 60
		[ "$EMPTY" -eq 0 ] || fail "$m: $EMPTY reports with only heartbeats behind them"
		[ "$EAGAIN" -eq 0 ] || fail "$m: $EAGAIN EAGAIN right after EPOLLIN"
		# (inout sleeps between its looks: the stop seldom finds it in epoll_wait)
		[ "$m" = inout ] || [ "$EINTR" -gt 0 ] || fail "$m: epoll_wait never failed with EINTR after SIGSTOP/SIGCONT"
	done
}

@test "epoll: epoll_pwait and epoll_pwait2 are filtered too" {
	need_helper epollclient
	local c
	for c in pwait pwait2; do
		framed_ec "lt: 10" EPOLL_CALL=$c "$EC" client lt 2 5 120 60
		[ "$EMPTY" -eq 0 ] || fail "$c: $EMPTY reports with only heartbeats behind them"
	done
}

@test "epoll: server stopped in a client's gaps: no report without data on its blocking accepted sockets" {
	need_helper epollclient
	framed_ec "server: 24" "$EC" server 3 8 150 60
	[ "$EMPTY" -eq 0 ] || fail "$EMPTY reports with only heartbeats behind them"
	[ "$SLOW" -eq 0 ] || fail "$SLOW recv calls waited over 50 ms"
}

# The filter must never take another fd's report for the socket's: a pipe
# registered under the same epoll_data (0) in an edge-triggered set, before
# the socket (seen only in the kernel's fdinfo of the set) or after it (seen
# by epoll_ctl). A report withdrawn by mistake would lose the pipe's edge.
@test "epoll: a pipe sharing the socket's epoll_data is never filtered (registered before or after the socket)" {
	need_helper epollclient
	local m
	for m in pipe-first pipe-after; do
		run shim "${FRAMED[@]}" "$EC" client "$m" 2 5 120 60
		echo "$output"
		assert_status 0
		[[ $output == *"$m: 10 messages"* ]] || fail "$m: a pipe byte never woke the loop"
	done
}

# A wait whose reports are all withdrawn waits for what is left of its
# timeout (monotonic), and ends with no report at its deadline (the helper
# fails on a wait that ends early without a report).
@test "epoll: a stopped client's timed wait with only heartbeats queued ends at its deadline with no report (epoll_wait, epoll_pwait2)" {
	need_helper epollclient
	local c
	for c in wait pwait2; do
		framed_ec "" EPOLL_CALL=$c "$EC" client timeout 1 8 150 60
		[ "$EMPTY" -eq 0 ] || fail "$c: $EMPTY reports with only heartbeats behind them"
	done
}
