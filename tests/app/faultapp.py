#!/usr/bin/python3
"""faultapp.py - plain-socket programs for tests/bats/faults.bats.

  server HOST PORT
      For each connection (one at a time): read a line "N", send N bytes of
      a fixed pattern (byte i is i % 251), then read until EOF or an error;
      print "served N" and "end EOF" or "end ERRNAME" per connection.
  get HOST PORT N MODE [SECS]
      Connect, ask for N bytes, read them with reads of at most 65536 bytes
      and check them against the pattern. MODE says how the program waits:
        blocking   plain blocking recv
        rcvtimeo   blocking recv with SO_RCVTIMEO of SECS
        settimeout Python's own socket timeout of SECS (poll inside)
        poll       non-blocking socket, poll() for POLLIN (SECS at most)
        select     non-blocking socket, select() (SECS at most)
      Prints "sizes A,B,..." (each recv's count), one of "ok N",
      "eof after K", "err ERRNAME after K", "timeout after K", then
      "eagain K" (reads that found nothing after a readiness report).
  connect HOST PORT MODE SECS
      MODE blocking (SO_SNDTIMEO of SECS) or poll (non-blocking connect,
      poll for POLLOUT at most SECS, then SO_ERROR). Prints "connected",
      "err ERRNAME" or "timeout", then "elapsed S".
"""
import errno
import os
import select
import socket
import struct
import sys
import time


def pattern(n):
    return bytes(i % 251 for i in range(n))


def ename(e):
    return errno.errorcode.get(e, str(e))


def server(host, port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        try:
            line = b""
            while not line.endswith(b"\n"):
                b = c.recv(1)
                if not b:
                    break
                line += b
            n = int(line or b"0")
            c.sendall(pattern(n))
            print("served", n, flush=True)
            while True:
                if not c.recv(65536):
                    print("end EOF", flush=True)
                    break
        except OSError as e:
            print("end", ename(e.errno), flush=True)
        finally:
            c.close()


def wait_in(s, mode, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    if mode == "poll":
        p = select.poll()
        p.register(s, select.POLLIN)
        return bool(p.poll(int(left * 1000) + 1))
    r, _, _ = select.select([s], [], [], left)
    return bool(r)


def get(host, port, n, mode, secs="10"):
    n, secs = int(n), float(secs)
    s = socket.create_connection((host, int(port)))
    if mode == "rcvtimeo":
        tv = struct.pack("ll", int(secs), int((secs % 1) * 1e6))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    if mode in ("poll", "select"):
        s.setblocking(False)
    if mode == "settimeout":
        s.settimeout(secs)
    s.sendall(b"%d\n" % n)
    got = bytearray()
    sizes = []
    deadline = time.monotonic() + secs
    result = None
    eagain = 0
    while len(got) < n:
        if mode in ("poll", "select") and not wait_in(s, mode, deadline):
            result = "timeout after %d" % len(got)
            break
        try:
            b = s.recv(65536)
        except socket.timeout:
            result = "timeout after %d" % len(got)
            break
        except BlockingIOError:
            eagain += 1
            if mode == "rcvtimeo":
                result = "timeout after %d" % len(got)
                break
            continue
        except OSError as e:
            result = "err %s after %d" % (ename(e.errno), len(got))
            break
        if not b:
            result = "eof after %d" % len(got)
            break
        sizes.append(len(b))
        got += b
    print("sizes", ",".join(map(str, sizes)))
    if got != pattern(len(got)):
        print("CORRUPT")
    print(result or "ok %d" % len(got))
    print("eagain", eagain, flush=True)
    s.close()


def connect(host, port, mode, secs):
    secs = float(secs)
    s = socket.socket()
    t0 = time.monotonic()
    try:
        if mode == "blocking":
            tv = struct.pack("ll", int(secs), int((secs % 1) * 1e6))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            r = s.connect_ex((host, int(port)))
            if r == 0:
                print("connected")
            elif r in (errno.EINPROGRESS, errno.EAGAIN):
                print("timeout")
            else:
                print("err", ename(r))
        else:
            s.setblocking(False)
            r = s.connect_ex((host, int(port)))
            if r not in (0, errno.EINPROGRESS):
                print("err", ename(r))
            else:
                p = select.poll()
                p.register(s, select.POLLOUT)
                if not p.poll(int(secs * 1000)):
                    print("timeout")
                else:
                    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    print("connected" if e == 0 else "err " + ename(e))
    except OSError as e:
        print("err", ename(e.errno))
    print("elapsed %.2f" % (time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"server": server, "get": get, "connect": connect}[cmd](*args)
