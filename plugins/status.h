/*
 * membal's status board: what the last round decided, the decisions that
 * moved a target, the holds and the reservations in force. The round
 * thread publishes; `membal status` (control.c) and the live view (live.c)
 * read. One JSON document serves both, so what the page shows and what
 * `membal status --json` prints are the same bytes for the same round.
 *
 * Threads: publish formats outside the lock and swaps under it; readers
 * copy under it. Nobody holds the lock for I/O.
 */
#ifndef MEMBAL_STATUS_H
#define MEMBAL_STATUS_H

#include "membal_policy.h"
#include "ops.h"
#include "strbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One round, as the round module planned it and membal carried it out. */
typedef struct {
  double time_s; /* epoch seconds of the round */
  uint64_t round;
  const char *trigger; /* static */
  const char *policy;  /* static */
  mb_host_t host;      /* reserve_kib: the reserve in force */
  uint64_t pool_kib, sum_targets_kib;
  uint64_t reserved_kib; /* sum of the reservations */
  double tau;
  /* The guests, borrowed for the call: doms[i].target_kib was in force
   * before the round, dec[i].target_kib is after it; held_s[i] < 0: not
   * held, 0: held until released, else held until then (epoch s). */
  const mb_domain_t *doms;
  const mb_decision_t *dec;
  const double *held_s;
  size_t n;
  const mb_resv_t *resv; /* borrowed for the call (until_s: epoch s) */
  size_t nresv;
} mb_status_round_t;

#define MB_STATUS_MOVES 100

typedef struct mb_status mb_status_t;

/* host: collectd's hostname, copied. NULL on out of memory. */
mb_status_t *mb_status_new(const char *host);
void mb_status_free(mb_status_t *st);

/* Keeps the round and the targets it moved (the last MB_STATUS_MOVES
 * moves). */
void mb_status_publish(mb_status_t *st, const mb_status_round_t *r);

/* The last round as JSON (a copy, caller frees) and its length; 1 when no
 * round ran yet, -1 out of memory. */
int mb_status_json(mb_status_t *st, char **json, size_t *len);
/* The same as a table for a terminal; same return values. */
int mb_status_table(mb_status_t *st, char **text, size_t *len);
/* The last round in Prometheus' text exposition format (0.0.4): names
 * membal_*, base units (bytes, seconds), the domain and the decision's
 * reason as labels. Same return values. */
int mb_status_metrics(mb_status_t *st, char **text, size_t *len);
/* The domains of the last round (a copy, caller frees); their number. */
size_t mb_status_names(mb_status_t *st, char (**names)[MB_NAME_LEN]);
/* collectd's hostname given at mb_status_new. */
const char *mb_status_host(const mb_status_t *st);

#endif
