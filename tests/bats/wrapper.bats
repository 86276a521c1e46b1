#!/usr/bin/env bats
# build/hbshim [OPTIONS] -- CMD ARGS

load helpers

# The wrapper's own environment: under a sanitizer build the runtime must be
# preloaded already (the wrapper prepends the library in front of it).
wrap() {
	if [ -n "${HB_SAN_PRELOAD:-}" ]; then
		timeout 30 env "${SAN_ENV[@]}" LD_PRELOAD="$HB_SAN_PRELOAD${WRAP_PRELOAD:+ $WRAP_PRELOAD}" "$HB_WRAP" "$@"
	else
		timeout 30 env ${WRAP_PRELOAD:+LD_PRELOAD="$WRAP_PRELOAD"} "$HB_WRAP" "$@"
	fi
}

@test "wrapper: --version" {
	run wrap --version
	assert_status 0
	[ "$output" = "hbshim 0.1.0" ] || fail "--version said: $output"
}

@test "wrapper: --help documents the options" {
	run wrap --help
	assert_status 0
	local o
	for o in --interval --timeout --connect-timeout --idle-timeout --frame --accept \
		--log --log-file --events --stats; do
		grep -q -- "$o" <<<"$output" || fail "--help does not mention $o"
	done
}

@test "wrapper: a bad option value exits 2 with one line" {
	local args
	for args in "--interval 5x" "--timeout nope" "--accept sometimes" "--log loud" "--no-such-option"; do
		run wrap $args -- true
		[ "$status" -eq 2 ] || fail "hbshim $args: status $status, expected 2: $output"
		[ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ] || fail "hbshim $args: not one line: $output"
		[ -n "$output" ] || fail "hbshim $args: no message"
	done
}

@test "wrapper: LD_PRELOAD is prepended, not replaced" {
	local pre=/lib/x86_64-linux-gnu/libm.so.6
	[ -f "$pre" ] || pre=$(ls /lib/*/libm.so.6 | head -1)
	WRAP_PRELOAD="$pre"
	run wrap -- sh -c 'printf "%s\n" "$LD_PRELOAD"'
	assert_status 0
	local first rest
	first=${output%%[ :]*}
	rest=${output#"$first"}
	rest=${rest#[ :]}
	[ "$(basename "$first")" = libhbshim.so ] && [ -f "$first" ] || fail "first entry is not the library: $output"
	case $rest in *"$pre") ;; *) fail "existing LD_PRELOAD lost: $output" ;; esac
}

@test "wrapper: options reach the library (keepalive set from --interval/--timeout)" {
	local port
	port=$(free_port)
	bg srv plain "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	run wrap --interval 1s --timeout 3s -- "$PY" "$APP" client-opts 127.0.0.1 "$port"
	assert_status 0
	local l
	l=$(line_with OPTS) || fail "$output"
	[ "$(kv "$l" keepalive)" = 1 ] || fail "$l"
	[ "$(kv "$l" active)" = 1 ] || fail "$l"
	[ "$(kv "$l" user_timeout)" -le 3000 ] && [ "$(kv "$l" user_timeout)" -gt 0 ] || fail "$l"
}

@test "wrapper: used as an ENTRYPOINT, args pass through exactly and the exit code propagates" {
	run wrap --interval 1s -- "$PY" -c 'import json, sys
print(json.dumps(sys.argv[1:]))
sys.exit(7)' -- "two words" "" '$HOME' '*' --interval -x "ü"
	[ "$status" -eq 7 ] || fail "exit status $status, expected 7: $output"
	[ "$output" = '["--", "two words", "", "$HOME", "*", "--interval", "-x", "\u00fc"]' ] ||
		fail "argv changed: $output"
}

@test "wrapper: the command replaces the wrapper (PID 1 in a new pid namespace)" {
	need_root "a pid namespace"
	need_cmd unshare
	run timeout 20 unshare --pid --fork --kill-child env ${SAN_ENV[@]+"${SAN_ENV[@]}"} \
		${HB_SAN_PRELOAD:+LD_PRELOAD="$HB_SAN_PRELOAD"} "$HB_WRAP" --interval 1s -- \
		"$PY" -c 'import os, sys; print(os.getpid()); sys.exit(3)'
	[ "$status" -eq 3 ] || fail "exit status $status, expected 3: $output"
	[ "$output" = 1 ] || fail "command is not PID 1 (wrapper forked?): pid $output"
}

# A copy of a native dynamic program whose PT_INTERP names musl's loader and
# claims 2^64 - 1 bytes: the name buffer holds its first 127 bytes. Before,
# filesz + 1 wrapped to 0, the read asked for SIZE_MAX bytes into a 128-byte
# stack buffer (refused by the kernel: EFAULT), the name stayed empty and the
# program counted as "unknown libc".
@test "wrapper: PT_INTERP with p_filesz 2^64-1 is read within the name buffer" {
	$PY - "$T/evil" <<'PYEOF'
import os, struct, sys
b = bytearray(open('/bin/true', 'rb').read())
assert b[4] == 2 and b[5] == 1, "needs a 64-bit little-endian /bin/true"
phoff = struct.unpack_from('<Q', b, 0x20)[0]
phent, phnum = struct.unpack_from('<HH', b, 0x36)
done = False
for i in range(phnum):
    o = phoff + i * phent
    if struct.unpack_from('<I', b, o)[0] == 3:  # PT_INTERP
        off, size = struct.unpack_from('<Q', b, o + 8)[0], struct.unpack_from('<Q', b, o + 32)[0]
        name = b'/lib/ld-musl-x86_64.so.1'
        assert len(name) < size
        b[off:off + size] = name + b'\0' * (size - len(name))
        struct.pack_into('<Q', b, o + 32, 0xffffffffffffffff)
        done = True
assert done, "no PT_INTERP"
open(sys.argv[1], 'wb').write(b)
os.chmod(sys.argv[1], 0o755)
PYEOF
	run timeout 30 "$HB_WRAP" "$T/evil"
	assert_status 126
	grep -q "is a musl program (/lib/ld-musl-x86_64.so.1)" <<<"$output" ||
		fail "the interpreter was not read: $output"
}
