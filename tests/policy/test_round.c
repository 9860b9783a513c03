/*
 * The round module (policy/round.h): clamps, reserve, plan order, grows
 * held to what the shrinks free, failures, and the plan's guarantees on
 * random hosts (fixed seed; MEMBAL_SEED=n overrides it).
 */
#include <math.h>

#include "round.h"
#include "unit.h"

#define MAXN 64
#define G(x) ((uint64_t)(x)*1048576)
#define M(x) ((uint64_t)(x)*1024)

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* A guest holding cur_kib, using used_kib (anon), with a fresh sample. */
static void guest(mb_domain_t *d, uint32_t domid, uint64_t cur_kib,
                  uint64_t used_kib) {
  memset(d, 0, sizeof(*d));
  d->domid = domid;
  snprintf(d->name, sizeof(d->name), "vm%u", domid);
  d->current_kib = cur_kib;
  d->target_kib = cur_kib;
  d->max_kib = G(8);
  d->has_sample = true;
  d->sample_age_s = 1;
  mb_sample_t *s = &d->sample;
  s->seq = 1;
  uint64_t total = cur_kib - M(16);
  s->v[MB_F_MEMTOTAL] = total;
  s->v[MB_F_MEMFREE] = total - used_kib;
  s->v[MB_F_MEMAVAILABLE] = total - used_kib;
  s->v[MB_F_ANONPAGES] = used_kib;
  s->have = (1u << MB_F_MEMTOTAL) | (1u << MB_F_MEMFREE) |
            (1u << MB_F_MEMAVAILABLE) | (1u << MB_F_ANONPAGES);
}

typedef struct {
  mb_round_config_t cfg;
  mb_round_state_t st;
  mb_domain_t doms[MAXN];
  mb_decision_t dec[MAXN];
  mb_round_step_t steps[MAXN];
  mb_round_plan_t plan;
} fixture_t;

static void fx_init(fixture_t *f) {
  memset(f, 0, sizeof(*f));
  mb_round_config_default(&f->cfg);
  f->plan.doms = f->doms;
  f->plan.dec = f->dec;
  f->plan.steps = f->steps;
  f->plan.cap = MAXN;
}

static int fx_round(fixture_t *f, const mb_round_input_t *in) {
  if (f->st.rounds == 0 && f->st.policy.rounds == 0)
    CU_ASSERT_EQUAL_FATAL(mb_round_state_init(&f->st, &f->cfg, MAXN), 0);
  return mb_round_compute(&f->cfg, &f->st, in, &f->plan);
}

static void test_clamps_and_reserve(void) {
  fixture_t f;
  fx_init(&f);
  mb_round_clamp_t clamps[] = {{"vm1", M(900), M(1500), 3}};
  f.cfg.clamps = clamps;
  f.cfg.nclamps = 1;
  mb_domain_t in_doms[3];
  memset(&in_doms[0], 0, sizeof(in_doms[0]));
  in_doms[0].domid = 0; /* dom0: left out, counted in the reserve */
  snprintf(in_doms[0].name, sizeof(in_doms[0].name), "Domain-0");
  in_doms[0].current_kib = G(1);
  guest(&in_doms[1], 1, G(1), M(600));
  guest(&in_doms[2], 2, G(1), M(600));
  in_doms[1].min_kib = M(1); /* ignored: the clamps set it */
  in_doms[2].target_kib = 0; /* unknown: taken as current */
  mb_round_input_t in = {.now_s = 100, .doms = in_doms, .n = 3};
  in.host.total_kib = G(8);
  in.host.free_kib = G(4) + M(512);
  in.pending_kib = M(256);
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  ASSERT_U64(f.plan.n, 2);
  ASSERT_U64(f.doms[0].domid, 1);
  ASSERT_U64(f.doms[0].min_kib, M(900));
  ASSERT_U64(f.doms[0].max_kib, M(1500));
  ASSERT_U64(f.doms[0].weight, 3);
  ASSERT_U64(f.doms[1].min_kib, 0);
  ASSERT_U64(f.doms[1].weight, 1);
  ASSERT_U64(f.doms[1].target_kib, G(1));
  /* held = 8 - 4.5 - 2 GiB guests = 1.5 GiB (> dom0's 1 GiB); + 64 MiB
   * slack + 256 MiB pending */
  ASSERT_U64(f.plan.host.reserve_kib, G(1) + M(512) + M(64) + M(256));
  ASSERT_U64(f.plan.pool_kib, G(8) - f.plan.host.reserve_kib);
  CU_ASSERT(f.dec[0].target_kib <= M(1500));
  CU_ASSERT(f.dec[0].target_kib >= M(900));
  CU_ASSERT(f.plan.sum_kib <= f.plan.pool_kib);
  ASSERT_U64(f.plan.audit, MB_ROUND_SUM_OK);

  /* fixed reserve */
  f.cfg.reserve_auto = false;
  f.cfg.reserve_kib = G(2);
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  ASSERT_U64(f.plan.host.reserve_kib, G(2) + M(256));
  mb_round_state_dispose(&f.st);
}

/* A domain being built (listed, holding nothing yet, its target written by
 * the toolstack) is left out: no decision, no step, the others' round is
 * the one they would have without it (the real-Xen e2e: membal set the Min
 * of a 256 MiB guest xl was building). */
static void test_domain_being_built(void) {
  fixture_t f, g;
  fx_init(&f);
  fx_init(&g);
  mb_domain_t in_doms[3];
  guest(&in_doms[0], 1, G(1), M(900));
  guest(&in_doms[1], 2, G(1), M(100));
  guest(&in_doms[2], 3, 0, 0);
  in_doms[2].has_sample = false;
  in_doms[2].target_kib = M(256);
  in_doms[2].max_kib = M(256);
  mb_round_input_t in = {.now_s = 100, .doms = in_doms, .n = 3};
  in.host.total_kib = G(3);
  in.host.free_kib = M(512);
  in.pending_kib = M(256); /* its reservation */
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  ASSERT_U64(f.plan.n, 2);
  for (size_t k = 0; k < f.plan.nsteps; k++)
    CU_ASSERT(f.doms[f.steps[k].dom].domid != 3);
  /* the same host without it */
  in.n = 2;
  CU_ASSERT_EQUAL_FATAL(fx_round(&g, &in), 0);
  ASSERT_U64(f.plan.pool_kib, g.plan.pool_kib);
  ASSERT_U64(f.plan.nsteps, g.plan.nsteps);
  for (size_t i = 0; i < 2; i++)
    ASSERT_U64(f.dec[i].target_kib, g.dec[i].target_kib);
  /* once it holds memory it is balanced like any other (stale: not
   * shrunk below what it holds) */
  in.n = 3;
  in_doms[2].current_kib = M(256);
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  ASSERT_U64(f.plan.n, 3);
  CU_ASSERT(f.dec[2].target_kib >= M(256));
  mb_round_state_dispose(&f.st);
  mb_round_state_dispose(&g.st);
}

/* One busy guest, two idle ones: the idle ones shrink first, the busy one
 * grows by what they free; a failed shrink holds the grow back. */
static void busy_host(fixture_t *f, mb_domain_t *in_doms,
                      mb_round_input_t *in) {
  fx_init(f);
  f->cfg.reserve_auto = false;
  f->cfg.reserve_kib = G(1);
  guest(&in_doms[0], 1, G(2), G(1) + M(800)); /* busy */
  guest(&in_doms[1], 2, G(2), M(200));
  guest(&in_doms[2], 3, G(2), M(200));
  /* the busy guest ramps: CMA above what it holds */
  in_doms[0].sample.v[MB_F_ANONPAGES] = G(2) - M(100);
  in_doms[0].sample.v[MB_F_MEMFREE] = M(50);
  in_doms[0].sample.v[MB_F_MEMAVAILABLE] = M(50);
  memset(in, 0, sizeof(*in));
  in->now_s = 10;
  in->doms = in_doms;
  in->n = 3;
  in->host.total_kib = G(7);
  in->host.free_kib = G(0);
}

static void test_plan_order(void) {
  fixture_t f;
  mb_domain_t in_doms[3];
  mb_round_input_t in;
  busy_host(&f, in_doms, &in);
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  CU_ASSERT_FATAL(f.plan.nsteps == 3);
  CU_ASSERT(f.steps[0].shrink && f.steps[1].shrink && !f.steps[2].shrink);
  ASSERT_U64(f.steps[2].dom, 0);
  /* everything the shrinks free is there for the grow */
  ASSERT_U64(f.steps[2].to_kib, f.steps[2].want_kib);
  for (size_t k = 0; k < f.plan.nsteps; k++)
    mb_round_step_done(&f.plan, k, true);
  CU_ASSERT(mb_round_sum_in_force(&f.plan) <= f.plan.pool_kib);
  mb_round_state_dispose(&f.st);
}

static void test_failed_shrink_holds_grow(void) {
  fixture_t f;
  mb_domain_t in_doms[3];
  mb_round_input_t in;
  busy_host(&f, in_doms, &in);
  CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  CU_ASSERT_FATAL(f.plan.nsteps == 3);
  uint64_t freed1 = f.steps[1].from_kib - f.steps[1].to_kib;
  mb_round_step_done(&f.plan, 0, true);
  mb_round_step_done(&f.plan, 1, false); /* the backend refused */
  ASSERT_U64(f.dec[f.steps[1].dom].target_kib, f.steps[1].from_kib);
  /* the grow lost what the failed shrink would have freed */
  CU_ASSERT(f.steps[2].to_kib + freed1 <= f.steps[2].want_kib ||
            f.steps[2].to_kib == f.steps[2].from_kib);
  mb_round_step_done(&f.plan, 2, true);
  CU_ASSERT(mb_round_sum_in_force(&f.plan) <= f.plan.pool_kib);
  mb_round_state_dispose(&f.st);
}

/* D4: a balloon told to shrink that does not move is accounted at what it
 * holds. vm1 holds 3 GiB with a 1 GiB target in force and has not moved
 * for 20 s; the busy vm2 wants to grow. Counted at its target, vm1 would
 * leave 2 GiB of "room" that is in fact still in vm1: the grow must get
 * only what is really free. */
static void test_stuck_balloon(void) {
  fixture_t f;
  fx_init(&f);
  f.cfg.reserve_auto = false;
  f.cfg.reserve_kib = 0;
  mb_domain_t d[2];
  guest(&d[0], 1, G(3), M(300));
  d[0].target_kib = G(1);
  guest(&d[1], 2, G(1), G(1) - M(40));
  d[1].sample.v[MB_F_MEMAVAILABLE] = M(10);
  d[1].sample.v[MB_F_MEMFREE] = M(10);
  mb_round_input_t in = {.now_s = 0, .doms = d, .n = 2};
  in.host.total_kib = G(4) + M(512);
  for (int r = 0; r < 3; r++) {
    in.now_s = r * 10.0; /* the balloon never moves */
    CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
  }
  /* what the round accounts vm1 at after its step: what it holds */
  uint64_t vm1 = G(3), grow = 0;
  for (size_t k = 0; k < f.plan.nsteps; k++) {
    const mb_round_step_t *s = &f.steps[k];
    if (s->dom == 0)
      CU_ASSERT(s->stuck);
    if (s->dom == 1 && !s->shrink)
      grow = s->to_kib - s->from_kib;
  }
  if (vm1 + G(1) + grow > in.host.total_kib)
    fprintf(stderr, "\n  vm2 grown by %llu KiB of memory vm1 still holds",
            (unsigned long long)(vm1 + G(1) + grow - in.host.total_kib));
  CU_ASSERT(vm1 + G(1) + grow <= in.host.total_kib);
  mb_round_state_dispose(&f.st);
}

static void set_demand(mb_domain_t *d, uint64_t anon_kib);

/* A host for grants and holds: vm1 (1 GiB, 4 GiB max) and two honest
 * 3 GiB guests using 2.5 GiB, on 8 GiB. */
static void grant_host(fixture_t *f, mb_domain_t *d, mb_round_input_t *in) {
  fx_init(f);
  f->cfg.reserve_auto = false;
  guest(&d[0], 1, G(1), M(600));
  guest(&d[1], 2, G(3), G(2) + M(512));
  guest(&d[2], 3, G(3), G(2) + M(512));
  for (int i = 0; i < 3; i++)
    d[i].max_kib = G(4);
  memset(in, 0, sizeof(*in));
  in->doms = d;
  in->n = 3;
  in->host.total_kib = G(8);
  CU_ASSERT_EQUAL_FATAL(mb_round_state_init(&f->st, &f->cfg, MAXN), 0);
}

static void storm(mb_domain_t *d, bool on) {
  set_demand(d, d->sample.v[MB_F_ANONPAGES]); /* a sample of its new size */
  d->sample.urgent = on;
  d->rates.valid = true;
  d->rates.swapout_pps = on ? 50000 : 0; /* asks 10 s x 195 MiB/s */
}

/* Moves every balloon to its target. */
static void settle(fixture_t *f, mb_domain_t *d, size_t n) {
  for (size_t k = 0; k < f->plan.nsteps; k++)
    mb_round_step_done(&f->plan, k, true);
  for (size_t i = 0; i < n; i++)
    d[i].target_kib = d[i].current_kib = f->dec[i].target_kib;
}

/* An emergency grant is bounded per guest per window: a guest faking a
 * storm of 50000 pages/s (an ask of about 2 GiB) grows beyond its CMA by
 * at most 512 MiB in 60 s, then by 512 MiB again in the next window. */
static void test_grant_bounded(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  uint64_t start = d[0].current_kib;
  for (int r = 0; r < 6; r++) { /* 0..50 s: one window */
    in.now_s = r * 10.0;
    storm(&d[0], true);
    CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
    CU_ASSERT(f.dec[0].emergency);
    if (f.dec[0].target_kib > start + M(512) + M(100))
      fprintf(stderr, "\n  round %d: faker at %llu KiB (started %llu)", r,
              (unsigned long long)f.dec[0].target_kib,
              (unsigned long long)start);
    settle(&f, d, 3);
  }
  uint64_t cma = f.dec[0].cma_kib;
  /* its CMA (what it holds, + 10 %) is not a grant; beyond it, 512 MiB */
  CU_ASSERT(d[0].current_kib <= max_u64(start, cma) + M(512));
  CU_ASSERT(d[0].current_kib >= start + M(512));
  uint64_t first = d[0].current_kib;
  in.now_s = 60; /* a new window */
  storm(&d[0], true);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  settle(&f, d, 3);
  CU_ASSERT(d[0].current_kib > first + M(256));
  CU_ASSERT(d[0].current_kib <= first + M(512) + M(128));
  mb_round_state_dispose(&f.st);
}

/* A guest under pressure keeps the target in force while its balloon is
 * on the way (real Xen under load: an urgent round gave busy 1024 MiB, the
 * next one, 4 s later and still under pressure, cut it to 624 MiB because
 * the balloon had reached 553). The grant is counted once. */
static void test_grant_on_its_way(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  uint64_t start = d[0].current_kib;
  storm(&d[0], true);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  uint64_t given = f.dec[0].target_kib;
  CU_ASSERT_FATAL(given > start + M(256));
  for (size_t k = 0; k < f.plan.nsteps; k++)
    mb_round_step_done(&f.plan, k, true);
  /* the targets are in force; vm1's balloon has moved 64 MiB, the donors'
   * not at all */
  for (int i = 0; i < 3; i++)
    d[i].target_kib = f.dec[i].target_kib;
  d[0].current_kib = start + M(64);
  for (int r = 1; r <= 3; r++) {
    in.now_s = r;
    storm(&d[0], true);
    CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
    if (f.dec[0].target_kib < given)
      fprintf(stderr, "\n  round %d: vm1 cut to %llu KiB, was given %llu", r,
              (unsigned long long)f.dec[0].target_kib,
              (unsigned long long)given);
    CU_ASSERT(f.dec[0].target_kib >= given);
    CU_ASSERT(f.plan.sum_kib <= f.plan.pool_kib);
    /* within one window the grants add up to at most grant_max_kib */
    CU_ASSERT(f.dec[0].target_kib <=
              max_u64(start, f.dec[0].cma_kib) + f.cfg.grant_max_kib);
    for (size_t k = 0; k < f.plan.nsteps; k++)
      mb_round_step_done(&f.plan, k, true);
    for (int i = 0; i < 3; i++)
      d[i].target_kib = f.dec[i].target_kib;
  }
  mb_round_state_dispose(&f.st);
}

/* A guest under pressure whose balloon never reaches its target (or that
 * fakes its storm) keeps a floor at its target in force only while no
 * stale neighbour has to be shrunk for it (membal.restarts: after a
 * restart the two honest guests were stale and were cut to 768 MiB). */
static void test_pressure_floor_spares_stale(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  d[0].target_kib = G(4); /* granted before; its balloon stuck at 1 GiB */
  d[1].has_sample = d[2].has_sample = false;
  storm(&d[0], true);
  in.now_s = 100;
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  for (int i = 1; i < 3; i++) {
    if (f.dec[i].target_kib < d[i].current_kib)
      fprintf(stderr, "\n  stale vm%d cut to %llu KiB from %llu", i + 1,
              (unsigned long long)f.dec[i].target_kib,
              (unsigned long long)d[i].current_kib);
    CU_ASSERT(f.dec[i].target_kib >= d[i].current_kib);
  }
  CU_ASSERT(f.plan.sum_kib <= f.plan.pool_kib);
  mb_round_state_dispose(&f.st);
}

/* A grant is held: the storm calms, the guest keeps what it was given for
 * GrantHold (45 s) while the donors would regrow; then it gives it back. */
static void test_grant_held(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  in.now_s = 0;
  storm(&d[0], true);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  settle(&f, d, 3);
  uint64_t granted = d[0].current_kib;
  CU_ASSERT(granted > G(1) + M(256));
  for (int r = 1; r <= 4; r++) { /* 10..40 s: calm, still held */
    in.now_s = r * 10.0;
    storm(&d[0], false);
    CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
    if (f.dec[0].target_kib < granted)
      fprintf(stderr, "\n  %.0f s after the grant: %llu KiB, was %llu",
              in.now_s, (unsigned long long)f.dec[0].target_kib,
              (unsigned long long)granted);
    CU_ASSERT(f.dec[0].target_kib >= granted);
    settle(&f, d, 3);
  }
  in.now_s = 50; /* hold over: the guest's idle memory goes back */
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  CU_ASSERT(f.dec[0].target_kib < granted);
  mb_round_state_dispose(&f.st);
}

/* vm1 storms and is granted memory (balloons settle), then calms down
 * 10 s later, within its hold. Returns what it was granted (holds). */
static uint64_t grant_then_calm(fixture_t *f, mb_domain_t *d,
                                mb_round_input_t *in) {
  storm(&d[0], true);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f->cfg, &f->st, in, &f->plan), 0);
  settle(f, d, 3);
  in->now_s += 10;
  storm(&d[0], false);
  return d[0].current_kib;
}

/* Holds give way to another guest's CMA: vm1 is held at its grant; then
 * vm2's working set grows beyond what the host can give without vm1's
 * held memory. vm1's hold is released, vm2 and vm3 lose nothing. */
static void test_hold_gives_way(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  uint64_t granted = grant_then_calm(&f, d, &in);
  /* vm2 (its balloon grown to 3.3 GiB) and vm3 now need nearly all they
   * hold: their CMAs and vm1's hold exceed the host */
  d[1].current_kib = d[1].target_kib = G(3) + M(300);
  set_demand(&d[1], d[1].current_kib - M(40));
  set_demand(&d[2], d[2].current_kib - M(40));
  d[1].max_kib = d[2].max_kib = G(8);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  CU_ASSERT(f.dec[1].cma_kib > d[1].current_kib);
  CU_ASSERT(f.dec[0].target_kib < granted);
  for (int i = 1; i < 3; i++) {
    if (f.dec[i].target_kib < f.dec[i].cma_kib &&
        f.dec[i].target_kib < in.host.total_kib / 2)
      fprintf(stderr, "\n  vm%d below its CMA: %llu < %llu", i + 1,
              (unsigned long long)f.dec[i].target_kib,
              (unsigned long long)f.dec[i].cma_kib);
    CU_ASSERT(f.dec[i].target_kib >= d[i].current_kib);
  }
  mb_round_state_dispose(&f.st);
}

/* A held guest does not keep another below its CMA (membal-bench
 * dacapo): vm1 is held at an earlier grant, vm2 at a later one; vm2's
 * demand falls while vm1's rises again above what it holds, and the host
 * has nothing free. vm1 reaches its CMA. (Before holds were counted, both
 * kept their holds and vm1 stayed below its CMA, swapping, for the rest of
 * vm2's hold.) Since donors give only what a guest in deficit waits for,
 * vm3, which holds more than its CMA and is not held, gives it. */
static void test_hold_gives_way_to_held(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  storm(&d[0], true); /* t = 0: vm1's grant */
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  settle(&f, d, 3);
  CU_ASSERT_FATAL(d[0].current_kib > G(1) + M(256));
  in.now_s = 10; /* vm1 calm, using what it was given; vm2's storm */
  storm(&d[0], false);
  set_demand(&d[0], d[0].current_kib - M(200));
  storm(&d[1], true);
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  CU_ASSERT(f.dec[1].emergency);
  settle(&f, d, 3);
  uint64_t vm2_given = d[1].current_kib;
  CU_ASSERT_FATAL(vm2_given > G(3));
  /* nothing free any more: the pool is what the guests hold */
  in.host.total_kib = d[0].current_kib + d[1].current_kib + d[2].current_kib;
  in.now_s = 20; /* within both holds */
  storm(&d[1], false);
  set_demand(&d[1], G(1)); /* vm2's demand fell */
  storm(&d[0], false);
  set_demand(&d[0], d[0].current_kib); /* vm1 needs more than it holds */
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  CU_ASSERT_FATAL(f.dec[0].cma_kib > d[0].current_kib + M(64));
  if (f.dec[0].target_kib < f.dec[0].cma_kib)
    fprintf(stderr, "\n  vm1 below its CMA: %llu < %llu (vm2 at %llu)",
            (unsigned long long)f.dec[0].target_kib,
            (unsigned long long)f.dec[0].cma_kib,
            (unsigned long long)f.dec[1].target_kib);
  CU_ASSERT(f.dec[0].target_kib >= f.dec[0].cma_kib);
  /* vm3, not held, holds more than its CMA: it gives what vm1 waits for,
   * and vm2's hold stands (a donor gives only what a guest in deficit
   * waits for, cagma.c donors_give). Where no guest had it to give, the
   * holds give way (the tests above). */
  CU_ASSERT(f.dec[2].target_kib < d[2].current_kib);
  CU_ASSERT(f.dec[2].target_kib >= f.dec[2].cma_kib);
  ASSERT_U64(f.dec[2].target_kib,
             d[2].current_kib - (f.dec[0].target_kib - d[0].current_kib));
  ASSERT_U64(f.dec[1].target_kib, vm2_given);
  CU_ASSERT_EQUAL(f.plan.audit, MB_ROUND_SUM_OK);
  CU_ASSERT(f.plan.sum_kib <= f.plan.pool_kib);
  mb_round_state_dispose(&f.st);
}

/* Holds give way to the pool: vm1 is held at its grant when a reservation
 * takes so much of the pool that the floors with the hold exceed it (the
 * real-Xen e2e: 15 rounds with the sum of targets above the pool). The
 * hold is released and the targets fit the pool. */
static void test_hold_gives_way_to_pool(void) {
  fixture_t f;
  mb_domain_t d[3];
  mb_round_input_t in;
  grant_host(&f, d, &in);
  /* vm2 and vm3 idle: their CMAs below their Min, so the pool does not
   * cut them below their CMA (the test of holds_hurt's first rule) */
  static const mb_round_clamp_t mins[] = {{.name = "vm2", .min_kib = M(512)},
                                          {.name = "vm3", .min_kib = M(512)}};
  f.cfg.clamps = mins;
  f.cfg.nclamps = 2;
  set_demand(&d[1], M(100));
  set_demand(&d[2], M(100));
  uint64_t granted = grant_then_calm(&f, d, &in);
  CU_ASSERT_FATAL(granted > G(1) + M(256));
  /* a pool that fits vm2's and vm3's Min and vm1's floor, not its hold */
  uint64_t pool = granted + G(1) - M(64);
  in.pending_kib = in.host.total_kib - f.cfg.reserve_kib - pool;
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  ASSERT_U64(f.plan.pool_kib, pool);
  CU_ASSERT_EQUAL(f.plan.audit, MB_ROUND_SUM_OK);
  CU_ASSERT(f.plan.sum_kib <= pool);
  CU_ASSERT(f.dec[0].target_kib < granted);
  CU_ASSERT(f.dec[1].cma_kib < M(512) && f.dec[2].cma_kib < M(512));
  CU_ASSERT(f.dec[1].target_kib >= M(512) && f.dec[2].target_kib >= M(512));
  /* the balloons move; the next round, still within the hold's time,
   * keeps to the pool */
  settle(&f, d, 3);
  in.now_s = 20;
  CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
  CU_ASSERT_EQUAL(f.plan.audit, MB_ROUND_SUM_OK);
  CU_ASSERT(f.plan.sum_kib <= pool);
  mb_round_state_dispose(&f.st);
}

/* ---- a guest toggling its demand (anti-oscillation) ------------------ */

static uint64_t jitter_rng = 1;
static double jitter(void) { /* in [-1, 1) */
  return (double)(unit_xorshift(&jitter_rng) >> 11) / 4503599627370496.0 - 1.0;
}

/* Sets a guest's sample for what it holds now and its anonymous memory. */
static void set_demand(mb_domain_t *d, uint64_t anon_kib) {
  mb_sample_t *s = &d->sample;
  uint64_t total = d->current_kib - M(16);
  if (anon_kib > total - M(8))
    anon_kib = total - M(8);
  s->seq++;
  s->v[MB_F_MEMTOTAL] = total;
  s->v[MB_F_ANONPAGES] = anon_kib;
  s->v[MB_F_MEMFREE] = total - anon_kib;
  s->v[MB_F_MEMAVAILABLE] = total - anon_kib;
}

typedef enum { TOGGLE_NONE, TOGGLE_DEMAND, TOGGLE_STORM } toggle_t;

/* Host of 8 GiB (no reserve), four 4 GiB-max guests. vm1 toggles (or
 * not); vm2-vm4 are honest: 1 GiB of anonymous memory with 2 % jitter
 * every round. Rounds 10 s apart, balloons reach their targets between
 * rounds. Returns the total movement of the honest guests' targets (KiB)
 * over 60 rounds, after 10 rounds to settle. */
static uint64_t honest_movement(double hold_s, toggle_t mode,
                                double surge_half_life_s) {
  static fixture_t f;
  fx_init(&f);
  f.cfg.reserve_auto = false;
  f.cfg.hold_s = hold_s;
  f.cfg.surge_half_life_s = surge_half_life_s;
  mb_domain_t d[4];
  for (uint32_t i = 0; i < 4; i++) {
    guest(&d[i], i + 1, G(2), G(1));
    d[i].max_kib = G(4);
  }
  mb_round_input_t in = {.doms = d, .n = 4};
  in.host.total_kib = G(8);
  CU_ASSERT_EQUAL_FATAL(mb_round_state_init(&f.st, &f.cfg, MAXN), 0);
  jitter_rng = 20261130;
  uint64_t moved = 0;
  for (int r = 0; r < 70; r++) {
    in.now_s = r * 10.0;
    bool high = (r / 2) % 2 == 1; /* 20 s high, 20 s low */
    set_demand(&d[0], mode == TOGGLE_DEMAND && high ? G(2) + M(512) : G(1));
    d[0].sample.urgent = mode == TOGGLE_STORM && high;
    d[0].rates.valid = mode == TOGGLE_STORM;
    d[0].rates.swapout_pps = mode == TOGGLE_STORM && high ? 5000 : 0;
    for (int i = 1; i < 4; i++)
      set_demand(&d[i], (uint64_t)((double)G(1) * (1.0 + 0.02 * jitter())));
    CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
    for (size_t k = 0; k < f.plan.nsteps; k++)
      mb_round_step_done(&f.plan, k, true);
    for (int i = 0; i < 4; i++) {
      uint64_t t = f.dec[i].target_kib;
      if (r >= 10 && i > 0)
        moved +=
            t > d[i].target_kib ? t - d[i].target_kib : d[i].target_kib - t;
      d[i].target_kib = t;
      d[i].current_kib = t;
    }
  }
  mb_round_state_dispose(&f.st);
  return moved;
}

/* Anti-oscillation: a guest toggling its demand (or faking a swap storm
 * every other 20 s) moves the honest balloons at most twice as much as
 * they move at rest (their own jitter). The figures are printed. */
static void test_toggling_guest(void) {
  mb_round_config_t def;
  mb_round_config_default(&def);
  /* the reference: the honest guests' own jitter, followed as it comes
   * (no surge headroom, which damps it: printed too) */
  uint64_t rest = honest_movement(def.hold_s, TOGGLE_NONE, 0);
  uint64_t rest_damped =
      honest_movement(def.hold_s, TOGGLE_NONE, def.surge_half_life_s);
  uint64_t demand =
      honest_movement(def.hold_s, TOGGLE_DEMAND, def.surge_half_life_s);
  uint64_t storm =
      honest_movement(def.hold_s, TOGGLE_STORM, def.surge_half_life_s);
  uint64_t demand0 = honest_movement(0, TOGGLE_DEMAND, def.surge_half_life_s);
  uint64_t storm0 = honest_movement(0, TOGGLE_STORM, def.surge_half_life_s);
  fprintf(stderr,
          "\n  honest balloons moved over 600 s (MiB): at rest %.0f (%.0f "
          "with surge headroom); "
          "toggling demand %.0f (%.2fx), faked storms %.0f (%.2fx); "
          "without holds: %.0f (%.2fx), %.0f (%.2fx)\n",
          rest / 1024.0, rest_damped / 1024.0, demand / 1024.0,
          (double)demand / (double)rest, storm / 1024.0,
          (double)storm / (double)rest, demand0 / 1024.0,
          (double)demand0 / (double)rest, storm0 / 1024.0,
          (double)storm0 / (double)rest);
  CU_ASSERT(rest > 0);
  CU_ASSERT(demand <= 2 * rest);
  CU_ASSERT(storm <= 2 * rest);
}

/* Surge headroom learned from a guest's own history. Two guests of 2G,
 * fixed reserve 0, pool 4G; guest() samples: overhead 16M, CMA = 16384 +
 * anon + max(32M, 10 % anon). B stays at anon 200M (CMA 253952); A goes
 * 200M -> 700M (CMA 804864) at t=10 and back at t=20.
 *  - t=0, t=10: A's CMA is its peak: no headroom;
 *  - t=20: headroom = peak - CMA = 804864 - 253952 = 550912; the peak
 *    then decays toward the CMA with a 600 s half-life;
 *  - t=30: headroom = 550912 x 2^(-10/600) (B: 0, its CMA never moved).
 *    The surplus goes to A's headroom first: A's target - B's = the
 *    headroom. With SurgeHalfLife 0 nobody gets any. */
static void test_surge_headroom(void) {
  for (int off = 0; off < 2; off++) {
    fixture_t f;
    fx_init(&f);
    f.cfg.reserve_auto = false;
    f.cfg.reserve_kib = 0;
    if (off)
      f.cfg.surge_half_life_s = 0;
    static const uint64_t anon_a[] = {M(200), M(700), M(200), M(200)};
    double want30 = off ? 0 : 550912 * exp2(-10.0 / 600);
    for (int r = 0; r < 4; r++) {
      mb_domain_t d[2];
      guest(&d[0], 1, G(2), anon_a[r]);
      guest(&d[1], 2, G(2), M(200));
      mb_round_input_t in = {.now_s = 10.0 * r, .doms = d, .n = 2};
      in.host.total_kib = G(4);
      CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
      ASSERT_U64(f.dec[1].cma_kib, 253952);
      ASSERT_U64(f.doms[1].headroom_kib, 0);
      uint64_t h = f.doms[0].headroom_kib;
      if (r < 2)
        ASSERT_U64(h, 0);
      if (r == 2)
        ASSERT_U64(h, off ? 0 : 550912);
      if (r == 3) {
        if (fabs((double)h - want30) > 1)
          fprintf(stderr, "\n  headroom %llu, want %.1f", (unsigned long long)h,
                  want30);
        CU_ASSERT(fabs((double)h - want30) <= 1);
        ASSERT_U64(f.dec[0].cma_kib, 253952);
        ASSERT_U64(f.dec[0].target_kib - f.dec[1].target_kib, h);
        ASSERT_U64(f.dec[0].target_kib + f.dec[1].target_kib, G(4));
      }
    }
    mb_round_state_dispose(&f.st);
  }
}

/* Ramp age: cagma extrapolates a ramp no further than it has run. vm1
 * holds 2G with 200M anon (bare 200M + 16M the guest does not see = 221184,
 * margin 32768) and reports growth of 100 MiB/s (102400 KiB/s, above its
 * margin per second) from its second sample on. The ramp starts at the
 * previous sample (t = 0): at t = 2 it is 2 s old, the forecast 204800 and
 * the CMA 458752; at t = 3 (a round between samples) 3 s; at t = 12 it is
 * 12 s old and the forecast takes the whole horizon (10 s, 1024000). A sample
 * without growth ends it; the next growth starts a new ramp at that sample. vm2
 * sends samples without a sequence number: its ramp age is unknown and its
 * forecast the whole horizon at once (as before ramp ages). */
static void test_ramp_age(void) {
  static const struct {
    double t;
    uint64_t seq;
    bool growth;
    double ramp_s;
    uint64_t cma;
  } step[] = {
      {0, 1, false, 0, 253952},   {2, 2, true, 2, 458752},
      {3, 2, true, 3, 561152},    {4, 3, true, 4, 663552},
      {12, 4, true, 12, 1277952}, {14, 5, false, 0, 253952},
      {16, 6, true, 2, 458752},
  };
  fixture_t f;
  fx_init(&f);
  f.cfg.reserve_auto = false;
  f.cfg.reserve_kib = 0;
  for (size_t k = 0; k < sizeof(step) / sizeof(step[0]); k++) {
    mb_domain_t d[2];
    guest(&d[0], 1, G(2), M(200));
    guest(&d[1], 2, G(2), M(200));
    d[0].sample.seq = step[k].seq;
    d[1].sample.seq = 0;
    for (int i = 0; i < 2; i++) {
      d[i].rates.growth_valid = step[k].growth;
      d[i].rates.anon_growth_kibps = step[k].growth ? 102400 : 0;
    }
    mb_round_input_t in = {.now_s = step[k].t, .doms = d, .n = 2};
    in.host.total_kib = G(8);
    CU_ASSERT_EQUAL_FATAL(fx_round(&f, &in), 0);
    if (fabs(f.doms[0].ramp_s - step[k].ramp_s) > 1e-9 ||
        f.dec[0].cma_kib != step[k].cma)
      fprintf(stderr, "\n  t=%.0f: ramp %.1f s, CMA %llu", step[k].t,
              f.doms[0].ramp_s, (unsigned long long)f.dec[0].cma_kib);
    CU_ASSERT(fabs(f.doms[0].ramp_s - step[k].ramp_s) <= 1e-9);
    ASSERT_U64(f.dec[0].cma_kib, step[k].cma);
    CU_ASSERT(f.doms[1].ramp_s == 0);
    ASSERT_U64(f.dec[1].cma_kib, step[k].growth ? 1277952 : 253952);
  }
  mb_round_state_dispose(&f.st);
}

static void test_refused(void) {
  fixture_t f;
  fx_init(&f);
  mb_domain_t d[2];
  guest(&d[0], 1, G(1), M(100));
  guest(&d[1], 2, G(1), M(100));
  mb_round_input_t in = {.doms = d, .n = 2};
  in.host.total_kib = G(4);
  f.plan.cap = 1; /* too small */
  CU_ASSERT_EQUAL(fx_round(&f, &in), -1);
  f.plan.cap = MAXN;
  f.cfg.policy.deadband_kib = MB_KIB_MAX + 1;
  CU_ASSERT_EQUAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), -1);
  char err[128] = "";
  CU_ASSERT_EQUAL(mb_round_config_validate(&f.cfg, err, sizeof(err)), -1);
  CU_ASSERT(strstr(err, "DeadBand") != NULL);
  mb_round_state_dispose(&f.st);
}

/* ---- random hosts ---------------------------------------------------- */

static uint64_t rng;
static uint64_t rnd(void) { return unit_xorshift(&rng); }
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static bool chance(unsigned pct) { return below(100) < pct; }

static void test_random_plans(void) {
  static fixture_t f;
  static mb_domain_t in_doms[MAXN + 1], copy[MAXN + 1];
  const char *env = getenv("MEMBAL_SEED");
  rng = env ? strtoull(env, NULL, 0) : 20261130;
  if (rng == 0)
    rng = 1;
  unsigned plans = 0, held = 0, failures = 0, stuck = 0;
  for (int host_i = 0; host_i < 2000; host_i++) {
    fx_init(&f);
    f.cfg.policy.kind = (mb_policy_kind_t)below(MB_POLICY_COUNT);
    f.cfg.reserve_auto = chance(50);
    f.cfg.reserve_kib = below(G(2));
    if (chance(30))
      f.cfg.policy.step_cap_kib = M(64) + below(M(512));
    size_t n = 1 + below(MAXN);
    uint64_t held_kib = 0;
    for (size_t i = 0; i <= n; i++) {
      uint64_t cur = M(256) + below(G(4));
      guest(&in_doms[i], (uint32_t)i, cur, below(cur - M(32)));
      in_doms[i].target_kib = chance(30) ? M(256) + below(G(4)) : cur;
      in_doms[i].sample.urgent = chance(10);
      in_doms[i].has_sample = chance(90);
      held_kib += cur;
    }
    mb_round_input_t in = {.doms = in_doms, .n = n + 1};
    in.host.total_kib = held_kib / 2 + below(held_kib + 1);
    in.host.free_kib = below(in.host.total_kib / 4 + 1);
    in.pending_kib = chance(20) ? below(G(2)) : 0;
    CU_ASSERT_EQUAL_FATAL(mb_round_state_init(&f.st, &f.cfg, MAXN), 0);
    for (int round = 0; round < 6; round++) {
      in.now_s = round * 10.0;
      memcpy(copy, in_doms, sizeof(in_doms[0]) * (n + 1));
      CU_ASSERT_EQUAL_FATAL(mb_round_compute(&f.cfg, &f.st, &in, &f.plan), 0);
      CU_ASSERT_EQUAL(memcmp(copy, in_doms, sizeof(in_doms[0]) * (n + 1)), 0);
      plans++;
      ASSERT_U64(f.plan.n, n);
      if (f.plan.audit != MB_ROUND_SUM_OK)
        continue;
      /* order: shrinks, then grows; each domain once */
      bool seen_grow = false;
      uint64_t once[MAXN] = {0};
      for (size_t k = 0; k < f.plan.nsteps; k++) {
        const mb_round_step_t *s = &f.steps[k];
        CU_ASSERT(!(s->shrink && seen_grow));
        seen_grow = seen_grow || !s->shrink;
        CU_ASSERT(s->dom < n);
        CU_ASSERT(once[s->dom]++ == 0);
        ASSERT_U64(s->from_kib, f.doms[s->dom].target_kib);
        if (s->shrink) {
          ASSERT_U64(s->to_kib, s->want_kib);
        } else {
          CU_ASSERT(s->to_kib >= s->from_kib && s->to_kib <= s->want_kib);
        }
      }
      /* actuate, some steps failing; a grow that was done never put the
       * targets in force above the pool */
      bool any_grow = false;
      for (size_t k = 0; k < f.plan.nsteps; k++) {
        bool ok = !chance(10);
        failures += !ok;
        const mb_round_step_t *s = &f.steps[k];
        held += s->to_kib != s->want_kib;
        /* a stuck balloon's grow up to what it holds costs nothing */
        uint64_t before = s->stuck && s->current_kib > s->from_kib
                              ? s->current_kib
                              : s->from_kib;
        if (!s->shrink && ok && s->to_kib > before)
          any_grow = true;
        mb_round_step_done(&f.plan, k, ok);
      }
      /* the targets in force, a stuck balloon at what it holds */
      uint64_t sum = f.plan.fixed_kib;
      for (size_t k = 0; k < f.plan.nsteps; k++) {
        const mb_round_step_t *s = &f.steps[k];
        uint64_t t = f.dec[s->dom].target_kib;
        sum += s->stuck && s->current_kib > t ? s->current_kib : t;
        stuck += s->stuck;
      }
      CU_ASSERT(sum <= f.plan.pool_kib || !any_grow);
      CU_ASSERT(mb_round_sum_in_force(&f.plan) <= sum);
      /* the balloons move */
      for (size_t i = 1; i <= n; i++) {
        mb_domain_t *d = &in_doms[i];
        d->target_kib = f.dec[i - 1].target_kib;
        if (chance(80))
          d->current_kib = d->target_kib;
      }
    }
    mb_round_state_dispose(&f.st);
  }
  fprintf(stderr, "\n  plans %u, grows held %u, failed steps %u, stuck %u\n",
          plans, held, failures, stuck);
  CU_ASSERT(plans >= 12000);
  CU_ASSERT(held > 100);
  CU_ASSERT(failures > 1000);
  CU_ASSERT(stuck > 100);
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"clamps and reserve", test_clamps_and_reserve},
      {"a domain being built is left out", test_domain_being_built},
      {"plan: shrinks first, grows get what they free", test_plan_order},
      {"plan: a failed shrink holds the grow", test_failed_shrink_holds_grow},
      {"D4: a stuck balloon counts what it holds", test_stuck_balloon},
      {"refused inputs", test_refused},
      {"a toggling guest: honest balloons move <= 2x", test_toggling_guest},
      {"emergency grants bounded per window", test_grant_bounded},
      {"a grant is held, then given back", test_grant_held},
      {"a grant on its way is not taken back", test_grant_on_its_way},
      {"a pressure floor spares stale guests",
       test_pressure_floor_spares_stale},
      {"holds give way to another guest's CMA", test_hold_gives_way},
      {"holds give way to the pool", test_hold_gives_way_to_pool},
      {"holds give way to a held guest", test_hold_gives_way_to_held},
      {"surge headroom learned per guest", test_surge_headroom},
      {"a ramp is extrapolated no further than it has run", test_ramp_age},
      {"plans on random hosts", test_random_plans},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("round", tests);
}
