/* overlay.c — a throwaway writable view of a read-only volume: writes and
 * discards are kept in memory, cluster by cluster, and never reach the base.
 * Build-plan validation runs a plan on one (over a golden volume or an OS
 * volume's snapshot) and throws it away afterwards.
 *
 * The map is an open-addressing hash table (linear probing, never shrinks,
 * no deletions) keyed by cluster index: an entry holds the cluster's 4 KiB
 * (it was written) or no buffer (it was discarded: reads as zeros). A
 * cluster that has no entry reads from the base. A partial write into a
 * cluster without an entry first copies the cluster from the base.
 *
 * Memory is bounded: cluster buffers and the table itself are counted
 * against a cap; a write or discard that would pass it fails whole (nothing
 * of it is applied) with 507 VOL_OVERLAY_FULL, and is counted
 * (vol_overlay_refused). One rwlock: reads share it, writes and discards take
 * it exclusively (they are the rare side while a plan runs). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "vol/vol_int.h"

#define CS VOL_OS_CLUSTER_SIZE
#define CSHIFT VOL_OS_CLUSTER_SHIFT
#define TABLE_MIN 1024u   /* initial slots (a power of two) */
#define STATUS_SCAN 4096u /* clusters block_status looks at per call */

struct ov_slot {
  uint64_t key;        /* cluster index + 1; 0 = empty slot */
  unsigned char *data; /* the cluster's bytes, or NULL: discarded (zeros) */
};

struct overlay {
  struct vol v;
  struct vol *base;
  pthread_rwlock_t lock;
  struct ov_slot *tab;
  size_t cap; /* slots, a power of two */
  size_t used;
  uint64_t data_clusters; /* slots with a buffer */
  uint64_t max;           /* bytes of buffers + table allowed */
  uint64_t refused;       /* atomic */
};

static const struct vol_ops overlay_ops;

static uint64_t hash_key(uint64_t k) { /* splitmix64 finalizer */
  k ^= k >> 30;
  k *= 0xbf58476d1ce4e5b9ull;
  k ^= k >> 27;
  k *= 0x94d049bb133111ebull;
  return k ^ (k >> 31);
}

static struct ov_slot *find(const struct overlay *o, uint64_t c) {
  uint64_t key = c + 1;
  for (size_t i = hash_key(key) & (o->cap - 1);; i = (i + 1) & (o->cap - 1)) {
    if (o->tab[i].key == key) return &o->tab[i];
    if (o->tab[i].key == 0) return NULL;
  }
}

static uint64_t memory_of(size_t cap, uint64_t data_clusters) {
  return (uint64_t)cap * sizeof(struct ov_slot) + data_clusters * CS;
}

/* Insert cluster c (absent) with `data` (may be NULL); the table has room. */
static struct ov_slot *insert(struct overlay *o, uint64_t c, unsigned char *data) {
  uint64_t key = c + 1;
  size_t i = hash_key(key) & (o->cap - 1);
  while (o->tab[i].key != 0)
    i = (i + 1) & (o->cap - 1);
  o->tab[i].key = key;
  o->tab[i].data = data;
  o->used++;
  if (data) o->data_clusters++;
  return &o->tab[i];
}

/* Make room for `more` new slots (load factor at most 1/2). */
static int reserve_slots(struct overlay *o, size_t more, struct err *e) {
  size_t cap = o->cap;
  while ((o->used + more) * 2 > cap)
    cap *= 2;
  if (cap == o->cap) return 0;
  struct ov_slot *tab = calloc(cap, sizeof *tab);
  if (!tab) {
    err_set(e, 500, "OUT_OF_MEMORY", "overlay: out of memory");
    return -1;
  }
  struct ov_slot *old = o->tab;
  size_t old_cap = o->cap;
  o->tab = tab;
  o->cap = cap;
  o->used = 0;
  o->data_clusters = 0;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].key) insert(o, old[i].key - 1, old[i].data);
  free(old);
  return 0;
}

static int full(struct overlay *o, struct err *e) {
  __atomic_add_fetch(&o->refused, 1, __ATOMIC_RELAXED);
  err_set(e, 507, "VOL_OVERLAY_FULL",
          "the throwaway overlay holds %llu MiB, its limit: the writes it keeps in memory may "
          "not pass %llu MiB",
          (unsigned long long)(memory_of(o->cap, o->data_clusters) >> 20),
          (unsigned long long)(o->max >> 20));
  err_action(e, "Write less (or validate the plan on a real OS volume).");
  return -1;
}

/* Would `new_slots` more slots and `new_data` more buffers pass the cap? */
static int over_cap(const struct overlay *o, size_t new_slots, uint64_t new_data) {
  size_t cap = o->cap;
  while ((o->used + new_slots) * 2 > cap)
    cap *= 2;
  return memory_of(cap, o->data_clusters + new_data) > o->max;
}

/* Bytes of cluster c inside the volume (the last one may be short). */
static size_t cluster_len(const struct overlay *o, uint64_t c) {
  uint64_t start = c << CSHIFT;
  return o->v.size - start < CS ? (size_t)(o->v.size - start) : CS;
}

/* ---- reads ----------------------------------------------------------------- */
static int overlay_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct overlay *o = (struct overlay *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  char *p = buf;
  pthread_rwlock_rdlock(&o->lock);
  int rc = 0;
  uint64_t pos = off, end = off + len;
  while (pos < end && rc == 0) {
    uint64_t c = pos >> CSHIFT;
    const struct ov_slot *s = find(o, c);
    if (s) {
      uint64_t stop = (c + 1) << CSHIFT;
      size_t n = (size_t)((stop < end ? stop : end) - pos);
      if (s->data)
        memcpy(p, s->data + (pos & (CS - 1)), n);
      else
        memset(p, 0, n);
      p += n;
      pos += n;
      continue;
    }
    /* a run of clusters the overlay does not hold: one read of the base */
    uint64_t stop = (c + 1) << CSHIFT;
    while (stop < end && !find(o, stop >> CSHIFT))
      stop += CS;
    if (stop > end) stop = end;
    size_t n = (size_t)(stop - pos);
    rc = vol_pread(o->base, p, n, pos, e);
    p += n;
    pos += n;
  }
  pthread_rwlock_unlock(&o->lock);
  return rc;
}

/* ---- writes ----------------------------------------------------------------- */
/* The clusters of [off, off+len) that have no buffer yet: *slots of them have
 * no entry at all. Counted before anything changes, so a refused write
 * changes nothing. */
static uint64_t count_new(const struct overlay *o, uint64_t off, uint64_t len, int want_data,
                          size_t *slots) {
  uint64_t need = 0;
  *slots = 0;
  for (uint64_t c = off >> CSHIFT, last = (off + len - 1) >> CSHIFT; c <= last; c++) {
    const struct ov_slot *s = find(o, c);
    if (!s) (*slots)++;
    if (want_data && (!s || !s->data)) need++;
  }
  return need;
}

/* A buffer for cluster c holding its current content (base, or zeros). */
static unsigned char *cluster_fill(struct overlay *o, uint64_t c, const struct ov_slot *s,
                                   struct err *e) {
  unsigned char *d = calloc(1, CS);
  if (!d) {
    err_set(e, 500, "OUT_OF_MEMORY", "overlay: out of memory");
    return NULL;
  }
  if (!s && vol_pread(o->base, d, cluster_len(o, c), c << CSHIFT, e) < 0) {
    free(d);
    return NULL;
  }
  return d;
}

/* Write `src` (NULL: zeros) at [off, off+len), every cluster taking a buffer. */
static int put_range(struct overlay *o, const unsigned char *src, uint64_t off, uint64_t len,
                     struct err *e) {
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    uint64_t c = pos >> CSHIFT;
    uint64_t stop = (c + 1) << CSHIFT;
    size_t n = (size_t)((stop < end ? stop : end) - pos);
    struct ov_slot *s = find(o, c);
    if (!s || !s->data) {
      unsigned char *d = cluster_fill(o, c, s, e);
      if (!d) return -1;
      if (s) {
        s->data = d;
        o->data_clusters++;
      } else {
        s = insert(o, c, d);
      }
    }
    if (src)
      memcpy(s->data + (pos & (CS - 1)), src + (pos - off), n);
    else
      memset(s->data + (pos & (CS - 1)), 0, n);
    pos += n;
  }
  return 0;
}

static int overlay_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct overlay *o = (struct overlay *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) return 0;
  pthread_rwlock_wrlock(&o->lock);
  size_t slots;
  uint64_t need = count_new(o, off, len, 1, &slots);
  int rc;
  if (over_cap(o, slots, need))
    rc = full(o, e);
  else
    rc = reserve_slots(o, slots, e) < 0 ? -1 : put_range(o, buf, off, len, e);
  pthread_rwlock_unlock(&o->lock);
  return rc;
}

static int overlay_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct overlay *o = (struct overlay *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) return 0;
  uint64_t end = off + len;
  /* whole clusters become zero entries (their buffers freed); the partial
   * clusters at either edge are written with zeros */
  uint64_t first = (off + CS - 1) >> CSHIFT, stop = end >> CSHIFT;
  if (end == o->v.size) stop = (end + CS - 1) >> CSHIFT; /* a short last cluster is whole */
  pthread_rwlock_wrlock(&o->lock);
  size_t slots = 0, s1 = 0, s2 = 0;
  uint64_t need = 0;
  uint64_t head_end = first < stop ? first << CSHIFT : end;
  if (head_end > off) need += count_new(o, off, head_end - off, 1, &s1);
  uint64_t tail_start = first < stop ? stop << CSHIFT : end;
  if (first < stop && end > tail_start) need += count_new(o, tail_start, end - tail_start, 1, &s2);
  slots = s1 + s2;
  if (first < stop) {
    size_t whole;
    count_new(o, first << CSHIFT, (stop - first) << CSHIFT, 0, &whole);
    slots += whole;
  }
  int rc = 0;
  if (over_cap(o, slots, need))
    rc = full(o, e);
  else if (reserve_slots(o, slots, e) < 0)
    rc = -1;
  if (rc == 0 && head_end > off) rc = put_range(o, NULL, off, head_end - off, e);
  if (rc == 0 && first < stop && end > tail_start)
    rc = put_range(o, NULL, tail_start, end - tail_start, e);
  for (uint64_t c = first; rc == 0 && c < stop; c++) {
    struct ov_slot *s = find(o, c);
    if (!s) {
      insert(o, c, NULL);
    } else if (s->data) {
      free(s->data);
      s->data = NULL;
      o->data_clusters--;
    }
  }
  pthread_rwlock_unlock(&o->lock);
  return rc;
}

static int overlay_flush(struct vol *v, struct err *e) { return 0; }

static uint64_t overlay_allocated(struct vol *v) {
  struct overlay *o = (struct overlay *)v;
  pthread_rwlock_rdlock(&o->lock);
  uint64_t n = o->data_clusters * CS;
  pthread_rwlock_unlock(&o->lock);
  return n;
}

static int overlay_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                                struct err *e) {
  struct overlay *o = (struct overlay *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) {
    *run = 0;
    return VOL_MAPPED;
  }
  uint64_t end = off + len;
  pthread_rwlock_rdlock(&o->lock);
  uint64_t c = off >> CSHIFT;
  const struct ov_slot *s = find(o, c);
  uint64_t stop = (c + 1) << CSHIFT;
  int state;
  if (s) {
    state = s->data ? VOL_MAPPED : VOL_DEALLOCATED;
    for (unsigned i = 0; stop < end && i < STATUS_SCAN; i++, stop += CS) {
      const struct ov_slot *t = find(o, stop >> CSHIFT);
      if (!t || (t->data ? VOL_MAPPED : VOL_DEALLOCATED) != state) break;
    }
  } else {
    for (unsigned i = 0; stop < end && i < STATUS_SCAN && !find(o, stop >> CSHIFT); i++)
      stop += CS;
  }
  pthread_rwlock_unlock(&o->lock);
  if (stop > end) stop = end;
  *run = stop - off;
  if (s) return state;
  if (!o->base->ops->block_status) return VOL_MAPPED;
  uint64_t brun = 0;
  int r = o->base->ops->block_status(o->base, off, *run, &brun, e);
  if (r < 0) return -1;
  if (brun > 0 && brun < *run) *run = brun;
  return r;
}

static void overlay_close(struct vol *v) {
  struct overlay *o = (struct overlay *)v;
  for (size_t i = 0; i < o->cap; i++)
    free(o->tab[i].data);
  free(o->tab);
  pthread_rwlock_destroy(&o->lock);
  free(o);
}

static const struct vol_ops overlay_ops = {
    .pread = overlay_pread,
    .pwrite = overlay_pwrite,
    .flush = overlay_flush,
    .discard = overlay_discard,
    .allocated = overlay_allocated,
    .block_status = overlay_block_status,
    .close = overlay_close,
};

int vol_overlay_open(struct vol *base, uint64_t max_bytes, struct vol **out, struct err *e) {
  *out = NULL;
  if (!base) {
    err_set(e, 400, "VOL_INVALID", "overlay: no base volume");
    return -1;
  }
  struct overlay *o = calloc(1, sizeof *o);
  if (o) o->tab = calloc(TABLE_MIN, sizeof *o->tab);
  if (!o || !o->tab) {
    free(o);
    err_set(e, 500, "OUT_OF_MEMORY", "overlay: out of memory");
    return -1;
  }
  o->v.ops = &overlay_ops;
  o->v.size = vol_size(base);
  o->v.read_only = 0;
  o->base = base;
  o->cap = TABLE_MIN;
  o->max = max_bytes ? max_bytes : VOL_OVERLAY_DEFAULT_MAX;
  pthread_rwlock_init(&o->lock, NULL);
  *out = &o->v;
  return 0;
}

uint64_t vol_overlay_refused(struct vol *v) {
  if (!v || v->ops != &overlay_ops) return 0;
  return __atomic_load_n(&((struct overlay *)v)->refused, __ATOMIC_RELAXED);
}
