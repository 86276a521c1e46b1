#!/usr/bin/env bats
# Fault injection: nothing lost, nothing touched that is not ours.

load helpers

FRAMED=(HBSHIM_FRAME='127.0.0.1:*' HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=20s)

@test "faults: close/heartbeat race, freed numbers reused by pipes and files at once: no stray byte" {
	need_helper closerace
	run shim "${FRAMED[@]}" TMPDIR="$T" "$HB_HELPERS/closerace" 4 600
	echo "$output"
	assert_status 0
	[[ $output == *" 0 stray bytes"* ]]
}

@test "faults: signal storm every 100 us with SA_RESTART: bytes exact, no EINTR reaches the app" {
	need_helper sigstorm
	run shim "${FRAMED[@]}" "$HB_HELPERS/sigstorm" restart 20
	echo "$output"
	assert_status 0
	[[ $output == *"0 mismatches, 0 EINTR"* ]]
}

@test "faults: signal storm every 100 us without SA_RESTART: bytes exact, EINTR retried" {
	need_helper sigstorm
	run shim "${FRAMED[@]}" "$HB_HELPERS/sigstorm" norestart 20
	echo "$output"
	assert_status 0
	[[ $output == *"0 mismatches"* ]]
}

@test "faults: accept-time hello detection racing the background thread: 1000 connections, every byte exact" {
	# Regression: the accepting thread re-ran detection after the background
	# thread had consumed the hello, took the first data frame for a raw
	# stream and delivered frame headers to the application.
	need_helper acceptrace
	run shim "${FRAMED[@]}" "$HB_HELPERS/acceptrace" 1000
	echo "$output"
	assert_status 0
	[[ $output == *"1000 connections, 0 bad"* ]]
}

# A framed client whose server dies; the client keeps heartbeating into the
# dead connection, then (optionally) writes itself.
sigpipe_app() {
	cat >"$T/sp.py" <<'PY'
import os, signal, socket, sys, time
mode = sys.argv[1]
if mode == "ignore":
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
else:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
pid = os.fork()
if pid == 0:
    c, _ = l.accept(); c.recv(10); time.sleep(0.2); os._exit(0)
s = socket.create_connection(l.getsockname()); s.sendall(b"hi")
os.waitpid(pid, 0)
time.sleep(0.5)          # heartbeats go into the closed connection meanwhile
print("alive after heartbeats", flush=True)
if mode != "quiet":
    try:
        for _ in range(50):
            s.send(b"x" * 1000); time.sleep(0.01)
        print("no error")
    except OSError as e:
        print("send failed errno", e.errno, flush=True)
PY
}

@test "faults: heartbeats into a reset connection never raise SIGPIPE" {
	sigpipe_app
	run shim "${FRAMED[@]}" "$PY" "$T/sp.py" quiet
	echo "$output"
	assert_status 0
	[[ $output == *"alive after heartbeats"* ]]
}

@test "faults: an app that ignores SIGPIPE sees EPIPE exactly as without the shim" {
	sigpipe_app
	run plain "$PY" "$T/sp.py" ignore
	raw=$output
	run shim "${FRAMED[@]}" "$PY" "$T/sp.py" ignore
	echo "raw: $raw"; echo "shim: $output"
	assert_status 0
	[[ $raw == *"send failed errno 32"* || $raw == *"send failed errno 104"* ]]
	[[ $output == *"send failed errno 32"* || $output == *"send failed errno 104"* ]]
}

@test "faults: an app with SIGPIPE at its default dies of it, as without the shim" {
	sigpipe_app
	run plain "$PY" "$T/sp.py" default
	raw=$status
	run shim "${FRAMED[@]}" "$PY" "$T/sp.py" default
	echo "raw status $raw, shim status $status: $output"
	# 141 = killed by SIGPIPE; a reset can also surface first as ECONNRESET.
	[[ $raw == 141 || $raw == 0 ]]
	[[ $status == "$raw" || $status == 141 || $output == *"errno 104"* ]]
	[[ $output == *"alive after heartbeats"* ]]
}

@test "faults: a flood of heartbeats and truncated frames: bounded memory, process alive, clean error" {
	cat >"$T/flood.py" <<'PY'
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
c, _ = l.accept()
c.recv(14)   # the client's hello: read it, or closing would reset the connection
hello = bytes.fromhex("e548425301000000006400000bb8")
c.sendall(hello + b"\x00\x01" * 2000000 + b"\x01\x00\x00\x00\x05ab")
c.shutdown(socket.SHUT_WR)   # EOF in the middle of that last frame
while c.recv(65536):         # swallow the client's heartbeats until it leaves
    pass
PY
	cat >"$T/victim.py" <<'PY'
import resource, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
print("got", data, "maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
PY
	port=$(free_port)
	bg plain "$PY" "$T/flood.py" "$port"
	wait_listen "$port"
	run shim "${FRAMED[@]}" "$PY" "$T/victim.py" "$port"
	echo "$output"
	assert_status 0
	# 4 MB of heartbeats never reach the app; the truncated frame's 2 bytes do.
	[[ $output == *"got b'ab'"* ]]
	rss=$(sed -n 's/.*maxrss_kb \([0-9]*\).*/\1/p' <<<"$output")
	[ "$rss" -lt 60000 ]
}

@test "faults: EMFILE: an app at its fd limit still works, the shim never fails its calls" {
	cat >"$T/emfile.py" <<'PY'
import errno, os, socket, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(64)
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    assert e.errno == errno.EMFILE
os.close(held.pop()); os.close(held.pop())
s = socket.create_connection(l.getsockname()); c, _ = l.accept()
s.sendall(b"ping"); print(c.recv(10), flush=True)
try:
    socket.socket()
    print("unexpected: got a socket")
except OSError as e:
    print("EMFILE as expected" if e.errno == errno.EMFILE else "errno %d" % e.errno)
PY
	run shim "${FRAMED[@]}" "$PY" "$T/emfile.py"
	echo "$output"
	assert_status 0
	[[ $output == *"b'ping'"* ]]
	[[ $output == *"EMFILE as expected"* ]]
}

@test "faults: fork storm (exit, hold, exec) during a framed echo stream at 1 ms heartbeats: bytes exact" {
	need_helper forkstorm
	run shim "${FRAMED[@]}" HBSHIM_EVENTS="$T/ev" "$HB_HELPERS/forkstorm" storm 120
	echo "$output"
	assert_status 0
	[[ $output == *"storm: 120 forks (0 failed) during the stream"*"echoed exactly"* ]]
	! grep -E '"event":"(dead|protocol_error)"' "$T/ev" || fail "false detection or corruption"
}

# A shimmed one-connection echo server on PORT (framed when its client
# frames), started with bg as "srv"; returns once it listens.
echo_server() { # PORT ENV...
	local port=$1
	shift
	bg srv shim "$@" HBSHIM_ACCEPT=auto "$PY" -c 'import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
c, _ = l.accept()
while True:
    d = c.recv(100)
    if not d: break
    c.sendall(d)' "$port"
	wait_line "$T/srv.out" LISTENING
}

@test "faults: a framed client that forks a short-lived child every 0.3 s (its pause after a fork is 0.5 s) keeps sending heartbeats: not declared dead" {
	# The parent leaves its framed connections alone for a moment after a
	# fork (a forking server closes its copy meanwhile). Each fork restarted
	# that pause, so a process forking more often than it never sent a
	# heartbeat again, and its live peer declared it dead.
	local port
	port=$(free_port)
	local -a env=(HBSHIM_INTERVAL=500ms HBSHIM_TIMEOUT=1500ms)
	echo_server "$port" "${env[@]}" HBSHIM_EVENTS="$T/srv.ev"
	local srv=$BG_PID
	run shim "${env[@]}" "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" "$PY" -c 'import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"one"); assert s.recv(10) == b"one"
end = time.time() + 4
while time.time() < end:
    pid = os.fork()
    if pid == 0: os._exit(0)
    os.waitpid(pid, 0); time.sleep(0.3)
s.sendall(b"two"); print("second", s.recv(10)); s.close()' "$port"
	assert_status 0
	[ "$(line_with second)" = "second b'two'" ] || fail "client: $output"
	bg_wait "$srv" 10
	grep -q '"event":"framed"' "$T/cli.ev" || fail "not framed: $(cat "$T/cli.ev")"
	! grep -q '"event":"dead"' "$T/srv.ev" "$T/cli.ev" || fail "dead events: $(cat "$T/srv.ev" "$T/cli.ev")"
}

@test "faults: a framed client runs subprocess.run (vfork + close_range in the child) between requests: the connection stays framed, bytes exact" {
	# Python's subprocess starts children with vfork: the child runs in
	# our memory until it execs, and its close_range (close_fds) went
	# through the shim and wiped the parent's fd table; the parent then
	# read raw heartbeats and wrote unframed bytes.
	local port
	port=$(free_port)
	local -a env=(HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=1s)
	echo_server "$port" "${env[@]}" HBSHIM_EVENTS="$T/srv.ev"
	local srv=$BG_PID
	run shim "${env[@]}" "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" "$PY" -c 'import ctypes, socket, subprocess, sys, time
lib = ctypes.CDLL(None)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for i in range(5):
    s.sendall(b"req%d" % i); r = s.recv(10)
    subprocess.run(["true"]); subprocess.run(["sh", "-c", "exit 0"], stdin=subprocess.DEVNULL)
    time.sleep(0.3)  # heartbeats arrive meanwhile
    print("reply", r, "mode", lib.hbshim_fd_mode(s.fileno()), flush=True)
s.close()' "$port"
	assert_status 0
	[ "$(grep -c "^reply b'req[0-4]' mode 2\$" <<<"$output")" -eq 5 ] || fail "client: $output"
	bg_wait "$srv" 10
	! grep -q '"event":"dead"\|protocol_error' "$T/srv.ev" "$T/cli.ev" || fail "events: $(cat "$T/srv.ev" "$T/cli.ev")"
}

@test "faults: a child of a raw clone (no fork handlers, own memory: vsftpd) closes a framed socket and gets a pipe on its number: the pipe works" {
	# The vfork guard skips the table's bookkeeping in a process whose pid
	# is not the recorded one; a raw clone's child has its own memory and
	# must keep it (kcmp tells them apart), or a stale entry sent its pipe
	# writes down the framed path (ENOTSOCK).
	[ "$(uname -m)" = x86_64 ] || skip "clone's system call number is x86-64's"
	local port
	port=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=100ms "$PY" -c 'import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
c, _ = l.accept(); c.recv(10); time.sleep(2)' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" "$PY" -c 'import ctypes, os, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"hi"); time.sleep(0.3)
print("mode", libc.hbshim_fd_mode(s.fileno()), flush=True)
fd = s.detach()
pid = libc.syscall(56, signal.SIGCHLD, 0, 0, 0, 0)  # clone(SIGCHLD): a fork without handlers (x86-64)
if pid == 0:
    os.close(fd)
    r, w = os.pipe()
    try:
        os.write(w, b"pipe bytes"); os.write(1, b"child %r same number %d\n" % (os.read(r, 100), w == fd or r == fd))
    except OSError as e:
        os.write(1, b"child write failed %d\n" % e.errno)
    os._exit(0)
os.waitpid(pid, 0)' "$port"
	assert_status 0
	[ "$(line_with mode)" = "mode 2" ] || fail "not framed: $output"
	[ "$(line_with child)" = "child b'pipe bytes' same number 1" ] || fail "child: $output"
	bg_wait "$srv" 10
}

@test "faults: a framed client gives its connection to /bin/echo as stdout (subprocess.run) and goes on using it: the child's close leaves the stream alone" {
	# echo (coreutils) closes its stdout at exit. The child had adopted the
	# connection across exec, and its close drained and shut the socket
	# down as if it were the last holder: the parent's next request met a
	# closed stream. A close now asks whether the parent or a child still
	# holds the socket.
	local port
	port=$(free_port)
	echo_server "$port" HBSHIM_INTERVAL=100ms
	local srv=$BG_PID
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" "$PY" -c 'import socket, subprocess, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"first\n"); assert c.recv(100) == b"first\n"
for i in range(3):
    subprocess.run(["/bin/echo", "hi"], stdout=c)
    time.sleep(0.2)
    c.sendall(b"after\n"); got = b""
    while len(got) < 9: got += c.recv(100)
    print("got", got, flush=True)
c.close()' "$port"
	assert_status 0
	[ "$(grep -cxF "got b'hi\\nafter\\n'" <<<"$output")" -eq 3 ] || fail "client: $output"
	bg_wait "$srv" 10
	! grep -q protocol_error "$T/cli.ev" || fail "events: $(cat "$T/cli.ev")"
}

@test "faults: a thread closes an fd another thread is blocked reading; the number is reused by a pipe at once" {
	need_helper forkstorm
	run shim "${FRAMED[@]}" "$HB_HELPERS/forkstorm" closeblocked
	echo "$output"
	assert_status 0
	[[ $output == *"0 stray bytes"*"with 0 non-application bytes"* ]]
}

@test "faults: wrapped calls from a signal handler (every 200 us) and from a constructor: bytes exact, no deadlock" {
	need_helper forkstorm
	run shim "${FRAMED[@]}" "$HB_HELPERS/forkstorm" sighandler
	echo "$output"
	assert_status 0
	[[ $output == *"(0 bad), constructor ok"*"echoed exactly"* ]]
}
