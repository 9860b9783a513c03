/*
 * membal: collectd write + flush + notification plugin (dom0).
 *
 * The write callback only keeps the latest vmmem values of every domain and
 * assembles them into guest samples (plugins/SCHEMA.md, section 2). All
 * decisions run in membal's own thread: every Period, on
 * `collectdctl flush plugin=membal`, and at once when vmmem raises an urgent
 * notification (swap storm). A round reads the domain list from membal's own
 * backend handle, runs mb_policy_compute(), actuates shrinks before grows,
 * and dispatches its own values (SCHEMA.md, section 3).
 */
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"
#include "utils_complain.h"

#include "backend.h"
#include "membal_policy.h"
#include "round.h"

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
 * and never actuates anything while the daemon goes down. */
#define MB_FLUSH_DELAY_S 0.2
/* Bounds the per-domain store against a flood of instance names. */
#define MB_MAX_DOMAINS 1024
/* Store entries of domains gone from the backend are dropped after this. */
#define MB_FORGET_AFTER_S 120.0
/* How far back a sequence number may be and still be a reordered straggler
 * rather than a guest that started counting again. */
#define MB_SEQ_REORDER 2

/* A <Domain> block: the round module's clamp. */
typedef mb_round_clamp_t mb_domconf_t;

/* Everything known about one domain from vmmem's values. */
typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  cdtime_t last_update;

  /* Sample being assembled from values with vmmem:seq == build.seq. */
  bool building;
  mb_sample_t build;
  cdtime_t build_time;
  /* Fields the last finished sample had: the current build is complete
   * once it has all of them (vmmem dispatches a whole record at a time). */
  uint64_t expect_have;
  bool build_taken; /* build already promoted to cur */

  bool have_cur;
  mb_sample_t cur;
  cdtime_t cur_time;
  bool have_prev;
  mb_sample_t prev;
  cdtime_t prev_time;

  cdtime_t seq_advanced; /* when a newer seq was last seen */
  bool have_age;
  double vm_age_s; /* vmmem's vmmem_sample/age */
  cdtime_t vm_age_time;

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
static bool conf_dry_run;
static mb_domconf_t *conf_doms; /* owned */
static size_t conf_doms_num;

/* ---- shared state: write/notification/flush callbacks and the thread ---- */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_cond = PTHREAD_COND_INITIALIZER;
static mb_dstore_t *store; /* owned, store_num entries */
static size_t store_num;
static bool thread_stop;
static bool urgent_pending;
static cdtime_t flush_at; /* 0 = no flush pending */

/* ---- thread-only state ---- */
static pthread_t round_thread;
static bool round_thread_running;
static mb_backend_t *backend;   /* owned; used by the thread only */
static mb_round_config_t rconf; /* conf + reserve + clamps, set by mb_init */
static mb_round_state_t rstate;
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

static int mb_field_lookup(const char *key, mb_field_t *out) {
  int f = mb_field_from_key(key, strlen(key));
  if (f < 0 || f >= MB_F_COUNT)
    return -1;
  *out = (mb_field_t)f;
  return 0;
}

/* A finished sample becomes the current one; the one before it is kept for
 * rates. Caller holds store_lock. */
static void mb_store_promote(mb_dstore_t *d, const mb_sample_t *s, cdtime_t t) {
  if (d->have_cur && d->cur.seq != s->seq) {
    d->prev = d->cur;
    d->prev_time = d->cur_time;
    d->have_prev = true;
  }
  d->cur = *s;
  d->cur_time = t;
  d->have_cur = true;
}

/* Caller holds store_lock. */
static void mb_store_forget(mb_dstore_t *d) {
  d->building = false;
  d->build_taken = false;
  d->have_cur = false;
  d->have_prev = false;
  d->expect_have = 0;
}

/* A value for sample `seq` arrived. Caller holds store_lock. */
static void mb_store_begin(mb_dstore_t *d, uint64_t seq, cdtime_t t) {
  if (d->building && d->build.seq == seq)
    return;
  if (d->building && seq < d->build.seq) {
    /* A straggler of the previous sample (write threads may reorder) is
     * dropped by the caller; a sequence that went further back means the
     * guest restarted its agent or rebooted: its history is void. */
    if (seq + MB_SEQ_REORDER >= d->build.seq)
      return;
    mb_store_forget(d);
  }
  if (d->building) {
    /* Every value of the previous seq has arrived by now: it is whole. */
    if (!d->build_taken)
      mb_store_promote(d, &d->build, d->build_time);
    d->expect_have = d->build.have;
  }
  memset(&d->build, 0, sizeof(d->build));
  d->build.seq = seq;
  d->build_time = t;
  d->building = true;
  d->build_taken = false;
  d->seq_advanced = t;
}

static double mb_value_as_double(const data_set_t *ds, const value_list_t *vl) {
  switch (ds->ds[0].type) {
  case DS_TYPE_GAUGE:
    return vl->values[0].gauge;
  case DS_TYPE_DERIVE:
    return (double)vl->values[0].derive;
  case DS_TYPE_COUNTER:
    return (double)vl->values[0].counter;
  case DS_TYPE_ABSOLUTE:
    return (double)vl->values[0].absolute;
  }
  return NAN;
}

static int mb_write(const data_set_t *ds, const value_list_t *vl,
                    user_data_t *ud) {
  if (strcmp(vl->plugin, "vmmem") != 0 || vl->plugin_instance[0] == 0)
    return 0;
  if (ds->ds_num != 1 || vl->values_len != 1)
    return 0;
  uint64_t domid = 0, seq = 0;
  bool have_domid =
      vl->meta != NULL &&
      meta_data_get_unsigned_int(vl->meta, "vmmem:domid", &domid) == 0 &&
      domid <= UINT32_MAX;
  bool have_seq = vl->meta != NULL &&
                  meta_data_get_unsigned_int(vl->meta, "vmmem:seq", &seq) == 0;
  double v = mb_value_as_double(ds, vl);
  if (!isfinite(v) || v < 0)
    return 0;

  bool is_sample_meta = strcmp(vl->type, "vmmem_sample") == 0;
  mb_field_t field = MB_F_COUNT;
  double scale = 1.0;
  if (strcmp(vl->type, "memory") == 0 &&
      strncmp(vl->type_instance, "guest_", 6) == 0) {
    if (mb_field_lookup(vl->type_instance + 6, &field) != 0 ||
        field >= MB_F_FIRST_VMSTAT)
      return 0;
    scale = 1.0 / 1024.0; /* bytes -> KiB */
  } else if (strcmp(vl->type, "vmmem_events") == 0) {
    if (mb_field_lookup(vl->type_instance, &field) != 0 ||
        field < MB_F_FIRST_VMSTAT)
      return 0;
  } else if (!is_sample_meta) {
    return 0;
  }

  pthread_mutex_lock(&store_lock);
  mb_dstore_t *d =
      mb_store_get(vl->plugin_instance, (uint32_t)domid, true, have_domid);
  if (d == NULL)
    goto out;
  d->last_update = vl->time;
  if (is_sample_meta) {
    if (strcmp(vl->type_instance, "age") == 0) {
      d->have_age = true;
      d->vm_age_s = v;
      d->vm_age_time = vl->time;
    } else if (strcmp(vl->type_instance, "seq") == 0 && d->building &&
               v + MB_SEQ_REORDER < (double)d->build.seq) {
      mb_store_forget(d); /* guest restarted its sequence */
    }
    goto out;
  }
  if (!have_seq)
    goto out; /* a guest-sample value that cannot be tied to its sample */
  mb_store_begin(d, seq, vl->time);
  if (d->build.seq != seq)
    goto out; /* late value of an older sample */
  double kib = v * scale;
  if (kib > (double)UINT64_MAX / 2)
    goto out;
  d->build.v[field] = (uint64_t)kib;
  d->build.have |= (uint64_t)1 << field;
out:
  pthread_mutex_unlock(&store_lock);
  return 0;
}

static int mb_notification(const notification_t *n, user_data_t *ud) {
  if (strcmp(n->plugin, "vmmem") != 0 || n->plugin_instance[0] == 0 ||
      strcmp(n->type_instance, "urgent") != 0)
    return 0;
  const char *record = NULL;
  uint64_t domid = 0;
  bool have_domid = false;
  for (const notification_meta_t *m = n->meta; m != NULL; m = m->next) {
    if (strcmp(m->name, "vmmem:record") == 0 && m->type == NM_TYPE_STRING)
      record = m->nm_value.nm_string;
    else if (strcmp(m->name, "vmmem:domid") == 0 &&
             m->type == NM_TYPE_UNSIGNED_INT &&
             m->nm_value.nm_unsigned_int <= UINT32_MAX) {
      domid = m->nm_value.nm_unsigned_int;
      have_domid = true;
    }
  }
  mb_sample_t s;
  bool have_sample = false;
  if (record != NULL) {
    char err[160] = "";
    if (mb_record_parse(record, strlen(record), &s, err, sizeof(err)) == 0)
      have_sample = true;
    else
      WARNING(PLUGIN ": urgent record of %s rejected: %s", n->plugin_instance,
              err);
  }
  cdtime_t t = n->time != 0 ? n->time : cdtime();
  pthread_mutex_lock(&store_lock);
  if (have_sample && have_domid) {
    mb_dstore_t *d =
        mb_store_get(n->plugin_instance, (uint32_t)domid, true, true);
    /* The record may be newer than the sample being assembled from vmmem's
     * values, or the very same sample arriving whole before its last
     * values did: either way it is complete by construction. */
    bool newer = d != NULL && (!d->building || s.seq > d->build.seq);
    bool completes =
        d != NULL && d->building && s.seq == d->build.seq && !d->build_taken;
    if (s.seq != 0 && (newer || completes)) {
      if (newer && d->building && !d->build_taken)
        mb_store_promote(d, &d->build, d->build_time);
      d->build = s;
      d->build_time = t;
      d->building = true;
      d->expect_have = s.have;
      d->seq_advanced = t;
      d->last_update = t;
      mb_store_promote(d, &s, t);
      d->build_taken = true;
    }
  }
  /* Even without a usable record the guest is in trouble: decide now. */
  urgent_pending = true;
  pthread_cond_signal(&store_cond);
  pthread_mutex_unlock(&store_lock);
  return 0;
}

static int mb_flush(cdtime_t timeout, const char *identifier, user_data_t *ud) {
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

/* Fills the sample part of *dom from the store. Caller holds store_lock. */
static void mb_fill_sample(mb_domain_t *dom, cdtime_t now) {
  mb_dstore_t *d = mb_store_get(dom->name, dom->domid, false, false);
  if (d == NULL || d->domid != dom->domid)
    return;
  if (d->building && (d->build.have & d->expect_have) == d->expect_have &&
      mb_sample_has(&d->build, MB_F_MEMTOTAL)) {
    /* Also refreshes cur with fields of its seq that came after a round. */
    mb_store_promote(d, &d->build, d->build_time);
    d->build_taken = true;
  }
  /* A newer sample still arriving, or missing fields: skip this domain for
   * this round rather than guess (no sample = frozen by the policy). */
  if (!d->have_cur || (d->building && !d->build_taken))
    return;
  dom->has_sample = true;
  dom->sample = d->cur;
  if (d->have_prev && d->prev.seq != 0)
    mb_sample_rates(&d->prev, &d->cur,
                    CDTIME_T_TO_DOUBLE(d->cur_time - d->prev_time),
                    &dom->rates);
  double age = d->seq_advanced != 0 && now > d->seq_advanced
                   ? CDTIME_T_TO_DOUBLE(now - d->seq_advanced)
                   : 0.0;
  if (d->have_age) {
    double vm_age =
        d->vm_age_s +
        (now > d->vm_age_time ? CDTIME_T_TO_DOUBLE(now - d->vm_age_time) : 0.0);
    if (vm_age < age)
      age = vm_age;
  }
  dom->sample_age_s = age;
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

/* rrdtool takes one update per file and (rounded) second. */
static cdtime_t mb_next_slot(cdtime_t last) {
  if (last == 0)
    return 0;
  return TIME_T_TO_CDTIME_T_STATIC(CDTIME_T_TO_TIME_T(last)) +
         DOUBLE_TO_CDTIME_T_STATIC(0.51);
}

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

/* A round's decisions: recorded and dispatched now. */
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
  /* The round's values go out at once; if the last dispatch took this
   * second, they are stamped with the next free one (< 1 s ahead) rather
   * than delayed, so a flush shows its round immediately. */
  cdtime_t now = cdtime(), slot = mb_next_slot(snap_last);
  if (now < slot)
    now = slot;
  mb_snap_dispatch(now);
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
  cdtime_t now = cdtime();
  if (snap_valid && now >= mb_next_slot(snap_last))
    mb_snap_dispatch(now);
  pthread_mutex_unlock(&snap_lock);
  return 0;
}

static int mb_backend_ensure(void) {
  if (backend != NULL)
    return 0;
  char err[256] = "";
  mb_backend_opts_t opts = {.kind = conf_backend,
                            .xenstore_path = conf_xenstore_path,
                            .uri = conf_uri};
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
  mb_domain_t *in_doms = NULL;   /* owned: the backend's list + samples */
  mb_domain_t *doms = NULL;      /* owned: the plan's guests */
  mb_decision_t *dec = NULL;     /* owned */
  mb_round_step_t *steps = NULL; /* owned */
  uint64_t *decided = NULL;      /* owned: the policy's targets, dec holds
                                    what is in force after actuation */
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

  size_t cap = info_num > 0 ? info_num : 1;
  in_doms = calloc(cap, sizeof(*in_doms));
  doms = calloc(cap, sizeof(*doms));
  dec = calloc(cap, sizeof(*dec));
  steps = calloc(cap, sizeof(*steps));
  decided = calloc(cap, sizeof(*decided));
  if (in_doms == NULL || doms == NULL || dec == NULL || steps == NULL ||
      decided == NULL) {
    ERROR(PLUGIN ": out of memory");
    goto out;
  }

  cdtime_t now = cdtime();
  pthread_mutex_lock(&store_lock);
  for (size_t i = 0; i < info_num; i++) {
    const mb_dominfo_t *di = info + i;
    mb_domain_t *dom = in_doms + i;
    dom->domid = di->domid;
    sstrncpy(dom->name, di->name, sizeof(dom->name));
    dom->current_kib = di->current_kib;
    dom->target_kib = di->target_kib;
    dom->max_kib = di->max_kib;
    dom->node_mask = di->node_mask;
    if (di->domid != 0)
      mb_fill_sample(dom, now);
  }
  /* Forget domains gone from the hypervisor for a while. */
  for (size_t i = 0; i < store_num;) {
    bool present = false;
    for (size_t j = 0; j < info_num && !present; j++)
      present =
          in_doms[j].domid != 0 && strcmp(in_doms[j].name, store[i].name) == 0;
    if (!present && now > store[i].last_update &&
        CDTIME_T_TO_DOUBLE(now - store[i].last_update) > MB_FORGET_AFTER_S) {
      store[i] = store[--store_num];
      continue;
    }
    i++;
  }
  pthread_mutex_unlock(&store_lock);

  mb_round_input_t in = {
      .now_s = CDTIME_T_TO_DOUBLE(now), .doms = in_doms, .n = info_num};
  in.host.total_kib = hi.total_kib;
  in.host.free_kib = hi.free_kib;
  in.host.nr_nodes = hi.nr_nodes <= MB_MAX_NODES ? hi.nr_nodes : 0;
  for (unsigned k = 0; k < in.host.nr_nodes; k++)
    in.host.node_free_kib[k] = hi.node_free_kib[k];
  mb_round_plan_t plan = {.doms = doms, .dec = dec, .steps = steps, .cap = cap};
  if (mb_round_compute(&rconf, &rstate, &in, &plan) != 0) {
    ERROR(PLUGIN ": policy refused the configuration; nothing done");
    goto out;
  }
  size_t n = plan.n;
  uint64_t pool_kib = plan.pool_kib;

  /* The envelope promises this; the round module checked it anyway. */
  if (plan.audit == MB_ROUND_FLOORS_OVER_POOL) {
    c_complain(LOG_WARNING, &sum_complaint,
               PLUGIN ": the domains' minimums (%" PRIu64
                      " KiB) exceed the pool (%" PRIu64 " KiB)",
               plan.floors_kib, pool_kib);
  } else if (plan.audit == MB_ROUND_SUM_BUG) {
    ERROR(PLUGIN ": BUG: sum of targets %" PRIu64
                 " KiB exceeds the pool %" PRIu64 " KiB (total %" PRIu64
                 " KiB - reserve %" PRIu64 " KiB); nothing actuated",
          plan.sum_kib, pool_kib, plan.host.total_kib, plan.host.reserve_kib);
  } else {
    c_release(LOG_NOTICE, &sum_complaint,
              PLUGIN ": the pool covers the domains' minimums again");
  }

  /* Shrinks first, grows held to what the shrinks free (the plan's
   * order); a failed step frees nothing and holds the later grows. */
  for (size_t i = 0; i < n; i++)
    decided[i] = dec[i].target_kib;
  for (size_t k = 0; k < plan.nsteps; k++) {
    const mb_round_step_t *s = &plan.steps[k];
    const mb_domain_t *dom = doms + s->dom;
    uint64_t from = s->from_kib, to = conf_dry_run ? s->want_kib : s->to_kib;
    const char *held =
        to < s->want_kib
            ? " [grow held back: targets in force must fit the pool]"
            : "";
    if (mb_snap_prev_decided(dom->name) != decided[s->dom])
      INFO(PLUGIN ": %s%s (domid %" PRIu32 ") target %.1f MiB -> %.1f MiB: "
                  "%s (policy %s wanted %.1f MiB, cma %.1f MiB, current "
                  "%.1f MiB%s; round on %s)%s",
           conf_dry_run ? "[dry run] " : "", dom->name, dom->domid,
           from / 1024.0, to / 1024.0, mb_reason_name(dec[s->dom].reason),
           mb_policy_name(conf.kind), dec[s->dom].want_kib / 1024.0,
           dec[s->dom].cma_kib / 1024.0, dom->current_kib / 1024.0,
           dom->has_sample ? "" : ", no fresh sample", why, held);
    if (conf_dry_run)
      continue; /* dec keeps the decision: recorded, never applied */
    mb_round_step_done(&plan, k, to == from || mb_actuate(dom, to));
  }
  uint64_t sum_kib = mb_round_sum_in_force(&plan);

  mb_snap_publish(doms, dec, decided, n, rstate.policy.tau, pool_kib, sum_kib,
                  rstate.rounds);
  DEBUG(PLUGIN ": round %" PRIu64 " (%s): %zu guests, sum of targets %" PRIu64
               " KiB, pool %" PRIu64 " KiB",
        rstate.rounds, why, n, sum_kib, pool_kib);

out:
  free(decided);
  free(steps);
  free(dec);
  free(doms);
  free(in_doms);
  free(info);
}

static void *mb_thread(void *arg) {
  cdtime_t next_round = cdtime() + DOUBLE_TO_CDTIME_T(mb_period_s());
  pthread_mutex_lock(&store_lock);
  while (!thread_stop) {
    cdtime_t now = cdtime();
    cdtime_t due = next_round;
    if (flush_at != 0 && flush_at < due)
      due = flush_at;
    if (urgent_pending)
      due = now;
    if (now < due) {
      struct timespec ts = CDTIME_T_TO_TIMESPEC(due);
      pthread_cond_timedwait(&store_cond, &store_lock, &ts);
      continue;
    }
    const char *why = "period";
    if (urgent_pending)
      why = "urgent notification";
    else if (flush_at != 0 && flush_at <= now)
      why = "flush";
    urgent_pending = false;
    if (flush_at != 0 && flush_at <= now)
      flush_at = 0;
    pthread_mutex_unlock(&store_lock);
    mb_round(why);
    next_round = cdtime() + DOUBLE_TO_CDTIME_T(mb_period_s());
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
  if (conf_backend == NULL && (conf_backend = sstrdup("libxl")) == NULL) {
    ERROR(PLUGIN ": out of memory");
    return -1;
  }
  char err[256] = "";
  if (mb_config_validate(&conf, err, sizeof(err)) != 0) {
    ERROR(PLUGIN ": configuration refused: %s", err);
    return -1;
  }
  mb_round_config_default(&rconf);
  rconf.policy = conf;
  rconf.clamps = conf_doms;
  rconf.nclamps = conf_doms_num;
  rconf.reserve_auto = conf_reserve_auto;
  rconf.reserve_kib = conf_reserve_kib;
  if (mb_round_state_init(&rstate, &rconf, MB_MAX_DOMAINS) != 0) {
    ERROR(PLUGIN ": round state: configuration refused or out of memory");
    return -1;
  }
  /* A backend that is not up yet (xenstored starting) is retried every
   * round; the error is logged now so a wrong setup shows at start. */
  mb_backend_ensure();

  /* Registered only now, so a refused configuration leaves nothing that
   * could act. */
  if (plugin_register_write(PLUGIN, mb_write, NULL) != 0 ||
      plugin_register_flush(PLUGIN, mb_flush, NULL) != 0 ||
      plugin_register_notification(PLUGIN, mb_notification, NULL) != 0 ||
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
  INFO(PLUGIN ": policy %s, backend %s, period %.1f s, reserve %s%s",
       mb_policy_name(conf.kind), conf_backend, mb_period_s(),
       conf_reserve_auto ? "auto" : "fixed",
       conf_dry_run ? ", DRY RUN (targets computed and recorded, never set)"
                    : "");
  return 0;
}

static int mb_shutdown(void) {
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
  mb_round_state_dispose(&rstate);
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
