#!/usr/bin/env bash
# Memcheck over membal's three plugins in the real collectd: guestmem
# (prepared meminfo/vmstat, publishing guest vm3's record into a real
# xenstored), vmmem and membal on the sim backend, rrdtool and unixsock,
# all in one collectd run under valgrind for ~25 s: periodic reads, a
# `collectdctl flush plugin=membal` round, and one urgent record (guestmem's
# urgent path -> vmmem's hand-off -> membal's urgent round). collectd
# is stopped with SIGTERM so every plugin's shutdown runs and valgrind
# writes its leak summary.
#
# Fails on any memcheck error (invalid read/write, uninitialised value,
# ...) and on any "definitely lost" block (--errors-for-leak-kinds=definite
# makes them errors), except what tests/plugins/valgrind.supp
# suppresses; that file never suppresses a stack with a frame in our code.
#
# Needs plugins built without ASan (the Release build): registered by
# tests/CMakeLists.txt only when MEMBAL_SANITIZE is off, label valgrind.
# Exit 77 (skip) without valgrind.
. "$(dirname "$0")/../lib/membal_lib.bash"
GM_DOMID=3
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

command -v valgrind >/dev/null || mb_skip "valgrind missing (apt-get install valgrind)"
if mb__plugins_asan; then
  mb_skip "plugins in $MB_PLUGINDIR are ASan-built; valgrind needs a build without MEMBAL_SANITIZE"
fi

MiB=$MBT_MIB
total=$((8192 * MiB))
dom0=$((1024 * MiB))
# Under valgrind collectd runs 20-50x slower: every wait is generous.
slow=90

mb_xenstored_start
mbt_guests "$total" "$dom0" 3
# vm1 and vm2: a guest agent stand-in; vm3: guestmem in this collectd,
# writing /local/domain/3 as dom0 would for a guest.
echo $((700 * MiB)) >"$MB_DIR/vm1.used"
echo $((200 * MiB)) >"$MB_DIR/vm2.used"
mb_bg "$MB_DIR/loop1.log" mbt_guest_loop 1 "$MB_DIR/vm1.used"
mb_bg "$MB_DIR/loop2.log" mbt_guest_loop 2 "$MB_DIR/vm2.used"
gm_total=$((1048576 - 4096))
gm_meminfo "$gm_total" 400000
pswpin=$((1000 + RANDOM))
gm_vmstat "$pswpin" 20 30 40

live_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Period 3600: every round is one this test causes (flush, urgent).
vmt_sim_conf "$MB_DIR/collectd.conf" "" "LoadPlugin membal
<Plugin membal>
  Backend \"sim\"
  XenstorePath \"$XENSTORED_PATH\"
  Policy \"cagma\"
  Period 3600
  StaleAfter 60
  Reserve \"1GiB\"
  ControlSocket \"$MB_DIR/membal.sock\"
  <Live>
    Port $live_port
    DataDir \"$MB_DIR/rrd\"
  </Live>
</Plugin>
LoadPlugin guestmem
<Plugin guestmem>
  MeminfoPath \"$GM_MEMINFO\"
  VmstatPath \"$GM_VMSTAT\"
  PressurePath \"$GM_PRESSURE\"
  DomainPath \"$GM_DOM\"
  XenstorePath \"$XENSTORED_PATH\"
  SwapThreshold 64
  UrgentPollInterval 0.2
  UrgentMinInterval 1
</Plugin>"

vg_log=$MB_DIR/valgrind.log
supp=$MEMBAL_SOURCE_DIR/tests/plugins/valgrind.supp
vg_rc=99
MB_COLLECTD_WRAPPER="valgrind --error-exitcode=$vg_rc --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 --keep-debuginfo=yes --suppressions=$supp --log-file=$vg_log"
MB_COLLECTD_START_TIMEOUT=$slow
export MB_COLLECTD_WRAPPER MB_COLLECTD_START_TIMEOUT
t_start=$(mb_now_ms)
mb_collectd_start "$MB_DIR/collectd.conf"
mb_assert "collectd runs under valgrind" grep -q 'Memcheck' "$vg_log"

# guestmem publishes vm3's record; vmmem dispatches all three guests.
mb_wait_for $slow gm_field seq || mb_fail "guestmem wrote no record at $GM_DOM"
for id in 1 2 3; do
  mb_wait_for $slow mb_getval "$MB_HOSTNAME/vmmem-vm$id/memory-guest_MemTotal" ||
    mb_fail "vmmem dispatched no guest sample for vm$id"
done
vmt_expect $slow $((gm_total * 1024)) vm3 memory-guest_MemTotal

# A flush round: membal decides and the round counter advances.
r0=$(mbt_round)
mb_collectdctl flush plugin=membal
mb_wait_for $slow mbt__round_after "$r0" || mb_fail "flush: no round (round still $r0)"
r1=$(mbt_round)
mb_log "ok: flush ran round $r1"
rrd=$MB_DIR/rrd/$MB_HOSTNAME/vmmem-vm3/memory-guest_MemTotal.rrd
mb_wait_for $slow test -f "$rrd" || mb_fail "no RRD file $rrd"

# A swap-in burst in vm3: guestmem's urgent record, vmmem's hand-off,
# membal's urgent round (no period or flush is due).
pswpin=$((pswpin + 50000))
gm_vmstat "$pswpin" 20 30 40
mb_wait_for $slow mbt__round_after "$r1" || mb_fail "urgent sample: no round (round still $r1)"
mb_log "ok: urgent round $(mbt_round)"

# The operator's command and the live view: a hold (an operator round), a
# status table, and the page's three answers.
cli=$MEMBAL_BUILD_DIR/contrib/membal
"$cli" -s "$MB_DIR/membal.sock" hold vm2 600 || mb_fail "membal hold failed"
r2=$(mbt_round)
"$cli" -s "$MB_DIR/membal.sock" release vm2 || mb_fail "membal release failed"
mb_wait_for $slow mbt__round_after "$r2" || mb_fail "release: no round"
"$cli" -s "$MB_DIR/membal.sock" status | grep -q '^vm2 ' || mb_fail "membal status shows no vm2"
for path in / /api/state /api/history /metrics /nope; do
  python3 -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=60).read()
except urllib.error.HTTPError as e: assert e.code == 404, e' "$live_port" "$path" ||
    mb_fail "live view: GET $path failed"
done
mb_log "ok: membal hold/release/status and the live view under valgrind"

# Keep the periodic paths running to ~25 s in all.
left=$((25000 - ($(mb_now_ms) - t_start)))
[ "$left" -le 0 ] || sleep "$(awk -v l="$left" 'BEGIN { printf "%.1f", l / 1000 }')"
mb_assert "collectd still running" mb_collectd_alive

# Stop: SIGTERM, then wait for valgrind's leak check and summary.
kill -TERM "$MB_CD_PID"
rc=0
for _ in $(seq $((slow * 10))); do
  kill -0 "$MB_CD_PID" 2>/dev/null || break
  sleep 0.1 # poll pace of a wait on the exit itself (bounded by $slow s)
done
kill -0 "$MB_CD_PID" 2>/dev/null && mb_fail "collectd under valgrind did not exit within ${slow} s of SIGTERM"
wait "$MB_CD_PID" || rc=$?
MB_CD_PID=""
mb_log "collectd exited with $rc after $(($(mb_now_ms) - t_start)) ms under valgrind"

grep -E 'LEAK SUMMARY|ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:' "$vg_log" |
  sed 's/^==[0-9]*== *//' >&2
mb_assert "valgrind wrote its summary" grep -q 'ERROR SUMMARY' "$vg_log"
ours='guestmem|vmmem|membal|backend|xs_guest|policy|mb_'
if ! grep -q 'ERROR SUMMARY: 0 errors' "$vg_log" || [ "$rc" -eq "$vg_rc" ]; then
  echo "----- valgrind report -----" >&2
  grep -vE '^==[0-9]+== *$' "$vg_log" | sed -n '/^==[0-9]*== [A-Z]/,$p' | head -n 200 >&2
  mb_fail "valgrind found errors (exit $rc)"
fi
# Belt and braces: no definitely-lost record at all through our code, even
# if a suppression were too broad.
if awk -v re="$ours" '/definitely lost in loss record/ { inrec = 1; next }
  inrec && /^==[0-9]+== *$/ { inrec = 0 }
  inrec && $0 ~ re { found = 1 } END { exit !found }' "$vg_log"; then
  mb_fail "a definitely-lost block allocated through our plugins"
fi
mb_assert_eq 0 "$rc" "collectd's exit status under valgrind"
mb_log "PASS"
