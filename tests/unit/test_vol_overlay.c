/* test_vol_overlay.c — the throwaway overlay (vol_overlay_open): random
 * writes, discards and reads against an in-memory model over a read-only
 * base of an odd size, the base file unchanged byte for byte, block status
 * (written, discarded, the base's holes), the memory cap (a refused write
 * changes nothing and is counted; discards give memory back), table growth
 * past thousands of clusters, range errors, and threads writing and reading
 * their own regions at once. */
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

#define CS 4096u
#define BASE_SIZE ((8u << 20) + 1000u) /* not a multiple of the cluster size */

static char dir[64];
static char base_path[128];
static unsigned char *base_copy;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

static void fill_random(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(rnd() >> 56);
}

/* A base file of random data with a hole of 1 MiB at 2 MiB (sparse). */
static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-overlay-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(base_path, sizeof base_path, "%s/base.raw", dir);
  base_copy = calloc(1, BASE_SIZE);
  assert_non_null(base_copy);
  fill_random(base_copy, 2u << 20);
  fill_random(base_copy + (3u << 20), BASE_SIZE - (3u << 20));
  int fd = open(base_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, base_copy, 2u << 20, 0), 2u << 20);
  assert_int_equal(pwrite(fd, base_copy + (3u << 20), BASE_SIZE - (3u << 20), 3u << 20),
                   BASE_SIZE - (3u << 20));
  close(fd);
  return 0;
}

static int teardown(void **state) {
  free(base_copy);
  base_copy = NULL;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static struct vol *open_base(void) {
  struct err e;
  err_init(&e);
  struct vol *b = NULL;
  assert_int_equal(vol_file_open(base_path, 1, &b, &e), 0);
  assert_true(vol_read_only(b));
  return b;
}

static void check_base_unchanged(void) {
  unsigned char *now = malloc(BASE_SIZE);
  assert_non_null(now);
  int fd = open(base_path, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, now, BASE_SIZE, 0), BASE_SIZE);
  close(fd);
  assert_memory_equal(now, base_copy, BASE_SIZE);
  free(now);
}

static void check_all(struct vol *ov, const unsigned char *model) {
  unsigned char *got = malloc(BASE_SIZE);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_pread(ov, got, BASE_SIZE, 0, &e), 0);
  assert_memory_equal(got, model, BASE_SIZE);
  free(got);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_model(void **state) {
  struct vol *base = open_base(), *ov = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_overlay_open(base, 0, &ov, &e), 0);
  assert_int_equal(vol_size(ov), BASE_SIZE);
  assert_false(vol_read_only(ov));
  assert_int_equal(vol_allocated(ov), 0);
  unsigned char *model = malloc(BASE_SIZE);
  memcpy(model, base_copy, BASE_SIZE);
  check_all(ov, model);
  unsigned char buf[3 * CS + 17];
  for (int i = 0; i < 4000; i++) {
    uint64_t len = rnd() % sizeof buf + 1;
    uint64_t off = rnd() % (BASE_SIZE - len + 1);
    int op = (int)(rnd() % 10);
    if (op < 5) {
      fill_random(buf, len);
      assert_int_equal(vol_pwrite(ov, buf, len, off, &e), 0);
      memcpy(model + off, buf, len);
    } else if (op < 7) {
      if (rnd() % 4 == 0) len = rnd() % (64 * CS) + 1; /* some long discards */
      if (off + len > BASE_SIZE) len = BASE_SIZE - off;
      assert_int_equal(vol_discard(ov, off, len, &e), 0);
      memset(model + off, 0, len);
    } else {
      assert_int_equal(vol_pread(ov, buf, len, off, &e), 0);
      assert_memory_equal(buf, model + off, len);
    }
  }
  /* the very end: a short last cluster */
  memset(buf, 0xab, 1000);
  assert_int_equal(vol_pwrite(ov, buf, 1000, BASE_SIZE - 1000, &e), 0);
  memcpy(model + BASE_SIZE - 1000, buf, 1000);
  assert_int_equal(vol_discard(ov, BASE_SIZE - 500, 500, &e), 0);
  memset(model + BASE_SIZE - 500, 0, 500);
  check_all(ov, model);
  assert_true(vol_allocated(ov) > 0);
  assert_int_equal(vol_flush(ov, &e), 0);
  assert_int_equal(vol_overlay_refused(ov), 0);
  vol_close(ov);
  check_base_unchanged();
  /* a new overlay over the same base sees none of it */
  assert_int_equal(vol_overlay_open(base, 0, &ov, &e), 0);
  check_all(ov, base_copy);
  vol_close(ov);
  vol_close(base);
  free(model);
}

static void test_block_status(void **state) {
  struct vol *base = open_base(), *ov = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_overlay_open(base, 0, &ov, &e), 0);
  uint64_t run = 0;
  /* untouched: the base's answer (data at 0, a hole at 2 MiB) */
  assert_int_equal(ov->ops->block_status(ov, 0, 1u << 20, &run, &e), VOL_MAPPED);
  assert_true(run > 0 && run <= 1u << 20);
  assert_int_equal(ov->ops->block_status(ov, 2u << 20, 1u << 20, &run, &e), VOL_DEALLOCATED);
  /* a written cluster inside the hole, a discarded run inside the data */
  unsigned char buf[CS];
  memset(buf, 7, sizeof buf);
  assert_int_equal(vol_pwrite(ov, buf, CS, (2u << 20) + 8 * CS, &e), 0);
  assert_int_equal(ov->ops->block_status(ov, 2u << 20, 1u << 20, &run, &e), VOL_DEALLOCATED);
  assert_int_equal(run, 8 * CS);
  assert_int_equal(ov->ops->block_status(ov, (2u << 20) + 8 * CS, 1u << 20, &run, &e), VOL_MAPPED);
  assert_int_equal(run, CS);
  assert_int_equal(vol_discard(ov, 4 * CS, 10 * CS, &e), 0);
  assert_int_equal(ov->ops->block_status(ov, 4 * CS, 100 * CS, &run, &e), VOL_DEALLOCATED);
  assert_int_equal(run, 10 * CS);
  assert_int_equal(ov->ops->block_status(ov, 0, 100 * CS, &run, &e), VOL_MAPPED);
  assert_int_equal(run, 4 * CS);
  vol_close(ov);
  vol_close(base);
}

/* Memory is capped: the table (1024 slots of 16 bytes) plus 8 clusters. */
static void test_cap(void **state) {
  struct vol *base = open_base(), *ov = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_overlay_open(base, 1024 * 16 + 8 * CS, &ov, &e), 0);
  unsigned char *model = malloc(BASE_SIZE);
  memcpy(model, base_copy, BASE_SIZE);
  unsigned char buf[9 * CS];
  fill_random(buf, sizeof buf);
  /* 6 clusters fit; 3 more do not: refused whole */
  assert_int_equal(vol_pwrite(ov, buf, 6 * CS, 0, &e), 0);
  memcpy(model, buf, 6 * CS);
  assert_int_equal(vol_pwrite(ov, buf, 3 * CS, 100 * CS, &e), -1);
  assert_int_equal(e.status, 507);
  assert_string_equal(e.code, "VOL_OVERLAY_FULL");
  err_clear(&e);
  assert_int_equal(vol_overlay_refused(ov), 1);
  check_all(ov, model);
  /* overwriting held clusters needs nothing more */
  assert_int_equal(vol_pwrite(ov, buf + 100, 6 * CS, 0, &e), 0);
  memcpy(model, buf + 100, 6 * CS);
  /* an unaligned write into 2 more clusters fits exactly (8) */
  assert_int_equal(vol_pwrite(ov, buf, CS, 200 * CS + 10, &e), 0);
  memcpy(model + 200 * CS + 10, buf, CS);
  assert_int_equal(vol_pwrite(ov, buf, 1, 300 * CS, &e), -1);
  err_clear(&e);
  assert_int_equal(vol_overlay_refused(ov), 2);
  /* a discard gives buffers back */
  assert_int_equal(vol_discard(ov, 0, 6 * CS, &e), 0);
  memset(model, 0, 6 * CS);
  assert_int_equal(vol_allocated(ov), 2 * CS);
  assert_int_equal(vol_pwrite(ov, buf, 3 * CS, 100 * CS, &e), 0);
  memcpy(model + 100 * CS, buf, 3 * CS);
  check_all(ov, model);
  vol_close(ov);
  check_base_unchanged();
  vol_close(base);
  free(model);
}

static void test_growth_and_ranges(void **state) {
  struct vol *base = open_base(), *ov = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_overlay_open(base, 0, &ov, &e), 0);
  /* every other cluster of the volume: > 1000 entries, the table grows */
  unsigned char *model = malloc(BASE_SIZE);
  memcpy(model, base_copy, BASE_SIZE);
  unsigned char b[CS];
  for (uint64_t c = 0; c < BASE_SIZE / CS; c += 2) {
    memset(b, (int)(c & 0xff), CS);
    assert_int_equal(vol_pwrite(ov, b, CS, c * CS, &e), 0);
    memcpy(model + c * CS, b, CS);
  }
  check_all(ov, model);
  assert_int_equal(vol_allocated(ov), (uint64_t)((BASE_SIZE / CS + 1) / 2) * CS);
  /* beyond the end */
  assert_int_equal(vol_pread(ov, b, 2, BASE_SIZE - 1, &e), -1);
  assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
  err_clear(&e);
  assert_int_equal(vol_pwrite(ov, b, 1, BASE_SIZE, &e), -1);
  err_clear(&e);
  assert_int_equal(vol_discard(ov, BASE_SIZE - 10, 11, &e), -1);
  err_clear(&e);
  /* the whole volume discarded reads as zeros and holds nothing */
  assert_int_equal(vol_discard(ov, 0, BASE_SIZE, &e), 0);
  assert_int_equal(vol_allocated(ov), 0);
  memset(model, 0, BASE_SIZE);
  check_all(ov, model);
  vol_close(ov);
  check_base_unchanged();
  vol_close(base);
  free(model);
}

struct worker {
  struct vol *ov;
  int id;
  int failed;
};

/* Each thread owns a 256 KiB region: writes a pattern, reads it back, and
 * reads the shared untouched region at the end of the volume. */
static void *work(void *p) {
  struct worker *w = p;
  struct err e;
  err_init(&e);
  uint64_t base = (uint64_t)w->id << 18;
  unsigned char buf[5000], got[5000];
  for (int i = 0; i < 2000 && !w->failed; i++) {
    uint64_t off = base + (uint64_t)(i * 7919) % ((1u << 18) - sizeof buf);
    memset(buf, (w->id * 31 + i) & 0xff, sizeof buf);
    if (vol_pwrite(w->ov, buf, sizeof buf, off, &e) < 0 ||
        vol_pread(w->ov, got, sizeof got, off, &e) < 0 || memcmp(buf, got, sizeof buf) != 0)
      w->failed = 1;
    if (vol_pread(w->ov, got, sizeof got, (6u << 20) + (uint64_t)i * 13, &e) < 0 ||
        memcmp(got, base_copy + (6u << 20) + (uint64_t)i * 13, sizeof got) != 0)
      w->failed = 1;
  }
  return NULL;
}

static void test_threads(void **state) {
  struct vol *base = open_base(), *ov = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_overlay_open(base, 0, &ov, &e), 0);
  pthread_t th[8];
  struct worker w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (struct worker){.ov = ov, .id = i};
    assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    assert_false(w[i].failed);
  }
  vol_close(ov);
  check_base_unchanged();
  vol_close(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_block_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_growth_and_ranges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
