#!/usr/bin/env bats
# Hostile arguments and small stacks: bad iovec arrays get the kernel's
# answer on framed connections, the exec and spawn interposers fit a small
# thread stack, and the build products carry the hardening flags.

load helpers

HELPERS="$HB_ROOT/build/tests"

@test "iovec: wrapping, oversized and too many lengths get the kernel's errno on every vectored call" {
	[ -x "$HELPERS/iovec_overflow" ] || fail "build/tests/iovec_overflow missing: make build/tests/iovec_overflow"
	run shim HBSHIM_FRAME='*' "$HELPERS/iovec_overflow"
	[ "$(line_with MODE)" = "MODE 2" ] || fail "connection not framed: $output"
	assert_status 0
	local op
	for op in writev sendmsg sendmmsg readv recvmsg recvmmsg; do
		line_with "CASE $op {16,2^64-8} kernel=EINVAL shim=EINVAL" >/dev/null || fail "$op wrap: $output"
		line_with "CASE $op {16,2^63} kernel=EINVAL shim=EINVAL" >/dev/null || fail "$op over: $output"
		line_with "CASE $op {2^62,2^62} kernel=EFAULT shim=EINVAL" >/dev/null || fail "$op sum: $output"
	done
	line_with "CASE writev 1025-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	line_with "CASE readv 1025-entries kernel=EINVAL shim=EINVAL" >/dev/null || fail "$output"
	line_with "CASE sendmsg 1025-entries kernel=EMSGSIZE shim=EMSGSIZE" >/dev/null || fail "$output"
	line_with "CASE recvmsg 1025-entries kernel=EMSGSIZE shim=EMSGSIZE" >/dev/null || fail "$output"
	[ "${lines[-1]}" = OK ] || fail "$output"
}
