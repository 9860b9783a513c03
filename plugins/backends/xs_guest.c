/* libxenstore connection and guest-record reader shared by the xenstore
 * backends. See xs_guest.h. */
#define _GNU_SOURCE
#include "xs_guest.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

#define MB_XS_WATCH_TOKEN "membal-guest"
#define MB_XS_WATCH_ROOT "/local/domain"

/* libxenstore takes its socket only from the environment; connections are
 * opened from two threads (read callback and watch thread), so setting the
 * variable and opening happen under one lock. */
static pthread_mutex_t mb_xs_env_lock = PTHREAD_MUTEX_INITIALIZER;

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
  pthread_mutex_lock(&mb_xs_env_lock);
  /* Set only when different: other threads of the daemon may read the
   * environment, and rewriting it on every reconnect is what could race. */
  const char *cur = getenv("XENSTORED_PATH");
  if (x->socket_path != NULL &&
      (cur == NULL || strcmp(cur, x->socket_path) != 0))
    setenv("XENSTORED_PATH", x->socket_path, 1);
  x->h = xs_open(0);
  int e = errno;
  pthread_mutex_unlock(&mb_xs_env_lock);
  if (x->h == NULL) {
    snprintf(err, errlen, "cannot connect to xenstored at %s: %s",
             x->socket_path ? x->socket_path : "(default path)", strerror(e));
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
  /* These come from xenstored about the node itself; everything else means
   * the socket is closed or in an unknown state. */
  bool node_error = e == ENOENT || e == EACCES || e == EPERM || e == E2BIG ||
                    e == ENOSPC || e == EEXIST || e == EISDIR;
  if (!node_error && x->h != NULL) {
    xs_close(x->h);
    x->h = NULL;
    x->watching = false;
  }
  errno = e;
  return !node_error;
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

/* Reads one of the XenServer keys. 1 with *v, 0 when absent, -1 when
 * present but unusable (why in d->sample_err), -2 on xenstore failure. */
static int mb_xs_read_kib(mb_xs_t *x, uint32_t domid, const char *key,
                          uint64_t *v, mb_dominfo_t *d) {
  char path[96];
  size_t len = 0;
  snprintf(path, sizeof(path), "/local/domain/%u/data/%s", domid, key);
  char *text = mb_xs_read(x, path, 20, &len); /* owned */
  if (text == NULL) {
    if (errno == ENOENT || errno == EACCES)
      return 0;
    if (errno == E2BIG) {
      snprintf(d->sample_err, sizeof(d->sample_err),
               "data/%s is %zu bytes, not a KiB figure", key, len);
      return -1;
    }
    return -2;
  }
  int rc = 1;
  if (!mb_xs_parse_u64(text, len, v)) {
    snprintf(d->sample_err, sizeof(d->sample_err),
             "data/%s is not an unsigned decimal number", key);
    rc = -1;
  }
  free(text);
  return rc;
}

static int mb_xs_guest_fallback(mb_xs_t *x, uint32_t domid, mb_dominfo_t *d,
                                char *err, size_t errlen) {
  uint64_t total = 0, free_kib = 0;
  int rt = mb_xs_read_kib(x, domid, "meminfo_total", &total, d);
  if (rt == -2)
    goto conn;
  if (rt == -1) {
    d->sample_status = MB_SAMPLE_BAD;
    return 0;
  }
  int rf = mb_xs_read_kib(x, domid, "meminfo_free", &free_kib, d);
  if (rf == -2)
    goto conn;
  if (rf == -1) {
    d->sample_status = MB_SAMPLE_BAD;
    return 0;
  }
  if (rt == 0 && rf == 0)
    return 0; /* never published anything */
  if (rt == 0 || rf == 0) {
    d->sample_status = MB_SAMPLE_BAD;
    snprintf(d->sample_err, sizeof(d->sample_err),
             "data/%s present but data/%s missing",
             rt ? "meminfo_total" : "meminfo_free",
             rt ? "meminfo_free" : "meminfo_total");
    return 0;
  }
  if (free_kib > total) {
    d->sample_status = MB_SAMPLE_BAD;
    snprintf(d->sample_err, sizeof(d->sample_err),
             "data/meminfo_free %llu > data/meminfo_total %llu",
             (unsigned long long)free_kib, (unsigned long long)total);
    return 0;
  }
  d->sample.v[MB_F_MEMTOTAL] = total;
  d->sample.v[MB_F_MEMFREE] = free_kib;
  d->sample.have = (1ull << MB_F_MEMTOTAL) | (1ull << MB_F_MEMFREE);
  d->sample_status = MB_SAMPLE_OK;
  return 0;

conn:
  snprintf(err, errlen, "xenstore read of domain %u's record failed: %s", domid,
           strerror(errno));
  return -1;
}

int mb_xs_guest_read(mb_xs_t *x, uint32_t domid, mb_dominfo_t *d, char *raw,
                     size_t rawlen, char *err, size_t errlen) {
  char path[96];
  size_t len = 0;
  d->sample_status = MB_SAMPLE_NONE;
  memset(&d->sample, 0, sizeof(d->sample));
  d->sample_err[0] = '\0';
  if (raw != NULL && rawlen > 0)
    raw[0] = '\0';

  snprintf(path, sizeof(path), "/local/domain/%u/data/membal/stats", domid);
  char *text = mb_xs_read(x, path, MB_RECORD_MAX - 1, &len); /* owned */
  if (text != NULL) {
    if (raw != NULL && rawlen > 0) {
      size_t n = len < rawlen - 1 ? len : rawlen - 1;
      memcpy(raw, text, n);
      raw[n] = '\0';
    }
    if (mb_record_parse(text, len, &d->sample, d->sample_err,
                        sizeof(d->sample_err)) == 0) {
      d->sample_status = MB_SAMPLE_OK;
    } else {
      d->sample_status = MB_SAMPLE_BAD;
      memset(&d->sample, 0, sizeof(d->sample));
      if (d->sample_err[0] == '\0')
        snprintf(d->sample_err, sizeof(d->sample_err), "malformed record");
    }
    free(text);
    return 0;
  }
  if (errno == E2BIG) {
    d->sample_status = MB_SAMPLE_BAD;
    snprintf(d->sample_err, sizeof(d->sample_err),
             "data/membal/stats is %zu bytes, over the %d-byte limit", len,
             MB_RECORD_MAX - 1);
    return 0;
  }
  if (errno != ENOENT && errno != EACCES) {
    snprintf(err, errlen, "xenstore read of %s failed: %s", path,
             strerror(errno));
    return -1;
  }
  return mb_xs_guest_fallback(x, domid, d, err, errlen);
}

/* "/local/domain/<id>/data/membal/stats" and the XenServer keys. */
static bool mb_xs_guest_path(const char *path, uint32_t *domid) {
  static const char prefix[] = MB_XS_WATCH_ROOT "/";
  static const char *const suffixes[] = {
      "/data/membal/stats", "/data/meminfo_total", "/data/meminfo_free"};
  if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
    return false;
  const char *p = path + sizeof(prefix) - 1;
  size_t digits = strspn(p, "0123456789");
  uint64_t id = 0;
  if (digits == 0 || digits > 5 || !mb_xs_parse_u64(p, digits, &id) ||
      id > 0x7fef)
    return false;
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    if (strcmp(p + digits, suffixes[i]) == 0) {
      *domid = (uint32_t)id;
      return true;
    }
  }
  return false;
}

static int64_t mb_xs_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mb_xs_wait_guest(mb_xs_t *x, int timeout_ms, uint32_t *domid, char *err,
                     size_t errlen) {
  if (mb_xs_ensure(x, err, errlen) != 0)
    return -1;
  if (!x->watching) {
    x->requests++;
    if (!xs_watch(x->h, MB_XS_WATCH_ROOT, MB_XS_WATCH_TOKEN)) {
      int e = errno;
      xs_close(x->h);
      x->h = NULL;
      snprintf(err, errlen, "xenstore watch on %s failed: %s", MB_XS_WATCH_ROOT,
               strerror(e));
      return -1;
    }
    x->watching = true;
  }
  int fd = xs_fileno(x->h);
  if (fd < 0) {
    snprintf(err, errlen, "xenstore watch pipe: %s", strerror(errno));
    return -1;
  }
  int64_t deadline = mb_xs_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    char **ev; /* owned, one allocation */
    while ((ev = xs_check_watch(x->h)) != NULL) {
      uint32_t id = 0;
      bool match = mb_xs_guest_path(ev[XS_WATCH_PATH], &id);
      free(ev);
      if (match) {
        *domid = id;
        return 1;
      }
    }
    if (errno != EAGAIN) {
      /* libxenstore's reader thread saw the socket close. */
      int e = errno;
      xs_close(x->h);
      x->h = NULL;
      x->watching = false;
      snprintf(err, errlen,
               "xenstore connection lost (xenstored gone or restarted: %s)",
               strerror(e));
      return -1;
    }
    int64_t left = deadline - mb_xs_now_ms();
    if (left <= 0)
      return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno != EINTR) {
      snprintf(err, errlen, "poll on xenstore watch: %s", strerror(errno));
      return -1;
    }
  }
}
