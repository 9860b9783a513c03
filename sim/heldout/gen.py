#!/usr/bin/env python3
"""Held-out scenarios for membal's policy (issue 14): shapes, sizes and
seeds the policy was not developed on. Written before any policy change was
measured on them; never tuned afterwards. Not part of the shipped bench
table (sim/scenarios): run them with

    python3 sim/heldout/gen.py sim/heldout/scenarios   # (re)generate
    membal-bench --scenarios sim/heldout/scenarios --out ho-out --seed 1 \
        --no-plot --doc docs/benchmark-heldout.md

Each scenario draws, from its own seed: a host of 3-14 VMs at 110-220 %
overcommit of the VMs' maxima over the pool, a disk of 100-300 IOPS, balloon
speeds, and for each VM one demand shape (step, ramp, sawtooth, spike,
repeated bursts, diurnal-like wave, steady), a cold-anon share (0-0.6), a
page cache appetite and an access intensity.
"""
import math
import os
import random
import sys

SHAPES = ["step", "ramp", "saw", "spike", "bursts", "wave", "steady"]


def trace(rng, shape, dur, lo, hi):
    pts = [(0, lo)]
    if shape == "step":
        t = rng.randint(60, dur // 2)
        pts += [(t, lo), (t + rng.choice([1, 5, 20]), hi)]
        if rng.random() < 0.5:
            t2 = rng.randint(t + 60, dur - 10)
            pts += [(t2, hi), (t2 + 10, lo)]
    elif shape == "ramp":
        t = rng.randint(30, dur // 3)
        t2 = rng.randint(t + 60, dur - 30)
        pts += [(t, lo), (t2, hi)]
    elif shape == "saw":
        per = rng.randint(40, 150)
        t = rng.randint(10, per)
        while t + per < dur:
            pts += [(t, lo), (t + per - 1, hi), (t + per, lo)]
            t += per
    elif shape == "spike":
        for _ in range(rng.randint(1, 3)):
            t = rng.randint(30, dur - 60)
            pts.append((t, lo))
            pts.append((t + 1, hi))
            pts.append((t + rng.randint(10, 40), hi))
            pts.append((t + rng.randint(41, 60), lo))
        pts.sort()
        # drop overlaps: keep strictly increasing times
        out = [pts[0]]
        for p in pts[1:]:
            if p[0] > out[-1][0]:
                out.append(p)
        pts = out
    elif shape == "bursts":
        gap = rng.randint(60, 200)
        size = rng.uniform(0.5, 1.0)
        t = rng.randint(20, gap)
        while t + 40 < dur:
            h = lo + (hi - lo) * size * rng.uniform(0.7, 1.0)
            w = rng.randint(10, 40)
            pts += [(t, lo), (t + 2, h), (t + w, h), (t + w + 2, lo)]
            t += gap + rng.randint(-20, 20)
    elif shape == "wave":
        per = rng.randint(120, 400)
        ph = rng.uniform(0, 2 * math.pi)
        for t in range(10, dur, 10):
            pts.append((t, lo + (hi - lo) * 0.5 * (1 + math.sin(2 * math.pi * t / per + ph))))
    out = [pts[0]]
    for p in sorted(pts, key=lambda p: p[0])[1:]:
        if p[0] > out[-1][0] and p[0] < dur:
            out.append(p)
    return " ".join(f"{t}:{int(v)}M" for t, v in out)


def scenario(idx, seed, starts=False):
    rng = random.Random(seed)
    n = rng.randint(3, 14)
    dur = rng.choice([600, 900])
    maxes = [rng.choice([1024, 1536, 2048, 3072, 4096]) for _ in range(n)]
    over = rng.uniform(1.1, 2.2)
    reserve = 512
    pool = int(sum(maxes) / over)
    total = pool + reserve
    lines = [
        f"# held-out scenario {idx}, generator seed {seed} (sim/heldout/gen.py)",
        f"name ho{idx}",
        f"title held-out {idx}: {n} VMs, {over * 100:.0f} % overcommit",
        f"duration {dur}",
        f"host total={total}M reserve={reserve}M",
        f"disk iops={rng.choice([100, 150, 200, 300])}",
    ]
    if rng.random() < 0.3:
        lines.append(f"balloon shrink={rng.choice([10, 20, 30])}M "
                     f"grow={rng.choice([30, 60, 150])}M")
    ws, extra = [], []
    for i, mx in enumerate(maxes):
        name = f"v{i}"
        cold = rng.choice([0, 0, 0.2, 0.4, 0.6])
        opts = f"vm {name} mem={min(mx // 2, int(pool * 0.9 / n))}M max={mx}M"
        if cold:
            opts += f" cold={cold}"
        if rng.random() < 0.3:
            opts += f" noise={rng.choice([0.02, 0.05])}"
        lines.append(opts)
        shape = rng.choice(SHAPES)
        lo = rng.uniform(0.1, 0.35) * mx * (1 - cold)
        hi = min(rng.uniform(0.45, 0.85) * mx * (1 - cold), mx * 0.9)
        if shape == "steady":
            ws.append(f"ws {name} 0:{int(lo + (hi - lo) / 2)}M")
        else:
            ws.append(f"ws {name} {trace(rng, shape, dur, lo, hi)}")
        if rng.random() < 0.5:
            extra.append(f"cache {name} 0:{rng.randint(50, 400)}M")
        extra.append(f"intensity {name} 0:{rng.choice([500, 1000, 2000, 4000])}")
    text = "\n".join(lines + ws + extra) + "\n"
    return with_starts(text, seed, dur, n) if starts else text


def with_starts(text, seed, dur, n):
    """The same scenario with one to three of its VMs started mid-run (and
    some stopped again), as a toolstack would: membal-xl-create's
    reservation, qubesd's request. A separate random stream, so that the
    scenario without starts stays what it was for every seed."""
    rng = random.Random(seed * 7919 + 1)
    k = min(n - 1, rng.randint(1, 3))
    late = set(rng.sample(range(n), k)) if k > 0 else set()
    out = []
    for line in text.splitlines():
        f = line.split()
        if line.startswith("title "):
            line += f", {k} started mid-run"
        elif f and f[0] == "vm" and int(f[1][1:]) in late:
            start = rng.randint(60, dur // 2)
            line += f" start={start}"
            if rng.random() < 0.5:
                line += f" stop={rng.randint(start + 60, dur - 30)}"
        out.append(line)
    return "\n".join(out) + "\n"


def main():
    # gen.py [--starts] [OUT [FIRST_SEED]]: eight scenarios from FIRST_SEED
    # on (the repository's set: 1401); other seeds make fresh sets that
    # nothing was developed on (docs/policies.md). --starts: the same
    # scenarios with VMs started (and stopped) mid-run.
    args = sys.argv[1:]
    starts = "--starts" in args
    args = [a for a in args if a != "--starts"]
    out = args[0] if len(args) > 0 else "sim/heldout/scenarios"
    first = int(args[1]) if len(args) > 1 else 1401
    os.makedirs(out, exist_ok=True)
    for idx, seed in enumerate(range(first, first + 8)):
        with open(os.path.join(out, f"ho{idx}.scn"), "w") as f:
            f.write(scenario(idx, seed, starts))


if __name__ == "__main__":
    main()
