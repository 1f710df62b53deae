/* image.c — golden image archives (docs/formats/golden-image.md): the import
 * and export pipeline. The zip reader is zip.c, the qemu-img runner qemu.c;
 * what the three share is in image_int.h.
 *
 * Import writes DIR/golden/.<id>.tmp (locked with flock while we own it),
 * streaming, in 1 MiB chunks: every 4 KiB block that is all zeros is skipped,
 * so zero runs stay holes of the file that was ftruncated to its final size;
 * SHA-256 and CRC-32 cover every byte, holes included. Three sources:
 *
 *   HPE zip   our own reader over zlib (zip.c): end of central directory (zip64
 *             aware), the one central directory entry, its local header, then
 *             inflate (raw deflate; the checksums and writes run on a worker
 *             thread, one chunk behind) or copy; sizes and CRC checked.
 *   raw       copied as is; holes of the source are skipped with SEEK_DATA.
 *   qcow2, vmdk, vhdx (qemu.c)
 *             `qemu-img info` (resource-limited, format forced) vets the image,
 *             `qemu-img convert -O raw -n --target-is-zero` writes the temp
 *             file, then one pass over it computes the checksums.
 *
 * Every error unlinks the temp file. Export builds the stored (method 0) zip
 * around the golden volume: a header and a trailer in memory, the volume's
 * bytes in between, so any byte range maps to memcpy or vol_pread (holes,
 * found with SEEK_DATA, are zero-filled without reading them). */
#include "vol/image.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "vol/image_int.h"

#define BLOCK 4096u                     /* hole granularity */
#define SECTOR 512u                     /* a disk image is whole sectors */
#define MAX_IMAGE_DEFAULT (16ull << 40) /* 16 TiB; STREAMER_IMAGE_MAX_BYTES */
#define SPACE_RESERVE (64ull << 20)     /* keep free; STREAMER_IMAGE_RESERVE_BYTES */
#define SPACE_CHECK_EVERY (64ull << 20) /* statvfs at least this often (bytes written) */
#define WRITEBACK_EVERY (32ull << 20)   /* start writeback after this much data */

static const unsigned char zero_chunk[CHUNK];
/* zero_crc[k]: CRC-32 of k * BLOCK zero bytes, k = 0 .. CHUNK / BLOCK. */
static uLong zero_crc[CHUNK / BLOCK + 1];
static pthread_once_t zero_crc_once = PTHREAD_ONCE_INIT;
static void zero_crc_init(void) {
  zero_crc[0] = crc32(0L, Z_NULL, 0);
  for (size_t k = 1; k <= CHUNK / BLOCK; k++)
    zero_crc[k] = crc32(zero_crc[k - 1], zero_chunk, BLOCK);
}

/* CRC-32 of what crc covered followed by n zero bytes (n <= CHUNK). */
static uLong crc_append_zeros(uLong crc, size_t n) {
  if (n % BLOCK) return crc32(crc, zero_chunk, (uInt)n);
  return crc32_combine(crc, zero_crc[n / BLOCK], (z_off_t)n);
}

/* ---- little helpers ------------------------------------------------------ */

int image_oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

int image_io_error(struct err *e, int errnum, const char *what, const char *path) {
  err_set(e, 500, "VOL_IO_ERROR", "%s %s: %s", what, path, strerror(errnum));
  return -1;
}

static void wr16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void wr32(unsigned char *p, uint32_t v) {
  wr16(p, (uint16_t)v);
  wr16(p + 2, (uint16_t)(v >> 16));
}
static void wr64(unsigned char *p, uint64_t v) {
  wr32(p, (uint32_t)v);
  wr32(p + 4, (uint32_t)(v >> 32));
}

static int is_zero(const unsigned char *p, size_t n) {
  size_t head = n < 16 ? n : 16;
  for (size_t i = 0; i < head; i++)
    if (p[i]) return 0;
  return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

static int write_exact(int fd, const void *buf, size_t n, uint64_t off) {
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    if (w == 0) {
      errno = ENOSPC;
      return -1;
    }
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

uint64_t image_max_size(void) {
  const char *s = getenv("STREAMER_IMAGE_MAX_BYTES");
  if (s && *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!errno && !*end && v > 0) return v;
  }
  return MAX_IMAGE_DEFAULT;
}

const char *image_format_name(enum image_format f) {
  switch (f) {
  case IMAGE_AUTO: return "auto";
  case IMAGE_HPE_ZIP: return "hpe-zip";
  case IMAGE_RAW: return "raw";
  case IMAGE_QCOW2: return "qcow2";
  case IMAGE_VMDK: return "vmdk";
  case IMAGE_VHDX: return "vhdx";
  }
  return "unknown";
}

/* ---- "not a disk image" ---------------------------------------------------
 * The size rules (more than 0 bytes, a whole number of 512-byte sectors) and
 * a look at the first sector: a container or archive format (zip, gzip, bzip2,
 * xz, zstd, 7z, tar, qcow2, vmdk, vhd, vhdx, vdi) or plain text (no NUL and no
 * control byte but TAB, LF, FF, CR and ESC) is refused. No partition table is
 * required: a blank disk is a valid golden image. */
static const char *first_sector_kind(const unsigned char *p, size_t n) {
  static const struct {
    size_t off;
    const char *magic;
    size_t len;
    const char *what;
  } magics[] = {
      {0, "PK\3\4", 4, "a zip archive"},
      {0, "PK\5\6", 4, "an empty zip archive"},
      {0, "\x1f\x8b", 2, "a gzip stream"},
      {0, "BZh", 3, "a bzip2 stream"},
      {0,
       "\xfd"
       "7zXZ\0",
       6, "an xz stream"},
      {0, "\x28\xb5\x2f\xfd", 4, "a zstd stream"},
      {0, "7z\xbc\xaf\x27\x1c", 6, "a 7-Zip archive"},
      {257, "ustar", 5, "a tar archive"},
      {0, "QFI\xfb", 4, "a qcow2 image"},
      {0, "KDMV", 4, "a vmdk image"},
      {0, "vhdxfile", 8, "a vhdx image"},
      {0, "conectix", 8, "a vhd image"},
      {64, "\x7f\x10\xda\xbe", 4, "a VirtualBox vdi image"},
  };
  for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++)
    if (n >= magics[i].off + magics[i].len &&
        !memcmp(p + magics[i].off, magics[i].magic, magics[i].len))
      return magics[i].what;
  if (n == 0) return NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = p[i];
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\f' && c != '\r' && c != 0x1b) || c == 0x7f)
      return NULL;
  }
  return "text";
}

int image_check_disk_size(const char *what, uint64_t size, struct err *e) {
  if (size == 0) {
    err_set(e, 400, "IMAGE_NOT_A_DISK", "%s is empty: a disk image has at least one sector", what);
    return -1;
  }
  if (size % SECTOR) {
    err_set(e, 400, "IMAGE_NOT_A_DISK",
            "%s is %" PRIu64 " bytes, not a whole number of 512-byte sectors: not a disk image",
            what, size);
    return -1;
  }
  return 0;
}

/* ---- progress ------------------------------------------------------------ */

void progress_at(struct progress *p, uint64_t done) {
  if (!p->fn || p->reported_end || (done < p->next && done < p->total)) return;
  if (done >= p->total) p->reported_end = 1;
  p->fn(p->arg, done, p->total);
  uint64_t step = p->total / 100 ? p->total / 100 : 1;
  p->next = done + step;
}

/* ---- the sink: checksums, zero detection, sparse writes ------------------ */

int sink_init(struct sink *s, int fd, const char *path, const char *what, uint64_t size,
              struct progress *prog, uint64_t prog_base, int hash, struct err *e) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->path = path;
  s->what = what;
  s->size = size;
  s->prog = prog;
  s->prog_base = prog_base;
  s->crc = crc32(0L, Z_NULL, 0);
  if (!hash) return 0;
  if (gnutls_hash_init(&s->sha, GNUTLS_DIG_SHA256) < 0) {
    s->sha = NULL;
    err_set(e, 500, "CRYPTO_ERROR", "%s: SHA-256 is not available", what);
    return -1;
  }
  return 0;
}

static void digest_hex(const unsigned char d[32], char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = 0;
}

void sink_done(struct sink *s, char hex[65]) {
  unsigned char d[32];
  if (!s->sha) return;
  gnutls_hash_deinit(s->sha, d);
  s->sha = NULL;
  if (hex) digest_hex(d, hex);
}

uint64_t image_space_reserve(void) {
  const char *s = getenv("STREAMER_IMAGE_RESERVE_BYTES");
  if (s && *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!errno && !*end) return v;
  }
  return SPACE_RESERVE;
}

/* Bytes free beyond the reserve on fd's file system: 0 when the reserve is
 * reached, UINT64_MAX when it cannot tell (the writes will say). */
static uint64_t space_budget(int fd) {
  struct statvfs sv;
  if (fstatvfs(fd, &sv) < 0) return UINT64_MAX;
  uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize, reserve = image_space_reserve();
  return avail > reserve ? avail - reserve : 0;
}

int image_free_space_ok(int fd) { return space_budget(fd) > 0; }

static int space_error(struct sink *s, struct err *e) {
  err_set(e, 507, "INSUFFICIENT_STORAGE",
          "%s: the volume store is out of space after %" PRIu64 " of %" PRIu64
          " bytes (holes need none; it keeps %llu MiB free)",
          s->what, s->off, s->size, (unsigned long long)(image_space_reserve() >> 20));
  err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                "and import the image again.");
  return -1;
}

/* Data bytes between writeback starts (STREAMER_IMAGE_WRITEBACK_MIB, default
 * 32 MiB; 0 = leave it all to the commit's fsync). */
static uint64_t writeback_every(void) {
  static uint64_t every = UINT64_MAX;
  uint64_t v = __atomic_load_n(&every, __ATOMIC_RELAXED);
  if (v != UINT64_MAX) return v;
  v = WRITEBACK_EVERY;
  const char *env = getenv("STREAMER_IMAGE_WRITEBACK_MIB");
  if (env && *env) v = strtoull(env, NULL, 10) << 20;
  __atomic_store_n(&every, v, __ATOMIC_RELAXED);
  return v;
}

/* A run of data blocks: into the CRC-32, and written unless checksums only. */
static int sink_data_run(struct sink *s, const unsigned char *p, size_t n, uint64_t off,
                         struct err *e) {
  s->crc = crc32(s->crc, p, (uInt)n);
  if (s->follow && hasher_mark(s->follow, off, n) < 0) return image_oom(e);
  if (s->fd < 0) return 0;
  if (write_exact(s->fd, p, n, off) < 0) {
    if (errno == ENOSPC || errno == EDQUOT) return space_error(s, e);
    return image_io_error(e, errno, "write", s->path);
  }
  /* Start writing the data to disk now and then, so that the fsync of the
   * commit finds little left to do (the device works while we receive). */
  s->wb_pending += n;
  if (writeback_every() && s->wb_pending >= writeback_every()) {
    sync_file_range(s->fd, (off_t)s->wb_from, (off_t)(off + n - s->wb_from), SYNC_FILE_RANGE_WRITE);
    s->wb_from = off + n;
    s->wb_pending = 0;
  }
  /* Check the reserve again after half of what was left beyond it was
   * written (at most every 64 MiB): the closer to it, the more often. */
  s->unchecked += n;
  if (s->unchecked >= s->next_check) {
    s->unchecked = 0;
    uint64_t budget = space_budget(s->fd);
    if (budget == 0) return space_error(s, e);
    s->next_check = budget / 2 < SPACE_CHECK_EVERY ? budget / 2 : SPACE_CHECK_EVERY;
  }
  return 0;
}

/* Take the next len bytes of the raw image. zero: they are known to be zeros
 * (p may be NULL). */
int sink_put(struct sink *s, const unsigned char *p, size_t len, int zero, struct err *e) {
  if (len > s->size - s->off) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: more data than the %" PRIu64 " bytes expected", s->what,
            s->size);
    return -1;
  }
  if (s->off == 0 && len > 0 && !zero) {
    const char *kind = first_sector_kind(p, len < SECTOR ? len : SECTOR);
    if (kind) {
      err_set(e, 400, "IMAGE_NOT_A_DISK", "%s: the content is %s, not a disk image%s", s->what,
              kind,
              strcmp(kind, "a zip archive") ? "" : " (a zip inside the zip: upload the inner zip)");
      return -1;
    }
  }
  pthread_once(&zero_crc_once, zero_crc_init);
  if (zero) {
    for (size_t done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      if (s->sha) gnutls_hash(s->sha, zero_chunk, n); /* SHA-256 must see every zero */
      s->crc = crc_append_zeros(s->crc, n);
      done += n;
      s->off += n;
      if (s->prog) progress_at(s->prog, s->prog_base + s->off);
    }
    if (s->follow) hasher_advance(s->follow, s->off);
    return 0;
  }
  if (s->sha) gnutls_hash(s->sha, p, len);
  /* Runs of data blocks: CRC-32, then written; runs of zero blocks: CRC-32
   * appended in O(log n), nothing written (the file is already that long). */
  size_t i = 0, run = 0, run_start = 0;
  while (i < len) {
    size_t blk = BLOCK - (size_t)((s->off + i) % BLOCK);
    if (blk > len - i) blk = len - i;
    if (!is_zero(p + i, blk)) {
      if (!run) run_start = i;
      run += blk;
      i += blk;
      continue;
    }
    if (run && sink_data_run(s, p + run_start, run, s->off + run_start, e) < 0) return -1;
    run = 0;
    size_t zeros = blk;
    for (i += blk; i < len; i += blk, zeros += blk) {
      blk = len - i < BLOCK ? len - i : BLOCK;
      if (!is_zero(p + i, blk)) break;
    }
    s->crc = crc_append_zeros(s->crc, zeros);
  }
  if (run && sink_data_run(s, p + run_start, run, s->off + run_start, e) < 0) return -1;
  s->off += len;
  if (s->prog) progress_at(s->prog, s->prog_base + s->off);
  if (s->follow) hasher_advance(s->follow, s->off);
  return 0;
}

/* Feed [0, size) of fd to the sink, skipping the source's holes (SEEK_DATA)
 * when the file system can tell them. */
int sink_copy_fd(struct sink *s, int fd, const char *src, uint64_t base, uint64_t size,
                 unsigned char *buf, struct err *e) {
  int seek_ok = 1;
  uint64_t off = 0;
  while (off < size) {
    uint64_t data = off, data_end = size;
    if (seek_ok) {
      off_t d = lseek(fd, (off_t)(base + off), SEEK_DATA);
      if (d < 0 && errno == ENXIO) {
        data = size;
      } else if (d < 0 || (uint64_t)d < base + off) {
        seek_ok = 0;
      } else {
        data = (uint64_t)d - base < size ? (uint64_t)d - base : size;
        off_t h = lseek(fd, d, SEEK_HOLE);
        data_end = h < 0 || (uint64_t)h <= (uint64_t)d ? size
                   : (uint64_t)h - base < size         ? (uint64_t)h - base
                                                       : size;
      }
    }
    if (data > off) {
      if (sink_put(s, NULL, data - off, 1, e) < 0) return -1;
      off = data;
    }
    while (off < data_end) {
      size_t n = data_end - off < CHUNK ? (size_t)(data_end - off) : CHUNK;
      if (util_pread_exact(fd, buf, n, base + off) < 0) {
        if (errno == ENODATA) {
          err_set(e, 400, "IMAGE_TRUNCATED", "%s: %s ends before %" PRIu64 " bytes", s->what, src,
                  size);
          return -1;
        }
        return image_io_error(e, errno, "read", src);
      }
      if (sink_put(s, buf, n, 0, e) < 0) return -1;
      off += n;
    }
  }
  return 0;
}

/* ---- the sink on a worker thread ------------------------------------------- */

static void *sink_worker_main(void *arg) {
  struct sink_worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->count && !w->quit)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->count) break;
    const unsigned char *p = w->job[w->head];
    size_t n = w->job_len[w->head];
    int skip = w->failed;
    pthread_mutex_unlock(&w->mu);
    int rc = skip ? -1 : sink_put(w->s, p, n, p == NULL, &w->err); /* NULL: n zero bytes */
    pthread_mutex_lock(&w->mu);
    if (rc < 0) w->failed = 1;
    w->head = (w->head + 1) % SINK_SLOTS;
    w->count--;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int sink_worker_start(struct sink_worker *w, struct sink *s, struct err *e) {
  memset(w, 0, sizeof *w);
  w->s = s;
  err_init(&w->err);
  unsigned char *all = malloc(SINK_SLOTS * (size_t)(SINK_WINDOW + CHUNK));
  if (!all) return image_oom(e);
  for (int i = 0; i < SINK_SLOTS; i++)
    w->slot[i] = all + (size_t)i * (SINK_WINDOW + CHUNK);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->started = pthread_create(&w->th, NULL, sink_worker_main, w) == 0;
  if (w->started) pthread_setname_np(w->th, "image-sink");
  return 0;
}

unsigned char *sink_worker_next(struct sink_worker *w) {
  pthread_mutex_lock(&w->mu);
  while (w->count == SINK_SLOTS)
    pthread_cond_wait(&w->cv, &w->mu);
  unsigned char *b = w->slot[(w->head + w->count) % SINK_SLOTS];
  pthread_mutex_unlock(&w->mu);
  return b;
}

int sink_worker_put(struct sink_worker *w, const unsigned char *p, size_t n, struct err *e) {
  if (!w->started) {
    int rc = sink_put(w->s, p, n, p == NULL, e);
    w->head = (w->head + 1) % SINK_SLOTS; /* the next buffer, as with the thread */
    return rc;
  }
  pthread_mutex_lock(&w->mu);
  while (w->count == SINK_SLOTS) /* only if put without next */
    pthread_cond_wait(&w->cv, &w->mu);
  int failed = w->failed;
  if (!failed) {
    int i = (w->head + w->count) % SINK_SLOTS;
    w->job[i] = p;
    w->job_len[i] = n;
    w->count++;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  if (failed) *e = w->err;
  return failed ? -1 : 0;
}

int sink_worker_finish(struct sink_worker *w, struct err *e) {
  int failed = 0;
  if (!w->slot[0]) return 0; /* not started */
  if (w->started) {
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    w->started = 0;
    failed = w->failed;
    if (failed) *e = w->err;
  }
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w->slot[0]);
  memset(w->slot, 0, sizeof w->slot);
  return failed ? -1 : 0;
}

/* ---- the hasher --------------------------------------------------------------
 * SHA-256 cannot skip zeros (every block goes through the compression
 * function), so it is the one cost of an import proportional to the image
 * size rather than to its data. It runs on its own thread, following the
 * writer through the file: holes (SEEK_DATA) are hashed from a static zero
 * buffer, data read back (from the page cache: it was just written). */

static void set_idle(pthread_t th, int idle) {
  struct sched_param sp = {.sched_priority = 0};
  pthread_setschedparam(th, idle ? SCHED_IDLE : SCHED_OTHER, &sp); /* best effort */
}

static int hasher_stopped(struct hasher *h) {
  const int *ext = __atomic_load_n(&h->ext_stop, __ATOMIC_ACQUIRE);
  return __atomic_load_n(&h->stop, __ATOMIC_RELAXED) ||
         (ext && __atomic_load_n(ext, __ATOMIC_RELAXED));
}

/* Where data is, from off on (below to): [*data, *data_end); *data == to if
 * none. From the data map, or from SEEK_DATA/SEEK_HOLE. */
static void next_data(struct hasher *h, uint64_t off, uint64_t to, int *seek_ok, uint64_t *data,
                      uint64_t *data_end) {
  *data = off;
  *data_end = to;
  if (h->use_map) {
    uint64_t g = off / HASH_GRANULE, last = (to - 1) / HASH_GRANULE;
    pthread_mutex_lock(&h->mu);
    while (g <= last && !(g / 64 < h->map_words && (h->map[g / 64] >> (g % 64) & 1)))
      g++;
    uint64_t start = g;
    while (g <= last && g - start < CHUNK / HASH_GRANULE && g / 64 < h->map_words &&
           (h->map[g / 64] >> (g % 64) & 1))
      g++;
    pthread_mutex_unlock(&h->mu);
    *data = start * HASH_GRANULE > off ? start * HASH_GRANULE : off;
    if (*data > to) *data = to;
    *data_end = g * HASH_GRANULE < to ? g * HASH_GRANULE : to;
    return;
  }
  if (!*seek_ok) return;
  off_t d = lseek(h->fd, (off_t)off, SEEK_DATA);
  if (d < 0 && errno == ENXIO) {
    *data = to;
  } else if (d < 0 || (uint64_t)d < off) {
    *seek_ok = 0;
  } else {
    *data = (uint64_t)d < to ? (uint64_t)d : to;
    off_t hole = lseek(h->fd, d, SEEK_HOLE);
    if (hole > d && (uint64_t)hole < to) *data_end = (uint64_t)hole;
  }
}

/* Hash [from, to) of the file into sha; 1 if stopped, -1 with e on error. */
static int hash_range(struct hasher *h, gnutls_hash_hd_t sha, uint64_t from, uint64_t to,
                      unsigned char *buf, int *seek_ok, struct err *e) {
  uint64_t off = from;
  while (off < to) {
    if (hasher_stopped(h)) return 1;
    uint64_t data, data_end;
    next_data(h, off, to, seek_ok, &data, &data_end);
    if (data > off) { /* a hole: zeros */
      uint64_t n = data - off < CHUNK ? data - off : CHUNK;
      gnutls_hash(sha, zero_chunk, (size_t)n);
      off += n;
    } else {
      size_t n = data_end - off < CHUNK ? (size_t)(data_end - off) : CHUNK;
      ssize_t r = pread(h->fd, buf, n, (off_t)off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return image_io_error(e, errno, "read", h->path);
      if (r == 0) { /* past the end of a file that grows: zeros */
        memset(buf, 0, n);
        r = (ssize_t)n;
      }
      gnutls_hash(sha, buf, (size_t)r);
      off += (uint64_t)r;
    }
    __atomic_store_n(&h->hashed, off, __ATOMIC_RELAXED);
  }
  return 0;
}

static void *hasher_main(void *arg) {
  struct hasher *h = arg;
  gnutls_hash_hd_t sha = NULL;
  unsigned char *buf = malloc(CHUNK);
  struct err e;
  err_init(&e);
  int rc = -1, seek_ok = 1;
  pthread_once(&zero_crc_once, zero_crc_init);
  if (!buf) {
    image_oom(&e);
  } else if (gnutls_hash_init(&sha, GNUTLS_DIG_SHA256) < 0) {
    sha = NULL;
    err_set(&e, 500, "CRYPTO_ERROR", "%s: SHA-256 is not available", h->what);
  } else {
    uint64_t pos = 0;
    for (;;) {
      pthread_mutex_lock(&h->mu);
      while (!h->stop && !h->final && (pos >= h->frontier || h->wait_final))
        pthread_cond_wait(&h->cv, &h->mu);
      uint64_t to = h->final ? h->size : h->frontier;
      int stop = h->stop, final = h->final;
      pthread_mutex_unlock(&h->mu);
      if (stop) {
        err_set(&e, 503, "CHECKSUM_INTERRUPTED", "%s: the SHA-256 was not finished", h->what);
        break;
      }
      if (pos < to) {
        int r = hash_range(h, sha, pos, to, buf, &seek_ok, &e);
        if (r != 0) {
          if (r > 0)
            err_set(&e, 503, "CHECKSUM_INTERRUPTED", "%s: the SHA-256 was not finished", h->what);
          break;
        }
        pos = to;
      } else if (final) {
        rc = 0;
        break;
      }
    }
  }
  unsigned char d[32];
  if (sha) gnutls_hash_deinit(sha, d);
  free(buf);
  pthread_mutex_lock(&h->mu);
  if (rc == 0) {
    digest_hex(d, h->hex);
  } else {
    h->failed = 1;
    h->err = e;
  }
  h->done = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

int hasher_start(struct hasher *h, int fd, const char *path, const char *what, int idle, int map,
                 int wait_final, struct err *e) {
  memset(h, 0, sizeof *h);
  h->fd = fd;
  h->path = path;
  h->what = what;
  h->idle = idle;
  h->use_map = map;
  h->wait_final = wait_final;
  err_init(&h->err);
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  if (pthread_create(&h->th, NULL, hasher_main, h) != 0) {
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    err_set(e, 500, "OUT_OF_MEMORY", "%s: cannot start the SHA-256 thread", what);
    return -1;
  }
  h->started = 1;
  pthread_setname_np(h->th, "image-sha256");
  if (idle) set_idle(h->th, 1);
  return 0;
}

int hasher_mark(struct hasher *h, uint64_t off, uint64_t n) {
  if (n == 0) return 0;
  uint64_t g = off / HASH_GRANULE, last = (off + n - 1) / HASH_GRANULE;
  pthread_mutex_lock(&h->mu);
  if (last / 64 >= h->map_words) {
    size_t words = h->map_words ? h->map_words : 64;
    while (words <= last / 64)
      words *= 2;
    uint64_t *m = realloc(h->map, words * sizeof *m);
    if (!m) {
      pthread_mutex_unlock(&h->mu);
      return -1;
    }
    memset(m + h->map_words, 0, (words - h->map_words) * sizeof *m);
    h->map = m;
    h->map_words = words;
  }
  for (; g <= last; g++)
    h->map[g / 64] |= 1ull << (g % 64);
  pthread_mutex_unlock(&h->mu);
  return 0;
}

void hasher_advance(struct hasher *h, uint64_t frontier) {
  pthread_mutex_lock(&h->mu);
  if (frontier > h->frontier) {
    h->frontier = frontier;
    pthread_cond_signal(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
}

void hasher_final(struct hasher *h, uint64_t size) {
  if (!h->started) return;
  pthread_mutex_lock(&h->mu);
  h->frontier = h->size = size;
  h->final = 1;
  pthread_cond_signal(&h->cv);
  pthread_mutex_unlock(&h->mu);
  if (h->idle) set_idle(h->th, 0);
}

int hasher_wait(struct hasher *h, const int *stop, struct progress *prog, char hex[65],
                struct err *e) {
  if (!h->started) {
    err_set(e, 500, "INTERNAL_ERROR", "%s: no SHA-256 under way", h->what);
    return -1;
  }
  __atomic_store_n(&h->ext_stop, stop, __ATOMIC_RELEASE);
  pthread_mutex_lock(&h->mu);
  while (!h->done) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED) && !h->stop) {
      __atomic_store_n(&h->stop, 1, __ATOMIC_RELAXED); /* also when it waits for the writer */
      pthread_cond_broadcast(&h->cv);
    }
    if (prog && !h->done) {
      pthread_mutex_unlock(&h->mu);
      progress_at(prog, prog->total ? __atomic_load_n(&h->hashed, __ATOMIC_RELAXED) : 0);
      pthread_mutex_lock(&h->mu);
    }
  }
  int failed = h->failed;
  if (failed)
    *e = h->err;
  else
    memcpy(hex, h->hex, 65);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->th, NULL);
  h->started = 0;
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  free(h->map);
  h->map = NULL;
  if (!failed && prog) progress_at(prog, prog->total);
  return failed ? -1 : 0;
}

void hasher_cancel(struct hasher *h) {
  if (!h->started) return;
  pthread_mutex_lock(&h->mu);
  __atomic_store_n(&h->stop, 1, __ATOMIC_RELAXED);
  pthread_cond_signal(&h->cv);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->th, NULL);
  h->started = 0;
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  free(h->map);
  h->map = NULL;
}

/* ---- SHA-256 of a golden volume ------------------------------------------- */

int image_sha256(struct vol_store *vs, const char *id, const int *stop, image_progress_fn progress,
                 void *progress_arg, char sha256[65], struct err *e) {
  char what[128];
  snprintf(what, sizeof what, "golden image %.64s", id ? id : "");
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  if (!path) {
    err_set(e, 400, "VOL_BAD_ID", "golden volume id \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 -",
            id ? id : "(null)");
    return -1;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      err_set(e, 404, "VOL_NOT_FOUND", "%s: no golden volume (%s)", what, path);
      return -1;
    }
    return image_io_error(e, errno, "open", path);
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int saved = errno;
    close(fd);
    return image_io_error(e, saved, "stat", path);
  }
  struct hasher h;
  if (hasher_start(&h, fd, path, what, 0, 0, 0, e) < 0) {
    close(fd);
    return -1;
  }
  hasher_final(&h, (uint64_t)st.st_size);
  struct progress prog = {.fn = progress, .arg = progress_arg, .total = (uint64_t)st.st_size};
  int rc = hasher_wait(&h, stop, &prog, sha256, e);
  close(fd);
  return rc;
}

/* ---- import ---------------------------------------------------------------- */

static enum image_format detect(const unsigned char *p, size_t n) {
  if (n >= 4 && (!memcmp(p, "PK\3\4", 4) || !memcmp(p, "PK\5\6", 4))) return IMAGE_HPE_ZIP;
  if (n >= 4 && !memcmp(p, "QFI\xfb", 4)) return IMAGE_QCOW2;
  if (n >= 4 && !memcmp(p, "KDMV", 4)) return IMAGE_VMDK;
  if (n >= 21 && !memcmp(p, "# Disk DescriptorFile", 21)) return IMAGE_VMDK;
  if (n >= 8 && !memcmp(p, "vhdxfile", 8)) return IMAGE_VHDX;
  return IMAGE_RAW;
}

static int magic_matches(enum image_format f, const unsigned char *p, size_t n) {
  switch (f) {
  case IMAGE_HPE_ZIP: return n >= 4 && (!memcmp(p, "PK\3\4", 4) || !memcmp(p, "PK\5\6", 4));
  case IMAGE_QCOW2: return n >= 4 && !memcmp(p, "QFI\xfb", 4);
  case IMAGE_VMDK:
    return n >= 4 &&
           (!memcmp(p, "KDMV", 4) || (n >= 21 && !memcmp(p, "# Disk DescriptorFile", 21)));
  case IMAGE_VHDX: return n >= 8 && !memcmp(p, "vhdxfile", 8);
  default: return 1;
  }
}

int import_open_temp(struct import *im, struct err *e) {
  int fd = open(im->tmp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return image_io_error(e, errno, "create", im->tmp);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int saved = errno;
    close(fd);
    if (saved == EWOULDBLOCK) {
      err_set(e, 409, "GOLDEN_VOLUME_BUSY",
              "%s: another import into this golden volume is in progress", im->what);
      return -1;
    }
    return image_io_error(e, saved, "lock", im->tmp);
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    err_set(e, 500, "VOL_IO_ERROR", "%s: %s is not a regular file", im->what, im->tmp);
    return -1;
  }
  im->tmp_fd = fd;
  /* Now ours (a leftover of a crash is reused): the golden volume must still be absent. */
  if (vol_golden_exists(im->vs, im->id)) {
    err_set(e, 409, "VOL_EXISTS", "golden volume %s already exists", im->id);
    return -1;
  }
  if (ftruncate(fd, 0) < 0) return image_io_error(e, errno, "truncate", im->tmp);
  return 0;
}

void import_cleanup(struct import *im, int failed) {
  if (im->tmp_fd >= 0) {
    if (failed) unlink(im->tmp); /* still holding the lock: the file is ours */
    close(im->tmp_fd);
  }
  if (im->src_fd >= 0) close(im->src_fd);
  free(im->tmp);
  free(im->buf);
  free(im->qemu);
  free(im->src_arg);
  free(im->dst_arg);
}

/* Refuse up front when the store has not even its reserve free; the real
 * check is while writing, since holes take no space. */
int import_check_space(struct import *im, struct err *e) {
  if (image_free_space_ok(im->tmp_fd)) return 0;
  err_set(e, 507, "INSUFFICIENT_STORAGE", "%s: the volume store has less than %llu MiB free",
          im->what, (unsigned long long)(image_space_reserve() >> 20));
  err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                "and import the image again.");
  return -1;
}

static int import_zip(struct import *im, const char *src, uint64_t fsize, struct progress *prog,
                      struct image_info *info, struct err *e) {
  struct zip_member m;
  memset(&m, 0, sizeof m);
  struct zip_reader r = {.fd = im->src_fd};
  if (zip_locate(&r, fsize, src, im->what, &m, e) < 0) return -1;
  if (import_open_temp(im, e) < 0 || import_check_space(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)m.usize) < 0) {
    if (errno == EFBIG || errno == EINVAL) {
      err_set(e, 507, "INSUFFICIENT_STORAGE",
              "%s: the volume store's file system cannot hold a file of %" PRIu64 " bytes",
              im->what, m.usize);
      return -1;
    }
    return image_io_error(e, errno, "truncate", im->tmp);
  }
  prog->total = m.usize;
  progress_at(prog, 0);
  struct sink s;
  int rc = sink_init(&s, im->tmp_fd, im->tmp, im->what, m.usize, prog, 0, 1, e);
  if (rc == 0) rc = zip_extract(im->src_fd, src, &m, &s, e);
  if (rc == 0) {
    info->size = m.usize;
    info->crc32 = (uint32_t)s.crc;
    snprintf(info->member, sizeof info->member, "%s", m.name);
  }
  sink_done(&s, rc == 0 ? info->sha256 : NULL);
  return rc;
}

static int import_raw(struct import *im, const char *src, uint64_t fsize, struct progress *prog,
                      struct image_info *info, struct err *e) {
  uint64_t max = image_max_size();
  char label[400];
  snprintf(label, sizeof label, "%s: the image", im->what);
  if (image_check_disk_size(label, fsize, e) < 0) return -1;
  if (fsize > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the image is %" PRIu64 " bytes, more than the largest accepted (%" PRIu64
            " bytes, STREAMER_IMAGE_MAX_BYTES)",
            im->what, fsize, max);
    return -1;
  }
  if (import_open_temp(im, e) < 0 || import_check_space(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)fsize) < 0) return image_io_error(e, errno, "truncate", im->tmp);
  prog->total = fsize;
  progress_at(prog, 0);
  struct sink s;
  int rc = sink_init(&s, im->tmp_fd, im->tmp, im->what, fsize, prog, 0, 1, e);
  if (rc == 0) rc = sink_copy_fd(&s, im->src_fd, src, 0, fsize, im->buf, e);
  if (rc == 0) {
    info->size = fsize;
    info->crc32 = (uint32_t)s.crc;
  }
  sink_done(&s, rc == 0 ? info->sha256 : NULL);
  return rc;
}

static int import_qemu(struct import *im, const char *src, enum image_format fmt,
                       struct progress *prog, struct image_info *info, struct err *e) {
  const char *fname = image_format_name(fmt);
  if (fmt == IMAGE_VMDK) {
    unsigned char head[21];
    if (util_pread_exact(im->src_fd, head, sizeof head, 0) == 0 &&
        !memcmp(head, "# Disk DescriptorFile", 21)) {
      err_set(e, 400, "IMAGE_UNSUPPORTED",
              "%s: a vmdk descriptor refers to other files of the server; upload a single-file "
              "(monolithicSparse or streamOptimized) vmdk",
              im->what);
      return -1;
    }
  }
  const char *qemu = im->qemu = qemu_img_find();
  if (!qemu) {
    err_set(e, 501, "QEMU_IMG_MISSING",
            "%s: importing a %s image needs qemu-img, which is not installed (Debian package "
            "qemu-utils)",
            im->what, fname);
    err_action(e, "Install qemu-utils on the Streamer server (apt-get install qemu-utils), or "
                  "upload the image as an HPE zip or raw disk image.");
    return -1;
  }
  /* A relative path with ':' could read as a qemu protocol ("nbd:..."). */
  im->src_arg = util_strdup_printf("%s%s", src[0] == '/' ? "" : "./", src);
  im->dst_arg = util_strdup_printf("%s%s", im->tmp[0] == '/' ? "" : "./", im->tmp);
  if (!im->src_arg || !im->dst_arg) return image_oom(e);
  const char *src_arg = im->src_arg, *dst_arg = im->dst_arg;
  uint64_t vsize = 0, max = image_max_size();
  if (qemu_info(qemu, fname, src_arg, im->what, &vsize, e) < 0) return -1;
  char label[400];
  snprintf(label, sizeof label, "%s: the %s image's disk", im->what, fname);
  if (image_check_disk_size(label, vsize, e) < 0) return -1;
  if (vsize > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the image's virtual size is %" PRIu64
            " bytes, more than the largest accepted (%" PRIu64 " bytes, STREAMER_IMAGE_MAX_BYTES)",
            im->what, vsize, max);
    return -1;
  }
  if (import_open_temp(im, e) < 0 || import_check_space(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)vsize) < 0) return image_io_error(e, errno, "truncate", im->tmp);
  /* Two passes: conversion, then the checksums over the raw result. */
  prog->total = vsize * 2;
  progress_at(prog, 0);
  if (qemu_convert(qemu, fname, src_arg, dst_arg, im->tmp_fd, vsize, im->what, prog, e) < 0)
    return -1;
  struct stat st;
  if (fstat(im->tmp_fd, &st) < 0) return image_io_error(e, errno, "stat", im->tmp);
  if ((uint64_t)st.st_size != vsize) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: qemu-img wrote %" PRIu64 " bytes of a %" PRIu64 "-byte image", im->what,
            (uint64_t)st.st_size, vsize);
    return -1;
  }
  struct sink s;
  int rc = sink_init(&s, -1, im->tmp, im->what, vsize, prog, vsize, 1, e);
  if (rc == 0) rc = sink_copy_fd(&s, im->tmp_fd, im->tmp, 0, vsize, im->buf, e);
  if (rc == 0) {
    info->size = vsize;
    info->crc32 = (uint32_t)s.crc;
  }
  sink_done(&s, rc == 0 ? info->sha256 : NULL);
  return rc;
}

int image_import(struct vol_store *vs, const char *id, const char *src_path, enum image_format fmt,
                 image_progress_fn progress, void *progress_arg, struct image_info *info,
                 struct err *e) {
  struct image_info local;
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  struct import im = {.vs = vs, .id = id, .tmp_fd = -1, .src_fd = -1};
  snprintf(im.what, sizeof im.what, "golden image %.64s", id ? id : "");
  int rc = -1;
  if (!vs || !src_path) {
    err_set(e, 500, "INTERNAL_ERROR", "image_import: no volume store or source");
    return -1;
  }
  im.tmp = vol_golden_tmp_path(vs, id);
  if (!im.tmp) {
    err_set(e, 400, "VOL_BAD_ID", "golden volume id \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 -",
            id ? id : "(null)");
    return -1;
  }
  if (vol_golden_exists(vs, id)) {
    err_set(e, 409, "VOL_EXISTS", "golden volume %s already exists", id);
    goto out;
  }
  im.buf = malloc(CHUNK);
  if (!im.buf) {
    image_oom(e);
    goto out;
  }
  im.src_fd = open(src_path, O_RDONLY | O_CLOEXEC);
  if (im.src_fd < 0) {
    image_io_error(e, errno, "open", src_path);
    goto out;
  }
  struct stat st;
  if (fstat(im.src_fd, &st) < 0) {
    image_io_error(e, errno, "stat", src_path);
    goto out;
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: %s is neither a file nor a block device", im.what,
            src_path);
    goto out;
  }
  off_t end = lseek(im.src_fd, 0, SEEK_END);
  if (end < 0) {
    image_io_error(e, errno, "seek", src_path);
    goto out;
  }
  uint64_t fsize = (uint64_t)end;
  unsigned char head[SECTOR];
  size_t hn = fsize < SECTOR ? (size_t)fsize : SECTOR;
  if (util_pread_exact(im.src_fd, head, hn, 0) < 0) {
    image_io_error(e, errno, "read", src_path);
    goto out;
  }
  if (fmt == IMAGE_AUTO) {
    fmt = detect(head, hn);
  } else if (!magic_matches(fmt, head, hn)) {
    if (fmt == IMAGE_HPE_ZIP)
      err_set(e, 400, "IMAGE_CORRUPT", "%s: the file is not a zip archive", im.what);
    else
      err_set(e, 400, "IMAGE_CORRUPT", "%s: the file is not a %s image", im.what,
              image_format_name(fmt));
    goto out;
  }
  info->format = fmt;
  struct progress prog = {.fn = progress, .arg = progress_arg};
  switch (fmt) {
  case IMAGE_HPE_ZIP: rc = import_zip(&im, src_path, fsize, &prog, info, e); break;
  case IMAGE_RAW: rc = import_raw(&im, src_path, fsize, &prog, info, e); break;
  case IMAGE_QCOW2:
  case IMAGE_VMDK:
  case IMAGE_VHDX: rc = import_qemu(&im, src_path, fmt, &prog, info, e); break;
  default: err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: unknown image format %d", im.what, (int)fmt);
  }
  if (rc < 0) goto out;
  rc = -1;
  if (fstat(im.tmp_fd, &st) < 0) {
    image_io_error(e, errno, "stat", im.tmp);
    goto out;
  }
  info->allocated = (uint64_t)st.st_blocks * 512u;
  if (vol_golden_commit(vs, id, e) < 0) goto out;
  progress_at(&prog, prog.total);
  rc = 0;
out:
  import_cleanup(&im, rc < 0);
  if (rc < 0) {
    info->size = info->allocated = 0;
    info->sha256[0] = 0;
  }
  return rc;
}

/* ---- export ---------------------------------------------------------------- */

struct image_export {
  struct vol *v;
  /* The golden file again, only to find its holes (SEEK_DATA), which are
   * served as zeros without reading them: reading a hole makes the kernel
   * zero-fill page-cache pages, most of the cost of a mostly empty image.
   * -1 when the file system cannot tell holes. */
  int hole_fd;
  uint64_t size;     /* the member's bytes */
  uint64_t data_off; /* = head_len */
  uint64_t tail_off; /* = head_len + size */
  uint64_t total;
  size_t head_len, tail_len;
  unsigned char head[30 + 255 + 20];
  unsigned char tail[46 + 255 + 20 + 56 + 20 + 22];
};

#define DOS_DATE_1980 0x0021 /* 1980-01-01: the export has no clock in it */

int image_export_open(struct vol_store *vs, const char *id, const char *member, uint64_t size,
                      uint32_t crc, struct image_export **out, struct err *e) {
  *out = NULL;
  char what[128];
  snprintf(what, sizeof what, "golden image %.64s", id ? id : "");
  size_t nlen = member ? strlen(member) : 0;
  if (zip_member_name_ok(what, (const unsigned char *)member, nlen, 0, 0, e) < 0) return -1;
  struct image_export *x = calloc(1, sizeof *x);
  if (!x) return image_oom(e);
  x->hole_fd = -1;
  if (vol_golden_open(vs, id, &x->v, e) < 0) {
    free(x);
    return -1;
  }
  char *path = vol_golden_path(vs, id);
  if (path) {
    x->hole_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (x->hole_fd >= 0 && lseek(x->hole_fd, 0, SEEK_DATA) < 0 && errno != ENXIO) {
      close(x->hole_fd);
      x->hole_fd = -1;
    }
    free(path);
  }
  if (vol_size(x->v) != size) {
    err_set(e, 500, "IMAGE_CORRUPT",
            "%s: the golden volume is %" PRIu64 " bytes but its image is recorded as %" PRIu64,
            what, vol_size(x->v), size);
    image_export_close(x);
    return -1;
  }
  int zip64 = 30 + (uint64_t)nlen + size >= 0xffffffffull;
  uint16_t version = zip64 ? 45 : 10;
  uint16_t flags = 0;
  for (size_t i = 0; i < nlen; i++)
    if ((unsigned char)member[i] >= 0x80) flags = 0x0800; /* UTF-8 name */
  uint32_t small_size = zip64 ? 0xffffffffu : (uint32_t)size;

  unsigned char *h = x->head;
  wr32(h, SIG_LOCAL);
  wr16(h + 4, version);
  wr16(h + 6, flags);
  wr16(h + 8, 0); /* stored */
  wr16(h + 10, 0);
  wr16(h + 12, DOS_DATE_1980);
  wr32(h + 14, crc);
  wr32(h + 18, small_size);
  wr32(h + 22, small_size);
  wr16(h + 26, (uint16_t)nlen);
  wr16(h + 28, zip64 ? 20 : 0);
  if (nlen) memcpy(h + 30, member, nlen);
  x->head_len = 30 + nlen;
  if (zip64) {
    unsigned char *z = h + x->head_len;
    wr16(z, 0x0001);
    wr16(z + 2, 16);
    wr64(z + 4, size); /* uncompressed, then compressed */
    wr64(z + 12, size);
    x->head_len += 20;
  }
  x->size = size;
  x->data_off = x->head_len;
  x->tail_off = x->head_len + size;

  unsigned char *t = x->tail;
  wr32(t, SIG_CENTRAL);
  wr16(t + 4, (uint16_t)(3 << 8 | version)); /* made by: Unix */
  wr16(t + 6, version);
  wr16(t + 8, flags);
  wr16(t + 10, 0);
  wr16(t + 12, 0);
  wr16(t + 14, DOS_DATE_1980);
  wr32(t + 16, crc);
  wr32(t + 20, small_size);
  wr32(t + 24, small_size);
  wr16(t + 28, (uint16_t)nlen);
  wr16(t + 30, zip64 ? 20 : 0);
  wr16(t + 32, 0);                       /* comment */
  wr16(t + 34, 0);                       /* disk */
  wr16(t + 36, 0);                       /* internal attributes: binary */
  wr32(t + 38, (uint32_t)0100644 << 16); /* a regular file, rw-r--r-- */
  wr32(t + 42, 0);                       /* local header at 0 */
  if (nlen) memcpy(t + 46, member, nlen);
  size_t n = 46 + nlen;
  if (zip64) {
    wr16(t + n, 0x0001);
    wr16(t + n + 2, 16);
    wr64(t + n + 4, size);
    wr64(t + n + 12, size);
    n += 20;
  }
  uint64_t cd_off = x->tail_off, cd_size = n;
  if (zip64) {
    uint64_t z_off = cd_off + cd_size;
    wr32(t + n, SIG_EOCD64);
    wr64(t + n + 4, 44); /* bytes that follow this field */
    wr16(t + n + 12, (uint16_t)(3 << 8 | 45));
    wr16(t + n + 14, 45);
    wr32(t + n + 16, 0);
    wr32(t + n + 20, 0);
    wr64(t + n + 24, 1);
    wr64(t + n + 32, 1);
    wr64(t + n + 40, cd_size);
    wr64(t + n + 48, cd_off);
    n += 56;
    wr32(t + n, SIG_LOCATOR64);
    wr32(t + n + 4, 0);
    wr64(t + n + 8, z_off);
    wr32(t + n + 16, 1);
    n += 20;
  }
  wr32(t + n, SIG_EOCD);
  wr16(t + n + 4, 0);
  wr16(t + n + 6, 0);
  wr16(t + n + 8, 1);
  wr16(t + n + 10, 1);
  wr32(t + n + 12, (uint32_t)cd_size);
  wr32(t + n + 16, zip64 ? 0xffffffffu : (uint32_t)cd_off);
  wr16(t + n + 20, 0);
  n += 22;
  x->tail_len = n;
  x->total = x->tail_off + x->tail_len;
  *out = x;
  return 0;
}

uint64_t image_export_length(struct image_export *x) { return x ? x->total : 0; }

/* Bytes [at, at+n) of the golden volume: holes as zeros, data by vol_pread.
 * Only the offsets lseek returns are used (pread, not the file position), so
 * threads may share hole_fd. */
static int export_data(struct image_export *x, unsigned char *p, size_t n, uint64_t at,
                       struct err *e) {
  uint64_t end = at + n;
  while (at < end) {
    uint64_t data = at, data_end = end;
    if (x->hole_fd >= 0) {
      off_t d = lseek(x->hole_fd, (off_t)at, SEEK_DATA);
      if (d < 0 && errno == ENXIO) {
        data = end;
      } else if (d >= 0) {
        data = (uint64_t)d < end ? (uint64_t)d : end;
        off_t h = lseek(x->hole_fd, d, SEEK_HOLE);
        if (h > d && (uint64_t)h < end) data_end = (uint64_t)h;
      }
    }
    if (data > at) {
      memset(p, 0, data - at);
      p += data - at;
      at = data;
      continue;
    }
    if (vol_pread(x->v, p, data_end - at, at, e) < 0) return -1;
    p += data_end - at;
    at = data_end;
  }
  return 0;
}

long image_export_read(struct image_export *x, uint64_t off, void *buf, size_t len, struct err *e) {
  if (off >= x->total || len == 0) return 0;
  if (len > (size_t)LONG_MAX) len = (size_t)LONG_MAX;
  if (len > x->total - off) len = (size_t)(x->total - off);
  unsigned char *p = buf;
  size_t done = 0;
  if (off < x->data_off) {
    size_t n = (size_t)(x->data_off - off) < len ? (size_t)(x->data_off - off) : len;
    memcpy(p, x->head + off, n);
    done += n;
  }
  if (done < len && off + done < x->tail_off) {
    uint64_t at = off + done - x->data_off;
    size_t n =
        x->tail_off - (off + done) < len - done ? (size_t)(x->tail_off - (off + done)) : len - done;
    if (export_data(x, p + done, n, at, e) < 0) return -1;
    done += n;
  }
  if (done < len) {
    uint64_t at = off + done - x->tail_off;
    memcpy(p + done, x->tail + at, len - done);
    done = len;
  }
  return (long)done;
}

void image_export_close(struct image_export *x) {
  if (!x) return;
  if (x->hole_fd >= 0) close(x->hole_fd);
  vol_close(x->v);
  free(x);
}
