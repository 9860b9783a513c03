#!/usr/bin/env bash
# Builds the images the e2e test boots, from the host's Debian binaries and
# the project's own build:
#   $OUT/xen             plain Xen ELF (QEMU's multiboot loader needs it)
#   $OUT/vmlinuz         dom0 kernel (Debian's bzImage)
#   $OUT/dom0.cpio.gz    dom0: busybox, Xen toolstack, collectd + vmmem +
#                        membal + rrdtool + unixsock, the guest images
#   (inside dom0) /e2e/vmlinuz-guest.gz, /e2e/guest.cpio.gz
# Usage: mkimages.sh BUILD_DIR OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd)
out=$2
mkdir -p "$out"
out=$(cd "$out" && pwd)
. "$here/lib-image.sh"

xenbin=/usr/lib/xen-4.17/bin
bz=$(ls /boot/vmlinuz-* | sort -V | tail -n1)
[ -f /boot/xen-4.17-amd64.gz ] || { echo "mkimages: /boot/xen-4.17-amd64.gz missing" >&2; exit 1; }
[ -f "$bz" ] || { echo "mkimages: no /boot/vmlinuz-*" >&2; exit 1; }

zcat /boot/xen-4.17-amd64.gz > "$out/xen"
cp "$bz" "$out/vmlinuz"

# Optional pieces: the test uses what the build produced and reports what
# it lacked.
plugin() { find "$build" -name "$1.so" -type f 2> /dev/null | head -n1; }
memload=$(find "$build" -name membal-memload -type f -perm -u+x 2> /dev/null | head -n1)
mbcmd=$(find "$build" -name membal -type f -perm -u+x 2> /dev/null | head -n1)
# The test's own time stamper (built by xen-qemu.sh): required.
stamp=$build/e2e-stamp
[ -x "$stamp" ] || { echo "mkimages: $stamp missing" >&2; exit 1; }

add_collectd() {
  local root=$1; shift
  img_elf "$root" /usr/sbin/collectd
  img_elf "$root" /usr/bin/collectdctl
  local p
  for p in "$@"; do
    img_elf "$root" "/usr/lib/collectd/$p.so"
  done
  img_file "$root" /usr/share/collectd/types.db
}

# ---------------------------------------------------------------- guest
groot=$(mktemp -d "$out/guest-root.XXXXXX")
trap 'rm -rf "$groot" "${droot:-}"' EXIT
img_skeleton "$groot"
img_modules "$groot" zram
img_elf "$groot" /usr/bin/xenstore
for a in read write rm ls list exists chmod watch; do ln -sf xenstore "$groot/usr/bin/xenstore-$a"; done
if [ -n "$memload" ]; then img_elf "$groot" "$memload" /usr/bin/membal-memload; fi
img_elf "$groot" "$stamp" /usr/bin/e2e-stamp
gm=$(plugin guestmem)
if [ -n "$gm" ]; then
  add_collectd "$groot" logfile
  img_elf "$groot" "$gm" /usr/lib/collectd/guestmem.so
  mkdir -p "$groot/etc/collectd"
  cp "$here/collectd-guest.conf" "$groot/etc/collectd/collectd.conf"
fi
install -m 0755 "$here/guest-init.sh" "$groot/init"
img_pack "$groot" "$out/guest.cpio.gz" 1

img_guest_kernel "$bz" "$out/vmlinuz-guest.gz"

# ----------------------------------------------------------------- dom0
droot=$(mktemp -d "$out/dom0-root.XXXXXX")
img_skeleton "$droot"
img_modules "$droot" xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc \
  virtio_pci virtio_blk
for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
  img_elf "$droot" "$xenbin/$b"
done
img_elf "$droot" /usr/bin/xenstore
for a in read write rm ls list exists chmod watch; do ln -sf xenstore "$droot/usr/bin/xenstore-$a"; done
img_elf "$droot" "$stamp" /usr/bin/e2e-stamp
[ -x "$build/e2e-setcost" ] && img_elf "$droot" "$build/e2e-setcost" /usr/bin/e2e-setcost
mkdir -p "$droot/etc/xen"
echo 'autoballoon="off"' > "$droot/etc/xen/xl.conf"
vm=$(plugin vmmem)
mb=$(plugin membal)
if [ -n "$vm" ]; then
  add_collectd "$droot" logfile rrdtool unixsock csv
  img_elf "$droot" "$vm" /usr/lib/collectd/vmmem.so
  [ -n "$mb" ] && img_elf "$droot" "$mb" /usr/lib/collectd/membal.so
  # The operator's command and the xl create wrapper (making room for a VM).
  if [ -n "$mbcmd" ]; then
    img_elf "$droot" "$mbcmd" /usr/bin/membal
    install -m 0755 "$src/contrib/membal-xl-create" "$droot/usr/bin/membal-xl-create"
  fi
  mkdir -p "$droot/etc/collectd"
  cp "$here/collectd-dom0.conf" "$droot/etc/collectd/collectd.conf"
  [ -n "$mb" ] || sed -i '/#membal-begin/,/#membal-end/d' "$droot/etc/collectd/collectd.conf"
  if [ -n "${MEMBAL_E2E_POLICY:-}" ]; then
    sed -i "s/^  Policy \".*\"/  Policy \"$MEMBAL_E2E_POLICY\"/" "$droot/etc/collectd/collectd.conf"
  fi
  grep -m1 '^  Policy' "$droot/etc/collectd/collectd.conf" | sed 's/^ */policy: /'

fi
mkdir -p "$droot/e2e"
cp "$out/vmlinuz-guest.gz" "$out/guest.cpio.gz" "$droot/e2e/"
install -m 0755 "$here/scenario.sh" "$droot/e2e/scenario.sh"
install -m 0755 "$here/dom0-init.sh" "$droot/init"
{
  echo "guestmem=${gm:+yes}"
  echo "vmmem=${vm:+yes}"
  echo "membal=${mb:+yes}"
  echo "memload=${memload:+yes}"
  echo "membalcmd=${mbcmd:+yes}"
} > "$droot/e2e/components"
cp "$droot/e2e/components" "$out/components"
img_pack "$droot" "$out/dom0.cpio.gz" 1
ls -la "$out"/*.gz "$out/xen"
