#!/usr/bin/env bash
# membal-sim live mode against a real xenstored: it serves the sim
# backend's schema (plugins/SCHEMA.md section 4), publishes guest records
# the policy parser accepts, follows memory/target at the balloon's speed,
# and survives hostile targets (not a number: ignored; out of range:
# clamped), logging both.
. "$MEMBAL_SOURCE_DIR/tests/lib/harness.sh"

sim=$MEMBAL_BUILD_DIR/sim/membal-sim
[ -x "$sim" ] || mb_fail "$sim not built"
ldd "$sim" | grep libxenstore >/dev/null || mb_skip "membal-sim built without libxenstore: no live mode"
mb_xenstored_start

scn=$MB_DIR/live.scn
cat >"$scn" <<'EOF'
name live
title live-mode test host
duration 600
interval 1
host total=1536M reserve=512M
balloon shrink=50M grow=200M
vm web max=1024M
vm idle1 max=1024M
vm idle2 max=768M
ws web 0:100M
ws idle1 0:40M
ws idle2 0:40M
EOF

mb_bg "$MB_DIR/sim.log" "$sim" live --scenario "$scn" --xenstore --csv "$MB_DIR/sim.csv"
sim_pid=$MB_LAST_PID
mb_wait_for 30 xenstore-exists /tool/membal-sim/dom/3 || mb_fail "sim did not publish its domains: $(cat "$MB_DIR/sim.log")"

dom_field() { xenstore-read -R "/tool/membal-sim/dom/$1" | awk -v k="$2" '$1 == k { print $2 }'; }

mb_assert_eq "web" "$(xenstore-read /local/domain/1/name)" "guest name"
mb_assert_eq "web" "$(dom_field 1 name)" "dom node name"
mb_assert_eq "Domain-0" "$(dom_field 0 name)" "dom0 node"
mb_assert_eq "1048576" "$(dom_field 1 max_kib)" "max_kib"
# equal split of the 1024 MiB pool
mb_assert_eq "349525" "$(dom_field 1 current_kib)" "boot memory"
mb_assert "host node" bash -c "xenstore-read -R /tool/membal-sim/host | grep -qx 'total_kib 1572864'"

# the guest record: fresh, parsed by the policy's own parser
mb_wait_for 30 xenstore-exists /local/domain/1/data/membal/stats || mb_fail "no guest record"
rec=$(xenstore-read -R /local/domain/1/data/membal/stats)
mb_assert "record header" grep -qx "membal 1" <<<"$rec"
dump=$MEMBAL_BUILD_DIR/tests/lib/mb-record-dump
if [ -x "$dump" ]; then
  mb_assert "record parses" bash -c "xenstore-read -R /local/domain/1/data/membal/stats | '$dump' >/dev/null"
fi
seq1=$(awk '$1 == "seq" { print $2 }' <<<"$rec")
mb_wait_for 30 bash -c "[ \"\$(xenstore-read -R /local/domain/1/data/membal/stats | awk '\$1 == \"seq\" {print \$2}')\" -gt $seq1 ]" ||
  mb_fail "record sequence did not advance"

# move memory: idle1 down to 200 MiB, web up to 600 MiB
t0=$(mb_now_ms)
xenstore-write /local/domain/2/memory/target 204800
xenstore-write /local/domain/1/memory/target 614400
mb_wait_for 60 bash -c "[ \$(xenstore-read -R /tool/membal-sim/dom/2 | awk '\$1==\"current_kib\"{print \$2}') -le 204800 ]" ||
  mb_fail "idle1 did not shrink: $(xenstore-read -R /tool/membal-sim/dom/2)"
t1=$(mb_now_ms)
# 141 MiB at 50 MiB/s: about 2.8 s, never instantaneous
[ $((t1 - t0)) -ge 2000 ] || mb_fail "balloon moved too fast: $((t1 - t0)) ms"
mb_wait_for 60 bash -c "[ \$(xenstore-read -R /tool/membal-sim/dom/1 | awk '\$1==\"current_kib\"{print \$2}') -ge 490000 ]" ||
  mb_fail "web did not grow into the freed memory: $(xenstore-read -R /tool/membal-sim/dom/1)"
free_kib=$(xenstore-read -R /tool/membal-sim/host | awk '$1 == "free_kib" { print $2 }')
[ "$free_kib" -lt 4096 ] || mb_fail "freed memory not used: host free $free_kib"

# xenstored restarts (empty store): the sim reconnects, re-creates its
# nodes and the guests' boot targets, and follows new targets again
mb_xenstored_restart
mb_wait_for 60 xenstore-exists /tool/membal-sim/dom/3 || mb_fail "nodes not re-created after a xenstored restart: $(tail -3 "$MB_DIR/sim.log")"
mb_assert "reconnect logged" grep -q "reconnected to xenstored" "$MB_DIR/sim.log"
mb_wait_for 30 xenstore-exists /local/domain/2/data/membal/stats || mb_fail "guest record not back after the restart"
xenstore-write /local/domain/2/memory/target 153600
mb_wait_for 60 bash -c "[ \$(xenstore-read -R /tool/membal-sim/dom/2 | awk '\$1==\"current_kib\"{print \$2}') -le 153600 ]" ||
  mb_fail "target after restart not followed: $(xenstore-read -R /tool/membal-sim/dom/2)"

# hostile targets
xenstore-write /local/domain/3/memory/target "lots please"
mb_wait_for 30 grep -q "domain 3: memory/target 'lots please' is not a decimal" "$MB_DIR/sim.log" ||
  mb_fail "garbage target not logged"
xenstore-write /local/domain/3/memory/target 99999999999
mb_wait_for 30 grep -q "domain 3: target 99999999999 KiB outside" "$MB_DIR/sim.log" ||
  mb_fail "huge target not clamped"
mb_assert_eq "786432" "$(dom_field 3 target_kib)" "target clamped to max"
kill -0 "$sim_pid" || mb_fail "sim died: $(cat "$MB_DIR/sim.log")"

# SIGTERM ends it cleanly (the scenario's 600 s are a limit no loaded
# machine reaches before this point): exit 0, one CSV row per simulated
# second until then
kill -TERM "$sim_pid"
mb_wait_for 30 bash -c "! kill -0 $sim_pid" || mb_fail "sim did not stop on SIGTERM"
wait "$sim_pid" || mb_fail "sim exit status $?"
done_t=$(sed -n 's/.*live: done at t=\([0-9]*\)\..*/\1/p' "$MB_DIR/sim.log")
[ -n "$done_t" ] || mb_fail "sim did not report its end: $(tail -3 "$MB_DIR/sim.log")"
rows=$(($(wc -l <"$MB_DIR/sim.csv") - 1))
mb_log "stopped at t=$done_t s with $rows CSV rows"
[ "$done_t" -ge 5 ] && [ "$done_t" -lt 600 ] || mb_fail "done at t=$done_t"
[ "$rows" -ge $((done_t - 1)) ] && [ "$rows" -le $((done_t + 1)) ] || mb_fail "csv rows: $rows for t=$done_t"
mb_log "ok"
