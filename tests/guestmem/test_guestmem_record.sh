#!/usr/bin/env bash
# guestmem in a real collectd, publishing to a real xenstored: the record
# holds the prepared files' values (as the policy parser reads it back), seq
# advances every interval, the XenServer keys are written, and the values
# reach collectd (collectdctl listval/getval).
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
mb_guest_domain "$GM_DOMID" vm5

# Values differ on every run so nothing can pass by accident.
total=$((2000000 + RANDOM))
free=$((300000 + RANDOM))
pswpin=$((1000 + RANDOM))
pswpout=$((2000 + RANDOM))
majflt=$((500 + RANDOM))
pgfault=$((900000 + RANDOM))
gm_meminfo "$total" "$free"
gm_vmstat "$pswpin" "$pswpout" "$majflt" "$pgfault"

gm_conf "$MB_DIR/collectd.conf"
mb_collectd_start "$MB_DIR/collectd.conf"

mb_wait_for 10 gm_field seq || mb_fail "no record at $GM_DOM/data/membal/stats"
mb_assert_eq "$total" "$(gm_field MemTotal)" "record MemTotal (KiB)"
mb_assert_eq "$free" "$(gm_field MemFree)" "record MemFree (KiB)"
mb_assert_eq 700000 "$(gm_field Committed_AS)" "record Committed_AS (KiB)"
mb_assert_eq 1040000 "$(gm_field SwapFree)" "record SwapFree (KiB)"
mb_assert_eq "$pswpin" "$(gm_field pswpin)" "record pswpin"
mb_assert_eq "$pswpout" "$(gm_field pswpout)" "record pswpout"
mb_assert_eq "$majflt" "$(gm_field pgmajfault)" "record pgmajfault"
mb_assert_eq "$pgfault" "$(gm_field pgfault)" "record pgfault"
mb_assert_eq 0 "$(gm_field urgent)" "regular record is not urgent"
raw=$(xenstore-read -R "$GM_DOM/data/membal/stats")
mb_assert_eq "membal 1" "$(head -n1 <<<"$raw")" "record's first line"
mb_assert "record under 2048 bytes (${#raw})" test "${#raw}" -lt 2048

# uptime_ms is the guest's (here: this machine's) uptime
up_ms=$(gm_field uptime_ms)
host_up_ms=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)
mb_assert "uptime_ms $up_ms within 60 s of /proc/uptime $host_up_ms" \
  test $((host_up_ms - up_ms)) -ge 0 -a $((host_up_ms - up_ms)) -lt 60000

# XenServer's keys
mb_assert_eq "$total" "$(xenstore-read "$GM_DOM/data/meminfo_total")" "data/meminfo_total"
mb_assert_eq "$free" "$(xenstore-read "$GM_DOM/data/meminfo_free")" "data/meminfo_free"

# seq advances with the interval (Interval 1) and follows new file content
seq1=$(gm_field seq)
free2=$((free + 4096))
gm_meminfo "$total" "$free2"
mb_wait_for 5 gm_seq_above $((seq1 + 1)) || mb_fail "seq did not advance past $((seq1 + 1))"
mb_wait_for 5 bash -c "[ \"\$(xenstore-read $GM_DOM/data/meminfo_free)\" = $free2 ]" ||
  mb_fail "meminfo_free did not follow the file"
mb_assert_eq "$free2" "$(gm_field MemFree)" "record follows the file"

# the values reach collectd
id=$MB_HOSTNAME/guestmem
mb_wait_for 5 mb_getval "$id/memory-MemTotal" || mb_fail "memory-MemTotal not in collectd"
listing=$(mb_collectdctl listval)
for v in memory-MemTotal memory-MemFree memory-Committed_AS derive-pswpin derive-pswpout \
  derive-pgmajfault derive-pgfault derive-urgent_publishes; do
  mb_assert "listval has $id/$v" grep -q "$id/$v\$" <<<"$listing"
done
got=$(mb_getval "$id/memory-MemTotal")
mb_assert "getval memory-MemTotal = $got = $total KiB in bytes" gm_bytes_eq "$got" "$total"
gm_memfree_is() { gm_bytes_eq "$(mb_getval "$id/memory-MemFree")" "$1"; }
mb_wait_for 5 gm_memfree_is "$free2" || mb_fail "getval memory-MemFree != $free2 KiB"
mb_log "ok: getval memory-MemFree = $free2 KiB in bytes"

got=$(mb_getval "$id/derive-pswpin")
mb_assert "getval derive-pswpin = $got is a rate, 0 as the counter stands still" \
  awk -v g="$got" 'BEGIN { exit !(g == 0) }'
mb_assert "csv writer got guestmem values" \
  bash -c "ls $MB_DIR/csv/$MB_HOSTNAME/guestmem/memory-MemTotal-* >/dev/null"
mb_assert "collectd still running" mb_collectd_alive
mb_collectd_stop
# collectd's unixsock names each connection's thread after it started; a
# collectdctl that has already hung up, its thread gone, makes that fail:
# "set_thread_name(\"unixsock conn\"): No such process" (ESRCH) or, when
# glibc finds no /proc/self/task/<tid>/comm, "No such file or directory"
# (CI clone of 26ff789). collectd's race, not guestmem's: any errno.
mb_assert "no error in collectd log" bash -c "! grep -E '\\[error\\]' $MB_CD_LOG | grep -v 'set_thread_name(\"unixsock conn\"): '"
