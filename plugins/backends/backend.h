/*
 * The one interface between membal's plugins and a hypervisor.
 *
 * Only backend_*.c include libxl / libvirt / xenstore headers. The plugins
 * (vmmem.c, membal.c) see this header and policy/membal_policy.h only.
 * All figures KiB. A backend handle is used by one thread at a time, except
 * mb_backend_wait_event(), which its own thread may block in while another
 * thread uses the handle (implementations keep a separate connection for it).
 *
 * Backends:
 *   "libxl"   real Xen: libxl for domains/memory, libxenstore for guest
 *             records (data/membal/stats, else data/meminfo_*).
 *   "sim"     a simulated hypervisor whose state lives in a (real) xenstored:
 *             see backend_sim.c for the schema; guest records are read
 *             exactly as for libxl.
 *   "libvirt" KVM through libvirt; guest samples from virDomainMemoryStats.
 */
#ifndef MEMBAL_BACKEND_H
#define MEMBAL_BACKEND_H

#include "membal_policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mb_backend mb_backend_t;

typedef struct {
  const char *kind;          /* a name mb_backend_known() accepts */
  const char *xenstore_path; /* NULL: libxenstore's default (env
                                XENSTORED_PATH honoured) */
  const char *uri;           /* libvirt URI; NULL: "qemu:///system" */
  /* Optional sink for a backend's own state-change lines (connection lost
   * or re-established, balloon stats period switched on). level is a
   * syslog level, the values collectd's plugin_log() takes. NULL: dropped.
   * Called from the thread that called into the backend. */
  void (*log)(void *log_ctx, int level, const char *msg);
  void *log_ctx;
  unsigned stats_period_s; /* libvirt: balloon stats period set on domains
                              where it is 0 (off); 0 = 5 s */
  /* mb_backend_list() leaves the guest samples out (sample_status NONE):
   * for a caller that receives them whole from elsewhere (membal gets them
   * from vmmem) and would only discard them. Saves one store read per
   * domain (libxl, sim); libvirt ignores it, its statistics call also gives
   * the balloon's size. */
  bool no_records;
} mb_backend_opts_t;

typedef enum {
  MB_SAMPLE_NONE = 0, /* guest never published anything */
  MB_SAMPLE_OK,       /* sample parsed */
  MB_SAMPLE_BAD,      /* record present but rejected; see sample_err */
} mb_sample_status_t;

typedef struct {
  uint32_t domid;
  char name[MB_NAME_LEN];
  uint64_t current_kib; /* what the domain holds now */
  uint64_t target_kib;  /* balloon target in force */
  uint64_t max_kib;     /* maximum the domain may be given */
  uint32_t node_mask;   /* NUMA nodes bound; 0 = any / unknown */
  mb_sample_status_t sample_status;
  mb_sample_t sample;   /* valid when sample_status == MB_SAMPLE_OK */
  char sample_err[160]; /* why the record was rejected */
} mb_dominfo_t;

typedef struct {
  uint64_t total_kib;
  uint64_t free_kib;
  unsigned nr_nodes; /* 0 when unknown */
  uint64_t node_total_kib[MB_MAX_NODES];
  uint64_t node_free_kib[MB_MAX_NODES];
} mb_hostinfo_t;

/* True when kind names a backend membal knows ("libxl", "sim", "libvirt"),
 * built into this copy or not: what a configuration may say. */
bool mb_backend_known(const char *kind);
/* Writes those names for a message into buf and returns it: libxl, sim or
 * libvirt (quoted: "libxl", "sim" or "libvirt"). MB_BACKEND_KINDS_LEN
 * holds them; a shorter buf gets as many whole names as fit. */
#define MB_BACKEND_KINDS_LEN 64
const char *mb_backend_kinds(char *buf, size_t buflen, bool quoted);

/* Opens a backend. Returns NULL and writes err on failure. Caller closes. */
mb_backend_t *mb_backend_open(const mb_backend_opts_t *opts, char *err,
                              size_t errlen);
void mb_backend_close(mb_backend_t *b); /* NULL ok */

const char *mb_backend_kind(const mb_backend_t *b);

int mb_backend_host(mb_backend_t *b, mb_hostinfo_t *out, char *err,
                    size_t errlen);

/* All running domains including dom0 (domid 0), sorted by domid.
 * *out is allocated: caller frees with free(). Returns 0 or -1 (+err). */
int mb_backend_list(mb_backend_t *b, mb_dominfo_t **out, size_t *n, char *err,
                    size_t errlen);

/* Sets the balloon target of one domain. */
int mb_backend_set_target(mb_backend_t *b, uint32_t domid, uint64_t target_kib,
                          char *err, size_t errlen);

/* Blocks up to timeout_ms for a guest record change. Returns 1 and fills
 * *domid when a record changed, 0 on timeout, -1 on error (caller may
 * reopen). libvirt has no push: its backend polls the balloon statistics
 * (every second) within the timeout and reports a domain whose statistics
 * changed. */
int mb_backend_wait_event(mb_backend_t *b, int timeout_ms, uint32_t *domid,
                          char *err, size_t errlen);

/* Reads one domain's latest guest record: fills out->domid and the sample
 * fields (sample_status, sample, sample_err); name and memory figures are
 * left empty (one read per call: a thread woken for every record of the
 * host asks for the name only when it needs it, mb_backend_name()). raw
 * (may be NULL) receives the record text as published, NUL-terminated and
 * truncated to rawlen - 1 (untrusted). Meant for the thread that waits in
 * mb_backend_wait_event(), on its own handle. Returns 0, or -1 (+err) on
 * store failure or when the backend has no records of its own. libvirt:
 * the balloon statistics; raw is a membal record made of them
 * (mb_record_format). */
int mb_backend_guest(mb_backend_t *b, uint32_t domid, mb_dominfo_t *out,
                     char *raw, size_t rawlen, char *err, size_t errlen);

/* Name of one domain (validated as in mb_backend_list()) into
 * name[MB_NAME_LEN]. 0, or -1 (+err) when the domain is gone, its name is
 * invalid or the backend cannot tell. */
int mb_backend_name(mb_backend_t *b, uint32_t domid, char *name, char *err,
                    size_t errlen);

/* Requests served by the backend's store since open (xenstore reads +
 * directory listings; benchmark figure). */
uint64_t mb_backend_requests(const mb_backend_t *b);

#endif
