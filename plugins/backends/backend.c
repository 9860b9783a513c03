/* Dispatches the backend interface to the implementation named in the
 * options. */
#include "backend_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mb_backend {
  const char *kind; /* mb_backends[].kind */
  const mb_backend_ops_t *ops;
  void *priv; /* owned; released by ops->close */
};

/* The one list of backend names: every backend membal knows, built into
 * this copy or not (ops NULL), in the order the documentation gives them.
 * Configuration checks (vmmem, membal) and their messages read it. */
static const struct {
  const char *kind;
  const mb_backend_ops_t *ops; /* NULL: not built */
} mb_backends[] = {
#ifdef MEMBAL_HAVE_LIBXL
    {"libxl", &mb_backend_libxl_ops},
#else
    {"libxl", NULL},
#endif
#ifdef MEMBAL_HAVE_SIM
    {"sim", &mb_backend_sim_ops},
#else
    {"sim", NULL},
#endif
#ifdef MEMBAL_HAVE_LIBVIRT
    {"libvirt", &mb_backend_libvirt_ops},
#else
    {"libvirt", NULL},
#endif
};
#define MB_NBACKENDS (sizeof(mb_backends) / sizeof(mb_backends[0]))

bool mb_backend_known(const char *kind) {
  for (size_t i = 0; kind != NULL && i < MB_NBACKENDS; i++)
    if (strcmp(mb_backends[i].kind, kind) == 0)
      return true;
  return false;
}

const char *mb_backend_kinds(char *buf, size_t buflen, bool quoted) {
  size_t off = 0;
  if (buflen > 0)
    buf[0] = '\0';
  for (size_t i = 0; i < MB_NBACKENDS; i++) {
    const char *sep = i == 0 ? "" : i + 1 == MB_NBACKENDS ? " or " : ", ";
    const char *q = quoted ? "\"" : "";
    int w = snprintf(buf + off, buflen - off, "%s%s%s%s", sep, q,
                     mb_backends[i].kind, q);
    if (w < 0 || (size_t)w >= buflen - off) {
      if (buflen > 0)
        buf[off] = '\0'; /* no half name */
      break;
    }
    off += (size_t)w;
  }
  return buf;
}

mb_backend_t *mb_backend_open(const mb_backend_opts_t *opts, char *err,
                              size_t errlen) {
  const char *kind = (opts && opts->kind) ? opts->kind : "";
  for (size_t i = 0; i < MB_NBACKENDS; i++) {
    if (mb_backends[i].ops == NULL || strcmp(mb_backends[i].kind, kind) != 0)
      continue;
    mb_backend_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
      snprintf(err, errlen, "backend %s: out of memory", kind);
      return NULL;
    }
    b->kind = mb_backends[i].kind;
    b->ops = mb_backends[i].ops;
    b->priv = b->ops->open(opts, err, errlen);
    if (b->priv == NULL) {
      free(b);
      return NULL;
    }
    return b;
  }
  snprintf(err, errlen, "unknown or not built backend \"%s\"", kind);
  return NULL;
}

void mb_backend_close(mb_backend_t *b) {
  if (b == NULL)
    return;
  b->ops->close(b->priv);
  free(b);
}

const char *mb_backend_kind(const mb_backend_t *b) { return b->kind; }

int mb_backend_host(mb_backend_t *b, mb_hostinfo_t *out, char *err,
                    size_t errlen) {
  memset(out, 0, sizeof(*out));
  return b->ops->host(b->priv, out, err, errlen);
}

int mb_backend_list(mb_backend_t *b, mb_dominfo_t **out, size_t *n, char *err,
                    size_t errlen) {
  *out = NULL;
  *n = 0;
  return b->ops->list(b->priv, out, n, err, errlen);
}

int mb_backend_set_target(mb_backend_t *b, uint32_t domid, uint64_t target_kib,
                          char *err, size_t errlen) {
  return b->ops->set_target(b->priv, domid, target_kib, err, errlen);
}

int mb_backend_wait_event(mb_backend_t *b, int timeout_ms, uint32_t *domid,
                          char *err, size_t errlen) {
  return b->ops->wait_event(b->priv, timeout_ms, domid, err, errlen);
}

uint64_t mb_backend_requests(const mb_backend_t *b) {
  return b->ops->requests ? b->ops->requests(b->priv) : 0;
}

int mb_backend_guest(mb_backend_t *b, uint32_t domid, mb_dominfo_t *out,
                     char *raw, size_t rawlen, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (raw != NULL && rawlen > 0)
    raw[0] = '\0';
  if (b->ops->guest == NULL) {
    snprintf(err, errlen, "backend %s does not read guest records", b->kind);
    return -1;
  }
  return b->ops->guest(b->priv, domid, out, raw, rawlen, err, errlen);
}

int mb_backend_name(mb_backend_t *b, uint32_t domid, char *name, char *err,
                    size_t errlen) {
  name[0] = '\0';
  if (b->ops->name == NULL) {
    snprintf(err, errlen, "backend %s cannot name single domains", b->kind);
    return -1;
  }
  return b->ops->name(b->priv, domid, name, err, errlen);
}

const char *mb_backend_name_problem(const char *name, size_t len) {
  if (name == NULL || len == 0)
    return "empty name";
  if (len > MB_NAME_LEN - 1)
    return "name longer than 63 characters";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= 0x20 || c >= 0x7f)
      return "name holds a blank, control or non-ASCII character";
    if (c == '/' || c == '\\' || c == '"')
      return "name holds '/', '\\' or '\"'";
  }
  return NULL;
}

void mb_backend_vlogf(void (*log)(void *ctx, int level, const char *msg),
                      void *ctx, int level, const char *fmt, va_list ap) {
  if (log == NULL)
    return;
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  log(ctx, level, msg);
}
