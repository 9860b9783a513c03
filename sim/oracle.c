/*
 * The oracle: knows every VM's future working set (it reads the model's
 * traces) and is the reference lower bound for swap I/O given the host's
 * memory and the balloon's speed. Every 0.5 s, without pipeline delay, it
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

#define LOOKAHEAD_S 10.0
#define MARGIN_KIB 4096.0
#define NOW_S 2.0 /* "now": the next two seconds (jitter, balloon step) */

static void *oracle_create(const sim_scenario_t *scn) {
  static int dummy;
  return &dummy;
}
static void oracle_free(void *st) {}

static int model_index(const sim_model_t *m, uint32_t domid) {
  for (size_t i = 0; i < m->scn->nvms; i++)
    if (m->scn->vm[i].domid == domid)
      return (int)i;
  return -1;
}

static int oracle_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                         const mb_domain_t *d, size_t n, uint64_t *t) {
  const sim_model_t *m = ctx->model;
  const sim_scenario_t *scn = m->scn;
  double need[SIM_MAX_VMS], floor_kib[SIM_MAX_VMS], prio[SIM_MAX_VMS];
  int idx[SIM_MAX_VMS];
  bool done[SIM_MAX_VMS] = {false};
  if (n > SIM_MAX_VMS)
    return -1;
  double pool = (double)h->total_kib - (double)h->reserve_kib;
  /* VMs booting soon need free memory to boot into */
  for (size_t j = 0; j < scn->nvms; j++)
    if (!m->vm[j].ever && !scn->vm[j].fixed &&
        scn->vm[j].start_s <= ctx->t + LOOKAHEAD_S)
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
    for (double tau = ctx->t; tau <= ctx->t + LOOKAHEAD_S; tau += 0.25) {
      double v = sim_model_need_at(m, (size_t)j, tau);
      mx = fmax(mx, v);
      if (tau <= ctx->t + NOW_S)
        mn = mx;
    }
    need[i] = fmin(mx * 1.01 + MARGIN_KIB, (double)d[i].max_kib);
    now[i] = fmin(mn * 1.01 + MARGIN_KIB, need[i]);
    floor_kib[i] = fmin((double)s->base_kib + 16384.0, now[i]);
    double ws = fmax(sim_model_ws_at(m, (size_t)j, ctx->t), 1024);
    prio[i] = sim_trace_at(&s->tr[SIM_TR_INTENSITY], ctx->t) / ws;
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
        if (best < 0 || prio[i] > prio[best] * (1 + 1e-9) ||
            (prio[i] >= prio[best] * (1 - 1e-9) &&
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
    .desc = "oracle: knows future demand (lower bound for swap I/O)",
    .interval_s = 0.5,
    .no_delay = true,
    .create = oracle_create,
    .destroy = oracle_free,
    .decide = oracle_decide};
