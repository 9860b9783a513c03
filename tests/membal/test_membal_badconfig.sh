#!/usr/bin/env bash
# A configuration membal refuses stops the real collectd from starting, with
# a log line naming the offending option, and nothing reaches the backend.
# Control: the same file without the bad line starts and membal runs rounds.
. "$(dirname "$0")/../lib/membal_lib.bash"

mb_xenstored_start
mbt_host $((4096 * MBT_MIB)) $((1024 * MBT_MIB))
mbt_dom 0 Domain-0 $((1024 * MBT_MIB)) $((1024 * MBT_MIB))
mbt_dom 1 vm1 $((1024 * MBT_MIB)) $((2048 * MBT_MIB))
mbt_dom 2 vm2 $((1024 * MBT_MIB)) $((2048 * MBT_MIB))

asan_env=()
if mb__plugins_asan; then
  asan_env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0)
fi

# conf_with <file> <membal lines>: membal only (vmmem not needed to parse).
conf_with() {
  mb_collectd_conf "$1" <<EOF
PluginDir "$MB_PLUGINDIR"
LoadPlugin membal
<Plugin membal>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
  Period 0.5
$2
</Plugin>
EOF
}

# refused <what> <expected log regex> <membal lines>
refused() {
  local what=$1 re=$2 lines=$3
  local conf=$MB_DIR/bad.conf log=$MB_DIR/collectd/collectd.log
  rm -f "$log"
  conf_with "$conf" "$lines"
  local rc=0
  env "${asan_env[@]}" timeout 20 "$MB_COLLECTD_BIN" -f -C "$conf" \
    >"$MB_DIR/bad.stderr" 2>&1 || rc=$?
  MB_SAN_LOGS+=("$MB_DIR/bad.stderr")
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] ||
    mb_fail "$what: collectd did not refuse to start (exit $rc)"
  grep -Eq -- "membal: .*$re" "$log" ||
    mb_fail "$what: no membal log line matching '$re': $(cat "$log")"
  mb_log "ok: $what refused ($(grep -E -- "membal: .*$re" "$log" | head -1 | cut -c1-160))"
}

refused "unknown option" 'unknown option "Bogus"' '  Bogus 3'
refused "unknown policy" 'Policy "fair" unknown' '  Policy "fair"'
refused "tax rate above 1" 'TaxRate must be in \[0,1\]' '  TaxRate 1.5'
refused "tax rate word" 'TaxRate must be a number' '  TaxRate "high"'
refused "down hysteresis 0" 'DownHysteresis must be in \[1' '  DownHysteresis 0'
refused "negative stale" 'StaleAfter' '  StaleAfter -3'
refused "negative forecast" 'ForecastHorizon must be in \[0,600\]' '  ForecastHorizon -1'
refused "reserve unit" 'Reserve: unknown unit "XB"' '  Reserve "12XB"'
refused "urgent interval 0" 'UrgentInterval must be between 0.1 and 3600' '  UrgentInterval 0'
refused "surge half-life < 0" 'SurgeHalfLife must be between 0 \(off\) and 86400' '  SurgeHalfLife -1'
refused "unknown backend" 'Backend "qemu" unknown' '  Backend "qemu"'
refused "min above max" 'Domain "vm1".*Min .* is above Max' \
  '  <Domain "vm1">
    Min "2GiB"
    Max "1GiB"
  </Domain>'
refused "weight 0" 'Domain "vm2".*Weight must be >= 1' \
  '  <Domain "vm2">
    Weight 0
  </Domain>'
refused "unknown domain option" 'Domain "vm2".*unknown option "Share"' \
  '  <Domain "vm2">
    Share 2
  </Domain>'
refused "domain twice" 'Domain "vm1"> configured twice' \
  '  <Domain "vm1">
  </Domain>
  <Domain "vm1">
  </Domain>'

# Nothing was ever set.
mb_assert_eq $((1024 * MBT_MIB)) "$(mbt_target 1)" "vm1 target untouched"
mb_assert_eq $((1024 * MBT_MIB)) "$(mbt_target 2)" "vm2 target untouched"

# Control: the same file with valid options starts and runs rounds.
conf_with "$MB_DIR/good.conf" '  Policy "tax"
  TaxRate "auto"
  Reserve "1GiB"
  <Domain "vm1">
    Min "256MiB"
    Max "2GiB"
    Weight 2
  </Domain>'
mb_collectd_start "$MB_DIR/good.conf"
mb_wait_for 10 mb_getval "$MB_HOSTNAME/membal/memory-pool" ||
  mb_fail "membal with a valid configuration dispatched no round"
pool=$(mb_getval "$MB_HOSTNAME/membal/memory-pool")
mb_assert "pool = 4 GiB - 1 GiB reserve ($pool)" \
  awk -v v="$pool" 'BEGIN { d = v - 3 * 1073741824; exit !(d < 1e4 && d > -1e4) }'
mb_collectd_stop

# Reserve "auto": what dom0 and the hypervisor hold (total - free - guests =
# 4096 - 1024 - 2048 MiB) plus 64 MiB of slack.
rm -f "$MB_DIR/collectd/collectd.log"
conf_with "$MB_DIR/auto.conf" '  Reserve "auto"'
mb_collectd_start "$MB_DIR/auto.conf"
mb_wait_for 10 mb_getval "$MB_HOSTNAME/membal/memory-pool" ||
  mb_fail "membal with Reserve auto dispatched no round"
pool=$(mb_getval "$MB_HOSTNAME/membal/memory-pool")
want=$(((4096 - 1024 - 64) * 1048576))
mb_assert "pool with Reserve auto = 3008 MiB ($pool bytes)" \
  awk -v v="$pool" -v w="$want" 'BEGIN { d = v - w; exit !(d < 1e4 && d > -1e4) }'
mb_collectd_stop
