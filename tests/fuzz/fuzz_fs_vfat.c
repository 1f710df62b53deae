/* fuzz_fs_vfat.c — libFuzzer target for the vfat filesystem (src/fs/vfat.c):
 * the input is a FAT image (trailing zeros may be left out: the volume is
 * padded to the size its boot sector declares, at most 8 MiB) opened from a
 * memory volume, then listed recursively, its files read, and written to:
 * create, write past the end, mkdir, rename, truncate, unlink, rmdir, sync,
 * and a second open reads back what the first wrote. Nothing may crash,
 * leak, hang or read or write outside the volume. Built and run by
 * `make fuzz`. Seeds (tests/fuzz/corpus/fuzz_fs_vfat/) are small FAT12, FAT16
 * and FAT32 images made with mkfs.vfat and mtools, trailing zeros cut. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a volume in memory ----------------------------------------------------- */

struct mvol {
  struct vol base;
  uint8_t *buf;
};

static int mv_check(struct vol *v, size_t len, uint64_t off, struct err *e) {
  if (off > v->size || len > v->size - off) {
    err_set(e, 400, "VOL_OUT_OF_RANGE", "beyond the end of the volume");
    return -1;
  }
  return 0;
}
static int mv_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  if (mv_check(v, len, off, e) < 0) return -1;
  memcpy(buf, ((struct mvol *)v)->buf + off, len);
  return 0;
}
static int mv_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  if (mv_check(v, len, off, e) < 0) return -1;
  memcpy(((struct mvol *)v)->buf + off, buf, len);
  return 0;
}
static int mv_flush(struct vol *v, struct err *e) { return 0; }
static int mv_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  if (mv_check(v, (size_t)len, off, e) < 0) return -1;
  memset(((struct mvol *)v)->buf + off, 0, (size_t)len);
  return 0;
}
static uint64_t mv_allocated(struct vol *v) { return v->size; }
static void mv_close(struct vol *v) {}
static const struct vol_ops mv_ops = {.pread = mv_pread,
                                      .pwrite = mv_pwrite,
                                      .flush = mv_flush,
                                      .discard = mv_discard,
                                      .allocated = mv_allocated,
                                      .close = mv_close};

/* ---- the exercise ------------------------------------------------------------ */

static void free_ents(struct fs_dirent *ents, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ents[i].name);
  free(ents);
}

static char first_file[512], first_dir[512];
static uint8_t rbuf[65536];

static void walk(struct fs *f, const char *path, int depth, int *budget) {
  struct fs_dirent *ents;
  size_t n;
  struct err e;
  err_init(&e);
  if (depth > 4 || --*budget < 0 || f->ops->readdir(f, path, &ents, &n, &e) < 0) return;
  for (size_t i = 0; i<n && * budget> 0; i++) {
    char child[512];
    if (snprintf(child, sizeof child, "%s/%s", strcmp(path, "/") ? path : "", ents[i].name) >=
        (int)sizeof child)
      continue;
    struct fs_stat st;
    if (f->ops->stat(f, child, &st, &e) < 0) continue;
    if (ents[i].type == DT_DIR) {
      if (!first_dir[0]) snprintf(first_dir, sizeof first_dir, "%s", child);
      walk(f, child, depth + 1, budget);
    } else {
      size_t got;
      if (!first_file[0]) snprintf(first_file, sizeof first_file, "%s", child);
      (void)f->ops->read(f, child, rbuf, sizeof rbuf, 0, &got, &e);
      (void)f->ops->read(f, child, rbuf, 100, st.size > 50 ? st.size - 50 : 0, &got, &e);
    }
  }
  free_ents(ents, n);
}

static void exercise(struct fs *f) {
  struct err e;
  err_init(&e);
  int budget = 200;
  first_file[0] = first_dir[0] = 0;
  walk(f, "/", 0, &budget);
  struct fs_statvfs sv;
  (void)f->ops->statvfs(f, &sv, &e);
  memset(rbuf, 'x', 5000);
  (void)f->ops->write(f, "/fuzz.txt", rbuf, 5000, 0, FS_O_CREAT | FS_O_TRUNC, 0644, &e);
  (void)f->ops->mkdir(f, "/Fuzz Dir", 0755, &e);
  (void)f->ops->write(f, "/Fuzz Dir/A Long Name.bin", rbuf, 3000, 70000, FS_O_CREAT, 0644, &e);
  (void)f->ops->rename(f, "/fuzz.txt", "/Fuzz Dir/moved.txt", &e);
  (void)f->ops->truncate(f, "/Fuzz Dir/moved.txt", 100, &e);
  if (first_file[0]) {
    (void)f->ops->write(f, first_file, rbuf, 700, 1000, 0, 0, &e);
    (void)f->ops->truncate(f, first_file, 10, &e);
    (void)f->ops->rename(f, first_file, "/Fuzz Dir/renamed", &e);
    (void)f->ops->unlink(f, "/Fuzz Dir/renamed", &e);
  }
  if (first_dir[0]) {
    (void)f->ops->rename(f, first_dir, "/Fuzz Dir/sub", &e);
    (void)f->ops->rmdir(f, "/Fuzz Dir/sub", &e);
  }
  (void)f->ops->utimens(f, "/Fuzz Dir", 0, 0, 1600000000, 0, &e);
  (void)f->ops->sync(f, &e);
  err_clear(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 64 || size > (8u << 20)) return 0;
  uint64_t vsize = size;
  if (size >= 40) { /* the size the boot sector declares, if larger */
    uint64_t bps = data[11] | data[12] << 8;
    uint64_t tot = data[19] | data[20] << 8;
    if (!tot) tot = data[32] | data[33] << 8 | data[34] << 16 | (uint64_t)data[35] << 24;
    if (bps * tot > vsize && bps * tot <= (8u << 20)) vsize = bps * tot;
  }
  struct mvol mv = {{&mv_ops, vsize, 0}, calloc(1, (size_t)vsize)};
  if (!mv.buf) return 0;
  memcpy(mv.buf, data, size);
  for (int round = 0; round < 2; round++) {
    struct fs *f;
    struct err e;
    err_init(&e);
    if (fs_vfat_open(&mv.base, 0, &f, &e) < 0) break;
    exercise(f);
    fs_close(f);
  }
  free(mv.buf);
  return 0;
}
