/* The libvirt backend's view of the host and of a domain's placement: host
 * memory and NUMA cells (capabilities XML), a domain's node binding
 * (numatune) and its balloon stats period (domain XML). */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* Per-cell totals from the capabilities XML (<cell id='N'> ... <memory
 * unit='KiB'>X</memory>). The XML is libvirt's own output, so a plain scan
 * for the two tags suffices. */
static void lv_cell_totals(lv_priv_t *p, mb_hostinfo_t *out) {
  p->requests++;
  char *caps = virConnectGetCapabilities(p->conn); /* owned */
  if (caps == NULL)
    return;
  const char *c = caps;
  while ((c = strstr(c, "<cell id='")) != NULL) {
    char *end;
    c += strlen("<cell id='");
    unsigned long id = strtoul(c, &end, 10);
    if (end == c || *end != '\'')
      break;
    const char *next_cell = strstr(end, "<cell id='");
    const char *mem = strstr(end, "<memory unit='KiB'>");
    if (mem == NULL || (next_cell != NULL && mem > next_cell)) {
      c = end;
      continue;
    }
    mem += strlen("<memory unit='KiB'>");
    unsigned long long kib = strtoull(mem, &end, 10);
    if (end != mem && *end == '<' && id < MB_MAX_NODES)
      out->node_total_kib[id] = kib;
    c = end;
  }
  free(caps);
}

int lv_host_once(void *priv, mb_hostinfo_t *out, char *err, size_t errlen) {
  lv_priv_t *p = priv;
  if (lv_connect(p, err, errlen) != 0)
    return -1;

  virNodeInfo ni;
  p->requests++;
  if (virNodeGetInfo(p->conn, &ni) != 0) {
    snprintf(err, errlen, "libvirt: virNodeGetInfo: %s", lv_errmsg());
    lv_check_conn(p);
    return -1;
  }
  out->total_kib = ni.memory;

  /* Free memory: what the host could hand out without swapping (free +
   * buffers + cache) when the driver tells it, else plain free, else, for
   * drivers that know neither (the test driver with a host file), total
   * minus what the active domains hold. */
  bool have_free = false;
  int nparams = 0;
  p->requests++;
  if (virNodeGetMemoryStats(p->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL,
                            &nparams, 0) == 0 &&
      nparams > 0 && nparams < 64) {
    virNodeMemoryStats ms[64];
    p->requests++;
    if (virNodeGetMemoryStats(p->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, ms,
                              &nparams, 0) == 0) {
      uint64_t free_kib = 0;
      for (int i = 0; i < nparams; i++)
        if (strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_FREE) == 0 ||
            strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) == 0 ||
            strcmp(ms[i].field, VIR_NODE_MEMORY_STATS_CACHED) == 0)
          free_kib += ms[i].value;
      out->free_kib = free_kib;
      have_free = true;
    }
  }
  if (!have_free) {
    p->requests++;
    unsigned long long free_b = virNodeGetFreeMemory(p->conn);
    if (free_b > 0) {
      out->free_kib = free_b / 1024;
      have_free = true;
    }
  }
  if (!have_free) {
    virDomainPtr *doms = NULL; /* owned, with every element */
    p->requests++;
    int n = virConnectListAllDomains(p->conn, &doms,
                                     VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0) {
      snprintf(err, errlen, "libvirt: virConnectListAllDomains: %s",
               lv_errmsg());
      lv_check_conn(p);
      return -1;
    }
    uint64_t used_kib = 0;
    for (int i = 0; i < n; i++) {
      virDomainInfo di;
      p->requests++;
      if (virDomainGetInfo(doms[i], &di) == 0)
        used_kib += di.memory;
      virDomainFree(doms[i]);
    }
    free(doms);
    out->free_kib = used_kib < out->total_kib ? out->total_kib - used_kib : 0;
  }

  /* NUMA: one entry per cell libvirt reports free memory for. */
  unsigned long long cell_free_b[MB_MAX_NODES];
  p->requests++;
  int cells = virNodeGetCellsFreeMemory(p->conn, cell_free_b, 0, MB_MAX_NODES);
  if (cells > 0) {
    out->nr_nodes = (unsigned)cells;
    for (int i = 0; i < cells; i++)
      out->node_free_kib[i] = cell_free_b[i] / 1024;
    lv_cell_totals(p, out);
  } else {
    /* A driver without cell data (test driver with a host file) or a
     * single-node host: NUMA unknown. Not an error. */
    virResetLastError();
    out->nr_nodes = 0;
  }
  return 0;
}

/* Parses libvirt's node set syntax ("0-2,5", "^1" excludes) into a mask.
 * Returns 0, or -1 on a syntax error or a node >= MB_MAX_NODES (the caller
 * then treats the domain as unbound). */
int lv_parse_nodeset(const char *s, uint32_t *mask) {
  uint32_t m = 0;
  const char *c = s;
  if (*c == '\0')
    return -1;
  while (*c != '\0') {
    bool neg = false;
    if (*c == '^') {
      neg = true;
      c++;
    }
    char *end;
    if (*c < '0' || *c > '9')
      return -1;
    errno = 0;
    unsigned long a = strtoul(c, &end, 10);
    unsigned long b = a;
    if (errno != 0)
      return -1;
    c = end;
    if (*c == '-' && !neg) {
      c++;
      if (*c < '0' || *c > '9')
        return -1;
      b = strtoul(c, &end, 10);
      if (errno != 0)
        return -1;
      c = end;
    }
    if (a > b || b >= MB_MAX_NODES)
      return -1;
    for (unsigned long i = a; i <= b; i++) {
      if (neg)
        m &= ~(1u << i);
      else
        m |= 1u << i;
    }
    if (*c == ',')
      c++;
    else if (*c != '\0')
      return -1;
  }
  *mask = m;
  return 0;
}

uint32_t lv_node_mask(lv_priv_t *p, virDomainPtr dom) {
  int n = 0;
  uint32_t mask = 0;
  p->requests++;
  if (virDomainGetNumaParameters(dom, NULL, &n, 0) != 0 || n <= 0 || n > 16) {
    virResetLastError();
    return 0;
  }
  virTypedParameter params[16];
  memset(params, 0, sizeof(params));
  p->requests++;
  if (virDomainGetNumaParameters(dom, params, &n, 0) != 0) {
    virResetLastError();
    return 0;
  }
  int mode = -1;
  const char *nodeset = NULL;
  for (int i = 0; i < n; i++) {
    if (strcmp(params[i].field, VIR_DOMAIN_NUMA_MODE) == 0 &&
        params[i].type == VIR_TYPED_PARAM_INT)
      mode = params[i].value.i;
    else if (strcmp(params[i].field, VIR_DOMAIN_NUMA_NODESET) == 0 &&
             params[i].type == VIR_TYPED_PARAM_STRING)
      nodeset = params[i].value.s;
  }
  /* preferred only hints where memory comes from; the others bind it. */
  if (nodeset != NULL && mode != VIR_DOMAIN_NUMATUNE_MEM_PREFERRED &&
      lv_parse_nodeset(nodeset, &mask) != 0)
    mask = 0;
  virTypedParamsClear(params, n);
  return mask;
}

/* True when the domain has a virtio balloon whose stats period is 0 or
 * not set. The XML is libvirt's own formatting: <memballoon model='...'>
 * holding at most one <stats period='N'/>. */
bool lv_period_off(const char *xml) {
  const char *mb = strstr(xml, "<memballoon model='virtio");
  if (mb == NULL)
    return false;
  const char *gt = strchr(mb, '>');
  if (gt == NULL || gt[-1] == '/')
    return true; /* <memballoon .../>: no stats element */
  const char *end = strstr(gt, "</memballoon>");
  const char *st = strstr(gt, "<stats period='");
  if (st == NULL || (end != NULL && st > end))
    return true;
  st += strlen("<stats period='");
  return strtoul(st, NULL, 10) == 0;
}

void lv_enable_period(lv_priv_t *p, virDomainPtr dom, const char *name) {
  p->requests++;
  char *xml = virDomainGetXMLDesc(dom, 0); /* owned */
  if (xml == NULL) {
    virResetLastError();
    return;
  }
  bool off = lv_period_off(xml);
  free(xml);
  if (!off)
    return;
  p->requests++;
  if (virDomainSetMemoryStatsPeriod(dom, (int)p->period_s,
                                    VIR_DOMAIN_AFFECT_LIVE) == 0)
    lv_log(p, LOG_INFO,
           "libvirt: domain %s: balloon stats period was 0 (off); set to %u s",
           name, p->period_s);
  else
    lv_log(p, LOG_WARNING,
           "libvirt: domain %s: balloon stats period is 0 (off) and setting "
           "it failed: %s",
           name, lv_errmsg());
}
