#!/usr/bin/env bats
# A framed connection held by two processes (fork): the close of one of
# them is the kernel's plain close (only its reference goes) whenever the
# other may still hold the socket, and "cannot tell" counts as "may".

load helpers

# A shimmed one-connection echo server on PORT (framed when its client
# frames), started with bg as "srv"; returns once it listens.
echo_server() { # PORT
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=100ms "$PY" -c 'import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
c, _ = l.accept()
while True:
    d = c.recv(100)
    if not d: break
    c.sendall(d)' "$1"
	wait_line "$T/srv.out" LISTENING
}

# The client: FILLERS children that never held the socket (started
# first, so they come first in our children list), then a framed
# connection, a forked child holding it, the parent's last use and close;
# only then does the child use the connection.
cat_client() {
	cat >"$T/client.py" <<'PY'
import os, signal, socket, sys
port, nfill = int(sys.argv[1]), int(sys.argv[2])
fillers = [os.posix_spawn("/bin/sleep", ["sleep", "60"], {}) for _ in range(nfill)]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"one"); assert s.recv(10) == b"one"
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w); os.read(r, 1)
    try:
        s.sendall(b"child"); print("child got", s.recv(10), flush=True)
    except OSError as e:
        print("child errno", e.errno, flush=True)
    os._exit(0)
s.sendall(b"parent"); print("parent got", s.recv(10), flush=True)
s.close()
os.write(w, b"g"); os.waitpid(pid, 0)
for f in fillers:
    os.kill(f, signal.SIGKILL); os.waitpid(f, 0)
PY
}

@test "sharing: no /proc (cannot tell who holds the socket): the parent's close of a connection its child still uses leaves the stream alone" {
	need_root "a mount namespace with /proc hidden"
	need_cmd unshare mount
	unshare -m sh -c 'mount -t tmpfs none /proc' 2>/dev/null ||
		skip "cannot mount over /proc in a private mount namespace here"
	local port
	port=$(free_port)
	echo_server "$port"
	local srv=$BG_PID
	cat_client
	run timeout 30 unshare -m sh -c 'mount -t tmpfs none /proc && exec "$@"' sh \
		env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" \
		"$PY" "$T/client.py" "$port" 0
	echo "$output"
	assert_status 0
	[ "$(line_with parent)" = "parent got b'parent'" ] || fail "parent: $output"
	[ "$(line_with child)" = "child got b'child'" ] || fail "child: $output"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "not framed: $(cat "$T/cli.ev")"
	bg_wait "$srv" 10
}

@test "sharing: the child holding the socket comes after 200 others in the children list: the parent's close leaves the stream alone" {
	# The list was read into 512 bytes: a child past the first ~100 pids
	# was not seen, and the parent's close shut the socket down under it.
	local port
	port=$(free_port)
	echo_server "$port"
	local srv=$BG_PID
	cat_client
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" \
		"$PY" "$T/client.py" "$port" 200
	echo "$output"
	assert_status 0
	[ "$(line_with parent)" = "parent got b'parent'" ] || fail "parent: $output"
	[ "$(line_with child)" = "child got b'child'" ] || fail "child: $output"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "not framed: $(cat "$T/cli.ev")"
	bg_wait "$srv" 10
}
