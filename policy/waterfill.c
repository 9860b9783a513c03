/*
 * Water-filling: x_i = clamp(base_i + w_i * c, lo_i, hi_i) with one level c
 * for every active domain, the largest c whose sum fits the pool. Both the
 * tax (base = tau * used) and cagma's surplus sharing (base = CMA) are this
 * shape. Bisection instead of sorting breakpoints: no scratch array, and 128
 * halvings of a double interval reach its last bit.
 */
#include <math.h>

#include "policy_impl.h"

static double level_sum(const mb_decision_t *out, size_t n, double c) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    const mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    double x = o->priv.base + o->priv.w * c;
    if (x < (double)o->priv.lo)
      x = (double)o->priv.lo;
    if (x > (double)o->priv.cap)
      x = (double)o->priv.cap;
    s += x;
  }
  return s;
}

void mb_waterfill(mb_decision_t *out, size_t n, uint64_t pool_kib) {
  uint64_t sum_lo = 0, sum_hi = 0;
  double cl = INFINITY, ch = -INFINITY;
  size_t active = 0;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    active++;
    sum_lo += o->priv.lo;
    sum_hi += o->priv.cap;
    double a = ((double)o->priv.lo - o->priv.base) / o->priv.w;
    double b = ((double)o->priv.cap - o->priv.base) / o->priv.w;
    cl = fmin(cl, a);
    ch = fmax(ch, b);
  }
  if (active == 0)
    return;
  if (sum_lo >= pool_kib || sum_hi <= pool_kib) {
    bool low = sum_lo >= pool_kib;
    for (size_t i = 0; i < n; i++)
      if (out[i].priv.flags & MB_PF_ACTIVE)
        out[i].want_kib = low ? out[i].priv.lo : out[i].priv.cap;
    return;
  }
  /* Invariant: level_sum(cl) <= pool < level_sum(ch). */
  for (int it = 0; it < 128; it++) {
    double mid = cl + (ch - cl) / 2;
    if (!(mid > cl && mid < ch))
      break;
    if (level_sum(out, n, mid) <= (double)pool_kib)
      cl = mid;
    else
      ch = mid;
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    double x = floor(o->priv.base + o->priv.w * cl);
    uint64_t v;
    if (!(x > (double)o->priv.lo))
      v = o->priv.lo;
    else if (x >= (double)o->priv.cap)
      v = o->priv.cap;
    else
      v = (uint64_t)x;
    o->want_kib = v;
    sum += v;
  }
  /* Rounding: floor() and the last bisection step leave a few KiB; hand
   * them out one by one (a few passes, never unbounded), or take back what
   * double rounding over-gave. */
  for (int pass = 0; pass < 4 && sum < pool_kib; pass++) {
    for (size_t i = 0; i < n && sum < pool_kib; i++) {
      mb_decision_t *o = &out[i];
      if ((o->priv.flags & MB_PF_ACTIVE) && o->want_kib < o->priv.cap) {
        o->want_kib++;
        sum++;
      }
    }
  }
  for (size_t i = 0; i < n && sum > pool_kib; i++) {
    mb_decision_t *o = &out[i];
    if (!(o->priv.flags & MB_PF_ACTIVE))
      continue;
    uint64_t give = mb_min_u64(o->want_kib - o->priv.lo, sum - pool_kib);
    o->want_kib -= give;
    sum -= give;
  }
}
