/*
 * A growable string for the JSON and text that membal serves (status,
 * live view). A failed allocation marks the buffer failed; everything after
 * it is a no-op, so callers check once at the end.
 */
#ifndef MEMBAL_STRBUF_H
#define MEMBAL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *s; /* owned; NUL-terminated when len > 0 */
  size_t len, cap;
  bool failed;
} mb_strbuf_t;

void mb_sb_printf(mb_strbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string literal: quotes, backslashes and control characters
 * escaped. NULL is "". */
void mb_sb_json_str(mb_strbuf_t *b, const char *s);
/* A JSON number with 3 decimals, or null when not finite or < 0 (unknown). */
void mb_sb_json_num(mb_strbuf_t *b, double v);
/* Frees the string and resets the buffer. */
void mb_sb_dispose(mb_strbuf_t *b);

#endif
