/*
 * The round module (round.h): clamps, reserve, mb_policy_compute(), sum
 * audit and the actuation plan. What the membal plugin's round did, as a
 * pure function of its inputs and of the state of earlier rounds.
 */
#include <stdlib.h>
#include <string.h>

#include "policy_impl.h"
#include "round.h"

#define MB_ROUND_RESERVE_SLACK_KIB (64 * 1024)

void mb_round_config_default(mb_round_config_t *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  mb_config_default(&cfg->policy);
  cfg->reserve_auto = true;
  cfg->reserve_slack_kib = MB_ROUND_RESERVE_SLACK_KIB;
}

int mb_round_config_validate(const mb_round_config_t *cfg, char *err,
                             size_t errlen) {
  if (cfg == NULL)
    return mb_fail(err, errlen, "no configuration");
  if (mb_config_validate(&cfg->policy, err, errlen) != 0)
    return -1;
  if (cfg->nclamps > 0 && cfg->clamps == NULL)
    return mb_fail(err, errlen, "clamps: %zu announced, none given",
                   cfg->nclamps);
  if (cfg->reserve_kib > MB_KIB_MAX || cfg->reserve_slack_kib > MB_KIB_MAX)
    return mb_fail(err, errlen, "Reserve must be <= %llu KiB",
                   (unsigned long long)MB_KIB_MAX);
  return 0;
}

int mb_round_state_init(mb_round_state_t *st, const mb_round_config_t *cfg,
                        size_t cap_domains) {
  if (st == NULL || mb_round_config_validate(cfg, NULL, 0) != 0)
    return -1;
  memset(st, 0, sizeof(*st));
  mb_state_init(&st->policy, &cfg->policy);
  (void)cap_domains;
  return 0;
}

void mb_round_state_dispose(mb_round_state_t *st) {
  if (st == NULL)
    return;
  memset(st, 0, sizeof(*st));
}

static const mb_round_clamp_t *find_clamp(const mb_round_config_t *cfg,
                                          const char *name) {
  for (size_t i = 0; i < cfg->nclamps; i++)
    if (strncmp(cfg->clamps[i].name, name, MB_NAME_LEN) == 0)
      return &cfg->clamps[i];
  return NULL;
}

/* A guest of the backend's list with the configured clamps applied. */
static void clamp_domain(const mb_round_config_t *cfg, const mb_domain_t *in,
                         mb_domain_t *d) {
  *d = *in;
  d->name[MB_NAME_LEN - 1] = '\0';
  if (d->target_kib == 0)
    d->target_kib = d->current_kib;
  d->min_kib = 0;
  d->weight = 1;
  const mb_round_clamp_t *c = find_clamp(cfg, d->name);
  if (c != NULL) {
    d->min_kib = c->min_kib;
    if (c->max_kib != 0 && (d->max_kib == 0 || c->max_kib < d->max_kib))
      d->max_kib = c->max_kib;
    d->weight = c->weight != 0 ? c->weight : 1;
  }
  if (d->max_kib != 0 && d->min_kib > d->max_kib)
    d->min_kib = d->max_kib;
}

static uint64_t reserve_of(const mb_round_config_t *cfg,
                           const mb_round_input_t *in, uint64_t dom0_kib,
                           uint64_t guests_kib) {
  uint64_t r;
  if (cfg->reserve_auto) {
    /* What neither the guests nor the free pool hold: dom0 and the
     * hypervisor's own memory, plus slack. */
    uint64_t held =
        mb_sub_sat(in->host.total_kib, in->host.free_kib + guests_kib);
    r = mb_max_u64(held, dom0_kib) + cfg->reserve_slack_kib;
  } else {
    r = cfg->reserve_kib;
  }
  r += mb_min_u64(in->pending_kib, MB_KIB_MAX);
  return mb_min_u64(r, in->host.total_kib);
}

/* What domain i accounts for against the pool with target t in force. */
static uint64_t accounted(const mb_round_plan_t *plan, size_t i, uint64_t t) {
  (void)plan;
  (void)i;
  return t;
}

/* Sets to_kib of the grows not yet done or failed so that, with every
 * shrink not failed credited, the targets in force fit the pool. */
static void hold_grows(mb_round_plan_t *plan) {
  uint64_t used = plan->fixed_kib;
  for (size_t k = 0; k < plan->nsteps; k++) {
    const mb_round_step_t *s = &plan->steps[k];
    uint64_t t = s->failed              ? s->from_kib
                 : s->shrink || s->done ? s->to_kib
                                        : s->from_kib;
    used += accounted(plan, s->dom, t);
  }
  uint64_t room = mb_sub_sat(plan->pool_kib, used);
  for (size_t k = 0; k < plan->nsteps; k++) {
    mb_round_step_t *s = &plan->steps[k];
    if (s->shrink || s->done || s->failed)
      continue;
    uint64_t before = accounted(plan, s->dom, s->from_kib);
    uint64_t to = mb_min_u64(s->want_kib, before + room);
    to = mb_max_u64(to, s->from_kib);
    room -= mb_sub_sat(accounted(plan, s->dom, to), before);
    s->to_kib = to;
  }
}

int mb_round_compute(const mb_round_config_t *cfg, mb_round_state_t *st,
                     const mb_round_input_t *in, mb_round_plan_t *plan) {
  if (cfg == NULL || st == NULL || in == NULL || plan == NULL ||
      (in->n > 0 && in->doms == NULL) ||
      mb_round_config_validate(cfg, NULL, 0) != 0)
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < in->n; i++)
    if (in->doms[i].domid != 0)
      n++;
  if (n > 0 && (n > plan->cap || plan->doms == NULL || plan->dec == NULL ||
                plan->steps == NULL))
    return -1;

  uint64_t dom0_kib = 0, guests_kib = 0;
  n = 0;
  for (size_t i = 0; i < in->n; i++) {
    const mb_domain_t *d = &in->doms[i];
    if (d->domid == 0) {
      dom0_kib = mb_min_u64(d->current_kib, MB_KIB_MAX);
      continue;
    }
    clamp_domain(cfg, d, &plan->doms[n]);
    guests_kib += mb_min_u64(d->current_kib, MB_KIB_MAX);
    n++;
  }
  plan->n = n;
  plan->nsteps = 0;
  plan->host = in->host;
  if (plan->host.nr_nodes > MB_MAX_NODES)
    plan->host.nr_nodes = 0;
  plan->host.reserve_kib = reserve_of(cfg, in, dom0_kib, guests_kib);
  plan->pool_kib = plan->host.total_kib - plan->host.reserve_kib;

  if (mb_policy_compute(&cfg->policy, &st->policy, &plan->host, plan->doms, n,
                        plan->dec) != 0)
    return -1;
  st->rounds++;

  /* The envelope promises conservation; check it before anything moves. */
  uint64_t sum = 0, floors = 0;
  bool all_at_floor = true;
  for (size_t i = 0; i < n; i++) {
    sum += plan->dec[i].target_kib;
    floors += plan->dec[i].floor_kib;
    if (plan->dec[i].target_kib > plan->dec[i].floor_kib)
      all_at_floor = false;
  }
  plan->sum_kib = sum;
  plan->floors_kib = floors;
  plan->audit = sum <= plan->pool_kib ? MB_ROUND_SUM_OK
                : all_at_floor        ? MB_ROUND_FLOORS_OVER_POOL
                                      : MB_ROUND_SUM_BUG;
  if (plan->audit == MB_ROUND_SUM_BUG)
    return 0;

  /* Shrinks first so that the memory they free is there for the grows. */
  plan->fixed_kib = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      uint64_t from = plan->doms[i].target_kib, to = plan->dec[i].target_kib;
      bool shrink = to < from;
      if (to == from) {
        if (pass == 0)
          plan->fixed_kib += accounted(plan, i, from);
        continue;
      }
      if ((pass == 0) != shrink)
        continue;
      mb_round_step_t *s = &plan->steps[plan->nsteps++];
      memset(s, 0, sizeof(*s));
      s->dom = i;
      s->shrink = shrink;
      s->from_kib = from;
      s->want_kib = to;
      s->to_kib = to;
    }
  }
  hold_grows(plan);
  return 0;
}

void mb_round_step_done(mb_round_plan_t *plan, size_t k, bool ok) {
  if (plan == NULL || k >= plan->nsteps)
    return;
  mb_round_step_t *s = &plan->steps[k];
  if (s->done || s->failed)
    return;
  if (ok)
    s->done = true;
  else
    s->failed = true;
  plan->dec[s->dom].target_kib = ok ? s->to_kib : s->from_kib;
  hold_grows(plan);
}

uint64_t mb_round_sum_in_force(const mb_round_plan_t *plan) {
  uint64_t sum = 0;
  if (plan == NULL)
    return 0;
  for (size_t i = 0; i < plan->n; i++)
    sum += plan->dec[i].target_kib;
  return sum;
}
