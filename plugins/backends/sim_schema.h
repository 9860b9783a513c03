/*
 * Where the simulated hypervisor lives in xenstore (plugins/SCHEMA.md
 * section 4): written by the simulator's live mode (sim/live.c), the demo
 * and the benchmarks, read by the sim backend (backend_sim.c). One
 * definition, so writer and reader cannot drift apart.
 */
#ifndef MEMBAL_SIM_SCHEMA_H
#define MEMBAL_SIM_SCHEMA_H

#define MB_SIM_ROOT "/tool/membal-sim" /* host, dom/<domid>, time */

#endif
