#!/usr/bin/env bats
# The shape of the build products: what the shared objects export.

load helpers

# libc functions the library may interpose (a superset of what it does).
ALLOWED_LIBC="
socket socketpair connect accept accept4 listen bind shutdown
setsockopt getsockopt getsockname getpeername
close close_range closefrom fclose fdopen dup dup2 dup3 fcntl fcntl64 ioctl
read write readv writev pread pwrite pread64 pwrite64 preadv pwritev preadv2 pwritev2
recv recvfrom recvmsg recvmmsg send sendto sendmsg sendmmsg sendfile sendfile64 splice
__read_chk __recv_chk __recvfrom_chk __poll_chk __ppoll_chk
poll ppoll select pselect epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
fork vfork _Fork daemon prctl syscall
execl execle execlp execv execve execvp execvpe fexecve posix_spawn posix_spawnp system clone capset
"

# Defined dynamic symbols of $1, without version suffixes. Type A entries are
# version-node names (HBSHIM_0.1), not code or data.
exports() {
	nm -D --defined-only "$1" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u
}

@test "exports: libhbshim.so exports only interposed libc names and hbshim_*" {
	need_cmd nm
	run exports "$HB_LIB"
	assert_status 0
	[ -n "$output" ] || fail "no exported symbols at all"
	local bad=() s
	for s in $output; do
		case $s in hbshim_*) continue ;; esac
		case " $(echo $ALLOWED_LIBC) " in *" $s "*) continue ;; esac
		bad+=("$s")
	done
	[ ${#bad[@]} -eq 0 ] || fail "unexpected exports: ${bad[*]}"
	# The public API and the core interposers are really there.
	for s in hbshim_version hbshim_active hbshim_fd_mode socket connect accept close recv send; do
		grep -qx "$s" <<<"$output" || fail "$s is not exported"
	done
}

@test "exports: the no-op stub exports exactly the three hbshim_ functions" {
	need_cmd nm
	[ -f "$HB_NOOP" ] || fail "$HB_NOOP missing"
	run exports "$HB_NOOP"
	assert_status 0
	[ "$output" = "$(printf '%s\n' hbshim_active hbshim_fd_mode hbshim_version)" ] ||
		fail "stub exports: $(echo $output)"
}

@test "exports: the stub answers 'not loaded'; the library answers active" {
	# Under SAN= the stub is instrumented too: sanitizer runtime first.
	run plain "${SAN_ENV[@]}" LD_PRELOAD="${HB_SAN_PRELOAD:+$HB_SAN_PRELOAD }$HB_NOOP" "$PY" -c 'import ctypes
l = ctypes.CDLL(None)
l.hbshim_version.restype = ctypes.c_char_p
print(l.hbshim_version().decode(), l.hbshim_active(), l.hbshim_fd_mode(0))'
	assert_status 0
	[ "$output" = "0.1.0-noop 0 0" ] || fail "stub said: $output"

	run shim "$PY" -c 'import ctypes
l = ctypes.CDLL(None)
l.hbshim_version.restype = ctypes.c_char_p
print(l.hbshim_version().decode(), l.hbshim_active(), l.hbshim_fd_mode(0))'
	assert_status 0
	[ "$output" = "0.1.0 1 0" ] || fail "library said: $output"
}

@test "layers.py: a circle between two files and a source over 800 lines fail; --floors puts every file above what it uses" {
	need_cmd nm
	need_cmd cc
	mkdir -p "$T/obj" "$T/src"
	printf 'int b(int);\nint a(int x) { return x ? b(x - 1) : 0; }\n' >"$T/a.c"
	printf 'int a(int);\nint b(int x) { return x ? a(x - 1) : 1; }\n' >"$T/b.c"
	printf 'int a(int);\nint c(int x) { return a(x); }\n' >"$T/c.c"
	for f in a b c; do cc -c -o "$T/obj/$f.o" "$T/$f.c" || fail "cc $f.c"; done
	printf 'int x;\n' >"$T/src/a.c"

	run "$PY" "$HB_ROOT/scripts/layers.py" --src "$T/src" "$T/obj"
	[ "$status" -eq 1 ] || fail "a circle passed: $output"
	grep -qx "circle: a.c b.c" <<<"$output" || fail "$output"
	grep -qx "  a.c -> b.c: b" <<<"$output" || fail "$output"
	# c.c -> a.c is no circle: c.c stands on the floor above a.c.
	run "$PY" "$HB_ROOT/scripts/layers.py" --floors --src "$T/src" "$T/obj" b.o
	assert_status 0
	[ "${lines[0]}" = "floor  2: c.c" ] || fail "$output"
	[ "${lines[1]}" = "floor  1: a.c" ] || fail "$output"
	[ "${lines[-1]}" = "layers: 2 files, no circle, no file over 800 lines" ] || fail "$output"

	for i in $(seq 801); do echo "/* $i */"; done >"$T/src/long.c"
	run "$PY" "$HB_ROOT/scripts/layers.py" --src "$T/src" "$T/obj" b.o
	[ "$status" -eq 1 ] || fail "an 801-line file passed: $output"
	grep -qx "too long: long.c has 801 lines (at most 800)" <<<"$output" || fail "$output"
	sed -i '$d' "$T/src/long.c"
	run "$PY" "$HB_ROOT/scripts/layers.py" --src "$T/src" "$T/obj" b.o
	assert_status 0
}

@test "layers.py: the library has no dependency circle and every file's floor is above all it uses" {
	need_cmd nm
	run "$PY" "$HB_ROOT/scripts/layers.py" --floors "$HB_ROOT/build/obj"
	assert_status 0
	LAYERS_VERBOSE=1 "$PY" "$HB_ROOT/scripts/layers.py" --floors "$HB_ROOT/build/obj" >"$T/v"
	# Every dependency of a file stands on a lower floor than the file.
	awk '/^floor/ { n = $2 + 0; sub(/^floor +[0-9]+: /, ""); k = split($0, f, ", "); for (i = 1; i <= k; i++) fl[f[i]] = n }
	     / -> / { deps[$1] = $0 }
	     END { bad = 0; for (x in deps) { s = deps[x]; sub(/^[^>]*> /, "", s); k = split(s, d, ", ");
	           for (i = 1; i <= k; i++) if (d[i] != "" && fl[d[i]] >= fl[x]) { print x " -> " d[i]; bad = 1 } }
	           exit bad }' "$T/v" || fail "a dependency on the same floor or above: $(cat "$T/v")"
	# Interposers sit on the modes, never under them: no file but an
	# interposer (i_*.c) or the constructor (init.c) uses an interposer.
	run grep -E '^[a-z_]+\.c -> ' "$T/v"
	local up
	up=$(grep -E '^[a-z_]+\.c -> ' "$T/v" | grep -Ev '^(i_[a-z_]+|init)\.c ' | grep -E '(-> |, )i_[a-z_]+\.c' || true)
	[ -z "$up" ] || fail "a mode, core or OS file uses an interposer: $up"
}
