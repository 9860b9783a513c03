/*
 * membal's guest sample and the record that carries it: the part of the
 * policy core a guest agent needs (guestmem includes only this header).
 *
 * A guest reads /proc/meminfo, /proc/vmstat and /proc/pressure/memory
 * (mb_meminfo_parse, mb_vmstat_parse, mb_psi_parse) into an mb_sample_t
 * and publishes it as one record (mb_record_format) at data/membal/stats;
 * dom0 parses it back (mb_record_parse) as untrusted input. Rates between
 * two samples (mb_sample_rates) serve both sides. No I/O, no globals, no
 * allocation. All memory figures are KiB. The balancer's API
 * (membal_policy.h) includes this header.
 */
#ifndef MEMBAL_RECORD_H
#define MEMBAL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* xenstore limits a node's value to 2048 bytes; records stay below it. */
#define MB_RECORD_MAX 2048

/* ---------------------------------------------------------------------- */
/* Guest sample                                                           */
/* ---------------------------------------------------------------------- */

/* Fields of a guest sample. meminfo fields are KiB, vmstat fields are
 * monotonically increasing event counts, PSI fields are what
 * /proc/pressure/memory says (mb_field_kind() tells which unit). The record
 * key of a meminfo or vmstat field is the kernel's own name, of a PSI field
 * "psi_<some|full>_<avg10_bp|total_us>" (mb_field_key()). Every field is
 * optional: a KVM guest seen through virtio-balloon stats has no
 * Committed_AS nor Active split, a kernel before 4.20 no PSI, one before 5.9
 * only the single workingset_refault counter (file pages: anon refaults
 * were not tracked). */
typedef enum {
  /* /proc/meminfo (KiB) */
  MB_F_MEMTOTAL,
  MB_F_MEMFREE,
  MB_F_MEMAVAILABLE,
  MB_F_BUFFERS,
  MB_F_CACHED,
  MB_F_SWAPCACHED,
  MB_F_ACTIVE,
  MB_F_INACTIVE,
  MB_F_ACTIVE_ANON,
  MB_F_INACTIVE_ANON,
  MB_F_ACTIVE_FILE,
  MB_F_INACTIVE_FILE,
  MB_F_SWAPTOTAL,
  MB_F_SWAPFREE,
  MB_F_DIRTY,
  MB_F_ANONPAGES,
  MB_F_SHMEM,
  MB_F_SLAB,
  MB_F_SRECLAIMABLE,
  MB_F_SUNRECLAIM,
  MB_F_KERNELSTACK,
  MB_F_PAGETABLES,
  MB_F_COMMITTED_AS,
  /* /proc/vmstat (counts) */
  MB_F_PSWPIN,
  MB_F_PSWPOUT,
  MB_F_PGMAJFAULT,
  MB_F_PGFAULT,
  MB_F_WORKINGSET_REFAULT_ANON, /* >= 5.9 */
  MB_F_WORKINGSET_REFAULT_FILE, /* >= 5.9 */
  MB_F_WORKINGSET_REFAULT,      /* < 5.9: file refaults */
  /* /proc/pressure/memory (>= 4.20): avg10 in basis points (1/100 of a
   * percent, the kernel prints 2 decimals: "12.34" is 1234), total in
   * microseconds of stall since boot (a counter). "some": at least one task
   * stalled on memory; "full": all non-idle tasks did at once. */
  MB_F_PSI_SOME_AVG10,
  MB_F_PSI_SOME_TOTAL,
  MB_F_PSI_FULL_AVG10,
  MB_F_PSI_FULL_TOTAL,
  MB_F_COUNT
} mb_field_t;

#define MB_F_FIRST_VMSTAT MB_F_PSWPIN
#define MB_F_FIRST_PSI MB_F_PSI_SOME_AVG10

/* Unit of a field's value, for whoever dispatches or reads it back. */
typedef enum {
  MB_FK_KIB,   /* meminfo: KiB, a level */
  MB_FK_COUNT, /* vmstat: events since boot, a counter */
  MB_FK_BP,    /* PSI avg10: basis points (0..10000), a level */
  MB_FK_US,    /* PSI total: microseconds since boot, a counter */
} mb_field_kind_t;

/* Kind of field f; MB_FK_COUNT when out of range. */
mb_field_kind_t mb_field_kind(mb_field_t f);

/* Largest PSI avg10 (100.00 %). */
#define MB_PSI_BP_MAX 10000

typedef struct {
  uint64_t v[MB_F_COUNT];
  uint64_t have;      /* bit (1 << field) set when v[field] is present */
  uint64_t seq;       /* guest's record sequence number; 0 = none */
  uint64_t uptime_ms; /* guest uptime when the record was written */
  bool urgent;        /* guest saw memory stall (PSI trigger) or swap
                         activity and published early */
} mb_sample_t;

static inline bool mb_sample_has(const mb_sample_t *s, mb_field_t f) {
  return (s->have >> f) & 1u;
}

/* Kernel key of a field ("MemTotal", "pswpin", ...); NULL if out of range. */
const char *mb_field_key(mb_field_t f);
/* Field of a kernel key, or -1 when the key is not one of mb_field_t. */
int mb_field_from_key(const char *key, size_t keylen);

/* Largest KiB figure a sample or a domain may carry (4 PiB). Larger values
 * are absurd and rejected by the parsers; it also keeps every sum of
 * figures far from uint64_t overflow. */
#define MB_KIB_MAX (UINT64_C(1) << 42)

/* Rates derived from two successive samples of one guest. */
typedef struct {
  double swapin_pps;  /* pswpin pages per second */
  double swapout_pps; /* pswpout pages per second */
  double majflt_ps;   /* major faults per second */
  bool valid;         /* false when no previous sample, counter went back
                         (guest rebooted) or dt <= 0 */
  /* Growth of the guest's anonymous memory wherever it sits, resident or
   * swapped: d(AnonPages + SwapTotal - SwapFree)/dt in KiB/s, negative when
   * it shrinks. Set on its own (a sample without vmstat still has it);
   * cagma's demand forecast. */
  double anon_growth_kibps;
  bool growth_valid; /* false without both samples' AnonPages (or the
                        anon split) and swap figures, on reboot, dt <= 0 */
  /* Share of time in [0,1] some (full) task stalled on memory between the
   * two samples: delta of psi_*_total_us over the elapsed time. The guest's
   * own clock (uptime_ms delta) is used when both samples carry it, since
   * the stall time is measured on it; else dt_s. Clamped to [0,1] (a guest
   * cannot stall more than all the time; a hostile one gains nothing).
   * full_stall_share is 0 when the samples lack the full line. */
  double some_stall_share;
  double full_stall_share;
  bool stall_valid; /* false without psi_some_total_us in both samples, on
                       reboot, counter gone back or no elapsed time */
  /* Workingset refaults per second: pages evicted and read back soon
   * after, the thrash that MemAvailable does not show. File refaults come
   * from workingset_refault_file, or workingset_refault before 5.9. */
  double refault_anon_ps; /* 0 before 5.9 (not counted then) */
  double refault_file_ps;
  bool refault_valid; /* false without a refault counter in both samples,
                         on reboot, counter gone back or dt <= 0 */
} mb_rates_t;

void mb_sample_rates(const mb_sample_t *prev, const mb_sample_t *cur,
                     double dt_s, mb_rates_t *out);

/* ---------------------------------------------------------------------- */
/* Parsers and the xenstore record (untrusted input)                       */
/* ---------------------------------------------------------------------- */

/* Error text is written to err (NUL-terminated, may be truncated; err may
 * be NULL) and names the offending line or key. Return 0 on success, -1 on
 * rejected input; on rejection *out is left with have == 0. text need not
 * be NUL-terminated: exactly len bytes are read; a final line without '\n'
 * is fine, an embedded NUL or an empty line is not.
 * Unknown keys are ignored, but their lines must still be well-formed.
 * Rejected: duplicated keys (known or unknown), malformed lines, overflow,
 * negative or non-decimal numbers (no sign, no hex, no exponent, no NaN), a
 * known meminfo field without its "kB" unit, a KiB figure above MB_KIB_MAX, and
 * inconsistent values: a RAM figure (MemFree, MemAvailable, Cached, ...)
 * above MemTotal, MemTotal 0, SwapFree > SwapTotal, SReclaimable +
 * SUnreclaim > Slab + MB_SLAB_SLACK_KIB. Committed_AS may exceed MemTotal
 * (overcommit). */
int mb_meminfo_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                     size_t errlen);
/* Slack of the Slab rule above: one 4 KiB page. Kernels before 5.9 read
 * the slab counters once for Slab and again for each of its parts, so a
 * slab cache that grows while /proc/meminfo is printed can show the parts
 * a page above the total; a real guest must not be rejected for that. */
#define MB_SLAB_SLACK_KIB 4
/* Adds the vmstat fields to *out (which may already hold meminfo fields).
 * Lines are "key value" with one space. Unknown counters may be negative
 * (some kernels print signed per-cpu drift); the ones membal reads may not. */
int mb_vmstat_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen);

/* Adds the PSI fields of /proc/pressure/memory to *out (which may already
 * hold other fields). The text is the kernel's, exactly:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "some" is mandatory, "full" optional; each at most once, in any order.
 * PSI fields *out already held are dropped first (a text without "full"
 * leaves no older full figures behind).
 * Rejected (have of *out then 0, like the other parsers): any other line,
 * a missing or reordered avgN=/total= token, extra blanks or tokens, an
 * average that is not D.DD (1 to 3 integer digits, exactly 2 decimals) or
 * is above 100.00, a total that is not a decimal u64, full total above
 * some total. */
int mb_psi_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                 size_t errlen);

/* The record a guest publishes at data/membal/stats:
 *
 *   membal 1            <- format version, first line, mandatory
 *   seq 42              <- mandatory, > 0, increases by >= 1 per publish
 *   uptime_ms 123456    <- mandatory
 *   urgent 0|1          <- optional, default 0
 *   MemTotal 2048000    <- any mb_field_key() with its value, one per line
 *   ...
 *   pswpin 17
 *   psi_some_avg10_bp 152  <- PSI and refault fields when the kernel has
 *   ...                       them: integers, so a dom0 that predates them
 *                             parses the record and ignores the keys
 *
 * Lines end with '\n'; at most MB_RECORD_MAX - 1 bytes.
 * Keys are [A-Za-z0-9_()], separated from a decimal value by one space.
 * Unknown keys are ignored (a later format's fields) but may not repeat
 * (nor repeat "membal"); the fields' consistency rules are those of
 * mb_meminfo_parse and mb_psi_parse (avg10 at most MB_PSI_BP_MAX, full
 * total not above some total). A record without
 * "membal 1" first, without seq (or seq 0) or uptime_ms, or longer than
 * MB_RECORD_MAX - 1 bytes is rejected.
 * mb_record_format returns the length written (excluding NUL) or -1 when
 * buf is too small; it writes s->seq as is, so give it seq >= 1. */
int mb_record_format(const mb_sample_t *s, char *buf, size_t buflen);
int mb_record_parse(const char *text, size_t len, mb_sample_t *out, char *err,
                    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
