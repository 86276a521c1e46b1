#!/usr/bin/python3
"""hbapp.py - the "unmodified application" of the integration tests.

A plain Python socket program: it knows nothing of hbshim except the optional
ctypes query of hbshim_active/hbshim_fd_mode, which answers None when the
library is not loaded. Every result is printed as one line of words, so a
bats test can assert on it. Runs alone, with or without the shim:

    python3 tests/app/hbapp.py --help
    LD_PRELOAD=build/libhbshim.so python3 tests/app/hbapp.py loopback
"""
import ctypes, errno, os, signal, socket, sys, time

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

def listener(host, port, backlog=16):
    l = socket.socket(fam(host), socket.SOCK_STREAM)
    l.setsockopt(S, socket.SO_REUSEADDR, 1)
    l.bind(addr(host, port))
    l.listen(backlog)
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

def count_reader(host, port, count, delay="0", backlog="16"):
    """Accept COUNT connections one after the other, the first after DELAY
    seconds, and read each to its end: "EOF bytes" or "ERR errno bytes"."""
    l = listener(host, port, int(backlog))
    say("LISTENING")
    time.sleep(float(delay))
    for _ in range(int(count)):
        c, _ = l.accept()
        n = 0
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                n += len(d)
            say("EOF", n)
        except OSError as e:
            say("ERR", e.errno, n)
        c.close()

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

COMMANDS = {
    "serve": serve, "serve-opts": serve_opts, "echo-server": echo_server,
    "count-reader": count_reader,
    "client-recv": client_recv, "client-idle": client_idle,
    "client-opts": client_opts, "banner-server": banner_server,
    "banner-client": banner_client, "echo-chunks": echo_chunks,
    "client-chatty": client_chatty, "connect": connect, "send-file": send_file,
    "echo-client": echo_client, "loopback": loopback, "others": others,
}

def usage(out):
    out.write("usage: hbapp.py COMMAND [ARGS...]\n\ncommands:\n")
    for name, fn in COMMANDS.items():
        code = fn.__code__
        params = code.co_varnames[:code.co_argcount]
        defaults = fn.__defaults__ or ()
        first_opt = len(params) - len(defaults)
        words = [p.upper() if i < first_opt else "[%s]" % p.upper()
                 for i, p in enumerate(params)]
        if code.co_flags & 0x04:
            words.append("[%s...]" % code.co_varnames[code.co_argcount].upper())
        doc = (fn.__doc__ or "").strip().splitlines()
        out.write("  %-14s %s\n" % (name, " ".join(words)))
        if doc:
            out.write("                 %s\n" % doc[0].strip())

def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        usage(sys.stdout if len(sys.argv) >= 2 else sys.stderr)
        return 0 if len(sys.argv) >= 2 else 2
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd not in COMMANDS:
        sys.stderr.write("hbapp.py: unknown command %r (try --help)\n" % cmd)
        return 2
    return COMMANDS[cmd](*args) or 0

if __name__ == "__main__":
    sys.exit(main())
