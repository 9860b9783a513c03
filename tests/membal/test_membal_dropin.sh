#!/usr/bin/env bash
# The shipped drop-in collectd.conf.d/dom0.conf works as documented: with
# only its paths pointed at the test (plugin dir, DataDir, socket)
# collectd accepts it as is (Backend "libxl"); switched to Backend "sim" it
# runs vmmem + membal + rrdtool + unixsock, and `collectdctl flush
# plugin=membal` through the drop-in's own unixsock block rebalances, also
# after a crash left the socket file behind (DeleteSocket).
. "$(dirname "$0")/../lib/membal_lib.bash"

dropin=$MEMBAL_SOURCE_DIR/collectd.conf.d/dom0.conf
[ -f "$dropin" ] || mb_fail "$dropin missing"

# Every membal option the plugin knows is documented in the drop-in.
for opt in Policy Backend XenstorePath URI DryRun Period Reserve TaxRate \
  CmaMarginFraction CmaMarginMin SwapThreshold MajorFaultThreshold \
  UpHysteresis DownHysteresis StepCap DeadBand StaleAfter Domain Min Max Weight; do
  grep -Eq "^ *#? *<?${opt}[ >]" "$dropin" || mb_fail "option $opt not documented in dom0.conf"
done
mb_log "ok: every membal option documented in dom0.conf"

# Every shipped drop-in loads our plugins only through the package's
# load/*.conf files (a copy left after `apt-get remove` must not stop
# collectd: tests/pkg) and names no types.db of ours (stock types only).
for f in "$MEMBAL_SOURCE_DIR"/collectd.conf.d/*.conf; do
  if grep -En '^[[:space:]]*(TypesDB|LoadPlugin[[:space:]]+"?(vmmem|membal|guestmem))' "$f"; then
    mb_fail "$(basename "$f") loads a plugin of ours or a TypesDB directly"
  fi
done
mb_log "ok: no drop-in loads our plugins or a types.db directly"

# point_at_test <out> <sed expressions...>: the drop-in with test paths.
point_at_test() {
  local out=$1
  shift
  mkdir -p "$MB_DIR/collectd" "$MB_DIR/rrd"
  {
    cat <<EOF
Hostname "$MB_HOSTNAME"
FQDNLookup false
BaseDir "$MB_DIR/collectd"
PIDFile "$MB_DIR/collectd/collectd.pid"
Interval 1
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$MB_DIR/collectd/collectd.log"
</Plugin>
EOF
    sed -e "s#^Include \"/usr/share/membal/load/vmmem.conf\"#PluginDir \"$MB_PLUGINDIR\"\\n&#" \
      -e "s#\"/usr/share/membal/load/#\"$MEMBAL_SOURCE_DIR/collectd.conf.d/load/#" \
      -e "s#^LoadPlugin rrdtool#PluginDir \"$MB_STOCK_PLUGINDIR\"\\nLoadPlugin rrdtool#" \
      -e "s#/var/lib/collectd/rrd#$MB_DIR/rrd#" \
      -e "s#/var/run/collectd-unixsock#$MB_DIR/collectd/collectd.sock#" \
      -e "s#SocketGroup \"root\"#SocketGroup \"$(id -gn)\"#" \
      "$@" "$dropin"
  } >"$out"
  grep -q "^Include \"$MEMBAL_SOURCE_DIR/collectd.conf.d/load/membal.conf\"" "$out" ||
    mb_fail "drop-in copy does not include load/membal.conf"
}

# 1. As shipped (libxl, no Xen here): collectd starts, membal accepts its
# configuration and starts (the backend is retried every round).
point_at_test "$MB_DIR/libxl.conf"
grep -q 'Backend "libxl"' "$MB_DIR/libxl.conf" || mb_fail "drop-in does not default to libxl"
mb_collectd_start "$MB_DIR/libxl.conf"
mb_wait_for 5 mbt_membal_log "policy cagma, backend libxl" ||
  mb_fail "membal did not start from the shipped drop-in"
if mbt_membal_log "refused"; then mb_fail "membal refused the shipped drop-in"; fi
mb_assert "collectd running with the shipped drop-in" mb_collectd_alive
mb_collectd_stop
rm -f "$MB_DIR/collectd/collectd.log"
mb_log "ok: the shipped dom0.conf loads"

# 2. On the sim backend it runs.
MiB=$MBT_MIB
mb_xenstored_start
mbt_guests $((3072 * MiB)) $((512 * MiB)) 2 # pool 2 GiB: what the guests hold
echo $((950 * MiB)) >"$MB_DIR/vm1.used"
echo $((100 * MiB)) >"$MB_DIR/vm2.used"
for id in 1 2; do mb_bg "$MB_DIR/loop$id.log" mbt_guest_loop "$id" "$MB_DIR/vm$id.used"; done
point_at_test "$MB_DIR/sim.conf" \
  -e "s#^  Backend \"libxl\"\$#  Backend \"sim\"\\n  XenstorePath \"$XENSTORED_PATH\"#" \
  -e "s#^  Period 2\$#  Period 3600#" \
  -e "s#^  \\#Reserve \"2GiB\"#  Reserve \"1GiB\"#"
grep -q 'Period 3600' "$MB_DIR/sim.conf" || mb_fail "could not set Period in the drop-in copy"
mb_collectd_start "$MB_DIR/sim.conf"
mb_wait_for 10 mb_getval "$MB_HOSTNAME/vmmem-vm1/memory-guest_MemTotal" ||
  mb_fail "vmmem from the drop-in dispatched no sample"
mbt_wait_rates 1 2
mbt_flush_round
mb_wait_for 2 bash -c "[ \"\$(xenstore-read /local/domain/1/memory/target)\" -gt $((1024 * MiB)) ]" ||
  mb_fail "vm1 not grown after the flush: $(mbt_target 1)"
mb_assert "vm2 shrunk ($(mbt_target 2) KiB)" test "$(mbt_target 2)" -lt $((1024 * MiB))
mb_assert "rrdtool from the drop-in writes membal's history" \
  mb_wait_for 5 test -s "$MB_DIR/rrd/$MB_HOSTNAME/membal-vm1/memory-target.rrd"

# 3. A crash leaves unixsock's socket file behind; the drop-in's
# DeleteSocket lets the next start bind it, so collectdctl works again
# (without it: "unixsock plugin: bind failed: Address already in use").
grep -q '^  DeleteSocket true$' "$MB_DIR/sim.conf" || mb_fail "drop-in's unixsock block lacks DeleteSocket true"
kill -KILL "$MB_CD_PID"
wait "$MB_CD_PID" 2>/dev/null || true
MB_CD_PID=""
[ -S "$MB_CD_SOCK" ] || mb_fail "the killed collectd left no socket file (test assumption)"
MB_KEEP_STALE_SOCKET=1 mb_collectd_start "$MB_DIR/sim.conf"
mbt_flush_round
if mb_log_has "unixsock plugin: bind failed"; then mb_fail "unixsock could not bind after the crash"; fi
mb_log "ok: after a crash (SIGKILL) the next start binds the socket, collectdctl flush works"
mb_collectd_stop
mb_log "drop-in test passed"
