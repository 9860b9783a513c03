/*
 * membal's live view (see live.h): libmicrohttpd serves a page compiled in
 * from live.html, the status board's JSON, and the last hour from RRD.
 * Read-only.
 */
#define _POSIX_C_SOURCE 200809L
#include "live.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <rrd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "live_page.h" /* generated: static const char mb_live_page[] */

/* An idle connection is closed after this; a client cannot hold one of the
 * bounded connection slots longer by sending nothing. */
#define LIVE_CONN_TIMEOUT_S 10
/* What libmicrohttpd may buffer per connection (headers, URL): a request
 * beyond it gets 431/414. */
#define LIVE_CONN_MEMORY 32768
/* History: the last hour at (at least) this step, from the RRAs collectd's
 * rrdtool plugin creates (its finest one holds about 2 h at 10 s). */
#define LIVE_HISTORY_S 3600
#define LIVE_HISTORY_STEP_S 10

struct mb_live {
  struct MHD_Daemon *daemon;
  mb_status_t *status; /* borrowed: outlives the server */
  char *rrd_dir;       /* owned; NULL = no history */
};

/* ---------------------------------------------------------------------- */
/* History from RRD                                                       */
/* ---------------------------------------------------------------------- */

/* One RRD file's single data source over [start, end]: "[v,v,null,...]".
 * A file that is missing or unreadable gives null. */
static void live_series(mb_strbuf_t *b, const char *path, time_t start,
                        time_t end, time_t *first, unsigned long *step_out) {
  time_t s = start, e = end;
  unsigned long step = LIVE_HISTORY_STEP_S, ds_cnt = 0;
  char **ds_names = NULL;   /* owned by librrd's caller: freed below */
  rrd_value_t *data = NULL; /* same */
  if (rrd_fetch_r(path, "AVERAGE", &s, &e, &step, &ds_cnt, &ds_names, &data) !=
          0 ||
      ds_cnt < 1 || step == 0) {
    rrd_clear_error();
    mb_sb_printf(b, "null");
    goto out;
  }
  if (*first == 0) {
    *first = s;
    *step_out = step;
  }
  mb_sb_printf(b, "{\"start\":%lld,\"step\":%lu,\"values\":[", (long long)s,
               step);
  size_t rows = (size_t)((e - s) / (time_t)step);
  for (size_t i = 0; i < rows; i++) {
    double v = data[i * ds_cnt];
    if (i)
      mb_sb_printf(b, ",");
    if (isfinite(v))
      mb_sb_printf(b, "%.0f", v / 1024.0); /* bytes -> KiB */
    else
      mb_sb_printf(b, "null");
  }
  mb_sb_printf(b, "]}");
out:
  if (ds_names != NULL) {
    for (unsigned long i = 0; i < ds_cnt; i++)
      free(ds_names[i]);
    free(ds_names);
  }
  free(data);
}

/* Names that are safe as one path component. Domain names come from the
 * toolstack, but are checked all the same. */
static int live_name_ok(const char *n) {
  return n[0] != 0 && n[0] != '.' && strchr(n, '/') == NULL;
}

static char *live_history(mb_live_t *live, size_t *len) {
  char(*names)[MB_NAME_LEN] = NULL; /* owned: the last round's domains */
  size_t n = mb_status_names(live->status, &names);

  time_t end = time(NULL), start = end - LIVE_HISTORY_S, first = 0;
  unsigned long step = 0;
  mb_strbuf_t b = {0};
  char path[4096];
  mb_sb_printf(&b, "{\"domains\":{");
  for (size_t i = 0; i < n; i++) {
    if (!live_name_ok(names[i]))
      continue;
    mb_sb_printf(&b, "%s", i ? "," : "");
    mb_sb_json_str(&b, names[i]);
    mb_sb_printf(&b, ":{");
    static const struct {
      const char *key, *plugin, *ti;
    } series[] = {{"current", "vmmem", "current"},
                  {"target", "membal", "target"},
                  {"cma", "membal", "cma"}};
    for (size_t k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
      snprintf(path, sizeof(path), "%s/%s/%s-%s/memory-%s.rrd", live->rrd_dir,
               mb_status_host(live->status), series[k].plugin, names[i],
               series[k].ti);
      mb_sb_printf(&b, "%s\"%s\":", k ? "," : "", series[k].key);
      live_series(&b, path, start, end, &first, &step);
    }
    mb_sb_printf(&b, "}");
  }
  mb_sb_printf(&b, "},\"pool\":");
  snprintf(path, sizeof(path), "%s/%s/membal/memory-pool.rrd", live->rrd_dir,
           mb_status_host(live->status));
  live_series(&b, path, start, end, &first, &step);
  mb_sb_printf(&b, "}\n");
  free(names);
  if (b.failed) {
    mb_sb_dispose(&b);
    return NULL;
  }
  *len = b.len;
  return b.s;
}

/* ---------------------------------------------------------------------- */
/* HTTP                                                                   */
/* ---------------------------------------------------------------------- */

static enum MHD_Result live_reply(struct MHD_Connection *c, unsigned status,
                                  const char *type, const char *body,
                                  size_t len,
                                  enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, mode);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result live_error(struct MHD_Connection *c, unsigned status,
                                  const char *msg) {
  char body[256];
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
  return live_reply(c, status, "application/json", body, (size_t)n,
                    MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result live_request(void *cls, struct MHD_Connection *c,
                                    const char *url, const char *method,
                                    const char *version, const char *upload,
                                    size_t *upload_size, void **con_cls) {
  mb_live_t *live = cls;
  static int seen, had_body; /* markers for *con_cls */
  /* First call of a request: headers only. Other methods are refused at
   * once, before any body is read. */
  if (*con_cls == NULL) {
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
      return live_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                        "read-only: only GET and HEAD");
    *con_cls = &seen;
    return MHD_YES;
  }
  if (*upload_size != 0) { /* a body with a GET: discarded, then refused */
    *upload_size = 0;
    *con_cls = &had_body;
    return MHD_YES;
  }
  if (*con_cls == &had_body)
    return live_error(c, MHD_HTTP_BAD_REQUEST, "a GET takes no body");

  if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
    return live_reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", mb_live_page,
                      sizeof(mb_live_page) - 1, MHD_RESPMEM_PERSISTENT);
  if (strcmp(url, "/api/state") == 0) {
    char *json = NULL; /* owned, then by the response */
    size_t len = 0;
    int rc = mb_status_json(live->status, &json, &len);
    if (rc == 1)
      return live_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                        "no round yet: the first round has not run");
    if (rc != 0)
      return live_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return live_reply(c, MHD_HTTP_OK, "application/json", json, len,
                      MHD_RESPMEM_MUST_FREE);
  }
  if (strcmp(url, "/api/history") == 0) {
    if (live->rrd_dir == NULL)
      return live_error(c, MHD_HTTP_NOT_FOUND,
                        "no history: the live view has no DataDir");
    size_t len = 0;
    char *json = live_history(live, &len); /* owned, then by the response */
    if (json == NULL)
      return live_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return live_reply(c, MHD_HTTP_OK, "application/json", json, len,
                      MHD_RESPMEM_MUST_FREE);
  }
  if (strcmp(url, "/metrics") == 0) {
    char *text = NULL; /* owned, then by the response */
    size_t len = 0;
    int rc = mb_status_metrics(live->status, &text, &len);
    if (rc == 1)
      return live_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                        "no round yet: the first round has not run");
    if (rc != 0)
      return live_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return live_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len,
                      MHD_RESPMEM_MUST_FREE);
  }
  return live_error(
      c, MHD_HTTP_NOT_FOUND,
      "no such page: try /, /api/state, /api/history or /metrics");
}

mb_live_t *mb_live_start(const mb_live_opts_t *opts, mb_status_t *status,
                         char *err, size_t errlen) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (inet_pton(AF_INET, opts->address, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)opts->port);
  } else if (inet_pton(AF_INET6, opts->address, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)opts->port);
    flags |= MHD_USE_IPv6;
  } else {
    snprintf(err, errlen,
             "Address \"%s\" is not a numeric IPv4 or IPv6 address",
             opts->address);
    return NULL;
  }

  mb_live_t *live = calloc(1, sizeof(*live)); /* owned until returned */
  if (live == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  live->status = status;
  if (opts->rrd_dir != NULL &&
      (live->rrd_dir = strdup(opts->rrd_dir)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  unsigned maxc = opts->max_connections ? opts->max_connections : 32;
  unsigned per_ip = maxc / 4 ? maxc / 4 : 1;
  errno = 0;
  live->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, live_request, live, MHD_OPTION_SOCK_ADDR, &ss,
      MHD_OPTION_CONNECTION_LIMIT, maxc, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      per_ip, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)LIVE_CONN_TIMEOUT_S,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)LIVE_CONN_MEMORY,
      MHD_OPTION_END);
  if (live->daemon == NULL) {
    snprintf(err, errlen, "cannot serve on %s port %u: %s", opts->address,
             opts->port, errno ? strerror(errno) : "libmicrohttpd refused");
    goto fail;
  }
  return live;
fail:
  mb_live_stop(live);
  return NULL;
}

void mb_live_stop(mb_live_t *live) {
  if (live == NULL)
    return;
  if (live->daemon != NULL)
    MHD_stop_daemon(live->daemon);
  free(live->rrd_dir);
  free(live);
}
