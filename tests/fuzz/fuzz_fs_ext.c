/* fuzz_fs_ext.c — libFuzzer target for the ext2/3/4 code (src/fs/ext.c) and
 * the libext2fs paths it drives. An input is a small disk image, sparse:
 *
 *   byte 0      image size: (byte & 63) + 1 times 64 KiB (64 KiB .. 4 MiB)
 *   byte 1      bit 0: after the read-only walk, open it read-write and change it
 *   then        records: le32 offset (modulo the size), le16 length, the bytes
 *
 * applied over zeros (tests/fuzz/make_corpus_fs_ext.py turns mkfs images into
 * such records). The image is opened read-only through a memory struct vol and
 * walked — statvfs, readdir from "/" (bounded depth and count), lstat/stat of
 * every entry, reads of files, readlink — and, when asked, opened read-write
 * for a few changes (mkdir, create, write, symlink, rename, unlink, truncate,
 * sync). Every failure must be a clean error; crashes, sanitizer reports and
 * hangs fail the run. Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a volume over memory ---------------------------------------------------- */

struct mem_vol {
  struct vol base;
  uint8_t *buf;
};

static int mem_range(struct vol *v, size_t len, uint64_t off, struct err *e) {
  if (off > v->size || len > v->size - off) {
    err_set(e, 400, "VOL_OUT_OF_RANGE", "I/O beyond the end of the volume");
    return -1;
  }
  return 0;
}
static int mem_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  if (mem_range(v, len, off, e) < 0) return -1;
  memcpy(buf, ((struct mem_vol *)v)->buf + off, len);
  return 0;
}
static int mem_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  if (v->read_only) {
    err_set(e, 400, "VOL_READ_ONLY", "read-only");
    return -1;
  }
  if (mem_range(v, len, off, e) < 0) return -1;
  memcpy(((struct mem_vol *)v)->buf + off, buf, len);
  return 0;
}
static int mem_flush(struct vol *v, struct err *e) { return 0; }
static int mem_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  if (mem_range(v, len, off, e) < 0) return -1;
  memset(((struct mem_vol *)v)->buf + off, 0, len);
  return 0;
}
static uint64_t mem_allocated(struct vol *v) { return v->size; }
static void mem_close(struct vol *v) {}
static const struct vol_ops mem_ops = {.pread = mem_pread,
                                       .pwrite = mem_pwrite,
                                       .flush = mem_flush,
                                       .discard = mem_discard,
                                       .allocated = mem_allocated,
                                       .close = mem_close};

/* ---- the walk ------------------------------------------------------------------ */

#define MAX_DEPTH 6
#define MAX_ENTRIES 256
#define MAX_READ 65536

static char *first_file; /* a regular file met on the walk (for the writes) */

static void walk(struct fs *f, const char *dir, int depth, int *budget) {
  struct err e;
  err_init(&e);
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  if (f->ops->readdir(f, dir, &ents, &n, &e) < 0) return;
  static char buf[MAX_READ];
  for (size_t i = 0; i < n; i++) {
    if (--*budget < 0) break;
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", ents[i].name);
    struct fs_stat st;
    err_init(&e);
    if (f->ops->lstat(f, path, &st, &e) < 0) continue;
    err_init(&e);
    char *target = NULL;
    size_t got;
    switch (st.mode & 0170000) {
    case 0040000:
      if (depth < MAX_DEPTH) walk(f, path, depth + 1, budget);
      break;
    case 0100000:
      f->ops->read(f, path, buf, sizeof buf, 0, &got, &e);
      err_init(&e);
      if (st.size > 100) f->ops->read(f, path, buf, 100, st.size - 100, &got, &e);
      if (!first_file) first_file = strdup(path);
      break;
    case 0120000:
      if (f->ops->readlink(f, path, &target, &e) == 0) free(target);
      err_init(&e);
      f->ops->stat(f, path, &st, &e);
      break;
    }
  }
  for (size_t i = 0; i < n; i++)
    free(ents[i].name);
  free(ents);
}

static void change(struct fs *f) {
  struct err e;
  static char data[5000];
  memset(data, 'f', sizeof data);
  err_init(&e);
  f->ops->mkdir(f, "/fz", 0755, &e);
  err_init(&e);
  f->ops->write(f, "/fz/a", data, sizeof data, 0, FS_O_CREAT, 0644, &e);
  err_init(&e);
  f->ops->symlink(f, "a-target-longer-than-sixty-bytes-so-that-it-needs-a-block-of-its-own",
                  "/fz/slow", &e);
  err_init(&e);
  f->ops->rename(f, "/fz/a", "/fz/b", &e);
  if (first_file) {
    err_init(&e);
    f->ops->write(f, first_file, data, 100, 10, 0, 0, &e);
    err_init(&e);
    f->ops->truncate(f, first_file, 3, &e);
    err_init(&e);
    f->ops->rename(f, first_file, "/fz/moved", &e);
    err_init(&e);
    f->ops->unlink(f, "/fz/moved", &e);
  }
  err_init(&e);
  f->ops->rmdir(f, "/lost+found", &e);
  err_init(&e);
  f->ops->sync(f, &e);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  log_set_level((enum log_level)(LOG_ERROR + 1)); /* damaged images are expected */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t img = ((size_t)(data[0] & 63) + 1) << 16;
  int rw = data[1] & 1;
  uint8_t *buf = calloc(1, img);
  if (!buf) return 0;
  for (size_t p = 2; p + 6 <= size;) {
    uint32_t off = (uint32_t)data[p] | (uint32_t)data[p + 1] << 8 | (uint32_t)data[p + 2] << 16 |
                   (uint32_t)data[p + 3] << 24;
    size_t len = (size_t)data[p + 4] | (size_t)data[p + 5] << 8;
    p += 6;
    if (len > size - p) len = size - p;
    off %= img;
    memcpy(buf + off, data + p, len < img - off ? len : img - off);
    p += len;
  }
  struct mem_vol mv = {{&mem_ops, img, 0}, buf};
  struct err e;
  err_init(&e);
  struct fs *f = NULL;
  first_file = NULL;
  if (fs_ext_open(&mv.base, 1, &f, &e) == 0) {
    struct fs_statvfs sv;
    f->ops->statvfs(f, &sv, &e);
    int budget = MAX_ENTRIES;
    walk(f, "/", 0, &budget);
    struct fs_stat st;
    err_init(&e);
    f->ops->stat(f, "/lost+found/../.", &st, &e);
    fs_close(f);
    f = NULL;
    if (rw && fs_ext_open(&mv.base, 0, &f, &e) == 0) {
      change(f);
      fs_close(f);
    }
  }
  err_clear(&e);
  free(first_file);
  first_file = NULL;
  free(buf);
  return 0;
}
