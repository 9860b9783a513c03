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

/* One domain after a round. */
typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  uint64_t current_kib, target_kib, cma_kib, min_kib, max_kib;
  const char *reason;                        /* static */
  double swapin_pps, swapout_pps, majflt_ps; /* pressure; < 0 = unknown */
  double sample_age_s;                       /* < 0 = never heard from */
  bool stale;
  bool held;           /* `membal hold` or <Domain> Balance false */
  double held_until_s; /* epoch s; 0 = until released (or config) */
} mb_status_dom_t;

/* One decision that moved a target. */
typedef struct {
  double time_s; /* epoch seconds */
  char name[MB_NAME_LEN];
  uint64_t from_kib, to_kib;
  const char *reason;  /* static */
  const char *trigger; /* what started the round; static */
} mb_status_move_t;

typedef struct {
  double time_s; /* epoch seconds of the round */
  uint64_t round;
  const char *trigger; /* static */
  const char *policy;  /* static */
  uint64_t total_kib, free_kib, reserve_kib, pool_kib, sum_targets_kib;
  uint64_t reserved_kib; /* sum of the reservations */
  double tau;
  const mb_status_dom_t *doms; /* borrowed for the call */
  size_t n;
  const mb_status_move_t *moves; /* borrowed for the call */
  size_t nmoves;
  const mb_resv_t *resv; /* borrowed for the call (until_s: epoch s) */
  size_t nresv;
} mb_status_round_t;

#define MB_STATUS_MOVES 100

typedef struct mb_status mb_status_t;

/* host: collectd's hostname, copied. NULL on out of memory. */
mb_status_t *mb_status_new(const char *host);
void mb_status_free(mb_status_t *st);

/* Keeps the round and its moves (the last MB_STATUS_MOVES). */
void mb_status_publish(mb_status_t *st, const mb_status_round_t *r);

/* The last round as JSON (a copy, caller frees) and its length; 1 when no
 * round ran yet, -1 out of memory. */
int mb_status_json(mb_status_t *st, char **json, size_t *len);
/* The same as a table for a terminal; same return values. */
int mb_status_table(mb_status_t *st, char **text, size_t *len);
/* The domains of the last round (a copy, caller frees); their number. */
size_t mb_status_names(mb_status_t *st, char (**names)[MB_NAME_LEN]);
/* collectd's hostname given at mb_status_new. */
const char *mb_status_host(const mb_status_t *st);

#endif
