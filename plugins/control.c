/* membal's control socket (see control.h). */
#define _GNU_SOURCE /* struct ucred */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct mb_control {
  int fd;         /* listening socket */
  int stop_fd[2]; /* a byte on [1] stops the thread */
  char *path;     /* owned */
  mb_control_handler_t handler;
  void *ud;
  pthread_t thread;
  bool running;
};

static void ctl_write_all(int fd, const char *s, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* the peer left, or is too slow (SO_SNDTIMEO) */
    s += n;
    len -= (size_t)n;
  }
}

/* Reads one line; -1 when none arrived in time, it is too long, or it
 * holds a NUL. */
static int ctl_read_line(int fd, char *buf, size_t size) {
  size_t len = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    if (memchr(buf + len, 0, (size_t)n) != NULL)
      return -1;
    len += (size_t)n;
    buf[len] = 0;
    char *nl = strchr(buf, '\n');
    if (nl != NULL) {
      *nl = 0;
      return 0;
    }
    if (len >= size - 1)
      return -1;
  }
}

static void ctl_serve(mb_control_t *ctl, int fd) {
  struct timeval tv = {.tv_sec = MB_CONTROL_TIMEOUT_S};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct ucred cred;
  socklen_t cl = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    static const char no[] = "error permission denied: root only\n";
    ctl_write_all(fd, no, sizeof(no) - 1);
    return;
  }
  char line[MB_CONTROL_LINE];
  if (ctl_read_line(fd, line, sizeof(line)) != 0) {
    static const char bad[] = "error no request: one line of at most 1023 "
                              "bytes within 5 s\n";
    ctl_write_all(fd, bad, sizeof(bad) - 1);
    return;
  }
  mb_strbuf_t reply = {0};
  ctl->handler(line, cred.uid, &reply, ctl->ud);
  if (reply.failed || reply.len == 0) {
    static const char oom[] = "error out of memory\n";
    ctl_write_all(fd, oom, sizeof(oom) - 1);
  } else {
    ctl_write_all(fd, reply.s, reply.len);
  }
  mb_sb_dispose(&reply);
}

static void *ctl_thread(void *arg) {
  mb_control_t *ctl = arg;
  for (;;) {
    struct pollfd p[2] = {{.fd = ctl->fd, .events = POLLIN},
                          {.fd = ctl->stop_fd[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[1].revents)
      break;
    if (!(p[0].revents & POLLIN))
      continue;
    int fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    ctl_serve(ctl, fd);
    close(fd);
  }
  return NULL;
}

mb_control_t *mb_control_start(const char *path, mb_control_handler_t handler,
                               void *ud, char *err, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(err, errlen, "ControlSocket \"%s\" is too long", path);
    return NULL;
  }
  strcpy(sa.sun_path, path);
  mb_control_t *ctl = calloc(1, sizeof(*ctl)); /* owned until returned */
  if (ctl == NULL || (ctl->path = strdup(path)) == NULL) {
    snprintf(err, errlen, "out of memory");
    free(ctl);
    return NULL;
  }
  ctl->fd = -1;
  ctl->stop_fd[0] = ctl->stop_fd[1] = -1;
  ctl->handler = handler;
  ctl->ud = ud;
  struct stat stb;
  if (lstat(path, &stb) == 0) {
    if (!S_ISSOCK(stb.st_mode)) {
      snprintf(err, errlen, "%s exists and is not a socket", path);
      goto fail;
    }
    /* A socket nobody answers on was left by a daemon that did not stop
     * cleanly: replaced. One that answers belongs to a running balancer. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live =
        probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (probe >= 0)
      close(probe);
    if (live) {
      snprintf(err, errlen, "%s is in use by another running membal", path);
      goto fail;
    }
    unlink(path);
  }
  if (pipe2(ctl->stop_fd, O_CLOEXEC) != 0 ||
      (ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    goto fail;
  }
  /* Created 0600 from the start: no moment where others may connect. */
  mode_t old = umask(0177);
  int rc = bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa));
  int bind_errno = errno;
  umask(old);
  if (rc != 0) {
    snprintf(err, errlen, "cannot bind %s: %s", path, strerror(bind_errno));
    goto fail;
  }
  if (chmod(path, 0600) != 0 || listen(ctl->fd, 16) != 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
    unlink(path);
    goto fail;
  }
  if (pthread_create(&ctl->thread, NULL, ctl_thread, ctl) != 0) {
    snprintf(err, errlen, "cannot start the control thread");
    unlink(path);
    goto fail;
  }
  ctl->running = true;
  return ctl;
fail:
  mb_control_stop(ctl);
  return NULL;
}

void mb_control_stop(mb_control_t *ctl) {
  if (ctl == NULL)
    return;
  if (ctl->running) {
    char b = 1;
    if (write(ctl->stop_fd[1], &b, 1) == 1)
      pthread_join(ctl->thread, NULL);
    unlink(ctl->path);
  }
  if (ctl->fd >= 0)
    close(ctl->fd);
  for (int i = 0; i < 2; i++)
    if (ctl->stop_fd[i] >= 0)
      close(ctl->stop_fd[i]);
  free(ctl->path);
  free(ctl);
}
