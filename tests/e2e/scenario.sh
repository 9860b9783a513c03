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

xenstore-ls -fp /local/domain > $R/xenstore-final.txt 2>&1
xl list > $R/xl-list.txt 2>&1
fact end_s "$(now)"
log "dom0-side checks failed: $fails"
[ $fails -eq 0 ]
