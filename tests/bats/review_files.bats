#!/usr/bin/env bats
# The shim's own files against a planted symlink that comes and goes: the
# check that refuses a link in a sticky, world-writable directory and the
# open that follows must look at the same entry.

load helpers

setup() {
	hb_setup
	DIRS=()
}

teardown() {
	rm -rf "${DIRS[@]}"
	hb_teardown
}

@test "review_files: HBSHIM_EVENTS swapped between another user's file and link in /tmp: the link's target is never written" {
	need_root "another user to plant the link"
	need_cmd setpriv
	need_helper swapname
	# With the sysctl on, the kernel refuses such a link itself and this
	# test could not tell the shim's check from the kernel's.
	[ "$(cat /proc/sys/fs/protected_symlinks 2>/dev/null)" = 0 ] ||
		skip "fs.protected_symlinks is on: the kernel refuses the link anyway"
	# The sticky directory and the target outside it, both reachable for
	# nobody (the test's own temp dir may not be).
	local d s
	d=$(mktemp -d /tmp/hbrev-sticky.XXXXXX) && s=$(mktemp -d /tmp/hbrev-target.XXXXXX) ||
		fail "mktemp"
	DIRS=("$d" "$s")
	chmod 1777 "$d" && chmod 755 "$s"
	echo precious >"$s/target"
	chmod 644 "$s/target"
	# nobody plants the link and swaps it with a file of its own (which
	# the path names whenever the shim looks in between).
	bg swap setpriv --reuid=65534 --regid=65534 --clear-groups bash -c \
		'ln -s "$2" "$1/events" && : >"$1/alt" && chmod 666 "$1/alt" &&
		 exec "$3" "$1/events" "$1/alt" 4' _ "$d" "$s/target" "$HB_HELPERS/swapname"
	sleep 0.3
	# Up to 1000 event lines a second, each one open of the path.
	run shim HBSHIM_EVENTS="$d/events" "$PY" -c 'import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(64)
end = time.time() + 3
n = 0
while time.time() < end:
    c = socket.create_connection(l.getsockname()); s, _ = l.accept(); c.close(); s.close(); n += 1
print("CONNECTIONS", n)'
	assert_status 0
	[[ ${lines[-1]} =~ ^CONNECTIONS\ [0-9]+$ ]] || fail "$output"
	wait "$BG_PID" || fail "swapname: $(cat "$T/swap.err")"
	[ "$(cat "$s/target")" = precious ] ||
		fail "target written through the link: $(wc -l <"$s/target") lines: $(head -c 300 "$s/target")"
}

# reused_stderr.py: close fd 2, take it back as the read end of a pipe (a
# daemon that closed its standard streams), make a framed loopback
# connection (debug log lines, events), then write "app" into the pipe and
# print everything that came out of it.
write_reused_stderr() {
	cat >"$T/reused_stderr.py" <<'PY'
import os, socket
os.close(2)
r, w = os.pipe()
assert r == 2, (r, w)
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
c.sendall(b"x"); s.recv(1); c.close(); s.close()
os.write(w, b"app\n"); os.close(w)
data = b""
while True:
    d = os.read(r, 4096)
    if not d: break
    data += d
print("PIPE", repr(data))
PY
}

@test "review_files: fd 2 reused as a pipe's read end: log lines and /dev/stderr events stay out of the application's pipe" {
	write_reused_stderr
	run shim HBSHIM_LOG=debug HBSHIM_FRAME='*' HBSHIM_STATS="$T/stats" "$PY" "$T/reused_stderr.py"
	assert_status 0
	[ "${lines[-1]}" = "PIPE b'app\\n'" ] || fail "log lines in the application's pipe: $output"
	# Not written, and counted as such.
	grep -q '^hbshim_log_dropped_total{reason="write"} [1-9]' "$T/stats" ||
		fail "stats: $(grep dropped "$T/stats")"

	run shim HBSHIM_EVENTS=/dev/stderr HBSHIM_FRAME='*' HBSHIM_STATS="$T/stats2" "$PY" \
		"$T/reused_stderr.py"
	assert_status 0
	[ "${lines[-1]}" = "PIPE b'app\\n'" ] || fail "events in the application's pipe: $output"
	grep -q '^hbshim_events_dropped_total{reason="write"} [1-9]' "$T/stats2" ||
		fail "stats: $(grep dropped "$T/stats2")"
}

# bgjob.py CMD...: run CMD as a background job (its own process group, not
# the terminal's foreground one) on a fresh pty with TOSTOP set, and print
# how it ended: "EXIT n", "STOPPED n" (then killed) or "HUNG" after 5 s
# (kept in $BGJOB_RESULT by the session leader on the pty).
write_bgjob() {
	cat >"$T/bgjob.py" <<'PY'
import os, pty, signal, sys, termios, time
pid, master = pty.fork()
if pid == 0:
    a = termios.tcgetattr(0)
    a[3] |= termios.TOSTOP
    termios.tcsetattr(0, termios.TCSANOW, a)
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        os.execvp(sys.argv[1], sys.argv[1:])
    t0, st = time.time(), None
    while time.time() - t0 < 5:
        p, s = os.waitpid(job, os.WUNTRACED | os.WNOHANG)
        if p:
            st = s
            break
        time.sleep(0.01)
    if st is None:
        r = "HUNG"
    elif os.WIFSTOPPED(st):
        r = "STOPPED %d" % os.WSTOPSIG(st)
    else:
        r = "EXIT %d" % os.WEXITSTATUS(st)
    if st is None or os.WIFSTOPPED(st):
        os.kill(job, signal.SIGKILL); os.waitpid(job, 0)
    with open(os.environ["BGJOB_RESULT"], "w") as f:
        f.write(r + "\n")
    os._exit(0)
while True:
    try:
        if not os.read(master, 4096):
            break
    except OSError:
        break
os.waitpid(pid, 0)
print(open(os.environ["BGJOB_RESULT"]).read().strip())
PY
}

@test "review_files: a background job with TOSTOP on its terminal is not stopped by the shim's log line; its own write still stops it" {
	write_bgjob
	run env BGJOB_RESULT="$T/res" "$PY" "$T/bgjob.py" env "${SHIM_ENV[@]}" HBSHIM_LOG=debug \
		/bin/sleep 0.2
	[ "$output" = "EXIT 0" ] || fail "the shim's log line to the terminal: $output"
	# The job's own write to the terminal: the kernel's SIGTTOU, as without the shim.
	run env BGJOB_RESULT="$T/res" "$PY" "$T/bgjob.py" env "${SHIM_ENV[@]}" HBSHIM_LOG=debug \
		sh -c 'echo app >&2'
	[ "$output" = "STOPPED 22" ] || fail "the job's own write: $output"
}

# fd2.py socket|file|dup2: a loopback framed connection (debug log lines,
# events) made after fd 2 became the application's own:
#   socket  one end of its socketpair (started with stderr closed)
#   file    its output file (started with stderr closed)
#   dup2    its output file put over an open stderr (as nginx does with
#           its error log): the operator's choice, the lines go there
# then it writes "app" there and prints what its peer or file got.
write_fd2() {
	cat >"$T/fd2.py" <<'PY'
import os, socket, sys
mode, path = sys.argv[1], sys.argv[2]
if mode == "socket":
    a, b = socket.socketpair()
    mine, other = (a, b) if a.fileno() == 2 else (b, a)
    assert mine.fileno() == 2, (a.fileno(), b.fileno())
else:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if mode == "dup2":
        os.dup2(fd, 2); os.close(fd); fd = 2
    assert fd == 2, fd
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
c.sendall(b"x"); s.recv(1); c.close(); s.close()
if mode == "socket":
    mine.sendall(b"app\n"); mine.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = other.recv(4096)
        if not d: break
        data += d
else:
    os.write(2, b"app\n"); os.close(2)
    data = open(path, "rb").read()
print("GOT", repr(data))
PY
}

@test "review_files: started with stderr closed, fd 2 is the application's own socket or file: no log line or /dev/stderr event there" {
	write_fd2
	local mode v
	for mode in socket file; do
		for v in HBSHIM_LOG=debug HBSHIM_EVENTS=/dev/stderr; do
			run bash -c 'exec 2>&-; exec "$@"' _ timeout 20 env "${SHIM_ENV[@]}" "$v" \
				HBSHIM_FRAME='*' "$PY" "$T/fd2.py" "$mode" "$T/out"
			assert_status 0
			[ "$output" = "GOT b'app\\n'" ] || fail "$mode, $v: $output"
		done
	done
}

@test "review_files: an application that puts its own file over an open stderr still gets the log lines there" {
	write_fd2
	run shim HBSHIM_LOG=debug HBSHIM_FRAME='*' "$PY" "$T/fd2.py" dup2 "$T/out"
	assert_status 0
	[[ ${lines[-1]} == "GOT b'hbshim["*"peer speaks hbshim"*"app\\n'" ]] || fail "$output"
}
