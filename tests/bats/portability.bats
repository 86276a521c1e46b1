#!/usr/bin/env bats
# The shim builds for arm64: its own system calls and the interposers'
# fallbacks use only calls in the generic table (ppoll, pselect6, dup3; no
# poll, select or dup2). It builds for musl too, where the prototypes glibc
# has and musl lacks are declared by the file that exports the function.

load helpers

# warnings CC [EXTRA_FLAGS...]: compile every source of the library (and,
# when FILES is set, those files instead) with the Makefile's warning flags;
# prints each file's diagnostics, nothing when all are clean.
warnings() {
	local cc=$1 f r
	shift
	for f in ${FILES:-"$HB_ROOT"/shim/*.c}; do
		if ! r=$("$cc" -fsyntax-only -std=gnu11 -fPIC -fvisibility=hidden -D_GNU_SOURCE \
			-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
			"$@" -I"$HB_ROOT/include" -I"$HB_ROOT/shim" "$f" 2>&1) || [ -n "$r" ]; then
			printf '%s\n' "${r:-$f: failed without a message}"
		fi
	done
}

@test "portability: every shim source compiles warning-free for arm64 (aarch64-linux-gnu-gcc)" {
	need_cmd aarch64-linux-gnu-gcc
	out=$(warnings aarch64-linux-gnu-gcc)
	[ -z "$out" ] || fail "$out"
}

@test "portability: every shim source, the wrapper and the stub compile warning-free for musl (musl-gcc)" {
	need_cmd musl-gcc
	# The kernel-header links musl-gcc lacks, made by the Makefile's own rule.
	make -s -C "$HB_ROOT" B="$BATS_TEST_TMPDIR/musl" CC=musl-gcc "$BATS_TEST_TMPDIR/musl/kinc/.done" >/dev/null
	out=$(FILES="$HB_ROOT/shim/*.c $HB_ROOT/wrapper/hbshim.c $HB_ROOT/shim/stub/noop.c" \
		warnings musl-gcc -isystem "$BATS_TEST_TMPDIR/musl/kinc")
	[ -z "$out" ] || fail "$out"
}
