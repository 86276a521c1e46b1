#!/usr/bin/env bats
# Bounded work per peer byte. Any client can send heartbeat frames as fast
# as the network allows (~200 MB/s over loopback here); whatever it sends,
# one connection must not take the process's other connections down with
# it: a single-threaded event loop keeps answering its other clients, the
# background thread keeps sending heartbeats on the other connections (also
# while it absorbs a flood on a lingering close), and a blocking read or
# recv(MSG_PEEK) still ends at SO_RCVTIMEO or at a signal, as the kernel's
# sleeping reader would. A client that sends only the start of the magic and
# waits costs no more than an idle one. The peers are hand-written
# (build/helpers/flooder), the server is a plain Python epoll loop.

load helpers

FLOODER="$HB_HELPERS/flooder"

setup() {
	hb_setup
	need_helper flooder
	SRV="$T/srv.py"
	cat >"$SRV" <<'PY'
import resource, select, socket, struct, sys, time
# srv.py PORT lt|et|block: a single-threaded epoll echo server (level- or
# edge-triggered); a message starting with "q" closes its connection,
# "stats" answers "CPU <seconds> READS <recv calls>". block: accept one
# connection, then blocking reads of 16 bytes (slower than a flood comes in)
# with SO_RCVTIMEO 1 s, reporting each. block-sig: the same without a
# timeout, ended by a signal (block-sig-restart: whose handler has
# SA_RESTART, which goes on reading). peek-sig, peek-sig-restart: the same
# with one blocking recv(16, MSG_PEEK), reported once.
port, how = int(sys.argv[1]), sys.argv[2]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port)); l.listen(256)
print("LISTENING", flush=True)
peek = how.startswith("peek-sig")
if how.startswith(("block-sig", "peek-sig")):
    # A blocking read without a timeout; SIGALRM after 1 s, whose handler
    # (no SA_RESTART) raises: the read must end then.
    import signal
    class Alarm(Exception):
        pass
    def on_alarm(sig, frame):
        if how in ("block-sig", "peek-sig"):
            raise Alarm()
    signal.signal(signal.SIGALRM, on_alarm)
    if how.endswith("-restart"):
        signal.siginterrupt(signal.SIGALRM, False) # SA_RESTART, no raise
    c, _ = l.accept()
    t0 = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        while True:
            d = c.recv(16, socket.MSG_PEEK if peek else 0)
            print("DATA %d %.2f" % (len(d), time.monotonic() - t0), flush=True)
            if not d or peek:
                break
    except Alarm:
        print("SIGNAL %.2f" % (time.monotonic() - t0), flush=True)
    except OSError as e:
        print("ERR %d %.2f" % (e.errno, time.monotonic() - t0), flush=True)
    sys.exit(0)
if how == "block":
    c, _ = l.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 1, 0))
    while True:
        t0 = time.monotonic()
        try:
            d = c.recv(16)
            print("DATA %d %.2f" % (len(d), time.monotonic() - t0), flush=True)
            if not d:
                break
        except OSError as e:
            print("ERR %d %.2f" % (e.errno, time.monotonic() - t0), flush=True)
    sys.exit(0)
et = how == "et"
l.setblocking(False)
ep = select.epoll()
ep.register(l.fileno(), select.EPOLLIN)
conns, reads = {}, 0
while True:
    for fd, _ in ep.poll():
        if fd == l.fileno():
            c, _ = l.accept(); c.setblocking(False)
            conns[c.fileno()] = c
            ep.register(c.fileno(), select.EPOLLIN | (select.EPOLLET if et else 0))
            continue
        s = conns[fd]
        while True:
            reads += 1
            try:
                d = s.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                d = b""
            if not d or d.startswith(b"q"):
                ep.unregister(fd); del conns[fd]; s.close(); break
            if d == b"stats":
                r = resource.getrusage(resource.RUSAGE_SELF)
                s.send(b"CPU %.3f READS %d\n" % (r.ru_utime + r.ru_stime, reads))
            else:
                s.send(d)
            if not et:
                break
PY
}

# start_server lt|et|block|block-sig|block-sig-restart|peek-sig|peek-sig-restart: the shimmed server, heartbeats every 200 ms; $PORT.
start_server() {
	PORT=$(free_port)
	bg srv shim HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=2s "$PY" "$SRV" "$PORT" "$1"
	wait_line "$T/srv.out" LISTENING
}

# stats: one line "CPU s READS n" from the server, asked on a raw connection.
stats() {
	"$PY" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats")
print(s.makefile().readline().strip())' "$PORT"
}

# flooded_read MODE SECS: the shimmed server in MODE (a blocking read or
# peek) under a heartbeat flood of SECS seconds; the first line its read
# reported in $first, the seconds it took in $secs.
flooded_read() {
	start_server "$1"
	run "$FLOODER" flood 127.0.0.1 "$PORT" "$2"
	assert_status 0
	wait_line "$T/srv.out" '^(ERR|DATA|SIGNAL)' 5
	echo "# $(head -3 "$T/srv.out" | tr '\n' ' ')" >&3
	first=$(grep -m1 -E '^(ERR|DATA|SIGNAL)' "$T/srv.out")
	secs=${first##* }
}

@test "a heartbeat flood on one connection: a single-threaded epoll server still answers another client at once" {
	start_server lt
	bg echo "$FLOODER" echo 127.0.0.1 "$PORT" 4
	local echo=$BG_PID
	bg watch "$FLOODER" watch 127.0.0.1 "$PORT" 4
	local watch=$BG_PID
	sleep 0.5
	run "$FLOODER" flood 127.0.0.1 "$PORT" 3
	assert_status 0
	echo "# $output" >&3
	bg_wait "$echo" 10
	[ "$BG_STATUS" -eq 0 ] || fail "echo client: $(cat "$T/echo.out" "$T/echo.err")"
	bg_wait "$watch" 10
	[ "$BG_STATUS" -eq 0 ] || fail "watcher: $(cat "$T/watch.out" "$T/watch.err")"
	read -r _ n worst <"$T/echo.out"
	read -r _ beats gap <"$T/watch.out"
	echo "# bystander: $n round trips, the slowest $worst ms; heartbeats to another client: $beats, largest gap $gap ms (interval 200 ms)" >&3
	# Nominal: interval + 10 % (182-201 ms measured, under ASan too; 3100 ms
	# before the flood budget). The bound leaves room for timer slack on a
	# loaded 2-core VM.
	[ "$gap" -lt 300 ] || fail "largest heartbeat gap $gap ms at a 200 ms interval"
	# The issue's bound: under 50 ms (4-14 ms measured, under ASan too, 9-20 ms
	# with the machine at load 5; 3000 ms before the flood budget).
	awk -v w="$worst" 'BEGIN { exit !(w < 50) }' || fail "slowest round trip $worst ms"
	[ "$n" -ge 100 ] || fail "only $n round trips in 4 s"
}

@test "a heartbeat flood on a lingering close leaves the other connections' heartbeats on time" {
	start_server lt
	bg watch "$FLOODER" watch 127.0.0.1 "$PORT" 4
	local watch=$BG_PID
	sleep 0.5
	# The server closes the flooding connection on "q": the shim's
	# lingering close absorbs what the peer still sends.
	run "$FLOODER" flood 127.0.0.1 "$PORT" 3 close
	assert_status 0
	echo "# $output" >&3
	bg_wait "$watch" 10
	[ "$BG_STATUS" -eq 0 ] || fail "watcher: $(cat "$T/watch.out" "$T/watch.err")"
	read -r _ beats gap <"$T/watch.out"
	echo "# other connection: $beats heartbeats, largest gap $gap ms (interval 200 ms)" >&3
	# Nominal: interval + 10 % (183-205 ms measured, under ASan too; 3100 ms
	# before the per-tick budget of the lingering close). The bound leaves
	# room for timer slack on a loaded 2-core VM.
	[ "$gap" -lt 300 ] || fail "largest heartbeat gap $gap ms at a 200 ms interval"
	[ "$beats" -ge 12 ] || fail "only $beats heartbeats in 4 s"
}

@test "an edge-triggered reader that gave up on a flood still gets the data queued behind it" {
	start_server et
	run "$FLOODER" flood 127.0.0.1 "$PORT" 2 tail
	echo "# $output" >&3
	assert_status 0
	[[ $output == *"TAIL OK"* ]] || fail "no echo of the data behind the flood: $output"
}

@test "a blocking read flooded with heartbeats still ends at SO_RCVTIMEO" {
	flooded_read block 3.5
	# The first read: EAGAIN after 1 s (as the kernel's with nothing to
	# read), not when the flood stops.
	[[ $first == "ERR 11 "* ]] || fail "first read: $first"
	awk -v s="$secs" 'BEGIN { exit !(s >= 0.9 && s < 1.8) }' || fail "SO_RCVTIMEO of 1 s ended after $secs s"
}

@test "a blocking read flooded with heartbeats is still ended by a signal whose handler lacks SA_RESTART" {
	flooded_read block-sig 3.5
	# The handler runs (Python raises from it) when the signal comes, 1 s
	# in, not when the flood stops.
	[[ $first == "SIGNAL "* ]] || fail "the read ended with: $first"
	awk -v s="$secs" 'BEGIN { exit !(s >= 0.9 && s < 1.8) }' || fail "signal at 1 s seen after $secs s"
}

@test "a blocking read flooded with heartbeats goes on after a signal whose handler has SA_RESTART" {
	flooded_read block-sig-restart 2.5
	# As the kernel restarts such a read: no EINTR (Python would retry
	# after one anyway, but only once the shim returned), the read goes on
	# until the flood ends with the flooder's close.
	[[ $first == "DATA 0 "* || $first == "ERR 104 "* ]] || fail "the read ended with: $first"
	awk -v s="$secs" 'BEGIN { exit !(s >= 2.4) }' || fail "the read ended after $secs s: $first"
}

@test "a blocking recv(MSG_PEEK) flooded with heartbeats is still ended by a signal whose handler lacks SA_RESTART" {
	flooded_read peek-sig 3.5
	[[ $first == "SIGNAL "* ]] || fail "the peek ended with: $first"
	awk -v s="$secs" 'BEGIN { exit !(s >= 0.9 && s < 1.8) }' || fail "signal at 1 s seen after $secs s"
}

@test "a blocking recv(MSG_PEEK) flooded with heartbeats goes on after a signal whose handler has SA_RESTART" {
	flooded_read peek-sig-restart 2.5
	# As the kernel restarts such a call: it goes on until the flood ends
	# with the flooder's close (a reset: it left our heartbeats unread).
	[[ $first == "DATA 0 "* || $first == "ERR 104 "* ]] || fail "the peek ended with: $first"
	awk -v s="$secs" 'BEGIN { exit !(s >= 2.4) }' || fail "the peek ended after $secs s: $first"
}

@test "100 clients that send only the start of the magic cost no more than 100 idle ones" {
	start_server lt
	local s0 s1 s2
	s0=$(stats)
	run "$FLOODER" idle 127.0.0.1 "$PORT" 100 1
	assert_status 0
	s1=$(stats)
	run "$FLOODER" prefix 127.0.0.1 "$PORT" 100 1
	assert_status 0
	# The 2 bytes of a raw client are its data: delivered (and echoed)
	# once the wait for the rest of a hello (200 ms) is over.
	[[ $output == "HELD 100 ECHOED 100" ]] || fail "prefix clients: $output"
	s2=$(stats)
	local c0 c1 c2 r0 r1 r2
	read -r _ c0 _ r0 <<<"$s0"
	read -r _ c1 _ r1 <<<"$s1"
	read -r _ c2 _ r2 <<<"$s2"
	local idle_cpu prefix_cpu
	idle_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
	prefix_cpu=$(awk -v a="$c1" -v b="$c2" 'BEGIN { printf "%.3f", b - a }')
	echo "# 100 idle: ${idle_cpu} s CPU, $((r1 - r0)) reads; 100 prefix: ${prefix_cpu} s CPU, $((r2 - r1)) reads" >&3
	# Each prefix connection: its 2 bytes, its end of stream (and the
	# stats request's read): no read that finds nothing.
	[ $((r2 - r1)) -le 210 ] || fail "$((r2 - r1)) reads for 100 prefix connections"
	awk -v p="$prefix_cpu" -v i="$idle_cpu" 'BEGIN { exit !(p <= i + 0.05) }' ||
		fail "prefix connections cost ${prefix_cpu} s CPU, idle ones ${idle_cpu} s"
}

@test "a raw client whose data starts like the magic, sent after the first look, is answered after the 200 ms wait" {
	# Heartbeats every 5 s: the decision must not wait for the next
	# heartbeat tick of the connection.
	PORT=$(free_port)
	bg srv shim HBSHIM_INTERVAL=5s "$PY" "$SRV" "$PORT" lt
	wait_line "$T/srv.out" LISTENING
	run "$FLOODER" late 127.0.0.1 "$PORT"
	echo "# $output" >&3
	assert_status 0
	local ms=${output##* }
	[ "$ms" -ge 190 ] || fail "answered after $ms ms: before the wait for a hello ended"
	[ "$ms" -lt 1500 ] || fail "answered after $ms ms (the wait is 200 ms)"
}
