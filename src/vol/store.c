/* store.c — the volume directory (vol_store) and golden volumes.
 *
 *   DIR/golden/<id>.raw     a golden volume: sparse raw file, mode 0400
 *   DIR/golden/.<id>.tmp    an import in progress (image.c writes it, then
 *                           vol_golden_commit renames it into place)
 *   DIR/os/<id>/            an OS volume (osvol.c, docs/formats/osvolume.md)
 *   DIR/os/.new-<id>.<pid>.<n>, .del-<id>.<pid>.<n>
 *                           an OS volume being created or deleted by process
 *                           <pid>; removed at vol_store_open once <pid> is gone
 *
 * Which OS volumes are clones of a golden volume is read from their headers
 * (one 4 KiB read per OS volume), so there is no index to keep consistent. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol/vol_int.h"

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

/* mkdir -p */
static int make_dirs(const char *path, struct err *e) {
  char p[4096];
  if (!path[0]) {
    err_set(e, 500, "VOL_IO_ERROR", "the volume directory path is empty");
    return -1;
  }
  if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
    err_set(e, 500, "VOL_IO_ERROR", "volume directory path too long: %.200s...", path);
    return -1;
  }
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s) continue;
    char saved = *s;
    *s = 0;
    if (mkdir(p, 0755) < 0 && errno != EEXIST) return vol_err_io(e, errno, "mkdir %s", p);
    *s = saved;
    if (!saved) break;
  }
  struct stat st;
  if (stat(path, &st) < 0) return vol_err_io(e, errno, "stat %s", path);
  if (!S_ISDIR(st.st_mode)) {
    err_set(e, 500, "VOL_IO_ERROR", "%s is not a directory", path);
    return -1;
  }
  return 0;
}

/* Remove DIR/os/<name> (a directory holding only files) and its files. */
static void remove_flat_dir(const char *os_dir, const char *name) {
  CLEANUP_FREE char *path = util_strdup_printf("%s/%s", os_dir, name);
  if (!path) return;
  DIR *d = opendir(path);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
      if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
  }
  if (rmdir(path) < 0 && errno != ENOENT) log_warn("vol", "rmdir %s: %s", path, strerror(errno));
}

/* Leftovers of creations and deletions interrupted by a crash. */
static void remove_stale(struct vol_store *vs) {
  DIR *d = opendir(vs->os_dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    if (strncmp(n, ".new-", 5) && strncmp(n, ".del-", 5)) continue;
    /* .new-<id>.<pid>.<n>: the pid is between the last two dots. */
    const char *last = strrchr(n, '.');
    if (!last || last == n) continue;
    const char *pid_start = last - 1;
    while (pid_start > n && *pid_start != '.')
      pid_start--;
    long pid = strtol(pid_start + 1, NULL, 10);
    if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
      log_info("vol", "removing interrupted OS volume operation %s/%s", vs->os_dir, n);
      remove_flat_dir(vs->os_dir, n);
    }
  }
  closedir(d);
}

int vol_store_open(struct vol_store **out, const char *dir, struct err *e) {
  *out = NULL;
  struct vol_store *vs = calloc(1, sizeof *vs);
  if (!vs) return oom(e);
  vs->dir = strdup(dir);
  vs->golden_dir = util_strdup_printf("%s/golden", dir);
  vs->os_dir = util_strdup_printf("%s/os", dir);
  pthread_rwlock_init(&vs->lock, NULL);
  if (!vs->dir || !vs->golden_dir || !vs->os_dir) {
    vol_store_close(vs);
    return oom(e);
  }
  if (make_dirs(vs->golden_dir, e) < 0 || make_dirs(vs->os_dir, e) < 0) {
    vol_store_close(vs);
    return -1;
  }
  remove_stale(vs);
  *out = vs;
  return 0;
}

void vol_store_close(struct vol_store *vs) {
  if (!vs) return;
  pthread_rwlock_destroy(&vs->lock);
  free(vs->dir);
  free(vs->golden_dir);
  free(vs->os_dir);
  free(vs);
}

const char *vol_store_dir(struct vol_store *vs) { return vs->dir; }

void vol_strings_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

/* ---- golden volumes ------------------------------------------------------ */

char *vol_golden_path(struct vol_store *vs, const char *id) {
  if (!vol_id_valid(id)) return NULL;
  return util_strdup_printf("%s/%s.raw", vs->golden_dir, id);
}

char *vol_golden_tmp_path(struct vol_store *vs, const char *id) {
  if (!vol_id_valid(id)) return NULL;
  return util_strdup_printf("%s/.%s.tmp", vs->golden_dir, id);
}

static int bad_id(struct err *e, const char *kind, const char *id) {
  err_set(e, 400, "VOL_BAD_ID", "%s id \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 -", kind,
          id ? id : "(null)");
  return -1;
}

int vol_golden_commit(struct vol_store *vs, const char *id, struct err *e) {
  if (!vol_id_valid(id)) return bad_id(e, "golden volume", id);
  CLEANUP_FREE char *tmp = vol_golden_tmp_path(vs, id);
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  if (!tmp || !path) return oom(e);
  int fd = open(tmp, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      err_set(e, 404, "VOL_NOT_FOUND", "golden volume %s: no import in progress (%s missing)", id,
              tmp);
      return -1;
    }
    return vol_err_io(e, errno, "open %s", tmp);
  }
  if (fsync(fd) < 0 || fchmod(fd, 0400) < 0) {
    int saved = errno;
    close(fd);
    return vol_err_io(e, saved, "fsync %s", tmp);
  }
  close(fd);
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
    if (errno == EEXIST) {
      err_set(e, 409, "VOL_EXISTS", "golden volume %s already exists", id);
      return -1;
    }
    if (errno != EINVAL && errno != ENOSYS) return vol_err_io(e, errno, "rename %s", tmp);
    /* A file system without RENAME_NOREPLACE: link(2) refuses to replace. */
    if (link(tmp, path) < 0) {
      if (errno == EEXIST) {
        err_set(e, 409, "VOL_EXISTS", "golden volume %s already exists", id);
        return -1;
      }
      return vol_err_io(e, errno, "link %s", path);
    }
    unlink(tmp);
  }
  if (vol_fsync_dir(vs->golden_dir) < 0) return vol_err_io(e, errno, "fsync %s", vs->golden_dir);
  return 0;
}

int vol_golden_open(struct vol_store *vs, const char *id, struct vol **out, struct err *e) {
  *out = NULL;
  if (!vol_id_valid(id)) {
    err_set(e, 404, "VOL_NOT_FOUND", "golden volume \"%.80s\" does not exist", id ? id : "");
    return -1;
  }
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  if (!path) return oom(e);
  if (vol_file_open(path, 1, out, e) < 0) {
    if (e && e->status == 404)
      err_set(e, 404, "VOL_NOT_FOUND", "golden volume %s does not exist", id);
    return -1;
  }
  return 0;
}

int vol_golden_exists(struct vol_store *vs, const char *id) {
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char **vol_golden_clones(struct vol_store *vs, const char *id) {
  size_t n = 0, cap = 8;
  char **list = calloc(cap + 1, sizeof *list);
  if (!list) return NULL;
  DIR *d = opendir(vs->os_dir);
  if (!d) return list; /* no OS volumes at all */
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !vol_id_valid(de->d_name)) continue;
    CLEANUP_FREE char *meta = util_strdup_printf("%s/%s/meta", vs->os_dir, de->d_name);
    if (!meta) continue;
    int fd = open(meta, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct vol_os_header h;
    struct err e;
    err_init(&e);
    int r = vol_os_header_read(fd, meta, &h, &e);
    close(fd);
    if (r < 0) {
      log_warn("vol", "skipping OS volume %s: %s", de->d_name, e.message);
      continue;
    }
    if (!id || strcmp(h.golden_id, id)) continue;
    if (n == cap) {
      char **bigger = realloc(list, (cap * 2 + 1) * sizeof *list);
      if (!bigger) break;
      list = bigger;
      cap *= 2;
    }
    list[n] = strdup(de->d_name);
    if (list[n]) n++;
    list[n] = NULL;
  }
  closedir(d);
  qsort(list, n, sizeof *list, cmp_str);
  return list;
}

int vol_golden_delete(struct vol_store *vs, const char *id, struct err *e) {
  if (!vol_id_valid(id)) {
    err_set(e, 404, "VOL_NOT_FOUND", "golden volume \"%.80s\" does not exist", id ? id : "");
    return -1;
  }
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  if (!path) return oom(e);
  pthread_rwlock_wrlock(&vs->lock);
  int rc = -1;
  char **clones = vol_golden_clones(vs, id);
  if (!clones) {
    oom(e);
    goto out;
  }
  if (clones[0]) {
    char list[700];
    size_t used = 0, count = 0, shown = 0;
    list[0] = 0;
    for (char **p = clones; *p; p++, count++) {
      size_t need = strlen(*p) + 2;
      if (used + need + 24 >= sizeof list) continue; /* the message says how many more */
      used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", shown ? ", " : "", *p);
      shown++;
    }
    if (shown < count) snprintf(list + used, sizeof list - used, " and %zu more", count - shown);
    err_set(e, 409, "GOLDEN_VOLUME_IN_USE",
            "golden volume %s still has %zu OS volume%s cloned from it: %s", id, count,
            count == 1 ? "" : "s", list);
    err_action(e, "Delete the OS volumes cloned from this golden image first.");
    goto out;
  }
  if (unlink(path) < 0) {
    if (errno == ENOENT)
      err_set(e, 404, "VOL_NOT_FOUND", "golden volume %s does not exist", id);
    else
      vol_err_io(e, errno, "unlink %s", path);
    goto out;
  }
  if (vol_fsync_dir(vs->golden_dir) < 0) {
    vol_err_io(e, errno, "fsync %s", vs->golden_dir);
    goto out;
  }
  rc = 0;
out:
  vol_strings_free(clones);
  pthread_rwlock_unlock(&vs->lock);
  return rc;
}
