#!/usr/bin/env bash
# xenstored restarted under a running collectd: vmmem logs the outage once,
# reconnects by itself (read callback and watch thread), and reports the
# domains again once the toolstack has re-created the store. collectd keeps
# running throughout.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

populate() { # populate <seq>
  vmt_host 8388608 1048576
  vmt_dom 0 Domain-0 1048576 1048576
  vmt_dom 1 web 2097152 4194304
  vmt_record 1 "$1" 2000000 300000
}

mb_xenstored_start
populate 1
vmt_sim_conf "$MB_DIR/collectd.conf" "  StaleAfter 30" "$(vmt_membal_block)"
mb_conf_ticks "$MB_DIR/collectd.conf" # vmmem dispatches nothing in the outage
mb_collectd_start "$MB_DIR/collectd.conf"
vmt_expect 5 1 web count-sample_seq

old_pid=$MB_XS_PID
mb_xenstored_restart
[ "$MB_XS_PID" != "$old_pid" ] || mb_fail "xenstored was not restarted"
# the new store is empty: vmmem must complain (once), not crash
mb_wait_for 5 mb_log_has "vmmem: .*(missing|cannot connect|failed|lost)" ||
  mb_fail "no log line about the lost hypervisor state"
mb_log "ok: outage logged: $(grep -E 'vmmem: ' "$MB_CD_LOG" | grep -Ev 'rejected' | tail -1 | sed 's/^.*vmmem: /vmmem: /')"
# the outage's lines of its first 2 s, counted once collectd's reads went
# past them
vmt_complaints "vmmem: sim: /tool/membal-sim/host missing" 2
n=$VMT_COMPLAINTS
mb_assert "collectd survived the restart" mb_collectd_alive
[ "$n" -le 2 ] || mb_fail "the outage was logged $n times (want it once, c_complain)"

populate 2
vmt_expect 8 2 web count-sample_seq
vmt_expect 3 0 web bool-sample_stale
vmt_expect 3 $((2000000 * 1024)) web memory-guest_MemTotal
mb_wait_for 5 mb_log_has "vmmem: backend sim reachable" || mb_fail "recovery not logged"
mb_log "ok: read callback reconnected"

# the watch thread reconnected too: a record whose swap-out rose 5000
# pages/s (no urgent flag: only the watch, which times the counters between
# records, calls it urgent) still makes membal (DryRun, Period 1 h) decide
r0=$(vmt_round)
vmt_record 1 3 2000000 300000 0 0 10000
mb_wait_for 5 vmt__round_after "$r0" ||
  mb_fail "no round after the restart (watch thread did not reconnect)"
mb_log "ok: watch thread reconnected"

# a second restart while collectd runs, then a domain removed
mb_xenstored_restart
populate 4
vmt_dom 2 db 1048576 2097152
vmt_record 2 1 1000000 100000
vmt_expect 8 2 "" count-domains
xenstore-rm /tool/membal-sim/dom/2
vmt_expect 5 1 "" count-domains
mb_assert "collectd still running" mb_collectd_alive
mb_log "PASS"
