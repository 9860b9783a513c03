/*
 * membal host simulator: one model of a host (sim/model.c), scenarios
 * (sim/scenario.c), the policies it can run (membal's, the baselines, the
 * oracle: sim/policies.c, sim/baselines.c, sim/oracle.c) and the fast-mode
 * runner with its metrics (sim/run.c). Live mode (sim/live.c) drives the
 * same model in real time against a xenstored. All memory figures KiB.
 */
#ifndef MEMBAL_SIM_H
#define MEMBAL_SIM_H

#include "membal_policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_MAX_VMS 64
#define SIM_MAX_POINTS 128
#define SIM_PAGE_KIB 4.0

/* ---- scenario --------------------------------------------------------- */

typedef enum {
  SIM_TR_WS,        /* anonymous working set, KiB */
  SIM_TR_CACHE,     /* file-cache appetite, KiB */
  SIM_TR_IOPS,      /* own disk I/O demand, I/O per second */
  SIM_TR_INTENSITY, /* working-set accesses per second at full speed */
  SIM_TR_COLD,      /* cold anonymous memory, KiB (else cold_share) */
  SIM_TR_COUNT
} sim_trace_kind_t;

/* Piecewise-linear in time; constant before the first and after the last
 * point. */
typedef struct {
  size_t n;
  double t[SIM_MAX_POINTS];
  double v[SIM_MAX_POINTS];
} sim_trace_t;

typedef struct {
  char name[MB_NAME_LEN];
  uint32_t domid;
  uint64_t mem_kib;  /* boot memory */
  uint64_t min_kib;  /* floor given to policies (0 = policy's own) */
  uint64_t max_kib;  /* maximum */
  uint64_t base_kib; /* kernel + system daemons: never reclaimable */
  uint64_t swap_kib; /* guest swap partition on the shared disk */
  uint32_t weight;
  double commit_factor; /* Committed_AS = (ws + daemons) * commit_factor */
  double file_rate;     /* file page reads/s at full speed; misses of the
                           page cache go to the shared disk */
  double queue_depth;   /* outstanding I/Os of its own disk I/O */
  double noise;         /* relative jitter of ws, new value every second */
  double cold_share;    /* share of its anonymous memory outside the working
                           set, touched rarely (a JVM's old heap) */
  bool fixed;           /* not managed (a static hog): reserve for policies */
  double start_s;       /* boots at (0 = at start) */
  double stop_s;        /* destroyed at (< 0: never) */
  sim_trace_t tr[SIM_TR_COUNT];
} sim_vm_spec_t;

typedef struct {
  char name[64];
  char title[160];
  double duration_s;
  double interval_s;     /* collection interval (guest publish + policy) */
  double delay_s;        /* guest sample to policy: pipeline delay */
  double urgent_check_s; /* guest checks swap counters this often (0: off) */
  double urgent_pps;     /* swap pages/s that make the guest publish early */
  double urgent_min_s;   /* at most one urgent record per (guestmem: 1 s) */
  double dt_s;           /* model step */
  uint64_t total_kib;    /* host physical memory */
  uint64_t reserve_kib;  /* dom0 + hypervisor */
  double disk_iops;      /* service rate of the shared swap disk */
  double shrink_kibps;   /* balloon speeds */
  double grow_kibps;
  uint64_t seed;
  size_t nvms;
  sim_vm_spec_t vm[SIM_MAX_VMS];
} sim_scenario_t;

/* Parses a scenario (format in sim/README.md). Returns a heap scenario or
 * NULL with err naming the line. */
sim_scenario_t *sim_scenario_parse(const char *text, const char *origin,
                                   char *err, size_t errlen);
sim_scenario_t *sim_scenario_load(const char *path, char *err, size_t errlen);
double sim_trace_at(const sim_trace_t *tr, double t);
/* max of the trace over [t0, t1] */
double sim_trace_max(const sim_trace_t *tr, double t0, double t1);

/* ---- model ------------------------------------------------------------ */

typedef struct {
  bool present; /* booted and not destroyed */
  bool ever;    /* has booted */
  double current_kib, target_kib;
  double anon_res_kib; /* working set resident */
  double swapped_kib;  /* working set in swap */
  double cache_kib;
  double cold_res_kib;      /* cold anonymous memory resident */
  double cold_swapped_kib;  /* cold anonymous memory in swap */
  double cold_lost_kib;     /* cold memory the OOM killer took */
  double cache_evicted_kib; /* page cache squeezed out and not yet back */
  /* workload now */
  double ws_kib, cache_want_kib, iops_want, intensity;
  /* vmstat counters */
  double pswpin, pswpout, pgmajfault, pgfault;
  double workingset_refault; /* file pages read again after eviction */
  /* memory pressure stall, as /proc/pressure/memory would count it:
   * "some" = share of time the workload waited on memory (faults, file
   * misses, reclaim), "full" = share all its tasks did (reclaim stalls) */
  double psi_some_total_us, psi_full_total_us;
  double psi_some_avg10, psi_full_avg10; /* percent, 10 s decay */
  uint64_t oom_kills; /* times the guest ran out of swap and memory */
  double last_oom_s;
  /* last step */
  double progress;   /* 1 = unconstrained speed */
  double fault_ps;   /* swap-in faults per second */
  double swapout_ps; /* swap-out pages per second */
  double iops_done;  /* own disk I/O achieved per second */
  double iops_free;  /* own disk I/O it would achieve alone */
  double work;       /* integral of progress */
  double booted_at;
  uint64_t oom_kib;   /* working set lost because swap was full */
  double alloc_ratio; /* growth granted / wanted this step (reclaim) */
  double boot_wait_s; /* waited for the toolstack to free its memory */
  /* guest publishing */
  uint64_t seq;
  double last_pub_s;
  double swap_at_pub; /* pswpin + pswpout when last published */
  bool urgent_pending;
  double last_poll_s;    /* the agent's last check of its counters */
  double swap_at_poll;   /* pswpin + pswpout then */
  double majflt_at_poll; /* pgmajfault then */
  double last_urgent_s;  /* last urgent record */
  double stall_mark_us;  /* psi_some_total_us when the PSI window began */
  double stall_mark_s;   /* when it began */
  double used_at_pub;    /* qmemman's "used" figure when last published */
} sim_vm_t;

typedef struct {
  const sim_scenario_t *scn;
  double t;
  sim_vm_t vm[SIM_MAX_VMS];
  double disk_resp_s; /* response time of the shared disk, last step */
  double disk_util;
  double wb_backlog_io; /* swap-out writes queued for the disk, I/Os */
  uint64_t rng_seed;
} sim_model_t;

void sim_model_init(sim_model_t *m, const sim_scenario_t *scn, uint64_t seed);
/* Advances by dt (boots/destroys VMs, moves balloons, swaps, disk). */
void sim_model_step(sim_model_t *m, double dt);
/* Working set of VM i at time t (trace + deterministic noise). */
double sim_model_ws_at(const sim_model_t *m, size_t i, double t);
/* Cold anonymous memory of VM i at time t (share of anon outside ws). */
double sim_model_cold_at(const sim_model_t *m, size_t i, double t);
/* Memory the VM needs to run without swapping at time t: ws + base. */
double sim_model_need_at(const sim_model_t *m, size_t i, double t);
/* Host free memory: total - reserve - sum of current. */
double sim_model_host_free(const sim_model_t *m);
/* Memory the toolstack holds back for domains waiting to boot. */
double sim_model_claims_kib(const sim_model_t *m);
/* Lowest size the balloon can take the guest to. */
double sim_model_balloon_floor(const sim_model_t *m, size_t i);
/* What the guest's /proc/meminfo and /proc/vmstat say now. */
void sim_model_sample(const sim_model_t *m, size_t i, mb_sample_t *out);
/* Sets a target, clamping it to [floor, max]. Returns 1 when clamped. */
int sim_model_set_target(sim_model_t *m, size_t i, double target_kib);
/* The guest agent and the dom0 collector a policy runs with: how often
 * guests publish, when dom0 reads, and what makes a guest publish early. */
typedef struct {
  double publish_s;    /* guest publishes every (0: scenario interval) */
  double read_s;       /* dom0 reads records every (0: at once after
                          the scenario's delay; urgent ones always are) */
  double poll_s;       /* guest checks its counters every (0: scenario's
                          urgent_check; < 0: never) */
  double urgent_min_s; /* at most one urgent record per (0: scenario's
                          urgent_min; < 0: no limit) */
  double urgent_pps;   /* swap pages/s that make it urgent (0: scenario's) */
  double urgent_majflt_ps; /* major faults/s that do (0: not checked) */
  double change_kib;       /* publish when "used" moved more (0: not checked;
                              Qubes' meminfo-writer) */
  /* guestmem's PSI trigger (kernels >= 5.2, which the model's guests are:
   * they report PSI): publish when "some" stall reaches stall_us within a
   * stall_window_s window, instead of polling the counters (poll_s is then
   * not used). 0: no trigger (vmstat polling). */
  double stall_us;
  double stall_window_s;
} sim_agent_t;

/* The agent with every 0 replaced by the scenario's value. */
void sim_agent_resolve(const sim_scenario_t *scn, const sim_agent_t *in,
                       sim_agent_t *out);
/* Guest-side publishing: returns true when VM i publishes at this step
 * (interval elapsed, or urgent activity); *urgent set accordingly.
 * sim_model_publish_due uses the scenario's agent. */
bool sim_model_publish_due_agent(sim_model_t *m, size_t i,
                                 const sim_agent_t *ag, bool *urgent);
bool sim_model_publish_due(sim_model_t *m, size_t i, bool *urgent);

/* ---- policies --------------------------------------------------------- */

typedef struct {
  const sim_model_t *model; /* the oracle, and membal for boots */
  double t;
  bool boot_requests; /* the policy's boot_requests */
} sim_ctx_t;

typedef struct {
  const char *name;
  const char *desc;
  double interval_s; /* 0: scenario interval; < 0: no periodic rounds */
  bool urgent;       /* also runs when a guest publishes an urgent record */
  /* membal's thread: an urgent round at least urgent_gap_s after the
   * previous round (UrgentInterval; the urgent samples meanwhile wait for
   * it), and the next periodic round interval_s after the last round of
   * any kind, not on a fixed grid. 0: every urgent record at once, a fixed
   * grid (the baselines'). */
  double urgent_gap_s;
  sim_agent_t agent; /* guest agent and collector (zeros: scenario's) */
  bool guest_local;  /* runs inside each guest: sees its sample at once */
  bool no_delay;     /* sees the truth at once (oracle) */
  /* The toolstack asks it for a booting VM's memory, and it balances at
   * once: qmemman's request_memory (the claim counts in the round's
   * reserve), or `membal reserve` from membal-xl-create and the libvirt
   * hook (boot_reserve: the round's reservations, policy/ops.h). The
   * others learn of a VM once it runs. */
  bool boot_requests;
  bool boot_reserve;
  /* While a VM due to start waits (a boot request in progress), a round
   * every request_poll_s at least: qmemman's do_balloon loop, which sets
   * the donors' targets again every BALLOON_DELAY (0.1 s). 0: none. */
  double request_poll_s;
  /* A round when a domain appears or goes: qmemman's @introduceDomain and
   * @releaseDomain watches, which balance at once. */
  bool domain_watch;
  void *(*create)(const sim_scenario_t *scn);
  /* instead of create when set: a policy built from arg (--config rows) */
  void *(*create_arg)(const sim_scenario_t *scn, const void *arg);
  const void *arg;
  void (*destroy)(void *st);
  /* targets[i] for doms[i]; return < 0 on error, 1 when the call was no
   * round (nothing to decide: targets left as they are, not counted) */
  int (*decide)(void *st, const sim_ctx_t *ctx, const mb_host_t *host,
                const mb_domain_t *doms, size_t n, uint64_t *targets);
} sim_policy_t;

/* membal's shipped cadence (sim/policies.c says where each figure comes
 * from): guest records every 2 s, read every 2 s, urgent record on
 * guestmem's PSI trigger (150 ms of stall in 1 s), at most one urgent record
 * per second; a round every 2 s. */
#define SIM_MEMBAL_PERIOD_S 2.0
#define SIM_MEMBAL_INTERVAL_S 2.0
/* membal's UrgentInterval default (plugins/membal.c) */
#define SIM_MEMBAL_URGENT_GAP_S 1.0
#define SIM_MEMBAL_AGENT                                                       \
  {                                                                            \
    .publish_s = SIM_MEMBAL_INTERVAL_S, .read_s = SIM_MEMBAL_INTERVAL_S,       \
    .poll_s = 0.2, .urgent_min_s = 1, .urgent_pps = 64,                        \
    .urgent_majflt_ps = 256, .stall_us = 150000, .stall_window_s = 1           \
  }
/* membal's policy from a given config (arg: const mb_config_t *), and its
 * decide; for the rows membal-bench --config adds. */
void *sim_membal_create_arg(const sim_scenario_t *scn, const void *arg);
int sim_membal_decide(void *st, const sim_ctx_t *ctx, const mb_host_t *host,
                      const mb_domain_t *doms, size_t n, uint64_t *targets);
void sim_membal_destroy(void *st);

/* All policies in benchmark order; NULL-terminated. */
extern const sim_policy_t *const sim_policies[];
const sim_policy_t *sim_policy_find(const char *name);

extern const sim_policy_t sim_policy_cagma, sim_policy_tax,
    sim_policy_selfballoon;
extern const sim_policy_t sim_base_static, sim_base_xenballoond, sim_base_xenmm,
    sim_base_xenmm075, sim_base_mom, sim_base_proxmox, sim_base_qubes;
extern const sim_policy_t sim_policy_oracle;

/* ---- the oracle's family of rules ---------------------------------------- */

typedef enum {
  SIM_ORACLE_COST,   /* serve the highest fault cost per KiB first */
  SIM_ORACLE_HOLDER, /* serve who holds most first (fewest moves) */
  SIM_ORACLE_SMALL   /* serve the smallest need first */
} sim_oracle_order_t;

typedef struct {
  double lookahead_s; /* covers the largest need within this horizon */
  double margin_frac; /* over the need */
  sim_oracle_order_t order;
  bool boot_reserve; /* hold memory for VMs booting within the lookahead */
  bool keep_cold;    /* count cold anonymous memory as needed (else it is
                        left to swap) */
} sim_oracle_params_t;

/* Runs the first max_rules rules of the family (48 in all, 96 when a VM
 * has cold memory: each rule also keeping cold memory resident; the first
 * is the plain oracle's) each on its own model to the end of the scenario and
 * keeps the best (fewest VMs that never booted, then OOM kills, then swap
 * pages). Bounded by max_rules runs; deterministic. */
#define SIM_ORACLE_RULES 96
struct sim_result;
int sim_oracle_search(const sim_scenario_t *scn, uint64_t seed,
                      unsigned max_rules, sim_oracle_params_t *best,
                      struct sim_result *res, unsigned *tried, char *err,
                      size_t errlen);
const char *sim_oracle_order_name(sim_oracle_order_t o);
/* The oracle with given parameters (arg: const sim_oracle_params_t *). */
void *sim_oracle_create_arg(const sim_scenario_t *scn, const void *arg);

/* ---- fast-mode runner ------------------------------------------------- */

typedef struct sim_result {
  double swap_pages; /* pswpin + pswpout, all VMs */
  double swapin_pages, swapout_pages;
  double slowdown_mean;    /* mean over active VMs of elapsed / work */
  double slowdown_p99;     /* p99 of per-second slowdown over (VM, second) */
  double disk_resp_ms;     /* mean response time of the shared disk */
  double diskvm_iops;      /* mean achieved I/O per s of VMs with own I/O */
  double diskvm_iops_free; /* same, had each been alone on the disk */
  double idle_mib;         /* mean of the sum of guests' MemFree */
  uint64_t balloon_changes;
  double react_cover_max_s; /* longest time demand > memory */
  double react_cover_mean_s;
  double react_decide_max_s; /* longest time demand > target */
  unsigned react_events;
  uint64_t rounds;
  double rounds_per_s;
  double balloon_mib_moved; /* sum of |change of memory| of managed VMs */
  double psi_some_pct;      /* mean over VMs of the "some" stall share */
  double psi_full_pct;
  double refault_pages; /* workingset refaults, all VMs */
  uint64_t oom_kills;
  uint64_t boot_failed; /* VMs due to start that never did */
  uint64_t oom_mib;
  uint64_t clamped;   /* targets the model had to clamp */
  double boot_wait_s; /* sum over VMs of the time waiting to boot */
} sim_result_t;

/* Per-second observer (CSV, plots). */
typedef void (*sim_observer_t)(void *arg, const sim_model_t *m);

int sim_run(const sim_scenario_t *scn, const sim_policy_t *pol, uint64_t seed,
            sim_observer_t obs, void *obs_arg, sim_result_t *res, char *err,
            size_t errlen);

/* CSV of per-second state: header + rows. */
void sim_csv_header(FILE *f, const sim_scenario_t *scn);
void sim_csv_row(FILE *f, const sim_model_t *m);

#endif
