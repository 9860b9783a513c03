#!/usr/bin/env python3
"""Host-side checks of one e2e run, from what dom0 brought back.

usage: check.py RESULTS_DIR DOM0_COLLECTD_CONF

Reads facts.txt, timeline.tsv (dom0 sampled xl list + xenstore every second),
membal's CSV values, the RRD files (rrdtool fetch). Prints one PASS/FAIL line
per check and a SUMMARY line with the timings; exits 1 when a check failed.
"""
import glob
import math
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import storm_chain  # noqa: E402

res, conf_path = sys.argv[1], sys.argv[2]
fails = []


def check(name, ok, detail):
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        fails.append(name)


def mib(kib):
    return f"{kib / 1024:.0f}MiB"


facts = {}
with open(os.path.join(res, "facts.txt")) as f:
    for line in f:
        k, _, v = line.strip().partition("=")
        facts[k] = v

# Per-domain bounds as configured for membal (KiB).
UNITS = {"k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1 << 20, "gib": 1 << 20}
bounds = {}
dom = None
with open(conf_path) as f:
    for line in f:
        m = re.match(r'\s*<Domain "([^"]+)">', line)
        if m:
            dom = m.group(1)
            bounds[dom] = {}
            continue
        if re.match(r"\s*</Domain>", line):
            dom = None
            continue
        m = re.match(r'\s*(Min|Max)\s+"?(\d+)\s*([A-Za-z]*)"?', line)
        if dom and m:
            bounds[dom][m.group(1)] = int(m.group(2)) * UNITS.get(m.group(3).lower() or "k", 1)

# timeline: t name domid target_kib actual_kib seq MemTotal MemAvailable
#           SwapTotal SwapFree pswpin pswpout load_mib phase
rows = []
with open(os.path.join(res, "timeline.tsv")) as f:
    head = f.readline().split()
    for line in f:
        p = line.split()
        if len(p) != len(head):
            continue
        r = dict(zip(head, p))
        for k in head:
            if k in ("name", "phase"):
                continue
            try:
                r[k] = float(r[k])
            except ValueError:
                r[k] = None
        rows.append(r)
# The scenario's guests: those with a <Domain> block (the reserve phase's
# 4th guest lives a few seconds and has none).
names = sorted({r["name"] for r in rows if r["name"] in bounds})
by = {n: [r for r in rows if r["name"] == n] for n in names}
if "busy" not in by or len(by["busy"]) < 5:
    check("timeline", False, f"too few samples of the busy guest ({len(by.get('busy', []))})")
    print("SUMMARY xen-e2e FAIL: no timeline")
    sys.exit(1)

surge = float(facts.get("surge_s", "nan"))
surge_mib = int(facts.get("surge_mib", "0"))
idle = [n for n in names if n != "busy"]


def at_or_before(n, t):
    prev = None
    for r in by[n]:
        if r["t"] > t:
            break
        prev = r
    return prev or by[n][0]


def csv_series(path_glob):
    out = []
    for p in sorted(glob.glob(os.path.join(res, "csv", "dom0", path_glob))):
        with open(p) as f:
            for line in f:
                a = line.strip().split(",")
                if len(a) == 2 and re.match(r"^[0-9.]+$", a[0]):
                    out.append((float(a[0]), float(a[1])))
    return out


# --- bounds: every target membal set and every target seen in xenstore
for n in names:
    lo = bounds.get(n, {}).get("Min")
    hi = bounds.get(n, {}).get("Max")
    tg = [r["target_kib"] for r in by[n] if r["target_kib"] is not None]
    sets = [v / 1024 for _, v in csv_series(f"membal-{n}/memory-target-*")]
    if lo is None or hi is None:
        check(f"bounds_{n}", False, "no Min/Max configured for it")
        continue
    # Before membal's first round the guest holds what xl gave it.
    bad = [v for v in sets if v < lo or v > hi]
    check(f"bounds_{n}", not bad and bool(sets),
          f"{len(sets)} membal targets in [{mib(lo)}, {mib(hi)}]"
          + (f"; outside: {mib(min(bad))}..{mib(max(bad))}" if bad else "")
          + f"; xenstore targets {mib(min(tg))}..{mib(max(tg))}")

# --- sum of targets within the pool, every round
pool = csv_series("membal/memory-pool-*")
sums = csv_series("membal/memory-sum_targets-*")
pool_at = dict(pool)
over = [(t, s, pool_at[t]) for t, s in sums if t in pool_at and s > pool_at[t]]
check("sum_within_pool", bool(sums) and not over,
      f"{len(sums)} rounds, max sum {mib(max((s for _, s in sums), default=0) / 1024)}"
      f" vs pool {mib(min((p for _, p in pool), default=0) / 1024)}..{mib(max((p for _, p in pool), default=0) / 1024)}"
      + (f"; {len(over)} rounds over the pool" if over else ""))

# --- memory moves from the idle guests to the busy one
b0 = at_or_before("busy", surge)
# The surge's window ends where the storm phase begins (the storm swaps on
# purpose; its own checks are below).
surge_end = float(facts.get("phase_storm_s", facts.get("phase_cost_s", facts.get("end_s", "inf"))))
after = [r for r in by["busy"] if surge < r["t"] < surge_end]
# The pool before the storm (the reserve phase keeps 256 MiB out of it
# later, which would make this check easier).
pool_pre = [p for t, p in pool if "storm_rt" not in facts or t < float(facts["storm_rt"])] or [p for _, p in pool]
pool_kib = (min(pool_pre) / 1024) if pool_pre else float("nan")
start_targets = sum(by[n][0]["target_kib"] or 0 for n in names)
free_at_start = pool_kib - start_targets
busy_peak = max((r["actual_kib"] or 0) for r in after) if after else 0
busy_gain = busy_peak - (by["busy"][0]["actual_kib"] or 0)
idle_drop = {n: (by[n][0]["actual_kib"] or 0) - min((r["actual_kib"] or 0) for r in by[n]) for n in idle}
check("idle_to_busy", busy_gain > free_at_start and all(v > 0 for v in idle_drop.values()),
      f"busy grew {mib(busy_gain)} (peak {mib(busy_peak)}), more than the {mib(free_at_start)} the pool had "
      f"free at start; idle guests gave " + ", ".join(f"{n} {mib(v)}" for n, v in idle_drop.items()))

# --- timings: surge -> first target change -> guest memory covers demand
base_used = (b0["MemTotal"] - b0["MemAvailable"]) if b0["MemTotal"] and b0["MemAvailable"] else None
demand = base_used + surge_mib * 1024 if base_used is not None else None
t_change = next((r["t"] for r in after if r["target_kib"] != b0["target_kib"]), None)
t_cover = next((r["t"] for r in after if demand and r["MemTotal"] and r["MemTotal"] >= demand), None)
t_high = float(facts["surge_high_s"]) if "surge_high_s" in facts else None
check("target_changed", t_change is not None,
      f"first busy target change {t_change - surge:.1f}s after the surge" if t_change else "busy target never changed")
# Covers demand, measured against the balloon speed of this run (xl mem-set
# grew idle2 by memset_grow_kib in memset_grow_s): once the workload holds
# its peak, membal needs at most a Period and a guest Interval to see it and
# two vmmem reads, then the balloon moves what was missing at that speed. Twice
# that is allowed (the memset figure includes polling); a miss means membal
# left the guest short.
PERIOD_S, INTERVAL_S = 6.0, 2.0
speed = None
if facts.get("memset_grow_kib") and facts.get("memset_grow_s"):
    gs = float(facts["memset_grow_s"])
    if gs > 0:
        speed = float(facts["memset_grow_kib"]) / gs
high_row = at_or_before("busy", t_high) if t_high is not None else None
deficit = (demand - high_row["MemTotal"]) if (high_row and demand and high_row["MemTotal"]) else None
if t_cover is not None and t_high is not None and speed:
    lag = t_cover - t_high
    allowed = 2 * (PERIOD_S + 2 * INTERVAL_S + max(deficit or 0, 0) / speed)
    check("demand_covered", lag <= allowed,
          f"busy MemTotal >= demand {mib(demand)} ({mib(base_used)} before + {surge_mib}MiB) "
          f"{t_cover - surge:.1f}s after the surge, {lag:.1f}s after the workload reached it "
          f"(allowed {allowed:.1f}s: 2 x (Period {PERIOD_S:.0f}s + 2 x Interval {INTERVAL_S:.0f}s + "
          f"deficit {mib(max(deficit or 0, 0))} at {speed / 1024:.0f}MiB/s, this run's balloon speed))")
else:
    check("demand_covered", False,
          f"busy MemTotal never reached the demand {mib(demand) if demand else '?'}" if t_cover is None else
          f"no balloon speed or workload peak time to compare with (speed {speed}, high {t_high})")

# --- swap-in bound
# Once the guest holds its working set, nothing it touches is in swap any
# more: the pages swapped out while it was short come back on the next
# touch pass (memload touches everything every 200 ms) and then stay. So in
# the second half of the hold at HIGH, when membal has had the first half
# to grow the guest, swap-ins must be at most 1% of the workload's pages
# (stragglers); without balancing the guest faults in a large part of its
# deficit on every pass (the failed runs saw >1000 pages/s).
wl_pages = surge_mib * 256
hold = [r for r in after if r["phase"] == "high" and r["pswpin"] is not None]
if t_high is not None and len(hold) >= 4:
    half = hold[len(hold) // 2:]
    d_in = half[-1]["pswpin"] - half[0]["pswpin"]
    dur = half[-1]["t"] - half[0]["t"]
    limit = wl_pages / 100
    check("swapin_bound", d_in <= limit,
          f"{d_in:.0f} pages swapped in during the last {dur:.0f}s at {surge_mib}MiB (bound {limit:.0f} = 1% of "
          f"the workload's {wl_pages} pages)")
else:
    check("swapin_bound", False, "the workload never held its peak: no steady state to measure")
sw_total = None
if after and after[-1]["pswpin"] is not None and b0["pswpin"] is not None:
    sw_total = after[-1]["pswpin"] - b0["pswpin"]
# Over the whole run: at most the workload's own page count, i.e. each page
# swapped back in once on average while the guest was short. Runs in which
# membal could not grow the guest (libxl's max taken for the ceiling) swapped
# in 497k-548k pages in the same scenario, 3x the workload; runs that grew it
# a few thousand.
check("swapin_total", sw_total is not None and sw_total <= wl_pages,
      f"{sw_total if sw_total is not None else '?'} pages swapped in from the surge to the storm "
      f"(bound {wl_pages} = the workload's pages)")


# --- the storm: the reaction chain from the guest's first signal
# Clocks: the guest's stamps (e2e-stamp signals) and dom0's (e2e-stamp
# watch, membal's round lines) are CLOCK_REALTIME of domains of one Xen
# host, i.e. the same clock; the order signal <= record seen is checked.
ROUND_RE = re.compile(r"membal: round (\d+) on ([a-z ]+): started ([\d.]+), done ([\d.]+)")
TARGET_RE = re.compile(r"membal: (\S+) \(domid (\d+)\) target ([\d.]+) MiB -> ([\d.]+) MiB: .*round on ([a-z ]+)\)")
rounds = []  # (n, trigger, started, done, {name: (from_mib, to_mib)})
pending = {}
try:
    with open(os.path.join(res, "collectd.log"), errors="replace") as f:
        for line in f:
            m = TARGET_RE.search(line)
            if m:
                pending[m.group(1)] = (float(m.group(3)), float(m.group(4)))
                continue
            m = ROUND_RE.search(line)
            if m:
                calls = re.search(r"; set target (.*)$", line.rstrip())
                listed = re.search(r"; host and list (\d+) ms", line)
                rounds.append((int(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4)), pending,
                               (f"host and list {listed.group(1)} ms, " if listed else "")
                               + (calls.group(1) if calls else "")))
                pending = {}
except OSError:
    pass
events = []  # (t, path, value)
try:
    with open(os.path.join(res, "watch.log"), errors="replace") as f:
        for line in f:
            a = line.rstrip("\n").split(" ", 2)
            if len(a) == 3:
                try:
                    events.append((float(a[0]), a[1], a[2]))
                except ValueError:
                    pass
except OSError:
    pass
chain = {}
storm_txt = "no storm"
if "storm_rt" in facts:
    sig = facts.get("storm_signal", "").split()
    stats_path = next((p for _, p, _ in events if p.endswith("/data/membal/stats")), None)
    bid = stats_path.split("/")[3] if stats_path else None
    tpath = f"/local/domain/{bid}/memory/target" if bid else None
    bal = [e.split() for e in facts.get("storm_balloon", "").split(";") if e.strip()]
    # The guest's CLOCK_REALTIME is not dom0's: a real run's guest stood
    # 2.7-2.9 s behind (each domain reads the wall clock at its own boot).
    # storm_chain.guest_offset() says how it is corrected, and why the
    # chain measured from the corrected signal is never shorter than real.
    dom0_tg = [(t, int(v)) for t, p, v in events if p == tpath and v.strip().isdigit()]
    g_off, n_diffs = storm_chain.guest_offset(bal, dom0_tg)
    print(f"INFO clocks: guest stamps + {g_off:.3f}s = dom0's clock (smallest of {n_diffs} dom0 write -> "
          f"guest sighting differences of busy's targets" + ("" if n_diffs else "; none: uncorrected") + ")")
    # And from the other direction, when dom0 watched the guest's own
    # writes of its events (runs from 2347a8d on): an upper bound.
    spaths = (f"/local/domain/{bid}/data/e2e/signal", f"/local/domain/{bid}/data/e2e/signal-balloon")
    g_up, n_up = storm_chain.guest_offset_upper([(t, v) for t, p, v in events if p in spaths])
    if g_up is not None:
        print(f"INFO clocks: at most + {g_up:.3f}s (smallest of {n_up} dom0 sighting - guest stamp differences "
              f"of its event writes): the offset is within [{g_off:.3f}, {g_up:.3f}]s"
              + ("" if g_up >= g_off - 0.05 else "; below the lower bound: not used"))
        if g_up < g_off - 0.05:
            g_up = None
    sig_raw = float(sig[0]) if sig else None
    if sig:
        sig[0] = f"{float(sig[0]) + g_off:.3f}"
    bal = [[f"{float(e[0]) + g_off:.3f}"] + e[1:] for e in bal]
    t_sig = float(sig[0]) if sig else None
    kind = " ".join(sig[1:]) if sig else "none"
    t_urg = None
    if t_sig is not None:
        t_urg = next((t for t, p, v in events
                      if p == stats_path and t >= t_sig - 0.05 and re.search(r"(^| )urgent 1( |$)", v)), None)
    # The first urgent round after the signal, and the first round after it
    # that grew busy (whatever its trigger).
    urg_round = next((r for r in rounds if t_sig is not None and r[2] >= t_sig and r[1] in ("urgent notification", "urgent sample")), None)
    first_grow = next((r for r in rounds if t_sig is not None and r[2] >= t_sig
                       and "busy" in r[4] and r[4]["busy"][1] > r[4]["busy"][0]), None)
    grew = urg_round is not None and "busy" in urg_round[4] and urg_round[4]["busy"][1] > urg_round[4]["busy"][0]
    # The watcher's stamp is taken when e2e-stamp wakes up; on a loaded dom0
    # vmmem's own watch can be served first (run 6: the urgent round started
    # 0.17 s before the stamp). The round cannot start before the record
    # arrived, so the record's time is the earlier of the two.
    if t_urg is not None and urg_round is not None and urg_round[2] < t_urg:
        print(f"INFO urgent record stamped {t_urg - urg_round[2]:.2f}s after the urgent round started: "
              f"the round's start is taken as the record's arrival")
        t_urg = urg_round[2]
    t_tgt = new_kib = None
    if grew:
        new_kib = round(urg_round[4]["busy"][1] * 1024)
        t_tgt = next((t for t, p, v in events if p == tpath and t >= urg_round[2] - 0.05
                      and v.strip().isdigit() and abs(int(v) - new_kib) <= 1024), None)
    # The guest's balloon at the target in force after the urgent round's
    # write: storm_chain.balloon_at_target() says how it is found.
    t_bal = bal_kib = None
    if t_tgt is not None:
        t_bal, bal_kib = storm_chain.balloon_at_target(bal, dom0_tg, t_sig, t_tgt)
    chain = {"signal": t_sig, "urgent record": t_urg, "round start": urg_round[2] if urg_round else None,
             "target written": t_tgt, "balloon at target": t_bal}

    def step(a, b):
        return f"{chain[b] - chain[a]:.2f}s" if chain[a] is not None and chain[b] is not None else "?"

    steps = (f"{kind} -> urgent record in xenstore {step('signal', 'urgent record')} -> membal round start "
             f"{step('urgent record', 'round start')} -> target written {step('round start', 'target written')} "
             f"-> balloon at target {step('target written', 'balloon at target')}")
    check("storm_signal", t_sig is not None,
          f"the busy guest signalled ({kind}) {t_sig - float(facts['storm_rt']):.2f}s after the storm's command "
          f"(guest clock corrected by {g_off:+.3f}s)"
          if t_sig is not None else "the busy guest neither swapped nor stalled")
    check("storm_urgent_record", t_urg is not None,
          f"an urgent record (urgent 1) reached xenstore {t_urg - t_sig:.2f}s after the signal" if t_urg is not None
          else "no urgent record after the signal")
    order = [chain[k] for k in ("signal", "urgent record", "round start", "target written", "balloon at target")]
    known = [t for t in order if t is not None]
    check("storm_clock_order", all(b >= a - 0.05 for a, b in zip(known, known[1:])),
          "signal <= record <= round <= target <= balloon (guest stamps on dom0's clock)"
          if all(b >= a - 0.05 for a, b in zip(known, known[1:])) else f"out of order: {order}")
    between = [r for r in rounds if t_sig is not None and urg_round is not None and t_sig <= r[2] < urg_round[2]]
    # The urgent round must grow the guest; a periodic round before it may
    # have grown it too (membal's forecast sees the burst): reported.
    check("storm_urgent_round", grew and urg_round is not None and t_urg is not None and urg_round[2] >= t_urg - 0.05,
          (f"round {urg_round[0]} on {urg_round[1]} started {urg_round[2] - t_urg:.2f}s after the urgent record "
           f"and grew busy {urg_round[4]['busy'][0]:.0f} -> {urg_round[4]['busy'][1]:.0f} MiB"
           + (f"; first round to grow busy after the signal: {first_grow[0]} on {first_grow[1]}" if first_grow else "")
           + (f"; {len(between)} other round(s) between signal and it: "
              + ", ".join(f"{r[0]} on {r[1]}" for r in between) if between else "; no other round between"))
          if grew else
          (f"round {urg_round[0]} on {urg_round[1]} did not grow busy ({urg_round[4].get('busy')})"
           if urg_round else "no urgent round after the signal"))
    lat = chain["target written"] - chain["signal"] if chain["target written"] is not None and t_sig is not None else None
    # No Period or Interval wait in the chain: the record was the urgent
    # thread's (urgent 1, not the Interval's) and the round the urgent
    # notification's (not the Period's), checked above. The time is
    # reported against the goal (<= 1 s under TCG), not checked: a round
    # itself took up to 7 s on a host loaded 15-fold.
    # The same with the signal on the upper clock bound: the shortest the
    # chain can have been.
    lat_short = (chain["target written"] - (sig_raw + g_up)
                 if lat is not None and g_up is not None and sig_raw is not None else None)
    bounds_txt = (f"; by the clock bounds {lat_short:.2f}-{lat:.2f}s"
                  + (" (goal met at the tight bound)" if lat > 1.0 and lat_short <= 1.0 else "")
                  if lat_short is not None else "")
    # The signal is the first microsecond of stall the guest's 50 ms poll
    # saw, which a storm can precede by seconds of light stall (hog run 38
    # of session 7: 18 s). Also from the first poll that saw 150 ms of
    # stall within a second (e2e-stamp's "stall150", guestmem's default
    # trigger threshold), on the same corrected clock: both are reported.
    s150 = next((float(e[0]) for e in bal if len(e) >= 2 and e[1] == "stall150"), None)
    if lat is not None and s150 is not None:
        bounds_txt += f"; from 150 ms of stall in 1 s {chain['target written'] - s150:.2f}s"
    check("storm_reaction", lat is not None and lat >= -0.05,
          f"signal -> target written {lat:.2f}s (goal <= 1s under TCG: "
          f"{'met' if lat <= 1.0 else 'MISSED'}{bounds_txt}): {steps}" if lat is not None
          else f"chain incomplete: {steps}")
    check("storm_balloon", t_bal is not None,
          (f"busy's balloon stood at its target {bal_kib // 1024} MiB {t_bal - t_tgt:.2f}s after the urgent "
           f"round wrote {new_kib // 1024} MiB" + ("" if abs(bal_kib - new_kib) <= 1024 else " (a later round had "
                                                   "changed the target before the balloon got there)"))
          if t_bal is not None else "busy's balloon never stood at a target set after the urgent round")
    if urg_round is not None and urg_round[5]:
        print(f"INFO the urgent round's backend calls, in order: {urg_round[5]}")
    no_wait = t_urg is not None and grew
    storm_txt = (f"storm {facts.get('storm_mib', '?')}MiB (attempt {facts.get('storm_attempts', '?')}): "
                 f"signal -> target written "
                 + (f"{lat:.2f}s ({'<= 1s goal met' if lat <= 1.0 else '1s goal MISSED'}{bounds_txt})"
                    if lat is not None else "never")
                 + f" [{steps}]"
                 + (f" (calls: {urg_round[5]})" if urg_round is not None and urg_round[5] else "")
                 + ("; urgent record + round on an urgent sample: no Period/Interval wait in the chain"
                    if no_wait else "; the chain went through a periodic round or no urgent record"))

# --- pages the busy guest swapped out from the storm's start until its
# balloon first stood at a target grown after the signal (e2e-stamp's
# at_target lines count them from the signal monitor's start).
def swapped_until_grown(prefix):
    sig = facts.get(prefix + "storm_signal", "").split()
    ents = [e.split() for e in facts.get(prefix + "storm_balloon", "").split(";") if e.strip()]
    grown = False
    for e in ents:
        if len(e) >= 5 and e[1] == "target" and sig and float(e[0]) >= float(sig[0]) and int(e[2]) > int(e[4]):
            grown = True
        elif grown and len(e) >= 5 and e[1] == "at_target" and e[3] == "pswpout":
            return int(e[4])
    return None


swapped_psi = swapped_until_grown("")
if swapped_psi is not None:
    storm_txt += f"; {swapped_psi} pages swapped out until the balloon stood at a grown target"
# The same storm with guestmem's vmstat polling only (e2e_compare_poll=1).
if "poll_storm_rt" in facts:
    psig = facts.get("poll_storm_signal", "").split()
    t_ps = float(psig[0]) + g_off if psig else None
    t_pu = next((t for t, p, v in events if t_ps is not None and p.endswith("/data/membal/stats")
                 and t >= t_ps - 0.05 and re.search(r"(^| )urgent 1( |$)", v)), None)
    swapped_poll = swapped_until_grown("poll_")
    check("poll_storm_urgent_record", t_pu is not None,
          f"vmstat polling: signal ({' '.join(psig[1:])}) -> urgent record {t_pu - t_ps:.2f}s"
          if t_pu is not None else "vmstat polling: no urgent record after the signal")
    cmp_txt = (f"pages swapped out until the balloon stood at a grown target: PSI trigger {swapped_psi}, "
               f"vmstat polling {swapped_poll} (storms {facts.get('storm_mib', '?')} / "
               f"{facts.get('poll_storm_mib', '?')} MiB)")
    print(f"INFO compare {cmp_txt}")
    storm_txt += f"; compare: {cmp_txt}"

# --- what one balloon target costs in dom0 (e2e-setcost, before membal ran)
try:
    with open(os.path.join(res, "setcost.txt"), errors="replace") as f:
        for line in f:
            print(f"INFO setcost {line.strip()}")
except OSError:
    pass

# --- the sampler: every row carries dom0's clock (the checks above use
# those times, never a row count); how often it wrote is reported.
gaps = sorted(b["t"] - a["t"] for a, b in zip(by["busy"], by["busy"][1:]))
if gaps:
    print(f"INFO timeline {len(by['busy'])} rows of busy, gap median {gaps[len(gaps) // 2]:.1f}s, "
          f"max {gaps[-1]:.1f}s")

# --- RRD files hold data
rrd_dir = os.path.join(res, "rrd", "dom0")
rrd_ok = []
for rel in ("vmmem-busy/memory-current.rrd", "membal-busy/memory-target.rrd", "vmmem-idle1/memory-current.rrd",
            "membal/memory-pool.rrd"):
    p = os.path.join(rrd_dir, rel)
    if not os.path.exists(p):
        rrd_ok.append(f"{rel}: missing")
        continue
    last = subprocess.run(["rrdtool", "last", p], capture_output=True, text=True).stdout.strip() or "now"
    out = subprocess.run(["rrdtool", "fetch", p, "AVERAGE", "-s", f"{last}-1800", "-e", last],
                         capture_output=True, text=True)
    vals = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*\d+:\s+(\S+)", line)
        if m:
            try:
                v = float(m.group(1))
            except ValueError:
                continue
            if not math.isnan(v):
                vals.append(v)
    rrd_ok.append(f"{rel}: {len(vals)} rows")
check("rrd_data", all(re.search(r": ([1-9]\d*) rows", s) and int(re.search(r"(\d+) rows", s).group(1)) >= 5
                      for s in rrd_ok), "; ".join(rrd_ok))

# --- no user-space crash anywhere: a crashed agent or tool would make the
# figures above meaningless (this is how -cpu max was caught).
crash_re = re.compile(r"segfault at|general protection|Segmentation fault|Aborted|malloc\(\)")
crashes = []
for p in [os.path.join(res, "dom0-dmesg.txt")] + sorted(glob.glob(os.path.join(res, "guest-*.log"))):
    try:
        with open(p, errors="replace") as f:
            n = sum(1 for line in f if crash_re.search(line))
    except OSError:
        continue
    if n:
        crashes.append(f"{os.path.basename(p)}: {n}")
check("no_crashes", not crashes, "; ".join(crashes) if crashes else "no crash in dom0's dmesg nor the guests' consoles")

# --- every target membal set was accepted: a failure means it acted on a
# domain it should not have (one being built: its static-max not written
# yet) or the backend broke
failed_sets = []
try:
    with open(os.path.join(res, "collectd.log"), errors="replace") as f:
        failed_sets = [line.strip() for line in f if re.search(r"membal: setting the target of .* failed", line)]
except OSError:
    pass
check("targets_accepted", not failed_sets,
      f"{len(failed_sets)} failed: {failed_sets[0][:200]}" if failed_sets
      else "no failed set-target call in collectd.log")

total_s = facts.get("end_s", "?")
status = "PASS" if not fails else "FAIL(" + ",".join(fails) + ")"


def fmt(t):
    return f"{t - surge:.1f}s" if t is not None else "never"


flush_txt = "?"
if "flush_round_started_rt" in facts and "flush_rt" in facts:
    flush_txt = f"+{float(facts['flush_round_started_rt']) - float(facts['flush_rt']):.2f}s"
swap_txt = f"{sw_total:.0f} pages" if sw_total is not None else "unknown"
cost = ""
if "fake_rounds" in facts:
    w = facts["fake_window_s"]
    cost = (f"; rebalancing cost over {w}s: quiet {facts['quiet_rounds']} rounds / "
            f"{int(facts['quiet_collectd_ticks']) * 10}ms collectd CPU, fake client "
            f"{facts['fake_rounds']} rounds / {int(facts['fake_collectd_ticks']) * 10}ms")
print(f"SUMMARY xen-e2e {status}: surge {surge_mib}MiB at {surge:.1f}s -> first busy target change +{fmt(t_change)}"
      f" -> busy memory covers demand +{fmt(t_cover)}; busy peak {mib(busy_peak)}; swap-in during run {swap_txt};"
      f" {storm_txt}; flush round {flush_txt}; dom0 scenario ended at {total_s}s{cost}")
sys.exit(1 if fails else 0)
