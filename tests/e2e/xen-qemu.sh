#!/usr/bin/env bash
# End-to-end test on real Xen 4.17 under QEMU (TCG): one command.
#
#   tests/e2e/xen-qemu.sh            build, make images, boot, check
#
# Environment:
#   MEMBAL_E2E_DIR      work dir (default <src>/build/e2e); results in $DIR/out
#   MEMBAL_E2E_LIMIT    overall limit of the QEMU run in seconds (default
#                       3000; an unloaded run takes ~8 min). The scenario's
#                       waits give up on lack of progress long before it.
#   MEMBAL_E2E_HANG     hang detector: QEMU is killed when its serial console
#                       stays silent this many seconds (default 360)
#   MEMBAL_E2E_NOBUILD  1: reuse $DIR/build as it is
# Exit 0 pass, 1 fail, 77 skip (no Xen/QEMU packages and not root to add them).
set -euo pipefail
# The whole script is one function, read before it runs: editing the file
# (a checkout) while a run is under way cannot change what the run does.
main() {
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
dir=${MEMBAL_E2E_DIR:-$src/build/e2e}
limit_s=${MEMBAL_E2E_LIMIT:-${MEMBAL_E2E_TIMEOUT:-3000}}
hang_s=${MEMBAL_E2E_HANG:-360}
start=$(date +%s)
mkdir -p "$dir"
# One emulated host at a time on this machine (the cores are shared), and
# never two runs in one work dir.
exec 9> /tmp/membal-e2e-qemu.lock
if ! flock -w 300 9; then
  echo "xen-e2e: FAIL: another e2e run held /tmp/membal-e2e-qemu.lock for 5 min"
  exit 1
fi
out=$dir/out
rm -rf "$out"
mkdir -p "$out"

say() { echo "xen-e2e: $*"; }
elapsed() { echo $(($(date +%s) - start)); }
fail() {
  say "FAIL: $*"
  if [ -f "$out/serial.log" ]; then
    say "---- last 60 lines of $out/serial.log ----"
    tail -n 60 "$out/serial.log" | tr -d '\r'
  fi
  say "FAIL after $(elapsed)s: $*"
  exit 1
}

# ------------------------------------------------------------ prerequisites
need=(/boot/xen-4.17-amd64.gz /usr/bin/qemu-system-x86_64 /bin/busybox /usr/bin/cpio
      /usr/lib/xen-4.17/bin/xl /usr/sbin/collectd)
missing=0
for f in "${need[@]}"; do [ -e "$f" ] || missing=1; done
ls /boot/vmlinuz-* > /dev/null 2>&1 || missing=1
if [ $missing = 1 ]; then
  if [ "$(id -u)" = 0 ] || command -v sudo > /dev/null; then
    "$src/.ci/install-deps.sh" --e2e
  else
    say "SKIP: Xen/QEMU packages missing (.ci/install-deps.sh --e2e)"
    exit 77
  fi
fi

# -------------------------------------------------------------------- build
# A plain build (no sanitizers): the images run Debian's collectd without
# libasan, and only what the images need is built.
bdir=$dir/build
if [ "${MEMBAL_E2E_NOBUILD:-0}" != 1 ]; then
  cmake -S "$src" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMBAL_SANITIZE=OFF \
    -DMEMBAL_TESTS=OFF -DMEMBAL_BACKEND_LIBVIRT=OFF > "$out/build.log" 2>&1 ||
    { tail -n 30 "$out/build.log"; fail "cmake configure failed"; }
  # Only the targets that exist yet; the images report what was missing.
  help=$(cmake --build "$bdir" --target help 2> /dev/null || true)
  targets=()
  for t in guestmem vmmem membal membal-cmd membal-memload membal-sim; do
    if grep -q "^\.\.\. $t\$" <<< "$help"; then
      targets+=("$t")
    fi
  done
  if [ ${#targets[@]} -gt 0 ]; then
    cmake --build "$bdir" -j2 --target "${targets[@]}" >> "$out/build.log" 2>&1 ||
      { tail -n 30 "$out/build.log"; fail "build of ${targets[*]} failed"; }
  fi
  # The test's time stamper runs in dom0 and in the guests.
  cc -O2 -Wall -Wextra -o "$bdir/e2e-stamp" "$here/e2e-stamp.c" \
    $(pkg-config --cflags --libs xenstore xencontrol) >> "$out/build.log" 2>&1 ||
    { tail -n 30 "$out/build.log"; fail "build of e2e-stamp failed"; }
  # What a balloon target costs in dom0 (libxl's call and its parts).
  cc -O2 -Wall -Wextra -o "$bdir/e2e-setcost" "$here/e2e-setcost.c" \
    $(pkg-config --cflags --libs xenstore xencontrol xenlight xentoollog) >> "$out/build.log" 2>&1 ||
    { tail -n 30 "$out/build.log"; fail "build of e2e-setcost failed"; }
  say "built: ${targets[*]:-nothing} e2e-stamp e2e-setcost ($(elapsed)s)"
fi

# ------------------------------------------------------------------- images
img=$dir/img
"$here/mkimages.sh" "$bdir" "$img" > "$out/images.log" 2>&1 ||
  { tail -n 30 "$out/images.log"; fail "image build failed"; }
say "images: $(tr '\n' ' ' < "$img/components")($(elapsed)s)"

# --------------------------------------------------------------------- boot
# CPU model: with -cpu max (even minus smap, avx, fsgsbase, or with Xen's
# pcid=0 invpcid=0) about 1 in 100 user processes of dom0 and of the guests
# crashed (heap corruption, segfaults in libc) under TCG; the plain qemu64
# model ran the same stress with none (see e2e_mode=stress in scenario.sh).
# A literal comma in a module's command line is ",,".
truncate -s 0 "$out/results.tar"
truncate -s 64M "$out/results.tar"
: > "$out/serial.log"
qemu_start=$(date +%s)
# The scenario's own deadline (dom0 uptime) ends before the host's limit so
# that its results come home.
qemu-system-x86_64 \
  -machine pc -accel "${MEMBAL_E2E_ACCEL:-tcg,thread=multi}" -cpu "${MEMBAL_E2E_CPU:-qemu64}" -smp 2 -m 2048 \
  -display none -vga none -monitor none -no-reboot -net none \
  -serial file:"$out/serial.log" \
  -drive file="$out/results.tar",format=raw,if=virtio \
  -kernel "$img/xen" \
  -append "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=2 loglvl=warning guest_loglvl=warning ${MEMBAL_E2E_XEN_ARGS:-}" \
  -initrd "$img/vmlinuz console=hvc0 earlyprintk=xen rdinit=/init quiet loglevel=3 e2e_deadline=$((limit_s - 120)) ${MEMBAL_E2E_DOM0_ARGS:-},$img/dom0.cpio.gz" \
  > "$out/qemu.log" 2>&1 &
qpid=$!
trap 'kill $qpid 2> /dev/null || true' EXIT
# Watchdog on the host's real clock: the overall limit, and the hang
# detector (no new serial output for hang_s seconds). Phases are echoed as
# dom0 reaches them.
killed=""
last_size=-1
last_change=$(date +%s)
shown=0
while kill -0 $qpid 2> /dev/null; do
  sleep 2
  nowt=$(date +%s)
  size=$(stat -c %s "$out/serial.log" 2> /dev/null || echo 0)
  if [ "$size" != "$last_size" ]; then
    last_size=$size
    last_change=$nowt
    n=$(grep -c -a 'E2E-PHASE' "$out/serial.log" || true)
    if [ "$n" -gt "$shown" ]; then
      grep -a 'E2E-PHASE' "$out/serial.log" | tail -n +$((shown + 1)) | tr -d '\r' |
        sed "s/^/xen-e2e: [$((nowt - qemu_start))s] /"
      shown=$n
    fi
  fi
  if [ $((nowt - qemu_start)) -ge "$limit_s" ]; then
    killed="QEMU did not finish within the overall limit of ${limit_s}s"
  elif [ $((nowt - last_change)) -ge "$hang_s" ]; then
    killed="hang: no serial output for ${hang_s}s (QEMU at $((nowt - qemu_start))s)"
  fi
  if [ -n "$killed" ]; then
    kill $qpid 2> /dev/null
    sleep 3
    kill -9 $qpid 2> /dev/null
    break
  fi
done
set +e
wait $qpid
qrc=$?
set -e
qemu_s=$(($(date +%s) - qemu_start))
say "QEMU ran ${qemu_s}s"

# Results: the last copy dom0 saved (after each phase, and at the end).
mkdir -p "$out/results"
tar -xf "$out/results.tar" -C "$out/results" 2> /dev/null || true
res=$out/results
stopped_at() { grep -a 'E2E-PHASE' "$out/serial.log" | tail -n 1 | tr -d '\r' | sed 's/^.*E2E-PHASE //'; }
if [ -n "$killed" ] || [ $qrc != 0 ] || ! grep -q -a "E2E-DONE" "$out/serial.log"; then
  [ -n "$killed" ] || [ $qrc = 0 ] || cat "$out/qemu.log"
  say "checks saved before it stopped:"
  cat "$res/checks.txt" 2> /dev/null | sed 's/^/xen-e2e:   /' || true
  fail "${killed:-QEMU exited with $qrc before dom0 reached the end}; last phase reached: $(stopped_at)"
fi
cat "$res/checks.txt" 2> /dev/null || true
scen_rc=$(cat "$res/scenario.rc" 2> /dev/null || echo missing)

# Graphs rendered on the host from the RRD files dom0 wrote.
if [ -d "$res/rrd/dom0" ]; then
  "$src/contrib/membal-graph" --datadir "$res/rrd" --host dom0 --start "end-$((qemu_s + 30))s" \
    --end "$(rrdtool last "$(ls "$res"/rrd/dom0/vmmem-busy/memory-current.rrd)")" \
    --out "$out/graphs" > "$out/graphs.log" 2>&1 || say "membal-graph failed: $(tail -n 3 "$out/graphs.log")"
  ls "$out"/graphs/*.png 2> /dev/null | sed 's/^/xen-e2e: graph /'
fi

crc=0
python3 "$here/check.py" "$res" "$here/collectd-dom0.conf" | tee "$out/check.txt" || crc=$?
[ -f "$out/check.txt" ] && grep '^SUMMARY' "$out/check.txt" > "$out/summary.txt"
# Field truth: the same scenario shape in the simulator, both memory traces
# in one picture (out/field-truth.png). An artifact, not a check.
sim_bin=$(find "$bdir" -name membal-sim -type f -perm -u+x 2> /dev/null | head -n1)
if [ -n "$sim_bin" ]; then
  python3 "$here/field-truth.py" "$res" "$here/collectd-dom0.conf" "$sim_bin" "$out" 2>&1 |
    tee -a "$out/summary.txt" | sed 's/^/xen-e2e: /' || true
fi
if [ "$scen_rc" != 0 ] || [ "$crc" != 0 ]; then
  for f in "$res/collectd.log" "$res/guest-busy.log"; do
    [ -f "$f" ] || continue
    say "---- last 15 lines of $f ----"
    tail -n 15 "$f" | tr -d '\r'
  done
  why=$(grep -h '^FAIL' "$res/checks.txt" "$out/check.txt" 2> /dev/null | head -n 5 | tr '\n' ';')
  fail "${why:-dom0 scenario rc $scen_rc}"
fi
say "PASS in $(elapsed)s (QEMU ${qemu_s}s); results in $out"
}
main "$@"
exit
