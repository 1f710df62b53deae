/* snapshot.c — read-only point-in-time snapshots of an open OS volume, by
 * copy-before-write. A snapshot is an unnamed file (O_TMPFILE) in the
 * volume's directory plus an in-memory "saved" bitmap. Before the live volume
 * changes a cluster (write, copy-on-write fill, discard) that an open
 * snapshot has not saved, the cluster's current content is copied into the
 * snapshot's file (all-zero content is left as a hole) and the saved bit set,
 * under the cluster's stripe lock. A snapshot read takes saved clusters from
 * its file and the others from the live volume's current content, holding
 * their stripe locks so no change can slip in between "not saved" and the
 * read. Snapshots live only as long as the process: nothing on disk names
 * them, and the file vanishes when it is closed or the process dies. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol/vol_int.h"

#define CS VOL_OS_CLUSTER_SIZE
#define READ_RUN 256u /* unsaved clusters read under one set of stripe locks */

struct vol_snap {
  struct vol v;
  struct osvol *o; /* holds a reference */
  int fd;
  uint64_t *saved; /* bit per cluster: the snapshot's file holds it */
  struct vol_snap *next;
};

static const struct vol_ops snap_ops;

static inline int snap_saved(const struct vol_snap *s, uint64_t c) {
  return (__atomic_load_n(&s->saved[c >> 6], __ATOMIC_ACQUIRE) >> (c & 63)) & 1;
}

int vol_snap_needs(struct osvol *o, uint64_t c) {
  for (struct vol_snap *s = o->snaps; s; s = s->next)
    if (!snap_saved(s, c)) return 1;
  return 0;
}

int vol_snap_save_cluster(struct osvol *o, uint64_t c, const void *cur, struct err *e) {
  unsigned char buf[CS];
  if (!cur) {
    if (osvol_read_cluster(o, c, buf, e) < 0) return -1;
    cur = buf;
  }
  uint64_t start = c * CS;
  size_t len = o->v.size - start < CS ? (size_t)(o->v.size - start) : CS;
  int zero = vol_is_zero(cur, len);
  for (struct vol_snap *s = o->snaps; s; s = s->next) {
    if (snap_saved(s, c)) continue;
    if (!zero && vol_write_full(s->fd, cur, len, start) < 0)
      return vol_err_io(e, errno, "OS volume %s: save cluster %llu to a snapshot", o->hdr.id,
                        (unsigned long long)c);
    __atomic_fetch_or(&s->saved[c >> 6], 1ull << (c & 63), __ATOMIC_RELEASE);
  }
  return 0;
}

static int snap_read_file(struct vol_snap *s, void *buf, size_t len, uint64_t off, struct err *e) {
  if (vol_read_full(s->fd, buf, len, off) < 0)
    return vol_err_io(e, errno, "read snapshot of OS volume %s", s->o->hdr.id);
  return 0;
}

/* [pos, end) split into runs of the same saved state, read each from the
 * snapshot's file or the live volume. Caller holds the stripes of any
 * unsaved cluster in the range. */
static int snap_read_runs(struct vol_snap *s, char *p, uint64_t pos, uint64_t end, struct err *e) {
  while (pos < end) {
    uint64_t c = pos / CS;
    int saved = snap_saved(s, c);
    uint64_t run_end = (c + 1) * CS;
    while (run_end < end && snap_saved(s, run_end / CS) == saved)
      run_end += CS;
    if (run_end > end) run_end = end;
    size_t n = (size_t)(run_end - pos);
    int r = saved ? snap_read_file(s, p, n, pos, e) : osvol_read_live(s->o, p, n, pos, e);
    if (r < 0) return -1;
    p += n;
    pos = run_end;
  }
  return 0;
}

static int snap_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct vol_snap *s = (struct vol_snap *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  char *p = buf;
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    uint64_t c = pos / CS;
    uint64_t run_end = (c + 1) * CS;
    if (snap_saved(s, c)) {
      /* Saved clusters never change again: no lock. */
      while (run_end < end && snap_saved(s, run_end / CS))
        run_end += CS;
      if (run_end > end) run_end = end;
      if (snap_read_file(s, p, (size_t)(run_end - pos), pos, e) < 0) return -1;
    } else {
      uint64_t n = 1;
      while (n < READ_RUN && run_end < end && !snap_saved(s, run_end / CS)) {
        run_end += CS;
        n++;
      }
      if (run_end > end) run_end = end;
      osvol_lock_stripes(s->o, c, n);
      int r = snap_read_runs(s, p, pos, run_end, e);
      osvol_unlock_stripes(s->o, c, n);
      if (r < 0) return -1;
    }
    p += run_end - pos;
    pos = run_end;
  }
  return 0;
}

static int snap_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  return vol_check_writable(v, "write to a snapshot", e);
}

static int snap_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  return vol_check_writable(v, "discard in a snapshot", e);
}

static int snap_flush(struct vol *v, struct err *e) { return 0; }

static uint64_t snap_allocated(struct vol *v) {
  struct vol_snap *s = (struct vol_snap *)v;
  struct stat st;
  return fstat(s->fd, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}

/* Saved clusters: the snapshot file's holes. Unsaved ones: the live
 * volume's answer, asked with their stripes held, when it is still the
 * snapshot's content (a change saves the cluster first, under its stripe). */
#define STATUS_RUN 8192u /* unsaved clusters asked about under one set of stripe locks */
static int snap_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                             struct err *e) {
  struct vol_snap *s = (struct vol_snap *)v;
  if (!len) len = 1;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  uint64_t end = off + len, c = off / CS, run_end = (c + 1) * CS;
  if (snap_saved(s, c)) {
    while (run_end < end && snap_saved(s, run_end / CS))
      run_end += CS;
    if (run_end > end) run_end = end;
    return vol_fd_block_status(s->fd, off, run_end - off, run);
  }
  uint64_t n = 1;
  while (n < STATUS_RUN && run_end < end) {
    run_end += CS;
    n++;
  }
  osvol_lock_stripes(s->o, c, n);
  /* Unsaved from c on (saves may have happened before the locks). */
  uint64_t stop = (c + 1) * CS;
  int saved_now = snap_saved(s, c);
  while (!saved_now && stop < run_end && !snap_saved(s, stop / CS))
    stop += CS;
  int rc;
  if (saved_now) {
    rc = VOL_MAPPED; /* saved meanwhile: ask again, without the locks */
    *run = 0;
  } else {
    if (stop > end) stop = end;
    rc = s->o->v.ops->block_status(&s->o->v, off, stop - off, run, e);
  }
  osvol_unlock_stripes(s->o, c, n);
  if (saved_now) return snap_block_status(v, off, len, run, e);
  return rc;
}

static void snap_close(struct vol *v) {
  struct vol_snap *s = (struct vol_snap *)v;
  struct osvol *o = s->o;
  pthread_rwlock_wrlock(&o->snap_lock);
  for (struct vol_snap **pp = &o->snaps; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      o->nsnaps--;
      break;
    }
  pthread_rwlock_unlock(&o->snap_lock);
  close(s->fd);
  free(s->saved);
  free(s);
  osvol_unref(o);
}

static const struct vol_ops snap_ops = {
    .pread = snap_pread,
    .pwrite = snap_pwrite,
    .flush = snap_flush,
    .discard = snap_discard,
    .allocated = snap_allocated,
    .close = snap_close,
    .block_status = snap_block_status,
};

/* An unnamed file in dir: O_TMPFILE, else a named file unlinked at once. */
static int open_unnamed(const char *dir) {
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  CLEANUP_FREE char *tmpl = util_strdup_printf("%s/.snapshot-XXXXXX", dir);
  if (!tmpl) {
    errno = ENOMEM;
    return -1;
  }
  fd = mkostemp(tmpl, O_CLOEXEC);
  if (fd >= 0) unlink(tmpl);
  return fd;
}

int vol_os_snapshot(struct vol *os, struct vol **snap, struct err *e) {
  *snap = NULL;
  if (!osvol_is(os)) {
    err_set(e, 400, "VOL_NOT_OS_VOLUME", "only an open OS volume can be snapshotted");
    return -1;
  }
  struct osvol *o = (struct osvol *)os;
  struct vol_snap *s = calloc(1, sizeof *s);
  if (s) s->saved = calloc(o->bitmap_words ? o->bitmap_words : 1, sizeof *s->saved);
  if (!s || !s->saved) {
    if (s) free(s);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  s->fd = open_unnamed(o->dir);
  if (s->fd < 0 || ftruncate(s->fd, (off_t)os->size) < 0) {
    int saved = errno;
    if (s->fd >= 0) close(s->fd);
    free(s->saved);
    free(s);
    return vol_err_io(e, saved, "snapshot of OS volume %s: create its file in %s", o->hdr.id,
                      o->dir);
  }
  s->v.ops = &snap_ops;
  s->v.size = os->size;
  s->v.read_only = 1;
  s->o = o;
  pthread_mutex_lock(&o->ref_lock);
  o->refs++;
  pthread_mutex_unlock(&o->ref_lock);
  /* Exclusive: no write is in progress, so the snapshot is the volume's
   * content between two writes. */
  pthread_rwlock_wrlock(&o->snap_lock);
  s->next = o->snaps;
  o->snaps = s;
  o->nsnaps++;
  pthread_rwlock_unlock(&o->snap_lock);
  *snap = &s->v;
  return 0;
}
