/* zip.c — the zip reader of golden image import (docs/formats/golden-image.md,
 * "The zip reader"): our own reader over zlib for the HPE zip, an archive of
 * exactly one raw disk image. zip_locate finds the end of central directory
 * record (zip64 aware), the one central directory entry and its local header,
 * and vets them (member name, encryption, method, declared sizes against the
 * limits and the deflate ratio, local header and data descriptor against the
 * central directory); zip_extract streams the member into the sink (image.c):
 * stored data copied, deflate inflated with the sink on a worker thread, and
 * checks that the sizes and the CRC-32 match. zip_member_name_ok is also the
 * export's check of the name it writes. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "vol/image_int.h"

#define DEFLATE_MAX_RATIO 1032u /* 258 bytes per 2-bit code, at best */

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

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

/* Bytes [off, off+n) of the zip: pread, or from the kept head and tail of a
 * streamed zip (ENODATA for bytes that were not kept). */
static int zread(const struct zip_reader *r, void *buf, size_t n, uint64_t off) {
  if (r->fd >= 0) return util_pread_exact(r->fd, buf, n, off);
  unsigned char *p = buf;
  while (n > 0) {
    size_t k;
    if (off < r->head_len) {
      k = r->head_len - off < n ? (size_t)(r->head_len - off) : n;
      memcpy(p, r->head + off, k);
    } else if (off >= r->tail_off && off - r->tail_off < r->tail_len) {
      k = r->tail_len - (off - r->tail_off) < n ? (size_t)(r->tail_len - (off - r->tail_off)) : n;
      memcpy(p, r->tail + (off - r->tail_off), k);
    } else {
      errno = ENODATA;
      return -1;
    }
    p += k;
    off += k;
    n -= k;
  }
  return 0;
}

/* A failed zread: the file's I/O error, or a structure that points where a
 * streamed zip kept nothing (into the member's data). */
static int zread_error(struct err *e, const char *what, const char *src) {
  if (errno == ENODATA) {
    err_set(e, 400, "IMAGE_CORRUPT", "%s: the zip's directory points outside the archive", what);
    return -1;
  }
  return image_io_error(e, errno, "read", src);
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

int zip_member_name_ok(const char *what, const unsigned char *name, size_t n, uint32_t ext_attr,
                       uint16_t made_by, struct err *e) {
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

/* The checks of a member's method and flags (central directory or local header). */
static int check_method(const char *what, const char *name, uint16_t flags, uint16_t method,
                        struct err *e) {
  if (flags & 0x0041 || flags & 0x2000 || method == 99) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the zip member \"%s\" is encrypted; upload an unencrypted zip", what, name);
    return -1;
  }
  if (method != 0 && method != 8) {
    err_set(e, 400, "IMAGE_UNSUPPORTED",
            "%s: the zip member \"%s\" uses compression method %u%s; golden image zips use "
            "deflate (8) or stored (0)",
            what, name, method, method_name(method));
    return -1;
  }
  return 0;
}

/* The checks of a member's declared sizes. */
static int check_sizes(const char *label, uint16_t method, uint64_t csize, uint64_t usize,
                       struct err *e) {
  if (image_check_disk_size(label, usize, e) < 0) return -1;
  uint64_t max = image_max_size();
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
  return 0;
}

int zip_local_header(const unsigned char *lh, size_t n, const char *what, struct zip_member *m,
                     int *sized, struct err *e) {
  if (n < 30 || rd32(lh) != SIG_LOCAL) {
    if (n >= 4 && rd32(lh) == SIG_EOCD)
      err_set(e, 400, "IMAGE_ZIP_MEMBERS", "%s: the zip is empty; it must hold one disk image",
              what);
    else
      err_set(e, 400, "IMAGE_CORRUPT", "%s: the file is not a zip archive", what);
    return -1;
  }
  uint16_t flags = rd16(lh + 6), method = rd16(lh + 8);
  size_t nlen = rd16(lh + 26), xlen = rd16(lh + 28);
  if (n < 30 + nlen + xlen) return zip_corrupt(e, what, "the local header is cut short");
  if (zip_member_name_ok(what, lh + 30, nlen, 0, 0, e) < 0) return -1;
  memcpy(m->name, lh + 30, nlen);
  m->name[nlen] = 0;
  if (check_method(what, m->name, flags, method, e) < 0) return -1;
  m->flags = flags;
  m->method = method;
  m->data_off = 30 + nlen + xlen;
  *sized = !(flags & 8);
  if (!*sized) return 0; /* the sizes come after the data */
  m->crc = rd32(lh + 14);
  m->csize = rd32(lh + 18);
  m->usize = rd32(lh + 22);
  if (m->csize == 0xffffffffu || m->usize == 0xffffffffu) {
    size_t zl = 0;
    const unsigned char *z = zip64_extra(lh + 30 + nlen, xlen, &zl);
    if (!z || zl < 16) return zip_corrupt(e, what, "the local header lacks its zip64 sizes");
    m->usize = rd64(z);
    m->csize = rd64(z + 8);
  }
  char label[400];
  snprintf(label, sizeof label, "%s: the zip member \"%.200s\"", what, m->name);
  return check_sizes(label, method, m->csize, m->usize, e);
}

/* The largest parts of the zip that zip_locate reads: the end of central
 * directory record with a comment of up to 64 KiB, one central directory
 * entry (46 bytes, then name, extra and comment of up to 64 KiB each, and room
 * to see a second entry's signature), and the local header's name and extra. */
#define LOCATE_TAIL_MAX (22 + 65535)
#define LOCATE_CD_MAX (46 + 3 * 65535 + 4)
#define LOCATE_LVAR_MAX (2 * 65535 + 1)

static int locate(const struct zip_reader *r, uint64_t fsize, const char *src, const char *what,
                  struct zip_member *m, unsigned char *scratch, struct err *e);

/* Locate and vet the one member of the zip (fsize bytes) that r reads. One
 * scratch buffer, freed here (explicitly: clang's analyzer does not follow
 * the cleanup attribute through the many early returns). */
int zip_locate(const struct zip_reader *r, uint64_t fsize, const char *src, const char *what,
               struct zip_member *m, struct err *e) {
  unsigned char *scratch = malloc(LOCATE_TAIL_MAX + LOCATE_CD_MAX + LOCATE_LVAR_MAX);
  if (!scratch) {
    image_oom(e);
    return -1;
  }
  int rc = locate(r, fsize, src, what, m, scratch, e);
  free(scratch);
  return rc;
}

static int locate(const struct zip_reader *r, uint64_t fsize, const char *src, const char *what,
                  struct zip_member *m, unsigned char *scratch, struct err *e) {
  unsigned char head[4] = {0};
  int starts_local = fsize >= 4 && zread(r, head, 4, 0) == 0 && rd32(head) == SIG_LOCAL;
  if (fsize < 22) {
    err_set(e, 400, starts_local ? "IMAGE_TRUNCATED" : "IMAGE_CORRUPT",
            "%s: %s is %" PRIu64 " bytes, too short for a zip archive", what, src, fsize);
    return -1;
  }
  /* The end of central directory record: 22 bytes and a comment of up to 64 KiB. */
  size_t tail_len = fsize < LOCATE_TAIL_MAX ? (size_t)fsize : LOCATE_TAIL_MAX;
  uint64_t tail_off = fsize - tail_len;
  unsigned char *tail = scratch;
  if (zread(r, tail, tail_len, tail_off) < 0) return zread_error(e, what, src);
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
  if (eocd_off >= 20 && zread(r, loc, 20, eocd_off - 20) == 0 && rd32(loc) == SIG_LOCATOR64) {
    uint64_t z_off = rd64(loc + 8);
    unsigned char z[56];
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
      return zip_corrupt(e, what, "the zip spans several disks (split archives are not supported)");
    if (z_off > eocd_off - 20 || eocd_off - 20 - z_off < 56 || zread(r, z, 56, z_off) < 0 ||
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
  if (cd_size > LOCATE_CD_MAX)
    return zip_corrupt(e, what, "the central directory is larger than one entry can be");
  unsigned char *cd = scratch + LOCATE_TAIL_MAX;
  if (zread(r, cd, cd_size, cd_off) < 0) return zread_error(e, what, src);
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
  if (check_method(what, m->name, flags, method, e) < 0) return -1;
  char label[400];
  snprintf(label, sizeof label, "%s: the zip member \"%.200s\"", what, m->name);
  if (check_sizes(label, method, csize, usize, e) < 0) return -1;
  /* The local header must agree with the central directory. */
  unsigned char lh[30];
  if (lho > cd_off || cd_off - lho < 30 || zread(r, lh, 30, lho) < 0 || rd32(lh) != SIG_LOCAL)
    return zip_corrupt(e, what, "the member's local header is missing");
  size_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
  uint64_t data_off = lho + 30 + lnlen + lxlen;
  if (data_off > cd_off || csize > cd_off - data_off)
    return zip_corrupt(e, what, "the member's data runs into the central directory");
  unsigned char *lvar = scratch + LOCATE_TAIL_MAX + LOCATE_CD_MAX;
  if (zread(r, lvar, lnlen + lxlen, lho + 30) < 0) return zread_error(e, what, src);
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
    if (zread(r, dd, avail, end) < 0) return zread_error(e, what, src);
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

/* ---- inflate into the sink ---------------------------------------------------
 * The deflate stream is decoded by our inflater (inflate.c) into one of two
 * output buffers, each the 32 KiB window followed by a 1 MiB chunk; a full
 * chunk goes to the sink on its worker thread while the other buffer fills
 * (it gets the window copied in first). Input is pushed as it comes. */

#define ZIN_CAP (256u << 10) /* input kept between pushes */

int zinf_init(struct zinf *zi, struct sink_worker *w, uint64_t limit, const char *label,
              struct err *e) {
  memset(zi, 0, sizeof *zi);
  zi->w = w;
  zi->limit = limit;
  zi->label = label;
  zi->z = malloc(sizeof *zi->z);
  zi->in = malloc(ZIN_CAP);
  if (!zi->z || !zi->in) {
    zinf_free(zi);
    image_oom(e);
    return -1;
  }
  zi->out = sink_worker_next(w);
  zi->pos = INFLATE_WINDOW;
  inflater_init(zi->z);
  return 0;
}

void zinf_free(struct zinf *zi) {
  free(zi->z);
  free(zi->in);
  zi->z = NULL;
  zi->in = NULL;
  zi->out = NULL;
}

/* Hand the chunk being filled to the sink; the next buffer gets the window. */
static int zinf_flush(struct zinf *zi, struct err *e) {
  size_t n = zi->pos - INFLATE_WINDOW;
  if (n == 0) return 0;
  unsigned char *full = zi->out;
  if (sink_worker_put(zi->w, full + INFLATE_WINDOW, n, e) < 0) return -1;
  zi->produced += n;
  if (zi->prog) progress_at(zi->prog, zi->prog_base + zi->produced);
  /* The worker only reads `full`, and it is not reused before it is done. */
  zi->out = sink_worker_next(zi->w);
  memcpy(zi->out, full + zi->pos - INFLATE_WINDOW, INFLATE_WINDOW);
  zi->pos = INFLATE_WINDOW;
  return 0;
}

int zinf_push(struct zinf *zi, const unsigned char *p, size_t n, int last, struct err *e) {
  for (;;) {
    if (zi->ended) return 0;
    size_t k = ZIN_CAP - zi->in_len < n ? ZIN_CAP - zi->in_len : n;
    if (k) memcpy(zi->in + zi->in_len, p, k);
    zi->in_len += k;
    p += k;
    n -= k;
    int fin = last && n == 0;
    const unsigned char *ip = zi->in;
    size_t il = zi->in_len;
    int rc;
    do {
      rc = inflater_run(zi->z, &ip, &il, fin, zi->out, &zi->pos, INFLATE_WINDOW + CHUNK);
      /* More than declared: stop before the surplus reaches the sink. */
      if (zi->pos - INFLATE_WINDOW > zi->limit - zi->produced) {
        err_set(e, 400, "IMAGE_ZIP_BOMB", "%s inflates to more than the %" PRIu64 " bytes %s",
                zi->label, zi->limit,
                zi->limit_is_max ? "accepted (STREAMER_IMAGE_MAX_BYTES)" : "it declares");
        return -1;
      }
      if (rc == INFLATE_FULL && zinf_flush(zi, e) < 0) return -1;
    } while (rc == INFLATE_FULL);
    zi->consumed += zi->in_len - il;
    memmove(zi->in, ip, il);
    zi->in_len = il;
    if (rc == INFLATE_ERROR) {
      err_set(e, 400, "IMAGE_CORRUPT", "%s: inflate failed at offset %" PRIu64 ": %s", zi->label,
              zi->z->total_out, zi->z->msg);
      return -1;
    }
    if (rc == INFLATE_TRUNCATED) {
      err_set(e, 400, "IMAGE_TRUNCATED",
              "%s: its compressed data ends before the deflate stream does (after %" PRIu64
              " bytes)",
              zi->label, zi->z->total_out);
      return -1;
    }
    if (rc == INFLATE_END) {
      zi->ended = 1;
      return zinf_flush(zi, e);
    }
    /* INFLATE_MORE */
    if (n == 0) return 0;
  }
}

/* Inflate the member's raw deflate stream into the sink: it must end exactly
 * at the declared size and exactly at the end of the compressed data. */
static int zip_inflate(int fd, const char *src, const struct zip_member *m, struct sink *s,
                       const char *label, unsigned char *in, struct err *e) {
  struct progress *prog = s->prog;
  s->prog = NULL; /* reported from here, not from the worker */
  struct sink_worker w;
  struct zinf zi;
  memset(&zi, 0, sizeof zi);
  int rc = sink_worker_start(&w, s, e);
  if (rc == 0) rc = zinf_init(&zi, &w, m->usize, label, e);
  zi.prog = prog;
  zi.prog_base = s->prog_base;
  uint64_t cread = 0;
  while (rc == 0 && !zi.ended) {
    size_t n = m->csize - cread < CHUNK ? (size_t)(m->csize - cread) : CHUNK;
    if (n && util_pread_exact(fd, in, n, m->data_off + cread) < 0) {
      rc = image_io_error(e, errno, "read", src);
      break;
    }
    cread += n;
    rc = zinf_push(&zi, in, n, cread == m->csize, e);
  }
  if (rc == 0 && zi.consumed != m->csize) {
    err_set(e, 400, "IMAGE_CORRUPT",
            "%s: the deflate stream ends %" PRIu64 " bytes before its compressed data does", label,
            m->csize - zi.consumed);
    rc = -1;
  }
  if (rc == 0 && zi.produced != m->usize) {
    err_set(e, 400, "IMAGE_TRUNCATED", "%s inflates to %" PRIu64 " bytes but declares %" PRIu64,
            label, zi.produced, m->usize);
    rc = -1;
  }
  struct err late;
  err_init(&late);
  if (sink_worker_finish(&w, rc == 0 ? e : &late) < 0) rc = -1;
  err_clear(&late);
  zinf_free(&zi);
  s->prog = prog;
  return rc;
}

/* Stream the member's data through the sink; sizes and CRC checked. */
int zip_extract(int fd, const char *src, const struct zip_member *m, struct sink *s,
                struct err *e) {
  char label[400];
  snprintf(label, sizeof label, "%s: the zip member \"%.200s\"", s->what, m->name);
  unsigned char *in = malloc(CHUNK);
  int rc = -1;
  if (!in)
    image_oom(e);
  else if (m->method == 0)
    rc = sink_copy_fd(s, fd, src, m->data_off, m->usize, in, e);
  else
    rc = zip_inflate(fd, src, m, s, label, in, e);
  free(in);
  if (rc < 0) return -1;
  return zip_check_crc(m, (uint32_t)s->crc, label, e);
}

int zip_check_crc(const struct zip_member *m, uint32_t crc, const char *label, struct err *e) {
  if (crc != m->crc) {
    err_set(e, 400, "IMAGE_CRC_MISMATCH",
            "%s: CRC-32 of the content is %08x, the zip says %08x (the archive is damaged)", label,
            (unsigned)crc, (unsigned)m->crc);
    return -1;
  }
  return 0;
}
