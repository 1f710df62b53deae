/* test_image.c — golden image import and export (src/vol/image.c): HPE's own
 * Developer golden image (from the research corpus, never copied into the
 * repository), raw disks with zero runs (holes), zip variants (stored,
 * deflate, data descriptor, zip64), qcow2/vmdk/vhdx through qemu-img, hostile
 * and broken inputs (each refused with its code, leaving nothing in the golden
 * directory), random-access export, and the zip64 export of a 5 GiB sparse
 * golden volume; our inflater against zlib on random and damaged streams;
 * streamed imports (image_stream_*) of the same inputs fed in random pieces,
 * which must give the same results and the same errors as the file imports.
 * The inputs are written by tests/unit/image_fixtures.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "vol/image.h"
#include "vol/image_int.h" /* the inflater, compared with zlib */

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static char fx[] = "/tmp/streamer-test-image-XXXXXX"; /* fixtures and stores */
static char in[300];                                  /* fx/in: the inputs */
static char store_dir[300];
static struct vol_store *vs;
static int store_seq;

/* ---- helpers ------------------------------------------------------------- */

static char *input(const char *name) { return util_strdup_printf("%s/%s", in, name); }

static char *slurp_input(const char *name) {
  CLEANUP_FREE char *p = input(name);
  struct err e;
  err_init(&e);
  char *s = util_read_file(p, NULL, &e);
  assert_non_null(s);
  return s;
}

/* Entries of DIR/golden (temp files included). */
static int golden_entries(void) {
  CLEANUP_FREE char *d = util_strdup_printf("%s/golden", store_dir);
  DIR *dir = opendir(d);
  assert_non_null(dir);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
  closedir(dir);
  return n;
}

static void hex(const unsigned char *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", d[i]);
}

/* SHA-256 of golden volume `id`, read through struct vol. */
static void golden_sha256(const char *id, char out[65]) {
  struct vol *v = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(vol_golden_open(vs, id, &v, &e), 0);
  gnutls_hash_hd_t h;
  assert_int_equal(gnutls_hash_init(&h, GNUTLS_DIG_SHA256), 0);
  unsigned char *buf = malloc(MiB);
  assert_non_null(buf);
  for (uint64_t off = 0; off < vol_size(v);) {
    size_t n = vol_size(v) - off < MiB ? (size_t)(vol_size(v) - off) : MiB;
    assert_int_equal(vol_pread(v, buf, n, off, &e), 0);
    gnutls_hash(h, buf, n);
    off += n;
  }
  unsigned char d[32];
  gnutls_hash_deinit(h, d);
  hex(d, 32, out);
  free(buf);
  vol_close(v);
}

struct calls {
  int n;
  uint64_t last_done, last_total;
  int monotonic;
};

static void on_progress(void *arg, uint64_t done, uint64_t total) {
  struct calls *c = arg;
  if (c->n && done < c->last_done) c->monotonic = 0;
  c->n++;
  c->last_done = done;
  c->last_total = total;
}

static int import_as(const char *id, const char *name, enum image_format fmt,
                     struct image_info *info, struct err *e) {
  CLEANUP_FREE char *p = input(name);
  err_init(e);
  return image_import(vs, id, p, fmt, NULL, NULL, info, e);
}

/* Write the whole export of golden `id` to `path`, sparse (zero blocks skipped). */
static uint64_t export_to_file(struct image_export *x, const char *path, size_t piece) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  uint64_t total = image_export_length(x);
  assert_int_equal(ftruncate(fd, (off_t)total), 0);
  unsigned char *buf = malloc(piece);
  assert_non_null(buf);
  struct err e;
  err_init(&e);
  uint64_t off = 0;
  for (;;) {
    long n = image_export_read(x, off, buf, piece, &e);
    assert_true(n >= 0);
    if (n == 0) break;
    for (long i = 0; i < n; i += 4096) {
      long k = n - i < 4096 ? n - i : 4096;
      int zero = 1;
      for (long j = 0; j < k && zero; j++)
        zero = buf[i + j] == 0;
      if (!zero) assert_int_equal(pwrite(fd, buf + i, (size_t)k, (off_t)(off + (uint64_t)i)), k);
    }
    off += (uint64_t)n;
  }
  assert_int_equal(off, total);
  free(buf);
  close(fd);
  return total;
}

/* ---- fixtures -------------------------------------------------------------- */

static int group_setup(void **state) {
  assert_non_null(mkdtemp(fx));
  snprintf(in, sizeof in, "%s/in", fx);
  const char *research = getenv("STREAMER_RESEARCH");
  if (!research || !*research) research = "../shared/research";
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "python3 tests/unit/image_fixtures.py '%s' '%s'", in, research);
  if (system(cmd) != 0) {
    fprintf(stderr,
            "test_image: %s failed (run from the repository root; the research corpus "
            "must be at $STREAMER_RESEARCH or ../shared/research)\n",
            cmd);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx);
  return system(cmd);
}

static int setup(void **state) {
  snprintf(store_dir, sizeof store_dir, "%s/store%d", fx, ++store_seq);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_store_open(&vs, store_dir, &e), 0);
  return 0;
}

static int teardown(void **state) {
  vol_store_close(vs);
  vs = NULL;
  char cmd[700];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", store_dir, store_dir);
  return system(cmd);
}

/* ---- HPE's Developer golden image ------------------------------------------ */

static void test_hpe_developer_image(void **state) {
  CLEANUP_FREE char *want_sha = slurp_input("dev.sha256");
  CLEANUP_FREE char *member = slurp_input("dev.member");
  CLEANUP_FREE char *src = input("dev.zip");
  struct image_info info;
  struct err e;
  err_init(&e);
  struct calls calls = {.monotonic = 1};
  assert_int_equal(image_import(vs, "dev", src, IMAGE_AUTO, on_progress, &calls, &info, &e), 0);
  assert_int_equal(info.format, IMAGE_HPE_ZIP);
  assert_int_equal(info.size, 104857600);
  assert_string_equal(info.member, member);
  assert_string_equal(info.sha256, want_sha);
  assert_true(info.allocated < info.size / 4); /* a mostly empty FAT16 partition */
  char got[65];
  golden_sha256("dev", got);
  assert_string_equal(got, want_sha);
  /* Progress: about every 1%, never backwards, ending at the total. */
  assert_true(calls.n >= 50 && calls.n <= 110);
  assert_true(calls.monotonic);
  assert_int_equal(calls.last_done, info.size);
  assert_int_equal(calls.last_total, info.size);

  /* Export: an exact length, a stored zip that Python and unzip accept. */
  struct image_export *x = NULL;
  assert_int_equal(image_export_open(vs, "dev", info.member, info.size, info.crc32, &x, &e), 0);
  uint64_t total = image_export_length(x);
  assert_int_equal(total, 30 + strlen(member) + info.size + 46 + strlen(member) + 22);
  CLEANUP_FREE char *out = util_strdup_printf("%s/dev-export.zip", fx);
  assert_int_equal(export_to_file(x, out, MiB + 7), total);
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
           "assert z.testzip() is None; [i] = z.infolist(); "
           "assert i.filename == sys.argv[2] and i.compress_type == 0 and i.file_size == %" PRIu64
           "' '%s' '%s'",
           info.size, out, member);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "unzip -tqq '%s'", out);
  assert_int_equal(system(cmd), 0);

  /* Random ranges equal the same slice of the whole stream. */
  int fd = open(out, O_RDONLY);
  assert_true(fd >= 0);
  unsigned char *a = malloc(3 * MiB), *b = malloc(3 * MiB);
  assert_non_null(a);
  assert_non_null(b);
  uint64_t marks[] = {0, 1, 29, 30, 30 + strlen(member), total - 200, total - 22, total - 1};
  srand(42);
  for (int i = 0; i < 300; i++) {
    uint64_t off;
    if (i < (int)(sizeof marks / sizeof marks[0]) * 2)
      off = marks[i / 2] - (i % 2 && marks[i / 2] ? 1 : 0);
    else
      off = ((uint64_t)rand() << 16 ^ (uint64_t)rand()) % total;
    size_t len = (size_t)(rand() % (int)(MiB / 4)) + 1;
    long n = image_export_read(x, off, a, len, &e);
    size_t want = total - off < len ? (size_t)(total - off) : len;
    assert_int_equal(n, (long)want);
    assert_int_equal(pread(fd, b, want, (off_t)off), (ssize_t)want);
    assert_memory_equal(a, b, want);
  }
  assert_int_equal(image_export_read(x, total, a, 10, &e), 0);
  assert_int_equal(image_export_read(x, total + 5, a, 10, &e), 0);
  free(a);
  free(b);
  close(fd);
  image_export_close(x);

  /* The export imports again to the same content, name and CRC. */
  struct image_info again;
  err_init(&e);
  assert_int_equal(image_import(vs, "dev2", out, IMAGE_HPE_ZIP, NULL, NULL, &again, &e), 0);
  assert_string_equal(again.sha256, want_sha);
  assert_string_equal(again.member, member);
  assert_int_equal(again.crc32, info.crc32);
  assert_int_equal(again.size, info.size);

  /* A recorded size that is not the volume's is refused. */
  x = NULL;
  assert_int_equal(image_export_open(vs, "dev", member, info.size + 512, info.crc32, &x, &e), -1);
  assert_null(x);
  assert_int_equal(image_export_open(vs, "dev", "../x", info.size, info.crc32, &x, &e), -1);
  assert_string_equal(e.code, "IMAGE_ZIP_PATH");
  assert_int_equal(image_export_open(vs, "nope", member, info.size, info.crc32, &x, &e), -1);
  assert_int_equal(e.status, 404);
}

/* ---- raw, zips, qemu formats: the same 64 MiB disk with zero runs ----------- */

static void check_pattern(const char *id, const struct image_info *info) {
  CLEANUP_FREE char *want = slurp_input("pattern.sha256");
  assert_string_equal(info->sha256, want);
  assert_int_equal(info->size, 64 * MiB);
  /* 3 MiB of data, a sector and a lone block: the rest are holes. */
  assert_true(info->allocated >= 3 * MiB);
  assert_true(info->allocated <= 3 * MiB + 256 * 1024);
  char got[65];
  golden_sha256(id, got);
  assert_string_equal(got, want);
}

static void test_raw_holes(void **state) {
  struct image_info info;
  struct err e;
  assert_int_equal(import_as("raw1", "pattern.raw", IMAGE_AUTO, &info, &e), 0);
  assert_int_equal(info.format, IMAGE_RAW);
  assert_string_equal(info.member, "");
  check_pattern("raw1", &info);
  assert_int_equal(import_as("raw2", "pattern.raw", IMAGE_RAW, &info, &e), 0);
  check_pattern("raw2", &info);
  /* The same CRC-32 as zlib over the file. */
  CLEANUP_FREE char *p = input("pattern.raw");
  size_t len;
  CLEANUP_FREE char *data = util_read_file(p, &len, &e);
  assert_non_null(data);
  assert_int_equal(info.crc32, (uint32_t)crc32_z(0, (const Bytef *)data, len));
  /* A golden volume is never replaced. */
  assert_int_equal(import_as("raw1", "pattern.raw", IMAGE_RAW, &info, &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "VOL_EXISTS");
  assert_int_equal(import_as("../x", "pattern.raw", IMAGE_RAW, &info, &e), -1);
  assert_string_equal(e.code, "VOL_BAD_ID");
  assert_int_equal(golden_entries(), 2);
}

static void test_zip_variants(void **state) {
  static const struct {
    const char *name, *member;
  } cases[] = {{"pattern-stored.zip", "disk.raw"},
               {"pattern-deflate.zip", "disk.raw"},
               {"pattern-dd.zip", "disk.raw"},
               {"pattern-zip64.zip", "disk.raw"},
               {"pattern-utf8.zip", "disque-\xc3\xa9t\xc3\xa9.raw"}};
  struct image_info info;
  struct err e;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char id[16];
    snprintf(id, sizeof id, "z%zu", i);
    if (import_as(id, cases[i].name, IMAGE_AUTO, &info, &e) < 0)
      fail_msg("%s: %s", cases[i].name, e.message);
    assert_int_equal(info.format, IMAGE_HPE_ZIP);
    assert_string_equal(info.member, cases[i].member);
    check_pattern(id, &info);
  }
  /* The UTF-8 name (the last import) goes out flagged as UTF-8 (bit 11). */
  struct image_export *x = NULL;
  assert_int_equal(image_export_open(vs, "z4", info.member, info.size, info.crc32, &x, &e), 0);
  CLEANUP_FREE char *out = util_strdup_printf("%s/utf8-export.zip", fx);
  export_to_file(x, out, MiB);
  image_export_close(x);
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import sys, zipfile; [i] = zipfile.ZipFile(sys.argv[1]).infolist(); "
           "assert i.filename == \"disque-\\u00e9t\\u00e9.raw\" and i.flag_bits & 0x800' '%s'",
           out);
  assert_int_equal(system(cmd), 0);
}

static void test_qemu_formats(void **state) {
  static const struct {
    const char *name;
    enum image_format fmt;
  } cases[] = {{"pattern.qcow2", IMAGE_AUTO},
               {"pattern.qcow2", IMAGE_QCOW2},
               {"pattern.vmdk", IMAGE_AUTO},
               {"pattern.vhdx", IMAGE_AUTO},
               {"pattern.vhdx", IMAGE_VHDX}};
  static const enum image_format detected[] = {IMAGE_QCOW2, IMAGE_QCOW2, IMAGE_VMDK, IMAGE_VHDX,
                                               IMAGE_VHDX};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char id[16];
    snprintf(id, sizeof id, "q%zu", i);
    struct image_info info;
    struct err e;
    struct calls calls = {.monotonic = 1};
    CLEANUP_FREE char *p = input(cases[i].name);
    err_init(&e);
    if (image_import(vs, id, p, cases[i].fmt, on_progress, &calls, &info, &e) < 0)
      fail_msg("%s: %s", cases[i].name, e.message);
    assert_int_equal(info.format, detected[i]);
    check_pattern(id, &info);
    assert_true(calls.monotonic);
    assert_int_equal(calls.last_done, calls.last_total);
  }
}

static void test_qemu_img_missing(void **state) {
  setenv("STREAMER_QEMU_IMG", "/nonexistent/qemu-img", 1);
  struct image_info info;
  struct err e;
  int rc = import_as("q", "pattern.qcow2", IMAGE_AUTO, &info, &e);
  unsetenv("STREAMER_QEMU_IMG");
  assert_int_equal(rc, -1);
  assert_int_equal(e.status, 501);
  assert_string_equal(e.code, "QEMU_IMG_MISSING");
  assert_non_null(strstr(e.message, "qemu-utils"));
  assert_int_equal(golden_entries(), 0);
}

static void test_max_size(void **state) {
  setenv("STREAMER_IMAGE_MAX_BYTES", "1048576", 1);
  struct image_info info;
  struct err e;
  int zip = import_as("m", "pattern-deflate.zip", IMAGE_AUTO, &info, &e);
  char zip_code[64];
  snprintf(zip_code, sizeof zip_code, "%s", e.code);
  int raw = import_as("m", "pattern.raw", IMAGE_AUTO, &info, &e);
  unsetenv("STREAMER_IMAGE_MAX_BYTES");
  assert_int_equal(zip, -1);
  assert_string_equal(zip_code, "IMAGE_ZIP_BOMB");
  assert_int_equal(raw, -1);
  assert_string_equal(e.code, "IMAGE_UNSUPPORTED");
  assert_int_equal(golden_entries(), 0);
}

/* ---- hostile and broken inputs -------------------------------------------- */

static void test_hostile_inputs(void **state) {
  static const struct {
    const char *name;
    enum image_format fmt;
    const char *code;
    const char *code2; /* also acceptable, or NULL ("*": any of the damage codes) */
  } cases[] = {
      {"bad-two-members.zip", IMAGE_AUTO, "IMAGE_ZIP_MEMBERS", NULL},
      {"bad-dir-and-file.zip", IMAGE_AUTO, "IMAGE_ZIP_MEMBERS", NULL},
      {"bad-dotdot.zip", IMAGE_AUTO, "IMAGE_ZIP_PATH", NULL},
      {"bad-absolute.zip", IMAGE_AUTO, "IMAGE_ZIP_PATH", NULL},
      {"bad-backslash.zip", IMAGE_AUTO, "IMAGE_ZIP_PATH", NULL},
      {"bad-directory.zip", IMAGE_AUTO, "IMAGE_ZIP_PATH", NULL},
      {"bad-crc-stored.zip", IMAGE_AUTO, "IMAGE_CRC_MISMATCH", NULL},
      {"bad-crc-deflate.zip", IMAGE_AUTO, "IMAGE_CRC_MISMATCH", "*"},
      {"bad-truncated.zip", IMAGE_AUTO, "IMAGE_TRUNCATED", NULL},
      {"bad-truncated.zip", IMAGE_HPE_ZIP, "IMAGE_TRUNCATED", NULL},
      {"bad-declared-smaller.zip", IMAGE_AUTO, "IMAGE_ZIP_BOMB", NULL},
      {"bad-declared-larger.zip", IMAGE_AUTO, "IMAGE_TRUNCATED", NULL},
      {"bad-sizes-disagree.zip", IMAGE_AUTO, "IMAGE_ZIP_BOMB", NULL},
      {"bad-bomb-ratio.zip", IMAGE_AUTO, "IMAGE_ZIP_BOMB", NULL},
      {"bad-encrypted.zip", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-bzip2.zip", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-method12.zip", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-garbage.bin", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-garbage.bin", IMAGE_HPE_ZIP, "IMAGE_CORRUPT", NULL},
      {"bad-random.bin", IMAGE_HPE_ZIP, "IMAGE_CORRUPT", NULL},
      {"bad-odd-size.raw", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-empty.raw", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-empty.raw", IMAGE_HPE_ZIP, "IMAGE_CORRUPT", NULL},
      {"bad-odd-member.zip", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-empty-member.zip", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-zip-in-zip.zip", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-text-member.zip", IMAGE_AUTO, "IMAGE_NOT_A_DISK", NULL},
      {"bad-trailing-garbage.zip", IMAGE_AUTO, "IMAGE_CORRUPT", NULL},
      {"dev.zip", IMAGE_RAW, "IMAGE_NOT_A_DISK", NULL},
      {"pattern.qcow2", IMAGE_RAW, "IMAGE_NOT_A_DISK", NULL},
      {"bad-backing.qcow2", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-datafile.qcow2", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-descriptor.vmdk", IMAGE_AUTO, "IMAGE_UNSUPPORTED", NULL},
      {"bad-descriptor.vmdk", IMAGE_VMDK, "IMAGE_UNSUPPORTED", NULL},
      {"bad-not-qcow2.qcow2", IMAGE_QCOW2, "IMAGE_CORRUPT", NULL},
      {"pattern.raw", IMAGE_QCOW2, "IMAGE_CORRUPT", NULL},
      {"pattern.raw", IMAGE_HPE_ZIP, "IMAGE_CORRUPT", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct image_info info;
    struct err e;
    int rc = import_as("hostile", cases[i].name, cases[i].fmt, &info, &e);
    if (rc != -1) fail_msg("%s (%s) was accepted", cases[i].name, image_format_name(cases[i].fmt));
    int ok = !strcmp(e.code, cases[i].code) || (cases[i].code2 && !strcmp(e.code, cases[i].code2));
    /* A flipped compressed byte: inflate fails, or produces too much, too
     * little or other bytes, depending on where it lands. */
    if (cases[i].code2 && !strcmp(cases[i].code2, "*"))
      ok = !strcmp(e.code, "IMAGE_CORRUPT") || !strcmp(e.code, "IMAGE_CRC_MISMATCH") ||
           !strcmp(e.code, "IMAGE_ZIP_BOMB") || !strcmp(e.code, "IMAGE_TRUNCATED");
    if (!ok)
      fail_msg("%s (%s): %s %s, expected %s", cases[i].name, image_format_name(cases[i].fmt),
               e.code, e.message, cases[i].code);
    assert_int_equal(e.status, 400);
    assert_true(strlen(e.message) > 20);
    if (getenv("TEST_IMAGE_VERBOSE")) printf("%-26s %-14s %s\n", cases[i].name, e.code, e.message);
    /* Nothing behind: no golden volume, no temp file. */
    if (golden_entries() != 0) fail_msg("%s left a file in the golden directory", cases[i].name);
    assert_false(vol_golden_exists(vs, "hostile"));
  }
}

/* An import already running (its temp file locked) is not disturbed. */
static void test_busy(void **state) {
  CLEANUP_FREE char *tmp = vol_golden_tmp_path(vs, "busy");
  int fd = open(tmp, O_RDWR | O_CREAT, 0600);
  assert_true(fd >= 0);
  assert_int_equal(flock(fd, LOCK_EX), 0);
  assert_int_equal(write(fd, "x", 1), 1);
  struct image_info info;
  struct err e;
  assert_int_equal(import_as("busy", "pattern.raw", IMAGE_RAW, &info, &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "GOLDEN_VOLUME_BUSY");
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 1);
  assert_int_equal(st.st_nlink, 1);
  close(fd); /* a leftover of a crashed import is reused */
  assert_int_equal(import_as("busy", "pattern.raw", IMAGE_RAW, &info, &e), 0);
  check_pattern("busy", &info);
  assert_int_equal(golden_entries(), 1);
}

/* ---- disk full: a private tmpfs in a child process --------------------------- */

static void write_proc(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) _exit(2);
  close(fd);
}

/* In a child with its own mount namespace (and user namespace when not
 * root), mount a tmpfs of `mib` MiB, import `name` as raw into a store on it
 * with `reserve` (NULL: the default), and report "<status> <code> <entries
 * in the golden directory>". -1 when namespaces are not available. */
static int import_on_small_fs(const char *name, unsigned mib, const char *reserve, char *out,
                              size_t outlen) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  CLEANUP_FREE char *src = input(name);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWNS | (uid ? CLONE_NEWUSER : 0)) < 0) _exit(2);
    if (uid) {
      char map[64];
      write_proc("/proc/self/setgroups", "deny");
      snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
      write_proc("/proc/self/uid_map", map);
      snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
      write_proc("/proc/self/gid_map", map);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(2);
    char dir[400], opts[64];
    snprintf(dir, sizeof dir, "%s/small", fx);
    mkdir(dir, 0755);
    snprintf(opts, sizeof opts, "size=%um", mib);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) < 0) _exit(2);
    if (reserve) setenv("STREAMER_IMAGE_RESERVE_BYTES", reserve, 1);
    struct vol_store *small = NULL;
    struct err e;
    err_init(&e);
    char sd[450];
    snprintf(sd, sizeof sd, "%s/store", dir);
    if (vol_store_open(&small, sd, &e) < 0) _exit(1);
    struct image_info info;
    int rc = image_import(small, "full", src, IMAGE_RAW, NULL, NULL, &info, &e);
    snprintf(sd, sizeof sd, "%s/store/golden", dir);
    int n = 0;
    DIR *d = opendir(sd);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
      n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    dprintf(p[1], "%d %s %d", rc == 0 ? 0 : e.status, rc == 0 ? "OK" : e.code, n);
    _exit(0);
  }
  close(p[1]);
  size_t len = 0;
  ssize_t r;
  while (len + 1 < outlen && (r = read(p[0], out + len, outlen - 1 - len)) > 0)
    len += (size_t)r;
  out[len] = 0;
  close(p[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st) == 2) return -1;
  assert_int_equal(WEXITSTATUS(st), 0);
  return 0;
}

static void test_disk_full(void **state) {
  char out[200];
  if (import_on_small_fs("pattern.raw", 80, NULL, out, sizeof out) < 0)
    skip(); /* no mount namespace here: reported as skipped, not passed */
  /* 64 MiB image, 3 MiB of data: fits in 16 MiB above the 64 MiB reserve. */
  assert_string_equal(out, "0 OK 1");
  /* Free space below the reserve before anything is written. */
  assert_int_equal(import_on_small_fs("pattern.raw", 32, NULL, out, sizeof out), 0);
  assert_string_equal(out, "507 INSUFFICIENT_STORAGE 0");
  /* 16 MiB of data into 8 MiB above the reserve: stopped while writing. */
  assert_int_equal(import_on_small_fs("dense.raw", 72, NULL, out, sizeof out), 0);
  assert_string_equal(out, "507 INSUFFICIENT_STORAGE 0");
  /* No reserve: the file system itself fills up (ENOSPC). */
  assert_int_equal(import_on_small_fs("dense.raw", 8, "0", out, sizeof out), 0);
  assert_string_equal(out, "507 INSUFFICIENT_STORAGE 0");
}

/* ---- zip64 export of a 5 GiB sparse golden volume ------------------------------ */

/* CRC-32 of n zero bytes (n a multiple of 4096), by doubling. */
static uLong crc_zeros(uint64_t n) {
  static const unsigned char z[4096];
  uLong acc = 0, pow = crc32(0, z, sizeof z);
  uint64_t len = sizeof z;
  for (uint64_t k = n / sizeof z; k; k >>= 1) {
    if (k & 1) acc = crc32_combine64(acc, pow, (z_off64_t)len);
    pow = crc32_combine64(pow, pow, (z_off64_t)len);
    len *= 2;
  }
  return acc;
}

static void test_zip64_export(void **state) {
  const uint64_t size = 5 * GiB;
  unsigned char first[4096], last[4096];
  memset(first, 0, sizeof first);
  first[510] = 0x55;
  first[511] = 0xaa;
  for (size_t i = 0; i < sizeof last; i++)
    last[i] = (unsigned char)(i * 7 + 1);
  CLEANUP_FREE char *tmp = vol_golden_tmp_path(vs, "big");
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  assert_int_equal(pwrite(fd, first, sizeof first, 0), (ssize_t)sizeof first);
  assert_int_equal(pwrite(fd, last, sizeof last, (off_t)(size - sizeof last)),
                   (ssize_t)sizeof last);
  close(fd);
  struct err e;
  err_init(&e);
  assert_int_equal(vol_golden_commit(vs, "big", &e), 0);
  uLong crc = crc32(0, first, sizeof first);
  crc = crc32_combine64(crc, crc_zeros(size - 8192), (z_off64_t)(size - 8192));
  crc = crc32_combine64(crc, crc32(0, last, sizeof last), sizeof last);

  struct image_export *x = NULL;
  assert_int_equal(image_export_open(vs, "big", "disk.raw", size, (uint32_t)crc, &x, &e), 0);
  uint64_t total = image_export_length(x);
  /* Local header + zip64 extra, data, central entry + zip64 extra, zip64 end
   * record and locator, end record. */
  assert_int_equal(total, 30 + 8 + 20 + size + 46 + 8 + 20 + 56 + 20 + 22);
  /* The file the stream makes: its head and tail as read, the middle as holes
   * plus the two data blocks; a sample of ranges across it is compared with
   * what the stream serves (reading all 5 GiB of holes would take seconds). */
  CLEANUP_FREE char *out = util_strdup_printf("%s/big-export.zip", fx);
  fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)total), 0);
  const uint64_t data_off = 30 + 8 + 20, tail_off = data_off + size;
  unsigned char *buf = malloc(MiB), *want = malloc(MiB);
  assert_non_null(buf);
  assert_non_null(want);
  assert_int_equal(image_export_read(x, 0, buf, MiB, &e), (long)MiB);
  assert_int_equal(pwrite(fd, buf, MiB, 0), (ssize_t)MiB);
  assert_int_equal(image_export_read(x, total - MiB, buf, MiB, &e), (long)MiB);
  assert_int_equal(pwrite(fd, buf, MiB, (off_t)(total - MiB)), (ssize_t)MiB);
  assert_memory_equal(buf + MiB - (total - tail_off) - sizeof last, last, sizeof last);
  srand(5);
  for (int i = 0; i < 64; i++) {
    uint64_t off = i == 0 ? tail_off - 100 : ((uint64_t)rand() << 20 ^ (uint64_t)rand()) % total;
    size_t len = (size_t)(rand() % (int)MiB) + 1;
    long n = image_export_read(x, off, buf, len, &e);
    size_t expect = total - off < len ? (size_t)(total - off) : len;
    assert_int_equal(n, (long)expect);
    assert_int_equal(pread(fd, want, expect, (off_t)off), (ssize_t)expect);
    assert_memory_equal(buf, want, expect);
  }
  free(buf);
  free(want);
  close(fd);
  image_export_close(x);

  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [i] = z.infolist(); "
           "assert i.filename == \"disk.raw\" and i.file_size == %" PRIu64
           " and i.compress_size == i.file_size and i.CRC == %lu and i.compress_type == 0; "
           "f = z.open(i); assert f.read(512)[510:] == b\"\\x55\\xaa\"' '%s'",
           size, (unsigned long)crc, out);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "unzip -lqq '%s' | grep -q '^ *%" PRIu64 " .*disk.raw$'", out, size);
  assert_int_equal(system(cmd), 0);

  /* Our importer reads it back (zip64 end records and extra fields), CRC checked. */
  struct image_info info;
  err_init(&e);
  assert_int_equal(image_import(vs, "big2", out, IMAGE_AUTO, NULL, NULL, &info, &e), 0);
  assert_int_equal(info.size, size);
  assert_int_equal(info.crc32, (uint32_t)crc);
  assert_string_equal(info.member, "disk.raw");
  assert_true(info.allocated <= 64 * 1024);
}

/* ---- the inflater against zlib ------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* zlib: 1 stream end, 2 output cap reached, 0 error or not ended. */
static int zlib_inflate(const unsigned char *src, size_t n, unsigned char *out, size_t cap,
                        size_t *out_len, size_t *used) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(inflateInit2(&zs, -15), Z_OK);
  zs.next_in = (unsigned char *)src;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  int r = inflate(&zs, Z_FINISH);
  *out_len = cap - zs.avail_out;
  *used = n - zs.avail_in;
  inflateEnd(&zs);
  return r == Z_STREAM_END ? 1 : (r == Z_BUF_ERROR && zs.avail_out == 0) ? 2 : 0;
}

/* Ours, the way zip.c drives it: input in random pieces (kept and passed
 * again when the decoder wants more), output in random steps; ring: the
 * output goes through a window-plus-chunk buffer (the window copied to the
 * front at each step) and is collected in out; else straight into out. */
static int our_inflate(struct inflater *z, const unsigned char *src, size_t n, unsigned char *out,
                       size_t cap, size_t *out_len, size_t *used, int ring) {
  inflater_init(z);
  unsigned char *ib = malloc(n + 1);
  const size_t chunk = 4096 + rnd() % 70000;
  unsigned char *rb = malloc(INFLATE_WINDOW + chunk);
  assert_non_null(ib);
  assert_non_null(rb);
  size_t have = 0, fed = 0, off = 0, pos = 0, lim = 0, rpos = INFLATE_WINDOW, total = 0;
  int rc;
  for (;;) {
    const unsigned char *p = ib + off;
    size_t len = have - off;
    if (ring) {
      size_t before = rpos;
      rc = inflater_run(z, &p, &len, fed == n, rb, &rpos, INFLATE_WINDOW + chunk);
      size_t k = rpos - before;
      if (k > cap - total) k = cap - total;
      memcpy(out + total, rb + before, k);
      total += k;
      if (rc == INFLATE_FULL) {
        memmove(rb, rb + rpos - INFLATE_WINDOW, INFLATE_WINDOW);
        rpos = INFLATE_WINDOW;
        if (total == cap) rc = 2;
      }
    } else {
      if (lim <= pos) lim = pos + 1 + rnd() % 70000 < cap ? pos + 1 + rnd() % 70000 : cap;
      rc = inflater_run(z, &p, &len, fed == n, out, &pos, lim);
      total = pos;
      if (rc == INFLATE_FULL && pos == cap) rc = 2;
    }
    off = (size_t)(p - ib);
    if (rc == INFLATE_MORE) {
      assert_true(fed < n); /* never asks for more after the last input */
      size_t add = 1 + rnd() % 5000;
      if (add > n - fed) add = n - fed;
      memcpy(ib + have, src + fed, add);
      have += add;
      fed += add;
      continue;
    }
    if (rc == INFLATE_FULL) continue;
    break;
  }
  *out_len = total;
  *used = off;
  free(ib);
  free(rb);
  return rc == INFLATE_END ? 1 : rc == 2 ? 2 : 0;
}

static void test_inflate_vs_zlib(void **state) {
  const size_t cap = 4 * MiB;
  unsigned char *src = malloc(cap), *cmp = malloc(2 * cap), *o1 = malloc(cap), *o2 = malloc(cap);
  struct inflater *z = malloc(sizeof *z);
  assert_non_null(src);
  assert_non_null(cmp);
  assert_non_null(o1);
  assert_non_null(o2);
  assert_non_null(z);
  int ends = 0, errors = 0;
  const int rounds = getenv("TEST_INFLATE_ROUNDS") ? atoi(getenv("TEST_INFLATE_ROUNDS")) : 1500;
  for (int it = 0; it < rounds; it++) {
    size_t n = rnd() % (it % 25 == 0 ? cap : 40000);
    int kind = (int)(rnd() % 6);
    for (size_t i = 0; i < n; i++) {
      switch (kind) {
      case 0: src[i] = (unsigned char)rnd(); break;                             /* incompressible */
      case 1: src[i] = rnd() % 16 ? 0 : (unsigned char)rnd(); break;            /* sparse */
      case 2: src[i] = (unsigned char)"abcab"[rnd() % 5]; break;                /* short matches */
      case 3: src[i] = (i / 4096) % 3 ? 0 : (unsigned char)rnd(); break;        /* zero blocks */
      case 4: src[i] = (unsigned char)((i % 7) * (rnd() % 2)); break;           /* short periods */
      default: src[i] = (i / 300000) % 2 ? 0 : (unsigned char)(i % 251); break; /* long runs */
      }
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    static const int strategies[] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE,
                                     Z_FIXED};
    assert_int_equal(deflateInit2(&zs, (int)(rnd() % 10), Z_DEFLATED, -(int)(9 + rnd() % 7),
                                  (int)(1 + rnd() % 9), strategies[rnd() % 5]),
                     Z_OK);
    zs.next_in = src;
    zs.next_out = cmp;
    zs.avail_out = (uInt)(2 * cap);
    if (rnd() % 3 == 0 && n > 10) { /* a flush point: stored empty block, byte alignment */
      zs.avail_in = (uInt)(n / 2);
      deflate(&zs, rnd() % 2 ? Z_FULL_FLUSH : Z_SYNC_FLUSH);
      zs.avail_in = (uInt)(n - n / 2);
    } else {
      zs.avail_in = (uInt)n;
    }
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t cn = zs.total_out, tn = cn;
    deflateEnd(&zs);
    if (rnd() % 3 == 0) /* bytes after the stream (a zip's descriptor and directory) */
      for (size_t k = rnd() % 100; k; k--)
        cmp[tn++] = (unsigned char)rnd();
    int mode = (int)(rnd() % 7);
    if (mode == 1) /* flipped bits */
      for (int k = 1 + (int)(rnd() % 4); k; k--)
        cmp[rnd() % cn] ^= (unsigned char)(1u << (rnd() % 8));
    if (mode == 2) tn = rnd() % (cn + 1); /* truncated */
    if (mode == 3) {                      /* a run of random bytes */
      size_t a = rnd() % cn, b = a + rnd() % 64;
      for (size_t i = a; i < b && i < cn; i++)
        cmp[i] = (unsigned char)rnd();
    }
    if (mode == 4) { /* random bytes only, often announcing a dynamic block */
      tn = 1 + rnd() % 300;
      for (size_t i = 0; i < tn; i++)
        cmp[i] = (unsigned char)rnd();
      if (rnd() % 2) cmp[0] = (unsigned char)((cmp[0] & ~6) | 4);
    }
    if (mode == 5) /* a valid start, then noise */
      for (size_t i = rnd() % (cn < 40 ? cn + 1 : 40); i < tn; i++)
        if (rnd() % 2) cmp[i] = (unsigned char)rnd();
    size_t l1, u1, l2, u2;
    int r1 = zlib_inflate(cmp, tn, o1, cap, &l1, &u1);
    int r2 = our_inflate(z, cmp, tn, o2, cap, &l2, &u2, (int)(rnd() % 2));
    if (r1 != r2 || (r1 && (l1 != l2 || memcmp(o1, o2, l1))) || (r1 == 1 && u1 != u2))
      fail_msg("round %d (data %d, damage %d): zlib %d, %zu bytes, %zu used; ours %d, %zu bytes, "
               "%zu used (%s)",
               it, kind, mode, r1, l1, u1, r2, l2, u2, z->msg ? z->msg : "");
    if (mode == 0) {
      assert_int_equal(r2, 1);
      assert_int_equal(l2, n);
      assert_memory_equal(o2, src, n);
    }
    if (r1 == 1)
      ends++;
    else
      errors++;
  }
  assert_true(ends > rounds / 4 && errors > rounds / 4);
  free(src);
  free(cmp);
  free(o1);
  free(o2);
  free(z);
}

/* ---- streamed imports -------------------------------------------------------- */

/* Stream `data` (n bytes) into golden `id` in random pieces; the first
 * error's code (or "" if none) and, when it commits, info and sha256. */
static int stream_bytes(const char *id, enum image_format fmt, const unsigned char *data, size_t n,
                        struct image_info *info, char sha[65], struct err *e) {
  struct image_stream *s = NULL;
  err_init(e);
  if (image_stream_open(vs, id, fmt, &s, e) < 0) return -1;
  size_t off = 0;
  int failed = 0;
  while (off < n) {
    size_t k = rnd() % 4 == 0 ? 1 + rnd() % 64 : 1 + rnd() % (300 * 1024);
    if (k > n - off) k = n - off;
    struct err we;
    err_init(&we);
    int rc = image_stream_write(s, data + off, k, &we);
    if (rc < 0) {
      assert_false(failed); /* -1 once */
      failed = 1;
      assert_true(strlen(we.message) > 0);
      /* Nothing is left behind as soon as it fails. */
      if (golden_entries() != 0) fail_msg("%s: a file remains after the first error", id);
    }
    err_clear(&we);
    off += k;
  }
  int rc = image_stream_commit(s, NULL, NULL, info, e);
  if (rc == 0) {
    assert_false(failed);
    rc = image_stream_sha256(s, NULL, NULL, NULL, sha, e);
  }
  image_stream_close(s);
  return rc;
}

static int stream_input(const char *id, const char *name, enum image_format fmt,
                        struct image_info *info, char sha[65], struct err *e) {
  CLEANUP_FREE char *p = input(name);
  size_t n = 0;
  struct err re;
  err_init(&re);
  CLEANUP_FREE char *data = util_read_file(p, &n, &re);
  assert_non_null(data);
  return stream_bytes(id, fmt, (const unsigned char *)data, n, info, sha, e);
}

static void test_stream_good(void **state) {
  static const struct {
    const char *name;
    enum image_format fmt;
  } cases[] = {{"pattern.raw", IMAGE_RAW},
               {"pattern-deflate.zip", IMAGE_HPE_ZIP},
               {"pattern-stored.zip", IMAGE_HPE_ZIP},
               {"pattern-dd.zip", IMAGE_HPE_ZIP},
               {"pattern-zip64.zip", IMAGE_HPE_ZIP},
               {"pattern-utf8.zip", IMAGE_HPE_ZIP},
               {"dev.zip", IMAGE_HPE_ZIP}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char id[16], fid[16], sha[65], got[65];
    snprintf(id, sizeof id, "s%zu", i);
    snprintf(fid, sizeof fid, "f%zu", i);
    struct image_info info, finfo;
    struct err e;
    if (stream_input(id, cases[i].name, cases[i].fmt, &info, sha, &e) < 0)
      fail_msg("%s: %s %s", cases[i].name, e.code, e.message);
    /* As the file import of the same input. */
    assert_int_equal(import_as(fid, cases[i].name, cases[i].fmt, &finfo, &e), 0);
    assert_string_equal(sha, finfo.sha256);
    assert_int_equal(info.size, finfo.size);
    assert_int_equal(info.crc32, finfo.crc32);
    assert_int_equal(info.format, finfo.format);
    assert_string_equal(info.member, finfo.member);
    assert_true(info.sha256[0] == 0 || !strcmp(info.sha256, sha)); /* "" while pending */
    assert_true(info.allocated <= finfo.allocated + 64 * 1024);
    golden_sha256(id, got);
    assert_string_equal(got, sha);
    assert_int_equal(image_sha256(vs, id, NULL, NULL, NULL, got, &e), 0);
    assert_string_equal(got, sha);
  }
  assert_int_equal(golden_entries(), 2 * (int)(sizeof cases / sizeof cases[0]));
}

/* The SHA-256 in each of its modes (following the writes at idle or normal
 * priority, or after the commit) over a disk whose data and zero blocks
 * alternate at every granularity (the hasher's data map is per 64 KiB). */
static void test_stream_hash_modes(void **state) {
  const size_t n = 24 * MiB;
  unsigned char *disk = calloc(1, n);
  assert_non_null(disk);
  disk[0] = 0xeb; /* a first sector that is not text */
  size_t off = 4096;
  while (off < n) {
    size_t len = (size_t)(1 + rnd() % 40) * 4096, gap = (size_t)(rnd() % 40) * 4096;
    if (rnd() % 5 == 0) gap += (size_t)(rnd() % 3) * MiB;
    for (size_t i = off; i < off + len && i < n; i++)
      disk[i] = (unsigned char)(rnd() | 1);
    off += len + gap;
  }
  unsigned char d[32];
  char want[65];
  assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, disk, n, d), 0);
  hex(d, 32, want);
  static const char *const modes[] = {"idle", "follow", "after"};
  for (size_t i = 0; i < 3; i++) {
    setenv("STREAMER_IMAGE_HASH", modes[i], 1);
    char id[16], sha[65], got[65];
    snprintf(id, sizeof id, "m%zu", i);
    struct image_info info;
    struct err e;
    int rc = stream_bytes(id, IMAGE_RAW, disk, n, &info, sha, &e);
    unsetenv("STREAMER_IMAGE_HASH");
    if (rc < 0) fail_msg("%s: %s", modes[i], e.message);
    assert_string_equal(sha, want);
    golden_sha256(id, got);
    assert_string_equal(got, want);
  }
  free(disk);
}

/* A stored member with its sizes after it (data descriptor), made here. */
static unsigned char *stored_dd_zip(const unsigned char *data, size_t n, size_t junk,
                                    size_t *out_len) {
  const char *name = "disk.raw";
  size_t nl = strlen(name), len = 30 + nl + n + junk + 16 + 46 + nl + 22;
  unsigned char *z = calloc(1, len), *p = z;
  assert_non_null(z);
  uint32_t crc = (uint32_t)crc32(0, data, (uInt)n);
#define W16(v) (p[0] = (unsigned char)(v), p[1] = (unsigned char)((v) >> 8), p += 2)
#define W32(v) (W16((v)&0xffff), W16(((uint32_t)(v)) >> 16))
  W32(0x04034b50u), W16(20), W16(8), W16(0), W32(0), W32(0), W32(0), W32(0), W16(nl), W16(0);
  memcpy(p, name, nl), p += nl;
  memcpy(p, data, n), p += n;
  memset(p, 'J', junk), p += junk;
  size_t cd_off = (size_t)(p - z) + 16;
  W32(0x08074b50u), W32(crc), W32(n), W32(n);
  W32(0x02014b50u), W16(20), W16(20), W16(8), W16(0), W32(0), W32(crc), W32(n), W32(n), W16(nl);
  W16(0), W16(0), W16(0), W16(0), W32(0), W32(0);
  memcpy(p, name, nl), p += nl;
  W32(0x06054b50u), W16(0), W16(0), W16(1), W16(1), W32(46 + nl), W32(cd_off), W16(0);
#undef W16
#undef W32
  assert_int_equal((size_t)(p - z), len);
  *out_len = len;
  return z;
}

static void test_stream_stored_descriptor(void **state) {
  CLEANUP_FREE char *p = input("pattern.raw");
  size_t n = 0;
  struct err e;
  err_init(&e);
  CLEANUP_FREE char *raw = util_read_file(p, &n, &e);
  assert_non_null(raw);
  size_t zl;
  unsigned char *z = stored_dd_zip((const unsigned char *)raw, n, 0, &zl);
  struct image_info info;
  char sha[65];
  if (stream_bytes("sdd", IMAGE_HPE_ZIP, z, zl, &info, sha, &e) < 0)
    fail_msg("%s %s", e.code, e.message);
  free(z);
  snprintf(info.sha256, sizeof info.sha256, "%s", sha);
  check_pattern("sdd", &info);
  /* Bytes between the data and the directory: refused, nothing left. */
  z = stored_dd_zip((const unsigned char *)raw, n, 4096, &zl);
  assert_int_equal(stream_bytes("junk", IMAGE_HPE_ZIP, z, zl, &info, sha, &e), -1);
  free(z);
  assert_string_equal(e.code, "IMAGE_CORRUPT");
  assert_false(vol_golden_exists(vs, "junk"));
  assert_int_equal(golden_entries(), 1);
}

static void test_stream_hostile(void **state) {
  static const struct {
    const char *name;
    enum image_format fmt;
  } cases[] = {
      {"bad-two-members.zip", IMAGE_HPE_ZIP},
      {"bad-dir-and-file.zip", IMAGE_HPE_ZIP},
      {"bad-dotdot.zip", IMAGE_HPE_ZIP},
      {"bad-absolute.zip", IMAGE_HPE_ZIP},
      {"bad-backslash.zip", IMAGE_HPE_ZIP},
      {"bad-directory.zip", IMAGE_HPE_ZIP},
      {"bad-crc-stored.zip", IMAGE_HPE_ZIP},
      {"bad-crc-deflate.zip", IMAGE_HPE_ZIP},
      {"bad-truncated.zip", IMAGE_HPE_ZIP},
      {"bad-declared-smaller.zip", IMAGE_HPE_ZIP},
      {"bad-declared-larger.zip", IMAGE_HPE_ZIP},
      {"bad-sizes-disagree.zip", IMAGE_HPE_ZIP},
      {"bad-bomb-ratio.zip", IMAGE_HPE_ZIP},
      {"bad-encrypted.zip", IMAGE_HPE_ZIP},
      {"bad-bzip2.zip", IMAGE_HPE_ZIP},
      {"bad-method12.zip", IMAGE_HPE_ZIP},
      {"bad-garbage.bin", IMAGE_HPE_ZIP},
      {"bad-random.bin", IMAGE_HPE_ZIP},
      {"bad-garbage.bin", IMAGE_RAW},
      {"bad-odd-size.raw", IMAGE_RAW},
      {"bad-empty.raw", IMAGE_HPE_ZIP},
      {"bad-odd-member.zip", IMAGE_HPE_ZIP},
      {"bad-empty-member.zip", IMAGE_HPE_ZIP},
      {"bad-zip-in-zip.zip", IMAGE_HPE_ZIP},
      {"bad-text-member.zip", IMAGE_HPE_ZIP},
      {"bad-trailing-garbage.zip", IMAGE_HPE_ZIP},
      {"dev.zip", IMAGE_RAW},
      {"pattern.qcow2", IMAGE_RAW},
      {"pattern.raw", IMAGE_HPE_ZIP},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct image_info info;
    struct err e, fe;
    char sha[65];
    /* bad-empty.raw cannot be streamed as raw (an upload is never empty). */
    int rc = stream_input("hostile", cases[i].name, cases[i].fmt, &info, sha, &e);
    if (rc != -1) fail_msg("%s (%s) was accepted", cases[i].name, image_format_name(cases[i].fmt));
    assert_int_equal(import_as("hostile", cases[i].name, cases[i].fmt, &info, &fe), -1);
    /* The same verdict as the file import, but where damage lands in the
     * middle of a deflate stream (any of the damage codes). */
    int same = !strcmp(e.code, fe.code);
    if (!strcmp(cases[i].name, "bad-crc-deflate.zip"))
      same = !strcmp(e.code, "IMAGE_CORRUPT") || !strcmp(e.code, "IMAGE_CRC_MISMATCH") ||
             !strcmp(e.code, "IMAGE_ZIP_BOMB") || !strcmp(e.code, "IMAGE_TRUNCATED");
    if (!same)
      fail_msg("%s (%s): streamed %s \"%s\", from the file %s \"%s\"", cases[i].name,
               image_format_name(cases[i].fmt), e.code, e.message, fe.code, fe.message);
    assert_int_equal(e.status, 400);
    if (getenv("TEST_IMAGE_VERBOSE")) printf("%-26s %-14s %s\n", cases[i].name, e.code, e.message);
    err_clear(&e);
    err_clear(&fe);
    if (golden_entries() != 0) fail_msg("%s left a file in the golden directory", cases[i].name);
  }
}

/* A stream never committed leaves nothing; the id's rules as for a file. */
static void test_stream_abandon_busy(void **state) {
  struct image_stream *s = NULL, *t = NULL;
  struct err e;
  err_init(&e);
  CLEANUP_FREE char *p = input("pattern.raw");
  size_t n = 0;
  CLEANUP_FREE char *raw = util_read_file(p, &n, &e);
  assert_non_null(raw);
  assert_int_equal(image_stream_open(vs, "a", IMAGE_RAW, &s, &e), 0);
  assert_int_equal(image_stream_write(s, raw, n / 2, &e), 0);
  /* The same id again while the first is open. */
  assert_int_equal(image_stream_open(vs, "a", IMAGE_HPE_ZIP, &t, &e), -1);
  assert_string_equal(e.code, "GOLDEN_VOLUME_BUSY");
  assert_null(t);
  assert_int_equal(golden_entries(), 1); /* the temp file */
  image_stream_close(s);                 /* the client went away */
  assert_int_equal(golden_entries(), 0);
  assert_int_equal(image_stream_open(vs, "../x", IMAGE_RAW, &s, &e), -1);
  assert_string_equal(e.code, "VOL_BAD_ID");
  struct image_info info;
  char sha[65];
  assert_int_equal(stream_bytes("a", IMAGE_RAW, (const unsigned char *)raw, n, &info, sha, &e), 0);
  assert_int_equal(image_stream_open(vs, "a", IMAGE_RAW, &s, &e), -1);
  assert_string_equal(e.code, "VOL_EXISTS");
  /* Closing a committed stream before its SHA-256 is done keeps the volume. */
  assert_int_equal(image_stream_open(vs, "b", IMAGE_RAW, &s, &e), 0);
  assert_int_equal(image_stream_write(s, raw, n, &e), 0);
  assert_int_equal(image_stream_commit(s, NULL, NULL, &info, &e), 0);
  image_stream_close(s);
  assert_true(vol_golden_exists(vs, "b"));
  assert_int_equal(image_sha256(vs, "b", NULL, NULL, NULL, sha, &e), 0);
  CLEANUP_FREE char *want = slurp_input("pattern.sha256");
  assert_string_equal(sha, want);
  /* A stop flag interrupts the SHA-256. */
  int stop = 1;
  assert_int_equal(image_sha256(vs, "b", &stop, NULL, NULL, sha, &e), -1);
  assert_string_equal(e.code, "CHECKSUM_INTERRUPTED");
  assert_int_equal(image_sha256(vs, "nope", NULL, NULL, NULL, sha, &e), -1);
  assert_int_equal(e.status, 404);
  assert_int_equal(golden_entries(), 2);
}

int main(void) {
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_hpe_developer_image, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raw_holes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zip_variants, setup, teardown),
      cmocka_unit_test_setup_teardown(test_qemu_formats, setup, teardown),
      cmocka_unit_test_setup_teardown(test_qemu_img_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hostile_inputs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zip64_export, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inflate_vs_zlib, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_good, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_hash_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_stored_descriptor, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_hostile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_abandon_busy, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
