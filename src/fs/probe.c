/* probe.c — what is on a block device (fs_probe: the TYPE blkid reports,
 * which guestfish's list-filesystems and vfs-type print) and its label and
 * UUID (fs_label_uuid: blkid's LABEL and UUID). Signatures are checked the
 * way blkid checks them, more than a magic number where a magic number
 * alone would be a guess (FAT boot sectors, ext feature flags). Read-only. */
#include <stdio.h>
#include <stdlib.h>

#include "fs/fs_int.h"

/* Read len bytes at off; 0 if the device is too small or unreadable. */
static int rd(struct vol *v, void *buf, size_t len, uint64_t off) {
  if (off > vol_size(v) || len > vol_size(v) - off) return 0;
  struct err e;
  err_init(&e);
  return vol_pread(v, buf, len, off, &e) == 0;
}

/* ---- LVM2 ----------------------------------------------------------------- */

static int is_lvm2(struct vol *v) {
  uint8_t b[2048];
  if (!rd(v, b, sizeof b, 0)) return 0;
  for (int i = 0; i < 4; i++) {
    const uint8_t *s = b + 512 * i;
    if (memcmp(s, "LABELONE", 8) == 0 && fs_le64(s + 8) == (uint64_t)i &&
        memcmp(s + 24, "LVM2 001", 8) == 0 &&
        fs_crc32(0xf597a6cf, s + 20, 512 - 20) == fs_le32(s + 16))
      return 1;
  }
  return 0;
}

/* ---- FAT ------------------------------------------------------------------ */

static int pow2(uint32_t x) { return x && !(x & (x - 1)); }

/* A FAT boot sector: the checks blkid makes (BPB fields that a FAT driver
 * needs to be sane), not just the 55AA signature that every MBR has. */
static int fat_boot_sector(const uint8_t *b) {
  if (memcmp(b + 3, "NTFS    ", 8) == 0 || memcmp(b + 3, "EXFAT   ", 8) == 0) return 0;
  int magic = memcmp(b + 0x52, "FAT32   ", 8) == 0 || memcmp(b + 0x52, "MSWIN", 5) == 0 ||
              memcmp(b + 0x36, "FAT12   ", 8) == 0 || memcmp(b + 0x36, "FAT16   ", 8) == 0 ||
              memcmp(b + 0x36, "FAT     ", 8) == 0 || memcmp(b + 0x36, "MSDOS", 5) == 0;
  if (!magic && !(b[0] == 0xeb || b[0] == 0xe9) && !(b[510] == 0x55 && b[511] == 0xaa)) return 0;
  uint32_t bps = fs_le16(b + 11), spc = b[13], reserved = fs_le16(b + 14), fats = b[16];
  uint32_t media = b[21];
  uint32_t total = fs_le16(b + 19) ? fs_le16(b + 19) : fs_le32(b + 32);
  uint32_t fatsize = fs_le16(b + 22) ? fs_le16(b + 22) : fs_le32(b + 36);
  if (!pow2(bps) || bps < 512 || bps > 4096) return 0;
  if (!pow2(spc) || spc > 128) return 0;
  if (reserved == 0 || fats == 0 || fats > 4) return 0;
  if (media != 0xf0 && media < 0xf8) return 0;
  if (total == 0 || fatsize == 0) return 0;
  if (!magic) {
    /* Only a jump and 55AA: ask for what every formatter writes. */
    if (!(b[0] == 0xeb || b[0] == 0xe9)) return 0;
  }
  return 1;
}

/* FAT12/16 vs FAT32 decides where the serial and label are. */
static int fat_is32(const uint8_t *b) { return fs_le16(b + 22) == 0 && fs_le16(b + 17) == 0; }

/* ---- ext2/3/4 ------------------------------------------------------------- */

#define EXT_COMPAT_HAS_JOURNAL 0x4u
#define EXT_INCOMPAT_JOURNAL_DEV 0x8u
/* what ext2 / ext3 drivers understood before ext4 (blkid's rules) */
#define EXT2_RO_COMPAT_SUPP 0x7u /* sparse_super, large_file, btree_dir */
#define EXT2_INCOMPAT_SUPP 0x12u /* filetype, meta_bg */
#define EXT3_RO_COMPAT_SUPP 0x7u
#define EXT3_INCOMPAT_SUPP 0x16u /* filetype, recover, meta_bg */

static const char *ext_type(const uint8_t *sb) {
  if (fs_le16(sb + 0x38) != 0xef53) return NULL;
  uint32_t compat = fs_le32(sb + 0x5c), incompat = fs_le32(sb + 0x60), ro = fs_le32(sb + 0x64);
  if (incompat & EXT_INCOMPAT_JOURNAL_DEV) return "jbd";
  if (!(compat & EXT_COMPAT_HAS_JOURNAL)) {
    if (!(ro & ~EXT2_RO_COMPAT_SUPP) && !(incompat & ~EXT2_INCOMPAT_SUPP)) return "ext2";
    return "ext4";
  }
  if (!(ro & ~EXT3_RO_COMPAT_SUPP) && !(incompat & ~EXT3_INCOMPAT_SUPP)) return "ext3";
  return "ext4";
}

/* ---- the probe ------------------------------------------------------------ */

static int is_swap(struct vol *v) {
  static const uint32_t pages[] = {4096, 8192, 16384, 32768, 65536};
  for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) {
    uint8_t m[10];
    if (!rd(v, m, 10, pages[i] - 10)) break;
    if (memcmp(m, "SWAPSPACE2", 10) == 0 || memcmp(m, "SWAP-SPACE", 10) == 0) return 1;
  }
  return 0;
}

const char *fs_probe(struct vol *dev) {
  if (!dev) return "unknown";
  uint8_t b[4096];
  if (is_lvm2(dev)) return "LVM2_member";
  if (rd(dev, b, 4, 0)) {
    if (memcmp(b, "XFSB", 4) == 0) return "xfs";
    if (memcmp(b, "hsqs", 4) == 0) return "squashfs";
  }
  if (rd(dev, b, 8, 0x10040) && memcmp(b, "_BHRfS_M", 8) == 0) return "btrfs";
  if (rd(dev, b, 1024, 1024)) {
    const char *t = ext_type(b);
    if (t) return t;
  }
  if (is_swap(dev)) return "swap";
  if (rd(dev, b, 6, 0x8000) && memcmp(b + 1, "CD001", 5) == 0) return "iso9660";
  if (rd(dev, b, 512, 0)) {
    if (memcmp(b + 3, "NTFS    ", 8) == 0 && b[510] == 0x55 && b[511] == 0xaa) return "ntfs";
    if (fat_boot_sector(b)) return "vfat";
  }
  return "unknown";
}

/* ---- labels and UUIDs ----------------------------------------------------- */

/* A space- or NUL-padded fixed-size field, trailing blanks removed. */
static char *field(const uint8_t *p, size_t n) {
  while (n && (p[n - 1] == ' ' || p[n - 1] == 0))
    n--;
  for (size_t i = 0; i < n; i++)
    if (p[i] == 0) n = i;
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

static char *uuid_text(const uint8_t *u) {
  return util_strdup_printf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
                            u[11], u[12], u[13], u[14], u[15]);
}

/* The volume label entry of a FAT root directory (attribute 0x08 and not a
 * long-name entry), which blkid prefers to the boot sector's copy. FAT32's
 * root directory is a cluster chain: followed for at most 64 clusters. */
static char *fat_root_label(struct vol *v, const uint8_t *b) {
  uint32_t bps = fs_le16(b + 11), spc = b[13], reserved = fs_le16(b + 14), fats = b[16];
  uint32_t rootents = fs_le16(b + 17);
  uint64_t fatsize = fs_le16(b + 22) ? fs_le16(b + 22) : fs_le32(b + 36);
  uint64_t rootdir = ((uint64_t)reserved + fats * fatsize) * bps;
  uint64_t clusterb = (uint64_t)spc * bps;
  uint64_t datastart = rootdir + (((uint64_t)rootents * 32 + bps - 1) / bps) * bps;
  uint64_t offs[64], lens[64];
  size_t nreg = 0;
  if (!fat_is32(b)) {
    offs[0] = rootdir, lens[0] = (uint64_t)rootents * 32, nreg = 1;
  } else {
    uint32_t c = fs_le32(b + 44);
    while (nreg < 64 && c >= 2 && c < 0x0ffffff7) {
      offs[nreg] = datastart + (uint64_t)(c - 2) * clusterb, lens[nreg] = clusterb, nreg++;
      uint8_t f[4];
      if (!rd(v, f, 4, (uint64_t)reserved * bps + (uint64_t)c * 4)) break;
      c = fs_le32(f) & 0x0fffffff;
    }
  }
  uint8_t ent[32];
  for (size_t r = 0; r < nreg; r++)
    for (uint64_t o = 0; o + 32 <= lens[r] && o < (1u << 20); o += 32) {
      if (!rd(v, ent, 32, offs[r] + o)) return NULL;
      if (ent[0] == 0) return NULL;
      if (ent[0] == 0xe5) continue;
      if ((ent[11] & 0x3f) == 0x0f) continue; /* long name */
      if (ent[11] & 0x08) {
        if (ent[0] == 0x05) ent[0] = 0xe5;
        return field(ent, 11);
      }
    }
  return NULL;
}

int fs_label_uuid(struct vol *dev, char **label, char **uuid) {
  char *l = NULL, *u = NULL;
  *label = *uuid = NULL;
  const char *type = fs_probe(dev);
  uint8_t b[1024];
  if (strcmp(type, "vfat") == 0 && rd(dev, b, 512, 0)) {
    const uint8_t *x = fat_is32(b) ? b + 0x40 : b + 0x24; /* extended BPB */
    if (x[2] == 0x29 || x[2] == 0x28) {
      uint32_t serial = fs_le32(x + 3);
      u = util_strdup_printf("%04X-%04X", serial >> 16, serial & 0xffff);
    }
    l = fat_root_label(dev, b);
    if (l && strcmp(l, "NO NAME") == 0) {
      free(l);
      l = NULL;
    }
    if (!l && x[2] == 0x29 && memcmp(x + 7, "NO NAME    ", 11) != 0) l = field(x + 7, 11);
  } else if (strncmp(type, "ext", 3) == 0 && rd(dev, b, 1024, 1024)) {
    l = field(b + 0x78, 16);
    u = uuid_text(b + 0x68);
  } else if (strcmp(type, "xfs") == 0 && rd(dev, b, 512, 0)) {
    l = field(b + 108, 12);
    u = uuid_text(b + 32);
  } else if (strcmp(type, "btrfs") == 0 && rd(dev, b, 1024, 0x10000)) {
    l = field(b + 0x12b, 256);
    u = uuid_text(b + 0x20);
  } else if (strcmp(type, "swap") == 0 && rd(dev, b, 512, 1024)) {
    /* header after the 1 KiB boot block: version, last_page, nr_badpages, uuid, label */
    l = field(b + 28, 16);
    u = uuid_text(b + 12);
  }
  if (u && strcmp(u, "00000000-0000-0000-0000-000000000000") == 0) {
    free(u);
    u = NULL;
  }
  *label = l ? l : strdup("");
  *uuid = u ? u : strdup("");
  if (!*label || !*uuid) {
    free(*label), free(*uuid);
    *label = *uuid = NULL;
    return -1;
  }
  return 0;
}
