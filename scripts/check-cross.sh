#!/usr/bin/env bash
# check-cross.sh - the checks for other libcs and architectures (make
# check-cross builds build/musl and build/arm64 first):
#   arm64: every unit test (cmocka for arm64: Debian's libcmocka-dev:arm64,
#          multiarch) under qemu-aarch64-static, then tests/cross/xpair.bats
#   both:  tests/cross/wrapper_libc.bats (the wrapper refuses a library of
#          another libc or architecture)
#   musl:  every unit test, run natively (cmocka compiled with musl-gcc from
#          Debian's cmocka source package: scripts/musl-cmocka.sh), then
#          tests/cross/xpair.bats
# The cross libc is the loader prefix and the library path under qemu, so a
# multiarch libc6:arm64 on the host is never mixed with the cross loader.
set -uo pipefail
cd "$(dirname "$0")/.."

QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
fail=0

if ! command -v qemu-aarch64-static >/dev/null; then
	echo "check-cross: qemu-aarch64-static missing (Debian qemu-user-static)" >&2
	exit 1
fi
names=$(ls tests/unit/test_*.c | sed 's|tests/unit/\(.*\)\.c|\1|')
units=$(printf 'build/musl/unit/%s\n' $names)
if make --no-print-directory B=build/musl CC=musl-gcc $units >/dev/null; then
	scripts/run-unit.sh $units | sed 's/^/musl /' || fail=1
else
	echo "musl unit: cannot build (cmocka from Debian's source package: see scripts/musl-cmocka.sh)"
	fail=1
fi
units=$(printf 'build/arm64/unit/%s\n' $names)
if make --no-print-directory B=build/arm64 CC=aarch64-linux-gnu-gcc $units >/dev/null; then
	for t in $units; do
		if timeout -s KILL 300 "${QEMU[@]}" "$t" >"$t.log" 2>&1; then
			echo "arm64 unit: $(basename "$t") ok"
		else
			echo "arm64 unit: $(basename "$t") FAILED"
			tail -20 "$t.log"
			fail=1
		fi
	done
else
	echo "arm64 unit: cannot build (cmocka for arm64: apt-get install libcmocka-dev:arm64 after dpkg --add-architecture arm64)"
	fail=1
fi
bats tests/cross/wrapper_libc.bats || fail=1
for target in musl arm64; do
	XTARGET=$target bats tests/cross/xpair.bats || fail=1
done
exit $fail
