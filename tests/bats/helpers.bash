# helpers.bash - common setup for the hbshim integration tests (bats).
#
# Every .bats file does `load helpers`. What this gives a test:
#   $HB_LIB $HB_NOOP $HB_WRAP   the build products (absolute paths)
#   $PY                         Debian's /usr/bin/python3 (never pyenv's)
#   $APP                        a small plain-socket Python program (written
#                               below) used as the "unmodified application"
#   $T                          a fresh temp dir for this test
#   shim CMD...                 run CMD with the library preloaded (sanitizer
#                               runtime first when HB_SAN_PRELOAD is set) and
#                               a timeout; NAME=VALUE words may precede CMD
#   plain CMD...                the same without the library
#   stderr_to FILE CMD...       CMD with its stderr kept apart in FILE
#   bg NAME CMD...              start CMD in the background, stdout/stderr in
#                               $T/NAME.out / $T/NAME.err; pid in $BG_PID;
#                               killed in teardown
#   netns_new                   create a private network namespace with lo up,
#                               name in $NS; deleted in teardown
#   need_root / need_cmd CMD... skip with a reason
#   free_port                   an unused TCP port on 127.0.0.1
#   wait_listen PORT [NS]       wait until something listens on PORT
#   wait_line FILE REGEX [SECS] wait until a line of FILE matches REGEX
#
# Cleanup runs in teardown even when a test fails or times out.

HB_ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
HB_LIB="${HB_LIB:-$HB_ROOT/build/libhbshim.so}"
HB_NOOP="$HB_ROOT/build/libhbshim-noop.so"
HB_WRAP="$HB_ROOT/build/hbshim"
PY=/usr/bin/python3
# Upper bound for any single command a test runs (seconds).
HB_CMD_TIMEOUT=${HB_CMD_TIMEOUT:-30}

hb_setup() {
	T="$BATS_TEST_TMPDIR"
	: >"$T/.pids"
	: >"$T/.netns"
	# A clean, predictable environment: nothing inherited from the caller.
	local v
	for v in $(compgen -e); do
		case $v in HBSHIM_* | LD_PRELOAD | ASAN_OPTIONS | TSAN_OPTIONS | UBSAN_OPTIONS | \
			http_proxy | https_proxy | all_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | \
			ALL_PROXY | NO_PROXY) unset "$v" ;;
		esac
	done
	[ -x "$PY" ] || skip "$PY not installed (Debian package python3)"
	[ -f "$HB_LIB" ] || {
		echo "$HB_LIB is missing: run make" >&2
		return 1
	}

	# What "preloaded" means for this run. Under SAN=address/thread the
	# sanitizer runtime must come first in LD_PRELOAD.
	SHIM_PRELOAD="$HB_LIB"
	SAN_ENV=()
	if [ -n "${HB_SAN_PRELOAD:-}" ]; then
		SHIM_PRELOAD="$HB_SAN_PRELOAD $HB_LIB"
		SAN_ENV=(ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0
			TSAN_OPTIONS="${HB_TSAN_OPTIONS:-halt_on_error=0}")
	fi
	SHIM_ENV=(LD_PRELOAD="$SHIM_PRELOAD" "${SAN_ENV[@]}")

	APP="$BATS_FILE_TMPDIR/app.py"
	[ -f "$APP" ] || hb_write_app "$APP"
}

hb_teardown() {
	local pid ns
	# Processes first (TERM, then KILL what is left), then namespaces
	# (killing whatever still runs inside them).
	if [ -s "$T/.pids" ]; then
		while read -r pid; do
			kill -TERM "$pid" 2>/dev/null || true
		done <"$T/.pids"
		sleep 0.1
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done <"$T/.pids"
	fi
	if [ -s "$T/.netns" ]; then
		while read -r ns; do
			for pid in $(ip netns pids "$ns" 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null || true
			done
			ip netns del "$ns" 2>/dev/null || true
		done <"$T/.netns"
	fi
}

setup() { hb_setup; }
teardown() { hb_teardown; }

# ------------------------------------------------------------------ running

shim() { timeout --kill-after=2 "$HB_CMD_TIMEOUT" env "${SHIM_ENV[@]}" "$@"; }
plain() { timeout --kill-after=2 "$HB_CMD_TIMEOUT" env "$@"; }

# stderr_to FILE CMD...: CMD with stderr in FILE, for `run stderr_to F shim ...`
# (run merges stderr into $output otherwise).
stderr_to() {
	local f=$1
	shift
	"$@" 2>"$f"
}

# The environment prefix for commands started by other means (ip netns exec).
# Usage: ip netns exec "$NS" env "${SHIM_ENV[@]}" CMD...

bg() {
	local name=$1
	shift
	# fd 3 is bats' own: a background job holding it makes bats hang.
	"$@" >"$T/$name.out" 2>"$T/$name.err" 3>&- &
	BG_PID=$!
	echo "$BG_PID" >>"$T/.pids"
}

# Wait for a background pid to exit, at most SECS; its status in $BG_STATUS
# (124 when it did not exit in time; it is then left running for teardown).
bg_wait() {
	local pid=$1 secs=${2:-$HB_CMD_TIMEOUT} i=0 n
	n=$((secs * 20))
	while kill -0 "$pid" 2>/dev/null && ((i < n)); do
		sleep 0.05
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		BG_STATUS=124
		return 0
	fi
	BG_STATUS=0
	wait "$pid" 2>/dev/null || BG_STATUS=$?
}

# ------------------------------------------------------------------ skipping

need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (${1:-network namespaces and nftables})"
}

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs $c (not installed)"
	done
}

need_nosan() {
	[ -z "${HB_SAN_PRELOAD:-}" ] || skip "${1:-not meaningful under a sanitizer runtime}"
}

# ------------------------------------------------------------------ network

free_port() {
	"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# A private network namespace with loopback up; name in $NS. Names embed the
# bats pid and test number so parallel runs never collide.
netns_new() {
	need_root
	need_cmd ip nft
	NS="hbt-$$-${BATS_TEST_NUMBER}-$((${#NS_LIST[@]} + 1))"
	NS_LIST+=("$NS")
	ip netns add "$NS" || skip "cannot create a network namespace here"
	echo "$NS" >>"$T/.netns"
	ip -n "$NS" link set lo up
}
NS_LIST=()

# Drop every TCP packet leaving the namespace's stack with the given
# direction/port, e.g. nft_drop "$NS" sport 4000 (the peer "vanishes").
nft_drop() {
	local ns=$1 dir=$2 port=$3
	ip netns exec "$ns" nft add table inet hbt
	ip netns exec "$ns" nft add chain inet hbt out '{ type filter hook output priority 0; }'
	ip netns exec "$ns" nft add rule inet hbt out tcp "$dir" "$port" drop
}

wait_listen() {
	local port=$1 ns=${2:-} i
	local -a pre=()
	[ -n "$ns" ] && pre=(ip netns exec "$ns")
	for ((i = 0; i < 200; i++)); do
		[ -n "$("${pre[@]}" ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	echo "nothing listens on port $port after 10 s" >&2
	return 1
}

wait_line() {
	local file=$1 re=$2 secs=${3:-10} i
	for ((i = 0; i < secs * 20; i++)); do
		grep -Eq -- "$re" "$file" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "no line matching /$re/ in $file after ${secs}s; it holds:" >&2
	cat "$file" >&2 2>/dev/null
	return 1
}

# wait_count FILE REGEX N [SECS]: until N lines of FILE match REGEX.
wait_count() {
	local file=$1 re=$2 n=$3 secs=${4:-10} i
	for ((i = 0; i < secs * 20; i++)); do
		[ "$(grep -Ec -- "$re" "$file" 2>/dev/null)" -ge "$n" ] && return 0
		sleep 0.05
	done
	echo "fewer than $n lines matching /$re/ in $file after ${secs}s; it holds:" >&2
	cat "$file" >&2 2>/dev/null
	return 1
}

# ------------------------------------------------------------------ assertions

fail() {
	echo "FAIL: $*" >&2
	return 1
}

# Value of key=value in a line of words: kv "keepalive=1 idle=1" idle -> 1
kv() {
	local w
	for w in $1; do
		[ "${w%%=*}" = "$2" ] && {
			echo "${w#*=}"
			return 0
		}
	done
	return 1
}

assert_status() {
	[ "$status" -eq "$1" ] || fail "exit status $status, expected $1; output:
$output"
}

# The line of $output starting with PREFIX (the first one).
line_with() {
	local l
	while IFS= read -r l; do
		case $l in "$1"*)
			echo "$l"
			return 0
			;;
		esac
	done <<<"$output"
	return 1
}

# Float comparison: in_range VALUE LO HI
# in_range V LO HI: LO <= V <= HI + HB_TIME_SLACK. Upper bounds get slack
# because these tests run on shared 2-core VMs where a 100 ms sleep was seen
# to take 2.3 s (CPU steal): the exact bounds are measured by `make bench`
# (bench/RESULTS.md), the tests prove detection happens and never early.
# A value past the nominal bound is reported on fd 3.
HB_TIME_SLACK=${HB_TIME_SLACK:-3}
in_range() {
	if awk -v v="$1" -v hi="$3" 'BEGIN { exit !(v + 0 > hi + 0) }'; then
		echo "# note: $1 s is past the nominal bound $3 s (machine load; slack ${HB_TIME_SLACK} s)" >&3
	fi
	awk -v v="$1" -v lo="$2" -v hi="$3" -v s="$HB_TIME_SLACK" \
		'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + s) }'
}

# ------------------------------------------------------------------ the application

# A plain Python socket program: no knowledge of hbshim except the optional
# ctypes query of hbshim_active/hbshim_fd_mode, which answers None when the
# library is not loaded. Every result is printed as one line of words.
hb_write_app() {
	cat >"$1" <<'PY'
import ctypes, errno, json, os, signal, socket, sys, time

S, T = socket.SOL_SOCKET, socket.IPPROTO_TCP
OUT = sys.stdout

def say(*words):
    print(*words, flush=True)

def err(e):
    return "ERR %d %s" % (e.errno, errno.errorcode.get(e.errno, "?"))

def lib_call(name, *args):
    try:
        return getattr(ctypes.CDLL(None), name)(*args)
    except AttributeError:
        return None

def opts(s):
    d = [("keepalive", S, socket.SO_KEEPALIVE)]
    if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6):
        d += [("idle", T, socket.TCP_KEEPIDLE), ("intvl", T, socket.TCP_KEEPINTVL),
              ("cnt", T, socket.TCP_KEEPCNT), ("user_timeout", T, socket.TCP_USER_TIMEOUT)]
    words = ["%s=%d" % (k, s.getsockopt(l, o)) for k, l, o in d]
    words.append("mode=%s" % lib_call("hbshim_fd_mode", s.fileno()))
    return " ".join(words)

def wait_keepalive(socks, secs):
    """Poll SO_KEEPALIVE until every socket has it on, or secs elapse
    (the shim switches it on with up to ~1 s of jitter)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        if all(s.getsockopt(S, socket.SO_KEEPALIVE) for s in socks):
            break
        time.sleep(0.05)
    return time.monotonic() - t0

def addr(host, port):
    return (host, int(port))

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def listener(host, port):
    l = socket.socket(fam(host), socket.SOCK_STREAM)
    l.setsockopt(S, socket.SO_REUSEADDR, 1)
    l.bind(addr(host, port))
    l.listen(16)
    return l

def recv_result(s, t0):
    try:
        d = s.recv(1)
        if d:
            return "DATA %r %.2f" % (d, time.monotonic() - t0)
        return "EOF %.2f" % (time.monotonic() - t0)
    except OSError as e:
        return "%s %.2f" % (err(e), time.monotonic() - t0)

# ---- servers

def serve(host, port):
    """Accept and hold every connection, never sending a byte."""
    l = listener(host, port)
    say("LISTENING", l.getsockname()[1])
    held = []
    while True:
        c, a = l.accept()
        held.append(c)
        say("ACCEPTED", a[1])

def serve_opts(host, port, secs="2"):
    """Accept one connection and report the options of the accepted socket."""
    l = listener(host, port)
    say("LISTENING", l.getsockname()[1])
    c, _ = l.accept()
    waited = wait_keepalive([c], float(secs))
    say("OPTS", opts(c), "waited=%.2f" % waited)
    c.close()

def echo_server(host, port):
    l = listener(host, port)
    say("LISTENING", l.getsockname()[1])
    c, _ = l.accept()
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
        n += len(d)
    c.close()
    say("ECHOED", n)

def banner_server(host, port, text):
    """Server-first protocol (SMTP, SSH style): greet at once, then echo."""
    l = listener(host, port)
    say("LISTENING", l.getsockname()[1])
    c, _ = l.accept()
    c.sendall(text.encode() + b"\r\n")
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()

# ---- clients

def banner_client(host, port):
    """Connect, send nothing, read one line."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(addr(host, port))
    t0 = time.monotonic()
    got = b""
    try:
        while not got.endswith(b"\n"):
            d = s.recv(100)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    say("BANNER %r %.2f" % (got, time.monotonic() - t0))

def echo_chunks(host, port, *hexchunks):
    """Send each chunk alone and wait (3 s at most) for its echo before the
    next: a peer holding bytes back shows up as a TIMEOUT."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(addr(host, port))
    worst = 0.0
    for i, h in enumerate(hexchunks):
        chunk = bytes.fromhex(h)
        t0 = time.monotonic()
        s.sendall(chunk)
        got = b""
        try:
            while len(got) < len(chunk):
                d = s.recv(len(chunk) - len(got))
                if not d:
                    say("EOF at chunk", i, repr(got))
                    return 1
                got += d
        except socket.timeout:
            say("TIMEOUT at chunk", i, "got", repr(got))
            return 1
        if got != chunk:
            say("MISMATCH at chunk", i, repr(got), "!=", repr(chunk))
            return 1
        worst = max(worst, time.monotonic() - t0)
    say("ECHO OK %d %.2f" % (len(hexchunks), worst))

def client_recv(host, port):
    """Connect, then block in recv(1) and report how that ended."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.connect(addr(host, port))
    say("READY")
    say(recv_result(s, time.monotonic()))

def client_idle(host, port):
    """Connect, never send; report recv, then a send on the same socket.
    SIGPIPE has its default action, so an EPIPE from the kernel would kill
    the process."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    t0 = time.monotonic()
    s.connect(addr(host, port))
    say("READY")
    say("RECV", recv_result(s, t0))
    try:
        n = s.send(b"x")
        say("SEND OK", n)
    except OSError as e:
        say("SEND", err(e))

def client_opts(host, port, app="none", secs="2"):
    """Connect and report socket options. app: what the application sets
    itself: none | ka0 (SO_KEEPALIVE=0 + TCP_KEEPIDLE=77 before connect) |
    idle77 (TCP_KEEPIDLE=77 only) | ka0-after (SO_KEEPALIVE=0 right after
    connect)."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    if app == "ka0":
        s.setsockopt(S, socket.SO_KEEPALIVE, 0)
        s.setsockopt(T, socket.TCP_KEEPIDLE, 77)
    elif app == "idle77":
        s.setsockopt(T, socket.TCP_KEEPIDLE, 77)
    s.connect(addr(host, port))
    if app == "ka0-after":
        s.setsockopt(S, socket.SO_KEEPALIVE, 0)
    if app == "none":
        waited = wait_keepalive([s], float(secs))
    else:
        time.sleep(float(secs))
        waited = float(secs)
    say("OPTS", opts(s), "waited=%.2f" % waited, "active=%s" % lib_call("hbshim_active"))

def connect(host, port, how="block"):
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    if how == "nonblock":
        s.setblocking(False)
    t0 = time.monotonic()
    rc = s.connect_ex(addr(host, port))
    dt = time.monotonic() - t0
    if rc == 0:
        say("CONNECTED %.2f" % dt)
    else:
        say("ERR %d %s %.2f" % (rc, errno.errorcode.get(rc, "?"), dt))

def send_file(host, port, path):
    """Send a file, half-close, wait for the peer's close."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.connect(addr(host, port))
    with open(path, "rb") as f:
        data = f.read()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
    say("SENT", len(data))

def echo_client(host, port, nbytes):
    """Send random bytes in chunks, read each chunk back, compare."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.connect(addr(host, port))
    total, left = 0, int(nbytes)
    while left:
        chunk = os.urandom(min(left, 65536))
        s.sendall(chunk)
        got = b""
        while len(got) < len(chunk):
            d = s.recv(len(chunk) - len(got))
            if not d:
                say("SHORT", total + len(got))
                return 1
            got += d
        if got != chunk:
            say("MISMATCH at", total)
            return 1
        total += len(chunk)
        left -= len(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    say("ECHO OK", total)

def client_chatty(host, port, secs, period):
    """Exchange one byte with an echo server every period seconds for secs
    seconds; report how many round trips worked."""
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.connect(addr(host, port))
    t0, n = time.monotonic(), 0
    try:
        while time.monotonic() - t0 < float(secs):
            s.sendall(b"x")
            if s.recv(1) != b"x":
                say("EOF after", n)
                return 1
            n += 1
            time.sleep(float(period))
    except OSError as e:
        say("%s after %d %.2f" % (err(e), n, time.monotonic() - t0))
        return 1
    say("CHATTY OK")

# ---- single-process scenarios

def loopback(host="127.0.0.1"):
    """Listener, connect, accept, one exchange each way, close all.
    Reports the pid and the listening port."""
    l = listener(host, 0)
    port = l.getsockname()[1]
    c = socket.socket(fam(host), socket.SOCK_STREAM)
    c.connect(addr(host, port))
    a, _ = l.accept()
    c.sendall(b"ping")
    assert a.recv(4) == b"ping"
    a.sendall(b"pong")
    assert c.recv(4) == b"pong"
    cport = c.getsockname()[1]
    c.close()
    a.close()
    l.close()
    say("LOOPBACK pid=%d port=%d cport=%d active=%s" % (os.getpid(), port, cport,
                                                        lib_call("hbshim_active")))

def others(secs="2"):
    """Sockets the shim must leave alone: AF_UNIX stream (socketpair and
    connected), UDP (connected), and a TCP listener."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    path = "\0hbt-%d" % os.getpid()
    ul = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ul.bind(path)
    ul.listen(1)
    uc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    uc.connect(path)
    ua, _ = ul.accept()
    u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u1.bind(("127.0.0.1", 0))
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2.connect(u1.getsockname())
    u2.send(b"x")
    u1.recv(1)
    tl = listener("127.0.0.1", 0)
    socks = {"pair": a, "unix_client": uc, "unix_accepted": ua, "udp": u2, "tcp_listener": tl}
    time.sleep(float(secs))
    for k, s in socks.items():
        say(k, opts(s))

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "serve": serve, "serve-opts": serve_opts, "echo-server": echo_server,
        "client-recv": client_recv, "client-idle": client_idle,
        "client-opts": client_opts, "banner-server": banner_server,
        "banner-client": banner_client, "echo-chunks": echo_chunks, "client-chatty": client_chatty, "connect": connect, "send-file": send_file,
        "echo-client": echo_client, "loopback": loopback, "others": others,
    }[cmd]
    sys.exit(fn(*args) or 0)

main()
PY
}
