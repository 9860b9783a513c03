#!/usr/bin/env python3
"""How much each test asserts, from ctest's JUnit output.

    ctest ... --output-junit run.xml --test-output-size-passed 100000000 \\
              --test-output-size-failed 100000000
    assert_counts.py run.xml                  one run: a table
    assert_counts.py before.xml after.xml [name-map]
                                              two runs side by side; exit 1
                                              on any difference

Per test: its status, CUnit's `asserts` (the Ran column, summed over every
CUnit summary in the output) and the check lines of the shell tests: the
harness's `ok`/`ok: ...` (mb_assert, mb_assert_eq, mb_log "ok: ..."),
test_membal_policy.sh's `ok: ...`, membal-bench's `check ...: ok`, and the
`N options checked` of test_options_documented.sh (counted as N).

name-map: a file of `old-name new-name` lines, for tests renamed between
the two runs.
"""
import re
import sys
import xml.etree.ElementTree as ET

CUNIT = re.compile(r"^\s*asserts\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", re.M)
# ctest -V prefixes "<n>: "; JUnit output does not. Harness lines start
# with "[test hh:mm:ss.mmm] ".
CHECK = re.compile(r"^(?:\[\S+ [0-9:.]+\] )?ok(?::|$)|^check .*: ok$", re.M)
OPTIONS = re.compile(r"^(\d+) options checked$", re.M)


def counts(path):
    out = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = tc.get("name")
        text = "".join(e.text or "" for e in tc.iter("system-out"))
        status = tc.get("status", "")
        if tc.find("failure") is not None:
            status = "fail"
        elif tc.find("skipped") is not None:
            status = "skipped"
        cunit = sum(int(m.group(2)) for m in CUNIT.finditer(text))
        checks = len(CHECK.findall(text))
        checks += sum(int(m.group(1)) for m in OPTIONS.finditer(text))
        out[name] = (status, cunit, checks)
    return out


def main(argv):
    if len(argv) not in (2, 3, 4):
        sys.exit(__doc__)
    a = counts(argv[1])
    if len(argv) == 2:
        print(f"{'test':40} {'status':8} {'cunit':>7} {'checks':>7}")
        for n in sorted(a):
            s, c, k = a[n]
            print(f"{n:40} {s:8} {c:7} {k:7}")
        return 0
    b = counts(argv[2])
    ren = {}
    if len(argv) == 4:
        with open(argv[3]) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    old, new = line.split()
                    ren[old] = new
    bad = 0
    print(f"{'before':40} {'after':30} {'status':15} {'cunit':>13} {'checks':>11}")
    for n in sorted(a):
        m = ren.get(n, n)
        s1, c1, k1 = a[n]
        if m not in b:
            print(f"{n:40} {'MISSING':30}")
            bad += 1
            continue
        s2, c2, k2 = b[m]
        diff = c1 != c2 or k1 != k2 or s1 != s2
        bad += diff
        print(f"{n:40} {m:30} {s1 + '/' + s2:15} {c1:6}/{c2:<6} {k1:5}/{k2:<5}"
              + ("  DIFFERS" if diff else ""))
    new = sorted(set(b) - {ren.get(n, n) for n in a})
    for m in new:
        print(f"{'(new)':40} {m:30}")
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
