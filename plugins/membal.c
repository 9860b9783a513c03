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
#include "control.h"
#include "live.h"
#include "membal_policy.h"
#include "status.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
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
#define MB_DEFAULT_RESERVE_SLACK_KIB (64 * 1024)
/* How far back a sequence number may be and still be a reordered straggler
 * rather than a guest that started counting again. */
#define MB_SEQ_REORDER 2

typedef struct {
  char name[MB_NAME_LEN];
  uint64_t min_kib; /* 0 = policy's floor */
  uint64_t max_kib; /* 0 = hypervisor maximum */
  uint32_t weight;
  bool balance; /* false: never balanced, as if held for ever */
} mb_domconf_t;

/* `membal hold NAME [SECONDS]`: the domain's target is left alone. */
typedef struct {
  char name[MB_NAME_LEN];
  cdtime_t until; /* 0 = until `membal release` */
} mb_hold_t;

/* `membal reserve SIZE --for NAME --timeout S`: memory kept out of the
 * pool until NAME appears in the hypervisor or the time is up. */
typedef struct {
  uint64_t id;
  char name[MB_NAME_LEN]; /* "" = no domain named: held until the timeout */
  uint64_t kib;
  cdtime_t until;
} mb_resv_t;

/* Bounds the operator's tables. */
#define MB_MAX_HOLDS 256
#define MB_MAX_RESV 64

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
/* <Live>: the read-only live view (live.h); off unless the block is given. */
static bool conf_live;
static char *conf_live_address; /* owned; NULL = 127.0.0.1 */
static unsigned conf_live_port = 9091;
static unsigned conf_live_max_connections = 32;
static char *conf_live_datadir;   /* owned; NULL = /var/lib/collectd/rrd */
static mb_live_t *live;           /* owned; written by init/shutdown only */
static char *conf_control_socket; /* owned; NULL = MB_CONTROL_DEFAULT */
#define MB_CONTROL_DEFAULT "/run/membal.sock"
static mb_control_t *control;     /* owned; written by init/shutdown only */
static mb_status_t *status_board; /* owned; written by init/shutdown only */

/* ---- shared state: write/notification/flush callbacks and the thread ---- */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_cond = PTHREAD_COND_INITIALIZER;
static mb_dstore_t *store; /* owned, store_num entries */
static size_t store_num;
static bool thread_stop;
static bool urgent_pending;
static cdtime_t flush_at;     /* 0 = no flush pending */
static bool operator_pending; /* a hold, release or reserve asks a round */
static mb_hold_t holds[MB_MAX_HOLDS];
static size_t holds_num;
static mb_resv_t resvs[MB_MAX_RESV];
static size_t resvs_num;
static uint64_t resv_next_id = 1;
static uint64_t host_free_kib; /* vmmem's memory/host_free, every interval */
static bool have_host_free;

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
  mb_domconf_t d = {.weight = 1, .balance = true};
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
    } else if (strcasecmp("Balance", c->key) == 0) {
      st = cf_util_get_boolean(c, &d.balance);
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

/* <Live> Address "127.0.0.1" Port 9091 MaxConnections 32
 *        DataDir "/var/lib/collectd/rrd" </Live> */
static int mb_conf_live(const oconfig_item_t *ci) {
  if (ci->values_num != 0) {
    ERROR(PLUGIN ": <Live> takes no argument");
    return -1;
  }
  if (conf_live) {
    ERROR(PLUGIN ": <Live> given twice");
    return -1;
  }
  conf_live = true;
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    unsigned u;
    if (strcasecmp("Address", c->key) == 0) {
      if (cf_util_get_string(c, &conf_live_address) != 0)
        return -1;
    } else if (strcasecmp("DataDir", c->key) == 0) {
      if (cf_util_get_string(c, &conf_live_datadir) != 0)
        return -1;
    } else if (strcasecmp("Port", c->key) == 0) {
      if (mb_conf_unsigned(c, &u) != 0)
        return -1;
      if (u < 1 || u > 65535) {
        ERROR(PLUGIN ": <Live> Port must be in 1..65535");
        return -1;
      }
      conf_live_port = u;
    } else if (strcasecmp("MaxConnections", c->key) == 0) {
      if (mb_conf_unsigned(c, &u) != 0)
        return -1;
      if (u < 1 || u > 1024) {
        ERROR(PLUGIN ": <Live> MaxConnections must be in 1..1024");
        return -1;
      }
      conf_live_max_connections = u;
    } else {
      ERROR(PLUGIN ": <Live>: unknown option \"%s\" (Address, Port, "
                   "MaxConnections, DataDir)",
            c->key);
      return -1;
    }
  }
  return 0;
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
  if (strcasecmp("Live", c->key) == 0)
    return mb_conf_live(c);
  if (strcasecmp("ControlSocket", c->key) == 0) {
    if (cf_util_get_string(c, &conf_control_socket) != 0)
      return -1;
    if (conf_control_socket[0] != '/') {
      ERROR(PLUGIN ": ControlSocket \"%s\" must be an absolute path",
            conf_control_socket);
      return -1;
    }
    return 0;
  }
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

/* vmmem's host free memory: what `membal reserve` waits on. */
static void mb_write_host_free(const data_set_t *ds, const value_list_t *vl) {
  if (strcmp(vl->host, hostname_g) != 0 || strcmp(vl->type, "memory") != 0 ||
      strcmp(vl->type_instance, "host_free") != 0 || vl->values_len != 1 ||
      ds->ds_num != 1 || ds->ds[0].type != DS_TYPE_GAUGE)
    return;
  double v = vl->values[0].gauge;
  if (!isfinite(v) || v < 0 || v > 1e18)
    return;
  pthread_mutex_lock(&store_lock);
  host_free_kib = (uint64_t)(v / 1024.0);
  have_host_free = true;
  pthread_mutex_unlock(&store_lock);
}

static int mb_write(const data_set_t *ds, const value_list_t *vl,
                    user_data_t *ud) {
  if (strcmp(vl->plugin, "vmmem") == 0 && vl->plugin_instance[0] == 0)
    mb_write_host_free(ds, vl);
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

static const mb_domconf_t *mb_domconf(const char *name) {
  for (size_t i = 0; i < conf_doms_num; i++)
    if (strcmp(conf_doms[i].name, name) == 0)
      return conf_doms + i;
  return NULL;
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

/* ---------------------------------------------------------------------- */
/* Notifications, operator requests, status                               */
/* ---------------------------------------------------------------------- */

/* A notification of membal's own (plugin "membal", type "memory"), with the
 * domain and sizes as meta, for notify_email, exec and threshold. Never
 * called with store_lock held: membal's own notification callback sees it. */
static void mb_notify(int severity, const char *domain, const char *what,
                      uint64_t kib, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void mb_notify(int severity, const char *domain, const char *what,
                      uint64_t kib, const char *fmt, ...) {
  notification_t n = {.severity = severity, .time = cdtime()};
  sstrncpy(n.host, hostname_g, sizeof(n.host));
  sstrncpy(n.plugin, PLUGIN, sizeof(n.plugin));
  sstrncpy(n.plugin_instance, domain ? domain : "", sizeof(n.plugin_instance));
  sstrncpy(n.type, "memory", sizeof(n.type));
  sstrncpy(n.type_instance, what, sizeof(n.type_instance));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(n.message, sizeof(n.message), fmt, ap);
  va_end(ap);
  plugin_notification_meta_add_string(&n, "membal:event", what);
  if (domain != NULL && domain[0] != 0)
    plugin_notification_meta_add_string(&n, "membal:domain", domain);
  plugin_notification_meta_add_unsigned_int(&n, "membal:kib", kib);
  plugin_dispatch_notification(&n);
  plugin_notification_meta_free(n.meta);
}

/* Events found under store_lock, notified after it. */
typedef struct {
  int severity;
  char name[MB_NAME_LEN];
  const char *what; /* static */
  uint64_t kib;
  char msg[160];
} mb_event_t;

/* Caller holds store_lock. Drops expired holds and reservations that are
 * met (their domain is in doms) or expired, into ev (at most evmax);
 * returns the reserved sum still in force. */
static uint64_t mb_ops_expire(const mb_domain_t *doms, size_t n, cdtime_t now,
                              mb_event_t *ev, size_t evmax, size_t *nev) {
  for (size_t i = 0; i < holds_num;) {
    if (holds[i].until != 0 && holds[i].until <= now) {
      INFO(PLUGIN ": hold on %s expired: balanced again", holds[i].name);
      holds[i] = holds[--holds_num];
      continue;
    }
    i++;
  }
  uint64_t reserved = 0;
  for (size_t i = 0; i < resvs_num;) {
    const mb_resv_t *r = resvs + i;
    bool appeared = false;
    for (size_t j = 0; r->name[0] != 0 && j < n && !appeared; j++)
      appeared = strcmp(doms[j].name, r->name) == 0;
    if (appeared || r->until <= now) {
      if (*nev < evmax) {
        mb_event_t *e = ev + (*nev)++;
        sstrncpy(e->name, r->name, sizeof(e->name));
        e->kib = r->kib;
        e->severity = appeared ? NOTIF_OKAY : NOTIF_WARNING;
        e->what = appeared ? "reservation_met" : "reservation_expired";
        ssnprintf(e->msg, sizeof(e->msg),
                  appeared ? "reservation %" PRIu64 " of %.0f MiB for %s met: "
                             "the domain is running"
                           : "reservation %" PRIu64 " of %.0f MiB for %s "
                             "expired before the domain appeared",
                  r->id, r->kib / 1024.0, r->name[0] ? r->name : "(any)");
      }
      resvs[i] = resvs[--resvs_num];
      continue;
    }
    reserved += r->kib;
    i++;
  }
  return reserved;
}

/* Caller holds store_lock. The hold on name in force; NULL when none. */
static const mb_hold_t *mb_hold_find(const char *name) {
  for (size_t i = 0; i < holds_num; i++)
    if (strcmp(holds[i].name, name) == 0)
      return holds + i;
  return NULL;
}

/* A domain name as the operator typed it: printable, no blanks. */
static bool mb_name_ok(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len >= MB_NAME_LEN)
    return false;
  for (const char *p = s; *p; p++)
    if (*p <= ' ' || *p > '~')
      return false;
  return true;
}

/* A whole number in [lo, hi]; false otherwise. */
static bool mb_parse_u64(const char *s, uint64_t lo, uint64_t hi,
                         uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != 0 || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

/* Asks the round thread for a round now (caller holds store_lock). */
static void mb_ask_round(void) {
  operator_pending = true;
  pthread_cond_signal(&store_cond);
}

/* The control socket's requests (control.h), on its thread:
 *   status [json] | free | hold NAME [SECONDS] | release NAME
 *   reserve KIB NAME|- TIMEOUT_S | cancel ID */
static void mb_control(const char *line, uid_t uid, mb_strbuf_t *reply,
                       void *ud) {
  /* Up to five words separated by blanks; a sixth makes `extra`. */
  char buf[MB_CONTROL_LINE];
  sstrncpy(buf, line, sizeof(buf));
  char *w[6] = {NULL};
  size_t nw = 0;
  for (char *p = buf; *p != 0 && nw < 6;) {
    while (*p == ' ' || *p == '\t')
      *p++ = 0;
    if (*p == 0)
      break;
    w[nw++] = p;
    while (*p != 0 && *p != ' ' && *p != '\t')
      p++;
  }
  char *cmd = w[0], *a1 = w[1], *a2 = w[2], *a3 = w[3], *extra = w[4];
  if (cmd == NULL) {
    mb_sb_printf(reply, "error empty request\n");
    return;
  }
  if (strcmp(cmd, "status") == 0 && a2 == NULL &&
      (a1 == NULL || strcmp(a1, "json") == 0)) {
    char *text = NULL; /* owned */
    size_t len = 0;
    int rc = a1 ? mb_status_json(status_board, &text, &len)
                : mb_status_table(status_board, &text, &len);
    if (rc == 1)
      mb_sb_printf(reply, "error no round yet: the first round has not run\n");
    else if (rc != 0)
      mb_sb_printf(reply, "error out of memory\n");
    else
      mb_sb_printf(reply, "ok\n%s", text);
    free(text);
    return;
  }
  if (strcmp(cmd, "free") == 0 && a1 == NULL) {
    pthread_mutex_lock(&store_lock);
    uint64_t reserved = 0;
    for (size_t i = 0; i < resvs_num; i++)
      reserved += resvs[i].kib;
    if (have_host_free)
      mb_sb_printf(reply, "ok free_kib %" PRIu64 " reserved_kib %" PRIu64 "\n",
                   host_free_kib, reserved);
    else
      mb_sb_printf(reply, "error vmmem has not reported the host's free "
                          "memory yet\n");
    pthread_mutex_unlock(&store_lock);
    return;
  }
  /* Everything below changes something: logged once, with what was asked. */
  INFO(PLUGIN ": control: uid %u asks \"%s\"", (unsigned)uid, line);
  cdtime_t now = cdtime();
  if (strcmp(cmd, "hold") == 0 && a1 != NULL && a3 == NULL) {
    uint64_t secs = 0;
    if (!mb_name_ok(a1)) {
      mb_sb_printf(reply, "error \"%s\" is not a domain name\n", a1);
      return;
    }
    if (a2 != NULL && !mb_parse_u64(a2, 1, 366 * 86400, &secs)) {
      mb_sb_printf(reply, "error duration \"%s\": whole seconds, 1 to a year\n",
                   a2);
      return;
    }
    pthread_mutex_lock(&store_lock);
    mb_hold_t *h = (mb_hold_t *)mb_hold_find(a1);
    if (h == NULL && holds_num < MB_MAX_HOLDS) {
      h = holds + holds_num++;
      sstrncpy(h->name, a1, sizeof(h->name));
    }
    if (h != NULL) {
      h->until = secs ? now + TIME_T_TO_CDTIME_T((time_t)secs) : 0;
      mb_ask_round();
    }
    pthread_mutex_unlock(&store_lock);
    if (h == NULL)
      mb_sb_printf(reply, "error %d holds already\n", MB_MAX_HOLDS);
    else if (secs)
      mb_sb_printf(reply, "ok %s held for %" PRIu64 " s\n", a1, secs);
    else
      mb_sb_printf(reply, "ok %s held until released\n", a1);
    return;
  }
  if (strcmp(cmd, "release") == 0 && a1 != NULL && a2 == NULL) {
    pthread_mutex_lock(&store_lock);
    const mb_hold_t *h = mb_hold_find(a1);
    if (h != NULL) {
      holds[h - holds] = holds[--holds_num];
      mb_ask_round();
    }
    pthread_mutex_unlock(&store_lock);
    if (h != NULL)
      mb_sb_printf(reply, "ok %s released: balanced again\n", a1);
    else
      mb_sb_printf(reply, "error %s is not held\n", a1);
    return;
  }
  if (strcmp(cmd, "reserve") == 0 && a3 != NULL && extra == NULL) {
    uint64_t kib = 0, secs = 0;
    if (!mb_parse_u64(a1, 1, MB_KIB_MAX, &kib)) {
      mb_sb_printf(reply, "error size \"%s\": KiB, at least 1\n", a1);
      return;
    }
    if (strcmp(a2, "-") != 0 && !mb_name_ok(a2)) {
      mb_sb_printf(reply, "error \"%s\" is not a domain name\n", a2);
      return;
    }
    if (!mb_parse_u64(a3, 1, 86400, &secs)) {
      mb_sb_printf(reply, "error timeout \"%s\": whole seconds, 1 to 86400\n",
                   a3);
      return;
    }
    pthread_mutex_lock(&store_lock);
    uint64_t id = 0;
    if (resvs_num < MB_MAX_RESV) {
      mb_resv_t *r = resvs + resvs_num++;
      r->id = id = resv_next_id++;
      sstrncpy(r->name, strcmp(a2, "-") == 0 ? "" : a2, sizeof(r->name));
      r->kib = kib;
      r->until = now + TIME_T_TO_CDTIME_T((time_t)secs);
      mb_ask_round();
    }
    pthread_mutex_unlock(&store_lock);
    if (id == 0)
      mb_sb_printf(reply, "error %d reservations already\n", MB_MAX_RESV);
    else
      mb_sb_printf(reply, "ok %" PRIu64 "\n", id);
    return;
  }
  if (strcmp(cmd, "cancel") == 0 && a1 != NULL && a2 == NULL) {
    uint64_t id = 0;
    bool found = false;
    if (mb_parse_u64(a1, 1, UINT64_MAX, &id)) {
      pthread_mutex_lock(&store_lock);
      for (size_t i = 0; i < resvs_num && !found; i++) {
        if (resvs[i].id == id) {
          resvs[i] = resvs[--resvs_num];
          found = true;
          mb_ask_round();
        }
      }
      pthread_mutex_unlock(&store_lock);
    }
    if (found)
      mb_sb_printf(reply, "ok reservation %s cancelled\n", a1);
    else
      mb_sb_printf(reply, "error no reservation %s\n", a1);
    return;
  }
  mb_sb_printf(reply,
               "error unknown request \"%s\" (status [json], free, hold NAME "
               "[SECONDS], release NAME, reserve KIB NAME|- TIMEOUT_S, cancel "
               "ID)\n",
               cmd);
}

/* The round for the status board: every domain, the targets it moved
 * (before: doms[i].target_kib, in force now: dec[i].target_kib), holds and
 * reservations. */
static void mb_status_round(const mb_domain_t *doms, const mb_decision_t *dec,
                            const cdtime_t *held_until, size_t n,
                            const mb_host_t *host, uint64_t pool_kib,
                            uint64_t sum_kib, uint64_t reserved_kib,
                            const char *why) {
  mb_status_dom_t *ld = calloc(n > 0 ? n : 1, sizeof(*ld));  /* owned */
  mb_status_move_t *lm = calloc(n > 0 ? n : 1, sizeof(*lm)); /* owned */
  mb_status_resv_t rv[MB_MAX_RESV];
  size_t nrv = 0;
  if (ld == NULL || lm == NULL) {
    ERROR(PLUGIN ": out of memory");
    goto out;
  }
  double now_s = CDTIME_T_TO_DOUBLE(cdtime());
  size_t nm = 0;
  for (size_t i = 0; i < n; i++) {
    const mb_domain_t *dom = doms + i;
    mb_status_dom_t *d = ld + i;
    sstrncpy(d->name, dom->name, sizeof(d->name));
    d->domid = dom->domid;
    d->current_kib = dom->current_kib;
    d->target_kib = dec[i].target_kib;
    d->cma_kib = dec[i].cma_kib;
    d->min_kib = dec[i].floor_kib;
    d->max_kib = dom->max_kib;
    d->reason = mb_reason_name(dec[i].reason);
    bool rates = dom->has_sample && dom->rates.valid;
    d->swapin_pps = rates ? dom->rates.swapin_pps : -1;
    d->swapout_pps = rates ? dom->rates.swapout_pps : -1;
    d->majflt_ps = rates ? dom->rates.majflt_ps : -1;
    d->sample_age_s = dom->has_sample ? dom->sample_age_s : -1;
    d->stale = dec[i].stale;
    d->held = held_until[i] != 0;
    d->held_until_s = held_until[i] > 1 ? CDTIME_T_TO_DOUBLE(held_until[i]) : 0;
    if (dec[i].target_kib != dom->target_kib) {
      mb_status_move_t *m = lm + nm++;
      m->time_s = now_s;
      sstrncpy(m->name, dom->name, sizeof(m->name));
      m->from_kib = dom->target_kib;
      m->to_kib = dec[i].target_kib;
      m->reason = d->reason;
      m->trigger = why;
    }
  }
  pthread_mutex_lock(&store_lock);
  for (size_t i = 0; i < resvs_num; i++, nrv++) {
    rv[nrv] = (mb_status_resv_t){.id = resvs[i].id,
                                 .kib = resvs[i].kib,
                                 .until_s = CDTIME_T_TO_DOUBLE(resvs[i].until)};
    sstrncpy(rv[nrv].name, resvs[i].name, sizeof(rv[nrv].name));
  }
  pthread_mutex_unlock(&store_lock);
  mb_status_round_t r = {.time_s = now_s,
                         .round = rounds,
                         .trigger = why,
                         .policy = mb_policy_name(conf.kind),
                         .total_kib = host->total_kib,
                         .free_kib = host->free_kib,
                         .reserve_kib = host->reserve_kib,
                         .pool_kib = pool_kib,
                         .sum_targets_kib = sum_kib,
                         .reserved_kib = reserved_kib,
                         .tau = pstate.tau,
                         .doms = ld,
                         .n = n,
                         .moves = lm,
                         .nmoves = nm,
                         .resv = rv,
                         .nresv = nrv};
  mb_status_publish(status_board, &r);
out:
  free(lm);
  free(ld);
}

/* Thread-only: the domains that were stale after the last round. */
static char (*stale_prev)[MB_NAME_LEN]; /* owned */
static size_t stale_prev_num;

/* Emergency grants that moved a target up, and guests turning stale or
 * fresh again, as notifications. */
static void mb_round_notify(const mb_domain_t *doms, const mb_decision_t *dec,
                            size_t n) {
  char(*stale_now)[MB_NAME_LEN] = calloc(n > 0 ? n : 1, sizeof(*stale_now));
  size_t ns = 0;
  for (size_t i = 0; i < n; i++) {
    if (dec[i].emergency && dec[i].target_kib > doms[i].target_kib)
      mb_notify(NOTIF_WARNING, doms[i].name, "emergency", dec[i].target_kib,
                "emergency grant to %s: target %.1f -> %.1f MiB (cma %.1f "
                "MiB)",
                doms[i].name, doms[i].target_kib / 1024.0,
                dec[i].target_kib / 1024.0, dec[i].cma_kib / 1024.0);
    bool was = false;
    for (size_t j = 0; j < stale_prev_num && !was; j++)
      was = strcmp(stale_prev[j], doms[i].name) == 0;
    if (dec[i].stale && !was)
      mb_notify(NOTIF_WARNING, doms[i].name, "stale", doms[i].current_kib,
                "%s sends no fresh sample: never shrunk while stale",
                doms[i].name);
    else if (!dec[i].stale && was)
      mb_notify(NOTIF_OKAY, doms[i].name, "stale", doms[i].current_kib,
                "%s sends fresh samples again", doms[i].name);
    if (dec[i].stale && stale_now != NULL)
      sstrncpy(stale_now[ns++], doms[i].name, MB_NAME_LEN);
  }
  if (stale_now != NULL) {
    free(stale_prev);
    stale_prev = stale_now;
    stale_prev_num = ns;
  }
}

static void mb_round(const char *why) {
  mb_dominfo_t *info = NULL; /* owned, from the backend */
  size_t info_num = 0;
  mb_domain_t *doms = NULL;    /* owned */
  mb_decision_t *dec = NULL;   /* owned */
  uint64_t *decided = NULL;    /* owned: the policy's targets, dec holds what
                                  is in force after actuation */
  cdtime_t *held_until = NULL; /* owned: 0 = balanced, 1 = held until
                                  released, else held until then */
  mb_event_t ev[MB_MAX_RESV];
  size_t nev = 0;
  uint64_t reserved_kib = 0;
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
  held_until = calloc(info_num > 0 ? info_num : 1, sizeof(*held_until));
  if (doms == NULL || dec == NULL || decided == NULL || held_until == NULL) {
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
    /* Held (`membal hold`, or Balance false): its target in force, set by
     * membal or by hand (xl mem-set), is both its floor and its ceiling. */
    const mb_hold_t *h = mb_hold_find(di->name);
    if (h != NULL || (dc != NULL && !dc->balance)) {
      held_until[n - 1] = h != NULL && h->until != 0 ? h->until : 1;
      dom->min_kib = dom->max_kib = dom->target_kib;
    }
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
  reserved_kib = mb_ops_expire(doms, n, now, ev, MB_MAX_RESV, &nev);
  pthread_mutex_unlock(&store_lock);
  for (size_t k = 0; k < nev; k++) {
    INFO(PLUGIN ": %s", ev[k].msg);
    mb_notify(ev[k].severity, ev[k].name, ev[k].what, ev[k].kib, "%s",
              ev[k].msg);
  }

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
  /* Memory reserved for VMs about to start stays out of the pool, so the
   * policy shrinks guests to free it (above their CMA first, never below
   * Min: the envelope's rules). */
  host.reserve_kib += reserved_kib;
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
  mb_round_notify(doms, dec, n);
  mb_status_round(doms, dec, held_until, n, &host, pool_kib, sum_kib,
                  reserved_kib, why);
  DEBUG(PLUGIN ": round %" PRIu64 " (%s): %zu guests, sum of targets %" PRIu64
               " KiB, pool %" PRIu64 " KiB",
        rounds, why, n, sum_kib, pool_kib);

out:
  free(held_until);
  free(decided);
  free(dec);
  free(doms);
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
    if (urgent_pending || operator_pending)
      due = now;
    if (now < due) {
      struct timespec ts = CDTIME_T_TO_TIMESPEC(due);
      pthread_cond_timedwait(&store_cond, &store_lock, &ts);
      continue;
    }
    const char *why = "period";
    if (urgent_pending)
      why = "urgent notification";
    else if (operator_pending)
      why = "operator";
    else if (flush_at != 0 && flush_at <= now)
      why = "flush";
    operator_pending = false;
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
  mb_state_init(&pstate, &conf);
  /* A backend that is not up yet (xenstored starting) is retried every
   * round; the error is logged now so a wrong setup shows at start. */
  mb_backend_ensure();

  status_board = mb_status_new(hostname_g);
  if (status_board == NULL) {
    ERROR(PLUGIN ": out of memory");
    return -1;
  }
  const char *csock =
      conf_control_socket ? conf_control_socket : MB_CONTROL_DEFAULT;
  /* Balancing goes on without it: the control socket only serves the
   * operator's `membal` command. */
  control = mb_control_start(csock, mb_control, NULL, err, sizeof(err));
  if (control == NULL)
    ERROR(PLUGIN ": control socket: %s; `membal status`, hold and reserve "
                 "are unavailable",
          err);
  else
    INFO(PLUGIN ": control socket %s (root only; the membal command)", csock);
  if (conf_live) {
    mb_live_opts_t lo = {
        .address = conf_live_address ? conf_live_address : "127.0.0.1",
        .port = conf_live_port,
        .max_connections = conf_live_max_connections,
        .rrd_dir =
            conf_live_datadir ? conf_live_datadir : "/var/lib/collectd/rrd",
    };
    live = mb_live_start(&lo, status_board, err, sizeof(err));
    if (live == NULL) {
      ERROR(PLUGIN ": <Live>: %s", err);
      return -1;
    }
    INFO(PLUGIN ": live view on http://%s%s%s:%u/ (read-only)",
         strchr(lo.address, ':') ? "[" : "", lo.address,
         strchr(lo.address, ':') ? "]" : "", lo.port);
  }
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
  mb_live_stop(live);
  live = NULL;
  mb_control_stop(control);
  control = NULL;
  mb_status_free(status_board);
  status_board = NULL;
  sfree(stale_prev);
  stale_prev_num = 0;
  holds_num = 0;
  resvs_num = 0;
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
  sfree(conf_live_address);
  sfree(conf_live_datadir);
  sfree(conf_control_socket);
  return 0;
}

/* The plugin is built with hidden visibility; collectd looks this up. */
__attribute__((visibility("default"))) void module_register(void) {
  mb_config_default(&conf);
  plugin_register_complex_config(PLUGIN, mb_config);
  plugin_register_init(PLUGIN, mb_init);
  plugin_register_shutdown(PLUGIN, mb_shutdown);
}
