#!/usr/bin/env bash
# vmmem refuses a configuration it does not understand: collectd does not
# start, and the log names the option. A good configuration is accepted.
. "$(dirname "$0")/../lib/vmmem_lib.bash"

asan_env=()
if mb__plugins_asan; then
  asan_env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0)
fi

# try <name> <expected log regex> <vmmem block lines>: collectd must exit
# non-zero on its own and log the regex.
try() {
  local name=$1 re=$2 block=$3 conf=$MB_DIR/$1.conf rc=0
  XENSTORED_PATH=$MB_DIR/none mb_collectd_conf "$conf" <<EOF
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
$block
</Plugin>
EOF
  sed -i "s|$MB_DIR/collectd/collectd.log|$MB_DIR/$name.log|" "$conf"
  env "${asan_env[@]}" timeout 20 /usr/sbin/collectd -f -C "$conf" \
    >"$MB_DIR/$name.out" 2>&1 || rc=$?
  MB_SAN_LOGS+=("$MB_DIR/$name.out")
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || mb_fail "$name: collectd did not refuse the configuration (exit $rc)"
  grep -Eq -- "$re" "$MB_DIR/$name.log" "$MB_DIR/$name.out" ||
    mb_fail "$name: no log line matching '$re': $(cat "$MB_DIR/$name.log" "$MB_DIR/$name.out")"
  mb_log "ok: $name refused: $(grep -Eho -- "$re.*" "$MB_DIR/$name.log" "$MB_DIR/$name.out" | head -1)"
}

try unknown 'vmmem: unknown option "Bogus"' '  Backend "sim"
  Bogus 1'
try nobackend 'vmmem: Backend is required' '  StaleAfter 5'
try badbackend 'vmmem: Backend "xen" unknown' '  Backend "xen"'
try badstale 'vmmem: StaleAfter must be > 0' '  Backend "sim"
  StaleAfter -1'
try badswap 'vmmem: SwapThreshold must be > 0' '  Backend "sim"
  SwapThreshold 0'
try typo 'vmmem: unknown option "Stale"' '  Backend "sim"
  Stale 5'

# every option, well formed: accepted (collectd runs; no xenstored needed
# for that, vmmem retries)
mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
# (SwapRateThreshold: the old spelling of SwapThreshold, read with a
# warning)
vmt_conf "$MB_DIR/collectd.conf" <<EOF
  StaleAfter 5
  SwapRateThreshold 32
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
vmt_expect 5 0 "" count-domains
mb_assert "the old spelling SwapRateThreshold is read with a warning" \
  mb_log_has 'vmmem: SwapRateThreshold is deprecated: it is spelt SwapThreshold now'
mb_collectd_stop

# the shipped drop-in, as a user installs it, switched to the sim backend
# and to the source tree's load/vmmem.conf
vmt_dom 3 web 1048576 2097152
vmt_record 3 1 1000000 250000
{
  echo "PluginDir \"$MB_PLUGINDIR\""
  sed -e "s|^  Backend \"libxl\"|  Backend \"sim\"\n  XenstorePath \"$XENSTORED_PATH\"|" \
    -e "s|\"/usr/share/membal/load/|\"$MEMBAL_SOURCE_DIR/collectd.conf.d/load/|" \
    "$MEMBAL_SOURCE_DIR/collectd.conf.d/vmmem.conf"
} | mb_collectd_conf "$MB_DIR/dropin.conf"
grep -q 'Backend "sim"' "$MB_DIR/dropin.conf" || mb_fail "drop-in not switched to sim"
mb_collectd_start "$MB_DIR/dropin.conf"
vmt_expect 5 1 "" count-domains
vmt_expect 5 $((1000000 * 1024)) web memory-guest_MemTotal
mb_log "PASS"
