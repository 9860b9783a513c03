/*
 * Live mode: the model runs in (possibly accelerated) real time and serves
 * the sim backend's schema (plugins/SCHEMA.md section 4) in a xenstored, so
 * the real collectd pipeline (vmmem + membal with Backend "sim") balances
 * it:
 *   writes /tool/membal-sim/host, /tool/membal-sim/dom/<id> (dom0 too),
 *          /local/domain/<id>/name, /local/domain/<id>/memory/target (at
 *          boot only, as the toolstack does), each guest's
 *          /local/domain/<id>/data/membal/stats (mb_record_format), and
 *          /tool/membal-sim/time (simulated seconds, for observers);
 *   watches /local/domain/<id>/memory/target and moves current_kib towards
 *          it at the balloon rate.
 * A target that is not a number is ignored; one outside [floor, max] is
 * clamped; both are logged (stderr) once per domain until it changes.
 */
#include "live.h"
#include "sim_schema.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xenstore.h>

#define ROOT MB_SIM_ROOT
#define MAX_BROKEN_S                                                           \
  30.0 /* wall seconds without xenstored before giving up                      \
        */

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) { stop_flag = 1; }

typedef struct {
  struct xs_handle *xs; /* owned */
  const sim_scenario_t *scn;
  sim_model_t *m;
  bool live[SIM_MAX_VMS];      /* nodes exist in xenstore */
  bool announced[SIM_MAX_VMS]; /* boot logged */
  char last_dom[SIM_MAX_VMS][160];
  char last_target[SIM_MAX_VMS][32]; /* last rejected/clamped text logged */
  bool broken;         /* connection lost: reconnect before anything else */
  double broken_since; /* wall clock, s */
} live_t;

static int xs_put(live_t *L, const char *path, const char *val) {
  if (L->broken)
    return -1;
  if (xs_write(L->xs, XBT_NULL, path, val, (unsigned)strlen(val)))
    return 0;
  /* our own nodes: a failure means the daemon is gone (restart) */
  fprintf(stderr, "membal-sim: xenstore write %s: %s: reconnecting\n", path,
          strerror(errno));
  L->broken = true;
  return -1;
}

static void put_host(live_t *L) {
  char buf[128];
  snprintf(buf, sizeof(buf), "total_kib %" PRIu64 "\nfree_kib %" PRIu64 "\n",
           L->scn->total_kib, (uint64_t)sim_model_host_free(L->m));
  xs_put(L, ROOT "/host", buf);
}

static void put_dom(live_t *L, size_t i) {
  const sim_vm_spec_t *s = &L->scn->vm[i];
  const sim_vm_t *v = &L->m->vm[i];
  char buf[160], path[96];
  snprintf(buf, sizeof(buf),
           "name %s\ncurrent_kib %" PRIu64 "\nmax_kib %" PRIu64
           "\ntarget_kib %" PRIu64 "\n",
           s->name, (uint64_t)v->current_kib, s->max_kib,
           (uint64_t)v->target_kib);
  if (!strcmp(buf, L->last_dom[i]))
    return;
  snprintf(path, sizeof(path), ROOT "/dom/%u", s->domid);
  if (xs_put(L, path, buf) == 0)
    snprintf(L->last_dom[i], sizeof(L->last_dom[i]), "%s", buf);
}

static int boot_nodes(live_t *L, size_t i) {
  const sim_vm_spec_t *s = &L->scn->vm[i];
  char path[96], val[32], token[24];
  snprintf(path, sizeof(path), "/local/domain/%u/name", s->domid);
  if (xs_put(L, path, s->name))
    return -1;
  snprintf(path, sizeof(path), "/local/domain/%u/memory/target", s->domid);
  snprintf(val, sizeof(val), "%" PRIu64, (uint64_t)L->m->vm[i].target_kib);
  if (xs_put(L, path, val))
    return -1;
  snprintf(token, sizeof(token), "%zu", i);
  if (!xs_watch(L->xs, path, token)) {
    fprintf(stderr, "membal-sim: xenstore watch %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  L->last_dom[i][0] = 0;
  put_dom(L, i);
  L->live[i] = true;
  if (L->announced[i])
    return 0;
  L->announced[i] = true;
  fprintf(stderr,
          "membal-sim: t=%.1f domain %u (%s) booted with %" PRIu64 " KiB\n",
          L->m->t, s->domid, s->name, (uint64_t)L->m->vm[i].current_kib);
  return 0;
}

static void destroy_nodes(live_t *L, size_t i) {
  const sim_vm_spec_t *s = &L->scn->vm[i];
  char path[96], token[24];
  snprintf(path, sizeof(path), "/local/domain/%u/memory/target", s->domid);
  snprintf(token, sizeof(token), "%zu", i);
  xs_unwatch(L->xs, path, token);
  snprintf(path, sizeof(path), ROOT "/dom/%u", s->domid);
  xs_rm(L->xs, XBT_NULL, path);
  snprintf(path, sizeof(path), "/local/domain/%u", s->domid);
  xs_rm(L->xs, XBT_NULL, path);
  L->live[i] = false;
  fprintf(stderr, "membal-sim: t=%.1f domain %u (%s) destroyed\n", L->m->t,
          s->domid, s->name);
}

/* A target written by the backend (or anyone: it is untrusted). */
static void read_target(live_t *L, size_t i) {
  const sim_vm_spec_t *s = &L->scn->vm[i];
  char path[96];
  unsigned len = 0;
  snprintf(path, sizeof(path), "/local/domain/%u/memory/target", s->domid);
  char *val = xs_read(L->xs, XBT_NULL, path, &len); /* owned */
  if (!val)
    return; /* removed: the domain is going away */
  char text[32];
  snprintf(text, sizeof(text), "%.*s", (int)(len < 31 ? len : 31), val);
  free(val);
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  bool ok = len > 0 && len < 21 && *end == 0 && errno == 0 && text[0] >= '0' &&
            text[0] <= '9';
  if (!ok) {
    if (strcmp(L->last_target[i], text))
      fprintf(stderr,
              "membal-sim: domain %u: memory/target '%s' is not a decimal "
              "KiB figure: ignored\n",
              s->domid, text);
    snprintf(L->last_target[i], sizeof(L->last_target[i]), "%s", text);
    return;
  }
  if (sim_model_set_target(L->m, i, (double)v)) {
    if (strcmp(L->last_target[i], text))
      fprintf(stderr,
              "membal-sim: domain %u: target %llu KiB outside [%.0f, %" PRIu64
              "]: clamped to %.0f\n",
              s->domid, v, (double)s->base_kib + 16384, s->max_kib,
              L->m->vm[i].target_kib);
    snprintf(L->last_target[i], sizeof(L->last_target[i]), "%s", text);
  } else {
    L->last_target[i][0] = 0;
  }
}

static void drain_watches(live_t *L) {
  char **ev;
  if (L->broken)
    return;
  errno = 0;
  while ((ev = xs_check_watch(L->xs)) != NULL) {
    char *end;
    unsigned long i = strtoul(ev[XS_WATCH_TOKEN], &end, 10);
    if (*end == 0 && i < L->scn->nvms && L->live[i])
      read_target(L, (size_t)i);
    free(ev);
    errno = 0;
  }
  if (errno && errno != EAGAIN) {
    fprintf(stderr, "membal-sim: xenstore watch: %s: reconnecting\n",
            strerror(errno));
    L->broken = true;
  }
}

static void publish(live_t *L, size_t i, bool urgent) {
  mb_sample_t s;
  char rec[MB_RECORD_MAX], path[96];
  sim_model_sample(L->m, i, &s);
  s.urgent = urgent;
  if (mb_record_format(&s, rec, sizeof(rec)) < 0) {
    fprintf(stderr, "membal-sim: record of %s does not fit\n",
            L->scn->vm[i].name);
    return;
  }
  snprintf(path, sizeof(path), "/local/domain/%u/data/membal/stats",
           L->scn->vm[i].domid);
  xs_put(L, path, rec);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Everything the store must hold (after start or a xenstored restart,
 * which starts from an empty store). */
static int setup(live_t *L) {
  char buf[160];
  snprintf(buf, sizeof(buf),
           "name Domain-0\ncurrent_kib %" PRIu64 "\nmax_kib %" PRIu64 "\n",
           L->scn->reserve_kib, L->scn->reserve_kib);
  if (xs_put(L, ROOT "/dom/0", buf) ||
      xs_put(L, "/local/domain/0/name", "Domain-0"))
    return -1;
  put_host(L);
  for (size_t i = 0; i < L->scn->nvms; i++) {
    L->live[i] = false;
    if (L->m->vm[i].present && boot_nodes(L, i))
      return -1;
  }
  snprintf(buf, sizeof(buf), "%.0f", L->m->t);
  return xs_put(L, ROOT "/time", buf);
}

static double now_s(void);

/* 0 when connected again (or never lost), -1 to keep trying. */
static int reconnect(live_t *L) {
  if (!L->broken)
    return 0;
  if (L->xs)
    xs_close(L->xs);
  L->xs = xs_open(0);
  if (!L->xs)
    return -1;
  L->broken = false;
  if (setup(L)) {
    L->broken = true;
    return -1;
  }
  fprintf(stderr, "membal-sim: t=%.1f reconnected to xenstored\n", L->m->t);
  return 0;
}

int sim_live_run(const sim_scenario_t *scn, double speed, FILE *csv) {
  live_t L;
  int rc = -1;
  memset(&L, 0, sizeof(L));
  L.scn = scn;
  L.m = malloc(sizeof(*L.m)); /* owned */
  if (!L.m)
    return -1;
  L.xs = xs_open(0);
  if (!L.xs) {
    fprintf(stderr, "membal-sim: cannot connect to xenstored (%s): %s\n",
            getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : "default",
            strerror(errno));
    goto out;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  sim_model_init(L.m, scn, scn->seed);
  char buf[160];
  if (setup(&L))
    goto out;

  double dt = scn->dt_s;
  long steps = lround(scn->duration_s / dt);
  long per_sec = lround(1.0 / dt);
  double t0 = now_s();
  fprintf(stderr, "membal-sim: live: %s, %zu VMs, %.0f s at speed %.2f\n",
          scn->name, scn->nvms, scn->duration_s, speed);
  for (long step = 1; step <= steps && !stop_flag; step++) {
    if (L.broken && reconnect(&L)) {
      /* the model keeps running: the hypervisor does not stop when its
       * store does */
      if (L.broken_since == 0)
        L.broken_since = now_s();
      if (now_s() - L.broken_since > MAX_BROKEN_S) {
        fprintf(stderr, "membal-sim: no xenstored for %.0f s: giving up\n",
                MAX_BROKEN_S);
        goto out;
      }
    } else {
      L.broken_since = 0;
    }
    drain_watches(&L);
    sim_model_step(L.m, dt);
    for (size_t i = 0; i < scn->nvms; i++) {
      bool present = L.m->vm[i].present;
      if (present && !L.live[i] && !L.broken && boot_nodes(&L, i))
        L.broken = true;
      if (!present && L.live[i])
        destroy_nodes(&L, i);
      bool urgent;
      if (present && sim_model_publish_due(L.m, i, &urgent))
        publish(&L, i, urgent);
      if (present)
        put_dom(&L, i);
    }
    put_host(&L);
    if (step % per_sec == 0) {
      snprintf(buf, sizeof(buf), "%.0f", L.m->t);
      xs_put(&L, ROOT "/time", buf);
      if (csv) {
        sim_csv_row(csv, L.m);
        fflush(csv);
      }
    }
    /* sleep until the wall-clock time of the next step */
    double due = t0 + (double)step * dt / speed;
    double wait = due - now_s();
    if (wait > 0) {
      struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
      while (nanosleep(&ts, &ts) && errno == EINTR && !stop_flag)
        ;
    }
  }
  fprintf(stderr, "membal-sim: live: done at t=%.1f\n", L.m->t);
  /* same line as fast mode prints, for comparisons */
  double in = 0, out_pages = 0;
  for (size_t i = 0; i < scn->nvms; i++) {
    in += floor(L.m->vm[i].pswpin);
    out_pages += floor(L.m->vm[i].pswpout);
  }
  printf("scenario %s live t=%.1f\nswap_io_pages %.0f (in %.0f out %.0f)\n",
         scn->name, L.m->t, in + out_pages, in, out_pages);
  fflush(stdout);
  rc = 0;
out:
  if (L.xs)
    xs_close(L.xs);
  free(L.m);
  return rc;
}
