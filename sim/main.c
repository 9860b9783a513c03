/*
 * membal-sim: the host simulator.
 *
 *   membal-sim fast --scenario F [--policy P] [--seed N] [--csv FILE]
 *       simulated time, policy in-process; prints the run's metrics
 *   membal-sim live --scenario F --xenstore [--duration S] [--speed X]
 *                   [--seed N] [--csv FILE]
 *       real time, serving the sim backend's schema in a xenstored
 *       (XENSTORED_PATH); the real collectd pipeline decides
 *   membal-sim check --scenario F     parse and validate a scenario
 *   membal-sim policies               list the policies
 */
#include "live.h"
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: membal-sim fast --scenario FILE [--policy NAME] [--seed N] "
          "[--csv FILE]\n"
          "       membal-sim live --scenario FILE --xenstore [--duration S] "
          "[--speed X] [--seed N] [--csv FILE]\n"
          "       membal-sim check --scenario FILE\n"
          "       membal-sim policies\n");
}

static int parse_double(const char *opt, const char *s, double lo, double hi,
                        double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !(v >= lo && v <= hi)) {
    fprintf(stderr, "membal-sim: %s: '%s' is not a number in [%g, %g]\n", opt,
            s, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

static void csv_obs(void *arg, const sim_model_t *m) { sim_csv_row(arg, m); }

static void print_result(const sim_scenario_t *scn, const sim_policy_t *pol,
                         const sim_result_t *r) {
  printf("scenario %s policy %s\n", scn->name, pol->name);
  printf("swap_io_pages %.0f (in %.0f out %.0f)\n", r->swap_pages,
         r->swapin_pages, r->swapout_pages);
  printf("slowdown_mean %.3f\nslowdown_p99 %.3f\n", r->slowdown_mean,
         r->slowdown_p99);
  printf("disk_resp_ms %.2f\n", r->disk_resp_ms);
  if (r->diskvm_iops_free > 0)
    printf("diskvm_iops %.1f of %.1f alone (%.1f %%)\n", r->diskvm_iops,
           r->diskvm_iops_free, 100.0 * r->diskvm_iops / r->diskvm_iops_free);
  printf("idle_mib %.0f\nballoon_changes %llu\nrounds %llu\n", r->idle_mib,
         (unsigned long long)r->balloon_changes, (unsigned long long)r->rounds);
  printf("reaction_cover_max_s %.1f\nreaction_cover_mean_s %.1f\n"
         "reaction_decide_max_s %.1f\nreaction_events %u\n",
         r->react_cover_max_s, r->react_cover_mean_s, r->react_decide_max_s,
         r->react_events);
  printf("boot_wait_s %.1f\nboot_failed %llu\n", r->boot_wait_s,
         (unsigned long long)r->boot_failed);
  printf("oom_mib %llu\nclamped_targets %llu\n", (unsigned long long)r->oom_mib,
         (unsigned long long)r->clamped);
}

int main(int argc, char **argv) {
  const char *mode, *scn_path = NULL, *pol_name = "cagma", *csv = NULL;
  double seed = -1, duration = 0, speed = 1;
  bool xenstore = false;
  char err[512];
  int rc = 1;
  sim_scenario_t *scn = NULL; /* owned */
  FILE *csvf = NULL;          /* owned */

  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  mode = argv[1];
  if (!strcmp(mode, "-h") || !strcmp(mode, "--help")) {
    usage(stdout);
    return 0;
  }
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--xenstore")) {
      xenstore = true;
      continue;
    }
    if (!v) {
      fprintf(stderr, "membal-sim: %s needs a value\n", o);
      return 2;
    }
    i++;
    if (!strcmp(o, "--scenario"))
      scn_path = v;
    else if (!strcmp(o, "--policy"))
      pol_name = v;
    else if (!strcmp(o, "--csv"))
      csv = v;
    else if (!strcmp(o, "--seed")) {
      if (parse_double(o, v, 0, 4e9, &seed))
        return 2;
    } else if (!strcmp(o, "--duration")) {
      if (parse_double(o, v, 0.1, 1e7, &duration))
        return 2;
    } else if (!strcmp(o, "--speed")) {
      if (parse_double(o, v, 0.01, 1000, &speed))
        return 2;
    } else {
      fprintf(stderr, "membal-sim: unknown option %s\n", o);
      usage(stderr);
      return 2;
    }
  }

  if (!strcmp(mode, "policies")) {
    for (size_t i = 0; sim_policies[i]; i++)
      printf("%-12s %s\n", sim_policies[i]->name, sim_policies[i]->desc);
    return 0;
  }
  if (!scn_path) {
    fprintf(stderr, "membal-sim: --scenario is required\n");
    return 2;
  }
  scn = sim_scenario_load(scn_path, err, sizeof(err));
  if (!scn) {
    fprintf(stderr, "membal-sim: %s\n", err);
    return 1;
  }
  if (seed >= 0)
    scn->seed = (uint64_t)seed;
  if (duration > 0)
    scn->duration_s = duration;
  if (csv) {
    csvf = fopen(csv, "w");
    if (!csvf) {
      fprintf(stderr, "membal-sim: %s: %s\n", csv, strerror(errno));
      goto out;
    }
    sim_csv_header(csvf, scn);
  }

  if (!strcmp(mode, "check")) {
    printf("%s: ok (%zu VMs, %.0f s)\n", scn->name, scn->nvms, scn->duration_s);
    rc = 0;
  } else if (!strcmp(mode, "fast")) {
    const sim_policy_t *pol = sim_policy_find(pol_name);
    sim_result_t res;
    if (!pol) {
      fprintf(stderr, "membal-sim: unknown policy '%s' (membal-sim policies)\n",
              pol_name);
      goto out;
    }
    if (sim_run(scn, pol, scn->seed, csvf ? csv_obs : NULL, csvf, &res, err,
                sizeof(err))) {
      fprintf(stderr, "membal-sim: %s\n", err);
      goto out;
    }
    print_result(scn, pol, &res);
    rc = 0;
  } else if (!strcmp(mode, "live")) {
#ifdef SIM_HAVE_XENSTORE
    if (!xenstore) {
      fprintf(stderr, "membal-sim: live mode serves xenstore: pass "
                      "--xenstore (XENSTORED_PATH selects the daemon)\n");
      goto out;
    }
    rc = sim_live_run(scn, speed, csvf) ? 1 : 0;
#else
    fprintf(stderr, "membal-sim: built without libxenstore: no live mode\n");
#endif
  } else {
    fprintf(stderr, "membal-sim: unknown mode '%s'\n", mode);
    usage(stderr);
    rc = 2;
  }
out:
  if (csvf)
    fclose(csvf);
  free(scn);
  return rc;
}
