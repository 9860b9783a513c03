#!/usr/bin/env bash
# Measures the CPU a collectd running only guestmem uses over 30 s (real
# /proc files, Interval 10, a real xenstored), summed over its threads from
# /proc/<pid>/task/*/schedstat. Not a test: the figure of README's guestmem
# section. Usage, from a Release build directory:
#   MEMBAL_BUILD_DIR=$PWD bash ../../tests/lib/guestmem_cpu.sh "<guestmem option line>"
# e.g. "UrgentPollInterval 0.2" (PSI trigger where the kernel has it),
# 'PressurePath ""' (vmstat polling), "UrgentPollInterval 0" (urgent off).
. "$(dirname "$0")/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"
MB_INTERVAL=10
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
mb_collectd_conf "$MB_DIR/collectd.conf" <<CONF
PluginDir "$MB_PLUGINDIR"
LoadPlugin guestmem
<Plugin guestmem>
  DomainPath "$GM_DOM"
  XenstorePath "$XENSTORED_PATH"
  ${1:-}
</Plugin>
CONF
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no record"
grep -E "urgent check" "$MB_CD_LOG" | sed 's/.*guestmem:/guestmem:/' >&2
cpu_ns() { cat /proc/"$MB_CD_PID"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
a=$(cpu_ns)
sleep 30
b=$(cpu_ns)
echo "CPU over 30 s: $(((b - a) / 1000)) us (${1:-defaults})"
