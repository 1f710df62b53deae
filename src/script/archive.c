/* archive.c — the commands that move trees and archives between the guest
 * and the work directory: copy-in, copy-out, compress-out, tar-in, tar-out.
 *
 * gzip is done in-process with zlib (the only compression the corpus uses:
 * ESXi's `compress-out gzip`); bzip2, xz, lzop and compress run the Debian
 * tool in the sandbox on a temporary file of the work directory. Tar
 * archives are read and written here (ustar, with pax records for long
 * names and big sizes; GNU long names are read too). Local trees are walked
 * with directory descriptors beneath the work directory, never following a
 * symlink out of it. */
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "fs/fs.h"
#include "script/script_int.h"

#define CHUNK (1024 * 1024)
#define MAX_DEPTH 256

/* from cmds_file.c */
int gstat(struct gpath *g, struct fs_stat *st, int follow, struct err *fe);
char *path_join(const char *dir, const char *name);
char *path_base(const char *p);
int gwrite_all(struct gpath *g, const char *cmd, const void *data, size_t len, int flags,
               uint32_t mode, struct err *e);
int gread_each(struct gpath *g, const char *cmd, int (*sink)(void *, const char *, size_t),
               void *arg, struct err *e);

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int write_full(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* single-quote for the host shell */
static char *shell_quote(const char *s) {
  struct sbuf b = {0};
  if (sbuf_addc(&b, '\'')) return NULL;
  for (; *s; s++)
    if (*s == '\'' ? sbuf_adds(&b, "'\\''") : sbuf_addc(&b, *s)) {
      sbuf_free(&b);
      return NULL;
    }
  if (sbuf_addc(&b, '\'')) {
    sbuf_free(&b);
    return NULL;
  }
  return b.p;
}

/* A temporary name in the work directory (for host tools). */
static char *tmp_name(const char *what) {
  unsigned char r[6];
  if (util_random(r, sizeof r)) memset(r, 0, sizeof r);
  return util_strdup_printf(".streamer-%s-%02x%02x%02x%02x%02x%02x", what, r[0], r[1], r[2], r[3],
                            r[4], r[5]);
}

static void unlink_local(struct script_session *s, const char *rel) {
  (void)unlinkat(s->wfd, rel, 0);
}

/* Run `tool` (e.g. "bzip2 -c") in the sandbox reading `in` and writing
 * `out` (both local, relative). */
static int host_filter(struct script_session *s, const char *cmd, const char *tool, const char *in,
                       const char *out, struct err *e) {
  CLEANUP_FREE char *qi = shell_quote(in), *qo = shell_quote(out);
  if (!qi || !qo) return oom(e);
  CLEANUP_FREE char *script = util_strdup_printf("%s < %s > %s", tool, qi, qo);
  CLEANUP_FREE char *o = NULL, *er = NULL;
  size_t ol = 0, el = 0;
  int status = 0;
  if (!script) return oom(e);
  if (host_run(s, script, NULL, 0, &o, &ol, &er, &el, &status, e)) return -1;
  if (status != 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s exited with status %d: %.*s", cmd, tool, status,
            (int)(el > 300 ? 300 : el), er ? er : "");
    return -1;
  }
  return 0;
}

/* ======================================================================= */
/* copy-in                                                                  */
/* ======================================================================= */

static int copy_in_entry(struct script_session *s, int dfd, const char *name, const char *dest,
                         int depth, struct err *e);

static int copy_in_dir(struct script_session *s, int fd, const struct stat *st, const char *dest,
                       int depth, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "copy-in", dest, &g, e)) return -1;
  struct err fe;
  err_init(&fe);
  struct fs_stat gst;
  int r = 0;
  if (gstat(&g, &gst, 1, &fe)) {
    err_clear(&fe);
    if (g.fs->ops->mkdir(g.fs, g.inner, st->st_mode & 07777, &fe)) {
      gpath_error(e, "copy-in", g.full, &fe);
      r = -1;
    }
  } else if (!S_ISDIR(gst.mode)) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: Not a directory", g.full);
    r = -1;
  }
  gpath_free(&g);
  if (r) return -1;
  int dupfd = dup(fd);
  DIR *d = dupfd >= 0 ? fdopendir(dupfd) : NULL;
  if (!d) {
    if (dupfd >= 0) close(dupfd);
    err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", dest, strerror(errno));
    return -1;
  }
  struct dirent *de;
  while (r == 0 && (de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    CLEANUP_FREE char *child = path_join(dest, de->d_name);
    r = child ? copy_in_entry(s, fd, de->d_name, child, depth + 1, e) : oom(e);
  }
  closedir(d);
  if (r == 0 && gpath_resolve(s, "copy-in", dest, &g, e) == 0) { /* the directory's own mode */
    if (g.fs->ops->chmod(g.fs, g.inner, st->st_mode & 07777, &fe) &&
        strcmp(fe.code, FS_ENOTSUP) != 0) {
      gpath_error(e, "copy-in", g.full, &fe);
      r = -1;
    }
    err_clear(&fe);
    gpath_free(&g);
  }
  return r;
}

/* Copy the entry `name` of local directory dfd to guest path dest. */
static int copy_in_entry(struct script_session *s, int dfd, const char *name, const char *dest,
                         int depth, struct err *e) {
  if (depth > MAX_DEPTH) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: directories nested too deeply", dest);
    return -1;
  }
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", name, strerror(errno));
    return -1;
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", name, strerror(errno));
      return -1;
    }
    int r = copy_in_dir(s, fd, &st, dest, depth, e);
    close(fd);
    return r;
  }
  struct gpath g;
  if (gpath_resolve(s, "copy-in", dest, &g, e)) return -1;
  struct err fe;
  err_init(&fe);
  int r = -1;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = readlinkat(dfd, name, target, sizeof target - 1);
    if (n < 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", name, strerror(errno));
    } else {
      target[n] = 0;
      (void)g.fs->ops->unlink(g.fs, g.inner, &fe);
      err_clear(&fe);
      if (g.fs->ops->symlink(g.fs, target, g.inner, &fe))
        gpath_error(e, "copy-in", g.full, &fe);
      else
        r = 0;
    }
  } else if (S_ISREG(st.st_mode)) {
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", name, strerror(errno));
    } else {
      char *buf = malloc(CHUNK);
      uint64_t off = 0;
      r = buf ? 0 : oom(e);
      while (r == 0) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0) {
          if (errno == EINTR) continue;
          err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: %s", name, strerror(errno));
          r = -1;
          break;
        }
        int fl = off == 0 ? FS_O_CREAT | FS_O_TRUNC : 0;
        if ((n || off == 0) &&
            g.fs->ops->write(g.fs, g.inner, buf, (size_t)n, off, fl, st.st_mode & 07777, &fe)) {
          gpath_error(e, "copy-in", g.full, &fe);
          r = -1;
        }
        if (n == 0) break;
        off += (uint64_t)n;
      }
      free(buf);
      close(fd);
      if (r == 0 && g.fs->ops->chmod(g.fs, g.inner, st.st_mode & 07777, &fe) &&
          strcmp(fe.code, FS_ENOTSUP) != 0) {
        gpath_error(e, "copy-in", g.full, &fe);
        r = -1;
      }
      err_clear(&fe);
    }
  } else {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: cannot copy a special file", name);
  }
  if (r == 0 && !S_ISLNK(st.st_mode) &&
      g.fs->ops->utimens(g.fs, g.inner, st.st_atim.tv_sec, st.st_atim.tv_nsec, st.st_mtim.tv_sec,
                         st.st_mtim.tv_nsec, &fe))
    err_clear(&fe); /* times are best effort */
  gpath_free(&g);
  return r;
}

static int copy_in_all(struct script_session *s, const char *rfull, int argc, char **argv,
                       struct err *e);

int cmd_copy_in(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                struct sbuf *out, struct err *e) {
  const char *remote = argv[argc - 1];
  struct gpath g;
  if (gpath_resolve(s, "copy-in", remote, &g, e)) return -1;
  struct fs_stat gst;
  struct err fe;
  err_init(&fe);
  int isdir = gstat(&g, &gst, 1, &fe) == 0 && S_ISDIR(gst.mode);
  err_clear(&fe);
  if (!isdir || g.ro) {
    if (!isdir)
      err_set(e, 400, SCRIPT_E_FAILED, "copy-in: target '%s' is not a directory", remote);
    else
      err_set(e, 400, SCRIPT_E_FAILED, "copy-in: %s: Read-only file system", g.full);
    gpath_free(&g);
    return -1;
  }
  int r = copy_in_all(s, g.full, argc, argv, e);
  gpath_free(&g);
  return r;
}

/* copy-in's locals into the guest directory rfull */
static int copy_in_all(struct script_session *s, const char *rfull, int argc, char **argv,
                       struct err *e) {
  for (int i = 0; i < argc - 1; i++) {
    CLEANUP_FREE char *base = path_base(argv[i]);
    if (!base) return oom(e);
    int r;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0) {
      /* tar -C dir -cf - . : the directory's contents */
      int dfd = local_open(s, "copy-in", argv[i], O_RDONLY | O_DIRECTORY, 0, e);
      if (dfd < 0) return -1;
      struct stat dst;
      r = fstat(dfd, &dst) ? -1 : copy_in_dir(s, dfd, &dst, rfull, 0, e);
      close(dfd);
    } else {
      CLEANUP_FREE char *name = NULL;
      int dfd = local_parent(s, "copy-in", argv[i], &name, e);
      if (dfd < 0) return -1;
      CLEANUP_FREE char *dest = path_join(rfull, name);
      r = dest ? copy_in_entry(s, dfd, name, dest, 0, e) : oom(e);
      close(dfd);
    }
    if (r) return -1;
  }
  return 0;
}

/* ======================================================================= */
/* copy-out                                                                 */
/* ======================================================================= */

static int sink_fd(void *arg, const char *p, size_t n) { return write_full(*(int *)arg, p, n); }

/* Copy guest path src (lstat'ed as gst) into local directory dfd as name. */
static int copy_out_entry(struct script_session *s, struct gpath *src, const struct fs_stat *gst,
                          int dfd, const char *name, int depth, struct err *e) {
  struct err fe;
  err_init(&fe);
  if (depth > MAX_DEPTH) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: directories nested too deeply", src->full);
    return -1;
  }
  if (S_ISLNK(gst->mode)) {
    char *target = NULL;
    if (src->fs->ops->readlink(src->fs, src->inner, &target, &fe)) {
      gpath_error(e, "copy-out", src->full, &fe);
      return -1;
    }
    (void)unlinkat(dfd, name, 0);
    int r = symlinkat(target, dfd, name);
    free(target);
    if (r) err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: %s", name, strerror(errno));
    return r ? -1 : 0;
  }
  if (S_ISREG(gst->mode)) {
    int fd =
        openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, gst->mode & 0777);
    if (fd < 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: %s", name, strerror(errno));
      return -1;
    }
    int r = gread_each(src, "copy-out", sink_fd, &fd, e);
    if (r == -2) err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: %s", name, strerror(errno));
    (void)fchmod(fd, gst->mode & 0777);
    struct timespec ts[2] = {{gst->atime, gst->atime_ns}, {gst->mtime, gst->mtime_ns}};
    (void)futimens(fd, ts);
    close(fd);
    return r ? -1 : 0;
  }
  if (!S_ISDIR(gst->mode)) return 0; /* devices, fifos: tar as non-root skips them too */
  if (mkdirat(dfd, name, 0700) && errno != EEXIST) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: %s", name, strerror(errno));
    return -1;
  }
  int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub < 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s: %s", name, strerror(errno));
    return -1;
  }
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  int r = 0;
  if (src->fs->ops->readdir(src->fs, src->inner, &ents, &n, &fe)) {
    gpath_error(e, "copy-out", src->full, &fe);
    r = -1;
  }
  for (size_t i = 0; i < n && r == 0; i++) {
    CLEANUP_FREE char *child = path_join(src->full, ents[i].name);
    struct gpath c;
    if (!child) {
      r = oom(e);
      break;
    }
    if (gpath_resolve(s, "copy-out", child, &c, e)) {
      r = -1;
      break;
    }
    struct fs_stat cst;
    if (gstat(&c, &cst, 0, &fe)) {
      gpath_error(e, "copy-out", c.full, &fe);
      r = -1;
    } else {
      r = copy_out_entry(s, &c, &cst, sub, ents[i].name, depth + 1, e);
    }
    gpath_free(&c);
  }
  fs_dirents_free(ents, n);
  (void)fchmod(sub, gst->mode & 0777);
  close(sub);
  return r;
}

int cmd_copy_out(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                 struct sbuf *out, struct err *e) {
  const char *local = argv[argc - 1];
  int dfd = local_open(s, "copy-out", local, O_RDONLY | O_DIRECTORY, 0, e);
  if (dfd < 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "copy-out: target '%s' is not a directory", local);
    return -1;
  }
  int r = 0;
  for (int i = 0; i < argc - 1 && r == 0; i++) {
    struct gpath g;
    if (gpath_resolve(s, "copy-out", argv[i], &g, e)) {
      r = -1;
      break;
    }
    struct fs_stat gst;
    struct err fe;
    err_init(&fe);
    CLEANUP_FREE char *name = path_base(g.full);
    if (!name) {
      r = oom(e);
    } else if (gstat(&g, &gst, 0, &fe)) {
      gpath_error(e, "copy-out", g.full, &fe);
      r = -1;
    } else if (!S_ISREG(gst.mode) && !S_ISDIR(gst.mode)) {
      err_set(e, 400, SCRIPT_E_FAILED, "copy-out: '%s' is not a file or directory", argv[i]);
      r = -1;
    } else {
      r = copy_out_entry(s, &g, &gst, dfd, strcmp(name, "/") ? name : ".", 0, e);
    }
    gpath_free(&g);
  }
  close(dfd);
  return r;
}

/* ======================================================================= */
/* gzip (zlib) and the host compressors                                     */
/* ======================================================================= */

struct gz {
  z_stream z;
  int fd;
  int err;
  unsigned char buf[65536];
};

static int gz_push(struct gz *g, const void *p, size_t n, int flush) {
  g->z.next_in = (unsigned char *)p;
  g->z.avail_in = (uInt)n;
  do {
    g->z.next_out = g->buf;
    g->z.avail_out = sizeof g->buf;
    int r = deflate(&g->z, flush);
    if (r == Z_STREAM_ERROR) return -1;
    if (write_full(g->fd, g->buf, sizeof g->buf - g->z.avail_out)) return -1;
  } while (g->z.avail_out == 0 || (flush == Z_FINISH && g->z.avail_in));
  return 0;
}

static int sink_gz(void *arg, const char *p, size_t n) {
  struct gz *g = arg;
  while (n) { /* avail_in is 32 bits */
    size_t k = n > (1u << 30) ? (1u << 30) : n;
    if (gz_push(g, p, k, Z_NO_FLUSH)) return -1;
    p += k;
    n -= k;
  }
  return 0;
}

static const struct {
  const char *type, *tool;
} COMPRESSORS[] = {
    {"gzip", "gzip -c"},    {"bzip2", "bzip2 -c"},       {"xz", "xz -c"},
    {"lzop", "lzop -c"},    {"compress", "compress -c"}, {"lzma", "xz --format=lzma -c"},
    {"zstd", "zstd -q -c"},
};

static const char *compressor(const char *type) {
  for (size_t i = 0; i < sizeof COMPRESSORS / sizeof COMPRESSORS[0]; i++)
    if (strcmp(COMPRESSORS[i].type, type) == 0) return COMPRESSORS[i].tool;
  return NULL;
}

/* Compress the guest file g into the local file zfile. */
static int compress_guest(struct script_session *s, const char *cmd, const char *type, int level,
                          struct gpath *g, const char *zfile, struct err *e) {
  const char *tool = compressor(type);
  if (!tool || strcmp(type, "lzma") == 0 || strcmp(type, "zstd") == 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: unknown compression type \"%s\"", cmd, type);
    return -1;
  }
  if (strcmp(type, "gzip") == 0) {
    int fd = local_open(s, cmd, zfile, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY, 0644, e);
    if (fd < 0) return -1;
    struct gz *gz = calloc(1, sizeof *gz);
    if (!gz) {
      close(fd);
      return oom(e);
    }
    gz->fd = fd;
    int r = -1;
    if (deflateInit2(&gz->z, level < 0 ? 6 : level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
      oom(e);
    } else {
      int rr = gread_each(g, cmd, sink_gz, gz, e);
      if (rr == 0 && gz_push(gz, "", 0, Z_FINISH) == 0)
        r = 0;
      else if (rr != -1)
        err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, zfile, strerror(errno));
      deflateEnd(&gz->z);
    }
    if (close(fd) && r == 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, zfile, strerror(errno));
      r = -1;
    }
    free(gz);
    return r;
  }
  /* the others: a plain copy in the work directory, then the tool in the sandbox */
  char *tmp = tmp_name("plain");
  if (!tmp) return oom(e);
  int fd = local_open(s, cmd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600, e);
  if (fd < 0) {
    free(tmp);
    return -1;
  }
  int r = gread_each(g, cmd, sink_fd, &fd, e) ? -1 : 0;
  close(fd);
  char *t = level >= 1 && level <= 9 ? util_strdup_printf("%s -%d", tool, level) : strdup(tool);
  if (r == 0) r = t ? host_filter(s, cmd, t, tmp, zfile, e) : oom(e);
  unlink_local(s, tmp);
  free(t);
  free(tmp);
  return r;
}

static int parse_level(const char *cmd, const char *arg, int *level, struct err *e) {
  if (strncmp(arg, "level:", 6) != 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: unknown optional argument \"%s\"", cmd, arg);
    return -1;
  }
  int64_t v;
  char why[200];
  if (script_parse_int(arg + 6, &v, why, sizeof why) || v < 0 || v > 9) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: level: must be 0 to 9", cmd);
    return -1;
  }
  *level = (int)v;
  return 0;
}

int cmd_compress_out(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                     struct sbuf *out, struct err *e) {
  int level = -1;
  if (argc > 3 && parse_level("compress-out", argv[3], &level, e)) return -1;
  struct gpath g;
  if (gpath_resolve(s, "compress-out", argv[1], &g, e)) return -1;
  struct fs_stat gst;
  struct err fe;
  err_init(&fe);
  int r = -1;
  if (gstat(&g, &gst, 1, &fe))
    gpath_error(e, "compress-out", g.full, &fe);
  else if (S_ISDIR(gst.mode))
    err_set(e, 400, SCRIPT_E_FAILED, "compress-out: %s: Is a directory", g.full);
  else
    r = compress_guest(s, "compress-out", argv[0], level, &g, argv[2], e);
  gpath_free(&g);
  return r;
}

/* ======================================================================= */
/* tar                                                                      */
/* ======================================================================= */

/* len-1 octal digits and a NUL (the caller keeps v within them) */
static void octal(char *field, size_t len, uint64_t v) {
  field[len - 1] = 0;
  for (size_t i = len - 1; i-- > 0; v >>= 3)
    field[i] = (char)('0' + (v & 7));
}

static int tar_pax_record(struct sbuf *b, const char *key, const char *val) {
  size_t body = strlen(key) + strlen(val) + 3; /* ' ' '=' '\n' */
  size_t total = body + 1;
  while (1) { /* the length counts its own digits */
    char d[32];
    size_t dl = (size_t)snprintf(d, sizeof d, "%zu", total);
    if (body + dl == total) break;
    total = body + dl;
  }
  return sbuf_printf(b, "%zu %s=%s\n", total, key, val);
}

struct tar_writer {
  int fd; /* plain tar goes here, or through gz */
  struct gz *gz;
  int err;
};

static int tw_write(struct tar_writer *w, const void *p, size_t n) {
  if (w->err) return -1;
  if (w->gz ? sink_gz(w->gz, p, n) : write_full(w->fd, p, n)) w->err = 1;
  return w->err ? -1 : 0;
}

static int tw_pad(struct tar_writer *w, uint64_t size) {
  static const char zero[512];
  size_t pad = (size_t)((512 - size % 512) % 512);
  return pad ? tw_write(w, zero, pad) : 0;
}

static int tw_header(struct tar_writer *w, const char *name, const struct fs_stat *st, char type,
                     const char *link, uint64_t size, int numeric) {
  char h[512];
  struct sbuf pax = {0};
  memset(h, 0, sizeof h);
  if (strlen(name) > 100 && tar_pax_record(&pax, "path", name)) return -1;
  if (link && strlen(link) > 100 && tar_pax_record(&pax, "linkpath", link)) return -1;
  char sz[32];
  snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
  if (size > 077777777777ULL && tar_pax_record(&pax, "size", sz)) return -1;
  if (pax.len) {
    char ph[512];
    memset(ph, 0, sizeof ph);
    snprintf(ph, 100, "./PaxHeaders/%.80s", name);
    octal(ph + 100, 8, 0644);
    octal(ph + 108, 8, 0);
    octal(ph + 116, 8, 0);
    octal(ph + 124, 12, pax.len);
    octal(ph + 136, 12, (uint64_t)st->mtime);
    ph[156] = 'x';
    memcpy(ph + 257, "ustar", 6);
    memcpy(ph + 263, "00", 2);
    memset(ph + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
      sum += (unsigned char)ph[i];
    snprintf(ph + 148, 8, "%06o", sum);
    if (tw_write(w, ph, 512) || tw_write(w, pax.p, pax.len) || tw_pad(w, pax.len)) {
      sbuf_free(&pax);
      return -1;
    }
  }
  sbuf_free(&pax);
  memcpy(h, name, strlen(name) > 100 ? 100 : strlen(name));
  octal(h + 100, 8, st->mode & 07777);
  octal(h + 108, 8, st->uid & 07777777);
  octal(h + 116, 8, st->gid & 07777777);
  octal(h + 124, 12, size > 077777777777ULL ? 0 : size);
  octal(h + 136, 12, (uint64_t)(st->mtime < 0 ? 0 : st->mtime));
  h[156] = type;
  if (link) memcpy(h + 157, link, strlen(link) > 100 ? 100 : strlen(link));
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  if (!numeric) {
    if (st->uid == 0) memcpy(h + 265, "root", 4);
    if (st->gid == 0) memcpy(h + 297, "root", 4);
  }
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  return tw_write(w, h, 512);
}

struct tar_out_ctx {
  struct script_session *s;
  struct tar_writer *w;
  char **excludes;
  int numeric;
};

static int tw_sink(void *arg, const char *p, size_t n) { return tw_write(arg, p, n); }

static int excluded(struct tar_out_ctx *c, const char *rel) {
  for (size_t i = 0; c->excludes && c->excludes[i]; i++) {
    const char *r2 = strncmp(rel, "./", 2) == 0 ? rel + 2 : rel;
    if (fnmatch(c->excludes[i], rel, 0) == 0 || fnmatch(c->excludes[i], r2, 0) == 0) return 1;
  }
  return 0;
}

static int tar_out_tree(struct tar_out_ctx *c, const char *full, const char *rel, int depth,
                        struct err *e) {
  if (depth > MAX_DEPTH) {
    err_set(e, 400, SCRIPT_E_FAILED, "tar-out: %s: directories nested too deeply", full);
    return -1;
  }
  if (depth && excluded(c, rel)) return 0;
  struct gpath g;
  if (gpath_resolve(c->s, "tar-out", full, &g, e)) return -1;
  struct err fe;
  err_init(&fe);
  struct fs_stat st;
  int r = -1;
  if (gstat(&g, &st, 0, &fe)) {
    gpath_error(e, "tar-out", g.full, &fe);
    goto done;
  }
  if (S_ISLNK(st.mode)) {
    char *target = NULL;
    if (g.fs->ops->readlink(g.fs, g.inner, &target, &fe)) {
      gpath_error(e, "tar-out", g.full, &fe);
      goto done;
    }
    r = tw_header(c->w, rel, &st, '2', target, 0, c->numeric);
    free(target);
  } else if (S_ISREG(st.mode)) {
    r = tw_header(c->w, rel, &st, '0', NULL, st.size, c->numeric);
    uint64_t before = 0;
    if (r == 0) {
      struct tar_writer *w = c->w;
      int rr = gread_each(&g, "tar-out", tw_sink, w, e);
      if (rr == -1) goto done;
      before = st.size;
      r = rr || w->err ? -1 : tw_pad(w, before);
    }
  } else if (S_ISDIR(st.mode)) {
    CLEANUP_FREE char *dname = util_strdup_printf("%s/", rel);
    r = dname ? tw_header(c->w, dname, &st, '5', NULL, 0, c->numeric) : oom(e);
    struct fs_dirent *ents = NULL;
    size_t n = 0;
    if (r == 0 && g.fs->ops->readdir(g.fs, g.inner, &ents, &n, &fe)) {
      gpath_error(e, "tar-out", g.full, &fe);
      goto done;
    }
    for (size_t i = 0; i < n && r == 0; i++) {
      CLEANUP_FREE char *cf = path_join(g.full, ents[i].name);
      CLEANUP_FREE char *cr = path_join(rel, ents[i].name);
      r = cf && cr ? tar_out_tree(c, cf, cr, depth + 1, e) : oom(e);
    }
    fs_dirents_free(ents, n);
  } else {
    r = 0; /* special files: not archived */
  }
  if (r && !e->message[0]) err_set(e, 400, SCRIPT_E_FAILED, "tar-out: write error");
done:
  gpath_free(&g);
  return r;
}

/* "compress:gzip" etc. of tar-in / tar-out; NULL type = none */
static int tar_opts(const char *cmd, int argc, char **argv, int first, const char **compress,
                    int *numeric, char ***excludes, struct err *e) {
  *compress = NULL;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "compress:", 9) == 0) {
      *compress = a + 9;
      if (!compressor(*compress) || strcmp(*compress, "zstd") == 0) {
        err_set(e, 400, SCRIPT_E_FAILED, "%s: unknown compression type \"%s\"", cmd, *compress);
        return -1;
      }
    } else if (numeric && strncmp(a, "numericowner:", 13) == 0) {
      *numeric = strcasecmp(a + 13, "true") == 0 || strcmp(a + 13, "1") == 0;
    } else if (excludes && strncmp(a, "excludes:", 9) == 0) {
      /* a space-separated list (guestfish's string list, without quotes) */
      CLEANUP_FREE char *copy = strdup(a + 9);
      if (!copy) return oom(e);
      size_t n = 0;
      for (char *t = strtok(copy, " \t"); t; t = strtok(NULL, " \t"))
        n++;
      char **v = calloc(n + 1, sizeof *v);
      if (!v) return oom(e);
      strcpy(copy, a + 9);
      n = 0;
      for (char *t = strtok(copy, " \t"); t; t = strtok(NULL, " \t"))
        v[n++] = strdup(t);
      *excludes = v;
    } else if (strncmp(a, "xattrs:", 7) == 0 || strncmp(a, "selinux:", 8) == 0 ||
               strncmp(a, "acls:", 5) == 0) {
      /* accepted; Streamer's filesystems keep no xattrs, SELinux labels or ACLs */
    } else {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: unknown optional argument \"%s\"", cmd, a);
      return -1;
    }
  }
  return 0;
}

int cmd_tar_out(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                struct sbuf *out, struct err *e) {
  const char *compress;
  int numeric = 0;
  char **excludes = NULL;
  int r = -1;
  CLEANUP_FREE char *full = NULL, *tmp = NULL;
  if (tar_opts("tar-out", argc, argv, 2, &compress, &numeric, &excludes, e)) goto out0;
  full = gpath_normalize("tar-out", argv[0], e);
  if (!full) goto out0;
  {
    struct gpath g;
    struct fs_stat gst;
    struct err fe;
    err_init(&fe);
    if (gpath_resolve(s, "tar-out", full, &g, e)) goto out0;
    int found = gstat(&g, &gst, 1, &fe) == 0;
    int isdir = found && S_ISDIR(gst.mode);
    if (!found)
      gpath_error(e, "tar-out", g.full, &fe);
    else if (!isdir)
      err_set(e, 400, SCRIPT_E_FAILED, "tar-out: %s: Not a directory", g.full);
    gpath_free(&g);
    if (!isdir) goto out0;
  }
  int use_tool = compress && strcmp(compress, "gzip") != 0;
  tmp = use_tool ? tmp_name("tar") : NULL;
  if (use_tool && !tmp) {
    oom(e);
    goto out0;
  }
  int fd = local_open(s, "tar-out", use_tool ? tmp : argv[1],
                      O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY | (use_tool ? O_EXCL : 0),
                      use_tool ? 0600 : 0644, e);
  if (fd < 0) goto out0;
  struct tar_writer w = {fd, NULL, 0};
  if (compress && !use_tool) {
    if (!(w.gz = calloc(1, sizeof *w.gz)) ||
        deflateInit2(&w.gz->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      free(w.gz);
      close(fd);
      oom(e);
      goto out0;
    }
    w.gz->fd = fd;
  }
  struct tar_out_ctx c = {s, &w, excludes, numeric};
  r = tar_out_tree(&c, full, ".", 0, e);
  static const char zero[1024];
  if (r == 0 && tw_write(&w, zero, sizeof zero)) r = -1;
  if (w.gz) {
    if (r == 0 && gz_push(w.gz, "", 0, Z_FINISH)) r = -1;
    deflateEnd(&w.gz->z);
    free(w.gz);
  }
  if (close(fd) && r == 0) r = -1;
  if (r && !e->message[0])
    err_set(e, 400, SCRIPT_E_FAILED, "tar-out: %s: %s", argv[1], strerror(errno));
  if (r == 0 && use_tool) r = host_filter(s, "tar-out", compressor(compress), tmp, argv[1], e);
  if (use_tool) unlink_local(s, tmp);
out0:
  for (size_t i = 0; excludes && excludes[i]; i++)
    free(excludes[i]);
  free(excludes);
  return r;
}

/* ---- tar-in --------------------------------------------------------------- */

struct tar_reader {
  const unsigned char *p; /* whole archive in memory (plain tar) */
  size_t len, off;
};

static int tar_num(const char *f, size_t len, uint64_t *v) {
  if ((unsigned char)f[0] & 0x80) { /* GNU base-256 */
    uint64_t x = (unsigned char)f[0] & 0x7f;
    for (size_t i = 1; i < len; i++) {
      if (x >> 55) return -1;
      x = (x << 8) | (unsigned char)f[i];
    }
    *v = x;
    return 0;
  }
  uint64_t x = 0;
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == 0))
    i++;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (x >> 60) return -1;
    x = x * 8 + (uint64_t)(f[i] - '0');
  }
  *v = x;
  return 0;
}

/* A member name made safe: no leading '/', no ".." component (GNU tar
 * refuses those), "./" prefixes dropped. NULL if nothing is left. */
static char *safe_member(const char *name, int *bad) {
  *bad = 0;
  while (*name == '/')
    name++;
  struct sbuf b = {0};
  const char *p = name;
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p) break;
    const char *q = strchr(p, '/');
    size_t cl = q ? (size_t)(q - p) : strlen(p);
    if (cl == 2 && p[0] == '.' && p[1] == '.') {
      *bad = 1;
      sbuf_free(&b);
      return NULL;
    }
    if (!(cl == 1 && p[0] == '.') && ((b.len && sbuf_addc(&b, '/')) || sbuf_add(&b, p, cl))) {
      sbuf_free(&b);
      return NULL;
    }
    p += cl;
  }
  return b.p;
}

static void pax_parse(const char *p, size_t n, char **path, char **link, uint64_t *size,
                      int *has_size) {
  size_t i = 0;
  while (i < n) {
    size_t len = 0, j = i;
    while (j < n && p[j] >= '0' && p[j] <= '9')
      len = len * 10 + (size_t)(p[j++] - '0');
    if (j >= n || p[j] != ' ' || len == 0 || i + len > n || len > n) return;
    const char *kv = p + j + 1, *end = p + i + len - 1; /* end at '\n' */
    const char *eq = memchr(kv, '=', (size_t)(end - kv));
    if (eq) {
      size_t kl = (size_t)(eq - kv);
      char **dst = kl == 4 && memcmp(kv, "path", 4) == 0       ? path
                   : kl == 8 && memcmp(kv, "linkpath", 8) == 0 ? link
                                                               : NULL;
      if (dst) {
        free(*dst);
        *dst = strndup(eq + 1, (size_t)(end - eq - 1));
      } else if (kl == 4 && memcmp(kv, "size", 4) == 0) {
        *size = strtoull(eq + 1, NULL, 10);
        *has_size = 1;
      }
    }
    i += len;
  }
}

static int tar_extract(struct script_session *s, const char *dest, struct tar_reader *t,
                       struct err *e) {
  char *long_name = NULL, *long_link = NULL;
  uint64_t pax_size = 0;
  int has_pax_size = 0;
  int r = 0;
  struct err fe;
  err_init(&fe);
  while (r == 0 && t->off + 512 <= t->len) {
    const char *h = (const char *)t->p + t->off;
    int zero = 1;
    for (int i = 0; i < 512 && zero; i++)
      zero = h[i] == 0;
    if (zero) break;
    unsigned sum = 0;
    uint64_t want = 0, size = 0, mode = 0, uid = 0, gid = 0, mtime = 0;
    for (int i = 0; i < 512; i++)
      sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
    if (tar_num(h + 148, 8, &want) || want != sum || tar_num(h + 124, 12, &size) ||
        tar_num(h + 100, 8, &mode) || tar_num(h + 108, 8, &uid) || tar_num(h + 116, 8, &gid) ||
        tar_num(h + 136, 12, &mtime)) {
      err_set(e, 400, SCRIPT_E_FAILED, "tar-in: damaged archive header at offset %zu", t->off);
      r = -1;
      break;
    }
    if (has_pax_size) size = pax_size;
    char type = h[156];
    t->off += 512;
    if (size > t->len - t->off) {
      err_set(e, 400, SCRIPT_E_FAILED, "tar-in: archive truncated");
      r = -1;
      break;
    }
    const char *data = (const char *)t->p + t->off;
    t->off += (size_t)((size + 511) / 512 * 512 > t->len - t->off ? t->len - t->off
                                                                  : (size + 511) / 512 * 512);
    if (type == 'x' || type == 'g') {
      if (type == 'x')
        pax_parse(data, (size_t)size, &long_name, &long_link, &pax_size, &has_pax_size);
      continue;
    }
    if (type == 'L' || type == 'K') {
      char **dst = type == 'L' ? &long_name : &long_link;
      free(*dst);
      *dst = strndup(data, (size_t)size);
      continue;
    }
    char name[257];
    size_t pl = strnlen(h + 345, 155);
    if (pl && memcmp(h + 257, "ustar", 5) == 0)
      snprintf(name, sizeof name, "%.*s/%.*s", (int)pl, h + 345, (int)strnlen(h, 100), h);
    else
      snprintf(name, sizeof name, "%.*s", (int)strnlen(h, 100), h);
    char link[101];
    snprintf(link, sizeof link, "%.*s", (int)strnlen(h + 157, 100), h + 157);
    int bad;
    CLEANUP_FREE char *member = safe_member(long_name ? long_name : name, &bad);
    const char *target = long_link ? long_link : link;
    CLEANUP_FREE char *tcopy = strdup(target);
    free(long_name);
    free(long_link);
    long_name = long_link = NULL;
    has_pax_size = 0;
    if (bad) {
      slog(s, "tar-in: skipping member with '..': %s\n", name);
      continue;
    }
    if (!member) continue; /* "./" itself */
    if (!tcopy) {
      r = oom(e);
      break;
    }
    CLEANUP_FREE char *full = path_join(dest, member);
    struct gpath g;
    if (!full || gpath_resolve(s, "tar-in", full, &g, e)) {
      r = full ? -1 : oom(e);
      break;
    }
    struct fs_stat est;
    if (type == '5') {
      if (gstat(&g, &est, 0, &fe) == 0 && S_ISDIR(est.mode)) {
        err_clear(&fe);
      } else {
        err_clear(&fe);
        if (fs_mkdir_p(g.fs, g.inner, (uint32_t)mode & 07777, &fe)) r = -1;
      }
    } else if (type == '2') {
      (void)g.fs->ops->unlink(g.fs, g.inner, &fe);
      err_clear(&fe);
      if (g.fs->ops->symlink(g.fs, tcopy, g.inner, &fe)) r = -1;
    } else if (type == '1') {
      int b2;
      CLEANUP_FREE char *lm = safe_member(tcopy, &b2);
      CLEANUP_FREE char *lf = lm ? path_join(dest, lm) : NULL;
      struct gpath lg;
      if (!lf || gpath_resolve(s, "tar-in", lf, &lg, e)) {
        gpath_free(&g);
        r = -1;
        break;
      }
      (void)g.fs->ops->unlink(g.fs, g.inner, &fe);
      err_clear(&fe);
      if (lg.fs != g.fs || g.fs->ops->link(g.fs, lg.inner, g.inner, &fe)) r = -1;
      gpath_free(&lg);
    } else if (type == '0' || type == 0 || type == '7') {
      if (gwrite_all(&g, "tar-in", data, (size_t)size, FS_O_CREAT | FS_O_TRUNC,
                     (uint32_t)mode & 07777, e)) {
        gpath_free(&g);
        r = -1;
        break;
      }
    } else {
      gpath_free(&g); /* devices, fifos: skipped */
      continue;
    }
    if (r) {
      if (fe.code[0])
        gpath_error(e, "tar-in", g.full, &fe);
      else if (!e->message[0])
        err_set(e, 400, SCRIPT_E_FAILED, "tar-in: %s: cannot create", g.full);
      gpath_free(&g);
      break;
    }
    if (type != '2' && type != '1') {
      if (g.fs->ops->chmod(g.fs, g.inner, (uint32_t)mode & 07777, &fe)) err_clear(&fe);
      if (g.fs->ops->chown(g.fs, g.inner, (uint32_t)uid, (uint32_t)gid, &fe)) err_clear(&fe);
      if (g.fs->ops->utimens(g.fs, g.inner, (int64_t)mtime, 0, (int64_t)mtime, 0, &fe))
        err_clear(&fe);
    }
    gpath_free(&g);
  }
  free(long_name);
  free(long_link);
  return r;
}

/* Read a whole local file (at most max bytes). */
static int slurp_local(struct script_session *s, const char *cmd, const char *path, size_t max,
                       struct sbuf *b, struct err *e) {
  int fd = local_open(s, cmd, path, O_RDONLY, 0, e);
  if (fd < 0) return -1;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0) err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, path, strerror(errno));
      close(fd);
      return n < 0 ? -1 : 0;
    }
    if (b->len + (size_t)n > max) {
      close(fd);
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: larger than %zu bytes", cmd, path, max);
      return -1;
    }
    if (sbuf_add(b, buf, (size_t)n)) {
      close(fd);
      return oom(e);
    }
  }
}

#define TAR_IN_MAX ((size_t)1 << 31)

int cmd_tar_in(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e) {
  const char *compress;
  if (tar_opts("tar-in", argc, argv, 2, &compress, NULL, NULL, e)) return -1;
  CLEANUP_FREE char *dest = gpath_normalize("tar-in", argv[1], e);
  if (!dest) return -1;
  {
    struct gpath g;
    struct fs_stat gst;
    struct err fe;
    err_init(&fe);
    if (gpath_resolve(s, "tar-in", dest, &g, e)) return -1;
    int ok = gstat(&g, &gst, 1, &fe) == 0 && S_ISDIR(gst.mode);
    int ro = g.ro;
    gpath_free(&g);
    if (!ok) {
      err_set(e, 400, SCRIPT_E_FAILED, "tar-in: %s: Not a directory", dest);
      return -1;
    }
    if (ro) {
      err_set(e, 400, SCRIPT_E_FAILED, "tar-in: %s: Read-only file system", dest);
      return -1;
    }
  }
  struct sbuf raw = {0}, plain = {0};
  int r = -1;
  if (st->heredoc_arg == 0 && st->heredoc) {
    if (sbuf_add(&raw, st->heredoc, st->heredoc_len)) goto oom;
  } else if (strcmp(argv[0], "-") == 0) {
    err_set(e, 400, SCRIPT_E_FAILED,
            "tar-in: a file argument \"-\" (the script's own input) is not supported");
    goto out;
  } else if (compress && strcmp(compress, "gzip") != 0) {
    /* decompress with the host tool into a temporary plain tar */
    CLEANUP_FREE char *tmp = tmp_name("tar");
    CLEANUP_FREE char *tool = tmp ? util_strdup_printf("%s -d", compressor(compress)) : NULL;
    if (!tool) goto oom;
    if (host_filter(s, "tar-in", tool, argv[0], tmp, e) == 0)
      r = slurp_local(s, "tar-in", tmp, TAR_IN_MAX, &raw, e);
    unlink_local(s, tmp);
    if (r) goto out;
    r = -1;
    compress = NULL;
  } else if (slurp_local(s, "tar-in", argv[0], TAR_IN_MAX, &raw, e)) {
    goto out;
  }
  struct sbuf *tarb = &raw;
  if (compress) { /* gzip: zlib */
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) goto oom;
    z.next_in = (unsigned char *)raw.p;
    z.avail_in = (uInt)raw.len;
    unsigned char buf[65536];
    int zr = Z_OK;
    while (zr == Z_OK) {
      z.next_out = buf;
      z.avail_out = sizeof buf;
      zr = inflate(&z, Z_NO_FLUSH);
      if ((zr == Z_OK || zr == Z_STREAM_END) &&
          (plain.len + sizeof buf - z.avail_out > TAR_IN_MAX ||
           sbuf_add(&plain, buf, sizeof buf - z.avail_out))) {
        inflateEnd(&z);
        goto oom;
      }
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END) {
      err_set(e, 400, SCRIPT_E_FAILED, "tar-in: %s: not a valid gzip stream", argv[0]);
      goto out;
    }
    tarb = &plain;
  }
  struct tar_reader t = {(const unsigned char *)(tarb->p ? tarb->p : ""), tarb->len, 0};
  r = tar_extract(s, dest, &t, e);
  goto out;
oom:
  oom(e);
  r = -1;
out:
  sbuf_free(&raw);
  sbuf_free(&plain);
  return r;
}
