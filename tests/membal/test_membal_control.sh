#!/usr/bin/env bash
# The operator's `membal` command against membal in the real collectd with
# vmmem on the sim backend in a real xenstored; the test plays the
# hypervisor (balloons reach their targets, free memory is what nobody
# holds) and xl create (refused when the hypervisor lacks the new VM's
# memory, as xl is once autoballoon has nothing to take from dom0):
#  - a 1 GiB VM does not fit on the balanced host; `membal reserve 1G --for
#    vm4` shrinks the guests until the hypervisor has 1 GiB free and exits
#    0; the VM then starts; once it runs, the reservation is met
#    (notification) and it is balanced like the others;
#  - a reservation that cannot be met exits 1 naming the shortfall, and
#    expires (notification);
#  - `membal hold vm2`: a manual target (xl mem-set) stays; status shows the
#    hold; `membal release vm2`: balanced again;
#  - <Domain "vm3"> Balance false: its target never moves;
#  - `membal status` and `status --json` show the same round;
#  - the socket is 0600 and refuses anybody but root; every action is logged
#    once with what was asked.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
cli=$MEMBAL_BUILD_DIR/contrib/membal
[ -x "$cli" ] || mb_fail "$cli was not built"
sock=$MB_DIR/membal.sock
m() { "$cli" -s "$sock" "$@"; }

mb_xenstored_start
mbt_three_guests 900 300 400

# The hypervisor: every 0.2 s the balloons of the running guests move to
# their targets, shrinks first, and grows only as far as free memory goes.
echo "1 2 3" >"$MB_DIR/running"
dom_field() { xenstore-read -R "/tool/membal-sim/dom/$1" | sed -n "s/^$2 //p"; }
set_current() {
  xenstore-write -R "/tool/membal-sim/dom/$1" "$(printf 'name %s\ncurrent_kib %s\nmax_kib %s\n' \
    "$(dom_field "$1" name)" "$2" "$(dom_field "$1" max_kib)")"
}
hypervisor() {
  local id t c free held g
  while :; do
    held=$dom0
    for id in $(cat "$MB_DIR/running"); do
      held=$((held + $(dom_field "$id" current_kib)))
    done
    free=$((total - held))
    for pass in shrink grow; do
      for id in $(cat "$MB_DIR/running"); do
        t=$(mbt_target "$id") c=$(dom_field "$id" current_kib)
        if [ "$pass" = shrink ] && [ "$t" -lt "$c" ]; then
          set_current "$id" "$t"
          free=$((free + c - t))
        elif [ "$pass" = grow ] && [ "$t" -gt "$c" ] && [ "$free" -gt 0 ]; then
          g=$((t - c))
          [ "$g" -gt "$free" ] && g=$free
          set_current "$id" $((c + g))
          free=$((free - g))
        fi
      done
    done
    mbt_host "$total" "$free"
    sleep 0.2 # the stand-in's pace, not a wait: the test waits on targets
  done
}
mb_bg "$MB_DIR/hypervisor.log" hypervisor
host_free() { xenstore-read -R /tool/membal-sim/host | sed -n 's/^free_kib //p'; }
# xl create vm4 (1 GiB): refused unless the hypervisor has it free.
create_vm4() {
  local free
  free=$(host_free)
  if [ "$free" -lt $((1024 * MiB)) ]; then
    mb_log "xl create vm4: only $((free / MiB)) MiB free, 1024 MiB needed: refused"
    return 1
  fi
  mbt_dom 4 vm4 $((1024 * MiB)) $((2048 * MiB))
  echo "1 2 3 4" >"$MB_DIR/running"
  mb_log "xl create vm4: started ($((free / MiB)) MiB were free)"
}

mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Policy "cagma"
  Period 3600
  Reserve "512MiB"
  <Domain "vm3">
    Balance false
  </Domain>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2 3

mb_assert_eq 600 "$(stat -c %a "$sock")" "control socket mode"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$cli" -s "$sock" status 2>&1) &&
  mb_fail "membal status worked for uid 65534: $out"
case "$out" in *"Permission denied"*"root only"*) mb_log "ok: uid 65534 refused: $out" ;;
*) mb_fail "uid 65534 got '$out'" ;; esac
m status >/dev/null 2>"$MB_DIR/err" && mb_fail "status before any round"
grep -q "no round yet" "$MB_DIR/err" || mb_fail "status before any round: $(cat "$MB_DIR/err")"

# ---- the guests take the pool ----
mbt_flush_round
host_settled() { [ "$(host_free)" -le $((64 * MiB)) ]; }
mb_wait_for 10 host_settled || mb_fail "the guests did not take the pool: $(host_free) KiB free"
mb_assert_eq $((1024 * MiB)) "$(mbt_target 3)" "vm3 (Balance false) target"
create_vm4 && mb_fail "vm4 started on a host with $(host_free) KiB free"

# ---- reserve: the guests shrink, the VM starts ----
t0=$(mb_now_ms)
m reserve 1G --for vm4 --timeout 120 >"$MB_DIR/reserve.out" 2>&1 ||
  mb_fail "membal reserve 1G failed: $(cat "$MB_DIR/reserve.out")"
mb_log "reserve 1G: $(cat "$MB_DIR/reserve.out") ($(($(mb_now_ms) - t0)) ms)"
free=$(host_free)
[ "$free" -ge $((1024 * MiB)) ] || mb_fail "reserve returned 0 with $free KiB free"
mb_assert_eq $((1024 * MiB)) "$(mbt_target 3)" "vm3 (Balance false) target after the reserve"
m status --json >"$MB_DIR/st1.json"
python3 - "$MB_DIR/st1.json" <<'EOF' || mb_fail "status --json does not show the reservation"
import json, sys
st = json.load(open(sys.argv[1]))
r = st["reservations"]
assert len(r) == 1 and r[0]["for"] == "vm4" and r[0]["kib"] == 1048576, r
assert st["pool"]["reserved_kib"] == 1048576, st["pool"]
assert st["trigger"] == "operator", st["trigger"]
# never below Min; guests above their CMA give first: no balanced guest
# is left above its CMA while another is below its own
bal = [d for d in st["domains"] if not d["held"]]
for d in st["domains"]:
    assert d["target_kib"] >= d["min_kib"], d
short = [d["name"] for d in bal if d["target_kib"] < d["cma_kib"]]
spare = [d["name"] for d in bal if d["target_kib"] > max(d["cma_kib"], d["min_kib"]) + 8192]
assert not (short and spare), (short, spare, bal)
print("reservation in status:", r)
EOF
create_vm4 || mb_fail "vm4 did not start after the reservation"

# Once vm4 runs, the next round finds the reservation met.
mbt_flush_round
mb_wait_for 10 mb_log_has "reservation 1 of 1024 MiB for vm4 met" ||
  mb_fail "the reservation was not met when vm4 appeared"
mb_wait_for 10 mb_log_has "Notification: severity = OKAY, host = $MB_HOSTNAME, plugin = membal, plugin_instance = vm4, type = memory, type_instance = reservation_met" ||
  mb_fail "no reservation_met notification"
m status --json >"$MB_DIR/st2.json"
python3 - "$MB_DIR/st2.json" <<'EOF' || mb_fail "vm4 not balanced after the reservation"
import json, sys
st = json.load(open(sys.argv[1]))
assert st["reservations"] == [] and st["pool"]["reserved_kib"] == 0, st["pool"]
names = sorted(d["name"] for d in st["domains"])
assert names == ["vm1", "vm2", "vm3", "vm4"], names
print("vm4 balanced:", [d for d in st["domains"] if d["name"] == "vm4"][0]["reason"])
EOF

# ---- the hooks: xl create wrapper and libvirt's qemu hook ----
# `membal` is the command under test; `xl` (no Xen here) records its call.
mkdir -p "$MB_DIR/bin"
ln -s "$cli" "$MB_DIR/bin/membal"
printf '#!/bin/sh\necho "$@" > %s/xl.args\n' "$MB_DIR" >"$MB_DIR/bin/xl"
chmod +x "$MB_DIR/bin/xl"
printf 'name = "vm5"\nmemory = 256 # MiB\nmaxmem = 512\n' >"$MB_DIR/vm5.cfg"
PATH=$MB_DIR/bin:$PATH MEMBAL_SOCKET=$sock \
  "$MEMBAL_SOURCE_DIR/contrib/membal-xl-create" --timeout 60 "$MB_DIR/vm5.cfg" -p ||
  mb_fail "membal-xl-create failed"
mb_assert_eq "create $MB_DIR/vm5.cfg -p" "$(cat "$MB_DIR/xl.args")" "xl called by the wrapper"
xml="<domain type='kvm'><name>vm6</name><memory unit='GiB'>1</memory><currentMemory unit='MiB'>128</currentMemory></domain>"
echo "$xml" | PATH=$MB_DIR/bin:$PATH MEMBAL_SOCKET=$sock \
  "$MEMBAL_SOURCE_DIR/contrib/membal-libvirt-hook" vm7 start begin - || mb_fail "hook at start failed"
echo "$xml" | PATH=$MB_DIR/bin:$PATH MEMBAL_SOCKET=$sock \
  "$MEMBAL_SOURCE_DIR/contrib/membal-libvirt-hook" vm6 prepare begin - || mb_fail "hook at prepare failed"
# status shows a reservation from the round it asked for on.
hooks_reserved() {
  m status --json >"$MB_DIR/st4.json" && python3 - "$MB_DIR/st4.json" <<'EOF'
import json, sys
r = sorted((x["for"], x["kib"]) for x in json.load(open(sys.argv[1]))["reservations"])
print("hooks reserved:", r)
sys.exit(r != [("vm5", 262144), ("vm6", 131072)])
EOF
}
mb_wait_for 10 hooks_reserved || mb_fail "the hooks' reservations are not in status: $(hooks_reserved)"

# ---- a reservation that cannot be met ----
m reserve 10G --timeout 3 >"$MB_DIR/big.out" 2>&1 && mb_fail "reserve 10G succeeded: $(cat "$MB_DIR/big.out")"
grep -q "shortfall" "$MB_DIR/big.out" || mb_fail "reserve 10G: $(cat "$MB_DIR/big.out")"
mb_log "ok: reserve 10G: $(cat "$MB_DIR/big.out")"
mbt_flush_round
mb_wait_for 10 mb_log_has "Notification: severity = WARNING, .*plugin = membal, .*type_instance = reservation_expired" ||
  mb_fail "no reservation_expired notification"
mb_log "ok: the 10 GiB reservation expired"

# ---- hold: a manual target stays ----
mbt_flush_round
m hold vm2 >"$MB_DIR/hold.out" || mb_fail "membal hold vm2 failed"
grep -q "vm2 held until released" "$MB_DIR/hold.out" || mb_fail "hold said: $(cat "$MB_DIR/hold.out")"
manual=$((700 * MiB))
xenstore-write /local/domain/2/memory/target "$manual" # xl mem-set vm2 700m
mbt_flush_round
mbt_flush_round
mb_assert_eq "$manual" "$(mbt_target 2)" "vm2's manual target while held"
# The table and the JSON of one round (urgent rounds may fall between two
# reads: read both again).
for try in $(seq 30); do
  m status >"$MB_DIR/status.txt"
  m status --json >"$MB_DIR/st3.json"
  r_txt=$(sed -n '1s/.* round \([0-9]*\) .*/\1/p' "$MB_DIR/status.txt")
  r_json=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["round"])' "$MB_DIR/st3.json")
  [ "$r_txt" = "$r_json" ] && break
  [ "$try" = 30 ] && mb_fail "a round between every two status reads"
done
grep -E '^vm2 .* yes$' "$MB_DIR/status.txt" >/dev/null || mb_fail "status shows no hold on vm2: $(cat "$MB_DIR/status.txt")"
grep -E '^vm3 .* yes$' "$MB_DIR/status.txt" >/dev/null || mb_fail "status shows no hold on vm3 (Balance false)"
mb_assert_eq 4 "$(grep -cE '^vm[1-4] ' "$MB_DIR/status.txt")" "domains in the status table"
python3 - "$MB_DIR/st3.json" "$MB_DIR/status.txt" <<'EOF' || mb_fail "status and status --json disagree"
import json, sys
st = json.load(open(sys.argv[1]))
rows = {l.split()[0]: l.split() for l in open(sys.argv[2]) if l.startswith("vm")}
for d in st["domains"]:
    r = rows[d["name"]]
    assert int(r[1]) == d["domid"], (r, d)
    assert abs(float(r[2]) - d["current_kib"] / 1024) < 0.06, (r, d)
    assert abs(float(r[3]) - d["target_kib"] / 1024) < 0.06, (r, d)
    assert abs(float(r[4]) - d["cma_kib"] / 1024) < 0.06, (r, d)
    assert r[5] == d["reason"], (r, d)
held = {d["name"]: d["held"] for d in st["domains"]}
assert held == {"vm1": False, "vm2": True, "vm3": True, "vm4": False}, held
print("status table = status --json; held:", held)
EOF
m release vm2 >/dev/null || mb_fail "membal release vm2 failed"
m release vm2 2>"$MB_DIR/err" && mb_fail "release of a domain not held succeeded"
grep -q "vm2 is not held" "$MB_DIR/err" || mb_fail "second release: $(cat "$MB_DIR/err")"
not_manual() { [ "$(mbt_target 2)" != "$manual" ]; }
# The release asks one round; with Period 1 h only rounds asked for follow.
# That one round may leave vm2 where it is: in CI's clone of d64bf4d it
# logged no decision for vm2 and no other round came. A likely cause: an
# ask within the dead band of 700 MiB from a sample older than vm2's last
# balloon move (the CMA counts current - MemTotal). A flush round each try
# until one moves it: "balanced again", not "moved by the first round".
released_moved() {
  not_manual && return 0
  mbt_flush_round
  not_manual
}
mb_wait_for 30 released_moved || mb_fail "vm2 still at its manual target after the release and rounds"
mb_log "ok: released vm2 balanced again: target $(($(mbt_target 2) / MiB)) MiB"
mb_assert_eq $((1024 * MiB)) "$(mbt_target 3)" "vm3 (Balance false) target at the end"

# ---- bad requests ----
m hold 'bad name' 2>/dev/null && mb_fail "hold accepted a name with a blank"
m hold vm1 0 2>/dev/null && mb_fail "hold accepted a duration of 0"
m reserve 0 2>/dev/null && mb_fail "reserve accepted 0"
m reserve 1G --timeout 2d 2>/dev/null && mb_fail "reserve accepted a timeout over a day"
printf 'hold\n' | python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"frobnicate vm1\n")
r = s.recv(4096).decode(); print(r, end=""); sys.exit(not r.startswith("error unknown request"))' "$sock" ||
  mb_fail "an unknown request was not refused"
mb_collectd_alive || mb_fail "collectd died"

# ---- every action logged once ----
mb_assert_eq 1 "$(grep -c 'membal: control: uid 0 asks "hold vm2"' "$MB_CD_LOG")" "log lines of 'hold vm2'"
mb_assert_eq 1 "$(grep -c 'membal: control: uid 0 asks "reserve 1048576 vm4 120"' "$MB_CD_LOG")" "log lines of the reserve"
mb_assert_eq 0 "$(grep -c 'asks "status' "$MB_CD_LOG")" "status requests logged (read-only: none)"

# ---- one log line per decision that moves a target by DeadBand or more ----
python3 - "$MB_CD_LOG" <<'EOF' || mb_fail "a decision line for a move below the dead band, or a round line without LogRounds"
import re, sys
moves = rounds = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"membal: (?:\[dry run\] )?\S+ \(domid \d+\) target ([\d.]+) MiB -> ([\d.]+) MiB", line)
    if m:
        moves += 1
        d = abs(float(m.group(2)) - float(m.group(1)))
        assert d >= 8.0 - 0.05, line
    if re.search(r"membal: round \d+ on ", line):
        rounds += 1
assert moves > 0 and rounds == 0, (moves, rounds)
print(moves, "decision lines, each a move of 8 MiB (DeadBand) or more; no round lines")
EOF

mb_collectd_stop
[ -e "$sock" ] && mb_fail "the control socket is left after collectd stopped"
mb_log "control test passed"
