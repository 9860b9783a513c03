/*
 * membal's own policies as the simulator runs them: exactly the round
 * module the membal plugin calls (mb_round_compute: mb_policy_compute plus
 * the plan, grows held to what the shrinks free, grants and holds) with
 * the documented defaults (mb_round_config_default), nothing tuned, at the
 * cadence membal ships with:
 * - guestmem publishes every Interval (2 s: collectd.conf.d/load/
 *   guestmem.conf sets the plugin's own) and, the model's guests having
 *   PSI (kernel >= 5.2), publishes an urgent record when its PSI trigger
 *   fires (StallThreshold 150 ms of "some" stall within StallWindow 1 s),
 *   at most one per UrgentMinInterval 1 s (plugins/guestmem.c; its
 *   /proc/vmstat polling is the fallback of kernels without PSI);
 * - vmmem reads the records every Interval (2 s, load/vmmem.conf); its
 *   watch passes an urgent record on at once;
 * - membal runs a round every Period = 2 s (the drop-ins dom0.conf and
 *   kvm.conf set it; the plugin's default is 3 x Interval) and at once on
 *   an urgent record (plugins/membal.c, mb_period_s and mb_thread);
 * - the dead band, stale limit and margins are mb_config_default's.
 * The runner's reserve (host reserve, toolstack claims, unmanaged VMs) is
 * the round's fixed reserve. membal-bench --config FILE adds rows for other
 * settings (sim/bench.c).
 */
#include "ops.h"
#include "round.h"
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  mb_round_config_t cfg;
  mb_round_state_t st;
  mb_domain_t doms[SIM_MAX_VMS];
  mb_decision_t out[SIM_MAX_VMS];
  mb_round_step_t steps[SIM_MAX_VMS];
  mb_ops_t ops;               /* the boots' reservations */
  bool reserved[SIM_MAX_VMS]; /* VM i's start asked `membal reserve` */
  bool trace;
} membal_st_t;

/* membal-xl-create's default --timeout, seconds */
#define SIM_RESERVE_TIMEOUT_S 120

static void *membal_create_cfg(const mb_config_t *cfg) {
  membal_st_t *s = calloc(1, sizeof(*s)); /* owned by the runner */
  if (!s)
    return NULL;
  mb_round_config_default(&s->cfg);
  s->cfg.policy = *cfg;
  s->cfg.reserve_auto = false;
  mb_ops_init(&s->ops);
  if (mb_round_state_init(&s->st, &s->cfg, SIM_MAX_VMS) != 0) {
    free(s);
    return NULL;
  }
  const char *tr = getenv("MEMBAL_SIM_TRACE");
  s->trace = tr && *tr && strcmp(tr, "0");
  return s;
}

void sim_membal_destroy(void *st) {
  membal_st_t *s = st;
  if (s != NULL)
    mb_round_state_dispose(&s->st);
  free(s);
}

static void *membal_create(mb_policy_kind_t kind) {
  mb_config_t cfg;
  mb_config_default(&cfg);
  cfg.kind = kind;
  return membal_create_cfg(&cfg);
}

void *sim_membal_create_arg(const sim_scenario_t *scn, const void *arg) {
  return membal_create_cfg(arg);
}

static void *cagma_create(const sim_scenario_t *scn) {
  return membal_create(MB_POLICY_CAGMA);
}
static void *tax_create(const sim_scenario_t *scn) {
  return membal_create(MB_POLICY_TAX);
}
static void *self_create(const sim_scenario_t *scn) {
  return membal_create(MB_POLICY_SELFBALLOON);
}

int sim_membal_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *host,
                      const mb_domain_t *doms, size_t n, uint64_t *targets) {
  membal_st_t *s = st;
  if (n > SIM_MAX_VMS)
    return -1;
  /* A VM due to start: membal-xl-create (or the libvirt hook) reserves
   * its memory for its name, and xl creates it once the room is free (the
   * model boots it then); the reservation ends as the plugin's does. */
  const sim_model_t *m = ctx->model;
  for (size_t j = 0; ctx->boot_requests && j < m->scn->nvms && j < SIM_MAX_VMS;
       j++) {
    const sim_vm_spec_t *vs = &m->scn->vm[j];
    if (s->reserved[j] || m->vm[j].ever || vs->start_s > ctx->t)
      continue;
    char err[128];
    uint64_t id;
    if (mb_ops_reserve(&s->ops, vs->name, vs->mem_kib, SIM_RESERVE_TIMEOUT_S,
                       ctx->t, &id, err, sizeof(err)) != 0)
      return -1;
    s->reserved[j] = true;
  }
  mb_ops_event_t ev[MB_OPS_MAX_RESV];
  size_t nev;
  uint64_t pending_kib =
      mb_ops_expire(&s->ops, doms, n, ctx->t, ev, MB_OPS_MAX_RESV, &nev);
  mb_round_input_t in = {.now_s = ctx->t,
                         .host = *host,
                         .pending_kib = pending_kib,
                         .doms = doms,
                         .n = n};
  mb_round_plan_t plan = {
      .doms = s->doms, .dec = s->out, .steps = s->steps, .cap = SIM_MAX_VMS};
  s->cfg.reserve_kib = host->reserve_kib;
  if (mb_round_compute(&s->cfg, &s->st, &in, &plan) != 0 ||
      plan.audit == MB_ROUND_SUM_BUG || plan.n != n)
    return -1;
  /* The model's balloons always accept a target. */
  for (size_t k = 0; k < plan.nsteps; k++)
    mb_round_step_done(&plan, k, true);
  for (size_t i = 0; i < n; i++)
    targets[i] = s->out[i].target_kib;
  /* MEMBAL_SIM_TRACE=1: every decision on stderr, to see why */
  if (s->trace)
    for (size_t i = 0; i < n; i++)
      fprintf(stderr,
              "t=%.1f %s cur=%" PRIu64 " target=%" PRIu64 " want=%" PRIu64
              " cma=%" PRIu64 " reason=%s%s%s swap_pps=%.0f age=%.1f\n",
              ctx->t, doms[i].name, doms[i].current_kib, s->out[i].target_kib,
              s->out[i].want_kib, s->out[i].cma_kib,
              mb_reason_name(s->out[i].reason),
              s->out[i].emergency ? " emergency" : "",
              s->out[i].stale ? " stale" : "",
              doms[i].rates.swapin_pps + doms[i].rates.swapout_pps,
              doms[i].sample_age_s);
  return 0;
}

const sim_policy_t sim_policy_cagma = {
    .name = "cagma",
    .desc = "membal cagma (default policy), library defaults",
    .interval_s = SIM_MEMBAL_PERIOD_S,
    .urgent = true,
    .urgent_gap_s = SIM_MEMBAL_URGENT_GAP_S,
    .boot_requests = true,
    .boot_reserve = true,
    .agent = SIM_MEMBAL_AGENT,
    .create = cagma_create,
    .destroy = sim_membal_destroy,
    .decide = sim_membal_decide};
const sim_policy_t sim_policy_tax = {
    .name = "tax",
    .desc = "membal idle memory tax, library defaults",
    .interval_s = SIM_MEMBAL_PERIOD_S,
    .urgent = true,
    .urgent_gap_s = SIM_MEMBAL_URGENT_GAP_S,
    .boot_requests = true,
    .boot_reserve = true,
    .agent = SIM_MEMBAL_AGENT,
    .create = tax_create,
    .destroy = sim_membal_destroy,
    .decide = sim_membal_decide};
const sim_policy_t sim_policy_selfballoon = {
    .name = "selfballoon",
    .desc = "membal selfballoon (dom0-coordinated), library defaults",
    .interval_s = SIM_MEMBAL_PERIOD_S,
    .urgent = true,
    .urgent_gap_s = SIM_MEMBAL_URGENT_GAP_S,
    .boot_requests = true,
    .boot_reserve = true,
    .agent = SIM_MEMBAL_AGENT,
    .create = self_create,
    .destroy = sim_membal_destroy,
    .decide = sim_membal_decide};

const sim_policy_t *const sim_policies[] = {
    &sim_policy_cagma,  &sim_policy_tax,       &sim_policy_selfballoon,
    &sim_base_static,   &sim_base_xenballoond, &sim_base_xenmm,
    &sim_base_xenmm075, &sim_base_mom,         &sim_base_proxmox,
    &sim_base_qubes,    &sim_policy_oracle,    NULL};

const sim_policy_t *sim_policy_find(const char *name) {
  for (size_t i = 0; sim_policies[i]; i++)
    if (strcmp(sim_policies[i]->name, name) == 0)
      return sim_policies[i];
  return NULL;
}
