#!/usr/bin/env bash
# membal-policy on contrib/sample-host.txt and on broken host files.
# Usage: test_membal_policy.sh <membal-policy binary> <source dir>
set -u
bin=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # description, condition already evaluated as $?
  if [ "$2" -ne 0 ]; then echo "FAIL: $1"; fails=$((fails + 1)); else echo "ok: $1"; fi
}

for p in cagma tax selfballoon; do
  "$bin" -p "$p" "$src/contrib/sample-host.txt" >"$tmp/$p.out" 2>"$tmp/$p.err"
  check "$p runs" $?
  # five domains, one stale, sum of targets within the 14 GiB pool
  rows=$(awk '$1 ~ /^(web|db|batch|kvm|lost)$/' "$tmp/$p.out" | wc -l)
  [ "$rows" -eq 5 ]; check "$p prints 5 domains" $?
  awk '$1 == "lost" && $3 == 1048576 && $5 == "stale-frozen" {f=1} END {exit !f}' "$tmp/$p.out"
  check "$p keeps the stale domain" $?
  awk '$1 == "sum" {exit !($3 <= 14680064)}' "$tmp/$p.out"
  check "$p conserves the pool" $?
done
# the swapping web grows to its CMA: an emergency, or, when a donor's share
# of what web waits for is within the dead band (db's 1.6 MiB here: the
# envelope does not move a balloon for that), its growth is cut by the pool
# by less than the dead band (8 MiB)
awk '$1 == "web" && $3 > $2 && $3 + 8192 >= $6 &&
     ($5 == "emergency" || $5 == "pool-limit") {f=1} END {exit !f}' "$tmp/cagma.out"
check "cagma: swapping web grows to its CMA" $?
awk '$1 == "batch" && $4 < 0 {f=1} END {exit !f}' "$tmp/tax.out"
check "tax: idle batch is taxed" $?

# several rounds: the second starts where the first ended
"$bin" -r 3 "$src/contrib/sample-host.txt" >"$tmp/r3.out"
[ "$(grep -c '^round' "$tmp/r3.out")" -eq 3 ]; check "-r 3 prints 3 rounds" $?

# real /proc samples by file
cat >"$tmp/host.txt" <<EOT
host 64GiB 1GiB
domain big 24GiB 32GiB 1GiB 1 meminfo=$src/tests/data/meminfo-6.18 vmstat=$src/tests/data/vmstat-6.18
domain old 512MiB 1GiB 64MiB 1 meminfo=$src/tests/data/meminfo-2.6.18-xen vmstat=$src/tests/data/vmstat-2.6.18-xen
EOT
"$bin" -p selfballoon "$tmp/host.txt" >"$tmp/files.out" 2>&1
check "sample files are read" $?
# old: Committed_AS 245292: 524288 - (524288 - 245292) / 10 = 496389
awk '$1 == "old" && $3 == 496389 {f=1} END {exit !f}' "$tmp/files.out"
check "selfballoon target of the 2.6.18 guest" $?

# broken host files: exit 2, message names file and line
bad() { # expected message part, file content
  printf '%s\n' "$2" >"$tmp/bad.txt"
  "$bin" "$tmp/bad.txt" >/dev/null 2>"$tmp/bad.err"
  rc=$?
  [ $rc -eq 2 ] && grep -q -- "$1" "$tmp/bad.err"
  local ok=$?
  check "rejects: $1 (rc=$rc: $(cat "$tmp/bad.err"))" $ok
}
bad "bad.txt:2: DownHysteresis" $'host 1GiB 0\noption DownHysteresis x'
bad "DownHysteresis must be" $'host 1GiB 0\noption DownHysteresis 0'
bad "TaxRate must be" $'host 1GiB 0\noption TaxRate 1.5'
bad "unknown option" $'host 1GiB 0\noption Bogus 1'
bad "no 'host' line" 'domain a 1GiB 2GiB 0 1'
bad "bad.txt:2: domain" $'host 1GiB 0\ndomain a 1GiB'
bad "unknown domain key" $'host 1GiB 0\ndomain a 1GiB 2GiB 0 1 colour=blue'
bad "cannot read 'nonexistent'" $'host 1GiB 0\ndomain a 1GiB 2GiB 0 1 record=nonexistent'
bad "unknown line" 'hots 1GiB 0'
printf 'membal 1\nseq 1\nuptime_ms 5\nMemTotal 1000\nMemFree 2000\n' >"$tmp/rec"
bad "MemFree: 2000 kB exceeds" $'host 1GiB 0\ndomain a 1GiB 2GiB 0 1 record=rec'

[ $fails -eq 0 ] && echo "all ok" && exit 0
echo "$fails failed"
exit 1
