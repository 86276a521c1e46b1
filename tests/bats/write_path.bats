#!/usr/bin/env bats
# Framed mode carries the applications' bytes exactly: bulk transfers with
# random write and read sizes (blocking, and non-blocking with selectors),
# curl against python3's http.server, a half-closed connection answered
# slowly, and a reader that stops reading for a while (backpressure). Both
# ends are unmodified programs under the shim; heartbeats must flow
# (deliberate pauses) and no live peer may be declared dead.

load helpers

# 100 MB from the client, and a smaller reply stream so that the server's
# framed direction carries random-sized data frames too, within 20 s per
# test on a 2-core machine.
BULK_UP=$((100 << 20))
BULK_DOWN=$((16 << 20))

setup() {
	hb_setup
	BAPP="$BATS_FILE_TMPDIR/bulk.py"
	[ -f "$BAPP" ] || write_bulk_app "$BAPP"
}

# Value of a metric (no labels) in a Prometheus text file, or -1.
metric() {
	awk -v m="$2" '$1 == m { v = $2 } END { print (v == "" ? -1 : v) }' "$1" 2>/dev/null || echo -1
}

# No "dead" or "protocol_error" event in any of the given event files.
no_dead_events() {
	local f
	for f in "$@"; do
		if grep -E '"event":"(dead|protocol_error)"' "$f" 2>/dev/null; then
			fail "false detection in $f: $(grep -E '"event":"(dead|protocol_error)"' "$f")"
			return 1
		fi
	done
}

# Thread states of pid's descendants, for a failure message about a process
# that did not exit.
threads_of() {
	local c
	for c in $(ps -o pid= --ppid "$1"); do
		ps -L -o pid=,tid=,stat=,wchan:24=,time=,comm= -p "$c"
		threads_of "$c"
	done
}

# bulk MODE: the whole scenario; the two result lines in $SRV_LINE/$CLI_LINE.
bulk() {
	local mode=$1 port
	# Generating and hashing 100 MB in python takes 30 s and more on a
	# loaded 2-core machine before the first byte moves: the per-command
	# bound is raised for this scenario (a hang still ends the test).
	local HB_CMD_TIMEOUT=180
	local -a env=(HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=20s "HBSHIM_FRAME=127.0.0.1:*"
		"BULK_UP=$BULK_UP" "BULK_DOWN=$BULK_DOWN")
	port=$(free_port)
	bg srv shim "${env[@]}" HBSHIM_STATS="$T/srv.stats" HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" "$BAPP" server "$port" "$mode"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING 15
	run shim "${env[@]}" HBSHIM_STATS="$T/cli.stats" HBSHIM_EVENTS="$T/cli.ev" \
		"$PY" "$BAPP" client "$port" "$mode"
	CLI_LINE=$(line_with CLIENT) || fail "client (status $status): $output"
	assert_status 0
	bg_wait "$srv" 20
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")
$( ((BG_STATUS == 124)) && echo "still running 20 s after the client ended:" && threads_of "$srv")"
	SRV_LINE=$(grep '^SERVER' "$T/srv.out") || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
	echo "# $mode: $(kv "$CLI_LINE" secs) s for $((BULK_UP >> 20)) MB up, $((BULK_DOWN >> 20)) MB down" >&3

	# Byte-exact both ways: the sha256 each side computed over what it sent
	# equals the one the other side computed over what it received.
	local up down
	up=$(kv "$CLI_LINE" sent)
	[ "$(kv "$SRV_LINE" got)" = "$up" ] || fail "client->server differs: $CLI_LINE / $SRV_LINE"
	[ "$(kv "$CLI_LINE" server_got)" = "$up" ] || fail "server's digest reply: $CLI_LINE"
	[ "$(kv "$SRV_LINE" n)" = "$BULK_UP" ] || fail "server got $(kv "$SRV_LINE" n) bytes"
	down=$(kv "$SRV_LINE" sent)
	[ "$(kv "$CLI_LINE" got)" = "$down" ] || fail "server->client differs: $SRV_LINE / $CLI_LINE"
	[ "$(kv "$CLI_LINE" n)" = "$BULK_DOWN" ] || fail "client got $(kv "$CLI_LINE" n) bytes"

	# Both directions were framed, and heartbeats flowed during the pauses.
	grep -q '"event":"framed"' "$T/srv.ev" || fail "server saw no hello: $(cat "$T/srv.ev")"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "client saw no hello: $(cat "$T/cli.ev")"
	local s r
	s=$(metric "$T/srv.stats" hbshim_heartbeats_received_total)
	r=$(metric "$T/cli.stats" hbshim_heartbeats_received_total)
	echo "# heartbeats received: server $s, client $r" >&3
	((s > 0 || r > 0)) || fail "no heartbeat received on either side (server $s, client $r)"
	no_dead_events "$T/srv.ev" "$T/cli.ev"
}

@test "bulk, blocking sockets: 100 MB up + digest + 16 MB down, random sizes, sha256 exact" {
	bulk block
}

@test "bulk, non-blocking sockets + selectors on both sides, both directions at once, sha256 exact" {
	bulk nonblock
}

@test "curl <-> python3 http.server, both shimmed and framed: 5 MB byte-identical" {
	need_cmd curl
	local port
	mkdir "$T/www"
	head -c 5000000 /dev/urandom >"$T/www/blob"
	port=$(free_port)
	local -a env=(HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=20s "HBSHIM_FRAME=127.0.0.1:*")
	bg srv shim "${env[@]}" HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" -m http.server --bind 127.0.0.1 --directory "$T/www" "$port"
	wait_listen "$port"
	run shim "${env[@]}" HBSHIM_EVENTS="$T/cli.ev" \
		curl -sS --fail --noproxy '*' -o "$T/got" "http://127.0.0.1:$port/blob"
	assert_status 0
	cmp "$T/www/blob" "$T/got" || fail "curl's copy differs"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "curl saw no hello: $(cat "$T/cli.ev")"
	wait_line "$T/srv.ev" '"event":"framed"' 2
	no_dead_events "$T/srv.ev" "$T/cli.ev"
}

@test "half-close: request, SHUT_WR, then a 20 MB answer with pauses longer than the timeout" {
	local port
	local -a env=(HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=2s "HBSHIM_FRAME=127.0.0.1:*")
	port=$(free_port)
	bg srv shim "${env[@]}" HBSHIM_STATS="$T/srv.stats" HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" "$BAPP" hc-server "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "${env[@]}" HBSHIM_STATS="$T/cli.stats" HBSHIM_EVENTS="$T/cli.ev" \
		"$PY" "$BAPP" hc-client "$port"
	local cl
	cl=$(line_with HC-CLIENT) || fail "client (status $status): $output"
	assert_status 0
	bg_wait "$srv" 10
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	local sl
	sl=$(grep '^HC-SERVER' "$T/srv.out") || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
	[ "$(kv "$sl" req)" = "$(kv "$cl" req)" ] || fail "request differs: $cl / $sl"
	[ "$(kv "$sl" sent)" = "$(kv "$cl" got)" ] || fail "answer differs: $sl / $cl"
	[ "$(kv "$cl" n)" = $((20 << 20)) ] || fail "client got $(kv "$cl" n) bytes"
	no_dead_events "$T/srv.ev" "$T/cli.ev"
	# The server's open direction kept beating through the pauses, and the
	# half-closed client (FIN_WAIT2) kept listening for them.
	local r
	r=$(metric "$T/cli.stats" hbshim_heartbeats_received_total)
	echo "# answer took $(kv "$cl" secs) s; client received $r heartbeats" >&3
	((r > 0)) || fail "the client received no heartbeat during the answer's pauses"
}

# The write-progress deadline (the kernel's TCP_USER_TIMEOUT, 2 x timeout on
# framed connections: DESIGN.md) is what catches a peer that stopped
# reading; a pause shorter than it must cost nothing.
@test "backpressure: a server not reading for 1.5 x timeout while the client sends 20 MB is not declared dead" {
	local port
	local -a env=(HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s "HBSHIM_FRAME=127.0.0.1:*")
	port=$(free_port)
	bg srv shim "${env[@]}" HBSHIM_EVENTS="$T/srv.ev" "$PY" "$BAPP" lazy-server "$port" 1.5
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "${env[@]}" HBSHIM_EVENTS="$T/cli.ev" "$PY" "$BAPP" lazy-client "$port" $((20 << 20))
	bg_wait "$srv" 10
	local sl cl
	cl=$(line_with LAZY-CLIENT) || fail "client (status $status): $output"
	sl=$(grep '^LAZY-SERVER' "$T/srv.out") || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
	# The silence is the reader's own doing (its receive window is closed:
	# the sender's data and heartbeats wait in the sender's buffer), not a
	# dead peer.
	no_dead_events "$T/srv.ev" "$T/cli.ev"
	[ "$(kv "$sl" got)" = "$(kv "$cl" sent)" ] || fail "bytes differ: $cl / $sl"
	assert_status 0
}

write_bulk_app() {
	cat >"$1" <<'PY'
"""Bulk transfers for the framed-mode tests (plain sockets, no hbshim API).

  bulk.py server PORT MODE | bulk.py client PORT MODE
    random write and read sizes (1..200000 bytes) and four deliberate 50 ms
    pauses on each side, so that heartbeats must flow.
    MODE block:    the client sends BULK_UP bytes and shuts its write side;
                   the server reads to EOF, sends the sha256 (hex) of what it
                   got + "\n", then BULK_DOWN bytes of its own, and closes.
    MODE nonblock: non-blocking sockets (connect and accept too) and
                   selectors on both sides, both directions at once; the
                   server sends its digest line after its BULK_DOWN bytes,
                   once it has read EOF.
  bulk.py hc-server PORT | hc-client PORT
    half-close: a 100 kB request, SHUT_WR; the answer is 20 MB in 2 MB writes
    0.3 s apart, with a 1.5 s pause in the middle.
  bulk.py lazy-server PORT SECS | lazy-client PORT NBYTES
    the server does not read for SECS seconds, then reads to EOF and answers.
Every side prints one line of key=value words (sha256 of what it sent and
received)."""
import errno, hashlib, os, random, selectors, socket, sys, time

UP = int(os.environ.get("BULK_UP", 100 << 20))
DOWN = int(os.environ.get("BULK_DOWN", 100 << 20))
SEED = int(os.environ.get("BULK_SEED") or time.time_ns() % 1000000)
MAXW = 200000
PAUSES = 4
DIGEST_LEN = 65  # 64 hex digits + "\n"


def say(*w):
    print(*w, flush=True)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def listener(port):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(port)))
    l.listen(4)
    return l


def pause_points(rng, size):
    return sorted(rng.randrange(size) for _ in range(PAUSES)) if size else []


class Sender:
    def __init__(self, rng, size):
        self.data = memoryview(os.urandom(size))
        self.sha = sha(self.data)
        self.rng, self.size, self.off = rng, size, 0
        self.stops = pause_points(rng, size)

    def chunk(self):
        return self.data[self.off:self.off + self.rng.randint(1, MAXW)]

    def advance(self, n):
        self.off += n
        while self.stops and self.off >= self.stops[0]:
            self.stops.pop(0)
            time.sleep(0.05)

    def done(self):
        return self.off >= self.size


class Receiver:
    """Hashes what arrives; the last `hold` bytes are kept apart (a trailer)."""

    def __init__(self, rng, size, hold=0):
        self.h, self.n, self.rng = hashlib.sha256(), 0, rng
        self.buf = memoryview(bytearray(MAXW))
        self.stops = pause_points(rng, size)
        self.hold, self.tail = hold, bytearray()

    def recv(self, s):
        """One recv of a random size: None (would block), b"" (EOF) or bytes."""
        try:
            n = s.recv_into(self.buf, self.rng.randint(1, MAXW))
        except BlockingIOError:
            return None
        return bytes(self.buf[:n])

    def feed(self, d):
        if self.hold:
            self.tail += d
            cut = len(self.tail) - self.hold
            if cut <= 0:
                return
            d = bytes(self.tail[:cut])
            del self.tail[:cut]
        self.h.update(d)
        self.n += len(d)
        while self.stops and self.n >= self.stops[0]:
            self.stops.pop(0)
            time.sleep(0.05)


def pump(s, tx, rx, trailer=None):
    """Both directions of the non-blocking socket s until both ended.
    trailer() gives bytes to send after tx's data once rx saw EOF."""
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    out_done = in_done = False
    pending = b""
    while not (out_done and in_done):
        want = 0 if in_done else selectors.EVENT_READ
        if not out_done and (not tx.done() or trailer is None or in_done):
            want |= selectors.EVENT_WRITE
        sel.modify(s, want)
        ev = sel.select(10)
        if not ev:
            raise SystemExit("stalled 10 s: sent %d, got %d" % (tx.off, rx.n))
        mask = ev[0][1]
        if mask & selectors.EVENT_READ:
            d = rx.recv(s)
            if d == b"":
                in_done = True
            elif d:
                rx.feed(d)
        if mask & selectors.EVENT_WRITE:
            try:
                if not tx.done():
                    tx.advance(s.send(tx.chunk()))
                elif trailer is not None:
                    pending, trailer = trailer(), None
                if pending:
                    pending = pending[s.send(pending):]
            except BlockingIOError:
                pass
            if tx.done() and trailer is None and not pending:
                s.shutdown(socket.SHUT_WR)
                out_done = True
    sel.close()


def server(port, mode):
    rng = random.Random(SEED + 1)
    l = listener(port)
    tx = Sender(rng, DOWN)  # generated before LISTENING, not while the client waits
    rx = Receiver(rng, UP)
    say("LISTENING seed=%d" % SEED)
    if mode == "block":
        c, _ = l.accept()
        while True:
            d = rx.recv(c)
            if not d:
                break
            rx.feed(d)
        c.sendall(rx.h.hexdigest().encode() + b"\n")
        while not tx.done():
            k = tx.chunk()
            c.sendall(k)
            tx.advance(len(k))
    else:
        l.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(l, selectors.EVENT_READ)
        while not sel.select(300):  # the client hashes 100 MB first: slow on a loaded machine
            pass
        c, _ = l.accept()
        c.setblocking(False)
        pump(c, tx, rx, trailer=lambda: rx.h.hexdigest().encode() + b"\n")
    c.close()
    say("SERVER got=%s n=%d sent=%s sent_n=%d" % (rx.h.hexdigest(), rx.n, tx.sha, tx.off))


def client(port, mode):
    rng = random.Random(SEED)
    tx = Sender(rng, UP)
    t0 = time.monotonic()
    s = socket.socket()
    if mode == "block":
        rx = Receiver(rng, DOWN)
        s.connect(("127.0.0.1", int(port)))
        while not tx.done():
            k = tx.chunk()
            s.sendall(k)
            tx.advance(len(k))
        s.shutdown(socket.SHUT_WR)
        head = b""
        while len(head) < DIGEST_LEN:
            d = s.recv(DIGEST_LEN - len(head))
            if not d:
                break
            head += d
        while True:
            d = rx.recv(s)
            if not d:
                break
            rx.feed(d)
    else:
        rx = Receiver(rng, DOWN, hold=DIGEST_LEN)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", int(port)))
        pump(s, tx, rx)
        head = bytes(rx.tail)
    s.close()
    say("CLIENT sent=%s sent_n=%d server_got=%s got=%s n=%d secs=%.2f" % (
        tx.sha, tx.off, head.decode(errors="replace").strip() or "-", rx.h.hexdigest(),
        rx.n, time.monotonic() - t0))


def read_all(s):
    h, n = hashlib.sha256(), 0
    while True:
        d = s.recv(1 << 16)
        if not d:
            return h.hexdigest(), n
        h.update(d)
        n += len(d)


def hc_server(port):
    l = listener(port)
    answer = os.urandom(20 << 20)
    say("LISTENING")
    c, _ = l.accept()
    req, _ = read_all(c)
    t0 = time.monotonic()
    for i in range(10):
        if i:
            time.sleep(1.5 if i == 5 else 0.3)
        c.sendall(answer[i << 21:(i + 1) << 21])
    c.close()
    say("HC-SERVER req=%s sent=%s secs=%.2f" % (req, sha(answer), time.monotonic() - t0))


def hc_client(port):
    s = socket.socket()
    s.connect(("127.0.0.1", int(port)))
    req = os.urandom(100000)
    s.sendall(req)
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    try:
        got, n = read_all(s)
    except OSError as e:
        say("HC-CLIENT ERR %d %s after %.2f" % (e.errno, errno.errorcode.get(e.errno, "?"),
                                                time.monotonic() - t0))
        return 1
    say("HC-CLIENT req=%s got=%s n=%d secs=%.2f" % (sha(req), got, n, time.monotonic() - t0))


def lazy_server(port, secs):
    l = listener(port)
    say("LISTENING")
    c, _ = l.accept()
    time.sleep(float(secs))  # busy elsewhere: not reading
    try:
        got, n = read_all(c)
        c.sendall(b"ok")
    except OSError as e:
        say("LAZY-SERVER ERR %d %s" % (e.errno, errno.errorcode.get(e.errno, "?")))
        return 1
    c.close()
    say("LAZY-SERVER got=%s n=%d" % (got, n))


def lazy_client(port, nbytes):
    data = os.urandom(int(nbytes))
    s = socket.socket()
    s.connect(("127.0.0.1", int(port)))
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = s.recv(2)
    except OSError as e:
        say("LAZY-CLIENT ERR %d %s" % (e.errno, errno.errorcode.get(e.errno, "?")))
        return 1
    say("LAZY-CLIENT sent=%s reply=%s" % (sha(data), reply.decode() or "EOF"))


sys.exit({"server": server, "client": client, "hc-server": hc_server, "hc-client": hc_client,
          "lazy-server": lazy_server, "lazy-client": lazy_client}[sys.argv[1]](*sys.argv[2:]) or 0)
PY
}
