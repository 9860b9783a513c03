/*
 * The policy's options, one table: name, unit, default and what it does,
 * and where it goes in mb_config_t. membal's config callback and
 * membal-policy set options through it; the limits are
 * mb_config_validate()'s, checked once every option is set. The manual page
 * collectd-membal(5) and the drop-ins document every entry
 * (tests/plugins/test_options_documented.sh).
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy_impl.h"

#define OFF(field) offsetof(mb_config_t, field)

static const mb_option_t options[] = {
    {.name = "Policy",
     .kind = MB_OPT_POLICY,
     .unit = "name",
     .def = "cagma",
     .doc = "cagma, tax or selfballoon"},
    {.name = "TaxRate",
     .kind = MB_OPT_TAXRATE,
     .unit = "0..1 or auto",
     .def = "0.75",
     .doc = "tax: idle memory tax rate; auto adapts it every round",
     .off = OFF(tax.tau)},
    {.name = "UpHysteresis",
     .kind = MB_OPT_UNSIGNED,
     .unit = "n",
     .def = "1",
     .doc = "selfballoon: close 1/n of the gap per round when growing",
     .off = OFF(selfballoon.up_hysteresis)},
    {.name = "DownHysteresis",
     .kind = MB_OPT_UNSIGNED,
     .unit = "n",
     .def = "10",
     .doc = "selfballoon: 1/n when shrinking",
     .off = OFF(selfballoon.down_hysteresis)},
    {.name = "CmaMarginFraction",
     .kind = MB_OPT_NUMBER,
     .unit = "fraction",
     .def = "0.10",
     .doc = "cagma: headroom over the working set, as a fraction of it",
     .off = OFF(cagma.margin_frac)},
    {.name = "CmaMarginMin",
     .kind = MB_OPT_SIZE,
     .unit = "size",
     .def = "32MiB",
     .doc = "cagma: headroom floor",
     .off = OFF(cagma.margin_min_kib)},
    {.name = "SwapThreshold",
     .kind = MB_OPT_NUMBER,
     .unit = "pages/s",
     .def = "64",
     .doc = "cagma: swap rate that makes an emergency grow",
     .off = OFF(cagma.swap_threshold_pps)},
    {.name = "MajorFaultThreshold",
     .kind = MB_OPT_NUMBER,
     .unit = "faults/s",
     .def = "256",
     .doc = "cagma: major fault rate of a guest short of memory that makes one",
     .off = OFF(cagma.majflt_threshold_ps)},
    {.name = "ForecastHorizon",
     .kind = MB_OPT_NUMBER,
     .unit = "s",
     .def = "10",
     .doc = "cagma: growth rate x horizon added to a ramping guest's CMA; 0 "
            "= off",
     .off = OFF(cagma.forecast_s)},
    {.name = "StepCap",
     .kind = MB_OPT_SIZE,
     .unit = "size",
     .def = "0",
     .doc = "largest change of one target in one round; 0 = none, else at "
            "least DeadBand",
     .off = OFF(step_cap_kib)},
    {.name = "DeadBand",
     .kind = MB_OPT_SIZE,
     .unit = "size",
     .def = "8MiB",
     .doc = "smaller changes are not made",
     .off = OFF(deadband_kib)},
    {.name = "StaleAfter",
     .kind = MB_OPT_NUMBER,
     .unit = "s",
     .def = "30",
     .doc = "a guest whose sample is older is never shrunk",
     .off = OFF(stale_after_s)},
};

size_t mb_options(const mb_option_t **table) {
  *table = options;
  return sizeof(options) / sizeof(options[0]);
}

const mb_option_t *mb_option_find(const char *name) {
  for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
    if (strcasecmp(options[i].name, name) == 0)
      return &options[i];
  return NULL;
}

/* A finite decimal number, all of value. */
static int opt_number(const char *value, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(value, &end);
  if (end == value || *end != 0 || errno != 0 || !isfinite(d))
    return -1;
  *out = d;
  return 0;
}

int mb_option_set(mb_config_t *cfg, const char *name, const char *value,
                  char *err, size_t errlen) {
  const mb_option_t *o = mb_option_find(name);
  if (o == NULL)
    return 1;
  char *base = (char *)cfg;
  double d;
  switch (o->kind) {
  case MB_OPT_POLICY:
    if (mb_policy_from_name(value, &cfg->kind) != 0) {
      snprintf(err, errlen, "Policy \"%s\" unknown (cagma, tax or selfballoon)",
               value);
      return -1;
    }
    return 0;
  case MB_OPT_TAXRATE:
    if (strcasecmp(value, "auto") == 0) {
      cfg->tax.tau_auto = true;
      return 0;
    }
    if (opt_number(value, &d) != 0) {
      snprintf(err, errlen, "TaxRate must be a number in [0,1] or \"auto\"");
      return -1;
    }
    cfg->tax.tau = d;
    cfg->tax.tau_auto = false;
    return 0;
  case MB_OPT_NUMBER:
    if (opt_number(value, &d) != 0) {
      snprintf(err, errlen, "%s: \"%s\" is not a number", o->name, value);
      return -1;
    }
    *(double *)(base + o->off) = d;
    return 0;
  case MB_OPT_UNSIGNED:
    if (opt_number(value, &d) != 0 || d < 0 || d > 4294967295.0 ||
        d != floor(d)) {
      snprintf(err, errlen, "%s: \"%s\" is not a whole number >= 0", o->name,
               value);
      return -1;
    }
    *(unsigned *)(base + o->off) = (unsigned)d;
    return 0;
  case MB_OPT_SIZE: {
    uint64_t kib;
    char e[160];
    if (mb_size_parse(value, &kib, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "%s: %s", o->name, e);
      return -1;
    }
    *(uint64_t *)(base + o->off) = kib;
    return 0;
  }
  }
  return -1;
}
