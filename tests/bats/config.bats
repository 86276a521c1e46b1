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

# README's settings table and the wrapper's --help come from the same place
# only if something holds them together: every variable of the config table
# (printed by --help) has one README row with the same option and default,
# and README lists no variable the library does not read.
@test "README's settings table matches the config table (variable, option, default)" {
	run "$HB_WRAP" --help
	assert_status 0
	# "ENV OPTION DEFAULT" for every row of --help ("-" when env only).
	"$PY" - "$HB_ROOT/README.md" >"$T/cmp" 2>&1 <<PYEOF || fail "$(cat "$T/cmp")"
import re, sys
help_text = """$output"""
table = {}
opt = None
for line in help_text.splitlines():
    m = re.match(r"  (--[a-z-]+)", line)
    if m:
        opt = m.group(1)
        continue
    m = re.match(r"\s+\(default: (.*); env (HBSHIM_[A-Z_]+)", line)
    if m and opt:
        table[m.group(2)] = (opt, m.group(1))
        opt = None
        continue
    m = re.match(r"  (HBSHIM_[A-Z_]+) .*\(default: (.*)\)$", line)
    if m:
        table[m.group(1)] = (None, m.group(2))
if len(table) < 5:
    sys.exit("could not read the options from --help:\n" + help_text)
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 4 and re.fullmatch(r"\x60HBSHIM_[A-Z_]+\x60", cells[0]):
        env = cells[0].strip("\x60")
        if env in rows:
            sys.exit("README lists %s twice" % env)
        rows[env] = cells
bad = []
for env, (opt, dflt) in table.items():
    if env not in rows:
        bad.append("README has no row for %s" % env)
        continue
    cells = rows[env]
    if opt and "\x60%s\x60" % opt not in cells[1]:
        bad.append("%s: README's option column %r, --help says %s" % (env, cells[1], opt))
    if cells[2].replace("\x60", "") != dflt:
        bad.append("%s: README's default %r, --help says %r" % (env, cells[2], dflt))
for env in rows:
    if env not in table:
        bad.append("README documents %s, which the config table does not have" % env)
if bad:
    sys.exit("\n".join(bad))
print("checked", len(table), "variables")
PYEOF
	grep -q '^checked [0-9]* variables$' "$T/cmp" || fail "$(cat "$T/cmp")"
}
