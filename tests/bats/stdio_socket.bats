#!/usr/bin/env bats
# stdio on a framed socket the program opened itself: a legacy client that
# wraps its connected socket with fdopen and talks with fprintf/fgets
# (tests/helpers/fdopen_client.c) against a shimmed echo server. glibc's
# stdio reads and writes with internal calls no preload sees; the shim's
# fdopen returns a stream whose reads, writes and close are its own. The
# echo server answers each chunk after 30 ms while heartbeats run every
# 10 ms both ways, so heartbeats arrive between and inside lines.

load helpers

setup() {
	hb_setup
	CLIENT="$HB_HELPERS/fdopen_client"
	need_helper fdopen_client
	SRV="$BATS_FILE_TMPDIR/stdio_srv.py"
	[ -f "$SRV" ] || write_server "$SRV"
}

# stdio_srv.py PORT N echo|sink: accept N connections one after the other;
# echo (each chunk after 30 ms) or only count; report how each one ended:
# "end eof BYTES TAIL" or "end error ERRNO BYTES TAIL" (TAIL: the last 22
# bytes, newlines shown as |).
write_server() {
	cat >"$1" <<'EOF'
import errno, socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
echo = sys.argv[3] == "echo"
for _ in range(int(sys.argv[2])):
    c, _ = l.accept(); n = 0; end = "eof"; tail = b""
    try:
        while True:
            d = c.recv(65536)
            if not d: break
            n += len(d); tail = (tail + d)[-22:]
            if echo:
                time.sleep(0.03); c.sendall(d)
    except OSError as e:
        end = "error " + errno.errorcode.get(e.errno, str(e.errno))
    print("end", end, n, tail.decode(errors="replace").replace("\n", "|"), flush=True); c.close()
EOF
}

# start_server N echo|sink: a shimmed server (HBSHIM_ACCEPT=auto detects the
# framed client); port in $PORT, pid in $SRV_PID.
start_server() {
	PORT=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=10ms HBSHIM_TIMEOUT=20s \
		HBSHIM_STATS="$T/srv.prom" "$PY" "$SRV" "$PORT" "$1" "$2"
	SRV_PID=$BG_PID
	wait_line "$T/srv.out" LISTENING
}

# run_client MODE: the framed client, its events and stats in $T/cli.*.
run_client() {
	run shim "HBSHIM_FRAME=127.0.0.1:$PORT" HBSHIM_INTERVAL=10ms HBSHIM_TIMEOUT=20s \
		HBSHIM_EVENTS="$T/cli.ev" HBSHIM_STATS="$T/cli.prom" "$CLIENT" "$PORT" "$1"
}

# The server's report for its connections, once it exited, in $output
# (bg_wait must run in the test's shell, not under run).
server_report() {
	bg_wait "$SRV_PID" 10
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	output=$(grep '^end ' "$T/srv.out")
}

heartbeats_received() {
	awk '$1 == "hbshim_heartbeats_received_total" { print $2 }' "$1"
}

# Both directions framed, and heartbeats flowed both ways.
assert_framed_with_heartbeats() {
	grep -q '"event":"framed"' "$T/cli.ev" || fail "the client was not framed: $(cat "$T/cli.ev")"
	local hc hs
	hc=$(heartbeats_received "$T/cli.prom")
	hs=$(heartbeats_received "$T/srv.prom")
	[ "${hc:-0}" -gt 0 ] && [ "${hs:-0}" -gt 0 ] ||
		fail "heartbeats received: client ${hc:-none}, server ${hs:-none}"
	echo "# heartbeats received: client $hc, server $hs" >&3
}

# echo_framed MODE SENT END: the framed client in MODE against a shimmed
# echo server: it sent SENT bytes and checked the echo (OK), the server
# reports END for the connection, and heartbeats flowed both ways.
echo_framed() {
	start_server 1 echo
	run_client "$1"
	assert_status 0
	[ "$(line_with sent)" = "sent $2" ] || fail "client: $output"
	[ "$(line_with OK)" = OK ] || fail "client: $output"
	server_report
	[ "$output" = "$3" ] || fail "server: $output $(cat "$T/srv.err")"
	assert_framed_with_heartbeats
}

@test "fdopen(sock, \"r+\") on a framed connection: fprintf/fgets both ways byte-exact (short lines, a line flushed in two parts, a 20000-byte line), fclose gives the peer a clean EOF" {
	# Every byte the client wrote, then an end of stream (no reset, no
	# EPROTO), although the server's heartbeats still arrived after fclose.
	echo_framed rw 20174 "end eof 20174 qrstuvwxyzabcdef|last|"
}

@test "fdopen: in = fdopen(s, \"r\"), out = fdopen(dup(s), \"w\"): both streams framed; fclose of both closes cleanly" {
	echo_framed two-dup 20174 "end eof 20174 qrstuvwxyzabcdef|last|"
}

@test "fdopen: two streams on one fd (\"r\" and \"w\"): both framed; the first fclose closes it, the second answers EBADF as without the shim" {
	echo_framed two-same 20174 "end eof 20174 qrstuvwxyzabcdef|last|"
}

@test "fdopen: fileno(f) is the socket; poll on it wakes for the echoed line, not for heartbeats" {
	echo_framed poll 140 "end eof 140  of the legacy client|"
}

@test "fdopen: output left in the stream at exit (no fflush, no fclose) reaches the peer framed, then EOF" {
	start_server 1 sink
	run_client exit
	assert_status 0
	[ "$output" = "sent 20074" ] || fail "client: $output"
	server_report
	[ "$output" = "end eof 20074 tail without a newline" ] || fail "server: $output $(cat "$T/srv.err")"
}

@test "fdopen on a keepalive-mode connection (no frame rule) stays glibc's own stream and works" {
	start_server 1 echo
	run shim HBSHIM_INTERVAL=10ms HBSHIM_EVENTS="$T/cli.ev" "$CLIENT" "$PORT" rw
	assert_status 0
	[ "$(line_with OK)" = OK ] || fail "client: $output"
	server_report
	[ "$output" = "end eof 20174 qrstuvwxyzabcdef|last|" ] || fail "server: $output $(cat "$T/srv.err")"
	! grep -q '"event":"framed"' "$T/cli.ev" || fail "framed without a rule: $(cat "$T/cli.ev")"
}

@test "fdopen on an accepted connection still detecting its client (HBSHIM_ACCEPT=auto): a C server echoing with fgets/fputs serves a framed fdopen client byte-exact" {
	PORT=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=10ms HBSHIM_TIMEOUT=20s \
		HBSHIM_EVENTS="$T/srv.ev" "$CLIENT" "$PORT" serve
	SRV_PID=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run_client rw
	assert_status 0
	[ "$(line_with sent)" = "sent 20174" ] || fail "client: $output"
	[ "$(line_with OK)" = OK ] || fail "client: $output"
	bg_wait "$SRV_PID" 10
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	grep -qx 'served 8 lines' "$T/srv.out" || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
	grep -q '"event":"framed"' "$T/srv.ev" || fail "the server was not framed: $(cat "$T/srv.ev")"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "the client was not framed: $(cat "$T/cli.ev")"
}
