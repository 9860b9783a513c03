/*
 * vmmem: collectd read plugin for dom0. Every interval it asks the backend
 * (plugins/backends/backend.h) for the host's memory, the domains and each
 * guest's latest record, and dispatches them as plugins/SCHEMA.md section 2
 * says: per-field values for RRD and the like, and each guest sample whole, as
 * one message, to the balancer (membal; SCHEMA.md section 2b). A thread of
 * its own waits on the guests' records and hands a record over the same
 * way at once when it is urgent or the guest swaps fast, so a balancer need
 * not wait for the next interval. The message goes to membal's write
 * callback only: never a notification (those reach notify_email, exec),
 * never a value for RRD or the network.
 *
 * <Plugin vmmem>
 *   Backend "libxl"          # or "sim", "libvirt"; required
 *   XenstorePath "/run/xenstored/socket"
 *   URI "qemu:///system"     # libvirt backend; default $LIBVIRT_DEFAULT_URI,
 *                            # else qemu:///system
 *   StaleAfter 30            # seconds; default 3 intervals
 *   SwapThreshold 64         # pswpin+pswpout pages/s that make a
 *                            # record urgent; default 64 (the old
 *                            # spelling SwapRateThreshold is read too)
 * </Plugin>
 */
/* usleep() */
#define _DEFAULT_SOURCE
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"
#include "utils_complain.h"
#include "utils_time.h"

#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#define VM_PLUGIN "vmmem"
/* Types of the values vmmem dispatches (plugins/SCHEMA.md section 2): stock
 * collectd types only (/usr/share/collectd/types.db), so rrdtool, network
 * and a central collector need no types of ours. */
#define VM_T_MEMORY "memory"    /* bytes */
#define VM_T_VMSTAT "derive"    /* guest vmstat counters, PSI stall totals */
#define VM_T_PERCENT "percent"  /* PSI averages */
#define VM_T_DOMAINS "count"    /* instance "domains" */
#define VM_T_SEQ "count"        /* instance "sample_seq" */
#define VM_T_AGE "duration"     /* instance "sample_age", seconds */
#define VM_T_STALE "bool"       /* instance "sample_stale" */
#define VM_WATCH_TIMEOUT_MS 250 /* bounds the shutdown delay */
#define VM_WATCH_TABLE_MAX 4096
/* The watch reads one guest's record at most once per gap: a guest that
 * rewrites its record 1000 times a second costs 10 reads and 10 messages a
 * second, and the first change after a quiet gap is still read at once. */
#define VM_WATCH_GAP_MS 100
/* The write plugin that receives whole samples (SCHEMA.md section 2b). */
#define VM_BALANCER "membal"

static char *vm_backend_kind;   /* owned; config "Backend" */
static char *vm_xenstore_path;  /* owned; config "XenstorePath" */
static char *vm_uri;            /* owned; config "URI" (libvirt) */
static double vm_stale_after_s; /* 0: three intervals */
static double vm_swap_threshold_pps = 64.0;

/* Read callback's state; only the read callback touches it. */
typedef struct {
  uint32_t domid;
  char name[MB_NAME_LEN];
  bool have_sample;   /* a good record was seen */
  uint64_t seq;       /* seq of the last good record */
  uint64_t total_kib; /* seq-less records: MemTotal/MemFree tell change */
  uint64_t free_kib;
  uint64_t msg_seq;   /* seq in the hand-off: the guest's, or for seq-less
                         records the count of changes seen */
  uint64_t prev_have; /* fields of the record before the current one */
  bool complete;      /* current record has every field of the previous */
  cdtime_t changed;   /* when the record last advanced (or first seen) */
  c_complain_t complaint;
} vm_dom_t;

static mb_backend_t *vm_rd;   /* owned; NULL until (re)opened */
static time_t vm_last_read_s; /* rounded second of the last read */
static vm_dom_t *vm_doms;     /* owned; sorted by domid */
static size_t vm_ndoms;
static c_complain_t vm_rd_complaint = C_COMPLAIN_INIT_STATIC;

static pthread_t vm_watch_thread;
static bool vm_watch_started;
static atomic_bool vm_watch_stop;
/* Set by the first read callback, which collectd runs only once every
 * plugin's init has: membal registers its write callback in its init, and
 * plugin_write() must not walk the write list while it grows. */
static atomic_bool vm_handoff_ready;
/* Whether membal's write callback exists: 0 unknown, 1 yes, -1 no (the
 * write list does not change once every init ran, so no need to format
 * samples nobody takes). */
static atomic_int vm_balancer;

static void vm_backend_log(void *ctx, int level, const char *msg) {
  plugin_log(level, VM_PLUGIN ": %s", msg);
}

static void vm_opts(mb_backend_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->kind = vm_backend_kind;
  o->xenstore_path = vm_xenstore_path;
  o->uri = vm_uri;
  o->log = vm_backend_log;
}

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */
/* ---------------------------------------------------------------------- */

static int vm_config(oconfig_item_t *ci) {
  for (int i = 0; i < ci->children_num; i++) {
    oconfig_item_t *c = ci->children + i;
    int status = 0;
    if (strcasecmp("Backend", c->key) == 0) {
      status = cf_util_get_string(c, &vm_backend_kind);
      if (status == 0 && !mb_backend_known(vm_backend_kind)) {
        char kinds[MB_BACKEND_KINDS_LEN];
        ERROR(VM_PLUGIN ": Backend \"%s\" unknown (want %s)", vm_backend_kind,
              mb_backend_kinds(kinds, sizeof(kinds), true));
        status = -1;
      }
    } else if (strcasecmp("XenstorePath", c->key) == 0) {
      status = cf_util_get_string(c, &vm_xenstore_path);
    } else if (strcasecmp("URI", c->key) == 0) {
      status = cf_util_get_string(c, &vm_uri);
    } else if (strcasecmp("StaleAfter", c->key) == 0) {
      status = cf_util_get_double(c, &vm_stale_after_s);
      if (status == 0 && !(vm_stale_after_s > 0)) {
        ERROR(VM_PLUGIN ": StaleAfter must be > 0 seconds");
        status = -1;
      }
    } else if (strcasecmp("SwapThreshold", c->key) == 0 ||
               strcasecmp("SwapRateThreshold", c->key) == 0) {
      /* SwapRateThreshold: vmmem's old spelling, still read so that an
       * existing configuration keeps working; guestmem and membal spell
       * their swap thresholds SwapThreshold too. */
      if (strcasecmp("SwapRateThreshold", c->key) == 0)
        WARNING(VM_PLUGIN ": SwapRateThreshold is deprecated: it is spelt "
                          "SwapThreshold now (as in guestmem and membal)");
      status = cf_util_get_double(c, &vm_swap_threshold_pps);
      if (status == 0 && !(vm_swap_threshold_pps > 0)) {
        ERROR(VM_PLUGIN ": %s must be > 0 pages/s", c->key);
        status = -1;
      }
    } else {
      ERROR(VM_PLUGIN ": unknown option \"%s\" (known: Backend, "
                      "XenstorePath, URI, StaleAfter, SwapThreshold)",
            c->key);
      status = -1;
    }
    if (status != 0)
      return -1;
  }
  if (vm_backend_kind == NULL) {
    char kinds[MB_BACKEND_KINDS_LEN];
    ERROR(VM_PLUGIN ": Backend is required (%s)",
          mb_backend_kinds(kinds, sizeof(kinds), true));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Read callback                                                          */
/* ---------------------------------------------------------------------- */

static void vm_submit(const char *pinst, const char *type, const char *tinst,
                      value_t v, cdtime_t t, meta_data_t *meta) {
  value_list_t vl = VALUE_LIST_INIT;
  vl.values = &v;
  vl.values_len = 1;
  vl.time = t;
  vl.meta = meta; /* copied by the core */
  sstrncpy(vl.plugin, VM_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, pinst, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, tinst, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static void vm_gauge(const char *pinst, const char *type, const char *tinst,
                     double g, cdtime_t t, meta_data_t *meta) {
  vm_submit(pinst, type, tinst, (value_t){.gauge = g}, t, meta);
}

static double vm_kib_bytes(uint64_t kib) { return (double)kib * 1024.0; }

static void vm_dispatch_host(const mb_hostinfo_t *h, cdtime_t t) {
  vm_gauge("", VM_T_MEMORY, "host_total", vm_kib_bytes(h->total_kib), t, NULL);
  vm_gauge("", VM_T_MEMORY, "host_free", vm_kib_bytes(h->free_kib), t, NULL);
  for (unsigned i = 0; i < h->nr_nodes && i < MB_MAX_NODES; i++) {
    char ti[32];
    snprintf(ti, sizeof(ti), "node%u_total", i);
    vm_gauge("", VM_T_MEMORY, ti, vm_kib_bytes(h->node_total_kib[i]), t, NULL);
    snprintf(ti, sizeof(ti), "node%u_free", i);
    vm_gauge("", VM_T_MEMORY, ti, vm_kib_bytes(h->node_free_kib[i]), t, NULL);
  }
}

/* The stock type of the hand-off's one value (its value is the seq); passed
 * to plugin_write() so that no types.db lookup is made. */
static data_source_t vm_handoff_dsrc = {"value", DS_TYPE_GAUGE, NAN, NAN};
static data_set_t vm_handoff_ds = {"gauge", 1, &vm_handoff_dsrc};

/* Hands one guest sample whole to the balancer (SCHEMA.md section 2b): the
 * record formatted by mb_record_format (the same text for every backend),
 * with seq msg_seq, as meta of one value written to membal's write callback
 * only. complete: the sender's word that the record is whole (it has every
 * field its predecessor had); age_s: seconds since the record last
 * advanced as vmmem saw it (the one staleness measure); urgent: decide now.
 * t: when the record was read. Called by the read callback and the watch
 * thread alike (plugin_write is thread-safe once the write list is set). */
static void vm_hand_sample(const char *name, uint32_t domid,
                           const mb_sample_t *s, uint64_t msg_seq, double age_s,
                           bool complete, bool urgent, cdtime_t t) {
  if (!atomic_load(&vm_handoff_ready) || atomic_load(&vm_balancer) < 0)
    return;
  char record[MB_RECORD_MAX];
  mb_sample_t copy = *s;
  copy.seq = msg_seq;
  if (mb_record_format(&copy, record, sizeof(record)) < 0) {
    ERROR(VM_PLUGIN ": domain %s (%u): sample does not fit a record", name,
          domid);
    return;
  }
  meta_data_t *meta = meta_data_create(); /* owned */
  if (meta == NULL ||
      meta_data_add_unsigned_int(meta, "vmmem:domid", domid) != 0 ||
      meta_data_add_string(meta, "vmmem:record", record) != 0 ||
      meta_data_add_double(meta, "vmmem:age", age_s) != 0 ||
      meta_data_add_boolean(meta, "vmmem:complete", complete) != 0 ||
      meta_data_add_boolean(meta, "vmmem:urgent", urgent) != 0) {
    ERROR(VM_PLUGIN ": out of memory");
    meta_data_destroy(meta);
    return;
  }
  value_t v = {.gauge = (gauge_t)msg_seq};
  value_list_t vl = VALUE_LIST_INIT;
  vl.values = &v;
  vl.values_len = 1;
  vl.time = t;
  vl.interval = plugin_get_interval();
  vl.meta = meta;
  sstrncpy(vl.host, hostname_g, sizeof(vl.host));
  sstrncpy(vl.plugin, VM_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, name, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, vm_handoff_ds.type, sizeof(vl.type));
  sstrncpy(vl.type_instance, "sample", sizeof(vl.type_instance));
  /* ENOENT: no balancer loaded, nothing to do now or later. */
  int status = plugin_write(VM_BALANCER, &vm_handoff_ds, &vl);
  atomic_store(&vm_balancer, status == ENOENT ? -1 : 1);
  meta_data_destroy(meta);
}

/* Values of one good, fresh sample by the unit of each field: meminfo as
 * bytes (memory), vmstat and PSI stall totals as counters (derive), PSI
 * averages as percent. */
static void vm_dispatch_sample(const mb_dominfo_t *d, cdtime_t t,
                               meta_data_t *meta) {
  for (int f = 0; f < MB_F_COUNT; f++) {
    if (!mb_sample_has(&d->sample, (mb_field_t)f))
      continue;
    const char *key = mb_field_key((mb_field_t)f);
    uint64_t v = d->sample.v[f];
    char ti[DATA_MAX_NAME_LEN];
    switch (mb_field_kind((mb_field_t)f)) {
    case MB_FK_KIB:
      snprintf(ti, sizeof(ti), "guest_%s", key);
      vm_gauge(d->name, VM_T_MEMORY, ti, vm_kib_bytes(v), t, meta);
      break;
    case MB_FK_BP:
      snprintf(ti, sizeof(ti), "guest_%s", key);
      vm_gauge(d->name, VM_T_PERCENT, ti, (double)v / 100.0, t, meta);
      break;
    case MB_FK_COUNT:
    case MB_FK_US: {
      derive_t dv = v > (uint64_t)INT64_MAX ? INT64_MAX : (derive_t)v;
      vm_submit(d->name, VM_T_VMSTAT, key, (value_t){.derive = dv}, t, meta);
      break;
    }
    }
  }
}

static double vm_stale_limit(void) {
  if (vm_stale_after_s > 0)
    return vm_stale_after_s;
  return 3.0 * CDTIME_T_TO_DOUBLE(plugin_get_interval());
}

/* Finds domid's state in the previous round's table, walking it in step
 * with the sorted domain list. NULL when new. */
static vm_dom_t *vm_prev(uint32_t domid, size_t *cursor) {
  while (*cursor < vm_ndoms && vm_doms[*cursor].domid < domid)
    (*cursor)++;
  if (*cursor < vm_ndoms && vm_doms[*cursor].domid == domid)
    return &vm_doms[*cursor];
  return NULL;
}

static void vm_dispatch_domain(const mb_dominfo_t *d, vm_dom_t *st,
                               cdtime_t now, double stale_after) {
  meta_data_t *meta = meta_data_create(); /* owned; NULL tolerated */
  if (meta != NULL)
    meta_data_add_unsigned_int(meta, "vmmem:domid", d->domid);

  vm_gauge(d->name, VM_T_MEMORY, "current", vm_kib_bytes(d->current_kib), now,
           meta);
  vm_gauge(d->name, VM_T_MEMORY, "target", vm_kib_bytes(d->target_kib), now,
           meta);
  vm_gauge(d->name, VM_T_MEMORY, "max", vm_kib_bytes(d->max_kib), now, meta);

  if (d->sample_status == MB_SAMPLE_OK) {
    const mb_sample_t *s = &d->sample;
    bool advanced;
    if (s->seq != 0)
      advanced = !st->have_sample || s->seq != st->seq;
    else /* XenServer keys: no seq, the values themselves must move */
      advanced = !st->have_sample || st->seq != 0 ||
                 s->v[MB_F_MEMTOTAL] != st->total_kib ||
                 s->v[MB_F_MEMFREE] != st->free_kib;
    if (advanced) {
      st->changed = now;
      st->msg_seq = s->seq != 0 ? s->seq : st->msg_seq + 1;
      /* The first record seen has nothing to be compared with: whole. */
      st->complete = !st->have_sample || (st->prev_have & ~s->have) == 0;
      st->prev_have = s->have;
    }
    st->have_sample = true;
    st->seq = s->seq;
    st->total_kib = s->v[MB_F_MEMTOTAL];
    st->free_kib = s->v[MB_F_MEMFREE];
    c_release(LOG_NOTICE, &st->complaint,
              VM_PLUGIN ": domain %s (%u): guest record accepted again",
              d->name, d->domid);
  } else if (d->sample_status == MB_SAMPLE_BAD) {
    c_complain_once(LOG_WARNING, &st->complaint,
                    VM_PLUGIN ": domain %s (%u): guest record rejected: %s",
                    d->name, d->domid, d->sample_err);
  }

  double age = CDTIME_T_TO_DOUBLE(now - st->changed);
  bool fresh = d->sample_status == MB_SAMPLE_OK && age <= stale_after;
  if (d->sample_status == MB_SAMPLE_OK) {
    if (meta != NULL)
      meta_data_add_unsigned_int(meta, "vmmem:seq", d->sample.seq);
    vm_gauge(d->name, VM_T_SEQ, "sample_seq", (double)d->sample.seq, now, meta);
  }
  if (d->sample_status != MB_SAMPLE_NONE)
    vm_gauge(d->name, VM_T_AGE, "sample_age", age, now, meta);
  vm_gauge(d->name, VM_T_STALE, "sample_stale", fresh ? 0.0 : 1.0, now, meta);
  if (fresh)
    vm_dispatch_sample(d, now, meta);
  meta_data_destroy(meta);
  /* Stale ones too: the balancer freezes a domain by the age. */
  if (d->sample_status == MB_SAMPLE_OK)
    vm_hand_sample(d->name, d->domid, &d->sample, st->msg_seq, age,
                   st->complete, d->sample.urgent, now);
}

static int vm_cmp_domid(const void *a, const void *b) {
  uint32_t x = ((const mb_dominfo_t *)a)->domid;
  uint32_t y = ((const mb_dominfo_t *)b)->domid;
  return x < y ? -1 : x > y;
}

static int vm_read(void) {
  char err[256];
  mb_hostinfo_t host;
  mb_dominfo_t *doms = NULL; /* owned */
  size_t n = 0;

  atomic_store(&vm_handoff_ready, true);
  if (vm_rd == NULL) {
    mb_backend_opts_t o;
    vm_opts(&o);
    vm_rd = mb_backend_open(&o, err, sizeof(err));
    if (vm_rd == NULL) {
      c_complain(LOG_ERR, &vm_rd_complaint, VM_PLUGIN ": %s", err);
      return 0; /* no back-off: recover as soon as the store is back */
    }
  }
  cdtime_t now = cdtime();
  /* rrdtool takes one update per file and second, and the rrdtool plugin
   * rounds a value's time to the nearest second. On a loaded host collectd
   * may run a late read and the next one on time within one such second:
   * rrdtool would refuse the second read's values, one warning per file.
   * That read is skipped whole (less than a second after the last one;
   * urgent samples take the watch thread's path anyway). Only this
   * callback touches vm_last_read_s: collectd never runs a read callback
   * twice at once. */
  time_t now_s = CDTIME_T_TO_TIME_T(now);
  if (now_s == vm_last_read_s) {
    DEBUG(VM_PLUGIN ": read skipped: the last one fell in the same second");
    return 0;
  }
  vm_last_read_s = now_s;
  if (mb_backend_host(vm_rd, &host, err, sizeof(err)) != 0 ||
      mb_backend_list(vm_rd, &doms, &n, err, sizeof(err)) != 0) {
    c_complain(LOG_ERR, &vm_rd_complaint, VM_PLUGIN ": %s", err);
    free(doms);
    /* Reopened next round: a libxl context or store connection may be
     * dead. */
    mb_backend_close(vm_rd);
    vm_rd = NULL;
    return 0;
  }
  c_release(LOG_NOTICE, &vm_rd_complaint, VM_PLUGIN ": backend %s reachable",
            vm_backend_kind);

  vm_dispatch_host(&host, now);
  /* backend.h promises domid order; the state table's merge relies on it,
   * so it does not trust a backend to keep the promise. */
  if (n > 1)
    qsort(doms, n, sizeof(*doms), vm_cmp_domid);

  vm_dom_t *next = calloc(n ? n : 1, sizeof(*next)); /* owned */
  if (next == NULL) {
    ERROR(VM_PLUGIN ": out of memory");
    free(doms);
    return -1;
  }
  double stale_after = vm_stale_limit();
  size_t nn = 0, cursor = 0, guests = 0;
  for (size_t i = 0; i < n; i++) {
    const mb_dominfo_t *d = &doms[i];
    if (d->domid == 0) {
      /* dom0 is host overhead, never balanced. */
      vm_gauge("", VM_T_MEMORY, "dom0", vm_kib_bytes(d->current_kib), now,
               NULL);
      continue;
    }
    if (nn > 0 && next[nn - 1].domid == d->domid)
      continue; /* a backend listing a domain twice */
    vm_dom_t *st = &next[nn++];
    vm_dom_t *prev = vm_prev(d->domid, &cursor);
    if (prev != NULL && strcmp(prev->name, d->name) == 0) {
      *st = *prev;
    } else {
      /* New domain (or renamed: its history starts again). */
      memset(st, 0, sizeof(*st));
      st->domid = d->domid;
      sstrncpy(st->name, d->name, sizeof(st->name));
      st->changed = now;
      C_COMPLAIN_INIT(&st->complaint);
    }
    vm_dispatch_domain(d, st, now, stale_after);
    guests++;
  }
  vm_gauge("", VM_T_DOMAINS, "domains", (double)guests, now, NULL);

  free(vm_doms);
  vm_doms = next;
  vm_ndoms = nn;
  free(doms);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Watch thread                                                           */
/* ---------------------------------------------------------------------- */

typedef struct {
  uint32_t domid;
  bool have_last;
  mb_sample_t last;   /* the last record read */
  bool dirty;         /* changed since, its read held back until next_read */
  cdtime_t next_read; /* earliest time of the next read (VM_WATCH_GAP_MS) */
} vm_watch_dom_t;

typedef struct {
  vm_watch_dom_t *doms; /* owned */
  size_t n, cap;
  size_t ndirty; /* entries with dirty set */
} vm_watch_table_t;

static vm_watch_dom_t *vm_watch_lookup(vm_watch_table_t *t, uint32_t domid) {
  for (size_t i = 0; i < t->n; i++)
    if (t->doms[i].domid == domid)
      return &t->doms[i];
  if (t->n >= VM_WATCH_TABLE_MAX) {
    /* domids churned a lot: forget history rather than grow; the records
     * held back are read by the read callback at the next interval. */
    t->n = 0;
    t->ndirty = 0;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    vm_watch_dom_t *d = realloc(t->doms, cap * sizeof(*d));
    if (d == NULL)
      return NULL;
    t->doms = d;
    t->cap = cap;
  }
  vm_watch_dom_t *e = &t->doms[t->n++];
  memset(e, 0, sizeof(*e));
  e->domid = domid;
  return e;
}

/* Reads one domain's record; hands it to the balancer when it is new and
 * urgent or the guest swaps fast (rates between the records this thread
 * read, timed by their uptime_ms). */
static void vm_watch_read(mb_backend_t *b, vm_watch_dom_t *e) {
  char err[256];
  cdtime_t t = cdtime();
  e->next_read = t + MS_TO_CDTIME_T(VM_WATCH_GAP_MS);
  mb_dominfo_t d;
  if (mb_backend_guest(b, e->domid, &d, NULL, 0, err, sizeof(err)) != 0)
    return; /* domain gone meanwhile: the read callback drops it */
  if (d.sample_status != MB_SAMPLE_OK)
    return; /* rejected records are logged by the read callback */
  const mb_sample_t *s = &d.sample;
  /* Records without seq (XenServer keys) have no counters nor urgent flag:
   * the read callback hands them. */
  if (s->seq == 0 || (e->have_last && s->seq == e->last.seq))
    return;
  mb_rates_t r = {.valid = false};
  if (e->have_last && s->uptime_ms > e->last.uptime_ms)
    mb_sample_rates(&e->last, s,
                    (double)(s->uptime_ms - e->last.uptime_ms) / 1000.0, &r);
  double swap = r.valid ? r.swapin_pps + r.swapout_pps : 0;
  bool complete = !e->have_last || (e->last.have & ~s->have) == 0;
  if (s->urgent || swap > vm_swap_threshold_pps) {
    /* The name costs a read: asked only for records worth handing. */
    if (mb_backend_name(b, e->domid, d.name, err, sizeof(err)) == 0)
      vm_hand_sample(d.name, e->domid, s, s->seq, 0.0, complete, true, t);
    else
      WARNING(VM_PLUGIN ": watch: domain %u: %s", e->domid, err);
  }
  e->have_last = true;
  e->last = *s;
}

/* Reads the held-back records that are due; returns ms until the next one
 * is (VM_WATCH_TIMEOUT_MS when none is held back). */
static int vm_watch_due(mb_backend_t *b, vm_watch_table_t *t) {
  int wait_ms = VM_WATCH_TIMEOUT_MS;
  if (t->ndirty == 0)
    return wait_ms;
  cdtime_t now = cdtime();
  for (size_t i = 0; i < t->n; i++) {
    vm_watch_dom_t *e = &t->doms[i];
    if (!e->dirty)
      continue;
    if (e->next_read <= now) {
      e->dirty = false;
      t->ndirty--;
      vm_watch_read(b, e);
      continue;
    }
    int ms = (int)CDTIME_T_TO_MS(e->next_read - now) + 1;
    if (ms < wait_ms)
      wait_ms = ms;
  }
  return wait_ms;
}

static void *vm_watch_main(void *arg) {
  mb_backend_t *wb = NULL; /* owned: the watch thread's own handle */
  vm_watch_table_t table = {0};
  c_complain_t complaint = C_COMPLAIN_INIT_STATIC;
  char err[256];
  unsigned backoff_ms = VM_WATCH_TIMEOUT_MS;

  while (!atomic_load(&vm_watch_stop)) {
    if (wb == NULL) {
      mb_backend_opts_t o;
      vm_opts(&o);
      wb = mb_backend_open(&o, err, sizeof(err));
      if (wb == NULL) {
        c_complain(LOG_ERR, &complaint, VM_PLUGIN ": watch: %s", err);
        /* Sleep in short steps (shutdown stays quick), longer each time
         * the hypervisor is still not there. */
        for (unsigned t = 0; t < backoff_ms && !atomic_load(&vm_watch_stop);
             t += VM_WATCH_TIMEOUT_MS)
          usleep(VM_WATCH_TIMEOUT_MS * 1000);
        if (backoff_ms < 8 * 1000)
          backoff_ms *= 2;
        continue;
      }
      backoff_ms = VM_WATCH_TIMEOUT_MS;
    }
    int wait_ms = vm_watch_due(wb, &table);
    uint32_t domid = 0;
    int r = mb_backend_wait_event(wb, wait_ms, &domid, err, sizeof(err));
    if (r < 0) {
      c_complain(LOG_WARNING, &complaint, VM_PLUGIN ": watch: %s", err);
      usleep(VM_WATCH_TIMEOUT_MS * 1000);
      continue; /* the backend reconnects on the next wait */
    }
    c_release(LOG_NOTICE, &complaint, VM_PLUGIN ": watch: watching again");
    if (r == 0)
      continue;
    vm_watch_dom_t *e = vm_watch_lookup(&table, domid);
    if (e == NULL)
      continue;
    if (cdtime() >= e->next_read) {
      vm_watch_read(wb, e);
    } else if (!e->dirty) {
      e->dirty = true; /* read once the gap is over: the latest record */
      table.ndirty++;
    }
  }
  mb_backend_close(wb);
  free(table.doms);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                             */
/* ---------------------------------------------------------------------- */

static int vm_init(void) {
  if (vm_backend_kind == NULL) {
    ERROR(VM_PLUGIN ": no <Plugin vmmem> block: Backend is required");
    return -1;
  }
  if (vm_watch_started)
    return 0;
  atomic_store(&vm_watch_stop, false);
  int status = plugin_thread_create(&vm_watch_thread, vm_watch_main, NULL,
                                    "vmmem watch");
  if (status != 0) {
    ERROR(VM_PLUGIN ": cannot start the watch thread: %s", STRERRNO);
    return -1;
  }
  vm_watch_started = true;
  return 0;
}

static int vm_shutdown(void) {
  if (vm_watch_started) {
    atomic_store(&vm_watch_stop, true);
    pthread_join(vm_watch_thread, NULL);
    vm_watch_started = false;
  }
  mb_backend_close(vm_rd);
  vm_rd = NULL;
  free(vm_doms);
  vm_doms = NULL;
  vm_ndoms = 0;
  sfree(vm_backend_kind);
  sfree(vm_xenstore_path);
  sfree(vm_uri);
  return 0;
}

/* Built with hidden visibility; collectd looks this one up. */
__attribute__((visibility("default"))) void module_register(void) {
  plugin_register_complex_config(VM_PLUGIN, vm_config);
  plugin_register_init(VM_PLUGIN, vm_init);
  plugin_register_read(VM_PLUGIN, vm_read);
  plugin_register_shutdown(VM_PLUGIN, vm_shutdown);
}
