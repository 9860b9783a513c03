/*
 * Private to the libvirt backend (plugins/backends/libvirt/) and its
 * white-box tests (tests/backends/): the state the files share and the
 * functions one file calls in another. The backend as a whole is described
 * in backend_libvirt.c; each file says which of its jobs it does:
 *   conn.c     the connection shared by every handle on one URI
 *   seq.c      the per-domain table: synthesised sequence numbers, targets
 *   host.c     host memory, NUMA cells (capabilities XML), a domain's node
 *              binding and its balloon stats period (domain XML)
 *   stats.c    virDomainMemoryStats -> guest sample
 *   domains.c  the domain list and balloon targets
 *   events.c   wait_event: balloon statistics polled for changes
 * Everything here has hidden visibility (membal_backend is built so): the
 * names never leave the plugin that links the backend.
 */
#ifndef MEMBAL_LV_IMPL_H
#define MEMBAL_LV_IMPL_H

#include "backend_impl.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LV_DEFAULT_URI "qemu:///system"
#define LV_DEFAULT_PERIOD_S 5u
#define LV_GUEST_PAGE_KIB 4u
#define LV_FORGET_S 600.0 /* a domain unseen this long is forgotten */
#define LV_POLL_S 1.0     /* wait_event: balloon statistics polled this often */
#define LV_PENDING_MAX 256

/* What the backend remembers of one domain between rounds. */
typedef struct {
  unsigned char uuid[VIR_UUID_BUFLEN];
  uint64_t seq;
  bool have_prev;
  unsigned long long prev[VIR_DOMAIN_MEMORY_STAT_NR];
  uint32_t prev_present; /* bit per stat tag */
  bool period_checked;
  bool name_said; /* an unusable name was logged */
  bool target_known;
  uint64_t target_kib;
  double seen_s; /* monotonic */
} lv_dom_state_t;

/* One libvirt connection per URI shared by every handle of this copy of the
 * backend (vmmem's reader and its watch thread use one connection). Each
 * collectd plugin links its own copy, so vmmem and membal still hold one
 * connection each: the same state with libvirtd, two separate states with
 * the test driver on a host file. Each user holds one libvirt reference. */
typedef struct lv_shared {
  char *uri;          /* owned */
  virConnectPtr conn; /* one reference per user */
  unsigned users;
  bool listed;    /* still in lv_shared_list (false once found dead) */
  bool lost_said; /* its loss was logged (by the first handle to see it) */
  struct lv_shared *next;
} lv_shared_t;

typedef struct {
  unsigned char uuid[VIR_UUID_BUFLEN];
  uint64_t seq;
} lv_seen_t;

typedef struct {
  char *uri;           /* owned */
  lv_shared_t *shared; /* one user's share; NULL while disconnected */
  virConnectPtr conn;  /* shared->conn, or NULL */
  bool was_connected;  /* for the once-per-change log lines */
  unsigned period_s;
  void (*log)(void *, int, const char *);
  void *log_ctx;
  uint64_t requests;
  /* wait_event: domains whose statistics changed, not yet reported */
  uint32_t pending[LV_PENDING_MAX];
  size_t npending;
  double next_poll_s; /* monotonic */
  /* wait_event: the sequence this handle last reported per domain (the
   * domains of the last poll). Per handle, not in the shared table: the
   * reader advancing a sequence first must not hide the change from the
   * waiting thread. */
  lv_seen_t *seen; /* owned */
  size_t nseen;
} lv_priv_t;

/* conn.c: the shared connection and libvirt's errors */
double lv_now_s(void); /* monotonic */
void lv_log(lv_priv_t *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The calling thread's last libvirt error message. */
const char *lv_errmsg(void);
/* A domain that stopped or vanished between listing and querying. */
bool lv_err_is_gone(void);
/* Connects when disconnected (sharing a live connection on the same URI).
 * 0, or -1 (+err). */
int lv_connect(lv_priv_t *p, char *err, size_t errlen);
/* After a failed call: drops the connection when it is dead so that the
 * next call re-opens it (libvirtd restarted). */
void lv_check_conn(lv_priv_t *p);
/* Gives up this handle's share of the connection. dead: the connection
 * was found dead, so no later handle may pick it up. */
void lv_release(lv_priv_t *p, bool dead);
void *lv_open(const mb_backend_opts_t *opts, char *err, size_t errlen);
void lv_close(void *priv);

/* seq.c: the table of lv_dom_state_t, shared by every handle of this copy
 * of the backend: vmmem's reader and its watch thread must agree on a
 * guest's sequence numbers, since membal orders samples by them. */
extern pthread_mutex_t lv_table_lock;
/* Caller holds lv_table_lock. The pointer is valid until it is released.
 * NULL when out of memory. */
lv_dom_state_t *lv_state(const unsigned char *uuid, double now);
/* Advances st->seq when the statistics v (bit per tag in present) differ
 * from the previous read's, or on first sight. Caller holds lv_table_lock. */
void lv_seq_note(lv_dom_state_t *st, const unsigned long long *v,
                 uint32_t present);

/* host.c */
int lv_host_once(void *priv, mb_hostinfo_t *out, char *err, size_t errlen);
/* Parses libvirt's node set syntax ("0-2,5", "^1" excludes) into a mask.
 * Returns 0, or -1 on a syntax error or a node >= MB_MAX_NODES (the caller
 * then treats the domain as unbound). */
int lv_parse_nodeset(const char *s, uint32_t *mask);
uint32_t lv_node_mask(lv_priv_t *p, virDomainPtr dom);
/* True when the domain XML has a virtio balloon whose stats period is 0 or
 * not set. */
bool lv_period_off(const char *xml);
void lv_enable_period(lv_priv_t *p, virDomainPtr dom, const char *name);

/* stats.c: what virDomainMemoryStats gives, as sample fields, and the tags
 * left out with the reason (read by the test only). */
typedef struct {
  int tag;
  mb_field_t field;
} lv_stat_map_t;
extern const lv_stat_map_t lv_stat_map[];
extern const size_t lv_nstat_map;
#define LV_NSTAT_MAP lv_nstat_map
typedef struct {
  int tag;
  const char *why;
} lv_stat_unmapped_t;
extern const lv_stat_unmapped_t lv_stat_unmapped[];
extern const size_t lv_nstat_unmapped;
#define LV_NSTAT_UNMAPPED lv_nstat_unmapped
/* Maps MemoryStats into a sample. Returns the sample status; sample_err
 * says why a sample was rejected. Caller holds lv_table_lock. */
mb_sample_status_t lv_fill_sample(lv_dom_state_t *st,
                                  const virDomainMemoryStatStruct *ms, int nms,
                                  uint64_t max_kib, mb_sample_t *s, char *serr,
                                  size_t serrlen);
int lv_read_stats(lv_priv_t *p, virDomainPtr dom, uint64_t max_kib,
                  mb_sample_t *s, char *serr, size_t serrlen,
                  uint64_t *actual_kib, unsigned char *uuid, uint64_t *seq);

/* domains.c */
int lv_one(lv_priv_t *p, virDomainPtr dom, mb_dominfo_t *d, char *err,
           size_t errlen);
int lv_list_active(lv_priv_t *p, virDomainPtr **doms, char *err, size_t errlen);
int lv_list_once(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                 size_t errlen);
int lv_set_target_once(void *priv, uint32_t domid, uint64_t target_kib,
                       char *err, size_t errlen);

/* events.c */
int lv_wait_event(void *priv, int timeout_ms, uint32_t *domid, char *err,
                  size_t errlen);
int lv_guest(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
             size_t rawlen, char *err, size_t errlen);
int lv_name(void *priv, uint32_t domid, char *name, char *err, size_t errlen);

/* backend_libvirt.c: the calls with one retry on a fresh connection */
int lv_list(void *priv, mb_dominfo_t **out, size_t *n, char *err,
            size_t errlen);

#endif
