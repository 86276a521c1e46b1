#!/usr/bin/env bats
# A silently dead peer is detected within interval + timeout.
#
# Inside a private network namespace a python3 server accepts two clients and
# never sends; then an nftables rule drops every packet the server sends (the
# peer "vanished": no FIN, no RST, no ACK of keepalive probes). The shimmed
# client's blocked recv() must fail with ETIMEDOUT; the unshimmed client,
# started alongside as the baseline, must still be blocked after 8 s.

load helpers

PORT=4000

@test "dead peer: shimmed recv() fails ETIMEDOUT within the bound; unshimmed still blocked at 8 s" {
	netns_new
	bg srv ip netns exec "$NS" "$PY" "$APP" serve 127.0.0.1 "$PORT"
	wait_line "$T/srv.out" LISTENING

	bg base ip netns exec "$NS" "$PY" "$APP" client-recv 127.0.0.1 "$PORT"
	local base=$BG_PID
	bg shimmed ip netns exec "$NS" env "${SHIM_ENV[@]}" HBSHIM_INTERVAL=1s HBSHIM_TIMEOUT=3s \
		HBSHIM_EVENTS="$T/events" "$PY" "$APP" client-recv 127.0.0.1 "$PORT"
	local shimmed=$BG_PID
	wait_line "$T/base.out" READY
	wait_line "$T/shimmed.out" READY
	wait_count "$T/srv.out" ACCEPTED 2

	nft_drop "$NS" sport "$PORT"
	local t0=$SECONDS

	# Expected ~3 s (bound interval + timeout = 4 s), with slack.
	bg_wait "$shimmed" 8
	local l
	l=$(grep -E '^(ERR|EOF|DATA)' "$T/shimmed.out") ||
		fail "shimmed client still blocked after 8 s (status $BG_STATUS); stderr: $(cat "$T/shimmed.err")"
	[ "$BG_STATUS" -eq 0 ] || fail "shimmed client status $BG_STATUS: $(cat "$T/shimmed.err")"
	set -- $l
	[ "$1 $2 $3" = "ERR 110 ETIMEDOUT" ] || fail "shimmed client: $l (expected ERR 110 ETIMEDOUT)"
	in_range "$4" 1.0 5.5 || fail "detected after $4 s, expected 1.0..5.5 s"

	# The baseline, in parallel all along: still blocked 8 s after the drop.
	local rest=$((8 - (SECONDS - t0)))
	((rest > 0)) && sleep "$rest"
	kill -0 "$base" 2>/dev/null || fail "unshimmed client exited: $(cat "$T/base.out" "$T/base.err")"
	[ "$(cat "$T/base.out")" = READY ] || fail "unshimmed client: $(cat "$T/base.out")"

	# The detection is reported as a "dead" event with reason and silence.
	run "$PY" -c 'import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dead = [e for e in ev if e["event"] == "dead"]
assert dead, "no dead event in %r" % ev
assert "reason" in dead[0] and isinstance(dead[0]["silent_ms"], int), dead[0]
print(dead[0]["reason"], dead[0]["silent_ms"])' "$T/events"
	assert_status 0
}
