#!/usr/bin/env bats
# The vfork guard: a process whose pid is not the table owner's either runs
# in the owner's memory (vfork: it must change nothing) or has memory of
# its own (a raw clone's child: it must keep its table right). The answer
# must not depend on kcmp, which Docker's default seccomp profile refuses;
# and whatever the answer, framed I/O never goes to an fd that is not the
# recorded socket.

load helpers

# A shimmed echo server on PORT (framed when its client frames), started
# with bg as "srv"; returns once it listens.
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

# The raw clone case of faults.bats, under nokcmp ARGS.
raw_clone_child_pipe() { # NOKCMP-ARGS...
	[ "$(uname -m)" = x86_64 ] || skip "clone's system call number is x86-64's"
	need_helper nokcmp
	local port
	port=$(free_port)
	echo_server "$port"
	local srv=$BG_PID
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" "$HB_HELPERS/nokcmp" "$@" \
		"$PY" -c 'import ctypes, os, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(312, os.getpid(), os.getpid(), 0, 0, 0) == -1 and ctypes.get_errno() == 1  # kcmp: EPERM
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"hi"); assert s.recv(10) == b"hi"
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
os.waitpid(pid, 0)
os.write(fd, b"after"); print("parent got", os.read(fd, 10), flush=True)' "$port"
	echo "$output"
	assert_status 0
	[ "$(line_with mode)" = "mode 2" ] || fail "not framed: $output"
	[ "$(line_with child)" = "child b'pipe bytes' same number 1" ] || fail "child: $output"
	[ "$(line_with parent)" = "parent got b'after'" ] || fail "parent: $output"
}

@test "vfork guard: kcmp refused (seccomp): a raw clone's child closes a framed socket and gets a pipe on its number: the pipe works" {
	# With kcmp refused the child was taken for a vfork child forever: its
	# close was not recorded and its pipe writes went framed (ENOTSOCK).
	raw_clone_child_pipe
}

@test "vfork guard: kcmp refused and no MADV_WIPEONFORK (cannot tell): a raw clone's child's pipe on a framed socket's old number still works" {
	# Nothing tells the child apart from a vfork child: it changes nothing
	# in the table, and hb_fd_conn checks the socket's cookie before any
	# framed I/O on a number it may have closed.
	raw_clone_child_pipe -w
}

@test "vfork guard: a vfork child closes a framed socket's number and writes to a pipe on it: raw write; the parent's connection stays framed" {
	need_helper vforkreuse
	local port
	port=$(free_port)
	echo_server "$port"
	local srv=$BG_PID
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" "$HB_HELPERS/vforkreuse" "$port"
	echo "$output"
	assert_status 0
	[ "$output" = "mode 2
child b'pipe bytes' same number 1
parent got after" ] || fail "output: $output"
}

@test "vfork guard: kcmp refused: subprocess.run (vfork + close_range in the child) between requests: the connection stays framed, bytes exact" {
	# The answer without kcmp must still recognise a vfork child: its
	# close_range must not wipe the parent's table.
	need_helper nokcmp
	local port
	port=$(free_port)
	echo_server "$port"
	local srv=$BG_PID
	run shim HBSHIM_INTERVAL=100ms "HBSHIM_FRAME=127.0.0.1:$port" "$HB_HELPERS/nokcmp" "$PY" -c 'import ctypes, socket, subprocess, sys
lib = ctypes.CDLL(None)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for i in range(3):
    s.sendall(b"req%d" % i); r = s.recv(10)
    subprocess.run(["true"]); subprocess.run(["sh", "-c", "exit 0"], stdin=subprocess.DEVNULL)
    print("reply", r, "mode", lib.hbshim_fd_mode(s.fileno()), flush=True)
s.close()' "$port"
	echo "$output"
	assert_status 0
	[ "$(grep -c "^reply b'req[0-2]' mode 2\$" <<<"$output")" -eq 3 ] || fail "client: $output"
}
