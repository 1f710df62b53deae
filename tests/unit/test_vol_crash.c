/* test_vol_crash.c — crash consistency of OS volumes, by fault injection.
 *
 * Each round forks a child that opens one clone and runs three threads of
 * random writes and discards (any offset and length, overlapping, some
 * sector-aligned) with random flushes, logging in shared memory when each
 * operation began and completed (one global sequence counter) and when each
 * flush began and completed. The parent SIGKILLs the child at a random
 * instant, then either
 *   - keeps the files as the kernel has them (a process crash), or
 *   - replays a power loss: the child's I/O hook journaled every write, hole
 *     punch and fdatasync it made to the volume's data and meta files; the
 *     parent rebuilds both files from their state at the start of the round:
 *     everything before each file's last completed fdatasync is applied, and
 *     each 512-byte sector after it independently takes a random version
 *     (its synced one, or the one after any later write to it),
 * and reopens the volume (no repair step exists: open must just work) and
 * checks every byte the round could have touched:
 *   - a byte holds the value of an operation that covered it (the write's
 *     pattern, or zero for a discard) or the byte from before the round;
 *   - it never holds a value superseded by a durable operation: one that
 *     completed before a completed flush began. So flushed data is present,
 *     and nothing reads back that was not written to that volume or its
 *     golden volume (golden bytes or zeros past its end).
 * The next round starts from the volume as the check found it, so recovery
 * from one crash is crashed again. Fixed seed; the kill instant comes from
 * the same seed but the scheduler adds its own randomness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vol/vol.h"
#include "vol/vol_int.h"

#define ROUNDS 200
#define GENERATION 3 /* rounds per clone */
#define SECTOR 512u
#define MiB (1ull << 20)
#define GOLDEN_SIZE (200 * MiB + 7)
#define VOL_SIZE (300 * MiB + 4097)
#define ZONE 512u * 1024u
#define NZONES 4
#define ZONE_SECTORS (ZONE / SECTOR)
#define MAX_OPS 250
#define MAX_FLUSHES 200
#define THREADS 3
#define MAX_JOURNAL 8192
#define JOURNAL_BYTES (48 * MiB)
#define META_SIZE (4096 + 12288) /* header + bitmap of a 300 MiB volume */

/* The regions operations touch: the start, both sides of the first bitmap
 * page boundary (cluster 32768 = 128 MiB), both sides of the golden
 * volume's end, and the volume's (unaligned) end. Cluster-aligned, so no
 * copy-on-write fill crosses a zone's edge. */
static const uint64_t zone_start[NZONES] = {0, 128 * MiB - ZONE / 2, 200 * MiB - ZONE / 2,
                                            300 * MiB - ZONE / 2};
static uint64_t zone_len(int z) { return z == NZONES - 1 ? VOL_SIZE - zone_start[z] : ZONE; }
#define ZONE_BYTES_MAX (ZONE + 4097)

/* ---- shared memory between parent and child -------------------------- */
enum { OP_WRITE = 1, OP_DISCARD = 2 };
struct op {
  int type;
  uint32_t tag;
  uint64_t off, len;
  uint64_t begin; /* sequence number when issued; 0 = not issued */
  uint64_t done;  /* sequence number when it returned 0; 0 = not completed */
  int failed;
};
struct flush_rec {
  uint64_t begin, done;
};
struct jentry {
  int kind, file, valid;
  uint64_t off, len, data_off;
};
struct shared {
  uint64_t seq;
  uint32_t nops, nflushes, njournal, npreallocs;
  uint64_t journal_used;
  int child_error;
  char child_msg[1100];
  struct op ops[MAX_OPS];
  struct flush_rec flushes[MAX_FLUSHES];
  struct jentry journal[MAX_JOURNAL];
  int journal_overflow;
};
static struct shared *sh;
static unsigned char *jdata; /* JOURNAL_BYTES, shared */

static char dir[64];
static struct vol_store *vs;

/* ---- data patterns ----------------------------------------------------- */
static inline unsigned char pattern(uint32_t tag, uint64_t x) {
  uint64_t h = (x + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)tag * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return (unsigned char)(h >> 40);
}
static uint64_t xs(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* ---- the child --------------------------------------------------------- */
static void hook(enum vol_io_kind kind, enum vol_io_file file, const void *buf, uint64_t len,
                 uint64_t off) {
  if (kind == VOL_IO_PREALLOC) { /* reserves blocks, changes no byte: nothing to replay */
    __atomic_fetch_add(&sh->npreallocs, 1, __ATOMIC_ACQ_REL);
    return;
  }
  uint32_t i = __atomic_fetch_add(&sh->njournal, 1, __ATOMIC_ACQ_REL);
  if (i >= MAX_JOURNAL) {
    sh->journal_overflow = 1;
    return;
  }
  struct jentry *j = &sh->journal[i];
  j->kind = (int)kind;
  j->file = (int)file;
  j->off = off;
  j->len = len;
  if (kind == VOL_IO_WRITE) {
    uint64_t d = __atomic_fetch_add(&sh->journal_used, len, __ATOMIC_ACQ_REL);
    if (d + len > JOURNAL_BYTES) {
      sh->journal_overflow = 1;
      return;
    }
    memcpy(jdata + d, buf, len);
    j->data_off = d;
  }
  __atomic_store_n(&j->valid, 1, __ATOMIC_RELEASE);
}

struct child_thread {
  struct vol *v;
  uint64_t seed;
};

static void child_fail(const char *what, const struct err *e) {
  snprintf(sh->child_msg, sizeof sh->child_msg, "%s: %s", what, e->message);
  __atomic_store_n(&sh->child_error, 1, __ATOMIC_RELEASE);
}

static void *child_main(void *arg) {
  struct child_thread *t = arg;
  struct err e;
  err_init(&e);
  unsigned char *buf = malloc(64 * 1024);
  for (;;) {
    uint64_t r = xs(&t->seed) % 100;
    if (r < 10) {
      uint32_t f = __atomic_fetch_add(&sh->nflushes, 1, __ATOMIC_ACQ_REL);
      if (f >= MAX_FLUSHES) break;
      __atomic_store_n(&sh->flushes[f].begin, __atomic_add_fetch(&sh->seq, 1, __ATOMIC_ACQ_REL),
                       __ATOMIC_RELEASE);
      if (vol_flush(t->v, &e) < 0) {
        child_fail("flush", &e);
        break;
      }
      __atomic_store_n(&sh->flushes[f].done, __atomic_add_fetch(&sh->seq, 1, __ATOMIC_ACQ_REL),
                       __ATOMIC_RELEASE);
      continue;
    }
    uint32_t i = __atomic_fetch_add(&sh->nops, 1, __ATOMIC_ACQ_REL);
    if (i >= MAX_OPS) break;
    struct op *op = &sh->ops[i];
    int z = (int)(xs(&t->seed) % NZONES);
    uint64_t zl = zone_len(z);
    uint64_t off = xs(&t->seed) % zl;
    uint64_t len = 1 + xs(&t->seed) % (r < 60 ? 9000 : 65536);
    if (r % 2 == 0) { /* sector-aligned, the common case */
      off &= ~(uint64_t)(SECTOR - 1);
      len = (len + SECTOR - 1) & ~(uint64_t)(SECTOR - 1);
    }
    if (len > zl - off) len = zl - off;
    off += zone_start[z];
    op->type = r < 85 ? OP_WRITE : OP_DISCARD;
    op->tag = i + 1;
    op->off = off;
    op->len = len;
    if (op->type == OP_WRITE)
      for (uint64_t k = 0; k < len; k++)
        buf[k] = pattern(op->tag, off + k);
    __atomic_store_n(&op->begin, __atomic_add_fetch(&sh->seq, 1, __ATOMIC_ACQ_REL),
                     __ATOMIC_RELEASE);
    int rc = op->type == OP_WRITE ? vol_pwrite(t->v, buf, len, off, &e)
                                  : vol_discard(t->v, off, len, &e);
    if (rc < 0) {
      op->failed = 1;
      child_fail("write", &e);
      break;
    }
    __atomic_store_n(&op->done, __atomic_add_fetch(&sh->seq, 1, __ATOMIC_ACQ_REL),
                     __ATOMIC_RELEASE);
  }
  free(buf);
  return NULL;
}

static void child(uint64_t seed) {
  struct err e;
  err_init(&e);
  struct vol *v;
  vol_io_hook = hook;
  if (vol_os_open(vs, "clone", &v, &e) < 0) {
    child_fail("open", &e);
    _exit(1);
  }
  pthread_t th[THREADS];
  struct child_thread ct[THREADS];
  for (int i = 0; i < THREADS; i++) {
    ct[i] = (struct child_thread){.v = v, .seed = seed * 7919 + (uint64_t)i * 104729 + 1};
    pthread_create(&th[i], NULL, child_main, &ct[i]);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  for (;;)
    pause(); /* wait for the kill */
}

/* ---- the parent: zones of the data file ------------------------------- */
static int zone_of(uint64_t off) {
  for (int z = 0; z < NZONES; z++)
    if (off >= zone_start[z] && off < zone_start[z] + zone_len(z)) return z;
  return -1;
}

/* Byte-addressed images of the data file's zones and the meta file. */
struct image {
  unsigned char *zone[NZONES];
  unsigned char meta[META_SIZE];
};

static unsigned char *img_byte(struct image *im, int file, uint64_t off) {
  if (file == VOL_IO_META) return off < META_SIZE ? &im->meta[off] : NULL;
  int z = zone_of(off);
  return z < 0 ? NULL : &im->zone[z][off - zone_start[z]];
}

static char data_path[256], meta_path[256];

static void image_load(struct image *im) {
  int fd = open(data_path, O_RDONLY);
  assert_true(fd >= 0);
  for (int z = 0; z < NZONES; z++)
    assert_int_equal(pread(fd, im->zone[z], zone_len(z), (off_t)zone_start[z]),
                     (ssize_t)zone_len(z));
  close(fd);
  fd = open(meta_path, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, im->meta, META_SIZE, 0), META_SIZE);
  close(fd);
}

static void image_store(struct image *im) {
  int fd = open(data_path, O_WRONLY);
  assert_true(fd >= 0);
  for (int z = 0; z < NZONES; z++)
    assert_int_equal(pwrite(fd, im->zone[z], zone_len(z), (off_t)zone_start[z]),
                     (ssize_t)zone_len(z));
  close(fd);
  fd = open(meta_path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, im->meta, META_SIZE, 0), META_SIZE);
  close(fd);
}

/* Apply journal entry j to the bytes [lo, hi) of its file in im. */
static void apply_entry(struct image *im, const struct jentry *j, uint64_t lo, uint64_t hi) {
  for (uint64_t x = lo; x < hi; x++) {
    unsigned char *b = img_byte(im, j->file, x);
    if (!b) fail_msg("journal entry at %llu outside the zones", (unsigned long long)x);
    *b = j->kind == VOL_IO_WRITE ? jdata[j->data_off + (x - j->off)] : 0;
  }
}

/* Sector index inside the image for (file, sector); -1 if outside. */
#define META_SECTORS (META_SIZE / SECTOR)
#define ALL_SECTORS (NZONES * (ZONE_BYTES_MAX / SECTOR + 1) + META_SECTORS)
static long sector_slot(int file, uint64_t s) {
  if (file == VOL_IO_META) return s < META_SECTORS ? (long)s : -1;
  int z = zone_of(s * SECTOR);
  if (z < 0) return -1;
  return META_SECTORS + z * (long)(ZONE_BYTES_MAX / SECTOR + 1) +
         (long)(s - zone_start[z] / SECTOR);
}

static unsigned power_loss_rounds, kills_mid_op, kills_mid_flush, preallocs;

/* Rebuild im (the round's starting image) as a power loss would leave it. */
static void replay_power_loss(struct image *im, uint64_t *rng) {
  uint32_t n = sh->njournal < MAX_JOURNAL ? sh->njournal : MAX_JOURNAL;
  /* A completed fdatasync makes durable what was written before it began;
   * writes that completed while it ran may or may not be on disk. */
  long last_sync[2] = {-1, -1}, started[2] = {-1, -1};
  for (uint32_t i = 0; i < n; i++) {
    const struct jentry *j = &sh->journal[i];
    if (!j->valid) continue;
    if (j->kind == VOL_IO_SYNC_START) started[j->file] = i;
    if (j->kind == VOL_IO_SYNC) last_sync[j->file] = started[j->file];
  }
  static int count[ALL_SECTORS], chosen[ALL_SECTORS];
  memset(count, 0, sizeof count);
  /* Durable: everything up to the file's last completed fdatasync. */
  for (uint32_t i = 0; i < n; i++) {
    const struct jentry *j = &sh->journal[i];
    if (!j->valid || j->kind == VOL_IO_SYNC || j->kind == VOL_IO_SYNC_START) continue;
    if ((long)i < last_sync[j->file]) {
      apply_entry(im, j, j->off, j->off + j->len);
    } else {
      for (uint64_t s = j->off / SECTOR; s * SECTOR < j->off + j->len; s++) {
        long slot = sector_slot(j->file, s);
        assert_true(slot >= 0);
        count[slot]++;
      }
    }
  }
  /* Later writes: each sector independently at a random version. */
  for (long s = 0; s < ALL_SECTORS; s++)
    chosen[s] = count[s] ? (int)(xs(rng) % (uint64_t)(count[s] + 1)) : 0;
  memset(count, 0, sizeof count);
  for (uint32_t i = 0; i < n; i++) {
    const struct jentry *j = &sh->journal[i];
    if (!j->valid || j->kind == VOL_IO_SYNC || j->kind == VOL_IO_SYNC_START ||
        (long)i < last_sync[j->file])
      continue;
    for (uint64_t s = j->off / SECTOR; s * SECTOR < j->off + j->len; s++) {
      long slot = sector_slot(j->file, s);
      if (count[slot]++ >= chosen[slot]) continue;
      uint64_t lo = s * SECTOR > j->off ? s * SECTOR : j->off;
      uint64_t hi = (s + 1) * SECTOR < j->off + j->len ? (s + 1) * SECTOR : j->off + j->len;
      apply_entry(im, j, lo, hi);
    }
  }
}

/* ---- the parent: the check ----------------------------------------------- */
static unsigned long long bytes_durable, bytes_checked, ops_total, ops_durable, flushes_done;

/* content: the zones as the reopened volume reads them; base: before the round. */
static void check_round(unsigned char *content[NZONES], unsigned char *base[NZONES], int round) {
  uint64_t threshold = 0; /* ops completed before this sequence number are durable */
  uint32_t nf = sh->nflushes < MAX_FLUSHES ? sh->nflushes : MAX_FLUSHES;
  for (uint32_t f = 0; f < nf; f++) {
    if (!sh->flushes[f].done) continue;
    flushes_done++;
    if (sh->flushes[f].begin > threshold) threshold = sh->flushes[f].begin;
  }
  uint32_t nops = sh->nops < MAX_OPS ? sh->nops : MAX_OPS;
  /* Per sector of each zone: the issued operations touching it. */
  static uint16_t list[NZONES][ZONE_BYTES_MAX / SECTOR + 1][128];
  static uint8_t nlist[NZONES][ZONE_BYTES_MAX / SECTOR + 1];
  memset(nlist, 0, sizeof nlist);
  for (uint32_t i = 0; i < nops; i++) {
    const struct op *op = &sh->ops[i];
    if (!op->begin) continue;
    ops_total++;
    if (op->done && op->done < threshold) ops_durable++;
    int z = zone_of(op->off);
    assert_true(z >= 0);
    for (uint64_t s = (op->off - zone_start[z]) / SECTOR;
         s * SECTOR < op->off + op->len - zone_start[z]; s++) {
      if (nlist[z][s] == 128) fail_msg("too many operations on one sector");
      list[z][s][nlist[z][s]++] = (uint16_t)i;
    }
  }
  for (int z = 0; z < NZONES; z++) {
    for (uint64_t b = 0; b < zone_len(z); b++) {
      uint64_t x = zone_start[z] + b, s = b / SECTOR;
      unsigned char got = content[z][b];
      bytes_checked++;
      if (!nlist[z][s]) { /* untouched this round: the bytes from before it */
        uint64_t n = (s + 1) * SECTOR < zone_len(z) ? (s + 1) * SECTOR - b : zone_len(z) - b;
        if (memcmp(content[z] + b, base[z] + b, n))
          fail_msg("round %d: sector at %llu changed though no operation covered it (a bitmap bit "
                   "durable before its cluster's data?)",
                   round, (unsigned long long)x);
        bytes_checked += n - 1;
        b += n - 1;
        continue;
      }
      /* The latest begin of a durable operation covering x. */
      uint64_t dmax = 0;
      for (int k = 0; k < nlist[z][s]; k++) {
        const struct op *op = &sh->ops[list[z][s][k]];
        if (x >= op->off && x < op->off + op->len && op->done && op->done < threshold &&
            op->begin > dmax)
          dmax = op->begin;
      }
      if (dmax) bytes_durable++;
      int ok = !dmax && got == base[z][b];
      for (int k = 0; k < nlist[z][s] && !ok; k++) {
        const struct op *op = &sh->ops[list[z][s][k]];
        if (x < op->off || x >= op->off + op->len) continue;
        if (op->done && op->done < dmax) continue; /* superseded by a durable op */
        unsigned char want = op->type == OP_WRITE ? pattern(op->tag, x) : 0;
        ok = got == want;
      }
      if (!ok)
        fail_msg("round %d: byte %llu reads %02x: not the value of any operation that may be "
                 "its last (before the round %02x; %s)",
                 round, (unsigned long long)x, got, base[z][b],
                 dmax ? "a flushed write is lost" : "no flushed write covers it");
    }
  }
}

static void read_zones(struct vol *v, unsigned char *out[NZONES]) {
  struct err e;
  err_init(&e);
  for (int z = 0; z < NZONES; z++)
    if (vol_pread(v, out[z], zone_len(z), zone_start[z], &e) < 0)
      fail_msg("read zone %d: %s", z, e.message);
}

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-volcrash-XXXXXX");
  assert_non_null(mkdtemp(dir));
  struct err e;
  err_init(&e);
  assert_int_equal(vol_store_open(&vs, dir, &e), 0);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  jdata = mmap(NULL, JOURNAL_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED && jdata != MAP_FAILED);
  return 0;
}

/* Runs even when the test fails. */
static int teardown(void **state) {
  munmap(sh, sizeof *sh);
  munmap(jdata, JOURNAL_BYTES);
  vol_store_close(vs);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static void test_crash_rounds(void **state) {
  struct err e;
  err_init(&e);
  uint64_t rng = 20261121;
  /* A sparse golden volume with random bytes in the zones it covers. */
  char *tmp = vol_golden_tmp_path(vs, "gold");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)GOLDEN_SIZE), 0);
  unsigned char *buf = malloc(ZONE_BYTES_MAX);
  for (int z = 0; z < NZONES; z++) {
    if (zone_start[z] >= GOLDEN_SIZE) continue;
    uint64_t n = zone_len(z);
    if (zone_start[z] + n > GOLDEN_SIZE) n = GOLDEN_SIZE - zone_start[z];
    for (uint64_t k = 0; k < n; k++)
      buf[k] = (unsigned char)(xs(&rng) >> 24);
    assert_int_equal(pwrite(fd, buf, n, (off_t)zone_start[z]), (ssize_t)n);
  }
  close(fd);
  free(tmp);
  free(buf);
  assert_int_equal(vol_golden_commit(vs, "gold", &e), 0);
  snprintf(data_path, sizeof data_path, "%s/os/clone/data", dir);
  snprintf(meta_path, sizeof meta_path, "%s/os/clone/meta", dir);
  unsigned char *base[NZONES], *content[NZONES];
  struct image im;
  for (int z = 0; z < NZONES; z++) {
    base[z] = malloc(ZONE_BYTES_MAX);
    content[z] = malloc(ZONE_BYTES_MAX);
    im.zone[z] = malloc(ZONE_BYTES_MAX);
  }
  struct vol *v;
  int rounds = ROUNDS; /* STREAMER_CRASH_ROUNDS=n for a longer soak */
  if (getenv("STREAMER_CRASH_ROUNDS")) rounds = atoi(getenv("STREAMER_CRASH_ROUNDS"));
  int64_t t0 = util_mono_ms();
  for (int round = 0; round < rounds; round++) {
    if (round % GENERATION == 0) {
      /* A fresh clone now and then, so that first writes (copy-on-write
       * fills, new bitmap bits) keep happening; in between, each round
       * crashes the volume that the previous crash left. */
      if (round) assert_int_equal(vol_os_delete(vs, "clone", &e), 0);
      assert_int_equal(vol_os_create(vs, "clone", "gold", VOL_SIZE, &e), 0);
      struct stat st;
      assert_int_equal(stat(meta_path, &st), 0);
      assert_int_equal(st.st_size, META_SIZE);
      assert_int_equal(vol_os_open(vs, "clone", &v, &e), 0);
      read_zones(v, base);
      vol_close(v);
    }
    image_load(&im);
    memset(sh, 0, sizeof *sh);
    uint32_t target = (uint32_t)(xs(&rng) % MAX_OPS);
    uint64_t spin = xs(&rng) % 200000;
    int power_loss = (int)(xs(&rng) & 1);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child(rng ^ (uint64_t)round);
    /* Kill at a random instant: after `target` operations were issued (or
     * the child ran out of work), plus a random spin. */
    for (int waited = 0; waited < 200000; waited++) {
      if (__atomic_load_n(&sh->nops, __ATOMIC_ACQUIRE) >= target ||
          __atomic_load_n(&sh->child_error, __ATOMIC_ACQUIRE))
        break;
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
    for (volatile uint64_t k = 0; k < spin; k++) {
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (sh->child_error) fail_msg("round %d: child: %s", round, sh->child_msg);
    assert_false(sh->journal_overflow);
    preallocs += sh->npreallocs;
    for (uint32_t i = 0; i < sh->nops && i < MAX_OPS; i++)
      if (sh->ops[i].begin && !sh->ops[i].done) kills_mid_op++;
    for (uint32_t i = 0; i < sh->nflushes && i < MAX_FLUSHES; i++)
      if (sh->flushes[i].begin && !sh->flushes[i].done) kills_mid_flush++;
    if (power_loss) {
      power_loss_rounds++;
      replay_power_loss(&im, &rng);
      image_store(&im);
    }
    /* The volume opens as it is: there is no repair step. */
    if (vol_os_open(vs, "clone", &v, &e) < 0)
      fail_msg("round %d: reopen after the crash: %s", round, e.message);
    read_zones(v, content);
    vol_close(v);
    check_round(content, base, round);
    for (int z = 0; z < NZONES; z++)
      memcpy(base[z], content[z], zone_len(z));
  }
  printf("crash test: %d rounds (%u power losses replayed) in %lld ms; %llu operations issued, "
         "%llu durable at the crash, %u killed mid-operation, %u mid-flush, %llu completed "
         "flushes, %u chunks preallocated; %llu bytes checked, %llu of them under a flushed "
         "write\n",
         rounds, power_loss_rounds, (long long)(util_mono_ms() - t0), ops_total, ops_durable,
         kills_mid_op, kills_mid_flush, flushes_done, preallocs, bytes_checked, bytes_durable);
  /* First writes into untouched chunks preallocate them (osvol.c): the
   * crashes above must have hit volumes doing so. */
  if (rounds >= GENERATION) assert_true(preallocs > 0);
  for (int z = 0; z < NZONES; z++) {
    free(base[z]);
    free(content[z]);
    free(im.zone[z]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_crash_rounds, setup, teardown),
  };
  log_set_level(LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
