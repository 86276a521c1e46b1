#!/usr/bin/env bats
# A raw clone's child (memory of its own, no fork handlers) takes over the
# fork child's bookkeeping; its fd table may still be the parent's
# (CLONE_FILES), and then the fds in it are not the child's to close.

load helpers

setup() { hb_setup; }
teardown() { hb_teardown; }

@test "review_clone: a CLONE_FILES child leaves the parent's lingering duplicate open" {
	need_helper clonefiles
	run shim HBSHIM_FRAME='*' "$HB_HELPERS/clonefiles" files
	assert_status 0
	[[ ${lines[0]} =~ ^LINGER\ fd=[0-9]+$ ]] || fail "$output"
	# Shared table: the child sees the parent's duplicate and leaves it.
	[ "${lines[1]}" = "CHILD open" ] || fail "$output"
	[ "${lines[2]}" = "PARENT open" ] || fail "$output"
}

@test "review_clone: without CLONE_FILES the child still closes its own copy of the duplicate" {
	need_helper clonefiles
	run shim HBSHIM_FRAME='*' "$HB_HELPERS/clonefiles" own
	assert_status 0
	[[ ${lines[0]} =~ ^LINGER\ fd=[0-9]+$ ]] || fail "$output"
	[ "${lines[1]}" = "CHILD closed" ] || fail "$output"
	[ "${lines[2]}" = "PARENT open" ] || fail "$output"
}

@test "review_clone: where kcmp is refused a CLONE_FILES child still leaves the parent's duplicate open" {
	need_helper clonefiles
	need_helper nokcmp
	run shim HBSHIM_FRAME='*' "$HB_HELPERS/nokcmp" "$HB_HELPERS/clonefiles" files
	[ "$status" -ne 2 ] || skip "seccomp filter not installed: $output"
	assert_status 0
	[ "${lines[1]}" = "CHILD open" ] || fail "$output"
	[ "${lines[2]}" = "PARENT open" ] || fail "$output"
}
