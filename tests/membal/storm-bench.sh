#!/usr/bin/env bash
# Benchmark (not a test): what a guest that rewrites its record as urgent
# RATE times a second costs dom0's collectd.
#
#   tests/membal/storm-bench.sh [rate] [seconds] [domains]   default: 1000 20 10
#
# A real xenstored (under the test shim) holds a simulated host with
# `domains` guests (tests/vmmem/vmmem-bench.c populates it); the real collectd
# runs vmmem and membal on the sim backend plus rrdtool, at collectd's
# default Interval 10 (membal's Period 30 s, UrgentInterval 1 s: the
# defaults). First collectd's CPU is measured over `seconds` with every guest
# publishing once a second; then guest 1 also writes `rate` urgent records a
# second (vmmem-bench -U) and it is measured again over the same time. CPU
# is utime + stime from /proc/<pid>/stat, in % of one core; membal's rounds
# are counted from its count-round value.
#
# Builds without sanitizers in build/bench (MEMBAL_BENCH_BUILD overrides).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${MEMBAL_BENCH_BUILD:-$src/build/bench}
rate=${1:-1000}
secs=${2:-20}
n=${3:-10}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMEMBAL_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target vmmem-bench xsshim vmmem membal >/dev/null

export MEMBAL_BUILD_DIR=$build MEMBAL_SOURCE_DIR=$src MB_TEST_NAME=storm-bench
. "$src/tests/lib/harness.sh"
mb_xenstored_start
"$build/tests/vmmem/vmmem-bench" -n "$n" -r 1 -x "$XENSTORED_PATH" >/dev/null

MB_INTERVAL=10 mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
LoadPlugin rrdtool
<Plugin rrdtool>
  DataDir "$MB_DIR/rrd"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
</Plugin>
LoadPlugin membal
<Plugin membal>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
</Plugin>
EOF
sed -i 's/LogLevel info/LogLevel warning/' "$MB_DIR/collectd.conf"
mb_collectd_start "$MB_DIR/collectd.conf"

cpu() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
round() {
  local v
  v=$(mb_getval "$MB_HOSTNAME/membal/count-round" 2>/dev/null) || v=0
  awk -v v="$v" 'BEGIN { printf "%d\n", v }'
}
hz=$(getconf CLK_TCK)
# measure <what> <seconds>: collectd's and xenstored's CPU, membal's rounds
measure() {
  local c0 x0 r0 c1 x1 r1 t0 t1
  c0=$(cpu "$MB_CD_PID")
  x0=$(cpu "$MB_XS_PID")
  r0=$(round)
  t0=$(date +%s%N)
  sleep "$2"
  c1=$(cpu "$MB_CD_PID")
  x1=$(cpu "$MB_XS_PID")
  t1=$(date +%s%N)
  sleep 1.1 # the last round's values go out within a second
  r1=$(round)
  awk -v c=$((c1 - c0)) -v x=$((x1 - x0)) -v hz="$hz" -v ns=$((t1 - t0)) \
    -v r=$((r1 - r0)) -v w="$1" -v n="$n" 'BEGIN { s = ns / 1e9
    printf "%s: collectd CPU %.1f %% of one core, xenstored %.1f %%, membal rounds %d in %.1f s (%.2f/s); %d guests\n",
      w, c / hz / s * 100, x / hz / s * 100, r, s, r / s, n }'
}

"$build/tests/vmmem/vmmem-bench" -n "$n" -x "$XENSTORED_PATH" -P $((2 * secs + 10)) >"$MB_DIR/quiet.out" &
quiet=$!
sleep 3 # start-up, first read
measure "every guest publishing once a second" "$secs"
kill "$quiet" 2>/dev/null || true
wait "$quiet" 2>/dev/null || true

"$build/tests/vmmem/vmmem-bench" -n "$n" -x "$XENSTORED_PATH" -P $((secs + 3)) -U "$rate" >"$MB_DIR/storm.out" &
storm=$!
sleep 1
measure "guest1 writing $rate urgent records/s" "$secs"
wait "$storm"
cat "$MB_DIR/storm.out"
grep -E "membal: |vmmem: " "$MB_CD_LOG" | grep -Ev "^\S+ \S+ \[info\]" | tail -3 || true
mb_collectd_alive || mb_fail "collectd died"
exit 0
