#!/usr/bin/env bats
# seccomp_passing.bats - a framed connection leaving framing through the
# calls the first leaving paths did not see (PROTOCOL.md, Downgrade):
# a seccomp filter installed with syscall() instead of prctl(), and a
# framed socket passed to another process with sendmmsg instead of
# sendmsg. downgrade.bats has the prctl and sendmsg cases.

load helpers

# A framed echo server (HBSHIM_ACCEPT=auto): one connection, every byte back
# until the end of stream. Its port in $PORT.
start_echo() {
	bg srv shim HBSHIM_ACCEPT=auto HBSHIM_EVENTS="$T/server.events" "$PY" -c 'import socket
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
s, _ = ls.accept()
while True:
    d = s.recv(65536)
    if not d:
        break
    s.sendall(d)'
	wait_line "$T/srv.out" '^[0-9]+$' 10
	PORT=$(head -1 "$T/srv.out")
}

# The helper, framed toward the echo server, installs its filter the way
# HOW says, after one framed round trip; its filter kills it on sendto,
# sendmsg, recvfrom, recvmsg, getsockopt, setsockopt and clone.
sandbox_through() {
	local how=$1
	need_helper seccomp_syscall
	start_echo
	run stderr_to "$T/client.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$HB_HELPERS/seccomp_syscall" "$PORT" "$how"
	[ "$status" -eq 0 ] || fail "client status $status: $(cat "$T/client.err")"
	[ "$output" = "exact 65536" ] || fail "client printed: $output"
	grep -q '"event":"framed"' "$T/client.events" || fail "never framed: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"local","reason":"seccomp"' "$T/client.events" ||
		fail "client events: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"seccomp"' "$T/server.events" ||
		fail "server events: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/server.events" "$T/client.events"
}

@test "syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER) on a framed connection: downgrade first, 64 KiB echoed exact, not killed" {
	sandbox_through seccomp
}

@test "syscall(SYS_prctl, PR_SET_SECCOMP) on a framed connection: downgrade first, 64 KiB echoed exact, not killed" {
	sandbox_through prctl
}

# libseccomp 2.5 itself (dlopen'd by the helper): seccomp_load probes the
# kernel, then installs the filter with syscall(SYS_seccomp).
@test "a filter loaded by libseccomp on a framed connection: downgrade first, 64 KiB echoed exact, not killed" {
	[ -n "$(ldconfig -p | grep libseccomp.so.2)" ] || skip "needs libseccomp.so.2 (Debian package libseccomp2)"
	sandbox_through libseccomp
}

# libseccomp's probes (refused by the kernel before any program is looked
# at) and a seccomp query install nothing: the connection stays framed.
# syscall()'s pass-through (value, errno, six arguments) is checked by the
# helper before it connects.
@test "seccomp probes and queries through syscall() leave framing alone; other syscall() numbers pass through" {
	need_helper seccomp_syscall
	start_echo
	run stderr_to "$T/client.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$HB_HELPERS/seccomp_syscall" "$PORT" probe
	[ "$status" -eq 0 ] || fail "client status $status: $(cat "$T/client.err")"
	[ "$output" = "exact 65536" ] || fail "client printed: $output"
	grep -q '"event":"framed"' "$T/client.events" || fail "never framed: $(cat "$T/client.events")"
	! grep -q protocol_error "$T/server.events" "$T/client.events" || fail "protocol error"
	! grep '"event":"downgraded"' "$T/client.events" "$T/server.events"
}

# A framed connection handed over in the second message of one sendmmsg
# (the first carries no fd): the sender downgrades it before the call, so
# the receiving process, which never saw a frame, writes and reads the raw
# stream toward the framed echo server.
@test "a framed socket passed with sendmmsg (SCM_RIGHTS in its 2nd message): the receiver talks raw, 64 KiB echoed exact" {
	need_helper fdpass_mmsg
	start_echo
	bg receiver shim "$HB_HELPERS/fdpass_mmsg" recv "$T/unix.sock"
	local rpid=$BG_PID
	wait_line "$T/receiver.out" '^ready$' 10
	run stderr_to "$T/sender.err" shim HBSHIM_FRAME="127.0.0.1:$PORT" \
		HBSHIM_EVENTS="$T/client.events" "$HB_HELPERS/fdpass_mmsg" send "$PORT" "$T/unix.sock"
	[ "$status" -eq 0 ] || fail "sender: $status $(cat "$T/sender.err")"
	wait_line "$T/receiver.out" '^exact ' 10 ||
		fail "receiver: $(cat "$T/receiver.out" "$T/receiver.err")"
	bg_wait "$rpid" 10
	[ "$BG_STATUS" -eq 0 ] || fail "receiver status $BG_STATUS: $(cat "$T/receiver.err")"
	grep -qx "exact 65536" "$T/receiver.out" || fail "receiver: $(cat "$T/receiver.out")"
	grep -q '"event":"framed"' "$T/client.events" || fail "never framed: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"local","reason":"fd_passed"' "$T/client.events" ||
		fail "sender events: $(cat "$T/client.events")"
	grep -q '"event":"downgraded".*"by":"peer","reason":"fd_passed"' "$T/server.events" ||
		fail "server events: $(cat "$T/server.events")"
	! grep -q protocol_error "$T/server.events"
}
