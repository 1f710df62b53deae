/* scsi_spc.c — the commands that describe the logical unit rather than touch
 * its medium: TEST UNIT READY, REQUEST SENSE, INQUIRY with its vital product
 * data pages, REPORT LUNS, READ CAPACITY (10)/(16), START STOP UNIT, PREVENT
 * ALLOW MEDIUM REMOVAL, REPORT TARGET PORT GROUPS and REPORT SUPPORTED
 * OPERATION CODES (built from the command table). SPC-4 and SBC-3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi_int.h"

#define VENDOR "STREAMER"
#define PRODUCT "OS VOLUME"
#define REVISION "0001"

/* Space-padded ASCII field (SPC-4 4.4.1). */
static void put_ascii(uint8_t *p, const char *s, size_t width) {
  size_t n = strlen(s);
  memset(p, ' ', width);
  memcpy(p, s, n < width ? n : width);
}

void scsi_cmd_test_unit_ready(struct scsi_lu *lu, struct scsi_cmd *c) {
  (void)lu;
  (void)c; /* the medium is always there */
}

/* REQUEST SENSE: the pending unit attention (taking it), or NO SENSE.
 * Everything else is reported with the failing command itself (autosense). */
void scsi_cmd_request_sense(struct scsi_lu *lu, struct scsi_cmd *c) {
  struct scsi_cmd tmp = {0};
  uint16_t asc = c->lun != 0 ? ASC_LU_NOT_SUPPORTED : scsi_ua_take(lu, c->nexus);
  uint8_t key = c->lun != 0 ? SK_ILLEGAL_REQUEST : asc ? SK_UNIT_ATTENTION : SK_NO_SENSE;
  scsi_sense(&tmp, key, asc);
  scsi_data_in(c, tmp.sense, tmp.sense_len, c->cdb[4]);
}

/* ---- INQUIRY ------------------------------------------------------------------ */

static size_t inquiry_standard(struct scsi_lu *lu, const struct scsi_cmd *c, uint8_t *b) {
  (void)lu;
  memset(b, 0, 66);
  b[0] = c->lun != 0 ? 0x7f : 0x00; /* qualifier 3 + unknown type: no such LU */
  b[2] = 0x06;                      /* SPC-4 */
  b[3] = 0x12;                      /* HISUP, response data format 2 */
  b[4] = 66 - 5;
  b[5] = 0x10; /* TPGS 01b: implicit asymmetric access (ALUA) */
  b[7] = 0x02; /* CMDQUE */
  put_ascii(b + 8, VENDOR, 8);
  put_ascii(b + 16, PRODUCT, 16);
  put_ascii(b + 32, REVISION, 4);
  /* version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 */
  put_be16(b + 58, 0x00a0);
  put_be16(b + 60, 0x0960);
  put_be16(b + 62, 0x0460);
  put_be16(b + 64, 0x04c0);
  return 66;
}

static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};

/* One designation descriptor (SPC-4 7.8.6.1); returns its length. */
static size_t designator(uint8_t *p, int piv_proto, uint8_t code_set, uint8_t assoc, uint8_t type,
                         const void *id, size_t len) {
  p[0] = (uint8_t)((piv_proto ? 0x50 : 0x00) | code_set); /* protocol iSCSI (5) when PIV */
  p[1] = (uint8_t)((piv_proto ? 0x80 : 0) | assoc << 4 | type);
  p[2] = 0;
  p[3] = (uint8_t)len;
  memcpy(p + 4, id, len);
  return 4 + len;
}

/* SCSI name string: UTF-8, NUL-terminated, padded with NULs to a multiple of 4. */
static size_t name_designator(uint8_t *p, uint8_t assoc, const char *name) {
  size_t n = strlen(name);
  if (n > 251) n = 251;
  size_t len = (n + 1 + 3) & ~(size_t)3;
  uint8_t buf[256] = {0};
  memcpy(buf, name, n);
  return designator(p, 1, 3, assoc, 8, buf, len);
}

static size_t vpd_device_id(struct scsi_lu *lu, uint8_t *b) {
  size_t n = 4;
  /* the LU: NAA 3 (locally assigned) and T10 vendor id "STREAMER<unit id>" */
  n += designator(b + n, 0, 1, 0, 3, lu->naa, 8);
  uint8_t t10[8 + 64];
  size_t idl = strlen(lu->unit_id);
  if (idl > 64) idl = 64;
  put_ascii(t10, VENDOR, 8);
  memcpy(t10 + 8, lu->unit_id, idl);
  n += designator(b + n, 0, 2, 0, 1, t10, 8 + idl);
  /* the target port: relative port, port group, "<iqn>,t,0x0001" */
  uint8_t port[4] = {0, 0, (uint8_t)(lu->rel_port >> 8), (uint8_t)lu->rel_port};
  n += designator(b + n, 1, 1, 1, 4, port, 4);
  uint8_t group[4] = {0, 0, (uint8_t)(lu->tpg >> 8), (uint8_t)lu->tpg};
  n += designator(b + n, 1, 1, 1, 5, group, 4);
  char name[300];
  snprintf(name, sizeof name, "%s,t,0x%04x", lu->target_name, lu->tpg);
  n += name_designator(b + n, 1, name);
  /* the target device: "<iqn>" */
  n += name_designator(b + n, 2, lu->target_name);
  return n;
}

void scsi_cmd_inquiry(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t b[1024];
  int evpd = c->cdb[1] & 0x01;
  uint8_t page = c->cdb[2];
  uint32_t alloc = get_be16(c->cdb + 3);
  size_t n = 0;
  if (!evpd) {
    if (page) {
      scsi_sense_field(c, 1, 2, -1);
      return;
    }
    scsi_data_in(c, b, inquiry_standard(lu, c, b), alloc);
    return;
  }
  if (c->lun != 0) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
    return;
  }
  memset(b, 0, sizeof b);
  b[1] = page;
  switch (page) {
  case 0x00: /* supported VPD pages */
    memcpy(b + 4, vpd_pages, sizeof vpd_pages);
    n = 4 + sizeof vpd_pages;
    break;
  case 0x80: { /* unit serial number */
    size_t l = strlen(lu->unit_id);
    if (l > 250) l = 250;
    memcpy(b + 4, lu->unit_id, l);
    n = 4 + l;
    break;
  }
  case 0x83: n = vpd_device_id(lu, b); break;
  case 0xb0: /* block limits */
    n = 64;
    b[5] = SCSI_MAX_CAW_BLOCKS;
    put_be16(b + 6, SCSI_GRANULARITY_BLOCKS);
    put_be32(b + 8, SCSI_MAX_XFER_BLOCKS);
    put_be32(b + 12, SCSI_OPT_XFER_BLOCKS);
    put_be32(b + 16, SCSI_MAX_XFER_BLOCKS); /* maximum prefetch length */
    put_be32(b + 20, SCSI_MAX_UNMAP_BLOCKS);
    put_be32(b + 24, SCSI_MAX_UNMAP_DESCRIPTORS);
    put_be32(b + 28, SCSI_GRANULARITY_BLOCKS);
    put_be32(b + 32, 0x80000000u); /* UGAVALID, alignment 0 */
    put_be64(b + 36, SCSI_MAX_WRITE_SAME_BLOCKS);
    break;
  case 0xb1: /* block device characteristics */
    n = 64;
    put_be16(b + 4, 1); /* non-rotating medium */
    break;
  case 0xb2: /* logical block provisioning */
    n = 8;
    b[5] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU, LBPWS, LBPWS10, LBPRZ */
    b[6] = 0x02;                      /* thin provisioned */
    break;
  default: scsi_sense_field(c, 1, 2, -1); return;
  }
  put_be16(b + 2, (uint16_t)(n - 4));
  scsi_data_in(c, b, n, alloc);
}

/* ---- REPORT LUNS, READ CAPACITY ----------------------------------------------- */

void scsi_cmd_report_luns(struct scsi_lu *lu, struct scsi_cmd *c) {
  (void)lu;
  uint8_t sel = c->cdb[2];
  uint32_t alloc = get_be32(c->cdb + 6);
  /* 0: all logical units, 1: well known only (none), 2: all */
  if (sel > 2) {
    scsi_sense_field(c, 1, 2, -1);
    return;
  }
  uint8_t b[16] = {0};
  put_be32(b, sel == 1 ? 0 : 8); /* LUN 0: eight zero bytes */
  scsi_data_in(c, b, sel == 1 ? 8 : 16, alloc);
}

void scsi_cmd_read_capacity10(struct scsi_lu *lu, struct scsi_cmd *c) {
  if (!(c->cdb[8] & 0x01) && get_be32(c->cdb + 2)) { /* PMI 0 wants LBA 0 */
    scsi_sense_field(c, 1, 2, -1);
    return;
  }
  uint8_t b[8];
  uint64_t last = lu->nblocks - 1;
  put_be32(b, last > 0xffffffffu ? 0xffffffffu : (uint32_t)last); /* beyond: use (16) */
  put_be32(b + 4, SCSI_BLOCK_SIZE);
  scsi_data_in(c, b, 8, 8);
}

void scsi_cmd_read_capacity16(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t b[32] = {0};
  put_be64(b, lu->nblocks - 1);
  put_be32(b + 8, SCSI_BLOCK_SIZE);
  /* Logical blocks per physical block: 1 (exponent 0), though the volumes
   * work in 4 KiB clusters. The 4 KiB preference is in the Block Limits page
   * (optimal transfer and unmap granularity: Linux's io_min), and an exponent
   * above 0 makes libiscsi's GetLBAStatus.UnmapSingle expect descriptors that
   * do not start at the requested LBA. */
  b[13] = SCSI_LBPPBE;
  b[14] = 0x80 | 0x40; /* LBPME, LBPRZ: unmapped blocks read as zeros */
  scsi_data_in(c, b, sizeof b, get_be32(c->cdb + 10));
}

/* ---- START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL ------------------------------ */

void scsi_cmd_start_stop_unit(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t pc = c->cdb[4] >> 4;
  int no_flush = c->cdb[4] & 0x04, loej = c->cdb[4] & 0x02, start = c->cdb[4] & 0x01;
  /* SBC-3 table 83: 0 START_VALID, 1 ACTIVE, 2 IDLE, 3 STANDBY, 7 LU_CONTROL,
   * 0xA FORCE_IDLE_0, 0xB FORCE_STANDBY_0; the rest are reserved. */
  if (!(pc <= 3 || pc == 7 || pc == 0xa || pc == 0xb)) {
    scsi_sense_field(c, 1, 4, 7);
    return;
  }
  if (pc != 0) return; /* no power states: nothing to change */
  if (loej) {          /* the medium is not removable (RMB 0) */
    scsi_sense_field(c, 1, 4, 1);
    return;
  }
  if (!start && !no_flush) { /* stopping: write the cache out first */
    struct err e;
    err_init(&e);
    if (vol_flush(lu->vol, &e) < 0) scsi_sense(c, SK_MEDIUM_ERROR, ASC_WRITE_ERROR);
  }
}

void scsi_cmd_prevent_allow(struct scsi_lu *lu, struct scsi_cmd *c) {
  (void)lu;
  (void)c; /* not removable: nothing to lock (SBC-3 5.13) */
}

/* ---- REPORT TARGET PORT GROUPS ------------------------------------------------- */

void scsi_cmd_report_tpgs(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t format = c->cdb[1] >> 5;
  uint32_t alloc = get_be32(c->cdb + 6);
  if (format > 1) {
    scsi_sense_field(c, 1, 1, 7);
    return;
  }
  uint8_t b[32] = {0};
  size_t h = format == 1 ? 8 : 4;
  uint8_t *d = b + h;
  d[0] = 0x80 | 0x00; /* PREF, active/optimized */
  d[1] = 0x01;        /* only the active/optimized state is supported */
  put_be16(d + 2, lu->tpg);
  d[7] = 1; /* one target port */
  put_be16(d + 10, lu->rel_port);
  size_t n = h + 12;
  put_be32(b, (uint32_t)(n - 4));
  if (format == 1) b[4] = 0x10; /* format type 1; implicit transition time 0 */
  scsi_data_in(c, b, n, alloc);
}

/* ---- REPORT SUPPORTED OPERATION CODES -------------------------------------------- */

static void timeouts_descriptor(uint8_t *p) {
  memset(p, 0, 12);
  put_be16(p, 0x0a);
  put_be32(p + 8, 30); /* recommended timeout: 30 s; nominal unspecified */
}

static int offered(const struct scsi_lu *lu, const struct scsi_op *op) {
  return !(op->flags & OPF_LBA_STATUS) || lu->block_status;
}

void scsi_cmd_report_opcodes(struct scsi_lu *lu, struct scsi_cmd *c) {
  int rctd = c->cdb[2] & 0x80;
  uint8_t options = c->cdb[2] & 0x07;
  uint8_t req_op = c->cdb[3];
  uint16_t req_sa = get_be16(c->cdb + 4);
  uint32_t alloc = get_be32(c->cdb + 6);
  size_t nops;
  const struct scsi_op *tab = scsi_op_table(&nops);

  if (options == 0) { /* all commands */
    size_t per = rctd ? 20 : 8;
    uint8_t *b = calloc(1, 4 + nops * per);
    if (!b) {
      scsi_busy(c);
      return;
    }
    size_t n = 4;
    for (size_t i = 0; i < nops; i++) {
      if (!offered(lu, &tab[i])) continue;
      uint8_t *d = b + n;
      d[0] = tab[i].opcode;
      if (tab[i].flags & OPF_SA) put_be16(d + 2, tab[i].sa);
      d[5] = (uint8_t)((rctd ? 0x02 : 0) | ((tab[i].flags & OPF_SA) ? 0x01 : 0));
      put_be16(d + 6, tab[i].cdb_len);
      if (rctd) timeouts_descriptor(d + 8);
      n += per;
    }
    put_be32(b, (uint32_t)(n - 4));
    scsi_data_in(c, b, n, alloc);
    free(b);
    return;
  }
  if (options > 3) {
    scsi_sense_field(c, 1, 2, 2);
    return;
  }
  /* One command. 1: by opcode, which must not have service actions;
   * 2: by opcode and service action, which it must have; 3: either. */
  const struct scsi_op *op = NULL;
  int has_sa = 0;
  for (size_t i = 0; i < nops; i++) {
    if (tab[i].opcode != req_op || !offered(lu, &tab[i])) continue;
    has_sa = tab[i].flags & OPF_SA;
    if (!has_sa || tab[i].sa == req_sa) {
      op = &tab[i];
      break;
    }
  }
  if ((options == 1 && has_sa) || (options == 2 && !has_sa && op)) {
    scsi_sense_field(c, 1, 2, 2);
    return;
  }
  uint8_t b[4 + 16 + 12] = {0};
  size_t n = 4;
  if (!op) {
    b[1] = 0x01; /* not supported */
  } else {
    b[1] = (uint8_t)((rctd ? 0x80 : 0) | 0x03); /* supported as the standard says */
    put_be16(b + 2, op->cdb_len);
    memcpy(b + 4, op->usage, op->cdb_len);
    if (op->flags & OPF_SA) /* the service action field holds the action itself */
      b[5] = (uint8_t)((op->usage[1] & 0xe0) | op->sa);
    n += op->cdb_len;
    if (rctd) {
      timeouts_descriptor(b + n);
      n += 12;
    }
  }
  scsi_data_in(c, b, n, alloc);
}
