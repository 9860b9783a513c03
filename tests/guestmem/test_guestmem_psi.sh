#!/usr/bin/env bash
# PSI stall and workingset refaults in the guest record, on the real
# collectd + xenstored: the record carries the pressure file's figures
# (avg10 in basis points, totals in microseconds) and the refault counters;
# a malformed pressure file costs the record only its PSI fields (the
# warning names what was wrong) and they come back with a sane file; a
# missing file (kernel without PSI) is said once. A plain file is not a
# kernel pressure file: the urgent check says so and polls vmstat instead,
# which still fires on a swap burst. The values reach the local collectd
# (percent and derive).
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
mb_guest_domain "$GM_DOMID"
gm_meminfo 2000000 500000
gm_vmstat 100 200 30 90000 77 123456
gm_pressure 12.34 5000000 1.05 1200000
gm_conf "$MB_DIR/collectd.conf" "UrgentPollInterval 0.1" "UrgentMinInterval 0.5"
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no first record"

# 1. the figures, exactly
mb_assert_eq 1234 "$(gm_field psi_some_avg10_bp)" "some avg10 12.34 % in basis points"
mb_assert_eq 5000000 "$(gm_field psi_some_total_us)" "some total µs"
mb_assert_eq 105 "$(gm_field psi_full_avg10_bp)" "full avg10 1.05 %"
mb_assert_eq 1200000 "$(gm_field psi_full_total_us)" "full total µs"
mb_assert_eq 77 "$(gm_field workingset_refault_anon)" "refault anon"
mb_assert_eq 123456 "$(gm_field workingset_refault_file)" "refault file"
raw=$(xenstore-read -R "$GM_DOM/data/membal/stats")
mb_assert "raw record line psi_some_avg10_bp 1234" grep -qx 'psi_some_avg10_bp 1234' <<<"$raw"
# every line after the header is "key decimal": what a dom0 that predates
# these keys needs to skip them
mb_assert "every record line is 'key decimal'" \
  bash -c "tail -n +2 <<<'$raw' | grep -Evx '[A-Za-z0-9_()]+ [0-9]+' | grep -q . && exit 1 || exit 0"

# 2. the urgent check falls back to vmstat polling on a plain file ...
mb_assert "log says the plain file is no kernel pressure file" \
  mb_log_has "guestmem: urgent check: no PSI trigger on $GM_PRESSURE: not a kernel pressure file"
mb_assert "log says the urgent check polls vmstat" mb_log_has 'urgent check on \(vmstat polling\)'
# ... and it fires on a swap burst
gm_vmstat 5100 200 30 90000 77 123456
mb_wait_for 5 bash -c "xenstore-read -R $GM_DOM/data/membal/stats | grep -qx 'urgent 1'" ||
  mb_fail "the vmstat fallback gave no urgent record for a 5000-page burst"
mb_assert "urgent publish logged as swap" mb_log_has 'guestmem: urgent record published \(swap [0-9]+ pages/s'

# 3. values in the local collectd
id=$MB_HOSTNAME/guestmem
mb_wait_for 5 mb_getval "$id/percent-psi_some_avg10_bp" || mb_fail "percent-psi_some_avg10_bp not in collectd"
got=$(mb_getval "$id/percent-psi_some_avg10_bp")
mb_assert "getval percent-psi_some_avg10_bp = $got = 12.34" awk -v g="$got" 'BEGIN { exit !(g > 12.339 && g < 12.341) }'
listing=$(mb_collectdctl listval)
for v in derive-psi_some_total_us derive-psi_full_total_us percent-psi_full_avg10_bp \
  derive-workingset_refault_anon derive-workingset_refault_file; do
  mb_assert "listval has $id/$v" grep -q "$id/$v\$" <<<"$listing"
done

# 4. hostile pressure files: the record still goes out, without PSI
for bad in "some avg10=300.00 avg60=0.00 avg300=0.00 total=1|avg10=" \
  "some avg10=0.00 avg60=0.00 avg300=0.00 total=99999999999999999999|total=" \
  "some avg10=0.00 avg60=0.00 avg300=0.00 total=5@some avg10=0.00 avg60=0.00 avg300=0.00 total=5|duplicate line some" \
  "some avg10=0.00 avg60=0.00 avg300=0.00 total=5@full avg10=0.00 avg60=0.00 avg300=0.00 total=9|exceeds psi_some_total_us"; do
  text=${bad%|*}
  want=${bad##*|}
  printf '%s\n' "$text" | tr '@' '\n' | gm_replace "$GM_PRESSURE"
  s=$(gm_field seq)
  mb_wait_for 5 gm_seq_above $((s + 1)) || mb_fail "no record after a bad pressure file ($want)"
  if gm_record | grep -q '^psi_'; then mb_fail "record kept PSI fields from a bad pressure file ($want)"; fi
  mb_assert_eq 123456 "$(gm_field workingset_refault_file)" "the rest of the record is there ($want)"
  mb_assert "warning names '$want'" mb_log_has "guestmem: $GM_PRESSURE rejected: .*$want.*; records go out without PSI"
  # the next sane file brings the fields back
  gm_pressure 0.50 6000000 0.00 1300000
  mb_wait_for 5 bash -c "[ \"\$(xenstore-read -R $GM_DOM/data/membal/stats | sed -n 's/^psi_some_total_us //p')\" = 6000000 ]" ||
    mb_fail "PSI fields did not come back after '$want'"
done
mb_assert "recovery logged" mb_log_has "guestmem: $GM_PRESSURE is readable again"

# 5. no pressure file (kernel without PSI): said once, records go on
rm -f "$GM_PRESSURE"
s=$(gm_field seq)
mb_wait_for 5 gm_seq_above $((s + 2)) || mb_fail "no records without a pressure file"
if gm_record | grep -q '^psi_'; then mb_fail "PSI fields without a pressure file"; fi
n=$(grep -c "guestmem: $GM_PRESSURE: cannot open: .*records carry no PSI" "$MB_CD_LOG" || true)
mb_assert_eq 1 "$n" "the missing pressure file is said exactly once"
mb_assert "no guestmem error logged" bash -c "! grep -E '\\[error\\] guestmem' '$MB_CD_LOG'"
mb_assert "collectd alive" mb_collectd_alive
