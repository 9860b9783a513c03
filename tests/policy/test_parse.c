/* Parsers of guest text: real /proc samples and hostile input. */
#include <math.h>

#include "membal_policy.h"
#include "unit.h"

static char err[256];

/* ---- real samples --------------------------------------------------- */

static void test_meminfo_modern(void) {
  size_t len = 0;
  char *t = unit_slurp("meminfo-6.18", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  mb_sample_t s;
  int r = mb_meminfo_parse(t, len, &s, err, sizeof(err));
  CU_ASSERT_EQUAL_FATAL(r, 0);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 24684084);
  ASSERT_U64(s.v[MB_F_MEMFREE], 21618400);
  ASSERT_U64(s.v[MB_F_MEMAVAILABLE], 21930800);
  ASSERT_U64(s.v[MB_F_BUFFERS], 7820);
  ASSERT_U64(s.v[MB_F_CACHED], 459388);
  ASSERT_U64(s.v[MB_F_ACTIVE_FILE], 216296);
  ASSERT_U64(s.v[MB_F_ANONPAGES], 2308432);
  ASSERT_U64(s.v[MB_F_SHMEM], 8876);
  ASSERT_U64(s.v[MB_F_SUNRECLAIM], 27300);
  ASSERT_U64(s.v[MB_F_KERNELSTACK], 1716);
  ASSERT_U64(s.v[MB_F_PAGETABLES], 6840);
  ASSERT_U64(s.v[MB_F_COMMITTED_AS], 3340480);
  /* A 6.x kernel has every meminfo field and no vmstat one. */
  ASSERT_U64(s.have, (UINT64_C(1) << MB_F_FIRST_VMSTAT) - 1);
  ASSERT_U64(mb_field_kind(MB_F_COMMITTED_AS), MB_FK_KIB);
  CU_ASSERT_EQUAL(s.seq, 0);
  /* HugePages_Total has no kB and is unknown: ignored, not rejected. */
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "HugePages_Total:"));

  char *v = unit_slurp("vmstat-6.18", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(v);
  r = mb_vmstat_parse(v, len, &s, err, sizeof(err));
  CU_ASSERT_EQUAL_FATAL(r, 0);
  ASSERT_U64(s.v[MB_F_PSWPIN], 0);
  ASSERT_U64(s.v[MB_F_PSWPOUT], 0);
  ASSERT_U64(s.v[MB_F_PGFAULT], 8419921);
  ASSERT_U64(s.v[MB_F_PGMAJFAULT], 1740);
  /* >= 5.9: the anon/file split, not the single pre-5.9 counter */
  ASSERT_U64(s.v[MB_F_WORKINGSET_REFAULT_ANON], 0);
  ASSERT_U64(s.v[MB_F_WORKINGSET_REFAULT_FILE], 174093);
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_WORKINGSET_REFAULT));
  ASSERT_U64(s.have, ((UINT64_C(1) << MB_F_FIRST_PSI) - 1) &
                         ~(UINT64_C(1) << MB_F_WORKINGSET_REFAULT));
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 24684084); /* meminfo part kept */
  free(t);
  free(v);
}

static void test_meminfo_26(void) {
  size_t len = 0;
  char *t = unit_slurp("meminfo-2.6.18-xen", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  mb_sample_t s;
  int r = mb_meminfo_parse(t, len, &s, err, sizeof(err));
  CU_ASSERT_EQUAL_FATAL(r, 0);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 524288);
  ASSERT_U64(s.v[MB_F_MEMFREE], 82120);
  ASSERT_U64(s.v[MB_F_ACTIVE], 221508);
  ASSERT_U64(s.v[MB_F_ANONPAGES], 107424);
  ASSERT_U64(s.v[MB_F_SLAB], 68664);
  ASSERT_U64(s.v[MB_F_COMMITTED_AS], 245292);
  ASSERT_U64(s.v[MB_F_SWAPFREE], 1047680);
  /* Fields born later than 2.6.18 are absent, not zero. */
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_MEMAVAILABLE));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_ACTIVE_ANON));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_ACTIVE_FILE));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_SRECLAIMABLE));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_SUNRECLAIM));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_KERNELSTACK));
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_SHMEM));
  int count = 0;
  for (int f = 0; f < MB_F_COUNT; f++)
    count += mb_sample_has(&s, f);
  CU_ASSERT_EQUAL(count, 14);

  char *v = unit_slurp("vmstat-2.6.18-xen", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(v);
  r = mb_vmstat_parse(v, len, &s, err, sizeof(err));
  CU_ASSERT_EQUAL_FATAL(r, 0);
  ASSERT_U64(s.v[MB_F_PSWPIN], 1021);
  ASSERT_U64(s.v[MB_F_PSWPOUT], 2212);
  ASSERT_U64(s.v[MB_F_PGMAJFAULT], 4321);
  ASSERT_U64(s.v[MB_F_PGFAULT], 87654321);
  free(t);
  free(v);
}

/* A real sample goes through the record and back unchanged. */
static void test_record_roundtrip_real(void) {
  size_t len = 0, vlen = 0;
  char *t = unit_slurp("meminfo-6.18", &len);
  char *v = unit_slurp("vmstat-6.18", &vlen);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_PTR_NOT_NULL_FATAL(v);
  mb_sample_t s, back;
  CU_ASSERT_EQUAL_FATAL(mb_meminfo_parse(t, len, &s, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL_FATAL(mb_vmstat_parse(v, vlen, &s, err, sizeof(err)), 0);
  s.seq = 42;
  s.uptime_ms = 123456;
  s.urgent = true;
  char rec[MB_RECORD_MAX];
  int n = mb_record_format(&s, rec, sizeof(rec));
  CU_ASSERT_FATAL(n > 0 && n < MB_RECORD_MAX);
  CU_ASSERT_EQUAL((size_t)n, strlen(rec));
  CU_ASSERT_PTR_NULL(strstr(rec, "psi_")); /* no PSI parsed: none written */
  CU_ASSERT_EQUAL(
      strncmp(rec, "membal 1\nseq 42\nuptime_ms 123456\nurgent 1\n", 42), 0);
  CU_ASSERT_EQUAL_FATAL(
      mb_record_parse(rec, (size_t)n, &back, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(memcmp(&s, &back, sizeof(s)), 0);
  /* Every field at its largest legal value still fits a record. */
  mb_sample_t big;
  memset(&big, 0, sizeof(big));
  for (int f = 0; f < MB_F_COUNT; f++)
    big.v[f] = f < MB_F_FIRST_VMSTAT ? MB_KIB_MAX : UINT64_MAX;
  big.v[MB_F_PSI_SOME_AVG10] = big.v[MB_F_PSI_FULL_AVG10] = MB_PSI_BP_MAX;
  big.v[MB_F_SRECLAIMABLE] = big.v[MB_F_SUNRECLAIM] = MB_KIB_MAX / 2;
  big.have = (UINT64_C(1) << MB_F_COUNT) - 1;
  big.seq = UINT64_MAX;
  big.uptime_ms = UINT64_MAX;
  big.urgent = true;
  n = mb_record_format(&big, rec, sizeof(rec));
  CU_ASSERT_FATAL(n > 0 && n < MB_RECORD_MAX);
  CU_ASSERT_EQUAL(mb_record_parse(rec, (size_t)n, &back, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(memcmp(&big, &back, sizeof(big)), 0);
  /* Too small a buffer is refused, never overrun. */
  CU_ASSERT_EQUAL(mb_record_format(&s, rec, 40), -1);
  free(t);
  free(v);
}

/* ---- malformed input, table-driven ------------------------------------ */

typedef struct {
  const char *text;
  size_t len; /* 0: strlen(text) */
  const char *err_has;
} bad_t;

static void check_bad(int (*parse)(const char *, size_t, mb_sample_t *, char *,
                                   size_t),
                      const bad_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    mb_sample_t s;
    memset(&s, 0x5a, sizeof(s));
    err[0] = '\0';
    size_t len = t[i].len ? t[i].len : strlen(t[i].text);
    int r = parse(t[i].text, len, &s, err, sizeof(err));
    if (r != -1 || strstr(err, t[i].err_has) == NULL || s.have != 0)
      fprintf(stderr, "\n  case %zu: r=%d err='%s' want '%s'\n", i, r, err,
              t[i].err_has);
    CU_ASSERT_EQUAL(r, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, t[i].err_has));
    ASSERT_U64(s.have, 0);
  }
}

static void test_meminfo_bad(void) {
  static const bad_t t[] = {
      {"MemTotal 1000 kB\n", 0, "line 1"},
      {"MemTotal: -5 kB\n", 0, "MemTotal"},
      {"MemTotal: 12abc kB\n", 0, "MemTotal"},
      {"MemTotal: 18446744073709551616 kB\n", 0, "MemTotal"}, /* 2^64 */
      {"MemTotal: 999999999999999999999999 kB\n", 0, "MemTotal"},
      {"MemTotal: 1000 kB\nMemTotal: 1000 kB\n", 0, "duplicate key MemTotal"},
      /* unknown keys too: the header says duplicates are rejected */
      {"Foo: 1 kB\nMemTotal: 1000 kB\nFoo: 2 kB\n", 0, "duplicate key Foo"},
      {"MemTotal: 1000 kB\nMemFree: 2000 kB\n", 0, "MemFree"},
      {"MemTotal: 1000 kB\nMemAvailable: 1001 kB\n", 0, "MemAvailable"},
      {"MemTotal: 1000 kB\nCached: 1001 kB\n", 0, "exceeds MemTotal"},
      {"SwapTotal: 10 kB\nSwapFree: 20 kB\n", 0, "SwapFree"},
      {"MemTotal: 1000\n", 0, "no kB unit"},
      {"MemTotal: nan kB\n", 0, "MemTotal"},
      {"MemTotal: NaN\n", 0, "MemTotal"},
      {"MemTotal: 1e3 kB\n", 0, "MemTotal"},
      {"MemTotal: 0x10 kB\n", 0, "MemTotal"},
      {"MemTotal: +100 kB\n", 0, "MemTotal"},
      {"MemTotal: 1000 kB trailing\n", 0, "MemTotal"},
      {"MemTotal: 1000 MB\n", 0, "MemTotal"},
      {"MemTotal: kB\n", 0, "MemTotal"},
      {"MemTotal: 4398046511105 kB\n", 0, "absurd"}, /* 2^42 + 1 */
      {"MemTotal: 0 kB\n", 0, "MemTotal: 0"},
      {"\n", 0, "line 1"},
      {"MemTotal: 100 kB\n\nMemFree: 1 kB\n", 0, "line 2"},
      {"Mem Total: 5 kB\n", 0, "bad character"},
      {"Foo: bar\n", 0, "Foo"}, /* unknown key, still malformed */
      {"MemTotal: 100 kB\nMemFree: 1\0 kB\n", 29, "NUL"},
      {"MemTotal: 100 kB\r\n", 0, "MemTotal"},
      {"", 0, "empty"},
  };
  check_bad(mb_meminfo_parse, t, sizeof(t) / sizeof(t[0]));
}

static void test_meminfo_good_edges(void) {
  mb_sample_t s;
  /* Unknown keys (well-formed) are ignored; no final newline is fine. */
  const char *t = "Foo:    12 kB\nHugePages_Total:       0\nMemTotal: 100 kB";
  CU_ASSERT_EQUAL_FATAL(mb_meminfo_parse(t, strlen(t), &s, err, sizeof(err)),
                        0);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 100);
  ASSERT_U64(s.have, UINT64_C(1) << MB_F_MEMTOTAL);
  /* len bounds the parse: the text after it is never read. */
  t = "MemTotal: 100 kB\nMemFree: 999 kB\n";
  CU_ASSERT_EQUAL(mb_meminfo_parse(t, 17, &s, err, sizeof(err)), 0);
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_MEMFREE));
  /* The largest legal figure is accepted. */
  t = "MemTotal: 4398046511104 kB\n";
  CU_ASSERT_EQUAL(mb_meminfo_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], MB_KIB_MAX);
  /* Tabs after the colon (some kernels' alignment) are fine. */
  t = "MemTotal:\t100 kB\n";
  CU_ASSERT_EQUAL(mb_meminfo_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  /* NULL error buffer is allowed. */
  CU_ASSERT_EQUAL(mb_meminfo_parse("x", 1, &s, NULL, 0), -1);
}

/* The Slab rule's documented slack (MB_SLAB_SLACK_KIB): parts up to one
 * page above Slab pass, one KiB more is refused. */
static void test_meminfo_slab_slack(void) {
  char t[160];
  mb_sample_t s;
  snprintf(t, sizeof(t),
           "MemTotal: 1000 kB\nSlab: 100 kB\nSReclaimable: 60 kB\n"
           "SUnreclaim: %d kB\n",
           40 + MB_SLAB_SLACK_KIB);
  CU_ASSERT_EQUAL(mb_meminfo_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  snprintf(t, sizeof(t),
           "MemTotal: 1000 kB\nSlab: 100 kB\nSReclaimable: 60 kB\n"
           "SUnreclaim: %d kB\n",
           41 + MB_SLAB_SLACK_KIB);
  CU_ASSERT_EQUAL(mb_meminfo_parse(t, strlen(t), &s, err, sizeof(err)), -1);
  CU_ASSERT(strstr(err, "exceed Slab") != NULL);
}

static void test_vmstat_bad(void) {
  static const bad_t t[] = {
      {"pswpin -1\n", 0, "pswpin"},
      {"pswpin\n", 0, "line 1"},
      {"pswpin 1 2\n", 0, "pswpin"},
      {"pswpin 1\npswpin 2\n", 0, "duplicate key pswpin"},
      {"nr_foo 1\npswpin 2\nnr_foo -1\n", 0, "duplicate key nr_foo"},
      {"pgfault 18446744073709551616\n", 0, "pgfault"},
      {"pswpin  5\n", 0, "pswpin"},
      {"pswpout 5x\n", 0, "pswpout"},
      {"pgmajfault nan\n", 0, "pgmajfault"},
      {"nr_foo abc\n", 0, "nr_foo"},
      {"nr_free_pages 5\n pswpin 4\n", 0, "line 2"},
      {"pswpin 1\0\n", 10, "NUL"},
      {"", 0, "empty"},
  };
  check_bad(mb_vmstat_parse, t, sizeof(t) / sizeof(t[0]));
  /* Rejected vmstat also drops what the sample held (have == 0). */
  mb_sample_t s;
  CU_ASSERT_EQUAL(
      mb_meminfo_parse("MemTotal: 5 kB\n", 15, &s, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(mb_vmstat_parse("pswpin x", 8, &s, err, sizeof(err)), -1);
  ASSERT_U64(s.have, 0);
  /* Signed drift of an unknown counter is tolerated; known ones are not. */
  const char *ok = "nr_zone_drift -3\npswpout 7\n";
  memset(&s, 0, sizeof(s));
  CU_ASSERT_EQUAL(mb_vmstat_parse(ok, strlen(ok), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_PSWPOUT], 7);
  ASSERT_U64(s.have, UINT64_C(1) << MB_F_PSWPOUT);
}

/* A valid record of exactly `total` bytes (total >= 40): padding lines
 * of unknown keys (each its own: duplicates are refused), the last one's
 * zeros adjusting the length. */
static size_t make_record(char *buf, size_t total) {
  size_t n = (size_t)sprintf(buf, "membal 1\nseq 1\nuptime_ms 1\n");
  for (unsigned k = 0; total - n > 12; k++)
    n += (size_t)sprintf(buf + n, "p%03u 0\n", k);
  buf[n++] = 'q';
  buf[n++] = ' ';
  while (n < total - 1)
    buf[n++] = '0';
  buf[n++] = '\n';
  buf[n] = '\0';
  return n;
}

static void test_record_bad(void) {
  static char big[MB_RECORD_MAX + 8];
  CU_ASSERT_EQUAL_FATAL(make_record(big, MB_RECORD_MAX), MB_RECORD_MAX);
  const bad_t t[] = {
      {"seq 1\nuptime_ms 5\n", 0, "line 1"},
      {"membal 2\nseq 1\nuptime_ms 5\n", 0, "membal 2"},
      {"membal 1\r\nseq 1\nuptime_ms 5\n", 0, "line 1"},
      {"membal 1\nuptime_ms 5\n", 0, "missing key seq"},
      {"membal 1\nseq 4\n", 0, "missing key uptime_ms"},
      {"membal 1\nseq 0\nuptime_ms 5\n", 0, "seq must be > 0"},
      {"membal 1\nseq 1\nseq 2\nuptime_ms 5\n", 0, "duplicate key seq"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal 5\nMemTotal 5\n", 0,
       "duplicate key MemTotal"},
      {"membal 1\nseq 1\nuptime_ms 5\nFuture 1\nFuture 2\n", 0,
       "duplicate key Future"},
      {"membal 1\nseq 1\nuptime_ms 5\nmembal 1\n", 0, "duplicate key membal"},
      {"membal 1\nseq 1\nuptime_ms 5\nurgent 2\n", 0, "urgent"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal 100\nMemFree 200\n", 0,
       "MemFree"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal -100\n", 0, "MemTotal"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal 1O0\n", 0, "MemTotal"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal  100\n", 0, "MemTotal"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal\n", 0, "line 4"},
      {"membal 1\nseq 99999999999999999999\nuptime_ms 5\n", 0, "seq"},
      {"membal 1\nseq 1\nuptime_ms 5\nMemTotal 9999999999999\n", 0, "absurd"},
      {"membal 1\nseq 1\nuptime_ms 5\nBad key! 5\n", 0, "line 4 (Bad)"},
      {"membal 1\nseq 1\nuptime_ms 5\nMem-Total 5\n", 0, "bad character"},
      {"membal 1\nseq 1\n\nuptime_ms 5\n", 0, "line 3"},
      {"membal 1\nseq 1\nuptime_ms 5\0\n", 28, "NUL"},
      {"membal 1\nseq 1\nuptime_ms 5\nSwapTotal 1\nSwapFree 2\n", 0,
       "SwapFree"},
      {big, MB_RECORD_MAX, "limit"},
      {"", 0, "empty"},
  };
  check_bad(mb_record_parse, t, sizeof(t) / sizeof(t[0]));
  /* One byte less is the largest legal record. */
  mb_sample_t s;
  CU_ASSERT_EQUAL_FATAL(make_record(big, MB_RECORD_MAX - 1), MB_RECORD_MAX - 1);
  CU_ASSERT_EQUAL(mb_record_parse(big, MB_RECORD_MAX - 1, &s, err, sizeof(err)),
                  0);
  ASSERT_U64(s.seq, 1);
}

static void test_record_good_edges(void) {
  mb_sample_t s;
  const char *t = "membal 1\nseq 7\nuptime_ms 0\nfuture_thing 5\n"
                  "MemTotal 1000\nMemFree 10\npswpin 3";
  CU_ASSERT_EQUAL_FATAL(mb_record_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.seq, 7);
  ASSERT_U64(s.uptime_ms, 0);
  CU_ASSERT_FALSE(s.urgent);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 1000);
  ASSERT_U64(s.v[MB_F_MEMFREE], 10);
  ASSERT_U64(s.v[MB_F_PSWPIN], 3);
  ASSERT_U64(s.have, (UINT64_C(1) << MB_F_MEMTOTAL) |
                         (UINT64_C(1) << MB_F_MEMFREE) |
                         (UINT64_C(1) << MB_F_PSWPIN));
  t = "membal 1\nurgent 1\nuptime_ms 9\nseq 1\n";
  CU_ASSERT_EQUAL(mb_record_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  CU_ASSERT_TRUE(s.urgent);
  ASSERT_U64(s.have, 0);
}

/* Random bytes and random mutations of a valid record: whatever is
 * accepted must be consistent (the parser never hands on free > total). */
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void check_consistent(const mb_sample_t *s) {
  if (mb_sample_has(s, MB_F_MEMTOTAL)) {
    if (mb_sample_has(s, MB_F_MEMFREE))
      CU_ASSERT(s->v[MB_F_MEMFREE] <= s->v[MB_F_MEMTOTAL]);
    if (mb_sample_has(s, MB_F_MEMAVAILABLE))
      CU_ASSERT(s->v[MB_F_MEMAVAILABLE] <= s->v[MB_F_MEMTOTAL]);
  }
  for (int f = 0; f < MB_F_FIRST_VMSTAT; f++)
    if (mb_sample_has(s, f))
      CU_ASSERT(s->v[f] <= MB_KIB_MAX);
}

static void test_fuzz(void) {
  static const char alphabet[] = "membal 1\nseq0123456789MemTotalFree: kB-"
                                 "pswpin()\n\n\t\r\0x";
  const char *valid = "membal 1\nseq 5\nuptime_ms 77\nMemTotal 1000\n"
                      "MemFree 100\nMemAvailable 500\npswpin 3\n";
  char buf[512];
  unsigned accepted = 0, rejected = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = 0;
    if (iter % 2 == 0) {
      len = next_rand() % sizeof(buf);
      for (size_t i = 0; i < len; i++)
        buf[i] = alphabet[next_rand() % (sizeof(alphabet) - 1)];
    } else {
      len = strlen(valid);
      memcpy(buf, valid, len);
      int flips = 1 + (int)(next_rand() % 3);
      for (int k = 0; k < flips; k++)
        buf[next_rand() % len] = (char)(next_rand() & 0xff);
    }
    mb_sample_t s;
    int r = mb_record_parse(buf, len, &s, err, sizeof(err));
    CU_ASSERT(r == 0 || r == -1);
    if (r == 0) {
      accepted++;
      CU_ASSERT(s.seq > 0);
      check_consistent(&s);
    } else {
      rejected++;
      ASSERT_U64(s.have, 0);
      CU_ASSERT(err[0] != '\0');
    }
    r = mb_meminfo_parse(buf, len, &s, err, sizeof(err));
    if (r == 0)
      check_consistent(&s);
    r = mb_vmstat_parse(buf, len, &s, err, sizeof(err));
    CU_ASSERT(r == 0 || r == -1);
    r = mb_psi_parse(buf, len, &s, err, sizeof(err));
    CU_ASSERT(r == 0 || r == -1);
  }
  /* Both outcomes occur: the mutations are not all fatal nor all benign. */
  CU_ASSERT(accepted > 0);
  CU_ASSERT(rejected > 0);
}

/* ---- PSI: /proc/pressure/memory ---------------------------------------- */

/* Taken on this machine (6.18) while a 24 MiB memory cgroup re-read a
 * 96 MiB file: real stall, "full" below "some". */
static void test_psi_real(void) {
  size_t len = 0;
  char *t = unit_slurp("pressure-memory-6.18", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  s.v[MB_F_MEMTOTAL] = 1000;
  s.have = UINT64_C(1) << MB_F_MEMTOTAL;
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, len, &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_PSI_SOME_AVG10], 80); /* "0.80" % */
  ASSERT_U64(s.v[MB_F_PSI_SOME_TOTAL], 121427);
  ASSERT_U64(s.v[MB_F_PSI_FULL_AVG10], 0);
  ASSERT_U64(s.v[MB_F_PSI_FULL_TOTAL], 35283);
  ASSERT_U64(s.v[MB_F_MEMTOTAL], 1000); /* what was there is kept */
  ASSERT_U64(s.have, (UINT64_C(1) << MB_F_MEMTOTAL) |
                         (UINT64_C(1) << MB_F_PSI_SOME_AVG10) |
                         (UINT64_C(1) << MB_F_PSI_SOME_TOTAL) |
                         (UINT64_C(1) << MB_F_PSI_FULL_AVG10) |
                         (UINT64_C(1) << MB_F_PSI_FULL_TOTAL));
  ASSERT_U64(mb_field_kind(MB_F_PSI_SOME_AVG10), MB_FK_BP);
  ASSERT_U64(mb_field_kind(MB_F_PSI_FULL_TOTAL), MB_FK_US);
  ASSERT_U64(mb_field_kind(MB_F_WORKINGSET_REFAULT), MB_FK_COUNT);
  free(t);
  /* Same format in the cpu file (12.52 % there): 2 decimals, any size. */
  t = unit_slurp("pressure-cpu-6.18", &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  memset(&s, 0, sizeof(s));
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, len, &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_PSI_SOME_AVG10], 1252);
  ASSERT_U64(s.v[MB_F_PSI_SOME_TOTAL], 24407717);
  free(t);
}

/* The whole real sample (meminfo + vmstat + pressure) through the record:
 * unchanged, and every line "key decimal", the shape a dom0 that predates
 * the PSI and refault keys requires of keys it does not know. */
static void test_record_psi_roundtrip(void) {
  size_t ml = 0, vl = 0, pl = 0;
  char *m = unit_slurp("meminfo-6.18", &ml);
  char *v = unit_slurp("vmstat-6.18", &vl);
  char *p = unit_slurp("pressure-memory-6.18", &pl);
  CU_ASSERT_FATAL(m != NULL && v != NULL && p != NULL);
  mb_sample_t s, back;
  CU_ASSERT_EQUAL_FATAL(mb_meminfo_parse(m, ml, &s, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL_FATAL(mb_vmstat_parse(v, vl, &s, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(p, pl, &s, err, sizeof(err)), 0);
  s.seq = 3;
  s.uptime_ms = 1000;
  char rec[MB_RECORD_MAX];
  int n = mb_record_format(&s, rec, sizeof(rec));
  CU_ASSERT_FATAL(n > 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(rec, "\npsi_some_avg10_bp 80\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(rec, "\npsi_some_total_us 121427\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(rec, "\npsi_full_total_us 35283\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(rec, "\nworkingset_refault_file 174093\n"));
  CU_ASSERT_EQUAL_FATAL(
      mb_record_parse(rec, (size_t)n, &back, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(memcmp(&s, &back, sizeof(s)), 0);
  const char *l = strchr(rec, '\n') + 1; /* after "membal 1" */
  while (*l) {
    const char *nl = strchr(l, '\n');
    const char *sp = memchr(l, ' ', (size_t)(nl - l));
    CU_ASSERT_FATAL(nl != NULL && sp != NULL && sp > l && sp + 1 < nl);
    for (const char *c = sp + 1; c < nl; c++)
      CU_ASSERT(*c >= '0' && *c <= '9');
    l = nl + 1;
  }
  /* A record of an old guest (no PSI, no refaults) still parses. */
  mb_sample_t old = s;
  old.have &= (UINT64_C(1) << MB_F_WORKINGSET_REFAULT_ANON) - 1;
  n = mb_record_format(&old, rec, sizeof(rec));
  CU_ASSERT_FATAL(n > 0);
  CU_ASSERT_PTR_NULL(strstr(rec, "psi_"));
  CU_ASSERT_PTR_NULL(strstr(rec, "workingset"));
  CU_ASSERT_EQUAL(mb_record_parse(rec, (size_t)n, &back, err, sizeof(err)), 0);
  CU_ASSERT_FALSE(mb_sample_has(&back, MB_F_PSI_SOME_TOTAL));
  free(m);
  free(v);
  free(p);
}

#define PSI_ZERO "avg10=0.00 avg60=0.00 avg300=0.00 total=0"

static void test_psi_bad(void) {
  static const bad_t t[] = {
      {"some avg10=0.00 avg60=0.00 avg300=0.00\n", 0, "total="},
      {"some avg10=100.01 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=999.99 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=1000.00 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=0.0 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=0.000 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=.50 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=1e2 avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=nan avg60=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=0.00 avg60=0.00 avg300=101.00 total=1\n", 0, "avg300="},
      {"some avg10=0.00  avg60=0.00 avg300=0.00 total=1\n", 0, "avg60="},
      {"some avg60=0.00 avg10=0.00 avg300=0.00 total=1\n", 0, "avg10="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n", 0, "total="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=1 \n", 0, "total="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=1 x\n", 0, "total="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=\n", 0, "total="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551616\n", 0,
       "total="},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=0x10\n", 0, "total="},
      {"some " PSI_ZERO "\r\n", 0, "total="},
      {"some " PSI_ZERO "\nsome " PSI_ZERO "\n", 0, "duplicate line some"},
      {"some " PSI_ZERO "\nfull " PSI_ZERO "\nfull " PSI_ZERO "\n", 0,
       "duplicate line full"},
      {"full " PSI_ZERO "\n", 0, "no 'some'"},
      {"Some " PSI_ZERO "\n", 0, "line 1"},
      {"cpu " PSI_ZERO "\n", 0, "neither"},
      {"some " PSI_ZERO "\n\n", 0, "line 2"},
      {"some\n", 0, "neither"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"
       "full avg10=0.00 avg60=0.00 avg300=0.00 total=6\n",
       0, "exceeds psi_some_total_us"},
      {"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\0\n", 50, "NUL"},
      {"", 0, "empty"},
  };
  check_bad(mb_psi_parse, t, sizeof(t) / sizeof(t[0]));
  /* A rejected pressure file drops what the sample held, like vmstat. */
  mb_sample_t s;
  CU_ASSERT_EQUAL(
      mb_meminfo_parse("MemTotal: 5 kB\n", 15, &s, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(mb_psi_parse("some x", 6, &s, err, sizeof(err)), -1);
  ASSERT_U64(s.have, 0);
}

static void test_psi_good_edges(void) {
  mb_sample_t s;
  /* 100.00 is the top; full before some; no final newline. */
  const char *t = "full avg10=100.00 avg60=0.00 avg300=0.00 total=10\n"
                  "some avg10=100.00 avg60=100.00 avg300=5.25 "
                  "total=18446744073709551615";
  memset(&s, 0, sizeof(s));
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_PSI_SOME_AVG10], 10000);
  ASSERT_U64(s.v[MB_F_PSI_FULL_AVG10], 10000);
  ASSERT_U64(s.v[MB_F_PSI_SOME_TOTAL], UINT64_MAX);
  ASSERT_U64(s.v[MB_F_PSI_FULL_TOTAL], 10);
  /* "some" alone (a kernel without the full line) is enough. */
  t = "some avg10=7.05 avg60=0.00 avg300=0.00 total=99\n";
  memset(&s, 0, sizeof(s));
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_PSI_SOME_AVG10], 705);
  ASSERT_U64(s.have, (UINT64_C(1) << MB_F_PSI_SOME_AVG10) |
                         (UINT64_C(1) << MB_F_PSI_SOME_TOTAL));
  /* a second parse replaces the PSI fields: no older "full" left over */
  t = "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"
      "full avg10=0.00 avg60=0.00 avg300=0.00 total=4\n";
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  t = "some avg10=0.00 avg60=0.00 avg300=0.00 total=3\n";
  CU_ASSERT_EQUAL_FATAL(mb_psi_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_PSI_FULL_TOTAL));
  ASSERT_U64(s.v[MB_F_PSI_FULL_TOTAL], 0);
  ASSERT_U64(s.v[MB_F_PSI_SOME_TOTAL], 3);
  /* In a record: the same bounds; duplicates refused; an old dom0's
   * parser sees only unknown integer keys (tested above). */
  static const bad_t r[] = {
      {"membal 1\nseq 1\nuptime_ms 5\npsi_some_avg10_bp 10001\n", 0,
       "psi_some_avg10_bp: 10001 is above"},
      {"membal 1\nseq 1\nuptime_ms 5\npsi_full_avg10_bp 99999\n", 0,
       "psi_full_avg10_bp"},
      {"membal 1\nseq 1\nuptime_ms 5\npsi_some_total_us 5\n"
       "psi_full_total_us 6\n",
       0, "exceeds psi_some_total_us"},
      {"membal 1\nseq 1\nuptime_ms 5\npsi_some_total_us 5\n"
       "psi_some_total_us 5\n",
       0, "duplicate key psi_some_total_us"},
      {"membal 1\nseq 1\nuptime_ms 5\nworkingset_refault_file 1\n"
       "workingset_refault_file 2\n",
       0, "duplicate key workingset_refault_file"},
      {"membal 1\nseq 1\nuptime_ms 5\npsi_some_avg10_bp 1.5\n", 0,
       "psi_some_avg10_bp"},
      {"membal 1\nseq 1\nuptime_ms 5\nworkingset_refault -3\n", 0,
       "workingset_refault"},
      {"membal 1\nseq 1\nuptime_ms 5\npsi_some_total_us "
       "18446744073709551616\n",
       0, "psi_some_total_us"},
  };
  check_bad(mb_record_parse, r, sizeof(r) / sizeof(r[0]));
}

/* Kernels 4.20 to 5.8 count file refaults in the single workingset_refault
 * (the anon/file split came with 5.9's anon workingset tracking). The lines
 * are those of a 5.4 kernel's /proc/vmstat around them. */
static void test_vmstat_refault_pre59(void) {
  const char *t = "nr_isolated_file 0\nworkingset_nodes 1203\n"
                  "workingset_refault 88211\nworkingset_activate 20391\n"
                  "workingset_restore 7735\nworkingset_nodereclaim 64\n"
                  "pswpin 12\npswpout 40\n";
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  CU_ASSERT_EQUAL_FATAL(mb_vmstat_parse(t, strlen(t), &s, err, sizeof(err)), 0);
  ASSERT_U64(s.v[MB_F_WORKINGSET_REFAULT], 88211);
  CU_ASSERT_FALSE(mb_sample_has(&s, MB_F_WORKINGSET_REFAULT_FILE));
  static const bad_t b[] = {
      {"workingset_refault 1\nworkingset_refault 1\n", 0,
       "duplicate key workingset_refault"},
      {"workingset_refault_anon -1\n", 0, "workingset_refault_anon"},
      {"workingset_refault_file 184467440737095516160\n", 0,
       "workingset_refault_file"},
  };
  check_bad(mb_vmstat_parse, b, sizeof(b) / sizeof(b[0]));
}

/* ---- rates -------------------------------------------------------------- */

static mb_sample_t counters(uint64_t in, uint64_t out, uint64_t maj,
                            uint64_t up_ms) {
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  s.v[MB_F_PSWPIN] = in;
  s.v[MB_F_PSWPOUT] = out;
  s.v[MB_F_PGMAJFAULT] = maj;
  s.have = (UINT64_C(1) << MB_F_PSWPIN) | (UINT64_C(1) << MB_F_PSWPOUT) |
           (UINT64_C(1) << MB_F_PGMAJFAULT);
  s.uptime_ms = up_ms;
  return s;
}

static void test_rates(void) {
  mb_rates_t r;
  mb_sample_t a = counters(100, 200, 10, 1000);
  mb_sample_t b = counters(300, 260, 16, 3000);
  mb_sample_rates(&a, &b, 2.0, &r);
  CU_ASSERT_TRUE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.swapin_pps, 100.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(r.swapout_pps, 30.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(r.majflt_ps, 3.0, 1e-9);
  /* counter went back: guest rebooted */
  mb_sample_t c = counters(5, 260, 16, 3000);
  mb_sample_rates(&b, &c, 2.0, &r);
  CU_ASSERT_FALSE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.swapin_pps, 0.0, 0);
  /* uptime went back: rebooted even if counters grew past the old ones */
  mb_sample_t d = counters(400, 300, 20, 500);
  mb_sample_rates(&b, &d, 2.0, &r);
  CU_ASSERT_FALSE(r.valid);
  mb_sample_rates(&a, &b, 0.0, &r);
  CU_ASSERT_FALSE(r.valid);
  mb_sample_rates(&a, &b, -1.0, &r);
  CU_ASSERT_FALSE(r.valid);
  mb_sample_rates(&a, &b, NAN, &r);
  CU_ASSERT_FALSE(r.valid);
  mb_sample_rates(&a, &b, INFINITY, &r);
  CU_ASSERT_FALSE(r.valid);
  mb_sample_rates(NULL, &b, 2.0, &r);
  CU_ASSERT_FALSE(r.valid);
  /* no counters at all: nothing to say */
  mb_sample_t e;
  memset(&e, 0, sizeof(e));
  mb_sample_rates(&e, &e, 2.0, &r);
  CU_ASSERT_FALSE(r.valid);
  /* only majflt known (virtio-balloon stats without swap): still valid */
  mb_sample_t f1 = e, f2 = e;
  f1.v[MB_F_PGMAJFAULT] = 10;
  f2.v[MB_F_PGMAJFAULT] = 50;
  f1.have = f2.have = UINT64_C(1) << MB_F_PGMAJFAULT;
  mb_sample_rates(&f1, &f2, 4.0, &r);
  CU_ASSERT_TRUE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.majflt_ps, 10.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(r.swapin_pps, 0.0, 0);
}

/* anonymous memory wherever it sits: AnonPages (or the anon split) +
 * SwapTotal - SwapFree */
static mb_sample_t anon_swap(uint64_t anon, uint64_t swap_used,
                             uint64_t up_ms) {
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  s.v[MB_F_ANONPAGES] = anon;
  s.v[MB_F_SWAPTOTAL] = 1048576;
  s.v[MB_F_SWAPFREE] = 1048576 - swap_used;
  s.have = (UINT64_C(1) << MB_F_ANONPAGES) | (UINT64_C(1) << MB_F_SWAPTOTAL) |
           (UINT64_C(1) << MB_F_SWAPFREE);
  s.uptime_ms = up_ms;
  return s;
}

static void test_growth(void) {
  mb_rates_t r;
  /* 100000 -> 150000 resident + 0 -> 20000 swapped in 2 s: 35000 KiB/s;
   * no vmstat counters, so the swap rates stay invalid */
  mb_sample_t a = anon_swap(100000, 0, 1000),
              b = anon_swap(150000, 20000, 3000);
  mb_sample_rates(&a, &b, 2.0, &r);
  CU_ASSERT_TRUE(r.growth_valid);
  CU_ASSERT_FALSE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.anon_growth_kibps, 35000.0, 1e-9);
  /* swapped pages read back in: resident up 10000, swap down 10000 = 0 */
  mb_sample_t c = anon_swap(160000, 10000, 4000);
  mb_sample_rates(&b, &c, 1.0, &r);
  CU_ASSERT_TRUE(r.growth_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.anon_growth_kibps, 0.0, 0);
  /* shrinking: negative */
  mb_sample_t d = anon_swap(60000, 10000, 5000);
  mb_sample_rates(&c, &d, 4.0, &r);
  CU_ASSERT_DOUBLE_EQUAL(r.anon_growth_kibps, -25000.0, 1e-9);
  /* the anon split stands in for AnonPages (2.6.18-era kernels) */
  mb_sample_t e = b;
  e.have &= ~(UINT64_C(1) << MB_F_ANONPAGES);
  e.v[MB_F_ACTIVE_ANON] = 120000;
  e.v[MB_F_INACTIVE_ANON] = 30000;
  e.have |=
      (UINT64_C(1) << MB_F_ACTIVE_ANON) | (UINT64_C(1) << MB_F_INACTIVE_ANON);
  mb_sample_rates(&a, &e, 2.0, &r);
  CU_ASSERT_TRUE(r.growth_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.anon_growth_kibps, 35000.0, 1e-9);
  /* missing figures, reboot, bad dt: no growth */
  mb_sample_t f = b;
  f.have &= ~(UINT64_C(1) << MB_F_SWAPFREE);
  mb_sample_rates(&a, &f, 2.0, &r);
  CU_ASSERT_FALSE(r.growth_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.anon_growth_kibps, 0.0, 0);
  mb_sample_t g = anon_swap(150000, 20000, 500);
  mb_sample_rates(&a, &g, 2.0, &r);
  CU_ASSERT_FALSE(r.growth_valid);
  mb_sample_rates(&a, &b, 0.0, &r);
  CU_ASSERT_FALSE(r.growth_valid);
  mb_sample_rates(&a, &b, NAN, &r);
  CU_ASSERT_FALSE(r.growth_valid);
}

static mb_sample_t stall(uint64_t some_us, uint64_t full_us, uint64_t up_ms) {
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  s.v[MB_F_PSI_SOME_TOTAL] = some_us;
  s.v[MB_F_PSI_FULL_TOTAL] = full_us;
  s.have = (UINT64_C(1) << MB_F_PSI_SOME_TOTAL) |
           (UINT64_C(1) << MB_F_PSI_FULL_TOTAL);
  s.uptime_ms = up_ms;
  return s;
}

static void test_stall_rates(void) {
  mb_rates_t r;
  /* 300 ms of some-stall and 100 ms of full-stall in 2 s of the guest's
   * clock: 15 % and 5 %, whatever dom0 measured between the arrivals */
  mb_sample_t a = stall(1000000, 500000, 10000);
  mb_sample_t b = stall(1300000, 600000, 12000);
  mb_sample_rates(&a, &b, 2.5, &r);
  CU_ASSERT_TRUE(r.stall_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.some_stall_share, 0.15, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(r.full_stall_share, 0.05, 1e-12);
  CU_ASSERT_FALSE(r.valid); /* no swap counters: those stay invalid */
  CU_ASSERT_FALSE(r.refault_valid);
  /* no uptime: dom0's dt */
  a.uptime_ms = b.uptime_ms = 0;
  mb_sample_rates(&a, &b, 3.0, &r);
  CU_ASSERT_TRUE(r.stall_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.some_stall_share, 0.1, 1e-12);
  /* a hostile guest claiming 5 s of stall per second is clamped to 1 */
  mb_sample_t c = stall(1000000 + 10000000, 600000, 0);
  mb_sample_rates(&a, &c, 2.0, &r);
  CU_ASSERT_DOUBLE_EQUAL(r.some_stall_share, 1.0, 0);
  /* some only (no full line): full share 0, still valid */
  mb_sample_t d = a, e = b;
  d.have = e.have = UINT64_C(1) << MB_F_PSI_SOME_TOTAL;
  mb_sample_rates(&d, &e, 3.0, &r);
  CU_ASSERT_TRUE(r.stall_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.full_stall_share, 0.0, 0);
  /* counter back, reboot, one sample without PSI (older guest): invalid */
  mb_sample_rates(&b, &a, 3.0, &r);
  CU_ASSERT_FALSE(r.stall_valid);
  mb_sample_t f = stall(1300000, 400000, 12000);
  mb_sample_t g = stall(1000000, 500000, 10000);
  mb_sample_rates(&g, &f, 2.0, &r); /* full went back, some did not */
  CU_ASSERT_FALSE(r.stall_valid);
  mb_sample_t h = stall(2000000, 700000, 500);
  mb_sample_t i = stall(1000000, 500000, 10000);
  mb_sample_rates(&i, &h, 2.0, &r);
  CU_ASSERT_FALSE(r.stall_valid);
  mb_sample_t none;
  memset(&none, 0, sizeof(none));
  mb_sample_rates(&none, &b, 2.0, &r);
  CU_ASSERT_FALSE(r.stall_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.some_stall_share, 0.0, 0);
  mb_sample_rates(&a, &b, 0.0, &r);
  CU_ASSERT_FALSE(r.stall_valid);
}

static void test_refault_rates(void) {
  mb_rates_t r;
  mb_sample_t a, b;
  memset(&a, 0, sizeof(a));
  a.v[MB_F_WORKINGSET_REFAULT_ANON] = 100;
  a.v[MB_F_WORKINGSET_REFAULT_FILE] = 1000;
  a.have = (UINT64_C(1) << MB_F_WORKINGSET_REFAULT_ANON) |
           (UINT64_C(1) << MB_F_WORKINGSET_REFAULT_FILE);
  a.uptime_ms = 1000;
  b = a;
  b.v[MB_F_WORKINGSET_REFAULT_ANON] = 140;
  b.v[MB_F_WORKINGSET_REFAULT_FILE] = 9000;
  b.uptime_ms = 5000;
  mb_sample_rates(&a, &b, 4.0, &r);
  CU_ASSERT_TRUE(r.refault_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.refault_anon_ps, 10.0, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(r.refault_file_ps, 2000.0, 1e-12);
  CU_ASSERT_FALSE(r.stall_valid);
  /* pre-5.9: the single counter is the file rate, anon unknown = 0 */
  mb_sample_t c, d;
  memset(&c, 0, sizeof(c));
  c.v[MB_F_WORKINGSET_REFAULT] = 500;
  c.have = UINT64_C(1) << MB_F_WORKINGSET_REFAULT;
  d = c;
  d.v[MB_F_WORKINGSET_REFAULT] = 800;
  mb_sample_rates(&c, &d, 2.0, &r);
  CU_ASSERT_TRUE(r.refault_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.refault_file_ps, 150.0, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(r.refault_anon_ps, 0.0, 0);
  /* a counter that went back voids both (not one boot) */
  mb_sample_t e = b;
  e.v[MB_F_WORKINGSET_REFAULT_ANON] = 5;
  mb_sample_rates(&a, &e, 4.0, &r);
  CU_ASSERT_FALSE(r.refault_valid);
  CU_ASSERT_DOUBLE_EQUAL(r.refault_file_ps, 0.0, 0);
  mb_sample_t f = b;
  f.v[MB_F_WORKINGSET_REFAULT_FILE] = 999;
  mb_sample_rates(&a, &f, 4.0, &r);
  CU_ASSERT_FALSE(r.refault_valid);
  /* anon alone is not enough: the file rate is the thrash signal */
  mb_sample_t g = a, h = b;
  g.have = h.have = UINT64_C(1) << MB_F_WORKINGSET_REFAULT_ANON;
  mb_sample_rates(&g, &h, 4.0, &r);
  CU_ASSERT_FALSE(r.refault_valid);
  /* the refault and stall rates never disturb the swap rates */
  mb_sample_t i = counters(100, 200, 10, 1000),
              j = counters(300, 260, 16, 3000);
  i.v[MB_F_WORKINGSET_REFAULT_FILE] = 50;
  j.v[MB_F_WORKINGSET_REFAULT_FILE] = 10; /* went back */
  i.have |= UINT64_C(1) << MB_F_WORKINGSET_REFAULT_FILE;
  j.have |= UINT64_C(1) << MB_F_WORKINGSET_REFAULT_FILE;
  mb_sample_rates(&i, &j, 2.0, &r);
  CU_ASSERT_TRUE(r.valid);
  CU_ASSERT_DOUBLE_EQUAL(r.swapin_pps, 100.0, 1e-9);
  CU_ASSERT_FALSE(r.refault_valid);
}

static void test_field_keys(void) {
  for (int f = 0; f < MB_F_COUNT; f++) {
    const char *k = mb_field_key(f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    CU_ASSERT_EQUAL(mb_field_from_key(k, strlen(k)), f);
  }
  CU_ASSERT_PTR_NULL(mb_field_key(MB_F_COUNT));
  CU_ASSERT_EQUAL(mb_field_from_key("MemTotalX", 9), -1);
  CU_ASSERT_EQUAL(mb_field_from_key("MemTotal", 3), -1);
  CU_ASSERT_STRING_EQUAL(mb_field_key(MB_F_ACTIVE_ANON), "Active(anon)");
  CU_ASSERT_STRING_EQUAL(mb_field_key(MB_F_PGMAJFAULT), "pgmajfault");
  CU_ASSERT_STRING_EQUAL(mb_field_key(MB_F_PSI_FULL_TOTAL),
                         "psi_full_total_us");
  CU_ASSERT_STRING_EQUAL(mb_field_key(MB_F_WORKINGSET_REFAULT),
                         "workingset_refault");
  for (int f = 0; f < MB_F_COUNT; f++) {
    mb_field_kind_t k = mb_field_kind(f);
    CU_ASSERT_EQUAL(k == MB_FK_KIB, f < MB_F_FIRST_VMSTAT);
    CU_ASSERT_EQUAL(k == MB_FK_BP || k == MB_FK_US, f >= MB_F_FIRST_PSI);
  }
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"meminfo+vmstat, this machine (6.18)", test_meminfo_modern},
      {"meminfo+vmstat, 2.6.18-xen", test_meminfo_26},
      {"record round trip of a real sample", test_record_roundtrip_real},
      {"meminfo malformed", test_meminfo_bad},
      {"meminfo edges accepted", test_meminfo_good_edges},
      {"meminfo Slab rule slack", test_meminfo_slab_slack},
      {"vmstat malformed", test_vmstat_bad},
      {"record malformed", test_record_bad},
      {"record edges accepted", test_record_good_edges},
      {"random and mutated input", test_fuzz},
      {"rates", test_rates},
      {"anonymous memory growth", test_growth},
      {"field keys", test_field_keys},
      {"pressure file, this machine (6.18)", test_psi_real},
      {"record with PSI and refaults round trip", test_record_psi_roundtrip},
      {"pressure malformed", test_psi_bad},
      {"pressure edges and PSI record keys", test_psi_good_edges},
      {"vmstat refaults before 5.9", test_vmstat_refault_pre59},
      {"stall shares", test_stall_rates},
      {"refault rates", test_refault_rates},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("parse", tests);
}
