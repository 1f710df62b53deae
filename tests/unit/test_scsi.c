/* test_scsi.c — the SCSI block device layer (src/iscsi/scsi*.c) driven the
 * way the iSCSI transport drives it: CDBs in, status / sense / Data-In out.
 * Most tests run over an in-memory volume that counts its calls, can fail
 * on demand and answers the block-status query; one runs over a real OS
 * volume and its snapshot. Covered: every command of the table, its
 * out-of-range, reserved-bit, write-protect, medium-error and short-data
 * cases; unit attentions; SPC-2 and persistent reservations across three
 * nexuses with every reservation type; COMPARE AND WRITE atomicity under
 * threads. Sense data is checked down to the field pointer where we set one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi.h"
#include "vol/vol.h"

#define BS 512u
#define CLUSTER 4096u

/* ---- an in-memory volume --------------------------------------------------------- */

struct memvol {
  struct vol v;
  uint8_t *data; /* data_len bytes; beyond that (a "huge" volume) reads zeros */
  uint64_t data_len;
  uint8_t *mapped; /* one flag per 4 KiB cluster */
  pthread_mutex_t lock;
  atomic_int nread, nwrite, nflush, ndiscard;
  int fail_read, fail_write, fail_flush, fail_discard, fail_status;
  int miss;  /* reads under vol_nowait "miss the page cache" */
  int yield; /* sched_yield inside reads: widens race windows */
};

static struct memvol *mv_of(struct vol *v) { return (struct memvol *)v; }

static int mv_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct memvol *m = mv_of(v);
  atomic_fetch_add(&m->nread, 1);
  if (m->fail_read || off + len > v->size) {
    err_set(e, 500, "VOL_IO_ERROR", "injected read failure");
    return -1;
  }
  if (vol_nowait && m->miss) { /* as the file volumes do on a page-cache miss */
    vol_would_block = 1;
    err_set(e, 500, "VOL_IO_ERROR", "would block");
    return -1;
  }
  if (m->yield) sched_yield();
  pthread_mutex_lock(&m->lock);
  memset(buf, 0, len);
  if (off < m->data_len)
    memcpy(buf, m->data + off, off + len > m->data_len ? m->data_len - off : len);
  pthread_mutex_unlock(&m->lock);
  return 0;
}

static int mv_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct memvol *m = mv_of(v);
  atomic_fetch_add(&m->nwrite, 1);
  if (m->fail_write || v->read_only || off + len > m->data_len) {
    err_set(e, 500, "VOL_IO_ERROR", "injected write failure");
    return -1;
  }
  pthread_mutex_lock(&m->lock);
  memcpy(m->data + off, buf, len);
  for (uint64_t c = off / CLUSTER; len && c <= (off + len - 1) / CLUSTER; c++)
    m->mapped[c] = 1;
  pthread_mutex_unlock(&m->lock);
  return 0;
}

static int mv_flush(struct vol *v, struct err *e) {
  struct memvol *m = mv_of(v);
  atomic_fetch_add(&m->nflush, 1);
  if (m->fail_flush) {
    err_set(e, 500, "VOL_IO_ERROR", "injected flush failure");
    return -1;
  }
  return 0;
}

static int mv_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct memvol *m = mv_of(v);
  atomic_fetch_add(&m->ndiscard, 1);
  if (m->fail_discard || off + len > m->data_len) {
    err_set(e, 500, "VOL_IO_ERROR", "injected discard failure");
    return -1;
  }
  pthread_mutex_lock(&m->lock);
  memset(m->data + off, 0, len);
  for (uint64_t c = (off + CLUSTER - 1) / CLUSTER; (c + 1) * CLUSTER <= off + len; c++)
    m->mapped[c] = 0; /* whole clusters only: a partial one stays mapped (zeros written) */
  pthread_mutex_unlock(&m->lock);
  return 0;
}

static uint64_t mv_allocated(struct vol *v) { return 0; }
static void mv_close(struct vol *v) {}

static const struct vol_ops mv_ops = {.pread = mv_pread,
                                      .pwrite = mv_pwrite,
                                      .flush = mv_flush,
                                      .discard = mv_discard,
                                      .allocated = mv_allocated,
                                      .close = mv_close};

static int mv_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                           struct err *e) {
  struct memvol *m = mv_of(v);
  if (m->fail_status) {
    err_set(e, 500, "VOL_IO_ERROR", "injected status failure");
    return -1;
  }
  uint64_t c = off / CLUSTER;
  int st = off < m->data_len && m->mapped[c] ? SCSI_MAPPED : SCSI_DEALLOCATED;
  uint64_t end = off;
  while (end < off + len) {
    uint64_t cc = end / CLUSTER;
    int s2 = end < m->data_len && m->mapped[cc] ? SCSI_MAPPED : SCSI_DEALLOCATED;
    if (s2 != st) break;
    end = (cc + 1) * CLUSTER;
  }
  *run = (end > off + len ? off + len : end) - off;
  return st;
}

static struct memvol *mv_new(uint64_t size, uint64_t data_len) {
  struct memvol *m = calloc(1, sizeof *m);
  assert_non_null(m);
  m->v.ops = &mv_ops;
  m->v.size = size;
  m->data_len = data_len;
  m->data = calloc(1, data_len);
  m->mapped = calloc(1, data_len / CLUSTER + 1);
  assert_non_null(m->data);
  assert_non_null(m->mapped);
  pthread_mutex_init(&m->lock, NULL);
  return m;
}

static void mv_free(struct memvol *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->lock);
  free(m->data);
  free(m->mapped);
  free(m);
}

/* ---- fixture: one LU over a 4 MiB memory volume, three nexuses ------------------- */

#define VOL_SIZE (4u << 20)
#define NBLOCKS (VOL_SIZE / BS)
#define UNIT_ID "5f0e1c9a-7b3d-4e21-9c8f-0123456789ab"
#define TARGET "iqn.2024-11.org.streamer:vol.test.5f0e1c9a"

static const struct scsi_nexus NA = {1, "iqn.1994-05.com.example:a",
                                     "iqn.1994-05.com.example:a,i,0x400000000001"};
static const struct scsi_nexus NB = {2, "iqn.1994-05.com.example:b",
                                     "iqn.1994-05.com.example:b,i,0x400000000002"};
static const struct scsi_nexus NC = {3, "iqn.1994-05.com.example:c",
                                     "iqn.1994-05.com.example:c,i,0x400000000003"};

/* an observer that never registers: reads PR state without consuming anyone's
 * unit attentions */
static const struct scsi_nexus ND = {4, "iqn.1994-05.com.example:d",
                                     "iqn.1994-05.com.example:d,i,0x400000000004"};

static struct memvol *mv;
static struct scsi_lu *lu;

/* Data-In buffers of the current test, freed at teardown. */
static void *allocs[4096];
static size_t nallocs;

static struct scsi_lu *lu_make(struct vol *v, int with_status) {
  struct err e;
  err_init(&e);
  struct scsi_lu_config cfg = {.vol = v,
                               .unit_id = UNIT_ID,
                               .target_name = TARGET,
                               .rel_port = 1,
                               .tpg = 1,
                               .block_status = with_status ? mv_block_status : NULL};
  struct scsi_lu *l = scsi_lu_new(&cfg, &e);
  if (!l) fail_msg("scsi_lu_new: %s", e.message);
  scsi_lu_nexus_add(l, &NA);
  scsi_lu_nexus_add(l, &NB);
  scsi_lu_nexus_add(l, &NC);
  scsi_lu_nexus_add(l, &ND);
  return l;
}

static int setup(void **state) {
  mv = mv_new(VOL_SIZE, VOL_SIZE);
  lu = lu_make(&mv->v, 1);
  return 0;
}

static int teardown(void **state) {
  scsi_lu_free(lu);
  lu = NULL;
  mv_free(mv);
  mv = NULL;
  for (size_t i = 0; i < nallocs; i++)
    free(allocs[i]);
  nallocs = 0;
  return 0;
}

/* ---- running commands ------------------------------------------------------------ */

static struct scsi_cmd run_on(struct scsi_lu *l, const struct scsi_nexus *n, uint64_t lun,
                              const uint8_t *cdb, size_t cdb_len, const void *out, uint32_t out_len,
                              uint32_t exp_len) {
  struct scsi_cmd c;
  memset(&c, 0, sizeof c);
  c.cdb = cdb;
  c.cdb_len = cdb_len;
  c.lun = lun;
  c.nexus = n;
  c.data_out = out;
  c.data_out_len = out_len;
  c.exp_len = exp_len;
  c.dir = out_len ? SCSI_DIR_WRITE : SCSI_DIR_READ;
  c.status = 0xff;
  scsi_exec(l, &c);
  if (c.data_in) {
    assert_true(nallocs < sizeof allocs / sizeof allocs[0]);
    allocs[nallocs++] = c.data_in;
  }
  if (c.status == SCSI_CHECK_CONDITION) assert_int_equal(c.sense_len, 18);
  return c;
}

/* A command from nexus n with Data-Out (exp_len = out_len). */
static struct scsi_cmd run_n(const struct scsi_nexus *n, const uint8_t *cdb, size_t len,
                             const void *out, uint32_t out_len) {
  return run_on(lu, n, 0, cdb, len, out, out_len, out_len);
}
static struct scsi_cmd run(const uint8_t *cdb, size_t len, const void *out, uint32_t out_len) {
  return run_n(&NA, cdb, len, out, out_len);
}

#define EXPECT_GOOD(c)                                                                             \
  do {                                                                                             \
    if ((c).status != SCSI_GOOD)                                                                   \
      fail_msg("line %d: status 0x%02x, sense %x/%02x/%02x", __LINE__, (c).status,                 \
               (c).sense[2] & 0xf, (c).sense[12], (c).sense[13]);                                  \
  } while (0)
#define EXPECT_SENSE(c, key, asc, ascq)                                                            \
  do {                                                                                             \
    if ((c).status != SCSI_CHECK_CONDITION || ((c).sense[0] & 0x7f) != 0x70 ||                     \
        ((c).sense[2] & 0xf) != (key) || (c).sense[12] != (asc) || (c).sense[13] != (ascq))        \
      fail_msg("line %d: want %x/%02x/%02x, got status 0x%02x sense %x/%02x/%02x", __LINE__,       \
               (key), (asc), (ascq), (c).status, (c).sense[2] & 0xf, (c).sense[12],                \
               (c).sense[13]);                                                                     \
  } while (0)
#define EXPECT_CONFLICT(c)                                                                         \
  do {                                                                                             \
    if ((c).status != SCSI_RESERVATION_CONFLICT)                                                   \
      fail_msg("line %d: want RESERVATION CONFLICT, got status 0x%02x", __LINE__, (c).status);     \
  } while (0)
/* INVALID FIELD IN CDB (cd 1) / PARAMETER LIST (cd 0) pointing at byte, bit (-1: none). */
#define EXPECT_FIELD(c, cd, byte, bit)                                                             \
  do {                                                                                             \
    EXPECT_SENSE(c, 5, (cd) ? 0x24 : 0x26, 0);                                                     \
    assert_int_equal((c).sense[15] & 0xc0, 0x80 | ((cd) ? 0x40 : 0));                              \
    assert_int_equal(get16((c).sense + 16), (byte));                                               \
    if ((bit) >= 0)                                                                                \
      assert_int_equal((c).sense[15] & 0x0f, 0x08 | (bit));                                        \
    else                                                                                           \
      assert_int_equal((c).sense[15] & 0x08, 0);                                                   \
  } while (0)

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }
static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}
static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}

/* CDB builders */
static void cdb6(uint8_t *c, uint8_t op, uint32_t lba, uint8_t n) {
  memset(c, 0, 6);
  c[0] = op;
  c[1] = (uint8_t)(lba >> 16 & 0x1f);
  c[2] = (uint8_t)(lba >> 8);
  c[3] = (uint8_t)lba;
  c[4] = n;
}
static void cdb10(uint8_t *c, uint8_t op, uint8_t b1, uint32_t lba, uint16_t n) {
  memset(c, 0, 10);
  c[0] = op;
  c[1] = b1;
  put32(c + 2, lba);
  put16(c + 7, n);
}
static void cdb12(uint8_t *c, uint8_t op, uint8_t b1, uint32_t lba, uint32_t n) {
  memset(c, 0, 12);
  c[0] = op;
  c[1] = b1;
  put32(c + 2, lba);
  put32(c + 6, n);
}
static void cdb16(uint8_t *c, uint8_t op, uint8_t b1, uint64_t lba, uint32_t n) {
  memset(c, 0, 16);
  c[0] = op;
  c[1] = b1;
  put64(c + 2, lba);
  put32(c + 10, n);
}

static struct scsi_cmd read10(const struct scsi_nexus *n, uint32_t lba, uint16_t nb) {
  uint8_t c[10];
  cdb10(c, 0x28, 0, lba, nb);
  return run_n(n, c, 10, NULL, 0);
}
static struct scsi_cmd write10(const struct scsi_nexus *n, uint32_t lba, uint16_t nb,
                               const void *buf) {
  uint8_t c[10];
  cdb10(c, 0x2a, 0, lba, nb);
  return run_n(n, c, 10, buf, nb * BS);
}
static struct scsi_cmd tur(const struct scsi_nexus *n) {
  uint8_t c[6] = {0};
  return run_n(n, c, 6, NULL, 0);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static void fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    p[i] = (uint8_t)rng;
  }
}

/* ---- INQUIRY, REPORT LUNS, TEST UNIT READY --------------------------------------- */

static struct scsi_cmd inquiry(int evpd, uint8_t page, uint16_t alloc) {
  uint8_t c[6] = {0x12, (uint8_t)evpd, page, (uint8_t)(alloc >> 8), (uint8_t)alloc, 0};
  return run(c, 6, NULL, 0);
}

static void test_inquiry_standard(void **state) {
  struct scsi_cmd c = inquiry(0, 0, 255);
  EXPECT_GOOD(c);
  assert_true(c.data_in_len >= 36);
  const uint8_t *d = c.data_in;
  assert_int_equal(d[0], 0x00);              /* connected, direct access */
  assert_int_equal(d[2], 0x06);              /* SPC-4 */
  assert_int_equal(d[3] & 0x0f, 2);          /* response data format */
  assert_int_equal(d[4], c.data_in_len - 5); /* additional length */
  assert_int_equal(d[5] & 0x30, 0x10);       /* TPGS: implicit ALUA */
  assert_int_equal(d[7] & 0x02, 0x02);       /* CMDQUE */
  assert_memory_equal(d + 8, "STREAMER", 8);
  assert_memory_equal(d + 16, "OS VOLUME       ", 16);
  int spc4 = 0, sbc3 = 0;
  for (int i = 58; i + 1 < (int)c.data_in_len; i += 2) {
    spc4 |= get16(d + i) == 0x0460;
    sbc3 |= get16(d + i) == 0x04c0;
  }
  assert_true(spc4 && sbc3);
  /* allocation length cuts the data; 0 returns nothing */
  uint32_t full = c.data_in_len;
  for (uint16_t a = 0; a < 70; a++) {
    c = inquiry(0, 0, a);
    EXPECT_GOOD(c);
    assert_int_equal(c.data_in_len, a < full ? a : full);
  }
  /* a page code without EVPD */
  c = inquiry(0, 0x80, 255);
  EXPECT_FIELD(c, 1, 2, -1);
  /* another LUN: peripheral qualifier 3, type 0x1f */
  uint8_t cdb[6] = {0x12, 0, 0, 0, 96, 0};
  c = run_on(lu, &NA, 5, cdb, 6, NULL, 0, 0);
  EXPECT_GOOD(c);
  assert_int_equal(c.data_in[0], 0x7f);
  cdb[1] = 1;
  c = run_on(lu, &NA, 5, cdb, 6, NULL, 0, 0);
  EXPECT_SENSE(c, 5, 0x25, 0);
}

/* Find designator (association, type) in a device identification page. */
static const uint8_t *find_designator(const uint8_t *d, uint32_t len, int assoc, int type) {
  for (uint32_t o = 4; o + 4 <= len; o += 4 + d[o + 3])
    if (((d[o + 1] >> 4) & 3) == assoc && (d[o + 1] & 0x0f) == type) return d + o;
  return NULL;
}

static void test_inquiry_vpd(void **state) {
  struct scsi_cmd c = inquiry(1, 0x00, 255);
  EXPECT_GOOD(c);
  uint16_t n = get16(c.data_in + 2);
  assert_int_equal(c.data_in_len, 4 + n);
  const uint8_t want[] = {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};
  assert_int_equal(n, sizeof want);
  assert_memory_equal(c.data_in + 4, want, sizeof want);
  /* every page listed answers, with a page length matching the data */
  for (size_t i = 0; i < sizeof want; i++) {
    c = inquiry(1, want[i], 1024);
    EXPECT_GOOD(c);
    assert_int_equal(c.data_in[1], want[i]);
    assert_int_equal(c.data_in_len, 4 + get16(c.data_in + 2));
  }
  /* unit serial number: the unit id */
  c = inquiry(1, 0x80, 255);
  assert_int_equal(get16(c.data_in + 2), strlen(UNIT_ID));
  assert_memory_equal(c.data_in + 4, UNIT_ID, strlen(UNIT_ID));
  /* device identification */
  c = inquiry(1, 0x83, 1024);
  const uint8_t *d = c.data_in;
  const uint8_t *naa = find_designator(d, c.data_in_len, 0, 3);
  assert_non_null(naa);
  assert_int_equal(naa[0] & 0x0f, 1); /* binary */
  assert_int_equal(naa[3], 8);
  const uint8_t want_naa[8] = {0x35, 0xf0, 0xe1, 0xc9, 0xa7, 0xb3, 0xd4, 0xe2};
  assert_memory_equal(naa + 4, want_naa, 8); /* "3" + the first 15 hex digits of the id */
  const uint8_t *t10 = find_designator(d, c.data_in_len, 0, 1);
  assert_non_null(t10);
  assert_memory_equal(t10 + 4, "STREAMER" UNIT_ID, 8 + strlen(UNIT_ID));
  const uint8_t *rel = find_designator(d, c.data_in_len, 1, 4);
  assert_non_null(rel);
  assert_int_equal(rel[1] & 0x80, 0x80); /* PIV */
  assert_int_equal(rel[0] >> 4, 5);      /* iSCSI */
  assert_int_equal(get16(rel + 6), 1);
  const uint8_t *tpg = find_designator(d, c.data_in_len, 1, 5);
  assert_non_null(tpg);
  assert_int_equal(get16(tpg + 6), 1);
  const uint8_t *pname = find_designator(d, c.data_in_len, 1, 8);
  assert_non_null(pname);
  assert_string_equal((const char *)pname + 4, TARGET ",t,0x0001");
  assert_int_equal(pname[3] % 4, 0);
  const uint8_t *tname = find_designator(d, c.data_in_len, 2, 8);
  assert_non_null(tname);
  assert_string_equal((const char *)tname + 4, TARGET);
  /* block limits */
  c = inquiry(1, 0xb0, 64);
  d = c.data_in;
  assert_int_equal(get16(d + 2), 0x3c);
  assert_int_equal(d[4] & 1, 0);                                  /* WSNZ 0 */
  assert_true(d[5] >= 1);                                         /* COMPARE AND WRITE length */
  assert_int_equal(get32(d + 8), SCSI_MAX_XFER_BYTES / BS);       /* maximum transfer */
  assert_true(get32(d + 20) > 0 && get32(d + 20) <= 1024 * 1024); /* unmap LBA count */
  assert_true(get32(d + 24) > 0);                                 /* unmap descriptors */
  assert_true(get64(d + 36) > 0);                                 /* write same */
  /* block device characteristics: not rotating */
  c = inquiry(1, 0xb1, 64);
  assert_int_equal(get16(c.data_in + 4), 1);
  /* logical block provisioning */
  c = inquiry(1, 0xb2, 64);
  assert_int_equal(c.data_in[5] & 0xe4, 0xe4); /* LBPU LBPWS LBPWS10 LBPRZ */
  assert_int_equal(c.data_in[6] & 0x07, 2);    /* thin */
  /* unknown page */
  c = inquiry(1, 0x99, 255);
  EXPECT_FIELD(c, 1, 2, -1);
}

/* A unit id that is not hex: the NAA comes from a hash, stable across LUs. */
static void test_naa_hashed(void **state) {
  struct err e;
  err_init(&e);
  struct scsi_lu_config cfg = {.vol = &mv->v, .unit_id = "my volume", .target_name = TARGET};
  struct scsi_lu *a = scsi_lu_new(&cfg, &e), *b = scsi_lu_new(&cfg, &e);
  assert_non_null(a);
  assert_non_null(b);
  uint8_t cdb[6] = {0x12, 1, 0x83, 1, 0, 0};
  struct scsi_cmd ca = run_on(a, &NA, 0, cdb, 6, NULL, 0, 0);
  struct scsi_cmd cb = run_on(b, &NA, 0, cdb, 6, NULL, 0, 0);
  EXPECT_GOOD(ca);
  const uint8_t *na = find_designator(ca.data_in, ca.data_in_len, 0, 3);
  const uint8_t *nb = find_designator(cb.data_in, cb.data_in_len, 0, 3);
  assert_non_null(na);
  assert_int_equal(na[4] >> 4, 3);
  assert_memory_equal(na + 4, nb + 4, 8);
  cfg.unit_id = "my volume 2";
  struct scsi_lu *o = scsi_lu_new(&cfg, &e);
  struct scsi_cmd co = run_on(o, &NA, 0, cdb, 6, NULL, 0, 0);
  assert_memory_not_equal(find_designator(co.data_in, co.data_in_len, 0, 3) + 4, na + 4, 8);
  scsi_lu_free(a);
  scsi_lu_free(b);
  scsi_lu_free(o);
  /* a volume smaller than a block, or no unit id, is refused */
  struct memvol *tiny = mv_new(100, 100);
  cfg.vol = &tiny->v;
  assert_null(scsi_lu_new(&cfg, &e));
  cfg.vol = &mv->v;
  cfg.unit_id = NULL;
  assert_null(scsi_lu_new(&cfg, &e));
  mv_free(tiny);
}

static void test_report_luns_tur(void **state) {
  uint8_t c[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  struct scsi_cmd r = run(c, 12, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 16);
  assert_int_equal(get32(r.data_in), 8);
  for (int i = 8; i < 16; i++)
    assert_int_equal(r.data_in[i], 0);
  /* addressed to another LUN, it still answers */
  r = run_on(lu, &NA, 3, c, 12, NULL, 0, 0);
  EXPECT_GOOD(r);
  c[2] = 1; /* well known LUs only: none */
  r = run(c, 12, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(get32(r.data_in), 0);
  c[2] = 7;
  r = run(c, 12, NULL, 0);
  EXPECT_FIELD(r, 1, 2, -1);
  /* TEST UNIT READY */
  r = tur(&NA);
  EXPECT_GOOD(r);
  uint8_t t[6] = {0};
  r = run_on(lu, &NA, 1, t, 6, NULL, 0, 0);
  EXPECT_SENSE(r, 5, 0x25, 0);
}

static void test_invalid_opcode_and_reserved_bits(void **state) {
  uint8_t c[16] = {0x04}; /* FORMAT UNIT: not supported */
  struct scsi_cmd r = run(c, 6, NULL, 0);
  EXPECT_SENSE(r, 5, 0x20, 0);
  c[0] = 0x7f; /* variable length */
  r = run(c, 16, NULL, 0);
  EXPECT_SENSE(r, 5, 0x20, 0);
  /* a supported opcode with an unsupported service action */
  cdb16(c, 0x9e, 0x11, 0, 0);
  r = run(c, 16, NULL, 0);
  EXPECT_SENSE(r, 5, 0x20, 0);
  /* RDPROTECT on READ(10): we have no protection information */
  cdb10(c, 0x28, 0x20, 0, 1);
  r = run(c, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 1, 5);
  /* reserved byte 6 bits of READ(10) beyond the group number */
  cdb10(c, 0x28, 0, 0, 1);
  c[6] = 0x40;
  r = run(c, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 6, 6);
  /* NACA in the control byte; vendor bits are ignored */
  cdb10(c, 0x28, 0, 0, 1);
  c[9] = 0x04;
  r = run(c, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 9, 2);
  c[9] = 0xc0;
  r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  /* a CDB shorter than the command */
  cdb16(c, 0x88, 0, 0, 1);
  r = run(c, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 0, -1);
  /* no CDB at all */
  r = run(c, 0, NULL, 0);
  EXPECT_SENSE(r, 5, 0x20, 0);
}

/* ---- READ CAPACITY ---------------------------------------------------------------- */

static void test_read_capacity(void **state) {
  uint8_t c[16];
  cdb10(c, 0x25, 0, 0, 0);
  struct scsi_cmd r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 8);
  assert_int_equal(get32(r.data_in), NBLOCKS - 1);
  assert_int_equal(get32(r.data_in + 4), BS);
  put32(c + 2, 5); /* LBA without PMI */
  r = run(c, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 2, -1);
  c[8] = 1;
  r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  cdb16(c, 0x9e, 0x10, 0, 32);
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 32);
  assert_int_equal(get64(r.data_in), NBLOCKS - 1);
  assert_int_equal(get32(r.data_in + 8), BS);
  assert_int_equal(r.data_in[13] & 0x0f, 0);    /* one logical block per physical block */
  assert_int_equal(r.data_in[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
  cdb16(c, 0x9e, 0x10, 0, 12);                  /* allocation length cuts */
  r = run(c, 16, NULL, 0);
  assert_int_equal(r.data_in_len, 12);
  /* more than 2^32 blocks: READ CAPACITY (10) says 0xffffffff */
  struct memvol *big = mv_new(3ull << 40, 1 << 20);
  struct scsi_lu *l = lu_make(&big->v, 0);
  cdb10(c, 0x25, 0, 0, 0);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  assert_int_equal(get32(r.data_in), 0xffffffffu);
  cdb16(c, 0x9e, 0x10, 0, 32);
  r = run_on(l, &NA, 0, c, 16, NULL, 0, 0);
  assert_int_equal(get64(r.data_in), (3ull << 40) / BS - 1);
  /* and reads beyond 2 TiB work with READ(16) */
  cdb16(c, 0x88, 0, (3ull << 40) / BS - 1, 1);
  r = run_on(l, &NA, 0, c, 16, NULL, 0, 0);
  EXPECT_GOOD(r);
  scsi_lu_free(l);
  mv_free(big);
}

/* ---- READ / WRITE ------------------------------------------------------------------- */

static void test_read_write(void **state) {
  static uint8_t model[VOL_SIZE];
  memset(model, 0, sizeof model);
  uint8_t buf[256 * BS], c[16];
  struct scsi_cmd r;
  /* every size of WRITE, then read back with every size of READ */
  const uint8_t wops[] = {0x0a, 0x2a, 0xaa, 0x8a}, rops[] = {0x08, 0x28, 0xa8, 0x88};
  for (int i = 0; i < 4; i++) {
    uint32_t lba = 100 + 300 * (uint32_t)i, n = 7 + (uint32_t)i;
    fill(buf, n * BS);
    size_t len = wops[i] == 0x0a ? 6 : wops[i] == 0x2a ? 10 : wops[i] == 0xaa ? 12 : 16;
    if (len == 6)
      cdb6(c, wops[i], lba, (uint8_t)n);
    else if (len == 10)
      cdb10(c, wops[i], 0, lba, (uint16_t)n);
    else if (len == 12)
      cdb12(c, wops[i], 0, lba, n);
    else
      cdb16(c, wops[i], 0, lba, n);
    r = run(c, len, buf, n * BS);
    EXPECT_GOOD(r);
    memcpy(model + lba * BS, buf, n * BS);
  }
  for (int i = 0; i < 4; i++) {
    uint32_t lba = 90 + 300 * (uint32_t)i, n = 30;
    size_t len = rops[i] == 0x08 ? 6 : rops[i] == 0x28 ? 10 : rops[i] == 0xa8 ? 12 : 16;
    if (len == 6)
      cdb6(c, rops[i], lba, (uint8_t)n);
    else if (len == 10)
      cdb10(c, rops[i], 0x18, lba, (uint16_t)n); /* DPO FUA */
    else if (len == 12)
      cdb12(c, rops[i], 0x18, lba, n);
    else
      cdb16(c, rops[i], 0x18, lba, n);
    r = run(c, len, NULL, 0);
    EXPECT_GOOD(r);
    assert_int_equal(r.data_in_len, n * BS);
    assert_memory_equal(r.data_in, model + lba * BS, n * BS);
  }
  /* READ(6) with 0 blocks reads 256 */
  cdb6(c, 0x08, 0, 0);
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 256 * BS);
  assert_memory_equal(r.data_in, model, 256 * BS);
  /* zero-length transfers do not touch the volume */
  int nr = atomic_load(&mv->nread), nw = atomic_load(&mv->nwrite);
  r = read10(&NA, 5, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 0);
  assert_null(r.data_in);
  r = write10(&NA, 5, 0, NULL);
  EXPECT_GOOD(r);
  cdb16(c, 0x88, 0, NBLOCKS, 0); /* at the capacity: still nothing to do */
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nread), nr);
  assert_int_equal(atomic_load(&mv->nwrite), nw);
  /* no FUA, write cache on: no flush */
  int nf = atomic_load(&mv->nflush);
  r = write10(&NA, 1, 1, buf);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf);
  /* FUA: flushed before GOOD */
  cdb10(c, 0x2a, 0x08, 1, 1);
  r = run(c, 10, buf, BS);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  cdb16(c, 0x8a, 0x08, 1, 1);
  r = run(c, 16, buf, BS);
  assert_int_equal(atomic_load(&mv->nflush), nf + 2);
}

static void test_out_of_range(void **state) {
  uint8_t c[16], buf[2 * BS] = {0};
  struct scsi_cmd r;
  r = read10(&NA, NBLOCKS - 1, 1);
  EXPECT_GOOD(r);
  r = read10(&NA, NBLOCKS - 1, 2);
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = read10(&NA, NBLOCKS, 1);
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = read10(&NA, NBLOCKS + 1, 0); /* zero blocks beyond the end */
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = read10(&NA, 0xffffffffu, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = write10(&NA, NBLOCKS - 1, 2, buf);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb6(c, 0x08, NBLOCKS - 1, 2);
  r = run(c, 6, NULL, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb12(c, 0xa8, 0, NBLOCKS - 1, 2);
  r = run(c, 12, NULL, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  /* 16-byte LBAs that overflow when added to the length */
  const uint64_t lbas[] = {0x8000000000000000ull, 0xffffffffffffffffull, NBLOCKS + 1ull};
  for (int i = 0; i < 3; i++) {
    cdb16(c, 0x88, 0, lbas[i], 1);
    r = run(c, 16, NULL, 0);
    EXPECT_SENSE(r, 5, 0x21, 0);
    cdb16(c, 0x8a, 0, lbas[i], 1);
    r = run(c, 16, buf, BS);
    EXPECT_SENSE(r, 5, 0x21, 0);
  }
  cdb16(c, 0x88, 0, 1, 0xffffffffu);
  r = run(c, 16, NULL, 0); /* longer than the maximum transfer: the length is at fault */
  EXPECT_FIELD(r, 1, 10, -1);
  cdb16(c, 0x88, 0, 0, SCSI_MAX_XFER_BYTES / BS + 1);
  r = run(c, 16, NULL, 0);
  EXPECT_FIELD(r, 1, 10, -1);
  assert_int_equal(atomic_load(&mv->nread), 1);
}

/* Data-Out shorter than the CDB asks: only the whole blocks sent are written. */
static void test_write_short_data(void **state) {
  uint8_t a[2 * BS], b[2 * BS], c[10];
  memset(a, 'a', sizeof a);
  memset(b, 'b', sizeof b);
  struct scsi_cmd r = write10(&NA, 0, 2, a);
  EXPECT_GOOD(r);
  cdb10(c, 0x2a, 0, 0, 2);
  r = run_on(lu, &NA, 0, c, 10, b, BS, BS);
  EXPECT_GOOD(r);
  r = read10(&NA, 0, 2);
  assert_memory_equal(r.data_in, b, BS);
  assert_memory_equal(r.data_in + BS, a, BS);
  int nw = atomic_load(&mv->nwrite);
  r = run_on(lu, &NA, 0, c, 10, b, 200, 200); /* less than a block: nothing */
  EXPECT_GOOD(r);
  r = run_on(lu, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nwrite), nw);
}

static void test_medium_errors(void **state) {
  uint8_t buf[BS] = {1}, c[16];
  struct scsi_lu_stats st0, st1;
  scsi_lu_stats(lu, &st0);
  mv->fail_read = 1;
  struct scsi_cmd r = read10(&NA, 77, 1);
  EXPECT_SENSE(r, 3, 0x11, 0);
  assert_int_equal(r.sense[0] & 0x80, 0x80); /* VALID: INFORMATION is the LBA */
  assert_int_equal(get32(r.sense + 3), 77);
  assert_null(r.data_in);
  mv->fail_read = 0;
  mv->fail_write = 1;
  r = write10(&NA, 78, 1, buf);
  EXPECT_SENSE(r, 3, 0x0c, 0);
  assert_int_equal(get32(r.sense + 3), 78);
  mv->fail_write = 0;
  mv->fail_flush = 1;
  cdb10(c, 0x35, 0, 0, 0);
  r = run(c, 10, NULL, 0);
  EXPECT_SENSE(r, 3, 0x0c, 0);
  cdb10(c, 0x2a, 0x08, 0, 1); /* FUA write: the flush fails */
  r = run(c, 10, buf, BS);
  EXPECT_SENSE(r, 3, 0x0c, 0);
  mv->fail_flush = 0;
  mv->fail_discard = 1;
  uint8_t list[24] = {0, 22, 0, 16};
  put64(list + 8, 8);
  put32(list + 16, 8);
  cdb10(c, 0x42, 0, 0, 0);
  put16(c + 7, 24);
  r = run(c, 10, list, 24);
  EXPECT_SENSE(r, 3, 0x0c, 0);
  mv->fail_discard = 0;
  scsi_lu_stats(lu, &st1);
  assert_int_equal(st1.commands - st0.commands, 5);
  assert_int_equal(st1.errors - st0.errors, 5);
}

/* A read tried without blocking (on the transport's event loop) that would
 * have to wait: not an error, not counted; the transport runs it again. */
static void test_nowait_read(void **state) {
  struct scsi_lu_stats st0, st1;
  scsi_lu_stats(lu, &st0);
  mv->miss = 1;
  vol_nowait = 1;
  vol_would_block = 0;
  struct scsi_cmd r = read10(&NA, 0, 8);
  vol_nowait = 0;
  assert_int_equal(vol_would_block, 1);
  assert_null(r.data_in);
  scsi_lu_stats(lu, &st1);
  assert_int_equal(st1.commands, st0.commands);
  assert_int_equal(st1.errors, st0.errors);
  assert_int_equal(st1.read_bytes, st0.read_bytes);
  vol_would_block = 0;
  r = read10(&NA, 0, 8); /* again, on a thread that may block */
  EXPECT_GOOD(r);
  scsi_lu_stats(lu, &st1);
  assert_int_equal(st1.commands, st0.commands + 1);
  assert_int_equal(st1.read_bytes, st0.read_bytes + 8 * BS);
}

static void test_stats(void **state) {
  uint8_t buf[4 * BS] = {0};
  struct scsi_lu_stats st;
  write10(&NA, 0, 4, buf);
  read10(&NA, 0, 2);
  read10(&NA, NBLOCKS, 1); /* an error */
  tur(&NA);
  scsi_lu_stats(lu, &st);
  assert_int_equal(st.commands, 4);
  assert_int_equal(st.errors, 1);
  assert_int_equal(st.read_bytes, 2 * BS);
  assert_int_equal(st.write_bytes, 4 * BS);
}

/* ---- write protection -------------------------------------------------------------- */

static uint8_t ms_hdr_dsp(struct scsi_lu *l) {
  uint8_t c[6] = {0x1a, 0x08, 0x3f, 0, 255, 0};
  struct scsi_cmd r = run_on(l, &NA, 0, c, 6, NULL, 0, 0);
  EXPECT_GOOD(r);
  return r.data_in[2];
}

static void check_all_writes_refused(struct scsi_lu *l, uint8_t ascq) {
  uint8_t c[16], buf[2 * BS] = {0}, list[24] = {0, 22, 0, 16};
  put32(list + 16, 1);
  struct scsi_cmd r;
  cdb10(c, 0x2a, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 10, buf, BS, BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb6(c, 0x0a, 0, 1);
  r = run_on(l, &NA, 0, c, 6, buf, BS, BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb16(c, 0x8a, 0, 0, 0); /* even with no blocks */
  r = run_on(l, &NA, 0, c, 16, NULL, 0, 0);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb10(c, 0x2e, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 10, buf, BS, BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb16(c, 0x8b, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 16, buf, BS, BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb10(c, 0x41, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 10, buf, BS, BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb16(c, 0x93, 0x09, 0, 1);
  r = run_on(l, &NA, 0, c, 16, NULL, 0, 0);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb10(c, 0x42, 0, 0, 0);
  put16(c + 7, 24);
  r = run_on(l, &NA, 0, c, 10, list, 24, 24);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  cdb16(c, 0x89, 0, 0, 0);
  c[13] = 1;
  r = run_on(l, &NA, 0, c, 16, buf, 2 * BS, 2 * BS);
  EXPECT_SENSE(r, 7, 0x27, ascq);
  /* reading, verifying, flushing still work */
  cdb10(c, 0x28, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  cdb10(c, 0x35, 0, 0, 0);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  cdb10(c, 0x2f, 0, 0, 1);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
}

static void test_write_protect(void **state) {
  /* a read-only volume (a snapshot) */
  struct memvol *ro = mv_new(VOL_SIZE, VOL_SIZE);
  ro->v.read_only = 1;
  struct scsi_lu *l = lu_make(&ro->v, 0);
  check_all_writes_refused(l, 0x00);
  assert_int_equal(atomic_load(&ro->nwrite), 0);
  assert_int_equal(ms_hdr_dsp(l) & 0x80, 0x80); /* WP */
  scsi_lu_free(l);
  mv_free(ro);
  /* software write protect through the Control page */
  assert_int_equal(ms_hdr_dsp(lu) & 0x80, 0);
  assert_int_equal(ms_hdr_dsp(lu) & 0x10, 0x10); /* DPOFUA */
  uint8_t sel[4 + 12] = {0, 0, 0, 0, 0x0a, 0x0a, 0x02, 0x10, 0x08, 0, 0, 0, 0xff, 0xff, 0, 0};
  uint8_t c[6] = {0x15, 0x10, 0, 0, sizeof sel, 0};
  struct scsi_cmd r = run(c, 6, sel, sizeof sel);
  EXPECT_GOOD(r);
  assert_int_equal(ms_hdr_dsp(lu) & 0x80, 0x80);
  check_all_writes_refused(lu, 0x02);
  sel[8] = 0;
  r = run(c, 6, sel, sizeof sel);
  EXPECT_GOOD(r);
  uint8_t buf[BS] = {0};
  r = write10(&NA, 0, 1, buf);
  EXPECT_GOOD(r);
}

/* ---- VERIFY, WRITE AND VERIFY -------------------------------------------------------- */

static void test_verify(void **state) {
  uint8_t data[8 * BS], c[16];
  fill(data, sizeof data);
  struct scsi_cmd r = write10(&NA, 40, 8, data);
  EXPECT_GOOD(r);
  const uint8_t ops[] = {0x2f, 0xaf, 0x8f};
  for (int i = 0; i < 3; i++) {
    size_t len = ops[i] == 0x2f ? 10 : ops[i] == 0xaf ? 12 : 16;
#define VCDB(b1, lba, n)                                                                           \
  (len == 10   ? cdb10(c, ops[i], b1, lba, n)                                                      \
   : len == 12 ? cdb12(c, ops[i], b1, lba, n)                                                      \
               : cdb16(c, ops[i], b1, lba, n))
    VCDB(0x02, 40, 8); /* BYTCHK 01: equal */
    r = run(c, len, data, sizeof data);
    EXPECT_GOOD(r);
    VCDB(0x12, 40, 8); /* with DPO */
    r = run(c, len, data, sizeof data);
    EXPECT_GOOD(r);
    uint8_t bad[8 * BS];
    memcpy(bad, data, sizeof bad);
    bad[3 * BS + 17] ^= 1;
    VCDB(0x02, 40, 8);
    r = run(c, len, bad, sizeof bad);
    EXPECT_SENSE(r, 0xe, 0x1d, 0);
    assert_int_equal(r.sense[0] & 0x80, 0x80);
    assert_int_equal(get32(r.sense + 3), 3 * BS + 17); /* offset of the first difference */
    VCDB(0x00, 40, 8);                                 /* BYTCHK 0: no comparison */
    r = run(c, len, NULL, 0);
    EXPECT_GOOD(r);
    VCDB(0x04, 40, 8); /* BYTCHK 10: reserved */
    r = run(c, len, NULL, 0);
    EXPECT_FIELD(r, 1, 1, 2);
    VCDB(0x02, NBLOCKS - 4, 8);
    r = run(c, len, data, sizeof data);
    EXPECT_SENSE(r, 5, 0x21, 0);
    VCDB(0x00, NBLOCKS + 1, 0);
    r = run(c, len, NULL, 0);
    EXPECT_SENSE(r, 5, 0x21, 0);
    VCDB(0x02, 40, 0); /* zero blocks: nothing to compare */
    r = run(c, len, NULL, 0);
    EXPECT_GOOD(r);
    VCDB(0x20, 40, 1); /* VRPROTECT */
    r = run(c, len, NULL, 0);
    EXPECT_FIELD(r, 1, 1, 5);
  }
  /* BYTCHK 11: one block against each block of the range */
  uint8_t same[4 * BS];
  for (int i = 0; i < 4; i++)
    memset(same + i * BS, 0x5a, BS);
  r = write10(&NA, 200, 4, same);
  cdb16(c, 0x8f, 0x06, 200, 4);
  r = run(c, 16, same, BS);
  EXPECT_GOOD(r);
  same[2 * BS + 9] = 0;
  r = write10(&NA, 200, 4, same);
  r = run(c, 16, same, BS);
  EXPECT_SENSE(r, 0xe, 0x1d, 0);
  assert_int_equal(get32(r.sense + 3), 2 * BS + 9);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), BS);
}

static void test_write_and_verify(void **state) {
  uint8_t data[3 * BS], c[16];
  fill(data, sizeof data);
  const uint8_t ops[] = {0x2e, 0xae, 0x8e};
  for (int i = 0; i < 3; i++) {
    size_t len = ops[i] == 0x2e ? 10 : ops[i] == 0xae ? 12 : 16;
    int nf = atomic_load(&mv->nflush);
    if (len == 10)
      cdb10(c, ops[i], 0x02, 10 + 5 * i, 3);
    else if (len == 12)
      cdb12(c, ops[i], 0x02, 10 + 5 * i, 3);
    else
      cdb16(c, ops[i], 0x02, 10 + 5 * i, 3);
    struct scsi_cmd r = run(c, len, data, sizeof data);
    EXPECT_GOOD(r);
    assert_int_equal(atomic_load(&mv->nflush), nf + 1); /* on the medium before GOOD */
    r = read10(&NA, 10 + 5 * i, 3);
    assert_memory_equal(r.data_in, data, sizeof data);
    c[1] = 0x06; /* BYTCHK 11 is reserved here */
    r = run(c, len, data, sizeof data);
    EXPECT_FIELD(r, 1, 1, 2);
    if (len == 10)
      cdb10(c, ops[i], 0, NBLOCKS - 1, 3);
    else if (len == 12)
      cdb12(c, ops[i], 0, NBLOCKS - 1, 3);
    else
      cdb16(c, ops[i], 0, NBLOCKS - 1, 3);
    r = run(c, len, data, sizeof data);
    EXPECT_SENSE(r, 5, 0x21, 0);
  }
}

static void test_orwrite(void **state) {
  uint8_t a[4 * BS], b[4 * BS], c[16];
  memset(a, 0xa5, sizeof a);
  memset(b, 0x5a, sizeof b);
  struct scsi_cmd r = write10(&NA, 20, 4, a);
  b[5] = 0x00;
  int nf = atomic_load(&mv->nflush);
  cdb16(c, 0x8b, 0x18, 20, 4); /* DPO FUA */
  assert_int_equal(scsi_cdb_data_out_len(c, 16), 4 * BS);
  r = run(c, 16, b, sizeof b);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  r = read10(&NA, 20, 4);
  for (size_t i = 0; i < 4 * BS; i++)
    assert_int_equal(r.data_in[i], i == 5 ? 0xa5 : 0xff);
  cdb16(c, 0x8b, 0, NBLOCKS - 2, 4);
  r = run(c, 16, b, sizeof b);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb16(c, 0x8b, 0x20, 20, 1); /* ORPROTECT */
  r = run(c, 16, b, BS);
  EXPECT_FIELD(r, 1, 1, 5);
  cdb16(c, 0x8b, 0, 20, 0);
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  mv->fail_read = 1;
  cdb16(c, 0x8b, 0, 20, 1);
  r = run(c, 16, b, BS);
  EXPECT_SENSE(r, 3, 0x11, 0);
  mv->fail_read = 0;
  mv->v.read_only = 1; /* what the LU was made with decides: not this */
  r = run(c, 16, b, BS);
  EXPECT_SENSE(r, 3, 0x0c, 0);
  mv->v.read_only = 0;
}

/* ---- WRITE SAME, UNMAP --------------------------------------------------------------- */

static void test_write_same(void **state) {
  uint8_t c[16], pat[BS], zero[BS] = {0};
  fill(pat, BS);
  struct scsi_cmd r;
  /* WRITE SAME(10) writes the block over the range */
  cdb10(c, 0x41, 0, 10, 5);
  r = run(c, 10, pat, BS);
  EXPECT_GOOD(r);
  r = read10(&NA, 9, 7);
  for (int i = 1; i < 6; i++)
    assert_memory_equal(r.data_in + i * BS, pat, BS);
  assert_memory_equal(r.data_in, zero, BS);
  assert_memory_equal(r.data_in + 6 * BS, zero, BS);
  /* WRITE SAME(16) over more than one internal chunk (1 MiB) */
  cdb16(c, 0x93, 0, 2048, 2100);
  r = run(c, 16, pat, BS);
  EXPECT_GOOD(r);
  r = read10(&NA, 2048 + 2099, 1);
  assert_memory_equal(r.data_in, pat, BS);
  /* zeros become a discard, with or without UNMAP, and so does NDOB */
  int nd = atomic_load(&mv->ndiscard), nw = atomic_load(&mv->nwrite);
  cdb10(c, 0x41, 0, 10, 5);
  r = run(c, 10, zero, BS);
  EXPECT_GOOD(r);
  cdb10(c, 0x41, 0x08, 2048, 8);
  r = run(c, 10, zero, BS);
  EXPECT_GOOD(r);
  cdb16(c, 0x93, 0x09, 2056, 8);
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->ndiscard), nd + 3);
  assert_int_equal(atomic_load(&mv->nwrite), nw);
  r = read10(&NA, 10, 5);
  for (int i = 0; i < 5; i++)
    assert_memory_equal(r.data_in + i * BS, zero, BS);
  r = read10(&NA, 2048, 16);
  for (int i = 0; i < 16; i++)
    assert_memory_equal(r.data_in + i * BS, zero, BS);
  /* UNMAP with a non-zero block: deallocated all the same (SBC-3), zeros */
  nd = atomic_load(&mv->ndiscard);
  cdb10(c, 0x41, 0x08, 30, 2);
  r = run(c, 10, pat, BS);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->ndiscard), nd + 1);
  r = read10(&NA, 30, 2);
  assert_memory_equal(r.data_in + BS, zero, BS);
  /* 0 blocks: up to the end of the medium */
  cdb10(c, 0x41, 0, NBLOCKS - 3, 0);
  r = run(c, 10, pat, BS);
  EXPECT_GOOD(r);
  r = read10(&NA, NBLOCKS - 3, 3);
  assert_memory_equal(r.data_in + 2 * BS, pat, BS);
  cdb10(c, 0x41, 0, NBLOCKS + 1, 0);
  r = run(c, 10, pat, BS);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb10(c, 0x41, 0, NBLOCKS - 1, 2);
  r = run(c, 10, pat, BS);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb16(c, 0x93, 0, 0xffffffffffffffffull, 1);
  r = run(c, 16, pat, BS);
  EXPECT_SENSE(r, 5, 0x21, 0);
  /* more than the maximum write same length */
  cdb16(c, 0x93, 0, 0, 0x10000);
  r = run(c, 16, pat, BS);
  EXPECT_FIELD(r, 1, 10, -1);
  /* exactly one block of Data-Out */
  cdb10(c, 0x41, 0x08, 0, 1);
  r = run_on(lu, &NA, 0, c, 10, pat, BS / 2, BS / 2);
  EXPECT_FIELD(r, 1, 7, -1);
  uint8_t two[2 * BS] = {0};
  r = run_on(lu, &NA, 0, c, 10, two, BS, 2 * BS); /* the transport kept what the CDB needs */
  EXPECT_FIELD(r, 1, 7, -1);
  /* ANCHOR, LBDATA/PBDATA (obsolete), NDOB on WRITE SAME(10) */
  const uint8_t bits[] = {0x10, 0x04, 0x02, 0x01};
  const int bitno[] = {4, 2, 1, 0};
  for (int i = 0; i < 4; i++) {
    cdb10(c, 0x41, bits[i], 0, 1);
    r = run(c, 10, pat, BS);
    EXPECT_FIELD(r, 1, 1, bitno[i]);
  }
  assert_int_equal(scsi_cdb_data_out_len(c, 10), BS);
  /* with WCE off the data is flushed */
  uint8_t cache[4 + 20] = {0, 0, 0, 0, 0x08, 0x12, 0x00};
  uint8_t sel[6] = {0x15, 0x10, 0, 0, sizeof cache, 0};
  r = run(sel, 6, cache, sizeof cache);
  EXPECT_GOOD(r);
  int nf = atomic_load(&mv->nflush);
  cdb10(c, 0x41, 0, 0, 4);
  r = run(c, 10, pat, BS);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
}

static struct scsi_cmd unmap_list(const uint64_t *lba, const uint32_t *n, int nd,
                                  uint32_t plen_override) {
  static uint8_t list[8 + 16 * 5000];
  memset(list, 0, sizeof list);
  uint32_t plen = 8 + 16 * (uint32_t)nd;
  put16(list, (uint16_t)(plen - 2));
  put16(list + 2, (uint16_t)(16 * nd));
  for (int i = 0; i < nd; i++) {
    put64(list + 8 + 16 * i, lba[i]);
    put32(list + 16 + 16 * i, n[i]);
  }
  if (plen_override) plen = plen_override;
  uint8_t c[10];
  cdb10(c, 0x42, 0, 0, 0);
  put16(c + 7, (uint16_t)plen);
  return run(c, 10, list, plen);
}

static void test_unmap(void **state) {
  uint8_t data[64 * BS];
  memset(data, 0xee, sizeof data);
  struct scsi_cmd r = write10(&NA, 0, 64, data);
  EXPECT_GOOD(r);
  uint64_t lba[3] = {8, 24, 40};
  uint32_t n[3] = {8, 0, 16};
  int nd = atomic_load(&mv->ndiscard);
  r = unmap_list(lba, n, 3, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->ndiscard), nd + 2); /* the empty descriptor is skipped */
  r = read10(&NA, 0, 64);
  for (int b = 0; b < 64; b++) {
    int gone = (b >= 8 && b < 16) || (b >= 40 && b < 56);
    assert_int_equal(r.data_in[b * BS + 7], gone ? 0 : 0xee);
  }
  /* a descriptor out of range: nothing is unmapped, not even the valid ones */
  nd = atomic_load(&mv->ndiscard);
  uint64_t lba2[2] = {0, NBLOCKS - 2};
  uint32_t n2[2] = {4, 3};
  r = unmap_list(lba2, n2, 2, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  assert_int_equal(atomic_load(&mv->ndiscard), nd);
  /* too many blocks in total (on a volume large enough for them) */
  struct memvol *big = mv_new(1ull << 40, 1 << 20);
  struct scsi_lu *saved = lu;
  lu = lu_make(&big->v, 0);
  uint64_t lba3[2] = {0, 1u << 24};
  uint32_t n3[2] = {0x80000, 0x80001};
  r = unmap_list(lba3, n3, 2, 0);
  EXPECT_FIELD(r, 0, 8 + 16 + 8, -1);
  n3[1] = 0x80000;
  r = unmap_list(lba3, n3, 2, 0);
  EXPECT_SENSE(r, 3, 0x0c, 0); /* allowed: the memory volume cannot discard that far */
  scsi_lu_free(lu);
  lu = saved;
  mv_free(big);
  /* too many descriptors */
  static uint64_t many_lba[2049];
  static uint32_t many_n[2049];
  for (int i = 0; i < 2049; i++) {
    many_lba[i] = (uint64_t)i;
    many_n[i] = 1;
  }
  r = unmap_list(many_lba, many_n, 2049, 0);
  EXPECT_FIELD(r, 0, 2, -1);
  nd = atomic_load(&mv->ndiscard);
  r = unmap_list(many_lba, many_n, 2048, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->ndiscard), nd + 2048);
  /* parameter list length 0: nothing, 1..7: too short */
  r = unmap_list(lba, n, 0, 0);
  EXPECT_GOOD(r);
  uint8_t c[10], small[7] = {0};
  cdb10(c, 0x42, 0, 0, 0);
  put16(c + 7, 0);
  r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  put16(c + 7, 7);
  r = run(c, 10, small, 7);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  /* a partial last descriptor is ignored */
  nd = atomic_load(&mv->ndiscard);
  uint64_t lbap[2] = {8, 40};
  uint32_t np[2] = {8, 16};
  r = unmap_list(lbap, np, 2, 8 + 16 + 8);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->ndiscard), nd + 1);
  /* ANCHOR */
  c[1] = 0x01;
  r = run(c, 10, small, 7);
  EXPECT_FIELD(r, 1, 1, 0);
}

/* ---- COMPARE AND WRITE ---------------------------------------------------------------- */

static void caw_cdb(uint8_t *c, uint64_t lba, uint8_t n, uint8_t b1) {
  cdb16(c, 0x89, b1, lba, 0);
  c[13] = n;
}

static void test_compare_and_write(void **state) {
  uint8_t old[2 * BS], buf[4 * BS], c[16];
  fill(old, sizeof old);
  struct scsi_cmd r = write10(&NA, 50, 2, old);
  memcpy(buf, old, 2 * BS);
  fill(buf + 2 * BS, 2 * BS);
  caw_cdb(c, 50, 2, 0);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), 4 * BS);
  r = run(c, 16, buf, sizeof buf);
  EXPECT_GOOD(r);
  r = read10(&NA, 50, 2);
  assert_memory_equal(r.data_in, buf + 2 * BS, 2 * BS);
  /* now the compare data is stale: MISCOMPARE at the first differing byte */
  int at = -1;
  for (int i = 0; i < (int)(2 * BS) && at < 0; i++)
    if (buf[i] != buf[2 * BS + i]) at = i;
  int nw = atomic_load(&mv->nwrite);
  r = run(c, 16, buf, sizeof buf);
  EXPECT_SENSE(r, 0xe, 0x1d, 0);
  assert_int_equal(get32(r.sense + 3), at);
  assert_int_equal(atomic_load(&mv->nwrite), nw);
  /* FUA flushes */
  memcpy(buf, buf + 2 * BS, 2 * BS);
  int nf = atomic_load(&mv->nflush);
  caw_cdb(c, 50, 2, 0x08);
  r = run(c, 16, buf, sizeof buf);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  /* the Data-Out must be exactly twice the blocks */
  caw_cdb(c, 50, 1, 0);
  r = run_on(lu, &NA, 0, c, 16, buf, 2 * BS, 4 * BS);
  EXPECT_FIELD(r, 1, 13, -1);
  caw_cdb(c, 50, 3, 0);
  r = run_on(lu, &NA, 0, c, 16, buf, 4 * BS, 4 * BS);
  EXPECT_FIELD(r, 1, 13, -1);
  caw_cdb(c, 50, 0, 0); /* nothing */
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  r = run(c, 16, buf, 4 * BS); /* nothing, but with data */
  EXPECT_FIELD(r, 1, 13, -1);
  caw_cdb(c, 50, 200, 0); /* above the block limits page's maximum */
  r = run(c, 16, NULL, 0);
  EXPECT_FIELD(r, 1, 13, -1);
  caw_cdb(c, NBLOCKS - 1, 2, 0);
  r = run(c, 16, buf, sizeof buf);
  EXPECT_SENSE(r, 5, 0x21, 0);
}

/* Threads increment a counter in block 0 with COMPARE AND WRITE (read,
 * CAW old -> old + 1, retry on MISCOMPARE) while others write elsewhere:
 * without the exclusive lock two CAWs could both succeed on the same old
 * value and increments would be lost. */
#define CAW_THREADS 4
#define CAW_INCREMENTS 300
static atomic_int caw_done;

static void *caw_thread(void *arg) {
  const struct scsi_nexus *n = arg;
  uint8_t c[16], buf[2 * BS];
  for (int i = 0; i < CAW_INCREMENTS;) {
    uint8_t rc[10];
    cdb10(rc, 0x28, 0, 0, 1);
    struct scsi_cmd r;
    memset(&r, 0, sizeof r);
    r.cdb = rc;
    r.cdb_len = 10;
    r.nexus = n;
    scsi_exec(lu, &r);
    if (r.status != SCSI_GOOD || r.data_in_len != BS) return (void *)1;
    memcpy(buf, r.data_in, BS);
    free(r.data_in);
    memcpy(buf + BS, buf, BS);
    uint64_t v;
    memcpy(&v, buf + BS, 8);
    v++;
    memcpy(buf + BS, &v, 8);
    caw_cdb(c, 0, 1, 0);
    struct scsi_cmd w;
    memset(&w, 0, sizeof w);
    w.cdb = c;
    w.cdb_len = 16;
    w.nexus = n;
    w.data_out = buf;
    w.data_out_len = w.exp_len = 2 * BS;
    scsi_exec(lu, &w);
    if (w.status == SCSI_GOOD) {
      i++;
      atomic_fetch_add(&caw_done, 1);
    } else if (w.status != SCSI_CHECK_CONDITION || (w.sense[2] & 0xf) != 0xe) {
      return (void *)1;
    }
  }
  return NULL;
}

static atomic_int writers_stop;
static void *writer_thread(void *arg) {
  uint8_t buf[8 * BS];
  memset(buf, 0x77, sizeof buf);
  uint8_t c[10];
  cdb10(c, 0x2a, 0, 1000, 8);
  while (!atomic_load(&writers_stop)) {
    struct scsi_cmd w;
    memset(&w, 0, sizeof w);
    w.cdb = c;
    w.cdb_len = 10;
    w.nexus = &NC;
    w.data_out = buf;
    w.data_out_len = w.exp_len = sizeof buf;
    scsi_exec(lu, &w);
    if (w.status != SCSI_GOOD) return (void *)1;
  }
  return NULL;
}

static void test_compare_and_write_atomic(void **state) {
  mv->yield = 1;
  atomic_store(&caw_done, 0);
  atomic_store(&writers_stop, 0);
  pthread_t th[CAW_THREADS], wr;
  assert_int_equal(pthread_create(&wr, NULL, writer_thread, NULL), 0);
  for (int i = 0; i < CAW_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, caw_thread, (void *)(i & 1 ? &NA : &NB)), 0);
  for (int i = 0; i < CAW_THREADS; i++) {
    void *ret;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  atomic_store(&writers_stop, 1);
  void *ret;
  pthread_join(wr, &ret);
  assert_null(ret);
  struct scsi_cmd r = read10(&NA, 0, 1);
  uint64_t v;
  memcpy(&v, r.data_in, 8);
  assert_int_equal(atomic_load(&caw_done), CAW_THREADS * CAW_INCREMENTS);
  assert_int_equal(v, CAW_THREADS * CAW_INCREMENTS);
}

/* ---- SYNCHRONIZE CACHE, PRE-FETCH ------------------------------------------------------ */

static void test_sync_cache_prefetch(void **state) {
  uint8_t c[16];
  int nf = atomic_load(&mv->nflush);
  cdb10(c, 0x35, 0, 0, 0);
  struct scsi_cmd r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  cdb16(c, 0x91, 0x02, 100, 10); /* IMMED */
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 2);
  cdb10(c, 0x35, 0, NBLOCKS - 1, 2);
  r = run(c, 10, NULL, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb16(c, 0x91, 0, NBLOCKS + 1, 0);
  r = run(c, 16, NULL, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
  cdb10(c, 0x34, 0, 0, 100);
  r = run(c, 10, NULL, 0);
  EXPECT_GOOD(r);
  cdb16(c, 0x90, 0x02, NBLOCKS - 1, 1);
  r = run(c, 16, NULL, 0);
  EXPECT_GOOD(r);
  cdb16(c, 0x90, 0, NBLOCKS - 1, 2);
  r = run(c, 16, NULL, 0);
  EXPECT_SENSE(r, 5, 0x21, 0);
}

/* ---- GET LBA STATUS ------------------------------------------------------------------- */

static struct scsi_cmd lba_status(struct scsi_lu *l, uint64_t lba, uint32_t alloc) {
  uint8_t c[16];
  cdb16(c, 0x9e, 0x12, lba, alloc);
  return run_on(l, &NA, 0, c, 16, NULL, 0, 0);
}

static void test_get_lba_status(void **state) {
  /* nothing written: one deallocated extent to the end */
  struct scsi_cmd r = lba_status(lu, 0, 24);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 24);
  assert_int_equal(get32(r.data_in), 20);
  assert_int_equal(get64(r.data_in + 8), 0);
  assert_int_equal(get32(r.data_in + 16), NBLOCKS);
  assert_int_equal(r.data_in[20] & 0x0f, 1);
  /* write 16 blocks at 64 and 3 at 200 (a partial cluster maps all of it) */
  uint8_t buf[16 * BS];
  memset(buf, 1, sizeof buf);
  write10(&NA, 64, 16, buf);
  write10(&NA, 201, 3, buf);
  r = lba_status(lu, 0, 1024);
  EXPECT_GOOD(r);
  uint32_t nd = (get32(r.data_in) - 4) / 16;
  assert_int_equal(nd, 5);
  const uint64_t want_lba[] = {0, 64, 80, 200, 208};
  const uint32_t want_n[] = {64, 16, 120, 8, NBLOCKS - 208};
  const int want_st[] = {1, 0, 1, 0, 1};
  for (uint32_t i = 0; i < nd; i++) {
    const uint8_t *d = r.data_in + 8 + 16 * i;
    assert_int_equal(get64(d), want_lba[i]);
    assert_int_equal(get32(d + 8), want_n[i]);
    assert_int_equal(d[12], want_st[i]);
  }
  /* starting inside a mapped extent; allocation length for two descriptors */
  r = lba_status(lu, 70, 8 + 32);
  assert_int_equal(get32(r.data_in), 4 + 32);
  assert_int_equal(get64(r.data_in + 8), 70);
  assert_int_equal(get32(r.data_in + 16), 10);
  assert_int_equal(r.data_in[20], 0);
  /* unmapping a cluster deallocates it, the next one stays mapped */
  uint64_t ul = 64;
  uint32_t un = 8;
  r = unmap_list(&ul, &un, 1, 0);
  r = lba_status(lu, 64, 24);
  assert_int_equal(r.data_in[20], 1);
  assert_int_equal(get32(r.data_in + 16), 8);
  r = lba_status(lu, 72, 24);
  assert_int_equal(r.data_in[20], 0);
  /* allocation length below one descriptor cuts the data */
  r = lba_status(lu, 0, 16);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 16);
  /* beyond the end */
  r = lba_status(lu, NBLOCKS, 24);
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = lba_status(lu, 0x8000000000000000ull, 24);
  EXPECT_SENSE(r, 5, 0x21, 0);
  r = lba_status(lu, NBLOCKS - 1, 24);
  EXPECT_GOOD(r);
  assert_int_equal(get32(r.data_in + 16), 1);
  mv->fail_status = 1;
  r = lba_status(lu, 0, 24);
  EXPECT_SENSE(r, 3, 0x11, 0);
  mv->fail_status = 0;
  /* an LU without the query does not offer the command */
  struct scsi_lu *l = lu_make(&mv->v, 0);
  r = lba_status(l, 0, 24);
  EXPECT_SENSE(r, 5, 0x20, 0);
  uint8_t c[12] = {0xa3, 0x0c, 0x02, 0x9e, 0x00, 0x12, 0, 0, 1, 0, 0, 0};
  r = run_on(l, &NA, 0, c, 12, NULL, 0, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[1] & 0x07, 1); /* not supported */
  r = run_on(lu, &NA, 0, c, 12, NULL, 0, 0);
  assert_int_equal(r.data_in[1] & 0x07, 3);
  scsi_lu_free(l);
}

/* ---- MODE SENSE / MODE SELECT -------------------------------------------------------- */

/* The page `code` in MODE SENSE data d (len bytes, header h, block descriptors bd). */
static const uint8_t *ms_page(const uint8_t *d, uint32_t len, uint32_t h, uint32_t bd,
                              uint8_t code) {
  for (uint32_t o = h + bd; o + 2 <= len; o += 2 + d[o + 1])
    if ((d[o] & 0x3f) == code) return d + o;
  return NULL;
}

static void test_mode_sense(void **state) {
  uint8_t c[10] = {0x1a, 0, 0x3f, 0, 255, 0};
  struct scsi_cmd r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  const uint8_t *d = r.data_in;
  assert_int_equal(d[0], r.data_in_len - 1);
  assert_int_equal(d[3], 8); /* one short block descriptor */
  assert_int_equal(get32(d + 4), NBLOCKS);
  assert_int_equal(get32(d + 8) & 0xffffff, BS);
  const uint8_t *cache = ms_page(d, r.data_in_len, 4, 8, 0x08);
  const uint8_t *ctl = ms_page(d, r.data_in_len, 4, 8, 0x0a);
  const uint8_t *iec = ms_page(d, r.data_in_len, 4, 8, 0x1c);
  assert_non_null(cache);
  assert_non_null(ctl);
  assert_non_null(iec);
  assert_int_equal(cache[1], 0x12);
  assert_int_equal(cache[2] & 0x04, 0x04); /* WCE */
  assert_int_equal(ctl[1], 0x0a);
  assert_int_equal(ctl[2] & 0x04, 0);       /* D_SENSE 0: fixed format sense */
  assert_int_equal(get16(ctl + 8), 0xffff); /* busy timeout: unlimited */
  assert_int_equal(iec[1], 0x0a);
  /* allocation length cuts, without complaint */
  c[4] = 4;
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 4);
  /* one page, DBD */
  uint8_t c2[6] = {0x1a, 0x08, 0x08, 0, 255, 0};
  r = run(c2, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[3], 0);
  assert_int_equal(r.data_in_len, 4 + 20);
  assert_int_equal(r.data_in[4], 0x08);
  /* changeable values: WCE and SWP only */
  c2[2] = 0x40 | 0x3f;
  r = run(c2, 6, NULL, 0);
  EXPECT_GOOD(r);
  cache = ms_page(r.data_in, r.data_in_len, 4, 0, 0x08);
  ctl = ms_page(r.data_in, r.data_in_len, 4, 0, 0x0a);
  iec = ms_page(r.data_in, r.data_in_len, 4, 0, 0x1c);
  assert_int_equal(cache[2], 0x04);
  assert_int_equal(ctl[4], 0x08);
  assert_int_equal(ctl[2] | ctl[3] | ctl[5], 0);
  for (int i = 2; i < 12; i++)
    assert_int_equal(iec[i], 0);
  /* default values; saved values are not supported */
  c2[2] = 0x80 | 0x08;
  r = run(c2, 6, NULL, 0);
  EXPECT_GOOD(r);
  c2[2] = 0xc0 | 0x08;
  r = run(c2, 6, NULL, 0);
  EXPECT_SENSE(r, 5, 0x39, 0);
  /* unknown page, subpages */
  c2[2] = 0x19;
  r = run(c2, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 2, 5);
  c2[2] = 0x3f;
  c2[3] = 0xff;
  r = run(c2, 6, NULL, 0);
  EXPECT_GOOD(r);
  c2[3] = 0x01;
  r = run(c2, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 3, -1);
  /* MODE SENSE(10) with a long block descriptor */
  uint8_t c3[10] = {0x5a, 0x10, 0x0a, 0, 0, 0, 0, 1, 0, 0};
  r = run(c3, 10, NULL, 0);
  EXPECT_GOOD(r);
  d = r.data_in;
  assert_int_equal(get16(d), r.data_in_len - 2);
  assert_int_equal(d[3] & 0x10, 0x10); /* DPOFUA */
  assert_int_equal(d[4] & 1, 1);       /* LONGLBA */
  assert_int_equal(get16(d + 6), 16);
  assert_int_equal(get64(d + 8), NBLOCKS);
  assert_int_equal(get32(d + 20), BS);
  assert_int_equal(d[24], 0x0a);
  c3[1] = 0x00; /* short descriptor */
  r = run(c3, 10, NULL, 0);
  assert_int_equal(get16(r.data_in + 6), 8);
}

static struct scsi_cmd mode_select6(const struct scsi_nexus *n, const uint8_t *list, uint8_t len) {
  uint8_t c[6] = {0x15, 0x10, 0, 0, len, 0};
  return run_n(n, c, 6, list, len);
}

static void test_mode_select(void **state) {
  /* WCE off through MODE SELECT(10) with a block descriptor */
  uint8_t l10[8 + 8 + 20] = {0, 0, 0, 0, 0, 0, 0, 8};
  put32(l10 + 8 + 4, BS);
  l10[16] = 0x08;
  l10[17] = 0x12;
  uint8_t c[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0, sizeof l10, 0};
  int nf = atomic_load(&mv->nflush);
  struct scsi_cmd r = run(c, 10, l10, sizeof l10);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1); /* the cache's content goes out now */
  uint8_t ms[6] = {0x1a, 0x08, 0x08, 0, 255, 0};
  r = run(ms, 6, NULL, 0);
  assert_int_equal(r.data_in[4 + 2] & 0x04, 0);
  /* every write is now flushed */
  uint8_t buf[BS] = {0};
  nf = atomic_load(&mv->nflush);
  write10(&NA, 0, 1, buf);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  /* the other nexuses hear of it, once; the issuer does not */
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x2a, 0x01);
  r = tur(&NB);
  EXPECT_GOOD(r);
  r = tur(&NC);
  EXPECT_SENSE(r, 6, 0x2a, 0x01);
  r = tur(&NA);
  EXPECT_GOOD(r);
  /* a non-changeable bit (RCD) */
  uint8_t cache[4 + 20] = {0, 0, 0, 0, 0x08, 0x12, 0x05};
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_FIELD(r, 0, 6, 0);
  /* the informational exceptions page is not changeable at all */
  uint8_t iec[4 + 12] = {0, 0, 0, 0, 0x1c, 0x0a, 0x08, 0x06};
  r = mode_select6(&NA, iec, sizeof iec);
  EXPECT_FIELD(r, 0, 7, 2);
  iec[7] = 0;
  r = mode_select6(&NA, iec, sizeof iec);
  EXPECT_GOOD(r);
  /* wrong page length, unknown page, subpage format */
  cache[6] = 0x04;
  cache[5] = 0x11;
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_FIELD(r, 0, 5, -1);
  cache[5] = 0x12;
  cache[4] = 0x19;
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_FIELD(r, 0, 4, 5);
  cache[4] = 0x48;
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_FIELD(r, 0, 4, 6);
  cache[4] = 0x08;
  /* a page cut short, a header cut short */
  r = mode_select6(&NA, cache, 4 + 10);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  r = mode_select6(&NA, cache, 3);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  r = mode_select6(&NA, cache, 4 + 1);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  /* a block descriptor with another block length */
  uint8_t bdl[4 + 8] = {0, 0, 0, 8};
  put32(bdl + 4 + 4, 4096);
  r = mode_select6(&NA, bdl, sizeof bdl);
  EXPECT_FIELD(r, 0, 9, -1);
  put32(bdl + 4 + 4, BS);
  r = mode_select6(&NA, bdl, sizeof bdl);
  EXPECT_GOOD(r);
  /* PF 0, SP 1 */
  uint8_t c6[6] = {0x15, 0x00, 0, 0, sizeof cache, 0};
  r = run(c6, 6, cache, sizeof cache);
  EXPECT_FIELD(r, 1, 1, 4);
  c6[1] = 0x11;
  r = run(c6, 6, cache, sizeof cache);
  EXPECT_FIELD(r, 1, 1, 0);
  /* an empty list changes nothing */
  c6[1] = 0x10;
  c6[4] = 0;
  r = run(c6, 6, NULL, 0);
  EXPECT_GOOD(r);
  /* WCE back on: no flush needed, and no UA for a value that did not change */
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_GOOD(r);
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x2a, 0x01);
  r = mode_select6(&NA, cache, sizeof cache);
  r = tur(&NB);
  EXPECT_GOOD(r);
}

/* ---- START STOP UNIT, PREVENT ALLOW, REQUEST SENSE -------------------------------------- */

static void test_start_stop_prevent(void **state) {
  uint8_t c[6] = {0x1b, 0, 0, 0, 0x01, 0};
  struct scsi_cmd r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  int nf = atomic_load(&mv->nflush);
  c[4] = 0x00; /* stop: the cache is written out */
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  c[4] = 0x04; /* NO_FLUSH */
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(atomic_load(&mv->nflush), nf + 1);
  c[4] = 0x02; /* eject: not a removable medium */
  r = run(c, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 4, 1);
  c[4] = 0x30; /* power condition STANDBY: accepted */
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  c[4] = 0x50; /* reserved power condition */
  r = run(c, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 4, 7);
  c[1] = 0x01;
  c[4] = 0x01; /* IMMED */
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  uint8_t p[6] = {0x1e, 0, 0, 0, 0x01, 0};
  r = run(p, 6, NULL, 0);
  EXPECT_GOOD(r);
  p[4] = 0;
  r = run(p, 6, NULL, 0);
  EXPECT_GOOD(r);
  p[4] = 0x04;
  r = run(p, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 4, 2);
}

static void test_request_sense(void **state) {
  uint8_t c[6] = {0x03, 0, 0, 0, 252, 0};
  struct scsi_cmd r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 18);
  assert_int_equal(r.data_in[0], 0x70);
  assert_int_equal(r.data_in[2] & 0x0f, 0);
  /* a pending unit attention is reported as data and cleared */
  scsi_lu_reset(lu, NB.id, 0);
  r = run(c, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[2] & 0x0f, 6);
  assert_int_equal(r.data_in[12], 0x29);
  assert_int_equal(r.data_in[13], 0x03);
  r = tur(&NA);
  EXPECT_GOOD(r);
  /* DESC: descriptor format is not supported */
  c[1] = 1;
  r = run(c, 6, NULL, 0);
  EXPECT_FIELD(r, 1, 1, 0);
  /* another LUN: LOGICAL UNIT NOT SUPPORTED, as data */
  c[1] = 0;
  r = run_on(lu, &NA, 2, c, 6, NULL, 0, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[12], 0x25);
  c[4] = 8;
  r = run(c, 6, NULL, 0);
  assert_int_equal(r.data_in_len, 8);
}

/* ---- REPORT SUPPORTED OPERATION CODES, REPORT TARGET PORT GROUPS ------------------------- */

static struct scsi_cmd rsoc(uint8_t opts, uint8_t op, uint16_t sa, uint32_t alloc) {
  uint8_t c[12] = {0xa3, 0x0c, opts, op, (uint8_t)(sa >> 8), (uint8_t)sa};
  put32(c + 6, alloc);
  return run(c, 12, NULL, 0);
}

static void test_report_opcodes(void **state) {
  struct scsi_cmd r = rsoc(0, 0, 0, 65535);
  EXPECT_GOOD(r);
  uint32_t len = get32(r.data_in);
  assert_int_equal(r.data_in_len, 4 + len);
  assert_int_equal(len % 8, 0);
  int found_read10 = 0, found_prout_clear = 0;
  for (uint32_t o = 4; o < 4 + len; o += 8) {
    const uint8_t *d = r.data_in + o;
    int servactv = d[5] & 1;
    if (!servactv) assert_int_equal(get16(d + 2), 0);
    if (d[0] == 0x28) found_read10 = 1, assert_int_equal(get16(d + 6), 10);
    if (d[0] == 0x5f && get16(d + 2) == 3) found_prout_clear = servactv;
    /* each one answers the one-command form its SERVACTV says */
    struct scsi_cmd one = rsoc(servactv ? 2 : 1, d[0], get16(d + 2), 512);
    EXPECT_GOOD(one);
    assert_int_equal(one.data_in[1] & 0x07, 3);
    assert_int_equal(get16(one.data_in + 2), get16(d + 6));
    assert_int_equal(one.data_in[4], d[0]);
    struct scsi_cmd wrong = rsoc(servactv ? 1 : 2, d[0], get16(d + 2), 512);
    EXPECT_FIELD(wrong, 1, 2, 2);
  }
  assert_true(found_read10 && found_prout_clear);
  /* READ(10) usage data: DPO and FUA are honoured, RDPROTECT is not */
  r = rsoc(1, 0x28, 0, 512);
  assert_int_equal(r.data_in[5] & 0x18, 0x18);
  assert_int_equal(r.data_in[5] & 0xe0, 0);
  /* the service action field of a service action command shows the action */
  r = rsoc(2, 0x9e, 0x10, 512);
  assert_int_equal(r.data_in[5], 0x10);
  /* timeouts descriptors with RCTD */
  r = rsoc(0x80, 0, 0, 65535);
  uint32_t len2 = get32(r.data_in);
  assert_int_equal(len2 / 20, len / 8);
  for (uint32_t o = 4; o < 4 + len2; o += 20) {
    assert_int_equal(r.data_in[o + 5] & 0x02, 0x02);
    assert_int_equal(get16(r.data_in + o + 8), 0x0a);
  }
  r = rsoc(0x81, 0x28, 0, 512);
  assert_int_equal(r.data_in[1] & 0x80, 0x80);
  assert_int_equal(r.data_in_len, 4 + 10 + 12);
  /* unsupported opcode; reporting option 3 (either); a reserved option */
  r = rsoc(1, 0x04, 0, 512);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[1] & 0x07, 1);
  r = rsoc(3, 0x28, 0, 512);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[1] & 0x07, 3);
  r = rsoc(5, 0x28, 0, 512);
  EXPECT_FIELD(r, 1, 2, 2);
  r = rsoc(0, 0, 0, 10); /* allocation length cuts */
  assert_int_equal(r.data_in_len, 10);
}

static void test_report_tpgs(void **state) {
  uint8_t c[12] = {0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  struct scsi_cmd r = run(c, 12, NULL, 0);
  EXPECT_GOOD(r);
  const uint8_t *d = r.data_in;
  assert_int_equal(get32(d), r.data_in_len - 4);
  assert_int_equal(d[4] & 0x0f, 0); /* active/optimized */
  assert_int_equal(d[5] & 0x01, 1);
  assert_int_equal(get16(d + 6), 1);
  assert_int_equal(d[11], 1);
  assert_int_equal(get16(d + 4 + 8 + 2), 1);
  c[1] = 0x2a; /* extended header */
  r = run(c, 12, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[4] & 0x70, 0x10);
  assert_int_equal(get16(r.data_in + 8 + 2), 1);
  c[1] = 0x4a;
  r = run(c, 12, NULL, 0);
  EXPECT_FIELD(r, 1, 1, 6);
}

/* ---- unit attentions and resets -------------------------------------------------------- */

static void test_unit_attention(void **state) {
  scsi_lu_reset(lu, NA.id, 0);
  struct scsi_cmd r = tur(&NA); /* the issuer hears of it too */
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  r = tur(&NA);
  EXPECT_GOOD(r);
  /* INQUIRY and REPORT LUNS neither report nor clear it */
  r = run_n(&NB, (uint8_t[]){0x12, 0, 0, 0, 36, 0}, 6, NULL, 0);
  EXPECT_GOOD(r);
  r = read10(&NB, 0, 1);
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  r = read10(&NB, 0, 1);
  EXPECT_GOOD(r);
  /* an unsupported command reports the attention first */
  scsi_lu_reset(lu, NA.id, 1); /* cold: power on */
  r = run_n(&NC, (uint8_t[]){0x04, 0, 0, 0, 0, 0}, 6, NULL, 0);
  EXPECT_SENSE(r, 6, 0x29, 0x01);
  r = run_n(&NC, (uint8_t[]){0x04, 0, 0, 0, 0, 0}, 6, NULL, 0);
  EXPECT_SENSE(r, 5, 0x20, 0);
  /* a command that reports the attention is not run */
  uint8_t cache[4 + 20] = {0, 0, 0, 0, 0x08, 0x12, 0x00};
  r = mode_select6(&NA, cache, sizeof cache);
  EXPECT_SENSE(r, 6, 0x29, 0x01);
  /* attentions queue in order, without duplicates */
  r = mode_select6(&NA, cache, sizeof cache); /* WCE off */
  EXPECT_GOOD(r);
  uint8_t ctl[4 + 12] = {0, 0, 0, 0, 0x0a, 0x0a, 0x02, 0x10, 0x08, 0, 0, 0, 0xff, 0xff};
  r = mode_select6(&NA, ctl, sizeof ctl); /* SWP on: a second MODE PARAMETERS CHANGED */
  EXPECT_GOOD(r);
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x29, 0x01); /* the power on, still pending, comes first */
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x2a, 0x01);
  r = tur(&NB);
  EXPECT_GOOD(r);
  /* a reset supersedes what is pending and puts the mode pages back */
  mode_select6(&NA, cache, sizeof cache);
  scsi_lu_reset(lu, NA.id, 0);
  r = tur(&NC);
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  r = tur(&NC);
  EXPECT_GOOD(r);
  r = tur(&NA);
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  uint8_t ms[6] = {0x1a, 0x08, 0x3f, 0, 255, 0};
  r = run_n(&NA, ms, 6, NULL, 0);
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in[2] & 0x80, 0);        /* SWP off */
  assert_int_equal(r.data_in[4 + 2] & 0x04, 0x04); /* WCE on (the Caching page is first) */
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  /* a nexus that goes away takes its attentions along; one that comes and
   * goes again is handled */
  scsi_lu_reset(lu, NA.id, 0);
  scsi_lu_nexus_remove(lu, NB.id);
  scsi_lu_nexus_remove(lu, NC.id);
  scsi_lu_nexus_remove(lu, 999);
  scsi_lu_nexus_add(lu, &NB);
  scsi_lu_nexus_add(lu, &NB); /* twice: one state */
  r = tur(&NB);
  EXPECT_GOOD(r);
  /* a command without nexus state still runs */
  r = tur(&NC);
  EXPECT_GOOD(r);
}

/* ---- SPC-2 RESERVE / RELEASE ------------------------------------------------------------- */

static struct scsi_cmd reserve6(const struct scsi_nexus *n) {
  uint8_t c[6] = {0x16};
  return run_n(n, c, 6, NULL, 0);
}
static struct scsi_cmd release6(const struct scsi_nexus *n) {
  uint8_t c[6] = {0x17};
  return run_n(n, c, 6, NULL, 0);
}

static void test_reserve6(void **state) {
  struct scsi_cmd r = reserve6(&NA);
  EXPECT_GOOD(r);
  r = reserve6(&NA);
  EXPECT_GOOD(r);
  r = reserve6(&NB);
  EXPECT_CONFLICT(r);
  r = release6(&NB); /* not the holder: GOOD, nothing happens */
  EXPECT_GOOD(r);
  uint8_t ms[6] = {0x1a, 0, 0x3f, 0, 255, 0};
  r = run_n(&NA, ms, 6, NULL, 0);
  EXPECT_GOOD(r);
  r = run_n(&NB, ms, 6, NULL, 0);
  EXPECT_CONFLICT(r);
  r = read10(&NB, 0, 1);
  EXPECT_CONFLICT(r);
  r = tur(&NB);
  EXPECT_CONFLICT(r);
  /* INQUIRY, REPORT LUNS, REQUEST SENSE are allowed */
  r = run_n(&NB, (uint8_t[]){0x12, 0, 0, 0, 36, 0}, 6, NULL, 0);
  EXPECT_GOOD(r);
  r = run_n(&NB, (uint8_t[]){0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0}, 12, NULL, 0);
  EXPECT_GOOD(r);
  r = run_n(&NB, (uint8_t[]){0x03, 0, 0, 0, 18, 0}, 6, NULL, 0);
  EXPECT_GOOD(r);
  /* so are persistent reservation commands? No: they conflict (SPC-3 5.6.3) */
  r = run_n(&NB, (uint8_t[]){0x5e, 0, 0, 0, 0, 0, 0, 1, 0, 0}, 10, NULL, 0);
  EXPECT_CONFLICT(r);
  r = release6(&NA);
  EXPECT_GOOD(r);
  r = reserve6(&NB);
  EXPECT_GOOD(r);
  /* the holder's nexus goes away: released */
  scsi_lu_nexus_remove(lu, NB.id);
  r = read10(&NA, 0, 1);
  EXPECT_GOOD(r);
  scsi_lu_nexus_add(lu, &NB);
  /* RESERVE(10) / RELEASE(10), and a LUN reset releases */
  uint8_t res10[10] = {0x56}, rel10[10] = {0x57};
  r = run_n(&NC, res10, 10, NULL, 0);
  EXPECT_GOOD(r);
  r = run_n(&NA, res10, 10, NULL, 0);
  EXPECT_CONFLICT(r);
  r = run_n(&NC, rel10, 10, NULL, 0);
  EXPECT_GOOD(r);
  r = run_n(&NA, res10, 10, NULL, 0);
  EXPECT_GOOD(r);
  scsi_lu_reset(lu, NB.id, 0);
  r = tur(&NC);
  EXPECT_SENSE(r, 6, 0x29, 0x03);
  r = read10(&NC, 0, 1);
  EXPECT_GOOD(r);
  /* third-party reservations are not supported */
  res10[1] = 0x10;
  r = run_n(&NC, res10, 10, NULL, 0);
  EXPECT_FIELD(r, 1, 1, 4);
}

/* ---- persistent reservations ------------------------------------------------------------ */

static struct scsi_cmd prout(const struct scsi_nexus *n, uint8_t sa, uint8_t type, uint64_t rk,
                             uint64_t sark, uint8_t flags) {
  uint8_t c[10] = {0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0};
  uint8_t p[24] = {0};
  put64(p, rk);
  put64(p + 8, sark);
  p[20] = flags;
  return run_n(n, c, 10, p, 24);
}
static struct scsi_cmd prin(const struct scsi_nexus *n, uint8_t sa, uint16_t alloc) {
  uint8_t c[10] = {0x5e, sa, 0, 0, 0, 0, 0, (uint8_t)(alloc >> 8), (uint8_t)alloc, 0};
  return run_n(n, c, 10, NULL, 0);
}

static void check_keys(const uint64_t *keys, int n) {
  struct scsi_cmd r = prin(&ND, 0, 4096);
  EXPECT_GOOD(r);
  assert_int_equal(get32(r.data_in + 4), 8 * n);
  for (int i = 0; i < n; i++) {
    int found = 0;
    for (int j = 0; j < n; j++)
      found |= get64(r.data_in + 8 + 8 * j) == keys[i];
    assert_true(found);
  }
}
static uint32_t generation(void) {
  struct scsi_cmd r = prin(&ND, 0, 8);
  EXPECT_GOOD(r);
  return get32(r.data_in);
}
static void check_reservation(uint64_t key, uint8_t type) {
  struct scsi_cmd r = prin(&ND, 1, 64);
  EXPECT_GOOD(r);
  if (!type) {
    assert_int_equal(get32(r.data_in + 4), 0);
    return;
  }
  assert_int_equal(get32(r.data_in + 4), 16);
  assert_int_equal(get64(r.data_in + 8), key);
  assert_int_equal(r.data_in[8 + 13], type);
}

static void test_pr_register(void **state) {
  uint32_t g0 = generation();
  struct scsi_cmd r = prout(&NA, 0, 0, 0, 0xa1, 0);
  EXPECT_GOOD(r);
  assert_int_equal(generation(), g0 + 1);
  check_keys((uint64_t[]){0xa1}, 1);
  /* re-registering needs the current key */
  r = prout(&NA, 0, 0, 0, 0xa2, 0);
  EXPECT_CONFLICT(r);
  r = prout(&NA, 0, 0, 0xa1, 0xa2, 0);
  EXPECT_GOOD(r);
  check_keys((uint64_t[]){0xa2}, 1);
  /* REGISTER AND IGNORE EXISTING KEY does not */
  r = prout(&NA, 6, 0, 0x1234, 0xa3, 0);
  EXPECT_GOOD(r);
  r = prout(&NB, 6, 0, 0, 0xb1, 0);
  EXPECT_GOOD(r);
  check_keys((uint64_t[]){0xa3, 0xb1}, 2);
  assert_int_equal(generation(), g0 + 4);
  /* registering key 0 while unregistered: nothing, no new generation */
  r = prout(&NC, 0, 0, 0, 0, 0);
  EXPECT_GOOD(r);
  assert_int_equal(generation(), g0 + 4);
  /* an unregistered nexus with a non-zero key */
  r = prout(&NC, 0, 0, 5, 6, 0);
  EXPECT_CONFLICT(r);
  /* unregister */
  r = prout(&NA, 0, 0, 0xa3, 0, 0);
  EXPECT_GOOD(r);
  check_keys((uint64_t[]){0xb1}, 1);
  /* APTPL, ALL_TG_PT, SPEC_I_PT, other parameter list lengths */
  r = prout(&NA, 0, 0, 0, 0xa1, 0x01);
  EXPECT_FIELD(r, 0, 20, 0);
  r = prout(&NA, 0, 0, 0, 0xa1, 0x04);
  EXPECT_FIELD(r, 0, 20, 2);
  r = prout(&NA, 0, 0, 0, 0xa1, 0x08);
  EXPECT_FIELD(r, 0, 20, 3);
  uint8_t c[10] = {0x5f, 0, 0, 0, 0, 0, 0, 0, 28, 0}, p[28] = {0};
  r = run(c, 10, p, 28);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  c[8] = 24;
  r = run(c, 10, p, 20);
  EXPECT_SENSE(r, 5, 0x1a, 0);
  /* REGISTER AND MOVE and unknown service actions */
  c[1] = 7;
  r = run(c, 10, p, 24);
  EXPECT_FIELD(r, 1, 1, 4);
  /* an unregistered nexus may not reserve, release, clear or preempt */
  for (uint8_t sa = 1; sa <= 5; sa++) {
    r = prout(&NC, sa, 1, 0, 0xb1, 0);
    EXPECT_CONFLICT(r);
  }
  /* nor may a registered one quoting another key */
  r = prout(&NB, 1, 1, 0xbad, 0, 0);
  EXPECT_CONFLICT(r);
  /* the registration survives the session and comes back with the port */
  scsi_lu_nexus_remove(lu, NB.id);
  struct scsi_nexus nb2 = NB;
  nb2.id = 42;
  scsi_lu_nexus_add(lu, &nb2);
  r = prout(&nb2, 1, 1, 0xb1, 0, 0);
  EXPECT_GOOD(r);
  check_reservation(0xb1, 1);
  /* PR IN service actions beyond READ FULL STATUS */
  for (uint8_t sa = 4; sa < 0x20; sa++) {
    r = prin(&NA, sa, 64);
    EXPECT_FIELD(r, 1, 1, 4);
  }
  /* too many registrations */
  for (int i = 0; i < 70; i++) {
    char port[64];
    snprintf(port, sizeof port, "iqn.x:%d,i,0x%012d", i, i);
    struct scsi_nexus n = {100 + (uint64_t)i, "iqn.x", port};
    scsi_lu_nexus_add(lu, &n);
    r = prout(&n, 6, 0, 0, 1000 + (uint64_t)i, 0);
    if (i < 63)
      EXPECT_GOOD(r);
    else
      EXPECT_SENSE(r, 5, 0x55, 0x04);
  }
}

static void test_pr_in(void **state) {
  struct scsi_cmd r = prin(&NA, 2, 64); /* REPORT CAPABILITIES */
  EXPECT_GOOD(r);
  assert_int_equal(r.data_in_len, 8);
  assert_int_equal(get16(r.data_in), 8);
  assert_int_equal(r.data_in[2] & 0x10, 0x10); /* CRH */
  assert_int_equal(r.data_in[2] & 0x01, 0);    /* PTPL_C: no persistence */
  assert_int_equal(r.data_in[3] & 0x80, 0x80); /* TMV */
  assert_int_equal(r.data_in[4], 0xea);
  assert_int_equal(r.data_in[5], 0x01);
  prout(&NA, 6, 0, 0, 0x11, 0);
  prout(&NB, 6, 0, 0, 0x22, 0);
  r = prout(&NA, 1, 5, 0x11, 0, 0);
  EXPECT_GOOD(r);
  /* READ FULL STATUS: each registrant with its TransportID */
  r = prin(&NC, 3, 4096);
  EXPECT_GOOD(r);
  uint32_t len = get32(r.data_in + 4);
  assert_int_equal(r.data_in_len, 8 + len);
  int seen = 0;
  for (uint32_t o = 8; o < 8 + len;) {
    const uint8_t *d = r.data_in + o;
    uint64_t key = get64(d);
    uint32_t tl = get32(d + 20);
    const char *want = key == 0x11 ? NA.port_name : NB.port_name;
    assert_int_equal(d[24], 0x45); /* format 01b, iSCSI */
    assert_int_equal(get16(d + 26) % 4, 0);
    assert_string_equal((const char *)d + 28, want);
    assert_int_equal(get16(d + 18), 1); /* relative target port */
    if (key == 0x11) {
      assert_int_equal(d[12] & 1, 1);
      assert_int_equal(d[13], 5);
    } else {
      assert_int_equal(d[12] & 1, 0);
    }
    seen++;
    o += 24 + tl;
  }
  assert_int_equal(seen, 2);
  /* the allocation length cuts; the lengths still say how much there is */
  r = prin(&NA, 0, 12);
  assert_int_equal(r.data_in_len, 12);
  assert_int_equal(get32(r.data_in + 4), 16);
}

/* Who may read and write under each type: A holds (or, for all-registrants,
 * registered), B is registered, C is not. */
static void test_pr_access(void **state) {
  static const struct {
    uint8_t type;
    int b_read, b_write, c_read, c_write;
  } m[] = {
      {1, 1, 0, 1, 0}, {3, 0, 0, 0, 0}, {5, 1, 1, 1, 0},
      {6, 1, 1, 0, 0}, {7, 1, 1, 1, 0}, {8, 1, 1, 0, 0},
  };
  uint8_t buf[BS] = {0};
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    struct scsi_cmd r = prout(&NA, 6, 0, 0, 0xaa, 0);
    EXPECT_GOOD(r);
    r = prout(&NB, 6, 0, 0, 0xbb, 0);
    EXPECT_GOOD(r);
    r = prout(&NA, 1, m[i].type, 0xaa, 0, 0);
    EXPECT_GOOD(r);
    check_reservation(m[i].type >= 7 ? 0 : 0xaa, m[i].type);
    r = read10(&NA, 1, 1);
    EXPECT_GOOD(r);
    r = write10(&NA, 1, 1, buf);
    EXPECT_GOOD(r);
    const struct scsi_nexus *ns[2] = {&NB, &NC};
    for (int k = 0; k < 2; k++) {
      int can_read = k ? m[i].c_read : m[i].b_read, can_write = k ? m[i].c_write : m[i].b_write;
      r = read10(ns[k], 1, 1);
      if (can_read)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
      r = write10(ns[k], 1, 1, buf);
      if (can_write)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
      /* SYNCHRONIZE CACHE is a write, MODE SENSE a read */
      uint8_t sc[10] = {0x35};
      r = run_n(ns[k], sc, 10, NULL, 0);
      if (can_write)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
      uint8_t ms[6] = {0x1a, 0, 0x3f, 0, 255, 0};
      r = run_n(ns[k], ms, 6, NULL, 0);
      if (can_read)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
      /* always allowed: INQUIRY, TUR, READ CAPACITY, PR IN, REPORT LUNS */
      r = tur(ns[k]);
      EXPECT_GOOD(r);
      r = run_n(ns[k], (uint8_t[]){0x12, 0, 0, 0, 36, 0}, 6, NULL, 0);
      EXPECT_GOOD(r);
      r = run_n(ns[k], (uint8_t[]){0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 10, NULL, 0);
      EXPECT_GOOD(r);
      r = prin(ns[k], 0, 64);
      EXPECT_GOOD(r);
      /* RESERVE(6) under a persistent reservation: registrants of the
       * registrants types get GOOD without effect, others conflict */
      r = reserve6(ns[k]);
      if (k == 0 && m[i].type >= 5)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
      /* another RESERVE conflicts unless it is the holder repeating itself */
      r = prout(ns[k], 1, m[i].type, k ? 0 : 0xbb, 0, 0);
      if (k == 0 && m[i].type >= 7)
        EXPECT_GOOD(r);
      else
        EXPECT_CONFLICT(r);
    }
    r = reserve6(&NA); /* the holder: GOOD, nothing changes */
    EXPECT_GOOD(r);
    check_reservation(m[i].type >= 7 ? 0 : 0xaa, m[i].type);
    /* the holder changing the type is a conflict */
    r = prout(&NA, 1, m[i].type == 1 ? 3 : 1, 0xaa, 0, 0);
    EXPECT_CONFLICT(r);
    /* clean up: CLEAR from A */
    r = prout(&NA, 3, 0, 0xaa, 0, 0);
    EXPECT_GOOD(r);
    check_keys(NULL, 0);
    check_reservation(0, 0);
    tur(&NB); /* reservations preempted */
    r = tur(&NB);
    EXPECT_GOOD(r);
    r = write10(&NC, 1, 1, buf);
    EXPECT_GOOD(r);
  }
  /* a bad type or scope */
  prout(&NA, 6, 0, 0, 0xaa, 0);
  struct scsi_cmd r = prout(&NA, 1, 2, 0xaa, 0, 0);
  EXPECT_FIELD(r, 1, 2, 3);
  r = prout(&NA, 1, 0x11, 0xaa, 0, 0);
  EXPECT_FIELD(r, 1, 2, 7);
}

/* The holder unregisters (libiscsi's ProutReserve.Ownership*): the
 * reservation goes, and only the registrants types tell the others. */
static void test_pr_ownership(void **state) {
  for (uint8_t type = 1; type <= 8; type++) {
    if (type == 2 || type == 4) continue;
    struct scsi_cmd r;
    prout(&NA, 6, 0, 0, 0xaa, 0);
    prout(&NB, 6, 0, 0, 0xbb, 0);
    r = prout(&NA, 1, type, 0xaa, 0, 0);
    EXPECT_GOOD(r);
    r = prout(&NA, 0, 0, 0xaa, 0, 0); /* unregister */
    EXPECT_GOOD(r);
    if (type >= 7) { /* all registrants: B still holds it */
      check_reservation(0, type);
      r = prin(&NA, 1, 64); /* A is not told anything */
      EXPECT_GOOD(r);
      r = tur(&NB);
      EXPECT_GOOD(r);
      r = prout(&NB, 2, type, 0xbb, 0, 0); /* release */
      EXPECT_GOOD(r);
      check_reservation(0, 0);
    } else {
      check_reservation(0, 0);
      r = prin(&NA, 1, 64); /* the unregistered ex-holder hears nothing */
      EXPECT_GOOD(r);
      r = tur(&NB);
      if (type == 5 || type == 6)
        EXPECT_SENSE(r, 6, 0x2a, 0x04);
      else
        EXPECT_GOOD(r);
    }
    r = tur(&NB);
    EXPECT_GOOD(r);
    r = prout(&NB, 0, 0, 0xbb, 0, 0);
    EXPECT_GOOD(r);
    check_keys(NULL, 0);
  }
  /* the last registrant of an all-registrants reservation leaving ends it */
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NA, 1, 8, 0xaa, 0, 0);
  prout(&NA, 0, 0, 0xaa, 0, 0);
  check_reservation(0, 0);
  struct scsi_cmd r = read10(&NC, 0, 1);
  EXPECT_GOOD(r);
}

static void test_pr_release(void **state) {
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NB, 6, 0, 0, 0xbb, 0);
  struct scsi_cmd r = prout(&NA, 2, 1, 0xaa, 0, 0); /* nothing reserved: GOOD */
  EXPECT_GOOD(r);
  prout(&NA, 1, 6, 0xaa, 0, 0);
  uint32_t g = generation();
  r = prout(&NB, 2, 6, 0xbb, 0, 0); /* not the holder: GOOD, nothing */
  EXPECT_GOOD(r);
  check_reservation(0xaa, 6);
  r = prout(&NA, 2, 5, 0xaa, 0, 0); /* the wrong type */
  EXPECT_SENSE(r, 5, 0x26, 0x04);
  r = prout(&NA, 2, 6, 0xaa, 0, 0);
  EXPECT_GOOD(r);
  check_reservation(0, 0);
  assert_int_equal(generation(), g); /* RESERVE/RELEASE do not count */
  r = tur(&NB);                      /* registrants only: B is told */
  EXPECT_SENSE(r, 6, 0x2a, 0x04);
  r = tur(&NA);
  EXPECT_GOOD(r);
  /* Write Exclusive: nobody is told */
  prout(&NA, 1, 1, 0xaa, 0, 0);
  prout(&NA, 2, 1, 0xaa, 0, 0);
  r = tur(&NB);
  EXPECT_GOOD(r);
}

static void test_pr_preempt_clear(void **state) {
  struct scsi_cmd r;
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NB, 6, 0, 0, 0xbb, 0);
  prout(&NC, 6, 0, 0, 0xcc, 0);
  /* no reservation: PREEMPT removes the registrations with the key */
  uint32_t g = generation();
  r = prout(&NB, 4, 3, 0xbb, 0xaa, 0);
  EXPECT_GOOD(r);
  assert_int_equal(generation(), g + 1);
  check_keys((uint64_t[]){0xbb, 0xcc}, 2);
  check_reservation(0, 0);
  r = tur(&NA);
  EXPECT_SENSE(r, 6, 0x2a, 0x05);
  r = tur(&NC);
  EXPECT_GOOD(r);
  r = prout(&NB, 4, 3, 0xbb, 0, 0); /* key 0 without a reservation */
  EXPECT_FIELD(r, 0, 8, -1);
  r = prout(&NB, 4, 3, 0xbb, 0x999, 0); /* nobody has that key */
  EXPECT_CONFLICT(r);
  /* preempting the holder: C takes over with a new type, A heard */
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NB, 1, 1, 0xbb, 0, 0);
  r = prout(&NC, 5, 3, 0xcc, 0xbb, 0); /* PREEMPT AND ABORT */
  EXPECT_GOOD(r);
  check_reservation(0xcc, 3);
  check_keys((uint64_t[]){0xaa, 0xcc}, 2);
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x2a, 0x05);
  r = tur(&NA); /* still registered, the type changed: released */
  EXPECT_SENSE(r, 6, 0x2a, 0x04);
  r = read10(&NB, 0, 1); /* Exclusive Access now */
  EXPECT_CONFLICT(r);
  /* preempting a non-holder leaves the reservation */
  r = prout(&NC, 4, 3, 0xcc, 0xaa, 0);
  EXPECT_GOOD(r);
  check_reservation(0xcc, 3);
  check_keys((uint64_t[]){0xcc}, 1);
  r = prout(&NC, 4, 3, 0xcc, 0, 0);
  EXPECT_FIELD(r, 0, 8, -1);
  /* the holder preempting itself changes the type */
  r = prout(&NC, 4, 1, 0xcc, 0xcc, 0);
  EXPECT_GOOD(r);
  check_reservation(0xcc, 1);
  check_keys((uint64_t[]){0xcc}, 1);
  /* all registrants: key 0 removes everyone else */
  r = tur(&NA);
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NB, 6, 0, 0, 0xbb, 0);
  prout(&NC, 0, 0, 0xcc, 0, 0);
  check_reservation(0, 0);
  prout(&NA, 1, 7, 0xaa, 0, 0);
  prout(&NC, 6, 0, 0, 0xcc, 0);
  r = prout(&NB, 4, 3, 0xbb, 0xcc, 0); /* a key: that registrant goes, reservation stays */
  EXPECT_GOOD(r);
  check_reservation(0, 7);
  check_keys((uint64_t[]){0xaa, 0xbb}, 2);
  r = tur(&NC);
  EXPECT_SENSE(r, 6, 0x2a, 0x05);
  r = prout(&NB, 4, 1, 0xbb, 0, 0);
  EXPECT_GOOD(r);
  check_reservation(0xbb, 1);
  check_keys((uint64_t[]){0xbb}, 1);
  r = tur(&NA);
  EXPECT_SENSE(r, 6, 0x2a, 0x05);
  /* CLEAR: everything goes, the other registrants are told */
  prout(&NA, 6, 0, 0, 0xaa, 0);
  prout(&NC, 6, 0, 0, 0xcc, 0);
  g = generation();
  r = prout(&NC, 3, 0, 0xcc, 0, 0);
  EXPECT_GOOD(r);
  assert_int_equal(generation(), g + 1);
  check_keys(NULL, 0);
  check_reservation(0, 0);
  r = tur(&NA);
  EXPECT_SENSE(r, 6, 0x2a, 0x03);
  r = tur(&NB);
  EXPECT_SENSE(r, 6, 0x2a, 0x03);
  r = tur(&NC);
  EXPECT_GOOD(r);
  /* an SPC-2 reservation keeps persistent reservation commands away */
  r = reserve6(&NA);
  EXPECT_GOOD(r);
  r = prout(&NB, 6, 0, 0, 0xbb, 0);
  EXPECT_CONFLICT(r);
  r = prout(&NA, 6, 0, 0, 0xaa, 0);
  EXPECT_GOOD(r);
  release6(&NA);
  /* registrations alone do not stop RESERVE(6) */
  r = reserve6(&NB);
  EXPECT_GOOD(r);
  release6(&NB);
}

/* ---- Data-Out lengths ---------------------------------------------------------------- */

static void test_data_out_len(void **state) {
  uint8_t c[16];
  cdb6(c, 0x0a, 0, 0);
  assert_int_equal(scsi_cdb_data_out_len(c, 6), 256 * BS);
  cdb6(c, 0x0a, 0, 3);
  assert_int_equal(scsi_cdb_data_out_len(c, 6), 3 * BS);
  cdb10(c, 0x2a, 0, 0, 9);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 9 * BS);
  cdb12(c, 0xaa, 0, 0, 70000);
  assert_int_equal(scsi_cdb_data_out_len(c, 12), 70000ll * BS);
  cdb16(c, 0x8a, 0, 0, 0xffffffffu);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), 0xffffffffll * BS);
  cdb16(c, 0x8e, 0, 0, 2);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), 2 * BS);
  cdb10(c, 0x2f, 0x00, 0, 4);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 0);
  cdb10(c, 0x2f, 0x02, 0, 4);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 4 * BS);
  cdb12(c, 0xaf, 0x06, 0, 4);
  assert_int_equal(scsi_cdb_data_out_len(c, 12), BS);
  cdb16(c, 0x93, 0x01, 0, 4);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), 0);
  cdb16(c, 0x93, 0x08, 0, 4);
  assert_int_equal(scsi_cdb_data_out_len(c, 16), BS);
  cdb10(c, 0x42, 0, 0, 40);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 40);
  cdb10(c, 0x55, 0x10, 0, 28);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 28);
  uint8_t ms6[6] = {0x15, 0x10, 0, 0, 24, 0};
  assert_int_equal(scsi_cdb_data_out_len(ms6, 6), 24);
  uint8_t pro[10] = {0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  assert_int_equal(scsi_cdb_data_out_len(pro, 10), 24);
  cdb10(c, 0x28, 0, 0, 8);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), 0);
  c[0] = 0x04;
  assert_int_equal(scsi_cdb_data_out_len(c, 6), -1);
  cdb16(c, 0x8a, 0, 0, 1);
  assert_int_equal(scsi_cdb_data_out_len(c, 10), -1); /* cut short */
  assert_int_equal(scsi_cdb_data_out_len(c, 0), -1);
}

/* ---- over a real OS volume and its snapshot ----------------------------------------------- */

static void test_os_volume(void **state) {
  char dir[] = "/tmp/streamer-test-scsi-XXXXXX";
  assert_non_null(mkdtemp(dir));
  struct err e;
  err_init(&e);
  struct vol_store *vs;
  assert_int_equal(vol_store_open(&vs, dir, &e), 0);
  if (vol_os_create(vs, "os1", NULL, 8 << 20, &e) < 0) fail_msg("create: %s", e.message);
  struct vol *v;
  if (vol_os_open(vs, "os1", &v, &e) < 0) fail_msg("open: %s", e.message);
  struct scsi_lu *l = lu_make(v, 0);
  uint8_t c[16], buf[64 * BS];
  fill(buf, sizeof buf);
  cdb10(c, 0x2a, 0x08, 10, 64);
  struct scsi_cmd r = run_on(l, &NA, 0, c, 10, buf, sizeof buf, sizeof buf);
  EXPECT_GOOD(r);
  cdb10(c, 0x28, 0, 10, 64);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  assert_memory_equal(r.data_in, buf, sizeof buf);
  /* a snapshot: read-only, the old content, write protected */
  struct vol *snap;
  assert_int_equal(vol_os_snapshot(v, &snap, &e), 0);
  struct scsi_lu *sl = lu_make(snap, 0);
  uint8_t list[24] = {0, 22, 0, 16};
  put64(list + 8, 16);
  put32(list + 16, 16);
  cdb10(c, 0x42, 0, 0, 0);
  put16(c + 7, 24);
  r = run_on(l, &NA, 0, c, 10, list, 24, 24);
  EXPECT_GOOD(r);
  cdb10(c, 0x28, 0, 16, 16);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  for (size_t i = 0; i < 16 * BS; i++)
    if (r.data_in[i]) fail_msg("byte %zu not zero after UNMAP", i);
  r = run_on(sl, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  assert_memory_equal(r.data_in, buf + 6 * BS, 16 * BS);
  check_all_writes_refused(sl, 0x00);
  /* WRITE SAME of a pattern, COMPARE AND WRITE */
  uint8_t pat[BS];
  memset(pat, 0x3c, BS);
  cdb16(c, 0x93, 0, 1000, 100);
  r = run_on(l, &NA, 0, c, 16, pat, BS, BS);
  EXPECT_GOOD(r);
  uint8_t caw[2 * BS];
  memcpy(caw, pat, BS);
  memset(caw + BS, 0xc3, BS);
  caw_cdb(c, 1050, 1, 0);
  r = run_on(l, &NA, 0, c, 16, caw, 2 * BS, 2 * BS);
  EXPECT_GOOD(r);
  cdb10(c, 0x28, 0, 1049, 3);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  assert_memory_equal(r.data_in, pat, BS);
  assert_memory_equal(r.data_in + BS, caw + BS, BS);
  assert_memory_equal(r.data_in + 2 * BS, pat, BS);
  cdb10(c, 0x35, 0, 0, 0);
  r = run_on(l, &NA, 0, c, 10, NULL, 0, 0);
  EXPECT_GOOD(r);
  scsi_lu_free(sl);
  vol_close(snap);
  scsi_lu_free(l);
  vol_close(v);
  vol_store_close(vs);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_inquiry_standard),
      T(test_inquiry_vpd),
      T(test_naa_hashed),
      T(test_report_luns_tur),
      T(test_invalid_opcode_and_reserved_bits),
      T(test_read_capacity),
      T(test_read_write),
      T(test_out_of_range),
      T(test_write_short_data),
      T(test_medium_errors),
      T(test_stats),
      T(test_nowait_read),
      T(test_write_protect),
      T(test_verify),
      T(test_write_and_verify),
      T(test_orwrite),
      T(test_write_same),
      T(test_unmap),
      T(test_compare_and_write),
      T(test_compare_and_write_atomic),
      T(test_sync_cache_prefetch),
      T(test_get_lba_status),
      T(test_mode_sense),
      T(test_mode_select),
      T(test_start_stop_prevent),
      T(test_request_sense),
      T(test_report_opcodes),
      T(test_report_tpgs),
      T(test_unit_attention),
      T(test_reserve6),
      T(test_pr_register),
      T(test_pr_in),
      T(test_pr_access),
      T(test_pr_ownership),
      T(test_pr_release),
      T(test_pr_preempt_clear),
      T(test_data_out_len),
      T(test_os_volume),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
