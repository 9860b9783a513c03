/* membal's status board (see status.h). */
#define _POSIX_C_SOURCE 200809L
#include "status.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One domain after a round, as the board keeps it. */
typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  uint64_t current_kib, target_kib, cma_kib, min_kib, max_kib;
  const char *reason;                        /* static */
  double swapin_pps, swapout_pps, majflt_ps; /* pressure; < 0 = unknown */
  double stall_some, stall_full; /* share of time (0..1); < 0 = unknown */
  double sample_age_s;           /* < 0 = never heard from */
  bool stale;
  bool held;           /* `membal hold` or <Domain> Balance false */
  double held_until_s; /* epoch s; 0 = until released (or config) */
} status_dom_t;

/* One decision that moved a target. */
typedef struct {
  double time_s; /* epoch seconds */
  char name[MB_NAME_LEN];
  uint64_t from_kib, to_kib;
  const char *reason;  /* static */
  const char *trigger; /* what started the round; static */
} status_move_t;

/* The last round, as the board keeps it. */
typedef struct {
  double time_s;
  uint64_t round;
  const char *trigger, *policy; /* static */
  uint64_t total_kib, free_kib, reserve_kib, pool_kib, sum_targets_kib;
  uint64_t reserved_kib;
  double tau;
  status_dom_t *doms; /* owned by the board */
  size_t n;
  mb_resv_t *resv; /* owned by the board */
  size_t nresv;
} status_last_t;

struct mb_status {
  char *host; /* owned */
  pthread_mutex_t lock;
  bool have;          /* a round was published */
  status_last_t last; /* its arrays are owned */
  char *json;         /* owned; the last round as JSON */
  size_t json_len;
  status_move_t moves[MB_STATUS_MOVES]; /* ring */
  size_t moves_next, moves_num;
};

mb_status_t *mb_status_new(const char *host) {
  mb_status_t *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  st->host = strdup(host ? host : "localhost");
  if (st->host == NULL) {
    free(st);
    return NULL;
  }
  pthread_mutex_init(&st->lock, NULL);
  return st;
}

void mb_status_free(mb_status_t *st) {
  if (st == NULL)
    return;
  pthread_mutex_destroy(&st->lock);
  free(st->json);
  free(st->last.doms);
  free(st->last.resv);
  free(st->host);
  free(st);
}

const char *mb_status_host(const mb_status_t *st) { return st->host; }

/* Caller holds the lock (the moves ring is read). */
static void status_format_json(const mb_status_t *st, const status_last_t *r,
                               mb_strbuf_t *b) {
  mb_sb_printf(b, "{\"host\":");
  mb_sb_json_str(b, st->host);
  mb_sb_printf(b,
               ",\"time\":%.3f,\"round\":%" PRIu64 ",\"trigger\":", r->time_s,
               r->round);
  mb_sb_json_str(b, r->trigger);
  mb_sb_printf(b, ",\"policy\":");
  mb_sb_json_str(b, r->policy);
  mb_sb_printf(b,
               ",\"pool\":{\"total_kib\":%" PRIu64 ",\"free_kib\":%" PRIu64
               ",\"reserve_kib\":%" PRIu64 ",\"pool_kib\":%" PRIu64
               ",\"sum_targets_kib\":%" PRIu64 ",\"reserved_kib\":%" PRIu64
               ",\"tau\":",
               r->total_kib, r->free_kib, r->reserve_kib, r->pool_kib,
               r->sum_targets_kib, r->reserved_kib);
  mb_sb_json_num(b, r->tau);
  mb_sb_printf(b, "},\"reservations\":[");
  for (size_t i = 0; i < r->nresv; i++) {
    const mb_resv_t *v = r->resv + i;
    mb_sb_printf(b, "%s{\"id\":%" PRIu64 ",\"for\":", i ? "," : "", v->id);
    mb_sb_json_str(b, v->name);
    mb_sb_printf(b, ",\"kib\":%" PRIu64 ",\"until\":%.3f}", v->kib, v->until_s);
  }
  mb_sb_printf(b, "],\"domains\":[");
  for (size_t i = 0; i < r->n; i++) {
    const status_dom_t *d = r->doms + i;
    mb_sb_printf(b, "%s{\"name\":", i ? "," : "");
    mb_sb_json_str(b, d->name);
    mb_sb_printf(b,
                 ",\"domid\":%" PRIu32 ",\"current_kib\":%" PRIu64
                 ",\"target_kib\":%" PRIu64 ",\"cma_kib\":%" PRIu64
                 ",\"min_kib\":%" PRIu64 ",\"max_kib\":%" PRIu64 ",\"reason\":",
                 d->domid, d->current_kib, d->target_kib, d->cma_kib,
                 d->min_kib, d->max_kib);
    mb_sb_json_str(b, d->reason);
    mb_sb_printf(b, ",\"pressure\":{\"swapin_pps\":");
    mb_sb_json_num(b, d->swapin_pps);
    mb_sb_printf(b, ",\"swapout_pps\":");
    mb_sb_json_num(b, d->swapout_pps);
    mb_sb_printf(b, ",\"majflt_ps\":");
    mb_sb_json_num(b, d->majflt_ps);
    mb_sb_printf(b, "},\"sample_age_s\":");
    mb_sb_json_num(b, d->sample_age_s);
    mb_sb_printf(b, ",\"stale\":%s,\"held\":%s,\"held_until\":",
                 d->stale ? "true" : "false", d->held ? "true" : "false");
    if (d->held && d->held_until_s > 0)
      mb_sb_printf(b, "%.3f}", d->held_until_s);
    else
      mb_sb_printf(b, "null}");
  }
  mb_sb_printf(b, "],\"decisions\":[");
  for (size_t k = 0; k < st->moves_num; k++) { /* newest first */
    const status_move_t *m =
        &st->moves[(st->moves_next + MB_STATUS_MOVES - 1 - k) %
                   MB_STATUS_MOVES];
    mb_sb_printf(b, "%s{\"time\":%.3f,\"name\":", k ? "," : "", m->time_s);
    mb_sb_json_str(b, m->name);
    mb_sb_printf(b,
                 ",\"from_kib\":%" PRIu64 ",\"to_kib\":%" PRIu64 ",\"reason\":",
                 m->from_kib, m->to_kib);
    mb_sb_json_str(b, m->reason);
    mb_sb_printf(b, ",\"trigger\":");
    mb_sb_json_str(b, m->trigger);
    mb_sb_printf(b, "}");
  }
  mb_sb_printf(b, "]}\n");
}

void mb_status_publish(mb_status_t *st, const mb_status_round_t *r) {
  /* Copies and the JSON outside the lock but for the moves ring. */
  status_last_t last = {.time_s = r->time_s,
                        .round = r->round,
                        .trigger = r->trigger,
                        .policy = r->policy,
                        .total_kib = r->host.total_kib,
                        .free_kib = r->host.free_kib,
                        .reserve_kib = r->host.reserve_kib,
                        .pool_kib = r->pool_kib,
                        .sum_targets_kib = r->sum_targets_kib,
                        .reserved_kib = r->reserved_kib,
                        .tau = r->tau,
                        .n = r->n,
                        .nresv = r->nresv};
  last.doms = calloc(r->n ? r->n : 1, sizeof(*last.doms));
  last.resv = calloc(r->nresv ? r->nresv : 1, sizeof(*last.resv));
  status_move_t *moves = calloc(r->n ? r->n : 1, sizeof(*moves)); /* owned */
  size_t nm = 0;
  if (last.doms == NULL || last.resv == NULL || moves == NULL)
    goto out;
  if (r->nresv)
    memcpy(last.resv, r->resv, r->nresv * sizeof(*last.resv));
  for (size_t i = 0; i < r->n; i++) {
    const mb_domain_t *dom = r->doms + i;
    const mb_decision_t *dec = r->dec + i;
    status_dom_t *d = last.doms + i;
    snprintf(d->name, sizeof(d->name), "%s", dom->name);
    d->domid = dom->domid;
    d->current_kib = dom->current_kib;
    d->target_kib = dec->target_kib;
    d->cma_kib = dec->cma_kib;
    d->min_kib = dec->floor_kib;
    d->max_kib = dom->max_kib;
    d->reason = mb_reason_name(dec->reason);
    bool rates = dom->has_sample && dom->rates.valid;
    d->swapin_pps = rates ? dom->rates.swapin_pps : -1;
    d->swapout_pps = rates ? dom->rates.swapout_pps : -1;
    d->majflt_ps = rates ? dom->rates.majflt_ps : -1;
    bool stall = dom->has_sample && dom->rates.stall_valid;
    d->stall_some = stall ? dom->rates.some_stall_share : -1;
    d->stall_full = stall ? dom->rates.full_stall_share : -1;
    d->sample_age_s = dom->has_sample ? dom->sample_age_s : -1;
    d->stale = dec->stale;
    d->held = r->held_s[i] >= 0;
    d->held_until_s = r->held_s[i] > 0 ? r->held_s[i] : 0;
    if (dec->target_kib != dom->target_kib)
      moves[nm++] = (status_move_t){.time_s = r->time_s,
                                    .from_kib = dom->target_kib,
                                    .to_kib = dec->target_kib,
                                    .reason = d->reason,
                                    .trigger = r->trigger};
    if (dec->target_kib != dom->target_kib)
      snprintf(moves[nm - 1].name, sizeof(moves[nm - 1].name), "%s", dom->name);
  }

  pthread_mutex_lock(&st->lock);
  for (size_t k = 0; k < nm; k++) {
    st->moves[st->moves_next] = moves[k];
    st->moves_next = (st->moves_next + 1) % MB_STATUS_MOVES;
    if (st->moves_num < MB_STATUS_MOVES)
      st->moves_num++;
  }
  mb_strbuf_t b = {0};
  status_format_json(st, &last, &b);
  status_last_t old_last = st->last;
  st->last = last;
  last.doms = NULL;
  last.resv = NULL;
  st->have = true;
  char *old = NULL;
  if (!b.failed) {
    old = st->json;
    st->json = b.s;
    st->json_len = b.len;
    b.s = NULL;
  }
  pthread_mutex_unlock(&st->lock);
  free(old);
  free(old_last.doms);
  free(old_last.resv);
  mb_sb_dispose(&b);
out:
  free(moves);
  free(last.doms);
  free(last.resv);
}

int mb_status_json(mb_status_t *st, char **json, size_t *len) {
  int rc = 0;
  *json = NULL;
  *len = 0;
  pthread_mutex_lock(&st->lock);
  if (st->json == NULL) {
    rc = 1;
  } else if ((*json = malloc(st->json_len + 1)) == NULL) {
    rc = -1;
  } else {
    memcpy(*json, st->json, st->json_len + 1);
    *len = st->json_len;
  }
  pthread_mutex_unlock(&st->lock);
  return rc;
}

static void status_clock(mb_strbuf_t *b, double t) {
  time_t s = (time_t)t;
  struct tm tm;
  char buf[32];
  localtime_r(&s, &tm);
  strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  mb_sb_printf(b, "%s", buf);
}

int mb_status_table(mb_status_t *st, char **text, size_t *len) {
  mb_strbuf_t b = {0};
  *text = NULL;
  *len = 0;
  pthread_mutex_lock(&st->lock);
  if (!st->have) {
    pthread_mutex_unlock(&st->lock);
    return 1;
  }
  const status_last_t *r = &st->last;
  mb_sb_printf(&b, "host %s, policy %s, round %" PRIu64 " (%s) at ", st->host,
               r->policy, r->round, r->trigger);
  status_clock(&b, r->time_s);
  mb_sb_printf(&b,
               "\npool %.0f MiB (host %.0f MiB - reserve %.0f MiB), targets "
               "%.0f MiB, hypervisor free %.0f MiB, reserved for VM starts "
               "%.0f MiB\n\n",
               r->pool_kib / 1024.0, r->total_kib / 1024.0,
               r->reserve_kib / 1024.0, r->sum_targets_kib / 1024.0,
               r->free_kib / 1024.0, r->reserved_kib / 1024.0);
  mb_sb_printf(&b, "%-20s %6s %9s %9s %9s %-16s %7s %9s %s\n", "DOMAIN", "ID",
               "CURRENT", "TARGET", "CMA", "REASON", "AGE s", "SWAPOUT/s",
               "HELD");
  for (size_t i = 0; i < r->n; i++) {
    const status_dom_t *d = r->doms + i;
    mb_sb_printf(&b, "%-20s %6" PRIu32 " %9.1f %9.1f %9.1f %-16s ", d->name,
                 d->domid, d->current_kib / 1024.0, d->target_kib / 1024.0,
                 d->cma_kib / 1024.0, d->reason);
    if (d->sample_age_s >= 0)
      mb_sb_printf(&b, "%7.1f ", d->sample_age_s);
    else
      mb_sb_printf(&b, "%7s ", "never");
    if (d->swapout_pps >= 0)
      mb_sb_printf(&b, "%9.1f ", d->swapout_pps);
    else
      mb_sb_printf(&b, "%9s ", "-");
    if (!d->held) {
      mb_sb_printf(&b, "%s\n", d->stale ? "no (stale)" : "no");
    } else if (d->held_until_s > 0) {
      mb_sb_printf(&b, "until ");
      status_clock(&b, d->held_until_s);
      mb_sb_printf(&b, "\n");
    } else {
      mb_sb_printf(&b, "yes\n");
    }
  }
  mb_sb_printf(&b, "(sizes in MiB)\n");
  for (size_t i = 0; i < r->nresv; i++) {
    const mb_resv_t *v = r->resv + i;
    mb_sb_printf(&b, "reservation %" PRIu64 ": %.0f MiB for %s until ", v->id,
                 v->kib / 1024.0, v->name[0] ? v->name : "(any)");
    status_clock(&b, v->until_s);
    mb_sb_printf(&b, "\n");
  }
  pthread_mutex_unlock(&st->lock);
  if (b.failed) {
    mb_sb_dispose(&b);
    return -1;
  }
  *text = b.s;
  *len = b.len;
  return 0;
}

/* A label value in the exposition format: backslash, double quote and
 * line feed escaped. Names are checked by vmmem, but this is the last
 * line of defence of a format a stray quote would break. */
static void status_label(mb_strbuf_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"')
      mb_sb_printf(b, "\\%c", *v);
    else if (*v == '\n')
      mb_sb_printf(b, "\\n");
    else
      mb_sb_printf(b, "%c", *v);
  }
}

static void status_family(mb_strbuf_t *b, const char *name, const char *type,
                          const char *help) {
  mb_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample value; Prometheus spells the non-finite ones its own way. */
static void status_value(mb_strbuf_t *b, double v) {
  if (v != v)
    mb_sb_printf(b, " NaN\n");
  else
    mb_sb_printf(b, " %.17g\n", v);
}

/* One gauge family with one sample per domain; a domain whose value is
 * unknown (< 0, when `known` is set) has none. */
typedef double (*status_get_t)(const status_dom_t *d);
static void status_dom_family(mb_strbuf_t *b, const status_last_t *r,
                              const char *name, const char *help,
                              status_get_t get, bool known) {
  status_family(b, name, "gauge", help);
  for (size_t i = 0; i < r->n; i++) {
    double v = get(r->doms + i);
    if (known && v < 0)
      continue;
    mb_sb_printf(b, "%s{domain=\"", name);
    status_label(b, r->doms[i].name);
    mb_sb_printf(b, "\"}");
    status_value(b, v);
  }
}

static double st_current(const status_dom_t *d) {
  return d->current_kib * 1024.0;
}
static double st_target(const status_dom_t *d) {
  return d->target_kib * 1024.0;
}
static double st_cma(const status_dom_t *d) { return d->cma_kib * 1024.0; }
static double st_min(const status_dom_t *d) { return d->min_kib * 1024.0; }
static double st_max(const status_dom_t *d) { return d->max_kib * 1024.0; }
static double st_age(const status_dom_t *d) { return d->sample_age_s; }
static double st_stale(const status_dom_t *d) { return d->stale; }
static double st_held(const status_dom_t *d) { return d->held; }
static double st_swapin(const status_dom_t *d) { return d->swapin_pps; }
static double st_swapout(const status_dom_t *d) { return d->swapout_pps; }
static double st_majflt(const status_dom_t *d) { return d->majflt_ps; }
static double st_some(const status_dom_t *d) { return d->stall_some; }
static double st_full(const status_dom_t *d) { return d->stall_full; }

int mb_status_metrics(mb_status_t *st, char **text, size_t *len) {
  mb_strbuf_t b = {0};
  *text = NULL;
  *len = 0;
  pthread_mutex_lock(&st->lock);
  if (!st->have) {
    pthread_mutex_unlock(&st->lock);
    return 1;
  }
  const status_last_t *r = &st->last;
  status_family(&b, "membal_info", "gauge",
                "membal's host and policy (always 1).");
  mb_sb_printf(&b, "membal_info{host=\"");
  status_label(&b, st->host);
  mb_sb_printf(&b, "\",policy=\"");
  status_label(&b, r->policy);
  mb_sb_printf(&b, "\"} 1\n");
  status_family(&b, "membal_rounds_total", "counter",
                "Rounds computed since collectd started.");
  mb_sb_printf(&b, "membal_rounds_total %" PRIu64 "\n", r->round);
  status_family(&b, "membal_last_round_timestamp_seconds", "gauge",
                "When the round in force ran (Unix time).");
  mb_sb_printf(&b, "membal_last_round_timestamp_seconds %.3f\n", r->time_s);
  status_family(&b, "membal_last_round_trigger", "gauge",
                "What started the round in force (always 1).");
  mb_sb_printf(&b, "membal_last_round_trigger{trigger=\"");
  status_label(&b, r->trigger);
  mb_sb_printf(&b, "\"} 1\n");
  const struct {
    const char *name, *help;
    uint64_t kib;
  } host[] = {
      {"membal_host_memory_bytes", "The hypervisor's memory.", r->total_kib},
      {"membal_host_free_bytes", "The hypervisor's free memory.", r->free_kib},
      {"membal_reserve_bytes", "Reserve kept out of the pool.", r->reserve_kib},
      {"membal_pool_bytes", "Memory the guests share (host - reserve).",
       r->pool_kib},
      {"membal_targets_sum_bytes", "Sum of the targets in force.",
       r->sum_targets_kib},
      {"membal_reserved_bytes", "Held for VM starts (membal reserve).",
       r->reserved_kib},
  };
  for (size_t k = 0; k < sizeof(host) / sizeof(host[0]); k++) {
    status_family(&b, host[k].name, "gauge", host[k].help);
    mb_sb_printf(&b, "%s %" PRIu64 "\n", host[k].name, host[k].kib * 1024);
  }
  status_family(&b, "membal_tax_rate", "gauge",
                "Idle memory tax rate in force (0..1).");
  mb_sb_printf(&b, "membal_tax_rate");
  status_value(&b, r->tau);

  status_dom_family(&b, r, "membal_domain_current_bytes",
                    "The domain's memory when the round ran.", st_current,
                    false);
  status_dom_family(&b, r, "membal_domain_target_bytes",
                    "The balloon target in force.", st_target, false);
  status_dom_family(&b, r, "membal_domain_cma_bytes",
                    "Critical memory amount (cagma; 0 for other policies).",
                    st_cma, false);
  status_dom_family(&b, r, "membal_domain_min_bytes",
                    "Lowest target membal may set.", st_min, false);
  status_dom_family(&b, r, "membal_domain_max_bytes",
                    "Highest target membal may set.", st_max, false);
  status_family(&b, "membal_domain_reason", "gauge",
                "Why the round decided the target it did (always 1).");
  for (size_t i = 0; i < r->n; i++) {
    mb_sb_printf(&b, "membal_domain_reason{domain=\"");
    status_label(&b, r->doms[i].name);
    mb_sb_printf(&b, "\",reason=\"");
    status_label(&b, r->doms[i].reason);
    mb_sb_printf(&b, "\"} 1\n");
  }
  status_dom_family(&b, r, "membal_domain_sample_age_seconds",
                    "Age of the guest's sample (none: never heard from).",
                    st_age, true);
  status_dom_family(&b, r, "membal_domain_stale",
                    "1 when the guest's sample is stale: never shrunk.",
                    st_stale, false);
  status_dom_family(&b, r, "membal_domain_held",
                    "1 when the target is held (membal hold, Balance false).",
                    st_held, false);
  status_dom_family(&b, r, "membal_domain_swap_in_pages_per_second",
                    "Pages swapped in per second by the guest.", st_swapin,
                    true);
  status_dom_family(&b, r, "membal_domain_swap_out_pages_per_second",
                    "Pages swapped out per second by the guest.", st_swapout,
                    true);
  status_dom_family(&b, r, "membal_domain_major_faults_per_second",
                    "Major page faults per second in the guest.", st_majflt,
                    true);
  status_dom_family(&b, r, "membal_domain_stall_some_ratio",
                    "Share of time some tasks stalled on memory (PSI).",
                    st_some, true);
  status_dom_family(&b, r, "membal_domain_stall_full_ratio",
                    "Share of time all tasks stalled on memory (PSI).", st_full,
                    true);
  status_family(&b, "membal_reservation_bytes", "gauge",
                "Memory held for a VM start, by reservation.");
  for (size_t i = 0; i < r->nresv; i++) {
    const mb_resv_t *v = r->resv + i;
    mb_sb_printf(&b, "membal_reservation_bytes{id=\"%" PRIu64 "\",for=\"",
                 v->id);
    status_label(&b, v->name);
    mb_sb_printf(&b, "\"} %" PRIu64 "\n", v->kib * 1024);
  }
  pthread_mutex_unlock(&st->lock);
  if (b.failed) {
    mb_sb_dispose(&b);
    return -1;
  }
  *text = b.s;
  *len = b.len;
  return 0;
}

size_t mb_status_names(mb_status_t *st, char (**names)[MB_NAME_LEN]) {
  size_t n = 0;
  *names = NULL;
  pthread_mutex_lock(&st->lock);
  if (st->have && st->last.n > 0 &&
      (*names = calloc(st->last.n, sizeof(**names))) != NULL) {
    n = st->last.n;
    for (size_t i = 0; i < n; i++)
      memcpy((*names)[i], st->last.doms[i].name, MB_NAME_LEN);
  }
  pthread_mutex_unlock(&st->lock);
  return n;
}
