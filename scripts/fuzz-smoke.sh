#!/usr/bin/env bash
# fuzz-smoke.sh - run every fuzz target for a few seconds (make check).
#
# A quick guard that the targets still build, run and find nothing in
# FUZZ_SECONDS (default 3) each; real fuzzing is `make fuzz`. Skips with a
# message (exit 0) when clang or libFuzzer is not available.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
FUZZ_SECONDS=${FUZZ_SECONDS:-3} scripts/fuzz.sh "$@"
rc=$?
if ((rc == 77)); then
	echo "fuzz-smoke: skipped (clang with libFuzzer not available)"
	exit 0
fi
exit "$rc"
