/* part.c — partition tables: MBR (four primary slots, an extended partition
 * whose chain of EBRs holds logical partitions numbered from 5) and GPT
 * (protective or hybrid MBR, header and entry array CRC-32 checked, the
 * backup header at the end used when the primary is damaged). The rules
 * follow what Linux does when it reads a disk, since guestfish names the
 * partitions the way its appliance's kernel found them: empty slots are
 * skipped but keep their numbers, an extended partition is a 1 KiB device,
 * partitions past the end of the disk are dropped and those running over it
 * are cut. 512-byte sectors. Nothing here ever writes. */
#include <stdio.h>
#include <stdlib.h>

#include "fs/fs_int.h"

#define SECTOR 512u
#define MAX_PARTS 256 /* Linux's DISK_MAX_PARTS */
#define MAX_EBRS 1024 /* links followed in an extended partition's chain */
#define GPT_MAX_ENTRIES 4096
#define GPT_ENTRY_SIZE 128u

struct scan {
  struct vol *disk;
  uint64_t sectors; /* whole sectors on the disk */
  struct fs_part *parts;
  size_t n, cap;
  struct fs_warnings *w;
  struct err *e;
};

static int add(struct scan *s, const struct fs_part *p) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    struct fs_part *np = realloc(s->parts, cap * sizeof *np);
    if (!np) {
      err_set(s->e, 500, FS_EIO, "out of memory reading the partition table");
      return -1;
    }
    s->parts = np, s->cap = cap;
  }
  s->parts[s->n++] = *p;
  return 0;
}

/* Add partition num at [lba, lba+count) sectors, dropped past the end of the
 * disk and cut at it, like Linux. */
static int add_sectors(struct scan *s, struct fs_part *p, uint64_t lba, uint64_t count) {
  if (count == 0) return 0;
  if (lba >= s->sectors) {
    fs_warn(s->w,
            "partition %d starts at sector %llu, beyond the end of the disk (%llu sectors): "
            "ignored",
            p->num, (unsigned long long)lba, (unsigned long long)s->sectors);
    return 0;
  }
  if (count > s->sectors - lba) {
    fs_warn(s->w, "partition %d (%llu sectors at %llu) runs past the end of the disk: cut to %llu",
            p->num, (unsigned long long)count, (unsigned long long)lba,
            (unsigned long long)(s->sectors - lba));
    count = s->sectors - lba;
  }
  p->start = lba * SECTOR;
  p->len = count * SECTOR;
  return add(s, p);
}

/* ---- MBR --------------------------------------------------------------- */

static int mbr_is_extended(uint8_t type) { return type == 0x05 || type == 0x0f || type == 0x85; }

struct mbr_entry {
  uint8_t boot, type;
  uint32_t lba, count;
};

static void mbr_entries(const uint8_t *sec, struct mbr_entry ent[4]) {
  for (int i = 0; i < 4; i++) {
    const uint8_t *p = sec + 446 + 16 * i;
    ent[i].boot = p[0];
    ent[i].type = p[4];
    ent[i].lba = fs_le32(p + 8);
    ent[i].count = fs_le32(p + 12);
  }
}

static int mbr_signed(const uint8_t *sec) { return sec[510] == 0x55 && sec[511] == 0xaa; }

/* The logical partitions in the extended partition [first, first+size)
 * sectors. Each EBR holds a logical partition (relative to the EBR) and a
 * link to the next EBR (relative to the extended partition's start). Like
 * Linux, the first two slots of an EBR are trusted up to the end of the
 * disk (a partition past it is cut there), the last two only inside the
 * extended partition (they often hold garbage). */
static int mbr_logicals(struct scan *s, uint64_t first, uint64_t size) {
  uint64_t end = first + size;
  uint64_t ebr = first, *seen = NULL;
  size_t nseen = 0;
  int num = 5, rc = 0;
  uint8_t sec[SECTOR];
  struct err re;
  err_init(&re);
  while (num <= MAX_PARTS) {
    for (size_t i = 0; i < nseen; i++)
      if (seen[i] == ebr) {
        fs_warn(s->w,
                "extended partition: the chain of logical partitions loops back to sector "
                "%llu: stopped there",
                (unsigned long long)ebr);
        goto out;
      }
    if (nseen == MAX_EBRS) {
      fs_warn(s->w, "extended partition: more than %d links: stopped", MAX_EBRS);
      goto out;
    }
    uint64_t *ns = realloc(seen, (nseen + 1) * sizeof *ns);
    if (!ns) {
      err_set(s->e, 500, FS_EIO, "out of memory reading the partition table");
      rc = -1;
      goto out;
    }
    seen = ns;
    seen[nseen++] = ebr;
    if (vol_pread(s->disk, sec, SECTOR, ebr * SECTOR, &re) < 0) {
      fs_warn(s->w, "extended partition: cannot read the EBR at sector %llu: %s",
              (unsigned long long)ebr, re.message);
      goto out;
    }
    if (!mbr_signed(sec)) {
      if (ebr != first) /* an empty extended partition has no EBR at all */
        fs_warn(s->w, "extended partition: no 55AA signature in the EBR at sector %llu: stopped",
                (unsigned long long)ebr);
      goto out;
    }
    struct mbr_entry ent[4];
    mbr_entries(sec, ent);
    uint64_t next = 0;
    for (int i = 0; i < 4; i++) {
      if (ent[i].count == 0) continue;
      if (mbr_is_extended(ent[i].type)) {
        if (!next) next = first + ent[i].lba;
        continue;
      }
      uint64_t lba = ebr + ent[i].lba;
      if (i >= 2 && (lba >= end || ent[i].count > end - lba)) {
        fs_warn(s->w,
                "logical partition %d (%u sectors at %llu) is outside its extended "
                "partition: ignored",
                num, ent[i].count, (unsigned long long)lba);
        continue;
      }
      struct fs_part p = {.num = num, .mbr_type = ent[i].type};
      num++;
      if (add_sectors(s, &p, lba, ent[i].count) < 0) {
        rc = -1;
        goto out;
      }
      if (num > MAX_PARTS) break;
    }
    if (!next) break;
    if (next <= first || next >= end) {
      fs_warn(s->w,
              "extended partition: link to sector %llu is outside the extended partition: "
              "stopped",
              (unsigned long long)next);
      break;
    }
    ebr = next;
  }
out:
  free(seen);
  return rc;
}

static int mbr_scan(struct scan *s, const struct mbr_entry ent[4]) {
  int extended_done = 0;
  for (int i = 0; i < 4; i++) {
    if (ent[i].count == 0) continue;
    struct fs_part p = {.num = i + 1, .mbr_type = ent[i].type};
    if (!mbr_is_extended(ent[i].type)) {
      if (add_sectors(s, &p, ent[i].lba, ent[i].count) < 0) return -1;
      continue;
    }
    /* Linux makes the extended partition a device of 2 sectors (room for a
     * boot loader, none for a filesystem). */
    p.extended = 1;
    if (add_sectors(s, &p, ent[i].lba, ent[i].count < 2 ? ent[i].count : 2) < 0) return -1;
    if (extended_done) {
      fs_warn(s->w,
              "partition %d: a second extended partition: its logical partitions are "
              "ignored",
              i + 1);
      continue;
    }
    extended_done = 1;
    if (ent[i].lba >= s->sectors) continue; /* already warned */
    if (mbr_logicals(s, ent[i].lba, ent[i].count) < 0) return -1;
  }
  return 0;
}

/* ---- GPT --------------------------------------------------------------- */

static void guid_text(const uint8_t *g, char out[37]) {
  snprintf(out, 37, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", fs_le32(g), fs_le16(g + 4),
           fs_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

static int guid_zero(const uint8_t *g) {
  for (int i = 0; i < 16; i++)
    if (g[i]) return 0;
  return 1;
}

struct gpt {
  uint64_t my_lba, alt_lba, first_usable, last_usable, entries_lba;
  uint32_t nentries;
  uint8_t *entries; /* nentries * 128 bytes, malloc'd */
};

/* Read and check the GPT header at lba and its entry array; *why says what
 * is wrong. Returns 1 if valid, 0 if not, -1 when out of memory. */
static int gpt_read(struct scan *s, uint64_t lba, struct gpt *g, char *why, size_t whylen) {
  uint8_t h[SECTOR];
  struct err re;
  err_init(&re);
  memset(g, 0, sizeof *g);
  if (lba < 1 || lba >= s->sectors) {
    snprintf(why, whylen, "header sector %llu is outside the disk", (unsigned long long)lba);
    return 0;
  }
  if (vol_pread(s->disk, h, SECTOR, lba * SECTOR, &re) < 0) {
    snprintf(why, whylen, "cannot read sector %llu: %.150s", (unsigned long long)lba, re.message);
    return 0;
  }
  if (memcmp(h, "EFI PART", 8) != 0) {
    snprintf(why, whylen, "no EFI PART signature at sector %llu", (unsigned long long)lba);
    return 0;
  }
  uint32_t hsize = fs_le32(h + 12);
  if (hsize < 92 || hsize > SECTOR) {
    snprintf(why, whylen, "header size %u is invalid", hsize);
    return 0;
  }
  uint32_t crc = fs_le32(h + 16);
  uint8_t tmp[SECTOR];
  memcpy(tmp, h, hsize);
  memset(tmp + 16, 0, 4);
  if (~fs_crc32(~0u, tmp, hsize) != crc) {
    snprintf(why, whylen, "header CRC mismatch at sector %llu", (unsigned long long)lba);
    return 0;
  }
  g->my_lba = fs_le64(h + 24);
  g->alt_lba = fs_le64(h + 32);
  g->first_usable = fs_le64(h + 40);
  g->last_usable = fs_le64(h + 48);
  g->entries_lba = fs_le64(h + 72);
  g->nentries = fs_le32(h + 80);
  uint32_t esize = fs_le32(h + 84), ecrc = fs_le32(h + 88);
  uint64_t last = s->sectors - 1;
  if (g->my_lba != lba) {
    snprintf(why, whylen, "header at sector %llu says it is at sector %llu",
             (unsigned long long)lba, (unsigned long long)g->my_lba);
    return 0;
  }
  if (g->first_usable > last || g->last_usable > last || g->last_usable < g->first_usable) {
    snprintf(why, whylen, "usable sectors %llu-%llu do not fit the disk (%llu sectors)",
             (unsigned long long)g->first_usable, (unsigned long long)g->last_usable,
             (unsigned long long)s->sectors);
    return 0;
  }
  if (esize != GPT_ENTRY_SIZE) {
    snprintf(why, whylen, "partition entry size %u is not 128", esize);
    return 0;
  }
  if (g->nentries == 0 || g->nentries > GPT_MAX_ENTRIES) {
    snprintf(why, whylen, "%u partition entries is absurd", g->nentries);
    return 0;
  }
  size_t bytes = (size_t)g->nentries * GPT_ENTRY_SIZE;
  uint64_t sectors = (bytes + SECTOR - 1) / SECTOR;
  if (g->entries_lba < 1 || g->entries_lba >= s->sectors || sectors > s->sectors - g->entries_lba) {
    snprintf(why, whylen, "partition entries at sector %llu do not fit the disk",
             (unsigned long long)g->entries_lba);
    return 0;
  }
  g->entries = malloc(bytes);
  if (!g->entries) {
    err_set(s->e, 500, FS_EIO, "out of memory reading the partition table");
    return -1;
  }
  if (vol_pread(s->disk, g->entries, bytes, g->entries_lba * SECTOR, &re) < 0) {
    snprintf(why, whylen, "cannot read the partition entries: %.150s", re.message);
    goto bad;
  }
  if (~fs_crc32(~0u, g->entries, bytes) != ecrc) {
    snprintf(why, whylen, "partition entries CRC mismatch (header at sector %llu)",
             (unsigned long long)lba);
    goto bad;
  }
  return 1;
bad:
  free(g->entries);
  g->entries = NULL;
  return 0;
}

static int gpt_scan(struct scan *s) {
  struct gpt pri, alt, *use = NULL;
  char why[256], whyalt[256];
  int rp = gpt_read(s, 1, &pri, why, sizeof why), ra = 0;
  if (rp < 0) return -1;
  uint64_t alt_lba = rp ? pri.alt_lba : s->sectors - 1;
  ra = gpt_read(s, alt_lba, &alt, whyalt, sizeof whyalt);
  if (ra < 0) {
    free(pri.entries);
    return -1;
  }
  if (rp) {
    use = &pri;
    if (!ra) fs_warn(s->w, "GPT: the backup header is damaged (%s)", whyalt);
  } else if (ra) {
    fs_warn(s->w, "GPT: the primary header is damaged (%s): using the backup header", why);
    use = &alt;
  } else {
    fs_warn(s->w, "GPT: both headers are damaged (%s; backup: %s): no partitions", why, whyalt);
    return 0;
  }
  uint64_t last = s->sectors - 1;
  int rc = 0;
  for (uint32_t i = 0; i < use->nentries && i < MAX_PARTS - 1; i++) {
    const uint8_t *en = use->entries + (size_t)i * GPT_ENTRY_SIZE;
    if (guid_zero(en)) continue;
    uint64_t first = fs_le64(en + 32), end = fs_le64(en + 40);
    if (first > last || end > last || end < first) {
      fs_warn(s->w, "GPT partition %u: sectors %llu-%llu do not fit the disk: ignored", i + 1,
              (unsigned long long)first, (unsigned long long)end);
      continue;
    }
    struct fs_part p = {.num = (int)i + 1};
    guid_text(en, p.gpt_type);
    if (add_sectors(s, &p, first, end - first + 1) < 0) {
      rc = -1;
      break;
    }
  }
  free(pri.entries);
  free(alt.entries);
  return rc;
}

/* ---- the table --------------------------------------------------------- */

static int cmp_num(const void *a, const void *b) {
  const struct fs_part *x = a, *y = b;
  return (x->num > y->num) - (x->num < y->num);
}

int fs_part_scan(struct vol *disk, int *kind, struct fs_part **parts, size_t *n,
                 struct fs_warnings *w, struct err *e) {
  struct scan s = {.disk = disk, .sectors = vol_size(disk) / SECTOR, .w = w, .e = e};
  *kind = FS_PT_NONE, *parts = NULL, *n = 0;
  if (s.sectors < 2) return 0;
  uint8_t sec[SECTOR];
  struct err re;
  err_init(&re);
  if (vol_pread(disk, sec, SECTOR, 0, &re) < 0) {
    fs_warn(w, "cannot read the partition table: %s", re.message);
    return 0;
  }
  if (!mbr_signed(sec)) return 0;
  struct mbr_entry ent[4];
  mbr_entries(sec, ent);
  /* Boot indicators other than 0 and 0x80: a boot sector (a filesystem on
   * the whole disk), not a partition table. */
  for (int i = 0; i < 4; i++)
    if (ent[i].boot != 0 && ent[i].boot != 0x80) return 0;
  int protective = 0, has_ee = 0;
  for (int i = 0; i < 4; i++)
    if (ent[i].type == 0xee) {
      has_ee = 1;
      if (ent[i].lba == 1) protective = 1;
    }
  int rc;
  if (protective) {
    *kind = FS_PT_GPT;
    rc = gpt_scan(&s);
  } else if (has_ee) {
    fs_warn(w, "MBR: a GPT protective partition that does not start at sector 1: no partitions");
    return 0;
  } else {
    *kind = FS_PT_MBR;
    rc = mbr_scan(&s, ent);
  }
  if (rc < 0) {
    free(s.parts);
    return -1;
  }
  if (s.n > 1) qsort(s.parts, s.n, sizeof *s.parts, cmp_num);
  *parts = s.parts, *n = s.n;
  return 0;
}
