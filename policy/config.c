/* Policy configuration: defaults and validation. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "policy_impl.h"

/*
 * Defaults and why:
 * - cagma is the default policy: it is the only one that reacts at once to
 *   swapping and guarantees each guest its working set.
 * - TaxRate 0.75: Waldspurger's (OSDI 2002) default idle memory tax; xenmm
 *   kept it. Idle memory is mostly reclaimed, a quarter stays as a cushion.
 * - CmaMarginFraction 0.10, CmaMarginMin 32 MiB: a guest's working set
 *   moves by a few percent between 2-10 s rounds; 32 MiB covers a small
 *   guest's burst (fork of a shell, a page-cache refill).
 * - SwapThreshold 64 pages/s (256 KiB/s) and MajorFaultThreshold 256/s:
 *   an idle Linux guest swaps 0 pages/s and takes a few major faults/s;
 *   above these the guest is thrashing and waiting a round costs seconds.
 * - ForecastHorizon 10 s: cagma extrapolates a ramping guest's growth this
 *   far, about the time balloons need to move a ramp's worth of memory
 *   (policy/cagma.c).
 * - UpHysteresis 1, DownHysteresis 10: xenballoond's defaults, grow at
 *   once, give back slowly.
 * - StepCap 0 (none): the balloon driver itself moves at its own rate.
 * - DeadBand 8 MiB: smaller moves only churn the balloon.
 * - StaleAfter 30 s: three missed 10 s intervals of the guest agent.
 */
void mb_config_default(mb_config_t *cfg) {
  if (cfg == NULL)
    return;
  cfg->kind = MB_POLICY_CAGMA;
  cfg->tax.tau = 0.75;
  cfg->tax.tau_auto = false;
  cfg->cagma.margin_frac = 0.10;
  cfg->cagma.margin_min_kib = 32768;
  cfg->cagma.swap_threshold_pps = 64;
  cfg->cagma.majflt_threshold_ps = 256;
  cfg->cagma.forecast_s = 10;
  cfg->selfballoon.up_hysteresis = 1;
  cfg->selfballoon.down_hysteresis = 10;
  cfg->step_cap_kib = 0;
  cfg->deadband_kib = 8192;
  cfg->stale_after_s = 30;
}

/* Hysteresis above this would take a guest thousands of rounds to move. */
#define MB_HYSTERESIS_MAX 1000
/* A forecast beyond ten minutes extrapolates a ramp long after any
 * balloon could have delivered it. */
#define MB_FORECAST_MAX_S 600
/* A margin above ten times the working set is a typo, not a policy. */
#define MB_MARGIN_FRAC_MAX 10.0

int mb_config_validate(const mb_config_t *cfg, char *err, size_t errlen) {
  if (cfg == NULL)
    return mb_fail(err, errlen, "no configuration");
  if ((unsigned)cfg->kind >= MB_POLICY_COUNT)
    return mb_fail(err, errlen,
                   "Policy: unknown policy %d (tax, cagma, "
                   "selfballoon)",
                   (int)cfg->kind);
  if (!isfinite(cfg->tax.tau) || cfg->tax.tau < 0 || cfg->tax.tau > 1)
    return mb_fail(err, errlen, "TaxRate must be in [0,1] or AUTO (got %g)",
                   cfg->tax.tau);
  if (!isfinite(cfg->cagma.margin_frac) || cfg->cagma.margin_frac < 0 ||
      cfg->cagma.margin_frac > MB_MARGIN_FRAC_MAX)
    return mb_fail(err, errlen, "CmaMarginFraction must be in [0,%g] (got %g)",
                   MB_MARGIN_FRAC_MAX, cfg->cagma.margin_frac);
  if (cfg->cagma.margin_min_kib > MB_KIB_MAX)
    return mb_fail(err, errlen, "CmaMarginMin must be <= %llu KiB (got %llu)",
                   (unsigned long long)MB_KIB_MAX,
                   (unsigned long long)cfg->cagma.margin_min_kib);
  if (!isfinite(cfg->cagma.swap_threshold_pps) ||
      cfg->cagma.swap_threshold_pps < 0)
    return mb_fail(err, errlen, "SwapThreshold must be a number >= 0 (got %g)",
                   cfg->cagma.swap_threshold_pps);
  if (!isfinite(cfg->cagma.majflt_threshold_ps) ||
      cfg->cagma.majflt_threshold_ps < 0)
    return mb_fail(err, errlen,
                   "MajorFaultThreshold must be a number >= 0 (got %g)",
                   cfg->cagma.majflt_threshold_ps);
  if (!isfinite(cfg->cagma.forecast_s) || cfg->cagma.forecast_s < 0 ||
      cfg->cagma.forecast_s > MB_FORECAST_MAX_S)
    return mb_fail(err, errlen,
                   "ForecastHorizon must be in [0,%d] seconds (got %g)",
                   MB_FORECAST_MAX_S, cfg->cagma.forecast_s);
  if (cfg->selfballoon.up_hysteresis < 1 ||
      cfg->selfballoon.up_hysteresis > MB_HYSTERESIS_MAX)
    return mb_fail(err, errlen, "UpHysteresis must be in [1,%d] (got %u)",
                   MB_HYSTERESIS_MAX, cfg->selfballoon.up_hysteresis);
  if (cfg->selfballoon.down_hysteresis < 1 ||
      cfg->selfballoon.down_hysteresis > MB_HYSTERESIS_MAX)
    return mb_fail(err, errlen, "DownHysteresis must be in [1,%d] (got %u)",
                   MB_HYSTERESIS_MAX, cfg->selfballoon.down_hysteresis);
  if (cfg->step_cap_kib > MB_KIB_MAX)
    return mb_fail(err, errlen, "StepCap must be <= %llu KiB (got %llu)",
                   (unsigned long long)MB_KIB_MAX,
                   (unsigned long long)cfg->step_cap_kib);
  if (cfg->deadband_kib > MB_KIB_MAX)
    return mb_fail(err, errlen, "DeadBand must be <= %llu KiB (got %llu)",
                   (unsigned long long)MB_KIB_MAX,
                   (unsigned long long)cfg->deadband_kib);
  /* A cap below the dead band would make every change either too small to
   * be made or cut to a size that is too small: nothing would ever move. */
  if (cfg->step_cap_kib != 0 && cfg->step_cap_kib < cfg->deadband_kib)
    return mb_fail(err, errlen,
                   "StepCap (%llu KiB) must be 0 (no cap) or at least DeadBand "
                   "(%llu KiB)",
                   (unsigned long long)cfg->step_cap_kib,
                   (unsigned long long)cfg->deadband_kib);
  if (!isfinite(cfg->stale_after_s) || cfg->stale_after_s <= 0)
    return mb_fail(err, errlen, "StaleAfter must be > 0 seconds (got %g)",
                   cfg->stale_after_s);
  return 0;
}

void mb_state_init(mb_state_t *st, const mb_config_t *cfg) {
  if (st == NULL)
    return;
  st->tau = 0.75;
  if (cfg != NULL && isfinite(cfg->tax.tau) && cfg->tax.tau >= 0 &&
      cfg->tax.tau <= 1)
    st->tau = cfg->tax.tau;
  st->rounds = 0;
}

int mb_size_parse(const char *s, uint64_t *kib, char *err, size_t errlen) {
  if (s[0] < '0' || s[0] > '9') {
    snprintf(err, errlen, "\"%s\" is not a size, e.g. \"512MiB\"", s);
    return -1;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(s, &end, 10);
  if (errno != 0) {
    snprintf(err, errlen, "\"%s\" is too large", s);
    return -1;
  }
  uint64_t mult;
  if (*end == 0 || strcasecmp(end, "K") == 0 || strcasecmp(end, "KiB") == 0)
    mult = 1;
  else if (strcasecmp(end, "M") == 0 || strcasecmp(end, "MiB") == 0)
    mult = 1024;
  else if (strcasecmp(end, "G") == 0 || strcasecmp(end, "GiB") == 0)
    mult = 1024 * 1024;
  else {
    snprintf(err, errlen, "unknown unit \"%s\" (use KiB, MiB or GiB)", end);
    return -1;
  }
  /* Bytes of the size still fit 64 bits. */
  if (n > UINT64_MAX / 1024 / mult) {
    snprintf(err, errlen, "\"%s\" is too large", s);
    return -1;
  }
  *kib = (uint64_t)n * mult;
  return 0;
}
