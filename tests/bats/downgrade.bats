#!/usr/bin/env bats
# downgrade.bats - leaving framing cleanly (PROTOCOL.md, Downgrade).
#
# Stock OpenSSH sshd (privilege separation, seccomp sandbox) framed at both
# ends: its pre-authentication child installs a seccomp filter, sends its
# downgrade frame before the filter, decodes the client's frames in flight
# with read() alone, and the client answers with its own; the monitor and
# the post-authentication child learn it from the shared record. Before the
# downgrade frame every framed ssh failed in key exchange ("Bad packet
# length 16777222 [preauth]": a data-frame header read raw).

load helpers

# A private sshd under the shim (HBSHIM_ACCEPT=auto), root login with a
# generated key; extra NAME=VALUE words go to the server's environment.
start_sshd() {
	need_root "a private sshd logs in as root"
	[ -x /usr/sbin/sshd ] || skip "needs /usr/sbin/sshd (Debian package openssh-server)"
	need_cmd ssh scp ssh-keygen sha256sum
	mkdir -p /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"
	ssh-keygen -q -t ed25519 -N '' -f "$T/userkey"
	cp "$T/userkey.pub" "$T/authorized_keys"
	cat >"$T/sshd_config" <<-EOF
		HostKey $T/hostkey
		AuthorizedKeysFile $T/authorized_keys
		StrictModes no
		UsePAM no
		PermitRootLogin yes
		PidFile none
		ListenAddress 127.0.0.1
		Subsystem sftp internal-sftp
	EOF
	PORT=$(free_port)
	bg sshd env "${SHIM_ENV[@]}" HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$@" \
		/usr/sbin/sshd -D -e -f "$T/sshd_config" -p "$PORT"
	wait_listen "$PORT"
	SSH_OPTS=(-i "$T/userkey" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
		-o BatchMode=yes -o LogLevel=error)
}

# ssh/scp framed toward the private sshd.
fssh() {
	shim HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_EVENTS="$T/client.events" "${CLIENT_ENV[@]}" \
		ssh -p "$PORT" "${SSH_OPTS[@]}" root@127.0.0.1 "$@"
}

fscp() {
	shim HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_EVENTS="$T/client.events" \
		scp -q -P "$PORT" "${SSH_OPTS[@]}" "$@"
}

CLIENT_ENV=()

@test "framed ssh to a framed sshd (seccomp sandbox): 50 MB through cat both ways, byte-exact" {
	local HB_CMD_TIMEOUT=120
	start_sshd
	head -c 50000000 /dev/urandom >"$T/in.bin"
	status=0
	fssh cat <"$T/in.bin" >"$T/out.bin" 2>"$T/ssh.err" || status=$?
	[ "$status" -eq 0 ] || fail "ssh status $status: $(cat "$T/ssh.err"; tail -5 "$T/sshd.err")"
	[ "$(sha256sum <"$T/in.bin")" = "$(sha256sum <"$T/out.bin")" ] ||
		fail "50 MB through cat differ ($(stat -c %s "$T/out.bin") bytes back)"
	# Both directions were framed, then the sandboxed child left framing:
	# the client read its reason, and the monitor saw it in the family.
	grep -q '"event":"framed"' "$T/client.events" || fail "never framed: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"seccomp"' "$T/client.events" ||
		fail "no downgraded event: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"family"' "$T/server.events" ||
		fail "monitor: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/client.events" "$T/server.events"
}

@test "framed scp to and from a framed sshd, byte-exact" {
	start_sshd
	head -c 3000000 /dev/urandom >"$T/up.bin"
	run stderr_to "$T/scp1.err" fscp "$T/up.bin" "root@127.0.0.1:$T/remote.bin"
	[ "$status" -eq 0 ] || fail "scp up: status $status: $(cat "$T/scp1.err")"
	cmp "$T/up.bin" "$T/remote.bin"
	run stderr_to "$T/scp2.err" fscp "root@127.0.0.1:$T/remote.bin" "$T/down.bin"
	[ "$status" -eq 0 ] || fail "scp down: status $status: $(cat "$T/scp2.err")"
	cmp "$T/up.bin" "$T/down.bin"
	[ "$(grep -c '"event":"downgraded".*"by":"peer"' "$T/client.events")" -eq 2 ]
}

# An idle session at a short heartbeat interval: after the downgrade no side
# expects heartbeats, so none declares the other dead (by hand, 30 s idle
# at the default 5 s / 15 s passed the same way).
@test "an idle framed ssh session outlives many heartbeat timeouts after the downgrade" {
	start_sshd HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=400ms
	CLIENT_ENV=(HBSHIM_INTERVAL=100ms HBSHIM_TIMEOUT=400ms)
	run stderr_to "$T/ssh.err" fssh 'sleep 2.5; read line; echo "got $line"' < <(sleep 3; echo hello)
	[ "$status" -eq 0 ] || fail "ssh status $status: $(cat "$T/ssh.err")"
	[ "$output" = "got hello" ] || fail "output: $output"
	! grep -q '"event":"dead"' "$T/client.events" "$T/server.events"
	grep -q '"event":"downgraded"' "$T/client.events"
}

# A framed connection passed to another process with SCM_RIGHTS: the sender
# leaves framing both ways before the fd leaves it, so the receiver (which
# does not know the stream was framed) talks raw to the framed server.
@test "a framed socket passed with SCM_RIGHTS: the receiving process talks raw, byte-exact" {
	cat >"$T/server.py" <<-'EOF2'
		import socket, sys
		l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
		print(l.getsockname()[1], flush=True)
		c, _ = l.accept()
		while True:
		    d = c.recv(4096)
		    if not d:
		        break
		    c.sendall(d)
	EOF2
	bg server shim HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$PY" "$T/server.py"
	wait_line "$T/server.out" '^[0-9]+$' 10
	PORT=$(head -1 "$T/server.out")
	bg receiver shim "$PY" "$HB_ROOT/tests/app/fdpass.py" receive "$T/unix.sock"
	wait_line "$T/receiver.out" '^ready$' 10
	run stderr_to "$T/sender.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$PY" "$HB_ROOT/tests/app/fdpass.py" send "$PORT" "$T/unix.sock" --exchange
	[ "$status" -eq 0 ] || fail "sender: $status $(cat "$T/sender.err")"
	wait_line "$T/receiver.out" "^b'after" 10 || fail "receiver: $(cat "$T/receiver.out" "$T/receiver.err")"
	grep -qxF "b'after the pass \\x00\\x01\\x01\\x00\\x00\\x00\\x02 raw\\n'" "$T/receiver.out" ||
		fail "receiver got: $(cat "$T/receiver.out")"
	grep -q '"event":"framed"' "$T/client.events"
	grep -q '"event":"downgraded".*"by":"local","reason":"fd_passed"' "$T/client.events" ||
		fail "sender events: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"fd_passed"' "$T/server.events" ||
		fail "server events: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/server.events"
}

# Not only sshd: a client that installs a seccomp filter (killing on sendto,
# recvfrom, sendmsg, recvmsg, getsockopt, setsockopt and clone) right after
# connecting, framed toward a framed server. The shim waits for the
# server's hello (whether it can downgrade), downgrades, and the client's
# plain write and read then carry raw bytes.
@test "a client that sandboxes itself right after connecting, framed at both ends: bytes exact, not killed" {
	need_helper sandboxed
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$PY" -c 'import socket
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
s, _ = ls.accept(); f = s.makefile("rb")
l = f.readline(); s.sendall(b"pong:" + l); s.recv(1)'
	wait_line "$T/srv.out" '^[0-9]+$' 10
	PORT=$(head -1 "$T/srv.out")
	run shim HBSHIM_FRAME="127.0.0.1:$PORT" HBSHIM_EVENTS="$T/client.events" \
		"$HB_HELPERS/sandboxed" "$PORT"
	assert_status 0
	[ "$(line_with pong)" = "pong:ping" ] || fail "client printed: $output"
	grep -q '"event":"downgraded".*"by":"local","reason":"seccomp"' "$T/client.events" ||
		fail "client events: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"seccomp"' "$T/server.events" ||
		fail "server events: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/server.events"
}
