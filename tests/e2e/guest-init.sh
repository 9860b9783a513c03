#!/bin/sh
# /init of a PV guest: zram swap, permission probe, collectd with guestmem,
# then obey commands dom0 writes to /local/domain/<self>/e2e/cmd.
# xenstore paths without a leading / are relative to the guest's home.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

log() { echo "e2e-guest: $*"; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mkdir -p /var/lib/collectd /run/collectd
echo 1 > /proc/sys/kernel/printk

while read -r m; do
  insmod "/lib/modules/$m" || log "insmod $m failed"
done < /etc/modules.order

# zram: swapping is real (pswpin/pswpout counted) without a disk.
zram_mb=$(sed -n 's/.*e2e_zram=\([0-9]*\).*/\1/p' /proc/cmdline)
echo lzo-rle > /sys/block/zram0/comp_algorithm 2>/dev/null
echo "${zram_mb:-512}M" > /sys/block/zram0/disksize
mkswap /dev/zram0 > /dev/null && swapon /dev/zram0 || log "zram swap failed"
# Swap readahead would count neighbouring pages as swap-ins too; the test
# bounds real demand swap-ins.
echo 0 > /proc/sys/vm/page-cluster

role=$(sed -n 's/.*e2e_role=\([a-z]*\).*/\1/p' /proc/cmdline)

# The guest owns data/ and must not be able to set its own balloon target.
if xenstore-write data/e2e/probe ok 2> /dev/null; then d=ok; else d=denied; fi
if xenstore-write memory/target 4194304 2> /tmp/target.err; then
  t=WRITTEN
else
  t="denied($(tr -d '\n' < /tmp/target.err))"
fi
xenstore-write data/e2e/perm "data=$d target=$t"
log "role=$role permissions: data=$d target=$t"

if [ -x /usr/sbin/collectd ] && [ -f /etc/collectd/collectd.conf ]; then
  collectd -C /etc/collectd/collectd.conf -P /run/collectd.pid || log "collectd failed"
fi

xenstore-write data/e2e/ready "$(cut -d' ' -f1 /proc/uptime)"

# Commands from dom0: "<seq> <verb> <args>" in e2e/cmd, read on a xenstore
# watch (e2e-stamp watch: one stamped line per change):
#   memload ARGS   start membal-memload ARGS in the background
#   fill MIB       write MIB MiB to a tmpfs at once (a memory burst)
#   signals KEY    start e2e-stamp signals KEY (first swap/stall, balloon)
#   stop           stop what memload and signals started
#   agent nopsi    restart collectd, guestmem on vmstat polling only (no
#                  PSI trigger: PressurePath "")
# The ack carries the guest's uptime so dom0 can line up both clocks.
run_cmd() {
  seq=${1%% *}
  rest=${1#* }
  verb=${rest%% *}
  args=${rest#* }
  [ "$args" = "$rest" ] && args=""
  log "cmd $seq: $verb $args"
  case "$verb" in
    memload)
      # A fake client owns data/membal/stats: guestmem must not interleave.
      case "$args" in
        fake-client*) [ -f /run/collectd.pid ] && kill "$(cat /run/collectd.pid)" ;;
      esac
      membal-memload $args > /dev/console 2>&1 &
      echo $! >> /run/memload.pids ;;
    fill)
      # A burst: MIB of tmpfs written at kernel speed (no user page
      # faults, which are slow for a PV guest under emulation); the status
      # says "<MIB> static" once written.
      mkdir -p /run/storm
      grep -q ' /run/storm ' /proc/mounts || mount -t tmpfs -o size=2g storm /run/storm
      # fallocate: the pages are allocated and zeroed in one pass, no copy
      # from a user buffer (dd's two passes let membal's periodic rounds
      # keep up under a loaded host: run 3 never swapped).
      (fallocate -l "${args}M" /run/storm/fill 2> /dev/null ||
        dd if=/dev/zero of=/run/storm/fill bs=1M count="$args" 2> /dev/null
        xenstore-write data/e2e/load "$args static") &
      echo $! >> /run/memload.pids ;;
    signals)
      e2e-stamp signals $args > /dev/console 2>&1 &
      echo $! >> /run/memload.pids ;;
    stop)
      [ -f /run/memload.pids ] && kill $(cat /run/memload.pids) 2> /dev/null
      rm -f /run/memload.pids /run/storm/fill ;;
    agent)
      if [ -f /run/collectd.pid ]; then
        cpid=$(cat /run/collectd.pid)
        kill "$cpid"
        while kill -0 "$cpid" 2> /dev/null; do sleep 0.2; done
      fi
      cp /etc/collectd/collectd.conf /run/collectd-agent.conf
      [ "$args" = nopsi ] && printf '<Plugin guestmem>\n  PressurePath ""\n</Plugin>\n' >> /run/collectd-agent.conf
      collectd -C /run/collectd-agent.conf -P /run/collectd.pid || log "collectd ($args) failed" ;;
    *) log "cmd $seq: unknown verb '$verb'" ;;
  esac
  xenstore-write data/e2e/ack "$seq $(cut -d' ' -f1 /proc/uptime)"
}
last=""
e2e-stamp watch e2e/cmd 2> /dev/console | while read -r t path cmd; do
  if [ "$cmd" != "(none)" ] && [ -n "$cmd" ] && [ "$cmd" != "$last" ]; then
    last=$cmd
    run_cmd "$cmd"
  fi
done
log "the command watch ended"
sleep 100000
