/* The libvirt backend's events: libvirt has no push for balloon
 * statistics, so wait_event polls them and reports each domain whose
 * sequence changed; guest and name serve the thread that waits. */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One pass over the active domains: queues those whose sequence differs
 * from the one this handle last reported (or that it has not reported
 * yet). Whichever handle read the statistics first advanced the shared
 * sequence; comparing with the shared "previous" values instead would
 * lose every change the reader happened to see first. */
static int lv_poll(lv_priv_t *p, char *err, size_t errlen) {
  int ret = -1;
  virDomainPtr *doms = NULL; /* owned, with every element */
  lv_seen_t *seen = NULL;    /* owned until it replaces p->seen */
  size_t nseen = 0;
  int nd = 0;
  nd = lv_list_active(p, &doms, err, errlen);
  if (nd < 0) {
    nd = 0;
    goto out;
  }
  seen = calloc(nd > 0 ? (size_t)nd : 1, sizeof(*seen));
  if (seen == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  for (int i = 0; i < nd; i++) {
    mb_sample_t s;
    char serr[160];
    uint64_t actual_kib, seq = 0;
    unsigned char uuid[VIR_UUID_BUFLEN];
    p->requests++;
    unsigned int id = virDomainGetID(doms[i]);
    if (id == (unsigned int)-1 ||
        lv_read_stats(p, doms[i], 0, &s, serr, sizeof(serr), &actual_kib, uuid,
                      &seq) < 0) {
      virResetLastError(); /* a domain gone meanwhile is not an error */
      continue;
    }
    const lv_seen_t *old = NULL;
    for (size_t k = 0; k < p->nseen && old == NULL; k++)
      if (memcmp(p->seen[k].uuid, uuid, VIR_UUID_BUFLEN) == 0)
        old = &p->seen[k];
    uint64_t reported = old != NULL ? old->seq : 0;
    if (seq != reported) {
      bool queued = false;
      for (size_t k = 0; k < p->npending; k++)
        queued = queued || p->pending[k] == id;
      if (!queued && p->npending < LV_PENDING_MAX)
        p->pending[p->npending++] = id;
      else if (!queued)
        seq = reported; /* queue full: reported on a later poll */
    }
    memcpy(seen[nseen].uuid, uuid, VIR_UUID_BUFLEN);
    seen[nseen].seq = seq;
    nseen++;
  }
  free(p->seen);
  p->seen = seen;
  p->nseen = nseen;
  seen = NULL;
  ret = 0;
out:
  for (int i = 0; i < nd; i++)
    virDomainFree(doms[i]);
  free(doms);
  free(seen);
  return ret;
}

/* No push from libvirt: the balloon statistics are polled every LV_POLL_S
 * and a domain whose statistics changed is reported, one per call, so that
 * the caller (vmmem's watch thread) sees a KVM guest's swap storm without
 * waiting for its next interval. */
int lv_wait_event(void *priv, int timeout_ms, uint32_t *domid, char *err,
                  size_t errlen) {
  lv_priv_t *p = priv;
  double deadline = lv_now_s() + (timeout_ms > 0 ? timeout_ms / 1000.0 : 0);
  for (;;) {
    if (p->npending > 0) {
      *domid = p->pending[0];
      memmove(p->pending, p->pending + 1,
              (p->npending - 1) * sizeof(p->pending[0]));
      p->npending--;
      return 1;
    }
    double now = lv_now_s();
    if (now >= p->next_poll_s) {
      p->next_poll_s = now + LV_POLL_S;
      if (lv_poll(p, err, errlen) != 0)
        return -1;
      continue;
    }
    if (now >= deadline)
      return 0;
    double until = p->next_poll_s < deadline ? p->next_poll_s : deadline;
    double wait_s = until - now;
    struct timespec ts = {.tv_sec = (time_t)wait_s,
                          .tv_nsec =
                              (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

/* One domain's latest sample, for the watch thread; raw receives it as a
 * membal record (mb_record_format), since libvirt has no record text. */
int lv_guest(void *priv, uint32_t domid, mb_dominfo_t *out, char *raw,
             size_t rawlen, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr dom = NULL; /* owned */
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  dom = virDomainLookupByID(p->conn, (int)domid);
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  out->domid = domid; /* the name is mb_backend_name()'s business */
  p->requests++;
  out->max_kib = virDomainGetMaxMemory(dom);
  uint64_t actual_kib = 0, seq;
  unsigned char uuid[VIR_UUID_BUFLEN];
  int st = lv_read_stats(p, dom, out->max_kib, &out->sample, out->sample_err,
                         sizeof(out->sample_err), &actual_kib, uuid, &seq);
  if (st < 0) {
    snprintf(err, errlen, "libvirt: domain %u: balloon statistics: %s", domid,
             lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  out->sample_status = (mb_sample_status_t)st;
  out->current_kib = actual_kib;
  if (out->sample_status == MB_SAMPLE_OK && raw != NULL && rawlen > 0 &&
      mb_record_format(&out->sample, raw, rawlen) < 0)
    raw[0] = '\0';
  ret = 0;
out:
  if (dom)
    virDomainFree(dom);
  return ret;
}

int lv_name(void *priv, uint32_t domid, char *name, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  virDomainPtr dom = virDomainLookupByID(p->conn, (int)domid); /* owned */
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    return -1;
  }
  const char *n = virDomainGetName(dom); /* owned by dom */
  const char *bad = mb_backend_name_problem(n, n ? strlen(n) : 0);
  int ret = -1;
  if (bad != NULL)
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, bad);
  else {
    snprintf(name, MB_NAME_LEN, "%s", n);
    ret = 0;
  }
  virDomainFree(dom);
  return ret;
}
