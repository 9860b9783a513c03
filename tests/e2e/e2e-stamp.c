/*
 * e2e-stamp: millisecond time stamps for the real-Xen end-to-end test.
 *
 *   e2e-stamp now                 CLOCK_REALTIME in seconds, 3 decimals
 *                                 (busybox date has no %N)
 *   e2e-stamp watch PATH...       one line per xenstore watch event:
 *                                 "<realtime> <path> <value on one line>"
 *   e2e-stamp domains             (in dom0) one line per domain from the
 *                                 hypervisor: "X <name> <domid> <KiB>
 *                                 <cpu s>", what `xl list` shows, at a
 *                                 fraction of its cost under emulation
 *   e2e-stamp free                (in dom0) the hypervisor's free memory,
 *                                 KiB
 *   e2e-stamp sample FILE STOP    (in dom0) appends one row per guest to
 *                                 FILE about every second until the file
 *                                 STOP exists: dom0 uptime (the clock of
 *                                 /proc/uptime), name, domid, target and
 *                                 actual KiB, fields of the guest's record,
 *                                 its workload status (timeline.tsv)
 *   e2e-stamp signals KEY         (in a guest) polls the kernel every 50 ms
 *                                 and prints, stamped: the first swap-out,
 *                                 the first memory stall (PSI some total),
 *                                 each balloon target change and the moment
 *                                 the balloon reached it (with the pages
 *                                 swapped out and in since the start), and
 *                                 the first time stall reached guestmem's
 *                                 default PSI trigger (150 ms of "some" in
 *                                 the last 1 s, "stall150");
 *                                 the first signal also goes to the
 *                                 xenstore node KEY, the balloon events
 *                                 (";"-separated) to KEY-balloon
 *
 * Every domain of a Xen host reads CLOCK_REALTIME from the same hypervisor
 * clock, so stamps taken in a guest and in dom0 are comparable; the test
 * checks that they are causally ordered (a guest's signal before dom0 sees
 * its record). A stamp is taken before anything slow (xenstore reads,
 * output), so a time is never later than the event by more than the
 * poll interval or the watch delivery.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenstore.h>

static double rt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a small file; -1 when it cannot. */
static ssize_t slurp(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0)
    return -1;
  buf[n] = 0;
  return n;
}

/* The value after "key " at the start of a line of buf; -1 if absent. */
static long long field(const char *buf, const char *key) {
  size_t k = strlen(key);
  for (const char *p = buf; p != NULL && *p; p = strchr(p, '\n')) {
    if (*p == '\n')
      p++;
    if (strncmp(p, key, k) == 0 && p[k] == ' ')
      return strtoll(p + k + 1, NULL, 10);
  }
  return -1;
}

static long long file_ll(const char *path) {
  char b[64];
  if (slurp(path, b, sizeof(b)) < 0)
    return -1;
  return strtoll(b, NULL, 10);
}

/* "some avg10=.. avg60=.. avg300=.. total=N": N (µs), -1 without PSI. */
static long long psi_some_total(void) {
  char b[256];
  if (slurp("/proc/pressure/memory", b, sizeof(b)) < 0)
    return -1;
  char *t = strstr(b, "total=");
  return t ? strtoll(t + 6, NULL, 10) : -1;
}

static int cmd_watch(int n, char **paths) {
  struct xs_handle *xs = xs_open(0);
  if (xs == NULL) {
    fprintf(stderr, "e2e-stamp: cannot open xenstore: %s\n", strerror(errno));
    return 1;
  }
  for (int i = 0; i < n; i++) {
    if (!xs_watch(xs, paths[i], paths[i])) {
      fprintf(stderr, "e2e-stamp: cannot watch %s: %s\n", paths[i],
              strerror(errno));
      return 1;
    }
  }
  for (;;) {
    unsigned int num;
    char **vec = xs_read_watch(xs, &num);
    double t = rt_now(); /* before the read: the event's time */
    if (vec == NULL)
      return 1;
    unsigned int len = 0;
    char *v = xs_read(xs, XBT_NULL, vec[XS_WATCH_PATH], &len);
    if (v != NULL)
      for (unsigned int i = 0; i < len; i++)
        if (v[i] == '\n' || v[i] == '\r')
          v[i] = ' ';
    printf("%.3f %s %s\n", t, vec[XS_WATCH_PATH], v ? v : "(none)");
    fflush(stdout);
    free(v);
    free(vec);
  }
}

static void put(struct xs_handle *xs, const char *key, const char *val) {
  if (xs != NULL && !xs_write(xs, XBT_NULL, key, val, strlen(val)))
    fprintf(stderr, "e2e-stamp: write %s: %s\n", key, strerror(errno));
}

/* Appends "line;" while it fits (the first events are the ones measured). */
static size_t blog_add(char *blog, size_t cap, size_t len, const char *line) {
  size_t n = strlen(line);
  if (len + n + 2 > cap)
    return len;
  memcpy(blog + len, line, n);
  blog[len + n] = ';';
  blog[len + n + 1] = 0;
  return len + n + 1;
}

static int cmd_signals(const char *key) {
  struct xs_handle *xs = xs_open(0);
  if (xs == NULL)
    fprintf(stderr, "e2e-stamp: no xenstore (%s): console only\n",
            strerror(errno));
  char bkey[512];
  snprintf(bkey, sizeof(bkey), "%s-balloon", key);
  static char vm[16384];
  const char *tgt_path = "/sys/devices/system/xen_memory/xen_memory0/target_kb";
  const char *cur_path =
      "/sys/devices/system/xen_memory/xen_memory0/info/current_kb";
  long long out0 = -1, in0 = -1, psi0 = -1, tgt = -1;
  bool swapped = false, stalled = false, first = false, reached = true;
  /* The last second of PSI totals, one per poll: stall150 is the first
   * poll whose total exceeds the one about 1 s before by 150 ms, what
   * guestmem's default trigger (GM_STALL_THRESHOLD_US within
   * GM_STALL_WINDOW_US) waits for, seen at this poll's 50 ms grain. */
  enum { RING = 64 };
  double ring_t[RING];
  long long ring_psi[RING];
  unsigned ring_n = 0;
  bool stall150 = false;
  char line[256];
  static char blog[3072]; /* the balloon events so far, for KEY-balloon */
  size_t blen = 0;
  for (;;) {
    double t = rt_now();
    long long out = -1, in = -1;
    if (slurp("/proc/vmstat", vm, sizeof(vm)) >= 0) {
      out = field(vm, "pswpout");
      in = field(vm, "pswpin");
    }
    long long psi = psi_some_total();
    long long tk = file_ll(tgt_path), ck = file_ll(cur_path);
    if (out0 < 0) {
      out0 = out;
      in0 = in;
      psi0 = psi;
      tgt = tk;
      printf("e2e-stamp: %.3f start pswpout %lld psi_some_us %lld target_kb "
             "%lld current_kb %lld\n",
             t, out, psi, tk, ck);
    }
    const char *kind = NULL;
    if (!swapped && out > out0) {
      swapped = true;
      kind = "swapout";
      snprintf(line, sizeof(line), "%.3f swapout pswpout %lld", t, out - out0);
    } else if (!stalled && psi0 >= 0 && psi > psi0) {
      stalled = true;
      kind = "stall";
      snprintf(line, sizeof(line), "%.3f stall psi_some_us %lld", t,
               psi - psi0);
    }
    if (kind != NULL) {
      printf("e2e-stamp: %s\n", line);
      if (!first)
        put(xs, key, line);
      first = true;
    }
    if (psi >= 0) {
      ring_t[ring_n % RING] = t;
      ring_psi[ring_n % RING] = psi;
      ring_n++;
      /* The newest poll at least 1 s old (or the oldest kept): the window
       * is never shorter than 1 s, so stall150 errs early. */
      unsigned kept = ring_n < RING ? ring_n : RING, j = ring_n - kept;
      while (j + 1 < ring_n && t - ring_t[(j + 1) % RING] >= 1.0)
        j++;
      if (!stall150 && psi - ring_psi[j % RING] >= 150000) {
        stall150 = true;
        snprintf(line, sizeof(line), "%.3f stall150 psi_some_us %lld in %.2fs",
                 t, psi - ring_psi[j % RING], t - ring_t[j % RING]);
        printf("e2e-stamp: %s\n", line);
        blen = blog_add(blog, sizeof(blog), blen, line);
        put(xs, bkey, blog);
      }
    }
    if (tk >= 0 && tk != tgt) {
      snprintf(line, sizeof(line), "%.3f target %lld from %lld current %lld", t,
               tk, tgt, ck);
      printf("e2e-stamp: %s\n", line);
      blen = blog_add(blog, sizeof(blog), blen, line);
      put(xs, bkey, blog);
      tgt = tk;
      reached = false;
    }
    /* The balloon driver stops exactly at its target. */
    if (!reached && ck >= 0 && ck == tgt) {
      reached = true;
      snprintf(line, sizeof(line),
               "%.3f at_target %lld pswpout %lld pswpin %lld", t, ck,
               out - out0, in - in0);
      printf("e2e-stamp: %s\n", line);
      blen = blog_add(blog, sizeof(blog), blen, line);
      put(xs, bkey, blog);
    }
    fflush(stdout);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

static int cmd_domains(void) {
  xc_interface *xch = xc_interface_open(NULL, NULL, 0);
  struct xs_handle *xs = xs_open(XS_OPEN_READONLY);
  if (xch == NULL || xs == NULL) {
    fprintf(stderr, "e2e-stamp: cannot open the hypervisor or xenstore\n");
    return 1;
  }
  static xc_domaininfo_t info[256];
  int n = xc_domain_getinfolist(xch, 0, 256, info);
  if (n < 0) {
    fprintf(stderr, "e2e-stamp: getinfolist: %s\n", strerror(errno));
    return 1;
  }
  for (int i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof(path), "/local/domain/%u/name", info[i].domain);
    unsigned int len = 0;
    char *name = xs_read(xs, XBT_NULL, path, &len);
    printf("X %s %u %llu %.1f\n", name ? name : "-", info[i].domain,
           (unsigned long long)info[i].tot_pages * 4,
           (double)info[i].cpu_time / 1e9);
    free(name);
  }
  xs_close(xs);
  xc_interface_close(xch);
  return 0;
}

static int cmd_free(void) {
  xc_interface *xch = xc_interface_open(NULL, NULL, 0);
  xc_physinfo_t pi = {0};
  if (xch == NULL || xc_physinfo(xch, &pi) != 0) {
    fprintf(stderr, "e2e-stamp: cannot read the hypervisor's physinfo\n");
    return 1;
  }
  printf("%llu\n", (unsigned long long)pi.free_pages * 4);
  xc_interface_close(xch);
  return 0;
}

static double boot_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xs_read of /local/domain/<id>/<rel>, NULL when absent (caller frees). */
static char *dom_read(struct xs_handle *xs, unsigned id, const char *rel) {
  char path[128];
  snprintf(path, sizeof(path), "/local/domain/%u/%s", id, rel);
  unsigned int len = 0;
  return xs_read(xs, XBT_NULL, path, &len);
}

static int cmd_sample(const char *out_path, const char *stop_path) {
  xc_interface *xch = xc_interface_open(NULL, NULL, 0);
  struct xs_handle *xs = xs_open(0);
  FILE *f = fopen(out_path, "a");
  if (xch == NULL || xs == NULL || f == NULL) {
    fprintf(stderr,
            "e2e-stamp: sample: cannot open the hypervisor, xenstore "
            "or %s\n",
            out_path);
    return 1;
  }
  static const char *keys[] = {"seq",       "MemTotal", "MemAvailable",
                               "SwapTotal", "SwapFree", "pswpin",
                               "pswpout"};
  static xc_domaininfo_t info[256];
  while (access(stop_path, F_OK) != 0) {
    double start = boot_now();
    int n = xc_domain_getinfolist(xch, 0, 256, info);
    double t = boot_now(); /* the time the hypervisor answered */
    for (int i = 0; i < n; i++) {
      unsigned id = info[i].domain;
      if (id == 0)
        continue;
      char *name = dom_read(xs, id, "name");
      char *tgt = dom_read(xs, id, "memory/target");
      char *rec = dom_read(xs, id, "data/membal/stats");
      char *load = dom_read(xs, id, "data/e2e/load");
      fprintf(f, "%.2f %s %u %s %llu", t, name ? name : "-", id,
              tgt ? tgt : "-", (unsigned long long)info[i].tot_pages * 4);
      for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        long long v = rec ? field(rec, keys[k]) : -1;
        if (v >= 0)
          fprintf(f, " %lld", v);
        else
          fprintf(f, " -");
      }
      long long lm = 0;
      char phase[32] = "none";
      if (load != NULL)
        sscanf(load, "%lld %31s", &lm, phase);
      fprintf(f, " %lld %s\n", lm, phase);
      free(name);
      free(tgt);
      free(rec);
      free(load);
    }
    fflush(f);
    double left = 1.0 - (boot_now() - start);
    if (left < 0.2)
      left = 0.2;
    struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
  }
  fclose(f);
  xs_close(xs);
  xc_interface_close(xch);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "now") == 0) {
    printf("%.3f\n", rt_now());
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "sample") == 0)
    return cmd_sample(argv[2], argv[3]);
  if (argc == 2 && strcmp(argv[1], "domains") == 0)
    return cmd_domains();
  if (argc == 2 && strcmp(argv[1], "free") == 0)
    return cmd_free();
  if (argc >= 3 && strcmp(argv[1], "watch") == 0)
    return cmd_watch(argc - 2, argv + 2);
  if (argc == 3 && strcmp(argv[1], "signals") == 0)
    return cmd_signals(argv[2]);
  fprintf(stderr, "usage: e2e-stamp now | domains | free | sample FILE STOP | "
                  "watch PATH... | "
                  "signals KEY\n");
  return 2;
}
