/*
 * guestmem: collectd plugin that runs inside a guest.
 *
 * Every interval it reads /proc/meminfo and /proc/vmstat, parses them with
 * the policy parser and publishes one record (mb_record_format) to the
 * guest's own xenstore node data/membal/stats, plus data/meminfo_total and
 * data/meminfo_free (KiB, the keys XenServer's guest utilities write). The
 * same figures are dispatched to the local collectd so a guest can graph
 * itself.
 *
 * A thread polls /proc/vmstat (a few microseconds of CPU per poll) and, when
 * the swap or major-fault rate crosses its threshold, publishes at once with
 * "urgent 1": dom0 watches the records and reacts in well under a second
 * instead of at its next read. Urgent publishes are rate limited.
 *
 * Without xenstore (not a Xen guest, xenstored restarting) the plugin says
 * so once, keeps dispatching locally and reconnects on the next interval.
 */
/* clock_gettime(CLOCK_BOOTTIME), O_CLOEXEC, setenv under -std=c11 */
#define _GNU_SOURCE
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"
#include "utils_complain.h"

#include "membal_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#define PLUGIN_NAME "guestmem"

/* /proc/meminfo is ~1.5 KiB and /proc/vmstat ~5 KiB; anything far larger
 * is not one of them. */
#define GM_FILE_MAX (64 * 1024)

typedef struct {
  /* configuration (set before init, read-only afterwards) */
  char *meminfo_path;  /* owned */
  char *vmstat_path;   /* owned */
  char *domain_path;   /* owned; "" = relative to the guest's own domain */
  char *xenstore_path; /* owned; NULL = libxenstore's own discovery */
  double swap_threshold_pps;
  double majflt_threshold_ps;
  cdtime_t urgent_min_interval;
  cdtime_t urgent_poll_interval; /* 0 = no urgent thread */

  /* publishing state, guarded by lock: the read callback and the urgent
   * thread both publish. */
  pthread_mutex_t lock;
  struct xs_handle *xs;    /* owned; NULL while disconnected */
  uint64_t seq;            /* of the last record published */
  bool seq_seeded;         /* seq continued from a record found in xenstore */
  uint64_t last_urgent_ns; /* CLOCK_MONOTONIC of the last urgent record */
  uint64_t urgent_publishes;
  char *buf; /* owned, GM_FILE_MAX + 1: file text */
  c_complain_t xs_complaint;
  c_complain_t meminfo_complaint;
  c_complain_t vmstat_complaint;

  /* urgent thread */
  pthread_t thread;
  bool thread_running;
  bool stop; /* guarded by lock */
  pthread_cond_t wake;
  char *poll_buf; /* owned, GM_FILE_MAX + 1; used by the thread only */
  c_complain_t poll_complaint;
} gm_ctx_t;

static gm_ctx_t gm = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .xs_complaint = C_COMPLAIN_INIT_STATIC,
    .meminfo_complaint = C_COMPLAIN_INIT_STATIC,
    .vmstat_complaint = C_COMPLAIN_INIT_STATIC,
    .poll_complaint = C_COMPLAIN_INIT_STATIC,
};

/* Serialises the XENSTORED_PATH dance around xs_open(): libxenstore only
 * takes the socket path from the environment. */
static pthread_mutex_t gm_env_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------------ files */

/* Reads a whole file into buf (cap + 1 bytes). 0 and *len, or -1 with err. */
static int gm_read_file(const char *path, char *buf, size_t cap, size_t *len,
                        char *err, size_t errlen) {
  size_t used = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open: %s", STRERRNO);
    return -1;
  }
  for (;;) {
    if (used == cap) {
      /* one more byte tells "exactly cap" from "longer" */
      char extra;
      ssize_t n = read(fd, &extra, 1);
      if (n > 0) {
        snprintf(err, errlen, "longer than %zu bytes", cap);
        close(fd);
        return -1;
      }
      break;
    }
    ssize_t n = read(fd, buf + used, cap - used);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      snprintf(err, errlen, "read failed: %s", STRERRNO);
      close(fd);
      return -1;
    }
    if (n == 0)
      break;
    used += (size_t)n;
  }
  close(fd);
  buf[used] = '\0';
  *len = used;
  return 0;
}

/* Reads and parses meminfo then vmstat into *s. Called with gm.lock held.
 * A failure is logged (once until it works again) and returns -1. */
static int gm_read_sample(mb_sample_t *s) {
  char err[256], perr[256];
  size_t len;

  memset(s, 0, sizeof(*s));
  if (gm_read_file(gm.meminfo_path, gm.buf, GM_FILE_MAX, &len, err,
                   sizeof(err)) != 0) {
    c_complain_once(LOG_ERR, &gm.meminfo_complaint,
                    PLUGIN_NAME ": %s: %s; no record published",
                    gm.meminfo_path, err);
    return -1;
  }
  if (mb_meminfo_parse(gm.buf, len, s, perr, sizeof(perr)) != 0) {
    c_complain_once(LOG_ERR, &gm.meminfo_complaint,
                    PLUGIN_NAME ": %s rejected: %s; no record published",
                    gm.meminfo_path, perr);
    return -1;
  }
  c_release(LOG_INFO, &gm.meminfo_complaint,
            PLUGIN_NAME ": %s is readable again", gm.meminfo_path);

  if (gm_read_file(gm.vmstat_path, gm.buf, GM_FILE_MAX, &len, err,
                   sizeof(err)) != 0) {
    c_complain_once(LOG_ERR, &gm.vmstat_complaint,
                    PLUGIN_NAME ": %s: %s; no record published", gm.vmstat_path,
                    err);
    return -1;
  }
  if (mb_vmstat_parse(gm.buf, len, s, perr, sizeof(perr)) != 0) {
    c_complain_once(LOG_ERR, &gm.vmstat_complaint,
                    PLUGIN_NAME ": %s rejected: %s; no record published",
                    gm.vmstat_path, perr);
    return -1;
  }
  c_release(LOG_INFO, &gm.vmstat_complaint,
            PLUGIN_NAME ": %s is readable again", gm.vmstat_path);
  return 0;
}

/* Rates and rate limits use the monotonic clock: a wall-clock step must
 * neither fake a swap storm nor silence one. */
static uint64_t gm_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t gm_uptime_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --------------------------------------------------------------- xenstore */

/* Path of key below the domain: "data/membal/stats" or
 * "/local/domain/5/data/membal/stats". */
static void gm_key(char *out, size_t outlen, const char *key) {
  if (gm.domain_path[0] == '\0')
    snprintf(out, outlen, "%s", key);
  else
    snprintf(out, outlen, "%s/%s", gm.domain_path, key);
}

static void gm_xs_drop(void) {
  if (gm.xs != NULL)
    xs_close(gm.xs);
  gm.xs = NULL;
}

/* Continues the sequence of a record a previous run left behind, so that
 * dom0 never sees seq go back when only collectd restarted. */
static void gm_seed_seq(void) {
  char path[512], err[128];
  unsigned int len = 0;
  mb_sample_t old;

  gm.seq_seeded = true;
  gm_key(path, sizeof(path), "data/membal/stats");
  char *text = xs_read(gm.xs, XBT_NULL, path, &len); /* owned */
  if (text == NULL)
    return;
  if (len < MB_RECORD_MAX &&
      mb_record_parse(text, len, &old, err, sizeof(err)) == 0 &&
      old.seq > gm.seq) {
    gm.seq = old.seq;
    INFO(PLUGIN_NAME ": continuing after seq %llu found in %s",
         (unsigned long long)old.seq, path);
  }
  free(text);
}

/* Connects when disconnected. Called with gm.lock held. */
static int gm_xs_ensure(void) {
  if (gm.xs != NULL)
    return 0;
  pthread_mutex_lock(&gm_env_lock);
  if (gm.xenstore_path != NULL)
    setenv("XENSTORED_PATH", gm.xenstore_path, 1);
  gm.xs = xs_open(0);
  int e = errno;
  pthread_mutex_unlock(&gm_env_lock);
  if (gm.xs == NULL) {
    errno = e;
    c_complain_once(
        LOG_WARNING, &gm.xs_complaint,
        PLUGIN_NAME ": xenstore unreachable at %s (%s); values are still "
                    "dispatched locally and the connection is retried every "
                    "interval",
        gm.xenstore_path ? gm.xenstore_path : "its default path", STRERRNO);
    return -1;
  }
  c_release(LOG_INFO, &gm.xs_complaint,
            PLUGIN_NAME ": connected to xenstore again");
  if (!gm.seq_seeded)
    gm_seed_seq();
  return 0;
}

/* One xenstore write. A refusal about the node itself (permissions, quota)
 * is logged and returns -1; anything else means the connection is gone: it
 * is dropped and -2 returned. */
static int gm_xs_write(const char *key, const char *value, size_t len) {
  char path[512];
  gm_key(path, sizeof(path), key);
  if (xs_write(gm.xs, XBT_NULL, path, value, (unsigned int)len))
    return 0;
  int e = errno;
  if (e == EACCES || e == EPERM || e == ENOSPC || e == E2BIG || e == EINVAL ||
      e == ENOMEM || e == EROFS || e == EEXIST || e == EISDIR) {
    c_complain_once(LOG_ERR, &gm.xs_complaint,
                    PLUGIN_NAME ": xenstored refused to write %s: %s", path,
                    STRERROR(e));
    return -1;
  }
  c_complain_once(LOG_WARNING, &gm.xs_complaint,
                  PLUGIN_NAME ": lost xenstore while writing %s (%s); "
                              "reconnecting on the next publish",
                  path, STRERROR(e));
  gm_xs_drop();
  return -2;
}

/* Reads both files and publishes one record. Fills *s for the caller's
 * dispatch. Returns 1 when xenstore took the record, 0 when the files
 * parsed but xenstore did not (logged), -1 when the files did not parse. */
static int gm_publish(bool urgent, mb_sample_t *s) {
  char rec[MB_RECORD_MAX];
  char num[32];
  int rc = -1;

  pthread_mutex_lock(&gm.lock);
  if (gm_read_sample(s) != 0)
    goto out;
  rc = 0;
  /* A dead connection is only noticed by using it (xenstored restarted):
   * one immediate retry on a fresh one saves a whole interval. */
  for (int attempt = 0;; attempt++) {
    if (gm_xs_ensure() != 0)
      goto out;
    s->seq = gm.seq + 1;
    s->uptime_ms = gm_uptime_ms();
    s->urgent = urgent;
    int len = mb_record_format(s, rec, sizeof(rec));
    if (len < 0) {
      ERROR(PLUGIN_NAME ": record longer than %d bytes; not published",
            MB_RECORD_MAX - 1);
      goto out;
    }
    int w = gm_xs_write("data/membal/stats", rec, (size_t)len);
    if (w == 0)
      break;
    if (w == -2 && attempt == 0)
      continue;
    goto out;
  }
  gm.seq = s->seq;
  rc = 1; /* the record is out; the XenServer keys are a bonus */
  if (urgent) {
    gm.urgent_publishes++;
    gm.last_urgent_ns = gm_mono_ns();
  }
  if (mb_sample_has(s, MB_F_MEMTOTAL)) {
    int n = snprintf(num, sizeof(num), "%llu",
                     (unsigned long long)s->v[MB_F_MEMTOTAL]);
    if (gm_xs_write("data/meminfo_total", num, (size_t)n) != 0)
      goto out;
  }
  if (mb_sample_has(s, MB_F_MEMFREE)) {
    int n = snprintf(num, sizeof(num), "%llu",
                     (unsigned long long)s->v[MB_F_MEMFREE]);
    if (gm_xs_write("data/meminfo_free", num, (size_t)n) != 0)
      goto out;
  }
  c_release(LOG_INFO, &gm.xs_complaint,
            PLUGIN_NAME ": publishing to xenstore again");
out:
  pthread_mutex_unlock(&gm.lock);
  return rc;
}

/* --------------------------------------------------------------- dispatch */

static void gm_submit(const char *type, const char *type_instance,
                      value_t value) {
  value_list_t vl = VALUE_LIST_INIT;
  vl.values = &value;
  vl.values_len = 1;
  sstrncpy(vl.plugin, PLUGIN_NAME, sizeof(vl.plugin));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static int gm_read(void) {
  mb_sample_t s;
  if (gm_publish(false, &s) < 0)
    return 0; /* logged; returning an error would only slow the retries */

  for (int f = 0; f < MB_F_COUNT; f++) {
    if (!mb_sample_has(&s, f))
      continue;
    if (f < MB_F_FIRST_VMSTAT)
      gm_submit("memory", mb_field_key(f),
                (value_t){.gauge = (gauge_t)s.v[f] * 1024.0});
    else
      gm_submit("derive", mb_field_key(f),
                (value_t){.derive = (derive_t)(s.v[f] & INT64_MAX)});
  }
  pthread_mutex_lock(&gm.lock);
  uint64_t urgent = gm.urgent_publishes;
  pthread_mutex_unlock(&gm.lock);
  gm_submit("derive", "urgent_publishes",
            (value_t){.derive = (derive_t)urgent});
  return 0;
}

/* ----------------------------------------------------------- urgent path */

/* Reads vmstat only: the cheap check done several times per second. */
static int gm_poll_vmstat(mb_sample_t *s) {
  char err[256];
  size_t len;
  memset(s, 0, sizeof(*s));
  if (gm_read_file(gm.vmstat_path, gm.poll_buf, GM_FILE_MAX, &len, err,
                   sizeof(err)) != 0 ||
      mb_vmstat_parse(gm.poll_buf, len, s, err, sizeof(err)) != 0) {
    c_complain_once(LOG_WARNING, &gm.poll_complaint,
                    PLUGIN_NAME ": urgent check: %s: %s", gm.vmstat_path, err);
    return -1;
  }
  c_release(LOG_INFO, &gm.poll_complaint,
            PLUGIN_NAME ": urgent check reads %s again", gm.vmstat_path);
  return 0;
}

static void *gm_urgent_thread(void *arg) {
  mb_sample_t prev, cur, full;
  bool have_prev = false;
  uint64_t prev_ns = 0;
  uint64_t poll_ns = CDTIME_T_TO_NS(gm.urgent_poll_interval);
  uint64_t min_ns = CDTIME_T_TO_NS(gm.urgent_min_interval);

  pthread_mutex_lock(&gm.lock);
  while (!gm.stop) {
    uint64_t wake_ns = gm_mono_ns() + poll_ns;
    struct timespec until = {.tv_sec = (time_t)(wake_ns / 1000000000u),
                             .tv_nsec = (long)(wake_ns % 1000000000u)};
    pthread_cond_timedwait(&gm.wake, &gm.lock, &until);
    if (gm.stop)
      break;
    pthread_mutex_unlock(&gm.lock);

    uint64_t now = gm_mono_ns();
    if (gm_poll_vmstat(&cur) != 0) {
      have_prev = false;
      pthread_mutex_lock(&gm.lock);
      continue;
    }
    bool fire = false;
    double swap_pps = 0, majflt_ps = 0;
    if (have_prev && now > prev_ns) {
      mb_rates_t r;
      mb_sample_rates(&prev, &cur, (double)(now - prev_ns) / 1e9, &r);
      swap_pps = r.swapin_pps + r.swapout_pps;
      majflt_ps = r.majflt_ps;
      fire = r.valid && (swap_pps > gm.swap_threshold_pps ||
                         majflt_ps > gm.majflt_threshold_ps);
    }
    prev = cur;
    prev_ns = now;
    have_prev = true;

    pthread_mutex_lock(&gm.lock);
    bool limited = gm.last_urgent_ns != 0 && now - gm.last_urgent_ns < min_ns;
    pthread_mutex_unlock(&gm.lock);
    if (fire && !limited) {
      if (gm_publish(true, &full) == 1)
        INFO(PLUGIN_NAME ": urgent record published (swap %.0f pages/s, "
                         "major faults %.0f/s)",
             swap_pps, majflt_ps);
    }
    pthread_mutex_lock(&gm.lock);
  }
  pthread_mutex_unlock(&gm.lock);
  return NULL;
}

/* ----------------------------------------------------------------- config */

static bool gm_xs_path_ok(const char *p) {
  size_t n = strlen(p);
  if (n == 0)
    return true;
  if (n > 256 || p[n - 1] == '/' || strstr(p, "//") != NULL)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '/' || c == '_' || c == '-' ||
          c == '@'))
      return false;
  }
  return true;
}

static int gm_get_positive(oconfig_item_t *child, double *out) {
  double v;
  if (cf_util_get_double(child, &v) != 0)
    return -1;
  if (!(v > 0) || !isfinite(v)) {
    ERROR(PLUGIN_NAME ": %s must be a positive number", child->key);
    return -1;
  }
  *out = v;
  return 0;
}

static int gm_config(oconfig_item_t *ci) {
  for (int i = 0; i < ci->children_num; i++) {
    oconfig_item_t *child = ci->children + i;
    int status;
    double d;
    if (strcasecmp("MeminfoPath", child->key) == 0)
      status = cf_util_get_string(child, &gm.meminfo_path);
    else if (strcasecmp("VmstatPath", child->key) == 0)
      status = cf_util_get_string(child, &gm.vmstat_path);
    else if (strcasecmp("DomainPath", child->key) == 0) {
      status = cf_util_get_string(child, &gm.domain_path);
      if (status == 0 && !gm_xs_path_ok(gm.domain_path)) {
        ERROR(PLUGIN_NAME ": DomainPath \"%s\" is not a xenstore path "
                          "(letters, digits, '/', '_', '-', '@'; no trailing "
                          "or double '/')",
              gm.domain_path);
        status = -1;
      }
    } else if (strcasecmp("XenstorePath", child->key) == 0)
      status = cf_util_get_string(child, &gm.xenstore_path);
    else if (strcasecmp("SwapThreshold", child->key) == 0)
      status = gm_get_positive(child, &gm.swap_threshold_pps);
    else if (strcasecmp("MajorFaultThreshold", child->key) == 0)
      status = gm_get_positive(child, &gm.majflt_threshold_ps);
    else if (strcasecmp("UrgentMinInterval", child->key) == 0) {
      status = gm_get_positive(child, &d);
      if (status == 0)
        gm.urgent_min_interval = DOUBLE_TO_CDTIME_T(d);
    } else if (strcasecmp("UrgentPollInterval", child->key) == 0) {
      /* 0 turns the urgent path off */
      status = cf_util_get_double(child, &d);
      if (status == 0 && (!(d >= 0) || !isfinite(d) || (d > 0 && d < 0.01))) {
        ERROR(PLUGIN_NAME ": UrgentPollInterval must be 0 (off) or at least "
                          "0.01 seconds");
        status = -1;
      }
      if (status == 0)
        gm.urgent_poll_interval = DOUBLE_TO_CDTIME_T(d);
    } else {
      ERROR(PLUGIN_NAME ": unknown option \"%s\"", child->key);
      status = -1;
    }
    if (status != 0) {
      ERROR(PLUGIN_NAME ": refusing the configuration (option \"%s\")",
            child->key);
      return -1;
    }
  }
  if (gm.xenstore_path != NULL && gm.xenstore_path[0] == '\0') {
    free(gm.xenstore_path);
    gm.xenstore_path = NULL;
  }
  return 0;
}

static int gm_set_default(char **field, const char *value) {
  if (*field != NULL)
    return 0;
  *field = strdup(value);
  return *field ? 0 : -1;
}

static int gm_init(void) {
  if (gm_set_default(&gm.meminfo_path, "/proc/meminfo") != 0 ||
      gm_set_default(&gm.vmstat_path, "/proc/vmstat") != 0 ||
      gm_set_default(&gm.domain_path, "") != 0)
    goto oom;
  if (gm.swap_threshold_pps == 0)
    gm.swap_threshold_pps = 64;
  if (gm.majflt_threshold_ps == 0)
    gm.majflt_threshold_ps = 256;
  if (gm.urgent_min_interval == 0)
    gm.urgent_min_interval = TIME_T_TO_CDTIME_T(1);
  if (gm.buf == NULL && (gm.buf = malloc(GM_FILE_MAX + 1)) == NULL)
    goto oom;
  if (gm.poll_buf == NULL && (gm.poll_buf = malloc(GM_FILE_MAX + 1)) == NULL)
    goto oom;

  pthread_mutex_lock(&gm.lock);
  gm_xs_ensure(); /* failure logged; retried every interval */
  pthread_mutex_unlock(&gm.lock);

  if (gm.urgent_poll_interval != 0 && !gm.thread_running) {
    gm.stop = false;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&gm.wake, &attr);
    pthread_condattr_destroy(&attr);
    int status =
        plugin_thread_create(&gm.thread, gm_urgent_thread, NULL, "guestmem");
    if (status != 0) {
      ERROR(PLUGIN_NAME ": cannot start the urgent thread: %s",
            STRERROR(status));
      pthread_cond_destroy(&gm.wake);
      return -1;
    }
    gm.thread_running = true;
  }
  INFO(PLUGIN_NAME ": reading %s and %s, publishing to %s%sdata/membal/stats"
                   "%s",
       gm.meminfo_path, gm.vmstat_path,
       gm.domain_path[0] ? gm.domain_path : "(own domain) ",
       gm.domain_path[0] ? "/" : "",
       gm.urgent_poll_interval ? "; urgent check on" : "; urgent check off");
  return 0;
oom:
  ERROR(PLUGIN_NAME ": out of memory");
  return -1;
}

static int gm_shutdown(void) {
  if (gm.thread_running) {
    pthread_mutex_lock(&gm.lock);
    gm.stop = true;
    pthread_cond_signal(&gm.wake);
    pthread_mutex_unlock(&gm.lock);
    pthread_join(gm.thread, NULL);
    pthread_cond_destroy(&gm.wake);
    gm.thread_running = false;
  }
  pthread_mutex_lock(&gm.lock);
  gm_xs_drop();
  pthread_mutex_unlock(&gm.lock);
  sfree(gm.meminfo_path);
  sfree(gm.vmstat_path);
  sfree(gm.domain_path);
  sfree(gm.xenstore_path);
  sfree(gm.buf);
  sfree(gm.poll_buf);
  return 0;
}

/* Built with hidden visibility; collectd looks this one up. */
__attribute__((visibility("default"))) void module_register(void) {
  gm.urgent_poll_interval = MS_TO_CDTIME_T(200);
  plugin_register_complex_config(PLUGIN_NAME, gm_config);
  plugin_register_init(PLUGIN_NAME, gm_init);
  plugin_register_read(PLUGIN_NAME, gm_read);
  plugin_register_shutdown(PLUGIN_NAME, gm_shutdown);
}
