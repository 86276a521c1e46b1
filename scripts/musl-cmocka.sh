#!/usr/bin/env bash
# musl-cmocka.sh OUT - cmocka for the musl unit tests: OUT/lib/libcmocka.a
# and OUT/include/cmocka.h, compiled with $CC (musl-gcc) from Debian's own
# cmocka source package.
#
# Debian ships cmocka built for glibc only. The source comes through apt
# from the deb-src twin of every configured deb entry, with apt's state in
# OUT/apt (the system's apt configuration and lists are left alone, and root
# is not needed). apt checks the .dsc against the signed Sources index and
# dpkg-source the tarballs against the .dsc, then applies Debian's patches.
# The version is the installed libcmocka-dev's when it has one, so the musl
# tests use the cmocka the glibc and arm64 tests use.
#
# cmocka is one C file. Its CMake checks are replaced by the -D flags below,
# each of which holds on musl 1.2 (headers and functions present, GCC __thread).
set -euo pipefail

out=${1:?usage: musl-cmocka.sh OUT}
CC=${CC:-musl-gcc}
mkdir -p "$out"
out=$(cd "$out" && pwd)
apt_dir=$out/apt
rm -rf "$apt_dir" "$out/src" "$out/lib" "$out/include"
mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial" "$apt_dir/cache" "$out/dl"

# deb-src twins of the configured deb entries (one-line and deb822 formats).
: >"$apt_dir/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
	[[ -f $f ]] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$apt_dir/sources.list"
done
for f in /etc/apt/sources.list.d/*.sources; do
	[[ -f $f ]] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$apt_dir/parts/$(basename "$f")"
done

APT=(apt-get -q -o Dir::Etc::SourceList="$apt_dir/sources.list"
	-o Dir::Etc::SourceParts="$apt_dir/parts" -o Dir::State::Lists="$apt_dir/lists"
	-o Dir::Cache="$apt_dir/cache" -o APT::Sandbox::User=root)

want=cmocka
v=$(dpkg-query -W -f '${source:Version}\n' libcmocka-dev 2>/dev/null | head -1 || true)
[[ -n $v ]] && want=cmocka=$v

# An entry without a deb-src twin on its server (a third-party repository)
# makes update complain; only the result of the source download counts.
"${APT[@]}" update >"$apt_dir/update.log" 2>&1 || true
if ! (cd "$out/dl" && "${APT[@]}" source --download-only "$want" >"$apt_dir/source.log" 2>&1); then
	echo "musl-cmocka: apt-get source $want failed (needs a Debian mirror with deb-src):" >&2
	tail -n 5 "$apt_dir/update.log" "$apt_dir/source.log" >&2
	exit 1
fi
# The .dsc's own signature cannot be checked without debian-keyring (apt has
# checked its hash); dpkg-source still checks the tarballs' sums.
if ! dpkg-source -q --no-copy -x "$(ls "$out"/dl/cmocka_*.dsc | head -1)" "$out/src" \
	>"$apt_dir/unpack.log" 2>&1; then
	echo "musl-cmocka: dpkg-source -x failed:" >&2
	cat "$apt_dir/unpack.log" >&2
	exit 1
fi

mkdir -p "$out/lib" "$out/include"
"$CC" -std=gnu99 -O2 -g -fPIC -w \
	-DHAVE_SIGNAL_H -DHAVE_STRINGS_H -DHAVE_INTTYPES_H -DHAVE_MALLOC_H \
	-DHAVE_STRUCT_TIMESPEC -DHAVE_CLOCK_GETTIME -DHAVE_CLOCK_REALTIME \
	-DHAVE_SIGLONGJMP -DHAVE_STRSIGNAL -DHAVE_GCC_THREAD_LOCAL_STORAGE \
	-I"$out/src/include" -c -o "$out/lib/cmocka.o" "$out/src/src/cmocka.c"
ar rcs "$out/lib/libcmocka.a" "$out/lib/cmocka.o"
cp "$out/src/include/cmocka.h" "$out/include/"
echo "musl-cmocka: $(basename "$(ls "$out"/dl/cmocka_*.dsc)" .dsc) built with $CC"
