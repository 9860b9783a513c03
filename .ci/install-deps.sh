#!/usr/bin/env bash
# Installs what membal needs on Debian 12 and is missing. Idempotent: does
# nothing when every package is present. Pass --e2e to add what the real-Xen
# and QEMU/libvirt end-to-end tests need (hypervisor, QEMU, kernel,
# libvirtd). --list prints the package names instead of installing.
set -euo pipefail
pkgs=(cmake make gcc libc6-dev pkg-config
      collectd collectd-core collectd-dev collectd-utils
      xenstore-utils xen-utils-4.17 libxen-dev
      libcunit1-dev rrdtool librrd-dev libmicrohttpd-dev
      chromium
      prometheus python3-prometheus-client libprotobuf-c1 curl # /metrics, write_prometheus
      libvirt-dev libvirt0 libvirt-clients
      valgrind python3 procps
      lintian file perl) # tests/pkg: lint the .debs; cpack's shlibdeps; pod2man
list=false e2e=false
for a in "$@"; do
  case $a in
  --list) list=true ;;
  --e2e) e2e=true ;;
  *) echo "install-deps: unknown argument $a (--e2e, --list)" >&2; exit 2 ;;
  esac
done
if $e2e; then
  pkgs+=(xen-hypervisor-4.17-amd64 qemu-system-x86 linux-image-amd64
         busybox-static cpio gzip xz-utils
         libvirt-daemon libvirt-daemon-driver-qemu) # KVM end to end (libvirtd)
fi
if $list; then
  echo "${pkgs[@]}"
  exit 0
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
