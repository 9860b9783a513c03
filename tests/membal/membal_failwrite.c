/*
 * Test-only LD_PRELOAD library for test_membal_backendfail.sh: makes
 * libxenstore's xs_write() fail with EACCES for the one path named in the
 * file $MBT_FAIL_FILE (first line; empty or missing file = no failure), so
 * that one domain's balloon target cannot be set while the real xenstored
 * (which grants dom0 every write) keeps serving every other request.
 * The real xs_write is looked up in libxenstore itself: collectd loads
 * that library only with the plugins, out of RTLD_NEXT's reach.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

typedef bool (*xs_write_fn)(struct xs_handle *, xs_transaction_t, const char *,
                            const void *, unsigned int);

static bool fail_this(const char *path) {
  const char *file = getenv("MBT_FAIL_FILE");
  if (file == NULL)
    return false;
  FILE *f = fopen(file, "r");
  if (f == NULL)
    return false;
  char want[512] = "";
  bool hit = fgets(want, sizeof(want), f) != NULL;
  fclose(f);
  want[strcspn(want, "\n")] = 0;
  return hit && want[0] != 0 && strcmp(want, path) == 0;
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path,
              const void *data, unsigned int len) {
  static xs_write_fn real;
  if (real == NULL) {
    void *lib = dlopen("libxenstore.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib != NULL)
      real = (xs_write_fn)dlsym(lib, "xs_write");
    if (real == NULL) {
      errno = ENOSYS;
      return false;
    }
  }
  if (path != NULL && fail_this(path)) {
    errno = EACCES;
    return false;
  }
  return real(h, t, path, data, len);
}
