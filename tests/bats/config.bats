#!/usr/bin/env bats
# An invalid value: one line on stderr naming the variable, the library
# disables itself, the program runs unchanged.

load helpers

# Runs the loopback app with VAR=VALUE; stdout and stderr kept apart.
run_with() {
	run stderr_to "$T/err" shim "$1=$2" "$PY" "$APP" loopback
}

check_invalid() {
	local var=$1 val=$2
	run_with "$var" "$val"
	assert_status 0
	local l
	l=$(line_with LOOPBACK) || fail "$var=$val: program output changed: $output"
	[ "$(kv "$l" active)" = 0 ] || fail "$var=$val: library still active: $l"
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "$var=$val: stderr is not exactly one line:
$(cat "$T/err")"
	grep -q "$var" "$T/err" || fail "$var=$val: stderr does not name $var: $(cat "$T/err")"
}

@test "invalid config: HBSHIM_INTERVAL=5x -> one stderr line, program unchanged" {
	check_invalid HBSHIM_INTERVAL 5x
}

@test "invalid config: other variables are named too" {
	check_invalid HBSHIM_TIMEOUT soon
	check_invalid HBSHIM_CONNECT_TIMEOUT -1s
	check_invalid HBSHIM_IDLE_TIMEOUT 10parsecs
	check_invalid HBSHIM_LOG loud
	check_invalid HBSHIM_ACCEPT maybe
	check_invalid HBSHIM_INTERVAL 99999999999999s
}

@test "valid durations are accepted silently: 250ms, 5s, 1m, bare 2" {
	local v
	for v in 250ms 5s 1m 2; do
		run_with HBSHIM_INTERVAL "$v"
		assert_status 0
		[ ! -s "$T/err" ] || fail "HBSHIM_INTERVAL=$v: stderr: $(cat "$T/err")"
		[ "$(kv "$(line_with LOOPBACK)" active)" = 1 ] || fail "HBSHIM_INTERVAL=$v: inactive: $output"
	done
}
