/* fuzz_fs_disk.c — libFuzzer target for the disk layer of src/fs: MBR and
 * GPT partition tables, LVM2 PV labels, metadata areas and text metadata,
 * LV mapping, signatures, labels, and vgrename's writes, all on a memory
 * volume built from the input. Built and run by `make fuzz`.
 *
 * Input: the disk size (u32 little-endian, at most 8 MiB), then runs of
 * (u32 offset, u16 length, bytes) written into the otherwise zero disk, so
 * that a small input can place a partition table, EBRs and PV labels far
 * apart. Seeds (tests/fuzz/corpus/fuzz_fs_disk) are real images made by
 * sfdisk, mkfs and lvm2: tests/unit/fs_disk_fixtures.py --fuzz-seeds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "fs/fs_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DISK (8u << 20)

static void exercise(struct fs_disk *d, int writable) {
  struct err e;
  err_init(&e);
  fs_strv_free(fs_list_devices(d));
  char **dev = NULL, **type = NULL;
  int n = fs_list_filesystems(d, &dev, &type);
  for (int i = 0; i < n; i++) {
    struct vol *v = fs_device(d, dev[i], &e);
    if (!v) __builtin_trap(); /* every listed device can be opened */
    char *c = fs_device_canonical(d, dev[i], &e);
    if (!c || strcmp(c, dev[i]) != 0) __builtin_trap(); /* and is its own canonical name */
    free(c);
    if (strcmp(fs_probe(v), type[i]) != 0) __builtin_trap();
    char *label, *uuid;
    if (fs_label_uuid(v, &label, &uuid) == 0) {
      free(label);
      free(uuid);
    }
    uint8_t buf[4096];
    size_t len = vol_size(v) < sizeof buf ? (size_t)vol_size(v) : sizeof buf;
    if (vol_pread(v, buf, len, 0, &e) < 0) __builtin_trap();
    if (vol_pread(v, buf, len, vol_size(v) - len, &e) < 0) __builtin_trap();
  }
  fs_strv_free(dev);
  fs_strv_free(type);
  char **parts = fs_list_partitions(d);
  for (size_t i = 0; parts && parts[i]; i++) {
    struct vol *v = fs_device(d, parts[i], &e);
    if (!v) __builtin_trap();
    (void)fs_probe(v);
  }
  fs_strv_free(parts);
  char **lvs = fs_lvs(d);
  for (size_t i = 0; lvs && lvs[i]; i++) {
    struct vol *v = fs_device(d, lvs[i], &e);
    if (!v) __builtin_trap();
    /* a write across the first stripe boundaries of each LV */
    uint8_t buf[70000];
    size_t len = vol_size(v) < sizeof buf ? (size_t)vol_size(v) : sizeof buf;
    if (vol_pread(v, buf, len, 0, &e) < 0) __builtin_trap();
    if (writable && vol_pwrite(v, buf, len, 0, &e) < 0) __builtin_trap();
  }
  fs_strv_free(lvs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  uint32_t disk = fs_le32(data);
  if (disk > MAX_DISK) disk = MAX_DISK;
  uint8_t *img = calloc(1, disk ? disk : 1);
  if (!img) return 0;
  size_t pos = 4;
  while (pos + 6 <= size) {
    uint32_t off = fs_le32(data + pos);
    size_t len = fs_le16(data + pos + 4);
    pos += 6;
    if (len > size - pos) len = size - pos;
    if (off < disk) memcpy(img + off, data + pos, len > disk - off ? disk - off : len);
    pos += len;
  }
  struct vol *v;
  struct fs_disk *d;
  struct err e;
  err_init(&e);
  if (fs_vol_mem(img, disk, 0, &v, &e) < 0) goto out;
  if (fs_disk_open(v, 0, &d, &e) == 0) {
    exercise(d, 1);
    char **vgs = fs_vgs(d);
    if (vgs && vgs[0]) {
      err_init(&e);
      int rc = fs_vgrename(d, vgs[0], "fuzz-vg", &e);
      if (rc == 0) {
        char **after = fs_vgs(d);
        int found = 0;
        for (size_t i = 0; after && after[i]; i++)
          found |= strcmp(after[i], "fuzz-vg") == 0;
        if (!found) __builtin_trap();
        fs_strv_free(after);
      }
      fs_disk_close(d);
      /* read back what vgrename wrote */
      if (fs_disk_open(v, 1, &d, &e) == 0) {
        exercise(d, 0);
        fs_disk_close(d);
      }
    } else {
      fs_disk_close(d);
    }
    fs_strv_free(vgs);
  }
  vol_close(v);
out:
  free(img);
  return 0;
}
