# Helpers to assemble an initramfs from the host's own Debian binaries.
# Sourced by mkimages.sh. Every function takes the staging root as $1.
# Shared libraries are found with ldd and copied to the path the loader
# resolved, so the binaries run unchanged inside the image.

KVER=${KVER:-$(ls /lib/modules | sort -V | tail -n1)}
MODDIR=/lib/modules/$KVER

img_skeleton() {
  local root=$1
  mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,mnt,lib64,usr/bin,usr/sbin,usr/lib,var/lib,var/log}
  ln -sfn /run "$root/var/run"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  # The applet links are made at build time so /init can be a busybox script.
  local a
  for a in $(/bin/busybox --list); do
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
}

# Copies one file to the same path in the image (following symlinks so the
# image never holds a link pointing outside of itself).
img_file() {
  local root=$1 src=$2 dst=${3:-$2}
  mkdir -p "$root/$(dirname "$dst")"
  cp -L "$src" "$root/$dst"
}

# Copies an ELF binary or shared object plus every library ldd resolves for
# it. libgcc_s is always added: glibc dlopens it for pthread_cancel/unwinding
# and xl aborts without it.
img_elf() {
  local root=$1 src=$2 dst=${3:-$2}
  img_file "$root" "$src" "$dst"
  local lib
  for lib in $(ldd "$src" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
    [ -e "$root/$lib" ] || img_file "$root" "$lib"
  done
  local gcc
  gcc=$(ls /lib/x86_64-linux-gnu/libgcc_s.so.1 2>/dev/null || true)
  [ -n "$gcc" ] && [ ! -e "$root/$gcc" ] && img_file "$root" "$gcc"
  return 0
}

# Modules named without .ko, dependencies first (from modules.dep). Writes
# the load order to $root/etc/modules.order (paths relative to /lib/modules).
img_modules() {
  local root=$1; shift
  local order=() seen=" " m
  _img_mod_add() {
    local name=$1 rel deps d
    rel=$(awk -F: -v n="$name" '{ f=$1; sub(/.*\//,"",f); sub(/\.ko(\.xz|\.zst|\.gz)?$/,"",f);
                                 g=f; gsub(/-/,"_",g); h=n; gsub(/-/,"_",h);
                                 if (g==h) { print $1; exit } }' "$MODDIR/modules.dep")
    [ -n "$rel" ] || { echo "lib-image: module $name not found in $MODDIR" >&2; return 1; }
    case "$seen" in *" $rel "*) return 0 ;; esac
    deps=$(awk -F: -v r="$rel" '$1==r {print $2; exit}' "$MODDIR/modules.dep")
    for d in $deps; do
      d=${d##*/}; d=${d%%.ko*}
      _img_mod_add "$d" || return 1
    done
    seen="$seen$rel "
    order+=("$rel")
  }
  for m in "$@"; do _img_mod_add "$m" || return 1; done
  mkdir -p "$root/lib/modules" "$root/etc"
  : > "$root/etc/modules.order"
  local rel out
  for rel in "${order[@]}"; do
    out=${rel%.xz}; out=${out%.zst}; out=${out%.gz}
    mkdir -p "$root/lib/modules/$(dirname "$out")"
    case "$rel" in
      *.xz) xz -dc "$MODDIR/$rel" > "$root/lib/modules/$out" ;;
      *.zst) zstd -qdc "$MODDIR/$rel" > "$root/lib/modules/$out" ;;
      *.gz) gzip -dc "$MODDIR/$rel" > "$root/lib/modules/$out" ;;
      *) cp "$MODDIR/$rel" "$root/lib/modules/$out" ;;
    esac
    echo "$out" >> "$root/etc/modules.order"
  done
}

# Packs the staging root as a gzip'd newc cpio.
img_pack() {
  local root=$1 out=$2 level=${3:-6}
  (cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -"$level" > "$out.tmp"
  mv "$out.tmp" "$out"
}

# Extracts the vmlinux ELF from a bzImage (Debian compresses it with xz)
# and recompresses it with gzip -1: libxc then inflates it much faster than
# it would decompress xz, which halves `xl create` time under emulation.
img_guest_kernel() {
  local bz=$1 out=$2 off
  off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$bz" | head -n1 | cut -d: -f1)
  [ -n "$off" ] || { echo "lib-image: no xz payload in $bz" >&2; return 1; }
  # xz stops at the end of its stream; a pipe from tail would die of SIGPIPE.
  tail -c +$((off + 1)) "$bz" > "$out.xz"
  xz -dc --single-stream < "$out.xz" > "$out.elf"
  rm -f "$out.xz"
  [ "$(head -c 4 "$out.elf" | tail -c 3)" = ELF ] || { echo "lib-image: payload of $bz is not ELF" >&2; return 1; }
  gzip -1 -c "$out.elf" > "$out"
  rm -f "$out.elf"
}
