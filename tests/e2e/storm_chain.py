"""The storm chain's clock work, apart from check.py so it can be tested.

Two clocks meet here: dom0's (its xenstore watch stamps, membal's round
lines) and the busy guest's (e2e-stamp signals: its signal, each balloon
target it saw and the moment its balloon stood at it). Each domain reads
the wall clock at its own boot, so the two differ by seconds.

Inputs, as check.py parses them:
  bal     the guest's lines, each split: [t, "target", kib, ...] or
          [t, "at_target", kib, ...], on the guest's clock, in its order
  dom0_tg [(t, kib)]: each target dom0 wrote for the guest, dom0's clock
"""


def guest_offset(bal, dom0_tg):
    """Seconds to add to the guest's stamps to put them on dom0's clock.

    The guest sees each target after dom0 wrote it, so the true offset is at
    least every dom0 write - guest sighting difference; the smallest one is
    taken (a lower bound, robust to a sighting matched to the wrong one of
    two equal writes). A signal corrected with it is never later than the
    real one, so a chain measured from it is never shorter than the real
    chain. Returns (offset, number of differences); (0.0, 0) when none.
    """
    diffs = []
    for e in bal:
        if len(e) >= 3 and e[1] == "target":
            tg, v = float(e[0]), int(e[2])
            near = [td for td, vd in dom0_tg if abs(vd - v) <= 4 and abs(td - tg) < 30]
            if near:
                diffs.append(min(near, key=lambda td: abs(td - tg)) - tg)
    return (min(diffs), len(diffs)) if diffs else (0.0, 0)


def balloon_at_target(bal, dom0_tg, t_sig, t_tgt):
    """When the guest's balloon first stood at a target in force after the
    urgent round's write: the round's own target, or one a later round set
    before the balloon got there (membal may lower an emergency ask once
    the next sample shows what the guest needs).

    bal's and t_sig's stamps must be on one clock (both the guest's, or both
    moved by the same offset); t_tgt (the urgent round's write) is dom0's.
    The 30 s window before the signal is taken on dom0's clock from t_sig
    as given: a few seconds off does not matter at that width.

    Found by order, not by a corrected clock: the guest sees dom0's writes
    in the order they were made, all after its own signal. guest_offset()
    is short by the slowest sighting's lag, and under a storm the guest's
    50 ms poll can lag by more than the round took to write (CI at c3491ac:
    the urgent round's sighting, corrected, fell before the round's start
    and the balloon at target went unseen). The poll may also miss a target
    that a later round replaced within the lag. So the first sighting after
    the signal of any target written from the urgent round on (and not
    written in the 30 s before the signal up to it) opens the window.

    The time returned is dom0's stamp of the write the balloon reached plus
    what the guest measured from its sighting to its balloon at target (one
    clock): the sighting's own lag is left out, and it never falls before
    the write (with guest_offset() it could, by the slowest sighting's lag:
    hog run 1 had a 23 s sighting and read 9 s short).

    Returns (t on dom0's clock, kib) or (None, None).
    """
    post = {vd for td, vd in dom0_tg if td >= t_tgt - 0.05}
    pre = {vd for td, vd in dom0_tg if t_sig - 30 <= td < t_tgt - 0.05}
    fresh = [v for v in post if all(abs(v - w) > 4 for w in pre)]
    seen, cur_kib, cur_td, cur_tg = False, None, None, None
    for e in bal:
        if len(e) < 3:
            continue
        if e[1] == "target" and float(e[0]) >= t_sig:
            v = int(e[2])
            if seen or any(abs(v - w) <= 4 for w in fresh):
                seen, cur_kib, cur_tg = True, v, float(e[0])
                cur_td = next((td for td, vd in dom0_tg if td >= t_tgt - 0.05 and abs(vd - v) <= 4), None)
        elif seen and e[1] == "at_target" and int(e[2]) == cur_kib and cur_td is not None:
            return cur_td + max(0.0, float(e[0]) - cur_tg), cur_kib
    return None, None


def guest_offset_upper(seen):
    """An upper bound on the same offset, from the other direction.

    seen: [(t, value)], dom0's watch stamps of the guest's data/e2e/signal
    and data/e2e/signal-balloon writes. e2e-stamp stamps an event, then
    writes it (the balloon node holds every event so far, ';'-separated,
    the newest last); dom0 sees the write later. So for each write the true
    offset is at most dom0's stamp - the guest's stamp of its newest event,
    with no assumption about either side's delays, but one: dom0's watcher
    stamps the event, then reads the node, and a newer write landing in
    between (milliseconds) lowers the bound by that gap. Returns (bound,
    number of writes) or (None, 0).
    """
    bounds = []
    for t, value in seen:
        entries = [e for e in value.split(";") if e.strip()]  # ends in ";"
        last = entries[-1].split() if entries else []
        if not last:
            continue
        try:
            bounds.append(t - float(last[0]))
        except ValueError:
            continue
    return (min(bounds), len(bounds)) if bounds else (None, 0)
