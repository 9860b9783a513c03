/* Live mode of membal-sim: see live.c. */
#ifndef MEMBAL_SIM_LIVE_H
#define MEMBAL_SIM_LIVE_H

#include "sim.h"

#include <stdio.h>

/* Runs the scenario in real time (speed x) against the xenstored named by
 * XENSTORED_PATH, until the scenario's duration or SIGINT/SIGTERM.
 * csv (may be NULL) gets one row per simulated second. 0 or -1. */
int sim_live_run(const sim_scenario_t *scn, double speed, FILE *csv);

#endif
