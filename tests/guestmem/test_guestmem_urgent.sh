#!/usr/bin/env bash
# Urgent path: swap activity (pswpin/pswpout) or major faults above the
# threshold make guestmem publish at once with "urgent 1", well before the
# next interval (Interval 10 here); slow swapping does not; a storm gives at
# most one urgent record per UrgentMinInterval. Prints the latency seen.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

MB_INTERVAL=10
mb_xenstored_start
mb_guest_domain "$GM_DOMID"
gm_meminfo 2000000 500000
pswpin=$((1000 + RANDOM))
pswpout=500
majflt=300
gm_vmstat "$pswpin" "$pswpout" "$majflt" 90000
gm_conf "$MB_DIR/collectd.conf" "SwapThreshold 64" "MajorFaultThreshold 256" \
  "UrgentPollInterval 0.2" "UrgentMinInterval 1"
start_ms=$(mb_now_ms)
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no first record"
stats=$GM_DOM/data/membal/stats
raw() { xenstore-read -R "$stats" 2>/dev/null; }
is_urgent() { raw | grep -qx 'urgent 1'; }

# 1. slow swapping (10 pages/s, under 64) for 3 s: nothing urgent
seq0=$(gm_field seq)
for i in $(seq 30); do
  pswpin=$((pswpin + 1))
  gm_vmstat "$pswpin" "$pswpout" "$majflt" 90000
  # the pace of the slow swapping, not a wait: a slow machine writes it
  # more slowly, a lower rate still (the thread times its own polls)
  sleep 0.1
done
if is_urgent; then mb_fail "urgent record for 10 pages/s"; fi
mb_assert "no urgent publish logged for slow swapping" bash -c "! grep -q 'urgent record published' $MB_CD_LOG"
# Regular publishes are collectd's reads, Interval (10 s) apart from the
# first, which came after start_ms: a slow machine may fit some into the
# window, never more than this.
seq1=$(gm_field seq)
regular=$((($(mb_now_ms) - start_ms) / 10000))
mb_assert "no early publish for slow swapping (seq $seq0 -> $seq1, $regular regular publishes possible since collectd started)" \
  test $((seq1 - seq0)) -le "$regular"

# 2. a swap-in burst: an urgent record (the urgent thread has been polling
# vmstat for 3 s: it has a reading to compare with). Only the urgent path
# sets urgent 1; how soon it came is measured and logged, not checked (30 s
# is the limit for a thread that does not answer at all).
pswpin=$((pswpin + 5000))
t0=$(mb_now_ms)
gm_vmstat "$pswpin" "$pswpout" "$majflt" 90000
t1=""
while [ $(($(mb_now_ms) - t0)) -lt 30000 ]; do
  if is_urgent; then
    t1=$(mb_now_ms)
    break
  fi
  sleep 0.01 # the measuring loop's pace
done
[ -n "$t1" ] || mb_fail "no urgent record within 30 s of a 5000-page swap-in burst"
latency=$((t1 - t0))
mb_log "MEASURED: urgent record latency ${latency} ms (swap-in burst -> record with urgent 1 in xenstore; poll 200 ms)"
mb_assert_eq "$pswpin" "$(gm_field pswpin)" "urgent record carries the new pswpin"
mb_assert_eq 1 "$(gm_field urgent)" "policy parser reads urgent 1"
mb_assert "urgent publish logged with its rate" mb_log_has 'guestmem: urgent record published \(swap [0-9]+ pages/s'

# 3. a sustained storm for 3 s: rate limited to one urgent record per second
s_before=$(gm_field seq)
n_before=$(grep -c 'urgent record published' "$MB_CD_LOG")
# The rate limit is real time by nature: UrgentMinInterval (1 s) must have
# passed since burst 2's urgent record, published before t1; a slow
# machine only makes this longer.
sleep 1.1
urgent_since() { echo $(($(grep -c 'urgent record published' "$MB_CD_LOG") - n_before)); }
storm_t0=$(mb_now_ms)
i=0
# 3 s of storm, longer while fewer than 2 urgent records came (a slow
# machine's urgent thread may poll late): at most 30 s
while [ "$i" -lt 30 ] || { [ "$(urgent_since)" -lt 2 ] && [ "$i" -lt 300 ]; }; do
  i=$((i + 1))
  pswpout=$((pswpout + 200)) # 2000 pages/s
  gm_vmstat "$pswpin" "$pswpout" "$majflt" 90000
  sleep 0.1 # the storm's pace: slower on a slow machine, still far above 64 pages/s
done
# counted at the storm's end, its duration measured after: every counted
# record was published within storm_ms, so the rate limit bounds them
# however slow this machine is (a record of the storm's last poll may come
# later and is not counted)
n=$(urgent_since)
storm_ms=$(($(mb_now_ms) - storm_t0))
max=$((storm_ms / 1000 + 1))
mb_assert "storm of $storm_ms ms gave $n urgent records: at least 2, at most $max (UrgentMinInterval 1)" \
  test "$n" -ge 2 -a "$n" -le "$max"
s_after=$(gm_field seq)
mb_assert "seq advanced by the urgent publishes ($s_before -> $s_after)" \
  test $((s_after - s_before)) -ge "$n"

# 4. major faults alone trigger it too. The storm's last poll may still
# publish (and renew the rate limit) after the count above; 1.2 s lets it
# expire as a rule. When a slow machine's last poll came later, the burst
# falls in the limit and is not published: then another burst, once the
# record shows none (each is a new rise of pgmajfault).
sleep 1.2
n_before=$(grep -c 'urgent record published' "$MB_CD_LOG")
# published for the major faults alone (no swapping since the last poll)
majfault_only_lines() { grep -c 'urgent record published (swap 0 pages/s' "$MB_CD_LOG" || true; }
n0=$(majfault_only_lines)
majfault_urgent() {
  [ "$(majfault_only_lines)" -gt "$n0" ] && raw | grep -qx 'urgent 1' && raw | grep -qx "pgmajfault $majflt"
}
for try in 1 2 3 4 5 6 7 8 9 10; do
  majflt=$((majflt + 10000))
  gm_vmstat "$pswpin" "$pswpout" "$majflt" 190000
  mb_wait_for 2 majfault_urgent && break
  mb_log "major-fault burst $try not published (rate limit of the storm's last poll?)"
done
mb_wait_for 2 bash -c "[ \$(grep -c 'urgent record published' $MB_CD_LOG) -gt $n_before ]" ||
  mb_fail "no urgent record for a major-fault burst"
mb_wait_for 1 bash -c "xenstore-read -R $stats | grep -qx 'pgmajfault $majflt'" ||
  mb_fail "urgent record does not carry pgmajfault $majflt"
mb_log "ok: major-fault burst gave an urgent record"
mb_assert_eq 1 "$(gm_field urgent)" "the major-fault record is urgent"

# 5. the next regular record clears the flag
s=$(gm_field seq)
regular_after() { [ "$(gm_field seq)" -gt "$1" ] && [ "$(gm_field urgent)" = 0 ]; }
mb_wait_for 12 regular_after "$s" || mb_fail "urgent flag stuck"
mb_log "ok: the next regular record is not urgent"
mb_assert "collectd alive" mb_collectd_alive
