#!/usr/bin/env bats
# A framed client that closes before the server has accepted its connection
# (the server's hello has not come yet) keeps the socket lingering: the
# server's hello and heartbeats, sent when it finally accepts, must not meet
# a closed socket, whose reset would destroy the bytes the server has not
# read yet.

load helpers

@test "lingering close: a framed client that closes before the server accepts: the server still reads every byte, then EOF (no reset)" {
	PORT=$(free_port)
	bg srv env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=5ms "$PY" -c 'import socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(8)
print("LISTENING", flush=True)
time.sleep(0.5)  # busy elsewhere: the client has closed by now
for i in range(3):
    c, _ = l.accept()
    n = 0
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
        print("EOF", n, flush=True)
    except OSError as e:
        print("ERR", e.errno, n, flush=True)
    c.close()' "$PORT"
	local srv=$BG_PID
	wait_line "$T/srv.out" LISTENING
	run shim "HBSHIM_FRAME=127.0.0.1:$PORT" HBSHIM_INTERVAL=5ms HBSHIM_TIMEOUT=2s "$PY" -c 'import socket, sys, time
for i in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"x" * 1048576)  # more than the unaccepted socket takes: the rest waits in ours
    s.close()
time.sleep(1.5)  # the process lives on: only its sockets are closed
print("DONE")' "$PORT"
	assert_status 0
	bg_wait "$srv" 10
	[ "$(grep -c '^EOF 1048576$' "$T/srv.out")" -eq 3 ] || fail "server: $(cat "$T/srv.out" "$T/srv.err")"
}
