/* sandbox_tree.c — the file-system side of the host-shell sandbox: walks of
 * the work dir and the private /tmp (space used, hand-over to the sandbox's
 * uid, removal) and the resolution of plan scripts' local paths. Everything
 * here may meet whatever a sandboxed command left: walks are fd-based and
 * never follow a symlink (fstatat AT_SYMLINK_NOFOLLOW, openat O_NOFOLLOW),
 * local paths resolve with openat2 RESOLVE_BENEATH. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "script/sandbox.h"
#include "script/sandbox_int.h"

bool sandbox_path_under(const char *path, const char *top) {
  size_t n = strlen(top);
  return strncmp(path, top, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* ---- directory walks ------------------------------------------------------
 * fd-based, never following a symlink (fstatat AT_SYMLINK_NOFOLLOW, openat
 * O_NOFOLLOW): the trees hold whatever the sandboxed commands made. */

enum walk_op { WALK_USAGE, WALK_CHOWN, WALK_REMOVE };

struct inode_use {
  dev_t dev;
  ino_t ino;
  uint64_t bytes;
};

struct walk {
  enum walk_op op;
  unsigned uid;
  int top_fd;     /* WALK_REMOVE: where too-deep subtrees are moved */
  uint64_t bytes; /* WALK_USAGE: single-link files and directories */
  uint64_t entries;
  struct inode_use *links; /* WALK_USAGE: multiply-linked files, counted once at the end */
  size_t nlinks, caplinks;
  unsigned moved; /* WALK_REMOVE: subtrees moved up this pass */
  bool too_deep, too_many;
  int errnum; /* first system error */
};

static uint64_t inode_bytes(const struct stat *st) {
  uint64_t alloc = (uint64_t)st->st_blocks * 512;
  if (S_ISREG(st->st_mode) && (uint64_t)st->st_size > alloc) return (uint64_t)st->st_size;
  return alloc;
}

static int cmp_inode(const void *a, const void *b) {
  const struct inode_use *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return 0;
}

static int walk_dir(int dfd, int depth, struct walk *w);

/* One entry of the directory `dfd`. */
static int walk_entry(int dfd, const char *name, int depth, struct walk *w) {
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return 0; /* gone meanwhile (a command still running) */
    w->errnum = errno;
    return -1;
  }
  if (++w->entries > SANDBOX_MAX_ENTRIES && w->op == WALK_USAGE) {
    w->too_many = true;
    return -1;
  }
  if (w->op == WALK_USAGE) {
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      if (w->nlinks == w->caplinks) {
        size_t nc = w->caplinks ? w->caplinks * 2 : 64;
        struct inode_use *p = realloc(w->links, nc * sizeof *p);
        if (!p) {
          w->errnum = ENOMEM;
          return -1;
        }
        w->links = p;
        w->caplinks = nc;
      }
      w->links[w->nlinks++] = (struct inode_use){st.st_dev, st.st_ino, inode_bytes(&st)};
    } else {
      w->bytes += inode_bytes(&st);
    }
  }
  if (S_ISDIR(st.st_mode)) {
    if (depth + 1 > SANDBOX_MAX_DEPTH) {
      if (w->op == WALK_REMOVE) {
        /* Too deep to follow with one fd per level: move the subtree to the top and let the
         * next pass take it from there. */
        char tmp[64];
        snprintf(tmp, sizeof tmp, ".sandbox-deep-%u-%" PRIu64, w->moved, w->entries);
        if (renameat(dfd, name, w->top_fd, tmp) < 0) {
          w->errnum = errno;
          return -1;
        }
        w->moved++;
        return 0;
      }
      if (w->op == WALK_USAGE) {
        w->too_deep = true;
        return -1;
      }
      /* WALK_CHOWN: deeper levels stay as they are. */
    } else {
      int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        /* removed or replaced by a file or a link meanwhile (a command still running) */
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return 0;
        w->errnum = errno;
        return -1;
      }
      if (walk_dir(sub, depth + 1, w) < 0) return -1;
    }
  }
  if (w->op == WALK_CHOWN && (st.st_uid != w->uid || st.st_gid != w->uid)) {
    if (fchownat(dfd, name, w->uid, w->uid, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT) {
      w->errnum = errno;
      return -1;
    }
  }
  if (w->op == WALK_REMOVE) {
    if (unlinkat(dfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT) {
      w->errnum = errno;
      return -1;
    }
  }
  return 0;
}

/* Walk the directory open as `dfd` (consumed). */
static int walk_dir(int dfd, int depth, struct walk *w) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    w->errnum = errno;
    close(dfd);
    return -1;
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno) {
        w->errnum = errno;
        rc = -1;
      }
      break;
    }
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (walk_entry(dirfd(d), de->d_name, depth, w) < 0) {
      rc = -1;
      break;
    }
  }
  closedir(d);
  return rc;
}

/* Walk the tree at directory fd `root` (an O_PATH or ordinary fd, kept open). */
static int walk_tree(int root, struct walk *w) {
  int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    w->errnum = errno;
    return -1;
  }
  return walk_dir(fd, 0, w);
}

/* Bytes used by the trees at `fds` (n of them, -1 entries skipped); -1 with *why set when a tree
 * is nested too deep or holds too many entries (over the limit, whatever its size), -2 with *why
 * set on a system error. */
int64_t sandbox_tree_usage(const int *fds, int n, const char **why) {
  struct walk w = {.op = WALK_USAGE};
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++)
    if (fds[i] >= 0) rc = walk_tree(fds[i], &w);
  if (rc == 0 && w.nlinks) {
    qsort(w.links, w.nlinks, sizeof *w.links, cmp_inode);
    for (size_t i = 0; i < w.nlinks; i++)
      if (i == 0 || cmp_inode(&w.links[i], &w.links[i - 1]) != 0) w.bytes += w.links[i].bytes;
  }
  free(w.links);
  if (rc == 0) return (int64_t)w.bytes;
  if (w.too_deep || w.too_many) {
    *why = w.too_deep ? "directories nested deeper than 64 levels"
                      : "more than 1,000,000 files and directories";
    return -1;
  }
  *why = strerror(w.errnum);
  return -2;
}

/* Remove the directory `path` and everything below it, never following links. */
int sandbox_tree_remove(const char *path, struct err *e) {
  int top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (top < 0) {
    if (errno == ENOENT) return 0;
    err_set(e, 500, "SANDBOX_CLEANUP_FAILED", "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  struct walk w = {.op = WALK_REMOVE, .top_fd = top};
  int rc = 0;
  do {
    w.moved = 0;
    rc = walk_tree(top, &w);
  } while (rc == 0 && w.moved > 0);
  close(top);
  free(w.links); /* only WALK_USAGE fills it; for the analyzer */
  if (rc == 0 && rmdir(path) < 0 && errno != ENOENT) {
    w.errnum = errno;
    rc = -1;
  }
  if (rc < 0) {
    err_set(e, 500, "SANDBOX_CLEANUP_FAILED", "cannot remove %s: %s", path, strerror(w.errnum));
    return -1;
  }
  return 0;
}

int sandbox_tree_chown(int root, unsigned uid) {
  struct walk w = {.op = WALK_CHOWN, .uid = uid};
  int rc = walk_tree(root, &w);
  free(w.links); /* only WALK_USAGE fills it; for the analyzer */
  if (rc < 0 || fchownat(root, "", uid, uid, AT_EMPTY_PATH) < 0) {
    if (w.errnum) errno = w.errnum;
    return -1;
  }
  return 0;
}

/* ---- local paths ---------------------------------------------------------- */

char *sandbox_tmpdir(const char *workdir) {
  char *real = realpath(workdir, NULL);
  char *t = util_strdup_printf("%s.tmp", real ? real : workdir);
  free(real);
  return t;
}

/* Create `dir` (mode 0700) if it is absent; it must be a directory, not a link. */
int sandbox_ensure_dir(const char *dir, struct err *e) {
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  struct stat st;
  if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "%s is not a directory", dir);
    return -1;
  }
  return 0;
}

int sandbox_open_local(const char *workdir, const char *path, int flags, unsigned mode,
                       struct err *e) {
  CLEANUP_FREE char *work = realpath(workdir, NULL);
  if (!work) {
    err_set(e, 500, "LOCAL_FILE_ERROR", "work directory %s: %s", workdir, strerror(errno));
    return -1;
  }
  CLEANUP_FREE char *tmp = NULL;
  const char *root = work, *rel = path;
  if (path[0] == '/') {
    if (sandbox_path_under(path, work)) {
      rel = path + strlen(work);
    } else if (sandbox_path_under(path, "/tmp")) {
      tmp = sandbox_tmpdir(work);
      if (!tmp) {
        err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
        return -1;
      }
      if (sandbox_ensure_dir(tmp, e) < 0) return -1;
      root = tmp;
      rel = path + 4;
    } else {
      err_set(e, 400, "SANDBOX_PATH_OUTSIDE",
              "local path %s is outside the work directory and /tmp, the only local places a "
              "plan script can use",
              path);
      return -1;
    }
    while (*rel == '/')
      rel++;
  }
  if (!*rel) rel = ".";
  int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) {
    err_set(e, 500, "LOCAL_FILE_ERROR", "%s: %s", root, strerror(errno));
    return -1;
  }
  struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                         .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                         .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
  int fd;
  do
    fd = (int)syscall(SYS_openat2, rfd, rel, &how, sizeof how);
  while (fd < 0 && errno == EAGAIN);
  int saved = errno;
  close(rfd);
  if (fd < 0) {
    if (saved == EXDEV)
      err_set(e, 400, "SANDBOX_PATH_OUTSIDE",
              "local path %s leads outside the work directory and /tmp (through .. or a "
              "symbolic link)",
              path);
    else
      err_set(e, 400, "LOCAL_FILE_ERROR", "local path %s: %s", path, strerror(saved));
    return -1;
  }
  return fd;
}

int sandbox_cleanup(const char *workdir, struct err *e) {
  CLEANUP_FREE char *tmp = sandbox_tmpdir(workdir);
  if (!tmp) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  return sandbox_tree_remove(tmp, e);
}
