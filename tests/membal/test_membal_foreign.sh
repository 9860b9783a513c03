#!/usr/bin/env bash
# membal ignores what does not come from this host's vmmem (issue 15):
# values and notifications of another host (a central collector's network
# plugin dispatches them as its own unixsock PUTVAL/PUTNOTIF do, with the
# sender's host name), and values that merely claim to be vmmem's. Before,
# a foreign "urgent" notification started a round and a foreign
# count/sample_seq value made membal drop a local domain's sample (frozen).
. "$(dirname "$0")/../lib/membal_lib.bash"

command -v python3 >/dev/null || mb_skip "python3 missing (PUTNOTIF over the unixsock)"
MiB=$MBT_MIB
mb_xenstored_start
mbt_guests $((4096 * MiB)) $((512 * MiB)) 2
echo $((700 * MiB)) >"$MB_DIR/vm1.used"
echo $((300 * MiB)) >"$MB_DIR/vm2.used"
mb_bg "$MB_DIR/loop1.log" mbt_guest_loop 1 "$MB_DIR/vm1.used"
mb_bg "$MB_DIR/loop2.log" mbt_guest_loop 2 "$MB_DIR/vm2.used"

mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Period 3600
  Reserve "512MiB"
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2
seq_ge() { awk -v v="$(vmt_get vm1 count-sample_seq)" -v m="$1" 'BEGIN { exit !(v >= m) }'; }
mb_wait_for 10 seq_ge 6 || mb_fail "vm1's agent does not advance"
mbt_flush_round
reason() { mb_getval "$MB_HOSTNAME/membal-vm1/gauge-reason"; }
mb_assert "vm1 decided on its sample (reason $(reason), not stale-frozen 5)" \
  awk -v r="$(reason)" 'BEGIN { exit !(r != 5) }'

# putnotif <host>: an urgent notification as vmmem used to raise it
putnotif() {
  python3 - "$MB_CD_SOCK" "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(("PUTNOTIF severity=warning time=%d host=%s plugin=vmmem "
           "plugin_instance=vm1 type=vmmem_sample type_instance=urgent "
           "message=\"domain vm1 (1): urgent record seq 1\"\n"
           % (time.time(), sys.argv[2])).encode())
reply = s.makefile().readline()
sys.exit(0 if reply.startswith("0 ") else 1)
EOF
}
r0=$(mbt_round)
for host in otherhost "$MB_HOSTNAME"; do
  mb_assert "PUTNOTIF urgent from $host accepted by collectd" putnotif "$host"
  # a sequence number far below vm1's, and sample values, without vmmem's
  # meta data (what the network plugin or PUTVAL deliver)
  mb_collectdctl putval "$host/vmmem-vm1/count-sample_seq" N:1
  mb_collectdctl putval "$host/vmmem-vm1/memory-guest_MemTotal" N:1048576
  mb_collectdctl putval "$host/vmmem-vm1/memory-guest_MemAvailable" N:0
done
# Period 1 h and no flush: a round now could only come from those. Wait
# for vmmem's next read of vm1 (progress), then half a second more.
s0=$(vmt_get vm1 count-sample_seq)
mb_wait_for 5 seq_ge $((${s0%.*} + 2)) || mb_fail "vm1's agent stopped"
mb_assert_eq "$r0" "$(mbt_round)" "rounds after foreign notifications and values"

mbt_flush_round
mb_assert "vm1 still decided on its own sample (reason $(reason), not stale-frozen 5)" \
  awk -v r="$(reason)" 'BEGIN { exit !(r != 5) }'
t1=$(mbt_target 1)
mb_assert "vm1 not shrunk below its 700 MiB working set ($((t1 / MiB)) MiB)" \
  test "$t1" -ge $((700 * MiB))
mb_collectd_stop
mb_log "foreign values test passed"
