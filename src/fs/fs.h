/* fs.h — a disk opened from a struct vol, the way guestfish sees it: the
 * whole disk as /dev/sda, MBR/GPT partitions as /dev/sdaN, LVM2 logical
 * volumes as /dev/VG/LV (and /dev/mapper/VG-LV), and the filesystems on
 * them (vfat, ext2/3/4) through one small file API. In-process, no root, no
 * mounts, no VM. Must not know about plan scripts, HTTP or the store.
 * See src/fs/README.md.
 *
 * Errors: every call returns 0 (or a count) on success and -1 with `e` set
 * on failure; e->status is 400 for a caller mistake (bad path, not a
 * directory, exists...), 404 for "no such file or directory", 409 for
 * conflicts (not empty, busy), 422 for what the format cannot do (chmod on
 * vfat, journal needs recovery), 500 for I/O and corruption. e->code is one
 * of the FS_* codes below and e->message reads like guestfish's errors,
 * e.g. "mkdir: /etc/foo: No such file or directory". */
#ifndef STREAMER_FS_H
#define STREAMER_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"
#include "vol/vol.h"

/* error codes (e->code) */
#define FS_ENOENT "FS_NOT_FOUND"
#define FS_EEXIST "FS_EXISTS"
#define FS_ENOTDIR "FS_NOT_A_DIRECTORY"
#define FS_EISDIR "FS_IS_A_DIRECTORY"
#define FS_ENOTEMPTY "FS_NOT_EMPTY"
#define FS_ENOSPC "FS_NO_SPACE"
#define FS_EINVAL "FS_INVALID"
#define FS_EROFS "FS_READ_ONLY"
#define FS_ENOTSUP "FS_NOT_SUPPORTED" /* the filesystem cannot do this (symlink on vfat) */
#define FS_ECORRUPT "FS_CORRUPT"      /* bad on-disk structure: refused, nothing written */
#define FS_EIO "FS_IO_ERROR"
#define FS_ELOOP "FS_TOO_MANY_LINKS"

/* ======================================================================= */
/* disks, partitions, LVM (src/fs/disk.c, src/fs/part.c, src/fs/lvm.c)      */
/* ======================================================================= */
struct fs_disk;

/* Scan vol (borrowed; must outlive the disk) for a partition table (MBR,
 * incl. extended/logical partitions numbered from 5 like Linux; GPT with
 * its protective MBR) and LVM2 physical volumes (on the whole disk or on
 * partitions), and activate every linear or striped LV. A damaged table or
 * metadata is reported in fs_disk_warnings and the parts that are fine stay
 * usable. */
int fs_disk_open(struct vol *vol, int read_only, struct fs_disk **out, struct err *e);
void fs_disk_close(struct fs_disk *d);
int fs_disk_read_only(const struct fs_disk *d);
/* Problems found while scanning (NULL-terminated, owned by d). */
const char *const *fs_disk_warnings(struct fs_disk *d);

/* guestfish list-devices / list-partitions: "/dev/sda", "/dev/sda1"...
 * NULL-terminated malloc'd arrays (free with fs_strv_free), sorted as
 * guestfish sorts them. */
char **fs_list_devices(struct fs_disk *d);
char **fs_list_partitions(struct fs_disk *d);
/* LVs as "/dev/VG/LV" (lvs: the LVs that exist, i.e. of complete VGs), VG
 * names (vgs: incomplete VGs included), sorted. NULL when out of memory. */
char **fs_lvs(struct fs_disk *d);
char **fs_vgs(struct fs_disk *d);
/* Rename a volume group: rewrites the LVM2 text metadata on every PV of the
 * VG (new seqno, both metadata areas, checksums) so lvm2 accepts it. 404 no
 * such VG, 400 FS_INVALID bad name / FS_EXISTS taken / FS_READ_ONLY, 409 VG
 * incomplete, 422 FS_NO_SPACE metadata area too small; nothing is written
 * then. LV volumes stay valid under their new names. */
int fs_vgrename(struct fs_disk *d, const char *from, const char *to, struct err *e);

/* A block device by any name guestfish accepts ("/dev/sda", "/dev/sda2",
 * "/dev/vda2", "/dev/VG/LV", "/dev/mapper/VG-LV"): a struct vol view of its
 * bytes (owned by d: do not close). */
struct vol *fs_device(struct fs_disk *d, const char *name, struct err *e);
/* The canonical name ("/dev/sda2", "/dev/VG/LV") of a device name, malloc'd;
 * NULL (e set) if there is no such device. */
char *fs_device_canonical(struct fs_disk *d, const char *name, struct err *e);

/* What is on a device: "vfat", "ext2", "ext3", "ext4", "jbd", "xfs", "btrfs",
 * "ntfs", "swap", "LVM2_member", "iso9660", "squashfs" or "unknown" (the
 * strings blkid uses, which list-filesystems prints). Never fails: an
 * unreadable device is "unknown". Static string. */
const char *fs_probe(struct vol *dev);
/* guestfish list-filesystems: the disk if it has no partitions, every
 * partition and LV that is not a PV, an extended partition or a GPT
 * Microsoft-reserved/LDM/snapshot partition, with its type ("unknown"
 * included, like guestfish). n pairs (NULL-terminated arrays); devices[i] /
 * types[i] malloc'd (fs_strv_free); -1 when out of memory. */
int fs_list_filesystems(struct fs_disk *d, char ***devices, char ***types);
/* Filesystem label and UUID (blkid's LABEL= / UUID=) of vfat, ext2/3/4, xfs,
 * btrfs and swap, "" if none; malloc'd. -1 only when out of memory. */
int fs_label_uuid(struct vol *dev, char **label, char **uuid);

void fs_strv_free(char **v);

/* ======================================================================= */
/* filesystems (src/fs/vfat.c, src/fs/ext.c)                                */
/* ======================================================================= */
struct fs;

struct fs_stat {
  uint32_t mode; /* S_IFREG | 0644 etc. */
  uint32_t uid, gid;
  uint32_t nlink;
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;             /* 512-byte blocks allocated */
  int64_t atime, mtime, ctime; /* seconds since the epoch */
  int64_t atime_ns, mtime_ns, ctime_ns;
};

struct fs_dirent {
  char *name;    /* malloc'd; "." and ".." are not listed */
  uint32_t type; /* DT_REG, DT_DIR, DT_LNK, ... */
};

struct fs_statvfs {
  uint64_t bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax;
};

enum {
  FS_O_CREAT = 1,  /* create if missing (with mode) */
  FS_O_TRUNC = 2,  /* truncate to 0 first */
  FS_O_APPEND = 4, /* off is ignored: write at the end */
  FS_O_EXCL = 8,   /* fail if it exists */
};

/* Every path is absolute inside the filesystem ("/etc/hostname"); "." and
 * ".." components and repeated slashes are resolved; symlinks are followed
 * (not for the last component of lstat, readlink, unlink, rename, symlink)
 * up to 40 hops, and never out of the filesystem ("/" is its root). */
struct fs_ops {
  const char *type; /* "vfat", "ext4", ... */
  int (*stat)(struct fs *f, const char *path, struct fs_stat *st, struct err *e);
  int (*lstat)(struct fs *f, const char *path, struct fs_stat *st, struct err *e);
  /* malloc'd array of *n entries in directory order; fs_dirents_free */
  int (*readdir)(struct fs *f, const char *path, struct fs_dirent **ents, size_t *n, struct err *e);
  /* up to len bytes at off; *got = bytes read (0 at the end) */
  int (*read)(struct fs *f, const char *path, void *buf, size_t len, uint64_t off, size_t *got,
              struct err *e);
  int (*write)(struct fs *f, const char *path, const void *buf, size_t len, uint64_t off, int flags,
               uint32_t mode, struct err *e);
  int (*truncate)(struct fs *f, const char *path, uint64_t size, struct err *e);
  int (*mkdir)(struct fs *f, const char *path, uint32_t mode, struct err *e);
  int (*rmdir)(struct fs *f, const char *path, struct err *e);
  int (*unlink)(struct fs *f, const char *path, struct err *e);
  /* replaces an existing file at `to` (not a non-empty directory) like rename(2) */
  int (*rename)(struct fs *f, const char *from, const char *to, struct err *e);
  int (*symlink)(struct fs *f, const char *target, const char *path, struct err *e);
  int (*readlink)(struct fs *f, const char *path, char **target, struct err *e);
  int (*link)(struct fs *f, const char *existing, const char *path, struct err *e);
  int (*chmod)(struct fs *f, const char *path, uint32_t mode, struct err *e);
  int (*chown)(struct fs *f, const char *path, uint32_t uid, uint32_t gid, struct err *e);
  int (*utimens)(struct fs *f, const char *path, int64_t atime, int64_t atime_ns, int64_t mtime,
                 int64_t mtime_ns, struct err *e);
  int (*statvfs)(struct fs *f, struct fs_statvfs *out, struct err *e);
  /* write every change through to the volume (and vol_flush it) */
  int (*sync)(struct fs *f, struct err *e);
  /* sync, then free; errors of the final sync are logged */
  void (*close)(struct fs *f);
};

struct fs {
  const struct fs_ops *ops;
  int read_only; /* writes fail with FS_EROFS */
};

/* Open the filesystem on dev (borrowed; must outlive the fs) by probing its
 * type; "unknown"/unsupported types fail with 422 FS_NOT_SUPPORTED naming
 * the type. An ext3/4 whose journal needs recovery is refused read-write
 * (422, "needs journal recovery") rather than written. */
int fs_open(struct vol *dev, int read_only, struct fs **out, struct err *e);
int fs_vfat_open(struct vol *dev, int read_only, struct fs **out, struct err *e);
int fs_ext_open(struct vol *dev, int read_only, struct fs **out, struct err *e);

static inline void fs_close(struct fs *f) {
  if (f) f->ops->close(f);
}
void fs_dirents_free(struct fs_dirent *ents, size_t n);

/* Convenience over the ops: read a whole file (at most max bytes, else
 * FS_INVALID "too large"), write a whole file (create/truncate), mkdir -p. */
int fs_read_file(struct fs *f, const char *path, size_t max, char **data, size_t *len,
                 struct err *e);
int fs_write_file(struct fs *f, const char *path, const void *data, size_t len, uint32_t mode,
                  struct err *e);
int fs_mkdir_p(struct fs *f, const char *path, uint32_t mode, struct err *e);

#endif
