#!/usr/bin/env bats
# Liveness follows the local configuration (docs/PROTOCOL.md, Liveness):
#   - a peer is declared dead after our own HBSHIM_TIMEOUT of silence,
#     whatever interval its hello announces (a 1 h interval used to raise our
#     limit to 2 h; 0xffffffff to 49 days);
#   - hello values out of range are a protocol error;
#   - two shimmed ends with different settings never declare each other dead
#     (each heartbeats often enough for the other's timeout);
#   - a hello asking for a tiny timeout cannot make us send more than one
#     heartbeat per ~100 ms;
#   - a data frame after a half-close frame is a protocol error.
# The misbehaving peers are a raw Python client speaking the wire protocol
# by hand (rawpeer.py, written below), against a shimmed $APP server.

load helpers

setup() {
	hb_setup
	RAW="$BATS_FILE_TMPDIR/rawpeer.py"
	[ -f "$RAW" ] || write_rawpeer "$RAW"
}

write_rawpeer() {
	cat >"$1" <<'PY'
"""rawpeer.py PORT MODE ...: a hand-written hbshim peer (no shim loaded).

  hello IV TO FLAGS SECS [DELAY]
                           send a hello (interval IV ms, timeout TO ms, flags),
                           DELAY seconds after connecting (default 0), then
                           stay silent and report what arrives for at most
                           SECS seconds: the shim's hello, each heartbeat (time
                           since the shim's hello), data, notices, EOF (time
                           since our hello left).
  halfclose                hello, data "hi", wait for the echo, then a
                           half-close frame and a data frame "x" in one write;
                           report what arrives until EOF.
"""
import socket, struct, sys, time

def say(*w):
    print(*w, flush=True)

class Reader:
    def __init__(self, s):
        self.s, self.buf, self.eof = s, b"", False

    def need(self, n, deadline):
        while len(self.buf) < n and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                d = b""
                say("RESET")
            if not d:
                self.eof = True
            self.buf += d
        return len(self.buf) >= n

    def take(self, n):
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

def frames(r, deadline, t_hello, on_data=None):
    """Parse the shim's direction; yields nothing, reports lines."""
    if not r.need(14, deadline):
        say("NO HELLO", r.buf.hex(), "eof" if r.eof else "timeout")
        return
    h = r.take(14)
    t_peer = time.monotonic()
    say("HELLO", h.hex(), "flags=%d" % h[5], "interval=%d" % struct.unpack(">I", h[6:10]),
        "timeout=%d" % struct.unpack(">I", h[10:14]))
    while True:
        if not r.need(1, deadline):
            break
        t = r.buf[0]
        if t == 0:
            if not r.need(2, deadline):
                break
            c = r.buf[1]
            if c == 1:
                r.take(2)
                say("HB %.3f" % (time.monotonic() - t_peer))
            elif c == 2:
                r.take(2)
                say("HALFCLOSE")
            elif c == 3:
                if not r.need(7, deadline):
                    break
                n = r.take(7)
                say("NOTICE reason=%d silent=%d" % (n[2], struct.unpack(">I", n[3:7])[0]))
            else:
                say("BAD CONTROL", r.buf.hex())
                return
        elif t == 1:
            if not r.need(5, deadline):
                break
            ln = struct.unpack(">I", r.buf[1:5])[0]
            if not r.need(5 + ln, deadline):
                break
            d = r.take(5 + ln)[5:]
            say("DATA", d.hex())
            if on_data:
                on_data(d)
        else:
            say("BAD TYPE", r.buf.hex())
            return
    if r.eof:
        say("EOF %.3f" % (time.monotonic() - t_hello), "rest=" + r.buf.hex())
    else:
        say("TIMEOUT rest=" + r.buf.hex())

def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    s = socket.create_connection(("127.0.0.1", port))
    r = Reader(s)
    if mode == "hello":
        iv, to, fl, secs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
        if len(sys.argv) > 7:
            time.sleep(float(sys.argv[7]))
        s.sendall(b"\xe5HBS\x01" + bytes([fl]) + struct.pack(">II", iv, to))
        t0 = time.monotonic()
        say("SENT HELLO")
        frames(r, t0 + secs, t0)
    elif mode == "halfclose":
        s.sendall(b"\xe5HBS\x01\x01" + struct.pack(">II", 5000, 15000) + b"\x01\x00\x00\x00\x02hi")
        t0 = time.monotonic()

        def on_data(d):
            if d == b"hi":
                s.sendall(bytes.fromhex("00 02 01 00 00 00 01 78"))
                say("SENT HALFCLOSE+DATA")
        frames(r, t0 + 10, t0, on_data)

main()
PY
}

# events_of FILE EVENT: one line per EVENT in the JSON lines file, the event's
# extra fields as key=value words.
events_of() {
	"$PY" - "$1" "$2" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.strip():
        continue
    e = json.loads(l)
    if e["event"] == sys.argv[2]:
        print(" ".join("%s=%s" % (k, v) for k, v in sorted(e.items())
                       if k not in ("time", "pid", "event")))
PY
}

# A shimmed $APP server on a free port; its events in $T/srv.ev.
start_server() {
	local what=$1
	shift
	PORT=$(free_port)
	bg srv env "${SHIM_ENV[@]}" HBSHIM_EVENTS="$T/srv.ev" "$@" "$PY" "$APP" "$what" 127.0.0.1 "$PORT"
	SRV=$BG_PID
	wait_line "$T/srv.out" LISTENING
}

@test "liveness: a hello announcing a 1 h interval does not stretch HBSHIM_TIMEOUT=1s (dead within 1.1 s)" {
	start_server serve HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=1s
	# A paced hello and an old-style (unpaced) one: the limit is ours either way.
	local fl
	for fl in 1 0; do
		: >"$T/srv.ev"
		run "$PY" "$RAW" "$PORT" hello 3600000 86400000 "$fl" 4
		assert_status 0
		echo "$output"
		local eof notice
		eof=$(line_with EOF) || fail "flags $fl: no EOF within 4 s (the peer was never declared dead): $output"
		notice=$(line_with NOTICE) || fail "flags $fl: no notice before the EOF: $output"
		[[ $notice == "NOTICE reason=1 silent="* ]] || fail "flags $fl: $notice (want reason 1, heartbeat)"
		local silent=${notice##*silent=} t
		# The silence the shim measured when it declared the peer dead.
		in_range "$(awk -v s="$silent" 'BEGIN { print s / 1000 }')" 1.0 1.1 ||
			fail "flags $fl: declared dead after $silent ms of silence, want 1000..1100"
		t=$(set -- $eof; echo "$2")
		echo "flags $fl: dead after $silent ms of silence, EOF at the peer after $t s" >&3
		in_range "$t" 0.95 1.1 || fail "flags $fl: EOF after $t s, want 0.95..1.1 s (the peer starts its clock after sending its hello)"
		# Our own heartbeats kept their 300 ms rhythm meanwhile (none to 1 h).
		[ "$(grep -c '^HB ' <<<"$output")" -ge 2 ] || fail "flags $fl: too few heartbeats from the shim: $output"
		wait_line "$T/srv.ev" '"event":"dead"' 3
		run events_of "$T/srv.ev" dead
		[[ $output == *"reason=heartbeat"* ]] || fail "flags $fl: dead event: $output"
	done
	# The unpaced peer (flags 0) announcing 1 h is warned about.
	grep -q "an hbshim that does not pace" "$T/srv.err" || fail "no warning: $(cat "$T/srv.err")"
}

@test "liveness: hello values out of range (interval 0xffffffff, interval 0, timeout 0) are a protocol error" {
	start_server serve HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=1s
	local c
	for c in "4294967295 15000" "0 15000" "5000 0" "5000 86400001"; do
		: >"$T/srv.ev"
		run "$PY" "$RAW" "$PORT" hello $c 0 3
		assert_status 0
		echo "$output"
		# Failed at once: no hello from the shim, the connection shut down.
		[[ $output == *"NO HELLO"*eof* ]] || fail "hello $c: $output"
		wait_line "$T/srv.ev" '"event":"protocol_error"' 3
		run events_of "$T/srv.ev" protocol_error
		[[ $output == *"reason=hello"* ]] || fail "hello $c: event $output"
		! grep -q '"event":"framed"' "$T/srv.ev" || fail "hello $c was accepted: $(cat "$T/srv.ev")"
	done
}

@test "liveness: a hello asking for a 1 ms timeout gets at most one heartbeat per ~100 ms" {
	# Our own interval 5 s; the peer asks for 1 ms: the floor applies.
	start_server serve HBSHIM_INTERVAL=5s HBSHIM_TIMEOUT=15s
	run "$PY" "$RAW" "$PORT" hello 1 1 1 2.5
	assert_status 0
	local n
	# Heartbeats within the 2 s after the shim's hello.
	n=$(awk '$1 == "HB" && $2 <= 2.0 { n++ } END { print n + 0 }' <<<"$output")
	echo "heartbeats in 2 s: $n" >&3
	# At most one per 100 ms less the 10 % jitter and 5 ms of slack.
	((n <= 24)) || fail "$n heartbeats in 2 s, the floor allows 24: $output"
	# And the peer's request was honoured down to the floor (at 5 s, none).
	((n >= 10)) || fail "only $n heartbeats in 2 s, want about 20: $output"
	# Nothing but heartbeats.
	! grep -Eq '^(DATA|NOTICE|BAD|EOF)' <<<"$output" || fail "$output"
	# The shim says it cannot meet the peer's 1 ms.
	grep -q "the peer's timeout is 1 ms, we heartbeat every 100 ms" "$T/srv.err" ||
		fail "no warning: $(cat "$T/srv.err")"
}

@test "liveness: a hello read by the application 0.5 s after accept is paced for at once (no gap of the peer's 600 ms timeout)" {
	# The server's own interval is 5 s; the application is blocked in recv
	# and reads the hello itself, long after the accept-time window.
	start_server echo-server HBSHIM_INTERVAL=5s HBSHIM_TIMEOUT=15s
	run "$PY" "$RAW" "$PORT" hello 5000 600 1 2.5 0.5
	assert_status 0
	echo "$output"
	[[ $output == *"HELLO e5484253"* ]] || fail "no hello from the server: $output"
	# Heartbeats every 200 ms (600 / 3) from the first: no silence of 600 ms.
	run awk -v slack="$HB_TIME_SLACK" '$1 == "HB" { if ($2 - last > gap) gap = $2 - last; last = $2; n++ }
		END { printf "%d %.3f %.3f\n", n, gap, last; exit !(n >= 5 && gap < 0.6 && last > 2.0) }' <<<"$output"
	echo "heartbeats, largest gap, last: $output" >&3
	assert_status 0
}

# exchange: the stricter side (200 ms / 600 ms) and the looser (5 s / 15 s),
# both shimmed; idle 1.5 s (2.5 x the strict timeout) between exchanges.
mixed() {
	local srv_iv=$1 srv_to=$2 cli_iv=$3 cli_to=$4
	start_server echo-server HBSHIM_INTERVAL="$srv_iv" HBSHIM_TIMEOUT="$srv_to"
	run shim HBSHIM_INTERVAL="$cli_iv" HBSHIM_TIMEOUT="$cli_to" "HBSHIM_FRAME=127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/cli.ev" "$PY" "$APP" client-chatty 127.0.0.1 "$PORT" 3.2 1.5
	echo "$output"
	assert_status 0
	[ "$output" = "CHATTY OK" ] || fail "client: $output; server: $(cat "$T/srv.out" "$T/srv.err")"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "client never framed: $(cat "$T/cli.ev")"
	grep -q '"event":"framed"' "$T/srv.ev" || fail "server never framed: $(cat "$T/srv.ev")"
	! grep -q '"event":"dead"' "$T/cli.ev" "$T/srv.ev" || fail "a live peer declared dead: $(cat "$T/cli.ev" "$T/srv.ev")"
	! grep -qi "warn" "$T/srv.err" || fail "server warned: $(cat "$T/srv.err")"
	bg_wait "$SRV" 5
	[ "$(cat "$T/srv.out")" = "LISTENING $PORT
ECHOED 3" ] || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
}

@test "liveness: strict client (200ms/600ms) and loose server (5s/15s) idle 1.5 s twice: never declared dead" {
	mixed 5s 15s 200ms 600ms
}

@test "liveness: loose client (5s/15s) and strict server (200ms/600ms) idle 1.5 s twice: never declared dead" {
	mixed 200ms 600ms 5s 15s
}

@test "liveness: a data frame after a half-close frame is a protocol error" {
	start_server echo-server HBSHIM_INTERVAL=300ms HBSHIM_TIMEOUT=3s
	run "$PY" "$RAW" "$PORT" halfclose
	assert_status 0
	echo "$output"
	[[ $output == *"DATA 6869"*"SENT HALFCLOSE+DATA"* ]] || fail "no echo of hi: $output"
	# The x is never echoed; the server fails the connection and says why.
	! grep -q '^DATA 78' <<<"$output" || fail "data after half-close was delivered: $output"
	[[ $output == *"NOTICE reason=4 silent=0"*EOF* ]] || fail "no protocol-error notice: $output"
	wait_line "$T/srv.ev" '"event":"protocol_error"' 3
	run events_of "$T/srv.ev" protocol_error
	[[ $output == *"reason=frame"* ]] || fail "event: $output"
	# The application's read failed with EPROTO, not a plain end of stream.
	bg_wait "$SRV" 5
	grep -q "Errno 71" "$T/srv.err" || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
}

@test "liveness: shutdown(SHUT_WR) racing another thread's writes never puts data behind the half-close (200 connections)" {
	# The reader counts bytes to EOF on each connection; a data frame that
	# slipped in between our half-close frame and our FIN would make it
	# fail with EPROTO.
	PORT=$(free_port)
	bg srv env "${SHIM_ENV[@]}" HBSHIM_EVENTS="$T/srv.ev" "$PY" "$APP" count-reader 127.0.0.1 "$PORT" 200 0 64
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "HBSHIM_FRAME=127.0.0.1:$PORT" HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=20s "$PY" -c 'import socket, sys, threading, time
for i in range(200):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    stop = False
    def writer():
        try:
            while not stop:
                s.send(b"x" * 100)
        except OSError:
            pass
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.002)
    s.shutdown(socket.SHUT_WR)
    stop = True
    t.join()
    s.close()
print("DONE")' "$PORT"
	assert_status 0
	bg_wait "$srv" 10
	[ "$(grep -c '^EOF ' "$T/srv.out")" -eq 200 ] || fail "reader: $(grep -v '^EOF ' "$T/srv.out")"
	! grep -q '"event":"protocol_error"' "$T/srv.ev" || fail "$(grep protocol_error "$T/srv.ev")"
}
