#!/usr/bin/env bats
# make demo on a machine that lacks its packages (nftables, iproute2,
# python3): not root, or root without network (apt-get fails), it says what
# is missing or what failed, skips the vanished-peer case (root, ip, nft)
# and still runs the frozen-peer case, which detects the frozen server. The
# machine is simulated: a fake dpkg-query and apt-get, and for the root case
# a PATH without nft (bare_machine.bash); nothing is installed or removed.

load helpers
load bare_machine

setup() {
	hb_setup
	need_cmd setpriv make
	bare_dir
	BIN="$BARE/bin"
	mkdir -p "$BIN"
	chmod 755 "$BIN"
}

teardown() {
	rm -rf "$BARE"
	hb_teardown
}

# make demo would rebuild what is out of date (not as nobody, not without cc).
need_built() {
	need_nosan "make demo runs the plain build"
	make -q -s --no-print-directory -C "$HB_ROOT" all || fail "the build is not up to date: run make"
}

# Case 2 ran to the end: the unshimmed client still blocked after 6 s, the
# shimmed one failed with ETIMEDOUT about the 2 s timeout after the freeze.
assert_frozen_case() {
	[[ $output == *"Case 2: frozen peer"* ]] || fail "case 2 did not run: $output"
	[[ $output == *"server frozen: after 6 s the client is still blocked in recv()"* ]] ||
		fail "unshimmed client not shown blocked: $output"
	local l t
	l=$(grep -E '^ +server frozen: recv failed: ' <<<"$output") || fail "no detection line: $output"
	[[ $l =~ recv\ failed:\ ETIMEDOUT\ after\ ([0-9.]+)\ s ]] || fail "not ETIMEDOUT: $l"
	t=${BASH_REMATCH[1]}
	in_range "$t" 1.9 2.3 || fail "detected after $t s, expected about 2 s: $l"
	[[ $output != *unexpected* ]] || fail "$output"
}

@test "make demo, not root: names the missing packages, skips the vanished-peer case, the frozen-peer case runs and detects" {
	need_built
	fake_dpkg "$BIN" python3
	run as_user "$BIN:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" make -s -C "$HB_ROOT" demo
	assert_status 0
	[[ $output == *"install-test-deps: missing (not root, not installing; what needs them will skip): nftables iproute2"* ]] ||
		fail "missing packages not named: $output"
	[[ $output == *"SKIPPED: this case needs root"*"Run: sudo make demo"* ]] ||
		fail "case 1 not skipped for root: $output"
	assert_frozen_case
}

@test "make demo as root without network (apt-get install fails) and no nft: the failure is named, the vanished-peer case skipped, the frozen-peer case runs and detects" {
	need_root "the install path (apt-get is a fake here)"
	need_built
	# Every command the Makefile, install-test-deps.sh and demo.sh use, but
	# no nft; dpkg-query says nftables is not installed.
	bare_path "$BIN" bash make dirname id awk grep sed mktemp rm cat tail date sleep ip
	fake_dpkg "$BIN" iproute2 python3
	fake_apt "$BIN" "$T/apt.log" install-fails
	run timeout 60 env -i PATH="$BIN" HOME="$BARE" make -s -C "$HB_ROOT" demo
	assert_status 0
	grep -qxF -- "-o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends nftables" "$T/apt.log" ||
		fail "apt-get calls: $(cat "$T/apt.log")"
	[[ $output == *"install-test-deps:   E: Failed to fetch"* ]] || fail "apt's error not shown: $output"
	[[ $output == *"install-test-deps: apt-get install nftables failed (exit 100); not installed: nftables; what needs them will skip"* ]] ||
		fail "the failed install not named: $output"
	[[ $output == *"SKIPPED: 'nft' is not installed"* ]] || fail "case 1 not skipped for nft: $output"
	assert_frozen_case
}

@test "install-test-deps --best-effort as root: a failed apt-get update is named and the exit status is 0" {
	need_root "the install path (apt-get is a fake here)"
	bare_path "$BIN" bash dirname id awk grep sed mktemp rm cat tail
	fake_dpkg "$BIN"
	fake_apt "$BIN" "$T/apt.log" update-fails
	run timeout 30 env -i PATH="$BIN" "$HB_ROOT/scripts/install-test-deps.sh" --best-effort nftables iproute2
	assert_status 0
	[[ $output == *"install-test-deps:   E: The repository"* ]] || fail "apt's error not shown: $output"
	[[ $output == *"apt-get update failed (exit 100); not installed: nftables iproute2; what needs them will skip"* ]] ||
		fail "$output"
	! grep -q install "$T/apt.log" || fail "install tried after the failed update: $(cat "$T/apt.log")"
}
