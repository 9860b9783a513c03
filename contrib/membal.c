/*
 * membal: the operator's command for a running balancer (the membal collectd
 * plugin), through its control socket (root only; plugins/control.h).
 *
 *   membal [-s SOCKET] status [--json]
 *   membal [-s SOCKET] hold NAME [DURATION]      DURATION: 90, 90s, 15m, 2h, 1d
 *   membal [-s SOCKET] release NAME
 *   membal [-s SOCKET] reserve SIZE [--for NAME] [--timeout DURATION]
 *                                                SIZE: 1024 (KiB), 512M, 1G
 *
 * reserve asks the balancer to keep SIZE out of its pool, so that it
 * shrinks guests until the hypervisor has SIZE free, and waits for that:
 * exit 0 once the hypervisor has SIZE free, 1 with the shortfall when the
 * timeout (default 120 s) passes first. The reservation stays until the
 * domain NAME holds SIZE (it was created) or the timeout passes.
 *
 * The socket is -s SOCKET, else $MEMBAL_SOCKET, else /run/membal.sock.
 * Exit: 0 done, 1 refused or failed (the reason on stderr), 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "membal_policy.h"

#define DEFAULT_SOCKET "/run/membal.sock"

static const char *sock_path = DEFAULT_SOCKET;

static void usage(void) {
  fprintf(stderr,
          "usage: membal [-s SOCKET] status [--json]\n"
          "       membal [-s SOCKET] hold NAME [DURATION]\n"
          "       membal [-s SOCKET] release NAME\n"
          "       membal [-s SOCKET] reserve SIZE [--for NAME] [--timeout "
          "DURATION]\n"
          "SIZE: KiB, or with K/M/G (KiB, MiB, GiB); DURATION: seconds, or "
          "with s/m/h/d\n"
          "SOCKET: the plugin's ControlSocket (default $MEMBAL_SOCKET or %s)\n",
          DEFAULT_SOCKET);
  exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One request, one reply (malloc'd, NUL-terminated). NULL with a message on
 * stderr when the balancer cannot be reached. */
static char *ask(const char *req) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof(sa.sun_path)) {
    fprintf(stderr, "membal: socket path too long: %s\n", sock_path);
    return NULL;
  }
  strcpy(sa.sun_path, sock_path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    int e = errno;
    fprintf(stderr, "membal: cannot reach the balancer at %s: %s%s\n",
            sock_path, strerror(e),
            e == EACCES ? " (root only)"
            : e == ENOENT || e == ECONNREFUSED
                ? " (is collectd running with the membal "
                  "plugin?)"
                : "");
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  char *reply = NULL; /* owned */
  size_t len = 0, cap = 0;
  size_t rl = strlen(req);
  char line[1100];
  snprintf(line, sizeof(line), "%s\n", req);
  if (rl >= 1023 || write(fd, line, rl + 1) != (ssize_t)(rl + 1)) {
    fprintf(stderr, "membal: cannot send the request: %s\n",
            rl >= 1023 ? "too long" : strerror(errno));
    close(fd);
    return NULL;
  }
  for (;;) {
    if (cap - len < 4096) {
      char *t = realloc(reply, cap + 65536);
      if (t == NULL) {
        fprintf(stderr, "membal: out of memory\n");
        free(reply);
        close(fd);
        return NULL;
      }
      reply = t;
      cap += 65536;
    }
    ssize_t n = read(fd, reply + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  if (reply == NULL || len == 0) {
    fprintf(stderr, "membal: the balancer closed without answering\n");
    free(reply);
    return NULL;
  }
  reply[len] = 0;
  return reply;
}

/* Sends req; on "ok" returns the reply (caller frees) with *rest at what
 * follows "ok"; on "error" prints it and returns NULL. */
static char *ask_ok(const char *req, const char **rest) {
  char *r = ask(req);
  if (r == NULL)
    return NULL;
  if (strncmp(r, "ok", 2) == 0 && (r[2] == '\n' || r[2] == ' ')) {
    *rest = r + 2 + (r[2] == ' ');
    return r;
  }
  const char *why = strncmp(r, "error ", 6) == 0 ? r + 6 : r;
  fprintf(stderr, "membal: %s%s", why,
          why[strlen(why) - 1] == '\n' ? "" : "\n");
  free(r);
  return NULL;
}

/* KiB from "1024", "512M", "512MiB", "1G", "64K"; at least 1. */
static bool parse_size(const char *s, uint64_t *kib) {
  char err[160];
  return mb_size_parse(s, kib, err, sizeof(err)) == 0 && *kib > 0;
}

/* Seconds from "90", "90s", "15m", "2h", "1d". */
static bool parse_duration(const char *s, uint64_t *secs) {
  char *end = NULL;
  errno = 0;
  if (*s < '0' || *s > '9')
    return false;
  unsigned long long n = strtoull(s, &end, 10);
  uint64_t mult;
  if (errno != 0)
    return false;
  if (*end == 0 || strcmp(end, "s") == 0)
    mult = 1;
  else if (strcmp(end, "m") == 0)
    mult = 60;
  else if (strcmp(end, "h") == 0)
    mult = 3600;
  else if (strcmp(end, "d") == 0)
    mult = 86400;
  else
    return false;
  if (n == 0 || n > UINT32_MAX / mult)
    return false;
  *secs = n * mult;
  return true;
}

/* A domain name as the balancer takes it: printable, no blanks. */
static bool name_ok(const char *s) {
  if (*s == 0 || strlen(s) >= 64)
    return false;
  for (; *s; s++)
    if (*s <= ' ' || *s > '~')
      return false;
  return true;
}

static int cmd_reserve(int argc, char **argv) {
  uint64_t kib = 0, timeout = 120;
  const char *name = "-";
  if (argc < 1 || !parse_size(argv[0], &kib)) {
    fprintf(stderr, "membal: reserve: SIZE like 1024 (KiB), 512M or 1G\n");
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
      name = argv[++i];
      if (!name_ok(name)) {
        fprintf(stderr, "membal: reserve: \"%s\" is not a domain name\n", name);
        return 2;
      }
    } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      if (!parse_duration(argv[++i], &timeout) || timeout > 86400) {
        fprintf(stderr, "membal: reserve: --timeout: 1 s to 1 d\n");
        return 2;
      }
    } else
      usage();
  }
  char req[512];
  snprintf(req, sizeof(req), "reserve %" PRIu64 " %s %" PRIu64, kib, name,
           timeout);
  const char *rest = NULL;
  char *r = ask_ok(req, &rest);
  if (r == NULL)
    return 1;
  unsigned long long id = strtoull(rest, NULL, 10);
  free(r);
  double t0 = now_s();
  uint64_t free_kib = 0;
  for (;;) {
    r = ask_ok("free", &rest);
    if (r != NULL) {
      unsigned long long f = 0, res = 0;
      if (sscanf(rest, "free_kib %llu reserved_kib %llu", &f, &res) == 2)
        free_kib = f;
      free(r);
      if (free_kib >= kib) {
        printf("membal: reservation %llu: %.0f MiB free in the hypervisor "
               "(asked %.0f MiB) after %.1f s; held for %s until it "
               "appears or %" PRIu64 " s pass\n",
               id, free_kib / 1024.0, kib / 1024.0, now_s() - t0,
               strcmp(name, "-") ? name : "(any domain)", timeout);
        return 0;
      }
    }
    if (now_s() - t0 >= (double)timeout)
      break;
    struct timespec ts = {.tv_nsec = 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr,
          "membal: reserve: only %.0f MiB free in the hypervisor after %" PRIu64
          " s, asked %.0f MiB: shortfall %.0f MiB (the guests' Min and "
          "critical amounts could not give more)\n",
          free_kib / 1024.0, timeout, kib / 1024.0, (kib - free_kib) / 1024.0);
  return 1;
}

int main(int argc, char **argv) {
  int i = 1;
  const char *env = getenv("MEMBAL_SOCKET");
  if (env != NULL && env[0] != 0)
    sock_path = env;
  if (i + 1 < argc && strcmp(argv[i], "-s") == 0) {
    sock_path = argv[i + 1];
    i += 2;
  }
  if (i >= argc)
    usage();
  const char *cmd = argv[i++];
  int nargs = argc - i;
  char **args = argv + i;
  const char *rest = NULL;
  char *r = NULL;
  char req[512];
  if (strcmp(cmd, "status") == 0) {
    if (nargs > 1 || (nargs == 1 && strcmp(args[0], "--json") != 0))
      usage();
    r = ask_ok(nargs ? "status json" : "status", &rest);
    if (r == NULL)
      return 1;
    fputs(rest[0] == '\n' ? rest + 1 : rest, stdout);
    free(r);
    return 0;
  }
  if ((strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0) && nargs >= 1 &&
      !name_ok(args[0])) {
    fprintf(stderr, "membal: %s: \"%s\" is not a domain name\n", cmd, args[0]);
    return 2;
  }
  if (strcmp(cmd, "hold") == 0 && (nargs == 1 || nargs == 2)) {
    uint64_t secs = 0;
    if (nargs == 2 && !parse_duration(args[1], &secs)) {
      fprintf(stderr, "membal: hold: DURATION like 600, 10m, 2h\n");
      return 2;
    }
    if (secs)
      snprintf(req, sizeof(req), "hold %s %" PRIu64, args[0], secs);
    else
      snprintf(req, sizeof(req), "hold %s", args[0]);
  } else if (strcmp(cmd, "release") == 0 && nargs == 1) {
    snprintf(req, sizeof(req), "release %s", args[0]);
  } else if (strcmp(cmd, "reserve") == 0) {
    return cmd_reserve(nargs, args);
  } else {
    usage();
  }
  r = ask_ok(req, &rest);
  if (r == NULL)
    return 1;
  printf("membal: %s", rest);
  free(r);
  return 0;
}
