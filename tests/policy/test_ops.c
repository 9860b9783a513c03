/* Unit tests of policy/ops.c: the operator's request language, holds and
 * reservations. */
#include "ops.h"
#include "unit.h"

static mb_op_t parse_ok(const char *line) {
  mb_op_t op;
  char err[256] = "";
  int rc = mb_op_parse(line, &op, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "refused \"%s\": %s\n", line, err);
  CU_ASSERT_EQUAL(rc, 0);
  return op;
}

static void test_parse_good(void) {
  mb_op_t op = parse_ok("status");
  CU_ASSERT_EQUAL(op.kind, MB_OP_STATUS);
  op = parse_ok("  status \t json ");
  CU_ASSERT_EQUAL(op.kind, MB_OP_STATUS_JSON);
  op = parse_ok("free");
  CU_ASSERT_EQUAL(op.kind, MB_OP_FREE);
  op = parse_ok("hold web-1.example");
  CU_ASSERT_EQUAL(op.kind, MB_OP_HOLD);
  CU_ASSERT_STRING_EQUAL(op.name, "web-1.example");
  ASSERT_U64(op.secs, 0);
  op = parse_ok("hold db 7200");
  ASSERT_U64(op.secs, 7200);
  op = parse_ok("release db");
  CU_ASSERT_EQUAL(op.kind, MB_OP_RELEASE);
  CU_ASSERT_STRING_EQUAL(op.name, "db");
  op = parse_ok("reserve 1048576 vm4 120");
  CU_ASSERT_EQUAL(op.kind, MB_OP_RESERVE);
  ASSERT_U64(op.kib, 1048576);
  CU_ASSERT_STRING_EQUAL(op.name, "vm4");
  ASSERT_U64(op.secs, 120);
  op = parse_ok("reserve 1 - 86400");
  CU_ASSERT_STRING_EQUAL(op.name, "");
  op = parse_ok("cancel 17");
  CU_ASSERT_EQUAL(op.kind, MB_OP_CANCEL);
  ASSERT_U64(op.id, 17);
  CU_ASSERT_TRUE(mb_op_changes(MB_OP_HOLD));
  CU_ASSERT_TRUE(mb_op_changes(MB_OP_RESERVE));
  CU_ASSERT_FALSE(mb_op_changes(MB_OP_STATUS_JSON));
  CU_ASSERT_FALSE(mb_op_changes(MB_OP_FREE));
}

static void test_parse_bad(void) {
  static const struct {
    const char *line, *why; /* why: a word the error must contain */
  } t[] = {
      {"", "empty"},
      {"   ", "empty"},
      {"frobnicate vm1", "unknown request \"frobnicate\""},
      {"status yaml", "unknown request"},
      {"hold", "unknown request"},
      {"hold a b c", "unknown request"},
      {"hold vm1 0", "duration \"0\""},
      {"hold vm1 -5", "duration"},
      {"hold vm1 31622401", "duration"}, /* a year and a second */
      {"hold vm1 12x", "duration"},
      {"hold \x01vm", "not a domain name"},
      {"hold vm\x7f", "not a domain name"},
      {"hold aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "not a domain name"}, /* 64 characters */
      {"release", "unknown request"},
      {"reserve 0 vm4 10", "size \"0\""},
      {"reserve 99999999999999999999 vm4 10", "size"},
      {"reserve 1024 vm4 0", "timeout \"0\""},
      {"reserve 1024 vm4 86401", "timeout"},
      {"reserve 1024 vm4", "unknown request"},
      {"reserve 1024 vm4 10 extra", "unknown request"},
      {"reserve 1G vm4 10", "size"},
      {"cancel x", "no reservation x"},
      {"cancel 0", "no reservation 0"},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    mb_op_t op;
    char err[256] = "";
    CU_ASSERT_EQUAL(mb_op_parse(t[i].line, &op, err, sizeof(err)), -1);
    if (strstr(err, t[i].why) == NULL) {
      fprintf(stderr, "\"%s\": error \"%s\" lacks \"%s\"\n", t[i].line, err,
              t[i].why);
      CU_FAIL("error text");
    }
  }
  /* a line longer than the control socket allows */
  char line[1100];
  memset(line, 'a', sizeof(line) - 1);
  line[sizeof(line) - 1] = 0;
  mb_op_t op;
  char err[256] = "";
  CU_ASSERT_EQUAL(mb_op_parse(line, &op, err, sizeof(err)), -1);
}

static mb_domain_t dom(const char *name) {
  mb_domain_t d = {0};
  snprintf(d.name, sizeof(d.name), "%s", name);
  return d;
}

static void test_holds(void) {
  static mb_ops_t ops;
  char err[128];
  double until = -1;
  mb_ops_init(&ops);
  CU_ASSERT_FALSE(mb_ops_held(&ops, "db", NULL));
  CU_ASSERT_EQUAL(mb_ops_hold(&ops, "db", 0, 100.0, err, sizeof(err)), 0);
  CU_ASSERT_TRUE(mb_ops_held(&ops, "db", &until));
  CU_ASSERT_EQUAL(until, 0);
  /* a second hold replaces the first */
  CU_ASSERT_EQUAL(mb_ops_hold(&ops, "db", 60, 100.0, err, sizeof(err)), 0);
  ASSERT_U64(ops.nholds, 1);
  CU_ASSERT_TRUE(mb_ops_held(&ops, "db", &until));
  CU_ASSERT_EQUAL(until, 160.0);
  size_t nev = 9;
  mb_ops_event_t ev[4];
  mb_ops_expire(&ops, NULL, 0, 159.9, ev, 4, &nev);
  CU_ASSERT_TRUE(mb_ops_held(&ops, "db", NULL));
  ASSERT_U64(nev, 0);
  mb_ops_expire(&ops, NULL, 0, 160.0, ev, 4, &nev);
  CU_ASSERT_FALSE(mb_ops_held(&ops, "db", NULL));
  /* release */
  CU_ASSERT_EQUAL(mb_ops_release(&ops, "db", err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "db is not held"));
  CU_ASSERT_EQUAL(mb_ops_hold(&ops, "db", 0, 0, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(mb_ops_release(&ops, "db", err, sizeof(err)), 0);
  CU_ASSERT_FALSE(mb_ops_held(&ops, "db", NULL));
  /* the table is bounded */
  for (int i = 0; i < MB_OPS_MAX_HOLDS; i++) {
    char name[16];
    snprintf(name, sizeof(name), "vm%d", i);
    CU_ASSERT_EQUAL(mb_ops_hold(&ops, name, 0, 0, err, sizeof(err)), 0);
  }
  CU_ASSERT_EQUAL(mb_ops_hold(&ops, "one-more", 0, 0, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "holds already"));
  CU_ASSERT_EQUAL(mb_ops_hold(&ops, "vm7", 5, 0, err, sizeof(err)), 0);
}

static void test_reservations(void) {
  static mb_ops_t ops;
  char err[128];
  uint64_t id1 = 0, id2 = 0, id3 = 0;
  mb_ops_init(&ops);
  CU_ASSERT_EQUAL(
      mb_ops_reserve(&ops, "vm4", 1048576, 120, 1000.0, &id1, err, sizeof(err)),
      0);
  CU_ASSERT_EQUAL(
      mb_ops_reserve(&ops, "", 262144, 10, 1000.0, &id2, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(
      mb_ops_reserve(&ops, "vm9", 4096, 60, 1000.0, &id3, err, sizeof(err)), 0);
  ASSERT_U64(id1, 1);
  ASSERT_U64(id2, 2);
  ASSERT_U64(id3, 3);
  ASSERT_U64(mb_ops_reserved_kib(&ops), 1048576 + 262144 + 4096);
  CU_ASSERT_EQUAL(mb_ops_cancel(&ops, 3, err, sizeof(err)), 0);
  CU_ASSERT_EQUAL(mb_ops_cancel(&ops, 3, err, sizeof(err)), -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "no reservation 3"));

  /* nothing ends before its time or its domain */
  mb_domain_t doms[2] = {dom("Domain-0"), dom("vm1")};
  mb_ops_event_t ev[4];
  size_t nev = 9;
  ASSERT_U64(mb_ops_expire(&ops, doms, 2, 1009.0, ev, 4, &nev),
             1048576 + 262144);
  ASSERT_U64(nev, 0);
  /* the unnamed one expires at its time */
  ASSERT_U64(mb_ops_expire(&ops, doms, 2, 1010.0, ev, 4, &nev), 1048576);
  ASSERT_U64(nev, 1);
  ASSERT_U64(ev[0].resv.id, 2);
  CU_ASSERT_FALSE(ev[0].met);
  /* vm4 is listed while it is built, its memory not yet populated: the
   * reservation holds; populated (within 1/64 of it): met */
  mb_domain_t doms2[3] = {dom("Domain-0"), dom("vm1"), dom("vm4")};
  /* what vm4 holds is in its target: only the rest is kept out of the
   * pool (counted twice, the targets would have to fit a pool short of
   * it) */
  doms2[2].current_kib = 4096;
  ASSERT_U64(mb_ops_expire(&ops, doms2, 3, 1010.5, ev, 4, &nev),
             1048576 - 4096);
  ASSERT_U64(nev, 0);
  doms2[2].current_kib = 1048576 - 1048576 / 64 - 1;
  ASSERT_U64(mb_ops_expire(&ops, doms2, 3, 1010.7, ev, 4, &nev),
             1048576 / 64 + 1);
  ASSERT_U64(nev, 0);
  doms2[2].current_kib = 1048576 - 1048576 / 64;
  ASSERT_U64(mb_ops_expire(&ops, doms2, 3, 1011.0, ev, 4, &nev), 0);
  ASSERT_U64(nev, 1);
  ASSERT_U64(ev[0].resv.id, 1);
  CU_ASSERT_TRUE(ev[0].met);
  ASSERT_U64(ev[0].resv.kib, 1048576);
  CU_ASSERT_STRING_EQUAL(ev[0].resv.name, "vm4");
  ASSERT_U64(ops.nresv, 0);

  /* bounded table; ends beyond evmax are not reported, yet they end */
  for (int i = 0; i < MB_OPS_MAX_RESV; i++)
    CU_ASSERT_EQUAL(mb_ops_reserve(&ops, "", 1, 1, 0.0, &id1, err, sizeof(err)),
                    0);
  CU_ASSERT_EQUAL(mb_ops_reserve(&ops, "", 1, 1, 0.0, &id1, err, sizeof(err)),
                  -1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err, "reservations already"));
  ASSERT_U64(mb_ops_reserved_kib(&ops), MB_OPS_MAX_RESV);
  ASSERT_U64(mb_ops_expire(&ops, NULL, 0, 5.0, ev, 4, &nev), 0);
  ASSERT_U64(nev, 4);
  ASSERT_U64(ops.nresv, 0);
  /* ids keep counting: a cancelled or ended id is never reused */
  CU_ASSERT_EQUAL(mb_ops_reserve(&ops, "x", 1, 1, 0.0, &id1, err, sizeof(err)),
                  0);
  ASSERT_U64(id1, 4 + MB_OPS_MAX_RESV);
}

int main(void) {
  static CU_TestInfo tests[] = {
      {"requests parsed", test_parse_good},
      {"bad requests refused, saying why", test_parse_bad},
      {"holds: replace, expire, release, bounded", test_holds},
      {"reservations: met, expired, cancelled, bounded", test_reservations},
      CU_TEST_INFO_NULL,
  };
  return unit_main_suite("ops", tests);
}
