/*
 * The round module (round.h): clamps, reserve, mb_policy_compute(), sum
 * audit and the actuation plan. What the membal plugin's round did, as a
 * pure function of its inputs and of the state of earlier rounds.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy_impl.h"
#include "round.h"

/* decision.priv.flags after mb_policy_compute, for the round's own use */
#define MB_RF_STUCK 0x1u

#define MB_ROUND_RESERVE_SLACK_KIB (64 * 1024)
#define MB_ROUND_STUCK_AFTER_S 10.0
#define MB_ROUND_GRANT_MAX_KIB (512 * 1024)
#define MB_ROUND_GRANT_WINDOW_S 60.0
#define MB_ROUND_HOLD_S 45.0
/* Surge record: a peak is remembered with this half-life, so a guest that
 * surges every few minutes keeps most of its headroom between surges and
 * one that surged once an hour ago has little left. */
#define MB_ROUND_SURGE_HALF_LIFE_S 600.0
/* Balloon progress below this is no progress (the dead band, if larger). */
#define MB_ROUND_STUCK_SLACK_KIB 1024

/* History of one domain. */
struct mb_round_dom {
  bool used, seen;
  uint32_t domid;
  char name[MB_NAME_LEN];
  /* balloon progress: current_kib when it last moved toward its target */
  uint64_t mark_kib;
  double mark_s;
  /* emergency grants in the window that started at grant_start_s */
  double grant_start_s;
  uint64_t granted_kib;
  /* hold: not shrunk below held_kib before hold_until_s */
  double hold_until_s;
  uint64_t held_kib;
  /* last growth toward its CMA; toggling (CMA growth held) until */
  double grown_s, toggling_until_s;
  /* surge record (cagma): the recent peak of the CMA, decaying toward
   * the CMA; learn_s the round it was last updated (< 0: never) */
  double peak_kib, learn_s;
  /* ramp age (cagma's forecast): the sample last seen (seq) and the round
   * time it was first seen; ramp_start_s when the growth began (the time
   * of the sample before the first that grew), valid while ramping */
  uint64_t sample_seq;
  double sample_s, ramp_start_s;
  bool ramping;
};

void mb_round_config_default(mb_round_config_t *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof(*cfg));
  mb_config_default(&cfg->policy);
  cfg->reserve_auto = true;
  cfg->reserve_slack_kib = MB_ROUND_RESERVE_SLACK_KIB;
  cfg->stuck_after_s = MB_ROUND_STUCK_AFTER_S;
  cfg->grant_max_kib = MB_ROUND_GRANT_MAX_KIB;
  cfg->grant_window_s = MB_ROUND_GRANT_WINDOW_S;
  cfg->hold_s = MB_ROUND_HOLD_S;
  cfg->surge_half_life_s = MB_ROUND_SURGE_HALF_LIFE_S;
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
  if (!(cfg->stuck_after_s >= 0 && cfg->stuck_after_s <= 86400))
    return mb_fail(err, errlen, "StuckAfter must be in [0,86400] s (got %g)",
                   cfg->stuck_after_s);
  if (cfg->grant_max_kib > MB_KIB_MAX)
    return mb_fail(err, errlen, "EmergencyGrant must be <= %llu KiB",
                   (unsigned long long)MB_KIB_MAX);
  if (!(cfg->grant_window_s > 0 && cfg->grant_window_s <= 86400))
    return mb_fail(err, errlen,
                   "EmergencyWindow must be in (0,86400] s (got %g)",
                   cfg->grant_window_s);
  if (!(cfg->hold_s >= 0 && cfg->hold_s <= 86400))
    return mb_fail(err, errlen, "GrantHold must be in [0,86400] s (got %g)",
                   cfg->hold_s);
  if (!(cfg->surge_half_life_s >= 0 && cfg->surge_half_life_s <= 86400))
    return mb_fail(err, errlen, "SurgeHalfLife must be in [0,86400] s (got %g)",
                   cfg->surge_half_life_s);
  return 0;
}

int mb_round_state_init(mb_round_state_t *st, const mb_round_config_t *cfg,
                        size_t cap_domains) {
  if (st == NULL || mb_round_config_validate(cfg, NULL, 0) != 0)
    return -1;
  memset(st, 0, sizeof(*st));
  mb_state_init(&st->policy, &cfg->policy);
  if (cap_domains > 0) {
    st->dom = calloc(cap_domains, sizeof(*st->dom));
    if (st->dom == NULL)
      return -1;
    st->cap = cap_domains;
  }
  return 0;
}

void mb_round_state_dispose(mb_round_state_t *st) {
  if (st == NULL)
    return;
  free(st->dom);
  memset(st, 0, sizeof(*st));
}

/* The history of a guest (same domid and name: a re-created domain starts
 * afresh), created on first sight; NULL when the table is full. */
static struct mb_round_dom *history(mb_round_state_t *st,
                                    const mb_domain_t *d) {
  struct mb_round_dom *free_slot = NULL;
  for (size_t i = 0; i < st->cap; i++) {
    struct mb_round_dom *h = &st->dom[i];
    if (!h->used) {
      if (free_slot == NULL)
        free_slot = h;
      continue;
    }
    if (h->domid == d->domid && strncmp(h->name, d->name, MB_NAME_LEN) == 0)
      return h;
  }
  if (free_slot == NULL)
    return NULL;
  memset(free_slot, 0, sizeof(*free_slot));
  free_slot->used = true;
  free_slot->domid = d->domid;
  memcpy(free_slot->name, d->name, MB_NAME_LEN);
  free_slot->name[MB_NAME_LEN - 1] = '\0';
  free_slot->mark_kib = d->current_kib;
  free_slot->mark_s = -1; /* first sight: see below */
  free_slot->learn_s = -1;
  return free_slot;
}

/* Stuck balloon: above its target in force and not closer by the slack
 * for stuck_after_s. Updates the progress mark. */
static bool balloon_stuck(const mb_round_config_t *cfg, double now,
                          struct mb_round_dom *h, const mb_domain_t *d) {
  uint64_t slack =
      mb_max_u64(cfg->policy.deadband_kib, MB_ROUND_STUCK_SLACK_KIB);
  uint64_t cur = d->current_kib, t = d->target_kib;
  if (h == NULL)
    return false;
  if (h->mark_s < 0 || cur <= t + slack || cur + slack <= h->mark_kib ||
      cur > h->mark_kib || now < h->mark_s) {
    /* first sight, at its target, moving toward it, or pushed further
     * away (a new, larger size): progress now */
    h->mark_kib = cur;
    h->mark_s = now;
    return false;
  }
  return now - h->mark_s >= cfg->stuck_after_s;
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

/* The guests of the input (dom0 and domains being built left out) into
 * plan->doms, clamped. Returns their number; *dom0_kib and *guests_kib
 * what dom0 and the guests hold. */
static size_t fill_guests(const mb_round_config_t *cfg,
                          const mb_round_input_t *in, mb_round_plan_t *plan,
                          uint64_t *dom0_kib, uint64_t *guests_kib) {
  size_t n = 0;
  *dom0_kib = 0;
  *guests_kib = 0;
  for (size_t i = 0; i < in->n; i++) {
    const mb_domain_t *d = &in->doms[i];
    if (d->domid == 0) {
      *dom0_kib = mb_min_u64(d->current_kib, MB_KIB_MAX);
      continue;
    }
    /* Being built (round.h): a target set now would fight the toolstack's
     * (real Xen: membal set the Min of a 256 MiB guest xl was building). */
    if (d->current_kib == 0)
      continue;
    clamp_domain(cfg, d, &plan->doms[n]);
    *guests_kib += mb_min_u64(d->current_kib, MB_KIB_MAX);
    n++;
  }
  return n;
}

static bool hold_active(const mb_round_config_t *cfg,
                        const struct mb_round_dom *h, double now) {
  return h != NULL && cfg->hold_s > 0 && now < h->hold_until_s &&
         h->held_kib > 0;
}

/* cagma's emergency signal on a fresh sample. */
static bool under_pressure(const mb_round_config_t *cfg, const mb_domain_t *d) {
  return cfg->policy.kind == MB_POLICY_CAGMA && d->has_sample &&
         mb_est_pressure(&cfg->policy, d);
}

/* Raises the floor of every held guest to what it was given (never above
 * what it holds nor its maximum), and of every guest under pressure to its
 * target in force. Returns whether any floor was raised (the holds_hurt
 * check then releases them all). */
static bool apply_holds(const mb_round_config_t *cfg, mb_round_state_t *st,
                        mb_round_plan_t *plan, double now) {
  bool any = false;
  for (size_t i = 0; i < plan->n; i++) {
    mb_domain_t *d = &plan->doms[i];
    struct mb_round_dom *h = history(st, d);
    uint64_t keep = 0;
    if (hold_active(cfg, h, now))
      keep = mb_min_u64(h->held_kib, d->current_kib);
    /* A guest under pressure keeps the target in force: its balloon is on
     * its way there, and what it asks is counted from what it holds (real
     * Xen under load: an urgent round gave busy 1024 MiB, the next one,
     * 4 s later, cut it to 624 MiB: the balloon had reached 553). */
    if (under_pressure(cfg, d))
      keep = mb_max_u64(keep, d->target_kib);
    if (d->max_kib != 0)
      keep = mb_min_u64(keep, d->max_kib);
    if (keep > d->min_kib) {
      d->min_kib = keep;
      any = true;
    }
  }
  return any;
}

/* The holds keep memory the pool needs: a fresh guest is cut by the pool
 * below its CMA or emergency ask (the holds keep memory it is guaranteed),
 * or the floors with the holds exceed the pool (a reservation or a larger
 * Reserve took the room the holds kept: a hold is a preference, the pool
 * is not). A held guest counts too: its hold keeps only what it was given,
 * so when it asks for more (a second storm, a donor's regrowth) and the
 * pool cuts it, the other guests' holds are what stands in its way.
 * Skipping held guests here left two guests holding each other: the one
 * whose demand had just fallen kept its memory for hold_s while the other,
 * held from an earlier grant, swapped at the disk's pace with its ask cut
 * (membal-bench dacapo: 25 s at 5000 pages/s). */
static bool holds_hurt(const mb_round_plan_t *plan) {
  uint64_t sum = 0;
  for (size_t i = 0; i < plan->n; i++)
    sum += plan->dec[i].target_kib;
  if (sum > plan->pool_kib)
    return true;
  for (size_t i = 0; i < plan->n; i++) {
    const mb_decision_t *o = &plan->dec[i];
    /* a stale guest shrunk to make room for raised floors (a guest under
     * pressure whose balloon never reaches its target keeps a floor there:
     * it may hurt itself, never its neighbours) */
    if (o->stale) {
      if (o->target_kib < o->from_kib)
        return true;
      continue;
    }
    uint64_t ask =
        o->emergency ? mb_max_u64(o->cma_kib, o->want_kib) : o->cma_kib;
    if (o->reason == MB_R_POOL_LIMIT && o->target_kib < ask)
      return true;
  }
  return false;
}

static void release_holds(mb_round_state_t *st, const mb_round_plan_t *plan) {
  for (size_t i = 0; i < plan->n; i++) {
    struct mb_round_dom *h = history(st, &plan->doms[i]);
    if (h != NULL) {
      h->hold_until_s = 0;
      h->held_kib = 0;
    }
  }
}

/* Emergency grants: a guest under pressure (cagma's emergency signal)
 * may grow this round by what is left of its grant in the window, so it
 * asks (and makes donors give) no more than that. Returns nothing; sets
 * the domain's maximum for this round. */
static void limit_grants(const mb_round_config_t *cfg, mb_round_state_t *st,
                         mb_round_plan_t *plan, double now) {
  /* emergencies are cagma's; tax and selfballoon grow by their own rule */
  if (cfg->grant_max_kib == 0 || cfg->policy.kind != MB_POLICY_CAGMA)
    return;
  for (size_t i = 0; i < plan->n; i++) {
    mb_domain_t *d = &plan->doms[i];
    struct mb_round_dom *h = history(st, d);
    if (h == NULL || !d->has_sample || !mb_est_pressure(&cfg->policy, d))
      continue;
    if (!(now >= h->grant_start_s &&
          now - h->grant_start_s < cfg->grant_window_s)) {
      h->grant_start_s = now;
      h->granted_kib = 0;
    }
    /* growth up to the CMA is the guarantee, not a grant; a target in
     * force was counted when it was granted */
    uint64_t base = mb_max_u64(
        mb_max_u64(mb_min_u64(d->current_kib, MB_KIB_MAX), d->target_kib),
        mb_cagma_cma_kib(&cfg->policy, d));
    uint64_t cap = base + mb_sub_sat(cfg->grant_max_kib, h->granted_kib);
    if (d->max_kib == 0 || cap < d->max_kib)
      d->max_kib = cap;
  }
}

/* What the guests under pressure were granted this round. */
static void count_grants(const mb_round_config_t *cfg, mb_round_state_t *st,
                         const mb_round_plan_t *plan) {
  if (cfg->grant_max_kib == 0 || cfg->policy.kind != MB_POLICY_CAGMA)
    return;
  for (size_t i = 0; i < plan->n; i++) {
    const mb_domain_t *d = &plan->doms[i];
    struct mb_round_dom *h = history(st, d);
    const mb_decision_t *o = &plan->dec[i];
    if (h != NULL && d->has_sample && mb_est_pressure(&cfg->policy, d))
      h->granted_kib += mb_sub_sat(
          o->target_kib,
          mb_max_u64(mb_max_u64(o->from_kib, d->target_kib), o->cma_kib));
  }
}

/* A guest grown toward its guarantee (emergency, or a CMA above what it
 * holds) is held at what it was given toward its ask. A held guest that
 * asks again for what it is held at (its CMA or emergency ask within the
 * dead band of it, or above) keeps its hold, raised to what it holds and
 * asks for: a guest toggling its demand keeps the memory of its high
 * phase instead of taking it from every other guest at each toggle. */
static void update_holds(const mb_round_config_t *cfg, mb_round_state_t *st,
                         const mb_round_plan_t *plan, double now) {
  if (cfg->hold_s <= 0)
    return;
  uint64_t band = cfg->policy.deadband_kib;
  for (size_t i = 0; i < plan->n; i++) {
    const mb_decision_t *o = &plan->dec[i];
    struct mb_round_dom *h = history(st, &plan->doms[i]);
    if (h == NULL || o->stale)
      continue;
    bool active = hold_active(cfg, h, now);
    uint64_t ask =
        o->emergency ? mb_max_u64(o->cma_kib, o->want_kib) : o->cma_kib;
    bool grown_cma =
        o->target_kib > o->from_kib + band && o->cma_kib > o->from_kib + band;
    bool grown = o->target_kib > o->from_kib + band &&
                 (o->emergency || (grown_cma && now < h->toggling_until_s));
    /* Toggling: given memory toward its CMA, shrunk within hold_s, and
     * asking again within hold_s of that. Only then is CMA growth held
     * (emergency grants always are): a guest whose demand rises and falls
     * once is not held, so its memory is at once every other guest's
     * cushion again. */
    if (grown_cma)
      h->grown_s = now;
    if (o->target_kib + band < o->from_kib && h->grown_s > 0 &&
        now - h->grown_s <= cfg->hold_s)
      h->toggling_until_s = now + cfg->hold_s;
    /* held: what it holds (or was just given) that it asks for; a surplus
     * share is not held */
    uint64_t given = mb_min_u64(ask, mb_max_u64(o->from_kib, o->target_kib));
    if (grown || (active && ask + band >= h->held_kib)) {
      h->held_kib = active ? mb_max_u64(h->held_kib, given) : given;
      h->hold_until_s = now + cfg->hold_s;
    }
  }
}

/* Surge headroom (cagma): a guest whose CMA was higher lately is likely to
 * need that again (a batch job's next run, a JVM's next collection cycle, a
 * daily peak). Its record is its recent peak CMA: raised at once, decaying
 * toward the current CMA with a half-life; the headroom is what of that
 * peak its CMA does not hold now. Learned from the guest's own CMA only,
 * so a guest that lies about its figures gets headroom out of the surplus,
 * never out of another guest's CMA (cagma shares the surplus to headrooms
 * first). */
static uint64_t headroom_of(const struct mb_round_dom *h, uint64_t cma_kib) {
  if (h == NULL || h->learn_s < 0)
    return 0;
  double room = h->peak_kib - (double)cma_kib;
  return room >= 1.0 && room < (double)MB_KIB_MAX ? (uint64_t)room : 0;
}

static void set_headrooms(const mb_round_config_t *cfg, mb_round_state_t *st,
                          mb_round_plan_t *plan) {
  for (size_t i = 0; i < plan->n; i++) {
    mb_domain_t *d = &plan->doms[i];
    d->headroom_kib = 0;
    if (cfg->policy.kind != MB_POLICY_CAGMA || !d->has_sample ||
        cfg->surge_half_life_s <= 0)
      continue;
    d->headroom_kib =
        headroom_of(history(st, d), mb_cagma_cma_kib(&cfg->policy, d));
  }
}

/* Ramp ages (mb_domain_t.ramp_s). A new sample (its seq advanced) that
 * shows the anonymous memory growing starts a ramp at the time the
 * previous sample was seen, or continues one; any other new sample ends
 * it. Between samples the age keeps counting: the ramp is that old by now.
 * Without a sequence number, or before a previous sample was seen, the
 * age is unknown (0). Idempotent within a round. */
static void set_ramps(const mb_round_config_t *cfg, mb_round_state_t *st,
                      mb_round_plan_t *plan, double now) {
  for (size_t i = 0; i < plan->n; i++) {
    mb_domain_t *d = &plan->doms[i];
    d->ramp_s = 0;
    if (cfg->policy.kind != MB_POLICY_CAGMA || !d->has_sample ||
        d->sample.seq == 0)
      continue;
    struct mb_round_dom *h = history(st, d);
    if (h == NULL)
      continue;
    if (d->sample.seq != h->sample_seq) {
      bool grows = d->rates.growth_valid && d->rates.anon_growth_kibps > 0;
      if (!grows)
        h->ramping = false;
      else if (!h->ramping && h->sample_seq != 0) {
        h->ramping = true;
        h->ramp_start_s = h->sample_s;
      }
      h->sample_seq = d->sample.seq;
      h->sample_s = now;
    }
    if (h->ramping && now > h->ramp_start_s)
      d->ramp_s = now - h->ramp_start_s;
  }
}

/* Updates each fresh guest's surge record with the CMA of this round. */
static void learn_surges(const mb_round_config_t *cfg, mb_round_state_t *st,
                         const mb_round_plan_t *plan, double now) {
  if (cfg->policy.kind != MB_POLICY_CAGMA || cfg->surge_half_life_s <= 0)
    return;
  for (size_t i = 0; i < plan->n; i++) {
    const mb_decision_t *o = &plan->dec[i];
    struct mb_round_dom *h = history(st, &plan->doms[i]);
    if (h == NULL || o->stale)
      continue;
    double cma = (double)o->cma_kib;
    if (h->learn_s < 0 || now < h->learn_s || cma >= h->peak_kib)
      h->peak_kib = cma;
    else
      h->peak_kib = cma + (h->peak_kib - cma) * exp2(-(now - h->learn_s) /
                                                     cfg->surge_half_life_s);
    h->learn_s = now;
  }
}

/* What a domain accounts for against the pool with target t in force: the
 * target (a balloon on its way will get there), or what it holds when its
 * balloon is stuck above it. */
static uint64_t accounted(bool stuck, uint64_t current_kib, uint64_t t) {
  return stuck ? mb_max_u64(current_kib, t) : t;
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
    used += accounted(s->stuck, s->current_kib, t);
  }
  uint64_t room = mb_sub_sat(plan->pool_kib, used);
  for (size_t k = 0; k < plan->nsteps; k++) {
    mb_round_step_t *s = &plan->steps[k];
    if (s->shrink || s->done || s->failed)
      continue;
    uint64_t before = accounted(s->stuck, s->current_kib, s->from_kib);
    uint64_t to = mb_min_u64(s->want_kib, before + room);
    to = mb_max_u64(to, s->from_kib);
    room -= mb_sub_sat(accounted(s->stuck, s->current_kib, to), before);
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
  n = fill_guests(cfg, in, plan, &dom0_kib, &guests_kib);
  plan->n = n;
  plan->nsteps = 0;
  plan->host = in->host;
  if (plan->host.nr_nodes > MB_MAX_NODES)
    plan->host.nr_nodes = 0;
  plan->host.reserve_kib = reserve_of(cfg, in, dom0_kib, guests_kib);
  plan->pool_kib = plan->host.total_kib - plan->host.reserve_kib;

  /* Every guest's history; domains gone from the list lose theirs. */
  for (size_t i = 0; i < st->cap; i++)
    st->dom[i].seen = false;
  for (size_t i = 0; i < n; i++) {
    struct mb_round_dom *h = history(st, &plan->doms[i]);
    if (h != NULL)
      h->seen = true;
  }
  for (size_t i = 0; i < st->cap; i++)
    if (!st->dom[i].seen)
      st->dom[i].used = false;

  /* Held guests: floor at what they were given. If that leaves another
   * guest below its CMA, every hold gives way and the round is computed
   * again without them (from the same policy state). */
  double now = in->now_s;
  mb_state_t policy_before = st->policy;
  limit_grants(cfg, st, plan, now);
  set_ramps(cfg, st, plan, now);
  set_headrooms(cfg, st, plan);
  bool held = apply_holds(cfg, st, plan, now);
  if (mb_policy_compute(&cfg->policy, &st->policy, &plan->host, plan->doms, n,
                        plan->dec) != 0)
    return -1;
  if (held && holds_hurt(plan)) {
    release_holds(st, plan);
    fill_guests(cfg, in, plan, &dom0_kib, &guests_kib);
    limit_grants(cfg, st, plan, now);
    set_ramps(cfg, st, plan, now);
    set_headrooms(cfg, st, plan);
    st->policy = policy_before;
    if (mb_policy_compute(&cfg->policy, &st->policy, &plan->host, plan->doms, n,
                          plan->dec) != 0)
      return -1;
  }
  st->rounds++;
  count_grants(cfg, st, plan);
  update_holds(cfg, st, plan, now);
  learn_surges(cfg, st, plan, now);

  /* Balloon progress. The policy's scratch flags are free for the round's
   * own once it has returned. */
  for (size_t i = 0; i < n; i++) {
    struct mb_round_dom *h = history(st, &plan->doms[i]);
    plan->dec[i].priv.flags = 0;
    if (h != NULL && balloon_stuck(cfg, now, h, &plan->doms[i]))
      plan->dec[i].priv.flags |= MB_RF_STUCK;
  }

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
      uint64_t cur = mb_min_u64(plan->doms[i].current_kib, MB_KIB_MAX);
      bool shrink = to < from;
      bool stuck = (plan->dec[i].priv.flags & MB_RF_STUCK) != 0;
      if (to == from) {
        if (pass == 0)
          plan->fixed_kib += accounted(stuck, cur, from);
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
      s->stuck = stuck;
      s->current_kib = cur;
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
