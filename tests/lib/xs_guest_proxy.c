/*
 * xs-guest-proxy: play guest domain <domid> towards a real xenstored that
 * runs under xsshim, so that tests can act AS that guest.
 *
 * xenstored treats every unix-socket client as dom0. A guest talks to it
 * through a shared ring page instead, and xenstored then applies the
 * guest's permissions, quotas and relative paths (/local/domain/<domid>/).
 * This program does what a guest kernel's xenbus driver does:
 *
 *   - introduces the domain to xenstored (XS_INTRODUCE, as a toolstack
 *     does after building a domain), using the ring page the shim maps
 *     from $XENSTORED_RUNDIR/ring-<domid>;
 *   - listens on a unix socket; a client (libxenstore with
 *     XENSTORED_PATH=<socket>, e.g. the xenstore-* tools or guestmem)
 *     speaks the ordinary xenstore wire protocol there, and its messages
 *     are relayed through the ring, one client at a time;
 *   - wakes xenstored through the shim's event-channel FIFO and is woken
 *     by the shim's notify-<domid> FIFO.
 *
 * When a client leaves, its watches are reset (XS_RESET_WATCHES) so the
 * next client starts clean. When xenstored goes away (restart), the client
 * is disconnected (as libxenstore clients see on dom0) and the domain is
 * introduced again to the next xenstored.
 *
 * usage: xs-guest-proxy <domid> <listen-socket>
 * env:   XENSTORED_RUNDIR (the shim's directory), XENSTORED_PATH (dom0
 *        socket of that xenstored)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#define HDR sizeof(struct xsd_sockmsg)
#define MSG_MAX (HDR + XENSTORE_PAYLOAD_MAX)

static volatile sig_atomic_t stop;
static void on_signal(int sig) { stop = 1; }

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("xs-guest-proxy: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("xs-guest-proxy: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

typedef struct {
  unsigned domid;
  const char *rundir;
  const char *dom0_socket;
  struct xenstore_domain_interface *ring; /* shared with xenstored */
  int evtchn_fd;                          /* write side: wakes xenstored */
  int notify_fd;                          /* read side: xenstored wakes us */
  int dom0_fd;   /* privileged connection; EOF = xenstored gone */
  int listen_fd; /* guest clients */
  int client_fd; /* -1 when none */
  /* client -> ring: only whole messages go in, so a client leaving in the
   * middle of one cannot corrupt the stream */
  char in[MSG_MAX];
  size_t in_len;
  /* bytes of the current message already copied into the ring */
  size_t in_sent;
  /* ring -> nobody (no client): drop whole messages */
  char drop_hdr[HDR];
  size_t drop_hdr_len;
  size_t drop_left;
  /* After a client left: its late replies and watch events are dropped
   * until the reply to our XS_RESET_WATCHES, which comes after all of them
   * (xenstored answers one connection's requests in order). No new client
   * is accepted before that. */
  bool draining;
  bool reset_pending; /* the reset still has to be queued */
  uint32_t reset_id;
  uint32_t req_id;
} proxy_t;

static void kick(proxy_t *p) {
  uint32_t port = 0;
  if (write(p->evtchn_fd, &port, sizeof(port)) < 0 && errno != EAGAIN)
    note("waking xenstored: %s", strerror(errno));
}

static void ring_reset(proxy_t *p) { memset(p->ring, 0, sizeof(*p->ring)); }

static int connect_unix(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(a.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *b = buf;
  while (len > 0) {
    ssize_t n = write(fd, b, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    b += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads one reply on the dom0 connection; 0 when it is not an error. */
static int dom0_reply(proxy_t *p, char *what) {
  struct xsd_sockmsg h;
  char body[256];
  size_t got = 0;
  while (got < sizeof(h)) {
    ssize_t n = read(p->dom0_fd, (char *)&h + got, sizeof(h) - got);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  if (h.len >= sizeof(body))
    return -1;
  got = 0;
  while (got < h.len) {
    ssize_t n = read(p->dom0_fd, body + got, h.len - got);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  body[h.len] = '\0';
  if (h.type == XS_ERROR) {
    note("%s refused: %s", what, body);
    return -1;
  }
  return 0;
}

/* Connects to xenstored as dom0 and introduces the domain. */
static int introduce(proxy_t *p) {
  char body[64];
  p->dom0_fd = connect_unix(p->dom0_socket);
  if (p->dom0_fd < 0)
    return -1;
  ring_reset(p);
  /* domid, the ring's "mfn" (unused by the shim) and the guest's port */
  int len = snprintf(body, sizeof(body), "%u%c%u%c%u", p->domid, 0, 1u, 0, 1u);
  struct xsd_sockmsg h = {.type = XS_INTRODUCE,
                          .req_id = ++p->req_id,
                          .tx_id = 0,
                          .len = (uint32_t)len + 1};
  if (write_all(p->dom0_fd, &h, sizeof(h)) != 0 ||
      write_all(p->dom0_fd, body, (size_t)len + 1) != 0 ||
      dom0_reply(p, "XS_INTRODUCE") != 0) {
    close(p->dom0_fd);
    p->dom0_fd = -1;
    return -1;
  }
  note("domain %u introduced to xenstored at %s", p->domid, p->dom0_socket);
  return 0;
}

static void client_gone(proxy_t *p, const char *why) {
  if (p->client_fd < 0)
    return;
  note("client left (%s)", why);
  close(p->client_fd);
  p->client_fd = -1;
  /* a half-relayed request cannot be taken back: finish it, then reset */
  if (p->in_sent == 0)
    p->in_len = 0;
  p->draining = true;
  p->drop_hdr_len = 0;
  p->drop_left = 0;
  p->reset_pending = true;
}

/* Copies pending client bytes into the request ring. */
static void push_requests(proxy_t *p) {
  struct xenstore_domain_interface *r = p->ring;
  bool moved = false;
  for (;;) {
    if (p->in_len < HDR)
      break;
    struct xsd_sockmsg h;
    memcpy(&h, p->in, HDR);
    size_t total = HDR + h.len;
    if (p->in_len < total)
      break;
    while (p->in_sent < total) {
      uint32_t cons = __atomic_load_n(&r->req_cons, __ATOMIC_ACQUIRE);
      uint32_t prod = r->req_prod;
      uint32_t space = XENSTORE_RING_SIZE - (prod - cons);
      if (space == 0)
        goto out;
      uint32_t off = MASK_XENSTORE_IDX(prod);
      uint32_t chunk = XENSTORE_RING_SIZE - off;
      if (chunk > space)
        chunk = space;
      if (chunk > total - p->in_sent)
        chunk = (uint32_t)(total - p->in_sent);
      memcpy(r->req + off, p->in + p->in_sent, chunk);
      __atomic_store_n(&r->req_prod, prod + chunk, __ATOMIC_RELEASE);
      p->in_sent += chunk;
      moved = true;
    }
    memmove(p->in, p->in + total, p->in_len - total);
    p->in_len -= total;
    p->in_sent = 0;
  }
out:
  if (moved)
    kick(p);
}

/* A whole message was dropped: was it the reply to our reset? */
static void drop_done(proxy_t *p) {
  struct xsd_sockmsg h;
  memcpy(&h, p->drop_hdr, HDR);
  p->drop_hdr_len = 0;
  if (h.type != XS_WATCH_EVENT && h.req_id == p->reset_id && !p->reset_pending)
    p->draining = false;
}

/* Drops whole messages from the response stream while no client is
 * connected (the replies to the reset and stray watch events). */
static void drop_bytes(proxy_t *p, const char *b, size_t n) {
  while (n > 0) {
    if (p->drop_left == 0 && p->drop_hdr_len < HDR) {
      size_t k = HDR - p->drop_hdr_len;
      if (k > n)
        k = n;
      memcpy(p->drop_hdr + p->drop_hdr_len, b, k);
      p->drop_hdr_len += k;
      b += k;
      n -= k;
      if (p->drop_hdr_len == HDR) {
        p->drop_left = ((struct xsd_sockmsg *)p->drop_hdr)->len;
        if (p->drop_left == 0)
          drop_done(p);
      }
      continue;
    }
    size_t k = p->drop_left < n ? p->drop_left : n;
    b += k;
    n -= k;
    p->drop_left -= k;
    if (p->drop_left == 0)
      drop_done(p);
  }
}

/* Copies responses and watch events out of the ring. */
static void pull_responses(proxy_t *p) {
  struct xenstore_domain_interface *r = p->ring;
  bool moved = false;
  for (;;) {
    uint32_t prod = __atomic_load_n(&r->rsp_prod, __ATOMIC_ACQUIRE);
    uint32_t cons = r->rsp_cons;
    if (prod == cons || prod - cons > XENSTORE_RING_SIZE)
      break;
    uint32_t off = MASK_XENSTORE_IDX(cons);
    uint32_t chunk = XENSTORE_RING_SIZE - off;
    if (chunk > prod - cons)
      chunk = prod - cons;
    if (p->client_fd >= 0) {
      ssize_t n = write(p->client_fd, r->rsp + off, chunk);
      if (n < 0) {
        if (errno == EAGAIN)
          break;
        client_gone(p, strerror(errno));
        continue;
      }
      chunk = (uint32_t)n;
    } else {
      drop_bytes(p, r->rsp + off, chunk);
    }
    __atomic_store_n(&r->rsp_cons, cons + chunk, __ATOMIC_RELEASE);
    moved = true;
  }
  if (moved)
    kick(p); /* xenstored may be waiting for room to write more */
}

static void queue_reset(proxy_t *p) {
  if (!p->reset_pending || p->in_len != 0)
    return;
  struct xsd_sockmsg h = {
      .type = XS_RESET_WATCHES, .req_id = ++p->req_id, .tx_id = 0, .len = 1};
  memcpy(p->in, &h, HDR);
  p->in[HDR] = '\0';
  p->in_len = HDR + 1;
  p->in_sent = 0;
  p->reset_id = p->req_id;
  p->reset_pending = false;
}

static void xenstored_gone(proxy_t *p) {
  note("xenstored went away; waiting for the next one");
  close(p->dom0_fd);
  p->dom0_fd = -1;
  if (p->client_fd >= 0) {
    close(p->client_fd);
    p->client_fd = -1;
  }
  p->in_len = 0;
  p->in_sent = 0;
  p->reset_pending = false;
  p->draining = false;
  p->drop_hdr_len = 0;
  p->drop_left = 0;
}

int main(int argc, char **argv) {
  proxy_t p = {.client_fd = -1, .dom0_fd = -1};
  char path[4096];

  if (argc != 3)
    die("usage: xs-guest-proxy <domid> <listen-socket>");
  p.domid = (unsigned)strtoul(argv[1], NULL, 10);
  p.rundir = getenv("XENSTORED_RUNDIR");
  p.dom0_socket = getenv("XENSTORED_PATH");
  if (!p.rundir || !p.dom0_socket)
    die("XENSTORED_RUNDIR and XENSTORED_PATH must be set");
  /* a test killed hard must not leave us behind */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1)
    return 0;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  snprintf(path, sizeof(path), "%s/ring-%u", p.rundir, p.domid);
  int rfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (rfd < 0 || ftruncate(rfd, 4096) != 0)
    die("%s: %s", path, strerror(errno));
  p.ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
  if (p.ring == MAP_FAILED)
    die("mmap %s: %s", path, strerror(errno));
  close(rfd);

  snprintf(path, sizeof(path), "%s/notify-%u", p.rundir, p.domid);
  if (mkfifo(path, 0600) != 0 && errno != EEXIST)
    die("mkfifo %s: %s", path, strerror(errno));
  p.notify_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (p.notify_fd < 0)
    die("%s: %s", path, strerror(errno));

  snprintf(path, sizeof(path), "%s/evtchn", p.rundir);
  p.evtchn_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (p.evtchn_fd < 0)
    die("%s: %s (is xenstored running under xsshim?)", path, strerror(errno));

  if (introduce(&p) != 0)
    die("cannot introduce domain %u to %s: %s", p.domid, p.dom0_socket,
        strerror(errno));

  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(argv[2]) >= sizeof(a.sun_path))
    die("socket path too long");
  strcpy(a.sun_path, argv[2]);
  unlink(argv[2]);
  p.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p.listen_fd < 0 || bind(p.listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
      listen(p.listen_fd, 8))
    die("listen on %s: %s", argv[2], strerror(errno));

  while (!stop) {
    struct pollfd fds[4];
    int nfds = 0;
    int i_notify = nfds;
    fds[nfds++] = (struct pollfd){.fd = p.notify_fd, .events = POLLIN};
    int i_dom0 = -1, i_listen = -1, i_client = -1;
    if (p.dom0_fd >= 0) {
      i_dom0 = nfds;
      fds[nfds++] = (struct pollfd){.fd = p.dom0_fd, .events = POLLIN};
    }
    /* one client at a time, and none until the previous one's reset */
    if (p.dom0_fd >= 0 && p.client_fd < 0 && !p.draining) {
      i_listen = nfds;
      fds[nfds++] = (struct pollfd){.fd = p.listen_fd, .events = POLLIN};
    }
    if (p.client_fd >= 0 && p.in_len < sizeof(p.in)) {
      i_client = nfds;
      fds[nfds++] = (struct pollfd){.fd = p.client_fd, .events = POLLIN};
    }
    /* The notify FIFO is the fast path; the timeout is a safety net and
     * the retry period while xenstored is away. */
    int timeout = p.in_len > 0 ? 10 : 100;
    if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
      die("poll: %s", strerror(errno));

    if (fds[i_notify].revents & POLLIN) {
      char junk[64];
      while (read(p.notify_fd, junk, sizeof(junk)) > 0)
        ;
    }
    if (p.dom0_fd < 0) {
      if (introduce(&p) != 0)
        continue;
    } else if (i_dom0 >= 0 && fds[i_dom0].revents) {
      xenstored_gone(&p);
      continue;
    }
    if (i_listen >= 0 && (fds[i_listen].revents & POLLIN)) {
      p.client_fd = accept4(p.listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (p.client_fd >= 0)
        note("client connected");
    }
    if (i_client >= 0 && fds[i_client].revents) {
      ssize_t n = read(p.client_fd, p.in + p.in_len, sizeof(p.in) - p.in_len);
      if (n <= 0) {
        client_gone(&p, n == 0 ? "closed" : strerror(errno));
      } else {
        p.in_len += (size_t)n;
        if (p.in_len >= HDR) {
          struct xsd_sockmsg h;
          memcpy(&h, p.in, HDR);
          if (h.len > XENSTORE_PAYLOAD_MAX)
            client_gone(&p, "oversized message");
        }
      }
    }
    push_requests(&p);
    if (p.client_fd < 0 && p.reset_pending) {
      if (p.in_sent == 0)
        p.in_len = 0; /* whatever a departed client left unsent */
      if (p.in_len == 0) {
        queue_reset(&p);
        push_requests(&p);
      }
    }
    pull_responses(&p);
  }
  unlink(argv[2]);
  return 0;
}
