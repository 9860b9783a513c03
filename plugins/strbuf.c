#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void mb_sb_printf(mb_strbuf_t *b, const char *fmt, ...) {
  if (b->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap - b->len <= (size_t)n)
      cap *= 2;
    char *s = realloc(b->s, cap);
    if (s == NULL) {
      b->failed = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

void mb_sb_json_str(mb_strbuf_t *b, const char *s) {
  mb_sb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      mb_sb_printf(b, "\\%c", *p);
    else if (*p < 0x20)
      mb_sb_printf(b, "\\u%04x", *p);
    else
      mb_sb_printf(b, "%c", *p);
  }
  mb_sb_printf(b, "\"");
}

void mb_sb_json_num(mb_strbuf_t *b, double v) {
  if (!isfinite(v) || v < 0)
    mb_sb_printf(b, "null");
  else
    mb_sb_printf(b, "%.3f", v);
}

void mb_sb_dispose(mb_strbuf_t *b) {
  free(b->s);
  *b = (mb_strbuf_t){0};
}
