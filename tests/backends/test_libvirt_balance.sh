#!/usr/bin/env bash
# membal with Backend "libvirt" in the real collectd, against libvirt's test
# driver (tests/data/libvirt-host.xml: web, db, batch with virtio balloons,
# legacy without one; 16 GiB host):
#  - vmmem dispatches the host, each domain's memory and the balloon stats
#    (available -> guest_MemTotal, ...) exactly as libvirt reports them;
#  - the stats period is switched on where it was 0 (web, batch), logged,
#    and left alone where it was set (db);
#  - `collectdctl flush plugin=membal` runs a round on a contended host:
#    idle guests shrink, each keeps its working set, targets reach libvirt
#    (seen through membal's own connection in a second, stale round);
#  - the balloon-less domain is never shrunk; the sum of targets stays in
#    the pool;
#  - second collectd on test:///default: per-node host memory, as libvirt
#    reports it, dispatched as node<N>_total/free.
# The URI reaches the plugins through their URI option, in the second part
# through LIBVIRT_DEFAULT_URI (libvirt's own variable, honoured by the
# backend when no URI is configured).
. "${MEMBAL_SOURCE_DIR:?}/tests/lib/harness.sh"

command -v virsh >/dev/null || mb_skip "virsh (libvirt-clients) missing"
[ -f "$MB_PLUGINDIR/vmmem.so" ] && [ -f "$MB_PLUGINDIR/membal.so" ] ||
  mb_skip "vmmem/membal plugins not built"
# The plugins carry the libvirt backend only when libvirt was found.
# (grep without -q reads all of ldd's output: with pipefail, -q could
# close the pipe early and the SIGPIPE of ldd would read as "no libvirt")
if ! ldd "$MB_PLUGINDIR/vmmem.so" | grep libvirt >/dev/null; then
  mb_skip "plugins built without the libvirt backend"
fi

hostxml=$MEMBAL_SOURCE_DIR/tests/data/libvirt-host.xml
uri="test://$hostxml"
MiB=1024

# What libvirt itself says about the host file (a private connection of
# virsh: the same initial state collectd's connection starts from).
virsh -q -c "$uri" "dommemstat web; dominfo web; nodeinfo; list" >"$MB_DIR/virsh0.out"
kib_of() { sed -n "s/^$1 \([0-9]*\)$/\1/p" "$MB_DIR/virsh0.out" | head -n1; }
web_avail=$(kib_of available)
web_unused=$(kib_of unused)
web_usable=$(kib_of usable)
web_cache=$(kib_of disk_caches)
web_cur=$(sed -n 's/^Used memory: *\([0-9]*\) KiB/\1/p' "$MB_DIR/virsh0.out")
web_max=$(sed -n 's/^Max memory: *\([0-9]*\) KiB/\1/p' "$MB_DIR/virsh0.out")
host_kib=$(sed -n 's/^Memory size: *\([0-9]*\) KiB/\1/p' "$MB_DIR/virsh0.out")
[ -n "$web_avail" ] && [ -n "$web_cur" ] && [ -n "$host_kib" ] ||
  mb_fail "virsh gave no figures: $(cat "$MB_DIR/virsh0.out")"
declare -A cur0 max0 ws0
for d in web db batch legacy; do
  virsh -q -c "$uri" "dominfo $d; dommemstat $d" >"$MB_DIR/virsh-$d.out"
  cur0[$d]=$(sed -n 's/^Used memory: *\([0-9]*\) KiB/\1/p' "$MB_DIR/virsh-$d.out")
  max0[$d]=$(sed -n 's/^Max memory: *\([0-9]*\) KiB/\1/p' "$MB_DIR/virsh-$d.out")
  a=$(sed -n 's/^available \([0-9]*\)$/\1/p' "$MB_DIR/virsh-$d.out")
  u=$(sed -n 's/^usable \([0-9]*\)$/\1/p' "$MB_DIR/virsh-$d.out")
  ws0[$d]=$((${a:-0} - ${u:-0}))
done
reserve=$((10 * 1024 * MiB))
pool=$((host_kib - reserve))

write_conf() { # <file> <uri or "">, membal options from stdin
  local extra uriline=""
  extra=$(cat)
  [ -z "$2" ] || uriline="URI \"$2\""
  mb_collectd_conf "$1" <<EOF
LoadPlugin rrdtool
<Plugin rrdtool>
  DataDir "$MB_DIR/rrd"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "libvirt"
  $uriline
  StaleAfter 30
</Plugin>
LoadPlugin membal
<Plugin membal>
  Backend "libvirt"
  $uriline
$extra
</Plugin>
EOF
}

gauge() { mb_getval "$MB_HOSTNAME/$1"; }
# gauge_is <identifier> <value>: equal, to the 7 significant digits
# collectdctl prints (%e): within 1e-6 of the value, exact for small ones.
gauge_is() {
  local v
  v=$(gauge "$1") || return 1
  awk -v a="$v" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d;
    exit !(d <= 1e-6 * (b < 0 ? -b : b)) }'
}
kib() { awk -v b="$(gauge "$1")" 'BEGIN { printf "%d\n", b / 1024 }'; }

write_conf "$MB_DIR/collectd.conf" "$uri" <<EOF
  Policy "cagma"
  Period 3600
  StaleAfter 30
  Reserve "10GiB"
EOF
mb_collectd_start "$MB_DIR/collectd.conf"

# ---- what vmmem reads through libvirt
mb_wait_for 10 gauge "vmmem-web/memory-guest_MemTotal" >/dev/null ||
  mb_fail "vmmem dispatched no balloon stats for web"
# web's sample_age grows with every read (libvirt's test driver never
# changes the stats, so seq stays 1): the reads' progress, checked below
age() { mb_getval "$MB_HOSTNAME/vmmem-web/duration-sample_age" seconds; }
age0=$(age) || mb_fail "no sample_age of web"
mb_assert "host_total = libvirt's node memory" gauge_is "vmmem/memory-host_total" $((host_kib * 1024))
mb_assert "web current" gauge_is "vmmem-web/memory-current" $((web_cur * 1024))
mb_assert "web max" gauge_is "vmmem-web/memory-max" $((web_max * 1024))
mb_assert "web MemTotal = available" gauge_is "vmmem-web/memory-guest_MemTotal" $((web_avail * 1024))
mb_assert "web MemFree = unused" gauge_is "vmmem-web/memory-guest_MemFree" $((web_unused * 1024))
mb_assert "web MemAvailable = usable" gauge_is "vmmem-web/memory-guest_MemAvailable" $((web_usable * 1024))
mb_assert "web Cached = disk_caches" gauge_is "vmmem-web/memory-guest_Cached" $((web_cache * 1024))
mb_assert "web seq 1" gauge_is "vmmem-web/count-sample_seq" 1
mb_assert "four domains" gauge_is "vmmem/count-domains" 4
mb_wait_for 5 gauge "vmmem-legacy/memory-current" >/dev/null || mb_fail "legacy not dispatched"
if gauge "vmmem-legacy/memory-guest_MemTotal" >/dev/null 2>&1; then
  mb_fail "legacy has no balloon, yet a guest sample was dispatched"
fi

# ---- stats period: switched on (and said) where 0, left where set
mb_assert "period set on web, logged" mb_log_has "vmmem: libvirt: domain web: balloon stats period was 0 \(off\); set to 5 s"
mb_assert "period set on batch, logged" mb_log_has "vmmem: libvirt: domain batch: balloon stats period was 0"
if mb_log_has "domain db: balloon stats period"; then mb_fail "db's period 10 was touched"; fi
if mb_log_has "domain legacy: balloon stats period"; then mb_fail "legacy has no balloon, yet its period was set"; fi

# vmmem read on since the first sample (seen on web's sample_age; the
# checks above took that long already as a rule): nothing changes without
# a round. No longer wait: the round below needs fresh samples, and they
# go stale StaleAfter (30 s, generous for a loaded machine; checked before
# the flush) after vmmem first saw them.
age_moved() { awk -v a="$age0" -v b="$(age)" 'BEGIN { exit !(b > a) }'; }
mb_wait_for 10 age_moved || mb_fail "vmmem did not read on (web's sample_age stays $age0)"
mb_assert "no round before the flush: web seq still 1" gauge_is "vmmem-web/count-sample_seq" 1
mb_assert "web current unchanged" gauge_is "vmmem-web/memory-current" $((web_cur * 1024))
mb_assert "web's sample still fresh before the first round" gauge_is "vmmem-web/bool-sample_stale" 0

# ---- a round on a contended host: the guests hold more than the pool, so
# membal must take memory back; vmmem then reads the new sizes from libvirt
mb_collectdctl flush plugin=membal
mb_wait_for 30 gauge "membal-legacy/memory-target" >/dev/null || mb_fail "membal dispatched no targets"
# the round's other values may still be on their way to collectd's cache
mb_wait_for 30 gauge membal/count-round >/dev/null || mb_fail "membal dispatched no count-round"
mb_wait_same_dispatch "$MB_HOSTNAME/membal/count-round" \
  "$MB_HOSTNAME"/membal-{web,db,batch,legacy}/memory-target "$MB_HOSTNAME/membal-legacy/gauge-reason"
sum=0 sum_cur=0 shrunk=""
for d in web db batch legacy; do
  t=$(kib "membal-$d/memory-target")
  eval "t_$d=$t"
  sum=$((sum + t))
  sum_cur=$((sum_cur + cur0[$d]))
  [ "$t" -lt "${cur0[$d]}" ] && shrunk+="$d "
done
mb_log "targets after one round (MiB): web $((t_web / MiB)) db $((t_db / MiB)) batch $((t_batch / MiB)) legacy $((t_legacy / MiB)); held before $((sum_cur / MiB)), pool $((pool / MiB))"
mb_assert "the guests held more than the pool ($sum_cur > $pool KiB)" test "$sum_cur" -gt "$pool"
mb_assert "sum of targets $sum KiB within pool $pool KiB" test "$sum" -le "$pool"
[ -n "$shrunk" ] || mb_fail "nothing shrank on a contended host"
for d in web db batch; do
  t=$(eval echo "\$t_$d")
  # cagma keeps at least the working set (available - usable)
  mb_assert "$d kept its working set ($t >= ${ws0[$d]} KiB)" test "$t" -ge "${ws0[$d]}"
  mb_assert "$d within its max ($t <= ${max0[$d]} KiB)" test "$t" -le "${max0[$d]}"
done
mb_assert "balloon-less legacy not shrunk ($t_legacy >= ${cur0[legacy]})" test "$t_legacy" -ge "${cur0[legacy]}"
mb_assert "legacy's reason is stale-frozen (5)" gauge_is "membal-legacy/gauge-reason" 5
for d in $shrunk; do
  mb_assert "the change of $d is logged with its reason" \
    mb_log_has "membal: $d \(domid [0-9]+\) target [0-9.]+ MiB -> [0-9.]+ MiB: shrink-idle"
done
if mb_log_has "setting the target of .* failed"; then mb_fail "an actuation failed: $(grep 'failed' "$MB_CD_LOG")"; fi

# ---- did the targets reach libvirt? Each plugin links its own copy of the
# backend, hence holds its own connection, and the test driver keeps a
# host file's state per connection: vmmem keeps seeing the file's sizes,
# membal's connection holds the new ones. Read membal's side: once the
# samples are stale, a guest may not be given less than what libvirt says
# it holds (current), so a second round leaves every shrunk target where it
# is only if membal's libvirt reports the shrunk size as current. Had the
# actuation not reached libvirt, current would still be the old size and
# the target would go back up to it (stale-frozen).
mb_wait_for 60 gauge_is "vmmem-web/bool-sample_stale" 1 || mb_fail "web's sample never went stale"
changes_before=$(grep -c "membal: .* target .* MiB -> " "$MB_CD_LOG")
# count-round (gauge), not derive-rounds: GETVAL shows a derive as a rate
before=$(mb_getval "$MB_HOSTNAME/membal/count-round" 2>/dev/null || echo 0)
mb_collectdctl flush plugin=membal
round2() { awk -v a="$(mb_getval "$MB_HOSTNAME/membal/count-round" 2>/dev/null || echo 0)" -v b="$before" 'BEGIN { exit !(a > b) }'; }
mb_wait_for 30 round2 || mb_fail "no second round"
for d in $shrunk; do
  mb_wait_same_dispatch "$MB_HOSTNAME/membal/count-round" \
    "$MB_HOSTNAME/membal-$d/gauge-reason" "$MB_HOSTNAME/membal-$d/memory-target"
done
for d in $shrunk; do
  mb_assert "$d frozen in the stale round" gauge_is "membal-$d/gauge-reason" 5
  t=$(eval echo "\$t_$d")
  mb_assert "$d's target stays at what libvirt now holds" gauge_is "membal-$d/memory-target" $((t * 1024))
done
mb_assert_eq "$changes_before" "$(grep -c "membal: .* target .* MiB -> " "$MB_CD_LOG")" "target changes logged in the stale round"
if mb_log_has "membal: BUG"; then mb_fail "membal logged a sum violation"; fi
if mb_log_has "setting the target of .* failed"; then mb_fail "an actuation failed: $(grep 'failed' "$MB_CD_LOG")"; fi
# libvirt's own error printing is silenced
if grep -q "libvirt: error" "$MB_CD_DIR/collectd.stderr"; then
  mb_fail "libvirt printed errors on stderr"
fi
mb_assert "target RRD of web" test -s "$MB_DIR/rrd/$MB_HOSTNAME/membal-web/memory-target.rrd"
mb_collectd_stop

# ---- NUMA: per-node host memory on test:///default (two cells)
# No URI option: the backend takes libvirt's own LIBVIRT_DEFAULT_URI.
export LIBVIRT_DEFAULT_URI=test:///default
cells=$(virsh -q -c test:///default "freecell --all" | grep -c '^ *[0-9]*:')
[ "$cells" -ge 2 ] || mb_fail "test:///default shows $cells cells"
free0=$(virsh -q -c test:///default "freecell 0" | sed -n 's/^ *0: *\([0-9]*\) KiB/\1/p')
total0=$(virsh -q -c test:///default capabilities | tr -d '\n' |
  sed -n "s:.*<cell id='0'> *<memory unit='KiB'>\([0-9]*\)</memory>.*:\1:p")
write_conf "$MB_DIR/collectd-numa.conf" "" <<EOF
  DryRun true
EOF
mb_collectd_start "$MB_DIR/collectd-numa.conf"
mb_wait_for 10 gauge "vmmem/memory-node0_total" >/dev/null || mb_fail "no node0_total from vmmem"
mb_assert "node0_total = libvirt's cell 0 ($total0 KiB)" gauge_is "vmmem/memory-node0_total" $((total0 * 1024))
mb_assert "node0_free = libvirt's free of cell 0 ($free0 KiB)" gauge_is "vmmem/memory-node0_free" $((free0 * 1024))
mb_wait_for 3 gauge "vmmem/memory-node1_total" >/dev/null || mb_fail "no node1_total from vmmem"
mb_collectd_stop

# ---- the shipped drop-in collectd.conf.d/kvm.conf, pointed at the host
# file: loads, reads the domains, balances on a flush. Only paths change
# (RRD under the test directory, our build's
# plugins with rrdtool loaded before them from collectd's directory; its
# unixsock block gives way to the harness's own).
dropin=$MEMBAL_SOURCE_DIR/collectd.conf.d/kvm.conf
mb_collectd_conf "$MB_DIR/collectd-dropin.conf" < <(
  sed -e "s|qemu:///system\"|$uri\"|" \
    -e "s|/var/lib/collectd/rrd|$MB_DIR/rrd-dropin|" \
    -e "/^LoadPlugin unixsock/d" -e "/^<Plugin unixsock>/,/^<\/Plugin>/d" \
    -e "/^LoadPlugin rrdtool\$/d" \
    -e "s|^Include \"/usr/share/membal/load/vmmem.conf\"|LoadPlugin rrdtool\nPluginDir \"$MB_PLUGINDIR\"\n&|" \
    -e "s|\"/usr/share/membal/load/|\"$MEMBAL_SOURCE_DIR/collectd.conf.d/load/|" "$dropin"
)
grep -q "URI \"$uri\"" "$MB_DIR/collectd-dropin.conf" || mb_fail "drop-in has no URI line to point at the test host"
mb_collectd_start "$MB_DIR/collectd-dropin.conf"
mb_wait_for 10 gauge "vmmem-db/memory-guest_MemTotal" >/dev/null || mb_fail "drop-in: vmmem read nothing"
mb_collectdctl flush plugin=membal
mb_wait_for 5 gauge "membal-db/memory-target" >/dev/null || mb_fail "drop-in: membal made no round"
mb_assert "drop-in: membal runs cagma on libvirt" mb_log_has "membal: policy cagma, backend libvirt"
mb_collectd_stop

# ---- an unreachable URI: said (naming it), collectd keeps running
write_conf "$MB_DIR/collectd-bad.conf" "test:///nonexistent/membal-host.xml" <<EOF
  DryRun true
EOF
mb_conf_ticks "$MB_DIR/collectd-bad.conf" # vmmem dispatches nothing here
mb_collectd_start "$MB_DIR/collectd-bad.conf"
mb_wait_for 5 mb_log_has "vmmem: libvirt: cannot connect to test:///nonexistent/membal-host.xml" ||
  mb_fail "no log line naming the unreachable URI"
mb_wait_ticks 2 # two more read intervals with the unreachable URI
mb_collectd_alive || mb_fail "collectd died on an unreachable libvirt"
mb_collectd_stop
mb_log "PASS"
