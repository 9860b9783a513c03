/*
 * membal-memload: memory workloads for trying membal on a real guest.
 *
 *   membal-memload mono LOW HIGH [options]   grow from LOW to HIGH MiB in
 *       steps, hold, then free back down to LOW (one mountain)
 *   membal-memload static SIZE [options]     hold SIZE MiB and keep touching
 *   membal-memload fake-client [options]     publish rapidly changing
 *       synthetic stats records to xenstore, to measure what constant
 *       rebalancing costs
 *
 * Memory is filled half with pseudo-random bytes and half with zeros, so a
 * compressed swap device (zram) holds it at about 2:1 as it would real data,
 * rather than as free "same-filled" pages. Touching writes one word per page
 * so every page stays in the working set.
 */
#define _GNU_SOURCE
#include "membal_policy.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef MEMLOAD_HAVE_XENSTORE
#include <xenstore.h>
#endif

#define MIB (1024u * 1024u)
#define PAGE 4096u

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

typedef struct {
  unsigned step_mib;    /* growth/shrink step */
  unsigned interval_ms; /* time between steps */
  unsigned hold_s;      /* time at HIGH (mono) or total (static; 0 = ever) */
  unsigned linger_s;    /* time at LOW after the way down (mono) */
  unsigned touch_ms;    /* pause between touch passes */
  unsigned pub_ms;      /* fake-client: time between records */
  unsigned count;       /* fake-client: records to publish (0 = ever) */
  const char *key;      /* fake-client: xenstore node of the record */
  const char *status;   /* xenstore node receiving "<mib> <phase>" */
  bool quiet;
} opts_t;

/* One mmap per step, so that freeing a step returns its pages to the
 * kernel (and from there to the balloon). */
typedef struct {
  unsigned char **chunk; /* owned; each chunk_mib MiB, mmap'd */
  size_t n, cap;
  unsigned chunk_mib;
  uint64_t rng;
  uint64_t touches; /* pages touched in total */
} arena_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000,
                        .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop_requested)
    ;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#ifdef MEMLOAD_HAVE_XENSTORE
static struct xs_handle *xs; /* opened on first use, process lifetime */

static int xs_put(const char *path, const char *val) {
  if (xs == NULL) {
    xs = xs_open(0);
    if (xs == NULL) {
      fprintf(stderr, "memload: cannot connect to xenstore: %s\n",
              strerror(errno));
      return -1;
    }
  }
  if (!xs_write(xs, XBT_NULL, path, val, strlen(val))) {
    fprintf(stderr, "memload: xenstore write of %s failed: %s\n", path,
            strerror(errno));
    return -1;
  }
  return 0;
}
#else
static int xs_put(const char *path, const char *val) {
  (void)val;
  fprintf(stderr, "memload: built without libxenstore, cannot write %s\n",
          path);
  return -1;
}
#endif

static size_t arena_mib(const arena_t *a) { return a->n * a->chunk_mib; }

static void report(const opts_t *o, const arena_t *a, const char *phase,
                   double t0) {
  if (!o->quiet)
    printf("memload: t=%.1f allocated_mib=%zu phase=%s\n", now_s() - t0,
           arena_mib(a), phase);
  fflush(stdout);
  if (o->status != NULL) {
    char v[64];
    snprintf(v, sizeof(v), "%zu %s", arena_mib(a), phase);
    xs_put(o->status, v);
  }
}

static int arena_push(arena_t *a) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    unsigned char **c = realloc(a->chunk, cap * sizeof(*c));
    if (c == NULL)
      return -1;
    a->chunk = c;
    a->cap = cap;
  }
  size_t len = (size_t)a->chunk_mib * MIB;
  unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return -1;
  /* First half of each page random, second half zero (already zero). */
  for (size_t off = 0; off < len; off += PAGE) {
    uint64_t *w = (uint64_t *)(p + off);
    for (size_t i = 0; i < PAGE / 2 / sizeof(uint64_t); i++)
      w[i] = xorshift(&a->rng);
  }
  a->chunk[a->n++] = p;
  return 0;
}

static void arena_pop(arena_t *a) {
  if (a->n == 0)
    return;
  munmap(a->chunk[--a->n], (size_t)a->chunk_mib * MIB);
}

static void arena_touch(arena_t *a) {
  size_t len = (size_t)a->chunk_mib * MIB;
  for (size_t c = 0; c < a->n && !stop_requested; c++) {
    for (size_t off = 0; off < len; off += PAGE) {
      uint64_t *w = (uint64_t *)(a->chunk[c] + off);
      w[0] += 1;
    }
    a->touches += len / PAGE;
  }
}

/* Touches for `seconds` (0 with forever = until a signal). */
static void hold(const opts_t *o, arena_t *a, unsigned seconds, bool forever) {
  double end = now_s() + seconds;
  while (!stop_requested && (forever || now_s() < end)) {
    arena_touch(a);
    sleep_ms(o->touch_ms);
  }
}

/* Touching between steps keeps the working set hot while it grows. */
static void pause_step(const opts_t *o, arena_t *a) {
  double end = now_s() + o->interval_ms / 1000.0;
  arena_touch(a);
  while (!stop_requested && now_s() < end)
    sleep_ms(o->interval_ms < 50 ? o->interval_ms : 50);
}

static int run_mono(const opts_t *o, unsigned low, unsigned high) {
  arena_t a = {.chunk_mib = o->step_mib, .rng = 0x9e3779b97f4a7c15ull};
  double t0 = now_s();
  int rc = 0;
  while (!stop_requested && arena_mib(&a) + o->step_mib <= low) {
    if (arena_push(&a) != 0)
      goto oom;
  }
  report(o, &a, "low", t0);
  while (!stop_requested && arena_mib(&a) + o->step_mib <= high) {
    if (arena_push(&a) != 0)
      goto oom;
    report(o, &a, "up", t0);
    pause_step(o, &a);
  }
  report(o, &a, "high", t0);
  hold(o, &a, o->hold_s, false);
  while (!stop_requested && arena_mib(&a) >= low + o->step_mib) {
    arena_pop(&a);
    report(o, &a, "down", t0);
    pause_step(o, &a);
  }
  report(o, &a, "done", t0);
  hold(o, &a, o->linger_s, false);
  goto out;
oom:
  fprintf(stderr, "memload: mmap of %u MiB failed at %zu MiB: %s\n",
          o->step_mib, arena_mib(&a), strerror(errno));
  report(o, &a, "oom", t0);
  rc = 1;
out:
  if (!o->quiet)
    printf("memload: touched %" PRIu64 " pages in %.1f s\n", a.touches,
           now_s() - t0);
  while (a.n > 0)
    arena_pop(&a);
  free(a.chunk);
  return rc;
}

static int run_static(const opts_t *o, unsigned size) {
  arena_t a = {.chunk_mib = o->step_mib, .rng = 0x2545f4914f6cdd1dull};
  double t0 = now_s();
  int rc = 0;
  while (!stop_requested && arena_mib(&a) + o->step_mib <= size) {
    if (arena_push(&a) != 0) {
      fprintf(stderr, "memload: mmap failed at %zu MiB: %s\n", arena_mib(&a),
              strerror(errno));
      rc = 1;
      break;
    }
  }
  report(o, &a, rc ? "oom" : "static", t0);
  if (rc == 0)
    hold(o, &a, o->hold_s, o->hold_s == 0);
  if (!o->quiet)
    printf("memload: touched %" PRIu64 " pages in %.1f s\n", a.touches,
           now_s() - t0);
  while (a.n > 0)
    arena_pop(&a);
  free(a.chunk);
  return rc;
}

/* Records that swing between "nearly idle" and "thrashing" from one
 * publish to the next: the worst case for a balancer that follows every
 * sample. The record is produced by the policy library's own formatter, so
 * it is exactly what guestmem would write. */
static int run_fake_client(const opts_t *o) {
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  uint64_t rng = 0x853c49e6748fea9bull;
  const uint64_t total_kib = 1024 * 1024;
  double t0 = now_s();
  double worst = 0, sum = 0;
  unsigned n = 0;
  while (!stop_requested && (o->count == 0 || n < o->count)) {
    uint64_t r = xorshift(&rng);
    bool busy = (r & 1) != 0;
    uint64_t used_kib =
        busy ? total_kib * 9 / 10 : total_kib / 8 + (r >> 8) % (total_kib / 8);
    s.have = 0;
    s.v[MB_F_MEMTOTAL] = total_kib;
    s.v[MB_F_MEMFREE] = total_kib - used_kib;
    s.v[MB_F_MEMAVAILABLE] = total_kib - used_kib;
    s.v[MB_F_COMMITTED_AS] = used_kib + (busy ? total_kib / 2 : 0);
    s.v[MB_F_ANONPAGES] = used_kib * 3 / 4;
    s.v[MB_F_SWAPTOTAL] = 512 * 1024;
    s.v[MB_F_SWAPFREE] = busy ? 256 * 1024 : 512 * 1024;
    s.v[MB_F_PSWPIN] += busy ? 2000 + (r >> 20) % 2000 : 0;
    s.v[MB_F_PSWPOUT] += busy ? 2000 + (r >> 30) % 2000 : 0;
    s.v[MB_F_PGMAJFAULT] += busy ? 500 : 0;
    static const mb_field_t set[] = {
        MB_F_MEMTOTAL,  MB_F_MEMFREE,   MB_F_MEMAVAILABLE, MB_F_COMMITTED_AS,
        MB_F_ANONPAGES, MB_F_SWAPTOTAL, MB_F_SWAPFREE,     MB_F_PSWPIN,
        MB_F_PSWPOUT,   MB_F_PGMAJFAULT};
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
      s.have |= (uint64_t)1 << set[i];
    s.seq++;
    s.uptime_ms = (uint64_t)((now_s() - t0) * 1000.0);
    s.urgent = busy;
    char rec[MB_RECORD_MAX];
    if (mb_record_format(&s, rec, sizeof(rec)) < 0) {
      fprintf(stderr, "memload: record does not fit in %d bytes\n",
              MB_RECORD_MAX);
      return 1;
    }
    double t = now_s();
    if (xs_put(o->key, rec) != 0)
      return 1;
    double dt = now_s() - t;
    sum += dt;
    if (dt > worst)
      worst = dt;
    n++;
    sleep_ms(o->pub_ms);
  }
  double el = now_s() - t0;
  printf("memload: fake-client published %u records in %.1f s (%.1f/s), write "
         "latency "
         "mean %.2f ms max %.2f ms\n",
         n, el, el > 0 ? n / el : 0.0, n ? sum / n * 1000.0 : 0.0,
         worst * 1000.0);
  return 0;
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: membal-memload mono LOW HIGH [options]   grow LOW->HIGH MiB, "
      "hold, free to LOW\n"
      "       membal-memload static SIZE [options]     hold SIZE MiB, keep "
      "touching\n"
      "       membal-memload fake-client [options]     publish synthetic stats "
      "records\n"
      "options:\n"
      "  -s, --step MIB        allocation step (default 16)\n"
      "  -i, --interval MS     time between steps (default 250)\n"
      "  -H, --hold S          mono: seconds at HIGH (default 30);\n"
      "                        static: seconds in total (default 0 = until "
      "killed)\n"
      "  -l, --linger S        mono: seconds at LOW after the way down "
      "(default 0)\n"
      "  -t, --touch MS        pause between touch passes (default 200)\n"
      "  -S, --status KEY      write \"<MiB> <phase>\" to this xenstore node\n"
      "  -p, --period MS       fake-client: time between records (default "
      "100)\n"
      "  -n, --count N         fake-client: records to publish (default 0 = "
      "until killed)\n"
      "  -k, --key PATH        fake-client: node (default data/membal/stats, "
      "relative to\n"
      "                        the domain's home)\n"
      "  -q, --quiet           no progress lines\n");
}

/* Strict unsigned parse: the whole string, decimal, within [min, max]. */
static int parse_uint(const char *what, const char *s, unsigned min,
                      unsigned max, unsigned *out) {
  char *end;
  errno = 0;
  if (s == NULL || *s == '\0' || *s == '-')
    goto bad;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    goto bad;
  *out = (unsigned)v;
  return 0;
bad:
  fprintf(stderr, "memload: %s must be a whole number in [%u, %u], got '%s'\n",
          what, min, max, s ? s : "");
  return -1;
}

int main(int argc, char **argv) {
  opts_t o = {.step_mib = 16,
              .interval_ms = 250,
              .hold_s = 30,
              .touch_ms = 200,
              .pub_ms = 100,
              .key = "data/membal/stats"};
  bool hold_given = false;
  static const struct option lo[] = {{"step", required_argument, NULL, 's'},
                                     {"interval", required_argument, NULL, 'i'},
                                     {"hold", required_argument, NULL, 'H'},
                                     {"linger", required_argument, NULL, 'l'},
                                     {"touch", required_argument, NULL, 't'},
                                     {"status", required_argument, NULL, 'S'},
                                     {"period", required_argument, NULL, 'p'},
                                     {"count", required_argument, NULL, 'n'},
                                     {"key", required_argument, NULL, 'k'},
                                     {"quiet", no_argument, NULL, 'q'},
                                     {"help", no_argument, NULL, 'h'},
                                     {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "s:i:H:l:t:S:p:n:k:qh", lo, NULL)) !=
         -1) {
    int r = 0;
    switch (c) {
    case 's':
      r = parse_uint("--step", optarg, 1, 4096, &o.step_mib);
      break;
    case 'i':
      r = parse_uint("--interval", optarg, 0, 3600000, &o.interval_ms);
      break;
    case 'H':
      r = parse_uint("--hold", optarg, 0, 86400 * 365, &o.hold_s);
      hold_given = true;
      break;
    case 'l':
      r = parse_uint("--linger", optarg, 0, 86400 * 365, &o.linger_s);
      break;
    case 't':
      r = parse_uint("--touch", optarg, 0, 3600000, &o.touch_ms);
      break;
    case 'S':
      o.status = optarg;
      break;
    case 'p':
      r = parse_uint("--period", optarg, 0, 3600000, &o.pub_ms);
      break;
    case 'n':
      r = parse_uint("--count", optarg, 0, UINT32_MAX, &o.count);
      break;
    case 'k':
      o.key = optarg;
      break;
    case 'q':
      o.quiet = true;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
    if (r != 0)
      return 2;
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  const char *mode = argv[optind];
  int nargs = argc - optind - 1;
  char **args = argv + optind + 1;
  if (strcmp(mode, "mono") == 0 && nargs == 2) {
    unsigned low, high;
    if (parse_uint("LOW", args[0], 0, 1u << 20, &low) ||
        parse_uint("HIGH", args[1], 1, 1u << 20, &high))
      return 2;
    if (low > high) {
      fprintf(stderr, "memload: LOW (%u) must not exceed HIGH (%u)\n", low,
              high);
      return 2;
    }
    return run_mono(&o, low, high);
  }
  if (strcmp(mode, "static") == 0 && nargs == 1) {
    unsigned size;
    if (parse_uint("SIZE", args[0], 1, 1u << 20, &size))
      return 2;
    if (!hold_given)
      o.hold_s = 0;
    return run_static(&o, size);
  }
  if (strcmp(mode, "fake-client") == 0 && nargs == 0)
    return run_fake_client(&o);
  fprintf(stderr, "memload: unknown mode or wrong number of arguments: '%s'\n",
          mode);
  usage(stderr);
  return 2;
}
