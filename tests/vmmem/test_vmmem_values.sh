#!/usr/bin/env bash
# vmmem on the sim backend with a real xenstored and the real collectd:
# host, dom0 and per-domain values reach collectd (collectdctl getval) and
# RRD files (rrdtool lastupdate/fetch) in bytes; the XenServer keys are used
# when a guest has no membal record; domains appearing and disappearing
# mid-run are picked up and dropped.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 1 web 2097152 4194304
vmt_dom 2 xsonly 1048576 2097152
vmt_record 1 5 2000000 300000 0 11 22
# guest 2 runs only XenServer's guest utilities
xenstore-write /local/domain/2/data/meminfo_total 1000000 \
  /local/domain/2/data/meminfo_free 250000

vmt_conf "$MB_DIR/collectd.conf" <<EOF
  StaleAfter 30
EOF
mb_collectd_start "$MB_DIR/collectd.conf"

KiB=1024
vmt_expect 10 $((8388608 * KiB)) "" memory-host_total
vmt_expect 5 $((1048576 * KiB)) "" memory-host_free
vmt_expect 5 $((4194304 * KiB)) "" memory-node0_total
vmt_expect 5 $((1048576 * KiB)) "" memory-dom0
vmt_expect 5 2 "" count-domains
vmt_expect 5 $((2097152 * KiB)) web memory-current
vmt_expect 5 $((2097152 * KiB)) web memory-target
vmt_expect 5 $((4194304 * KiB)) web memory-max
vmt_expect 5 $((2000000 * KiB)) web memory-guest_MemTotal
vmt_expect 5 $((300000 * KiB)) web memory-guest_MemFree
vmt_expect 5 $((1700000 * KiB)) web memory-guest_Committed_AS
vmt_expect 5 5 web count-sample_seq
vmt_expect 5 0 web bool-sample_stale
vmt_expect 5 $((1000000 * KiB)) xsonly memory-guest_MemTotal
vmt_expect 5 $((250000 * KiB)) xsonly memory-guest_MemFree
vmt_expect 5 0 xsonly bool-sample_stale
# dom0 is overhead: no per-domain values for it
if mb_collectdctl listval | grep -q "vmmem-Domain-0/"; then
  mb_fail "dom0 was reported as a guest"
fi

# vmstat counters are derive values: getval gives the rate, the RRD file
# holds the counter itself.
vmt_record 1 6 2000000 300000 0 111 22
vmt_expect 5 6 web count-sample_seq
rrd=$MB_DIR/rrd/$MB_HOSTNAME/vmmem-web
mb_wait_for 5 test -f "$rrd/derive-pswpin.rrd" || mb_fail "no RRD file for pswpin"
last=$(rrdtool lastupdate "$rrd/derive-pswpin.rrd" | awk -F': ' 'NF == 2 { print $2 }')
mb_assert_eq 111 "$last" "RRD last pswpin counter"
last=$(rrdtool lastupdate "$rrd/memory-guest_MemTotal.rrd" | awk -F': ' 'NF == 2 { print $2 + 0 }')
mb_assert_eq $((2000000 * KiB)) "$last" "RRD last guest_MemTotal (bytes)"
# fetch: the RRD holds consolidated rows with that value, not only a header
# (a row is consolidated once updates passed its end: wait for it; read
# from a copy, so that polling never holds the file against the plugin)
fetch_rows() {
  cp "$rrd/memory-guest_MemTotal.rrd" "$MB_DIR/fetch.rrd"
  rrdtool fetch "$MB_DIR/fetch.rrd" AVERAGE -s -20 |
    awk -v v=$((2000000 * KiB)) 'NF == 2 && $2 != "-nan" && $2 + 0 == v { n++ } END { print n + 0 }'
}
has_rows() { [ "$(fetch_rows)" -ge 1 ]; }
mb_wait_for 20 has_rows || true # asserted below
rows=$(fetch_rows)
[ "$rows" -ge 1 ] || mb_fail "rrdtool fetch: no row holding guest_MemTotal"
mb_log "ok: rrdtool fetch shows $rows rows of guest_MemTotal"
rrdtool info "$MB_DIR/rrd/$MB_HOSTNAME/vmmem/memory-host_total.rrd" | grep -q 'ds\[value\].type = "GAUGE"' ||
  mb_fail "host_total RRD is not a gauge"

# meta data vmmem:domid / vmmem:seq are not visible through unixsock; the
# membal tests check them. Here: a domain appears mid-run ...
vmt_dom 7 late 524288 1048576
vmt_record 7 1 500000 100000
vmt_expect 5 3 "" count-domains
vmt_expect 5 $((500000 * KiB)) late memory-guest_MemTotal

# ... and one disappears: dropped from the count and its values expire.
xenstore-rm /tool/membal-sim/dom/2
xenstore-rm /local/domain/2
vmt_expect 5 2 "" count-domains
if ! mb_wait_for 10 bash -c "! collectdctl -s '$MB_CD_SOCK' listval | grep -q 'vmmem-xsonly/'"; then
  mb_fail "values of the removed domain still listed"
fi
mb_log "ok: removed domain's values expired"
mb_assert "collectd still running" mb_collectd_alive
if mb_log_has "vmmem: .*(error|rejected)"; then
  mb_fail "vmmem logged an error for normal domain churn: $(grep -E 'vmmem: ' "$MB_CD_LOG" | tail -3)"
fi
mb_log "PASS"
