#!/usr/bin/env bats
# make deb on a machine without the packaging tools (README's first command):
# as root it installs exactly what the build needs (dpkg-dev, debhelper,
# lintian, build-essential and debian/control's Build-Depends), not root it
# prints the one apt-get line to run and fails. The machine is simulated:
# PATH holds only basic commands, dpkg-query and apt-get are fakes
# (bare_machine.bash); nothing is installed or removed.

load helpers
load bare_machine

# What build-deb.sh and install-test-deps.sh run before the build itself.
BASIC=(bash dirname awk tr sed grep id mktemp rm cat tail)

setup() {
	hb_setup
	need_cmd setpriv
	bare_dir
	BIN="$BARE/bin"
	bare_path "$BIN" "${BASIC[@]}"
}

teardown() {
	rm -rf "$BARE"
	hb_teardown
}

@test "make deb, not root, packaging tools missing: exit 1 and one 'sudo apt-get install' line naming exactly the missing packages" {
	fake_dpkg "$BIN"
	run as_user "$BIN" "$HB_ROOT/scripts/build-deb.sh"
	assert_status 1
	[ "$(grep -c 'apt-get' <<<"$output")" -eq 1 ] || fail "not one apt-get line: $output"
	grep -qxF "  sudo apt-get install --no-install-recommends dpkg-dev debhelper lintian build-essential" \
		<<<"$output" || fail "no apt-get line for the four packages: $output"
	[[ $output != *"make deps"* && $output != *"build-deb: built"* ]] || fail "$output"

	# Only what is missing; Build-Depends read from debian/control, with
	# versions, architectures and alternatives handled (a copy of the tree
	# with a changed control file).
	mkdir -p "$BARE/tree/debian"
	cp -r "$HB_ROOT/scripts" "$BARE/tree/"
	printf '%s\n' 'Source: hbshim' 'Build-Depends: debhelper-compat (= 13),' \
		' libfoo-dev (>= 1.2) [amd64] | libbar-dev,' ' pkgconf' 'Standards-Version: 4.6.2' \
		>"$BARE/tree/debian/control"
	chmod -R a+rX "$BARE/tree"
	fake_dpkg "$BIN" dpkg-dev lintian pkgconf
	run as_user "$BIN" "$BARE/tree/scripts/build-deb.sh"
	assert_status 1
	grep -qxF "  sudo apt-get install --no-install-recommends debhelper build-essential libfoo-dev" \
		<<<"$output" || fail "expected debhelper build-essential libfoo-dev: $output"
}

@test "make deb as root, packaging tools missing: one apt-get update, then apt-get install of exactly those packages" {
	need_root "the install path (apt-get is a fake here)"
	fake_dpkg "$BIN" lintian
	fake_apt "$BIN" "$T/apt.log"
	run timeout 30 env -i PATH="$BIN" HOME="$BARE" "$HB_ROOT/scripts/build-deb.sh"
	# The fake apt-get installs nothing: the build stops at the missing tool.
	assert_status 1
	[[ $output == *"build-deb: dpkg-buildpackage is missing"* ]] || fail "$output"
	local want="-o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends dpkg-dev debhelper build-essential"
	[ "$(grep -c . "$T/apt.log")" -eq 2 ] || fail "apt-get calls: $(cat "$T/apt.log")"
	[ "$(sed -n 1p "$T/apt.log")" = "-o DPkg::Lock::Timeout=600 update -qq" ] || fail "$(cat "$T/apt.log")"
	[ "$(sed -n 2p "$T/apt.log")" = "$want" ] || fail "apt-get $(sed -n 2p "$T/apt.log"), expected $want"
}

@test "make deb as root without network: the failed apt-get install is named with apt's error, exit 1 before the build" {
	need_root "the install path (apt-get is a fake here)"
	fake_dpkg "$BIN"
	fake_apt "$BIN" "$T/apt.log" install-fails
	run timeout 30 env -i PATH="$BIN" HOME="$BARE" "$HB_ROOT/scripts/build-deb.sh"
	assert_status 1
	[[ $output == *"apt-get install dpkg-dev debhelper lintian build-essential failed (exit 100)"* ]] ||
		fail "no failure line: $output"
	[[ $output == *"E: Failed to fetch"* ]] || fail "apt's error not shown: $output"
	[[ $output == *"build-deb: the packages above are needed to build the .deb"* ]] || fail "$output"
	[[ $output != *"is missing"* ]] || fail "went on past the failed install: $output"
}
