/* test_vol.c — the volume engine: file volumes, golden volumes, copy-on-write
 * OS volumes (reads through to the golden volume, copy-on-write fill at any
 * offset, clones larger than their golden volume, empty volumes, discard,
 * allocated bytes, persistence across close/open), snapshots (isolation,
 * outliving the volume's handle), the store's refusals (golden in use, open
 * twice, corrupt header named), and concurrent readers and writers on one
 * clone, checked, and the preallocation of the data file (which chunks, what
 * it must not change). Every test compares against an in-memory model of what
 * the volume must hold. The crash test is test_vol_crash.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vol/vol.h"
#include "vol/vol_int.h" /* vol_io_hook, vol_os_prealloc_clusters */

static char dir[64];
static struct vol_store *vs;

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-vol-XXXXXX");
  assert_non_null(mkdtemp(dir));
  struct err e;
  err_init(&e);
  assert_int_equal(vol_store_open(&vs, dir, &e), 0);
  return 0;
}

static int teardown(void **state) {
  vol_store_close(vs);
  vs = NULL;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64*: reproducible */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
static void fill_random(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(rnd() >> 56);
}

/* Golden volume `id` of `size` bytes: random content with every third
 * 64 KiB block left as a hole (zeros). Returns its content (malloc'd). */
static unsigned char *make_golden(const char *id, size_t size) {
  unsigned char *content = calloc(1, size ? size : 1);
  assert_non_null(content);
  for (size_t off = 0; off < size; off += 65536)
    if ((off / 65536) % 3 != 1) fill_random(content + off, size - off < 65536 ? size - off : 65536);
  char *tmp = vol_golden_tmp_path(vs, id);
  assert_non_null(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  for (size_t off = 0; off < size; off += 65536)
    if ((off / 65536) % 3 != 1) {
      size_t n = size - off < 65536 ? size - off : 65536;
      assert_int_equal(pwrite(fd, content + off, n, (off_t)off), (ssize_t)n);
    }
  close(fd);
  free(tmp);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_golden_commit(vs, id, &e), 0);
  return content;
}

/* The volume's whole content equals model (read in odd-sized pieces too). */
static void check_content(struct vol *v, const unsigned char *model, size_t size) {
  struct err e;
  err_init(&e);
  unsigned char *buf = malloc(size);
  assert_non_null(buf);
  memset(buf, 0xAA, size);
  assert_int_equal(vol_pread(v, buf, size, 0, &e), 0);
  for (size_t i = 0; i < size; i++)
    if (buf[i] != model[i])
      fail_msg("byte %zu: volume has %02x, expected %02x", i, buf[i], model[i]);
  /* Unaligned pieces cross cluster and ownership boundaries. */
  for (size_t off = 0; off < size;) {
    size_t n = 1 + rnd() % 9000;
    if (n > size - off) n = size - off;
    assert_int_equal(vol_pread(v, buf, n, off, &e), 0);
    assert_memory_equal(buf, model + off, n);
    off += n;
  }
  free(buf);
}

static void write_both(struct vol *v, unsigned char *model, size_t len, uint64_t off) {
  struct err e;
  err_init(&e);
  unsigned char *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  fill_random(buf, len);
  if (vol_pwrite(v, buf, len, off, &e) < 0)
    fail_msg("write %zu at %llu: %s", len, (unsigned long long)off, e.message);
  memcpy(model + off, buf, len);
  free(buf);
}

static void discard_both(struct vol *v, unsigned char *model, uint64_t len, uint64_t off) {
  struct err e;
  err_init(&e);
  if (vol_discard(v, off, len, &e) < 0)
    fail_msg("discard %llu at %llu: %s", (unsigned long long)len, (unsigned long long)off,
             e.message);
  memset(model + off, 0, (size_t)len);
}

static struct vol *open_os(const char *id) {
  struct vol *v = NULL;
  struct err e;
  err_init(&e);
  if (vol_os_open(vs, id, &v, &e) < 0) fail_msg("open %s: %s", id, e.message);
  return v;
}

static void create_os(const char *id, const char *golden, uint64_t size) {
  struct err e;
  err_init(&e);
  if (vol_os_create(vs, id, golden, size, &e) < 0) fail_msg("create %s: %s", id, e.message);
}

static char *path_in(const char *rel) {
  char *p = malloc(512);
  assert_non_null(p);
  snprintf(p, 512, "%s/%s", dir, rel);
  return p;
}

/* ---- file volumes -------------------------------------------------------- */

static void test_file_volume(void **state) {
  rng_state = 1;
  struct err e;
  err_init(&e);
  char *path = path_in("plain.raw");
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 1 << 20), 0);
  close(fd);
  struct vol *v;
  assert_int_equal(vol_file_open(path, 0, &v, &e), 0);
  assert_int_equal(vol_size(v), 1 << 20);
  assert_int_equal(vol_read_only(v), 0);
  unsigned char *model = calloc(1, 1 << 20);
  write_both(v, model, 777, 12345);
  write_both(v, model, 65536, 0);
  discard_both(v, model, 8192, 4096);
  discard_both(v, model, 100, 70001); /* unaligned: reads zeros all the same */
  assert_int_equal(vol_flush(v, &e), 0);
  check_content(v, model, 1 << 20);
  unsigned char b[16];
  assert_int_equal(vol_pread(v, b, 16, (1 << 20) - 8, &e), -1);
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  assert_int_equal(vol_pwrite(v, b, 1, 1 << 20, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  assert_int_equal(vol_pread(v, b, 16, UINT64_MAX - 4, &e), -1); /* no overflow */
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  vol_close(v);
  assert_int_equal(vol_file_open(path, 1, &v, &e), 0);
  assert_int_equal(vol_read_only(v), 1);
  check_content(v, model, 1 << 20);
  err_clear(&e);
  assert_int_equal(vol_pwrite(v, b, 1, 0, &e), -1);
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  err_clear(&e);
  assert_int_equal(vol_discard(v, 0, 4096, &e), -1);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  vol_close(v);
  err_clear(&e);
  assert_int_equal(vol_file_open("/nonexistent/x.raw", 1, &v, &e), -1);
  assert_int_equal(e.status, 404);
  assert_string_equal(e.code, "VOL_NOT_FOUND");
  free(model);
  free(path);
}

/* ---- golden volumes ------------------------------------------------------ */

static void test_golden(void **state) {
  rng_state = 2;
  struct err e;
  err_init(&e);
  assert_null(vol_golden_path(vs, "../etc"));
  assert_null(vol_golden_path(vs, ""));
  assert_null(vol_golden_tmp_path(vs, "a/b"));
  char *p = vol_golden_path(vs, "g-1");
  char *want = path_in("golden/g-1.raw");
  assert_string_equal(p, want);
  free(p);
  free(want);
  assert_false(vol_golden_exists(vs, "g-1"));
  unsigned char *content = make_golden("g-1", 300000);
  assert_true(vol_golden_exists(vs, "g-1"));
  char *gp = path_in("golden/g-1.raw");
  struct stat st;
  assert_int_equal(stat(gp, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0400);
  assert_true((uint64_t)st.st_blocks * 512 < 300000); /* holes stayed holes */
  free(gp);
  struct vol *g;
  assert_int_equal(vol_golden_open(vs, "g-1", &g, &e), 0);
  assert_int_equal(vol_read_only(g), 1);
  assert_int_equal(vol_size(g), 300000);
  check_content(g, content, 300000);
  assert_int_equal(vol_pwrite(g, "x", 1, 0, &e), -1);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  vol_close(g);
  /* A second import of the same id does not replace the first. */
  char *tmp = vol_golden_tmp_path(vs, "g-1");
  int fd = open(tmp, O_WRONLY | O_CREAT, 0644);
  assert_true(fd >= 0);
  close(fd);
  err_clear(&e);
  assert_int_equal(vol_golden_commit(vs, "g-1", &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "VOL_EXISTS");
  unlink(tmp);
  free(tmp);
  err_clear(&e);
  assert_int_equal(vol_golden_commit(vs, "nothing", &e), -1);
  assert_int_equal(e.status, 404);
  err_clear(&e);
  assert_int_equal(vol_golden_open(vs, "nothing", &g, &e), -1);
  assert_int_equal(e.status, 404);
  assert_string_equal(e.code, "VOL_NOT_FOUND");
  err_clear(&e);
  assert_int_equal(vol_golden_delete(vs, "nothing", &e), -1);
  assert_int_equal(e.status, 404);
  err_clear(&e);
  assert_int_equal(vol_golden_delete(vs, "g-1", &e), 0);
  assert_false(vol_golden_exists(vs, "g-1"));
  free(content);
}

/* ---- OS volumes ---------------------------------------------------------- */

static void test_clone_reads_golden_and_cow(void **state) {
  rng_state = 3;
  const size_t size = 1 << 20;
  unsigned char *golden = make_golden("g", size);
  unsigned char *model = malloc(size);
  memcpy(model, golden, size);
  create_os("os1", "g", 0);
  assert_true(vol_os_exists(vs, "os1"));
  struct vol *v = open_os("os1");
  assert_int_equal(vol_size(v), size);
  assert_int_equal(vol_read_only(v), 0);
  check_content(v, model, size);
  /* Partial-cluster writes at odd offsets (copy-on-write fill), writes that
   * straddle clusters, whole clusters, into holes of the golden volume. */
  write_both(v, model, 1, 0);
  write_both(v, model, 100, 4000);
  write_both(v, model, 512, 8192 + 512);
  write_both(v, model, 3 * 4096, 16384);
  write_both(v, model, 70000, 65536 + 17); /* inside the golden's hole */
  write_both(v, model, 4096 * 70 + 1, 300000);
  write_both(v, model, 1, size - 1);
  check_content(v, model, size);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("os1");
  check_content(v, model, size);
  vol_close(v);
  /* The golden volume is untouched. */
  struct vol *g;
  assert_int_equal(vol_golden_open(vs, "g", &g, &e), 0);
  check_content(g, golden, size);
  vol_close(g);
  free(golden);
  free(model);
}

/* Random operations against a model, with close/reopen; unaligned golden and
 * clone sizes; also closing without a flush keeps completed writes (in the
 * page cache, for this process). */
static void test_clone_random_model(void **state) {
  rng_state = 4;
  const size_t gsize = 1000000 + 123, size = 1300000 + 77;
  unsigned char *golden = make_golden("g", gsize);
  unsigned char *model = calloc(1, size);
  memcpy(model, golden, gsize);
  create_os("os", "g", size);
  struct vol *v = open_os("os");
  assert_int_equal(vol_size(v), size);
  struct err e;
  err_init(&e);
  for (int i = 0; i < 3000; i++) {
    uint64_t r = rnd() % 100;
    uint64_t off = rnd() % size;
    uint64_t maxlen = size - off;
    uint64_t len = r < 50 ? rnd() % 5000 : rnd() % 40000;
    if (r % 3 == 0) off &= ~511ull, len = (len + 511) & ~511ull;
    if (len > maxlen) len = maxlen;
    if (r < 75)
      write_both(v, model, (size_t)len, off);
    else if (r < 90)
      discard_both(v, model, len, off);
    else if (r < 95)
      assert_int_equal(vol_flush(v, &e), 0);
    else {
      unsigned char buf[5000];
      size_t n = (size_t)(len < sizeof buf ? len : sizeof buf);
      assert_int_equal(vol_pread(v, buf, n, off, &e), 0);
      assert_memory_equal(buf, model + off, n);
    }
    if (i % 500 == 499) {
      if (rnd() & 1) assert_int_equal(vol_flush(v, &e), 0);
      vol_close(v);
      v = open_os("os");
      check_content(v, model, size);
    }
  }
  check_content(v, model, size);
  vol_close(v);
  free(golden);
  free(model);
}

static void test_clone_larger_than_golden(void **state) {
  rng_state = 5;
  const size_t gsize = 10000, size = 3 * 1048576 + 1000;
  unsigned char *golden = make_golden("g", gsize);
  unsigned char *model = calloc(1, size);
  memcpy(model, golden, gsize);
  create_os("big", "g", size);
  struct vol *v = open_os("big");
  assert_int_equal(vol_size(v), size);
  check_content(v, model, size);    /* zeros past the golden's 10000 bytes */
  write_both(v, model, 5000, 8000); /* straddles the golden's end */
  write_both(v, model, 10, size - 10);
  write_both(v, model, 1 << 20, 1 << 20);
  check_content(v, model, size);
  discard_both(v, model, 20000, 4000);
  check_content(v, model, size);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("big");
  check_content(v, model, size);
  vol_close(v);
  /* Smaller than the golden volume is refused, and nothing is created. */
  err_clear(&e);
  assert_int_equal(vol_os_create(vs, "small", "g", gsize - 1, &e), -1);
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "VOL_BAD_SIZE");
  assert_false(vol_os_exists(vs, "small"));
  free(golden);
  free(model);
}

static void test_empty_volume(void **state) {
  rng_state = 6;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_os_create(vs, "e0", NULL, 0, &e), -1); /* needs a size */
  assert_string_equal(e.code, "VOL_BAD_SIZE");
  /* Any size, created at once: 4 TiB. */
  const uint64_t huge = 4ull << 40;
  create_os("huge", NULL, huge);
  struct vol *v = open_os("huge");
  assert_int_equal(vol_size(v), huge);
  unsigned char buf[8192], zero[8192] = {0};
  assert_int_equal(vol_pread(v, buf, sizeof buf, huge - sizeof buf, &e), 0);
  assert_memory_equal(buf, zero, sizeof buf);
  fill_random(buf, sizeof buf);
  assert_int_equal(vol_pwrite(v, buf, 1000, huge - 1000, &e), 0);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("huge");
  unsigned char back[1000];
  assert_int_equal(vol_pread(v, back, 1000, huge - 1000, &e), 0);
  assert_memory_equal(back, buf, 1000);
  assert_true(vol_allocated(v) < 4u << 20); /* the bitmap stays sparse */
  vol_close(v);
  /* A small odd-sized empty volume against the model. */
  const size_t size = 100000 + 3;
  unsigned char *model = calloc(1, size);
  create_os("odd", NULL, size);
  v = open_os("odd");
  check_content(v, model, size);
  write_both(v, model, 3, size - 3);
  write_both(v, model, 5000, 2000);
  discard_both(v, model, 3000, 2500);
  discard_both(v, model, size - 4096, 4096);
  check_content(v, model, size);
  vol_close(v);
  free(model);
}

static void test_discard_and_allocated(void **state) {
  rng_state = 7;
  const size_t size = 4 << 20;
  unsigned char *golden = make_golden("g", size);
  unsigned char *model = malloc(size);
  memcpy(model, golden, size);
  create_os("d", "g", 0);
  struct vol *v = open_os("d");
  uint64_t fresh = vol_allocated(v);
  assert_true(fresh <= 64 * 1024); /* header and nothing else */
  struct err e;
  err_init(&e);
  write_both(v, model, 2 << 20, 0);
  assert_int_equal(vol_flush(v, &e), 0);
  uint64_t written = vol_allocated(v);
  assert_true(written >= fresh + (2u << 20));
  /* Discard over the clone's data frees it; over golden data it hides it. */
  discard_both(v, model, 1 << 20, 512 * 1024);
  discard_both(v, model, 1 << 20, 3 << 20);
  discard_both(v, model, 1, 100); /* a byte */
  discard_both(v, model, 5000, (2 << 20) - 2500);
  check_content(v, model, size);
  uint64_t after = vol_allocated(v);
  assert_true(after + (1u << 20) - 8192 <= written);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("d");
  check_content(v, model, size);
  /* Writes into a discarded range read back (and the rest stays zeros). */
  write_both(v, model, 1000, (3 << 20) + 10);
  check_content(v, model, size);
  vol_close(v);
  free(golden);
  free(model);
}

static void test_errors(void **state) {
  rng_state = 8;
  struct err e;
  err_init(&e);
  unsigned char *golden = make_golden("g", 65536);
  struct vol *v;
  assert_int_equal(vol_os_open(vs, "nope", &v, &e), -1);
  assert_int_equal(e.status, 404);
  assert_string_equal(e.code, "VOL_NOT_FOUND");
  err_clear(&e);
  assert_int_equal(vol_os_create(vs, "x", "no-such-golden", 0, &e), -1);
  assert_int_equal(e.status, 404);
  assert_false(vol_os_exists(vs, "x"));
  err_clear(&e);
  assert_int_equal(vol_os_create(vs, "../evil", "g", 0, &e), -1);
  assert_int_equal(e.status, 400);
  err_clear(&e);
  char longid[80];
  memset(longid, 'a', 65);
  longid[65] = 0;
  assert_int_equal(vol_os_create(vs, longid, "g", 0, &e), -1);
  assert_int_equal(e.status, 400);
  longid[64] = 0;
  create_os(longid, "g", 0); /* 64 characters is fine */
  create_os("a", "g", 0);
  err_clear(&e);
  assert_int_equal(vol_os_create(vs, "a", NULL, 4096, &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "VOL_EXISTS");
  v = open_os("a");
  /* Open twice, delete while open: refused. */
  struct vol *v2;
  err_clear(&e);
  assert_int_equal(vol_os_open(vs, "a", &v2, &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "VOL_IN_USE");
  err_clear(&e);
  assert_int_equal(vol_os_delete(vs, "a", &e), -1);
  assert_int_equal(e.status, 409);
  /* Out of range and read-only errors on an OS volume and its snapshot. */
  unsigned char b[4096];
  err_clear(&e);
  assert_int_equal(vol_pread(v, b, 2, 65535, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  assert_int_equal(vol_pwrite(v, b, 4096, 65536 - 4095, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  assert_int_equal(vol_discard(v, 65536, 1, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  assert_int_equal(vol_pread(v, b, 0, 65536, &e), 0); /* empty at the end: fine */
  struct vol *s;
  assert_int_equal(vol_os_snapshot(v, &s, &e), 0);
  assert_int_equal(vol_read_only(s), 1);
  err_clear(&e);
  assert_int_equal(vol_pwrite(s, b, 1, 0, &e), -1);
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  err_clear(&e);
  assert_int_equal(vol_discard(s, 0, 1, &e), -1);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  err_clear(&e);
  assert_int_equal(vol_pread(s, b, 1, 65536, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  struct vol *ss;
  assert_int_equal(vol_os_snapshot(s, &ss, &e), -1); /* not an OS volume */
  assert_int_equal(e.status, 400);
  vol_close(s);
  vol_close(v);
  assert_int_equal(vol_os_delete(vs, "a", &e), 0);
  assert_false(vol_os_exists(vs, "a"));
  err_clear(&e);
  assert_int_equal(vol_os_delete(vs, "a", &e), -1);
  assert_int_equal(e.status, 404);
  free(golden);
}

static void corrupt_byte(const char *id, off_t off, unsigned char value) {
  char rel[128];
  snprintf(rel, sizeof rel, "os/%s/meta", id);
  char *meta = path_in(rel);
  int fd = open(meta, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, &value, 1, off), 1);
  close(fd);
  free(meta);
}

static void expect_corrupt(const char *id, const char *word) {
  struct vol *v;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_os_open(vs, id, &v, &e), -1);
  assert_int_equal(e.status, 500);
  assert_string_equal(e.code, "VOL_CORRUPT");
  if (!strstr(e.message, word)) fail_msg("\"%s\" does not name %s", e.message, word);
}

static void test_corrupt_header(void **state) {
  create_os("m", NULL, 1 << 20);
  create_os("v", NULL, 1 << 20);
  create_os("c", NULL, 1 << 20);
  corrupt_byte("m", 0, 'X');
  expect_corrupt("m", "magic");
  corrupt_byte("v", 8, 9);
  expect_corrupt("v", "version");
  corrupt_byte("c", 30, 1); /* inside the size field */
  expect_corrupt("c", "checksum");
  /* A missing golden volume is named too. */
  free(make_golden("g", 8192));
  create_os("orphan", "g", 0);
  char *gp = path_in("golden/g.raw");
  assert_int_equal(unlink(gp), 0); /* behind the store's back */
  free(gp);
  expect_corrupt("orphan", "its golden volume g");
}

static void test_golden_delete_refused_while_cloned(void **state) {
  rng_state = 9;
  struct err e;
  err_init(&e);
  unsigned char *golden = make_golden("gold", 1 << 20);
  unsigned char *other = make_golden("other", 8192);
  create_os("vol-b", "gold", 0);
  create_os("vol-a", "gold", 2 << 20);
  create_os("unrelated", "other", 0);
  create_os("empty", NULL, 8192);
  char **clones = vol_golden_clones(vs, "gold");
  assert_non_null(clones);
  assert_string_equal(clones[0], "vol-a");
  assert_string_equal(clones[1], "vol-b");
  assert_null(clones[2]);
  vol_strings_free(clones);
  assert_int_equal(vol_golden_delete(vs, "gold", &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "GOLDEN_VOLUME_IN_USE");
  assert_non_null(strstr(e.message, "vol-a"));
  assert_non_null(strstr(e.message, "vol-b"));
  assert_null(strstr(e.message, "unrelated"));
  assert_true(vol_golden_exists(vs, "gold"));
  /* Deleting the clones (one written to) never touches the golden volume. */
  struct vol *v = open_os("vol-a");
  unsigned char buf[4096];
  memset(buf, 0x5A, sizeof buf);
  assert_int_equal(vol_pwrite(v, buf, sizeof buf, 0, &e), 0);
  vol_close(v);
  char *gp = path_in("golden/gold.raw");
  struct stat before, after;
  assert_int_equal(stat(gp, &before), 0);
  assert_int_equal(vol_os_delete(vs, "vol-a", &e), 0);
  err_clear(&e);
  assert_int_equal(vol_golden_delete(vs, "gold", &e), -1); /* vol-b still */
  assert_non_null(strstr(e.message, "vol-b"));
  assert_null(strstr(e.message, "vol-a"));
  assert_int_equal(vol_os_delete(vs, "vol-b", &e), 0);
  assert_int_equal(stat(gp, &after), 0);
  assert_int_equal(before.st_mtime, after.st_mtime);
  assert_int_equal(before.st_size, after.st_size);
  struct vol *g;
  assert_int_equal(vol_golden_open(vs, "gold", &g, &e), 0);
  check_content(g, golden, 1 << 20);
  vol_close(g);
  clones = vol_golden_clones(vs, "gold");
  assert_null(clones[0]);
  vol_strings_free(clones);
  err_clear(&e);
  assert_int_equal(vol_golden_delete(vs, "gold", &e), 0);
  assert_false(vol_golden_exists(vs, "gold"));
  free(gp);
  free(golden);
  free(other);
}

/* Many clones: the list is complete, and the message stays bounded. */
static void test_many_clones(void **state) {
  free(make_golden("g", 4096));
  for (int i = 0; i < 150; i++) {
    char id[48];
    snprintf(id, sizeof id, "clone-%03d-with-a-longish-name", i);
    create_os(id, "g", 0);
  }
  char **clones = vol_golden_clones(vs, "g");
  int n = 0;
  while (clones[n])
    n++;
  assert_int_equal(n, 150);
  vol_strings_free(clones);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_golden_delete(vs, "g", &e), -1);
  assert_non_null(strstr(e.message, "150 OS volumes"));
  assert_non_null(strstr(e.message, "clone-000-with-a-longish-name"));
  assert_non_null(strstr(e.message, "more"));
}

/* Clones created from several threads while another thread keeps trying to
 * delete their golden volume: either the delete is refused (clones exist)
 * or it wins and every later clone is refused; never a clone without its
 * golden volume. */
struct creator {
  int id, created, refused;
};
static void *creator_main(void *arg) {
  struct creator *c = arg;
  struct err e;
  for (int i = 0; i < 40; i++) {
    char id[32];
    snprintf(id, sizeof id, "t%d-%d", c->id, i);
    err_init(&e);
    if (vol_os_create(vs, id, "g", 0, &e) == 0)
      c->created++;
    else if (e.status == 404)
      c->refused++;
    else
      fail_msg("create %s: %s", id, e.message);
  }
  return NULL;
}

static void test_golden_delete_races_create(void **state) {
  free(make_golden("g", 65536));
  create_os("pre", "g", 0); /* the first delete attempt is refused for sure */
  struct creator c[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    c[i] = (struct creator){.id = i};
    assert_int_equal(pthread_create(&th[i], NULL, creator_main, &c[i]), 0);
  }
  int deleted = 0, attempts = 0;
  while (!deleted && attempts < 200) {
    struct err e;
    err_init(&e);
    attempts++;
    if (vol_golden_delete(vs, "g", &e) == 0) {
      deleted = 1;
    } else {
      assert_string_equal(e.code, "GOLDEN_VOLUME_IN_USE");
      /* Delete the clones made so far, then try again. */
      char **clones = vol_golden_clones(vs, "g");
      for (char **p = clones; *p; p++) {
        err_clear(&e);
        assert_int_equal(vol_os_delete(vs, *p, &e), 0);
      }
      vol_strings_free(clones);
    }
  }
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  char **clones = vol_golden_clones(vs, "g");
  if (deleted) {
    assert_false(vol_golden_exists(vs, "g"));
    assert_null(clones[0]); /* no clone outlived its golden volume */
  }
  for (char **p = clones; *p; p++) {
    struct vol *v = open_os(*p); /* every remaining clone opens */
    vol_close(v);
  }
  vol_strings_free(clones);
  assert_true(attempts > 1);
  for (int i = 0; i < 3; i++)
    assert_int_equal(c[i].created + c[i].refused, 40);
}

/* Creations and deletions a crash interrupted are finished at store open;
 * those of a live process are left alone. */
static void test_store_cleans_interrupted(void **state) {
  char rel[128];
  const char *names[3] = {".new-x.999999999.1", ".del-y.999999998.7", NULL};
  char live[64];
  snprintf(live, sizeof live, ".new-z.%d.3", (int)getpid());
  names[2] = live;
  for (int i = 0; i < 3; i++) {
    snprintf(rel, sizeof rel, "os/%s", names[i]);
    char *d = path_in(rel);
    assert_int_equal(mkdir(d, 0700), 0);
    char f[600];
    snprintf(f, sizeof f, "%s/meta", d);
    int fd = open(f, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    free(d);
  }
  vol_store_close(vs);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_store_open(&vs, dir, &e), 0);
  struct stat st;
  for (int i = 0; i < 3; i++) {
    snprintf(rel, sizeof rel, "os/%s", names[i]);
    char *d = path_in(rel);
    assert_int_equal(stat(d, &st) == 0, i == 2);
    free(d);
  }
  assert_string_equal(vol_store_dir(vs), dir);
}

/* ---- snapshots ----------------------------------------------------------- */

static void test_snapshot_isolation(void **state) {
  rng_state = 10;
  const size_t gsize = 1 << 20, size = (1 << 20) + 8192 + 100;
  unsigned char *golden = make_golden("g", gsize);
  unsigned char *model = calloc(1, size);
  memcpy(model, golden, gsize);
  create_os("s", "g", size);
  struct vol *v = open_os("s");
  write_both(v, model, 50000, 1000);
  discard_both(v, model, 8192, 200000);
  struct err e;
  err_init(&e);
  struct vol *s1;
  assert_int_equal(vol_os_snapshot(v, &s1, &e), 0);
  assert_int_equal(vol_size(s1), size);
  unsigned char *at1 = malloc(size);
  memcpy(at1, model, size);
  check_content(s1, at1, size);
  /* Writes after the snapshot: not visible in it. Every kind of change:
   * overwrite owned, first write (fill), whole clusters, discard, past the
   * golden's end. */
  write_both(v, model, 100, 1010);
  write_both(v, model, 3000, 500000 + 7);
  write_both(v, model, 16384, 4096 * 100);
  discard_both(v, model, 30000, 700000);
  discard_both(v, model, 10, 2000);
  write_both(v, model, 8000, gsize + 50);
  check_content(v, model, size);
  check_content(s1, at1, size);
  /* A second snapshot sees the newer content; the first keeps its own. */
  struct vol *s2;
  assert_int_equal(vol_os_snapshot(v, &s2, &e), 0);
  unsigned char *at2 = malloc(size);
  memcpy(at2, model, size);
  for (int i = 0; i < 200; i++) {
    uint64_t off = rnd() % size, len = 1 + rnd() % 20000;
    if (len > size - off) len = size - off;
    if (i % 5 == 0)
      discard_both(v, model, len, off);
    else
      write_both(v, model, (size_t)len, off);
  }
  check_content(s1, at1, size);
  check_content(s2, at2, size);
  check_content(v, model, size);
  assert_true(vol_allocated(s1) > 0);
  vol_close(s2);
  /* The snapshot outlives the volume's handle (it holds its own reference). */
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  check_content(s1, at1, size);
  struct vol *again;
  err_clear(&e);
  assert_int_equal(vol_os_open(vs, "s", &again, &e), -1); /* still in use */
  assert_string_equal(e.code, "VOL_IN_USE");
  vol_close(s1);
  v = open_os("s");
  check_content(v, model, size);
  vol_close(v);
  free(golden);
  free(model);
  free(at1);
  free(at2);
}

/* ---- concurrency --------------------------------------------------------- */

#define CSIZE (8u << 20)
#define SECTOR 512u
#define NTHREADS 6

/* A sector's content names the sector and the write that made it, so a
 * reader can tell a valid sector (golden, or any write ever made to that
 * sector) from a torn or misplaced one. */
static void sector_fill(unsigned char *p, uint64_t sector, uint32_t tag) {
  for (unsigned i = 0; i < SECTOR; i += 16) {
    memcpy(p + i, &sector, 8);
    memcpy(p + i + 8, &tag, 4);
    uint32_t mix = (uint32_t)(sector * 2654435761u) ^ tag ^ i;
    memcpy(p + i + 12, &mix, 4);
  }
}
static int sector_valid(const unsigned char *p, uint64_t sector, const unsigned char *golden) {
  if (!memcmp(p, golden + sector * SECTOR, SECTOR)) return 1;
  uint32_t tag;
  memcpy(&tag, p + 8, 4);
  unsigned char want[SECTOR];
  sector_fill(want, sector, tag);
  return !memcmp(p, want, SECTOR);
}

/* A sector read while other threads write it: the page cache lets a read see
 * part of a concurrent write (as on any file), so each 16-byte piece must be
 * the golden's, zeros (discard) or a piece of some write to this sector. */
static int sector_valid_torn(const unsigned char *p, uint64_t sector, const unsigned char *golden) {
  static const unsigned char zero[16];
  for (unsigned i = 0; i < SECTOR; i += 16) {
    const unsigned char *q = p + i;
    if (!memcmp(q, golden + sector * SECTOR + i, 16) || !memcmp(q, zero, 16)) continue;
    uint64_t sn;
    uint32_t tag, mix;
    memcpy(&sn, q, 8);
    memcpy(&tag, q + 8, 4);
    memcpy(&mix, q + 12, 4);
    if (sn != sector || mix != ((uint32_t)(sector * 2654435761u) ^ tag ^ i)) return 0;
  }
  return 1;
}

struct worker {
  struct vol *v;
  const unsigned char *golden;
  int id;
  int overlapping; /* 0: private range + exact model; 1: shared, validity only */
  uint64_t seed;
  int errors;
  unsigned char *model; /* private range model (non-overlapping) */
};

static uint64_t wrnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void *writer_main(void *arg) {
  struct worker *w = arg;
  struct err e;
  err_init(&e);
  uint64_t region = CSIZE / NTHREADS / SECTOR * SECTOR;
  uint64_t base = w->overlapping ? 0 : (uint64_t)w->id * region;
  uint64_t span = w->overlapping ? CSIZE : region;
  unsigned char *buf = malloc(64 * SECTOR);
  unsigned char *rbuf = malloc(64 * SECTOR);
  for (int i = 0; i < 1500 && !w->errors; i++) {
    uint64_t nsec = 1 + wrnd(&w->seed) % 40;
    uint64_t first = wrnd(&w->seed) % (span / SECTOR - nsec);
    uint64_t off = base + first * SECTOR;
    if (!w->overlapping && wrnd(&w->seed) % 4 == 0) {
      /* Unaligned write, exact model. */
      uint64_t len = 1 + wrnd(&w->seed) % (nsec * SECTOR - 1);
      uint64_t shift = wrnd(&w->seed) % SECTOR;
      if (first * SECTOR + shift + len > span) shift = 0;
      for (uint64_t k = 0; k < len; k++)
        buf[k] = (unsigned char)wrnd(&w->seed);
      if (vol_pwrite(w->v, buf, len, off + shift, &e) < 0) w->errors++;
      memcpy(w->model + first * SECTOR + shift, buf, len);
      continue;
    }
    uint32_t tag = (uint32_t)(w->id << 24) | (uint32_t)i;
    for (uint64_t k = 0; k < nsec; k++)
      sector_fill(buf + k * SECTOR, off / SECTOR + k, tag);
    if (wrnd(&w->seed) % 10 == 0) {
      if (vol_discard(w->v, off, nsec * SECTOR, &e) < 0) w->errors++;
      if (!w->overlapping) memset(w->model + first * SECTOR, 0, nsec * SECTOR);
    } else {
      if (vol_pwrite(w->v, buf, nsec * SECTOR, off, &e) < 0) w->errors++;
      if (!w->overlapping) memcpy(w->model + first * SECTOR, buf, nsec * SECTOR);
    }
    if (wrnd(&w->seed) % 50 == 0 && vol_flush(w->v, &e) < 0) w->errors++;
    /* Read back a random piece of the range and check it. */
    uint64_t rfirst = wrnd(&w->seed) % (span / SECTOR - 64);
    if (vol_pread(w->v, rbuf, 64 * SECTOR, base + rfirst * SECTOR, &e) < 0) {
      w->errors++;
      break;
    }
    for (uint64_t k = 0; k < 64; k++) {
      uint64_t sector = (base / SECTOR) + rfirst + k;
      const unsigned char *got = rbuf + k * SECTOR;
      if (w->overlapping) {
        if (!sector_valid_torn(got, sector, w->golden)) w->errors++;
      } else if (memcmp(got, w->model + (rfirst + k) * SECTOR, SECTOR)) {
        w->errors++;
      }
    }
  }
  if (w->errors) fprintf(stderr, "worker %d: %d errors (%s)\n", w->id, w->errors, e.message);
  free(buf);
  free(rbuf);
  return NULL;
}

static void run_concurrent(int overlapping) {
  rng_state = 11 + (uint64_t)overlapping;
  unsigned char *golden = make_golden("g", CSIZE);
  /* Make the golden's sectors valid patterns too, so a torn mix shows. */
  create_os("c", "g", 0);
  struct vol *v = open_os("c");
  struct worker w[NTHREADS];
  pthread_t th[NTHREADS];
  uint64_t region = CSIZE / NTHREADS / SECTOR * SECTOR;
  for (int i = 0; i < NTHREADS; i++) {
    w[i] = (struct worker){.v = v,
                           .golden = golden,
                           .id = i,
                           .overlapping = overlapping,
                           .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
    w[i].model = malloc(region);
    memcpy(w[i].model, golden + (uint64_t)i * region, region);
    assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++)
    pthread_join(th[i], NULL);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("c");
  unsigned char *all = malloc(CSIZE);
  assert_int_equal(vol_pread(v, all, CSIZE, 0, &e), 0);
  for (int i = 0; i < NTHREADS; i++) {
    assert_int_equal(w[i].errors, 0);
    if (!overlapping) assert_memory_equal(all + (uint64_t)i * region, w[i].model, region);
    free(w[i].model);
  }
  if (overlapping) {
    static const unsigned char zero[SECTOR];
    for (uint64_t s = 0; s < CSIZE / SECTOR; s++)
      if (!sector_valid(all + s * SECTOR, s, golden) && memcmp(all + s * SECTOR, zero, SECTOR))
        fail_msg("sector %llu holds bytes nobody wrote", (unsigned long long)s);
  }
  vol_close(v);
  free(all);
  free(golden);
}

static void test_concurrent_private_ranges(void **state) { run_concurrent(0); }
static void test_concurrent_overlapping(void **state) { run_concurrent(1); }

/* Writers keep writing while snapshots are taken: each snapshot's content
 * never changes while it is open, and every sector in it is valid. */
struct snap_writer {
  struct vol *v;
  int id;
  volatile int *stop;
  int errors;
};

static void *snap_writer_main(void *arg) {
  struct snap_writer *w = arg;
  struct err e;
  err_init(&e);
  uint64_t seed = 77 + (uint64_t)w->id;
  unsigned char buf[16 * SECTOR];
  for (uint32_t i = 0; !__atomic_load_n(w->stop, __ATOMIC_ACQUIRE); i++) {
    uint64_t nsec = 1 + wrnd(&seed) % 16;
    uint64_t first = wrnd(&seed) % (CSIZE / SECTOR - nsec);
    for (uint64_t k = 0; k < nsec; k++)
      sector_fill(buf + k * SECTOR, first + k, (uint32_t)(w->id << 24) | i);
    int r = wrnd(&seed) % 8 == 0 ? vol_discard(w->v, first * SECTOR, nsec * SECTOR, &e)
                                 : vol_pwrite(w->v, buf, nsec * SECTOR, first * SECTOR, &e);
    if (r < 0) w->errors++;
  }
  return NULL;
}

static void test_snapshot_under_writes(void **state) {
  rng_state = 13;
  unsigned char *golden = make_golden("g", CSIZE);
  create_os("c", "g", 0);
  struct vol *v = open_os("c");
  volatile int stop = 0;
  struct snap_writer w[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (struct snap_writer){.v = v, .id = i, .stop = &stop};
    assert_int_equal(pthread_create(&th[i], NULL, snap_writer_main, &w[i]), 0);
  }
  struct err e;
  err_init(&e);
  unsigned char *a = malloc(CSIZE), *b = malloc(CSIZE);
  static const unsigned char zero[SECTOR];
  for (int round = 0; round < 4; round++) {
    struct vol *s;
    assert_int_equal(vol_os_snapshot(v, &s, &e), 0);
    assert_int_equal(vol_pread(s, a, CSIZE, 0, &e), 0);
    assert_int_equal(vol_pread(s, b, CSIZE, 0, &e), 0); /* writers still going */
    assert_memory_equal(a, b, CSIZE);
    for (uint64_t k = 0; k < CSIZE / SECTOR; k++)
      if (!sector_valid(a + k * SECTOR, k, golden) && memcmp(a + k * SECTOR, zero, SECTOR))
        fail_msg("snapshot sector %llu holds bytes nobody wrote", (unsigned long long)k);
    vol_close(s);
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].errors, 0);
  }
  vol_close(v);
  free(a);
  free(b);
  free(golden);
}

/* Bits past the end of a volume whose cluster count is not a multiple of
 * 64, and the last short cluster, survive flush and reopen. */
static void test_tail_cluster(void **state) {
  rng_state = 14;
  const size_t gsize = 4096 * 3 + 5, size = 4096 * 130 + 9;
  unsigned char *golden = make_golden("g", gsize);
  unsigned char *model = calloc(1, size);
  memcpy(model, golden, gsize);
  create_os("t", "g", size);
  struct vol *v = open_os("t");
  write_both(v, model, 9, size - 9);
  write_both(v, model, 4096 + 9, size - 4096 - 9);
  write_both(v, model, 3, gsize - 1);
  discard_both(v, model, 4096 * 3, 4096 * 2);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("t");
  check_content(v, model, size);
  discard_both(v, model, size - 5000, 5000);
  check_content(v, model, size);
  vol_close(v);
  free(golden);
  free(model);
}

/* A flush that writes many bitmap pages (one per 128 MiB of volume): every
 * page reaches the disk, and only the pages written are allocated. */
static void test_many_bitmap_pages(void **state) {
  const uint64_t region = 128ull << 20, size = 40 * region;
  create_os("wide", NULL, size);
  struct vol *v = open_os("wide");
  struct err e;
  err_init(&e);
  unsigned char buf[4096];
  for (uint64_t r = 0; r < 40; r++) {
    memset(buf, (int)(r + 1), sizeof buf);
    assert_int_equal(vol_pwrite(v, buf, 100, r * region + (r % 7) * 4096 + 5, &e), 0);
  }
  assert_int_equal(vol_flush(v, &e), 0);
  vol_close(v);
  v = open_os("wide");
  for (uint64_t r = 0; r < 40; r++) {
    unsigned char want[4096] = {0};
    memset(want + 5, (int)(r + 1), 100);
    assert_int_equal(vol_pread(v, buf, sizeof buf, r * region + (r % 7) * 4096, &e), 0);
    assert_memory_equal(buf, want, sizeof buf);
  }
  /* 40 preallocated 1 MiB chunks (each holding one data cluster) + header +
   * 40 bitmap pages, and nothing near 5 GiB. */
  assert_true(vol_allocated(v) <= 40 * (1u << 20) + (1 + 40) * 4096 + 64 * 1024);
  vol_close(v);
}

/* ---- preallocation ------------------------------------------------------- */

static uint64_t prealloc_off[64], prealloc_len[64];
static int npreallocs;
static void prealloc_hook(enum vol_io_kind kind, enum vol_io_file file, const void *buf,
                          uint64_t len, uint64_t off) {
  if (kind != VOL_IO_PREALLOC) return;
  assert_int_equal(file, VOL_IO_DATA);
  assert_true(npreallocs < 64);
  prealloc_off[npreallocs] = off;
  prealloc_len[npreallocs++] = len;
}

static uint64_t data_blocks(const char *id) {
  char *p = path_in("os/");
  char full[600];
  snprintf(full, sizeof full, "%s%s/data", p, id);
  free(p);
  struct stat st;
  assert_int_equal(stat(full, &st), 0);
  return (uint64_t)st.st_blocks * 512u;
}

/* A first write into a 1 MiB chunk where the clone owns nothing reserves the
 * chunk (once); chunks the clone has touched, writes covering a whole chunk,
 * the zeros of a discard and unwritten clones reserve nothing; the reserved
 * clusters still read the golden volume; the data file keeps its size. */
static void test_prealloc_chunks(void **state) {
  rng_state = 15;
  const uint64_t MiB = 1u << 20;
  const size_t gsize = 6 * MiB + 4096 * 5 + 17, size = 9 * MiB + 4096 * 3 + 100;
  unsigned char *golden = make_golden("g", gsize);
  unsigned char *model = calloc(1, size);
  memcpy(model, golden, gsize);
  assert_int_equal(vol_os_prealloc_clusters, 256);
  create_os("p", "g", size);
  struct vol *v = open_os("p");
  assert_int_equal(data_blocks("p"), 0); /* an unwritten clone stays empty */
  npreallocs = 0;
  vol_io_hook = prealloc_hook;
  /* 4 KiB first write in chunk 1: the whole chunk is reserved, once. */
  write_both(v, model, 4096, MiB + 8192);
  assert_int_equal(npreallocs, 1);
  assert_int_equal(prealloc_off[0], MiB);
  assert_int_equal(prealloc_len[0], MiB);
  uint64_t blocks = data_blocks("p");
  int can_prealloc = blocks >= MiB;               /* else the file system has no fallocate */
  write_both(v, model, 100, MiB + 3 * 4096 + 7);  /* a partial first write, same chunk */
  write_both(v, model, 4096 * 3, 2 * MiB - 4096); /* ends in chunk 1, starts chunk 2 */
  assert_int_equal(npreallocs, 2);
  assert_int_equal(prealloc_off[1], 2 * MiB);
  /* The reserved clusters around the writes still read the golden volume. */
  check_content(v, model, size);
  /* A write that covers chunk 4 whole reserves nothing first; one that
   * covers chunk 5 in part (past the golden volume's end) reserves it. */
  write_both(v, model, MiB + 8192, 4 * MiB);
  assert_int_equal(npreallocs, 3);
  assert_int_equal(prealloc_off[2], 5 * MiB);
  /* Discard: its partial-cluster zeros reserve nothing, and a discarded
   * cluster makes its chunk touched (its bit is set). */
  discard_both(v, model, 100, 3 * MiB + 50);
  discard_both(v, model, 4096, 6 * MiB - 4096 * 4);
  assert_int_equal(npreallocs, 3);
  write_both(v, model, 4096, 6 * MiB - 4096 * 8); /* chunk 5: already reserved above */
  assert_int_equal(npreallocs, 3);
  /* The short last chunk is reserved up to the volume's end, not beyond. */
  write_both(v, model, 50, size - 60);
  assert_int_equal(npreallocs, 4);
  assert_int_equal(prealloc_off[3], 9 * MiB);
  assert_int_equal(prealloc_len[3], size - 9 * MiB);
  check_content(v, model, size);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_flush(v, &e), 0);
  /* allocated counts what is reserved: it is on the disk. */
  if (can_prealloc) assert_true(vol_allocated(v) >= 4 * MiB);
  assert_true(vol_allocated(v) >= data_blocks("p"));
  vol_close(v);
  /* Reopened: the bitmap alone says which chunks are touched. */
  v = open_os("p");
  check_content(v, model, size);
  write_both(v, model, 4096, MiB + 64 * 4096); /* chunk 1: touched before */
  assert_int_equal(npreallocs, 4);
  write_both(v, model, 4096, 7 * MiB + 4096); /* chunk 7: untouched */
  assert_int_equal(npreallocs, 5);
  assert_int_equal(prealloc_off[4], 7 * MiB);
  vol_close(v);
  /* The data file kept the volume's size (open checks it). */
  v = open_os("p");
  check_content(v, model, size);
  vol_close(v);
  /* Off: no reservation at all. */
  vol_os_prealloc_clusters = 0;
  create_os("q", "g", size);
  v = open_os("q");
  write_both(v, model, 4096, 8192);
  vol_close(v);
  vol_os_prealloc_clusters = VOL_OS_PREALLOC_DEFAULT;
  vol_io_hook = NULL;
  assert_int_equal(npreallocs, 5);
  assert_true(data_blocks("q") < MiB);
  free(golden);
  free(model);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_file_volume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_golden, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clone_reads_golden_and_cow, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clone_random_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clone_larger_than_golden, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_volume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_discard_and_allocated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_header, setup, teardown),
      cmocka_unit_test_setup_teardown(test_golden_delete_refused_while_cloned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_clones, setup, teardown),
      cmocka_unit_test_setup_teardown(test_golden_delete_races_create, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_cleans_interrupted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_isolation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_private_ranges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_overlapping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_under_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tail_cluster, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_bitmap_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prealloc_chunks, setup, teardown),
  };
  log_set_level(LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
