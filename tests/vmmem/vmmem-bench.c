/*
 * vmmem-bench: cost of one vmmem read round on the sim backend against a
 * real xenstored. Populates N simulated domains (hypervisor nodes and guest
 * records, as the simulator and guestmem would), then times R rounds of
 * what vmmem's read callback asks the backend: mb_backend_host() +
 * mb_backend_list(). Between rounds every guest publishes a new record (not
 * timed). Prints CPU time per round of this process (the client side:
 * libxenstore, parsing), wall time, xenstore requests per round, and,
 * given xenstored's pid, the daemon's CPU per round.
 *
 *   vmmem-bench -n 1000 [-r 20] [-x socket] [-p xenstored-pid] [-T]
 *
 * -P <s> only populates, then has every guest publish a new record once a
 * second for s seconds (load for a collectd measured from outside).
 * -U <rate> with -P: guest 1 (the storm) publishes instead <rate> urgent
 * records a second (paced every 10 ms); prints the rate it achieved.
 * -S <domid> with -P and -U: nothing is populated; only domain <domid>
 * writes the urgent records, into a store a test set up.
 * -T leaves target_kib out of the dom nodes (a simulator that does not
 * mirror the target there): the backend then reads memory/target too.
 */
#define _GNU_SOURCE
#include "backend.h"
#include "membal_policy.h"
#include "sim_schema.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

static double ts_diff(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) +
         (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* utime + stime of a process in seconds, or -1. */
static double proc_cpu_s(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* comm may hold blanks */
  unsigned long ut = 0, st = 0;
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                          "%*u %lu %lu",
                          &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int put(struct xs_handle *h, const char *path, const char *val) {
  if (!xs_write(h, XBT_NULL, path, val, (unsigned)strlen(val))) {
    fprintf(stderr, "vmmem-bench: write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

static int publish_as(struct xs_handle *h, unsigned domid, uint64_t seq,
                      bool urgent) {
  mb_sample_t s;
  char rec[MB_RECORD_MAX], path[96];
  memset(&s, 0, sizeof(s));
  s.seq = seq;
  s.uptime_ms = seq * 1000;
  s.urgent = urgent;
  const struct {
    mb_field_t f;
    uint64_t v;
  } fields[] = {{MB_F_MEMTOTAL, 2000000},    {MB_F_MEMFREE, 300000},
                {MB_F_MEMAVAILABLE, 900000}, {MB_F_BUFFERS, 20000},
                {MB_F_CACHED, 600000},       {MB_F_ACTIVE, 800000},
                {MB_F_INACTIVE, 500000},     {MB_F_SWAPTOTAL, 1048576},
                {MB_F_SWAPFREE, 1048576},    {MB_F_COMMITTED_AS, 1100000},
                {MB_F_PSWPIN, 10},           {MB_F_PSWPOUT, 20},
                {MB_F_PGMAJFAULT, 30},       {MB_F_PGFAULT, 1000 + seq}};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    s.v[fields[i].f] = fields[i].v;
    s.have |= 1ull << fields[i].f;
  }
  if (mb_record_format(&s, rec, sizeof(rec)) < 0) {
    fprintf(stderr, "vmmem-bench: mb_record_format failed\n");
    return -1;
  }
  snprintf(path, sizeof(path), "/local/domain/%u/data/membal/stats", domid);
  return put(h, path, rec);
}

static int publish(struct xs_handle *h, unsigned domid, uint64_t seq) {
  return publish_as(h, domid, seq, false);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* -P with -U: guest 1 writes urgent_rate urgent records a second, in steps
 * of 10 ms; the others publish once a second. */
static int storm(struct xs_handle *h, unsigned n, unsigned seconds,
                 unsigned urgent_rate, unsigned storm_domid) {
  const double step_s = 0.01;
  double t0 = now_s(), next_pub = t0;
  uint64_t storm_seq = 2, seq = 2, written = 0;
  for (double t = t0; t - t0 < seconds; t = now_s()) {
    if (storm_domid == 0 && t >= next_pub) {
      for (unsigned id = 2; id <= n; id++)
        if (publish(h, id, seq) != 0)
          return -1;
      seq++;
      next_pub += 1.0;
    }
    /* Catch up with the rate since t0 (a slow write delays, never drops). */
    uint64_t want = (uint64_t)((t - t0) * urgent_rate) + 1;
    for (; written < want; written++)
      if (publish_as(h, storm_domid ? storm_domid : 1, storm_seq++, true) != 0)
        return -1;
    struct timespec d = {0, (long)(step_s * 1e9)};
    nanosleep(&d, NULL);
  }
  double el = now_s() - t0;
  printf("storm: guest %u wrote %llu urgent records in %.1f s = %.0f/s\n",
         storm_domid ? storm_domid : 1, (unsigned long long)written, el,
         (double)written / el);
  return 0;
}

static int populate(struct xs_handle *h, unsigned n, int with_target) {
  char path[96], val[256];
  xs_rm(h, XBT_NULL, MB_SIM_ROOT);
  if (put(h, MB_SIM_ROOT "/host", "total_kib 1073741824\nfree_kib 1048576\n") !=
      0)
    return -1;
  for (unsigned id = 0; id <= n; id++) {
    snprintf(path, sizeof(path), MB_SIM_ROOT "/dom/%u", id);
    snprintf(val, sizeof(val),
             "name %s%u\ncurrent_kib 1048576\nmax_kib 2097152\n%s",
             id ? "guest" : "Domain-", id,
             with_target ? "target_kib 1048576\n" : "");
    if (put(h, path, val) != 0)
      return -1;
    if (id == 0)
      continue;
    snprintf(path, sizeof(path), "/local/domain/%u/memory/target", id);
    if (put(h, path, "1048576") != 0 || publish(h, id, 1) != 0)
      return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  unsigned n = 10, rounds = 20;
  long xs_pid = 0;
  int with_target = 1;
  const char *sock = NULL;
  int c;
  unsigned publish_s = 0, urgent_rate = 0, storm_domid = 0;
  while ((c = getopt(argc, argv, "n:r:x:p:TP:U:S:")) != -1) {
    switch (c) {
    case 'n':
      n = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'r':
      rounds = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'x':
      sock = optarg;
      break;
    case 'p':
      xs_pid = strtol(optarg, NULL, 10);
      break;
    case 'T':
      with_target = 0;
      break;
    case 'P':
      publish_s = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'U':
      urgent_rate = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'S':
      storm_domid = (unsigned)strtoul(optarg, NULL, 10);
      break;
    default:
      fprintf(stderr,
              "usage: vmmem-bench -n domains [-r rounds] "
              "[-x xenstored-socket] [-p xenstored-pid] [-T] [-P seconds "
              "[-U urgent-records-per-second [-S domid]]]\n");
      return 2;
    }
  }
  if (n == 0 || n > 30000 || rounds == 0) {
    fprintf(stderr, "vmmem-bench: 1 <= domains <= 30000, rounds >= 1\n");
    return 2;
  }
  if (sock != NULL)
    setenv("XENSTORED_PATH", sock, 1);
  struct xs_handle *h = xs_open(0); /* owned: the writer (guests, sim) */
  if (h == NULL) {
    fprintf(stderr, "vmmem-bench: cannot connect to xenstored: %s\n",
            strerror(errno));
    return 1;
  }
  int rc = 1;
  mb_backend_t *b = NULL;
  if (publish_s > 0 && urgent_rate > 0 && storm_domid > 0) {
    rc = storm(h, n, publish_s, urgent_rate, storm_domid) == 0 ? 0 : 1;
    goto out;
  }
  if (populate(h, n, with_target) != 0)
    goto out;
  if (publish_s > 0 && urgent_rate > 0) {
    rc = storm(h, n, publish_s, urgent_rate, 0) == 0 ? 0 : 1;
    goto out;
  }
  if (publish_s > 0) {
    /* Guests only: every guest publishes a new record once a second, as
     * guestmem with Interval 1 would (load for a collectd under test). */
    for (unsigned t = 0; t < publish_s; t++) {
      struct timespec next;
      clock_gettime(CLOCK_MONOTONIC, &next);
      next.tv_sec += 1;
      for (unsigned id = 1; id <= n; id++)
        if (publish(h, id, t + 2) != 0)
          goto out;
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    rc = 0;
    goto out;
  }

  char err[256];
  mb_backend_opts_t o = {.kind = "sim", .xenstore_path = sock};
  b = mb_backend_open(&o, err, sizeof(err));
  if (b == NULL) {
    fprintf(stderr, "vmmem-bench: %s\n", err);
    goto out;
  }
  double cpu_sum = 0, cpu_max = 0, wall_sum = 0, xs_cpu = 0;
  uint64_t req_sum = 0, req_min = UINT64_MAX, req_max = 0;
  size_t seen = 0;
  for (unsigned r = 0; r < rounds; r++) {
    for (unsigned id = 1; id <= n && r > 0; id++)
      if (publish(h, id, r + 1) != 0)
        goto out;
    mb_hostinfo_t host;
    mb_dominfo_t *doms = NULL;
    size_t nd = 0;
    struct timespec c0, c1, w0, w1;
    uint64_t q0 = mb_backend_requests(b);
    double x0 = xs_pid > 0 ? proc_cpu_s(xs_pid) : 0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    clock_gettime(CLOCK_MONOTONIC, &w0);
    int ok = mb_backend_host(b, &host, err, sizeof(err)) == 0 &&
             mb_backend_list(b, &doms, &nd, err, sizeof(err)) == 0;
    clock_gettime(CLOCK_MONOTONIC, &w1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double x1 = xs_pid > 0 ? proc_cpu_s(xs_pid) : 0;
    uint64_t q = mb_backend_requests(b) - q0;
    if (!ok) {
      fprintf(stderr, "vmmem-bench: round %u: %s\n", r, err);
      free(doms);
      goto out;
    }
    size_t good = 0;
    for (size_t i = 0; i < nd; i++)
      good +=
          doms[i].sample_status == MB_SAMPLE_OK && doms[i].sample.seq == r + 1;
    free(doms);
    if (nd != n + 1 || good != n) {
      fprintf(stderr,
              "vmmem-bench: round %u saw %zu domains, %zu fresh records; "
              "want %u and %u\n",
              r, nd, good, n + 1, n);
      goto out;
    }
    seen = nd;
    double cpu = ts_diff(&c0, &c1);
    cpu_sum += cpu;
    cpu_max = cpu > cpu_max ? cpu : cpu_max;
    wall_sum += ts_diff(&w0, &w1);
    xs_cpu += x1 - x0;
    req_sum += q;
    req_min = q < req_min ? q : req_min;
    req_max = q > req_max ? q : req_max;
  }
  printf("domains %u (+dom0)%s rounds %u: vmmem client CPU/round %.3f ms "
         "(max %.3f), wall/round %.3f ms, xenstore requests/round %.1f "
         "(min %llu max %llu) = %.2f per domain",
         n, with_target ? "" : " no target_kib", rounds, cpu_sum / rounds * 1e3,
         cpu_max * 1e3, wall_sum / rounds * 1e3, (double)req_sum / rounds,
         (unsigned long long)req_min, (unsigned long long)req_max,
         (double)req_sum / rounds / (double)seen);
  if (xs_pid > 0)
    printf(", xenstored CPU/round %.3f ms", xs_cpu / rounds * 1e3);
  printf("\n");
  rc = 0;

out:
  mb_backend_close(b);
  xs_close(h);
  return rc;
}
