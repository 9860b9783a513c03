#!/bin/sh
# The scenario, run in dom0 by /init. Writes everything the host-side
# checker needs to /results:
#   facts.txt      key=value facts measured here (times in dom0 uptime s)
#   timeline.tsv   one line per sample: t dom target_kib actual_kib guest fields
#   checks.txt     PASS/FAIL lines of the checks made in dom0
# Exit status 0 when every dom0-side check passed.
R=/results
mkdir -p $R
now() { read -r u _ < /proc/uptime; echo "$u"; }
rt() { e2e-stamp now; } # epoch seconds, ms: the clock membal's log and the stamps use
# Console lines are what the host's hang detector watches, and what it shows
# when a run is killed: every wait prints while it waits.
log() { echo "e2e-scenario: [$(now)] $*"; }
fact() { echo "$1=$2" >> $R/facts.txt; }
fails=0
check() { # check NAME OK|FAIL DETAIL
  echo "$2 $1 $3" >> $R/checks.txt
  log "$2 $1 $3"
  [ "$2" = PASS ] || fails=$((fails + 1))
}
. /e2e/components

# The results so far go to the output disk after every phase, so that a run
# the host kills still says what passed and where it stopped.
save() {
  cp /var/log/xen/console/*.log $R/ 2> /dev/null
  if [ -b /dev/vda ]; then
    tar -cf /dev/vda -C $R . 2> /dev/null && sync
  fi
}
phase() { # phase NAME: the previous phase's results are saved first
  fact "phase_${1}_s" "$(now)"
  save
  echo "E2E-PHASE $1 at $(now)s"
}

# The scenario's deadline (dom0 uptime, a real clock: Xen's time under TCG
# follows the host's), from the host; the host's own limit is later.
DEADLINE=$(sed -n 's/.*e2e_deadline=\([0-9]*\).*/\1/p' /proc/cmdline)
DEADLINE=${DEADLINE:-1800}

GUESTS="busy idle1 idle2"
MEM_MIB=384
MAX_MIB=1024
PERIOD_S=6 # membal's Period in collectd-dom0.conf
STALL_S=${STALL_S:-120}

# xl is slow under emulation (a call can take seconds on a loaded host):
# domids are looked up once, memory and CPU time come from e2e-stamp.
domid() {
  eval "_d=\${DOMID_$1:-}"
  [ -n "$_d" ] || _d=$(xl domid "$1" 2> /dev/null)
  echo "$_d"
}
xsr() { xenstore-read "$1" 2> /dev/null; }
# actual memory of a domain (KiB) from the hypervisor; its CPU seconds
actual_kib() { e2e-stamp domains 2> /dev/null | awk -v n="$1" '$2 == n {print $4}'; }
cpu_s() { e2e-stamp domains 2> /dev/null | awk -v n="$1" '$2 == n {print $5}'; }
later() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a > b)}'; } # later A B: A > B
minus() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a - b}'; }

# Times of the waits in centiseconds of /proc/uptime (two decimals), in
# shell arithmetic: a process started in a PV dom0 under emulation costs
# tenths of a second to seconds on a loaded host (every page-table update
# is a hypercall), and the waits run all the time, beside membal.
tick() { # NOW_CS: dom0 uptime in centiseconds, without a subshell
  read -r _u _ < /proc/uptime
  NOW_CS=${_u%.*}${_u#*.}
  NOW_CS=${NOW_CS#"${NOW_CS%%[!0]*}"}
  NOW_CS=${NOW_CS:-0}
}
secs() { # SECS: centiseconds CS as seconds with two decimals
  _f=$(($1 % 100))
  [ $_f -lt 10 ] && _f=0$_f
  SECS=$(($1 / 100)).$_f
}
DEADLINE_CS=$((DEADLINE * 100))

# wait_for WHAT STALL_S PROGRESS COND...: polls COND about once a second
# until it succeeds (0). Fails when PROGRESS (a command printing a token of
# the emulated system's progress: a record's seq, a workload's status, a
# round count) printed the same thing for STALL_S seconds, when COND says
# it never will (exit 2), or at the scenario's deadline. Times come from
# /proc/uptime; COND is only tried while its start is inside the limits, so a
# late success never counts. WAITED holds the seconds waited, WHY why it failed.
wait_for() {
  _what=$1 _stall=$2 _prog=$3
  shift 3
  tick
  _t0=$NOW_CS
  _tok=$($_prog)
  _since=$_t0
  _note=$_t0
  while :; do
    tick
    if [ "$NOW_CS" -gt "$DEADLINE_CS" ]; then
      WHY="the scenario's deadline (${DEADLINE}s of dom0 uptime) passed"
      break
    fi
    if [ "$NOW_CS" -gt $((_since + _stall * 100)) ]; then
      WHY="no progress for ${_stall}s (last: $_tok)"
      break
    fi
    "$@"
    _rc=$?
    tick
    secs $((NOW_CS - _t0))
    WAITED=$SECS
    [ $_rc = 0 ] && return 0
    if [ $_rc = 2 ]; then
      WHY="it cannot happen any more (${WHY_NOT:-see log})"
      break
    fi
    _tk=$($_prog)
    tick
    if [ "$_tk" != "$_tok" ]; then
      _tok=$_tk
      _since=$NOW_CS
    fi
    if [ "$NOW_CS" -gt $((_note + 1500)) ]; then
      _note=$NOW_CS
      secs $((_note - _t0))
      log "waiting for $_what: ${SECS}s, progress: $_tok"
    fi
    sleep 1
  done
  tick
  secs $((NOW_CS - _t0))
  WAITED=$SECS
  log "gave up waiting for $_what after ${WAITED}s: $WHY"
  return 1
}

phase boot
fact toolstack_ready_s "$(now)"
for g in $GUESTS; do
  role=idle
  [ "$g" = busy ] && role=busy
  cat > /run/$g.cfg << EOF
name = "$g"
type = "pv"
kernel = "/e2e/vmlinuz-guest.gz"
ramdisk = "/e2e/guest.cpio.gz"
extra = "console=hvc0 rdinit=/init quiet loglevel=3 e2e_role=$role e2e_zram=512"
memory = $MEM_MIB
maxmem = $MAX_MIB
vcpus = 1
on_crash = "preserve"
EOF
done
# The three at once: an xl create is mostly dom0 CPU (the kernel's
# decompression, the domain build) under emulation, and dom0 has two vCPUs.
t=$(now)
for g in $GUESTS; do
  (xl create /run/$g.cfg > /run/$g.create.log 2>&1; echo $? > /run/$g.create.rc) &
done
wait
for g in $GUESTS; do
  if [ "$(cat /run/$g.create.rc 2> /dev/null)" = 0 ]; then
    eval "DOMID_$g=$(xl domid $g 2> /dev/null)"
    log "created $g (domid $(domid $g)); the three took $(minus "$(now)" "$t")s"
  else
    cat /run/$g.create.log
    check create_$g FAIL "xl create failed"
  fi
done
fact guests_created_s "$(now)"

# A booting guest makes progress as long as its console grows or it uses CPU.
prog_guest() {
  echo "$(wc -c < /var/log/xen/console/guest-$g.log 2> /dev/null) $(cpu_s $g)"
}
guest_ready() { [ -n "$(xsr /local/domain/$(domid $g)/data/e2e/ready)" ]; }
for g in $GUESTS; do
  if wait_for "$g to boot" $STALL_S prog_guest guest_ready; then
    log "$g ready after ${WAITED}s"
  else
    check ready_$g FAIL "no data/e2e/ready: $WHY"
  fi
done
fact guests_ready_s "$(now)"
xl list

# Commands to a guest: "<seq> <verb> <args>" in its e2e/cmd (guest-init.sh).
cmd_seq=0
guest_cmd() { # guest_cmd NAME VERB ARGS...
  _g=$1
  shift
  cmd_seq=$((cmd_seq + 1))
  xenstore-write /local/domain/$(domid $_g)/e2e/cmd "$cmd_seq $*"
}

# Stress mode (e2e_mode=stress on dom0's command line): a workload in the
# busy guest and process churn in dom0, then count user-space crashes. Used
# to qualify QEMU/Xen options, not part of the test.
if grep -q e2e_mode=stress /proc/cmdline; then
  smib=$(sed -n 's/.*e2e_stress=\([0-9]*\).*/\1/p' /proc/cmdline)
  guest_cmd busy memload static ${smib:-300} --touch 100
  end=$(awk -v n="$(now)" 'BEGIN{print n + 90}')
  n=0
  while later "$end" "$(now)"; do
    xenstore-read /local/domain/$(domid busy)/memory/target > /dev/null
    n=$((n + 1))
  done
  crashes=$(dmesg | grep -c -E 'segfault|general protection')
  fact stress_loops "$n"
  fact stress_crashes "$crashes"
  gcrash=$(cat /var/log/xen/console/guest-busy.log | grep -c -E 'Segmentation|Aborted|malloc|Illegal')
  fact stress_guest_crashes "$gcrash"
  crashes=$((crashes + gcrash))
  log "stress: $n loops, $crashes user-space crashes in dom0"
  dmesg | grep -E 'segfault|general protection' | head -5
  [ "$crashes" = 0 ]
  exit
fi

phase permissions
# --- permissions: the guest wrote data/ but could not write memory/target
for g in $GUESTS; do
  id=$(domid $g)
  perm=$(xsr /local/domain/$id/data/e2e/perm)
  tgt=$(xsr /local/domain/$id/memory/target)
  case "$perm" in
    "data=ok target=denied"*)
      if [ "$tgt" != 4194304 ]; then
        check perm_$g PASS "guest wrote data/, memory/target write refused, target=$tgt"
      else
        check perm_$g FAIL "memory/target holds the guest's value $tgt"
      fi ;;
    *) check perm_$g FAIL "probe said '$perm', target=$tgt" ;;
  esac
done

phase memset
# --- xl mem-set moves a real balloon (shrink, then grow back); the grow
# gives the balloon speed of this run (the checker compares with it).
g=idle2
prog_balloon() { e2e-stamp domains 2> /dev/null | awk -v n="$g" '$2 == n {print $4, $5}'; }
before=$(actual_kib $g)
xl mem-set $g 256m
at_256() { [ "$(actual_kib $g)" -le $((260 * 1024)) ]; }
if wait_for "$g to shrink to 256 MiB" $STALL_S prog_balloon at_256; then
  check memset_shrink PASS "$g ${before}KiB -> $(actual_kib $g)KiB in ${WAITED}s"
else
  check memset_shrink FAIL "$g still at $(actual_kib $g)KiB after mem-set 256m: $WHY"
fi
from=$(actual_kib $g)
xl mem-set $g ${MEM_MIB}m
at_full() { [ "$(actual_kib $g)" -ge $(((MEM_MIB - 4) * 1024)) ]; }
if wait_for "$g to grow back" $STALL_S prog_balloon at_full; then
  to=$(actual_kib $g)
  check memset_grow PASS "$g back to ${to}KiB in ${WAITED}s"
  fact memset_grow_kib "$((to - from))"
  fact memset_grow_s "$WAITED"
else
  check memset_grow FAIL "$g at $(actual_kib $g)KiB after mem-set ${MEM_MIB}m: $WHY"
fi

# What one balloon target costs here (libxl's call and its parts), before
# membal runs: the urgent round's reaction is made of such calls. Reported.
if command -v e2e-setcost > /dev/null; then
  e2e-setcost "$(domid idle1)" 5 > $R/setcost.txt 2>&1
  sed 's/^/e2e-setcost: /' $R/setcost.txt
fi

# --- balancing with collectd + vmmem + membal in dom0, guestmem in guests
phase collectd
record_field() { # record_field DOMID KEY: one field of the guest record
  xenstore-read -R /local/domain/$1/data/membal/stats 2> /dev/null |
    awk -v k="$2" '$1 == k {print $2; exit}'
}
# Every guest's memory, target and record, about once a second, by
# e2e-stamp sample (one process, no fork per row): each row carries the
# time (dom0 uptime) at which the hypervisor answered.
sampler() {
  echo "t name domid target_kib actual_kib seq MemTotal MemAvailable SwapTotal SwapFree pswpin pswpout load_mib phase" > $R/timeline.tsv
  e2e-stamp sample $R/timeline.tsv /run/sampler.stop 2> $R/sampler.err
}

collectd_ok=no
if [ "$vmmem" = yes ]; then
  if collectd -C /etc/collectd/collectd.conf -P /run/collectd.pid; then
    collectd_ok=yes
    fact collectd_started_s "$(now)"
  else
    check collectd_start FAIL "collectd refused to start (see collectd.log)"
  fi
else
  check collectd_start FAIL "vmmem.so was not built: no collectd in dom0"
fi
sampler &
sampler_pid=$!
# Every change of the busy guest's record and of every guest's target, with
# the time dom0 saw it (epoch, ms): the reaction chain is measured on these.
# And the busy guest's own writes of its stamped events (signal, balloon):
# dom0 sees each after the guest stamped it, which bounds the guest's clock
# offset from above (check.py; the targets bound it from below).
watch_paths=""
for g in $GUESTS; do watch_paths="$watch_paths /local/domain/$(domid $g)/memory/target"; done
bid=$(domid busy)
e2e-stamp watch /local/domain/$bid/data/membal/stats $watch_paths \
  /local/domain/$bid/data/e2e/signal /local/domain/$bid/data/e2e/signal-balloon > $R/watch.log 2> $R/watch.err &
watch_pid=$!

# guestmem records reach dom0: every guest's seq advances
if [ "$guestmem" = yes ]; then
  for g in $GUESTS; do
    id=$(domid $g)
    s1=$(record_field $id seq)
    seq_moved() { s2=$(record_field $id seq); [ -n "$s2" ] && [ "$s2" != "${s1:-}" ]; }
    if wait_for "a fresh record of $g" $STALL_S prog_guest seq_moved; then
      check record_$g PASS "data/membal/stats seq ${s1:-none} -> $s2"
    else
      check record_$g FAIL "no fresh data/membal/stats from $g (seq ${s1:-none}): $WHY"
    fi
  done
else
  check records FAIL "guestmem.so was not built: guests publish no record"
fi

# membal logs one line per round: "membal: round N on TRIGGER: started T, ..."
round_lines() { grep -a 'membal: round [0-9]* on ' $R/collectd.log 2> /dev/null; }
prog_rounds() { round_lines | wc -l; }
rounds_after() { # rounds_after N: at least N more rounds than $r_base
  [ "$(prog_rounds)" -ge $((r_base + $1)) ]
}
prog_busy() { echo "$(record_field $bid seq) $(xsr /local/domain/$bid/data/e2e/load)"; }

phase flush
if [ "$membal" = yes ] && [ "$collectd_ok" = yes ]; then
  # membal settles the idle state first (3 rounds).
  r_base=$(prog_rounds)
  wait_for "3 membal rounds" $STALL_S prog_rounds rounds_after 3 ||
    check rounds FAIL "membal made fewer than 3 rounds: $WHY"
  # A flush makes a round whose trigger is the flush.
  r_base=$(prog_rounds)
  tf=$(rt)
  collectdctl -s /run/collectd-unixsock flush plugin=membal
  fact flush_rt "$tf"
  flush_line() { # the first round on flush that started after the flush
    round_lines | tail -n +$((r_base + 1)) | awk -v tf="$tf" '
      / on flush: started / {
        for (i = 1; i <= NF; i++) if ($i == "started") { s = $(i + 1); sub(/,$/, "", s) }
        if (s + 0 >= tf + 0) { print; exit }
      }'
  }
  flush_round() {
    [ -n "$(flush_line)" ] && return 0
    if [ "$(prog_rounds)" -ge $((r_base + 3)) ]; then
      WHY_NOT="3 rounds since the flush and none on flush"
      return 2
    fi
    return 1
  }
  if wait_for "the flush's round" $STALL_S prog_rounds flush_round; then
    fr=$(flush_line)
    st=$(echo "$fr" | sed 's/.* started \([0-9.]*\),.*/\1/')
    lat=$(minus "$st" "$tf")
    fact flush_round_started_rt "$st"
    # Its trigger says it is the flush's; how soon is reported (a round
    # under way finishes first: they took up to 7 s on a loaded host).
    check flush_round PASS "a round on flush started ${lat}s after collectdctl flush (Period ${PERIOD_S}s): ${fr#*membal: }"
  else
    check flush_round FAIL "no round on flush after collectdctl flush: $WHY; rounds: $(round_lines | tail -n 4 | sed 's/.*membal: //' | tr '\n' ';')"
  fi
elif [ "$membal" != yes ]; then
  check membal FAIL "membal.so was not built"
fi

# The surge: the busy guest grows its working set well past its allocation,
# holds it, then frees it again.
phase surge
SURGE_MIB=${SURGE_MIB:-640}
HOLD_S=${HOLD_S:-60}
fact surge_mib "$SURGE_MIB"
fact surge_s "$(now)"
guest_cmd busy memload mono 0 $SURGE_MIB --step 16 --interval 250 --hold $HOLD_S --status data/e2e/load
load_phase() { xsr /local/domain/$bid/data/e2e/load | cut -d' ' -f2; }
is_high() {
  case "$(load_phase)" in
    high | down | done) return 0 ;;
    oom) WHY_NOT=oom; return 2 ;;
  esac
  return 1
}
is_done() {
  case "$(load_phase)" in
    done) return 0 ;;
    oom) WHY_NOT=oom; return 2 ;;
  esac
  return 1
}
if wait_for "the workload to reach ${SURGE_MIB} MiB" $STALL_S prog_busy is_high; then
  fact surge_high_s "$(now)"
  check surge_high PASS "the workload reached ${SURGE_MIB} MiB after ${WAITED}s"
else
  check surge_high FAIL "workload never reached ${SURGE_MIB} MiB: $WHY (status: $(xsr /local/domain/$bid/data/e2e/load))"
fi
if wait_for "the workload to finish" $STALL_S prog_busy is_done; then
  fact surge_done_s "$(now)"
else
  check surge_done FAIL "workload did not finish: $WHY (status: $(xsr /local/domain/$bid/data/e2e/load))"
fi
# membal takes the freed memory back over a few rounds.
phase settle
r_base=$(prog_rounds)
wait_for "4 rounds after the surge" $STALL_S prog_rounds rounds_after 4 ||
  check settle FAIL "membal made fewer than 4 rounds after the surge: $WHY"

phase storm
# The storm: the busy guest allocates at once more than it has available,
# so it must swap; its first swap-out or stall (polled every 50 ms by
# e2e-stamp in the guest) starts the chain measured by the checker: urgent
# record in xenstore -> membal's urgent round -> new target -> balloon.
# Whether the first urgent round after a time grew busy ("yes"/"no",
# "" when there was none yet), from membal's log: target lines come before
# their round's line.
urgent_round_grew() { # urgent_round_grew EPOCH
  grep -a -E 'membal: (busy \(domid [0-9]+\) target|round [0-9]+ on )' $R/collectd.log 2> /dev/null |
    awk -v ts="$1" '
      / membal: busy \(domid / {
        for (i = 1; i <= NF; i++) if ($i == "target") { a = $(i + 1); b = $(i + 4) }
        if (b + 0 > a + 0) grow = 1
        next
      }
      / on urgent (notification|sample): started / {
        for (i = 1; i <= NF; i++) if ($i == "started") { s = $(i + 1); sub(/,$/, "", s) }
        if (s + 0 >= ts + 0) { print (grow ? "yes" : "no"); exit }
      }
      { grow = 0 }'
}
# storm_run PREFIX: one storm (again, at most STORM_ATTEMPTS in all, when a
# periodic round came between signal and urgent round); facts and checks
# named PREFIXstorm_*. Five: under a CPU hog the fill can outlast a Period,
# and membal's forecast lets a periodic round grow busy first: 9 of 41
# attempts over the 32 hog runs on record were spoiled so (2 runs needed a
# third). Three spoiled in a row (about 1 run in 90) failed the run on the
# experiment, not on membal; five, about 1 in 2000.
STORM_ATTEMPTS=5
storm_run() {
  P=$1
  attempt=0
  while :; do
    attempt=$((attempt + 1))
    fact ${P}storm_attempts "$attempt"
    xenstore-rm /local/domain/$bid/data/e2e/signal 2> /dev/null
    xenstore-rm /local/domain/$bid/data/e2e/signal-balloon 2> /dev/null
    guest_cmd busy signals data/e2e/signal
    ack_is() { [ "$(xsr /local/domain/$bid/data/e2e/ack | cut -d' ' -f1)" = "$cmd_seq" ]; }
    wait_for "the busy guest's signal monitor" $STALL_S prog_busy ack_is ||
      check ${P}storm_monitor FAIL "the busy guest did not start its signal monitor: $WHY"
    # 320 MiB more than the guest has available, written to a tmpfs at
    # kernel speed (user page faults of a PV guest are far slower than
    # membal's periodic growth under emulation: a memload ramp never made
    # the guest swap): its slack cannot absorb it, it swaps until membal
    # grows it. At most 800 MiB, which the guest holds at its Max (1 GiB).
    # A retry waits until membal has taken back what the spoiled attempt
    # grew busy to: a storm must exceed what busy has available by 320 MiB
    # within the 800 MiB it can hold, and on a loaded host the 3 rounds
    # after an attempt are not enough (hog run 43: attempts 3 and 4 began
    # at 887 MiB available, allocated 800 MiB, and could not stall busy).
    # Back to 32 MiB above what it had before the first attempt, or 30
    # rounds; then it storms anyway.
    if [ $attempt -gt 1 ] && [ -n "${avail_first:-}" ]; then
      r_room=$(prog_rounds)
      room_back() {
        a=$(record_field $bid MemAvailable)
        [ -n "$a" ] && [ "$a" -le $((avail_first + 32768)) ] && return 0
        if [ "$(prog_rounds)" -ge $((r_room + 30)) ]; then
          WHY_NOT="busy has ${a:-?} KiB available after 30 rounds, ${avail_first} KiB before the first storm"
          return 2
        fi
        return 1
      }
      wait_for "busy back to what it had available before the first storm" \
        $STALL_S prog_rounds room_back ||
        log "storm attempt $attempt: $WHY; storming anyway"
    fi
    avail=$(record_field $bid MemAvailable)
    [ $attempt -eq 1 ] && avail_first=$avail
    STORM_MIB=$((${avail:-262144} / 1024 + 320))
    [ $STORM_MIB -gt 800 ] && STORM_MIB=800
    fact ${P}storm_mib "$STORM_MIB"
    fact ${P}storm_avail_kib "${avail:-}"
    # Started right after a periodic round, so that the next periodic one is
    # a Period away: the round that answers the storm is the urgent one.
    r_base=$(prog_rounds)
    periodic_now() { round_lines | tail -n +$((r_base + 1)) | grep -q ' on period: '; }
    wait_for "a periodic round" $STALL_S prog_rounds periodic_now ||
      check ${P}storm_align FAIL "no periodic round: $WHY"
    storm_rt=$(rt)
    fact ${P}storm_rt "$storm_rt"
    fact ${P}storm_s "$(now)"
    guest_cmd busy fill $STORM_MIB
    r_base=$(prog_rounds)
    # Done once the guest signalled, an urgent round followed, and the
    # balloon stood at the target in force: the last target the guest saw
    # (grown after the signal) is the one dom0 wrote last, and the balloon
    # reached it. What check.py's storm_balloon asks, so the facts are taken
    # once they can answer it: a periodic round that grew the guest at the
    # signal, its balloon reaching that target before the urgent round's
    # was written, ended the wait too early (hog run 15 at 35c153c). Never,
    # when its allocation completed five rounds ago without any signal, or
    # thirty rounds passed after it.
    sig_rounds=""
    storm_done() {
      sig=$(xsr /local/domain/$bid/data/e2e/signal)
      if [ -z "$sig" ]; then
        if [ "$(load_phase)" = static ] && [ "$(prog_rounds)" -ge $((r_base + 5)) ]; then
          WHY_NOT="the guest allocated ${STORM_MIB} MiB and neither swapped nor stalled"
          return 2
        fi
        return 1
      fi
      [ -n "$sig_rounds" ] || sig_rounds=$(prog_rounds)
      want=$(xsr /local/domain/$bid/memory/target)
      [ -n "$(urgent_round_grew "$storm_rt")" ] &&
        xsr /local/domain/$bid/data/e2e/signal-balloon | tr ';' '\n' |
        awk -v ts="${sig%% *}" -v want="${want:-0}" '
          $2 == "target" && $1 >= ts { last = $3; at = 0; if ($3 > $5) grown = 1 }
          $2 == "at_target" && grown && $3 == last { at = 1 }
          END { d = last - want; if (d < 0) d = -d; exit !(at && want > 0 && d <= 4) }' &&
        return 0
      if [ "$(prog_rounds)" -ge $((sig_rounds + 30)) ]; then
        WHY_NOT="30 rounds after the signal and no urgent round, or the balloon not at the target in force (dom0 ${want:-?} KiB)"
        return 2
      fi
      return 1
    }
    if wait_for "the storm's chain" $STALL_S prog_busy storm_done; then
      storm_ok=yes
    else
      storm_ok=no
      storm_why=$WHY
    fi
    sig=$(xsr /local/domain/$bid/data/e2e/signal)
    fact ${P}storm_signal "$sig"
    fact ${P}storm_balloon "$(xsr /local/domain/$bid/data/e2e/signal-balloon)"
    # From the storm's command (dom0's clock; the guest's may lag by seconds).
    grew=""
    [ -n "$sig" ] && grew=$(urgent_round_grew "$storm_rt")
    fact ${P}storm_urgent_round_grew "$grew"
    guest_cmd busy stop
    r_base=$(prog_rounds)
    wait_for "3 rounds after the storm" $STALL_S prog_rounds rounds_after 3 ||
      check ${P}storm_settle FAIL "membal made fewer than 3 rounds after the storm: $WHY"
    # A periodic round between the signal and the urgent round may have
    # given the guest all it asked (membal's forecast sees the burst):
    # then the urgent round had nothing to add. Said, and run again, at
    # most STORM_ATTEMPTS times in all.
    if [ $storm_ok = yes ] && [ "$grew" != yes ] && [ $attempt -lt $STORM_ATTEMPTS ]; then
      log "storm attempt $attempt: the first urgent round after the signal did not grow busy ('$grew'): again"
      continue
    fi
    # Neither swap nor stall: membal's periodic rounds kept up with the
    # burst this time (it depends on how fast the emulated guest writes).
    # Said, and run again, within the same STORM_ATTEMPTS.
    if [ $storm_ok = no ] && [ -z "$sig" ] && [ $attempt -lt $STORM_ATTEMPTS ]; then
      log "storm attempt $attempt: $storm_why: again"
      continue
    fi
    break
  done
  if [ $storm_ok = yes ]; then
    check ${P}storm_done PASS "signal, grown target and balloon at target seen (attempt $attempt, the urgent round grew busy: ${grew:-?})"
  else
    check ${P}storm_done FAIL "$storm_why"
  fi
}
if [ "$membal" = yes ] && [ "$collectd_ok" = yes ] && [ "$memload" = yes ]; then
  storm_run ""
  # Issue 14: the same storm with guestmem's vmstat polling only (no PSI
  # trigger), to compare the pages swapped until membal grew the guest
  # (e2e_compare_poll=1 on dom0's command line; not part of a normal run).
  if grep -q e2e_compare_poll=1 /proc/cmdline; then
    phase storm_poll
    gl=/var/log/xen/console/guest-busy.log
    np0=$(grep -a -c 'urgent check on (vmstat polling)' $gl)
    guest_cmd busy agent nopsi
    polling() {
      [ "$(grep -a -c 'urgent check on (vmstat polling)' $gl)" -gt "$np0" ] && ack_is
    }
    if wait_for "the busy guest's agent on vmstat polling" $STALL_S prog_guest polling; then
      storm_run poll_
    else
      check poll_agent FAIL "guestmem did not restart on vmstat polling: $WHY"
    fi
  fi
fi

# Making room for a VM (membal reserve): a 4th guest that does not fit in
# the hypervisor's free memory is refused by a plain `xl create`, then
# created by membal-xl-create (membal reserve SIZE --for NAME, then xl
# create). Created paused: its memory is what is tested, not its boot.
phase reserve
# It found that a hold (busy's emergency grants) kept the sum of targets
# above the pool for 5 rounds while the reservation was in force; holds now
# give way to the pool. MEMBAL_E2E_DOM0_ARGS=e2e_reserve=0 leaves it out.
if ! grep -q e2e_reserve=0 /proc/cmdline && [ "$membal" = yes ] && [ "$collectd_ok" = yes ] && [ "${membalcmd:-}" = yes ]; then
  NEW=newvm
  NEW_MIB=${NEW_MIB:-256}
  cat > /run/$NEW.cfg << EOF
name = "$NEW"
type = "pv"
kernel = "/e2e/vmlinuz-guest.gz"
memory = $NEW_MIB
maxmem = $NEW_MIB
vcpus = 1
EOF
  free_kib() { e2e-stamp free 2> /dev/null; }
  # membal hands the pool to the guests: the free memory falls below the
  # new guest's size within a few rounds of the storm's end.
  r_base=$(prog_rounds)
  no_room() {
    [ "$(free_kib)" -lt $((NEW_MIB * 1024)) ] && return 0
    if [ "$(prog_rounds)" -ge $((r_base + 5)) ]; then
      WHY_NOT="5 rounds and the hypervisor still has $(free_kib) KiB free"
      return 2
    fi
    return 1
  }
  if wait_for "the hypervisor to have less than ${NEW_MIB} MiB free" $STALL_S prog_rounds no_room; then
    f0=$(free_kib)
    if xl create -p /run/$NEW.cfg > /run/$NEW.create.log 2>&1; then
      check reserve_refused FAIL "xl create of $NEW (${NEW_MIB} MiB) succeeded with only ${f0} KiB free"
      xl destroy $NEW
    elif xl domid $NEW > /dev/null 2>&1; then
      check reserve_refused FAIL "xl create failed but left $NEW behind"
      xl destroy $NEW
    else
      check reserve_refused PASS "xl create of $NEW (${NEW_MIB} MiB, ${f0} KiB free) refused: $(grep -m1 -i -E 'memory|error' /run/$NEW.create.log | cut -c1-120)"
    fi
    t=$(now)
    if membal-xl-create --timeout $STALL_S /run/$NEW.cfg -p > /run/$NEW.create2.log 2>&1 &&
      xl domid $NEW > /dev/null 2>&1; then
      fact reserve_create_s "$(minus "$(now)" "$t")"
      check reserve_created PASS "membal-xl-create made room and created $NEW in $(minus "$(now)" "$t")s: $(grep -m1 '^membal: reservation' /run/$NEW.create2.log)"
      # The reservation ends once membal has seen the domain.
      r_base=$(prog_rounds)
      resv_met() {
        grep -a -q "reservation [0-9]* of [0-9]* MiB for $NEW met" $R/collectd.log && return 0
        if [ "$(prog_rounds)" -ge $((r_base + 5)) ]; then
          WHY_NOT="5 rounds and no 'reservation met' line"
          return 2
        fi
        return 1
      }
      if wait_for "membal to see $NEW" $STALL_S prog_rounds resv_met; then
        check reserve_met PASS "$(grep -a -m1 "reservation [0-9]* of [0-9]* MiB for $NEW met" $R/collectd.log | sed 's/.*membal: //')"
      else
        check reserve_met FAIL "$WHY"
      fi
      xl destroy $NEW
    else
      check reserve_created FAIL "membal-xl-create failed: $(tail -n 3 /run/$NEW.create2.log | tr '\n' ' ')"
      xl destroy $NEW 2> /dev/null
    fi
  else
    check reserve_refused FAIL "$WHY"
  fi
fi

# Cost of constant rebalancing: idle1's agent is replaced by a fake client
# whose records swing between idle and thrashing 5 times a second. dom0's
# collectd CPU time and membal's rounds are counted over the same length of
# time before (quiet) and during it (a measurement window, not a wait).
phase cost
cd_ticks() { awk '{print $14 + $15}' /proc/"$(cat /run/collectd.pid)"/stat 2> /dev/null; }
if [ "$collectd_ok" = yes ] && [ "$membal" = yes ] && [ "$memload" = yes ]; then
  FAKE_S=${FAKE_S:-20}
  c0=$(cd_ticks); r0=$(prog_rounds); t0=$(now); sleep $FAKE_S
  c1=$(cd_ticks); r1=$(prog_rounds); t1=$(now)
  guest_cmd idle1 memload fake-client --period 200 --count $((FAKE_S * 5)) --key data/membal/stats
  sleep 2
  c2=$(cd_ticks); r2=$(prog_rounds); t2=$(now); sleep $FAKE_S
  c3=$(cd_ticks); r3=$(prog_rounds); t3=$(now)
  fact fake_window_s "$FAKE_S"
  fact quiet_window_real_s "$(minus "$t1" "$t0")"
  fact fake_window_real_s "$(minus "$t3" "$t2")"
  fact quiet_collectd_ticks "$((c1 - c0))"
  fact quiet_rounds "$((r1 - r0))"
  fact fake_collectd_ticks "$((c3 - c2))"
  fact fake_rounds "$((r3 - r2))"
  log "rebalancing cost: quiet ${FAKE_S}s: $((c1 - c0)) ticks, $((r1 - r0)) rounds; fake client: $((c3 - c2)) ticks, $((r3 - r2)) rounds"
fi

phase end
touch /run/sampler.stop
wait $sampler_pid
kill $watch_pid 2> /dev/null
if [ "$collectd_ok" = yes ]; then
  collectdctl -s /run/collectd-unixsock flush plugin=rrdtool > /dev/null 2>&1
  cdpid=$(cat /run/collectd.pid)
  kill "$cdpid" 2> /dev/null
  stopped() { ! kill -0 "$cdpid" 2> /dev/null; }
  prog_cd() { cut -d' ' -f14,15 /proc/$cdpid/stat 2> /dev/null; }
  wait_for "collectd to stop" $STALL_S prog_cd stopped || log "collectd did not stop: $WHY"
  cp -r /var/lib/collectd/rrd /var/lib/collectd/csv $R/ 2> /dev/null
fi

xenstore-ls -fp /local/domain > $R/xenstore-final.txt 2>&1
xl list > $R/xl-list.txt 2>&1
fact end_s "$(now)"
log "dom0-side checks failed: $fails"
[ $fails -eq 0 ]
