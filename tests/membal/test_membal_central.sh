#!/usr/bin/env bash
# A central collector needs nothing of membal's (issue 15, item 6): the
# host's collectd (vmmem + membal on the sim backend, its own rrdtool)
# sends every value with the network plugin to a second, stock collectd on
# 127.0.0.1 that loads only logfile, network, rrdtool and unixsock from
# collectd's own plugin directory, with collectd's default types.db. The
# central one writes an RRD file for every value the host's own rrdtool
# writes (none is dropped for an unknown type), with the same figures, and
# membal-graph draws the host's graphs from the central data directory.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
total=$((4096 * MiB))
dom0=$((512 * MiB))

# A free UDP port on the loopback for the network plugin.
port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# ---- the central collectd: stock plugins and types only ----
cdir=$MB_DIR/central
mkdir -p "$cdir/rrd"
cat >"$cdir/collectd.conf" <<EOF
Hostname "central"
FQDNLookup false
BaseDir "$cdir"
PIDFile "$cdir/collectd.pid"
Interval 1
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$cdir/collectd.log"
</Plugin>
LoadPlugin network
<Plugin network>
  Listen "127.0.0.1" "$port"
</Plugin>
LoadPlugin rrdtool
<Plugin rrdtool>
  DataDir "$cdir/rrd"
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$cdir/collectd.sock"
</Plugin>
EOF
if grep -E '^(TypesDB|PluginDir|LoadPlugin)' "$cdir/collectd.conf" |
  grep -Ev "^(PluginDir \"$MB_STOCK_PLUGINDIR\"|LoadPlugin (logfile|network|rrdtool|unixsock))\$"; then
  mb_fail "the central configuration loads something not stock"
fi
"$MB_COLLECTD_BIN" -t -C "$cdir/collectd.conf" >"$cdir/configtest.out" 2>&1 ||
  mb_fail "collectd -t rejected the central configuration: $(cat "$cdir/configtest.out")"
mb_bg "$cdir/collectd.stderr" "${MB_DEATHSIG[@]}" "$MB_COLLECTD_BIN" -f -C "$cdir/collectd.conf"
central_pid=$MB_LAST_PID
central_up() { kill -0 "$central_pid" && collectdctl -s "$cdir/collectd.sock" listval; }
mb_wait_for 15 central_up || mb_fail "central collectd did not come up: $(cat "$cdir/collectd.stderr")"
mb_log "central collectd pid $central_pid, listening on 127.0.0.1:$port (udp)"

# ---- the host: vmmem + membal (sim), its own rrdtool, network client ----
mb_xenstored_start
mbt_guests "$total" "$dom0" 2
echo $((900 * MiB)) >"$MB_DIR/vm1.used"
echo $((100 * MiB)) >"$MB_DIR/vm2.used"
mb_bg "$MB_DIR/loop1.log" mbt_guest_loop 1 "$MB_DIR/vm1.used"
mb_bg "$MB_DIR/loop2.log" mbt_guest_loop 2 "$MB_DIR/vm2.used"
mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Policy "cagma"
  Period 3600
  Reserve "1GiB"
EOF
cat >>"$MB_DIR/collectd.conf" <<EOF
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "$port"
</Plugin>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2
mbt_flush_round
mbt_settle "$dom0" "$total" 1 2
mbt_flush_round # a second round: derive-rounds has a rate, targets settled
t1=$(mbt_target 1)
mb_log "host: round $(mbt_round), vm1 target $t1 KiB"

# ---- every RRD file of the host's is written centrally too ----
host_rrd=$MB_DIR/rrd/$MB_HOSTNAME
central_rrd=$cdir/rrd/$MB_HOSTNAME
rrd_list() { (cd "$1" 2>/dev/null && find . -name '*.rrd' | sort); }
must=(vmmem/count-domains vmmem/memory-host_total vmmem/memory-host_free
  vmmem-vm1/memory-current vmmem-vm1/memory-target vmmem-vm1/memory-guest_MemTotal
  vmmem-vm1/count-sample_seq vmmem-vm1/duration-sample_age vmmem-vm1/bool-sample_stale
  vmmem-vm1/derive-pswpin vmmem-vm1/derive-pgfault
  membal-vm1/memory-target membal-vm1/memory-cma membal-vm1/gauge-reason
  membal/gauge-tau membal/derive-rounds membal/count-round membal/memory-pool
  membal/memory-sum_targets)
for f in "${must[@]}"; do
  mb_wait_for 10 test -s "$host_rrd/$f.rrd" || mb_fail "host rrdtool wrote no $f.rrd"
  mb_wait_for 10 test -s "$central_rrd/$f.rrd" || mb_fail "central collectd wrote no $f.rrd"
done
mb_log "ok: central has all ${#must[@]} expected RRD files of the host"
central_has_all() { [ -z "$(comm -23 <(rrd_list "$host_rrd") <(rrd_list "$central_rrd"))" ]; }
mb_wait_for 10 central_has_all ||
  mb_fail "RRD files of the host missing centrally: $(comm -23 <(rrd_list "$host_rrd") <(rrd_list "$central_rrd") | tr '\n' ' ')"
mb_log "ok: every one of the host's $(rrd_list "$host_rrd" | wc -l) RRD files is written centrally"
if grep -Ei 'dataset not found|types\.db|unknown type' "$cdir/collectd.log"; then
  mb_fail "central collectd complained about a type"
fi
mb_assert "central loaded only stock plugins" \
  bash -c "! grep 'successfully loaded' '$cdir/collectd.log' | grep -Ev 'plugin \"(logfile|network|rrdtool|unixsock)\"'"

# ---- the same figures: vm1's target, as the host's RRD holds it ----
rrd_last() { rrdtool lastupdate "$1" | awk -F': ' 'NF == 2 { printf "%.0f\n", $2 }'; }
same_target() { [ "$(rrd_last "$central_rrd/membal-vm1/memory-target.rrd")" = "$((t1 * 1024))" ]; }
mb_wait_for 10 same_target ||
  mb_fail "central vm1 target $(rrd_last "$central_rrd/membal-vm1/memory-target.rrd") bytes, host's backend $((t1 * 1024))"
mb_log "ok: central RRD holds vm1's target $((t1 * 1024)) bytes"
# (values of one round may travel in different network packets)
round2() { [ "$(rrd_last "$central_rrd/membal/count-round.rrd")" -ge 2 ]; }
mb_wait_for 10 round2 ||
  mb_fail "central count-round $(rrd_last "$central_rrd/membal/count-round.rrd"), expected the host's second round"
mb_log "ok: central count-round = $(rrd_last "$central_rrd/membal/count-round.rrd")"
mb_collectd_stop

# ---- graphs of the host from the central directory ----
out=$MB_DIR/graphs
"$MEMBAL_SOURCE_DIR/contrib/membal-graph" --datadir "$cdir/rrd" --host "$MB_HOSTNAME" \
  --start -2min --out "$out" --width 700 --height 250 >"$MB_DIR/graph.out" ||
  mb_fail "membal-graph failed on the central directory: $(cat "$MB_DIR/graph.out")"
cat "$MB_DIR/graph.out" >&2
mbt_check_pngs "$MB_DIR/graph.out" "$out" domain-vm1 domain-vm2 host
mb_assert "central collectd still running" kill -0 "$central_pid"
mb_log "central collector test passed"
