#!/usr/bin/python3
"""faultloop.py - event-loop clients for tests/bats/faults_eventloop.bats:
non-blocking sockets waited on with epoll (level-triggered, edge-triggered,
one-shot), poll or select, against faultapp.py's server.

  get HOST PORT N WAIT SECS
      Connect, ask for N bytes (faultapp's protocol), read them from a
      non-blocking socket, waiting for readiness with WAIT: epoll-lt,
      epoll-et, epoll-oneshot (select.epoll), selectors (the standard
      library's DefaultSelector: epoll on Linux), poll or select. The whole
      exchange may take SECS; each wait gets what is left of it. Prints
      "sizes A,B,..." (each recv's count), one of "ok N", "eof after K",
      "err ERRNAME after K", "timeout after K"; then "eagain K" (reads that
      found nothing after a readiness report), "first S" (seconds from the
      request to the first byte read, or -1) and "waits K" (readiness waits
      made).
  connect HOST PORT WAIT SECS [SYNCNT]
      A non-blocking connect (TCP_SYNCNT first when given), then one wait
      for writability with WAIT (epoll, poll, select) of at most SECS.
      Prints "connect ERRNAME S" (what connect returned: EINPROGRESS, 0 as
      OK, or an error, and the seconds the call took), then "ready EVENTS S" (the events reported, sorted
      names, and the seconds since the connect) or "timeout S", then
      "so_error ERRNAME" (getsockopt SO_ERROR after the wait; OK for 0).
  idle HOST PORT WAIT SECS
      Connect and send nothing; wait once for readability with WAIT for at
      most SECS. Prints "events EVENTS S" or "timeout S".
"""
import errno
import select
import selectors
import socket
import sys
import time


def pattern(n):
    return bytes(i % 251 for i in range(n))


def ename(e):
    return "OK" if e == 0 else errno.errorcode.get(e, str(e))


EPOLL_NAMES = [(select.EPOLLIN, "IN"), (select.EPOLLOUT, "OUT"), (select.EPOLLERR, "ERR"),
               (select.EPOLLHUP, "HUP"), (select.EPOLLRDHUP, "RDHUP")]
POLL_NAMES = [(select.POLLIN, "IN"), (select.POLLOUT, "OUT"), (select.POLLERR, "ERR"),
              (select.POLLHUP, "HUP")]


def names(ev, table):
    return ",".join(sorted(n for bit, n in table if ev & bit)) or "-"


class Waiter:
    """One readiness wait at a time on one socket, for WAIT."""

    def __init__(self, s, wait, want):
        self.s, self.wait, self.want = s, wait, want
        inb = want == "in"
        if wait.startswith("epoll"):
            self.ep = select.epoll()
            flags = select.EPOLLIN if inb else select.EPOLLOUT
            if wait == "epoll-et":
                flags |= select.EPOLLET
            if wait == "epoll-oneshot":
                flags |= select.EPOLLONESHOT
            self.flags = flags
            self.ep.register(s.fileno(), flags)
        elif wait == "selectors":
            self.sel = selectors.DefaultSelector()
            assert type(self.sel).__name__ == "EpollSelector", type(self.sel)
            self.sel.register(s, selectors.EVENT_READ if inb else selectors.EVENT_WRITE)
        elif wait == "poll":
            self.p = select.poll()
            self.p.register(s, select.POLLIN if inb else select.POLLOUT)
        elif wait != "select":
            raise SystemExit("unknown WAIT " + wait)

    def rearm(self):
        if self.wait == "epoll-oneshot":
            self.ep.modify(self.s.fileno(), self.flags)

    def __call__(self, secs):
        """Event names reported within secs, or None."""
        if self.wait.startswith("epoll"):
            evs = self.ep.poll(secs)
            return names(evs[0][1], EPOLL_NAMES) if evs else None
        if self.wait == "selectors":
            evs = self.sel.select(secs)
            if not evs:
                return None
            m = evs[0][1]
            return ",".join(n for bit, n in [(selectors.EVENT_READ, "IN"),
                                             (selectors.EVENT_WRITE, "OUT")] if m & bit)
        if self.wait == "poll":
            evs = self.p.poll(int(secs * 1000) + 1)
            return names(evs[0][1], POLL_NAMES) if evs else None
        r, w, x = select.select([self.s] if self.want == "in" else [],
                                [self.s] if self.want == "out" else [], [self.s], secs)
        if not (r or w or x):
            return None
        return ",".join(sorted((["IN"] if r else []) + (["OUT"] if w else [])
                               + (["ERR"] if x else [])))


def get(host, port, n, wait, secs):
    n, secs = int(n), float(secs)
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    w = Waiter(s, wait, "in")
    t0 = time.monotonic()
    s.sendall(b"%d\n" % n)
    deadline = t0 + secs
    got = bytearray()
    sizes = []
    result = None
    eagain = waits = 0
    first = -1.0
    while len(got) < n:
        left = deadline - time.monotonic()
        waits += 1
        if left <= 0 or w(left) is None:
            result = "timeout after %d" % len(got)
            break
        # Edge-triggered: drain until EAGAIN; else one read per report.
        this = 0
        while True:
            try:
                b = s.recv(65536)
            except BlockingIOError:
                if not this:
                    eagain += 1  # nothing behind the report
                break
            except OSError as e:
                result = "err %s after %d" % (ename(e.errno), len(got))
                break
            if not b:
                result = "eof after %d" % len(got)
                break
            if first < 0:
                first = time.monotonic() - t0
            sizes.append(len(b))
            got += b
            this += 1
            if wait != "epoll-et" or len(got) >= n:
                break
        if result:
            break
        w.rearm()
    print("sizes", ",".join(map(str, sizes)))
    if got != pattern(len(got)):
        print("CORRUPT")
    print(result or "ok %d" % len(got))
    print("eagain", eagain)
    print("first %.3f" % first)
    print("waits", waits, flush=True)
    s.close()


def connect(host, port, wait, secs, syncnt=None):
    secs = float(secs)
    s = socket.socket()
    if syncnt is not None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, int(syncnt))
    s.setblocking(False)
    t0 = time.monotonic()
    r = s.connect_ex((host, int(port)))
    print("connect %s %.2f" % (ename(r), time.monotonic() - t0))
    if r in (0, errno.EINPROGRESS):
        ev = Waiter(s, wait, "out")(secs)
        if ev is None:
            print("timeout %.2f" % (time.monotonic() - t0))
        else:
            print("ready %s %.2f" % (ev, time.monotonic() - t0))
    print("so_error", ename(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)), flush=True)


def idle(host, port, wait, secs):
    secs = float(secs)
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    t0 = time.monotonic()
    ev = Waiter(s, wait, "in")(secs)
    if ev is None:
        print("timeout %.2f" % (time.monotonic() - t0), flush=True)
    else:
        print("events %s %.2f" % (ev, time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"get": get, "connect": connect, "idle": idle}[cmd](*args)
