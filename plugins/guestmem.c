/*
 * guestmem: collectd plugin that runs inside a guest.
 *
 * Every interval it reads /proc/meminfo, /proc/vmstat and, when the kernel
 * has it (>= 4.20), /proc/pressure/memory, parses them with the policy
 * parsers and publishes one record (mb_record_format) to the guest's own
 * xenstore node data/membal/stats, plus data/meminfo_total and
 * data/meminfo_free (KiB, the keys XenServer's guest utilities write). The
 * same figures are dispatched to the local collectd so a guest can graph
 * itself. A pressure file that is missing or malformed costs the record
 * its PSI fields, never the record.
 *
 * A thread publishes at once with "urgent 1" when the guest is in trouble:
 * dom0 watches the records and reacts in well under a second instead of at
 * its next read. On a kernel with PSI triggers (>= 5.2) the thread sleeps
 * in poll() on a trigger armed on the pressure file ("some" stall of
 * StallThreshold within StallWindow): memory stall shows before any page
 * is swapped. Where the trigger cannot be armed (no PSI, no permission, not
 * a kernel pressure file) it polls /proc/vmstat instead (a few
 * microseconds of CPU per poll) and fires when the swap or major-fault
 * rate crosses its threshold. Urgent publishes are rate limited.
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

#include "membal_record.h"
#include "xs_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#define PLUGIN_NAME "guestmem"

/* /proc/meminfo is ~1.5 KiB and /proc/vmstat ~5 KiB; anything far larger
 * is not one of them. */
#define GM_FILE_MAX (64 * 1024)

/* Default PSI trigger: 150 ms of "some" stall within a 1 s window. The
 * window is the shortest the kernel allows (500 ms) doubled, so one event
 * per second at most and dom0 hears of a stall within ~1 s; 15 % stall is
 * the kernel documentation's own example and, in the real-Xen prototype of
 * issue 14, fired at 27 MiB available with 0 pages swapped out, where a
 * 200 ms vmstat poll saw 958 pages swapped. A busy guest with a healthy
 * page cache stays well below it (this machine's own background: 0). */
#define GM_STALL_THRESHOLD_US 150000
#define GM_STALL_WINDOW_US 1000000

typedef struct {
  /* configuration (set before init, read-only afterwards) */
  char *meminfo_path;  /* owned */
  char *vmstat_path;   /* owned */
  char *pressure_path; /* owned; "" = no PSI */
  char *domain_path;   /* owned; "" = relative to the guest's own domain */
  char *xenstore_path; /* owned; NULL = libxenstore's own discovery */
  double swap_threshold_pps;
  double majflt_threshold_ps;
  cdtime_t urgent_min_interval;
  cdtime_t urgent_poll_interval; /* 0 = no urgent thread */
  uint64_t stall_threshold_us;   /* PSI trigger: stall within... */
  uint64_t stall_window_us;      /* ...this window */

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
  c_complain_t pressure_complaint;
  bool pressure_missing; /* told once that the kernel has no PSI */

  /* urgent thread */
  pthread_t thread;
  bool thread_running;
  bool stop; /* guarded by lock */
  pthread_cond_t wake;
  char *poll_buf; /* owned, GM_FILE_MAX + 1; used by the thread only */
  c_complain_t poll_complaint;
  int psi_fd;     /* owned; armed PSI trigger, -1 = vmstat polling */
  int stop_fd[2]; /* owned; pipe that wakes the poll() at shutdown */
} gm_ctx_t;

static gm_ctx_t gm = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .xs_complaint = C_COMPLAIN_INIT_STATIC,
    .meminfo_complaint = C_COMPLAIN_INIT_STATIC,
    .vmstat_complaint = C_COMPLAIN_INIT_STATIC,
    .pressure_complaint = C_COMPLAIN_INIT_STATIC,
    .poll_complaint = C_COMPLAIN_INIT_STATIC,
    .psi_fd = -1,
    .stop_fd = {-1, -1},
};

/* ------------------------------------------------------------------ files */

/* Reads a whole file into buf (cap + 1 bytes). 0 and *len, or -1 with err. */
static int gm_read_file(const char *path, char *buf, size_t cap, size_t *len,
                        char *err, size_t errlen) {
  size_t used = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open: %s", STRERRNO);
    errno = e; /* the caller tells "no such file" from a failure */
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
      int e = errno;
      snprintf(err, errlen, "read failed: %s", STRERRNO);
      close(fd);
      errno = e;
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

/* Adds the PSI fields to *s when the pressure file is there and sane. A
 * kernel without PSI (no file, or EOPNOTSUPP with psi=0) is said once; a
 * malformed file is complained about and its fields left out: the record
 * still goes out, as an older guest's would. Called with gm.lock held. */
static void gm_read_pressure(mb_sample_t *s) {
  char err[256], perr[256];
  size_t len;
  if (gm.pressure_path[0] == '\0')
    return;
  if (gm_read_file(gm.pressure_path, gm.buf, GM_FILE_MAX, &len, err,
                   sizeof(err)) != 0) {
    if (errno == ENOENT || errno == EOPNOTSUPP) {
      if (!gm.pressure_missing)
        INFO(PLUGIN_NAME ": %s: %s; records carry no PSI stall figures "
                         "(kernel without PSI, or booted with psi=0)",
             gm.pressure_path, err);
      gm.pressure_missing = true;
      return;
    }
    c_complain_once(LOG_WARNING, &gm.pressure_complaint,
                    PLUGIN_NAME ": %s: %s; records go out without PSI",
                    gm.pressure_path, err);
    return;
  }
  mb_sample_t t = *s;
  if (mb_psi_parse(gm.buf, len, &t, perr, sizeof(perr)) != 0) {
    c_complain_once(LOG_WARNING, &gm.pressure_complaint,
                    PLUGIN_NAME ": %s rejected: %s; records go out without "
                                "PSI",
                    gm.pressure_path, perr);
    return;
  }
  if (gm.pressure_missing)
    INFO(PLUGIN_NAME ": %s is there now", gm.pressure_path);
  gm.pressure_missing = false;
  c_release(LOG_INFO, &gm.pressure_complaint,
            PLUGIN_NAME ": %s is readable again", gm.pressure_path);
  *s = t;
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
  gm_read_pressure(s);
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
  gm.xs = mb_xs_connect(gm.xenstore_path);
  if (gm.xs == NULL) {
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

/* One xenstore write. A refusal about the node itself (permissions, quota;
 * mb_xs_conn_gone() false) is logged and returns -1; anything else means
 * the connection is gone: it is dropped and -2 returned. */
static int gm_xs_write(const char *key, const char *value, size_t len) {
  char path[512];
  gm_key(path, sizeof(path), key);
  if (xs_write(gm.xs, XBT_NULL, path, value, (unsigned int)len))
    return 0;
  int e = errno;
  if (!mb_xs_conn_gone(e)) {
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
    switch (mb_field_kind(f)) {
    case MB_FK_KIB:
      gm_submit("memory", mb_field_key(f),
                (value_t){.gauge = (gauge_t)s.v[f] * 1024.0});
      break;
    case MB_FK_BP: /* basis points -> percent */
      gm_submit("percent", mb_field_key(f),
                (value_t){.gauge = (gauge_t)s.v[f] / 100.0});
      break;
    case MB_FK_COUNT:
    case MB_FK_US:
      gm_submit("derive", mb_field_key(f),
                (value_t){.derive = (derive_t)(s.v[f] & INT64_MAX)});
      break;
    }
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

/* Writes the trigger "some <thr_us> <win_us>" (with its NUL: the kernel
 * takes a string) to fd; the text is left in trig. 0, or -1 with errno. */
static int gm_psi_write(int fd, uint64_t thr_us, uint64_t win_us, char *trig,
                        size_t triglen) {
  int n = snprintf(trig, triglen, "some %llu %llu", (unsigned long long)thr_us,
                   (unsigned long long)win_us);
  if (n < 0 || (size_t)n >= triglen) {
    errno = EINVAL;
    return -1;
  }
  return write(fd, trig, (size_t)n + 1) < 0 ? -1 : 0;
}

/* Arms the PSI trigger on the pressure file: the kernel wakes a poll() for
 * POLLPRI when "some" stall within a window passes the threshold. Refused
 * (-1, logged, vmstat polling instead) when the file is not the kernel's
 * (a regular file would take the write and never wake), or the kernel has
 * no triggers (< 5.2: EINVAL), or this process may not set one (EPERM;
 * since 6.5 unprivileged triggers need a window multiple of 2 s). */
static int gm_psi_arm(void) {
  char trig[64];
  struct statfs fs;
  const char *why = NULL;
  int fd = -1, e = 0;

  if (gm.pressure_path[0] == '\0') {
    why = "PressurePath is empty";
    goto out;
  }
  fd = open(gm.pressure_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    e = errno;
    why = "cannot open it read-write";
    goto out;
  }
  if (fstatfs(fd, &fs) != 0 ||
      (fs.f_type != PROC_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)) {
    why = "not a kernel pressure file (neither procfs nor cgroup2)";
    goto out;
  }
  uint64_t thr_us = gm.stall_threshold_us, win_us = gm.stall_window_us;
  if (gm_psi_write(fd, thr_us, win_us, trig, sizeof(trig)) != 0) {
    e = errno;
    /* Without CAP_SYS_RESOURCE (collectd not root, a container) the
     * kernel (>= 6.5) takes only windows that are a multiple of 2 s: the
     * same share of stall on the next such window is the closest signal. */
    if (e == EINVAL && win_us % 2000000 != 0) {
      uint64_t w2 = (win_us / 2000000 + 1) * 2000000;
      uint64_t t2 =
          (uint64_t)llround((double)thr_us * (double)w2 / (double)win_us);
      char first[64];
      sstrncpy(first, trig, sizeof(first));
      if (gm_psi_write(fd, t2, w2, trig, sizeof(trig)) == 0) {
        e = 0;
        WARNING(PLUGIN_NAME ": urgent check: the kernel refused the trigger "
                            "\"%s\" (without CAP_SYS_RESOURCE it takes "
                            "windows of a multiple of 2 s only); the same "
                            "share of stall on a longer window instead",
                first);
      } else {
        e = errno;
      }
    }
    if (e != 0) {
      why = e == EINVAL ? "the kernel refused the trigger (PSI triggers need "
                          "Linux >= 5.2)"
                        : "the kernel refused the trigger";
      goto out;
    }
  }
  gm.psi_fd = fd;
  fd = -1;
  INFO(PLUGIN_NAME ": urgent check: PSI trigger \"%s\" armed on %s", trig,
       gm.pressure_path);
out:
  if (fd >= 0)
    close(fd);
  if (gm.psi_fd < 0) {
    /* expected where the kernel has no PSI or the operator said so */
    int level = (e == ENOENT || e == EOPNOTSUPP || gm.pressure_path[0] == '\0')
                    ? LOG_INFO
                    : LOG_WARNING;
    char cause[128] = "";
    if (e != 0)
      snprintf(cause, sizeof(cause), " (%s)", STRERROR(e));
    plugin_log(level,
               PLUGIN_NAME ": urgent check: no PSI trigger on %s: %s%s; "
                           "polling %s every %.3f s instead",
               gm.pressure_path, why, cause, gm.vmstat_path,
               CDTIME_T_TO_DOUBLE(gm.urgent_poll_interval));
    return -1;
  }
  return 0;
}

/* Sleeps in poll() on the PSI trigger until stop. Returns 0 at stop, -1
 * when the trigger broke (POLLERR: the pressure file went away) and the
 * caller falls back to vmstat polling. */
static int gm_psi_loop(void) {
  uint64_t min_ns = CDTIME_T_TO_NS(gm.urgent_min_interval);
  mb_sample_t full;
  for (;;) {
    struct pollfd fds[2] = {{.fd = gm.psi_fd, .events = POLLPRI},
                            {.fd = gm.stop_fd[0], .events = POLLIN}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      ERROR(PLUGIN_NAME ": urgent check: poll on the PSI trigger failed: %s; "
                        "polling %s instead",
            STRERRNO, gm.vmstat_path);
      return -1;
    }
    if (fds[1].revents != 0)
      return 0;
    if (fds[0].revents & (POLLERR | POLLNVAL | POLLHUP)) {
      ERROR(PLUGIN_NAME ": urgent check: the PSI trigger on %s broke; "
                        "polling %s instead",
            gm.pressure_path, gm.vmstat_path);
      return -1;
    }
    if (!(fds[0].revents & POLLPRI))
      continue;
    uint64_t now = gm_mono_ns();
    pthread_mutex_lock(&gm.lock);
    bool limited = gm.last_urgent_ns != 0 && now - gm.last_urgent_ns < min_ns;
    pthread_mutex_unlock(&gm.lock);
    if (limited)
      continue; /* the kernel re-fires next window if the stall lasts */
    if (gm_publish(true, &full) == 1) {
      if (mb_sample_has(&full, MB_F_PSI_SOME_AVG10))
        INFO(PLUGIN_NAME ": urgent record published (memory stall: PSI "
                         "trigger; some avg10 %.2f %%)",
             (double)full.v[MB_F_PSI_SOME_AVG10] / 100.0);
      else
        INFO(PLUGIN_NAME ": urgent record published (memory stall: PSI "
                         "trigger)");
    }
  }
}

static void *gm_urgent_thread(void *arg) {
  mb_sample_t prev, cur, full;
  bool have_prev = false;
  uint64_t prev_ns = 0;
  uint64_t poll_ns = CDTIME_T_TO_NS(gm.urgent_poll_interval);
  uint64_t min_ns = CDTIME_T_TO_NS(gm.urgent_min_interval);

  if (gm.psi_fd >= 0 && gm_psi_loop() == 0)
    return NULL;

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
  double stall_s = (double)GM_STALL_THRESHOLD_US / 1e6;
  double window_s = (double)GM_STALL_WINDOW_US / 1e6;
  for (int i = 0; i < ci->children_num; i++) {
    oconfig_item_t *child = ci->children + i;
    int status;
    double d;
    if (strcasecmp("MeminfoPath", child->key) == 0)
      status = cf_util_get_string(child, &gm.meminfo_path);
    else if (strcasecmp("VmstatPath", child->key) == 0)
      status = cf_util_get_string(child, &gm.vmstat_path);
    else if (strcasecmp("PressurePath", child->key) == 0)
      status = cf_util_get_string(child, &gm.pressure_path);
    else if (strcasecmp("StallThreshold", child->key) == 0) {
      status = gm_get_positive(child, &d);
      if (status == 0)
        stall_s = d;
    } else if (strcasecmp("StallWindow", child->key) == 0) {
      status = gm_get_positive(child, &d);
      if (status == 0 && (d < 0.5 || d > 10)) {
        ERROR(PLUGIN_NAME ": StallWindow must be within [0.5, 10] seconds "
                          "(the kernel's limits)");
        status = -1;
      }
      if (status == 0)
        window_s = d;
    } else if (strcasecmp("DomainPath", child->key) == 0) {
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
  /* whole microseconds, as the kernel takes them */
  gm.stall_window_us = (uint64_t)llround(window_s * 1e6);
  gm.stall_threshold_us = (uint64_t)llround(stall_s * 1e6);
  if (gm.stall_threshold_us == 0 ||
      gm.stall_threshold_us > gm.stall_window_us) {
    ERROR(PLUGIN_NAME ": StallThreshold (%g s) must be at least 1 us and at "
                      "most StallWindow (%g s); refusing the configuration",
          stall_s, window_s);
    return -1;
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

static void gm_close_fds(void) {
  if (gm.psi_fd >= 0)
    close(gm.psi_fd);
  gm.psi_fd = -1;
  for (int i = 0; i < 2; i++) {
    if (gm.stop_fd[i] >= 0)
      close(gm.stop_fd[i]);
    gm.stop_fd[i] = -1;
  }
}

static int gm_init(void) {
  if (gm_set_default(&gm.meminfo_path, "/proc/meminfo") != 0 ||
      gm_set_default(&gm.vmstat_path, "/proc/vmstat") != 0 ||
      gm_set_default(&gm.pressure_path, "/proc/pressure/memory") != 0 ||
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

  if (gm.stall_window_us == 0) { /* no <Plugin> block: defaults */
    gm.stall_threshold_us = GM_STALL_THRESHOLD_US;
    gm.stall_window_us = GM_STALL_WINDOW_US;
  }

  if (gm.urgent_poll_interval != 0 && !gm.thread_running) {
    gm.stop = false;
    if (pipe2(gm.stop_fd, O_CLOEXEC) != 0) {
      ERROR(PLUGIN_NAME ": cannot create the urgent thread's pipe: %s",
            STRERRNO);
      return -1;
    }
    gm_psi_arm(); /* failure logged: vmstat polling instead */
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
      gm_close_fds();
      return -1;
    }
    gm.thread_running = true;
  }
  INFO(PLUGIN_NAME ": reading %s, %s and %s, publishing to "
                   "%s%sdata/membal/stats%s",
       gm.meminfo_path, gm.vmstat_path,
       gm.pressure_path[0] ? gm.pressure_path : "no pressure file",
       gm.domain_path[0] ? gm.domain_path : "(own domain) ",
       gm.domain_path[0] ? "/" : "",
       !gm.urgent_poll_interval ? "; urgent check off"
       : gm.psi_fd >= 0         ? "; urgent check on (PSI trigger)"
                                : "; urgent check on (vmstat polling)");
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
    /* wakes the PSI poll(); the vmstat loop sees stop */
    if (write(gm.stop_fd[1], "x", 1) < 0)
      ERROR(PLUGIN_NAME ": cannot wake the urgent thread: %s", STRERRNO);
    pthread_join(gm.thread, NULL);
    pthread_cond_destroy(&gm.wake);
    gm.thread_running = false;
  }
  gm_close_fds();
  pthread_mutex_lock(&gm.lock);
  gm_xs_drop();
  pthread_mutex_unlock(&gm.lock);
  sfree(gm.meminfo_path);
  sfree(gm.vmstat_path);
  sfree(gm.pressure_path);
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
