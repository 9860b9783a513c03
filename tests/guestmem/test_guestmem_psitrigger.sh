#!/usr/bin/env bash
# The urgent path on a REAL PSI trigger: guestmem arms a trigger on the
# kernel's /proc/pressure/memory and sleeps in poll(); real memory stall,
# made by re-reading a 64 MiB file inside a 16 MiB memory cgroup (page
# cache thrash: reclaim and refaults, no swap needed), wakes it and an
# urgent record carrying the new stall figures reaches xenstore. The vmstat
# file is a plain file that never changes: only the trigger can fire.
# Prints the time from the start of the thrash to the urgent record.
# Needs root, PSI and a memory cgroup (v1 or v2); skipped otherwise.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

[ -r /proc/pressure/memory ] || mb_skip "no /proc/pressure/memory (kernel without PSI or psi=0)"
cg=""
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/mb-psi-$$
  mkdir "$cg" 2>/dev/null || mb_skip "cannot create a cgroup v2 under /sys/fs/cgroup"
  echo $((16 << 20)) >"$cg/memory.max"
elif [ -w /sys/fs/cgroup/memory/cgroup.procs ]; then
  cg=/sys/fs/cgroup/memory/mb-psi-$$
  mkdir "$cg" 2>/dev/null || mb_skip "cannot create a memory cgroup (v1)"
  echo $((16 << 20)) >"$cg/memory.limit_in_bytes"
else
  mb_skip "no writable memory cgroup (v1 or v2)"
fi
thrash_pid=""
psi_exit() {
  local rc=$?
  [ -n "$thrash_pid" ] && kill "$thrash_pid" 2>/dev/null && wait "$thrash_pid" 2>/dev/null
  # whatever is left in the cgroup (a cat of the loop) is ours: by pid
  local p
  for _ in $(seq 50); do
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill "$p" 2>/dev/null; done
    rmdir "$cg" 2>/dev/null && break
    sleep 0.1 # retry pace of the cleanup (the killed cat may take a moment)
  done
  (exit "$rc")
  mb__cleanup
}
trap psi_exit EXIT

MB_INTERVAL=10 # regular records are rare: an early one is the trigger's
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
gm_meminfo 2000000 500000
gm_vmstat 0 0 0 0
# 20 ms of "some" stall in a 2 s window: a window any process may set
# (without CAP_SYS_RESOURCE the kernel takes only multiples of 2 s) and a
# threshold the thrash passes on a loaded 2-core machine.
gm_conf "$MB_DIR/collectd.conf" "PressurePath \"/proc/pressure/memory\"" \
  "StallThreshold 0.02" "StallWindow 2" "UrgentMinInterval 1"
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no first record"
mb_assert "trigger armed" mb_log_has 'guestmem: urgent check: PSI trigger "some 20000 2000000" armed on /proc/pressure/memory'
mb_assert "urgent check uses the trigger" mb_log_has 'urgent check on \(PSI trigger\)'
some0=$(gm_field psi_some_total_us) || mb_fail "no psi_some_total_us in the record"

data=$MB_DIR/thrash.dat
dd if=/dev/urandom of="$data" bs=1M count=64 status=none
sync "$data" # clean pages: reclaim can drop them, re-reads refault
# the file's pages were charged where dd ran: drop them so that the
# cgroup's reads charge (and thrash) its own
python3 -c 'import os,sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$data"
n0=$(grep -c 'urgent record published' "$MB_CD_LOG" || true)
t0=$(mb_now_ms)
bash -c 'echo $$ >"$1/cgroup.procs"; while :; do cat "$2" >/dev/null; done' thrash "$cg" "$data" &
thrash_pid=$!
fired() { [ "$(grep -c 'urgent record published (memory stall: PSI trigger' "$MB_CD_LOG")" -gt "$n0" ]; }
mb_wait_for 60 fired || mb_fail "no urgent record within 60 s of real memory stall (pressure now: $(head -1 /proc/pressure/memory))"
t1=$(mb_now_ms)
kill "$thrash_pid" 2>/dev/null
wait "$thrash_pid" 2>/dev/null || true
thrash_pid=""
mb_log "MEASURED: PSI trigger -> urgent record $((t1 - t0)) ms after the thrash started (trigger some 20 ms / 2 s window)"
mb_wait_for 5 bash -c "xenstore-read -R $GM_DOM/data/membal/stats | grep -qx 'urgent 1'" ||
  mb_fail "the urgent record is not in xenstore"
some1=$(gm_field psi_some_total_us)
mb_assert "urgent record shows more stall: psi_some_total_us $some0 -> $some1" test "$some1" -gt "$some0"
mb_assert "no vmstat-based urgent (the vmstat file never changed)" bash -c "! grep -q 'urgent record published (swap' $MB_CD_LOG"
mb_assert "collectd alive" mb_collectd_alive
