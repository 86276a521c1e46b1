#!/usr/bin/env bats
# The Debian packages built by `make deb` (build/deb/), installed with dpkg
# the way a user installs them, then used on a real program. Changes the
# system (dpkg -i, then dpkg --purge): run by `make check-deb` and CI, not by
# `make check`.

load ../bats/helpers

setup_file() {
	[ "$(id -u)" -eq 0 ] || return 0
	ls "$BATS_TEST_DIRNAME"/../../build/deb/hbshim_*.deb >/dev/null 2>&1 || return 0
	dpkg -i "$BATS_TEST_DIRNAME"/../../build/deb/hbshim_*.deb \
		"$BATS_TEST_DIRNAME"/../../build/deb/hbshim-dev_*.deb >"$BATS_FILE_TMPDIR/dpkg.log" 2>&1
}

teardown_file() {
	[ "$(id -u)" -eq 0 ] && dpkg --purge hbshim-dev hbshim >/dev/null 2>&1 || true
}

setup() {
	hb_setup
	need_root "dpkg -i"
	ls "$HB_ROOT"/build/deb/hbshim_*.deb >/dev/null 2>&1 || fail "no package in build/deb: run make deb"
	dpkg-query -W -f='${Status}' hbshim 2>/dev/null | grep -q 'install ok installed' ||
		fail "dpkg -i failed: $(cat "$BATS_FILE_TMPDIR/dpkg.log")"
	MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
}

@test "deb: the files are where Debian puts them: wrapper in /usr/bin, library in the multiarch folder, man pages" {
	[ -x /usr/bin/hbshim ] || fail "no /usr/bin/hbshim"
	[ -f "/usr/lib/$MA/hbshim/libhbshim.so" ] || fail "no /usr/lib/$MA/hbshim/libhbshim.so"
	[ -f "/usr/lib/$MA/libhbshim-noop.so.0" ] || fail "no noop stub"
	run man -w hbshim
	assert_status 0
	[ "$output" = /usr/share/man/man1/hbshim.1.gz ] || fail "man -w hbshim: $output"
	run man -w 7 hbshim
	assert_status 0
	[ "$output" = /usr/share/man/man7/hbshim.7.gz ] || fail "man -w 7 hbshim: $output"
}

@test "deb: the installed wrapper runs a real program with the installed library (keepalive options on its connections)" {
	run plain /usr/bin/hbshim --interval 2s --timeout 6s -- "$PY" "$APP" loopback
	assert_status 0
	local l
	l=$(line_with LOOPBACK) || fail "no LOOPBACK line: $output"
	[ "$(kv "$l" active)" = 1 ] || fail "library not active: $l"
	# A real client and server under the packaged wrapper: the client's
	# socket carries the derived keepalive settings.
	local port
	port=$(free_port)
	bg srv plain /usr/bin/hbshim --interval 2s --timeout 6s -- "$PY" "$APP" serve 127.0.0.1 "$port"
	wait_listen "$port"
	run plain /usr/bin/hbshim --interval 2s --timeout 6s -- "$PY" "$APP" client-opts 127.0.0.1 "$port"
	assert_status 0
	l=$(line_with OPTS) || fail "no OPTS line: $output"
	[ "$(kv "$l" keepalive)" = 1 ] || fail "SO_KEEPALIVE not set: $l"
	[ "$(kv "$l" user_timeout)" -gt 0 ] || fail "TCP_USER_TIMEOUT not set: $l"
	[ "$(kv "$l" active)" = 1 ] || fail "not active: $l"
}

@test "deb: hbshim-dev's pkg-config file builds against the stub; the packaged library answers when preloaded" {
	cat >"$T/q.c" <<'C'
#include <stdio.h>
#include <hbshim.h>
int main(void) { printf("%s %d\n", hbshim_version(), hbshim_active()); return 0; }
C
	# shellcheck disable=SC2046
	cc -o "$T/q" "$T/q.c" $(pkg-config --cflags --libs hbshim) || fail "build with pkg-config failed"
	run plain "$T/q"
	assert_status 0
	[[ $output == *"-noop 0" ]] || fail "stub: $output"
	run plain /usr/bin/hbshim -- "$T/q"
	assert_status 0
	[[ $output != *noop* && $output == *" 1" ]] || fail "under the wrapper: $output"
}
