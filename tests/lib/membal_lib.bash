# shellcheck shell=bash
# Helpers of the membal integration tests (test_membal*.sh), on top of
# vmmem_lib.bash (and so tests/lib/harness.sh): a simulated hypervisor
# written straight into the test's xenstored (plugins/SCHEMA.md section 4),
# guest records (section 1), and a collectd.conf with vmmem + membal +
# rrdtool.
. "$(dirname "${BASH_SOURCE[0]}")/vmmem_lib.bash"

# shellcheck disable=SC2034 # used by the tests that source this file
MBT_MIB=1024 # KiB per MiB

# mbt_host <total_kib> <free_kib>
mbt_host() {
  xenstore-write -R /tool/membal-sim/host "$(printf 'total_kib %s\nfree_kib %s\n' "$1" "$2")"
}

# mbt_dom <domid> <name> <current_kib> <max_kib>: a running domain whose
# balloon sits at current_kib with its target there too.
mbt_dom() { vmt_dom "$@"; }

# mbt_guests <total_kib> <dom0_kib> <n>: Domain-0 holding dom0_kib and
# guests vm1..vmN holding 1 GiB each (max 2 GiB) on a host of total_kib
# whose free memory is what they do not hold.
mbt_guests() {
  local total=$1 dom0=$2 n=$3 id
  mbt_dom 0 Domain-0 "$dom0" "$dom0"
  for ((id = 1; id <= n; id++)); do
    mbt_dom "$id" "vm$id" $((1024 * MBT_MIB)) $((2048 * MBT_MIB))
  done
  mbt_host "$total" $((total - dom0 - n * 1024 * MBT_MIB))
}

# mbt_three_guests <vm1_mib> <vm2_mib> <vm3_mib>: the usual test host: 4 GiB,
# Domain-0 holding 512 MiB, guests vm1..vm3 of 1 GiB (mbt_guests), each with
# a guest agent stand-in (mbt_guest_loop) whose demand is in
# $MB_DIR/vm<id>.used (KiB; a test changes it there). Sets total and dom0
# (KiB) for the test.
mbt_three_guests() {
  total=$((4096 * MBT_MIB))
  dom0=$((512 * MBT_MIB))
  mbt_guests "$total" "$dom0" 3
  local id=1 mib
  for mib in "$@"; do
    echo $((mib * MBT_MIB)) >"$MB_DIR/vm$id.used"
    mb_bg "$MB_DIR/loop$id.log" mbt_guest_loop "$id" "$MB_DIR/vm$id.used"
    id=$((id + 1))
  done
}

# mbt_wait_samples <domid...>: vmmem has dispatched a guest sample of each
# (60 s at most: a hang limit).
mbt_wait_samples() {
  local id
  for id in "$@"; do
    mb_wait_for 60 mb_getval "$MB_HOSTNAME/vmmem-vm$id/memory-guest_MemTotal" ||
      mb_fail "vmmem dispatched no guest sample for vm$id"
  done
}

# mbt_wait_rates <domid...>: vmmem dispatched two more samples (higher
# seq each) of each guest, so membal holds two samples of each: rates
# (swap, stall) exist for the next round.
mbt_wait_rates() {
  local id
  for id in "$@"; do vmt_wait_new_samples 2 "vm$id"; done
}

# mbt_record <domid> <seq> <total_kib> <used_kib> [pswpin pswpout]: the
# guest's record: MemAvailable = total - used, a steady Committed_AS = used.
mbt_record() {
  local id=$1 seq=$2 total=$3 used=$4 sin=${5:-0} sout=${6:-0}
  local avail=$((total - used))
  local free=$((avail / 2))
  local cached=$((avail - free))
  xenstore-write -R "/local/domain/$id/data/membal/stats" "$(
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
  local extra
  extra=$(cat)
  vmt_sim_conf "$1" "" "LoadPlugin membal
<Plugin membal>
  Backend \"sim\"
  XenstorePath \"$XENSTORED_PATH\"
  ControlSocket \"$MB_DIR/membal.sock\"
$extra
</Plugin>"
}

# mbt_membal_log <regex>: collectd's log has a membal line matching it.
mbt_membal_log() { grep -E -- "membal: .*$1" "$MB_CD_LOG"; }

# mbt_guest_loop <domid> <demand_file> [stop_file]: a guest agent stand-in:
# every 0.5 s publishes a record with seq+1, MemTotal = the domain's
# current balloon size, and the demand in demand_file (KiB, read each time,
# so a test can change it). Demand beyond 97% of MemTotal cannot be held:
# the guest swaps, its pswpin/pswpout counters grow with the excess. Stops
# when stop_file exists, and then creates stop_file.done (after its last
# record). Run it with mb_bg.
mbt_guest_loop() {
  local id=$1 demand_file=$2 stop=${3:-/nonexistent} seq=1 cur demand used
  local sin=0 sout=0 fit excess
  while [ ! -e "$stop" ]; do
    cur=$(xenstore-read -R "/tool/membal-sim/dom/$id" | sed -n 's/^current_kib //p')
    demand=$(cat "$demand_file")
    fit=$((cur * 97 / 100))
    used=$demand
    if [ "$demand" -gt "$fit" ]; then
      used=$fit
      excess=$(((demand - fit) / 4)) # pages of 4 KiB
      sin=$((sin + excess / 8))
      sout=$((sout + excess / 4))
    fi
    mbt_record "$id" "$seq" "$cur" "$used" "$sin" "$sout" || true
    seq=$((seq + 1))
    sleep 0.5 # the agent's pace (a real one publishes every interval)
  done
  : >"$stop.done"
}

# mbt__reports <domid>: vmmem's cache shows what mbt_guest_loop reports
# for the domain now: MemTotal = its current balloon size, Committed_AS =
# its demand (what fits of it).
mbt__reports() {
  local id=$1 cur demand used
  cur=$(xenstore-read -R "/tool/membal-sim/dom/$id" | sed -n 's/^current_kib //p')
  demand=$(cat "$MB_DIR/vm$id.used")
  used=$demand
  [ "$demand" -le $((cur * 97 / 100)) ] || used=$((cur * 97 / 100))
  vmt_is $((cur * 1024)) "vm$id" memory-guest_MemTotal &&
    vmt_is $((used * 1024)) "vm$id" memory-guest_Committed_AS
}

# mbt_wait_reports <domid...>: after a test changed a guest's balloon
# (mbt_settle) or demand (vm<id>.used): wait (30 s at most) until vmmem
# dispatched a sample of each guest that shows the change, then one more
# (the read that dispatched the first has handed it to membal by then):
# the next round decides on the new state, with rates.
mbt_wait_reports() {
  local id
  for id in "$@"; do
    mb_wait_for 30 mbt__reports "$id" ||
      mb_fail "vm$id: vmmem shows no sample with its new size/demand (MemTotal $(vmt_get "vm$id" memory-guest_MemTotal 2>/dev/null), Committed_AS $(vmt_get "vm$id" memory-guest_Committed_AS 2>/dev/null))"
    vmt_wait_new_samples 1 "vm$id"
  done
}

# mbt_settle <dom0_kib> <total_kib> <domid...>: plays the hypervisor for the
# given domains: the balloon reaches its target at once; free memory is what
# dom0 and the guests do not hold.
mbt_settle() {
  local total=$2 id node name max t held=$1
  shift 2
  for id in "$@"; do
    node=$(xenstore-read -R "/tool/membal-sim/dom/$id")
    name=$(sed -n 's/^name //p' <<<"$node")
    max=$(sed -n 's/^max_kib //p' <<<"$node")
    t=$(mbt_target "$id")
    xenstore-write -R "/tool/membal-sim/dom/$id" \
      "$(printf 'name %s\ncurrent_kib %s\nmax_kib %s\n' "$name" "$t" "$max")"
    held=$((held + t))
  done
  mbt_host "$total" $((total - held))
}

# mbt_sum_targets <domid...>: sum of the backend's targets (KiB).
mbt_sum_targets() {
  local id s=0
  for id in "$@"; do s=$((s + $(mbt_target "$id"))); done
  echo "$s"
}

# mbt_collectd_start_preload <conf> <library>: mb_collectd_start, with one
# more LD_PRELOAD library (after libasan, which must come first).
mbt_collectd_start_preload() {
  local conf=$1 lib=$2
  MB_CD_DIR=$MB_DIR/collectd
  MB_CD_SOCK=$MB_CD_DIR/collectd.sock
  MB_CD_LOG=$MB_CD_DIR/collectd.log
  mkdir -p "$MB_CD_DIR"
  rm -f "$MB_CD_SOCK"
  local preload=$lib
  local -a env=()
  if mb__plugins_asan; then
    preload="$(gcc -print-file-name=libasan.so):$lib"
    env=(ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
  fi
  env "${env[@]}" LD_PRELOAD="$preload" "$MB_COLLECTD_BIN" -f -C "$conf" \
    >>"$MB_CD_DIR/collectd.stderr" 2>&1 &
  MB_CD_PID=$!
  MB_SAN_LOGS+=("$MB_CD_DIR/collectd.stderr" "$MB_CD_LOG")
  mb_wait_for 15 collectdctl -s "$MB_CD_SOCK" listval ||
    mb_fail "collectd did not come up (pid $MB_CD_PID)"
  mb_log "collectd pid $MB_CD_PID (preload $lib), socket $MB_CD_SOCK"
}

# mbt_round: number of the round whose decisions are in force (0 = none).
mbt_round() { vmt_round; }
mbt__round_after() { vmt__round_after "$@"; }

# mbt_flush_round: `collectdctl flush plugin=membal` and wait until a new
# round's decisions are in force (30 s at most: a limit for a hung plugin,
# not a speed check; a flush round takes milliseconds).
mbt_flush_round() {
  local before
  before=$(mbt_round)
  mb_collectdctl flush plugin=membal
  mb_wait_for 30 mbt__round_after "$before" || mb_fail "flush: no round within 30 s (round still $before)"
}

# mbt_round_values <identifier...>: collectd's cache holds these values
# of the round in force (or a later dispatch of its decisions): stamped no
# earlier than its count-round. Identifiers relative to the host, e.g.
# membal-vm1/gauge-reason.
mbt_round_values() {
  local id ids=()
  for id in "$@"; do ids+=("$MB_HOSTNAME/$id"); done
  mb_wait_same_dispatch "$MB_HOSTNAME/membal/count-round" "${ids[@]}"
}

# mbt_check_pngs <graph.out> <out dir> <name...>: membal-graph drew
# <out>/<name>.png for each name: PNG signature, plausible dimensions for
# --width 700 --height 250, not empty, and reported in graph.out.
mbt_check_pngs() {
  local report=$1 out=$2 png f sig w h size
  shift 2
  for png in "$@"; do
    f=$out/$png.png
    mb_assert "$png.png exists" test -s "$f"
    # PNG signature, then the IHDR chunk: width and height (big endian).
    sig=$(od -An -tx1 -N8 "$f" | tr -d ' \n')
    mb_assert_eq 89504e470d0a1a0a "$sig" "$png.png PNG signature"
    w=$(od -An -tu1 -j16 -N4 "$f" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    h=$(od -An -tu1 -j20 -N4 "$f" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    size=$(stat -c %s "$f")
    mb_log "$png.png: ${w}x${h}, $size bytes"
    # canvas 700x250 plus axes, title and a legend line per series
    [ "$w" -ge 700 ] && [ "$w" -le 1200 ] && [ "$h" -ge 250 ] && [ "$h" -le 800 ] ||
      mb_fail "$png.png has implausible dimensions ${w}x${h}"
    [ "$size" -ge 8000 ] || mb_fail "$png.png is only $size bytes: an empty graph?"
    grep -q "^$f ${w}x${h}\$" "$report" || mb_fail "membal-graph did not report $f ${w}x${h}"
  done
}
