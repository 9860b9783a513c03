#!/usr/bin/env bash
# Benchmark of vmmem on the sim backend with a real xenstored (not a test).
#
#   tests/vmmem/vmmem-bench.sh [domains ...]        default: 10 100 1000
#
# 1. vmmem-bench (tests/vmmem/vmmem-bench.c) times R rounds of what vmmem's read
#    callback asks the backend (host + list: every domain's hypervisor node
#    and guest record) and counts xenstore requests per round; every guest
#    publishes a new record between rounds.
# 2. The real collectd with vmmem (Interval 1, nothing else loaded but
#    logfile at level warning and unixsock; no write plugin, so the figure
#    is vmmem + collectd's value cache, without rrdtool's own cost) runs 10 s
#    on the same store: its CPU time
#    (/proc/<pid>/stat) per read round, which adds collectd's own cost of
#    taking ~20 values per domain into its cache.
#
# Builds without sanitizers in build/bench (MEMBAL_BENCH_BUILD overrides).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${MEMBAL_BENCH_BUILD:-$src/build/bench}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000)

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMEMBAL_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target vmmem-bench xsshim vmmem >/dev/null

export MEMBAL_BUILD_DIR=$build MEMBAL_SOURCE_DIR=$src MB_TEST_NAME=vmmem-bench
. "$src/tests/lib/harness.sh"
mb_xenstored_start

echo "== backend rounds (vmmem-bench, 20 rounds each)"
for n in "${sizes[@]}"; do
  "$build/tests/vmmem/vmmem-bench" -n "$n" -r 20 -x "$XENSTORED_PATH" -p "$MB_XS_PID"
done
n=${sizes[-1]}
"$build/tests/vmmem/vmmem-bench" -n "$n" -r 20 -x "$XENSTORED_PATH" -p "$MB_XS_PID" -T

cpu() { # utime+stime of a pid, in clock ticks
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
echo "== whole collectd with vmmem, $n domains, Interval 1"
mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
  # in the first run records do not advance: keep dispatching them
  StaleAfter 100000
</Plugin>
EOF
# Without a write plugin collectd logs "Available write targets: [none]" at
# info level for every value: that would be the figure measured.
sed -i 's/LogLevel info/LogLevel warning/' "$MB_DIR/collectd.conf"
"$build/tests/vmmem/vmmem-bench" -n "$n" -r 1 -x "$XENSTORED_PATH" >/dev/null
mb_collectd_start "$MB_DIR/collectd.conf"
hz=$(getconf CLK_TCK)
secs=10
measure() { # measure <what>: collectd's and xenstored's CPU over $secs s
  local c0 x0 c1 x1 values
  c0=$(cpu "$MB_CD_PID")
  x0=$(cpu "$MB_XS_PID")
  sleep "$secs"
  c1=$(cpu "$MB_CD_PID")
  x1=$(cpu "$MB_XS_PID")
  values=$(mb_collectdctl listval | wc -l)
  awk -v c=$((c1 - c0)) -v x=$((x1 - x0)) -v hz="$hz" -v s="$secs" -v v="$values" -v n="$n" -v w="$1" 'BEGIN {
    printf "%s: collectd CPU/round %.1f ms (vmmem read + watch threads, collectd core taking %d values), xenstored CPU/round %.1f ms; %d domains, %d rounds\n",
      w, c / hz / s * 1000, v, x / hz / s * 1000, n, s }'
}
sleep 3 # start-up and first rounds
measure "records standing still"
# every guest publishes once a second: the watch thread wakes for each
"$build/tests/vmmem/vmmem-bench" -n "$n" -x "$XENSTORED_PATH" -P $((secs + 5)) &
pub=$!
sleep 3
measure "every guest publishing each second"
wait "$pub"
mb_log_has "vmmem: .*(error|rejected)" && grep -E "vmmem: " "$MB_CD_LOG" | tail -3
exit 0
