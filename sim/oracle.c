/*
 * The oracle: knows every VM's future working set (it reads the model's
 * traces). One allocation rule (below) with parameters: margin, lookahead,
 * the order in which VMs are served (the reverse is the donor order), and
 * whether memory is held for VMs about to boot. sim_oracle_search runs
 * every rule of a family on a copy of the model to the end of the
 * scenario and keeps the best: the benchmark's reference. It is not a
 * proven optimum, only the best of the family.
 *
 * The rule: every 0.5 s, without pipeline delay, it
 * gives each VM what it needs now and then, as far as the pool allows, the
 * most it will need over the next LOOKAHEAD seconds (so that slow balloons
 * have moved by the time demand arrives). When the pool cannot cover
 * everyone, it fills needs in order of fault cost per KiB
 * withheld (access intensity / working set), which minimises the fault
 * rate because a VM's fault rate is linear in the fraction of its working
 * set that is out. Memory VMs will need at boot within the lookahead is
 * kept free for them.
 */
#include "sim.h"

#include <math.h>
#include <stdlib.h>

#include <string.h>

#define MARGIN_KIB 4096.0
#define NOW_S 2.0 /* "now": the next two seconds (jitter, balloon step) */

/* the rule the plain `oracle` policy runs (and the search starts from) */
static const sim_oracle_params_t greedy = {.lookahead_s = 10,
                                           .margin_frac = 0.01,
                                           .order = SIM_ORACLE_COST,
                                           .boot_reserve = true};

static void *oracle_create(const sim_scenario_t *scn) {
  sim_oracle_params_t *p = malloc(sizeof(*p)); /* owned by the runner */
  if (p)
    *p = greedy;
  return p;
}
static void *oracle_create_arg(const sim_scenario_t *scn, const void *arg) {
  sim_oracle_params_t *p = malloc(sizeof(*p)); /* owned by the runner */
  if (p)
    *p = *(const sim_oracle_params_t *)arg;
  return p;
}
static void oracle_free(void *st) { free(st); }

static int model_index(const sim_model_t *m, uint32_t domid) {
  for (size_t i = 0; i < m->scn->nvms; i++)
    if (m->scn->vm[i].domid == domid)
      return (int)i;
  return -1;
}

static int oracle_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                         const mb_domain_t *d, size_t n, uint64_t *t) {
  const sim_oracle_params_t *par = st;
  const sim_model_t *m = ctx->model;
  const sim_scenario_t *scn = m->scn;
  double need[SIM_MAX_VMS], floor_kib[SIM_MAX_VMS], prio[SIM_MAX_VMS];
  int idx[SIM_MAX_VMS];
  bool done[SIM_MAX_VMS] = {false};
  if (n > SIM_MAX_VMS)
    return -1;
  double pool = (double)h->total_kib - (double)h->reserve_kib;
  /* VMs booting soon need free memory to boot into */
  for (size_t j = 0; j < scn->nvms && par->boot_reserve; j++)
    if (!m->vm[j].ever && !scn->vm[j].fixed &&
        scn->vm[j].start_s <= ctx->t + par->lookahead_s)
      pool -= (double)scn->vm[j].mem_kib;
  double left = pool;
  double now[SIM_MAX_VMS];
  for (size_t i = 0; i < n; i++) {
    int j = model_index(m, d[i].domid);
    if (j < 0)
      return -1;
    idx[i] = j;
    const sim_vm_spec_t *s = &scn->vm[j];
    double mx = 0, mn = 0;
    double step = par->lookahead_s > 20 ? 1.0 : 0.25;
    for (double tau = ctx->t; tau <= ctx->t + par->lookahead_s; tau += step) {
      double v = sim_model_need_at(m, (size_t)j, tau);
      if (par->keep_cold)
        v += sim_model_cold_at(m, (size_t)j, tau);
      mx = fmax(mx, v);
      if (tau <= ctx->t + NOW_S)
        mn = mx;
    }
    double f = 1 + par->margin_frac;
    need[i] = fmin(mx * f + MARGIN_KIB, (double)d[i].max_kib);
    now[i] = fmin(mn * f + MARGIN_KIB, need[i]);
    floor_kib[i] = fmin((double)s->base_kib + 16384.0, now[i]);
    double ws = fmax(sim_model_ws_at(m, (size_t)j, ctx->t), 1024);
    switch (par->order) {
    case SIM_ORACLE_HOLDER: /* who holds memory keeps it: fewest moves */
      prio[i] = (double)d[i].current_kib;
      break;
    case SIM_ORACLE_SMALL: /* smallest need first: most VMs covered */
      prio[i] = -need[i];
      break;
    default: /* fault cost per KiB withheld */
      prio[i] = sim_trace_at(&s->tr[SIM_TR_INTENSITY], ctx->t) / ws;
      break;
    }
    left -= floor_kib[i];
  }
  double give[SIM_MAX_VMS];
  for (size_t i = 0; i < n; i++)
    give[i] = floor_kib[i];
  /* first what each needs now, then what each will need within the
   * lookahead; both in order of fault cost, ties to the VM that already
   * holds more (moving memory costs time) */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++)
      done[i] = false;
    for (size_t k = 0; k < n; k++) {
      int best = -1;
      for (size_t i = 0; i < n; i++) {
        if (done[i])
          continue;
        if (best < 0) {
          best = (int)i;
          continue;
        }
        double tol = 1e-9 * fabs(prio[best]);
        if (prio[i] > prio[best] + tol ||
            (prio[i] >= prio[best] - tol &&
             d[i].current_kib > d[best].current_kib))
          best = (int)i;
      }
      done[best] = true;
      double want = pass == 0 ? now[best] : need[best];
      double add = fmin(fmax(left, 0), fmax(0, want - give[best]));
      give[best] += add;
      left -= add;
    }
  }
  /* what is left over goes where it is harmless: proportional to need */
  double sum_need = 0;
  for (size_t i = 0; i < n; i++)
    sum_need += need[i];
  for (size_t i = 0; i < n; i++) {
    double v = give[i];
    if (left > 0 && sum_need > 0)
      v += left * need[i] / sum_need;
    v = fmin(v, (double)d[i].max_kib);
    t[i] = v > 0 ? (uint64_t)v : 0;
  }
  (void)idx;
  return 0;
}

const sim_policy_t sim_policy_oracle = {
    .name = "oracle",
    .desc = "oracle: knows future demand (greedy rule; membal-bench "
            "searches a family of rules)",
    .interval_s = 0.5,
    .no_delay = true,
    .create = oracle_create,
    .destroy = oracle_free,
    .decide = oracle_decide};

/* Better: fewer VMs that never booted, then fewer OOM kills, then less
 * swap. */
static bool better(const sim_result_t *a, const sim_result_t *b) {
  if (a->boot_failed != b->boot_failed)
    return a->boot_failed < b->boot_failed;
  if (a->oom_kills != b->oom_kills)
    return a->oom_kills < b->oom_kills;
  return a->swap_pages < b->swap_pages;
}

int sim_oracle_search(const sim_scenario_t *scn, uint64_t seed,
                      unsigned max_rules, sim_oracle_params_t *best,
                      sim_result_t *res, unsigned *tried, char *err,
                      size_t errlen) {
  static const double looks[] = {10, 30, 2, 90};
  static const double margins[] = {0.01, 0.05};
  static const sim_oracle_order_t orders[] = {
      SIM_ORACLE_COST, SIM_ORACLE_HOLDER, SIM_ORACLE_SMALL};
  bool have = false, cold = false;
  *tried = 0;
  for (size_t i = 0; i < scn->nvms; i++)
    cold = cold || scn->vm[i].cold_share > 0 || scn->vm[i].tr[SIM_TR_COLD].n;
  /* the greedy rule first, so the search is never worse than it; any
   * prefix of the family is a valid (smaller) search */
  for (size_t c = 0; c < (cold ? 2u : 1u); c++)
    for (size_t b = 0; b < 2; b++)
      for (size_t l = 0; l < 4; l++)
        for (size_t o = 0; o < 3; o++)
          for (size_t k = 0; k < 2; k++) {
            if (*tried >= max_rules && have)
              return 0;
            sim_oracle_params_t p = {.lookahead_s = looks[l],
                                     .margin_frac = margins[k],
                                     .order = orders[o],
                                     .boot_reserve = b == 0,
                                     .keep_cold = c == 1};
            sim_policy_t pol = sim_policy_oracle;
            pol.create_arg = oracle_create_arg;
            pol.arg = &p;
            sim_result_t r;
            if (sim_run(scn, &pol, seed, NULL, NULL, &r, err, errlen))
              return -1;
            (*tried)++;
            if (!have || better(&r, res)) {
              *res = r;
              *best = p;
              have = true;
            }
          }
  return 0;
}

const char *sim_oracle_order_name(sim_oracle_order_t o) {
  switch (o) {
  case SIM_ORACLE_HOLDER:
    return "holder";
  case SIM_ORACLE_SMALL:
    return "small-first";
  default:
    return "fault-cost";
  }
}

void *sim_oracle_create_arg(const sim_scenario_t *scn, const void *arg) {
  return oracle_create_arg(scn, arg);
}
