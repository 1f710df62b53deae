/* pdu.h — iSCSI PDU layout (RFC 7143 §11), login/text key=value lists and
 * CHAP helpers. Pure functions over bytes: no sockets, no state; the fuzz
 * targets under tests/fuzz/ drive them directly. Internal to src/iscsi/. */
#ifndef STREAMER_ISCSI_PDU_H
#define STREAMER_ISCSI_PDU_H

#include <stddef.h>
#include <stdint.h>

#define ISCSI_BHS_LEN 48
#define ISCSI_DIGEST_LEN 4

/* opcodes, initiator → target */
enum {
  OP_NOP_OUT = 0x00,
  OP_SCSI_CMD = 0x01,
  OP_TMF_REQ = 0x02,
  OP_LOGIN_REQ = 0x03,
  OP_TEXT_REQ = 0x04,
  OP_DATA_OUT = 0x05,
  OP_LOGOUT_REQ = 0x06,
  OP_SNACK = 0x10,
};
/* opcodes, target → initiator */
enum {
  OP_NOP_IN = 0x20,
  OP_SCSI_RSP = 0x21,
  OP_TMF_RSP = 0x22,
  OP_LOGIN_RSP = 0x23,
  OP_TEXT_RSP = 0x24,
  OP_DATA_IN = 0x25,
  OP_LOGOUT_RSP = 0x26,
  OP_R2T = 0x31,
  OP_ASYNC = 0x32,
  OP_REJECT = 0x3f,
};

/* Reject reasons (§11.17.1) */
enum {
  REJ_DIGEST_ERROR = 0x02,
  REJ_SNACK_REJECT = 0x03,
  REJ_PROTOCOL_ERROR = 0x04,
  REJ_CMD_NOT_SUPPORTED = 0x05,
  REJ_IMMEDIATE_REJECTED = 0x06,
  REJ_TASK_IN_PROGRESS = 0x07,
  REJ_INVALID_DATA_ACK = 0x08,
  REJ_INVALID_PDU_FIELD = 0x09,
  REJ_OUT_OF_RESOURCES = 0x0a,
  REJ_WAITING_FOR_LOGOUT = 0x0c,
};

/* Login status (class << 8 | detail), §11.13.5 */
enum {
  LOGIN_OK = 0x0000,
  LOGIN_TARGET_MOVED_TEMP = 0x0101,
  LOGIN_INITIATOR_ERROR = 0x0200,
  LOGIN_AUTH_FAILED = 0x0201,
  LOGIN_FORBIDDEN = 0x0202,
  LOGIN_NOT_FOUND = 0x0203,
  LOGIN_TARGET_REMOVED = 0x0204,
  LOGIN_UNSUPPORTED_VERSION = 0x0205,
  LOGIN_TOO_MANY_CONNECTIONS = 0x0206,
  LOGIN_MISSING_PARAMETER = 0x0207,
  LOGIN_CANT_INCLUDE = 0x0208,
  LOGIN_SESSION_TYPE_UNSUPPORTED = 0x0209,
  LOGIN_NO_SUCH_SESSION = 0x020a,
  LOGIN_INVALID_DURING_LOGIN = 0x020b,
  LOGIN_TARGET_ERROR = 0x0300,
  LOGIN_SERVICE_UNAVAILABLE = 0x0301,
  LOGIN_OUT_OF_RESOURCES = 0x0302,
};

static inline uint32_t get_be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t get_be24(const uint8_t *p) {
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}
static inline uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p) {
  return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}
static inline void put_be16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put_be24(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 16);
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void put_be64(uint8_t *p, uint64_t v) {
  put_be32(p, (uint32_t)(v >> 32));
  put_be32(p + 4, (uint32_t)v);
}

/* Serial number arithmetic (RFC 1982, 32 bits) as CmdSN/StatSN use it. */
static inline int sn_lt(uint32_t a, uint32_t b) {
  return a != b && (uint32_t)(b - a) < 0x80000000u;
}
static inline int sn_le(uint32_t a, uint32_t b) { return a == b || sn_lt(a, b); }

/* Fields of a basic header segment every opcode shares. */
struct bhs {
  uint8_t opcode;    /* without the I bit */
  int immediate;     /* I bit */
  uint8_t flags;     /* byte 1 */
  uint32_t ahs_len;  /* bytes (TotalAHSLength x 4) */
  uint32_t data_len; /* DataSegmentLength */
  uint64_t lun;      /* bytes 8..15 raw */
  uint32_t itt;
};
void bhs_parse(const uint8_t *h, struct bhs *out);
/* Padded length of a data segment. */
static inline uint32_t pad4(uint32_t n) { return (n + 3) & ~3u; }

/* Decode an 8-byte SAM LUN field into a LUN number (flat or peripheral
 * addressing, single level); UINT64_MAX when the format is not supported. */
uint64_t lun_decode(const uint8_t *p);
void lun_encode(uint64_t lun, uint8_t *p);

/* ---- key=value lists (§6.1) -------------------------------------------------
 * A list is NUL-terminated "key=value" strings. kv_parse splits one data
 * segment (possibly without the final NUL) into at most max pairs; keys are
 * at most 63 bytes of [A-Za-z0-9.-+@_], values at most 8192 bytes (255 for
 * most keys, checked by the caller). Returns the count, or -1 on a malformed
 * list (no '=', empty or too long key, bad character, too many pairs). The
 * pointers point into buf, which kv_parse modifies (NULs). */
struct kv {
  char *key, *val;
};
int kv_parse(char *buf, size_t len, struct kv *out, int max);

/* A growing key=value output buffer. */
struct kvbuf {
  char *data;
  size_t len, cap;
  int oom;
};
void kvbuf_add(struct kvbuf *b, const char *key, const char *val);
void kvbuf_addf(struct kvbuf *b, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kvbuf_free(struct kvbuf *b);

/* Numbers and booleans in key values (§6.1 / §13): decimal or 0x hex,
 * 0 on success. */
int kv_number(const char *s, uint64_t *out);
int kv_bool(const char *s, int *out); /* "Yes" / "No" */

/* CHAP binary values: "0x<hex>" or "0b<base64>"; returns length or -1.
 * out holds at most max bytes. */
int chap_decode(const char *s, uint8_t *out, size_t max);
/* "0x<hex>" of len bytes into out (2*len+3 bytes). */
void chap_hex(const uint8_t *v, size_t len, char *out);
/* MD5(id || secret || challenge) into out[16]. 0 or -1. */
int chap_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
                  uint8_t out[16]);

/* iSCSI names (RFC 3720 §3.2.6): iqn., eui. or naa. forms, at most 223
 * bytes. 1 if valid. */
int iscsi_name_valid(const char *s);

#endif
