/* The libvirt backend's domains: the active ones with their memory and
 * sample (list), and their balloon targets (set_target). */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* Fills *d for one domain. Returns 1 when filled, 0 when the domain is gone,
 * not running or unusably named (dropped), -1 on a connection-level
 * failure. */
int lv_one(lv_priv_t *p, virDomainPtr dom, mb_dominfo_t *d, char *err,
           size_t errlen) {
  memset(d, 0, sizeof(*d));
  p->requests++;
  unsigned int id = virDomainGetID(dom);
  if (id == (unsigned int)-1)
    return 0;
  d->domid = id;
  const char *name = virDomainGetName(dom); /* owned by dom */

  unsigned char uuid[VIR_UUID_BUFLEN];
  p->requests++;
  if (virDomainGetUUID(dom, uuid) != 0)
    return 0;
  const char *bad = mb_backend_name_problem(name, name ? strlen(name) : 0);
  if (bad != NULL) {
    pthread_mutex_lock(&lv_table_lock);
    lv_dom_state_t *st = lv_state(uuid, lv_now_s());
    bool say = st != NULL && !st->name_said;
    if (st != NULL)
      st->name_said = true;
    pthread_mutex_unlock(&lv_table_lock);
    if (say)
      lv_log(p, LOG_WARNING, "libvirt: domain %u left alone: %s", id, bad);
    return 0;
  }
  snprintf(d->name, sizeof(d->name), "%s", name);

  virDomainInfo di;
  p->requests++;
  if (virDomainGetInfo(dom, &di) != 0) {
    if (lv_err_is_gone())
      return 0;
    snprintf(err, errlen, "libvirt: virDomainGetInfo(%s): %s", d->name,
             lv_errmsg());
    /* A dead connection fails the round; anything else drops the domain
     * from this round only. */
    p->requests++;
    return virConnectIsAlive(p->conn) == 1 ? 0 : -1;
  }
  if (di.state == VIR_DOMAIN_SHUTOFF || di.state == VIR_DOMAIN_CRASHED ||
      di.state == VIR_DOMAIN_NOSTATE)
    return 0;
  p->requests++;
  unsigned long max = virDomainGetMaxMemory(dom);
  d->max_kib = max ? max : di.maxMem;

  d->node_mask = lv_node_mask(p, dom);

  virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
  p->requests++;
  int nms = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  uint64_t actual_kib = 0;
  if (nms < 0) {
    if (lv_err_is_gone())
      return 0;
    d->sample_status = MB_SAMPLE_BAD;
    snprintf(d->sample_err, sizeof(d->sample_err), "virDomainMemoryStats: %s",
             lv_errmsg());
    virResetLastError();
  }
  for (int i = 0; i < nms; i++)
    if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
      actual_kib = ms[i].val;

  pthread_mutex_lock(&lv_table_lock);
  lv_dom_state_t *st = lv_state(uuid, lv_now_s());
  if (st == NULL) {
    pthread_mutex_unlock(&lv_table_lock);
    snprintf(err, errlen, "libvirt: out of memory");
    return -1;
  }
  bool check_period = !st->period_checked;
  st->period_checked = true;
  if (nms >= 0)
    d->sample_status = lv_fill_sample(st, ms, nms, d->max_kib, &d->sample,
                                      d->sample_err, sizeof(d->sample_err));
  d->target_kib = st->target_known ? st->target_kib : di.memory;
  pthread_mutex_unlock(&lv_table_lock);

  if (check_period)
    lv_enable_period(p, dom, d->name);
  d->current_kib = actual_kib ? actual_kib : di.memory;
  if (d->max_kib > 0 && d->current_kib > d->max_kib)
    d->current_kib = d->max_kib; /* actual is the guest's word */
  return 1;
}

static int lv_cmp_domid(const void *a, const void *b) {
  const mb_dominfo_t *x = a, *y = b;
  return (x->domid > y->domid) - (x->domid < y->domid);
}

/* The active domains: *doms (caller frees, with virDomainFree on every
 * element) and their count, or -1 (+err) with *doms NULL. */
int lv_list_active(lv_priv_t *p, virDomainPtr **doms, char *err,
                   size_t errlen) {
  *doms = NULL;
  if (lv_connect(p, err, errlen) != 0)
    return -1;
  p->requests++;
  int nd =
      virConnectListAllDomains(p->conn, doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (nd < 0) {
    snprintf(err, errlen, "libvirt: virConnectListAllDomains: %s", lv_errmsg());
    lv_check_conn(p);
    *doms = NULL;
    return -1;
  }
  return nd;
}

int lv_list_once(void *priv, mb_dominfo_t **out, size_t *n, char *err,
                 size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr *doms = NULL; /* owned, with every element */
  mb_dominfo_t *res = NULL;  /* owned until handed to *out */
  int nd = 0;

  nd = lv_list_active(p, &doms, err, errlen);
  if (nd < 0) {
    nd = 0;
    goto out;
  }
  res = calloc(nd > 0 ? (size_t)nd : 1, sizeof(*res));
  if (res == NULL) {
    snprintf(err, errlen, "libvirt: out of memory");
    goto out;
  }
  size_t k = 0;
  for (int i = 0; i < nd; i++) {
    int r = lv_one(p, doms[i], &res[k], err, errlen);
    if (r < 0) {
      lv_check_conn(p);
      goto out;
    }
    if (r > 0)
      k++;
  }
  qsort(res, k, sizeof(*res), lv_cmp_domid);
  *out = res;
  *n = k;
  res = NULL;
  ret = 0;
out:
  for (int i = 0; i < nd; i++)
    virDomainFree(doms[i]);
  free(doms);
  free(res);
  return ret;
}

int lv_set_target_once(void *priv, uint32_t domid, uint64_t target_kib,
                       char *err, size_t errlen) {
  lv_priv_t *p = priv;
  int ret = -1;
  virDomainPtr dom = NULL; /* owned */

  if (lv_connect(p, err, errlen) != 0)
    return -1;
  if (target_kib > (uint64_t)(unsigned long)-1) {
    snprintf(err, errlen, "libvirt: target %llu KiB too large",
             (unsigned long long)target_kib);
    return -1;
  }
  p->requests++;
  dom = virDomainLookupByID(p->conn, (int)domid);
  if (dom == NULL) {
    snprintf(err, errlen, "libvirt: domain %u: %s", domid, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  const char *name = virDomainGetName(dom); /* owned by dom */
  p->requests++;
  if (virDomainSetMemoryFlags(dom, (unsigned long)target_kib,
                              VIR_DOMAIN_AFFECT_LIVE) != 0) {
    snprintf(err, errlen, "libvirt: domain %s: set memory to %llu KiB: %s",
             name ? name : "?", (unsigned long long)target_kib, lv_errmsg());
    if (!lv_err_is_gone())
      lv_check_conn(p);
    goto out;
  }
  unsigned char uuid[VIR_UUID_BUFLEN];
  if (virDomainGetUUID(dom, uuid) == 0) {
    pthread_mutex_lock(&lv_table_lock);
    lv_dom_state_t *st = lv_state(uuid, lv_now_s());
    if (st != NULL) {
      st->target_known = true;
      st->target_kib = target_kib;
    }
    pthread_mutex_unlock(&lv_table_lock);
  }
  ret = 0;
out:
  if (dom)
    virDomainFree(dom);
  return ret;
}
