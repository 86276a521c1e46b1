#!/usr/bin/env bats
# The files the shim writes (HBSHIM_STATS, HBSHIM_EVENTS, HBSHIM_LOG_FILE,
# log lines on stderr): never through a planted link, never blocking, never
# a signal of the shim's own, mode 0600, nothing left open in a fork child.

load helpers

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
	[ -x "$HB_ROOT/build/tests/forkfiles" ] ||
		skip "build/tests/forkfiles not built (make integration builds it)"
	: >"$T/ev"
	run shim HBSHIM_EVENTS="$T/ev" "$HB_ROOT/build/tests/forkfiles" "$T/ev" 300
	assert_status 0
	[[ $output =~ ^FORKS\ 300\ LEAKED\ 0\ CONNS\ [0-9]+$ ]] || fail "$output"
	[ -s "$T/ev" ] || fail "no events written meanwhile"
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
