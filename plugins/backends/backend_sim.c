/*
 * "sim" backend: a simulated hypervisor whose whole state lives in a real
 * xenstored (plugins/SCHEMA.md section 4). The simulator (sim/), the tests
 * and the demo write /tool/membal-sim/...; guests' records are read from
 * /local/domain/<id>/data exactly as on Xen.
 *
 * Cost of one mb_backend_list() round: one listing of /tool/membal-sim/dom,
 * then per domain one read of its dom node and one read of its guest record
 * (plus two when only the XenServer keys exist, plus one when the dom node
 * lacks target_kib). No transactions: every node is read once and parsed
 * on its own, so a simulator writing between two reads costs at most one
 * round of slightly mixed figures, never an error.
 */
#include "backend_impl.h"
#include "sim_schema.h"
#include "xs_guest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names here start with bsim_ (backend sim): the simulator (sim/) that
 * writes this schema has the sim_ prefix. */
#define BSIM_ROOT MB_SIM_ROOT
#define BSIM_MAX_DOMID 0x7fefu /* DOMID_FIRST_RESERVED - 1 */

typedef struct {
  mb_xs_t xs;      /* list, host, set_target */
  mb_xs_t wxs;     /* watch connection, opened by the first wait */
  bool wxs_ready;  /* wxs initialised (connected or retrying) */
  bool no_records; /* list leaves guest records unread */
  void (*log)(void *ctx, int level, const char *msg);
  void *log_ctx;
  /* Domains skipped in the previous round: a skip is logged when it starts,
   * not every round. */
  uint8_t skipped[(BSIM_MAX_DOMID + 8) / 8];
  uint8_t skipped_now[(BSIM_MAX_DOMID + 8) / 8];
  bool bad_entry_logged; /* a non-numeric entry below dom/ was reported */
} bsim_t;

static void bsim_log(bsim_t *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bsim_log(bsim_t *s, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mb_backend_vlogf(s->log, s->log_ctx, level, fmt, ap);
  va_end(ap);
}

static void bsim_skip(bsim_t *s, uint32_t domid, const char *why) {
  s->skipped_now[domid / 8] |= (uint8_t)(1u << (domid % 8));
  if (!(s->skipped[domid / 8] & (1u << (domid % 8))))
    bsim_log(s, 4 /* LOG_WARNING */, "sim: domain %u skipped: %s", domid, why);
}

/* Iterates "key value\n" lines. Returns 1 with key/value spans, 0 at the
 * end, -1 on a malformed line (no blank, empty key or value). */
static int bsim_next_kv(const char **pos, const char *end, const char **key,
                        size_t *keylen, const char **val, size_t *vallen) {
  const char *p = *pos;
  while (p < end && *p == '\n')
    p++;
  if (p >= end)
    return 0;
  const char *eol = memchr(p, '\n', (size_t)(end - p));
  if (eol == NULL)
    eol = end;
  *pos = eol;
  const char *sp = memchr(p, ' ', (size_t)(eol - p));
  if (sp == NULL || sp == p || sp + 1 >= eol)
    return -1;
  *key = p;
  *keylen = (size_t)(sp - p);
  *val = sp + 1;
  *vallen = (size_t)(eol - sp - 1);
  return 1;
}

static bool bsim_key_is(const char *k, size_t kl, const char *want) {
  return strlen(want) == kl && memcmp(k, want, kl) == 0;
}

static int bsim_parse_host(const char *text, size_t len, mb_hostinfo_t *h,
                           char *err, size_t errlen) {
  const char *pos = text, *end = text + len, *k, *v;
  size_t kl, vl;
  bool have_total = false, have_free = false;
  uint64_t nodes = 0;
  int r;
  while ((r = bsim_next_kv(&pos, end, &k, &kl, &v, &vl)) == 1) {
    uint64_t num = 0;
    if (!mb_xs_parse_u64(v, vl, &num)) {
      snprintf(err, errlen, "%s/host: value of %.*s is not a number", BSIM_ROOT,
               (int)(kl > 40 ? 40 : kl), k);
      return -1;
    }
    unsigned idx = 0;
    char tail[16] = "";
    if (bsim_key_is(k, kl, "total_kib")) {
      h->total_kib = num;
      have_total = true;
    } else if (bsim_key_is(k, kl, "free_kib")) {
      h->free_kib = num;
      have_free = true;
    } else if (bsim_key_is(k, kl, "nodes")) {
      nodes = num;
    } else if (kl > 4 && kl < 32 && memcmp(k, "node", 4) == 0) {
      char key[32];
      memcpy(key, k, kl);
      key[kl] = '\0';
      int used = 0;
      if (sscanf(key, "node%u_%15[a-z_]%n", &idx, tail, &used) != 2 ||
          (size_t)used != kl || idx >= MB_MAX_NODES)
        continue; /* a key of a later schema: ignored */
      if (strcmp(tail, "total_kib") == 0)
        h->node_total_kib[idx] = num;
      else if (strcmp(tail, "free_kib") == 0)
        h->node_free_kib[idx] = num;
    }
  }
  if (r < 0) {
    snprintf(err, errlen, "%s/host: malformed line (want \"key value\")",
             BSIM_ROOT);
    return -1;
  }
  if (!have_total || !have_free) {
    snprintf(err, errlen, "%s/host: total_kib and free_kib are mandatory",
             BSIM_ROOT);
    return -1;
  }
  if (h->free_kib > h->total_kib) {
    snprintf(err, errlen, "%s/host: free_kib > total_kib", BSIM_ROOT);
    return -1;
  }
  if (nodes > MB_MAX_NODES) {
    snprintf(err, errlen, "%s/host: nodes %llu > %d", BSIM_ROOT,
             (unsigned long long)nodes, MB_MAX_NODES);
    return -1;
  }
  h->nr_nodes = (unsigned)nodes;
  return 0;
}

/* Parses a dom node into d (name, memory, node mask). *have_target tells
 * whether target_kib was there. NULL on success, else why not. */
static const char *bsim_parse_dom(const char *text, size_t len, mb_dominfo_t *d,
                                  bool *have_target, char *why, size_t whylen) {
  const char *pos = text, *end = text + len, *k, *v;
  size_t kl, vl;
  bool have_name = false, have_cur = false, have_max = false;
  int r;
  *have_target = false;
  while ((r = bsim_next_kv(&pos, end, &k, &kl, &v, &vl)) == 1) {
    if (bsim_key_is(k, kl, "name")) {
      const char *p = mb_backend_name_problem(v, vl);
      if (p != NULL) {
        snprintf(why, whylen, "invalid name: %s", p);
        return why;
      }
      memcpy(d->name, v, vl);
      d->name[vl] = '\0';
      have_name = true;
      continue;
    }
    uint64_t num = 0;
    bool known = true;
    uint64_t *dst = NULL;
    if (bsim_key_is(k, kl, "current_kib")) {
      dst = &d->current_kib;
      have_cur = true;
    } else if (bsim_key_is(k, kl, "max_kib")) {
      dst = &d->max_kib;
      have_max = true;
    } else if (bsim_key_is(k, kl, "target_kib")) {
      dst = &d->target_kib;
      *have_target = true;
    } else if (bsim_key_is(k, kl, "node_mask")) {
      dst = &num;
    } else {
      known = false; /* a key of a later schema */
    }
    if (!known)
      continue;
    if (!mb_xs_parse_u64(v, vl, dst)) {
      snprintf(why, whylen, "value of %.*s is not a number",
               (int)(kl > 40 ? 40 : kl), k);
      return why;
    }
    if (dst == &num) {
      if (num > UINT32_MAX) {
        snprintf(why, whylen, "node_mask out of range");
        return why;
      }
      d->node_mask = (uint32_t)num;
    }
  }
  if (r < 0)
    return "malformed line (want \"key value\")";
  if (!have_name || !have_cur || !have_max)
    return "name, current_kib and max_kib are mandatory";
  return NULL;
}

static void *bsim_open(const mb_backend_opts_t *opts, char *err,
                       size_t errlen) {
  bsim_t *s = calloc(1, sizeof(*s)); /* owned by the caller via close */
  if (s == NULL) {
    snprintf(err, errlen, "sim: out of memory");
    return NULL;
  }
  s->log = opts->log;
  s->log_ctx = opts->log_ctx;
  s->no_records = opts->no_records;
  if (mb_xs_init(&s->xs, opts->xenstore_path, err, errlen) != 0) {
    mb_xs_fini(&s->xs);
    free(s);
    return NULL;
  }
  return s;
}

static void bsim_close(void *priv) {
  bsim_t *s = priv;
  if (s == NULL)
    return;
  mb_xs_fini(&s->xs);
  if (s->wxs_ready)
    mb_xs_fini(&s->wxs);
  free(s);
}

/* Reads a node that must exist; one retry when the first attempt found the
 * connection dead (xenstored restarted since the last round). */
static char *bsim_read_required(bsim_t *s, const char *path, size_t *len,
                                char *err, size_t errlen) {
  for (int attempt = 0; attempt < 2; attempt++) {
    char *v = mb_xs_read(&s->xs, path, MB_XS_NODE_MAX, len);
    if (v != NULL)
      return v;
    if (errno == ENOENT) {
      snprintf(err, errlen, "sim: %s missing (no simulated hypervisor?)", path);
      return NULL;
    }
    if (errno == E2BIG) {
      snprintf(err, errlen, "sim: %s longer than %d bytes", path,
               MB_XS_NODE_MAX);
      return NULL;
    }
    snprintf(err, errlen, "sim: reading %s: %s", path, strerror(errno));
  }
  return NULL;
}

static int bsim_host(void *priv, mb_hostinfo_t *out, char *err, size_t errlen) {
  bsim_t *s = priv;
  size_t len = 0;
  char *text = bsim_read_required(s, BSIM_ROOT "/host", &len, err, errlen);
  if (text == NULL)
    return -1;
  int rc = bsim_parse_host(text, len, out, err, errlen);
  free(text);
  return rc;
}

static int bsim_cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Fills d from the dom node of domid. 1 filled, 0 skipped (vanished or
 * invalid: logged), -1 xenstore failure (+err). */
static int bsim_read_dom(bsim_t *s, uint32_t domid, mb_dominfo_t *d, char *err,
                         size_t errlen) {
  char path[64], why[160];
  size_t len = 0;
  memset(d, 0, sizeof(*d));
  d->domid = domid;
  snprintf(path, sizeof(path), BSIM_ROOT "/dom/%u", domid);
  char *text = mb_xs_read(&s->xs, path, MB_XS_NODE_MAX, &len); /* owned */
  if (text == NULL) {
    if (errno == ENOENT)
      return 0; /* destroyed since the listing: normal */
    if (errno == E2BIG) {
      bsim_skip(s, domid, "dom node too long");
      return 0;
    }
    snprintf(err, errlen, "sim: reading %s: %s", path, strerror(errno));
    return -1;
  }
  bool have_target = false;
  const char *bad =
      bsim_parse_dom(text, len, d, &have_target, why, sizeof(why));
  free(text);
  if (bad != NULL) {
    bsim_skip(s, domid, bad);
    return 0;
  }
  if (!have_target && domid == 0) {
    d->target_kib = d->current_kib; /* dom0 is never ballooned by us */
  } else if (!have_target) {
    /* Where the simulator does not mirror the target into the dom node,
     * the balloon target is where set_target put it. */
    snprintf(path, sizeof(path), "/local/domain/%u/memory/target", domid);
    char *t = mb_xs_read(&s->xs, path, 20, &len); /* owned */
    if (t == NULL || !mb_xs_parse_u64(t, len, &d->target_kib))
      d->target_kib = d->current_kib;
    free(t);
  }
  return 1;
}

static int bsim_list(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                     size_t errlen) {
  bsim_t *s = priv;
  unsigned nent = 0;
  char **ents = NULL; /* owned, one allocation */
  uint32_t *ids = NULL;
  mb_dominfo_t *doms = NULL;
  int rc = -1;

  for (int attempt = 0; attempt < 2 && ents == NULL; attempt++) {
    ents = mb_xs_dir(&s->xs, BSIM_ROOT "/dom", &nent);
    if (ents == NULL && errno == ENOENT) {
      snprintf(err, errlen, "sim: %s/dom missing (no simulated hypervisor?)",
               BSIM_ROOT);
      goto out;
    }
  }
  if (ents == NULL) {
    snprintf(err, errlen, "sim: listing %s/dom: %s", BSIM_ROOT,
             strerror(errno));
    goto out;
  }
  ids = calloc(nent ? nent : 1, sizeof(*ids));
  doms = calloc(nent ? nent : 1, sizeof(*doms));
  if (ids == NULL || doms == NULL) {
    snprintf(err, errlen, "sim: out of memory");
    goto out;
  }
  size_t nid = 0;
  for (unsigned i = 0; i < nent; i++) {
    uint64_t id = 0;
    if (!mb_xs_parse_u64(ents[i], strlen(ents[i]), &id) ||
        id > BSIM_MAX_DOMID) {
      if (!s->bad_entry_logged)
        bsim_log(s, 4,
                 "sim: %s/dom has an entry that is not a domid; "
                 "ignored",
                 BSIM_ROOT);
      s->bad_entry_logged = true;
      continue;
    }
    ids[nid++] = (uint32_t)id;
  }
  qsort(ids, nid, sizeof(*ids), bsim_cmp_u32);

  memset(s->skipped_now, 0, sizeof(s->skipped_now));
  size_t nd = 0;
  for (size_t i = 0; i < nid; i++) {
    mb_dominfo_t *d = &doms[nd];
    int r = bsim_read_dom(s, ids[i], d, err, errlen);
    if (r < 0)
      goto out;
    if (r == 0)
      continue;
    /* dom0 is host overhead: its record, if any, is not wanted. */
    if (d->domid != 0 && !s->no_records &&
        mb_xs_guest_read(&s->xs, d->domid, d, NULL, 0, err, errlen) != 0)
      goto out;
    nd++;
  }
  memcpy(s->skipped, s->skipped_now, sizeof(s->skipped));
  *out = doms;
  *n = nd;
  doms = NULL;
  rc = 0;

out:
  free(ents);
  free(ids);
  free(doms);
  return rc;
}

static int bsim_set_target(void *priv, uint32_t domid, uint64_t target_kib,
                           char *err, size_t errlen) {
  bsim_t *s = priv;
  char path[64], val[24];
  if (domid == 0 || domid > BSIM_MAX_DOMID) {
    snprintf(err, errlen, "sim: refusing to set the target of domain %u",
             domid);
    return -1;
  }
  snprintf(path, sizeof(path), "/local/domain/%u/memory/target", domid);
  snprintf(val, sizeof(val), "%llu", (unsigned long long)target_kib);
  return mb_xs_write(&s->xs, path, val, err, errlen);
}

static int bsim_wait_event(void *priv, int timeout_ms, uint32_t *domid,
                           char *err, size_t errlen) {
  bsim_t *s = priv;
  if (!s->wxs_ready) {
    /* A failed first connect leaves wxs retrying on the next wait. */
    mb_xs_init(&s->wxs, s->xs.socket_path, err, errlen);
    s->wxs_ready = true;
  }
  return mb_xs_wait_guest(&s->wxs, timeout_ms, domid, err, errlen);
}

static uint64_t bsim_requests(const void *priv) {
  const bsim_t *s = priv;
  return s->xs.requests + (s->wxs_ready ? s->wxs.requests : 0);
}

/* The waiting thread's calls (guest, name) use the watch connection, never
 * the one the read callback may be using. */
static mb_xs_t *bsim_wxs(bsim_t *s, char *err, size_t errlen) {
  if (!s->wxs_ready) {
    mb_xs_init(&s->wxs, s->xs.socket_path, err, errlen);
    s->wxs_ready = true;
  }
  return &s->wxs;
}

static int bsim_guest(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
                      size_t rawlen, char *err, size_t errlen) {
  bsim_t *s = priv;
  out->domid = domid;
  return mb_xs_guest_read(bsim_wxs(s, err, errlen), domid, out, raw, rawlen,
                          err, errlen);
}

static int bsim_name(void *priv, uint32_t domid, char *name, char *err,
                     size_t errlen) {
  bsim_t *s = priv;
  char path[64], why[160];
  size_t len = 0;
  mb_dominfo_t d;
  memset(&d, 0, sizeof(d));
  snprintf(path, sizeof(path), BSIM_ROOT "/dom/%u", domid);
  char *text = mb_xs_read(bsim_wxs(s, err, errlen), path, MB_XS_NODE_MAX,
                          &len); /* owned */
  if (text == NULL) {
    snprintf(err, errlen, "sim: reading %s: %s", path, strerror(errno));
    return -1;
  }
  bool have_target = false;
  const char *bad =
      bsim_parse_dom(text, len, &d, &have_target, why, sizeof(why));
  free(text);
  if (bad != NULL) {
    snprintf(err, errlen, "sim: domain %u: %s", domid, bad);
    return -1;
  }
  memcpy(name, d.name, MB_NAME_LEN);
  return 0;
}

const mb_backend_ops_t mb_backend_sim_ops = {
    .open = bsim_open,
    .close = bsim_close,
    .host = bsim_host,
    .list = bsim_list,
    .set_target = bsim_set_target,
    .wait_event = bsim_wait_event,
    .requests = bsim_requests,
    .guest = bsim_guest,
    .name = bsim_name,
};
