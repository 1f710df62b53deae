/* vol.c — the plain-file volume (vol_file_open: a regular file or a block
 * device as a struct vol) and the small I/O helpers the rest of src/vol shares
 * (range and read-only checks, full pread/pwrite, I/O error messages).
 * Golden volumes are file volumes opened read-only. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vol/vol_int.h"

/* ---- shared helpers ------------------------------------------------------ */

int vol_id_valid(const char *id) {
  if (!id) return 0;
  size_t n = 0;
  for (const char *p = id; *p; p++, n++) {
    char c = *p;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return n >= 1 && n <= VOL_ID_MAX;
}

int vol_check_range(const struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  if (off > v->size || len > v->size - off) {
    err_set(e, 400, "VOL_OUT_OF_RANGE",
            "I/O of %llu bytes at offset %llu is beyond the end of the volume (%llu bytes)",
            (unsigned long long)len, (unsigned long long)off, (unsigned long long)v->size);
    return -1;
  }
  return 0;
}

int vol_check_writable(const struct vol *v, const char *what, struct err *e) {
  if (v->read_only) {
    err_set(e, 400, "VOL_READ_ONLY", "cannot %s: the volume is read-only", what);
    return -1;
  }
  return 0;
}

int vol_err_io(struct err *e, int errnum, const char *fmt, ...) {
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  err_set(e, 500, "VOL_IO_ERROR", "%s: %s", what, strerror(errnum));
  return -1;
}

__thread int vol_nowait, vol_would_block;

int vol_fd_block_status(int fd, uint64_t off, uint64_t len, uint64_t *run) {
  off_t d = lseek(fd, (off_t)off, SEEK_DATA);
  if (d < 0) {
    *run = len;
    if (errno == ENXIO) return VOL_DEALLOCATED; /* no data at or after off */
    return VOL_MAPPED;                          /* no hole support: all mapped */
  }
  if ((uint64_t)d > off) {
    *run = (uint64_t)d - off < len ? (uint64_t)d - off : len;
    return VOL_DEALLOCATED;
  }
  off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
  *run = len;
  if (h > (off_t)off && (uint64_t)h - off < len) *run = (uint64_t)h - off;
  return VOL_MAPPED;
}

int vol_read_full(int fd, void *buf, size_t len, uint64_t off) {
  char *p = buf;
  while (len > 0) {
    ssize_t r;
    if (vol_nowait) {
      /* only what the page cache holds; EAGAIN if the disk would be needed */
      struct iovec iov = {.iov_base = p, .iov_len = len};
      r = preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) {
        vol_would_block = 1;
        errno = EAGAIN;
        return -1;
      }
    } else {
      r = pread(fd, p, len, (off_t)off);
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) { /* end of file: the rest reads as zeros */
      memset(p, 0, len);
      return 0;
    }
    p += r;
    off += (uint64_t)r;
    len -= (size_t)r;
  }
  return 0;
}

int vol_write_full(int fd, const void *buf, size_t len, uint64_t off) {
  const char *p = buf;
  while (len > 0) {
    ssize_t w = pwrite(fd, p, len, (off_t)off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) {
      errno = ENOSPC;
      return -1;
    }
    p += w;
    off += (uint64_t)w;
    len -= (size_t)w;
  }
  return 0;
}

int vol_fsync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fsync(fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

int vol_is_zero(const void *buf, size_t len) {
  const unsigned char *p = buf;
  /* Check the first 16 bytes, then compare the buffer with itself shifted. */
  size_t head = len < 16 ? len : 16;
  for (size_t i = 0; i < head; i++)
    if (p[i]) return 0;
  return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

/* ---- the file volume ----------------------------------------------------- */

struct file_vol {
  struct vol v;
  int fd;
  int is_blockdev;
  char *path;
};

static int file_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                             struct err *e) {
  if (!len) len = 1;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  return vol_fd_block_status(((struct file_vol *)v)->fd, off, len, run);
}

static int file_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct file_vol *f = (struct file_vol *)v;
  if (vol_check_range(v, off, len, e) < 0) return -1;
  if (vol_read_full(f->fd, buf, len, off) < 0)
    return vol_err_io(e, errno, "read %s at offset %llu", f->path, (unsigned long long)off);
  return 0;
}

static int file_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct file_vol *f = (struct file_vol *)v;
  if (vol_check_writable(v, "write", e) < 0 || vol_check_range(v, off, len, e) < 0) return -1;
  if (vol_write_full(f->fd, buf, len, off) < 0)
    return vol_err_io(e, errno, "write %s at offset %llu", f->path, (unsigned long long)off);
  return 0;
}

static int file_flush(struct vol *v, struct err *e) {
  struct file_vol *f = (struct file_vol *)v;
  if (v->read_only) return 0;
  if (fdatasync(f->fd) < 0) return vol_err_io(e, errno, "fdatasync %s", f->path);
  return 0;
}

/* Write zeros over [off, off+len) (when the file system cannot punch holes). */
static int file_write_zeros(struct file_vol *f, uint64_t off, uint64_t len, struct err *e) {
  static const char zeros[65536];
  while (len > 0) {
    size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
    if (vol_write_full(f->fd, zeros, n, off) < 0)
      return vol_err_io(e, errno, "write zeros to %s at offset %llu", f->path,
                        (unsigned long long)off);
    off += n;
    len -= n;
  }
  return 0;
}

static int file_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct file_vol *f = (struct file_vol *)v;
  if (vol_check_writable(v, "discard", e) < 0 || vol_check_range(v, off, len, e) < 0) return -1;
  if (len == 0) return 0;
  /* On a block device PUNCH_HOLE guarantees zeros too (Linux >= 4.9). */
  if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
    return vol_err_io(e, errno, "punch hole in %s at offset %llu", f->path,
                      (unsigned long long)off);
  return file_write_zeros(f, off, len, e);
}

static uint64_t file_allocated(struct vol *v) {
  struct file_vol *f = (struct file_vol *)v;
  struct stat st;
  if (f->is_blockdev) return v->size;
  if (fstat(f->fd, &st) < 0) return 0;
  return (uint64_t)st.st_blocks * 512u;
}

static void file_close(struct vol *v) {
  struct file_vol *f = (struct file_vol *)v;
  close(f->fd);
  free(f->path);
  free(f);
}

static const struct vol_ops file_ops = {
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .discard = file_discard,
    .allocated = file_allocated,
    .close = file_close,
    .block_status = file_block_status,
};

int vol_file_open(const char *path, int read_only, struct vol **out, struct err *e) {
  *out = NULL;
  int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      err_set(e, 404, "VOL_NOT_FOUND", "volume %s does not exist", path);
      return -1;
    }
    return vol_err_io(e, errno, "open %s", path);
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int saved = errno;
    close(fd);
    return vol_err_io(e, saved, "stat %s", path);
  }
  uint64_t size;
  int blockdev = 0;
  if (S_ISREG(st.st_mode)) {
    size = (uint64_t)st.st_size;
  } else if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
      int saved = errno;
      close(fd);
      return vol_err_io(e, saved, "size of block device %s", path);
    }
    blockdev = 1;
  } else {
    close(fd);
    err_set(e, 400, "VOL_NOT_A_FILE", "%s is neither a regular file nor a block device", path);
    return -1;
  }
  struct file_vol *f = calloc(1, sizeof *f);
  char *p = strdup(path);
  if (!f || !p) {
    free(f);
    free(p);
    close(fd);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  f->v.ops = &file_ops;
  f->v.size = size;
  f->v.read_only = read_only ? 1 : 0;
  f->fd = fd;
  f->is_blockdev = blockdev;
  f->path = p;
  *out = &f->v;
  return 0;
}
