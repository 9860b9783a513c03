/*
 * e2e-setcost DOMID N: (in dom0, before membal runs) what setting a balloon
 * target costs here, in ms, each way timed N times: libxl's call (what the
 * libxl backend used), and its parts done by hand: reading the domain's
 * saved configuration (libxl parses it on every call), the xenstore
 * transaction, the hypercall that raises the maximum, and the two together
 * without libxl (a plain xenstore write). Every call writes the target the
 * domain has, so nothing moves. Prints "<what> min <ms> median <ms> max
 * <ms>" lines.
 */
#define _GNU_SOURCE
#define LIBXL_API_VERSION 0x041300
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxl.h>
#include <xenctrl.h>
#include <xenstore.h>

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *ms, int n, int failed) {
  qsort(ms, (size_t)n, sizeof(*ms), cmp_d);
  printf("%s min %.1f median %.1f max %.1f (%d calls, %d failed)\n", what,
         ms[0], ms[n / 2], ms[n - 1], n, failed);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: e2e-setcost DOMID N\n");
    return 2;
  }
  uint32_t domid = (uint32_t)strtoul(argv[1], NULL, 10);
  int n = atoi(argv[2]);
  if (n < 1 || n > 1000)
    n = 5;
  double *ms = calloc((size_t)n, sizeof(*ms));
  xentoollog_logger_stdiostream *lg =
      xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
  libxl_ctx *ctx = NULL;
  xc_interface *xch = xc_interface_open(NULL, NULL, 0);
  struct xs_handle *xs = xs_open(0);
  if (ms == NULL || lg == NULL || xch == NULL || xs == NULL ||
      libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, (xentoollog_logger *)lg) != 0) {
    fprintf(stderr, "e2e-setcost: cannot open libxl, xenctrl or xenstore\n");
    return 1;
  }
  char tpath[64], mpath[64], vpath[64];
  snprintf(tpath, sizeof(tpath), "/local/domain/%u/memory/target", domid);
  snprintf(mpath, sizeof(mpath), "/local/domain/%u/memory/static-max", domid);
  snprintf(vpath, sizeof(vpath), "/local/domain/%u/memory/videoram", domid);
  unsigned int len = 0;
  char *t = xs_read(xs, XBT_NULL, tpath, &len);
  if (t == NULL) {
    fprintf(stderr, "e2e-setcost: no %s\n", tpath);
    return 1;
  }
  uint64_t target_kib = strtoull(t, NULL, 10);
  free(t);
  printf("domid %u target %llu KiB\n", domid, (unsigned long long)target_kib);
  int failed = 0;

  for (int i = 0; i < n; i++) {
    double t0 = mono_ms();
    failed +=
        libxl_set_memory_target(ctx, domid, (int64_t)target_kib, 0, 1) != 0;
    ms[i] = mono_ms() - t0;
  }
  report("libxl_set_memory_target", ms, n, failed);

  failed = 0;
  for (int i = 0; i < n; i++) {
    double t0 = mono_ms();
    uint8_t *data = NULL;
    int dlen = 0;
    libxl_domain_config cfg;
    libxl_domain_config_init(&cfg);
    if (libxl_userdata_retrieve(ctx, domid, "libxl-json", &data, &dlen) != 0 ||
        data == NULL ||
        libxl_domain_config_from_json(ctx, &cfg, (const char *)data) != 0)
      failed++;
    libxl_domain_config_dispose(&cfg);
    free(data);
    ms[i] = mono_ms() - t0;
  }
  report("config_read_parse", ms, n, failed);

  failed = 0;
  for (int i = 0; i < n; i++) {
    double t0 = mono_ms();
    xs_transaction_t tx = xs_transaction_start(xs);
    char *a = xs_read(xs, tx, tpath, &len);
    char *b = xs_read(xs, tx, mpath, &len);
    char *c = xs_read(xs, tx, vpath, &len);
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)target_kib);
    if (!xs_write(xs, tx, tpath, v, strlen(v)))
      failed++;
    if (!xs_transaction_end(xs, tx, false))
      failed++;
    free(a);
    free(b);
    free(c);
    ms[i] = mono_ms() - t0;
  }
  report("xenstore_transaction", ms, n, failed);

  failed = 0;
  for (int i = 0; i < n; i++) {
    double t0 = mono_ms();
    failed += xc_domain_setmaxmem(xch, domid, target_kib + 1024) != 0;
    ms[i] = mono_ms() - t0;
  }
  report("xc_domain_setmaxmem", ms, n, failed);

  failed = 0;
  for (int i = 0; i < n; i++) {
    double t0 = mono_ms();
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)target_kib);
    failed += xc_domain_setmaxmem(xch, domid, target_kib + 1024) != 0;
    failed += !xs_write(xs, XBT_NULL, tpath, v, strlen(v));
    ms[i] = mono_ms() - t0;
  }
  report("setmaxmem_and_xs_write", ms, n, failed);

  libxl_ctx_free(ctx);
  xtl_logger_destroy((xentoollog_logger *)lg);
  xs_close(xs);
  xc_interface_close(xch);
  free(ms);
  return 0;
}
