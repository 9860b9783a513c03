/* The libvirt backend's table of domains (by UUID): the sequence numbers
 * it synthesises, since virtio-balloon stats carry none (1 at first sight,
 * +1 whenever any statistic differs from the previous read by any handle),
 * the target last set, what was logged. */
#define _POSIX_C_SOURCE 200809L

#include "lv_impl.h"

#include <stdlib.h>
#include <string.h>

pthread_mutex_t lv_table_lock = PTHREAD_MUTEX_INITIALIZER;
static lv_dom_state_t *lv_table; /* guarded by lv_table_lock; lives as long
                                    as the process */
static size_t lv_table_n, lv_table_cap;

/* Caller holds lv_table_lock. The pointer is valid until it is released. */
lv_dom_state_t *lv_state(const unsigned char *uuid, double now) {
  for (size_t i = 0; i < lv_table_n; i++)
    if (memcmp(lv_table[i].uuid, uuid, VIR_UUID_BUFLEN) == 0) {
      lv_table[i].seen_s = now;
      return &lv_table[i];
    }
  /* Forget domains gone for long, so the table never grows past the
   * domains alive within LV_FORGET_S. */
  size_t j = 0;
  for (size_t i = 0; i < lv_table_n; i++)
    if (now - lv_table[i].seen_s <= LV_FORGET_S)
      lv_table[j++] = lv_table[i];
  lv_table_n = j;
  if (lv_table_n == lv_table_cap) {
    size_t cap = lv_table_cap ? 2 * lv_table_cap : 16;
    lv_dom_state_t *n = realloc(lv_table, cap * sizeof(*n));
    if (n == NULL)
      return NULL;
    lv_table = n;
    lv_table_cap = cap;
  }
  lv_dom_state_t *st = &lv_table[lv_table_n++];
  memset(st, 0, sizeof(*st));
  memcpy(st->uuid, uuid, VIR_UUID_BUFLEN);
  st->seen_s = now;
  return st;
}

void lv_seq_note(lv_dom_state_t *st, const unsigned long long *v,
                 uint32_t present) {
  size_t vsize = sizeof(st->prev);
  if (!st->have_prev || st->prev_present != present ||
      memcmp(st->prev, v, vsize) != 0) {
    st->seq++;
    memcpy(st->prev, v, vsize);
    st->prev_present = present;
    st->have_prev = true;
  }
}
