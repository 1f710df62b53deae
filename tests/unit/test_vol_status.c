/* test_vol_status.c — block_status (what GET LBA STATUS reports): a golden
 * volume's holes are deallocated and its data mapped; a clone maps what it
 * wrote, falls through to the golden volume elsewhere, reports zeros past
 * the golden size and discarded ranges as deallocated; a file volume follows
 * its holes. Also vol_nowait: a read that misses the page cache fails with
 * vol_would_block instead of waiting (checked on a file dropped from the
 * cache with posix_fadvise, where the kernel honours it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vol/vol.h"

static char dir[64];
static struct vol_store *vs;
#define MiB (1024u * 1024u)

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-volst-XXXXXX");
  assert_non_null(mkdtemp(dir));
  struct err e;
  err_init(&e);
  assert_int_equal(vol_store_open(&vs, dir, &e), 0);
  return 0;
}

static int teardown(void **state) {
  vol_store_close(vs);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

/* status at off, and the run it reports (whole range len) */
static int status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run) {
  struct err e;
  err_init(&e);
  assert_non_null(v->ops->block_status);
  int s = v->ops->block_status(v, off, len, run, &e);
  assert_true(s == VOL_MAPPED || s == VOL_DEALLOCATED);
  assert_true(*run >= 1 && *run <= len);
  return s;
}

static void golden_and_clone(void **state) {
  struct err e;
  err_init(&e);
  /* golden: 4 MiB, data in [0, 1 MiB), a hole after */
  char *tmp = vol_golden_tmp_path(vs, "g");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 4 * MiB), 0);
  char *buf = malloc(MiB);
  memset(buf, 0x5a, MiB);
  assert_int_equal(pwrite(fd, buf, MiB, 0), (ssize_t)MiB);
  close(fd);
  free(tmp);
  assert_int_equal(vol_golden_commit(vs, "g", &e), 0);
  struct vol *g = NULL;
  assert_int_equal(vol_golden_open(vs, "g", &g, &e), 0);
  uint64_t run;
  assert_int_equal(status(g, 0, 4 * MiB, &run), VOL_MAPPED);
  assert_int_equal(run, MiB);
  assert_int_equal(status(g, MiB, 3 * MiB, &run), VOL_DEALLOCATED);
  assert_int_equal(run, 3 * MiB);
  vol_close(g);

  /* clone of 8 MiB: golden data, golden hole, beyond the golden size */
  assert_int_equal(vol_os_create(vs, "c", "g", 8 * MiB, &e), 0);
  struct vol *c = NULL;
  assert_int_equal(vol_os_open(vs, "c", &c, &e), 0);
  assert_int_equal(status(c, 0, 8 * MiB, &run), VOL_MAPPED);
  assert_int_equal(run, MiB);
  assert_int_equal(status(c, MiB, 7 * MiB, &run), VOL_DEALLOCATED);
  assert_int_equal(status(c, 6 * MiB, 2 * MiB, &run), VOL_DEALLOCATED);
  assert_int_equal(run, 2 * MiB);
  /* a write in the golden hole and one past the golden end are mapped */
  assert_int_equal(vol_pwrite(c, buf, 65536, 2 * MiB, &e), 0);
  assert_int_equal(vol_pwrite(c, buf, 4096, 5 * MiB, &e), 0);
  assert_int_equal(status(c, 2 * MiB, MiB, &run), VOL_MAPPED);
  assert_int_equal(run, 65536);
  assert_int_equal(status(c, 2 * MiB + 65536, 4096, &run), VOL_DEALLOCATED);
  assert_int_equal(status(c, 5 * MiB, 4096, &run), VOL_MAPPED);
  /* discard of written and of golden-backed ranges reads as deallocated */
  assert_int_equal(vol_discard(c, 2 * MiB, 65536, &e), 0);
  assert_int_equal(status(c, 2 * MiB, 65536, &run), VOL_DEALLOCATED);
  assert_int_equal(vol_discard(c, 0, 65536, &e), 0);
  assert_int_equal(status(c, 0, 65536, &run), VOL_DEALLOCATED);
  assert_int_equal(status(c, 65536, 4096, &run), VOL_MAPPED);
  /* out of range */
  assert_int_equal(c->ops->block_status(c, 8 * MiB, 1, &run, &e), -1);
  vol_close(c);
  free(buf);
}

static void file_volume_and_nowait(void **state) {
  struct err e;
  err_init(&e);
  char path[128];
  snprintf(path, sizeof path, "%s/file.img", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 2 * MiB), 0);
  char *buf = malloc(MiB);
  memset(buf, 7, MiB);
  assert_int_equal(pwrite(fd, buf, MiB, MiB), (ssize_t)MiB);
  assert_int_equal(fsync(fd), 0);
  struct vol *v = NULL;
  assert_int_equal(vol_file_open(path, 0, &v, &e), 0);
  uint64_t run;
  assert_int_equal(status(v, 0, 2 * MiB, &run), VOL_DEALLOCATED);
  assert_int_equal(run, MiB);
  assert_int_equal(status(v, MiB, MiB, &run), VOL_MAPPED);
  /* cached: a non-blocking read succeeds */
  assert_int_equal(vol_pread(v, buf, 4096, MiB, &e), 0);
  vol_nowait = 1;
  vol_would_block = 0;
  assert_int_equal(vol_pread(v, buf, 4096, MiB, &e), 0);
  assert_int_equal(vol_would_block, 0);
  /* dropped from the cache: the non-blocking read gives up at once */
  assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  int r = vol_pread(v, buf, 4096, MiB + 65536, &e);
  if (r < 0) assert_int_equal(vol_would_block, 1);
  vol_nowait = 0;
  vol_would_block = 0;
  assert_int_equal(vol_pread(v, buf, 4096, MiB + 65536, &e), 0);
  assert_int_equal(buf[0], 7);
  vol_close(v);
  close(fd);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(golden_and_clone, setup, teardown),
      cmocka_unit_test_setup_teardown(file_volume_and_nowait, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
