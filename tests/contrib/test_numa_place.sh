#!/usr/bin/env bash
# membal-numa-place: placements per policy, generated libvirt XML defined
# and started in libvirt's test driver (virDomainDefineXML through virsh),
# xl config values, node count from --nodes, --uri and sysfs, and strict
# input parsing (errors name the line, nothing is written).
. "${MEMBAL_SOURCE_DIR:?}/tests/lib/harness.sh"

tool=$MEMBAL_BUILD_DIR/contrib/membal-numa-place
[ -x "$tool" ] || mb_skip "membal-numa-place not built"
command -v virsh >/dev/null || mb_skip "virsh (libvirt-clients) missing"

# Attribute value of the first <memory mode=... nodeset=...> in a file.
numa_attr() { sed -n "s/.*<memory mode='\([a-z]*\)' nodeset='\([0-9,-]*\)'.*/\\$2/p" "$1" | head -n1; }

# ---- round-robin: VM i on node (i-1) mod N, values carried through
input="2 2048
# a comment, then a blank line

4 4096
1 512
3 1536
2 1024"
mkdir -p "$MB_DIR/rr"
printf '%s\n' "$input" | "$tool" --policy round-robin --nodes 3 --outdir "$MB_DIR/rr"
i=0
while read -r vcpus mib; do
  case "$vcpus" in '' | '#'*) continue ;; esac
  i=$((i + 1))
  f=$MB_DIR/rr/vm$i.xml
  [ -f "$f" ] || mb_fail "round-robin: $f not written"
  mb_assert_eq "strict" "$(numa_attr "$f" 1)" "vm$i mode"
  mb_assert_eq "$(((i - 1) % 3))" "$(numa_attr "$f" 2)" "vm$i node"
  mb_assert_eq "$mib" "$(sed -n "s/.*<memory unit='MiB'>\([0-9]*\)<.*/\1/p" "$f")" "vm$i memory"
  mb_assert_eq "$vcpus" "$(sed -n "s/.*<vcpu[^>]*>\([0-9]*\)<.*/\1/p" "$f")" "vm$i vcpus"
done <<<"$input"
mb_assert_eq 5 "$i" "VMs read"
mb_assert_eq 5 "$(find "$MB_DIR/rr" -name '*.xml' | wc -l)" "files written"

# ---- the generated XML is accepted by libvirt (test driver): define,
# start, and libvirt's own dump keeps the placement
cmds=""
for j in 1 2 3 4 5; do cmds+="define $MB_DIR/rr/vm$j.xml; start vm$j; "; done
for j in 1 2 3 4 5; do cmds+="dumpxml vm$j; "; done
virsh -q -c test:///default "$cmds" >"$MB_DIR/virsh.out" 2>"$MB_DIR/virsh.err" ||
  mb_fail "virsh define/start refused the XML: $(cat "$MB_DIR/virsh.err")"
mb_assert_eq 5 "$(grep -c "<memory mode='strict' nodeset='[0-2]'/>" "$MB_DIR/virsh.out")" "numatune kept by libvirt"
mb_assert_eq "0 1 2 0 1" "$(sed -n "s/.*<memory mode='strict' nodeset='\([0-9]\)'.*/\1/p" "$MB_DIR/virsh.out" | tr '\n' ' ' | sed 's/ $//')" "nodes as libvirt stored them"
# 1536 MiB as libvirt stores it, in KiB
grep -q "<memory unit='KiB'>$((1536 * 1024))</memory>" "$MB_DIR/virsh.out" || mb_fail "vm4 memory not 1536 MiB in libvirt"
grep -q "<stats period='5'/>" "$MB_DIR/virsh.out" || mb_fail "balloon stats period missing"

# ---- interleave: across nodes 0..k-1 (all nodes, or --span)
out=$(printf '2 2048\n' | "$tool" -p interleave --nodes 4)
grep -q "<memory mode='interleave' nodeset='0-3'/>" <<<"$out" || mb_fail "interleave over 4 nodes: $out"
out=$(printf '2 2048\n' | "$tool" -p interleave --nodes 4 --span 2)
grep -q "<memory mode='interleave' nodeset='0-1'/>" <<<"$out" || mb_fail "interleave --span 2: $out"
mkdir -p "$MB_DIR/il"
printf '4 4096\n2 1000\n' | "$tool" -p interleave --nodes 2 -o "$MB_DIR/il" --prefix il
virsh -q -c test:///default "define $MB_DIR/il/il1.xml; define $MB_DIR/il/il2.xml; start il1; dumpxml il1" \
  >"$MB_DIR/virsh-il.out" 2>&1 || mb_fail "virsh refused interleave XML: $(cat "$MB_DIR/virsh-il.out")"
grep -q "<memory mode='interleave' nodeset='0-1'/>" "$MB_DIR/virsh-il.out" || mb_fail "libvirt lost interleave"

# ---- random: reproducible per seed, every node in range, all nodes used
r1=$(seq 1 40 | sed 's/.*/1 256/' | "$tool" -p random --nodes 2 --seed 42)
r2=$(seq 1 40 | sed 's/.*/1 256/' | "$tool" -p random --nodes 2 --seed 42)
r3=$(seq 1 40 | sed 's/.*/1 256/' | "$tool" -p random --nodes 2 --seed 43)
[ "$r1" = "$r2" ] || mb_fail "random: same seed, different placement"
[ "$r1" != "$r3" ] || mb_fail "random: seeds 42 and 43 gave the same 40 placements"
nodes=$(sed -n "s/.*nodeset='\([0-9]*\)'.*/\1/p" <<<"$r1" | sort -u | tr '\n' ' ')
mb_assert_eq "0 1 " "$nodes" "random: nodes drawn out of 2 over 40 VMs"
mb_assert_eq 40 "$(grep -c "<memory mode='strict'" <<<"$r1")" "random: one strict node per VM"

# ---- xl configs
xl=$(printf '2 2048\n3 1000\n1 512\n' | "$tool" -p round-robin --nodes 2 -f xl)
mb_assert_eq 'cpus = "node:0"
cpus = "node:1"
cpus = "node:0"' "$(grep '^cpus' <<<"$xl")" "xl round-robin cpus"
mb_assert_eq "2048 1000 512" "$(sed -n 's/^memory = //p' <<<"$xl" | tr '\n' ' ' | sed 's/ $//')" "xl memory"
mb_assert_eq "2 3 1" "$(sed -n 's/^vcpus = //p' <<<"$xl" | tr '\n' ' ' | sed 's/ $//')" "xl vcpus"
xl=$(printf '3 1001\n' | "$tool" -p interleave --nodes 2 -f xl)
grep -qx 'cpus = "nodes:0-1"' <<<"$xl" || mb_fail "xl interleave cpus: $xl"
vn=$(sed -n 's/^vnuma = //p' <<<"$xl")
[ -n "$vn" ] || mb_fail "xl interleave: no vnuma line"
sizes=$(grep -o '"size=[0-9]*"' <<<"$vn" | tr -dc '0-9\n')
mb_assert_eq 1001 "$(($(tr '\n' '+' <<<"$sizes")0))" "vnuma sizes sum to memory"
mb_assert_eq '"pnode=0" "pnode=1"' "$(grep -o '"pnode=[0-9]*"' <<<"$vn" | tr '\n' ' ' | sed 's/ $//')" "vnuma pnodes"
mb_assert_eq '"vcpus=0-1" "vcpus=2"' "$(grep -o '"vcpus=[0-9-]*"' <<<"$vn" | tr '\n' ' ' | sed 's/ $//')" "vnuma vcpus cover 0..2"
mb_assert_eq '"vdistances=10,20" "vdistances=20,10"' "$(grep -o '"vdistances=[0-9,]*"' <<<"$vn" | tr '\n' ' ' | sed 's/ $//')" "vnuma distances"

# ---- node count from libvirt (--uri) and from sysfs
out=$(printf '1 256\n1 256\n1 256\n' | "$tool" -p round-robin --uri "test://$MEMBAL_SOURCE_DIR/tests/data/libvirt-host.xml")
hostnodes=$(sed -n 's:.*<nodes>\([0-9]*\)</nodes>.*:\1:p' "$MEMBAL_SOURCE_DIR/tests/data/libvirt-host.xml")
want=""
for j in 0 1 2; do want+="$((j % hostnodes)) "; done
mb_assert_eq "$want" "$(sed -n "s/.*nodeset='\([0-9]*\)'.*/\1/p" <<<"$out" | tr '\n' ' ')" "round-robin over the libvirt host's nodes"
if [ -r /sys/devices/system/node/online ]; then
  online=$(cat /sys/devices/system/node/online)
  out=$(printf '1 256\n' | "$tool" -p interleave)
  # sysfs "0" or "0-3" or "0,2": the tool's nodeset is the same list
  mb_assert_eq "$online" "$(sed -n "s/.*nodeset='\([0-9,-]*\)'.*/\1/p" <<<"$out")" "interleave over sysfs's online nodes"
fi
if "$tool" -p random --uri test:///nonexistent/host.xml </dev/null 2>"$MB_DIR/e"; then
  mb_fail "unreachable --uri accepted"
fi
grep -q "nonexistent" "$MB_DIR/e" || mb_fail "--uri error does not name the URI: $(cat "$MB_DIR/e")"

# ---- strict input: the error names the line, nothing is written
bad() { # <line number expected> <input>
  local rc=0
  printf '%b' "$2" | "$tool" -p round-robin --nodes 2 >"$MB_DIR/o" 2>"$MB_DIR/e" || rc=$?
  [ "$rc" -ne 0 ] || mb_fail "bad input accepted: $2"
  grep -q "line $1:" "$MB_DIR/e" || mb_fail "error for '$2' does not name line $1: $(cat "$MB_DIR/e")"
  [ ! -s "$MB_DIR/o" ] || mb_fail "output written despite bad input '$2'"
}
bad 3 '1 512\n2 1024\n2 abc\n'
bad 1 '0 512\n'
bad 1 '1 0\n'
bad 1 '-1 512\n'
bad 1 '+1 512\n'
bad 2 '1 512\n1 512 extra\n'
bad 1 '1\n'
bad 1 '1 99999999999999999999999\n'
bad 1 '1 5e3\n'
bad 1 '1 0x10\n'
bad 1 '4097 512\n'
bad 2 '1 512\n1 \0512\n'
bad 1 "1 $(head -c 5000 /dev/zero | tr '\0' 1)\n"

# ---- options
opt_bad() {
  if "$tool" "$@" </dev/null >/dev/null 2>"$MB_DIR/e"; then mb_fail "accepted: $*"; fi
  [ -s "$MB_DIR/e" ] || mb_fail "no message for: $*"
}
opt_bad --nodes 2
opt_bad -p sideways --nodes 2
opt_bad -p random --nodes 0
opt_bad -p random --nodes 2 --uri test:///default
opt_bad -p interleave --nodes 2 --span 3
opt_bad -p random --nodes 2 --prefix "a'b"
opt_bad -p random --nodes 2 -f yaml
opt_bad -p random --nodes 2 --prefix "$(head -c 100 /dev/zero | tr '\0' a)"
opt_bad -p random --nodes 2 --outdir "$MB_DIR/missing"

# empty input: no VM, no output, success
out=$("$tool" -p random --nodes 2 </dev/null)
mb_assert_eq "" "$out" "empty input"
mb_log "PASS"
