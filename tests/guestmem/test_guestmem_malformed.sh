#!/usr/bin/env bash
# Hostile or broken /proc content: guestmem logs a clear line naming the
# file and the problem, publishes no record (seq stands still), does not
# crash (sanitizers watching), and resumes once the content is sane again.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
mb_guest_domain "$GM_DOMID"
total=$((2000000 + RANDOM))
gm_meminfo "$total" 500000
gm_vmstat 10 20 30 40
gm_conf "$MB_DIR/collectd.conf"
mb_conf_ticks "$MB_DIR/collectd.conf"
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no record with sane files"

# seq_stands_still <what>: no record published over 3 read intervals of
# collectd (guestmem dispatches nothing with a rejected file: counted on
# the uptime plugin, read at the same interval)
seq_stands_still() {
  local s1 s2
  s1=$(gm_field seq)
  mb_wait_ticks 3
  s2=$(gm_field seq)
  mb_assert_eq "$s1" "$s2" "seq stands still while $1"
}

# recovers: sane files again → records resume
recovers() {
  local s
  s=$(gm_field seq)
  gm_meminfo "$total" 500000
  gm_vmstat 10 20 30 40
  mb_wait_for 30 gm_seq_above "$s" || mb_fail "records did not resume after $1"
  mb_log "ok: records resume after $1"
}

# bad_case <what> <log regex> <command that breaks a file...>
bad_case() {
  local what=$1 re=$2 mark
  shift 2
  mark=$(wc -l <"$MB_CD_LOG")
  "$@"
  new_log_has() { tail -n +$((mark + 1)) "$MB_CD_LOG" | grep -E -- "$re"; }
  mb_wait_for 5 new_log_has || mb_fail "no log line for $what (want /$re/)"
  mb_log "ok: logged: $(new_log_has | tail -n1 | cut -c1-220)"
  seq_stands_still "$what"
  mb_assert "collectd alive after $what" mb_collectd_alive
  recovers "$what"
}

put_meminfo() { printf "$1" | gm_replace "$GM_MEMINFO"; }
put_vmstat() { printf "$1" | gm_replace "$GM_VMSTAT"; }
big_meminfo() { head -c 70000 /dev/zero | tr '\0' 'x' | gm_replace "$GM_MEMINFO"; }

bad_case "a non-numeric MemTotal" "guestmem: $GM_MEMINFO rejected: meminfo line 1 \\(MemTotal\\)" \
  put_meminfo 'MemTotal:  lots kB\nMemFree: 1 kB\n'
bad_case "MemFree above MemTotal" "guestmem: $GM_MEMINFO rejected: MemFree: 2000 kB exceeds MemTotal 1000 kB" \
  gm_meminfo 1000 2000
bad_case "an overflowing number" "guestmem: $GM_MEMINFO rejected: meminfo line 1 \\(MemTotal\\): value ' *99999" \
  put_meminfo 'MemTotal: 99999999999999999999999 kB\n'
bad_case "a duplicated key" "guestmem: $GM_MEMINFO rejected: meminfo line 2: duplicate key MemTotal" \
  put_meminfo 'MemTotal: 1000 kB\nMemTotal: 1000 kB\n'
bad_case "a NUL byte" "guestmem: $GM_MEMINFO rejected: meminfo line 2: NUL byte" \
  put_meminfo 'MemTotal: 1000 kB\nMem\0Free: 10 kB\n'
bad_case "a 70000-byte meminfo" "guestmem: $GM_MEMINFO: longer than 65536 bytes" big_meminfo
bad_case "a missing meminfo" "guestmem: $GM_MEMINFO: cannot open: No such file or directory" \
  rm -f "$GM_MEMINFO"
bad_case "a negative pswpin" "guestmem: $GM_VMSTAT rejected: vmstat line 1 \\(pswpin\\)" \
  put_vmstat 'pswpin -5\npswpout 1\n'
bad_case "an empty meminfo" "guestmem: $GM_MEMINFO rejected: meminfo: empty text" put_meminfo ''

mb_assert "the 'readable again' line was logged" mb_log_has "guestmem: $GM_MEMINFO is readable again"
mb_assert_eq "$total" "$(gm_field MemTotal)" "record after recovery"
