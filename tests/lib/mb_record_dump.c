/*
 * mb-record-dump: parse a guest record (stdin) with the policy parser and
 * print it back one "key value" per line, or the parser's error on stderr
 * and exit 1. Lets shell tests assert what dom0 would actually see.
 */
#include "membal_policy.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  static char buf[2 * MB_RECORD_MAX];
  char err[256];
  mb_sample_t s;
  size_t len = fread(buf, 1, sizeof(buf), stdin);
  if (ferror(stdin)) {
    fprintf(stderr, "mb-record-dump: cannot read stdin\n");
    return 2;
  }
  if (mb_record_parse(buf, len, &s, err, sizeof(err)) != 0) {
    fprintf(stderr, "mb-record-dump: rejected: %s\n", err);
    return 1;
  }
  printf("seq %llu\nuptime_ms %llu\nurgent %d\n", (unsigned long long)s.seq,
         (unsigned long long)s.uptime_ms, s.urgent ? 1 : 0);
  for (int f = 0; f < MB_F_COUNT; f++) {
    if (mb_sample_has(&s, (mb_field_t)f))
      printf("%s %llu\n", mb_field_key((mb_field_t)f),
             (unsigned long long)s.v[f]);
  }
  return 0;
}
