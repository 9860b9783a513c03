#!/usr/bin/env bash
# membal-memload (contrib/memload.c): argument checking, the mono mountain's
# phases, and fake-client records in a real xenstored (format, sequence,
# size limit, swinging between idle and thrashing).
. "$MEMBAL_SOURCE_DIR/tests/lib/harness.sh"
ML=$MEMBAL_BUILD_DIR/contrib/membal-memload
[ -x "$ML" ] || mb_skip "membal-memload not built"
# ok_if <shell condition> <what>
ok_if() { if eval "$1"; then mb_log "ok: $2"; else mb_fail "$2"; fi; }

# Bad arguments: exit 2 and a message naming the problem.
for bad in "mono 64 16" "static 1x" "static -5" "mono 10" "nosuchmode" "static 8 --step 0"; do
  set +e
  msg=$($ML $bad 2>&1)
  rc=$?
  set -e
  mb_assert_eq 2 "$rc" "exit status of 'membal-memload $bad'"
  ok_if "[ -n \"\$msg\" ]" "'membal-memload $bad' says why"
done

# mono 0 48 in 16 MiB steps: up to 48, hold, back down to 0.
out=$($ML mono 0 48 --step 16 --interval 20 --hold 1)
mb_assert_eq "16 32 48" "$(awk -F'allocated_mib=' '/phase=up/ {split($2, a, " "); printf "%s ", a[1]}' <<< "$out" | sed 's/ $//')" "mono up steps"
mb_assert_eq "32 16 0" "$(awk -F'allocated_mib=' '/phase=down/ {split($2, a, " "); printf "%s ", a[1]}' <<< "$out" | sed 's/ $//')" "mono down steps"
ok_if "grep -q 'allocated_mib=48 phase=high' <<< \"\$out\"" "mono reaches HIGH"
ok_if "grep -q 'allocated_mib=0 phase=done' <<< \"\$out\"" "mono ends at LOW"

# static holds SIZE and touches it until --hold ends.
out=$($ML static 32 --hold 1 --touch 50)
ok_if "grep -q 'allocated_mib=32 phase=static' <<< \"\$out\"" "static holds 32 MiB"
pages=$(sed -n 's/.*touched \([0-9]*\) pages.*/\1/p' <<< "$out")
ok_if "[ \"$pages\" -ge $((32 * 256 * 2)) ]" "static touched every page at least twice ($pages)"

# fake-client: 40 records into a real xenstored.
mb_xenstored_start
key=/local/domain/7/data/membal/stats
out=$($ML fake-client --period 5 --count 40 --key $key)
ok_if "grep -q 'published 40 records' <<< \"\$out\"" "fake-client reports 40 records ($out)"
rec=$(xenstore-read -R $key)
mb_assert_eq "membal 1" "$(head -n1 <<< "$rec")" "record header"
mb_assert_eq "seq 40" "$(grep '^seq ' <<< "$rec")" "record sequence"
ok_if "[ ${#rec} -lt 2048 ]" "record below xenstore's 2048 bytes"
mb_assert_eq "" "$(awk '{print $1}' <<< "$rec" | sort | uniq -d)" "no duplicated key"
for k in MemTotal MemAvailable Committed_AS SwapFree pswpin pswpout uptime_ms; do
  ok_if "grep -Eq '^$k [0-9]+$' <<< \"\$rec\"" "record has $k"
done
# The records swing: over 40 publishes both states appear.
urg=0 calm=0
for i in $(seq 10); do
  $ML fake-client --period 0 --count "$i" --key /local/domain/8/data/membal/stats -q > /dev/null
  if xenstore-read -R /local/domain/8/data/membal/stats | grep -q '^urgent 1'; then urg=$((urg + 1)); else calm=$((calm + 1)); fi
done
ok_if "[ $urg -gt 0 ] && [ $calm -gt 0 ]" "records swing between urgent and calm ($urg/$calm)"
mb_log "PASS"
