/*
 * cagma — critical amount guaranteed memory allocation (Wu & Sun, 2017).
 *
 * Every guest is guaranteed its critical memory amount (CMA), the memory
 * below which it starts to swap:
 *
 *   CMA = overhead + ws + kernel + margin
 *     overhead = current_kib - MemTotal   (memory the guest kernel
 *                reserved at boot: part of the domain, invisible in MemTotal)
 *     ws       = AnonPages + Shmem + Active(file)
 *                (anonymous memory has nowhere to go but swap; the active
 *                file pages are the cache the guest is using now)
 *     kernel   = SUnreclaim + PageTables + KernelStack (memory the guest
 *                kernel cannot give back; Slab when there is no split)
 *     margin   = max(CmaMarginMin, CmaMarginFraction * (ws + kernel))
 *   plus, while the guest's demand ramps, a forecast (below).
 *
 * Fallbacks, in order, when fields are missing:
 *   - no AnonPages: anon = Active(anon) + Inactive(anon);
 *   - no Active(file) (2.6.18-era kernels): active file = Active - anon;
 *   - no anon figure at all (virtio-balloon stats, a MemTotal/MemFree
 *     record): ws + kernel = MemTotal - MemAvailable, or MemTotal - (MemFree
 *     + Buffers + Cached - Shmem), or MemTotal - MemFree;
 *   - no MemTotal: ws + kernel = current_kib - idle (mb_est_used_kib),
 *     overhead 0.
 *
 * Emergency allocation (mb_est_pressure, estimate.c): when the guest
 * swaps out faster than SwapThreshold, or, while it is short of memory
 * (MemAvailable below the CMA margin), swaps (in + out) faster than
 * SwapThreshold, faults faster than MajorFaultThreshold, stalls on memory
 * (PSI "some" >= 15 %) or flags its record urgent (the flag alone while
 * there are no rates yet), or stalls while its page cache thrashes (file
 * refaults above SwapThreshold, which MemAvailable does not show), it is
 * grown at once (no step cap, growth cut last when the pool is short) to
 *   max(CMA, max(current, target in force) + need),  need = max(
 *     CmaMarginMin, 4 KiB * (swap + file refault) pages/s * 10 s)
 * i.e. the memory it swapped or refaulted in the last ten seconds at the
 * current rate: what it is missing, not a guess of its whole working set.
 * Counted from the target in force when its balloon is still growing
 * toward it: that memory is already on its way (and in the pool's
 * account), and an emergency asked from the current size lowered the
 * target of a guest that was being grown (real-Xen e2e, hog run 43: 796 ->
 * 711 MiB "emergency", the difference handed to the donors).
 *
 * Tunables (defaults and why):
 *   CmaMarginFraction 0.10 and CmaMarginMin 32 MiB: between two rounds a
 *   guest's working set moves by a few percent; 32 MiB covers a small
 *   guest's burst (a fork, a page-cache refill) where 10% would not.
 *   SwapThreshold 64 pages/s (256 KiB/s): a guest with enough memory swaps
 *   0 pages/s; a few dozen come from swap readahead after a quiet night.
 *   MajorFaultThreshold 256/s: an idle guest takes a few major faults a
 *   second (file pages read in); hundreds mean its cache is thrashing.
 *   Zero thresholds are allowed (any swap is an emergency); negative or NaN
 *   ones are rejected by mb_config_validate.
 *   ForecastHorizon 10 s (0 = off, at most 600): see the forecast below.
 *
 * Demand forecast (beyond the seed systems, which only react): a guest's
 * anonymous memory, resident or swapped (AnonPages + SwapTotal - SwapFree,
 * mb_rates_t.anon_growth_kibps), that grows by more than its margin per
 * second is ramping; the CMA then adds growth x min(ForecastHorizon, the
 * ramp's age so far, mb_domain_t.ramp_s): a ramp is extrapolated no
 * further ahead than it has already run. A step seen in one sample (a
 * burst that doubled a guest within a second) is growth over one sample
 * interval, not a ramp that will last the whole horizon; extrapolating it
 * ten seconds asked for several times the step, up to the guest's
 * maximum, and the donors swapped for it (measured on the held-out sets,
 * docs/policies.md). A ramp that keeps going earns the whole horizon
 * within a few samples. Memory reaches a growing guest only as fast as
 * donors' balloons shrink, and a ramp seen now continues while that
 * happens: asking for it at once puts the guest in deficit earlier, so
 * every donor starts shrinking (below) seconds before the guest would have
 * run out. Growth within the margin
 * is ordinary movement (and sampling jitter) that the margin already
 * covers. The forecast fades the moment growth stops (the next sample's
 * rate). 10 s: the time the balloons need to move a ramp's worth (45 MiB/s
 * per donor measured, a few hundred MiB), the same horizon as the
 * emergency ask. How the simulator's scenarios respond to the horizon:
 * membal-bench --config (docs/simulator.md).
 *
 * Memory beyond the sum of the CMAs goes first to each guest's surge
 * headroom (mb_domain_t.headroom_kib: the part of its recent peak CMA it
 * does not need now, learned by the round module, round.h), then in
 * proportion to weight (x_i = CMA_i + headroom_i + w_i * c, water-filled
 * within [CMA_i, max_i]): idle memory is better in a guest's page cache
 * than in the hypervisor, and best where a surge is likely. While some
 * guest is in deficit (its CMA or emergency ask is above what it holds by
 * more than DeadBand) and the free memory does not cover what it waits
 * for, every other guest (a donor) gives the rest at once, each in
 * proportion to what it holds above its CMA (a quiet donor: above its CMA
 * less its cold anonymous memory, cold_anon_kib), and no more
 * (donors_give). A balloon gives memory back at a finite speed (30-60 MB/s
 * measured), so a guest whose demand ramps faster is served in time only
 * by all donors shrinking at once, not by one donor giving up its share;
 * but a donor shrunk further than the deficit needs only swaps for memory
 * nobody waits for. No tunable: the dead band is the "worth a balloon
 * move" threshold already.
 *
 * When the CMAs (and emergency asks) do not fit, each domain asks for its
 * CMA and the envelope cuts growth (emergencies last) before it shrinks
 * anyone below what they hold. Another guest's emergency never takes a
 * guest below its CMA: the critical amount is guaranteed, and a guest can
 * fake a swap storm. (An earlier "lean margins" rule asked every other
 * guest for its CMA with at most CmaMarginMin of margin while some guest
 * was in emergency; it saved swap in the simulator, but a faker then held
 * honest guests below their CMA for as long as it kept it up.)
 */
#include <math.h>

#include "policy_impl.h"

#define MB_CAGMA_HORIZON_S 10

/* Demand forecast: memory the guest will need by the time a balloon can
 * deliver it. A growth of the anonymous memory (resident + swapped) of at
 * most the margin per second is the ordinary movement the margin covers
 * (and jitter); beyond that it is a ramp, extrapolated ForecastHorizon
 * seconds, or as long as it has run when that is shorter (ramp_s). It
 * fades the moment the growth stops: the next sample's rate is 0. */
static uint64_t forecast_kib(const mb_config_t *cfg, const mb_domain_t *d,
                             uint64_t margin_kib) {
  double g = d->rates.anon_growth_kibps;
  if (!d->rates.growth_valid || !(g > (double)margin_kib) ||
      !(cfg->cagma.forecast_s > 0))
    return 0; /* also for NaN; and horizon 0 is off even for an infinite
                 growth (inf x 0 is NaN) */
  double horizon_s = cfg->cagma.forecast_s;
  if (d->ramp_s > 0 && d->ramp_s < horizon_s) /* false for NaN */
    horizon_s = d->ramp_s;
  double f = g * horizon_s;
  return !(f < (double)MB_KIB_MAX) ? MB_KIB_MAX : (uint64_t)f;
}

/* Cold anonymous memory of a quiet guest (mb_est_quiet): what its
 * inactive anon list holds beyond the share the kernel keeps inactive even
 * when every page is in use. Linux refills the inactive anon list from the
 * active one until inactive x ratio >= active, ratio = isqrt(10 x GiB of
 * anon LRU) (1 below 1 GiB) (mm/vmscan.c, inactive_is_low); pages beyond
 * that were left there unreferenced: old heap, startup data. A guest that
 * reports no stall, no refault and no swap is not missing them: while some
 * guest is in deficit, a quiet donor may be asked for its CMA without them,
 * and its share of what the donors give counts them (donors_give); the
 * moment it stalls or refaults, they count again.
 * They stay in the CMA otherwise: a guest gives cold pages back only by
 * writing them to swap, which costs I/O for nobody's gain while no guest
 * waits for memory (measured: counting them out of the CMA altogether
 * raised the simulator's swap, docs/policies.md). */
static uint64_t isqrt_u64(uint64_t x) {
  uint64_t r = 0;
  for (uint64_t b = UINT64_C(1) << 62; b != 0; b >>= 2) {
    if (x >= r + b) {
      x -= r + b;
      r = (r >> 1) + b;
    } else {
      r >>= 1;
    }
  }
  return r;
}

static uint64_t cold_anon_kib(const mb_config_t *cfg, const mb_domain_t *d) {
  const mb_sample_t *s = &d->sample;
  if (!mb_sample_has(s, MB_F_ACTIVE_ANON) ||
      !mb_sample_has(s, MB_F_INACTIVE_ANON) || !mb_est_quiet(cfg, d))
    return 0;
  uint64_t act = s->v[MB_F_ACTIVE_ANON], inact = s->v[MB_F_INACTIVE_ANON];
  uint64_t gib = (act + inact) >> 20;
  uint64_t ratio = gib > 0 ? isqrt_u64(10 * gib) : 1;
  return mb_sub_sat(inact, act / ratio);
}

/* The CMA: bare working set + margin + forecast. */
static uint64_t cma_of(const mb_config_t *cfg, const mb_domain_t *d) {
  const mb_sample_t *s = &d->sample;
  uint64_t cur = mb_min_u64(d->current_kib, MB_KIB_MAX);
  uint64_t overhead = 0, need;
  if (!d->has_sample)
    return cur;
  bool have_anon = mb_sample_has(s, MB_F_ANONPAGES) ||
                   (mb_sample_has(s, MB_F_ACTIVE_ANON) &&
                    mb_sample_has(s, MB_F_INACTIVE_ANON));
  if (mb_sample_has(s, MB_F_MEMTOTAL))
    overhead = mb_sub_sat(cur, s->v[MB_F_MEMTOTAL]);
  if (have_anon) {
    uint64_t anon = mb_sample_has(s, MB_F_ANONPAGES)
                        ? s->v[MB_F_ANONPAGES]
                        : s->v[MB_F_ACTIVE_ANON] + s->v[MB_F_INACTIVE_ANON];
    uint64_t active_file;
    if (mb_sample_has(s, MB_F_ACTIVE_FILE))
      active_file = s->v[MB_F_ACTIVE_FILE];
    else
      active_file = mb_sub_sat(mb_field(s, MB_F_ACTIVE), anon);
    uint64_t kernel =
        (mb_sample_has(s, MB_F_SUNRECLAIM) ? s->v[MB_F_SUNRECLAIM]
                                           : mb_field(s, MB_F_SLAB)) +
        mb_field(s, MB_F_PAGETABLES) + mb_field(s, MB_F_KERNELSTACK);
    need = anon + mb_field(s, MB_F_SHMEM) + active_file + kernel;
  } else if (mb_sample_has(s, MB_F_MEMTOTAL)) {
    need = mb_est_guest_used_kib(s);
  } else {
    need = mb_est_used_kib(d);
  }
  double m = cfg->cagma.margin_frac * (double)need;
  uint64_t margin = m >= (double)MB_KIB_MAX ? MB_KIB_MAX : (uint64_t)m;
  margin = mb_max_u64(margin, cfg->cagma.margin_min_kib);
  uint64_t bare = mb_min_u64(overhead + need, MB_KIB_MAX);
  /* A forecast past the domain's maximum is memory it can never be given:
   * counting it would keep the guest "in deficit" at its maximum and hold
   * every other guest at its CMA for nothing. */
  uint64_t forecast = forecast_kib(cfg, d, margin);
  if (d->max_kib > 0)
    forecast = mb_min_u64(forecast, mb_sub_sat(d->max_kib, bare + margin));
  return mb_min_u64(bare + mb_min_u64(margin + forecast, MB_KIB_MAX),
                    MB_KIB_MAX);
}

uint64_t mb_cagma_cma_kib(const mb_config_t *cfg, const mb_domain_t *d) {
  return cma_of(cfg, d);
}

static uint64_t emergency_need_kib(const mb_config_t *cfg,
                                   const mb_domain_t *d) {
  double pps = 0;
  if (d->rates.valid)
    pps = d->rates.swapin_pps + d->rates.swapout_pps;
  if (d->rates.refault_valid)
    pps += d->rates.refault_file_ps;
  double kib = pps * MB_PAGE_KIB * MB_CAGMA_HORIZON_S;
  uint64_t need = cfg->cagma.margin_min_kib;
  if (kib > (double)need) /* false for NaN */
    need = kib >= (double)MB_KIB_MAX ? MB_KIB_MAX : (uint64_t)kib;
  return need;
}

/* A guest is in deficit when what it is guaranteed this round (its CMA,
 * or its emergency ask) is above what it holds by more than the dead
 * band: it waits for memory that donors must first give back. */
static bool in_deficit(const mb_config_t *cfg, const mb_decision_t *o) {
  if (o->priv.flags & MB_PF_EMERGENCY)
    return o->want_kib > o->from_kib; /* not at its maximum */
  return o->want_kib > o->from_kib + cfg->deadband_kib;
}

/* What a donor may be shrunk to while another guest waits: its CMA, and
 * for a quiet donor without its cold anonymous memory (it is not using it,
 * and another guest is waiting for memory); never below its floor. */
static uint64_t donor_floor_kib(const mb_config_t *cfg, const mb_domain_t *d,
                                const mb_decision_t *o) {
  return mb_max_u64(mb_sub_sat(o->want_kib, cold_anon_kib(cfg, d)),
                    o->floor_kib);
}

/* While some guest is in deficit, the donors (every other active guest)
 * give what the guests in deficit wait for, at once and no more:
 *   give = sum over deficit guests of their ask + sum over donors of what
 *          they hold - pool
 * (the ask is their CMA or emergency ask, already in want_kib), shared among
 * the donors in proportion to what each holds above its donor floor, so
 * every donor's balloon shrinks at the same time: a balloon gives memory
 * back at a finite speed (30-60 MB/s measured) and a guest whose demand
 * ramps faster is served in time only by all donors shrinking together.
 * A donor's lower bound becomes what it holds less its share. An earlier
 * rule asked every donor for its whole floor and gave the guests in deficit
 * the whole surplus: targets swung between the two modes every few rounds
 * and donors swapped for memory nobody was waiting for (measured: 2.6 %
 * more swap and 10 % more balloon moves over the simulator's shipped and
 * three held-out sets, docs/policies.md). */
static void donors_give(const mb_config_t *cfg, const mb_domain_t *doms,
                        size_t n, mb_decision_t *out, uint64_t pool_kib) {
  uint64_t held_kib = 0, excess_kib = 0;
  for (size_t i = 0; i < n; i++) {
    const mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    if (in_deficit(cfg, o)) {
      held_kib += o->want_kib;
    } else {
      held_kib += o->from_kib;
      excess_kib += mb_sub_sat(o->from_kib, donor_floor_kib(cfg, &doms[i], o));
    }
  }
  uint64_t give_kib = mb_min_u64(mb_sub_sat(held_kib, pool_kib), excess_kib);
  if (give_kib == 0)
    return;
  uint64_t sum_lo = 0;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    if (!in_deficit(cfg, o)) {
      uint64_t fl = donor_floor_kib(cfg, &doms[i], o);
      uint64_t ex = mb_sub_sat(o->from_kib, fl);
      double share = ceil((double)give_kib * ((double)ex / (double)excess_kib));
      uint64_t lo = ex > share ? o->from_kib - (uint64_t)share : fl;
      o->priv.lo = mb_min_u64(mb_max_u64(lo, fl), o->priv.cap);
      if ((double)o->priv.lo < o->priv.base && o->priv.lo < o->want_kib)
        o->priv.base = (double)o->priv.lo; /* gives cold memory: no headroom */
    }
    sum_lo += o->priv.lo;
  }
  /* Double rounding may leave the bounds a few KiB over the pool: take
   * them from the donors above their floor. */
  for (size_t i = 0; i < n && sum_lo > pool_kib; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE) || in_deficit(cfg, o))
      continue;
    uint64_t take =
        mb_min_u64(mb_sub_sat(o->priv.lo, donor_floor_kib(cfg, &doms[i], o)),
                   sum_lo - pool_kib);
    o->priv.lo -= take;
    sum_lo -= take;
  }
}

void mb_cagma_step(const mb_config_t *cfg, const mb_domain_t *doms, size_t n,
                   mb_decision_t *out, uint64_t pool_kib) {
  uint64_t sum_base = 0;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    uint64_t cma = cma_of(cfg, &doms[i]);
    uint64_t base = cma;
    o->cma_kib = cma;
    if (mb_est_pressure(cfg, &doms[i])) {
      o->priv.flags |= MB_PF_EMERGENCY;
      o->emergency = true;
      uint64_t start =
          mb_max_u64(o->from_kib, mb_min_u64(doms[i].target_kib, MB_KIB_MAX));
      base = mb_max_u64(base, start + emergency_need_kib(cfg, &doms[i]));
    }
    /* Nobody is guaranteed more than max, nor less than the floor. */
    base = mb_min_u64(mb_max_u64(base, o->priv.lo), o->priv.cap);
    o->want_kib = base;
    sum_base += base;
  }
  if (sum_base <= pool_kib) {
    /* Surplus: share it by weight above each guaranteed amount, surge
     * headroom first (a guest that surged lately is likely to again); the
     * headroom is shared out of the surplus only, never taken from anyone's
     * CMA. The guaranteed amount is the water-filling's lower bound for
     * this call only. */
    bool deficit = false;
    for (size_t i = 0; i < n; i++) {
      mb_decision_t *o = &out[i];
      if (!(o->priv.flags & MB_PF_ACTIVE))
        continue;
      uint64_t room = mb_sub_sat(o->priv.cap, o->want_kib);
      o->priv.lo = o->want_kib;
      o->priv.base = (double)o->want_kib +
                     (double)mb_min_u64(
                         mb_min_u64(doms[i].headroom_kib, MB_KIB_MAX), room);
      deficit = deficit || in_deficit(cfg, o);
    }
    if (deficit)
      donors_give(cfg, doms, n, out, pool_kib);
    mb_waterfill(out, n, pool_kib);
    for (size_t i = 0; i < n; i++)
      if (out[i].priv.flags & MB_PF_ACTIVE)
        out[i].priv.lo = out[i].floor_kib;
  }
  /* Overcommitted: the CMAs (and emergency asks) do not fit; each guest
   * asks for its CMA and the envelope cuts growth, emergencies last,
   * before it shrinks anyone below what they hold. Nobody is asked for
   * less than its CMA for another guest's emergency: the critical amount
   * is guaranteed, and an emergency may be faked. */
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    if (o->emergency && o->want_kib > o->from_kib)
      o->reason = MB_R_EMERGENCY;
    else
      o->reason = o->want_kib > o->from_kib   ? MB_R_GROW_PRESSURE
                  : o->want_kib < o->from_kib ? MB_R_SHRINK_IDLE
                                              : MB_R_UNCHANGED;
  }
}
