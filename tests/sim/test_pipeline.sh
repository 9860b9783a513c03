#!/usr/bin/env bash
# The whole pipeline on the simulator: membal-sim live serves a host in a
# real xenstored; the real collectd runs vmmem + membal (Backend "sim",
# policy cagma, Period 1). One guest's working set grows 50 MiB -> 400 MiB
# at t=15 s; the static split (341 MiB) cannot hold it (it needs 464 MiB).
# membal must move memory from the idle guests so that it covers the
# demand, and the sum of what the guests hold never exceeds the pool.
. "$MEMBAL_SOURCE_DIR/tests/lib/membal_lib.bash"

sim=$MEMBAL_BUILD_DIR/sim/membal-sim
[ -x "$sim" ] || mb_fail "$sim not built"
ldd "$sim" | grep libxenstore >/dev/null || mb_skip "membal-sim built without libxenstore: no live mode"
[ -f "$MB_PLUGINDIR/membal.so" ] && [ -f "$MB_PLUGINDIR/vmmem.so" ] ||
  mb_skip "vmmem/membal plugins not built in $MB_PLUGINDIR (sim backend off?)"
mb_xenstored_start

scn=$MB_DIR/pipeline.scn
cat >"$scn" <<'SCN'
name pipeline
title whole pipeline: mono test on a live simulated host
duration 60
interval 1
host total=1536M reserve=512M
vm mono max=1024M
vm idle1 max=1024M
vm idle2 max=1024M
ws mono 0:50M 15:50M 20:400M
ws idle1 0:40M
ws idle2 0:40M
intensity mono 0:5000
SCN

mb_bg "$MB_DIR/sim.log" "$sim" live --scenario "$scn" --xenstore --csv "$MB_DIR/sim.csv"
sim_pid=$MB_LAST_PID
mb_wait_for 10 xenstore-exists /tool/membal-sim/dom/3 || mb_fail "sim did not start: $(cat "$MB_DIR/sim.log")"

mbt_conf "$MB_DIR/collectd.conf" <<CONF
  Policy "cagma"
  Period 1
  Reserve "512MiB"
CONF
mb_collectd_start "$MB_DIR/collectd.conf"

cur_of() { xenstore-read -R "/tool/membal-sim/dom/$1" | sed -n 's/^current_kib //p'; }
# By t=45 s the grown guest must hold its demand (464 MiB = 475136 KiB).
mb_wait_for 50 bash -c "[ \$(xenstore-read -R /tool/membal-sim/dom/1 | sed -n 's/^current_kib //p') -ge 475136 ]" ||
  mb_fail "mono never got its 464 MiB: $(cur_of 1) KiB; $(tail -5 "$MB_DIR/sim.log")"
mb_log "mono holds $(cur_of 1) KiB at sim t=$(xenstore-read /tool/membal-sim/time)"
sum=$(($(cur_of 1) + $(cur_of 2) + $(cur_of 3)))
[ "$sum" -le $((1024 * 1024)) ] || mb_fail "guests hold $sum KiB, pool is 1048576"
mb_assert "membal logged its decisions" mbt_membal_log "mono"

mb_wait_for 70 bash -c "! kill -0 $sim_pid" || mb_fail "sim did not finish"
wait "$sim_pid" || mb_fail "sim exit status $?"
# the pool was never exceeded in any simulated second
awk -F, 'NR > 1 { s = $4 + $9 + $14; if (s > 1024.5) { print "t=" $1 " sum " s; bad = 1 } } END { exit bad }' \
  "$MB_DIR/sim.csv" || mb_fail "pool exceeded (csv)"
mb_log "ok"
