/*
 * membal policy core: the pure, deterministic part of membal.
 *
 * No I/O, no globals, no collectd/libxl/xenstore, and no allocation inside
 * mb_policy_compute(). Same input, same output. All memory figures are KiB.
 *
 * Flow of one round (the caller is the membal plugin, the simulator or a
 * test):
 *   1. fill an mb_host_t and one mb_domain_t per guest (dom0 excluded),
 *      including the latest parsed guest sample (mb_sample_t) and the rates
 *      derived from the previous sample (mb_sample_rates()); the sample,
 *      its record and its parsers are in membal_record.h;
 *   2. mb_policy_compute(cfg, state, host, doms, n, out) fills one
 *      mb_decision_t per domain: the new target and why;
 *   3. the caller actuates: shrinks first, grows second.
 *
 * Reason codes (mb_reason_t) say why a target is what it is; they are
 * recorded in RRD and logged on every change. See mb_reason_name().
 */
#ifndef MEMBAL_POLICY_H
#define MEMBAL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "membal_record.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_NAME_LEN 64
#define MB_MAX_NODES 16

/* The Xen balloon driver's minimum target for a domain of max_kib, as
 * xenballoond computed it (MiB arithmetic, pages = 4 KiB pages of maxmem):
 *   max < 125 MiB:  8 MiB + (pages >> 9) MiB
 *   max < 500 MiB:  40 MiB + (pages >> 10) MiB
 *   max < 2000 MiB: 104 MiB + (pages >> 11) MiB
 *   otherwise:      296 MiB + (pages >> 13) MiB
 * Never above max_kib. Used as the floor of a domain whose min_kib is 0. */
uint64_t mb_balloon_min_kib(uint64_t max_kib);

/* ---------------------------------------------------------------------- */
/* Host, domains, decisions                                               */
/* ---------------------------------------------------------------------- */

typedef struct {
  uint64_t total_kib;   /* physical memory of the host */
  uint64_t free_kib;    /* free in the hypervisor right now. Informational:
                           the policies budget with pool - sum of current
                           (free memory includes the reserve's slack) */
  uint64_t reserve_kib; /* dom0 + hypervisor + slack: never handed to guests.
                           Pool for guests = total_kib - reserve_kib. */
  unsigned nr_nodes;    /* 0 = NUMA unknown */
  uint64_t node_free_kib[MB_MAX_NODES];
} mb_host_t;

typedef struct {
  uint32_t domid;
  char name[MB_NAME_LEN];
  uint64_t current_kib; /* what the balloon actually holds now */
  uint64_t target_kib;  /* last target given (== current when unknown) */
  uint64_t min_kib;     /* configured floor (0 = policy's own floor) */
  uint64_t max_kib;     /* configured or hypervisor maximum */
  uint32_t weight;      /* shares; 0 is treated as 1 */
  uint32_t node_mask;   /* NUMA nodes the memory is bound to; 0 = any */
  bool has_sample;      /* false: never heard from the guest */
  mb_sample_t sample;   /* latest parsed guest sample */
  mb_rates_t rates;     /* from the previous sample */
  double sample_age_s;  /* seconds since the sample's seq last advanced */
  /* Surge headroom (cagma): memory the guest is likely to need soon beyond
   * its CMA, learned from its own history by the round module (round.h),
   * which overwrites whatever the caller put here. Surplus goes to it
   * first; it is never guaranteed (nobody is shrunk for it). 0 = none. */
  uint64_t headroom_kib;
  /* Ramp age (cagma's demand forecast): seconds the guest's anonymous
   * memory has been growing, counted from the sample before the first that
   * showed the growth; set by the round module from the sample history
   * (round.h), which overwrites whatever the caller put here. 0: unknown
   * (no history, or samples without a sequence number): the forecast then
   * extrapolates the whole ForecastHorizon. */
  double ramp_s;
} mb_domain_t;

typedef enum {
  MB_R_UNCHANGED = 0, /* target stays where it is */
  MB_R_GROW_PRESSURE, /* grown: guest needs more */
  MB_R_SHRINK_IDLE,   /* shrunk: guest holds idle memory */
  MB_R_CLAMPED_MIN,   /* policy wanted less than min */
  MB_R_CLAMPED_MAX,   /* policy wanted more than max */
  MB_R_STALE_FROZEN,  /* sample stale or missing: never shrunk */
  MB_R_EMERGENCY,     /* grown at once on swap activity (cagma) */
  MB_R_DEADBAND,      /* change smaller than the dead band: not made */
  MB_R_STEP_CAPPED,   /* change limited by the per-round step cap */
  MB_R_POOL_LIMIT,    /* growth limited by what the pool has left */
  MB_R_COUNT
} mb_reason_t;

const char *mb_reason_name(mb_reason_t r); /* "grow-pressure", ... */

typedef struct {
  uint64_t target_kib;
  mb_reason_t reason;
  uint64_t want_kib; /* what the policy asked before the envelope */
  uint64_t cma_kib;  /* cagma: critical memory amount; 0 otherwise */
  /* Diagnostics filled by mb_policy_compute (read-only for callers). */
  uint64_t floor_kib; /* floor the envelope enforced: min_kib, or when 0 the
                         balloon driver's minimum target (mb_balloon_min_kib),
                         never above max_kib */
  uint64_t from_kib;  /* size the domain was accounted at: current_kib */
  bool stale;         /* sample missing or older than stale_after_s */
  bool emergency;     /* cagma emergency allocation this round */
  /* Scratch space of mb_policy_compute, which must not allocate: one slot
   * per domain lives here. Callers neither read nor set it. */
  struct {
    double base, w;  /* water-filling: x = clamp(base + w*c, lo, hi) */
    uint64_t lo, hi; /* hard bounds of this round */
    uint64_t cap;    /* what the policy may ask: hi, or less when NUMA
                        nodes bound the domain's growth */
    uint32_t flags;
  } priv;
} mb_decision_t;

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

/* The policies (details, formulas, tunables and fallbacks in the file):
 *  - tax (policy/tax.c): Waldspurger's idle memory tax as xenmm solved it,
 *    x_i = tau * used_i + w_i * c water-filled into [floor_i, max_i] so
 *    that sum x_i = pool. Needs MemAvailable or MemFree (+Buffers+Cached).
 *  - cagma (policy/cagma.c): each guest guaranteed its critical memory
 *    amount (anon + shmem + active file + unreclaimable kernel + margin +
 *    a forecast of a ramping demand), grown at once on swap activity or
 *    on memory stall (PSI) of a guest short of memory or thrashing its
 *    page cache (emergency), surplus shared to each guest's surge headroom
 *    (headroom_kib) first, then by weight (only among guests in deficit
 *    while some are; a quiet donor then also gives its cold anon).
 *    Falls back to MemTotal - MemAvailable when there is no anon figure.
 *  - selfballoon (policy/selfballoon.c): xenballoond's target =
 *    Committed_AS, never below mb_balloon_min_kib, 1/DownHysteresis of the
 *    gap per round when shrinking, 1/UpHysteresis when growing. Falls back
 *    to MemTotal - MemAvailable without Committed_AS.
 * A domain whose sample is stale or missing is left where it is by every
 * policy. */
typedef enum {
  MB_POLICY_CAGMA = 0, /* default */
  MB_POLICY_TAX,
  MB_POLICY_SELFBALLOON,
  MB_POLICY_COUNT
} mb_policy_kind_t;

const char *mb_policy_name(mb_policy_kind_t k);
/* Returns 0 and sets *out, or -1 for an unknown name. */
int mb_policy_from_name(const char *name, mb_policy_kind_t *out);

typedef struct {
  mb_policy_kind_t kind;

  struct {
    double tau;    /* idle memory tax rate in [0,1]; default 0.75 */
    bool tau_auto; /* adapt tau every round from observed pressure */
  } tax;

  struct {
    double margin_frac;         /* CMA headroom as a fraction of the
                                   working set; default 0.10 */
    uint64_t margin_min_kib;    /* CMA headroom floor; default 32768 */
    double swap_threshold_pps;  /* pswpout pages/s, or pswpin+pswpout
                                   pages/s of a guest short of memory,
                                   that trigger an emergency allocation;
                                   default 64 */
    double majflt_threshold_ps; /* major faults/s of a guest short of
                                   memory that trigger one; default 256 */
    double forecast_s;          /* demand forecast horizon: the CMA adds
                                   anonymous-memory growth (KiB/s) x this
                                   many seconds while the guest grows by
                                   more than its margin per second; 0 =
                                   off; default 10 */
  } cagma;

  struct {
    unsigned up_hysteresis;   /* 1/up of the gap per round; default 1 */
    unsigned down_hysteresis; /* 1/down of the gap per round; default 10 */
  } selfballoon;

  /* Safety envelope, applied after every policy. */
  uint64_t step_cap_kib; /* max change per domain per round; 0 = none.
                            default 0; when set, at least deadband_kib
                            (mb_config_validate refuses less) */
  uint64_t deadband_kib; /* changes smaller than this are not made;
                            default 8192 */
  double stale_after_s;  /* sample older than this is stale; default 30 */
} mb_config_t;

/* The policy's options (policy/options.c): the one table membal's config
 * and membal-policy read them through. */
typedef enum {
  MB_OPT_POLICY,   /* a policy name */
  MB_OPT_TAXRATE,  /* a number, or "auto" */
  MB_OPT_NUMBER,   /* double */
  MB_OPT_UNSIGNED, /* unsigned, a whole number */
  MB_OPT_SIZE      /* uint64_t KiB, as mb_size_parse() reads it */
} mb_option_kind_t;

typedef struct {
  const char *name; /* as in the config: "CmaMarginMin" */
  mb_option_kind_t kind;
  const char *unit, *def, *doc; /* for documentation */
  size_t off;                   /* where in mb_config_t */
} mb_option_t;

/* The table and its length. */
size_t mb_options(const mb_option_t **table);
/* The option of that name (any case); NULL when it is none of the policy's. */
const mb_option_t *mb_option_find(const char *name);
/* Sets option name from its value as written in a config ("512MiB", "0.1",
 * "auto", "cagma"). 0; 1 when name is not a policy option; -1 with err
 * naming the option when the value is not of its kind (ranges are
 * mb_config_validate()'s). */
int mb_option_set(mb_config_t *cfg, const char *name, const char *value,
                  char *err, size_t errlen);

/* A size as the operator writes it (config, membal-policy, the membal
 * command): decimal KiB, or with a binary unit K/KiB, M/MiB, G/GiB (any
 * case): "524288", "512MiB", "2G". 0, or -1 with err saying what was wrong
 * ("\"x\" is not a size, e.g. \"512MiB\"", "unknown unit ...", "... is too
 * large": at most UINT64_MAX / 1024 KiB). */
int mb_size_parse(const char *s, uint64_t *kib, char *err, size_t errlen);

/* Fills *cfg with the documented defaults. */
void mb_config_default(mb_config_t *cfg);
/* 0 if usable; else -1 with err naming the option (e.g. "DownHysteresis
 * must be >= 1"). Every entry point refuses a config that fails this. */
int mb_config_validate(const mb_config_t *cfg, char *err, size_t errlen);

/* State a policy carries from round to round (AUTO tax rate, ...).
 * Zero-initialise with mb_state_init(). */
typedef struct {
  double tau;      /* tax rate in force after the last round */
  uint64_t rounds; /* rounds computed */
} mb_state_t;

void mb_state_init(mb_state_t *st, const mb_config_t *cfg);

/* One decision round. doms[i] and out[i] correspond. n may be 0 (doms and
 * out may then be NULL). st may be NULL (no AUTO adaptation, no counting).
 *
 * Definitions: pool = host->total_kib - host->reserve_kib (0 if negative);
 * hi_i = min(max_kib, MB_KIB_MAX); floor_i = min(min_kib, or when 0
 * mb_balloon_min_kib(hi_i), hi_i); from_i = min(current_kib, MB_KIB_MAX):
 * every domain is accounted at what its balloon holds, never at the target
 * it was last given (a balloon that did not reach its target is accounted
 * at current_kib); stale_i = !has_sample, or sample_age_s not in
 * [0, stale_after_s] (NaN counts as stale).
 *
 * Guarantees (the envelope, checked by tests/policy/test_invariants.c on
 * random hosts):
 *   - floor_i <= out[i].target_kib <= hi_i;
 *   - if sum floor_i > pool: every target is its floor (nothing else is
 *     safe); otherwise sum of targets <= pool (conservation);
 *   - a stale domain gets no target below min(from_i, hi_i), unless the
 *     fresh domains' floors plus what the stale ones hold exceed the pool
 *     (then the pool wins: reason MB_R_POOL_LIMIT);
 *   - a change smaller than deadband_kib is not made, and one larger than
 *     step_cap_kib is cut to it, unless the floor/max force it, the pool
 *     cut it (MB_R_POOL_LIMIT), or it is a cagma emergency growth (not
 *     step-capped);
 *   - with host->nr_nodes > 0, a domain whose node_mask names some of the
 *     host's nodes grows (above max(from, floor)) at most by what those
 *     nodes have free (node_free_kib), shared among such domains;
 *   - deterministic: same input, same output; doms and host are not
 *     written; nothing is allocated; O(N) work with a constant of about
 *     130 passes (water-filling bisection), no sort.
 * out[i].reason is the last rule that set the target: the policy's own
 * (unchanged, grow-pressure, shrink-idle, emergency) unless the envelope
 * changed it (clamped-min/max, stale-frozen, deadband, step-capped,
 * pool-limit).
 * Returns 0, or -1 when cfg does not validate, host is NULL, or n > 0 with
 * doms or out NULL (out and st untouched). */
int mb_policy_compute(const mb_config_t *cfg, mb_state_t *st,
                      const mb_host_t *host, const mb_domain_t *doms, size_t n,
                      mb_decision_t *out);

#ifdef __cplusplus
}
#endif
#endif
