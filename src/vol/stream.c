/* stream.c — streamed golden image import (docs/formats/golden-image.md,
 * "Streamed imports"): an upload's bytes go into the golden volume's temp
 * file while they arrive, with no upload file and no second pass.
 *
 *   raw       copied in 1 MiB chunks to the sink (image.c) on its worker
 *             thread: zero blocks stay holes, data is written and CRC'd.
 *   HPE zip   the local header is vetted as soon as it is complete; a deflate
 *             member is inflated (zinf, zip.c) into the sink as it comes; a
 *             stored one is copied, held back by the size of the largest
 *             possible zip directory when its size is only given after it
 *             (data descriptor). The last bytes of the stream are kept, and
 *             at the end the zip's directory is vetted by zip_locate exactly
 *             as for a zip file (over the kept head and tail), then matched
 *             against what was streamed: sizes, CRC-32, and nothing between
 *             the data and the directory.
 *
 * SHA-256 runs on a third thread, the hasher (image.c), which follows the
 * writes through the file at idle priority while the upload arrives and at
 * normal priority once it has: the commit (durable data, CRC-32 matched,
 * renamed into place) does not wait for it. image_stream_sha256 does.
 *
 * The first error removes the temp file at once; the stream then only keeps
 * its tail, so that the error finally reported is the one a zip file would
 * give (the directory's verdict comes first, as zip_locate runs first there). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol/image_int.h"

/* The zip's end: a data descriptor (24), the central directory's one entry
 * (46 + 3 × 65535), zip64 end record and locator (76), end record with its
 * comment (22 + 65535). */
#define TAIL_KEEP (24u + 46u + 3u * 65535u + 76u + 22u + 65535u)
#define TAIL_CAP (TAIL_KEEP + (2u << 20)) /* moved down once per 2 MiB appended */
#define HEAD_MAX (30u + 2u * 65535u)

enum { S_HEAD, S_DATA, S_TRAILER };

struct image_stream {
  struct import im;
  char id[65];
  enum image_format fmt;
  int state;
  uint64_t total; /* bytes of the file so far */
  int failed;     /* the temp file is gone; e holds the first error */
  struct err err;
  int committed;
  int hold;        /* STREAMER_IMAGE_HASH=hold */
  char label[400]; /* "golden image <id>: the zip member "<name>"" */

  /* the pipeline: sink on its worker thread, hasher behind it */
  struct sink sink;
  int sink_on;
  struct sink_worker w;
  int worker_on;
  struct hasher h;
  unsigned char *chunk; /* raw and stored data: the worker buffer being filled, or NULL */
  size_t fill;
  uint64_t fed; /* bytes of the image handed to the sink (raw, stored) */

  /* zip */
  unsigned char *head; /* the local header, then kept for zip_locate */
  size_t head_len, head_need;
  struct zip_member lm; /* what the local header says */
  int sized;            /* ... including sizes and CRC-32 */
  struct zinf zi;
  int zi_on;
  unsigned char *tail; /* the last bytes of the file: tail_len bytes from tail_off */
  size_t tail_len;
  uint64_t tail_off;
};

static int stream_oom(struct err *e) { return image_oom(e); }

/* ---- the tail ---------------------------------------------------------------
 * A buffer of TAIL_KEEP + 2 MiB: bytes are appended; when it is full the
 * oldest are dropped so that TAIL_KEEP remain. A stored member whose size
 * comes after it is fed from the bytes about to be dropped. */

static int feed(struct image_stream *s, const unsigned char *p, size_t n, struct err *e);

static int tail_append(struct image_stream *s, const unsigned char *p, size_t n, struct err *e) {
  while (n > 0) {
    if (s->tail_len == TAIL_CAP) {
      size_t drop = s->tail_len - TAIL_KEEP;
      /* A stored member of unknown size: what leaves the tail is data. */
      if (!s->failed && s->fmt == IMAGE_HPE_ZIP && s->state == S_DATA && s->lm.method == 0 &&
          !s->sized) {
        uint64_t data_end = s->tail_off + drop;
        uint64_t from = s->lm.data_off + s->fed;
        if (data_end > from &&
            feed(s, s->tail + (from - s->tail_off), (size_t)(data_end - from), e) < 0)
          return -1;
      }
      memmove(s->tail, s->tail + drop, TAIL_KEEP);
      s->tail_len = TAIL_KEEP;
      s->tail_off += drop;
    }
    size_t k = TAIL_CAP - s->tail_len;
    if (k > n) k = n;
    memcpy(s->tail + s->tail_len, p, k);
    s->tail_len += k;
    p += k;
    n -= k;
  }
  return 0;
}

/* ---- the data path ------------------------------------------------------------ */

/* When the SHA-256 runs: "idle" (default: following the writes at idle
 * priority, normal priority from the commit on), "follow" (following at
 * normal priority), "after" (from the commit on), for measurements
 * (docs/BENCHMARKS.md); "hold" (not before the waiter gives up: a checksum
 * left pending, for tests). STREAMER_IMAGE_HASH. */
enum { HASH_IDLE, HASH_FOLLOW, HASH_AFTER, HASH_HOLD };
static int hash_mode(void) {
  const char *m = getenv("STREAMER_IMAGE_HASH");
  if (m && !strcmp(m, "follow")) return HASH_FOLLOW;
  if (m && !strcmp(m, "after")) return HASH_AFTER;
  if (m && !strcmp(m, "hold")) return HASH_HOLD;
  return HASH_IDLE;
}

/* Start the sink (and its worker and the hasher) for an image of `size`
 * bytes (known: the temp file gets that length now), or of at most `size`.
 * follow: the hasher follows at normal priority unless STREAMER_IMAGE_HASH
 * says otherwise (a capture: no network to wait for, the SHA-256 is the
 * longest path). */
static int pipeline_start(struct image_stream *s, uint64_t size, int known, int follow,
                          struct err *e) {
  if (import_check_space(&s->im, e) < 0) return -1;
  if (known && ftruncate(s->im.tmp_fd, (off_t)size) < 0) {
    if (errno == EFBIG || errno == EINVAL) {
      err_set(e, 507, "INSUFFICIENT_STORAGE",
              "%s: the volume store's file system cannot hold a file of %" PRIu64 " bytes",
              s->im.what, size);
      return -1;
    }
    return image_io_error(e, errno, "truncate", s->im.tmp);
  }
  if (sink_init(&s->sink, s->im.tmp_fd, s->im.tmp, s->im.what, size, NULL, 0, 0, e) < 0) return -1;
  s->sink_on = 1;
  int mode = hash_mode();
  if (follow && mode == HASH_IDLE && !getenv("STREAMER_IMAGE_HASH")) mode = HASH_FOLLOW;
  if (hasher_start(&s->h, s->im.tmp_fd, s->im.tmp, s->im.what, mode == HASH_IDLE, 1,
                   mode == HASH_AFTER || mode == HASH_HOLD, e) < 0)
    return -1;
  s->sink.follow = &s->h;
  s->hold = mode == HASH_HOLD;
  if (sink_worker_start(&s->w, &s->sink, e) < 0) return -1;
  s->worker_on = 1;
  return 0;
}

/* Image bytes for the sink, through the chunk buffers (raw and stored). */
static int feed(struct image_stream *s, const unsigned char *p, size_t n, struct err *e) {
  while (n > 0) {
    if (!s->chunk) s->chunk = sink_worker_next(&s->w) + SINK_WINDOW;
    size_t k = CHUNK - s->fill < n ? CHUNK - s->fill : n;
    memcpy(s->chunk + s->fill, p, k);
    s->fill += k;
    s->fed += k;
    p += k;
    n -= k;
    if (s->fill == CHUNK) {
      unsigned char *full = s->chunk;
      s->chunk = NULL;
      s->fill = 0;
      if (sink_worker_put(&s->w, full, CHUNK, e) < 0) return -1;
    }
  }
  return 0;
}

/* The last, partial chunk; then wait for the worker. */
static int feed_finish(struct image_stream *s, struct err *e) {
  int rc = 0;
  if (!s->worker_on) return 0;
  if (s->fill && sink_worker_put(&s->w, s->chunk, s->fill, e) < 0) rc = -1;
  s->chunk = NULL;
  s->fill = 0;
  struct err late;
  err_init(&late);
  if (sink_worker_finish(&s->w, rc == 0 ? e : &late) < 0) rc = -1;
  err_clear(&late);
  s->worker_on = 0;
  return rc;
}

static int raw_write(struct image_stream *s, const unsigned char *p, size_t n, struct err *e) {
  if (s->state == S_HEAD) {
    if (pipeline_start(s, image_max_size(), 0, 0, e) < 0) return -1;
    s->state = S_DATA;
  }
  uint64_t max = image_max_size();
  if (s->total + n > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the image is more than the largest accepted (%" PRIu64
            " bytes, STREAMER_IMAGE_MAX_BYTES)",
            s->im.what, max);
    return -1;
  }
  return feed(s, p, n, e);
}

/* The local header is complete: vet it and start the pipeline. */
static int zip_begin(struct image_stream *s, struct err *e) {
  if (zip_local_header(s->head, s->head_len, s->im.what, &s->lm, &s->sized, e) < 0) return -1;
  snprintf(s->label, sizeof s->label, "%s: the zip member \"%.200s\"", s->im.what, s->lm.name);
  uint64_t max = image_max_size();
  if (pipeline_start(s, s->sized ? s->lm.usize : max, s->sized, 0, e) < 0) return -1;
  if (s->lm.method == 8) {
    if (zinf_init(&s->zi, &s->w, s->sized ? s->lm.usize : max, s->label, e) < 0) return -1;
    s->zi.limit_is_max = !s->sized;
    s->zi_on = 1;
  }
  s->state = S_DATA;
  return 0;
}

static int zip_write(struct image_stream *s, const unsigned char *p, size_t n, struct err *e) {
  while (n > 0 && s->state == S_HEAD) {
    size_t want = s->head_len < 30 ? 30 : s->head_need;
    size_t k = want - s->head_len < n ? want - s->head_len : n;
    memcpy(s->head + s->head_len, p, k);
    s->head_len += k;
    p += k;
    n -= k;
    if (s->head_len == 30) {
      if (s->head[0] != 'P' || s->head[1] != 'K' || s->head[2] != 3 || s->head[3] != 4)
        return zip_local_header(s->head, 30, s->im.what, &s->lm, &s->sized, e);
      s->head_need =
          30 + (size_t)(s->head[26] | s->head[27] << 8) + (size_t)(s->head[28] | s->head[29] << 8);
    }
    if (s->head_len >= 30 && s->head_len == s->head_need && zip_begin(s, e) < 0) return -1;
  }
  if (n == 0 || s->state != S_DATA) return 0;
  if (s->lm.method == 8) {
    if (zinf_push(&s->zi, p, n, 0, e) < 0) return -1;
    if (s->zi.ended) s->state = S_TRAILER;
    return 0;
  }
  if (!s->sized) return 0; /* fed from the tail, once it is sure to be data */
  uint64_t left = s->lm.csize - s->fed;
  size_t k = left < n ? (size_t)left : n;
  if (feed(s, p, k, e) < 0) return -1;
  if (s->fed == s->lm.csize) s->state = S_TRAILER;
  return 0;
}

/* ---- the interface -------------------------------------------------------------- */

int image_stream_open(struct vol_store *vs, const char *id, enum image_format fmt,
                      struct image_stream **out, struct err *e) {
  *out = NULL;
  if (fmt != IMAGE_RAW && fmt != IMAGE_HPE_ZIP) {
    err_set(e, 500, "INTERNAL_ERROR", "image_stream_open: only raw images and HPE zips stream");
    return -1;
  }
  struct image_stream *s = calloc(1, sizeof *s);
  if (!s) return stream_oom(e);
  snprintf(s->id, sizeof s->id, "%.64s", id ? id : "");
  s->im.vs = vs;
  s->im.id = s->id;
  s->im.tmp_fd = s->im.src_fd = -1;
  s->fmt = fmt;
  err_init(&s->err);
  snprintf(s->im.what, sizeof s->im.what, "golden image %.64s", s->id);
  snprintf(s->label, sizeof s->label, "%s", s->im.what);
  s->im.tmp = vol_golden_tmp_path(vs, id);
  if (!s->im.tmp) {
    err_set(e, 400, "VOL_BAD_ID", "golden volume id \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 -",
            id ? id : "(null)");
    free(s);
    return -1;
  }
  int rc = -1;
  if (vol_golden_exists(vs, id)) {
    err_set(e, 409, "VOL_EXISTS", "golden volume %s already exists", id);
  } else if (fmt == IMAGE_HPE_ZIP &&
             (!(s->head = malloc(HEAD_MAX)) || !(s->tail = malloc(TAIL_CAP)))) {
    stream_oom(e);
  } else if (import_open_temp(&s->im, e) == 0) {
    rc = 0;
  }
  if (rc < 0) {
    image_stream_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

/* Stop the pipeline and remove the temp file (still ours: locked). */
static void stream_abandon(struct image_stream *s) {
  if (s->worker_on) { /* first: it may be reading a chunk of ours */
    struct err ignored;
    err_init(&ignored);
    sink_worker_finish(&s->w, &ignored);
    err_clear(&ignored);
    s->worker_on = 0;
  }
  if (s->zi_on) {
    zinf_free(&s->zi);
    s->zi_on = 0;
  }
  hasher_cancel(&s->h);
  if (s->sink_on) {
    sink_done(&s->sink, NULL);
    s->sink_on = 0;
  }
  if (s->im.tmp_fd >= 0) {
    if (!s->committed) unlink(s->im.tmp); /* still locked: ours */
    close(s->im.tmp_fd);
    s->im.tmp_fd = -1;
  }
}

static int stream_fail(struct image_stream *s, struct err *e) {
  if (!s->failed) {
    s->failed = 1;
    s->err = *e;
    s->err.nested = json_incref(e->nested);
    stream_abandon(s);
  }
  return -1;
}

int image_stream_write(struct image_stream *s, const void *p, size_t n, struct err *e) {
  const unsigned char *b = p;
  if (n == 0 || s->committed) return 0;
  int was_failed = s->failed;
  if (!s->failed && (s->fmt == IMAGE_RAW ? raw_write(s, b, n, e) : zip_write(s, b, n, e)) < 0)
    stream_fail(s, e);
  /* After the data path has seen them (a stored member of unknown size is
   * fed from the bytes that leave the tail, which needs the state they set);
   * kept also after a failure, for the directory's verdict. */
  if (s->fmt == IMAGE_HPE_ZIP && tail_append(s, b, n, e) < 0) stream_fail(s, e);
  s->total += n;
  return s->failed && !was_failed ? -1 : 0;
}

/* The zip's directory over what was kept; then what was streamed must match it. */
static int zip_end(struct image_stream *s, struct err *e) {
  struct zip_reader r = {.fd = -1,
                         .head = s->head,
                         .head_len = s->head_len,
                         .tail = s->tail,
                         .tail_off = s->tail_off,
                         .tail_len = s->tail_len};
  struct zip_member m;
  memset(&m, 0, sizeof m);
  /* A failed stream: the directory's verdict first, as for a zip file. */
  if (zip_locate(&r, s->total, "the upload", s->im.what, &m, e) < 0) return -1;
  if (s->failed) {
    *e = s->err;
    s->err.nested = NULL;
    return -1;
  }
  if (s->state == S_HEAD)
    return zip_local_header(s->head, s->head_len, s->im.what, &s->lm, &s->sized, e);
  if (m.data_off != s->lm.data_off || m.method != s->lm.method) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: the central directory describes another member than the one the zip starts with",
            s->im.what);
    return -1;
  }
  if (m.method == 8) {
    if (zinf_push(&s->zi, NULL, 0, 1, e) < 0) return -1;
    if (s->zi.consumed != m.csize) {
      err_set(e, 400, s->zi.consumed < m.csize ? "IMAGE_CORRUPT" : "IMAGE_TRUNCATED",
              s->zi.consumed < m.csize
                  ? "%s: the deflate stream ends %" PRIu64 " bytes before its compressed data does"
                  : "%s: the deflate stream runs %" PRIu64 " bytes past its compressed data",
              s->label,
              s->zi.consumed < m.csize ? m.csize - s->zi.consumed : s->zi.consumed - m.csize);
      return -1;
    }
    if (s->zi.produced != m.usize) {
      if (s->zi.produced > m.usize)
        err_set(e, 400, "IMAGE_ZIP_BOMB",
                "%s inflates to more than the %" PRIu64 " bytes it declares", s->label, m.usize);
      else
        err_set(e, 400, "IMAGE_TRUNCATED", "%s inflates to %" PRIu64 " bytes but declares %" PRIu64,
                s->label, s->zi.produced, m.usize);
      return -1;
    }
  } else {
    /* Stored: the rest of the data is in the tail (the directory follows it). */
    uint64_t from = m.data_off + s->fed, to = m.data_off + m.csize;
    if (s->fed > m.csize || from < s->tail_off || to > s->tail_off + s->tail_len) {
      err_set(e, 400, "IMAGE_CORRUPT", "%s: data follows the member's %" PRIu64 " bytes", s->label,
              m.csize);
      return -1;
    }
    if (feed(s, s->tail + (from - s->tail_off), (size_t)(to - from), e) < 0) return -1;
  }
  /* Nothing between the data (and its descriptor) and the directory. */
  uint64_t gap = m.limit - (m.data_off + m.csize);
  if ((m.flags & 8) ? gap > 24 : gap != 0) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: %" PRIu64 " bytes lie between the member's data and the central directory",
            s->im.what, gap);
    return -1;
  }
  s->lm = m;
  return 0;
}

int image_stream_commit(struct image_stream *s, image_progress_fn progress, void *progress_arg,
                        struct image_info *info, struct err *e) {
  struct image_info local;
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  info->format = s->fmt;
  if (s->committed) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: committed twice", s->im.what);
    return -1;
  }
  if (s->fmt == IMAGE_HPE_ZIP) {
    if (zip_end(s, e) < 0) return stream_fail(s, e);
  } else if (s->failed) {
    *e = s->err;
    s->err.nested = NULL;
    return -1;
  }
  uint64_t size = s->fmt == IMAGE_RAW ? s->total : s->lm.usize;
  if (s->fmt == IMAGE_RAW) {
    char label[200];
    snprintf(label, sizeof label, "%s: the image", s->im.what);
    if (image_check_disk_size(label, size, e) < 0) return stream_fail(s, e);
  }
  if (s->zi_on) {
    if (sink_worker_finish(&s->w, e) < 0) return stream_fail(s, e);
    s->worker_on = 0;
  } else if (feed_finish(s, e) < 0) {
    return stream_fail(s, e);
  }
  if (s->sink.off != size) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: %" PRIu64 " bytes went to the volume, not %" PRIu64,
            s->im.what, s->sink.off, size);
    return stream_fail(s, e);
  }
  if (s->fmt == IMAGE_HPE_ZIP && zip_check_crc(&s->lm, (uint32_t)s->sink.crc, s->label, e) < 0)
    return stream_fail(s, e);
  /* Zero blocks at the end were never written: the file gets its length. */
  if (ftruncate(s->im.tmp_fd, (off_t)size) < 0) {
    image_io_error(e, errno, "truncate", s->im.tmp);
    return stream_fail(s, e);
  }
  struct progress prog = {.fn = progress, .arg = progress_arg, .total = size};
  progress_at(&prog, 0);
  if (!s->hold) hasher_final(&s->h, size); /* the rest of the SHA-256 at normal priority */
  struct stat st;
  if (fstat(s->im.tmp_fd, &st) < 0) {
    image_io_error(e, errno, "stat", s->im.tmp);
    return stream_fail(s, e);
  }
  if (vol_golden_commit(s->im.vs, s->id, e) < 0) return stream_fail(s, e);
  s->committed = 1;
  info->size = size;
  info->allocated = (uint64_t)st.st_blocks * 512u;
  info->crc32 = (uint32_t)s->sink.crc;
  if (s->fmt == IMAGE_HPE_ZIP) snprintf(info->member, sizeof info->member, "%s", s->lm.name);
  progress_at(&prog, size);
  return 0;
}

int image_stream_from_vol(struct image_stream *s, struct vol *src, const int *stop,
                          image_progress_fn progress, void *progress_arg, struct err *e) {
  if (s->fmt != IMAGE_RAW || s->state != S_HEAD || s->total || s->failed || s->committed) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: image_stream_from_vol needs a new raw stream",
            s->im.what);
    return -1;
  }
  uint64_t size = vol_size(src), max = image_max_size();
  char label[200];
  snprintf(label, sizeof label, "%s: the volume", s->im.what);
  if (image_check_disk_size(label, size, e) < 0) return stream_fail(s, e);
  if (size > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the volume is more than the largest image accepted (%" PRIu64
            " bytes, STREAMER_IMAGE_MAX_BYTES)",
            s->im.what, max);
    return stream_fail(s, e);
  }
  if (pipeline_start(s, size, 1, 1, e) < 0) return stream_fail(s, e);
  s->state = S_DATA;
  struct progress prog = {.fn = progress, .arg = progress_arg, .total = size};
  progress_at(&prog, 0);
  uint64_t off = 0;
  while (off < size) {
    if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED)) {
      err_set(e, 503, "SHUTTING_DOWN", "%s: streamerd is stopping", s->im.what);
      return stream_fail(s, e);
    }
    /* Deallocated runs are zeros: holes, neither read nor scanned. */
    uint64_t run = size - off;
    int st = VOL_MAPPED;
    if (src->ops->block_status) {
      st = src->ops->block_status(src, off, size - off, &run, e);
      if (st < 0) return stream_fail(s, e);
      if (run == 0 || run > size - off) run = size - off;
    }
    if (st == VOL_DEALLOCATED) {
      sink_worker_next(&s->w); /* a free slot for the job (its buffer stays unused) */
      if (sink_worker_put(&s->w, NULL, (size_t)run, e) < 0) return stream_fail(s, e);
      off += run;
    } else {
      /* Mapped: read into the sink's buffers, which finds the zero blocks. */
      for (uint64_t end = off + run; off < end;) {
        size_t n = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
        unsigned char *buf = sink_worker_next(&s->w) + SINK_WINDOW;
        if (vol_pread(src, buf, n, off, e) < 0 || sink_worker_put(&s->w, buf, n, e) < 0)
          return stream_fail(s, e);
        off += n;
        progress_at(&prog, off);
      }
    }
    progress_at(&prog, off);
  }
  s->total = s->fed = size;
  return 0;
}

int image_stream_sha256(struct image_stream *s, const int *stop, image_progress_fn progress,
                        void *progress_arg, char sha256[65], struct err *e) {
  if (!s->committed) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: no SHA-256 before the commit", s->im.what);
    return -1;
  }
  struct progress prog = {.fn = progress, .arg = progress_arg, .total = s->sink.off};
  return hasher_wait(&s->h, stop, &prog, sha256, e);
}

void image_stream_close(struct image_stream *s) {
  if (!s) return;
  stream_abandon(s);
  err_clear(&s->err);
  import_cleanup(&s->im, 0);
  free(s->head);
  free(s->tail);
  free(s);
}
