#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets of tests/fuzz/ and run each one.
#
#   scripts/fuzz.sh [TARGET...]       default: every tests/fuzz/fuzz_*.c
#
# Each target is built with clang -fsanitize=fuzzer,address,undefined into
# build/fuzz/TARGET (undefined behaviour aborts) and run for FUZZ_SECONDS
# (default 10) with -max_total_time, seeded from tests/fuzz/corpus/TARGET/
# (never written to); new inputs go to build/fuzz/corpus/TARGET/, crashing
# inputs to build/fuzz/artifacts/. One line per target reports its exec
# count. Exit status: 0 when every target ran clean, 1 when one crashed or
# failed to build, 77 when clang or libFuzzer is missing (nothing ran).
#
# Environment: FUZZ_SECONDS, CLANG (default clang), B (build dir, default
# build), FUZZ_FLAGS (extra libFuzzer flags, e.g. -jobs=2).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
CLANG=${CLANG:-clang}
B=${B:-build}
OUT=$B/fuzz
FUZZ_FLAGS=${FUZZ_FLAGS:-}

TARGET_CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fno-omit-frame-pointer
	"-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=undefined
	-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
	-Wno-unused-parameter -Iinclude -Ishim)

# The pure modules each target links (tests/fuzz/TARGET.c plus these).
sources() {
	case $1 in
	fuzz_decode | fuzz_hello) echo shim/codec.c ;;
	fuzz_config | fuzz_faults) echo shim/config.c shim/parse.c shim/fault.c shim/fmt.c ;;
	fuzz_inherit) echo shim/inherit_parse.c shim/codec.c ;;
	*) echo "fuzz: no source list for $1 (edit sources() in $0)" >&2; return 1 ;;
	esac
}

# Extra libFuzzer flags per target.
run_flags() {
	case $1 in
	fuzz_decode) echo -max_len=8192 ;;
	*) ;;
	esac
}

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "fuzz: $CLANG not found: install clang and libclang-rt-dev to fuzz" >&2
	exit 77
fi
mkdir -p "$OUT" || exit 1
probe=$OUT/.probe
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
	>"$probe.c"
if ! "$CLANG" -fsanitize=fuzzer,address,undefined -o "$probe" "$probe.c" >"$probe.log" 2>&1; then
	echo "fuzz: $CLANG cannot build libFuzzer targets (is libclang-rt-dev installed?):" >&2
	sed 's/^/  /' "$probe.log" >&2
	rm -f "$probe" "$probe.c" "$probe.log"
	exit 77
fi
rm -f "$probe" "$probe.c" "$probe.log"

if (($# > 0)); then
	targets=("$@")
else
	targets=()
	for f in tests/fuzz/fuzz_*.c; do
		targets+=("$(basename "$f" .c)")
	done
fi

failed=()
for t in "${targets[@]}"; do
	src=tests/fuzz/$t.c
	if [[ ! -f $src ]]; then
		echo "fuzz: $t: no $src"
		failed+=("$t")
		continue
	fi
	if ! srcs=$(sources "$t"); then
		failed+=("$t")
		continue
	fi
	# shellcheck disable=SC2086 # srcs is a word list
	if ! "$CLANG" "${TARGET_CFLAGS[@]}" -o "$OUT/$t" "$src" $srcs 2>"$OUT/$t.build.log" ||
		[[ -s $OUT/$t.build.log ]]; then
		# A warning fails the build too: targets stay warning-free.
		echo "fuzz: $t: build failed or warned:"
		sed 's/^/  /' "$OUT/$t.build.log"
		failed+=("$t")
		continue
	fi
	mkdir -p "$OUT/corpus/$t" "$OUT/artifacts"
	seeds=()
	[[ -d tests/fuzz/corpus/$t ]] && seeds=("tests/fuzz/corpus/$t")
	dict=()
	[[ -f tests/fuzz/$t.dict ]] && dict=("-dict=tests/fuzz/$t.dict")
	t0=$SECONDS
	# shellcheck disable=SC2046,SC2086 # flag lists
	"$OUT/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
		-artifact_prefix="$OUT/artifacts/$t-" $(run_flags "$t") "${dict[@]}" $FUZZ_FLAGS \
		"$OUT/corpus/$t" "${seeds[@]}" >"$OUT/$t.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log" | tail -1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/$t.log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$OUT/$t.log" | tail -1)
	if ((rc != 0)); then
		echo "fuzz: $t: FAILED (exit status $rc) after ${execs:-?} execs; log: $OUT/$t.log"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' \
			"$OUT/$t.log" | head -20 | sed 's/^/  /'
		failed+=("$t")
	else
		echo "fuzz: $t: ${execs:-?} execs in $((SECONDS - t0))s (${speed:-?}/s, ${cov:-cov: ?})"
	fi
done

if ((${#failed[@]} > 0)); then
	echo "fuzz: failing: ${failed[*]}"
	exit 1
fi
echo "fuzz: ${#targets[@]} targets clean"
