#!/usr/bin/env bash
# DryRun true: membal computes and records its targets (RRD, collectd
# values, log) but never sets one in the backend; an urgent sample
# from vmmem (swapping guest) runs a round at once, without any flush.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB

mb_xenstored_start
mbt_three_guests 950 100 100

mbt_conf "$MB_DIR/collectd.conf" <<EOF2
  DryRun true
  Period 3600
  Reserve "1GiB"
EOF2
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2 3
mbt_wait_rates 1 2 3
mb_assert "membal announces the dry run" mbt_membal_log "DRY RUN"

for _ in 1 2 3; do mbt_flush_round; done
mbt_round_values membal-vm1/memory-target membal-vm2/memory-target

# Decided: vm1 up, vm2/vm3 down; recorded, never applied.
d1=$(mb_getval "$MB_HOSTNAME/membal-vm1/memory-target")
d2=$(mb_getval "$MB_HOSTNAME/membal-vm2/memory-target")
mb_log "decided (bytes): vm1 $d1 vm2 $d2"
mb_assert "vm1 would grow ($d1 bytes)" awk -v v="$d1" 'BEGIN { exit !(v > 1073741824) }'
mb_assert "vm2 would shrink ($d2 bytes)" awk -v v="$d2" 'BEGIN { exit !(v < 1073741824) }'
for id in 1 2 3; do
  mb_assert_eq $((1024 * MiB)) "$(mbt_target "$id")" "vm$id target in the backend untouched"
done
mb_assert "decision logged as a dry run" \
  mbt_membal_log "\[dry run\] vm1 \(domid 1\) target 1024.0 MiB -> [0-9.]+ MiB"
lines=$(grep -c "membal: \[dry run\] vm1 " "$MB_CD_LOG")
mb_assert_eq 1 "$lines" "the unchanged decision for vm1 logged once over 3 rounds"

rrd=$MB_DIR/rrd/$MB_HOSTNAME/membal-vm1/memory-target.rrd
# rrdtool writes the round's values (or the read callback's re-dispatch of
# the decisions): wait until the file has an update of that time or later
round_t=$(mb_valtime "$MB_HOSTNAME/membal/count-round" | cut -d. -f1)
rrd_has_round() { [ "$(rrdtool last "$rrd" 2>/dev/null || echo 0)" -ge "$round_t" ]; }
mb_wait_for 10 rrd_has_round || mb_log "no update of $rrd at $round_t or later (last $(rrdtool last "$rrd" 2>/dev/null))"
mb_assert "target RRD of vm1 exists" test -s "$rrd"
last=$(rrdtool lastupdate "$rrd" | awk -F': ' 'NF==2 { print $2 }')
mb_assert "RRD holds the decided target ($last bytes)" \
  awk -v r="$last" -v d="$d1" 'BEGIN { x = r - d; exit !(x < 1e4 && x > -1e4 && r > 1073741824) }'

# Emergency path: vm2 starts swapping; vmmem hands its urgent sample to
# membal, which decides at once (no flush, Period 1 h).
echo $((1500 * MiB)) >"$MB_DIR/vm2.used"
mb_wait_for 6 mbt_membal_log "\[dry run\] vm2 .*round on urgent sample" ||
  mb_fail "no round on vm2's urgent sample"
to=$(mbt_membal_log "\[dry run\] vm2 .*round on urgent sample" | tail -1 |
  sed -n 's/.* target [0-9.]* MiB -> \([0-9.]*\) MiB: .*/\1/p')
mb_assert "vm2's decision on the urgent sample grows it (to $to MiB)" \
  awk -v t="$to" 'BEGIN { exit !(t > 1024) }'
for id in 1 2 3; do
  mb_assert_eq $((1024 * MiB)) "$(mbt_target "$id")" "vm$id target still untouched"
done
# The emergency notification says nothing was granted.
mb_wait_for 6 mb_log_has "plugin_instance = vm2, type = memory, type_instance = emergency, message = \[dry run\] emergency grant to vm2: .*, not set: DryRun" ||
  mb_fail "no emergency notification marked as a dry run: $(grep -E 'Notification' "$MB_CD_LOG" | tail -3)"
mb_collectd_stop
mb_log "dry-run test passed"
