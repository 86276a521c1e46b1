#!/usr/bin/env bash
# build-deb.sh - build the Debian packages from the files git knows (committed
# or not; build/ and other ignored files left out) in a scratch copy, then run
# lintian on them. The .deb files land in build/deb/. Exit status non-zero on
# a failed build or on any lintian error; lintian's warnings are printed.
#
# Needs dpkg-dev, debhelper and lintian (make deps installs them as root).
set -euo pipefail
cd "$(dirname "$0")/.."

for c in dpkg-buildpackage dh lintian; do
	command -v "$c" >/dev/null 2>&1 || {
		echo "build-deb: $c is missing (Debian packages dpkg-dev, debhelper, lintian; make deps installs them)" >&2
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
