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
 * Threads: the server runs in one internal thread of libmicrohttpd and
 * reads the status board (status.h), which a request locks only to copy a
 * string, so a slow or hostile client never stalls a round. Connections are
 * bounded (max_connections in all, a quarter of them per client address) and
 * idle ones time out.
 */
#ifndef MEMBAL_LIVE_H
#define MEMBAL_LIVE_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *address;      /* numeric IPv4/IPv6 address; "127.0.0.1" */
  unsigned port;            /* TCP port; 9091 */
  unsigned max_connections; /* in all; 32 */
  const char *rrd_dir;      /* rrdtool plugin's DataDir; NULL = no history */
} mb_live_opts_t;

typedef struct mb_live mb_live_t;

/* Starts the server on the status board (borrowed; it must outlive the
 * server; its host names the RRD files' folder). NULL with err set when the
 * address is not numeric, the port is taken, or libmicrohttpd refuses. */
mb_live_t *mb_live_start(const mb_live_opts_t *opts, mb_status_t *status,
                         char *err, size_t errlen);
/* Stops the server and frees everything; live may be NULL. */
void mb_live_stop(mb_live_t *live);

#endif
