#!/usr/bin/env bash
# xenstore comes and goes: guestmem starts without it (logs once, still
# dispatches locally), connects when xenstored appears, survives xenstored
# being stopped and restarted mid-run (logs once, keeps dispatching,
# reconnects by itself) and keeps seq increasing across all of it.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

total=$((2000000 + RANDOM))
gm_meminfo "$total" 500000
gm_vmstat 10 20 30 40
gm_conf "$MB_DIR/collectd.conf"
export XENSTORED_PATH=$MB_DIR/xenstored/socket # not there yet

# 1. no xenstored at all
mb_collectd_start "$MB_DIR/collectd.conf"
id=$MB_HOSTNAME/guestmem
memfree_is() { gm_bytes_eq "$(mb_getval "$id/memory-MemFree")" "$1"; }
mb_wait_for 5 memfree_is 500000 || mb_fail "no local values without xenstore"
mb_log "ok: values dispatched locally without xenstore"
# three more intervals, each a failed connection attempt
mb_wait_dispatches 3 "$id/memory-MemFree" || mb_fail "guestmem dispatched no more local values"
n=$(grep -c 'guestmem: xenstore unreachable' "$MB_CD_LOG" || true)
mb_assert_eq 1 "$n" "'xenstore unreachable' logged once over 4 intervals"

# 2. xenstored appears: guestmem connects on its next interval
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
mb_wait_for 5 gm_field seq || mb_fail "no record after xenstored appeared"
mb_assert "reconnection logged" mb_log_has 'guestmem: connected to xenstore again'
seq1=$(gm_field seq)
mb_wait_for 5 gm_seq_above "$seq1" || mb_fail "seq does not advance"

# 3. xenstored stops mid-run
mb_xenstored_stop
gm_meminfo "$total" 400000
mb_wait_for 5 memfree_is 400000 || mb_fail "local dispatch stopped with xenstored"
mb_log "ok: values still dispatched locally while xenstored is down"
# two more intervals without xenstored
mb_wait_dispatches 2 "$id/memory-MemFree" || mb_fail "guestmem dispatched no more local values"
mb_assert "collectd alive with xenstored gone" mb_collectd_alive
lost=$(grep -cE 'guestmem: (lost xenstore|xenstore unreachable)' "$MB_CD_LOG" || true)
mb_assert "the outage was logged ($lost lines incl. the first one), not every interval" \
  test "$lost" -ge 2 -a "$lost" -le 3

# 4. a fresh xenstored (empty store, as after a crash): records resume, seq
# goes on from where guestmem was rather than back to 1
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
mb_wait_for 30 gm_field seq || mb_fail "records did not resume after the restart"
seq3=$(gm_field seq)
mb_assert "seq $seq3 after the restart is above $seq1 from before" test "$seq3" -gt "$seq1"
mb_assert_eq 400000 "$(gm_field MemFree)" "record after the restart holds the current file"
mb_assert_eq 400000 "$(xenstore-read "$GM_DOM/data/meminfo_free")" "meminfo_free after the restart"

# 5. restart in one go (mb_xenstored_restart), twice
for i in 1 2; do
  s=$(gm_field seq)
  mb_xenstored_restart
  mb_wait_for 30 gm_seq_above "$s" || mb_fail "records did not resume after restart $i"
  mb_log "ok: records resume after restart $i (seq now $(gm_field seq))"
done
mb_assert "collectd alive at the end" mb_collectd_alive

# 6. collectd restarts: seq continues from the record found in xenstore
s=$(gm_field seq)
mb_collectd_stop
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 5 gm_seq_above "$s" || mb_fail "seq went back after a collectd restart"
mb_assert "continuation logged" mb_log_has "guestmem: continuing after seq"
mb_log "ok: seq $(gm_field seq) after collectd restart, was $s"
