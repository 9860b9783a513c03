/* Private to backend*.c: the table each backend implementation fills. */
#ifndef MEMBAL_BACKEND_IMPL_H
#define MEMBAL_BACKEND_IMPL_H

#include "backend.h"

#include <stdarg.h>

/* The name of each backend is in backend.c's table (mb_backend_kinds()). */
typedef struct {
  /* Returns the implementation's private state or NULL (+err). */
  void *(*open)(const mb_backend_opts_t *opts, char *err, size_t errlen);
  void (*close)(void *priv);
  int (*host)(void *priv, mb_hostinfo_t *out, char *err, size_t errlen);
  int (*list)(void *priv, mb_dominfo_t **out, size_t *n, char *err,
              size_t errlen);
  int (*set_target)(void *priv, uint32_t domid, uint64_t target_kib, char *err,
                    size_t errlen);
  int (*wait_event)(void *priv, int timeout_ms, uint32_t *domid, char *err,
                    size_t errlen);
  uint64_t (*requests)(const void *priv);
  /* Optional (NULL: mb_backend_guest() fails): see mb_backend_guest(). */
  int (*guest)(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
               size_t rawlen, char *err, size_t errlen);
  /* Optional (NULL: mb_backend_name() fails): see mb_backend_name(). */
  int (*name)(void *priv, uint32_t domid, char *name, char *err, size_t errlen);
} mb_backend_ops_t;

/* Domain names become collectd plugin instances and RRD file names: 1 to
 * MB_NAME_LEN - 1 printable ASCII characters, none of '/', '\\', '"' or a
 * blank. Returns NULL when valid, else why not. Every backend applies this
 * one rule. */
const char *mb_backend_name_problem(const char *name, size_t len);

/* Formats one line for the plugin's log callback (NULL log: dropped). */
void mb_backend_vlogf(void (*log)(void *ctx, int level, const char *msg),
                      void *ctx, int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#ifdef MEMBAL_HAVE_SIM
extern const mb_backend_ops_t mb_backend_sim_ops;
#endif
#ifdef MEMBAL_HAVE_LIBXL
extern const mb_backend_ops_t mb_backend_libxl_ops;
#endif
#ifdef MEMBAL_HAVE_LIBVIRT
extern const mb_backend_ops_t mb_backend_libvirt_ops;
#endif

#endif
