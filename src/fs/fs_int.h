/* fs_int.h — private to src/fs: the helpers every part of the module shares
 * (volume views, little-endian fields, warnings) and the disk structures that
 * disk.c, part.c and lvm.c build together. Keep it small and stable: the vfat
 * and ext code use only the "shared helpers" section. */
#ifndef STREAMER_FS_INT_H
#define STREAMER_FS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fs/fs.h"

/* ---- shared helpers --------------------------------------------------------- */

/* A struct vol over bytes [off, off+len) of parent (borrowed: it must outlive
 * the view). Reads, writes, flush and discard pass through with the offset;
 * the view is read-only if read_only or parent is. Close with vol_close. */
int fs_vol_range(struct vol *parent, uint64_t off, uint64_t len, int read_only, struct vol **out,
                 struct err *e);
/* A struct vol over len bytes of memory (borrowed; tests and fuzzing). */
int fs_vol_mem(void *buf, size_t len, int read_only, struct vol **out, struct err *e);
/* Read exactly len bytes at off; a short or failed read is 500 FS_IO_ERROR
 * naming `what`. */
int fs_read_at(struct vol *v, void *buf, size_t len, uint64_t off, const char *what, struct err *e);

static inline uint16_t fs_le16(const void *p) {
  const uint8_t *b = p;
  return (uint16_t)(b[0] | b[1] << 8);
}
static inline uint32_t fs_le32(const void *p) {
  const uint8_t *b = p;
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t fs_le64(const void *p) {
  return fs_le32(p) | (uint64_t)fs_le32((const uint8_t *)p + 4) << 32;
}
static inline uint32_t fs_be32(const void *p) {
  const uint8_t *b = p;
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}
static inline void fs_put_le32(void *p, uint32_t v) {
  uint8_t *b = p;
  b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16), b[3] = (uint8_t)(v >> 24);
}
static inline void fs_put_le64(void *p, uint64_t v) {
  fs_put_le32(p, (uint32_t)v);
  fs_put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) without the usual
 * pre/post inversion: crc is the running value. GPT uses
 * ~fs_crc32(~0u, ...); LVM2 uses fs_crc32(0xf597a6cf, ...) as is. */
uint32_t fs_crc32(uint32_t crc, const void *buf, size_t len);

/* ---- the disk (disk.c, part.c, lvm.c) ------------------------------------ */

/* A growing list of problems found while scanning. */
struct fs_warnings {
  char **v; /* NULL-terminated */
  size_t n, cap;
};
void fs_warn(struct fs_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One partition as the partition table describes it (part.c). */
struct fs_part {
  int num;             /* Linux's number: MBR 1-4 and 5.. for logicals, GPT entry index + 1 */
  uint64_t start, len; /* bytes in the disk */
  uint8_t mbr_type;    /* MBR system id; 0 for GPT */
  int extended;        /* an MBR extended partition (a container, not a filesystem) */
  char gpt_type[37];   /* GPT partition type GUID in upper case; "" for MBR */
};

enum { FS_PT_NONE = 0, FS_PT_MBR, FS_PT_GPT };

/* Read the partition table of disk the way Linux does: *kind is FS_PT_NONE,
 * FS_PT_MBR or FS_PT_GPT; *parts (malloc'd, sorted by number) holds *n
 * partitions. Damage goes to w and what is sound is kept; fails (-1) only
 * when memory runs out. */
int fs_part_scan(struct vol *disk, int *kind, struct fs_part **parts, size_t *n,
                 struct fs_warnings *w, struct err *e);

/* A block device that may hold an LVM2 physical volume. */
struct fs_pv_candidate {
  const char *name;  /* "/dev/sda2" */
  struct vol *vol;   /* its view */
  uint64_t disk_off; /* where its byte 0 is on the disk */
};

struct fs_lvm; /* every VG and LV found (lvm.c) */

/* Scan the candidates for LVM2 PV labels and metadata, and build a volume for
 * every LV of every complete VG (their I/O goes to disk at absolute offsets).
 * Damage goes to w; fails only when memory runs out. */
int fs_lvm_scan(struct vol *disk, int read_only, const struct fs_pv_candidate *c, size_t nc,
                struct fs_lvm **out, struct fs_warnings *w, struct err *e);
void fs_lvm_free(struct fs_lvm *l);
/* sorted "/dev/VG/LV" of the active LVs / every VG name; malloc'd, NULL-terminated */
char **fs_lvm_lvs(struct fs_lvm *l);
char **fs_lvm_vgs(struct fs_lvm *l);
/* The LV named "/dev/VG/LV" or "/dev/mapper/VG-LV" (NULL if none). *canon
 * (optional) gets the "/dev/VG/LV" name, malloc'd. */
struct vol *fs_lvm_find(struct fs_lvm *l, const char *name, char **canon);
int fs_lvm_vgrename(struct fs_lvm *l, const char *from, const char *to, struct err *e);

#endif
