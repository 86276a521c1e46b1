#!/usr/bin/env bash
# fault-harness.sh - run one command under a list of network faults and
# report how it ended under each (exit status, time, faults injected).
#
#   examples/fault-harness.sh [-s SEED] [-f SCENARIOS] -- COMMAND [ARGS...]
#
# SCENARIOS is a file with one HBSHIM_FAULTS value per line ('#' comments;
# an empty value runs the command undisturbed); without -f a built-in list
# is used. hbshim (the wrapper) is looked up beside this script's ../build,
# then in PATH. Each run's events go to a temporary directory, kept and
# named at the end. Exit status: 0 (the report is the result).
set -u

seed=1
scenarios=
while getopts s:f: opt; do
	case $opt in
	s) seed=$OPTARG ;;
	f) scenarios=$OPTARG ;;
	*) echo "usage: $0 [-s SEED] [-f SCENARIOS] -- COMMAND [ARGS...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [-s SEED] [-f SCENARIOS] -- COMMAND [ARGS...]" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
wrap=$here/../build/hbshim
[ -x "$wrap" ] || wrap=$(command -v hbshim) || { echo "hbshim not found" >&2; exit 2; }

builtin_list() {
	cat <<'LIST'
# baseline
 
latency=300ms,jitter=50ms
bandwidth=20k
slicer=1
reset,bytes=100,dir=in
close,bytes=100
limit_data=500
errno=ECONNRESET,call=read,nth=2
hang,after=1s
refuse
timeout
delay=1s
LIST
}

out=$(mktemp -d "${TMPDIR:-/tmp}/fault-harness.XXXXXX")
printf '%-40s %6s %8s %s\n' SCENARIO STATUS SECONDS FAULTS
n=0
while IFS= read -r rule; do
	case $rule in \#*) continue ;; esac
	rule=${rule## }
	n=$((n + 1))
	t0=$(date +%s%N)
	"$wrap" --events "$out/$n.events" --seed "$seed" ${rule:+--fault "$rule"} -- "$@" \
		>"$out/$n.out" 2>"$out/$n.err" </dev/null
	rc=$?
	t1=$(date +%s%N)
	faults=$(grep -c '"event":"fault"' "$out/$n.events" 2>/dev/null)
	printf '%-40s %6s %8s %s\n' "${rule:-(none)}" "$rc" \
		"$(( (t1 - t0) / 1000000 / 1000 )).$(printf %03d $(( (t1 - t0) / 1000000 % 1000 )))" \
		"${faults:-0}"
done < <(if [ -n "$scenarios" ]; then cat "$scenarios"; else builtin_list; fi)
echo "outputs and events: $out"
