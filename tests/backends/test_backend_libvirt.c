/*
 * The libvirt backend against libvirt's own test driver.
 *
 * Two kinds of connection:
 *   test:///<abs>/tests/data/libvirt-host.xml  private state per connection:
 *       the test opens its own connection to the same file and compares what
 *       the backend reports with what libvirt answers directly;
 *   test:///default  state shared by every connection of the process: the
 *       test changes domains behind the backend's back (create, destroy)
 *       and sees what the backend did (target, stats period).
 * The backend's helpers are tested white-box through its internal header
 * (plugins/backends/libvirt/lv_impl.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "libvirt/lv_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef MEMBAL_TEST_DATA
#error MEMBAL_TEST_DATA must name tests/data
#endif

static char host_uri[4096];

/* Log lines the backend sent to its sink. */
static char logbuf[8192];
static int log_lines;

static void capture_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  (void)level;
  size_t len = strlen(logbuf);
  snprintf(logbuf + len, sizeof(logbuf) - len, "%s\n", msg);
  log_lines++;
}

static const mb_dominfo_t *find_dom(const mb_dominfo_t *d, size_t n,
                                    const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(d[i].name, name) == 0)
      return &d[i];
  return NULL;
}

/* Raw statistic of one tag from libvirt directly; -1 when absent. */
static long long raw_stat(virConnectPtr c, const char *name, int tag) {
  virDomainPtr dom = virDomainLookupByName(c, name);
  if (dom == NULL)
    return -1;
  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  int n = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  long long v = -1;
  for (int i = 0; i < n; i++)
    if (ms[i].tag == tag)
      v = (long long)ms[i].val;
  virDomainFree(dom);
  return v;
}

static mb_backend_t *open_backend(const char *uri, unsigned period_s) {
  mb_backend_opts_t o = {.kind = "libvirt",
                         .uri = uri,
                         .log = capture_log,
                         .stats_period_s = period_s};
  char err[256] = "";
  mb_backend_t *b = mb_backend_open(&o, err, sizeof(err));
  if (b == NULL)
    fprintf(stderr, "open %s: %s\n", uri, err);
  return b;
}

/* ------------------------------------------------------------------ */

static void test_hostfile_list(void) {
  mb_backend_t *b = open_backend(host_uri, 0);
  CU_ASSERT_FATAL(b != NULL);
  CU_ASSERT_STRING_EQUAL(mb_backend_kind(b), "libvirt");
  virConnectPtr c = virConnectOpen(host_uri);
  CU_ASSERT_FATAL(c != NULL);

  mb_dominfo_t *d = NULL;
  size_t n = 0;
  char err[256] = "";
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  int nraw = virConnectNumOfDomains(c);
  CU_ASSERT_EQUAL(n, (size_t)nraw);
  CU_ASSERT(n >= 4);
  for (size_t i = 1; i < n; i++)
    CU_ASSERT(d[i - 1].domid < d[i].domid);

  static const char *names[] = {"web", "db", "batch", "legacy"};
  for (size_t k = 0; k < 4; k++) {
    const mb_dominfo_t *x = find_dom(d, n, names[k]);
    CU_ASSERT_FATAL(x != NULL);
    virDomainPtr dom = virDomainLookupByName(c, names[k]);
    CU_ASSERT_FATAL(dom != NULL);
    virDomainInfo di;
    CU_ASSERT_FATAL(virDomainGetInfo(dom, &di) == 0);
    CU_ASSERT_EQUAL(x->domid, virDomainGetID(dom));
    CU_ASSERT_EQUAL(x->max_kib, virDomainGetMaxMemory(dom));
    CU_ASSERT_EQUAL(x->current_kib, di.memory);
    CU_ASSERT_EQUAL(x->target_kib, di.memory);
    virDomainFree(dom);
  }

  /* Sample mapping, value by value against libvirt's own answer. */
  const mb_dominfo_t *web = find_dom(d, n, "web");
  CU_ASSERT_EQUAL_FATAL(web->sample_status, MB_SAMPLE_OK);
  const mb_sample_t *s = &web->sample;
  CU_ASSERT_EQUAL(s->v[MB_F_MEMTOTAL],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_AVAILABLE));
  CU_ASSERT_EQUAL(s->v[MB_F_MEMFREE],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_UNUSED));
  CU_ASSERT_EQUAL(s->v[MB_F_MEMAVAILABLE],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_USABLE));
  CU_ASSERT_EQUAL(s->v[MB_F_CACHED],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_DISK_CACHES));
  CU_ASSERT_EQUAL(s->v[MB_F_PSWPIN],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_SWAP_IN) / 4);
  CU_ASSERT_EQUAL(s->v[MB_F_PGFAULT],
                  raw_stat(c, "web", VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT));
  CU_ASSERT(mb_sample_has(s, MB_F_MEMTOTAL));
  CU_ASSERT(mb_sample_has(s, MB_F_PSWPOUT));
  CU_ASSERT(!mb_sample_has(s, MB_F_COMMITTED_AS));
  CU_ASSERT(!mb_sample_has(s, MB_F_ACTIVE));
  CU_ASSERT_EQUAL(s->seq, 1);

  /* No balloon: no guest statistics. */
  CU_ASSERT_EQUAL(find_dom(d, n, "legacy")->sample_status, MB_SAMPLE_NONE);

  /* NUMA binding: strict and interleave bind, preferred does not. */
  CU_ASSERT_EQUAL(find_dom(d, n, "web")->node_mask, 0x1u);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->node_mask, 0x3u);
  CU_ASSERT_EQUAL(find_dom(d, n, "batch")->node_mask, 0u);
  CU_ASSERT_EQUAL(find_dom(d, n, "legacy")->node_mask, 0u);

  uint32_t web_id = web->domid;
  uint64_t web_max = web->max_kib;
  uint64_t target = web->current_kib / 2;
  free(d);

  /* Unchanged stats: the sequence stays. */
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  CU_ASSERT_EQUAL(find_dom(d, n, "web")->sample.seq, 1);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->sample.seq, 1);
  free(d);

  /* Actuation: the new size shows in current, target and a new sample. */
  CU_ASSERT_EQUAL(mb_backend_set_target(b, web_id, target, err, sizeof(err)),
                  0);
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  web = find_dom(d, n, "web");
  CU_ASSERT_EQUAL(web->current_kib, target);
  CU_ASSERT_EQUAL(web->target_kib, target);
  CU_ASSERT_EQUAL(web->sample.seq, 2);
  CU_ASSERT_EQUAL(web->sample.v[MB_F_MEMTOTAL], target);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->sample.seq, 1);
  free(d);

  /* Refusals carry a reason and print nothing on stderr. */
  fflush(stderr);
  int saved = dup(2);
  char tmpl[] = "/tmp/mb-lv-stderr-XXXXXX";
  int fd = mkstemp(tmpl);
  CU_ASSERT_FATAL(fd >= 0 && saved >= 0);
  dup2(fd, 2);
  err[0] = '\0';
  CU_ASSERT_EQUAL(mb_backend_set_target(b, 4242, 65536, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "4242"));
  err[0] = '\0';
  CU_ASSERT_EQUAL(
      mb_backend_set_target(b, web_id, web_max + 1024, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "web"));
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_END), 0);
  close(fd);
  unlink(tmpl);

  /* Host: node info straight; free estimated (the driver has none for a
   * host file) as total minus what the domains hold. */
  mb_hostinfo_t h;
  CU_ASSERT_FATAL(mb_backend_host(b, &h, err, sizeof(err)) == 0);
  virNodeInfo ni;
  CU_ASSERT_FATAL(virNodeGetInfo(c, &ni) == 0);
  CU_ASSERT_EQUAL(h.total_kib, ni.memory);
  CU_ASSERT_EQUAL(virNodeGetFreeMemory(c), 0);
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  uint64_t held = 0;
  for (size_t i = 0; i < n; i++)
    held += d[i].current_kib;
  free(d);
  CU_ASSERT_EQUAL(h.free_kib, h.total_kib - held);
  CU_ASSERT_EQUAL(h.nr_nodes, 0);

  /* wait_event reports each domain once on this handle's first poll (its
   * starting point, although the list above already read them); then
   * nothing changes and it sleeps out its timeout. */
  struct timespec t0, t1;
  uint32_t domid = 0;
  size_t first = 0;
  while (first < 64 &&
         mb_backend_wait_event(b, 150, &domid, err, sizeof(err)) == 1)
    first++;
  CU_ASSERT_EQUAL(first, n);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CU_ASSERT_EQUAL(mb_backend_wait_event(b, 150, &domid, err, sizeof(err)), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  CU_ASSERT(ms >= 149.0);

  CU_ASSERT(mb_backend_requests(b) > 0);
  virConnectClose(c);
  mb_backend_close(b);
}

static void test_bad_uri(void) {
  mb_backend_opts_t o = {.kind = "libvirt",
                         .uri = "test:///nonexistent/membal-host.xml"};
  char err[256] = "";
  CU_ASSERT_PTR_NULL(mb_backend_open(&o, err, sizeof(err)));
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "test:///nonexistent/membal-host.xml"));
}

/* Independent scan of the capabilities for one cell's memory. */
static uint64_t caps_cell_kib(virConnectPtr c, int cell) {
  char *caps = virConnectGetCapabilities(c);
  uint64_t kib = 0;
  char key[32];
  snprintf(key, sizeof(key), "<cell id='%d'>", cell);
  char *at = caps ? strstr(caps, key) : NULL;
  if (at != NULL) {
    at = strstr(at, "<memory");
    unsigned long long v;
    if (at != NULL && sscanf(at, "<memory unit='KiB'>%llu<", &v) == 1)
      kib = v;
  }
  free(caps);
  return kib;
}

static const char numa_dom_xml[] =
    "<domain type='test'><name>mbt-numa</name>"
    "<memory unit='KiB'>1048576</memory>"
    "<currentMemory unit='KiB'>786432</currentMemory>"
    "<vcpu>1</vcpu>"
    "<numatune><memory mode='strict' nodeset='1'/></numatune>"
    "<os><type>hvm</type></os>"
    "<devices><memballoon model='virtio'/></devices></domain>";

static void test_default_shared(void) {
  virConnectPtr c = virConnectOpen("test:///default");
  CU_ASSERT_FATAL(c != NULL);
  virDomainPtr dom = virDomainCreateXML(c, numa_dom_xml, 0);
  CU_ASSERT_FATAL(dom != NULL);
  uint32_t id = virDomainGetID(dom);

  logbuf[0] = '\0';
  log_lines = 0;
  mb_backend_t *b = open_backend("test:///default", 7);
  CU_ASSERT_FATAL(b != NULL);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  char err[256] = "";
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  const mb_dominfo_t *x = find_dom(d, n, "mbt-numa");
  CU_ASSERT_FATAL(x != NULL);
  CU_ASSERT_EQUAL(x->domid, id);
  CU_ASSERT_EQUAL(x->node_mask, 0x2u);
  free(d);

  /* The stats period was switched on, live, and said so once. */
  char *xml = virDomainGetXMLDesc(dom, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(xml, "<stats period='7'/>"));
  free(xml);
  CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "mbt-numa"));
  CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "set to 7 s"));
  int lines = log_lines;
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  free(d);
  CU_ASSERT_EQUAL(log_lines, lines);

  /* The backend's target reaches the domain. */
  CU_ASSERT_EQUAL(mb_backend_set_target(b, id, 524288, err, sizeof(err)), 0);
  virDomainInfo di;
  CU_ASSERT_FATAL(virDomainGetInfo(dom, &di) == 0);
  CU_ASSERT_EQUAL(di.memory, 524288);

  /* Per-node memory, as libvirt reports it. */
  mb_hostinfo_t h;
  CU_ASSERT_FATAL(mb_backend_host(b, &h, err, sizeof(err)) == 0);
  unsigned long long cf[MB_MAX_NODES];
  int cells = virNodeGetCellsFreeMemory(c, cf, 0, MB_MAX_NODES);
  CU_ASSERT_FATAL(cells >= 1);
  CU_ASSERT_EQUAL(h.nr_nodes, (unsigned)cells);
  for (int i = 0; i < cells; i++) {
    CU_ASSERT_EQUAL(h.node_free_kib[i], cf[i] / 1024);
    CU_ASSERT_EQUAL(h.node_total_kib[i], caps_cell_kib(c, i));
    CU_ASSERT(h.node_total_kib[i] > 0);
  }

  /* Gone behind the backend's back: dropped, and set_target refuses. */
  CU_ASSERT_FATAL(virDomainDestroy(dom) == 0);
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  CU_ASSERT_PTR_NULL(find_dom(d, n, "mbt-numa"));
  free(d);
  CU_ASSERT_EQUAL(mb_backend_set_target(b, id, 524288, err, sizeof(err)), -1);

  virDomainFree(dom);
  mb_backend_close(b);
  virConnectClose(c);
}

/* ------------------------------------------------------------------ */
/* White box                                                           */

static void test_nodeset(void) {
  uint32_t m = 0xdead;
  CU_ASSERT(lv_parse_nodeset("0", &m) == 0 && m == 0x1);
  CU_ASSERT(lv_parse_nodeset("0-2,5", &m) == 0 && m == 0x27);
  CU_ASSERT(lv_parse_nodeset("0-3,^1", &m) == 0 && m == 0xd);
  CU_ASSERT(lv_parse_nodeset("15", &m) == 0 && m == 0x8000);
  m = 0xdead;
  CU_ASSERT(lv_parse_nodeset("", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("16", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("3-1", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("1-", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("a", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("1,,2", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("1;2", &m) == -1);
  CU_ASSERT(lv_parse_nodeset("99999999999999999999", &m) == -1);
  CU_ASSERT_EQUAL(m, 0xdead); /* untouched on error */
}

static void test_period_off(void) {
  CU_ASSERT(lv_period_off("<devices><memballoon model='virtio'/></devices>"));
  CU_ASSERT(lv_period_off("<memballoon model='virtio'>\n<address "
                          "type='pci'/>\n</memballoon>"));
  CU_ASSERT(lv_period_off("<memballoon model='virtio'>\n<stats "
                          "period='0'/>\n</memballoon>"));
  CU_ASSERT(!lv_period_off("<memballoon model='virtio'>\n<stats "
                           "period='5'/>\n</memballoon>"));
  CU_ASSERT(lv_period_off("<memballoon model='virtio-non-transitional' "
                          "autodeflate='on'/>"));
  CU_ASSERT(!lv_period_off("<memballoon model='none'/>"));
  CU_ASSERT(!lv_period_off("<domain/>"));
  /* a <stats> of another element after the balloon does not count */
  CU_ASSERT(lv_period_off("<memballoon model='virtio'></memballoon><x><stats "
                          "period='5'/></x>"));
}

static int mkstats(virDomainMemoryStatStruct *ms, const int *tags,
                   const unsigned long long *vals, int n) {
  for (int i = 0; i < n; i++) {
    ms[i].tag = tags[i];
    ms[i].val = vals[i];
  }
  return n;
}

static void test_fill_sample(void) {
  lv_dom_state_t st;
  memset(&st, 0, sizeof(st));
  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  mb_sample_t s;
  char e[160] = "";
  const int tags[] = {
      VIR_DOMAIN_MEMORY_STAT_SWAP_IN,     VIR_DOMAIN_MEMORY_STAT_SWAP_OUT,
      VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,
      VIR_DOMAIN_MEMORY_STAT_UNUSED,      VIR_DOMAIN_MEMORY_STAT_AVAILABLE,
      VIR_DOMAIN_MEMORY_STAT_USABLE,      VIR_DOMAIN_MEMORY_STAT_DISK_CACHES,
      VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON,
      VIR_DOMAIN_MEMORY_STAT_RSS};
  unsigned long long v[] = {4096,   8192,   17,      9000,    100000, 1000000,
                            300000, 150000, 1700000, 1048576, 1100000};
  int n = mkstats(ms, tags, v, 11);
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(s.v[MB_F_PSWPIN], 1024);
  CU_ASSERT_EQUAL(s.v[MB_F_PSWPOUT], 2048);
  CU_ASSERT_EQUAL(s.v[MB_F_PGMAJFAULT], 17);
  CU_ASSERT_EQUAL(s.v[MB_F_PGFAULT], 9000);
  CU_ASSERT_EQUAL(s.v[MB_F_MEMFREE], 100000);
  CU_ASSERT_EQUAL(s.v[MB_F_MEMTOTAL], 1000000);
  CU_ASSERT_EQUAL(s.v[MB_F_MEMAVAILABLE], 300000);
  CU_ASSERT_EQUAL(s.v[MB_F_CACHED], 150000);
  CU_ASSERT_EQUAL(s.seq, 1);
  CU_ASSERT(!mb_sample_has(&s, MB_F_BUFFERS));
  CU_ASSERT(!mb_sample_has(&s, MB_F_COMMITTED_AS));

  /* Same stats: same seq. New last_update alone: next seq. */
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(s.seq, 1);
  ms[8].val += 5;
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(s.seq, 2);

  /* Hostile guest: totals that cannot be. */
  ms[5].val = 4000000; /* available > max */
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_BAD);
  CU_ASSERT_PTR_NOT_NULL(strstr(e, "available"));
  CU_ASSERT_EQUAL(s.have, 0);
  ms[5].val = 1000000;
  ms[4].val = 1000001; /* unused > available */
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_BAD);
  CU_ASSERT_PTR_NOT_NULL(strstr(e, "unused"));
  ms[4].val = 100000;
  ms[6].val = ~0ull; /* usable > available */
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_BAD);
  CU_ASSERT_PTR_NOT_NULL(strstr(e, "usable"));
  ms[6].val = 300000;
  ms[7].val = 1000001; /* disk_caches > available */
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_BAD);
  CU_ASSERT_PTR_NOT_NULL(strstr(e, "disk_caches"));

  /* Unknown tags are ignored, not a crash. */
  ms[0].tag = 999;
  ms[1].tag = -3;
  ms[7].val = 1000;
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_OK);
  CU_ASSERT(!mb_sample_has(&s, MB_F_PSWPIN));

  /* Period 0: only host-side figures: no sample. */
  const int htags[] = {VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON,
                       VIR_DOMAIN_MEMORY_STAT_RSS};
  unsigned long long hv[] = {1048576, 1000};
  n = mkstats(ms, htags, hv, 2);
  CU_ASSERT_EQUAL(lv_fill_sample(&st, ms, n, 2097152, &s, e, sizeof(e)),
                  MB_SAMPLE_NONE);
}

static const char gone_dom_xml[] =
    "<domain type='test'><name>mbt-gone</name>"
    "<memory unit='KiB'>524288</memory><vcpu>1</vcpu>"
    "<os><type>hvm</type></os>"
    "<devices><memballoon model='virtio'/></devices></domain>";

/* A domain that disappears between the listing and its queries. */
static void test_gone_mid_round(void) {
  char err[256] = "";
  mb_backend_opts_t o = {.kind = "libvirt", .uri = "test:///default"};
  lv_priv_t *p = lv_open(&o, err, sizeof(err));
  CU_ASSERT_FATAL(p != NULL);
  virConnectPtr c = virConnectOpen("test:///default");
  virDomainPtr mine = virDomainCreateXML(c, gone_dom_xml, 0);
  CU_ASSERT_FATAL(mine != NULL);
  virDomainPtr listed = virDomainLookupByName(p->conn, "mbt-gone");
  CU_ASSERT_FATAL(listed != NULL);
  CU_ASSERT_FATAL(virDomainDestroy(mine) == 0);
  mb_dominfo_t d;
  CU_ASSERT_EQUAL(lv_one(p, listed, &d, err, sizeof(err)), 0);
  virDomainFree(listed);
  virDomainFree(mine);
  virConnectClose(c);
  lv_close(p);
}

/* After the connection went away, the next call re-opens it and says so. */
static void test_reconnect(void) {
  char err[256] = "";
  logbuf[0] = '\0';
  log_lines = 0;
  mb_backend_opts_t o = {
      .kind = "libvirt", .uri = host_uri, .log = capture_log};
  lv_priv_t *p = lv_open(&o, err, sizeof(err));
  CU_ASSERT_FATAL(p != NULL);
  CU_ASSERT_EQUAL(log_lines, 0);
  lv_release(p, true); /* as when found dead */
  CU_ASSERT_PTR_NULL(p->conn);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  CU_ASSERT_EQUAL(lv_list(p, &d, &n, err, sizeof(err)), 0);
  CU_ASSERT(n >= 4);
  free(d);
  /* Exactly one "re-established", and it comes first. */
  CU_ASSERT(log_lines >= 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "re-established"));
  CU_ASSERT_PTR_NULL(
      strstr(strstr(logbuf, "re-established") + 1, "re-established"));
  CU_ASSERT_EQUAL(strncmp(logbuf, "libvirt: connection to ", 23), 0);
  lv_close(p);
}

/* No push from libvirt: wait_event polls the balloon statistics and reports
 * the domain whose statistics changed, also when the reading handle read
 * the change first (the two share sequence numbers, not what each has
 * reported); guest() gives its sample and a membal record of it; the
 * reading handle sees the same sequence. */
static const char poll_dom_xml[] =
    "<domain type='test'><name>mbt-poll</name>"
    "<memory unit='KiB'>1048576</memory>"
    "<currentMemory unit='KiB'>786432</currentMemory><vcpu>1</vcpu>"
    "<os><type>hvm</type></os>"
    "<devices><memballoon model='virtio'/></devices></domain>";

static void test_wait_event_poll(void) {
  virConnectPtr c = virConnectOpen("test:///default");
  CU_ASSERT_FATAL(c != NULL);
  virDomainPtr dom = virDomainCreateXML(c, poll_dom_xml, 0);
  CU_ASSERT_FATAL(dom != NULL);
  uint32_t id = virDomainGetID(dom);
  mb_backend_t *rd = open_backend("test:///default", 0);
  mb_backend_t *wb = open_backend("test:///default", 0);
  CU_ASSERT_FATAL(rd != NULL && wb != NULL);
  char err[256] = "";
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  CU_ASSERT_FATAL(mb_backend_list(rd, &d, &n, err, sizeof(err)) == 0);
  free(d);

  /* The waiting handle has reported nothing yet: its first poll reports
   * every domain once (the watcher's starting point), mbt-poll included,
   * although the reader's list already numbered its sample. */
  uint32_t got = 0;
  bool first_seen = false;
  int r = 0;
  for (int i = 0; i < 64 && (r = mb_backend_wait_event(wb, 300, &got, err,
                                                       sizeof(err))) == 1;
       i++)
    first_seen = first_seen || got == id;
  CU_ASSERT_EQUAL(r, 0);
  CU_ASSERT(first_seen);

  /* Nothing changed since: the wait times out. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CU_ASSERT_EQUAL(mb_backend_wait_event(wb, 300, &got, err, sizeof(err)), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  CU_ASSERT(ms >= 299.0 && ms < 2000.0);

  /* The guest's statistics change (the test driver's follow the balloon)
   * and the reader reads them first, as vmmem's read callback often does:
   * still reported within a poll period, this domain only. */
  CU_ASSERT_FATAL(virDomainSetMemory(dom, 655360) == 0);
  CU_ASSERT_FATAL(mb_backend_list(rd, &d, &n, err, sizeof(err)) == 0);
  free(d);
  r = 0;
  for (int i = 0; i < 4 && r == 0; i++)
    r = mb_backend_wait_event(wb, 1000, &got, err, sizeof(err));
  CU_ASSERT_EQUAL_FATAL(r, 1);
  CU_ASSERT_EQUAL(got, id);
  CU_ASSERT_EQUAL(mb_backend_wait_event(wb, 100, &got, err, sizeof(err)), 0);

  mb_dominfo_t g;
  char raw[MB_RECORD_MAX];
  CU_ASSERT_FATAL(
      mb_backend_guest(wb, id, &g, raw, sizeof(raw), err, sizeof(err)) == 0);
  CU_ASSERT_EQUAL(g.domid, id);
  char nm[MB_NAME_LEN] = "";
  CU_ASSERT_EQUAL(mb_backend_name(wb, id, nm, err, sizeof(err)), 0);
  CU_ASSERT_STRING_EQUAL(nm, "mbt-poll");
  CU_ASSERT_EQUAL_FATAL(g.sample_status, MB_SAMPLE_OK);
  CU_ASSERT_EQUAL(g.sample.v[MB_F_MEMTOTAL], 655360);
  CU_ASSERT_EQUAL(g.current_kib, 655360);
  long long lu = raw_stat(c, "mbt-poll", VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE);
  CU_ASSERT(lu > 0);
  CU_ASSERT_EQUAL(g.sample.uptime_ms, (uint64_t)lu * 1000);
  mb_sample_t parsed;
  char perr[160] = "";
  CU_ASSERT_FATAL(
      mb_record_parse(raw, strlen(raw), &parsed, perr, sizeof(perr)) == 0);
  CU_ASSERT_EQUAL(parsed.seq, g.sample.seq);
  CU_ASSERT_EQUAL(parsed.v[MB_F_MEMTOTAL], 655360);

  /* The reader, on the same backend, sees the same sequence number. */
  CU_ASSERT_FATAL(mb_backend_list(rd, &d, &n, err, sizeof(err)) == 0);
  const mb_dominfo_t *x = find_dom(d, n, "mbt-poll");
  CU_ASSERT_FATAL(x != NULL);
  CU_ASSERT_EQUAL(x->sample.seq, g.sample.seq);
  free(d);

  /* Gone: guest() and name() say so. */
  CU_ASSERT_FATAL(virDomainDestroy(dom) == 0);
  CU_ASSERT_EQUAL(
      mb_backend_guest(wb, id, &g, raw, sizeof(raw), err, sizeof(err)), -1);
  CU_ASSERT_EQUAL(mb_backend_name(wb, id, nm, err, sizeof(err)), -1);
  virDomainFree(dom);
  mb_backend_close(wb);
  mb_backend_close(rd);
  virConnectClose(c);
}

/* A name that cannot be a collectd instance (blank, too long): the domain
 * is left alone, said once; name() refuses it too. */
static void test_bad_names(void) {
  static const char *names[] = {
      "mbt bad",
      "mbt-0123456789012345678901234567890123456789012345678901234567890"};
  virConnectPtr c = virConnectOpen("test:///default");
  CU_ASSERT_FATAL(c != NULL);
  virDomainPtr dom[2];
  for (int i = 0; i < 2; i++) {
    char xml[1024];
    snprintf(xml, sizeof(xml),
             "<domain type='test'><name>%s</name>"
             "<memory unit='KiB'>524288</memory><vcpu>1</vcpu>"
             "<os><type>hvm</type></os>"
             "<devices><memballoon model='virtio'/></devices></domain>",
             names[i]);
    dom[i] = virDomainCreateXML(c, xml, 0);
    CU_ASSERT_FATAL(dom[i] != NULL);
  }
  logbuf[0] = '\0';
  log_lines = 0;
  mb_backend_t *b = open_backend("test:///default", 0);
  CU_ASSERT_FATAL(b != NULL);
  char err[256] = "";
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  for (int round = 0; round < 2; round++) {
    CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
    for (size_t i = 0; i < n; i++)
      for (int k = 0; k < 2; k++)
        CU_ASSERT(d[i].domid != virDomainGetID(dom[k]));
    CU_ASSERT(n >= 1); /* the driver's own "test" domain stays */
    free(d);
  }
  CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "blank"));
  CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "longer than 63"));
  int said = 0; /* once each, not every round */
  for (const char *q = logbuf; (q = strstr(q, "left alone")) != NULL; q++)
    said++;
  CU_ASSERT_EQUAL(said, 2);
  char nm[MB_NAME_LEN];
  CU_ASSERT_EQUAL(
      mb_backend_name(b, virDomainGetID(dom[0]), nm, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "blank"));
  mb_backend_close(b);
  for (int i = 0; i < 2; i++) {
    virDomainDestroy(dom[i]);
    virDomainFree(dom[i]);
  }
  virConnectClose(c);
}

/* Handles on one URI share the connection, hence the test driver's state:
 * what one sets, the other lists. */
static void test_shared_connection(void) {
  mb_backend_t *a = open_backend(host_uri, 0);
  mb_backend_t *b = open_backend(host_uri, 0);
  CU_ASSERT_FATAL(a != NULL && b != NULL);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  char err[256] = "";
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  const mb_dominfo_t *db = find_dom(d, n, "db");
  CU_ASSERT_FATAL(db != NULL);
  uint32_t id = db->domid;
  uint64_t want = db->current_kib - 262144;
  free(d);
  CU_ASSERT_EQUAL(mb_backend_set_target(a, id, want, err, sizeof(err)), 0);
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->current_kib, want);
  free(d);
  mb_backend_close(a);
  /* b keeps working after a is gone */
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->current_kib, want);
  free(d);
  mb_backend_close(b);
  /* the last user closed it: a new handle starts from the host file */
  b = open_backend(host_uri, 0);
  CU_ASSERT_FATAL(b != NULL);
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  CU_ASSERT_EQUAL(find_dom(d, n, "db")->current_kib, want + 262144);
  free(d);
  mb_backend_close(b);
}

/* Every tag this libvirt defines is mapped or deliberately left out (with
 * the reason): a newer libvirt with more tags (Linux 6.12's balloon stats)
 * fails here until someone decides what they map to. */
static void test_stat_tags_covered(void) {
  for (int tag = 0; tag < VIR_DOMAIN_MEMORY_STAT_NR; tag++) {
    int mapped = 0, unmapped = 0;
    for (size_t i = 0; i < LV_NSTAT_MAP; i++)
      mapped += lv_stat_map[i].tag == tag;
    for (size_t i = 0; i < LV_NSTAT_UNMAPPED; i++)
      unmapped += lv_stat_unmapped[i].tag == tag && lv_stat_unmapped[i].why;
    if (mapped + unmapped != 1)
      fprintf(stderr,
              "\n  libvirt memory stat tag %d: mapped %d, unmapped %d\n", tag,
              mapped, unmapped);
    CU_ASSERT_EQUAL(mapped + unmapped, 1);
  }
  /* what the fields are: none of them PSI or a refault counter */
  for (size_t i = 0; i < LV_NSTAT_MAP; i++)
    CU_ASSERT(lv_stat_map[i].field < MB_F_WORKINGSET_REFAULT_ANON);
}

/* A KVM guest's sample from the test driver: the swap and fault rates work,
 * the stall and refault rates are invalid (no PSI, no refaults through
 * virtio-balloon), and its record has none of those keys. */
static void test_kvm_no_stall(void) {
  char err[256];
  mb_backend_t *b = open_backend(host_uri, 0);
  CU_ASSERT_FATAL(b != NULL);
  mb_dominfo_t *d = NULL;
  size_t n = 0;
  CU_ASSERT_FATAL(mb_backend_list(b, &d, &n, err, sizeof(err)) == 0);
  const mb_dominfo_t *web = find_dom(d, n, "web");
  CU_ASSERT_FATAL(web != NULL);
  CU_ASSERT_EQUAL_FATAL(web->sample_status, MB_SAMPLE_OK);
  mb_sample_t a = web->sample, c = a;
  CU_ASSERT(mb_sample_has(&a, MB_F_PSWPIN));
  CU_ASSERT(mb_sample_has(&a, MB_F_PGMAJFAULT));
  CU_ASSERT_FALSE(mb_sample_has(&a, MB_F_PSI_SOME_TOTAL));
  CU_ASSERT_FALSE(mb_sample_has(&a, MB_F_WORKINGSET_REFAULT_FILE));
  CU_ASSERT_FALSE(mb_sample_has(&a, MB_F_WORKINGSET_REFAULT));
  /* the next publication: 40 KiB swapped in, 8 major faults, 2 s later */
  c.v[MB_F_PSWPIN] += 10;
  c.v[MB_F_PGMAJFAULT] += 8;
  c.uptime_ms += 2000;
  mb_rates_t r;
  mb_sample_rates(&a, &c, 2.0, &r);
  CU_ASSERT_TRUE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.swapin_pps, 5.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(r.majflt_ps, 4.0, 1e-9);
  CU_ASSERT_FALSE(r.stall_valid);
  CU_ASSERT_FALSE(r.refault_valid);
  char rec[MB_RECORD_MAX];
  if (a.seq == 0)
    a.seq = 1;
  CU_ASSERT_FATAL(mb_record_format(&a, rec, sizeof(rec)) > 0);
  CU_ASSERT_PTR_NULL(strstr(rec, "psi_"));
  CU_ASSERT_PTR_NULL(strstr(rec, "workingset"));
  free(d);
  mb_backend_close(b);
}

int main(void) {
  snprintf(host_uri, sizeof(host_uri), "test://%s/libvirt-host.xml",
           MEMBAL_TEST_DATA);
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("backend_libvirt", NULL, NULL);
  CU_add_test(s, "host file: list, sample mapping, actuation, host",
              test_hostfile_list);
  CU_add_test(s, "bad uri refused at open", test_bad_uri);
  CU_add_test(s, "shared default driver: period, target, NUMA, gone",
              test_default_shared);
  CU_add_test(s, "nodeset parser", test_nodeset);
  CU_add_test(s, "stats period detection", test_period_off);
  CU_add_test(s, "balloon stats to sample, hostile values", test_fill_sample);
  CU_add_test(s, "domain gone mid-round dropped", test_gone_mid_round);
  CU_add_test(s, "one connection per URI, shared", test_shared_connection);
  CU_add_test(s, "wait_event polls, guest() reads one domain",
              test_wait_event_poll);
  CU_add_test(s, "unusable domain names left alone, said once", test_bad_names);
  CU_add_test(s, "reconnect after the connection went away", test_reconnect);
  CU_add_test(s, "every libvirt memory stat tag mapped or left out",
              test_stat_tags_covered);
  CU_add_test(s, "KVM sample: swap rates, no stall nor refaults",
              test_kvm_no_stall);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures();
  unsigned errs = CU_get_error();
  CU_cleanup_registry();
  return (fails || errs) ? 1 : 0;
}
