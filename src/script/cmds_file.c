/* cmds_file.c — the commands on files of the mounted filesystems, with
 * guestfish's semantics and output: upload, download, cat, write,
 * write-append, touch, mkdir*, rm*, rmdir, cp*, mv, ln*, chmod, chown, ls,
 * ll, exists, is-file, is-dir, filesize, statvfs, glob. Paths go through the
 * session's mount table (gpath_resolve); local files stay in the work
 * directory (local_open). */
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "script/script_int.h"

#define CHUNK (1024 * 1024)
#define MAX_DEPTH 256
#define CAT_MAX (256u * 1024 * 1024)

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

/* ---- small helpers shared by the file commands (also used by archive.c) -- */

int gstat(struct gpath *g, struct fs_stat *st, int follow, struct err *fe) {
  return follow ? g->fs->ops->stat(g->fs, g->inner, st, fe)
                : g->fs->ops->lstat(g->fs, g->inner, st, fe);
}

/* "a/b" + "c" -> "a/b/c" ("/" + "c" -> "/c") */
char *path_join(const char *dir, const char *name) {
  size_t dl = strlen(dir);
  return util_strdup_printf("%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
}

/* The last component of a path, trailing slashes ignored (POSIX basename). */
char *path_base(const char *p) {
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/')
    n--;
  size_t b = n;
  while (b > 0 && p[b - 1] != '/')
    b--;
  if (n == 1 && p[0] == '/') return strdup("/");
  return strndup(p + b, n - b);
}

/* Write `len` bytes as the whole new content of g (created with mode). */
int gwrite_all(struct gpath *g, const char *cmd, const void *data, size_t len, int flags,
               uint32_t mode, struct err *e) {
  struct err fe;
  err_init(&fe);
  const char *p = data;
  uint64_t off = 0;
  do {
    size_t n = len > CHUNK ? CHUNK : len;
    int fl = off == 0 ? flags : (flags & FS_O_APPEND);
    if (g->fs->ops->write(g->fs, g->inner, p, n, off, fl, mode, &fe)) {
      gpath_error(e, cmd, g->full, &fe);
      return -1;
    }
    p += n;
    len -= n;
    off += n;
  } while (len);
  return 0;
}

/* Copy local fd into g (create/truncate, mode for a new file). */
static int gwrite_fd(struct gpath *g, const char *cmd, int fd, uint32_t mode, struct err *e) {
  char *buf = malloc(CHUNK);
  if (!buf) return oom(e);
  struct err fe;
  err_init(&fe);
  uint64_t off = 0;
  int r = 0;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0) {
      if (errno == EINTR) continue;
      err_set(e, 400, SCRIPT_E_FAILED, "%s: reading the local file: %s", cmd, strerror(errno));
      r = -1;
      break;
    }
    if (n == 0 && off > 0) break;
    int fl = off == 0 ? FS_O_CREAT | FS_O_TRUNC : 0;
    if (g->fs->ops->write(g->fs, g->inner, buf, (size_t)n, off, fl, mode, &fe)) {
      gpath_error(e, cmd, g->full, &fe);
      r = -1;
      break;
    }
    off += (uint64_t)n;
    if (n == 0) break;
  }
  free(buf);
  return r;
}

/* Read g from offset 0 and hand each chunk to sink. */
int gread_each(struct gpath *g, const char *cmd, int (*sink)(void *, const char *, size_t),
               void *arg, struct err *e) {
  char *buf = malloc(CHUNK);
  if (!buf) return oom(e);
  struct err fe;
  err_init(&fe);
  uint64_t off = 0;
  int r = 0;
  for (;;) {
    size_t got = 0;
    if (g->fs->ops->read(g->fs, g->inner, buf, CHUNK, off, &got, &fe)) {
      gpath_error(e, cmd, g->full, &fe);
      r = -1;
      break;
    }
    if (got == 0) break;
    if (sink(arg, buf, got)) {
      r = -2;
      break;
    }
    off += got;
  }
  free(buf);
  return r;
}

static int sink_fd(void *arg, const char *p, size_t n) {
  int fd = *(int *)arg;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int sink_sbuf(void *arg, const char *p, size_t n) { return sbuf_add(arg, p, n); }

/* Resolve and require a regular file (following symlinks). */
static int resolve_file(struct script_session *s, const char *cmd, const char *path,
                        struct gpath *g, struct fs_stat *st, struct err *e) {
  if (gpath_resolve(s, cmd, path, g, e)) return -1;
  struct err fe;
  err_init(&fe);
  if (gstat(g, st, 1, &fe)) {
    gpath_error(e, cmd, g->full, &fe);
    gpath_free(g);
    return -1;
  }
  if (S_ISDIR(st->mode)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: Is a directory", cmd, g->full);
    gpath_free(g);
    return -1;
  }
  return 0;
}

/* Copy guest file g into the local file `local` (created/truncated). */
int download_to_local(struct script_session *s, const char *cmd, struct gpath *g, const char *local,
                      uint32_t mode, struct err *e) {
  int fd = local_open(s, cmd, local, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY, (int)mode, e);
  if (fd < 0) return -1;
  int r = gread_each(g, cmd, sink_fd, &fd, e);
  if (r == -2) err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, local, strerror(errno));
  if (close(fd) && r == 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, local, strerror(errno));
    r = -1;
  }
  return r ? -1 : 0;
}

/* ======================================================================= */
/* the commands                                                             */
/* ======================================================================= */

int cmd_upload(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "upload", argv[1], &g, e)) return -1;
  int r = -1;
  if (gpath_check_writable(&g, "upload", e)) goto done;
  if (st->heredoc_arg == 0) {
    r = gwrite_all(&g, "upload", st->heredoc, st->heredoc_len, FS_O_CREAT | FS_O_TRUNC, 0644, e);
  } else if (strcmp(argv[0], "-") == 0) {
    err_set(e, 400, SCRIPT_E_FAILED,
            "upload: a file argument \"-\" (the script's own input) is not supported");
  } else {
    int fd = local_open(s, "upload", argv[0], O_RDONLY, 0, e);
    if (fd >= 0) {
      struct stat ls;
      if (fstat(fd, &ls) == 0 && S_ISDIR(ls.st_mode))
        err_set(e, 400, SCRIPT_E_FAILED, "upload: %s: Is a directory", argv[0]);
      else
        r = gwrite_fd(&g, "upload", fd, 0644, e);
      close(fd);
    }
  }
done:
  gpath_free(&g);
  return r;
}

int cmd_download(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                 struct sbuf *out, struct err *e) {
  struct gpath g;
  struct fs_stat fst;
  if (resolve_file(s, "download", argv[0], &g, &fst, e)) return -1;
  int r;
  if (strcmp(argv[1], "-") == 0) { /* guestfish: standard output */
    r = gread_each(&g, "download", sink_sbuf, out, e) ? -1 : 0;
  } else {
    r = download_to_local(s, "download", &g, argv[1], 0644, e);
  }
  gpath_free(&g);
  return r;
}

int cmd_cat(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
            struct sbuf *out, struct err *e) {
  struct gpath g;
  struct fs_stat fst;
  if (resolve_file(s, "cat", argv[0], &g, &fst, e)) return -1;
  int r = -1;
  if (fst.size > CAT_MAX) {
    err_set(e, 400, SCRIPT_E_FAILED, "cat: %s: file too large (%llu bytes); use download", g.full,
            (unsigned long long)fst.size);
  } else {
    size_t start = out->len;
    if (gread_each(&g, "cat", sink_sbuf, out, e) == 0) {
      /* guestfish prints a C string and a newline: bytes after a NUL are lost */
      char *nul = memchr(out->p ? out->p + start : "", 0, out->len - start);
      if (nul) out->len = (size_t)(nul - out->p);
      r = sbuf_addc(out, '\n') ? oom(e) : 0;
    }
  }
  gpath_free(&g);
  return r;
}

static int write_common(struct script_session *s, const char *cmd, const char *path,
                        const char *content, int flags, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, cmd, path, &g, e)) return -1;
  int r = gpath_check_writable(&g, cmd, e)
              ? -1
              : gwrite_all(&g, cmd, content, strlen(content), flags, 0644, e);
  gpath_free(&g);
  return r;
}

int cmd_write(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  return write_common(s, "write", argv[0], argv[1], FS_O_CREAT | FS_O_TRUNC, e);
}

int cmd_write_append(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                     struct sbuf *out, struct err *e) {
  return write_common(s, "write-append", argv[0], argv[1], FS_O_CREAT | FS_O_APPEND, e);
}

int cmd_touch(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "touch", argv[0], &g, e)) return -1;
  int r = -1;
  struct fs_stat fst;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, "touch", e)) goto done;
  if (gstat(&g, &fst, 1, &fe) == 0) {
    if (S_ISDIR(fst.mode)) {
      err_set(e, 400, SCRIPT_E_FAILED, "touch: %s: Is a directory", g.full);
      goto done;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (g.fs->ops->utimens(g.fs, g.inner, now.tv_sec, now.tv_nsec, now.tv_sec, now.tv_nsec, &fe))
      gpath_error(e, "touch", g.full, &fe);
    else
      r = 0;
  } else if (strcmp(fe.code, FS_ENOENT) == 0) {
    err_clear(&fe);
    if (g.fs->ops->write(g.fs, g.inner, "", 0, 0, FS_O_CREAT, 0644, &fe))
      gpath_error(e, "touch", g.full, &fe);
    else
      r = 0;
  } else {
    gpath_error(e, "touch", g.full, &fe);
  }
done:
  gpath_free(&g);
  return r;
}

static int mkdir_common(struct script_session *s, const char *cmd, const char *path, uint32_t mode,
                        int parents, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, cmd, path, &g, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, cmd, e)) goto done;
  if (parents) {
    if (fs_mkdir_p(g.fs, g.inner, mode, &fe))
      gpath_error(e, cmd, g.full, &fe);
    else
      r = 0;
  } else if (g.is_mountpoint) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: File exists", cmd, g.full);
  } else if (g.fs->ops->mkdir(g.fs, g.inner, mode, &fe)) {
    gpath_error(e, cmd, g.full, &fe);
  } else {
    r = 0;
  }
done:
  gpath_free(&g);
  return r;
}

int cmd_mkdir(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  return mkdir_common(s, "mkdir", argv[0], 0755, 0, e);
}

int cmd_mkdir_p(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                struct sbuf *out, struct err *e) {
  return mkdir_common(s, "mkdir-p", argv[0], 0755, 1, e);
}

static int parse_mode(const char *cmd, const char *arg, uint32_t *mode, struct err *e) {
  int64_t v;
  char why[200];
  if (script_parse_int(arg, &v, why, sizeof why)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: mode: %s", cmd, why);
    return -1;
  }
  if (v < -(2LL << 30) || v > (2LL << 30) - 1) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: mode: integer out of range", cmd);
    return -1;
  }
  *mode = (uint32_t)v & 07777;
  return 0;
}

int cmd_mkdir_mode(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  uint32_t mode;
  if (parse_mode("mkdir-mode", argv[1], &mode, e)) return -1;
  return mkdir_common(s, "mkdir-mode", argv[0], mode, 0, e);
}

/* ---- removal ----------------------------------------------------------------- */

static int rm_one(struct script_session *s, const char *cmd, const char *path, int force,
                  struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, cmd, path, &g, e)) return -1;
  int r = -1;
  struct fs_stat fst;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, cmd, e)) goto done;
  if (gstat(&g, &fst, 0, &fe)) {
    if (force && strcmp(fe.code, FS_ENOENT) == 0)
      r = 0;
    else
      gpath_error(e, cmd, g.full, &fe);
    goto done;
  }
  if (S_ISDIR(fst.mode)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: Is a directory", cmd, g.full);
    goto done;
  }
  if (g.fs->ops->unlink(g.fs, g.inner, &fe))
    gpath_error(e, cmd, g.full, &fe);
  else
    r = 0;
done:
  gpath_free(&g);
  return r;
}

int cmd_rm(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  return rm_one(s, "rm", argv[0], 0, e);
}

int cmd_rm_f(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  return rm_one(s, "rm-f", argv[0], 1, e);
}

/* Remove a tree by guest path, crossing into filesystems mounted below. */
static int rm_tree(struct script_session *s, const char *cmd, const char *full, int depth,
                   struct err *e) {
  if (depth > MAX_DEPTH) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: directories nested too deeply", cmd, full);
    return -1;
  }
  struct gpath g;
  if (gpath_resolve(s, cmd, full, &g, e)) return -1;
  int r = -1;
  struct fs_stat fst;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, cmd, e)) goto done;
  if (gstat(&g, &fst, 0, &fe)) {
    if (strcmp(fe.code, FS_ENOENT) == 0)
      r = 0;
    else
      gpath_error(e, cmd, g.full, &fe);
    goto done;
  }
  if (!S_ISDIR(fst.mode)) {
    if (g.fs->ops->unlink(g.fs, g.inner, &fe))
      gpath_error(e, cmd, g.full, &fe);
    else
      r = 0;
    goto done;
  }
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  if (g.fs->ops->readdir(g.fs, g.inner, &ents, &n, &fe)) {
    gpath_error(e, cmd, g.full, &fe);
    goto done;
  }
  r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    CLEANUP_FREE char *child = path_join(g.full, ents[i].name);
    r = child ? rm_tree(s, cmd, child, depth + 1, e) : oom(e);
  }
  fs_dirents_free(ents, n);
  if (r) goto done;
  if (g.is_mountpoint) {
    err_set(e, 409, SCRIPT_E_FAILED, "%s: %s: Device or resource busy", cmd, g.full);
    r = -1;
  } else if (g.fs->ops->rmdir(g.fs, g.inner, &fe)) {
    gpath_error(e, cmd, g.full, &fe);
    r = -1;
  }
done:
  gpath_free(&g);
  return r;
}

int cmd_rm_rf(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  CLEANUP_FREE char *full = gpath_normalize("rm-rf", argv[0], e);
  return full ? rm_tree(s, "rm-rf", full, 0, e) : -1;
}

int cmd_rmdir(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "rmdir", argv[0], &g, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, "rmdir", e)) goto done;
  if (g.is_mountpoint)
    err_set(e, 409, SCRIPT_E_FAILED, "rmdir: %s: Device or resource busy", g.full);
  else if (g.fs->ops->rmdir(g.fs, g.inner, &fe))
    gpath_error(e, "rmdir", g.full, &fe);
  else
    r = 0;
done:
  gpath_free(&g);
  return r;
}

/* ---- copies, moves, links ------------------------------------------------------ */

/* Copy one guest file (not a directory) from src to dst (guest paths).
 * preserve: keep mode, owner and times (cp -a), else mode & 0777. */
static int copy_file(struct script_session *s, const char *cmd, struct gpath *src,
                     const struct fs_stat *sst, const char *dst_full, int preserve, struct err *e) {
  struct gpath d;
  if (gpath_resolve(s, cmd, dst_full, &d, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&d, cmd, e)) goto done;
  if (S_ISLNK(sst->mode)) { /* only reached with preserve (cp -a) */
    char *target = NULL;
    if (src->fs->ops->readlink(src->fs, src->inner, &target, &fe)) {
      gpath_error(e, cmd, src->full, &fe);
      goto done;
    }
    (void)d.fs->ops->unlink(d.fs, d.inner, &fe);
    err_clear(&fe);
    if (d.fs->ops->symlink(d.fs, target, d.inner, &fe))
      gpath_error(e, cmd, d.full, &fe);
    else
      r = 0;
    free(target);
    goto done;
  }
  if (!S_ISREG(sst->mode)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: cannot copy a special file", cmd, src->full);
    goto done;
  }
  uint32_t mode = sst->mode & (preserve ? 07777 : 0777);
  if (src->fs == d.fs && strcmp(src->inner, d.inner) == 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s and %s are the same file", cmd, src->full, d.full);
    goto done;
  }
  /* stream through memory, chunk by chunk */
  char *buf = malloc(CHUNK);
  if (!buf) {
    oom(e);
    goto done;
  }
  uint64_t off = 0;
  r = 0;
  for (;;) {
    size_t got = 0;
    if (src->fs->ops->read(src->fs, src->inner, buf, CHUNK, off, &got, &fe)) {
      gpath_error(e, cmd, src->full, &fe);
      r = -1;
      break;
    }
    int fl = off == 0 ? FS_O_CREAT | FS_O_TRUNC : 0;
    if ((got || off == 0) && d.fs->ops->write(d.fs, d.inner, buf, got, off, fl, mode, &fe)) {
      gpath_error(e, cmd, d.full, &fe);
      r = -1;
      break;
    }
    if (got == 0) break;
    off += got;
  }
  free(buf);
  if (r == 0 && preserve) {
    if (d.fs->ops->chmod(d.fs, d.inner, sst->mode & 07777, &fe) ||
        d.fs->ops->chown(d.fs, d.inner, sst->uid, sst->gid, &fe) ||
        d.fs->ops->utimens(d.fs, d.inner, sst->atime, sst->atime_ns, sst->mtime, sst->mtime_ns,
                           &fe)) {
      /* vfat keeps no modes or owners: cp -a onto it warns, and so do we by not failing */
      if (strcmp(fe.code, FS_ENOTSUP) != 0) {
        gpath_error(e, cmd, d.full, &fe);
        r = -1;
      }
      err_clear(&fe);
    }
  }
done:
  gpath_free(&d);
  return r;
}

static int copy_tree(struct script_session *s, const char *cmd, const char *src_full,
                     const char *dst_full, int preserve, int recursive, int depth, struct err *e) {
  if (depth > MAX_DEPTH) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: directories nested too deeply", cmd, src_full);
    return -1;
  }
  struct gpath g;
  if (gpath_resolve(s, cmd, src_full, &g, e)) return -1;
  int r = -1;
  struct fs_stat sst;
  struct err fe;
  err_init(&fe);
  if (gstat(&g, &sst, !preserve, &fe)) {
    gpath_error(e, cmd, g.full, &fe);
    goto done;
  }
  if (!S_ISDIR(sst.mode)) {
    r = copy_file(s, cmd, &g, &sst, dst_full, preserve, e);
    goto done;
  }
  if (!recursive) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: -r not specified; omitting directory '%s'", cmd, g.full);
    goto done;
  }
  struct gpath d;
  if (gpath_resolve(s, cmd, dst_full, &d, e)) goto done;
  if (gpath_check_writable(&d, cmd, e)) {
    gpath_free(&d);
    goto done;
  }
  struct fs_stat dst_st;
  if (gstat(&d, &dst_st, 1, &fe)) {
    err_clear(&fe);
    if (d.fs->ops->mkdir(d.fs, d.inner, sst.mode & 07777, &fe)) {
      gpath_error(e, cmd, d.full, &fe);
      gpath_free(&d);
      goto done;
    }
  } else if (!S_ISDIR(dst_st.mode)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: cannot overwrite non-directory %s with directory %s", cmd,
            d.full, g.full);
    gpath_free(&d);
    goto done;
  }
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  if (g.fs->ops->readdir(g.fs, g.inner, &ents, &n, &fe)) {
    gpath_error(e, cmd, g.full, &fe);
    gpath_free(&d);
    goto done;
  }
  r = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    CLEANUP_FREE char *cs = path_join(g.full, ents[i].name);
    CLEANUP_FREE char *cd = path_join(d.full, ents[i].name);
    r = cs && cd ? copy_tree(s, cmd, cs, cd, preserve, 1, depth + 1, e) : oom(e);
  }
  fs_dirents_free(ents, n);
  if (r == 0 && preserve) {
    if (d.fs->ops->chmod(d.fs, d.inner, sst.mode & 07777, &fe) ||
        d.fs->ops->chown(d.fs, d.inner, sst.uid, sst.gid, &fe) ||
        d.fs->ops->utimens(d.fs, d.inner, sst.atime, sst.atime_ns, sst.mtime, sst.mtime_ns, &fe)) {
      if (strcmp(fe.code, FS_ENOTSUP) != 0) {
        gpath_error(e, cmd, d.full, &fe);
        r = -1;
      }
      err_clear(&fe);
    }
  }
  gpath_free(&d);
done:
  gpath_free(&g);
  return r;
}

/* cp's destination: into dst when it is a directory. */
static char *dest_for(struct script_session *s, const char *cmd, const char *src, const char *dst,
                      struct err *e) {
  CLEANUP_FREE char *dfull = gpath_normalize(cmd, dst, e);
  if (!dfull) return NULL;
  struct gpath d;
  if (gpath_resolve(s, cmd, dfull, &d, e)) return NULL;
  struct fs_stat st;
  struct err fe;
  err_init(&fe);
  int isdir = gstat(&d, &st, 1, &fe) == 0 && S_ISDIR(st.mode);
  err_clear(&fe);
  gpath_free(&d);
  if (!isdir) return strdup(dfull);
  CLEANUP_FREE char *b = path_base(src);
  return b ? path_join(dfull, b) : NULL;
}

static int cp_common(struct script_session *s, const char *cmd, char **argv, int preserve,
                     int recursive, struct err *e) {
  CLEANUP_FREE char *src = gpath_normalize(cmd, argv[0], e);
  if (!src) return -1;
  CLEANUP_FREE char *dst = dest_for(s, cmd, argv[0], argv[1], e);
  if (!dst) return e->message[0] ? -1 : oom(e);
  return copy_tree(s, cmd, src, dst, preserve, recursive, 0, e);
}

int cmd_cp(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  return cp_common(s, "cp", argv, 0, 0, e);
}
int cmd_cp_a(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  return cp_common(s, "cp-a", argv, 1, 1, e);
}
int cmd_cp_r(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  return cp_common(s, "cp-r", argv, 0, 1, e);
}

int cmd_mv(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  char *src = gpath_normalize("mv", argv[0], e);
  char *dst = src ? dest_for(s, "mv", argv[0], argv[1], e) : NULL;
  struct gpath a, b;
  int r = -1, have_a = 0, have_b = 0;
  struct err fe;
  err_init(&fe);
  if (!src || !dst) {
    if (src && !e->message[0]) oom(e);
    goto done;
  }
  if (!(have_a = gpath_resolve(s, "mv", src, &a, e) == 0)) goto done;
  if (!(have_b = gpath_resolve(s, "mv", dst, &b, e) == 0)) goto done;
  if (gpath_check_writable(&a, "mv", e) || gpath_check_writable(&b, "mv", e)) goto done;
  if (a.is_mountpoint) {
    err_set(e, 409, SCRIPT_E_FAILED, "mv: %s: Device or resource busy", a.full);
    goto done;
  }
  if (a.fs == b.fs) {
    if (a.fs->ops->rename(a.fs, a.inner, b.inner, &fe))
      gpath_error(e, "mv", a.full, &fe);
    else
      r = 0;
    goto done;
  }
  /* across filesystems: copy everything, then remove the source (as mv does) */
  if (copy_tree(s, "mv", a.full, b.full, 1, 1, 0, e) == 0) r = rm_tree(s, "mv", a.full, 0, e);
done:
  if (have_a) gpath_free(&a);
  if (have_b) gpath_free(&b);
  free(src);
  free(dst);
  return r;
}

static int ln_common(struct script_session *s, const char *cmd, char **argv, int sym, int force,
                     struct err *e) {
  CLEANUP_FREE char *link = dest_for(s, cmd, argv[0], argv[1], e);
  if (!link) return e->message[0] ? -1 : oom(e);
  struct gpath l;
  if (gpath_resolve(s, cmd, link, &l, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  struct fs_stat lst;
  if (gpath_check_writable(&l, cmd, e)) goto done;
  if (gstat(&l, &lst, 0, &fe) == 0) {
    if (!force) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: File exists", cmd, l.full);
      goto done;
    }
    if (S_ISDIR(lst.mode)) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: cannot overwrite directory", cmd, l.full);
      goto done;
    }
    if (l.fs->ops->unlink(l.fs, l.inner, &fe)) {
      gpath_error(e, cmd, l.full, &fe);
      goto done;
    }
  }
  err_clear(&fe);
  if (sym) { /* the target is stored as written */
    if (l.fs->ops->symlink(l.fs, argv[0], l.inner, &fe))
      gpath_error(e, cmd, l.full, &fe);
    else
      r = 0;
    goto done;
  }
  struct gpath t;
  if (gpath_resolve(s, cmd, argv[0], &t, e)) goto done;
  if (t.fs != l.fs)
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: Invalid cross-device link", cmd, l.full);
  else if (l.fs->ops->link(l.fs, t.inner, l.inner, &fe))
    gpath_error(e, cmd, l.full, &fe);
  else
    r = 0;
  gpath_free(&t);
done:
  gpath_free(&l);
  return r;
}

int cmd_ln(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  return ln_common(s, "ln", argv, 0, 0, e);
}
int cmd_ln_f(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  return ln_common(s, "ln-f", argv, 0, 1, e);
}
int cmd_ln_s(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  return ln_common(s, "ln-s", argv, 1, 0, e);
}
int cmd_ln_sf(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  return ln_common(s, "ln-sf", argv, 1, 1, e);
}

/* ---- attributes ----------------------------------------------------------------- */

int cmd_chmod(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  uint32_t mode;
  if (parse_mode("chmod", argv[0], &mode, e)) return -1;
  struct gpath g;
  if (gpath_resolve(s, "chmod", argv[1], &g, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, "chmod", e) == 0) {
    if (g.fs->ops->chmod(g.fs, g.inner, mode, &fe))
      gpath_error(e, "chmod", g.full, &fe);
    else
      r = 0;
  }
  gpath_free(&g);
  return r;
}

int cmd_chown(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
              struct sbuf *out, struct err *e) {
  int64_t uid, gid;
  char why[200];
  if (script_parse_int(argv[0], &uid, why, sizeof why) ||
      script_parse_int(argv[1], &gid, why, sizeof why)) {
    err_set(e, 400, SCRIPT_E_FAILED, "chown: %s", why);
    return -1;
  }
  struct gpath g;
  if (gpath_resolve(s, "chown", argv[2], &g, e)) return -1;
  int r = -1;
  struct err fe;
  err_init(&fe);
  if (gpath_check_writable(&g, "chown", e) == 0) {
    if (g.fs->ops->chown(g.fs, g.inner, (uint32_t)uid, (uint32_t)gid, &fe))
      gpath_error(e, "chown", g.full, &fe);
    else
      r = 0;
  }
  gpath_free(&g);
  return r;
}

/* ---- listings and tests --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Directory entries of a guest path, sorted by strcmp (names malloc'd). */
static int list_sorted(struct script_session *s, const char *cmd, struct gpath *g, char ***names,
                       size_t *n, struct err *e) {
  struct fs_dirent *ents = NULL;
  struct err fe;
  err_init(&fe);
  if (g->fs->ops->readdir(g->fs, g->inner, &ents, n, &fe)) {
    gpath_error(e, cmd, g->full, &fe);
    *n = 0;
    return -1;
  }
  char **v = calloc(*n + 1, sizeof *v);
  if (!v) {
    fs_dirents_free(ents, *n);
    *n = 0;
    return oom(e);
  }
  for (size_t i = 0; i < *n; i++) {
    v[i] = ents[i].name;
    ents[i].name = NULL;
  }
  fs_dirents_free(ents, *n);
  qsort(v, *n, sizeof *v, cmp_str);
  *names = v;
  return 0;
}

int cmd_ls(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "ls", argv[0], &g, e)) return -1;
  char **names = NULL;
  size_t n = 0;
  int r = list_sorted(s, "ls", &g, &names, &n, e);
  for (size_t i = 0; i < n; i++) {
    if (r == 0 && (sbuf_adds(out, names[i]) || sbuf_addc(out, '\n'))) r = oom(e);
    free(names[i]);
  }
  free(names);
  gpath_free(&g);
  return r;
}

static void mode_string(uint32_t m, char out[11]) {
  out[0] = S_ISDIR(m)    ? 'd'
           : S_ISLNK(m)  ? 'l'
           : S_ISCHR(m)  ? 'c'
           : S_ISBLK(m)  ? 'b'
           : S_ISFIFO(m) ? 'p'
           : S_ISSOCK(m) ? 's'
                         : '-';
  static const char rwx[] = "rwxrwxrwx";
  for (int i = 0; i < 9; i++)
    out[1 + i] = (m & (1u << (8 - i))) ? rwx[i] : '-';
  if (m & S_ISUID) out[3] = (m & S_IXUSR) ? 's' : 'S';
  if (m & S_ISGID) out[6] = (m & S_IXGRP) ? 's' : 'S';
  if (m & S_ISVTX) out[9] = (m & S_IXOTH) ? 't' : 'T';
  out[10] = 0;
}

/* One "ls -la" line. */
static int ll_line(struct sbuf *out, const char *name, const struct fs_stat *st,
                   const char *target) {
  char ms[11], date[32], uid[16], gid[16];
  mode_string(st->mode, ms);
  time_t t = (time_t)st->mtime;
  struct tm tm;
  gmtime_r(&t, &tm);
  time_t now = time(NULL);
  if (t > now - 15552000 && t < now + 3600)
    strftime(date, sizeof date, "%b %e %H:%M", &tm);
  else
    strftime(date, sizeof date, "%b %e  %Y", &tm);
  if (st->uid == 0)
    snprintf(uid, sizeof uid, "root");
  else
    snprintf(uid, sizeof uid, "%u", st->uid);
  if (st->gid == 0)
    snprintf(gid, sizeof gid, "root");
  else
    snprintf(gid, sizeof gid, "%u", st->gid);
  return sbuf_printf(out, "%s %2u %-4s %-4s %8llu %s %s%s%s\n", ms, st->nlink, uid, gid,
                     (unsigned long long)st->size, date, name, target ? " -> " : "",
                     target ? target : "");
}

int cmd_ll(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
           struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "ll", argv[0], &g, e)) return -1;
  char **names = NULL;
  size_t n = 0;
  struct err fe;
  err_init(&fe);
  struct fs_stat dst;
  int r = -1;
  if (gstat(&g, &dst, 1, &fe)) {
    gpath_error(e, "ll", g.full, &fe);
    goto done;
  }
  if (!S_ISDIR(dst.mode)) { /* ls -la of a file: its own line */
    r = ll_line(out, g.full, &dst, NULL) ? oom(e) : 0;
    goto done;
  }
  if (list_sorted(s, "ll", &g, &names, &n, e)) goto done;
  struct sbuf lines = {0};
  uint64_t blocks = dst.blocks;
  r = ll_line(&lines, ".", &dst, NULL) || ll_line(&lines, "..", &dst, NULL) ? oom(e) : 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    CLEANUP_FREE char *p = path_join(g.inner, names[i]);
    struct fs_stat cs;
    if (!p) {
      r = oom(e);
      break;
    }
    if (g.fs->ops->lstat(g.fs, p, &cs, &fe)) {
      err_clear(&fe);
      continue;
    }
    char *target = NULL;
    if (S_ISLNK(cs.mode) && g.fs->ops->readlink(g.fs, p, &target, &fe)) err_clear(&fe);
    blocks += cs.blocks;
    if (ll_line(&lines, names[i], &cs, target)) r = oom(e);
    free(target);
  }
  if (r == 0 && (sbuf_printf(out, "total %llu\n", (unsigned long long)(blocks / 2)) ||
                 sbuf_add(out, lines.p ? lines.p : "", lines.len)))
    r = oom(e);
  sbuf_free(&lines);
done:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  gpath_free(&g);
  return r;
}

static int is_true_arg(const char *v) {
  return !(strcasecmp(v, "0") == 0 || strcasecmp(v, "f") == 0 || strcasecmp(v, "false") == 0 ||
           strcasecmp(v, "n") == 0 || strcasecmp(v, "no") == 0);
}

/* exists / is-file / is-dir: "true" or "false". */
static int test_path(struct script_session *s, const char *cmd, int argc, char **argv, int what,
                     struct sbuf *out, struct err *e) {
  int follow = what == 0;
  if (argc > 1) {
    if (strncmp(argv[1], "followsymlinks:", 15) != 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: unknown optional argument \"%s\"", cmd, argv[1]);
      return -1;
    }
    follow = is_true_arg(argv[1] + 15);
  }
  struct gpath g;
  if (gpath_resolve(s, cmd, argv[0], &g, e)) return -1;
  struct fs_stat st;
  struct err fe;
  err_init(&fe);
  int yes = gstat(&g, &st, follow, &fe) == 0;
  int r = 0;
  if (!yes && strcmp(fe.code, FS_ENOENT) != 0 && strcmp(fe.code, FS_ENOTDIR) != 0) {
    gpath_error(e, cmd, g.full, &fe);
    r = -1;
  } else {
    if (yes && what == 1) yes = S_ISREG(st.mode);
    if (yes && what == 2) yes = S_ISDIR(st.mode);
    if (sbuf_adds(out, yes ? "true\n" : "false\n")) r = oom(e);
  }
  err_clear(&fe);
  gpath_free(&g);
  return r;
}

int cmd_exists(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e) {
  return test_path(s, "exists", argc, argv, 0, out, e);
}
int cmd_is_file(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                struct sbuf *out, struct err *e) {
  return test_path(s, "is-file", argc, argv, 1, out, e);
}
int cmd_is_dir(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e) {
  return test_path(s, "is-dir", argc, argv, 2, out, e);
}

int cmd_filesize(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                 struct sbuf *out, struct err *e) {
  struct gpath g;
  struct fs_stat fst;
  if (resolve_file(s, "filesize", argv[0], &g, &fst, e)) return -1;
  gpath_free(&g);
  return sbuf_printf(out, "%llu\n", (unsigned long long)fst.size) ? oom(e) : 0;
}

int cmd_statvfs(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                struct sbuf *out, struct err *e) {
  struct gpath g;
  if (gpath_resolve(s, "statvfs", argv[0], &g, e)) return -1;
  struct fs_statvfs v;
  struct fs_stat fst;
  struct err fe;
  err_init(&fe);
  int r = -1;
  if (gstat(&g, &fst, 1, &fe) || g.fs->ops->statvfs(g.fs, &v, &fe)) {
    gpath_error(e, "statvfs", g.full, &fe);
  } else {
    /* guestfish prints the struct's fields as signed 64-bit numbers */
    r = sbuf_printf(out,
                    "bsize: %lld\nfrsize: %lld\nblocks: %lld\nbfree: %lld\nbavail: %lld\n"
                    "files: %lld\nffree: %lld\nfavail: %lld\nfsid: %lld\nflag: %lld\n"
                    "namemax: %lld\n",
                    (long long)v.bsize, (long long)v.frsize, (long long)v.blocks,
                    (long long)v.bfree, (long long)v.bavail, (long long)v.files, (long long)v.ffree,
                    (long long)v.favail, (long long)v.fsid, (long long)v.flag, (long long)v.namemax)
            ? oom(e)
            : 0;
  }
  gpath_free(&g);
  return r;
}

/* ---- glob ------------------------------------------------------------------------ */

struct strv {
  char **v;
  size_t n, cap;
};
static int strv_push(struct strv *a, char *s) {
  if (!s) return -1;
  if (a->n == a->cap) {
    size_t nc = a->cap ? a->cap * 2 : 16;
    char **nv = realloc(a->v, nc * sizeof *nv);
    if (!nv) {
      free(s);
      return -1;
    }
    a->v = nv;
    a->cap = nc;
  }
  a->v[a->n++] = s;
  return 0;
}
static void strv_clear(struct strv *a) {
  for (size_t i = 0; i < a->n; i++)
    free(a->v[i]);
  free(a->v);
  memset(a, 0, sizeof *a);
}

static int has_magic(const char *p) { return strpbrk(p, "*?[{") != NULL; }

/* Expand {a,b} braces (GLOB_BRACE) into out. */
static int brace_expand(const char *p, struct strv *out, int depth) {
  const char *open = strchr(p, '{');
  if (!open || depth > 16) return strv_push(out, strdup(p));
  int level = 0;
  const char *close = NULL;
  for (const char *q = open; *q; q++) {
    if (*q == '{') level++;
    if (*q == '}' && --level == 0) {
      close = q;
      break;
    }
  }
  if (!close) return strv_push(out, strdup(p));
  const char *start = open + 1;
  level = 0;
  for (const char *q = start; q <= close; q++) {
    if (*q == '{') level++;
    if (*q == '}' && q != close) level--;
    if ((*q == ',' && level == 0) || q == close) {
      CLEANUP_FREE char *alt =
          util_strdup_printf("%.*s%.*s%s", (int)(open - p), p, (int)(q - start), start, close + 1);
      if (!alt || brace_expand(alt, out, depth + 1)) return -1;
      start = q + 1;
    }
  }
  return 0;
}

/* Match a pattern against the guest tree component by component (glob(3)
 * with GLOB_MARK: directories get a trailing '/'). */
static int glob_walk(struct script_session *s, const char *dir, const char *rest, struct strv *out,
                     int depth) {
  while (*rest == '/')
    rest++;
  if (!*rest) return 0;
  const char *slash = strchr(rest, '/');
  size_t cl = slash ? (size_t)(slash - rest) : strlen(rest);
  if (depth > MAX_DEPTH) return -1;
  char comp[256];
  if (cl >= sizeof comp) return 0; /* no name is that long */
  memcpy(comp, rest, cl);
  comp[cl] = 0;
  const char *next = slash ? slash : "";
  struct err e;
  err_init(&e);
  struct gpath g;
  if (gpath_resolve(s, "glob", dir, &g, &e)) {
    err_clear(&e);
    return 0;
  }
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  int r = 0;
  if (!has_magic(comp)) { /* a literal component: just check it */
    CLEANUP_FREE char *p = path_join(dir, comp);
    gpath_free(&g);
    if (!p) return -1;
    struct gpath c;
    if (gpath_resolve(s, "glob", p, &c, &e)) {
      err_clear(&e);
      return 0;
    }
    struct fs_stat st;
    int ok = gstat(&c, &st, 1, &e) == 0;
    err_clear(&e);
    gpath_free(&c);
    if (!ok) return 0;
    if (*next) return S_ISDIR(st.mode) ? glob_walk(s, p, next, out, depth + 1) : 0;
    return strv_push(out, S_ISDIR(st.mode) ? util_strdup_printf("%s/", p) : strdup(p));
  }
  if (g.fs->ops->readdir(g.fs, g.inner, &ents, &n, &e)) {
    err_clear(&e);
    gpath_free(&g);
    return 0;
  }
  for (size_t i = 0; i < n && r == 0; i++) {
    if (fnmatch(comp, ents[i].name, FNM_PERIOD) != 0) continue;
    CLEANUP_FREE char *p = path_join(dir, ents[i].name);
    if (!p) {
      r = -1;
      break;
    }
    struct gpath c;
    struct fs_stat st;
    int isdir = 0;
    if (gpath_resolve(s, "glob", p, &c, &e) == 0) {
      isdir = gstat(&c, &st, 1, &e) == 0 && S_ISDIR(st.mode);
      gpath_free(&c);
    }
    err_clear(&e);
    if (*next)
      r = isdir ? glob_walk(s, p, next, out, depth + 1) : 0;
    else
      r = strv_push(out, isdir ? util_strdup_printf("%s/", p) : strdup(p));
  }
  fs_dirents_free(ents, n);
  gpath_free(&g);
  return r;
}

/* guestfs glob-expand: sorted matches, or none. */
static int glob_expand(struct script_session *s, const char *pattern, struct strv *out) {
  if (pattern[0] != '/') return 0; /* relative: matches nothing in the appliance's / */
  struct strv alts = {0};
  if (brace_expand(pattern, &alts, 0)) {
    strv_clear(&alts);
    return -1;
  }
  int r = 0;
  for (size_t i = 0; i < alts.n && r == 0; i++) {
    size_t before = out->n; /* a literal is returned only if it exists, as glob(3) does */
    r = glob_walk(s, "/", alts.v[i], out, 0);
    if (r == 0 && out->n > before) qsort(out->v + before, out->n - before, sizeof *out->v, cmp_str);
  }
  strv_clear(&alts);
  return r;
}

/* glob CMD ARGS...: expand every argument (one that matches nothing stays as
 * written), then run CMD for each combination, like guestfish. */
int cmd_glob(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
             struct sbuf *out, struct err *e) {
  int nargs = argc - 1;
  struct strv *exp = calloc((size_t)(nargs ? nargs : 1), sizeof *exp);
  if (!exp) return oom(e);
  int r = 0;
  for (int i = 0; i < nargs && r == 0; i++) {
    if (glob_expand(s, argv[i + 1], &exp[i]))
      r = oom(e);
    else if (exp[i].n == 0 && strv_push(&exp[i], strdup(argv[i + 1])))
      r = oom(e);
  }
  size_t *idx = calloc((size_t)(nargs ? nargs : 1), sizeof *idx);
  char **cargv = calloc((size_t)nargs + 1, sizeof *cargv);
  if (!idx || !cargv) r = r ? r : oom(e);
  int failed = 0, runs = 0;
  while (r == 0) {
    for (int i = 0; i < nargs; i++)
      cargv[i] = exp[i].v[idx[i]];
    struct err ce;
    err_init(&ce);
    if (++runs > 100000) {
      err_set(e, 400, SCRIPT_E_FAILED, "glob: too many combinations");
      r = -1;
      break;
    }
    if (cmd_run_named(s, st, argv[0], nargs, cargv, out, &ce)) {
      /* guestfish runs every combination and fails at the end */
      slog(s, "%s\n", ce.message);
      if (!failed) *e = ce;
      failed = 1;
      if (strcmp(ce.code, SCRIPT_E_UNKNOWN) == 0) break;
    }
    int i = nargs - 1;
    while (i >= 0 && ++idx[i] == exp[i].n)
      idx[i--] = 0;
    if (i < 0) break;
  }
  for (int i = 0; i < nargs; i++)
    strv_clear(&exp[i]);
  free(exp);
  free(idx);
  free(cargv);
  return r || failed ? -1 : 0;
}
