#!/usr/bin/env bats
# A write into a dead path fails within the timeout. A client writes 1 MB
# chunks to a reader in a private network namespace; once data flows, nft
# drops every packet of the connection both ways (no FIN, no RST, no ACK).
# The writer's blocked sendall must fail with ETIMEDOUT within T + I of the
# drop (+10 %), in keepalive mode and in framed mode (there also when the
# writer leaves bytes unread, which suspends the heartbeat check): the peer
# answered nothing at all for T while owed an answer. Peers that answer are never cut
# off, however slowly they read: a reader at 50 KB/s whose kernel drops what
# overflows its small buffer (and re-ACKs), checked here; the reader pausing
# 4 timeouts is slow_reader.bats'.

load helpers

setup() {
	hb_setup
	DP="$T/deadpath.py"
	cat >"$DP" <<'PY'
import errno, hashlib, os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "reader":
    # Read as fast as it comes until EOF, or (RATE given) TOTAL bytes at
    # RATE bytes/s in reads of 5000 with a small receive buffer, then
    # answer "k"; print the sha256 of what came.
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0
    total = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(1); print("LISTENING", flush=True)
    s, _ = ls.accept()
    h, n = hashlib.sha256(), 0
    if os.environ.get("GREET"):
        s.sendall(b"g" * 100)  # bytes the writer leaves unread
    try:
        if rate:
            # The window already offered outgrows the buffer shrunk under
            # it: the kernel drops what overflows and ACKs again.
            d = s.recv(5000)
            h.update(d); n += len(d)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        while not total or n < total:
            d = s.recv(5000 if rate else 1 << 20)
            if not d:
                break
            h.update(d); n += len(d)
            if rate:
                time.sleep(len(d) / rate)
        if total:
            s.sendall(b"k")
    except OSError as e:
        print("RECVERR", e.errno, n, flush=True)
        sys.exit(1)
    print("GOT", h.hexdigest(), n, flush=True)
elif mode == "writer":
    # 1 MB chunks with blocking sendall until an error; FLOWING after 8 MB.
    # ERR errno name wall-clock-time bytes-written.
    s = socket.create_connection(("127.0.0.1", port))
    chunk, n = os.urandom(1 << 20), 0
    try:
        while True:
            s.sendall(chunk)
            n += len(chunk)
            if n == 8 << 20:
                print("FLOWING", flush=True)
    except OSError as e:
        print("ERR %d %s %.3f %d" % (e.errno, errno.errorcode.get(e.errno, "?"), time.time(), n),
              flush=True)
else:
    # sender: N random bytes in 64 kB sendall calls (TCP_NODELAY: every
    # write leaves at once), then wait for the reader's "k"; SENT sha256 N
    # secs.
    n = int(sys.argv[3])
    data = os.urandom(n)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.time()
    try:
        for i in range(0, n, 65536):
            s.sendall(data[i:i + 65536])
        if s.recv(1) != b"k":
            print("NO-ANSWER", flush=True)
            sys.exit(1)
    except OSError as e:
        print("SENDERR", e.errno, "%.1f" % (time.time() - t0), flush=True)
        sys.exit(1)
    print("SENT", hashlib.sha256(data).hexdigest(), n, "%.1f" % (time.time() - t0), flush=True)
PY
}

# dead_path_write LO READER_ENV_WORD... -- WRITER_ENV_WORD...: the writer
# (I = 1 s, T = 3 s) must fail ETIMEDOUT LO .. T + I + 10 % s after the drop.
dead_path_write() {
	local lo=$1
	local -a renv=() wenv=()
	shift
	while [ "$1" != -- ]; do
		renv+=("$1")
		shift
	done
	shift
	wenv=("$@")
	netns_new
	local port=4300
	bg rd ip netns exec "$NS" env "${renv[@]}" "$PY" "$DP" reader "$port"
	wait_line "$T/rd.out" LISTENING
	bg wr ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s \
		HBSHIM_EVENTS="$T/wr.ev" "${wenv[@]}" "$PY" "$DP" writer "$port"
	local wr=$BG_PID
	wait_line "$T/wr.out" FLOWING
	local t0=$EPOCHREALTIME
	# One nft transaction: both directions go dark at once.
	ip netns exec "$NS" nft -f - <<-EOF
		table inet hbt {
			chain out {
				type filter hook output priority 0;
				tcp dport $port drop
				tcp sport $port drop
			}
		}
	EOF
	# nft itself took up to 1.9 s under load: the drop is somewhere in
	# [t0, t1]; "never early" is measured from t0, "in time" from t1.
	local t1=$EPOCHREALTIME
	# Before (7439fe4, keepalive mode): 14 s after the drop (4 T and the
	# kernel's next retransmission). Expected now: 3 .. 4 s.
	bg_wait "$wr" 12
	local l
	l=$(grep '^ERR' "$T/wr.out") ||
		fail "writer still blocked 12 s after the drop (status $BG_STATUS): $(cat "$T/wr.out" "$T/wr.err")"
	set -- $l
	[ "$2 $3" = "110 ETIMEDOUT" ] || fail "writer: $l (expected ERR 110 ETIMEDOUT)"
	local d0 d1
	d0=$(awk -v a="$4" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
	d1=$(awk -v a="$4" -v b="$t1" 'BEGIN { printf "%.2f", a - b }')
	echo "# writer failed $d1 .. $d0 s after the drop, $5 bytes written" >&3
	in_range "$d0" "$lo" 999 || fail "failed $d0 s after the drop began, before $lo s"
	in_range "$d1" 0 4.4 || fail "failed $d1 s after the drop was complete, expected at most 4.4 s"
	grep '"event":"dead"' "$T/wr.ev" | sed 's/^/# /' >&3
	grep -q '"event":"dead"' "$T/wr.ev" || fail "no dead event: $(cat "$T/wr.ev")"
}

@test "dead path: keepalive-mode writer fails ETIMEDOUT within T + I of the drop" {
	# Nothing acknowledged for T: never before T after the drop.
	dead_path_write 2.9 --
	grep -q '"event":"dead".*"reason":"write"' "$T/wr.ev" || fail "not our verdict: $(cat "$T/wr.ev")"
}

@test "dead path: framed writer fails ETIMEDOUT within T + I of the drop" {
	# The peer's heartbeats stop too: T after the last one, which may
	# have come up to I before the drop.
	dead_path_write 1.9 "${SHIM_ENV[@]}" HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s HBSHIM_ACCEPT=auto -- \
		"HBSHIM_FRAME=127.0.0.1:*"
	grep -q '"event":"framed"' "$T/wr.ev" || fail "not framed: $(cat "$T/wr.ev")"
}

# The writer leaves 100 bytes from the reader unread: with unread bytes
# queued the peer's heartbeat silence does not count (our full window may be
# what holds them back), so only the unanswered writes tell.
@test "dead path: framed writer with unread bytes queued fails ETIMEDOUT within T + I of the drop" {
	dead_path_write 2.9 "${SHIM_ENV[@]}" HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s HBSHIM_ACCEPT=auto \
		GREET=1 -- "HBSHIM_FRAME=127.0.0.1:*"
	grep -q '"event":"framed"' "$T/wr.ev" || fail "not framed: $(cat "$T/wr.ev")"
	grep -q '"event":"dead".*"reason":"write"' "$T/wr.ev" || fail "not our verdict: $(cat "$T/wr.ev")"
}

# A reader at 50 KB/s that shrinks its receive buffer to 4 kB under the
# window it already offered: its kernel drops what overflows and ACKs again,
# the window opens a little at a time, and window probes are answered at most
# every 500 ms (the rest silently skipped). Over 8 timeouts the sender often
# hears nothing for more than T, yet the peer answers: never cut off.
@test "dead path: a 50 KB/s reader whose kernel drops and re-ACKs is never cut off (8 T)" {
	netns_new
	local port=4301
	bg rd ip netns exec "$NS" "$PY" "$DP" reader "$port" 50000 250000
	local rd=$BG_PID
	wait_line "$T/rd.out" LISTENING
	run ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=200ms HBSHIM_TIMEOUT=1s \
		HBSHIM_EVENTS="$T/snd.ev" "$PY" "$DP" sender "$port" 250000
	assert_status 0
	local sent got
	sent=$(line_with SENT | cut -d' ' -f2,3)
	bg_wait "$rd" 10
	got=$(grep '^GOT' "$T/rd.out" | cut -d' ' -f2,3)
	[ "$got" = "$sent" ] || fail "reader got '$got', sender sent '$sent' ($output)"
	! grep -q '"event":"dead"' "$T/snd.ev" || fail "a live reader declared dead: $(cat "$T/snd.ev")"
	# The case is the one named: the reader's kernel dropped data (the
	# counters are the namespace's own).
	local drops
	drops=$(ip netns exec "$NS" nstat -az TcpExtTCPRcvQDrop TcpExtRcvPruned |
		awk '/^TcpExt/ { s += $2 } END { print s + 0 }')
	echo "# $(line_with SENT | cut -d' ' -f4) s; receiver dropped/pruned $drops times" >&3
	((drops > 0)) || fail "the reader's kernel dropped nothing: not the case under test"
}
