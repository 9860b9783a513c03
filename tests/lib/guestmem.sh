# shellcheck shell=bash
# Helpers for the guestmem integration tests; source after harness.sh.
# The guest's /proc files are plain files in $MB_DIR that the tests rewrite
# (atomically, as the kernel's files never show half a content).

MB_RECORD_DUMP=${MB_RECORD_DUMP:-$MEMBAL_BUILD_DIR/tests/lib/mb-record-dump}
GM_DOMID=${GM_DOMID:-5}
GM_DOM=/local/domain/$GM_DOMID
GM_MEMINFO=$MB_DIR/meminfo
GM_VMSTAT=$MB_DIR/vmstat
GM_PRESSURE=$MB_DIR/pressure-memory

[ -x "$MB_RECORD_DUMP" ] || mb_fail "$MB_RECORD_DUMP not built"
[ -f "$MB_PLUGINDIR/guestmem.so" ] || mb_fail "$MB_PLUGINDIR/guestmem.so not built"

# gm_replace <file>: stdin becomes the file's content, atomically.
gm_replace() {
  cat >"$1.new"
  mv -f "$1.new" "$1"
}

# gm_meminfo <total_kib> <free_kib> [swapfree_kib]: a realistic meminfo.
gm_meminfo() {
  local total=$1 free=$2 swapfree=${3:-1040000}
  gm_replace "$GM_MEMINFO" <<EOF
MemTotal:       $(printf %8d "$total") kB
MemFree:        $(printf %8d "$free") kB
MemAvailable:   $(printf %8d $((free + 100000))) kB
Buffers:           12000 kB
Cached:           200000 kB
SwapCached:          100 kB
Active:           300000 kB
Inactive:         150000 kB
Active(anon):     200000 kB
Inactive(anon):    10000 kB
Active(file):     100000 kB
Inactive(file):   140000 kB
Unevictable:           0 kB
Mlocked:               0 kB
SwapTotal:       1048572 kB
SwapFree:       $(printf %8d "$swapfree") kB
Dirty:               120 kB
AnonPages:        210000 kB
Shmem:              4000 kB
Slab:              60000 kB
SReclaimable:      30000 kB
SUnreclaim:        30000 kB
KernelStack:        3000 kB
PageTables:         5000 kB
Committed_AS:     700000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
EOF
}

# gm_vmstat <pswpin> <pswpout> <pgmajfault> <pgfault> [refault_anon]
#   [refault_file]
gm_vmstat() {
  gm_replace "$GM_VMSTAT" <<EOF
nr_free_pages 100000
nr_zone_inactive_anon 2500
pgpgin 123456
pgpgout 654321
pswpin $1
pswpout $2
pgfault $4
pgmajfault $3
workingset_nodes -3
workingset_refault_anon ${5:-0}
workingset_refault_file ${6:-0}
EOF
}

# gm_swap_until <timeout_s> <command...>: the guest swaps in fast (vmstat
# as gm_vmstat <GM_PSWPIN> 20 30 40, pswpin growing by 5000 pages every
# 0.1 s from GM_PSWPIN, which the caller sets) until the command succeeds;
# returns 1 on timeout. A burst written once is seen as a rate only when
# guestmem's urgent thread already took a reading of vmstat to compare with
# (its first poll is that reading), which a slow machine may not have done
# yet; sustained swapping does not depend on when it polls.
gm__swap_step() {
  GM_PSWPIN=$((GM_PSWPIN + 5000))
  gm_vmstat "$GM_PSWPIN" 20 30 40
  "$@"
}
gm_swap_until() {
  local timeout=$1
  shift
  mb_wait_for "$timeout" gm__swap_step "$@"
}

# gm_pressure <some_avg10> <some_total_us> <full_avg10> <full_total_us>:
# a /proc/pressure/memory (averages as the kernel prints them, "1.25").
gm_pressure() {
  gm_replace "$GM_PRESSURE" <<EOF
some avg10=$1 avg60=0.00 avg300=0.00 total=$2
full avg10=$3 avg60=0.00 avg300=0.00 total=$4
EOF
}

# gm_conf <conf> [option lines...]: collectd.conf loading guestmem on the
# prepared files and this test's domain; extra options go into its block.
gm_conf() {
  local conf=$1
  shift
  {
    # a write plugin, so that values have somewhere to go (and collectd
    # does not log "no write plugins" for every value)
    echo "LoadPlugin csv"
    echo "<Plugin csv>"
    echo "  DataDir \"$MB_DIR/csv\""
    echo "</Plugin>"
    echo "PluginDir \"$MB_PLUGINDIR\""
    echo "LoadPlugin guestmem"
    echo "<Plugin guestmem>"
    echo "  MeminfoPath \"$GM_MEMINFO\""
    echo "  VmstatPath \"$GM_VMSTAT\""
    # a plain file: no PSI trigger, so the urgent check is the vmstat poll
    # the tests drive (a test writes it with gm_pressure or names another)
    echo "  PressurePath \"$GM_PRESSURE\""
    echo "  DomainPath \"$GM_DOM\""
    echo "  XenstorePath \"${XENSTORED_PATH:-$MB_DIR/xenstored/socket}\""
    local l
    for l in "$@"; do echo "  $l"; done
    echo "</Plugin>"
  } | mb_collectd_conf "$conf"
}

# gm_bytes_eq <bytes as printed by collectdctl> <kib>: equal within
# collectdctl's 7 significant digits.
gm_bytes_eq() {
  awk -v g="$1" -v k="$2" 'BEGIN { d = g - k * 1024; if (d < 0) d = -d; exit !(d <= k * 1024 * 1e-6) }'
}

# gm_record: the current record as parsed by the policy parser.
gm_record() {
  xenstore-read -R "$GM_DOM/data/membal/stats" 2>/dev/null | "$MB_RECORD_DUMP"
}

# gm_field <key>: one field of the current record.
gm_field() {
  gm_record | sed -n "s/^$1 //p" | grep .
}

# gm_seq_above <n>: the record's seq is greater than n.
gm_seq_above() {
  local s
  s=$(gm_field seq) || return 1
  [ "$s" -gt "$1" ]
}
