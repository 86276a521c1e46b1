#!/usr/bin/env bats
# handover.bats - a framed connection handed to another process while its
# hello exchange is still going on (fork, vfork + exec, posix_spawn,
# SCM_RIGHTS right after connect).
#
# The client's hello leaves at connect; the server's hello comes back once
# the server accepted. Until then every copy of the connection would decide
# the server's direction from whatever it reads first: the process that
# reads first takes the hello, and a copy that reads later took the frames
# behind it for a raw stream (the frame headers reached the application).
# The handing process now takes the server's hello first (at most a second),
# so every copy starts decided. The server here accepts 0.3 s late.

load helpers

# A shimmed server that accepts DELAY seconds late, greets with "BANNER\n"
# when GREET is 1, then echoes. Port on the first line of server.out.
start_late_server() {
	cat >"$T/server.py" <<-'EOF2'
		import socket, sys, time
		delay, greet = float(sys.argv[1]), sys.argv[2] == "1"
		l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(5)
		print(l.getsockname()[1], flush=True)
		time.sleep(delay)
		c, _ = l.accept()
		if greet:
		    c.sendall(b"BANNER\n")
		while True:
		    d = c.recv(4096)
		    if not d:
		        break
		    c.sendall(d)
	EOF2
	bg server shim HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$PY" "$T/server.py" "$@"
	wait_line "$T/server.out" '^[0-9]+$' 10
	PORT=$(head -1 "$T/server.out")
}

# The client program's common part: connect, then HOW hands the connection
# over at once and the copy that got it reads the banner line; then this
# process sends a line with bytes that look like frame headers and must
# read exactly it back.
client_py() {
	cat >"$T/client.py" <<-'EOF2'
		import os, signal, socket, subprocess, sys, time
		port, how = int(sys.argv[1]), sys.argv[2]
		signal.alarm(10)  # the socket stays blocking: head reads it too
		s = socket.create_connection(("127.0.0.1", port))
		def line(sock):
		    b = b""
		    while not b.endswith(b"\n"):
		        d = sock.recv(1)
		        if not d:
		            break
		        b += d
		    return b
		if how == "fork":
		    pid = os.fork()
		    if pid == 0:
		        print("child:", line(s), flush=True)
		        os._exit(0)
		    os.waitpid(pid, 0)
		elif how == "subprocess":
		    out = subprocess.run(["head", "-n1"], stdin=s.fileno(), capture_output=True).stdout
		    print("child:", out, flush=True)
		elif how == "posix_spawn":
		    r, w = os.pipe()
		    pid = os.posix_spawn("/usr/bin/head", ["head", "-n1"], os.environ,
		                         file_actions=[(os.POSIX_SPAWN_DUP2, s.fileno(), 0),
		                                       (os.POSIX_SPAWN_DUP2, w, 1)])
		    os.close(w); os.waitpid(pid, 0)
		    print("child:", os.read(r, 100), flush=True)
		msg = b"ping \x00\x01\x01\x00\x00\x00\x02 end\n"
		s.sendall(msg)
		got = b""
		while len(got) < len(msg):
		    d = s.recv(len(msg) - len(got))
		    if not d:
		        break
		    got += d
		print("parent:", got == msg, repr(got), flush=True)
	EOF2
}

handed_over() {
	start_late_server 0.3 1
	client_py
	run stderr_to "$T/client.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$PY" "$T/client.py" "$PORT" "$1"
	assert_status 0
	[ "$(line_with child:)" = "child: b'BANNER\\n'" ] || fail "client printed: $output $(cat "$T/client.err")"
	[ "$(line_with parent:)" = "parent: True b'ping \\x00\\x01\\x01\\x00\\x00\\x00\\x02 end\\n'" ] ||
		fail "client printed: $output $(cat "$T/client.err")"
	grep -q '"event":"framed"' "$T/client.events" || fail "client events: $(cat "$T/client.events")"
	! grep -q protocol_error "$T/server.events" "$T/client.events"
}

@test "fork right after connect: the child reads the server's banner, then the parent talks: both byte-exact" {
	handed_over fork
}

@test "subprocess (vfork + exec of head) on the socket right after connect, then the parent talks: both byte-exact" {
	need_cmd head
	handed_over subprocess
}

@test "posix_spawn of head with the socket as stdin right after connect, then the parent talks: both byte-exact" {
	need_cmd head
	handed_over posix_spawn
}

@test "SCM_RIGHTS right after connect: the receiving process talks raw, byte-exact; both ends downgraded" {
	start_late_server 0.3 0
	bg receiver shim "$PY" "$HB_ROOT/tests/app/fdpass.py" receive "$T/unix.sock"
	wait_line "$T/receiver.out" '^ready$' 10
	run stderr_to "$T/sender.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$PY" "$HB_ROOT/tests/app/fdpass.py" send "$PORT" "$T/unix.sock"
	[ "$status" -eq 0 ] || fail "sender: $status $(cat "$T/sender.err")"
	wait_line "$T/receiver.out" "^b'after" 10 || fail "receiver: $(cat "$T/receiver.out" "$T/receiver.err")"
	grep -qxF "b'after the pass \\x00\\x01\\x01\\x00\\x00\\x00\\x02 raw\\n'" "$T/receiver.out" ||
		fail "receiver got: $(cat "$T/receiver.out")"
	grep -q '"event":"downgraded".*"by":"local","reason":"fd_passed"' "$T/client.events" ||
		fail "sender events: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"fd_passed"' "$T/server.events" ||
		fail "server events: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/server.events"
}

# The wait is bounded, for all connections of a hand-over together, and
# taken once: a server that has not accepted after a second does not hold
# the fork longer, however many connections wait for it (six here: one
# second each would be six), nor the process's later forks (five here,
# with a non-blocking read in between that makes the receive side the
# parent's again); the shim says once per connection what it could not
# settle.
@test "forks with six connections to a server that has not accepted for 10 s: the first waits about a second in all, the next four not at all; one warning each" {
	start_late_server 10 0
	cat >"$T/forker.py" <<-'EOF2'
		import os, socket, sys, time
		conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(6)]
		s = conns[0]
		for i in range(5):
		    t = time.monotonic()
		    pid = os.fork()
		    if pid == 0:
		        os._exit(0)
		    print("fork_s %.3f" % (time.monotonic() - t), flush=True)
		    os.waitpid(pid, 0)
		    for s in conns:  # the parent reads again: the receive side is its own
		        s.setblocking(False)
		        try:
		            s.recv(1)
		        except BlockingIOError:
		            pass
		        s.setblocking(True)
	EOF2
	run stderr_to "$T/forker.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_LOG=warn \
		"$PY" "$T/forker.py" "$PORT"
	assert_status 0
	first=$(line_with fork_s | cut -d' ' -f2)
	total=$(awk '/^fork_s/ { t += $2 } END { print t }' <<<"$output")
	in_range "$first" 0.9 1.5 || fail "first fork took $first s; $output"
	in_range "$total" 0.9 1.5 || fail "five forks took $total s; $output"
	[ "$(grep -c "before the peer's hello arrived" "$T/forker.err")" -eq 6 ] ||
		fail "stderr: $(cat "$T/forker.err")"
}

# The other side: a forking server whose client's hello had not arrived at
# accept. The accepted socket's low-water mark keeps a lone hello (14
# bytes) from waking the application for the first moments; only the
# accepting process's thread looks behind it, and after the fork it leaves
# the connection to the child, which sleeps in select() until 15 bytes are
# there. The fork now takes the mark down (the child is woken by the hello
# and answers it). The client speaks the protocol by hand: its hello alone,
# 0.2 s after connecting, and it expects the server's hello back.
@test "forking server, the client's hello arriving alone after the accept: the child in select() wakes and answers it" {
	cat >"$T/server.py" <<-'EOF2'
		import os, select, socket
		l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(5)
		print(l.getsockname()[1], flush=True)
		while True:
		    c, _ = l.accept()
		    if os.fork() == 0:
		        l.close()
		        while True:
		            select.select([c], [], [])
		            d = c.recv(4096)
		            if not d:
		                os._exit(0)
		            c.sendall(d)
		    c.close()
	EOF2
	cat >"$T/client.py" <<-'EOF2'
		import socket, struct, sys, time
		s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
		time.sleep(0.2)
		s.sendall(b"\xe5HBS\x01\x03" + struct.pack(">II", 1000, 5000))
		s.settimeout(2)
		t = time.monotonic()
		h = b""
		try:
		    while len(h) < 14:
		        d = s.recv(14 - len(h))
		        if not d:
		            break
		        h += d
		except socket.timeout:
		    pass
		print("answer", h[:4], "after %.3f s" % (time.monotonic() - t), flush=True)
	EOF2
	bg server shim HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$PY" "$T/server.py"
	wait_line "$T/server.out" '^[0-9]+$' 10
	PORT=$(head -1 "$T/server.out")
	run plain "$PY" "$T/client.py" "$PORT"
	assert_status 0
	case $output in "answer b'\\xe5HBS' after"*) ;; *) fail "client printed: $output" ;; esac
	wait_line "$T/server.events" '"event":"framed"' 5 || fail "server events: $(cat "$T/server.events")"
}
