/* test_fs_disk.c — the disk layer of src/fs: MBR (logical partitions
 * included) and GPT partitions, LVM2 PVs, VGs and linear, striped and
 * multi-segment LVs, vgrename, signatures, labels and UUIDs, device names.
 *
 * The images come from tests/unit/fs_disk_fixtures.py, which builds them
 * with Debian's own tools only (sfdisk, mkfs.*, lvm2 itself on loop devices)
 * and records what those tools say (sfdisk --json, blkid -p, lvm2's lvs and
 * vgs and segment map, sha256 of each LV's contents) in manifest.json: every
 * answer of Streamer is compared with that. vgrename is judged by lvm2 itself
 * (vgs, lvs, vgck, pvck on loop devices over the renamed image). When
 * guestfish is installed, one bounded launch compares list-devices,
 * list-partitions, list-filesystems, lvs and vgs byte for byte. Damaged and
 * hostile tables and metadata (bad CRCs, loops in the extended partition,
 * absurd sizes, truncated images, parser traps) must be refused cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/fs_int.h"

static char dir[] = "/tmp/streamer-test-fsdisk-XXXXXX";
static json_t *manifest;
static int have_lvm;

#define MiB (1024u * 1024u)

/* ---- helpers ------------------------------------------------------------------ */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  for (;;) {
    if (n + 4097 > cap) {
      buf = realloc(buf, cap *= 2);
      assert_non_null(buf);
    }
    size_t r = fread(buf + n, 1, 4096, p);
    if (r == 0) break;
    n += r;
  }
  buf[n] = 0;
  pclose(p);
  return buf;
}

static char *path(const char *name) {
  static char p[8][512];
  static int i;
  char *s = p[i++ % 8];
  snprintf(s, 512, "%s/%s", dir, name);
  return s;
}

/* a private copy of a fixture image */
static char *work_copy(const char *img, const char *name) {
  char *p = path(name);
  assert_int_equal(sh("cp --sparse=always '%s' '%s'", path(img), p), 0);
  return p;
}

struct disk {
  struct vol *vol;
  struct fs_disk *d;
};

static void open_disk(struct disk *k, const char *file, int read_only) {
  struct err e;
  err_init(&e);
  if (vol_file_open(file, read_only, &k->vol, &e) < 0) fail_msg("%s: %s", file, e.message);
  if (fs_disk_open(k->vol, read_only, &k->d, &e) < 0) fail_msg("%s: %s", file, e.message);
}

static void close_disk(struct disk *k) {
  fs_disk_close(k->d);
  vol_close(k->vol);
}

/* "a\nb\n" */
static char *joined(char **v) {
  assert_non_null(v);
  size_t n = 1;
  for (char **p = v; *p; p++)
    n += strlen(*p) + 1;
  char *s = malloc(n), *o = s;
  *o = 0;
  for (char **p = v; *p; p++)
    o += sprintf(o, "%s\n", *p);
  fs_strv_free(v);
  return s;
}

static void assert_list(char **v, const char *want) {
  char *got = joined(v);
  assert_string_equal(got, want);
  free(got);
}

static char *filesystems(struct fs_disk *d) {
  char **dev, **type;
  int n = fs_list_filesystems(d, &dev, &type);
  assert_true(n >= 0);
  char *s = calloc(1, 8192);
  for (int i = 0; i < n; i++)
    sprintf(s + strlen(s), "%s: %s\n", dev[i], type[i]);
  assert_null(dev[n]);
  fs_strv_free(dev);
  fs_strv_free(type);
  return s;
}

static int has_warning(struct fs_disk *d, const char *needle) {
  for (const char *const *w = fs_disk_warnings(d); *w; w++)
    if (strstr(*w, needle)) return 1;
  return 0;
}

static void print_warnings(struct fs_disk *d) {
  for (const char *const *w = fs_disk_warnings(d); *w; w++)
    fprintf(stderr, "  warning: %s\n", *w);
}

static int nwarnings(struct fs_disk *d) {
  int n = 0;
  for (const char *const *w = fs_disk_warnings(d); *w; w++)
    n++;
  return n;
}

static void sha256_vol(struct vol *v, char out[65]) {
  /* through sha256sum: independent of our code */
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s/sha.bin", dir);
  FILE *f = fopen(tmp, "wb");
  assert_non_null(f);
  char *buf = malloc(MiB);
  struct err e;
  err_init(&e);
  for (uint64_t off = 0; off < vol_size(v); off += MiB) {
    size_t n = vol_size(v) - off < MiB ? vol_size(v) - off : MiB;
    assert_int_equal(vol_pread(v, buf, n, off, &e), 0);
    assert_int_equal(fwrite(buf, 1, n, f), n);
  }
  free(buf);
  fclose(f);
  char *s = sh_out("sha256sum '%s'", tmp);
  memcpy(out, s, 64);
  out[64] = 0;
  free(s);
  unlink(tmp);
}

static json_t *image(const char *name) {
  json_t *m = json_object_get(json_object_get(manifest, "images"), name);
  assert_non_null(m);
  return m;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

static uint64_t jint(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  assert_true(json_is_integer(v));
  return (uint64_t)json_integer_value(v);
}

/* the partitions of a manifest image, in number order */
static int part_numbers(json_t *img, int nums[64]) {
  int n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(img, "partitions"), k, v) nums[n++] = atoi(k);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && nums[j - 1] > nums[j]; j--) {
      int t = nums[j];
      nums[j] = nums[j - 1], nums[j - 1] = t;
    }
  return n;
}

/* the type, label and UUID of a device agree with blkid's */
static void assert_blkid(struct vol *v, json_t *want, const char *what) {
  const char *type = jstr(want, "TYPE");
  const char *got = fs_probe(v);
  if (strcmp(got, *type ? type : "unknown") != 0)
    fail_msg("%s: fs_probe says %s, blkid says \"%s\"", what, got, type);
  if (!strcmp(type, "vfat") || !strncmp(type, "ext", 3) || !strcmp(type, "swap") ||
      !strcmp(type, "xfs") || !strcmp(type, "btrfs")) {
    char *label, *uuid;
    assert_int_equal(fs_label_uuid(v, &label, &uuid), 0);
    if (strcmp(label, jstr(want, "LABEL")) || strcmp(uuid, jstr(want, "UUID")))
      fail_msg("%s: label/uuid %s/%s, blkid says %s/%s", what, label, uuid, jstr(want, "LABEL"),
               jstr(want, "UUID"));
    free(label);
    free(uuid);
  }
}

/* ---- fixtures ------------------------------------------------------------------- */

static int setup(void **state) {
  if (!mkdtemp(dir)) return -1;
  if (sh("python3 tests/unit/fs_disk_fixtures.py '%s'", dir) != 0) {
    fprintf(stderr, "fs_disk_fixtures.py failed\n");
    return -1;
  }
  json_error_t je;
  manifest = json_load_file(path("manifest.json"), 0, &je);
  if (!manifest) return -1;
  have_lvm = json_is_true(json_object_get(manifest, "lvm"));
  if (!have_lvm) fprintf(stderr, "note: no root or loop devices: the LVM2 tests are skipped\n");
  return 0;
}

static int teardown(void **state) {
  json_decref(manifest);
  sh("rm -rf '%s'", dir);
  return 0;
}

/* ---- partition tables ------------------------------------------------------------- */

/* Partitions: numbers, offsets and sizes as sfdisk wrote them; types,
 * labels and UUIDs as blkid sees them. */
static void check_partitions(const char *name, int *n_out) {
  json_t *img = image(name);
  char file[64];
  snprintf(file, sizeof file, "%s.img", name);
  struct disk k;
  open_disk(&k, path(file), 1);
  print_warnings(k.d);
  assert_int_equal(nwarnings(k.d), 0);
  assert_list(fs_list_devices(k.d), "/dev/sda\n");
  int nums[64], n = part_numbers(img, nums);
  char want[2048] = "";
  for (int i = 0; i < n; i++)
    sprintf(want + strlen(want), "/dev/sda%d\n", nums[i]);
  assert_list(fs_list_partitions(k.d), want);
  struct err e;
  err_init(&e);
  for (int i = 0; i < n; i++) {
    char key[16], dev[32];
    snprintf(key, sizeof key, "%d", nums[i]);
    snprintf(dev, sizeof dev, "/dev/sda%d", nums[i]);
    json_t *p = json_object_get(json_object_get(img, "partitions"), key);
    struct vol *v = fs_device(k.d, dev, &e);
    assert_non_null(v);
    const char *type = jstr(p, "type");
    int extended = !strcmp(type, "5") || !strcmp(type, "f") || !strcmp(type, "85");
    /* Linux makes an extended partition a 1 KiB device */
    assert_int_equal(vol_size(v), extended ? 1024 : jint(p, "size"));
    if (!extended) assert_blkid(v, p, dev);
    /* the view starts where sfdisk put the partition */
    char a[512], b[512];
    int fd = open(path(file), O_RDONLY);
    assert_int_equal(pread(fd, a, 512, (off_t)jint(p, "start")), 512);
    close(fd);
    assert_int_equal(vol_pread(v, b, 512, 0, &e), 0);
    assert_memory_equal(a, b, 512);
  }
  *n_out = n;
  close_disk(&k);
}

static void test_mbr(void **state) {
  int n;
  check_partitions("mbr", &n);
  assert_int_equal(n, 7); /* 1, 2 (extended), 3, 5, 6, 7, 8 */
}

static void test_gpt(void **state) {
  int n;
  check_partitions("gpt", &n);
  assert_int_equal(n, 8); /* 1, 2, 3, 5, 6, 7, 8, 9 (no 4) */
}

/* list-filesystems as guestfish 1.48 prints it on these images (checked
 * against real guestfish when it is installed: test_guestfish) */
static void test_list_filesystems(void **state) {
  struct disk k;
  open_disk(&k, path("gpt.img"), 1);
  char *s = filesystems(k.d);
  /* BIOS boot (no filesystem) is "unknown"; Microsoft reserved is left out */
  assert_string_equal(s, "/dev/sda1: vfat\n/dev/sda2: unknown\n/dev/sda5: ext3\n"
                         "/dev/sda6: iso9660\n/dev/sda7: squashfs\n/dev/sda8: ntfs\n"
                         "/dev/sda9: ext2\n");
  free(s);
  close_disk(&k);

  open_disk(&k, path("mbr.img"), 1);
  s = filesystems(k.d);
  if (have_lvm)
    assert_string_equal(s, "/dev/sda1: vfat\n/dev/sda5: ext4\n/dev/sda6: swap\n/dev/sda8: unknown\n"
                           "/dev/vg0/data: unknown\n/dev/vg0/my-lv: unknown\n"
                           "/dev/vg0/root: ext4\n/dev/vg0/split: ext2\n");
  else
    assert_string_equal(s, "/dev/sda1: vfat\n/dev/sda3: unknown\n/dev/sda5: ext4\n"
                           "/dev/sda6: swap\n/dev/sda7: unknown\n/dev/sda8: unknown\n");
  free(s);
  close_disk(&k);

  /* unpartitioned disks: the disk itself */
  const char *whole[] = {"fat", "xfs", "btrfs"};
  for (size_t i = 0; i < 3; i++) {
    char file[32], want[64];
    snprintf(file, sizeof file, "%s.img", whole[i]);
    open_disk(&k, path(file), 1);
    json_t *w = json_object_get(image(whole[i]), "whole");
    snprintf(want, sizeof want, "/dev/sda: %s\n", jstr(w, "TYPE"));
    s = filesystems(k.d);
    assert_string_equal(s, want);
    free(s);
    assert_list(fs_list_partitions(k.d), "");
    struct err e;
    err_init(&e);
    assert_blkid(fs_device(k.d, "/dev/sda", &e), w, file);
    close_disk(&k);
  }
}

/* guestfish's device names: aliases, canonical names, what does not exist */
static void test_device_names(void **state) {
  struct disk k;
  open_disk(&k, path("mbr.img"), 1);
  struct err e;
  err_init(&e);
  struct vol *sda1 = fs_device(k.d, "/dev/sda1", &e);
  assert_non_null(sda1);
  const char *aliases[] = {"/dev/vda1", "/dev/hda1", "/dev/xvda1"};
  for (int i = 0; i < 3; i++) {
    assert_ptr_equal(fs_device(k.d, aliases[i], &e), sda1);
    char *c = fs_device_canonical(k.d, aliases[i], &e);
    assert_string_equal(c, "/dev/sda1");
    free(c);
  }
  char *c = fs_device_canonical(k.d, "/dev/vda", &e);
  assert_string_equal(c, "/dev/sda");
  free(c);
  const char *bad[] = {"/dev/sdb1",
                       "/dev/sda4",
                       "/dev/sda9",
                       "/dev/sda01",
                       "/dev/sda1x",
                       "/dev/sdaa",
                       "sda1",
                       "/dev/",
                       "",
                       "/dev/vg0/nope",
                       "/dev/mapper/vg0-nope",
                       "/dev/mapper/vg0",
                       "/dev/sda0",
                       "/dev/sda99999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err_init(&e);
    assert_null(fs_device(k.d, bad[i], &e));
    assert_int_equal(e.status, 404);
    assert_string_equal(e.code, FS_ENOENT);
    assert_null(fs_device_canonical(k.d, bad[i], &e));
  }
  assert_null(fs_device(k.d, NULL, &e));
  if (have_lvm) {
    struct vol *lv = fs_device(k.d, "/dev/vg0/my-lv", &e);
    assert_non_null(lv);
    /* device-mapper doubles the dashes in names */
    assert_ptr_equal(fs_device(k.d, "/dev/mapper/vg0-my--lv", &e), lv);
    assert_null(fs_device(k.d, "/dev/mapper/vg0-my-lv", &e));
    c = fs_device_canonical(k.d, "/dev/mapper/vg0-my--lv", &e);
    assert_string_equal(c, "/dev/vg0/my-lv");
    free(c);
    c = fs_device_canonical(k.d, "/dev/mapper/vg0-root", &e);
    assert_string_equal(c, "/dev/vg0/root");
    free(c);
  }
  close_disk(&k);
}

/* ---- LVM2 ------------------------------------------------------------------------ */

static void check_lvs(struct fs_disk *d, json_t *img, const char *vgname) {
  struct err e;
  err_init(&e);
  const char *name;
  json_t *lv;
  json_object_foreach(json_object_get(img, "lvs"), name, lv) {
    char dev[256];
    snprintf(dev, sizeof dev, "/dev/%s/%s", vgname, strrchr(name, '/') + 1);
    struct vol *v = fs_device(d, dev, &e);
    if (!v) fail_msg("%s: %s", dev, e.message);
    assert_int_equal(vol_size(v), jint(lv, "size"));
    char sha[65];
    sha256_vol(v, sha);
    if (strcmp(sha, jstr(lv, "sha256")) != 0)
      fail_msg("%s: contents differ from what lvm2 mapped", dev);
    assert_blkid(v, lv, dev);
  }
}

static void test_lvm(void **state) {
  if (!have_lvm) skip();
  const char *imgs[] = {"mbr", "pvdisk"};
  for (int i = 0; i < 2; i++) {
    json_t *img = image(imgs[i]);
    char file[32];
    snprintf(file, sizeof file, "%s.img", imgs[i]);
    struct disk k;
    open_disk(&k, path(file), 1);
    print_warnings(k.d);
    assert_int_equal(nwarnings(k.d), 0);
    char want[1024] = "";
    size_t j;
    json_t *x;
    json_array_foreach(json_object_get(img, "lvm_lvs"), j, x)
        sprintf(want + strlen(want), "%s\n", json_string_value(x));
    assert_list(fs_lvs(k.d), want);
    want[0] = 0;
    json_array_foreach(json_object_get(img, "lvm_vgs"), j, x)
        sprintf(want + strlen(want), "%s\n", json_string_value(x));
    assert_list(fs_vgs(k.d), want);
    check_lvs(k.d, img, i == 0 ? "vg0" : "vgw");
    close_disk(&k);
  }
  /* the whole-disk PV is not a filesystem; its LV is */
  struct disk k;
  open_disk(&k, path("pvdisk.img"), 1);
  char *s = filesystems(k.d);
  assert_string_equal(s, "/dev/vgw/lv: vfat\n");
  free(s);
  assert_list(fs_list_partitions(k.d), "");
  struct err e;
  err_init(&e);
  assert_string_equal(fs_probe(fs_device(k.d, "/dev/sda", &e)), "LVM2_member");
  close_disk(&k);
}

/* lvm2's own map: where byte `off` of an LV is on the disk */
static uint64_t lvm2_map(json_t *lv, uint64_t off, uint64_t *run) {
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(lv, "segments"), i, s) {
    uint64_t start = jint(s, "lv_start"), len = jint(s, "len");
    if (off < start || off >= start + len) continue;
    uint64_t o = off - start, stripes = jint(s, "stripes"), ss = jint(s, "stripe_size");
    json_t *d = json_object_get(s, "disk_offsets");
    if (stripes == 1) {
      *run = len - o;
      return (uint64_t)json_integer_value(json_array_get(d, 0)) + o;
    }
    uint64_t chunk = o / ss;
    *run = ss - o % ss;
    return (uint64_t)json_integer_value(json_array_get(d, chunk % stripes)) + chunk / stripes * ss +
           o % ss;
  }
  fail_msg("offset %llu is not in the LV", (unsigned long long)off);
  return 0;
}

/* Writes through LVs and partitions land where lvm2 and sfdisk say they
 * are, and nowhere else; read-only disks refuse them. */
static void test_write_through(void **state) {
  if (!have_lvm) skip();
  char *file = work_copy("mbr.img", "write.img");
  struct disk k;
  open_disk(&k, file, 0);
  struct err e;
  err_init(&e);
  json_t *img = image("mbr");
  const char *lvs[] = {"/dev/vg0/data", "/dev/vg0/split"};
  size_t len = 300000;
  uint8_t *buf = malloc(len), *back = malloc(len);
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)(i * 7 + 3);
  uint64_t offs[] = {12345, 4 * MiB - 1000}; /* across stripes; across the two segments */
  for (int t = 0; t < 2; t++) {
    struct vol *v = fs_device(k.d, lvs[t], &e);
    assert_non_null(v);
    assert_int_equal(vol_pwrite(v, buf, len, offs[t], &e), 0);
    assert_int_equal(vol_flush(v, &e), 0);
    assert_int_equal(vol_pread(v, back, len, offs[t], &e), 0);
    assert_memory_equal(buf, back, len);
    /* beyond the end */
    assert_int_equal(vol_pread(v, back, 2, vol_size(v) - 1, &e), -1);
    assert_string_equal(e.code, "VOL_OUT_OF_RANGE");
    err_init(&e);
  }
  struct vol *p8 = fs_device(k.d, "/dev/sda8", &e);
  assert_int_equal(vol_pwrite(p8, "partition eight", 15, 100, &e), 0);
  close_disk(&k);
  /* the image file, read with lvm2's map */
  int fd = open(file, O_RDONLY);
  for (int t = 0; t < 2; t++) {
    json_t *lv = json_object_get(json_object_get(img, "lvs"), lvs[t]);
    for (uint64_t o = 0; o < len;) {
      uint64_t run = 0, d = lvm2_map(lv, offs[t] + o, &run);
      if (run > len - o) run = len - o;
      assert_int_equal(pread(fd, back, run, (off_t)d), (ssize_t)run);
      assert_memory_equal(back, buf + o, run);
      o += run;
    }
  }
  json_t *p = json_object_get(json_object_get(img, "partitions"), "8");
  char s[16];
  assert_int_equal(pread(fd, s, 15, (off_t)jint(p, "start") + 100), 15);
  assert_memory_equal(s, "partition eight", 15);
  close(fd);
  /* the other LVs are untouched */
  open_disk(&k, file, 1);
  char sha[65];
  sha256_vol(fs_device(k.d, "/dev/vg0/root", &e), sha);
  assert_string_equal(
      sha, jstr(json_object_get(json_object_get(img, "lvs"), "/dev/vg0/root"), "sha256"));
  /* read-only */
  assert_true(fs_disk_read_only(k.d));
  struct vol *v = fs_device(k.d, "/dev/vg0/data", &e);
  assert_int_equal(vol_pwrite(v, buf, 10, 0, &e), -1);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  err_init(&e);
  assert_int_equal(vol_pwrite(fs_device(k.d, "/dev/sda1", &e), buf, 10, 0, &e), -1);
  assert_string_equal(e.code, "VOL_READ_ONLY");
  close_disk(&k);
  /* a writable volume opened read-only through the disk */
  struct vol *fv;
  assert_int_equal(vol_file_open(file, 0, &fv, &e), 0);
  struct fs_disk *d;
  assert_int_equal(fs_disk_open(fv, 1, &d, &e), 0);
  assert_int_equal(vol_pwrite(fs_device(d, "/dev/sda", &e), buf, 10, 0, &e), -1);
  assert_int_equal(vol_discard(fs_device(d, "/dev/vg0/root", &e), 0, 4096, &e), -1);
  fs_disk_close(d);
  vol_close(fv);
  free(buf);
  free(back);
}

/* what lvm2 itself says about the PVs of an image: JSON from the fixture script */
static json_t *lvm2_verdict(const char *file, const char *ranges) {
  char *out = sh_out("python3 tests/unit/fs_disk_fixtures.py --lvm-check '%s' %s", file, ranges);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  if (!j) fail_msg("lvm-check output: %s", out);
  free(out);
  return j;
}

static void mbr_pv_ranges(char *out, size_t len) {
  json_t *p = json_object_get(image("mbr"), "partitions");
  json_t *p3 = json_object_get(p, "3"), *p7 = json_object_get(p, "7");
  snprintf(out, len, "%llu:%llu %llu:%llu", (unsigned long long)jint(p3, "start"),
           (unsigned long long)jint(p3, "size"), (unsigned long long)jint(p7, "start"),
           (unsigned long long)jint(p7, "size"));
}

static void assert_lvm2_accepts(const char *file, const char *ranges, const char *vg, int64_t seqno,
                                int nlvs) {
  json_t *j = lvm2_verdict(file, ranges);
  const char *err = jstr(j, "stderr");
  if (*err) fail_msg("lvm2 complained: %s", err);
  json_t *vgs = json_object_get(j, "vgs");
  assert_int_equal(json_array_size(vgs), 1);
  json_t *row = json_array_get(vgs, 0);
  assert_string_equal(json_string_value(json_array_get(row, 0)), vg);
  assert_int_equal(json_integer_value(json_array_get(row, 1)), seqno);
  assert_int_equal(json_integer_value(json_array_get(row, 3)), nlvs);
  assert_int_equal(json_integer_value(json_object_get(j, "vgck")), 0);
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(j, "pvck"), i, x) assert_int_equal(json_integer_value(x), 0);
  json_array_foreach(json_object_get(j, "lvs"), i, x) {
    char pre[160];
    snprintf(pre, sizeof pre, "/dev/%s/", vg);
    assert_true(strncmp(json_string_value(x), pre, strlen(pre)) == 0);
  }
  json_decref(j);
}

/* seqno lvm2 reports for the VG before any rename */
static int64_t lvm2_seqno(const char *file, const char *ranges) {
  json_t *j = lvm2_verdict(file, ranges);
  int64_t s = json_integer_value(json_array_get(json_array_get(json_object_get(j, "vgs"), 0), 1));
  json_decref(j);
  return s;
}

static void test_vgrename(void **state) {
  if (!have_lvm) skip();
  char ranges[128];
  mbr_pv_ranges(ranges, sizeof ranges);
  char *file = work_copy("mbr.img", "rename.img");
  int64_t seq = lvm2_seqno(file, ranges);
  struct disk k;
  open_disk(&k, file, 0);
  struct err e;
  err_init(&e);
  struct vol *root = fs_device(k.d, "/dev/vg0/root", &e);
  assert_int_equal(fs_vgrename(k.d, "vg0", "rhel_host-01.example", &e), 0);
  assert_list(fs_vgs(k.d), "rhel_host-01.example\n");
  assert_list(fs_lvs(k.d), "/dev/rhel_host-01.example/data\n/dev/rhel_host-01.example/my-lv\n"
                           "/dev/rhel_host-01.example/root\n/dev/rhel_host-01.example/split\n");
  /* the LV is the same volume under its new name; the old name is gone */
  assert_ptr_equal(fs_device(k.d, "/dev/rhel_host-01.example/root", &e), root);
  assert_ptr_equal(fs_device(k.d, "/dev/mapper/rhel_host--01.example-root", &e), root);
  assert_null(fs_device(k.d, "/dev/vg0/root", &e));
  close_disk(&k);
  assert_lvm2_accepts(file, ranges, "rhel_host-01.example", seq + 1, 4);
  /* reopened: the same LVs, the same bytes */
  open_disk(&k, file, 1);
  assert_int_equal(nwarnings(k.d), 0);
  check_lvs(k.d, image("mbr"), "rhel_host-01.example");
  close_disk(&k);
  /* and back */
  open_disk(&k, file, 0);
  assert_int_equal(fs_vgrename(k.d, "rhel_host-01.example", "vg0", &e), 0);
  close_disk(&k);
  assert_lvm2_accepts(file, ranges, "vg0", seq + 2, 4);
}

static void test_vgrename_refused(void **state) {
  if (!have_lvm) skip();
  char *file = work_copy("mbr.img", "refuse.img");
  struct disk k;
  open_disk(&k, file, 0);
  struct err e;
  const char *bad[] = {"", "-vg", "a/b", "a b", ".", "..", "vg\"x", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err_init(&e);
    assert_int_equal(fs_vgrename(k.d, "vg0", bad[i], &e), -1);
    assert_string_equal(e.code, FS_EINVAL);
  }
  char longname[200];
  memset(longname, 'x', 128);
  longname[128] = 0;
  assert_int_equal(fs_vgrename(k.d, "vg0", longname, &e), -1);
  longname[127] = 0;
  err_init(&e);
  assert_int_equal(fs_vgrename(k.d, "nope", "other", &e), -1);
  assert_int_equal(e.status, 404);
  err_init(&e);
  assert_int_equal(fs_vgrename(k.d, "vg0", "vg0", &e), -1);
  assert_string_equal(e.code, FS_EEXIST);
  close_disk(&k);
  /* nothing was written */
  assert_int_equal(sh("cmp -s '%s' '%s'", file, path("mbr.img")), 0);
  open_disk(&k, file, 1);
  err_init(&e);
  assert_int_equal(fs_vgrename(k.d, "vg0", "other", &e), -1);
  assert_string_equal(e.code, FS_EROFS);
  close_disk(&k);
  /* a 127-character name is fine */
  open_disk(&k, file, 0);
  assert_int_equal(fs_vgrename(k.d, "vg0", longname, &e), 0);
  close_disk(&k);
}

/* The metadata area of pvdisk.img is small (60 KiB): 150 renames go round
 * the circular buffer several times, one copy at least split across its
 * end, and lvm2 still reads the result. */
static void test_vgrename_wraps(void **state) {
  if (!have_lvm) skip();
  char *file = work_copy("pvdisk.img", "wrap.img");
  char ranges[64];
  snprintf(ranges, sizeof ranges, "0:%u", 32 * MiB);
  int64_t seq = lvm2_seqno(file, ranges);
  struct disk k;
  struct err e;
  err_init(&e);
  char from[64] = "vgw", to[64];
  int split = 0;
  for (int i = 0; i < 150; i++) {
    if (i % 10 == 0) open_disk(&k, file, 0);
    snprintf(to, sizeof to, i % 2 ? "vgw%d" : "vg-with-a-rather-longer-name-%d", i);
    if (fs_vgrename(k.d, from, to, &e) < 0) fail_msg("rename %d: %s", i, e.message);
    strcpy(from, to);
    if (i % 10 == 9) {
      close_disk(&k);
      open_disk(&k, file, 1);
      char want[80];
      snprintf(want, sizeof want, "%s\n", to);
      assert_list(fs_vgs(k.d), want);
      assert_int_equal(nwarnings(k.d), 0);
      close_disk(&k);
    }
    /* where the copy is now, read from the first metadata area's header */
    int fd = open(file, O_RDONLY);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, 64, 4096), 64);
    close(fd);
    if (fs_le64(h + 40) + fs_le64(h + 48) > fs_le64(h + 32)) split++;
  }
  assert_true(split > 0);
  assert_lvm2_accepts(file, ranges, to, seq + 150, 1);
  open_disk(&k, file, 1);
  char vg[80];
  snprintf(vg, sizeof vg, "%s", to);
  check_lvs(k.d, image("pvdisk"), vg);
  close_disk(&k);
}

/* ---- damage ------------------------------------------------------------------------ */

static void poke(const char *file, uint64_t off, const void *data, size_t len) {
  int fd = open(file, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
  close(fd);
}

static void peek(const char *file, uint64_t off, void *data, size_t len) {
  int fd = open(file, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, data, len, (off_t)off), (ssize_t)len);
  close(fd);
}

static void test_gpt_damaged(void **state) {
  struct disk k;
  char *want_parts = "/dev/sda1\n/dev/sda2\n/dev/sda3\n/dev/sda5\n/dev/sda6\n/dev/sda7\n"
                     "/dev/sda8\n/dev/sda9\n";
  /* primary header CRC */
  char *f = work_copy("gpt.img", "gpt1.img");
  poke(f, 512 + 16, "\xde\xad", 2);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "primary header is damaged"));
  assert_list(fs_list_partitions(k.d), want_parts);
  close_disk(&k);
  /* primary entries */
  f = work_copy("gpt.img", "gpt2.img");
  poke(f, 1024 + 40, "\x01", 1);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "entries CRC mismatch"));
  assert_list(fs_list_partitions(k.d), want_parts);
  close_disk(&k);
  /* an absurd entry count with a correct header CRC */
  f = work_copy("gpt.img", "gpt3.img");
  uint8_t h[92];
  peek(f, 512, h, 92);
  fs_put_le32(h + 80, 0x7fffffff);
  memset(h + 16, 0, 4);
  fs_put_le32(h + 16, ~fs_crc32(~0u, h, 92));
  poke(f, 512, h, 92);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "absurd"));
  assert_list(fs_list_partitions(k.d), want_parts);
  close_disk(&k);
  /* backup damaged too: no partitions, the disk is "unknown" */
  uint64_t last = 128 * MiB - 512;
  poke(f, last + 16, "\xde\xad", 2);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "both headers are damaged"));
  assert_list(fs_list_partitions(k.d), "");
  char *s = filesystems(k.d);
  assert_string_equal(s, "/dev/sda: unknown\n");
  free(s);
  close_disk(&k);
  /* backup damaged only: a warning, the primary is used */
  f = work_copy("gpt.img", "gpt4.img");
  poke(f, last, "XXXX", 4);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "backup header is damaged"));
  assert_list(fs_list_partitions(k.d), want_parts);
  close_disk(&k);
  /* truncated: the backup is gone and the primary's usable sectors no
   * longer fit the disk: Linux then sees no partitions, nor do we */
  f = work_copy("gpt.img", "gpt5.img");
  assert_int_equal(truncate(f, 88 * MiB), 0);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "both headers are damaged"));
  assert_true(has_warning(k.d, "do not fit the disk"));
  assert_list(fs_list_partitions(k.d), "");
  close_disk(&k);
}

/* an in-memory disk with an MBR */
static uint8_t *mem_disk(size_t size) {
  uint8_t *b = calloc(1, size);
  assert_non_null(b);
  b[510] = 0x55, b[511] = 0xaa;
  return b;
}

static void mbr_entry(uint8_t *sec, int slot, uint8_t type, uint32_t lba, uint32_t count) {
  uint8_t *p = sec + 446 + 16 * slot;
  p[4] = type;
  fs_put_le32(p + 8, lba);
  fs_put_le32(p + 12, count);
  sec[510] = 0x55, sec[511] = 0xaa;
}

static struct fs_disk *open_mem(uint8_t *buf, size_t size, struct vol **v) {
  struct err e;
  err_init(&e);
  assert_int_equal(fs_vol_mem(buf, size, 0, v, &e), 0);
  struct fs_disk *d;
  if (fs_disk_open(*v, 0, &d, &e) < 0) fail_msg("%s", e.message);
  return d;
}

static void test_mbr_damaged(void **state) {
  size_t size = 16 * MiB; /* 32768 sectors */
  struct vol *v;
  struct fs_disk *d;
  struct err e;
  err_init(&e);
  /* a chain of EBRs that loops back on itself */
  uint8_t *b = mem_disk(size);
  mbr_entry(b, 0, 0x83, 2048, 2048);
  mbr_entry(b, 1, 0x05, 8192, 20000);
  mbr_entry(b + 8192 * 512, 0, 0x83, 63, 1000);
  mbr_entry(b + 8192 * 512, 1, 0x05, 2048, 2000); /* next EBR at 10240 */
  mbr_entry(b + 10240 * 512, 0, 0x83, 63, 1000);
  mbr_entry(b + 10240 * 512, 1, 0x05, 2048, 2000); /* and again 10240: a loop */
  d = open_mem(b, size, &v);
  assert_true(has_warning(d, "loops"));
  assert_list(fs_list_partitions(d), "/dev/sda1\n/dev/sda2\n/dev/sda5\n/dev/sda6\n");
  assert_int_equal(vol_size(fs_device(d, "/dev/sda6", &e)), 1000 * 512);
  fs_disk_close(d);
  vol_close(v);
  /* a link back to the first EBR; a logical partition outside the extended one */
  mbr_entry(b + 10240 * 512, 1, 0x05, 0, 2000);
  mbr_entry(b + 8192 * 512, 2, 0x83, 30000, 5000);
  d = open_mem(b, size, &v);
  assert_true(has_warning(d, "outside"));
  assert_list(fs_list_partitions(d), "/dev/sda1\n/dev/sda2\n/dev/sda5\n/dev/sda6\n");
  fs_disk_close(d);
  vol_close(v);
  free(b);
  /* a long chain: stops at 256 partitions, never more */
  b = mem_disk(size);
  mbr_entry(b, 0, 0x0f, 1, 32767);
  for (uint32_t i = 0; i < 400; i++) {
    uint8_t *ebr = b + (size_t)(1 + i * 4) * 512;
    mbr_entry(ebr, 0, 0x83, 1, 2);
    mbr_entry(ebr, 1, 0x05, (i + 1) * 4, 4);
  }
  d = open_mem(b, size, &v);
  char **parts = fs_list_partitions(d);
  size_t n = 0;
  while (parts[n])
    n++;
  assert_int_equal(n, 1 + 252); /* the extended partition, then logicals 5..256 */
  assert_string_equal(parts[n - 1], "/dev/sda256");
  fs_strv_free(parts);
  fs_disk_close(d);
  vol_close(v);
  free(b);
  /* absurd sizes: past the end dropped, over the end cut */
  b = mem_disk(size);
  mbr_entry(b, 0, 0x83, 2048, 0xffffffff);
  mbr_entry(b, 1, 0x83, 0xfffffff0, 100);
  mbr_entry(b, 2, 0x05, 40000, 100);
  d = open_mem(b, size, &v);
  assert_list(fs_list_partitions(d), "/dev/sda1\n");
  assert_int_equal(vol_size(fs_device(d, "/dev/sda1", &e)), size - 2048 * 512);
  assert_true(has_warning(d, "beyond the end"));
  assert_true(has_warning(d, "cut"));
  fs_disk_close(d);
  vol_close(v);
  /* bad boot indicators: a boot sector, not a table */
  memset(b, 0, 512);
  mbr_entry(b, 0, 0x83, 2048, 2048);
  b[446] = 0x12;
  d = open_mem(b, size, &v);
  assert_list(fs_list_partitions(d), "");
  fs_disk_close(d);
  vol_close(v);
  /* 0xEE not at sector 1 (no protective MBR): nothing, with a warning */
  memset(b, 0, 512);
  mbr_entry(b, 0, 0xee, 5, 100);
  d = open_mem(b, size, &v);
  assert_list(fs_list_partitions(d), "");
  assert_true(has_warning(d, "protective"));
  fs_disk_close(d);
  vol_close(v);
  free(b);
  /* tiny and empty disks */
  size_t sizes[] = {0, 1, 511, 512, 1024, 4096};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    b = mem_disk(4096);
    mbr_entry(b, 0, 0x8e, 1, 100);
    mbr_entry(b, 1, 0x05, 3, 100);
    d = open_mem(b, sizes[i], &v);
    char *s = filesystems(d);
    free(s);
    fs_strv_free(fs_lvs(d));
    fs_disk_close(d);
    vol_close(v);
    free(b);
  }
}

/* the truncated MBR image: partitions past the end dropped, one cut, its VG incomplete */
static void test_truncated(void **state) {
  char *f = work_copy("mbr.img", "trunc.img");
  assert_int_equal(truncate(f, 100 * MiB), 0);
  struct disk k;
  open_disk(&k, f, 1);
  assert_list(fs_list_partitions(k.d), "/dev/sda1\n/dev/sda2\n/dev/sda3\n/dev/sda5\n/dev/sda6\n"
                                       "/dev/sda7\n");
  assert_true(has_warning(k.d, "runs past the end"));
  if (have_lvm) {
    assert_list(fs_vgs(k.d), "vg0\n");
    /* p7 is cut: its extents run past the end; everything on it refused */
    char *s = filesystems(k.d);
    free(s);
  }
  close_disk(&k);
}

/* write one metadata text as the current copy of a metadata area, CRCs right */
static void put_metadata(const char *file, uint64_t mda, const char *text) {
  uint8_t h[512];
  peek(file, mda, h, 512);
  uint64_t size = strlen(text) + 1;
  poke(file, mda + 512, text, size);
  fs_put_le64(h + 40, 512);
  fs_put_le64(h + 48, size);
  fs_put_le32(h + 56, fs_crc32(0xf597a6cf, text, size));
  fs_put_le32(h, fs_crc32(0xf597a6cf, h + 4, 508));
  poke(file, mda, h, 512);
}

static void test_lvm_damaged(void **state) {
  if (!have_lvm) skip();
  char ranges[128];
  mbr_pv_ranges(ranges, sizeof ranges);
  json_t *p = json_object_get(image("mbr"), "partitions");
  uint64_t p3 = jint(json_object_get(p, "3"), "start"), p7 = jint(json_object_get(p, "7"), "start");
  struct disk k;
  struct err e;
  /* one copy's header broken: the other PV's copy is enough */
  char *f = work_copy("mbr.img", "lvm1.img");
  poke(f, p3 + 4096 + 100, "x", 1);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "header checksum mismatch"));
  assert_int_equal(nwarnings(k.d), 1);
  assert_list(fs_vgs(k.d), "vg0\n");
  fs_strv_free(fs_lvs(k.d));
  err_init(&e);
  assert_non_null(fs_device(k.d, "/dev/vg0/split", &e));
  close_disk(&k);
  /* pvck agrees that something is wrong there */
  json_t *j = lvm2_verdict(f, ranges);
  assert_int_not_equal(json_integer_value(json_array_get(json_object_get(j, "pvck"), 0)), 0);
  json_decref(j);
  /* both texts broken: no VG */
  uint8_t h[64];
  peek(f, p7 + 4096, h, 64);
  poke(f, p7 + 4096 + fs_le64(h + 40) + 10, "#", 1);
  open_disk(&k, f, 1);
  assert_true(has_warning(k.d, "metadata checksum mismatch"));
  assert_list(fs_vgs(k.d), "");
  assert_list(fs_lvs(k.d), "");
  char *s = filesystems(k.d);
  assert_string_equal(s, "/dev/sda1: vfat\n/dev/sda5: ext4\n/dev/sda6: swap\n/dev/sda8: unknown\n");
  free(s);
  close_disk(&k);
  /* a nonsense metadata location (header CRC right): that copy is ignored, and
   * a rename writes a fresh copy there that lvm2 accepts */
  f = work_copy("mbr.img", "lvm3.img");
  int64_t seq = lvm2_seqno(f, ranges);
  uint8_t hd[512];
  peek(f, p3 + 4096, hd, 512);
  fs_put_le64(hd + 40, UINT64_C(0xfffffffffffff000));
  fs_put_le32(hd, fs_crc32(0xf597a6cf, hd + 4, 508));
  poke(f, p3 + 4096, hd, 512);
  open_disk(&k, f, 0);
  assert_true(has_warning(k.d, "metadata location"));
  assert_int_equal(nwarnings(k.d), 1);
  err_init(&e);
  assert_int_equal(fs_vgrename(k.d, "vg0", "vg_fresh", &e), 0);
  close_disk(&k);
  assert_lvm2_accepts(f, ranges, "vg_fresh", seq + 1, 4);
  open_disk(&k, f, 1);
  assert_int_equal(nwarnings(k.d), 0);
  close_disk(&k);
  /* a PV label broken: the VG is incomplete, listed but not activated */
  f = work_copy("mbr.img", "lvm2.img");
  poke(f, p3 + 512 + 200, "x", 1);
  open_disk(&k, f, 0);
  assert_true(has_warning(k.d, "label checksum mismatch"));
  assert_true(has_warning(k.d, "missing"));
  assert_list(fs_vgs(k.d), "vg0\n");
  assert_list(fs_lvs(k.d), "");
  err_init(&e);
  assert_null(fs_device(k.d, "/dev/vg0/root", &e));
  assert_int_equal(fs_vgrename(k.d, "vg0", "x", &e), -1);
  assert_int_equal(e.status, 409);
  close_disk(&k);
}

/* hostile metadata text with correct checksums: refused LV by LV, no crash */
static void test_lvm_hostile(void **state) {
  if (!have_lvm) skip();
  char uuid[33], vgid[39], *text;
  peek(path("pvdisk.img"), 512 + 32, uuid, 32);
  uuid[32] = 0;
  /* the VG's id, from the text lvm2 wrote */
  uint8_t h[64];
  peek(path("pvdisk.img"), 4096, h, 64);
  text = calloc(1, fs_le64(h + 48) + 1);
  peek(path("pvdisk.img"), 4096 + fs_le64(h + 40), text, fs_le64(h + 48));
  char *id = strstr(text, "id = \"");
  assert_non_null(id);
  memcpy(vgid, id + 6, 38);
  vgid[38] = 0;
  free(text);
  static const char *const head = "vgw {\nid = \"%s\"\n"
                                  "seqno = 100\nformat = \"lvm2\"\n"
                                  "status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\n"
                                  "extent_size = 2048\nphysical_volumes {\npv0 {\n"
                                  "id = \"%s\"\npe_start = 128\npe_count = 30\n}\n}\n"
                                  "logical_volumes {\n"
                                  "good { status = [\"VISIBLE\"] segment1 { start_extent = 0 "
                                  "extent_count = 2 type = \"striped\" stripe_count = 1 "
                                  "stripes = [\"pv0\", 0] } }\n%s\n}\n}\n";
  struct {
    const char *lvs, *warning;
  } cases[] = {
      {"big { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = "
       "4611686018427387903 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 0] } }",
       "overflows"},
      {"far { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 29 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 2] } }",
       "runs past"},
      {"ghost { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv9\", 0] } }",
       "unknown PV"},
      {"zero { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"striped\" stripe_count = 0 stripes = [] } }",
       "stripe_count"},
      {"nosize { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"striped\" stripe_count = 2 stripes = [\"pv0\", 4, \"pv0\", 8] } }",
       "stripe_size"},
      {"gap { status = [\"VISIBLE\"] segment1 { start_extent = 1 extent_count = 2 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 4] } }",
       "gap"},
      {"thin { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"thin\" thin_pool = \"pool\" } }",
       "not supported"},
      {"neg { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", -5] } }",
       "stripes list"},
      {"short { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"striped\" stripe_count = 2 stripe_size = 128 stripes = [\"pv0\", 4] } }",
       "stripes list"},
      {"../etc { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 2 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 0] } }",
       "invalid"},
      {"huge = 99999999999999999999999999", "too large"},
      {"str = \"unterminated", "unterminated"},
      {"arr = [1, 2", "unterminated"},
      {"a { b { c { d { e { f { g { h { i { j { k { l { m { n { o { p { q { r { s { t { u { v { w "
       "{ x { y { z { A { B { C { D { E { F { G { H } } } } } } } } } } } } } } } } } } } } } } } "
       "} } } } } } } } } }",
       "deeper"},
      {"}", "unexpected"},
      {"= 5", "unexpected"},
      {"key", "expected"},
      {"hidden { status = [\"READ\"] segment1 { start_extent = 0 extent_count = 1 "
       "type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 0] } }",
       NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *f = work_copy("pvdisk.img", "hostile.img");
    char meta[8192];
    snprintf(meta, sizeof meta, head, vgid, uuid, cases[i].lvs);
    put_metadata(f, 4096, meta);
    struct disk k;
    open_disk(&k, f, 1);
    if (cases[i].warning && !has_warning(k.d, cases[i].warning)) {
      print_warnings(k.d);
      fail_msg("case %zu: no warning with \"%s\"", i, cases[i].warning);
    }
    /* the other copy (seqno 2) disagrees: the newest one is used */
    assert_true(has_warning(k.d, "disagree") || has_warning(k.d, "cannot be parsed"));
    char *lvs = joined(fs_lvs(k.d));
    if (has_warning(k.d, "cannot be parsed"))
      assert_string_equal(lvs, "/dev/vgw/lv\n"); /* the older, sound copy */
    else
      assert_string_equal(lvs, "/dev/vgw/good\n");
    free(lvs);
    char *s = filesystems(k.d);
    free(s);
    close_disk(&k);
  }
}

/* ---- signatures ----------------------------------------------------------------- */

static void test_probe_synthetic(void **state) {
  assert_string_equal(fs_probe(NULL), "unknown");
  uint8_t *b = calloc(1, 1 << 20);
  struct vol *v;
  struct err e;
  err_init(&e);
  /* an MBR is not a FAT boot sector, even with a jump instruction */
  b[510] = 0x55, b[511] = 0xaa;
  assert_int_equal(fs_vol_mem(b, 1 << 20, 1, &v, &e), 0);
  assert_string_equal(fs_probe(v), "unknown");
  b[0] = 0xeb;
  assert_string_equal(fs_probe(v), "unknown");
  /* a plausible BPB makes it FAT */
  fs_put_le32(b + 11, 512 | 4 << 16 | 1 << 24); /* bps 512, spc 4, reserved 1 (low byte) */
  b[14] = 1, b[15] = 0, b[16] = 2, b[21] = 0xf8;
  b[19] = 0x00, b[20] = 0x08; /* 2048 sectors */
  b[22] = 2;
  assert_string_equal(fs_probe(v), "vfat");
  b[13] = 3; /* sectors per cluster not a power of two */
  assert_string_equal(fs_probe(v), "unknown");
  b[13] = 4;
  memcpy(b + 3, "NTFS    ", 8);
  assert_string_equal(fs_probe(v), "ntfs");
  vol_close(v);
  /* too small for any signature */
  assert_int_equal(fs_vol_mem(b, 100, 1, &v, &e), 0);
  assert_string_equal(fs_probe(v), "unknown");
  char *l, *u;
  assert_int_equal(fs_label_uuid(v, &l, &u), 0);
  assert_string_equal(l, "");
  assert_string_equal(u, "");
  free(l);
  free(u);
  vol_close(v);
  free(b);
}

/* ---- fs_open and the conveniences over fs_ops ------------------------------------ */

static void test_fs_open(void **state) {
  char *f = work_copy("mbr.img", "open.img");
  json_t *p = json_object_get(image("mbr"), "partitions");
  struct disk k;
  open_disk(&k, f, 0);
  struct err e;
  err_init(&e);
  const char *devs[] = {"/dev/sda5", "/dev/sda1"}, *types[] = {"ext4", "vfat"};
  for (int i = 0; i < 2; i++) {
    struct fs *fs;
    if (fs_open(fs_device(k.d, devs[i], &e), 0, &fs, &e) < 0)
      fail_msg("%s: %s", devs[i], e.message);
    assert_string_equal(fs->ops->type, types[i]);
    assert_int_equal(fs_mkdir_p(fs, "/a/b//c/", 0755, &e), 0);
    assert_int_equal(fs_mkdir_p(fs, "/a/b/c", 0755, &e), 0); /* exists: fine */
    assert_int_equal(fs_write_file(fs, "/a/b/c/f.txt", "hello\n", 6, 0644, &e), 0);
    assert_int_equal(fs_write_file(fs, "/a/empty", "", 0, 0644, &e), 0);
    assert_int_equal(fs_mkdir_p(fs, "/a/b/c/f.txt/d", 0755, &e), -1);
    assert_string_equal(e.code, FS_ENOTDIR);
    err_init(&e);
    assert_int_equal(fs_mkdir_p(fs, "relative", 0755, &e), -1);
    err_init(&e);
    char *data;
    size_t len;
    assert_int_equal(fs_read_file(fs, "/a/b/c/f.txt", 1 << 20, &data, &len, &e), 0);
    assert_int_equal(len, 6);
    assert_string_equal(data, "hello\n");
    free(data);
    assert_int_equal(fs_read_file(fs, "/a/empty", 10, &data, &len, &e), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);
    assert_int_equal(fs_read_file(fs, "/a/b/c/f.txt", 5, &data, &len, &e), -1);
    assert_string_equal(e.code, FS_EINVAL);
    assert_null(data);
    err_init(&e);
    assert_int_equal(fs_read_file(fs, "/a/b/c/f.txt", 6, &data, &len, &e), 0);
    free(data);
    assert_int_equal(fs_read_file(fs, "/a/b", 100, &data, &len, &e), -1);
    assert_string_equal(e.code, FS_EISDIR);
    err_init(&e);
    assert_int_equal(fs_read_file(fs, "/nope", 100, &data, &len, &e), -1);
    assert_int_equal(e.status, 404);
    err_init(&e);
    fs_close(fs);
  }
  /* what fs_open cannot edit */
  struct fs *fs;
  assert_int_equal(fs_open(fs_device(k.d, "/dev/sda8", &e), 0, &fs, &e), -1);
  assert_int_equal(e.status, 422);
  assert_string_equal(e.code, FS_ENOTSUP);
  err_init(&e);
  assert_int_equal(fs_open(fs_device(k.d, "/dev/sda6", &e), 0, &fs, &e), -1);
  assert_non_null(strstr(e.message, "swap"));
  close_disk(&k);
  struct disk x;
  open_disk(&x, path("xfs.img"), 1);
  err_init(&e);
  assert_int_equal(fs_open(fs_device(x.d, "/dev/sda", &e), 1, &fs, &e), -1);
  assert_int_equal(e.status, 422);
  assert_non_null(strstr(e.message, "xfs"));
  close_disk(&x);
  /* checked by the filesystems' own tools */
  uint64_t s5 = jint(json_object_get(p, "5"), "start"), n5 = jint(json_object_get(p, "5"), "size");
  uint64_t s1 = jint(json_object_get(p, "1"), "start");
  assert_int_equal(sh("dd if='%s' of='%s' bs=1M skip=%llu count=%llu iflag=skip_bytes,count_bytes "
                      "status=none",
                      f, path("p5.img"), (unsigned long long)s5, (unsigned long long)n5),
                   0);
  char *out = sh_out("debugfs -R 'cat /a/b/c/f.txt' '%s' 2>/dev/null", path("p5.img"));
  assert_string_equal(out, "hello\n");
  free(out);
  assert_int_equal(sh("e2fsck -fn '%s' >/dev/null 2>&1", path("p5.img")), 0);
  out = sh_out("mtype -i '%s@@%llu' ::/a/b/c/f.txt", f, (unsigned long long)s1);
  assert_string_equal(out, "hello\n");
  free(out);
}

/* ---- guestfish itself --------------------------------------------------------------- */

/* One guestfish launch (about 11 s with TCG, more the first time) over four
 * of the images; its output must be what Streamer prints for each disk, the
 * disk letters aside. */
static void test_guestfish(void **state) {
  if (sh("command -v guestfish >/dev/null 2>&1") != 0 || getenv("STREAMER_NO_GUESTFISH")) {
    fprintf(stderr, "note: no guestfish (or STREAMER_NO_GUESTFISH is set): no differential test\n");
    skip();
  }
  const char *imgs[] = {"mbr", "gpt", "pvdisk", "fat"};
  char *out = sh_out("cd '%s' && LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg "
                     "timeout 900 guestfish --ro -a mbr.img -a gpt.img -a pvdisk.img -a fat.img "
                     "run : list-devices : echo @@ : list-partitions : echo @@ : "
                     "list-filesystems : echo @@ : lvs : echo @@ : vgs 2>&1",
                     dir);
  /* ours: the same commands, disk by disk, sda renamed sd[a-d]; list-filesystems
   * puts whole disks first, then partitions, then LVs (across disks) */
  char *want = calloc(1, 1 << 16), *bucket[3];
  for (int cmd = 0; cmd < 5; cmd++) {
    for (int b = 0; b < 3; b++)
      bucket[b] = calloc(1, 1 << 14);
    for (int i = 0; i < 4; i++) {
      char file[32];
      snprintf(file, sizeof file, "%s.img", imgs[i]);
      struct disk k;
      open_disk(&k, path(file), 1);
      char *s = cmd == 0   ? joined(fs_list_devices(k.d))
                : cmd == 1 ? joined(fs_list_partitions(k.d))
                : cmd == 2 ? filesystems(k.d)
                : cmd == 3 ? joined(fs_lvs(k.d))
                           : joined(fs_vgs(k.d));
      for (char *p = s; (p = strstr(p, "/dev/sda")); p += 8)
        p[7] = (char)('a' + i);
      for (char *line = s; *line;) {
        char *nl = strchr(line, '\n') + 1;
        int b = cmd != 2 || strncmp(line, "/dev/sd", 7) ? 2 : line[8] == ':' ? 0 : 1;
        strncat(bucket[b], line, (size_t)(nl - line));
        line = nl;
      }
      free(s);
      close_disk(&k);
    }
    for (int b = 0; b < 3; b++) {
      strcat(want, bucket[b]);
      free(bucket[b]);
    }
    if (cmd < 4) strcat(want, "@@\n");
  }
  if (strcmp(out, want) != 0) fail_msg("guestfish said:\n%s\nStreamer says:\n%s", out, want);
  free(out);
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mbr),
      cmocka_unit_test(test_gpt),
      cmocka_unit_test(test_list_filesystems),
      cmocka_unit_test(test_device_names),
      cmocka_unit_test(test_lvm),
      cmocka_unit_test(test_write_through),
      cmocka_unit_test(test_vgrename),
      cmocka_unit_test(test_vgrename_refused),
      cmocka_unit_test(test_vgrename_wraps),
      cmocka_unit_test(test_gpt_damaged),
      cmocka_unit_test(test_mbr_damaged),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_lvm_damaged),
      cmocka_unit_test(test_lvm_hostile),
      cmocka_unit_test(test_probe_synthetic),
      cmocka_unit_test(test_fs_open),
      cmocka_unit_test(test_guestfish),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
