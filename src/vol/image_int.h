/* image_int.h — private to the golden image code in src/vol: what image.c
 * (the import/export pipeline: checksums, sparse writes, progress, the
 * stored-zip export), zip.c (the zip reader) and qemu.c (the qemu-img runner)
 * share. Nothing else includes this; the interface is image.h. */
#ifndef STREAMER_IMAGE_INT_H
#define STREAMER_IMAGE_INT_H

#include <gnutls/crypto.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "util/util.h"
#include "vol/image.h"

#define CHUNK (1u << 20) /* read / inflate / write unit */

/* ---- little helpers (image.c) -------------------------------------------- */

/* 500 OUT_OF_MEMORY; returns -1. */
int image_oom(struct err *e);
/* 500 VOL_IO_ERROR "<what> <path>: strerror(errnum)"; returns -1. */
int image_io_error(struct err *e, int errnum, const char *what, const char *path);
/* The largest image accepted (STREAMER_IMAGE_MAX_BYTES, default 16 TiB). */
uint64_t image_max_size(void);
/* 400 IMAGE_NOT_A_DISK unless size is more than 0 bytes and a whole number of
 * 512-byte sectors; `what` names the image in the message. */
int image_check_disk_size(const char *what, uint64_t size, struct err *e);
/* Bytes the volume store keeps free (STREAMER_IMAGE_RESERVE_BYTES, default 64 MiB). */
uint64_t image_space_reserve(void);
/* Has fd's file system more than the reserve free (or cannot it tell)? */
int image_free_space_ok(int fd);

/* ---- one import's temp file (image.c) -------------------------------------- */

/* What one import holds; released by import_cleanup. */
struct import {
  struct vol_store *vs;
  const char *id;
  char what[128];
  char *tmp;  /* the temp path */
  int tmp_fd; /* open and flock'ed: ours to unlink */
  int src_fd;
  unsigned char *buf;
  char *qemu, *src_arg, *dst_arg; /* qemu-img and its file arguments */
};

/* Create (or take over a crashed import's) DIR/golden/.<id>.tmp, locked
 * (409 GOLDEN_VOLUME_BUSY if another import holds it), emptied; 409
 * VOL_EXISTS if the golden volume appeared meanwhile. */
int import_open_temp(struct import *im, struct err *e);
/* 507 unless the store has more than its reserve free. */
int import_check_space(struct import *im, struct err *e);
/* Close everything; failed: unlink the temp file first (still locked: ours). */
void import_cleanup(struct import *im, int failed);

/* ---- progress (image.c) -------------------------------------------------- */

struct progress {
  image_progress_fn fn;
  void *arg;
  uint64_t total, next;
  int reported_end;
};

/* Report done of total when it is at least 1% past the last report (and the end once). */
void progress_at(struct progress *p, uint64_t done);

/* ---- the sink: checksums, zero detection, sparse writes (image.c) -------- */

struct hasher;

struct sink {
  int fd;               /* the temp file; -1 = checksums only */
  const char *path;     /* for messages */
  const char *what;     /* "golden image <id>" */
  uint64_t size;        /* bytes expected in all (a bound while unknown) */
  uint64_t off;         /* bytes received so far */
  uint64_t unchecked;   /* bytes written since the last free-space check */
  uint64_t next_check;  /* check again when unchecked reaches this */
  uint64_t wb_from;     /* writeback started for the data before this offset */
  uint64_t wb_pending;  /* data bytes written since */
  gnutls_hash_hd_t sha; /* NULL: SHA-256 done by a hasher following the file */
  uLong crc;
  struct progress *prog;
  uint64_t prog_base;    /* progress already reported by earlier passes */
  struct hasher *follow; /* told how far the file is complete, or NULL */
};

/* hash: SHA-256 in the sink (else s->sha is NULL). -1 with e (no SHA-256). */
int sink_init(struct sink *s, int fd, const char *path, const char *what, uint64_t size,
              struct progress *prog, uint64_t prog_base, int hash, struct err *e);
/* Release the SHA-256; its hex digest into hex unless NULL. */
void sink_done(struct sink *s, char hex[65]);
/* Take the next len bytes of the raw image. zero: they are known to be zeros
 * (p may be NULL). */
int sink_put(struct sink *s, const unsigned char *p, size_t len, int zero, struct err *e);
/* Feed [base, base+size) of fd to the sink, skipping the source's holes
 * (SEEK_DATA) when the file system can tell them; buf holds CHUNK bytes. */
int sink_copy_fd(struct sink *s, int fd, const char *src, uint64_t base, uint64_t size,
                 unsigned char *buf, struct err *e);

/* The sink on a second thread, up to SINK_SLOTS chunks behind the producer:
 * a ring of buffers (each a 32 KiB window for the inflater, then a chunk)
 * filled in order by the producer and taken in order by the worker, so that
 * a run of data chunks (slow: written) does not stall the producer while the
 * zero chunks around it are fast. If the thread cannot start, the sink runs
 * inline. */
#define SINK_SLOTS 16
#define SINK_WINDOW (32u << 10)
struct sink_worker {
  struct sink *s;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned char *slot[SINK_SLOTS]; /* SINK_WINDOW + CHUNK bytes each */
  const unsigned char *job[SINK_SLOTS];
  size_t job_len[SINK_SLOTS];
  int head, count; /* jobs queued or being processed: slots head, head + 1, ... */
  int quit, failed, started;
  struct err err;
};
/* -1 (500 OUT_OF_MEMORY) if the buffers cannot be had. */
int sink_worker_start(struct sink_worker *w, struct sink *s, struct err *e);
/* The buffer the next chunk goes into (waits for a free one): its chunk
 * starts at SINK_WINDOW. */
unsigned char *sink_worker_next(struct sink_worker *w);
/* Queue n bytes at p, inside the buffer sink_worker_next gave (p NULL: n
 * zero bytes, known to be zeros: holes, not read); -1 with e set if a chunk
 * failed. */
int sink_worker_put(struct sink_worker *w, const unsigned char *p, size_t n, struct err *e);
/* Wait for the last chunk and stop; -1 with e set if a chunk failed. */
int sink_worker_finish(struct sink_worker *w, struct err *e);

/* ---- the hasher: SHA-256 of a file behind its writer (image.c) ----------- *
 * A thread that hashes [0, frontier) of fd as the sink advances the frontier.
 * Zeros are hashed from a static buffer without reading them: a stream's
 * sink marks the 64 KiB granules it wrote data into (the data map), so the
 * hasher never asks the file system while it is being written (lseek
 * SEEK_DATA takes the inode lock that writes need); without a map (a finished
 * file) the holes come from SEEK_DATA. Data is read back from the page cache. */
#define HASH_GRANULE (64u << 10)
struct hasher {
  int fd;
  const char *path, *what;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t frontier;   /* bytes of the file complete */
  uint64_t size;       /* the final size, once final */
  int final;           /* size is known: hash up to it and stop */
  int wait_final;      /* start hashing only once final */
  int stop;            /* give up */
  const int *ext_stop; /* the waiter's stop flag (hasher_wait) */
  int started, done, failed, idle;
  uint64_t *map; /* the data map: bit g = granule g holds data (NULL: use SEEK_DATA) */
  size_t map_words;
  int use_map;
  uint64_t hashed; /* progress (atomic) */
  struct err err;
  char hex[65];
};
/* Start the thread; idle: at SCHED_IDLE priority until hasher_final; map:
 * the writer marks its data (hasher_mark); wait_final: no hashing before
 * hasher_final. */
int hasher_start(struct hasher *h, int fd, const char *path, const char *what, int idle, int map,
                 int wait_final, struct err *e);
/* [off, off+n) of the file holds data (before the frontier passes it). */
int hasher_mark(struct hasher *h, uint64_t off, uint64_t n);
void hasher_advance(struct hasher *h, uint64_t frontier);
/* The file is complete at `size` bytes: hash the rest at normal priority. */
void hasher_final(struct hasher *h, uint64_t size);
/* Wait for the digest (hex), reporting progress now and then; -1 with e
 * (503 CHECKSUM_INTERRUPTED when *stop became non-zero). Joins the thread. */
int hasher_wait(struct hasher *h, const int *stop, struct progress *prog, char hex[65],
                struct err *e);
/* Stop it (if running) and join. */
void hasher_cancel(struct hasher *h);

/* ---- the zip reader (zip.c) ---------------------------------------------- */

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define SIG_DESCRIPTOR 0x08074b50u

struct zip_member {
  char name[256];
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize;
  uint64_t data_off; /* first byte of the member's (compressed) data */
  uint64_t limit;    /* the data and its descriptor end at or before this (the central directory) */
};

/* Where zip_locate reads: a file (fd >= 0), or what a stream kept of a zip:
 * its first head_len bytes and the tail_len bytes at tail_off. */
struct zip_reader {
  int fd;
  const unsigned char *head;
  size_t head_len;
  const unsigned char *tail;
  uint64_t tail_off;
  size_t tail_len;
};

/* 400 IMAGE_ZIP_PATH unless name (n bytes) is a plain file name: not empty, not
 * a directory (by its trailing slash or ext_attr for made_by), no path
 * separator or control character, at most 255 bytes, not "." or "..". */
int zip_member_name_ok(const char *what, const unsigned char *name, size_t n, uint32_t ext_attr,
                       uint16_t made_by, struct err *e);
/* Locate and vet the one member of the zip (fsize bytes) that r reads. */
int zip_locate(const struct zip_reader *r, uint64_t fsize, const char *src, const char *what,
               struct zip_member *m, struct err *e);
/* Stream the member's data (of the zip file fd) through the sink; sizes and
 * CRC checked. */
int zip_extract(int fd, const char *src, const struct zip_member *m, struct sink *s, struct err *e);
/* 400 IMAGE_CRC_MISMATCH unless crc is the member's. */
int zip_check_crc(const struct zip_member *m, uint32_t crc, const char *label, struct err *e);
/* Vet a local header (30 + name + extra bytes at lh) as the start of a
 * streamed zip: name, encryption, method, and the sizes when it declares
 * them (*sized; else a data descriptor follows). Fills m's name, flags,
 * method, crc, sizes and data_off. */
int zip_local_header(const unsigned char *lh, size_t n, const char *what, struct zip_member *m,
                     int *sized, struct err *e);

/* Inflating a pushed deflate stream into a sink worker (zip.c). */
struct zinf {
  struct inflater *z;
  unsigned char *in; /* unconsumed input */
  size_t in_len;
  unsigned char *out; /* a sink worker buffer: the window, then a chunk */
  size_t pos;
  struct sink_worker *w;
  uint64_t produced; /* bytes handed to the sink */
  uint64_t limit;    /* produced may not pass it: IMAGE_ZIP_BOMB */
  int limit_is_max;  /* the limit is the largest image, not a declaration */
  uint64_t consumed; /* compressed bytes the stream took */
  int ended;         /* the final block ended */
  const char *label;
  struct progress *prog; /* told about every chunk (NULL: none) */
  uint64_t prog_base;
};
int zinf_init(struct zinf *zi, struct sink_worker *w, uint64_t limit, const char *label,
              struct err *e);
/* Push n more compressed bytes (last: no more will come). After the stream's
 * end the rest is ignored (ended, consumed). -1 with e on bad data. */
int zinf_push(struct zinf *zi, const unsigned char *p, size_t n, int last, struct err *e);
void zinf_free(struct zinf *zi);

/* ---- the inflater (inflate.c): raw deflate, streaming ------------------- */

#define INFLATE_WINDOW SINK_WINDOW /* history a call needs before its output: 32 KiB */
#define INFLATE_LIT_TABLE 2560u    /* root 1024 + subtables: bounds for valid codes */
#define INFLATE_DIST_TABLE 640u    /* root 256 + subtables */

enum {
  INFLATE_OK = 0,    /* (internal) */
  INFLATE_END,       /* the final block ended; *in is just past the stream */
  INFLATE_FULL,      /* the output is full: call again with more room */
  INFLATE_MORE,      /* more input is needed (only when not last) */
  INFLATE_ERROR,     /* invalid data: msg says what (zlib's words) */
  INFLATE_TRUNCATED, /* the final input ends inside the stream */
};

struct inflater {
  uint64_t bitbuf;
  unsigned bitcnt; /* fewer than 8 between calls */
  int state, final;
  uint32_t stored_left;         /* bytes left of a stored block */
  unsigned copy_len, copy_dist; /* a match cut by the end of the output */
  uint64_t total_out;
  const char *msg;
  uint32_t lit[INFLATE_LIT_TABLE];
  uint32_t dist[INFLATE_DIST_TABLE];
};

void inflater_init(struct inflater *z);
/* Decode from *in (*in_len bytes; last: no more input will come) into
 * out[*pos, cap); out[*pos - min(total_out, INFLATE_WINDOW), *pos) must hold
 * the last bytes produced. Advances *in, *in_len and *pos. Unconsumed input
 * must be passed again (with more after it) on the next call. */
int inflater_run(struct inflater *z, const unsigned char **in, size_t *in_len, int last,
                 unsigned char *out, size_t *pos, size_t cap);

/* ---- qemu-img (qemu.c) --------------------------------------------------- */

/* qemu-img's path (malloc'd), from STREAMER_QEMU_IMG or PATH; NULL if none. */
char *qemu_img_find(void);
/* Vet an image with `qemu-img info` (format forced, resource-limited): its
 * virtual size, and no file but itself that qemu would open. */
int qemu_info(const char *qemu, const char *fmt, const char *src_arg, const char *what,
              uint64_t *vsize, struct err *e);
/* `qemu-img convert -O raw -n --target-is-zero` of src_arg into dst_arg (open
 * as dst_fd, already vsize bytes), reporting to prog; stopped with 507
 * INSUFFICIENT_STORAGE when the store runs down to its reserve. */
int qemu_convert(const char *qemu, const char *fmt, const char *src_arg, const char *dst_arg,
                 int dst_fd, uint64_t vsize, const char *what, struct progress *prog,
                 struct err *e);

#endif
