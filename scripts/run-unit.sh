#!/usr/bin/env bash
# run-unit.sh - run each cmocka unit test binary given as an argument.
#
# Counts test cases from cmocka's summary lines; a binary that dies before
# printing one (crash, sanitizer abort, timeout) counts as one failure.
# Exit code 77 from a binary means "skipped" (liburing convention).
# The last line is always `unit: N passed, N failed`; exit status is non-zero
# when anything failed.
set -uo pipefail

UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}
# cmocka's plain output format is the one parsed below.
unset CMOCKA_MESSAGE_OUTPUT CMOCKA_TEST_ABORT

passed=0
failed=0
skipped=0
bad=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for bin in "$@"; do
	name=$(basename "$bin")
	timeout --kill-after=5 "$UNIT_TIMEOUT" "$bin" >"$log" 2>&1
	rc=$?
	if ((rc == 77)); then
		skipped=$((skipped + 1))
		echo "unit: $name: skipped"
		continue
	fi
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
	if ((rc != 0 && f == 0)); then
		# Died without reporting a failed case: crash, sanitizer, timeout.
		f=1
	fi
	if ((rc != 0 || f != 0)); then
		cat "$log"
		case $rc in
		124 | 137) echo "unit: $name: timed out after ${UNIT_TIMEOUT}s" ;;
		*) echo "unit: $name: FAILED (exit status $rc)" ;;
		esac
		bad+=("$name")
	else
		echo "unit: $name: $p passed"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
done

((skipped > 0)) && echo "unit: $skipped binaries skipped"
((${#bad[@]} > 0)) && echo "unit: failing: ${bad[*]}"
echo "unit: $passed passed, $failed failed"
((failed == 0))
