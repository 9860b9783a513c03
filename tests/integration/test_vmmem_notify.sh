#!/usr/bin/env bash
# An urgent record (and a record whose swap counters rise fast) reaches a
# notification consumer in collectd well before the next read interval:
# vmmem's watch thread sees the xenstore change and dispatches at once.
# Consumer: collectd's stock exec plugin (NotificationExec); the logfile
# plugin logs the same notification. Prints the measured latency.
. "$(dirname "$0")/vmmem_lib.bash"

mb_xenstored_start
vmt_host 8388608 1048576
vmt_dom 0 Domain-0 1048576 1048576
vmt_dom 1 web 2097152 4194304
vmt_record 1 1 2000000 300000

# exec refuses to run programs as root: as root the consumer runs as nobody
# and writes where nobody may; otherwise as ourselves.
runas=$(id -un)
[ "$(id -u)" -ne 0 ] || runas=nobody
chmod 711 "$MB_DIR"
nd=$MB_DIR/notif
mkdir -p "$nd"
chmod 777 "$nd"
cat >"$nd/consume.sh" <<EOF
#!/bin/sh
# one file per notification: arrival time (ns), then what exec wrote
t=\$(date +%s%N)
f=$nd/n.\$t.\$\$
{ echo "arrived_ns \$t"; cat; } >"\$f.tmp" && mv "\$f.tmp" "\$f"
EOF
chmod 755 "$nd/consume.sh"

# A read interval of 30 s: a notification within 1 s cannot come from the
# read callback.
MB_INTERVAL=30 vmt_conf "$MB_DIR/collectd.conf" <<EOF
  SwapRateThreshold 100
EOF
cat >>"$MB_DIR/collectd.conf" <<EOF
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin exec
<Plugin exec>
  NotificationExec "$runas" "$nd/consume.sh"
</Plugin>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
vmt_expect 10 1 web count-sample_seq
sleep 1 # let the watch thread register its watch

nnotif() { find "$nd" -name 'n.*' ! -name '*.tmp' | wc -l; }
notif_ge() { [ "$(nnotif)" -ge "$1" ]; }
# latency_of <file> <t0_ns>: end-to-end ms, and ms until vmmem created it
report() {
  local f=$1 t0=$2 arrived created
  arrived=$(sed -n 's/^arrived_ns //p' "$f")
  created=$(sed -n 's/^Time: //p' "$f")
  awk -v a="$arrived" -v c="$created" -v t="$t0" 'BEGIN {
    printf "%.1f %.1f\n", (a - t) / 1e6, (c * 1e9 - t) / 1e6 }'
}

# 1. urgent record
t0=$(date +%s%N)
vmt_record 1 2 2000000 300000 1
mb_wait_for 5 notif_ge 1 || mb_fail "no notification for the urgent record"
f=$(find "$nd" -name 'n.*' ! -name '*.tmp' | head -1)
read -r e2e created < <(report "$f" "$t0")
mb_log "urgent record -> notification: ${e2e} ms end to end (consumer ran), ${created} ms until vmmem dispatched it"
awk -v l="$e2e" 'BEGIN { exit !(l < 1000) }' || mb_fail "latency ${e2e} ms >= 1000 ms"
grep -q '^Severity: WARNING' "$f" || mb_fail "severity not WARNING: $(cat "$f")"
grep -q '^Plugin: vmmem' "$f" || mb_fail "plugin not vmmem"
grep -q '^PluginInstance: web' "$f" || mb_fail "plugin_instance not the domain name"
grep -q '^Type: vmmem_sample' "$f" || mb_fail "type not vmmem_sample"
grep -q '^TypeInstance: urgent' "$f" || mb_fail "type_instance not urgent"
grep -q 'domain web (1): urgent record seq 2' "$f" || mb_fail "message: $(tail -1 "$f")"
grep -q '^vmmem:domid: 1$' "$f" || mb_fail "meta vmmem:domid missing"
# the raw record rides along (exec prints it as it is, lines and all)
grep -q '^vmmem:record: membal 1$' "$f" || mb_fail "meta vmmem:record missing"
grep -qx 'urgent 1' "$f" || mb_fail "vmmem:record does not hold the urgent record"
mb_log "ok: notification fields: $(grep -E '^(Plugin|Type|TypeInstance):' "$f" | tr '\n' ' ')"
mb_wait_for 3 mb_log_has 'Notification: severity = WARNING.*plugin = vmmem.*type_instance = urgent' ||
  mb_fail "logfile has no notification line"
vmt_expect 1 1 web count-sample_seq # the read callback has not run meanwhile

# 2. no urgent flag, but swap-out at 2000 pages/s (threshold 100)
t0=$(date +%s%N)
vmt_record 1 3 2000000 300000 0 0 2000
mb_wait_for 5 notif_ge 2 || mb_fail "no notification for fast swapping"
f=$(grep -l 'swapping record seq 3' "$nd"/n.* | head -1)
[ -n "$f" ] || mb_fail "second notification is not the swapping one"
grep -q 'swap in 0 out 2000 pages/s' "$f" || mb_fail "swap rate not in message: $(tail -1 "$f")"
read -r e2e created < <(report "$f" "$t0")
mb_log "swapping record -> notification: ${e2e} ms end to end, ${created} ms until dispatched"
awk -v l="$e2e" 'BEGIN { exit !(l < 1000) }' || mb_fail "latency ${e2e} ms >= 1000 ms"

# 3. a quiet record (slow swapping, not urgent): no notification
vmt_record 1 4 2000000 300000 0 0 2050
sleep 1.5
mb_assert_eq 2 "$(nnotif)" "notifications after a quiet record"
mb_assert "collectd still running" mb_collectd_alive
mb_log "PASS"
