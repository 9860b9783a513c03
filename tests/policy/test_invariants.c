/*
 * Every guarantee of mb_policy_compute's header comment, checked on
 * thousands of random hosts (fixed seed; MEMBAL_SEED=n overrides it), each
 * run for several rounds with the balloons moving (or sticking) between
 * rounds. The checker recomputes floors, pool and staleness on its own
 * rather than reading them back from the code under test.
 */
#include <math.h>

#include "membal_policy.h"
#include "unit.h"

#define MAXN 200
#define G(x) ((uint64_t)(x)*1048576)
#define M(x) ((uint64_t)(x)*1024)

static uint64_t rng;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static bool chance(unsigned pct) { return below(100) < pct; }
static double frand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static void random_config(mb_config_t *c) {
  static const uint64_t deadbands[] = {0, M(4), M(8), M(64)};
  static const uint64_t caps[] = {0, 0, M(16), M(256), 1};
  mb_config_default(c);
  c->kind = (mb_policy_kind_t)below(MB_POLICY_COUNT);
  c->tax.tau = chance(20) ? (double)below(2) : frand();
  c->tax.tau_auto = chance(50);
  c->cagma.margin_frac = frand() * 0.5;
  c->cagma.margin_min_kib = below(M(64));
  c->cagma.swap_threshold_pps = chance(10) ? 0 : frand() * 200;
  c->cagma.majflt_threshold_ps = frand() * 1000;
  c->selfballoon.up_hysteresis = 1 + (unsigned)below(20);
  c->selfballoon.down_hysteresis = 1 + (unsigned)below(20);
  c->deadband_kib = deadbands[below(4)];
  c->step_cap_kib = caps[below(5)];
  if (c->step_cap_kib != 0 && c->step_cap_kib < c->deadband_kib)
    c->step_cap_kib = c->deadband_kib; /* refused by validation */
  c->stale_after_s = 5 + frand() * 55;
  c->cagma.forecast_s = chance(20) ? 0 : frand() * 60;
}

static void random_sample(mb_domain_t *d) {
  mb_sample_t *s = &d->sample;
  memset(s, 0, sizeof(*s));
  uint64_t total = d->current_kib - below(d->current_kib / 10 + 1);
  if (chance(3))
    total = rnd() >> 22; /* a guest that lies */
  for (int f = 0; f < MB_F_COUNT; f++) {
    if (chance(25))
      continue; /* every field is optional */
    s->have |= UINT64_C(1) << f;
    if (f == MB_F_MEMTOTAL)
      s->v[f] = total;
    else if (f == MB_F_COMMITTED_AS)
      s->v[f] = below(total * 2 + 1);
    else if (f < MB_F_FIRST_VMSTAT)
      s->v[f] = chance(3) ? rnd() : below(total / 2 + 1);
    else
      s->v[f] = rnd() >> below(64);
  }
  s->seq = 1 + below(1000);
  s->urgent = chance(5);
  d->has_sample = chance(85);
  d->sample_age_s = chance(2) ? NAN : frand() * 60;
  d->rates.valid = chance(50);
  d->rates.swapin_pps = chance(2) ? INFINITY : frand() * 300;
  d->rates.swapout_pps = frand() * 100;
  d->rates.majflt_ps = chance(2) ? NAN : frand() * 600;
  /* stall and refault figures are the guest's word too */
  d->rates.stall_valid = chance(50);
  d->rates.some_stall_share = chance(2) ? NAN : frand();
  d->rates.full_stall_share = frand();
  d->rates.refault_valid = chance(50);
  d->rates.refault_anon_ps = chance(2) ? INFINITY : frand() * 300;
  d->rates.refault_file_ps = chance(2)   ? NAN
                             : chance(2) ? 1e300
                                         : frand() * 300;
  d->headroom_kib = chance(50) ? 0 : chance(2) ? UINT64_MAX : below(G(4));
  d->rates.growth_valid = chance(50);
  d->rates.anon_growth_kibps = chance(2)   ? NAN
                               : chance(2) ? INFINITY
                                           : (frand() - 0.3) * 400000;
}

/* Hosts are sized from their domains (0.5x to 1.5x what they hold) so
 * that tight, loose and over-committed pools all occur often. */
static size_t random_host(mb_host_t *h, mb_domain_t *doms) {
  memset(h, 0, sizeof(*h));
  size_t n = chance(3) ? below(MAXN + 1) : below(41);
  uint64_t held = 0;
  for (size_t i = 0; i < n; i++) {
    mb_domain_t *d = &doms[i];
    memset(d, 0, sizeof(*d));
    d->domid = (uint32_t)i + 1;
    snprintf(d->name, sizeof(d->name), "r%zu", i);
    d->max_kib = chance(3) ? 0 : chance(1) ? UINT64_MAX : below(G(16));
    uint64_t cap = d->max_kib > G(32) ? G(32) : d->max_kib;
    d->current_kib = below(cap + cap / 5 + 1);
    d->target_kib = chance(30) ? below(cap + 1) : d->current_kib;
    d->min_kib = chance(50) ? 0 : chance(2) ? below(G(32)) : below(cap / 2 + 1);
    d->weight = (uint32_t)below(11);
    d->node_mask = chance(40) ? (uint32_t)below(32) : 0;
    random_sample(d);
    held += d->current_kib;
  }
  h->reserve_kib = chance(2) ? below(G(64)) : below(G(4));
  h->total_kib = chance(1)   ? UINT64_MAX
                 : chance(5) ? below(G(64))
                             : held / 2 + below(held + 1) + h->reserve_kib;
  h->free_kib = below(h->total_kib / 4 + 1);
  if (chance(50)) {
    h->nr_nodes = 1 + (unsigned)below(4);
    for (unsigned k = 0; k < h->nr_nodes; k++)
      h->node_free_kib[k] = chance(2) ? UINT64_MAX : below(G(4));
  }
  return n;
}

/* Independent reimplementation of the floor rule, for checking. */
static uint64_t floor_of(const mb_domain_t *d, uint64_t *hi_out) {
  uint64_t hi = d->max_kib < MB_KIB_MAX ? d->max_kib : MB_KIB_MAX;
  uint64_t lo = d->min_kib ? d->min_kib : mb_balloon_min_kib(hi);
  *hi_out = hi;
  return lo < hi ? lo : hi;
}

static unsigned checked, floors_cases, stale_cases, cut_cases, numa_cases;

static void check_round(const mb_config_t *cfg, const mb_state_t *st,
                        const mb_host_t *h, const mb_domain_t *doms, size_t n,
                        const mb_decision_t *out) {
  uint64_t pool =
      h->total_kib > h->reserve_kib ? h->total_kib - h->reserve_kib : 0;
  uint64_t sum = 0, sum_floor = 0, hold = 0, grown_bound = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t hi, lo = floor_of(&doms[i], &hi);
    uint64_t from =
        doms[i].current_kib < MB_KIB_MAX ? doms[i].current_kib : MB_KIB_MAX;
    bool stale =
        !doms[i].has_sample || !(doms[i].sample_age_s >= 0 &&
                                 doms[i].sample_age_s <= cfg->stale_after_s);
    sum += out[i].target_kib;
    sum_floor += lo;
    uint64_t keep = from < lo ? lo : from > hi ? hi : from;
    hold += stale ? keep : lo;
    ASSERT_U64(out[i].floor_kib, lo);
    ASSERT_U64(out[i].from_kib, from); /* accounted at current_kib */
    CU_ASSERT_EQUAL(out[i].stale, stale);
    CU_ASSERT(out[i].target_kib >= lo);
    CU_ASSERT(out[i].target_kib <= hi);
    CU_ASSERT(out[i].reason < MB_R_COUNT);
    if (cfg->kind != MB_POLICY_CAGMA)
      ASSERT_U64(out[i].cma_kib, 0);
  }
  bool floors_exceed = sum_floor > pool;
  if (floors_exceed) {
    floors_cases++;
    for (size_t i = 0; i < n; i++)
      ASSERT_U64(out[i].target_kib, out[i].floor_kib);
    return;
  }
  CU_ASSERT(sum <= pool); /* conservation */
  if (sum > pool)
    fprintf(stderr, "\n  conservation: sum %llu > pool %llu (n=%zu)\n",
            (unsigned long long)sum, (unsigned long long)pool, n);
  unsigned nodes = h->nr_nodes;
  uint32_t valid = (UINT32_C(1) << nodes) - 1;
  uint64_t all_node_free = 0;
  for (unsigned k = 0; k < nodes; k++)
    all_node_free +=
        h->node_free_kib[k] < MB_KIB_MAX ? h->node_free_kib[k] : MB_KIB_MAX;
  for (size_t i = 0; i < n; i++) {
    const mb_decision_t *o = &out[i];
    uint64_t hi, lo = floor_of(&doms[i], &hi);
    uint64_t from = o->from_kib, t = o->target_kib;
    bool from_ok = from >= lo && from <= hi;
    if (o->stale && hold <= pool) {
      stale_cases++;
      CU_ASSERT(t >= (from < hi ? from : hi)); /* stale never shrunk */
    }
    if (o->reason == MB_R_POOL_LIMIT)
      cut_cases++;
    if (from_ok && t != from && o->reason != MB_R_POOL_LIMIT) {
      uint64_t d = t > from ? t - from : from - t;
      uint64_t need = cfg->deadband_kib;
      if (cfg->step_cap_kib && cfg->step_cap_kib < need)
        need = cfg->step_cap_kib;
      CU_ASSERT(d >= need); /* dead band */
    }
    if (cfg->step_cap_kib && from_ok) {
      if (t > from && !o->emergency)
        CU_ASSERT(t - from <= cfg->step_cap_kib);
      if (t < from && o->reason != MB_R_POOL_LIMIT)
        CU_ASSERT(from - t <= cfg->step_cap_kib);
    }
    uint32_t mask = doms[i].node_mask & valid;
    if (nodes > 0 && mask != 0) {
      uint64_t start = from > lo ? from : lo;
      uint64_t g = t > start ? t - start : 0, avail = 0;
      for (unsigned k = 0; k < nodes; k++)
        if (mask >> k & 1u)
          avail += h->node_free_kib[k] < MB_KIB_MAX ? h->node_free_kib[k]
                                                    : MB_KIB_MAX;
      CU_ASSERT(g <= avail); /* grown only from its nodes' free memory */
      grown_bound += g;
      numa_cases++;
    }
  }
  if (nodes > 0)
    CU_ASSERT(grown_bound <= all_node_free);
  if (st != NULL) {
    CU_ASSERT(st->tau >= 0 && st->tau <= 1);
    if (cfg->kind == MB_POLICY_TAX && cfg->tax.tau_auto)
      CU_ASSERT(st->tau >= cfg->tax.tau);
  }
  checked++;
}

static void test_random_hosts(void) {
  static mb_domain_t doms[MAXN], copy[MAXN];
  static mb_decision_t out[MAXN], again[MAXN];
  const char *env = getenv("MEMBAL_SEED");
  rng = env ? strtoull(env, NULL, 0) : 20260522;
  if (rng == 0)
    rng = 1;
  fprintf(stderr, "\n  seed %llu\n", (unsigned long long)rng);
  for (int host_i = 0; host_i < 4000; host_i++) {
    mb_config_t cfg;
    mb_host_t h;
    random_config(&cfg);
    size_t n = random_host(&h, doms);
    mb_state_t st;
    mb_state_init(&st, &cfg);
    for (int round = 0; round < 4; round++) {
      memcpy(copy, doms, sizeof(doms[0]) * n);
      mb_state_t st2 = st;
      CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, &st, &h, doms, n, out), 0);
      /* inputs untouched, same input -> same output */
      CU_ASSERT_EQUAL(memcmp(copy, doms, sizeof(doms[0]) * n), 0);
      CU_ASSERT_EQUAL(mb_policy_compute(&cfg, &st2, &h, doms, n, again), 0);
      CU_ASSERT_EQUAL(memcmp(out, again, sizeof(out[0]) * n), 0);
      CU_ASSERT_EQUAL(memcmp(&st, &st2, sizeof(st)), 0);
      check_round(&cfg, &st, &h, doms, n, out);
      /* the balloons move: most reach the target, some stick halfway,
       * samples age or refresh */
      for (size_t i = 0; i < n; i++) {
        mb_domain_t *d = &doms[i];
        d->target_kib = out[i].target_kib;
        if (chance(80))
          d->current_kib = out[i].target_kib;
        else
          d->current_kib = (d->current_kib / 2) + (out[i].target_kib / 2);
        d->sample_age_s = chance(20) ? d->sample_age_s + 10 : frand() * 5;
        if (chance(10))
          random_sample(d);
      }
    }
  }
  fprintf(stderr,
          "  rounds checked %u: floors-exceed %u, stale checks %u, "
          "pool cuts %u, NUMA checks %u\n",
          checked, floors_cases, stale_cases, cut_cases, numa_cases);
  /* the generator reaches every regime the invariants talk about */
  CU_ASSERT(checked > 10000);
  CU_ASSERT(floors_cases > 100);
  CU_ASSERT(stale_cases > 1000);
  CU_ASSERT(cut_cases > 1000);
  CU_ASSERT(numa_cases > 1000);
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"invariants on random hosts", test_random_hosts},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("invariants", tests);
}
