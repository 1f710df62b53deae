/* lvm.c — LVM2 read in-process: PV labels, metadata areas, the text
 * metadata of each volume group, linear and striped logical volumes as
 * struct vol, and vgrename written the way lvm2 writes metadata.
 *
 * On-disk layout (lvm2's format_text, documented in src/fs/README.md):
 *   label      one of sectors 0-3: "LABELONE", its sector number, a CRC of
 *              the rest of the sector, the offset of the pv_header, "LVM2 001"
 *   pv_header  PV UUID (32 chars), device size, a zero-terminated list of
 *              data areas, then one of metadata areas (offset, size in bytes)
 *   mda_header at each metadata area: CRC, magic " LVM2 x[5A%r0N*>",
 *              version 1, its own offset and size, raw_locn[] = (offset
 *              from the area's start, size incl. the final NUL, CRC, flags)
 *   text       the VG's metadata: a circular buffer after the 512-byte
 *              header; one copy may wrap from the end back to byte 512
 * Every CRC is lvm2's: CRC-32 with the initial value 0xf597a6cf and no final
 * inversion. Only VGs whose PVs are all present are activated; only the
 * "striped" segment type (linear is striped with one stripe) is mapped. */
#include <stdio.h>
#include <stdlib.h>

#include "fs/fs_int.h"

#define LVM_CRC_INIT 0xf597a6cfu
#define MDA_HEADER_SIZE 512u
#define MDA_MAGIC " LVM2 x[5A%r0N*>"
#define RAW_LOCN_IGNORED 1u
#define MAX_TEXT (16u << 20) /* metadata text we accept */
#define MAX_DEPTH 32
#define MAX_NODES 200000
#define MAX_STRIPES 128
#define NAME_MAX_LEN 127

/* ======================================================================= */
/* the text format                                                         */
/* ======================================================================= */

enum { N_SECTION, N_INT, N_STR, N_ARRAY, N_FLOAT };

struct node {
  char *key; /* NULL for array items */
  int kind;
  int64_t num;
  char *str;
  size_t key_off, key_len; /* where the key is in the text */
  size_t val_off, val_len; /* where the value is */
  struct node *child, *next;
};

static void node_free(struct node *n) {
  while (n) {
    struct node *next = n->next;
    node_free(n->child);
    free(n->key);
    free(n->str);
    free(n);
    n = next;
  }
}

struct parser {
  const char *t;
  size_t len, pos;
  size_t nodes;
  char why[160];
};

static void skip_blank(struct parser *p) {
  while (p->pos < p->len) {
    char c = p->t[p->pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      p->pos++;
    } else if (c == '#') {
      while (p->pos < p->len && p->t[p->pos] != '\n')
        p->pos++;
    } else {
      break;
    }
  }
}

static int ident_char(char c) { return c && !strchr(" \t\n\r\f\v{}[]=\",#", c); }

static struct node *new_node(struct parser *p) {
  if (++p->nodes > MAX_NODES) {
    snprintf(p->why, sizeof p->why, "more than %d entries", MAX_NODES);
    return NULL;
  }
  struct node *n = calloc(1, sizeof *n);
  if (!n) snprintf(p->why, sizeof p->why, "out of memory");
  return n;
}

static int parse_value(struct parser *p, struct node *n, int in_array);

static int parse_string(struct parser *p, struct node *n) {
  size_t start = ++p->pos, cap = 16, len = 0;
  char *s = malloc(cap);
  if (!s) return snprintf(p->why, sizeof p->why, "out of memory"), -1;
  while (p->pos < p->len && p->t[p->pos] != '"') {
    char c = p->t[p->pos++];
    if (c == '\\') {
      if (p->pos >= p->len) break;
      c = p->t[p->pos++];
    }
    if (c == 0) break;
    if (len + 2 > cap) {
      char *ns = realloc(s, cap *= 2);
      if (!ns) {
        free(s);
        return snprintf(p->why, sizeof p->why, "out of memory"), -1;
      }
      s = ns;
    }
    s[len++] = c;
  }
  if (p->pos >= p->len || p->t[p->pos] != '"') {
    free(s);
    snprintf(p->why, sizeof p->why, "unterminated string at byte %zu", start - 1);
    return -1;
  }
  p->pos++;
  s[len] = 0;
  n->kind = N_STR;
  n->str = s;
  return 0;
}

static int parse_number(struct parser *p, struct node *n) {
  size_t start = p->pos;
  int neg = 0, digits = 0, frac = 0;
  uint64_t v = 0;
  if (p->pos < p->len && (p->t[p->pos] == '-' || p->t[p->pos] == '+')) neg = p->t[p->pos++] == '-';
  while (p->pos < p->len && ((p->t[p->pos] >= '0' && p->t[p->pos] <= '9') || p->t[p->pos] == '.')) {
    char c = p->t[p->pos++];
    if (c == '.') {
      if (frac++) break;
      continue;
    }
    digits++;
    if (!frac) {
      if (v > (UINT64_C(1) << 62) / 10) {
        snprintf(p->why, sizeof p->why, "number too large at byte %zu", start);
        return -1;
      }
      v = v * 10 + (uint64_t)(c - '0');
    }
  }
  if (!digits || (p->pos < p->len && ident_char(p->t[p->pos]))) {
    snprintf(p->why, sizeof p->why, "bad value at byte %zu", start);
    return -1;
  }
  n->kind = frac ? N_FLOAT : N_INT;
  n->num = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

static int parse_value(struct parser *p, struct node *n, int in_array) {
  skip_blank(p);
  n->val_off = p->pos;
  if (p->pos >= p->len) {
    snprintf(p->why, sizeof p->why, "missing value at the end");
    return -1;
  }
  int rc;
  char c = p->t[p->pos];
  if (c == '"') {
    rc = parse_string(p, n);
  } else if (c == '[' && !in_array) {
    p->pos++;
    n->kind = N_ARRAY;
    struct node **tail = &n->child;
    for (;;) {
      skip_blank(p);
      if (p->pos < p->len && p->t[p->pos] == ']') {
        p->pos++;
        break;
      }
      struct node *item = new_node(p);
      if (!item) return -1;
      *tail = item, tail = &item->next;
      if (parse_value(p, item, 1) < 0) return -1;
      skip_blank(p);
      if (p->pos < p->len && p->t[p->pos] == ',')
        p->pos++;
      else if (!(p->pos < p->len && p->t[p->pos] == ']')) {
        snprintf(p->why, sizeof p->why, "unterminated array at byte %zu", n->val_off);
        return -1;
      }
    }
    rc = 0;
  } else {
    rc = parse_number(p, n);
  }
  n->val_len = p->pos - n->val_off;
  return rc;
}

/* key = value | key { ... } until '}' (depth > 0) or the end */
static int parse_body(struct parser *p, struct node **list, int depth) {
  if (depth > MAX_DEPTH) {
    snprintf(p->why, sizeof p->why, "sections nested deeper than %d", MAX_DEPTH);
    return -1;
  }
  struct node **tail = list;
  for (;;) {
    skip_blank(p);
    if (p->pos >= p->len || p->t[p->pos] == 0) {
      if (depth) {
        snprintf(p->why, sizeof p->why, "a section is not closed");
        return -1;
      }
      return 0;
    }
    if (p->t[p->pos] == '}') {
      if (!depth) {
        snprintf(p->why, sizeof p->why, "unexpected '}' at byte %zu", p->pos);
        return -1;
      }
      p->pos++;
      return 0;
    }
    size_t k = p->pos;
    while (p->pos < p->len && ident_char(p->t[p->pos]))
      p->pos++;
    if (p->pos == k) {
      snprintf(p->why, sizeof p->why, "unexpected '%c' at byte %zu", p->t[k], k);
      return -1;
    }
    struct node *n = new_node(p);
    if (!n) return -1;
    *tail = n, tail = &n->next;
    n->key_off = k, n->key_len = p->pos - k;
    n->key = strndup(p->t + k, n->key_len);
    if (!n->key) return snprintf(p->why, sizeof p->why, "out of memory"), -1;
    skip_blank(p);
    if (p->pos < p->len && p->t[p->pos] == '{') {
      p->pos++;
      n->kind = N_SECTION;
      if (parse_body(p, &n->child, depth + 1) < 0) return -1;
    } else if (p->pos < p->len && p->t[p->pos] == '=') {
      p->pos++;
      if (parse_value(p, n, 0) < 0) return -1;
    } else {
      snprintf(p->why, sizeof p->why, "expected '=' or '{' after \"%.40s\"", n->key);
      return -1;
    }
  }
}

static struct node *find(const struct node *sec, const char *key) {
  for (struct node *n = sec ? sec->child : NULL; n; n = n->next)
    if (n->key && strcmp(n->key, key) == 0) return n;
  return NULL;
}

static int get_int(const struct node *sec, const char *key, int64_t *v) {
  struct node *n = find(sec, key);
  if (!n || n->kind != N_INT) return -1;
  *v = n->num;
  return 0;
}

static int get_u64(const struct node *sec, const char *key, uint64_t *v) {
  int64_t x;
  if (get_int(sec, key, &x) < 0 || x < 0) return -1;
  *v = (uint64_t)x;
  return 0;
}

static const char *get_str(const struct node *sec, const char *key) {
  struct node *n = find(sec, key);
  return n && n->kind == N_STR ? n->str : NULL;
}

static int has_flag(const struct node *sec, const char *key, const char *flag) {
  struct node *n = find(sec, key);
  if (!n || n->kind != N_ARRAY) return 0;
  for (struct node *i = n->child; i; i = i->next)
    if (i->kind == N_STR && strcmp(i->str, flag) == 0) return 1;
  return 0;
}

/* ======================================================================= */
/* names                                                                   */
/* ======================================================================= */

/* lvm2's rule for VG and LV names: [a-zA-Z0-9+_.-], not starting with '-',
 * not "." or "..", at most 127 characters. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > NAME_MAX_LEN || s[0] == '-' || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
  for (const char *c = s; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '+' || *c == '_' || *c == '.' || *c == '-'))
      return 0;
  return 1;
}

/* A VG name is also a directory in /dev: not "mapper" (lvm2 refuses names
 * of existing /dev entries; this is the one a VG would hide here). */
static int vg_name_ok(const char *s) { return name_ok(s) && strcmp(s, "mapper") != 0; }

/* "/dev/mapper/" name part: each '-' doubled, VG and LV joined by '-'. */
static char *mapper_name(const char *vg, const char *lv) {
  size_t n = 0;
  for (const char *c = vg; *c; c++)
    n += *c == '-' ? 2 : 1;
  for (const char *c = lv; *c; c++)
    n += *c == '-' ? 2 : 1;
  char *s = malloc(n + 2), *o = s;
  if (!s) return NULL;
  for (const char *c = vg; *c; c++)
    if ((*o++ = *c) == '-') *o++ = '-';
  *o++ = '-';
  for (const char *c = lv; *c; c++)
    if ((*o++ = *c) == '-') *o++ = '-';
  *o = 0;
  return s;
}

/* ======================================================================= */
/* logical volumes as struct vol                                           */
/* ======================================================================= */

struct lv_seg {
  uint64_t start, len; /* bytes in the LV */
  uint32_t nstripes;
  uint64_t chunk;       /* stripe size in bytes (striped), else len */
  uint64_t *stripe_off; /* absolute disk offset of each stripe's first byte */
};

struct lv_vol {
  struct vol v;
  struct vol *disk;
  struct lv_seg *segs;
  size_t nsegs;
};

/* Map LV byte off to a disk offset; *run = bytes contiguous from there. */
static uint64_t lv_map(struct lv_vol *lv, uint64_t off, uint64_t len, uint64_t *run) {
  size_t lo = 0, hi = lv->nsegs;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (lv->segs[mid].start <= off)
      lo = mid;
    else
      hi = mid;
  }
  struct lv_seg *s = &lv->segs[lo];
  uint64_t o = off - s->start, n = s->len - o;
  uint64_t disk;
  if (s->nstripes == 1) {
    disk = s->stripe_off[0] + o;
  } else {
    uint64_t chunk = o / s->chunk, within = o % s->chunk;
    disk = s->stripe_off[chunk % s->nstripes] + (chunk / s->nstripes) * s->chunk + within;
    n = s->chunk - within;
  }
  *run = n < len ? n : len;
  return disk;
}

static int lv_check(struct vol *v, uint64_t off, uint64_t len, int write, struct err *e) {
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

static int lv_pread(struct vol *v, void *buf, size_t len, uint64_t off, struct err *e) {
  struct lv_vol *lv = (struct lv_vol *)v;
  if (lv_check(v, off, len, 0, e) < 0) return -1;
  char *p = buf;
  while (len) {
    uint64_t run, d = lv_map(lv, off, len, &run);
    if (vol_pread(lv->disk, p, run, d, e) < 0) return -1;
    p += run, off += run, len -= run;
  }
  return 0;
}

static int lv_pwrite(struct vol *v, const void *buf, size_t len, uint64_t off, struct err *e) {
  struct lv_vol *lv = (struct lv_vol *)v;
  if (lv_check(v, off, len, 1, e) < 0) return -1;
  const char *p = buf;
  while (len) {
    uint64_t run, d = lv_map(lv, off, len, &run);
    if (vol_pwrite(lv->disk, p, run, d, e) < 0) return -1;
    p += run, off += run, len -= run;
  }
  return 0;
}

static int lv_flush(struct vol *v, struct err *e) {
  return vol_flush(((struct lv_vol *)v)->disk, e);
}

static int lv_discard(struct vol *v, uint64_t off, uint64_t len, struct err *e) {
  struct lv_vol *lv = (struct lv_vol *)v;
  if (lv_check(v, off, len, 1, e) < 0) return -1;
  while (len) {
    uint64_t run, d = lv_map(lv, off, len, &run);
    if (vol_discard(lv->disk, d, run, e) < 0) return -1;
    off += run, len -= run;
  }
  return 0;
}

static uint64_t lv_allocated(struct vol *v) { return 0; }

static void lv_close(struct vol *v) {
  struct lv_vol *lv = (struct lv_vol *)v;
  if (!lv) return;
  for (size_t i = 0; i < lv->nsegs; i++)
    free(lv->segs[i].stripe_off);
  free(lv->segs);
  free(lv);
}

static const struct vol_ops lv_ops = {
    .pread = lv_pread,
    .pwrite = lv_pwrite,
    .flush = lv_flush,
    .discard = lv_discard,
    .allocated = lv_allocated,
    .close = lv_close,
};

/* ======================================================================= */
/* physical volumes, metadata areas, volume groups                         */
/* ======================================================================= */

struct mda {
  uint64_t off, size;           /* in the PV */
  uint8_t hdr[MDA_HEADER_SIZE]; /* as read, rewritten by vgrename */
  uint64_t text_off, text_size; /* raw_locn[0] */
  uint32_t text_crc, flags;
  int valid; /* a sound header */
};

struct pv {
  struct fs_pv_candidate c; /* a copy (the name and volume belong to the disk) */
  char uuid[33];
  struct mda *mdas;
  size_t nmdas;
};

struct lv {
  char *name;
  struct lv_vol *vol;
};

struct vg_pv {
  char *key; /* "pv0" */
  char uuid[33];
  uint64_t pe_start, pe_count; /* sectors, extents */
  struct pv *pv;               /* NULL if missing */
};

struct vg {
  char *name, *id;
  uint64_t seqno, extent; /* extent size in bytes */
  char *text;             /* the newest metadata text (NUL-terminated) */
  size_t text_len;        /* without the NUL */
  size_t name_off, name_len, seqno_off, seqno_len;
  struct vg_pv *pvs;
  size_t npvs;
  struct lv *lvs;
  size_t nlvs;
  int complete;
};

struct fs_lvm {
  struct vol *disk;
  int read_only;
  struct pv *pvs;
  size_t npvs;
  struct vg **vgs;
  size_t nvgs;
  struct fs_warnings *w;
  struct err *e;
};

static void oom(struct fs_lvm *l) { err_set(l->e, 500, FS_EIO, "out of memory reading LVM2"); }

/* The 32 characters of a PV UUID with lvm2's dashes removed. */
static int uuid_strip(const char *in, char out[33]) {
  size_t n = 0;
  for (const char *c = in; *c; c++) {
    if (*c == '-') continue;
    if (n == 32) return -1;
    out[n++] = *c;
  }
  out[n] = 0;
  return n == 32 ? 0 : -1;
}

/* The PV label in sectors 0-3 of a candidate: 1 found, 0 none, -1 OOM. */
static int read_label(struct fs_lvm *l, const struct fs_pv_candidate *c, struct pv *pv) {
  uint8_t b[2048];
  struct err re;
  err_init(&re);
  if (vol_size(c->vol) < sizeof b || vol_pread(c->vol, b, sizeof b, 0, &re) < 0) return 0;
  for (int i = 0; i < 4; i++) {
    const uint8_t *s = b + 512 * i;
    if (memcmp(s, "LABELONE", 8) != 0) continue;
    if (fs_le64(s + 8) != (uint64_t)i) {
      fs_warn(l->w, "%s: LVM2 label in sector %d says it is in sector %llu: ignored", c->name, i,
              (unsigned long long)fs_le64(s + 8));
      continue;
    }
    if (fs_crc32(LVM_CRC_INIT, s + 20, 512 - 20) != fs_le32(s + 16)) {
      fs_warn(l->w, "%s: LVM2 label checksum mismatch in sector %d: ignored", c->name, i);
      continue;
    }
    if (memcmp(s + 24, "LVM2 001", 8) != 0) {
      fs_warn(l->w, "%s: LVM2 label of an unknown type: ignored", c->name);
      continue;
    }
    uint32_t off = fs_le32(s + 20);
    if (off < 32 || off > 512 - 32 - 40) {
      fs_warn(l->w, "%s: LVM2 label: pv_header offset %u is invalid", c->name, off);
      continue;
    }
    const uint8_t *h = s + off, *end = s + 512;
    memset(pv, 0, sizeof *pv);
    pv->c = *c;
    memcpy(pv->uuid, h, 32);
    pv->uuid[32] = 0;
    for (int k = 0; k < 32; k++) {
      char ch = pv->uuid[k];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
        fs_warn(l->w, "%s: LVM2 label: invalid PV UUID", c->name);
        return 0;
      }
    }
    /* two zero-terminated lists: data areas (the metadata says where the
     * extents are, so they are only skipped), then metadata areas */
    const uint8_t *p = h + 40;
    for (int list = 0; list < 2; list++)
      for (;;) {
        if (p + 16 > end) {
          fs_warn(l->w, "%s: LVM2 label: its area lists run off the sector: ignored", c->name);
          free(pv->mdas);
          pv->mdas = NULL;
          return 0;
        }
        uint64_t ao = fs_le64(p), as = fs_le64(p + 8);
        p += 16;
        if (!ao) break;
        if (list == 0) continue;
        struct mda *nm = realloc(pv->mdas, (pv->nmdas + 1) * sizeof *nm);
        if (!nm) {
          free(pv->mdas);
          return -1;
        }
        pv->mdas = nm;
        memset(&nm[pv->nmdas], 0, sizeof *nm);
        nm[pv->nmdas].off = ao, nm[pv->nmdas].size = as;
        pv->nmdas++;
      }
    return 1;
  }
  return 0;
}

/* Read metadata area m of pv: header checks, then the text of raw_locn[0].
 * *text is malloc'd (NULL if the area holds none). */
static int read_mda(struct fs_lvm *l, struct pv *pv, struct mda *m, char **text) {
  const char *name = pv->c.name;
  struct vol *v = pv->c.vol;
  struct err re;
  err_init(&re);
  *text = NULL;
  if (m->size < 2 * MDA_HEADER_SIZE || m->off > vol_size(v) || m->size > vol_size(v) - m->off) {
    fs_warn(l->w, "%s: LVM2 metadata area at %llu (%llu bytes) does not fit the device", name,
            (unsigned long long)m->off, (unsigned long long)m->size);
    return 0;
  }
  if (vol_pread(v, m->hdr, MDA_HEADER_SIZE, m->off, &re) < 0) {
    fs_warn(l->w, "%s: cannot read the LVM2 metadata area header: %s", name, re.message);
    return 0;
  }
  const uint8_t *h = m->hdr;
  if (fs_crc32(LVM_CRC_INIT, h + 4, MDA_HEADER_SIZE - 4) != fs_le32(h)) {
    fs_warn(l->w, "%s: LVM2 metadata area at %llu: header checksum mismatch", name,
            (unsigned long long)m->off);
    return 0;
  }
  if (memcmp(h + 4, MDA_MAGIC, 16) != 0 || fs_le32(h + 20) != 1 || fs_le64(h + 24) != m->off ||
      fs_le64(h + 32) != m->size) {
    fs_warn(l->w, "%s: LVM2 metadata area at %llu: bad magic, version or location", name,
            (unsigned long long)m->off);
    return 0;
  }
  m->valid = 1;
  m->text_off = fs_le64(h + 40);
  m->text_size = fs_le64(h + 48);
  m->text_crc = fs_le32(h + 56);
  m->flags = fs_le32(h + 60);
  if (m->flags & RAW_LOCN_IGNORED || m->text_size == 0) return 0;
  uint64_t circ = m->size - MDA_HEADER_SIZE;
  if (m->text_off < MDA_HEADER_SIZE || m->text_off >= m->size || m->text_size > circ ||
      m->text_size > MAX_TEXT) {
    fs_warn(l->w, "%s: LVM2 metadata area at %llu: metadata location %llu+%llu is invalid", name,
            (unsigned long long)m->off, (unsigned long long)m->text_off,
            (unsigned long long)m->text_size);
    m->text_off = m->text_size = 0; /* no current copy: a rename writes a fresh one */
    return 0;
  }
  char *t = malloc(m->text_size + 1);
  if (!t) return -1;
  uint64_t first = m->size - m->text_off;
  if (first > m->text_size) first = m->text_size;
  if (vol_pread(v, t, first, m->off + m->text_off, &re) < 0 ||
      (m->text_size > first &&
       vol_pread(v, t + first, m->text_size - first, m->off + MDA_HEADER_SIZE, &re) < 0)) {
    fs_warn(l->w, "%s: cannot read LVM2 metadata: %s", name, re.message);
    free(t);
    return 0;
  }
  if (fs_crc32(LVM_CRC_INIT, t, m->text_size) != m->text_crc) {
    fs_warn(l->w, "%s: LVM2 metadata area at %llu: metadata checksum mismatch", name,
            (unsigned long long)m->off);
    free(t);
    return 0;
  }
  t[m->text_size] = 0;
  *text = t;
  return 0;
}

/* A parsed copy of some VG's metadata. */
struct copy {
  char *text;
  size_t len;
  struct node *root, *vgsec;
  const char *id;
  uint64_t seqno;
};

static void copy_free(struct copy *c) {
  node_free(c->root);
  free(c->text);
}

/* Parse text into c: the top level holds exactly one section, the VG. */
static int parse_copy(struct fs_lvm *l, const char *where, char *text, struct copy *c) {
  memset(c, 0, sizeof *c);
  c->text = text;
  c->len = strlen(text);
  struct parser p = {.t = text, .len = c->len};
  int rc = parse_body(&p, &c->root, 0);
  if (rc == 0) {
    for (struct node *n = c->root; n; n = n->next)
      if (n->kind == N_SECTION) {
        if (c->vgsec) {
          snprintf(p.why, sizeof p.why, "two volume groups in one metadata text");
          rc = -1;
          break;
        }
        c->vgsec = n;
      }
    if (rc == 0 && !c->vgsec) snprintf(p.why, sizeof p.why, "no volume group"), rc = -1;
  }
  if (rc == 0) {
    c->id = get_str(c->vgsec, "id");
    int64_t s;
    if (!c->id || get_int(c->vgsec, "seqno", &s) < 0 || s < 0) {
      snprintf(p.why, sizeof p.why, "no id or seqno");
      rc = -1;
    } else {
      c->seqno = (uint64_t)s;
    }
  }
  if (rc < 0) {
    fs_warn(l->w, "%s: LVM2 metadata cannot be parsed: %s", where, p.why);
    copy_free(c);
    memset(c, 0, sizeof *c);
    return -1;
  }
  return 0;
}

static struct pv *pv_by_uuid(struct fs_lvm *l, const char *uuid) {
  for (size_t i = 0; i < l->npvs; i++)
    if (strcmp(l->pvs[i].uuid, uuid) == 0) return &l->pvs[i];
  return NULL;
}

static void vg_free(struct vg *vg) {
  if (!vg) return;
  free(vg->name);
  free(vg->id);
  free(vg->text);
  for (size_t i = 0; i < vg->npvs; i++)
    free(vg->pvs[i].key);
  free(vg->pvs);
  for (size_t i = 0; i < vg->nlvs; i++) {
    free(vg->lvs[i].name);
    lv_close(&vg->lvs[i].vol->v);
  }
  free(vg->lvs);
  free(vg);
}

static int seg_cmp(const void *a, const void *b) {
  const struct lv_seg *x = a, *y = b;
  return (x->start > y->start) - (x->start < y->start);
}

/* Build the LV of section lvsec; 0 with a warning if it cannot be mapped. */
static int build_lv(struct fs_lvm *l, struct vg *vg, const struct node *lvsec) {
  const char *name = lvsec->key;
  if (!has_flag(lvsec, "status", "VISIBLE")) return 0; /* internal LVs are not listed */
  if (!name_ok(name)) {
    fs_warn(l->w, "LVM2: VG %s: LV name \"%.60s\" is invalid: not activated", vg->name, name);
    return 0;
  }
  struct lv_vol *lv = calloc(1, sizeof *lv);
  if (!lv) return oom(l), -1;
  lv->v.ops = &lv_ops;
  lv->v.read_only = l->read_only;
  lv->disk = l->disk;
  const char *why = NULL;
  char whybuf[200];
  size_t nseg = 0;
  for (const struct node *n = lvsec->child; n; n = n->next)
    if (n->kind == N_SECTION && strncmp(n->key, "segment", 7) == 0) nseg++;
  if (nseg == 0 || nseg > 100000) {
    why = "no segments";
    goto bad;
  }
  lv->segs = calloc(nseg, sizeof *lv->segs);
  if (!lv->segs) {
    lv_close(&lv->v);
    return oom(l), -1;
  }
  for (const struct node *n = lvsec->child; n; n = n->next) {
    if (n->kind != N_SECTION || strncmp(n->key, "segment", 7) != 0) continue;
    struct lv_seg *s = &lv->segs[lv->nsegs++];
    uint64_t start, count, nstripes = 1, ssize = 0;
    const char *type = get_str(n, "type");
    if (get_u64(n, "start_extent", &start) < 0 || get_u64(n, "extent_count", &count) < 0 || !type) {
      why = "a segment lacks start_extent, extent_count or type";
      goto bad;
    }
    if (strcmp(type, "striped") != 0 && strcmp(type, "linear") != 0) {
      snprintf(whybuf, sizeof whybuf, "segment type \"%.40s\" is not supported", type);
      why = whybuf;
      goto bad;
    }
    if (get_u64(n, "stripe_count", &nstripes) < 0) nstripes = 1;
    if (nstripes < 1 || nstripes > MAX_STRIPES || count == 0 || count % nstripes) {
      why = "stripe_count or extent_count is invalid";
      goto bad;
    }
    if (nstripes > 1 &&
        (get_u64(n, "stripe_size", &ssize) < 0 || ssize == 0 || ssize > vg->extent / 512)) {
      why = "stripe_size is invalid";
      goto bad;
    }
    if (__builtin_mul_overflow(start, vg->extent, &s->start) ||
        __builtin_mul_overflow(count, vg->extent, &s->len)) {
      why = "segment size overflows";
      goto bad;
    }
    uint64_t per = count / nstripes; /* extents per stripe */
    s->nstripes = (uint32_t)nstripes;
    s->chunk = nstripes > 1 ? ssize * 512 : s->len;
    if (nstripes > 1 && (per * vg->extent) % s->chunk) {
      why = "stripe length is not a multiple of stripe_size";
      goto bad;
    }
    s->stripe_off = calloc(nstripes, sizeof *s->stripe_off);
    if (!s->stripe_off) {
      lv_close(&lv->v);
      return oom(l), -1;
    }
    struct node *arr = find(n, "stripes");
    struct node *it = arr && arr->kind == N_ARRAY ? arr->child : NULL;
    for (uint64_t k = 0; k < nstripes; k++) {
      struct node *pvn = it, *pen = it ? it->next : NULL;
      it = pen ? pen->next : NULL;
      if (!pvn || !pen || pvn->kind != N_STR || pen->kind != N_INT || pen->num < 0) {
        why = "stripes list is invalid";
        goto bad;
      }
      struct vg_pv *vp = NULL;
      for (size_t j = 0; j < vg->npvs; j++)
        if (strcmp(vg->pvs[j].key, pvn->str) == 0) vp = &vg->pvs[j];
      if (!vp) {
        why = "a stripe names an unknown PV";
        goto bad;
      }
      uint64_t pe = (uint64_t)pen->num, off, end;
      if (pe > vp->pe_count || per > vp->pe_count - pe) {
        why = "a stripe runs past its PV's extents";
        goto bad;
      }
      if (__builtin_mul_overflow(vp->pe_start, 512, &off) ||
          __builtin_mul_overflow(pe, vg->extent, &end) || __builtin_add_overflow(off, end, &off) ||
          __builtin_mul_overflow(per, vg->extent, &end) || __builtin_add_overflow(off, end, &end) ||
          end > vol_size(vp->pv->c.vol)) {
        why = "a stripe runs past the end of its PV";
        goto bad;
      }
      s->stripe_off[k] = vp->pv->c.disk_off + off;
    }
    if (it) {
      why = "stripes list is longer than stripe_count";
      goto bad;
    }
  }
  qsort(lv->segs, lv->nsegs, sizeof *lv->segs, seg_cmp);
  uint64_t size = 0;
  for (size_t i = 0; i < lv->nsegs; i++) {
    if (lv->segs[i].start != size) {
      why = "segments leave a gap or overlap";
      goto bad;
    }
    if (__builtin_add_overflow(size, lv->segs[i].len, &size)) {
      why = "LV size overflows";
      goto bad;
    }
  }
  lv->v.size = size;
  struct lv *nl = realloc(vg->lvs, (vg->nlvs + 1) * sizeof *nl);
  if (!nl) {
    lv_close(&lv->v);
    return oom(l), -1;
  }
  vg->lvs = nl;
  nl[vg->nlvs].name = strdup(name);
  if (!nl[vg->nlvs].name) {
    lv_close(&lv->v);
    return oom(l), -1;
  }
  nl[vg->nlvs++].vol = lv;
  return 0;
bad:
  fs_warn(l->w, "LVM2: LV %s/%s: %s: not activated", vg->name, name, why);
  lv_close(&lv->v);
  return 0;
}

/* Build the VG of copy c (the newest of its copies); takes c->text. */
static int build_vg(struct fs_lvm *l, struct copy *c) {
  struct node *sec = c->vgsec;
  const char *name = sec->key;
  if (!vg_name_ok(name)) {
    fs_warn(l->w, "LVM2: VG name \"%.60s\" is invalid: ignored", name);
    return 0;
  }
  struct vg *vg = calloc(1, sizeof *vg);
  if (!vg) return oom(l), -1;
  vg->name = strdup(name);
  vg->id = strdup(c->id);
  if (!vg->name || !vg->id) goto nomem;
  vg->seqno = c->seqno;
  struct node *sn = find(sec, "seqno");
  vg->name_off = sec->key_off, vg->name_len = sec->key_len;
  vg->seqno_off = sn->val_off, vg->seqno_len = sn->val_len;
  uint64_t ext = 0;
  if (get_u64(sec, "extent_size", &ext) < 0 || ext == 0 || ext > (UINT64_C(1) << 40)) {
    fs_warn(l->w, "LVM2: VG %s: extent_size is invalid: not activated", name);
    ext = 0;
  }
  vg->extent = ext * 512;
  struct node *pvs = find(sec, "physical_volumes");
  size_t n = 0;
  for (struct node *p = pvs && pvs->kind == N_SECTION ? pvs->child : NULL; p; p = p->next)
    if (p->kind == N_SECTION) n++;
  vg->pvs = calloc(n ? n : 1, sizeof *vg->pvs);
  if (!vg->pvs) goto nomem;
  int complete = vg->extent != 0 && n > 0;
  for (struct node *p = pvs && pvs->kind == N_SECTION ? pvs->child : NULL; p; p = p->next) {
    if (p->kind != N_SECTION) continue;
    struct vg_pv *vp = &vg->pvs[vg->npvs++];
    vp->key = strdup(p->key);
    if (!vp->key) goto nomem;
    const char *id = get_str(p, "id");
    if (!id || uuid_strip(id, vp->uuid) < 0 || get_u64(p, "pe_start", &vp->pe_start) < 0 ||
        get_u64(p, "pe_count", &vp->pe_count) < 0) {
      fs_warn(l->w, "LVM2: VG %s: PV %s is described incompletely: VG not activated", name, p->key);
      complete = 0;
      continue;
    }
    vp->pv = pv_by_uuid(l, vp->uuid);
    if (!vp->pv) {
      fs_warn(l->w, "LVM2: VG %s: PV %s (UUID %s) is missing: VG not activated", name, p->key, id);
      complete = 0;
    } else if (has_flag(p, "flags", "MISSING")) {
      fs_warn(l->w, "LVM2: VG %s: PV %s is marked missing: VG not activated", name, p->key);
      complete = 0;
    }
  }
  if (vg->npvs == 0) fs_warn(l->w, "LVM2: VG %s has no physical volumes: not activated", name);
  vg->complete = complete;
  if (complete) {
    struct node *lvs = find(sec, "logical_volumes");
    for (struct node *lvn = lvs && lvs->kind == N_SECTION ? lvs->child : NULL; lvn; lvn = lvn->next)
      if (lvn->kind == N_SECTION && build_lv(l, vg, lvn) < 0) goto fail;
  }
  struct vg **nv = realloc(l->vgs, (l->nvgs + 1) * sizeof *nv);
  if (!nv) goto nomem;
  l->vgs = nv;
  vg->text = c->text, vg->text_len = c->len;
  c->text = NULL;
  l->vgs[l->nvgs++] = vg;
  return 0;
nomem:
  oom(l);
fail:
  vg_free(vg);
  return -1;
}

void fs_lvm_free(struct fs_lvm *l) {
  if (!l) return;
  for (size_t i = 0; i < l->nvgs; i++)
    vg_free(l->vgs[i]);
  free(l->vgs);
  for (size_t i = 0; i < l->npvs; i++)
    free(l->pvs[i].mdas);
  free(l->pvs);
  free(l);
}

int fs_lvm_scan(struct vol *disk, int read_only, const struct fs_pv_candidate *c, size_t nc,
                struct fs_lvm **out, struct fs_warnings *w, struct err *e) {
  struct fs_lvm *l = calloc(1, sizeof *l);
  struct copy *copies = NULL;
  size_t ncopies = 0;
  *out = NULL;
  if (!l) {
    err_set(e, 500, FS_EIO, "out of memory reading LVM2");
    return -1;
  }
  l->disk = disk, l->read_only = read_only, l->w = w, l->e = e;
  l->pvs = calloc(nc ? nc : 1, sizeof *l->pvs);
  if (!l->pvs) goto nomem;
  for (size_t i = 0; i < nc; i++) {
    struct pv pv;
    int r = read_label(l, &c[i], &pv);
    if (r < 0) goto nomem;
    if (r == 0) continue;
    if (pv_by_uuid(l, pv.uuid)) {
      fs_warn(w, "%s: LVM2 PV UUID %s is also on another device: ignored", c[i].name, pv.uuid);
      free(pv.mdas);
      continue;
    }
    l->pvs[l->npvs++] = pv;
  }
  /* every metadata copy, parsed */
  for (size_t i = 0; i < l->npvs; i++)
    for (size_t k = 0; k < l->pvs[i].nmdas; k++) {
      char *text;
      if (read_mda(l, &l->pvs[i], &l->pvs[i].mdas[k], &text) < 0) goto nomem;
      if (!text) continue;
      struct copy *nc2 = realloc(copies, (ncopies + 1) * sizeof *nc2);
      if (!nc2) {
        free(text);
        goto nomem;
      }
      copies = nc2;
      if (parse_copy(l, l->pvs[i].c.name, text, &copies[ncopies]) == 0) ncopies++;
    }
  /* one VG per id: its newest copy */
  for (size_t i = 0; i < ncopies; i++) {
    if (!copies[i].root) continue;
    size_t best = i;
    for (size_t j = i + 1; j < ncopies; j++) {
      if (!copies[j].root || strcmp(copies[j].id, copies[i].id) != 0) continue;
      if (copies[j].seqno != copies[best].seqno)
        fs_warn(w,
                "LVM2: VG %s: metadata copies disagree (seqno %llu and %llu): the newest is "
                "used",
                copies[i].vgsec->key, (unsigned long long)copies[best].seqno,
                (unsigned long long)copies[j].seqno);
      if (copies[j].seqno > copies[best].seqno) best = j;
    }
    int dup = 0;
    for (size_t k = 0; k < l->nvgs; k++)
      if (strcmp(l->vgs[k]->name, copies[best].vgsec->key) == 0) dup = 1;
    if (dup) {
      fs_warn(w, "LVM2: two volume groups are named %s: the second is ignored",
              copies[best].vgsec->key);
    } else if (build_vg(l, &copies[best]) < 0) {
      goto fail;
    }
    const char *id = copies[i].id;
    char *idc = strdup(id);
    if (!idc) goto nomem;
    for (size_t j = i; j < ncopies; j++)
      if (copies[j].root && strcmp(copies[j].id, idc) == 0) {
        copy_free(&copies[j]);
        memset(&copies[j], 0, sizeof copies[j]);
      }
    free(idc);
  }
  free(copies);
  *out = l;
  return 0;
nomem:
  err_set(e, 500, FS_EIO, "out of memory reading LVM2");
fail:
  for (size_t i = 0; i < ncopies; i++)
    copy_free(&copies[i]);
  free(copies);
  fs_lvm_free(l);
  return -1;
}

/* ======================================================================= */
/* names and lookups                                                       */
/* ======================================================================= */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char **fs_lvm_lvs(struct fs_lvm *l) {
  size_t n = 0;
  for (size_t i = 0; l && i < l->nvgs; i++)
    n += l->vgs[i]->nlvs;
  char **v = calloc(n + 1, sizeof *v);
  if (!v) return NULL;
  size_t k = 0;
  for (size_t i = 0; l && i < l->nvgs; i++)
    for (size_t j = 0; j < l->vgs[i]->nlvs; j++) {
      v[k] = util_strdup_printf("/dev/%s/%s", l->vgs[i]->name, l->vgs[i]->lvs[j].name);
      if (!v[k++]) {
        fs_strv_free(v);
        return NULL;
      }
    }
  qsort(v, k, sizeof *v, cmp_str);
  return v;
}

char **fs_lvm_vgs(struct fs_lvm *l) {
  size_t n = l ? l->nvgs : 0;
  char **v = calloc(n + 1, sizeof *v);
  if (!v) return NULL;
  for (size_t i = 0; i < n; i++)
    if (!(v[i] = strdup(l->vgs[i]->name))) {
      fs_strv_free(v);
      return NULL;
    }
  qsort(v, n, sizeof *v, cmp_str);
  return v;
}

struct vol *fs_lvm_find(struct fs_lvm *l, const char *name, char **canon) {
  if (canon) *canon = NULL;
  if (!l || strncmp(name, "/dev/", 5) != 0) return NULL;
  const char *rest = name + 5;
  int mapper = strncmp(rest, "mapper/", 7) == 0;
  for (size_t i = 0; i < l->nvgs; i++) {
    struct vg *vg = l->vgs[i];
    for (size_t j = 0; j < vg->nlvs; j++) {
      const char *lvn = vg->lvs[j].name;
      int hit;
      if (mapper) {
        char *m = mapper_name(vg->name, lvn);
        if (!m) return NULL;
        hit = strcmp(rest + 7, m) == 0;
        free(m);
      } else {
        size_t vl = strlen(vg->name);
        hit =
            strncmp(rest, vg->name, vl) == 0 && rest[vl] == '/' && strcmp(rest + vl + 1, lvn) == 0;
      }
      if (hit) {
        if (canon) *canon = util_strdup_printf("/dev/%s/%s", vg->name, lvn);
        return &vg->lvs[j].vol->v;
      }
    }
  }
  return NULL;
}

/* ======================================================================= */
/* vgrename                                                                */
/* ======================================================================= */

/* Where the next copy of the text goes in a circular metadata area: after
 * the current one, 512-aligned, wrapping to byte 512, never overlapping the
 * current copy (so a crash before the header is written leaves it intact). */
static int place_text(const struct mda *m, uint64_t size, uint64_t *off) {
  uint64_t circ = m->size - MDA_HEADER_SIZE;
  if (size > circ) return -1;
  if (m->text_size == 0) {
    *off = MDA_HEADER_SIZE;
    return 0;
  }
  uint64_t end = m->text_off + m->text_size; /* may be past the end: wraps */
  if (end > m->size) end = end - m->size + MDA_HEADER_SIZE;
  uint64_t o = (end + MDA_HEADER_SIZE - 1) / MDA_HEADER_SIZE * MDA_HEADER_SIZE;
  if (o >= m->size) o = MDA_HEADER_SIZE;
  /* free bytes from o forward (circularly) to the current copy */
  uint64_t room =
      m->text_off >= o ? m->text_off - o : (m->size - o) + (m->text_off - MDA_HEADER_SIZE);
  if (size > room) return -1;
  *off = o;
  return 0;
}

int fs_lvm_vgrename(struct fs_lvm *l, const char *from, const char *to, struct err *e) {
  struct vg *vg = NULL;
  for (size_t i = 0; l && i < l->nvgs; i++)
    if (strcmp(l->vgs[i]->name, from) == 0) vg = l->vgs[i];
  if (!vg) {
    err_set(e, 404, FS_ENOENT, "vgrename: %s -> %s: Volume group \"%s\" not found", from, to, from);
    return -1;
  }
  if (!vg_name_ok(to)) {
    err_set(e, 400, FS_EINVAL, "vgrename: %s -> %s: New volume group name \"%s\" is invalid", from,
            to, to);
    return -1;
  }
  for (size_t i = 0; i < l->nvgs; i++)
    if (strcmp(l->vgs[i]->name, to) == 0) {
      err_set(e, 400, FS_EEXIST, "vgrename: %s -> %s: Volume group \"%s\" already exists", from, to,
              to);
      return -1;
    }
  if (l->read_only) {
    err_set(e, 400, FS_EROFS, "vgrename: %s -> %s: the disk is opened read-only", from, to);
    return -1;
  }
  if (!vg->complete) {
    err_set(e, 409, FS_EINVAL, "vgrename: %s -> %s: volume group \"%s\" has missing PVs", from, to,
            from);
    return -1;
  }
  /* the new text: name and seqno replaced in place */
  char seq[24], msg[sizeof e->message];
  snprintf(seq, sizeof seq, "%llu", (unsigned long long)(vg->seqno + 1));
  size_t tl = strlen(to), sl = strlen(seq);
  size_t nlen = vg->text_len - vg->name_len - vg->seqno_len + tl + sl;
  char *t = malloc(nlen + 1);
  if (!t) {
    err_set(e, 500, FS_EIO, "vgrename: out of memory");
    return -1;
  }
  const char *o = vg->text;
  size_t a = vg->name_off, b = vg->name_off + vg->name_len, c = vg->seqno_off,
         d = vg->seqno_off + vg->seqno_len;
  char *p = t;
  memcpy(p, o, a), p += a;
  memcpy(p, to, tl), p += tl;
  memcpy(p, o + b, c - b), p += c - b;
  memcpy(p, seq, sl), p += sl;
  memcpy(p, o + d, vg->text_len - d), p += vg->text_len - d;
  *p = 0;
  uint64_t size = nlen + 1; /* lvm2 counts the final NUL */
  uint32_t crc = fs_crc32(LVM_CRC_INIT, t, size);
  /* every metadata area of every PV: place first, write nothing if one cannot take it */
  size_t nareas = 0;
  for (size_t i = 0; i < vg->npvs; i++)
    for (size_t k = 0; k < vg->pvs[i].pv->nmdas; k++) {
      struct mda *m = &vg->pvs[i].pv->mdas[k];
      if (!m->valid || m->flags & RAW_LOCN_IGNORED) continue;
      uint64_t off;
      if (place_text(m, size, &off) < 0) {
        err_set(e, 422, FS_ENOSPC,
                "vgrename: %s -> %s: the metadata area of %s (%llu bytes) is too small for the "
                "new metadata (%llu bytes)",
                from, to, vg->pvs[i].pv->c.name, (unsigned long long)m->size,
                (unsigned long long)size);
        free(t);
        return -1;
      }
      nareas++;
    }
  if (nareas == 0) {
    err_set(e, 422, FS_EINVAL, "vgrename: %s -> %s: no metadata area to write", from, to);
    free(t);
    return -1;
  }
  /* 1: the new text beside the old one in every area; 2: the headers */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < vg->npvs; i++) {
      struct pv *pv = vg->pvs[i].pv;
      for (size_t k = 0; k < pv->nmdas; k++) {
        struct mda *m = &pv->mdas[k];
        if (!m->valid || m->flags & RAW_LOCN_IGNORED) continue;
        uint64_t off;
        place_text(m, size, &off);
        if (pass == 0) {
          uint64_t first = m->size - off < size ? m->size - off : size;
          if (vol_pwrite(pv->c.vol, t, first, m->off + off, e) < 0 ||
              (size > first &&
               vol_pwrite(pv->c.vol, t + first, size - first, m->off + MDA_HEADER_SIZE, e) < 0))
            goto io;
        } else {
          uint8_t h[MDA_HEADER_SIZE];
          memcpy(h, m->hdr, sizeof h);
          fs_put_le64(h + 40, off);
          fs_put_le64(h + 48, size);
          fs_put_le32(h + 56, crc);
          fs_put_le32(h + 60, m->flags);
          memset(h + 64, 0, 24); /* no precommitted copy */
          fs_put_le32(h, fs_crc32(LVM_CRC_INIT, h + 4, MDA_HEADER_SIZE - 4));
          if (vol_pwrite(pv->c.vol, h, sizeof h, m->off, e) < 0) goto io;
          memcpy(m->hdr, h, sizeof h);
          m->text_off = off, m->text_size = size, m->text_crc = crc;
        }
      }
    }
    if (vol_flush(l->disk, e) < 0) goto io;
  }
  char *nn = strdup(to);
  if (!nn) {
    err_set(e, 500, FS_EIO, "vgrename: out of memory");
    free(t);
    return -1;
  }
  free(vg->name);
  vg->name = nn;
  free(vg->text);
  vg->text = t, vg->text_len = nlen;
  vg->seqno++;
  vg->name_len = tl;
  vg->seqno_off = a + tl + (c - b);
  vg->seqno_len = sl;
  return 0;
io:
  snprintf(msg, sizeof msg, "%s", e->message);
  err_set(e, 500, FS_EIO, "vgrename: %s -> %s: %s", from, to, msg);
  free(t);
  return -1;
}
