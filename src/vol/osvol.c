/* osvol.c — OS volumes: copy-on-write clones of a golden volume (or empty
 * volumes), created in O(1), with reads falling through to the golden volume
 * wherever the clone has not written. The on-disk format, the flush order and
 * the crash story are in docs/formats/osvolume.md; in short:
 *
 *   DIR/os/<id>/data   sparse file of the volume's size; the clone's clusters
 *                      live at their own offsets
 *   DIR/os/<id>/meta   4 KiB header + allocation bitmap (1 bit per 4 KiB
 *                      cluster: set = the clone owns the cluster)
 *
 * Bits only go 0 -> 1 (a discard punches a hole and keeps or sets the bit),
 * and flush makes the data durable (fdatasync data) BEFORE it writes the
 * bitmap pages that point at it (then fdatasync meta). So a set bit on disk
 * always has durable data under it, and after a crash at any instant the
 * volume opens as it is, without recovery.
 *
 * Concurrency. Reads take no lock: a cluster's bit is read atomically and the
 * bytes come from the data file (owned) or the golden volume (which never
 * changes). A write to an owned cluster is a plain pwrite. The first write to
 * a cluster (and every write to a cluster an open snapshot has not saved
 * yet) holds the cluster's stripe lock, fills the rest of the cluster from
 * the golden volume when the write is partial, and sets the bit after the
 * data is written. Writes and discards hold snap_lock shared; snapshot.c
 * takes it exclusive to add or remove a snapshot.
 *
 * Preallocation. A first write into a 1 MiB chunk of the data file where the
 * clone owns no cluster yet first reserves the whole chunk with fallocate
 * (unwritten extents: they read as zeros and change no byte), so the next
 * first writes there only convert extents instead of allocating 4 KiB
 * blocks one by one (about 1.5x faster on ext4). The bitmap alone tells
 * whether a chunk is untouched, so there is no state to keep or recover. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol/vol_int.h"

#define CS VOL_OS_CLUSTER_SIZE
#define BATCH_CLUSTERS 64        /* first writes of whole clusters per pwrite */
#define DISCARD_CHUNK (1u << 16) /* clusters per discard step (256 MiB) */
#define BITS_PER_PAGE (VOL_OS_BITMAP_PAGE * 8u)

static const struct vol_ops osvol_ops;

void (*vol_io_hook)(enum vol_io_kind kind, enum vol_io_file file, const void *buf, uint64_t len,
                    uint64_t off);
uint32_t vol_os_prealloc_clusters = VOL_OS_PREALLOC_DEFAULT;

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

int osvol_is(const struct vol *v) { return v && v->ops == &osvol_ops; }

/* Bytes of cluster c that lie inside the volume (the last may be short). */
static inline uint64_t cluster_len(const struct osvol *o, uint64_t c) {
  uint64_t start = c * CS;
  return o->v.size - start < CS ? o->v.size - start : CS;
}

/* ---- the bitmap ---------------------------------------------------------- */

/* The marks that tell flush what to do. Sequentially consistent, with the
 * bit set before the mark and the mark cleared before the bits are read, so
 * that either the flush that clears a mark sees the bit, or the writer sees
 * the cleared mark and sets it again for the next flush. */
static void mark_dirty(struct osvol *o, uint64_t c) {
  uint64_t page = c / BITS_PER_PAGE;
  if (!__atomic_load_n(&o->dirty[page], __ATOMIC_SEQ_CST))
    __atomic_store_n(&o->dirty[page], 1, __ATOMIC_SEQ_CST);
  if (!__atomic_load_n(&o->any_dirty, __ATOMIC_SEQ_CST))
    __atomic_store_n(&o->any_dirty, 1, __ATOMIC_SEQ_CST);
}

/* Set the bits of clusters [c, c+n) (caller holds their stripe locks). Call
 * only after their data is written. */
static void set_owned(struct osvol *o, uint64_t c, uint64_t n) {
  uint64_t end = c + n;
  while (c < end) {
    uint64_t w = c >> 6, bit = c & 63;
    uint64_t k = 64 - bit < end - c ? 64 - bit : end - c;
    uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;
    if ((__atomic_load_n(&o->bitmap[w], __ATOMIC_ACQUIRE) & mask) != mask) {
      __atomic_fetch_or(&o->bitmap[w], mask, __ATOMIC_SEQ_CST);
      mark_dirty(o, c);
    }
    c += k;
  }
}

static void mark_unflushed(struct osvol *o) {
  if (!__atomic_load_n(&o->unflushed, __ATOMIC_SEQ_CST))
    __atomic_store_n(&o->unflushed, 1, __ATOMIC_SEQ_CST);
}

void osvol_lock_stripes(struct osvol *o, uint64_t c, uint64_t n) {
  if (n >= VOL_OS_STRIPES) {
    for (unsigned i = 0; i < VOL_OS_STRIPES; i++)
      pthread_mutex_lock(&o->stripes[i]);
    return;
  }
  unsigned s0 = (unsigned)(c & (VOL_OS_STRIPES - 1));
  if (s0 + n <= VOL_OS_STRIPES) {
    for (unsigned i = 0; i < n; i++)
      pthread_mutex_lock(&o->stripes[s0 + i]);
  } else {
    unsigned wrapped = (unsigned)(s0 + n - VOL_OS_STRIPES);
    for (unsigned i = 0; i < wrapped; i++)
      pthread_mutex_lock(&o->stripes[i]);
    for (unsigned i = s0; i < VOL_OS_STRIPES; i++)
      pthread_mutex_lock(&o->stripes[i]);
  }
}

void osvol_unlock_stripes(struct osvol *o, uint64_t c, uint64_t n) {
  if (n >= VOL_OS_STRIPES) {
    for (unsigned i = 0; i < VOL_OS_STRIPES; i++)
      pthread_mutex_unlock(&o->stripes[i]);
    return;
  }
  for (uint64_t i = 0; i < n; i++)
    pthread_mutex_unlock(osvol_stripe(o, c + i));
}

/* ---- reading ------------------------------------------------------------- */

/* Bytes [off, off+len) as the golden volume has them (zeros past its end). */
static int read_golden(struct osvol *o, void *buf, size_t len, uint64_t off, struct err *e) {
  size_t from_golden = 0;
  if (o->golden && off < o->golden_size)
    from_golden = o->golden_size - off < len ? (size_t)(o->golden_size - off) : len;
  if (from_golden && vol_pread(o->golden, buf, from_golden, off, e) < 0) return -1;
  memset((char *)buf + from_golden, 0, len - from_golden);
  return 0;
}

static int read_data(struct osvol *o, void *buf, size_t len, uint64_t off, struct err *e) {
  if (vol_read_full(o->data_fd, buf, len, off) < 0)
    return vol_err_io(e, errno, "read %s at offset %llu", o->data_path, (unsigned long long)off);
  return 0;
}

int osvol_read_live(struct osvol *o, void *buf, size_t len, uint64_t off, struct err *e) {
  char *p = buf;
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    uint64_t c = pos / CS;
    int owned = osvol_owns(o, c);
    uint64_t run_end = (c + 1) * CS;
    while (run_end < end && osvol_owns(o, run_end / CS) == owned)
      run_end += CS;
    if (run_end > end) run_end = end;
    size_t n = (size_t)(run_end - pos);
    if ((owned ? read_data(o, p, n, pos, e) : read_golden(o, p, n, pos, e)) < 0) return -1;
    p += n;
    pos = run_end;
  }
  return 0;
}

int osvol_read_cluster(struct osvol *o, uint64_t c, void *buf, struct err *e) {
  size_t n = (size_t)cluster_len(o, c);
  if (n < CS) memset((char *)buf + n, 0, CS - n);
  return osvol_owns(o, c) ? read_data(o, buf, n, c * CS, e) : read_golden(o, buf, n, c * CS, e);
}

static int osvol_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  if (vol_check_range(v, off, len, e) < 0) return -1;
  return osvol_read_live((struct osvol *)v, buf, len, off, e);
}

/* Mapped or deallocated at off: clusters the clone owns ask its data file
 * (discard punches holes there), the others the golden volume (zeros past
 * its end are deallocated). */
static int osvol_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                              struct err *e) {
  struct osvol *o = (struct osvol *)v;
  if (!len) len = 1;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  uint64_t c = off / CS;
  int owned = osvol_owns(o, c);
  uint64_t end = (c + 1) * CS;
  while (end < off + len && osvol_owns(o, end / CS) == owned)
    end += CS;
  if (end > off + len) end = off + len;
  uint64_t n = end - off;
  if (owned) return vol_fd_block_status(o->data_fd, off, n, run);
  if (o->golden && off < o->golden_size) {
    if (n > o->golden_size - off) n = o->golden_size - off;
    if (o->golden->ops->block_status)
      return o->golden->ops->block_status(o->golden, off, n, run, e);
    *run = n;
    return VOL_MAPPED;
  }
  *run = n;
  return VOL_DEALLOCATED;
}

/* ---- writing ------------------------------------------------------------- */

static int write_data(struct osvol *o, const void *buf, size_t len, uint64_t off, struct err *e) {
  if (vol_write_full(o->data_fd, buf, len, off) < 0)
    return vol_err_io(e, errno, "write %s at offset %llu", o->data_path, (unsigned long long)off);
  if (vol_io_hook) vol_io_hook(VOL_IO_WRITE, VOL_IO_DATA, buf, len, off);
  return 0;
}

/* ---- preallocation ------------------------------------------------------ */

/* Does the clone own no cluster of preallocation chunk k? */
static int chunk_untouched(struct osvol *o, uint64_t k, uint64_t words) {
  uint64_t w = k * words, end = w + words < o->bitmap_words ? w + words : o->bitmap_words;
  for (; w < end; w++)
    if (__atomic_load_n(&o->bitmap[w], __ATOMIC_ACQUIRE)) return 0;
  return 1;
}

/* Before the first write of clusters [c, c+n), part of a write of bytes
 * [wstart, wend): reserve each chunk they fall in that the clone has not
 * touched, unless the write covers the whole chunk anyway. Best effort: the
 * reservation changes no byte of the volume (the bitmap decides what is
 * read), so a failure only costs speed; the write itself reports a full
 * disk. Two threads may reserve one chunk at once: harmless. */
static void prealloc(struct osvol *o, uint64_t c, uint64_t n, uint64_t wstart, uint64_t wend) {
  uint64_t words = __atomic_load_n(&o->prealloc_words, __ATOMIC_RELAXED);
  if (!words) return;
  uint64_t chunk = words * 64 * CS;
  for (uint64_t k = c * CS / chunk; k <= ((c + n) * CS - 1) / chunk; k++) {
    uint64_t start = k * chunk, end = start + chunk < o->v.size ? start + chunk : o->v.size;
    if ((wstart <= start && wend >= end) || !chunk_untouched(o, k, words)) continue;
    if (fallocate(o->data_fd, FALLOC_FL_KEEP_SIZE, (off_t)start, (off_t)(end - start)) == 0) {
      if (vol_io_hook) vol_io_hook(VOL_IO_PREALLOC, VOL_IO_DATA, NULL, end - start, start);
    } else if (errno == EOPNOTSUPP || errno == ENOSYS) {
      __atomic_store_n(&o->prealloc_words, 0, __ATOMIC_RELAXED); /* e.g. no fallocate */
      return;
    }
  }
}

/* Can cluster c be written in place without any lock? */
static inline int direct_ok(struct osvol *o, uint64_t c) {
  return osvol_owns(o, c) && (o->nsnaps == 0 || !vol_snap_needs(o, c));
}

/* Write the part [pos, end) of cluster c (end <= the cluster's end) holding
 * its stripe lock: save it for snapshots, fill from the golden volume on a
 * partial first write, then set its bit. */
static int write_one_cluster(struct osvol *o, uint64_t c, const char *src, uint64_t pos,
                             uint64_t end, struct err *e) {
  unsigned char cur[CS];
  uint64_t cstart = c * CS, clen = cluster_len(o, c);
  int full = pos == cstart && end == cstart + clen;
  int rc = -1;
  pthread_mutex_t *m = osvol_stripe(o, c);
  pthread_mutex_lock(m);
  int owned = osvol_owns(o, c);
  int need_snap = o->nsnaps > 0 && vol_snap_needs(o, c);
  int have_cur = 0;
  if (need_snap || (!owned && !full)) {
    if (osvol_read_cluster(o, c, cur, e) < 0) goto out;
    have_cur = 1;
  }
  if (need_snap && vol_snap_save_cluster(o, c, have_cur ? cur : NULL, e) < 0) goto out;
  if (owned || full) {
    if (write_data(o, src, (size_t)(end - pos), pos, e) < 0) goto out;
  } else {
    memcpy(cur + (pos - cstart), src, (size_t)(end - pos));
    if (write_data(o, cur, (size_t)clen, cstart, e) < 0) goto out;
  }
  if (!owned) set_owned(o, c, 1);
  rc = 0;
out:
  pthread_mutex_unlock(m);
  return rc;
}

/* The body of a write; the caller holds snap_lock shared. may_prealloc:
 * first writes may reserve their chunk (not for the zeros of a discard). */
static int write_locked(struct osvol *o, const char *p, size_t len, uint64_t off, int may_prealloc,
                        struct err *e) {
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    uint64_t c = pos / CS, cstart = c * CS;
    uint64_t cend = cstart + cluster_len(o, c);
    uint64_t chunk_end = cend < end ? cend : end;
    if (direct_ok(o, c)) {
      /* A run of owned clusters no snapshot needs: one pwrite. */
      uint64_t run_end = chunk_end;
      while (run_end < end && direct_ok(o, run_end / CS))
        run_end = run_end + CS < end ? run_end + CS : end;
      if (write_data(o, p, (size_t)(run_end - pos), pos, e) < 0) return -1;
      p += run_end - pos;
      pos = run_end;
      continue;
    }
    if (o->nsnaps == 0 && pos == cstart && chunk_end == cend && cend - cstart == CS) {
      /* First writes of whole clusters: no fill needed; batch them. */
      uint64_t n = 1;
      while (n < BATCH_CLUSTERS && cstart + (n + 1) * CS <= end &&
             cstart + (n + 1) * CS <= o->v.size && !osvol_owns(o, c + n))
        n++;
      if (may_prealloc) prealloc(o, c, n, off, end);
      osvol_lock_stripes(o, c, n);
      int r = write_data(o, p, (size_t)(n * CS), cstart, e);
      if (r == 0) set_owned(o, c, n);
      osvol_unlock_stripes(o, c, n);
      if (r < 0) return -1;
      p += n * CS;
      pos = cstart + n * CS;
      continue;
    }
    if (may_prealloc && !osvol_owns(o, c)) prealloc(o, c, 1, off, end);
    if (write_one_cluster(o, c, p, pos, chunk_end, e) < 0) return -1;
    p += chunk_end - pos;
    pos = chunk_end;
  }
  return 0;
}

static int osvol_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct osvol *o = (struct osvol *)v;
  if (vol_check_writable(v, "write", e) < 0 || vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) return 0;
  pthread_rwlock_rdlock(&o->snap_lock);
  int r = write_locked(o, buf, len, off, 1, e);
  pthread_rwlock_unlock(&o->snap_lock);
  mark_unflushed(o);
  return r;
}

/* ---- discard ------------------------------------------------------------- */

static int punch(struct osvol *o, uint64_t off, uint64_t len, struct err *e) {
  if (fallocate(o->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
      0) {
    if (vol_io_hook) vol_io_hook(VOL_IO_PUNCH, VOL_IO_DATA, NULL, len, off);
    return 0;
  }
  if (errno != EOPNOTSUPP && errno != ENOSYS)
    return vol_err_io(e, errno, "punch hole in %s at offset %llu", o->data_path,
                      (unsigned long long)off);
  static const char zeros[65536];
  while (len > 0) {
    size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
    if (write_data(o, zeros, n, off, e) < 0) return -1;
    off += n;
    len -= n;
  }
  return 0;
}

/* Discard whole clusters [c, c+n). A cluster reads zeros afterwards: its
 * data is punched out (even when unowned: a crash may have left unflushed
 * bytes there) and its bit set, unless it already reads zeros unowned
 * (past the golden volume's end). Caller holds snap_lock shared. */
/* Copy clusters [c, c+n) that an open snapshot still needs into the
 * snapshots, reading them in runs of up to 1 MiB. Caller holds their stripes. */
static int save_for_snapshots(struct osvol *o, uint64_t c, uint64_t n, struct err *e) {
  enum { RUN = 256 };
  unsigned char *buf = malloc((size_t)RUN * CS);
  if (!buf) return oom(e);
  int r = 0;
  for (uint64_t i = 0; r == 0 && i < n;) {
    if (!vol_snap_needs(o, c + i)) {
      i++;
      continue;
    }
    uint64_t m = 1;
    while (m < RUN && i + m < n && vol_snap_needs(o, c + i + m))
      m++;
    uint64_t off = (c + i) * CS, end = (c + i + m) * CS < o->v.size ? (c + i + m) * CS : o->v.size;
    memset(buf, 0, (size_t)m * CS);
    r = osvol_read_live(o, buf, (size_t)(end - off), off, e);
    for (uint64_t j = 0; r == 0 && j < m; j++)
      r = vol_snap_save_cluster(o, c + i + j, buf + j * CS, e);
    i += m;
  }
  free(buf);
  return r;
}

static int discard_clusters(struct osvol *o, uint64_t c, uint64_t n, struct err *e) {
  /* Smaller steps while snapshots are open (each cluster may be copied
   * first, with every stripe held): 32 MiB, a few ms of stall for writers. */
  uint64_t step = o->nsnaps > 0 ? DISCARD_CHUNK / 8 : DISCARD_CHUNK;
  uint64_t golden_clusters = (o->golden_size + CS - 1) / CS;
  while (n > 0) {
    uint64_t k = n < step ? n : step;
    uint64_t end = (c + k) * CS < o->v.size ? (c + k) * CS : o->v.size;
    int r = 0;
    osvol_lock_stripes(o, c, k);
    if (o->nsnaps > 0) r = save_for_snapshots(o, c, k, e);
    if (r == 0) r = punch(o, c * CS, end - c * CS, e);
    if (r == 0 && c < golden_clusters)
      set_owned(o, c, c + k < golden_clusters ? k : golden_clusters - c);
    osvol_unlock_stripes(o, c, k);
    if (r < 0) return -1;
    c += k;
    n -= k;
  }
  return 0;
}

static int osvol_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  static const char zeros[CS];
  struct osvol *o = (struct osvol *)v;
  if (vol_check_writable(v, "discard", e) < 0 || vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) return 0;
  uint64_t end = off + len;
  /* Whole clusters [c0, c1); the partial ends are written as zeros. */
  uint64_t c0 = (off + CS - 1) / CS;
  uint64_t c1 = end == v->size ? (end + CS - 1) / CS : end / CS;
  int r = 0;
  pthread_rwlock_rdlock(&o->snap_lock);
  if (c0 >= c1) { /* no whole cluster: at most the ends of two */
    uint64_t mid = off / CS * CS + CS < end ? off / CS * CS + CS : end;
    r = write_locked(o, zeros, (size_t)(mid - off), off, 0, e);
    if (r == 0 && mid < end) r = write_locked(o, zeros, (size_t)(end - mid), mid, 0, e);
  } else {
    if (off < c0 * CS) r = write_locked(o, zeros, (size_t)(c0 * CS - off), off, 0, e);
    if (r == 0) r = discard_clusters(o, c0, c1 - c0, e);
    if (r == 0 && c1 * CS < end) r = write_locked(o, zeros, (size_t)(end - c1 * CS), c1 * CS, 0, e);
  }
  pthread_rwlock_unlock(&o->snap_lock);
  mark_unflushed(o);
  return r;
}

/* ---- flush --------------------------------------------------------------- */

/* The order that makes the volume crash-consistent: (1) capture the dirty
 * bitmap pages (every bit in them was set after its data write returned),
 * (2) fdatasync the data file, (3) write the captured pages in place,
 * (4) fdatasync meta. One flush at a time, so an older capture never
 * overwrites a newer one on disk. */
static int osvol_flush(struct vol *v, struct err *e) {
  struct osvol *o = (struct osvol *)v;
  if (v->read_only) return 0;
  pthread_mutex_lock(&o->flush_lock);
  int rc = -1;
  unsigned char *pages = NULL;
  uint64_t *index = NULL, npages = 0;
  if (!__atomic_exchange_n(&o->unflushed, 0, __ATOMIC_SEQ_CST)) {
    pthread_mutex_unlock(&o->flush_lock);
    return 0;
  }
  if (__atomic_exchange_n(&o->any_dirty, 0, __ATOMIC_SEQ_CST)) {
    uint64_t cap = 0;
    for (uint64_t i = 0; i < o->dirty_pages; i++) {
      if (!__atomic_load_n(&o->dirty[i], __ATOMIC_SEQ_CST)) continue;
      if (npages == cap) { /* grow before taking the mark: no page is dropped */
        cap = cap ? cap * 2 : 16;
        unsigned char *np = realloc(pages, cap * VOL_OS_BITMAP_PAGE);
        if (np) pages = np;
        uint64_t *ni = np ? realloc(index, cap * sizeof *index) : NULL;
        if (ni) index = ni;
        if (!np || !ni) {
          oom(e);
          goto fail;
        }
      }
      if (!__atomic_exchange_n(&o->dirty[i], 0, __ATOMIC_SEQ_CST)) continue;
      unsigned char *dst = pages + npages * VOL_OS_BITMAP_PAGE;
      const uint64_t *words = o->bitmap + i * (VOL_OS_BITMAP_PAGE / 8);
      for (unsigned w = 0; w < VOL_OS_BITMAP_PAGE / 8; w++) {
        uint64_t x = __atomic_load_n(&words[w], __ATOMIC_SEQ_CST);
        for (int b = 0; b < 8; b++)
          dst[w * 8 + b] = (unsigned char)(x >> (8 * b)); /* little-endian on disk */
      }
      index[npages++] = i;
    }
  }
  if (vol_io_hook) vol_io_hook(VOL_IO_SYNC_START, VOL_IO_DATA, NULL, 0, 0);
  if (fdatasync(o->data_fd) < 0) {
    vol_err_io(e, errno, "fdatasync %s", o->data_path);
    goto fail;
  }
  if (vol_io_hook) vol_io_hook(VOL_IO_SYNC, VOL_IO_DATA, NULL, 0, 0);
  if (npages) {
    for (uint64_t i = 0; i < npages;) {
      uint64_t j = i + 1; /* coalesce consecutive pages into one pwrite */
      while (j < npages && index[j] == index[j - 1] + 1)
        j++;
      if (vol_write_full(o->meta_fd, pages + i * VOL_OS_BITMAP_PAGE,
                         (size_t)((j - i) * VOL_OS_BITMAP_PAGE),
                         o->hdr.bitmap_off + index[i] * VOL_OS_BITMAP_PAGE) < 0) {
        vol_err_io(e, errno, "write bitmap of %s", o->meta_path);
        goto fail;
      }
      if (vol_io_hook)
        vol_io_hook(VOL_IO_WRITE, VOL_IO_META, pages + i * VOL_OS_BITMAP_PAGE,
                    (j - i) * VOL_OS_BITMAP_PAGE,
                    o->hdr.bitmap_off + index[i] * VOL_OS_BITMAP_PAGE);
      i = j;
    }
    if (vol_io_hook) vol_io_hook(VOL_IO_SYNC_START, VOL_IO_META, NULL, 0, 0);
    if (fdatasync(o->meta_fd) < 0) {
      vol_err_io(e, errno, "fdatasync %s", o->meta_path);
      goto fail;
    }
    if (vol_io_hook) vol_io_hook(VOL_IO_SYNC, VOL_IO_META, NULL, 0, 0);
  }
  rc = 0;
  goto out;
fail:
  /* Nothing is known durable: the next flush redoes all of it. */
  for (uint64_t i = 0; i < npages; i++)
    __atomic_store_n(&o->dirty[index[i]], 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&o->any_dirty, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&o->unflushed, 1, __ATOMIC_SEQ_CST);
out:
  free(pages);
  free(index);
  pthread_mutex_unlock(&o->flush_lock);
  return rc;
}

/* ---- allocated, close ---------------------------------------------------- */

static uint64_t osvol_allocated(struct vol *v) {
  struct osvol *o = (struct osvol *)v;
  struct stat a, b;
  uint64_t n = 0;
  if (fstat(o->data_fd, &a) == 0) n += (uint64_t)a.st_blocks * 512u;
  if (fstat(o->meta_fd, &b) == 0) n += (uint64_t)b.st_blocks * 512u;
  return n;
}

static void osvol_free(struct osvol *o) {
  if (o->data_fd >= 0) close(o->data_fd);
  if (o->meta_fd >= 0) close(o->meta_fd); /* releases the flock */
  vol_close(o->golden);
  for (unsigned i = 0; i < VOL_OS_STRIPES; i++)
    pthread_mutex_destroy(&o->stripes[i]);
  pthread_mutex_destroy(&o->flush_lock);
  pthread_mutex_destroy(&o->ref_lock);
  pthread_rwlock_destroy(&o->snap_lock);
  free(o->bitmap);
  free(o->dirty);
  free(o->dir);
  free(o->data_path);
  free(o->meta_path);
  free(o);
}

void osvol_unref(struct osvol *o) {
  pthread_mutex_lock(&o->ref_lock);
  int last = --o->refs == 0;
  pthread_mutex_unlock(&o->ref_lock);
  if (last) osvol_free(o);
}

static void osvol_close(struct vol *v) {
  struct osvol *o = (struct osvol *)v;
  struct err e;
  err_init(&e);
  if (!v->read_only && osvol_flush(v, &e) < 0)
    log_error("vol", "closing OS volume %s: flush failed: %s", o->hdr.id, e.message);
  osvol_unref(o);
}

static const struct vol_ops osvol_ops = {
    .pread = osvol_pread,
    .block_status = osvol_block_status,
    .pwrite = osvol_pwrite,
    .flush = osvol_flush,
    .discard = osvol_discard,
    .allocated = osvol_allocated,
    .close = osvol_close,
};

/* ---- create, open, delete ------------------------------------------------ */

static int bad_id(struct err *e, const char *id) {
  err_set(e, 400, "VOL_BAD_ID", "OS volume id \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 -",
          id ? id : "(null)");
  return -1;
}

static int not_found(struct err *e, const char *id) {
  err_set(e, 404, "VOL_NOT_FOUND", "OS volume %.80s does not exist", id ? id : "(null)");
  return -1;
}

static unsigned long tmp_counter;

/* Make the files of a new volume in dir `tmp` (already created). */
static int create_files(const char *tmp, const struct vol_os_header *h, struct err *e) {
  unsigned char hdr[VOL_OS_HEADER_SIZE];
  vol_os_header_encode(h, hdr);
  CLEANUP_FREE char *meta = util_strdup_printf("%s/meta", tmp);
  CLEANUP_FREE char *data = util_strdup_printf("%s/data", tmp);
  if (!meta || !data) return oom(e);
  int mfd = open(meta, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (mfd < 0) return vol_err_io(e, errno, "create %s", meta);
  int dfd = open(data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (dfd < 0) {
    int saved = errno;
    close(mfd);
    return vol_err_io(e, saved, "create %s", data);
  }
  int rc = -1;
  /* The bitmap is sparse: ftruncate, never written until a flush sets bits. */
  if (vol_write_full(mfd, hdr, sizeof hdr, 0) < 0 ||
      ftruncate(mfd, (off_t)(h->bitmap_off + h->bitmap_len)) < 0) {
    vol_err_io(e, errno, "write %s", meta);
    goto out;
  }
  if (ftruncate(dfd, (off_t)h->size) < 0) {
    vol_err_io(e, errno, "size %s to %llu bytes", data, (unsigned long long)h->size);
    goto out;
  }
  if (fsync(mfd) < 0 || fsync(dfd) < 0 || vol_fsync_dir(tmp) < 0) {
    vol_err_io(e, errno, "fsync %s", tmp);
    goto out;
  }
  rc = 0;
out:
  close(mfd);
  close(dfd);
  return rc;
}

static void remove_volume_dir(const char *dir) {
  CLEANUP_FREE char *meta = util_strdup_printf("%s/meta", dir);
  CLEANUP_FREE char *data = util_strdup_printf("%s/data", dir);
  if (meta) unlink(meta);
  if (data) unlink(data);
  rmdir(dir);
}

int vol_os_create(struct vol_store *vs, const char *id, const char *golden_id, uint64_t size,
                  struct err *e) {
  if (!vol_id_valid(id)) return bad_id(e, id);
  if (golden_id && !vol_id_valid(golden_id)) {
    err_set(e, 404, "VOL_NOT_FOUND", "golden volume \"%.80s\" does not exist", golden_id);
    return -1;
  }
  pthread_rwlock_rdlock(&vs->lock); /* the golden volume is not deleted meanwhile */
  int rc = -1;
  CLEANUP_FREE char *final = util_strdup_printf("%s/%s", vs->os_dir, id);
  CLEANUP_FREE char *tmp =
      util_strdup_printf("%s/.new-%s.%d.%lu", vs->os_dir, id, (int)getpid(),
                         __atomic_add_fetch(&tmp_counter, 1, __ATOMIC_RELAXED));
  CLEANUP_FREE char *gpath = golden_id ? vol_golden_path(vs, golden_id) : NULL;
  uint64_t golden_size = 0;
  struct stat st;
  if (!final || !tmp || (golden_id && !gpath)) {
    oom(e);
    goto out;
  }
  if (golden_id) {
    if (stat(gpath, &st) < 0 || !S_ISREG(st.st_mode)) {
      err_set(e, 404, "VOL_NOT_FOUND", "golden volume %s does not exist", golden_id);
      goto out;
    }
    golden_size = (uint64_t)st.st_size;
    if (size == 0) size = golden_size;
    if (size < golden_size) {
      err_set(e, 400, "VOL_BAD_SIZE",
              "OS volume %s: %llu bytes is smaller than its golden volume %s (%llu bytes)", id,
              (unsigned long long)size, golden_id, (unsigned long long)golden_size);
      goto out;
    }
  }
  if (size == 0 || size > (1ull << 56)) {
    err_set(e, 400, "VOL_BAD_SIZE", "OS volume %s: size %llu is not between 1 byte and 64 PiB", id,
            (unsigned long long)size);
    goto out;
  }
  if (lstat(final, &st) == 0) {
    err_set(e, 409, "VOL_EXISTS", "OS volume %s already exists", id);
    goto out;
  }
  struct vol_os_header h;
  vol_os_header_init(&h, id, golden_id, size, golden_size);
  if (mkdir(tmp, 0700) < 0) {
    vol_err_io(e, errno, "mkdir %s", tmp);
    goto out;
  }
  if (create_files(tmp, &h, e) < 0) {
    remove_volume_dir(tmp);
    goto out;
  }
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) < 0) {
    if (errno == EEXIST || errno == ENOTEMPTY)
      err_set(e, 409, "VOL_EXISTS", "OS volume %s already exists", id);
    else
      vol_err_io(e, errno, "rename %s to %s", tmp, final);
    remove_volume_dir(tmp);
    goto out;
  }
  if (vol_fsync_dir(vs->os_dir) < 0) {
    vol_err_io(e, errno, "fsync %s", vs->os_dir);
    goto out;
  }
  rc = 0;
out:
  pthread_rwlock_unlock(&vs->lock);
  return rc;
}

int vol_os_exists(struct vol_store *vs, const char *id) {
  if (!vol_id_valid(id)) return 0;
  CLEANUP_FREE char *meta = util_strdup_printf("%s/%s/meta", vs->os_dir, id);
  struct stat st;
  return meta && stat(meta, &st) == 0 && S_ISREG(st.st_mode);
}

/* Open meta and take the volume's lock; 404 / 409 VOL_IN_USE. */
static int open_locked_meta(const char *meta, const char *id, struct err *e) {
  int fd = open(meta, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found(e, id);
    return vol_err_io(e, errno, "open %s", meta);
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int saved = errno;
    close(fd);
    if (saved == EWOULDBLOCK) {
      err_set(e, 409, "VOL_IN_USE", "OS volume %s is open (by this or another process)", id);
      return -1;
    }
    return vol_err_io(e, saved, "lock %s", meta);
  }
  return fd;
}

static int load_bitmap(struct osvol *o, struct err *e) {
  o->clusters = (o->v.size + CS - 1) / CS;
  o->bitmap_words = o->hdr.bitmap_len / 8;
  o->dirty_pages = o->hdr.bitmap_len / VOL_OS_BITMAP_PAGE;
  o->bitmap = calloc(o->bitmap_words, sizeof *o->bitmap);
  o->dirty = calloc(o->dirty_pages, 1);
  if (!o->bitmap || !o->dirty) return oom(e);
  /* The bitmap is little-endian 64-bit words on disk, mostly holes: read only
   * its data extents straight into the words (SEEK_DATA/SEEK_HOLE), so
   * opening a large clone costs what it has written, not its size. */
  unsigned char *words = (unsigned char *)o->bitmap;
  const uint64_t base = o->hdr.bitmap_off, len = o->hdr.bitmap_len;
  uint64_t pos = 0;
  while (pos < len) {
    off_t d = lseek(o->meta_fd, (off_t)(base + pos), SEEK_DATA);
    if (d < 0 && errno == ENXIO) break;               /* only holes from here on */
    uint64_t from = d < 0 ? pos : (uint64_t)d - base; /* no SEEK_DATA: read all */
    if (d >= 0 && (uint64_t)d >= base + len) break;
    off_t h = d < 0 ? -1 : lseek(o->meta_fd, d, SEEK_HOLE);
    uint64_t to = h < 0 || (uint64_t)h >= base + len ? len : (uint64_t)h - base;
    from = from / 8 * 8;
    to = (to + 7) / 8 * 8 > len ? len : (to + 7) / 8 * 8;
    if (to > from && vol_read_full(o->meta_fd, words + from, to - from, base + from) < 0)
      return vol_err_io(e, errno, "read bitmap of %s", o->meta_path);
    pos = to > pos ? to : pos + 8;
  }
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  for (uint64_t w = 0; w < o->bitmap_words; w++)
    o->bitmap[w] = le64toh(o->bitmap[w]);
#endif
  /* Bits past the last cluster mean nothing; clear them so no loop trips. */
  for (uint64_t c = o->clusters; c < o->bitmap_words * 64 && (c & 63); c++)
    o->bitmap[c >> 6] &= ~(1ull << (c & 63));
  for (uint64_t w = (o->clusters + 63) / 64; w < o->bitmap_words; w++)
    o->bitmap[w] = 0;
  return 0;
}

int vol_os_open(struct vol_store *vs, const char *id, struct vol **out, struct err *e) {
  *out = NULL;
  if (!vol_id_valid(id)) return not_found(e, id);
  struct osvol *o = calloc(1, sizeof *o);
  if (!o) return oom(e);
  o->data_fd = o->meta_fd = -1;
  o->refs = 1;
  for (unsigned i = 0; i < VOL_OS_STRIPES; i++)
    pthread_mutex_init(&o->stripes[i], NULL);
  pthread_mutex_init(&o->flush_lock, NULL);
  pthread_mutex_init(&o->ref_lock, NULL);
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* A snapshot request must not starve behind a steady stream of writes. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&o->snap_lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  o->dir = util_strdup_printf("%s/%s", vs->os_dir, id);
  o->data_path = util_strdup_printf("%s/%s/data", vs->os_dir, id);
  o->meta_path = util_strdup_printf("%s/%s/meta", vs->os_dir, id);
  if (!o->dir || !o->data_path || !o->meta_path) {
    oom(e);
    goto fail;
  }
  o->meta_fd = open_locked_meta(o->meta_path, id, e);
  if (o->meta_fd < 0) goto fail;
  if (vol_os_header_read(o->meta_fd, o->meta_path, &o->hdr, e) < 0) goto fail;
  if (strcmp(o->hdr.id, id)) {
    err_set(e, 500, "VOL_CORRUPT", "OS volume metadata %s: names volume %s, not %s", o->meta_path,
            o->hdr.id, id);
    goto fail;
  }
  struct stat st;
  if (fstat(o->meta_fd, &st) < 0) {
    vol_err_io(e, errno, "stat %s", o->meta_path);
    goto fail;
  }
  if ((uint64_t)st.st_size < o->hdr.bitmap_off + o->hdr.bitmap_len) {
    err_set(e, 500, "VOL_CORRUPT", "OS volume metadata %s: shorter than its bitmap", o->meta_path);
    goto fail;
  }
  o->data_fd = open(o->data_path, O_RDWR | O_CLOEXEC);
  if (o->data_fd < 0) {
    if (errno == ENOENT)
      err_set(e, 500, "VOL_CORRUPT", "OS volume %s: data file %s is missing", id, o->data_path);
    else
      vol_err_io(e, errno, "open %s", o->data_path);
    goto fail;
  }
  if (fstat(o->data_fd, &st) < 0) {
    vol_err_io(e, errno, "stat %s", o->data_path);
    goto fail;
  }
  if ((uint64_t)st.st_size != o->hdr.size) {
    err_set(e, 500, "VOL_CORRUPT", "OS volume %s: data file is %llu bytes, the header says %llu",
            id, (unsigned long long)st.st_size, (unsigned long long)o->hdr.size);
    goto fail;
  }
  o->v.ops = &osvol_ops;
  o->v.size = o->hdr.size;
  o->v.read_only = 0;
  if (o->hdr.golden_id[0]) {
    struct err ge;
    err_init(&ge);
    if (vol_golden_open(vs, o->hdr.golden_id, &o->golden, &ge) < 0) {
      err_set(e, 500, ge.status == 404 ? "VOL_CORRUPT" : ge.code,
              "OS volume %s: its golden volume %s: %s", id, o->hdr.golden_id, ge.message);
      goto fail;
    }
    o->golden_size = vol_size(o->golden);
    if (o->golden_size != o->hdr.golden_size) {
      err_set(e, 500, "VOL_CORRUPT",
              "OS volume %s: golden volume %s is %llu bytes, it was %llu when cloned", id,
              o->hdr.golden_id, (unsigned long long)o->golden_size,
              (unsigned long long)o->hdr.golden_size);
      goto fail;
    }
  }
  if (load_bitmap(o, e) < 0) goto fail;
  o->prealloc_words = vol_os_prealloc_clusters / 64;
  *out = &o->v;
  return 0;
fail:
  osvol_free(o);
  return -1;
}

int vol_os_delete(struct vol_store *vs, const char *id, struct err *e) {
  if (!vol_id_valid(id)) return not_found(e, id);
  CLEANUP_FREE char *dir = util_strdup_printf("%s/%s", vs->os_dir, id);
  CLEANUP_FREE char *meta = util_strdup_printf("%s/%s/meta", vs->os_dir, id);
  CLEANUP_FREE char *gone =
      util_strdup_printf("%s/.del-%s.%d.%lu", vs->os_dir, id, (int)getpid(),
                         __atomic_add_fetch(&tmp_counter, 1, __ATOMIC_RELAXED));
  if (!dir || !meta || !gone) return oom(e);
  int fd = open_locked_meta(meta, id, e);
  if (fd < 0) return -1;
  /* Rename first so the volume disappears at once, even if a crash
   * interrupts the unlinks (vol_store_open finishes them). */
  if (rename(dir, gone) < 0) {
    int saved = errno;
    close(fd);
    return vol_err_io(e, saved, "rename %s", dir);
  }
  int r = vol_fsync_dir(vs->os_dir);
  int saved = errno;
  remove_volume_dir(gone);
  close(fd);
  if (r < 0) return vol_err_io(e, saved, "fsync %s", vs->os_dir);
  return 0;
}
