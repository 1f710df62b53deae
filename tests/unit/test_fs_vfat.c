/* test_fs_vfat.c — the native vfat filesystem (src/fs/vfat.c) against
 * independent tools: images are made here with mkfs.vfat (dosfstools) on
 * image files for FAT12, FAT16 and FAT32, files are put in and taken out
 * with mtools (mcopy, mmd, mdir, mattrib), and after every test that writes,
 * `fsck.vfat -n` must find the image clean. Covers long and unicode names,
 * 8.3 names and their case flags, directories growing across clusters, big
 * fragmented files, sparse writes and truncation, rename/unlink/rmdir edge
 * cases, a full disk (FS_NO_SPACE, nothing half-written), injected I/O
 * errors (every write failing in turn: the operation fails and the
 * filesystem stays clean), damaged images (bad BPB, FAT loops, cross-links,
 * out-of-range clusters, directory loops: FS_CORRUPT, never a hang),
 * read-only mode, timestamps, statvfs and FSInfo, and a random sequence of
 * operations checked against an in-memory model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "vol/vol.h"

static char dir[64];
static char img[128];

/* ---- helpers ------------------------------------------------------------ */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* stdout + stderr of a command, malloc'd. */
static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t cap = 4096, n = 0;
  char *out = malloc(cap);
  size_t r;
  while ((r = fread(out + n, 1, cap - n - 1, p)) > 0) {
    n += r;
    if (cap - n < 2) out = realloc(out, cap *= 2);
  }
  out[n] = 0;
  pclose(p);
  return out;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
static void fill_random(void *buf, size_t n) {
  unsigned char *p = buf;
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(rnd() >> 56);
}

/* A new image file of `size` bytes formatted by mkfs.vfat with `args`. */
static void mkimg(const char *size, const char *args) {
  unlink(img);
  assert_int_equal(
      sh("truncate -s %s '%s' && mkfs.vfat %s '%s' >/dev/null 2>&1", size, img, args, img), 0);
}

static struct vol *cur_vol;
static struct fs *open_ro(int ro) {
  struct err e;
  err_init(&e);
  assert_int_equal(vol_file_open(img, 0, &cur_vol, &e), 0);
  struct fs *f = NULL;
  int rc = fs_vfat_open(cur_vol, ro, &f, &e);
  if (rc) fail_msg("fs_vfat_open: %s", e.message);
  assert_string_equal(f->ops->type, "vfat");
  return f;
}
static struct fs *open_fs(void) { return open_ro(0); }
static void close_fs(struct fs *f) {
  fs_close(f);
  vol_close(cur_vol);
  cur_vol = NULL;
}

static void fsck_clean(void) {
  char *out = sh_out("fsck.vfat -n '%s'; echo rc=$?", img);
  if (!strstr(out, "rc=0")) fail_msg("fsck.vfat -n reports problems:\n%s", out);
  free(out);
}

/* Used clusters according to fsck.vfat ("N files, used/total clusters"). */
static long fsck_used(long *total) {
  char *out = sh_out("fsck.vfat -n '%s'", img);
  char *p = strstr(out, " files, ");
  assert_non_null(p);
  long used = 0;
  assert_int_equal(sscanf(p, " files, %ld/%ld clusters", &used, total), 2);
  free(out);
  return used;
}

/* A file out of the image with mcopy: malloc'd, *len set; NULL if mcopy fails. */
static char *mread(const char *path, size_t *len) {
  char out[256];
  snprintf(out, sizeof out, "%s/mread.out", dir);
  unlink(out);
  if (sh("mcopy -n -i '%s' '::%s' '%s' >/dev/null 2>&1", img, path, out)) return NULL;
  struct err e;
  err_init(&e);
  char *data = util_read_file(out, len, &e);
  assert_non_null(data);
  return data;
}

static void mput(const char *path, const void *data, size_t len) {
  char in[256];
  snprintf(in, sizeof in, "%s/mput.in", dir);
  FILE *fp = fopen(in, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(data, 1, len, fp), len);
  fclose(fp);
  assert_int_equal(sh("mcopy -o -i '%s' '%s' '::%s'", img, in, path), 0);
}

static void must(int rc, struct err *e) {
  if (rc != 0) fail_msg("unexpected error: %s (%s)", e->message, e->code);
}
#define OK(call)                                                                                   \
  do {                                                                                             \
    struct err e_;                                                                                 \
    err_init(&e_);                                                                                 \
    struct err *e = &e_;                                                                           \
    must(call, e);                                                                                 \
    err_clear(e);                                                                                  \
  } while (0)
/* call must fail with status and code */
#define FAILS(call, st, cd)                                                                        \
  do {                                                                                             \
    struct err e_;                                                                                 \
    err_init(&e_);                                                                                 \
    struct err *e = &e_;                                                                           \
    if ((call) == 0) fail_msg("%s: succeeded, expected %s", #call, cd);                            \
    if (e->status != (st) || strcmp(e->code, (cd)))                                                \
      fail_msg("%s: got %d %s (%s), expected %d %s", #call, e->status, e->code, e->message, st,    \
               cd);                                                                                \
    err_clear(e);                                                                                  \
  } while (0)

static void put(struct fs *f, const char *path, const void *data, size_t len) {
  OK(f->ops->write(f, path, data, len, 0, FS_O_CREAT | FS_O_TRUNC, 0644, e));
}

/* The whole file through our code: malloc'd. */
static char *get(struct fs *f, const char *path, size_t *len) {
  struct fs_stat st;
  OK(f->ops->stat(f, path, &st, e));
  char *buf = malloc(st.size + 1);
  size_t got = 0;
  OK(f->ops->read(f, path, buf, st.size + 1, 0, &got, e));
  assert_int_equal(got, st.size);
  *len = got;
  return buf;
}

static void check_get(struct fs *f, const char *path, const void *want, size_t len) {
  size_t n;
  char *got = get(f, path, &n);
  assert_int_equal(n, len);
  assert_memory_equal(got, want, len);
  free(got);
}

static void check_mread(const char *path, const void *want, size_t len) {
  size_t n;
  char *got = mread(path, &n);
  if (!got) fail_msg("mcopy could not read %s", path);
  assert_int_equal(n, len);
  assert_memory_equal(got, want, len);
  free(got);
}

static void free_ents(struct fs_dirent *ents, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ents[i].name);
  free(ents);
}

/* Sorted names of a directory, '\n'-joined, malloc'd. */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}
static char *list(struct fs *f, const char *path) {
  struct fs_dirent *ents;
  size_t n;
  OK(f->ops->readdir(f, path, &ents, &n, e));
  char **names = malloc((n + 1) * sizeof *names);
  size_t total = 1;
  for (size_t i = 0; i < n; i++) {
    names[i] = ents[i].name;
    total += strlen(names[i]) + 1;
  }
  qsort(names, n, sizeof *names, cmp_str);
  char *out = calloc(1, total);
  for (size_t i = 0; i < n; i++) {
    strcat(out, names[i]);
    if (i + 1 < n) strcat(out, "\n");
  }
  free(names);
  free_ents(ents, n);
  return out;
}

static uint64_t bfree(struct fs *f) {
  struct fs_statvfs sv;
  OK(f->ops->statvfs(f, &sv, e));
  return sv.bfree;
}

/* ---- raw image access (an independent reading of the BPB) ------------------ */

struct geo {
  uint32_t bps, spc, reserved, nfats, fatsz, root_ent, bits;
  uint64_t fat_off, root_off, data_off;
};

static uint8_t *img_load(size_t *len) {
  struct err e;
  err_init(&e);
  uint8_t *d = (uint8_t *)util_read_file(img, len, &e);
  assert_non_null(d);
  return d;
}
static void img_save(const uint8_t *d, size_t len) {
  FILE *fp = fopen(img, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(d, 1, len, fp), len);
  fclose(fp);
}
static uint32_t rd16(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static void wr16(uint8_t *p, uint32_t x) {
  p[0] = (uint8_t)x;
  p[1] = (uint8_t)(x >> 8);
}
static void wr32(uint8_t *p, uint32_t x) {
  wr16(p, x);
  wr16(p + 2, x >> 16);
}

static struct geo geo_of(const uint8_t *d) {
  struct geo g;
  g.bps = rd16(d + 11);
  g.spc = d[13];
  g.reserved = rd16(d + 14);
  g.nfats = d[16];
  g.root_ent = rd16(d + 17);
  g.fatsz = rd16(d + 22) ? rd16(d + 22) : rd32(d + 36);
  uint32_t total = rd16(d + 19) ? rd16(d + 19) : rd32(d + 32);
  g.fat_off = (uint64_t)g.reserved * g.bps;
  g.root_off = g.fat_off + (uint64_t)g.nfats * g.fatsz * g.bps;
  g.data_off = g.root_off + ((uint64_t)g.root_ent * 32 + g.bps - 1) / g.bps * g.bps;
  uint32_t ncl = (uint32_t)((total - g.data_off / g.bps) / g.spc);
  g.bits = rd16(d + 22) == 0 ? 32 : ncl < 4085 ? 12 : 16;
  return g;
}

/* A FAT16/32 entry in every FAT copy. */
static void fat_wr(uint8_t *d, const struct geo *g, uint32_t c, uint32_t v) {
  for (uint32_t k = 0; k < g->nfats; k++) {
    uint8_t *f = d + g->fat_off + (uint64_t)k * g->fatsz * g->bps;
    if (g->bits == 16)
      wr16(f + 2 * c, v);
    else
      wr32(f + 4 * c, v);
  }
}
static uint64_t clus(const struct geo *g, uint32_t c) {
  return g->data_off + (uint64_t)(c - 2) * g->spc * g->bps;
}

/* Offset of the live 8.3 entry named `sn` (11 bytes) anywhere in the image. */
static uint64_t find_sfn(const uint8_t *d, size_t len, const char *sn) {
  struct geo g = geo_of(d);
  for (uint64_t o = g.root_off; o + 32 <= len; o += 32)
    if (!memcmp(d + o, sn, 11) && d[o + 11] != 0x0F) return o;
  fail_msg("no entry %.11s in the image", sn);
  return 0;
}
static uint32_t ent_clus(const uint8_t *p, const struct geo *g) {
  return rd16(p + 26) | (g->bits == 32 ? rd16(p + 20) << 16 : 0);
}

/* ---- tests ------------------------------------------------------------------ */

/* 12, 16, 32: small clusters (many of them, chains cross sectors of the
 * FAT); 1604, 3208: FAT16 with 2 KiB and FAT32 with 4 KiB clusters, like
 * default-formatted ESPs. */
static const char *fmt_args(int bits) {
  switch (bits) {
  case 12: return "-F 12";
  case 16: return "-F 16 -s 1";
  case 1604: return "-F 16 -s 4";
  case 3208: return "-F 32 -s 8";
  default: return "-F 32 -s 1";
  }
}
static const char *fmt_size(int bits) {
  switch (bits) {
  case 12: return "2M";
  case 16: return "8M";
  case 1604: return "64M";
  case 3208: return "300M";
  default: return "40M";
  }
}

/* The ESP round trip: directories, small and multi-cluster files written by
 * us, read by mtools; the tree read back after a reopen; fsck clean. */
static void test_roundtrip(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  struct fs *f = open_fs();
  static char big[300000];
  fill_random(big, sizeof big);
  put(f, "/hello.txt", "hello\n", 6);
  OK(f->ops->mkdir(f, "/EFI", 0755, e));
  OK(f->ops->mkdir(f, "/EFI/BOOT", 0755, e));
  put(f, "/EFI/BOOT/message.txt", big, sizeof big);
  put(f, "/EFI/BOOT/empty", "", 0);
  OK(f->ops->mkdir(f, "/EFI/HPE", 0755, e));
  OK(f->ops->mkdir(f, "/EFI/HPE/isdeploy", 0755, e));
  put(f, "/EFI/HPE/isdeploy/HPE-ImageStreamer.bash", "#!/bin/bash\necho hi\n", 20);
  char *l = list(f, "/");
  assert_string_equal(l, "EFI\nhello.txt");
  free(l);
  l = list(f, "/EFI/BOOT");
  assert_string_equal(l, "empty\nmessage.txt");
  free(l);
  struct fs_stat st;
  OK(f->ops->stat(f, "/EFI/BOOT/message.txt", &st, e));
  assert_int_equal(st.size, sizeof big);
  assert_int_equal(st.mode, S_IFREG | 0644);
  assert_int_equal(st.nlink, 1);
  OK(f->ops->stat(f, "/EFI", &st, e));
  assert_int_equal(st.mode, S_IFDIR | 0755);
  assert_int_equal(st.nlink, 2 + 2);
  OK(f->ops->stat(f, "/", &st, e));
  assert_int_equal(st.mode, S_IFDIR | 0755);
  assert_int_equal(st.ino, 1);
  check_get(f, "/EFI/BOOT/message.txt", big, sizeof big);
  OK(f->ops->sync(f, e));
  /* visible to mtools before close (sync wrote everything) */
  check_mread("/EFI/BOOT/message.txt", big, sizeof big);
  close_fs(f);
  fsck_clean();
  check_mread("/hello.txt", "hello\n", 6);
  check_mread("/EFI/BOOT/empty", "", 0);
  check_mread("/EFI/HPE/isdeploy/HPE-ImageStreamer.bash", "#!/bin/bash\necho hi\n", 20);
  f = open_fs();
  check_get(f, "/EFI/BOOT/message.txt", big, sizeof big);
  check_get(f, "/hello.txt", "hello\n", 6);
  /* names are found whatever their case, and through their 8.3 form */
  check_get(f, "/HELLO.TXT", "hello\n", 6);
  check_get(f, "/efi/boot/MESSAGE.TXT", big, sizeof big);
  check_get(f, "/EFI/./BOOT/../BOOT//message.txt", big, sizeof big);
  close_fs(f);
}

/* A tree made by mtools (long, unicode, mixed-case, 8.3 names; nested
 * directories) reads back through our code exactly. */
static void test_read_mtools_tree(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  const char *names[] = {
      "Long File Name With Spaces.txt",
      "ünïcödé-名前.txt",
      "UPPER.TXT",
      "lower.txt",
      "MiXeD.TxT",
      "a.b.c.d",
      "x123456789x123456789x123456789x123456789x123456789x123456789x123456789x123456789"
      "x123456789x123456789x123456789x123456789x123456789x123456789x123456789x123456789"
      "x123456789x123456789x123456789x123456789", /* 200: mtools fails longer ones here */
  };
  size_t nn = sizeof names / sizeof *names;
  assert_int_equal(sh("mmd -i '%s' ::/dir ::/dir/sub", img), 0);
  for (size_t i = 0; i < nn; i++) {
    char path[400];
    snprintf(path, sizeof path, "/dir/sub/%s", names[i]);
    char data[64];
    int len = snprintf(data, sizeof data, "content of %zu\n", i);
    mput(path, data, (size_t)len);
  }
  static char big[200000];
  fill_random(big, sizeof big);
  mput("/dir/big.bin", big, sizeof big);
  struct fs *f = open_ro(1);
  struct fs_dirent *ents;
  size_t n;
  OK(f->ops->readdir(f, "/dir/sub", &ents, &n, e));
  assert_int_equal(n, nn);
  for (size_t i = 0; i < nn; i++) {
    size_t k;
    for (k = 0; k < n; k++)
      if (!strcmp(ents[k].name, names[i])) break;
    if (k == n) fail_msg("%s not listed", names[i]);
    assert_int_equal(ents[k].type, DT_REG);
    char path[400], data[64];
    snprintf(path, sizeof path, "/dir/sub/%s", names[i]);
    int len = snprintf(data, sizeof data, "content of %zu\n", i);
    check_get(f, path, data, (size_t)len);
  }
  free_ents(ents, n);
  check_get(f, "/dir/big.bin", big, sizeof big);
  size_t got;
  char buf[100];
  OK(f->ops->read(f, "/dir/big.bin", buf, sizeof buf, 150000, &got, e));
  assert_int_equal(got, sizeof buf);
  assert_memory_equal(buf, big + 150000, sizeof buf);
  OK(f->ops->read(f, "/dir/big.bin", buf, sizeof buf, sizeof big - 10, &got, e));
  assert_int_equal(got, 10);
  OK(f->ops->read(f, "/dir/big.bin", buf, sizeof buf, sizeof big + 10, &got, e));
  assert_int_equal(got, 0);
  FAILS(f->ops->read(f, "/dir", buf, 1, 0, &got, e), 400, FS_EISDIR);
  FAILS(f->ops->read(f, "/nope", buf, 1, 0, &got, e), 404, FS_ENOENT);
  FAILS(f->ops->read(f, "/dir/big.bin/x", buf, 1, 0, &got, e), 400, FS_ENOTDIR);
  FAILS(f->ops->readdir(f, "/dir/big.bin", &ents, &n, e), 400, FS_ENOTDIR);
  FAILS(f->ops->stat(f, "relative", &(struct fs_stat){0}, e), 400, FS_EINVAL);
  close_fs(f);
}

/* Names we create: 8.3 names in one case get no long entry (case flags in
 * byte 12), others get long entries and a unique ~N short name. */
static void test_names(void **state) {
  mkimg("8M", "-F 16 -s 1");
  struct fs *f = open_fs();
  OK(f->ops->mkdir(f, "/d", 0755, e));
  put(f, "/d/hello.txt", "a", 1);
  put(f, "/d/README", "b", 1);
  put(f, "/d/Foo.txt", "c", 1);
  put(f, "/d/readme.TXT", "d", 1);
  for (int i = 1; i <= 7; i++) {
    char p[64];
    snprintf(p, sizeof p, "/d/Long File Name %d.txt", i);
    put(f, p, "x", 1);
  }
  const char *uni = "/d/été € 日本", *emoji = "/d/smile 😀.txt";
  put(f, uni, "u", 1);
  put(f, emoji, "e", 1); /* beyond the BMP: a surrogate pair in the long name */
  char n255[300] = "/d/";
  for (int i = 0; i < 255; i++)
    n255[3 + i] = (char)('a' + i % 26);
  n255[258] = 0;
  put(f, n255, "long", 4);
  char n256[320];
  snprintf(n256, sizeof n256, "%sz", n255);
  FAILS(f->ops->write(f, n256, "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EINVAL);
  FAILS(f->ops->write(f, "/d/a:b", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EINVAL);
  FAILS(f->ops->write(f, "/d/a\x01", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EINVAL);
  FAILS(f->ops->write(f, "/d/bad\xff", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EINVAL);
  FAILS(f->ops->write(f, "/d/...", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EINVAL);
  /* trailing dots are dropped, like Linux */
  put(f, "/d/trail...", "t", 1);
  check_get(f, "/d/trail", "t", 1);
  /* an existing name in another case is the same file */
  FAILS(f->ops->write(f, "/d/HELLO.TXT", "x", 1, 0, FS_O_CREAT | FS_O_EXCL, 0644, e), 400,
        FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/d/hello.txt", 0755, e), 400, FS_EEXIST);
  check_get(f, "/d/LONGFI~1.TXT", "x", 1);
  close_fs(f);
  fsck_clean();
  size_t len;
  uint8_t *d = img_load(&len);
  uint64_t o = find_sfn(d, len, "HELLO   TXT");
  assert_int_equal(d[o + 12], 0x18);
  assert_true(d[o - 32 + 11] != 0x0F); /* no long entry before it */
  o = find_sfn(d, len, "README     ");
  assert_int_equal(d[o + 12], 0);
  assert_true(d[o - 32 + 11] != 0x0F);
  o = find_sfn(d, len, "README  TXT");
  assert_int_equal(d[o + 12], 0x08);
  o = find_sfn(d, len, "FOO     TXT"); /* mixed case: a long name, the 8.3 name without ~1 */
  assert_int_equal(d[o - 32 + 11], 0x0F);
  for (int i = 1; i <= 4; i++) {
    char sn[16];
    snprintf(sn, sizeof sn, "LONGFI~%cTXT", '0' + i);
    find_sfn(d, len, sn);
  }
  free(d);
  /* mtools sees every long name */
  char *out = sh_out("mdir -i '%s' ::/d", img);
  for (int i = 1; i <= 7; i++) {
    char p[64];
    snprintf(p, sizeof p, "Long File Name %d.txt", i);
    if (!strstr(out, p)) fail_msg("mdir does not show %s:\n%s", p, out);
  }
  assert_non_null(strstr(out, uni + 3));
  assert_non_null(strstr(out, n255 + 3));
  assert_non_null(strstr(out, "Foo.txt"));
  assert_non_null(strstr(out, "hello    txt"));
  free(out);
  check_mread("/d/Long File Name 7.txt", "x", 1);
  check_mread(uni, "u", 1);
  check_mread(n255, "long", 4);
  d = img_load(&len); /* mtools cannot show it: look for the UTF-16 pair itself */
  assert_non_null(memmem(d, len, "\x3d\xd8\x00\xde", 4));
  free(d);
  f = open_ro(1);
  check_get(f, uni, "u", 1);
  check_get(f, emoji, "e", 1);
  char *l = list(f, "/d");
  assert_non_null(strstr(l, "hello.txt\n"));
  assert_non_null(strstr(l, "readme.TXT"));
  assert_non_null(strstr(l, "README\n"));
  free(l);
  close_fs(f);
}

/* Thousands of entries: a directory growing over many clusters, deletes
 * and re-creates reusing slots; the FAT16 root directory filling up. */
static void test_many_files(void **state) {
  mkimg("16M", "-F 16 -s 1");
  struct fs *f = open_fs();
  OK(f->ops->mkdir(f, "/d", 0755, e));
  enum { N = 1500 };
  char p[128];
  for (int i = 0; i < N; i++) {
    snprintf(p, sizeof p, "/d/file number %04d with a long name.txt", i);
    put(f, p, p, strlen(p));
  }
  struct fs_stat st;
  OK(f->ops->stat(f, "/d", &st, e));
  assert_true(st.size > 100 * 512); /* many clusters */
  for (int i = 0; i < N; i += 2) {
    snprintf(p, sizeof p, "/d/file number %04d with a long name.txt", i);
    OK(f->ops->unlink(f, p, e));
  }
  for (int i = 0; i < N; i += 4) {
    snprintf(p, sizeof p, "/d/again %d.txt", i);
    put(f, p, p, strlen(p));
  }
  OK(f->ops->sync(f, e));
  struct fs_dirent *ents;
  size_t n;
  OK(f->ops->readdir(f, "/d", &ents, &n, e));
  assert_int_equal(n, N / 2 + N / 4);
  free_ents(ents, n);
  for (int i = 1; i < N; i += 2) {
    snprintf(p, sizeof p, "/d/file number %04d with a long name.txt", i);
    check_get(f, p, p, strlen(p));
  }
  /* the root holds 512 entries: the 513th name fails cleanly */
  int made = 0, rc;
  for (;;) {
    snprintf(p, sizeof p, "/R%d", made);
    struct err e;
    err_init(&e);
    rc = f->ops->write(f, p, "r", 1, 0, FS_O_CREAT, 0644, &e);
    if (rc) {
      assert_string_equal(e.code, FS_ENOSPC);
      break;
    }
    made++;
  }
  assert_int_equal(made, 512 - 1); /* and /d */
  FAILS(f->ops->stat(f, p, &st, e), 404, FS_ENOENT);
  close_fs(f);
  fsck_clean();
  snprintf(p, sizeof p, "/d/file number %04d with a long name.txt", N - 1);
  check_mread(p, p, strlen(p));
  char *out = sh_out("mdir -i '%s' ::/d | grep -c 'again '", img);
  assert_int_equal(atoi(out), N / 4);
  free(out);
}

/* Big files over fragmented free space; overwrite, append, random reads. */
static void test_fragmented(void **state) {
  int bits = *(int *)*state;
  mkimg(bits == 32 ? "40M" : "8M", bits == 32 ? "-F 32 -s 1" : "-F 16 -s 1");
  struct fs *f = open_fs();
  char p[64];
  static char small[3000];
  for (int i = 0; i < 300; i++) {
    snprintf(p, sizeof p, "/s%d", i);
    put(f, p, small, sizeof small);
  }
  for (int i = 0; i < 300; i += 2) {
    snprintf(p, sizeof p, "/s%d", i);
    OK(f->ops->unlink(f, p, e));
  }
  size_t size = 1500000;
  char *big = malloc(size);
  fill_random(big, size);
  OK(f->ops->write(f, "/big", big, 100000, 0, FS_O_CREAT, 0644, e));
  for (size_t off = 100000; off < size; off += 77777) { /* appends */
    size_t n = size - off < 77777 ? size - off : 77777;
    OK(f->ops->write(f, "/big", big + off, n, 12345, FS_O_APPEND, 0, e));
  }
  check_get(f, "/big", big, size);
  for (int i = 0; i < 200; i++) { /* overwrites at random places */
    size_t off = rnd() % size, n = rnd() % 5000;
    if (off + n > size) n = size - off;
    fill_random(big + off, n);
    OK(f->ops->write(f, "/big", big + off, n, off, 0, 0, e));
  }
  for (int i = 0; i < 200; i++) {
    size_t off = rnd() % size, n = rnd() % 20000, got;
    char *buf = malloc(n + 1);
    OK(f->ops->read(f, "/big", buf, n, off, &got, e));
    assert_int_equal(got, off + n > size ? size - off : n);
    assert_memory_equal(buf, big + off, got);
    free(buf);
  }
  close_fs(f);
  fsck_clean();
  check_mread("/big", big, size);
  free(big);
}

/* Writes past the end fill with zeros; truncate grows (zeros) and shrinks
 * (clusters freed: the free count comes back). */
static void test_sparse_truncate(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  struct fs *f = open_fs();
  uint64_t free0 = bfree(f);
  /* stale data in clusters we free and get back must not reappear */
  static char junk[70000];
  memset(junk, 0xAB, sizeof junk);
  put(f, "/junk", junk, sizeof junk);
  OK(f->ops->unlink(f, "/junk", e));
  OK(f->ops->sync(f, e));
  static char want[300000];
  memset(want, 0, sizeof want);
  memcpy(want + 100000, "tail", 4);
  OK(f->ops->write(f, "/sparse", "tail", 4, 100000, FS_O_CREAT, 0644, e));
  check_get(f, "/sparse", want, 100004);
  OK(f->ops->truncate(f, "/sparse", 300000, e));
  check_get(f, "/sparse", want, 300000);
  OK(f->ops->truncate(f, "/sparse", 100002, e));
  check_get(f, "/sparse", want, 100002);
  memset(want + 100002, 0, 2);
  OK(f->ops->truncate(f, "/sparse", 100004, e)); /* the bytes cut are zeros again */
  check_get(f, "/sparse", want, 100004);
  OK(f->ops->write(f, "/sparse", "X", 1, 200000, 0, 0, e));
  want[200000] = 'X';
  check_get(f, "/sparse", want, 200001);
  OK(f->ops->truncate(f, "/sparse", 0, e));
  check_get(f, "/sparse", "", 0);
  assert_int_equal(bfree(f), free0);
  OK(f->ops->truncate(f, "/sparse", 5000, e));
  check_get(f, "/sparse", want, 5000);
  FAILS(f->ops->truncate(f, "/", 0, e), 400, FS_EISDIR);
  FAILS(f->ops->truncate(f, "/nope", 0, e), 404, FS_ENOENT);
  FAILS(f->ops->truncate(f, "/sparse", 1ull << 32, e), 422, FS_ENOTSUP);
  FAILS(f->ops->write(f, "/sparse", "x", 1, 0xFFFFFFFFull, 0, 0, e), 422, FS_ENOTSUP);
  /* O_TRUNC, O_EXCL, O_APPEND */
  put(f, "/t", "0123456789", 10);
  OK(f->ops->write(f, "/t", "ab", 2, 0, FS_O_TRUNC, 0, e));
  check_get(f, "/t", "ab", 2);
  OK(f->ops->write(f, "/t", "cd", 2, 0, FS_O_APPEND, 0, e));
  check_get(f, "/t", "abcd", 4);
  OK(f->ops->write(f, "/t", "X", 1, 1, 0, 0, e));
  check_get(f, "/t", "aXcd", 4);
  FAILS(f->ops->write(f, "/t", "x", 1, 0, FS_O_CREAT | FS_O_EXCL, 0644, e), 400, FS_EEXIST);
  FAILS(f->ops->write(f, "/u", "x", 1, 0, 0, 0, e), 404, FS_ENOENT);
  FAILS(f->ops->write(f, "/", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EISDIR);
  OK(f->ops->write(f, "/empty", "", 0, 0, FS_O_CREAT, 0644, e));
  check_get(f, "/empty", "", 0);
  close_fs(f);
  fsck_clean();
  check_mread("/sparse", want, 5000);
  check_mread("/t", "aXcd", 4);
}

/* rename(2) semantics. */
static void test_rename(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  struct fs *f = open_fs();
  OK(f->ops->mkdir(f, "/a", 0755, e));
  OK(f->ops->mkdir(f, "/b", 0755, e));
  OK(f->ops->mkdir(f, "/a/sub", 0755, e));
  put(f, "/a/sub/inner.txt", "inner", 5);
  put(f, "/a/f1", "one", 3);
  put(f, "/a/f2", "two", 3);
  /* same directory, new name */
  OK(f->ops->rename(f, "/a/f1", "/a/renamed one.txt", e));
  FAILS(f->ops->stat(f, "/a/f1", &(struct fs_stat){0}, e), 404, FS_ENOENT);
  check_get(f, "/a/renamed one.txt", "one", 3);
  /* across directories, replacing a file */
  put(f, "/b/target", "old", 3);
  OK(f->ops->rename(f, "/a/f2", "/b/target", e));
  check_get(f, "/b/target", "two", 3);
  FAILS(f->ops->stat(f, "/a/f2", &(struct fs_stat){0}, e), 404, FS_ENOENT);
  /* a directory moved: its ".." follows */
  OK(f->ops->rename(f, "/a/sub", "/b/sub", e));
  check_get(f, "/b/sub/inner.txt", "inner", 5);
  /* a change of case only */
  OK(f->ops->rename(f, "/b/target", "/b/TARGET", e));
  char *l = list(f, "/b");
  assert_string_equal(l, "TARGET\nsub");
  free(l);
  /* same name: nothing to do */
  OK(f->ops->rename(f, "/b/TARGET", "/b/TARGET", e));
  /* errors */
  FAILS(f->ops->rename(f, "/nope", "/x", e), 404, FS_ENOENT);
  FAILS(f->ops->rename(f, "/b/TARGET", "/nodir/x", e), 404, FS_ENOENT);
  FAILS(f->ops->rename(f, "/b", "/b/sub/b", e), 400, FS_EINVAL);
  FAILS(f->ops->rename(f, "/b", "/b/x", e), 400, FS_EINVAL);
  FAILS(f->ops->rename(f, "/b/TARGET", "/b/sub", e), 400, FS_EISDIR);
  FAILS(f->ops->rename(f, "/b/sub", "/b/TARGET", e), 400, FS_ENOTDIR);
  FAILS(f->ops->rename(f, "/a", "/b", e), 409, FS_ENOTEMPTY);
  FAILS(f->ops->rename(f, "/", "/x", e), 409, FS_EINVAL);
  FAILS(f->ops->rename(f, "/b/TARGET", "/b/TARGET/x", e), 400, FS_ENOTDIR);
  /* a directory replacing an empty one */
  OK(f->ops->mkdir(f, "/empty", 0755, e));
  OK(f->ops->rename(f, "/b/sub", "/empty", e));
  check_get(f, "/empty/inner.txt", "inner", 5);
  FAILS(f->ops->stat(f, "/b/sub", &(struct fs_stat){0}, e), 404, FS_ENOENT);
  /* and back down into a deeper directory */
  OK(f->ops->mkdir(f, "/a/x", 0755, e));
  OK(f->ops->mkdir(f, "/a/x/y", 0755, e));
  OK(f->ops->rename(f, "/empty", "/a/x/y/moved", e));
  check_get(f, "/a/x/y/moved/inner.txt", "inner", 5);
  close_fs(f);
  fsck_clean();
  check_mread("/a/x/y/moved/inner.txt", "inner", 5);
  check_mread("/b/TARGET", "two", 3);
  check_mread("/a/renamed one.txt", "one", 3);
  /* the moved directory's ".." names its new parent */
  size_t len;
  uint8_t *d = img_load(&len);
  struct geo g = geo_of(d);
  uint32_t y = ent_clus(d + find_sfn(d, len, "Y          "), &g);
  uint32_t moved = ent_clus(d + find_sfn(d, len, "MOVED      "), &g);
  const uint8_t *dotdot = d + clus(&g, moved) + 32;
  assert_memory_equal(dotdot, "..         ", 11);
  assert_int_equal(ent_clus(dotdot, &g), y);
  free(d);
}

static void test_unlink_rmdir(void **state) {
  mkimg("2M", "-F 12");
  struct fs *f = open_fs();
  uint64_t free0 = bfree(f);
  OK(f->ops->mkdir(f, "/d", 0755, e));
  OK(f->ops->mkdir(f, "/d/e", 0755, e));
  put(f, "/d/file", "x", 1);
  FAILS(f->ops->rmdir(f, "/d", e), 409, FS_ENOTEMPTY);
  FAILS(f->ops->rmdir(f, "/d/file", e), 400, FS_ENOTDIR);
  FAILS(f->ops->unlink(f, "/d", e), 400, FS_EISDIR);
  FAILS(f->ops->unlink(f, "/d/nope", e), 404, FS_ENOENT);
  FAILS(f->ops->unlink(f, "/", e), 400, FS_EISDIR);
  FAILS(f->ops->rmdir(f, "/", e), 409, FS_EINVAL);
  FAILS(f->ops->mkdir(f, "/", 0755, e), 400, FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/d/e", 0755, e), 400, FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/x/y", 0755, e), 404, FS_ENOENT);
  FAILS(f->ops->mkdir(f, "/d/file/y", 0755, e), 400, FS_ENOTDIR);
  OK(f->ops->unlink(f, "/d/file", e));
  OK(f->ops->rmdir(f, "/d/e", e));
  OK(f->ops->rmdir(f, "/d", e));
  assert_int_equal(bfree(f), free0);
  /* the freed names and clusters are usable again */
  OK(f->ops->mkdir(f, "/d", 0755, e));
  put(f, "/d/file", "y", 1);
  close_fs(f);
  fsck_clean();
  check_mread("/d/file", "y", 1);
}

/* A full disk: FS_NO_SPACE, and nothing half-written. */
static void test_full_disk(void **state) {
  int bits = *(int *)*state;
  mkimg(bits == 12 ? "300K" : bits == 16 ? "5M" : "34M", fmt_args(bits));
  struct fs *f = open_fs();
  struct fs_statvfs sv;
  OK(f->ops->statvfs(f, &sv, e));
  uint64_t cap = sv.bfree * sv.bsize;
  char *data = malloc(cap + 4096);
  fill_random(data, cap + 4096);
  put(f, "/keep", "keep", 4);
  OK(f->ops->mkdir(f, "/dir", 0755, e));
  uint64_t free1 = bfree(f);
  /* too big: refused, not created */
  FAILS(f->ops->write(f, "/big", data, cap, 0, FS_O_CREAT, 0644, e), 507, FS_ENOSPC);
  FAILS(f->ops->stat(f, "/big", &(struct fs_stat){0}, e), 404, FS_ENOENT);
  assert_int_equal(bfree(f), free1);
  /* an existing file that cannot grow keeps its content */
  FAILS(f->ops->write(f, "/keep", data, cap, 4, 0, 0, e), 507, FS_ENOSPC);
  check_get(f, "/keep", "keep", 4);
  FAILS(f->ops->write(f, "/keep", data, cap, 0, FS_O_TRUNC, 0, e), 507, FS_ENOSPC);
  check_get(f, "/keep", "keep", 4);
  FAILS(f->ops->truncate(f, "/keep", cap + sv.bsize, e), 507, FS_ENOSPC);
  check_get(f, "/keep", "keep", 4);
  assert_int_equal(bfree(f), free1);
  /* fill it exactly */
  uint64_t rest = free1 * sv.bsize;
  put(f, "/fill", data, rest);
  assert_int_equal(bfree(f), 0);
  FAILS(f->ops->write(f, "/fill", "x", 1, rest, 0, 0, e), 507, FS_ENOSPC);
  FAILS(f->ops->mkdir(f, "/dir2", 0755, e), 507, FS_ENOSPC);
  FAILS(f->ops->stat(f, "/dir2", &(struct fs_stat){0}, e), 404, FS_ENOENT);
  /* a directory that must grow to hold a name */
  int i, rc = 0;
  char p[64];
  for (i = 0; i < 200 && rc == 0; i++) {
    snprintf(p, sizeof p, "/dir/n%d", i);
    struct err e;
    err_init(&e);
    rc = f->ops->write(f, p, "", 0, 0, FS_O_CREAT, 0644, &e);
    if (rc) assert_string_equal(e.code, FS_ENOSPC);
  }
  assert_int_not_equal(rc, 0);
  FAILS(f->ops->stat(f, p, &(struct fs_stat){0}, e), 404, FS_ENOENT);
  check_get(f, "/fill", data, rest);
  close_fs(f);
  fsck_clean();
  check_mread("/fill", data, rest);
  check_mread("/keep", "keep", 4);
  free(data);
}

/* ---- injected I/O errors ------------------------------------------------- */

struct fvol {
  struct vol base;
  struct vol *inner;
  int writes, fail_at; /* the fail_at-th write (from 1) and later fail; 0: none */
  int log;             /* record writes and flushes in recs */
};
struct rec {
  char kind; /* 'W' write, 'F' flush */
  uint64_t off;
  size_t len;
  uint8_t *data;
};
static struct rec recs[1024];
static int nrec;
static int fv_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  return vol_pread(((struct fvol *)v)->inner, buf, len, off, e);
}
static int fv_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct fvol *fv = (struct fvol *)v;
  if (fv->fail_at && ++fv->writes >= fv->fail_at) {
    err_set(e, 500, "VOL_IO_ERROR", "injected write error");
    return -1;
  }
  if (fv->log && nrec < 1024) {
    recs[nrec] = (struct rec){'W', off, len, malloc(len)};
    memcpy(recs[nrec++].data, buf, len);
  }
  return vol_pwrite(fv->inner, buf, len, off, e);
}
static int fv_flush(struct vol *v, struct err *e) {
  struct fvol *fv = (struct fvol *)v;
  if (fv->log && nrec < 1024) recs[nrec++] = (struct rec){'F', 0, 0, NULL};
  return vol_flush(fv->inner, e);
}
static int fv_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct fvol *fv = (struct fvol *)v;
  if (fv->fail_at && ++fv->writes >= fv->fail_at) {
    err_set(e, 500, "VOL_IO_ERROR", "injected discard error");
    return -1;
  }
  return vol_discard(fv->inner, off, len, e);
}
static uint64_t fv_allocated(struct vol *v) { return vol_allocated(((struct fvol *)v)->inner); }
static void fv_close(struct vol *v) { (void)v; }
static const struct vol_ops fv_ops = {.pread = fv_pread,
                                      .pwrite = fv_pwrite,
                                      .flush = fv_flush,
                                      .discard = fv_discard,
                                      .allocated = fv_allocated,
                                      .close = fv_close};

/* Each write of an operation failing in turn: the operation fails, the
 * filesystem afterwards is what it was before (fsck clean, old data). */
static void test_io_errors(void **state) {
  int bits = *(int *)*state;
  static char big[40000];
  fill_random(big, sizeof big);
  for (int op = 0; op < 4; op++) {
    for (int k = 1;; k++) {
      mkimg(bits == 12 ? "1M" : fmt_size(bits), bits == 12 ? "-F 12 -s 1" : fmt_args(bits));
      struct fs *f = open_fs();
      OK(f->ops->mkdir(f, "/d", 0755, e));
      put(f, "/d/old", "old", 3);
      for (int i = 0; i < 14; i++) { /* the next name needs a new cluster */
        char p[64];
        snprintf(p, sizeof p, "/d/name %d", i);
        put(f, p, "", 0);
      }
      close_fs(f);
      struct vol *inner;
      struct err e0;
      err_init(&e0);
      assert_int_equal(vol_file_open(img, 0, &inner, &e0), 0);
      struct fvol fv = {{&fv_ops, inner->size, 0}, inner, 0, 0, 0};
      assert_int_equal(fs_vfat_open(&fv.base, 0, &f, &e0), 0);
      fv.fail_at = k;
      struct err e;
      err_init(&e);
      int rc;
      switch (op) {
      case 0:
        rc = f->ops->write(f, "/d/a new long name.bin", big, sizeof big, 0, FS_O_CREAT, 0644, &e);
        break;
      case 1: rc = f->ops->write(f, "/d/old", big, sizeof big, 1000, 0, 0, &e); break;
      case 2: rc = f->ops->mkdir(f, "/d/a new directory", 0755, &e); break;
      default: rc = f->ops->truncate(f, "/d/old", 100000, &e); break;
      }
      fv.fail_at = 0;
      if (rc == 0) { /* k is past the operation's writes: it succeeded */
        fs_close(f);
        vol_close(inner);
        fsck_clean();
        assert_true(k > 1);
        break;
      }
      assert_string_equal(e.code, FS_EIO);
      err_clear(&e);
      char *l = list(f, "/d");
      assert_null(strstr(l, "a new"));
      free(l);
      check_get(f, "/d/old", "old", 3);
      fs_close(f); /* syncs the (restored) state */
      vol_close(inner);
      fsck_clean();
      check_mread("/d/old", "old", 3);
    }
  }
}

/* Errors while syncing leave the changes pending: a later sync writes them. */
static void test_sync_error(void **state) {
  mkimg("8M", "-F 16 -s 1");
  struct vol *inner;
  struct err e0;
  err_init(&e0);
  assert_int_equal(vol_file_open(img, 0, &inner, &e0), 0);
  struct fvol fv = {{&fv_ops, inner->size, 0}, inner, 0, 0, 0};
  struct fs *f;
  assert_int_equal(fs_vfat_open(&fv.base, 0, &f, &e0), 0);
  OK(f->ops->mkdir(f, "/dir", 0755, e));
  put(f, "/dir/file", "data", 4);
  fv.writes = 0;
  fv.fail_at = 1;
  FAILS(f->ops->sync(f, e), 500, FS_EIO);
  fv.fail_at = 0;
  OK(f->ops->sync(f, e));
  fs_close(f);
  vol_close(inner);
  fsck_clean();
  check_mread("/dir/file", "data", 4);
}

/* Sync's order: the FAT (freed clusters still marked in use), flush, the
 * directories, flush, the FAT with them free, flush. A crash between any
 * two steps leaves at worst lost clusters. */
static void test_sync_order(void **state) {
  mkimg("8M", "-F 16 -s 1");
  static char old[5000];
  fill_random(old, sizeof old);
  mput("/old", old, sizeof old);
  size_t len;
  uint8_t *d = img_load(&len);
  struct geo g = geo_of(d);
  uint32_t oc = ent_clus(d + find_sfn(d, len, "OLD        "), &g);
  free(d);
  struct vol *inner;
  struct err e0;
  err_init(&e0);
  assert_int_equal(vol_file_open(img, 0, &inner, &e0), 0);
  struct fvol fv = {{&fv_ops, inner->size, 0}, inner, 0, 0, 0};
  struct fs *f;
  assert_int_equal(fs_vfat_open(&fv.base, 0, &f, &e0), 0);
  OK(f->ops->unlink(f, "/old", e));
  put(f, "/new", old, 3000);
  nrec = 0;
  fv.log = 1;
  OK(f->ops->sync(f, e));
  fv.log = 0;
  char pattern[1100];
  int np = 0;
  for (int i = 0; i < nrec; i++) {
    char k = recs[i].kind == 'F'        ? 'F'
             : recs[i].off < g.root_off ? 'A' /* the FAT copies */
             : recs[i].off < g.data_off ? 'D' /* the root directory */
                                        : '?';
    if (!np || pattern[np - 1] != k) pattern[np++] = k;
  }
  pattern[np] = 0;
  assert_string_equal(pattern, "AFDFAF");
  /* phase 1 wrote old's clusters as in use, phase 3 as free */
  const struct rec *first = NULL, *last = NULL;
  for (int i = 0; i < nrec; i++)
    if (recs[i].kind == 'W' && recs[i].off == g.fat_off) {
      if (!first) first = &recs[i];
      last = &recs[i];
    }
  assert_non_null(first);
  assert_true(first != last);
  for (uint32_t c = oc; c < oc + 10; c++) {
    assert_int_not_equal(rd16(first->data + 2 * c), 0);
    assert_int_equal(rd16(last->data + 2 * c), 0);
  }
  for (int i = 0; i < nrec; i++)
    free(recs[i].data);
  fs_close(f);
  vol_close(inner);
  fsck_clean();
}

/* ---- damaged images ------------------------------------------------------ */

static void expect_open_corrupt(void) {
  struct vol *v;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_file_open(img, 0, &v, &e), 0);
  struct fs *f = NULL;
  assert_int_not_equal(fs_vfat_open(v, 0, &f, &e), 0);
  assert_null(f);
  assert_int_equal(e.status, 500);
  assert_string_equal(e.code, FS_ECORRUPT);
  vol_close(v);
}

static void test_bad_bpb(void **state) {
  struct {
    int off, size;
    uint32_t val;
  } cases[] = {
      {11, 2, 0}, {11, 2, 1000}, {11, 2, 8192},   {13, 1, 3}, {13, 1, 0},    {14, 2, 0},
      {16, 1, 0}, {17, 2, 0},    {19, 2, 0xFFFF}, {22, 2, 1}, {21, 1, 0x12},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    mkimg("8M", "-F 16 -s 1");
    size_t len;
    uint8_t *d = img_load(&len);
    if (cases[i].off == 19) { /* more sectors than the device holds */
      wr16(d + 19, 0);
      wr32(d + 32, 64 * 1024);
    } else if (cases[i].size == 1) {
      d[cases[i].off] = (uint8_t)cases[i].val;
    } else {
      wr16(d + cases[i].off, cases[i].val);
    }
    img_save(d, len);
    free(d);
    expect_open_corrupt();
  }
  /* FAT32: root cluster out of range */
  mkimg("40M", "-F 32 -s 1");
  size_t len;
  uint8_t *d = img_load(&len);
  wr32(d + 44, 0x0FFFFFF0);
  img_save(d, len);
  free(d);
  expect_open_corrupt();
  /* too small to hold a boot sector */
  assert_int_equal(sh("truncate -s 100 '%s'", img), 0);
  expect_open_corrupt();
  /* all zeros */
  assert_int_equal(sh("truncate -s 0 '%s' && truncate -s 1M '%s'", img, img), 0);
  expect_open_corrupt();
}

/* An image with /loop.bin (4 clusters), /two.bin, /dir/inner, damaged by
 * fn; *sum = its checksum (nothing may write to it). */
static char dmg_data[2000];
static char *damaged(void (*fn)(uint8_t *d, size_t len, struct geo *g)) {
  mkimg("8M", "-F 16 -s 1");
  fill_random(dmg_data, sizeof dmg_data);
  mput("/loop.bin", dmg_data, sizeof dmg_data);
  mput("/two.bin", dmg_data, 1000);
  assert_int_equal(sh("mmd -i '%s' ::/dir", img), 0);
  mput("/dir/inner", "inner", 5);
  size_t len;
  uint8_t *d = img_load(&len);
  struct geo g = geo_of(d);
  fn(d, len, &g);
  img_save(d, len);
  free(d);
  return sh_out("sha256sum < '%s'", img);
}
static void unchanged(char *sum) {
  char *now = sh_out("sha256sum < '%s'", img);
  assert_string_equal(sum, now);
  free(sum);
  free(now);
}

static void dmg_loop(uint8_t *d, size_t len, struct geo *g) {
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  fat_wr(d, g, c + 3, c + 1); /* the last cluster points back */
}
static void dmg_self(uint8_t *d, size_t len, struct geo *g) {
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  fat_wr(d, g, c, c); /* a cluster pointing at itself */
}
static void dmg_range(uint8_t *d, size_t len, struct geo *g) {
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  fat_wr(d, g, c + 1, 0xFFF0);
}
static void dmg_free(uint8_t *d, size_t len, struct geo *g) {
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  fat_wr(d, g, c + 2, 0);
}
static void dmg_xlink(uint8_t *d, size_t len, struct geo *g) {
  uint8_t *two = d + find_sfn(d, len, "TWO     BIN");
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  wr16(two + 26, c); /* two.bin starts where loop.bin starts */
}
static void dmg_merge(uint8_t *d, size_t len, struct geo *g) {
  uint32_t c = ent_clus(d + find_sfn(d, len, "LOOP    BIN"), g);
  uint32_t t = ent_clus(d + find_sfn(d, len, "TWO     BIN"), g);
  fat_wr(d, g, t, c + 2); /* two.bin's chain runs into loop.bin's */
}
static void dmg_start_range(uint8_t *d, size_t len, struct geo *g) {
  wr16(d + find_sfn(d, len, "TWO     BIN") + 26, 0xFFF0);
}
static void dmg_dirloop(uint8_t *d, size_t len, struct geo *g) {
  /* a directory inside /dir that is /dir itself */
  uint32_t c = ent_clus(d + find_sfn(d, len, "DIR        "), g);
  uint8_t *inner = d + find_sfn(d, len, "INNER      ");
  memcpy(inner, "SELF       ", 11);
  inner[11] = 0x10;
  inner[12] = 0;
  wr16(inner + 26, c);
  wr32(inner + 28, 0);
}
static void dmg_size(uint8_t *d, size_t len, struct geo *g) {
  wr32(d + find_sfn(d, len, "TWO     BIN") + 28, 100000); /* larger than its chain */
}

static void test_damaged(void **state) {
  static char buf[200000];
  size_t got;
  struct fs *f;
  void (*chain_damage[])(uint8_t *, size_t, struct geo *) = {dmg_loop, dmg_self, dmg_range,
                                                             dmg_free};
  for (size_t i = 0; i < sizeof chain_damage / sizeof *chain_damage; i++) {
    char *sum = damaged(chain_damage[i]);
    f = open_fs();
    struct fs_stat st;
    OK(f->ops->stat(f, "/loop.bin", &st, e));
    FAILS(f->ops->read(f, "/loop.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
    FAILS(f->ops->unlink(f, "/loop.bin", e), 500, FS_ECORRUPT);
    FAILS(f->ops->write(f, "/loop.bin", "x", 1, 100000, 0, 0, e), 500, FS_ECORRUPT);
    FAILS(f->ops->truncate(f, "/loop.bin", 1, e), 500, FS_ECORRUPT);
    FAILS(f->ops->rename(f, "/two.bin", "/loop.bin", e), 500, FS_ECORRUPT);
    check_get(f, "/two.bin", dmg_data, 1000);
    check_get(f, "/dir/inner", "inner", 5);
    close_fs(f);
    unchanged(sum);
  }
  (void)state;
}

static void test_damaged_links(void **state) {
  static char buf[200000];
  size_t got;
  struct fs *f;
  char *sum;
  /* cross-linked entries: the second one is refused, the first works */
  sum = damaged(dmg_xlink);
  f = open_fs();
  OK(f->ops->read(f, "/loop.bin", buf, sizeof buf, 0, &got, e));
  assert_int_equal(got, 2000);
  FAILS(f->ops->read(f, "/two.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
  FAILS(f->ops->unlink(f, "/two.bin", e), 500, FS_ECORRUPT);
  close_fs(f);
  unchanged(sum);
  /* chains merging: both files refused */
  sum = damaged(dmg_merge);
  f = open_fs();
  FAILS(f->ops->read(f, "/two.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
  FAILS(f->ops->read(f, "/loop.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
  FAILS(f->ops->truncate(f, "/two.bin", 0, e), 500, FS_ECORRUPT);
  close_fs(f);
  unchanged(sum);
  sum = damaged(dmg_start_range);
  f = open_fs();
  FAILS(f->ops->read(f, "/two.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
  check_get(f, "/dir/inner", "inner", 5);
  close_fs(f);
  unchanged(sum);
  sum = damaged(dmg_size);
  f = open_fs();
  FAILS(f->ops->read(f, "/two.bin", buf, sizeof buf, 0, &got, e), 500, FS_ECORRUPT);
  FAILS(f->ops->write(f, "/two.bin", "x", 1, 200000, 0, 0, e), 500, FS_ECORRUPT);
  close_fs(f);
  unchanged(sum);
  /* a directory loop: listed, but entering it is refused (no endless walk) */
  sum = damaged(dmg_dirloop);
  f = open_fs();
  char *l = list(f, "/dir");
  assert_string_equal(l, "SELF");
  free(l);
  FAILS(f->ops->readdir(f, "/dir/SELF", &(struct fs_dirent *){0}, &got, e), 500, FS_ECORRUPT);
  FAILS(f->ops->stat(f, "/dir/SELF/SELF/SELF", &(struct fs_stat){0}, e), 500, FS_ECORRUPT);
  FAILS(f->ops->rmdir(f, "/dir/SELF", e), 500, FS_ECORRUPT);
  FAILS(f->ops->rmdir(f, "/dir", e), 409, FS_ENOTEMPTY);
  close_fs(f);
  unchanged(sum);
  (void)state;
}

/* ---- read-only, unsupported operations, times, statvfs -------------------- */

static void test_read_only(void **state) {
  mkimg("8M", "-F 16 -s 1");
  mput("/file", "data", 4);
  assert_int_equal(sh("mmd -i '%s' ::/dir", img), 0);
  char *before = sh_out("sha256sum < '%s'", img);
  struct fs *f = open_ro(1);
  assert_int_equal(f->read_only, 1);
  check_get(f, "/file", "data", 4);
  FAILS(f->ops->write(f, "/file", "x", 1, 0, 0, 0, e), 400, FS_EROFS);
  FAILS(f->ops->write(f, "/new", "x", 1, 0, FS_O_CREAT, 0644, e), 400, FS_EROFS);
  FAILS(f->ops->truncate(f, "/file", 0, e), 400, FS_EROFS);
  FAILS(f->ops->mkdir(f, "/d2", 0755, e), 400, FS_EROFS);
  FAILS(f->ops->rmdir(f, "/dir", e), 400, FS_EROFS);
  FAILS(f->ops->unlink(f, "/file", e), 400, FS_EROFS);
  FAILS(f->ops->rename(f, "/file", "/f2", e), 400, FS_EROFS);
  FAILS(f->ops->utimens(f, "/file", 0, UTIME_NOW, 0, UTIME_NOW, e), 400, FS_EROFS);
  FAILS(f->ops->chmod(f, "/file", 0444, e), 400, FS_EROFS);
  struct fs_statvfs sv;
  OK(f->ops->statvfs(f, &sv, e));
  assert_int_equal(sv.flag & ST_RDONLY, ST_RDONLY);
  OK(f->ops->sync(f, e));
  close_fs(f);
  char *after = sh_out("sha256sum < '%s'", img);
  assert_string_equal(before, after);
  free(before);
  free(after);
}

/* mattrib shows the read-only attribute as an R before the name. */
static int m_readonly(const char *path) {
  char *out = sh_out("mattrib -i '%s' '::%s'", img, path);
  char *name = strstr(out, "::");
  assert_non_null(name);
  *name = 0;
  int ro = strchr(out, 'R') != NULL;
  free(out);
  return ro;
}

static void test_unsupported(void **state) {
  mkimg("2M", "-F 12");
  struct fs *f = open_fs();
  put(f, "/file", "data", 4);
  OK(f->ops->mkdir(f, "/dir", 0755, e));
  FAILS(f->ops->symlink(f, "/file", "/link", e), 422, FS_ENOTSUP);
  FAILS(f->ops->link(f, "/file", "/link", e), 422, FS_ENOTSUP);
  char *t;
  FAILS(f->ops->readlink(f, "/file", &t, e), 422, FS_ENOTSUP);
  FAILS(f->ops->readlink(f, "/nope", &t, e), 404, FS_ENOENT);
  /* chmod as Linux's vfat: permission bits succeed, only write bits stick */
  struct fs_stat st;
  OK(f->ops->chmod(f, "/file", 0755, e));
  OK(f->ops->stat(f, "/file", &st, e));
  assert_int_equal(st.mode, S_IFREG | 0644);
  OK(f->ops->chmod(f, "/file", 0444, e));
  OK(f->ops->stat(f, "/file", &st, e));
  assert_int_equal(st.mode, S_IFREG | 0444);
  OK(f->ops->chmod(f, "/dir", 0500, e));
  OK(f->ops->stat(f, "/dir", &st, e));
  assert_int_equal(st.mode, S_IFDIR | 0755);
  FAILS(f->ops->chmod(f, "/file", 04755, e), 422, FS_ENOTSUP);
  FAILS(f->ops->chmod(f, "/nope", 0644, e), 404, FS_ENOENT);
  /* the read-only attribute does not stop root (guestfish) from writing */
  OK(f->ops->write(f, "/file", "DATA", 4, 0, 0, 0, e));
  OK(f->ops->chown(f, "/file", 0, 0, e));
  OK(f->ops->chown(f, "/file", UINT32_MAX, UINT32_MAX, e));
  FAILS(f->ops->chown(f, "/file", 1000, 1000, e), 422, FS_ENOTSUP);
  FAILS(f->ops->chown(f, "/nope", 0, 0, e), 404, FS_ENOENT);
  put(f, "/ro", "r", 1);
  OK(f->ops->write(f, "/ro2", "r", 1, 0, FS_O_CREAT, 0444, e));
  OK(f->ops->stat(f, "/ro2", &st, e));
  assert_int_equal(st.mode, S_IFREG | 0444);
  close_fs(f);
  fsck_clean();
  assert_true(m_readonly("/file"));
  assert_true(m_readonly("/ro2"));
  assert_false(m_readonly("/ro"));
  check_mread("/file", "DATA", 4);
}

static int64_t utc(int y, int mo, int d, int h, int mi, int s) {
  struct tm t = {
      .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
  return (int64_t)timegm(&t);
}

static void test_times(void **state) {
  mkimg("8M", "-F 16 -s 1");
  struct fs *f = open_fs();
  int64_t t0 = time(NULL);
  put(f, "/file", "x", 1);
  OK(f->ops->mkdir(f, "/dir", 0755, e));
  struct fs_stat st;
  OK(f->ops->stat(f, "/file", &st, e));
  assert_true(st.mtime >= t0 - 2 && st.mtime <= t0 + 2);
  assert_true(st.ctime >= t0 - 2 && st.ctime <= t0 + 2);
  assert_int_equal(st.mtime % 2, 0);
  assert_int_equal(st.atime % 86400, 0); /* access: a date */
  OK(f->ops->utimens(f, "/file", utc(2021, 3, 4, 10, 11, 12), 0, utc(2020, 5, 17, 13, 45, 31), 0,
                     e));
  OK(f->ops->stat(f, "/file", &st, e));
  assert_int_equal(st.mtime, utc(2020, 5, 17, 13, 45, 30)); /* 2 s resolution */
  assert_int_equal(st.atime, utc(2021, 3, 4, 0, 0, 0));
  /* out of FAT's range: clamped */
  OK(f->ops->utimens(f, "/dir", 0, UTIME_OMIT, 1000, 0, e));
  OK(f->ops->stat(f, "/dir", &st, e));
  assert_int_equal(st.mtime, utc(1980, 1, 1, 0, 0, 0));
  OK(f->ops->utimens(f, "/dir", 0, UTIME_OMIT, utc(2200, 1, 1, 0, 0, 0), 0, e));
  OK(f->ops->stat(f, "/dir", &st, e));
  assert_int_equal(st.mtime, utc(2107, 12, 31, 23, 59, 58));
  OK(f->ops->utimens(f, "/", 0, UTIME_NOW, 0, UTIME_NOW, e)); /* the root keeps none */
  /* a write updates mtime, utimens with UTIME_NOW too */
  OK(f->ops->utimens(f, "/dir", 0, UTIME_NOW, 0, UTIME_NOW, e));
  OK(f->ops->stat(f, "/dir", &st, e));
  assert_true(st.mtime >= t0 - 2);
  FAILS(f->ops->utimens(f, "/nope", 0, 0, 0, 0, e), 404, FS_ENOENT);
  close_fs(f);
  fsck_clean();
  char *out = sh_out("mdir -i '%s' ::/file", img);
  if (!strstr(out, "2020-05-17  13:45")) fail_msg("mdir shows:\n%s", out);
  free(out);
}

static void test_statvfs(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  struct fs *f = open_fs();
  struct fs_statvfs sv;
  OK(f->ops->statvfs(f, &sv, e));
  long total, used = fsck_used(&total);
  assert_int_equal(sv.blocks, total);
  assert_int_equal(sv.blocks - sv.bfree, used);
  assert_int_equal(sv.bavail, sv.bfree);
  assert_int_equal(sv.namemax, 1530);
  static char data[100000];
  put(f, "/a", data, sizeof data);
  OK(f->ops->mkdir(f, "/d", 0755, e));
  put(f, "/d/b", data, 5000);
  OK(f->ops->unlink(f, "/a", e));
  put(f, "/c", data, 3 * sv.bsize);
  OK(f->ops->statvfs(f, &sv, e));
  close_fs(f);
  fsck_clean(); /* FAT32: FSInfo's free count checked too */
  used = fsck_used(&total);
  assert_int_equal(sv.blocks - sv.bfree, used);
  char *out = sh_out("mdir -i '%s' ::/ | grep 'bytes free' | tr -d ' '", img);
  assert_int_equal(strtoull(out, NULL, 10), sv.bfree * sv.bsize);
  free(out);
  if (bits == 32 || bits == 3208) { /* FSInfo holds the free count and a valid next-free hint */
    size_t len;
    uint8_t *d = img_load(&len);
    uint32_t sec = rd16(d + 48), bps = rd16(d + 11);
    assert_int_equal(rd32(d + sec * bps + 488), sv.bfree);
    uint32_t next = rd32(d + sec * bps + 492);
    assert_true(next >= 2 && next <= sv.blocks + 1);
    free(d);
  }
}

/* ---- a random sequence against a model ------------------------------------ */

#define MAXN 300
struct mfile {
  char path[64];
  int is_dir, live;
  char *data;
  size_t len;
};
static struct mfile model[MAXN];

static int model_find(const char *path) {
  for (int i = 0; i < MAXN; i++)
    if (model[i].live && !strcasecmp(model[i].path, path)) return i;
  return -1;
}
static int model_has_children(const char *path) {
  size_t l = strlen(path);
  for (int i = 0; i < MAXN; i++)
    if (model[i].live && !strncasecmp(model[i].path, path, l) && model[i].path[l] == '/') return 1;
  return 0;
}
static int model_parent_ok(const char *path) {
  char p[64];
  snprintf(p, sizeof p, "%s", path);
  char *s = strrchr(p, '/');
  if (s == p) return 1;
  *s = 0;
  int i = model_find(p);
  return i >= 0 && model[i].is_dir;
}

static void random_path(char *out, size_t n) {
  static const char *parts[] = {"a", "B", "dir one", "Long Name File.txt", "x.y", "UPPER.TXT"};
  int depth = 1 + (int)(rnd() % 3);
  out[0] = 0;
  for (int i = 0; i < depth; i++) {
    strncat(out, "/", n - strlen(out) - 1);
    strncat(out, parts[rnd() % 6], n - strlen(out) - 1);
  }
}

static void test_random(void **state) {
  int bits = *(int *)*state;
  mkimg(fmt_size(bits), fmt_args(bits));
  memset(model, 0, sizeof model);
  rng_state = 12345 + (uint64_t)bits;
  struct fs *f = open_fs();
  char *buf = malloc(70000);
  for (int step = 0; step < 1500; step++) {
    char p[64], q[64];
    random_path(p, sizeof p);
    int i = model_find(p), r = (int)(rnd() % 100);
    struct err er;
    err_init(&er);
    if (r < 35) { /* write somewhere */
      size_t off = rnd() % 10000, len = rnd() % 15000;
      if (rnd() % 4 == 0) off = 0;
      fill_random(buf, len);
      int rc = f->ops->write(f, p, buf, len, off, FS_O_CREAT, 0644, &er);
      int ok = model_parent_ok(p) && (i < 0 || !model[i].is_dir);
      if (ok != (rc == 0)) fail_msg("step %d write %s: rc %d (%s)", step, p, rc, er.message);
      if (rc == 0) {
        if (i < 0) {
          for (i = 0; model[i].live; i++) {
          }
          model[i] = (struct mfile){.live = 1, .data = malloc(1)};
          snprintf(model[i].path, sizeof model[i].path, "%s", p);
        }
        if (len && off + len > model[i].len) { /* a write of 0 bytes extends nothing */
          model[i].data = realloc(model[i].data, off + len);
          if (off > model[i].len) memset(model[i].data + model[i].len, 0, off - model[i].len);
          model[i].len = off + len;
        }
        memcpy(model[i].data + off, buf, len);
      }
    } else if (r < 45) {
      int rc = f->ops->mkdir(f, p, 0755, &er);
      int ok = model_parent_ok(p) && i < 0;
      if (ok != (rc == 0)) fail_msg("step %d mkdir %s: rc %d (%s)", step, p, rc, er.message);
      if (rc == 0) {
        for (i = 0; model[i].live; i++) {
        }
        model[i] = (struct mfile){.live = 1, .is_dir = 1};
        snprintf(model[i].path, sizeof model[i].path, "%s", p);
      }
    } else if (r < 55) {
      size_t size = rnd() % 25000;
      int rc = f->ops->truncate(f, p, size, &er);
      int ok = i >= 0 && !model[i].is_dir;
      if (ok != (rc == 0)) fail_msg("step %d truncate %s: rc %d (%s)", step, p, rc, er.message);
      if (rc == 0) {
        model[i].data = realloc(model[i].data, size + 1);
        if (size > model[i].len) memset(model[i].data + model[i].len, 0, size - model[i].len);
        model[i].len = size;
      }
    } else if (r < 70) {
      int rc = f->ops->unlink(f, p, &er);
      int ok = i >= 0 && !model[i].is_dir;
      if (ok != (rc == 0)) fail_msg("step %d unlink %s: rc %d (%s)", step, p, rc, er.message);
      if (rc == 0) {
        free(model[i].data);
        model[i] = (struct mfile){0};
      }
    } else if (r < 78) {
      int rc = f->ops->rmdir(f, p, &er);
      int ok = i >= 0 && model[i].is_dir && !model_has_children(p);
      if (ok != (rc == 0)) fail_msg("step %d rmdir %s: rc %d (%s)", step, p, rc, er.message);
      if (rc == 0) model[i] = (struct mfile){0};
    } else if (r < 97) { /* rename files only (keeps the model simple) */
      random_path(q, sizeof q);
      int j = model_find(q);
      if (i < 0 || model[i].is_dir || i == j) continue;
      int rc = f->ops->rename(f, p, q, &er);
      int ok = model_parent_ok(q) && (j < 0 || !model[j].is_dir);
      if (ok != (rc == 0)) fail_msg("step %d rename %s %s: rc %d (%s)", step, p, q, rc, er.message);
      if (rc == 0) {
        if (j >= 0) {
          free(model[j].data);
          model[j] = (struct mfile){0};
        }
        snprintf(model[i].path, sizeof model[i].path, "%s", q);
      }
    } else {
      OK(f->ops->sync(f, e));
    }
    if (er.status && strcmp(er.code, FS_ENOSPC) == 0) fail_msg("step %d: no space", step);
    err_clear(&er);
  }
  for (int i = 0; i < MAXN; i++)
    if (model[i].live && !model[i].is_dir) check_get(f, model[i].path, model[i].data, model[i].len);
  close_fs(f);
  fsck_clean();
  for (int i = 0; i < MAXN; i++) {
    if (model[i].live && !model[i].is_dir) check_mread(model[i].path, model[i].data, model[i].len);
    free(model[i].data);
  }
  free(buf);
}

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-vfat-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(img, sizeof img, "%s/disk.img", dir);
  setenv("MTOOLS_SKIP_CHECK", "1", 1);
  setenv("LC_ALL", "C.UTF-8", 1);
  return 0;
}
static int teardown(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static int b12 = 12, b16 = 16, b32 = 32, b16k = 1604, b32k = 3208;
#define ALL3(fn)                                                                                   \
  cmocka_unit_test_prestate(fn, &b12), cmocka_unit_test_prestate(fn, &b16),                        \
      cmocka_unit_test_prestate(fn, &b32)
#define ALL5(fn)                                                                                   \
  ALL3(fn), cmocka_unit_test_prestate(fn, &b16k), cmocka_unit_test_prestate(fn, &b32k)

int main(void) {
  const struct CMUnitTest tests[] = {
      ALL5(test_roundtrip),
      ALL5(test_read_mtools_tree),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_many_files),
      cmocka_unit_test_prestate(test_fragmented, &b16),
      cmocka_unit_test_prestate(test_fragmented, &b32),
      ALL5(test_sparse_truncate),
      ALL5(test_rename),
      cmocka_unit_test(test_unlink_rmdir),
      ALL3(test_full_disk),
      ALL3(test_io_errors),
      cmocka_unit_test(test_sync_error),
      cmocka_unit_test(test_sync_order),
      cmocka_unit_test(test_bad_bpb),
      cmocka_unit_test(test_damaged),
      cmocka_unit_test(test_damaged_links),
      cmocka_unit_test(test_read_only),
      cmocka_unit_test(test_unsupported),
      cmocka_unit_test(test_times),
      ALL5(test_statvfs),
      ALL5(test_random),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
