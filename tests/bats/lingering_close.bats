#!/usr/bin/env bats
# A framed client that closes before the server has accepted its connection
# (the server's hello has not come yet) keeps the socket lingering: the
# server's hello and heartbeats, sent when it finally accepts, must not meet
# a closed socket, whose reset would destroy the bytes the server has not
# read yet.

load helpers

@test "lingering close: a framed client that closes before the server accepts: the server still reads every byte, then EOF (no reset)" {
	PORT=$(free_port)
	# busy elsewhere for 0.5 s before its first accept: the client has closed by now
	bg srv env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=5ms "$PY" "$APP" count-reader 127.0.0.1 "$PORT" 3 0.5 8
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
