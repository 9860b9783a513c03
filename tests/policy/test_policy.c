/*
 * The three policies and the safety envelope on hand-worked hosts. Every
 * expected target below is worked out in the comment next to it from the
 * formulas in policy/tax.c, cagma.c, selfballoon.c and envelope.c.
 */
#include <math.h>

#include "membal_policy.h"
#include "unit.h"

#define M(x) ((uint64_t)(x)*1024) /* MiB -> KiB */
#define G(x) ((uint64_t)(x)*1048576)

enum {
  D_STALE = 1,  /* never heard from */
  D_OLD = 2,    /* sample older than StaleAfter */
  D_SWAP = 4,   /* swapin_pps = swapin */
  D_NOCOMM = 8, /* no Committed_AS / anon split: virtio-like sample */
};

typedef struct {
  uint64_t cur, max, min;
  uint32_t w;
  uint64_t memtotal, avail, anon, committed;
  int flags;
  double swapin;
  uint64_t last_target; /* 0: == cur */
  uint32_t node_mask;
} dspec_t;

typedef struct {
  uint64_t target;
  mb_reason_t reason;
} expect_t;

typedef struct {
  const char *name;
  mb_policy_kind_t kind;
  double tau;
  uint64_t deadband, step_cap;
  unsigned up, down;
  uint64_t total, reserve;
  size_t n;
  dspec_t d[4];
  expect_t want[4];
} scenario_t;

static void build_dom(mb_domain_t *d, const dspec_t *s, int i) {
  memset(d, 0, sizeof(*d));
  d->domid = (uint32_t)i + 1;
  snprintf(d->name, sizeof(d->name), "vm%d", i);
  d->current_kib = s->cur;
  d->target_kib = s->last_target ? s->last_target : s->cur;
  d->max_kib = s->max;
  d->min_kib = s->min;
  d->weight = s->w;
  d->node_mask = s->node_mask;
  d->has_sample = !(s->flags & D_STALE);
  d->sample_age_s = (s->flags & D_OLD) ? 100 : 2;
  mb_sample_t *m = &d->sample;
  m->seq = 1;
  m->v[MB_F_MEMTOTAL] = s->memtotal;
  m->v[MB_F_MEMFREE] = s->avail;
  m->v[MB_F_MEMAVAILABLE] = s->avail;
  m->have = (UINT64_C(1) << MB_F_MEMTOTAL) | (UINT64_C(1) << MB_F_MEMFREE) |
            (UINT64_C(1) << MB_F_MEMAVAILABLE);
  if (!(s->flags & D_NOCOMM)) {
    m->v[MB_F_ANONPAGES] = s->anon;
    m->v[MB_F_COMMITTED_AS] = s->committed;
    m->have |=
        (UINT64_C(1) << MB_F_ANONPAGES) | (UINT64_C(1) << MB_F_COMMITTED_AS) |
        (UINT64_C(1) << MB_F_ACTIVE_FILE) | (UINT64_C(1) << MB_F_SHMEM) |
        (UINT64_C(1) << MB_F_SUNRECLAIM) | (UINT64_C(1) << MB_F_PAGETABLES) |
        (UINT64_C(1) << MB_F_KERNELSTACK);
  }
  if (s->flags & D_SWAP) {
    d->rates.valid = true;
    d->rates.swapin_pps = s->swapin;
  }
}

static void run_scenarios(const scenario_t *t, size_t count) {
  for (size_t k = 0; k < count; k++) {
    const scenario_t *sc = &t[k];
    mb_config_t cfg;
    mb_config_default(&cfg);
    cfg.kind = sc->kind;
    cfg.tax.tau = sc->tau;
    cfg.deadband_kib = sc->deadband;
    cfg.step_cap_kib = sc->step_cap;
    if (sc->up)
      cfg.selfballoon.up_hysteresis = sc->up;
    if (sc->down)
      cfg.selfballoon.down_hysteresis = sc->down;
    mb_host_t host = {.total_kib = sc->total, .reserve_kib = sc->reserve};
    mb_domain_t doms[4];
    mb_decision_t out[4];
    for (size_t i = 0; i < sc->n; i++)
      build_dom(&doms[i], &sc->d[i], (int)i);
    mb_state_t st;
    mb_state_init(&st, &cfg);
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, &st, &host, doms, sc->n, out),
                          0);
    uint64_t sum = 0;
    bool all_floor = true;
    for (size_t i = 0; i < sc->n; i++) {
      sum += out[i].target_kib;
      all_floor = all_floor && out[i].target_kib == out[i].floor_kib;
      if (out[i].target_kib != sc->want[i].target ||
          out[i].reason != sc->want[i].reason)
        fprintf(stderr, "\n  %s: vm%zu target %llu (%s), want %llu (%s)",
                sc->name, i, (unsigned long long)out[i].target_kib,
                mb_reason_name(out[i].reason),
                (unsigned long long)sc->want[i].target,
                mb_reason_name(sc->want[i].reason));
      ASSERT_U64(out[i].target_kib, sc->want[i].target);
      CU_ASSERT_EQUAL(out[i].reason, sc->want[i].reason);
      ASSERT_U64(out[i].from_kib, sc->d[i].cur);
    }
    uint64_t pool = sc->total > sc->reserve ? sc->total - sc->reserve : 0;
    CU_ASSERT(sum <= pool || all_floor);
    ASSERT_U64(st.rounds, 1);
  }
}

/* Shorthand: a fresh domain with a sample whose MemTotal is its size. */
#define DOM(cur_, max_, min_, avail_, anon_, comm_)                            \
  {                                                                            \
    .cur = (cur_), .max = (max_), .min = (min_), .w = 1, .memtotal = (cur_),   \
    .avail = (avail_), .anon = (anon_), .committed = (comm_)                   \
  }

static void test_tax(void) {
  static const scenario_t t[] = {
      /* pool 4G, one domain: it gets the pool */
      {.name = "tax one domain",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(4) + M(512),
       .reserve = M(512),
       .n = 1,
       .d = {DOM(G(1), G(8), M(64), M(512), 0, 0)},
       .want = {{G(4), MB_R_GROW_PRESSURE}}},
      /* ... up to its max */
      {.name = "tax one domain at max",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(4),
       .n = 1,
       .d = {DOM(G(1), G(2), M(64), M(512), 0, 0)},
       .want = {{G(2), MB_R_GROW_PRESSURE}}},
      /* equal demand: x = A + c is the same for all: pool / 3 */
      {.name = "tax equal demand",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(3),
       .n = 3,
       .d = {DOM(G(1), G(4), M(64), M(512), 0, 0),
             DOM(G(1), G(4), M(64), M(512), 0, 0),
             DOM(G(1), G(4), M(64), M(512), 0, 0)},
       .want = {{G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED}}},
      /* hog (A=2G) + donors (A=512M), tau=1, pool 6G:
       * c = (6G - 3G) / 3 = 1G: x = 3G, 1.5G, 1.5G. The hog grows by
       * exactly what the donors give: shrinks fund growth. */
      {.name = "tax hog + idle donors tau=1",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(6),
       .n = 3,
       .d = {DOM(G(2), G(8), M(64), 0, 0, 0),
             DOM(G(2), G(8), M(64), M(1536), 0, 0),
             DOM(G(2), G(8), M(64), M(1536), 0, 0)},
       .want = {{G(3), MB_R_GROW_PRESSURE},
                {M(1536), MB_R_SHRINK_IDLE},
                {M(1536), MB_R_SHRINK_IDLE}}},
      /* tau=0.5: x = A/2 + c, c = (6G - 1.5G) / 3 = 1.5G:
       * 1G + 1.5G = 2.5G, 256M + 1.5G = 1.75G */
      {.name = "tax hog + idle donors tau=0.5",
       .kind = MB_POLICY_TAX,
       .tau = 0.5,
       .total = G(6),
       .n = 3,
       .d = {DOM(G(2), G(8), M(64), 0, 0, 0),
             DOM(G(2), G(8), M(64), M(1536), 0, 0),
             DOM(G(2), G(8), M(64), M(1536), 0, 0)},
       .want = {{M(2560), MB_R_GROW_PRESSURE},
                {M(1792), MB_R_SHRINK_IDLE},
                {M(1792), MB_R_SHRINK_IDLE}}},
      /* tau=0: allocation by weight 1:2:1 of 4G */
      {.name = "tax tau=0 weights",
       .kind = MB_POLICY_TAX,
       .total = G(4),
       .n = 3,
       .d =
           {{.cur = G(1), .max = G(8), .min = M(64), .w = 1, .memtotal = G(1)},
            {.cur = G(1), .max = G(8), .min = M(64), .w = 2, .memtotal = G(1)},
            {.cur = G(1), .max = G(8), .min = M(64), .w = 0, .memtotal = G(1)}},
       .want = {{G(1), MB_R_UNCHANGED},
                {G(2), MB_R_GROW_PRESSURE},
                {G(1), MB_R_UNCHANGED}}},
      /* demand above the host: 3 x 3G fully used, pool 6G: c = -1G */
      {.name = "tax demand above host",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(6),
       .n = 3,
       .d = {DOM(G(3), G(8), M(64), 0, 0, 0), DOM(G(3), G(8), M(64), 0, 0, 0),
             DOM(G(3), G(8), M(64), 0, 0, 0)},
       .want = {{G(2), MB_R_SHRINK_IDLE},
                {G(2), MB_R_SHRINK_IDLE},
                {G(2), MB_R_SHRINK_IDLE}}},
      /* min clamp, tau=0: one keeps its 3G minimum, the others split 3G */
      {.name = "tax min clamp",
       .kind = MB_POLICY_TAX,
       .total = G(6),
       .n = 3,
       .d = {DOM(G(2), G(8), G(3), M(512), 0, 0),
             DOM(G(2), G(8), M(64), M(512), 0, 0),
             DOM(G(2), G(8), M(64), M(512), 0, 0)},
       .want = {{G(3), MB_R_GROW_PRESSURE},
                {M(1536), MB_R_SHRINK_IDLE},
                {M(1536), MB_R_SHRINK_IDLE}}},
      /* stale donor keeps its 2G; the other two share 4G, tau=1:
       * c = (4G - 2.5G) / 2 = 768M: 2.75G and 1.25G */
      {.name = "tax stale donor frozen",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(6),
       .n = 3,
       .d =
           {DOM(G(2), G(8), M(64), 0, 0, 0),
            DOM(G(2), G(8), M(64), M(1536), 0, 0),
            {.cur = G(2), .max = G(8), .min = M(64), .w = 1, .flags = D_STALE}},
       .want = {{M(2816), MB_R_GROW_PRESSURE},
                {M(1280), MB_R_SHRINK_IDLE},
                {G(2), MB_R_STALE_FROZEN}}},
      {.name = "tax old sample frozen",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(6),
       .n = 3,
       .d = {DOM(G(2), G(8), M(64), 0, 0, 0),
             DOM(G(2), G(8), M(64), M(1536), 0, 0),
             {.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .avail = M(1536),
              .flags = D_OLD}},
       .want = {{M(2816), MB_R_GROW_PRESSURE},
                {M(1280), MB_R_SHRINK_IDLE},
                {G(2), MB_R_STALE_FROZEN}}},
      /* stuck balloons: the hog was told 3G but holds 2G, the donors were
       * told 1G but hold 2G. Step cap 256M counts from what they hold. */
      {.name = "tax stuck balloons, step cap",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .step_cap = M(256),
       .total = G(6),
       .n = 3,
       .d = {{.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .last_target = G(3)},
             {.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .avail = M(1536),
              .last_target = G(1)},
             {.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .avail = M(1536),
              .last_target = G(1)}},
       .want = {{M(2304), MB_R_STEP_CAPPED},
                {M(1792), MB_R_STEP_CAPPED},
                {M(1792), MB_R_STEP_CAPPED}}},
      /* dead band 8M: tau=0 wants 1G each; +-4M moves are not made */
      {.name = "tax dead band",
       .kind = MB_POLICY_TAX,
       .deadband = M(8),
       .total = G(3),
       .n = 3,
       .d = {DOM(G(1) + M(4), G(4), M(64), 0, 0, 0),
             DOM(G(1) - M(4), G(4), M(64), 0, 0, 0),
             DOM(G(1), G(4), M(64), 0, 0, 0)},
       .want = {{G(1) + M(4), MB_R_DEADBAND},
                {G(1) - M(4), MB_R_DEADBAND},
                {G(1), MB_R_UNCHANGED}}},
  };
  run_scenarios(t, sizeof(t) / sizeof(t[0]));
}

static void test_cagma(void) {
  static const scenario_t t[] = {
      /* CMA = 1G anon + max(32M, 102.4M) = 1153433; the surplus of the 4G
       * pool is its own. */
      {.name = "cagma one domain",
       .kind = MB_POLICY_CAGMA,
       .total = G(4),
       .n = 1,
       .d = {DOM(G(2), G(8), M(64), G(1), G(1), 0)},
       .want = {{G(4), MB_R_GROW_PRESSURE}}},
      /* equal: CMA 576716 each, the surplus split evenly: 1G each */
      {.name = "cagma equal demand",
       .kind = MB_POLICY_CAGMA,
       .total = G(3),
       .n = 3,
       .d = {DOM(G(1), G(4), M(64), M(512), M(512), 0),
             DOM(G(1), G(4), M(64), M(512), M(512), 0),
             DOM(G(1), G(4), M(64), M(512), M(512), 0)},
       .want = {{G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED}}},
      /* hog CMA = 2.5G + 256M = 2883584, donors 256M + 32M = 294912; pool
       * = their sum + 3G, so each gets CMA + 1G. */
      {.name = "cagma hog + idle donors",
       .kind = MB_POLICY_CAGMA,
       .total = 2883584 + 2 * 294912 + G(3),
       .n = 3,
       .d = {DOM(G(3), G(8), M(64), M(512), M(2560), 0),
             DOM(M(1536), G(8), M(64), G(1), M(256), 0),
             DOM(M(1536), G(8), M(64), G(1), M(256), 0)},
       .want = {{2883584 + G(1), MB_R_GROW_PRESSURE},
                {294912 + G(1), MB_R_SHRINK_IDLE},
                {294912 + G(1), MB_R_SHRINK_IDLE}}},
      /* CMAs (2191523 each: anon 1992294 + 10%) exceed the 4G pool: the
       * growth is cut, nobody is shrunk below what they hold. */
      {.name = "cagma CMAs above the pool",
       .kind = MB_POLICY_CAGMA,
       .total = G(4),
       .n = 2,
       .d = {DOM(G(2), G(8), M(64), 0, 1992294, 0),
             DOM(G(2), G(8), M(64), 0, 1992294, 0)},
       .want = {{G(2), MB_R_POOL_LIMIT}, {G(2), MB_R_POOL_LIMIT}}},
      /* same, pool short by one growth (94371): the swapping guest keeps
       * its emergency growth (2191523); the quiet one keeps what it holds
       * (its growth is cut first) and is never asked below its CMA for
       * the other's emergency (the former lean rule asked it for
       * 1992294 + 32768 = 2025062). */
      {.name = "cagma emergency served first",
       .kind = MB_POLICY_CAGMA,
       .total = G(4) + 94371,
       .n = 2,
       .d = {{.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .anon = 1992294,
              .flags = D_SWAP,
              .swapin = 100},
             DOM(G(2), G(8), M(64), 0, 1992294, 0)},
       .want = {{2191523, MB_R_EMERGENCY}, {G(2), MB_R_POOL_LIMIT}}},
      /* emergency growth served before other growth: A as above; B holds
       * 1G with anon 1G (CMA 1153433: it wants to grow by 104857). Pool
       * 2191523 + 1G + 16384 leaves B 16384: B's growth is cut to 16384
       * (1064960), A's is whole. */
      {.name = "cagma emergency growth cut last",
       .kind = MB_POLICY_CAGMA,
       .total = 2191523 + G(1) + 16384,
       .n = 2,
       .d = {{.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .anon = 1992294,
              .flags = D_SWAP,
              .swapin = 100},
             DOM(G(1), G(8), M(64), 0, G(1), 0)},
       .want = {{2191523, MB_R_EMERGENCY}, {1064960, MB_R_POOL_LIMIT}}},
      /* emergency, 2000 pages/s: need = 2000 * 4 KiB * 10 s = 80000 KiB;
       * A's base = 1G + 80000, B's CMA 576716; the surplus 471860 is
       * split: A 1364506, B 812646. Step cap 16M cuts B's shrink to
       * 1032192 but not A's emergency growth; the pool then cuts A to
       * pool - B = 1144960 >= 1G + 80000. */
      {.name = "cagma emergency not step-capped",
       .kind = MB_POLICY_CAGMA,
       .step_cap = M(16),
       .total = 2177152,
       .n = 2,
       .d = {{.cur = G(1),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(1),
              .anon = M(512),
              .flags = D_SWAP,
              .swapin = 2000},
             DOM(G(1), G(8), M(64), 0, M(512), 0)},
       .want = {{1144960, MB_R_POOL_LIMIT}, {1032192, MB_R_STEP_CAPPED}}},
      /* below the thresholds (50 pages/s < 64): no emergency */
      {.name = "cagma slow swap is no emergency",
       .kind = MB_POLICY_CAGMA,
       .total = 576716 * 2,
       .n = 2,
       .d = {{.cur = G(1),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(1),
              .anon = M(512),
              .flags = D_SWAP,
              .swapin = 50},
             DOM(G(1), G(8), M(64), 0, M(512), 0)},
       .want = {{576716, MB_R_SHRINK_IDLE}, {576716, MB_R_SHRINK_IDLE}}},
      /* virtio-like sample: ws = MemTotal - MemAvailable = 1G: CMA
       * 1153433, the whole pool */
      {.name = "cagma virtio fallback",
       .kind = MB_POLICY_CAGMA,
       .total = 1153433,
       .n = 1,
       .d = {{.cur = G(2),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(2),
              .avail = G(1),
              .flags = D_NOCOMM}},
       .want = {{1153433, MB_R_SHRINK_IDLE}}},
      /* max clamp: A stops at its 1.5G max, B takes the rest of 4G */
      {.name = "cagma max clamp",
       .kind = MB_POLICY_CAGMA,
       .total = G(4),
       .n = 2,
       .d = {DOM(G(1), M(1536), M(64), 0, M(512), 0),
             DOM(G(1), G(8), M(64), 0, M(512), 0)},
       .want = {{M(1536), MB_R_GROW_PRESSURE}, {M(2560), MB_R_GROW_PRESSURE}}},
      /* min clamp: A's 2G minimum replaces its 576716 CMA as its base.
       * A holds 1G, so it is in deficit (base 2G > 1G + dead band), but
       * the 1G free covers what it waits for: B gives nothing, and the
       * surplus 3G - 2G - 576716 = 471860 is split by weight: A 2G +
       * 235930, B 576716 + 235930 (B shrinks by the split, not for A) */
      {.name = "cagma min clamp",
       .kind = MB_POLICY_CAGMA,
       .total = G(3),
       .n = 2,
       .d = {DOM(G(1), G(8), G(2), 0, M(512), 0),
             DOM(G(1), G(8), M(64), 0, M(512), 0)},
       .want = {{G(2) + 235930, MB_R_GROW_PRESSURE},
                {576716 + 235930, MB_R_SHRINK_IDLE}}},
      /* deficit: A holds 512M, its CMA is 600M + 10 % = 675840: it waits
       * for 151552 and nothing is free (A and B hold the 2G pool). B, the
       * donor (CMA 256M + 32M = 294912), gives exactly that at once: A
       * 675840, B 1572864 - 151552 = 1421312. (Before, B was asked for its
       * CMA and A got the whole surplus, 1802240; split by weight it would
       * be A 1239040, B 858112.) */
      {.name = "cagma deficit: donors give what it waits for",
       .kind = MB_POLICY_CAGMA,
       .total = G(2),
       .n = 2,
       .d = {DOM(M(512), G(8), M(64), 0, M(600), 0),
             DOM(M(1536), G(8), M(64), M(700), M(256), 0)},
       .want = {{675840, MB_R_GROW_PRESSURE}, {1421312, MB_R_SHRINK_IDLE}}},
      /* the same with free memory: B holds 1G, 512M is free and covers
       * A's 151552: B gives nothing, the surplus 2G - 675840 - 294912 =
       * 1126400 is split by weight, A 1239040, B 858112 */
      {.name = "cagma deficit covered by free memory",
       .kind = MB_POLICY_CAGMA,
       .total = G(2),
       .n = 2,
       .d = {DOM(M(512), G(8), M(64), 0, M(600), 0),
             DOM(G(1), G(8), M(64), M(700), M(256), 0)},
       .want = {{1239040, MB_R_GROW_PRESSURE}, {858112, MB_R_SHRINK_IDLE}}},
      /* stuck balloons: A was told 512M and holds 1G, B was told 1G and
       * holds 512M, below its CMA 576716: B waits for 52428, nothing is
       * free, and A gives it: A 996148, B 576716. The 32M step cap counts
       * from what they hold: 1015808, 557056. */
      {.name = "cagma stuck balloons, step cap",
       .kind = MB_POLICY_CAGMA,
       .step_cap = M(32),
       .total = M(1536),
       .n = 2,
       .d = {{.cur = G(1),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = G(1),
              .anon = M(512),
              .last_target = M(512)},
             {.cur = M(512),
              .max = G(8),
              .min = M(64),
              .w = 1,
              .memtotal = M(512),
              .anon = M(512),
              .last_target = G(1)}},
       .want = {{1015808, MB_R_STEP_CAPPED}, {557056, MB_R_STEP_CAPPED}}},
      /* stale: frozen at what it holds; the fresh one gets the rest */
      {.name = "cagma stale frozen",
       .kind = MB_POLICY_CAGMA,
       .total = G(4),
       .n = 2,
       .d = {{.cur = G(1), .max = G(8), .min = M(64), .w = 1, .flags = D_STALE},
             DOM(G(1), G(8), M(64), 0, M(512), 0)},
       .want = {{G(1), MB_R_STALE_FROZEN}, {G(3), MB_R_GROW_PRESSURE}}},
  };
  run_scenarios(t, sizeof(t) / sizeof(t[0]));
}

static void test_selfballoon(void) {
  static const scenario_t t[] = {
      /* 1G -> Committed_AS 512M: a tenth of the gap, 52428 */
      {.name = "sb shrink 1/10",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, M(512))},
       .want = {{G(1) - 52428, MB_R_SHRINK_IDLE}}},
      {.name = "sb grow at once",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, M(1536))},
       .want = {{M(1536), MB_R_GROW_PRESSURE}}},
      {.name = "sb up hysteresis 2",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .up = 2,
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, M(1536))},
       .want = {{M(1280), MB_R_GROW_PRESSURE}}},
      {.name = "sb clamped max",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, G(3))},
       .want = {{G(2), MB_R_CLAMPED_MAX}}},
      /* Committed_AS 100M < balloon floor of a 2G max: 296 + 64 = 360M */
      {.name = "sb balloon floor",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .down = 1,
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, M(100))},
       .want = {{M(360), MB_R_SHRINK_IDLE}}},
      {.name = "sb clamped min",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .down = 1,
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), M(600), 0, 0, M(100))},
       .want = {{M(600), MB_R_CLAMPED_MIN}}},
      /* gap 48576 / 10 = 4857 < 8M dead band: the step is raised to the
       * dead band, 1G - 8192 = 1040384 (before: no move, deadband) */
      {.name = "sb step at least the dead band",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, 1000000)},
       .want = {{1040384, MB_R_SHRINK_IDLE}}},
      /* gap 6000 < 8M dead band: not made */
      {.name = "sb dead band",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, G(1) - 6000)},
       .want = {{G(1), MB_R_DEADBAND}}},
      /* growing with UpHysteresis 4: gap 20000 / 4 = 5000 -> 8192 */
      {.name = "sb growth step at least the dead band",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .up = 4,
       .total = G(8),
       .n = 1,
       .d = {DOM(G(1), G(2), 0, 0, 0, G(1) + 20000)},
       .want = {{G(1) + 8192, MB_R_GROW_PRESSURE}}},
      /* no Committed_AS: MemTotal - MemAvailable = 768M */
      {.name = "sb virtio fallback",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .down = 1,
       .total = G(8),
       .n = 1,
       .d = {{.cur = G(1),
              .max = G(2),
              .w = 1,
              .memtotal = G(1),
              .avail = M(256),
              .flags = D_NOCOMM}},
       .want = {{M(768), MB_R_SHRINK_IDLE}}},
      {.name = "sb equal demand",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(3),
       .n = 3,
       .d = {DOM(G(1), G(4), M(64), 0, 0, G(1)),
             DOM(G(1), G(4), M(64), 0, 0, G(1)),
             DOM(G(1), G(4), M(64), 0, 0, G(1))},
       .want = {{G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED},
                {G(1), MB_R_UNCHANGED}}},
      /* hog wants 3G, donors (2G, Committed_AS 256M, floor of a 4G max =
       * 424M = 434176) give a tenth of their gap: 166297 each. The pool
       * (5G) is full, so the hog grows by exactly what they give back:
       * 1G + 2 * 166297 = 1381170. */
      {.name = "sb hog + idle donors",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(5),
       .n = 3,
       .d = {DOM(G(1), G(4), 0, 0, 0, G(3)), DOM(G(2), G(4), 0, 0, 0, M(256)),
             DOM(G(2), G(4), 0, 0, 0, M(256))},
       .want = {{1381170, MB_R_POOL_LIMIT},
                {1930855, MB_R_SHRINK_IDLE},
                {1930855, MB_R_SHRINK_IDLE}}},
      /* both want +1G, pool 3G: each growth cut by half */
      {.name = "sb demand above host",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .total = G(3),
       .n = 2,
       .d = {DOM(G(1), G(4), M(64), 0, 0, G(2)),
             DOM(G(1), G(4), M(64), 0, 0, G(2))},
       .want = {{M(1536), MB_R_POOL_LIMIT}, {M(1536), MB_R_POOL_LIMIT}}},
      /* told 512M, holds 1G, Committed_AS 1G: nothing to do from 1G */
      {.name = "sb stuck balloon",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .down = 1,
       .total = G(8),
       .n = 1,
       .d = {{.cur = G(1),
              .max = G(2),
              .w = 1,
              .memtotal = G(1),
              .committed = G(1),
              .last_target = M(512)}},
       .want = {{G(1), MB_R_UNCHANGED}}},
      {.name = "sb stale never shrunk",
       .kind = MB_POLICY_SELFBALLOON,
       .deadband = M(8),
       .down = 1,
       .total = G(8),
       .n = 1,
       .d = {{.cur = G(1),
              .max = G(2),
              .w = 1,
              .memtotal = G(1),
              .committed = M(100),
              .flags = D_OLD}},
       .want = {{G(1), MB_R_STALE_FROZEN}}},
  };
  run_scenarios(t, sizeof(t) / sizeof(t[0]));
}

static void test_envelope(void) {
  static const scenario_t t[] = {
      /* floors 3 x 2G exceed the 5G pool: every target is its floor */
      {.name = "env floors exceed pool",
       .kind = MB_POLICY_SELFBALLOON,
       .total = G(5),
       .n = 3,
       .d = {DOM(G(1), G(4), G(2), 0, 0, G(3)),
             DOM(G(3), G(4), G(2), 0, 0, G(3)),
             DOM(G(2), G(4), G(2), 0, 0, G(1))},
       .want = {{G(2), MB_R_POOL_LIMIT},
                {G(2), MB_R_POOL_LIMIT},
                {G(2), MB_R_CLAMPED_MIN}}},
      /* a stale domain holds 2.5G, a fresh one has a 1G floor, pool 3G:
       * the stale one is the only place left to take 512M from */
      {.name = "env stale shrunk only when it must",
       .kind = MB_POLICY_SELFBALLOON,
       .total = G(3),
       .n = 2,
       .d = {{.cur = M(2560),
              .max = G(4),
              .min = M(64),
              .w = 1,
              .flags = D_STALE},
             DOM(G(1), G(4), G(1), 0, 0, G(1))},
       .want = {{G(2), MB_R_POOL_LIMIT}, {G(1), MB_R_UNCHANGED}}},
      /* balloon above a lowered max: brought to max even when stale */
      {.name = "env above max",
       .kind = MB_POLICY_SELFBALLOON,
       .total = G(8),
       .n = 2,
       .d =
           {DOM(G(3), G(2), M(64), 0, 0, G(3)),
            {.cur = G(3), .max = G(2), .min = M(64), .w = 1, .flags = D_STALE}},
       .want = {{G(2), MB_R_CLAMPED_MAX}, {G(2), MB_R_CLAMPED_MAX}}},
      /* max 0: nothing to give */
      {.name = "env max zero",
       .kind = MB_POLICY_TAX,
       .tau = 1,
       .total = G(8),
       .n = 1,
       .d = {DOM(0, 0, 0, 0, 0, 0)},
       .want = {{0, MB_R_UNCHANGED}}},
      /* reserve larger than the host: pool 0, floors 64M each > 0 */
      {.name = "env reserve above total",
       .kind = MB_POLICY_CAGMA,
       .total = G(1),
       .reserve = G(2),
       .n = 1,
       .d = {DOM(G(1), G(4), M(64), 0, M(512), 0)},
       .want = {{M(64), MB_R_POOL_LIMIT}}},
  };
  run_scenarios(t, sizeof(t) / sizeof(t[0]));
}

static void test_zero_domains(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(4)};
  for (int k = 0; k < MB_POLICY_COUNT; k++) {
    cfg.kind = (mb_policy_kind_t)k;
    mb_state_t st;
    mb_state_init(&st, &cfg);
    CU_ASSERT_EQUAL(mb_policy_compute(&cfg, &st, &host, NULL, 0, NULL), 0);
    ASSERT_U64(st.rounds, 1);
    CU_ASSERT_EQUAL(mb_policy_compute(&cfg, NULL, &host, NULL, 0, NULL), 0);
  }
  CU_ASSERT_EQUAL(mb_policy_compute(&cfg, NULL, NULL, NULL, 0, NULL), -1);
  mb_domain_t d;
  memset(&d, 0, sizeof(d));
  CU_ASSERT_EQUAL(mb_policy_compute(&cfg, NULL, &host, &d, 1, NULL), -1);
}

/* NUMA: growth of a bound domain comes from its nodes' free memory. */
static void test_numa(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  cfg.kind = MB_POLICY_SELFBALLOON;
  cfg.deadband_kib = 0;
  mb_host_t host = {.total_kib = G(16), .nr_nodes = 2};
  host.node_free_kib[0] = M(100);
  host.node_free_kib[1] = G(1);
  dspec_t a = DOM(G(1), G(4), M(64), 0, 0, M(1536));
  dspec_t b = a, c = a, d2 = a;
  a.node_mask = 1;     /* node 0: 100M free */
  b.node_mask = 2;     /* node 1: 1G free */
  c.node_mask = 2;     /* node 1 again: what b left, 512M */
  d2.node_mask = 0x30; /* nodes the host does not have: unbound */
  mb_domain_t doms[4];
  build_dom(&doms[0], &a, 0);
  build_dom(&doms[1], &b, 1);
  build_dom(&doms[2], &c, 2);
  build_dom(&doms[3], &d2, 3);
  mb_decision_t out[4];
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 4, out), 0);
  ASSERT_U64(out[0].target_kib, G(1) + M(100));
  CU_ASSERT_EQUAL(out[0].reason, MB_R_POOL_LIMIT);
  ASSERT_U64(out[1].target_kib, M(1536));
  CU_ASSERT_EQUAL(out[1].reason, MB_R_GROW_PRESSURE);
  ASSERT_U64(out[2].target_kib, M(1536));
  CU_ASSERT_EQUAL(out[2].reason, MB_R_GROW_PRESSURE);
  ASSERT_U64(out[3].target_kib, M(1536));
  /* node 1 now exhausted: a third domain there would not grow */
  host.node_free_kib[1] = M(512) + M(100);
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 4, out), 0);
  ASSERT_U64(out[1].target_kib, M(1536));
  ASSERT_U64(out[2].target_kib, G(1) + M(100));
  CU_ASSERT_EQUAL(out[2].reason, MB_R_POOL_LIMIT);
  /* NUMA unknown (nr_nodes 0): masks are ignored */
  host.nr_nodes = 0;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 4, out), 0);
  for (int i = 0; i < 4; i++)
    ASSERT_U64(out[i].target_kib, M(1536));
}

/* The CMA of the 2.6.18-xen sample, parsed from the file, by hand:
 * anon = AnonPages 107424, active file = Active 221508 - anon = 114084,
 * kernel = Slab 68664 + PageTables 3728 (no SUnreclaim, no KernelStack),
 * margin = max(32768, 29390) -> CMA = 293900 + 32768 = 326668. */
static void test_cagma_old_kernel(void) {
  size_t len = 0;
  char *t = unit_slurp("meminfo-2.6.18-xen", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  mb_domain_t d;
  memset(&d, 0, sizeof(d));
  char err[128];
  CU_ASSERT_EQUAL_FATAL(mb_meminfo_parse(t, len, &d.sample, err, sizeof(err)),
                        0);
  free(t);
  d.has_sample = true;
  d.current_kib = d.target_kib = 524288;
  d.max_kib = G(1);
  d.min_kib = M(64);
  mb_config_t cfg;
  mb_config_default(&cfg);
  cfg.deadband_kib = 0;
  mb_host_t host = {.total_kib = 326668};
  mb_decision_t out;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, &d, 1, &out), 0);
  ASSERT_U64(out.cma_kib, 326668);
  ASSERT_U64(out.target_kib, 326668);
  CU_ASSERT_EQUAL(out.reason, MB_R_SHRINK_IDLE);
  /* selfballoon on the same sample: Committed_AS 245292 is above the
   * floor of a 1G max (104 + 128 = 232M = 237568): a tenth of the gap */
  cfg.kind = MB_POLICY_SELFBALLOON;
  host.total_kib = G(4);
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, &d, 1, &out), 0);
  ASSERT_U64(out.target_kib, 524288 - (524288 - 245292) / 10);
  ASSERT_U64(out.cma_kib, 0);
}

/* Which swap activity is an emergency. Two guests of 1G, anon 512M: CMA
 * 524288 + 52428 (10 %) = 576716 each; pool 1658060.
 *  - no emergency: both get CMA + half the surplus (1658060 - 2 * 576716)
 *    / 2 = 252314 -> 829030, shrink-idle;
 *  - A in emergency: base max(CMA, 1G + 32M) = 1081344; with B's CMA that
 *    is exactly the pool: A 1081344 (emergency), B 576716.
 * "Short" = MemAvailable below the CMA margin max(32M, 10 % of used): with
 * 400M available (used 638976, margin 63897) A is not short, with 16M
 * (used 1032192, margin 103219) it is. */
static void test_cagma_pressure_signal(void) {
  static const struct {
    const char *what;
    uint64_t avail;
    double in, out, majflt;
    bool valid, urgent, emergency;
  } t[] = {
      {"swap-in, memory to spare", M(400), 100, 0, 0, true, false, false},
      {"swap-out, memory to spare", M(400), 0, 100, 0, true, false, true},
      {"urgent flag, no rates yet", M(400), 0, 0, 0, false, true, true},
      {"urgent flag, memory to spare, swap-in only", M(400), 100, 0, 0, true,
       true, false},
      {"swap-in, short", M(16), 100, 0, 0, true, false, true},
      {"major faults, memory to spare", M(400), 0, 0, 300, true, false, false},
      {"major faults, short", M(16), 0, 0, 300, true, false, true},
      {"urgent flag, short", M(16), 0, 0, 0, true, true, true},
      {"swap-out at the threshold", M(400), 0, 64, 0, true, false, false},
  };
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = 1658060};
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    dspec_t a = DOM(G(1), G(8), M(64), t[k].avail, M(512), 0);
    dspec_t b = DOM(G(1), G(8), M(64), M(400), M(512), 0);
    mb_domain_t doms[2];
    mb_decision_t out[2];
    build_dom(&doms[0], &a, 0);
    build_dom(&doms[1], &b, 1);
    doms[0].rates.valid = t[k].valid;
    doms[0].rates.swapin_pps = t[k].in;
    doms[0].rates.swapout_pps = t[k].out;
    doms[0].rates.majflt_ps = t[k].majflt;
    doms[0].sample.urgent = t[k].urgent;
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out),
                          0);
    if (out[0].emergency != t[k].emergency)
      fprintf(stderr, "\n  %s: emergency %d, want %d", t[k].what,
              out[0].emergency, t[k].emergency);
    CU_ASSERT_EQUAL(out[0].emergency, t[k].emergency);
    ASSERT_U64(out[0].cma_kib, 576716);
    ASSERT_U64(out[1].cma_kib, 576716);
    if (t[k].emergency) {
      ASSERT_U64(out[0].target_kib, 1081344);
      CU_ASSERT_EQUAL(out[0].reason, MB_R_EMERGENCY);
      ASSERT_U64(out[1].target_kib, 576716);
    } else {
      ASSERT_U64(out[0].target_kib, 829030);
      CU_ASSERT_EQUAL(out[0].reason, MB_R_SHRINK_IDLE);
      ASSERT_U64(out[1].target_kib, 829030);
    }
    CU_ASSERT_EQUAL(out[1].reason, MB_R_SHRINK_IDLE);
  }
}

/* An emergency never lowers the target in force of a guest whose balloon is
 * still growing toward it (real-Xen e2e, hog run 43: 796 -> 711 MiB). Pool
 * 2G, full: A holds 1G on its way to 1.25G (1310720), swapping out at 100
 * pages/s (need 32 MiB; CMA 576716); B holds 768M at its target, anon
 * 640M: CMA 655360 + 65536 = 720896.
 *  - now: A asks 1310720 + 32768 = 1343488; B gives what A waits for
 *    beyond the free 262144 (2097152 - 1048576 - 786432): 1343488 +
 *    786432 - 2097152 = 32768, to 753664; nothing is left to share: A
 *    1343488, B 753664;
 *  - asked from A's current size (the old rule) A would ask 1081344, the
 *    free memory would cover it, and the surplus 2097152 - 1081344 -
 *    720896 = 294912 split in halves: A 1228800 (below its target in
 *    force), B 868352 (grown with memory promised to A). */
static void test_cagma_emergency_from_target(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(2)};
  dspec_t a = DOM(G(1), G(8), M(64), M(400), M(512), 0);
  a.last_target = G(1) + M(256);
  dspec_t b = DOM(M(768), G(8), M(64), M(100), M(640), 0);
  mb_domain_t doms[2];
  mb_decision_t out[2];
  build_dom(&doms[0], &a, 0);
  build_dom(&doms[1], &b, 1);
  doms[0].rates.valid = true;
  doms[0].rates.swapout_pps = 100;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out), 0);
  CU_ASSERT(out[0].emergency);
  ASSERT_U64(out[0].cma_kib, 576716);
  ASSERT_U64(out[1].cma_kib, 720896);
  ASSERT_U64(out[0].target_kib, 1343488);
  CU_ASSERT_EQUAL(out[0].reason, MB_R_EMERGENCY);
  ASSERT_U64(out[1].target_kib, 753664);
  CU_ASSERT_EQUAL(out[1].reason, MB_R_SHRINK_IDLE);
  /* a guest being shrunk (target below what it holds) asks from what it
   * holds, as before: A at 1G with a target of 900M */
  doms[0].target_kib = M(900);
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out), 0);
  ASSERT_U64(out[0].target_kib, 1228800);
  ASSERT_U64(out[1].target_kib, 868352);
}

/* Demand forecast. A: 1G, anon 512M, 400M available: CMA 524288 + margin
 * 52428 = 576716. B: 1G, anon 256M: CMA 294912. Pool 3G.
 *  - A's anonymous memory grows 100 MiB/s (102400 KiB/s > its 52428
 *    margin per second): forecast 102400 x 10 s = 1024000, CMA 1600716,
 *    above what A holds: A is in deficit, and the 1G free covers it (B
 *    gives nothing); the surplus 3145728 - 1600716 - 294912 = 1250100 is
 *    split, 625050 each: A 2225766, B 919962;
 *  - growth 50000 KiB/s (within the margin), or no growth figure, or
 *    negative growth, or ForecastHorizon 0 (even with an infinite
 *    growth: inf x 0 is NaN): no forecast; the surplus
 *    3145728 - 576716 - 294912 = 2274100 is split, 1137050 each: A
 *    1713766, B 1431962. */
static void test_cagma_forecast(void) {
  static const struct {
    const char *what;
    double growth, horizon;
    bool valid, forecast;
  } t[] = {
      {"ramp", 102400, 10, true, true},
      {"growth within the margin", 50000, 10, true, false},
      {"no growth figure", 102400, 10, false, false},
      {"shrinking", -102400, 10, true, false},
      {"NaN growth", NAN, 10, true, false},
      {"ForecastHorizon 0", 102400, 0, true, false},
      /* D6: inf x 0 is NaN, once cast to uint64_t (undefined) */
      {"infinite growth, ForecastHorizon 0", INFINITY, 0, true, false},
  };
  mb_host_t host = {.total_kib = G(3)};
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    mb_config_t cfg;
    mb_config_default(&cfg);
    cfg.cagma.forecast_s = t[k].horizon;
    dspec_t a = DOM(G(1), G(8), M(64), M(400), M(512), 0);
    dspec_t b = DOM(G(1), G(8), M(64), M(700), M(256), 0);
    mb_domain_t doms[2];
    mb_decision_t out[2];
    build_dom(&doms[0], &a, 0);
    build_dom(&doms[1], &b, 1);
    doms[0].rates.growth_valid = t[k].valid;
    doms[0].rates.anon_growth_kibps = t[k].growth;
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out),
                          0);
    if (out[0].cma_kib != (t[k].forecast ? 1600716u : 576716u))
      fprintf(stderr, "\n  %s: CMA %llu", t[k].what,
              (unsigned long long)out[0].cma_kib);
    CU_ASSERT_FALSE(out[0].emergency);
    ASSERT_U64(out[1].cma_kib, 294912);
    if (t[k].forecast) {
      ASSERT_U64(out[0].cma_kib, 1600716);
      ASSERT_U64(out[0].target_kib, 2225766);
      ASSERT_U64(out[1].target_kib, 919962);
      CU_ASSERT_EQUAL(out[1].reason, MB_R_SHRINK_IDLE);
    } else {
      ASSERT_U64(out[0].cma_kib, 576716);
      ASSERT_U64(out[0].target_kib, 1713766);
      ASSERT_U64(out[1].target_kib, 1431962);
      CU_ASSERT_EQUAL(out[1].reason, MB_R_GROW_PRESSURE);
    }
    CU_ASSERT_EQUAL(out[0].reason, MB_R_GROW_PRESSURE);
  }
}

/* The forecast never reaches past the domain's maximum: A as in the ramp
 * above but with Max 1258291 (1.2 GiB). Uncapped its CMA would be 1600716;
 * capped it is bare 524288 + margin 52428 + forecast min(1024000,
 * 1258291 - 576716 = 681575) = 1258291 = Max. */
static void test_cagma_forecast_capped(void) {
  mb_host_t host = {.total_kib = G(3)};
  mb_config_t cfg;
  mb_config_default(&cfg);
  dspec_t a = DOM(G(1), 1258291, M(64), M(400), M(512), 0);
  dspec_t b = DOM(G(1), G(8), M(64), M(700), M(256), 0);
  mb_domain_t doms[2];
  mb_decision_t out[2];
  build_dom(&doms[0], &a, 0);
  build_dom(&doms[1], &b, 1);
  doms[0].rates.growth_valid = true;
  doms[0].rates.anon_growth_kibps = 102400;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out), 0);
  ASSERT_U64(out[0].cma_kib, 1258291);
  ASSERT_U64(out[0].target_kib, 1258291);
  ASSERT_U64(out[1].cma_kib, 294912);
}

/* D5: StepCap set and a pool below what the domains hold. The busy guest
 * (2 GiB, 1.8 GiB anon) wants to grow; the idle one (4 GiB, 1.3 GiB
 * anon, 2.6 GiB available) may give only StepCap this round. The
 * conservation cut must take the idle guest's unused memory first (the
 * pool wins over the step cap), not cut both in proportion to what they
 * hold above their floors, which took the busy guest below its working
 * set while the idle one kept gigabytes it did not use. */
static void test_conservation_cuts_unused_first(void) {
  for (int kind = 0; kind < MB_POLICY_COUNT; kind++) {
    mb_config_t cfg;
    mb_config_default(&cfg);
    cfg.kind = (mb_policy_kind_t)kind;
    cfg.step_cap_kib = M(256);
    mb_host_t host = {.total_kib = G(5)};
    dspec_t busy = DOM(G(2), G(8), 0, M(150), G(1) + M(800), G(2));
    dspec_t idle =
        DOM(G(4), G(8), 0, G(2) + M(600), G(1) + M(300), G(1) + M(400));
    mb_domain_t doms[2];
    mb_decision_t out[2];
    build_dom(&doms[0], &busy, 0);
    build_dom(&doms[1], &idle, 1);
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out),
                          0);
    if (out[0].target_kib < G(2) - M(150))
      fprintf(stderr, "\n  %s: busy cut to %llu KiB, idle kept %llu KiB",
              mb_policy_name(cfg.kind), (unsigned long long)out[0].target_kib,
              (unsigned long long)out[1].target_kib);
    /* the busy guest keeps what it uses (2 GiB - 150 MiB available), the
     * idle one gives the excess; cagma and tax want the busy guest to
     * grow: it keeps all it holds */
    CU_ASSERT(out[0].target_kib >= G(2) - M(150));
    if (cfg.kind != MB_POLICY_SELFBALLOON) {
      ASSERT_U64(out[0].target_kib, G(2));
      ASSERT_U64(out[1].target_kib, G(3));
    }
    ASSERT_U64(out[0].target_kib + out[1].target_kib, G(5));
    CU_ASSERT_EQUAL(out[1].reason, MB_R_POOL_LIMIT);
  }
}

/* The critical amount is guaranteed: another guest's emergency, true or
 * faked, never takes an honest guest below its CMA. Overcommitted host
 * (pool 2.2 GiB): the faker (1 GiB, swapping at 5000 pages/s) asks for
 * far more than is free; the honest guest holds 1.5 GiB, its CMA (anon
 * 1 GiB + 10% margin, plus the kernel's reserve) below that. It may be
 * asked down to its CMA, never below (the old "lean margins" rule asked
 * it for its working set + 32 MiB). */
static void test_cagma_cma_guaranteed(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(2) + M(200)};
  dspec_t faker = DOM(G(1), G(8), 0, M(10), G(1) - M(100), G(1));
  faker.flags = D_SWAP;
  faker.swapin = 5000;
  dspec_t honest = DOM(G(1) + M(512), G(8), 0, M(400), G(1), G(1));
  mb_domain_t doms[2];
  mb_decision_t out[2];
  build_dom(&doms[0], &faker, 0);
  build_dom(&doms[1], &honest, 1);
  doms[0].sample.urgent = true;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out), 0);
  CU_ASSERT(out[0].emergency);
  CU_ASSERT(out[1].cma_kib > G(1) && out[1].cma_kib < G(1) + M(512));
  if (out[1].target_kib < out[1].cma_kib)
    fprintf(stderr, "\n  honest guest asked %llu KiB, below its CMA %llu",
            (unsigned long long)out[1].target_kib,
            (unsigned long long)out[1].cma_kib);
  CU_ASSERT(out[1].target_kib >= out[1].cma_kib);
  ASSERT_U64(out[0].target_kib + out[1].target_kib, host.total_kib);
}

/* Memory stall (PSI) and page-cache refaults as pressure signals, on the
 * hosts of test_cagma_pressure_signal (A's emergency: base max(CMA,
 * 1G + need); need = max(32M, (swap + file refault) pages/s x 4 KiB x
 * 10 s)). A stall share of 15 % or more is "stalled"; file refaults above
 * SwapThreshold (64/s) are a thrashing page cache:
 *  - stalled and thrashing, memory to spare (a full cache hides it from
 *    MemAvailable): emergency; 100 refaults/s ask 4000 KiB < 32M: base
 *    1081344 as for a swap storm;
 *  - 1000 refaults/s: need 40000 KiB, ask 1088576; B at its CMA 576716
 *    leaves 1081344 of the pool to A (emergency growth cut);
 *  - stalled, short: emergency; stalled, memory to spare, no refaults (a
 *    guest reading back old swap): none;
 *  - thrashing without stall, stall below 15 %, NaN stall, anon refaults
 *    only: none. */
static void test_cagma_stall_signal(void) {
  static const struct {
    const char *what;
    uint64_t avail;
    double some, file, anon;
    bool emergency;
    uint64_t want;
  } t[] = {
      {"stall + cache thrash, memory to spare", M(400), 0.2, 100, 0, true,
       1081344},
      {"stall + heavy cache thrash", M(400), 0.5, 1000, 0, true, 1088576},
      {"stall, short", M(16), 0.2, 0, 0, true, 1081344},
      {"stall, memory to spare, no refaults", M(400), 0.9, 0, 0, false, 0},
      {"stall, memory to spare, anon refaults only", M(400), 0.9, 0, 5000,
       false, 0},
      {"cache thrash, no stall", M(400), 0.0, 1000, 0, false, 0},
      {"stall below 15 %, short", M(16), 0.14, 1000, 0, false, 0},
      {"NaN stall, short", M(16), NAN, 1000, 0, false, 0},
      {"refaults at the threshold", M(400), 0.5, 64, 0, false, 0},
  };
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = 1658060};
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    dspec_t a = DOM(G(1), G(8), M(64), t[k].avail, M(512), 0);
    dspec_t b = DOM(G(1), G(8), M(64), M(400), M(512), 0);
    mb_domain_t doms[2];
    mb_decision_t out[2];
    build_dom(&doms[0], &a, 0);
    build_dom(&doms[1], &b, 1);
    doms[0].rates.valid = true;
    doms[0].rates.stall_valid = true;
    doms[0].rates.some_stall_share = t[k].some;
    doms[0].rates.refault_valid = true;
    doms[0].rates.refault_file_ps = t[k].file;
    doms[0].rates.refault_anon_ps = t[k].anon;
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out),
                          0);
    if (out[0].emergency != t[k].emergency)
      fprintf(stderr, "\n  %s: emergency %d, want %d", t[k].what,
              out[0].emergency, t[k].emergency);
    CU_ASSERT_EQUAL(out[0].emergency, t[k].emergency);
    ASSERT_U64(out[0].cma_kib, 576716);
    if (t[k].emergency) {
      ASSERT_U64(out[0].want_kib, t[k].want);
      ASSERT_U64(out[0].target_kib, 1081344);
      ASSERT_U64(out[1].target_kib, 576716);
    } else {
      ASSERT_U64(out[0].target_kib, 829030);
      ASSERT_U64(out[1].target_kib, 829030);
    }
  }
}

/* Cold anonymous memory of a quiet donor. B holds 2G with AnonPages 1.5G
 * (1572864), Active(anon) 600M, Inactive(anon) 900M: the LRU is 1 GiB
 * (integer GiB), ratio isqrt(10) = 3, so the kernel keeps 600M / 3 = 200M
 * inactive even when all is in use: cold = 900M - 200M = 716800 KiB. B's
 * CMA: 1572864 + 10 % = 1730150. C is B without the anon split (no cold
 * figure): CMA 1730150. A: 1G, anon 512M, 16M available, CMA 576716;
 * swapping out 1000 pages/s it asks 1G + 40000 = 1088576 (in deficit).
 * Pool 5G, all held: the donors give A's 40000, in proportion to what each
 * holds above its donor floor:
 *  - B quiet (PSI and refault figures, no stall, refault or swap): its
 *    floor is its CMA less its cold memory, 1013350, so it has 1083802 to
 *    give against C's 367002: B gives 40000 x 1083802 / 1450804 = 29882,
 *    C 10118 (each rounded up; the KiB over goes back by weight);
 *  - B stalls 5 %, or lacks the PSI figures: its cold pages count, its
 *    floor is its CMA, and B and C give 20000 each;
 *  - A not in emergency (no deficit): the surplus 5G - 576716 - 2 x
 *    1730150 = 1205864 is split by weight, 401955 each, quiet or not. */
static void test_cagma_cold_donor(void) {
  static const struct {
    const char *what;
    bool quiet_figures;
    double some;
    bool a_swaps;
    uint64_t a, b, c;
  } t[] = {
      {"quiet donor gives its cold memory", true, 0, true, 1088576,
       G(2) - 29882, G(2) - 10118},
      {"stalled donor keeps it", true, 0.05, true, 1088576, G(2) - 20000,
       G(2) - 20000},
      {"donor without PSI keeps it", false, 0, true, 1088576, G(2) - 20000,
       G(2) - 20000},
      {"no deficit: shared by weight", true, 0, false, 576716 + 401955,
       1730150 + 401955, 1730150 + 401955},
  };
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(5)};
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    dspec_t a = DOM(G(1), G(8), M(64), M(16), M(512), 0);
    dspec_t b = DOM(G(2), G(8), M(64), M(400), 1572864, 0);
    mb_domain_t doms[3];
    mb_decision_t out[3];
    build_dom(&doms[0], &a, 0);
    build_dom(&doms[1], &b, 1);
    build_dom(&doms[2], &b, 2);
    if (t[k].a_swaps) {
      doms[0].rates.valid = true;
      doms[0].rates.swapout_pps = 1000;
    }
    mb_sample_t *s = &doms[1].sample;
    s->v[MB_F_ACTIVE_ANON] = M(600);
    s->v[MB_F_INACTIVE_ANON] = M(900);
    s->have |=
        (UINT64_C(1) << MB_F_ACTIVE_ANON) | (UINT64_C(1) << MB_F_INACTIVE_ANON);
    for (int i = 1; i < 3; i++) {
      doms[i].rates.valid = true;
      doms[i].rates.stall_valid = t[k].quiet_figures;
      doms[i].rates.refault_valid = t[k].quiet_figures;
      doms[i].rates.some_stall_share = t[k].some;
    }
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 3, out),
                          0);
    uint64_t want[3] = {t[k].a, t[k].b, t[k].c}, sum = 0;
    for (int i = 0; i < 3; i++) {
      uint64_t d = out[i].target_kib > want[i] ? out[i].target_kib - want[i]
                                               : want[i] - out[i].target_kib;
      if (d > 2)
        fprintf(stderr, "\n  %s: dom %d target %llu, want %llu (+-2)",
                t[k].what, i, (unsigned long long)out[i].target_kib,
                (unsigned long long)want[i]);
      CU_ASSERT(d <= 2); /* rounding: a KiB or two go back by weight */
      sum += out[i].target_kib;
    }
    ASSERT_U64(sum, G(5));
    ASSERT_U64(out[1].cma_kib, 1730150);
    ASSERT_U64(out[2].cma_kib, 1730150);
    if (t[k].a_swaps) /* A gets exactly its ask, or a KiB or two above */
      CU_ASSERT(out[0].target_kib >= 1088576);
  }
}

/* Surge headroom (set by the round module; here by hand): surplus goes to
 * it first, then by weight. A: CMA 576716; B: CMA 294912; pool 3G,
 * surplus 2274100.
 *  - A's headroom 200M (204800): A 576716 + 204800 + (2274100 - 204800) /
 *    2 = 1816166, B 294912 + 1034650 = 1329562;
 *  - headroom 4G, more than the surplus: all of it to A (2850816), B at
 *    its CMA; headroom is never taken from a CMA;
 *  - a hostile headroom (UINT64_MAX) changes nothing more. */
static void test_cagma_headroom(void) {
  static const struct {
    uint64_t headroom, a, b;
  } t[] = {
      {0, 1713766, 1431962},
      {204800, 1816166, 1329562},
      {G(4), 2850816, 294912},
      {UINT64_MAX, 2850816, 294912},
  };
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(3)};
  for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
    dspec_t a = DOM(G(1), G(8), M(64), M(400), M(512), 0);
    dspec_t b = DOM(G(1), G(8), M(64), M(700), M(256), 0);
    mb_domain_t doms[2];
    mb_decision_t out[2];
    build_dom(&doms[0], &a, 0);
    build_dom(&doms[1], &b, 1);
    doms[0].headroom_kib = t[k].headroom;
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out),
                          0);
    ASSERT_U64(out[0].cma_kib, 576716);
    ASSERT_U64(out[1].cma_kib, 294912);
    ASSERT_U64(out[0].target_kib, t[k].a);
    ASSERT_U64(out[1].target_kib, t[k].b);
  }
}

/* A guest claiming the worst stall (100 %, 10^9 file refaults/s, urgent)
 * and an absurd headroom next to an honest one: emergency, but the honest
 * guest keeps its CMA (as with a faked swap storm,
 * test_cagma_cma_guaranteed). */
static void test_cagma_stall_liar(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = G(2) + M(200)};
  dspec_t liar = DOM(G(1), G(8), 0, M(400), M(512), 0);
  dspec_t honest = DOM(G(1) + M(512), G(8), 0, M(400), G(1), G(1));
  mb_domain_t doms[2];
  mb_decision_t out[2];
  build_dom(&doms[0], &liar, 0);
  build_dom(&doms[1], &honest, 1);
  doms[0].sample.urgent = true;
  doms[0].rates.valid = true;
  doms[0].rates.stall_valid = true;
  doms[0].rates.some_stall_share = 1;
  doms[0].rates.refault_valid = true;
  doms[0].rates.refault_file_ps = 1e9;
  doms[0].headroom_kib = UINT64_MAX;
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, doms, 2, out), 0);
  CU_ASSERT(out[0].emergency);
  CU_ASSERT(out[1].cma_kib > G(1) && out[1].cma_kib < G(1) + M(512));
  CU_ASSERT(out[1].target_kib >= out[1].cma_kib);
  ASSERT_U64(out[0].target_kib + out[1].target_kib, host.total_kib);
}

/* TaxRate AUTO: up on pressure next to idle memory, down when quiet. */
static void test_tax_auto(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  cfg.kind = MB_POLICY_TAX;
  cfg.tax.tau_auto = true;
  mb_host_t host = {.total_kib = G(4)};
  dspec_t busy = {.cur = G(1),
                  .max = G(4),
                  .min = M(64),
                  .w = 1,
                  .memtotal = G(1),
                  .flags = D_SWAP,
                  .swapin = 500};
  dspec_t idle = DOM(G(1), G(4), M(64), M(900), 0, 0);
  dspec_t quiet_full = DOM(G(1), G(4), M(64), 0, 0, 0);
  mb_domain_t doms[2];
  mb_decision_t out[2];
  mb_state_t st;
  mb_state_init(&st, &cfg);
  build_dom(&doms[0], &busy, 0);
  build_dom(&doms[1], &idle, 1);
  CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, &st, &host, doms, 2, out), 0);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.80, 1e-12);
  for (int i = 0; i < 10; i++)
    mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 1.0, 1e-12); /* capped at 1 */
  /* everybody short: tax cannot help, tau stays */
  build_dom(&doms[1], &quiet_full, 1);
  doms[1].rates.valid = true;
  doms[1].rates.majflt_ps = 1000;
  st.tau = 0.9;
  mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.9, 1e-12);
  /* quiet: back toward the configured 0.75 by 0.01 a round, not below */
  build_dom(&doms[0], &idle, 0);
  build_dom(&doms[1], &idle, 1);
  mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.89, 1e-12);
  for (int i = 0; i < 50; i++)
    mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.75, 1e-12);
  /* the urgent flag alone counts as pressure */
  build_dom(&doms[0], &quiet_full, 0);
  doms[0].sample.urgent = true;
  mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.80, 1e-12);
  /* static tau: the state just reports it */
  cfg.tax.tau_auto = false;
  cfg.tax.tau = 0.3;
  mb_policy_compute(&cfg, &st, &host, doms, 2, out);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.3, 0);
  ASSERT_U64(st.rounds, 65);
}

/* Absurd figures from a backend or a guest never overflow. */
static void test_huge_values(void) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host = {.total_kib = UINT64_MAX};
  mb_domain_t d[2];
  memset(d, 0, sizeof(d));
  for (int i = 0; i < 2; i++) {
    d[i].current_kib = d[i].max_kib = d[i].target_kib = UINT64_MAX;
    d[i].has_sample = true;
    d[i].sample.v[MB_F_MEMTOTAL] = UINT64_MAX;
    d[i].sample.v[MB_F_ANONPAGES] = UINT64_MAX;
    d[i].sample.v[MB_F_COMMITTED_AS] = UINT64_MAX;
    d[i].sample.have = UINT64_MAX;
    for (int f = 0; f < MB_F_COUNT; f++)
      d[i].sample.v[f] = UINT64_MAX;
    d[i].rates.valid = true;
    d[i].rates.swapin_pps = 1e300;
    d[i].rates.majflt_ps = NAN;
    d[i].weight = UINT32_MAX;
  }
  mb_decision_t out[2];
  for (int k = 0; k < MB_POLICY_COUNT; k++) {
    cfg.kind = (mb_policy_kind_t)k;
    CU_ASSERT_EQUAL_FATAL(mb_policy_compute(&cfg, NULL, &host, d, 2, out), 0);
    for (int i = 0; i < 2; i++) {
      CU_ASSERT(out[i].target_kib <= MB_KIB_MAX);
      CU_ASSERT(out[i].reason < MB_R_COUNT);
    }
  }
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"zero domains", test_zero_domains},
      {"tax", test_tax},
      {"tax AUTO", test_tax_auto},
      {"cagma", test_cagma},
      {"cagma on a 2.6.18 sample", test_cagma_old_kernel},
      {"cagma pressure signal", test_cagma_pressure_signal},
      {"cagma: an emergency counts from the target in force",
       test_cagma_emergency_from_target},
      {"cagma demand forecast", test_cagma_forecast},
      {"cagma forecast capped at Max", test_cagma_forecast_capped},
      {"cagma: CMA guaranteed during another's emergency",
       test_cagma_cma_guaranteed},
      {"cagma stall and refault signal", test_cagma_stall_signal},
      {"cagma: a quiet donor gives its cold memory", test_cagma_cold_donor},
      {"cagma surge headroom", test_cagma_headroom},
      {"cagma: a stall liar keeps no one below its CMA", test_cagma_stall_liar},
      {"D5: conservation cuts unused memory first",
       test_conservation_cuts_unused_first},
      {"selfballoon", test_selfballoon},
      {"envelope", test_envelope},
      {"envelope NUMA", test_numa},
      {"huge values", test_huge_values},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("policy", tests);
}
