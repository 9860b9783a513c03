#!/usr/bin/env bash
# A record whose sequence number stops advancing is flagged stale
# (bool/sample_stale = 1, age growing) and its values are no longer
# dispatched; rewriting it with the same seq does not make it fresh; a new
# seq does. Seq-less XenServer keys are stale when their values stop moving.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 1 web 2097152 4194304
vmt_dom 2 xs 1048576 2097152
vmt_record 1 1 2000000 300000
xenstore-write /local/domain/2/data/meminfo_total 1000000 /local/domain/2/data/meminfo_free 250000

# StaleAfter 8: a fresh record's values must be seen within it (a window
# a loaded machine still fits)
vmt_conf "$MB_DIR/collectd.conf" <<EOF
  StaleAfter 8
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
vmt_expect 5 0 web bool-sample_stale
vmt_expect 5 $((2000000 * 1024)) web memory-guest_MemTotal

# the guest stops publishing
mb_wait_for 30 vmt_is 1 web bool-sample_stale || mb_fail "record never flagged stale"
age=$(vmt_get web duration-sample_age)
awk -v a="$age" 'BEGIN { exit !(a > 8) }' || mb_fail "stale with age $age <= StaleAfter"
mb_log "ok: web stale, age $age s"
# its values are no longer dispatched: they expire from collectd's cache
mb_wait_for 30 bash -c "! collectdctl -s '$MB_CD_SOCK' listval | grep -q 'vmmem-web/memory-guest_MemTotal'" ||
  mb_fail "values of a stale record still dispatched"
mb_log "ok: stale record's values no longer dispatched"
mb_assert "current/target still reported for a stale domain" vmt_listed web memory-current
a1=$(vmt_get web duration-sample_age)
age_moved() { awk -v a="$a1" -v b="$(vmt_get web duration-sample_age)" 'BEGIN { exit !(b > a) }'; }
mb_wait_for 20 age_moved || true # asserted below
a2=$(vmt_get web duration-sample_age)
awk -v a="$a1" -v b="$a2" 'BEGIN { exit !(b > a) }' || mb_fail "age did not grow ($a1 -> $a2)"
mb_log "ok: age grows ($a1 -> $a2)"

# same seq, other values: still stale
vmt_record 1 1 2000000 100000
vmt_wait_reads 2 # the second read after the rewrite is in the cache
vmt_expect 1 1 web bool-sample_stale
# seq advances: fresh again, values back
vmt_record 1 2 2000000 100000
vmt_expect 5 0 web bool-sample_stale
vmt_expect 5 $((100000 * 1024)) web memory-guest_MemFree
vmt_expect 1 2 web count-sample_seq

# XenServer keys: stale when the values stop moving, fresh when they move
vmt_expect 8 1 xs bool-sample_stale
xenstore-write /local/domain/2/data/meminfo_free 240000
vmt_expect 5 0 xs bool-sample_stale
vmt_expect 5 $((240000 * 1024)) xs memory-guest_MemFree
mb_assert "collectd still running" mb_collectd_alive
mb_log "PASS"
