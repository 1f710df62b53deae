/* ext.c — ext2, ext3 and ext4 filesystems read and written in-process through
 * libext2fs (e2fsprogs), over a struct vol: a small io_manager turns the
 * library's block reads and writes into vol_pread / vol_pwrite, and every
 * fs_ops call resolves its path itself (symlinks, "..", never above "/") and
 * then uses the library's directory, inode, extent and bitmap code. Writes
 * never touch the journal (like debugfs): a filesystem whose journal needs
 * recovery is refused read-write, and sync leaves a clean, checksummed
 * filesystem that e2fsck -fn accepts. See src/fs/README.md, "ext2/3/4". */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "fs/fs.h"

#define EXT_MAX_HOPS 40      /* symlinks followed per path, like Linux */
#define EXT_MAX_PATH 65536   /* a path, symlink targets spliced in */
#define EXT_MAX_DEPTH 65536  /* ".." hops when checking a rename */
#define EXT_CHUNK (1u << 30) /* largest single libext2fs file read/write */
#define EXT_UTIME_NOW ((1l << 30) - 1l)
#define EXT_UTIME_OMIT ((1l << 30) - 2l)

/* ======================================================================= */
/* the io_manager: libext2fs block I/O over a struct vol                    */
/* ======================================================================= */

struct volio {
  struct vol *vol;
  char msg[512]; /* the last I/O error, for messages */
};

/* ext2fs_open2 calls the manager's open on the calling thread: the volume is
 * handed over here rather than through the name string. */
static __thread struct vol *volio_pending;
static struct struct_io_manager volio_manager;

static errcode_t volio_open(const char *name, int flags, io_channel *out) {
  struct vol *v = volio_pending;
  if (!v) return EXT2_ET_BAD_DEVICE_NAME;
  if ((flags & IO_FLAG_RW) && vol_read_only(v)) return EXT2_ET_RO_FILSYS;
  io_channel ch = calloc(1, sizeof *ch);
  struct volio *p = calloc(1, sizeof *p);
  char *n = strdup(name ? name : "vol");
  if (!ch || !p || !n) {
    free(ch);
    free(p);
    free(n);
    return EXT2_ET_NO_MEMORY;
  }
  p->vol = v;
  ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  ch->manager = &volio_manager;
  ch->name = n;
  ch->block_size = 1024;
  ch->refcount = 1;
  ch->flags = CHANNEL_FLAGS_DISCARD_ZEROES; /* vol_discard reads back as zeros */
  ch->private_data = p;
  *out = ch;
  return 0;
}

static errcode_t volio_close(io_channel ch) {
  if (--ch->refcount > 0) return 0;
  free(ch->private_data);
  free(ch->name);
  free(ch);
  return 0;
}

static errcode_t volio_set_blksize(io_channel ch, int blksize) {
  if (blksize < 512 || blksize > 65536 * 4) return EXT2_ET_INVALID_ARGUMENT;
  ch->block_size = blksize;
  return 0;
}

/* count > 0: blocks; count < 0: -count bytes (libext2fs's convention) */
static errcode_t volio_io(io_channel ch, unsigned long long block, int count, void *buf,
                          int write) {
  struct volio *p = ch->private_data;
  uint64_t bs = (uint64_t)ch->block_size;
  uint64_t len = count < 0 ? (uint64_t)(-(int64_t)count) : (uint64_t)count * bs;
  uint64_t size = vol_size(p->vol);
  if (block > UINT64_MAX / bs || block * bs > size || len > size - block * bs) {
    snprintf(p->msg, sizeof p->msg, "block %llu (+%llu bytes) is beyond the end of the device",
             block, (unsigned long long)len);
    return write ? EXT2_ET_SHORT_WRITE : EXT2_ET_SHORT_READ;
  }
  struct err e;
  err_init(&e);
  int rc = write ? vol_pwrite(p->vol, buf, len, block * bs, &e)
                 : vol_pread(p->vol, buf, len, block * bs, &e);
  if (rc < 0) {
    snprintf(p->msg, sizeof p->msg, "%.500s", e.message);
    err_clear(&e);
    return EIO;
  }
  return 0;
}

static errcode_t volio_read_blk64(io_channel ch, unsigned long long block, int count, void *buf) {
  return volio_io(ch, block, count, buf, 0);
}
static errcode_t volio_write_blk64(io_channel ch, unsigned long long block, int count,
                                   const void *buf) {
  return volio_io(ch, block, count, (void *)buf, 1);
}
static errcode_t volio_read_blk(io_channel ch, unsigned long block, int count, void *buf) {
  return volio_io(ch, block, count, buf, 0);
}
static errcode_t volio_write_blk(io_channel ch, unsigned long block, int count, const void *buf) {
  return volio_io(ch, block, count, (void *)buf, 1);
}

static errcode_t volio_write_byte(io_channel ch, unsigned long off, int count, const void *buf) {
  struct volio *p = ch->private_data;
  if (count < 0 || off > vol_size(p->vol) || (uint64_t)count > vol_size(p->vol) - off)
    return EXT2_ET_SHORT_WRITE;
  struct err e;
  err_init(&e);
  if (vol_pwrite(p->vol, buf, (size_t)count, off, &e) < 0) {
    snprintf(p->msg, sizeof p->msg, "%.500s", e.message);
    err_clear(&e);
    return EIO;
  }
  return 0;
}

static errcode_t volio_flush(io_channel ch) {
  struct volio *p = ch->private_data;
  if (vol_read_only(p->vol)) return 0;
  struct err e;
  err_init(&e);
  if (vol_flush(p->vol, &e) < 0) {
    snprintf(p->msg, sizeof p->msg, "%.500s", e.message);
    err_clear(&e);
    return EIO;
  }
  return 0;
}

static errcode_t volio_set_option(io_channel ch, const char *opt, const char *arg) {
  return EXT2_ET_INVALID_ARGUMENT;
}

/* discard and zeroout: the range reads back as zeros (vol_discard's
 * promise); zeroout falls back to writing zeros. */
static errcode_t volio_discard(io_channel ch, unsigned long long block, unsigned long long count) {
  struct volio *p = ch->private_data;
  uint64_t bs = (uint64_t)ch->block_size, size = vol_size(p->vol);
  if (block > size / bs || count > size / bs - block) return EXT2_ET_INVALID_ARGUMENT;
  struct err e;
  err_init(&e);
  if (vol_discard(p->vol, block * bs, count * bs, &e) < 0) {
    err_clear(&e);
    return EXT2_ET_UNIMPLEMENTED;
  }
  return 0;
}

static errcode_t volio_zeroout(io_channel ch, unsigned long long block, unsigned long long count) {
  if (volio_discard(ch, block, count) == 0) return 0;
  static const char zeros[65536];
  uint64_t bs = (uint64_t)ch->block_size, per = sizeof zeros / bs;
  if (per == 0) return EXT2_ET_UNIMPLEMENTED;
  while (count) {
    uint64_t n = count < per ? count : per;
    errcode_t rc = volio_io(ch, block, (int)n, (void *)zeros, 1);
    if (rc) return rc;
    block += n;
    count -= n;
  }
  return 0;
}

static errcode_t volio_readahead(io_channel ch, unsigned long long block,
                                 unsigned long long count) {
  return EXT2_ET_OP_NOT_SUPPORTED;
}

static struct struct_io_manager volio_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "streamer vol",
    .open = volio_open,
    .close = volio_close,
    .set_blksize = volio_set_blksize,
    .read_blk = volio_read_blk,
    .write_blk = volio_write_blk,
    .flush = volio_flush,
    .write_byte = volio_write_byte,
    .set_option = volio_set_option,
    .read_blk64 = volio_read_blk64,
    .write_blk64 = volio_write_blk64,
    .discard = volio_discard,
    .cache_readahead = volio_readahead,
    .zeroout = volio_zeroout,
};

/* ======================================================================= */
/* the filesystem                                                           */
/* ======================================================================= */

struct ext {
  struct fs base;
  ext2_filsys fs;
  struct vol *vol;
  pthread_mutex_t lock; /* libext2fs is not thread-safe: one call at a time */
  int bitmaps;          /* block and inode bitmaps loaded (first write) */
  uint64_t overhead;    /* metadata blocks, as the kernel's statfs counts them */
};

/* libext2fs reports a few oddities of damaged filesystems through com_err
 * (to stderr by default): into the log instead. */
static void ext_com_err(const char *whoami, errcode_t code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void ext_com_err(const char *whoami, errcode_t code, const char *fmt, va_list ap) {
  char msg[512] = "";
  if (fmt) vsnprintf(msg, sizeof msg, fmt, ap);
  log_warn("fs", "libext2fs: %s: %s%s%s", whoami ? whoami : "?", code ? error_message(code) : "",
           code && *msg ? ": " : "", msg);
}

static pthread_once_t ext_once = PTHREAD_ONCE_INIT;
static void ext_init_once(void) {
  initialize_ext2_error_table();
  set_com_err_hook(ext_com_err);
}

/* ---- errors ------------------------------------------------------------- */

static int ext_errno(struct err *e, int errnum, const char *op, const char *path) {
  int status = 500;
  const char *code = FS_EIO;
  switch (errnum) {
  case ENOENT: status = 404, code = FS_ENOENT; break;
  case ENOTDIR: status = 400, code = FS_ENOTDIR; break;
  case EEXIST: status = 400, code = FS_EEXIST; break;
  case EISDIR: status = 400, code = FS_EISDIR; break;
  case ENOTEMPTY: status = 409, code = FS_ENOTEMPTY; break;
  case EBUSY: status = 409, code = FS_EINVAL; break;
  case ENOSPC: status = 507, code = FS_ENOSPC; break;
  case EROFS: status = 400, code = FS_EROFS; break;
  case ELOOP: status = 400, code = FS_ELOOP; break;
  case EINVAL:
  case EPERM:
  case ENAMETOOLONG: status = 400, code = FS_EINVAL; break;
  case EMLINK:
  case EFBIG:
  case EOPNOTSUPP: status = 422, code = FS_ENOTSUP; break;
  case EUCLEAN: status = 500, code = FS_ECORRUPT; break;
  default: break;
  }
  err_set(e, status, code, "%s: %s: %s", op, path, strerrordesc_np(errnum));
  return -1;
}

/* A libext2fs error code, as an errno where one fits, else corruption or I/O. */
static int ext_fail(struct ext *x, struct err *e, errcode_t rc, const char *op, const char *path) {
  switch (rc) {
  case EXT2_ET_FILE_NOT_FOUND: return ext_errno(e, ENOENT, op, path);
  case EXT2_ET_NO_DIRECTORY: return ext_errno(e, ENOTDIR, op, path);
  case EXT2_ET_FILE_EXISTS:
  case EXT2_ET_DIR_EXISTS: return ext_errno(e, EEXIST, op, path);
  case EXT2_ET_RO_FILSYS:
  case EXT2_ET_FILE_RO: return ext_errno(e, EROFS, op, path);
  case EXT2_ET_FILE_TOO_BIG: return ext_errno(e, EFBIG, op, path);
  case EXT2_ET_DIR_NO_SPACE:
  case EXT2_ET_DIR_NO_SPACE_FOR_CSUM:
  case EXT2_ET_BLOCK_ALLOC_FAIL:
  case EXT2_ET_INODE_ALLOC_FAIL:
  case EXT2_ET_EA_NO_SPACE:
  case EXT2_ET_INLINE_DATA_NO_SPACE:
  case EXT2_ET_TOOSMALL:
  case EXT2_ET_EXTENT_NO_SPACE: return ext_errno(e, ENOSPC, op, path);
  case EXT2_ET_INVALID_ARGUMENT: return ext_errno(e, EINVAL, op, path);
  case EXT2_ET_UNIMPLEMENTED:
  case EXT2_ET_OP_NOT_SUPPORTED:
  case EXT2_ET_DIRHASH_UNSUPP:
  case EXT2_ET_EXTENT_NOT_SUPPORTED: return ext_errno(e, EOPNOTSUPP, op, path);
  case EXT2_ET_NO_MEMORY:
  case ENOMEM: err_set(e, 500, FS_EIO, "%s: %s: out of memory", op, path); return -1;
  case EXT2_ET_SHORT_READ:
  case EXT2_ET_SHORT_WRITE:
  case EXT2_ET_LLSEEK_FAILED:
  case EIO: {
    const char *why = "";
    if (x && x->fs && x->fs->io && x->fs->io->manager == &volio_manager)
      why = ((struct volio *)x->fs->io->private_data)->msg;
    err_set(e, 500, FS_EIO, "%s: %s: Input/output error%s%s", op, path, *why ? ": " : "", why);
    return -1;
  }
  default: break;
  }
  if (rc > 0 && rc < 256) return ext_errno(e, (int)rc, op, path);
  err_set(e, 500, FS_ECORRUPT, "%s: %s: filesystem structure is damaged: %s", op, path,
          error_message(rc));
  return -1;
}

/* ---- inodes --------------------------------------------------------------- */

typedef struct ext2_inode_large inode_t;

static errcode_t ext_iget(struct ext *x, ext2_ino_t ino, inode_t *in) {
  memset(in, 0, sizeof *in);
  if (ino < 1 || ino > x->fs->super->s_inodes_count) return EXT2_ET_BAD_INODE_NUM;
  return ext2fs_read_inode_full(x->fs, ino, EXT2_INODE(in), sizeof *in);
}

static errcode_t ext_iput(struct ext *x, ext2_ino_t ino, inode_t *in) {
  return ext2fs_write_inode_full(x->fs, ino, EXT2_INODE(in), sizeof *in);
}

static int ext_large(struct ext *x, const inode_t *in) {
  return EXT2_INODE_SIZE(x->fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
         in->i_extra_isize >= offsetof(inode_t, i_crtime_extra) + 4 - EXT2_GOOD_OLD_INODE_SIZE &&
         EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i_extra_isize <= EXT2_INODE_SIZE(x->fs->super);
}

/* The kernel's i_size: 64 bits for regular files (and everything with largedir). */
static uint64_t ext_isize(struct ext *x, const inode_t *in) {
  if (LINUX_S_ISREG(in->i_mode) || ext2fs_has_feature_largedir(x->fs->super))
    return EXT2_I_SIZE(in);
  return in->i_size;
}

static void ext_time_get(uint32_t lo, uint32_t extra, int large, int64_t *sec, int64_t *ns) {
  *sec = (int32_t)lo;
  *ns = 0;
  if (!large) return;
  *sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
  *ns = extra >> EXT4_EPOCH_BITS;
  if (*ns > 999999999) *ns = 999999999;
}

static void ext_time_set(uint32_t *lo, uint32_t *extra, int large, int64_t sec, int64_t ns) {
  int64_t lo_max = large ? INT32_MAX + (3ll << 32) : INT32_MAX;
  if (sec < INT32_MIN) sec = INT32_MIN, ns = 0;
  if (sec > lo_max) sec = lo_max, ns = 999999999;
  if (ns < 0 || ns > 999999999) ns = 0;
  *lo = (uint32_t)sec;
  if (large)
    *extra = (uint32_t)(((sec - (int32_t)(uint32_t)sec) >> 32) & EXT4_EPOCH_MASK) |
             ((uint32_t)ns << EXT4_EPOCH_BITS);
}

enum { T_A = 1, T_M = 2, T_C = 4, T_CR = 8 };

static void ext_now(int64_t *sec, int64_t *ns) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  *sec = ts.tv_sec;
  *ns = ts.tv_nsec;
}

static void ext_stamp(struct ext *x, inode_t *in, int which, int64_t sec, int64_t ns) {
  int large = ext_large(x, in);
  if (which & T_A) ext_time_set(&in->i_atime, &in->i_atime_extra, large, sec, ns);
  if (which & T_M) ext_time_set(&in->i_mtime, &in->i_mtime_extra, large, sec, ns);
  if (which & T_C) ext_time_set(&in->i_ctime, &in->i_ctime_extra, large, sec, ns);
  if ((which & T_CR) && large) ext_time_set(&in->i_crtime, &in->i_crtime_extra, 1, sec, ns);
}

/* Set times to now on inode ino; links += dlinks (directories' link counts
 * follow the kernel: 1 means "too many to count" with dir_nlink). */
static errcode_t ext_touch(struct ext *x, ext2_ino_t ino, int which, int dlinks) {
  inode_t in;
  errcode_t rc = ext_iget(x, ino, &in);
  if (rc) return rc;
  if (dlinks > 0) {
    if (LINUX_S_ISDIR(in.i_mode) && (in.i_links_count == 1 || in.i_links_count >= EXT2_LINK_MAX))
      in.i_links_count = 1;
    else
      in.i_links_count++;
  } else if (dlinks < 0) {
    if (!LINUX_S_ISDIR(in.i_mode) || in.i_links_count > 2) in.i_links_count--;
  }
  int64_t s, ns;
  ext_now(&s, &ns);
  ext_stamp(x, &in, which, s, ns);
  return ext_iput(x, ino, &in);
}

static int ext_ft(uint32_t mode) {
  switch (mode & LINUX_S_IFMT) {
  case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
  case LINUX_S_IFDIR: return EXT2_FT_DIR;
  case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
  case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
  case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
  case LINUX_S_IFIFO: return EXT2_FT_FIFO;
  case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
  default: return EXT2_FT_UNKNOWN;
  }
}

static uint32_t ext_dt(uint32_t mode) {
  switch (mode & LINUX_S_IFMT) {
  case LINUX_S_IFREG: return DT_REG;
  case LINUX_S_IFDIR: return DT_DIR;
  case LINUX_S_IFLNK: return DT_LNK;
  case LINUX_S_IFCHR: return DT_CHR;
  case LINUX_S_IFBLK: return DT_BLK;
  case LINUX_S_IFIFO: return DT_FIFO;
  case LINUX_S_IFSOCK: return DT_SOCK;
  default: return DT_UNKNOWN;
  }
}

static uint32_t ext_ft_dt(int ft) {
  static const uint32_t dt[] = {DT_UNKNOWN, DT_REG,  DT_DIR,  DT_CHR,
                                DT_BLK,     DT_FIFO, DT_SOCK, DT_LNK};
  return ft >= 0 && ft < 8 ? dt[ft] : DT_UNKNOWN;
}

/* A symlink's target, malloc'd (NUL-terminated). */
static errcode_t ext_link_target(struct ext *x, ext2_ino_t ino, inode_t *in, char **out) {
  *out = NULL;
  uint64_t size = EXT2_I_SIZE(in);
  if (size == 0 || size >= x->fs->blocksize || size >= EXT_MAX_PATH) return EXT2_ET_INODE_CORRUPTED;
  char *t = malloc(size + 1);
  if (!t) return EXT2_ET_NO_MEMORY;
  if (size < sizeof in->i_block) { /* fast symlink (also inline data this short) */
    memcpy(t, in->i_block, size);
  } else {
    ext2_file_t file;
    errcode_t rc = ext2fs_file_open2(x->fs, ino, EXT2_INODE(in), 0, &file);
    unsigned got = 0;
    if (!rc) {
      rc = ext2fs_file_read(file, t, (unsigned)size, &got);
      ext2fs_file_close(file);
    }
    if (!rc && got != size) rc = EXT2_ET_INODE_CORRUPTED;
    if (rc) {
      free(t);
      return rc;
    }
  }
  t[size] = 0;
  if (strlen(t) != size) { /* a NUL inside: not a path */
    free(t);
    return EXT2_ET_INODE_CORRUPTED;
  }
  *out = t;
  return 0;
}

/* ---- paths ---------------------------------------------------------------- */

struct walk {
  ext2_ino_t dir;               /* the directory holding the last component */
  ext2_ino_t ino;               /* what the path names; 0 if the last component is missing */
  char name[EXT2_NAME_LEN + 1]; /* the last component; "" for "/" and paths ending in . or .. */
  int slash;                    /* the path ends with a slash */
};

static errcode_t ext_lookup(struct ext *x, ext2_ino_t dir, const char *name, size_t n,
                            ext2_ino_t *ino) {
  errcode_t rc = ext2fs_lookup(x->fs, dir, name, (int)n, NULL, ino);
  if (!rc && (*ino < 1 || *ino > x->fs->super->s_inodes_count)) rc = EXT2_ET_DIR_CORRUPTED;
  return rc;
}

/* How the last component is taken: symlinks are followed everywhere else. */
enum {
  W_NOFOLLOW = 0, /* not followed, but a trailing slash follows it (lstat, readlink) */
  W_FOLLOW = 1,   /* followed (stat, open) */
  W_ENTRY = 2,    /* the entry itself, slash or not (mkdir, unlink, rename, link...) */
};

/* Resolve path. A missing last component is not an error: w->ino = 0 and
 * w->dir/w->name say where it would be. */
static int ext_walk(struct ext *x, const char *op, const char *path, int follow, struct walk *w,
                    struct err *e) {
  memset(w, 0, sizeof *w);
  if (!path || path[0] != '/') {
    err_set(e, 400, FS_EINVAL, "%s: %s: path must be absolute", op, path ? path : "(null)");
    return -1;
  }
  size_t plen = strlen(path);
  if (plen >= EXT_MAX_PATH) return ext_errno(e, ENAMETOOLONG, op, path);
  w->slash = plen > 1 && path[plen - 1] == '/';
  int entry = follow == W_ENTRY;
  if (entry)
    follow = 0;
  else if (w->slash)
    follow = 1;
  char *buf = strdup(path);
  if (!buf) return ext_fail(x, e, EXT2_ET_NO_MEMORY, op, path);
  char *p = buf;
  ext2_ino_t cur = EXT2_ROOT_INO;
  int hops = 0, rcv = -1;
  errcode_t rc = 0;
  inode_t in;
  for (;;) {
    while (*p == '/')
      p++;
    if (!*p) { /* the path names the directory cur itself */
      w->dir = cur;
      w->ino = cur;
      w->name[0] = 0;
      rcv = 0;
      break;
    }
    char *end = strchrnul(p, '/');
    size_t n = (size_t)(end - p);
    const char *q = end;
    while (*q == '/')
      q++;
    int last = *q == 0;
    if (n > EXT2_NAME_LEN) {
      ext_errno(e, ENAMETOOLONG, op, path);
      break;
    }
    if (n == 1 && p[0] == '.') {
      p = end;
      continue;
    }
    ext2_ino_t ino;
    rc = ext_lookup(x, cur, p, n, &ino);
    if (rc == EXT2_ET_FILE_NOT_FOUND && last) {
      w->dir = cur;
      w->ino = 0;
      memcpy(w->name, p, n);
      w->name[n] = 0;
      rcv = 0;
      break;
    }
    if (rc) {
      ext_fail(x, e, rc, op, path);
      break;
    }
    if ((rc = ext_iget(x, ino, &in))) {
      ext_fail(x, e, rc, op, path);
      break;
    }
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (!LINUX_S_ISDIR(in.i_mode)) {
        ext_fail(x, e, EXT2_ET_DIR_CORRUPTED, op, path);
        break;
      }
      cur = ino;
      p = end;
      continue;
    }
    if (LINUX_S_ISLNK(in.i_mode) && (!last || follow)) {
      if (++hops > EXT_MAX_HOPS) {
        ext_errno(e, ELOOP, op, path);
        break;
      }
      char *target;
      if ((rc = ext_link_target(x, ino, &in, &target))) {
        ext_fail(x, e, rc, op, path);
        break;
      }
      size_t tl = strlen(target), rl = strlen(q);
      if (tl + 1 + rl + (w->slash ? 1 : 0) >= EXT_MAX_PATH) {
        free(target);
        ext_errno(e, ENAMETOOLONG, op, path);
        break;
      }
      char *nb = malloc(tl + rl + 3);
      if (!nb) {
        free(target);
        ext_fail(x, e, EXT2_ET_NO_MEMORY, op, path);
        break;
      }
      /* the target, then what followed the link (a trailing slash kept) */
      memcpy(nb, target, tl);
      nb[tl] = '/';
      memcpy(nb + tl + 1, q, rl);
      strcpy(nb + tl + 1 + rl, last && w->slash ? "/" : "");
      if (target[0] == '/') cur = EXT2_ROOT_INO;
      free(target);
      free(buf);
      buf = p = nb;
      continue;
    }
    if (last) {
      w->dir = cur;
      w->ino = ino;
      memcpy(w->name, p, n);
      w->name[n] = 0;
      if (w->slash && !entry && !LINUX_S_ISDIR(in.i_mode)) {
        ext_errno(e, ENOTDIR, op, path);
        break;
      }
      rcv = 0;
      break;
    }
    if (!LINUX_S_ISDIR(in.i_mode)) {
      ext_errno(e, ENOTDIR, op, path);
      break;
    }
    cur = ino;
    p = end;
  }
  free(buf);
  return rcv;
}

/* An existing object (ENOENT otherwise), its inode read. */
static int ext_find(struct ext *x, const char *op, const char *path, int follow, struct walk *w,
                    inode_t *in, struct err *e) {
  memset(in, 0, sizeof *in); /* defined on every return */
  if (ext_walk(x, op, path, follow, w, e) < 0) return -1;
  if (!w->ino) {
    ext_errno(e, ENOENT, op, path);
    return -1;
  }
  errcode_t rc = ext_iget(x, w->ino, in);
  if (rc) {
    ext_fail(x, e, rc, op, path);
    return -1;
  }
  return 0;
}

/* ---- writing -------------------------------------------------------------- */

static int ext_writable(struct ext *x, const char *op, const char *path, struct err *e) {
  if (x->base.read_only) return ext_errno(e, EROFS, op, path);
  if (!x->bitmaps) {
    errcode_t rc = ext2fs_read_bitmaps(x->fs);
    if (rc) return ext_fail(x, e, rc, op, path);
    x->bitmaps = 1;
  }
  return 0;
}

/* Names in encrypted or case-folded directories are not plain bytes: such
 * directories are not changed (422). */
static int ext_dir_editable(struct ext *x, ext2_ino_t dir, const char *op, const char *path,
                            struct err *e) {
  inode_t in;
  errcode_t rc = ext_iget(x, dir, &in);
  if (rc) return ext_fail(x, e, rc, op, path);
  if (in.i_flags & (EXT4_ENCRYPT_FL | EXT4_CASEFOLD_FL)) {
    err_set(e, 422, FS_ENOTSUP, "%s: %s: the directory is %s", op, path,
            in.i_flags & EXT4_ENCRYPT_FL ? "encrypted" : "case-insensitive");
    return -1;
  }
  return 0;
}

/* Add name -> ino to dir; a linear directory full of entries grows by one
 * block (an indexed one is grown by ext2fs_link itself). */
static errcode_t ext_add_entry(struct ext *x, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                               int ft) {
  errcode_t rc = ext2fs_link(x->fs, dir, name, ino, ft);
  if (rc != EXT2_ET_DIR_NO_SPACE) return rc;
  inode_t in;
  if (ext_iget(x, dir, &in) || (in.i_flags & EXT2_INDEX_FL)) return rc;
  if ((rc = ext2fs_expand_dir(x->fs, dir))) return rc;
  return ext2fs_link(x->fs, dir, name, ino, ft);
}

/* Free an inode whose last link is gone: its blocks, its xattr block, the
 * inode itself. */
static errcode_t ext_release(struct ext *x, ext2_ino_t ino, inode_t *in) {
  errcode_t rc = ext2fs_free_ext_attr(x->fs, ino, in);
  if (rc) return rc;
  if (ext2fs_inode_has_valid_blocks2(x->fs, EXT2_INODE(in))) {
    rc = ext2fs_punch(x->fs, ino, EXT2_INODE(in), NULL, 0, ~0ULL);
    if (rc) return rc;
  }
  int64_t s, ns;
  ext_now(&s, &ns);
  in->i_links_count = 0;
  in->i_dtime = (uint32_t)s;
  ext_stamp(x, in, T_C | T_M, s, ns);
  if ((rc = ext_iput(x, ino, in))) return rc;
  ext2fs_inode_alloc_stats2(x->fs, ino, -1, LINUX_S_ISDIR(in->i_mode));
  return 0;
}

/* One link fewer on ino; freed at zero. */
static errcode_t ext_drop_link(struct ext *x, ext2_ino_t ino) {
  inode_t in;
  errcode_t rc = ext_iget(x, ino, &in);
  if (rc) return rc;
  if (LINUX_S_ISDIR(in.i_mode))
    in.i_links_count = 0; /* an empty directory: "." and its name */
  else if (in.i_links_count > 0)
    in.i_links_count--;
  if (in.i_links_count == 0) return ext_release(x, ino, &in);
  int64_t s, ns;
  ext_now(&s, &ns);
  ext_stamp(x, &in, T_C, s, ns);
  return ext_iput(x, ino, &in);
}

/* Set owner and mode bits of a new inode the way the kernel does for root:
 * uid 0, the group of a set-group-ID parent (and its bit for directories). */
static errcode_t ext_init_new(struct ext *x, ext2_ino_t dir, ext2_ino_t ino, uint32_t mode) {
  inode_t pin, in;
  errcode_t rc = ext_iget(x, dir, &pin);
  if (!rc) rc = ext_iget(x, ino, &in);
  if (rc) return rc;
  in.i_mode = (uint16_t)((in.i_mode & LINUX_S_IFMT) | (mode & 07777));
  in.i_uid = 0;
  ext2fs_set_i_uid_high(in, 0);
  in.i_gid = 0;
  ext2fs_set_i_gid_high(in, 0);
  if (pin.i_mode & LINUX_S_ISGID) {
    in.i_gid = pin.i_gid;
    ext2fs_set_i_gid_high(in, pin.osd2.linux2.l_i_gid_high);
    if (LINUX_S_ISDIR(in.i_mode)) in.i_mode |= LINUX_S_ISGID;
  }
  int64_t s, ns;
  ext_now(&s, &ns);
  ext_stamp(x, &in, T_A | T_M | T_C | T_CR, s, ns);
  if ((rc = ext_iput(x, ino, &in))) return rc;
  return ext_touch(x, dir, T_M | T_C, 0);
}

/* A new, empty regular file name in dir. */
static errcode_t ext_create(struct ext *x, ext2_ino_t dir, const char *name, uint32_t mode,
                            ext2_ino_t *out) {
  ext2_filsys fs = x->fs;
  ext2_ino_t ino;
  errcode_t rc = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0600, NULL, &ino);
  if (rc) return rc;
  inode_t in;
  memset(&in, 0, sizeof in);
  in.i_mode = LINUX_S_IFREG | 0600;
  in.i_links_count = 1;
  if (ext2fs_has_feature_extents(fs->super)) {
    ext2_extent_handle_t h;
    in.i_flags |= EXT4_EXTENTS_FL;
    if ((rc = ext2fs_extent_open2(fs, ino, EXT2_INODE(&in), &h))) return rc;
    ext2fs_extent_free(h);
  }
  if ((rc = ext2fs_write_new_inode(fs, ino, EXT2_INODE(&in)))) return rc;
  if ((rc = ext_add_entry(x, dir, name, ino, EXT2_FT_REG_FILE))) {
    in.i_links_count = 0; /* not linked: leave nothing e2fsck would find */
    in.i_dtime = (uint32_t)time(NULL);
    ext2fs_write_inode(fs, ino, EXT2_INODE(&in));
    return rc;
  }
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  *out = ino;
  return ext_init_new(x, dir, ino, mode);
}

/* ======================================================================= */
/* fs_ops                                                                   */
/* ======================================================================= */

#define EXT_LOCK(f)                                                                                \
  struct ext *x = (struct ext *)(f);                                                               \
  pthread_mutex_lock(&x->lock)
#define EXT_RETURN(v)                                                                              \
  do {                                                                                             \
    int rv_ = (v);                                                                                 \
    pthread_mutex_unlock(&x->lock);                                                                \
    return rv_;                                                                                    \
  } while (0)

static void ext_fill_stat(struct ext *x, ext2_ino_t ino, inode_t *in, struct fs_stat *st) {
  memset(st, 0, sizeof *st);
  int large = ext_large(x, in);
  st->mode = in->i_mode;
  st->uid = inode_uid(*in);
  st->gid = inode_gid(*in);
  st->nlink = in->i_links_count;
  st->ino = ino;
  st->size = ext_isize(x, in);
  st->blocks = ext2fs_get_stat_i_blocks(x->fs, EXT2_INODE(in));
  ext_time_get(in->i_atime, in->i_atime_extra, large, &st->atime, &st->atime_ns);
  ext_time_get(in->i_mtime, in->i_mtime_extra, large, &st->mtime, &st->mtime_ns);
  ext_time_get(in->i_ctime, in->i_ctime_extra, large, &st->ctime, &st->ctime_ns);
}

static int ext_stat_as(struct fs *f, const char *path, struct fs_stat *st, int follow,
                       struct err *e) {
  EXT_LOCK(f);
  struct walk w;
  inode_t in;
  if (ext_find(x, follow ? "stat" : "lstat", path, follow, &w, &in, e) < 0) EXT_RETURN(-1);
  ext_fill_stat(x, w.ino, &in, st);
  EXT_RETURN(0);
}

static int ext_stat(struct fs *f, const char *path, struct fs_stat *st, struct err *e) {
  return ext_stat_as(f, path, st, 1, e);
}

static int ext_lstat(struct fs *f, const char *path, struct fs_stat *st, struct err *e) {
  return ext_stat_as(f, path, st, 0, e);
}

struct ext_rd {
  struct ext *x;
  struct fs_dirent *v;
  size_t n, cap;
  errcode_t rc;
};

static int ext_rd_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                     int blocksize, char *buf, void *priv) {
  struct ext_rd *r = priv;
  int len = ext2fs_dirent_name_len(de);
  if (!de->inode || len == 0) return 0;
  if ((len == 1 && de->name[0] == '.') || (len == 2 && de->name[0] == '.' && de->name[1] == '.'))
    return 0;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 32;
    struct fs_dirent *v = realloc(r->v, cap * sizeof *v);
    if (!v) {
      r->rc = EXT2_ET_NO_MEMORY;
      return DIRENT_ABORT;
    }
    r->v = v;
    r->cap = cap;
  }
  char *name = strndup(de->name, (size_t)len);
  if (!name) {
    r->rc = EXT2_ET_NO_MEMORY;
    return DIRENT_ABORT;
  }
  uint32_t type = DT_UNKNOWN;
  if (ext2fs_has_feature_filetype(r->x->fs->super)) type = ext_ft_dt(ext2fs_dirent_file_type(de));
  if (type == DT_UNKNOWN) {
    inode_t in;
    if (ext_iget(r->x, de->inode, &in) == 0) type = ext_dt(in.i_mode);
  }
  r->v[r->n].name = name;
  r->v[r->n].type = type;
  r->n++;
  return 0;
}

static int ext_readdir(struct fs *f, const char *path, struct fs_dirent **ents, size_t *n,
                       struct err *e) {
  EXT_LOCK(f);
  *ents = NULL;
  *n = 0;
  struct walk w;
  inode_t in;
  if (ext_find(x, "readdir", path, 1, &w, &in, e) < 0) EXT_RETURN(-1);
  if (!LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, ENOTDIR, "readdir", path));
  struct ext_rd r = {.x = x};
  errcode_t rc = ext2fs_dir_iterate2(x->fs, w.ino, 0, NULL, ext_rd_cb, &r);
  if (!rc) rc = r.rc;
  if (rc) {
    for (size_t i = 0; i < r.n; i++)
      free(r.v[i].name);
    free(r.v);
    EXT_RETURN(ext_fail(x, e, rc, "readdir", path));
  }
  *ents = r.v;
  *n = r.n;
  EXT_RETURN(0);
}

static int ext_read(struct fs *f, const char *path, void *buf, size_t len, uint64_t off,
                    size_t *got, struct err *e) {
  EXT_LOCK(f);
  *got = 0;
  struct walk w;
  inode_t in;
  if (ext_find(x, "read", path, 1, &w, &in, e) < 0) EXT_RETURN(-1);
  if (LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, EISDIR, "read", path));
  if (!LINUX_S_ISREG(in.i_mode) || off >= ext_isize(x, &in) || len == 0) EXT_RETURN(0);
  ext2_file_t file;
  errcode_t rc = ext2fs_file_open2(x->fs, w.ino, EXT2_INODE(&in), 0, &file);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, "read", path));
  rc = ext2fs_file_llseek(file, off, EXT2_SEEK_SET, NULL);
  size_t done = 0;
  while (!rc && done < len) {
    unsigned want = len - done > EXT_CHUNK ? EXT_CHUNK : (unsigned)(len - done), n = 0;
    rc = ext2fs_file_read(file, (char *)buf + done, want, &n);
    if (rc || n == 0) break;
    done += n;
  }
  ext2fs_file_close(file);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, "read", path));
  *got = done;
  EXT_RETURN(0);
}

/* Data into an open file at off. */
static errcode_t ext_write_data(struct ext *x, ext2_ino_t ino, const void *buf, size_t len,
                                uint64_t off) {
  ext2_file_t file;
  errcode_t rc = ext2fs_file_open2(x->fs, ino, NULL, EXT2_FILE_WRITE, &file);
  if (rc) return rc;
  rc = ext2fs_file_llseek(file, off, EXT2_SEEK_SET, NULL);
  size_t done = 0;
  while (!rc && done < len) {
    unsigned want = len - done > EXT_CHUNK ? EXT_CHUNK : (unsigned)(len - done), n = 0;
    rc = ext2fs_file_write(file, (const char *)buf + done, want, &n);
    if (!rc && n == 0) rc = EXT2_ET_SHORT_WRITE;
    done += n;
  }
  errcode_t rc2 = ext2fs_file_close(file);
  return rc ? rc : rc2;
}

/* Turn an inline-data file into an ordinary one before changing it:
 * libext2fs 1.47.0 overruns its buffer when ext2fs_file_write grows inline
 * data past the inode. The bytes move to a block; the system.data
 * attribute goes. */
static errcode_t ext_uninline(struct ext *x, ext2_ino_t ino) {
  ext2_filsys fs = x->fs;
  inode_t in;
  errcode_t rc = ext_iget(x, ino, &in);
  if (rc || !(in.i_flags & EXT4_INLINE_DATA_FL)) return rc;
  size_t size = 0;
  if ((rc = ext2fs_inline_data_size(fs, ino, &size))) return rc;
  if (size > fs->blocksize) return EXT2_ET_INODE_CORRUPTED;
  char *buf = calloc(1, size + EXT4_MIN_INLINE_DATA_SIZE);
  if (!buf) return EXT2_ET_NO_MEMORY;
  rc = ext2fs_inline_data_get(fs, ino, EXT2_INODE(&in), buf, &size);
  struct ext2_xattr_handle *h = NULL;
  if (!rc) rc = ext2fs_xattrs_open(fs, ino, &h);
  if (!rc) rc = ext2fs_xattrs_read(h);
  if (!rc) rc = ext2fs_xattr_remove(h, "system.data");
  if (!rc) rc = ext2fs_xattrs_write(h);
  if (h) ext2fs_xattrs_close(&h);
  if (!rc) rc = ext_iget(x, ino, &in);
  if (!rc) {
    uint64_t len = EXT2_I_SIZE(&in) < size ? EXT2_I_SIZE(&in) : size;
    in.i_flags &= ~EXT4_INLINE_DATA_FL;
    memset(in.i_block, 0, sizeof in.i_block);
    in.i_size = in.i_size_high = 0;
    if (ext2fs_has_feature_extents(fs->super)) {
      ext2_extent_handle_t eh;
      in.i_flags |= EXT4_EXTENTS_FL;
      rc = ext2fs_extent_open2(fs, ino, EXT2_INODE(&in), &eh);
      if (!rc) ext2fs_extent_free(eh);
    }
    if (!rc) rc = ext_iput(x, ino, &in);
    if (!rc && len) rc = ext_write_data(x, ino, buf, len, 0);
  }
  free(buf);
  return rc;
}

static errcode_t ext_set_size(struct ext *x, ext2_ino_t ino, uint64_t size) {
  ext2_file_t file;
  errcode_t rc = ext2fs_file_open2(x->fs, ino, NULL, EXT2_FILE_WRITE, &file);
  if (rc) return rc;
  rc = ext2fs_file_set_size2(file, size);
  errcode_t rc2 = ext2fs_file_close(file);
  return rc ? rc : rc2;
}

/* Largest file size: 2^32 - 1 blocks with extents, else what the block map reaches. */
static uint64_t ext_max_size(struct ext *x, const inode_t *in) {
  uint64_t bs = x->fs->blocksize, apb = bs / 4;
  uint64_t blocks =
      (in->i_flags & EXT4_EXTENTS_FL) ? 0xffffffffull : 12 + apb + apb * apb + apb * apb * apb;
  if (blocks > 0xffffffffull) blocks = 0xffffffffull;
  return blocks * bs;
}

static int ext_write(struct fs *f, const char *path, const void *buf, size_t len, uint64_t off,
                     int flags, uint32_t mode, struct err *e) {
  EXT_LOCK(f);
  const char *op = "write";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  int excl = (flags & FS_O_EXCL) && (flags & FS_O_CREAT);
  if (ext_walk(x, op, path, excl ? W_ENTRY : W_FOLLOW, &w, e) < 0) EXT_RETURN(-1);
  if (!w.name[0]) EXT_RETURN(ext_errno(e, EISDIR, op, path));
  errcode_t rc;
  ext2_ino_t ino = w.ino;
  if (!ino) {
    if (!(flags & FS_O_CREAT)) EXT_RETURN(ext_errno(e, ENOENT, op, path));
    if (w.slash) EXT_RETURN(ext_errno(e, EISDIR, op, path));
    if (ext_dir_editable(x, w.dir, op, path, e) < 0) EXT_RETURN(-1);
    if ((rc = ext_create(x, w.dir, w.name, mode, &ino))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  } else if (excl) {
    EXT_RETURN(ext_errno(e, EEXIST, op, path));
  }
  inode_t in;
  if ((rc = ext_iget(x, ino, &in))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  if (LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, EISDIR, op, path));
  if (!LINUX_S_ISREG(in.i_mode)) EXT_RETURN(ext_errno(e, EINVAL, op, path));
  if (in.i_flags & (EXT4_ENCRYPT_FL | EXT4_VERITY_FL | EXT2_IMMUTABLE_FL | EXT2_APPEND_FL)) {
    err_set(e, 422, FS_ENOTSUP, "%s: %s: the file is %s", op, path,
            in.i_flags & EXT4_ENCRYPT_FL  ? "encrypted"
            : in.i_flags & EXT4_VERITY_FL ? "protected by fs-verity"
                                          : "immutable or append-only");
    EXT_RETURN(-1);
  }
  if ((in.i_flags & EXT4_INLINE_DATA_FL) &&
      ((rc = ext_uninline(x, ino)) || (rc = ext_iget(x, ino, &in))))
    EXT_RETURN(ext_fail(x, e, rc, op, path));
  uint64_t size = ext_isize(x, &in);
  if ((flags & FS_O_TRUNC) && size > 0) {
    if ((rc = ext_set_size(x, ino, 0))) EXT_RETURN(ext_fail(x, e, rc, op, path));
    size = 0;
  }
  if (flags & FS_O_APPEND) off = size;
  if (off > ext_max_size(x, &in) || len > ext_max_size(x, &in) - off)
    EXT_RETURN(ext_errno(e, EFBIG, op, path));
  if (len > 0 && (rc = ext_write_data(x, ino, buf, len, off)))
    EXT_RETURN(ext_fail(x, e, rc, op, path));
  if ((rc = ext_touch(x, ino, T_M | T_C, 0))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

static int ext_truncate(struct fs *f, const char *path, uint64_t size, struct err *e) {
  EXT_LOCK(f);
  const char *op = "truncate";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  inode_t in;
  if (ext_find(x, op, path, 1, &w, &in, e) < 0) EXT_RETURN(-1);
  if (LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, EISDIR, op, path));
  if (!LINUX_S_ISREG(in.i_mode)) EXT_RETURN(ext_errno(e, EINVAL, op, path));
  if (in.i_flags & (EXT4_ENCRYPT_FL | EXT4_VERITY_FL | EXT2_IMMUTABLE_FL | EXT2_APPEND_FL))
    EXT_RETURN(ext_errno(e, EPERM, op, path));
  if (size > ext_max_size(x, &in)) EXT_RETURN(ext_errno(e, EFBIG, op, path));
  errcode_t rc = ext_uninline(x, w.ino);
  if (!rc) rc = ext_set_size(x, w.ino, size);
  if (!rc) rc = ext_touch(x, w.ino, T_M | T_C, 0);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

static int ext_mkdir(struct fs *f, const char *path, uint32_t mode, struct err *e) {
  EXT_LOCK(f);
  const char *op = "mkdir";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  if (ext_walk(x, op, path, W_ENTRY, &w, e) < 0) EXT_RETURN(-1);
  if (w.ino || !w.name[0]) EXT_RETURN(ext_errno(e, EEXIST, op, path));
  if (ext_dir_editable(x, w.dir, op, path, e) < 0) EXT_RETURN(-1);
  inode_t pin;
  errcode_t rc = ext_iget(x, w.dir, &pin);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  uint16_t plinks = pin.i_links_count;
  if (plinks >= EXT2_LINK_MAX && !ext2fs_has_feature_dir_nlink(x->fs->super))
    EXT_RETURN(ext_errno(e, EMLINK, op, path));
  rc = ext2fs_mkdir(x->fs, w.dir, 0, w.name);
  if (rc == EXT2_ET_DIR_NO_SPACE && !(pin.i_flags & EXT2_INDEX_FL)) {
    rc = ext2fs_expand_dir(x->fs, w.dir);
    if (!rc) rc = ext2fs_mkdir(x->fs, w.dir, 0, w.name);
  }
  ext2_ino_t ino = 0;
  if (!rc) rc = ext_lookup(x, w.dir, w.name, strlen(w.name), &ino);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  /* ext2fs_mkdir counted the new ".." in the parent; dir_nlink saturates at 1 */
  if ((rc = ext_iget(x, w.dir, &pin))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  if (plinks == 1 || plinks >= EXT2_LINK_MAX) {
    pin.i_links_count = 1;
    if ((rc = ext_iput(x, w.dir, &pin))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  }
  if ((rc = ext_init_new(x, w.dir, ino, mode))) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

struct ext_empty {
  int entries;
};

static int ext_empty_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                        int blocksize, char *buf, void *priv) {
  int len = ext2fs_dirent_name_len(de);
  if (!de->inode || len == 0) return 0;
  if ((len == 1 && de->name[0] == '.') || (len == 2 && de->name[0] == '.' && de->name[1] == '.'))
    return 0;
  ((struct ext_empty *)priv)->entries++;
  return DIRENT_ABORT;
}

static errcode_t ext_dir_is_empty(struct ext *x, ext2_ino_t ino, int *empty) {
  struct ext_empty c = {0};
  errcode_t rc = ext2fs_dir_iterate2(x->fs, ino, 0, NULL, ext_empty_cb, &c);
  *empty = c.entries == 0;
  return rc;
}

static int ext_rmdir(struct fs *f, const char *path, struct err *e) {
  EXT_LOCK(f);
  const char *op = "rmdir";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  inode_t in;
  if (ext_find(x, op, path, W_ENTRY, &w, &in, e) < 0) EXT_RETURN(-1);
  if (w.ino == EXT2_ROOT_INO) EXT_RETURN(ext_errno(e, EBUSY, op, path));
  if (!w.name[0]) EXT_RETURN(ext_errno(e, EINVAL, op, path));
  if (!LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, ENOTDIR, op, path));
  if (ext_dir_editable(x, w.dir, op, path, e) < 0) EXT_RETURN(-1);
  int empty;
  errcode_t rc = ext_dir_is_empty(x, w.ino, &empty);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  if (!empty) EXT_RETURN(ext_errno(e, ENOTEMPTY, op, path));
  rc = ext2fs_unlink(x->fs, w.dir, w.name, w.ino, 0);
  if (!rc) rc = ext_drop_link(x, w.ino);
  if (!rc) rc = ext_touch(x, w.dir, T_M | T_C, -1);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

static int ext_unlink(struct fs *f, const char *path, struct err *e) {
  EXT_LOCK(f);
  const char *op = "unlink";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  inode_t in;
  if (ext_find(x, op, path, W_ENTRY, &w, &in, e) < 0) EXT_RETURN(-1);
  if (!w.name[0] || LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, EISDIR, op, path));
  if (w.slash) EXT_RETURN(ext_errno(e, ENOTDIR, op, path));
  if (ext_dir_editable(x, w.dir, op, path, e) < 0) EXT_RETURN(-1);
  errcode_t rc = ext2fs_unlink(x->fs, w.dir, w.name, w.ino, 0);
  if (!rc) rc = ext_drop_link(x, w.ino);
  if (!rc) rc = ext_touch(x, w.dir, T_M | T_C, 0);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

/* Point the entry `name` (or "..", name NULL) of dir at ino in place. */
struct ext_setent {
  const char *name;
  int len, ft, done;
  ext2_ino_t ino;
  ext2_filsys fs;
};

static int ext_setent_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                         int blocksize, char *buf, void *priv) {
  struct ext_setent *s = priv;
  if (!de->inode) return 0;
  if (s->name ? (ext2fs_dirent_name_len(de) != s->len || memcmp(de->name, s->name, s->len))
              : entry != DIRENT_DOT_DOT_FILE)
    return 0;
  de->inode = s->ino;
  if (ext2fs_has_feature_filetype(s->fs->super)) ext2fs_dirent_set_file_type(de, s->ft);
  s->done = 1;
  return DIRENT_CHANGED | DIRENT_ABORT;
}

static errcode_t ext_set_entry(struct ext *x, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                               int ft) {
  if (!name) { /* ".." of an inline-data directory is i_block[0] */
    inode_t in;
    errcode_t rc = ext_iget(x, dir, &in);
    if (rc) return rc;
    if (in.i_flags & EXT4_INLINE_DATA_FL) {
      in.i_block[0] = ext2fs_cpu_to_le32(ino);
      return ext_iput(x, dir, &in);
    }
  }
  struct ext_setent s = {
      .name = name, .len = name ? (int)strlen(name) : 0, .ft = ft, .ino = ino, .fs = x->fs};
  errcode_t rc = ext2fs_dir_iterate2(x->fs, dir, 0, NULL, ext_setent_cb, &s);
  if (!rc && !s.done) rc = name ? EXT2_ET_FILE_NOT_FOUND : EXT2_ET_DIR_CORRUPTED;
  return rc;
}

/* Is dir `anc` dir `ino` or one of its ancestors? */
static errcode_t ext_is_ancestor(struct ext *x, ext2_ino_t anc, ext2_ino_t ino, int *yes) {
  *yes = 0;
  for (int i = 0; i < EXT_MAX_DEPTH; i++) {
    if (ino == anc) {
      *yes = 1;
      return 0;
    }
    if (ino == EXT2_ROOT_INO) return 0;
    ext2_ino_t up;
    errcode_t rc = ext_lookup(x, ino, "..", 2, &up);
    if (rc) return rc;
    ino = up;
  }
  return EXT2_ET_DIR_CORRUPTED;
}

static int ext_rename(struct fs *f, const char *from, const char *to, struct err *e) {
  EXT_LOCK(f);
  const char *op = "rename";
  if (ext_writable(x, op, from, e) < 0) EXT_RETURN(-1);
  struct walk a, b;
  inode_t ain, bin;
  if (ext_find(x, op, from, W_ENTRY, &a, &ain, e) < 0) EXT_RETURN(-1);
  if (a.ino == EXT2_ROOT_INO) EXT_RETURN(ext_errno(e, EBUSY, op, from));
  if (!a.name[0]) EXT_RETURN(ext_errno(e, EINVAL, op, from));
  if (ext_walk(x, op, to, W_ENTRY, &b, e) < 0) EXT_RETURN(-1);
  if (b.ino == EXT2_ROOT_INO) EXT_RETURN(ext_errno(e, EBUSY, op, to));
  if (!b.name[0]) EXT_RETURN(ext_errno(e, EINVAL, op, to));
  if (b.ino == a.ino) EXT_RETURN(0); /* the same file (or hard links of it): nothing to do */
  if (ext_dir_editable(x, a.dir, op, from, e) < 0 || ext_dir_editable(x, b.dir, op, to, e) < 0)
    EXT_RETURN(-1);
  int adir = LINUX_S_ISDIR(ain.i_mode), bdir = 0;
  if (a.slash && !adir) EXT_RETURN(ext_errno(e, ENOTDIR, op, from));
  errcode_t rc;
  if (b.ino) {
    if ((rc = ext_iget(x, b.ino, &bin))) EXT_RETURN(ext_fail(x, e, rc, op, to));
    bdir = LINUX_S_ISDIR(bin.i_mode);
    if (b.slash && !bdir) EXT_RETURN(ext_errno(e, ENOTDIR, op, to));
    if (adir && !bdir) EXT_RETURN(ext_errno(e, ENOTDIR, op, to));
    if (!adir && bdir) EXT_RETURN(ext_errno(e, EISDIR, op, to));
    if (bdir) {
      int empty;
      if ((rc = ext_dir_is_empty(x, b.ino, &empty))) EXT_RETURN(ext_fail(x, e, rc, op, to));
      if (!empty) EXT_RETURN(ext_errno(e, ENOTEMPTY, op, to));
    }
  } else if (b.slash && !adir) {
    EXT_RETURN(ext_errno(e, ENOTDIR, op, to));
  }
  if (adir) {
    int inside;
    if ((rc = ext_is_ancestor(x, a.ino, b.dir, &inside))) EXT_RETURN(ext_fail(x, e, rc, op, to));
    if (inside) EXT_RETURN(ext_errno(e, EINVAL, op, to));
    inode_t pin;
    if ((rc = ext_iget(x, b.dir, &pin))) EXT_RETURN(ext_fail(x, e, rc, op, to));
    if (a.dir != b.dir && !bdir && pin.i_links_count >= EXT2_LINK_MAX &&
        !ext2fs_has_feature_dir_nlink(x->fs->super))
      EXT_RETURN(ext_errno(e, EMLINK, op, to));
  }
  int ft = ext_ft(ain.i_mode);
  /* the new name first (in place over a replaced entry), then the old one goes */
  rc = b.ino ? ext_set_entry(x, b.dir, b.name, a.ino, ft)
             : ext_add_entry(x, b.dir, b.name, a.ino, ft);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, to));
  if ((rc = ext2fs_unlink(x->fs, a.dir, a.name, a.ino, 0)))
    EXT_RETURN(ext_fail(x, e, rc, op, from));
  if (adir && a.dir != b.dir) {
    if ((rc = ext_set_entry(x, a.ino, NULL, b.dir, EXT2_FT_DIR)) ||
        (rc = ext_touch(x, a.dir, T_M | T_C, -1)) ||
        (rc = ext_touch(x, b.dir, T_M | T_C, bdir ? 0 : +1)))
      EXT_RETURN(ext_fail(x, e, rc, op, to));
  } else {
    if ((rc = ext_touch(x, a.dir, T_M | T_C, 0)) ||
        (rc = ext_touch(x, b.dir, T_M | T_C, adir && bdir ? -1 : 0)))
      EXT_RETURN(ext_fail(x, e, rc, op, to));
  }
  if (b.ino && (rc = ext_drop_link(x, b.ino))) EXT_RETURN(ext_fail(x, e, rc, op, to));
  if ((rc = ext_touch(x, a.ino, T_C, 0))) EXT_RETURN(ext_fail(x, e, rc, op, to));
  EXT_RETURN(0);
}

static int ext_symlink(struct fs *f, const char *target, const char *path, struct err *e) {
  EXT_LOCK(f);
  const char *op = "symlink";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  size_t tl = target ? strlen(target) : 0;
  if (tl == 0) EXT_RETURN(ext_errno(e, ENOENT, op, path));
  if (tl + 1 > x->fs->blocksize || tl + 1 > 4096) EXT_RETURN(ext_errno(e, ENAMETOOLONG, op, path));
  struct walk w;
  if (ext_walk(x, op, path, W_ENTRY, &w, e) < 0) EXT_RETURN(-1);
  if (w.ino || !w.name[0]) EXT_RETURN(ext_errno(e, EEXIST, op, path));
  if (w.slash) EXT_RETURN(ext_errno(e, ENOENT, op, path));
  if (ext_dir_editable(x, w.dir, op, path, e) < 0) EXT_RETURN(-1);
  errcode_t rc = ext2fs_symlink(x->fs, w.dir, 0, w.name, target);
  if (rc == EXT2_ET_DIR_NO_SPACE) {
    inode_t pin;
    if (!ext_iget(x, w.dir, &pin) && !(pin.i_flags & EXT2_INDEX_FL)) {
      rc = ext2fs_expand_dir(x->fs, w.dir);
      if (!rc) rc = ext2fs_symlink(x->fs, w.dir, 0, w.name, target);
    }
  }
  ext2_ino_t ino = 0;
  if (!rc) rc = ext_lookup(x, w.dir, w.name, strlen(w.name), &ino);
  if (!rc) rc = ext_init_new(x, w.dir, ino, 0777);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

static int ext_readlink(struct fs *f, const char *path, char **target, struct err *e) {
  EXT_LOCK(f);
  *target = NULL;
  struct walk w;
  inode_t in;
  if (ext_find(x, "readlink", path, 0, &w, &in, e) < 0) EXT_RETURN(-1);
  if (!LINUX_S_ISLNK(in.i_mode)) EXT_RETURN(ext_errno(e, EINVAL, "readlink", path));
  errcode_t rc = ext_link_target(x, w.ino, &in, target);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, "readlink", path));
  EXT_RETURN(0);
}

static int ext_link(struct fs *f, const char *existing, const char *path, struct err *e) {
  EXT_LOCK(f);
  const char *op = "link";
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk a, b;
  inode_t in;
  if (ext_find(x, op, existing, W_ENTRY, &a, &in, e) < 0) EXT_RETURN(-1);
  if (LINUX_S_ISDIR(in.i_mode)) EXT_RETURN(ext_errno(e, EPERM, op, existing));
  if (a.slash) EXT_RETURN(ext_errno(e, ENOTDIR, op, existing));
  if (ext_walk(x, op, path, W_ENTRY, &b, e) < 0) EXT_RETURN(-1);
  if (b.ino || !b.name[0]) EXT_RETURN(ext_errno(e, EEXIST, op, path));
  if (b.slash) EXT_RETURN(ext_errno(e, ENOENT, op, path));
  if (in.i_links_count >= EXT2_LINK_MAX) EXT_RETURN(ext_errno(e, EMLINK, op, existing));
  if (ext_dir_editable(x, b.dir, op, path, e) < 0) EXT_RETURN(-1);
  errcode_t rc = ext_add_entry(x, b.dir, b.name, a.ino, ext_ft(in.i_mode));
  if (!rc) rc = ext_touch(x, a.ino, T_C, +1);
  if (!rc) rc = ext_touch(x, b.dir, T_M | T_C, 0);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

/* chmod, chown, utimens: one inode changed, ctime now. */
enum { SET_MODE, SET_OWNER, SET_TIMES };
struct ext_attr {
  int what;
  uint32_t mode, uid, gid;
  int64_t atime, atime_ns, mtime, mtime_ns;
};

static int ext_setattr(struct fs *f, const char *op, const char *path, const struct ext_attr *a,
                       struct err *e) {
  EXT_LOCK(f);
  if (ext_writable(x, op, path, e) < 0) EXT_RETURN(-1);
  struct walk w;
  inode_t in;
  if (ext_find(x, op, path, 1, &w, &in, e) < 0) EXT_RETURN(-1);
  int64_t s, ns;
  ext_now(&s, &ns);
  switch (a->what) {
  case SET_MODE: in.i_mode = (uint16_t)((in.i_mode & LINUX_S_IFMT) | (a->mode & 07777)); break;
  case SET_OWNER:
    if (a->uid != (uint32_t)-1) {
      in.i_uid = (uint16_t)a->uid;
      ext2fs_set_i_uid_high(in, a->uid >> 16);
    }
    if (a->gid != (uint32_t)-1) {
      in.i_gid = (uint16_t)a->gid;
      ext2fs_set_i_gid_high(in, a->gid >> 16);
    }
    break;
  case SET_TIMES:
    if (a->atime_ns != EXT_UTIME_OMIT)
      ext_stamp(x, &in, T_A, a->atime_ns == EXT_UTIME_NOW ? s : a->atime,
                a->atime_ns == EXT_UTIME_NOW ? ns : a->atime_ns);
    if (a->mtime_ns != EXT_UTIME_OMIT)
      ext_stamp(x, &in, T_M, a->mtime_ns == EXT_UTIME_NOW ? s : a->mtime,
                a->mtime_ns == EXT_UTIME_NOW ? ns : a->mtime_ns);
    break;
  }
  ext_stamp(x, &in, T_C, s, ns);
  errcode_t rc = ext_iput(x, w.ino, &in);
  if (rc) EXT_RETURN(ext_fail(x, e, rc, op, path));
  EXT_RETURN(0);
}

static int ext_chmod(struct fs *f, const char *path, uint32_t mode, struct err *e) {
  struct ext_attr a = {.what = SET_MODE, .mode = mode};
  return ext_setattr(f, "chmod", path, &a, e);
}

static int ext_chown(struct fs *f, const char *path, uint32_t uid, uint32_t gid, struct err *e) {
  struct ext_attr a = {.what = SET_OWNER, .uid = uid, .gid = gid};
  return ext_setattr(f, "chown", path, &a, e);
}

static int ext_utimens(struct fs *f, const char *path, int64_t atime, int64_t atime_ns,
                       int64_t mtime, int64_t mtime_ns, struct err *e) {
  struct ext_attr a = {.what = SET_TIMES,
                       .atime = atime,
                       .atime_ns = atime_ns,
                       .mtime = mtime,
                       .mtime_ns = mtime_ns};
  return ext_setattr(f, "utimens", path, &a, e);
}

/* Blocks the kernel's statfs leaves out of f_blocks (ext4_calculate_overhead):
 * the first data block, every group's superblock and descriptor copies
 * (reserved GDT blocks included), bitmaps and inode tables, and an internal
 * journal. */
static uint64_t ext_overhead(struct ext *x) {
  ext2_filsys fs = x->fs;
  struct ext2_super_block *sb = fs->super;
  if (ext2fs_has_feature_bigalloc(sb) && sb->s_overhead_clusters &&
      sb->s_overhead_clusters < ext2fs_blocks_count(sb) >> fs->cluster_ratio_bits)
    return (uint64_t)sb->s_overhead_clusters << fs->cluster_ratio_bits;
  uint64_t n = sb->s_first_data_block;
  uint64_t dpb = EXT2_DESC_PER_BLOCK(sb);
  for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
    int super = ext2fs_bg_has_super(fs, g);
    if (!ext2fs_has_feature_meta_bg(sb) || g < (uint64_t)sb->s_first_meta_bg * dpb) {
      if (super)
        n += 1 + (ext2fs_has_feature_meta_bg(sb) ? sb->s_first_meta_bg : fs->desc_blocks) +
             sb->s_reserved_gdt_blocks;
    } else {
      uint64_t r = g % dpb;
      n += (uint64_t)super + (r == 0 || r == 1 || r == dpb - 1);
    }
    n += 2 + fs->inode_blocks_per_group;
  }
  if (ext2fs_has_feature_journal(sb) && sb->s_journal_inum) {
    inode_t in;
    if (ext_iget(x, sb->s_journal_inum, &in) == 0) n += EXT2_I_SIZE(&in) / fs->blocksize;
  }
  return n;
}

static int ext_statvfs(struct fs *f, struct fs_statvfs *out, struct err *e) {
  EXT_LOCK(f);
  ext2_filsys fs = x->fs;
  struct ext2_super_block *sb = fs->super;
  uint64_t bfree = 0, ffree = 0;
  for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
    bfree += ext2fs_bg_free_blocks_count(fs, g);
    ffree += ext2fs_bg_free_inodes_count(fs, g);
  }
  bfree = EXT2FS_C2B(fs, bfree);
  uint64_t total = ext2fs_blocks_count(sb);
  uint64_t resv = 0; /* ext4_calculate_resv_clusters: 2 %, at most 4096 clusters */
  if (ext2fs_has_feature_extents(sb)) {
    resv = (total >> fs->cluster_ratio_bits) / 50;
    if (resv > 4096) resv = 4096;
    resv = EXT2FS_C2B(fs, resv);
  }
  uint64_t reserved = ext2fs_r_blocks_count(sb) + resv;
  uint64_t fsid = 0, hi = 0;
  for (int i = 7; i >= 0; i--) {
    fsid = fsid << 8 | sb->s_uuid[i];
    hi = hi << 8 | sb->s_uuid[8 + i];
  }
  memset(out, 0, sizeof *out);
  out->bsize = out->frsize = fs->blocksize;
  out->blocks = total > x->overhead ? total - x->overhead : 0;
  out->bfree = bfree;
  out->bavail = bfree > reserved ? bfree - reserved : 0;
  out->files = sb->s_inodes_count;
  out->ffree = out->favail = ffree;
  out->fsid = fsid ^ hi;
  out->flag = 4096 /* ST_RELATIME */ | (x->base.read_only ? 1 /* ST_RDONLY */ : 0);
  out->namemax = EXT2_NAME_LEN;
  (void)e;
  EXT_RETURN(0);
}

/* Bitmaps and superblocks (with their descriptor copies) only when something
 * changed them: a session that only read writes nothing, not even s_wtime. */
static int ext_sync_locked(struct ext *x, struct err *e) {
  if (x->base.read_only) return 0;
  errcode_t rc = 0;
  if (x->fs->flags & (EXT2_FLAG_IB_DIRTY | EXT2_FLAG_BB_DIRTY)) rc = ext2fs_write_bitmaps(x->fs);
  if (!rc && (x->fs->flags & EXT2_FLAG_DIRTY))
    rc = ext2fs_flush2(x->fs, 0); /* then vol_flush */
  else if (!rc)
    rc = io_channel_flush(x->fs->io);
  if (rc) return ext_fail(x, e, rc, "sync", "/");
  return 0;
}

static int ext_sync(struct fs *f, struct err *e) {
  EXT_LOCK(f);
  EXT_RETURN(ext_sync_locked(x, e));
}

static void ext_close(struct fs *f) {
  if (!f) return;
  struct ext *x = (struct ext *)f;
  struct err e;
  err_init(&e);
  pthread_mutex_lock(&x->lock);
  if (ext_sync_locked(x, &e) < 0) log_error("fs", "ext: close: %s", e.message);
  err_clear(&e);
  errcode_t rc = ext2fs_close2(x->fs, 0);
  if (rc) {
    log_error("fs", "ext: close: %s", error_message(rc));
    ext2fs_free(x->fs);
  }
  pthread_mutex_unlock(&x->lock);
  pthread_mutex_destroy(&x->lock);
  free(x);
}

#define EXT_OPS(name, kind)                                                                        \
  static const struct fs_ops name = {                                                              \
      .type = (kind),                                                                              \
      .stat = ext_stat,                                                                            \
      .lstat = ext_lstat,                                                                          \
      .readdir = ext_readdir,                                                                      \
      .read = ext_read,                                                                            \
      .write = ext_write,                                                                          \
      .truncate = ext_truncate,                                                                    \
      .mkdir = ext_mkdir,                                                                          \
      .rmdir = ext_rmdir,                                                                          \
      .unlink = ext_unlink,                                                                        \
      .rename = ext_rename,                                                                        \
      .symlink = ext_symlink,                                                                      \
      .readlink = ext_readlink,                                                                    \
      .link = ext_link,                                                                            \
      .chmod = ext_chmod,                                                                          \
      .chown = ext_chown,                                                                          \
      .utimens = ext_utimens,                                                                      \
      .statvfs = ext_statvfs,                                                                      \
      .sync = ext_sync,                                                                            \
      .close = ext_close,                                                                          \
  }
EXT_OPS(ext2_ops, "ext2");
EXT_OPS(ext3_ops, "ext3");
EXT_OPS(ext4_ops, "ext4");

/* ======================================================================= */
/* opening                                                                  */
/* ======================================================================= */

/* blkid's names: ext4 as soon as a feature ext3 lacks is on, ext3 with a journal. */
static const struct fs_ops *ext_kind(const struct ext2_super_block *sb) {
  uint32_t ext3_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_RECOVER |
                           EXT2_FEATURE_INCOMPAT_META_BG;
  uint32_t ext3_ro = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
                     0x0004 /* btree_dir */;
  if ((sb->s_feature_incompat & ~ext3_incompat) || (sb->s_feature_ro_compat & ~ext3_ro))
    return &ext4_ops;
  return (sb->s_feature_compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL) ? &ext3_ops : &ext2_ops;
}

static void ext_feature_names(char *out, size_t cap, uint32_t bits, int ro) {
  static const struct {
    uint32_t bit;
    const char *name;
  } incompat[] = {{EXT2_FEATURE_INCOMPAT_COMPRESSION, "compression"},
                  {EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata"},
                  {EXT4_FEATURE_INCOMPAT_MMP, "mmp"}},
    rocompat[] = {{EXT4_FEATURE_RO_COMPAT_REPLICA, "replica"}};
  out[0] = 0;
  size_t n = ro ? sizeof rocompat / sizeof rocompat[0] : sizeof incompat / sizeof incompat[0];
  for (int b = 0; b < 32; b++) {
    uint32_t bit = 1u << b;
    if (!(bits & bit)) continue;
    const char *name = NULL;
    for (size_t i = 0; i < n; i++)
      if ((ro ? rocompat[i].bit : incompat[i].bit) == bit)
        name = ro ? rocompat[i].name : incompat[i].name;
    size_t len = strlen(out);
    if (name)
      snprintf(out + len, cap - len, "%s%s", len ? ", " : "", name);
    else
      snprintf(out + len, cap - len, "%s0x%x", len ? ", " : "", bit);
  }
}

static int ext_refuse(struct err *e, int status, const char *code, const char *msg) {
  err_set(e, status, code, "%s", msg);
  return -1;
}

int fs_ext_open(struct vol *dev, int read_only, struct fs **out, struct err *e) {
  *out = NULL;
  pthread_once(&ext_once, ext_init_once);
  if (!read_only && vol_read_only(dev))
    return ext_refuse(e, 400, FS_EROFS, "ext: the device is read-only");
  /* Vet the superblock before libext2fs sizes anything from it. */
  struct ext2_super_block sb;
  struct err ve;
  err_init(&ve);
  if (vol_size(dev) < 2 * SUPERBLOCK_OFFSET ||
      vol_pread(dev, &sb, sizeof sb, SUPERBLOCK_OFFSET, &ve) < 0) {
    err_clear(&ve);
    return ext_refuse(e, 422, FS_ENOTSUP, "not an ext2/3/4 filesystem");
  }
  if (ext2fs_le16_to_cpu(sb.s_magic) != EXT2_SUPER_MAGIC)
    return ext_refuse(e, 422, FS_ENOTSUP, "not an ext2/3/4 filesystem (no superblock magic)");
  uint32_t log_bs = ext2fs_le32_to_cpu(sb.s_log_block_size);
  uint32_t incompat = ext2fs_le32_to_cpu(sb.s_feature_incompat);
  uint32_t ro_compat = ext2fs_le32_to_cpu(sb.s_feature_ro_compat);
  if (log_bs > EXT2_MAX_BLOCK_LOG_SIZE - EXT2_MIN_BLOCK_LOG_SIZE)
    return ext_refuse(e, 500, FS_ECORRUPT, "ext: damaged superblock: bad block size");
  uint64_t bs = (uint64_t)EXT2_MIN_BLOCK_SIZE << log_bs;
  uint64_t blocks = ext2fs_le32_to_cpu(sb.s_blocks_count);
  if (incompat & EXT4_FEATURE_INCOMPAT_64BIT)
    blocks |= (uint64_t)ext2fs_le32_to_cpu(sb.s_blocks_count_hi) << 32;
  if (blocks == 0 || blocks > vol_size(dev) / bs) {
    err_set(e, 500, FS_ECORRUPT,
            "ext: the filesystem (%llu blocks of %llu bytes) is larger than its device (%llu "
            "bytes): truncated image or damaged superblock",
            (unsigned long long)blocks, (unsigned long long)bs, (unsigned long long)vol_size(dev));
    return -1;
  }
  char names[256];
  /* (mmp is left to ext2fs_open2: the header counts it only with CONFIG_MMP) */
  uint32_t unknown = incompat & ~(EXT2_LIB_FEATURE_INCOMPAT_SUPP | EXT4_FEATURE_INCOMPAT_MMP);
  if (unknown) {
    ext_feature_names(names, sizeof names, unknown, 0);
    err_set(e, 422, FS_ENOTSUP,
            "ext: the filesystem uses features this version of libext2fs does not know: %s", names);
    return -1;
  }
  if (incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV)
    return ext_refuse(e, 422, FS_ENOTSUP,
                      "ext: this is an external journal device, not a filesystem");
  if (!read_only) {
    uint32_t ro_unknown = ro_compat & ~EXT2_LIB_FEATURE_RO_COMPAT_SUPP;
    if (ro_unknown) {
      ext_feature_names(names, sizeof names, ro_unknown, 1);
      err_set(e, 422, FS_ENOTSUP,
              "ext: the filesystem uses read-only-compatible features libext2fs cannot write "
              "(%s): open it read-only",
              names);
      return -1;
    }
    if (incompat & EXT3_FEATURE_INCOMPAT_RECOVER)
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: the filesystem needs journal recovery (it was not unmounted "
                        "cleanly): open it read-only, or replay the journal first (e2fsck -E "
                        "journal_only, or mount it once)");
    if (incompat & EXT4_FEATURE_INCOMPAT_MMP)
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: multi-mount protection (mmp) is not supported read-write");
    if (incompat & EXT4_FEATURE_INCOMPAT_EA_INODE)
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: extended attributes in inodes (ea_inode) are not supported "
                        "read-write");
    if (ro_compat & EXT4_FEATURE_RO_COMPAT_QUOTA)
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: quota usage is kept in the filesystem (quota feature) and "
                        "Streamer cannot update it: not supported read-write");
    if (ro_compat & (EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS | EXT4_FEATURE_RO_COMPAT_READONLY))
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: the filesystem is read-only by design (shared_blocks or read-only "
                        "feature)");
    if (ro_compat & EXT4_FEATURE_RO_COMPAT_BIGALLOC)
      return ext_refuse(e, 422, FS_ENOTSUP,
                        "ext: clustered allocation (bigalloc) is not supported read-write");
  }

  ext2_filsys fs = NULL;
  int flags = EXT2_FLAG_64BITS | (read_only ? EXT2_FLAG_SKIP_MMP : EXT2_FLAG_RW);
  volio_pending = dev;
  errcode_t rc = ext2fs_open2("vol", NULL, flags, 0, 0, &volio_manager, &fs);
  volio_pending = NULL;
  if (rc) {
    if (rc == EXT2_ET_UNSUPP_FEATURE || rc == EXT2_ET_RO_UNSUPP_FEATURE)
      err_set(e, 422, FS_ENOTSUP, "ext: %s", error_message(rc));
    else if (rc == EXT2_ET_SHORT_READ || rc == EIO)
      err_set(e, 500, FS_EIO, "ext: cannot read the filesystem: %s", error_message(rc));
    else
      err_set(e, 500, FS_ECORRUPT, "ext: damaged filesystem: %s", error_message(rc));
    return -1;
  }
  struct ext *x = calloc(1, sizeof *x);
  if (!x) {
    ext2fs_free(fs);
    err_set(e, 500, FS_EIO, "ext: out of memory");
    return -1;
  }
  x->fs = fs;
  x->vol = dev;
  x->base.ops = ext_kind(fs->super);
  x->base.read_only = read_only;
  pthread_mutex_init(&x->lock, NULL);
  fs->umask = 0;
  /* Group descriptors must point inside their groups before anything is
   * read through them; the root must be a directory. */
  rc = ext2fs_check_desc(fs);
  inode_t root;
  if (!rc) rc = ext_iget(x, EXT2_ROOT_INO, &root);
  if (!rc && (!LINUX_S_ISDIR(root.i_mode) || root.i_links_count == 0))
    rc = EXT2_ET_FILESYSTEM_CORRUPTED;
  if (rc) {
    ext_fail(x, e, rc, "open", "/");
    ext2fs_free(fs);
    pthread_mutex_destroy(&x->lock);
    free(x);
    return -1;
  }
  x->overhead = ext_overhead(x);
  if (fs->super->s_state & EXT2_ERROR_FS)
    log_warn("fs", "ext: the filesystem is marked as having errors (run e2fsck)");
  if (read_only && (fs->super->s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER))
    log_warn("fs", "ext: the journal needs recovery: reading the filesystem as last written "
                   "in place, without the journal's newer blocks");
  *out = &x->base;
  return 0;
}
