#!/usr/bin/python3
"""fdpass.py - a TCP connection handed to another process with SCM_RIGHTS.

    fdpass.py send PORT PATH [--exchange]
        Connect to 127.0.0.1:PORT (with --exchange, send "before\\n" and read
        its echo first), pass the socket over the AF_UNIX socket PATH, close
        it, and wait for the receiver's word that it is done.
    fdpass.py receive PATH
        Listen on PATH, print "ready", take the socket, send a line that holds
        bytes like frame headers, read its echo back and print it (repr).

A plain Python program that knows nothing of hbshim.
"""
import socket, sys

MSG = b"after the pass \x00\x01\x01\x00\x00\x00\x02 raw\n"


def send(port, path, exchange=False):
    s = socket.create_connection(("127.0.0.1", int(port)))
    if exchange:
        s.sendall(b"before\n")
        got = b""
        while len(got) < 7:
            got += s.recv(7 - len(got))
        assert got == b"before\n", got
    u = socket.socket(socket.AF_UNIX)
    u.connect(path)
    socket.send_fds(u, [b"x"], [s.fileno()])
    s.close()
    u.recv(1)  # the receiver is done


def receive(path):
    l = socket.socket(socket.AF_UNIX)
    l.bind(path)
    l.listen(1)
    print("ready", flush=True)
    u, _ = l.accept()
    _, fds, _, _ = socket.recv_fds(u, 1, 1)
    s = socket.socket(fileno=fds[0])
    s.settimeout(5)
    s.sendall(MSG)
    got = b""
    while len(got) < len(MSG):
        d = s.recv(len(MSG) - len(got))
        if not d:
            break
        got += d
    print(repr(got), flush=True)
    u.send(b"k")


def main(argv):
    if len(argv) >= 4 and argv[1] == "send":
        send(argv[2], argv[3], "--exchange" in argv[4:])
    elif len(argv) == 3 and argv[1] == "receive":
        receive(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
