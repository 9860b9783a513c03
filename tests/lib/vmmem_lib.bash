# shellcheck shell=bash
# Helpers of the vmmem integration tests (test_vmmem*.sh) on top of
# tests/lib/harness.sh: the simulated hypervisor written into the test's
# real xenstored (plugins/SCHEMA.md section 4), guest records (section 1) and
# a collectd.conf with vmmem (sim backend) + rrdtool.
. "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# vmt_host <total_kib> <free_kib>
vmt_host() {
  xenstore-write -R /tool/membal-sim/host \
    "$(printf 'total_kib %s\nfree_kib %s\nnodes 2\nnode0_total_kib %s\nnode0_free_kib %s\nnode1_total_kib %s\nnode1_free_kib %s\n' \
      "$1" "$2" "$(($1 / 2))" "$(($2 / 2))" "$(($1 / 2))" "$(($2 / 2))")"
}

# vmt_dom <domid> <name> <current_kib> <max_kib>: a running domain with its
# balloon target at current_kib (written where libxl writes it).
vmt_dom() {
  local id=$1 name=$2 cur=$3 max=$4
  xenstore-write -R "/tool/membal-sim/dom/$id" \
    "$(printf 'name %s\ncurrent_kib %s\nmax_kib %s\n' "$name" "$cur" "$max")"
  if [ "$id" != 0 ]; then
    mb_guest_domain "$id" "$name"
    xenstore-write "/local/domain/$id/memory/target" "$cur"
  fi
}

# vmt_record <domid> <seq> <MemTotal> <MemFree> [urgent] [pswpin] [pswpout]:
# writes the guest record as guestmem would (uptime grows 1 s per seq).
vmt_record() {
  local id=$1 seq=$2 total=$3 free=$4 urgent=${5:-0} sin=${6:-0} sout=${7:-0}
  xenstore-write -R "/local/domain/$id/data/membal/stats" "$(
    printf 'membal 1\nseq %s\nuptime_ms %s\nurgent %s\n' "$seq" "$((seq * 1000))" "$urgent"
    printf 'MemTotal %s\nMemFree %s\nMemAvailable %s\nCommitted_AS %s\n' "$total" "$free" "$free" "$((total - free))"
    printf 'SwapTotal 1048576\nSwapFree 1048576\n'
    printf 'pswpin %s\npswpout %s\npgmajfault 7\npgfault %s\n' "$sin" "$sout" "$((seq * 100))"
  )"
}

# vmt_sim_conf <file> <vmmem lines> [<after>]: collectd.conf with rrdtool
# (DataDir $MB_DIR/rrd) and vmmem on the sim backend, the given lines inside
# the vmmem block, then <after> (further plugins; membal_lib.bash adds
# membal there).
vmt_sim_conf() {
  local out=$1 extra=$2 after=${3:-}
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
$extra
</Plugin>
$after
EOF
}

# vmt_membal_block [extra lines]: a membal block for vmt_sim_conf's <after>:
# sim backend, DryRun (no target is ever set), Period 1 h, so that every
# round comes from a sample vmmem handed over as urgent (or a flush): the
# observable of vmmem's watch thread, which hands urgent samples to membal
# only (plugins/SCHEMA.md section 2b), never as a notification.
vmt_membal_block() {
  printf 'LoadPlugin membal\n<Plugin membal>\n  Backend "sim"\n  XenstorePath "%s"\n  DryRun true\n  Period 3600\n%s\n</Plugin>\n' \
    "$XENSTORED_PATH" "${1:-}"
}

# vmt_round: number of membal's latest round (0 = none yet).
vmt_round() {
  local v
  v=$(mb_getval "$MB_HOSTNAME/membal/count-round" 2>/dev/null) || {
    echo 0
    return
  }
  awk -v v="$v" 'BEGIN { printf "%d\n", v }'
}
vmt__round_after() { [ "$(vmt_round)" -gt "$1" ]; }

# vmt_wait_reads <n>: vmmem's read callback dispatched n more rounds of
# values (seen on vmmem/count-domains, which every read dispatches); 60 s
# at most. What a negative check waits for ("n more reads and still...").
vmt_wait_reads() {
  mb_wait_dispatches "$1" "$MB_HOSTNAME/vmmem/count-domains" ||
    mb_fail "vmmem did not read $1 more times within 60 s"
}

# vmt_complaints <regex> <window_s>: sets VMT_COMPLAINTS to the number of
# log lines matching regex stamped within window_s seconds after the first
# one's second. collectd's c_complain logs a repeated failure at t0, then
# at least 1 s, 2 s, 4 s ... after the previous line (in time, however
# often the plugin fails): at most 2 lines within 2 s, 3 within 3 s; a line
# per read of 1 s would be one more. Counted once collectd's reads went
# past the window (needs mb_conf_ticks: its uptime value stamped later),
# so the window holds every read it had; a slow machine has fewer reads in
# it, never more lines. No line within 10 s: 0.
vmt_complaints() {
  local re=$1 w=$2 s0
  VMT_COMPLAINTS=0
  mb_wait_for 10 mb_log_has "$re" || return 0
  s0=$(vmt__stamps "$re" | head -n1)
  mb_wait_for 60 mb__not_older "$MB_HOSTNAME/uptime/uptime" $((s0 + w + 1)) ||
    mb_fail "collectd's reads did not go past $((s0 + w + 1)) (uptime not dispatched)"
  VMT_COMPLAINTS=$(vmt__stamps "$re" | awk -v lim=$((s0 + w)) '$1 <= lim { n++ } END { print n + 0 }')
}
# vmt__stamps <regex>: the time stamps (s since the epoch) of the matching
# lines of collectd's log ("[YYYY-MM-DD hh:mm:ss] ...", local time).
vmt__stamps() {
  local ts
  grep -E -- "$1" "$MB_CD_LOG" | sed -n 's/^\[\([0-9-]* [0-9:]*\)\].*/\1/p' |
    while read -r ts; do date -d "$ts" +%s; done
}

# vmt_seq <plugin_instance>: vmmem's sample_seq of that guest (integer).
vmt_seq() {
  local v
  v=$(vmt_get "$1" count-sample_seq) || return 1
  awk -v v="$v" 'BEGIN { printf "%d\n", v }'
}
vmt__seq_above() {
  local s
  s=$(vmt_seq "$1") || return 1
  [ "$s" -gt "$2" ]
}

# vmt_wait_new_samples <n> <plugin_instance...>: for each guest, vmmem
# dispatched a sample with a higher seq n times in turn (30 s at most
# each). vmmem hands a sample to membal within the read that dispatches
# it and reads one after the other, so once the cache shows the n-th new
# seq, membal holds the samples before it: with n = 2, the one seen first
# and the next, two samples of each guest, hence rates.
vmt_wait_new_samples() {
  local n=$1 pi s i
  shift
  for pi in "$@"; do
    s=$(vmt_seq "$pi") || s=0
    for ((i = 0; i < n; i++)); do
      mb_wait_for 30 vmt__seq_above "$pi" "$s" ||
        mb_fail "vmmem dispatched no sample of $pi with a seq above $s"
      # it was above s a moment ago (a value late for collectd's cache
      # timeout on a loaded machine may be missing for a moment)
      s=$(vmt_seq "$pi") || s=$((s + 1))
    done
  done
}

# vmt_conf <file>: vmt_sim_conf with the vmmem block's extra lines from stdin.
vmt_conf() { vmt_sim_conf "$1" "$(cat)"; }

# vmt_get <plugin_instance> <type-type_instance>: value of a vmmem value.
vmt_get() {
  local pi=${1:+-$1} ds=value
  case $2 in duration-*) ds=seconds ;; esac # types.db: duration seconds:GAUGE
  mb_getval "$MB_HOSTNAME/vmmem$pi/$2" "$ds"
}

# vmt_is <expected> <plugin_instance> <type-type_instance>: true when the
# value equals expected. getval prints 7 significant digits (2.048000e+09),
# so equal means within 1e-6 relative; exact figures are checked in the RRD
# files (rrdtool lastupdate).
vmt_is() {
  local v
  v=$(vmt_get "$2" "$3") || return 1
  awk -v a="$v" -v b="$1" 'BEGIN { d = a - b; if (d < 0) d = -d;
    m = b < 0 ? -b : b; exit !(d <= m * 1e-6) }'
}

# vmt_expect <timeout_s> <expected> <plugin_instance> <type-ti>: waits until
# the value is there. It returns as soon as it is, so the limit is raised to
# 30 s at least: a limit for a plugin that never gets there, not a speed
# check (a loaded machine makes every dispatch late).
vmt_expect() {
  local limit=$1
  awk -v t="$limit" 'BEGIN { exit !(t < 30) }' && limit=30
  if ! mb_wait_for "$limit" vmt_is "$2" "$3" "$4"; then
    mb_fail "vmmem${3:+-$3}/$4: expected $2, got '$(vmt_get "$3" "$4" 2>/dev/null || echo absent)'"
  fi
  mb_log "ok: vmmem${3:+-$3}/$4 = $2"
}

# vmt_listed <plugin_instance> [type-ti]: collectdctl listval has it.
vmt_listed() {
  mb_collectdctl listval | grep -q "^$MB_HOSTNAME/vmmem-$1/${2:-}"
}
