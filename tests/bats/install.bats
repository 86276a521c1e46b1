#!/usr/bin/env bats
# make install: what a user (or a package) gets, used the way a user would:
# the pkg-config file compiles a program against the query API and the
# no-op stub; the installed wrapper finds the installed library.

load helpers

setup() {
	hb_setup
	need_cmd make pkg-config cc
	need_nosan "installs the plain build"
	make -s -C "$HB_ROOT" install PREFIX="$T/usr" >"$T/install.log" 2>&1 ||
		fail "make install: $(cat "$T/install.log")"
	cat >"$T/q.c" <<'C'
#include <stdio.h>
#include <hbshim.h>
int main(void)
{
	printf("version=%s active=%d compiled=%s\n", hbshim_version(), hbshim_active(),
	       HBSHIM_VERSION_STRING);
	return 0;
}
C
}

@test "install: pkg-config --cflags --libs hbshim builds a program against the no-op stub; the preloaded library answers instead" {
	export PKG_CONFIG_PATH="$T/usr/lib/pkgconfig"
	run pkg-config --modversion hbshim
	assert_status 0
	local v
	v=$(sed -n 's/^#define HBSHIM_VERSION_STRING "\(.*\)"/\1/p' "$HB_ROOT/include/hbshim.h")
	[ "$output" = "$v" ] || fail "pkg-config says $output, the header $v"
	# shellcheck disable=SC2046
	cc -o "$T/q" "$T/q.c" $(pkg-config --cflags --libs hbshim) || fail "cannot build with pkg-config's flags"
	run plain LD_LIBRARY_PATH="$T/usr/lib" "$T/q"
	assert_status 0
	[ "$output" = "version=$v-noop active=0 compiled=$v" ] || fail "stub: $output"
	run plain LD_LIBRARY_PATH="$T/usr/lib" LD_PRELOAD="$T/usr/lib/libhbshim.so" "$T/q"
	assert_status 0
	[ "$output" = "version=$v active=1 compiled=$v" ] || fail "preloaded: $output"
}

@test "install: the installed wrapper finds the installed library and the man pages are in place" {
	run plain "$T/usr/bin/hbshim" --interval 2s -- "$PY" "$APP" loopback
	assert_status 0
	local l
	l=$(line_with LOOPBACK) || fail "no LOOPBACK line: $output"
	[ "$(kv "$l" active)" = 1 ] || fail "library not active under the installed wrapper: $l"
	[ -f "$T/usr/share/man/man1/hbshim.1" ] || fail "hbshim.1 not installed"
	[ -f "$T/usr/share/man/man7/hbshim.7" ] || fail "hbshim.7 not installed"
}
