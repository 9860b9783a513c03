/* The libvirt backend's connection: one per URI, shared by every handle of
 * this copy of the backend, dropped when found dead and re-opened by the
 * next call (see backend_libvirt.c); libvirt's errors read back. */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static pthread_mutex_t lv_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static lv_shared_t *lv_shared_list; /* guarded by lv_shared_lock */

double lv_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libvirt prints every error to stderr unless told otherwise; the backend
 * reports errors through its return values instead. */
static void lv_silent(void *ud, virErrorPtr e) {
  (void)ud;
  (void)e;
}

void lv_log(lv_priv_t *p, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mb_backend_vlogf(p->log, p->log_ctx, level, fmt, ap);
  va_end(ap);
}

const char *lv_errmsg(void) {
  virErrorPtr e = virGetLastError();
  return (e && e->message) ? e->message : "unknown libvirt error";
}

static int lv_errcode(void) {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

/* A domain that stopped or vanished between listing and querying. */
bool lv_err_is_gone(void) {
  int c = lv_errcode();
  return c == VIR_ERR_NO_DOMAIN || c == VIR_ERR_OPERATION_INVALID;
}

static void lv_shared_unlink(lv_shared_t *e) {
  for (lv_shared_t **pp = &lv_shared_list; *pp != NULL; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  e->listed = false;
}

/* Gives up this handle's share of the connection. dead: the connection
 * was found dead, so no later handle may pick it up. */
void lv_release(lv_priv_t *p, bool dead) {
  lv_shared_t *e = p->shared;
  if (e == NULL)
    return;
  pthread_mutex_lock(&lv_shared_lock);
  if (dead && e->listed)
    lv_shared_unlink(e);
  e->users--;
  bool last = e->users == 0;
  if (last && e->listed)
    lv_shared_unlink(e);
  pthread_mutex_unlock(&lv_shared_lock);
  virConnectClose(e->conn); /* this user's reference */
  if (last) {
    free(e->uri);
    free(e);
  }
  p->shared = NULL;
  p->conn = NULL;
}

int lv_connect(lv_priv_t *p, char *err, size_t errlen) {
  if (p->conn != NULL)
    return 0;
  int ret = -1;
  bool opened = false;
  pthread_mutex_lock(&lv_shared_lock);
  lv_shared_t *e = lv_shared_list;
  while (e != NULL && strcmp(e->uri, p->uri) != 0)
    e = e->next;
  if (e != NULL) {
    p->requests++;
    if (virConnectIsAlive(e->conn) == 1) {
      virConnectRef(e->conn);
      e->users++;
      goto done;
    }
    lv_shared_unlink(e); /* dead: its users drop it on their next failure */
  }
  e = calloc(1, sizeof(*e));
  if (e == NULL || (e->uri = strdup(p->uri)) == NULL) {
    free(e);
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  p->requests++;
  e->conn = virConnectOpen(p->uri);
  if (e->conn == NULL) {
    snprintf(err, errlen, "libvirt: cannot connect to %s: %s", p->uri,
             lv_errmsg());
    free(e->uri);
    free(e);
    goto out;
  }
  virConnSetErrorFunc(e->conn, NULL, lv_silent);
  e->users = 1;
  e->listed = true;
  e->next = lv_shared_list;
  lv_shared_list = e;
  opened = true;
done:
  p->shared = e;
  p->conn = e->conn;
  ret = 0;
out:
  pthread_mutex_unlock(&lv_shared_lock);
  if (ret == 0) {
    if (p->was_connected)
      lv_log(p, LOG_NOTICE, "libvirt: connection to %s re-established%s",
             p->uri, opened ? "" : " (shared)");
    p->was_connected = true;
  }
  return ret;
}

/* After a failed call: drop the connection when it is dead so that the next
 * call re-opens it (libvirtd restarted). */
void lv_check_conn(lv_priv_t *p) {
  if (p->conn == NULL)
    return;
  /* Every libvirt call resets the thread's last error: keep it first. */
  char why[256];
  snprintf(why, sizeof(why), "%s", lv_errmsg());
  p->requests++;
  if (virConnectIsAlive(p->conn) == 1)
    return;
  /* Handles sharing the connection all find it dead: one says so. */
  pthread_mutex_lock(&lv_shared_lock);
  bool say = !p->shared->lost_said;
  p->shared->lost_said = true;
  pthread_mutex_unlock(&lv_shared_lock);
  if (say)
    lv_log(p, LOG_WARNING, "libvirt: connection to %s lost (%s); re-opening",
           p->uri, why);
  lv_release(p, true);
}

void *lv_open(const mb_backend_opts_t *opts, char *err, size_t errlen) {
  lv_priv_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    return NULL;
  }
  /* No URI configured: libvirt's own variable, then qemu:///system. */
  const char *uri =
      (opts && opts->uri) ? opts->uri : getenv("LIBVIRT_DEFAULT_URI");
  if (uri == NULL || *uri == '\0')
    uri = LV_DEFAULT_URI;
  p->uri = strdup(uri);
  if (p->uri == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    free(p);
    return NULL;
  }
  p->period_s = (opts && opts->stats_period_s) ? opts->stats_period_s
                                               : LV_DEFAULT_PERIOD_S;
  p->log = opts ? opts->log : NULL;
  p->log_ctx = opts ? opts->log_ctx : NULL;
  virSetErrorFunc(NULL, lv_silent);
  /* The first connection must work: a wrong URI is a configuration error
   * the user should see at start-up, not a reconnect loop. */
  if (lv_connect(p, err, errlen) != 0) {
    free(p->uri);
    free(p);
    return NULL;
  }
  return p;
}

void lv_close(void *priv) {
  lv_priv_t *p = priv;
  if (p == NULL)
    return;
  lv_release(p, false);
  free(p->seen);
  free(p->uri);
  free(p);
}
