#!/usr/bin/env bash
# libkiln as an embedder gets it: `cmake --install` into a fresh prefix, then the
# scheduler example built from that prefix alone (pkg-config kiln, <kiln/kiln.hpp>),
# not from the source tree, and run on the test guest.
# usage: check_install.sh BUILD_DIR SOURCE_DIR TESTGUEST_ELF
set -euo pipefail
build=$1 src=$2 guest=$3
prefix=$(mktemp -d /tmp/kiln-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pcdir=$(dirname "$(find "$prefix" -name kiln.pc | head -1)")
[[ -f $prefix/include/kiln/kiln.hpp ]] || { echo "FAIL: no include/kiln/kiln.hpp"; exit 1; }
[[ -x $prefix/bin/kiln ]] || { echo "FAIL: no bin/kiln"; exit 1; }
# The example is copied out, so nothing from the source tree is on the include path.
cp "$src/examples/scheduler.cpp" "$prefix/app.cpp"
flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs kiln)
echo "c++ -std=c++23 app.cpp $flags"
# shellcheck disable=SC2086 # the flags are words
c++ -std=c++23 -O1 -o "$prefix/app" "$prefix/app.cpp" $flags
out=$("$prefix/app" -j 2 "$guest" "job=exit status=3" "job=exit status=0")
echo "$out"
grep -q "job 0 ended: exit status 3 " <<<"$out" || { echo "FAIL: job 0's status"; exit 1; }
grep -q "2 jobs, 1 succeeded, 1 failed" <<<"$out" || { echo "FAIL: the summary"; exit 1; }
echo "ok: the installed libkiln builds and runs the scheduler example"
