#!/usr/bin/env bash
# The backend refuses the target of one domain (xs_write of its
# memory/target fails in the real libxenstore, through a test LD_PRELOAD
# library: the real xenstored lets dom0 write anything). membal logs that
# failure once, not every round; the other domains are still balanced; no
# grow is made with memory the failed shrink did not free; once the backend
# accepts again, the target is set and the recovery logged.
. "$(dirname "$0")/../lib/membal_lib.bash"

command -v gcc >/dev/null || mb_skip "gcc needed to build the fault-injection library"
[ -f /usr/include/xenstore.h ] || mb_skip "xenstore.h missing (libxen-dev)"
gcc -shared -fPIC -Wall -o "$MB_DIR/failwrite.so" \
  "$(dirname "$0")/membal_failwrite.c" -ldl || mb_fail "cannot build membal_failwrite.c"

MiB=$MBT_MIB

mb_xenstored_start
mbt_three_guests 950 100 100
pool=$((total - 1024 * MiB))

export MBT_FAIL_FILE=$MB_DIR/fail-path
echo /local/domain/2/memory/target >"$MBT_FAIL_FILE"

mbt_conf "$MB_DIR/collectd.conf" <<EOF2
  Period 3600
  Reserve "1GiB"
EOF2
mbt_collectd_start_preload "$MB_DIR/collectd.conf" "$MB_DIR/failwrite.so"
mbt_wait_samples 1 2 3
mbt_wait_rates 1 2 3

# mbt_flush_round returns once count-round shows the new round: membal
# dispatches it after the round set the targets and logged the failures.
for n in 1 2 3 4; do
  mbt_flush_round
  mb_log "round $n: vm1 $(($(mbt_target 1) / MiB)) vm2 $(($(mbt_target 2) / MiB)) vm3 $(($(mbt_target 3) / MiB)) MiB"
done
t1=$(mbt_target 1)
t2=$(mbt_target 2)
t3=$(mbt_target 3)
mb_assert_eq $((1024 * MiB)) "$t2" "vm2's target untouched (its writes fail)"
mb_assert "idle vm3 was still shrunk ($t3 KiB)" test "$t3" -lt $((1024 * MiB))
mb_assert "busy vm1 was still grown ($t1 KiB)" test "$t1" -gt $((1024 * MiB))
sum=$((t1 + t2 + t3))
mb_assert "targets in force ($((sum / MiB)) MiB) within the pool ($((pool / MiB)) MiB) despite the failed shrink" \
  test "$sum" -le "$pool"
fails=$(grep -c "membal: setting the target of vm2 (domid 2) to [0-9]* KiB failed" "$MB_CD_LOG" || true)
mb_assert_eq 1 "$fails" "failure of vm2 logged once over 4 rounds"
mb_assert "the failure names the reason" grep -q "membal: setting the target of vm2 .*failed: .*Permission denied" "$MB_CD_LOG"
if grep -q "setting the target of vm[13]" "$MB_CD_LOG"; then mb_fail "other domains reported failures"; fi
mb_assert "collectd still running" mb_collectd_alive

# The backend accepts again: the pending shrink goes through.
: >"$MBT_FAIL_FILE"
mbt_flush_round
t2=$(mbt_target 2)
mb_assert "vm2 shrunk once the backend accepts ($t2 KiB)" test "$t2" -lt $((1024 * MiB))
mb_assert "recovery logged" grep -q "membal: setting the target of vm2 works again" "$MB_CD_LOG"
mb_collectd_stop
mb_log "backend failure test passed"
