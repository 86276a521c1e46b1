#!/usr/bin/env bats
# Living next to other preloaded libraries (malloc replacements, the
# AddressSanitizer runtime) and next to a seccomp sandbox the program puts
# itself in.

load helpers

JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4

serve_blob() {
	mkdir -p "$T/www"
	head -c 1000000 /dev/urandom >"$T/www/blob"
	PORT=$(free_port)
	bg srv plain "$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$PORT"
	wait_listen "$PORT"
}

# curl with LD_PRELOAD=$1 must fetch the blob byte for byte and exit 0.
fetch_with() {
	run timeout 20 env LD_PRELOAD="$1" HBSHIM_INTERVAL=1s HBSHIM_EVENTS="$T/ev" \
		curl -sS --fail --noproxy '*' -o "$T/got" "http://127.0.0.1:$PORT/blob"
	assert_status 0
	cmp -s "$T/www/blob" "$T/got" || fail "LD_PRELOAD=$1: output differs"
	# The shim really ran inside curl.
	grep -q '"connect"' "$T/ev" || fail "LD_PRELOAD=$1: no connect event, shim inactive?"
	rm -f "$T/got" "$T/ev"
}

@test "allocators: jemalloc before and after the shim, curl output identical" {
	need_nosan "a sanitizer runtime owns malloc"
	need_cmd curl
	[ -f "$JEMALLOC" ] || skip "needs libjemalloc2"
	serve_blob
	fetch_with "$JEMALLOC $HB_LIB"
	fetch_with "$HB_LIB $JEMALLOC"
}

@test "allocators: tcmalloc before and after the shim, curl output identical" {
	need_nosan "a sanitizer runtime owns malloc"
	need_cmd curl
	[ -f "$TCMALLOC" ] || skip "needs libgoogle-perftools4"
	serve_blob
	fetch_with "$TCMALLOC $HB_LIB"
	fetch_with "$HB_LIB $TCMALLOC"
}

@test "ASan runtime first in LD_PRELOAD: python3 client/server exchange works" {
	local asan
	asan=$(gcc -print-file-name=libasan.so 2>/dev/null) || true
	[ -n "$asan" ] && [ -f "$asan" ] || skip "needs gcc's libasan"
	case ${HB_SAN_PRELOAD:-} in "" | *libasan*) ;; *) skip "another sanitizer runtime is in use" ;; esac
	local port
	port=$(free_port)
	local -a env=(LD_PRELOAD="$asan $HB_LIB" ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0
		HBSHIM_INTERVAL=1s)
	bg srv timeout 20 env "${env[@]}" "$PY" "$APP" echo-server 127.0.0.1 "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run timeout 20 env "${env[@]}" "$PY" "$APP" echo-client 127.0.0.1 "$port" 1048576
	assert_status 0
	[ "$(line_with ECHO)" = "ECHO OK 1048576" ] || fail "client: $output"
	bg_wait "$srv" 5
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	! grep -q 'ERROR: AddressSanitizer' "$T/srv.err" || fail "ASan report: $(cat "$T/srv.err")"
}

@test "seccomp: a client that sandboxes itself after connecting (sshd style) is not killed; bytes exact" {
	need_helper sandboxed
	local port
	port=$(free_port)
	bg srv plain "$PY" -c 'import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(1); print("LISTENING", flush=True)
s, _ = ls.accept(); f = s.makefile("rb")
l = f.readline(); s.sendall(b"pong:" + l); s.close()' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	# The filter kills the process (SIGSYS, status 159) on sendto, sendmsg,
	# getsockopt, setsockopt or a new thread.
	run shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s HBSHIM_LOG=info "$HB_HELPERS/sandboxed" "$port"
	assert_status 0
	[ "$(line_with pong)" = "pong:ping" ] || fail "client printed: $output"
	bg_wait "$srv" 5
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
}

@test "inetd style: a handler whose stderr is the accepted socket: the shim's own log lines never reach the peer" {
	# xinetd, socat EXEC, git daemon and sshd -i hand the connection to a
	# handler as fds 0, 1 and 2. A config error (here a bad interval) is
	# logged; on fd 2 it would reach the client as if the handler wrote it.
	local port
	port=$(free_port)
	bg srv plain "$PY" -c 'import socket, subprocess, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
for i in range(2):
    c, _ = l.accept()
    env = {"LD_PRELOAD": sys.argv[2], "HBSHIM_INTERVAL": "bogus" if i == 0 else "1s", "HBSHIM_LOG": "debug"}
    subprocess.run([sys.executable, "-c", "import sys; sys.stdout.write(\"hello from the handler\\n\"); sys.stdout.flush(); sys.stderr.write(\"and its stderr\\n\")"],
                   stdin=c, stdout=c, stderr=c, env=env)
    c.close()' "$port" "$SHIM_PRELOAD"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	for i in 1 2; do
		plain "$PY" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
sys.stdout.buffer.write(d)' "$port" >"$T/got.$i" || fail "client $i status $?"
	done
	bg_wait "$srv" 10
	printf 'hello from the handler\nand its stderr\n' >"$T/want"
	cmp "$T/want" "$T/got.1" || fail "bad config: the client received: $(cat "$T/got.1")"
	cmp "$T/want" "$T/got.2" || fail "debug log: the client received: $(cat "$T/got.2")"
}

# Capabilities, the keep-caps flag and the securebits are per thread, and
# glibc changes uids in every thread at once, aborting the process when
# the threads' answers differ. A program that keeps CAP_SETUID in its own
# thread across setresuid to nobody (proftpd's mod_cap) was aborted at its
# next seteuid(0): the shim's background thread had no capability left.
@test "a program that keeps a capability in its own thread across setresuid (proftpd's mod_cap) runs on: seteuid(0) works, the connection too" {
	need_root "it changes uids and keeps capabilities"
	need_helper capkeep
	run shim HBSHIM_FRAME='*' "$HB_HELPERS/capkeep"
	assert_status 0
	[ "$output" = "EUID 0
OK" ] || fail "output: $output"
}
