/*
 * The three policies on what a KVM guest gives through libvirt: samples
 * without Committed_AS, without the active/inactive split, without
 * AnonPages. The domains and samples come from the libvirt backend itself
 * (test driver host file, and the backend's own mapping of raw
 * virtio-balloon statistics), so this checks the policies on exactly what
 * they will see. Expected figures are derived from the samples and the
 * fallbacks the policy files document, never copied from a run.
 */
#define _POSIX_C_SOURCE 200809L
#include "libvirt/lv_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "membal_policy.h"

#include <CUnit/Basic.h>

#ifndef MEMBAL_TEST_DATA
#error MEMBAL_TEST_DATA must name tests/data
#endif

#define MIB 1024ull

typedef struct {
  mb_hostinfo_t hi;
  mb_dominfo_t *info; /* owned */
  size_t n;
  mb_domain_t doms[16];
  mb_host_t host;
} world_t;

/* The host file's domains as the membal plugin would hand them over. */
static void load_world(world_t *w, uint64_t pool_kib) {
  char uri[4096], err[256] = "";
  snprintf(uri, sizeof(uri), "test://%s/libvirt-host.xml", MEMBAL_TEST_DATA);
  mb_backend_opts_t o = {.kind = "libvirt", .uri = uri};
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  CU_ASSERT_FATAL(b != NULL);
  CU_ASSERT_FATAL(mb_backend_host(b, &w->hi, err, sizeof(err)) == 0);
  CU_ASSERT_FATAL(mb_backend_list(b, &w->info, &w->n, err, sizeof(err)) == 0);
  CU_ASSERT_FATAL(w->n >= 4 && w->n <= 16);
  mb_backend_close(b);
  memset(&w->host, 0, sizeof(w->host));
  w->host.total_kib = w->hi.total_kib;
  w->host.free_kib = w->hi.free_kib;
  w->host.reserve_kib = w->hi.total_kib - pool_kib;
  for (size_t i = 0; i < w->n; i++) {
    mb_domain_t *d = &w->doms[i];
    const mb_dominfo_t *x = &w->info[i];
    memset(d, 0, sizeof(*d));
    d->domid = x->domid;
    snprintf(d->name, sizeof(d->name), "%s", x->name);
    d->current_kib = x->current_kib;
    d->target_kib = x->target_kib;
    d->max_kib = x->max_kib;
    d->weight = 1;
    d->node_mask = x->node_mask;
    d->has_sample = x->sample_status == MB_SAMPLE_OK;
    if (d->has_sample)
      d->sample = x->sample;
  }
}

static uint64_t used_kib(const mb_sample_t *s) {
  return s->v[MB_F_MEMTOTAL] - s->v[MB_F_MEMAVAILABLE];
}

/* Invariants every policy must keep, plus "someone gave memory back" on a
 * host whose guests hold more than the pool. */
static void check_round(const world_t *w, const mb_decision_t *dec,
                        uint64_t pool_kib, const char *policy) {
  uint64_t sum = 0, held = 0;
  int shrunk = 0;
  for (size_t i = 0; i < w->n; i++) {
    const mb_domain_t *d = &w->doms[i];
    sum += dec[i].target_kib;
    held += d->current_kib;
    CU_ASSERT(dec[i].target_kib <= d->max_kib);
    CU_ASSERT(dec[i].target_kib > 0);
    if (!d->has_sample)
      CU_ASSERT(dec[i].target_kib >= d->current_kib); /* no evidence */
    if (dec[i].target_kib < d->current_kib)
      shrunk++;
    fprintf(stderr, "  %s %-7s cur %6llu MiB -> %6llu MiB (%s)\n", policy,
            d->name, (unsigned long long)(d->current_kib / MIB),
            (unsigned long long)(dec[i].target_kib / MIB),
            mb_reason_name(dec[i].reason));
  }
  CU_ASSERT(held > pool_kib);
  CU_ASSERT(sum <= pool_kib);
  CU_ASSERT(shrunk > 0);
}

static const uint64_t pool_kib = 6144 * MIB;

/* One round of the given policy, default settings otherwise, on the
 * libvirt test host (w->info is owned by the caller afterwards), with
 * check_round's invariants asserted. */
static void run_round(world_t *w, mb_policy_kind_t kind, const char *name,
                      mb_config_t *cfg, mb_decision_t *dec) {
  load_world(w, pool_kib);
  mb_config_default(cfg);
  cfg->kind = kind;
  mb_state_t st;
  mb_state_init(&st, cfg);
  CU_ASSERT_FATAL(mb_policy_compute(cfg, &st, &w->host, w->doms, w->n, dec) ==
                  0);
  check_round(w, dec, pool_kib, name);
}

static void test_cagma(void) {
  world_t w;
  mb_config_t cfg;
  mb_decision_t dec[16];
  run_round(&w, MB_POLICY_CAGMA, "cagma", &cfg, dec);
  for (size_t i = 0; i < w.n; i++) {
    const mb_domain_t *d = &w.doms[i];
    if (!d->has_sample)
      continue;
    /* No anon figure: ws + kernel = MemTotal - MemAvailable, plus the
     * boot overhead (current - MemTotal) and the margin. */
    uint64_t need = used_kib(&d->sample);
    uint64_t margin = (uint64_t)(cfg.cagma.margin_frac * (double)need);
    if (margin < cfg.cagma.margin_min_kib)
      margin = cfg.cagma.margin_min_kib;
    uint64_t overhead = d->current_kib - d->sample.v[MB_F_MEMTOTAL];
    CU_ASSERT_EQUAL(dec[i].cma_kib, overhead + need + margin);
    CU_ASSERT(dec[i].target_kib >= need);
  }
  free(w.info);
}

static void test_tax(void) {
  world_t w;
  mb_config_t cfg;
  mb_decision_t dec[16];
  run_round(&w, MB_POLICY_TAX, "tax", &cfg, dec);
  /* x_i = tau * used_i + c with one c >= 0 for the unclamped guests: two
   * of them differ by tau times their difference in use. */
  const mb_domain_t *a = NULL, *b = NULL;
  const mb_decision_t *da = NULL, *db = NULL;
  for (size_t i = 0; i < w.n; i++) {
    if (!w.doms[i].has_sample || dec[i].target_kib >= w.doms[i].max_kib ||
        dec[i].reason == MB_R_CLAMPED_MIN)
      continue;
    if (a == NULL) {
      a = &w.doms[i];
      da = &dec[i];
    } else if (b == NULL) {
      b = &w.doms[i];
      db = &dec[i];
    }
  }
  CU_ASSERT_FATAL(a != NULL && b != NULL);
  double want = cfg.tax.tau *
                ((double)used_kib(&a->sample) - (double)used_kib(&b->sample));
  double got = (double)da->want_kib - (double)db->want_kib;
  CU_ASSERT(got - want < 2.0 && want - got < 2.0);
  CU_ASSERT((double)da->want_kib >=
            cfg.tax.tau * (double)used_kib(&a->sample) - 1.0);
  free(w.info);
}

static void test_selfballoon(void) {
  world_t w;
  mb_config_t cfg;
  mb_decision_t dec[16];
  run_round(&w, MB_POLICY_SELFBALLOON, "selfballoon", &cfg, dec);
  for (size_t i = 0; i < w.n; i++) {
    const mb_domain_t *d = &w.doms[i];
    if (!d->has_sample)
      continue;
    /* No Committed_AS: the goal is what the guest uses; a tenth of the way
     * per round when shrinking (DownHysteresis 10). */
    CU_ASSERT(!mb_sample_has(&d->sample, MB_F_COMMITTED_AS));
    uint64_t goal = used_kib(&d->sample);
    if (goal < d->current_kib) {
      CU_ASSERT(dec[i].want_kib < d->current_kib);
      CU_ASSERT(dec[i].want_kib >= goal);
      CU_ASSERT(dec[i].want_kib >=
                d->current_kib -
                    (d->current_kib - goal) / cfg.selfballoon.down_hysteresis -
                    1);
    }
  }
  free(w.info);
}

/* Two balloon-stat reads of one guest, 5 s apart, swapping hard: the
 * counters the backend maps (swap_in/out KiB -> pages) give rates that make
 * cagma grow it at once. */
static void test_cagma_emergency_from_balloon_stats(void) {
  lv_dom_state_t st;
  memset(&st, 0, sizeof(st));
  const int tags[] = {
      VIR_DOMAIN_MEMORY_STAT_SWAP_IN,     VIR_DOMAIN_MEMORY_STAT_SWAP_OUT,
      VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,
      VIR_DOMAIN_MEMORY_STAT_UNUSED,      VIR_DOMAIN_MEMORY_STAT_AVAILABLE,
      VIR_DOMAIN_MEMORY_STAT_USABLE,      VIR_DOMAIN_MEMORY_STAT_DISK_CACHES,
      VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE};
  unsigned long long v1[] = {1000,    2000,  10,    5000,      20000,
                             1000000, 40000, 15000, 1700000000};
  unsigned long long v2[] = {1000 + 40000, 2000 + 40000, 900,  9000,      10000,
                             1000000,      30000,        9000, 1700000005};
  virDomainMemoryStatStruct ms[9];
  mb_sample_t s1, s2;
  char e[160];
  for (int i = 0; i < 9; i++) {
    ms[i].tag = tags[i];
    ms[i].val = v1[i];
  }
  CU_ASSERT_FATAL(lv_fill_sample(&st, ms, 9, 1048576, &s1, e, sizeof(e)) ==
                  MB_SAMPLE_OK);
  for (int i = 0; i < 9; i++)
    ms[i].val = v2[i];
  CU_ASSERT_FATAL(lv_fill_sample(&st, ms, 9, 1048576, &s2, e, sizeof(e)) ==
                  MB_SAMPLE_OK);
  CU_ASSERT(s2.seq > s1.seq);

  mb_domain_t d[2];
  memset(d, 0, sizeof(d));
  for (int i = 0; i < 2; i++) {
    d[i].domid = (uint32_t)i + 1;
    d[i].current_kib = 1024 * MIB;
    d[i].target_kib = 1024 * MIB;
    d[i].max_kib = 2048 * MIB;
    d[i].weight = 1;
    d[i].has_sample = true;
  }
  snprintf(d[0].name, sizeof(d[0].name), "swapper");
  snprintf(d[1].name, sizeof(d[1].name), "idle");
  d[0].sample = s2;
  mb_sample_rates(&s1, &s2, 5.0, &d[0].rates);
  CU_ASSERT_FATAL(d[0].rates.valid);
  /* 40000 KiB = 10000 pages in and out each, over 5 s */
  CU_ASSERT(d[0].rates.swapin_pps > 1999.0 && d[0].rates.swapin_pps < 2001.0);
  CU_ASSERT(d[0].rates.swapout_pps > 1999.0 && d[0].rates.swapout_pps < 2001.0);
  d[1].sample = s1;
  d[1].sample.v[MB_F_MEMAVAILABLE] = 900000; /* mostly idle */
  d[1].sample.v[MB_F_MEMFREE] = 800000;

  mb_host_t h = {.total_kib = 4096 * MIB,
                 .free_kib = 1024 * MIB,
                 .reserve_kib = 1024 * MIB};
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_state_t st2;
  mb_state_init(&st2, &cfg);
  mb_decision_t dec[2];
  CU_ASSERT_FATAL(mb_policy_compute(&cfg, &st2, &h, d, 2, dec) == 0);
  CU_ASSERT_EQUAL(dec[0].reason, MB_R_EMERGENCY);
  CU_ASSERT(dec[0].target_kib > d[0].current_kib);
}

/* QEMU without the "usable" statistic (older QEMU or guest drivers): cagma
 * falls back to MemFree + Cached for the idle part. */
static void test_cagma_without_usable(void) {
  lv_dom_state_t st;
  memset(&st, 0, sizeof(st));
  const int tags[] = {VIR_DOMAIN_MEMORY_STAT_UNUSED,
                      VIR_DOMAIN_MEMORY_STAT_AVAILABLE,
                      VIR_DOMAIN_MEMORY_STAT_DISK_CACHES};
  unsigned long long v[] = {200000, 1000000, 300000};
  virDomainMemoryStatStruct ms[3];
  for (int i = 0; i < 3; i++) {
    ms[i].tag = tags[i];
    ms[i].val = v[i];
  }
  mb_domain_t d;
  memset(&d, 0, sizeof(d));
  char e[160];
  CU_ASSERT_FATAL(lv_fill_sample(&st, ms, 3, 2097152, &d.sample, e,
                                 sizeof(e)) == MB_SAMPLE_OK);
  CU_ASSERT(!mb_sample_has(&d.sample, MB_F_MEMAVAILABLE));
  d.domid = 1;
  d.current_kib = 1048576;
  d.target_kib = 1048576;
  d.max_kib = 2097152;
  d.weight = 1;
  d.has_sample = true;
  mb_host_t h = {.total_kib = 2097152, .free_kib = 0, .reserve_kib = 0};
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_state_t s;
  mb_state_init(&s, &cfg);
  mb_decision_t dec;
  CU_ASSERT_FATAL(mb_policy_compute(&cfg, &s, &h, &d, 1, &dec) == 0);
  uint64_t need = v[1] - (v[0] + v[2]);
  uint64_t margin = (uint64_t)(cfg.cagma.margin_frac * (double)need);
  if (margin < cfg.cagma.margin_min_kib)
    margin = cfg.cagma.margin_min_kib;
  CU_ASSERT_EQUAL(dec.cma_kib, (d.current_kib - v[1]) + need + margin);
}

/* NUMA end to end: libvirt's cells and a domain's <numatune> through the
 * backend into the envelope. test:///default has two cells with a few MiB
 * free; the bound domain may grow only by what its node has free, the
 * unbound one is not held back by the cells. */
static void test_numa_bound_growth(void) {
  static const char *xml[2] = {
      "<domain type='test'><name>mbp-bound</name>"
      "<memory unit='KiB'>1048576</memory>"
      "<currentMemory unit='KiB'>524288</currentMemory><vcpu>1</vcpu>"
      "<numatune><memory mode='strict' nodeset='0'/></numatune>"
      "<os><type>hvm</type></os>"
      "<devices><memballoon model='virtio'/></devices></domain>",
      "<domain type='test'><name>mbp-any</name>"
      "<memory unit='KiB'>1048576</memory>"
      "<currentMemory unit='KiB'>524288</currentMemory><vcpu>1</vcpu>"
      "<os><type>hvm</type></os>"
      "<devices><memballoon model='virtio'/></devices></domain>"};
  virConnectPtr c = virConnectOpen("test:///default");
  CU_ASSERT_FATAL(c != NULL);
  virDomainPtr vd[2];
  for (int i = 0; i < 2; i++) {
    vd[i] = virDomainCreateXML(c, xml[i], 0);
    CU_ASSERT_FATAL(vd[i] != NULL);
  }
  char err[256] = "";
  mb_backend_opts_t o = {.kind = "libvirt", .uri = "test:///default"};
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  CU_ASSERT_FATAL(b != NULL);
  mb_hostinfo_t hi;
  mb_dominfo_t *info = NULL;
  size_t n = 0;
  CU_ASSERT_FATAL(mb_backend_host(b, &hi, err, sizeof(err)) == 0);
  CU_ASSERT_FATAL(mb_backend_list(b, &info, &n, err, sizeof(err)) == 0);
  CU_ASSERT_FATAL(hi.nr_nodes >= 2);

  mb_domain_t d[2];
  memset(d, 0, sizeof(d));
  size_t k = 0;
  for (size_t i = 0; i < n && k < 2; i++) {
    if (strncmp(info[i].name, "mbp-", 4) != 0)
      continue;
    CU_ASSERT_FATAL(info[i].sample_status == MB_SAMPLE_OK);
    d[k].domid = info[i].domid;
    snprintf(d[k].name, sizeof(d[k].name), "%s", info[i].name);
    d[k].current_kib = info[i].current_kib;
    d[k].target_kib = info[i].target_kib;
    d[k].max_kib = info[i].max_kib;
    d[k].node_mask = info[i].node_mask;
    d[k].weight = 1;
    d[k].has_sample = true;
    d[k].sample = info[i].sample;
    k++;
  }
  CU_ASSERT_FATAL(k == 2);
  size_t bi = strcmp(d[0].name, "mbp-bound") == 0 ? 0 : 1;
  CU_ASSERT_EQUAL(d[bi].node_mask, 0x1u);
  CU_ASSERT_EQUAL(d[1 - bi].node_mask, 0u);

  mb_host_t h;
  memset(&h, 0, sizeof(h));
  h.total_kib = 4096 * MIB; /* room for both to reach max */
  h.free_kib = hi.free_kib;
  h.nr_nodes = hi.nr_nodes;
  for (unsigned j = 0; j < hi.nr_nodes && j < MB_MAX_NODES; j++)
    h.node_free_kib[j] = hi.node_free_kib[j];
  mb_config_t cfg;
  mb_config_default(&cfg);
  cfg.deadband_kib = 0; /* the cells' free memory is a few MiB */
  mb_state_t st;
  mb_state_init(&st, &cfg);
  mb_decision_t dec[2];
  CU_ASSERT_FATAL(mb_policy_compute(&cfg, &st, &h, d, 2, dec) == 0);
  fprintf(stderr,
          "  bound %llu -> %llu KiB (%s), node0 free %llu KiB; "
          "unbound %llu -> %llu KiB (%s)\n",
          (unsigned long long)d[bi].current_kib,
          (unsigned long long)dec[bi].target_kib,
          mb_reason_name(dec[bi].reason),
          (unsigned long long)hi.node_free_kib[0],
          (unsigned long long)d[1 - bi].current_kib,
          (unsigned long long)dec[1 - bi].target_kib,
          mb_reason_name(dec[1 - bi].reason));
  /* cagma shares the idle pool: the bound one gets what its node has */
  CU_ASSERT(dec[bi].target_kib > d[bi].current_kib);
  CU_ASSERT(dec[bi].target_kib <= d[bi].current_kib + hi.node_free_kib[0]);
  CU_ASSERT(dec[1 - bi].target_kib >
            d[1 - bi].current_kib + hi.node_free_kib[0] + hi.node_free_kib[1]);

  free(info);
  mb_backend_close(b);
  for (int i = 0; i < 2; i++) {
    virDomainDestroy(vd[i]);
    virDomainFree(vd[i]);
  }
  virConnectClose(c);
}

int main(void) {
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("policies_on_libvirt_samples", NULL, NULL);
  CU_add_test(s, "cagma on test-driver domains", test_cagma);
  CU_add_test(s, "tax on test-driver domains", test_tax);
  CU_add_test(s, "selfballoon on test-driver domains", test_selfballoon);
  CU_add_test(s, "cagma emergency from balloon swap counters",
              test_cagma_emergency_from_balloon_stats);
  CU_add_test(s, "cagma without the usable statistic",
              test_cagma_without_usable);
  CU_add_test(s, "NUMA-bound growth limited by the node's free memory",
              test_numa_bound_growth);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures();
  unsigned errs = CU_get_error();
  CU_cleanup_registry();
  return (fails || errs) ? 1 : 0;
}
