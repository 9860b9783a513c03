/* mb_policy_compute: prepares the round, runs one policy, then the
 * envelope. O(N) plus the water-filling's 128 passes; no allocation. */
#include <string.h>

#include "policy_impl.h"

static bool is_stale(const mb_config_t *cfg, const mb_domain_t *d) {
  /* Written so that a NaN or negative age counts as stale. */
  return !d->has_sample ||
         !(d->sample_age_s >= 0 && d->sample_age_s <= cfg->stale_after_s);
}

/* The most a domain bound to NUMA nodes could reach this round: what it
 * holds plus what its nodes have free. Telling the policy (not just the
 * envelope) lets it hand what the domain cannot take to the others. */
static uint64_t numa_room(const mb_host_t *host, const mb_domain_t *d,
                          uint64_t from, uint64_t lo) {
  unsigned nodes =
      host->nr_nodes < MB_MAX_NODES ? host->nr_nodes : MB_MAX_NODES;
  uint32_t mask = d->node_mask & ((UINT32_C(1) << nodes) - 1);
  if (nodes == 0 || mask == 0)
    return UINT64_MAX;
  uint64_t avail = 0;
  for (unsigned k = 0; k < nodes; k++)
    if (mask >> k & 1u)
      avail += mb_min_u64(host->node_free_kib[k], MB_KIB_MAX);
  return mb_max_u64(from, lo) + avail;
}

int mb_policy_compute(const mb_config_t *cfg, mb_state_t *st,
                      const mb_host_t *host, const mb_domain_t *doms, size_t n,
                      mb_decision_t *out) {
  if (mb_config_validate(cfg, NULL, 0) != 0 || host == NULL ||
      (n > 0 && (doms == NULL || out == NULL)))
    return -1;
  uint64_t pool = mb_sub_sat(host->total_kib, host->reserve_kib);
  uint64_t stale_hold = 0;
  for (size_t i = 0; i < n; i++) {
    const mb_domain_t *d = &doms[i];
    mb_decision_t *o = &out[i];
    memset(o, 0, sizeof(*o));
    uint64_t hi = mb_min_u64(d->max_kib, MB_KIB_MAX);
    uint64_t lo = d->min_kib != 0 ? d->min_kib : mb_balloon_min_kib(hi);
    lo = mb_min_u64(lo, hi);
    o->floor_kib = lo;
    o->from_kib = mb_min_u64(d->current_kib, MB_KIB_MAX);
    o->stale = is_stale(cfg, d);
    o->priv.lo = lo;
    o->priv.hi = hi;
    o->priv.cap = mb_min_u64(hi, numa_room(host, d, o->from_kib, lo));
    o->priv.w = d->weight != 0 ? (double)d->weight : 1.0;
    if (o->stale) {
      o->priv.flags = MB_PF_STALE;
      o->want_kib = mb_min_u64(mb_max_u64(o->from_kib, lo), hi);
      o->reason = o->from_kib > hi   ? MB_R_CLAMPED_MAX
                  : o->from_kib < lo ? MB_R_CLAMPED_MIN
                                     : MB_R_STALE_FROZEN;
      stale_hold += o->want_kib;
    } else {
      o->priv.flags = MB_PF_ACTIVE;
    }
  }
  /* Fresh domains share what the stale ones do not hold. */
  uint64_t fresh_pool = mb_sub_sat(pool, stale_hold);
  switch (cfg->kind) {
  case MB_POLICY_TAX:
    mb_tax_step(cfg, st, doms, n, out, fresh_pool);
    break;
  case MB_POLICY_CAGMA:
    mb_cagma_step(cfg, doms, n, out, fresh_pool);
    break;
  case MB_POLICY_SELFBALLOON:
    mb_selfballoon_step(cfg, doms, n, out);
    break;
  default:
    return -1;
  }
  if (st != NULL) {
    if (!cfg->tax.tau_auto || cfg->kind != MB_POLICY_TAX)
      st->tau = cfg->tax.tau;
    st->rounds++;
  }
  mb_envelope(cfg, host, doms, n, out);
  return 0;
}
