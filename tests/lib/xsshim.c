/*
 * xsshim: lets the real xenstored 4.17 run without a hypervisor.
 *
 * LD_PRELOAD this into xenstored. It replaces the few libxenctrl,
 * libxengnttab and libxenevtchn calls xenstored makes and the two /proc/xen
 * files it opens (see DESIGN.md). Everything else (the store, permissions,
 * watches, transactions, the unix socket protocol) is the real daemon.
 *
 * State lives under $XENSTORED_RUNDIR so that several daemons can run side
 * by side and a test can reach into it:
 *   ring-<domid>  one page, the xenbus ring of an introduced guest domain
 *                 (mapped MAP_SHARED so a test process can speak the ring
 *                 protocol as that guest);
 *   evtchn        FIFO whose read end is xenstored's event channel fd: any
 *                 4-byte port written into it wakes xenstored, which then
 *                 looks at every domain's ring;
 *   notify-<domid> FIFO, when someone (xs-guest-proxy) plays that guest:
 *                 xenstored's notifications to the domain arrive there as
 *                 one byte each;
 *   dead-<domid>  when this file exists xc_domain_getinfo reports the domain
 *                 as dying, so poking the VIRQ_DOM_EXC port makes xenstored
 *                 release it (fires @releaseDomain) as on a real host.
 *
 * Built without sanitizers: xenstored itself is not instrumented.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

/* Port numbers are arbitrary without a hypervisor; keep them distinct so
 * xenstored can tell the VIRQ from domain ports. */
#define SHIM_VIRQ_PORT 1000u
#define SHIM_FIRST_PORT 1001u

static long shim_page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? ps : 4096;
}

static const char *shim_rundir(void) {
  const char *d = getenv("XENSTORED_RUNDIR");
  return d && *d ? d : "/var/run/xenstored";
}

static void shim_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("xsshim: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* An anonymous in-memory file of one page holding text (or zeros). Returns
 * an fd the caller owns, or -1. */
static int shim_memfile(const char *name, const char *text) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0)
    return -1;
  if (ftruncate(fd, text ? (off_t)strlen(text) : shim_page_size()) != 0)
    goto fail;
  if (text) {
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
      goto fail;
    if (lseek(fd, 0, SEEK_SET) != 0)
      goto fail;
  }
  return fd;
fail:
  close(fd);
  return -1;
}

/* Returns -2 when path is not one of ours (caller forwards to libc). */
static int shim_open_special(const char *path) {
  if (path == NULL)
    return -2;
  if (strcmp(path, "/proc/xen/xsd_port") == 0)
    return shim_memfile("xsd_port", "1\n");
  if (strcmp(path, "/proc/xen/xsd_kva") == 0)
    return shim_memfile("xsd_kva", NULL);
  return -2;
}

static int shim_mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0;
}

SHIM_EXPORT int open(const char *path, int flags, ...) {
  static int (*real_open)(const char *, int, ...);
  va_list ap;
  va_start(ap, flags);
  int mode = shim_mode_arg(flags, ap);
  va_end(ap);
  int fd = shim_open_special(path);
  if (fd != -2)
    return fd;
  if (!real_open)
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
  return real_open(path, flags, mode);
}

SHIM_EXPORT int open64(const char *path, int flags, ...) {
  static int (*real_open64)(const char *, int, ...);
  va_list ap;
  va_start(ap, flags);
  int mode = shim_mode_arg(flags, ap);
  va_end(ap);
  int fd = shim_open_special(path);
  if (fd != -2)
    return fd;
  if (!real_open64)
    real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
  return real_open64(path, flags, mode);
}

SHIM_EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  static int (*real_openat)(int, const char *, int, ...);
  va_list ap;
  va_start(ap, flags);
  int mode = shim_mode_arg(flags, ap);
  va_end(ap);
  int fd = shim_open_special(path);
  if (fd != -2)
    return fd;
  if (!real_openat)
    real_openat =
        (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
  return real_openat(dirfd, path, flags, mode);
}

/* ---- libxenctrl ---------------------------------------------------------
 * xenstored only needs a handle and "is this domain still alive". */

struct shim_xc {
  int unused;
};

SHIM_EXPORT xc_interface *xc_interface_open(xentoollog_logger *logger,
                                            xentoollog_logger *dombuild_logger,
                                            unsigned open_flags) {
  return (xc_interface *)calloc(1, sizeof(struct shim_xc));
}

SHIM_EXPORT int xc_interface_close(xc_interface *xch) {
  free(xch);
  return 0;
}

static int shim_domain_dead(uint32_t domid) {
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/dead-%u", shim_rundir(), domid);
  return access(path, F_OK) == 0;
}

SHIM_EXPORT int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                                  unsigned int max_doms, xc_dominfo_t *info) {
  if (max_doms == 0)
    return 0;
  memset(info, 0, sizeof(*info));
  info->domid = first_domid;
  if (shim_domain_dead(first_domid)) {
    info->dying = 1;
    info->shutdown = 1;
  } else {
    info->running = 1;
  }
  return 1;
}

/* ---- libxengnttab -------------------------------------------------------
 * A guest's ring page is a file under the rundir, shared with whoever
 * wants to play that guest. */

struct shim_gnttab {
  int unused;
};

SHIM_EXPORT xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                             unsigned open_flags) {
  return (xengnttab_handle *)calloc(1, sizeof(struct shim_gnttab));
}

SHIM_EXPORT int xengnttab_close(xengnttab_handle *xgt) {
  free(xgt);
  return 0;
}

SHIM_EXPORT int xengnttab_set_max_grants(xengnttab_handle *xgt,
                                         uint32_t nr_grants) {
  return 0;
}

SHIM_EXPORT void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                                          uint32_t ref, int prot) {
  char path[PATH_MAX];
  long ps = shim_page_size();
  void *addr = NULL;
  int fd = -1; /* owned here */

  snprintf(path, sizeof(path), "%s/ring-%u", shim_rundir(), domid);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    shim_log("cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  if (ftruncate(fd, ps) != 0) {
    shim_log("cannot size %s: %s", path, strerror(errno));
    goto out;
  }
  addr = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    shim_log("cannot map %s: %s", path, strerror(errno));
    addr = NULL;
  }
out:
  if (fd >= 0)
    close(fd);
  if (!addr)
    errno = ENOMEM;
  return addr;
}

SHIM_EXPORT int xengnttab_unmap(xengnttab_handle *xgt, void *start_address,
                                uint32_t count) {
  return munmap(start_address, (size_t)count * (size_t)shim_page_size());
}

/* ---- libxenevtchn -------------------------------------------------------
 * The fd xenstored polls is the read side of a FIFO in the rundir; nothing
 * writes to it unless a test wants to wake xenstored up. */

#define SHIM_MAX_PORTS 4096

struct shim_evtchn {
  int fd; /* owned */
  unsigned next_port;
  uint32_t port_domid[SHIM_MAX_PORTS]; /* local port - FIRST -> domid */
};

static xenevtchn_handle *shim_evtchn_new(void) {
  char path[PATH_MAX];
  struct shim_evtchn *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  h->next_port = SHIM_FIRST_PORT;
  snprintf(path, sizeof(path), "%s/evtchn", shim_rundir());
  if (mkfifo(path, 0600) != 0 && errno != EEXIST) {
    shim_log("cannot create %s: %s", path, strerror(errno));
    goto fail;
  }
  /* O_RDWR keeps the FIFO open with no writer, so poll never sees EOF. */
  h->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (h->fd < 0) {
    shim_log("cannot open %s: %s", path, strerror(errno));
    goto fail;
  }
  return (xenevtchn_handle *)h;
fail:
  free(h);
  return NULL;
}

SHIM_EXPORT xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                             unsigned int flags) {
  return shim_evtchn_new();
}

SHIM_EXPORT xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger,
                                               int fd, unsigned open_flags) {
  /* Only used on live update, which needs a hypervisor anyway. */
  return shim_evtchn_new();
}

SHIM_EXPORT int xenevtchn_close(xenevtchn_handle *xce) {
  struct shim_evtchn *h = (struct shim_evtchn *)xce;
  if (!h)
    return 0;
  close(h->fd);
  free(h);
  return 0;
}

SHIM_EXPORT int xenevtchn_fd(xenevtchn_handle *xce) {
  return ((struct shim_evtchn *)xce)->fd;
}

SHIM_EXPORT int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port) {
  struct shim_evtchn *h = (struct shim_evtchn *)xce;
  char path[PATH_MAX];
  if (port < SHIM_FIRST_PORT || port - SHIM_FIRST_PORT >= SHIM_MAX_PORTS ||
      port >= h->next_port)
    return 0;
  snprintf(path, sizeof(path), "%s/notify-%u", shim_rundir(),
           h->port_domid[port - SHIM_FIRST_PORT]);
  /* Nobody plays this domain (no FIFO, or no reader: ENOENT/ENXIO) or the
   * FIFO is full of unread wake-ups (EAGAIN): nothing to do either way. */
  int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) {
    char b = 1;
    if (write(fd, &b, 1) < 0 && errno != EAGAIN)
      shim_log("notify %s: %s", path, strerror(errno));
    close(fd);
  }
  return 0;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_interdomain(
    xenevtchn_handle *xce, uint32_t domid, evtchn_port_t remote_port) {
  struct shim_evtchn *h = (struct shim_evtchn *)xce;
  if (h->next_port - SHIM_FIRST_PORT >= SHIM_MAX_PORTS) {
    errno = ENOSPC;
    return -1;
  }
  h->port_domid[h->next_port - SHIM_FIRST_PORT] = domid;
  return (xenevtchn_port_or_error_t)h->next_port++;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce,
                                                          unsigned int virq) {
  return (xenevtchn_port_or_error_t)SHIM_VIRQ_PORT;
}

SHIM_EXPORT int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port) {
  return 0;
}

SHIM_EXPORT xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce) {
  struct shim_evtchn *h = (struct shim_evtchn *)xce;
  uint32_t port;
  ssize_t n = read(h->fd, &port, sizeof(port));
  if (n != (ssize_t)sizeof(port))
    return (xenevtchn_port_or_error_t)SHIM_FIRST_PORT;
  return (xenevtchn_port_or_error_t)port;
}

SHIM_EXPORT int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port) {
  return 0;
}
