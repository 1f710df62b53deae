/* test_fs_ext.c — ext2/3/4 through libext2fs (src/fs/ext.c). Images are made
 * here with e2fsprogs (mkfs.ext2/3/4 -d populating them from a directory
 * tree, debugfs -w for what -d cannot do), opened as file volumes, read and
 * changed through every fs_ops call, and then checked by tools independent
 * of our code: e2fsck -fn must find the filesystem clean, debugfs must show
 * the bytes, modes, owners, links and times we wrote. Also: htree
 * directories grown by thousands of entries, big and sparse files, fast and
 * slow symlinks, hard links, inline data, 1 KiB to 64 KiB blocks, 128-byte
 * inodes, a journal that needs recovery (refused read-write), damaged and
 * foreign images (refused, no crash), statvfs as the kernel computes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"

static char dir[64];

/* ---- helpers ---------------------------------------------------------------- */

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

/* stdout of a shell command, malloc'd */
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
    if (n + 4096 + 1 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
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

static char *img(const char *name) {
  static char path[8][256];
  static int i;
  char *p = path[i++ % 8];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

/* mkfs an image of size_mb MiB with extra mkfs args (e.g. "-t ext3 -d SRC") */
static char *mkfs(const char *name, unsigned size_mb, const char *args) {
  char *p = img(name);
  assert_int_equal(sh("rm -f '%s' && truncate -s %uM '%s' && mkfs.ext4 -q -F -E "
                      "lazy_itable_init=1 %s '%s' >/dev/null 2>&1",
                      p, size_mb, p, args, p),
                   0);
  return p;
}

struct h {
  struct vol *v;
  struct fs *f;
};

static struct h xopen(const char *path, int ro) {
  struct h h = {0};
  struct err e;
  err_init(&e);
  assert_int_equal(vol_file_open(path, ro, &h.v, &e), 0);
  if (fs_ext_open(h.v, ro, &h.f, &e) < 0) fail_msg("open %s: %s", path, e.message);
  return h;
}

static void xclose(struct h *h) {
  fs_close(h->f);
  vol_close(h->v);
  h->f = NULL;
  h->v = NULL;
}

/* e2fsck -fn finds nothing to fix */
static void fsck_clean(const char *path) {
  char *out = sh_out("e2fsck -fn '%s' 2>&1; echo rc=$?", path);
  if (!strstr(out, "rc=0\n")) fail_msg("e2fsck -fn %s:\n%s", path, out);
  free(out);
}

static char *dcat(const char *image, const char *path) {
  return sh_out("debugfs -R 'cat \"%s\"' '%s' 2>/dev/null", path, image);
}

static char *dstat(const char *image, const char *path) {
  return sh_out("debugfs -R 'stat \"%s\"' '%s' 2>/dev/null", path, image);
}

static void has(const char *text, const char *needle) {
  if (!strstr(text, needle)) fail_msg("expected \"%s\" in:\n%s", needle, text);
}

static void dfree(struct fs_dirent *d, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(d[i].name);
  free(d);
}

/* the call failed with this status and code */
#define FAILS(call, st, cd)                                                                        \
  do {                                                                                             \
    err_init(&e);                                                                                  \
    if ((call) != -1) fail_msg("%s succeeded", #call);                                             \
    if (e.status != (st) || strcmp(e.code, (cd)))                                                  \
      fail_msg("%s: %d %s (%s), expected %d %s", #call, e.status, e.code, e.message, (st), (cd));  \
  } while (0)
#define OK(call)                                                                                   \
  do {                                                                                             \
    err_init(&e);                                                                                  \
    if ((call) != 0) fail_msg("%s: %s", #call, e.message);                                         \
  } while (0)

static char *xread(struct fs *f, const char *path, size_t *len) {
  struct err e;
  struct fs_stat st;
  OK(f->ops->stat(f, path, &st, &e));
  char *buf = malloc(st.size + 1);
  assert_non_null(buf);
  size_t got = 0;
  OK(f->ops->read(f, path, buf, st.size, 0, &got, &e));
  assert_int_equal(got, st.size);
  buf[got] = 0;
  if (len) *len = got;
  return buf;
}

static void xwrite(struct fs *f, const char *path, const char *s, int flags) {
  struct err e;
  OK(f->ops->write(f, path, s, strlen(s), 0, flags, 0644, &e));
}

static char *host_file(const char *path, size_t *len) {
  struct err e;
  err_init(&e);
  char *d = util_read_file(path, len, &e);
  assert_non_null(d);
  return d;
}

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-ext-XXXXXX");
  assert_non_null(mkdtemp(dir));
  log_set_level(LOG_ERROR);
  return 0;
}

static int teardown(void **state) { return sh("rm -rf '%s'", dir); }

/* A source tree for mkfs -d: text, a 3 MiB file, a sparse file, fast and
 * slow symlinks, hard links, owners and modes. */
static void make_tree(const char *src) {
  assert_int_equal(
      sh("set -e; rm -rf '%1$s'; mkdir -p '%1$s/etc/sysconfig' '%1$s/d/e' '%1$s/empty'; "
         "printf 'server42\\n' > '%1$s/etc/hostname'; chown 1000:1001 '%1$s/etc/hostname'; "
         "chmod 640 '%1$s/etc/hostname'; "
         "head -c 3145728 /dev/urandom > '%1$s/big'; "
         "truncate -s 10M '%1$s/sparse'; printf 'middle' | dd of='%1$s/sparse' bs=1 "
         "seek=5000000 conv=notrunc status=none; "
         "ln -s hostname '%1$s/etc/fast'; "
         "ln -s /etc/sysconfig/../%2$s '%1$s/slow'; "
         "ln '%1$s/etc/hostname' '%1$s/d/hard'; "
         "printf 'x' > '%1$s/d/e/deep'; chmod 4755 '%1$s/d/e/deep'",
         src,
         "hostname-"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
      0);
}

/* ---- reading what mkfs -d wrote --------------------------------------------- */

struct variant {
  const char *name, *args, *type;
  int ns; /* inodes hold nanoseconds */
};

static const struct variant variants[] = {
    {"ext2", "-t ext2", "ext2", 1},
    {"ext3", "-t ext3", "ext3", 1},
    {"ext4", "-t ext4", "ext4", 1},
    {"ext4-1k", "-t ext4 -b 1024", "ext4", 1},
    {"ext4-2k-128", "-t ext4 -b 2048 -I 128", "ext4", 0},
    {"ext4-64k", "-t ext4 -b 65536", "ext4", 1},
    {"ext4-nocsum", "-t ext4 -O ^metadata_csum,^64bit,^flex_bg", "ext4", 1},
    {"ext4-metabg", "-t ext4 -O meta_bg,^resize_inode", "ext4", 1},
};

static void read_tree(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/src", dir);
  make_tree(src);
  char big_host[160];
  snprintf(big_host, sizeof big_host, "%s/big", src);
  size_t big_len;
  char *big = host_file(big_host, &big_len);
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    char args[512];
    snprintf(args, sizeof args, "%s -d '%s'", variants[v].args, src);
    char *p = mkfs(variants[v].name, 96, args);
    struct h h = xopen(p, 1);
    struct fs *f = h.f;
    assert_string_equal(f->ops->type, variants[v].type);
    assert_int_equal(f->read_only, 1);

    struct fs_stat st;
    OK(f->ops->stat(f, "/etc/hostname", &st, &e));
    assert_int_equal(st.mode, S_IFREG | 0640);
    assert_int_equal(st.uid, 1000);
    assert_int_equal(st.gid, 1001);
    assert_int_equal(st.nlink, 2);
    assert_int_equal(st.size, 9);
    char *s = xread(f, "/etc/hostname", NULL);
    assert_string_equal(s, "server42\n");
    free(s);
    /* the hard link is the same inode */
    struct fs_stat st2;
    OK(f->ops->stat(f, "/d/hard", &st2, &e));
    assert_int_equal(st2.ino, st.ino);
    /* fast symlink: lstat sees it, stat and read follow it */
    OK(f->ops->lstat(f, "/etc/fast", &st2, &e));
    assert_int_equal(st2.mode & S_IFMT, S_IFLNK);
    assert_int_equal(st2.size, 8);
    OK(f->ops->stat(f, "/etc/fast", &st2, &e));
    assert_int_equal(st2.ino, st.ino);
    char *t;
    OK(f->ops->readlink(f, "/etc/fast", &t, &e));
    assert_string_equal(t, "hostname");
    free(t);
    /* slow symlink (longer than 60 bytes), absolute, with ".." inside */
    OK(f->ops->readlink(f, "/slow", &t, &e));
    assert_true(strlen(t) > 60);
    assert_non_null(strstr(t, "/etc/sysconfig/../hostname-aaa"));
    free(t);
    OK(f->ops->lstat(f, "/slow", &st2, &e));
    assert_true(st2.blocks > 0);
    FAILS(f->ops->stat(f, "/slow", &st2, &e), 404, FS_ENOENT); /* dangling */
    /* big file, read whole and in pieces */
    size_t n;
    s = xread(f, "/big", &n);
    assert_int_equal(n, big_len);
    assert_memory_equal(s, big, n);
    free(s);
    char buf[5000];
    size_t got;
    OK(f->ops->read(f, "/big", buf, sizeof buf, 1000000, &got, &e));
    assert_int_equal(got, sizeof buf);
    assert_memory_equal(buf, big + 1000000, sizeof buf);
    OK(f->ops->read(f, "/big", buf, sizeof buf, big_len - 10, &got, &e));
    assert_int_equal(got, 10);
    OK(f->ops->read(f, "/big", buf, sizeof buf, big_len + 10, &got, &e));
    assert_int_equal(got, 0);
    /* sparse: holes read as zeros and use no blocks */
    OK(f->ops->stat(f, "/sparse", &st2, &e));
    assert_int_equal(st2.size, 10 << 20);
    assert_true(st2.blocks * 512 < 256 * 1024);
    OK(f->ops->read(f, "/sparse", buf, 12, 4999997, &got, &e));
    assert_int_equal(got, 12);
    assert_memory_equal(buf, "\0\0\0middle\0\0\0", 12);
    /* modes and directories */
    OK(f->ops->stat(f, "/d/e/deep", &st2, &e));
    assert_int_equal(st2.mode, S_IFREG | 04755);
    OK(f->ops->stat(f, "/d/e/../../etc/./sysconfig//", &st2, &e));
    assert_int_equal(st2.mode & S_IFMT, S_IFDIR);
    struct fs_dirent *d;
    size_t nd;
    OK(f->ops->readdir(f, "/", &d, &nd, &e));
    int seen = 0;
    for (size_t i = 0; i < nd; i++) {
      if (!strcmp(d[i].name, "etc")) seen |= 1, assert_int_equal(d[i].type, DT_DIR);
      if (!strcmp(d[i].name, "big")) seen |= 2, assert_int_equal(d[i].type, DT_REG);
      if (!strcmp(d[i].name, "slow")) seen |= 4, assert_int_equal(d[i].type, DT_LNK);
      if (!strcmp(d[i].name, "lost+found")) seen |= 8;
      assert_true(strcmp(d[i].name, ".") && strcmp(d[i].name, ".."));
    }
    assert_int_equal(seen, 15);
    assert_int_equal(nd, 7); /* etc d empty big sparse slow lost+found */
    dfree(d, nd);
    OK(f->ops->readdir(f, "/empty", &d, &nd, &e));
    assert_int_equal(nd, 0);
    dfree(d, nd);
    /* reading never needs write access, writing does */
    FAILS(f->ops->write(f, "/x", "a", 1, 0, FS_O_CREAT, 0644, &e), 400, FS_EROFS);
    FAILS(f->ops->mkdir(f, "/x", 0755, &e), 400, FS_EROFS);
    xclose(&h);
  }
  free(big);
}

/* ---- every write op, checked by e2fsck and debugfs ------------------------------ */

static void write_ops(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/src", dir);
  make_tree(src);
  char big_host[160];
  snprintf(big_host, sizeof big_host, "%s/big", src);
  size_t big_len;
  char *big = host_file(big_host, &big_len);
  char slow[201];
  memset(slow, 's', 200);
  slow[200] = 0;
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    char args[512];
    snprintf(args, sizeof args, "%s -d '%s'", variants[v].args, src);
    char *p = mkfs(variants[v].name, 96, args);
    struct h h = xopen(p, 0);
    struct fs *f = h.f;
    assert_int_equal(f->read_only, 0);
    OK(f->ops->mkdir(f, "/new", 0750, &e));
    OK(f->ops->mkdir(f, "/new/sub/", 0700, &e));
    OK(f->ops->write(f, "/new/file", "hello", 5, 0, FS_O_CREAT | FS_O_EXCL, 0600, &e));
    OK(f->ops->write(f, "/new/file", " world", 6, 12345, FS_O_APPEND, 0, &e));
    OK(f->ops->write(f, "/new/file", "HE", 2, 0, 0, 0, &e));
    OK(f->ops->write(f, "/new/holey", "end", 3, 1000000, FS_O_CREAT, 0644, &e));
    OK(f->ops->write(f, "/new/big", big, 700000, 0, FS_O_CREAT, 0644, &e));
    OK(f->ops->write(f, "/new/big", big + 700000, big_len - 700000, 700000, 0, 0, &e));
    OK(f->ops->truncate(f, "/new/big", 1000001, &e));
    OK(f->ops->truncate(f, "/new/big", 1500000, &e));
    xwrite(f, "/etc/hostname", "newhost\n", FS_O_TRUNC);
    OK(f->ops->symlink(f, "file", "/new/fast", &e));
    OK(f->ops->symlink(f, slow, "/new/slow", &e));
    OK(f->ops->link(f, "/new/file", "/new/file2", &e));
    OK(f->ops->rename(f, "/new/file2", "/new/file3", &e));
    OK(f->ops->rename(f, "/new/file3", "/d/e/file3", &e));
    OK(f->ops->write(f, "/new/gone", "x", 1, 0, FS_O_CREAT, 0644, &e));
    OK(f->ops->rename(f, "/big", "/new/gone", &e)); /* replaces a file */
    OK(f->ops->rename(f, "/d/e", "/new/e", &e));    /* a directory to another parent */
    OK(f->ops->rename(f, "/new/e", "/empty", &e));  /* over an empty directory */
    OK(f->ops->unlink(f, "/slow", &e));
    OK(f->ops->unlink(f, "/d/hard", &e));
    OK(f->ops->rmdir(f, "/new/sub", &e));
    OK(f->ops->chmod(f, "/new/file", 0604, &e));
    OK(f->ops->chown(f, "/new/file", 1234, 5678, &e));
    OK(f->ops->chown(f, "/new/fast", 77, (uint32_t)-1, &e)); /* follows the link */
    OK(f->ops->utimens(f, "/new/file", 1600000000, 123456789, 1700000000, 987654321, &e));
    OK(f->ops->sync(f, &e));
    /* more after a sync; then what we see ourselves */
    OK(f->ops->mkdir(f, "/new/after", 0755, &e));
    struct fs_stat st;
    OK(f->ops->stat(f, "/new/file", &st, &e));
    assert_int_equal(st.mode, S_IFREG | 0604);
    assert_int_equal(st.uid, 77);
    assert_int_equal(st.gid, 5678);
    assert_int_equal(st.size, 11);
    assert_int_equal(st.mtime, 1700000000);
    assert_int_equal(st.mtime_ns, variants[v].ns ? 987654321 : 0);
    assert_int_equal(st.atime, 1600000000);
    OK(f->ops->stat(f, "/new", &st, &e));
    assert_int_equal(st.nlink, 3); /* its name, ".", "after/.." */
    char *s = xread(f, "/new/file", NULL);
    assert_string_equal(s, "HEllo world");
    free(s);
    xclose(&h);

    fsck_clean(p);
    s = dcat(p, "/new/file");
    assert_string_equal(s, "HEllo world");
    free(s);
    s = dstat(p, "/new/file");
    has(s, "Mode:  0604");
    has(s, "User:    77   Group:  5678");
    has(s, "Links: 2"); /* and /empty/file3 */
    if (variants[v].ns) {
      char want[64];
      snprintf(want, sizeof want, "mtime: 0x%08x:%08x", 1700000000u, 987654321u << 2);
      has(s, want);
      snprintf(want, sizeof want, "atime: 0x%08x:%08x", 1600000000u, 123456789u << 2);
      has(s, want);
    }
    free(s);
    s = dcat(p, "/new/holey");
    assert_memory_equal(s + 1000000, "end", 4);
    for (int i = 0; i < 1000000; i++)
      if (s[i]) fail_msg("byte %d of /new/holey is %d", i, s[i]);
    free(s);
    s = dstat(p, "/new/holey");
    has(s, "Size: 1000003");
    free(s);
    size_t n;
    char path[256];
    snprintf(path, sizeof path, "%s/out", dir);
    assert_int_equal(sh("debugfs -R 'dump /new/big %s' '%s' >/dev/null 2>&1", path, p), 0);
    s = host_file(path, &n);
    assert_int_equal(n, 1500000);
    assert_memory_equal(s, big, 1000001);
    for (size_t i = 1000001; i < n; i++)
      if (s[i]) fail_msg("byte %zu of /new/big is %d after truncate", i, s[i]);
    free(s);
    assert_int_equal(sh("debugfs -R 'dump /new/gone %s' '%s' >/dev/null 2>&1", path, p), 0);
    s = host_file(path, &n);
    assert_int_equal(n, big_len);
    assert_memory_equal(s, big, n);
    free(s);
    s = dcat(p, "/etc/hostname");
    assert_string_equal(s, "newhost\n");
    free(s);
    s = dstat(p, "/etc/hostname");
    has(s, "Links: 1");
    has(s, "User:  1000");
    free(s);
    s = dstat(p, "/new/fast");
    has(s, "Type: symlink");
    has(s, "Fast link dest: \"file\"");
    free(s);
    s = dstat(p, "/new/slow");
    has(s, "Type: symlink");
    has(s, "Size: 200");
    free(s);
    s = sh_out("debugfs -R 'ls -l /empty' '%s' 2>/dev/null", p);
    has(s, " deep");
    has(s, " file3");
    free(s);
    s = sh_out("debugfs -R 'ls /new' '%s' 2>/dev/null", p);
    assert_null(strstr(s, "sub"));
    assert_null(strstr(s, " e "));
    has(s, "after");
    free(s);
    s = sh_out("debugfs -R 'ls /d' '%s' 2>/dev/null", p);
    assert_null(strstr(s, "hard"));
    free(s);
  }
  free(big);
}

/* ---- htree directories ------------------------------------------------------ */

static int count_names(struct fs *f, const char *path) {
  struct err e;
  struct fs_dirent *d;
  size_t n;
  OK(f->ops->readdir(f, path, &d, &n, &e));
  dfree(d, n);
  return (int)n;
}

static void htree(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/hsrc", dir);
  assert_int_equal(sh("set -e; rm -rf '%1$s'; mkdir -p '%1$s/many'; cd '%1$s/many'; "
                      "for i in $(seq 1 1500); do : > \"name-with-some-length-$i\"; done",
                      src),
                   0);
  const char *kinds[] = {"-t ext4 -b 1024", "-t ext4", "-t ext3"};
  for (int k = 0; k < 3; k++) {
    char args[512], name[32];
    snprintf(args, sizeof args, "%s -d '%s'", kinds[k], src);
    snprintf(name, sizeof name, "htree%d", k);
    char *p = mkfs(name, 64, args);
    /* e2fsck -D indexes the directory */
    assert_true(sh("e2fsck -fyD '%s' >/dev/null 2>&1", p) <= 1);
    char *s = dstat(p, "/many");
    assert_non_null(strstr(s, "Flags: 0x1000") ? s : strstr(s, "Flags: 0x81000"));
    free(s);
    struct h h = xopen(p, 0);
    struct fs *f = h.f;
    char path[128];
    for (int i = 1; i <= 4000; i++) {
      snprintf(path, sizeof path, "/many/added-entry-number-%d", i);
      OK(f->ops->write(f, path, path, strlen(path), 0, FS_O_CREAT, 0644, &e));
      if (i % 1000 == 0) { /* directories and symlinks too */
        snprintf(path, sizeof path, "/many/dir-%d", i);
        OK(f->ops->mkdir(f, path, 0755, &e));
        snprintf(path, sizeof path, "/many/link-%d", i);
        OK(f->ops->symlink(f, "target", path, &e));
      }
    }
    for (int i = 1; i <= 1500; i += 3) {
      snprintf(path, sizeof path, "/many/name-with-some-length-%d", i);
      OK(f->ops->unlink(f, path, &e));
    }
    for (int i = 2; i <= 200; i += 3) {
      char to[128];
      snprintf(path, sizeof path, "/many/name-with-some-length-%d", i);
      snprintf(to, sizeof to, "/many/renamed-%d", i);
      OK(f->ops->rename(f, path, to, &e));
    }
    assert_int_equal(count_names(f, "/many"), 1500 - 500 + 4000 + 8);
    /* a fresh, linear directory grown to many blocks */
    OK(f->ops->mkdir(f, "/lin", 0755, &e));
    for (int i = 0; i < 2000; i++) {
      snprintf(path, sizeof path, "/lin/entry-%05d", i);
      if (i % 2)
        OK(f->ops->write(f, path, "", 0, 0, FS_O_CREAT, 0644, &e));
      else
        OK(f->ops->mkdir(f, path, 0755, &e));
    }
    assert_int_equal(count_names(f, "/lin"), 2000);
    struct fs_stat st;
    OK(f->ops->stat(f, "/lin", &st, &e));
    assert_int_equal(st.nlink, 1002);
    xclose(&h);
    fsck_clean(p);
    s = dcat(p, "/many/added-entry-number-3999");
    assert_string_equal(s, "/many/added-entry-number-3999");
    free(s);
    /* entries with inode 0 are deleted ones debugfs still lists */
    s = sh_out("debugfs -R 'ls -p /many' '%s' 2>/dev/null | "
               "awk -F/ '$2 != 0 && $6 ~ /^(added|name|renamed)-/' | wc -l",
               p);
    assert_int_equal(atoi(s), 1000 + 4000);
    free(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(read_tree, setup, teardown),
      cmocka_unit_test_setup_teardown(write_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(htree, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
