/*
 * The one model of a host: VMs with a working set, a page cache and their
 * own disk I/O; a balloon per VM that moves at a finite rate; one shared
 * swap disk whose response time grows with its load (M/M/1), so that a
 * swap storm in one VM slows every VM that touches the disk.
 *
 * Swapping: the part of a VM's working set that does not fit its memory is
 * in swap. Accesses hit the working set uniformly, so the fraction of
 * accesses that fault is swapped / working set; each fault is one random
 * disk read (bringing SWAP_RA_PAGES useful pages); when the guest has no
 * room left as many pages go out through the write-back queue. A faulting
 * VM waits for the disk: its progress is
 * 1 / (1 + fault demand * response time). Faults and the disk-bound VMs'
 * own I/O are closed loops, so the disk's response time is the fixed point
 * of load(R) and R(load); it is found by bisection.
 *
 * Cold anonymous memory (scenario key cold=share) is anon outside the
 * working set: the guest's reclaim evicts it first (after the page cache),
 * and its pages are touched COLD_TOUCH times as often as hot ones. Page
 * cache squeezed out by a shrinking memory is remembered: file reads that
 * miss on it are workingset refaults. The stall share of each step is
 * counted as /proc/pressure/memory would: "some" for the progress lost to
 * memory, "full" for reclaim stalls, which stop every task.
 */
#include "sim.h"

#include <math.h>
#include <string.h>

#define FLOOR_SLACK_KIB 16384.0 /* balloon never takes a guest below base+ */
#define UTIL_CAP 0.98
/* Swap-out is written back in clusters (Linux writes swap in runs of
 * pages), asynchronously: pages go to a backlog the disk drains with at
 * most WB_SHARE of its capacity, competing with faults. Swap-in faults are
 * random reads: one I/O each. */
#define WB_PAGES_PER_IO 64.0
#define WB_SHARE 0.5
/* A guest that must swap to make room (working set growing beyond its
 * memory, balloon taking memory it uses) can go no faster than the disk
 * writes: it waits in reclaim. Writes queued beyond WB_QUEUE_S seconds of
 * write-back stop it altogether until they drain. */
#define WB_QUEUE_S 1.0
/* Swap readahead: pages brought in per fault read that the workload then
 * uses (the rest of the readahead window is wasted). */
#define SWAP_RA_PAGES 4.0
/* The toolstack gives up waiting for free memory for a new domain after
 * this long and boots it with what there is. */
#define BOOT_PATIENCE_S 60.0
/* A cold page is accessed this often relative to a working-set page. */
#define COLD_TOUCH 0.01
/* Decay of the PSI averages (the kernel's avg10). */
#define PSI_WINDOW_S 10.0
/* OOM kills closer together than this are one event. */
#define OOM_EVENT_GAP_S 1.0

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

/* Deterministic jitter in [-1, 1], new value every simulated second. */
static double jitter(uint64_t seed, size_t vm, double t) {
  uint64_t h = mix64(seed ^ mix64((uint64_t)vm * 7919u + 1) ^
                     mix64((uint64_t)(int64_t)floor(t) + 0x9e3779b9u));
  return (double)(h >> 11) / (double)(UINT64_C(1) << 53) * 2.0 - 1.0;
}

double sim_model_ws_at(const sim_model_t *m, size_t i, double t) {
  const sim_vm_spec_t *s = &m->scn->vm[i];
  double ws = sim_trace_at(&s->tr[SIM_TR_WS], t);
  if (s->noise > 0)
    ws *= 1.0 + s->noise * jitter(m->rng_seed, i, t);
  return ws < 0 ? 0 : ws;
}

double sim_model_cold_at(const sim_model_t *m, size_t i, double t) {
  const sim_trace_t *tr = &m->scn->vm[i].tr[SIM_TR_COLD];
  if (tr->n > 0)
    return fmax(0, sim_trace_at(tr, t));
  double f = m->scn->vm[i].cold_share;
  return f > 0 ? sim_model_ws_at(m, i, t) * f / (1 - f) : 0;
}

double sim_model_need_at(const sim_model_t *m, size_t i, double t) {
  return sim_model_ws_at(m, i, t) + (double)m->scn->vm[i].base_kib;
}

double sim_model_host_free(const sim_model_t *m) {
  double used = (double)m->scn->reserve_kib;
  for (size_t i = 0; i < m->scn->nvms; i++)
    if (m->vm[i].present)
      used += m->vm[i].current_kib;
  double f = (double)m->scn->total_kib - used;
  return f > 0 ? f : 0;
}

double sim_model_balloon_floor(const sim_model_t *m, size_t i) {
  const sim_vm_spec_t *s = &m->scn->vm[i];
  const sim_vm_t *v = &m->vm[i];
  double floor_kib = (double)s->base_kib + FLOOR_SLACK_KIB;
  /* with swap full nothing more can be evicted */
  if (v->swapped_kib + v->cold_swapped_kib >=
      (double)s->swap_kib - SIM_PAGE_KIB)
    floor_kib = fmax(floor_kib,
                     (double)s->base_kib + v->anon_res_kib + v->cold_res_kib);
  return floor_kib;
}

int sim_model_set_target(sim_model_t *m, size_t i, double target_kib) {
  const sim_vm_spec_t *s = &m->scn->vm[i];
  double lo = (double)s->base_kib + FLOOR_SLACK_KIB;
  double hi = (double)s->max_kib;
  int clamped = 0;
  if (s->fixed)
    return 0;
  if (!(target_kib >= lo)) { /* also NaN */
    target_kib = lo;
    clamped = 1;
  }
  if (target_kib > hi) {
    target_kib = hi;
    clamped = 1;
  }
  m->vm[i].target_kib = target_kib;
  return clamped;
}

/* KiB the guests may still swap out in this step (shared write-back). */
static double wb_budget(const sim_model_t *m, double dt) {
  double iops = m->scn->disk_iops * WB_SHARE;
  if (m->wb_backlog_io > iops * WB_QUEUE_S)
    return 0;
  return iops * WB_PAGES_PER_IO * SIM_PAGE_KIB * dt;
}

/* Makes what the guest holds fit its memory: page cache first, then cold
 * anonymous pages, then the working set go out; what swap cannot take is
 * lost to the OOM killer. */
static void fit_memory(sim_model_t *m, sim_vm_t *v, const sim_vm_spec_t *s,
                       double *swapout_kib) {
  double usable = v->current_kib - (double)s->base_kib;
  if (usable < 0)
    usable = 0;
  double over = v->anon_res_kib + v->cold_res_kib + v->cache_kib - usable;
  if (over <= 0)
    return;
  double c = fmin(v->cache_kib, over);
  v->cache_kib -= c;
  v->cache_evicted_kib += c;
  over -= c;
  if (over <= 0)
    return;
  double room = (double)s->swap_kib - v->swapped_kib - v->cold_swapped_kib;
  if (room < 0)
    room = 0;
  double cold = fmin(v->cold_res_kib, over);
  double cold_out = fmin(cold, room);
  v->cold_res_kib -= cold;
  v->cold_swapped_kib += cold_out;
  room -= cold_out;
  double hot = over - cold;
  double hot_out = fmin(hot, room);
  v->anon_res_kib -= hot;
  v->swapped_kib += hot_out;
  double out = cold_out + hot_out;
  v->pswpout += out / SIM_PAGE_KIB;
  *swapout_kib += out;
  if (over > out) {
    v->oom_kib += (uint64_t)(over - out);
    if (m->t - v->last_oom_s >= OOM_EVENT_GAP_S)
      v->oom_kills++;
    v->last_oom_s = m->t;
  }
}

double sim_model_claims_kib(const sim_model_t *m) {
  double c = 0;
  for (size_t i = 0; i < m->scn->nvms; i++)
    if (!m->vm[i].ever && m->t >= m->scn->vm[i].start_s)
      c += (double)m->scn->vm[i].mem_kib;
  return c;
}

/* Boots VM i when the host has its memory free: the toolstack reserves
 * it (sim_model_claims_kib) and waits for balloons to free it. */
static void boot(sim_model_t *m, size_t i) {
  const sim_vm_spec_t *s = &m->scn->vm[i];
  sim_vm_t *v = &m->vm[i];
  double free_kib = sim_model_host_free(m);
  double waited = m->t - s->start_s;
  double mem = fmin((double)s->mem_kib, free_kib);
  if (mem < (double)s->mem_kib && waited < BOOT_PATIENCE_S)
    return; /* retried next step */
  if (mem < (double)s->base_kib + FLOOR_SLACK_KIB)
    return;
  memset(v, 0, sizeof(*v));
  v->boot_wait_s = waited;
  v->present = v->ever = true;
  v->current_kib = v->target_kib = mem;
  v->booted_at = m->t;
  v->ws_kib = sim_model_ws_at(m, i, m->t);
  double usable = mem - (double)s->base_kib;
  /* what does not fit is allocated by the next steps, swapping out as the
   * working set is built (and counted) */
  v->anon_res_kib = fmin(v->ws_kib, usable);
  v->cold_res_kib =
      fmin(sim_model_cold_at(m, i, m->t), fmax(0, usable - v->anon_res_kib));
  v->progress = 1;
  v->last_pub_s = -1e9;
  v->last_urgent_s = -1e9;
  v->last_oom_s = -1e9;
  v->last_poll_s = m->t;
}

void sim_model_init(sim_model_t *m, const sim_scenario_t *scn, uint64_t seed) {
  memset(m, 0, sizeof(*m));
  m->scn = scn;
  m->rng_seed = mix64(seed + 0x5eed);
  m->disk_resp_s = 1.0 / scn->disk_iops;
  for (size_t i = 0; i < scn->nvms; i++)
    if (scn->vm[i].start_s <= 0)
      boot(m, i);
}

typedef struct {
  double a;  /* swap-in fault demand at full speed, pages/s */
  double fm; /* file misses at full speed, reads/s */
  double e;  /* 1 when every fault also pushes a page out */
  double d;  /* own I/O demand */
  double qd;
  bool on;
} load_t;

/* Total disk arrival rate when the response time is R. */
static double load_at(const load_t *l, size_t n, double open_ps, double R) {
  double lam = open_ps;
  for (size_t i = 0; i < n; i++) {
    if (!l[i].on)
      continue;
    double x = 1.0 / (1.0 + (l[i].a + l[i].fm) * R);
    lam += l[i].a * x + l[i].fm * x;
    if (l[i].d > 0)
      lam += fmin(l[i].d, l[i].qd / R);
  }
  return lam;
}

static double resp_of(double lam, double S) {
  double rho = lam * S;
  if (rho < UTIL_CAP)
    return S / (1 - rho);
  /* beyond saturation the queue keeps growing: keep R increasing */
  return S / (1 - UTIL_CAP) * (1 + 10 * (rho - UTIL_CAP));
}

void sim_model_step(sim_model_t *m, double dt) {
  const sim_scenario_t *scn = m->scn;
  size_t n = scn->nvms;
  m->t += dt;
  double t = m->t;

  for (size_t i = 0; i < n; i++) {
    const sim_vm_spec_t *s = &scn->vm[i];
    sim_vm_t *v = &m->vm[i];
    if (v->present && s->stop_s >= 0 && t >= s->stop_s) {
      v->present = false;
      v->current_kib = v->target_kib = 0;
      v->progress = 0;
    } else if (!v->ever && t >= s->start_s) {
      boot(m, i);
    }
  }

  /* balloons: shrinks first so that growth can use what they free; a
   * shrink that forces the guest to swap goes at the disk's write speed */
  double budget = wb_budget(m, dt);
  for (size_t i = 0; i < n; i++) {
    sim_vm_t *v = &m->vm[i];
    if (!v->present || v->target_kib >= v->current_kib)
      continue;
    double lo = fmax(v->target_kib, sim_model_balloon_floor(m, i));
    double d = fmin(scn->shrink_kibps * dt, v->current_kib - lo);
    double usable = v->current_kib - (double)scn->vm[i].base_kib;
    double spare =
        fmax(0, usable - v->anon_res_kib - v->cold_res_kib); /* free + cache */
    if (d > spare) {
      double sw = fmin(d - spare, budget);
      budget -= sw;
      d = spare + sw;
    }
    if (d > 0)
      v->current_kib -= d;
  }
  double free_kib = sim_model_host_free(m) - sim_model_claims_kib(m);
  for (size_t i = 0; i < n; i++) {
    sim_vm_t *v = &m->vm[i];
    if (!v->present || v->target_kib <= v->current_kib)
      continue;
    double d = fmin(fmin(scn->grow_kibps * dt, v->target_kib - v->current_kib),
                    free_kib);
    if (d > 0) {
      v->current_kib += d;
      free_kib -= d;
    }
  }

  /* workloads and memory fit */
  load_t ld[SIM_MAX_VMS];
  double open_kib = 0;
  for (size_t i = 0; i < n; i++) {
    const sim_vm_spec_t *s = &scn->vm[i];
    sim_vm_t *v = &m->vm[i];
    ld[i].on = v->present;
    if (!v->present)
      continue;
    v->ws_kib = sim_model_ws_at(m, i, t);
    v->cache_want_kib = sim_trace_at(&s->tr[SIM_TR_CACHE], t);
    v->iops_want = sim_trace_at(&s->tr[SIM_TR_IOPS], t);
    v->intensity = sim_trace_at(&s->tr[SIM_TR_INTENSITY], t);
    double total = v->anon_res_kib + v->swapped_kib;
    v->alloc_ratio = 1;
    if (v->ws_kib > total) {
      double add = v->ws_kib - total;
      double usable = v->current_kib - (double)s->base_kib;
      double room = fmax(0, usable - v->anon_res_kib);
      double grant = fmin(add, room);
      if (add > grant) {
        double sw = fmin(add - grant, budget);
        budget -= sw;
        grant += sw;
      }
      v->anon_res_kib += grant;
      /* only a real stall counts, not a page of jitter */
      if (add > 1024)
        v->alloc_ratio = grant / add;
    } else if (total > 0) {
      double f = v->ws_kib / total;
      v->anon_res_kib *= f;
      v->swapped_kib *= f;
    }
    /* cold anonymous memory follows its share of anon; what does not fit
     * beside the rest goes to swap as the write-back allows */
    double cold_want = sim_model_cold_at(m, i, t);
    double cold_total =
        v->cold_res_kib + v->cold_swapped_kib + v->cold_lost_kib;
    if (cold_want > cold_total) {
      double add = cold_want - cold_total;
      double usable = v->current_kib - (double)s->base_kib;
      double room = fmax(0, usable - v->anon_res_kib - v->cold_res_kib);
      double in = fmin(add, room);
      double swroom =
          fmax(0, (double)s->swap_kib - v->swapped_kib - v->cold_swapped_kib);
      double out = fmin(fmin(add - in, budget), swroom);
      budget -= out;
      v->cold_res_kib += in;
      v->cold_swapped_kib += out;
      v->pswpout += out / SIM_PAGE_KIB;
      open_kib += out;
      /* memory and swap full: the OOM killer takes what is left */
      double lost = add - in - out;
      if (lost > 0 && swroom <= out) {
        v->cold_lost_kib += lost;
        v->oom_kib += (uint64_t)lost;
        if (t - v->last_oom_s >= OOM_EVENT_GAP_S)
          v->oom_kills++;
        v->last_oom_s = t;
      }
    } else if (cold_total > 0) {
      double f = cold_want / cold_total;
      v->cold_res_kib *= f;
      v->cold_swapped_kib *= f;
      v->cold_lost_kib *= f;
    }
    if (v->cache_kib > v->cache_want_kib)
      v->cache_kib = v->cache_want_kib;
    /* evicted cache beyond the appetite is not missed */
    v->cache_evicted_kib =
        fmin(v->cache_evicted_kib, fmax(0, v->cache_want_kib - v->cache_kib));
    double so = 0;
    fit_memory(m, v, s, &so);
    open_kib += so;
    v->swapout_ps = so / SIM_PAGE_KIB / dt;

    double ws = v->anon_res_kib + v->swapped_kib;
    double p = ws > 0 ? v->swapped_kib / ws : 0;
    double usable = v->current_kib - (double)s->base_kib;
    /* hot faults, plus the rare touches of cold pages in swap */
    ld[i].a =
        v->intensity * p +
        (ws > 0 ? v->intensity * COLD_TOUCH * v->cold_swapped_kib / ws : 0);
    ld[i].fm =
        v->cache_want_kib > 0
            ? s->file_rate * fmax(0, 1 - v->cache_kib / v->cache_want_kib)
            : 0;
    ld[i].e = (ld[i].a > 0 && usable - v->anon_res_kib - v->cold_res_kib < 1024)
                  ? 1
                  : 0;
    ld[i].d = v->iops_want;
    ld[i].qd = s->queue_depth;
  }

  /* disk response time: g(R) = resp(load(R)) - R decreases in R */
  double S = 1.0 / scn->disk_iops;
  m->wb_backlog_io += open_kib / SIM_PAGE_KIB / WB_PAGES_PER_IO;
  double open_ps = fmin(m->wb_backlog_io / dt, WB_SHARE / S);
  m->wb_backlog_io -= open_ps * dt;
  double lo = S, hi = S;
  while (resp_of(load_at(ld, n, open_ps, hi), S) > hi && hi < 1e4)
    hi *= 2;
  for (int it = 0; it < 60 && hi > lo * (1 + 1e-9); it++) {
    double mid = sqrt(lo * hi);
    if (resp_of(load_at(ld, n, open_ps, mid), S) > mid)
      lo = mid;
    else
      hi = mid;
  }
  double R = hi;
  double lam = load_at(ld, n, open_ps, R);
  m->disk_resp_s = R;
  m->disk_util = fmin(1, lam * S);

  for (size_t i = 0; i < n; i++) {
    const sim_vm_spec_t *s = &scn->vm[i];
    sim_vm_t *v = &m->vm[i];
    if (!v->present)
      continue;
    double x = 1.0 / (1.0 + (ld[i].a + ld[i].fm) * R);
    double faults = ld[i].a * x; /* pages/s */
    double fin_kib = fmin(faults * dt * SIM_PAGE_KIB * SWAP_RA_PAGES,
                          v->swapped_kib + v->cold_swapped_kib);
    v->pswpin += fin_kib / SIM_PAGE_KIB;
    if (ld[i].e > 0) {
      /* one in, one out: the resident set does not grow */
      v->pswpout += fin_kib / SIM_PAGE_KIB;
      v->swapout_ps += faults;
      m->wb_backlog_io += fin_kib / SIM_PAGE_KIB / WB_PAGES_PER_IO;
    } else {
      double hot_in = fmin(fin_kib, v->swapped_kib);
      double cold_in = fmin(fin_kib - hot_in, v->cold_swapped_kib);
      v->swapped_kib -= hot_in;
      v->anon_res_kib += hot_in;
      v->cold_swapped_kib -= cold_in;
      v->cold_res_kib += cold_in;
    }
    v->fault_ps = faults;
    v->pgmajfault += (faults + ld[i].fm * x) * dt;
    v->pgfault += v->intensity * x * dt * 0.05 + faults * dt;
    /* the page cache fills from file reads (misses), at least slowly */
    double usable = v->current_kib - (double)s->base_kib;
    double room = usable - v->anon_res_kib - v->cold_res_kib - v->cache_kib;
    double grow = fmin(v->cache_want_kib - v->cache_kib,
                       (ld[i].fm * x + 256) * SIM_PAGE_KIB * dt);
    /* misses on pages that were squeezed out are refaults */
    double gap = v->cache_want_kib - v->cache_kib;
    double refault_share = gap > 0 ? fmin(1, v->cache_evicted_kib / gap) : 0;
    v->workingset_refault += ld[i].fm * x * dt * refault_share;
    if (room > 0 && grow > 0) {
      double g = fmin(room, grow);
      v->cache_kib += g;
      v->cache_evicted_kib = fmax(0, v->cache_evicted_kib - g);
    }
    /* pressure stall: progress lost to memory (not to own disk I/O) */
    double some = fmin(1, fmax(0, 1 - x * v->alloc_ratio));
    double full = fmin(1, fmax(0, 1 - v->alloc_ratio));
    double k = 1 - exp(-dt / PSI_WINDOW_S);
    v->psi_some_total_us += some * dt * 1e6;
    v->psi_full_total_us += full * dt * 1e6;
    v->psi_some_avg10 += (100 * some - v->psi_some_avg10) * k;
    v->psi_full_avg10 += (100 * full - v->psi_full_avg10) * k;
    double prog = x * v->alloc_ratio;
    v->iops_done = 0;
    v->iops_free = 0;
    if (ld[i].d > 0) {
      double alone = s->queue_depth / ((1 + s->queue_depth) * S);
      v->iops_free = fmin(ld[i].d, alone);
      v->iops_done = fmin(ld[i].d, ld[i].qd / R);
      prog *= v->iops_done / v->iops_free;
    }
    double late = 0;
    fit_memory(m, v, s, &late); /* faults may have overfilled it */
    m->wb_backlog_io += late / SIM_PAGE_KIB / WB_PAGES_PER_IO;
    v->progress = prog;
    v->work += prog * dt;
  }
}

void sim_agent_resolve(const sim_scenario_t *scn, const sim_agent_t *in,
                       sim_agent_t *out) {
  static const sim_agent_t none;
  *out = in ? *in : none;
  if (out->publish_s <= 0)
    out->publish_s = scn->interval_s;
  if (out->poll_s == 0)
    out->poll_s = scn->urgent_check_s;
  if (out->urgent_min_s == 0)
    out->urgent_min_s = scn->urgent_min_s;
  if (out->urgent_pps <= 0)
    out->urgent_pps = scn->urgent_pps;
}

/* What qmemman's guest side (meminfo-writer) reports as used: MemTotal -
 * MemFree - Cached - Buffers + swap in use. */
static double qubes_used_kib(const sim_model_t *m, size_t i) {
  mb_sample_t s;
  sim_model_sample(m, i, &s);
  double used = (double)s.v[MB_F_MEMTOTAL] - (double)s.v[MB_F_MEMFREE] -
                (double)s.v[MB_F_CACHED] - (double)s.v[MB_F_BUFFERS];
  return used + (double)s.v[MB_F_SWAPTOTAL] - (double)s.v[MB_F_SWAPFREE];
}

/* The guest agent's urgent path as guestmem has it: every poll_s it rates
 * the counters over the last poll window and publishes at once when swap
 * (or major faults) cross the threshold, at most once per urgent_min_s. */
bool sim_model_publish_due_agent(sim_model_t *m, size_t i,
                                 const sim_agent_t *ag, bool *urgent) {
  sim_vm_t *v = &m->vm[i];
  *urgent = false;
  if (!v->present)
    return false;
  double t = m->t;
  bool due = t - v->last_pub_s >= ag->publish_s - 1e-6;
  if (ag->stall_us > 0 && ag->stall_window_s > 0) {
    /* guestmem's PSI trigger: the kernel wakes it when "some" stall grows
     * by stall_us within a window. Modelled with back-to-back windows (the
     * kernel's slides: it may fire up to one window earlier); one event
     * per window at most, as the kernel rate-limits it. */
    if (t - v->stall_mark_s >= ag->stall_window_s - 1e-6 ||
        v->psi_some_total_us < v->stall_mark_us) {
      v->stall_mark_s = t;
      v->stall_mark_us = v->psi_some_total_us;
    }
    bool fire = v->psi_some_total_us - v->stall_mark_us >= ag->stall_us;
    bool limited =
        ag->urgent_min_s > 0 && t - v->last_urgent_s < ag->urgent_min_s - 1e-6;
    if (fire && !limited) {
      due = *urgent = true;
      v->last_urgent_s = t;
      /* the event is consumed: the next one needs a new window's stall */
      v->stall_mark_s = t;
      v->stall_mark_us = v->psi_some_total_us;
    }
  } else if (ag->poll_s > 0 && t - v->last_poll_s >= ag->poll_s - 1e-6) {
    double win = t - v->last_poll_s;
    double sw = v->pswpin + v->pswpout - v->swap_at_poll;
    double mf = v->pgmajfault - v->majflt_at_poll;
    bool fire = (sw >= 1 && sw / win >= ag->urgent_pps) ||
                (ag->urgent_majflt_ps > 0 && mf / win > ag->urgent_majflt_ps);
    if (ag->change_kib > 0 &&
        fabs(qubes_used_kib(m, i) - v->used_at_pub) > ag->change_kib)
      fire = true;
    v->last_poll_s = t;
    v->swap_at_poll = v->pswpin + v->pswpout;
    v->majflt_at_poll = v->pgmajfault;
    bool limited =
        ag->urgent_min_s > 0 && t - v->last_urgent_s < ag->urgent_min_s - 1e-6;
    if (fire && !limited) {
      due = *urgent = true;
      v->last_urgent_s = t;
    }
  }
  if (due) {
    v->seq++;
    v->last_pub_s = t;
    v->swap_at_pub = v->pswpin + v->pswpout;
    if (ag->change_kib > 0)
      v->used_at_pub = qubes_used_kib(m, i);
  }
  return due;
}

bool sim_model_publish_due(sim_model_t *m, size_t i, bool *urgent) {
  sim_agent_t ag;
  sim_agent_resolve(m->scn, NULL, &ag);
  return sim_model_publish_due_agent(m, i, &ag, urgent);
}

static void put(mb_sample_t *s, mb_field_t f, double v) {
  s->v[f] = v > 0 ? (uint64_t)llround(v) : 0;
  s->have |= UINT64_C(1) << f;
}

void sim_model_sample(const sim_model_t *m, size_t i, mb_sample_t *out) {
  const sim_vm_spec_t *s = &m->scn->vm[i];
  const sim_vm_t *v = &m->vm[i];
  memset(out, 0, sizeof(*out));
  /* the guest kernel's view of its fixed overhead */
  double base = (double)s->base_kib;
  double reserved = 0.10 * base, daemons = 0.40 * base, slab = 0.35 * base,
         ptables = 0.10 * base, kstack = 0.05 * base;
  double total = v->current_kib - reserved;
  double cached = 0.97 * v->cache_kib, buffers = 0.03 * v->cache_kib;
  double hot = v->anon_res_kib + daemons;
  double anon = hot + v->cold_res_kib; /* cold pages are anon too */
  double free_kib = total - anon - cached - buffers - slab - ptables - kstack;
  if (free_kib < 0)
    free_kib = 0;
  put(out, MB_F_MEMTOTAL, total);
  put(out, MB_F_MEMFREE, free_kib);
  put(out, MB_F_MEMAVAILABLE, free_kib + cached + buffers + slab * 0.5);
  put(out, MB_F_BUFFERS, buffers);
  put(out, MB_F_CACHED, cached);
  put(out, MB_F_SWAPCACHED, 0);
  /* cold pages age onto the inactive list */
  put(out, MB_F_ACTIVE_ANON, 0.8 * hot);
  put(out, MB_F_INACTIVE_ANON, 0.2 * hot + v->cold_res_kib);
  put(out, MB_F_ACTIVE_FILE, 0.5 * (cached + buffers));
  put(out, MB_F_INACTIVE_FILE, 0.5 * (cached + buffers));
  put(out, MB_F_ACTIVE, 0.8 * hot + 0.5 * (cached + buffers));
  put(out, MB_F_INACTIVE,
      0.2 * hot + v->cold_res_kib + 0.5 * (cached + buffers));
  put(out, MB_F_SWAPTOTAL, (double)s->swap_kib);
  put(out, MB_F_SWAPFREE,
      (double)s->swap_kib - v->swapped_kib - v->cold_swapped_kib);
  put(out, MB_F_DIRTY, 0.01 * cached);
  put(out, MB_F_ANONPAGES, anon);
  put(out, MB_F_SHMEM, 0.01 * base);
  put(out, MB_F_SLAB, slab);
  put(out, MB_F_SRECLAIMABLE, slab * 0.5);
  put(out, MB_F_SUNRECLAIM, slab * 0.5);
  put(out, MB_F_KERNELSTACK, kstack);
  put(out, MB_F_PAGETABLES, ptables);
  put(out, MB_F_COMMITTED_AS,
      (v->anon_res_kib + v->swapped_kib + v->cold_res_kib +
       v->cold_swapped_kib + daemons) *
          s->commit_factor);
  put(out, MB_F_PSWPIN, floor(v->pswpin));
  put(out, MB_F_PSWPOUT, floor(v->pswpout));
  put(out, MB_F_PGMAJFAULT, floor(v->pgmajfault));
  put(out, MB_F_PGFAULT, floor(v->pgfault));
  /* What guestmem reads from a >= 5.9 kernel: refaults (a page swapped
   * back in was evicted from the working set: an anon refault) and the
   * PSI memory stall (avg10 in basis points, totals in us). */
  put(out, MB_F_WORKINGSET_REFAULT_ANON, floor(v->pswpin));
  put(out, MB_F_WORKINGSET_REFAULT_FILE, floor(v->workingset_refault));
  put(out, MB_F_PSI_SOME_AVG10, llround(v->psi_some_avg10 * 100.0));
  put(out, MB_F_PSI_FULL_AVG10, llround(v->psi_full_avg10 * 100.0));
  put(out, MB_F_PSI_SOME_TOTAL, floor(v->psi_some_total_us));
  put(out, MB_F_PSI_FULL_TOTAL, floor(v->psi_full_total_us));
  out->seq = v->seq;
  out->uptime_ms = (uint64_t)llround((m->t - v->booted_at) * 1000.0) + 1;
}
