/*
 * The safety envelope: the one place that turns what a policy wants into
 * a target that is safe to give, whatever the policy (or a hostile guest's
 * figures behind it) asked. Rules, by precedence:
 *
 *  1. max: never above max_kib.
 *  2. floors: if the floors alone exceed the pool, every target is its
 *     floor (nothing else can be safe; the caller shrinks what it can).
 *  3. min: never below the floor (min_kib, or the balloon heuristic).
 *  4. stale: a domain with a missing or stale sample is not shrunk below
 *     what it holds (capped at max) unless 6 needs it (see below).
 *  5. dead band, then step cap: changes smaller than DeadBand are not made;
 *     changes larger than StepCap are cut to it (cagma emergencies are not
 *     step-capped). Neither ever breaks 1-4.
 *  6. conservation: sum of targets <= pool = total - reserve. Every domain
 *     is accounted at current_kib, its actual size, so a balloon that did
 *     not reach its last target still counts what it holds. When the sum is
 *     too big, what the donors give back is already in it (shrinks first),
 *     and then, in this order, until it fits: (a) non-emergency growth is
 *     cut, (b) emergency growth is cut, fresh domains are shrunk (c) down
 *     to the larger of what they use (mb_est_used_kib) and what the policy
 *     asked (memory a step cap or the dead band kept), (d) down to what
 *     they use, (e) toward their floors, and (f) stale domains are. Each
 *     cut is in proportion to what the domain could give in that phase.
 *     (f) only happens when the fresh floors plus what stale domains hold
 *     exceed the pool.
 *  7. NUMA: with host->nr_nodes > 0, a domain bound to nodes (node_mask)
 *     grows at most by what those nodes have free (node_free_kib), shared
 *     first come first served (emergencies first, then by index). Memory a
 *     shrinking domain frees is not credited until the next round, when
 *     the hypervisor reports it free: conservative, never over-promises.
 */
#include "policy_impl.h"

#define MB_PF_CUT 0x100u /* touched by a conservation cut this round */

static bool growing(const mb_decision_t *o, uint64_t t) {
  return t > mb_max_u64(o->from_kib, o->priv.lo);
}

#define MB_CUT_PHASES 6

/* What domain i can give in a conservation phase. A fresh domain gives
 * first what it does not use and the policy did not ask for (a donor the
 * step cap or dead band held above its ask), then what it does not use,
 * and only then what it uses: a busy guest is never cut into its working
 * set while an idle one keeps memory it does not use (D5). */
static uint64_t reducible(const mb_domain_t *d, const mb_decision_t *o,
                          uint64_t t, int phase) {
  bool stale = (o->priv.flags & MB_PF_STALE) != 0;
  bool emerg = (o->priv.flags & MB_PF_EMERGENCY) != 0;
  uint64_t keep;
  switch (phase) {
  case 0: /* non-emergency growth */
  case 1: /* emergency growth */
    if ((phase == 1) != emerg || !growing(o, t))
      return 0;
    return t - mb_max_u64(o->from_kib, o->priv.lo);
  case 2: /* fresh domains, down to what they use or were asked for */
  case 3: /* fresh domains, down to what they use */
    if (stale)
      return 0;
    keep = mb_max_u64(mb_est_used_kib(d), o->priv.lo);
    if (phase == 2)
      keep = mb_max_u64(keep, o->want_kib);
    return mb_sub_sat(t, keep);
  case 4: /* fresh domains, down to their floors */
    return stale ? 0 : t - o->priv.lo;
  default: /* stale domains, down to their floors */
    return stale ? t - o->priv.lo : 0;
  }
}

/* Cuts `excess` from the targets in proportion to what each can give.
 * Returns what is left of the excess. */
static uint64_t cut_phase(const mb_domain_t *doms, mb_decision_t *out, size_t n,
                          int phase, uint64_t excess) {
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += reducible(&doms[i], &out[i], out[i].target_kib, phase);
  if (total == 0 || excess == 0)
    return excess;
  uint64_t cut = mb_min_u64(excess, total);
  uint64_t done = 0;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    uint64_t r = reducible(&doms[i], o, o->target_kib, phase);
    if (r == 0)
      continue;
    uint64_t c = (uint64_t)((unsigned __int128)r * cut / total);
    o->target_kib -= c;
    o->priv.flags |= MB_PF_CUT;
    done += c;
  }
  /* floor() left less than one KiB per domain: take it one by one. */
  for (size_t i = 0; i < n && done < cut; i++) {
    mb_decision_t *o = &out[i];
    if (reducible(&doms[i], o, o->target_kib, phase) > 0) {
      o->target_kib--;
      o->priv.flags |= MB_PF_CUT;
      done++;
    }
  }
  return excess - done;
}

static void numa_limit(const mb_host_t *host, const mb_domain_t *doms,
                       mb_decision_t *out, size_t n) {
  uint64_t left[MB_MAX_NODES];
  unsigned nodes =
      host->nr_nodes < MB_MAX_NODES ? host->nr_nodes : MB_MAX_NODES;
  uint32_t valid = (UINT32_C(1) << nodes) - 1;
  for (unsigned k = 0; k < nodes; k++)
    left[k] = mb_min_u64(host->node_free_kib[k], MB_KIB_MAX);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      mb_decision_t *o = &out[i];
      bool emerg = (o->priv.flags & MB_PF_EMERGENCY) != 0;
      uint32_t mask = doms[i].node_mask & valid;
      /* Bits of nodes the host does not have are ignored; a mask with
       * none left binds to nothing known, hence to no limit. */
      if ((pass == 0) != emerg || mask == 0 || !growing(o, o->target_kib))
        continue;
      uint64_t start = mb_max_u64(o->from_kib, o->priv.lo);
      uint64_t avail = 0;
      for (unsigned k = 0; k < nodes; k++)
        if (mask >> k & 1u)
          avail += left[k];
      uint64_t g = o->target_kib - start;
      if (g > avail) {
        g = avail;
        o->target_kib = start + g;
        o->reason = MB_R_POOL_LIMIT;
      }
      for (unsigned k = 0; k < nodes && g > 0; k++) {
        if (!(mask >> k & 1u))
          continue;
        uint64_t take = mb_min_u64(g, left[k]);
        left[k] -= take;
        g -= take;
      }
    }
  }
}

static uint64_t dist(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

void mb_envelope(const mb_config_t *cfg, const mb_host_t *host,
                 const mb_domain_t *doms, size_t n, mb_decision_t *out) {
  uint64_t pool = mb_sub_sat(host->total_kib, host->reserve_kib);
  uint64_t sum_floor = 0;
  for (size_t i = 0; i < n; i++)
    sum_floor += out[i].priv.lo;

  if (sum_floor > pool) {
    for (size_t i = 0; i < n; i++) {
      mb_decision_t *o = &out[i];
      o->target_kib = o->priv.lo;
      o->reason =
          o->want_kib <= o->priv.lo ? MB_R_CLAMPED_MIN : MB_R_POOL_LIMIT;
    }
    return;
  }

  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    uint64_t lo = o->priv.lo, hi = o->priv.hi, from = o->from_kib;
    uint64_t t = o->want_kib;
    bool stale = (o->priv.flags & MB_PF_STALE) != 0;
    bool emerg = (o->priv.flags & MB_PF_EMERGENCY) != 0;
    if (t > hi) {
      t = hi;
      o->reason = MB_R_CLAMPED_MAX;
    }
    if (t < lo) {
      t = lo;
      o->reason = MB_R_CLAMPED_MIN;
    }
    if (stale && t < mb_min_u64(from, hi)) {
      t = mb_min_u64(from, hi);
      o->reason = MB_R_STALE_FROZEN;
    }
    /* Dead band and step cap move t toward from; only when from itself is
     * a legal target, so 1-4 still hold. */
    bool from_ok = from >= lo && from <= hi;
    if (from_ok && t != from && dist(t, from) < cfg->deadband_kib) {
      t = from;
      o->reason = MB_R_DEADBAND;
    }
    if (cfg->step_cap_kib > 0 && dist(t, from) > cfg->step_cap_kib &&
        !(emerg && t > from)) {
      uint64_t capped =
          t > from ? from + cfg->step_cap_kib : from - cfg->step_cap_kib;
      capped = mb_min_u64(mb_max_u64(capped, lo), hi);
      if (stale)
        capped = mb_max_u64(capped, mb_min_u64(from, hi));
      if (capped != t) {
        t = capped;
        o->reason = MB_R_STEP_CAPPED;
      }
    }
    o->target_kib = t;
  }

  if (host->nr_nodes > 0)
    numa_limit(host, doms, out, n);

  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += out[i].target_kib;
  if (sum > pool) {
    uint64_t excess = sum - pool;
    for (int phase = 0; phase < MB_CUT_PHASES && excess > 0; phase++)
      excess = cut_phase(doms, out, n, phase, excess);
  }

  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (o->priv.flags & MB_PF_CUT) {
      o->reason = MB_R_POOL_LIMIT;
      /* Growth cut below the dead band is not worth a balloon move; giving
       * it up only lowers the sum. */
      if (o->target_kib > o->from_kib && o->from_kib >= o->priv.lo &&
          o->target_kib - o->from_kib < cfg->deadband_kib)
        o->target_kib = o->from_kib;
    }
    if (o->target_kib == o->from_kib &&
        (o->reason == MB_R_GROW_PRESSURE || o->reason == MB_R_SHRINK_IDLE))
      o->reason = MB_R_UNCHANGED;
  }
}
