#!/usr/bin/env bash
# Hostile guest records and hypervisor entries: each is rejected with one
# log line naming the domain and the reason, its values are not dispatched,
# collectd does not crash, and a good neighbour keeps being reported.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 1 good 1048576 2097152
vmt_record 1 3 1000000 200000

rec() { # rec <domid> <text>: raw record text
  xenstore-write -R "/local/domain/$1/data/membal/stats" "$2"
}
hdr=$'membal 1\nseq 4\nuptime_ms 4000\n'

vmt_dom 11 garbage 1048576 2097152
rec 11 $'GET / HTTP/1.0\r\n\x01\x02'
vmt_dom 12 oversized 1048576 2097152
rec 12 "$hdr$(for i in $(seq 200); do printf 'MemTotal%04d 1\n' "$i"; done)"
vmt_dom 13 negative 1048576 2097152
rec 13 "${hdr}MemTotal -5"$'\n'
vmt_dom 14 overflow 1048576 2097152
rec 14 "${hdr}MemTotal 99999999999999999999999"$'\n'
vmt_dom 15 dupkey 1048576 2097152
rec 15 "${hdr}MemTotal 1000"$'\n'"MemTotal 2000"$'\n'
vmt_dom 16 freegttotal 1048576 2097152
rec 16 "${hdr}MemTotal 1000"$'\n'"MemFree 2000"$'\n'
vmt_dom 17 noseq 1048576 2097152
rec 17 $'membal 1\nuptime_ms 10\nMemTotal 1000\n'
vmt_dom 18 xsbad 1048576 2097152
xenstore-write /local/domain/18/data/meminfo_total 0x1000 /local/domain/18/data/meminfo_free 10
vmt_dom 19 xshalf 1048576 2097152
xenstore-write /local/domain/19/data/meminfo_total 1000
# hypervisor-side entries the backend must skip (names become file names)
xenstore-write -R /tool/membal-sim/dom/21 $'name ../../etc\ncurrent_kib 1\nmax_kib 2\n'
xenstore-write -R /tool/membal-sim/dom/22 "name $(printf 'x%.0s' $(seq 80))"$'\ncurrent_kib 1\nmax_kib 2\n'
xenstore-write -R /tool/membal-sim/dom/23 $'name ok23\ncurrent_kib lots\nmax_kib 2\n'
xenstore-write /tool/membal-sim/dom/notanumber "name x"

# The good guest publishes once (seq 3): keep it fresh however long the
# test takes on a loaded machine (the default, 3 intervals, is a race).
vmt_conf "$MB_DIR/collectd.conf" <<EOF
  StaleAfter 600
EOF
mb_collectd_start "$MB_DIR/collectd.conf"

vmt_expect 10 $((1000000 * 1024)) good memory-guest_MemTotal
vmt_expect 5 0 good bool-sample_stale

# one log line per hostile record, naming domain and reason
expect_log() { # <domain name> <domid> <reason regex>
  local re="vmmem: domain $1 \\($2\\): guest record rejected: .*$3"
  mb_wait_for 5 mb_log_has "$re" || mb_fail "no log line matching '$re'"
  local n
  n=$(grep -cE -- "$re" "$MB_CD_LOG")
  mb_log "ok: $1 rejected ($(grep -E -- "$re" "$MB_CD_LOG" | head -1 | sed 's/.*rejected: //'))"
  echo "$n"
}
expect_log garbage 11 "" >/dev/null
expect_log oversized 12 "over the 2047-byte limit" >/dev/null
expect_log negative 13 "" >/dev/null
expect_log overflow 14 "" >/dev/null
expect_log dupkey 15 "" >/dev/null
expect_log freegttotal 16 "" >/dev/null
expect_log noseq 17 "" >/dev/null
expect_log xsbad 18 "meminfo_total is not an unsigned decimal" >/dev/null
expect_log xshalf 19 "meminfo_free missing" >/dev/null
for re in "domain 21 skipped: invalid name" "domain 22 skipped: invalid name: name longer" \
  "domain 23 skipped: value of current_kib is not a number" ".*dom has an entry that is not a domid"; do
  mb_wait_for 5 mb_log_has "vmmem: sim: $re" || mb_fail "no log line for '$re'"
  mb_log "ok: logged '$re'"
done

# rejected records: flagged stale, none of their values dispatched (two
# more reads: whatever a read dispatches is in collectd's cache)
vmt_wait_reads 2
for d in garbage oversized negative overflow dupkey freegttotal noseq xsbad xshalf; do
  vmt_expect 3 1 "$d" bool-sample_stale
  if mb_collectdctl listval | grep -E "vmmem-$d/(memory-guest_|derive-)"; then
    mb_fail "values of $d's rejected record were dispatched"
  fi
done
mb_log "ok: no value of a rejected record dispatched"
if mb_collectdctl listval | grep -E "vmmem-(\.\./|xxxx|ok23)"; then
  mb_fail "a skipped domain was reported"
fi
vmt_expect 3 10 "" count-domains

# once per domain, not once per interval
n=$(grep -cE "vmmem: domain garbage \(11\): guest record rejected" "$MB_CD_LOG")
mb_assert_eq 1 "$n" "log lines for the garbage record after several rounds"
n=$(grep -cE "vmmem: sim: domain 21 skipped" "$MB_CD_LOG")
mb_assert_eq 1 "$n" "log lines for the skipped domain 21 after several rounds"

# a rejected guest that starts publishing good records is accepted again
vmt_record 11 9 900000 100000
vmt_expect 5 $((900000 * 1024)) garbage memory-guest_MemTotal
vmt_expect 3 0 garbage bool-sample_stale
mb_wait_for 5 mb_log_has "vmmem: domain garbage \(11\): guest record accepted again" ||
  mb_fail "no log line when the record became good"
mb_assert "collectd still running" mb_collectd_alive
vmt_expect 3 $((1000000 * 1024)) good memory-guest_MemTotal
mb_log "PASS"
