/* test_capture_vol.c — a golden volume made from a struct vol
 * (image_stream_from_vol), as a capture does: an overlay over a snapshot of
 * an OS volume cloned from a golden volume, with writes at every layer.
 * Checked against an in-memory model: the new golden volume's bytes, its
 * SHA-256 (GnuTLS over the model) and CRC-32 (zlib), that zero runs are
 * holes, that writes to the live volume after the snapshot are not in it,
 * that the OS volume and the source golden volume are unchanged; the
 * snapshot's block_status against the model under concurrent writes; and a
 * stopped capture leaves no file. */
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "util/util.h"
#include "vol/image.h"
#include "vol/vol.h"

#define MIB (1u << 20)
#define SIZE (64u * MIB)  /* the OS volume */
#define GSIZE (48u * MIB) /* its golden volume */

static char dir[] = "/tmp/streamer-test-capture-XXXXXX";
static struct vol_store *vs;
static uint32_t seed = 12345;

static uint32_t rnd(void) {
  seed = seed * 1103515245u + 12345u;
  return seed >> 8;
}

static void fill(unsigned char *p, size_t n, unsigned char tag) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(tag + (rnd() & 0x7f) + 1); /* never zero */
}

static void sha_hex(const unsigned char *p, size_t n, char hex[65]) {
  unsigned char d[32];
  assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, p, n, d), 0);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static int entries(const char *sub) {
  char p[400];
  snprintf(p, sizeof p, "%s/store/%s", dir, sub);
  CLEANUP_FREE char *cmd = util_strdup_printf("ls -A '%s' | wc -l", p);
  FILE *f = popen(cmd, "r");
  int n = -1;
  assert_int_equal(fscanf(f, "%d", &n), 1);
  pclose(f);
  return n;
}

/* A golden volume from bytes (a plain raw stream). */
static void golden_from(const char *id, const unsigned char *p, size_t n) {
  struct err e;
  err_init(&e);
  struct image_stream *s = NULL;
  struct image_info info;
  char sha[65];
  assert_int_equal(image_stream_open(vs, id, IMAGE_RAW, &s, &e), 0);
  assert_int_equal(image_stream_write(s, p, n, &e), 0);
  assert_int_equal(image_stream_commit(s, NULL, NULL, &info, &e), 0);
  assert_int_equal(image_stream_sha256(s, NULL, NULL, NULL, sha, &e), 0);
  image_stream_close(s);
}

static void read_golden(const char *id, unsigned char *buf, size_t n) {
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal((uint64_t)st.st_size, n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
    assert_true(r > 0);
    got += (size_t)r;
  }
  close(fd);
}

static uint64_t golden_blocks(const char *id) {
  CLEANUP_FREE char *path = vol_golden_path(vs, id);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_blocks * 512u;
}

static int setup(void **state) {
  assert_non_null(mkdtemp(dir));
  char p[400];
  snprintf(p, sizeof p, "%s/store", dir);
  struct err e;
  err_init(&e);
  return vol_store_open(&vs, p, &e);
}

static int teardown(void **state) {
  vol_store_close(vs);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
  return system(cmd);
}

static void vwrite(struct vol *v, unsigned char *model, const void *p, size_t n, uint64_t off) {
  struct err e;
  err_init(&e);
  if (vol_pwrite(v, p, n, off, &e) < 0)
    fail_msg("write at %llu: %s", (unsigned long long)off, e.message);
  if (model) memcpy(model + off, p, n);
}

static void test_capture_layers(void **state) {
  struct err e;
  err_init(&e);
  unsigned char *g = calloc(1, GSIZE);
  /* golden: data islands of varied sizes and alignments, zeros between */
  for (int i = 0; i < 40; i++) {
    size_t n = 512 + rnd() % (600 * 1024), off = rnd() % (GSIZE - n);
    fill(g + off, n, 1);
  }
  golden_from("base", g, GSIZE);
  char base_sha[65];
  sha_hex(g, GSIZE, base_sha);

  assert_int_equal(vol_os_create(vs, "os1", "base", SIZE, &e), 0);
  struct vol *os = NULL;
  assert_int_equal(vol_os_open(vs, "os1", &os, &e), 0);
  unsigned char *model = calloc(1, SIZE); /* what the capture must hold */
  memcpy(model, g, GSIZE);
  unsigned char *buf = malloc(2 * MIB);
  /* the clone: data over zeros, zeros over data, data past the golden end */
  for (int i = 0; i < 30; i++) {
    size_t n = 1 + rnd() % (2 * MIB), off = rnd() % (SIZE - n);
    if (i % 3 == 0)
      memset(buf, 0, n);
    else
      fill(buf, n, 2);
    vwrite(os, model, buf, n, off);
  }
  memset(buf, 0, MIB); /* a whole cluster run of zeros written over golden data */
  vwrite(os, model, buf, MIB, 4 * MIB);
  unsigned char *os_model = malloc(SIZE);
  memcpy(os_model, model, SIZE);

  struct vol *snap = NULL;
  assert_int_equal(vol_os_snapshot(os, &snap, &e), 0);
  /* after the snapshot: the live volume changes, the snapshot does not */
  for (int i = 0; i < 20; i++) {
    size_t n = 1 + rnd() % MIB, off = rnd() % (SIZE - n);
    fill(buf, n, 3);
    vwrite(os, os_model, buf, n, off);
  }
  assert_int_equal(vol_discard(os, 8 * MIB, 2 * MIB, &e), 0);
  memset(os_model + 8 * MIB, 0, 2 * MIB);

  /* block_status of the snapshot agrees with the model: deallocated = zeros */
  for (uint64_t off = 0; off < SIZE;) {
    uint64_t run = 0;
    int st = snap->ops->block_status(snap, off, SIZE - off, &run, &e);
    assert_true(st == VOL_MAPPED || st == VOL_DEALLOCATED);
    assert_true(run > 0 && off + run <= SIZE);
    if (st == VOL_DEALLOCATED)
      for (uint64_t i = 0; i < run; i++)
        if (model[off + i])
          fail_msg("deallocated at %llu holds data", (unsigned long long)(off + i));
    off += run;
  }

  struct vol *ov = NULL;
  assert_int_equal(vol_overlay_open(snap, 0, &ov, &e), 0);
  for (int i = 0; i < 10; i++) { /* what a capture plan writes */
    size_t n = 1 + rnd() % (256 * 1024), off = rnd() % (SIZE - n);
    if (i % 2)
      memset(buf, 0, n);
    else
      fill(buf, n, 4);
    vwrite(ov, model, buf, n, off);
  }
  assert_int_equal(vol_discard(ov, 20 * MIB, MIB, &e), 0);
  memset(model + 20 * MIB, 0, MIB);

  /* stopped: nothing is left */
  int stop = 1;
  struct image_stream *s = NULL;
  assert_int_equal(image_stream_open(vs, "stopped", IMAGE_RAW, &s, &e), 0);
  assert_int_equal(image_stream_from_vol(s, ov, &stop, NULL, NULL, &e), -1);
  assert_string_equal(e.code, "SHUTTING_DOWN");
  err_clear(&e);
  image_stream_close(s);
  assert_false(vol_golden_exists(vs, "stopped"));
  assert_int_equal(entries("golden"), 1); /* base */

  /* the capture */
  stop = 0;
  assert_int_equal(image_stream_open(vs, "cap", IMAGE_RAW, &s, &e), 0);
  if (image_stream_from_vol(s, ov, &stop, NULL, NULL, &e) < 0) fail_msg("%s", e.message);
  struct image_info info;
  if (image_stream_commit(s, NULL, NULL, &info, &e) < 0) fail_msg("%s", e.message);
  char sha[65], want[65];
  assert_int_equal(image_stream_sha256(s, NULL, NULL, NULL, sha, &e), 0);
  image_stream_close(s);
  sha_hex(model, SIZE, want);
  assert_string_equal(sha, want);
  assert_int_equal(info.size, SIZE);
  assert_int_equal(info.crc32, (uint32_t)crc32_z(0, model, SIZE));
  unsigned char *got = malloc(SIZE);
  read_golden("cap", got, SIZE);
  assert_memory_equal(got, model, SIZE);
  /* zeros are holes: allocated no more than the non-zero 4 KiB blocks (+ slack) */
  uint64_t nonzero = 0;
  for (size_t b = 0; b < SIZE; b += 4096) {
    size_t i = 0;
    while (i < 4096 && !model[b + i])
      i++;
    if (i < 4096) nonzero += 4096;
  }
  assert_true(golden_blocks("cap") <= nonzero + 64 * 1024);
  assert_true(info.allocated <= golden_blocks("cap") + 64 * 1024 &&
              golden_blocks("cap") <= info.allocated + 64 * 1024);
  assert_int_equal(image_sha256(vs, "cap", NULL, NULL, NULL, want, &e), 0);
  assert_string_equal(sha, want);

  /* the sources are untouched: the OS volume reads as its model, the golden as before */
  vol_close(ov);
  vol_close(snap);
  for (uint64_t off = 0; off < SIZE; off += 2 * MIB) {
    assert_int_equal(vol_pread(os, buf, 2 * MIB, off, &e), 0);
    assert_memory_equal(buf, os_model + off, 2 * MIB);
  }
  vol_close(os);
  read_golden("base", got, GSIZE);
  assert_memory_equal(got, g, GSIZE);
  assert_int_equal(image_sha256(vs, "base", NULL, NULL, NULL, want, &e), 0);
  assert_string_equal(want, base_sha);
  /* a capture of an existing id is refused before anything is written */
  assert_int_equal(image_stream_open(vs, "cap", IMAGE_RAW, &s, &e), -1);
  assert_string_equal(e.code, "VOL_EXISTS");
  err_clear(&e);
  free(got);
  free(buf);
  free(model);
  free(os_model);
  free(g);
}

/* The snapshot's block status while a writer changes the live volume:
 * every deallocated run reads as zeros in the snapshot. */
struct writer {
  struct vol *os;
  volatile int stop;
};

static void *write_loop(void *arg) {
  struct writer *w = arg;
  unsigned char buf[65536];
  uint32_t s = 99;
  struct err e;
  err_init(&e);
  while (!w->stop) {
    s = s * 1103515245u + 12345u;
    uint64_t off = ((uint64_t)(s >> 8) % (SIZE / 4096)) * 4096;
    if (off + sizeof buf > SIZE) off = SIZE - sizeof buf;
    if (s & 1) {
      memset(buf, (int)(s >> 24) | 1, sizeof buf);
      vol_pwrite(w->os, buf, sizeof buf, off, &e);
    } else {
      vol_discard(w->os, off, sizeof buf, &e);
    }
    err_clear(&e);
  }
  return NULL;
}

static void test_snapshot_status_under_writes(void **state) {
  struct err e;
  err_init(&e);
  unsigned char *g = calloc(1, GSIZE);
  for (int i = 0; i < 20; i++) {
    size_t n = 4096 + rnd() % MIB, off = rnd() % (GSIZE - n);
    fill(g + off, n, 5);
  }
  golden_from("base2", g, GSIZE);
  assert_int_equal(vol_os_create(vs, "os2", "base2", SIZE, &e), 0);
  struct vol *os = NULL;
  assert_int_equal(vol_os_open(vs, "os2", &os, &e), 0);
  struct writer w = {.os = os};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, write_loop, &w), 0);
  unsigned char *zeros = calloc(1, SIZE), *buf = malloc(SIZE);
  for (int round = 0; round < 20; round++) {
    struct vol *snap = NULL;
    assert_int_equal(vol_os_snapshot(os, &snap, &e), 0);
    for (uint64_t off = 0; off < SIZE;) {
      uint64_t run = 0;
      int st = snap->ops->block_status(snap, off, SIZE - off, &run, &e);
      assert_true(st >= 0 && run > 0);
      if (st == VOL_DEALLOCATED) {
        assert_int_equal(vol_pread(snap, buf, run, off, &e), 0);
        assert_memory_equal(buf, zeros, run);
      }
      off += run;
    }
    vol_close(snap);
  }
  w.stop = 1;
  pthread_join(th, NULL);
  vol_close(os);
  free(zeros);
  free(buf);
  free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_capture_layers),
      cmocka_unit_test(test_snapshot_status_under_writes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
