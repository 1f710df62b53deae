/* scsi.h — a SCSI block device (SPC-4 / SBC-3) over a struct vol, independent
 * of the transport. The iSCSI layer collects a whole command (CDB and all
 * Data-Out) and calls scsi_exec on an I/O worker thread; scsi_exec may block
 * on volume I/O and is safe to call from many threads at once on one LU.
 * Internal to src/iscsi/. */
#ifndef STREAMER_SCSI_H
#define STREAMER_SCSI_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"
#include "vol/vol.h"

#define SCSI_BLOCK_SIZE 512u
/* Largest transfer one command may ask for (Block Limits VPD maximum
 * transfer length); larger → ILLEGAL REQUEST / INVALID FIELD IN CDB. */
#define SCSI_MAX_XFER_BYTES (8u << 20)

/* SAM status codes */
enum {
  SCSI_GOOD = 0x00,
  SCSI_CHECK_CONDITION = 0x02,
  SCSI_CONDITION_MET = 0x04,
  SCSI_BUSY = 0x08,
  SCSI_RESERVATION_CONFLICT = 0x18,
  SCSI_TASK_SET_FULL = 0x28,
  SCSI_TASK_ABORTED = 0x40,
};

struct scsi_lu;

/* Provisioning status of the volume at byte `off` (GET LBA STATUS): returns
 * SCSI_MAPPED or SCSI_DEALLOCATED (reads as zeros, holds no storage) and
 * sets *run to how many bytes from `off` (at least 1, at most `len`) share
 * that status; -1 with e set on failure. The shape of the optional volume
 * query proposed for vol.h (vol_ops.block_status); until it exists the
 * transport may leave it NULL, and GET LBA STATUS is then not offered. */
enum { SCSI_MAPPED = 0, SCSI_DEALLOCATED = 1 };
typedef int (*scsi_block_status_fn)(struct vol *v, uint64_t off, uint64_t len, uint64_t *run,
                                    struct err *e);

struct scsi_lu_config {
  struct vol *vol;         /* borrowed: must outlive the LU */
  const char *unit_id;     /* stable id (the volume UUID): serial and NAA derive from it */
  const char *target_name; /* the target's IQN, for VPD 0x83 SCSI name string designators */
  uint16_t rel_port;       /* relative target port identifier (1) */
  uint16_t tpg;            /* target port group (1), for REPORT TARGET PORT GROUPS */
  scsi_block_status_fn block_status; /* optional (NULL): see above */
};

struct scsi_lu *scsi_lu_new(const struct scsi_lu_config *cfg, struct err *e);
void scsi_lu_free(struct scsi_lu *lu);

/* An I_T nexus: one iSCSI session. id is unique for the process lifetime;
 * name is the initiator port name "iqn...,i,0x<isid hex>" (PR transport ids
 * use the initiator name before ",i,"). */
struct scsi_nexus {
  uint64_t id;
  const char *initiator; /* initiator node name (IQN) */
  const char *port_name; /* "<iqn>,i,0x<12 hex isid>" */
};

/* Session appears / goes away (RESERVE(6) reservations held by a vanished
 * nexus are released; persistent registrations stay). */
void scsi_lu_nexus_add(struct scsi_lu *lu, const struct scsi_nexus *n);
void scsi_lu_nexus_remove(struct scsi_lu *lu, uint64_t nexus_id);
/* LOGICAL UNIT RESET / TARGET WARM or COLD RESET received on nexus n:
 * SPC-2 reservation (not PR) released, mode pages back to defaults, and a
 * UNIT ATTENTION (29/03 BUS DEVICE RESET FUNCTION OCCURRED, or 29/01 POWER
 * ON OCCURRED for cold) for every nexus, the issuing one included (SAM-5;
 * libiscsi's MultipathIO.Reset checks both paths). The transport aborts the
 * tasks itself. */
void scsi_lu_reset(struct scsi_lu *lu, uint64_t nexus_id, int cold);

enum { SCSI_DIR_NONE = 0, SCSI_DIR_READ = 1, SCSI_DIR_WRITE = 2 };

struct scsi_cmd {
  /* in */
  const uint8_t *cdb;
  size_t cdb_len; /* 6..16 (32 for variable-length CDBs: answered INVALID OPCODE) */
  uint64_t lun;   /* decoded LUN number; anything but 0 → LOGICAL UNIT NOT SUPPORTED
                     (except INQUIRY: peripheral qualifier 3, and REPORT LUNS) */
  const struct scsi_nexus *nexus;
  /* Data-Out the initiator sent (all of it, already collected), and what the
   * transport header announced. */
  const uint8_t *data_out;
  uint32_t data_out_len;
  uint32_t exp_len; /* expected data transfer length from the transport */
  int dir;          /* SCSI_DIR_* flags from the transport (R and W bits) */
  /* out */
  uint8_t status;
  uint8_t sense[96]; /* fixed format (0x70) sense data */
  uint32_t sense_len;
  uint8_t *data_in;     /* malloc'd by scsi_exec (caller frees), NULL if none */
  uint32_t data_in_len; /* bytes the command produced (may exceed exp_len: the
                           transport clips and reports the residual) */
};

/* How many Data-Out bytes the CDB itself asks for (WRITE: blocks x 512, UNMAP
 * / MODE SELECT / PR OUT: the parameter list length, COMPARE AND WRITE: 2 x
 * blocks x 512, ...); 0 for commands without Data-Out. The transport uses it
 * to check the header and to size R2Ts. -1 for an opcode it does not know
 * (scsi_exec then answers INVALID COMMAND OPERATION CODE). */
int64_t scsi_cdb_data_out_len(const uint8_t *cdb, size_t cdb_len);

/* Execute one command. Fills status, sense, data_in. Never fails otherwise:
 * every error is a CHECK CONDITION with the right sense key / ASC / ASCQ.
 * Zero-length transfers do not touch the volume. */
void scsi_exec(struct scsi_lu *lu, struct scsi_cmd *c);

/* Counters for the target's stats (atomic). */
struct scsi_lu_stats {
  uint64_t read_bytes, write_bytes, commands, errors;
};
void scsi_lu_stats(struct scsi_lu *lu, struct scsi_lu_stats *out);

/* Build fixed-format sense (0x70) into c->sense and set CHECK CONDITION. */
void scsi_set_sense(struct scsi_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq);

#endif
