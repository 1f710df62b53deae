/* fs.c — the generic side of the filesystem API: fs_open picks the driver
 * from what fs_probe finds (vfat.c or ext.c), and the conveniences every
 * caller wants over the fs_ops (whole-file read and write, mkdir -p). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fs/fs_int.h"

int fs_open(struct vol *dev, int read_only, struct fs **out, struct err *e) {
  *out = NULL;
  const char *type = fs_probe(dev);
  if (strcmp(type, "vfat") == 0) return fs_vfat_open(dev, read_only, out, e);
  if (strcmp(type, "ext2") == 0 || strcmp(type, "ext3") == 0 || strcmp(type, "ext4") == 0)
    return fs_ext_open(dev, read_only, out, e);
  if (strcmp(type, "unknown") == 0)
    err_set(e, 422, FS_ENOTSUP, "no filesystem was recognised on the device");
  else
    err_set(e, 422, FS_ENOTSUP,
            "filesystem type %s is not supported (Streamer edits vfat and ext2/3/4 itself)", type);
  return -1;
}

void fs_dirents_free(struct fs_dirent *ents, size_t n) {
  if (!ents) return;
  for (size_t i = 0; i < n; i++)
    free(ents[i].name);
  free(ents);
}

int fs_read_file(struct fs *f, const char *path, size_t max, char **data, size_t *len,
                 struct err *e) {
  struct fs_stat st;
  *data = NULL, *len = 0;
  if (f->ops->stat(f, path, &st, e) < 0) return -1;
  if (S_ISDIR(st.mode)) {
    err_set(e, 400, FS_EISDIR, "read: %s: Is a directory", path);
    return -1;
  }
  if (st.size > max) {
    err_set(e, 400, FS_EINVAL, "read: %s: file too large (%llu bytes, at most %zu)", path,
            (unsigned long long)st.size, max);
    return -1;
  }
  if (max > SIZE_MAX / 2) max = SIZE_MAX / 2;
  size_t cap = (st.size < max ? (size_t)st.size : max) + 1, n = 0;
  char *buf = malloc(cap);
  if (!buf) goto nomem;
  for (;;) {
    size_t got = 0;
    if (n == cap - 1) { /* full: at max, or the file grew since stat */
      if (n >= max) {
        char b;
        if (f->ops->read(f, path, &b, 1, n, &got, e) < 0) goto fail;
        if (got == 0) break;
        err_set(e, 400, FS_EINVAL, "read: %s: file too large (more than %zu bytes)", path, max);
        goto fail;
      }
      size_t ncap = cap - 1 > max / 2 ? max + 1 : cap * 2;
      char *nb = realloc(buf, ncap);
      if (!nb) goto nomem;
      buf = nb, cap = ncap;
    }
    if (f->ops->read(f, path, buf + n, cap - 1 - n, n, &got, e) < 0) goto fail;
    if (got == 0) break;
    n += got;
  }
  buf[n] = 0;
  *data = buf, *len = n;
  return 0;
nomem:
  err_set(e, 500, FS_EIO, "read: %s: out of memory", path);
fail:
  free(buf);
  return -1;
}

int fs_write_file(struct fs *f, const char *path, const void *data, size_t len, uint32_t mode,
                  struct err *e) {
  return f->ops->write(f, path, data, len, 0, FS_O_CREAT | FS_O_TRUNC, mode, e);
}

int fs_mkdir_p(struct fs *f, const char *path, uint32_t mode, struct err *e) {
  if (!path || path[0] != '/') {
    err_set(e, 400, FS_EINVAL, "mkdir_p: %s: path must start with a / character",
            path ? path : "(null)");
    return -1;
  }
  size_t n = strlen(path);
  char *p = malloc(n + 1);
  if (!p) {
    err_set(e, 500, FS_EIO, "mkdir_p: out of memory");
    return -1;
  }
  memcpy(p, path, n + 1);
  int rc = 0;
  /* each prefix that ends a component: "/a", "/a/b", ... */
  for (size_t i = 1; i <= n && rc == 0; i++) {
    if (i < n && p[i] != '/') continue;
    if (p[i - 1] == '/') continue; /* repeated or trailing slash */
    char c = p[i];
    p[i] = 0;
    struct fs_stat st;
    struct err se;
    err_init(&se);
    if (f->ops->stat(f, p, &st, &se) == 0) {
      if (!S_ISDIR(st.mode)) {
        err_set(e, 400, FS_ENOTDIR, "mkdir_p: %s: Not a directory", p);
        rc = -1;
      }
    } else if (strcmp(se.code, FS_ENOENT) == 0 && se.status == 404) {
      if (f->ops->mkdir(f, p, mode, e) < 0) {
        /* made by someone else meanwhile: fine if it is a directory now */
        if (strcmp(e->code, FS_EEXIST) == 0 && f->ops->stat(f, p, &st, &se) == 0 &&
            S_ISDIR(st.mode)) {
          err_clear(e);
        } else {
          rc = -1;
        }
      }
    } else {
      *e = se;
      rc = -1;
    }
    p[i] = c;
  }
  free(p);
  return rc;
}
