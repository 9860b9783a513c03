/*
 * Parsers of guest-written text: /proc/meminfo, /proc/vmstat and the
 * xenstore record. Everything here reads untrusted input: every byte is
 * checked, numbers are bounded, nothing is trusted to be NUL-terminated.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy_impl.h"

int mb_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Characters of kernel meminfo/vmstat keys and of record keys. */
static bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
         c == '_' || c == '(' || c == ')';
}

/* Strict decimal: 1..20 digits, no sign, no blanks, fits uint64_t. */
static int parse_u64(const char *s, size_t n, uint64_t *v) {
  uint64_t x = 0;
  if (n == 0 || n > 20)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i]))
      return -1;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (x > (UINT64_MAX - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  *v = x;
  return 0;
}

/* Quotes at most 40 bytes of untrusted text into an error message, with
 * anything unprintable shown as '?'. */
static const char *quote(const char *s, size_t n, char *buf, size_t buflen) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < buflen && i < 40; i++)
    buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  buf[j] = '\0';
  return buf;
}

/* Iterates over the lines of text[0..len). A final line without '\n' is
 * accepted; an embedded NUL is not. Returns 1 with the line, 0 at the end,
 * -1 on NUL. */
typedef struct {
  const char *text;
  size_t len, pos;
  unsigned lineno;
} line_iter_t;

static int next_line(line_iter_t *it, const char **line, size_t *n) {
  if (it->pos >= it->len)
    return 0;
  const char *start = it->text + it->pos;
  size_t rest = it->len - it->pos;
  const char *nl = memchr(start, '\n', rest);
  size_t l = nl ? (size_t)(nl - start) : rest;
  it->pos += l + (nl ? 1 : 0);
  it->lineno++;
  if (memchr(start, '\0', l) != NULL)
    return -1;
  *line = start;
  *n = l;
  return 1;
}

static bool is_meminfo_field(int f) { return f >= 0 && f < MB_F_FIRST_VMSTAT; }
static bool is_vmstat_field(int f) {
  return f >= MB_F_FIRST_VMSTAT && f < MB_F_FIRST_PSI;
}

/* The record parser's duplicate tracking gives the fields and its three
 * pseudo-keys one bit each of a uint64_t. */
_Static_assert(MB_F_COUNT + 3 <= 64, "record keys no longer fit the bitmap");

/* Fields that are a part of the guest's RAM and so can never exceed
 * MemTotal. Committed_AS can (overcommit) and swap figures do not count. */
static bool bounded_by_memtotal(int f) {
  return is_meminfo_field(f) && f != MB_F_MEMTOTAL && f != MB_F_SWAPTOTAL &&
         f != MB_F_SWAPFREE && f != MB_F_COMMITTED_AS;
}

int mb_sample_check(const mb_sample_t *s, char *err, size_t errlen) {
  for (int f = 0; f < MB_F_FIRST_VMSTAT; f++) {
    if (mb_sample_has(s, f) && s->v[f] > MB_KIB_MAX)
      return mb_fail(err, errlen, "%s: %llu kB is absurd (limit %llu)",
                     mb_field_key(f), (unsigned long long)s->v[f],
                     (unsigned long long)MB_KIB_MAX);
  }
  if (mb_sample_has(s, MB_F_MEMTOTAL)) {
    uint64_t total = s->v[MB_F_MEMTOTAL];
    if (total == 0)
      return mb_fail(err, errlen, "MemTotal: 0 kB");
    for (int f = 0; f < MB_F_FIRST_VMSTAT; f++) {
      if (bounded_by_memtotal(f) && mb_sample_has(s, f) && s->v[f] > total)
        return mb_fail(err, errlen, "%s: %llu kB exceeds MemTotal %llu kB",
                       mb_field_key(f), (unsigned long long)s->v[f],
                       (unsigned long long)total);
    }
  }
  if (mb_sample_has(s, MB_F_SWAPFREE) && mb_sample_has(s, MB_F_SWAPTOTAL) &&
      s->v[MB_F_SWAPFREE] > s->v[MB_F_SWAPTOTAL])
    return mb_fail(err, errlen, "SwapFree: %llu kB exceeds SwapTotal %llu kB",
                   (unsigned long long)s->v[MB_F_SWAPFREE],
                   (unsigned long long)s->v[MB_F_SWAPTOTAL]);
  static const mb_field_t avgs[2] = {MB_F_PSI_SOME_AVG10, MB_F_PSI_FULL_AVG10};
  for (int i = 0; i < 2; i++) {
    if (mb_sample_has(s, avgs[i]) && s->v[avgs[i]] > MB_PSI_BP_MAX)
      return mb_fail(err, errlen, "%s: %llu is above %d (100.00 %%)",
                     mb_field_key(avgs[i]), (unsigned long long)s->v[avgs[i]],
                     MB_PSI_BP_MAX);
  }
  /* "full" is a part of "some": every instant all tasks stall, some do. */
  if (mb_sample_has(s, MB_F_PSI_SOME_TOTAL) &&
      mb_sample_has(s, MB_F_PSI_FULL_TOTAL) &&
      s->v[MB_F_PSI_FULL_TOTAL] > s->v[MB_F_PSI_SOME_TOTAL])
    return mb_fail(err, errlen,
                   "psi_full_total_us: %llu exceeds psi_some_total_us %llu",
                   (unsigned long long)s->v[MB_F_PSI_FULL_TOTAL],
                   (unsigned long long)s->v[MB_F_PSI_SOME_TOTAL]);
  if (mb_sample_has(s, MB_F_SRECLAIMABLE) &&
      mb_sample_has(s, MB_F_SUNRECLAIM) && mb_sample_has(s, MB_F_SLAB) &&
      s->v[MB_F_SRECLAIMABLE] + s->v[MB_F_SUNRECLAIM] >
          s->v[MB_F_SLAB] + MB_SLAB_SLACK_KIB)
    return mb_fail(
        err, errlen, "SReclaimable + SUnreclaim (%llu kB) exceed Slab %llu kB",
        (unsigned long long)(s->v[MB_F_SRECLAIMABLE] + s->v[MB_F_SUNRECLAIM]),
        (unsigned long long)s->v[MB_F_SLAB]);
  return 0;
}

static int reject(mb_sample_t *out) {
  memset(out, 0, sizeof(*out));
  return -1;
}

/* Skips spaces and tabs from *p up to end. */
static size_t skip_blank(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  return i;
}

/* Splits a line at the first sep into a key made of key characters.
 * Returns the key's length, or 0 after writing the error ("<what> line N:
 * ..."); shape names the expected form for the message. */
static size_t split_key(const char *line, size_t n, char sep, const char *what,
                        const char *shape, unsigned lineno, char *err,
                        size_t errlen) {
  char q[48];
  const char *end = memchr(line, sep, n);
  size_t klen = end ? (size_t)(end - line) : 0;
  if (klen == 0) {
    mb_fail(err, errlen, "%s line %u: no '%s' in '%s'", what, lineno, shape,
            quote(line, n, q, sizeof(q)));
    return 0;
  }
  for (size_t i = 0; i < klen; i++) {
    if (!is_key_char(line[i])) {
      mb_fail(err, errlen, "%s line %u: bad character in key '%s'", what,
              lineno, quote(line, klen, q, sizeof(q)));
      return 0;
    }
  }
  return klen;
}

/* Records key k as seen; a second sighting is an error naming key. */
static int mark_seen(uint64_t *seen, int k, const char *what, unsigned lineno,
                     const char *key, char *err, size_t errlen) {
  if ((*seen >> k) & 1u)
    return mb_fail(err, errlen, "%s line %u: duplicate key %s", what, lineno,
                   key);
  *seen |= UINT64_C(1) << k;
  return 0;
}

/* An unknown key (not tracked by `seen`) on an earlier line of text?
 * Rescans the lines before `line`: O(lines^2) over text the caller
 * already bounded (a record is < 2 KiB, /proc files a few hundred lines)
 * and no table to allocate. */
static bool seen_before(const char *text, const char *line, const char *key,
                        size_t klen, char sep) {
  for (const char *l = text; l < line;) {
    const char *nl = memchr(l, '\n', (size_t)(line - l));
    size_t n = nl ? (size_t)(nl - l) : (size_t)(line - l);
    if (n > klen && l[klen] == sep && memcmp(l, key, klen) == 0)
      return true;
    if (nl == NULL)
      break;
    l = nl + 1;
  }
  return false;
}

/* Rejects an unknown key seen on an earlier line. */
static int check_unknown_dup(const line_iter_t *it, const char *line,
                             size_t klen, char sep, const char *what, char *err,
                             size_t errlen) {
  char q[48];
  if (!seen_before(it->text, line, line, klen, sep))
    return 0;
  return mb_fail(err, errlen, "%s line %u: duplicate key %s", what, it->lineno,
                 quote(line, klen, q, sizeof(q)));
}

/*
 * One meminfo line: "Key:" blanks digits [" kB"]. Known fields must carry
 * the kB unit (a figure without it is a count, e.g. HugePages_Total, and
 * would be misread as KiB).
 */
int mb_meminfo_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                     size_t errlen) {
  char q[48], q2[48];
  uint64_t seen = 0;
  const char *line;
  size_t n;
  int r;
  if (out == NULL)
    return mb_fail(err, errlen, "meminfo: no output sample");
  memset(out, 0, sizeof(*out));
  if (text == NULL || len == 0)
    return mb_fail(err, errlen, "meminfo: empty text");
  line_iter_t it = {text, len, 0, 0};
  while ((r = next_line(&it, &line, &n)) == 1) {
    size_t klen =
        split_key(line, n, ':', "meminfo", "Key:", it.lineno, err, errlen);
    if (klen == 0)
      return reject(out);
    size_t i = skip_blank(line, klen + 1, n);
    size_t vstart = i;
    while (i < n && is_digit(line[i]))
      i++;
    size_t vlen = i - vstart;
    bool has_unit = false;
    size_t j = skip_blank(line, i, n);
    if (j > i && j + 2 == n && line[j] == 'k' && line[j + 1] == 'B') {
      has_unit = true;
      i = n;
    }
    uint64_t v;
    if (vlen == 0 || i != n || parse_u64(line + vstart, vlen, &v) != 0) {
      mb_fail(err, errlen,
              "meminfo line %u (%s): value '%s' is not a non-negative "
              "decimal number of kB",
              it.lineno, quote(line, klen, q, sizeof(q)),
              quote(line + klen + 1, n - klen - 1, q2, sizeof(q2)));
      return reject(out);
    }
    int f = mb_field_from_key(line, klen);
    if (!is_meminfo_field(f)) {
      /* unknown keys are ignored, once well-formed and not repeated */
      if (check_unknown_dup(&it, line, klen, ':', "meminfo", err, errlen))
        return reject(out);
      continue;
    }
    if (!has_unit) {
      mb_fail(err, errlen, "meminfo line %u (%s): value has no kB unit",
              it.lineno, mb_field_key(f));
      return reject(out);
    }
    if (mark_seen(&seen, f, "meminfo", it.lineno, mb_field_key(f), err,
                  errlen) != 0)
      return reject(out);
    out->v[f] = v;
  }
  if (r < 0) {
    mb_fail(err, errlen, "meminfo line %u: NUL byte", it.lineno);
    return reject(out);
  }
  out->have = seen;
  if (mb_sample_check(out, err, errlen) != 0)
    return reject(out);
  return 0;
}

/* One vmstat line: "key value" with a single space. */
int mb_vmstat_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen) {
  char q[48], q2[48];
  uint64_t seen = 0;
  const char *line;
  size_t n;
  int r;
  if (out == NULL)
    return mb_fail(err, errlen, "vmstat: no output sample");
  if (text == NULL || len == 0) {
    mb_fail(err, errlen, "vmstat: empty text");
    return reject(out);
  }
  line_iter_t it = {text, len, 0, 0};
  mb_sample_t s = *out;
  while ((r = next_line(&it, &line, &n)) == 1) {
    size_t klen =
        split_key(line, n, ' ', "vmstat", "key value", it.lineno, err, errlen);
    if (klen == 0)
      return reject(out);
    int f = mb_field_from_key(line, klen);
    const char *val = line + klen + 1;
    size_t vlen = n - klen - 1;
    uint64_t v;
    if (!is_vmstat_field(f)) {
      /* Unknown counters are ignored but must still look like one: some
       * kernels print signed per-cpu drift, so a leading '-' is allowed
       * here and only here. */
      size_t k = (vlen > 0 && val[0] == '-') ? 1 : 0;
      if (vlen == k || parse_u64(val + k, vlen - k, &v) != 0) {
        mb_fail(err, errlen, "vmstat line %u (%s): value '%s' is not a number",
                it.lineno, quote(line, klen, q, sizeof(q)),
                quote(val, vlen, q2, sizeof(q2)));
        return reject(out);
      }
      if (check_unknown_dup(&it, line, klen, ' ', "vmstat", err, errlen))
        return reject(out);
      continue;
    }
    if (parse_u64(val, vlen, &v) != 0) {
      mb_fail(err, errlen,
              "vmstat line %u (%s): value '%s' is not a non-negative decimal "
              "count",
              it.lineno, mb_field_key(f), quote(val, vlen, q, sizeof(q)));
      return reject(out);
    }
    if (mark_seen(&seen, f, "vmstat", it.lineno, mb_field_key(f), err,
                  errlen) != 0)
      return reject(out);
    s.v[f] = v;
  }
  if (r < 0) {
    mb_fail(err, errlen, "vmstat line %u: NUL byte", it.lineno);
    return reject(out);
  }
  s.have |= seen;
  *out = s;
  return 0;
}

/* Expects the literal lit at s[*i]; advances past it. */
static bool eat(const char *s, size_t n, size_t *i, const char *lit) {
  size_t l = strlen(lit);
  if (n - *i < l || memcmp(s + *i, lit, l) != 0)
    return false;
  *i += l;
  return true;
}

/* A PSI average "D.DD" (1 to 3 integer digits, 2 decimals, at most 100.00)
 * as basis points, ending at a blank or the end of the line. */
static bool psi_avg(const char *s, size_t n, size_t *i, uint64_t *bp) {
  size_t k = *i, d = 0;
  uint64_t whole = 0;
  while (k < n && is_digit(s[k]) && d < 4) {
    whole = whole * 10 + (uint64_t)(s[k++] - '0');
    d++;
  }
  if (d == 0 || d > 3 || n - k < 3 || s[k] != '.' || !is_digit(s[k + 1]) ||
      !is_digit(s[k + 2]))
    return false;
  uint64_t v = whole * 100 + (uint64_t)(s[k + 1] - '0') * 10 +
               (uint64_t)(s[k + 2] - '0');
  k += 3;
  if (v > MB_PSI_BP_MAX || (k < n && s[k] != ' '))
    return false;
  *bp = v;
  *i = k;
  return true;
}

int mb_psi_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                 size_t errlen) {
  static const char *const avg_names[3] = {"avg10=", "avg60=", "avg300="};
  char q[48];
  bool seen_some = false, seen_full = false;
  const char *line;
  size_t n;
  int r;
  if (out == NULL)
    return mb_fail(err, errlen, "pressure: no output sample");
  if (text == NULL || len == 0) {
    mb_fail(err, errlen, "pressure: empty text");
    return reject(out);
  }
  line_iter_t it = {text, len, 0, 0};
  mb_sample_t s = *out;
  /* PSI fields already in *out are replaced, not mixed with these. */
  for (int f = MB_F_FIRST_PSI; f < MB_F_COUNT; f++) {
    s.have &= ~(UINT64_C(1) << f);
    s.v[f] = 0;
  }
  while ((r = next_line(&it, &line, &n)) == 1) {
    size_t i = 0;
    bool full;
    if (eat(line, n, &i, "some "))
      full = false;
    else if (eat(line, n, &i, "full "))
      full = true;
    else {
      mb_fail(err, errlen,
              "pressure line %u: '%s' is neither 'some' nor "
              "'full'",
              it.lineno, quote(line, n, q, sizeof(q)));
      return reject(out);
    }
    const char *kind = full ? "full" : "some";
    if (full ? seen_full : seen_some) {
      mb_fail(err, errlen, "pressure line %u: duplicate line %s", it.lineno,
              kind);
      return reject(out);
    }
    uint64_t avg[3], total;
    for (int a = 0; a < 3; a++) {
      if ((a > 0 && !eat(line, n, &i, " ")) ||
          !eat(line, n, &i, avg_names[a]) || !psi_avg(line, n, &i, &avg[a])) {
        mb_fail(err, errlen,
                "pressure line %u (%s): expected %sD.DD (at most "
                "100.00) in '%s'",
                it.lineno, kind, avg_names[a], quote(line, n, q, sizeof(q)));
        return reject(out);
      }
    }
    if (!eat(line, n, &i, " total=") ||
        parse_u64(line + i, n - i, &total) != 0) {
      mb_fail(err, errlen,
              "pressure line %u (%s): expected total=<decimal "
              "microseconds> at the end of '%s'",
              it.lineno, kind, quote(line, n, q, sizeof(q)));
      return reject(out);
    }
    mb_field_t favg = full ? MB_F_PSI_FULL_AVG10 : MB_F_PSI_SOME_AVG10;
    mb_field_t ftot = full ? MB_F_PSI_FULL_TOTAL : MB_F_PSI_SOME_TOTAL;
    s.v[favg] = avg[0];
    s.v[ftot] = total;
    s.have |= (UINT64_C(1) << favg) | (UINT64_C(1) << ftot);
    if (full)
      seen_full = true;
    else
      seen_some = true;
  }
  if (r < 0) {
    mb_fail(err, errlen, "pressure line %u: NUL byte", it.lineno);
    return reject(out);
  }
  if (!seen_some) {
    mb_fail(err, errlen, "pressure: no 'some' line");
    return reject(out);
  }
  /* Only the fields parsed here are checked: *out may hold anything. */
  if (seen_full && s.v[MB_F_PSI_FULL_TOTAL] > s.v[MB_F_PSI_SOME_TOTAL]) {
    mb_fail(err, errlen,
            "pressure: full total=%llu exceeds psi_some_total_us %llu",
            (unsigned long long)s.v[MB_F_PSI_FULL_TOTAL],
            (unsigned long long)s.v[MB_F_PSI_SOME_TOTAL]);
    return reject(out);
  }
  *out = s;
  return 0;
}

int mb_record_format(const mb_sample_t *s, char *buf, size_t buflen) {
  if (s == NULL || buf == NULL || buflen == 0)
    return -1;
  size_t pos = 0;
  int w =
      snprintf(buf, buflen, "membal 1\nseq %llu\nuptime_ms %llu\n",
               (unsigned long long)s->seq, (unsigned long long)s->uptime_ms);
  if (w < 0 || (size_t)w >= buflen)
    return -1;
  pos = (size_t)w;
  if (s->urgent) {
    w = snprintf(buf + pos, buflen - pos, "urgent 1\n");
    if (w < 0 || (size_t)w >= buflen - pos)
      return -1;
    pos += (size_t)w;
  }
  for (int f = 0; f < MB_F_COUNT; f++) {
    if (!mb_sample_has(s, f))
      continue;
    w = snprintf(buf + pos, buflen - pos, "%s %llu\n", mb_field_key(f),
                 (unsigned long long)s->v[f]);
    if (w < 0 || (size_t)w >= buflen - pos)
      return -1;
    pos += (size_t)w;
  }
  if (pos > MB_RECORD_MAX - 1)
    return -1;
  return (int)pos;
}

/* Pseudo-keys of the record besides the fields, for duplicate tracking. */
enum { K_SEQ = MB_F_COUNT, K_UPTIME, K_URGENT };

int mb_record_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen) {
  char q[48], q2[48];
  uint64_t seen = 0;
  const char *line;
  size_t n;
  int r;
  if (out == NULL)
    return mb_fail(err, errlen, "record: no output sample");
  memset(out, 0, sizeof(*out));
  if (text == NULL || len == 0)
    return mb_fail(err, errlen, "record: empty");
  if (len > MB_RECORD_MAX - 1)
    return mb_fail(err, errlen, "record: %zu bytes, limit is %d", len,
                   MB_RECORD_MAX - 1);
  line_iter_t it = {text, len, 0, 0};
  r = next_line(&it, &line, &n);
  if (r != 1 || n != 8 || memcmp(line, "membal 1", 8) != 0) {
    mb_fail(err, errlen, "record line 1: header '%s', expected 'membal 1'",
            r == 1 ? quote(line, n, q, sizeof(q)) : "");
    return reject(out);
  }
  mb_sample_t s;
  memset(&s, 0, sizeof(s));
  while ((r = next_line(&it, &line, &n)) == 1) {
    size_t klen =
        split_key(line, n, ' ', "record", "key value", it.lineno, err, errlen);
    if (klen == 0)
      return reject(out);
    const char *sp = line + klen;
    uint64_t v;
    if (parse_u64(sp + 1, n - klen - 1, &v) != 0) {
      mb_fail(err, errlen,
              "record line %u (%s): value '%s' is not a non-negative decimal "
              "number",
              it.lineno, quote(line, klen, q, sizeof(q)),
              quote(sp + 1, n - klen - 1, q2, sizeof(q2)));
      return reject(out);
    }
    int k;
    if (klen == 3 && memcmp(line, "seq", 3) == 0)
      k = K_SEQ;
    else if (klen == 9 && memcmp(line, "uptime_ms", 9) == 0)
      k = K_UPTIME;
    else if (klen == 6 && memcmp(line, "urgent", 6) == 0)
      k = K_URGENT;
    else
      k = mb_field_from_key(line, klen);
    if (k < 0) {
      /* a later format's field: ignored, unless repeated */
      if (check_unknown_dup(&it, line, klen, ' ', "record", err, errlen))
        return reject(out);
      continue;
    }
    if (mark_seen(&seen, k, "record", it.lineno,
                  quote(line, klen, q, sizeof(q)), err, errlen) != 0)
      return reject(out);
    switch (k) {
    case K_SEQ:
      if (v == 0) {
        mb_fail(err, errlen, "record line %u: seq must be > 0", it.lineno);
        return reject(out);
      }
      s.seq = v;
      break;
    case K_UPTIME:
      s.uptime_ms = v;
      break;
    case K_URGENT:
      if (v > 1) {
        mb_fail(err, errlen, "record line %u: urgent must be 0 or 1",
                it.lineno);
        return reject(out);
      }
      s.urgent = v == 1;
      break;
    default:
      s.v[k] = v;
      s.have |= UINT64_C(1) << k;
      break;
    }
  }
  if (r < 0) {
    mb_fail(err, errlen, "record line %u: NUL byte", it.lineno);
    return reject(out);
  }
  if (!((seen >> K_SEQ) & 1u)) {
    mb_fail(err, errlen, "record: missing key seq");
    return reject(out);
  }
  if (!((seen >> K_UPTIME) & 1u)) {
    mb_fail(err, errlen, "record: missing key uptime_ms");
    return reject(out);
  }
  if (mb_sample_check(&s, err, errlen) != 0)
    return reject(out);
  *out = s;
  return 0;
}

/* AnonPages + swap used: the guest's anonymous memory, resident or not.
 * Returns false when the sample lacks the figures. */
static bool anon_demand_kib(const mb_sample_t *s, double *out) {
  double anon;
  if (mb_sample_has(s, MB_F_ANONPAGES))
    anon = (double)s->v[MB_F_ANONPAGES];
  else if (mb_sample_has(s, MB_F_ACTIVE_ANON) &&
           mb_sample_has(s, MB_F_INACTIVE_ANON))
    anon = (double)s->v[MB_F_ACTIVE_ANON] + (double)s->v[MB_F_INACTIVE_ANON];
  else
    return false;
  if (!mb_sample_has(s, MB_F_SWAPTOTAL) || !mb_sample_has(s, MB_F_SWAPFREE))
    return false;
  *out = anon + (double)mb_sub_sat(s->v[MB_F_SWAPTOTAL], s->v[MB_F_SWAPFREE]);
  return true;
}

/* Rate of counter f between two samples: false when either lacks it or it
 * went back. */
static bool counter_rate(const mb_sample_t *prev, const mb_sample_t *cur,
                         mb_field_t f, double dt_s, double *rate) {
  if (!mb_sample_has(prev, f) || !mb_sample_has(cur, f) ||
      cur->v[f] < prev->v[f])
    return false;
  *rate = (double)(cur->v[f] - prev->v[f]) / dt_s;
  return true;
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* Stall shares: the totals are microseconds of the guest's clock, so the
 * guest's own elapsed time is the denominator when both samples carry it. */
static void stall_rates(const mb_sample_t *prev, const mb_sample_t *cur,
                        double dt_s, mb_rates_t *out) {
  double el_s = dt_s, some, full = 0;
  if (prev->uptime_ms != 0 && cur->uptime_ms > prev->uptime_ms)
    el_s = (double)(cur->uptime_ms - prev->uptime_ms) / 1000.0;
  if (!counter_rate(prev, cur, MB_F_PSI_SOME_TOTAL, el_s * 1e6, &some))
    return;
  if (mb_sample_has(prev, MB_F_PSI_FULL_TOTAL) &&
      mb_sample_has(cur, MB_F_PSI_FULL_TOTAL) &&
      !counter_rate(prev, cur, MB_F_PSI_FULL_TOTAL, el_s * 1e6, &full))
    return; /* full went back while some did not: not one boot */
  out->some_stall_share = clamp01(some);
  out->full_stall_share = clamp01(full);
  out->stall_valid = true;
}

static void refault_rates(const mb_sample_t *prev, const mb_sample_t *cur,
                          double dt_s, mb_rates_t *out) {
  double anon = 0, file = 0;
  bool have_anon = mb_sample_has(prev, MB_F_WORKINGSET_REFAULT_ANON) &&
                   mb_sample_has(cur, MB_F_WORKINGSET_REFAULT_ANON);
  if (have_anon &&
      !counter_rate(prev, cur, MB_F_WORKINGSET_REFAULT_ANON, dt_s, &anon))
    return;
  bool have_file =
      counter_rate(prev, cur, MB_F_WORKINGSET_REFAULT_FILE, dt_s, &file) ||
      counter_rate(prev, cur, MB_F_WORKINGSET_REFAULT, dt_s, &file);
  if (!have_file)
    return;
  out->refault_anon_ps = anon;
  out->refault_file_ps = file;
  out->refault_valid = true;
}

void mb_sample_rates(const mb_sample_t *prev, const mb_sample_t *cur,
                     double dt_s, mb_rates_t *out) {
  static const mb_field_t counters[3] = {MB_F_PSWPIN, MB_F_PSWPOUT,
                                         MB_F_PGMAJFAULT};
  double rate[3] = {0, 0, 0};
  bool any = false;
  if (out == NULL)
    return;
  memset(out, 0, sizeof(*out));
  if (prev == NULL || cur == NULL || !isfinite(dt_s) || dt_s <= 0)
    return;
  /* A guest that rebooted restarts its uptime and its counters. */
  if (prev->uptime_ms != 0 && cur->uptime_ms != 0 &&
      cur->uptime_ms < prev->uptime_ms)
    return;
  double a0, a1;
  if (anon_demand_kib(prev, &a0) && anon_demand_kib(cur, &a1)) {
    out->anon_growth_kibps = (a1 - a0) / dt_s;
    out->growth_valid = true;
  }
  stall_rates(prev, cur, dt_s, out);
  refault_rates(prev, cur, dt_s, out);
  for (int i = 0; i < 3; i++) {
    mb_field_t f = counters[i];
    if (!mb_sample_has(prev, f) || !mb_sample_has(cur, f))
      continue;
    if (!counter_rate(prev, cur, f, dt_s, &rate[i]))
      return;
    any = true;
  }
  if (!any)
    return;
  out->swapin_pps = rate[0];
  out->swapout_pps = rate[1];
  out->majflt_ps = rate[2];
  out->valid = true;
}
