#!/usr/bin/env bats
# The man pages hbshim(1) and hbshim(7): they render without warnings and
# cannot drift from the config table, the metrics or the events the library
# really produces.

load helpers

setup() {
	hb_setup
	need_cmd groff man
	MAN1="$HB_ROOT/build/man/hbshim.1"
	MAN7="$HB_ROOT/build/man/hbshim.7"
	[ -f "$MAN1" ] && [ -f "$MAN7" ] || fail "man pages not built (make man)"
}

# The page as text, one line per paragraph word run, hyphenation off.
render() { MANWIDTH=200 LC_ALL=C.UTF-8 man -l "$1" 2>"$T/man.err" | col -b; }

@test "man pages: groff -ww and man -l render hbshim(1) and hbshim(7) without a warning" {
	local p
	for p in "$MAN1" "$MAN7"; do
		LC_ALL=C.UTF-8 groff -ww -man -Tutf8 "$p" >"$T/out" 2>"$T/err"
		[ ! -s "$T/err" ] || fail "$p: groff warnings: $(cat "$T/err")"
		[ "$(wc -l <"$T/out")" -gt 40 ] || fail "$p: renders to almost nothing"
		render "$p" >"$T/page"
		[ ! -s "$T/man.err" ] || fail "$p: man -l: $(cat "$T/man.err")"
		grep -q '^NAME' "$T/page" || fail "$p: no NAME section"
	done
}

@test "man pages: every option and variable of the config table (--help) is documented with its default" {
	run "$HB_WRAP" --help
	assert_status 0
	render "$MAN1" >"$T/one"
	render "$MAN7" >"$T/seven"
	local n=0 opt env dflt
	# "  --opt ..." then "  (default: D; env E...)"
	while IFS='|' read -r opt dflt env; do
		n=$((n + 1))
		grep -qF -- "$opt" "$T/one" || fail "hbshim(1) lacks $opt"
		grep -qF -- "Sets $env; default: $dflt." "$T/one" || fail "hbshim(1): $opt does not say 'Sets $env; default: $dflt.'"
		grep -qE -- "^ +$env\$" "$T/seven" || fail "hbshim(7) lacks $env"
		grep -qF -- "Default: $dflt." "$T/seven" || fail "hbshim(7): no 'Default: $dflt.' ($env)"
	done < <(printf '%s\n' "$output" | awk '
		/^  --[a-z]/ && $1 != "--help" && $1 != "--version" { opt = $1; next }
		opt && /\(default: / { d = $0; sub(/.*\(default: /, "", d); e = d; sub(/;.*/, "", d)
			sub(/.*env /, "", e); sub(/[;)].*/, "", e); print opt "|" d "|" e; opt = "" }')
	[ "$n" -ge 10 ] || fail "only $n options read from --help"
}

@test "man pages: every metric the library writes and every event of a connection's life is in hbshim(7)" {
	run shim HBSHIM_STATS="$T/stats" HBSHIM_EVENTS="$T/ev" "$PY" "$APP" loopback
	assert_status 0
	render "$MAN7" >"$T/seven"
	local m n=0
	for m in $(awk '/^# TYPE/ { print $3 }' "$T/stats"); do
		n=$((n + 1))
		grep -qw -- "$m" "$T/seven" || fail "hbshim(7) does not document metric $m"
	done
	[ "$n" -ge 5 ] || fail "only $n metrics in the stats file: $(cat "$T/stats")"
	for m in $(jq -r .event "$T/ev" | sort -u); do
		grep -qw -- "$m" "$T/seven" || fail "hbshim(7) does not document event $m"
	done
	grep -q '"event":"accept"' "$T/ev" || fail "no accept event: $(cat "$T/ev")"
}

# The EVENTS section's entries (the .TP tags: ".B connect\fR, \fBaccept").
man_events() {
	awk '/^\.SH / { on = ($2 == "EVENTS") } on && tp { print; tp = 0 } on && /^\.TP/ { tp = 1 }' "$1" |
		sed -E 's/^\.[A-Z]+ //; s/\\f[A-Z]//g' | tr ', ' '\n\n' | grep -v '^$' | sort -u
}

@test "man pages: every event name the source can emit (hb_event_conn's names in shim/*.c) has an entry in hbshim(7)'s EVENTS" {
	run "$PY" "$BATS_TEST_DIRNAME/event_names.py" "$HB_ROOT/shim"
	assert_status 0
	local -a names
	mapfile -t names <<<"$output"
	# connect and accept reach hb_event_conn through opened()'s parameter.
	[ "${#names[@]}" -ge 9 ] || fail "only ${#names[@]} event names found in shim/: $output"
	printf '%s\n' "${names[@]}" | grep -qx connect || fail "connect not found: $output"
	printf '%s\n' "${names[@]}" | grep -qx accept || fail "accept not found: $output"
	local doc n
	doc=$(man_events "$MAN7")
	for n in "${names[@]}"; do
		grep -qxF -- "$n" <<<"$doc" || fail "hbshim(7) EVENTS has no entry for event '$n' (emitted in shim/); its entries: $(echo $doc)"
	done
}
