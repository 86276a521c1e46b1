# real_programs.bash - what the real-program files (real_handover.bats,
# real_forking_servers.bats) share: a shimmed server and a framed client
# of it, and the checks on their events and stats.
#
# The file sets, in setup: SRV_EV (the server's events file), STATS (where
# the server's processes write their stats, st.%p.prom), SRV_ENV and
# CLI_ENV (extra variables for each end), and PORT before `client`.

# serve NAME CMD...: the server under the shim, events in $SRV_EV, stats per
# process in $STATS.
serve() {
	local name=$1
	shift
	bg "$name" shim "${SRV_ENV[@]}" HBSHIM_EVENTS="$SRV_EV" HBSHIM_STATS="$STATS/st.%p.prom" "$@"
}

# timed CMD...: run CMD, its elapsed seconds in $ELAPSED.
timed() {
	local t0 rc=0
	t0=$(date +%s%N)
	"$@" || rc=$?
	ELAPSED=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	return $rc
}

# client CMD...: a framed client of 127.0.0.1:$PORT, events in $T/cli.ev,
# stats per process in $T, stderr in $T/cli.err; elapsed seconds in
# $ELAPSED.
client() {
	timed shim HBSHIM_FRAME="127.0.0.1:$PORT" "${CLI_ENV[@]}" \
		HBSHIM_EVENTS="$T/cli.ev" HBSHIM_STATS="$T/st.%p.prom" "$@" 2>"$T/cli.err"
}

# framed_both: a "framed" event at both ends, no protocol_error or dead.
framed_both() {
	local f
	for f in "$SRV_EV" "$T/cli.ev"; do
		grep -q '"event":"framed"' "$f" 2>/dev/null ||
			fail "no \"framed\" event in $f: $(head -c 2000 "$f" 2>/dev/null)" || return 1
		if grep -qE '"event":"(protocol_error|dead)"' "$f"; then
			fail "$f: $(grep -E '"event":"(protocol_error|dead)"' "$f" | head -3)"
			return 1
		fi
	done
}

# no_errors: neither end logged a protocol_error or dead event (also for an
# unshimmed client, whose server stays raw).
no_errors() {
	! grep -E '"event":"(protocol_error|dead)"' "$SRV_EV" "$T/cli.ev" 2>/dev/null ||
		fail "errors in the events"
}

# heartbeats_crossed: heartbeats were received, summed over the stats files
# of every process at both ends (a client's reader writes its file at exit).
heartbeats_crossed() {
	local n files
	files=$(ls "$STATS"/st.*.prom "$T"/st.*.prom 2>/dev/null | sort -u)
	# shellcheck disable=SC2086 # file names without blanks, one per word
	n=$(cat $files /dev/null | awk '$1 == "hbshim_heartbeats_received_total" { s += $2 } END { print s + 0 }')
	echo "# heartbeats received, all processes: $n" >&3
	((n > 0)) || fail "no heartbeat received; stats files: $(ls "$STATS"/st.*.prom "$T"/st.*.prom 2>&1)"
}
