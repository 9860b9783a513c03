/*
 * membal-numa-place: NUMA placement of VM memory, as the KVM NUMA
 * experiment membal grew from did it, turned into a command.
 *
 * Reads one VM per line from stdin, "vcpus memory_mib", until EOF (blank
 * lines and lines starting with '#' are skipped; anything else that is not
 * exactly two positive decimal integers is an error naming the line), and
 * writes, per VM, a libvirt domain XML with <numatune> or an xl domain
 * config with cpus= (and vnuma= when interleaving).
 *
 * Policies:
 *   random       each VM on one node drawn at random (--seed, default 1;
 *                the generator is the tool's own, so a seed gives the same
 *                placement on every machine)
 *   interleave   each VM's memory interleaved across nodes 0..k-1
 *                (k = --span, default every node)
 *   round-robin  each VM on one node, the next VM on the next node
 *
 * Node count: --nodes N, else --uri URI (libvirt's virNodeGetInfo), else
 * the online nodes in /sys/devices/system/node/online. Node numbers are the
 * host's (sysfs may list holes such as "0,2").
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef MEMBAL_NUMA_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif

#define NP_MAX_NODES 1024
#define NP_MAX_VCPUS 4096u
#define NP_MAX_MEM_MIB (16ull * 1024 * 1024) /* 16 TiB */
#define NP_LINE_MAX 4096

typedef enum { POL_RANDOM, POL_INTERLEAVE, POL_ROUND_ROBIN } policy_t;
typedef enum { FMT_XML, FMT_XL } format_t;

typedef struct {
  policy_t policy;
  format_t format;
  uint64_t seed;
  unsigned span; /* interleave: nodes used; 0 = all */
  const char *prefix;
  const char *domain_type;
  const char *outdir; /* NULL: stdout */
  unsigned nodes[NP_MAX_NODES];
  unsigned nr_nodes;
} opts_t;

/* splitmix64: small, well mixed, and the same everywhere. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Unbiased draw in [0, n). */
static unsigned rng_below(uint64_t *s, unsigned n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do
    r = rng_next(s);
  while (r >= limit);
  return (unsigned)(r % n);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: membal-numa-place --policy random|interleave|round-robin\n"
          "         [--format xml|xl] [--nodes N | --uri URI] [--seed S]\n"
          "         [--span K] [--prefix NAME] [--domain-type TYPE]\n"
          "         [--outdir DIR] < vms\n"
          "Reads \"vcpus memory_mib\" per line (one VM per line) and writes a\n"
          "libvirt domain XML (<numatune>) or an xl config (cpus=, vnuma=)\n"
          "per VM, to stdout or to DIR/<name>.xml|.cfg.\n");
}

/* Strict unsigned decimal: digits only, no sign, no overflow, <= max. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out) {
  if (*s < '0' || *s > '9')
    return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  if (v > max)
    return -1;
  *out = v;
  return 0;
}

/* "0-3,5" (sysfs list syntax) into node numbers, ascending. */
static int parse_node_list(const char *s, unsigned *nodes, unsigned *n) {
  *n = 0;
  while (*s && *s != '\n') {
    char *end;
    if (*s < '0' || *s > '9')
      return -1;
    errno = 0;
    unsigned long a = strtoul(s, &end, 10), b = a;
    s = end;
    if (*s == '-') {
      s++;
      if (*s < '0' || *s > '9')
        return -1;
      b = strtoul(s, &end, 10);
      s = end;
    }
    if (errno || a > b || b >= NP_MAX_NODES)
      return -1;
    for (unsigned long i = a; i <= b; i++) {
      if (*n > 0 && i <= nodes[*n - 1])
        return -1;
      nodes[(*n)++] = (unsigned)i;
    }
    if (*s == ',')
      s++;
  }
  return *n > 0 ? 0 : -1;
}

static int nodes_from_sysfs(opts_t *o) {
  const char *path = "/sys/devices/system/node/online";
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "membal-numa-place: %s: %s (give --nodes N or --uri URI)\n",
            path, strerror(errno));
    return -1;
  }
  char buf[1024];
  bool ok = fgets(buf, sizeof(buf), f) != NULL;
  fclose(f);
  if (!ok || parse_node_list(buf, o->nodes, &o->nr_nodes) != 0) {
    fprintf(stderr, "membal-numa-place: %s: cannot parse the node list\n",
            path);
    return -1;
  }
  return 0;
}

static int nodes_from_uri(opts_t *o, const char *uri) {
#ifdef MEMBAL_NUMA_LIBVIRT
  virConnectPtr c = virConnectOpenReadOnly(uri); /* owned */
  if (c == NULL) {
    virErrorPtr e = virGetLastError();
    fprintf(stderr, "membal-numa-place: cannot connect to %s: %s\n", uri,
            e && e->message ? e->message : "unknown error");
    return -1;
  }
  virNodeInfo ni;
  int rc = virNodeGetInfo(c, &ni);
  if (rc != 0) {
    virErrorPtr e = virGetLastError();
    fprintf(stderr, "membal-numa-place: %s: virNodeGetInfo: %s\n", uri,
            e && e->message ? e->message : "unknown error");
  }
  virConnectClose(c);
  if (rc != 0)
    return -1;
  if (ni.nodes < 1 || ni.nodes > NP_MAX_NODES) {
    fprintf(stderr, "membal-numa-place: %s reports %u NUMA nodes\n", uri,
            ni.nodes);
    return -1;
  }
  o->nr_nodes = ni.nodes;
  for (unsigned i = 0; i < ni.nodes; i++)
    o->nodes[i] = i;
  return 0;
#else
  (void)o;
  fprintf(stderr,
          "membal-numa-place: built without libvirt: --uri %s unavailable\n",
          uri);
  return -1;
#endif
}

/* Node set text of nodes[0..k-1] in libvirt/xl range syntax. */
static void nodeset_text(const unsigned *nodes, unsigned k, char *buf,
                         size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < k;) {
    unsigned j = i;
    while (j + 1 < k && nodes[j + 1] == nodes[j] + 1)
      j++;
    int w;
    if (j > i)
      w = snprintf(buf + at, len - at, "%s%u-%u", at ? "," : "", nodes[i],
                   nodes[j]);
    else
      w = snprintf(buf + at, len - at, "%s%u", at ? "," : "", nodes[i]);
    if (w < 0 || (size_t)w >= len - at)
      return;
    at += (size_t)w;
    i = j + 1;
  }
}

typedef struct {
  unsigned vcpus;
  uint64_t mem_mib;
  unsigned first;  /* index into opts nodes of the first node used */
  unsigned k;      /* nodes used, consecutive from first */
  bool interleave; /* memory spread over the k nodes */
} placement_t;

static void write_xml(FILE *f, const opts_t *o, const char *name,
                      const placement_t *p) {
  char ns[8192];
  nodeset_text(o->nodes + p->first, p->k, ns, sizeof(ns));
  fprintf(f,
          "<domain type='%s'>\n"
          "  <name>%s</name>\n"
          "  <memory unit='MiB'>%" PRIu64 "</memory>\n"
          "  <currentMemory unit='MiB'>%" PRIu64 "</currentMemory>\n"
          "  <vcpu placement='static'>%u</vcpu>\n"
          "  <numatune>\n"
          "    <memory mode='%s' nodeset='%s'/>\n"
          "  </numatune>\n"
          "  <os>\n"
          "    <type arch='x86_64'>hvm</type>\n"
          "  </os>\n"
          "  <devices>\n"
          "    <memballoon model='virtio'>\n"
          "      <stats period='5'/>\n"
          "    </memballoon>\n"
          "  </devices>\n"
          "</domain>\n",
          o->domain_type, name, p->mem_mib, p->mem_mib, p->vcpus,
          p->interleave ? "interleave" : "strict", ns);
}

static void write_xl(FILE *f, const opts_t *o, const char *name,
                     const placement_t *p) {
  char ns[8192];
  nodeset_text(o->nodes + p->first, p->k, ns, sizeof(ns));
  fprintf(f,
          "name = \"%s\"\n"
          "memory = %" PRIu64 "\n"
          "maxmem = %" PRIu64 "\n"
          "vcpus = %u\n",
          name, p->mem_mib, p->mem_mib, p->vcpus);
  if (!p->interleave || p->k == 1) {
    /* Xen allocates a domain's memory on the nodes its vcpus may run on. */
    fprintf(f, "cpus = \"node:%s\"\n", ns);
    return;
  }
  fprintf(f, "cpus = \"nodes:%s\"\n", ns);
  /* One virtual node per physical node; memory split evenly (the
   * remainder on the first), vcpus in contiguous runs. */
  fprintf(f, "vnuma = [ ");
  uint64_t each = p->mem_mib / p->k, rest = p->mem_mib % p->k;
  unsigned vc = 0;
  for (unsigned i = 0; i < p->k; i++) {
    unsigned nvc = p->vcpus / p->k + (i < p->vcpus % p->k ? 1 : 0);
    fprintf(f,
            "%s[ \"pnode=%u\", \"size=%" PRIu64 "\", \"vcpus=", i ? ", " : "",
            o->nodes[p->first + i], each + (i == 0 ? rest : 0));
    if (nvc > 1)
      fprintf(f, "%u-%u", vc, vc + nvc - 1);
    else
      fprintf(f, "%u", vc);
    vc += nvc;
    fprintf(f, "\", \"vdistances=");
    for (unsigned j = 0; j < p->k; j++)
      fprintf(f, "%s%u", j ? "," : "", i == j ? 10u : 20u);
    fprintf(f, "\" ]");
  }
  fprintf(f, " ]\n");
}

static int emit(const opts_t *o, unsigned index, const placement_t *p) {
  char name[256];
  snprintf(name, sizeof(name), "%s%u", o->prefix, index);
  FILE *f = stdout;
  char path[4096];
  if (o->outdir != NULL) {
    snprintf(path, sizeof(path), "%s/%s.%s", o->outdir, name,
             o->format == FMT_XML ? "xml" : "cfg");
    f = fopen(path, "w");
    if (f == NULL) {
      fprintf(stderr, "membal-numa-place: %s: %s\n", path, strerror(errno));
      return -1;
    }
  } else if (index > 1) {
    fputc('\n', f);
  }
  if (o->format == FMT_XML)
    write_xml(f, o, name, p);
  else
    write_xl(f, o, name, p);
  if (f != stdout && fclose(f) != 0) {
    fprintf(stderr, "membal-numa-place: %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* Splits one input line into vcpus and memory; err names what is wrong. */
static int parse_vm_line(char *line, unsigned *vcpus, uint64_t *mem_mib,
                         const char **err) {
  char *save = NULL;
  char *a = strtok_r(line, " \t", &save);
  char *b = a ? strtok_r(NULL, " \t", &save) : NULL;
  char *c = b ? strtok_r(NULL, " \t", &save) : NULL;
  uint64_t v;
  if (a == NULL || b == NULL) {
    *err = "expected \"vcpus memory_mib\"";
    return -1;
  }
  if (c != NULL) {
    *err = "trailing text after \"vcpus memory_mib\"";
    return -1;
  }
  if (parse_uint(a, NP_MAX_VCPUS, &v) != 0 || v == 0) {
    *err = "vcpus must be a decimal integer in 1..4096";
    return -1;
  }
  *vcpus = (unsigned)v;
  if (parse_uint(b, NP_MAX_MEM_MIB, &v) != 0 || v == 0) {
    *err = "memory_mib must be a decimal integer in 1..16777216";
    return -1;
  }
  *mem_mib = v;
  return 0;
}

int main(int argc, char **argv) {
  static opts_t o; /* large node table: not on the stack */
  o.seed = 1;
  o.prefix = "vm";
  o.domain_type = "kvm";
  bool have_policy = false;
  const char *uri = NULL;
  uint64_t nodes_opt = 0;

  static const struct option longopts[] = {
      {"policy", required_argument, NULL, 'p'},
      {"format", required_argument, NULL, 'f'},
      {"nodes", required_argument, NULL, 'n'},
      {"uri", required_argument, NULL, 'c'},
      {"seed", required_argument, NULL, 's'},
      {"span", required_argument, NULL, 'k'},
      {"prefix", required_argument, NULL, 'P'},
      {"domain-type", required_argument, NULL, 't'},
      {"outdir", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  uint64_t v;
  while ((ch = getopt_long(argc, argv, "p:f:n:c:s:k:P:t:o:h", longopts,
                           NULL)) != -1) {
    switch (ch) {
    case 'p':
      if (strcmp(optarg, "random") == 0)
        o.policy = POL_RANDOM;
      else if (strcmp(optarg, "interleave") == 0)
        o.policy = POL_INTERLEAVE;
      else if (strcmp(optarg, "round-robin") == 0)
        o.policy = POL_ROUND_ROBIN;
      else {
        fprintf(stderr, "membal-numa-place: unknown policy \"%s\"\n", optarg);
        return 2;
      }
      have_policy = true;
      break;
    case 'f':
      if (strcmp(optarg, "xml") == 0)
        o.format = FMT_XML;
      else if (strcmp(optarg, "xl") == 0)
        o.format = FMT_XL;
      else {
        fprintf(stderr, "membal-numa-place: unknown format \"%s\"\n", optarg);
        return 2;
      }
      break;
    case 'n':
      if (parse_uint(optarg, NP_MAX_NODES, &nodes_opt) != 0 || nodes_opt == 0) {
        fprintf(stderr, "membal-numa-place: --nodes must be in 1..%d\n",
                NP_MAX_NODES);
        return 2;
      }
      break;
    case 'c':
      uri = optarg;
      break;
    case 's':
      if (parse_uint(optarg, UINT64_MAX, &o.seed) != 0) {
        fprintf(stderr, "membal-numa-place: --seed must be a decimal "
                        "integer\n");
        return 2;
      }
      break;
    case 'k':
      if (parse_uint(optarg, NP_MAX_NODES, &v) != 0 || v == 0) {
        fprintf(stderr, "membal-numa-place: --span must be in 1..%d\n",
                NP_MAX_NODES);
        return 2;
      }
      o.span = (unsigned)v;
      break;
    case 'P':
      o.prefix = optarg;
      break;
    case 't':
      o.domain_type = optarg;
      break;
    case 'o':
      o.outdir = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "membal-numa-place: unexpected argument \"%s\"\n",
            argv[optind]);
    return 2;
  }
  if (!have_policy) {
    fprintf(stderr, "membal-numa-place: --policy is required\n");
    usage(stderr);
    return 2;
  }
  /* Names and types land inside XML attributes and xl strings. */
  if (strlen(o.prefix) > 48) {
    fprintf(stderr, "membal-numa-place: --prefix longer than 48 characters\n");
    return 2;
  }
  for (const char *s = o.prefix; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.')) {
      fprintf(stderr, "membal-numa-place: --prefix may hold only letters, "
                      "digits, '-', '_' and '.'\n");
      return 2;
    }
  for (const char *s = o.domain_type; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) {
      fprintf(stderr, "membal-numa-place: bad --domain-type\n");
      return 2;
    }
  if (nodes_opt && uri) {
    fprintf(stderr, "membal-numa-place: give --nodes or --uri, not both\n");
    return 2;
  }
  if (o.outdir != NULL) {
    struct stat st;
    if (stat(o.outdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
      fprintf(stderr, "membal-numa-place: --outdir %s is not a directory\n",
              o.outdir);
      return 2;
    }
  }
  if (nodes_opt) {
    o.nr_nodes = (unsigned)nodes_opt;
    for (unsigned i = 0; i < o.nr_nodes; i++)
      o.nodes[i] = i;
  } else if (uri) {
    if (nodes_from_uri(&o, uri) != 0)
      return 1;
  } else if (nodes_from_sysfs(&o) != 0) {
    return 1;
  }
  if (o.span > o.nr_nodes) {
    fprintf(stderr, "membal-numa-place: --span %u exceeds the %u nodes\n",
            o.span, o.nr_nodes);
    return 2;
  }

  /* All input is checked before anything is written: a bad line leaves no
   * half-written placement behind. */
  uint64_t rng = o.seed;
  char *line = NULL; /* owned, grown by getline */
  size_t linecap = 0;
  ssize_t got;
  unsigned long lineno = 0;
  placement_t *vms = NULL; /* owned */
  size_t nvms = 0, cap = 0;
  int ret = 1;
  while ((got = getline(&line, &linecap, stdin)) != -1) {
    lineno++;
    size_t len = (size_t)got;
    if (len > NP_LINE_MAX) {
      fprintf(stderr, "membal-numa-place: line %lu: longer than %d bytes\n",
              lineno, NP_LINE_MAX);
      goto out;
    }
    if (memchr(line, '\0', len) != NULL) {
      fprintf(stderr, "membal-numa-place: line %lu: NUL byte\n", lineno);
      goto out;
    }
    if (len > 0 && line[len - 1] == '\n')
      line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
    const char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0' || *p == '#')
      continue;
    placement_t pl = {0};
    const char *err = NULL;
    if (parse_vm_line(line, &pl.vcpus, &pl.mem_mib, &err) != 0) {
      fprintf(stderr, "membal-numa-place: line %lu: %s\n", lineno, err);
      goto out;
    }
    switch (o.policy) {
    case POL_RANDOM:
      pl.first = rng_below(&rng, o.nr_nodes);
      pl.k = 1;
      break;
    case POL_ROUND_ROBIN:
      pl.first = (unsigned)(nvms % o.nr_nodes);
      pl.k = 1;
      break;
    case POL_INTERLEAVE:
      pl.first = 0;
      pl.k = o.span ? o.span : o.nr_nodes;
      pl.interleave = true;
      /* xl's vnuma needs a vcpu on every virtual node. */
      if (o.format == FMT_XL && pl.k > pl.vcpus) {
        fprintf(stderr,
                "membal-numa-place: line %lu: %u vcpus cannot cover %u "
                "virtual nodes; interleaving over %u\n",
                lineno, pl.vcpus, pl.k, pl.vcpus);
        pl.k = pl.vcpus;
      }
      break;
    }
    if (nvms == cap) {
      cap = cap ? 2 * cap : 64;
      placement_t *n = realloc(vms, cap * sizeof(*n));
      if (n == NULL) {
        fprintf(stderr, "membal-numa-place: out of memory\n");
        goto out;
      }
      vms = n;
    }
    vms[nvms++] = pl;
  }
  if (ferror(stdin)) {
    fprintf(stderr, "membal-numa-place: reading stdin: %s\n", strerror(errno));
    goto out;
  }
  for (size_t i = 0; i < nvms; i++)
    if (emit(&o, (unsigned)(i + 1), &vms[i]) != 0)
      goto out;
  if (fflush(stdout) != 0) {
    fprintf(stderr, "membal-numa-place: writing: %s\n", strerror(errno));
    goto out;
  }
  ret = 0;
out:
  free(line);
  free(vms);
  return ret;
}
