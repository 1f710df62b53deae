/* scsi.c — the core of the SCSI block device: the logical unit's life, the
 * I_T nexuses and their unit attentions, sense data, the command table and
 * scsi_exec's checks in the order SAM-5 wants them (LUN, unit attention,
 * reservation conflict, reserved CDB bits) before a command's handler runs.
 * The handlers live in scsi_spc.c (inquiry, capacity, reports), scsi_block.c
 * (the medium), scsi_mode.c (mode pages) and scsi_pr.c (reservations). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi_int.h"

/* ---- the command table -------------------------------------------------------
 * One entry per opcode (per service action where the opcode has them), with
 * its CDB usage data: every bit a well-formed CDB may set. scsi_exec refuses
 * any other bit with INVALID FIELD IN CDB pointing at it, so handlers only
 * check values, never reserved bits; REPORT SUPPORTED OPERATION CODES
 * reports the same bitmaps. The control byte's usage is 0 (no NACA, no LINK);
 * its vendor-specific bits 7-6 are ignored. */
#define LBA4 0xff, 0xff, 0xff, 0xff
#define LBA8 LBA4, LBA4
#define LEN2 0xff, 0xff
#define LEN4 LBA4

static const struct scsi_op ops[] = {
    {0x00, 0, 6, 0, PRC_ALLOWED, scsi_cmd_test_unit_ready, {0x00, 0, 0, 0, 0, 0}},
    {0x03,
     0,
     6,
     OPF_UA_EXEMPT | OPF_SPC2_OK | OPF_ANY_LUN,
     PRC_ALLOWED,
     scsi_cmd_request_sense,
     {0x03, 0, 0, 0, 0xff, 0}},
    {0x08, 0, 6, 0, PRC_READ, scsi_cmd_read, {0x08, 0x1f, 0xff, 0xff, 0xff, 0}},
    {0x0a, 0, 6, 0, PRC_WRITE, scsi_cmd_write, {0x0a, 0x1f, 0xff, 0xff, 0xff, 0}},
    {0x12,
     0,
     6,
     OPF_UA_EXEMPT | OPF_SPC2_OK | OPF_ANY_LUN,
     PRC_ALLOWED,
     scsi_cmd_inquiry,
     {0x12, 0x01, 0xff, 0xff, 0xff, 0}},
    {0x15, 0, 6, 0, PRC_WRITE, scsi_cmd_mode_select, {0x15, 0x10, 0, 0, 0xff, 0}},
    {0x16, 0, 6, 0, PRC_SPECIAL, scsi_cmd_reserve, {0x16, 0, 0, 0, 0, 0}},
    {0x17, 0, 6, OPF_SPC2_OK, PRC_SPECIAL, scsi_cmd_release, {0x17, 0, 0, 0, 0, 0}},
    {0x1a, 0, 6, 0, PRC_READ, scsi_cmd_mode_sense, {0x1a, 0x08, 0xff, 0xff, 0xff, 0}},
    {0x1b, 0, 6, 0, PRC_SPECIAL, scsi_cmd_start_stop_unit, {0x1b, 0x01, 0, 0x0f, 0xf7, 0}},
    {0x1e, 0, 6, 0, PRC_SPECIAL, scsi_cmd_prevent_allow, {0x1e, 0, 0, 0, 0x03, 0}},
    {0x25, 0, 10, 0, PRC_ALLOWED, scsi_cmd_read_capacity10, {0x25, 0, LBA4, 0, 0, 0x01, 0}},
    {0x28, 0, 10, 0, PRC_READ, scsi_cmd_read, {0x28, 0x1a, LBA4, 0x1f, LEN2, 0}},
    {0x2a, 0, 10, 0, PRC_WRITE, scsi_cmd_write, {0x2a, 0x1a, LBA4, 0x1f, LEN2, 0}},
    {0x2e, 0, 10, 0, PRC_WRITE, scsi_cmd_write, {0x2e, 0x12, LBA4, 0x1f, LEN2, 0}},
    {0x2f, 0, 10, 0, PRC_READ, scsi_cmd_verify, {0x2f, 0x16, LBA4, 0x1f, LEN2, 0}},
    {0x34, 0, 10, 0, PRC_READ, scsi_cmd_prefetch, {0x34, 0x02, LBA4, 0x1f, LEN2, 0}},
    {0x35, 0, 10, 0, PRC_WRITE, scsi_cmd_sync_cache, {0x35, 0x02, LBA4, 0x1f, LEN2, 0}},
    {0x41, 0, 10, 0, PRC_WRITE, scsi_cmd_write_same, {0x41, 0x08, LBA4, 0x1f, LEN2, 0}},
    {0x42, 0, 10, 0, PRC_WRITE, scsi_cmd_unmap, {0x42, 0, 0, 0, 0, 0, 0x1f, LEN2, 0}},
    {0x55, 0, 10, 0, PRC_WRITE, scsi_cmd_mode_select, {0x55, 0x10, 0, 0, 0, 0, 0, LEN2, 0}},
    {0x56, 0, 10, 0, PRC_SPECIAL, scsi_cmd_reserve, {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {0x57, 0, 10, OPF_SPC2_OK, PRC_SPECIAL, scsi_cmd_release, {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
    {0x5a, 0, 10, 0, PRC_READ, scsi_cmd_mode_sense, {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, LEN2, 0}},
    /* PERSISTENT RESERVE IN: READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
     * READ FULL STATUS */
    {0x5e,
     0,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_ALLOWED,
     scsi_cmd_pr_in,
     {0x5e, 0x1f, 0, 0, 0, 0, 0, LEN2, 0}},
    {0x5e,
     1,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_ALLOWED,
     scsi_cmd_pr_in,
     {0x5e, 0x1f, 0, 0, 0, 0, 0, LEN2, 0}},
    {0x5e,
     2,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_ALLOWED,
     scsi_cmd_pr_in,
     {0x5e, 0x1f, 0, 0, 0, 0, 0, LEN2, 0}},
    {0x5e,
     3,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_ALLOWED,
     scsi_cmd_pr_in,
     {0x5e, 0x1f, 0, 0, 0, 0, 0, LEN2, 0}},
    /* PERSISTENT RESERVE OUT: REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT,
     * PREEMPT AND ABORT, REGISTER AND IGNORE EXISTING KEY */
    {0x5f,
     0,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     1,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     2,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     3,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     4,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     5,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x5f,
     6,
     10,
     OPF_SA | OPF_SA_FIELD,
     PRC_SPECIAL,
     scsi_cmd_pr_out,
     {0x5f, 0x1f, 0xff, 0, 0, LEN4, 0}},
    {0x88, 0, 16, 0, PRC_READ, scsi_cmd_read, {0x88, 0x1a, LBA8, LEN4, 0x1f, 0}},
    {0x89,
     0,
     16,
     0,
     PRC_WRITE,
     scsi_cmd_compare_and_write,
     {0x89, 0x1a, LBA8, 0, 0, 0, 0xff, 0x1f, 0}},
    {0x8a, 0, 16, 0, PRC_WRITE, scsi_cmd_write, {0x8a, 0x1a, LBA8, LEN4, 0x1f, 0}},
    {0x8b, 0, 16, 0, PRC_WRITE, scsi_cmd_orwrite, {0x8b, 0x1a, LBA8, LEN4, 0x1f, 0}},
    {0x8e, 0, 16, 0, PRC_WRITE, scsi_cmd_write, {0x8e, 0x12, LBA8, LEN4, 0x1f, 0}},
    {0x8f, 0, 16, 0, PRC_READ, scsi_cmd_verify, {0x8f, 0x16, LBA8, LEN4, 0x1f, 0}},
    {0x90, 0, 16, 0, PRC_READ, scsi_cmd_prefetch, {0x90, 0x02, LBA8, LEN4, 0x1f, 0}},
    {0x91, 0, 16, 0, PRC_WRITE, scsi_cmd_sync_cache, {0x91, 0x02, LBA8, LEN4, 0x1f, 0}},
    {0x93, 0, 16, 0, PRC_WRITE, scsi_cmd_write_same, {0x93, 0x09, LBA8, LEN4, 0x1f, 0}},
    /* SERVICE ACTION IN (16): READ CAPACITY (16), GET LBA STATUS */
    {0x9e,
     0x10,
     16,
     OPF_SA,
     PRC_ALLOWED,
     scsi_cmd_read_capacity16,
     {0x9e, 0x1f, LBA8, LEN4, 0x01, 0}},
    {0x9e,
     0x12,
     16,
     OPF_SA | OPF_LBA_STATUS,
     PRC_READ,
     scsi_cmd_get_lba_status,
     {0x9e, 0x1f, LBA8, LEN4, 0, 0}},
    {0xa0,
     0,
     12,
     OPF_UA_EXEMPT | OPF_SPC2_OK | OPF_ANY_LUN,
     PRC_ALLOWED,
     scsi_cmd_report_luns,
     {0xa0, 0, 0xff, 0, 0, 0, LEN4, 0, 0}},
    /* MAINTENANCE IN: REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES */
    {0xa3,
     0x0a,
     12,
     OPF_SA,
     PRC_ALLOWED,
     scsi_cmd_report_tpgs,
     {0xa3, 0x3f, 0, 0, 0, 0, LEN4, 0, 0}},
    {0xa3,
     0x0c,
     12,
     OPF_SA,
     PRC_ALLOWED,
     scsi_cmd_report_opcodes,
     {0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, LEN4, 0, 0}},
    {0xa8, 0, 12, 0, PRC_READ, scsi_cmd_read, {0xa8, 0x1a, LBA4, LEN4, 0x1f, 0}},
    {0xaa, 0, 12, 0, PRC_WRITE, scsi_cmd_write, {0xaa, 0x1a, LBA4, LEN4, 0x1f, 0}},
    {0xae, 0, 12, 0, PRC_WRITE, scsi_cmd_write, {0xae, 0x12, LBA4, LEN4, 0x1f, 0}},
    {0xaf, 0, 12, 0, PRC_READ, scsi_cmd_verify, {0xaf, 0x16, LBA4, LEN4, 0x1f, 0}},
};
#define NOPS (sizeof ops / sizeof ops[0])

/* First table index + 1 of each opcode (0: not supported); built once. */
static uint8_t op_first[256];
static pthread_once_t op_once = PTHREAD_ONCE_INIT;

static void op_index_build(void) {
  for (size_t i = NOPS; i-- > 0;)
    op_first[ops[i].opcode] = (uint8_t)(i + 1);
}

const struct scsi_op *scsi_op_table(size_t *n) {
  *n = NOPS;
  return ops;
}

static const struct scsi_op *op_lookup(uint8_t opcode, uint8_t sa) {
  pthread_once(&op_once, op_index_build);
  int i = op_first[opcode];
  if (!i) return NULL;
  const struct scsi_op *op = &ops[i - 1];
  if (!(op->flags & OPF_SA)) return op;
  for (; op < ops + NOPS && op->opcode == opcode; op++)
    if (op->sa == sa) return op;
  return NULL;
}

const struct scsi_op *scsi_op_find(const uint8_t *cdb, size_t cdb_len) {
  if (cdb_len < 1) return NULL;
  return op_lookup(cdb[0], cdb_len > 1 ? cdb[1] & 0x1f : 0);
}

/* ---- sense data ------------------------------------------------------------ */

void scsi_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc) {
  c->status = SCSI_CHECK_CONDITION;
  memset(c->sense, 0, 18);
  c->sense[0] = 0x70; /* current error, fixed format */
  c->sense[2] = key & 0x0f;
  c->sense[7] = 10; /* additional sense length: bytes 8..17 */
  c->sense[12] = (uint8_t)(asc >> 8);
  c->sense[13] = (uint8_t)asc;
  c->sense_len = 18;
}

void scsi_set_sense(struct scsi_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq) {
  scsi_sense(c, key, (uint16_t)(asc << 8 | ascq));
}

void scsi_sense_field(struct scsi_cmd *c, int cdb, uint32_t byte, int bit) {
  scsi_sense(c, SK_ILLEGAL_REQUEST,
             cdb ? ASC_INVALID_FIELD_IN_CDB : ASC_INVALID_FIELD_IN_PARAMETER_LIST);
  if (byte > 0xffff) return;                               /* cannot point that far */
  c->sense[15] = 0x80 | (cdb ? 0x40 : 0);                  /* SKSV, C/D */
  if (bit >= 0) c->sense[15] |= 0x08 | (uint8_t)(bit & 7); /* BPV, bit pointer */
  put_be16(c->sense + 16, (uint16_t)byte);
}

void scsi_sense_info(struct scsi_cmd *c, uint8_t key, uint16_t asc, uint64_t info) {
  scsi_sense(c, key, asc);
  if (info <= 0xffffffffu) { /* fixed format holds 4 bytes of INFORMATION */
    c->sense[0] |= 0x80;     /* VALID */
    put_be32(c->sense + 3, (uint32_t)info);
  }
}

void scsi_busy(struct scsi_cmd *c) {
  c->status = SCSI_BUSY;
  c->sense_len = 0;
}

void scsi_data_in(struct scsi_cmd *c, const void *buf, size_t len, uint32_t alloc) {
  if (len > alloc) len = alloc;
  if (len == 0) return;
  c->data_in = malloc(len);
  if (!c->data_in) {
    scsi_busy(c);
    return;
  }
  memcpy(c->data_in, buf, len);
  c->data_in_len = (uint32_t)len;
}

int scsi_write_protected(struct scsi_lu *lu, struct scsi_cmd *c) {
  if (lu->read_only) {
    scsi_sense(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    return 1;
  }
  if (atomic_load_explicit(&lu->swp, memory_order_relaxed)) {
    scsi_sense(c, SK_DATA_PROTECT, ASC_SOFTWARE_WRITE_PROTECTED);
    return 1;
  }
  return 0;
}

/* ---- the logical unit ------------------------------------------------------ */

/* NAA 3 ("locally assigned", SPC-4 7.8.6.6.3): we own no IEEE OUI, so the 60
 * bits after the NAA nibble come from the unit id: its first 15 hex digits
 * (dashes skipped) when it has them — a UUID does, and the designator then
 * reads as "3" followed by the start of the UUID — else a 64-bit FNV-1a hash
 * of the whole id. Stable across restarts and hosts for the same volume. */
static void naa_from_unit_id(const char *id, uint8_t out[8]) {
  uint64_t v = 0;
  int digits = 0;
  for (const char *p = id; *p && digits < 15; p++) {
    int d;
    if (*p >= '0' && *p <= '9')
      d = *p - '0';
    else if (*p >= 'a' && *p <= 'f')
      d = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F')
      d = *p - 'A' + 10;
    else if (*p == '-')
      continue;
    else
      break;
    v = v << 4 | (uint64_t)d;
    digits++;
  }
  if (digits < 15) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = id; *p; p++)
      h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    v = h & 0x0fffffffffffffffull;
  }
  put_be64(out, 0x3000000000000000ull | v);
}

struct scsi_lu *scsi_lu_new(const struct scsi_lu_config *cfg, struct err *e) {
  if (!cfg || !cfg->vol || !cfg->unit_id || !*cfg->unit_id || !cfg->target_name) {
    err_set(e, 500, "ISCSI_INTERNAL", "SCSI logical unit: volume, unit id and target name needed");
    return NULL;
  }
  if (vol_size(cfg->vol) < SCSI_BLOCK_SIZE) {
    err_set(e, 400, "ISCSI_VOLUME_TOO_SMALL",
            "SCSI logical unit %s: the volume holds %llu bytes, less than one 512-byte block",
            cfg->unit_id, (unsigned long long)vol_size(cfg->vol));
    return NULL;
  }
  struct scsi_lu *lu = calloc(1, sizeof *lu);
  if (!lu) goto nomem;
  lu->vol = cfg->vol;
  lu->block_status = cfg->block_status;
  lu->nblocks = vol_size(cfg->vol) / SCSI_BLOCK_SIZE; /* a partial last block is not exposed */
  lu->read_only = vol_read_only(cfg->vol);
  lu->unit_id = strdup(cfg->unit_id);
  lu->target_name = strdup(cfg->target_name);
  if (!lu->unit_id || !lu->target_name) goto nomem;
  lu->rel_port = cfg->rel_port ? cfg->rel_port : 1;
  lu->tpg = cfg->tpg ? cfg->tpg : 1;
  naa_from_unit_id(lu->unit_id, lu->naa);
  pthread_mutex_init(&lu->lock, NULL);
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* COMPARE AND WRITE must not starve behind a steady stream of writes. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lu->caw_lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  scsi_mode_reset_locked(lu);
  return lu;
nomem:
  if (lu) {
    free(lu->unit_id);
    free(lu->target_name);
    free(lu);
  }
  err_set(e, 500, "ISCSI_NO_MEMORY", "SCSI logical unit %s: out of memory", cfg->unit_id);
  return NULL;
}

static void itn_free(struct scsi_itn *t) {
  if (!t) return;
  free(t->port_name);
  free(t->initiator);
  free(t);
}

void scsi_lu_free(struct scsi_lu *lu) {
  if (!lu) return;
  while (lu->itns) {
    struct scsi_itn *t = lu->itns;
    lu->itns = t->next;
    itn_free(t);
  }
  scsi_pr_free(lu);
  pthread_rwlock_destroy(&lu->caw_lock);
  pthread_mutex_destroy(&lu->lock);
  free(lu->unit_id);
  free(lu->target_name);
  free(lu);
}

void scsi_lu_stats(struct scsi_lu *lu, struct scsi_lu_stats *out) {
  out->read_bytes = atomic_load_explicit(&lu->read_bytes, memory_order_relaxed);
  out->write_bytes = atomic_load_explicit(&lu->write_bytes, memory_order_relaxed);
  out->commands = atomic_load_explicit(&lu->commands, memory_order_relaxed);
  out->errors = atomic_load_explicit(&lu->errors, memory_order_relaxed);
}

/* ---- nexuses and unit attentions -------------------------------------------- */

struct scsi_itn *scsi_itn_find_locked(struct scsi_lu *lu, uint64_t id) {
  for (struct scsi_itn *t = lu->itns; t; t = t->next)
    if (t->id == id) return t;
  return NULL;
}

/* Queue a unit attention. A reset or power on supersedes everything pending
 * (SAM-5 5.14: it is the one the initiator must see); otherwise duplicates
 * are dropped, and so is a new condition when the queue is full (the oldest
 * ones are reported first and carry the most information). */
static void ua_add_locked(struct scsi_lu *lu, struct scsi_itn *t, uint16_t asc) {
  if ((asc >> 8) == 0x29) {
    atomic_fetch_sub(&lu->ua_count, t->nua);
    t->nua = 0;
  }
  for (int i = 0; i < t->nua; i++)
    if (t->ua[i] == asc) return;
  if (t->nua == SCSI_UA_MAX) return;
  t->ua[t->nua++] = asc;
  atomic_fetch_add(&lu->ua_count, 1);
}

void scsi_ua_all_locked(struct scsi_lu *lu, uint64_t except, uint16_t asc) {
  for (struct scsi_itn *t = lu->itns; t; t = t->next)
    if (!except || t->id != except) ua_add_locked(lu, t, asc);
}

void scsi_ua_port_locked(struct scsi_lu *lu, const char *port_name, uint16_t asc) {
  for (struct scsi_itn *t = lu->itns; t; t = t->next)
    if (t->port_name && !strcmp(t->port_name, port_name)) ua_add_locked(lu, t, asc);
}

/* Take the oldest unit attention of nexus `id`: 0 if none. */
static uint16_t ua_take(struct scsi_lu *lu, uint64_t id) {
  uint16_t asc = 0;
  pthread_mutex_lock(&lu->lock);
  struct scsi_itn *t = scsi_itn_find_locked(lu, id);
  if (t && t->nua) {
    asc = t->ua[0];
    memmove(t->ua, t->ua + 1, (size_t)(t->nua - 1) * sizeof t->ua[0]);
    t->nua--;
    atomic_fetch_sub(&lu->ua_count, 1);
  }
  pthread_mutex_unlock(&lu->lock);
  return asc;
}

uint16_t scsi_ua_take(struct scsi_lu *lu, const struct scsi_nexus *n) {
  if (!n || !atomic_load_explicit(&lu->ua_count, memory_order_acquire)) return 0;
  return ua_take(lu, n->id);
}

void scsi_lu_nexus_add(struct scsi_lu *lu, const struct scsi_nexus *n) {
  struct scsi_itn *t = calloc(1, sizeof *t);
  if (!t) return; /* commands from it then find no state: they still run */
  t->id = n->id;
  t->port_name = strdup(n->port_name ? n->port_name : "");
  t->initiator = strdup(n->initiator ? n->initiator : "");
  if (!t->port_name || !t->initiator) {
    itn_free(t);
    return;
  }
  pthread_mutex_lock(&lu->lock);
  if (scsi_itn_find_locked(lu, n->id)) {
    pthread_mutex_unlock(&lu->lock);
    itn_free(t);
    return;
  }
  t->next = lu->itns;
  lu->itns = t;
  pthread_mutex_unlock(&lu->lock);
}

void scsi_res_update_locked(struct scsi_lu *lu) {
  atomic_store(&lu->reserved, lu->spc2_reserved || lu->pr_type != PR_TYPE_NONE);
}

void scsi_lu_nexus_remove(struct scsi_lu *lu, uint64_t nexus_id) {
  pthread_mutex_lock(&lu->lock);
  for (struct scsi_itn **pp = &lu->itns; *pp; pp = &(*pp)->next) {
    struct scsi_itn *t = *pp;
    if (t->id != nexus_id) continue;
    *pp = t->next;
    atomic_fetch_sub(&lu->ua_count, t->nua);
    itn_free(t);
    break;
  }
  /* I_T nexus loss releases an SPC-2 reservation (SPC-2 5.5.1); persistent
   * registrations and reservations stay (SPC-4 5.12.1). */
  if (lu->spc2_reserved && lu->spc2_holder == nexus_id) {
    lu->spc2_reserved = 0;
    scsi_res_update_locked(lu);
  }
  pthread_mutex_unlock(&lu->lock);
}

void scsi_lu_reset(struct scsi_lu *lu, uint64_t nexus_id, int cold) {
  pthread_mutex_lock(&lu->lock);
  lu->spc2_reserved = 0;
  scsi_res_update_locked(lu);
  scsi_mode_reset_locked(lu);
  (void)nexus_id; /* the issuer is told as well */
  scsi_ua_all_locked(lu, 0, cold ? ASC_POWER_ON_OCCURRED : ASC_BUS_DEVICE_RESET);
  pthread_mutex_unlock(&lu->lock);
}

/* ---- Data-Out sizes --------------------------------------------------------- */

static int64_t blocks_bytes(uint64_t n) { return (int64_t)(n * SCSI_BLOCK_SIZE); }

int64_t scsi_cdb_data_out_len(const uint8_t *cdb, size_t cdb_len) {
  const struct scsi_op *op = scsi_op_find(cdb, cdb_len);
  if (!op) return -1;
  if (cdb_len < op->cdb_len) return -1;
  switch (cdb[0]) {
  case 0x0a: /* WRITE(6): 0 means 256 blocks */ return blocks_bytes(cdb[4] ? cdb[4] : 256);
  case 0x2a:
  case 0x2e: return blocks_bytes(get_be16(cdb + 7));
  case 0xaa:
  case 0xae: return blocks_bytes(get_be32(cdb + 6));
  case 0x8a:
  case 0x8b:
  case 0x8e: return blocks_bytes(get_be32(cdb + 10));
  case 0x2f:
  case 0xaf:
  case 0x8f: { /* VERIFY: BYTCHK 01 = the blocks, 11 = one block, 00 = none */
    uint64_t n = cdb[0] == 0x2f   ? get_be16(cdb + 7)
                 : cdb[0] == 0xaf ? get_be32(cdb + 6)
                                  : get_be32(cdb + 10);
    switch ((cdb[1] >> 1) & 3) {
    case 1: return blocks_bytes(n);
    case 3: return n ? SCSI_BLOCK_SIZE : 0;
    default: return 0;
    }
  }
  case 0x41: return SCSI_BLOCK_SIZE;
  case 0x93: return (cdb[1] & 0x01) ? 0 : SCSI_BLOCK_SIZE; /* NDOB: no data */
  case 0x89: return 2 * blocks_bytes(cdb[13]);
  case 0x42:
  case 0x55: return get_be16(cdb + 7);
  case 0x15: return cdb[4];
  case 0x5f: return get_be32(cdb + 5);
  default: return 0;
  }
}

/* ---- execution -------------------------------------------------------------- */

/* The first CDB bit outside the command's usage data, as (byte << 3 | bit),
 * or -1. The control byte's vendor-specific bits are not checked. */
static int cdb_reserved_bit(const struct scsi_op *op, const uint8_t *cdb) {
  for (int i = 1; i < op->cdb_len; i++) {
    uint8_t bad = cdb[i] & (uint8_t)~op->usage[i];
    if (i == op->cdb_len - 1) bad &= 0x3f;
    if (!bad) continue;
    int bit = 7;
    while (!(bad & (1u << bit)))
      bit--;
    return i << 3 | bit;
  }
  return -1;
}

void scsi_exec(struct scsi_lu *lu, struct scsi_cmd *c) {
  c->status = SCSI_GOOD;
  c->sense_len = 0;
  c->data_in = NULL;
  c->data_in_len = 0;
  atomic_fetch_add_explicit(&lu->commands, 1, memory_order_relaxed);

  const struct scsi_op *op = scsi_op_find(c->cdb, c->cdb_len);
  if (op && (op->flags & OPF_LBA_STATUS) && !lu->block_status) op = NULL;

  if (c->lun != 0 && !(op && (op->flags & OPF_ANY_LUN))) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
    goto done;
  }
  /* A pending unit attention is reported to any command but INQUIRY,
   * REPORT LUNS and REQUEST SENSE (SAM-5 5.14, SPC-4 5.14), including one
   * we do not support. */
  if ((!op || !(op->flags & OPF_UA_EXEMPT)) &&
      atomic_load_explicit(&lu->ua_count, memory_order_acquire) && c->nexus) {
    uint16_t asc = ua_take(lu, c->nexus->id);
    if (asc) {
      scsi_sense(c, SK_UNIT_ATTENTION, asc);
      goto done;
    }
  }
  if (!op) { /* an opcode, or an opcode and service action, we do not support */
    if (c->cdb_len >= 1 && op_first[c->cdb[0]] &&
        (ops[op_first[c->cdb[0]] - 1].flags & OPF_SA_FIELD))
      scsi_sense_field(c, 1, 1, 4);
    else
      scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    goto done;
  }
  if (c->cdb_len < op->cdb_len) {
    scsi_sense_field(c, 1, 0, -1);
    goto done;
  }
  if (atomic_load_explicit(&lu->reserved, memory_order_acquire)) {
    pthread_mutex_lock(&lu->lock);
    int conflict = scsi_pr_conflict_locked(lu, op, c);
    pthread_mutex_unlock(&lu->lock);
    if (conflict) {
      c->status = SCSI_RESERVATION_CONFLICT;
      goto done;
    }
  }
  int bad = cdb_reserved_bit(op, c->cdb);
  if (bad >= 0) {
    scsi_sense_field(c, 1, (uint32_t)(bad >> 3), bad & 7);
    goto done;
  }
  op->fn(lu, c);
done:
  if (vol_would_block) { /* a non-blocking read missed the page cache: the
                            transport repeats the command on a worker */
    atomic_fetch_sub_explicit(&lu->commands, 1, memory_order_relaxed);
    return;
  }
  if (c->status != SCSI_GOOD && c->status != SCSI_CONDITION_MET)
    atomic_fetch_add_explicit(&lu->errors, 1, memory_order_relaxed);
}
