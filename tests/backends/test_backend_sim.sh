#!/usr/bin/env bash
# The sim backend's API (test_backend_sim.c, CUnit) against a
# real xenstored: parsing, fallbacks, set_target, request counts, the watch.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

prog=$MEMBAL_BUILD_DIR/tests/backends/test_backend_sim
[ -x "$prog" ] || mb_fail "$prog not built"
mb_xenstored_start
out=$MB_DIR/cunit.out
MB_SAN_LOGS+=("$out")
rc=0
ASAN_OPTIONS=detect_leaks=1 "$prog" >"$out" 2>&1 || rc=$?
cat "$out" >&2
[ "$rc" -eq 0 ] || mb_fail "CUnit program exited $rc"
grep -Eq 'asserts +[0-9]+ +[0-9]+ +[0-9]+ +0 ' "$out" || mb_fail "CUnit reported failed asserts"
mb_log "PASS"
