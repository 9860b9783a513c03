#!/usr/bin/env bash
# PSI stall and workingset refaults from the guest record through vmmem to
# membal, on the real collectd + xenstored (sim backend): vmmem dispatches
# the new fields (percent for the averages, derive for the totals and
# counters) and membal rebuilds them into its sample, computes their rates
# and dispatches them per domain after a round: percent-stall_some/full
# (stall share of the elapsed time), operations_per_second-refault_file/
# anon. A guest whose record predates these keys is balanced
# as before and gets no stall values; one whose PSI figures cannot be true
# (full stall above some stall, avg10 above 100 %) is rejected as a whole,
# with the reason logged.
. "$(dirname "$0")/../lib/membal_lib.bash"

MiB=$MBT_MIB
total=$((8192 * MiB))
mb_xenstored_start
mbt_guests "$total" $((512 * MiB)) 4

# psi_record <domid> <seq> <uptime_ms> <some_us> <full_us> <refault_anon>
#   <refault_file>: vm1's record, with the new keys
psi_record() {
  xenstore-write -R "/local/domain/$1/data/membal/stats" "$(
    printf 'membal 1\nseq %s\nuptime_ms %s\nurgent 0\n' "$2" "$3"
    printf 'MemTotal %s\nMemFree %s\nMemAvailable %s\nAnonPages %s\n' $((1000 * MiB)) $((300 * MiB)) $((500 * MiB)) $((400 * MiB))
    printf 'SwapTotal 1048576\nSwapFree 1048576\n'
    printf 'pswpin 0\npswpout 0\npgmajfault 0\npgfault %s\n' "$(($2 * 100))"
    printf 'workingset_refault_anon %s\nworkingset_refault_file %s\n' "$6" "$7"
    printf 'psi_some_avg10_bp 1234\npsi_some_total_us %s\npsi_full_avg10_bp 105\npsi_full_total_us %s\n' "$4" "$5"
  )"
}
psi_record 1 1 10000 1000000 400000 100 5000
mbt_record 2 1 $((1000 * MiB)) $((200 * MiB))
hostile() { # hostile <domid> <PSI lines>: an otherwise good record
  xenstore-write -R "/local/domain/$1/data/membal/stats" "$(
    printf 'membal 1\nseq 1\nuptime_ms 1000\nMemTotal %s\nMemFree %s\n' $((1000 * MiB)) $((300 * MiB))
    printf '%s\n' "$2"
  )"
}
hostile 3 $'psi_some_total_us 5\npsi_full_total_us 6'
hostile 4 'psi_some_avg10_bp 10001'

mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Policy "cagma"
  Period 3600
  Reserve "1GiB"
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2

# vmmem's values of the new fields
pct_is() { awk -v a="$(mb_getval "$1")" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-6) }'; }
mb_wait_for 5 pct_is "$MB_HOSTNAME/vmmem-vm1/percent-guest_psi_some_avg10_bp" 12.34 ||
  mb_fail "vmmem percent-guest_psi_some_avg10_bp != 12.34"
mb_assert "vmmem full avg10 1.05 %" pct_is "$MB_HOSTNAME/vmmem-vm1/percent-guest_psi_full_avg10_bp" 1.05
listing=$(mb_collectdctl listval)
for v in derive-psi_some_total_us derive-psi_full_total_us \
  derive-workingset_refault_anon derive-workingset_refault_file; do
  mb_assert "listval has vmmem-vm1/$v" grep -q "vmmem-vm1/$v\$" <<<"$listing"
done
rrd=$MB_DIR/rrd/$MB_HOSTNAME/vmmem-vm1/derive-psi_some_total_us.rrd
mb_wait_for 5 test -f "$rrd" || mb_fail "no RRD $rrd"
mb_assert_eq 1000000 "$(rrdtool lastupdate "$rrd" | awk -F': ' 'NF == 2 { print $2 + 0 }')" "RRD psi_some_total_us (raw counter)"
if grep -q "vmmem-vm2/.*psi" <<<"$listing"; then mb_fail "PSI values for vm2, whose record has none"; fi

# the second record: 2 s of the guest's clock later, 300 ms some-stall and
# 100 ms full-stall (15 % and 5 %), 40 anon and 8000 file refaults
psi_record 1 2 12000 1300000 500000 140 13000
seq_is_2() { [ "$(mb_getval "$MB_HOSTNAME/vmmem-vm1/count-sample_seq")" = "2.000000e+00" ]; }
mb_wait_for 5 seq_is_2 || mb_fail "vmmem did not dispatch vm1's seq 2"
# membal's sample is rebuilt from vmmem's values, which do not carry the
# record's uptime_ms: its rates are timed by dom0 (between the reads that
# saw the two records, ~2 s here), so the shares are 0.3 s and 0.1 s over
# that time: their ratio is exact, their size within the test's timing.
has_stall() { mb_getval "$MB_HOSTNAME/membal-vm1/percent-stall_some" >/dev/null; }
# a round (flush) until membal has both samples of vm1 (the write queue
# may hand seq 2's values over after the first flush's round)
flushed_stall() {
  mb_collectdctl flush plugin=membal
  mb_wait_for 2 has_stall
}
mb_wait_for 10 flushed_stall || mb_fail "membal dispatched no stall share for vm1 after rounds"
ss=$(mb_getval "$MB_HOSTNAME/membal-vm1/percent-stall_some")
sf=$(mb_getval "$MB_HOSTNAME/membal-vm1/percent-stall_full")
mb_assert "membal stall_some/stall_full = 300/100 ms ($ss/$sf)" awk -v s="$ss" -v f="$sf" 'BEGIN { exit !(f > 0 && (s / f - 3) ^ 2 < 1e-10) }'
mb_assert "membal stall_some $ss % = 0.3 s over 0.5..20 s" awk -v s="$ss" 'BEGIN { exit !(s >= 1.5 && s <= 60) }'
rf=$(mb_getval "$MB_HOSTNAME/membal-vm1/operations_per_second-refault_file")
ra=$(mb_getval "$MB_HOSTNAME/membal-vm1/operations_per_second-refault_anon")
# dom0 times the refault rates (between the reads that saw the records):
# the ratio is exact, the magnitude within the test's timing
mb_assert "refault anon/file = 40/8000 ($ra/$rf)" awk -v a="$ra" -v f="$rf" 'BEGIN { exit !(f > 0 && (a / f - 0.005) ^ 2 < 1e-10) }'
mb_assert "refault_file $rf/s within 8000/20 s .. 8000/0.5 s" awk -v f="$rf" 'BEGIN { exit !(f >= 400 && f <= 16000) }'
if mb_getval "$MB_HOSTNAME/membal-vm2/percent-stall_some" >/dev/null 2>&1; then
  mb_fail "membal dispatched a stall share for vm2, whose record has no PSI"
fi
mb_assert "vm2 (old record format) got a target this round" mb_getval "$MB_HOSTNAME/membal-vm2/memory-target"
mb_assert "vm3's record rejected, reason logged" \
  mb_log_has 'vmmem: domain vm3 \(3\): guest record rejected: psi_full_total_us: 6 exceeds psi_some_total_us 5'
mb_assert "vm4's record rejected, reason logged" \
  mb_log_has 'vmmem: domain vm4 \(4\): guest record rejected: psi_some_avg10_bp: 10001 is above 10000'
if mb_getval "$MB_HOSTNAME/vmmem-vm3/memory-guest_MemTotal" >/dev/null 2>&1; then
  mb_fail "vmmem dispatched values of vm3's rejected record"
fi
mb_assert "no membal error" bash -c "! grep -E '\\[error\\] membal' '$MB_CD_LOG'"
mb_assert "collectd alive" mb_collectd_alive
