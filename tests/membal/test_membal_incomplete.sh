#!/usr/bin/env bash
# A sample that lacks fields the guest's previous samples had is not
# guessed at: the domain is frozen for that round (reason stale-frozen,
# never shrunk), although the partial values alone would say "idle".
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
mb_xenstored_start
mbt_guests $((3072 * MiB)) $((512 * MiB)) 2
echo $((950 * MiB)) >"$MB_DIR/vm1.used"
echo $((600 * MiB)) >"$MB_DIR/vm2.used"
mb_bg "$MB_DIR/loop1.log" mbt_guest_loop 1 "$MB_DIR/vm1.used"
mb_bg "$MB_DIR/loop2.log" mbt_guest_loop 2 "$MB_DIR/vm2.used" "$MB_DIR/stop2"

mbt_conf "$MB_DIR/collectd.conf" <<EOF2
  Period 3600
  Reserve "1GiB"
EOF2
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2
mbt_wait_rates 1 2
mbt_flush_round
mbt_round_values membal-vm2/gauge-reason
t2=$(mbt_target 2)
mb_log "vm2 target with full samples: $((t2 / MiB)) MiB"
reason=$(mb_getval "$MB_HOSTNAME/membal-vm2/gauge-reason")
mb_assert "vm2 is not frozen while its samples are whole (reason $reason)" \
  awk -v r="$reason" 'BEGIN { exit !(r != 5) }'

# vm2's agent now publishes a record with MemTotal and MemFree only (free
# nearly everything: taken alone it would invite a shrink).
touch "$MB_DIR/stop2"
mb_wait_for 10 test -e "$MB_DIR/stop2.done" || mb_fail "vm2's agent stand-in did not stop"
xenstore-write -R /local/domain/2/data/membal/stats "$(printf 'membal 1\nseq 100000\nuptime_ms 100000000\nMemTotal %s\nMemFree %s\n' "$t2" $((t2 - 10 * MiB)))"
mb_wait_for 5 bash -c "collectdctl -s '$MB_CD_SOCK' getval '$MB_HOSTNAME/vmmem-vm2/count-sample_seq' | grep -q '^value=1.000000e+05'" ||
  mb_fail "vmmem did not pick up the partial record"
# two more reads: the one that dispatched the partial record has handed it
# to membal
vmt_wait_reads 2
mbt_flush_round
mbt_round_values membal-vm2/gauge-reason
reason=$(mb_getval "$MB_HOSTNAME/membal-vm2/gauge-reason")
mb_assert "vm2 frozen on the incomplete sample (reason $reason = stale-frozen 5)" \
  awk -v r="$reason" 'BEGIN { exit !(r == 5) }'
t2b=$(mbt_target 2)
mb_assert "vm2 not shrunk on the incomplete sample ($((t2 / MiB)) -> $((t2b / MiB)) MiB)" \
  test "$t2b" -ge "$t2"
mb_collectd_stop
mb_log "incomplete-sample test passed"
