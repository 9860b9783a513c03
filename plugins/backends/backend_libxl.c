/*
 * "libxl" backend: real Xen. Domains and host memory from libxl, balloon
 * targets through libxl_set_memory_target(), guest records from xenstore
 * (xs_guest.c).
 *
 * Cost of one mb_backend_list() round: one libxl_list_domain() hypercall,
 * then per domain one xenstore read of memory/target and one of the guest
 * record; names are looked up once per domid and cached.
 *
 * Setting a PV guest's target costs one hypercall (its maximum: the target
 * plus libxl's 1 MiB) and one xenstore write, what libxl_set_memory_target()
 * ends up doing for a PV guest; libxl's call also takes the domain's lock
 * file, reads and parses its saved configuration and runs a xenstore
 * transaction, which took 0.2-3 s per call in dom0 under QEMU TCG, three
 * calls in a row before an urgent round's grow (docs/xen-e2e.md). Other
 * guests (HVM, PVH: populate-on-demand target) go through libxl.
 */
#define LIBXL_API_VERSION 0x041300
#include "backend_impl.h"
#include "xs_guest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xenctrl.h>

#define LX_MAX_DOMID 0x7fefu /* DOMID_FIRST_RESERVED - 1 */
#define LX_PAGE_KIB 4u       /* libxl_physinfo counts 4 KiB Xen pages */
#define LX_LOG_PER_MIN 5     /* libxl lines forwarded per minute */
/* The hypervisor's maximum is the target plus this, as libxl sets it
 * (LIBXL_MAXMEM_CONSTANT on x86). */
#define LX_MAXMEM_SLACK_KIB 1024u

typedef struct lx lx_t;

/* libxl wants a xentoollog logger; this one forwards warnings and errors to
 * the plugin's log sink. vt must stay the first member. */
typedef struct {
  xentoollog_logger vt;
  lx_t *b;
} lx_logger_t;

typedef struct {
  uint32_t domid;
  char name[MB_NAME_LEN];
  bool pv;                 /* PV guest: its target is set directly */
  uint64_t static_max_kib; /* memory/static-max, 0 = unknown */
} lx_name_t;

struct lx {
  libxl_ctx *ctx;    /* owned */
  xc_interface *xch; /* owned; NULL: every target through libxl */
  lx_logger_t logger;
  mb_xs_t xs;  /* guest records and memory/target, read callback */
  mb_xs_t wxs; /* watch connection, used by the waiting thread */
  bool wxs_ready;
  bool no_records; /* list leaves guest records unread */
  void (*log)(void *ctx, int level, const char *msg);
  void *log_ctx;
  lx_name_t *names; /* owned; sorted by domid, the domains of the last
                       round */
  size_t nnames;
  uint8_t skipped[(LX_MAX_DOMID + 8) / 8];
  uint8_t skipped_now[(LX_MAX_DOMID + 8) / 8];
  /* libxl logs several lines per failed call: while opening, the first one
   * goes into the open error instead; later ones are rate limited, so a
   * failing call every interval does not flood collectd's log. */
  bool opening;
  char open_msg[160];
  time_t log_window;  /* start of the current minute */
  unsigned log_lines; /* lines forwarded in it */
};

static void lx_log(lx_t *b, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lx_log(lx_t *b, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mb_backend_vlogf(b->log, b->log_ctx, level, fmt, ap);
  va_end(ap);
}

static void lx_vmessage(xentoollog_logger *lg, xentoollog_level level,
                        int errnoval, const char *context, const char *format,
                        va_list al) __attribute__((format(printf, 5, 0)));
static void lx_vmessage(xentoollog_logger *lg, xentoollog_level level,
                        int errnoval, const char *context, const char *format,
                        va_list al) {
  lx_t *b = ((lx_logger_t *)lg)->b;
  if (level < XTL_WARN)
    return;
  char msg[200];
  vsnprintf(msg, sizeof(msg), format, al);
  if (b->opening) {
    if (b->open_msg[0] == '\0')
      snprintf(b->open_msg, sizeof(b->open_msg), "%.150s", msg);
    return;
  }
  if (b->log == NULL)
    return;
  time_t now = time(NULL);
  if (now - b->log_window >= 60) {
    b->log_window = now;
    b->log_lines = 0;
  }
  if (++b->log_lines > LX_LOG_PER_MIN) {
    if (b->log_lines == LX_LOG_PER_MIN + 1)
      lx_log(b, 4, "libxl: more messages this minute suppressed");
    return;
  }
  lx_log(b, level >= XTL_ERROR ? 3 : 4, "libxl: %s%s%s%s%s", msg,
         context ? " (" : "", context ? context : "", context ? ")" : "",
         errnoval > 0 ? ": error" : "");
}

static void lx_destroy_logger(xentoollog_logger *lg) { (void)lg; }

static void *lx_open(const mb_backend_opts_t *opts, char *err, size_t errlen) {
  lx_t *b = calloc(1, sizeof(*b)); /* owned by the caller via close */
  if (b == NULL) {
    snprintf(err, errlen, "libxl: out of memory");
    return NULL;
  }
  b->log = opts->log;
  b->log_ctx = opts->log_ctx;
  b->no_records = opts->no_records;
  b->logger.vt.vmessage = lx_vmessage;
  b->logger.vt.progress = NULL;
  b->logger.vt.destroy = lx_destroy_logger;
  b->logger.b = b;
  /* First: it puts XenstorePath into XENSTORED_PATH, where libxl's own
   * xenstore connection looks too. */
  if (mb_xs_init(&b->xs, opts->xenstore_path, err, errlen) != 0)
    goto fail;
  b->opening = true;
  int r = libxl_ctx_alloc(&b->ctx, LIBXL_VERSION, 0, &b->logger.vt);
  b->opening = false;
  if (r != 0) {
    snprintf(err, errlen,
             "libxl: libxl_ctx_alloc failed (not dom0 of a Xen host?): %s",
             b->open_msg[0] ? b->open_msg : "no reason given");
    goto fail;
  }
  /* Without it every target goes through libxl: slower, not wrong. */
  b->xch = xc_interface_open(&b->logger.vt, &b->logger.vt, 0);
  return b;

fail:
  libxl_ctx_free(b->ctx);
  mb_xs_fini(&b->xs);
  free(b);
  return NULL;
}

static void lx_close(void *priv) {
  lx_t *b = priv;
  if (b == NULL)
    return;
  if (b->xch != NULL)
    xc_interface_close(b->xch);
  libxl_ctx_free(b->ctx);
  mb_xs_fini(&b->xs);
  if (b->wxs_ready)
    mb_xs_fini(&b->wxs);
  free(b->names);
  free(b);
}

static int lx_host(void *priv, mb_hostinfo_t *out, char *err, size_t errlen) {
  lx_t *b = priv;
  libxl_physinfo pi;
  int nr = 0;
  int rc = -1;
  libxl_numainfo *numa = NULL; /* owned, libxl_numainfo_list_free */

  libxl_physinfo_init(&pi);
  if (libxl_get_physinfo(b->ctx, &pi) != 0) {
    snprintf(err, errlen, "libxl: libxl_get_physinfo failed");
    goto out;
  }
  out->total_kib = pi.total_pages * LX_PAGE_KIB;
  out->free_kib = pi.free_pages * LX_PAGE_KIB;

  numa = libxl_get_numainfo(b->ctx, &nr);
  if (numa != NULL && nr > 0) {
    out->nr_nodes = nr > MB_MAX_NODES ? MB_MAX_NODES : (unsigned)nr;
    for (unsigned i = 0; i < out->nr_nodes; i++) {
      if (numa[i].size == LIBXL_NUMAINFO_INVALID_ENTRY)
        continue;                                   /* node without memory */
      out->node_total_kib[i] = numa[i].size / 1024; /* bytes */
      out->node_free_kib[i] = numa[i].free / 1024;
    }
  }
  rc = 0;

out:
  if (numa != NULL)
    libxl_numainfo_list_free(numa, nr);
  libxl_physinfo_dispose(&pi);
  return rc;
}

static int lx_cmp_dominfo(const void *a, const void *b) {
  uint32_t x = ((const libxl_dominfo *)a)->domid;
  uint32_t y = ((const libxl_dominfo *)b)->domid;
  return x < y ? -1 : x > y;
}

static void lx_skip(lx_t *b, uint32_t domid, const char *why) {
  if (domid > LX_MAX_DOMID)
    return;
  b->skipped_now[domid / 8] |= (uint8_t)(1u << (domid % 8));
  if (!(b->skipped[domid / 8] & (1u << (domid % 8))))
    lx_log(b, 4, "libxl: domain %u skipped: %s", domid, why);
}

/* Name of domid: from the previous round's table (sorted; *cursor walks it
 * in step with the sorted domain list) or from libxl. 0 or -1 (skip). */
static int lx_name(lx_t *b, uint32_t domid, size_t *cursor, char *name) {
  while (*cursor < b->nnames && b->names[*cursor].domid < domid)
    (*cursor)++;
  if (*cursor < b->nnames && b->names[*cursor].domid == domid) {
    memcpy(name, b->names[*cursor].name, MB_NAME_LEN);
    return 0;
  }
  char *n = libxl_domid_to_name(b->ctx, domid); /* owned */
  if (n == NULL)
    return -1; /* being built or torn down: not named yet, not an error */
  const char *bad = mb_backend_name_problem(n, strlen(n));
  if (bad != NULL) {
    lx_skip(b, domid, bad);
    free(n);
    return -1;
  }
  snprintf(name, MB_NAME_LEN, "%s", n);
  free(n);
  return 0;
}

static int lx_list(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                   size_t errlen) {
  lx_t *b = priv;
  int nb = 0;
  int rc = -1;
  libxl_dominfo *info = NULL; /* owned, libxl_dominfo_list_free */
  mb_dominfo_t *doms = NULL;
  lx_name_t *names = NULL;

  info = libxl_list_domain(b->ctx, &nb);
  if (info == NULL) {
    snprintf(err, errlen, "libxl: libxl_list_domain failed");
    goto out;
  }
  qsort(info, (size_t)nb, sizeof(*info), lx_cmp_dominfo);
  doms = calloc(nb > 0 ? (size_t)nb : 1, sizeof(*doms));
  names = calloc(nb > 0 ? (size_t)nb : 1, sizeof(*names));
  if (doms == NULL || names == NULL) {
    snprintf(err, errlen, "libxl: out of memory");
    goto out;
  }
  memset(b->skipped_now, 0, sizeof(b->skipped_now));
  size_t nd = 0, cursor = 0;
  for (int i = 0; i < nb; i++) {
    const libxl_dominfo *di = &info[i];
    if (di->dying)
      continue; /* being destroyed: its memory is on its way back */
    mb_dominfo_t *d = &doms[nd];
    d->domid = di->domid;
    if (lx_name(b, d->domid, &cursor, d->name) != 0)
      continue;
    d->current_kib = di->current_memkb;
    d->max_kib = di->max_memkb;

    d->target_kib = d->current_kib; /* dom0: overhead, never balanced */
    if (d->domid != 0) {
      char path[64];
      size_t len = 0;
      snprintf(path, sizeof(path), "/local/domain/%u/memory/target", d->domid);
      char *t = mb_xs_read(&b->xs, path, 20, &len); /* owned */
      if (t == NULL || !mb_xs_parse_u64(t, len, &d->target_kib))
        d->target_kib = d->current_kib;
      free(t);
      /* max_memkb is the hypervisor's reservation limit, which libxl keeps
       * at the target plus slack: the configured maximum (maxmem) is
       * memory/static-max. Without this a guest could never grow. */
      uint64_t static_max_kib = 0;
      snprintf(path, sizeof(path), "/local/domain/%u/memory/static-max",
               d->domid);
      char *m = mb_xs_read(&b->xs, path, 20, &len); /* owned */
      bool built = m != NULL && mb_xs_parse_u64(m, len, &static_max_kib);
      free(m);
      /* Being built: libxl writes memory/static-max (and the target) once
       * it has populated the domain's memory. Until then the domain is
       * the toolstack's: no target of ours may reach it, and what it
       * holds already counts as memory neither the guests nor the free
       * pool hold (the automatic reserve). */
      if (!built) {
        memset(d, 0, sizeof(*d));
        continue;
      }
      names[nd].static_max_kib = static_max_kib;
      if (static_max_kib > d->max_kib)
        d->max_kib = static_max_kib;
    }
    names[nd].pv = di->domain_type == LIBXL_DOMAIN_TYPE_PV;

    if (d->domid != 0 && !b->no_records &&
        mb_xs_guest_read(&b->xs, d->domid, d, NULL, 0, err, errlen) != 0)
      goto out;
    names[nd].domid = d->domid;
    memcpy(names[nd].name, d->name, MB_NAME_LEN);
    nd++;
  }
  memcpy(b->skipped, b->skipped_now, sizeof(b->skipped));
  free(b->names);
  b->names = names;
  b->nnames = nd;
  names = NULL;
  *out = doms;
  *n = nd;
  doms = NULL;
  rc = 0;

out:
  if (info != NULL)
    libxl_dominfo_list_free(info, nb);
  free(doms);
  free(names);
  return rc;
}

static int lx_cmp_name(const void *key, const void *elem) {
  uint32_t x = *(const uint32_t *)key, y = ((const lx_name_t *)elem)->domid;
  return x < y ? -1 : x > y;
}

/* A PV guest's target, as libxl sets it: the hypervisor's maximum first
 * (so that a guest can never hold more than its target plus the slack),
 * then memory/target, which its balloon driver follows. */
static int lx_set_target_pv(lx_t *b, const lx_name_t *dom, uint64_t target_kib,
                            char *err, size_t errlen) {
  if (dom->static_max_kib == 0 || target_kib > dom->static_max_kib) {
    snprintf(err, errlen,
             "libxl: target %llu KiB of domain %u above its static-max "
             "%llu KiB",
             (unsigned long long)target_kib, dom->domid,
             (unsigned long long)dom->static_max_kib);
    return -1;
  }
  if (xc_domain_setmaxmem(b->xch, dom->domid,
                          target_kib + LX_MAXMEM_SLACK_KIB) != 0) {
    snprintf(err, errlen, "libxl: xc_domain_setmaxmem(%u, %llu KiB) failed: %s",
             dom->domid, (unsigned long long)target_kib + LX_MAXMEM_SLACK_KIB,
             strerror(errno));
    return -1;
  }
  char path[64], value[24];
  snprintf(path, sizeof(path), "/local/domain/%u/memory/target", dom->domid);
  snprintf(value, sizeof(value), "%llu", (unsigned long long)target_kib);
  return mb_xs_write(&b->xs, path, value, err, errlen);
}

static int lx_set_target(void *priv, uint32_t domid, uint64_t target_kib,
                         char *err, size_t errlen) {
  lx_t *b = priv;
  if (domid == 0) {
    snprintf(err, errlen, "libxl: dom0 is never balanced");
    return -1;
  }
  if (target_kib > (uint64_t)INT64_MAX) {
    snprintf(err, errlen, "libxl: target out of range");
    return -1;
  }
  const lx_name_t *dom = b->names == NULL
                             ? NULL
                             : bsearch(&domid, b->names, b->nnames,
                                       sizeof(*b->names), lx_cmp_name);
  if (b->xch != NULL && dom != NULL && dom->pv)
    return lx_set_target_pv(b, dom, target_kib, err, errlen);
  int r = libxl_set_memory_target(b->ctx, domid, (int64_t)target_kib,
                                  0 /* absolute */, 1 /* enforce */);
  if (r != 0) {
    snprintf(err, errlen,
             "libxl: libxl_set_memory_target(%u, %llu KiB) failed: %d", domid,
             (unsigned long long)target_kib, r);
    return -1;
  }
  return 0;
}

static int lx_wait_event(void *priv, int timeout_ms, uint32_t *domid, char *err,
                         size_t errlen) {
  lx_t *b = priv;
  if (!b->wxs_ready) {
    mb_xs_init(&b->wxs, b->xs.socket_path, err, errlen);
    b->wxs_ready = true;
  }
  return mb_xs_wait_guest(&b->wxs, timeout_ms, domid, err, errlen);
}

static uint64_t lx_requests(const void *priv) {
  const lx_t *b = priv;
  return b->xs.requests + (b->wxs_ready ? b->wxs.requests : 0);
}

static int lx_guest(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
                    size_t rawlen, char *err, size_t errlen) {
  lx_t *b = priv;
  /* The waiting thread's own connection, never the read callback's. */
  if (!b->wxs_ready) {
    mb_xs_init(&b->wxs, b->xs.socket_path, err, errlen);
    b->wxs_ready = true;
  }
  out->domid = domid;
  return mb_xs_guest_read(&b->wxs, domid, out, raw, rawlen, err, errlen);
}

static int lx_name_one(void *priv, uint32_t domid, char *name, char *err,
                       size_t errlen) {
  lx_t *b = priv;
  char *n = libxl_domid_to_name(b->ctx, domid); /* owned */
  if (n == NULL) {
    snprintf(err, errlen, "libxl: domain %u has no name (gone?)", domid);
    return -1;
  }
  const char *bad = mb_backend_name_problem(n, strlen(n));
  if (bad != NULL) {
    snprintf(err, errlen, "libxl: domain %u: %s", domid, bad);
    free(n);
    return -1;
  }
  snprintf(name, MB_NAME_LEN, "%s", n);
  free(n);
  return 0;
}

const mb_backend_ops_t mb_backend_libxl_ops = {
    .open = lx_open,
    .close = lx_close,
    .host = lx_host,
    .list = lx_list,
    .set_target = lx_set_target,
    .wait_event = lx_wait_event,
    .requests = lx_requests,
    .guest = lx_guest,
    .name = lx_name_one,
};
