# shellcheck shell=bash
# Helpers of the membal integration tests (test_membal*.sh), on top of
# tests/lib/harness.sh: a simulated hypervisor written straight into the
# test's xenstored (plugins/SCHEMA.md section 4), guest records
# (section 1), and a collectd.conf with vmmem + membal + rrdtool.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

MBT_MIB=1024 # KiB per MiB

# mbt_host <total_kib> <free_kib>
mbt_host() {
  xenstore-write /tool/membal-sim/host "$(printf 'total_kib %s\nfree_kib %s\n' "$1" "$2")"
}

# mbt_dom <domid> <name> <current_kib> <max_kib>: a running domain whose
# balloon sits at current_kib with its target there too.
mbt_dom() {
  local id=$1 name=$2 cur=$3 max=$4
  xenstore-write "/tool/membal-sim/dom/$id" \
    "$(printf 'name %s\ncurrent_kib %s\nmax_kib %s\n' "$name" "$cur" "$max")"
  if [ "$id" != 0 ]; then
    mb_guest_domain "$id" "$name"
    xenstore-write "/local/domain/$id/memory/target" "$cur"
  fi
}

# mbt_record <domid> <seq> <total_kib> <used_kib> [pswpin pswpout]: the
# guest's record: MemAvailable = total - used, a steady Committed_AS = used.
mbt_record() {
  local id=$1 seq=$2 total=$3 used=$4 sin=${5:-0} sout=${6:-0}
  local avail=$((total - used))
  local free=$((avail / 2))
  local cached=$((avail - free))
  xenstore-write "/local/domain/$id/data/membal/stats" "$(
    printf 'membal 1\nseq %s\nuptime_ms %s\nurgent 0\n' "$seq" "$((seq * 1000))"
    printf 'MemTotal %s\nMemFree %s\nMemAvailable %s\nCached %s\n' "$total" "$free" "$avail" "$cached"
    printf 'Active %s\nInactive %s\nAnonPages %s\nCommitted_AS %s\n' "$used" "$cached" "$used" "$used"
    printf 'SwapTotal 1048576\nSwapFree 1048576\n'
    printf 'pswpin %s\npswpout %s\npgmajfault 0\npgfault %s\n' "$sin" "$sout" "$((seq * 100))"
  )"
}

# mbt_target <domid>: the balloon target in the backend (KiB).
mbt_target() { xenstore-read "/local/domain/$1/memory/target"; }

# mbt_conf <file> <membal options...>: collectd.conf with vmmem and membal
# on the sim backend and rrdtool under $MB_DIR/rrd. Extra lines for the
# membal block come from stdin.
mbt_conf() {
  local out=$1
  local extra
  extra=$(cat)
  mb_collectd_conf "$out" <<EOF
LoadPlugin rrdtool
<Plugin rrdtool>
  DataDir "$MB_DIR/rrd"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
</Plugin>
LoadPlugin membal
<Plugin membal>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
$extra
</Plugin>
EOF
}

# mbt_membal_log <regex>: collectd's log has a membal line matching it.
mbt_membal_log() { grep -E -- "membal: .*$1" "$MB_CD_LOG"; }

# mbt_rounds: rounds membal computed so far (from its log at debug level is
# not available; use its dispatched counter through unixsock).
mbt_rounds() { mb_getval "$MB_HOSTNAME/membal/membal_rounds" 2>/dev/null || echo 0; }
