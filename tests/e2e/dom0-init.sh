#!/bin/sh
# /init of dom0: bring up the Xen toolstack from Debian's own binaries, run
# the scenario, copy the results to the output disk and reboot (QEMU runs
# with -no-reboot, so a reboot ends the run).
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

log() { echo "e2e-dom0: $*"; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mkdir -p /run/xen /run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console \
  /var/lib/collectd /results
echo 1 > /proc/sys/kernel/printk 2>/dev/null

while read -r m; do
  insmod "/lib/modules/$m" || log "insmod $m failed"
done < /etc/modules.order
mount -t xenfs xenfs /proc/xen || log "mount xenfs failed"

t0=$(cut -d' ' -f1 /proc/uptime)
xenstored --pid-file /run/xenstored.pid || log "xenstored failed"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console ||
  log "xenconsoled failed"
xen-init-dom0 || log "xen-init-dom0 failed"
log "toolstack up at ${t0}s..$(cut -d' ' -f1 /proc/uptime)s"

# No time limit here: every wait of the scenario gives up on lack of
# progress or at its deadline (e2e_deadline, dom0 uptime), and the host kills
# QEMU when the serial console stays silent or its overall limit passes. The
# scenario saves its results to the output disk after every phase.
rc=0
sh -x /e2e/scenario.sh 2> /run/scenario.trace || rc=$?
tail -n 3000 /run/scenario.trace > /results/scenario.trace
log "scenario exit $rc"

# Results travel back on a raw virtio disk holding a plain tar stream.
cp /var/log/xen/console/*.log /results/ 2>/dev/null
xl dmesg > /results/xl-dmesg.txt 2>&1
dmesg > /results/dom0-dmesg.txt 2>&1
echo "$rc" > /results/scenario.rc
if [ -b /dev/vda ]; then
  tar -cf /dev/vda -C /results . && sync && log "results written to /dev/vda"
else
  log "no output disk /dev/vda"
fi
echo "E2E-DONE rc=$rc"
sleep 1
reboot -f
