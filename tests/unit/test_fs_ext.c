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
#include <pthread.h>
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
    /* as RHEL 7 made them: gdt_csum (uninit_bg), no 64bit, no metadata_csum */
    {"ext4-rhel7", "-t ext4 -b 4096 -O ^metadata_csum,^64bit,uninit_bg", "ext4", 1},
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
    /* an indexed directory moves: its ".." is in the htree root block */
    OK(f->ops->rename(f, "/many", "/lin/many", &e));
    xclose(&h);
    fsck_clean(p);
    s = dcat(p, "/lin/many/added-entry-number-3999");
    assert_string_equal(s, "/many/added-entry-number-3999");
    free(s);
    /* entries with inode 0 are deleted ones debugfs still lists */
    s = sh_out("debugfs -R 'ls -p /lin/many' '%s' 2>/dev/null | "
               "awk -F/ '$2 != 0 && $6 ~ /^(added|name|renamed)-/' | wc -l",
               p);
    assert_int_equal(atoi(s), 1000 + 4000);
    free(s);
  }
}

/* ---- errors ------------------------------------------------------------------- */

static void errors(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/src", dir);
  make_tree(src);
  char args[256];
  snprintf(args, sizeof args, "-t ext4 -d '%s'", src);
  char *p = mkfs("err.img", 64, args);
  struct h h = xopen(p, 0);
  struct fs *f = h.f;
  struct fs_stat st;
  struct fs_dirent *d;
  size_t n, got;
  char buf[16], *t;
  char longname[300];
  memset(longname, 'n', sizeof longname);
  longname[0] = '/';
  longname[sizeof longname - 1] = 0;

  FAILS(f->ops->stat(f, "etc/hostname", &st, &e), 400, FS_EINVAL);
  FAILS(f->ops->stat(f, "/nope", &st, &e), 404, FS_ENOENT);
  FAILS(f->ops->stat(f, "/nope/deeper", &st, &e), 404, FS_ENOENT);
  FAILS(f->ops->stat(f, "/etc/hostname/x", &st, &e), 400, FS_ENOTDIR);
  FAILS(f->ops->stat(f, "/etc/hostname/", &st, &e), 400, FS_ENOTDIR);
  FAILS(f->ops->stat(f, longname, &st, &e), 400, FS_EINVAL);
  has(e.message, "File name too long");
  FAILS(f->ops->readdir(f, "/etc/hostname", &d, &n, &e), 400, FS_ENOTDIR);
  FAILS(f->ops->read(f, "/etc", buf, sizeof buf, 0, &got, &e), 400, FS_EISDIR);
  FAILS(f->ops->write(f, "/etc", "x", 1, 0, FS_O_CREAT, 0644, &e), 400, FS_EISDIR);
  FAILS(f->ops->write(f, "/nope/x", "x", 1, 0, FS_O_CREAT, 0644, &e), 404, FS_ENOENT);
  FAILS(f->ops->write(f, "/x", "x", 1, 0, 0, 0644, &e), 404, FS_ENOENT);
  FAILS(f->ops->write(f, "/x/", "x", 1, 0, FS_O_CREAT, 0644, &e), 400, FS_EISDIR);
  FAILS(f->ops->write(f, "/etc/hostname", "x", 1, 0, FS_O_CREAT | FS_O_EXCL, 0644, &e), 400,
        FS_EEXIST);
  FAILS(f->ops->write(f, "/etc/fast", "x", 1, 0, FS_O_CREAT | FS_O_EXCL, 0644, &e), 400, FS_EEXIST);
  FAILS(f->ops->truncate(f, "/etc", 0, &e), 400, FS_EISDIR);
  FAILS(f->ops->mkdir(f, "/etc", 0755, &e), 400, FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/", 0755, &e), 400, FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/etc/fast", 0755, &e), 400, FS_EEXIST);
  FAILS(f->ops->mkdir(f, "/nope/a", 0755, &e), 404, FS_ENOENT);
  FAILS(f->ops->rmdir(f, "/etc", &e), 409, FS_ENOTEMPTY);
  FAILS(f->ops->rmdir(f, "/etc/hostname", &e), 400, FS_ENOTDIR);
  FAILS(f->ops->rmdir(f, "/", &e), 409, FS_EINVAL);
  FAILS(f->ops->rmdir(f, "/empty/.", &e), 400, FS_EINVAL);
  FAILS(f->ops->rmdir(f, "/nope", &e), 404, FS_ENOENT);
  FAILS(f->ops->unlink(f, "/etc", &e), 400, FS_EISDIR);
  FAILS(f->ops->unlink(f, "/nope", &e), 404, FS_ENOENT);
  FAILS(f->ops->rename(f, "/nope", "/x", &e), 404, FS_ENOENT);
  FAILS(f->ops->rename(f, "/d", "/d/e/inside", &e), 400, FS_EINVAL);
  OK(f->ops->rename(f, "/d", "/d", &e));                 /* the same: nothing happens */
  OK(f->ops->rename(f, "/etc/hostname", "/d/hard", &e)); /* two names of one inode */
  OK(f->ops->stat(f, "/etc/hostname", &st, &e));
  assert_int_equal(st.nlink, 2);
  FAILS(f->ops->rename(f, "/big", "/empty", &e), 400, FS_EISDIR);
  FAILS(f->ops->rename(f, "/empty", "/big", &e), 400, FS_ENOTDIR);
  FAILS(f->ops->rename(f, "/empty", "/etc", &e), 409, FS_ENOTEMPTY);
  FAILS(f->ops->rename(f, "/", "/x", &e), 409, FS_EINVAL);
  FAILS(f->ops->rename(f, "/big", "/", &e), 409, FS_EINVAL);
  FAILS(f->ops->rename(f, "/big", "/nope/x", &e), 404, FS_ENOENT);
  FAILS(f->ops->symlink(f, "", "/x", &e), 404, FS_ENOENT);
  FAILS(f->ops->symlink(f, "t", "/etc", &e), 400, FS_EEXIST);
  char longt[5000];
  memset(longt, 'a', sizeof longt - 1);
  longt[sizeof longt - 1] = 0;
  FAILS(f->ops->symlink(f, longt, "/x", &e), 400, FS_EINVAL);
  FAILS(f->ops->readlink(f, "/etc/hostname", &t, &e), 400, FS_EINVAL);
  FAILS(f->ops->readlink(f, "/nope", &t, &e), 404, FS_ENOENT);
  FAILS(f->ops->link(f, "/etc", "/x", &e), 400, FS_EINVAL);
  FAILS(f->ops->link(f, "/big", "/etc/hostname", &e), 400, FS_EEXIST);
  FAILS(f->ops->link(f, "/nope", "/x", &e), 404, FS_ENOENT);
  FAILS(f->ops->chmod(f, "/nope", 0644, &e), 404, FS_ENOENT);
  FAILS(f->ops->chown(f, "/nope", 0, 0, &e), 404, FS_ENOENT);
  FAILS(f->ops->utimens(f, "/nope", 0, 0, 0, 0, &e), 404, FS_ENOENT);
  /* symlinks: loops, escapes above "/", dangling with O_CREAT */
  OK(f->ops->symlink(f, "/loop2", "/loop1", &e));
  OK(f->ops->symlink(f, "loop1", "/loop2", &e));
  FAILS(f->ops->stat(f, "/loop1", &st, &e), 400, FS_ELOOP);
  FAILS(f->ops->write(f, "/loop1", "x", 1, 0, FS_O_CREAT, 0644, &e), 400, FS_ELOOP);
  OK(f->ops->lstat(f, "/loop1", &st, &e));
  OK(f->ops->symlink(f, "../../../../../etc/./hostname", "/etc/sysconfig/esc", &e));
  OK(f->ops->stat(f, "/etc/sysconfig/esc", &st, &e));
  struct fs_stat host;
  OK(f->ops->stat(f, "/../../etc/hostname", &host, &e));
  assert_int_equal(st.ino, host.ino);
  OK(f->ops->symlink(f, "/etc/sysconfig", "/cfg", &e));
  OK(f->ops->write(f, "/cfg/network", "NETWORKING=yes\n", 15, 0, FS_O_CREAT, 0644, &e));
  OK(f->ops->symlink(f, "made-by-write", "/dangling", &e));
  OK(f->ops->write(f, "/dangling", "via link", 8, 0, FS_O_CREAT, 0600, &e));
  OK(f->ops->lstat(f, "/made-by-write", &st, &e));
  assert_int_equal(st.mode, S_IFREG | 0600);
  /* a trailing slash after a symlink to a directory: the link is not the directory */
  OK(f->ops->symlink(f, "/empty", "/elink", &e));
  FAILS(f->ops->rmdir(f, "/elink/", &e), 400, FS_ENOTDIR);
  FAILS(f->ops->unlink(f, "/elink/", &e), 400, FS_ENOTDIR);
  FAILS(f->ops->mkdir(f, "/elink/", 0755, &e), 400, FS_EEXIST);
  OK(f->ops->symlink(f, "/nowhere", "/dlink", &e));
  FAILS(f->ops->mkdir(f, "/dlink/", 0755, &e), 400, FS_EEXIST); /* not /nowhere */
  FAILS(f->ops->stat(f, "/nowhere", &st, &e), 404, FS_ENOENT);
  OK(f->ops->mkdir(f, "/newdir/", 0755, &e));
  OK(f->ops->lstat(f, "/elink/", &st, &e)); /* lstat follows it, like Linux */
  assert_int_equal(st.mode & S_IFMT, S_IFDIR);
  OK(f->ops->stat(f, "/empty", &st, &e));
  /* omitted and "now" times, chown -1 -1 */
  OK(f->ops->utimens(f, "/big", 5, 6, 7, 8, &e));
  OK(f->ops->utimens(f, "/big", 0, (1l << 30) - 2, 0, (1l << 30) - 1, &e));
  OK(f->ops->stat(f, "/big", &st, &e));
  assert_int_equal(st.atime, 5);
  assert_int_equal(st.atime_ns, 6);
  assert_true(st.mtime > 1600000000);
  OK(f->ops->chown(f, "/etc/hostname", (uint32_t)-1, (uint32_t)-1, &e));
  OK(f->ops->stat(f, "/etc/hostname", &st, &e));
  assert_int_equal(st.uid, 1000);
  assert_int_equal(st.gid, 1001);
  xclose(&h);
  fsck_clean(p);
  char *s = dcat(p, "/etc/sysconfig/network");
  assert_string_equal(s, "NETWORKING=yes\n");
  free(s);
  s = dcat(p, "/made-by-write");
  assert_string_equal(s, "via link");
  free(s);

  /* a file larger than the block map reaches (ext2 with 1 KiB blocks: 16 GiB), a full disk */
  char *p2 = mkfs("err2.img", 16, "-t ext2 -b 1024");
  h = xopen(p2, 0);
  f = h.f;
  FAILS(f->ops->write(f, "/huge", "x", 1, 17ull << 30, FS_O_CREAT, 0644, &e), 422, FS_ENOTSUP);
  OK(f->ops->write(f, "/huge", "x", 1, 15ull << 30, FS_O_CREAT, 0644, &e));
  OK(f->ops->stat(f, "/huge", &st, &e));
  assert_int_equal(st.size, (15ull << 30) + 1);
  /* the device fills up */
  static char chunk[1 << 20];
  memset(chunk, 'z', sizeof chunk);
  int full = 0;
  for (int i = 0; i < 32 && !full; i++) {
    err_init(&e);
    if (f->ops->write(f, "/fill", chunk, sizeof chunk, (uint64_t)i << 20, FS_O_CREAT, 0644, &e) <
        0) {
      assert_int_equal(e.status, 507);
      assert_string_equal(e.code, FS_ENOSPC);
      full = 1;
    }
  }
  assert_true(full);
  FAILS(f->ops->mkdir(f, "/lots", 0755, &e) == 0
            ? f->ops->write(f, "/lots/x", chunk, sizeof chunk, 0, FS_O_CREAT, 0644, &e)
            : -1,
        507, FS_ENOSPC);
  OK(f->ops->unlink(f, "/fill", &e));
  OK(f->ops->write(f, "/after", chunk, 1000, 0, FS_O_CREAT, 0644, &e));
  xclose(&h);
  fsck_clean(p2);
}

/* ---- journal, damage, foreign data ------------------------------------------- */

static void refused(const char *path, int ro, int status, const char *code, const char *msg);

static void journal_recovery(void **state) {
  struct err e;
  char *p = mkfs("j.img", 64, "-t ext4");
  struct h h = xopen(p, 0);
  xwrite(h.f, "/before", "x", FS_O_CREAT);
  xclose(&h);
  assert_int_equal(sh("debugfs -w -R 'feature needs_recovery' '%s' >/dev/null 2>&1", p), 0);
  struct vol *v;
  struct fs *f;
  err_init(&e);
  assert_int_equal(vol_file_open(p, 0, &v, &e), 0);
  FAILS(fs_ext_open(v, 0, &f, &e), 422, FS_ENOTSUP);
  has(e.message, "needs journal recovery");
  /* read-only works, and reads what is in place */
  OK(fs_ext_open(v, 1, &f, &e));
  struct fs_stat st;
  OK(f->ops->stat(f, "/before", &st, &e));
  FAILS(f->ops->unlink(f, "/before", &e), 400, FS_EROFS);
  fs_close(f);
  vol_close(v);
  char *s = sh_out("dumpe2fs -h '%s' 2>/dev/null | grep features", p);
  has(s, "needs_recovery"); /* untouched */
  free(s);
  /* features whose bookkeeping Streamer cannot keep: read-only only */
  const char *ro_only[][2] = {{"-O quota", "quota"},
                              {"-O mmp", "multi-mount"},
                              {"-O bigalloc -C 16384", "bigalloc"},
                              {"-O ea_inode", "ea_inode"}};
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof name, "ro%d.img", i);
    p = mkfs(name, 64, ro_only[i][0]);
    refused(p, 0, 422, FS_ENOTSUP, ro_only[i][1]);
    struct h ro = xopen(p, 1);
    OK(ro.f->ops->stat(ro.f, "/lost+found", &st, &e));
    xclose(&ro);
  }
}

/* open must fail cleanly (status, code) */
static void refused(const char *path, int ro, int status, const char *code, const char *msg) {
  struct err e;
  struct vol *v;
  struct fs *f = NULL;
  err_init(&e);
  assert_int_equal(vol_file_open(path, ro, &v, &e), 0);
  FAILS(fs_ext_open(v, ro, &f, &e), status, code);
  assert_null(f);
  if (msg) has(e.message, msg);
  vol_close(v);
}

/* overwrite len bytes at byte offset off of path with 0xa5 */
static void scribble(const char *path, uint64_t off, unsigned len) {
  assert_int_equal(sh("head -c %u /dev/zero | tr '\\0' '\\245' | dd of='%s' bs=1 seek=%llu "
                      "conv=notrunc status=none",
                      len, path, (unsigned long long)off),
                   0);
}

static uint64_t imap(const char *image, const char *inode, unsigned inode_size, unsigned bs) {
  char *s = sh_out("debugfs -R 'imap %s' '%s' 2>/dev/null", inode, image);
  unsigned long long blk = 0;
  unsigned off = 0;
  char *at = strstr(s, "located at block ");
  assert_non_null(at);
  assert_int_equal(sscanf(at, "located at block %llu, offset 0x%x", &blk, &off), 2);
  free(s);
  (void)inode_size;
  return blk * bs + off;
}

static uint64_t first_block(const char *image, const char *path, unsigned bs) {
  char *s = sh_out("debugfs -R 'blocks %s' '%s' 2>/dev/null", path, image);
  unsigned long long blk = strtoull(s, NULL, 10);
  free(s);
  assert_true(blk > 0);
  return blk * bs;
}

static void damaged(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/src", dir);
  make_tree(src);
  char args[256];
  struct fs_stat st;
  struct fs_dirent *d;
  size_t n, got;
  char buf[64];

  /* not ext at all */
  char *p = img("zero.img");
  assert_int_equal(sh("truncate -s 8M '%s'", p), 0);
  refused(p, 1, 422, FS_ENOTSUP, "not an ext2/3/4 filesystem");
  p = img("tiny.img");
  assert_int_equal(sh("truncate -s 1500 '%s'", p), 0);
  refused(p, 1, 422, FS_ENOTSUP, "not an ext2/3/4 filesystem");
  p = img("vfat.img");
  assert_int_equal(sh("truncate -s 8M '%s' && mkfs.vfat '%s' >/dev/null", p, p), 0);
  refused(p, 1, 422, FS_ENOTSUP, NULL);

  /* truncated: the filesystem is larger than its device */
  p = mkfs("trunc.img", 64, "-t ext4");
  assert_int_equal(sh("truncate -s 40M '%s'", p), 0);
  refused(p, 1, 500, FS_ECORRUPT, "larger than its device");

  /* superblock checksum */
  p = mkfs("sbcsum.img", 64, "-t ext4 -b 4096");
  scribble(p, 1024 + 120, 4); /* s_volume_name */
  refused(p, 1, 500, FS_ECORRUPT, NULL);

  /* an incompat feature libext2fs does not know (ext2: no checksum to fix) */
  p = mkfs("unknown.img", 16, "-t ext2");
  assert_int_equal(
      sh("printf '\\004' | dd of='%s' bs=1 seek=%d conv=notrunc status=none", p, 1024 + 0x60 + 2),
      0); /* s_feature_incompat |= 0x40000 */
  refused(p, 1, 422, FS_ENOTSUP, "0x40000");
  refused(p, 0, 422, FS_ENOTSUP, "0x40000");

  /* group descriptors wiped */
  p = mkfs("gdt.img", 64, "-t ext4 -b 4096");
  assert_int_equal(sh("dd if=/dev/zero of='%s' bs=4096 seek=1 count=1 conv=notrunc status=none", p),
                   0);
  refused(p, 1, 500, FS_ECORRUPT, NULL);
  p = mkfs("gdt2.img", 64, "-t ext2 -b 4096");
  scribble(p, 4096, 4096);
  refused(p, 1, 500, FS_ECORRUPT, NULL);

  /* the root inode: checksummed, and not */
  snprintf(args, sizeof args, "-t ext4 -d '%s'", src);
  p = mkfs("root.img", 64, args);
  scribble(p, imap(p, "<2>", 256, 1024), 256);
  refused(p, 1, 500, FS_ECORRUPT, NULL);
  snprintf(args, sizeof args, "-t ext2 -d '%s'", src);
  p = mkfs("root2.img", 64, args);
  assert_int_equal(sh("dd if=/dev/zero of='%s' bs=1 seek=%llu count=128 conv=notrunc status=none",
                      p, (unsigned long long)imap(p, "<2>", 256, 1024)),
                   0);
  refused(p, 1, 500, FS_ECORRUPT, NULL);

  /* damage further in: what is damaged fails, the rest works, nothing crashes */
  for (int csum = 0; csum < 2; csum++) {
    snprintf(args, sizeof args, "-t ext4 %s -d '%s'", csum ? "" : "-O ^metadata_csum", src);
    p = mkfs(csum ? "deep1.img" : "deep0.img", 64, args);
    scribble(p, first_block(p, "/d", 1024), 1024);               /* a directory block */
    scribble(p, imap(p, "/big", 256, 1024) + 40, 60);            /* an extent root (i_block) */
    scribble(p, first_block(p, "/etc/sysconfig", 1024) + 24, 8); /* entry ".." */
    for (int ro = 1; ro >= 0; ro--) {
      struct h h = xopen(p, ro);
      struct fs *f = h.f;
      FAILS(f->ops->readdir(f, "/d", &d, &n, &e), 500, FS_ECORRUPT);
      FAILS(f->ops->read(f, "/big", buf, sizeof buf, 0, &got, &e), 500, FS_ECORRUPT);
      FAILS(f->ops->stat(f, "/d/hard", &st, &e), 500, FS_ECORRUPT);
      err_init(&e);
      f->ops->stat(f, "/d/e/deep", &st, &e);
      err_init(&e);
      f->ops->stat(f, "/etc/sysconfig/../hostname", &st, &e);
      err_init(&e);
      if (!ro) {
        f->ops->write(f, "/big", "x", 1, 100, 0, 0, &e);
        err_init(&e);
        f->ops->write(f, "/d/newfile", "x", 1, 0, FS_O_CREAT, 0644, &e);
        err_init(&e);
        f->ops->unlink(f, "/big", &e);
        err_init(&e);
        f->ops->rename(f, "/etc/sysconfig", "/moved", &e);
      }
      OK(f->ops->stat(f, "/etc/hostname", &st, &e));
      char *s = xread(f, "/etc/hostname", NULL);
      assert_string_equal(s, "server42\n");
      free(s);
      xclose(&h);
    }
  }
}

/* ---- statvfs, checked against dumpe2fs ----------------------------------------- */

static uint64_t dumpe2fs_field(const char *text, const char *field) {
  const char *at = strstr(text, field);
  if (!at) fail_msg("no \"%s\" in dumpe2fs output", field);
  return strtoull(at + strlen(field), NULL, 10);
}

static void statvfs_like_kernel(void **state) {
  struct err e;
  const char *kinds[] = {"-t ext2",
                         "-t ext3",
                         "-t ext4",
                         "-t ext4 -b 4096",
                         "-t ext4 -O meta_bg,^resize_inode",
                         "-t ext4 -b 4096 -m 1 -N 5000"};
  for (int k = 0; k < 6; k++) {
    char name[32];
    snprintf(name, sizeof name, "sv%d.img", k);
    char *p = mkfs(name, 200, kinds[k]);
    for (int pass = 0; pass < 2; pass++) {
      struct h h = xopen(p, pass == 0);
      struct fs *f = h.f;
      if (pass == 1) { /* change the counts first */
        static char chunk[300000];
        OK(f->ops->mkdir(f, "/a", 0755, &e));
        OK(f->ops->write(f, "/a/b", chunk, sizeof chunk, 0, FS_O_CREAT, 0644, &e));
        OK(f->ops->symlink(f, "b", "/a/c", &e));
        OK(f->ops->sync(f, &e));
      }
      struct fs_statvfs sv;
      OK(f->ops->statvfs(f, &sv, &e));
      char *s = sh_out("dumpe2fs -h '%s' 2>/dev/null", p);
      uint64_t bs = dumpe2fs_field(s, "Block size:");
      uint64_t blocks = dumpe2fs_field(s, "Block count:");
      uint64_t overhead = dumpe2fs_field(s, "Overhead clusters:");
      uint64_t bfree = dumpe2fs_field(s, "Free blocks:");
      uint64_t rsv = dumpe2fs_field(s, "Reserved block count:");
      uint64_t resv = strstr(s, " extent") ? (blocks / 50 < 4096 ? blocks / 50 : 4096) : 0;
      assert_int_equal(sv.bsize, bs);
      assert_int_equal(sv.frsize, bs);
      assert_int_equal(sv.blocks, blocks - overhead);
      assert_int_equal(sv.bfree, bfree);
      assert_int_equal(sv.bavail, bfree - rsv - resv);
      assert_int_equal(sv.files, dumpe2fs_field(s, "Inode count:"));
      assert_int_equal(sv.ffree, dumpe2fs_field(s, "Free inodes:"));
      assert_int_equal(sv.favail, sv.ffree);
      assert_int_equal(sv.namemax, 255);
      assert_int_equal(sv.flag, pass == 0 ? 4097 : 4096);
      free(s);
      /* fsid: the two little-endian halves of the UUID xor'ed, as the kernel does */
      s = sh_out("dumpe2fs -h '%s' 2>/dev/null | sed -n 's/^Filesystem UUID: *//p' | tr -d '-'", p);
      unsigned char u[16];
      for (int i = 0; i < 16; i++)
        assert_int_equal(sscanf(s + 2 * i, "%2hhx", &u[i]), 1);
      uint64_t lo = 0, hi = 0;
      for (int i = 7; i >= 0; i--)
        lo = lo << 8 | u[i], hi = hi << 8 | u[8 + i];
      assert_int_equal(sv.fsid, lo ^ hi);
      free(s);
      xclose(&h);
    }
    fsck_clean(p);
  }
}

/* ---- opening read-write and only reading changes nothing ------------------------ */

static void rw_open_changes_nothing(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/src", dir);
  make_tree(src);
  char args[256];
  snprintf(args, sizeof args, "-t ext4 -d '%s'", src);
  char *p = mkfs("rw.img", 64, args);
  char *before = sh_out("md5sum < '%s'", p);
  struct h h = xopen(p, 0);
  struct fs_stat st;
  OK(h.f->ops->stat(h.f, "/etc/hostname", &st, &e));
  char *s = xread(h.f, "/big", NULL);
  free(s);
  OK(h.f->ops->sync(h.f, &e));
  /* a refused write changes nothing either */
  FAILS(h.f->ops->mkdir(h.f, "/etc", 0755, &e), 400, FS_EEXIST);
  xclose(&h);
  char *after = sh_out("md5sum < '%s'", p);
  assert_string_equal(before, after);
  free(before);
  free(after);
}

/* ---- inline data ---------------------------------------------------------------- */

static void inline_data(void **state) {
  struct err e;
  char src[128];
  snprintf(src, sizeof src, "%s/isrc", dir);
  assert_int_equal(sh("set -e; rm -rf '%1$s'; mkdir -p '%1$s/small/dir' '%1$s/other'; "
                      "printf 'tiny' > '%1$s/small/a'; "
                      "head -c 100 /dev/zero | tr '\\0' 'b' > '%1$s/small/b'; "
                      "printf 'x' > '%1$s/small/dir/c'",
                      src),
                   0);
  char args[256];
  snprintf(args, sizeof args, "-t ext4 -O inline_data -d '%s'", src);
  char *p = mkfs("inline.img", 64, args);
  char *s = dstat(p, "/small/b");
  has(s, "Size of inline data: ");
  free(s);
  s = dstat(p, "/small/dir");
  has(s, "Size of inline data: ");
  free(s);
  struct h h = xopen(p, 0);
  struct fs *f = h.f;
  s = xread(f, "/small/a", NULL);
  assert_string_equal(s, "tiny");
  free(s);
  size_t n;
  s = xread(f, "/small/b", &n);
  assert_int_equal(n, 100);
  assert_int_equal(s[99], 'b');
  free(s);
  assert_int_equal(count_names(f, "/small"), 3);
  /* grow an inline file past the inode, an inline directory past its space */
  static char kb[10000];
  memset(kb, 'k', sizeof kb);
  OK(f->ops->write(f, "/small/a", kb, sizeof kb, 4, 0, 0, &e));
  OK(f->ops->write(f, "/small/b", "B", 1, 100, 0, 0, &e));
  char path[64];
  for (int i = 0; i < 40; i++) {
    snprintf(path, sizeof path, "/small/dir/entry-%02d", i);
    OK(f->ops->write(f, path, path, strlen(path), 0, FS_O_CREAT, 0644, &e));
  }
  OK(f->ops->mkdir(f, "/other/newdir", 0755, &e));
  OK(f->ops->rename(f, "/small/dir", "/other/newdir/moved", &e));
  OK(f->ops->rename(f, "/other/newdir", "/renamed", &e));
  OK(f->ops->symlink(f, "/a/target/that/is/longer/than/sixty/bytes/so/not/fast/at/all/x", "/sl",
                     &e));
  OK(f->ops->unlink(f, "/renamed/moved/c", &e));
  OK(f->ops->mkdir(f, "/gone", 0755, &e));
  OK(f->ops->rmdir(f, "/gone", &e));
  xclose(&h);
  fsck_clean(p);
  s = dcat(p, "/small/a");
  assert_int_equal(strlen(s), 10004);
  assert_memory_equal(s, "tiny", 4);
  assert_int_equal(s[10003], 'k');
  free(s);
  s = dcat(p, "/renamed/moved/entry-39");
  assert_string_equal(s, "/small/dir/entry-39");
  free(s);
  s = sh_out("debugfs -R 'ls -p /renamed/moved' '%s' 2>/dev/null | grep -c entry-", p);
  assert_int_equal(atoi(s), 40);
  free(s);
  s = sh_out("debugfs -R 'ls -p /renamed/moved' '%s' 2>/dev/null | grep '/\\.\\./'", p);
  char *want =
      sh_out("debugfs -R 'ls -p /renamed' '%s' 2>/dev/null | grep '/\\./' | cut -d/ -f2", p);
  want[strcspn(want, "\n")] = 0;
  char needle[32];
  snprintf(needle, sizeof needle, "/%s/", want);
  has(s, needle); /* ".." of the moved directory is its new parent */
  free(s);
  free(want);
}

/* ---- big files and threads ------------------------------------------------------ */

static void big_files(void **state) {
  struct err e;
  const char *kinds[] = {"-t ext4", "-t ext3 -b 4096"};
  for (int k = 0; k < 2; k++) {
    char name[32];
    snprintf(name, sizeof name, "bigf%d.img", k);
    char *p = mkfs(name, 256, kinds[k]);
    struct h h = xopen(p, 0);
    struct fs *f = h.f;
    size_t len = 40 << 20;
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
      data[i] = (char)(i * 2654435761u >> 13);
    OK(f->ops->write(f, "/big", data, len, 0, FS_O_CREAT, 0644, &e));
    OK(f->ops->write(f, "/far", "tail", 4, 5ull << 30, FS_O_CREAT, 0644, &e));
    char *back = malloc(len);
    size_t got;
    OK(f->ops->read(f, "/big", back, len, 0, &got, &e));
    assert_int_equal(got, len);
    assert_memory_equal(back, data, len);
    struct fs_stat st;
    OK(f->ops->stat(f, "/far", &st, &e));
    assert_int_equal(st.size, (5ull << 30) + 4);
    assert_true(st.blocks < 1000);
    OK(f->ops->read(f, "/far", back, 8, (5ull << 30) - 4, &got, &e));
    assert_int_equal(got, 8);
    assert_memory_equal(back, "\0\0\0\0tail", 8);
    xclose(&h);
    fsck_clean(p);
    char out[160];
    snprintf(out, sizeof out, "%s/out", dir);
    assert_int_equal(sh("debugfs -R 'dump /big %s' '%s' >/dev/null 2>&1", out, p), 0);
    size_t n;
    char *s = host_file(out, &n);
    assert_int_equal(n, len);
    assert_memory_equal(s, data, len);
    free(s);
    s = dstat(p, "/far");
    has(s, "Size: 5368709124");
    free(s);
    /* and away again: every block comes back */
    h = xopen(p, 0);
    struct fs_statvfs before, after;
    OK(h.f->ops->statvfs(h.f, &before, &e));
    OK(h.f->ops->truncate(h.f, "/big", 0, &e));
    OK(h.f->ops->unlink(h.f, "/far", &e));
    OK(h.f->ops->statvfs(h.f, &after, &e));
    assert_true(after.bfree >= before.bfree + len / after.bsize);
    xclose(&h);
    fsck_clean(p);
    free(data);
    free(back);
  }
}

struct worker {
  struct fs *f;
  int id;
};

static void *worker_run(void *arg) {
  struct worker *w = arg;
  struct err e;
  char path[64], data[3000];
  memset(data, 'a' + w->id, sizeof data);
  snprintf(path, sizeof path, "/t%d", w->id);
  if (w->f->ops->mkdir(w->f, path, 0755, &e) < 0) return "mkdir";
  for (int i = 0; i < 100; i++) {
    snprintf(path, sizeof path, "/t%d/f%d", w->id, i);
    err_init(&e);
    if (w->f->ops->write(w->f, path, data, sizeof data, 0, FS_O_CREAT, 0644, &e) < 0)
      return "write";
    struct fs_stat st;
    if (w->f->ops->stat(w->f, path, &st, &e) < 0 || st.size != sizeof data) return "stat";
    if (i % 10 == 0 && w->f->ops->unlink(w->f, path, &e) < 0) return "unlink";
  }
  return NULL;
}

static void threads(void **state) {
  char *p = mkfs("thr.img", 64, "-t ext4");
  struct h h = xopen(p, 0);
  pthread_t t[4];
  struct worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (struct worker){h.f, i};
    assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    if (r) fail_msg("worker %d: %s failed", i, (char *)r);
  }
  xclose(&h);
  fsck_clean(p);
  char *s = sh_out("debugfs -R 'ls -p /t3' '%s' 2>/dev/null | grep -c /f", p);
  assert_int_equal(atoi(s), 90);
  free(s);
}

/* ---- through the disk layer: an ext4 partition, fs_open and the conveniences ------ */

static void partition(void **state) {
  struct err e;
  char *p = img("disk.img");
  char *part = img("part.img");
  /* partition 1 from 1 MiB, 48 MiB long; mkfs.ext4 writes into it at that offset */
  assert_int_equal(sh("truncate -s 64M '%1$s' && printf 'label: dos\\nstart=2048, size=98304, "
                      "type=83\\n' | sfdisk -q '%1$s' >/dev/null && mkfs.ext4 -q -F -E "
                      "offset=1048576 '%1$s' 48M >/dev/null 2>&1",
                      p),
                   0);
  struct vol *v;
  struct fs_disk *d;
  OK(vol_file_open(p, 0, &v, &e));
  OK(fs_disk_open(v, 0, &d, &e));
  struct vol *dev = fs_device(d, "/dev/sda1", &e);
  assert_non_null(dev);
  assert_string_equal(fs_probe(dev), "ext4");
  struct fs *f;
  OK(fs_open(dev, 0, &f, &e));
  assert_string_equal(f->ops->type, "ext4");
  OK(fs_mkdir_p(f, "/etc/sysconfig/network-scripts", 0755, &e));
  OK(fs_write_file(f, "/etc/hostname", "deployed\n", 9, 0644, &e));
  OK(fs_write_file(f, "/etc/hostname", "deployed-again\n", 15, 0644, &e)); /* truncates */
  char *data;
  size_t len;
  OK(fs_read_file(f, "/etc/hostname", 1 << 20, &data, &len, &e));
  assert_int_equal(len, 15);
  assert_memory_equal(data, "deployed-again\n", 15);
  free(data);
  struct fs_dirent *ents;
  size_t n;
  OK(f->ops->readdir(f, "/etc", &ents, &n, &e));
  assert_int_equal(n, 2);
  fs_dirents_free(ents, n);
  fs_close(f);
  fs_disk_close(d);
  vol_close(v);
  /* the partition's bytes, checked on their own */
  assert_int_equal(sh("dd if='%s' of='%s' bs=1M skip=1 count=48 status=none", p, part), 0);
  fsck_clean(part);
  char *s = dcat(part, "/etc/hostname");
  assert_string_equal(s, "deployed-again\n");
  free(s);
  s = dstat(part, "/etc/sysconfig/network-scripts");
  has(s, "Type: directory");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(read_tree, setup, teardown),
      cmocka_unit_test_setup_teardown(write_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(htree, setup, teardown),
      cmocka_unit_test_setup_teardown(errors, setup, teardown),
      cmocka_unit_test_setup_teardown(journal_recovery, setup, teardown),
      cmocka_unit_test_setup_teardown(damaged, setup, teardown),
      cmocka_unit_test_setup_teardown(statvfs_like_kernel, setup, teardown),
      cmocka_unit_test_setup_teardown(rw_open_changes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(inline_data, setup, teardown),
      cmocka_unit_test_setup_teardown(big_files, setup, teardown),
      cmocka_unit_test_setup_teardown(threads, setup, teardown),
      cmocka_unit_test_setup_teardown(partition, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
