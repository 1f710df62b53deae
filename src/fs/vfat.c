/* vfat.c — FAT12, FAT16 and FAT32 with long file names (VFAT), read and
 * written in-process over a struct vol (the partition): the EFI system
 * partitions, ESXi bootbanks and Windows ISDEPLOY partitions that plan
 * scripts edit. Implements fs_vfat_open and every op of struct fs_ops.
 *
 * Model. The active FAT is read into memory at open, in its on-disk
 * encoding, with one byte per cluster counting the FAT entries that point
 * at it (its in-degree): a chain that merges into another or loops back on
 * itself shows up there without any walk. Directories are read once and
 * kept (raw entries + parsed names with a hash index). File data goes to
 * the volume at once; FAT and directory changes stay in memory until sync,
 * which writes them in a crash-safe order (vfat_sync_locked). Every
 * operation is a small transaction over the in-memory state: on any error
 * its undo log restores the FAT and the directories, so a failed call
 * leaves nothing half-made, and chains are freed only when it succeeds.
 *
 * Damage. A bad BPB refuses the open; a chain that points out of range, at
 * a free or bad cluster, into the middle of another chain or at another
 * file's first cluster, a directory entry whose first cluster is already
 * owned by another entry (a cross-link, or a directory loop), a file larger
 * than its chain: all give FS_CORRUPT for the file concerned, never a crash
 * or an endless walk, and nothing is written.
 *
 * See src/fs/README.md ("vfat") for the decisions (modes, times, case,
 * chmod/chown, crash ordering). */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "fs/fs.h"

#define ATTR_RO 0x01
#define ATTR_VOLID 0x08
#define ATTR_DIR 0x10
#define ATTR_ARCH 0x20
#define ATTR_LFN 0x0F
#define NT_LOWER_BASE 0x08   /* byte 12 of an 8.3 entry: base shown in lower case */
#define NT_LOWER_EXT 0x10    /* extension shown in lower case */
#define DIR_MAX_SLOTS 65536u /* 2 MiB of 32-byte entries: the FAT limit */
#define LFN_MAX 255          /* UTF-16 units in a long name */
#define DIR_BUCKETS 1024
#define FAT_TIME_MIN 315532800LL  /* 1980-01-01 00:00:00 */
#define FAT_TIME_MAX 4354819198LL /* 2107-12-31 23:59:58 */
#define FILE_MAX 0xFFFFFFFFull

/* ---- little helpers ----------------------------------------------------- */

static inline uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void put16(uint8_t *p, uint32_t x) {
  p[0] = (uint8_t)x;
  p[1] = (uint8_t)(x >> 8);
}
static inline void put32(uint8_t *p, uint32_t x) {
  put16(p, x);
  put16(p + 2, x >> 16);
}
static inline int bit_get(const uint8_t *b, uint32_t i) { return b[i >> 3] >> (i & 7) & 1; }
static inline void bit_set(uint8_t *b, uint32_t i) { b[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static inline void bit_clr(uint8_t *b, uint32_t i) { b[i >> 3] &= (uint8_t) ~(1u << (i & 7)); }
static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static const uint8_t zeros[65536];

/* ---- structures ----------------------------------------------------------- */

enum { VENT_DEAD = 1, VENT_OWNER = 2, VENT_XLINK = 4 };

struct vent {     /* one name in a directory */
  char *name;     /* UTF-8 (long name, else the 8.3 name with its case flags) */
  uint32_t slot;  /* index of its 8.3 entry */
  uint32_t nlfn;  /* long-name entries just before it */
  uint32_t start; /* first cluster (cached from the 8.3 entry) */
  uint32_t lhv, shv;
  int32_t lnext, snext; /* hash chains: folded name, 8.3 name */
  uint8_t flags;
};

struct vdir {
  struct vdir *next; /* cache hash chain */
  uint32_t first;    /* first cluster; 0 for the FAT12/16 root */
  int fixed;         /* the FAT12/16 root: fixed size, not in clusters */
  uint32_t *chain;
  size_t nchain, cap_chain;
  uint8_t *raw; /* nslots * 32 bytes */
  uint32_t nslots;
  size_t cap_slots;
  uint8_t *dirty; /* per sector of raw */
  int any_dirty;
  uint32_t end;       /* first 0x00 slot (nslots if none) */
  uint32_t free_hint; /* no free slot before this one */
  struct vent *ents;
  size_t nents, cap_ents;
  uint32_t nlive;
  int32_t *lh, *sh;
  uint32_t hsize;
  int parsed, stale;
};

enum { U_FAT, U_SLOT, U_GROW, U_NEWDIR };
struct undo {
  int kind;
  struct vdir *d;
  uint32_t a, b;
  uint8_t old[32];
};

struct frame {
  struct vdir *d; /* a directory on the path */
  int32_t idx;    /* its entry in the frame below (-1: the root) */
};
struct walk {
  struct frame *f;
  size_t n, cap;
};

struct vfat {
  struct fs base; /* first: struct fs * <-> struct vfat * */
  struct vol *dev;
  pthread_mutex_t lock;
  /* geometry, from the BPB */
  int bits;     /* 12, 16 or 32 */
  uint32_t bps; /* bytes per sector */
  uint32_t cs;  /* bytes per cluster */
  uint32_t nfats, active_fat, fat_secs;
  int mirror; /* every FAT copy is written (not FAT32 with mirroring off) */
  uint64_t fat0_off, root_off, data_off;
  uint32_t root_slots, root_cluster;
  uint32_t nclusters, maxc; /* data clusters; highest cluster number */
  uint32_t eoc_min, bad, eoc;
  uint32_t serial;
  /* FSInfo (FAT32) */
  uint32_t fsi_sec;
  int fsi_ok;
  uint32_t fsi_free, fsi_next;
  uint8_t *fsi_buf;
  /* the FAT in memory */
  uint8_t *fat;
  size_t fat_bytes;
  uint8_t *fat_dirty; /* per sector */
  uint32_t fat_nsec;
  int fat_any_dirty, fsi_dirty;
  uint8_t *indeg; /* per cluster: FAT entries pointing at it, saturating at 255 */
  uint8_t *reg;   /* bitmap: the first cluster of a known directory entry */
  uint8_t *pend;  /* bitmap: freed since the last sync */
  uint32_t npend, free_count, next_hint;
  int need_flush, dirs_dirty;
  /* directories */
  struct vdir *root;
  struct vdir *dirs[DIR_BUCKETS];
  /* where the last chain walk stopped */
  uint32_t hint_start, hint_idx, hint_c;
  /* the operation in progress */
  const char *op, *path;
  struct err *e;
  struct undo *undo;
  size_t nundo, cap_undo;
  uint32_t *defer; /* chains to free at commit */
  size_t ndefer, cap_defer;
  struct vdir **drop; /* directories to forget at commit */
  size_t ndrop, cap_drop;
  struct walk w1, w2;
};

/* ---- errors --------------------------------------------------------------- */

enum ekind {
  K_NOENT,
  K_EXIST,
  K_NOTDIR,
  K_ISDIR,
  K_NOTEMPTY,
  K_NOSPC,
  K_INVAL,
  K_ROFS,
  K_PERM,
  K_BUSY,
  K_NAMETOOLONG,
  K_FBIG,
  K_IO,
  K_NOMEM,
  K_CORRUPT,
};
static const struct {
  int status;
  const char *code, *msg;
} kinds[] = {
    [K_NOENT] = {404, FS_ENOENT, "No such file or directory"},
    [K_EXIST] = {400, FS_EEXIST, "File exists"},
    [K_NOTDIR] = {400, FS_ENOTDIR, "Not a directory"},
    [K_ISDIR] = {400, FS_EISDIR, "Is a directory"},
    [K_NOTEMPTY] = {409, FS_ENOTEMPTY, "Directory not empty"},
    [K_NOSPC] = {507, FS_ENOSPC, "No space left on device"},
    [K_INVAL] = {400, FS_EINVAL, "Invalid argument"},
    [K_ROFS] = {400, FS_EROFS, "Read-only file system"},
    [K_PERM] = {422, FS_ENOTSUP, "Operation not permitted"},
    [K_BUSY] = {409, FS_EINVAL, "Device or resource busy"},
    [K_NAMETOOLONG] = {400, FS_EINVAL, "File name too long"},
    [K_FBIG] = {422, FS_ENOTSUP, "File too large"},
    [K_IO] = {500, FS_EIO, "Input/output error"},
    [K_NOMEM] = {500, FS_EIO, "Cannot allocate memory"},
    [K_CORRUPT] = {500, FS_ECORRUPT, "Structure needs cleaning"},
};

/* Set v->e to an error of kind k; fail() is it, valued -1. A macro so that the -1 is visible
 * where it is returned: the static analyzer does not inline variadic functions, and would
 * otherwise follow `return fail(...)` as a success that left outputs unwritten. */
static void fail_report(struct vfat *v, enum ekind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define fail(v, ...)                                                                               \
  ({                                                                                               \
    fail_report((v), __VA_ARGS__);                                                                 \
    -1;                                                                                            \
  })
static void fail_report(struct vfat *v, enum ekind k, const char *fmt, ...) {
  if (!v->e) return;
  char detail[640] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
  }
  const char *op = v->op ? v->op : "vfat", *path = v->path ? v->path : "";
  if (k == K_CORRUPT)
    err_set(v->e, kinds[k].status, kinds[k].code,
            "%s: %s: %s (vfat: %s); the filesystem is damaged: check it with fsck.vfat", op, path,
            kinds[k].msg, detail);
  else if (*detail)
    err_set(v->e, kinds[k].status, kinds[k].code, "%s: %s: %s (%s)", op, path, kinds[k].msg,
            detail);
  else
    err_set(v->e, kinds[k].status, kinds[k].code, "%s: %s: %s", op, path, kinds[k].msg);
}
#define nomem(v) fail(v, K_NOMEM, NULL)

static int grow_array(struct vfat *v, void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 8;
  while (n < need)
    n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q) return nomem(v);
  *p = q;
  *cap = n;
  return 0;
}
#define GROW(v, arr, cap, need) grow_array(v, (void **)&(arr), &(cap), (need), sizeof *(arr))

/* ---- device I/O ------------------------------------------------------------ */

static int dev_read(struct vfat *v, void *buf, size_t len, uint64_t off) {
  struct err ve;
  err_init(&ve);
  if (vol_pread(v->dev, buf, len, off, &ve) == 0) return 0;
  fail(v, K_IO, "reading %zu bytes at offset %llu: %s", len, (unsigned long long)off, ve.message);
  err_clear(&ve);
  return -1;
}

static int dev_write(struct vfat *v, const void *buf, size_t len, uint64_t off) {
  struct err ve;
  err_init(&ve);
  v->need_flush = 1;
  if (vol_pwrite(v->dev, buf, len, off, &ve) == 0) return 0;
  fail(v, K_IO, "writing %zu bytes at offset %llu: %s", len, (unsigned long long)off, ve.message);
  err_clear(&ve);
  return -1;
}

/* Zeros on the device: written, or discarded (reads back as zeros) in the
 * aligned middle of a large range. */
static int dev_zero(struct vfat *v, uint64_t off, uint64_t len) {
  if (len >= (1u << 20)) {
    uint64_t a = (off + 4095) & ~4095ull, b = (off + len) & ~4095ull;
    struct err ve;
    err_init(&ve);
    v->need_flush = 1;
    if (b > a && vol_discard(v->dev, a, b - a, &ve) == 0) {
      if (dev_zero(v, off, a - off) < 0) return -1;
      return dev_zero(v, b, off + len - b);
    }
    err_clear(&ve);
  }
  while (len) {
    size_t n = (size_t)min64(len, sizeof zeros);
    if (dev_write(v, zeros, n, off) < 0) return -1;
    off += n;
    len -= n;
  }
  return 0;
}

static inline uint64_t clus_off(const struct vfat *v, uint32_t c) {
  return v->data_off + (uint64_t)(c - 2) * v->cs;
}

/* ---- the FAT ---------------------------------------------------------------- */

static uint32_t fat_decode(const uint8_t *f, int bits, uint32_t c) {
  if (bits == 12) {
    uint32_t o = c + c / 2, x = (uint32_t)f[o] | (uint32_t)f[o + 1] << 8;
    return c & 1 ? x >> 4 : x & 0xFFF;
  }
  if (bits == 16) return le16(f + 2 * (size_t)c);
  return le32(f + 4 * (size_t)c) & 0x0FFFFFFF;
}

static void fat_encode(uint8_t *f, int bits, uint32_t c, uint32_t val) {
  if (bits == 12) {
    uint32_t o = c + c / 2;
    if (c & 1) {
      f[o] = (uint8_t)((f[o] & 0x0F) | (val << 4 & 0xF0));
      f[o + 1] = (uint8_t)(val >> 4);
    } else {
      f[o] = (uint8_t)val;
      f[o + 1] = (uint8_t)((f[o + 1] & 0xF0) | (val >> 8 & 0x0F));
    }
  } else if (bits == 16) {
    put16(f + 2 * (size_t)c, val);
  } else { /* the top 4 bits are reserved and kept */
    uint8_t *p = f + 4 * (size_t)c;
    put32(p, (le32(p) & 0xF0000000u) | (val & 0x0FFFFFFF));
  }
}

static inline uint32_t fat_get(const struct vfat *v, uint32_t c) {
  return fat_decode(v->fat, v->bits, c);
}
static inline int in_range(const struct vfat *v, uint32_t c) { return c >= 2 && c <= v->maxc; }

static void fat_apply(struct vfat *v, uint32_t c, uint32_t val) {
  uint32_t old = fat_get(v, c);
  if (old == val) return;
  if (in_range(v, old) && v->indeg[old] != 255 && v->indeg[old]) v->indeg[old]--;
  if (in_range(v, val) && v->indeg[val] != 255) v->indeg[val]++;
  if (old == 0) v->free_count--;
  if (val == 0) v->free_count++;
  fat_encode(v->fat, v->bits, c, val);
  size_t o = v->bits == 12 ? c + c / 2 : (size_t)c * (size_t)(v->bits / 8);
  size_t w = v->bits == 32 ? 4 : 2;
  v->fat_dirty[o / v->bps] = 1;
  v->fat_dirty[(o + w - 1) / v->bps] = 1;
  v->fat_any_dirty = v->fsi_dirty = 1;
}

static int undo_reserve(struct vfat *v, size_t n) {
  return GROW(v, v->undo, v->cap_undo, v->nundo + n);
}

static struct undo *undo_push(struct vfat *v, int kind, struct vdir *d, uint32_t a, uint32_t b) {
  struct undo *u = &v->undo[v->nundo++]; /* reserved by the caller */
  u->kind = kind;
  u->d = d;
  u->a = a;
  u->b = b;
  return u;
}

/* FAT[c] = val, undone if the operation fails. */
static int fat_set(struct vfat *v, uint32_t c, uint32_t val) {
  if (undo_reserve(v, 1) < 0) return -1;
  undo_push(v, U_FAT, NULL, c, fat_get(v, c));
  fat_apply(v, c, val);
  return 0;
}

/* The cluster after c in its chain (0 at the end of the chain). Every link
 * is checked, so a walk can neither leave the FAT nor run in circles: a
 * loop has a cluster with two predecessors, or comes back to a first
 * cluster. */
static int fat_next(struct vfat *v, uint32_t c, uint32_t *next) {
  uint32_t x = fat_get(v, c);
  if (x >= v->eoc_min) {
    *next = 0;
    return 0;
  }
  if (x == 0) return fail(v, K_CORRUPT, "cluster %u of a chain is marked free", c);
  if (x == v->bad) return fail(v, K_CORRUPT, "a chain runs into bad cluster %u", c);
  if (!in_range(v, x))
    return fail(v, K_CORRUPT, "cluster %u points to cluster %u, out of range", c, x);
  if (v->indeg[x] > 1)
    return fail(v, K_CORRUPT, "cluster %u is shared by two chains (cross-linked or a loop)", x);
  if (bit_get(v->reg, x))
    return fail(v, K_CORRUPT, "a chain runs into cluster %u, the first cluster of another file", x);
  *next = x;
  return 0;
}

/* Walk a whole chain from c, checking it; *count = its clusters, *last = the last one. */
static int chain_walk(struct vfat *v, uint32_t c, uint32_t *count, uint32_t *last) {
  uint32_t n = 1;
  for (;;) {
    uint32_t nx;
    if (fat_next(v, c, &nx) < 0) return -1;
    if (!nx) break;
    if (++n > v->nclusters) return fail(v, K_CORRUPT, "a chain is longer than the filesystem");
    c = nx;
  }
  if (count) *count = n;
  if (last) *last = c;
  return 0;
}

/* The idx-th cluster (from 0) of the chain starting at start; 0 when the
 * chain is shorter. Resumes from the last walk of the same chain. */
static int chain_seek(struct vfat *v, uint32_t start, uint32_t idx, uint32_t *out) {
  uint32_t c = start, i = 0;
  if (v->hint_start == start && v->hint_idx <= idx) {
    c = v->hint_c;
    i = v->hint_idx;
  }
  while (i < idx) {
    uint32_t nx;
    if (fat_next(v, c, &nx) < 0) return -1;
    if (!nx) {
      *out = 0;
      return 0;
    }
    if (++i > v->nclusters) return fail(v, K_CORRUPT, "a chain is longer than the filesystem");
    c = nx;
  }
  v->hint_start = start;
  v->hint_idx = i;
  v->hint_c = c;
  *out = c;
  return 0;
}

/* A free cluster, preferably `near` or after it and not freed since the
 * last sync (so a crash before the next sync finds the old data intact). */
static int alloc_one(struct vfat *v, uint32_t near, uint32_t *out) {
  uint32_t from = in_range(v, near) ? near : in_range(v, v->next_hint) ? v->next_hint : 2;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0 && v->free_count <= v->npend) continue;
    uint32_t c = from;
    for (uint32_t i = 0; i < v->nclusters; i++, c = c == v->maxc ? 2 : c + 1) {
      if (fat_get(v, c) || v->indeg[c] || bit_get(v->reg, c)) continue;
      if (bit_get(v->pend, c)) {
        if (!pass) continue;
        bit_clr(v->pend, c);
        v->npend--;
      }
      v->next_hint = c == v->maxc ? 2 : c + 1;
      *out = c;
      return 0;
    }
  }
  return fail(v, K_NOSPC, NULL);
}

/* n new clusters chained after `last` (0: a new chain, *first set). */
static int alloc_chain(struct vfat *v, uint32_t n, uint32_t last, uint32_t *first) {
  if (n > v->free_count) return fail(v, K_NOSPC, NULL);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t c;
    if (alloc_one(v, last ? last + 1 : 0, &c) < 0) return -1;
    if (fat_set(v, c, v->eoc) < 0) return -1;
    if (last) {
      if (fat_set(v, last, c) < 0) return -1;
    } else {
      *first = c;
    }
    last = c;
  }
  return 0;
}

/* Free a chain at commit time (it was checked when the operation ran). */
static void chain_free(struct vfat *v, uint32_t c) {
  for (uint32_t n = 0; in_range(v, c) && n <= v->nclusters; n++) {
    uint32_t x = fat_get(v, c);
    if (!x) break;
    fat_apply(v, c, 0);
    if (!bit_get(v->pend, c)) {
      bit_set(v->pend, c);
      v->npend++;
    }
    if (x >= v->eoc_min || !in_range(v, x) || v->indeg[x]) break;
    c = x;
  }
  v->hint_start = 0;
}

static int defer_free(struct vfat *v, uint32_t c) {
  if (!c) return 0;
  if (GROW(v, v->defer, v->cap_defer, v->ndefer + 1) < 0) return -1;
  v->defer[v->ndefer++] = c;
  return 0;
}

/* ---- names ------------------------------------------------------------------ */

/* CP437, the OEM code page of 8.3 names (Linux's default codepage=437). */
static const uint16_t cp437[128] = {
    0xC7,   0xFC,   0xE9,   0xE2,   0xE4,   0xE0,   0xE5,   0xE7,   0xEA,   0xEB,   0xE8,   0xEF,
    0xEE,   0xEC,   0xC4,   0xC5,   0xC9,   0xE6,   0xC6,   0xF4,   0xF6,   0xF2,   0xFB,   0xF9,
    0xFF,   0xD6,   0xDC,   0xA2,   0xA3,   0xA5,   0x20A7, 0x192,  0xE1,   0xED,   0xF3,   0xFA,
    0xF1,   0xD1,   0xAA,   0xBA,   0xBF,   0x2310, 0xAC,   0xBD,   0xBC,   0xA1,   0xAB,   0xBB,
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557,
    0x255D, 0x255C, 0x255B, 0x2510, 0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,
    0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
    0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
    0x3B1,  0xDF,   0x393,  0x3C0,  0x3A3,  0x3C3,  0xB5,   0x3C4,  0x3A6,  0x398,  0x3A9,  0x3B4,
    0x221E, 0x3C6,  0x3B5,  0x2229, 0x2261, 0xB1,   0x2265, 0x2264, 0x2320, 0x2321, 0xF7,   0x2248,
    0xB0,   0x2219, 0xB7,   0x221A, 0x207F, 0xB2,   0x25A0, 0xA0,
};

static size_t put_utf8(char *o, uint32_t c) {
  if (c < 0x80) {
    o[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    o[0] = (char)(0xC0 | c >> 6);
    o[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    o[0] = (char)(0xE0 | c >> 12);
    o[1] = (char)(0x80 | (c >> 6 & 0x3F));
    o[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | c >> 18);
  o[1] = (char)(0x80 | (c >> 12 & 0x3F));
  o[2] = (char)(0x80 | (c >> 6 & 0x3F));
  o[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

/* UTF-8 -> UTF-16: -1 if not valid UTF-8 (surrogates included), -2 if
 * longer than max units. */
static int utf8_to_16(const char *s, size_t len, uint16_t *out, size_t max, size_t *n) {
  size_t i = 0, k = 0;
  while (i < len) {
    uint32_t c = (uint8_t)s[i], min;
    size_t need;
    if (c < 0x80)
      need = 0, min = 0;
    else if ((c & 0xE0) == 0xC0)
      c &= 0x1F, need = 1, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
      c &= 0x0F, need = 2, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
      c &= 0x07, need = 3, min = 0x10000;
    else
      return -1;
    if (len - i - 1 < need) return -1;
    for (size_t j = 1; j <= need; j++) {
      uint8_t b = (uint8_t)s[i + j];
      if ((b & 0xC0) != 0x80) return -1;
      c = c << 6 | (b & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    i += need + 1;
    if (c >= 0x10000) {
      if (k + 2 > max) return -2;
      c -= 0x10000;
      out[k++] = (uint16_t)(0xD800 | c >> 10);
      out[k++] = (uint16_t)(0xDC00 | (c & 0x3FF));
    } else {
      if (k + 1 > max) return -2;
      out[k++] = (uint16_t)c;
    }
  }
  *n = k;
  return 0;
}

/* UTF-16 -> UTF-8 (a lone surrogate is kept as its 3-byte form); out must
 * hold 3 * n + 1 bytes. */
static size_t utf16_to_8(const uint16_t *u, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = u[i];
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] < 0xE000)
      c = 0x10000 + ((c - 0xD800) << 10) + (u[++i] - 0xDC00);
    o += put_utf8(out + o, c);
  }
  out[o] = 0;
  return o;
}

static inline unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static inline unsigned char upper(unsigned char c) { return c >= 'a' && c <= 'z' ? c - 32 : c; }

/* Names compare ASCII-case-insensitively, as Linux's vfat does. */
static uint32_t fold_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ lower((unsigned char)s[i])) * 16777619u;
  return h;
}
static int fold_eq(const char *a, const char *b, size_t blen) {
  for (size_t i = 0; i < blen; i++)
    if (!a[i] || lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return a[blen] == 0;
}
static uint32_t sfn_hash(const uint8_t *sn) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 11; i++)
    h = (h ^ sn[i]) * 16777619u;
  return h;
}

static uint8_t sfn_checksum(const uint8_t *sn) {
  uint8_t s = 0;
  for (int i = 0; i < 11; i++)
    s = (uint8_t)(((s & 1) << 7) + (s >> 1) + sn[i]);
  return s;
}

static int sfn_char_ok(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'()-@^_`{}~", c));
}

/* Is name[0..len) a valid 8.3 name? Then sn = its upper-case 8.3 form,
 * *nt = the case flags that show it as given, *mixed = a part mixes cases
 * (then it needs a long name to keep its case). */
static int sfn_fit(const char *s, size_t len, uint8_t sn[11], uint8_t *nt, int *mixed) {
  const char *dot = memchr(s, '.', len);
  size_t blen = dot ? (size_t)(dot - s) : len, elen = dot ? len - blen - 1 : 0;
  if (blen == 0 || blen > 8 || elen > 3 || (dot && (elen == 0 || memchr(dot + 1, '.', elen))))
    return 0;
  int bl = 0, bu = 0, el = 0, eu = 0;
  memset(sn, ' ', 11);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == blen) continue;
    if (!sfn_char_ok(c)) return 0;
    int isl = c >= 'a' && c <= 'z', isu = c >= 'A' && c <= 'Z';
    if (i < blen) {
      bl |= isl, bu |= isu;
      sn[i] = upper(c);
    } else {
      el |= isl, eu |= isu;
      sn[8 + i - blen - 1] = upper(c);
    }
  }
  *mixed = (bl && bu) || (el && eu);
  *nt = (uint8_t)((bl && !bu ? NT_LOWER_BASE : 0) | (el && !eu ? NT_LOWER_EXT : 0));
  return 1;
}

/* How an 8.3 entry reads: "NAME.EXT" with its case flags, CP437 above 0x7F. */
static void sfn_display(const uint8_t *p, char *out) {
  size_t o = 0;
  int bn = 8, en = 3;
  while (bn > 0 && p[bn - 1] == ' ')
    bn--;
  while (en > 0 && p[8 + en - 1] == ' ')
    en--;
  for (int part = 0; part < 2; part++) {
    int n = part ? en : bn, lc = p[12] & (part ? NT_LOWER_EXT : NT_LOWER_BASE);
    if (part && n) out[o++] = '.';
    for (int i = 0; i < n; i++) {
      unsigned char c = p[(part ? 8 : 0) + i];
      if (!part && i == 0 && c == 0x05) c = 0xE5;
      if (c == '/' || c == 0) c = '_';
      if (c >= 0x80)
        o += put_utf8(out + o, cp437[c - 0x80]);
      else
        out[o++] = (char)(lc ? lower(c) : c);
    }
  }
  out[o] = 0;
}

/* Linux and Windows drop trailing dots from names. */
static size_t strip_dots(const char *s, size_t len) {
  while (len && s[len - 1] == '.')
    len--;
  return len;
}

/* ---- directories ------------------------------------------------------------ */

static inline uint8_t *slot_ptr(struct vdir *d, uint32_t slot) {
  return d->raw + 32 * (size_t)slot;
}
static inline uint8_t *ent_raw(struct vdir *d, int32_t i) { return slot_ptr(d, d->ents[i].slot); }
static inline int ent_is_dir(struct vdir *d, int32_t i) { return ent_raw(d, i)[11] & ATTR_DIR; }
static inline uint32_t ent_size(struct vdir *d, int32_t i) { return le32(ent_raw(d, i) + 28); }
static uint32_t raw_start(const struct vfat *v, const uint8_t *p) {
  return le16(p + 26) | (v->bits == 32 ? (uint32_t)le16(p + 20) << 16 : 0);
}
static void raw_set_start(const struct vfat *v, uint8_t *p, uint32_t c) {
  put16(p + 26, c);
  put16(p + 20, v->bits == 32 ? c >> 16 : 0);
}

static void vent_register(struct vfat *v, struct vent *en) {
  en->flags &= (uint8_t) ~(VENT_OWNER | VENT_XLINK);
  if (!in_range(v, en->start)) return;
  if (bit_get(v->reg, en->start)) {
    en->flags |= VENT_XLINK;
  } else {
    bit_set(v->reg, en->start);
    en->flags |= VENT_OWNER;
  }
}
static void vent_unregister(struct vfat *v, struct vent *en) {
  if (en->flags & VENT_OWNER) bit_clr(v->reg, en->start);
  en->flags &= (uint8_t)~VENT_OWNER;
}

static void hash_insert(struct vdir *d, int32_t i) {
  struct vent *en = &d->ents[i];
  uint32_t m = d->hsize - 1;
  en->lnext = d->lh[en->lhv & m];
  d->lh[en->lhv & m] = i;
  en->snext = d->sh[en->shv & m];
  d->sh[en->shv & m] = i;
}
static void hash_remove(struct vdir *d, int32_t i) {
  struct vent *en = &d->ents[i];
  uint32_t m = d->hsize - 1;
  int32_t *pp = &d->lh[en->lhv & m];
  while (*pp >= 0 && *pp != i)
    pp = &d->ents[*pp].lnext;
  if (*pp == i) *pp = en->lnext;
  pp = &d->sh[en->shv & m];
  while (*pp >= 0 && *pp != i)
    pp = &d->ents[*pp].snext;
  if (*pp == i) *pp = en->snext;
}

/* Room for one more entry (array and hash), before anything changes. */
static int vent_reserve(struct vfat *v, struct vdir *d) {
  if (GROW(v, d->ents, d->cap_ents, d->nents + 1) < 0) return -1;
  if ((d->nents + 1) * 2 <= d->hsize) return 0;
  uint32_t hs = d->hsize ? d->hsize : 16;
  while ((d->nents + 1) * 2 > hs)
    hs *= 2;
  int32_t *lh = malloc(hs * sizeof *lh), *sh = malloc(hs * sizeof *sh);
  if (!lh || !sh) {
    free(lh);
    free(sh);
    return nomem(v);
  }
  free(d->lh);
  free(d->sh);
  d->lh = lh;
  d->sh = sh;
  d->hsize = hs;
  for (uint32_t i = 0; i < hs; i++)
    lh[i] = sh[i] = -1;
  for (size_t i = 0; i < d->nents; i++)
    if (!(d->ents[i].flags & VENT_DEAD)) hash_insert(d, (int32_t)i);
  return 0;
}

/* Append a parsed entry (capacity reserved); takes name. */
static int32_t vent_add(struct vfat *v, struct vdir *d, char *name, uint32_t slot, uint32_t nlfn) {
  int32_t i = (int32_t)d->nents++;
  struct vent *en = &d->ents[i];
  const uint8_t *p = slot_ptr(d, slot);
  en->name = name;
  en->slot = slot;
  en->nlfn = nlfn;
  en->start = raw_start(v, p);
  en->flags = 0;
  en->lhv = fold_hash(name, strlen(name));
  en->shv = sfn_hash(p);
  hash_insert(d, i);
  vent_register(v, en);
  d->nlive++;
  return i;
}

static void vent_kill(struct vfat *v, struct vdir *d, int32_t i) {
  struct vent *en = &d->ents[i];
  hash_remove(d, i);
  vent_unregister(v, en);
  free(en->name);
  en->name = NULL;
  en->flags = VENT_DEAD;
  d->nlive--;
}

static void dir_unparse(struct vfat *v, struct vdir *d) {
  for (size_t i = 0; i < d->nents; i++) {
    vent_unregister(v, &d->ents[i]);
    free(d->ents[i].name);
  }
  d->nents = 0;
  d->nlive = 0;
  for (uint32_t i = 0; i < d->hsize; i++)
    d->lh[i] = d->sh[i] = -1;
  d->parsed = 0;
}

/* Build the names of d from its raw entries. */
static int dir_parse(struct vfat *v, struct vdir *d) {
  dir_unparse(v, d);
  uint16_t lfn[20 * 13];
  int lfn_ok = 0;
  uint32_t lfn_total = 0, lfn_next = 0, lfn_first = 0;
  uint8_t lfn_sum = 0;
  static const uint8_t lfn_pos[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
  d->end = d->nslots;
  for (uint32_t i = 0; i < d->nslots; i++) {
    const uint8_t *s = slot_ptr(d, i);
    if (s[0] == 0) {
      d->end = i;
      break;
    }
    if (s[0] == 0xE5) {
      lfn_ok = 0;
      continue;
    }
    if ((s[11] & 0x3F) == ATTR_LFN) {
      uint32_t ord = s[0] & 0x3F;
      if (s[0] & 0x40) {
        lfn_ok = ord >= 1 && ord <= 20;
        lfn_total = ord;
        lfn_first = i;
        lfn_sum = s[13];
      } else if (!lfn_ok || ord != lfn_next || s[13] != lfn_sum) {
        lfn_ok = 0;
      }
      if (!lfn_ok) continue;
      for (int k = 0; k < 13; k++)
        lfn[(ord - 1) * 13 + k] = le16(s + lfn_pos[k]);
      lfn_next = ord - 1;
      continue;
    }
    int have = lfn_ok && lfn_next == 0 && lfn_first + lfn_total == i && sfn_checksum(s) == lfn_sum;
    lfn_ok = 0;
    if (s[11] & ATTR_VOLID) continue; /* the volume label */
    if (!memcmp(s, ".          ", 11) || !memcmp(s, "..         ", 11)) continue;
    char buf[LFN_MAX * 3 + 1], *name;
    if (have) {
      size_t n = 0;
      while (n < lfn_total * 13 && lfn[n])
        n++;
      for (size_t k = 0; k < n; k++)
        if (lfn[k] == '/') have = 0;
      if (n == 0 || n > LFN_MAX || (n == 1 && lfn[0] == '.') ||
          (n == 2 && lfn[0] == '.' && lfn[1] == '.'))
        have = 0;
      if (have) utf16_to_8(lfn, n, buf);
    }
    if (!have) sfn_display(s, buf);
    if (vent_reserve(v, d) < 0 || !(name = strdup(buf))) {
      dir_unparse(v, d);
      return nomem(v);
    }
    vent_add(v, d, name, i, have ? lfn_total : 0);
  }
  d->free_hint = 0;
  d->parsed = 1;
  d->stale = 0;
  return 0;
}

static void dir_free(struct vfat *v, struct vdir *d) {
  if (!d) return;
  dir_unparse(v, d);
  free(d->ents);
  free(d->lh);
  free(d->sh);
  free(d->raw);
  free(d->dirty);
  free(d->chain);
  free(d);
}

static struct vdir *dir_cached(struct vfat *v, uint32_t first) {
  for (struct vdir *d = v->dirs[first % DIR_BUCKETS]; d; d = d->next)
    if (d->first == first) return d;
  return NULL;
}

static void dir_forget(struct vfat *v, struct vdir *d) {
  struct vdir **pp = &v->dirs[d->first % DIR_BUCKETS];
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp) *pp = d->next;
  dir_free(v, d);
}

static int dir_reserve(struct vfat *v, struct vdir *d, size_t slots) {
  if (slots <= d->cap_slots) return 0;
  size_t n = d->cap_slots ? d->cap_slots : 16;
  while (n < slots)
    n *= 2;
  uint8_t *raw = realloc(d->raw, n * 32);
  if (!raw) return nomem(v);
  d->raw = raw;
  size_t nsec = (n * 32 + v->bps - 1) / v->bps, old = (d->cap_slots * 32 + v->bps - 1) / v->bps;
  uint8_t *dirty = realloc(d->dirty, nsec);
  if (!dirty) return nomem(v);
  memset(dirty + old, 0, nsec - old);
  d->dirty = dirty;
  d->cap_slots = n;
  return 0;
}

static struct vdir *dir_alloc(struct vfat *v, uint32_t first, uint32_t nslots) {
  struct vdir *d = calloc(1, sizeof *d);
  if (!d) return nomem(v), NULL;
  d->first = first;
  if (dir_reserve(v, d, nslots ? nslots : 1) < 0) {
    dir_free(v, d);
    return NULL;
  }
  d->nslots = nslots;
  return d;
}

/* Read a directory from its cluster chain. */
static struct vdir *dir_load(struct vfat *v, uint32_t first) {
  struct vdir *d = dir_alloc(v, first, 0);
  if (!d) return NULL;
  uint32_t c = first;
  for (;;) {
    if (GROW(v, d->chain, d->cap_chain, d->nchain + 1) < 0) goto fail;
    d->chain[d->nchain++] = c;
    if (d->nchain * (uint64_t)v->cs / 32 > DIR_MAX_SLOTS) {
      fail(v, K_CORRUPT, "directory at cluster %u is larger than 2 MiB", first);
      goto fail;
    }
    uint32_t nx;
    if (fat_next(v, c, &nx) < 0) goto fail;
    if (!nx) break;
    c = nx;
  }
  uint32_t nslots = (uint32_t)(d->nchain * (v->cs / 32));
  if (dir_reserve(v, d, nslots) < 0) goto fail;
  d->nslots = nslots;
  for (size_t i = 0; i < d->nchain;) { /* contiguous runs in one read */
    size_t j = i + 1;
    while (j < d->nchain && d->chain[j] == d->chain[j - 1] + 1)
      j++;
    if (dev_read(v, d->raw + i * v->cs, (j - i) * v->cs, clus_off(v, d->chain[i])) < 0) goto fail;
    i = j;
  }
  if (dir_parse(v, d) < 0) goto fail;
  d->next = v->dirs[first % DIR_BUCKETS];
  v->dirs[first % DIR_BUCKETS] = d;
  return d;
fail:
  dir_free(v, d);
  return NULL;
}

static int dir_ready(struct vfat *v, struct vdir *d) { return d->parsed ? 0 : dir_parse(v, d); }

/* Is entry i usable: its first cluster valid and its own? */
static int ent_check(struct vfat *v, struct vdir *d, int32_t i) {
  struct vent *en = &d->ents[i];
  const uint8_t *p = ent_raw(d, i);
  uint32_t s = en->start;
  if (en->flags & VENT_XLINK)
    return fail(v, K_CORRUPT, "\"%s\" starts at cluster %u, which another entry or directory owns",
                en->name, s);
  if (s == 0) {
    if (p[11] & ATTR_DIR) return fail(v, K_CORRUPT, "directory \"%s\" has no cluster", en->name);
    if (le32(p + 28)) return fail(v, K_CORRUPT, "\"%s\" has a size but no cluster", en->name);
    return 0;
  }
  if (!in_range(v, s))
    return fail(v, K_CORRUPT, "\"%s\" starts at cluster %u, out of range", en->name, s);
  if (v->indeg[s])
    return fail(v, K_CORRUPT, "\"%s\" starts at cluster %u, inside another chain", en->name, s);
  if (fat_get(v, s) == 0)
    return fail(v, K_CORRUPT, "\"%s\" starts at cluster %u, which is marked free", en->name, s);
  return 0;
}

/* The directory of entry i of d (checked, loaded, parsed). */
static struct vdir *dir_of(struct vfat *v, struct vdir *d, int32_t i) {
  if (ent_check(v, d, i) < 0) return NULL;
  struct vdir *c = dir_cached(v, d->ents[i].start);
  if (c) return dir_ready(v, c) < 0 ? NULL : c;
  return dir_load(v, d->ents[i].start);
}

static int32_t dir_lookup(struct vdir *d, const char *name, size_t len) {
  if (!d->hsize) return -1;
  uint32_t h = fold_hash(name, len), m = d->hsize - 1;
  for (int32_t i = d->lh[h & m]; i >= 0; i = d->ents[i].lnext)
    if (d->ents[i].lhv == h && fold_eq(d->ents[i].name, name, len)) return i;
  uint8_t sn[11], nt;
  int mixed;
  if (!sfn_fit(name, len, sn, &nt, &mixed)) return -1;
  h = sfn_hash(sn);
  for (int32_t i = d->sh[h & m]; i >= 0; i = d->ents[i].snext)
    if (!memcmp(ent_raw(d, i), sn, 11)) return i;
  return -1;
}

static int sfn_taken(struct vdir *d, const uint8_t *sn) {
  if (!d->hsize) return 0;
  uint32_t h = sfn_hash(sn);
  for (int32_t i = d->sh[h & (d->hsize - 1)]; i >= 0; i = d->ents[i].snext)
    if (!memcmp(ent_raw(d, i), sn, 11)) return 1;
  return 0;
}

/* Slot `slot` of d = bytes, undone if the operation fails. */
static int dir_put(struct vfat *v, struct vdir *d, uint32_t slot, const uint8_t *bytes) {
  if (undo_reserve(v, 1) < 0) return -1;
  uint8_t *p = slot_ptr(d, slot);
  memcpy(undo_push(v, U_SLOT, d, slot, 0)->old, p, 32);
  memcpy(p, bytes, 32);
  d->dirty[(size_t)slot * 32 / v->bps] = 1;
  d->any_dirty = 1;
  v->dirs_dirty = 1;
  return 0;
}

/* Entry i's 8.3 slot = p (its first cluster may change). */
static int ent_update(struct vfat *v, struct vdir *d, int32_t i, const uint8_t *p) {
  if (dir_put(v, d, d->ents[i].slot, p) < 0) return -1;
  struct vent *en = &d->ents[i];
  uint32_t s = raw_start(v, p);
  if (s != en->start) {
    vent_unregister(v, en);
    en->start = s;
    vent_register(v, en);
  }
  return 0;
}

/* k more clusters for d, zeroed on the device at once. */
static int dir_grow(struct vfat *v, struct vdir *d, uint32_t k) {
  size_t per = v->cs / 32;
  if (dir_reserve(v, d, d->nslots + k * per) < 0 ||
      GROW(v, d->chain, d->cap_chain, d->nchain + k) < 0 || undo_reserve(v, 1) < 0)
    return -1;
  undo_push(v, U_GROW, d, d->nslots, (uint32_t)d->nchain);
  for (uint32_t i = 0; i < k; i++) {
    uint32_t last = d->chain[d->nchain - 1], c;
    if (alloc_one(v, last + 1, &c) < 0 || fat_set(v, c, v->eoc) < 0 || fat_set(v, last, c) < 0 ||
        dev_zero(v, clus_off(v, c), v->cs) < 0)
      return -1;
    memset(slot_ptr(d, d->nslots), 0, v->cs);
    memset(d->dirty + (size_t)d->nslots * 32 / v->bps, 0, v->cs / v->bps);
    d->chain[d->nchain++] = c;
    d->nslots += (uint32_t)per;
  }
  return 0;
}

static inline int slot_free(struct vdir *d, uint32_t i) {
  return i >= d->end || d->raw[32 * (size_t)i] == 0xE5;
}

/* The first run of `need` free slots in d, growing it if needed. */
static int dir_find_free(struct vfat *v, struct vdir *d, uint32_t need, uint32_t *at) {
  uint32_t i = d->free_hint, first_free = UINT32_MAX, tail = d->nslots;
  while (i < d->nslots) {
    if (!slot_free(d, i)) {
      i++;
      continue;
    }
    if (first_free == UINT32_MAX) first_free = i;
    uint32_t j = i;
    while (j < d->nslots && j - i < need && slot_free(d, j))
      j++;
    if (j - i == need) {
      *at = i;
      d->free_hint = first_free;
      return 0;
    }
    if (j == d->nslots) {
      tail = i;
      break;
    }
    i = j;
  }
  if (d->fixed) return fail(v, K_NOSPC, "the root directory is full (%u entries)", d->nslots);
  uint64_t more = (uint64_t)tail + need - d->nslots;
  uint32_t k = (uint32_t)((more * 32 + v->cs - 1) / v->cs);
  if (d->nslots + (uint64_t)k * (v->cs / 32) > DIR_MAX_SLOTS)
    return fail(v, K_NOSPC, "a vfat directory holds at most 65536 entries");
  if (k > v->free_count) return fail(v, K_NOSPC, NULL);
  if (dir_grow(v, d, k) < 0) return -1;
  *at = tail;
  d->free_hint = first_free == UINT32_MAX ? tail : first_free;
  return 0;
}

/* A unique 8.3 name for a long name, the way Windows makes them: basis
 * name (upper case, invalid characters as '_', spaces and extra dots
 * dropped, 6 + "~N" characters), "~1".."~4", then 2 characters + 4 hex
 * digits of a hash + "~1".."~9", then "~5" onward. */
static int sfn_generate(struct vfat *v, struct vdir *d, const uint16_t *u, size_t n,
                        uint8_t sn[11]) {
  uint8_t base[8], ext[3];
  size_t bn = 0, en = 0, i = 0;
  while (i < n && (u[i] == '.' || u[i] == ' '))
    i++;
  size_t lastdot = n;
  for (size_t k = n; k-- > i;)
    if (u[k] == '.') {
      lastdot = k;
      break;
    }
  for (size_t k = i; k < n && bn < 8 && u[k] != '.'; k++) {
    if (u[k] == ' ') continue;
    base[bn++] = u[k] < 0x80 && sfn_char_ok((unsigned char)u[k]) ? upper((unsigned char)u[k]) : '_';
  }
  for (size_t k = lastdot + 1; k < n && en < 3; k++) {
    if (u[k] == ' ' || u[k] == '.') continue;
    ext[en++] = u[k] < 0x80 && sfn_char_ok((unsigned char)u[k]) ? upper((unsigned char)u[k]) : '_';
  }
  if (!bn) base[bn++] = '_';
  uint16_t h = 0;
  for (size_t k = 0; k < n; k++)
    h = (uint16_t)(h * 31 + u[k]);
  for (uint32_t tries = 1; tries <= 1000000; tries++) {
    char tail[12];
    size_t keep;
    uint8_t b[8];
    memcpy(b, base, bn);
    keep = bn;
    if (tries <= 4 || tries > 13) {
      uint32_t num = tries <= 4 ? tries : tries - 9;
      snprintf(tail, sizeof tail, "~%u", num);
    } else {
      snprintf(tail, sizeof tail, "~%u", tries - 4);
      keep = bn < 2 ? bn : 2;
      static const char hex[] = "0123456789ABCDEF";
      for (int k = 0; k < 4; k++)
        b[keep++] = (uint8_t)hex[h >> (12 - 4 * k) & 15];
    }
    size_t tl = strlen(tail);
    if (keep + tl > 8) keep = 8 - tl;
    memset(sn, ' ', 11);
    memcpy(sn, b, keep);
    memcpy(sn + keep, tail, tl);
    memcpy(sn + 8, ext, en);
    if (!sfn_taken(d, sn)) return 0;
  }
  return fail(v, K_NOSPC, "no free 8.3 name left");
}

static int name_char_bad(uint16_t c) { return c < 0x20 || (c < 0x80 && strchr("\"*/:<>?\\|", c)); }

/* Add name[0..len) (trailing dots stripped, checked absent) to d with the
 * 8.3 entry template t (attributes, times, cluster, size; the name and the
 * case byte are filled here). The new entry's index in *out. */
static int dir_add(struct vfat *v, struct vdir *d, const char *name, size_t len, uint8_t *t,
                   int32_t *out) {
  uint16_t u[LFN_MAX];
  size_t n;
  if (len == 0) return fail(v, K_INVAL, "empty file name");
  int r = utf8_to_16(name, len, u, LFN_MAX, &n);
  if (r == -2) return fail(v, K_NAMETOOLONG, "vfat names hold at most 255 UTF-16 characters");
  if (r < 0) return fail(v, K_INVAL, "the file name is not valid UTF-8");
  for (size_t i = 0; i < n; i++)
    if (name_char_bad(u[i]))
      return fail(v, K_INVAL,
                  "vfat file names cannot hold control characters or any of \"*/:<>?\\|");
  uint8_t sn[11], nt = 0;
  int mixed = 0, fits = sfn_fit(name, len, sn, &nt, &mixed);
  uint32_t nlfn = 0;
  if (!fits || mixed || sfn_taken(d, sn)) {
    nlfn = (uint32_t)((n + 12) / 13);
    nt = 0;
    if ((!fits || sfn_taken(d, sn)) && sfn_generate(v, d, u, n, sn) < 0) return -1;
  }
  char *copy = strndup(name, len);
  if (!copy || vent_reserve(v, d) < 0) {
    free(copy);
    return nomem(v);
  }
  uint32_t at = 0;
  if (dir_find_free(v, d, nlfn + 1, &at) < 0) {
    free(copy);
    return -1;
  }
  memcpy(t, sn, 11);
  t[12] = nt;
  uint8_t sum = sfn_checksum(t);
  static const uint8_t lfn_pos[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
  for (uint32_t k = 0; k < nlfn; k++) {
    uint32_t ord = nlfn - k;
    uint8_t s[32] = {0};
    s[0] = (uint8_t)(ord | (k == 0 ? 0x40 : 0));
    s[11] = ATTR_LFN;
    s[13] = sum;
    for (int j = 0; j < 13; j++) {
      size_t ci = (ord - 1) * 13 + (size_t)j;
      put16(s + lfn_pos[j], ci < n ? u[ci] : ci == n ? 0 : 0xFFFF);
    }
    if (dir_put(v, d, at + k, s) < 0) {
      free(copy);
      return -1;
    }
  }
  if (dir_put(v, d, at + nlfn, t) < 0) {
    free(copy);
    return -1;
  }
  if (at + nlfn + 1 > d->end) { /* past the old end: the next slot must end the directory */
    d->end = at + nlfn + 1;
    if (d->end < d->nslots && slot_ptr(d, d->end)[0] != 0 && dir_put(v, d, d->end, zeros) < 0) {
      free(copy);
      return -1;
    }
  }
  if (d->free_hint == at) d->free_hint = at + nlfn + 1;
  *out = vent_add(v, d, copy, at + nlfn, nlfn);
  return 0;
}

/* Remove entry i's slots from d (its clusters are the caller's business). */
static int dir_remove(struct vfat *v, struct vdir *d, int32_t i) {
  struct vent *en = &d->ents[i];
  uint32_t first = en->slot - en->nlfn;
  for (uint32_t s = first; s <= en->slot; s++) {
    uint8_t b[32];
    memcpy(b, slot_ptr(d, s), 32);
    b[0] = 0xE5;
    if (dir_put(v, d, s, b) < 0) return -1;
  }
  vent_kill(v, d, i);
  if (first < d->free_hint) d->free_hint = first;
  return 0;
}

/* ---- time ------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* FAT times are local time without a zone: Streamer reads and writes them as UTC. */
static int64_t fat_to_unix(uint16_t date, uint16_t tm) {
  unsigned m = date >> 5 & 15, d = date & 31;
  if (m < 1) m = 1;
  if (m > 12) m = 12;
  if (d < 1) d = 1;
  return days_from_civil(1980 + (date >> 9), m, d) * 86400 + (tm >> 11) * 3600 +
         (tm >> 5 & 63) * 60 + (tm & 31) * 2;
}

static void unix_to_fat(int64_t t, int64_t ns, uint16_t *date, uint16_t *tm, uint8_t *cs) {
  if (t < FAT_TIME_MIN) t = FAT_TIME_MIN, ns = 0;
  if (t > FAT_TIME_MAX) t = FAT_TIME_MAX, ns = 0;
  time_t tt = (time_t)t;
  struct tm g;
  gmtime_r(&tt, &g);
  *date = (uint16_t)((g.tm_year + 1900 - 1980) << 9 | (g.tm_mon + 1) << 5 | g.tm_mday);
  *tm = (uint16_t)(g.tm_hour << 11 | g.tm_min << 5 | g.tm_sec / 2);
  if (cs) *cs = (uint8_t)((g.tm_sec & 1) * 100 + (ns > 0 && ns < 1000000000 ? ns / 10000000 : 0));
}

static void ent_touch(uint8_t *p, int create) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint16_t date, tm;
  uint8_t cs;
  unix_to_fat(now.tv_sec, now.tv_nsec, &date, &tm, &cs);
  if (create) {
    p[13] = cs;
    put16(p + 14, tm);
    put16(p + 16, date);
  }
  put16(p + 18, date);
  put16(p + 22, tm);
  put16(p + 24, date);
}

/* ---- transactions ------------------------------------------------------------ */

static void op_begin(struct vfat *v, const char *op, const char *path, struct err *e) {
  pthread_mutex_lock(&v->lock);
  v->op = op;
  v->path = path;
  v->e = e;
  v->nundo = v->ndefer = v->ndrop = 0;
}

static void txn_abort(struct vfat *v) {
  for (size_t i = v->nundo; i-- > 0;) {
    struct undo *u = &v->undo[i];
    switch (u->kind) {
    case U_FAT: fat_apply(v, u->a, u->b); break;
    case U_SLOT:
      memcpy(slot_ptr(u->d, u->a), u->old, 32);
      u->d->stale = 1;
      break;
    case U_GROW:
      u->d->nslots = u->a;
      u->d->nchain = u->b;
      u->d->stale = 1;
      break;
    case U_NEWDIR: dir_forget(v, u->d); break;
    }
  }
  struct err *keep = v->e;
  v->e = NULL; /* keep the error that made us abort */
  for (int b = -1; b < DIR_BUCKETS; b++)
    for (struct vdir *d = b < 0 ? v->root : v->dirs[b]; d; d = b < 0 ? NULL : d->next)
      if (d->stale && dir_parse(v, d) < 0) d->parsed = 0; /* parsed again when next used */
  v->e = keep;
  v->hint_start = 0;
}

static void txn_commit(struct vfat *v) {
  for (size_t i = 0; i < v->ndefer; i++)
    chain_free(v, v->defer[i]);
  for (size_t i = 0; i < v->ndrop; i++)
    dir_forget(v, v->drop[i]);
}

static int op_end(struct vfat *v, int rc) {
  if (rc < 0)
    txn_abort(v);
  else
    txn_commit(v);
  v->nundo = v->ndefer = v->ndrop = 0;
  v->op = v->path = NULL;
  v->e = NULL;
  pthread_mutex_unlock(&v->lock);
  return rc;
}

/* ---- paths --------------------------------------------------------------------- */

static int walk_push(struct vfat *v, struct walk *w, struct vdir *d, int32_t idx) {
  if (GROW(v, w->f, w->cap, w->n + 1) < 0) return -1;
  w->f[w->n].d = d;
  w->f[w->n].idx = idx;
  w->n++;
  return 0;
}

/* Walk the directories of path into w (w->f[0] is the root). With
 * want_leaf, the last component is not walked but returned in *leaf /
 * *leaflen (NULL when the path ends in "/", "." or ".."), *slash set when
 * it was followed by a '/'. */
static int walk_path(struct vfat *v, struct walk *w, const char *path, int want_leaf,
                     const char **leaf, size_t *leaflen, int *slash) {
  w->n = 0;
  if (!path || path[0] != '/') return fail(v, K_INVAL, "the path must be absolute");
  if (walk_push(v, w, v->root, -1) < 0) return -1;
  if (leaf) *leaf = NULL, *leaflen = 0, *slash = 0;
  const char *p = path;
  for (;;) {
    while (*p == '/')
      p++;
    if (!*p) return 0;
    const char *q = p;
    while (*q && *q != '/')
      q++;
    size_t len = (size_t)(q - p);
    const char *after = q;
    while (*after == '/')
      after++;
    int last = !*after;
    if (len > LFN_MAX * 4) return fail(v, K_NAMETOOLONG, NULL);
    if (len == 1 && p[0] == '.') {
      /* stays */
    } else if (len == 2 && p[0] == '.' && p[1] == '.') {
      if (w->n > 1) w->n--;
    } else if (last && want_leaf) {
      *leaf = p;
      *leaflen = strip_dots(p, len);
      *slash = *q == '/';
      return 0;
    } else {
      struct vdir *d = w->f[w->n - 1].d;
      int32_t i = dir_lookup(d, p, strip_dots(p, len));
      if (i < 0) return fail(v, K_NOENT, NULL);
      if (!ent_is_dir(d, i)) return fail(v, K_NOTDIR, NULL);
      struct vdir *c = dir_of(v, d, i);
      if (!c || walk_push(v, w, c, i) < 0) return -1;
    }
    p = q;
  }
}

struct obj {
  struct vdir *parent; /* NULL: the root */
  int32_t idx;
  struct vdir *dir; /* the directory itself, for directories */
};

/* What path names: an entry of its parent directory, or the root. */
static int lookup(struct vfat *v, struct walk *w, const char *path, struct obj *o) {
  const char *leaf;
  size_t len;
  int slash;
  if (walk_path(v, w, path, 1, &leaf, &len, &slash) < 0) return -1;
  struct frame *top = &w->f[w->n - 1];
  if (!leaf) {
    o->dir = top->d;
    o->parent = w->n > 1 ? w->f[w->n - 2].d : NULL;
    o->idx = top->idx;
    return 0;
  }
  int32_t i = dir_lookup(top->d, leaf, len);
  if (i < 0) return fail(v, K_NOENT, NULL);
  o->parent = top->d;
  o->idx = i;
  o->dir = NULL;
  if (ent_is_dir(top->d, i)) {
    if (!(o->dir = dir_of(v, top->d, i))) return -1;
  } else if (slash) {
    return fail(v, K_NOTDIR, NULL);
  }
  return 0; /* a file's chain is checked by what uses it (ent_check) */
}

/* The parent directory of path and its last component (which must be a name). */
static int lookup_parent(struct vfat *v, struct walk *w, const char *path, enum ekind if_none,
                         const char **leaf, size_t *len, int *slash) {
  if (walk_path(v, w, path, 1, leaf, len, slash) < 0) return -1;
  if (!*leaf) return fail(v, if_none, NULL);
  return 0;
}

static int check_rw(struct vfat *v) { return v->base.read_only ? fail(v, K_ROFS, NULL) : 0; }

/* ---- file data ------------------------------------------------------------------ */

/* Bytes [off, off+len) of the chain at start: read into rbuf, or written
 * from wbuf (zeros when wbuf is NULL); contiguous clusters in one I/O. */
static int file_io(struct vfat *v, uint32_t start, uint64_t off, uint64_t len, void *rbuf,
                   const void *wbuf, int write) {
  uint32_t idx = (uint32_t)(off / v->cs), c;
  if (chain_seek(v, start, idx, &c) < 0) return -1;
  if (!c) return fail(v, K_CORRUPT, "a file is larger than its cluster chain");
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    uint64_t disk = clus_off(v, c) + pos % v->cs, n = min64(v->cs - pos % v->cs, end - pos);
    uint32_t nx = 0;
    while (pos + n < end) {
      if (fat_next(v, c, &nx) < 0) return -1;
      if (!nx) return fail(v, K_CORRUPT, "a file is larger than its cluster chain");
      idx++;
      if (nx != c + 1) break;
      c = nx;
      nx = 0;
      n += min64(v->cs, end - pos - n);
    }
    int rc;
    if (!write)
      rc = dev_read(v, (uint8_t *)rbuf + (pos - off), (size_t)n, disk);
    else if (wbuf)
      rc = dev_write(v, (const uint8_t *)wbuf + (pos - off), (size_t)n, disk);
    else
      rc = dev_zero(v, disk, n);
    if (rc < 0) return -1;
    pos += n;
    if (pos < end) c = nx;
  }
  v->hint_start = start;
  v->hint_idx = idx;
  v->hint_c = c;
  return 0;
}

/* Give entry i of d room for `end` bytes and zero its bytes [size, zero_end). */
static int file_grow(struct vfat *v, struct vdir *d, int32_t i, uint64_t end, uint64_t zero_end,
                     uint32_t *startp) {
  uint32_t start = d->ents[i].start, size = ent_size(d, i), have = 0, last = 0;
  if (start) { /* to the end of the chain, from where the last walk stopped */
    uint32_t from = start, base = 0, n = 0;
    if (v->hint_start == start) from = v->hint_c, base = v->hint_idx;
    if (chain_walk(v, from, &n, &last) < 0) return -1;
    have = base + n;
    if ((uint64_t)have * v->cs < size)
      return fail(v, K_CORRUPT, "\"%s\" is larger than its cluster chain", d->ents[i].name);
    v->hint_start = start;
    v->hint_idx = have - 1;
    v->hint_c = last;
  }
  uint64_t need = (end + v->cs - 1) / v->cs;
  if (need > have) {
    uint32_t first = 0;
    if (alloc_chain(v, (uint32_t)(need - have), last, &first) < 0) return -1;
    if (!start) start = first;
  }
  if (zero_end > size && file_io(v, start, size, zero_end - size, NULL, NULL, 1) < 0) return -1;
  *startp = start;
  return 0;
}

/* Cut entry i of d to nsize bytes (<= its size): the chain's tail is freed at commit. */
static int file_shrink(struct vfat *v, struct vdir *d, int32_t i, uint32_t nsize, uint8_t *p) {
  uint32_t start = d->ents[i].start, keep = (uint32_t)((nsize + (uint64_t)v->cs - 1) / v->cs);
  if (start) {
    if (keep == 0) {
      if (chain_walk(v, start, NULL, NULL) < 0 || defer_free(v, start) < 0) return -1;
      raw_set_start(v, p, 0);
    } else {
      uint32_t c, nx;
      if (chain_seek(v, start, keep - 1, &c) < 0) return -1;
      if (!c) return fail(v, K_CORRUPT, "\"%s\" is larger than its cluster chain", d->ents[i].name);
      if (fat_next(v, c, &nx) < 0) return -1;
      if (nx) {
        if (chain_walk(v, nx, NULL, NULL) < 0 ||
            GROW(v, v->defer, v->cap_defer, v->ndefer + 1) < 0 || fat_set(v, c, v->eoc) < 0 ||
            defer_free(v, nx) < 0)
          return -1;
      }
    }
    v->hint_start = 0;
  }
  put32(p + 28, nsize);
  return 0;
}

/* ---- operations ------------------------------------------------------------------ */

#define VFAT(f) ((struct vfat *)(f))

static uint64_t ent_ino(struct vfat *v, struct vdir *d, int32_t i) {
  uint64_t o = (uint64_t)d->ents[i].slot * 32;
  uint64_t disk = d->fixed ? v->root_off + o : clus_off(v, d->chain[o / v->cs]) + o % v->cs;
  return disk / 32;
}

static uint32_t subdirs(struct vdir *d) {
  uint32_t n = 0;
  for (size_t i = 0; i < d->nents; i++)
    if (!(d->ents[i].flags & VENT_DEAD) && ent_is_dir(d, (int32_t)i)) n++;
  return n;
}

static void fill_stat(struct vfat *v, const struct obj *o, struct fs_stat *st) {
  memset(st, 0, sizeof *st);
  if (o->dir) {
    st->mode = S_IFDIR | 0755;
    st->nlink = 2 + subdirs(o->dir);
    st->size = (uint64_t)o->dir->nslots * 32;
    st->blocks = st->size / 512;
  }
  if (!o->parent) {
    st->ino = 1;
    return;
  }
  const uint8_t *p = ent_raw(o->parent, o->idx);
  if (!o->dir) {
    st->mode = S_IFREG | (p[11] & ATTR_RO ? 0444 : 0644);
    st->nlink = 1;
    st->size = le32(p + 28);
    st->blocks = (st->size + v->cs - 1) / v->cs * (v->cs / 512);
  }
  st->ino = ent_ino(v, o->parent, o->idx);
  st->mtime = fat_to_unix(le16(p + 24), le16(p + 22));
  st->atime = le16(p + 18) ? fat_to_unix(le16(p + 18), 0) : st->mtime;
  if (le16(p + 16)) {
    st->ctime = fat_to_unix(le16(p + 16), le16(p + 14)) + (p[13] < 200 ? p[13] / 100 : 0);
    st->ctime_ns = p[13] < 200 ? (int64_t)(p[13] % 100) * 10000000 : 0;
  } else {
    st->ctime = st->mtime;
  }
}

static int vfat_stat(struct fs *f, const char *path, struct fs_stat *st, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "stat", path, e);
  struct obj o;
  int rc = lookup(v, &v->w1, path, &o);
  if (rc == 0) fill_stat(v, &o, st);
  return op_end(v, rc);
}

static int vfat_lstat(struct fs *f, const char *path, struct fs_stat *st, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "lstat", path, e);
  struct obj o;
  int rc = lookup(v, &v->w1, path, &o);
  if (rc == 0) fill_stat(v, &o, st);
  return op_end(v, rc);
}

static int cmp_slot(const void *a, const void *b, void *arg) {
  struct vdir *d = arg;
  uint32_t x = d->ents[*(const int32_t *)a].slot, y = d->ents[*(const int32_t *)b].slot;
  return x < y ? -1 : x > y;
}

static int vfat_readdir(struct fs *f, const char *path, struct fs_dirent **ents, size_t *n,
                        struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "readdir", path, e);
  *ents = NULL;
  *n = 0;
  struct obj o;
  if (lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (!o.dir) return op_end(v, fail(v, K_NOTDIR, NULL));
  struct vdir *d = o.dir;
  int32_t *order = malloc((d->nlive + 1) * sizeof *order);
  struct fs_dirent *out = calloc(d->nlive + 1, sizeof *out);
  if (!order || !out) {
    free(order);
    free(out);
    return op_end(v, nomem(v));
  }
  size_t k = 0;
  for (size_t i = 0; i < d->nents; i++)
    if (!(d->ents[i].flags & VENT_DEAD)) order[k++] = (int32_t)i;
  qsort_r(order, k, sizeof *order, cmp_slot, d);
  for (size_t i = 0; i < k; i++) {
    out[i].name = strdup(d->ents[order[i]].name);
    out[i].type = ent_is_dir(d, order[i]) ? DT_DIR : DT_REG;
    if (!out[i].name) {
      for (size_t j = 0; j < i; j++)
        free(out[j].name);
      free(out);
      free(order);
      return op_end(v, nomem(v));
    }
  }
  free(order);
  *ents = out;
  *n = k;
  return op_end(v, 0);
}

static int vfat_read(struct fs *f, const char *path, void *buf, size_t len, uint64_t off,
                     size_t *got, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "read", path, e);
  *got = 0;
  struct obj o;
  if (lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (o.dir || !o.parent) return op_end(v, fail(v, K_ISDIR, NULL)); /* no parent: the root */
  if (ent_check(v, o.parent, o.idx) < 0) return op_end(v, -1);
  uint32_t size = ent_size(o.parent, o.idx);
  if (off >= size || !len) return op_end(v, 0);
  size_t n = (size_t)min64(len, size - off);
  if (file_io(v, o.parent->ents[o.idx].start, off, n, buf, NULL, 0) < 0) return op_end(v, -1);
  *got = n;
  return op_end(v, 0);
}

static int vfat_write(struct fs *f, const char *path, const void *buf, size_t len, uint64_t off,
                      int flags, uint32_t mode, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "write", path, e);
  if (check_rw(v) < 0) return op_end(v, -1);
  const char *leaf;
  size_t ll;
  int slash;
  if (lookup_parent(v, &v->w1, path, K_ISDIR, &leaf, &ll, &slash) < 0) return op_end(v, -1);
  struct vdir *d = v->w1.f[v->w1.n - 1].d;
  int32_t i = dir_lookup(d, leaf, ll);
  uint8_t p[32];
  int created = 0;
  if (i >= 0) {
    if (ent_is_dir(d, i)) return op_end(v, fail(v, K_ISDIR, NULL));
    if ((flags & FS_O_CREAT) && (flags & FS_O_EXCL)) return op_end(v, fail(v, K_EXIST, NULL));
    if (slash) return op_end(v, fail(v, K_NOTDIR, NULL));
    if (ent_check(v, d, i) < 0) return op_end(v, -1);
  } else {
    if (!(flags & FS_O_CREAT)) return op_end(v, fail(v, K_NOENT, NULL));
    if (slash) return op_end(v, fail(v, K_ISDIR, NULL));
    memset(p, 0, sizeof p);
    p[11] = ATTR_ARCH | ((mode & 0777) && !(mode & 0222) ? ATTR_RO : 0);
    ent_touch(p, 1);
    if (dir_add(v, d, leaf, ll, p, &i) < 0) return op_end(v, -1);
    created = 1;
  }
  memcpy(p, ent_raw(d, i), 32);
  uint64_t size = le32(p + 28);
  if ((flags & FS_O_TRUNC) && size) {
    if (file_shrink(v, d, i, 0, p) < 0 || ent_update(v, d, i, p) < 0) return op_end(v, -1);
    size = 0;
  }
  if (flags & FS_O_APPEND) off = size;
  if (len) {
    if (off + len > FILE_MAX || off + len < off)
      return op_end(v, fail(v, K_FBIG, "vfat files hold at most 4 GiB - 1 bytes"));
    uint32_t start;
    if (file_grow(v, d, i, off + len, off, &start) < 0 ||
        file_io(v, start, off, len, NULL, buf, 1) < 0)
      return op_end(v, -1);
    memcpy(p, ent_raw(d, i), 32);
    raw_set_start(v, p, start);
    if (off + len > size) put32(p + 28, (uint32_t)(off + len));
  } else if (!(flags & FS_O_TRUNC) && !created) {
    return op_end(v, 0);
  }
  p[11] |= ATTR_ARCH;
  ent_touch(p, 0);
  return op_end(v, ent_update(v, d, i, p));
}

static int vfat_truncate(struct fs *f, const char *path, uint64_t size, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "truncate", path, e);
  struct obj o;
  if (check_rw(v) < 0 || lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (o.dir || !o.parent) return op_end(v, fail(v, K_ISDIR, NULL)); /* no parent: the root */
  if (size > FILE_MAX) return op_end(v, fail(v, K_FBIG, "vfat files hold at most 4 GiB - 1 bytes"));
  struct vdir *d = o.parent;
  if (ent_check(v, d, o.idx) < 0) return op_end(v, -1);
  uint8_t p[32];
  memcpy(p, ent_raw(d, o.idx), 32);
  uint32_t cur = le32(p + 28);
  if (size < cur) {
    if (file_shrink(v, d, o.idx, (uint32_t)size, p) < 0) return op_end(v, -1);
  } else if (size > cur) {
    uint32_t start;
    if (file_grow(v, d, o.idx, size, size, &start) < 0) return op_end(v, -1);
    raw_set_start(v, p, start);
    put32(p + 28, (uint32_t)size);
  }
  p[11] |= ATTR_ARCH;
  ent_touch(p, 0);
  return op_end(v, ent_update(v, d, o.idx, p));
}

static int vfat_mkdir(struct fs *f, const char *path, uint32_t mode, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "mkdir", path, e);
  const char *leaf;
  size_t ll;
  int slash;
  if (check_rw(v) < 0 || lookup_parent(v, &v->w1, path, K_EXIST, &leaf, &ll, &slash) < 0)
    return op_end(v, -1);
  struct vdir *d = v->w1.f[v->w1.n - 1].d;
  if (dir_lookup(d, leaf, ll) >= 0) return op_end(v, fail(v, K_EXIST, NULL));
  uint32_t c;
  if (alloc_one(v, 0, &c) < 0 || fat_set(v, c, v->eoc) < 0) return op_end(v, -1);
  struct vdir *nd = dir_alloc(v, c, v->cs / 32);
  if (!nd) return op_end(v, -1);
  nd->chain = malloc(sizeof *nd->chain);
  if (!nd->chain) {
    dir_free(v, nd);
    return op_end(v, nomem(v));
  }
  nd->chain[0] = c;
  nd->nchain = nd->cap_chain = 1;
  memset(nd->raw, 0, v->cs);
  uint8_t p[32] = {0};
  p[11] = ATTR_DIR;
  ent_touch(p, 1);
  uint8_t *dot = slot_ptr(nd, 0), *dotdot = slot_ptr(nd, 1);
  memcpy(dot, p, 32);
  memcpy(dot, ".          ", 11);
  raw_set_start(v, dot, c);
  memcpy(dotdot, p, 32);
  memcpy(dotdot, "..         ", 11);
  raw_set_start(v, dotdot, d == v->root ? 0 : d->first);
  raw_set_start(v, p, c);
  int32_t i;
  if (dev_write(v, nd->raw, v->cs, clus_off(v, c)) < 0 || dir_parse(v, nd) < 0 ||
      dir_add(v, d, leaf, ll, p, &i) < 0) {
    dir_free(v, nd);
    return op_end(v, -1);
  }
  if (undo_reserve(v, 1) < 0) {
    dir_free(v, nd);
    return op_end(v, -1);
  }
  nd->next = v->dirs[c % DIR_BUCKETS];
  v->dirs[c % DIR_BUCKETS] = nd;
  undo_push(v, U_NEWDIR, nd, 0, 0);
  return op_end(v, 0);
}

/* Remove entry i of d and everything it owns (freed at commit). */
static int remove_entry(struct vfat *v, struct vdir *d, int32_t i, struct vdir *child) {
  uint32_t start = d->ents[i].start;
  if (ent_check(v, d, i) < 0 || (start && chain_walk(v, start, NULL, NULL) < 0)) return -1;
  if (GROW(v, v->defer, v->cap_defer, v->ndefer + 1) < 0 ||
      GROW(v, v->drop, v->cap_drop, v->ndrop + 1) < 0 || dir_remove(v, d, i) < 0)
    return -1;
  if (child) v->drop[v->ndrop++] = child;
  return defer_free(v, start);
}

static int vfat_rmdir(struct fs *f, const char *path, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "rmdir", path, e);
  struct obj o;
  if (check_rw(v) < 0 || lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (!o.dir) return op_end(v, fail(v, K_NOTDIR, NULL));
  if (!o.parent) return op_end(v, fail(v, K_BUSY, NULL));
  if (o.dir->nlive) return op_end(v, fail(v, K_NOTEMPTY, NULL));
  return op_end(v, remove_entry(v, o.parent, o.idx, o.dir));
}

static int vfat_unlink(struct fs *f, const char *path, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "unlink", path, e);
  struct obj o;
  if (check_rw(v) < 0 || lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (o.dir || !o.parent) return op_end(v, fail(v, K_ISDIR, NULL)); /* no parent: the root */
  return op_end(v, remove_entry(v, o.parent, o.idx, NULL));
}

static int vfat_rename(struct fs *f, const char *from, const char *to, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "rename", from, e);
  struct obj o;
  if (check_rw(v) < 0 || lookup(v, &v->w1, from, &o) < 0) return op_end(v, -1);
  if (!o.parent) return op_end(v, fail(v, K_BUSY, NULL));
  const char *leaf;
  size_t ll;
  int slash;
  v->path = to;
  if (lookup_parent(v, &v->w2, to, K_BUSY, &leaf, &ll, &slash) < 0) return op_end(v, -1);
  v->path = from;
  struct vdir *d1 = o.parent, *d2 = v->w2.f[v->w2.n - 1].d;
  int32_t i1 = o.idx;
  uint32_t start = d1->ents[i1].start;
  if (ent_check(v, d1, i1) < 0) return op_end(v, -1);
  if (o.dir) /* not into itself */
    for (size_t k = 0; k < v->w2.n; k++)
      if (v->w2.f[k].d == o.dir)
        return op_end(v, fail(v, K_INVAL, "cannot move a directory into itself"));
  if (slash && !o.dir) return op_end(v, fail(v, K_NOTDIR, NULL));
  int32_t i2 = dir_lookup(d2, leaf, ll);
  if (i2 >= 0 && d2 == d1 && i2 == i1) {
    if (strlen(d1->ents[i1].name) == ll && !memcmp(d1->ents[i1].name, leaf, ll))
      return op_end(v, 0); /* the same name: nothing to do */
    i2 = -1;               /* a change of case */
  }
  struct vdir *victim = NULL;
  if (i2 >= 0) {
    v->path = to;
    if (o.dir) {
      if (!ent_is_dir(d2, i2)) return op_end(v, fail(v, K_NOTDIR, NULL));
      if (!(victim = dir_of(v, d2, i2))) return op_end(v, -1);
      if (victim->nlive) return op_end(v, fail(v, K_NOTEMPTY, NULL));
    } else {
      if (ent_is_dir(d2, i2)) return op_end(v, fail(v, K_ISDIR, NULL));
      if (ent_check(v, d2, i2) < 0) return op_end(v, -1);
    }
    if (remove_entry(v, d2, i2, victim) < 0) return op_end(v, -1);
    v->path = from;
  }
  uint8_t p[32];
  memcpy(p, ent_raw(d1, i1), 32);
  int32_t ni;
  if (dir_remove(v, d1, i1) < 0) return op_end(v, -1);
  v->path = to;
  if (dir_add(v, d2, leaf, ll, p, &ni) < 0) return op_end(v, -1);
  v->path = from;
  if (o.dir && d1 != d2) { /* its ".." now names the new parent */
    struct vdir *c = dir_cached(v, start);
    if (!c) return op_end(v, fail(v, K_CORRUPT, "moved directory not loaded"));
    for (uint32_t s = 0; s < 2 && s < c->end; s++) {
      uint8_t b[32];
      memcpy(b, slot_ptr(c, s), 32);
      if (memcmp(b, "..         ", 11)) continue;
      raw_set_start(v, b, d2 == v->root ? 0 : d2->first);
      if (dir_put(v, c, s, b) < 0) return op_end(v, -1);
    }
  }
  return op_end(v, 0);
}

static int vfat_symlink(struct fs *f, const char *target, const char *path, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "symlink", path, e);
  return op_end(v, fail(v, K_PERM, "vfat has no symbolic links"));
}

static int vfat_link(struct fs *f, const char *existing, const char *path, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "link", path, e);
  return op_end(v, fail(v, K_PERM, "vfat has no hard links"));
}

static int vfat_readlink(struct fs *f, const char *path, char **target, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "readlink", path, e);
  *target = NULL;
  struct obj o;
  if (lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  return op_end(v, fail(v, K_PERM, "not a symbolic link: vfat has none"));
}

/* chmod as Linux's vfat does it (mounted without "quiet", as guestfish
 * mounts it): permission bits always succeed, and a file left without any
 * write bit gets the read-only attribute (cleared again by any write bit);
 * setuid, setgid and sticky bits cannot be stored: "Operation not permitted". */
static int vfat_chmod(struct fs *f, const char *path, uint32_t mode, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "chmod", path, e);
  struct obj o;
  if (lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (mode & 07000)
    return op_end(v, fail(v, K_PERM, "vfat cannot store setuid, setgid or sticky bits"));
  if (check_rw(v) < 0) return op_end(v, -1);
  if (o.dir || !o.parent) return op_end(v, 0);
  uint8_t p[32];
  memcpy(p, ent_raw(o.parent, o.idx), 32);
  uint8_t attr = (uint8_t)(mode & 0222 ? p[11] & ~ATTR_RO : p[11] | ATTR_RO);
  if (attr == p[11]) return op_end(v, 0);
  p[11] = attr;
  return op_end(v, ent_update(v, o.parent, o.idx, p));
}

/* chown: every file belongs to uid 0, gid 0 (what guestfish's mount shows);
 * asking for those (or -1, "unchanged") succeeds, anything else is refused. */
static int vfat_chown(struct fs *f, const char *path, uint32_t uid, uint32_t gid, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "chown", path, e);
  struct obj o;
  if (lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if ((uid != 0 && uid != UINT32_MAX) || (gid != 0 && gid != UINT32_MAX))
    return op_end(v, fail(v, K_PERM, "vfat files all belong to uid 0 and gid 0"));
  return op_end(v, check_rw(v));
}

static int vfat_utimens(struct fs *f, const char *path, int64_t atime, int64_t atime_ns,
                        int64_t mtime, int64_t mtime_ns, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "utimens", path, e);
  struct obj o;
  if (check_rw(v) < 0 || lookup(v, &v->w1, path, &o) < 0) return op_end(v, -1);
  if (!o.parent) return op_end(v, 0); /* the root has no entry to hold times */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint8_t p[32];
  memcpy(p, ent_raw(o.parent, o.idx), 32);
  uint16_t date, tm;
  if (atime_ns != UTIME_OMIT) {
    if (atime_ns == UTIME_NOW) atime = now.tv_sec;
    unix_to_fat(atime, 0, &date, &tm, NULL);
    put16(p + 18, date);
  }
  if (mtime_ns != UTIME_OMIT) {
    if (mtime_ns == UTIME_NOW) mtime = now.tv_sec;
    unix_to_fat(mtime, 0, &date, &tm, NULL);
    put16(p + 22, tm);
    put16(p + 24, date);
  }
  return op_end(v, ent_update(v, o.parent, o.idx, p));
}

static int vfat_statvfs(struct fs *f, struct fs_statvfs *out, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "statvfs", "/", e);
  memset(out, 0, sizeof *out);
  out->bsize = out->frsize = v->cs;
  out->blocks = v->nclusters;
  out->bfree = out->bavail = v->free_count;
  out->fsid = v->serial;
  out->flag = v->base.read_only ? ST_RDONLY : 0;
  out->namemax = 1530; /* what Linux reports: 255 characters of up to 6 bytes */
  return op_end(v, 0);
}

/* ---- sync -------------------------------------------------------------------------- */

/* The dirty sectors of a FAT image to every FAT copy in use. */
static int fat_write_dirty(struct vfat *v, const uint8_t *img) {
  for (uint32_t s = 0; s < v->fat_nsec;) {
    if (!v->fat_dirty[s]) {
      s++;
      continue;
    }
    uint32_t t = s + 1;
    while (t < v->fat_nsec && v->fat_dirty[t])
      t++;
    for (uint32_t k = 0; k < v->nfats; k++) {
      if (!v->mirror && k != v->active_fat) continue;
      uint64_t off = v->fat0_off + (uint64_t)k * v->fat_secs * v->bps + (uint64_t)s * v->bps;
      if (dev_write(v, img + (size_t)s * v->bps, (size_t)(t - s) * v->bps, off) < 0) return -1;
    }
    s = t;
  }
  return 0;
}

static uint64_t dir_disk_off(struct vfat *v, struct vdir *d, uint64_t o) {
  return d->fixed ? v->root_off + o : clus_off(v, d->chain[o / v->cs]) + o % v->cs;
}

static int dir_flush(struct vfat *v, struct vdir *d) {
  uint64_t bytes = (uint64_t)d->nslots * 32;
  uint32_t nsec = (uint32_t)((bytes + v->bps - 1) / v->bps);
  for (uint32_t s = 0; s < nsec;) {
    if (!d->dirty[s]) {
      s++;
      continue;
    }
    uint64_t o = (uint64_t)s * v->bps, disk = dir_disk_off(v, d, o);
    uint64_t len = min64(v->bps, bytes - o);
    uint32_t t = s + 1;
    while (t < nsec && d->dirty[t]) {
      uint64_t o2 = (uint64_t)t * v->bps;
      if (dir_disk_off(v, d, o2) != disk + (o2 - o)) break;
      len = o2 - o + min64(v->bps, bytes - o2);
      t++;
    }
    if (dev_write(v, d->raw + o, (size_t)len, disk) < 0) return -1;
    memset(d->dirty + s, 0, t - s);
    s = t;
  }
  d->any_dirty = 0;
  return 0;
}

static int dev_flush(struct vfat *v) {
  struct err ve;
  err_init(&ve);
  if (vol_flush(v->dev, &ve) == 0) return 0;
  fail(v, K_IO, "flush: %s", ve.message);
  err_clear(&ve);
  return -1;
}

/* Write every change through, in an order that a crash at any point
 * leaves at worst lost clusters (which fsck reclaims), never a directory
 * entry naming clusters that are free or not yet written:
 *   1. the FAT, with the clusters freed since the last sync still marked
 *      in use (end of chain), then a flush: new chains exist;
 *   2. the directories, then a flush: entries name the new chains;
 *   3. the FAT again with those clusters free, and FSInfo, then a flush.
 * File data went to the volume before (it is written at once). */
static int vfat_sync_locked(struct vfat *v) {
  if (v->base.read_only) return 0;
  int dirs = v->dirs_dirty;
  if (v->fat_any_dirty) {
    uint8_t *img = v->fat;
    if (v->npend) {
      if (!(img = malloc(v->fat_bytes))) return nomem(v);
      memcpy(img, v->fat, v->fat_bytes);
      for (uint32_t c = 2; c <= v->maxc; c++)
        if (bit_get(v->pend, c) && fat_decode(img, v->bits, c) == 0)
          fat_encode(img, v->bits, c, v->eoc);
    }
    int rc = fat_write_dirty(v, img);
    if (img != v->fat) free(img);
    if (rc < 0 || (dirs && dev_flush(v) < 0)) return -1;
  }
  if (dirs) {
    for (int b = -1; b < DIR_BUCKETS; b++)
      for (struct vdir *d = b < 0 ? v->root : v->dirs[b]; d; d = b < 0 ? NULL : d->next)
        if (d->any_dirty && dir_flush(v, d) < 0) return -1;
    v->dirs_dirty = 0;
  }
  if (v->fat_any_dirty) {
    if (v->npend) {
      if (dev_flush(v) < 0 || fat_write_dirty(v, v->fat) < 0) return -1;
      memset(v->pend, 0, (v->maxc + 8) / 8);
      v->npend = 0;
    }
    memset(v->fat_dirty, 0, v->fat_nsec);
    v->fat_any_dirty = 0;
  }
  if (v->fsi_ok && v->fsi_dirty && (v->fsi_free != v->free_count || v->fsi_next != v->next_hint)) {
    put32(v->fsi_buf + 488, v->free_count);
    put32(v->fsi_buf + 492, v->next_hint);
    if (dev_write(v, v->fsi_buf, v->bps, (uint64_t)v->fsi_sec * v->bps) < 0) return -1;
    v->fsi_free = v->free_count;
    v->fsi_next = v->next_hint;
  }
  v->fsi_dirty = 0;
  if (v->need_flush) {
    if (dev_flush(v) < 0) return -1;
    v->need_flush = 0;
  }
  return 0;
}

static int vfat_sync(struct fs *f, struct err *e) {
  struct vfat *v = VFAT(f);
  op_begin(v, "sync", "/", e);
  int rc = vfat_sync_locked(v);
  v->nundo = 0; /* sync changes no in-memory state to undo */
  return op_end(v, rc);
}

static void vfat_free(struct vfat *v) {
  if (!v) return;
  dir_free(v, v->root);
  for (int b = 0; b < DIR_BUCKETS; b++)
    while (v->dirs[b]) {
      struct vdir *d = v->dirs[b];
      v->dirs[b] = d->next;
      dir_free(v, d);
    }
  free(v->fat);
  free(v->fat_dirty);
  free(v->indeg);
  free(v->reg);
  free(v->pend);
  free(v->fsi_buf);
  free(v->undo);
  free(v->defer);
  free(v->drop);
  free(v->w1.f);
  free(v->w2.f);
  pthread_mutex_destroy(&v->lock);
  free(v);
}

static void vfat_close(struct fs *f) {
  struct vfat *v = VFAT(f);
  if (!v) return;
  struct err e;
  err_init(&e);
  if (vfat_sync(f, &e) < 0) log_warn("fs", "vfat: final sync failed: %s", e.message);
  err_clear(&e);
  vfat_free(v);
}

static const struct fs_ops vfat_ops = {
    .type = "vfat",
    .stat = vfat_stat,
    .lstat = vfat_lstat,
    .readdir = vfat_readdir,
    .read = vfat_read,
    .write = vfat_write,
    .truncate = vfat_truncate,
    .mkdir = vfat_mkdir,
    .rmdir = vfat_rmdir,
    .unlink = vfat_unlink,
    .rename = vfat_rename,
    .symlink = vfat_symlink,
    .readlink = vfat_readlink,
    .link = vfat_link,
    .chmod = vfat_chmod,
    .chown = vfat_chown,
    .utimens = vfat_utimens,
    .statvfs = vfat_statvfs,
    .sync = vfat_sync,
    .close = vfat_close,
};

/* ---- open -------------------------------------------------------------------------- */

static int is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

#define BAD(...) (fail(v, K_CORRUPT, __VA_ARGS__), -1)

/* The BPB: geometry, with the checks Linux makes and a few more. */
static int parse_bpb(struct vfat *v, const uint8_t *b, uint64_t devsize) {
  uint32_t bps = le16(b + 11), spc = b[13], reserved = le16(b + 14), nfats = b[16];
  uint32_t root_ent = le16(b + 17), tot16 = le16(b + 19), media = b[21], fat16 = le16(b + 22);
  uint32_t tot32 = le32(b + 32), fat32 = le32(b + 36);
  if (bps < 512 || bps > 4096 || !is_pow2(bps)) return BAD("bad bytes per sector %u", bps);
  if (!is_pow2(spc) || spc > 128) return BAD("bad sectors per cluster %u", spc);
  if ((uint64_t)bps * spc > 65536 * 2) return BAD("clusters of %u bytes", bps * spc);
  if (!reserved) return BAD("no reserved sector");
  if (!nfats) return BAD("no FAT");
  if (media != 0xF0 && media < 0xF8) return BAD("bad media byte 0x%02x", media);
  int is32 = fat16 == 0;
  uint32_t fat_secs = is32 ? fat32 : fat16;
  uint64_t total = tot16 ? tot16 : tot32;
  if (!fat_secs) return BAD("FAT of size 0");
  if (is32 && root_ent) return BAD("FAT32 with a fixed root directory");
  if (!is32 && !root_ent) return BAD("no root directory entries");
  uint32_t root_secs = (root_ent * 32 + bps - 1) / bps;
  uint64_t first_data = reserved + (uint64_t)nfats * fat_secs + root_secs;
  if (total <= first_data) return BAD("no data area (%llu sectors)", (unsigned long long)total);
  if (total * bps > devsize)
    return BAD("filesystem of %llu bytes on a %llu-byte device", (unsigned long long)(total * bps),
               (unsigned long long)devsize);
  uint64_t ncl = (total - first_data) / spc;
  if (!ncl) return BAD("no data cluster");
  v->bits = is32 ? 32 : ncl < 4085 ? 12 : 16;
  uint32_t limit = v->bits == 12 ? 0xFF6 : v->bits == 16 ? 0xFFF6 : 0x0FFFFFF6;
  if (ncl + 1 > limit) return BAD("%llu clusters for FAT%d", (unsigned long long)ncl, v->bits);
  uint64_t need = v->bits == 12 ? ((ncl + 2) * 3 + 1) / 2 : (ncl + 2) * (uint64_t)(v->bits / 8);
  if (need > (uint64_t)fat_secs * bps)
    return BAD("FAT too small for %llu clusters", (unsigned long long)ncl);
  v->bps = bps;
  v->cs = bps * spc;
  v->nfats = nfats;
  v->fat_secs = fat_secs;
  v->mirror = 1;
  v->active_fat = 0;
  v->nclusters = (uint32_t)ncl;
  v->maxc = (uint32_t)ncl + 1;
  v->root_off = (reserved + (uint64_t)nfats * fat_secs) * bps;
  v->data_off = first_data * bps;
  v->root_slots = root_ent;
  v->fat_nsec = (uint32_t)((need + bps - 1) / bps);
  v->fat_bytes = (size_t)v->fat_nsec * bps;
  v->eoc_min = v->bits == 12 ? 0xFF8 : v->bits == 16 ? 0xFFF8 : 0x0FFFFFF8;
  v->bad = v->eoc_min - 1;
  v->eoc = v->bits == 12 ? 0xFFF : v->bits == 16 ? 0xFFFF : 0x0FFFFFFF;
  if (is32) {
    uint32_t ext = le16(b + 40);
    if (le16(b + 42)) return BAD("FAT32 version %u", le16(b + 42));
    if (ext & 0x80) {
      v->mirror = 0;
      v->active_fat = ext & 0x0F;
      if (v->active_fat >= nfats) return BAD("active FAT %u of %u", v->active_fat, nfats);
    }
    v->root_cluster = le32(b + 44);
    if (!in_range(v, v->root_cluster)) return BAD("root cluster %u out of range", v->root_cluster);
    v->fsi_sec = le16(b + 48);
    if (b[66] == 0x29) v->serial = le32(b + 67);
  } else if (b[38] == 0x29) {
    v->serial = le32(b + 39);
  }
  v->fat0_off = (uint64_t)reserved * bps;
  if (is32 && v->fsi_sec && v->fsi_sec < reserved) {
    if (!(v->fsi_buf = malloc(bps))) return nomem(v);
    if (dev_read(v, v->fsi_buf, bps, (uint64_t)v->fsi_sec * bps) < 0) return -1;
    const uint8_t *s = v->fsi_buf;
    v->fsi_ok = le32(s) == 0x41615252 && le32(s + 484) == 0x61417272 && le32(s + 508) == 0xAA550000;
    v->fsi_free = le32(s + 488);
    v->fsi_next = le32(s + 492);
  }
  return 0;
}

int fs_vfat_open(struct vol *dev, int read_only, struct fs **out, struct err *e) {
  *out = NULL;
  struct vfat *v = calloc(1, sizeof *v);
  if (!v) {
    err_set(e, 500, FS_EIO, "vfat: Cannot allocate memory");
    return -1;
  }
  pthread_mutex_init(&v->lock, NULL);
  v->base.ops = &vfat_ops;
  v->base.read_only = read_only || vol_read_only(dev);
  v->dev = dev;
  v->e = e;
  v->op = "mount";
  v->path = "vfat";
  uint8_t boot[512];
  if (vol_size(dev) < 512) {
    fail(v, K_CORRUPT, "device of %llu bytes", (unsigned long long)vol_size(dev));
    goto fail;
  }
  if (dev_read(v, boot, sizeof boot, 0) < 0 || parse_bpb(v, boot, vol_size(dev)) < 0) goto fail;
  /* the active FAT, its in-degrees and the free count */
  size_t bitmap = (v->maxc + 8) / 8;
  v->fat = malloc(v->fat_bytes);
  v->fat_dirty = calloc(v->fat_nsec, 1);
  v->indeg = calloc((size_t)v->maxc + 1, 1);
  v->reg = calloc(bitmap, 1);
  v->pend = calloc(bitmap, 1);
  if (!v->fat || !v->fat_dirty || !v->indeg || !v->reg || !v->pend) {
    nomem(v);
    goto fail;
  }
  uint64_t fat_off = v->fat0_off + (uint64_t)v->active_fat * v->fat_secs * v->bps;
  if (dev_read(v, v->fat, v->fat_bytes, fat_off) < 0) goto fail;
  for (uint32_t c = 2; c <= v->maxc; c++) {
    uint32_t x = fat_get(v, c);
    if (!x)
      v->free_count++;
    else if (in_range(v, x) && v->indeg[x] != 255)
      v->indeg[x]++;
  }
  v->next_hint = v->fsi_ok && in_range(v, v->fsi_next) ? v->fsi_next : 2;
  /* the root directory */
  if (v->bits == 32) {
    bit_set(v->reg, v->root_cluster); /* no entry may claim it */
    if (v->indeg[v->root_cluster]) {
      fail(v, K_CORRUPT, "the root directory's cluster %u is inside another chain",
           v->root_cluster);
      goto fail;
    }
    if (fat_get(v, v->root_cluster) == 0) {
      fail(v, K_CORRUPT, "the root directory's cluster %u is marked free", v->root_cluster);
      goto fail;
    }
    if (!(v->root = dir_load(v, v->root_cluster))) goto fail;
    /* dir_load put it in the cache: the root lives outside it */
    v->dirs[v->root_cluster % DIR_BUCKETS] = v->root->next;
    v->root->next = NULL;
  } else {
    if (!(v->root = dir_alloc(v, 0, v->root_slots))) goto fail;
    v->root->fixed = 1;
    if (dev_read(v, v->root->raw, (size_t)v->root_slots * 32, v->root_off) < 0 ||
        dir_parse(v, v->root) < 0)
      goto fail;
  }
  v->op = v->path = NULL;
  v->e = NULL;
  *out = &v->base;
  return 0;
fail:
  v->e = NULL;
  vfat_free(v);
  return -1;
}
