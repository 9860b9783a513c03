/*
 * The sim backend through backend.h against a real xenstored: host and
 * domain parsing, sorting, target fallbacks, set_target, request counts,
 * the guest-record watch, single-record and name reads, skipped domains
 * reported once. Run by tests/backends/test_backend_sim.sh, which
 * starts the xenstored (XENSTORED_PATH points at it).
 */
#define _GNU_SOURCE /* clock_gettime */
#include "backend.h"

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

static struct xs_handle *xs; /* the test's own connection (guests, sim) */

static void put(const char *path, const char *val) {
  CU_ASSERT_FATAL(xs_write(xs, XBT_NULL, path, val, (unsigned)strlen(val)));
}

static char *get(const char *path) {
  unsigned len = 0;
  return xs_read(xs, XBT_NULL, path, &len);
}

static void dom(unsigned id, const char *body) {
  char path[64];
  snprintf(path, sizeof(path), "/tool/membal-sim/dom/%u", id);
  put(path, body);
}

static void record(unsigned id, unsigned seq, int urgent) {
  char path[96], rec[256];
  snprintf(path, sizeof(path), "/local/domain/%u/data/membal/stats", id);
  snprintf(rec, sizeof(rec),
           "membal 1\nseq %u\nuptime_ms %u\nurgent %d\nMemTotal 1000\n"
           "MemFree 400\npswpin 3\n",
           seq, seq * 1000, urgent);
  put(path, rec);
}

static mb_backend_t *open_sim(void (*log)(void *, int, const char *),
                              void *ctx) {
  char err[256] = "";
  mb_backend_opts_t o = {.kind = "sim", .log = log, .log_ctx = ctx};
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  if (b == NULL)
    fprintf(stderr, "open: %s\n", err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  return b;
}

static void reset_store(void) {
  xs_rm(xs, XBT_NULL, "/tool/membal-sim");
  for (unsigned id = 1; id < 40; id++) {
    char path[64];
    snprintf(path, sizeof(path), "/local/domain/%u", id);
    xs_rm(xs, XBT_NULL, path);
  }
}

static void test_open_bad_socket(void) {
  char err[256] = "";
  mb_backend_opts_t o = {.kind = "sim",
                         .xenstore_path = "/nonexistent/xenstored.sock"};
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  CU_ASSERT_PTR_NULL(b);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/xenstored.sock"));
  mb_backend_close(b);
}

static void test_host(void) {
  reset_store();
  mb_backend_t *b = open_sim(NULL, NULL);
  mb_hostinfo_t h;
  char err[256] = "";
  CU_ASSERT_EQUAL(mb_backend_host(b, &h, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "/tool/membal-sim/host missing"));

  put("/tool/membal-sim/host", "total_kib 8000\nfree_kib 1000\nnodes 2\n"
                               "node0_total_kib 5000\nnode1_free_kib 300\n"
                               "future_key 7\n");
  CU_ASSERT_EQUAL_FATAL(mb_backend_host(b, &h, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(h.total_kib, 8000);
  CU_ASSERT_EQUAL(h.free_kib, 1000);
  CU_ASSERT_EQUAL(h.nr_nodes, 2);
  CU_ASSERT_EQUAL(h.node_total_kib[0], 5000);
  CU_ASSERT_EQUAL(h.node_free_kib[1], 300);

  put("/tool/membal-sim/host", "total_kib 100\nfree_kib 200\n");
  CU_ASSERT_EQUAL(mb_backend_host(b, &h, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "free_kib > total_kib"));
  put("/tool/membal-sim/host", "total_kib 0x100\nfree_kib 2\n");
  CU_ASSERT_EQUAL(mb_backend_host(b, &h, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "total_kib is not a number"));
  put("/tool/membal-sim/host", "total_kib 100\n");
  CU_ASSERT_EQUAL(mb_backend_host(b, &h, err, sizeof(err)), -1);
  mb_backend_close(b);
}

static void test_list_and_requests(void) {
  reset_store();
  put("/tool/membal-sim/host", "total_kib 8000\nfree_kib 1000\n");
  /* written out of order; 5 without target_kib (memory/target is read), 7
   * without either (target = current), 9 with a record, 0 is dom0 */
  dom(9, "name nine\ncurrent_kib 900\nmax_kib 1900\ntarget_kib 850\n"
         "node_mask 2\n");
  dom(5, "name five\ncurrent_kib 500\nmax_kib 1500\n");
  dom(0, "name Domain-0\ncurrent_kib 100\nmax_kib 100\n");
  dom(7, "name seven\ncurrent_kib 700\nmax_kib 1700\n");
  put("/local/domain/5/memory/target", "450");
  record(9, 4, 0);
  record(0, 1, 0); /* dom0's record is never read */

  mb_backend_t *b = open_sim(NULL, NULL);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  char err[256] = "";
  uint64_t q0 = mb_backend_requests(b);
  CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
  uint64_t q = mb_backend_requests(b) - q0;
  CU_ASSERT_EQUAL_FATAL(n, 4);
  CU_ASSERT_EQUAL(d[0].domid, 0);
  CU_ASSERT_EQUAL(d[1].domid, 5);
  CU_ASSERT_EQUAL(d[2].domid, 7);
  CU_ASSERT_EQUAL(d[3].domid, 9);
  CU_ASSERT_STRING_EQUAL(d[3].name, "nine");
  CU_ASSERT_EQUAL(d[0].sample_status, MB_SAMPLE_NONE);
  CU_ASSERT_EQUAL(d[1].target_kib, 450);
  CU_ASSERT_EQUAL(d[2].target_kib, 700);
  CU_ASSERT_EQUAL(d[3].target_kib, 850);
  CU_ASSERT_EQUAL(d[3].current_kib, 900);
  CU_ASSERT_EQUAL(d[3].max_kib, 1900);
  CU_ASSERT_EQUAL(d[3].node_mask, 2);
  CU_ASSERT_EQUAL(d[3].sample_status, MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(d[3].sample.seq, 4);
  CU_ASSERT_EQUAL(d[3].sample.v[MB_F_MEMFREE], 400);
  CU_ASSERT_EQUAL(d[1].sample_status, MB_SAMPLE_NONE);
  /* listing 1; dom0 node 1; per guest: dom node + record (+2 XenServer
   * keys when the record is absent) + memory/target when no target_kib:
   * five 1+1+2+1, seven 1+1+2+1, nine 1+1 */
  CU_ASSERT_EQUAL(q, 1 + 1 + 5 + 5 + 2);
  free(d);
  mb_backend_close(b);
}

/* no_records (membal's handle): the same figures, no guest sample, and
 * none of the record reads (1 per guest, +2 for the XenServer keys when
 * the record is absent). */
static void test_list_no_records(void) {
  reset_store();
  put("/tool/membal-sim/host", "total_kib 8000\nfree_kib 1000\n");
  dom(9, "name nine\ncurrent_kib 900\nmax_kib 1900\ntarget_kib 850\n");
  dom(5, "name five\ncurrent_kib 500\nmax_kib 1500\ntarget_kib 450\n");
  dom(0, "name Domain-0\ncurrent_kib 100\nmax_kib 100\n");
  record(9, 4, 0);

  char err[256] = "";
  mb_backend_opts_t o = {.kind = "sim", .no_records = true};
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  uint64_t q0 = mb_backend_requests(b);
  CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
  uint64_t q = mb_backend_requests(b) - q0;
  CU_ASSERT_EQUAL_FATAL(n, 3);
  CU_ASSERT_EQUAL(d[1].domid, 5);
  CU_ASSERT_EQUAL(d[1].target_kib, 450);
  CU_ASSERT_EQUAL(d[2].domid, 9);
  CU_ASSERT_EQUAL(d[2].current_kib, 900);
  CU_ASSERT_EQUAL(d[2].target_kib, 850);
  CU_ASSERT_EQUAL(d[2].max_kib, 1900);
  CU_ASSERT_EQUAL(d[1].sample_status, MB_SAMPLE_NONE);
  CU_ASSERT_EQUAL(d[2].sample_status, MB_SAMPLE_NONE);
  /* listing 1, then one dom node per domain */
  CU_ASSERT_EQUAL(q, 1 + 3);
  free(d);
  mb_backend_close(b);
}

static void test_set_target(void) {
  reset_store();
  dom(3, "name three\ncurrent_kib 500\nmax_kib 1500\n");
  mb_backend_t *b = open_sim(NULL, NULL);
  char err[256] = "";
  CU_ASSERT_EQUAL(mb_backend_set_target(b, 3, 1234, err, sizeof(err)), 0);
  char *t = get("/local/domain/3/memory/target");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_STRING_EQUAL(t, "1234");
  free(t);
  CU_ASSERT_EQUAL(mb_backend_set_target(b, 0, 1234, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "domain 0"));
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL_FATAL(n, 1);
  CU_ASSERT_EQUAL(d[0].target_kib, 1234);
  free(d);
  mb_backend_close(b);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_watch_guest_name(void) {
  reset_store();
  dom(4, "name four\ncurrent_kib 500\nmax_kib 1500\n");
  mb_backend_t *b = open_sim(NULL, NULL);
  char err[256] = "";
  uint32_t id = 99;
  /* the first wait registers the watch; its initial event is not a record */
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 200, &id, err, sizeof(err)), 0);
  double t0 = now_s();
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 300, &id, err, sizeof(err)), 0);
  CU_ASSERT(now_s() - t0 >= 0.25);

  put("/local/domain/4/memory/target", "100"); /* not a guest record */
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 200, &id, err, sizeof(err)), 0);

  record(4, 8, 1);
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 2000, &id, err, sizeof(err)), 1);
  CU_ASSERT_EQUAL(id, 4);
  mb_dominfo_t d;
  char raw[2048];
  CU_ASSERT_EQUAL_FATAL(
      mb_backend_guest(b, 4, &d, raw, sizeof(raw), err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(d.domid, 4);
  CU_ASSERT_EQUAL(d.sample_status, MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(d.sample.seq, 8);
  CU_ASSERT(d.sample.urgent);
  char *want = get("/local/domain/4/data/membal/stats");
  CU_ASSERT_PTR_NOT_NULL_FATAL(want);
  CU_ASSERT_STRING_EQUAL(raw, want);
  free(want);
  char name[MB_NAME_LEN];
  CU_ASSERT_EQUAL(mb_backend_name(b, 4, name, err, sizeof(err)), 0);
  CU_ASSERT_STRING_EQUAL(name, "four");
  CU_ASSERT_EQUAL(mb_backend_name(b, 31, name, err, sizeof(err)), -1);

  /* XenServer keys wake it too */
  put("/local/domain/4/data/meminfo_free", "10");
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 2000, &id, err, sizeof(err)), 1);
  CU_ASSERT_EQUAL(id, 4);
  /* a rejected record is reported as such with its reason */
  put("/local/domain/4/data/membal/stats", "membal 1\nseq 9\n");
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 2000, &id, err, sizeof(err)), 1);
  CU_ASSERT_EQUAL(
      mb_backend_guest(b, 4, &d, raw, sizeof(raw), err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(d.sample_status, MB_SAMPLE_BAD);
  CU_ASSERT(strlen(d.sample_err) > 0);
  mb_backend_close(b);
}

typedef struct {
  int lines;
  char last[256];
} logsink_t;

static void sink(void *ctx, int level, const char *msg) {
  logsink_t *s = ctx;
  s->lines++;
  snprintf(s->last, sizeof(s->last), "%s", msg);
}

static void test_skipped_logged_once(void) {
  reset_store();
  logsink_t s = {0};
  dom(2, "name two\ncurrent_kib 500\nmax_kib 1500\n");
  dom(3, "name bad name\ncurrent_kib 500\nmax_kib 1500\n");
  mb_backend_t *b = open_sim(sink, &s);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  char err[256] = "";
  for (int round = 0; round < 3; round++) {
    CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(d[0].domid, 2);
    free(d);
  }
  CU_ASSERT_EQUAL(s.lines, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(s.last, "domain 3 skipped: invalid name"));
  /* fixed, then broken again: a new line for the new episode */
  dom(3, "name three\ncurrent_kib 500\nmax_kib 1500\n");
  CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(n, 2);
  free(d);
  dom(3, "name three\ncurrent_kib -1\nmax_kib 1500\n");
  CU_ASSERT_EQUAL_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(n, 1);
  free(d);
  CU_ASSERT_EQUAL(s.lines, 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(s.last, "current_kib is not a number"));
  mb_backend_close(b);
}

int main(void) {
  if (getenv("XENSTORED_PATH") == NULL) {
    fprintf(stderr, "XENSTORED_PATH not set: run through "
                    "tests/backends/test_backend_sim.sh\n");
    return 77;
  }
  xs = xs_open(0);
  if (xs == NULL) {
    perror("xs_open");
    return 1;
  }
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("backend_sim", NULL, NULL);
  CU_add_test(s, "host node", test_host);
  CU_add_test(s, "list, fallbacks, request count", test_list_and_requests);
  CU_add_test(s, "list without guest records", test_list_no_records);
  CU_add_test(s, "set_target", test_set_target);
  CU_add_test(s, "watch, guest, name", test_watch_guest_name);
  CU_add_test(s, "skipped domains logged once", test_skipped_logged_once);
  /* last: the socket path given to a backend stays in XENSTORED_PATH */
  CU_add_test(s, "open on a missing socket", test_open_bad_socket);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures();
  CU_cleanup_registry();
  xs_close(xs);
  return failed == 0 ? 0 : 1;
}
