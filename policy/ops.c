/* membal's operator requests (see ops.h). */
#include "ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mb_ops_init(mb_ops_t *ops) {
  memset(ops, 0, sizeof(*ops));
  ops->next_id = 1;
}

bool mb_op_changes(mb_op_kind_t kind) {
  return kind == MB_OP_HOLD || kind == MB_OP_RELEASE || kind == MB_OP_RESERVE ||
         kind == MB_OP_CANCEL;
}

/* A domain name as the operator typed it: printable, no blanks. */
static bool ops_name_ok(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len >= MB_NAME_LEN)
    return false;
  for (const char *p = s; *p; p++)
    if (*p <= ' ' || *p > '~')
      return false;
  return true;
}

/* A whole decimal number in [lo, hi]. */
static bool ops_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
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

static int ops_name(const char *s, char *out, char *err, size_t errlen) {
  if (!ops_name_ok(s)) {
    snprintf(err, errlen, "\"%s\" is not a domain name", s);
    return -1;
  }
  snprintf(out, MB_NAME_LEN, "%s", s);
  return 0;
}

int mb_op_parse(const char *line, mb_op_t *op, char *err, size_t errlen) {
  /* Up to five words; a sixth is one too many for every request. */
  char buf[1024];
  char *w[6] = {NULL};
  size_t nw = 0;
  memset(op, 0, sizeof(*op));
  if (strlen(line) >= sizeof(buf)) {
    snprintf(err, errlen, "request longer than %zu bytes", sizeof(buf) - 1);
    return -1;
  }
  strcpy(buf, line);
  for (char *p = buf; *p != 0 && nw < 6;) {
    while (*p == ' ' || *p == '\t')
      *p++ = 0;
    if (*p == 0)
      break;
    w[nw++] = p;
    while (*p != 0 && *p != ' ' && *p != '\t')
      p++;
  }
  if (nw == 0) {
    snprintf(err, errlen, "empty request");
    return -1;
  }
  const char *cmd = w[0];
  if (strcmp(cmd, "status") == 0 && nw <= 2 &&
      (nw == 1 || strcmp(w[1], "json") == 0)) {
    op->kind = nw == 1 ? MB_OP_STATUS : MB_OP_STATUS_JSON;
    return 0;
  }
  if (strcmp(cmd, "free") == 0 && nw == 1) {
    op->kind = MB_OP_FREE;
    return 0;
  }
  if (strcmp(cmd, "hold") == 0 && (nw == 2 || nw == 3)) {
    op->kind = MB_OP_HOLD;
    if (ops_name(w[1], op->name, err, errlen) != 0)
      return -1;
    if (nw == 3 && !ops_u64(w[2], 1, MB_OPS_HOLD_MAX_S, &op->secs)) {
      snprintf(err, errlen, "duration \"%s\": whole seconds, 1 to a year",
               w[2]);
      return -1;
    }
    return 0;
  }
  if (strcmp(cmd, "release") == 0 && nw == 2) {
    op->kind = MB_OP_RELEASE;
    return ops_name(w[1], op->name, err, errlen);
  }
  if (strcmp(cmd, "reserve") == 0 && nw == 4) {
    op->kind = MB_OP_RESERVE;
    if (!ops_u64(w[1], 1, MB_KIB_MAX, &op->kib)) {
      snprintf(err, errlen, "size \"%s\": KiB, at least 1", w[1]);
      return -1;
    }
    if (strcmp(w[2], "-") != 0 && ops_name(w[2], op->name, err, errlen) != 0)
      return -1;
    if (!ops_u64(w[3], 1, MB_OPS_RESV_MAX_S, &op->secs)) {
      snprintf(err, errlen, "timeout \"%s\": whole seconds, 1 to %d", w[3],
               MB_OPS_RESV_MAX_S);
      return -1;
    }
    return 0;
  }
  if (strcmp(cmd, "cancel") == 0 && nw == 2) {
    op->kind = MB_OP_CANCEL;
    if (!ops_u64(w[1], 1, UINT64_MAX, &op->id)) {
      snprintf(err, errlen, "no reservation %s", w[1]);
      return -1;
    }
    return 0;
  }
  snprintf(err, errlen,
           "unknown request \"%s\" (status [json], free, hold NAME "
           "[SECONDS], release NAME, reserve KIB NAME|- TIMEOUT_S, cancel ID)",
           cmd);
  return -1;
}

static mb_hold_t *ops_hold_find(const mb_ops_t *ops, const char *name) {
  for (size_t i = 0; i < ops->nholds; i++)
    if (strcmp(ops->holds[i].name, name) == 0)
      return (mb_hold_t *)&ops->holds[i];
  return NULL;
}

int mb_ops_hold(mb_ops_t *ops, const char *name, uint64_t secs, double now_s,
                char *err, size_t errlen) {
  mb_hold_t *h = ops_hold_find(ops, name);
  if (h == NULL) {
    if (ops->nholds >= MB_OPS_MAX_HOLDS) {
      snprintf(err, errlen, "%d holds already", MB_OPS_MAX_HOLDS);
      return -1;
    }
    h = &ops->holds[ops->nholds++];
    snprintf(h->name, sizeof(h->name), "%s", name);
  }
  h->until_s = secs ? now_s + (double)secs : 0;
  return 0;
}

int mb_ops_release(mb_ops_t *ops, const char *name, char *err, size_t errlen) {
  mb_hold_t *h = ops_hold_find(ops, name);
  if (h == NULL) {
    snprintf(err, errlen, "%s is not held", name);
    return -1;
  }
  *h = ops->holds[--ops->nholds];
  return 0;
}

int mb_ops_reserve(mb_ops_t *ops, const char *name, uint64_t kib, uint64_t secs,
                   double now_s, uint64_t *id, char *err, size_t errlen) {
  if (ops->nresv >= MB_OPS_MAX_RESV) {
    snprintf(err, errlen, "%d reservations already", MB_OPS_MAX_RESV);
    return -1;
  }
  mb_resv_t *r = &ops->resv[ops->nresv++];
  r->id = *id = ops->next_id++;
  snprintf(r->name, sizeof(r->name), "%s", name);
  r->kib = kib;
  r->until_s = now_s + (double)secs;
  return 0;
}

int mb_ops_cancel(mb_ops_t *ops, uint64_t id, char *err, size_t errlen) {
  for (size_t i = 0; i < ops->nresv; i++) {
    if (ops->resv[i].id == id) {
      ops->resv[i] = ops->resv[--ops->nresv];
      return 0;
    }
  }
  snprintf(err, errlen, "no reservation %llu", (unsigned long long)id);
  return -1;
}

bool mb_ops_held(const mb_ops_t *ops, const char *name, double *until_s) {
  const mb_hold_t *h = ops_hold_find(ops, name);
  if (h != NULL && until_s != NULL)
    *until_s = h->until_s;
  return h != NULL;
}

uint64_t mb_ops_reserved_kib(const mb_ops_t *ops) {
  uint64_t sum = 0;
  for (size_t i = 0; i < ops->nresv; i++)
    sum += ops->resv[i].kib; /* each <= MB_KIB_MAX: no overflow */
  return sum;
}

uint64_t mb_ops_expire(mb_ops_t *ops, const mb_domain_t *doms, size_t n,
                       double now_s, mb_ops_event_t *ev, size_t evmax,
                       size_t *nev) {
  uint64_t pending = 0;
  *nev = 0;
  for (size_t i = 0; i < ops->nholds;) {
    if (ops->holds[i].until_s != 0 && ops->holds[i].until_s <= now_s) {
      ops->holds[i] = ops->holds[--ops->nholds];
      continue;
    }
    i++;
  }
  for (size_t i = 0; i < ops->nresv;) {
    const mb_resv_t *r = &ops->resv[i];
    /* The domain is listed while it is still being built (xl and libvirt
     * name it before they populate its memory): the reservation holds
     * until the domain holds what was reserved for it, give or take 1/64,
     * so that no round hands the room to other guests mid-build. */
    bool appeared = false;
    uint64_t held_kib = 0; /* what the named domain holds already */
    for (size_t j = 0; r->name[0] != 0 && j < n; j++) {
      if (strcmp(doms[j].name, r->name) != 0)
        continue;
      held_kib = doms[j].current_kib;
      appeared = doms[j].current_kib + r->kib / 64 >= r->kib;
      break;
    }
    if (appeared || r->until_s <= now_s) {
      if (*nev < evmax)
        ev[(*nev)++] = (mb_ops_event_t){.resv = *r, .met = appeared};
      ops->resv[i] = ops->resv[--ops->nresv];
      continue;
    }
    /* A domain being built is balanced like any other: what it holds
     * is in its target already, and counting it in the reservation too
     * would count it twice (the targets would have to fit a pool short
     * of it). */
    pending += r->kib > held_kib ? r->kib - held_kib : 0;
    i++;
  }
  return pending;
}
