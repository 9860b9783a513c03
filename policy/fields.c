/* Names: sample fields, reasons, policies; the balloon driver's floor. */
#include <string.h>

#include "policy_impl.h"

static const char *const mb_field_keys[MB_F_COUNT] = {
    [MB_F_MEMTOTAL] = "MemTotal",
    [MB_F_MEMFREE] = "MemFree",
    [MB_F_MEMAVAILABLE] = "MemAvailable",
    [MB_F_BUFFERS] = "Buffers",
    [MB_F_CACHED] = "Cached",
    [MB_F_SWAPCACHED] = "SwapCached",
    [MB_F_ACTIVE] = "Active",
    [MB_F_INACTIVE] = "Inactive",
    [MB_F_ACTIVE_ANON] = "Active(anon)",
    [MB_F_INACTIVE_ANON] = "Inactive(anon)",
    [MB_F_ACTIVE_FILE] = "Active(file)",
    [MB_F_INACTIVE_FILE] = "Inactive(file)",
    [MB_F_SWAPTOTAL] = "SwapTotal",
    [MB_F_SWAPFREE] = "SwapFree",
    [MB_F_DIRTY] = "Dirty",
    [MB_F_ANONPAGES] = "AnonPages",
    [MB_F_SHMEM] = "Shmem",
    [MB_F_SLAB] = "Slab",
    [MB_F_SRECLAIMABLE] = "SReclaimable",
    [MB_F_SUNRECLAIM] = "SUnreclaim",
    [MB_F_KERNELSTACK] = "KernelStack",
    [MB_F_PAGETABLES] = "PageTables",
    [MB_F_COMMITTED_AS] = "Committed_AS",
    [MB_F_PSWPIN] = "pswpin",
    [MB_F_PSWPOUT] = "pswpout",
    [MB_F_PGMAJFAULT] = "pgmajfault",
    [MB_F_PGFAULT] = "pgfault",
    [MB_F_WORKINGSET_REFAULT_ANON] = "workingset_refault_anon",
    [MB_F_WORKINGSET_REFAULT_FILE] = "workingset_refault_file",
    [MB_F_WORKINGSET_REFAULT] = "workingset_refault",
    [MB_F_PSI_SOME_AVG10] = "psi_some_avg10_bp",
    [MB_F_PSI_SOME_TOTAL] = "psi_some_total_us",
    [MB_F_PSI_FULL_AVG10] = "psi_full_avg10_bp",
    [MB_F_PSI_FULL_TOTAL] = "psi_full_total_us",
};

mb_field_kind_t mb_field_kind(mb_field_t f) {
  if ((unsigned)f < MB_F_FIRST_VMSTAT)
    return MB_FK_KIB;
  if (f == MB_F_PSI_SOME_AVG10 || f == MB_F_PSI_FULL_AVG10)
    return MB_FK_BP;
  if (f == MB_F_PSI_SOME_TOTAL || f == MB_F_PSI_FULL_TOTAL)
    return MB_FK_US;
  return MB_FK_COUNT;
}

const char *mb_field_key(mb_field_t f) {
  if ((unsigned)f >= MB_F_COUNT)
    return NULL;
  return mb_field_keys[f];
}

int mb_field_from_key(const char *key, size_t keylen) {
  for (int f = 0; f < MB_F_COUNT; f++) {
    if (strlen(mb_field_keys[f]) == keylen &&
        memcmp(mb_field_keys[f], key, keylen) == 0)
      return f;
  }
  return -1;
}

static const char *const mb_reason_names[MB_R_COUNT] = {
    [MB_R_UNCHANGED] = "unchanged",     [MB_R_GROW_PRESSURE] = "grow-pressure",
    [MB_R_SHRINK_IDLE] = "shrink-idle", [MB_R_CLAMPED_MIN] = "clamped-min",
    [MB_R_CLAMPED_MAX] = "clamped-max", [MB_R_STALE_FROZEN] = "stale-frozen",
    [MB_R_EMERGENCY] = "emergency",     [MB_R_DEADBAND] = "deadband",
    [MB_R_STEP_CAPPED] = "step-capped", [MB_R_POOL_LIMIT] = "pool-limit",
};

const char *mb_reason_name(mb_reason_t r) {
  if ((unsigned)r >= MB_R_COUNT)
    return "invalid";
  return mb_reason_names[r];
}

static const char *const mb_policy_names[MB_POLICY_COUNT] = {
    [MB_POLICY_CAGMA] = "cagma",
    [MB_POLICY_TAX] = "tax",
    [MB_POLICY_SELFBALLOON] = "selfballoon",
};

const char *mb_policy_name(mb_policy_kind_t k) {
  if ((unsigned)k >= MB_POLICY_COUNT)
    return NULL;
  return mb_policy_names[k];
}

int mb_policy_from_name(const char *name, mb_policy_kind_t *out) {
  if (name == NULL)
    return -1;
  for (int k = 0; k < MB_POLICY_COUNT; k++) {
    if (strcmp(name, mb_policy_names[k]) == 0) {
      if (out)
        *out = (mb_policy_kind_t)k;
      return 0;
    }
  }
  return -1;
}

/* Integer MiB arithmetic on purpose: this is the heuristic xenballoond
 * evaluated in shell, and the floor must come out the same. */
uint64_t mb_balloon_min_kib(uint64_t max_kib) {
  uint64_t max_mib = max_kib / 1024;
  uint64_t pages = max_kib / MB_PAGE_KIB;
  uint64_t min_mib;
  if (max_mib < 125)
    min_mib = 8 + (pages >> 9);
  else if (max_mib < 500)
    min_mib = 40 + (pages >> 10);
  else if (max_mib < 2000)
    min_mib = 104 + (pages >> 11);
  else
    min_mib = 296 + (pages >> 13);
  return mb_min_u64(min_mib * 1024, max_kib);
}
