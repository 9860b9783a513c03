/*
 * Private helpers shared by the files of the policy core. Not installed,
 * not used outside policy/.
 */
#ifndef MEMBAL_POLICY_IMPL_H
#define MEMBAL_POLICY_IMPL_H

#include "membal_policy.h"

#define MB_PAGE_KIB 4

/* decision.priv.flags */
#define MB_PF_ACTIVE 0x1u    /* takes part in the policy's water-filling */
#define MB_PF_STALE 0x2u     /* sample missing or stale */
#define MB_PF_EMERGENCY 0x4u /* cagma emergency: growth cut last */

/* Writes a message to err (may be NULL / 0 long). Always returns -1. */
int mb_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Consistency of a parsed sample (free <= total, ...). 0 or -1 + err. */
int mb_sample_check(const mb_sample_t *s, char *err, size_t errlen);

/* ---- estimates from a guest sample (estimate.c) ---------------------- */

/* Memory the guest could give back without swapping: MemAvailable, else
 * MemFree + Buffers + Cached - Shmem (what MemAvailable approximates), else
 * MemFree. Expressed against the domain's size: never above current_kib. */
uint64_t mb_est_idle_kib(const mb_domain_t *d);
/* current_kib - idle: what the guest uses, its kernel's reserved memory
 * included (MemTotal < current_kib by that much). */
uint64_t mb_est_used_kib(const mb_domain_t *d);
/* MemTotal - MemAvailable (else - the free + buffers + cached - shmem
 * approximation, even without MemFree): the guest's own view of its use,
 * for a sample that has MemTotal (cagma and selfballoon fallbacks). */
uint64_t mb_est_guest_used_kib(const mb_sample_t *s);
/* True when the rates or the urgent flag show swap activity above the
 * cagma thresholds, or memory stall of a guest that is short or whose page
 * cache thrashes (the tax's AUTO rule uses the same signal). */
bool mb_est_pressure(const mb_config_t *cfg, const mb_domain_t *d);
/* PSI "some" share at which a guest is stalled on memory. */
#define MB_STALL_SHARE 0.15
/* Below this share (with no refaults, no swap) a guest is quiet. */
#define MB_QUIET_SHARE 0.01
/* The urgent flag, or a PSI "some" share >= MB_STALL_SHARE. */
bool mb_est_stalled(const mb_domain_t *d);
/* The guest reports PSI and refault counters, and shows no stall (below
 * MB_QUIET_SHARE), no refaults and no swap above SwapThreshold, no urgent
 * flag: what it holds beyond its active lists is not in use. False
 * without those figures. */
bool mb_est_quiet(const mb_config_t *cfg, const mb_domain_t *d);

/* ---- water-filling (waterfill.c) -------------------------------------- */

/* Over the decisions with MB_PF_ACTIVE set: finds c with
 *   sum clamp(base_i + w_i * c, lo_i, hi_i) <= pool
 * as large as possible and writes floor(clamp(...)) into want_kib.
 * O(N) per bisection step, 128 steps: no sort, no scratch beyond priv. */
void mb_waterfill(mb_decision_t *out, size_t n, uint64_t pool_kib);

/* ---- policies: fill want_kib / reason / cma_kib of active domains ----- */
void mb_tax_step(const mb_config_t *cfg, mb_state_t *st,
                 const mb_domain_t *doms, size_t n, mb_decision_t *out,
                 uint64_t pool_kib);
void mb_cagma_step(const mb_config_t *cfg, const mb_domain_t *doms, size_t n,
                   mb_decision_t *out, uint64_t pool_kib);
/* cagma's critical memory amount of a domain (its sample, this config);
 * the round module bounds emergency grants beyond it. */
uint64_t mb_cagma_cma_kib(const mb_config_t *cfg, const mb_domain_t *d);
void mb_selfballoon_step(const mb_config_t *cfg, const mb_domain_t *doms,
                         size_t n, mb_decision_t *out);

/* ---- the safety envelope (envelope.c) ------------------------------- */
void mb_envelope(const mb_config_t *cfg, const mb_host_t *host,
                 const mb_domain_t *doms, size_t n, mb_decision_t *out);

static inline uint64_t mb_min_u64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}
static inline uint64_t mb_max_u64(uint64_t a, uint64_t b) {
  return a > b ? a : b;
}
static inline uint64_t mb_sub_sat(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}
static inline uint64_t mb_field(const mb_sample_t *s, mb_field_t f) {
  return mb_sample_has(s, f) ? s->v[f] : 0;
}

#endif
