/*
 * The libxenstore connection helper shared by guestmem (plugins/guestmem.c)
 * and the xenstore backends (plugins/backends/): opens the connection on a
 * configured socket, classifies a failed request's errno (connection gone
 * or request refused), and for the backends keeps a connection that
 * reconnects after xenstored restarts, counts requests and reads, lists
 * and writes nodes.
 */
#ifndef MEMBAL_XS_CONN_H
#define MEMBAL_XS_CONN_H

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

/* Opens a connection to xenstored at socket_path (NULL: env XENSTORED_PATH
 * or libxenstore's default). libxenstore takes the socket only from the
 * environment, so the variable is set (when different) and the connection
 * opened under one lock: connections are opened from several threads.
 * NULL with errno on failure. Caller closes with xs_close(). */
struct xs_handle *mb_xs_connect(const char *socket_path);

/* The one classification of a failed request's errno: true when the
 * connection is gone (drop it, reconnect on the next call), false when
 * xenstored answered and refused this request (ENOENT, EACCES, EPERM,
 * E2BIG, ENOSPC, EEXIST, EISDIR, EINVAL, ENOMEM, EROFS: the connection
 * stays; the request may succeed later). */
bool mb_xs_conn_gone(int e);

/* Initialises *x and connects. socket_path NULL: env XENSTORED_PATH or the
 * default. 0, or -1 with err (x stays usable: the next call retries). */
int mb_xs_init(mb_xs_t *x, const char *socket_path, char *err, size_t errlen);
void mb_xs_fini(mb_xs_t *x);

/* Connects when disconnected. 0 or -1 (+err). */
int mb_xs_ensure(mb_xs_t *x, char *err, size_t errlen);

/* Called after a failed request: drops the connection when errno says it is
 * gone (mb_xs_conn_gone), so that the next call reconnects. Returns true
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

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
bool mb_xs_parse_u64(const char *s, size_t len, uint64_t *out);

#endif
