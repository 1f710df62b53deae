/* bundle_zip.c — the bundle zip (docs/formats/bundle.md): a multi-member
 * reader that vets untrusted input before anything is read (end of central
 * directory and zip64 records, every central entry against its local header,
 * names, encryption, methods, symlinks, duplicates, overlapping members,
 * counts), inflates members with their size, ratio and CRC-32 checks and
 * digests; a writer in HPE's layout (flags 0x0808 with data descriptors,
 * UTF-8 names, deflate, "MS-DOS" creator, zip64 only when needed); the
 * MANIFEST.MF and checksum-file texts. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "artifact/bundle_int.h"

#define IOBUF (256u << 10)

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int not_zip(struct err *e, const char *why) {
  err_set(e, 400, "BUNDLE_NOT_ZIP", "the bundle is not a valid zip file: %s", why);
  err_action(e, "Upload an artifact bundle (.zip) exported by Image Streamer.");
  return -1;
}

static int io_error(struct err *e) {
  if (errno == ENODATA) return not_zip(e, "it is truncated");
  err_set(e, 500, "BUNDLE_IO", "cannot read the bundle file: %s", strerror(errno));
  return -1;
}

/* ---- member names ------------------------------------------------------------ */
static int utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k;
    unsigned min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      k = 1;
      min = 0x80;
      c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2;
      min = 0x800;
      c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3;
      min = 0x10000;
      c &= 0x07;
    } else {
      return 0;
    }
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (s[i + j] & 0xc0) != 0x80) return 0;
      c = c << 6 | (s[i + j] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    i += k + 1;
  }
  return 1;
}

static int name_error(struct err *e, const char *name, const char *why) {
  err_set(e, 400, "BUNDLE_MEMBER_NAME", "the bundle member \"%.200s\" %s", name, why);
  err_action(e, "Artifact bundles are flat zips of the artifacts' JSON files; re-export it.");
  return -1;
}

/* Vet a member name; raw holds `n` bytes (not NUL-terminated). */
static int check_name(const unsigned char *raw, size_t n, char *shown, struct err *e) {
  if (n == 0) return name_error(e, "", "has an empty name");
  if (!utf8_ok(raw, n)) return name_error(e, shown, "has a name that is not UTF-8 text");
  for (size_t i = 0; i < n; i++) {
    if (raw[i] < 0x20 || raw[i] == 0x7f)
      return name_error(e, shown, "has a control character in its name");
  }
  if (memchr(raw, '\\', n)) return name_error(e, shown, "has a backslash in its name");
  if (raw[n - 1] == '/') return name_error(e, shown, "is a directory");
  if (raw[0] == '/') return name_error(e, shown, "has an absolute path");
  if (n >= 2 && raw[1] == ':' && ((raw[0] | 0x20) >= 'a' && (raw[0] | 0x20) <= 'z'))
    return name_error(e, shown, "has an absolute (drive letter) path");
  if ((n == 1 && raw[0] == '.') || (n == 2 && raw[0] == '.' && raw[1] == '.'))
    return name_error(e, shown, "is a relative path component");
  for (size_t i = 0; i + 1 < n; i++)
    if (raw[i] == '.' && raw[i + 1] == '.' && (i == 0 || raw[i - 1] == '/') &&
        (i + 2 == n || raw[i + 2] == '/'))
      return name_error(e, shown, "has a \"..\" path component (zip-slip)");
  if (memchr(raw, '/', n)) return name_error(e, shown, "is in a folder (bundles are flat)");
  return 0;
}

static int is_id(const char *s, size_t n) {
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
      return 0;
  }
  return 1;
}

static void classify(struct bz_member *m) {
  static const char *const SUFFIX[] = {"_planscript.json", "_buildplan.json",
                                       "_deploymentplan.json", "_goldenimage.json"};
  m->kind = BZ_OTHER;
  if (strcmp(m->name, "MANIFEST.MF") == 0) {
    m->kind = BZ_MANIFEST;
    return;
  }
  if (strcmp(m->name, "SHA256SUM.sha256sum") == 0) {
    m->kind = BZ_SHA256SUM;
    return;
  }
  if (strcmp(m->name, "SHA1SUM.sha1sum") == 0) {
    m->kind = BZ_SHA1SUM;
    return;
  }
  size_t len = strlen(m->name);
  for (int k = 0; k < 4; k++) {
    size_t sl = strlen(SUFFIX[k]);
    if (len > sl && strcmp(m->name + len - sl, SUFFIX[k]) == 0 && is_id(m->name, len - sl)) {
      m->kind = (enum bz_kind)k;
      memcpy(m->id, m->name, len - sl);
      m->id[len - sl] = 0;
      return;
    }
  }
}

/* ---- reading the directory ---------------------------------------------------- */
static int by_name(const void *a, const void *b) {
  const struct bz_member *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int by_offset(const void *a, const void *b) {
  const struct bz_member *const *x = a, *const *y = b;
  return (*x)->lho < (*y)->lho ? -1 : (*x)->lho > (*y)->lho;
}

void bz_close(struct bz *z) {
  for (size_t i = 0; z->m && i < z->n; i++)
    free(z->m[i].name);
  free(z->m);
  z->m = NULL;
  z->n = 0;
}

/* Find the end of central directory: its offset, the entry count, the
 * directory's offset and size (zip64 records when present). */
static int find_eocd(struct bz *z, uint64_t *count, uint64_t *cd_off, uint64_t *cd_size,
                     struct err *e) {
  if (z->fsize < 22) return not_zip(e, "it is too short");
  size_t tail = z->fsize < 65557 ? (size_t)z->fsize : 65557;
  unsigned char *buf = malloc(tail);
  if (!buf) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  uint64_t base = z->fsize - tail;
  if (util_pread_exact(z->fd, buf, tail, base) < 0) {
    free(buf);
    return io_error(e);
  }
  long at = -1;
  for (long i = (long)tail - 22; i >= 0; i--) {
    if (rd32(buf + i) == 0x06054b50 && (size_t)i + 22 + rd16(buf + i + 20) == tail) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    free(buf);
    return not_zip(e, "no end of central directory record (not a zip, or truncated)");
  }
  const unsigned char *p = buf + at;
  if (rd16(p + 4) != 0 || rd16(p + 6) != 0 || rd16(p + 8) != rd16(p + 10)) {
    free(buf);
    return not_zip(e, "multi-disk archives are not supported");
  }
  *count = rd16(p + 10);
  *cd_size = rd32(p + 12);
  *cd_off = rd32(p + 16);
  uint64_t eocd = base + (uint64_t)at;
  int zip64 = *count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu;
  if (eocd >= 20) {
    unsigned char loc[20];
    if (util_pread_exact(z->fd, loc, 20, eocd - 20) < 0) {
      free(buf);
      return io_error(e);
    }
    if (rd32(loc) == 0x07064b50) {
      uint64_t off64 = rd64(loc + 8);
      unsigned char r[56];
      if (off64 + 56 > eocd || util_pread_exact(z->fd, r, 56, off64) < 0 || rd32(r) != 0x06064b50) {
        free(buf);
        return not_zip(e, "a bad zip64 end of central directory record");
      }
      *count = rd64(r + 32);
      *cd_size = rd64(r + 40);
      *cd_off = rd64(r + 48);
      eocd = off64;
      zip64 = 0;
    }
  }
  free(buf);
  if (zip64) return not_zip(e, "the zip64 end of central directory record is missing");
  if (*cd_off > eocd || *cd_size > eocd - *cd_off)
    return not_zip(e, "the central directory lies outside the file");
  return 0;
}

int bz_open(struct bz *z, int fd, struct err *e) {
  memset(z, 0, sizeof *z);
  z->fd = fd;
  struct stat st;
  if (fstat(fd, &st) < 0) return io_error(e);
  z->fsize = (uint64_t)st.st_size;
  uint64_t count = 0, cd_off = 0, cd_size = 0;
  if (find_eocd(z, &count, &cd_off, &cd_size, e) < 0) return -1;
  if (count > BUNDLE_MAX_MEMBERS) {
    err_set(e, 400, "BUNDLE_TOO_MANY_MEMBERS",
            "the bundle has %llu members; at most %u are accepted", (unsigned long long)count,
            BUNDLE_MAX_MEMBERS);
    return -1;
  }
  if (count == 0) return not_zip(e, "it has no members");
  if (cd_size < count * 46) return not_zip(e, "the central directory is too short");
  if (cd_size > (uint64_t)BUNDLE_MAX_MEMBERS * (46 + 3 * 65535))
    return not_zip(e, "the central directory is too large");
  unsigned char *cd = malloc(cd_size ? cd_size : 1);
  z->m = calloc(count, sizeof *z->m);
  struct bz_member **order = calloc(count, sizeof *order);
  int rc = -1;
  if (!cd || !z->m || !order) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  if (util_pread_exact(fd, cd, cd_size, cd_off) < 0) {
    io_error(e);
    goto out;
  }
  uint64_t pos = 0;
  for (uint64_t i = 0; i < count; i++) {
    if (pos + 46 > cd_size || rd32(cd + pos) != 0x02014b50) {
      not_zip(e, "a bad central directory entry");
      goto out;
    }
    const unsigned char *p = cd + pos;
    size_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    if (pos + 46 + nlen + xlen + clen > cd_size) {
      not_zip(e, "a central directory entry runs past the directory");
      goto out;
    }
    struct bz_member *m = &z->m[z->n];
    m->made_by = rd16(p + 4);
    m->flags = rd16(p + 8);
    m->method = rd16(p + 10);
    m->crc = rd32(p + 16);
    m->csize = rd32(p + 20);
    m->usize = rd32(p + 24);
    m->ext_attr = rd32(p + 38);
    m->lho = rd32(p + 42);
    const unsigned char *raw = p + 46;
    char shown[256];
    size_t sl = nlen < sizeof shown - 1 ? nlen : sizeof shown - 1;
    for (size_t k = 0; k < sl; k++)
      shown[k] = raw[k] < 0x20 || raw[k] == 0x7f ? '?' : (char)raw[k];
    shown[sl] = 0;
    if (nlen > 1024) {
      name_error(e, shown, "has a name longer than 1024 bytes");
      goto out;
    }
    if (check_name(raw, nlen, shown, e) < 0) goto out;
    m->name = strndup((const char *)raw, nlen);
    if (!m->name) {
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      goto out;
    }
    z->n++;
    /* zip64 extra field: the 0xffffffff values in order. */
    const unsigned char *x = raw + nlen, *xend = x + xlen;
    while (x + 4 <= xend) {
      unsigned id = rd16(x), sz = rd16(x + 2);
      if (x + 4 + sz > xend) break;
      if (id == 1) {
        const unsigned char *q = x + 4, *qe = q + sz;
        uint64_t *f[3] = {&m->usize, &m->csize, &m->lho};
        for (int k = 0; k < 3; k++) {
          if (*f[k] != 0xffffffffu) continue;
          if (q + 8 > qe) {
            not_zip(e, "a bad zip64 extra field");
            goto out;
          }
          *f[k] = rd64(q);
          q += 8;
        }
      }
      x += 4 + sz;
    }
    if (m->flags & 0x41 || m->method == 99) {
      err_set(e, 400, "BUNDLE_ENCRYPTED", "the bundle member \"%.200s\" is encrypted", m->name);
      goto out;
    }
    if (m->method != 0 && m->method != 8) {
      err_set(e, 400, "BUNDLE_UNSUPPORTED_METHOD",
              "the bundle member \"%.200s\" uses compression method %u; only stored (0) and "
              "deflate (8) are supported",
              m->name, m->method);
      goto out;
    }
    unsigned host = m->made_by >> 8;
    unsigned mode = m->ext_attr >> 16;
    if (host == 3 && (mode & 0170000) == 0120000) {
      err_set(e, 400, "BUNDLE_SYMLINK", "the bundle member \"%.200s\" is a symbolic link", m->name);
      goto out;
    }
    if ((host == 3 && (mode & 0170000) == 0040000) || (host == 0 && (m->ext_attr & 0x10))) {
      name_error(e, m->name, "is a directory");
      goto out;
    }
    if (m->method == 0 && m->csize != m->usize) {
      err_set(e, 400, "BUNDLE_ZIP_BOMB",
              "the bundle member \"%.200s\" is stored but its sizes differ", m->name);
      goto out;
    }
    classify(m);
    order[i] = m;
    pos += 46 + nlen + xlen + clen;
  }
  /* Duplicates. */
  qsort(order, z->n, sizeof *order, by_name);
  for (size_t i = 1; i < z->n; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
      err_set(e, 400, "BUNDLE_DUPLICATE_MEMBER", "the bundle holds \"%.200s\" twice",
              order[i]->name);
      goto out;
    }
  /* Local headers, and no member's data overlapping the next one. */
  qsort(order, z->n, sizeof *order, by_offset);
  for (size_t i = 0; i < z->n; i++) {
    struct bz_member *m = order[i];
    unsigned char lh[30];
    if (m->lho + 30 > cd_off || util_pread_exact(fd, lh, 30, m->lho) < 0 ||
        rd32(lh) != 0x04034b50) {
      err_set(e, 400, "BUNDLE_NOT_ZIP", "the bundle member \"%.200s\" has no valid local header",
              m->name);
      goto out;
    }
    size_t nlen = rd16(lh + 26), xlen = rd16(lh + 28);
    size_t ml = strlen(m->name);
    char lname[1025];
    if (nlen != ml || m->lho + 30 + nlen > cd_off ||
        util_pread_exact(fd, lname, nlen, m->lho + 30) < 0 || memcmp(lname, m->name, nlen) != 0) {
      err_set(e, 400, "BUNDLE_NOT_ZIP",
              "the local header of bundle member \"%.200s\" does not match the directory", m->name);
      goto out;
    }
    if (rd16(lh + 8) != m->method) {
      err_set(e, 400, "BUNDLE_NOT_ZIP",
              "the local header of bundle member \"%.200s\" names another method", m->name);
      goto out;
    }
    m->data = m->lho + 30 + nlen + xlen;
    uint64_t limit = i + 1 < z->n ? order[i + 1]->lho : cd_off;
    if (m->data > limit || m->csize > limit - m->data) {
      err_set(e, 400, "BUNDLE_NOT_ZIP",
              "the data of bundle member \"%.200s\" overlaps another member or the directory",
              m->name);
      goto out;
    }
  }
  rc = 0;
out:
  free(cd);
  free(order);
  if (rc < 0) bz_close(z);
  return rc;
}

/* ---- reading members -------------------------------------------------------------- */
static void hex(const unsigned char *d, size_t n, char *out) {
  static const char H[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = H[d[i] >> 4];
    out[2 * i + 1] = H[d[i] & 15];
  }
  out[2 * n] = 0;
}

int bz_stream(struct bz *z, size_t i, bz_sink_fn sink, void *arg, int want_sha1, const int *stop,
              struct err *e) {
  struct bz_member *m = &z->m[i];
  unsigned char *in = malloc(IOBUF), *out = malloc(IOBUF);
  gnutls_hash_hd_t h256 = NULL, h1 = NULL;
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  int zinit = 0, rc = -1;
  if (!in || !out || gnutls_hash_init(&h256, GNUTLS_DIG_SHA256) < 0 ||
      (want_sha1 && gnutls_hash_init(&h1, GNUTLS_DIG_SHA1) < 0)) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  if (m->method == 8) {
    if (inflateInit2(&zs, -15) != Z_OK) {
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      goto out;
    }
    zinit = 1;
  }
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  uint64_t left = m->csize, off = m->data, produced = 0;
  int ended = m->method == 0;
  for (;;) {
    if (stop && *stop) {
      err_set(e, 503, "SHUTTING_DOWN", "stopped while reading the bundle");
      goto out;
    }
    size_t k = left < IOBUF ? (size_t)left : IOBUF;
    if (k > 0 && util_pread_exact(z->fd, in, k, off) < 0) {
      io_error(e);
      goto out;
    }
    off += k;
    left -= k;
    if (m->method == 0) {
      if (k == 0) break;
      produced += k;
      crc = (uint32_t)crc32(crc, in, (uInt)k);
      gnutls_hash(h256, in, k);
      if (h1) gnutls_hash(h1, in, k);
      if (sink && sink(arg, in, k, e) < 0) goto out;
      continue;
    }
    if (k == 0 && ended) break;
    zs.next_in = in;
    zs.avail_in = (uInt)k;
    do {
      zs.next_out = out;
      zs.avail_out = IOBUF;
      int r = ended ? Z_STREAM_END : inflate(&zs, Z_NO_FLUSH);
      if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
        err_set(e, 400, "BUNDLE_NOT_ZIP", "the bundle member \"%.200s\" is corrupt (%s)", m->name,
                zs.msg ? zs.msg : "bad deflate data");
        goto out;
      }
      size_t got = IOBUF - zs.avail_out;
      if (got > m->usize - produced) {
        err_set(e, 400, "BUNDLE_ZIP_BOMB",
                "the bundle member \"%.200s\" inflates to more than its declared %llu bytes",
                m->name, (unsigned long long)m->usize);
        goto out;
      }
      produced += got;
      crc = (uint32_t)crc32(crc, out, (uInt)got);
      gnutls_hash(h256, out, got);
      if (h1) gnutls_hash(h1, out, got);
      if (got && sink && sink(arg, out, got, e) < 0) goto out;
      if (r == Z_STREAM_END) ended = 1;
      if (r == Z_BUF_ERROR && got == 0) break;
    } while (!ended && (zs.avail_in > 0 || zs.avail_out == 0));
    if (ended) {
      if (zs.avail_in > 0 || left > 0) {
        /* Trailing bytes after the deflate stream: tolerated (padding). */
      }
      break;
    }
    if (k == 0) {
      err_set(e, 400, "BUNDLE_NOT_ZIP", "the bundle member \"%.200s\" is truncated", m->name);
      goto out;
    }
  }
  if (produced != m->usize) {
    err_set(e, 400, "BUNDLE_ZIP_BOMB",
            "the bundle member \"%.200s\" inflates to %llu bytes, not the declared %llu", m->name,
            (unsigned long long)produced, (unsigned long long)m->usize);
    goto out;
  }
  if (crc != m->crc) {
    err_set(e, 400, "BUNDLE_CRC", "the bundle member \"%.200s\" fails its CRC-32 check", m->name);
    goto out;
  }
  unsigned char d[32];
  gnutls_hash_output(h256, d);
  hex(d, 32, m->sha256);
  if (h1) {
    gnutls_hash_output(h1, d);
    hex(d, 20, m->sha1);
  }
  rc = 0;
out:
  if (zinit) inflateEnd(&zs);
  if (h256) gnutls_hash_deinit(h256, NULL);
  if (h1) gnutls_hash_deinit(h1, NULL);
  free(in);
  free(out);
  return rc;
}

struct membuf {
  char *p;
  size_t len;
};

static int to_mem(void *arg, const void *p, size_t n, struct err *e) {
  struct membuf *b = arg;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

int bz_read_small(struct bz *z, size_t i, int want_sha1, char **out, size_t *len, struct err *e) {
  struct bz_member *m = &z->m[i];
  if (m->usize > BUNDLE_MAX_JSON) {
    err_set(e, 400, "BUNDLE_ZIP_BOMB",
            "the bundle member \"%.200s\" declares %llu bytes; at most %u are accepted", m->name,
            (unsigned long long)m->usize, BUNDLE_MAX_JSON);
    return -1;
  }
  if (m->method == 8 && m->usize > (uint64_t)BUNDLE_MAX_RATIO * (m->csize ? m->csize : 1)) {
    err_set(e, 400, "BUNDLE_ZIP_BOMB",
            "the bundle member \"%.200s\" compresses more than %u:1 (a zip bomb?)", m->name,
            BUNDLE_MAX_RATIO);
    return -1;
  }
  struct membuf b = {malloc(m->usize + 1), 0};
  if (!b.p) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  if (bz_stream(z, i, to_mem, &b, want_sha1, NULL, e) < 0) {
    free(b.p);
    return -1;
  }
  b.p[b.len] = 0;
  *out = b.p;
  *len = b.len;
  return 0;
}

/* ---- MANIFEST.MF ---------------------------------------------------------------- */
static const char *const MF_KEYS[] = {"Artifact Name", "Description", "Read Only", "Time Stamp",
                                      "Artifact Type"};
static const char *const MF_JSON[] = {"artifactName", "description", "readOnly", "timeStamp",
                                      "artifactType"};

static int manifest_error(struct err *e, const char *why) {
  err_set(e, 400, "BUNDLE_MANIFEST", "MANIFEST.MF is malformed: %s", why);
  return -1;
}

/* Undo HPE's escapes in the description: \n, \" and \\. */
static char *unescape(const char *s, size_t n) {
  char *o = malloc(n + 1), *q = o;
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'n' || s[i + 1] == '"' || s[i + 1] == '\\')) {
      *q++ = s[i + 1] == 'n' ? '\n' : s[i + 1];
      i++;
    } else {
      *q++ = s[i];
    }
  }
  *q = 0;
  return o;
}

json_t *bundle_manifest_parse(const char *text, size_t len, struct err *e) {
  if (memchr(text, 0, len)) return manifest_error(e, "it contains a NUL byte"), NULL;
  if (!utf8_ok((const unsigned char *)text, len))
    return manifest_error(e, "it is not UTF-8 text"), NULL;
  /* Values per key; a line that starts no known key continues the previous value. */
  char *val[5] = {0};
  size_t vlen[5] = {0};
  int cur = -1;
  const char *p = text, *end = text + len;
  if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3;
  json_t *out = NULL;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    size_t ll = (size_t)(le - p);
    if (ll > 0 && p[ll - 1] == '\r') ll--;
    int k = -1;
    for (int j = 0; j < 5; j++) {
      size_t kl = strlen(MF_KEYS[j]);
      if (ll >= kl + 1 && memcmp(p, MF_KEYS[j], kl) == 0 && p[kl] == ':') k = j;
    }
    if (k >= 0) {
      if (val[k]) {
        char msg[96];
        snprintf(msg, sizeof msg, "the key \"%s\" appears twice", MF_KEYS[k]);
        manifest_error(e, msg);
        goto out;
      }
      size_t kl = strlen(MF_KEYS[k]) + 1;
      const char *v = p + kl;
      size_t vl = ll - kl;
      if (vl > 0 && v[0] == ' ' && k != 1) { /* "Key: value" tolerated */
        v++;
        vl--;
      }
      val[k] = strndup(v, vl);
      vlen[k] = vl;
      cur = k;
    } else if (ll == 0 && !nl) {
      /* nothing */
    } else if (ll == 0) {
      if (cur >= 0) { /* an empty continuation line */
        char *nv = realloc(val[cur], vlen[cur] + 2);
        if (!nv) goto oom;
        val[cur] = nv;
        val[cur][vlen[cur]++] = '\n';
        val[cur][vlen[cur]] = 0;
      }
    } else {
      if (cur < 0) {
        manifest_error(e, "the first line is not \"Artifact Name:...\"");
        goto out;
      }
      /* A continuation line: Java manifests begin them with one space. */
      const char *c = p;
      size_t cl = ll;
      int java = c[0] == ' ';
      if (java) {
        c++;
        cl--;
      }
      char *nv = realloc(val[cur], vlen[cur] + cl + 2);
      if (!nv) goto oom;
      val[cur] = nv;
      if (!java) val[cur][vlen[cur]++] = '\n';
      memcpy(val[cur] + vlen[cur], c, cl);
      vlen[cur] += cl;
      val[cur][vlen[cur]] = 0;
    }
    if (!nl) break;
    p = nl + 1;
  }
  /* Trailing newlines of the last value (a final newline) are not content. */
  for (int j = 0; j < 5; j++)
    while (val[j] && vlen[j] > 0 && val[j][vlen[j] - 1] == '\n')
      val[j][--vlen[j]] = 0;
  if (!val[0] || !vlen[0]) {
    manifest_error(e, "\"Artifact Name\" is missing");
    goto out;
  }
  int ro = 0;
  if (val[2]) {
    if (strcasecmp(val[2], "true") == 0)
      ro = 1;
    else if (strcasecmp(val[2], "false") != 0) {
      manifest_error(e, "\"Read Only\" must be true or false");
      goto out;
    }
  }
  out = json_object();
  json_object_set_new(out, MF_JSON[0], json_stringn(val[0], vlen[0]));
  char *d = val[1] ? unescape(val[1], vlen[1]) : strdup("");
  if (!d) goto oom;
  json_object_set_new(out, MF_JSON[1], json_string(d));
  free(d);
  json_object_set_new(out, MF_JSON[2], json_boolean(ro));
  json_object_set_new(out, MF_JSON[3], val[3] ? json_stringn(val[3], vlen[3]) : json_null());
  json_object_set_new(out, MF_JSON[4], json_string(val[4] ? val[4] : "USER"));
  goto out;
oom:
  json_decref(out);
  out = NULL;
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
out:
  for (int j = 0; j < 5; j++)
    free(val[j]);
  return out;
}

char *bundle_manifest_format(const char *name, const char *description, int read_only,
                             const char *time_stamp) {
  size_t dl = description ? strlen(description) : 0;
  char *d = malloc(2 * dl + 1), *q = d;
  if (!d) return NULL;
  for (size_t i = 0; i < dl; i++) {
    char c = description[i];
    if (c == '\n') {
      *q++ = '\\';
      *q++ = 'n';
    } else if (c == '"' || c == '\\') {
      *q++ = '\\';
      *q++ = c;
    } else if (c == '\r') {
      continue;
    } else {
      *q++ = c;
    }
  }
  *q = 0;
  char *s = util_strdup_printf(
      "Artifact Name:%s\nDescription:%s\nRead Only:%s\nTime Stamp:%s\nArtifact Type:USER", name, d,
      read_only ? "true" : "false", time_stamp);
  free(d);
  return s;
}

/* ---- checksum files --------------------------------------------------------------- */
static int all_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f'))) return 0;
  return 1;
}

json_t *bundle_sums_parse(const char *text, size_t len, size_t hexlen, const char *file,
                          struct err *e) {
  json_t *out = json_object();
  const char *p = text, *end = text + len;
  int line = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    size_t ll = (size_t)(le - p);
    line++;
    if (ll > 0 && p[ll - 1] == '\r') ll--;
    if (ll > 0) {
      char *l = strndup(p, ll), *name = NULL, *digest = NULL;
      char *tab = strrchr(l, '\t');
      if (tab && strlen(tab + 1) == hexlen && all_hex(tab + 1, hexlen)) {
        *tab = 0;
        name = l;
        digest = tab + 1;
      } else if (ll > hexlen + 2 && all_hex(l, hexlen) && l[hexlen] == ' ' &&
                 (l[hexlen + 1] == ' ' || l[hexlen + 1] == '*')) { /* sha256sum's layout */
        l[hexlen] = 0;
        digest = l;
        name = l + hexlen + 2;
      }
      if (!name || !*name) {
        err_set(e, 400, "BUNDLE_CHECKSUM_MISMATCH", "%s: line %d is not \"<member>\\t<digest>\"",
                file, line);
        free(l);
        json_decref(out);
        return NULL;
      }
      for (char *c = digest; *c; c++)
        *c = (char)(*c | 0x20);
      json_object_set_new(out, name, json_string(digest));
      free(l);
    }
    if (!nl) break;
    p = nl + 1;
  }
  return out;
}

/* ---- the writer ------------------------------------------------------------------ */
struct wmember {
  char *name;
  uint32_t crc;
  uint64_t csize, usize, lho;
  int method, zip64; /* zip64: its local header has the zip64 extra field */
};

struct bzw {
  int fd;
  uint64_t off;
  uint16_t dos_time, dos_date;
  struct wmember *m;
  size_t n, cap;
  /* the current member */
  int open;
  z_stream zs;
  gnutls_hash_hd_t sha;
  uint32_t crc;
  uint64_t usize, csize;
  unsigned char *buf; /* IOBUF of output */
  /* The digests of a large bzw_data run on a second thread while the caller's thread
   * deflates the same bytes (a golden payload: SHA-256 and CRC-32 cost about as much as
   * deflate level 1), so a chunk takes the longer of the two, not their sum. */
  pthread_t hasher;
  int hasher_up, hasher_quit;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  const unsigned char *job; /* bytes to digest, NULL when done */
  size_t job_len;
  /* An all-zero ZERO_CHUNK of a level-1 member (a golden image's holes) is not deflated:
   * after a full flush (byte-aligned, no reference to earlier data) the deflate blocks of
   * ZERO_CHUNK zeros, made once by a fresh stream, are copied into the output. */
  int level, flushed;
  unsigned char *zero_blk;
  size_t zero_len;
  /* A ZERO_CHUNK of a level-1 member that deflate would not shrink (compressed or
   * random data: most of a golden image's data costs deflate its slowest work for a
   * gain under 1%) goes out as stored deflate blocks after a full flush the same way;
   * a sample of it deflated by `probe` decides. */
  z_stream probe;
  int probe_up;
  unsigned char *probe_out;
};

#define ZERO_CHUNK (1u << 20)

/* Digests at least this large go to the hasher thread. */
#define HASH_THREAD_MIN (256u << 10)

static void digest(struct bzw *w, const unsigned char *p, size_t n) {
  w->crc = (uint32_t)crc32(w->crc, p, (uInt)n);
  gnutls_hash(w->sha, p, n);
}

static void *hasher_main(void *arg) {
  struct bzw *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->job && !w->hasher_quit)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->job) break;
    const unsigned char *p = w->job;
    size_t n = w->job_len;
    pthread_mutex_unlock(&w->mu);
    digest(w, p, n);
    pthread_mutex_lock(&w->mu);
    w->job = NULL;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* Hand p to the hasher (started on first use); 0, or -1 when no thread could be made
 * (the caller then digests itself). */
static int hash_async(struct bzw *w, const unsigned char *p, size_t n) {
  if (!w->hasher_up) {
    if (pthread_mutex_init(&w->mu, NULL) != 0) return -1;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
      pthread_mutex_destroy(&w->mu);
      return -1;
    }
    if (pthread_create(&w->hasher, NULL, hasher_main, w) != 0) {
      pthread_cond_destroy(&w->cv);
      pthread_mutex_destroy(&w->mu);
      return -1;
    }
    w->hasher_up = 1;
  }
  pthread_mutex_lock(&w->mu);
  w->job = p;
  w->job_len = n;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

static void hash_wait(struct bzw *w) {
  pthread_mutex_lock(&w->mu);
  while (w->job)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

static int wr(struct bzw *w, const void *p, size_t n, struct err *e) {
  const unsigned char *c = p;
  while (n > 0) {
    ssize_t r = write(w->fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err_set(e, errno == ENOSPC ? 507 : 500,
              errno == ENOSPC ? "INSUFFICIENT_STORAGE" : "BUNDLE_IO", "cannot write the bundle: %s",
              strerror(errno));
      return -1;
    }
    c += r;
    n -= (size_t)r;
    w->off += (uint64_t)r;
  }
  return 0;
}

static void put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
  put16(p, v & 0xffff);
  put16(p + 2, v >> 16);
}
static void put64(unsigned char *p, uint64_t v) {
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}

struct bzw *bzw_open(int fd, int64_t time_ms) {
  struct bzw *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->fd = fd;
  w->buf = malloc(IOBUF);
  if (!w->buf) {
    free(w);
    return NULL;
  }
  time_t t = (time_t)(time_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  if (tm.tm_year < 80) tm.tm_year = 80;
  w->dos_time = (uint16_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
  w->dos_date = (uint16_t)((tm.tm_year - 80) << 9 | (tm.tm_mon + 1) << 5 | tm.tm_mday);
  return w;
}

void bzw_free(struct bzw *w) {
  if (!w) return;
  if (w->hasher_up) {
    pthread_mutex_lock(&w->mu);
    w->hasher_quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->hasher, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
  }
  if (w->open) {
    deflateEnd(&w->zs);
    gnutls_hash_deinit(w->sha, NULL);
  }
  for (size_t i = 0; i < w->n; i++)
    free(w->m[i].name);
  free(w->m);
  free(w->buf);
  free(w->zero_blk);
  if (w->probe_up) deflateEnd(&w->probe);
  free(w->probe_out);
  free(w);
}

int bzw_begin(struct bzw *w, const char *name, int level, uint64_t size_hint, struct err *e) {
  if (w->n == w->cap) {
    size_t nc = w->cap ? 2 * w->cap : 32;
    struct wmember *nm = realloc(w->m, nc * sizeof *nm);
    if (!nm) goto oom;
    w->m = nm;
    w->cap = nc;
  }
  struct wmember *m = &w->m[w->n];
  memset(m, 0, sizeof *m);
  m->name = strdup(name);
  if (!m->name) goto oom;
  m->lho = w->off;
  m->method = 8;
  w->n++;
  memset(&w->zs, 0, sizeof w->zs);
  if (deflateInit2(&w->zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) goto oom;
  if (gnutls_hash_init(&w->sha, GNUTLS_DIG_SHA256) < 0) {
    deflateEnd(&w->zs);
    goto oom;
  }
  w->open = 1;
  w->level = level;
  w->flushed = 1; /* nothing deflated yet */
  w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
  w->usize = w->csize = 0;
  /* Local header: sizes in the data descriptor (flag 0x08); a member that
   * may reach 4 GiB gets a zip64 extra field (sizes 0 there, 8-byte sizes in
   * its data descriptor). */
  size_t nl = strlen(name);
  int big = size_hint + (size_hint >> 8) + 65536 >= 0xffffffffu; /* deflate may grow it */
  unsigned char h[30], x[20];
  put16(x, 1);
  put16(x + 2, 16);
  memset(x + 4, 0, 16);
  put32(h, 0x04034b50);
  put16(h + 4, big ? 45 : 20);
  put16(h + 6, 0x0808);
  put16(h + 8, 8);
  put16(h + 10, w->dos_time);
  put16(h + 12, w->dos_date);
  put32(h + 14, 0);
  put32(h + 18, 0);
  put32(h + 22, 0);
  put16(h + 26, (unsigned)nl);
  put16(h + 28, big ? 20 : 0);
  if (wr(w, h, 30, e) < 0 || wr(w, name, nl, e) < 0 || (big && wr(w, x, 20, e) < 0)) return -1;
  w->m[w->n - 1].zip64 = big;
  return 0;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int deflate_out(struct bzw *w, int flush, struct err *e) {
  int r;
  do {
    w->zs.next_out = w->buf;
    w->zs.avail_out = IOBUF;
    r = deflate(&w->zs, flush);
    if (r == Z_STREAM_ERROR) {
      err_set(e, 500, "BUNDLE_IO", "deflate failed");
      return -1;
    }
    size_t got = IOBUF - w->zs.avail_out;
    w->csize += got;
    if (got && wr(w, w->buf, got, e) < 0) return -1;
  } while (w->zs.avail_out == 0 || (flush == Z_FINISH && r != Z_STREAM_END));
  return 0;
}

/* The deflate blocks (not final, ending byte-aligned) of ZERO_CHUNK zeros; 0 or -1. */
static int zero_blocks(struct bzw *w) {
  unsigned char *zeros = calloc(1, ZERO_CHUNK), *out = malloc(64u << 10);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  int rc = -1;
  if (zeros && out && deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
    zs.next_in = zeros;
    zs.avail_in = ZERO_CHUNK;
    zs.next_out = out;
    zs.avail_out = 64u << 10;
    if (deflate(&zs, Z_FULL_FLUSH) == Z_OK && zs.avail_in == 0 && zs.avail_out > 0) {
      w->zero_len = (64u << 10) - zs.avail_out;
      w->zero_blk = out;
      out = NULL;
      rc = 0;
    }
    deflateEnd(&zs);
  }
  free(zeros);
  free(out);
  return rc;
}

static int all_zero(const unsigned char *p, size_t n) {
  static const unsigned char z[4096];
  for (size_t i = 0; i < n; i += sizeof z)
    if (memcmp(p + i, z, n - i < sizeof z ? n - i : sizeof z) != 0) return 0;
  return 1;
}

#define PROBE_SAMPLE (16u << 10)
#define PROBE_OUT (PROBE_SAMPLE + 1024)

/* Would deflate level 1 save less than 1/32 of chunk c? Four samples spread over it
 * tell: all four must be incompressible (a chunk part data, part zeros or text is
 * deflated). Any zlib trouble answers no. */
static int incompressible(struct bzw *w, const unsigned char *c, size_t n) {
  if (!w->probe_up) {
    memset(&w->probe, 0, sizeof w->probe);
    if (!w->probe_out && !(w->probe_out = malloc(PROBE_OUT))) return 0;
    if (deflateInit2(&w->probe, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    w->probe_up = 1;
  }
  for (size_t i = 0; i < 4; i++) {
    if (deflateReset(&w->probe) != Z_OK) return 0;
    w->probe.next_in = (unsigned char *)c + i * (n / 4);
    w->probe.avail_in = PROBE_SAMPLE;
    w->probe.next_out = w->probe_out;
    w->probe.avail_out = PROBE_OUT;
    if (deflate(&w->probe, Z_FINISH) != Z_STREAM_END) return 0;
    if (PROBE_OUT - w->probe.avail_out < PROBE_SAMPLE - PROBE_SAMPLE / 32) return 0;
  }
  return 1;
}

/* c as stored deflate blocks (RFC 1951 3.2.4: BFINAL 0, BTYPE 00, LEN, NLEN, the
 * bytes) at a byte boundary, built in w->buf. */
static int stored_out(struct bzw *w, const unsigned char *c, size_t n, struct err *e) {
  size_t used = 0;
  while (n > 0) {
    size_t k = n < 65535 ? n : 65535;
    if (used + 5 + k > IOBUF) {
      if (wr(w, w->buf, used, e) < 0) return -1;
      w->csize += used;
      used = 0;
    }
    unsigned char *h = w->buf + used;
    h[0] = 0;
    put16(h + 1, (unsigned)k);
    put16(h + 3, (unsigned)~k & 0xffff);
    memcpy(h + 5, c, k);
    used += 5 + k;
    c += k;
    n -= k;
  }
  if (used && wr(w, w->buf, used, e) < 0) return -1;
  w->csize += used;
  return 0;
}

int bzw_data(struct bzw *w, const void *p, size_t n, struct err *e) {
  const unsigned char *c = p;
  int async = n >= HASH_THREAD_MIN && hash_async(w, c, n) == 0;
  if (!async) digest(w, c, n);
  w->usize += n;
  int rc = 0;
  int chunk = n == ZERO_CHUNK && w->level == 1;
  int zero = chunk && all_zero(c, n) && (w->zero_blk || zero_blocks(w) == 0);
  if (zero || (chunk && incompressible(w, c, n))) {
    /* ready-made blocks after a full flush (byte-aligned, no reference to earlier data) */
    w->zs.next_in = NULL;
    w->zs.avail_in = 0;
    if (!w->flushed) rc = deflate_out(w, Z_FULL_FLUSH, e);
    w->flushed = 1;
    if (rc == 0 && zero) {
      rc = wr(w, w->zero_blk, w->zero_len, e);
      if (rc == 0) w->csize += w->zero_len;
    } else if (rc == 0) {
      rc = stored_out(w, c, n, e);
    }
    if (async) hash_wait(w);
    return rc;
  }
  if (n > 0) w->flushed = 0;
  while (n > 0 && rc == 0) {
    size_t k = n < IOBUF ? n : IOBUF;
    w->zs.next_in = (unsigned char *)c;
    w->zs.avail_in = (uInt)k;
    rc = deflate_out(w, Z_NO_FLUSH, e);
    c += k;
    n -= k;
  }
  if (async) hash_wait(w); /* p is the caller's again, the digests up to date */
  return rc;
}

int bzw_end(struct bzw *w, char hexout[65], struct err *e) {
  w->zs.next_in = NULL;
  w->zs.avail_in = 0;
  if (deflate_out(w, Z_FINISH, e) < 0) return -1;
  deflateEnd(&w->zs);
  unsigned char d[32];
  gnutls_hash_deinit(w->sha, d);
  w->open = 0;
  if (hexout) hex(d, 32, hexout);
  struct wmember *m = &w->m[w->n - 1];
  m->crc = w->crc;
  m->csize = w->csize;
  m->usize = w->usize;
  unsigned char dd[24];
  put32(dd, 0x08074b50);
  put32(dd + 4, m->crc);
  if (m->zip64 || m->csize >= 0xffffffffu || m->usize >= 0xffffffffu) {
    if (!m->zip64) {
      err_set(e, 500, "BUNDLE_IO", "bundle member \"%.200s\" grew past 4 GiB unexpectedly",
              m->name);
      return -1;
    }
    put64(dd + 8, m->csize);
    put64(dd + 16, m->usize);
    return wr(w, dd, 24, e);
  }
  put32(dd + 8, (uint32_t)m->csize);
  put32(dd + 12, (uint32_t)m->usize);
  return wr(w, dd, 16, e);
}

int bzw_finish(struct bzw *w, struct err *e) {
  uint64_t cd_off = w->off;
  for (size_t i = 0; i < w->n; i++) {
    struct wmember *m = &w->m[i];
    int big =
        m->zip64 || m->csize >= 0xffffffffu || m->usize >= 0xffffffffu || m->lho >= 0xffffffffu;
    unsigned char h[46], x[28];
    size_t xl = 0;
    if (big) {
      put16(x, 1);
      put16(x + 2, 24);
      put64(x + 4, m->usize);
      put64(x + 12, m->csize);
      put64(x + 20, m->lho);
      xl = 28;
    }
    size_t nl = strlen(m->name);
    put32(h, 0x02014b50);
    put16(h + 4, 0x0014); /* made by: MS-DOS, 2.0 */
    put16(h + 6, big ? 45 : 20);
    put16(h + 8, 0x0808);
    put16(h + 10, 8);
    put16(h + 12, w->dos_time);
    put16(h + 14, w->dos_date);
    put32(h + 16, m->crc);
    put32(h + 20, big ? 0xffffffffu : (uint32_t)m->csize);
    put32(h + 24, big ? 0xffffffffu : (uint32_t)m->usize);
    put16(h + 28, (unsigned)nl);
    put16(h + 30, (unsigned)xl);
    put16(h + 32, 0);
    put16(h + 34, 0);
    put16(h + 36, 0);
    put32(h + 38, 0);
    put32(h + 42, big ? 0xffffffffu : (uint32_t)m->lho);
    if (wr(w, h, 46, e) < 0 || wr(w, m->name, nl, e) < 0 || (xl && wr(w, x, xl, e) < 0)) return -1;
  }
  uint64_t cd_size = w->off - cd_off;
  int z64 = w->n >= 0xffff || cd_off >= 0xffffffffu || cd_size >= 0xffffffffu;
  if (z64) {
    unsigned char r[56], l[20];
    uint64_t at = w->off;
    put32(r, 0x06064b50);
    put64(r + 4, 44);
    put16(r + 12, 0x0014);
    put16(r + 14, 45);
    put32(r + 16, 0);
    put32(r + 20, 0);
    put64(r + 24, w->n);
    put64(r + 32, w->n);
    put64(r + 40, cd_size);
    put64(r + 48, cd_off);
    put32(l, 0x07064b50);
    put32(l + 4, 0);
    put64(l + 8, at);
    put32(l + 16, 1);
    if (wr(w, r, 56, e) < 0 || wr(w, l, 20, e) < 0) return -1;
  }
  unsigned char q[22];
  put32(q, 0x06054b50);
  put16(q + 4, 0);
  put16(q + 6, 0);
  put16(q + 8, z64 ? 0xffff : (unsigned)w->n);
  put16(q + 10, z64 ? 0xffff : (unsigned)w->n);
  put32(q + 12, z64 ? 0xffffffffu : (uint32_t)cd_size);
  put32(q + 16, z64 ? 0xffffffffu : (uint32_t)cd_off);
  put16(q + 20, 0);
  return wr(w, q, 22, e);
}
