/* Tiny shared scaffolding of the CUnit unit tests. */
#ifndef MEMBAL_UNIT_H
#define MEMBAL_UNIT_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT_U64(actual, expected)                                           \
  CU_ASSERT_EQUAL((uint64_t)(actual), (uint64_t)(expected))

/* Reads a whole file into a static-lifetime heap buffer the caller frees. */
static inline char *unit_slurp(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", MEMBAL_TEST_DATA, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  size_t r;
  while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

/* xorshift64: the tests' deterministic generator (state never 0). */
static inline uint64_t unit_xorshift(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

/* Runs the suites; exit status is the number of failures (0 = pass). */
static inline int unit_main(CU_SuiteInfo *suites) {
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 2;
  if (CU_register_suites(suites) != CUE_SUCCESS) {
    fprintf(stderr, "%s\n", CU_get_error_msg());
    CU_cleanup_registry();
    return 2;
  }
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed =
      CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  unsigned run = CU_get_number_of_tests_run();
  CU_cleanup_registry();
  if (run == 0)
    return 3;
  return failed ? 1 : 0;
}

/* unit_main with one suite, the case of every unit test program. */
static inline int unit_main_suite(const char *name, CU_TestInfo *tests) {
  CU_SuiteInfo suites[] = {
      {name, NULL, NULL, NULL, NULL, tests},
      CU_SUITE_INFO_NULL,
  };
  return unit_main(suites);
}

#endif
