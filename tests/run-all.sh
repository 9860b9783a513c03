#!/usr/bin/env bash
# Every test: installs missing packages, builds with ASan+UBSan and -Werror,
# runs the unit and integration tests (ctest), then valgrind on the plugins.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMBAL_TEST_BUILD:-$src/build/test}
"$src/contrib/install-deps.sh" ${MEMBAL_E2E:+--e2e}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DMEMBAL_SANITIZE=ON -DMEMBAL_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
