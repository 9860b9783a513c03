#!/usr/bin/env bash
# Every test: installs missing packages (including Xen, QEMU and libvirtd for
# the end-to-end tests), builds with ASan+UBSan and -Werror, runs the unit,
# integration and end-to-end tests (ctest), after the valgrind check of the
# plugins in the Release build (ctest -L valgrind). Extra arguments go to
# the main ctest (e.g. -L vmmem, -L unit, -R membal, -LE e2e; a label per
# component: docs/testing.md).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMBAL_TEST_BUILD:-$src/build/test}
"$src/.ci/install-deps.sh" --e2e
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DMEMBAL_SANITIZE=ON -DMEMBAL_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# An optimised -Werror build too: gcc's -O2 flow analysis warns where -O0
# does not (maybe-uninitialized).
cmake -S "$src" -B "$build-release" -DCMAKE_BUILD_TYPE=Release -DMEMBAL_WERROR=ON >/dev/null
cmake --build "$build-release" -j"$(nproc)" >/dev/null
rc=0
# valgrind (memcheck) over the plugins in the real collectd: needs plugins
# without ASan, so it runs in the Release build. It runs first so that the
# run ends with the summary of the full test suite.
(cd "$build-release" && ctest --output-on-failure -L valgrind) || rc=$?
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@" || rc=$?
exit "$rc"
