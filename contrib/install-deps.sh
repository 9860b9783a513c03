#!/usr/bin/env bash
# Installs what membal needs on Debian 12 and is missing. Idempotent: does
# nothing when every package is present. Pass --e2e to add what the real-Xen
# end-to-end test needs (hypervisor, QEMU, kernel).
set -euo pipefail
pkgs=(cmake make gcc libc6-dev pkg-config
      collectd-core collectd-dev collectd-utils
      xenstore-utils xen-utils-4.17 libxen-dev
      libcunit1-dev rrdtool librrd-dev
      libvirt-dev libvirt0 libvirt-clients
      valgrind python3 procps)
if [ "${1:-}" = "--e2e" ]; then
  pkgs+=(xen-hypervisor-4.17-amd64 qemu-system-x86 linux-image-amd64
         busybox-static cpio gzip xz-utils
         libvirt-daemon libvirt-daemon-driver-qemu) # KVM end to end (libvirtd)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
