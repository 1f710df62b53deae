/* disk.c — a disk opened from a struct vol the way guestfish sees it: the
 * device table (/dev/sda, its partitions, the LVs), the names guestfish
 * accepts for them, list-devices / list-partitions / list-filesystems / lvs /
 * vgs, and the small helpers the whole fs module shares (volume views, the
 * CRC-32 of GPT and LVM2, warnings). Partition tables are read by part.c,
 * LVM2 by lvm.c, signatures by probe.c. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fs/fs_int.h"

/* ---- CRC-32 ------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}

uint32_t fs_crc32(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = buf;
  while (len--)
    crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

/* ---- volume views --------------------------------------------------------- */

static int view_check(const struct vol *v, uint64_t off, uint64_t len, int write, struct err *e) {
  if (off > v->size || len > v->size - off) {
    err_set(e, 400, "VOL_OUT_OF_RANGE",
            "I/O of %llu bytes at offset %llu is beyond the end of the volume (%llu bytes)",
            (unsigned long long)len, (unsigned long long)off, (unsigned long long)v->size);
    return -1;
  }
  if (write && v->read_only) {
    err_set(e, 400, "VOL_READ_ONLY", "cannot write: the volume is read-only");
    return -1;
  }
  return 0;
}

struct range {
  struct vol v;
  struct vol *parent;
  uint64_t off;
};

static int range_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct range *r = (struct range *)v;
  if (view_check(v, off, len, 0, e) < 0) return -1;
  return vol_pread(r->parent, buf, len, r->off + off, e);
}

static int range_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct range *r = (struct range *)v;
  if (view_check(v, off, len, 1, e) < 0) return -1;
  return vol_pwrite(r->parent, buf, len, r->off + off, e);
}

static int range_flush(struct vol *v, struct err *e) {
  return vol_flush(((struct range *)v)->parent, e);
}

static int range_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct range *r = (struct range *)v;
  if (view_check(v, off, len, 1, e) < 0) return -1;
  return vol_discard(r->parent, r->off + off, len, e);
}

static uint64_t range_allocated(struct vol *v) { return 0; }

static int range_block_status(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                              struct err *e) {
  struct range *r = (struct range *)v;
  if (view_check(v, off, len, 0, e) < 0) return -1;
  if (!r->parent->ops->block_status) {
    *run = len;
    return VOL_MAPPED;
  }
  return r->parent->ops->block_status(r->parent, r->off + off, len, run, e);
}

static void range_close(struct vol *v) { free(v); }

static const struct vol_ops range_ops = {
    .pread = range_pread,
    .pwrite = range_pwrite,
    .flush = range_flush,
    .discard = range_discard,
    .allocated = range_allocated,
    .block_status = range_block_status,
    .close = range_close,
};

int fs_vol_range(struct vol *parent, uint64_t off, uint64_t len, int read_only, struct vol **out,
                 struct err *e) {
  *out = NULL;
  if (off > vol_size(parent) || len > vol_size(parent) - off) {
    err_set(e, 400, FS_EINVAL, "a view of %llu bytes at %llu does not fit the volume (%llu bytes)",
            (unsigned long long)len, (unsigned long long)off, (unsigned long long)vol_size(parent));
    return -1;
  }
  struct range *r = calloc(1, sizeof *r);
  if (!r) {
    err_set(e, 500, FS_EIO, "out of memory");
    return -1;
  }
  r->v.ops = &range_ops;
  r->v.size = len;
  r->v.read_only = read_only || vol_read_only(parent);
  r->parent = parent;
  r->off = off;
  *out = &r->v;
  return 0;
}

struct mem {
  struct vol v;
  uint8_t *buf;
};

static int mem_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  if (view_check(v, off, len, 0, e) < 0) return -1;
  memcpy(buf, ((struct mem *)v)->buf + off, len);
  return 0;
}

static int mem_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  if (view_check(v, off, len, 1, e) < 0) return -1;
  memcpy(((struct mem *)v)->buf + off, buf, len);
  return 0;
}

static int mem_flush(struct vol *v, struct err *e) { return 0; }

static int mem_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  if (view_check(v, off, len, 1, e) < 0) return -1;
  memset(((struct mem *)v)->buf + off, 0, len);
  return 0;
}

static uint64_t mem_allocated(struct vol *v) { return v->size; }

static const struct vol_ops mem_ops = {
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .discard = mem_discard,
    .allocated = mem_allocated,
    .close = range_close,
};

int fs_vol_mem(void *buf, size_t len, int read_only, struct vol **out, struct err *e) {
  struct mem *m = calloc(1, sizeof *m);
  *out = NULL;
  if (!m) {
    err_set(e, 500, FS_EIO, "out of memory");
    return -1;
  }
  m->v.ops = &mem_ops;
  m->v.size = len;
  m->v.read_only = read_only;
  m->buf = buf;
  *out = &m->v;
  return 0;
}

int fs_read_at(struct vol *v, void *buf, size_t len, uint64_t off, const char *what,
               struct err *e) {
  if (off > vol_size(v) || len > vol_size(v) - off) {
    err_set(e, 500, FS_EIO, "%s: %zu bytes at offset %llu are beyond the end of the device", what,
            len, (unsigned long long)off);
    return -1;
  }
  if (vol_pread(v, buf, len, off, e) < 0) {
    char msg[sizeof e->message];
    snprintf(msg, sizeof msg, "%s", e->message);
    err_set(e, 500, FS_EIO, "%s: %s", what, msg);
    return -1;
  }
  return 0;
}

/* ---- warnings --------------------------------------------------------------- */

void fs_warn(struct fs_warnings *w, const char *fmt, ...) {
  if (w->n >= 1000) return; /* a hostile disk does not get to fill memory */
  if (w->n + 2 > w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 8;
    char **nv = realloc(w->v, cap * sizeof *nv);
    if (!nv) return;
    w->v = nv, w->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  if (!s) return;
  w->v[w->n++] = s;
  w->v[w->n] = NULL;
}

/* ---- the disk ---------------------------------------------------------------- */

struct dev {
  char *name; /* "/dev/sda", "/dev/sda1" */
  struct vol *vol;
  struct fs_part part; /* partitions */
};

struct fs_disk {
  struct vol *vol; /* the caller's */
  int read_only;
  int table;        /* FS_PT_* */
  struct dev *devs; /* [0] the disk, then the partitions by number */
  size_t ndevs;
  struct fs_lvm *lvm;
  struct fs_warnings w;
};

#define DISK_NAME "/dev/sda"

static void disk_free(struct fs_disk *d) {
  if (!d) return;
  fs_lvm_free(d->lvm);
  for (size_t i = 0; i < d->ndevs; i++) {
    free(d->devs[i].name);
    vol_close(d->devs[i].vol);
  }
  free(d->devs);
  for (size_t i = 0; i < d->w.n; i++)
    free(d->w.v[i]);
  free(d->w.v);
  free(d);
}

int fs_disk_open(struct vol *vol, int read_only, struct fs_disk **out, struct err *e) {
  *out = NULL;
  struct fs_disk *d = calloc(1, sizeof *d);
  struct fs_part *parts = NULL;
  struct fs_pv_candidate *cand = NULL;
  size_t nparts = 0;
  if (!d) goto nomem;
  d->vol = vol;
  d->read_only = read_only || vol_read_only(vol);
  struct vol *whole;
  if (fs_vol_range(vol, 0, vol_size(vol), d->read_only, &whole, e) < 0) goto fail;
  d->devs = calloc(1, sizeof *d->devs);
  if (!d->devs) {
    vol_close(whole);
    goto nomem;
  }
  d->devs[0].vol = whole;
  d->ndevs = 1;
  if (!(d->devs[0].name = strdup(DISK_NAME))) goto nomem;
  if (fs_part_scan(whole, &d->table, &parts, &nparts, &d->w, e) < 0) goto fail;
  struct dev *nd = realloc(d->devs, (nparts + 1) * sizeof *nd);
  if (!nd) goto nomem;
  d->devs = nd;
  for (size_t i = 0; i < nparts; i++) {
    struct dev *dv = &d->devs[d->ndevs];
    memset(dv, 0, sizeof *dv);
    dv->part = parts[i];
    if (fs_vol_range(vol, parts[i].start, parts[i].len, d->read_only, &dv->vol, e) < 0) goto fail;
    d->ndevs++;
    if (!(dv->name = util_strdup_printf(DISK_NAME "%d", parts[i].num))) goto nomem;
  }
  /* LVM2 PVs: on the partitions, or on the whole disk if it has none (lvm2
   * skips a partitioned disk itself) */
  cand = calloc(d->ndevs, sizeof *cand);
  if (!cand) goto nomem;
  size_t nc = 0;
  for (size_t i = d->ndevs > 1 ? 1 : 0; i < d->ndevs; i++) {
    if (d->devs[i].part.extended) continue;
    cand[nc].name = d->devs[i].name;
    cand[nc].vol = d->devs[i].vol;
    cand[nc].disk_off = d->devs[i].part.start;
    nc++;
  }
  if (fs_lvm_scan(vol, d->read_only, cand, nc, &d->lvm, &d->w, e) < 0) goto fail;
  free(cand);
  free(parts);
  *out = d;
  return 0;
nomem:
  err_set(e, 500, FS_EIO, "out of memory opening the disk");
fail:
  free(cand);
  free(parts);
  disk_free(d);
  return -1;
}

void fs_disk_close(struct fs_disk *d) { disk_free(d); }

int fs_disk_read_only(const struct fs_disk *d) { return d->read_only; }

const char *const *fs_disk_warnings(struct fs_disk *d) {
  static const char *const none[] = {NULL};
  return d->w.v ? (const char *const *)d->w.v : none;
}

void fs_strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

static char **strv_new(size_t n) { return calloc(n + 1, sizeof(char *)); }

char **fs_list_devices(struct fs_disk *d) {
  char **v = strv_new(1);
  if (v && !(v[0] = strdup(DISK_NAME))) {
    free(v);
    return NULL;
  }
  return v;
}

char **fs_list_partitions(struct fs_disk *d) {
  char **v = strv_new(d->ndevs);
  if (!v) return NULL;
  for (size_t i = 1; i < d->ndevs; i++)
    if (!(v[i - 1] = strdup(d->devs[i].name))) {
      fs_strv_free(v);
      return NULL;
    }
  return v;
}

char **fs_lvs(struct fs_disk *d) { return fs_lvm_lvs(d->lvm); }
char **fs_vgs(struct fs_disk *d) { return fs_lvm_vgs(d->lvm); }

int fs_vgrename(struct fs_disk *d, const char *from, const char *to, struct err *e) {
  return fs_lvm_vgrename(d->lvm, from, to, e);
}

/* "/dev/sda", "/dev/vda3", "/dev/hda", "/dev/xvda12": the disk (part 0) or
 * partition number; -1 if the name is not of that shape. */
static int disk_alias(const char *name) {
  static const char *const prefixes[] = {"/dev/sd", "/dev/vd", "/dev/hd", "/dev/xvd"};
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
    size_t n = strlen(prefixes[i]);
    if (strncmp(name, prefixes[i], n) != 0 || name[n] != 'a') continue;
    const char *p = name + n + 1;
    if (!*p) return 0;
    if (*p < '1' || *p > '9' || strlen(p) > 4) return -1;
    int num = 0;
    for (; *p; p++) {
      if (*p < '0' || *p > '9') return -1;
      num = num * 10 + (*p - '0');
    }
    return num;
  }
  return -1;
}

static struct dev *find_dev(struct fs_disk *d, const char *name) {
  int num = disk_alias(name);
  if (num < 0) return NULL;
  if (num == 0) return &d->devs[0];
  for (size_t i = 1; i < d->ndevs; i++)
    if (d->devs[i].part.num == num) return &d->devs[i];
  return NULL;
}

static void no_device(const char *name, struct err *e) {
  err_set(e, 404, FS_ENOENT, "%s: No such file or directory", name ? name : "(null)");
}

struct vol *fs_device(struct fs_disk *d, const char *name, struct err *e) {
  if (!name) return no_device(name, e), NULL;
  struct dev *dv = find_dev(d, name);
  if (dv) return dv->vol;
  struct vol *lv = fs_lvm_find(d->lvm, name, NULL);
  if (lv) return lv;
  no_device(name, e);
  return NULL;
}

char *fs_device_canonical(struct fs_disk *d, const char *name, struct err *e) {
  if (!name) return no_device(name, e), NULL;
  struct dev *dv = find_dev(d, name);
  char *c = NULL;
  if (dv) {
    c = strdup(dv->name);
  } else if (!fs_lvm_find(d->lvm, name, &c)) {
    no_device(name, e);
    return NULL;
  }
  if (!c) err_set(e, 500, FS_EIO, "out of memory");
  return c;
}

/* GPT partition types guestfish never lists as filesystems (Windows LDM
 * metadata and data, Microsoft reserved, Windows snapshot). */
static int gpt_container(const char *type) {
  static const char *const skip[] = {
      "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3",
      "AF9B60A0-1431-4F62-BC68-3311714A69AD",
      "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",
      "CADDEBF1-4400-4DE8-B103-12117DCF3CCD",
  };
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
    if (strcmp(type, skip[i]) == 0) return 1;
  return 0;
}

/* list-filesystems keeps a device unless it is a member of something
 * (LVM2_member and the other "*_member" types) */
static int listed_type(const char *type) {
  size_t n = strlen(type);
  return !(n >= 7 && strcmp(type + n - 7, "_member") == 0);
}

int fs_list_filesystems(struct fs_disk *d, char ***devices, char ***types) {
  char **lvs = fs_lvm_lvs(d->lvm);
  size_t nlvs = 0;
  while (lvs && lvs[nlvs])
    nlvs++;
  char **dv = strv_new(d->ndevs + nlvs), **ty = strv_new(d->ndevs + nlvs);
  size_t n = 0;
  *devices = *types = NULL;
  if (!lvs || !dv || !ty) goto nomem;
  for (size_t i = d->ndevs > 1 ? 1 : 0; i < d->ndevs; i++) {
    struct dev *x = &d->devs[i];
    if (x->part.extended || gpt_container(x->part.gpt_type)) continue;
    const char *t = fs_probe(x->vol);
    if (!listed_type(t)) continue;
    dv[n] = strdup(x->name), ty[n] = strdup(t);
    if (!dv[n] || !ty[n++]) goto nomem;
  }
  for (size_t i = 0; i < nlvs; i++) {
    const char *t = fs_probe(fs_lvm_find(d->lvm, lvs[i], NULL));
    if (!listed_type(t)) continue;
    dv[n] = strdup(lvs[i]), ty[n] = strdup(t);
    if (!dv[n] || !ty[n++]) goto nomem;
  }
  fs_strv_free(lvs);
  *devices = dv, *types = ty;
  return (int)n;
nomem:
  fs_strv_free(lvs);
  fs_strv_free(dv);
  fs_strv_free(ty);
  return -1;
}
