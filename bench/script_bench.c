/* script_bench.c — the native side of the plan-script benchmark
 * (bench/script_bench.py runs it from `make bench` next to real guestfish;
 * never part of `make test`).
 *
 * One build plan (a JSON file: {"name", "values", "secrets", "steps":
 * [{"serial", "name", "content"}]}) is run --runs times on fresh copies of one
 * disk image, exactly as streamerd runs a deployment:
 *
 *   clone  (default) the image is a golden volume of a vol_store (copied in
 *          once, sparse); each run gets a new OS volume clone (vol_os_create,
 *          timed apart, not part of the build plan's time)
 *   file   each run gets a sparse copy of the image (not timed), opened
 *          with vol_file_open
 *
 * Timed per run, from the first call to the last (CLOCK_MONOTONIC):
 *   open   vol_os_open / vol_file_open + fs_disk_open (partition tables, LVM)
 *   run    script_session_new + set_attributes + script_session_run_plan
 *   close  script_session_close (unmount, write back, vol_flush) +
 *          fs_disk_close + vol_close
 *   host   the time inside host commands (!, <!, | shell), measured around
 *          each call of the host-command hook (µs), sandbox set-up and
 *          tear-down included; the library's own host_ms (ms) is recorded too
 * and the process's CPU time (user + system; the host commands' children are
 * counted apart).
 *
 * Host commands run in the real bubblewrap sandbox (sandbox_new/sandbox_run,
 * what the library does by itself when no hook is set) with --host sandbox,
 * or in a plain `bash -c` in the work directory with --host plain (the unit
 * tests' hook; shows what the sandbox costs).
 *
 * --expand FILE writes the build plan as guestfish gets it on HPE's appliance
 * (each step's content with its @attributes@ substituted, concatenated in
 * serialNumber order, each step on a new line: what script_session_run_plan
 * parses) and exits. --export FILE writes the disk after the last run as a
 * sparse raw file and --keep-workdir DIR keeps that run's work directory, for
 * the differential check against guestfish.
 *
 * Prints one JSON object (every run, medians, p90) on stdout or to --json.
 * Exit status 1 when the setup fails or the build plan fails. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "script/attr.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/vol.h"

struct opts {
  const char *plan, *image, *dir, *json, *expand, *export_path, *keep_workdir, *log_path;
  int clone; /* 1: OS volume clones; 0: file copies */
  int sandbox;
  int runs, warmup;
};
static struct opts O = {.clone = 1, .sandbox = 1, .runs = 30, .warmup = 2};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("script_bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double cpu_ms(int who) {
  struct rusage r;
  getrusage(who, &r);
  return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 +
         (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

/* ---- files -------------------------------------------------------------------- */

static void rm_rf(const char *path) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/rm", "rm", "-rf", "--", path, (char *)NULL);
    _exit(127);
  }
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
    die("rm -rf %s failed", path);
}

/* A sparse copy: only the data extents (SEEK_DATA/SEEK_HOLE) are copied. */
static void sparse_copy(const char *from, const char *to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) die("open %s: %s", from, strerror(errno));
  struct stat st;
  if (fstat(in, &st)) die("stat %s: %s", from, strerror(errno));
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) die("create %s: %s", to, strerror(errno));
  if (ftruncate(out, st.st_size)) die("truncate %s: %s", to, strerror(errno));
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t d = lseek(in, pos, SEEK_DATA);
    if (d < 0) break; /* ENXIO: only a hole is left */
    off_t h = lseek(in, d, SEEK_HOLE);
    if (h < 0) die("SEEK_HOLE %s: %s", from, strerror(errno));
    loff_t a = d, b = d;
    while (a < h) {
      ssize_t n = copy_file_range(in, &a, out, &b, (size_t)(h - a), 0);
      if (n <= 0) die("copy_file_range %s: %s", from, n ? strerror(errno) : "short");
    }
    pos = h;
  }
  if (fsync(out)) die("fsync %s: %s", to, strerror(errno));
  close(out);
  close(in);
}

/* The volume's bytes as a sparse raw file (block_status skips what reads as
 * zeros without storage; all-zero blocks are left as holes too). */
static void export_vol(struct vol *v, const char *to) {
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) die("create %s: %s", to, strerror(errno));
  uint64_t size = vol_size(v);
  if (ftruncate(out, (off_t)size)) die("truncate %s: %s", to, strerror(errno));
  enum { CH = 1 << 20 };
  char *buf = malloc(CH);
  static const char zero[4096];
  if (!buf) die("out of memory");
  struct err e;
  err_init(&e);
  uint64_t off = 0;
  while (off < size) {
    uint64_t run = size - off;
    int st = VOL_MAPPED;
    if (v->ops->block_status) {
      st = v->ops->block_status(v, off, size - off, &run, &e);
      if (st < 0) die("block_status: %s", e.message);
    }
    if (st == VOL_DEALLOCATED) {
      off += run;
      continue;
    }
    uint64_t end = off + run;
    while (off < end) {
      size_t n = end - off < CH ? (size_t)(end - off) : CH;
      if (vol_pread(v, buf, n, off, &e)) die("read the volume: %s", e.message);
      for (size_t k = 0; k < n; k += sizeof zero) {
        size_t m = n - k < sizeof zero ? n - k : sizeof zero;
        if (memcmp(buf + k, zero, m) != 0 &&
            pwrite(out, buf + k, m, (off_t)(off + k)) != (ssize_t)m)
          die("write %s: %s", to, strerror(errno));
      }
      off += n;
    }
  }
  free(buf);
  if (fsync(out)) die("fsync %s: %s", to, strerror(errno));
  close(out);
}

/* ---- the build plan ----------------------------------------------------------- */

struct plan {
  json_t *doc, *values, *secrets;
  struct script_step *steps;
  size_t n;
  const char *name;
};

static void plan_load(struct plan *p, const char *path) {
  json_error_t je;
  p->doc = json_load_file(path, 0, &je);
  if (!p->doc) die("%s: %s (line %d)", path, je.text, je.line);
  p->name = json_string_value(json_object_get(p->doc, "name"));
  p->values = json_object_get(p->doc, "values");
  p->secrets = json_object_get(p->doc, "secrets");
  json_t *steps = json_object_get(p->doc, "steps");
  p->n = json_array_size(steps);
  if (!p->n) die("%s: no steps", path);
  p->steps = calloc(p->n, sizeof *p->steps);
  if (!p->steps) die("out of memory");
  for (size_t i = 0; i < p->n; i++) {
    json_t *x = json_array_get(steps, i);
    p->steps[i].serial = json_string_value(json_object_get(x, "serial"));
    p->steps[i].name = json_string_value(json_object_get(x, "name"));
    p->steps[i].content = json_string_value(json_object_get(x, "content"));
    if (!p->steps[i].content) die("%s: step %zu has no content", path, i);
  }
}

/* serialNumber order as script_session_run_plan sorts (numeric; a serial
 * that is not a number counts as 0; stable) */
static long serial_num(const char *s) {
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  return s && *s && !*end ? v : 0;
}

static void write_expansion(const struct plan *p, const char *path) {
  size_t *order = calloc(p->n, sizeof *order);
  if (!order) die("out of memory");
  for (size_t i = 0; i < p->n; i++)
    order[i] = i;
  for (size_t i = 1; i < p->n; i++) /* insertion sort: stable */
    for (size_t k = i;
         k > 0 && serial_num(p->steps[order[k - 1]].serial) > serial_num(p->steps[order[k]].serial);
         k--) {
      size_t t = order[k];
      order[k] = order[k - 1];
      order[k - 1] = t;
    }
  FILE *f = fopen(path, "w");
  if (!f) die("create %s: %s", path, strerror(errno));
  json_t *empty = json_object();
  for (size_t i = 0; i < p->n; i++) {
    char *t = attr_substitute(p->steps[order[i]].content, p->values ? p->values : empty);
    if (!t) die("out of memory");
    size_t tl = strlen(t);
    fwrite(t, 1, tl, f);
    if (tl && t[tl - 1] != '\n') fputc('\n', f);
    free(t);
  }
  json_decref(empty);
  if (fclose(f)) die("write %s: %s", path, strerror(errno));
  free(order);
}

/* ---- host commands -------------------------------------------------------------- */

struct host {
  const char *workdir;
  struct sandbox *sb;
  double ms; /* inside host commands, set-up and tear-down of the sandbox included */
  int commands;
};

static char *slurp_fd(int fd, size_t *len) {
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  if (!b) die("out of memory");
  for (;;) {
    if (n + 1 >= cap && !(b = realloc(b, cap *= 2))) die("out of memory");
    ssize_t r = pread(fd, b + n, cap - n - 1, (off_t)n);
    if (r < 0) die("read: %s", strerror(errno));
    if (r == 0) break;
    n += (size_t)r;
  }
  b[n] = 0;
  *len = n;
  return b;
}

/* `bash -c` in the work directory, stdin/stdout/stderr through unlinked temp files */
static int plain_run(const char *workdir, const char *script, const void *in, size_t in_len,
                     char **out, size_t *out_len, char **errout, size_t *errout_len, int *status) {
  char tmpl[3][64];
  int fd[3];
  for (int i = 0; i < 3; i++) {
    snprintf(tmpl[i], sizeof tmpl[i], "/tmp/script_bench.XXXXXX");
    if ((fd[i] = mkstemp(tmpl[i])) < 0) die("mkstemp: %s", strerror(errno));
    unlink(tmpl[i]);
  }
  if (in_len && pwrite(fd[0], in, in_len, 0) != (ssize_t)in_len) die("write: %s", strerror(errno));
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(workdir)) _exit(127);
    lseek(fd[0], 0, SEEK_SET);
    dup2(fd[0], 0);
    dup2(fd[1], 1);
    dup2(fd[2], 2);
    execl("/bin/bash", "bash", "-c", script, (char *)NULL);
    _exit(127);
  }
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) < 0) die("fork/wait: %s", strerror(errno));
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  size_t l;
  char *o = slurp_fd(fd[1], &l);
  if (out) {
    *out = o;
    *out_len = l;
  } else {
    free(o);
  }
  o = slurp_fd(fd[2], &l);
  if (errout) {
    *errout = o;
    *errout_len = l;
  } else {
    free(o);
  }
  for (int i = 0; i < 3; i++)
    close(fd[i]);
  return 0;
}

static int host_hook(void *opaque, const char *script, const void *in, size_t in_len, char **out,
                     size_t *out_len, char **errout, size_t *errout_len, int *status,
                     struct err *e) {
  struct host *h = opaque;
  double t0 = now_ms();
  int r;
  h->commands++;
  if (O.sandbox) {
    if (!h->sb) {
      struct sandbox_limits lim;
      sandbox_limits_default(&lim);
      if (sandbox_new(h->workdir, &lim, &h->sb, e)) {
        h->ms += now_ms() - t0;
        return -1;
      }
    }
    r = sandbox_run(h->sb, script, in, in_len, out, out_len, errout, errout_len, status, e);
  } else {
    r = plain_run(h->workdir, script, in, in_len, out, out_len, errout, errout_len, status);
  }
  h->ms += now_ms() - t0;
  return r;
}

/* ---- the log -------------------------------------------------------------------- */

static char *logbuf;
static size_t loglen, logcap;
static void log_cb(void *opaque, const char *text, size_t len) {
  (void)opaque;
  if (loglen + len + 1 > logcap) {
    logcap = (loglen + len + 1) * 2;
    if (!(logbuf = realloc(logbuf, logcap))) die("out of memory");
  }
  memcpy(logbuf + loglen, text, len);
  loglen += len;
  logbuf[loglen] = 0;
}

/* ---- one run ------------------------------------------------------------------- */

struct run {
  double clone_ms, open_ms, run_ms, close_ms, total_ms, host_ms, cpu_ms, child_cpu_ms;
  long long lib_host_ms, lib_total_ms;
  int statements, host_commands, errors_ignored;
};

static struct vol_store *VS;
static const char *GOLDEN_ID = "script-bench-golden";

static void one_run(const struct plan *p, int i, int last, struct run *r) {
  struct err e;
  err_init(&e);
  char work[4096], id[64], img[4096];
  snprintf(work, sizeof work, "%s/work-%d", O.dir, i);
  snprintf(id, sizeof id, "script-bench-%d", i);
  snprintf(img, sizeof img, "%s/run-%d.img", O.dir, i);
  rm_rf(work);
  if (mkdir(work, 0700)) die("mkdir %s: %s", work, strerror(errno));
  memset(r, 0, sizeof *r);
  if (O.clone) {
    double c0 = now_ms();
    if (vol_os_create(VS, id, GOLDEN_ID, 0, &e)) die("vol_os_create: %s", e.message);
    r->clone_ms = now_ms() - c0;
  } else {
    sparse_copy(O.image, img);
  }
  struct host h = {.workdir = work};
  struct script_opts so;
  memset(&so, 0, sizeof so);
  so.workdir = work;
  so.log = log_cb;
  so.guestfish = SCRIPT_GUESTFISH_NEVER;
  so.volume_info = O.clone ? "OS volume clone (script_bench)" : "image file copy (script_bench)";
  so.host_run = host_hook;
  so.host_opaque = &h;
  loglen = 0;
  if (logbuf) logbuf[0] = 0;

  double cpu0 = cpu_ms(RUSAGE_SELF), ch0 = cpu_ms(RUSAGE_CHILDREN);
  double t0 = now_ms();
  struct vol *v = NULL;
  struct fs_disk *d = NULL;
  struct script_session *s = NULL;
  if (O.clone ? vol_os_open(VS, id, &v, &e) : vol_file_open(img, 0, &v, &e))
    die("open the volume: %s", e.message);
  if (fs_disk_open(v, 0, &d, &e)) die("fs_disk_open: %s", e.message);
  double t1 = now_ms();
  if (script_session_new(d, &so, &s, &e)) die("script_session_new: %s", e.message);
  script_session_set_attributes(s, p->values, p->secrets);
  int rc = script_session_run_plan(s, p->steps, p->n, &e);
  double t2 = now_ms();
  struct script_stats st;
  script_session_stats(s, &st);
  struct err ce;
  err_init(&ce);
  int crc = script_session_close(s, &ce);
  double ts = now_ms();
  if (h.sb) sandbox_free(h.sb); /* what script_session_close does with its own sandbox */
  h.ms += now_ms() - ts;
  fs_disk_close(d);
  vol_close(v);
  double t3 = now_ms();
  double cpu1 = cpu_ms(RUSAGE_SELF), ch1 = cpu_ms(RUSAGE_CHILDREN);
  if (rc) {
    if (O.log_path) {
      FILE *f = fopen(O.log_path, "w");
      if (f) {
        fwrite(logbuf, 1, loglen, f);
        fclose(f);
      }
    }
    die("the build plan failed: %s (%s)%s%s", e.message, e.code, O.log_path ? "; log: " : "",
        O.log_path ? O.log_path : "");
  }
  if (crc) die("script_session_close: %s", ce.message);
  r->open_ms = t1 - t0;
  r->run_ms = t2 - t1;
  r->close_ms = t3 - t2;
  r->total_ms = t3 - t0;
  r->host_ms = h.ms;
  r->cpu_ms = cpu1 - cpu0;
  r->child_cpu_ms = ch1 - ch0;
  r->lib_host_ms = st.host_ms;
  r->lib_total_ms = st.total_ms;
  r->statements = st.statements;
  r->host_commands = st.host_commands;
  r->errors_ignored = st.errors_ignored;
  if (last && O.export_path) { /* not timed */
    if (O.clone) {
      if (vol_os_open(VS, id, &v, &e)) die("reopen the volume: %s", e.message);
      export_vol(v, O.export_path);
      vol_close(v);
    } else if (rename(img, O.export_path)) {
      die("rename %s: %s", img, strerror(errno));
    }
  }
  if (last && O.log_path) {
    FILE *f = fopen(O.log_path, "w");
    if (!f) die("create %s: %s", O.log_path, strerror(errno));
    fwrite(logbuf, 1, loglen, f);
    fclose(f);
  }
  if (last && O.keep_workdir) {
    rm_rf(O.keep_workdir);
    if (rename(work, O.keep_workdir)) die("rename %s: %s", work, strerror(errno));
  } else {
    rm_rf(work);
  }
  if (O.clone) {
    if (vol_os_delete(VS, id, &e)) die("vol_os_delete: %s", e.message);
  } else {
    unlink(img);
  }
}

/* ---- statistics ---------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* median and p90 (nearest rank) of the n values, min, max, mean */
static json_t *summary(const double *v, int n) {
  double *s = malloc(sizeof *s * (size_t)(n ? n : 1));
  if (!s) die("out of memory");
  int k = 0;
  double sum = 0;
  for (int i = 0; i < n; i++)
    if (v[i] >= 0) {
      s[k++] = v[i];
      sum += v[i];
    }
  if (!k) {
    free(s);
    return json_null();
  }
  qsort(s, (size_t)k, sizeof *s, cmp_d);
  double med = k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
  int r90 = (int)((90 * k + 99) / 100); /* nearest rank */
  json_t *o = json_pack("{s:f,s:f,s:f,s:f,s:f,s:i}", "median", med, "p90", s[r90 - 1], "min", s[0],
                        "max", s[k - 1], "mean", sum / k, "n", k);
  free(s);
  return o;
}

static void usage(int rc) {
  fprintf(rc ? stderr : stdout,
          "usage: script_bench --plan PLAN.json --image IMG --dir DIR [options]\n"
          "       script_bench --plan PLAN.json --expand FILE\n"
          "  --vol clone|file     OS volume clones of a golden volume (default) or file copies\n"
          "  --host sandbox|plain host commands in bubblewrap (default) or a plain bash\n"
          "  --runs N             timed runs (default 30), after --warmup N (default 2)\n"
          "  --export FILE        the disk after the last run, as a sparse raw file\n"
          "  --keep-workdir DIR   the last run's work directory, moved there\n"
          "  --log FILE           the last run's log (or the failed run's)\n"
          "  --json FILE          the results (default: stdout)\n");
  exit(rc);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {
      {"plan", 1, 0, 'p'},   {"image", 1, 0, 'i'},  {"dir", 1, 0, 'd'},
      {"vol", 1, 0, 'v'},    {"host", 1, 0, 'H'},   {"runs", 1, 0, 'n'},
      {"warmup", 1, 0, 'w'}, {"export", 1, 0, 'x'}, {"keep-workdir", 1, 0, 'k'},
      {"log", 1, 0, 'l'},    {"json", 1, 0, 'j'},   {"expand", 1, 0, 'e'},
      {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
    switch (c) {
    case 'p': O.plan = optarg; break;
    case 'i': O.image = optarg; break;
    case 'd': O.dir = optarg; break;
    case 'v':
      if (strcmp(optarg, "clone") && strcmp(optarg, "file")) usage(2);
      O.clone = strcmp(optarg, "clone") == 0;
      break;
    case 'H':
      if (strcmp(optarg, "sandbox") && strcmp(optarg, "plain")) usage(2);
      O.sandbox = strcmp(optarg, "sandbox") == 0;
      break;
    case 'n': O.runs = atoi(optarg); break;
    case 'w': O.warmup = atoi(optarg); break;
    case 'x': O.export_path = optarg; break;
    case 'k': O.keep_workdir = optarg; break;
    case 'l': O.log_path = optarg; break;
    case 'j': O.json = optarg; break;
    case 'e': O.expand = optarg; break;
    case 'h': usage(0); break;
    default: usage(2);
    }
  if (!O.plan) usage(2);
  struct plan p;
  memset(&p, 0, sizeof p);
  plan_load(&p, O.plan);
  if (O.expand) {
    write_expansion(&p, O.expand);
    json_decref(p.doc);
    free(p.steps);
    return 0;
  }
  if (!O.image || !O.dir || O.runs < 1 || O.warmup < 0) usage(2);
  if (mkdir(O.dir, 0700) && errno != EEXIST) die("mkdir %s: %s", O.dir, strerror(errno));
  struct err e;
  err_init(&e);
  double golden_ms = 0;
  if (O.clone) {
    char store[4096];
    snprintf(store, sizeof store, "%s/store", O.dir);
    rm_rf(store);
    if (vol_store_open(&VS, store, &e)) die("vol_store_open: %s", e.message);
    char *tmp = vol_golden_tmp_path(VS, GOLDEN_ID);
    double g0 = now_ms();
    sparse_copy(O.image, tmp);
    if (vol_golden_commit(VS, GOLDEN_ID, &e)) die("vol_golden_commit: %s", e.message);
    golden_ms = now_ms() - g0;
    free(tmp);
  }
  int total = O.warmup + O.runs;
  struct run *runs = calloc((size_t)total, sizeof *runs);
  if (!runs) die("out of memory");
  for (int i = 0; i < total; i++)
    one_run(&p, i, i == total - 1, &runs[i]);

  /* figures of the timed runs */
  int n = O.runs;
  struct run *t = runs + O.warmup;
  double *a = calloc((size_t)n, sizeof *a);
  json_t *out = json_object();
  json_object_set_new(out, "plan", json_string(p.name ? p.name : ""));
  json_object_set_new(out, "steps", json_integer((json_int_t)p.n));
  json_object_set_new(out, "vol", json_string(O.clone ? "clone" : "file"));
  json_object_set_new(out, "host", json_string(O.sandbox ? "sandbox" : "plain"));
  json_object_set_new(out, "runs", json_integer(n));
  json_object_set_new(out, "warmup", json_integer(O.warmup));
  json_object_set_new(out, "golden_copy_ms", json_real(golden_ms));
  json_object_set_new(out, "statements", json_integer(t[0].statements));
  json_object_set_new(out, "host_commands", json_integer(t[0].host_commands));
  json_object_set_new(out, "errors_ignored", json_integer(t[0].errors_ignored));
#define FIELD(key, expr)                                                                           \
  do {                                                                                             \
    for (int i = 0; i < n; i++) {                                                                  \
      const struct run *x = &t[i];                                                                 \
      a[i] = (expr);                                                                               \
    }                                                                                              \
    json_object_set_new(out, key, summary(a, n));                                                  \
    json_t *all = json_array();                                                                    \
    for (int i = 0; i < n; i++)                                                                    \
      json_array_append_new(all, json_real(a[i]));                                                 \
    json_object_set_new(out, key "_all", all);                                                     \
  } while (0)
  FIELD("total_ms", x->total_ms);
  FIELD("excl_host_ms", x->total_ms < 0 ? -1 : x->total_ms - x->host_ms);
  FIELD("host_ms", x->host_ms);
  FIELD("open_ms", x->open_ms);
  FIELD("run_ms", x->run_ms);
  FIELD("run_excl_host_ms", x->run_ms - x->host_ms);
  FIELD("close_ms", x->close_ms);
  FIELD("cpu_ms", x->cpu_ms);
  FIELD("child_cpu_ms", x->child_cpu_ms);
  FIELD("clone_ms", x->clone_ms);
  FIELD("lib_host_ms", (double)x->lib_host_ms);
#undef FIELD
  json_t *wu = json_array();
  for (int i = 0; i < O.warmup; i++)
    json_array_append_new(
        wu, json_pack("{s:f,s:f}", "total_ms", runs[i].total_ms, "host_ms", runs[i].host_ms));
  json_object_set_new(out, "warmup_runs", wu);
  char *txt = json_dumps(out, JSON_INDENT(1) | JSON_SORT_KEYS);
  if (O.json) {
    FILE *f = fopen(O.json, "w");
    if (!f) die("create %s: %s", O.json, strerror(errno));
    fputs(txt, f);
    fputc('\n', f);
    fclose(f);
  } else {
    puts(txt);
  }
  free(txt);
  json_decref(out);
  free(a);
  free(runs);
  if (VS) {
    if (vol_golden_delete(VS, GOLDEN_ID, &e)) die("vol_golden_delete: %s", e.message);
    vol_store_close(VS);
  }
  free(logbuf);
  json_decref(p.doc);
  free(p.steps);
  return 0;
}
