/* image.c — golden image archives (docs/formats/golden-image.md).
 *
 * Import writes DIR/golden/.<id>.tmp (locked with flock while we own it),
 * streaming, in 1 MiB chunks: every 4 KiB block that is all zeros is skipped,
 * so zero runs stay holes of the file that was ftruncated to its final size;
 * SHA-256 and CRC-32 cover every byte, holes included. Three sources:
 *
 *   HPE zip   our own reader over zlib: end of central directory (zip64
 *             aware), the one central directory entry, its local header, then
 *             inflate (raw deflate; the checksums and writes run on a worker
 *             thread, one chunk behind) or copy; sizes and CRC checked.
 *   raw       copied as is; holes of the source are skipped with SEEK_DATA.
 *   qcow2, vmdk, vhdx
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK (1u << 20)                /* read / inflate / write unit */
#define BLOCK 4096u                     /* hole granularity */
#define SECTOR 512u                     /* a disk image is whole sectors */
#define MAX_IMAGE_DEFAULT (16ull << 40) /* 16 TiB; STREAMER_IMAGE_MAX_BYTES */
#define SPACE_RESERVE (64ull << 20)     /* keep free; STREAMER_IMAGE_RESERVE_BYTES */
#define SPACE_CHECK_EVERY (64ull << 20) /* statvfs at least this often (bytes written) */
#define DEFLATE_MAX_RATIO 1032u         /* 258 bytes per 2-bit code, at best */
#define QEMU_INFO_MAX_OUTPUT (1u << 20) /* qemu-img info JSON we accept */
#define QEMU_INFO_AS_LIMIT (1ull << 30) /* address space of qemu-img info */
#define QEMU_INFO_CPU_LIMIT 30          /* seconds of CPU of qemu-img info */

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

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int io_error(struct err *e, int errnum, const char *what, const char *path) {
  err_set(e, 500, "VOL_IO_ERROR", "%s %s: %s", what, path, strerror(errnum));
  return -1;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
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

/* pread exactly n bytes; 0, or -1 with errno (EIO-like ENODATA at end of file). */
static int read_exact(int fd, void *buf, size_t n, uint64_t off) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      errno = ENODATA;
      return -1;
    }
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
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

static uint64_t max_image_size(void) {
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

static int check_disk_size(const char *what, uint64_t size, struct err *e) {
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

struct progress {
  image_progress_fn fn;
  void *arg;
  uint64_t total, next;
  int reported_end;
};

static void progress_at(struct progress *p, uint64_t done) {
  if (!p->fn || p->reported_end || (done < p->next && done < p->total)) return;
  if (done >= p->total) p->reported_end = 1;
  p->fn(p->arg, done, p->total);
  uint64_t step = p->total / 100 ? p->total / 100 : 1;
  p->next = done + step;
}

/* ---- the sink: checksums, zero detection, sparse writes ------------------ */

struct sink {
  int fd;              /* the temp file; -1 = checksums only */
  const char *path;    /* for messages */
  const char *what;    /* "golden image <id>" */
  uint64_t size;       /* bytes expected in all */
  uint64_t off;        /* bytes received so far */
  uint64_t unchecked;  /* bytes written since the last free-space check */
  uint64_t next_check; /* check again when unchecked reaches this */
  gnutls_hash_hd_t sha;
  uLong crc;
  struct progress *prog;
  uint64_t prog_base; /* progress already reported by earlier passes */
};

static int sink_init(struct sink *s, int fd, const char *path, const char *what, uint64_t size,
                     struct progress *prog, uint64_t prog_base, struct err *e) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->path = path;
  s->what = what;
  s->size = size;
  s->prog = prog;
  s->prog_base = prog_base;
  s->crc = crc32(0L, Z_NULL, 0);
  if (gnutls_hash_init(&s->sha, GNUTLS_DIG_SHA256) < 0) {
    s->sha = NULL;
    err_set(e, 500, "CRYPTO_ERROR", "%s: SHA-256 is not available", what);
    return -1;
  }
  return 0;
}

static void sink_done(struct sink *s, char hex[65]) {
  unsigned char d[32];
  if (!s->sha) return;
  gnutls_hash_deinit(s->sha, d);
  s->sha = NULL;
  if (hex) {
    for (int i = 0; i < 32; i++)
      snprintf(hex + 2 * i, 3, "%02x", d[i]);
  }
}

static uint64_t space_reserve(void) {
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
  uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize, reserve = space_reserve();
  return avail > reserve ? avail - reserve : 0;
}

static int free_space_ok(int fd) { return space_budget(fd) > 0; }

static int space_error(struct sink *s, struct err *e) {
  err_set(e, 507, "INSUFFICIENT_STORAGE",
          "%s: the volume store is out of space after %" PRIu64 " of %" PRIu64
          " bytes (holes need none; it keeps %llu MiB free)",
          s->what, s->off, s->size, (unsigned long long)(space_reserve() >> 20));
  err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                "and import the image again.");
  return -1;
}

/* A run of data blocks: into the CRC-32, and written unless checksums only. */
static int sink_data_run(struct sink *s, const unsigned char *p, size_t n, uint64_t off,
                         struct err *e) {
  s->crc = crc32(s->crc, p, (uInt)n);
  if (s->fd < 0) return 0;
  if (write_exact(s->fd, p, n, off) < 0) {
    if (errno == ENOSPC || errno == EDQUOT) return space_error(s, e);
    return io_error(e, errno, "write", s->path);
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
static int sink_put(struct sink *s, const unsigned char *p, size_t len, int zero, struct err *e) {
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
      gnutls_hash(s->sha, zero_chunk, n); /* SHA-256 must see every zero */
      s->crc = crc_append_zeros(s->crc, n);
      done += n;
      s->off += n;
      if (s->prog) progress_at(s->prog, s->prog_base + s->off);
    }
    return 0;
  }
  gnutls_hash(s->sha, p, len);
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
  return 0;
}

/* Feed [0, size) of fd to the sink, skipping the source's holes (SEEK_DATA)
 * when the file system can tell them. */
static int sink_copy_fd(struct sink *s, int fd, const char *src, uint64_t base, uint64_t size,
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
      if (read_exact(fd, buf, n, base + off) < 0) {
        if (errno == ENODATA) {
          err_set(e, 400, "IMAGE_TRUNCATED", "%s: %s ends before %" PRIu64 " bytes", s->what, src,
                  size);
          return -1;
        }
        return io_error(e, errno, "read", src);
      }
      if (sink_put(s, buf, n, 0, e) < 0) return -1;
      off += n;
    }
  }
  return 0;
}

/* ---- the zip reader -------------------------------------------------------- */

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
  uint64_t limit;    /* the data and its descriptor end at or before this */
};

static int zip_corrupt(struct err *e, const char *what, const char *why) {
  err_set(e, 400, "IMAGE_CORRUPT", "%s: %s", what, why);
  return -1;
}

static const char *method_name(unsigned m) {
  switch (m) {
  case 1: return " (shrink)";
  case 6: return " (implode)";
  case 9: return " (deflate64)";
  case 12: return " (bzip2)";
  case 14: return " (lzma)";
  case 93: return " (zstd)";
  case 95: return " (xz)";
  case 98: return " (ppmd)";
  case 99: return " (AES encryption)";
  default: return "";
  }
}

/* Find a zip64 extended information field in an extra block; its data and
 * length, or NULL. */
static const unsigned char *zip64_extra(const unsigned char *x, size_t n, size_t *len) {
  size_t i = 0;
  while (i + 4 <= n) {
    uint16_t id = rd16(x + i), sz = rd16(x + i + 2);
    if (i + 4 + sz > n) return NULL;
    if (id == 0x0001) {
      *len = sz;
      return x + i + 4;
    }
    i += 4 + (size_t)sz;
  }
  return NULL;
}

static int zip_member_name_ok(const char *what, const unsigned char *name, size_t n,
                              uint32_t ext_attr, uint16_t made_by, struct err *e) {
  if (n == 0) {
    err_set(e, 400, "IMAGE_ZIP_PATH", "%s: the zip member has an empty name", what);
    return -1;
  }
  int dir = name[n - 1] == '/' || name[n - 1] == '\\';
  if ((made_by >> 8) == 3 && ((ext_attr >> 16) & 0170000) == 0040000) dir = 1;
  if (((made_by >> 8) == 0 || (made_by >> 8) == 10 || (made_by >> 8) == 11) && (ext_attr & 0x10))
    dir = 1;
  char shown[96];
  snprintf(shown, sizeof shown, "%.*s", (int)(n < 80 ? n : 80), (const char *)name);
  for (char *c = shown; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  if (dir) {
    err_set(e, 400, "IMAGE_ZIP_PATH",
            "%s: the zip member \"%s\" is a directory; a golden image zip holds one file", what,
            shown);
    return -1;
  }
  if (n > 255) {
    err_set(e, 400, "IMAGE_ZIP_PATH", "%s: the zip member name \"%s...\" is longer than 255 bytes",
            what, shown);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = name[i];
    if (c == '/' || c == '\\' || c == ':') {
      err_set(e, 400, "IMAGE_ZIP_PATH",
              "%s: the zip member name \"%s\" is a path (contains '%c'); it must be a plain file "
              "name",
              what, shown, c);
      return -1;
    }
    if (c < 0x20 || c == 0x7f) {
      err_set(e, 400, "IMAGE_ZIP_PATH",
              "%s: the zip member name \"%s\" contains a control character", what, shown);
      return -1;
    }
  }
  if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.')) {
    err_set(e, 400, "IMAGE_ZIP_PATH", "%s: the zip member name \"%s\" is not a file name", what,
            shown);
    return -1;
  }
  return 0;
}

/* Locate and vet the one member of the zip at fd (fsize bytes). */
static int zip_locate(int fd, uint64_t fsize, const char *src, const char *what,
                      struct zip_member *m, struct err *e) {
  unsigned char head[4] = {0};
  int starts_local = fsize >= 4 && read_exact(fd, head, 4, 0) == 0 && rd32(head) == SIG_LOCAL;
  if (fsize < 22) {
    err_set(e, 400, starts_local ? "IMAGE_TRUNCATED" : "IMAGE_CORRUPT",
            "%s: %s is %" PRIu64 " bytes, too short for a zip archive", what, src, fsize);
    return -1;
  }
  /* The end of central directory record: 22 bytes and a comment of up to 64 KiB. */
  size_t tail_len = fsize < 22 + 65535 ? (size_t)fsize : 22 + 65535;
  uint64_t tail_off = fsize - tail_len;
  CLEANUP_FREE unsigned char *tail = malloc(tail_len);
  if (!tail) return oom(e);
  if (read_exact(fd, tail, tail_len, tail_off) < 0) return io_error(e, errno, "read", src);
  size_t i = tail_len - 22 + 1;
  int found = 0;
  while (i-- > 0) {
    if (rd32(tail + i) == SIG_EOCD && rd16(tail + i + 20) == tail_len - i - 22) {
      found = 1;
      break;
    }
  }
  if (!found) {
    /* An end record whose comment stops short: bytes were appended. */
    for (i = tail_len - 22 + 1; i-- > 0;) {
      if (rd32(tail + i) == SIG_EOCD && rd16(tail + i + 20) < tail_len - i - 22) {
        err_set(e, 400, "IMAGE_CORRUPT",
                "%s: %zu bytes of unknown data follow the zip's end of central directory record",
                what, tail_len - i - 22 - rd16(tail + i + 20));
        return -1;
      }
    }
    err_set(e, 400, starts_local ? "IMAGE_TRUNCATED" : "IMAGE_CORRUPT",
            starts_local ? "%s: the zip has no end of central directory record: it is truncated"
                         : "%s: not a zip archive (no end of central directory record)",
            what);
    return -1;
  }
  const unsigned char *eocd = tail + i;
  uint64_t eocd_off = tail_off + i;
  uint64_t disk = rd16(eocd + 4), cd_disk = rd16(eocd + 6);
  uint64_t n_disk = rd16(eocd + 8), n_total = rd16(eocd + 10);
  uint64_t cd_size = rd32(eocd + 12), cd_off = rd32(eocd + 16);
  uint64_t cd_limit = eocd_off;
  unsigned char loc[20];
  if (eocd_off >= 20 && read_exact(fd, loc, 20, eocd_off - 20) == 0 && rd32(loc) == SIG_LOCATOR64) {
    uint64_t z_off = rd64(loc + 8);
    unsigned char z[56];
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
      return zip_corrupt(e, what, "the zip spans several disks (split archives are not supported)");
    if (z_off > eocd_off - 20 || eocd_off - 20 - z_off < 56 || read_exact(fd, z, 56, z_off) < 0 ||
        rd32(z) != SIG_EOCD64)
      return zip_corrupt(e, what, "the zip64 end of central directory locator points nowhere");
    disk = rd32(z + 16);
    cd_disk = rd32(z + 20);
    n_disk = rd64(z + 24);
    n_total = rd64(z + 32);
    cd_size = rd64(z + 40);
    cd_off = rd64(z + 48);
    cd_limit = z_off;
  } else if (cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
    return zip_corrupt(e, what, "zip64 sizes without a zip64 end of central directory record");
  }
  if (disk != 0 || cd_disk != 0)
    return zip_corrupt(e, what, "the zip spans several disks (split archives are not supported)");
  if (n_total != 1 || n_disk != 1) {
    if (n_total == 0)
      err_set(e, 400, "IMAGE_ZIP_MEMBERS", "%s: the zip is empty; it must hold one disk image",
              what);
    else
      err_set(e, 400, "IMAGE_ZIP_MEMBERS",
              "%s: the zip holds %" PRIu64 " members; a golden image zip holds exactly one (the "
              "raw disk image)",
              what, n_total);
    return -1;
  }
  if (cd_off > cd_limit || cd_size > cd_limit - cd_off || cd_size < 46)
    return zip_corrupt(e, what, "the central directory lies outside the zip");
  if (cd_size > 46 + 3 * 65535 + 4)
    return zip_corrupt(e, what, "the central directory is larger than one entry can be");
  CLEANUP_FREE unsigned char *cd = malloc(cd_size);
  if (!cd) return oom(e);
  if (read_exact(fd, cd, cd_size, cd_off) < 0) return io_error(e, errno, "read", src);
  if (rd32(cd) != SIG_CENTRAL)
    return zip_corrupt(e, what, "no central directory entry where the end record says");
  uint16_t made_by = rd16(cd + 4);
  uint16_t flags = rd16(cd + 8), method = rd16(cd + 10);
  uint32_t crc = rd32(cd + 16);
  uint64_t csize = rd32(cd + 20), usize = rd32(cd + 24);
  size_t nlen = rd16(cd + 28), xlen = rd16(cd + 30), clen = rd16(cd + 32);
  uint64_t start_disk = rd16(cd + 34);
  uint32_t ext_attr = rd32(cd + 38);
  uint64_t lho = rd32(cd + 42);
  size_t entry = 46 + nlen + xlen + clen;
  if (entry > cd_size) return zip_corrupt(e, what, "the central directory entry is cut short");
  if (entry < cd_size) {
    if (cd_size - entry >= 4 && rd32(cd + entry) == SIG_CENTRAL) {
      err_set(e, 400, "IMAGE_ZIP_MEMBERS",
              "%s: the central directory holds more entries than its end record says; a golden "
              "image zip holds exactly one member",
              what);
      return -1;
    }
    return zip_corrupt(e, what, "unexpected bytes after the central directory entry");
  }
  if (usize == 0xffffffffu || csize == 0xffffffffu || lho == 0xffffffffu || start_disk == 0xffffu) {
    size_t zl = 0;
    const unsigned char *z = zip64_extra(cd + 46 + nlen, xlen, &zl);
    size_t at = 0;
    if (z) {
      if (usize == 0xffffffffu && at + 8 <= zl) usize = rd64(z + at), at += 8;
      if (csize == 0xffffffffu && at + 8 <= zl) csize = rd64(z + at), at += 8;
      if (lho == 0xffffffffu && at + 8 <= zl) lho = rd64(z + at), at += 8;
      if (start_disk == 0xffffu && at + 4 <= zl) start_disk = rd32(z + at);
    }
  }
  if (start_disk != 0)
    return zip_corrupt(e, what, "the member starts on another disk (split archives)");
  if (zip_member_name_ok(what, cd + 46, nlen, ext_attr, made_by, e) < 0) return -1;
  memcpy(m->name, cd + 46, nlen);
  m->name[nlen] = 0;
  if (flags & 0x0041 || flags & 0x2000 || method == 99) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the zip member \"%s\" is encrypted; upload an unencrypted zip", what, m->name);
    return -1;
  }
  if (method != 0 && method != 8) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the zip member \"%s\" uses compression method %u%s; golden image zips use "
            "deflate (8) or stored (0)",
            what, m->name, method, method_name(method));
    return -1;
  }
  char label[400];
  snprintf(label, sizeof label, "%s: the zip member \"%.200s\"", what, m->name);
  if (check_disk_size(label, usize, e) < 0) return -1;
  uint64_t max = max_image_size();
  if (usize > max) {
    err_set(e, 400, "IMAGE_ZIP_BOMB",
            "%s declares %" PRIu64 " bytes, more than the largest image accepted (%" PRIu64
            " bytes, STREAMER_IMAGE_MAX_BYTES)",
            label, usize, max);
    return -1;
  }
  if (method == 0 && csize != usize) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s is stored (not compressed) but its sizes differ (%" PRIu64 " stored, %" PRIu64
            " declared)",
            label, csize, usize);
    return -1;
  }
  if (method == 8 && usize / DEFLATE_MAX_RATIO > csize + 64) {
    err_set(e, 400, "IMAGE_ZIP_BOMB",
            "%s declares %" PRIu64 " bytes from %" PRIu64
            " compressed bytes, more than deflate can encode (at most 1032:1)",
            label, usize, csize);
    return -1;
  }
  /* The local header must agree with the central directory. */
  unsigned char lh[30];
  if (lho > cd_off || cd_off - lho < 30 || read_exact(fd, lh, 30, lho) < 0 || rd32(lh) != SIG_LOCAL)
    return zip_corrupt(e, what, "the member's local header is missing");
  size_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
  uint64_t data_off = lho + 30 + lnlen + lxlen;
  if (data_off > cd_off || csize > cd_off - data_off)
    return zip_corrupt(e, what, "the member's data runs into the central directory");
  CLEANUP_FREE unsigned char *lvar = malloc(lnlen + lxlen + 1);
  if (!lvar) return oom(e);
  if (read_exact(fd, lvar, lnlen + lxlen, lho + 30) < 0) return io_error(e, errno, "read", src);
  if (lnlen != nlen || memcmp(lvar, m->name, nlen))
    return zip_corrupt(e, what, "the local header names another file than the central directory");
  uint16_t lflags = rd16(lh + 6), lmethod = rd16(lh + 8);
  if (lmethod != method || (lflags & 0x0041) != (flags & 0x0041) || (lflags & 8) != (flags & 8))
    return zip_corrupt(e, what, "the local header disagrees with the central directory");
  if (!(flags & 8)) {
    uint32_t lcrc = rd32(lh + 14);
    uint64_t lcsize = rd32(lh + 18), lusize = rd32(lh + 22);
    if (lcsize == 0xffffffffu || lusize == 0xffffffffu) {
      size_t zl = 0;
      const unsigned char *z = zip64_extra(lvar + lnlen, lxlen, &zl);
      if (!z || zl < 16) return zip_corrupt(e, what, "the local header lacks its zip64 sizes");
      lusize = rd64(z);
      lcsize = rd64(z + 8);
    }
    if (lcsize != csize || lusize != usize) {
      err_set(e, 400, "IMAGE_ZIP_BOMB",
              "%s: the local header declares %" PRIu64 " bytes (%" PRIu64
              " compressed), the central directory %" PRIu64 " (%" PRIu64 ")",
              label, lusize, lcsize, usize, csize);
      return -1;
    }
    if (lcrc != crc)
      return zip_corrupt(e, what, "the local header's CRC-32 differs from the central directory's");
  } else {
    /* A data descriptor follows the data: [signature] crc, sizes (4 or 8 bytes each). */
    unsigned char dd[24] = {0};
    uint64_t end = data_off + csize;
    size_t avail = cd_off - end < 24 ? (size_t)(cd_off - end) : 24;
    if (read_exact(fd, dd, avail, end) < 0) return io_error(e, errno, "read", src);
    int ok = 0;
    for (int sig = 0; sig <= 1 && !ok; sig++) {
      const unsigned char *p = dd + (sig ? 4 : 0);
      size_t base = sig ? 4 : 0;
      if (sig && rd32(dd) != SIG_DESCRIPTOR) continue;
      if (avail >= base + 12 && rd32(p) == crc && rd32(p + 4) == csize && rd32(p + 8) == usize)
        ok = 1;
      else if (avail >= base + 20 && rd32(p) == crc && rd64(p + 4) == csize &&
               rd64(p + 12) == usize)
        ok = 1;
    }
    if (!ok)
      return zip_corrupt(e, what, "the data descriptor disagrees with the central directory");
  }
  m->flags = flags;
  m->method = method;
  m->crc = crc;
  m->csize = csize;
  m->usize = usize;
  m->data_off = data_off;
  m->limit = cd_off;
  return 0;
}

/* The sink on a second thread: for a deflate member, inflate (zlib) and the
 * sink (SHA-256, CRC-32, zero scan, writes) take similar time, so the main
 * thread inflates chunk k+1 while the worker takes chunk k. Progress stays on
 * the caller's thread. If the thread cannot start, the sink runs inline. */
struct sink_worker {
  struct sink *s;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  const unsigned char *job;
  size_t job_len;
  int has_job, quit, failed, started;
  struct err err;
};

static void *sink_worker_main(void *arg) {
  struct sink_worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->has_job && !w->quit)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->has_job) break;
    const unsigned char *p = w->job;
    size_t n = w->job_len;
    int skip = w->failed;
    pthread_mutex_unlock(&w->mu);
    int rc = skip ? -1 : sink_put(w->s, p, n, 0, &w->err);
    pthread_mutex_lock(&w->mu);
    if (rc < 0) w->failed = 1;
    w->has_job = 0;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void sink_worker_start(struct sink_worker *w, struct sink *s) {
  memset(w, 0, sizeof *w);
  w->s = s;
  err_init(&w->err);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->started = pthread_create(&w->th, NULL, sink_worker_main, w) == 0;
}

/* Hand p to the worker once it has finished the previous chunk (so the caller
 * may reuse that chunk's buffer); -1 with e set if a chunk failed. */
static int sink_worker_put(struct sink_worker *w, const unsigned char *p, size_t n, struct err *e) {
  if (!w->started) return sink_put(w->s, p, n, 0, e);
  pthread_mutex_lock(&w->mu);
  while (w->has_job)
    pthread_cond_wait(&w->cv, &w->mu);
  int failed = w->failed;
  if (!failed) {
    w->job = p;
    w->job_len = n;
    w->has_job = 1;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  if (failed) *e = w->err;
  return failed ? -1 : 0;
}

/* Wait for the last chunk and stop the worker; -1 with e set if a chunk failed. */
static int sink_worker_finish(struct sink_worker *w, struct err *e) {
  int failed = 0;
  if (w->started) {
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    failed = w->failed;
    if (failed) *e = w->err;
  }
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  return failed ? -1 : 0;
}

/* Inflate the member's raw deflate stream into the sink: it must end exactly
 * at the declared size and exactly at the end of the compressed data. */
static int zip_inflate(int fd, const char *src, const struct zip_member *m, struct sink *s,
                       const char *label, unsigned char *in, unsigned char *out2, struct err *e) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, -15) != Z_OK) return oom(e);
  struct progress *prog = s->prog;
  s->prog = NULL; /* reported from here, not from the worker */
  struct sink_worker w;
  sink_worker_start(&w, s);
  unsigned char *out = out2; /* out2 holds two chunks: the worker takes one */
  uint64_t cread = 0, produced = 0;
  size_t fill = 0;
  int rc = -1, zr;
  for (;;) {
    if (zs.avail_in == 0 && cread < m->csize) {
      size_t n = m->csize - cread < CHUNK ? (size_t)(m->csize - cread) : CHUNK;
      if (read_exact(fd, in, n, m->data_off + cread) < 0) {
        io_error(e, errno, "read", src);
        goto out;
      }
      cread += n;
      zs.next_in = in;
      zs.avail_in = (uInt)n;
    }
    zs.next_out = out + fill;
    zs.avail_out = (uInt)(CHUNK - fill);
    zr = inflate(&zs, Z_NO_FLUSH);
    fill = CHUNK - zs.avail_out;
    if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR) {
      err_set(e, 400, "IMAGE_CORRUPT", "%s: inflate failed at offset %" PRIu64 ": %s", label,
              produced + fill, zs.msg ? zs.msg : "invalid deflate data");
      goto out;
    }
    if (zr == Z_MEM_ERROR) {
      oom(e);
      goto out;
    }
    if (produced + fill > m->usize) {
      err_set(e, 400, "IMAGE_ZIP_BOMB",
              "%s inflates to more than the %" PRIu64 " bytes it declares", label, m->usize);
      goto out;
    }
    if (fill == CHUNK || (zr == Z_STREAM_END && fill > 0)) {
      if (sink_worker_put(&w, out, fill, e) < 0) goto out;
      produced += fill;
      fill = 0;
      out = out == out2 ? out2 + CHUNK : out2;
      if (prog) progress_at(prog, s->prog_base + produced);
    }
    if (zr == Z_STREAM_END) break;
    if (zs.avail_in == 0 && cread == m->csize && zs.avail_out != 0) {
      /* All input consumed, room for output, and no end of stream. */
      err_set(e, 400, "IMAGE_TRUNCATED",
              "%s: its compressed data (%" PRIu64 " bytes) ends before the deflate stream does "
              "(after %" PRIu64 " bytes)",
              label, m->csize, produced + fill);
      goto out;
    }
  }
  if (zs.avail_in != 0 || cread != m->csize) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: the deflate stream ends %" PRIu64 " bytes before its compressed data does", label,
            m->csize - (cread - zs.avail_in));
    goto out;
  }
  if (produced != m->usize) {
    err_set(e, 400, "IMAGE_TRUNCATED", "%s inflates to %" PRIu64 " bytes but declares %" PRIu64,
            label, produced, m->usize);
    goto out;
  }
  rc = 0;
out:;
  struct err late;
  err_init(&late);
  if (sink_worker_finish(&w, rc == 0 ? e : &late) < 0) rc = -1;
  s->prog = prog;
  inflateEnd(&zs);
  return rc;
}

/* Stream the member's data through the sink; sizes and CRC checked. */
static int zip_extract(int fd, const char *src, const struct zip_member *m, struct sink *s,
                       struct err *e) {
  char label[400];
  snprintf(label, sizeof label, "%s: the zip member \"%.200s\"", s->what, m->name);
  unsigned char *in = malloc(CHUNK), *out = m->method == 8 ? malloc(2 * CHUNK) : NULL;
  int rc = -1;
  if (!in || (m->method == 8 && !out))
    oom(e);
  else if (m->method == 0)
    rc = sink_copy_fd(s, fd, src, m->data_off, m->usize, in, e);
  else
    rc = zip_inflate(fd, src, m, s, label, in, out, e);
  free(in);
  free(out);
  if (rc < 0) return -1;
  if ((uint32_t)s->crc != m->crc) {
    err_set(e, 400, "IMAGE_CRC_MISMATCH",
            "%s: CRC-32 of the content is %08x, the zip says %08x (the archive is damaged)", label,
            (unsigned)s->crc, (unsigned)m->crc);
    return -1;
  }
  return 0;
}

/* ---- qemu-img -------------------------------------------------------------- */

/* qemu-img's path (malloc'd), from STREAMER_QEMU_IMG or PATH; NULL if none. */
static char *qemu_img_find(void) {
  const char *env = getenv("STREAMER_QEMU_IMG");
  if (env && *env) return access(env, X_OK) == 0 ? strdup(env) : NULL;
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *dir = path;;) {
    const char *end = strchr(dir, ':');
    size_t n = end ? (size_t)(end - dir) : strlen(dir);
    char cand[PATH_MAX];
    int w = n ? snprintf(cand, sizeof cand, "%.*s/qemu-img", (int)n, dir)
              : snprintf(cand, sizeof cand, "./qemu-img");
    if (w > 0 && (size_t)w < sizeof cand && access(cand, X_OK) == 0) return strdup(cand);
    if (!end) return NULL;
    dir = end + 1;
  }
}

struct child {
  pid_t pid;
  int out, errfd; /* read ends of stdout and stderr */
};

/* Start argv[0] with stdin /dev/null and stdout/stderr on pipes. limits: the
 * address-space and CPU limits for qemu-img info (0 = none). */
static int child_start(char *const argv[], uint64_t as_limit, unsigned cpu_limit, struct child *c,
                       struct err *e) {
  int po[2], pe[2];
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return io_error(e, errno, "open", "/dev/null");
  if (pipe2(po, O_CLOEXEC) < 0) {
    close(devnull);
    return io_error(e, errno, "pipe for", argv[0]);
  }
  if (pipe2(pe, O_CLOEXEC) < 0) {
    close(devnull);
    close(po[0]);
    close(po[1]);
    return io_error(e, errno, "pipe for", argv[0]);
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* Only async-signal-safe calls from here to exec. */
    if (dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(127);
    /* No descriptor of the server (another thread's sockets, files opened
     * without O_CLOEXEC) and no signal mask it set reach qemu-img. */
    close_range(3, ~0u, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (as_limit) {
      struct rlimit rl = {as_limit, as_limit};
      setrlimit(RLIMIT_AS, &rl);
    }
    if (cpu_limit) {
      struct rlimit rl = {cpu_limit, cpu_limit};
      setrlimit(RLIMIT_CPU, &rl);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int saved = errno;
  close(devnull);
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    close(po[0]);
    close(pe[0]);
    return io_error(e, saved, "fork for", argv[0]);
  }
  c->pid = pid;
  c->out = po[0];
  c->errfd = pe[0];
  return 0;
}

/* Wait for the child; its exit status (>= 0), or -(signal) if killed. */
static int child_wait(struct child *c) {
  int st = 0;
  if (c->out >= 0) close(c->out);
  if (c->errfd >= 0) close(c->errfd);
  c->out = c->errfd = -1;
  while (waitpid(c->pid, &st, 0) < 0) {
    if (errno != EINTR) return -SIGKILL;
  }
  if (WIFSIGNALED(st)) return -WTERMSIG(st);
  return WEXITSTATUS(st);
}

/* A growing buffer capped at max bytes (the rest is read and dropped). */
struct outbuf {
  char *p;
  size_t len, cap, max;
  int overflow;
};

static int outbuf_read(struct outbuf *b, int fd) {
  char tmp[4096];
  ssize_t r = read(fd, tmp, sizeof tmp);
  if (r <= 0) return r < 0 && errno == EINTR ? 1 : (int)r;
  size_t n = (size_t)r;
  if (b->len + n > b->max) {
    b->overflow = 1;
    n = b->max - b->len;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, tmp, n);
  b->len += n;
  b->p[b->len] = 0;
  return 1;
}

/* qemu-img's stderr as one line for a message. */
static const char *stderr_text(struct outbuf *b) {
  if (!b->p || !b->len) return "(no message)";
  for (char *c = b->p; *c; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
  while (b->len && b->p[b->len - 1] == ' ')
    b->p[--b->len] = 0;
  return b->p;
}

/* Called with each new progress percentage qemu-img convert prints; nonzero stops it. */
typedef int (*child_tick_fn)(void *arg, double percent);

/* Read the child's stdout and stderr to the end, then reap it. tick (may be
 * NULL) sees the "(12.34/100%)" progress lines; when it returns nonzero the
 * child is killed (SIGKILL: the temp file it writes is ours to delete). */
static int child_collect(struct child *c, struct outbuf *out, struct outbuf *errb,
                         child_tick_fn tick, void *tick_arg, int *stopped) {
  int open_out = 1, open_err = 1;
  *stopped = 0;
  size_t scanned = 0;
  while (open_out || open_err) {
    struct pollfd pf[2] = {{c->out, POLLIN, 0}, {c->errfd, POLLIN, 0}};
    if (!open_out) pf[0].fd = -1;
    if (!open_err) pf[1].fd = -1;
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (open_out && pf[0].revents) {
      int r = outbuf_read(out, c->out);
      if (r <= 0) open_out = 0;
    }
    if (open_err && pf[1].revents) {
      int r = outbuf_read(errb, c->errfd);
      if (r <= 0) open_err = 0;
    }
    if (tick && out->len > scanned && !*stopped) {
      /* The last complete "(NN.NN/100%)" seen so far. */
      double pct = -1;
      for (char *p = out->p + scanned; (p = strchr(p, '(')) != NULL; p++) {
        double v;
        if (sscanf(p, "(%lf/100%%)", &v) == 1) pct = v;
      }
      scanned = out->len;
      if (out->len > 4096) { /* keep the buffer small */
        out->len = 0;
        out->p[0] = 0;
        scanned = 0;
      }
      if (pct >= 0 && tick(tick_arg, pct)) {
        kill(c->pid, SIGKILL);
        *stopped = 1;
      }
    }
  }
  return child_wait(c);
}

/* Vet an image with `qemu-img info` (format forced, resource-limited): its
 * virtual size, and no file but itself that qemu would open. */
static int qemu_info(const char *qemu, const char *fmt, const char *src_arg, const char *what,
                     uint64_t *vsize, struct err *e) {
  char *argv[] = {(char *)qemu, "info", "--output=json", "-f", (char *)fmt, (char *)src_arg, NULL};
  struct child c;
  if (child_start(argv, QEMU_INFO_AS_LIMIT, QEMU_INFO_CPU_LIMIT, &c, e) < 0) return -1;
  struct outbuf out = {.max = QEMU_INFO_MAX_OUTPUT}, errb = {.max = 2048};
  int stopped;
  int st = child_collect(&c, &out, &errb, NULL, NULL, &stopped);
  int rc = -1;
  json_t *j = NULL;
  if (st < 0) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: qemu-img info was killed by signal %d (it exceeded %llu MiB of memory or %u s of "
            "CPU): the %s image is damaged or hostile",
            what, -st, QEMU_INFO_AS_LIMIT >> 20, QEMU_INFO_CPU_LIMIT, fmt);
    goto out;
  }
  if (st == 127 && !out.len) {
    err_set(e, 501, "QEMU_IMG_MISSING", "%s: %s could not be run: %s", what, qemu,
            stderr_text(&errb));
    goto out;
  }
  if (st != 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info refuses it as %s: %s", what, fmt,
            stderr_text(&errb));
    goto out;
  }
  if (out.overflow || !out.p) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info printed no usable description", what);
    goto out;
  }
  j = json_loads(out.p, 0, NULL);
  json_t *jfmt = json_object_get(j, "format");
  json_t *jsize = json_object_get(j, "virtual-size");
  if (!json_is_object(j) || !json_is_string(jfmt) || !json_is_integer(jsize) ||
      json_integer_value(jsize) < 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img info printed no usable description", what);
    goto out;
  }
  if (strcmp(json_string_value(jfmt), fmt)) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img sees a %s image, not %s", what,
            json_string_value(jfmt), fmt);
    goto out;
  }
  json_t *b = json_object_get(j, "backing-filename");
  if (!b) b = json_object_get(j, "full-backing-filename");
  if (b) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the %s image has a backing file (\"%.200s\"); it would read another file of the "
            "server. Flatten it first (qemu-img convert -O %s without -B)",
            what, fmt, json_is_string(b) ? json_string_value(b) : "?", fmt);
    goto out;
  }
  if (json_is_true(json_object_get(j, "encrypted"))) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: the %s image is encrypted", what, fmt);
    goto out;
  }
  json_t *data = json_object_get(json_object_get(j, "format-specific"), "data");
  json_t *df = json_object_get(data, "data-file");
  if (df) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the %s image keeps its data in another file (\"%.200s\"); it would read "
            "another file of the server",
            what, fmt, json_is_string(df) ? json_string_value(df) : "?");
    goto out;
  }
  if (json_object_get(data, "encrypt")) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: the %s image is encrypted", what, fmt);
    goto out;
  }
  json_t *extents = json_object_get(data, "extents");
  if (extents) {
    size_t k;
    json_t *x;
    json_array_foreach(extents, k, x) {
      const char *fn = json_string_value(json_object_get(x, "filename"));
      if (!fn || strcmp(fn, src_arg)) {
        err_set(e, 400, "IMAGE_UNSUPPORTED",
                "%s: the %s image has an extent in another file (\"%.200s\"); upload a "
                "single-file (monolithic) image",
                what, fmt, fn ? fn : "?");
        goto out;
      }
    }
  }
  *vsize = (uint64_t)json_integer_value(jsize);
  rc = 0;
out:
  json_decref(j);
  free(out.p);
  free(errb.p);
  return rc;
}

struct convert_tick {
  struct progress *prog;
  uint64_t size;
  int fd;
  int out_of_space;
};

static int convert_tick(void *arg, double pct) {
  struct convert_tick *t = arg;
  if (pct > 100) pct = 100;
  if (t->prog) progress_at(t->prog, (uint64_t)((double)t->size * pct / 100.0));
  if (!free_space_ok(t->fd)) {
    t->out_of_space = 1;
    return 1;
  }
  return 0;
}

static int qemu_convert(const char *qemu, const char *fmt, const char *src_arg, const char *dst_arg,
                        int dst_fd, uint64_t vsize, const char *what, struct progress *prog,
                        struct err *e) {
  char *argv[] = {(char *)qemu,       "convert", "-p",  "-f",
                  (char *)fmt,        "-O",      "raw", "-n",
                  "--target-is-zero", "-S",      "4k",  (char *)src_arg,
                  (char *)dst_arg,    NULL};
  struct child c;
  if (child_start(argv, 0, 0, &c, e) < 0) return -1;
  struct outbuf out = {.max = 8192}, errb = {.max = 2048};
  struct convert_tick t = {prog, vsize, dst_fd, 0};
  int stopped;
  int st = child_collect(&c, &out, &errb, convert_tick, &t, &stopped);
  int rc = 0;
  if (t.out_of_space || (st != 0 && errb.p && strstr(errb.p, "No space left"))) {
    err_set(e, 507, "INSUFFICIENT_STORAGE",
            "%s: the volume store ran out of space while qemu-img converted the %s image "
            "(it keeps %llu MiB free)",
            what, fmt, (unsigned long long)(space_reserve() >> 20));
    err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                  "and import the image again.");
    rc = -1;
  } else if (st != 0) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: qemu-img convert failed on the %s image: %s", what, fmt,
            st < 0 ? "killed" : stderr_text(&errb));
    rc = -1;
  }
  free(out.p);
  free(errb.p);
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

static int open_temp(struct import *im, struct err *e) {
  int fd = open(im->tmp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error(e, errno, "create", im->tmp);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int saved = errno;
    close(fd);
    if (saved == EWOULDBLOCK) {
      err_set(e, 409, "GOLDEN_VOLUME_BUSY",
              "%s: another import into this golden volume is in progress", im->what);
      return -1;
    }
    return io_error(e, saved, "lock", im->tmp);
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
  if (ftruncate(fd, 0) < 0) return io_error(e, errno, "truncate", im->tmp);
  return 0;
}

static void import_cleanup(struct import *im, int failed) {
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
static int check_space_upfront(struct import *im, struct err *e) {
  if (free_space_ok(im->tmp_fd)) return 0;
  err_set(e, 507, "INSUFFICIENT_STORAGE", "%s: the volume store has less than %llu MiB free",
          im->what, (unsigned long long)(space_reserve() >> 20));
  err_action(e, "Free space in the volume store (delete unused golden images or OS volumes) "
                "and import the image again.");
  return -1;
}

static int import_zip(struct import *im, const char *src, uint64_t fsize, struct progress *prog,
                      struct image_info *info, struct err *e) {
  struct zip_member m;
  memset(&m, 0, sizeof m);
  if (zip_locate(im->src_fd, fsize, src, im->what, &m, e) < 0) return -1;
  if (open_temp(im, e) < 0 || check_space_upfront(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)m.usize) < 0) {
    if (errno == EFBIG || errno == EINVAL) {
      err_set(e, 507, "INSUFFICIENT_STORAGE",
              "%s: the volume store's file system cannot hold a file of %" PRIu64 " bytes",
              im->what, m.usize);
      return -1;
    }
    return io_error(e, errno, "truncate", im->tmp);
  }
  prog->total = m.usize;
  progress_at(prog, 0);
  struct sink s;
  int rc = sink_init(&s, im->tmp_fd, im->tmp, im->what, m.usize, prog, 0, e);
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
  uint64_t max = max_image_size();
  char label[400];
  snprintf(label, sizeof label, "%s: the image", im->what);
  if (check_disk_size(label, fsize, e) < 0) return -1;
  if (fsize > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the image is %" PRIu64 " bytes, more than the largest accepted (%" PRIu64
            " bytes, STREAMER_IMAGE_MAX_BYTES)",
            im->what, fsize, max);
    return -1;
  }
  if (open_temp(im, e) < 0 || check_space_upfront(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)fsize) < 0) return io_error(e, errno, "truncate", im->tmp);
  prog->total = fsize;
  progress_at(prog, 0);
  struct sink s;
  int rc = sink_init(&s, im->tmp_fd, im->tmp, im->what, fsize, prog, 0, e);
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
    if (read_exact(im->src_fd, head, sizeof head, 0) == 0 &&
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
  if (!im->src_arg || !im->dst_arg) return oom(e);
  const char *src_arg = im->src_arg, *dst_arg = im->dst_arg;
  uint64_t vsize = 0, max = max_image_size();
  if (qemu_info(qemu, fname, src_arg, im->what, &vsize, e) < 0) return -1;
  char label[400];
  snprintf(label, sizeof label, "%s: the %s image's disk", im->what, fname);
  if (check_disk_size(label, vsize, e) < 0) return -1;
  if (vsize > max) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the image's virtual size is %" PRIu64
            " bytes, more than the largest accepted (%" PRIu64 " bytes, STREAMER_IMAGE_MAX_BYTES)",
            im->what, vsize, max);
    return -1;
  }
  if (open_temp(im, e) < 0 || check_space_upfront(im, e) < 0) return -1;
  if (ftruncate(im->tmp_fd, (off_t)vsize) < 0) return io_error(e, errno, "truncate", im->tmp);
  /* Two passes: conversion, then the checksums over the raw result. */
  prog->total = vsize * 2;
  progress_at(prog, 0);
  if (qemu_convert(qemu, fname, src_arg, dst_arg, im->tmp_fd, vsize, im->what, prog, e) < 0)
    return -1;
  struct stat st;
  if (fstat(im->tmp_fd, &st) < 0) return io_error(e, errno, "stat", im->tmp);
  if ((uint64_t)st.st_size != vsize) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: qemu-img wrote %" PRIu64 " bytes of a %" PRIu64 "-byte image", im->what,
            (uint64_t)st.st_size, vsize);
    return -1;
  }
  struct sink s;
  int rc = sink_init(&s, -1, im->tmp, im->what, vsize, prog, vsize, e);
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
    oom(e);
    goto out;
  }
  im.src_fd = open(src_path, O_RDONLY | O_CLOEXEC);
  if (im.src_fd < 0) {
    io_error(e, errno, "open", src_path);
    goto out;
  }
  struct stat st;
  if (fstat(im.src_fd, &st) < 0) {
    io_error(e, errno, "stat", src_path);
    goto out;
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: %s is neither a file nor a block device", im.what,
            src_path);
    goto out;
  }
  off_t end = lseek(im.src_fd, 0, SEEK_END);
  if (end < 0) {
    io_error(e, errno, "seek", src_path);
    goto out;
  }
  uint64_t fsize = (uint64_t)end;
  unsigned char head[SECTOR];
  size_t hn = fsize < SECTOR ? (size_t)fsize : SECTOR;
  if (read_exact(im.src_fd, head, hn, 0) < 0) {
    io_error(e, errno, "read", src_path);
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
    io_error(e, errno, "stat", im.tmp);
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
  if (!x) return oom(e);
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
  memcpy(h + 30, member, nlen);
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
  memcpy(t + 46, member, nlen);
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
