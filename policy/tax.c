/*
 * tax — Waldspurger's idle memory tax (OSDI 2002) as xenmm applied it.
 *
 * Waldspurger reclaims from the domain with the lowest shares-per-page
 * ratio rho = S / (P * (f + k * (1 - f))), k = 1 / (1 - tau), f = active
 * fraction: idle pages cost k times more than active ones. xenmm turned
 * that into a linear system solved every round:
 *     sum x_i = pool,   x_0 - x_i = tau * (A_0 - A_i)
 * (x = allocation, A = used memory), i.e. x_i = tau * A_i + c. tau = 1
 * gives every guest the same free memory, tau = 0 the same allocation.
 * Shares generalise the constant: x_i = tau * A_i + w_i * c, so at tau = 0
 * memory is split in proportion to weight and at tau = 1 free memory is.
 * Clamping x_i into [floor_i, max_i] and solving for c again is
 * water-filling (mb_waterfill).
 *
 * Needs: MemAvailable, else MemFree (+ Buffers + Cached - Shmem). A KVM
 * guest's virtio-balloon stats (MemTotal/MemFree/MemAvailable-like,
 * Cached) are enough. A guest without any of them is counted fully used:
 * never taxed on no evidence.
 *
 * Tunables: TaxRate tau in [0,1], default 0.75 (Waldspurger's default:
 * three quarters of idle memory is reclaimable). TaxRate AUTO adapts tau
 * every round (rule below), starting from and never dropping below the
 * configured tau.
 */
#include "policy_impl.h"

/* AUTO rule. Raise tau by MB_TAU_UP when a guest swaps (mb_est_pressure)
 * while another holds idle memory (more than a tenth of its size): taxing
 * idle memory harder is exactly what moves it to the swapping guest. Lower
 * it by MB_TAU_DOWN toward the configured tau when no guest is under
 * pressure: relax slowly, so one quiet round does not undo the reaction.
 * Keep it when everybody is short: no tax can help then. */
#define MB_TAU_UP 0.05
#define MB_TAU_DOWN 0.01

static double tax_auto(const mb_config_t *cfg, double tau,
                       const mb_domain_t *doms, size_t n,
                       const mb_decision_t *out) {
  bool pressure = false, idle_elsewhere = false;
  for (size_t i = 0; i < n; i++) {
    if (!(out[i].priv.flags & MB_PF_ACTIVE))
      continue;
    if (mb_est_pressure(cfg, &doms[i]))
      pressure = true;
    else if (mb_est_idle_kib(&doms[i]) > doms[i].current_kib / 10)
      idle_elsewhere = true;
  }
  if (pressure && idle_elsewhere)
    tau += MB_TAU_UP;
  else if (!pressure)
    tau -= MB_TAU_DOWN;
  if (tau < cfg->tax.tau)
    tau = cfg->tax.tau;
  if (tau > 1)
    tau = 1;
  return tau;
}

void mb_tax_step(const mb_config_t *cfg, mb_state_t *st,
                 const mb_domain_t *doms, size_t n, mb_decision_t *out,
                 uint64_t pool_kib) {
  double tau = cfg->tax.tau;
  if (cfg->tax.tau_auto && st != NULL) {
    /* A state from another config (or garbage) is brought into range. */
    double prev = st->tau >= 0 && st->tau <= 1 ? st->tau : cfg->tax.tau;
    tau = tax_auto(cfg, prev, doms, n, out);
  }
  if (st != NULL)
    st->tau = tau;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    o->priv.base = tau * (double)mb_est_used_kib(&doms[i]);
  }
  mb_waterfill(out, n, pool_kib);
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    o->reason = o->want_kib > o->from_kib   ? MB_R_GROW_PRESSURE
                : o->want_kib < o->from_kib ? MB_R_SHRINK_IDLE
                                            : MB_R_UNCHANGED;
  }
}
