#!/bin/sh
# The scenario, run in dom0 by /init. Writes everything the host-side
# checker needs to /results:
#   facts.txt      key=value facts measured here (times in dom0 uptime s)
#   timeline.tsv   one line per sample: t dom target_kib actual_kib guest fields
#   checks.txt     PASS/FAIL lines of the checks made in dom0
# Exit status 0 when every dom0-side check passed.
R=/results
mkdir -p $R
now() { cut -d' ' -f1 /proc/uptime; }
log() { echo "e2e-scenario: [$(now)] $*"; }
fact() { echo "$1=$2" >> $R/facts.txt; }
fails=0
check() { # check NAME OK|FAIL DETAIL
  echo "$2 $1 $3" >> $R/checks.txt
  log "$2 $1 $3"
  [ "$2" = PASS ] || fails=$((fails + 1))
}
. /e2e/components

GUESTS="busy idle1 idle2"
MEM_MIB=384
MAX_MIB=1024

domid() { xl domid "$1" 2> /dev/null; }
xsr() { xenstore-read "$1" 2> /dev/null; }
# actual memory of a domain (KiB) from the hypervisor (xl list: MiB)
actual_kib() { xl list "$1" 2> /dev/null | awk 'NR==2 {print $3 * 1024}'; }

wait_for() { # wait_for TIMEOUT_S CMD...: polls every 0.5 s
  local deadline
  deadline=$(awk -v n="$(now)" -v t="$1" 'BEGIN{print n + t}')
  shift
  while :; do
    "$@" && return 0
    awk -v n="$(now)" -v d="$deadline" 'BEGIN{exit !(n > d)}' && return 1
    sleep 0.5
  done
}

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
  t=$(now)
  if xl create /run/$g.cfg > /run/$g.create.log 2>&1; then
    log "created $g (domid $(domid $g)) in $(awk -v a="$t" -v b="$(now)" 'BEGIN{print b-a}')s"
  else
    cat /run/$g.create.log
    check create_$g FAIL "xl create failed"
  fi
done
fact guests_created_s "$(now)"

guest_ready() { [ -n "$(xsr /local/domain/$(domid $1)/data/e2e/ready)" ]; }
for g in $GUESTS; do
  if wait_for 90 guest_ready $g; then
    log "$g ready"
  else
    check ready_$g FAIL "no data/e2e/ready within 90 s"
  fi
done
fact guests_ready_s "$(now)"
xl list

# Stress mode (e2e_mode=stress on dom0's command line): a workload in the
# busy guest and process churn in dom0, then count user-space crashes. Used
# to qualify QEMU/Xen options, not part of the test.
if grep -q e2e_mode=stress /proc/cmdline; then
  smib=$(sed -n 's/.*e2e_stress=\([0-9]*\).*/\1/p' /proc/cmdline)
  xenstore-write /local/domain/$(domid busy)/e2e/cmd "1 static ${smib:-300} --touch 100"
  end=$(awk -v n="$(now)" 'BEGIN{print n + 90}')
  n=0
  while awk -v n="$(now)" -v d="$end" 'BEGIN{exit !(n < d)}'; do
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

# --- xl mem-set moves a real balloon (shrink, then grow back)
g=idle2
id=$(domid $g)
before=$(actual_kib $g)
t=$(now)
xl mem-set $g 256m
at_256() { [ "$(actual_kib $g)" -le $((260 * 1024)) ]; }
if wait_for 60 at_256; then
  check memset_shrink PASS "$g ${before}KiB -> $(actual_kib $g)KiB in $(awk -v a="$t" -v b="$(now)" 'BEGIN{print b-a}')s"
else
  check memset_shrink FAIL "$g still at $(actual_kib $g)KiB 60 s after mem-set 256m"
fi
t=$(now)
xl mem-set $g ${MEM_MIB}m
at_full() { [ "$(actual_kib $g)" -ge $(((MEM_MIB - 4) * 1024)) ]; }
if wait_for 60 at_full; then
  check memset_grow PASS "$g back to $(actual_kib $g)KiB in $(awk -v a="$t" -v b="$(now)" 'BEGIN{print b-a}')s"
else
  check memset_grow FAIL "$g at $(actual_kib $g)KiB 60 s after mem-set ${MEM_MIB}m"
fi

# --- balancing with collectd + vmmem + membal in dom0, guestmem in guests
record_field() { # record_field DOMID KEY: one field of the guest record
  xenstore-read -R /local/domain/$1/data/membal/stats 2> /dev/null |
    awk -v k="$2" '$1 == k {print $2; exit}'
}
# One line per guest per second; the host-side checker works from this.
sampler() {
  echo "t name domid target_kib actual_kib seq MemTotal MemAvailable SwapTotal SwapFree pswpin pswpout load_mib phase" > $R/timeline.tsv
  while [ ! -e /run/sampler.stop ]; do
    t=$(now)
    xl list 2> /dev/null | awk 'NR > 1 {print $1, $2, $3 * 1024}' > /run/xl.now
    while read -r name id act; do
      [ "$id" = 0 ] && continue
      tgt=$(xsr /local/domain/$id/memory/target)
      rec=$(xenstore-read -R /local/domain/$id/data/membal/stats 2> /dev/null)
      load=$(xsr /local/domain/$id/data/e2e/load)
      echo "$rec" | awk -v t="$t" -v n="$name" -v id="$id" -v tg="${tgt:--}" -v a="$act" -v l="${load:-0 none}" '
        { f[$1] = $2 }
        END {
          split(l, L, " ")
          printf "%s %s %s %s %s %s %s %s %s %s %s %s %s %s\n", t, n, id, tg, a,
            (("seq" in f) ? f["seq"] : "-"), (("MemTotal" in f) ? f["MemTotal"] : "-"),
            (("MemAvailable" in f) ? f["MemAvailable"] : "-"), (("SwapTotal" in f) ? f["SwapTotal"] : "-"),
            (("SwapFree" in f) ? f["SwapFree"] : "-"), (("pswpin" in f) ? f["pswpin"] : "-"),
            (("pswpout" in f) ? f["pswpout"] : "-"), L[1], L[2]
        }' >> $R/timeline.tsv
    done < /run/xl.now
    sleep 1
  done
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

# guestmem records reach dom0: every guest's seq advances
if [ "$guestmem" = yes ]; then
  for g in $GUESTS; do
    id=$(domid $g)
    s1=$(record_field $id seq)
    seq_moved() { s2=$(record_field $id seq); [ -n "$s2" ] && [ "$s2" != "${s1:-}" ]; }
    if wait_for 30 seq_moved; then
      check record_$g PASS "data/membal/stats seq ${s1:-none} -> $s2"
    else
      check record_$g FAIL "no fresh data/membal/stats from $g within 30 s (seq ${s1:-none})"
    fi
  done
else
  check records FAIL "guestmem.so was not built: guests publish no record"
fi

csv_rounds() { # prints "epoch rounds" of the latest membal round, or nothing
  f=$(ls /var/lib/collectd/csv/dom0/membal/derive-rounds-* 2> /dev/null | tail -n1)
  [ -n "$f" ] && tail -n1 "$f" | awk -F, '$1 ~ /^[0-9]/ {print int($1), $2}'
}

if [ "$membal" = yes ] && [ "$collectd_ok" = yes ]; then
  # Let membal settle the idle state (a few rounds), then check that a flush
  # makes a round at once: right after a periodic round, the next periodic
  # one is Period (6 s) away, so a round within 2 s is the flush's.
  sleep 14
  r0=""
  new_round() { r=$(csv_rounds); [ -n "$r" ] && [ "$r" != "$r0" ]; }
  r0=$(csv_rounds)
  if wait_for 10 new_round; then
    r0=$(csv_rounds)
    tf=$(date +%s)
    collectdctl -s /run/collectd-unixsock flush plugin=membal
    if wait_for 2.5 new_round; then
      check flush_round PASS "round ${r0#* } -> $(csv_rounds | cut -d' ' -f2) within $(($(date +%s) - tf)) s of the flush (period 6 s)"
    else
      check flush_round FAIL "no membal round within 2.5 s of collectdctl flush (last: $r0)"
    fi
  else
    check flush_round FAIL "membal made no round in 10 s (csv: $(ls /var/lib/collectd/csv/dom0 2> /dev/null | tr '\n' ' '))"
  fi
elif [ "$membal" != yes ]; then
  check membal FAIL "membal.so was not built"
fi

# The surge: the busy guest grows its working set well past its allocation,
# holds it, then frees it again.
SURGE_MIB=${SURGE_MIB:-640}
HOLD_S=${HOLD_S:-60}
bid=$(domid busy)
fact surge_mib "$SURGE_MIB"
fact surge_s "$(now)"
xenstore-write /local/domain/$bid/e2e/cmd "1 mono 0 $SURGE_MIB --step 16 --interval 250 --hold $HOLD_S --status data/e2e/load"
load_phase() { xsr /local/domain/$bid/data/e2e/load | cut -d' ' -f2; }
is_high() { [ "$(load_phase)" = high ]; }
is_done() { [ "$(load_phase)" = done ] || [ "$(load_phase)" = oom ]; }
if wait_for 120 is_high; then fact surge_high_s "$(now)"; else check surge_high FAIL "workload never reached ${SURGE_MIB} MiB"; fi
if wait_for $((HOLD_S + 90)) is_done; then
  fact surge_done_s "$(now)"
  [ "$(load_phase)" = oom ] && check surge_oom FAIL "the workload's allocation failed"
else
  check surge_done FAIL "workload did not finish"
fi
# Let membal take the freed memory back.
sleep ${SETTLE_S:-24}

# Cost of constant rebalancing: idle1's agent is replaced by a fake client
# whose records swing between idle and thrashing 5 times a second. dom0's
# collectd CPU time and membal's rounds are counted over the same length of
# time before (quiet) and during it.
cd_ticks() { awk '{print $14 + $15}' /proc/"$(cat /run/collectd.pid)"/stat 2> /dev/null; }
rounds_now() { csv_rounds | cut -d' ' -f2; }
if [ "$collectd_ok" = yes ] && [ "$membal" = yes ] && [ "$memload" = yes ]; then
  FAKE_S=${FAKE_S:-20}
  c0=$(cd_ticks); r0=$(rounds_now); sleep $FAKE_S
  c1=$(cd_ticks); r1=$(rounds_now)
  id1=$(domid idle1)
  xenstore-write /local/domain/$id1/e2e/cmd "2 fake-client --period 200 --count $((FAKE_S * 5)) --key data/membal/stats"
  sleep 2
  c2=$(cd_ticks); r2=$(rounds_now); sleep $FAKE_S
  c3=$(cd_ticks); r3=$(rounds_now)
  fact fake_window_s "$FAKE_S"
  fact quiet_collectd_ticks "$((c1 - c0))"
  fact quiet_rounds "$((r1 - r0))"
  fact fake_collectd_ticks "$((c3 - c2))"
  fact fake_rounds "$((r3 - r2))"
  log "rebalancing cost: quiet ${FAKE_S}s: $((c1 - c0)) ticks, $((r1 - r0)) rounds; fake client: $((c3 - c2)) ticks, $((r3 - r2)) rounds"
fi

touch /run/sampler.stop
wait $sampler_pid
if [ "$collectd_ok" = yes ]; then
  collectdctl -s /run/collectd-unixsock flush plugin=rrdtool > /dev/null 2>&1
  kill "$(cat /run/collectd.pid)" 2> /dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /run/collectd.pid ] && kill -0 "$(cat /run/collectd.pid)" 2> /dev/null || break; sleep 0.5; done
  cp -r /var/lib/collectd/rrd /var/lib/collectd/csv $R/ 2> /dev/null
fi

xenstore-ls -fp /local/domain > $R/xenstore-final.txt 2>&1
xl list > $R/xl-list.txt 2>&1
fact end_s "$(now)"
log "dom0-side checks failed: $fails"
[ $fails -eq 0 ]
