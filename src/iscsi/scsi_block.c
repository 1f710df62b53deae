/* scsi_block.c — the commands that touch the medium (SBC-3): READ, WRITE,
 * WRITE AND VERIFY, ORWRITE, VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE,
 * SYNCHRONIZE CACHE, PRE-FETCH and GET LBA STATUS.
 *
 * READ and WRITE are the hot path: one malloc for the Data-In buffer and one
 * vol_pread into it; a write is one vol_pwrite straight from the Data-Out the
 * transport collected. Every write holds lu->caw_lock shared (so writes run
 * in parallel and COMPARE AND WRITE, which holds it exclusive, is atomic
 * against all of them); reads take no lock. */
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi_int.h"

/* A struct err for the volume calls: the volume code only ever err_set()s
 * it, so clearing the few fields we read is enough (err_init would memset
 * 2.4 KB on every I/O). */
static inline void err_light(struct err *e) {
  e->status = 0;
  e->code[0] = 0;
  e->message[0] = 0;
  e->nested = NULL;
}

static void io_failed(struct scsi_lu *lu, struct scsi_cmd *c, const char *what, uint64_t lba,
                      const struct err *e, int write) {
  /* A read tried on an event loop that would have waited for the disk
   * (vol_nowait) is not an error: the transport runs it again on a worker
   * and throws this answer away (scsi_exec does not count it either). */
  if (!vol_would_block)
    log_warn("scsi", "unit %s: %s at LBA %llu failed: %s", lu->unit_id, what,
             (unsigned long long)lba, e->message);
  scsi_sense_info(c, SK_MEDIUM_ERROR, write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR, lba);
}

/* LBA and transfer length of the READ/WRITE/VERIFY/... CDB families, and the
 * CDB byte where the length field starts (for the sense field pointer). */
struct rw {
  uint64_t lba;
  uint32_t n;
  uint32_t len_byte;
};

static struct rw decode_rw(const uint8_t *cdb) {
  struct rw r;
  switch (cdb[0] >> 5) {
  case 0: /* 6-byte: 21-bit LBA, 0 blocks means 256 */
    r.lba = get_be24(cdb + 1) & 0x1fffff;
    r.n = cdb[4] ? cdb[4] : 256;
    r.len_byte = 4;
    break;
  case 1:
  case 2: /* 10-byte */
    r.lba = get_be32(cdb + 2);
    r.n = get_be16(cdb + 7);
    r.len_byte = 7;
    break;
  case 5: /* 12-byte */
    r.lba = get_be32(cdb + 2);
    r.n = get_be32(cdb + 6);
    r.len_byte = 6;
    break;
  default: /* 16-byte */
    r.lba = get_be64(cdb + 2);
    r.n = get_be32(cdb + 10);
    r.len_byte = 10;
    break;
  }
  return r;
}

/* LBA OUT OF RANGE unless [lba, lba + n) lies on the medium (n may be 0:
 * then lba may be at most the capacity). */
static int out_of_range(struct scsi_lu *lu, struct scsi_cmd *c, uint64_t lba, uint64_t n) {
  if (lba > lu->nblocks || n > lu->nblocks - lba) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    return 1;
  }
  return 0;
}

static int too_long(struct scsi_cmd *c, const struct rw *r, uint32_t max) {
  if (r->n > max) {
    scsi_sense_field(c, 1, r->len_byte, -1);
    return 1;
  }
  return 0;
}

static int flush(struct scsi_lu *lu, struct scsi_cmd *c, uint64_t lba) {
  struct err e;
  err_light(&e);
  if (vol_flush(lu->vol, &e) < 0) {
    io_failed(lu, c, "flush", lba, &e, 1);
    return -1;
  }
  return 0;
}

/* Offset of the first differing byte, or -1. */
static int64_t first_difference(const uint8_t *a, const uint8_t *b, size_t n) {
  if (!memcmp(a, b, n)) return -1;
  size_t i = 0;
  while (a[i] == b[i])
    i++;
  return (int64_t)i;
}

/* ---- READ ------------------------------------------------------------------------ */

void scsi_cmd_read(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  if (too_long(c, &r, SCSI_MAX_XFER_BLOCKS) || out_of_range(lu, c, r.lba, r.n) || !r.n) return;
  size_t len = (size_t)r.n * SCSI_BLOCK_SIZE;
  uint8_t *buf = malloc(len);
  if (!buf) {
    scsi_busy(c);
    return;
  }
  struct err e;
  err_light(&e);
  if (vol_pread(lu->vol, buf, len, r.lba * SCSI_BLOCK_SIZE, &e) < 0) {
    free(buf);
    io_failed(lu, c, "read", r.lba, &e, 0);
    return;
  }
  c->data_in = buf;
  c->data_in_len = (uint32_t)len;
  atomic_fetch_add_explicit(&lu->read_bytes, len, memory_order_relaxed);
}

/* ---- WRITE, WRITE AND VERIFY ------------------------------------------------------- */

/* Read [lba, lba + len) back and compare with `want`: MISCOMPARE with the
 * offset of the first differing byte. Returns 0 when equal. */
static int compare_medium(struct scsi_lu *lu, struct scsi_cmd *c, uint64_t lba, const uint8_t *want,
                          size_t len, size_t info_base) {
  uint8_t *buf = malloc(len);
  if (!buf) {
    scsi_busy(c);
    return -1;
  }
  struct err e;
  err_light(&e);
  if (vol_pread(lu->vol, buf, len, lba * SCSI_BLOCK_SIZE, &e) < 0) {
    free(buf);
    io_failed(lu, c, "verify read", lba, &e, 0);
    return -1;
  }
  int64_t at = first_difference(buf, want, len);
  free(buf);
  if (at >= 0) {
    scsi_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, info_base + (uint64_t)at);
    return -1;
  }
  return 0;
}

void scsi_cmd_write(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  int verify = (c->cdb[0] & 0x0f) == 0x0e; /* 0x2e, 0xae, 0x8e */
  int fua = !verify && (c->cdb[0] >> 5) != 0 && (c->cdb[1] & 0x08);
  if (too_long(c, &r, SCSI_MAX_XFER_BLOCKS) || out_of_range(lu, c, r.lba, r.n) ||
      scsi_write_protected(lu, c) || !r.n)
    return;
  /* Only the whole blocks the initiator actually sent are written: with an
   * expected transfer length below the CDB's, the rest is residual. */
  size_t len = (size_t)r.n * SCSI_BLOCK_SIZE;
  if (c->data_out_len < len) len = c->data_out_len / SCSI_BLOCK_SIZE * SCSI_BLOCK_SIZE;
  if (!len) return;
  struct err e;
  err_light(&e);
  pthread_rwlock_rdlock(&lu->caw_lock);
  int rc = vol_pwrite(lu->vol, c->data_out, len, r.lba * SCSI_BLOCK_SIZE, &e);
  pthread_rwlock_unlock(&lu->caw_lock);
  if (rc < 0) {
    io_failed(lu, c, "write", r.lba, &e, 1);
    return;
  }
  atomic_fetch_add_explicit(&lu->write_bytes, len, memory_order_relaxed);
  if ((fua || verify || !atomic_load_explicit(&lu->wce, memory_order_relaxed)) &&
      flush(lu, c, r.lba) < 0)
    return;
  if (verify && (c->cdb[1] & 0x02)) /* BYTCHK: compare what the medium now holds */
    compare_medium(lu, c, r.lba, c->data_out, len, 0);
}

/* ---- ORWRITE -------------------------------------------------------------------------- */

/* ORWRITE (16) (SBC-3 5.9): each byte becomes itself OR the Data-Out's,
 * atomically against other writes (caw_lock exclusive, as COMPARE AND WRITE). */
void scsi_cmd_orwrite(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  if (too_long(c, &r, SCSI_MAX_XFER_BLOCKS) || out_of_range(lu, c, r.lba, r.n) ||
      scsi_write_protected(lu, c) || !r.n)
    return;
  size_t len = (size_t)r.n * SCSI_BLOCK_SIZE;
  if (c->data_out_len < len) len = c->data_out_len / SCSI_BLOCK_SIZE * SCSI_BLOCK_SIZE;
  if (!len) return;
  uint8_t *buf = malloc(len);
  if (!buf) {
    scsi_busy(c);
    return;
  }
  struct err e;
  err_light(&e);
  uint64_t off = r.lba * SCSI_BLOCK_SIZE;
  pthread_rwlock_wrlock(&lu->caw_lock);
  if (vol_pread(lu->vol, buf, len, off, &e) < 0) {
    io_failed(lu, c, "orwrite (read)", r.lba, &e, 0);
  } else {
    for (size_t i = 0; i < len; i++)
      buf[i] |= c->data_out[i];
    if (vol_pwrite(lu->vol, buf, len, off, &e) < 0)
      io_failed(lu, c, "orwrite", r.lba, &e, 1);
    else
      atomic_fetch_add_explicit(&lu->write_bytes, len, memory_order_relaxed);
  }
  pthread_rwlock_unlock(&lu->caw_lock);
  free(buf);
  if (c->status == SCSI_GOOD &&
      ((c->cdb[1] & 0x08) || !atomic_load_explicit(&lu->wce, memory_order_relaxed)))
    flush(lu, c, r.lba);
}

/* ---- VERIFY ---------------------------------------------------------------------- */

void scsi_cmd_verify(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  int bytchk = (c->cdb[1] >> 1) & 3;
  if (bytchk == 2) { /* reserved */
    scsi_sense_field(c, 1, 1, 2);
    return;
  }
  if ((bytchk == 1 && too_long(c, &r, SCSI_MAX_XFER_BLOCKS)) || out_of_range(lu, c, r.lba, r.n) ||
      !r.n)
    return;
  /* BYTCHK 0: medium verification. The volume has no media errors to find
   * short of reading everything, which a range check does not justify. */
  if (bytchk == 0) return;
  if (bytchk == 1) {
    size_t len = (size_t)r.n * SCSI_BLOCK_SIZE;
    if (c->data_out_len < len) len = c->data_out_len / SCSI_BLOCK_SIZE * SCSI_BLOCK_SIZE;
    if (len) compare_medium(lu, c, r.lba, c->data_out, len, 0);
    return;
  }
  /* BYTCHK 3: one block of Data-Out against every block of the range */
  if (c->data_out_len < SCSI_BLOCK_SIZE) return;
  const size_t chunk_blocks = 2048;
  size_t nb = r.n < chunk_blocks ? r.n : chunk_blocks;
  uint8_t *want = malloc(nb * SCSI_BLOCK_SIZE);
  if (!want) {
    scsi_busy(c);
    return;
  }
  for (size_t i = 0; i < nb; i++)
    memcpy(want + i * SCSI_BLOCK_SIZE, c->data_out, SCSI_BLOCK_SIZE);
  for (uint64_t done = 0; done < r.n;) {
    size_t k = r.n - done < nb ? (size_t)(r.n - done) : nb;
    if (compare_medium(lu, c, r.lba + done, want, k * SCSI_BLOCK_SIZE, done * SCSI_BLOCK_SIZE) < 0)
      break;
    done += k;
  }
  free(want);
}

/* ---- WRITE SAME ------------------------------------------------------------------ */

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

void scsi_cmd_write_same(struct scsi_lu *lu, struct scsi_cmd *c) {
  int ws16 = c->cdb[0] == 0x93;
  struct rw r = {.lba = ws16 ? get_be64(c->cdb + 2) : get_be32(c->cdb + 2),
                 .n = ws16 ? get_be32(c->cdb + 10) : get_be16(c->cdb + 7),
                 .len_byte = ws16 ? 10 : 7};
  int ndob = ws16 && (c->cdb[1] & 0x01);
  if (r.lba > lu->nblocks) { /* before "0 blocks = to the end" needs it */
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    return;
  }
  uint64_t n = r.n ? r.n : lu->nblocks - r.lba; /* WSNZ 0: 0 means up to the end */
  if (n > SCSI_MAX_WRITE_SAME_BLOCKS) {
    scsi_sense_field(c, 1, r.len_byte, -1);
    return;
  }
  if (out_of_range(lu, c, r.lba, n) || scsi_write_protected(lu, c)) return;
  if (!ndob && (c->exp_len != SCSI_BLOCK_SIZE || c->data_out_len < SCSI_BLOCK_SIZE)) {
    /* exactly one block of Data-Out, no more, no less */
    scsi_sense_field(c, 1, r.len_byte, -1);
    return;
  }
  if (!n) return;
  uint64_t off = r.lba * SCSI_BLOCK_SIZE, len = n * SCSI_BLOCK_SIZE;
  struct err e;
  err_light(&e);
  /* UNMAP deallocates the blocks whatever the pattern (SBC-3 4.7.3.4;
   * they then read as zeros: LBPRZ), and a pattern of zeros is a discard
   * too, asked for or not. */
  if (ndob || (c->cdb[1] & 0x08) || all_zero(c->data_out, SCSI_BLOCK_SIZE)) {
    pthread_rwlock_rdlock(&lu->caw_lock);
    int rc = vol_discard(lu->vol, off, len, &e);
    pthread_rwlock_unlock(&lu->caw_lock);
    if (rc < 0) io_failed(lu, c, "write same (discard)", r.lba, &e, 1);
  } else {
    size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
    uint8_t *buf = malloc(chunk);
    if (!buf) {
      scsi_busy(c);
      return;
    }
    for (size_t i = 0; i < chunk; i += SCSI_BLOCK_SIZE)
      memcpy(buf + i, c->data_out, SCSI_BLOCK_SIZE);
    for (uint64_t done = 0; done < len;) {
      size_t k = len - done < chunk ? (size_t)(len - done) : chunk;
      pthread_rwlock_rdlock(&lu->caw_lock);
      int rc = vol_pwrite(lu->vol, buf, k, off + done, &e);
      pthread_rwlock_unlock(&lu->caw_lock);
      if (rc < 0) {
        io_failed(lu, c, "write same", r.lba + done / SCSI_BLOCK_SIZE, &e, 1);
        break;
      }
      done += k;
      atomic_fetch_add_explicit(&lu->write_bytes, k, memory_order_relaxed);
    }
    free(buf);
  }
  if (c->status == SCSI_GOOD && !atomic_load_explicit(&lu->wce, memory_order_relaxed))
    flush(lu, c, r.lba);
}

/* ---- UNMAP ------------------------------------------------------------------------ */

void scsi_cmd_unmap(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint32_t plen = get_be16(c->cdb + 7);
  if (!plen) return; /* not an error (SBC-3 5.28) */
  if (scsi_write_protected(lu, c)) return;
  uint32_t avail = plen < c->data_out_len ? plen : c->data_out_len;
  if (avail < 8) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
    return;
  }
  const uint8_t *p = c->data_out;
  /* The descriptors the block descriptor data length announces, as far as
   * the list holds them; a partial last descriptor is ignored. */
  uint32_t bd_len = get_be16(p + 2);
  if (bd_len > avail - 8) bd_len = avail - 8;
  uint32_t nd = bd_len / 16;
  if (nd > SCSI_MAX_UNMAP_DESCRIPTORS) {
    scsi_sense_field(c, 0, 2, -1);
    return;
  }
  /* Validate every descriptor before unmapping anything. */
  uint64_t total = 0;
  for (uint32_t i = 0; i < nd; i++) {
    const uint8_t *d = p + 8 + 16 * i;
    uint64_t lba = get_be64(d);
    uint32_t cnt = get_be32(d + 8);
    if (out_of_range(lu, c, lba, cnt)) return;
    total += cnt;
    if (total > SCSI_MAX_UNMAP_BLOCKS) {
      scsi_sense_field(c, 0, 8 + 16 * i + 8, -1);
      return;
    }
  }
  struct err e;
  err_light(&e);
  pthread_rwlock_rdlock(&lu->caw_lock);
  for (uint32_t i = 0; i < nd; i++) {
    const uint8_t *d = p + 8 + 16 * i;
    uint64_t lba = get_be64(d);
    uint32_t cnt = get_be32(d + 8);
    if (cnt &&
        vol_discard(lu->vol, lba * SCSI_BLOCK_SIZE, (uint64_t)cnt * SCSI_BLOCK_SIZE, &e) < 0) {
      io_failed(lu, c, "unmap", lba, &e, 1);
      break;
    }
  }
  pthread_rwlock_unlock(&lu->caw_lock);
  if (c->status == SCSI_GOOD && !atomic_load_explicit(&lu->wce, memory_order_relaxed))
    flush(lu, c, 0);
}

/* ---- COMPARE AND WRITE ------------------------------------------------------------ */

void scsi_cmd_compare_and_write(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint64_t lba = get_be64(c->cdb + 2);
  uint32_t n = c->cdb[13];
  if (n > SCSI_MAX_CAW_BLOCKS) {
    scsi_sense_field(c, 1, 13, -1);
    return;
  }
  if (out_of_range(lu, c, lba, n) || scsi_write_protected(lu, c)) return;
  size_t len = (size_t)n * SCSI_BLOCK_SIZE;
  if (c->exp_len != 2 * len || c->data_out_len < 2 * len) {
    /* The verify data and the write data, exactly (also for 0 blocks: 256
     * blocks' worth of data with a count that wrapped to 0 is an error). */
    scsi_sense_field(c, 1, 13, -1);
    return;
  }
  if (!n) return;
  uint8_t *cur = malloc(len);
  if (!cur) {
    scsi_busy(c);
    return;
  }
  struct err e;
  err_light(&e);
  uint64_t off = lba * SCSI_BLOCK_SIZE;
  pthread_rwlock_wrlock(&lu->caw_lock);
  if (vol_pread(lu->vol, cur, len, off, &e) < 0) {
    io_failed(lu, c, "compare and write (read)", lba, &e, 0);
  } else {
    int64_t at = first_difference(cur, c->data_out, len);
    if (at >= 0)
      scsi_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, (uint64_t)at);
    else if (vol_pwrite(lu->vol, c->data_out + len, len, off, &e) < 0)
      io_failed(lu, c, "compare and write", lba, &e, 1);
    else
      atomic_fetch_add_explicit(&lu->write_bytes, len, memory_order_relaxed);
  }
  pthread_rwlock_unlock(&lu->caw_lock);
  free(cur);
  if (c->status == SCSI_GOOD &&
      ((c->cdb[1] & 0x08) || !atomic_load_explicit(&lu->wce, memory_order_relaxed)))
    flush(lu, c, lba);
}

/* ---- SYNCHRONIZE CACHE, PRE-FETCH ------------------------------------------------- */

void scsi_cmd_sync_cache(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  if (out_of_range(lu, c, r.lba, r.n)) return;
  /* Whatever the range, the whole volume is flushed: it is one file (or two)
   * underneath, and a flush of everything is what makes a range durable. */
  flush(lu, c, r.lba);
}

void scsi_cmd_prefetch(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct rw r = decode_rw(c->cdb);
  /* GOOD rather than CONDITION MET: nothing is held in a cache for it. */
  out_of_range(lu, c, r.lba, r.n);
}

/* ---- GET LBA STATUS ---------------------------------------------------------------- */

#define LBA_STATUS_MAX_DESCRIPTORS 512

void scsi_cmd_get_lba_status(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint64_t lba = get_be64(c->cdb + 2);
  uint32_t alloc = get_be32(c->cdb + 10);
  if (!lu->block_status) { /* not offered (scsi_exec does not get here then) */
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    return;
  }
  if (lba >= lu->nblocks) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    return;
  }
  uint32_t maxd = alloc >= 24 ? (alloc - 8) / 16 : 1;
  if (maxd > LBA_STATUS_MAX_DESCRIPTORS) maxd = LBA_STATUS_MAX_DESCRIPTORS;
  uint8_t *b = calloc(1, 8 + (size_t)maxd * 16);
  if (!b) {
    scsi_busy(c);
    return;
  }
  uint32_t nd = 0;
  struct err e;
  err_light(&e);
  while (lba < lu->nblocks && nd < maxd) {
    /* One descriptor holds at most 2^32 - 1 blocks. */
    uint64_t left = lu->nblocks - lba;
    if (left > 0xffffffffu) left = 0xffffffffu;
    uint64_t off = lba * SCSI_BLOCK_SIZE, run = 0;
    int st = lu->block_status(lu->vol, off, left * SCSI_BLOCK_SIZE, &run, &e);
    if (st < 0) {
      free(b);
      io_failed(lu, c, "get lba status", lba, &e, 0);
      return;
    }
    if (run == 0) run = 1;
    if (run > left * SCSI_BLOCK_SIZE) run = left * SCSI_BLOCK_SIZE;
    /* A block with any mapped byte is mapped. */
    uint64_t blocks;
    if (st == SCSI_MAPPED) {
      blocks = (run + SCSI_BLOCK_SIZE - 1) / SCSI_BLOCK_SIZE;
    } else {
      blocks = run / SCSI_BLOCK_SIZE;
      if (!blocks) {
        st = SCSI_MAPPED;
        blocks = 1;
      }
    }
    uint8_t *prev = nd ? b + 8 + 16 * (nd - 1) : NULL;
    if (prev && prev[12] == st && (uint64_t)get_be32(prev + 8) + blocks <= 0xffffffffu) {
      put_be32(prev + 8, (uint32_t)(get_be32(prev + 8) + blocks));
    } else {
      uint8_t *d = b + 8 + 16 * nd++;
      put_be64(d, lba);
      put_be32(d + 8, (uint32_t)blocks);
      d[12] = (uint8_t)st;
    }
    lba += blocks;
  }
  put_be32(b, 4 + 16 * nd); /* parameter data length: the bytes after this field */
  scsi_data_in(c, b, 8 + (size_t)nd * 16, alloc);
  free(b);
}
