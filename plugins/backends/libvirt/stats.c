/* The libvirt backend's guest sample: virDomainMemoryStats (virtio-balloon
 * statistics, written by the guest, so untrusted) mapped to sample fields
 * and checked (see backend_libvirt.c for the mapping). */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <stdio.h>
#include <string.h>

/* What virDomainMemoryStats gives, as sample fields (docs/kvm.md).
 * Every tag this libvirt defines (VIR_DOMAIN_MEMORY_STAT_NR) is either
 * mapped here or listed in lv_stat_unmapped with the reason: a libvirt that
 * defines more (Linux 6.12's balloon stats: OOM kills, allocation stalls,
 * scans and reclaims; libvirt 9.0 has none of them) fails
 * tests/backends/test_backend_libvirt.c until they are mapped or listed.
 * Nothing here is PSI nor a workingset refault: a KVM guest's sample has
 * neither (its stall and refault rates stay invalid). */
const lv_stat_map_t lv_stat_map[] = {
    {VIR_DOMAIN_MEMORY_STAT_AVAILABLE, MB_F_MEMTOTAL},
    {VIR_DOMAIN_MEMORY_STAT_UNUSED, MB_F_MEMFREE},
    {VIR_DOMAIN_MEMORY_STAT_USABLE, MB_F_MEMAVAILABLE},
    {VIR_DOMAIN_MEMORY_STAT_DISK_CACHES, MB_F_CACHED},
    {VIR_DOMAIN_MEMORY_STAT_SWAP_IN, MB_F_PSWPIN},   /* KiB -> pages */
    {VIR_DOMAIN_MEMORY_STAT_SWAP_OUT, MB_F_PSWPOUT}, /* KiB -> pages */
    {VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, MB_F_PGMAJFAULT},
    {VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT, MB_F_PGFAULT},
};
const size_t lv_nstat_map = sizeof(lv_stat_map) / sizeof(lv_stat_map[0]);

/* Read by the test only: the list is the record of what is left out. */
const lv_stat_unmapped_t lv_stat_unmapped[] = {
    {VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, "host side: current_kib"},
    {VIR_DOMAIN_MEMORY_STAT_RSS, "host side: QEMU's resident set"},
    {VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, "time of the stats: uptime_ms"},
    {VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGALLOC, "hugetlb: not ballooned"},
    {VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGFAIL, "hugetlb: not ballooned"},
};
const size_t lv_nstat_unmapped =
    sizeof(lv_stat_unmapped) / sizeof(lv_stat_unmapped[0]);

/* Maps MemoryStats into a sample. Returns the sample status; sample_err
 * says why a sample was rejected. */
mb_sample_status_t lv_fill_sample(lv_dom_state_t *st,
                                  const virDomainMemoryStatStruct *ms, int nms,
                                  uint64_t max_kib, mb_sample_t *s, char *serr,
                                  size_t serrlen) {
  unsigned long long v[VIR_DOMAIN_MEMORY_STAT_NR] = {0};
  uint32_t present = 0;
  for (int i = 0; i < nms; i++) {
    int tag = ms[i].tag;
    if (tag < 0 || tag >= VIR_DOMAIN_MEMORY_STAT_NR)
      continue;
    v[tag] = ms[i].val;
    present |= 1u << tag;
  }
#define HAS(tag) ((present >> (tag)) & 1u)

  lv_seq_note(st, v, present);

  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < LV_NSTAT_MAP; i++) {
    if (!HAS(lv_stat_map[i].tag))
      continue;
    uint64_t val = v[lv_stat_map[i].tag];
    if (lv_stat_map[i].field == MB_F_PSWPIN ||
        lv_stat_map[i].field == MB_F_PSWPOUT)
      val /= LV_GUEST_PAGE_KIB;
    s->v[lv_stat_map[i].field] = val;
    s->have |= (uint64_t)1 << lv_stat_map[i].field;
  }
  if (s->have == 0)
    return MB_SAMPLE_NONE; /* period 0 or no balloon driver in the guest */

  /* The guest wrote these: refuse what cannot be true. */
  const char *bad = NULL;
  uint64_t bad_v = 0, bad_lim = 0;
  if (HAS(VIR_DOMAIN_MEMORY_STAT_AVAILABLE)) {
    uint64_t total = v[VIR_DOMAIN_MEMORY_STAT_AVAILABLE];
    if (max_kib > 0 && total > max_kib) {
      bad = "available exceeds the domain's maximum";
      bad_v = total;
      bad_lim = max_kib;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_UNUSED) &&
               v[VIR_DOMAIN_MEMORY_STAT_UNUSED] > total) {
      bad = "unused exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_UNUSED];
      bad_lim = total;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_USABLE) &&
               v[VIR_DOMAIN_MEMORY_STAT_USABLE] > total) {
      bad = "usable exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_USABLE];
      bad_lim = total;
    } else if (HAS(VIR_DOMAIN_MEMORY_STAT_DISK_CACHES) &&
               v[VIR_DOMAIN_MEMORY_STAT_DISK_CACHES] > total) {
      bad = "disk_caches exceeds available";
      bad_v = v[VIR_DOMAIN_MEMORY_STAT_DISK_CACHES];
      bad_lim = total;
    }
  }
#undef HAS
  if (bad != NULL) {
    snprintf(serr, serrlen, "balloon stats rejected: %s (%llu > %llu KiB)", bad,
             (unsigned long long)bad_v, (unsigned long long)bad_lim);
    memset(s, 0, sizeof(*s));
    return MB_SAMPLE_BAD;
  }
  s->seq = st->seq;
  /* No uptime in balloon statistics; the time QEMU took them (seconds)
   * serves the same purpose: rates between two samples. */
  if (v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] > 0 &&
      v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] < UINT64_MAX / 1000)
    s->uptime_ms = v[VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE] * 1000;
  return MB_SAMPLE_OK;
}

/* Reads one domain's balloon statistics into the shared table. Returns the
 * sample status, or -1 when the domain is gone or unreadable; uuid and *seq
 * receive the domain's UUID and its sequence number after the read (also
 * when the sample is rejected or empty). */
int lv_read_stats(lv_priv_t *p, virDomainPtr dom, uint64_t max_kib,
                  mb_sample_t *s, char *serr, size_t serrlen,
                  uint64_t *actual_kib, unsigned char *uuid, uint64_t *seq) {
  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  p->requests++;
  if (virDomainGetUUID(dom, uuid) != 0)
    return -1;
  p->requests++;
  int nms = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  if (nms < 0)
    return -1;
  *actual_kib = 0;
  for (int i = 0; i < nms; i++)
    if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
      *actual_kib = ms[i].val;
  pthread_mutex_lock(&lv_table_lock);
  lv_dom_state_t *st = lv_state(uuid, lv_now_s());
  if (st == NULL) {
    pthread_mutex_unlock(&lv_table_lock);
    snprintf(serr, serrlen, "libvirt: out of memory");
    return -1;
  }
  int status = (int)lv_fill_sample(st, ms, nms, max_kib, s, serr, serrlen);
  *seq = st->seq;
  pthread_mutex_unlock(&lv_table_lock);
  return status;
}
