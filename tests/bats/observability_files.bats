#!/usr/bin/env bats
# The files the shim writes (HBSHIM_STATS, HBSHIM_EVENTS, HBSHIM_LOG_FILE,
# log lines on stderr): never through a planted link, never blocking, never
# a signal of the shim's own, mode 0600, nothing left open in a fork child.
# The check that refuses a link in a sticky, world-writable directory and
# the open that follows look at the same entry even when a planted link
# comes and goes; a reused or closed fd 2 is never written.

load helpers

# DIRS: directories a test made outside $T (in /tmp, for another user to
# reach), removed in teardown.
setup() {
	hb_setup
	DIRS=()
}

teardown() {
	rm -rf "${DIRS[@]}"
	hb_teardown
}

# run.py MODE CMD...: run CMD with its stderr on a pipe and print how it
# ended ("EXIT n", "SIGNAL n", or "HUNG" after 10 s, then killed).
#   full     : the pipe is full and its reader never reads
#   noreader : the pipe's read end is closed
#   unix     : an AF_UNIX stream socket instead (journald's kind); what
#              arrives is printed after the child's exit
write_runner() {
	cat >"$T/run.py" <<'PY'
import fcntl, os, socket, sys, time
mode, cmd = sys.argv[1], sys.argv[2:]
if mode == "unix":
    a, b = socket.socketpair()
    r, w = a.detach(), b.detach()
    fcntl.fcntl(r, fcntl.F_SETFL, os.O_NONBLOCK)
else:
    r, w = os.pipe()
got = b""
if mode == "full":
    fl = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, fl)  # blocking, as an application's stderr is
elif mode == "noreader":
    os.close(r)
pid = os.fork()
if pid == 0:
    os.dup2(w, 2)
    os.execvp(cmd[0], cmd)
os.close(w)
t0 = time.monotonic()
while time.monotonic() - t0 < 10:
    if mode == "unix":
        try:
            got += os.read(r, 65536)
        except BlockingIOError:
            pass
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        break
    time.sleep(0.02)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("HUNG", flush=True)
    sys.exit(0)
if mode == "unix":
    try:
        got += os.read(r, 65536)
    except BlockingIOError:
        pass
    sys.stdout.write(got.decode())
if os.WIFSIGNALED(st):
    print("SIGNAL", os.WTERMSIG(st), flush=True)
else:
    print("EXIT", os.WEXITSTATUS(st), flush=True)
PY
}

# stat_value FILE SAMPLE: the value of one sample line of a stats file.
stat_value() {
	awk -v s="$2" '$1 == s { print $2; f = 1 } END { exit !f }' "$1"
}

LOOPBACK_RE='^LOOPBACK pid=[0-9]+ port=[0-9]+ cport=[0-9]+ active=1$'

@test "files: a symlink planted at the stats temporary name is not followed; the target is untouched" {
	echo precious >"$T/target"
	# The old temporary name was STATS.tmp.PID: plant it with the pid the
	# program will have (exec keeps bash's pid).
	run timeout 20 bash -c 'ln -s "$1" "$2.tmp.$$" && exec "${@:3}"' _ "$T/target" "$T/stats" \
		env "${SHIM_ENV[@]}" HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[[ $output =~ $LOOPBACK_RE ]] || fail "app: $output"
	[ "$(cat "$T/target")" = precious ] || fail "target overwritten: $(head -3 "$T/target")"
	[ -f "$T/stats" ] && [ ! -L "$T/stats" ] || fail "stats is not a regular file: $(ls -l "$T/stats")"
	[ "$(stat_value "$T/stats" hbshim_connects_total)" = 1 ] || fail "stats: $(cat "$T/stats")"
	# Nothing else left behind: the planted link and no temporary file.
	run bash -c 'cd "$1" && ls -A | grep "^stats\.tmp\."' _ "$T"
	[ "${#lines[@]}" -eq 1 ] && [ -L "$T/${lines[0]}" ] || fail "left behind: $output"
}

@test "files: events, log and stats files are created with mode 0600" {
	run bash -c 'umask 022 && "$@"' _ timeout 20 env "${SHIM_ENV[@]}" HBSHIM_EVENTS="$T/ev" \
		HBSHIM_LOG=debug HBSHIM_LOG_FILE="$T/log" HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[ "$(stat -c %a "$T/ev")" = 600 ] || fail "events: $(stat -c %a "$T/ev")"
	[ "$(stat -c %a "$T/log")" = 600 ] || fail "log: $(stat -c %a "$T/log")"
	[ "$(stat -c %a "$T/stats")" = 600 ] || fail "stats: $(stat -c %a "$T/stats")"
	[ "$(wc -l <"$T/ev")" -eq 4 ] || fail "events: $(cat "$T/ev")"
}

@test "files: a FIFO without a reader as HBSHIM_EVENTS or HBSHIM_LOG_FILE: the program runs to its end, lines counted" {
	mkfifo "$T/fifo"
	run timeout 10 env "${SHIM_ENV[@]}" HBSHIM_EVENTS="$T/fifo" HBSHIM_STATS="$T/stats" \
		"$PY" "$APP" loopback
	assert_status 0
	[[ $output =~ $LOOPBACK_RE ]] || fail "app: $output"
	[ "$(stat_value "$T/stats" 'hbshim_events_dropped_total{reason="write"}')" = 4 ] ||
		fail "stats: $(grep dropped "$T/stats")"
	# The log file is opened in the library's constructor already.
	run timeout 10 env "${SHIM_ENV[@]}" HBSHIM_LOG=debug HBSHIM_LOG_FILE="$T/fifo" \
		HBSHIM_STATS="$T/stats2" "$PY" "$APP" loopback
	assert_status 0
	[[ $output =~ $LOOPBACK_RE ]] || fail "app: $output"
	[ "$(stat_value "$T/stats2" 'hbshim_log_dropped_total{reason="write"}')" -ge 1 ] ||
		fail "stats: $(grep dropped "$T/stats2")"
}

@test "files: a full pipe on stderr (HBSHIM_EVENTS=/dev/stderr, log lines): lines dropped and counted, no wait" {
	write_runner
	run timeout 20 "$PY" "$T/run.py" full env "${SHIM_ENV[@]}" HBSHIM_EVENTS=/dev/stderr \
		HBSHIM_LOG=debug HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[ "${#lines[@]}" -eq 2 ] && [[ ${lines[0]} =~ $LOOPBACK_RE ]] && [ "${lines[1]}" = "EXIT 0" ] ||
		fail "$output"
	[ "$(stat_value "$T/stats" 'hbshim_events_dropped_total{reason="write"}')" = 4 ] ||
		fail "stats: $(grep dropped "$T/stats")"
	[ "$(stat_value "$T/stats" 'hbshim_log_dropped_total{reason="write"}')" -ge 1 ] ||
		fail "stats: $(grep dropped "$T/stats")"
}

@test "files: without /proc mounted, a full pipe on stderr still drops the log line (poll first)" {
	need_root "a mount namespace"
	# libasan without /proc writes warnings to stderr (the full pipe) and
	# blocks there, with or without hbshim.
	need_nosan "the sanitizer runtime cannot run without /proc (its own warnings block on the full stderr pipe)"
	need_cmd unshare
	write_runner
	run timeout 20 unshare -m bash -c 'mount -t tmpfs none /proc && exec "$@"' _ \
		"$PY" "$T/run.py" full env "${SHIM_ENV[@]}" HBSHIM_LOG=debug \
		HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[ "${#lines[@]}" -eq 2 ] && [[ ${lines[0]} =~ $LOOPBACK_RE ]] && [ "${lines[1]}" = "EXIT 0" ] ||
		fail "$output"
	[ "$(stat_value "$T/stats" 'hbshim_log_dropped_total{reason="write"}')" -ge 1 ] ||
		fail "stats: $(grep dropped "$T/stats")"
}

@test "files: /dev/full as HBSHIM_EVENTS: lines lost and counted, nothing else" {
	run shim HBSHIM_EVENTS=/dev/full HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[[ $output =~ $LOOPBACK_RE ]] || fail "app: $output"
	[ "$(stat_value "$T/stats" 'hbshim_events_dropped_total{reason="write"}')" = 4 ] ||
		fail "stats: $(grep dropped "$T/stats")"
}

@test "files: stderr a pipe without a reader: the shim raises no SIGPIPE, the program's own write still does" {
	write_runner
	cat >"$T/prog.py" <<'PY'
import os, signal, socket, time
n = 0
def h(s, f):
    global n
    n += 1
signal.signal(signal.SIGPIPE, h)
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)
c = socket.create_connection(l.getsockname()); a, _ = l.accept(); c.close(); a.close()
time.sleep(0.05)
before = n
try:
    os.write(2, b"x")
    e = "written"
except BrokenPipeError:
    e = "EPIPE"
time.sleep(0.05)
print("PIPE before=%d own=%s after=%d" % (before, e, n), flush=True)
PY
	run timeout 20 "$PY" "$T/run.py" noreader env "${SHIM_ENV[@]}" HBSHIM_LOG=debug \
		HBSHIM_EVENTS=/dev/stderr "$PY" "$T/prog.py"
	assert_status 0
	[ "$output" = "PIPE before=0 own=EPIPE after=1
EXIT 0" ] || fail "$output"
}

@test "files: RLIMIT_FSIZE 0 with a regular-file stderr at HBSHIM_LOG=debug: no SIGXFSZ, the program runs on" {
	run timeout 20 bash -c 'ulimit -f 0 && exec "$@" 2>"$0"' "$T/err" env "${SHIM_ENV[@]}" \
		HBSHIM_LOG=debug HBSHIM_EVENTS="$T/ev" HBSHIM_STATS="$T/stats" "$PY" -B "$APP" loopback
	assert_status 0
	[[ $output =~ $LOOPBACK_RE ]] || fail "app: $output"
	[ ! -s "$T/err" ] && [ ! -s "$T/ev" ] || fail "a file grew past the limit"
}

@test "files: under RLIMIT_FSIZE the program's own SIGXFSZ is kept, pending or not; the shim's are not seen" {
	cat >"$T/prog.py" <<'PY'
import os, signal, socket, sys, time
n = 0
def h(s, f):
    global n
    n += 1
signal.signal(signal.SIGXFSZ, h)
def conn():
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)
    c = socket.create_connection(l.getsockname()); a, _ = l.accept(); c.close(); a.close()
    l.close()
def own():
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b"x")
    except OSError:
        pass
    os.close(fd)
def settle():
    for _ in range(5):
        time.sleep(0.01)
# The program's own SIGXFSZ pending (blocked) while the shim's writes fail.
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGXFSZ])
own()
conn()
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGXFSZ])
settle()
pending = n
conn()
settle()
shim_only = n
own()
settle()
print("XFSZ pending=%d shim_only=%d own=%d" % (pending, shim_only, n), flush=True)
PY
	run timeout 20 bash -c 'ulimit -f 0 && exec "$@" 2>"$0"' "$T/err" env "${SHIM_ENV[@]}" \
		HBSHIM_LOG=debug HBSHIM_EVENTS="$T/ev" "$PY" -B "$T/prog.py" "$T/own"
	assert_status 0
	[ "$output" = "XFSZ pending=1 shim_only=1 own=2" ] || fail "$output"
}

@test "files: a symlink in a sticky world-writable directory is refused with one warning; our own link is followed" {
	need_root "chown of a symlink to another user"
	mkdir "$T/pub"
	chmod 1777 "$T/pub"
	echo precious >"$T/target"
	ln -s "$T/target" "$T/pub/ev"
	ln -s "$T/target" "$T/pub/log"
	ln -s "$T/target" "$T/pub/st"
	chown -h nobody "$T/pub/ev" "$T/pub/log" "$T/pub/st"
	run stderr_to "$T/err" shim HBSHIM_EVENTS="$T/pub/ev" "$PY" "$APP" loopback
	assert_status 0
	[ "$(cat "$T/target")" = precious ] || fail "written through the link: $(cat "$T/target")"
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "HBSHIM_EVENTS=$T/pub/ev is a symlink in a sticky" "$T/err" ||
		fail "stderr: $(cat "$T/err")"

	run stderr_to "$T/err" shim HBSHIM_LOG=debug HBSHIM_LOG_FILE="$T/pub/log" "$PY" "$APP" loopback
	assert_status 0
	[ "$(cat "$T/target")" = precious ] || fail "written through the link: $(cat "$T/target")"
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "HBSHIM_LOG_FILE=$T/pub/log is a symlink in a sticky" "$T/err" ||
		fail "stderr: $(cat "$T/err")"

	run stderr_to "$T/err" shim HBSHIM_STATS="$T/pub/st" "$PY" "$APP" loopback
	assert_status 0
	[ "$(cat "$T/target")" = precious ] || fail "written through the link: $(cat "$T/target")"
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "HBSHIM_STATS=$T/pub/st is a symlink in a sticky" "$T/err" ||
		fail "stderr: $(cat "$T/err")"

	# A link of ours (the directory's owner's) there is followed.
	ln -s "$T/mine" "$T/pub/ours"
	run stderr_to "$T/err" shim HBSHIM_EVENTS="$T/pub/ours" "$PY" "$APP" loopback
	assert_status 0
	[ ! -s "$T/err" ] || fail "stderr: $(cat "$T/err")"
	[ "$(wc -l <"$T/mine")" -eq 4 ] || fail "events through our link: $(cat "$T/mine")"
}

@test "files: /dev/stderr on a pipe or a file, /proc/self/fd/N and a log pipe keep receiving lines" {
	run bash -c '"$@" 2>&1 >/dev/null | cat' _ timeout 20 env "${SHIM_ENV[@]}" \
		HBSHIM_EVENTS=/dev/stderr HBSHIM_LOG=debug "$PY" "$APP" loopback
	assert_status 0
	[ "$(grep -c '^{"time":' <<<"$output")" -eq 4 ] || fail "events on the stderr pipe: $output"
	grep -q '^hbshim\[[0-9]*\]: debug: loaded' <<<"$output" || fail "log on the stderr pipe: $output"

	run bash -c '"$@" 5>&1 >/dev/null | cat' _ timeout 20 env "${SHIM_ENV[@]}" \
		HBSHIM_EVENTS=/proc/self/fd/5 "$PY" "$APP" loopback
	assert_status 0
	[ "$(grep -c '^{"time":' <<<"$output")" -eq 4 ] || fail "events on /proc/self/fd/5: $output"

	run stderr_to "$T/err" shim HBSHIM_EVENTS=/dev/stderr HBSHIM_LOG=debug "$PY" "$APP" loopback
	assert_status 0
	[ "$(grep -c '^{"time":' "$T/err")" -eq 4 ] || fail "events in the stderr file: $(cat "$T/err")"
	grep -q '^hbshim\[[0-9]*\]: debug: loaded' "$T/err" || fail "log in the stderr file: $(cat "$T/err")"
}

@test "files: HBSHIM_EVENTS=/dev/stderr and the log reach an AF_UNIX stream socket on stderr (journald)" {
	write_runner
	run timeout 20 "$PY" "$T/run.py" unix env "${SHIM_ENV[@]}" HBSHIM_EVENTS=/dev/stderr \
		HBSHIM_LOG=debug "$PY" "$APP" loopback
	assert_status 0
	[ "$(grep -c '^{"time":' <<<"$output")" -eq 4 ] || fail "events on the socket: $output"
	grep -q '^hbshim\[[0-9]*\]: debug: loaded' <<<"$output" || fail "log on the socket: $output"
	[ "${lines[-1]}" = "EXIT 0" ] || fail "$output"
}

@test "files: events are capped at 1000 lines a second per process; the rest are counted" {
	cat >"$T/prog.py" <<'PY'
import socket, sys, time
N = int(sys.argv[1])
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(64)
t0 = time.monotonic()
for _ in range(N):
    c = socket.create_connection(l.getsockname()); a, _ = l.accept(); c.close(); a.close()
print("CONNS %d %.3f" % (N, time.monotonic() - t0), flush=True)
PY
	run shim HBSHIM_EVENTS="$T/ev" HBSHIM_STATS="$T/stats" "$PY" "$T/prog.py" 2000
	assert_status 0
	local secs lines rate write
	secs=$(awk '{ print int($3) + 1 }' <<<"$output")
	lines=$(wc -l <"$T/ev")
	rate=$(stat_value "$T/stats" 'hbshim_events_dropped_total{reason="rate"}') || fail "no counter"
	write=$(stat_value "$T/stats" 'hbshim_events_dropped_total{reason="write"}')
	# 4 events per connection: connect, accept, two closes.
	[ $((lines + rate + write)) -eq 8000 ] || fail "lines $lines + dropped $rate + $write != 8000"
	[ "$rate" -gt 0 ] || fail "nothing dropped by the cap: $lines lines in $output"
	[ "$lines" -le $((1000 * (secs + 1))) ] || fail "$lines lines in $output"
}

@test "files: an events fd is never left open in a child forked by another thread" {
	need_helper forkfiles
	: >"$T/ev"
	run shim HBSHIM_EVENTS="$T/ev" "$HB_HELPERS/forkfiles" "$T/ev" 300
	assert_status 0
	[[ $output =~ ^FORKS\ 300\ LEAKED\ 0\ CONNS\ [0-9]+$ ]] || fail "$output"
	[ -s "$T/ev" ] || fail "no events written meanwhile"
}

@test "files: a HBSHIM_LOG_FILE fd is never left open in a child forked by another thread" {
	need_helper forkfiles
	: >"$T/log"
	# Framed connections to itself log at debug level ("peer speaks
	# hbshim", "linger ends"): lines are written while the forks go on, at
	# most 50 a second (the log's rate cap). The file is open for only
	# microseconds a second, so an unguarded log path leaks into few forks:
	# a guard next to the events test, which shows the leak.
	run shim HBSHIM_LOG=debug HBSHIM_LOG_FILE="$T/log" HBSHIM_FRAME='*' HBSHIM_ACCEPT=auto \
		"$HB_HELPERS/forkfiles" "$T/log" 300
	assert_status 0
	[[ $output =~ ^FORKS\ 300\ LEAKED\ 0\ CONNS\ [0-9]+$ ]] || fail "$output"
	[ "$(grep -c 'peer speaks hbshim\|linger ends' "$T/log")" -ge 5 ] ||
		fail "few log lines written meanwhile: $(cat "$T/log")"
}

@test "files: a HBSHIM_STATS path too long once %p is expanded is refused with a warning, not truncated" {
	# The expanded path is past HB_PATH_MAX while the configured one is not
	# (511 bytes): a truncated path would name another file.
	local k=60 dir pad
	dir="$T/d"
	pad=$((511 - 2 * k - ${#dir} - 2))
	while [ "$pad" -gt 0 ]; do
		local n=$((pad > 200 ? 200 : pad))
		[ $((pad - n)) -gt 0 ] && [ $((pad - n)) -lt 2 ] && n=$((n - 2))
		dir="$dir/$(printf 'x%.0s' $(seq "$n"))"
		pad=$((pad - n - 1))
	done
	mkdir -p "$dir"
	local path="$dir/$(printf '%%p%.0s' $(seq "$k"))"
	[ "${#path}" -le 511 ] || fail "test setup: path ${#path} bytes"
	run stderr_to "$T/err" shim HBSHIM_STATS="$path" "$PY" "$APP" loopback
	assert_status 0
	[ -z "$(ls -A "$dir")" ] || fail "written: $(ls -A "$dir")"
	[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "HBSHIM_STATS: with %p expanded the path is 511 bytes or longer" "$T/err" ||
		fail "stderr: $(cat "$T/err")"
}

# ------------------------------------------------------------------ a planted link that comes and goes, stderr not the terminal it seems

@test "files: HBSHIM_EVENTS swapped between another user's file and link in /tmp: the link's target is never written" {
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

@test "files: fd 2 reused as a pipe's read end: log lines and /dev/stderr events stay out of the application's pipe" {
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

@test "files: a background job with TOSTOP on its terminal is not stopped by the shim's log line; its own write still stops it" {
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

@test "files: started with stderr closed, fd 2 is the application's own socket or file: no log line or /dev/stderr event there" {
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

@test "files: an application that puts its own file over an open stderr still gets the log lines there" {
	write_fd2
	run shim HBSHIM_LOG=debug HBSHIM_FRAME='*' "$PY" "$T/fd2.py" dup2 "$T/out"
	assert_status 0
	[[ ${lines[-1]} == "GOT b'hbshim["*"peer speaks hbshim"*"app\\n'" ]] || fail "$output"
}
