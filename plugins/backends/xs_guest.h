/*
 * libxenstore connection shared by the backends that speak xenstore (sim,
 * libxl): reconnects after xenstored restarts, counts requests, reads guest
 * records (untrusted, bounded) and waits for record changes on a watch.
 *
 * Private to backend_*.c; the plugins never include it.
 */
#ifndef MEMBAL_XS_GUEST_H
#define MEMBAL_XS_GUEST_H

#include "backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_handle;

typedef struct {
  struct xs_handle *h; /* owned; NULL while disconnected */
  char *socket_path;   /* owned; NULL = libxenstore's default */
  uint64_t requests;   /* xenstore calls made (reads, listings, writes) */
  bool watching;       /* the guest-record watch is registered on h */
} mb_xs_t;

/* Records and host/domain nodes are small; anything longer is refused
 * before it is parsed. */
#define MB_XS_NODE_MAX 4096

/* Initialises *x and connects. socket_path NULL: env XENSTORED_PATH or the
 * default. 0, or -1 with err (x stays usable: the next call retries). */
int mb_xs_init(mb_xs_t *x, const char *socket_path, char *err, size_t errlen);
void mb_xs_fini(mb_xs_t *x);

/* Connects when disconnected. 0 or -1 (+err). */
int mb_xs_ensure(mb_xs_t *x, char *err, size_t errlen);

/* Called after a failed request: drops the connection when errno says it is
 * gone (xenstored restarted), so that the next call reconnects. Returns true
 * when it did. errno is preserved. */
bool mb_xs_check_conn(mb_xs_t *x);

/* Reads a node. Returns malloc'd NUL-terminated text (caller frees) and its
 * length, or NULL with errno (ENOENT: absent; E2BIG: longer than maxlen;
 * others: connection trouble, already handled by mb_xs_check_conn). */
char *mb_xs_read(mb_xs_t *x, const char *path, size_t maxlen, size_t *len);

/* Lists a directory: malloc'd array (one free()), or NULL with errno. */
char **mb_xs_dir(mb_xs_t *x, const char *path, unsigned *n);

int mb_xs_write(mb_xs_t *x, const char *path, const char *value, char *err,
                size_t errlen);

/* Reads domain domid's guest record (data/membal/stats, else
 * data/meminfo_total + data/meminfo_free) into d->sample_status, d->sample
 * and d->sample_err. When raw is not NULL it receives the record text
 * (NUL-terminated, truncated to rawlen - 1). Returns 0, or -1 when
 * xenstore itself failed (d->sample_status is then MB_SAMPLE_NONE). */
int mb_xs_guest_read(mb_xs_t *x, uint32_t domid, mb_dominfo_t *d, char *raw,
                     size_t rawlen, char *err, size_t errlen);

/* Blocks up to timeout_ms for a change of any guest record below
 * /local/domain. 1 (+*domid), 0 on timeout, -1 on error (+err; the
 * connection is dropped and re-established by the next call). */
int mb_xs_wait_guest(mb_xs_t *x, int timeout_ms, uint32_t *domid, char *err,
                     size_t errlen);

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
bool mb_xs_parse_u64(const char *s, size_t len, uint64_t *out);

#endif
