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

typedef struct {
  sim_scenario_t *scn;
  sim_result_t res[NPOL];
  bool ran[NPOL];
} scn_run_t;

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

/* Feeds the series into an RRD (step 1 s) and graphs it. */
static int plot(const char *dir, const sim_scenario_t *scn,
                const sim_policy_t *pol, const series_t *s) {
  char rrdf[1024], png[1024], title[256];
  rrd_args_t args = {0}; /* owned */
  int rc = -1;
  snprintf(rrdf, sizeof(rrdf), "%s/%s-%s.rrd", dir, scn->name, pol->name);
  snprintf(png, sizeof(png), "%s/%s-%s.png", dir, scn->name, pol->name);
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
  for (int p = 0; sim_policies[p]; p++)
    if (swap[p] && rows[p] > n)
      n = rows[p];
  if (n == 0)
    return 0;
  for (int p = 0; sim_policies[p]; p++)
    ADD("DS:p%d:GAUGE:5:0:U", p);
  ADD("RRA:AVERAGE:0.5:1:%zu", n + 10);
  if (rrd_fresh(rrdf, &args) != 0)
    goto out;
  for (size_t r = 0; r < n; r++) {
    char line[1024];
    size_t o = (size_t)snprintf(line, sizeof(line), "%lu",
                                (unsigned long)(RRD_BASE + 1 + r));
    for (int p = 0; sim_policies[p] && o < sizeof(line) - 32; p++) {
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
  for (int p = 0; sim_policies[p]; p++) {
    if (!swap[p])
      continue;
    ADD("DEF:p%d=%s:p%d:AVERAGE", p, rrdf, p);
    ADD("LINE%d:p%d#%s:%s", p == 0 ? 3 : 1, p, cols[p % 12],
        sim_policies[p]->name);
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
  for (int i = 0; sim_policies[i]; i++)
    if (!strcmp(sim_policies[i]->name, name))
      return i;
  return -1;
}

static void fmt_ratio(char *b, size_t n, double a, double ref) {
  if (ref > 0)
    snprintf(b, n, "%.2f", a / ref);
  else
    snprintf(b, n, a > 0 ? "inf" : "1.00");
}

static void print_table(FILE *f, const scn_run_t *sr, bool md) {
  const sim_scenario_t *scn = sr->scn;
  int io = pol_index("oracle"), is = pol_index("static");
  double oracle = sr->ran[io] ? sr->res[io].swap_pages : -1;
  double st = sr->ran[is] ? sr->res[is].swap_pages : -1;
  bool disk = false;
  for (int p = 0; sim_policies[p]; p++)
    if (sr->ran[p] && sr->res[p].diskvm_iops_free > 0)
      disk = true;
  if (md) {
    fprintf(f, "\n**%s** — %s\n\n", scn->name, scn->title);
    fprintf(f, "| policy | swap I/O pages | ×oracle | ×static | slowdown "
               "mean | p99 | disk ms | disk-VM IOPS | idle MiB | balloon "
               "changes | react cover/decide max s | boot wait s |\n");
    fprintf(f, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  } else {
    fprintf(f, "\n== %s: %s (%.0f s, interval %.1f s)\n", scn->name, scn->title,
            scn->duration_s, scn->interval_s);
    fprintf(f, "%-12s %12s %8s %8s %8s %8s %8s %14s %8s %7s %13s %6s\n",
            "policy", "swap_pages", "x_oracle", "x_static", "slow_avg",
            "slow_p99", "disk_ms", "diskvm_iops", "idle_MiB", "changes",
            "react_cov/dec", "oom_MiB");
  }
  for (int p = 0; sim_policies[p]; p++) {
    if (!sr->ran[p])
      continue;
    const sim_result_t *r = &sr->res[p];
    char xo[16], xs[16], iops[32];
    fmt_ratio(xo, sizeof(xo), r->swap_pages, oracle);
    fmt_ratio(xs, sizeof(xs), r->swap_pages, st);
    if (disk && r->diskvm_iops_free > 0)
      snprintf(iops, sizeof(iops), "%.1f (%.0f%%)", r->diskvm_iops,
               100 * r->diskvm_iops / r->diskvm_iops_free);
    else
      snprintf(iops, sizeof(iops), "-");
    if (md)
      fprintf(f,
              "| %s | %.0f | %s | %s | %.3f | %.2f | %.1f | %s | %.0f | "
              "%llu | %.1f / %.1f | %.0f |\n",
              sim_policies[p]->name, r->swap_pages, xo, xs, r->slowdown_mean,
              r->slowdown_p99, r->disk_resp_ms, iops, r->idle_mib,
              (unsigned long long)r->balloon_changes, r->react_cover_max_s,
              r->react_decide_max_s, r->boot_wait_s);
    else
      fprintf(f,
              "%-12s %12.0f %8s %8s %8.3f %8.2f %8.1f %14s %8.0f %7llu "
              "%6.1f/%-6.1f %9.0f %6llu\n",
              sim_policies[p]->name, r->swap_pages, xo, xs, r->slowdown_mean,
              r->slowdown_p99, r->disk_resp_ms, iops, r->idle_mib,
              (unsigned long long)r->balloon_changes, r->react_cover_max_s,
              r->react_decide_max_s, r->boot_wait_s,
              (unsigned long long)r->oom_mib);
  }
}

static void csv_rows(FILE *f, const scn_run_t *sr) {
  for (int p = 0; sim_policies[p]; p++) {
    if (!sr->ran[p])
      continue;
    const sim_result_t *r = &sr->res[p];
    fprintf(f,
            "%s,%s,%.0f,%.0f,%.0f,%.4f,%.4f,%.3f,%.2f,%.2f,%.1f,%llu,%.1f,"
            "%.1f,%.1f,%u,%llu,%llu,%.1f\n",
            sr->scn->name, sim_policies[p]->name, r->swap_pages,
            r->swapin_pages, r->swapout_pages, r->slowdown_mean,
            r->slowdown_p99, r->disk_resp_ms, r->diskvm_iops,
            r->diskvm_iops_free, r->idle_mib,
            (unsigned long long)r->balloon_changes, r->react_cover_max_s,
            r->react_cover_mean_s, r->react_decide_max_s, r->react_events,
            (unsigned long long)r->oom_mib, (unsigned long long)r->rounds,
            r->boot_wait_s);
  }
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
  bool shortset = false, noplot = false, cost = false, cg = false;
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
    else if (v && !strcmp(o, "--seed")) {
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
              "       membal-bench --cost [--callgrind]\n");
      return 2;
    }
  }
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
               "rounds,boot_wait_s\n");
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
    float *swap[NPOL] = {NULL}; /* owned */
    size_t swap_rows[NPOL] = {0};
    for (int p = 0; sim_policies[p]; p++) {
      series_t ser = {0};
      ser.nvm = scn->nvms;
      char cpath[1024];
      snprintf(cpath, sizeof(cpath), "%s/%s-%s.csv", out, scn->name,
               sim_policies[p]->name);
      ser.csv = shortset ? NULL : fopen(cpath, "w");
      if (ser.csv)
        sim_csv_header(ser.csv, scn);
      if (sim_run(scn, sim_policies[p], scn->seed, series_obs, &ser,
                  &sr->res[p], err, sizeof(err))) {
        fprintf(stderr, "membal-bench: %s/%s: %s\n", scn->name,
                sim_policies[p]->name, err);
        rc = 1;
      } else {
        sr->ran[p] = true;
      }
      if (ser.csv)
        fclose(ser.csv);
#ifdef SIM_HAVE_RRD
      if (!noplot && !shortset && sr->ran[p] && ser.rows &&
          plot(out, scn, sim_policies[p], &ser))
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
  for (size_t i = 0; i < nr; i++)
    free(runs[i].scn);
  for (size_t k = 0; k < nn; k++)
    free(names[k]);
  return rc;
}
