#!/usr/bin/env bash
# build-deb.sh - build the Debian packages from the files git knows (committed
# or not; build/ and other ignored files left out) in a scratch copy, then run
# lintian on them. The .deb files land in build/deb/. Exit status non-zero on
# a failed build or on any lintian error; lintian's warnings are printed.
#
# What the build needs is installed first, when root (scripts/install-test-deps.sh
# --required): dpkg-dev, debhelper, lintian, build-essential (dpkg-buildpackage
# requires it on Debian) and debian/control's Build-Depends. Not root, the one
# apt-get line to run is printed and the exit status is 1. No fakeroot:
# Rules-Requires-Root is no.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build-Depends as install-test-deps needs: version and architecture
# restrictions dropped, "a | b" as "a|b", debhelper-compat (virtual) as the
# package that provides it.
build_depends() {
	awk '/^Build-Depends:/ { on = 1; sub(/^Build-Depends:/, ""); print; next }
		on && /^[ \t]/ { print; next } { on = 0 }' debian/control |
		tr '\n' ' ' | tr ',' '\n' |
		sed -e 's/([^)]*)//g; s/\[[^]]*\]//g; s/<[^>]*>//g; s/[[:space:]]//g' \
			-e 's/^debhelper-compat$/debhelper/' | grep -v '^$'
}
mapfile -t needs < <({
	printf '%s\n' dpkg-dev debhelper lintian build-essential
	build_depends
} | awk '!seen[$0]++')
scripts/install-test-deps.sh --required "${needs[@]}" || {
	echo "build-deb: the packages above are needed to build the .deb" >&2
	exit 1
}

for c in dpkg-buildpackage dh lintian; do
	command -v "$c" >/dev/null 2>&1 || {
		echo "build-deb: $c is missing (Debian packages ${needs[*]})" >&2
		exit 1
	}
done

out=build/deb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/hbshim" "$out"
git ls-files -co --exclude-standard -z | tar --null -cf - -T - | tar -xf - -C "$work/hbshim"
(cd "$work/hbshim" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1 || {
	tail -40 "$work/build.log"
	echo "build-deb: dpkg-buildpackage failed" >&2
	exit 1
}
rm -f "$out"/*.deb
cp "$work"/*.deb "$work"/*.changes "$out"/
echo "build-deb: built $(cd "$out" && ls -- *.deb | tr '\n' ' ')"

# lintian as root says so on every run; the check itself is the same.
lintian --tag-display-limit 0 "$work"/*.changes 2>&1 | grep -v 'running with root privileges' | tee "$work/lintian.log" || true
if grep -q '^E: ' "$work/lintian.log"; then
	echo "build-deb: lintian reports errors" >&2
	exit 1
fi
echo "build-deb: lintian: $(grep -c '^E: ' "$work/lintian.log") errors, $(grep -c '^W: ' "$work/lintian.log") warnings"
