/* The libxenstore connection shared by guestmem and the xenstore backends.
 * See xs_conn.h. */
#define _GNU_SOURCE
#include "xs_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

/* libxenstore takes its socket only from the environment; connections are
 * opened from two threads (read callback and watch thread), so setting the
 * variable and opening happen under one lock. */
static pthread_mutex_t mb_xs_env_lock = PTHREAD_MUTEX_INITIALIZER;

struct xs_handle *mb_xs_connect(const char *socket_path) {
  pthread_mutex_lock(&mb_xs_env_lock);
  /* Set only when different: other threads of the daemon may read the
   * environment, and rewriting it on every reconnect is what could race. */
  const char *cur = getenv("XENSTORED_PATH");
  if (socket_path != NULL && (cur == NULL || strcmp(cur, socket_path) != 0))
    setenv("XENSTORED_PATH", socket_path, 1);
  struct xs_handle *h = xs_open(0);
  int e = errno;
  pthread_mutex_unlock(&mb_xs_env_lock);
  errno = e;
  return h;
}

bool mb_xs_conn_gone(int e) {
  /* Answers xenstored gives about the request itself: the node is absent,
   * not ours, too large, over quota, the path or value is refused, the
   * store is out of memory or read-only. The connection is fine; retrying
   * later may succeed. Anything else means the socket is closed, reset or
   * in an unknown state (xenstored gone or restarted). The two lists
   * guestmem and the backends kept before were merged into this one. */
  switch (e) {
  case ENOENT:
  case EACCES:
  case EPERM:
  case E2BIG:
  case ENOSPC:
  case EEXIST:
  case EISDIR:
  case EINVAL:
  case ENOMEM:
  case EROFS:
    return false;
  default:
    return true;
  }
}

bool mb_xs_parse_u64(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0 || len > 20)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

int mb_xs_ensure(mb_xs_t *x, char *err, size_t errlen) {
  if (x->h != NULL)
    return 0;
  x->h = mb_xs_connect(x->socket_path);
  if (x->h == NULL) {
    int e = errno;
    snprintf(err, errlen, "cannot connect to xenstored at %s: %s",
             x->socket_path ? x->socket_path : "(default path)", strerror(e));
    errno = e;
    return -1;
  }
  x->watching = false;
  return 0;
}

int mb_xs_init(mb_xs_t *x, const char *socket_path, char *err, size_t errlen) {
  memset(x, 0, sizeof(*x));
  if (socket_path != NULL && socket_path[0] != '\0') {
    x->socket_path = strdup(socket_path);
    if (x->socket_path == NULL) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
  }
  return mb_xs_ensure(x, err, errlen);
}

void mb_xs_fini(mb_xs_t *x) {
  if (x->h != NULL)
    xs_close(x->h);
  x->h = NULL;
  free(x->socket_path);
  x->socket_path = NULL;
}

bool mb_xs_check_conn(mb_xs_t *x) {
  int e = errno;
  bool gone = mb_xs_conn_gone(e);
  if (gone && x->h != NULL) {
    xs_close(x->h);
    x->h = NULL;
    x->watching = false;
  }
  errno = e;
  return gone;
}

char *mb_xs_read(mb_xs_t *x, const char *path, size_t maxlen, size_t *len) {
  char err[160];
  *len = 0;
  if (mb_xs_ensure(x, err, sizeof(err)) != 0) {
    errno = ENOTCONN;
    return NULL;
  }
  unsigned n = 0;
  x->requests++;
  char *v = xs_read(x->h, XBT_NULL, path, &n); /* owned, freed below or
                                                   returned */
  if (v == NULL) {
    mb_xs_check_conn(x);
    return NULL;
  }
  *len = n;
  if (n > maxlen) {
    free(v);
    errno = E2BIG;
    return NULL;
  }
  return v;
}

char **mb_xs_dir(mb_xs_t *x, const char *path, unsigned *n) {
  char err[160];
  *n = 0;
  if (mb_xs_ensure(x, err, sizeof(err)) != 0) {
    errno = ENOTCONN;
    return NULL;
  }
  x->requests++;
  char **v = xs_directory(x->h, XBT_NULL, path, n);
  if (v == NULL)
    mb_xs_check_conn(x);
  return v;
}

int mb_xs_write(mb_xs_t *x, const char *path, const char *value, char *err,
                size_t errlen) {
  if (mb_xs_ensure(x, err, errlen) != 0)
    return -1;
  x->requests++;
  if (!xs_write(x->h, XBT_NULL, path, value, (unsigned)strlen(value))) {
    int e = errno;
    mb_xs_check_conn(x);
    snprintf(err, errlen, "xenstore write of %s failed: %s", path, strerror(e));
    return -1;
  }
  return 0;
}
