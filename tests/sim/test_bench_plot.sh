#!/usr/bin/env bash
# membal-bench's outputs for one scenario: a table per scenario with every
# policy, bench.csv with one row per policy, a per-second CSV and a PNG
# (rrdtool) per policy, and the same table twice for the same seed.
set -euo pipefail
bench=$MEMBAL_BUILD_DIR/sim/membal-bench
scn=$MEMBAL_SOURCE_DIR/sim/scenarios
out=$(mktemp -d /tmp/membal-bench-test.XXXXXX)
export LSAN_OPTIONS="suppressions=$MEMBAL_SOURCE_DIR/tests/sim/lsan-rrd.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bench" --scenarios "$scn" --only mono --oracle-rules 4 --out "$out/a" >"$out/a.txt" || fail "bench exit $?"
"$bench" --scenarios "$scn" --only mono --oracle-rules 4 --out "$out/b" --no-plot >"$out/b.txt" || fail "bench exit $?"
cmp -s "$out/a.txt" "$out/b.txt" || fail "same seed, different table"
npol=$("$MEMBAL_BUILD_DIR/sim/membal-sim" policies | wc -l)
[ "$npol" -ge 10 ] || fail "only $npol policies"
rows=$(($(wc -l <"$out/a/bench.csv") - 1))
[ "$rows" -eq "$npol" ] || fail "bench.csv has $rows rows, $npol policies"
grep -q "^== mono" "$out/a.txt" || fail "no mono table"
! grep -q "^== cagma" "$out/a.txt" || fail "--only ran another scenario"
while read -r pol _; do
  csv=$out/a/mono-$pol.csv
  [ -f "$csv" ] || fail "no $csv"
  # 480 s scenario: one row per simulated second plus the header
  [ "$(wc -l <"$csv")" -eq 481 ] || fail "$csv: $(wc -l <"$csv") lines"
  if ldd "$bench" | grep librrd >/dev/null; then
    png=$out/a/mono-$pol.png
    [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$png is not a PNG"
    [ "$(stat -c %s "$png")" -gt 5000 ] || fail "$png too small"
  fi
done < <("$MEMBAL_BUILD_DIR/sim/membal-sim" policies)
if ldd "$bench" | grep librrd >/dev/null; then
  [ "$(head -c 8 "$out/a/mono-swap.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] ||
    fail "no swap comparison PNG"
fi
# --config adds a labelled membal row; a bad option is refused
"$bench" --scenarios "$scn" --only mono --oracle-rules 1 --no-plot --out "$out/e" \
  --config "$MEMBAL_SOURCE_DIR/sim/configs/interval1.conf" >"$out/e.txt" || fail "config run exit $?"
grep -q "^cfg:interval1 " "$out/e.txt" || fail "no cfg:interval1 row"
printf 'Period fast\n' >"$out/bad.conf"
! "$bench" --scenarios "$scn" --only mono --out "$out/f" --config "$out/bad.conf" 2>"$out/f.err" || fail "bad config accepted"
grep -q "Period" "$out/f.err" || fail "bad config error does not name the option"
# a different seed changes a jittered scenario, not the parser's view
"$bench" --scenarios "$scn" --only consol10 --oracle-rules 1 --out "$out/c" --no-plot --seed 2 >"$out/c.txt"
"$bench" --scenarios "$scn" --only consol10 --oracle-rules 1 --out "$out/d" --no-plot --seed 3 >"$out/d.txt"
! cmp -s "$out/c.txt" "$out/d.txt" || fail "seed has no effect on consol10"
echo ok
