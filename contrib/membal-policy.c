/*
 * membal-policy: runs the policy core on a host described in a text file
 * and prints the decision table. No hypervisor, no collectd: what membal
 * would decide for that host, one or more rounds.
 *
 * Usage: membal-policy [-p POLICY] [-r ROUNDS] HOSTFILE
 *
 * HOSTFILE, one item per line, '#' starts a comment:
 *
 *   option <Name> <value>   any membal plugin policy option, same spelling
 *                           and units: Policy, TaxRate (0..1 or AUTO),
 *                           UpHysteresis, DownHysteresis, CmaMarginFraction,
 *                           CmaMarginMin, SwapThreshold, MajorFaultThreshold,
 *                           StepCap, DeadBand, StaleAfter
 *   host <total> <reserve> [nodeN_free=<size> ...]
 *   domain <name> <current> <max> <min> <weight> [key=value ...]
 *
 * Sizes are KiB, or with a unit: 512MiB, 2GiB (K/M/G accepted). Domain
 * keys: meminfo=FILE, vmstat=FILE, record=FILE (paths relative to
 * HOSTFILE; a copy of /proc/meminfo, /proc/vmstat or a guest's
 * data/membal/stats record), any sample field by its kernel name
 * (MemTotal=2GiB, Committed_AS=..., pswpin=...: meminfo fields are sizes,
 * vmstat ones counts), target=<size> (last target; default current),
 * age=<seconds> (sample age, default 1), swapin_pps=, swapout_pps=,
 * majflt_ps= (rates), urgent=1, node_mask=<n>. A domain with no sample
 * field at all has never been heard from: it is stale.
 *
 * Each round is the membal plugin's round (policy/round.h): the targets
 * shown are those in force after its plan (grows held to what the shrinks
 * free). With -r N > 1 the balloons are assumed to reach their targets
 * between rounds, 30 s apart, so the table shows where the policy settles. With
 * -b N the same round is computed N times and only the time per round is
 * printed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "membal_policy.h"
#include "round.h"

#define MAX_DOMS 4096
/* -r: the time between two rounds (the plugin's default Period with
 * collectd's 10 s interval). */
#define ROUND_PERIOD_S 30.0

typedef struct {
  const char *file;
  unsigned line;
} where_t;

static int fail(const where_t *w, const char *fmt, const char *a,
                const char *b) {
  fprintf(stderr, "membal-policy: %s:%u: ", w->file, w->line);
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  return -1;
}

static int parse_size(const char *s, uint64_t *out) {
  char err[160];
  return mb_size_parse(s, out, err, sizeof(err));
}

static int parse_double(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || *end != 0 || errno != 0 || !isfinite(d))
    return -1;
  *out = d;
  return 0;
}

static int parse_uint(const char *s, unsigned *out) {
  uint64_t v;
  char *end = NULL;
  if (s[0] < '0' || s[0] > '9')
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (*end != 0 || errno != 0 || v > 0xffffffffu)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* Reads a whole file (at most 1 MiB) relative to the host file's dir.
 * Returns a malloc'ed buffer the caller frees, or NULL. */
static char *slurp(const char *base, const char *name, size_t *len) {
  char path[4096];
  const char *slash = strrchr(base, '/');
  if (name[0] == '/' || slash == NULL)
    snprintf(path, sizeof(path), "%s", name);
  else
    snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - base), base, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  size_t cap = 1 << 20;
  char *buf = malloc(cap); /* owned by the caller */
  if (buf == NULL) {
    fclose(f);
    return NULL;
  }
  *len = fread(buf, 1, cap, f);
  fclose(f);
  return buf;
}

/* A policy option, through the table membal's config uses
 * (policy/options.c). */
static int option(const where_t *w, mb_config_t *cfg, const char *key,
                  const char *val) {
  char err[256];
  int r = mb_option_set(cfg, key, val, err, sizeof(err));
  if (r == 1)
    return fail(w, "unknown option '%s'%s", key, "");
  if (r != 0)
    return fail(w, "%s%s", err, "");
  return 0;
}

static int domain_kv(const where_t *w, mb_domain_t *d, char *kv) {
  char *eq = strchr(kv, '=');
  char err[256];
  if (eq == NULL)
    return fail(w, "'%s': expected key=value%s", kv, "");
  *eq = '\0';
  const char *k = kv, *v = eq + 1;
  int f = mb_field_from_key(k, strlen(k));
  if (f >= 0) {
    uint64_t x;
    int r = f < MB_F_FIRST_VMSTAT ? parse_size(v, &x) : -1;
    if (f >= MB_F_FIRST_VMSTAT) {
      char *end = NULL;
      errno = 0;
      x = strtoull(v, &end, 10);
      r = (v[0] >= '0' && v[0] <= '9' && *end == 0 && errno == 0) ? 0 : -1;
    }
    if (r != 0)
      return fail(w, "%s: bad value '%s'", k, v);
    d->sample.v[f] = x;
    d->sample.have |= UINT64_C(1) << f;
    d->has_sample = true;
    return 0;
  }
  if (strcmp(k, "meminfo") == 0 || strcmp(k, "vmstat") == 0 ||
      strcmp(k, "record") == 0) {
    size_t len = 0;
    char *text = slurp(w->file, v, &len);
    if (text == NULL)
      return fail(w, "cannot read '%s'%s", v, "");
    int r;
    mb_sample_t s = d->sample;
    if (k[0] == 'm')
      r = mb_meminfo_parse(text, len, &s, err, sizeof(err));
    else if (k[0] == 'v')
      r = mb_vmstat_parse(text, len, &s, err, sizeof(err));
    else
      r = mb_record_parse(text, len, &s, err, sizeof(err));
    free(text);
    if (r != 0)
      return fail(w, "%s: rejected: %s", v, err);
    /* meminfo and record parsing start afresh: keep the fields given
     * earlier on the line that the file did not set. */
    for (int fi = 0; fi < MB_F_COUNT; fi++) {
      if (mb_sample_has(&d->sample, fi) && !mb_sample_has(&s, fi)) {
        s.v[fi] = d->sample.v[fi];
        s.have |= UINT64_C(1) << fi;
      }
    }
    s.urgent = s.urgent || d->sample.urgent;
    d->sample = s;
    d->has_sample = true;
    return 0;
  }
  double x;
  if (strcmp(k, "target") == 0)
    return parse_size(v, &d->target_kib) == 0
               ? 0
               : fail(w, "target: bad size '%s'%s", v, "");
  if (strcmp(k, "node_mask") == 0) {
    unsigned m;
    if (parse_uint(v, &m) != 0)
      return fail(w, "node_mask: bad value '%s'%s", v, "");
    d->node_mask = m;
    return 0;
  }
  if (strcmp(k, "urgent") == 0) {
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
      return fail(w, "urgent: must be 0 or 1, not '%s'%s", v, "");
    d->sample.urgent = v[0] == '1';
    return 0;
  }
  if (strcmp(k, "age") != 0 && strcmp(k, "swapin_pps") != 0 &&
      strcmp(k, "swapout_pps") != 0 && strcmp(k, "majflt_ps") != 0)
    return fail(w, "unknown domain key '%s'%s", k, "");
  if (parse_double(v, &x) != 0 || x < 0)
    return fail(w, "%s: bad value '%s'", k, v);
  if (strcmp(k, "age") == 0)
    d->sample_age_s = x;
  else if (strcmp(k, "swapin_pps") == 0)
    d->rates.swapin_pps = x, d->rates.valid = true;
  else if (strcmp(k, "swapout_pps") == 0)
    d->rates.swapout_pps = x, d->rates.valid = true;
  else
    d->rates.majflt_ps = x, d->rates.valid = true;
  return 0;
}

#define MAX_TOK 64

static int tokenize(char *line, char **tok) {
  int n = 0;
  char *save = NULL;
  char *hash = strchr(line, '#');
  if (hash)
    *hash = '\0';
  for (char *t = strtok_r(line, " \t\r\n", &save); t && n < MAX_TOK;
       t = strtok_r(NULL, " \t\r\n", &save))
    tok[n++] = t;
  return n;
}

static int load(const char *path, mb_config_t *cfg, mb_host_t *host,
                mb_domain_t *doms, size_t *n) {
  FILE *f = fopen(path, "r");
  char line[4096];
  char *tok[MAX_TOK];
  where_t w = {path, 0};
  bool have_host = false;
  if (f == NULL) {
    fprintf(stderr, "membal-policy: cannot open %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  int rc = 0;
  while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
    w.line++;
    int nt = tokenize(line, tok);
    if (nt == 0)
      continue;
    if (strcmp(tok[0], "option") == 0) {
      if (nt != 3)
        rc = fail(&w, "option: expected 'option <Name> <value>'%s%s", "", "");
      else
        rc = option(&w, cfg, tok[1], tok[2]);
    } else if (strcmp(tok[0], "host") == 0) {
      if (nt < 3 || parse_size(tok[1], &host->total_kib) != 0 ||
          parse_size(tok[2], &host->reserve_kib) != 0) {
        rc =
            fail(&w, "host: expected 'host <total> <reserve> ...'%s%s", "", "");
        continue;
      }
      for (int i = 3; i < nt && rc == 0; i++) {
        unsigned k;
        char rest[32];
        uint64_t v;
        char *eq = strchr(tok[i], '=');
        if (eq == NULL || sscanf(tok[i], "node%u_free%31[^=]", &k, rest) != 1 ||
            strncmp(tok[i] + strcspn(tok[i], "_"), "_free=", 6) != 0 ||
            k >= MB_MAX_NODES || parse_size(eq + 1, &v) != 0) {
          rc = fail(&w, "host: bad '%s' (nodeN_free=<size>)%s", tok[i], "");
          break;
        }
        host->node_free_kib[k] = v;
        if (k + 1 > host->nr_nodes)
          host->nr_nodes = k + 1;
      }
      have_host = true;
    } else if (strcmp(tok[0], "domain") == 0) {
      if (*n >= MAX_DOMS) {
        rc = fail(&w, "too many domains%s%s", "", "");
        continue;
      }
      mb_domain_t *d = &doms[*n];
      memset(d, 0, sizeof(*d));
      unsigned weight;
      if (nt < 6 || parse_size(tok[2], &d->current_kib) != 0 ||
          parse_size(tok[3], &d->max_kib) != 0 ||
          parse_size(tok[4], &d->min_kib) != 0 ||
          parse_uint(tok[5], &weight) != 0) {
        rc = fail(&w,
                  "domain: expected 'domain <name> <current> <max> <min> "
                  "<weight> [key=value ...]'%s%s",
                  "", "");
        continue;
      }
      snprintf(d->name, sizeof(d->name), "%s", tok[1]);
      d->domid = (uint32_t)*n + 1;
      d->weight = weight;
      d->target_kib = d->current_kib;
      d->sample_age_s = 1;
      for (int i = 6; i < nt && rc == 0; i++)
        rc = domain_kv(&w, d, tok[i]);
      (*n)++;
    } else {
      rc = fail(&w, "unknown line '%s' (option, host, domain)%s", tok[0], "");
    }
  }
  fclose(f);
  if (rc == 0 && !have_host) {
    fprintf(stderr, "membal-policy: %s: no 'host' line\n", path);
    rc = -1;
  }
  return rc;
}

static void print_table(const mb_config_t *cfg, const mb_state_t *st,
                        const mb_host_t *host, const mb_domain_t *doms,
                        const mb_decision_t *out, size_t n, unsigned round) {
  uint64_t pool = host->total_kib > host->reserve_kib
                      ? host->total_kib - host->reserve_kib
                      : 0;
  uint64_t sum_cur = 0, sum_tgt = 0;
  printf("round %u  policy %s  pool %llu KiB", round, mb_policy_name(cfg->kind),
         (unsigned long long)pool);
  if (cfg->kind == MB_POLICY_TAX)
    printf("  tau %.2f%s", st->tau, cfg->tax.tau_auto ? " (auto)" : "");
  printf("\n%-16s %12s %12s %12s  %-13s %12s\n", "domain", "current", "target",
         "delta", "reason", "cma");
  for (size_t i = 0; i < n; i++) {
    long long delta = (long long)out[i].target_kib - (long long)out[i].from_kib;
    printf("%-16s %12llu %12llu %+12lld  %-13s %12llu\n", doms[i].name,
           (unsigned long long)doms[i].current_kib,
           (unsigned long long)out[i].target_kib, delta,
           mb_reason_name(out[i].reason), (unsigned long long)out[i].cma_kib);
    sum_cur += doms[i].current_kib;
    sum_tgt += out[i].target_kib;
  }
  printf("%-16s %12llu %12llu %+12lld\n\n", "sum", (unsigned long long)sum_cur,
         (unsigned long long)sum_tgt, (long long)sum_tgt - (long long)sum_cur);
}

static void usage(void) {
  fprintf(stderr, "usage: membal-policy [-p tax|cagma|selfballoon] "
                  "[-r ROUNDS | -b ROUNDS] HOSTFILE\n");
}

int main(int argc, char **argv) {
  const char *policy = NULL, *file = NULL;
  unsigned rounds = 1, bench = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
      policy = argv[++i];
    else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], &bench) != 0 || bench == 0) {
        usage();
        return 2;
      }
    } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], &rounds) != 0 || rounds == 0 ||
          rounds > 10000) {
        usage();
        return 2;
      }
    } else if (argv[i][0] != '-' && file == NULL)
      file = argv[i];
    else {
      usage();
      return 2;
    }
  }
  if (file == NULL) {
    usage();
    return 2;
  }
  mb_config_t cfg;
  mb_config_default(&cfg);
  mb_host_t host;
  memset(&host, 0, sizeof(host));
  static mb_domain_t doms[MAX_DOMS];
  static mb_decision_t out[MAX_DOMS];
  size_t n = 0;
  if (load(file, &cfg, &host, doms, &n) != 0)
    return 2;
  if (policy != NULL && mb_policy_from_name(policy, &cfg.kind) != 0) {
    fprintf(stderr, "membal-policy: unknown policy '%s'\n", policy);
    return 2;
  }
  char err[256];
  if (mb_config_validate(&cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "membal-policy: %s\n", err);
    return 2;
  }
  /* The round module, as the plugin runs it: the host line's reserve is a
   * fixed reserve, each domain line's min and weight its clamp. */
  static mb_round_clamp_t clamps[MAX_DOMS];
  static mb_domain_t pdoms[MAX_DOMS];
  static mb_round_step_t steps[MAX_DOMS];
  for (size_t i = 0; i < n; i++) {
    snprintf(clamps[i].name, sizeof(clamps[i].name), "%s", doms[i].name);
    clamps[i].min_kib = doms[i].min_kib;
    clamps[i].weight = doms[i].weight;
  }
  mb_round_config_t rcfg;
  mb_round_config_default(&rcfg);
  rcfg.policy = cfg;
  rcfg.clamps = clamps;
  rcfg.nclamps = n;
  rcfg.reserve_auto = false;
  rcfg.reserve_kib = host.reserve_kib;
  mb_round_state_t st;
  if (mb_round_state_init(&st, &rcfg, MAX_DOMS) != 0) {
    fprintf(stderr, "membal-policy: cannot set up the round\n");
    return 2;
  }
  mb_round_input_t in = {.host = host, .doms = doms, .n = n};
  mb_round_plan_t plan = {
      .doms = pdoms, .dec = out, .steps = steps, .cap = MAX_DOMS};
  int rc = 0;
  if (bench > 0) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned r = 0; r < bench && rc == 0; r++)
      if (mb_round_compute(&rcfg, &st, &in, &plan) != 0)
        rc = 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 +
                 (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
                bench;
    if (rc == 0)
      printf("%s: %zu domains, %.1f us per round (%u rounds)\n",
             mb_policy_name(cfg.kind), n, us, bench);
    mb_round_state_dispose(&st);
    return rc;
  }
  for (unsigned r = 1; r <= rounds && rc == 0; r++) {
    /* Rounds are ROUND_PERIOD_S apart. */
    in.now_s = (double)(r - 1) * ROUND_PERIOD_S;
    if (mb_round_compute(&rcfg, &st, &in, &plan) != 0 ||
        plan.audit == MB_ROUND_SUM_BUG) {
      fprintf(stderr, "membal-policy: policy refused the input\n");
      rc = 1;
      break;
    }
    for (size_t k = 0; k < plan.nsteps; k++)
      mb_round_step_done(&plan, k, true);
    print_table(&cfg, &st.policy, &plan.host, pdoms, out, n, r);
    for (size_t i = 0; i < n; i++) {
      doms[i].target_kib = out[i].target_kib;
      doms[i].current_kib = out[i].target_kib;
    }
  }
  mb_round_state_dispose(&st);
  return rc;
}
