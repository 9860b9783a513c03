#!/usr/bin/env bash
# End to end on KVM's stack: a real QEMU guest (software emulation, TCG)
# with a virtio balloon, run by a real libvirtd (session mode, as nobody
# when we are root), balanced by membal in the real collectd with
# Backend "libvirt":
#  - vmmem reads the guest's balloon statistics; the stats period, 0 by
#    default, is switched on by the backend and the sequence advances as the
#    guest publishes;
#  - a flush shrinks the guest to its Max: QEMU's balloon reaches it, the
#    guest's own /proc/meminfo shows it, vmmem reads it back;
#  - shrunk, the guest's workload swaps (zram): the backend's polling hands
#    the statistics to vmmem's watch thread, its urgent notification makes
#    membal grow the guest at once (emergency), without any flush;
#  - libvirtd restarts under collectd: logged once, reconnected.
# Needs qemu-system-x86, libvirt-daemon-driver-qemu, a kernel image with
# virtio_balloon as a module (linux-image-amd64), busybox-static, cpio
# (.ci/install-deps.sh --e2e). Skipped otherwise.
#
# Plugins built with AddressSanitizer cannot talk to libvirtd: ASan's XDR
# interceptors find no glibc XDR to forward to (Debian's libvirt uses
# libtirpc) and the first RPC jumps to address 0. The test then builds its
# own copy of vmmem and membal without sanitizers.
. "${MEMBAL_SOURCE_DIR:?}/tests/lib/harness.sh"

kver=$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n1)
moddir=/lib/modules/$kver/kernel/drivers/virtio
for need in qemu-system-x86_64 cpio gzip virsh setpriv; do
  command -v "$need" >/dev/null || mb_skip "$need missing (.ci/install-deps.sh --e2e)"
done
[ -x /usr/sbin/libvirtd ] || mb_skip "libvirtd missing (libvirt-daemon)"
ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1 ||
  mb_skip "libvirt's QEMU driver missing (libvirt-daemon-driver-qemu)"
[ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ] || mb_skip "no kernel image in /boot (linux-image-amd64)"
[ -f "$moddir/virtio_balloon.ko" ] || mb_skip "virtio_balloon.ko of $kver missing"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && { ldd "$busybox" 2>&1 || true; } | grep -q "not a dynamic executable" ||
  mb_skip "busybox-static missing"

MiB=1024
name=mbkvm1

# ---- plugins without sanitizers when ours have them
plugdir=$MB_PLUGINDIR
if mb__plugins_asan; then
  mb_log "building vmmem and membal without sanitizers (ASan breaks libvirt's RPC)"
  cmake -S "$MEMBAL_SOURCE_DIR" -B "$MB_DIR/build" -DMEMBAL_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$MB_DIR/build.log" 2>&1 ||
    mb_fail "cmake: $(tail -5 "$MB_DIR/build.log")"
  cmake --build "$MB_DIR/build" --target vmmem membal -j2 >>"$MB_DIR/build.log" 2>&1 ||
    mb_fail "build: $(tail -5 "$MB_DIR/build.log")"
  plugdir=$MB_DIR/build/plugins
fi
MB_PLUGINDIR=$plugdir

# ---- the guest: busybox initramfs with the virtio modules, holding 60 MiB
# in tmpfs and printing its meminfo every 2 s on the serial port
img=$MB_DIR/img
mkdir -p "$img/root/bin" "$img/root/m" "$img/root/proc" "$img/root/sys" "$img/root/dev"
cp "$busybox" "$img/root/bin/busybox"
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon zsmalloc zram"
for m in $mods; do
  for d in "$moddir" "/lib/modules/$kver/kernel/mm" "/lib/modules/$kver/kernel/drivers/block/zram"; do
    [ -f "$d/$m.ko" ] && cp "$d/$m.ko" "$img/root/m/"
  done
done
cat >"$img/root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do [ -f /m/\$m.ko ] && insmod /m/\$m.ko; done
# swap on zram: swapping is real (counted) without a disk
echo 512M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && swapon /dev/zram0
mkdir -p /t; mount -t tmpfs -o size=600m tmpfs /t
dd if=/dev/zero of=/t/fill bs=1M count=60 2>/dev/null
# safety net: the guest powers itself off (and libvirt destroys it) even if
# the test is killed before its exit trap runs
(sleep 280; poweroff -f) &
echo "GUEST-READY"
# Once ballooned below 300 MiB, a workload of 260 MiB more that it keeps
# reading: more than the guest has, so it swaps for as long as it is short.
hog=0
while true; do
  mt=\$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
  if [ \$hog = 0 ] && [ "\$mt" -lt 307200 ]; then
    dd if=/dev/zero of=/t/hog bs=1M count=260 2>/dev/null; hog=1; echo GUEST-HOG
  fi
  [ \$hog = 1 ] && cat /t/hog >/dev/null
  echo "GUEST \$(grep -E '^(MemTotal|MemFree):' /proc/meminfo | tr -s ' ' | tr '\n' ' ')\$(grep -E '^pswp' /proc/vmstat | tr '\n' ' ')"
  sleep 2 # the guest's pace; the test counts these lines as its progress
done
EOF
chmod +x "$img/root/init"
(cd "$img/root" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$img/initrd.gz"
cp "/boot/vmlinuz-$kver" "$img/vmlinuz"

# ---- libvirtd in session mode, private directories
lv=$MB_DIR/lv
mkdir -p "$lv/run" "$lv/cfg" "$lv/cache" "$lv/data"
chmod 700 "$lv/run"
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  # root's session URI goes to the system daemon; run libvirt as nobody
  chmod 755 "$MB_DIR"
  chown -R nobody:nogroup "$lv" "$img"
  as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
lvenv=(env HOME="$lv" XDG_RUNTIME_DIR="$lv/run" XDG_CONFIG_HOME="$lv/cfg"
  XDG_CACHE_HOME="$lv/cache" XDG_DATA_HOME="$lv/data")
uvirsh() { "${lvenv[@]}" "${as_user[@]}" virsh -q -c qemu:///session "$@"; }
serial=$lv/serial.log
sock=$lv/run/libvirt/libvirt-sock
uri="qemu+unix:///session?socket=$sock"
cat >"$lv/guest.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>512</memory>
  <currentMemory unit='MiB'>512</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$img/vmlinuz</kernel>
    <initrd>$img/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='$serial'/><target port='0'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
EOF
[ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$lv/guest.xml"
# libvirt's processes are not our children (libvirtd daemonizes, and is
# restarted below): a helper kills whatever the pid files name when the
# test ends. The harness stops it at exit with SIGTERM (SIGKILL 5 s later,
# so it must be done well within that); started under MB_DEATHSIG it also
# gets SIGTERM when the test shell is killed without running its exit trap.
# What it kills is reaped by init, not by us, and kill -0 succeeds on a
# zombie: a zombie counts as gone (counting it as alive made the helper
# wait its full time on every process and be killed before it was done).
cat >"$MB_DIR/reaper.sh" <<'EOF'
lv=$1 name=$2
alive() { # not gone and not a zombie
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
stop() { # TERM, wait up to $1 x 0.2 s for all of them, then KILL the rest
  local tries=$1 p left
  shift
  [ $# -gt 0 ] || return 0
  echo "$(date +%T.%N | cut -c1-12) TERM $*"
  kill -TERM "$@" 2>/dev/null
  while [ "$tries" -gt 0 ]; do
    left=()
    for p in "$@"; do alive "$p" && left+=("$p"); done
    [ ${#left[@]} -gt 0 ] || return 0
    sleep 0.2 # poll pace of the bounded wait for them to exit
    tries=$((tries - 1))
  done
  for p in "$@"; do
    alive "$p" && { echo "KILL $p"; kill -KILL "$p" 2>/dev/null; }
  done
  return 0
}
reap() {
  # libvirtd first (killing the guest under it would make it start
  # virtlogd again), then the guest and virtlogd; pids read up front
  # because each daemon removes its pid file as it goes. Nothing here may
  # stop early: a pid already gone is fine.
  local f daemon=() rest=()
  f=$lv/run/libvirt/libvirtd.pid
  [ -s "$f" ] && daemon+=("$(cat "$f")")
  # (qemu/run/driver.pid is libvirtd's own: not a guest)
  for f in "$lv/run/libvirt/qemu/run/$name.pid" "$lv/run/libvirt/virtlogd.pid"; do
    [ -s "$f" ] && rest+=("$(cat "$f")")
  done
  stop 10 "${daemon[@]}"
  stop 8 "${rest[@]}"
  echo "$(date +%T.%N | cut -c1-12) done"
  exit 0
}
trap reap TERM
while :; do
  sleep 1 & # idle until TERM (wait returns at once on the trap)
  wait $! || true
done
EOF
mb_bg "$MB_DIR/reaper.log" "${MB_DEATHSIG[@]}" bash "$MB_DIR/reaper.sh" "$lv" "$name"
t0=$(mb_now_ms)
uvirsh "create $lv/guest.xml" >"$MB_DIR/create.out" 2>&1 ||
  mb_fail "virsh create: $(cat "$MB_DIR/create.out")"
mb_wait_for 120 grep -q GUEST-READY "$serial" || mb_fail "guest did not boot: $(tail -5 "$serial" 2>/dev/null)"
mb_log "guest booted in $(($(mb_now_ms) - t0)) ms (TCG)"
guest_total() { sed -n 's/^GUEST MemTotal: \([0-9]*\) kB.*/\1/p' "$serial" | tail -n1; }
# The guest prints a GUEST line every 2 s of its own time: its progress.
guest_lines() { grep -c '^GUEST ' "$serial"; }
actual_kib() { virsh -q -c "$uri" "dommemstat $name" | sed -n 's/^actual \([0-9]*\)$/\1/p'; }
# Polled conditions (evaluated afresh on each try of mb_wait_for).
actual_le() { local a; a=$(actual_kib); [ -n "$a" ] && [ "$a" -le "$1" ]; }
actual_ge() { local a; a=$(actual_kib); [ -n "$a" ] && [ "$a" -ge "$1" ]; }
guest_lt() { local g; g=$(guest_total); [ -n "$g" ] && [ "$g" -lt "$1" ]; }
guest_gt() { local g; g=$(guest_total); [ -n "$g" ] && [ "$g" -gt "$1" ]; }
mb_wait_progress 30 guest_lines guest_gt 0 || mb_fail "no meminfo line from the guest"

gauge() { mb_getval "$MB_HOSTNAME/$1"; }
gauge_is() { # within 1e-6 (collectdctl prints 7 digits)
  local v
  v=$(gauge "$1") || return 1
  awk -v a="$v" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * b) }'
}
gauge_le() { local v; v=$(gauge "$1") || return 1; awk -v a="$v" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

conf() { # <file> <extra membal lines>
  mb_collectd_conf "$1" <<EOF
PluginDir "$plugdir"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "libvirt"
  URI "$uri"
</Plugin>
LoadPlugin membal
<Plugin membal>
  Backend "libvirt"
  URI "$uri"
  Period 3600
$2
</Plugin>
EOF
}

# ---- shrink to Max
conf "$MB_DIR/shrink.conf" '  <Domain "'$name'">
    Max "300MiB"
  </Domain>'
mb_collectd_start "$MB_DIR/shrink.conf"
mb_wait_for 15 gauge "vmmem-$name/memory-guest_MemTotal" >/dev/null || mb_fail "no balloon stats from vmmem"
mb_assert "period switched on, logged" mb_log_has "vmmem: libvirt: domain $name: balloon stats period was 0 \(off\); set to 5 s"
mb_assert "current 512 MiB" gauge_is "vmmem-$name/memory-current" $((512 * MiB * 1024))
mb_assert "guest_MemTotal = the guest's own MemTotal ($(guest_total) KiB)" \
  gauge_is "vmmem-$name/memory-guest_MemTotal" $(($(guest_total) * 1024))
seq0=$(gauge "vmmem-$name/count-sample_seq")
seq_moved() { awk -v a="$(gauge "vmmem-$name/count-sample_seq")" -v b="$seq0" 'BEGIN { exit !(a > b) }'; }
mb_wait_for 15 seq_moved || mb_fail "the guest's sample never advanced (seq $seq0): stats period not in force"
mb_log "sample seq advanced from $seq0 to $(gauge "vmmem-$name/count-sample_seq") with the guest's publications"

t0=$(mb_now_ms)
mb_collectdctl flush plugin=membal
mb_wait_for 5 mb_log_has "membal: $name \(domid [0-9]+\) target 512.0 MiB -> 300.0 MiB" ||
  mb_fail "no shrink to 300 MiB logged"
mb_wait_progress 30 guest_lines actual_le $((300 * MiB)) || mb_fail "balloon never reached 300 MiB (actual $(actual_kib) KiB)"
ms=$(($(mb_now_ms) - t0))
mb_log "flush -> QEMU balloon at 300 MiB: $ms ms"
mb_wait_progress 30 guest_lines guest_lt $((300 * MiB)) || mb_fail "the guest still sees MemTotal $(guest_total) KiB"
mb_log "guest's own MemTotal now $(guest_total) KiB"
mb_wait_for 10 gauge_is "vmmem-$name/memory-current" $((300 * MiB * 1024)) || mb_fail "vmmem never read back 300 MiB"
mb_wait_for 15 gauge_le "vmmem-$name/memory-guest_MemTotal" $((300 * MiB * 1024)) || mb_fail "vmmem's guest_MemTotal still above 300 MiB"
mb_collectd_stop

# ---- swap storm: the shrunk guest's workload no longer fits and it swaps.
# With the Max gone and no flush, only the swap storm can start a round:
# the backend's poll hands the changed statistics to vmmem's watch thread,
# which raises its urgent notification, and membal grows the guest at once.
mb_wait_progress 30 guest_lines grep -q GUEST-HOG "$serial" || mb_fail "the guest's workload did not start"
conf "$MB_DIR/storm.conf" ""
t0=$(mb_now_ms)
mb_collectd_start "$MB_DIR/storm.conf"
# (waits as long as the TCG guest goes on printing: its swapping is as slow
# as this machine is loaded)
mb_wait_progress 30 guest_lines mb_log_has "membal: $name \(domid [0-9]+\) target 300.0 MiB -> [0-9.]+ MiB: emergency.*urgent" ||
  mb_fail "no emergency round on the swap storm: $(grep -E 'membal|vmmem|Notif' "$MB_CD_LOG" | tail -5)"
mb_log "swapping guest grown by an urgent round $(($(mb_now_ms) - t0)) ms after collectd started: $(grep -oE "target 300.0 MiB -> [0-9.]+ MiB: emergency" "$MB_CD_LOG" | head -1)"
mb_assert "membal ran no flush round" test "$(grep -c "round on flush" "$MB_CD_LOG")" -eq 1
mb_wait_progress 30 guest_lines actual_ge $((330 * MiB)) || mb_fail "the balloon did not grow (actual $(actual_kib) KiB)"
mb_wait_progress 30 guest_lines guest_gt $((300 * MiB)) || mb_fail "the guest's MemTotal stayed at $(guest_total) KiB"
mb_log "grown: QEMU actual $(actual_kib) KiB, guest MemTotal $(guest_total) KiB"

# ---- libvirtd restarts under collectd (the guest keeps running; the new
# daemon picks it up). vmmem, reading every second, meets the outage: one
# "lost", one error, then "reachable". membal's connection is found dead
# only by the next round, which the backend retries on a new connection:
# that round succeeds.
kill -TERM "$(cat "$lv/run/libvirt/libvirtd.pid")"
mb_wait_for 10 mb_log_has "vmmem: libvirt: connection to qemu\+unix:///session.* lost" ||
  mb_fail "the lost libvirt connection was not logged"
uvirsh "list" >/dev/null 2>&1 || mb_fail "libvirtd did not come back"
# vmmem's read in the outage: the retry could not connect either; said
# once, then "reachable" when the daemon is back
mb_wait_for 15 mb_log_has "vmmem: backend libvirt reachable" ||
  mb_fail "vmmem did not reconnect: $(grep vmmem "$MB_CD_LOG" | tail -3)"
mb_assert "the loss logged once" test "$(grep -c "vmmem: libvirt: connection to .* lost" "$MB_CD_LOG")" -eq 1
mb_assert "the outage logged once" test "$(grep -c "vmmem: libvirt: cannot connect" "$MB_CD_LOG")" -le 1
seq1=$(gauge "vmmem-$name/count-sample_seq")
seq_moved1() { awk -v a="$(gauge "vmmem-$name/count-sample_seq")" -v b="$seq1" 'BEGIN { exit !(a != b) }'; }
mb_wait_for 20 seq_moved1 || mb_fail "no fresh sample after the reconnect"
# count-round, the gauge: GETVAL shows the derive derive-rounds as a rate,
# which falls back to 0 a second after any round and so cannot be compared
# across rounds (an urgent round just before would hide the flush round).
rounds=$(gauge "membal/count-round")
more_rounds() { awk -v a="$(gauge "membal/count-round")" -v b="$rounds" 'BEGIN { exit !(a > b) }'; }
mb_collectdctl flush plugin=membal
mb_wait_for 5 more_rounds || mb_fail "membal made no round after the restart"
if mb_log_has "membal: backend \"libvirt\" failed"; then
  mb_fail "membal's round failed on the restarted libvirtd: $(grep 'membal: backend' "$MB_CD_LOG")"
fi
mb_collectd_stop
uvirsh "destroy $name" >/dev/null 2>&1 || true
mb_log "PASS"
