/*
 * selfballoon — Magenheimer's xenballoond (Xen summit 2008): each guest
 * balloons itself to its Committed_AS, the memory its processes have been
 * promised, never below the balloon driver's minimum target
 * (mb_balloon_min_kib of maxmem). Each round it moves 1/DownHysteresis of
 * the gap when shrinking and 1/UpHysteresis when growing.
 *
 * A step is at least DeadBand (when the gap is larger): the envelope does
 * not make smaller changes, so a tenth of a gap below 80 MiB would never
 * be taken (with membal's defaults, idle guests on the mono5 scenario
 * never shrank). xenballoond itself had no dead band.
 *
 * Tunables: UpHysteresis default 1 (grow to the target at once: a guest
 * short of memory must not wait), DownHysteresis default 10 (give back a
 * tenth per round: Committed_AS drops when a process exits and rises again
 * when the next one starts). Both >= 1 (config rejects 0: a divisor).
 *
 * Needs: Committed_AS. Without it (a KVM guest seen through virtio-balloon
 * stats, a bare MemTotal/MemFree record) the target is what the guest
 * uses: MemTotal - MemAvailable (or its free/buffers/cached
 * approximation), else current - idle. The policy does not look at the
 * other guests: the envelope keeps the sum within the pool.
 */
#include "policy_impl.h"

static uint64_t sb_target_kib(const mb_domain_t *d) {
  const mb_sample_t *s = &d->sample;
  if (mb_sample_has(s, MB_F_COMMITTED_AS))
    return mb_min_u64(s->v[MB_F_COMMITTED_AS], MB_KIB_MAX);
  if (mb_sample_has(s, MB_F_MEMTOTAL))
    return mb_est_guest_used_kib(s);
  return mb_est_used_kib(d);
}

/* 1/hysteresis of the gap, but at least the dead band (never more than
 * the gap): a step below the dead band is never made, so without this a
 * gap under hysteresis x DeadBand (80 MiB with the defaults) would never
 * close. */
static uint64_t step_kib(const mb_config_t *cfg, uint64_t gap,
                         unsigned hysteresis) {
  return mb_max_u64(gap / hysteresis, mb_min_u64(gap, cfg->deadband_kib));
}

void mb_selfballoon_step(const mb_config_t *cfg, const mb_domain_t *doms,
                         size_t n, mb_decision_t *out) {
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    uint64_t target =
        mb_max_u64(sb_target_kib(&doms[i]), mb_balloon_min_kib(o->priv.hi));
    uint64_t from = o->from_kib;
    if (target < from) {
      o->want_kib =
          from - step_kib(cfg, from - target, cfg->selfballoon.down_hysteresis);
      o->reason = MB_R_SHRINK_IDLE;
    } else {
      o->want_kib =
          from + step_kib(cfg, target - from, cfg->selfballoon.up_hysteresis);
      o->reason = MB_R_GROW_PRESSURE;
    }
    if (o->want_kib == from)
      o->reason = MB_R_UNCHANGED;
  }
}
