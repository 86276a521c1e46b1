#!/usr/bin/env bats
# What the shim reports: events (JSON lines), stats (Prometheus text), logs.

load helpers

@test "events: connect, accept and close are JSON lines with the documented fields" {
	run shim HBSHIM_EVENTS="$T/events" "$PY" "$APP" loopback
	assert_status 0
	local l pid port cport
	l=$(line_with LOOPBACK) || fail "app: $output"
	pid=$(kv "$l" pid) port=$(kv "$l" port) cport=$(kv "$l" cport)
	[ -s "$T/events" ] || fail "no events written"

	run "$PY" - "$T/events" "$pid" "$port" "$cport" <<'PY'
import json, sys
path, pid, port, cport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ev = []
for n, line in enumerate(open(path), 1):
    assert line.endswith("\n"), "line %d not newline-terminated" % n
    ev.append(json.loads(line))
for e in ev:
    for k in ("time", "event", "pid", "fd", "local", "peer", "mode"):
        assert k in e, "field %s missing in %r" % (k, e)
    assert e["pid"] == pid, e
    assert isinstance(e["fd"], int) and e["fd"] >= 0, e
names = [e["event"] for e in ev]
conn = [e for e in ev if e["event"] == "connect"]
acc = [e for e in ev if e["event"] == "accept"]
assert len(conn) == 1, names
assert len(acc) == 1, names
assert names.count("close") >= 2, names
c, a = conn[0], acc[0]
assert c["mode"] == "keepalive" and a["mode"] == "keepalive", (c, a)
assert c["peer"] == "127.0.0.1:" + port and c["local"] == "127.0.0.1:" + cport, c
assert a["local"] == "127.0.0.1:" + port and a["peer"] == "127.0.0.1:" + cport, a
print("OK", " ".join(names))
PY
	assert_status 0
	[ "${output%% *}" = OK ] || fail "$output"
}

@test "events: jq parses every line" {
	need_cmd jq
	run shim HBSHIM_EVENTS="$T/events" "$PY" "$APP" loopback
	assert_status 0
	run jq -e -s 'length >= 3 and all(.[]; (.event | type) == "string" and (.pid | type) == "number")' "$T/events"
	assert_status 0
}

@test "stats: HBSHIM_STATS holds hbshim_ metrics in Prometheus text after exit" {
	run shim HBSHIM_STATS="$T/stats" "$PY" "$APP" loopback
	assert_status 0
	[ -s "$T/stats" ] || fail "no stats file after exit"
	run "$PY" - "$T/stats" <<'PY'
import re, sys
sample = re.compile(r'^(hbshim_[a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$')
names = set()
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        if line.startswith("# TYPE") or line.startswith("# HELP"):
            assert line.split()[2].startswith("hbshim_"), "line %d: %s" % (n, line)
        continue
    m = sample.match(line)
    assert m, "line %d is not a hbshim_ sample: %r" % (n, line)
    names.add(m.group(1))
assert names, "no samples"
print("OK", len(names), "metrics")
PY
	assert_status 0
	[ "${output%% *}" = OK ] || fail "$output"
}

@test "log: HBSHIM_LOG=debug with HBSHIM_LOG_FILE writes prefixed lines there, not to stderr" {
	run stderr_to "$T/err" shim HBSHIM_LOG=debug HBSHIM_LOG_FILE="$T/log" "$PY" "$APP" loopback
	assert_status 0
	[ ! -s "$T/err" ] || fail "stderr not empty: $(cat "$T/err")"
	[ -s "$T/log" ] || fail "log file empty at debug level"
	run grep -cv '^hbshim\[[0-9]*\]' "$T/log"
	[ "$output" = 0 ] || fail "unprefixed log lines: $(grep -v '^hbshim\[[0-9]*\]' "$T/log" | head -3)"
}
