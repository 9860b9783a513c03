/*
 * membal's live view: a read-only HTTP server (libmicrohttpd) inside the
 * membal plugin, after xenmm's JSON view on 127.0.0.1:9091.
 *
 *   GET /              the live page (plugins/live.html, compiled in)
 *   GET /api/state     the state after the last round, as JSON
 *   GET /api/history   the last hour of every domain's current, target and
 *                      CMA and of the pool, read from the RRD files of
 *                      collectd's rrdtool plugin (librrd's rrd_fetch_r)
 *
 * Nothing served changes anything: there is no control over HTTP.
 *
 * Threads: the server runs in one internal thread of libmicrohttpd. The
 * round thread calls mb_live_publish(), which formats the JSON and swaps it
 * in under a mutex that a request holds only to copy that string, so a slow
 * or hostile client never stalls a round. Connections are bounded
 * (max_connections in all, a quarter of them per client address) and idle
 * ones time out.
 */
#ifndef MEMBAL_LIVE_H
#define MEMBAL_LIVE_H

#include "membal_policy.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *address;      /* numeric IPv4/IPv6 address; "127.0.0.1" */
  unsigned port;            /* TCP port; 9091 */
  unsigned max_connections; /* in all; 32 */
  const char *rrd_dir;      /* rrdtool plugin's DataDir; NULL = no history */
  const char *host;         /* collectd's hostname: RRD files' folder */
} mb_live_opts_t;

/* One domain after a round. */
typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  uint64_t current_kib, target_kib, cma_kib, min_kib, max_kib;
  const char *reason;                        /* mb_reason_name(); static */
  double swapin_pps, swapout_pps, majflt_ps; /* pressure; < 0 = unknown */
  double sample_age_s;                       /* < 0 = never heard from */
  bool stale;
  bool held;
} mb_live_dom_t;

/* One decision that moved a target. */
typedef struct {
  double time_s; /* epoch seconds */
  char name[MB_NAME_LEN];
  uint64_t from_kib, to_kib;
  const char *reason;  /* static */
  const char *trigger; /* what started the round ("period", ...); static */
} mb_live_move_t;

typedef struct {
  double time_s; /* epoch seconds of the round */
  uint64_t round;
  const char *trigger; /* static */
  const char *policy;  /* static */
  uint64_t total_kib, free_kib, reserve_kib, pool_kib, sum_targets_kib;
  uint64_t reserved_kib; /* held for VMs about to start (reservations) */
  double tau;
  const mb_live_dom_t *doms; /* n entries, borrowed for the call */
  size_t n;
  const mb_live_move_t *moves; /* nmoves entries, borrowed for the call */
  size_t nmoves;
} mb_live_round_t;

typedef struct mb_live mb_live_t;

/* Starts the server. NULL with err set when the address is not numeric,
 * the port is taken, or libmicrohttpd refuses to start. */
mb_live_t *mb_live_start(const mb_live_opts_t *opts, char *err, size_t errlen);
/* Publishes a round; keeps the last MB_LIVE_MOVES moves. Never blocks on a
 * client. live may be NULL (no live view configured). */
void mb_live_publish(mb_live_t *live, const mb_live_round_t *r);
/* Stops the server and frees everything; live may be NULL. */
void mb_live_stop(mb_live_t *live);

#define MB_LIVE_MOVES 100

#endif
