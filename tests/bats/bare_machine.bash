# bare_machine.bash - a machine without the Debian packages, simulated for
# deps.bats and demo.bats without removing anything from the system.
#
#   bare_dir               $BARE: a fresh directory that nobody can enter
#                          (the test's own is private); the test removes it
#   bare_path DIR CMD...   DIR holds links to CMD... only (and whatever
#                          fake_* put there): PATH=DIR is a machine on which
#                          every other command is missing
#   fake_dpkg DIR [PKG...] dpkg-query in DIR reports only PKG... installed
#   fake_apt DIR LOG [update-fails] [install-fails]
#                          apt-get in DIR appends its arguments to LOG and
#                          succeeds, or fails the way it does without network
#                          (exit 100, apt's error line); apt-cache policy
#                          offers every package
#   as_user PATH CMD...    CMD with nothing in its environment but PATH (and
#                          HOME), bounded by HB_CMD_TIMEOUT; as nobody
#                          when the test runs as root (the scripts' not-root
#                          path)

bare_dir() {
	BARE=$(mktemp -d -t hb-bare.XXXXXX)
	chmod 755 "$BARE"
}

bare_path() {
	local dir=$1 c p
	mkdir -p "$dir"
	chmod 755 "$dir"
	for c in "${@:2}"; do
		p=$(command -v "$c") || fail "bare_path: no $c on this machine"
		ln -sf "$p" "$dir/$c"
	done
}

fake_dpkg() {
	local dir=$1
	{
		echo '#!/bin/bash'
		echo 'printf "%s installed\n" bash'
		local p
		for p in "${@:2}"; do
			echo "printf '%s installed\n' '$p'"
		done
	} >"$dir/dpkg-query"
	chmod 755 "$dir/dpkg-query"
}

fake_apt() {
	local dir=$1 log=$2 upd=0 ins=0 a
	for a in "${@:3}"; do
		case $a in update-fails) upd=100 ;; install-fails) ins=100 ;; esac
	done
	: >"$log"
	chmod 666 "$log"
	cat >"$dir/apt-get" <<SH
#!/bin/bash
echo "\$*" >>'$log'
case " \$* " in
*" update "*) [ $upd -eq 0 ] || echo "E: The repository 'http://deb.debian.org/debian bookworm Release' does not have a Release file." >&2; exit $upd ;;
*" install "*) [ $ins -eq 0 ] || echo "E: Failed to fetch http://deb.debian.org/debian/pool/main/n/nftables/nftables_1.0.6-2_amd64.deb  Temporary failure resolving 'deb.debian.org'" >&2; exit $ins ;;
esac
SH
	cat >"$dir/apt-cache" <<'SH'
#!/bin/bash
[ "$1" = policy ] && printf '%s:\n  Installed: (none)\n  Candidate: 1.0-1\n' "$2"
SH
	chmod 755 "$dir/apt-get" "$dir/apt-cache"
}

as_user() {
	local path=$1
	shift
	local -a env=(env -i PATH="$path" HOME="$BARE")
	if [ "$(id -u)" -eq 0 ]; then
		timeout --kill-after=2 "$HB_CMD_TIMEOUT" \
			setpriv --reuid=65534 --regid=65534 --clear-groups -- "${env[@]}" "$@"
	else
		timeout --kill-after=2 "$HB_CMD_TIMEOUT" "${env[@]}" "$@"
	fi
}
