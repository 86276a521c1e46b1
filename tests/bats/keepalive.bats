#!/usr/bin/env bats
# Keepalive mode: which sockets get kernel keepalive options, and that the
# application's own choices win.

load helpers

# Interval 1 s, timeout 3 s: the keepalive timing must bound detection by
# interval + timeout = 4 s, and TCP_USER_TIMEOUT must not exceed the timeout.
check_ka_opts() {
	local l=$1 ka idle intvl cnt ut
	ka=$(kv "$l" keepalive) && idle=$(kv "$l" idle) && intvl=$(kv "$l" intvl) &&
		cnt=$(kv "$l" cnt) && ut=$(kv "$l" user_timeout) || fail "unparsable: $l"
	[ "$ka" -eq 1 ] || fail "SO_KEEPALIVE=$ka, expected 1: $l"
	# Kernel defaults are 7200 / 75 / 9 / 0: each must have been set.
	[ "$idle" -ge 1 ] && [ "$idle" -le 4 ] || fail "TCP_KEEPIDLE=$idle not in 1..4: $l"
	[ "$intvl" -ge 1 ] && [ "$intvl" -le 4 ] || fail "TCP_KEEPINTVL=$intvl not in 1..4: $l"
	[ "$cnt" -ge 1 ] && [ "$cnt" -le 8 ] || fail "TCP_KEEPCNT=$cnt not in 1..8: $l"
	[ "$ut" -gt 0 ] && [ "$ut" -le 3000 ] || fail "TCP_USER_TIMEOUT=$ut not in 1..3000: $l"
	[ "$(kv "$l" mode)" = 1 ] || fail "hbshim_fd_mode != KEEPALIVE: $l"
}

@test "keepalive: a shimmed client's connected socket gets the kernel options" {
	local port
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" client-opts 127.0.0.1 "$port"
	assert_status 0
	check_ka_opts "$(line_with OPTS)"
}

@test "keepalive: a shimmed server's accepted socket gets the kernel options" {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" serve-opts 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run plain "$PY" "$APP" client-recv 127.0.0.1 "$port"
	assert_status 0
	[ "$(line_with EOF | cut -d' ' -f1)" = EOF ] || fail "client: $output"
	bg_wait "$BG_PID" 5
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	output=$(cat "$T/srv.out")
	check_ka_opts "$(line_with OPTS)"
}

@test "keepalive: IPv6 connections get the kernel options too" {
	ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128' || skip "no ::1 on lo"
	local port
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve ::1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" client-opts ::1 "$port"
	assert_status 0
	check_ka_opts "$(line_with OPTS)"
}

@test "keepalive: AF_UNIX, UDP and listening sockets are left alone" {
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" others 2
	assert_status 0
	local k l
	for k in pair unix_client unix_accepted udp tcp_listener; do
		l=$(line_with "$k ") || fail "no line for $k: $output"
		[ "$(kv "$l" keepalive)" = 0 ] || fail "$k got SO_KEEPALIVE: $l"
		# A listener may be tracked (to configure what it accepts).
		[ "$k" = tcp_listener ] || [ "$(kv "$l" mode)" = 0 ] || fail "$k is tracked: $l"
	done
	# The kernel defaults are untouched on the TCP listener.
	l=$(line_with "tcp_listener ")
	[ "$(kv "$l" idle)" = 7200 ] || fail "listener TCP_KEEPIDLE changed: $l"
	[ "$(kv "$l" user_timeout)" = 0 ] || fail "listener TCP_USER_TIMEOUT changed: $l"
}

@test "app choice wins: SO_KEEPALIVE=0 and TCP_KEEPIDLE=77 before connect stay" {
	local port l
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" client-opts 127.0.0.1 "$port" ka0 2
	assert_status 0
	l=$(line_with OPTS)
	[ "$(kv "$l" keepalive)" = 0 ] || fail "SO_KEEPALIVE overridden: $l"
	[ "$(kv "$l" idle)" = 77 ] || fail "TCP_KEEPIDLE overridden: $l"
}

@test "app choice wins: SO_KEEPALIVE=0 set right after connect stays 0" {
	local port l
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" client-opts 127.0.0.1 "$port" ka0-after 2
	assert_status 0
	l=$(line_with OPTS)
	[ "$(kv "$l" keepalive)" = 0 ] || fail "SO_KEEPALIVE switched on after the app chose 0: $l"
}

@test "app choice wins: the app's TCP_KEEPIDLE=77 is kept" {
	local port l
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s "$PY" "$APP" client-opts 127.0.0.1 "$port" idle77 2
	assert_status 0
	l=$(line_with OPTS)
	[ "$(kv "$l" idle)" = 77 ] || fail "TCP_KEEPIDLE overridden: $l"
}

@test "HBSHIM_DISABLE=1: no options set, library inactive" {
	local port l
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_DISABLE=1 HBSHIM_INTERVAL=1s "$PY" "$APP" client-opts 127.0.0.1 "$port" none 2
	assert_status 0
	l=$(line_with OPTS)
	[ "$(kv "$l" keepalive)" = 0 ] || fail "SO_KEEPALIVE set while disabled: $l"
	[ "$(kv "$l" idle)" = 7200 ] || fail "TCP_KEEPIDLE set while disabled: $l"
	[ "$(kv "$l" user_timeout)" = 0 ] || fail "TCP_USER_TIMEOUT set while disabled: $l"
	[ "$(kv "$l" mode)" = 0 ] || fail "fd tracked while disabled: $l"
	[ "$(kv "$l" active)" = 0 ] || fail "hbshim_active() != 0 while disabled: $l"
}
