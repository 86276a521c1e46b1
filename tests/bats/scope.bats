#!/usr/bin/env bats
# Per-command scope (HBSHIM_ONLY_CMDS / HBSHIM_SKIP_CMDS, wrapper --only /
# --skip): under an entrypoint or a service manager every child inherits
# LD_PRELOAD; the library acts only in the programs named (basename of
# argv[0]) and is passive elsewhere, as with HBSHIM_DISABLE=1, while the
# environment still reaches programs further down unchanged.
#
# "py-other" is a symlink to python3: the same interpreter under another
# argv[0], so the two programs differ in their name only. The library's view
# of a connection is read back from the socket (SO_KEEPALIVE and the other
# options the shim sets) and from hbshim_active(); the events file says which
# processes tracked a connection at all.

load helpers

setup() {
	hb_setup
	ln -s "$PY" "$T/py-other"
	OTHER="$T/py-other"
	# The wrapper of this build, with the library under test (and, under a
	# sanitizer build, the runtime preloaded already, as wrapper.bats does).
	WRAP=(timeout --kill-after=2 "$HB_CMD_TIMEOUT" env "${SAN_ENV[@]}"
		${HB_SAN_PRELOAD:+LD_PRELOAD="$HB_SAN_PRELOAD"} HBSHIM_LIBRARY="$HB_LIB" "$HB_WRAP")
}

# Number of events NAME in file F (0 when the file does not exist).
count_events() {
	local n
	n=$(grep -c "\"event\":\"$2\"" "$1" 2>/dev/null) || true
	echo "${n:-0}"
}

# A server that accepts and holds connections (no shim); port in $SRV_PORT.
start_holder() {
	bg holder plain "$PY" "$APP" serve 127.0.0.1 0
	wait_line "$T/holder.out" LISTENING
	SRV_PORT=$(awk '/^LISTENING/ {print $2; exit}' "$T/holder.out")
}

# The Nth OPTS line of $output (the clients run one after the other).
opts_nth() {
	grep '^OPTS' <<<"$output" | sed -n "${1}p"
}

@test "--only python3 -- sh -c: python3's connections tuned, py-other, nc and socat in the same shell passive, nested python3 active" {
	need_cmd nc socat
	start_holder
	# sh (passive) runs: python3, py-other, nc, socat, then sh -> sh -> python3.
	run "${WRAP[@]}" --only python3 --interval 1s --events "$T/ev" -- sh -c '
		"$1" "$2" client-opts 127.0.0.1 "$3" none 2
		"$4" "$2" client-opts 127.0.0.1 "$3" none 1
		nc -z 127.0.0.1 "$3"
		socat -u /dev/null "TCP:127.0.0.1:$3"
		sh -c "sh -c \"\\\"$1\\\" \\\"$2\\\" client-opts 127.0.0.1 $3 none 2\""
		env | grep -c "^HBSHIM_ONLY_CMDS=python3\$"
	' sh "$PY" "$APP" "$SRV_PORT" "$OTHER"
	assert_status 0
	local py other nested
	py=$(opts_nth 1)
	other=$(opts_nth 2)
	nested=$(opts_nth 3)
	# python3: keepalive on with the shim's numbers (1s interval -> idle 1).
	[ "$(kv "$py" keepalive)" = 1 ] && [ "$(kv "$py" idle)" = 1 ] &&
		[ "$(kv "$py" active)" = 1 ] || fail "python3 not tuned: $py"
	[ "$(kv "$py" user_timeout)" != 0 ] || fail "python3 without TCP_USER_TIMEOUT: $py"
	# py-other: the kernel's defaults, the library loaded but passive.
	[ "$(kv "$other" keepalive)" = 0 ] && [ "$(kv "$other" user_timeout)" = 0 ] &&
		[ "$(kv "$other" active)" = 0 ] && [ "$(kv "$other" mode)" = 0 ] ||
		fail "py-other was touched: $other"
	# Two passive shells in between: the environment reached python3.
	[ "$(kv "$nested" keepalive)" = 1 ] && [ "$(kv "$nested" active)" = 1 ] ||
		fail "nested python3 not tuned: $nested"
	[ "$(tail -n 1 <<<"$output")" = 1 ] || fail "the shell's environment lost HBSHIM_ONLY_CMDS: $output"
	# Only the two python3 processes tracked a connection: py-other, nc and
	# socat (and sh) tracked none.
	[ "$(count_events "$T/ev" connect)" -eq 2 ] ||
		fail "connect events: $(count_events "$T/ev" connect), expected 2: $(cat "$T/ev")"
	[ "$(grep -o '"pid":[0-9]*' "$T/ev" | sort -u | wc -l)" -eq 2 ] ||
		fail "events from other processes: $(cat "$T/ev")"
}

@test "--skip python3: python3 passive, py-other and nc tuned" {
	need_cmd nc
	start_holder
	run "${WRAP[@]}" --skip python3 --skip sh --interval 1s --events "$T/ev" -- sh -c '
		"$1" "$2" client-opts 127.0.0.1 "$3" none 1
		"$4" "$2" client-opts 127.0.0.1 "$3" none 2
		nc -z 127.0.0.1 "$3"
	' sh "$PY" "$APP" "$SRV_PORT" "$OTHER"
	assert_status 0
	local py other
	py=$(opts_nth 1)
	other=$(opts_nth 2)
	[ "$(kv "$py" keepalive)" = 0 ] && [ "$(kv "$py" user_timeout)" = 0 ] &&
		[ "$(kv "$py" active)" = 0 ] || fail "python3 was touched: $py"
	[ "$(kv "$other" keepalive)" = 1 ] && [ "$(kv "$other" idle)" = 1 ] &&
		[ "$(kv "$other" active)" = 1 ] || fail "py-other not tuned: $other"
	# py-other and nc: one connect event each.
	[ "$(count_events "$T/ev" connect)" -eq 2 ] ||
		fail "connect events: $(count_events "$T/ev" connect), expected 2: $(cat "$T/ev")"
}

@test "framed only in python3: two python3 ends framed through a skipped socat relay that carries the frames raw" {
	need_cmd socat
	local sport rport
	sport=$(free_port)
	rport=$(free_port)
	local -a opts=(--skip socat --frame "127.0.0.1:*" --interval 200ms --events "$T/ev" --)
	head -c 100000 /dev/urandom >"$T/in"
	bg srv "${WRAP[@]}" "${opts[@]}" "$PY" "$APP" echo-server 127.0.0.1 "$sport"
	wait_line "$T/srv.out" LISTENING
	# -r: socat's own copy of every byte it read from the client side.
	bg relay "${WRAP[@]}" "${opts[@]}" socat -r "$T/dump" \
		"TCP-LISTEN:$rport,bind=127.0.0.1,reuseaddr" "TCP:127.0.0.1:$sport"
	local relay=$BG_PID
	wait_listen "$rport"
	run "${WRAP[@]}" "${opts[@]}" "$PY" "$APP" echo-client 127.0.0.1 "$rport" 100000
	assert_status 0
	[ "$output" = "ECHO OK 100000" ] || fail "client: $output"
	# The relay read the client's hello (magic e5 48 42 53, version 01) and
	# data frames: more than the 100000 application bytes.
	[ "$(head -c 5 "$T/dump" | od -An -tx1 | tr -d ' \n')" = e548425301 ] ||
		fail "the relay did not see the hello: $(head -c 16 "$T/dump" | od -An -tx1)"
	[ "$(stat -c %s "$T/dump")" -gt 100000 ] || fail "the relay saw $(stat -c %s "$T/dump") bytes: no frames"
	# Both python3 ends framed; the relay tracked nothing.
	[ "$(count_events "$T/ev" framed)" -ge 2 ] || fail "framed events: $(cat "$T/ev")"
	! grep -q "\"pid\":$relay," "$T/ev" || fail "the relay (pid $relay) tracked a connection: $(cat "$T/ev")"
}

@test "a program out of scope that inherits a framed connection through exec stays active: its reads are decoded" {
	local port
	port=$(free_port)
	local -a opts=(--only python3 --frame "127.0.0.1:$port" --interval 200ms --)
	bg srv "${WRAP[@]}" "${opts[@]}" "$PY" "$APP" echo-server 127.0.0.1 "$port"
	wait_line "$T/srv.out" LISTENING
	# python3 (framed) sends "hello", makes the socket its stdin and execs
	# head, which is out of scope: head must read the echo, not the frames.
	run "${WRAP[@]}" "${opts[@]}" "$PY" -c '
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"hello")
os.dup2(s.fileno(), 0)
os.execvp("head", ["head", "-c", "5"])
' "$port"
	assert_status 0
	[ "$output" = hello ] || fail "head read: $(printf %s "$output" | od -An -c)"
}

@test "invalid names: the wrapper exits 2 with one line, the library disables itself with one line" {
	local v
	for v in a/b "python3,,sh" "$(printf 'x%.0s' {1..256})" \
		"$(printf 'n,%.0s' {1..32})n"; do
		run stderr_to "$T/err" "${WRAP[@]}" --only "$v" -- true
		assert_status 2
		[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^hbshim: HBSHIM_ONLY_CMDS: invalid value' "$T/err" ||
			fail "--only $v: $(cat "$T/err")"
		run stderr_to "$T/err" shim HBSHIM_SKIP_CMDS="$v" "$PY" "$APP" loopback
		assert_status 0
		[ "$(kv "$(line_with LOOPBACK)" active)" = 0 ] || fail "HBSHIM_SKIP_CMDS=$v: active: $output"
		[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q 'HBSHIM_SKIP_CMDS: invalid value' "$T/err" ||
			fail "HBSHIM_SKIP_CMDS=$v: $(cat "$T/err")"
	done
	# The limits themselves are accepted: 32 names, a name of 255 bytes,
	# blanks around names.
	for v in "$(printf 'n,%.0s' {1..31})python3" "$(printf 'x%.0s' {1..255}), python3 "; do
		run stderr_to "$T/err" shim HBSHIM_ONLY_CMDS="$v" "$PY" "$APP" loopback
		assert_status 0
		[ ! -s "$T/err" ] || fail "HBSHIM_ONLY_CMDS=$v: $(cat "$T/err")"
		[ "$(kv "$(line_with LOOPBACK)" active)" = 1 ] || fail "HBSHIM_ONLY_CMDS=$v: $output"
	done
}

@test "the name is argv[0]'s basename: a symlink's name, the interpreter of a script, exec -a" {
	need_cmd bash
	printf '#!%s\nimport runpy, sys\nsys.argv = [sys.argv[0], "loopback"]\nrunpy.run_path(%s, run_name="__main__")\n' \
		"$PY" "'$APP'" >"$T/myscript"
	chmod +x "$T/myscript"
	local name cmd want
	# name in HBSHIM_ONLY_CMDS | command | active= expected
	while IFS='|' read -r name cmd want; do
		run plain HBSHIM_ONLY_CMDS="$name" "${SHIM_ENV[@]}" bash -c "$cmd" x "$PY" "$APP" "$OTHER" "$T/myscript"
		assert_status 0
		[ "$(kv "$(line_with LOOPBACK)" active)" = "$want" ] ||
			fail "HBSHIM_ONLY_CMDS=$name, $cmd: expected active=$want: $output"
	done <<'TABLE'
py-other|"$3" "$2" loopback|1
python3|"$3" "$2" loopback|0
python3|"$4"|1
myscript|"$4"|0
renamed|exec -a renamed "$1" "$2" loopback|1
python3|exec -a renamed "$1" "$2" loopback|0
TABLE
}
