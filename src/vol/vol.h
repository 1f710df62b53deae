/* vol.h — block volumes: the one I/O interface every other module uses
 * (struct vol), golden volumes (read-only, sparse raw files) and OS volumes
 * (copy-on-write clones of a golden volume, or empty), with read-only
 * point-in-time snapshots. See src/vol/README.md and docs/formats/osvolume.md.
 * Must not know about HTTP, SCSI, plan scripts or the store. */
#ifndef STREAMER_VOL_H
#define STREAMER_VOL_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct vol;

/* The operations of one kind of volume. All are safe to call from many
 * threads at once on the same volume. Offsets and lengths are bytes; any
 * offset and length work (512-byte alignment is the fast common case).
 * Reads and writes beyond vol_size fail (400 "VOL_OUT_OF_RANGE"). */
struct vol_ops {
  int (*pread)(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e);
  int (*pwrite)(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e);
  /* Make every completed write durable (and the metadata that finds it). */
  int (*flush)(struct vol *v, struct err *e);
  /* The range reads back as zeros afterwards; its space is freed where possible. */
  int (*discard)(struct vol *v, uint64_t off, uint64_t len, struct err *e);
  /* Bytes of storage this volume itself holds (not its golden volume). */
  uint64_t (*allocated)(struct vol *v);
  void (*close)(struct vol *v);
  /* Optional (may be NULL): is the byte at `off` mapped (VOL_MAPPED) or
   * deallocated (VOL_DEALLOCATED: reads as zeros and holds no storage)?
   * *run = bytes from off (1..len) with the same answer; -1 on error. */
  int (*block_status)(struct vol *v, uint64_t off, uint64_t len, uint64_t *run, struct err *e);
};

struct vol {
  const struct vol_ops *ops;
  uint64_t size;
  int read_only; /* writes and discards fail with 400 "VOL_READ_ONLY" */
};

static inline int vol_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  return v->ops->pread(v, buf, len, off, e);
}
static inline int vol_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off,
                             struct err *e) {
  return v->ops->pwrite(v, buf, len, off, e);
}
static inline int vol_flush(struct vol *v, struct err *e) { return v->ops->flush(v, e); }
static inline int vol_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  return v->ops->discard(v, off, len, e);
}
static inline uint64_t vol_size(const struct vol *v) { return v->size; }
static inline int vol_read_only(const struct vol *v) { return v->read_only; }
static inline uint64_t vol_allocated(struct vol *v) { return v->ops->allocated(v); }
enum { VOL_MAPPED = 0, VOL_DEALLOCATED = 1 };
/* block_status of a file's bytes from its holes (SEEK_DATA / SEEK_HOLE). */
int vol_fd_block_status(int fd, uint64_t off, uint64_t len, uint64_t *run);
static inline void vol_close(struct vol *v) {
  if (v) v->ops->close(v);
}

/* Non-blocking reads for event loops: while a thread sets vol_nowait, reads
 * that would have to wait for the disk fail at once (errno EAGAIN, error
 * VOL_IO_ERROR) and set vol_would_block; the caller then clears both and
 * repeats the read on a thread that may block. Writes are not affected. */
extern __thread int vol_nowait, vol_would_block;

/* A plain file (or block device) as a volume; read_only opens it O_RDONLY. */
int vol_file_open(const char *path, int read_only, struct vol **out, struct err *e);

/* ---- the volume directory ---------------------------------------------------
 * DIR/golden/<id>.raw     golden volumes (sparse raw, read-only once complete)
 * DIR/os/<id>/            OS volumes (docs/formats/osvolume.md)
 * Ids are what the caller chooses (UUIDs): [A-Za-z0-9-]{1,64}. */
struct vol_store;
int vol_store_open(struct vol_store **out, const char *dir, struct err *e);
void vol_store_close(struct vol_store *vs);
const char *vol_store_dir(struct vol_store *vs);

/* Path of golden volume `id` (whether or not it exists); malloc'd. Importers
 * write DIR/golden/.<id>.tmp and rename it there (vol_golden_commit). */
char *vol_golden_path(struct vol_store *vs, const char *id);
char *vol_golden_tmp_path(struct vol_store *vs, const char *id);
/* fsync the temp file, rename it to the golden path (made read-only,
 * mode 0400), fsync the directory. */
int vol_golden_commit(struct vol_store *vs, const char *id, struct err *e);
int vol_golden_open(struct vol_store *vs, const char *id, struct vol **out, struct err *e);
int vol_golden_exists(struct vol_store *vs, const char *id);
/* Refused (409 "GOLDEN_VOLUME_IN_USE", message listing the OS volume ids)
 * while clones exist. */
int vol_golden_delete(struct vol_store *vs, const char *id, struct err *e);
/* OS volume ids cloned from golden `id`: a NULL-terminated malloc'd array. */
char **vol_golden_clones(struct vol_store *vs, const char *id);

/* Create OS volume `id` of `size` bytes as a clone of golden `golden_id`
 * (NULL: an empty volume). O(1) in the size. size 0 = the golden size. */
int vol_os_create(struct vol_store *vs, const char *id, const char *golden_id, uint64_t size,
                  struct err *e);
int vol_os_open(struct vol_store *vs, const char *id, struct vol **out, struct err *e);
int vol_os_exists(struct vol_store *vs, const char *id);
/* The volume must not be open. Never touches the golden volume. */
int vol_os_delete(struct vol_store *vs, const char *id, struct err *e);
/* A read-only point-in-time view of an open OS volume; the OS volume keeps
 * working (writes after this call are not seen by the snapshot). Close the
 * snapshot with vol_close; it does not survive a restart. */
int vol_os_snapshot(struct vol *os, struct vol **snap, struct err *e);

void vol_strings_free(char **v);

/* ---- throwaway overlays (overlay.c) ----------------------------------------
 * A writable view of `base` (borrowed: it must outlive the overlay, which
 * never writes to it): writes and discards are kept in memory per 4 KiB
 * cluster and read back, everything else reads from the base. At most
 * `max_bytes` of memory (0 = VOL_OVERLAY_DEFAULT_MAX); a write or discard
 * that would need more fails whole with 507 VOL_OVERLAY_FULL. vol_close
 * forgets everything written. For validating build plans. */
#define VOL_OVERLAY_DEFAULT_MAX (1ull << 30)
int vol_overlay_open(struct vol *base, uint64_t max_bytes, struct vol **out, struct err *e);
/* Writes and discards the overlay refused at its limit (0 for other volumes). */
uint64_t vol_overlay_refused(struct vol *overlay);

#endif
