#!/usr/bin/env bats
# The wrapper never hands one libc's library to the other libc's program
# (the program would not start: "libc.so: invalid ELF header" for a glibc
# program with the musl library, "Error relocating" the other way), nor a
# library to a program of another architecture: it refuses with exit 126
# and one line naming both. Scripts are followed through their "#!" line
# (and /usr/bin/env NAME). A statically linked program runs, with a
# warning. Needs build/musl (make musl) besides build/.

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
MB="$ROOT/build/musl"
GB="$ROOT/build"

setup() {
	[ -x "$MB/hbshim" ] && [ -x "$MB/helpers/xpair" ] || skip "build/musl not built (make musl)"
	[ -x "$GB/hbshim" ] || skip "build/hbshim not built (make)"
	T=$(mktemp -d)
}

teardown() {
	rm -rf "$T"
}

@test "glibc program, musl library: refused with 126, one clear line" {
	run env HBSHIM_LIBRARY="$MB/libhbshim.so" "$GB/hbshim" /bin/echo hello
	echo "$output"
	[ "$status" -eq 126 ]
	[[ $output == "hbshim: /bin/echo: /bin/echo is a glibc program ("*") but $MB/libhbshim.so is built for musl: its loader cannot load it; use an hbshim built for glibc" ]]
	[[ $output != *hello* ]]
}

@test "musl wrapper (its own musl library), glibc program: refused with 126" {
	run "$MB/hbshim" /bin/echo hello
	echo "$output"
	[ "$status" -eq 126 ]
	[[ $output == *"is a glibc program"*"built for musl"* ]]
}

@test "musl program, glibc library: refused with 126" {
	run env HBSHIM_LIBRARY="$GB/libhbshim.so" "$GB/hbshim" "$MB/helpers/xpair" server
	echo "$output"
	[ "$status" -eq 126 ]
	[[ $output == *"xpair is a musl program (/lib/ld-musl-"*") but $GB/libhbshim.so is built for glibc"* ]]
}

@test "a script is judged by its interpreter, through #! and env" {
	printf '#!/usr/bin/env sh\necho script ran\n' >"$T/s.sh"
	chmod +x "$T/s.sh"
	run "$MB/hbshim" "$T/s.sh"
	echo "$output"
	[ "$status" -eq 126 ]
	[[ $output == "hbshim: $T/s.sh: "*"is a glibc program"* ]]
	[[ $output != *"script ran"* ]]
	# The right library: it runs.
	run "$GB/hbshim" "$T/s.sh"
	[ "$status" -eq 0 ]
	[ "$output" = "script ran" ]
}

@test "matching libcs run as before, the shim active" {
	run "$MB/hbshim" --log debug "$MB/helpers/xpair" bogus
	echo "$output"
	[ "$status" -eq 2 ] # xpair's usage error: it ran
	[[ $output == *"hbshim["*"]: debug: loaded"* ]]
	run "$GB/hbshim" /bin/echo hello
	[ "$status" -eq 0 ]
	[ "$output" = hello ]
}

@test "another architecture: refused with 126" {
	[ -x "$ROOT/build/arm64/helpers/xpair" ] || skip "build/arm64 not built (make arm64)"
	run "$GB/hbshim" "$ROOT/build/arm64/helpers/xpair" server
	echo "$output"
	[ "$status" -eq 126 ]
	[[ $output == *"xpair is built for another architecture (ELF machine 183) than $GB/libhbshim.so"* ]]
}

@test "a statically linked program runs, with a warning" {
	command -v musl-gcc >/dev/null || skip "musl-gcc missing"
	printf 'int main(void) { return 7; }\n' >"$T/st.c"
	musl-gcc -static -o "$T/st" "$T/st.c"
	run "$GB/hbshim" "$T/st"
	echo "$output"
	[ "$status" -eq 7 ]
	[[ $output == "hbshim: warning: $T/st is statically linked: LD_PRELOAD does not apply to it, the shim will not be active" ]]
}
