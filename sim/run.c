/*
 * Fast mode: simulated time, the policy called in-process. The policy sees
 * what the real pipeline would give it: each guest publishes a sample
 * every interval (and early, marked urgent, on swap activity); the sample
 * reaches the policy `delay` seconds later; rates come from successive
 * samples, as in the membal plugin. Policies marked urgent (membal's) also
 * run a round as soon as an urgent sample arrives, as the plugin does on
 * vmmem's urgent sample (membal's: at most one round per UrgentInterval, 1
 * s by default, counted from the last round that served an urgent sample,
 * and its Period counted from the last round, as the plugin's thread does:
 * urgent_gap_s).
 */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RING 64

typedef struct {
  double t;     /* published */
  double vis_t; /* reaches the policy */
  mb_sample_t s;
} pub_t;

typedef struct {
  pub_t ring[RING];
  unsigned head, count;
  /* what the policy has seen */
  bool have_cur, have_prev;
  mb_sample_t cur, prev;
  double cur_t, prev_t;
  mb_rates_t rates;
  uint64_t last_target;
  bool gave_target;
  /* reaction events */
  bool uncovered;
  double ev_start, ev_decided;
  /* slowdown per second */
  double work_mark;
} view_t;

typedef struct {
  view_t v[SIM_MAX_VMS];
  double *slow; /* per-second slowdowns, owned */
  size_t nslow, capslow;
  double react_sum;
} run_t;

static int push_slow(run_t *r, double v) {
  if (r->nslow == r->capslow) {
    size_t cap = r->capslow ? r->capslow * 2 : 4096;
    double *p = realloc(r->slow, cap * sizeof(*p));
    if (!p)
      return -1;
    r->slow = p;
    r->capslow = cap;
  }
  r->slow[r->nslow++] = v;
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* When a sample published at t reaches the policy: after the pipeline
 * delay, and for a regular record at dom0's next read (vmmem reads every
 * interval; an urgent record comes through its watch at once). */
static double visible_at(double t, bool urgent, double delay, double read_s) {
  double v = t + delay;
  if (!urgent && read_s > 0)
    v = ceil(v / read_s - 1e-9) * read_s;
  return v;
}

/* Newest published sample that has reached the policy; true when new. */
static bool refresh_view(view_t *v, double now) {
  const pub_t *best = NULL;
  for (unsigned k = 0; k < v->count; k++) {
    const pub_t *p = &v->ring[(v->head + RING - 1 - k) % RING];
    if (p->vis_t <= now + 1e-9 && (!best || p->t > best->t))
      best = p;
  }
  if (!best || (v->have_cur && best->s.seq == v->cur.seq))
    return false;
  if (v->have_cur) {
    v->prev = v->cur;
    v->prev_t = v->cur_t;
    v->have_prev = true;
  }
  v->cur = best->s;
  v->cur_t = best->t;
  v->have_cur = true;
  if (v->have_prev)
    mb_sample_rates(&v->prev, &v->cur, v->cur_t - v->prev_t, &v->rates);
  else
    memset(&v->rates, 0, sizeof(v->rates));
  return true;
}

static void react_close(view_t *v, sim_result_t *res, run_t *r, double t) {
  double cover = t - v->ev_start;
  double decide = (v->ev_decided >= 0 ? v->ev_decided : t) - v->ev_start;
  res->react_events++;
  r->react_sum += cover;
  if (cover > res->react_cover_max_s)
    res->react_cover_max_s = cover;
  if (decide > res->react_decide_max_s)
    res->react_decide_max_s = decide;
  v->uncovered = false;
}

int sim_run(const sim_scenario_t *scn, const sim_policy_t *pol, uint64_t seed,
            sim_observer_t obs, void *obs_arg, sim_result_t *res, char *err,
            size_t errlen) {
  sim_model_t *m = NULL; /* owned */
  run_t *r = NULL;       /* owned */
  void *pst = NULL;      /* owned, pol->destroy */
  int rc = -1;
  memset(res, 0, sizeof(*res));
  m = malloc(sizeof(*m));
  r = calloc(1, sizeof(*r));
  if (!m || !r) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  pst = pol->create_arg ? pol->create_arg(scn, pol->arg) : pol->create(scn);
  if (!pst) {
    snprintf(err, errlen, "%s: cannot create policy state", pol->name);
    goto out;
  }
  sim_model_init(m, scn, seed);
  size_t n = scn->nvms;
  double dt = scn->dt_s;
  double interval = pol->interval_s > 0   ? pol->interval_s
                    : pol->interval_s < 0 ? INFINITY
                                          : scn->interval_s;
  double delay = (pol->guest_local || pol->no_delay) ? 0 : scn->delay_s;
  sim_agent_t agent;
  sim_agent_resolve(scn, &pol->agent, &agent);
  double read_s = (pol->guest_local || pol->no_delay) ? 0 : agent.read_s;
  long steps = lround(scn->duration_s / dt);
  long per_sec = lround(1.0 / dt);
  double next_round = interval;
  double last_urgent = -1e9; /* the last round that served an urgent sample */
  bool urgent_pending = false;
  double prev_claims = 0;
  double next_poll = 0; /* request_poll_s */
  double disk_sum = 0, idle_sum = 0, iops_sum = 0, iops_free_sum = 0;
  bool seen[SIM_MAX_VMS] = {false};
  double prev_cur[SIM_MAX_VMS] = {0};
  for (size_t i = 0; i < n; i++) {
    r->v[i].last_target = (uint64_t)m->vm[i].target_kib;
    r->v[i].ev_decided = -1;
  }

  for (long step = 1; step <= steps; step++) {
    sim_model_step(m, dt);
    double t = m->t;
    bool urgent_arrived = false;
    bool dom_changed = false; /* a domain appeared or went */
    for (size_t i = 0; i < n; i++) {
      view_t *v = &r->v[i];
      if (!m->vm[i].present) {
        if (seen[i]) { /* destroyed: forget everything about it */
          memset(v, 0, sizeof(*v));
          v->ev_decided = -1;
          dom_changed = true;
        }
        seen[i] = false;
        continue;
      }
      if (!seen[i]) {
        seen[i] = true;
        dom_changed = true;
        v->last_target = (uint64_t)m->vm[i].target_kib;
        v->work_mark = m->vm[i].work;
        prev_cur[i] = m->vm[i].current_kib;
      }
      if (!scn->vm[i].fixed) {
        res->balloon_mib_moved +=
            fabs(m->vm[i].current_kib - prev_cur[i]) / 1024.0;
        prev_cur[i] = m->vm[i].current_kib;
      }
      bool urgent;
      if (sim_model_publish_due_agent(m, i, &agent, &urgent)) {
        pub_t *p = &v->ring[v->head];
        sim_model_sample(m, i, &p->s);
        p->s.urgent = urgent;
        p->t = t;
        p->vis_t = visible_at(t, urgent, delay, read_s);
        v->head = (v->head + 1) % RING;
        if (v->count < RING)
          v->count++;
      }
      if (!scn->vm[i].fixed && refresh_view(v, t) && v->cur.urgent)
        urgent_arrived = true;
    }

    /* a VM due to start asks a balancer told of boots for its memory: a
     * round at once (membal's operator request waits for no gap) */
    bool asked = false, poll = false;
    if (pol->boot_requests) {
      double claims = sim_model_claims_kib(m);
      asked = claims > prev_claims;
      prev_claims = claims;
      /* qmemman's request loop runs while the VM waits */
      if (pol->request_poll_s > 0 && claims > 0 && t >= next_poll - 1e-9) {
        poll = true;
        next_poll = t + pol->request_poll_s;
      }
    }
    bool periodic = t >= next_round - 1e-9;
    if (pol->urgent && urgent_arrived)
      urgent_pending = true;
    bool round =
        periodic || asked || poll || (pol->domain_watch && dom_changed) ||
        (urgent_pending && t >= last_urgent + pol->urgent_gap_s - 1e-9);
    if (round) {
      /* a round serves every urgent sample that came before it */
      if (urgent_pending)
        last_urgent = t;
      urgent_pending = false;
      if (pol->urgent_gap_s > 0)
        next_round = t + interval; /* membal: Period from the last round */
      else if (periodic)
        next_round += interval;
    }
    if (round) {
      mb_host_t host;
      mb_domain_t doms[SIM_MAX_VMS];
      uint64_t targets[SIM_MAX_VMS];
      size_t map[SIM_MAX_VMS], nd = 0;
      memset(&host, 0, sizeof(host));
      host.total_kib = scn->total_kib;
      /* A domain being built is known only to a balancer the toolstack
       * asks for its memory: qmemman (the claim is reserved here) and
       * membal (the policy reserves it, as `membal reserve` does); the
       * others see the memory it holds once it runs. */
      host.reserve_kib = scn->reserve_kib;
      if (pol->boot_requests && !pol->boot_reserve)
        host.reserve_kib += (uint64_t)sim_model_claims_kib(m);
      host.free_kib = (uint64_t)sim_model_host_free(m);
      for (size_t i = 0; i < n; i++) {
        if (!m->vm[i].present)
          continue;
        if (scn->vm[i].fixed) {
          host.reserve_kib += (uint64_t)m->vm[i].current_kib;
          continue;
        }
        const view_t *v = &r->v[i];
        mb_domain_t *d = &doms[nd];
        memset(d, 0, sizeof(*d));
        d->domid = scn->vm[i].domid;
        snprintf(d->name, sizeof(d->name), "%s", scn->vm[i].name);
        d->current_kib = (uint64_t)m->vm[i].current_kib;
        d->target_kib = v->last_target;
        d->min_kib = scn->vm[i].min_kib;
        d->max_kib = scn->vm[i].max_kib;
        d->weight = scn->vm[i].weight;
        d->has_sample = v->have_cur;
        if (v->have_cur) {
          d->sample = v->cur;
          d->rates = v->rates;
          d->sample_age_s = t - v->cur_t;
        }
        map[nd++] = i;
      }
      sim_ctx_t ctx = {m, t, pol->boot_requests};
      int drc = pol->decide(pst, &ctx, &host, doms, nd, targets);
      if (drc < 0) {
        snprintf(err, errlen, "%s: policy failed at t=%.1f", pol->name, t);
        goto out;
      }
      if (drc == 0)
        res->rounds++;
      for (size_t k = 0; k < nd; k++) {
        size_t i = map[k];
        view_t *v = &r->v[i];
        if (targets[k] != v->last_target)
          res->balloon_changes++;
        res->clamped +=
            (uint64_t)sim_model_set_target(m, i, (double)targets[k]);
        v->last_target = (uint64_t)m->vm[i].target_kib;
      }
    }

    /* metrics */
    disk_sum += m->disk_resp_s;
    for (size_t i = 0; i < n; i++) {
      const sim_vm_t *vm = &m->vm[i];
      view_t *v = &r->v[i];
      if (!vm->present)
        continue;
      mb_sample_t s;
      sim_model_sample(m, i, &s);
      idle_sum += (double)s.v[MB_F_MEMFREE];
      if (vm->iops_free > 0) {
        iops_sum += vm->iops_done;
        iops_free_sum += vm->iops_free;
      }
      if (scn->vm[i].fixed)
        continue;
      double need = sim_model_need_at(m, i, t);
      double tol = 4096 + 0.02 * need;
      if (!v->uncovered && need > vm->current_kib + tol) {
        v->uncovered = true;
        v->ev_start = t;
        v->ev_decided = vm->target_kib + tol >= need ? t : -1;
      } else if (v->uncovered) {
        if (v->ev_decided < 0 && vm->target_kib + tol >= need)
          v->ev_decided = t;
        if (need <= vm->current_kib + tol)
          react_close(v, res, r, t);
      }
      if (step % per_sec == 0) {
        double w = vm->work - v->work_mark;
        v->work_mark = vm->work;
        /* a second without progress counts as slowdown 1000 (stalled) */
        if (push_slow(r, w > 1e-3 ? 1.0 / w : 1000)) {
          snprintf(err, errlen, "out of memory");
          goto out;
        }
      }
    }
    if (obs && step % per_sec == 0)
      obs(obs_arg, m);
  }

  for (size_t i = 0; i < n; i++)
    if (r->v[i].uncovered)
      react_close(&r->v[i], res, r, m->t);
  double sd_sum = 0, psi_some = 0, psi_full = 0;
  unsigned sd_n = 0;
  for (size_t i = 0; i < n; i++) {
    const sim_vm_t *vm = &m->vm[i];
    res->swapin_pages += floor(vm->pswpin);
    res->swapout_pages += floor(vm->pswpout);
    res->oom_mib += vm->oom_kib / 1024;
    res->oom_kills += vm->oom_kills;
    res->refault_pages += floor(vm->workingset_refault);
    res->boot_wait_s += vm->boot_wait_s;
    if (!vm->ever && !scn->vm[i].fixed && scn->vm[i].start_s < m->t) {
      /* never started: it waited the whole time it was due */
      double until = scn->vm[i].stop_s >= 0 ? scn->vm[i].stop_s : m->t;
      res->boot_failed++;
      res->boot_wait_s += until - scn->vm[i].start_s;
    }
    if (!vm->ever || scn->vm[i].fixed)
      continue;
    double end = vm->present ? m->t : scn->vm[i].stop_s;
    double elapsed = end - vm->booted_at;
    if (elapsed > 0 && vm->work > 0) {
      sd_sum += elapsed / vm->work;
      psi_some += vm->psi_some_total_us / 1e6 / elapsed;
      psi_full += vm->psi_full_total_us / 1e6 / elapsed;
      sd_n++;
    }
  }
  res->swap_pages = res->swapin_pages + res->swapout_pages;
  res->slowdown_mean = sd_n ? sd_sum / sd_n : 1;
  res->psi_some_pct = sd_n ? 100 * psi_some / sd_n : 0;
  res->psi_full_pct = sd_n ? 100 * psi_full / sd_n : 0;
  res->rounds_per_s = (double)res->rounds / scn->duration_s;
  if (r->nslow) {
    qsort(r->slow, r->nslow, sizeof(double), cmp_d);
    size_t k = (size_t)ceil(0.99 * (double)r->nslow) - 1;
    res->slowdown_p99 = r->slow[k];
  } else {
    res->slowdown_p99 = 1;
  }
  res->disk_resp_ms = disk_sum / (double)steps * 1000.0;
  res->diskvm_iops = iops_sum / (double)steps;
  res->diskvm_iops_free = iops_free_sum / (double)steps;
  res->idle_mib = idle_sum / (double)steps / 1024.0;
  res->react_cover_mean_s =
      res->react_events ? r->react_sum / res->react_events : 0;
  rc = 0;
out:
  if (pst)
    pol->destroy(pst);
  if (r)
    free(r->slow);
  free(r);
  free(m);
  return rc;
}

void sim_csv_header(FILE *f, const sim_scenario_t *scn) {
  fprintf(f, "t,disk_resp_ms,host_free_mib");
  for (size_t i = 0; i < scn->nvms; i++) {
    const char *nm = scn->vm[i].name;
    fprintf(f,
            ",%s_current_mib,%s_target_mib,%s_need_mib,%s_swap_pps,"
            "%s_progress",
            nm, nm, nm, nm, nm);
  }
  /* appended last so that the columns above keep their positions */
  for (size_t i = 0; i < scn->nvms; i++)
    fprintf(f, ",%s_swap_pages", scn->vm[i].name);
  for (size_t i = 0; i < scn->nvms; i++)
    fprintf(f, ",%s_psi_some_avg10,%s_psi_full_avg10,%s_refaults",
            scn->vm[i].name, scn->vm[i].name, scn->vm[i].name);
  fputc('\n', f);
}

void sim_csv_row(FILE *f, const sim_model_t *m) {
  fprintf(f, "%.1f,%.2f,%.1f", m->t, m->disk_resp_s * 1000.0,
          sim_model_host_free(m) / 1024.0);
  for (size_t i = 0; i < m->scn->nvms; i++) {
    const sim_vm_t *v = &m->vm[i];
    if (!v->present) {
      fprintf(f, ",,,,,");
      continue;
    }
    fprintf(f, ",%.1f,%.1f,%.1f,%.1f,%.3f", v->current_kib / 1024.0,
            v->target_kib / 1024.0, sim_model_need_at(m, i, m->t) / 1024.0,
            v->fault_ps + v->swapout_ps, v->progress);
  }
  for (size_t i = 0; i < m->scn->nvms; i++)
    fprintf(f, ",%.0f", floor(m->vm[i].pswpin) + floor(m->vm[i].pswpout));
  for (size_t i = 0; i < m->scn->nvms; i++) {
    const sim_vm_t *v = &m->vm[i];
    if (!v->present)
      fprintf(f, ",,,");
    else
      fprintf(f, ",%.2f,%.2f,%.0f", v->psi_some_avg10, v->psi_full_avg10,
              floor(v->workingset_refault));
  }
  fputc('\n', f);
}
