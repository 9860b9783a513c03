#!/usr/bin/env bash
# Regression test of D1 (issue 11) on the real pipeline: collectd restarted
# 20 times while a neighbour storms (100 urgent records a second). Before,
# a round right after a (re)start used a half-arrived sample of an honest
# guest (vmmem's per-field values reassembled by membal) and cagma shrank
# it from 891 to 411 MiB although it used 810 MiB. Now membal only gets
# whole samples (one message each) and freezes a domain it has none of.
#
# Every decision membal dispatches is recorded by collectd's stock csv
# plugin (every value with its time, unlike RRD's one per second). Over all
# 20 lifetimes, for the honest guest vm1 (working set 810 MiB):
#   - 0 rounds decided on a partial sample: every decision made with a
#     sample (reason not stale-frozen) has a critical amount (cma) of at
#     least its working set, which any whole sample of it gives;
#   - 0 shrinks below its working set: every dispatched target, and every
#     target membal logged setting, is >= 810 MiB.
# Each lifetime lasts until membal ran 3 rounds (Period 1 s, plus the
# storm's urgent rounds) and decided on vm1 with a sample: waits on
# progress only.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
ws_mib=810
restarts=${MB_RESTARTS:-20}
bench=$MEMBAL_BUILD_DIR/tests/vmmem/vmmem-bench
[ -x "$bench" ] || mb_fail "$bench not built"
mb_xenstored_start
mbt_guests $((4096 * MiB)) $((512 * MiB)) 3
echo $((ws_mib * MiB)) >"$MB_DIR/vm1.used"
echo $((200 * MiB)) >"$MB_DIR/vm3.used"
mb_bg "$MB_DIR/loop1.log" mbt_guest_loop 1 "$MB_DIR/vm1.used"
mb_bg "$MB_DIR/loop3.log" mbt_guest_loop 3 "$MB_DIR/vm3.used"
# the neighbour: vm2 writes 100 urgent records a second, all test long
mb_bg "$MB_DIR/storm.log" "$bench" -x "$XENSTORED_PATH" -S 2 -U 100 -P 3600

csv=$MB_DIR/csv
vmt_sim_conf "$MB_DIR/collectd.conf" "" "LoadPlugin membal
<Plugin membal>
  Backend \"sim\"
  XenstorePath \"$XENSTORED_PATH\"
  Policy \"cagma\"
  Period 1
  Reserve \"512MiB\"
</Plugin>
PluginDir \"$MB_STOCK_PLUGINDIR\"
LoadPlugin csv
<Plugin csv>
  DataDir \"$csv\"
</Plugin>"

# lifetime_done: membal ran 3 rounds and decided on vm1 with a sample (its
# reason in this collectd's cache is not stale-frozen)
lifetime_done() {
  local r
  [ "$(mbt_round)" -ge 3 ] || return 1
  r=$(mb_getval "$MB_HOSTNAME/membal-vm1/gauge-reason") || return 1
  awk -v r="$r" 'BEGIN { exit !(r != 5) }'
}
for ((i = 1; i <= restarts; i++)); do
  mb_collectd_start "$MB_DIR/collectd.conf"
  mb_wait_for 20 lifetime_done || mb_fail "lifetime $i: membal ran no 3 rounds with a decision on vm1's sample (round $(mbt_round))"
  mb_collectd_stop
done
mb_log "collectd restarted $restarts times during vm2's storm"

# One row per dispatch of vm1's decision: time, target, cma, reason (the
# three values of one dispatch carry the same time).
d=$csv/$MB_HOSTNAME/membal-vm1
rows=$MB_DIR/vm1.rows
join_csv() { # join_csv <file-prefix>: time,value lines of all days
  cat "$d/$1"-* | grep -v '^epoch'
}
awk -F, 'FNR == 1 { f++ } f == 1 { t[$1] = $2 } f == 2 { c[$1] = $2 }
  f == 3 && ($1 in t) && ($1 in c) { print $1, t[$1], c[$1], $2 }' \
  <(join_csv memory-target) <(join_csv memory-cma) <(join_csv gauge-reason) >"$rows"
total=$(wc -l <"$rows")
frozen=$(awk '$4 == 5' "$rows" | wc -l)
decided=$((total - frozen))
partial=$(awk -v ws=$((ws_mib * MiB * 1024)) '$4 != 5 && $3 < ws' "$rows" | wc -l)
shrunk=$(awk -v ws=$((ws_mib * MiB * 1024)) '$2 < ws' "$rows" | wc -l)
mb_log "MEASURED: $restarts restarts: vm1 decisions dispatched $total ($decided with a sample, $frozen frozen for want of a whole one); on a partial sample $partial; target below the working set $shrunk"
[ "$decided" -ge "$restarts" ] || mb_fail "only $decided decisions on vm1 with a sample: the test did not exercise the rounds"
[ "$frozen" -ge 1 ] || mb_log "(no round came before vm1's first sample in any lifetime)"
mb_assert_eq 0 "$partial" "decisions on vm1 whose cma is below its working set (partial samples)"
mb_assert_eq 0 "$shrunk" "dispatched targets of vm1 below its working set"
logged=$(grep -Eo 'membal: vm1 \(domid 1\) target [0-9.]+ MiB -> [0-9.]+ MiB' "$MB_CD_LOG" |
  sed 's/.* -> \([0-9.]*\) MiB/\1/' | awk -v ws=$ws_mib '$1 < ws' | wc -l)
mb_assert_eq 0 "$logged" "targets below the working set membal logged setting on vm1"
t=$(mbt_target 1)
mb_assert "vm1's target in the hypervisor ($((t / MiB)) MiB) is not below its working set" \
  test "$t" -ge $((ws_mib * MiB))
# D2: values stamped ahead of the clock made rrdtool refuse the updates of
# the next lifetimes ("using time X when last update time is Y", Y > X).
# (Y == X: a restart within one second, whose first update falls in the
# second of the previous lifetime's last: one update lost, not a defect.)
ahead=$(sed -n 's/.*using time \([0-9]*\) when last update time is \([0-9]*\).*/\1 \2/p' "$MB_CD_LOG" |
  awk '$2 > $1' | wc -l)
mb_assert_eq 0 "$ahead" "rrdtool updates refused because a file was ahead of the clock"
mb_log "restarts test passed"
