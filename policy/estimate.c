/* What a guest sample says about a domain's idle and used memory. */
#include "policy_impl.h"

/* Idle as the guest sees it, before comparing with the domain's size.
 * Without MemAvailable (kernels before 3.14, some virtio-balloon stats)
 * free + buffers + page cache is what MemAvailable approximates; shmem sits
 * in Cached but cannot be dropped. Without even that, MemFree alone. With
 * nothing, nothing is idle: never take memory on no evidence. */
static uint64_t approx_available_kib(const mb_sample_t *s) {
  return mb_sub_sat(mb_field(s, MB_F_MEMFREE) + mb_field(s, MB_F_BUFFERS) +
                        mb_field(s, MB_F_CACHED),
                    mb_field(s, MB_F_SHMEM));
}

static uint64_t guest_idle_kib(const mb_sample_t *s) {
  if (mb_sample_has(s, MB_F_MEMAVAILABLE))
    return s->v[MB_F_MEMAVAILABLE];
  if (mb_sample_has(s, MB_F_MEMFREE))
    return approx_available_kib(s);
  return 0;
}

uint64_t mb_est_guest_used_kib(const mb_sample_t *s) {
  uint64_t idle = mb_sample_has(s, MB_F_MEMAVAILABLE) ? s->v[MB_F_MEMAVAILABLE]
                                                      : approx_available_kib(s);
  return mb_sub_sat(s->v[MB_F_MEMTOTAL], idle);
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

/* Short of memory: what the guest could still give up (MemAvailable) is
 * below the CMA margin, the headroom cagma guarantees above the working
 * set (max(CmaMarginMin, CmaMarginFraction x used)). */
static bool est_short(const mb_config_t *cfg, const mb_domain_t *d) {
  double m = cfg->cagma.margin_frac * (double)mb_est_used_kib(d);
  double margin = (double)cfg->cagma.margin_min_kib;
  if (m > margin) /* false for NaN */
    margin = m;
  return (double)mb_est_idle_kib(d) < margin;
}

/* Memory stall: the guest's PSI "some" share between its last two
 * samples reached MB_STALL_SHARE, or its record is urgent (guestmem's PSI
 * trigger, or on a kernel without PSI its swap poll). 15 %: guestmem's
 * trigger (150 ms of stall in 1 s), the kernel documentation's example. */
bool mb_est_stalled(const mb_domain_t *d) {
  if (!d->has_sample)
    return false;
  return d->sample.urgent ||
         (d->rates.stall_valid && d->rates.some_stall_share >= MB_STALL_SHARE);
}

/* Page-cache thrash: file pages evicted and read back soon after, faster
 * than SwapThreshold (a refault costs the read a swap-in does). Anonymous
 * refaults are left out: they are swap-ins, which a guest whose working set
 * shrank takes for minutes with plenty of memory free (see below). */
static bool est_refaulting(const mb_config_t *cfg, const mb_domain_t *d) {
  return d->rates.refault_valid &&
         d->rates.refault_file_ps > cfg->cagma.swap_threshold_pps;
}

bool mb_est_quiet(const mb_config_t *cfg, const mb_domain_t *d) {
  if (!d->has_sample || !d->rates.valid || !d->rates.stall_valid ||
      !d->rates.refault_valid || d->sample.urgent)
    return false;
  /* NaN compares false: not quiet */
  return d->rates.some_stall_share < MB_QUIET_SHARE &&
         d->rates.refault_anon_ps <= cfg->cagma.swap_threshold_pps &&
         d->rates.refault_file_ps <= cfg->cagma.swap_threshold_pps &&
         d->rates.swapin_pps + d->rates.swapout_pps <=
             cfg->cagma.swap_threshold_pps;
}

/* Which swap activity means "this guest needs memory now":
 *  - before membal has two samples (no rates), the urgent flag: the guest
 *    saw itself swapping and there is no better evidence yet;
 *  - swap-out above SwapThreshold: the kernel evicts anonymous pages only
 *    when it has nothing cheaper to drop (a thrashing guest swaps out as
 *    much as it faults in);
 *  - swap-in, major faults and the urgent flag only when the guest is
 *    short (est_short). A guest whose working set shrank keeps faulting
 *    its old swapped pages back for minutes at the disk's pace, without
 *    swapping anything out, while it holds plenty of free memory: more
 *    memory would not stop those faults (each page is read once), and
 *    flagging it made two such guests "emergencies" that the pool cut
 *    against each other, so nobody was shrunk (the simulator's CAGMA
 *    testbed froze for minutes). MemAvailable alone does not say "not short"
 *    on a real guest under zram thrashing (it counts cache the guest
 *    cannot drop without faulting it back), hence swap-out decides;
 *  - memory stall (mb_est_stalled) when the guest is short or its page
 *    cache thrashes (file refaults above SwapThreshold): the guest is slowed
 *    by missing memory before it swaps anything out (its cache goes first),
 *    and a full cache hides that from MemAvailable, which refaults show.
 *    Stall with neither (a guest reading back its old swap with plenty
 *    free, or stalled on its own disk) is not helped by memory. */
bool mb_est_pressure(const mb_config_t *cfg, const mb_domain_t *d) {
  if (!d->has_sample)
    return false;
  if (!d->rates.valid)
    return d->sample.urgent;
  /* NaN rates compare false: they never trigger anything. */
  if (d->rates.swapout_pps > cfg->cagma.swap_threshold_pps)
    return true;
  if (mb_est_stalled(d) && est_refaulting(cfg, d))
    return true;
  if (!est_short(cfg, d))
    return false;
  return mb_est_stalled(d) ||
         d->rates.swapin_pps + d->rates.swapout_pps >
             cfg->cagma.swap_threshold_pps ||
         d->rates.majflt_ps > cfg->cagma.majflt_threshold_ps;
}
