/*
 * Guest records for the backends that speak xenstore (sim, libxl): reads
 * them (untrusted, bounded) and waits for their changes on a watch, over
 * the connection helper shared with guestmem (plugins/xs_conn.h).
 *
 * Private to backend_*.c; the plugins never include it.
 */
#ifndef MEMBAL_XS_GUEST_H
#define MEMBAL_XS_GUEST_H

#include "backend.h"
#include "xs_conn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Records and host/domain nodes are small; anything longer is refused
 * before it is parsed. */
#define MB_XS_NODE_MAX 4096

/* Reads domain domid's guest record (data/membal/stats, else
 * data/meminfo_total + data/meminfo_free) into d->sample_status, d->sample
 * and d->sample_err. When raw is not NULL it receives the record text
 * (NUL-terminated, truncated to rawlen - 1). Returns 0, or -1 when
 * xenstore itself failed (d->sample_status is then MB_SAMPLE_NONE). */
int mb_xs_guest_read(mb_xs_t *x, uint32_t domid, mb_dominfo_t *d, char *raw,
                     size_t rawlen, char *err, size_t errlen);

/* Blocks up to timeout_ms for a change of any guest record below
 * /local/domain. 1 (+*domid), 0 on timeout, -1 on error (+err; the
 * connection is dropped and re-established by the next call). */
int mb_xs_wait_guest(mb_xs_t *x, int timeout_ms, uint32_t *domid, char *err,
                     size_t errlen);

#endif
