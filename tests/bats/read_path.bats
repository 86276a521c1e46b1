#!/usr/bin/env bats
# The framed receive path: what the application reads from a framed
# connection is exactly what the peer wrote, whatever the call (recv,
# recvmsg and recv_into with small iovecs, MSG_TRUNC, MSG_PEEK, MSG_WAITALL),
# the buffer sizes, the heartbeats in between, a peer that resets right
# after sending, or an application that reads nothing for a while (the
# receive queue holds at most two heartbeats). Also a 20 MB stream whose
# sender ends with shutdown(SHUT_RDWR).

load helpers

@test "socat -u -> socat, both shimmed and framed at 10 ms heartbeats: 20 MB byte-exact (the sender ends with shutdown(SHUT_RDWR))" {
	# Regression: socat shuts its socket down for reading and writing at
	# the end; a heartbeat from the peer arriving after that made the
	# kernel reset the connection and throw away the last unacknowledged
	# 60 KB (3 of 3 runs before the fix).
	need_cmd socat
	local port i
	head -c 20000000 /dev/urandom >"$T/in"
	for i in 1 2 3; do
		port=$(free_port)
		rm -f "$T/got"
		bg srv shim HBSHIM_INTERVAL=10ms HBSHIM_EVENTS="$T/srv.ev" \
			socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "CREATE:$T/got"
		local srv=$BG_PID
		wait_listen "$port"
		run shim HBSHIM_INTERVAL=10ms "HBSHIM_FRAME=127.0.0.1:*" HBSHIM_EVENTS="$T/cli.ev" \
			socat -u "OPEN:$T/in" "TCP:127.0.0.1:$port"
		assert_status 0
		bg_wait "$srv" 20
		[ "$BG_STATUS" -eq 0 ] || fail "socat server status $BG_STATUS: $(cat "$T/srv.err")"
		same_file "$T/in" "$T/got"
	done
	grep -q '"event":"framed"' "$T/srv.ev" || fail "not framed: $(cat "$T/srv.ev")"
}

@test "framed sendmsg/recvmsg/recv_into with random small iovecs and buffers: bytes exact both ways" {
	local port app="$T/vec.py"
	cat >"$app" <<'PY'
import hashlib, random, socket, sys
mode, port = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
def send_all_vec(s, data):
    i = 0
    while i < len(data):
        n = min(len(data) - i, rnd.randint(1, 700))
        chunk = data[i:i + n]
        cuts = sorted(rnd.sample(range(1, n), min(n - 1, rnd.randint(0, 4)))) if n > 1 else []
        parts, p = [], 0
        for c in cuts + [n]:
            parts.append(chunk[p:c]); p = c
        i += s.sendmsg(parts)
def recv_some(s, k):
    how = rnd.randint(0, 2)
    if how == 0:
        return s.recv(k)
    if how == 1:
        b = bytearray(k); n = s.recv_into(b, k); return bytes(b[:n])
    sizes = [rnd.randint(1, max(1, k // 2)) for _ in range(rnd.randint(1, 3))]
    bufs = [bytearray(x) for x in sizes]
    n = s.recvmsg_into(bufs)[0]
    out = b"".join(bytes(b) for b in bufs)
    return out[:n]
def recv_to_eof(s, each=None):
    got = bytearray()
    while True:
        d = recv_some(s, rnd.randint(1, 300))
        if not d:
            return got
        got += d
        if each:
            each(d)
if mode == "server":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(1); print("LISTENING", flush=True)
    s, _ = ls.accept()
    got = recv_to_eof(s, lambda d: send_all_vec(s, d))
    print("GOT", hashlib.sha256(got).hexdigest(), len(got), flush=True)
    s.close()
else:
    data = random.Random(11).randbytes(150000)
    s = socket.create_connection(("127.0.0.1", port))
    send_all_vec(s, data)
    s.shutdown(socket.SHUT_WR)
    back = recv_to_eof(s)
    print("SENT", hashlib.sha256(data).hexdigest(), len(data), flush=True)
    print("BACK", hashlib.sha256(back).hexdigest(), len(back), flush=True)
PY
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=20ms HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/srv.ev" "$PY" "$app" server "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=20ms "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_EVENTS="$T/cli.ev" \
		"$PY" "$app" client "$port"
	assert_status 0
	bg_wait "$srv" 30
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	local sent back got
	sent=$(line_with SENT | cut -d' ' -f2-)
	back=$(line_with BACK | cut -d' ' -f2-)
	output=$(cat "$T/srv.out")
	got=$(line_with GOT | cut -d' ' -f2-)
	[[ $sent == *" 150000" ]] || fail "client: '$sent'"
	[ "$sent" = "$got" ] || fail "server got '$got', client sent '$sent'"
	[ "$sent" = "$back" ] || fail "client got back '$back', sent '$sent'"
	grep -q '"event":"framed"' "$T/cli.ev" || fail "not framed: $(cat "$T/cli.ev")"
}

@test "framed bulk reads with room for many frames: runs of equal sizes, size changes, 1 ms heartbeats between: bytes exact" {
	local port app="$T/bulk.py"
	cat >"$app" <<'PY'
import hashlib, random, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "server":
    # Reads with big and odd buffers: several predicted frames per read,
    # mispredicted ones whenever the size changes or a heartbeat is between.
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(1); print("LISTENING", flush=True)
    s, _ = ls.accept()
    rnd = random.Random(5)
    h, n, buf = hashlib.sha256(), 0, bytearray(1 << 20)
    while True:
        k = rnd.choice([1 << 20, 262144, 100000, 65541, 7, 4096])
        r = s.recv_into(memoryview(buf)[:k])
        if not r:
            break
        h.update(memoryview(buf)[:r]); n += r
        if rnd.random() < 0.02:
            time.sleep(0.003)   # let frames and heartbeats queue up
    print("GOT", h.hexdigest(), n, flush=True)
else:
    rnd = random.Random(9)
    s = socket.create_connection(("127.0.0.1", port))
    h, n = hashlib.sha256(), 0
    for run in range(300):
        size = rnd.choice([1024, 1500, 4096, 4097, 16384, 65536, 70000, 1 << 20])
        for _ in range(rnd.randint(1, 12)):
            d = rnd.randbytes(size)
            s.sendall(d); h.update(d); n += size
        if rnd.random() < 0.2:
            time.sleep(0.004)   # heartbeats go out meanwhile
    s.shutdown(socket.SHUT_WR)
    print("SENT", h.hexdigest(), n, flush=True)
    s.recv(1)
PY
	port=$(free_port)
	bg srv shim HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=2s HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/srv.ev" \
		"$PY" "$app" server "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim HBSHIM_INTERVAL=1ms HBSHIM_TIMEOUT=2s "HBSHIM_FRAME=127.0.0.1:$port" \
		HBSHIM_STATS="$T/cli.stats" "$PY" "$app" client "$port"
	assert_status 0
	bg_wait "$srv" 60
	[ "$BG_STATUS" -eq 0 ] || fail "server status $BG_STATUS: $(cat "$T/srv.out" "$T/srv.err")"
	local sent got
	sent=$(line_with SENT | cut -d' ' -f2-)
	output=$(cat "$T/srv.out")
	got=$(line_with GOT | cut -d' ' -f2-)
	[ -n "$sent" ] && [ "$sent" = "$got" ] || fail "server got '$got', client sent '$sent'"
	grep -q '"event":"framed"' "$T/srv.ev" || fail "not framed: $(cat "$T/srv.ev")"
}

@test "framed: a peer that resets right after sending: the application's next read fails ECONNRESET, not a clean EOF" {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=1s "$PY" -c 'import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
s, _ = l.accept()
print("recv1", s.recv(100), flush=True)
time.sleep(1.0)   # the shim sends its hello and heartbeats meanwhile
try:
    print("recv2", s.recv(100), flush=True)
except OSError as e:
    print("recv2 error", e.errno, flush=True)' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=1s "$PY" -c 'import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"data")
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()' "$port"
	assert_status 0
	bg_wait "$srv" 10
	output=$(cat "$T/srv.out")
	[ "$(line_with recv1)" = "recv1 b'data'" ] || fail "server: $output"
	[ "$(line_with recv2)" = "recv2 error 104" ] || fail "server: $output (expected ECONNRESET, 104)"
}

@test "framed at 1 s: an application that reads nothing for 5 s: the receive queue never holds more than two heartbeats, then its data arrives exact" {
	# The background thread drains heartbeats the application does not
	# read; at intervals of 1 s or more it lets one wait for the next and
	# takes both with one read. The queue (ss's Recv-Q) must stay below
	# the low-water mark of 6, or an epoll loop would wake for nothing.
	need_cmd ss
	local port q max=0 i
	port=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=1s HBSHIM_STATS="$T/srv.%p.prom" "$PY" -c 'import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
s, _ = l.accept(); print("ACCEPTED", flush=True)
time.sleep(5.5)
d = b""
while len(d) < 100000:
    x = s.recv(65536)
    if not x: break
    d += x
print("got", len(d), d == bytes(range(256)) * 390 + bytes(range(160)), flush=True)
s.sendall(b"done"); s.close()' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	bg cli shim HBSHIM_INTERVAL=1s "HBSHIM_FRAME=127.0.0.1:$port" "$PY" -c 'import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); time.sleep(5)
s.sendall(bytes(range(256)) * 390 + bytes(range(160)))
print("answer", s.recv(10), flush=True)' "$port"
	local cli=$BG_PID
	wait_line "$T/srv.out" ACCEPTED
	# Idle until the client sends, 5 s after connecting: look for 3.5 s.
	local end=$((${EPOCHREALTIME/./} + 3500000)) n=0
	while [ "${EPOCHREALTIME/./}" -lt "$end" ]; do
		q=$(ss -Htn state established "( sport = :$port )" | awk '{print $1}' | head -1)
		[ "${q:-0}" -gt "$max" ] && max=$q
		n=$((n + 1))
		sleep 0.1
	done
	bg_wait "$cli" 15
	bg_wait "$srv" 15
	output=$(cat "$T/srv.out")
	[ "$(line_with got)" = "got 100000 True" ] || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
	output=$(cat "$T/cli.out")
	[ "$(line_with answer)" = "answer b'done'" ] || fail "client: $(cat "$T/cli.out" "$T/cli.err")"
	echo "# largest receive queue while idle: $max bytes ($n looks)" >&3
	[ "$max" -le 4 ] || fail "the idle receive queue held $max bytes"
	# Heartbeats did arrive meanwhile (about 4 in 5 s).
	local hb
	hb=$(cat "$T"/srv.*.prom | awk '/^hbshim_heartbeats_received_total/ { s += $2 } END { print s + 0 }')
	[ "$hb" -ge 3 ] || fail "the server received $hb heartbeats"
}

@test "framed: recv with MSG_TRUNC (lighttpd's drain) and MSG_PEEK|MSG_TRUNC count the application's bytes as the kernel does, then the stream goes on exact" {
	# The kernel drops (or, with MSG_PEEK, counts) the bytes without
	# copying them; passed down, the flag left the decoder parsing header
	# bytes that were never written: EPROTO and a dead connection.
	local port
	port=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=50ms HBSHIM_EVENTS="$T/srv.ev" "$PY" -c 'import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
c, _ = l.accept()
print("first", c.recv(5), flush=True)
time.sleep(0.5)  # "tail" and heartbeats arrived meanwhile
print("peek", len(c.recv(100, socket.MSG_PEEK | socket.MSG_TRUNC)), flush=True)
print("trunc", len(c.recv(100, socket.MSG_TRUNC | socket.MSG_DONTWAIT)), flush=True)
print("big", len(c.recv(10000, socket.MSG_TRUNC | socket.MSG_WAITALL)), flush=True)
print("next", c.recv(100), flush=True)' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_INTERVAL=50ms "$PY" -c 'import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello"); time.sleep(0.2); c.sendall(b"tail"); time.sleep(0.6)
for i in range(10): c.sendall(bytes(1000)); time.sleep(0.01)
time.sleep(0.3); c.sendall(b"more"); time.sleep(0.3); c.close()' "$port"
	assert_status 0
	bg_wait "$srv" 10
	output=$(cat "$T/srv.out")
	[ "$(line_with first)" = "first b'hello'" ] || fail "server: $output $(cat "$T/srv.err")"
	[ "$(line_with peek)" = "peek 4" ] || fail "server: $output"
	[ "$(line_with trunc)" = "trunc 4" ] || fail "server: $output"
	[ "$(line_with big)" = "big 10000" ] || fail "server: $output"
	[ "$(line_with next)" = "next b'more'" ] || fail "server: $output"
	! grep -q protocol_error "$T/srv.ev" || fail "events: $(cat "$T/srv.ev")"
}

@test "framed: a blocking recv with MSG_WAITALL returns all it asked for, across writes that arrive 10 ms apart, heartbeats between" {
	local port
	port=$(free_port)
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_INTERVAL=5ms "$PY" -c 'import socket, sys, hashlib
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(5); print("LISTENING", flush=True)
c, _ = l.accept()
for i in range(3):
    d = c.recv(10000, socket.MSG_WAITALL)
    print("got", len(d), hashlib.sha256(d).hexdigest()[:16], flush=True)
print("eof", c.recv(10000, socket.MSG_WAITALL), flush=True)' "$port"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "HBSHIM_FRAME=127.0.0.1:$port" HBSHIM_INTERVAL=5ms "$PY" -c 'import socket, sys, time, hashlib
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
blob = bytes(range(256)) * 40
for i in range(3):
    chunk = blob[:10000]
    for k in range(0, 10000, 700):
        c.sendall(chunk[k:k + 700]); time.sleep(0.01)
print(hashlib.sha256(blob[:10000]).hexdigest()[:16]); c.close()' "$port"
	assert_status 0
	local want=$output
	bg_wait "$srv" 10
	output=$(cat "$T/srv.out")
	[ "$(grep -c "^got 10000 $want\$" "$T/srv.out")" -eq 3 ] || fail "server: $output (want $want) $(cat "$T/srv.err")"
	[ "$(line_with eof)" = "eof b''" ] || fail "server: $output"
}
