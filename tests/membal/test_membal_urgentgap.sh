#!/usr/bin/env bash
# UrgentInterval counts from the last round that served an urgent sample,
# not from any round: a periodic round that started before an urgent sample
# came did not see it, so the sample gets its round at once. A second
# urgent sample within UrgentInterval of that round waits (is served by the
# periodic rounds). Period 2 s, UrgentInterval 1 h: under the old rule
# (counted from any round's start) no round could ever run "on urgent
# sample" once periodic rounds run; under the new one exactly the first
# does. Real collectd, real xenstored, sim backend; LogRounds names each
# round's trigger.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
mb_xenstored_start
mbt_guests $((4096 * MiB)) $((512 * MiB)) 2
vmt_record 1 1 $((1024 * MiB)) $((600 * MiB))
vmt_record 2 1 $((1024 * MiB)) $((600 * MiB))
mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Period 2
  UrgentInterval 3600
  LogRounds true
  Reserve "512MiB"
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2

# round_line <n>: membal's LogRounds line of round n
round_line() { grep -E "membal: round $1 on " "$MB_CD_LOG"; }
round_trigger() { round_line "$1" | sed -E 's/.* round [0-9]+ on ([a-z ]+): .*/\1/'; }
# wait until periodic rounds run: two of them, so the next urgent sample
# comes after a periodic round's start (the case the old rule delayed)
mb_wait_for 60 vmt__round_after 1 || mb_fail "no periodic rounds (Period 2 s)"
r=$(vmt_round)
mb_wait_for 30 round_line "$r" || mb_fail "no LogRounds line for round $r"
mb_assert_eq "period" "$(round_trigger "$r")" "round $r's trigger"

# 1. an urgent sample after periodic rounds: a round on it
r0=$(vmt_round)
vmt_record 1 2 $((1024 * MiB)) $((100 * MiB)) 1
vmt_expect 30 2 vm1 count-sample_seq
# urgent_rounds: the numbers of the rounds run on an urgent sample, in order
urgent_rounds() { sed -nE 's/.* membal: round ([0-9]+) on urgent sample: .*/\1/p' "$MB_CD_LOG"; }
urgent_round_after() { [ "$(urgent_rounds | tail -n 1)" -gt "$1" ] 2>/dev/null; }
# a hang limit, not a speed check: the periodic rounds come every 2 s
# whatever the rule, so only the trigger named tells the rules apart
mb_wait_for 30 urgent_round_after "$r0" ||
  mb_fail "no round on the urgent sample after round $r0 (rounds since: $(grep -E 'membal: round' "$MB_CD_LOG" | tail -3))"
ru=$(urgent_rounds | tail -n 1)
mb_log "ok: round $ru ran on the urgent sample (after periodic round $r0)"

# 2. a second urgent sample within UrgentInterval of that round: no round
# on it; it is served by the periodic rounds (two of them, both after
# vmmem handed the sample over)
vmt_record 1 3 $((1024 * MiB)) $((90 * MiB)) 1
vmt_expect 30 3 vm1 count-sample_seq
r1=$(vmt_round)
mb_wait_for 30 vmt__round_after $((r1 + 1)) || mb_fail "no periodic rounds after the second urgent sample"
mb_wait_for 30 round_line $((r1 + 2)) || mb_fail "no LogRounds line for round $((r1 + 2))"
n_urgent=$(urgent_rounds | wc -l)
mb_assert_eq 1 "$n_urgent" "rounds on an urgent sample (the second is within UrgentInterval 1 h)"
for ((k = r1 + 1; k <= r1 + 2; k++)); do
  mb_assert_eq "period" "$(round_trigger "$k")" "round $k's trigger"
done
mb_assert "no membal error" bash -c "! grep -E '\\[error\\] membal' '$MB_CD_LOG'"
mb_assert "collectd alive" mb_collectd_alive
mb_collectd_stop
mb_log "urgent-gap test passed"
