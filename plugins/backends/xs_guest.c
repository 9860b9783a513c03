/* Guest records and the watch on them, for the xenstore backends. See
 * xs_guest.h. */
#define _GNU_SOURCE
#include "xs_guest.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

#define MB_XS_WATCH_TOKEN "membal-guest"
#define MB_XS_WATCH_ROOT "/local/domain"

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
