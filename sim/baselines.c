/*
 * Baselines: what a Xen or KVM admin would otherwise run, each
 * reimplemented from its published description (no code of those projects
 * was used). They see the same guest samples as membal, through the same
 * pipeline delay, except xenballoond, which runs inside each guest.
 *
 *   static      equal split of the pool, no balancing
 *   xenballoond self-ballooning alone (Magenheimer 2008): each guest sets
 *               its own target to Committed_AS, never below the balloon
 *               driver's minimum target; up hysteresis 1, down 10; no
 *               coordination, so growth is first come, first served
 *   xenmm       Waldspurger's idle memory tax, tau = 0.75, every 2 s
 *   mom         MoM-style host-pressure rules, every 10 s (MoM's default
 *               policy interval)
 *   proxmox     Proxmox-style auto-ballooning: host used -> 80 %, split by
 *               shares, at most 100 MiB per VM per 10 s round
 *   qubes       qmemman-style: preferred = 1.3 x used (swap included),
 *               proportional split, 50 MiB host slack
 */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIB 1024.0

static uint64_t pool_of(const mb_host_t *h) {
  return h->total_kib > h->reserve_kib ? h->total_kib - h->reserve_kib : 0;
}

static double clampd(double v, double lo, double hi) {
  if (v < lo)
    v = lo;
  if (v > hi)
    v = hi;
  return v;
}

static uint64_t to_kib(double v) { return v > 0 ? (uint64_t)v : 0; }

static double field(const mb_domain_t *d, mb_field_t f) {
  return d->has_sample && mb_sample_has(&d->sample, f) ? (double)d->sample.v[f]
                                                       : -1;
}

/* What the guest uses: current - MemAvailable (its kernel's reserve
 * included); the whole domain when nothing is known. */
static double used_of(const mb_domain_t *d) {
  double avail = field(d, MB_F_MEMAVAILABLE);
  if (avail < 0)
    return (double)d->current_kib;
  return fmax(0, (double)d->current_kib - avail);
}

/* The balloon driver's minimum target (drivers/xen/balloon.c,
 * minimum_target(), as quoted by xenballoond): piecewise linear in the
 * domain's maximum, in MiB. */
static double balloon_min_kib(uint64_t max_kib) {
  double mb = (double)max_kib / MIB;
  double pages = (double)max_kib / 4;
  double r;
  if (mb < 125)
    r = 8 + floor(pages / 512);
  else if (mb < 500)
    r = 40 + floor(pages / 1024);
  else if (mb < 2000)
    r = 104 + floor(pages / 2048);
  else
    r = 296 + floor(pages / 8192);
  return fmin(r * MIB, (double)max_kib);
}

static void *no_state(const sim_scenario_t *scn) {
  static int dummy;
  return &dummy;
}
static void no_free(void *st) {}

/* ---- static ----------------------------------------------------------- */

static int static_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                         const mb_domain_t *d, size_t n, uint64_t *t) {
  if (n == 0)
    return 0;
  double share = (double)pool_of(h) / (double)n;
  for (size_t i = 0; i < n; i++)
    t[i] = to_kib(fmin(share, (double)d[i].max_kib));
  return 0;
}

const sim_policy_t sim_base_static = {.name = "static",
                                      .desc =
                                          "static equal split, no balancing",
                                      .interval_s = 0,
                                      .create = no_state,
                                      .destroy = no_free,
                                      .decide = static_decide};

/* ---- xenballoond ------------------------------------------------------ */

static int xb_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                     const mb_domain_t *d, size_t n, uint64_t *t) {
  for (size_t i = 0; i < n; i++) {
    double cur = (double)d[i].current_kib;
    double committed = field(&d[i], MB_F_COMMITTED_AS);
    if (committed < 0) {
      t[i] = d[i].target_kib;
      continue;
    }
    double goal = fmax(committed, balloon_min_kib(d[i].max_kib));
    double next = goal > cur ? cur + (goal - cur) / 1.0   /* up 1 */
                             : cur - (cur - goal) / 10.0; /* down 10 */
    t[i] = to_kib(clampd(next, 0, (double)d[i].max_kib));
  }
  return 0;
}

const sim_policy_t sim_base_xenballoond = {
    .name = "xenballoond",
    .desc = "xenballoond self-ballooning alone (Committed_AS, 1/10)",
    .interval_s = 0,
    .guest_local = true,
    .create = no_state,
    .destroy = no_free,
    .decide = xb_decide};

/* ---- xenmm idle memory tax -------------------------------------------- */

/* Min-funding revocation settles where every domain pays the same price
 * per page: shares / (active + k * idle) = 1/c with k = 1 / (1 - tau),
 * i.e. P = a + (w c - a) / k. c is found by bisection so that the clamped
 * sizes fill the pool. */
static int xenmm_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                        const mb_domain_t *d, size_t n, uint64_t *t) {
  const double tau = 0.75, k = 1.0 / (1.0 - tau);
  double pool = (double)pool_of(h);
  double a[SIM_MAX_VMS], lo[SIM_MAX_VMS], hi[SIM_MAX_VMS], w[SIM_MAX_VMS];
  if (n == 0 || n > SIM_MAX_VMS)
    return n ? -1 : 0;
  for (size_t i = 0; i < n; i++) {
    a[i] = used_of(&d[i]);
    w[i] = d[i].weight ? d[i].weight : 1;
    lo[i] = fmax((double)d[i].min_kib, balloon_min_kib(d[i].max_kib));
    hi[i] = (double)d[i].max_kib;
    if (lo[i] > hi[i])
      lo[i] = hi[i];
  }
  double clo = 0, chi = pool * k + 1;
  for (int it = 0; it < 100; it++) {
    double c = 0.5 * (clo + chi), sum = 0;
    for (size_t i = 0; i < n; i++)
      sum += clampd(a[i] + (w[i] * c - a[i]) / k, lo[i], hi[i]);
    if (sum > pool)
      chi = c;
    else
      clo = c;
  }
  for (size_t i = 0; i < n; i++)
    t[i] = to_kib(clampd(a[i] + (w[i] * clo - a[i]) / k, lo[i], hi[i]));
  return 0;
}

const sim_policy_t sim_base_xenmm = {
    .name = "xenmm",
    .desc = "xenmm idle memory tax, tau 0.75, every 2 s",
    .interval_s = 2,
    .create = no_state,
    .destroy = no_free,
    .decide = xenmm_decide};

/* ---- MoM -------------------------------------------------------------- */

static int mom_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                      const mb_domain_t *d, size_t n, uint64_t *t) {
  bool pressure = (double)h->free_kib < 0.20 * (double)h->total_kib;
  for (size_t i = 0; i < n; i++) {
    double cur = (double)d[i].current_kib, used = used_of(&d[i]);
    double goal = used * 1.2, next = (double)d[i].target_kib;
    if (!d[i].has_sample) {
      t[i] = d[i].target_kib;
      continue;
    }
    if (pressure) {
      if (cur > goal)
        next = fmax(goal, cur * 0.95);
    } else if (cur - used < 0.20 * cur) {
      next = cur + fmax(0.05 * cur, goal - cur);
    }
    t[i] = to_kib(clampd(next, 0, (double)d[i].max_kib));
  }
  return 0;
}

const sim_policy_t sim_base_mom = {
    .name = "mom",
    .desc = "MoM-style host-pressure rules (20 %, 5 % steps), every 10 s",
    .interval_s = 10,
    .create = no_state,
    .destroy = no_free,
    .decide = mom_decide};

/* ---- Proxmox ---------------------------------------------------------- */

static int pve_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                      const mb_domain_t *d, size_t n, uint64_t *t) {
  double total = (double)h->total_kib;
  double used = total - (double)h->free_kib;
  double diff = 0.80 * total - used; /* > 0: hand out, < 0: take back */
  double step_max = 100 * MIB, shares = 0;
  double lo[SIM_MAX_VMS];
  if (n > SIM_MAX_VMS)
    return -1;
  for (size_t i = 0; i < n; i++) {
    lo[i] = d[i].min_kib ? (double)d[i].min_kib : balloon_min_kib(d[i].max_kib);
    double cur = (double)d[i].current_kib;
    bool can = diff > 0 ? cur < (double)d[i].max_kib : cur > lo[i];
    if (can)
      shares += d[i].weight ? d[i].weight : 1;
  }
  for (size_t i = 0; i < n; i++) {
    double cur = (double)d[i].current_kib;
    bool can = diff > 0 ? cur < (double)d[i].max_kib : cur > lo[i];
    double next = cur;
    if (can && shares > 0) {
      double ch = diff * (d[i].weight ? d[i].weight : 1) / shares;
      next = cur + clampd(ch, -step_max, step_max);
    }
    t[i] = to_kib(clampd(next, fmin(lo[i], cur), (double)d[i].max_kib));
  }
  return 0;
}

const sim_policy_t sim_base_proxmox = {
    .name = "proxmox",
    .desc = "Proxmox-style auto-ballooning (80 % host, 100 MiB / 10 s)",
    .interval_s = 10,
    .create = no_state,
    .destroy = no_free,
    .decide = pve_decide};

/* ---- Qubes qmemman ---------------------------------------------------- */

static int qubes_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                        const mb_domain_t *d, size_t n, uint64_t *t) {
  double avail = (double)pool_of(h) - 50 * MIB;
  double pref[SIM_MAX_VMS], sum = 0;
  if (n > SIM_MAX_VMS)
    return -1;
  for (size_t i = 0; i < n; i++) {
    double total = field(&d[i], MB_F_MEMTOTAL), fr = field(&d[i], MB_F_MEMFREE);
    double ca = field(&d[i], MB_F_CACHED), bu = field(&d[i], MB_F_BUFFERS);
    double st_ = field(&d[i], MB_F_SWAPTOTAL), sf = field(&d[i], MB_F_SWAPFREE);
    if (total < 0 || fr < 0) {
      pref[i] = (double)d[i].current_kib;
    } else {
      double used = total - fr - fmax(ca, 0) - fmax(bu, 0);
      if (st_ >= 0 && sf >= 0 && st_ >= sf)
        used += st_ - sf;
      /* the guest kernel's own reserve is outside MemTotal */
      pref[i] = 1.3 * fmax(used, 0) + fmax(0, (double)d[i].current_kib - total);
    }
    sum += pref[i];
  }
  for (size_t i = 0; i < n; i++) {
    double v = sum <= 0       ? 0
               : sum <= avail ? pref[i] + (avail - sum) * pref[i] / sum
                              : avail * pref[i] / sum;
    t[i] = to_kib(clampd(v, 0, (double)d[i].max_kib));
  }
  return 0;
}

const sim_policy_t sim_base_qubes = {
    .name = "qubes",
    .desc = "Qubes-qmemman-style (1.3 x used incl. swap, 50 MiB slack)",
    .interval_s = 0,
    .create = no_state,
    .destroy = no_free,
    .decide = qubes_decide};
