/*
 * membal backend "libvirt": KVM (or any libvirt driver) through libvirt.
 *
 * Domains are the connection's active domains (virConnectListAllDomains);
 * libvirt's runtime domain ID is the domid. There is no dom0: the host is
 * not a domain, so the list never holds domid 0.
 *
 * Memory, all KiB:
 *   max_kib     virDomainGetMaxMemory (falls back to virDomainGetInfo.maxMem)
 *   current_kib the balloon's actual size (MemoryStats actual_balloon), else
 *               virDomainGetInfo.memory; never above max_kib
 *   target_kib  the last target this backend set on the domain (remembered
 *               per UUID), else virDomainGetInfo.memory
 *   node_mask   virDomainGetNumaParameters when numa_mode binds the memory
 *               (strict, interleave, restrictive); 0 for preferred/unbound
 *
 * Guest sample from virDomainMemoryStats (virtio-balloon stats, written by
 * the guest, so untrusted):
 *   available   -> MemTotal       unused      -> MemFree
 *   usable      -> MemAvailable   disk_caches -> Cached
 *   swap_in     -> pswpin         swap_out    -> pswpout
 *   major_fault -> pgmajfault     minor_fault -> pgfault
 * swap_in/swap_out are KiB in libvirt; they become 4 KiB pages (the page
 * size of x86 guests) so that they mean what /proc/vmstat's counters mean.
 * Linux's balloon driver reports the total fault count as minor_fault, so it
 * is pgfault as is. rss (the QEMU process on the host) and the hugetlb
 * counters have no guest field. Missing on KVM: Committed_AS, the
 * active/inactive split, Buffers, swap totals.
 *
 * Sequence number: virtio-balloon stats carry no sequence, so the backend
 * synthesises one per domain: 1 at first sight, +1 whenever any statistic
 * (including last_update, which QEMU advances at each guest publication)
 * differs from the previous read by any handle of this copy of the backend
 * (one table, so vmmem's reader and watch thread agree). A guest whose
 * stats do not change and whose hypervisor gives no last_update therefore
 * ages and turns stale, which only freezes its target (never shrinks it).
 * uptime_ms is last_update in ms (the host time of the publication: what
 * rates need), else 0. When no guest-side statistic is present at all
 * (period 0, no balloon driver in the guest) the sample status is
 * MB_SAMPLE_NONE.
 *
 * Events: libvirt has no push for balloon statistics, so wait_event polls
 * them every LV_POLL_S and reports each domain whose sequence differs from
 * the one this handle last reported (first sight included), whichever
 * handle's read advanced it; guest returns its sample and, as raw text, a
 * membal record of it (mb_record_format), so vmmem's watch thread hands
 * a swapping KVM guest's sample to membal at once as it does a Xen one's.
 *
 * Stats period: libvirt's default is 0 (off). On first sight of a domain
 * with a virtio balloon whose <stats period> is 0 or absent, the backend
 * sets it (virDomainSetMemoryStatsPeriod, live) and logs it once.
 *
 * Connection: opts->uri, else $LIBVIRT_DEFAULT_URI (libvirt's own
 * variable), else qemu:///system; opened read-write (actuation needs it)
 * and shared by every handle of the process on the same URI. A call that
 * fails while virConnectIsAlive() says the connection is dead drops it; the
 * next call re-opens it. The log sink hears "lost" and
 * "re-established" once per change; calls return -1 with the same text
 * while the connection stays down, so the caller's c_complain logs once.
 * libvirt's default error printing to stderr is silenced
 * (virSetErrorFunc); errors are read with virGetLastError.
 *
 * The jobs sit in one file each (lv_impl.h lists them); this one holds the
 * interface's table and the retry on a fresh connection.
 */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <string.h>

/* A call that found the connection dead (and dropped it) is tried once more
 * on a fresh one, so that the round which notices a libvirtd restart still
 * succeeds. A call that could not connect at all is not retried. */
static int lv_host(void *priv, mb_hostinfo_t *out, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_host_once(p, out, err, errlen);
  if (r != 0 && had && p->conn == NULL) {
    memset(out, 0, sizeof(*out));
    r = lv_host_once(p, out, err, errlen);
  }
  return r;
}

int lv_list(void *priv, mb_dominfo_t **out, size_t *n, char *err,
            size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_list_once(p, out, n, err, errlen);
  if (r != 0 && had && p->conn == NULL)
    r = lv_list_once(p, out, n, err, errlen);
  return r;
}

static int lv_set_target(void *priv, uint32_t domid, uint64_t target_kib,
                         char *err, size_t errlen) {
  lv_priv_t *p = priv;
  bool had = p->conn != NULL;
  int r = lv_set_target_once(p, domid, target_kib, err, errlen);
  if (r != 0 && had && p->conn == NULL)
    r = lv_set_target_once(p, domid, target_kib, err, errlen);
  return r;
}

static uint64_t lv_requests(const void *priv) {
  const lv_priv_t *p = priv;
  return p->requests;
}

const mb_backend_ops_t mb_backend_libvirt_ops = {
    .open = lv_open,
    .close = lv_close,
    .host = lv_host,
    .list = lv_list,
    .set_target = lv_set_target,
    .wait_event = lv_wait_event,
    .requests = lv_requests,
    .guest = lv_guest,
    .name = lv_name,
};
