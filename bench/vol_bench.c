/* vol_bench.c — volume benchmarks, each beside its peer in the same run
 * (bench/vol_bench.py runs it from `make bench`; never part of `make test`):
 *
 *   clone  vol_os_create of a clone of a sparse golden volume (1, 20 and
 *          100 GiB by default), 200 times per size, against
 *          `qemu-img create -q -f qcow2 -b GOLDEN -F raw` on the same raw file,
 *          and against that plus fsync of the new file and its directory (what
 *          vol_os_create promises: the clone survives a crash)
 *   many   1,000 clones of one 20 GiB golden volume: the total time and the
 *          allocated bytes (st_blocks, like du) of each clone, against 1,000
 *          qemu-img creates and their qcow2 files
 *   io     4 KiB random reads, first writes, overwrites and reads of written
 *          clusters through struct vol on a clone of a golden volume full of
 *          pseudo-random data, against pread/pwrite on a raw file holding the
 *          same data (both through the page cache: struct vol has no O_DIRECT;
 *          the "cold" reads drop the golden file's pages with
 *          posix_fadvise(DONTNEED) before each run, for both); first writes
 *          and overwrites also on a sparse raw file and on a second clone
 *          opened with preallocation off, and the bytes each one allocated
 *
 * Prints tables with ratios and, with --json FILE, every figure. Timings never
 * decide the exit status: 1 only when the setup or an I/O fails. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vol/vol.h"
#include "vol/vol_int.h" /* vol_os_prealloc_clusters: the second clone turns it off */

extern char **environ;

#define GIB (1ull << 30)
#define BS 4096u /* the I/O size of the io section, and the clone cluster size */
#define MAX_LIST 16
#define MAX_SLICES 64

/* The targets (docs/BENCHMARKS.md "Volumes"). */
#define TARGET_CLONE_MS 2.0
#define TARGET_MANY_S 5.0
#define TARGET_MANY_META (256u << 10)
#define TARGET_READ_RATIO 0.8
#define TARGET_FIRST_WRITE_RATIO 0.5

struct opts {
  const char *dir, *json, *cache, *qemu_img;
  int do_clone, do_many, do_io;
  uint64_t clone_gib[MAX_LIST];
  int nclone_gib;
  int clones;
  int many;
  uint64_t many_gib;
  uint64_t io_gib;
  long io_ops, io_cold_ops, io_write_ops;
  int threads[MAX_LIST];
  int nthreads;
  int repeat;
  int slices;
  long prealloc_kib; /* -1: the library's default */
  uint64_t seed;
};

static struct opts O = {
    .clone_gib = {1, 20, 100},
    .nclone_gib = 3,
    .clones = 200,
    .many = 1000,
    .many_gib = 20,
    .io_gib = 4,
    .io_ops = 200000,
    .io_cold_ops = 20000,
    .io_write_ops = 100000,
    .threads = {1, 4},
    .nthreads = 2,
    .repeat = 3,
    .slices = 10,
    .prealloc_kib = -1,
    .seed = 20261121,
};

static struct vol_store *VS;
static json_t *ROOT;

/* ---- small helpers ----------------------------------------------------------------- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vol_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void die_err(const char *what, const struct err *e) {
  die("%s: %s (%d %s)", what, e->message, e->status, e->code);
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) die("out of memory");
  va_end(ap);
  return s;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

static void mkdir_p(const char *path) {
  char *p = xprintf("%s", path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s) continue;
    char c = *s;
    *s = 0;
    if (mkdir(p, 0755) < 0 && errno != EEXIST) die("mkdir %s: %s", p, strerror(errno));
    *s = c;
    if (!c) break;
  }
  free(p);
}

static void fsync_path(const char *path, int dir) {
  int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) die("fsync %s: %s", path, strerror(errno));
  close(fd);
}

static uint64_t allocated_of(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) die("stat %s: %s", path, strerror(errno));
  return (uint64_t)st.st_blocks * 512u;
}

/* splitmix64: seeds, offsets, permutations */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* xoshiro256**: the golden volume's content */
struct xo {
  uint64_t s[4];
};
static void xo_seed(struct xo *x, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    x->s[i] = mix(&seed);
}
static inline uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }
static inline uint64_t xo_next(struct xo *x) {
  uint64_t *s = x->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}
static void xo_fill(struct xo *x, void *buf, size_t len) {
  uint64_t *p = buf;
  for (size_t i = 0; i < len / 8; i++)
    p[i] = xo_next(x);
}

/* ---- statistics ------------------------------------------------------------------ */

struct summary {
  size_t n;
  double min, median, p90, p99, max, mean;
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentiles of v (n values, any unit). */
static struct summary summarize(const double *v, size_t n) {
  struct summary s = {.n = n};
  if (!n) return s;
  double *c = xmalloc(n * sizeof *c), sum = 0;
  memcpy(c, v, n * sizeof *c);
  qsort(c, n, sizeof *c, cmp_double);
  for (size_t i = 0; i < n; i++)
    sum += c[i];
#define RANK(p) c[(size_t)((p) * (double)(n - 1) + 0.5)]
  s.min = c[0];
  s.median = RANK(0.5);
  s.p90 = RANK(0.9);
  s.p99 = RANK(0.99);
  s.max = c[n - 1];
  s.mean = sum / (double)n;
#undef RANK
  free(c);
  return s;
}

/* Set o[k] to v (a new reference), and return o. */
static json_t *jset(json_t *o, const char *k, json_t *v) {
  json_object_set_new(o, k, v);
  return o;
}
static json_t *jint(uint64_t v) { return json_integer((json_int_t)v); }

static json_t *jround(double v, int digits) {
  double m = 1;
  for (int i = 0; i < digits; i++)
    m *= 10;
  return json_real((double)(long long)(v * m + (v < 0 ? -0.5 : 0.5)) / m);
}

/* A summary of values in seconds, as milliseconds. */
static json_t *summary_ms_json(struct summary s) {
  json_t *j = json_object();
  jset(j, "n", jint(s.n));
  jset(j, "min_ms", jround(s.min * 1e3, 3));
  jset(j, "median_ms", jround(s.median * 1e3, 3));
  jset(j, "p90_ms", jround(s.p90 * 1e3, 3));
  jset(j, "p99_ms", jround(s.p99 * 1e3, 3));
  jset(j, "max_ms", jround(s.max * 1e3, 3));
  jset(j, "mean_ms", jround(s.mean * 1e3, 3));
  return j;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

/* ---- the peers: qemu-img -------------------------------------------------------------- */

static const char *find_qemu_img(void) {
  if (O.qemu_img) return O.qemu_img;
  static const char *cands[] = {"/usr/bin/qemu-img", "/usr/local/bin/qemu-img", NULL};
  for (int i = 0; cands[i]; i++)
    if (access(cands[i], X_OK) == 0) return cands[i];
  die("qemu-img is missing (Debian package qemu-utils); give --qemu-img PATH");
}

/* Seconds of `qemu-img create -q -f qcow2 -b base -F raw out`, from fork to
 * exit, plus (sync) fsync of out and of its directory. */
static double qemu_create(const char *base, const char *out, const char *outdir, int sync) {
  const char *qemu = find_qemu_img();
  char *argv[] = {(char *)qemu, "create", "-q",  "-f",        "qcow2", "-b",
                  (char *)base, "-F",     "raw", (char *)out, NULL};
  pid_t pid;
  double t0 = now_s();
  int r = posix_spawn(&pid, qemu, NULL, NULL, argv, environ);
  if (r != 0) die("spawn %s: %s", qemu, strerror(r));
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid: %s", strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("qemu-img create %s failed", out);
  if (sync) {
    fsync_path(out, 0);
    fsync_path(outdir, 1);
  }
  return now_s() - t0;
}

/* ---- golden volumes ---------------------------------------------------------------- */

static char *golden_path(const char *id) {
  char *p = vol_golden_path(VS, id);
  if (!p) die("out of memory");
  return p;
}

/* A sparse golden volume of `size` bytes (ftruncate), committed. */
static void make_sparse_golden(const char *id, uint64_t size) {
  struct err e;
  err_init(&e);
  char *tmp = vol_golden_tmp_path(VS, id);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0) die("create %s: %s", tmp, strerror(errno));
  close(fd);
  if (vol_golden_commit(VS, id, &e) < 0) die_err("commit golden volume", &e);
  free(tmp);
}

static void delete_golden(const char *id) {
  struct err e;
  err_init(&e);
  if (vol_golden_delete(VS, id, &e) < 0) die_err("delete golden volume", &e);
}

static void os_create(const char *id, const char *golden) {
  struct err e;
  err_init(&e);
  if (vol_os_create(VS, id, golden, 0, &e) < 0) die_err("vol_os_create", &e);
}

static struct vol *os_open(const char *id) {
  struct err e;
  err_init(&e);
  struct vol *v;
  if (vol_os_open(VS, id, &v, &e) < 0) die_err("vol_os_open", &e);
  return v;
}

static void os_delete(const char *id) {
  struct err e;
  err_init(&e);
  if (vol_os_delete(VS, id, &e) < 0) die_err("vol_os_delete", &e);
}

/* du-like: the allocated bytes of an OS volume's directory and its files. */
struct du {
  uint64_t dir, meta, data;
};
static struct du du_os(const char *id) {
  struct du d;
  char *dir = xprintf("%s/os/%s", vol_store_dir(VS), id);
  char *meta = xprintf("%s/meta", dir), *data = xprintf("%s/data", dir);
  d.dir = allocated_of(dir);
  d.meta = allocated_of(meta);
  d.data = allocated_of(data);
  free(dir);
  free(meta);
  free(data);
  return d;
}

/* ---- clone: one clone at a time, per golden size --------------------------------------- */

static void print_summary_row(const char *what, struct summary s) {
  printf("  %-34s %8.3f %8.3f %8.3f %8.3f %8.3f\n", what, s.median * 1e3, s.p90 * 1e3, s.p99 * 1e3,
         s.max * 1e3, s.mean * 1e3);
}

static void bench_clone(void) {
  json_t *sizes = json_array();
  char *qdir = xprintf("%s/qemu-clone", O.dir);
  mkdir_p(qdir);
  printf("\n== clone: vol_os_create of a clone of a sparse golden volume, %d times per size\n",
         O.clones);
  printf("   peer: qemu-img create -q -f qcow2 -b GOLDEN -F raw (same raw file), and the same + "
         "fsync file & dir\n");
  for (int si = 0; si < O.nclone_gib; si++) {
    uint64_t gib = O.clone_gib[si];
    char gid[64];
    snprintf(gid, sizeof gid, "sparse-%llug", (unsigned long long)gib);
    make_sparse_golden(gid, gib * GIB);
    char *gpath = golden_path(gid);
    int n = O.clones;
    double *ours = xmalloc((size_t)n * sizeof *ours), *opened = xmalloc((size_t)n * sizeof *opened);
    double *q = xmalloc((size_t)n * sizeof *q), *qs = xmalloc((size_t)n * sizeof *qs);
    double *del = xmalloc((size_t)n * sizeof *del);
    double cpu0 = 0, cpu_ours = 0;
    for (int i = 0; i < n; i++) {
      char id[64];
      snprintf(id, sizeof id, "c%llug-%d", (unsigned long long)gib, i);
      char *qa = xprintf("%s/%llug-%d.qcow2", qdir, (unsigned long long)gib, i);
      char *qb = xprintf("%s/%llug-%d-sync.qcow2", qdir, (unsigned long long)gib, i);
      for (int k = 0; k < 3; k++) { /* rotate the order, so drift hits all three alike */
        switch ((i + k) % 3) {
        case 0: {
          cpu0 = cpu_s();
          double t0 = now_s();
          os_create(id, gid);
          ours[i] = now_s() - t0;
          cpu_ours += cpu_s() - cpu0;
          break;
        }
        case 1: q[i] = qemu_create(gpath, qa, qdir, 0); break;
        default: qs[i] = qemu_create(gpath, qb, qdir, 1); break;
        }
      }
      double t0 = now_s();
      vol_close(os_open(id));
      opened[i] = now_s() - t0;
      free(qa);
      free(qb);
    }
    for (int i = 0; i < n; i++) {
      char id[64];
      snprintf(id, sizeof id, "c%llug-%d", (unsigned long long)gib, i);
      double t0 = now_s();
      os_delete(id);
      del[i] = now_s() - t0;
      char *qa = xprintf("%s/%llug-%d.qcow2", qdir, (unsigned long long)gib, i);
      char *qb = xprintf("%s/%llug-%d-sync.qcow2", qdir, (unsigned long long)gib, i);
      unlink(qa);
      unlink(qb);
      free(qa);
      free(qb);
    }
    delete_golden(gid);
    struct summary so = summarize(ours, (size_t)n), sq = summarize(q, (size_t)n),
                   ss = summarize(qs, (size_t)n), sopen = summarize(opened, (size_t)n),
                   sdel = summarize(del, (size_t)n);
    printf("\n  golden %llu GiB                     median      p90      p99      max     mean "
           "(ms)\n",
           (unsigned long long)gib);
    print_summary_row("vol_os_create", so);
    print_summary_row("qemu-img create", sq);
    print_summary_row("qemu-img create + fsync", ss);
    print_summary_row("(vol_os_open + vol_close)", sopen);
    print_summary_row("(vol_os_delete)", sdel);
    printf("  ratio vol_os_create / qemu-img create: median %.2f, p90 %.2f, max %.2f; "
           "/ qemu-img + fsync: median %.2f\n",
           ratio(so.median, sq.median), ratio(so.p90, sq.p90), ratio(so.max, sq.max),
           ratio(so.median, ss.median));
    printf("  target median <= %.1f ms: %s (%.3f ms); CPU per vol_os_create %.0f us\n",
           TARGET_CLONE_MS, so.median * 1e3 <= TARGET_CLONE_MS ? "met" : "NOT met", so.median * 1e3,
           cpu_ours * 1e6 / n);
    json_t *js = json_object();
    jset(js, "golden_gib", jint(gib));
    jset(js, "n", jint((uint64_t)n));
    jset(js, "streamer", summary_ms_json(so));
    jset(js, "qemu_img", summary_ms_json(sq));
    jset(js, "qemu_img_fsync", summary_ms_json(ss));
    jset(js, "streamer_open_close", summary_ms_json(sopen));
    jset(js, "streamer_delete", summary_ms_json(sdel));
    jset(js, "streamer_cpu_us", jround(cpu_ours * 1e6 / n, 1));
    jset(js, "ratio_median", jround(ratio(so.median, sq.median), 3));
    jset(js, "ratio_p90", jround(ratio(so.p90, sq.p90), 3));
    jset(js, "ratio_max", jround(ratio(so.max, sq.max), 3));
    jset(js, "ratio_median_vs_fsync_peer", jround(ratio(so.median, ss.median), 3));
    jset(js, "target_met", json_boolean(so.median * 1e3 <= TARGET_CLONE_MS));
    json_array_append_new(sizes, js);
    free(ours);
    free(opened);
    free(q);
    free(qs);
    free(del);
    free(gpath);
    fflush(stdout);
  }
  rmdir(qdir);
  free(qdir);
  json_t *jc = jset(json_object(), "sizes", sizes);
  jset(ROOT, "clone", jset(jc, "target_median_ms", json_real(TARGET_CLONE_MS)));
}

/* ---- many: 1,000 clones of one golden volume ---------------------------------------------- */

static void bench_many(void) {
  const char *gid = "many-golden";
  int n = O.many, block = 100;
  char *qdir = xprintf("%s/qemu-many", O.dir);
  mkdir_p(qdir);
  make_sparse_golden(gid, O.many_gib * GIB);
  char *gpath = golden_path(gid);
  printf("\n== many: %d clones of one %llu GiB golden volume (blocks of %d, alternating with the "
         "peer)\n",
         n, (unsigned long long)O.many_gib, block);
  double *ours = xmalloc((size_t)n * sizeof *ours), *q = xmalloc((size_t)n * sizeof *q);
  double total_ours = 0, total_q = 0, cpu_ours = 0;
  for (int b = 0; b < n; b += block) {
    int end = b + block < n ? b + block : n;
    for (int k = 0; k < 2; k++) {
      if ((k + b / block) % 2 == 0) {
        double c0 = cpu_s(), t0 = now_s();
        for (int i = b; i < end; i++) {
          char id[64];
          snprintf(id, sizeof id, "m-%d", i);
          double t = now_s();
          os_create(id, gid);
          ours[i] = now_s() - t;
        }
        total_ours += now_s() - t0;
        cpu_ours += cpu_s() - c0;
      } else {
        double t0 = now_s();
        for (int i = b; i < end; i++) {
          char *qa = xprintf("%s/m-%d.qcow2", qdir, i);
          q[i] = qemu_create(gpath, qa, qdir, 0);
          free(qa);
        }
        total_q += now_s() - t0;
      }
    }
  }
  /* du-like accounting of every clone and every qcow2 file */
  uint64_t max_total = 0, sum_total = 0, max_files = 0, max_q = 0, sum_q = 0, max_meta = 0,
           max_data = 0;
  for (int i = 0; i < n; i++) {
    char id[64];
    snprintf(id, sizeof id, "m-%d", i);
    struct du d = du_os(id);
    uint64_t files = d.meta + d.data, total = files + d.dir;
    if (total > max_total) max_total = total;
    if (files > max_files) max_files = files;
    if (d.meta > max_meta) max_meta = d.meta;
    if (d.data > max_data) max_data = d.data;
    sum_total += total;
    char *qa = xprintf("%s/m-%d.qcow2", qdir, i);
    uint64_t a = allocated_of(qa);
    if (a > max_q) max_q = a;
    sum_q += a;
    free(qa);
  }
  /* what the golden image API does with them: list the clones, refuse a delete */
  double t0 = now_s();
  char **clones = vol_golden_clones(VS, gid);
  double t_list = now_s() - t0;
  size_t listed = 0;
  for (char **p = clones; p && *p; p++)
    listed++;
  vol_strings_free(clones);
  struct err e;
  err_init(&e);
  t0 = now_s();
  int refused = vol_golden_delete(VS, gid, &e) < 0 && e.status == 409;
  double t_refuse = now_s() - t0;
  if (!refused) die("vol_golden_delete with %d clones did not answer 409: %s", n, e.message);
  t0 = now_s();
  for (int i = 0; i < n; i++) {
    char id[64];
    snprintf(id, sizeof id, "m-%d", i);
    os_delete(id);
  }
  double t_delete = now_s() - t0;
  for (int i = 0; i < n; i++) {
    char *qa = xprintf("%s/m-%d.qcow2", qdir, i);
    unlink(qa);
    free(qa);
  }
  rmdir(qdir);
  delete_golden(gid);
  struct summary so = summarize(ours, (size_t)n), sq = summarize(q, (size_t)n);
  int time_ok = total_ours <= TARGET_MANY_S, meta_ok = max_total <= TARGET_MANY_META;
  printf("                                  total s   median ms   max ms   allocated per clone "
         "(max / mean)\n");
  printf("  streamer (vol_os_create)       %9.2f %11.3f %8.3f   %llu / %.0f bytes (dir + meta + "
         "data)\n",
         total_ours, so.median * 1e3, so.max * 1e3, (unsigned long long)max_total,
         (double)sum_total / n);
  printf("  qemu-img create                %9.2f %11.3f %8.3f   %llu / %.0f bytes (qcow2 file)\n",
         total_q, sq.median * 1e3, sq.max * 1e3, (unsigned long long)max_q, (double)sum_q / n);
  printf("  ratio streamer / qemu-img: total time %.2f, allocated %.3f (files only: %.3f)\n",
         ratio(total_ours, total_q), ratio((double)max_total, (double)max_q),
         ratio((double)max_files, (double)max_q));
  printf("  of a clone: meta %llu, data %llu bytes (max); vol_golden_clones with %zu clones %.1f "
         "ms, refused golden delete %.1f ms, deleting the %d clones %.2f s\n",
         (unsigned long long)max_meta, (unsigned long long)max_data, listed, t_list * 1e3,
         t_refuse * 1e3, n, t_delete);
  printf("  targets: total <= %.0f s: %s (%.2f s); <= %u KiB per unwritten clone: %s (%llu "
         "bytes)\n",
         TARGET_MANY_S, time_ok ? "met" : "NOT met", total_ours, TARGET_MANY_META >> 10,
         meta_ok ? "met" : "NOT met", (unsigned long long)max_total);
  json_t *jm = json_object(), *jo = json_object(), *jq = json_object();
  jset(jo, "total_s", jround(total_ours, 3));
  jset(jo, "per_clone", summary_ms_json(so));
  jset(jo, "cpu_s", jround(cpu_ours, 3));
  jset(jo, "allocated_max_bytes", jint(max_total));
  jset(jo, "allocated_mean_bytes", jround((double)sum_total / n, 1));
  jset(jo, "allocated_files_max_bytes", jint(max_files));
  jset(jo, "meta_max_bytes", jint(max_meta));
  jset(jo, "data_max_bytes", jint(max_data));
  jset(jo, "dir_bytes_max", jint(max_total - max_files));
  jset(jq, "total_s", jround(total_q, 3));
  jset(jq, "per_clone", summary_ms_json(sq));
  jset(jq, "allocated_max_bytes", jint(max_q));
  jset(jq, "allocated_mean_bytes", jround((double)sum_q / n, 1));
  jset(jm, "n", jint((uint64_t)n));
  jset(jm, "golden_gib", jint(O.many_gib));
  jset(jm, "streamer", jo);
  jset(jm, "qemu_img", jq);
  jset(jm, "ratio_total_time", jround(ratio(total_ours, total_q), 3));
  jset(jm, "ratio_allocated", jround(ratio((double)max_total, (double)max_q), 3));
  jset(jm, "golden_clones_ms", jround(t_list * 1e3, 2));
  jset(jm, "golden_clones_listed", jint(listed));
  jset(jm, "golden_delete_refused_ms", jround(t_refuse * 1e3, 2));
  jset(jm, "delete_all_s", jround(t_delete, 3));
  jset(jm, "target_total_s", json_real(TARGET_MANY_S));
  jset(jm, "target_meta_bytes", jint(TARGET_MANY_META));
  jset(jm, "target_time_met", json_boolean(time_ok));
  jset(jm, "target_meta_met", json_boolean(meta_ok));
  jset(ROOT, "many", jm);
  free(ours);
  free(q);
  free(gpath);
  free(qdir);
  fflush(stdout);
}

/* ---- io: 4 KiB random I/O through struct vol vs a raw file ------------------------------ */

enum tkind { T_VOL, T_FD };
struct target {
  enum tkind kind;
  struct vol *v;
  int fd;
};

struct worker {
  const struct target *t;
  int write;
  const uint64_t *offs;
  size_t n;
  double *lat; /* seconds per op */
  pthread_barrier_t *bar;
  unsigned char *buf;
  double t_start, t_end; /* this thread's first op started, last op ended */
  char err[300];
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct err e;
  err_init(&e);
  pthread_barrier_wait(w->bar);
  w->t_start = w->t_end = now_s();
  for (size_t i = 0; i < w->n; i++) {
    uint64_t off = w->offs[i];
    double t0 = now_s();
    int r;
    if (w->t->kind == T_VOL) {
      r = w->write ? vol_pwrite(w->t->v, w->buf, BS, off, &e)
                   : vol_pread(w->t->v, w->buf, BS, off, &e);
    } else {
      ssize_t k = w->write ? pwrite(w->t->fd, w->buf, BS, (off_t)off)
                           : pread(w->t->fd, w->buf, BS, (off_t)off);
      r = k == (ssize_t)BS ? 0 : -1;
      if (r < 0) snprintf(e.message, sizeof e.message, "%s", k < 0 ? strerror(errno) : "short");
    }
    w->t_end = now_s();
    w->lat[i] = w->t_end - t0;
    if (r < 0) {
      snprintf(w->err, sizeof w->err, "%s at %llu: %.200s", w->write ? "write" : "read",
               (unsigned long long)off, e.message);
      return NULL;
    }
  }
  return NULL;
}

static void drop_cache(int fd);

/* Figures of one target in one test, summed over its slices. */
struct acc {
  double secs, cpu;
  double *lat; /* seconds per op */
  size_t n, cap;
};

struct io_result {
  double secs, iops, cpu_us_per_op, p50_us, p99_us, flush_s;
  uint64_t allocated; /* bytes the target holds on disk after the run's flush */
};

/* Run the n ops of offs on t, split over `threads` threads (thread i takes
 * the i-th contiguous share), and add the figures to acc. */
static void run_slice(const struct target *t, int write, const uint64_t *offs, size_t n,
                      int threads, struct acc *acc) {
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  struct worker *w = calloc((size_t)threads, sizeof *w);
  pthread_t *tid = xmalloc((size_t)threads * sizeof *tid);
  if (!w) die("out of memory");
  if (acc->n + n > acc->cap) {
    acc->cap = (acc->n + n) * 2;
    acc->lat = realloc(acc->lat, acc->cap * sizeof *acc->lat);
    if (!acc->lat) die("out of memory");
  }
  double *lat = acc->lat + acc->n;
  struct xo x;
  xo_seed(&x, O.seed ^ 0x5555);
  for (int i = 0; i < threads; i++) {
    size_t a = n * (size_t)i / (size_t)threads, b = n * (size_t)(i + 1) / (size_t)threads;
    w[i] = (struct worker){
        .t = t, .write = write, .offs = offs + a, .n = b - a, .lat = lat + a, .bar = &bar};
    if (posix_memalign((void **)&w[i].buf, BS, BS)) die("out of memory");
    xo_fill(&x, w[i].buf, BS);
    if (pthread_create(&tid[i], NULL, worker_main, &w[i])) die("pthread_create failed");
  }
  double c0 = cpu_s();
  pthread_barrier_wait(&bar);
  for (int i = 0; i < threads; i++)
    pthread_join(tid[i], NULL);
  double cpu = cpu_s() - c0, first = w[0].t_start, last = w[0].t_end;
  for (int i = 0; i < threads; i++) {
    if (w[i].err[0]) die("%s", w[i].err);
    if (w[i].t_start < first) first = w[i].t_start;
    if (w[i].t_end > last) last = w[i].t_end;
    free(w[i].buf);
  }
  /* wall time from the first op's start to the last op's end (the main
   * thread may be scheduled only after the workers are done) */
  acc->secs += last - first;
  acc->cpu += cpu;
  acc->n += n;
  pthread_barrier_destroy(&bar);
  free(w);
  free(tid);
}

static struct io_result acc_result(struct acc *acc) {
  struct summary s = summarize(acc->lat, acc->n);
  struct io_result r = {.secs = acc->secs,
                        .iops = (double)acc->n / acc->secs,
                        .cpu_us_per_op = acc->cpu * 1e6 / (double)acc->n,
                        .p50_us = s.median * 1e6,
                        .p99_us = s.p99 * 1e6};
  free(acc->lat);
  memset(acc, 0, sizeof *acc);
  return r;
}

/* The same n ops on each of the np targets, in `slices` slices taken in
 * turns (the target that goes first rotates), so that a neighbour's load or
 * the kernel's background writeback hits every target alike. drop_fd >= 0:
 * drop that file's page cache before every slice (cold reads). slice_secs[p][s]:
 * the seconds target p took for slice s (the same ops for every target). */
static void interleave(const struct target *const *tg, int np, int write, const uint64_t *offs,
                       size_t n, int threads, int slices, int drop_fd, struct io_result *out,
                       double slice_secs[][MAX_SLICES]) {
  struct acc acc[4];
  memset(acc, 0, sizeof acc);
  for (int s = 0; s < slices; s++) {
    size_t a = n * (size_t)s / (size_t)slices, b = n * (size_t)(s + 1) / (size_t)slices;
    for (int k = 0; k < np; k++) {
      int p = (k + s) % np;
      if (drop_fd >= 0) drop_cache(drop_fd);
      double before = acc[p].secs;
      run_slice(tg[p], write, offs + a, b - a, threads, &acc[p]);
      slice_secs[p][s] = acc[p].secs - before;
    }
  }
  for (int p = 0; p < np; p++)
    out[p] = acc_result(&acc[p]);
}

/* vol_flush or fdatasync; the seconds it took, and the bytes t holds on disk. */
static double flush_target(const struct target *t, uint64_t *allocated) {
  struct err e;
  err_init(&e);
  double t0 = now_s();
  if (t->kind == T_VOL) {
    if (vol_flush(t->v, &e) < 0) die_err("vol_flush", &e);
  } else if (fdatasync(t->fd) < 0) {
    die("fdatasync: %s", strerror(errno));
  }
  double dt = now_s() - t0;
  struct stat st;
  if (t->kind == T_VOL)
    *allocated = vol_allocated(t->v);
  else
    *allocated = fstat(t->fd, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
  return dt;
}

/* Random cluster-aligned offsets (with repeats) over `clusters` clusters. */
static uint64_t *random_offsets(size_t n, uint64_t clusters, uint64_t seed) {
  uint64_t *o = xmalloc(n * sizeof *o);
  for (size_t i = 0; i < n; i++)
    o[i] = (mix(&seed) % clusters) * BS;
  return o;
}

/* n distinct random cluster offsets (a prefix of a random permutation). */
static uint64_t *distinct_offsets(size_t n, uint64_t clusters, uint64_t seed) {
  uint32_t *perm = xmalloc(clusters * sizeof *perm);
  for (uint64_t i = 0; i < clusters; i++)
    perm[i] = (uint32_t)i;
  for (uint64_t i = 0; i < n && i < clusters; i++) {
    uint64_t j = i + mix(&seed) % (clusters - i);
    uint32_t tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
  uint64_t *o = xmalloc(n * sizeof *o);
  for (size_t i = 0; i < n; i++)
    o[i] = (uint64_t)perm[i] * BS;
  free(perm);
  return o;
}

static void shuffle(uint64_t *o, size_t n, uint64_t seed) {
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)(mix(&seed) % (i + 1));
    uint64_t t = o[i];
    o[i] = o[j];
    o[j] = t;
  }
}

/* The golden content: xoshiro256** from `seed`, 8 MiB at a time. Reused when
 * the file is there with the right size and first block. */
static int data_file_ok(const char *path, uint64_t size, uint64_t seed) {
  struct stat st;
  if (stat(path, &st) < 0 || (uint64_t)st.st_size != size || (uint64_t)st.st_blocks * 512u < size)
    return 0;
  unsigned char want[BS], got[BS];
  struct xo x;
  xo_seed(&x, seed);
  xo_fill(&x, want, BS);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t r = pread(fd, got, BS, 0);
  close(fd);
  return r == (ssize_t)BS && memcmp(want, got, BS) == 0;
}

static double write_data_file(const char *path, uint64_t size, uint64_t seed) {
  double t0 = now_s();
  size_t chunk = 8u << 20;
  unsigned char *buf = xmalloc(chunk);
  struct xo x;
  xo_seed(&x, seed);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("create %s: %s", path, strerror(errno));
  for (uint64_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
    xo_fill(&x, buf, n);
    if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) die("write %s: %s", path, strerror(errno));
  }
  if (fdatasync(fd) < 0) die("fdatasync %s: %s", path, strerror(errno));
  close(fd);
  free(buf);
  return now_s() - t0;
}

static double copy_file(const char *from, const char *to) {
  double t0 = now_s();
  int in = open(from, O_RDONLY | O_CLOEXEC);
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (in < 0 || out < 0) die("copy %s to %s: %s", from, to, strerror(errno));
  struct stat st;
  if (fstat(in, &st) < 0) die("stat %s: %s", from, strerror(errno));
  for (uint64_t left = (uint64_t)st.st_size; left > 0;) {
    ssize_t k = copy_file_range(in, NULL, out, NULL, left < (1u << 30) ? left : (1u << 30), 0);
    if (k <= 0) die("copy %s to %s: %s", from, to, k < 0 ? strerror(errno) : "short");
    left -= (uint64_t)k;
  }
  if (fdatasync(out) < 0) die("fdatasync %s: %s", to, strerror(errno));
  close(in);
  close(out);
  return now_s() - t0;
}

/* Read the whole file once, so that it is in the page cache. */
static void warm_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open %s: %s", path, strerror(errno));
  size_t chunk = 8u << 20;
  char *buf = xmalloc(chunk);
  while (read(fd, buf, chunk) > 0) {
  }
  free(buf);
  close(fd);
}

static void drop_cache(int fd) {
  int r = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (r) die("posix_fadvise DONTNEED: %s", strerror(r));
}

/* Read the blocks at offs once (untimed), so that they are in the page cache. */
static void touch_offsets(int fd, const uint64_t *offs, size_t n) {
  unsigned char buf[BS];
  for (size_t i = 0; i < n; i++)
    if (pread(fd, buf, BS, (off_t)offs[i]) != (ssize_t)BS) die("pre-read: %s", strerror(errno));
}

/* Touch `bytes` of fresh anonymous memory, then free it. In a VM whose free
 * memory goes back to the host (virtio-balloon free page reporting), the
 * first touch of a page costs a host page fault; the page cache pages the
 * writes allocate next then come from memory the host still backs. */
static void prefault_memory(uint64_t bytes) {
  unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  for (uint64_t i = 0; i < bytes; i += 4096)
    p[i] = 1;
  munmap(p, bytes);
}

static uint64_t mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  if (f) fclose(f);
  return (uint64_t)kb << 10;
}

/* Results of one (test, threads) over the repeats. */
#define NTESTS 5
enum { R_READ, R_READ_COLD, R_FIRST, R_OVER, R_READ_OWNED };
static const char *test_name[NTESTS] = {"read (page cache)", "read (cold: fadvise DONTNEED)",
                                        "first write", "overwrite", "read of written clusters"};
static const char *test_key[NTESTS] = {"read", "read_cold", "first_write", "overwrite",
                                       "read_written"};
/* 0 = clone (struct vol), 1 = raw file; for writes also 2 = sparse raw file and
 * 3 = a clone opened with preallocation off (what the clone did before it) */
#define NPEERS 4
static const char *peer_name[NPEERS] = {"clone (struct vol)", "raw file (pread/pwrite)",
                                        "sparse raw file", "clone, no preallocation"};
static const char *peer_key[NPEERS] = {"clone", "raw", "raw_sparse", "clone_no_prealloc"};

struct cell {
  struct io_result r[16];
  int n;
  /* this target's ops/s over the raw file's in each slice of each repeat:
   * the two ran the same ops next to each other, so a neighbour's load
   * cancels out better than in the ratio of the medians */
  double slice_ratio[16 * MAX_SLICES];
  int nslice;
};

static double quantile(const double *v, int n, double q) {
  if (n == 0) return 0;
  double *tmp = xmalloc((size_t)n * sizeof *tmp);
  memcpy(tmp, v, (size_t)n * sizeof *tmp);
  qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
  double r = tmp[(int)(q * (n - 1) + 0.5)];
  free(tmp);
  return r;
}

static int cmp_iops(const void *a, const void *b) {
  double x = ((const struct io_result *)a)->iops, y = ((const struct io_result *)b)->iops;
  return x < y ? -1 : x > y;
}

/* The repeat with the median ops/s. */
static struct io_result median_result(const struct cell *c) {
  struct io_result tmp[16];
  memcpy(tmp, c->r, (size_t)c->n * sizeof *tmp);
  qsort(tmp, (size_t)c->n, sizeof *tmp, cmp_iops);
  return tmp[(c->n - 1) / 2];
}

static json_t *io_result_json(struct io_result r, int with_flush) {
  json_t *j = json_object();
  jset(j, "ops_per_s", jround(r.iops, 0));
  jset(j, "secs", jround(r.secs, 4));
  jset(j, "cpu_us_per_op", jround(r.cpu_us_per_op, 2));
  jset(j, "p50_us", jround(r.p50_us, 2));
  jset(j, "p99_us", jround(r.p99_us, 2));
  if (with_flush) {
    json_object_set_new(j, "flush_s", jround(r.flush_s, 3));
    json_object_set_new(j, "allocated_bytes", jint(r.allocated));
  }
  return j;
}

static void bench_io(void) {
  uint64_t size = O.io_gib * GIB, clusters = size / BS;
  const char *gid = "io-golden";
  printf("\n== io: 4 KiB random I/O, %llu GiB golden volume of pseudo-random data; clone through "
         "struct vol vs raw file\n",
         (unsigned long long)O.io_gib);
  /* 1. the golden volume's content, and the raw file peer */
  char *tmp = vol_golden_tmp_path(VS, gid);
  char *data = O.cache
                   ? xprintf("%s/vol-bench-golden-%llug.raw", O.cache, (unsigned long long)O.io_gib)
                   : xprintf("%s", tmp);
  char *raw = O.cache ? xprintf("%s/vol-bench-raw-%llug.raw", O.cache, (unsigned long long)O.io_gib)
                      : xprintf("%s/raw-%llug.raw", O.dir, (unsigned long long)O.io_gib);
  char *sparse = xprintf("%s/raw-sparse.raw", O.dir);
  if (O.cache) mkdir_p(O.cache);
  double t_fill = 0, t_copy = 0;
  int reused = data_file_ok(data, size, O.seed);
  if (!reused) {
    t_fill = write_data_file(data, size, O.seed);
    printf("  wrote %llu GiB of pseudo-random data to %s in %.1f s\n", (unsigned long long)O.io_gib,
           data, t_fill);
  } else {
    printf("  reusing %s\n", data);
  }
  if (O.cache && link(data, tmp) < 0) {
    if (errno != EXDEV) die("link %s %s: %s", data, tmp, strerror(errno));
    copy_file(data, tmp);
  }
  struct err e;
  err_init(&e);
  if (vol_golden_commit(VS, gid, &e) < 0) die_err("commit golden volume", &e);
  char *gpath = golden_path(gid);
  struct stat st;
  if (stat(raw, &st) < 0 || (uint64_t)st.st_size != size || (uint64_t)st.st_blocks * 512 < size) {
    t_copy = copy_file(gpath, raw);
    printf("  copied it to the raw file peer %s in %.1f s\n", raw, t_copy);
  }
  int gfd = open(gpath, O_RDONLY | O_CLOEXEC), rfd = open(raw, O_RDWR | O_CLOEXEC);
  if (gfd < 0 || rfd < 0) die("open %s / %s: %s", gpath, raw, strerror(errno));
  uint64_t avail = mem_available();
  int warm_ok = avail > 3 * size;
  printf("  MemAvailable %.1f GiB%s\n", (double)avail / GIB,
         warm_ok ? ""
                 : " (less than 3x the volume: the page-cache figures may include disk reads)");
  warm_file(gpath);
  warm_file(raw);
  double t_io0 = now_s();

  static struct cell cells[MAX_LIST][NTESTS][NPEERS];
  memset(cells, 0, sizeof cells);
  double ss[NPEERS][MAX_SLICES]; /* seconds per slice of the last interleave */
  size_t nw = (size_t)O.io_write_ops, nr = (size_t)O.io_ops, nc = (size_t)O.io_cold_ops;
  if (nw > clusters) nw = (size_t)clusters;
  int repeat = O.repeat > 16 ? 16 : O.repeat;
  if (O.slices > MAX_SLICES) O.slices = MAX_SLICES;
  struct io_result res[NPEERS];
#define ADD(test, p, val) (cells[ti][test][p].r[cells[ti][test][p].n++] = (val))
  /* the slice ratios of peer p (at index i in the last interleave) to the raw
   * file (at index r) */
#define ADD_SLICES(test, p, i, r)                                                                  \
  for (int s_ = 0; s_ < O.slices; s_++)                                                            \
  cells[ti][test][p].slice_ratio[cells[ti][test][p].nslice++] = ratio(ss[r][s_], ss[i][s_])
  for (int cold = 0; cold < 2; cold++) { /* the cold reads last: they empty the page cache */
    for (int ti = 0; ti < O.nthreads; ti++) {
      int th = O.threads[ti];
      for (int rep = 0; rep < repeat; rep++) {
        uint64_t seed = O.seed + (uint64_t)rep * 7919 + (uint64_t)th * 104729;
        char id[64];
        snprintf(id, sizeof id, "io-%d-%d-%d", th, rep, cold);
        os_create(id, gid);
        struct vol *v = os_open(id);
        /* the same clone as it was before preallocation, for the writes */
        char id_np[80];
        snprintf(id_np, sizeof id_np, "%s-np", id);
        struct vol *vnp = NULL;
        if (!cold) {
          uint32_t saved = vol_os_prealloc_clusters;
          vol_os_prealloc_clusters = 0;
          os_create(id_np, gid);
          vnp = os_open(id_np);
          vol_os_prealloc_clusters = saved;
        }
        struct target tc = {.kind = T_VOL, .v = v}, tg = {.kind = T_FD, .fd = gfd},
                      tr = {.kind = T_FD, .fd = rfd};
        /* reads of the unwritten clone (they fall through to the golden
         * volume) against reads of the golden volume's raw file itself: the
         * same bytes in the same page cache */
        const struct target *rt[2] = {rep % 2 ? &tg : &tc, rep % 2 ? &tc : &tg};
        int ci = rep % 2, ri = 1 - ci; /* where clone and raw are in rt */
        if (cold) {
          uint64_t *ro = random_offsets(nc, clusters, seed + 1);
          interleave(rt, 2, 0, ro, nc, th, O.slices, gfd, res, ss);
          ADD(R_READ_COLD, 0, res[ci]);
          ADD_SLICES(R_READ_COLD, 0, ci, ri);
          ADD(R_READ_COLD, 1, res[ri]);
          free(ro);
          vol_close(v);
          os_delete(id);
          printf("  threads %d, cold reads, repeat %d/%d done\n", th, rep + 1, repeat);
          fflush(stdout);
          continue;
        }
        uint64_t *ro = random_offsets(nr, clusters, seed);
        touch_offsets(gfd, ro, nr); /* page cache: whatever a neighbour or reclaim evicted */
        interleave(rt, 2, 0, ro, nr, th, O.slices, -1, res, ss);
        ADD(R_READ, 0, res[ci]);
        ADD_SLICES(R_READ, 0, ci, ri);
        ADD(R_READ, 1, res[ri]);
        free(ro);
        /* first writes to clusters the clone has not written, against
         * overwrites of the raw copy and first writes to a sparse raw file */
        int sfd = open(sparse, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (sfd < 0 || ftruncate(sfd, (off_t)size) < 0)
          die("create %s: %s", sparse, strerror(errno));
        struct target ts = {.kind = T_FD, .fd = sfd}, tn = {.kind = T_VOL, .v = vnp};
        const struct target *wt[NPEERS] = {&tc, &tr, &ts, &tn};
        uint64_t *wo = distinct_offsets(nw, clusters, seed + 2);
        touch_offsets(rfd, wo, nw);             /* the raw file's blocks are in the page cache */
        prefault_memory((uint64_t)nw * BS * 4); /* 3 targets allocate, and a margin */
        interleave(wt, NPEERS, 1, wo, nw, th, O.slices, -1, res, ss);
        for (int p = 0; p < NPEERS; p++) /* after all of them: no flush inside a run */
          res[p].flush_s = flush_target(wt[p], &res[p].allocated);
        for (int p = 0; p < NPEERS; p++) {
          ADD(R_FIRST, p, res[p]);
          if (p != 1) ADD_SLICES(R_FIRST, p, p, 1);
        }
        shuffle(wo, nw, seed + 3);
        interleave(wt, NPEERS, 1, wo, nw, th, O.slices, -1, res, ss);
        for (int p = 0; p < NPEERS; p++)
          res[p].flush_s = flush_target(wt[p], &res[p].allocated);
        for (int p = 0; p < NPEERS; p++) {
          ADD(R_OVER, p, res[p]);
          if (p != 1) ADD_SLICES(R_OVER, p, p, 1);
        }
        shuffle(wo, nw, seed + 4);
        const struct target *ot[2] = {&tc, &tr};
        interleave(ot, 2, 0, wo, nw, th, O.slices, -1, res, ss);
        ADD(R_READ_OWNED, 0, res[0]);
        ADD_SLICES(R_READ_OWNED, 0, 0, 1);
        ADD(R_READ_OWNED, 1, res[1]);
        free(wo);
        vol_close(v);
        os_delete(id);
        vol_close(vnp);
        os_delete(id_np);
        close(sfd);
        unlink(sparse);
        printf("  threads %d, repeat %d/%d done\n", th, rep + 1, repeat);
        fflush(stdout);
      }
    }
  }
#undef ADD
#undef ADD_SLICES
  double t_io = now_s() - t_io0;
  /* the table */
  json_t *jt = json_array();
  printf("\n  %-30s %-24s %7s %10s %8s %8s %9s %8s  %-9s %s\n", "test", "target", "threads",
         "ops/s", "p50 us", "p99 us", "CPU us/op", "flush s", "clone/raw", "per slice (p25-p75)");
  int read_ok = 1, write_ok = 1;
  for (int ti = 0; ti < O.nthreads; ti++) {
    json_t *jth = json_object();
    for (int t = 0; t < NTESTS; t++) {
      json_t *jtest = json_object();
      struct io_result base = median_result(&cells[ti][t][1]);
      for (int p = 0; p < NPEERS; p++) {
        if (!cells[ti][t][p].n) continue;
        struct io_result m = median_result(&cells[ti][t][p]);
        int writes = t == R_FIRST || t == R_OVER;
        char rat[32] = "", srat[48] = "";
        const struct cell *c = &cells[ti][t][p];
        if (p != 1) snprintf(rat, sizeof rat, "%.2f", ratio(m.iops, base.iops));
        if (p != 1 && c->nslice)
          snprintf(srat, sizeof srat, "%.2f (%.2f-%.2f)", quantile(c->slice_ratio, c->nslice, 0.5),
                   quantile(c->slice_ratio, c->nslice, 0.25),
                   quantile(c->slice_ratio, c->nslice, 0.75));
        char fl[16] = "";
        if (writes) snprintf(fl, sizeof fl, "%.2f", m.flush_s);
        char al[32] = "";
        if (t == R_FIRST)
          snprintf(al, sizeof al, "  %.0f MiB on disk", (double)m.allocated / (1 << 20));
        printf("  %-30s %-24s %7d %10.0f %8.2f %8.2f %9.2f %8s  %-9s %-19s%s\n",
               p == 0 ? test_name[t] : "", peer_name[p], O.threads[ti], m.iops, m.p50_us, m.p99_us,
               m.cpu_us_per_op, fl, rat, srat, al);
        json_t *jr = io_result_json(m, writes);
        if (p != 1 && c->nslice) {
          json_object_set_new(jr, "ratio_raw_slices_median",
                              jround(quantile(c->slice_ratio, c->nslice, 0.5), 3));
          json_object_set_new(jr, "ratio_raw_slices_p25",
                              jround(quantile(c->slice_ratio, c->nslice, 0.25), 3));
          json_object_set_new(jr, "ratio_raw_slices_p75",
                              jround(quantile(c->slice_ratio, c->nslice, 0.75), 3));
        }
        json_t *reps = json_array();
        for (int i = 0; i < cells[ti][t][p].n; i++)
          json_array_append_new(reps, jround(cells[ti][t][p].r[i].iops, 0));
        json_object_set_new(jr, "repeats_ops_per_s", reps);
        json_object_set_new(jtest, peer_key[p], jr);
      }
      double rr = ratio(median_result(&cells[ti][t][0]).iops, base.iops);
      json_object_set_new(jtest, "ratio_clone_raw", jround(rr, 3));
      if (t == R_READ || t == R_READ_COLD) read_ok &= rr >= TARGET_READ_RATIO;
      if (t == R_FIRST) write_ok &= rr >= TARGET_FIRST_WRITE_RATIO;
      json_object_set_new(jth, test_key[t], jtest);
    }
    json_object_set_new(jth, "threads", json_integer(O.threads[ti]));
    json_array_append_new(jt, jth);
  }
  printf("  targets (every thread count; reads warm and cold): reads >= %.0f%% of raw: %s; first "
         "writes >= %.0f%% of raw: %s\n",
         TARGET_READ_RATIO * 100, read_ok ? "met" : "NOT met", TARGET_FIRST_WRITE_RATIO * 100,
         write_ok ? "met" : "NOT met");
  json_t *ji = json_object();
  jset(ji, "golden_gib", jint(O.io_gib));
  jset(ji, "block_size", jint(BS));
  jset(ji, "read_ops", jint(nr));
  jset(ji, "cold_read_ops", jint(nc));
  jset(ji, "write_ops", jint(nw));
  jset(ji, "repeat", jint((uint64_t)repeat));
  jset(ji, "data_reused", json_boolean(reused));
  jset(ji, "fill_s", jround(t_fill, 2));
  jset(ji, "copy_s", jround(t_copy, 2));
  jset(ji, "runs_s", jround(t_io, 1));
  jset(ji, "slices", jint((uint64_t)O.slices));
  jset(ji, "prealloc_bytes", jint((uint64_t)vol_os_prealloc_clusters * BS));
  jset(ji, "mem_available_gib", jround((double)avail / GIB, 1));
  jset(ji, "page_cache_fits", json_boolean(warm_ok));
  jset(ji, "results", jt);
  jset(ji, "target_read_ratio", json_real(TARGET_READ_RATIO));
  jset(ji, "target_first_write_ratio", json_real(TARGET_FIRST_WRITE_RATIO));
  jset(ji, "target_read_met", json_boolean(read_ok));
  jset(ji, "target_first_write_met", json_boolean(write_ok));
  jset(ROOT, "io", ji);
  close(gfd);
  close(rfd);
  delete_golden(gid); /* with --cache the data stays under its cache name */
  if (!O.cache) unlink(raw);
  free(tmp);
  free(data);
  free(raw);
  free(sparse);
  free(gpath);
}

/* ---- main ------------------------------------------------------------------------------- */

static int parse_list(const char *s, uint64_t *out, int max) {
  int n = 0;
  char *copy = xprintf("%s", s), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
    char *end;
    unsigned long long v = strtoull(t, &end, 10);
    if (*end || v == 0) die("bad number \"%s\" in \"%s\"", t, s);
    out[n++] = v;
  }
  free(copy);
  if (!n) die("empty list \"%s\"", s);
  return n;
}

static long parse_long(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v <= 0) die("bad number \"%s\"", s);
  return v;
}

static void usage(void) {
  printf("usage: vol_bench --dir DIR [options] [clone] [many] [io]   (default: all three)\n"
         "  --dir DIR            work directory (a volume store and the peers' files; emptied "
         "after)\n"
         "  --json FILE          write every figure as JSON\n"
         "  --cache DIR          keep the io section's golden data and raw copy there, reuse "
         "them\n"
         "  --qemu-img PATH      the peer (default /usr/bin/qemu-img)\n"
         "  --clone-sizes LIST   golden sizes in GiB (default 1,20,100)\n"
         "  --clones N           clones per size (default 200)\n"
         "  --many N             clones of one golden volume (default 1000)\n"
         "  --many-size GIB      its size (default 20)\n"
         "  --io-size GIB        io golden volume size (default 4)\n"
         "  --io-ops N           reads per run (default 200000)\n"
         "  --io-cold-ops N      cold reads per run (default 20000)\n"
         "  --io-write-ops N     writes per run (default 100000)\n"
         "  --threads LIST       io thread counts (default 1,4)\n"
         "  --repeat N           io repeats; the median is reported (default 3)\n"
         "  --slices N           each io run is cut into N slices taken in turns by clone and\n"
         "                       raw file (default 10)\n"
         "  --prealloc-kib N     the clone's preallocation chunk (a multiple of 256; 0 = off;\n"
         "                       default: the library's, %u)\n",
         VOL_OS_PREALLOC_DEFAULT * BS / 1024);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {
      {"dir", 1, 0, 'd'},          {"json", 1, 0, 'j'},        {"cache", 1, 0, 'C'},
      {"qemu-img", 1, 0, 'q'},     {"clone-sizes", 1, 0, 's'}, {"clones", 1, 0, 'n'},
      {"many", 1, 0, 'm'},         {"many-size", 1, 0, 'M'},   {"io-size", 1, 0, 'g'},
      {"io-ops", 1, 0, 'o'},       {"io-cold-ops", 1, 0, 'c'}, {"io-write-ops", 1, 0, 'w'},
      {"threads", 1, 0, 't'},      {"repeat", 1, 0, 'r'},      {"slices", 1, 0, 'S'},
      {"prealloc-kib", 1, 0, 'P'}, {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
  int ch;
  uint64_t list[MAX_LIST];
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 'd': O.dir = optarg; break;
    case 'j': O.json = optarg; break;
    case 'C': O.cache = optarg; break;
    case 'q': O.qemu_img = optarg; break;
    case 's': O.nclone_gib = parse_list(optarg, O.clone_gib, MAX_LIST); break;
    case 'n': O.clones = (int)parse_long(optarg); break;
    case 'm': O.many = (int)parse_long(optarg); break;
    case 'M': O.many_gib = (uint64_t)parse_long(optarg); break;
    case 'g': O.io_gib = (uint64_t)parse_long(optarg); break;
    case 'o': O.io_ops = parse_long(optarg); break;
    case 'c': O.io_cold_ops = parse_long(optarg); break;
    case 'w': O.io_write_ops = parse_long(optarg); break;
    case 't':
      O.nthreads = parse_list(optarg, list, MAX_LIST);
      for (int i = 0; i < O.nthreads; i++)
        O.threads[i] = (int)list[i];
      break;
    case 'r': O.repeat = (int)parse_long(optarg); break;
    case 'S': O.slices = (int)parse_long(optarg); break;
    case 'P':
      O.prealloc_kib = strcmp(optarg, "0") ? parse_long(optarg) : 0;
      if (O.prealloc_kib % 256) die("--prealloc-kib must be a multiple of 256");
      vol_os_prealloc_clusters = (uint32_t)(O.prealloc_kib * 1024 / BS);
      break;
    case 'h': usage(); return 0;
    default: usage(); return 2;
    }
  }
  for (int i = optind; i < argc; i++) {
    if (!strcmp(argv[i], "clone"))
      O.do_clone = 1;
    else if (!strcmp(argv[i], "many"))
      O.do_many = 1;
    else if (!strcmp(argv[i], "io"))
      O.do_io = 1;
    else
      die("unknown section \"%s\" (clone, many, io)", argv[i]);
  }
  if (!O.do_clone && !O.do_many && !O.do_io) O.do_clone = O.do_many = O.do_io = 1;
  if (!O.dir) {
    usage();
    return 2;
  }
  if (O.io_gib * GIB / BS > UINT32_MAX) die("--io-size is too large");
  log_set_level(LOG_WARN);
  char *store_dir = xprintf("%s/store", O.dir);
  mkdir_p(O.dir);
  struct err e;
  err_init(&e);
  if (vol_store_open(&VS, store_dir, &e) < 0) die_err("vol_store_open", &e);
  ROOT = json_object();
  json_object_set_new(ROOT, "work_dir", json_string(O.dir));
  if (O.do_clone || O.do_many) find_qemu_img();
  if (O.do_clone) bench_clone();
  if (O.do_many) bench_many();
  if (O.do_io) bench_io();
  vol_store_close(VS);
  char *golden_dir = xprintf("%s/golden", store_dir), *os_dir = xprintf("%s/os", store_dir);
  rmdir(golden_dir);
  rmdir(os_dir);
  rmdir(store_dir);
  free(golden_dir);
  free(os_dir);
  free(store_dir);
  if (O.json && json_dump_file(ROOT, O.json, JSON_INDENT(1) | JSON_SORT_KEYS) < 0)
    die("cannot write %s", O.json);
  json_decref(ROOT);
  return 0;
}
