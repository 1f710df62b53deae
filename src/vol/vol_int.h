/* vol_int.h — private to src/vol: the store layout, shared I/O helpers, the OS
 * volume header (docs/formats/osvolume.md) and the in-memory OS volume that
 * osvol.c and snapshot.c share. Nothing outside src/vol includes this. */
#ifndef STREAMER_VOL_INT_H
#define STREAMER_VOL_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"
#include "vol/vol.h"

/* ---- the store ----------------------------------------------------------- */
struct vol_store {
  char *dir;        /* DIR */
  char *golden_dir; /* DIR/golden */
  char *os_dir;     /* DIR/os */
  /* Within this process, clone creation (shared) against golden deletion
   * (exclusive): a golden volume cannot vanish between a clone's check that
   * it exists and the clone's creation, nor between "no clones" and unlink. */
  pthread_rwlock_t lock;
};

/* [A-Za-z0-9-]{1,64} */
int vol_id_valid(const char *id);

/* ---- shared helpers (vol.c) -------------------------------------------- */
/* 400 VOL_OUT_OF_RANGE unless [off, off+len) lies inside the volume. */
int vol_check_range(const struct vol *v, uint64_t off, uint64_t len, struct err *e);
/* 400 VOL_READ_ONLY when v is read-only; `what` names the operation. */
int vol_check_writable(const struct vol *v, const char *what, struct err *e);
/* 500 VOL_IO_ERROR "<formatted>: strerror(errnum)"; returns -1. */
int vol_err_io(struct err *e, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* pread until len bytes or end of file (the rest is zero-filled); 0 or -1 with errno. */
int vol_read_full(int fd, void *buf, size_t len, uint64_t off);
/* pwrite all len bytes; 0 or -1 with errno. */
int vol_write_full(int fd, const void *buf, size_t len, uint64_t off);
/* fsync a directory by path; 0 or -1 with errno. */
int vol_fsync_dir(const char *path);
/* Whole buffer zero? */
int vol_is_zero(const void *buf, size_t len);

/* ---- the OS volume header (osformat.c) ------------------------------- */
#define VOL_OS_MAGIC "STRMOSV1"
#define VOL_OS_VERSION 1u
#define VOL_OS_HEADER_SIZE 4096u
#define VOL_OS_CLUSTER_SIZE 4096u
#define VOL_OS_CLUSTER_SHIFT 12
#define VOL_OS_BITMAP_PAGE 4096u /* bitmap bytes written as one unit */
#define VOL_ID_MAX 64

struct vol_os_header {
  uint32_t version;
  uint32_t cluster_size;
  uint64_t size;        /* bytes of the OS volume */
  uint64_t golden_size; /* bytes of the golden volume (0 when empty) */
  uint64_t bitmap_off;  /* byte offset of the bitmap in meta */
  uint64_t bitmap_len;  /* bytes of bitmap (a multiple of VOL_OS_BITMAP_PAGE) */
  uint64_t created_ms;
  char golden_id[VOL_ID_MAX + 1]; /* "" = empty volume */
  char id[VOL_ID_MAX + 1];
};

#define vol_crc32c util_crc32c
/* Fill h for a new volume (bitmap geometry computed from size). */
void vol_os_header_init(struct vol_os_header *h, const char *id, const char *golden_id,
                        uint64_t size, uint64_t golden_size);
/* Serialize to exactly VOL_OS_HEADER_SIZE bytes (with its CRC). */
void vol_os_header_encode(const struct vol_os_header *h, unsigned char out[VOL_OS_HEADER_SIZE]);
/* Parse and validate (magic, version, CRC, geometry); 500 VOL_CORRUPT naming
 * `path` and the field at fault. */
int vol_os_header_decode(const unsigned char in[VOL_OS_HEADER_SIZE], const char *path,
                         struct vol_os_header *h, struct err *e);
/* Read and decode the header of the meta file at fd. */
int vol_os_header_read(int fd, const char *path, struct vol_os_header *h, struct err *e);

/* ---- fault injection ------------------------------------------------------
 * Test hook (tests/unit/test_vol_crash.c records a journal with it to replay
 * power losses): called after each successful write and hole punch of an OS
 * volume's data or meta file, after each preallocation of the data file
 * (PREALLOC: blocks reserved, content unchanged), and before (SYNC_START) and
 * after (SYNC) each fdatasync of them. NULL in production. */
enum vol_io_kind { VOL_IO_WRITE, VOL_IO_PUNCH, VOL_IO_PREALLOC, VOL_IO_SYNC_START, VOL_IO_SYNC };
enum vol_io_file { VOL_IO_DATA, VOL_IO_META };
extern void (*vol_io_hook)(enum vol_io_kind kind, enum vol_io_file file, const void *buf,
                           uint64_t len, uint64_t off);

/* ---- the OS volume in memory (osvol.c, snapshot.c) ------------------- */
#define VOL_OS_STRIPES 256 /* per-cluster lock stripes; a power of two */

/* Preallocation of the data file (osvol.c): a first write into a chunk of
 * this many clusters where the volume owns no cluster yet first reserves the
 * whole chunk (fallocate, unwritten extents). A multiple of 64 (whole bitmap
 * words); 0 turns preallocation off. Read when a volume is opened; tests and
 * benchmarks may change it. */
#define VOL_OS_PREALLOC_DEFAULT 256u /* 1 MiB */
extern uint32_t vol_os_prealloc_clusters;

struct vol_snap;

/* Shared state of one open OS volume. The handle the caller holds (`v`) and
 * every open snapshot hold a reference; the last one frees it. */
struct osvol {
  struct vol v; /* must be first: the live handle */
  struct vol_os_header hdr;
  char *dir;       /* DIR/os/<id> */
  char *data_path; /* DIR/os/<id>/data */
  char *meta_path; /* DIR/os/<id>/meta */
  int data_fd;
  int meta_fd;        /* holds flock(LOCK_EX) while open */
  struct vol *golden; /* NULL for an empty volume */
  uint64_t golden_size;
  uint64_t clusters;
  /* Bitmap words per preallocation chunk (vol_os_prealloc_clusters / 64);
   * 0 = off, also set when the file system cannot preallocate. */
  uint64_t prealloc_words;
  /* Allocation bitmap: bit c set = the volume owns cluster c (data file).
   * Bits only go 0 -> 1; set with atomic OR, read with atomic loads. */
  uint64_t *bitmap;
  uint64_t bitmap_words;
  /* One flag per bitmap page: set when a bit in it went 0 -> 1 since the
   * page was last captured by a flush. */
  unsigned char *dirty;
  uint64_t dirty_pages;
  int any_dirty;              /* hint: some page may be dirty */
  int unflushed;              /* a write or discard completed since the last flush */
  pthread_mutex_t flush_lock; /* one flush at a time (see osvol_flush) */
  pthread_mutex_t stripes[VOL_OS_STRIPES];
  /* Writers and discards hold it shared for their whole duration; creating
   * or closing a snapshot holds it exclusive, so the snapshot list is stable
   * during any write and a snapshot is taken between writes, never inside one. */
  pthread_rwlock_t snap_lock;
  struct vol_snap *snaps; /* open snapshots (list), under snap_lock */
  int nsnaps;
  pthread_mutex_t ref_lock;
  int refs;
};

static inline int osvol_owns(const struct osvol *o, uint64_t c) {
  return (__atomic_load_n(&o->bitmap[c >> 6], __ATOMIC_ACQUIRE) >> (c & 63)) & 1;
}
static inline pthread_mutex_t *osvol_stripe(struct osvol *o, uint64_t c) {
  return &o->stripes[c & (VOL_OS_STRIPES - 1)];
}
/* Current content of cluster c of the live volume (owned: data file; else the
 * golden volume, zeros past its end). Caller holds c's stripe lock or
 * otherwise knows the cluster is not changing. */
int osvol_read_cluster(struct osvol *o, uint64_t c, void *buf, struct err *e);
/* Read [off, off+len) of the live volume without range checks or locks. */
int osvol_read_live(struct osvol *o, void *buf, size_t len, uint64_t off, struct err *e);
void osvol_unref(struct osvol *o);
/* Lock / unlock the stripes of clusters [c, c+n), in ascending stripe order
 * (all of them when n >= VOL_OS_STRIPES). Whoever holds several stripes
 * takes them this way, so no two holders deadlock. */
void osvol_lock_stripes(struct osvol *o, uint64_t c, uint64_t n);
void osvol_unlock_stripes(struct osvol *o, uint64_t c, uint64_t n);
/* Is v an OS volume's live handle? */
int osvol_is(const struct vol *v);

/* snapshot.c: before cluster c of the live volume changes (caller holds c's
 * stripe lock and snap_lock shared), copy its current content into every open
 * snapshot that has not saved it yet. `cur` is the content if the caller has
 * already read it, else NULL. */
int vol_snap_save_cluster(struct osvol *o, uint64_t c, const void *cur, struct err *e);
/* Does any open snapshot still need cluster c saved? (snap_lock held shared) */
int vol_snap_needs(struct osvol *o, uint64_t c);

#endif
