#!/usr/bin/env bash
# collectd flushes every plugin (timeout 0, no identifier) when it shuts
# down; for membal that must not become a balancing round: stopping collectd
# with decisions pending leaves every target as it was. Control: the same
# setup rebalances on `collectdctl flush plugin=membal`.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
mb_xenstored_start
mbt_guests $((3072 * MiB)) $((512 * MiB)) 2
echo $((950 * MiB)) >"$MB_DIR/vm1.used"
echo $((100 * MiB)) >"$MB_DIR/vm2.used"
for id in 1 2; do mb_bg "$MB_DIR/loop$id.log" mbt_guest_loop "$id" "$MB_DIR/vm$id.used"; done

mbt_conf "$MB_DIR/collectd.conf" <<EOF2
  Period 3600
  Reserve "1GiB"
EOF2

start_and_wait() {
  mb_collectd_start "$MB_DIR/collectd.conf"
  mbt_wait_samples 1 2
  mbt_wait_rates 1 2 # decisions pending: a round would change targets
}

start_and_wait
# returns once collectd has exited (reaped): nothing sets a target after
mb_collectd_stop
mb_assert_eq $((1024 * MiB)) "$(mbt_target 1)" "vm1 target after shutdown"
mb_assert_eq $((1024 * MiB)) "$(mbt_target 2)" "vm2 target after shutdown"
if mbt_membal_log "target .* MiB -> "; then mb_fail "membal decided during shutdown"; fi

# Control: the pending decisions are real.
start_and_wait
mbt_flush_round
mb_wait_for 2 bash -c "[ \"\$(xenstore-read /local/domain/1/memory/target)\" -gt $((1024 * MiB)) ]" ||
  mb_fail "control: vm1 not grown by a flush ($(mbt_target 1))"
mb_log "ok: the same state rebalances on a flush (vm1 $(($(mbt_target 1) / MiB)) MiB, vm2 $(($(mbt_target 2) / MiB)) MiB)"
mb_collectd_stop
mb_log "shutdown test passed"
