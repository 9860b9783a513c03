#!/usr/bin/env bash
# collectd (with vmmem) starts before xenstored, as at boot when the
# services race: vmmem says so once per thread, keeps collectd running, and
# starts reporting (and handing urgent samples to membal) as soon as
# xenstored is up.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

XENSTORED_PATH=$MB_DIR/xenstored/socket # where mb_xenstored_start puts it
vmt_sim_conf "$MB_DIR/collectd.conf" "" "$(vmt_membal_block)"
mb_conf_ticks "$MB_DIR/collectd.conf" # vmmem dispatches nothing yet
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 5 mb_log_has "vmmem: cannot connect to xenstored at $XENSTORED_PATH" ||
  mb_fail "no log line about the missing xenstored"
mb_wait_for 5 mb_log_has "vmmem: watch: cannot connect to xenstored" ||
  mb_fail "the watch thread did not say it cannot connect"
# the lines of the first 3 s, counted once collectd's reads went past them
vmt_complaints "vmmem: cannot connect to xenstored" 3
n=$VMT_COMPLAINTS
mb_assert "collectd runs without xenstored" mb_collectd_alive
[ "$n" -le 3 ] || mb_fail "the missing xenstored was logged $n times in 3 s"
mb_log "ok: logged $n times in 3 s (c_complain backs off)"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 4 late 1048576 2097152
vmt_record 4 1 1000000 250000
vmt_expect 10 $((1000000 * 1024)) late memory-guest_MemTotal
mb_wait_for 5 mb_log_has "vmmem: backend sim reachable" || mb_fail "recovery not logged"
# the watch thread backs off up to 8 s between attempts while nothing
# answers: give it that long to connect. Records without the urgent flag
# whose swap-out rises 5000 pages a second: only the watch thread (which
# times the counters between the records it reads) calls that urgent, so a
# membal round (DryRun, Period 1 h) shows the watch is connected.
ok=0
r0=$(vmt_round)
for seq in $(seq 2 14); do
  vmt_record 4 "$seq" 1000000 250000 0 0 $((seq * 5000))
  if mb_wait_for 1 vmt__round_after "$r0"; then
    ok=1
    break
  fi
done
[ "$ok" = 1 ] || mb_fail "no round on swapping records: the watch thread never connected"
mb_log "ok: watch thread connected (swapping record seq $seq handed to membal)"
mb_log "PASS"
