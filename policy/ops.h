/*
 * membal's operator requests: holds and reservations, and the one-line
 * request language of the control socket (`membal status|hold|release|
 * reserve|cancel|free`). Pure like the rest of policy/: no I/O, no clock of
 * its own (times are seconds on the caller's clock, which never goes back),
 * no allocation; the tables are bounded.
 *
 * A hold leaves a domain's target alone: the round makes the target in
 * force both its Min and its Max. A reservation keeps memory out of the
 * pool (the round's pending_kib) until the domain it is for is in the
 * hypervisor holding the reserved size, less 1/64 (met), or its time is up
 * (expired).
 */
#ifndef MEMBAL_OPS_H
#define MEMBAL_OPS_H

#include "membal_policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MB_OPS_MAX_HOLDS 256
#define MB_OPS_MAX_RESV 64
/* Longest hold with a duration, and longest reservation: a year, a day. */
#define MB_OPS_HOLD_MAX_S (366 * 86400)
#define MB_OPS_RESV_MAX_S 86400

typedef struct {
  char name[MB_NAME_LEN];
  double until_s; /* 0 = until released */
} mb_hold_t;

typedef struct {
  uint64_t id;            /* >= 1 */
  char name[MB_NAME_LEN]; /* "" = no domain named: held until the time */
  uint64_t kib;
  double until_s;
} mb_resv_t;

typedef struct {
  mb_hold_t holds[MB_OPS_MAX_HOLDS];
  size_t nholds;
  mb_resv_t resv[MB_OPS_MAX_RESV];
  size_t nresv;
  uint64_t next_id;
} mb_ops_t;

void mb_ops_init(mb_ops_t *ops);

typedef enum {
  MB_OP_STATUS,      /* status */
  MB_OP_STATUS_JSON, /* status json */
  MB_OP_FREE,        /* free */
  MB_OP_HOLD,        /* hold NAME [SECONDS] */
  MB_OP_RELEASE,     /* release NAME */
  MB_OP_RESERVE,     /* reserve KIB NAME|- TIMEOUT_S */
  MB_OP_CANCEL       /* cancel ID */
} mb_op_kind_t;

typedef struct {
  mb_op_kind_t kind;
  char name[MB_NAME_LEN]; /* hold, release, reserve ("" for "-") */
  uint64_t kib;           /* reserve */
  uint64_t secs;          /* hold (0 = until released), reserve */
  uint64_t id;            /* cancel */
} mb_op_t;

/* True for requests that change something (logged by the caller). */
bool mb_op_changes(mb_op_kind_t kind);

/* Parses one request line (without '\n'): words separated by blanks. 0, or
 * -1 with err saying what was wrong ("unknown request ...", "\"x y\" is
 * not a domain name", ...). A domain name is 1 to MB_NAME_LEN - 1
 * printable characters without blanks. */
int mb_op_parse(const char *line, mb_op_t *op, char *err, size_t errlen);

/* Holds name (until now_s + secs, or until released when secs is 0);
 * replaces an earlier hold of it. -1 with err when the table is full. */
int mb_ops_hold(mb_ops_t *ops, const char *name, uint64_t secs, double now_s,
                char *err, size_t errlen);
/* -1 with err when name is not held. */
int mb_ops_release(mb_ops_t *ops, const char *name, char *err, size_t errlen);
/* Adds a reservation of kib for name ("" = none) until now_s + secs; its
 * id in *id. -1 with err when the table is full. */
int mb_ops_reserve(mb_ops_t *ops, const char *name, uint64_t kib, uint64_t secs,
                   double now_s, uint64_t *id, char *err, size_t errlen);
/* -1 with err when there is no reservation id. */
int mb_ops_cancel(mb_ops_t *ops, uint64_t id, char *err, size_t errlen);

/* Whether name is held; *until_s (may be NULL): 0 = until released. */
bool mb_ops_held(const mb_ops_t *ops, const char *name, double *until_s);
/* Sum of the reservations in force. */
uint64_t mb_ops_reserved_kib(const mb_ops_t *ops);

/* A reservation that ended: met (its domain appeared with the reserved
 * memory) or expired. */
typedef struct {
  mb_resv_t resv;
  bool met;
} mb_ops_event_t;

/* Ends the holds whose time is up and the reservations whose domain is in
 * doms with current_kib at least the reserved kib less 1/64 (met: a domain
 * still being built is listed before its memory is populated) or whose time
 * is up (expired), those into ev (at most evmax;
 * *nev of them; ends beyond evmax are not reported). Returns what the
 * reservations still in force keep out of the pool: each one's kib less
 * what its domain, listed while being built, holds already (that is in
 * its target). Order of the remaining entries may change. */
uint64_t mb_ops_expire(mb_ops_t *ops, const mb_domain_t *doms, size_t n,
                       double now_s, mb_ops_event_t *ev, size_t evmax,
                       size_t *nev);

#endif
