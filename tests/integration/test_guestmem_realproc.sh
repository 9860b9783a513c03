#!/usr/bin/env bash
# guestmem with its default paths: the real /proc/meminfo and /proc/vmstat
# of the machine running the test parse, and the record holds them.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
mb_guest_domain "$GM_DOMID"
mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
LoadPlugin csv
<Plugin csv>
  DataDir "$MB_DIR/csv"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin guestmem
<Plugin guestmem>
  DomainPath "$GM_DOM"
  XenstorePath "$XENSTORED_PATH"
</Plugin>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no record from the real /proc files: $(grep guestmem "$MB_CD_LOG" | tail -n3)"
mb_assert_eq "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" "$(gm_field MemTotal)" "MemTotal from the real /proc/meminfo"
mb_assert_eq "$(awk '/^SwapTotal:/ { print $2 }' /proc/meminfo)" "$(gm_field SwapTotal)" "SwapTotal"
rec_pgfault=$(gm_field pgfault)
now_pgfault=$(awk '$1 == "pgfault" { print $2 }' /proc/vmstat)
mb_assert "record pgfault $rec_pgfault <= current $now_pgfault and > 0" \
  test "$rec_pgfault" -gt 0 -a "$rec_pgfault" -le "$now_pgfault"
n=$(gm_record | wc -l)
mb_assert "record holds $n lines (seq, uptime, urgent + fields)" test "$n" -ge 20
mb_assert "no guestmem error logged" bash -c "! grep -E '\\[error\\] guestmem' '$MB_CD_LOG'"
