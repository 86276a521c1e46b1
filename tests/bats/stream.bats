#!/usr/bin/env bats
# Keepalive mode adds not one byte to the stream: unshimmed peers receive
# exactly what the shimmed side sent, and the other way round.

load helpers

make_input() {
	head -c "${2:-5242880}" /dev/urandom >"$1"
}

# plain_sink: $T/in (5 MB of random bytes) and an unshimmed socat server
# that writes what it receives to $T/out; its port in $PORT, pid in $SINK.
plain_sink() {
	need_cmd socat
	make_input "$T/in"
	PORT=$(free_port)
	bg srv plain socat -u "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr" "CREATE:$T/out"
	SINK=$BG_PID
	wait_listen "$PORT"
}

# sink_got_input: the sink exited 0 with exactly $T/in in $T/out.
sink_got_input() {
	bg_wait "$SINK" 10
	[ "$BG_STATUS" -eq 0 ] || fail "socat server status $BG_STATUS: $(cat "$T/srv.err")"
	same_file "$T/in" "$T/out"
}

@test "bytes: shimmed socat client -> unshimmed socat server, 5 MB exact" {
	plain_sink
	run shim HBSHIM_INTERVAL=1s socat -u "OPEN:$T/in" "TCP:127.0.0.1:$PORT"
	assert_status 0
	sink_got_input
}

@test "bytes: shimmed python3 client -> unshimmed socat server, 5 MB exact" {
	plain_sink
	run shim HBSHIM_INTERVAL=1s "$PY" "$APP" send-file 127.0.0.1 "$PORT" "$T/in"
	assert_status 0
	[ "$output" = "SENT 5242880" ] || fail "client: $output"
	sink_got_input
}

@test "bytes: shimmed socat server -> unshimmed socat client, 5 MB exact" {
	need_cmd socat
	local port
	make_input "$T/in"
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1s socat -u "OPEN:$T/in" "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr"
	local srv=$BG_PID
	wait_listen "$port"
	run plain socat -u "TCP:127.0.0.1:$port" "CREATE:$T/out"
	assert_status 0
	bg_wait "$srv" 10
	[ "$BG_STATUS" -eq 0 ] || fail "shimmed socat server status $BG_STATUS: $(cat "$T/srv.err")"
	same_file "$T/in" "$T/out"
}

@test "bytes: shimmed python3 echo server and client, 2 MB round trip" {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1s "$PY" "$APP" echo-server 127.0.0.1 "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1s "$PY" "$APP" echo-client 127.0.0.1 "$port" 2097152
	assert_status 0
	[ "$output" = "ECHO OK 2097152" ] || fail "client: $output"
	bg_wait "$srv" 5
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	grep -qx "ECHOED 2097152" "$T/srv.out" || fail "server: $(cat "$T/srv.out")"
}

@test "curl under the shim fetches a byte-identical file from a shimmed http.server" {
	need_cmd curl
	# Debian's curl deadlocks at startup (futex wait before main) whenever
	# libasan is preloaded, with or without hbshim.
	need_nosan "curl hangs with a sanitizer runtime preloaded, even without hbshim"
	local port
	mkdir "$T/www"
	make_input "$T/www/blob" 3000000
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1s "$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$port"
	wait_listen "$port"
	run shim HBSHIM_INTERVAL=1s curl -sS --fail --noproxy '*' -o "$T/got" "http://127.0.0.1:$port/blob"
	assert_status 0
	same_file "$T/www/blob" "$T/got"
	# A second request on a fresh connection, output to stdout.
	run shim HBSHIM_INTERVAL=1s sh -c "curl -sS --fail --noproxy '*' http://127.0.0.1:$port/blob | sha256sum"
	assert_status 0
	[ "$output" = "$(sha256sum <"$T/www/blob")" ] || fail "stdout copy differs"
}

@test "server-first protocol: a shimmed server's banner reaches a plain client at once" {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1s "$PY" "$APP" banner-server 127.0.0.1 "$port" "220 hello from a legacy server"
	wait_line "$T/srv.out" LISTENING
	run plain "$PY" "$APP" banner-client 127.0.0.1 "$port"
	assert_status 0
	[[ $output == "BANNER b'220 hello from a legacy server\r\n' "* ]] || fail "banner: $output"
	in_range "${output##* }" 0 0.5 || fail "banner took ${output##* } s"
}

