/*
 * membal round module: one balancing round, from the backend's domain list
 * to an actuation plan. Pure like the rest of policy/: no collectd, no I/O,
 * no globals, deterministic; the only allocation is in
 * mb_round_state_init(). All memory figures are KiB, times are seconds on
 * a clock of the caller's choice that never goes back (the plugin uses
 * collectd's, the simulator its simulated time).
 *
 * The membal plugin, the simulator's fast mode (sim/policies.c) and
 * membal-policy all call it, so the benchmark measures what ships.
 *
 * One round:
 *   1. the caller fills an mb_round_input_t: the backend's domain list
 *      (dom0, domid 0, included: the automatic reserve needs it), each
 *      guest's latest whole sample, the host's memory and the memory
 *      reserved for domains being built (pending_kib);
 *   2. mb_round_compute() applies the configured clamps (<Domain> Min, Max,
 *      Weight), computes the reserve and the pool, sets what each guest's
 *      history says (cagma: surge headroom, ramp age, emergency grants,
 *      holds), runs mb_policy_compute(), audits the sum and orders the
 *      actuation:
 *      shrinks first, then grows held to what the shrinks really free;
 *   3. the caller actuates plan->steps in order, reading steps[k].to_kib
 *      just before acting (an earlier failure may have lowered it), and
 *      reports each result with mb_round_step_done().
 */
#ifndef MEMBAL_ROUND_H
#define MEMBAL_ROUND_H

#include "membal_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A <Domain> block: applied to the guest of that name. */
typedef struct {
  char name[MB_NAME_LEN];
  uint64_t min_kib; /* 0 = policy's floor */
  uint64_t max_kib; /* 0 = hypervisor maximum */
  uint32_t weight;  /* 0 = 1 */
} mb_round_clamp_t;

typedef struct {
  mb_config_t policy;
  const mb_round_clamp_t *clamps; /* not owned; may be NULL if nclamps 0 */
  size_t nclamps;
  /* Reserve (memory never handed to guests). Automatic: what neither the
   * guests nor the hypervisor's free memory hold (dom0 and the
   * hypervisor's own), at least dom0's size, plus reserve_slack_kib.
   * Fixed: reserve_kib as configured. */
  bool reserve_auto;          /* default true */
  uint64_t reserve_kib;       /* fixed reserve; default 0 */
  uint64_t reserve_slack_kib; /* default 65536 (64 MiB) */
  /* A balloon above its target by more than the dead band (at least
   * 1 MiB) that has not come that much closer for stuck_after_s is stuck:
   * it is accounted at what it holds, so no grow is handed memory it
   * still holds (D4). Default 10 s: balloons move 30-60 MB/s, so ten
   * seconds without 8 MiB of progress is no slow balloon. */
  double stuck_after_s;
  /* Emergency grants are bounded per guest (policy cagma, whose
   * emergencies they are): a guest under pressure (cagma's emergency
   * signal: swapping, faulting or urgent while short of
   * memory) grows by at most grant_max_kib within grant_window_s, so a
   * guest faking a swap storm can neither take the host's memory in one
   * urgent round nor make every donor shrink at each of its storms.
   * Default 512 MiB per 60 s: a real storm's ask (10 s of its swap rate)
   * is a few hundred MiB, so the bound holds a faker back without cutting
   * an honest storm short (the simulator's scenarios: docs/simulator.md).
   * 0 = no bound. */
  uint64_t grant_max_kib;
  double grant_window_s;
  /* Holds. A guest given an emergency grant keeps what it was given
   * toward its ask for hold_s after it last asked for it, so a storm that
   * calms is not reversed while its donors regrow. A guest that toggles
   * (grown toward its CMA, shrunk within hold_s, asking again within
   * hold_s) is held the same way, so that it keeps the memory of its high
   * phase instead of moving every other balloon at each toggle (toggling
   * with a period up to hold_s; tests/policy/test_round.c measures it). A
   * guest whose demand rises and falls once is not held. Holds give way
   * whenever another guest would be left below its CMA or emergency ask.
   * Default 45 s: longer than the 40 s toggling seen on the real
   * pipeline. Holds cost some swap, since held memory is no other guest's
   * cushion (what they cost on the simulator's scenarios:
   * docs/simulator.md). 0 = no hold. */
  double hold_s;
  /* Surge headroom (policy cagma): each guest's recent peak CMA is
   * remembered, decaying toward its CMA with this half-life, and the
   * surplus goes first to the part of that peak its CMA does not hold now
   * (a guest that needed it lately is likely to again; never taken from
   * anyone's CMA). Default 600 s: a guest surging every few minutes keeps
   * most of it between surges, one that surged an hour ago has little.
   * 0 = no headroom. */
  double surge_half_life_s;
} mb_round_config_t;

/* Defaults above; policy = mb_config_default(). */
void mb_round_config_default(mb_round_config_t *cfg);
/* 0 if usable; else -1 with err naming the option. */
int mb_round_config_validate(const mb_round_config_t *cfg, char *err,
                             size_t errlen);

typedef struct {
  double now_s; /* time of the round */
  /* Host as the backend reports it: total_kib, free_kib, nr_nodes,
   * node_free_kib. reserve_kib is ignored (computed from the config). */
  mb_host_t host;
  /* Memory promised to domains being built or reserved by the operator:
   * counted against the pool like the reserve. */
  uint64_t pending_kib;
  /* The backend's domain list, dom0 (domid 0) included. Per entry:
   * domid, name, current_kib, target_kib (0 = unknown: taken as current),
   * max_kib (the hypervisor's maximum), node_mask, and the sample part
   * (has_sample, sample, rates, sample_age_s). min_kib and weight are
   * ignored: the clamps set them. A guest that holds nothing
   * (current_kib 0) is being built: xl and libvirt list a domain before
   * they populate it, and write its target before its memory and its
   * maximum exist. It is left out of the round (no decision, no step):
   * its room is the operator's reservation, or the free memory the
   * toolstack finds. */
  const mb_domain_t *doms;
  size_t n;
} mb_round_input_t;

typedef struct {
  size_t dom;        /* index into plan->doms / plan->dec */
  bool shrink;       /* shrinks come before every grow */
  uint64_t from_kib; /* target in force before the round */
  uint64_t want_kib; /* what the policy decided */
  uint64_t to_kib;   /* what to set: want_kib, or less for a grow held
                        back so that the targets in force fit the pool */
  bool done, failed; /* set by mb_round_step_done() */
  /* accounting: a stuck balloon counts what it holds (current_kib) */
  bool stuck;
  uint64_t current_kib;
} mb_round_step_t;

typedef enum {
  MB_ROUND_SUM_OK = 0,       /* sum of targets <= pool */
  MB_ROUND_FLOORS_OVER_POOL, /* the floors alone exceed the pool: every
                                target is its floor (configuration) */
  MB_ROUND_SUM_BUG           /* sum > pool otherwise: the envelope broke
                                its promise; nothing may be actuated */
} mb_round_audit_t;

/* The round's output. The caller provides the three arrays, cap entries
 * each (cap >= the number of guests in the input). */
typedef struct {
  mb_domain_t *doms;  /* guests (dom0 left out), clamps applied */
  mb_decision_t *dec; /* dec[i].target_kib: decided, then, as steps
                         are reported done, what is in force */
  mb_round_step_t *steps;
  size_t cap;
  /* filled by mb_round_compute */
  size_t n;            /* guests */
  size_t nsteps;       /* domains whose target changes: shrinks, then grows */
  mb_host_t host;      /* as given to the policy (reserve_kib computed) */
  uint64_t pool_kib;   /* total - reserve, reserve including pending */
  uint64_t sum_kib;    /* sum of decided targets */
  uint64_t floors_kib; /* sum of floors */
  mb_round_audit_t audit;
  /* accounting of the targets in force (step_done keeps it) */
  uint64_t fixed_kib; /* what the domains without a step account for */
} mb_round_plan_t;

/* State carried from round to round. */
struct mb_round_dom;
typedef struct {
  mb_state_t policy; /* AUTO tax rate, rounds computed */
  uint64_t rounds;   /* rounds planned */
  /* per-domain history (balloon progress, grants, holds); owned */
  struct mb_round_dom *dom;
  size_t cap;
} mb_round_state_t;

/* Returns 0, or -1 when cfg does not validate or memory is short.
 * cap_domains: the most guests a round will be given (the per-domain
 * history is that large; a guest beyond it has no history). */
int mb_round_state_init(mb_round_state_t *st, const mb_round_config_t *cfg,
                        size_t cap_domains);
void mb_round_state_dispose(mb_round_state_t *st);

/* One round. Returns 0 with *plan filled, or -1 when cfg does not
 * validate, an argument is NULL, or the guests exceed plan->cap (st and
 * plan->n untouched). With audit MB_ROUND_SUM_BUG the plan has no steps.
 * Guarantees (tests/policy/test_round.c, on random hosts):
 *   - every decided target within [floor, max] (mb_policy_compute's);
 *   - steps: every shrink before every grow, each domain at most once,
 *     from_kib the target in force, to_kib == want_kib for shrinks and
 *     from_kib <= to_kib <= want_kib for grows;
 *   - if every step is actuated as planned, the targets in force sum to at
 *     most the pool (unless the floors exceed it), a stuck balloon
 *     counted at what it holds;
 *   - a guest under pressure (emergency) grows by at most grant_max_kib
 *     per grant_window_s in total (its maximum is lowered for the round);
 *   - a held guest is not shrunk below what it was given, unless keeping
 *     it would leave another fresh guest below its CMA or emergency ask
 *     (then every hold is released);
 *   - nothing allocated, doms of the input and cfg not written. */
int mb_round_compute(const mb_round_config_t *cfg, mb_round_state_t *st,
                     const mb_round_input_t *in, mb_round_plan_t *plan);

/* Reports step k actuated (ok) or failed. A failed step keeps its
 * domain's former target in force; the grows not yet done are held again
 * so that the targets in force still fit the pool. Updates
 * plan->dec[steps[k].dom].target_kib to what is in force. */
void mb_round_step_done(mb_round_plan_t *plan, size_t k, bool ok);

/* Sum of the targets in force after the steps reported so far. */
uint64_t mb_round_sum_in_force(const mb_round_plan_t *plan);

#ifdef __cplusplus
}
#endif
#endif
