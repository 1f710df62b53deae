/* osformat.c — the OS volume header, byte by byte (docs/formats/osvolume.md):
 * encode, decode and validate, and the CRC-32C that guards it. All integers
 * are little-endian. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vol/vol_int.h"

/* Field offsets inside the 4096-byte header. */
enum {
  H_MAGIC = 0,        /* 8 bytes "STRMOSV1" */
  H_VERSION = 8,      /* u32 */
  H_HEADER_SIZE = 12, /* u32, 4096 */
  H_CLUSTER = 16,     /* u32, 4096 */
  H_FLAGS = 20,       /* u32, 0 (no flag defined yet; nonzero is refused) */
  H_SIZE = 24,        /* u64 */
  H_GOLDEN_SIZE = 32, /* u64 */
  H_BITMAP_OFF = 40,  /* u64 */
  H_BITMAP_LEN = 48,  /* u64 */
  H_CREATED = 56,     /* u64, ms since the epoch */
  H_GOLDEN_ID = 64,   /* 65 bytes, NUL-padded */
  H_ID = 129,         /* 65 bytes, NUL-padded */
  H_CRC = 4092,       /* u32, CRC-32C of bytes 0..4091 */
};

/* ---- little-endian fields ------------------------------------------------ */
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t bitmap_len_for(uint64_t size) {
  uint64_t clusters = (size + VOL_OS_CLUSTER_SIZE - 1) / VOL_OS_CLUSTER_SIZE;
  uint64_t bytes = (clusters + 7) / 8;
  return (bytes + VOL_OS_BITMAP_PAGE - 1) / VOL_OS_BITMAP_PAGE * VOL_OS_BITMAP_PAGE;
}

void vol_os_header_init(struct vol_os_header *h, const char *id, const char *golden_id,
                        uint64_t size, uint64_t golden_size) {
  memset(h, 0, sizeof *h);
  h->version = VOL_OS_VERSION;
  h->cluster_size = VOL_OS_CLUSTER_SIZE;
  h->size = size;
  h->golden_size = golden_id ? golden_size : 0;
  h->bitmap_off = VOL_OS_HEADER_SIZE;
  h->bitmap_len = bitmap_len_for(size);
  h->created_ms = (uint64_t)util_now_ms();
  snprintf(h->golden_id, sizeof h->golden_id, "%s", golden_id ? golden_id : "");
  snprintf(h->id, sizeof h->id, "%s", id);
}

void vol_os_header_encode(const struct vol_os_header *h, unsigned char out[VOL_OS_HEADER_SIZE]) {
  memset(out, 0, VOL_OS_HEADER_SIZE);
  memcpy(out + H_MAGIC, VOL_OS_MAGIC, 8);
  put32(out + H_VERSION, h->version);
  put32(out + H_HEADER_SIZE, VOL_OS_HEADER_SIZE);
  put32(out + H_CLUSTER, h->cluster_size);
  put32(out + H_FLAGS, 0);
  put64(out + H_SIZE, h->size);
  put64(out + H_GOLDEN_SIZE, h->golden_size);
  put64(out + H_BITMAP_OFF, h->bitmap_off);
  put64(out + H_BITMAP_LEN, h->bitmap_len);
  put64(out + H_CREATED, h->created_ms);
  memcpy(out + H_GOLDEN_ID, h->golden_id, strnlen(h->golden_id, VOL_ID_MAX));
  memcpy(out + H_ID, h->id, strnlen(h->id, VOL_ID_MAX));
  put32(out + H_CRC, vol_crc32c(0, out, H_CRC));
}

static int corrupt(struct err *e, const char *path, const char *what) {
  err_set(e, 500, "VOL_CORRUPT", "OS volume metadata %s: %s", path, what);
  return -1;
}

/* An id field: NUL-terminated within its 65 bytes, valid characters, NUL padding. */
static int decode_id(const unsigned char *field, char out[VOL_ID_MAX + 1], int may_be_empty) {
  size_t n = strnlen((const char *)field, VOL_ID_MAX + 1);
  if (n > VOL_ID_MAX) return -1;
  for (size_t i = n; i < VOL_ID_MAX + 1; i++)
    if (field[i]) return -1;
  memcpy(out, field, n);
  out[n] = 0;
  if (n == 0) return may_be_empty ? 0 : -1;
  return vol_id_valid(out) ? 0 : -1;
}

int vol_os_header_decode(const unsigned char in[VOL_OS_HEADER_SIZE], const char *path,
                         struct vol_os_header *h, struct err *e) {
  char msg[128];
  memset(h, 0, sizeof *h);
  if (memcmp(in + H_MAGIC, VOL_OS_MAGIC, 8) != 0)
    return corrupt(e, path, "bad magic (not \"" VOL_OS_MAGIC "\")");
  h->version = get32(in + H_VERSION);
  if (h->version != VOL_OS_VERSION) {
    snprintf(msg, sizeof msg, "unsupported format version %u (this build reads version %u)",
             h->version, VOL_OS_VERSION);
    return corrupt(e, path, msg);
  }
  uint32_t want = get32(in + H_CRC), got = vol_crc32c(0, in, H_CRC);
  if (want != got) {
    snprintf(msg, sizeof msg, "header checksum mismatch (stored CRC-32C %08x, computed %08x)", want,
             got);
    return corrupt(e, path, msg);
  }
  if (get32(in + H_HEADER_SIZE) != VOL_OS_HEADER_SIZE)
    return corrupt(e, path, "unsupported header size");
  h->cluster_size = get32(in + H_CLUSTER);
  if (h->cluster_size != VOL_OS_CLUSTER_SIZE)
    return corrupt(e, path, "unsupported cluster size (this build uses 4096)");
  if (get32(in + H_FLAGS) != 0) return corrupt(e, path, "unknown flags set");
  h->size = get64(in + H_SIZE);
  h->golden_size = get64(in + H_GOLDEN_SIZE);
  h->bitmap_off = get64(in + H_BITMAP_OFF);
  h->bitmap_len = get64(in + H_BITMAP_LEN);
  h->created_ms = get64(in + H_CREATED);
  if (h->size == 0 || h->size > (1ull << 56)) return corrupt(e, path, "bad volume size");
  if (h->bitmap_off != VOL_OS_HEADER_SIZE) return corrupt(e, path, "bad bitmap offset");
  if (h->bitmap_len != bitmap_len_for(h->size)) return corrupt(e, path, "bad bitmap length");
  if (decode_id(in + H_GOLDEN_ID, h->golden_id, 1) < 0)
    return corrupt(e, path, "bad golden volume id");
  if (decode_id(in + H_ID, h->id, 0) < 0) return corrupt(e, path, "bad volume id");
  if (!h->golden_id[0] && h->golden_size != 0)
    return corrupt(e, path, "golden size set on an empty volume");
  for (size_t i = H_ID + VOL_ID_MAX + 1; i < H_CRC; i++)
    if (in[i]) return corrupt(e, path, "reserved header bytes are not zero");
  return 0;
}

int vol_os_header_read(int fd, const char *path, struct vol_os_header *h, struct err *e) {
  unsigned char buf[VOL_OS_HEADER_SIZE];
  ssize_t r;
  do
    r = pread(fd, buf, sizeof buf, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) return vol_err_io(e, errno, "read %s", path);
  if (r != (ssize_t)sizeof buf) return corrupt(e, path, "shorter than its 4096-byte header");
  return vol_os_header_decode(buf, path, h, e);
}
