/*
 * membal: collectd write + flush plugin (dom0).
 *
 * The write callback only keeps the latest whole guest sample of every
 * domain, as vmmem hands it over (one message per sample, plugins/SCHEMA.md
 * section 2b; values of other hosts are ignored). All decisions run in
 * membal's own thread: every Period, on `collectdctl flush plugin=membal`,
 * and soon after an urgent sample (swap storm; coalesced, at most one such
 * round per UrgentInterval). A round reads the hypervisor's figures from
 * membal's own backend handle (guest records are not read again), runs
 * mb_policy_compute(), actuates shrinks before grows, and dispatches its
 * own values stamped with the real time (SCHEMA.md, section 3).
 */
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"
#include "utils_complain.h"

#include "backend.h"
#include "membal_policy.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PLUGIN "membal"

/* A flush is served after this delay, so that the flush collectd sends to
 * every plugin at shutdown (timeout 0, identifier NULL, indistinguishable from
 * `collectdctl flush`) is cancelled by the shutdown callback that follows it
 * and never actuates anything while the daemon goes down. The delay alone
 * is a race on a loaded host (rrdtool's shutdown, which runs in between,
 * can take longer): that flush is also recognised by its thread (mb_flush). */
#define MB_FLUSH_DELAY_S 0.2
/* Bounds the per-domain store against a flood of instance names. */
#define MB_MAX_DOMAINS 1024
/* Store entries of domains gone from the backend are dropped after this. */
#define MB_FORGET_AFTER_S 120.0
#define MB_DEFAULT_RESERVE_SLACK_KIB (64 * 1024)
/* Default UrgentInterval: at most one round a second on urgent samples. */
#define MB_DEFAULT_URGENT_INTERVAL_S 1.0

typedef struct {
  char name[MB_NAME_LEN];
  uint64_t min_kib; /* 0 = policy's floor */
  uint64_t max_kib; /* 0 = hypervisor maximum */
  uint32_t weight;
} mb_domconf_t;

/* The latest whole samples of one domain, as vmmem handed them. */
typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  cdtime_t last_update; /* time of the last message */

  bool have_cur;
  mb_sample_t cur;
  cdtime_t cur_time; /* when vmmem read it (the message's time) */
  double cur_age_s;  /* vmmem's age of the record at cur_time */
  bool cur_complete; /* vmmem's word: the record is whole */
  bool have_prev;    /* the record before cur, for rates */
  mb_sample_t prev;
  cdtime_t prev_time;

  c_complain_t set_complaint;
} mb_dstore_t;

/* ---- configuration (written by the config callback only) ---- */
static mb_config_t conf;
static bool conf_loaded;
static bool conf_failed;
static char *conf_backend;       /* owned */
static char *conf_xenstore_path; /* owned; NULL = default */
static char *conf_uri;           /* owned; libvirt URI, NULL = default */
static bool conf_reserve_auto = true;
static uint64_t conf_reserve_kib;
static double conf_period_s; /* 0 = 3 x interval */
static double conf_urgent_interval_s = MB_DEFAULT_URGENT_INTERVAL_S;
static bool conf_dry_run;
static mb_domconf_t *conf_doms; /* owned */
static size_t conf_doms_num;

/* ---- shared state: write and flush callbacks and the thread ---- */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_cond = PTHREAD_COND_INITIALIZER;
static mb_dstore_t *store; /* owned, store_num entries */
static size_t store_num;
static bool thread_stop;
static bool write_closed;     /* shutdown began: messages are ignored */
static pthread_t main_thread; /* collectd's, which runs init and shutdown */
static bool main_thread_known;
static bool urgent_pending;
static cdtime_t flush_at; /* 0 = no flush pending */

/* ---- thread-only state ---- */
static pthread_t round_thread;
static bool round_thread_running;
static mb_backend_t *backend; /* owned; used by the thread only */
static mb_state_t pstate;
static uint64_t rounds;
static c_complain_t backend_complaint = C_COMPLAIN_INIT_STATIC;
static c_complain_t sum_complaint = C_COMPLAIN_INIT_STATIC;

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

/* Memory sizes: a number is KiB; a string may carry a unit suffix
 * (K, KiB, M, MiB, G, GiB; binary multiples). */
static int mb_conf_size(const oconfig_item_t *ci, uint64_t *out_kib) {
  if (ci->values_num != 1) {
    ERROR(PLUGIN ": option %s takes exactly one value", ci->key);
    return -1;
  }
  const oconfig_value_t *v = &ci->values[0];
  if (v->type == OCONFIG_TYPE_NUMBER) {
    double d = v->value.number;
    if (!(d >= 0) || d > 1e15 || d != floor(d)) {
      ERROR(PLUGIN ": option %s: %g is not a size in KiB (whole number >= 0)",
            ci->key, d);
      return -1;
    }
    *out_kib = (uint64_t)d;
    return 0;
  }
  if (v->type != OCONFIG_TYPE_STRING) {
    ERROR(PLUGIN ": option %s needs a size, e.g. 524288 (KiB) or \"512MiB\"",
          ci->key);
    return -1;
  }
  const char *s = v->value.string;
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(s, &end, 10);
  if (end == s || errno != 0 || s[0] == '-' || s[0] == '+') {
    ERROR(PLUGIN ": option %s: \"%s\" is not a size, e.g. \"512MiB\"", ci->key,
          s);
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
    ERROR(PLUGIN ": option %s: unknown unit \"%s\" (use KiB, MiB or GiB)",
          ci->key, end);
    return -1;
  }
  if (n > UINT64_MAX / 1024 / mult) {
    ERROR(PLUGIN ": option %s: \"%s\" is too large", ci->key, s);
    return -1;
  }
  *out_kib = (uint64_t)n * mult;
  return 0;
}

static int mb_conf_number(const oconfig_item_t *ci, double *out) {
  if (ci->values_num != 1 || ci->values[0].type != OCONFIG_TYPE_NUMBER) {
    ERROR(PLUGIN ": option %s needs exactly one number", ci->key);
    return -1;
  }
  *out = ci->values[0].value.number;
  if (!isfinite(*out)) {
    ERROR(PLUGIN ": option %s: not a finite number", ci->key);
    return -1;
  }
  return 0;
}

static int mb_conf_unsigned(const oconfig_item_t *ci, unsigned *out) {
  double d;
  if (mb_conf_number(ci, &d) != 0)
    return -1;
  if (d < 0 || d > UINT_MAX || d != floor(d)) {
    ERROR(PLUGIN ": option %s: %g is not a whole number >= 0", ci->key, d);
    return -1;
  }
  *out = (unsigned)d;
  return 0;
}

static int mb_conf_domain(const oconfig_item_t *ci) {
  char *name = NULL; /* owned */
  if (cf_util_get_string(ci, &name) != 0 || name[0] == 0) {
    ERROR(PLUGIN ": <Domain> needs exactly one non-empty name");
    sfree(name);
    return -1;
  }
  int ret = -1;
  if (strlen(name) >= MB_NAME_LEN) {
    ERROR(PLUGIN ": <Domain \"%s\">: name longer than %d characters", name,
          MB_NAME_LEN - 1);
    goto out;
  }
  for (size_t i = 0; i < conf_doms_num; i++) {
    if (strcmp(conf_doms[i].name, name) == 0) {
      ERROR(PLUGIN ": <Domain \"%s\"> configured twice", name);
      goto out;
    }
  }
  mb_domconf_t d = {.weight = 1};
  sstrncpy(d.name, name, sizeof(d.name));
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    int st;
    if (strcasecmp("Min", c->key) == 0)
      st = mb_conf_size(c, &d.min_kib);
    else if (strcasecmp("Max", c->key) == 0)
      st = mb_conf_size(c, &d.max_kib);
    else if (strcasecmp("Weight", c->key) == 0) {
      unsigned w = 0;
      st = mb_conf_unsigned(c, &w);
      if (st == 0 && w < 1) {
        ERROR(PLUGIN ": <Domain \"%s\">: Weight must be >= 1", name);
        st = -1;
      }
      d.weight = w;
    } else {
      ERROR(PLUGIN ": <Domain \"%s\">: unknown option \"%s\"", name, c->key);
      st = -1;
    }
    if (st != 0) {
      ERROR(PLUGIN ": <Domain \"%s\">: option %s refused", name, c->key);
      goto out;
    }
  }
  if (d.max_kib != 0 && d.min_kib > d.max_kib) {
    ERROR(PLUGIN ": <Domain \"%s\">: Min (%" PRIu64
                 " KiB) is above Max (%" PRIu64 " KiB)",
          name, d.min_kib, d.max_kib);
    goto out;
  }
  if (conf_doms_num >= MB_MAX_DOMAINS) {
    ERROR(PLUGIN ": more than %d <Domain> blocks", MB_MAX_DOMAINS);
    goto out;
  }
  mb_domconf_t *tmp =
      realloc(conf_doms, (conf_doms_num + 1) * sizeof(*conf_doms));
  if (tmp == NULL) {
    ERROR(PLUGIN ": out of memory");
    goto out;
  }
  conf_doms = tmp;
  conf_doms[conf_doms_num++] = d;
  ret = 0;
out:
  sfree(name);
  return ret;
}

static int mb_conf_option(const oconfig_item_t *c) {
  double d;
  unsigned u;
  if (strcasecmp("Policy", c->key) == 0) {
    char buf[32];
    if (cf_util_get_string_buffer(c, buf, sizeof(buf)) != 0)
      return -1;
    if (mb_policy_from_name(buf, &conf.kind) != 0) {
      ERROR(PLUGIN ": Policy \"%s\" unknown (cagma, tax or selfballoon)", buf);
      return -1;
    }
    return 0;
  }
  if (strcasecmp("TaxRate", c->key) == 0) {
    if (c->values_num == 1 && c->values[0].type == OCONFIG_TYPE_STRING) {
      if (strcasecmp(c->values[0].value.string, "auto") != 0) {
        ERROR(PLUGIN ": TaxRate must be a number in [0,1] or \"auto\"");
        return -1;
      }
      conf.tax.tau_auto = true;
      return 0;
    }
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.tax.tau = d;
    conf.tax.tau_auto = false;
    return 0;
  }
  if (strcasecmp("UpHysteresis", c->key) == 0) {
    if (mb_conf_unsigned(c, &u) != 0)
      return -1;
    conf.selfballoon.up_hysteresis = u;
    return 0;
  }
  if (strcasecmp("DownHysteresis", c->key) == 0) {
    if (mb_conf_unsigned(c, &u) != 0)
      return -1;
    conf.selfballoon.down_hysteresis = u;
    return 0;
  }
  if (strcasecmp("CmaMarginFraction", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.cagma.margin_frac = d;
    return 0;
  }
  if (strcasecmp("CmaMarginMin", c->key) == 0)
    return mb_conf_size(c, &conf.cagma.margin_min_kib);
  if (strcasecmp("SwapThreshold", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.cagma.swap_threshold_pps = d;
    return 0;
  }
  if (strcasecmp("MajorFaultThreshold", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.cagma.majflt_threshold_ps = d;
    return 0;
  }
  if (strcasecmp("ForecastHorizon", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.cagma.forecast_s = d;
    return 0;
  }
  if (strcasecmp("StepCap", c->key) == 0)
    return mb_conf_size(c, &conf.step_cap_kib);
  if (strcasecmp("DeadBand", c->key) == 0)
    return mb_conf_size(c, &conf.deadband_kib);
  if (strcasecmp("StaleAfter", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    conf.stale_after_s = d;
    return 0;
  }
  if (strcasecmp("Backend", c->key) == 0) {
    char *s = NULL;
    if (cf_util_get_string(c, &s) != 0)
      return -1;
    if (strcmp(s, "libxl") != 0 && strcmp(s, "sim") != 0 &&
        strcmp(s, "libvirt") != 0) {
      ERROR(PLUGIN ": Backend \"%s\" unknown (libxl, sim or libvirt)", s);
      sfree(s);
      return -1;
    }
    sfree(conf_backend);
    conf_backend = s;
    return 0;
  }
  if (strcasecmp("URI", c->key) == 0) {
    char *s = NULL;
    if (cf_util_get_string(c, &s) != 0)
      return -1;
    sfree(conf_uri);
    conf_uri = s;
    return 0;
  }
  if (strcasecmp("XenstorePath", c->key) == 0) {
    char *s = NULL;
    if (cf_util_get_string(c, &s) != 0)
      return -1;
    sfree(conf_xenstore_path);
    conf_xenstore_path = s;
    return 0;
  }
  if (strcasecmp("Reserve", c->key) == 0) {
    if (c->values_num == 1 && c->values[0].type == OCONFIG_TYPE_STRING &&
        strcasecmp(c->values[0].value.string, "auto") == 0) {
      conf_reserve_auto = true;
      return 0;
    }
    if (mb_conf_size(c, &conf_reserve_kib) != 0)
      return -1;
    conf_reserve_auto = false;
    return 0;
  }
  if (strcasecmp("Period", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    if (d < 0.1 || d > 86400) {
      ERROR(PLUGIN ": Period must be between 0.1 and 86400 seconds");
      return -1;
    }
    conf_period_s = d;
    return 0;
  }
  if (strcasecmp("UrgentInterval", c->key) == 0) {
    if (mb_conf_number(c, &d) != 0)
      return -1;
    if (d < 0.1 || d > 3600) {
      ERROR(PLUGIN ": UrgentInterval must be between 0.1 and 3600 seconds");
      return -1;
    }
    conf_urgent_interval_s = d;
    return 0;
  }
  if (strcasecmp("DryRun", c->key) == 0)
    return cf_util_get_boolean(c, &conf_dry_run);
  if (strcasecmp("Domain", c->key) == 0)
    return mb_conf_domain(c);
  ERROR(PLUGIN ": unknown option \"%s\"", c->key);
  return -1;
}

static int mb_config(oconfig_item_t *ci) {
  if (conf_loaded) {
    ERROR(PLUGIN ": <Plugin membal> given twice");
    conf_failed = true;
    return -1;
  }
  conf_loaded = true;
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    if (mb_conf_option(c) != 0) {
      ERROR(PLUGIN ": configuration refused at option \"%s\"; membal will not "
                   "balance anything",
            c->key);
      conf_failed = true;
      return -1;
    }
  }
  char err[256] = "";
  if (mb_config_validate(&conf, err, sizeof(err)) != 0) {
    ERROR(PLUGIN ": configuration refused: %s; membal will not balance "
                 "anything",
          err);
    conf_failed = true;
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Store of vmmem values                                                  */
/* ---------------------------------------------------------------------- */

/* Caller holds store_lock. Returns NULL when the store is full. */
static mb_dstore_t *mb_store_get(const char *name, uint32_t domid, bool create,
                                 bool have_domid) {
  for (size_t i = 0; i < store_num; i++) {
    mb_dstore_t *d = store + i;
    if (strcmp(d->name, name) != 0)
      continue;
    if (have_domid && d->domid != domid) {
      /* Same name, new domain (guest re-created): its history is void. */
      memset(d, 0, sizeof(*d));
      sstrncpy(d->name, name, sizeof(d->name));
      d->domid = domid;
    }
    return d;
  }
  if (!create || store_num >= MB_MAX_DOMAINS)
    return NULL;
  mb_dstore_t *tmp = realloc(store, (store_num + 1) * sizeof(*store));
  if (tmp == NULL)
    return NULL;
  store = tmp;
  mb_dstore_t *d = store + store_num++;
  memset(d, 0, sizeof(*d));
  sstrncpy(d->name, name, sizeof(d->name));
  d->domid = domid;
  return d;
}

/* Takes one whole sample read by vmmem at time t. A message read before
 * the one in store is a straggler (vmmem's read callback and watch thread
 * hand samples concurrently) and is dropped; otherwise a newer seq moves
 * cur to prev, the same seq refreshes the age, and a lower seq means the
 * guest's agent started counting again: its history is void. Returns true
 * when the sample is one this domain had not had. Caller holds
 * store_lock. */
static bool mb_store_sample(mb_dstore_t *d, const mb_sample_t *s, cdtime_t t,
                            double age_s, bool complete) {
  d->last_update = t;
  if (d->have_cur && t < d->cur_time)
    return false;
  bool is_new = !d->have_cur || s->seq != d->cur.seq;
  if (d->have_cur && s->seq > d->cur.seq) {
    d->prev = d->cur;
    d->prev_time = d->cur_time;
    d->have_prev = true;
  } else if (d->have_cur && s->seq < d->cur.seq) {
    d->have_prev = false;
  }
  d->cur = *s;
  d->cur_time = t;
  d->cur_age_s = age_s;
  d->cur_complete = complete;
  d->have_cur = true;
  return is_new;
}

/* vmmem's whole-sample message (SCHEMA.md section 2b); every other value
 * is ignored, and so is anything from another host (a central collector's
 * network plugin forwards other hosts' values: their domains are not
 * ours). */
static int mb_write(const data_set_t *ds, const value_list_t *vl,
                    user_data_t *ud) {
  static c_complain_t bad_complaint = C_COMPLAIN_INIT_STATIC;
  if (vl->meta == NULL || strcmp(vl->plugin, "vmmem") != 0 ||
      vl->plugin_instance[0] == 0 || strcmp(vl->host, hostname_g) != 0 ||
      meta_data_exists(vl->meta, "vmmem:record") <= 0)
    return 0;
  char *record = NULL; /* owned */
  uint64_t domid = 0;
  double age = NAN;
  bool complete = false, urgent = false;
  if (meta_data_get_string(vl->meta, "vmmem:record", &record) != 0 ||
      meta_data_get_unsigned_int(vl->meta, "vmmem:domid", &domid) != 0 ||
      domid > UINT32_MAX ||
      meta_data_get_double(vl->meta, "vmmem:age", &age) != 0 ||
      meta_data_get_boolean(vl->meta, "vmmem:complete", &complete) != 0 ||
      meta_data_get_boolean(vl->meta, "vmmem:urgent", &urgent) != 0) {
    c_complain(LOG_ERR, &bad_complaint,
               PLUGIN ": sample of %s: vmmem's message lacks meta data "
                      "(vmmem and membal of different versions?)",
               vl->plugin_instance);
    sfree(record);
    return 0;
  }
  mb_sample_t s;
  char err[160] = "";
  int r = mb_record_parse(record, strlen(record), &s, err, sizeof(err));
  sfree(record);
  if (r != 0) {
    c_complain(LOG_ERR, &bad_complaint,
               PLUGIN ": sample of %s from vmmem refused: %s",
               vl->plugin_instance, err);
    return 0;
  }
  pthread_mutex_lock(&store_lock);
  if (write_closed)
    goto out;
  mb_dstore_t *d =
      mb_store_get(vl->plugin_instance, (uint32_t)domid, true, true);
  if (d == NULL)
    goto out;
  if (mb_store_sample(d, &s, vl->time, age, complete) && urgent) {
    urgent_pending = true;
    pthread_cond_signal(&store_cond);
  }
out:
  pthread_mutex_unlock(&store_lock);
  return 0;
}

static int mb_flush(cdtime_t timeout, const char *identifier, user_data_t *ud) {
  /* collectd's main thread, which ran mb_init, flushes only at shutdown;
   * `collectdctl flush` comes from unixsock's threads. */
  if (main_thread_known && pthread_equal(pthread_self(), main_thread))
    return 0;
  pthread_mutex_lock(&store_lock);
  if (flush_at == 0)
    flush_at = cdtime() + DOUBLE_TO_CDTIME_T(MB_FLUSH_DELAY_S);
  pthread_cond_signal(&store_cond);
  pthread_mutex_unlock(&store_lock);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* One round                                                              */
/* ---------------------------------------------------------------------- */

static double mb_period_s(void) {
  if (conf_period_s > 0)
    return conf_period_s;
  return 3.0 * CDTIME_T_TO_DOUBLE(plugin_get_interval());
}

static const mb_domconf_t *mb_domconf(const char *name) {
  for (size_t i = 0; i < conf_doms_num; i++)
    if (strcmp(conf_doms[i].name, name) == 0)
      return conf_doms + i;
  return NULL;
}

/* Fills the sample part of *dom from the store. A domain whose latest
 * sample vmmem did not declare whole has no sample this round (the policy
 * freezes it: never shrunk). Its age is vmmem's, grown by the time since
 * vmmem read it. Caller holds store_lock. */
static void mb_fill_sample(mb_domain_t *dom, cdtime_t now) {
  mb_dstore_t *d = mb_store_get(dom->name, dom->domid, false, false);
  if (d == NULL || d->domid != dom->domid || !d->have_cur || !d->cur_complete ||
      !mb_sample_has(&d->cur, MB_F_MEMTOTAL))
    return;
  dom->has_sample = true;
  dom->sample = d->cur;
  if (d->have_prev) {
    /* The guest's own clock times its counters; arrival times only when
     * the records do not tell (or the guest rebooted in between). */
    double dt = d->cur.uptime_ms > d->prev.uptime_ms && d->prev.uptime_ms > 0
                    ? (double)(d->cur.uptime_ms - d->prev.uptime_ms) / 1000.0
                    : CDTIME_T_TO_DOUBLE(d->cur_time - d->prev_time);
    mb_sample_rates(&d->prev, &d->cur, dt, &dom->rates);
  }
  dom->sample_age_s =
      d->cur_age_s +
      (now > d->cur_time ? CDTIME_T_TO_DOUBLE(now - d->cur_time) : 0.0);
}

static void mb_dispatch(const char *plugin_instance, const char *type,
                        const char *type_instance, value_t value, cdtime_t now,
                        cdtime_t interval) {
  value_list_t vl = VALUE_LIST_INIT;
  vl.values = &value;
  vl.values_len = 1;
  vl.time = now;
  vl.interval = interval;
  sstrncpy(vl.plugin, PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

/* The decisions in force, re-dispatched every interval between rounds so
 * that RRD shows them as a continuous line at collectd's resolution, not
 * only at the instants of the rounds. */
typedef struct {
  char name[MB_NAME_LEN];
  uint64_t target_kib;  /* in force */
  uint64_t decided_kib; /* what the policy decided (differs on failure) */
  uint64_t cma_kib;
  mb_reason_t reason;
} mb_snapdom_t;

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static mb_snapdom_t *snap; /* owned, snap_num entries */
static size_t snap_num;
static bool snap_valid;
static double snap_tau;
static uint64_t snap_pool_kib, snap_sum_kib, snap_rounds;
static cdtime_t snap_last; /* time of the last dispatch */
static bool snap_pending;  /* a round's decisions wait for the next second */

/* The second (as rrdtool rounds it) a time falls in. */
static time_t mb_second(cdtime_t t) { return CDTIME_T_TO_TIME_T(t); }

/* Caller holds snap_lock. */
static void mb_snap_dispatch(cdtime_t now) {
  cdtime_t interval = plugin_get_interval();
  for (size_t i = 0; i < snap_num; i++) {
    mb_dispatch(snap[i].name, "memory", "target",
                (value_t){.gauge = (gauge_t)snap[i].target_kib * 1024.0}, now,
                interval);
    mb_dispatch(snap[i].name, "memory", "cma",
                (value_t){.gauge = (gauge_t)snap[i].cma_kib * 1024.0}, now,
                interval);
    mb_dispatch(snap[i].name, "membal_reason", "",
                (value_t){.gauge = (gauge_t)snap[i].reason}, now, interval);
  }
  mb_dispatch("", "membal_tau", "", (value_t){.gauge = snap_tau}, now,
              interval);
  mb_dispatch("", "memory", "pool",
              (value_t){.gauge = (gauge_t)snap_pool_kib * 1024.0}, now,
              interval);
  mb_dispatch("", "memory", "sum_targets",
              (value_t){.gauge = (gauge_t)snap_sum_kib * 1024.0}, now,
              interval);
  mb_dispatch("", "membal_rounds", "",
              (value_t){.derive = (derive_t)snap_rounds}, now, interval);
  /* The same count as a gauge: unixsock's GETVAL shows derives as rates,
   * and an observer wants to see which round is in force. */
  mb_dispatch("", "membal_round", "", (value_t){.gauge = (gauge_t)snap_rounds},
              now, interval);
  snap_last = now;
}

/* Dispatches pending decisions stamped with the clock's time, never a time
 * to come (a stamp ahead of the clock would make rrdtool refuse every
 * update until the clock caught up with it). rrdtool takes one update per
 * file and second: in a second that already had a dispatch, they stay
 * pending until the next second begins (mb_snap_due). Caller holds
 * snap_lock. */
static void mb_snap_try_dispatch(void) {
  cdtime_t now = cdtime();
  if (!snap_pending || !snap_valid)
    return;
  if (snap_last != 0 && mb_second(now) == mb_second(snap_last))
    return;
  snap_pending = false;
  mb_snap_dispatch(now);
}

/* When pending decisions can go out: 0 when none are pending. */
static cdtime_t mb_snap_due(void) {
  pthread_mutex_lock(&snap_lock);
  cdtime_t due = 0;
  if (snap_pending && snap_valid)
    due = TIME_T_TO_CDTIME_T(mb_second(snap_last) + 1);
  pthread_mutex_unlock(&snap_lock);
  return due;
}

/* A round's decisions: recorded and dispatched now, or at the start of the
 * next second. */
static void mb_snap_publish(const mb_domain_t *doms, const mb_decision_t *dec,
                            const uint64_t *decided, size_t n, double tau,
                            uint64_t pool_kib, uint64_t sum_kib,
                            uint64_t nrounds) {
  mb_snapdom_t *tmp = calloc(n > 0 ? n : 1, sizeof(*tmp)); /* owned */
  if (tmp == NULL) {
    ERROR(PLUGIN ": out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    sstrncpy(tmp[i].name, doms[i].name, sizeof(tmp[i].name));
    tmp[i].target_kib = dec[i].target_kib;
    tmp[i].decided_kib = decided[i];
    tmp[i].cma_kib = dec[i].cma_kib;
    tmp[i].reason = dec[i].reason;
  }
  pthread_mutex_lock(&snap_lock);
  free(snap);
  snap = tmp;
  snap_num = n;
  snap_tau = tau;
  snap_pool_kib = pool_kib;
  snap_sum_kib = sum_kib;
  snap_rounds = nrounds;
  snap_valid = true;
  snap_pending = true;
  mb_snap_try_dispatch();
  pthread_mutex_unlock(&snap_lock);
}

/* The previous round's decision for a domain; UINT64_MAX when none. Only
 * changed decisions are logged (DryRun and failing domains would otherwise
 * log the same line every round). */
static uint64_t mb_snap_prev_decided(const char *name) {
  uint64_t kib = UINT64_MAX;
  pthread_mutex_lock(&snap_lock);
  for (size_t i = 0; i < snap_num; i++)
    if (strcmp(snap[i].name, name) == 0)
      kib = snap[i].decided_kib;
  pthread_mutex_unlock(&snap_lock);
  return kib;
}

static int mb_read(void) {
  pthread_mutex_lock(&snap_lock);
  /* The decisions in force, again, unless a round just dispatched them. */
  cdtime_t now = cdtime();
  if (snap_valid && now - snap_last >= plugin_get_interval() / 2)
    snap_pending = true;
  mb_snap_try_dispatch();
  pthread_mutex_unlock(&snap_lock);
  return 0;
}

static int mb_backend_ensure(void) {
  if (backend != NULL)
    return 0;
  char err[256] = "";
  mb_backend_opts_t opts = {.kind = conf_backend,
                            .xenstore_path = conf_xenstore_path,
                            .uri = conf_uri,
                            .no_records = true};
  backend = mb_backend_open(&opts, err, sizeof(err));
  if (backend == NULL) {
    c_complain(LOG_ERR, &backend_complaint,
               PLUGIN ": cannot open backend \"%s\": %s", conf_backend, err);
    return -1;
  }
  c_release(LOG_NOTICE, &backend_complaint,
            PLUGIN ": backend \"%s\" open again", conf_backend);
  return 0;
}

static void mb_set_failed(const char *name, const char *msg) {
  pthread_mutex_lock(&store_lock);
  mb_dstore_t *d = mb_store_get(name, 0, true, false);
  if (d != NULL)
    c_complain_once(LOG_ERR, &d->set_complaint, "%s", msg);
  else
    ERROR("%s", msg);
  pthread_mutex_unlock(&store_lock);
}

static void mb_set_ok(const char *name) {
  pthread_mutex_lock(&store_lock);
  mb_dstore_t *d = mb_store_get(name, 0, false, false);
  if (d != NULL)
    c_release(LOG_NOTICE, &d->set_complaint,
              PLUGIN ": setting the target of %s works again", name);
  pthread_mutex_unlock(&store_lock);
}

static bool mb_actuate(const mb_domain_t *dom, uint64_t target_kib) {
  char err[256] = "";
  if (mb_backend_set_target(backend, dom->domid, target_kib, err,
                            sizeof(err)) != 0) {
    char msg[512];
    ssnprintf(msg, sizeof(msg),
              PLUGIN ": setting the target of %s (domid %" PRIu32
                     ") to %" PRIu64 " KiB failed: %s",
              dom->name, dom->domid, target_kib, err);
    mb_set_failed(dom->name, msg);
    return false;
  }
  mb_set_ok(dom->name);
  return true;
}

static void mb_round(const char *why) {
  mb_dominfo_t *info = NULL; /* owned, from the backend */
  size_t info_num = 0;
  mb_domain_t *doms = NULL;  /* owned */
  mb_decision_t *dec = NULL; /* owned */
  uint64_t *decided = NULL;  /* owned: the policy's targets, dec holds what
                                is in force after actuation */
  char err[256] = "";

  if (mb_backend_ensure() != 0)
    return;
  mb_hostinfo_t hi;
  if (mb_backend_host(backend, &hi, err, sizeof(err)) != 0 ||
      mb_backend_list(backend, &info, &info_num, err, sizeof(err)) != 0) {
    c_complain(LOG_ERR, &backend_complaint,
               PLUGIN ": backend \"%s\" failed: %s; reopening", conf_backend,
               err);
    mb_backend_close(backend);
    backend = NULL;
    goto out;
  }
  c_release(LOG_NOTICE, &backend_complaint,
            PLUGIN ": backend \"%s\" answers again", conf_backend);

  doms = calloc(info_num > 0 ? info_num : 1, sizeof(*doms));
  dec = calloc(info_num > 0 ? info_num : 1, sizeof(*dec));
  decided = calloc(info_num > 0 ? info_num : 1, sizeof(*decided));
  if (doms == NULL || dec == NULL || decided == NULL) {
    ERROR(PLUGIN ": out of memory");
    goto out;
  }

  cdtime_t now = cdtime();
  uint64_t dom0_kib = 0, guests_current_kib = 0;
  size_t n = 0;
  pthread_mutex_lock(&store_lock);
  for (size_t i = 0; i < info_num; i++) {
    const mb_dominfo_t *di = info + i;
    if (di->domid == 0) {
      dom0_kib = di->current_kib;
      continue;
    }
    mb_domain_t *dom = doms + n++;
    dom->domid = di->domid;
    sstrncpy(dom->name, di->name, sizeof(dom->name));
    dom->current_kib = di->current_kib;
    dom->target_kib = di->target_kib != 0 ? di->target_kib : di->current_kib;
    dom->max_kib = di->max_kib;
    dom->weight = 1;
    dom->node_mask = di->node_mask;
    const mb_domconf_t *dc = mb_domconf(di->name);
    if (dc != NULL) {
      dom->min_kib = dc->min_kib;
      if (dc->max_kib != 0 && (dom->max_kib == 0 || dc->max_kib < dom->max_kib))
        dom->max_kib = dc->max_kib;
      dom->weight = dc->weight;
    }
    if (dom->min_kib > dom->max_kib && dom->max_kib != 0)
      dom->min_kib = dom->max_kib;
    guests_current_kib += di->current_kib;
    mb_fill_sample(dom, now);
  }
  /* Forget domains gone from the hypervisor for a while. */
  for (size_t i = 0; i < store_num;) {
    bool present = false;
    for (size_t j = 0; j < n && !present; j++)
      present = strcmp(doms[j].name, store[i].name) == 0;
    if (!present && now > store[i].last_update &&
        CDTIME_T_TO_DOUBLE(now - store[i].last_update) > MB_FORGET_AFTER_S) {
      store[i] = store[--store_num];
      continue;
    }
    i++;
  }
  pthread_mutex_unlock(&store_lock);

  mb_host_t host = {.total_kib = hi.total_kib, .free_kib = hi.free_kib};
  host.nr_nodes = hi.nr_nodes <= MB_MAX_NODES ? hi.nr_nodes : 0;
  for (unsigned k = 0; k < host.nr_nodes; k++)
    host.node_free_kib[k] = hi.node_free_kib[k];
  if (conf_reserve_auto) {
    /* What neither the guests nor the free pool hold: dom0 and the
     * hypervisor's own memory, plus slack. */
    uint64_t held = hi.total_kib > hi.free_kib + guests_current_kib
                        ? hi.total_kib - hi.free_kib - guests_current_kib
                        : 0;
    if (held < dom0_kib)
      held = dom0_kib;
    host.reserve_kib = held + MB_DEFAULT_RESERVE_SLACK_KIB;
  } else {
    host.reserve_kib = conf_reserve_kib;
  }
  if (host.reserve_kib > host.total_kib)
    host.reserve_kib = host.total_kib;
  uint64_t pool_kib = host.total_kib - host.reserve_kib;

  if (mb_policy_compute(&conf, &pstate, &host, doms, n, dec) != 0) {
    ERROR(PLUGIN ": policy refused the configuration; nothing done");
    goto out;
  }
  rounds++;

  /* The envelope promises this; check it anyway, before touching anything. */
  uint64_t sum_kib = 0, floors_kib = 0;
  bool all_at_floor = true;
  for (size_t i = 0; i < n; i++) {
    sum_kib += dec[i].target_kib;
    floors_kib += dec[i].floor_kib;
    if (dec[i].target_kib > dec[i].floor_kib)
      all_at_floor = false;
  }
  if (sum_kib > pool_kib) {
    if (all_at_floor)
      c_complain(LOG_WARNING, &sum_complaint,
                 PLUGIN ": the domains' minimums (%" PRIu64
                        " KiB) exceed the pool (%" PRIu64 " KiB)",
                 floors_kib, pool_kib);
    else
      ERROR(PLUGIN ": BUG: sum of targets %" PRIu64
                   " KiB exceeds the pool %" PRIu64 " KiB (total %" PRIu64
                   " KiB - reserve %" PRIu64 " KiB)",
            sum_kib, pool_kib, host.total_kib, host.reserve_kib);
  } else {
    c_release(LOG_NOTICE, &sum_complaint,
              PLUGIN ": the pool covers the domains' minimums again");
  }

  /* Shrinks first so that the memory they free is there for the grows. A
   * shrink that failed did not free anything: grows are held back so that
   * the targets in force never exceed the pool. */
  uint64_t in_force_kib = 0;
  for (size_t i = 0; i < n; i++) {
    decided[i] = dec[i].target_kib;
    in_force_kib += doms[i].target_kib;
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      const mb_domain_t *dom = doms + i;
      uint64_t from = dom->target_kib, to = dec[i].target_kib;
      if (to == from)
        continue;
      bool shrink = to < from;
      if ((pass == 0) != shrink)
        continue;
      const char *held = "";
      if (!shrink && !conf_dry_run) {
        uint64_t room = pool_kib > in_force_kib ? pool_kib - in_force_kib : 0;
        if (to - from > room) {
          to = from + room;
          held = " [grow held back: targets in force must fit the pool]";
        }
      }
      if (mb_snap_prev_decided(dom->name) != decided[i])
        INFO(PLUGIN ": %s%s (domid %" PRIu32 ") target %.1f MiB -> %.1f MiB: "
                    "%s (policy %s wanted %.1f MiB, cma %.1f MiB, current "
                    "%.1f MiB%s; round on %s)%s",
             conf_dry_run ? "[dry run] " : "", dom->name, dom->domid,
             from / 1024.0, to / 1024.0, mb_reason_name(dec[i].reason),
             mb_policy_name(conf.kind), dec[i].want_kib / 1024.0,
             dec[i].cma_kib / 1024.0, dom->current_kib / 1024.0,
             dom->has_sample ? "" : ", no fresh sample", why, held);
      if (conf_dry_run)
        continue;
      if (to != from && mb_actuate(dom, to)) {
        in_force_kib = in_force_kib - from + to;
        dec[i].target_kib = to;
      } else {
        dec[i].target_kib = from;
      }
    }
  }
  sum_kib = 0;
  for (size_t i = 0; i < n; i++)
    sum_kib += dec[i].target_kib;

  mb_snap_publish(doms, dec, decided, n, pstate.tau, pool_kib, sum_kib, rounds);
  DEBUG(PLUGIN ": round %" PRIu64 " (%s): %zu guests, sum of targets %" PRIu64
               " KiB, pool %" PRIu64 " KiB",
        rounds, why, n, sum_kib, pool_kib);

out:
  free(decided);
  free(dec);
  free(doms);
  free(info);
}

/* Rounds: every Period, on a flush (after MB_FLUSH_DELAY_S), and on urgent
 * samples: at once, or UrgentInterval after the previous round when that is
 * later; every urgent sample that arrives meanwhile is served by that one
 * round (the store holds the latest samples). */
static void *mb_thread(void *arg) {
  cdtime_t next_round = cdtime() + DOUBLE_TO_CDTIME_T(mb_period_s());
  cdtime_t last_round = 0, dispatch_due = 0;
  cdtime_t urgent_gap = DOUBLE_TO_CDTIME_T(conf_urgent_interval_s);
  pthread_mutex_lock(&store_lock);
  while (!thread_stop) {
    cdtime_t now = cdtime();
    cdtime_t due = next_round;
    if (flush_at != 0 && flush_at < due)
      due = flush_at;
    cdtime_t urgent_due = last_round + urgent_gap;
    if (urgent_pending && urgent_due < due)
      due = urgent_due;
    if (dispatch_due != 0 && dispatch_due < due)
      due = dispatch_due;
    if (now < due) {
      struct timespec ts = CDTIME_T_TO_TIMESPEC(due);
      pthread_cond_timedwait(&store_cond, &store_lock, &ts);
      continue;
    }
    if (dispatch_due != 0 && dispatch_due <= now) {
      pthread_mutex_unlock(&store_lock);
      pthread_mutex_lock(&snap_lock);
      mb_snap_try_dispatch();
      pthread_mutex_unlock(&snap_lock);
      dispatch_due = mb_snap_due();
      pthread_mutex_lock(&store_lock);
      continue;
    }
    const char *why = "period";
    if (urgent_pending && urgent_due <= now)
      why = "urgent sample";
    else if (flush_at != 0 && flush_at <= now)
      why = "flush";
    /* Any round serves the urgent samples that came before it. */
    urgent_pending = false;
    if (flush_at != 0 && flush_at <= now)
      flush_at = 0;
    pthread_mutex_unlock(&store_lock);
    mb_round(why);
    dispatch_due = mb_snap_due();
    last_round = cdtime();
    next_round = last_round + DOUBLE_TO_CDTIME_T(mb_period_s());
    pthread_mutex_lock(&store_lock);
  }
  pthread_mutex_unlock(&store_lock);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                             */
/* ---------------------------------------------------------------------- */

static int mb_init(void) {
  if (conf_failed) {
    ERROR(PLUGIN ": not started: its configuration was refused");
    return -1;
  }
  if (round_thread_running)
    return 0;
  main_thread = pthread_self();
  main_thread_known = true;
  if (conf_backend == NULL && (conf_backend = sstrdup("libxl")) == NULL) {
    ERROR(PLUGIN ": out of memory");
    return -1;
  }
  char err[256] = "";
  if (mb_config_validate(&conf, err, sizeof(err)) != 0) {
    ERROR(PLUGIN ": configuration refused: %s", err);
    return -1;
  }
  mb_state_init(&pstate, &conf);
  /* A backend that is not up yet (xenstored starting) is retried every
   * round; the error is logged now so a wrong setup shows at start. */
  mb_backend_ensure();

  /* Registered only now, so a refused configuration leaves nothing that
   * could act. */
  if (plugin_register_write(PLUGIN, mb_write, NULL) != 0 ||
      plugin_register_flush(PLUGIN, mb_flush, NULL) != 0 ||
      plugin_register_read(PLUGIN, mb_read) != 0) {
    ERROR(PLUGIN ": cannot register callbacks");
    return -1;
  }
  thread_stop = false;
  if (plugin_thread_create(&round_thread, mb_thread, NULL, "membal") != 0) {
    ERROR(PLUGIN ": cannot start the decision thread");
    return -1;
  }
  round_thread_running = true;
  INFO(PLUGIN ": policy %s, backend %s, period %.1f s, urgent interval "
              "%.1f s, reserve %s%s",
       mb_policy_name(conf.kind), conf_backend, mb_period_s(),
       conf_urgent_interval_s, conf_reserve_auto ? "auto" : "fixed",
       conf_dry_run ? ", DRY RUN (targets computed and recorded, never set)"
                    : "");
  return 0;
}

static int mb_shutdown(void) {
  pthread_mutex_lock(&store_lock);
  write_closed = true; /* vmmem's watch may still hand samples */
  pthread_mutex_unlock(&store_lock);
  if (round_thread_running) {
    pthread_mutex_lock(&store_lock);
    thread_stop = true;
    flush_at = 0;
    pthread_cond_signal(&store_cond);
    pthread_mutex_unlock(&store_lock);
    pthread_join(round_thread, NULL);
    round_thread_running = false;
  }
  mb_backend_close(backend);
  backend = NULL;
  pthread_mutex_lock(&store_lock);
  sfree(store);
  store_num = 0;
  pthread_mutex_unlock(&store_lock);
  pthread_mutex_lock(&snap_lock);
  sfree(snap);
  snap_num = 0;
  snap_valid = false;
  pthread_mutex_unlock(&snap_lock);
  sfree(conf_doms);
  conf_doms_num = 0;
  sfree(conf_backend);
  sfree(conf_xenstore_path);
  sfree(conf_uri);
  return 0;
}

/* The plugin is built with hidden visibility; collectd looks this up. */
__attribute__((visibility("default"))) void module_register(void) {
  mb_config_default(&conf);
  plugin_register_complex_config(PLUGIN, mb_config);
  plugin_register_init(PLUGIN, mb_init);
  plugin_register_shutdown(PLUGIN, mb_shutdown);
}
