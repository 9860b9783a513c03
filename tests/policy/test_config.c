/* Configuration defaults and validation; names and the balloon floor. */
#include <math.h>

#include "membal_policy.h"
#include "unit.h"

static void test_defaults(void) {
  mb_config_t c;
  memset(&c, 0xff, sizeof(c));
  mb_config_default(&c);
  CU_ASSERT_EQUAL(c.kind, MB_POLICY_CAGMA);
  CU_ASSERT_DOUBLE_EQUAL(c.tax.tau, 0.75, 0);
  CU_ASSERT_FALSE(c.tax.tau_auto);
  CU_ASSERT_DOUBLE_EQUAL(c.cagma.margin_frac, 0.10, 0);
  ASSERT_U64(c.cagma.margin_min_kib, 32768);
  CU_ASSERT_DOUBLE_EQUAL(c.cagma.swap_threshold_pps, 64, 0);
  CU_ASSERT_DOUBLE_EQUAL(c.cagma.majflt_threshold_ps, 256, 0);
  CU_ASSERT_DOUBLE_EQUAL(c.cagma.forecast_s, 10, 0);
  CU_ASSERT_EQUAL(c.selfballoon.up_hysteresis, 1);
  CU_ASSERT_EQUAL(c.selfballoon.down_hysteresis, 10);
  ASSERT_U64(c.step_cap_kib, 0);
  ASSERT_U64(c.deadband_kib, 8192);
  CU_ASSERT_DOUBLE_EQUAL(c.stale_after_s, 30, 0);
  char err[128] = "untouched";
  CU_ASSERT_EQUAL(mb_config_validate(&c, err, sizeof(err)), 0);
  mb_state_t st;
  mb_state_init(&st, &c);
  CU_ASSERT_DOUBLE_EQUAL(st.tau, 0.75, 0);
  ASSERT_U64(st.rounds, 0);
}

typedef struct {
  const char *option; /* collectd spelling the message must name */
  void (*set)(mb_config_t *);
} bad_cfg_t;

#define SETTER(name, stmt)                                                     \
  static void name(mb_config_t *c) { stmt; }
SETTER(tau_neg, c->tax.tau = -0.01)
SETTER(tau_big, c->tax.tau = 1.0001)
SETTER(tau_nan, c->tax.tau = NAN)
SETTER(tau_inf, c->tax.tau = INFINITY)
SETTER(up_zero, c->selfballoon.up_hysteresis = 0)
SETTER(down_zero, c->selfballoon.down_hysteresis = 0)
SETTER(down_huge, c->selfballoon.down_hysteresis = 1000000)
SETTER(margin_neg, c->cagma.margin_frac = -0.5)
SETTER(margin_nan, c->cagma.margin_frac = NAN)
SETTER(margin_huge, c->cagma.margin_frac = 1e9)
SETTER(margin_min_huge, c->cagma.margin_min_kib = UINT64_MAX)
SETTER(swap_neg, c->cagma.swap_threshold_pps = -1)
SETTER(swap_nan, c->cagma.swap_threshold_pps = NAN)
SETTER(majflt_neg, c->cagma.majflt_threshold_ps = -3)
SETTER(majflt_inf, c->cagma.majflt_threshold_ps = INFINITY)
SETTER(forecast_neg, c->cagma.forecast_s = -1)
SETTER(forecast_nan, c->cagma.forecast_s = NAN)
SETTER(forecast_big, c->cagma.forecast_s = 600.5)
SETTER(step_huge, c->step_cap_kib = UINT64_MAX)
SETTER(dead_huge, c->deadband_kib = UINT64_MAX)
/* D7: every change would be below the dead band, i.e. never made */
SETTER(step_below_dead, c->step_cap_kib = c->deadband_kib - 1)
SETTER(stale_zero, c->stale_after_s = 0)
SETTER(stale_neg, c->stale_after_s = -5)
SETTER(stale_nan, c->stale_after_s = NAN)
SETTER(kind_bad, c->kind = (mb_policy_kind_t)99)

static void test_validate_rejects(void) {
  static const bad_cfg_t t[] = {
      {"TaxRate", tau_neg},
      {"TaxRate", tau_big},
      {"TaxRate", tau_nan},
      {"TaxRate", tau_inf},
      {"UpHysteresis", up_zero},
      {"DownHysteresis", down_zero},
      {"DownHysteresis", down_huge},
      {"CmaMarginFraction", margin_neg},
      {"CmaMarginFraction", margin_nan},
      {"CmaMarginFraction", margin_huge},
      {"CmaMarginMin", margin_min_huge},
      {"SwapThreshold", swap_neg},
      {"SwapThreshold", swap_nan},
      {"MajorFaultThreshold", majflt_neg},
      {"MajorFaultThreshold", majflt_inf},
      {"ForecastHorizon", forecast_neg},
      {"ForecastHorizon", forecast_nan},
      {"ForecastHorizon", forecast_big},
      {"StepCap", step_huge},
      {"DeadBand", dead_huge},
      {"StepCap", step_below_dead},
      {"StaleAfter", stale_zero},
      {"StaleAfter", stale_neg},
      {"StaleAfter", stale_nan},
      {"Policy", kind_bad},
  };
  mb_host_t host = {.total_kib = 1 << 20};
  mb_domain_t d;
  memset(&d, 0, sizeof(d));
  d.current_kib = d.max_kib = 1 << 19;
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    mb_config_t c;
    mb_config_default(&c);
    t[i].set(&c);
    char err[160] = "";
    int r = mb_config_validate(&c, err, sizeof(err));
    if (r != -1 || strncmp(err, t[i].option, strlen(t[i].option)) != 0)
      fprintf(stderr, "\n  case %zu: r=%d err='%s' want '%s...'\n", i, r, err,
              t[i].option);
    CU_ASSERT_EQUAL(r, -1);
    CU_ASSERT_EQUAL(strncmp(err, t[i].option, strlen(t[i].option)), 0);
    /* Every entry point refuses it, and leaves out untouched. */
    mb_decision_t out;
    memset(&out, 0xab, sizeof(out));
    mb_decision_t before = out;
    mb_state_t st = {0.5, 7};
    CU_ASSERT_EQUAL(mb_policy_compute(&c, &st, &host, &d, 1, &out), -1);
    CU_ASSERT_EQUAL(memcmp(&out, &before, sizeof(out)), 0);
    ASSERT_U64(st.rounds, 7);
  }
}

static void test_validate_accepts_edges(void) {
  mb_config_t c;
  mb_config_default(&c);
  char err[128];
  c.tax.tau = 0;
  CU_ASSERT_EQUAL(mb_config_validate(&c, err, sizeof(err)), 0);
  c.tax.tau = 1;
  c.tax.tau_auto = true;
  c.cagma.swap_threshold_pps = 0; /* any swapping is an emergency */
  c.cagma.margin_frac = 0;
  c.cagma.margin_min_kib = 0;
  c.selfballoon.up_hysteresis = 1000;
  c.deadband_kib = 0;
  c.step_cap_kib = 1;
  c.stale_after_s = 0.001;
  c.cagma.forecast_s = 0; /* no forecast */
  CU_ASSERT_EQUAL(mb_config_validate(&c, err, sizeof(err)), 0);
  c.cagma.forecast_s = 600;
  CU_ASSERT_EQUAL(mb_config_validate(&c, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(mb_config_validate(NULL, err, sizeof(err)), -1);
}

static void test_names(void) {
  for (int k = 0; k < MB_POLICY_COUNT; k++) {
    mb_policy_kind_t back = MB_POLICY_COUNT;
    const char *name = mb_policy_name(k);
    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    CU_ASSERT_EQUAL(mb_policy_from_name(name, &back), 0);
    CU_ASSERT_EQUAL((int)back, k);
  }
  mb_policy_kind_t k;
  CU_ASSERT_EQUAL(mb_policy_from_name("Tax", &k), -1);
  CU_ASSERT_EQUAL(mb_policy_from_name("", &k), -1);
  CU_ASSERT_EQUAL(mb_policy_from_name(NULL, &k), -1);
  CU_ASSERT_STRING_EQUAL(mb_policy_name(MB_POLICY_TAX), "tax");
  CU_ASSERT_STRING_EQUAL(mb_policy_name(MB_POLICY_CAGMA), "cagma");
  CU_ASSERT_STRING_EQUAL(mb_policy_name(MB_POLICY_SELFBALLOON), "selfballoon");
  static const char *const want[MB_R_COUNT] = {
      "unchanged",   "grow-pressure", "shrink-idle", "clamped-min",
      "clamped-max", "stale-frozen",  "emergency",   "deadband",
      "step-capped", "pool-limit"};
  for (int r = 0; r < MB_R_COUNT; r++)
    CU_ASSERT_STRING_EQUAL(mb_reason_name(r), want[r]);
  CU_ASSERT_STRING_EQUAL(mb_reason_name(MB_R_COUNT), "invalid");
}

/* The balloon floor, worked by hand from the piecewise rule. */
static void test_balloon_min(void) {
  static const struct {
    uint64_t max_kib, min_kib;
  } t[] = {
      {4096, 4096},      /* 8 MiB + 2 MiB > max: capped at max */
      {102400, 59392},   /* 100 MiB: 8 + 25600>>9 = 58 MiB */
      {126976, 71680},   /* 124 MiB: 8 + 62 = 70 MiB */
      {128000, 72704},   /* 125 MiB: 40 + 32000>>10 = 71 MiB */
      {262144, 106496},  /* 256 MiB: 40 + 64 = 104 MiB */
      {524288, 172032},  /* 512 MiB: 104 + 131072>>11 = 168 MiB */
      {2047999, 361472}, /* just under 2000 MiB: 104 + 249 */
      {2048000, 366592}, /* 2000 MiB: 296 + 512000>>13 = 358 MiB */
      {4194304, 434176}, /* 4 GiB: 296 + 128 = 424 MiB */
      {0, 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    ASSERT_U64(mb_balloon_min_kib(t[i].max_kib), t[i].min_kib);
}

static void test_size_parse(void) {
  static const struct {
    const char *s;
    uint64_t kib;
  } ok[] = {
      {"0", 0},
      {"524288", 524288},
      {"64K", 64},
      {"64kib", 64},
      {"512M", 524288},
      {"512MiB", 524288},
      {"2G", 2097152},
      {"2gib", 2097152},
      {"18014398509481983", 18014398509481983ULL},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    uint64_t kib = 1;
    char err[160] = "";
    CU_ASSERT_EQUAL(mb_size_parse(ok[i].s, &kib, err, sizeof(err)), 0);
    ASSERT_U64(kib, ok[i].kib);
  }
  static const struct {
    const char *s, *why;
  } bad[] = {
      {"", "not a size"},
      {"-1", "not a size"},
      {"+5", "not a size"},
      {" 5", "not a size"},
      {"MiB", "not a size"},
      {"5 MiB", "unknown unit \" MiB\""},
      {"5TiB", "unknown unit \"TiB\""},
      {"5.5G", "unknown unit \".5G\""},
      {"18014398509481984", "too large"}, /* UINT64_MAX / 1024 + 1 KiB */
      {"17592186044416M", "too large"},
      {"99999999999999999999999", "too large"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t kib = 7;
    char err[160] = "";
    CU_ASSERT_EQUAL(mb_size_parse(bad[i].s, &kib, err, sizeof(err)), -1);
    ASSERT_U64(kib, 7);
    if (strstr(err, bad[i].why) == NULL) {
      fprintf(stderr, "\"%s\": \"%s\" lacks \"%s\"\n", bad[i].s, err,
              bad[i].why);
      CU_FAIL("size error text");
    }
  }
}

/* Every option's documented default, set through the table, leaves the
 * defaults as they are; bad values are refused naming the option. */
static void test_option_table(void) {
  const mb_option_t *t = NULL;
  size_t n = mb_options(&t);
  CU_ASSERT_TRUE(n >= 12);
  mb_config_t def, cfg;
  memset(&def, 0, sizeof(def)); /* padding too: compared with memcmp */
  mb_config_default(&def);
  for (size_t i = 0; i < n; i++) {
    char err[256] = "";
    memset(&cfg, 0, sizeof(cfg));
    mb_config_default(&cfg);
    CU_ASSERT_PTR_EQUAL(mb_option_find(t[i].name), &t[i]);
    CU_ASSERT_EQUAL(mb_option_set(&cfg, t[i].name, t[i].def, err, sizeof(err)),
                    0);
    if (memcmp(&cfg, &def, sizeof(cfg)) != 0) {
      fprintf(stderr, "%s default \"%s\" is not mb_config_default's\n",
              t[i].name, t[i].def);
      CU_FAIL("option default");
    }
    CU_ASSERT_PTR_NOT_NULL(t[i].doc);
    CU_ASSERT_PTR_NOT_NULL(t[i].unit);
    if (t[i].kind != MB_OPT_POLICY) {
      CU_ASSERT_EQUAL(mb_option_set(&cfg, t[i].name, "x1", err, sizeof(err)),
                      -1);
      CU_ASSERT_PTR_NOT_NULL(strstr(err, t[i].name));
    }
  }
  char err[256] = "";
  mb_config_default(&cfg);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "Bogus", "1", err, sizeof(err)), 1);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "policy", "tax", err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(cfg.kind, MB_POLICY_TAX);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "TaxRate", "AUTO", err, sizeof(err)), 0);
  CU_ASSERT_TRUE(cfg.tax.tau_auto);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "TaxRate", "0.5", err, sizeof(err)), 0);
  CU_ASSERT_FALSE(cfg.tax.tau_auto);
  CU_ASSERT_EQUAL(cfg.tax.tau, 0.5);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "CmaMarginMin", "1GiB", err, sizeof(err)),
                  0);
  ASSERT_U64(cfg.cagma.margin_min_kib, 1048576);
  CU_ASSERT_EQUAL(
      mb_option_set(&cfg, "DownHysteresis", "2.5", err, sizeof(err)), -1);
  CU_ASSERT_EQUAL(mb_option_set(&cfg, "Policy", "fair", err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "Policy \"fair\" unknown"));
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"defaults", test_defaults},
      {"validation rejects, naming the option", test_validate_rejects},
      {"validation accepts edges", test_validate_accepts_edges},
      {"policy and reason names", test_names},
      {"balloon minimum target", test_balloon_min},
      {"sizes as the operator writes them", test_size_parse},
      {"the option table", test_option_table},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("config", tests);
}
