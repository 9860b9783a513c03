#!/usr/bin/env bash
# collectd.conf.d/guest.conf works with Debian's stock collectd: the stock
# collectd.conf (collectd-core's example, which Debian installs as
# /etc/collectd/collectd.conf) with its stock plugins, stock TypesDB and
# rrdtool, including guest.conf from its conf.d directory. Only paths
# change: the test's files instead of /proc, a private data dir, and a
# PluginDir line because guestmem.so is in the build tree, not installed.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

stock=/usr/share/doc/collectd-core/examples/collectd.conf
[ -f "$stock" ] || mb_skip "$stock missing (collectd-core)"
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
total=$((2000000 + RANDOM))
gm_meminfo "$total" 600000
gm_vmstat 1 2 3 4

cd_dir=$MB_DIR/collectd
mkdir -p "$cd_dir" "$MB_DIR/conf.d"
conf=$MB_DIR/collectd.conf
{
  # globals a packaged system has in its own places
  echo "Hostname \"$MB_HOSTNAME\""
  echo "BaseDir \"$cd_dir\""
  echo "PIDFile \"$cd_dir/collectd.pid\""
  echo "Interval 1"
  sed -e "s|^FQDNLookup true|FQDNLookup false|" \
    -e "s|\"/var/lib/collectd/rrd\"|\"$MB_DIR/rrd\"|" \
    -e "s|<Include \"/etc/collectd/collectd.conf.d\">|<Include \"$MB_DIR/conf.d\">|" \
    -e "s|^LoadPlugin battery|#LoadPlugin battery|" "$stock"
} >"$conf"
grep -q "<Include \"$MB_DIR/conf.d\">" "$conf" || mb_fail "stock config has no conf.d Include"
grep -q "\"$MB_DIR/rrd\"" "$conf" || mb_fail "stock config has no rrdtool DataDir"
if grep -q '^TypesDB' "$conf"; then mb_fail "stock config sets TypesDB: test assumption broken"; fi

# what the test needs to observe: a log file and the unix socket
cat >"$MB_DIR/conf.d/00-test.conf" <<EOF
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$cd_dir/collectd.log"
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$cd_dir/collectd.sock"
</Plugin>
EOF
# the shipped drop-in, with its commented options set for this test
{
  echo "PluginDir \"$MB_PLUGINDIR\""
  sed -e "s|^  #MeminfoPath .*|  MeminfoPath \"$GM_MEMINFO\"|" \
    -e "s|^  #VmstatPath .*|  VmstatPath \"$GM_VMSTAT\"|" \
    -e "s|^  #PressurePath .*|  PressurePath \"$GM_PRESSURE\"|" \
    -e "s|^  #StallWindow |  StallWindow |" \
    -e "s|^  #DomainPath .*|  DomainPath \"$GM_DOM\"|" \
    -e "s|^  #XenstorePath .*|  XenstorePath \"$XENSTORED_PATH\"|" \
    -e "s,^  #\([A-Za-z]*\(Threshold\|Interval\) .*\),  \1," \
    -e "s|\"/usr/share/membal/load/|\"$MEMBAL_SOURCE_DIR/collectd.conf.d/load/|" \
    "$MEMBAL_SOURCE_DIR/collectd.conf.d/guest.conf"
} >"$MB_DIR/conf.d/guest.conf"
n=$(grep -cE '^  (MeminfoPath|VmstatPath|PressurePath|DomainPath|XenstorePath|SwapThreshold|MajorFaultThreshold|UrgentPollInterval|UrgentMinInterval|StallThreshold|StallWindow) ' \
  "$MB_DIR/conf.d/guest.conf")
mb_assert_eq 11 "$n" "documented options of guest.conf enabled (its defaults)"

mb_collectd_start "$conf"
mb_wait_for 10 gm_field seq || mb_fail "no record with the stock configuration"
mb_assert_eq "$total" "$(gm_field MemTotal)" "record MemTotal"
mb_wait_for 10 test -f "$MB_DIR/rrd/$MB_HOSTNAME/guestmem/memory-MemTotal.rrd" ||
  mb_fail "stock rrdtool did not write guestmem's RRD"
mb_wait_for 10 test -f "$MB_DIR/rrd/$MB_HOSTNAME/guestmem/derive-pswpin.rrd" ||
  mb_fail "no RRD for pswpin"
mb_assert "memory-MemTotal.rrd holds a GAUGE" \
  bash -c "rrdtool info '$MB_DIR/rrd/$MB_HOSTNAME/guestmem/memory-MemTotal.rrd' | grep -q 'ds\\[value\\].type = \"GAUGE\"'"
mb_assert "derive-pswpin.rrd holds a DERIVE" \
  bash -c "rrdtool info '$MB_DIR/rrd/$MB_HOSTNAME/guestmem/derive-pswpin.rrd' | grep -q 'ds\\[value\\].type = \"DERIVE\"'"
mb_assert "no unknown-type complaint in the log" \
  bash -c "! grep -Ei 'guestmem.*(not found|unknown type|data set)' '$MB_CD_LOG'"
mb_assert "stock memory plugin runs alongside" mb_getval "$MB_HOSTNAME/memory/memory-used"
