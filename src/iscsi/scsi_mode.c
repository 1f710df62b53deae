/* scsi_mode.c — MODE SENSE (6)/(10) and MODE SELECT (6)/(10) (SPC-4 6.11-6.14,
 * 7.5): the Caching page (0x08, WCE changeable: with WCE 0 every write is
 * flushed before it completes), the Control page (0x0A, SWP changeable:
 * software write protect), the Informational Exceptions Control page (0x1C,
 * fixed), block descriptors (short, and long with LLBAA), page control
 * current / changeable / default; saved values are not supported (nothing
 * survives a restart). The values are per logical unit, shared by every
 * nexus; a change raises MODE PARAMETERS CHANGED for the other nexuses. */
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi_int.h"

enum { PC_CURRENT = 0, PC_CHANGEABLE = 1, PC_DEFAULT = 2, PC_SAVED = 3 };

struct mode_values {
  int wce, swp;
};

#define PAGE_MAX 20

/* Page `code` as `pc` asks for it, with the values v; returns its length
 * (0: no such page). */
static size_t page_build(uint8_t code, int pc, const struct mode_values *v, uint8_t *p) {
  memset(p, 0, PAGE_MAX);
  switch (code) {
  case 0x08: /* Caching */
    p[0] = 0x08;
    p[1] = 0x12;
    if (pc == PC_CHANGEABLE)
      p[2] = 0x04;
    else if (v->wce)
      p[2] = 0x04; /* WCE; RCD 0: the read cache is on */
    return 20;
  case 0x0a: /* Control */
    p[0] = 0x0a;
    p[1] = 0x0a;
    if (pc == PC_CHANGEABLE) {
      p[4] = 0x08; /* SWP */
      return 12;
    }
    p[2] = 0x02; /* GLTSD: no log parameters are saved */
    p[3] = 0x10; /* queue algorithm modifier 1: unrestricted reordering */
    if (v->swp) p[4] = 0x08;
    put_be16(p + 8, 0xffff); /* busy timeout period: unlimited */
    return 12;
  case 0x1c: /* Informational Exceptions Control */
    p[0] = 0x1c;
    p[1] = 0x0a;
    if (pc != PC_CHANGEABLE) p[2] = 0x08; /* DEXCPT: no exception reporting */
    return 12;
  default: return 0;
  }
}

static const uint8_t page_codes[] = {0x08, 0x0a, 0x1c};

void scsi_mode_reset_locked(struct scsi_lu *lu) {
  atomic_store(&lu->wce, 1);
  atomic_store(&lu->swp, 0);
}

static struct mode_values current(struct scsi_lu *lu) {
  return (struct mode_values){atomic_load(&lu->wce), atomic_load(&lu->swp)};
}

void scsi_cmd_mode_sense(struct scsi_lu *lu, struct scsi_cmd *c) {
  int ten = c->cdb[0] == 0x5a;
  int dbd = c->cdb[1] & 0x08, llbaa = ten && (c->cdb[1] & 0x10);
  int pc = c->cdb[2] >> 6;
  uint8_t code = c->cdb[2] & 0x3f, sub = c->cdb[3];
  uint32_t alloc = ten ? get_be16(c->cdb + 7) : c->cdb[4];
  if (pc == PC_SAVED) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMETERS_NOT_SUPPORTED);
    return;
  }
  /* Our pages have no subpages: subpage 0, or 0xFF ("all subpages"), only. */
  if (sub != 0 && sub != 0xff) {
    scsi_sense_field(c, 1, 3, -1);
    return;
  }
  struct mode_values v = pc == PC_DEFAULT ? (struct mode_values){1, 0} : current(lu);
  uint8_t b[8 + 16 + sizeof page_codes * PAGE_MAX];
  memset(b, 0, sizeof b);
  size_t h = ten ? 8 : 4, n = h;
  if (!dbd) {
    if (llbaa) {
      put_be64(b + n, lu->nblocks);
      put_be32(b + n + 12, SCSI_BLOCK_SIZE);
      n += 16;
    } else {
      put_be32(b + n, lu->nblocks > 0xffffffffu ? 0xffffffffu : (uint32_t)lu->nblocks);
      put_be32(b + n + 4, SCSI_BLOCK_SIZE); /* density code 0 in the top byte */
      n += 8;
    }
  }
  size_t bd = n - h;
  if (code == 0x3f) {
    for (size_t i = 0; i < sizeof page_codes; i++)
      n += page_build(page_codes[i], pc, &v, b + n);
  } else {
    size_t l = page_build(code, pc, &v, b + n);
    if (!l) {
      scsi_sense_field(c, 1, 2, 5);
      return;
    }
    n += l;
  }
  /* device-specific parameter: WP, DPOFUA (DPO and FUA are honoured) */
  uint8_t dsp = (uint8_t)(((lu->read_only || v.swp) ? 0x80 : 0) | 0x10);
  if (ten) {
    put_be16(b, (uint16_t)(n - 2));
    b[3] = dsp;
    if (llbaa && !dbd) b[4] = 0x01; /* LONGLBA */
    put_be16(b + 6, (uint16_t)bd);
  } else {
    b[0] = (uint8_t)(n - 1);
    b[2] = dsp;
    b[3] = (uint8_t)bd;
  }
  scsi_data_in(c, b, n, alloc);
}

void scsi_cmd_mode_select(struct scsi_lu *lu, struct scsi_cmd *c) {
  int ten = c->cdb[0] == 0x55;
  uint32_t plen = ten ? get_be16(c->cdb + 7) : c->cdb[4];
  if (!plen) return;
  if (!(c->cdb[1] & 0x10)) { /* PF 0: a vendor-specific format we do not have */
    scsi_sense_field(c, 1, 1, 4);
    return;
  }
  uint32_t avail = plen < c->data_out_len ? plen : c->data_out_len;
  const uint8_t *p = c->data_out;
  uint32_t h = ten ? 8 : 4;
  if (avail < h) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
    return;
  }
  int longlba = ten && (p[4] & 0x01);
  uint32_t bd = ten ? get_be16(p + 6) : p[3];
  uint32_t bdsz = longlba ? 16 : 8;
  if (bd % bdsz) {
    scsi_sense_field(c, 0, ten ? 6 : 3, -1);
    return;
  }
  if (h + bd > avail) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
    return;
  }
  /* Block descriptors may only restate the block length. */
  for (uint32_t o = h; o < h + bd; o += bdsz) {
    uint32_t bl = longlba ? get_be32(p + o + 12) : get_be24(p + o + 5);
    if (bl != SCSI_BLOCK_SIZE) {
      scsi_sense_field(c, 0, o + (longlba ? 12 : 5), -1);
      return;
    }
  }
  int flush_now = 0;
  pthread_mutex_lock(&lu->lock);
  struct mode_values v = current(lu), nv = v;
  uint32_t o = h + bd;
  while (o < avail) {
    if (avail - o < 2) goto short_list;
    uint8_t code = p[o] & 0x3f;
    if (p[o] & 0x40) { /* SPF: subpage format; we have no subpages */
      scsi_sense_field(c, 0, o, 6);
      goto out;
    }
    uint8_t cur[PAGE_MAX], chg[PAGE_MAX];
    size_t l = page_build(code, PC_CURRENT, &v, cur);
    page_build(code, PC_CHANGEABLE, &v, chg);
    if (!l) {
      scsi_sense_field(c, 0, o, 5);
      goto out;
    }
    if (p[o + 1] != l - 2) {
      scsi_sense_field(c, 0, o + 1, -1);
      goto out;
    }
    if (avail - o < l) goto short_list;
    for (size_t j = 2; j < l; j++) {
      uint8_t bad = (uint8_t)((p[o + j] ^ cur[j]) & ~chg[j]);
      if (bad) {
        int bit = 7;
        while (!(bad & (1u << bit)))
          bit--;
        scsi_sense_field(c, 0, o + (uint32_t)j, bit);
        goto out;
      }
    }
    if (code == 0x08) nv.wce = !!(p[o + 2] & 0x04);
    if (code == 0x0a) nv.swp = !!(p[o + 4] & 0x08);
    o += (uint32_t)l;
  }
  if (nv.wce != v.wce || nv.swp != v.swp) {
    atomic_store(&lu->wce, nv.wce);
    atomic_store(&lu->swp, nv.swp);
    scsi_ua_all_locked(lu, c->nexus ? c->nexus->id : 0, ASC_MODE_PARAMETERS_CHANGED);
    flush_now = v.wce && !nv.wce; /* what the cache held must not wait for a flush */
  }
  goto out;
short_list:
  scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
out:
  pthread_mutex_unlock(&lu->lock);
  if (flush_now) {
    struct err e;
    err_init(&e);
    if (vol_flush(lu->vol, &e) < 0) scsi_sense(c, SK_MEDIUM_ERROR, ASC_WRITE_ERROR);
  }
}
