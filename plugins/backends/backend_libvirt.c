/*
 * membal backend "libvirt": KVM (or any libvirt driver) through libvirt.
 *
 * Domains are the connection's active domains (virConnectListAllDomains);
 * libvirt's runtime domain ID is the domid. There is no dom0: the host is
 * not a domain, so the list never holds domid 0.
 *
 * Memory, all KiB:
 *   max_kib     virDomainGetMaxMemory (falls back to virDomainGetInfo.maxMem)
 *   current_kib the balloon's actual size (MemoryStats actual_balloon), else
 *               virDomainGetInfo.memory; never above max_kib
 *   target_kib  the last target this backend set on the domain (remembered
 *               per UUID), else virDomainGetInfo.memory
 *   node_mask   virDomainGetNumaParameters when numa_mode binds the memory
 *               (strict, interleave, restrictive); 0 for preferred/unbound
 *
 * Guest sample from virDomainMemoryStats (virtio-balloon stats, written by
 * the guest, so untrusted):
 *   available   -> MemTotal       unused      -> MemFree
 *   usable      -> MemAvailable   disk_caches -> Cached
 *   swap_in     -> pswpin         swap_out    -> pswpout
 *   major_fault -> pgmajfault     minor_fault -> pgfault
 * swap_in/swap_out are KiB in libvirt; they become 4 KiB pages (the page
 * size of x86 guests) so that they mean what /proc/vmstat's counters mean.
 * Linux's balloon driver reports the total fault count as minor_fault, so it
 * is pgfault as is. rss (the QEMU process on the host) and the hugetlb
 * counters have no guest field. Missing on KVM: Committed_AS, the
 * active/inactive split, Buffers, swap totals.
 *
 * Sequence number: virtio-balloon stats carry no sequence, so the backend
 * synthesises one per domain: 1 at first sight, +1 whenever any statistic
 * (including last_update, which QEMU advances at each guest publication)
 * differs from the previous read by any handle of this copy of the backend
 * (one table, so vmmem's reader and watch thread agree). A guest whose
 * stats do not change and whose hypervisor gives no last_update therefore
 * ages and turns stale, which only freezes its target (never shrinks it).
 * uptime_ms is last_update in ms (the host time of the publication: what
 * rates need), else 0. When no guest-side statistic is present at all
 * (period 0, no balloon driver in the guest) the sample status is
 * MB_SAMPLE_NONE.
 *
 * Events: libvirt has no push for balloon statistics, so wait_event polls
 * them every LV_POLL_S and reports each domain whose sequence differs from
 * the one this handle last reported (first sight included), whichever
 * handle's read advanced it; guest returns its sample and, as raw text, a
 * membal record of it (mb_record_format), so vmmem's watch thread hands
 * a swapping KVM guest's sample to membal at once as it does a Xen one's.
 *
 * Stats period: libvirt's default is 0 (off). On first sight of a domain
 * with a virtio balloon whose <stats period> is 0 or absent, the backend
 * sets it (virDomainSetMemoryStatsPeriod, live) and logs it once.
 *
 * Connection: opts->uri, else $LIBVIRT_DEFAULT_URI (libvirt's own
 * variable), else qemu:///system; opened read-write (actuation needs it)
 * and shared by every handle of the process on the same URI. A call that
 * fails while virConnectIsAlive() says the connection is dead drops it; the
 * next call re-opens it. The log sink hears "lost" and
 * "re-established" once per change; calls return -1 with the same text
 * while the connection stays down, so the caller's c_complain logs once.
 * libvirt's default error printing to stderr is silenced
 * (virSetErrorFunc); errors are read with virGetLastError.
 */
#define _POSIX_C_SOURCE 200809L

#include "backend_impl.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define LV_DEFAULT_URI "qemu:///system"
#define LV_DEFAULT_PERIOD_S 5u
#define LV_GUEST_PAGE_KIB 4u
#define LV_FORGET_S 600.0 /* a domain unseen this long is forgotten */
#define LV_POLL_S 1.0     /* wait_event: balloon statistics polled this often */
#define LV_PENDING_MAX 256

/* What the backend remembers of one domain between rounds. */
typedef struct {
  unsigned char uuid[VIR_UUID_BUFLEN];
  uint64_t seq;
  bool have_prev;
  unsigned long long prev[VIR_DOMAIN_MEMORY_STAT_NR];
  uint32_t prev_present; /* bit per stat tag */
  bool period_checked;
  bool name_said; /* an unusable name was logged */
  bool target_known;
  uint64_t target_kib;
  double seen_s; /* monotonic */
} lv_dom_state_t;

/* The table of lv_dom_state_t is shared by every handle of this copy of the
 * backend: vmmem's reader and its watch thread must agree on a guest's
 * sequence numbers, since membal orders samples by them. */
static pthread_mutex_t lv_table_lock = PTHREAD_MUTEX_INITIALIZER;
static lv_dom_state_t *lv_table; /* guarded by lv_table_lock; lives as long
                                    as the process */
static size_t lv_table_n, lv_table_cap;

/* One libvirt connection per URI shared by every handle of this copy of the
 * backend (vmmem's reader and its watch thread use one connection). Each
 * collectd plugin links its own copy, so vmmem and membal still hold one
 * connection each: the same state with libvirtd, two separate states with
 * the test driver on a host file. Each user holds one libvirt reference. */
typedef struct lv_shared {
  char *uri;          /* owned */
  virConnectPtr conn; /* one reference per user */
  unsigned users;
  bool listed;    /* still in lv_shared_list (false once found dead) */
  bool lost_said; /* its loss was logged (by the first handle to see it) */
  struct lv_shared *next;
} lv_shared_t;

static pthread_mutex_t lv_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static lv_shared_t *lv_shared_list; /* guarded by lv_shared_lock */

typedef struct {
  unsigned char uuid[VIR_UUID_BUFLEN];
  uint64_t seq;
} lv_seen_t;

typedef struct {
  char *uri;           /* owned */
  lv_shared_t *shared; /* one user's share; NULL while disconnected */
  virConnectPtr conn;  /* shared->conn, or NULL */
  bool was_connected;  /* for the once-per-change log lines */
  unsigned period_s;
  void (*log)(void *, int, const char *);
  void *log_ctx;
  uint64_t requests;
  /* wait_event: domains whose statistics changed, not yet reported */
  uint32_t pending[LV_PENDING_MAX];
  size_t npending;
  double next_poll_s; /* monotonic */
  /* wait_event: the sequence this handle last reported per domain (the
   * domains of the last poll). Per handle, not in the shared table: the
   * reader advancing a sequence first must not hide the change from the
   * waiting thread. */
  lv_seen_t *seen; /* owned */
  size_t nseen;
} lv_priv_t;

static double lv_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libvirt prints every error to stderr unless told otherwise; the backend
 * reports errors through its return values instead. */
static void lv_silent(void *ud, virErrorPtr e) {
  (void)ud;
  (void)e;
}

static void lv_log(lv_priv_t *p, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mb_backend_vlogf(p->log, p->log_ctx, level, fmt, ap);
  va_end(ap);
}

static const char *lv_errmsg(void) {
  virErrorPtr e = virGetLastError();
  return (e && e->message) ? e->message : "unknown libvirt error";
}

static int lv_errcode(void) {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

/* A domain that stopped or vanished between listing and querying. */
static bool lv_err_is_gone(void) {
  int c = lv_errcode();
  return c == VIR_ERR_NO_DOMAIN || c == VIR_ERR_OPERATION_INVALID;
}

static void lv_shared_unlink(lv_shared_t *e) {
  for (lv_shared_t **pp = &lv_shared_list; *pp != NULL; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  e->listed = false;
}

/* Gives up this handle's share of the connection. dead: the connection
 * was found dead, so no later handle may pick it up. */
static void lv_release(lv_priv_t *p, bool dead) {
  lv_shared_t *e = p->shared;
  if (e == NULL)
    return;
  pthread_mutex_lock(&lv_shared_lock);
  if (dead && e->listed)
    lv_shared_unlink(e);
  e->users--;
  bool last = e->users == 0;
  if (last && e->listed)
    lv_shared_unlink(e);
  pthread_mutex_unlock(&lv_shared_lock);
  virConnectClose(e->conn); /* this user's reference */
  if (last) {
    free(e->uri);
    free(e);
  }
  p->shared = NULL;
  p->conn = NULL;
}

static int lv_connect(lv_priv_t *p, char *err, size_t errlen) {
  if (p->conn != NULL)
    return 0;
  int ret = -1;
  bool opened = false;
  pthread_mutex_lock(&lv_shared_lock);
  lv_shared_t *e = lv_shared_list;
  while (e != NULL && strcmp(e->uri, p->uri) != 0)
    e = e->next;
  if (e != NULL) {
    p->requests++;
    if (virConnectIsAlive(e->conn) == 1) {
      virConnectRef(e->conn);
      e->users++;
      goto done;
    }
    lv_shared_unlink(e); /* dead: its users drop it on their next failure */
  }
  e = calloc(1, sizeof(*e));
  if (e == NULL || (e->uri = strdup(p->uri)) == NULL) {
    free(e);
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  p->requests++;
  e->conn = virConnectOpen(p->uri);
  if (e->conn == NULL) {
    snprintf(err, errlen, "libvirt: cannot connect to %s: %s", p->uri,
             lv_errmsg());
    free(e->uri);
    free(e);
    goto out;
  }
  virConnSetErrorFunc(e->conn, NULL, lv_silent);
  e->users = 1;
  e->listed = true;
  e->next = lv_shared_list;
  lv_shared_list = e;
  opened = true;
done:
  p->shared = e;
  p->conn = e->conn;
  ret = 0;
out:
  pthread_mutex_unlock(&lv_shared_lock);
  if (ret == 0) {
    if (p->was_connected)
      lv_log(p, LOG_NOTICE, "libvirt: connection to %s re-established%s",
             p->uri, opened ? "" : " (shared)");
    p->was_connected = true;
  }
  return ret;
}

/* After a failed call: drop the connection when it is dead so that the next
 * call re-opens it (libvirtd restarted). */
static void lv_check_conn(lv_priv_t *p) {
  if (p->conn == NULL)
    return;
  /* Every libvirt call resets the thread's last error: keep it first. */
  char why[256];
  snprintf(why, sizeof(why), "%s", lv_errmsg());
  p->requests++;
  if (virConnectIsAlive(p->conn) == 1)
    return;
  /* Handles sharing the connection all find it dead: one says so. */
  pthread_mutex_lock(&lv_shared_lock);
  bool say = !p->shared->lost_said;
  p->shared->lost_said = true;
  pthread_mutex_unlock(&lv_shared_lock);
  if (say)
    lv_log(p, LOG_WARNING, "libvirt: connection to %s lost (%s); re-opening",
           p->uri, why);
  lv_release(p, true);
}

/* Caller holds lv_table_lock. The pointer is valid until it is released. */
static lv_dom_state_t *lv_state(const unsigned char *uuid, double now) {
  for (size_t i = 0; i < lv_table_n; i++)
    if (memcmp(lv_table[i].uuid, uuid, VIR_UUID_BUFLEN) == 0) {
      lv_table[i].seen_s = now;
      return &lv_table[i];
    }
  /* Forget domains gone for long, so the table never grows past the
   * domains alive within LV_FORGET_S. */
  size_t j = 0;
  for (size_t i = 0; i < lv_table_n; i++)
    if (now - lv_table[i].seen_s <= LV_FORGET_S)
      lv_table[j++] = lv_table[i];
  lv_table_n = j;
  if (lv_table_n == lv_table_cap) {
    size_t cap = lv_table_cap ? 2 * lv_table_cap : 16;
    lv_dom_state_t *n = realloc(lv_table, cap * sizeof(*n));
    if (n == NULL)
      return NULL;
    lv_table = n;
    lv_table_cap = cap;
  }
  lv_dom_state_t *st = &lv_table[lv_table_n++];
  memset(st, 0, sizeof(*st));
  memcpy(st->uuid, uuid, VIR_UUID_BUFLEN);
  st->seen_s = now;
  return st;
}

static void *lv_open(const mb_backend_opts_t *opts, char *err, size_t errlen) {
  lv_priv_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    return NULL;
  }
  /* No URI configured: libvirt's own variable, then qemu:///system. */
  const char *uri =
      (opts && opts->uri) ? opts->uri : getenv("LIBVIRT_DEFAULT_URI");
  if (uri == NULL || *uri == '\0')
    uri = LV_DEFAULT_URI;
  p->uri = strdup(uri);
  if (p->uri == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    free(p);
    return NULL;
  }
  p->period_s = (opts && opts->stats_period_s) ? opts->stats_period_s
                                               : LV_DEFAULT_PERIOD_S;
  p->log = opts ? opts->log : NULL;
  p->log_ctx = opts ? opts->log_ctx : NULL;
  virSetErrorFunc(NULL, lv_silent);
  /* The first connection must work: a wrong URI is a configuration error
   * the user should see at start-up, not a reconnect loop. */
  if (lv_connect(p, err, errlen) != 0) {
    free(p->uri);
    free(p);
    return NULL;
  }
  return p;
}

static void lv_close(void *priv) {
  lv_priv_t *p = priv;
  if (p == NULL)
    return;
  lv_release(p, false);
  free(p->seen);
  free(p->uri);
  free(p);
}

/* Per-cell totals from the capabilities XML (<cell id='N'> ... <memory
 * unit='KiB'>X</memory>). The XML is libvirt's own output, so a plain scan
 * for the two tags suffices. */
static void lv_cell_totals(lv_priv_t *p, mb_hostinfo_t *out) {
  p->requests++;
  char *caps = virConnectGetCapabilities(p->conn); /* owned */
  if (caps == NULL)
    return;
  const char *c = caps;
  while ((c = strstr(c, "<cell id='")) != NULL) {
    char *end;
    c += strlen("<cell id='");
    unsigned long id = strtoul(c, &end, 10);
    if (end == c || *end != '\'')
      break;
    const char *next_cell = strstr(end, "<cell id='");
    const char *mem = strstr(end, "<memory unit='KiB'>");
    if (mem == NULL || (next_cell != NULL && mem > next_cell)) {
      c = end;
      continue;
    }
    mem += strlen("<memory unit='KiB'>");
    unsigned long long kib = strtoull(mem, &end, 10);
    if (end != mem && *end == '<' && id < MB_MAX_NODES)
      out->node_total_kib[id] = kib;
    c = end;
  }
  free(caps);
}

static int lv_host_once(void *priv, mb_hostinfo_t *out, char *err,
                        size_t errlen) {
  lv_priv_t *p = priv;
  if (lv_connect(p, err, errlen) != 0)
    return -1;

  virNodeInfo ni;
  p->requests++;
  if (virNodeGetInfo(p->conn, &ni) != 0) {
    snprintf(err, errlen, "libvirt: virNodeGetInfo: %s", lv_errmsg());
    lv_check_conn(p);
    return -1;
  }
  out->total_kib = ni.memory;

  /* Free memory: what the host could hand out without swapping (free +
   * buffers + cache) when the driver tells it, else plain free, else, for
   * drivers that know neither (the test driver with a host file), total
   * minus what the active domains hold. */
  bool have_free = false;
  int nparams = 0;
  p->requests++;
  if (virNodeGetMemoryStats(p->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL,
                            &nparams, 0) == 0 &&
      nparams > 0 && nparams < 64) {
    virNodeMemoryStats ms[64];
    p->requests++;
    if (virNodeGetMemoryStats(p->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, ms,
                              &nparams, 0) == 0) {
      uint64_t free_kib = 0;
      for (int i = 0; i < nparams; i++)
        if (strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_FREE) == 0 ||
            strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) == 0 ||
            strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_CACHED) == 0)
          free_kib += ms[i].value;
      out->free_kib = free_kib;
      have_free = true;
    }
  }
  if (!have_free) {
    p->requests++;
    unsigned long long free_b = virNodeGetFreeMemory(p->conn);
    if (free_b > 0) {
      out->free_kib = free_b / 1024;
      have_free = true;
    }
  }
  if (!have_free) {
    virDomainPtr *doms = NULL; /* owned, with every element */
    p->requests++;
    int n = virConnectListAllDomains(p->conn, &doms,
                                     VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0) {
      snprintf(err, errlen, "libvirt: virConnectListAllDomains: %s",
               lv_errmsg());
      lv_check_conn(p);
      return -1;
    }
    uint64_t used_kib = 0;
    for (int i = 0; i < n; i++) {
      virDomainInfo di;
      p->requests++;
      if (virDomainGetInfo(doms[i], &di) == 0)
        used_kib += di.memory;
      virDomainFree(doms[i]);
    }
    free(doms);
    out->free_kib = used_kib < out->total_kib ? out->total_kib - used_kib : 0;
  }

  /* NUMA: one entry per cell libvirt reports free memory for. */
  unsigned long long cell_free_b[MB_MAX_NODES];
  p->requests++;
  int cells = virNodeGetCellsFreeMemory(p->conn, cell_free_b, 0, MB_MAX_NODES);
  if (cells > 0) {
    out->nr_nodes = (unsigned)cells;
    for (int i = 0; i < cells; i++)
      out->node_free_kib[i] = cell_free_b[i] / 1024;
    lv_cell_totals(p, out);
  } else {
    /* A driver without cell data (test driver with a host file) or a
     * single-node host: NUMA unknown. Not an error. */
    virResetLastError();
    out->nr_nodes = 0;
  }
  return 0;
}

/* Parses libvirt's node set syntax ("0-2,5", "^1" excludes) into a mask.
 * Returns 0, or -1 on a syntax error or a node >= MB_MAX_NODES (the caller
 * then treats the domain as unbound). */
static int lv_parse_nodeset(const char *s, uint32_t *mask) {
  uint32_t m = 0;
  const char *c = s;
  if (*c == '\0')
    return -1;
  while (*c != '\0') {
    bool neg = false;
    if (*c == '^') {
      neg = true;
      c++;
    }
    char *end;
    if (*c < '0' || *c > '9')
      return -1;
    errno = 0;
    unsigned long a = strtoul(c, &end, 10);
    unsigned long b = a;
    if (errno != 0)
      return -1;
    c = end;
    if (*c == '-' && !neg) {
      c++;
      if (*c < '0' || *c > '9')
        return -1;
      b = strtoul(c, &end, 10);
      if (errno != 0)
        return -1;
      c = end;
    }
    if (a > b || b >= MB_MAX_NODES)
      return -1;
    for (unsigned long i = a; i <= b; i++) {
      if (neg)
        m &= ~(1u << i);
      else
        m |= 1u << i;
    }
    if (*c == ',')
      c++;
    else if (*c != '\0')
      return -1;
  }
  *mask = m;
  return 0;
}

static uint32_t lv_node_mask(lv_priv_t *p, virDomainPtr dom) {
  int n = 0;
  uint32_t mask = 0;
  p->requests++;
  if (virDomainGetNumaParameters(dom, NULL, &n, 0) != 0 || n <= 0 || n > 16) {
    virResetLastError();
    return 0;
  }
  virTypedParameter params[16];
  memset(params, 0, sizeof(params));
  p->requests++;
  if (virDomainGetNumaParameters(dom, params, &n, 0) != 0) {
    virResetLastError();
    return 0;
  }
  int mode = -1;
  const char *nodeset = NULL;
  for (int i = 0; i < n; i++) {
    if (strcmp(params[i].field, VIR_DOMAIN_NUMA_MODE) == 0 &&
        params[i].type == VIR_TYPED_PARAM_INT)
      mode = params[i].value.i;
    else if (strcmp(params[i].field, VIR_DOMAIN_NUMA_NODESET) == 0 &&
             params[i].type == VIR_TYPED_PARAM_STRING)
      nodeset = params[i].value.s;
  }
  /* preferred only hints where memory comes from; the others bind it. */
  if (nodeset != NULL && mode != VIR_DOMAIN_NUMATUNE_MEM_PREFERRED &&
      lv_parse_nodeset(nodeset, &mask) != 0)
    mask = 0;
  virTypedParamsClear(params, n);
  return mask;
}

/* True when the domain has a virtio balloon whose stats period is 0 or
 * not set. The XML is libvirt's own formatting: <memballoon model='...'>
 * holding at most one <stats period='N'/>. */
static bool lv_period_off(const char *xml) {
  const char *mb = strstr(xml, "<memballoon model='virtio");
  if (mb == NULL)
    return false;
  const char *gt = strchr(mb, '>');
  if (gt == NULL || gt[-1] == '/')
    return true; /* <memballoon .../>: no stats element */
  const char *end = strstr(gt, "</memballoon>");
  const char *st = strstr(gt, "<stats period='");
  if (st == NULL || (end != NULL && st > end))
    return true;
  st += strlen("<stats period='");
  return strtoul(st, NULL, 10) == 0;
}

static void lv_enable_period(lv_priv_t *p, virDomainPtr dom, const char *name) {
  p->requests++;
  char *xml = virDomainGetXMLDesc(dom, 0); /* owned */
  if (xml == NULL) {
    virResetLastError();
    return;
  }
  bool off = lv_period_off(xml);
  free(xml);
  if (!off)
    return;
  p->requests++;
  if (virDomainSetMemoryStatsPeriod(dom, (int)p->period_s,
                                    VIR_DOMAIN_AFFECT_LIVE) == 0)
    lv_log(p, LOG_INFO,
           "libvirt: domain %s: balloon stats period was 0 (off); set to %u s",
           name, p->period_s);
  else
    lv_log(p, LOG_WARNING,
           "libvirt: domain %s: balloon stats period is 0 (off) and setting "
           "it failed: %s",
           name, lv_errmsg());
}

/* What virDomainMemoryStats gives, as sample fields (docs/kvm.md).
 * Every tag this libvirt defines (VIR_DOMAIN_MEMORY_STAT_NR) is either
 * mapped here or listed in lv_stat_unmapped with the reason: a libvirt that
 * defines more (Linux 6.12's balloon stats: OOM kills, allocation stalls,
 * scans and reclaims; libvirt 9.0 has none of them) fails
 * tests/libvirt/test_backend_libvirt.c until they are mapped or listed.
 * Nothing here is PSI nor a workingset refault: a KVM guest's sample has
 * neither (its stall and refault rates stay invalid). */
static const struct {
  int tag;
  mb_field_t field;
} lv_stat_map[] = {
    {VIR_DOMAIN_MEMORY_STAT_AVAILABLE, MB_F_MEMTOTAL},
    {VIR_DOMAIN_MEMORY_STAT_UNUSED, MB_F_MEMFREE},
    {VIR_DOMAIN_MEMORY_STAT_USABLE, MB_F_MEMAVAILABLE},
    {VIR_DOMAIN_MEMORY_STAT_DISK_CACHES, MB_F_CACHED},
    {VIR_DOMAIN_MEMORY_STAT_SWAP_IN, MB_F_PSWPIN},   /* KiB -> pages */
    {VIR_DOMAIN_MEMORY_STAT_SWAP_OUT, MB_F_PSWPOUT}, /* KiB -> pages */
    {VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, MB_F_PGMAJFAULT},
    {VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT, MB_F_PGFAULT},
};
#define LV_NSTAT_MAP (sizeof(lv_stat_map) / sizeof(lv_stat_map[0]))

/* Read by the test only: the list is the record of what is left out. */
static const struct {
  int tag;
  const char *why;
} lv_stat_unmapped[] __attribute__((unused)) = {
    {VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, "host side: current_kib"},
    {VIR_DOMAIN_MEMORY_STAT_RSS, "host side: QEMU's resident set"},
    {VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, "time of the stats: uptime_ms"},
    {VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGALLOC, "hugetlb: not ballooned"},
    {VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGFAIL, "hugetlb: not ballooned"},
};
#define LV_NSTAT_UNMAPPED                                                      \
  (sizeof(lv_stat_unmapped) / sizeof(lv_stat_unmapped[0]))

/* Maps MemoryStats into a sample. Returns the sample status; sample_err
 * says why a sample was rejected. */
static mb_sample_status_t
lv_fill_sample(lv_dom_state_t *st, const virDomainMemoryStatStruct *ms, int nms,
               uint64_t max_kib, mb_sample_t *s, char *serr, size_t serrlen) {
  unsigned long long v[VIR_DOMAIN_MEMORY_STAT_NR] = {0};
  uint32_t present = 0;
  for (int i = 0; i < nms; i++) {
    int tag = ms[i].tag;
    if (tag < 0 || tag >= VIR_DOMAIN_MEMORY_STAT_NR)
      continue;
    v[tag] = ms[i].val;
    present |= 1u << tag;
  }
#define HAS(tag) ((present >> (tag)) & 1u)

  /* Sequence: advances when anything the hypervisor reports changed. */
  if (!st->have_prev || st->prev_present != present ||
      memcmp(st->prev, v, sizeof(v)) != 0) {
    st->seq++;
    memcpy(st->prev, v, sizeof(v));
    st->prev_present = present;
    st->have_prev = true;
  }

  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < LV_NSTAT_MAP; i++) {
    if (!HAS(lv_stat_map[i].tag))
      continue;
    uint64_t val = v[lv_stat_map[i].tag];
    if (lv_stat_map[i].field == MB_F_PSWPIN ||
        lv_stat_map[i].field == MB_F_PSWPOUT)
      val /= LV_GUEST_PAGE_KIB;
    s->v[lv_stat_map[i].field] = val;
    s->have |= (uint64_t)1 << lv_stat_map[i].field;
  }
  if (s->have == 0)
    return MB_SAMPLE_NONE; /* period 0 or no balloon driver in the guest */

  /* The guest wrote these: refuse what cannot be true. */
  const char *bad = NULL;
  uint64_t bad_v = 0, bad_lim = 0;
  if (HAS(VIR_DOMAIN_MEMORY_STAT_AVAILABLE)) {
    uint64_t total = v[VIR_DOMAIN_MEMORY_STAT_AVAILABLE];
    if (max_kib > 0 && total > max_kib) {
      bad = "available exceeds the domain's maximum";
      bad_v = total;
      bad_lim = max_kib;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_UNUSED) &&
               v[VIR_DOMAIN_MEMORY_STAT_UNUSED] > total) {
      bad = "unused exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_UNUSED];
      bad_lim = total;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_USABLE) &&
               v[VIR_DOMAIN_MEMORY_STAT_USABLE] > total) {
      bad = "usable exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_USABLE];
      bad_lim = total;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_DISK_CACHES) &&
               v[VIR_DOMAIN_MEMORY_STAT_DISK_CACHES] > total) {
      bad = "disk_caches exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_DISK_CACHES];
      bad_lim = total;
    }
  }
#undef HAS
  if (bad != NULL) {
    snprintf(serr, serrlen, "balloon stats rejected: %s (%llu > %llu KiB)", bad,
             (unsigned long long)bad_v, (unsigned long long)bad_lim);
    memset(s, 0, sizeof(*s));
    return MB_SAMPLE_BAD;
  }
  s->seq = st->seq;
  /* No uptime in balloon statistics; the time QEMU took them (seconds)
   * serves the same purpose: rates between two samples. */
  if (v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] > 0 &&
      v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] < UINT64_MAX / 1000)
    s->uptime_ms = v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] * 1000;
  return MB_SAMPLE_OK;
}

/* Fills *d for one domain. Returns 1 when filled, 0 when the domain is gone,
 * not running or unusably named (dropped), -1 on a connection-level
 * failure. */
static int lv_one(lv_priv_t *p, virDomainPtr dom, mb_dominfo_t *d, char *err,
                  size_t errlen) {
  memset(d, 0, sizeof(*d));
  p->requests++;
  unsigned int id = virDomainGetID(dom);
  if (id == (unsigned int)-1)
    return 0;
  d->domid = id;
  const char *name = virDomainGetName(dom); /* owned by dom */

  unsigned char uuid[VIR_UUID_BUFLEN];
  p->requests++;
  if (virDomainGetUUID(dom, uuid) != 0)
    return 0;
  const char *bad = mb_backend_name_problem(name, name ? strlen(name) : 0);
  if (bad != NULL) {
    pthread_mutex_lock(&lv_table_lock);
    lv_dom_state_t *st = lv_state(uuid, lv_now_s());
    bool say = st != NULL && !st->name_said;
    if (st != NULL)
      st->name_said = true;
    pthread_mutex_unlock(&lv_table_lock);
    if (say)
      lv_log(p, LOG_WARNING, "libvirt: domain %u left alone: %s", id, bad);
    return 0;
  }
  snprintf(d->name, sizeof(d->name), "%s", name);

  virDomainInfo di;
  p->requests++;
  if (virDomainGetInfo(dom, &di) != 0) {
    if (lv_err_is_gone())
      return 0;
    snprintf(err, errlen, "libvirt: virDomainGetInfo(%s): %s", d->name,
             lv_errmsg());
    /* A dead connection fails the round; anything else drops the domain
     * from this round only. */
    p->requests++;
    return virConnectIsAlive(p->conn) == 1 ? 0 : -1;
  }
  if (di.state == VIR_DOMAIN_SHUTOFF || di.state == VIR_DOMAIN_CRASHED ||
      di.state == VIR_DOMAIN_NOSTATE)
    return 0;
  p->requests++;
  unsigned long max = virDomainGetMaxMemory(dom);
  d->max_kib = max ? max : di.maxMem;

  d->node_mask = lv_node_mask(p, dom);

  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  p->requests++;
  int nms = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  uint64_t actual_kib = 0;
  if (nms < 0) {
    if (lv_err_is_gone())
      return 0;
    d->sample_status = MB_SAMPLE_BAD;
    snprintf(d->sample_err, sizeof(d->sample_err), "virDomainMemoryStats: %s",
             lv_errmsg());
    virResetLastError();
  }
  for (int i = 0; i < nms; i++)
    if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
      actual_kib = ms[i].val;

  pthread_mutex_lock(&lv_table_lock);
  lv_dom_state_t *st = lv_state(uuid, lv_now_s());
  if (st == NULL) {
    pthread_mutex_unlock(&lv_table_lock);
    snprintf(err, errlen, "libvirt: out of memory");
    return -1;
  }
  bool check_period = !st->period_checked;
  st->period_checked = true;
  if (nms >= 0)
    d->sample_status = lv_fill_sample(st, ms, nms, d->max_kib, &d->sample,
                                      d->sample_err, sizeof(d->sample_err));
  d->target_kib = st->target_known ? st->target_kib : di.memory;
  pthread_mutex_unlock(&lv_table_lock);

  if (check_period)
    lv_enable_period(p, dom, d->name);
  d->current_kib = actual_kib ? actual_kib : di.memory;
  if (d->max_kib > 0 && d->current_kib > d->max_kib)
    d->current_kib = d->max_kib; /* actual is the guest's word */
  return 1;
}

static int lv_cmp_domid(const void *a, const void *b) {
  const mb_dominfo_t *x = a, *y = b;
  return (x->domid > y->domid) - (x->domid < y->domid);
}

/* The active domains: *doms (caller frees, with virDomainFree on every
 * element) and their count, or -1 (+err) with *doms NULL. */
static int lv_list_active(lv_priv_t *p, virDomainPtr **doms, char *err,
                          size_t errlen) {
  *doms = NULL;
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  int nd =
      virConnectListAllDomains(p->conn, doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (nd < 0) {
    snprintf(err, errlen, "libvirt: virConnectListAllDomains: %s", lv_errmsg());
    lv_check_conn(p);
    *doms = NULL;
    return -1;
  }
  return nd;
}

static int lv_list_once(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                        size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr *doms = NULL; /* owned, with every element */
  mb_dominfo_t *res = NULL;  /* owned until handed to *out */
  int nd = 0;

  nd = lv_list_active(p, &doms, err, errlen);
  if (nd < 0) {
    nd = 0;
    goto out;
  }
  res = calloc(nd > 0 ? (size_t)nd : 1, sizeof(*res));
  if (res == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  size_t k = 0;
  for (int i = 0; i < nd; i++) {
    int r = lv_one(p, doms[i], &res[k], err, errlen);
    if (r < 0) {
      lv_check_conn(p);
      goto out;
    }
    if (r > 0)
      k++;
  }
  qsort(res, k, sizeof(*res), lv_cmp_domid);
  *out = res;
  *n = k;
  res = NULL;
  ret = 0;
out:
  for (int i = 0; i < nd; i++)
    virDomainFree(doms[i]);
  free(doms);
  free(res);
  return ret;
}

static int lv_set_target_once(void *priv, uint32_t domid, uint64_t target_kib,
                              char *err, size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr dom = NULL; /* owned */

  if (lv_connect(p, err, errlen) != 0)
    return -1;
  if (target_kib > (uint64_t)(unsigned long)-1) {
    snprintf(err, errlen, "libvirt: target %llu KiB too large",
             (unsigned long long)target_kib);
    return -1;
  }
  p->requests++;
  dom = virDomainLookupByID(p->conn, (int)domid);
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  const char *name = virDomainGetName(dom); /* owned by dom */
  p->requests++;
  if (virDomainSetMemoryFlags(dom, (unsigned long)target_kib,
                              VIR_DOMAIN_AFFECT_LIVE) != 0) {
    snprintf(err, errlen, "libvirt: domain %s: set memory to %llu KiB: %s",
             name ? name : "?", (unsigned long long)target_kib, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  unsigned char uuid[VIR_UUID_BUFLEN];
  if (virDomainGetUUID(dom, uuid) == 0) {
    pthread_mutex_lock(&lv_table_lock);
    lv_dom_state_t *st = lv_state(uuid, lv_now_s());
    if (st != NULL) {
      st->target_known = true;
      st->target_kib = target_kib;
    }
    pthread_mutex_unlock(&lv_table_lock);
  }
  ret = 0;
out:
  if (dom)
    virDomainFree(dom);
  return ret;
}

/* A call that found the connection dead (and dropped it) is tried once more
 * on a fresh one, so that the round which notices a libvirtd restart still
 * succeeds. A call that could not connect at all is not retried. */
static int lv_host(void *priv, mb_hostinfo_t *out, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_host_once(p, out, err, errlen);
  if (r != 0 && had && p->conn == NULL) {
    memset(out, 0, sizeof(*out));
    r = lv_host_once(p, out, err, errlen);
  }
  return r;
}

static int lv_list(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                   size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_list_once(p, out, n, err, errlen);
  if (r != 0 && had && p->conn == NULL)
    r = lv_list_once(p, out, n, err, errlen);
  return r;
}

static int lv_set_target(void *priv, uint32_t domid, uint64_t target_kib,
                         char *err, size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_set_target_once(p, domid, target_kib, err, errlen);
  if (r != 0 && had && p->conn == NULL)
    r = lv_set_target_once(p, domid, target_kib, err, errlen);
  return r;
}

/* Reads one domain's balloon statistics into the shared table. Returns the
 * sample status, or -1 when the domain is gone or unreadable; uuid and *seq
 * receive the domain's UUID and its sequence number after the read (also
 * when the sample is rejected or empty). */
static int lv_read_stats(lv_priv_t *p, virDomainPtr dom, uint64_t max_kib,
                         mb_sample_t *s, char *serr, size_t serrlen,
                         uint64_t *actual_kib, unsigned char *uuid,
                         uint64_t *seq) {
  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  p->requests++;
  if (virDomainGetUUID(dom, uuid) != 0)
    return -1;
  p->requests++;
  int nms = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  if (nms < 0)
    return -1;
  *actual_kib = 0;
  for (int i = 0; i < nms; i++)
    if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
      *actual_kib = ms[i].val;
  pthread_mutex_lock(&lv_table_lock);
  lv_dom_state_t *st = lv_state(uuid, lv_now_s());
  if (st == NULL) {
    pthread_mutex_unlock(&lv_table_lock);
    snprintf(serr, serrlen, "libvirt: out of memory");
    return -1;
  }
  int status = (int)lv_fill_sample(st, ms, nms, max_kib, s, serr, serrlen);
  *seq = st->seq;
  pthread_mutex_unlock(&lv_table_lock);
  return status;
}

/* One pass over the active domains: queues those whose sequence differs
 * from the one this handle last reported (or that it has not reported
 * yet). Whichever handle read the statistics first advanced the shared
 * sequence; comparing with the shared "previous" values instead would
 * lose every change the reader happened to see first. */
static int lv_poll(lv_priv_t *p, char *err, size_t errlen) {
  int ret = -1;
  virDomainPtr *doms = NULL; /* owned, with every element */
  lv_seen_t *seen = NULL;    /* owned until it replaces p->seen */
  size_t nseen = 0;
  int nd = 0;
  nd = lv_list_active(p, &doms, err, errlen);
  if (nd < 0) {
    nd = 0;
    goto out;
  }
  seen = calloc(nd > 0 ? (size_t)nd : 1, sizeof(*seen));
  if (seen == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  for (int i = 0; i < nd; i++) {
    mb_sample_t s;
    char serr[160];
    uint64_t actual_kib, seq = 0;
    unsigned char uuid[VIR_UUID_BUFLEN];
    p->requests++;
    unsigned int id = virDomainGetID(doms[i]);
    if (id == (unsigned int)-1 ||
        lv_read_stats(p, doms[i], 0, &s, serr, sizeof(serr), &actual_kib, uuid,
                      &seq) < 0) {
      virResetLastError(); /* a domain gone meanwhile is not an error */
      continue;
    }
    const lv_seen_t *old = NULL;
    for (size_t k = 0; k < p->nseen && old == NULL; k++)
      if (memcmp(p->seen[k].uuid, uuid, VIR_UUID_BUFLEN) == 0)
        old = &p->seen[k];
    uint64_t reported = old != NULL ? old->seq : 0;
    if (seq != reported) {
      bool queued = false;
      for (size_t k = 0; k < p->npending; k++)
        queued = queued || p->pending[k] == id;
      if (!queued && p->npending < LV_PENDING_MAX)
        p->pending[p->npending++] = id;
      else if (!queued)
        seq = reported; /* queue full: reported on a later poll */
    }
    memcpy(seen[nseen].uuid, uuid, VIR_UUID_BUFLEN);
    seen[nseen].seq = seq;
    nseen++;
  }
  free(p->seen);
  p->seen = seen;
  p->nseen = nseen;
  seen = NULL;
  ret = 0;
out:
  for (int i = 0; i < nd; i++)
    virDomainFree(doms[i]);
  free(doms);
  free(seen);
  return ret;
}

/* No push from libvirt: the balloon statistics are polled every LV_POLL_S
 * and a domain whose statistics changed is reported, one per call, so that
 * the caller (vmmem's watch thread) sees a KVM guest's swap storm without
 * waiting for its next interval. */
static int lv_wait_event(void *priv, int timeout_ms, uint32_t *domid, char *err,
                         size_t errlen) {
  lv_priv_t *p = priv;
  double deadline = lv_now_s() + (timeout_ms > 0 ? timeout_ms / 1000.0 : 0);
  for (;;) {
    if (p->npending > 0) {
      *domid = p->pending[0];
      memmove(p->pending, p->pending + 1,
              (p->npending - 1) * sizeof(p->pending[0]));
      p->npending--;
      return 1;
    }
    double now = lv_now_s();
    if (now >= p->next_poll_s) {
      p->next_poll_s = now + LV_POLL_S;
      if (lv_poll(p, err, errlen) != 0)
        return -1;
      continue;
    }
    if (now >= deadline)
      return 0;
    double until = p->next_poll_s < deadline ? p->next_poll_s : deadline;
    double wait_s = until - now;
    struct timespec ts = {.tv_sec = (time_t)wait_s,
                          .tv_nsec =
                              (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

/* One domain's latest sample, for the watch thread; raw receives it as a
 * membal record (mb_record_format), since libvirt has no record text. */
static int lv_guest(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
                    size_t rawlen, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr dom = NULL; /* owned */
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  dom = virDomainLookupByID(p->conn, (int)domid);
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  out->domid = domid; /* the name is mb_backend_name()'s business */
  p->requests++;
  out->max_kib = virDomainGetMaxMemory(dom);
  uint64_t actual_kib = 0, seq;
  unsigned char uuid[VIR_UUID_BUFLEN];
  int st = lv_read_stats(p, dom, out->max_kib, &out->sample, out->sample_err,
                         sizeof(out->sample_err), &actual_kib, uuid, &seq);
  if (st < 0) {
    snprintf(err, errlen, "libvirt: domain %u: balloon statistics: %s", domid,
             lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  out->sample_status = (mb_sample_status_t)st;
  out->current_kib = actual_kib;
  if (out->sample_status == MB_SAMPLE_OK && raw != NULL && rawlen > 0 &&
      mb_record_format(&out->sample, raw, rawlen) < 0)
    raw[0] = '\0';
  ret = 0;
out:
  if (dom)
    virDomainFree(dom);
  return ret;
}

static int lv_name(void *priv, uint32_t domid, char *name, char *err,
                   size_t errlen) {
  lv_priv_t *p = priv;
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  virDomainPtr dom = virDomainLookupByID(p->conn, (int)domid); /* owned */
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    return -1;
  }
  const char *n = virDomainGetName(dom); /* owned by dom */
  const char *bad = mb_backend_name_problem(n, n ? strlen(n) : 0);
  int ret = -1;
  if (bad != NULL)
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, bad);
  else {
    snprintf(name, MB_NAME_LEN, "%s", n);
    ret = 0;
  }
  virDomainFree(dom);
  return ret;
}

static uint64_t lv_requests(const void *priv) {
  const lv_priv_t *p = priv;
  return p->requests;
}

const mb_backend_ops_t mb_backend_libvirt_ops = {
    .open = lv_open,
    .close = lv_close,
    .host = lv_host,
    .list = lv_list,
    .set_target = lv_set_target,
    .wait_event = lv_wait_event,
    .requests = lv_requests,
    .guest = lv_guest,
    .name = lv_name,
};
