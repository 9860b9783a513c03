/*
 * Scenario files: one directive per line, '#' starts a comment. The format
 * is documented in sim/README.md. Everything is checked; an error names the
 * file and the line.
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 4096

typedef struct {
  const char *origin;
  unsigned line;
  char *err;
  size_t errlen;
} pctx_t;

static int perr(pctx_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int perr(pctx_t *p, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (p->err && p->errlen)
    snprintf(p->err, p->errlen, "%s:%u: %s", p->origin, p->line, msg);
  return -1;
}

/* A size: decimal, optional fraction, suffix K, M, G (KiB if none). */
static int parse_size(pctx_t *p, const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !isfinite(v) || v < 0)
    return perr(p, "bad size '%s'", s);
  double mul = 1;
  if (*end == 'K' || *end == 'k')
    end++;
  else if (*end == 'M' || *end == 'm')
    mul = 1024, end++;
  else if (*end == 'G' || *end == 'g')
    mul = 1024.0 * 1024, end++;
  if (*end)
    return perr(p, "bad size '%s' (suffix K, M or G)", s);
  v *= mul;
  if (v > (double)MB_KIB_MAX)
    return perr(p, "size '%s' too large", s);
  *out = (uint64_t)llround(v);
  return 0;
}

static int parse_num(pctx_t *p, const char *s, double lo, double hi,
                     double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v))
    return perr(p, "bad number '%s'", s);
  if (v < lo || v > hi)
    return perr(p, "'%s' out of range [%g, %g]", s, lo, hi);
  *out = v;
  return 0;
}

static int find_vm(const sim_scenario_t *s, const char *name) {
  for (size_t i = 0; i < s->nvms; i++)
    if (strcmp(s->vm[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* key=value into k, v (pointers into tok) */
static int split_kv(pctx_t *p, char *tok, char **k, char **v) {
  char *eq = strchr(tok, '=');
  if (!eq || eq == tok || !eq[1])
    return perr(p, "expected key=value, got '%s'", tok);
  *eq = 0;
  *k = tok;
  *v = eq + 1;
  return 0;
}

static int vm_attr(pctx_t *p, sim_vm_spec_t *vm, char *k, char *v) {
  double d = 0;
  if (!strcmp(k, "mem"))
    return parse_size(p, v, &vm->mem_kib);
  if (!strcmp(k, "min"))
    return parse_size(p, v, &vm->min_kib);
  if (!strcmp(k, "max"))
    return parse_size(p, v, &vm->max_kib);
  if (!strcmp(k, "base"))
    return parse_size(p, v, &vm->base_kib);
  if (!strcmp(k, "swap"))
    return parse_size(p, v, &vm->swap_kib);
  if (!strcmp(k, "weight")) {
    if (parse_num(p, v, 1, 1e6, &d))
      return -1;
    vm->weight = (uint32_t)d;
    return 0;
  }
  if (!strcmp(k, "domid")) {
    if (parse_num(p, v, 1, 65535, &d))
      return -1;
    vm->domid = (uint32_t)d;
    return 0;
  }
  if (!strcmp(k, "commit"))
    return parse_num(p, v, 0.5, 10, &vm->commit_factor);
  if (!strcmp(k, "file_rate"))
    return parse_num(p, v, 0, 1e6, &vm->file_rate);
  if (!strcmp(k, "qd"))
    return parse_num(p, v, 1, 1024, &vm->queue_depth);
  if (!strcmp(k, "cold"))
    return parse_num(p, v, 0, 0.9, &vm->cold_share);
  if (!strcmp(k, "noise"))
    return parse_num(p, v, 0, 0.5, &vm->noise);
  if (!strcmp(k, "start"))
    return parse_num(p, v, 0, 1e9, &vm->start_s);
  if (!strcmp(k, "stop"))
    return parse_num(p, v, 0, 1e9, &vm->stop_s);
  if (!strcmp(k, "fixed")) {
    if (parse_num(p, v, 0, 1, &d))
      return -1;
    vm->fixed = d != 0;
    return 0;
  }
  return perr(p, "unknown vm attribute '%s'", k);
}

static int parse_trace(pctx_t *p, sim_trace_t *tr, sim_trace_kind_t kind,
                       char **tok, int ntok) {
  if (ntok < 1)
    return perr(p, "trace needs at least one time:value point");
  if (ntok > SIM_MAX_POINTS)
    return perr(p, "trace has more than %d points", SIM_MAX_POINTS);
  tr->n = 0;
  for (int i = 0; i < ntok; i++) {
    char *colon = strchr(tok[i], ':');
    if (!colon)
      return perr(p, "expected time:value, got '%s'", tok[i]);
    *colon = 0;
    double t = 0, v = 0;
    if (parse_num(p, tok[i], 0, 1e9, &t))
      return -1;
    if (kind == SIM_TR_WS || kind == SIM_TR_CACHE || kind == SIM_TR_COLD) {
      uint64_t kib;
      if (parse_size(p, colon + 1, &kib))
        return -1;
      v = (double)kib;
    } else if (parse_num(p, colon + 1, 0, 1e7, &v)) {
      return -1;
    }
    if (tr->n && t <= tr->t[tr->n - 1])
      return perr(p, "trace times must increase ('%s')", tok[i]);
    tr->t[tr->n] = t;
    tr->v[tr->n] = v;
    tr->n++;
  }
  return 0;
}

static int finish(pctx_t *p, sim_scenario_t *s) {
  p->line = 0;
  if (!s->name[0])
    return perr(p, "missing 'name'");
  if (s->total_kib == 0)
    return perr(p, "missing 'host total=...'");
  if (s->reserve_kib >= s->total_kib)
    return perr(p, "host reserve must be below total");
  if (s->nvms == 0)
    return perr(p, "no vm");
  if (s->delay_s >= s->duration_s)
    return perr(p, "delay must be below duration");
  uint64_t pool = s->total_kib - s->reserve_kib;
  uint64_t fixed = 0;
  size_t managed = 0;
  for (size_t i = 0; i < s->nvms; i++) {
    if (s->vm[i].fixed)
      fixed += s->vm[i].mem_kib;
    else
      managed++;
  }
  if (fixed >= pool)
    return perr(p, "fixed VMs hold the whole pool");
  uint64_t share = managed ? (pool - fixed) / managed : 0;
  uint64_t at0 = 0;
  for (size_t i = 0; i < s->nvms; i++) {
    sim_vm_spec_t *vm = &s->vm[i];
    if (vm->fixed && vm->mem_kib == 0)
      return perr(p, "vm %s: fixed needs mem=", vm->name);
    if (vm->mem_kib == 0)
      vm->mem_kib = share;
    if (vm->max_kib == 0)
      vm->max_kib = vm->fixed ? vm->mem_kib : pool - fixed;
    if (vm->mem_kib > vm->max_kib)
      return perr(p, "vm %s: mem above max", vm->name);
    if (vm->min_kib > vm->max_kib)
      return perr(p, "vm %s: min above max", vm->name);
    if (vm->base_kib + 16384 > vm->mem_kib)
      return perr(p, "vm %s: mem must exceed base by 16M", vm->name);
    if (vm->stop_s >= 0 && vm->stop_s <= vm->start_s)
      return perr(p, "vm %s: stop before start", vm->name);
    if (vm->start_s == 0)
      at0 += vm->mem_kib;
    if (vm->domid == 0)
      vm->domid = (uint32_t)(i + 1);
    for (size_t j = 0; j < i; j++)
      if (s->vm[j].domid == vm->domid)
        return perr(p, "vm %s: domid %u used twice", vm->name, vm->domid);
  }
  if (at0 > pool)
    return perr(p, "VMs present at start need %llu KiB, pool is %llu KiB",
                (unsigned long long)at0, (unsigned long long)pool);
  return 0;
}

static void defaults(sim_scenario_t *s) {
  memset(s, 0, sizeof(*s));
  s->duration_s = 600;
  s->interval_s = 1;
  s->delay_s = 0.5;
  s->urgent_check_s = 0.25;
  s->urgent_pps = 64;
  s->urgent_min_s = 1; /* guestmem's UrgentMinInterval */
  s->dt_s = 0.1;
  s->disk_iops = 150;
  s->shrink_kibps = 45 * 1024;
  s->grow_kibps = 150 * 1024;
  s->seed = 1;
}

static void vm_defaults(sim_vm_spec_t *vm) {
  memset(vm, 0, sizeof(*vm));
  vm->base_kib = 64 * 1024;
  vm->swap_kib = 1024 * 1024;
  vm->weight = 1;
  vm->commit_factor = 1.2;
  vm->queue_depth = 4;
  vm->stop_s = -1;
  vm->tr[SIM_TR_WS].n = 1;
  vm->tr[SIM_TR_WS].v[0] = 32 * 1024;
  vm->tr[SIM_TR_CACHE].n = 1;
  vm->tr[SIM_TR_IOPS].n = 1;
  vm->tr[SIM_TR_INTENSITY].n = 1;
  vm->tr[SIM_TR_INTENSITY].v[0] = 1000;
}

#define MAX_TOK 160

static int parse_line(pctx_t *p, sim_scenario_t *s, char *line) {
  char *tok[MAX_TOK];
  int ntok = 0;
  char *save = NULL;
  char *hash = strchr(line, '#');
  if (hash)
    *hash = 0;
  /* title keeps the rest of the line verbatim */
  char *l = line;
  while (*l == ' ' || *l == '\t')
    l++;
  if (!strncmp(l, "title", 5) && (l[5] == ' ' || l[5] == '\t')) {
    l += 6;
    while (*l == ' ' || *l == '\t')
      l++;
    size_t n = strlen(l);
    while (n && (l[n - 1] == ' ' || l[n - 1] == '\t' || l[n - 1] == '\r'))
      l[--n] = 0;
    snprintf(s->title, sizeof(s->title), "%s", l);
    return 0;
  }
  for (char *t = strtok_r(line, " \t\r", &save); t;
       t = strtok_r(NULL, " \t\r", &save)) {
    if (ntok == MAX_TOK)
      return perr(p, "too many words");
    tok[ntok++] = t;
  }
  if (ntok == 0)
    return 0;
  const char *d = tok[0];
  if (!strcmp(d, "name")) {
    if (ntok != 2 || strlen(tok[1]) >= sizeof(s->name))
      return perr(p, "name takes one word (< 64 chars)");
    snprintf(s->name, sizeof(s->name), "%s", tok[1]);
    return 0;
  }
  struct {
    const char *k;
    double *dst;
    double lo, hi;
  } nums[] = {{"duration", &s->duration_s, 1, 1e7},
              {"interval", &s->interval_s, 0.1, 3600},
              {"delay", &s->delay_s, 0, 3600},
              {"urgent_check", &s->urgent_check_s, 0, 3600},
              {"urgent_pps", &s->urgent_pps, 0, 1e9},
              {"urgent_min", &s->urgent_min_s, 0, 3600},
              {"step", &s->dt_s, 0.01, 1}};
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    if (!strcmp(d, nums[i].k)) {
      if (ntok != 2)
        return perr(p, "%s takes one value", d);
      return parse_num(p, tok[1], nums[i].lo, nums[i].hi, nums[i].dst);
    }
  }
  if (!strcmp(d, "seed")) {
    double v = 0;
    if (ntok != 2 || parse_num(p, tok[1], 0, 4e9, &v))
      return perr(p, "seed takes one integer");
    s->seed = (uint64_t)v;
    return 0;
  }
  if (!strcmp(d, "host") || !strcmp(d, "disk") || !strcmp(d, "balloon")) {
    for (int i = 1; i < ntok; i++) {
      char *k = NULL, *v = NULL;
      if (split_kv(p, tok[i], &k, &v))
        return -1;
      uint64_t kib;
      int rc;
      if (!strcmp(d, "host") && !strcmp(k, "total"))
        rc = parse_size(p, v, &s->total_kib);
      else if (!strcmp(d, "host") && !strcmp(k, "reserve"))
        rc = parse_size(p, v, &s->reserve_kib);
      else if (!strcmp(d, "disk") && !strcmp(k, "iops"))
        rc = parse_num(p, v, 1, 1e7, &s->disk_iops);
      else if (!strcmp(d, "balloon") &&
               (!strcmp(k, "shrink") || !strcmp(k, "grow"))) {
        rc = parse_size(p, v, &kib);
        if (!rc && kib == 0)
          rc = perr(p, "balloon %s must be > 0 (per second)", k);
        if (!rc)
          *(!strcmp(k, "shrink") ? &s->shrink_kibps : &s->grow_kibps) =
              (double)kib;
      } else
        rc = perr(p, "unknown %s attribute '%s'", d, k);
      if (rc)
        return -1;
    }
    return 0;
  }
  if (!strcmp(d, "vm")) {
    if (ntok < 2)
      return perr(p, "vm needs a name");
    if (strlen(tok[1]) >= MB_NAME_LEN || !tok[1][0])
      return perr(p, "vm name too long");
    for (const char *c = tok[1]; *c; c++)
      if (!(*c == '-' || *c == '_' || (*c >= 'a' && *c <= 'z') ||
            (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
        return perr(p, "vm name '%s': letters, digits, - and _ only", tok[1]);
    if (find_vm(s, tok[1]) >= 0)
      return perr(p, "vm %s declared twice", tok[1]);
    if (s->nvms == SIM_MAX_VMS)
      return perr(p, "more than %d VMs", SIM_MAX_VMS);
    sim_vm_spec_t *vm = &s->vm[s->nvms];
    vm_defaults(vm);
    snprintf(vm->name, sizeof(vm->name), "%s", tok[1]);
    for (int i = 2; i < ntok; i++) {
      char *k = NULL, *v = NULL;
      if (split_kv(p, tok[i], &k, &v) || vm_attr(p, vm, k, v))
        return -1;
    }
    s->nvms++;
    return 0;
  }
  static const char *const trn[SIM_TR_COUNT] = {"ws", "cache", "iops",
                                                "intensity", "cold"};
  for (int k = 0; k < SIM_TR_COUNT; k++) {
    if (strcmp(d, trn[k]))
      continue;
    if (ntok < 3)
      return perr(p, "%s needs a vm name and points", d);
    int vi = find_vm(s, tok[1]);
    if (vi < 0)
      return perr(p, "%s: unknown vm '%s' (declare it first)", d, tok[1]);
    return parse_trace(p, &s->vm[vi].tr[k], (sim_trace_kind_t)k, tok + 2,
                       ntok - 2);
  }
  return perr(p, "unknown directive '%s'", d);
}

sim_scenario_t *sim_scenario_parse(const char *text, const char *origin,
                                   char *err, size_t errlen) {
  pctx_t p = {origin ? origin : "scenario", 0, err, errlen};
  sim_scenario_t *s = malloc(sizeof(*s)); /* owned by caller on success */
  if (!s) {
    perr(&p, "out of memory");
    return NULL;
  }
  defaults(s);
  const char *c = text;
  while (*c) {
    p.line++;
    const char *nl = strchr(c, '\n');
    size_t len = nl ? (size_t)(nl - c) : strlen(c);
    char buf[LINE_MAX_LEN];
    if (len >= sizeof(buf)) {
      perr(&p, "line too long");
      goto fail;
    }
    memcpy(buf, c, len);
    buf[len] = 0;
    if (memchr(buf, 0, len)) {
      perr(&p, "NUL byte");
      goto fail;
    }
    if (parse_line(&p, s, buf))
      goto fail;
    c += len + (nl ? 1 : 0);
  }
  if (finish(&p, s))
    goto fail;
  return s;
fail:
  free(s);
  return NULL;
}

sim_scenario_t *sim_scenario_load(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  char *buf = NULL; /* owned here */
  sim_scenario_t *s = NULL;
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 20, len = 0;
  buf = malloc(cap + 1);
  if (!buf) {
    snprintf(err, errlen, "%s: out of memory", path);
    goto out;
  }
  len = fread(buf, 1, cap, f);
  if (!feof(f)) {
    snprintf(err, errlen, "%s: larger than 1 MiB", path);
    goto out;
  }
  buf[len] = 0;
  if (strlen(buf) != len) {
    snprintf(err, errlen, "%s: NUL byte in file", path);
    goto out;
  }
  s = sim_scenario_parse(buf, path, err, errlen);
out:
  free(buf);
  fclose(f);
  return s;
}

double sim_trace_at(const sim_trace_t *tr, double t) {
  if (tr->n == 0)
    return 0;
  if (t <= tr->t[0])
    return tr->v[0];
  for (size_t i = 1; i < tr->n; i++) {
    if (t < tr->t[i]) {
      double f = (t - tr->t[i - 1]) / (tr->t[i] - tr->t[i - 1]);
      return tr->v[i - 1] + f * (tr->v[i] - tr->v[i - 1]);
    }
  }
  return tr->v[tr->n - 1];
}

double sim_trace_max(const sim_trace_t *tr, double t0, double t1) {
  double m = fmax(sim_trace_at(tr, t0), sim_trace_at(tr, t1));
  for (size_t i = 0; i < tr->n; i++)
    if (tr->t[i] > t0 && tr->t[i] < t1 && tr->v[i] > m)
      m = tr->v[i];
  return m;
}
