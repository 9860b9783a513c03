/*
 * membal-bench: every scenario x every policy in fast mode, one table per
 * scenario, CSV, and an rrdtool PNG per scenario and policy (memory and
 * demand per VM over time). Deterministic: same seed, same table.
 *
 *   membal-bench [--scenarios DIR] [--out DIR] [--seed N] [--short]
 *                [--only SCN,...] [--check FILE] [--no-plot]
 *   membal-bench --cost [--callgrind]   policy cost, 10..10000 domains
 *
 * --check FILE: lines "scenario pol1 <= pol2 < pol3" on swap I/O pages;
 * exits 1 when one does not hold.
 */
#include "sim.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef SIM_HAVE_RRD
#include <rrd.h>
#endif

#define MAX_SCN 64
#define NPOL 16
#define RRD_BASE 946684800 /* 2000-01-01 UTC: graphs read as mm:ss */

static const char *const short_set[] = {"mono", "cagma", NULL};

/* The policies of this run: sim_policies, then one row per --config. */
static const sim_policy_t *pols[NPOL + 1];

typedef struct {
  sim_scenario_t *scn;
  sim_result_t res[NPOL];
  bool ran[NPOL];
  double unavoidable; /* swap pages no allocation avoids (ref_unbounded) */
  sim_oracle_params_t oracle; /* the rule the oracle's search kept */
  unsigned oracle_tried;
} scn_run_t;

/* ---- the unavoidable part of the swap ---------------------------------- */

/* Every VM at its maximum on a host with room for all maxima at once: what
 * still swaps (demand above a VM's Max, the boot before the balloon has
 * grown) no allocation rule can avoid. */
static void *ref_create(const sim_scenario_t *scn) {
  static int dummy;
  return &dummy;
}
static void ref_free(void *st) {}
static int ref_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                      const mb_domain_t *d, size_t n, uint64_t *t) {
  for (size_t i = 0; i < n; i++)
    t[i] = d[i].max_kib;
  return 0;
}
static const sim_policy_t ref_unbounded = {.name = "unbounded",
                                           .desc = "every VM at its maximum",
                                           .interval_s = 0.5,
                                           .no_delay = true,
                                           .create = ref_create,
                                           .destroy = ref_free,
                                           .decide = ref_decide};

static int unavoidable_swap(const sim_scenario_t *scn, double *pages, char *err,
                            size_t errlen) {
  sim_scenario_t *big = malloc(sizeof(*big)); /* owned */
  sim_result_t r;
  if (!big) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  *big = *scn;
  uint64_t sum = big->reserve_kib;
  for (size_t i = 0; i < big->nvms; i++)
    sum += big->vm[i].fixed ? big->vm[i].mem_kib : big->vm[i].max_kib;
  big->total_kib = sum;
  int rc = sim_run(big, &ref_unbounded, big->seed, NULL, NULL, &r, err, errlen);
  *pages = r.swap_pages;
  free(big);
  return rc;
}

/* ---- --config: membal rows with other settings -------------------------- */

typedef struct {
  char label[MB_NAME_LEN];
  mb_config_t cfg;
  sim_policy_t pol;
} cfg_row_t;

static int cfg_num(const char *path, unsigned ln, const char *key,
                   const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  while (*end == ' ' || *end == '\t')
    end++;
  if (end == v || *end || errno || !(d >= lo && d <= hi)) {
    fprintf(stderr,
            "membal-bench: %s:%u: %s: '%s' is not a number in "
            "[%g, %g]\n",
            path, ln, key, v, lo, hi);
    return -1;
  }
  *out = d;
  return 0;
}

/* A file of "Key value" lines with membal's option names (sizes in KiB,
 * times in seconds): the policy and envelope options of <Plugin membal>,
 * plus Period, Interval (collectd's: guest records and vmmem reads) and
 * guestmem's UrgentPollInterval / UrgentMinInterval / StallThreshold /
 * StallWindow. */
static int cfg_load(const char *path, cfg_row_t *row) {
  FILE *f = fopen(path, "r");
  char line[512];
  unsigned ln = 0;
  int rc = -1;
  double period = -1, interval = -1;
  sim_agent_t agent = SIM_MEMBAL_AGENT;
  if (!f) {
    fprintf(stderr, "membal-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  mb_config_default(&row->cfg);
  while (fgets(line, sizeof(line), f)) {
    ln++;
    char *h = strchr(line, '#');
    if (h)
      *h = 0;
    char key[64], val[128];
    int nf = sscanf(line, " %63s %127[^\r\n]", key, val);
    if (nf <= 0)
      continue;
    if (nf != 2) {
      fprintf(stderr, "membal-bench: %s:%u: expected 'Key value'\n", path, ln);
      goto out;
    }
    char *q = val; /* quotes are optional */
    size_t l = strlen(q);
    while (l && (q[l - 1] == ' ' || q[l - 1] == '\t'))
      q[--l] = 0;
    if (l >= 2 && q[0] == '"' && q[l - 1] == '"') {
      q[l - 1] = 0;
      q++;
    }
    double d;
    mb_config_t *c = &row->cfg;
#define NUM(lo, hi)                                                            \
  if (cfg_num(path, ln, key, q, lo, hi, &d))                                   \
  goto out
    if (!strcasecmp(key, "Policy")) {
      if (!strcasecmp(q, "cagma"))
        c->kind = MB_POLICY_CAGMA;
      else if (!strcasecmp(q, "tax"))
        c->kind = MB_POLICY_TAX;
      else if (!strcasecmp(q, "selfballoon"))
        c->kind = MB_POLICY_SELFBALLOON;
      else {
        fprintf(stderr, "membal-bench: %s:%u: Policy: unknown '%s'\n", path, ln,
                q);
        goto out;
      }
    } else if (!strcasecmp(key, "TaxRate")) {
      if (!strcasecmp(q, "auto"))
        c->tax.tau_auto = true;
      else {
        NUM(0, 1);
        c->tax.tau = d;
      }
    } else if (!strcasecmp(key, "CmaMarginFraction")) {
      NUM(0, 10);
      c->cagma.margin_frac = d;
    } else if (!strcasecmp(key, "CmaMarginMin")) {
      NUM(0, 1e12);
      c->cagma.margin_min_kib = (uint64_t)d;
    } else if (!strcasecmp(key, "SwapThreshold")) {
      NUM(0, 1e9);
      c->cagma.swap_threshold_pps = d;
    } else if (!strcasecmp(key, "MajorFaultThreshold")) {
      NUM(0, 1e9);
      c->cagma.majflt_threshold_ps = d;
    } else if (!strcasecmp(key, "ForecastHorizon")) {
      NUM(0, 600);
      c->cagma.forecast_s = d;
    } else if (!strcasecmp(key, "UpHysteresis")) {
      NUM(1, 1000);
      c->selfballoon.up_hysteresis = (unsigned)d;
    } else if (!strcasecmp(key, "DownHysteresis")) {
      NUM(1, 1000);
      c->selfballoon.down_hysteresis = (unsigned)d;
    } else if (!strcasecmp(key, "StepCap")) {
      NUM(0, 1e12);
      c->step_cap_kib = (uint64_t)d;
    } else if (!strcasecmp(key, "DeadBand")) {
      NUM(0, 1e12);
      c->deadband_kib = (uint64_t)d;
    } else if (!strcasecmp(key, "StaleAfter")) {
      NUM(0.1, 86400);
      c->stale_after_s = d;
    } else if (!strcasecmp(key, "Period")) {
      NUM(0.1, 86400);
      period = d;
    } else if (!strcasecmp(key, "Interval")) {
      NUM(0.1, 86400);
      interval = d;
    } else if (!strcasecmp(key, "UrgentPollInterval")) {
      NUM(0, 3600);
      agent.poll_s = d > 0 ? d : -1;
    } else if (!strcasecmp(key, "UrgentMinInterval")) {
      NUM(0, 3600);
      agent.urgent_min_s = d > 0 ? d : -1;
    } else if (!strcasecmp(key, "StallThreshold")) {
      NUM(1e-6, 10); /* guestmem's: seconds of stall per window */
      agent.stall_us = d * 1e6;
    } else if (!strcasecmp(key, "StallWindow")) {
      NUM(0.5, 10); /* seconds, the kernel's range */
      agent.stall_window_s = d;
    } else {
      fprintf(stderr, "membal-bench: %s:%u: unknown option %s\n", path, ln,
              key);
      goto out;
    }
#undef NUM
  }
  char err[256];
  if (mb_config_validate(&row->cfg, err, sizeof(err))) {
    fprintf(stderr, "membal-bench: %s: %s\n", path, err);
    goto out;
  }
  /* UrgentPollInterval 0 turns guestmem's urgent path off, PSI trigger
   * included */
  if (agent.poll_s < 0)
    agent.stall_us = 0;
  if (interval > 0) {
    agent.publish_s = agent.read_s = interval;
    /* without Period, the plugin's default: 3 x Interval */
    if (period < 0)
      period = 3 * interval;
  }
  if (period < 0) /* the shipped drop-ins' */
    period = SIM_MEMBAL_PERIOD_S;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(row->label, sizeof(row->label), "cfg:%.*s", (int)strcspn(base, "."),
           base);
  row->pol = (sim_policy_t){.name = row->label,
                            .desc = "membal with --config settings",
                            .interval_s = period,
                            .urgent = true,
                            .urgent_gap_s = SIM_MEMBAL_URGENT_GAP_S,
                            .boot_requests = true,
                            .boot_reserve = true,
                            .agent = agent,
                            .create_arg = sim_membal_create_arg,
                            .arg = &row->cfg,
                            .destroy = sim_membal_destroy,
                            .decide = sim_membal_decide};
  rc = 0;
out:
  fclose(f);
  return rc;
}

/* ---- time series for plots -------------------------------------------- */

typedef struct {
  FILE *csv;
  size_t nvm;
  size_t rows, cap;
  float *cur, *need; /* rows x nvm, NAN when absent; owned */
  float *swap;       /* rows: cumulative swap pages of all VMs; owned */
} series_t;

static void series_obs(void *arg, const sim_model_t *m) {
  series_t *s = arg;
  if (s->csv)
    sim_csv_row(s->csv, m);
  if (s->rows == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    float *c = realloc(s->cur, cap * s->nvm * sizeof(float));
    if (!c)
      return;
    s->cur = c;
    float *nd = realloc(s->need, cap * s->nvm * sizeof(float));
    if (!nd)
      return;
    s->need = nd;
    float *sw = realloc(s->swap, cap * sizeof(float));
    if (!sw)
      return;
    s->swap = sw;
    s->cap = cap;
  }
  double pages = 0;
  for (size_t i = 0; i < s->nvm; i++)
    pages += floor(m->vm[i].pswpin) + floor(m->vm[i].pswpout);
  s->swap[s->rows] = (float)pages;
  for (size_t i = 0; i < s->nvm; i++) {
    bool p = m->vm[i].present;
    s->cur[s->rows * s->nvm + i] =
        p ? (float)(m->vm[i].current_kib * 1024.0) : NAN;
    s->need[s->rows * s->nvm + i] =
        p ? (float)(sim_model_need_at(m, i, m->t) * 1024.0) : NAN;
  }
  s->rows++;
}

#ifdef SIM_HAVE_RRD
static const char *const palette[] = {"1f77b4", "d62728", "2ca02c", "ff7f0e",
                                      "9467bd", "8c564b", "e377c2", "7f7f7f",
                                      "bcbd22", "17becf"};

/* A NULL-terminated argument vector for librrd; owns its strings. */
typedef struct {
  char **v;
  size_t n, cap;
} rrd_args_t;

static int args_add(rrd_args_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int args_add(rrd_args_t *a, const char *fmt, ...) {
  if (a->n + 1 >= a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    char **nv = realloc(a->v, cap * sizeof(*nv));
    if (!nv)
      return -1;
    a->v = nv;
    a->cap = cap;
  }
  char tmp[2200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (!(a->v[a->n] = strdup(tmp)))
    return -1;
  a->v[++a->n] = NULL;
  return 0;
}

/* Drops the strings, keeps the vector for the next command. */
static void args_clear(rrd_args_t *a) {
  for (size_t i = 0; i < a->n; i++)
    free(a->v[i]);
  a->n = 0;
}

static void args_free(rrd_args_t *a) {
  args_clear(a);
  free(a->v);
  a->v = NULL;
  a->cap = 0;
}

/* Both plots: the "graph ... " arguments up to the data lines. */
static int graph_head(rrd_args_t *a, const char *png, size_t rows,
                      const char *title, const char *unit, bool base1024) {
  if (args_add(a, "graph") || args_add(a, "%s", png) ||
      args_add(a, "--start=%lu", (unsigned long)RRD_BASE) ||
      args_add(a, "--end=%lu", (unsigned long)(RRD_BASE + rows)) ||
      args_add(a, "--title=%s", title) ||
      args_add(a, "--vertical-label=%s", unit) || args_add(a, "--width=900") ||
      args_add(a, "--height=300") || (base1024 && args_add(a, "--base=1024")) ||
      args_add(a, "--lower-limit=0") ||
      args_add(a, "--x-grid=MINUTE:1:MINUTE:5:MINUTE:5:0:%%M:%%S"))
    return -1;
  return 0;
}

/* Both plots: the time-axis note, then the graph itself. */
static int graph_finish(rrd_args_t *a, const char *png) {
  if (args_add(a, "COMMENT:\\n") ||
      args_add(a, "COMMENT:time axis\\: minutes\\:seconds since the start of "
                  "the run"))
    return -1;
  rrd_clear_error();
  rrd_info_t *info = rrd_graph_v((int)a->n, a->v);
  if (!info) {
    fprintf(stderr, "membal-bench: rrd graph %s: %s\n", png, rrd_get_error());
    return -1;
  }
  rrd_info_free(info);
  return 0;
}

/* Both plots: a fresh RRD of step 1 s from the DS/RRA arguments in a. */
static int rrd_fresh(const char *rrdf, rrd_args_t *a) {
  unlink(rrdf);
  rrd_clear_error();
  if (rrd_create_r(rrdf, 1, RRD_BASE, (int)a->n, (const char **)a->v)) {
    fprintf(stderr, "membal-bench: rrd create %s: %s\n", rrdf, rrd_get_error());
    return -1;
  }
  return 0;
}

/* Both plots: one "time:value:..." row into the RRD. */
static int rrd_row(const char *rrdf, const char *line) {
  const char *argv1[1] = {line};
  if (rrd_update_r(rrdf, NULL, 1, argv1)) {
    fprintf(stderr, "membal-bench: rrd update %s: %s\n", rrdf, rrd_get_error());
    return -1;
  }
  return 0;
}

#define ADD(...)                                                               \
  do {                                                                         \
    if (args_add(&args, __VA_ARGS__) != 0)                                     \
      goto out;                                                                \
  } while (0)

/* A policy's name as rrdtool takes it: a file name without ':' (DEF
 * splits on it) and a legend with ':' escaped ("cfg:interval1"). */
static void rrd_safe(char *dst, size_t n, const char *name, bool legend) {
  size_t o = 0;
  for (; *name && o + 3 < n; name++) {
    if (*name == ':' && legend)
      dst[o++] = '\\';
    dst[o++] = *name == ':' && !legend ? '_' : *name;
  }
  dst[o] = '\0';
}

/* Feeds the series into an RRD (step 1 s) and graphs it. */
static int plot(const char *dir, const sim_scenario_t *scn,
                const sim_policy_t *pol, const series_t *s) {
  char rrdf[1024], png[1024], title[256];
  rrd_args_t args = {0}; /* owned */
  int rc = -1;
  char fname[128];
  rrd_safe(fname, sizeof(fname), pol->name, false);
  snprintf(rrdf, sizeof(rrdf), "%s/%s-%s.rrd", dir, scn->name, fname);
  snprintf(png, sizeof(png), "%s/%s-%s.png", dir, scn->name, fname);
  size_t nvm = s->nvm < 10 ? s->nvm : 10; /* ten lines stay readable */
  for (size_t i = 0; i < nvm; i++) {
    ADD("DS:c%zu:GAUGE:5:0:U", i);
    ADD("DS:n%zu:GAUGE:5:0:U", i);
  }
  ADD("RRA:AVERAGE:0.5:1:%zu", s->rows + 10);
  if (rrd_fresh(rrdf, &args) != 0)
    goto out;
  for (size_t r = 0; r < s->rows; r++) {
    char line[4096];
    size_t o = (size_t)snprintf(line, sizeof(line), "%lu",
                                (unsigned long)(RRD_BASE + 1 + r));
    for (size_t i = 0; i < nvm && o < sizeof(line) - 64; i++) {
      float c = s->cur[r * s->nvm + i], nd = s->need[r * s->nvm + i];
      if (isnan(c))
        o += (size_t)snprintf(line + o, sizeof(line) - o, ":U:U");
      else
        o += (size_t)snprintf(line + o, sizeof(line) - o, ":%.0f:%.0f", c, nd);
    }
    if (rrd_row(rrdf, line) != 0)
      goto out;
  }
  args_clear(&args);
  snprintf(title, sizeof(title),
           "%s / %s: memory (solid) and demand (dashed) per VM", scn->name,
           pol->name);
  if (graph_head(&args, png, s->rows, title, "bytes", true) != 0)
    goto out;
  for (size_t i = 0; i < nvm; i++) {
    const char *col = palette[i % 10];
    ADD("DEF:c%zu=%s:c%zu:AVERAGE", i, rrdf, i);
    ADD("DEF:n%zu=%s:n%zu:AVERAGE", i, rrdf, i);
    ADD("LINE2:c%zu#%s:%s", i, col, scn->vm[i].name);
    ADD("LINE1:n%zu#%s::dashes=4,3", i, col);
  }
  if (graph_finish(&args, png) != 0)
    goto out;
  rc = 0;
out:
  args_free(&args);
  return rc;
}

/* Cumulative swap I/O of every policy on one scenario. */
static int plot_swap(const char *dir, const sim_scenario_t *scn,
                     float *const *swap, const size_t *rows) {
  char rrdf[1024], png[1024], title[256];
  rrd_args_t args = {0}; /* owned */
  size_t n = 0;
  int rc = -1;
  const char *const cols[] = {"d62728", "ff7f0e", "bcbd22", "000000",
                              "1f77b4", "17becf", "9467bd", "8c564b",
                              "e377c2", "2ca02c", "7f7f7f", "7f7f7f"};
  snprintf(rrdf, sizeof(rrdf), "%s/%s-swap.rrd", dir, scn->name);
  snprintf(png, sizeof(png), "%s/%s-swap.png", dir, scn->name);
  for (int p = 0; pols[p]; p++)
    if (swap[p] && rows[p] > n)
      n = rows[p];
  if (n == 0)
    return 0;
  for (int p = 0; pols[p]; p++)
    ADD("DS:p%d:GAUGE:5:0:U", p);
  ADD("RRA:AVERAGE:0.5:1:%zu", n + 10);
  if (rrd_fresh(rrdf, &args) != 0)
    goto out;
  for (size_t r = 0; r < n; r++) {
    char line[1024];
    size_t o = (size_t)snprintf(line, sizeof(line), "%lu",
                                (unsigned long)(RRD_BASE + 1 + r));
    for (int p = 0; pols[p] && o < sizeof(line) - 32; p++) {
      if (swap[p] && r < rows[p])
        o += (size_t)snprintf(line + o, sizeof(line) - o, ":%.0f", swap[p][r]);
      else
        o += (size_t)snprintf(line + o, sizeof(line) - o, ":U");
    }
    if (rrd_row(rrdf, line) != 0)
      goto out;
  }
  args_clear(&args);
  snprintf(title, sizeof(title), "%s: cumulative swap I/O (pages) per policy",
           scn->name);
  if (graph_head(&args, png, n, title, "pages", false) != 0)
    goto out;
  for (int p = 0; pols[p]; p++) {
    if (!swap[p])
      continue;
    char legend[128];
    rrd_safe(legend, sizeof(legend), pols[p]->name, true);
    ADD("DEF:p%d=%s:p%d:AVERAGE", p, rrdf, p);
    ADD("LINE%d:p%d#%s:%s", p == 0 ? 3 : 1, p, cols[p % 12], legend);
  }
  if (graph_finish(&args, png) != 0)
    goto out;
  rc = 0;
out:
  args_free(&args);
  return rc;
}
#undef ADD
#endif

/* ---- tables ------------------------------------------------------------ */

static int pol_index(const char *name) {
  for (int i = 0; pols[i]; i++)
    if (!strcmp(pols[i]->name, name))
      return i;
  return -1;
}

static void fmt_ratio(char *b, size_t n, double a, double ref) {
  if (ref > 0)
    snprintf(b, n, "%.2f", a / ref);
  else
    snprintf(b, n, a > 0 ? "inf" : "1.00");
}

/* One row's cells, shared by the terminal and the markdown table. */
typedef struct {
  char name[MB_NAME_LEN], swap[24], avoid[24], xo[16], oom[32], slow[16],
      p99[16], psi[16], moved[24], rps[16], boot[24], idle[16];
} cells_t;

static void row_cells(const scn_run_t *sr, int p, double oracle_avoid,
                      cells_t *c) {
  const sim_result_t *r = &sr->res[p];
  double avoid = fmax(0, r->swap_pages - sr->unavoidable);
  snprintf(c->name, sizeof(c->name), "%s", pols[p]->name);
  snprintf(c->swap, sizeof(c->swap), "%.0f", r->swap_pages);
  snprintf(c->avoid, sizeof(c->avoid), "%.0f", avoid);
  fmt_ratio(c->xo, sizeof(c->xo), avoid, oracle_avoid);
  snprintf(c->oom, sizeof(c->oom), "%llu/%llu",
           (unsigned long long)r->oom_kills, (unsigned long long)r->oom_mib);
  snprintf(c->slow, sizeof(c->slow), "%.2f", r->slowdown_mean);
  snprintf(c->p99, sizeof(c->p99), "%.1f", r->slowdown_p99);
  snprintf(c->psi, sizeof(c->psi), "%.1f", r->psi_some_pct);
  snprintf(c->moved, sizeof(c->moved), "%.0f", r->balloon_mib_moved);
  snprintf(c->rps, sizeof(c->rps), "%.2f", r->rounds_per_s);
  snprintf(c->boot, sizeof(c->boot), "%llu/%.0f",
           (unsigned long long)r->boot_failed, r->boot_wait_s);
  snprintf(c->idle, sizeof(c->idle), "%.0f", r->idle_mib);
}

static void print_table(FILE *f, const scn_run_t *sr, bool md) {
  const sim_scenario_t *scn = sr->scn;
  int io = pol_index("oracle");
  double oracle_avoid = io >= 0 && sr->ran[io]
                            ? fmax(0, sr->res[io].swap_pages - sr->unavoidable)
                            : -1;
  char rule[160] = "";
  if (io >= 0 && sr->ran[io])
    snprintf(
        rule, sizeof(rule),
        "oracle: best of %u rules: lookahead %.0f s, margin %.0f %%, "
        "serve %s, %s%s",
        sr->oracle_tried, sr->oracle.lookahead_s, 100 * sr->oracle.margin_frac,
        sim_oracle_order_name(sr->oracle.order),
        sr->oracle.boot_reserve ? "holds memory for boots" : "no boot reserve",
        sr->oracle.keep_cold ? ", keeps cold memory" : "");
  if (md) {
    fprintf(f, "\n### %s\n\n%s (%.0f s; unavoidable swap %.0f pages; %s)\n\n",
            scn->name, scn->title, scn->duration_s, sr->unavoidable, rule);
    fprintf(f, "| policy | swap pages | avoidable | ×oracle | OOM kills/MiB "
               "| slowdown | p99 | PSI some %% | balloon MiB | rounds/s | boot "
               "failed/wait s | idle MiB |\n");
    fprintf(f, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  } else {
    fprintf(f, "\n== %s: %s (%.0f s, unavoidable swap %.0f pages)\n   %s\n",
            scn->name, scn->title, scn->duration_s, sr->unavoidable, rule);
    fprintf(f, "%-12s %9s %9s %6s %9s %6s %6s %5s %8s %5s %9s %6s\n", "policy",
            "swap_pg", "avoidable", "x_orc", "oom_n/MiB", "slow", "p99", "psi%",
            "moved_Mi", "rnd/s", "boot_f/w", "idle");
  }
  for (int p = 0; pols[p]; p++) {
    if (!sr->ran[p])
      continue;
    cells_t c;
    row_cells(sr, p, oracle_avoid, &c);
    if (md)
      fprintf(f,
              "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
              c.name, c.swap, c.avoid, c.xo, c.oom, c.slow, c.p99, c.psi,
              c.moved, c.rps, c.boot, c.idle);
    else
      fprintf(f, "%-12s %9s %9s %6s %9s %6s %6s %5s %8s %5s %9s %6s\n", c.name,
              c.swap, c.avoid, c.xo, c.oom, c.slow, c.p99, c.psi, c.moved,
              c.rps, c.boot, c.idle);
  }
}

static void csv_rows(FILE *f, const scn_run_t *sr) {
  for (int p = 0; pols[p]; p++) {
    if (!sr->ran[p])
      continue;
    const sim_result_t *r = &sr->res[p];
    fprintf(f,
            "%s,%s,%.0f,%.0f,%.0f,%.4f,%.4f,%.3f,%.2f,%.2f,%.1f,%llu,%.1f,"
            "%.1f,%.1f,%u,%llu,%llu,%.1f,%.0f,%llu,%.1f,%.3f,%.2f,%.2f,%.0f,"
            "%llu\n",
            sr->scn->name, pols[p]->name, r->swap_pages, r->swapin_pages,
            r->swapout_pages, r->slowdown_mean, r->slowdown_p99,
            r->disk_resp_ms, r->diskvm_iops, r->diskvm_iops_free, r->idle_mib,
            (unsigned long long)r->balloon_changes, r->react_cover_max_s,
            r->react_cover_mean_s, r->react_decide_max_s, r->react_events,
            (unsigned long long)r->oom_mib, (unsigned long long)r->rounds,
            r->boot_wait_s, sr->unavoidable, (unsigned long long)r->oom_kills,
            r->balloon_mib_moved, r->rounds_per_s, r->psi_some_pct,
            r->psi_full_pct, r->refault_pages,
            (unsigned long long)r->boot_failed);
  }
}

/* ---- the committed results file --------------------------------------- */

/* First line of a command's output, or "" (the commit for the doc). */
static void cmd_line(const char *cmd, char *buf, size_t n) {
  buf[0] = 0;
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  if (fgets(buf, (int)n, p))
    buf[strcspn(buf, "\r\n")] = 0;
  else
    buf[0] = 0;
  pclose(p);
}

/* Avoidable swap of every policy over the oracle's, per scenario: the
 * summary at the top of the doc. */
static void summary(FILE *f, const scn_run_t *runs, size_t nr) {
  int io = pol_index("oracle");
  fprintf(f, "| scenario |");
  for (int p = 0; pols[p]; p++)
    if (p != io)
      fprintf(f, " %s |", pols[p]->name);
  fprintf(f, "\n|---|");
  for (int p = 0; pols[p]; p++)
    if (p != io)
      fprintf(f, "--:|");
  fprintf(f, "\n");
  for (size_t k = 0; k < nr; k++) {
    const scn_run_t *sr = &runs[k];
    double oa = io >= 0 && sr->ran[io]
                    ? fmax(0, sr->res[io].swap_pages - sr->unavoidable)
                    : -1;
    /* a row that failed to boot a VM or killed processes cannot be best */
    double best = INFINITY;
    for (int p = 0; pols[p]; p++)
      if (p != io && sr->ran[p] && !sr->res[p].boot_failed &&
          !sr->res[p].oom_kills)
        best = fmin(best, fmax(0, sr->res[p].swap_pages - sr->unavoidable));
    fprintf(f, "| %s |", sr->scn->name);
    for (int p = 0; pols[p]; p++) {
      if (p == io)
        continue;
      if (!sr->ran[p]) {
        fprintf(f, " - |");
        continue;
      }
      char b[16];
      double av = fmax(0, sr->res[p].swap_pages - sr->unavoidable);
      fmt_ratio(b, sizeof(b), av, oa);
      bool failed = sr->res[p].oom_kills || sr->res[p].boot_failed;
      fprintf(f, av <= best && !failed ? " **%s**%s%s |" : " %s%s%s |", b,
              sr->res[p].oom_kills ? "†" : "",
              sr->res[p].boot_failed ? "‡" : "");
    }
    fprintf(f, "\n");
  }
}

static int write_doc(const char *path, int argc, char **argv,
                     const scn_run_t *runs, size_t nr, double seed) {
  char commit[64], dirty[64];
  /* Asked before the document is opened: opening truncates it, and a
   * tracked document would make every tree look modified. */
  cmd_line("git rev-parse --short=12 HEAD 2>/dev/null", commit, sizeof(commit));
  cmd_line("git status --porcelain --untracked-files=no 2>/dev/null | head -1",
           dirty, sizeof(dirty));
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "membal-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  fprintf(f, "# membal benchmark results\n\n");
  char seedtxt[64];
  if (seed >= 0)
    snprintf(seedtxt, sizeof(seedtxt), "%.0f", seed);
  else
    snprintf(seedtxt, sizeof(seedtxt), "each scenario's own");
  fprintf(f,
          "Generated by `membal-bench` (sim/bench.c); do not edit. Commit "
          "`%s%s`, seed %s. Command:\n\n    ",
          commit[0] ? commit : "unknown",
          dirty[0] ? " + uncommitted changes" : "", seedtxt);
  for (int i = 0; i < argc; i++)
    fprintf(f, "%s%s", i ? " " : "", i == 0 ? "membal-bench" : argv[i]);
  fprintf(f, "\n\nWhat the columns mean, the model and every policy's rule "
             "and cadence: sim/README.md. membal's rows (cagma, tax, "
             "selfballoon) run at its shipped defaults (guest records every "
             "2 s, a round every 2 s and on each urgent record, an urgent "
             "record on guestmem's PSI trigger, at most one per second per "
             "guest); `cfg:` rows are "
             "membal with another configuration (`--config`).\n\n");
  fprintf(f, "## Summary: avoidable swap over the oracle's\n\n"
             "Swap I/O pages minus what no allocation avoids (every VM at "
             "its maximum on a host big enough for all), divided by the "
             "oracle's; lower is better, bold is the best non-oracle row, † "
             "marks rows with OOM kills, ‡ rows where a VM never booted "
             "(a VM that does not run does not swap: such a row is never "
             "best), `inf` a policy that swaps where the oracle does "
             "not.\n\n");
  summary(f, runs, nr);
  fprintf(f, "\n## Per scenario\n");
  for (size_t k = 0; k < nr; k++)
    print_table(f, &runs[k], true);
  if (fclose(f)) {
    fprintf(stderr, "membal-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- ordering check ---------------------------------------------------- */

static int check_order(const char *path, scn_run_t *runs, size_t nr) {
  FILE *f = fopen(path, "r");
  char line[512];
  int bad = 0;
  unsigned ln = 0, checked = 0;
  if (!f) {
    fprintf(stderr, "membal-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof(line), f)) {
    ln++;
    char *h = strchr(line, '#');
    if (h)
      *h = 0;
    char *tok[32], *save = NULL;
    int nt = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t && nt < 32;
         t = strtok_r(NULL, " \t\r\n", &save))
      tok[nt++] = t;
    if (nt == 0)
      continue;
    if (nt < 4 || nt % 2) {
      fprintf(stderr, "%s:%u: expected 'scenario p1 <= p2 < p3'\n", path, ln);
      bad = 1;
      continue;
    }
    scn_run_t *sr = NULL;
    for (size_t i = 0; i < nr; i++)
      if (!strcmp(runs[i].scn->name, tok[0]))
        sr = &runs[i];
    if (!sr) {
      fprintf(stderr, "%s:%u: scenario %s was not run\n", path, ln, tok[0]);
      bad = 1;
      continue;
    }
    for (int k = 1; k + 2 < nt; k += 2) {
      int a = pol_index(tok[k]), b = pol_index(tok[k + 2]);
      const char *op = tok[k + 1];
      if (a < 0 || b < 0 || !sr->ran[a] || !sr->ran[b] ||
          (strcmp(op, "<") && strcmp(op, "<="))) {
        fprintf(stderr, "%s:%u: bad term '%s %s %s'\n", path, ln, tok[k], op,
                tok[k + 2]);
        bad = 1;
        continue;
      }
      double x = sr->res[a].swap_pages, y = sr->res[b].swap_pages;
      bool ok = !strcmp(op, "<") ? x < y : x <= y;
      printf("check %-8s %s (%.0f) %s %s (%.0f): %s\n", tok[0], tok[k], x, op,
             tok[k + 2], y, ok ? "ok" : "FAILED");
      if (!ok)
        bad = 1;
      checked++;
    }
  }
  fclose(f);
  if (checked == 0) {
    fprintf(stderr, "membal-bench: %s: nothing checked\n", path);
    bad = 1;
  }
  return bad ? -1 : 0;
}

/* ---- policy cost --------------------------------------------------------- */

/* A host of n domains with plausible, varied samples (fixed pattern). */
static void cost_host(size_t n, mb_host_t *h, mb_domain_t *d) {
  memset(h, 0, sizeof(*h));
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    mb_domain_t *x = &d[i];
    memset(x, 0, sizeof(*x));
    x->domid = (uint32_t)(i + 1);
    snprintf(x->name, sizeof(x->name), "vm%zu", i + 1);
    uint64_t cur = (512 + (i * 7919) % 1536) * 1024;
    x->current_kib = x->target_kib = cur;
    x->max_kib = 4096 * 1024;
    x->weight = 1 + (uint32_t)(i % 3);
    x->has_sample = true;
    mb_sample_t *s = &x->sample;
    uint64_t used = cur / 4 + ((i * 104729) % (cur / 2));
    uint64_t total = cur - 16384;
    uint64_t cached = (total - used) / 3;
    uint64_t fr = total - used - cached;
    s->v[MB_F_MEMTOTAL] = total;
    s->v[MB_F_MEMFREE] = fr;
    s->v[MB_F_MEMAVAILABLE] = fr + cached;
    s->v[MB_F_CACHED] = cached;
    s->v[MB_F_BUFFERS] = 1024;
    s->v[MB_F_ANONPAGES] = used - 40000 > used ? used : used - 40000;
    s->v[MB_F_ACTIVE_ANON] = s->v[MB_F_ANONPAGES] * 4 / 5;
    s->v[MB_F_COMMITTED_AS] = used * 6 / 5;
    s->v[MB_F_SWAPTOTAL] = 1048576;
    s->v[MB_F_SWAPFREE] = 1048576 - (i % 5 == 0 ? 65536 : 0);
    s->v[MB_F_PSWPIN] = i * 10;
    s->v[MB_F_PSWPOUT] = i * 10;
    s->v[MB_F_PGMAJFAULT] = i * 20;
    for (int f = 0; f < MB_F_COUNT; f++)
      if (f == MB_F_MEMTOTAL || f == MB_F_MEMFREE || f == MB_F_MEMAVAILABLE ||
          f == MB_F_CACHED || f == MB_F_BUFFERS || f == MB_F_ANONPAGES ||
          f == MB_F_ACTIVE_ANON || f == MB_F_COMMITTED_AS ||
          f == MB_F_SWAPTOTAL || f == MB_F_SWAPFREE || f == MB_F_PSWPIN ||
          f == MB_F_PSWPOUT || f == MB_F_PGMAJFAULT)
        s->have |= UINT64_C(1) << f;
    s->seq = 10;
    s->uptime_ms = 100000;
    x->rates.valid = true;
    x->rates.swapin_pps = (i % 5 == 0) ? 100 : 0;
    x->rates.swapout_pps = 0;
    x->sample_age_s = 0.5;
    sum += cur;
  }
  h->total_kib = sum + sum / 10 + 1048576;
  h->reserve_kib = 1048576;
  h->free_kib = sum / 10;
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cost_rounds(size_t n, unsigned rounds, double *per_round_s) {
  mb_host_t h;
  mb_domain_t *d = calloc(n, sizeof(*d));   /* owned */
  mb_decision_t *o = calloc(n, sizeof(*o)); /* owned */
  int rc = -1;
  if (!d || !o)
    goto out;
  cost_host(n, &h, d);
  mb_config_t cfg;
  mb_state_t st;
  mb_config_default(&cfg);
  mb_state_init(&st, &cfg);
  double t0 = cpu_now();
  unsigned done = 0;
  while (done < rounds || (per_round_s && cpu_now() - t0 < 0.3)) {
    if (mb_policy_compute(&cfg, &st, &h, d, n, o))
      goto out;
    done++;
    if (done >= 100000)
      break;
  }
  if (per_round_s)
    *per_round_s = (cpu_now() - t0) / done;
  rc = 0;
out:
  free(d);
  free(o);
  return rc;
}

/* Instructions of mb_policy_compute per round under callgrind. */
static double callgrind_ir(const char *self, size_t n, unsigned rounds) {
  char out[] = "/tmp/membal-callgrind-XXXXXX";
  int fd = mkstemp(out);
  if (fd < 0)
    return -1;
  close(fd);
  char nbuf[32], rbuf[32], ofile[128];
  snprintf(nbuf, sizeof(nbuf), "%zu", n);
  snprintf(rbuf, sizeof(rbuf), "%u", rounds);
  snprintf(ofile, sizeof(ofile), "--callgrind-out-file=%s", out);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stderr))
      _exit(127);
    execlp("valgrind", "valgrind", "--tool=callgrind", ofile,
           "--toggle-collect=mb_policy_compute", self, "--cost-one", nbuf,
           "--rounds", rbuf, (char *)NULL);
    _exit(127);
  }
  int status;
  double ir = -1;
  if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
      WEXITSTATUS(status) == 0) {
    FILE *f = fopen(out, "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f))
      if (!strncmp(line, "summary:", 8) || !strncmp(line, "totals:", 7))
        ir = strtod(strchr(line, ':') + 1, NULL) / rounds;
    if (f)
      fclose(f);
  }
  unlink(out);
  return ir;
}

static int cost_bench(const char *self, bool callgrind) {
  static const size_t ns[] = {10, 100, 1000, 10000};
  double prev_t = 0, prev_ir = 0;
  printf("policy cost: mb_policy_compute, default config (cagma), one round\n");
  printf("%8s %14s %14s %12s %16s %14s\n", "domains", "cpu_us/round",
         "cpu_ns/domain", "growth", "instr/round", "instr/domain");
  for (size_t k = 0; k < 4; k++) {
    size_t n = ns[k];
    double t;
    if (cost_rounds(n, 3, &t)) {
      fprintf(stderr, "membal-bench: cost round failed at n=%zu\n", n);
      return 1;
    }
    double ir = callgrind ? callgrind_ir(self, n, 3) : -1;
    char growth[32] = "-", irs[32] = "-", irpd[32] = "-";
    /* growth relative to N log N: 1.0 means exactly N log N */
    if (k > 0) {
      double nl = (double)n * log((double)n);
      double pl = (double)ns[k - 1] * log((double)ns[k - 1]);
      double base = ir > 0 && prev_ir > 0 ? ir / prev_ir : t / prev_t;
      snprintf(growth, sizeof(growth), "%.2fx NlogN", base / (nl / pl));
    }
    if (ir > 0) {
      snprintf(irs, sizeof(irs), "%.0f", ir);
      snprintf(irpd, sizeof(irpd), "%.0f", ir / (double)n);
    }
    printf("%8zu %14.1f %14.1f %12s %16s %14s\n", n, t * 1e6,
           t * 1e9 / (double)n, growth, irs, irpd);
    prev_t = t;
    prev_ir = ir;
  }
  printf("growth: cost ratio to the previous row divided by the N log N "
         "ratio (instructions when measured, else CPU time); <= 1 means no "
         "faster than N log N\n");
  return 0;
}

/* ---- main ---- */

/* Strict number option: the whole text, within [lo, hi]. */
static int opt_num(const char *opt, const char *v, double lo, double hi,
                   double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (end == v || *end || errno || !(d >= lo && d <= hi)) {
    fprintf(stderr, "membal-bench: %s: '%s' is not a number in [%g, %g]\n", opt,
            v, lo, hi);
    return -1;
  }
  *out = d;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* name is in the comma-separated list */
static bool in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    if (l == n && !strncmp(p, name, n))
      return true;
    if (!c)
      break;
    p = c + 1;
  }
  return false;
}

static bool in_short(const char *name) {
  for (size_t i = 0; short_set[i]; i++)
    if (!strcmp(short_set[i], name))
      return true;
  return false;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *out = "bench-out", *check = NULL, *only = NULL;
  const char *doc = NULL;
  double oracle_rules = -1;
  bool shortset = false, noplot = false, cost = false, cg = false;
  static cfg_row_t cfgs[NPOL];
  size_t ncfg = 0, npol = 0;
  for (; sim_policies[npol]; npol++)
    pols[npol] = sim_policies[npol];
  double seed = -1;
  double cost_one = -1, rounds = 3;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--short"))
      shortset = true;
    else if (!strcmp(o, "--no-plot"))
      noplot = true;
    else if (!strcmp(o, "--cost"))
      cost = true;
    else if (!strcmp(o, "--callgrind"))
      cg = true;
    else if (v && !strcmp(o, "--scenarios"))
      dir = v, i++;
    else if (v && !strcmp(o, "--out"))
      out = v, i++;
    else if (v && !strcmp(o, "--only"))
      only = v, i++;
    else if (v && !strcmp(o, "--check"))
      check = v, i++;
    else if (v && !strcmp(o, "--doc"))
      doc = v, i++;
    else if (v && !strcmp(o, "--oracle-rules")) {
      if (opt_num(o, v, 1, SIM_ORACLE_RULES, &oracle_rules))
        return 2;
      i++;
    } else if (v && !strcmp(o, "--config")) {
      if (npol >= NPOL) {
        fprintf(stderr, "membal-bench: too many --config\n");
        return 2;
      }
      if (cfg_load(v, &cfgs[ncfg]))
        return 2;
      pols[npol++] = &cfgs[ncfg++].pol;
      i++;
    } else if (v && !strcmp(o, "--seed")) {
      if (opt_num(o, v, 0, 4e9, &seed))
        return 2;
      i++;
    } else if (v && !strcmp(o, "--cost-one")) {
      if (opt_num(o, v, 1, 1e6, &cost_one))
        return 2;
      i++;
    } else if (v && !strcmp(o, "--rounds")) {
      if (opt_num(o, v, 1, 1e6, &rounds))
        return 2;
      i++;
    } else {
      fprintf(stderr,
              "usage: membal-bench [--scenarios DIR] [--out DIR] [--seed N] "
              "[--short] [--only SCN,...] [--check FILE] [--no-plot]\n"
              "                   [--config FILE]... [--doc FILE] "
              "[--oracle-rules N]\n"
              "       membal-bench --cost [--callgrind]\n");
      return 2;
    }
  }
  if (oracle_rules < 0)
    oracle_rules = shortset ? 4 : SIM_ORACLE_RULES;
  if (cost_one > 0)
    return cost_rounds((size_t)cost_one, (unsigned)rounds, NULL) ? 1 : 0;
  if (cost)
    return cost_bench(argv[0], cg);
  if (!dir) {
    fprintf(stderr, "membal-bench: --scenarios DIR is required\n");
    return 2;
  }
  setenv("TZ", "UTC", 1);
  tzset();
  if (mkdir(out, 0755) && errno != EEXIST) {
    fprintf(stderr, "membal-bench: %s: %s\n", out, strerror(errno));
    return 1;
  }

  DIR *dh = opendir(dir);
  if (!dh) {
    fprintf(stderr, "membal-bench: %s: %s\n", dir, strerror(errno));
    return 1;
  }
  char *names[MAX_SCN];
  size_t nn = 0;
  struct dirent *de;
  while ((de = readdir(dh)) && nn < MAX_SCN) {
    size_t l = strlen(de->d_name);
    if (l > 4 && !strcmp(de->d_name + l - 4, ".scn"))
      names[nn++] = strdup(de->d_name);
  }
  closedir(dh);
  qsort(names, nn, sizeof(char *), cmp_str);

  static scn_run_t runs[MAX_SCN];
  size_t nr = 0;
  int rc = 0;
  char path[1024], err[512];
  snprintf(path, sizeof(path), "%s/bench.csv", out);
  FILE *csv = fopen(path, "w");
  snprintf(path, sizeof(path), "%s/bench.md", out);
  FILE *md = fopen(path, "w");
  if (!csv || !md) {
    fprintf(stderr, "membal-bench: cannot write in %s\n", out);
    return 1;
  }
  fprintf(csv, "scenario,policy,swap_pages,swapin_pages,swapout_pages,"
               "slowdown_mean,slowdown_p99,disk_resp_ms,diskvm_iops,"
               "diskvm_iops_alone,idle_mib,balloon_changes,react_cover_max_s,"
               "react_cover_mean_s,react_decide_max_s,react_events,oom_mib,"
               "rounds,boot_wait_s,unavoidable_pages,oom_kills,"
               "balloon_mib_moved,rounds_per_s,psi_some_pct,psi_full_pct,"
               "refault_pages,boot_failed\n");
  for (size_t k = 0; k < nn; k++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
    sim_scenario_t *scn = sim_scenario_load(path, err, sizeof(err));
    if (!scn) {
      fprintf(stderr, "membal-bench: %s\n", err);
      rc = 1;
      continue;
    }
    if ((shortset && !in_short(scn->name)) ||
        (only && !in_list(only, scn->name))) {
      free(scn);
      continue;
    }
    if (seed >= 0)
      scn->seed = (uint64_t)seed;
    scn_run_t *sr = &runs[nr++];
    sr->scn = scn;
    if (unavoidable_swap(scn, &sr->unavoidable, err, sizeof(err))) {
      fprintf(stderr, "membal-bench: %s/unbounded: %s\n", scn->name, err);
      rc = 1;
    }
    float *swap[NPOL] = {NULL}; /* owned */
    size_t swap_rows[NPOL] = {0};
    for (int p = 0; pols[p]; p++) {
      series_t ser = {0};
      ser.nvm = scn->nvms;
      char cpath[1024];
      snprintf(cpath, sizeof(cpath), "%s/%s-%s.csv", out, scn->name,
               pols[p]->name);
      ser.csv = shortset ? NULL : fopen(cpath, "w");
      if (ser.csv)
        sim_csv_header(ser.csv, scn);
      const sim_policy_t *run_pol = pols[p];
      sim_policy_t searched;
      if (pols[p] == &sim_policy_oracle) {
        /* the reference: the best rule of the oracle's family, run once
         * more for the per-second outputs */
        sim_result_t best;
        if (sim_oracle_search(scn, scn->seed, (unsigned)oracle_rules,
                              &sr->oracle, &best, &sr->oracle_tried, err,
                              sizeof(err))) {
          fprintf(stderr, "membal-bench: %s/oracle search: %s\n", scn->name,
                  err);
          rc = 1;
          continue;
        }
        searched = sim_policy_oracle;
        searched.create_arg = sim_oracle_create_arg;
        searched.arg = &sr->oracle;
        run_pol = &searched;
      }
      if (sim_run(scn, run_pol, scn->seed, series_obs, &ser, &sr->res[p], err,
                  sizeof(err))) {
        fprintf(stderr, "membal-bench: %s/%s: %s\n", scn->name, pols[p]->name,
                err);
        rc = 1;
      } else {
        sr->ran[p] = true;
      }
      if (ser.csv)
        fclose(ser.csv);
#ifdef SIM_HAVE_RRD
      if (!noplot && !shortset && sr->ran[p] && ser.rows &&
          plot(out, scn, pols[p], &ser))
        rc = 1;
#else
      (void)noplot;
#endif
      free(ser.cur);
      free(ser.need);
      if (sr->ran[p]) {
        swap[p] = ser.swap;
        swap_rows[p] = ser.rows;
      } else {
        free(ser.swap);
      }
    }
#ifdef SIM_HAVE_RRD
    if (!noplot && !shortset && plot_swap(out, scn, swap, swap_rows))
      rc = 1;
#endif
    for (int p = 0; p < NPOL; p++)
      free(swap[p]);
    print_table(stdout, sr, false);
    print_table(md, sr, true);
    csv_rows(csv, sr);
    fflush(stdout);
  }
  fclose(csv);
  fclose(md);
  if (check && check_order(check, runs, nr))
    rc = 1;
  if (doc && write_doc(doc, argc, argv, runs, nr, seed))
    rc = 1;
  for (size_t i = 0; i < nr; i++)
    free(runs[i].scn);
  for (size_t k = 0; k < nn; k++)
    free(names[k]);
  return rc;
}
