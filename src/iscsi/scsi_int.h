/* scsi_int.h — private to the SCSI layer (scsi.c, scsi_block.c, scsi_mode.c,
 * scsi_pr.c): the logical unit's state, the per-nexus state, the command
 * table entry and the helpers the command files share. The transport sees
 * only scsi.h.
 *
 * Locking: lu->lock (a mutex) guards the nexus list, unit attentions, the
 * reservations and the mode pages' writers; it is never held across volume
 * I/O. The hot path (READ/WRITE) takes no lock at all when no unit attention
 * is pending and no reservation exists: two atomic loads decide that.
 * lu->caw_lock is the one lock a write takes: shared for every write, so
 * writes run in parallel, exclusive for COMPARE AND WRITE, which makes it
 * atomic against every other write to the LU. */
#ifndef STREAMER_SCSI_INT_H
#define STREAMER_SCSI_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "iscsi/pdu.h"
#include "iscsi/scsi.h"

/* ---- limits we report (Block Limits VPD) ---------------------------------- */
#define SCSI_MAX_XFER_BLOCKS (SCSI_MAX_XFER_BYTES / SCSI_BLOCK_SIZE)
#define SCSI_OPT_XFER_BLOCKS 2048u /* 1 MiB */
#define SCSI_GRANULARITY_BLOCKS 8u /* 4 KiB: volume clusters, file system blocks */
#define SCSI_LBPPBE 0u /* one logical block per physical block: see READ CAPACITY (16) */
#define SCSI_MAX_UNMAP_BLOCKS 0x100000u /* 512 MiB per UNMAP command */
#define SCSI_MAX_UNMAP_DESCRIPTORS 2048u
#define SCSI_MAX_WRITE_SAME_BLOCKS 0xffffu /* what WRITE SAME (10) can ask for */
#define SCSI_MAX_CAW_BLOCKS 128u           /* COMPARE AND WRITE */
#define SCSI_UA_MAX 16                     /* pending unit attentions per nexus */

/* ---- sense keys and additional sense codes we use --------------------------- */
enum {
  SK_NO_SENSE = 0x0,
  SK_NOT_READY = 0x2,
  SK_MEDIUM_ERROR = 0x3,
  SK_HARDWARE_ERROR = 0x4,
  SK_ILLEGAL_REQUEST = 0x5,
  SK_UNIT_ATTENTION = 0x6,
  SK_DATA_PROTECT = 0x7,
  SK_ABORTED_COMMAND = 0xB,
  SK_MISCOMPARE = 0xE,
};
/* ASC << 8 | ASCQ */
enum {
  ASC_NONE = 0x0000,
  ASC_WRITE_ERROR = 0x0C00,
  ASC_UNRECOVERED_READ_ERROR = 0x1100,
  ASC_PARAMETER_LIST_LENGTH_ERROR = 0x1A00,
  ASC_MISCOMPARE_DURING_VERIFY = 0x1D00,
  ASC_INVALID_OPCODE = 0x2000,
  ASC_LBA_OUT_OF_RANGE = 0x2100,
  ASC_INVALID_FIELD_IN_CDB = 0x2400,
  ASC_LU_NOT_SUPPORTED = 0x2500,
  ASC_INVALID_FIELD_IN_PARAMETER_LIST = 0x2600,
  ASC_INVALID_RELEASE_OF_PR = 0x2604,
  ASC_WRITE_PROTECTED = 0x2700,
  ASC_SOFTWARE_WRITE_PROTECTED = 0x2702,
  ASC_POWER_ON_OCCURRED = 0x2901,
  ASC_BUS_DEVICE_RESET = 0x2903,
  ASC_MODE_PARAMETERS_CHANGED = 0x2A01,
  ASC_RESERVATIONS_PREEMPTED = 0x2A03,
  ASC_RESERVATIONS_RELEASED = 0x2A04,
  ASC_REGISTRATIONS_PREEMPTED = 0x2A05,
  ASC_SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900,
  ASC_INSUFFICIENT_REGISTRATION_RESOURCES = 0x5504,
};

/* ---- persistent reservations -------------------------------------------- */
enum {
  PR_TYPE_NONE = 0,
  PR_WRITE_EXCLUSIVE = 1,
  PR_EXCLUSIVE_ACCESS = 3,
  PR_WRITE_EXCLUSIVE_RO = 5,
  PR_EXCLUSIVE_ACCESS_RO = 6,
  PR_WRITE_EXCLUSIVE_AR = 7,
  PR_EXCLUSIVE_ACCESS_AR = 8,
};
#define SCSI_PR_MAX_REGISTRATIONS 64

/* One registration: an I_T nexus is identified by its initiator port name
 * ("iqn...,i,0x<isid>"), so it survives the session and is found again when
 * the same initiator port logs in again. */
struct scsi_pr_reg {
  char *port_name;
  char *initiator;
  uint64_t key;
  struct scsi_pr_reg *next;
};

/* ---- per-nexus state ---------------------------------------------------- */
struct scsi_itn {
  uint64_t id;
  char *port_name;
  char *initiator;
  uint16_t ua[SCSI_UA_MAX]; /* pending unit attentions (ASC << 8 | ASCQ), oldest first */
  int nua;
  struct scsi_itn *next;
};

/* ---- the logical unit ----------------------------------------------------- */
struct scsi_lu {
  struct vol *vol;
  scsi_block_status_fn block_status; /* NULL: GET LBA STATUS is not offered */
  uint64_t nblocks;
  int read_only;
  char *unit_id;
  char *target_name;
  uint16_t rel_port, tpg;
  uint8_t naa[8]; /* NAA 3 (locally assigned) designator */

  pthread_mutex_t lock;
  struct scsi_itn *itns; /* live nexuses */
  atomic_int ua_count;   /* pending unit attentions over all nexuses */
  atomic_int reserved;   /* an SPC-2 or a persistent reservation exists */

  /* SPC-2 RESERVE(6)/(10): holder nexus id, valid when spc2_reserved */
  int spc2_reserved;
  uint64_t spc2_holder;

  /* persistent reservations */
  struct scsi_pr_reg *regs;
  int nregs;
  uint32_t pr_generation;
  uint8_t pr_type;            /* PR_TYPE_NONE: no persistent reservation */
  struct scsi_pr_reg *holder; /* NULL for all-registrants types */

  /* mode parameters (current values; writers hold lock) */
  atomic_int wce; /* Caching page: write cache enabled */
  atomic_int swp; /* Control page: software write protect */

  pthread_rwlock_t caw_lock;

  atomic_uint_fast64_t read_bytes, write_bytes, commands, errors;
};

/* ---- the command table ---------------------------------------------------- */
/* How a command fares under a persistent reservation held by someone else
 * (SPC-4 5.12, tables of commands allowed in the presence of reservations). */
enum {
  PRC_ALLOWED, /* always allowed (INQUIRY, REPORT LUNS, PR IN, READ CAPACITY, ...) */
  PRC_READ,    /* reads the medium: conflicts for Exclusive Access types */
  PRC_WRITE,   /* changes the medium or the LU: conflicts for every type */
  PRC_SPECIAL, /* decided by the command itself (PR OUT, RESERVE, RELEASE) */
};
/* flags */
#define OPF_UA_EXEMPT 0x01  /* INQUIRY, REPORT LUNS, REQUEST SENSE: no unit attention */
#define OPF_SPC2_OK 0x02    /* allowed under another nexus' RESERVE(6) */
#define OPF_ANY_LUN 0x04    /* answered for any LUN (INQUIRY, REPORT LUNS, REQUEST SENSE) */
#define OPF_SA 0x08         /* the opcode has service actions (sa is meaningful) */
#define OPF_LBA_STATUS 0x10 /* offered only when the LU has a block_status query */
#define OPF_SA_FIELD                                                                               \
  0x20 /* an unknown service action is INVALID FIELD IN CDB (it is a                               \
          parameter of one command: PR IN/OUT), not INVALID OPCODE */

struct scsi_op {
  uint8_t opcode;
  uint8_t sa;
  uint8_t cdb_len;
  uint8_t flags;
  uint8_t pr_class;
  void (*fn)(struct scsi_lu *lu, struct scsi_cmd *c);
  uint8_t usage[16]; /* CDB usage data: bits the device server looks at */
};

/* The table (scsi.c) and lookup. NULL: not supported. */
const struct scsi_op *scsi_op_find(const uint8_t *cdb, size_t cdb_len);
const struct scsi_op *scsi_op_table(size_t *n);

/* ---- helpers shared by the command files (scsi.c) ---------------------------- */
/* get_be16 .. put_be64 come from pdu.h (big-endian field access). */

/* CHECK CONDITION with key/ASC/ASCQ. */
void scsi_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc);
/* ILLEGAL REQUEST / INVALID FIELD IN CDB (cdb = 1) or IN PARAMETER LIST
 * (cdb = 0) with the sense-key-specific field pointer: byte, and bit (0..7,
 * or -1 when the whole byte is meant). */
void scsi_sense_field(struct scsi_cmd *c, int cdb, uint32_t byte, int bit);
/* Sense with the INFORMATION field set (VALID bit). */
void scsi_sense_info(struct scsi_cmd *c, uint8_t key, uint16_t asc, uint64_t info);
/* Hand `len` bytes of `buf` (copied into a fresh allocation, cut to the
 * allocation length `alloc`) to the initiator as Data-In. */
void scsi_data_in(struct scsi_cmd *c, const void *buf, size_t len, uint32_t alloc);
/* Out of memory: BUSY, so the initiator retries. */
void scsi_busy(struct scsi_cmd *c);

/* Unit attention for every nexus but `except` (0 = none excepted);
 * lu->lock held. */
void scsi_ua_all_locked(struct scsi_lu *lu, uint64_t except, uint16_t asc);
/* Unit attention for the nexuses of initiator port `port_name`; lu->lock held. */
void scsi_ua_port_locked(struct scsi_lu *lu, const char *port_name, uint16_t asc);
struct scsi_itn *scsi_itn_find_locked(struct scsi_lu *lu, uint64_t id);

/* Writes refused: read-only volume (27/00) or software write protect (27/02).
 * Returns nonzero after setting the sense. */
int scsi_write_protected(struct scsi_lu *lu, struct scsi_cmd *c);

/* Recompute lu->reserved after a reservation changed; lu->lock held. */
void scsi_res_update_locked(struct scsi_lu *lu);
/* Take the oldest pending unit attention of nexus n (0: none). */
uint16_t scsi_ua_take(struct scsi_lu *lu, const struct scsi_nexus *n);

/* ---- command handlers ---------------------------------------------------- */
/* scsi_spc.c */
void scsi_cmd_test_unit_ready(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_request_sense(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_inquiry(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_report_luns(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_read_capacity10(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_read_capacity16(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_start_stop_unit(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_prevent_allow(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_report_tpgs(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_report_opcodes(struct scsi_lu *lu, struct scsi_cmd *c);
/* scsi_block.c */
void scsi_cmd_read(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_write(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_orwrite(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_verify(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_write_same(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_unmap(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_compare_and_write(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_sync_cache(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_prefetch(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_get_lba_status(struct scsi_lu *lu, struct scsi_cmd *c);
/* scsi_mode.c */
void scsi_cmd_mode_sense(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_mode_select(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_mode_reset_locked(struct scsi_lu *lu);
/* scsi_pr.c */
void scsi_cmd_pr_in(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_pr_out(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_reserve(struct scsi_lu *lu, struct scsi_cmd *c);
void scsi_cmd_release(struct scsi_lu *lu, struct scsi_cmd *c);
/* Does command c (table entry op) conflict with a reservation? lu->lock held. */
int scsi_pr_conflict_locked(struct scsi_lu *lu, const struct scsi_op *op, const struct scsi_cmd *c);
void scsi_pr_free(struct scsi_lu *lu);

#endif
