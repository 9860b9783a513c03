/*
 * Baselines: what a Xen or KVM admin would otherwise run, each
 * reimplemented from the upstream file named at its section (read, not
 * copied: the rules are restated here in our own code), at its own
 * cadence, with its own guest agent. They see guest samples through the
 * same pipeline delay as membal, except xenballoond, which runs inside
 * each guest.
 *
 *   static      equal split of the pool, no balancing
 *   xenballoond self-ballooning alone (Magenheimer 2008), every 1 s
 *   xenmm       xenmm's mmserver with its default build, TAX_RATE=AUTO;
 *               xenmm-0.75 the same with the static tax rate 0.75
 *   mom         oVirt MoM with vdsm's 02-balloon.policy and mom.conf
 *   proxmox     Proxmox VE auto-ballooning (pvestatd + PVE::AutoBalloon)
 *   qubes       Qubes qmemman (algo.py + systemstate.py), event-driven,
 *               and its request for a starting VM's memory
 */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIB 1024.0

static uint64_t pool_of(const mb_host_t *h) {
  return h->total_kib > h->reserve_kib ? h->total_kib - h->reserve_kib : 0;
}

static double clampd(double v, double lo, double hi) {
  if (v < lo)
    v = lo;
  if (v > hi)
    v = hi;
  return v;
}

static uint64_t to_kib(double v) { return v > 0 ? (uint64_t)v : 0; }

static double field(const mb_domain_t *d, mb_field_t f) {
  return d->has_sample && mb_sample_has(&d->sample, f) ? (double)d->sample.v[f]
                                                       : -1;
}

/* The balloon driver's minimum target (drivers/xen/balloon.c,
 * minimum_target(), as quoted by xenballoond): piecewise linear in the
 * domain's maximum, in MiB. */
static double balloon_min_kib(uint64_t max_kib) {
  double mb = (double)max_kib / MIB;
  double pages = (double)max_kib / 4;
  double r;
  if (mb < 125)
    r = 8 + floor(pages / 512);
  else if (mb < 500)
    r = 40 + floor(pages / 1024);
  else if (mb < 2000)
    r = 104 + floor(pages / 2048);
  else
    r = 296 + floor(pages / 8192);
  return fmin(r * MIB, (double)max_kib);
}

static void *no_state(const sim_scenario_t *scn) {
  static int dummy;
  return &dummy;
}
static void no_free(void *st) {}

/* ---- static ----------------------------------------------------------- */

static int static_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                         const mb_domain_t *d, size_t n, uint64_t *t) {
  if (n == 0)
    return 0;
  double share = (double)pool_of(h) / (double)n;
  for (size_t i = 0; i < n; i++)
    t[i] = to_kib(fmin(share, (double)d[i].max_kib));
  return 0;
}

const sim_policy_t sim_base_static = {.name = "static",
                                      .desc =
                                          "static equal split, no balancing",
                                      .interval_s = 0,
                                      .create = no_state,
                                      .destroy = no_free,
                                      .decide = static_decide};

/* ---- xenballoond ------------------------------------------------------ */

static int xb_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                     const mb_domain_t *d, size_t n, uint64_t *t) {
  for (size_t i = 0; i < n; i++) {
    double cur = (double)d[i].current_kib;
    double committed = field(&d[i], MB_F_COMMITTED_AS);
    if (committed < 0) {
      t[i] = d[i].target_kib;
      continue;
    }
    double goal = fmax(committed, balloon_min_kib(d[i].max_kib));
    double next = goal > cur ? cur + (goal - cur) / 1.0   /* up 1 */
                             : cur - (cur - goal) / 10.0; /* down 10 */
    t[i] = to_kib(clampd(next, 0, (double)d[i].max_kib));
  }
  return 0;
}

/* xen tools/xenballoon/xenballoond and xenballoon.conf (Xen 3.3, 2008):
 * XENBALLOON_SELF_INTERVAL 1 s, up hysteresis 1, down 10. */
const sim_policy_t sim_base_xenballoond = {
    .name = "xenballoond",
    .desc = "xenballoond self-ballooning alone (Committed_AS, 1/10), 1 s",
    .interval_s = 1,
    .agent = {.publish_s = 1, .poll_s = -1},
    .guest_local = true,
    .create = no_state,
    .destroy = no_free,
    .decide = xb_decide};

/* ---- xenmm ------------------------------------------------------------ */

/* wzzhang-HIT/xenmm, src/mmserver.c (build_linear_equ) and src/mmclient.c.
 * The client reports every second MemTotal and "free" = MemFree + Cached;
 * every 2 s the server solves x_i - x_j = tau (A_i - A_j), sum x = N, for
 * A = MemTotal - free: x_i = N / n - tau * mean(A) + tau * A_i. No shares,
 * no redistribution of what a maximum clips. Its default build has
 * TAX_RATE=AUTO: tau = (xi + Amax/N - 1/n) / (Amax/N - mean(A)/N), clamped
 * to [0, 1], where xi = reserve / N (mmserver -f, 100 MiB in its README's
 * example); tau follows a rise at once and falls by a tenth of the gap
 * per round. N = the pool. */
#define XENMM_RESERVE_KIB (100 * MIB)

typedef struct {
  bool is_auto;
  double tau, old_tau;
} xenmm_st_t;

static void *xenmm_create_with(bool is_auto, double tau) {
  xenmm_st_t *s = calloc(1, sizeof(*s)); /* owned by the runner */
  if (!s)
    return NULL;
  s->is_auto = is_auto;
  s->tau = tau;
  return s;
}
static void *xenmm_auto_create(const sim_scenario_t *scn) {
  return xenmm_create_with(true, 0);
}
static void *xenmm_075_create(const sim_scenario_t *scn) {
  return xenmm_create_with(false, 0.75);
}

static int xenmm_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                        const mb_domain_t *d, size_t n, uint64_t *t) {
  xenmm_st_t *s = st;
  double a[SIM_MAX_VMS], N = (double)pool_of(h), amax = 0, amean = 0;
  size_t k = 0;
  if (n > SIM_MAX_VMS)
    return -1;
  for (size_t i = 0; i < n; i++) {
    double tot = field(&d[i], MB_F_MEMTOTAL), fr = field(&d[i], MB_F_MEMFREE),
           ca = field(&d[i], MB_F_CACHED);
    t[i] = d[i].target_kib;
    if (tot < 0 || fr < 0)
      continue; /* its client has not reported yet */
    a[i] = tot - (fr + fmax(ca, 0));
    amax = fmax(amax, a[i]);
    amean += a[i];
    k++;
  }
  if (k == 0 || N <= 0)
    return 0;
  amean /= (double)k;
  double tau = s->tau;
  if (s->is_auto) {
    double den = amax / N - amean / N;
    double v =
        den > 0
            ? ((double)XENMM_RESERVE_KIB / N + amax / N - 1.0 / (double)k) / den
            : 0;
    v = clampd(v, 0, 1);
    tau = v > s->old_tau ? v : s->old_tau - (s->old_tau - v) / 10;
    s->old_tau = tau;
  }
  double part = N / (double)k - tau * amean;
  for (size_t i = 0; i < n; i++) {
    if (field(&d[i], MB_F_MEMTOTAL) < 0 || field(&d[i], MB_F_MEMFREE) < 0)
      continue;
    t[i] = to_kib(clampd(part + tau * a[i], 0, (double)d[i].max_kib));
  }
  return 0;
}

const sim_policy_t sim_base_xenmm = {
    .name = "xenmm",
    .desc = "xenmm mmserver, default build: AUTO tax rate, every 2 s",
    .interval_s = 2,
    .agent = {.publish_s = 1, .poll_s = -1},
    .create = xenmm_auto_create,
    .destroy = free,
    .decide = xenmm_decide};

const sim_policy_t sim_base_xenmm075 = {
    .name = "xenmm-0.75",
    .desc = "xenmm mmserver built with TAX_RATE=0.75, every 2 s",
    .interval_s = 2,
    .agent = {.publish_s = 1, .poll_s = -1},
    .create = xenmm_075_create,
    .destroy = free,
    .decide = xenmm_decide};

/* ---- MoM -------------------------------------------------------------- */

/* oVirt vdsm static/etc/vdsm/mom.d/02-balloon.policy with vdsm's mom.conf
 * (policy-engine-interval and guest-monitor-interval 15 s,
 * sample-history-length 10). Every guest and the host are averaged over
 * the last 10 samples (StatAvg). host_free_percent = avg host free / host
 * total. Below pressure_threshold 0.20 every guest shrinks: by at most 5 %
 * per round, not below max(guaranteed minimum, used + guest_free_percent x
 * current), where used = avg current - avg MemFree ("mem_unused") and
 * guest_free_percent = 0.20 x host_free_percent / 0.20, or host_free_percent
 * - 0.05 at or below pressure_critical 0.05. Otherwise every guest below
 * its maximum grows by 5 % per round, at least to the same floor. Changes
 * under 0.25 % of current are not made; a guest below its guaranteed
 * minimum is raised to it. */
#define MOM_HIST 10

typedef struct {
  uint32_t domid;
  bool used;
  unsigned n, head;
  double cur[MOM_HIST], unused[MOM_HIST];
} mom_dom_t;

typedef struct {
  unsigned hn, hhead;
  double hfree[MOM_HIST];
  mom_dom_t dom[SIM_MAX_VMS];
} mom_st_t;

static void *mom_create(const sim_scenario_t *scn) {
  return calloc(1, sizeof(mom_st_t)); /* owned by the runner */
}

static void hist_push(double *ring, unsigned *n, unsigned *head, double v) {
  ring[*head] = v;
  *head = (*head + 1) % MOM_HIST;
  if (*n < MOM_HIST)
    (*n)++;
}

static double hist_avg(const double *ring, unsigned n) {
  double s = 0;
  for (unsigned i = 0; i < n; i++)
    s += ring[i];
  return n ? s / n : 0;
}

static mom_dom_t *mom_dom(mom_st_t *s, uint32_t domid) {
  mom_dom_t *fresh = NULL;
  for (size_t i = 0; i < SIM_MAX_VMS; i++) {
    if (s->dom[i].used && s->dom[i].domid == domid)
      return &s->dom[i];
    if (!s->dom[i].used && !fresh)
      fresh = &s->dom[i];
  }
  if (fresh) {
    memset(fresh, 0, sizeof(*fresh));
    fresh->used = true;
    fresh->domid = domid;
  }
  return fresh;
}

static int mom_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                      const mb_domain_t *d, size_t n, uint64_t *t) {
  mom_st_t *s = st;
  /* forget guests that are gone */
  for (size_t k = 0; k < SIM_MAX_VMS; k++) {
    bool live = false;
    for (size_t i = 0; i < n && s->dom[k].used; i++)
      live = live || d[i].domid == s->dom[k].domid;
    if (!live)
      s->dom[k].used = false;
  }
  hist_push(s->hfree, &s->hn, &s->hhead, (double)h->free_kib);
  double hfp = hist_avg(s->hfree, s->hn) / (double)h->total_kib;
  bool pressure = hfp < 0.20;
  double gfp = hfp <= 0.05 ? hfp - 0.05 : 0.20 * hfp / 0.20;
  for (size_t i = 0; i < n; i++) {
    double cur = (double)d[i].current_kib, mx = (double)d[i].max_kib;
    double gmin =
        d[i].min_kib ? (double)d[i].min_kib : balloon_min_kib(d[i].max_kib);
    double unused = field(&d[i], MB_F_MEMFREE);
    mom_dom_t *md = mom_dom(s, d[i].domid);
    t[i] = d[i].target_kib;
    if (!md || unused < 0)
      continue; /* no memory statistics: MoM leaves the guest alone */
    md->cur[md->head] = cur;
    md->unused[md->head] = unused;
    md->head = (md->head + 1) % MOM_HIST;
    if (md->n < MOM_HIST)
      md->n++;
    double used = hist_avg(md->cur, md->n) - hist_avg(md->unused, md->n);
    double floor_kib = fmax(gmin, used + gfp * cur);
    double next = -1;
    if (pressure) {
      double size = fmax(cur * 0.95, floor_kib);
      if (size <= cur)
        next = size;
    } else if (cur < mx) {
      next = fmin(fmax(cur * 1.05, floor_kib), mx);
    }
    if (next >= 0 && fabs(next - cur) > 0.0025 * cur)
      t[i] = to_kib(next);
    if (cur < gmin)
      t[i] = to_kib(gmin);
  }
  return 0;
}

const sim_policy_t sim_base_mom = {
    .name = "mom",
    .desc = "oVirt MoM 02-balloon.policy, averaged samples, 5 %, every 15 s",
    .interval_s = 15,
    .agent = {.publish_s = 15, .poll_s = -1},
    .create = mom_create,
    .destroy = free,
    .decide = mom_decide};

/* ---- Proxmox ---------------------------------------------------------- */

/* Proxmox VE: pve-manager PVE/Service/pvestatd.pm (auto_balloning, every
 * 10 s) with qemu-server's PVE/AutoBalloon.pm (compute_alg1). goal = 80 %
 * of host memory - host used; nothing below 10 MiB either way. VMs with
 * pressure (MemFree <= a quarter of their minimum, or below the minimum)
 * are served first when growing; VMs with enough free memory are taken
 * from first when shrinking; only when the preferred list makes no
 * progress are all VMs used. Within a list the goal is spread by shares
 * (1000 each x weight) over the room above each VM's minimum, at most
 * 100 MiB per VM per round, repeated while some VM hits a bound. Balloon
 * statistics are polled every 2 s (qemu-server's stats polling). */
#define PVE_MAXCHANGE_KIB (100 * MIB)

typedef struct {
  double cur, lo, hi, shares;
} pve_vm_t;

/* Spreads `bytes` (KiB; > 0 grow, < 0 shrink) over the VMs in ids; res
 * holds each VM's new size (starts at cur). Returns what is left. */
static double pve_spread(const pve_vm_t *vm, const size_t *ids, size_t nid,
                         double *res, double bytes) {
  double rest = bytes;
  bool done[SIM_MAX_VMS] = {false};
  bool repeat = true;
  double progress = 1;
  while (fabs(rest) > 0 && repeat && progress > 0) {
    repeat = false;
    progress = 0;
    double shares = 0, alloc_old = 0;
    for (size_t k = 0; k < nid; k++) {
      size_t i = ids[k];
      if (done[i])
        continue;
      alloc_old += res[i] - vm[i].lo;
      shares += vm[i].shares;
    }
    if (shares <= 0)
      break;
    double alloc_new = alloc_old + rest, changes = 0;
    for (size_t k = 0; k < nid; k++) {
      size_t i = ids[k];
      if (done[i])
        continue;
      double want = vm[i].lo + floor(alloc_new / shares * vm[i].shares);
      if (want > vm[i].hi || want < vm[i].lo) {
        want = clampd(want, vm[i].lo, vm[i].hi);
        repeat = true;
      }
      double next;
      if (bytes > 0 && want > vm[i].cur)
        next = fmin(vm[i].cur + PVE_MAXCHANGE_KIB, want);
      else if (want < vm[i].cur)
        next = fmax(vm[i].cur - PVE_MAXCHANGE_KIB, want);
      else {
        done[i] = true;
        continue;
      }
      if (next != vm[i].cur && next != res[i]) {
        changes += next - res[i];
        progress += fabs(next - vm[i].cur);
        res[i] = next;
        repeat = true;
      }
    }
    rest -= changes;
  }
  return rest;
}

static int pve_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                      const mb_domain_t *d, size_t n, uint64_t *t) {
  pve_vm_t vm[SIM_MAX_VMS] = {{0}};
  size_t all[SIM_MAX_VMS] = {0}, press[SIM_MAX_VMS] = {0},
         roomy[SIM_MAX_VMS] = {0};
  size_t na = 0, np = 0, nr = 0;
  double res[SIM_MAX_VMS];
  if (n > SIM_MAX_VMS)
    return -1;
  double total = (double)h->total_kib;
  double goal = 0.80 * total - (total - (double)h->free_kib);
  for (size_t i = 0; i < n; i++) {
    vm[i].cur = (double)d[i].current_kib;
    vm[i].lo =
        d[i].min_kib ? (double)d[i].min_kib : balloon_min_kib(d[i].max_kib);
    vm[i].hi = (double)d[i].max_kib;
    vm[i].shares = 1000.0 * (d[i].weight ? d[i].weight : 1);
    res[i] = vm[i].cur;
    t[i] = d[i].target_kib;
    all[na++] = i;
    double fr = field(&d[i], MB_F_MEMFREE);
    if (fr > 0.25 * vm[i].lo && vm[i].cur >= vm[i].lo)
      roomy[nr++] = i;
    else
      press[np++] = i;
  }
  if (goal > 10 * MIB) {
    double rest = pve_spread(vm, press, np, res, goal);
    if (rest >= goal)
      pve_spread(vm, all, na, res, rest);
  } else if (goal < -10 * MIB) {
    double rest = pve_spread(vm, roomy, nr, res, goal);
    if (rest <= goal)
      pve_spread(vm, all, na, res, rest);
  }
  for (size_t i = 0; i < n; i++)
    if (res[i] != vm[i].cur)
      t[i] = to_kib(res[i]);
  return 0;
}

const sim_policy_t sim_base_proxmox = {
    .name = "proxmox",
    .desc = "Proxmox auto-ballooning (80 % host, priority lists, 100 MiB/10 s)",
    .interval_s = 10,
    .agent = {.publish_s = 2, .poll_s = -1},
    .create = no_state,
    .destroy = no_free,
    .decide = pve_decide};

/* ---- Qubes qmemman ---------------------------------------------------- */

/* QubesOS qubes-core-admin qubes/qmemman/algo.py and systemstate.py. The
 * guest's meminfo-writer (run as "meminfo-writer 30000 100000") checks
 * every 0.1 s and writes used = MemTotal - MemFree - Cached - Buffers +
 * swap in use when it moved by more than 30000 KiB; each write makes
 * qmemman balance (do_balance), and so does a domain appearing or going
 * (qubes/tools/qmemmand.py: the @introduceDomain and @releaseDomain
 * watches run domain_list_changed, which balances). pref = max(1.3 x used,
 * 200 MiB), at most the maximum; actual = max(current, last target); Xen's
 * free memory counts targets not yet reached as used, and 50 MiB stays
 * free. Enough memory: everyone gets pref plus a share of the surplus
 * proportional to pref (what maxima clip goes to the others). Short:
 * donors (actual above pref by 10 MiB or more) go to pref and acceptors
 * share what that frees, in proportion to pref. A balance that moves less
 * than 150 MiB in all is not made, unless a guest below pref would grow
 * by more than 15 MiB or Xen's free memory is 15 MiB short of the slack.
 *
 * A VM's start (qubes/vm/qubesvm.py, request_mem): qubesd asks qmemman for
 * the VM's memory before it builds the domain, and keeps the connection
 * open until the domain exists. qmemmand's request handler holds
 * GLOBAL_LOCK all that time, so no balance runs (meminfo writes and domain
 * watches wait for the lock, and run when it is released); one request at
 * a time, in the order the VMs became due (the simulator asks for the
 * VM's boot memory: it has no per-domain overhead). The request is
 * SystemState.do_balloon (systemstate.py), a loop every BALLOON_DELAY
 * (0.1 s; the runner polls at request_poll_s): Xen's free memory (as
 * above) at least the request + 25 MiB: granted, the domain is built.
 * Else it fails when free memory grew by less than 300 MiB over the last
 * 3 s (CHECK_MB_S 100 over CHECK_PERIOD_S 3), donors whose actual did not
 * move since the last iteration's memset are marked no_progress, and
 * algo.py's balloon(request + 50 MiB - free) runs: donors are the domains
 * with a meminfo whose actual exceeds pref and not marked; each gives its
 * excess scaled by (what is asked / the donors' whole excess) x 1.05
 * (REQ_SAFETY_NET_FACTOR); target = actual - that. The donors' whole
 * excess short of what is asked: it fails. A failed request releases the
 * lock (and qubesd refuses the start: see sim/README.md for what the
 * simulated toolstack does then). do_balance clears a no_progress mark
 * when the domain's actual came within 25 MiB of its last target or is
 * below pref (clear_outdated_error_markers), and leaves marked domains
 * out. */
#define QM_CACHE_FACTOR 1.3
#define QM_MIN_PREF_KIB (200 * MIB)
#define QM_FREE_LEFT_KIB (50 * MIB)
#define QM_FREE_MIN_KIB (25 * MIB)
#define QM_REQ_SAFETY 1.05
/* CHECK_PERIOD: do_balloon iterations in CHECK_PERIOD_S (3 s / 0.1 s) */
#define QM_CHECK_PERIOD 30
#define QM_CHECK_DELTA_KIB (3 * 100 * MIB)
#define QM_BALLOON_DELAY_S 0.1

typedef struct {
  uint32_t domid;
  bool seen;          /* has had a sample */
  uint64_t seq;       /* of the last meminfo write seen */
  bool no_progress;   /* did not move on a request's memset */
  bool memset;        /* the last request iteration set its target */
  double prev_actual; /* its actual then */
} qm_dom_t;

typedef struct {
  qm_dom_t dom[SIM_MAX_VMS];
  size_t ndom;
  int req;        /* model index of the VM whose request runs; -1: none */
  bool granted;   /* do_balloon returned OK: the domain is being built */
  unsigned niter; /* do_balloon iterations */
  double ring[QM_CHECK_PERIOD]; /* free memory, CHECK_PERIOD iterations ago */
  bool failed[SIM_MAX_VMS];     /* model index: its request failed */
  bool queued;                  /* meminfo writes waited for the lock */
} qm_state_t;

static void *qubes_create(const sim_scenario_t *scn) {
  qm_state_t *s = calloc(1, sizeof(*s));
  if (s)
    s->req = -1;
  return s;
}

static void qubes_free(void *st) { free(st); }

static double qm_used(const mb_domain_t *d) {
  double tot = field(d, MB_F_MEMTOTAL), fr = field(d, MB_F_MEMFREE);
  if (tot < 0 || fr < 0)
    return -1;
  double used = tot - fr - fmax(field(d, MB_F_CACHED), 0) -
                fmax(field(d, MB_F_BUFFERS), 0);
  double stt = field(d, MB_F_SWAPTOTAL), sf = field(d, MB_F_SWAPFREE);
  if (stt >= 0 && sf >= 0 && stt >= sf)
    used += stt - sf;
  return fmax(used, 0);
}

static double qm_pref(double used, double mx) {
  return fmax(fmin(used * QM_CACHE_FACTOR, mx), QM_MIN_PREF_KIB);
}

static double qm_actual(const mb_domain_t *d) {
  return fmax((double)d->current_kib, (double)d->target_kib);
}

/* Xen's free memory as qmemman counts it (get_free_xen_mem). */
static double qm_xenfree(const mb_host_t *h, const mb_domain_t *d, size_t n) {
  double unreached = 0;
  for (size_t i = 0; i < n; i++)
    unreached += fmax(0, (double)d[i].target_kib - (double)d[i].current_kib);
  return (double)h->free_kib - unreached;
}

/* do_balance: targets in t (left as they are when it makes none). */
static void qm_balance(qm_dom_t *qd, const mb_host_t *h, const mb_domain_t *d,
                       size_t n, uint64_t *t) {
  double pref[SIM_MAX_VMS], act[SIM_MAX_VMS], tgt[SIM_MAX_VMS];
  bool in[SIM_MAX_VMS];
  double xenfree = qm_xenfree(h, d, n);
  double avail_free = xenfree - QM_FREE_LEFT_KIB;
  double need_sum = 0, pref_sum = 0, pref_acc = 0;
  for (size_t i = 0; i < n; i++) {
    double used = qm_used(&d[i]);
    in[i] = used >= 0;
    if (!in[i])
      continue;
    pref[i] = qm_pref(used, (double)d[i].max_kib);
    act[i] = qm_actual(&d[i]);
    tgt[i] = -1;
    /* clear_outdated_error_markers */
    if (act[i] <= (double)d[i].target_kib + QM_FREE_LEFT_KIB / 2 ||
        act[i] < pref[i])
      qd[i].no_progress = false;
    if (qd[i].no_progress) {
      in[i] = false;
      continue;
    }
    double need = pref[i] - act[i];
    if (!(need < 0 || act[i] >= (double)d[i].max_kib))
      pref_acc += pref[i];
    need_sum += need;
    pref_sum += pref[i];
  }
  double total_avail = avail_free - need_sum;
  if (total_avail > 0 && pref_sum > 0) {
    double left = 0;
    size_t acceptors = 0;
    for (size_t i = 0; i < n; i++) {
      if (!in[i])
        continue;
      double v = 0.999 * (pref[i] + pref[i] / pref_sum * total_avail);
      if (v > (double)d[i].max_kib) {
        left += v - (double)d[i].max_kib;
        v = (double)d[i].max_kib;
      } else {
        acceptors++;
      }
      tgt[i] = v;
    }
    while (left > 0 && acceptors > 0) {
      double nleft = 0;
      size_t nacc = acceptors;
      for (size_t i = 0; i < n; i++) {
        if (!in[i] || tgt[i] >= (double)d[i].max_kib)
          continue;
        double bonus = floor(0.999 * left / (double)acceptors);
        if (tgt[i] + bonus >= (double)d[i].max_kib) {
          nleft += tgt[i] + bonus - (double)d[i].max_kib;
          tgt[i] = (double)d[i].max_kib;
          nacc--;
        } else {
          tgt[i] += bonus;
        }
      }
      if (nleft >= left)
        break; /* rounding: nothing more to place */
      left = nleft;
      acceptors = nacc;
    }
  } else {
    double squeezed = avail_free;
    for (size_t i = 0; i < n; i++) {
      if (!in[i])
        continue;
      double need = pref[i] - act[i];
      bool donor = need < 0 || act[i] >= (double)d[i].max_kib;
      if (donor && -need >= 10 * MIB) {
        squeezed += -need;
        tgt[i] = pref[i];
      }
    }
    if (squeezed >= 0 && pref_acc > 0)
      for (size_t i = 0; i < n; i++) {
        double need = in[i] ? pref[i] - act[i] : 0;
        if (!in[i] || need < 0 || act[i] >= (double)d[i].max_kib)
          continue;
        tgt[i] = fmin(0.999 * (act[i] + pref[i] / pref_acc * squeezed),
                      (double)d[i].max_kib);
      }
  }
  /* is_balance_req_significant */
  bool significant = QM_FREE_LEFT_KIB - xenfree > 15 * MIB;
  double moved = 0;
  for (size_t i = 0; i < n && !significant; i++) {
    if (!in[i] || tgt[i] < 0)
      continue;
    double last = (double)d[i].target_kib, change = tgt[i] - last;
    moved += fabs(change);
    if (last > 0 && last < pref[i] && change > 15 * MIB)
      significant = true;
  }
  if (!significant && moved + fabs(xenfree - QM_FREE_LEFT_KIB) <= 150 * MIB)
    return;
  for (size_t i = 0; i < n; i++)
    if (in[i] && tgt[i] >= 0)
      t[i] = to_kib(tgt[i]);
}

/* One iteration of do_balloon for mem_kib: 0 on going on or granted
 * (s->granted), -1 on failure. */
static int qm_request_step(qm_state_t *s, qm_dom_t *qd, const mb_host_t *h,
                           const mb_domain_t *d, size_t n, double mem_kib,
                           uint64_t *t) {
  double xenfree = qm_xenfree(h, d, n);
  if (xenfree >= mem_kib + QM_FREE_MIN_KIB) {
    s->granted = true;
    return 0;
  }
  unsigned slot = s->niter % QM_CHECK_PERIOD;
  if (s->niter >= QM_CHECK_PERIOD &&
      xenfree < s->ring[slot] + QM_CHECK_DELTA_KIB)
    return -1; /* less than 100 MB/s over the last 3 s */
  s->ring[slot] = xenfree;
  for (size_t i = 0; i < n; i++)
    if (qd[i].memset && qd[i].prev_actual == qm_actual(&d[i]))
      qd[i].no_progress = true;
  /* algo.py balloon() */
  double ask = mem_kib + QM_FREE_LEFT_KIB - xenfree, avail = 0;
  double excess[SIM_MAX_VMS];
  for (size_t i = 0; i < n; i++) {
    excess[i] = 0;
    double used = qm_used(&d[i]);
    if (used < 0 || qd[i].no_progress)
      continue;
    double need = qm_pref(used, (double)d[i].max_kib) - qm_actual(&d[i]);
    if (need < 0) {
      excess[i] = -need;
      avail += -need;
    }
  }
  if (avail < ask)
    return -1; /* the donors cannot give it */
  for (size_t i = 0; i < n; i++) {
    qd[i].memset = excess[i] > 0;
    if (!qd[i].memset)
      continue;
    double act = qm_actual(&d[i]);
    qd[i].prev_actual = act;
    t[i] = to_kib(act - excess[i] * ask / avail * QM_REQ_SAFETY);
  }
  s->niter++;
  return 0;
}

/* The next VM due to start whose request has not failed, earliest due
 * first; -1 when none. */
static int qm_next_request(const qm_state_t *s, const sim_model_t *m) {
  int best = -1;
  for (size_t i = 0; i < m->scn->nvms && i < SIM_MAX_VMS; i++) {
    const sim_vm_spec_t *vs = &m->scn->vm[i];
    if (m->vm[i].ever || m->t < vs->start_s || s->failed[i])
      continue;
    if (best < 0 || vs->start_s < m->scn->vm[best].start_s)
      best = (int)i;
  }
  return best;
}

static int qubes_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *h,
                        const mb_domain_t *d, size_t n, uint64_t *t) {
  qm_state_t *s = st;
  qm_dom_t qd[SIM_MAX_VMS];
  if (n > SIM_MAX_VMS)
    return -1;
  /* per-domain state, by domid; what happened since the last call */
  bool changed = n != s->ndom, written = false;
  for (size_t i = 0; i < n; i++) {
    t[i] = d[i].target_kib;
    size_t k = 0;
    while (k < s->ndom && s->dom[k].domid != d[i].domid)
      k++;
    if (k < s->ndom) {
      qd[i] = s->dom[k];
    } else {
      memset(&qd[i], 0, sizeof(qd[i]));
      qd[i].domid = d[i].domid;
      changed = true;
    }
    if (d[i].has_sample && (!qd[i].seen || qd[i].seq != d[i].sample.seq)) {
      written = true;
      qd[i].seen = true;
      qd[i].seq = d[i].sample.seq;
    }
  }
  const sim_model_t *m = ctx->boot_requests ? ctx->model : NULL;
  bool balance = changed || written;
  int rc = 0;
  if (s->req >= 0 && m && m->vm[s->req].ever) {
    /* the domain is built: qubesd lets go, the lock is released and the
     * watches that waited balance */
    s->req = -1;
    balance = true;
  } else if (s->req < 0 && m) {
    s->req = qm_next_request(s, m);
    if (s->req >= 0) {
      s->granted = false;
      s->niter = 0;
      for (size_t i = 0; i < n; i++)
        qd[i].no_progress = qd[i].memset = false;
    }
  }
  if (s->req >= 0) {
    if (balance)
      s->queued = true; /* waits for GLOBAL_LOCK */
    double mem_kib = (double)m->scn->vm[s->req].mem_kib;
    /* granted, but another VM due took the memory first (the simulated
     * toolstack boots any VM whose memory is free; qubesd would not):
     * ask again */
    if (s->granted && qm_xenfree(h, d, n) < mem_kib + QM_FREE_MIN_KIB) {
      s->granted = false;
      s->niter = 0;
    }
    if (s->granted) {
      rc = 1;
    } else if (qm_request_step(s, qd, h, d, n, mem_kib, t) < 0) {
      /* the request failed: the lock is released */
      s->failed[s->req] = true;
      s->req = -1;
      if (s->queued)
        qm_balance(qd, h, d, n, t);
      s->queued = false;
    }
  } else if (balance || s->queued) {
    qm_balance(qd, h, d, n, t);
    s->queued = false;
  } else {
    rc = 1;
  }
  memcpy(s->dom, qd, n * sizeof(qd[0]));
  s->ndom = n;
  return rc;
}

const sim_policy_t sim_base_qubes = {
    .name = "qubes",
    .desc = "Qubes qmemman (pref 1.3 x used, donors/acceptors), on each "
            "meminfo write; frees a starting VM's memory (request_mem)",
    .interval_s = -1,
    .urgent = true,
    .boot_requests = true,
    .request_poll_s = QM_BALLOON_DELAY_S,
    .domain_watch = true,
    .agent = {.publish_s = 1e9,
              .read_s = 0,
              .poll_s = 0.1,
              .urgent_min_s = -1,
              .urgent_pps = 1e12,
              .change_kib = 30000},
    .create = qubes_create,
    .destroy = qubes_free,
    .decide = qubes_decide};
