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
 *      derived from the previous sample (mb_sample_rates());
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

#ifdef __cplusplus
extern "C" {
#endif

#define MB_NAME_LEN 64
#define MB_MAX_NODES 16

/* xenstore limits a node's value to 2048 bytes; records stay below it. */
#define MB_RECORD_MAX 2048

/* ---------------------------------------------------------------------- */
/* Guest sample                                                           */
/* ---------------------------------------------------------------------- */

/* Fields of a guest sample. meminfo fields are KiB, vmstat fields are
 * monotonically increasing event counts, PSI fields are what
 * /proc/pressure/memory says (mb_field_kind() tells which unit). The record
 * key of a meminfo or vmstat field is the kernel's own name, of a PSI field
 * "psi_<some|full>_<avg10_bp|total_us>" (mb_field_key()). Every field is
 * optional: a KVM guest seen through virtio-balloon stats has no
 * Committed_AS nor Active split, a kernel before 4.20 no PSI, one before 5.9
 * only the single workingset_refault counter (file pages: anon refaults
 * were not tracked). */
typedef enum {
  /* /proc/meminfo (KiB) */
  MB_F_MEMTOTAL,
  MB_F_MEMFREE,
  MB_F_MEMAVAILABLE,
  MB_F_BUFFERS,
  MB_F_CACHED,
  MB_F_SWAPCACHED,
  MB_F_ACTIVE,
  MB_F_INACTIVE,
  MB_F_ACTIVE_ANON,
  MB_F_INACTIVE_ANON,
  MB_F_ACTIVE_FILE,
  MB_F_INACTIVE_FILE,
  MB_F_SWAPTOTAL,
  MB_F_SWAPFREE,
  MB_F_DIRTY,
  MB_F_ANONPAGES,
  MB_F_SHMEM,
  MB_F_SLAB,
  MB_F_SRECLAIMABLE,
  MB_F_SUNRECLAIM,
  MB_F_KERNELSTACK,
  MB_F_PAGETABLES,
  MB_F_COMMITTED_AS,
  /* /proc/vmstat (counts) */
  MB_F_PSWPIN,
  MB_F_PSWPOUT,
  MB_F_PGMAJFAULT,
  MB_F_PGFAULT,
  MB_F_WORKINGSET_REFAULT_ANON, /* >= 5.9 */
  MB_F_WORKINGSET_REFAULT_FILE, /* >= 5.9 */
  MB_F_WORKINGSET_REFAULT,      /* < 5.9: file refaults */
  /* /proc/pressure/memory (>= 4.20): avg10 in basis points (1/100 of a
   * percent, the kernel prints 2 decimals: "12.34" is 1234), total in
   * microseconds of stall since boot (a counter). "some": at least one task
   * stalled on memory; "full": all non-idle tasks did at once. */
  MB_F_PSI_SOME_AVG10,
  MB_F_PSI_SOME_TOTAL,
  MB_F_PSI_FULL_AVG10,
  MB_F_PSI_FULL_TOTAL,
  MB_F_COUNT
} mb_field_t;

#define MB_F_FIRST_VMSTAT MB_F_PSWPIN
#define MB_F_FIRST_PSI MB_F_PSI_SOME_AVG10

/* Unit of a field's value, for whoever dispatches or reads it back. */
typedef enum {
  MB_FK_KIB,   /* meminfo: KiB, a level */
  MB_FK_COUNT, /* vmstat: events since boot, a counter */
  MB_FK_BP,    /* PSI avg10: basis points (0..10000), a level */
  MB_FK_US,    /* PSI total: microseconds since boot, a counter */
} mb_field_kind_t;

/* Kind of field f; MB_FK_COUNT when out of range. */
mb_field_kind_t mb_field_kind(mb_field_t f);

/* Largest PSI avg10 (100.00 %). */
#define MB_PSI_BP_MAX 10000

typedef struct {
  uint64_t v[MB_F_COUNT];
  uint64_t have;      /* bit (1 << field) set when v[field] is present */
  uint64_t seq;       /* guest's record sequence number; 0 = none */
  uint64_t uptime_ms; /* guest uptime when the record was written */
  bool urgent;        /* guest saw memory stall (PSI trigger) or swap
                         activity and published early */
} mb_sample_t;

static inline bool mb_sample_has(const mb_sample_t *s, mb_field_t f) {
  return (s->have >> f) & 1u;
}

/* Kernel key of a field ("MemTotal", "pswpin", ...); NULL if out of range. */
const char *mb_field_key(mb_field_t f);
/* Field of a kernel key, or -1 when the key is not one of mb_field_t. */
int mb_field_from_key(const char *key, size_t keylen);

/* Largest KiB figure a sample or a domain may carry (4 PiB). Larger values
 * are absurd and rejected by the parsers; it also keeps every sum of
 * figures far from uint64_t overflow. */
#define MB_KIB_MAX (UINT64_C(1) << 42)

/* The Xen balloon driver's minimum target for a domain of max_kib, as
 * xenballoond computed it (MiB arithmetic, pages = 4 KiB pages of maxmem):
 *   max < 125 MiB:  8 MiB + (pages >> 9) MiB
 *   max < 500 MiB:  40 MiB + (pages >> 10) MiB
 *   max < 2000 MiB: 104 MiB + (pages >> 11) MiB
 *   otherwise:      296 MiB + (pages >> 13) MiB
 * Never above max_kib. Used as the floor of a domain whose min_kib is 0. */
uint64_t mb_balloon_min_kib(uint64_t max_kib);

/* Rates derived from two successive samples of one guest. */
typedef struct {
  double swapin_pps;  /* pswpin pages per second */
  double swapout_pps; /* pswpout pages per second */
  double majflt_ps;   /* major faults per second */
  bool valid;         /* false when no previous sample, counter went back
                         (guest rebooted) or dt <= 0 */
  /* Growth of the guest's anonymous memory wherever it sits, resident or
   * swapped: d(AnonPages + SwapTotal - SwapFree)/dt in KiB/s, negative when
   * it shrinks. Set on its own (a sample without vmstat still has it);
   * cagma's demand forecast. */
  double anon_growth_kibps;
  bool growth_valid; /* false without both samples' AnonPages (or the
                        anon split) and swap figures, on reboot, dt <= 0 */
  /* Share of time in [0,1] some (full) task stalled on memory between the
   * two samples: delta of psi_*_total_us over the elapsed time. The guest's
   * own clock (uptime_ms delta) is used when both samples carry it, since
   * the stall time is measured on it; else dt_s. Clamped to [0,1] (a guest
   * cannot stall more than all the time; a hostile one gains nothing).
   * full_stall_share is 0 when the samples lack the full line. */
  double some_stall_share;
  double full_stall_share;
  bool stall_valid; /* false without psi_some_total_us in both samples, on
                       reboot, counter gone back or no elapsed time */
  /* Workingset refaults per second: pages evicted and read back soon
   * after, the thrash that MemAvailable does not show. File refaults come
   * from workingset_refault_file, or workingset_refault before 5.9. */
  double refault_anon_ps; /* 0 before 5.9 (not counted then) */
  double refault_file_ps;
  bool refault_valid; /* false without a refault counter in both samples,
                         on reboot, counter gone back or dt <= 0 */
} mb_rates_t;

void mb_sample_rates(const mb_sample_t *prev, const mb_sample_t *cur,
                     double dt_s, mb_rates_t *out);

/* ---------------------------------------------------------------------- */
/* Parsers and the xenstore record (untrusted input)                       */
/* ---------------------------------------------------------------------- */

/* Error text is written to err (NUL-terminated, may be truncated; err may
 * be NULL) and names the offending line or key. Return 0 on success, -1 on
 * rejected input; on rejection *out is left with have == 0. text need not
 * be NUL-terminated: exactly len bytes are read; a final line without '\n'
 * is fine, an embedded NUL or an empty line is not.
 * Unknown keys are ignored, but their lines must still be well-formed.
 * Rejected: duplicated keys (known or unknown), malformed lines, overflow,
 * negative or non-decimal numbers (no sign, no hex, no exponent, no NaN), a
 * known meminfo field without its "kB" unit, a KiB figure above MB_KIB_MAX, and
 * inconsistent values: a RAM figure (MemFree, MemAvailable, Cached, ...)
 * above MemTotal, MemTotal 0, SwapFree > SwapTotal, SReclaimable +
 * SUnreclaim > Slab + MB_SLAB_SLACK_KIB. Committed_AS may exceed MemTotal
 * (overcommit). */
int mb_meminfo_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                     size_t errlen);
/* Slack of the Slab rule above: one 4 KiB page. Kernels before 5.9 read
 * the slab counters once for Slab and again for each of its parts, so a
 * slab cache that grows while /proc/meminfo is printed can show the parts
 * a page above the total; a real guest must not be rejected for that. */
#define MB_SLAB_SLACK_KIB 4
/* Adds the vmstat fields to *out (which may already hold meminfo fields).
 * Lines are "key value" with one space. Unknown counters may be negative
 * (some kernels print signed per-cpu drift); the ones membal reads may not. */
int mb_vmstat_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen);

/* Adds the PSI fields of /proc/pressure/memory to *out (which may already
 * hold other fields). The text is the kernel's, exactly:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "some" is mandatory, "full" optional; each at most once, in any order.
 * PSI fields *out already held are dropped first (a text without "full"
 * leaves no older full figures behind).
 * Rejected (have of *out then 0, like the other parsers): any other line,
 * a missing or reordered avgN=/total= token, extra blanks or tokens, an
 * average that is not D.DD (1 to 3 integer digits, exactly 2 decimals) or
 * is above 100.00, a total that is not a decimal u64, full total above
 * some total. */
int mb_psi_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                 size_t errlen);

/* The record a guest publishes at data/membal/stats:
 *
 *   membal 1            <- format version, first line, mandatory
 *   seq 42              <- mandatory, > 0, increases by >= 1 per publish
 *   uptime_ms 123456    <- mandatory
 *   urgent 0|1          <- optional, default 0
 *   MemTotal 2048000    <- any mb_field_key() with its value, one per line
 *   ...
 *   pswpin 17
 *   psi_some_avg10_bp 152  <- PSI and refault fields when the kernel has
 *   ...                       them: integers, so a dom0 that predates them
 *                             parses the record and ignores the keys
 *
 * Lines end with '\n'; at most MB_RECORD_MAX - 1 bytes.
 * Keys are [A-Za-z0-9_()], separated from a decimal value by one space.
 * Unknown keys are ignored (a later format's fields) but may not repeat
 * (nor repeat "membal"); the fields' consistency rules are those of
 * mb_meminfo_parse and mb_psi_parse (avg10 at most MB_PSI_BP_MAX, full
 * total not above some total). A record without
 * "membal 1" first, without seq (or seq 0) or uptime_ms, or longer than
 * MB_RECORD_MAX - 1 bytes is rejected.
 * mb_record_format returns the length written (excluding NUL) or -1 when
 * buf is too small; it writes s->seq as is, so give it seq >= 1. */
int mb_record_format(const mb_sample_t *s, char *buf, size_t buflen);
int mb_record_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen);

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
 * Guarantees (the envelope, checked by tests/unit/test_invariants.c on
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
