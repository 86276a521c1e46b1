#!/usr/bin/env bats
# The shim builds for arm64: its own system calls and the interposers'
# fallbacks use only calls in the generic table (ppoll, pselect6, dup3; no
# poll, select or dup2).

load helpers

@test "portability: every shim source compiles warning-free for arm64 (aarch64-linux-gnu-gcc)" {
	need_cmd aarch64-linux-gnu-gcc
	local f out=()
	for f in "$HB_ROOT"/shim/*.c; do
		if ! r=$(aarch64-linux-gnu-gcc -fsyntax-only -std=gnu11 -fPIC -fvisibility=hidden -D_GNU_SOURCE \
			-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
			-I"$HB_ROOT/include" -I"$HB_ROOT/shim" "$f" 2>&1) || [ -n "$r" ]; then
			out+=("$r")
		fi
	done
	[ ${#out[@]} -eq 0 ] || fail "$(printf '%s\n' "${out[@]}")"
}
