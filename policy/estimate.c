/* What a guest sample says about a domain's idle and used memory. */
#include "policy_impl.h"

/* Idle as the guest sees it, before comparing with the domain's size.
 * Without MemAvailable (kernels before 3.14, some virtio-balloon stats)
 * free + buffers + page cache is what MemAvailable approximates; shmem sits
 * in Cached but cannot be dropped. Without even that, MemFree alone. With
 * nothing, nothing is idle: never take memory on no evidence. */
static uint64_t guest_idle_kib(const mb_sample_t *s) {
  if (mb_sample_has(s, MB_F_MEMAVAILABLE))
    return s->v[MB_F_MEMAVAILABLE];
  if (mb_sample_has(s, MB_F_MEMFREE))
    return mb_sub_sat(mb_field(s, MB_F_MEMFREE) + mb_field(s, MB_F_BUFFERS) +
                          mb_field(s, MB_F_CACHED),
                      mb_field(s, MB_F_SHMEM));
  return 0;
}

uint64_t mb_est_idle_kib(const mb_domain_t *d) {
  if (!d->has_sample)
    return 0;
  return mb_min_u64(guest_idle_kib(&d->sample),
                    mb_min_u64(d->current_kib, MB_KIB_MAX));
}

uint64_t mb_est_used_kib(const mb_domain_t *d) {
  return mb_min_u64(d->current_kib, MB_KIB_MAX) - mb_est_idle_kib(d);
}

bool mb_est_pressure(const mb_config_t *cfg, const mb_domain_t *d) {
  if (!d->has_sample)
    return false;
  if (d->sample.urgent)
    return true;
  if (!d->rates.valid)
    return false;
  /* NaN rates compare false: they never trigger anything. */
  return d->rates.swapin_pps + d->rates.swapout_pps >
             cfg->cagma.swap_threshold_pps ||
         d->rates.majflt_ps > cfg->cagma.majflt_threshold_ps;
}
