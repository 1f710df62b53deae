/* qemu.c — the qemu-img runner of golden image import (docs/formats/
 * golden-image.md, "qcow2, vmdk and vhdx through qemu-img"): finds qemu-img
 * (STREAMER_QEMU_IMG or PATH), runs it in a child with stdin /dev/null, no
 * inherited descriptors or signal mask and its output on pipes; qemu_info vets
 * an image with `qemu-img info` (format forced, address-space and CPU limits:
 * virtual size, no backing, data or extent file, not encrypted); qemu_convert
 * runs `qemu-img convert -O raw -n --target-is-zero` into the temp file,
 * reporting its progress and stopping it when the store runs out of space. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vol/image_int.h"

#define QEMU_INFO_MAX_OUTPUT (1u << 20) /* qemu-img info JSON we accept */
#define QEMU_INFO_AS_LIMIT (1ull << 30) /* address space of qemu-img info */
#define QEMU_INFO_CPU_LIMIT 30          /* seconds of CPU of qemu-img info */

/* qemu-img's path (malloc'd), from STREAMER_QEMU_IMG or PATH; NULL if none. */
char *qemu_img_find(void) {
  const char *env = getenv("STREAMER_QEMU_IMG");
  if (env && *env) return access(env, X_OK) == 0 ? strdup(env) : NULL;
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *dir = path;;) {
    const char *end = strchr(dir, ':');
    size_t n = end ? (size_t)(end - dir) : strlen(dir);
    char cand[PATH_MAX];
    int w = n ? snprintf(cand, sizeof cand, "%.*s/qemu-img", (int)n, dir)
              : snprintf(cand, sizeof cand, "./qemu-img");
    if (w > 0 && (size_t)w < sizeof cand && access(cand, X_OK) == 0) return strdup(cand);
    if (!end) return NULL;
    dir = end + 1;
  }
}

struct child {
  pid_t pid;
  int out, errfd; /* read ends of stdout and stderr */
};

/* Start argv[0] with stdin /dev/null and stdout/stderr on pipes. limits: the
 * address-space and CPU limits for qemu-img info (0 = none). */
static int child_start(char *const argv[], uint64_t as_limit, unsigned cpu_limit, struct child *c,
                       struct err *e) {
  int po[2], pe[2];
  c->pid = -1;
  c->out = c->errfd = -1;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return image_io_error(e, errno, "open", "/dev/null");
  if (pipe2(po, O_CLOEXEC) < 0) {
    close(devnull);
    return image_io_error(e, errno, "pipe for", argv[0]);
  }
  if (pipe2(pe, O_CLOEXEC) < 0) {
    close(devnull);
    close(po[0]);
    close(po[1]);
    return image_io_error(e, errno, "pipe for", argv[0]);
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* Only async-signal-safe calls from here to exec. */
    if (dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(127);
    /* No descriptor of the server (another thread's sockets, files opened
     * without O_CLOEXEC) and no signal mask it set reach qemu-img. */
    close_range(3, ~0u, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (as_limit) {
      struct rlimit rl = {as_limit, as_limit};
      setrlimit(RLIMIT_AS, &rl);
    }
    if (cpu_limit) {
      struct rlimit rl = {cpu_limit, cpu_limit};
      setrlimit(RLIMIT_CPU, &rl);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int saved = errno;
  close(devnull);
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    close(po[0]);
    close(pe[0]);
    return image_io_error(e, saved, "fork for", argv[0]);
  }
  c->pid = pid;
  c->out = po[0];
  c->errfd = pe[0];
  return 0;
}

/* Wait for the child; its exit status (>= 0), or -(signal) if killed. */
static int child_wait(struct child *c) {
  int st = 0;
  if (c->out >= 0) close(c->out);
  if (c->errfd >= 0) close(c->errfd);
  c->out = c->errfd = -1;
  while (waitpid(c->pid, &st, 0) < 0) {
    if (errno != EINTR) return -SIGKILL;
  }
  if (WIFSIGNALED(st)) return -WTERMSIG(st);
  return WEXITSTATUS(st);
}

/* A growing buffer capped at max bytes (the rest is read and dropped). */
struct outbuf {
  char *p;
  size_t len, cap, max;
  int overflow;
};

static int outbuf_read(struct outbuf *b, int fd) {
  char tmp[4096];
  ssize_t r = read(fd, tmp, sizeof tmp);
  if (r <= 0) return r < 0 && errno == EINTR ? 1 : (int)r;
  size_t n = (size_t)r;
  if (b->len + n > b->max) {
    b->overflow = 1;
    n = b->max - b->len;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, tmp, n);
  b->len += n;
  b->p[b->len] = 0;
  return 1;
}

/* qemu-img's stderr as one line for a message. */
static const char *stderr_text(struct outbuf *b) {
  if (!b->p || !b->len) return "(no message)";
  for (char *c = b->p; *c; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
  while (b->len && b->p[b->len - 1] == ' ')
    b->p[--b->len] = 0;
  return b->p;
}

/* Called with each new progress percentage qemu-img convert prints; nonzero stops it. */
typedef int (*child_tick_fn)(void *arg, double percent);

/* Read the child's stdout and stderr to the end, then reap it. tick (may be
 * NULL) sees the "(12.34/100%)" progress lines; when it returns nonzero the
 * child is killed (SIGKILL: the temp file it writes is ours to delete). */
static int child_collect(struct child *c, struct outbuf *out, struct outbuf *errb,
                         child_tick_fn tick, void *tick_arg, int *stopped) {
  int open_out = 1, open_err = 1;
  *stopped = 0;
  size_t scanned = 0;
  while (open_out || open_err) {
    struct pollfd pf[2] = {{c->out, POLLIN, 0}, {c->errfd, POLLIN, 0}};
    if (!open_out) pf[0].fd = -1;
    if (!open_err) pf[1].fd = -1;
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (open_out && pf[0].revents) {
      int r = outbuf_read(out, c->out);
      if (r <= 0) open_out = 0;
    }
    if (open_err && pf[1].revents) {
      int r = outbuf_read(errb, c->errfd);
      if (r <= 0) open_err = 0;
    }
    if (tick && out->len > scanned && !*stopped) {
      /* The last complete "(NN.NN/100%)" seen so far. */
      double pct = -1;
      for (char *p = out->p + scanned; (p = strchr(p, '(')) != NULL; p++) {
        double v;
        if (sscanf(p, "(%lf/100%%)", &v) == 1) pct = v;
      }
      scanned = out->len;
      if (out->len > 4096) { /* keep the buffer small */
        out->len = 0;
        out->p[0] = 0;
        scanned = 0;
      }
      if (pct >= 0 && tick(tick_arg, pct)) {
        kill(c->pid, SIGKILL);
        *stopped = 1;
      }
    }
  }
  return child_wait(c);
}

/* Vet an image with `qemu-img info` (format forced, resource-limited): its
 * virtual size, and no file but itself that qemu would open. */
int qemu_info(const char *qemu, const char *fmt, const char *src_arg, const char *what,
              uint64_t *vsize, struct err *e) {
  char *argv[] = {(char *)qemu, "info", "--output=json", "-f", (char *)fmt, (char *)src_arg, NULL};
  struct child c = {.pid = -1, .out = -1, .errfd = -1};
  if (child_start(argv, QEMU_INFO_AS_LIMIT, QEMU_INFO_CPU_LIMIT, &c, e) < 0) return -1;
  struct outbuf out = {.max = QEMU_INFO_MAX_OUTPUT}, errb = {.max = 2048};
  int stopped;
  int st = child_collect(&c, &out, &errb, NULL, NULL, &stopped);
  int rc = -1;
  json_t *j = NULL;
  if (st < 0) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: qemu-img info was killed by signal %d (it exceeded %llu MiB of memory or %u s of "
            "CPU): the %s image is damaged or hostile",
            what, -st, QEMU_INFO_AS_LIMIT >> 20, QEMU_INFO_CPU_LIMIT, fmt);
    goto out;
  }
  if (st == 127 && !out.len) {
    err_set(e, 501, "QEMU_IMG_MISSING", "%s: %s could not be run: %s", what, qemu,
            stderr_text(&errb));
    goto out;
  }
  if (st != 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info refuses it as %s: %s", what, fmt,
            stderr_text(&errb));
    goto out;
  }
  if (out.overflow || !out.p) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info printed no usable description", what);
    goto out;
  }
  j = json_loads(out.p, 0, NULL);
  json_t *jfmt = json_object_get(j, "format");
  json_t *jsize = json_object_get(j, "virtual-size");
  if (!json_is_object(j) || !json_is_string(jfmt) || !json_is_integer(jsize) ||
      json_integer_value(jsize) < 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info printed no usable description", what);
    goto out;
  }
  if (strcmp(json_string_value(jfmt), fmt)) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img sees a %s image, not %s", what,
            json_string_value(jfmt), fmt);
    goto out;
  }
  json_t *b = json_object_get(j, "backing-filename");
  if (!b) b = json_object_get(j, "full-backing-filename");
  if (b) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the %s image has a backing file (\"%.200s\"); it would read another file of the "
            "server. Flatten it first (qemu-img convert -O %s without -B)",
            what, fmt, json_is_string(b) ? json_string_value(b) : "?", fmt);
    goto out;
  }
  if (json_is_true(json_object_get(j, "encrypted"))) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: the %s image is encrypted", what, fmt);
    goto out;
  }
  json_t *data = json_object_get(json_object_get(j, "format-specific"), "data");
  json_t *df = json_object_get(data, "data-file");
  if (df) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the %s image keeps its data in another file (\"%.200s\"); it would read "
            "another file of the server",
            what, fmt, json_is_string(df) ? json_string_value(df) : "?");
    goto out;
  }
  if (json_object_get(data, "encrypt")) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: the %s image is encrypted", what, fmt);
    goto out;
  }
  json_t *extents = json_object_get(data, "extents");
  if (extents) {
    size_t k;
    json_t *x;
    json_array_foreach(extents, k, x) {
      const char *fn = json_string_value(json_object_get(x, "filename"));
      if (!fn || strcmp(fn, src_arg)) {
        err_set(e, 400, "IMAGE_UNSUPPORTED",
                "%s: the %s image has an extent in another file (\"%.200s\"); upload a "
                "single-file (monolithic) image",
                what, fmt, fn ? fn : "?");
        goto out;
      }
    }
  }
  *vsize = (uint64_t)json_integer_value(jsize);
  rc = 0;
out:
  json_decref(j);
  free(out.p);
  free(errb.p);
  return rc;
}

struct convert_tick {
  struct progress *prog;
  uint64_t size;
  int fd;
  int out_of_space;
};

static int convert_tick(void *arg, double pct) {
  struct convert_tick *t = arg;
  if (pct > 100) pct = 100;
  if (t->prog) progress_at(t->prog, (uint64_t)((double)t->size * pct / 100.0));
  if (!image_free_space_ok(t->fd)) {
    t->out_of_space = 1;
    return 1;
  }
  return 0;
}

int qemu_convert(const char *qemu, const char *fmt, const char *src_arg, const char *dst_arg,
                 int dst_fd, uint64_t vsize, const char *what, struct progress *prog,
                 struct err *e) {
  char *argv[] = {(char *)qemu,       "convert", "-p",  "-f",
                  (char *)fmt,        "-O",      "raw", "-n",
                  "--target-is-zero", "-S",      "4k",  (char *)src_arg,
                  (char *)dst_arg,    NULL};
  struct child c = {.pid = -1, .out = -1, .errfd = -1};
  if (child_start(argv, 0, 0, &c, e) < 0) return -1;
  struct outbuf out = {.max = 8192}, errb = {.max = 2048};
  struct convert_tick t = {prog, vsize, dst_fd, 0};
  int stopped;
  int st = child_collect(&c, &out, &errb, convert_tick, &t, &stopped);
  int rc = 0;
  if (t.out_of_space || (st != 0 && errb.p && strstr(errb.p, "No space left"))) {
    err_set(e, 507, "INSUFFICIENT_STORAGE",
            "%s: the volume store ran out of space while qemu-img converted the %s image "
            "(it keeps %llu MiB free)",
            what, fmt, (unsigned long long)(image_space_reserve() >> 20));
    err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                  "and import the image again.");
    rc = -1;
  } else if (st != 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img convert failed on the %s image: %s", what, fmt,
            st < 0 ? "killed" : stderr_text(&errb));
    rc = -1;
  }
  free(out.p);
  free(errb.p);
  return rc;
}
