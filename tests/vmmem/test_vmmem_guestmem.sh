#!/usr/bin/env bash
# The whole collection path with real parts only: a guest collectd runs
# guestmem as domain 5 (through the xenbus ring, with the guest's
# permissions) on prepared meminfo/vmstat files; a dom0 collectd runs vmmem
# (sim backend) with rrdtool. The guest's figures appear in dom0's
# collectdctl getval and RRD files (PSI stall and refaults included), and a
# swap burst in the guest reaches dom0's balancer at once (a membal round;
# DryRun, Period 1 h).
. "$(dirname "$0")/../lib/vmmem_lib.bash"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 5 vm5 2097152 4194304
mb_guest_proxy_start 5
total=$((2000000 + RANDOM))
gm_meminfo "$total" 700000
gm_vmstat 10 20 30 40 3 4567
gm_pressure 2.50 7000000 0.75 2000000

# --- the guest's collectd (own directory, socket and log)
gd=$MB_DIR/guest
mkdir -p "$gd"
cat >"$gd/collectd.conf" <<EOF
Hostname "vm5"
FQDNLookup false
BaseDir "$gd"
PIDFile "$gd/collectd.pid"
TypesDB $MB_TYPESDB
Interval 1
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$gd/collectd.log"
</Plugin>
LoadPlugin csv
<Plugin csv>
  DataDir "$gd/csv"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin guestmem
<Plugin guestmem>
  MeminfoPath "$GM_MEMINFO"
  VmstatPath "$GM_VMSTAT"
  PressurePath "$GM_PRESSURE"
  XenstorePath "$MB_GUEST_SOCK"
</Plugin>
EOF
genv=()
if mb__plugins_asan; then
  genv=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1)
fi
mb_bg "$gd/collectd.stderr" env "${genv[@]}" "$MB_COLLECTD_BIN" -f -C "$gd/collectd.conf"
MB_SAN_LOGS+=("$gd/collectd.stderr" "$gd/collectd.log")
mb_wait_for 10 gm_field seq || mb_fail "guestmem wrote no record: $(tail -5 "$gd/collectd.log")"
mb_log "ok: guest domain 5 publishes (seq $(gm_field seq))"

# --- dom0's collectd with vmmem
vmt_sim_conf "$MB_DIR/collectd.conf" "" "$(vmt_membal_block)"
mb_collectd_start "$MB_DIR/collectd.conf"
vmt_expect 10 $((total * 1024)) vm5 memory-guest_MemTotal
vmt_expect 5 $((700000 * 1024)) vm5 memory-guest_MemFree
vmt_expect 5 $((700000 * 1024)) vm5 memory-guest_Committed_AS
vmt_expect 5 0 vm5 bool-sample_stale
vmt_expect 5 2.5 vm5 percent-guest_psi_some_avg10_bp
vmt_expect 5 0.75 vm5 percent-guest_psi_full_avg10_bp
for k in psi_some_total_us:7000000 psi_full_total_us:2000000 workingset_refault_file:4567 workingset_refault_anon:3; do
  f=$MB_DIR/rrd/$MB_HOSTNAME/vmmem-vm5/derive-${k%:*}.rrd
  mb_wait_for 5 test -f "$f" || mb_fail "no RRD $f"
  mb_assert_eq "${k#*:}" "$(rrdtool lastupdate "$f" | awk -F': ' 'NF == 2 { print $2 + 0 }')" "dom0 RRD ${k%:*} = the guest's"
done
s1=$(vmt_get vm5 count-sample_seq)
seq_moved() { awk -v a="$s1" -v b="$(vmt_get vm5 count-sample_seq)" 'BEGIN { exit !(b > a) }'; }
mb_wait_for 20 seq_moved || true # asserted below
s2=$(vmt_get vm5 count-sample_seq)
awk -v a="$s1" -v b="$s2" 'BEGIN { exit !(b > a) }' || mb_fail "seq did not advance in dom0 ($s1 -> $s2)"
mb_log "ok: dom0 sees the guest's seq advance ($s1 -> $s2)"

rrd=$MB_DIR/rrd/$MB_HOSTNAME/vmmem-vm5/memory-guest_MemTotal.rrd
mb_wait_for 5 test -f "$rrd" || mb_fail "no RRD file $rrd"
last=$(rrdtool lastupdate "$rrd" | awk -F': ' 'NF == 2 { print $2 + 0 }')
mb_assert_eq $((total * 1024)) "$last" "RRD guest_MemTotal in dom0 = the guest's MemTotal (bytes)"

# the guest's memory changes: dom0 follows
gm_meminfo "$total" 500000
vmt_expect 5 $((500000 * 1024)) vm5 memory-guest_MemFree

# a swap burst in the guest: guestmem publishes an urgent record at once,
# vmmem hands it to membal, which decides at once. The guest swaps on
# until the round (a single burst needs guestmem's urgent thread to have
# polled vmstat before it: gm_swap_until).
r0=$(vmt_round)
t0=$(mb_now_ms)
GM_PSWPIN=10
gm_swap_until 20 vmt__round_after "$r0" ||
  mb_fail "no membal round in dom0 for the guest's swap burst"
mb_log "MEASURED: guest swapping -> dom0 membal round seen after $(($(mb_now_ms) - t0)) ms from the start of the swapping (includes guestmem's poll of its files and this test's 100 ms polling)"
mb_assert "dom0 collectd alive" mb_collectd_alive
mb_log "PASS"
