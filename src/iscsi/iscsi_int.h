/* iscsi_int.h — the target's internal structures, shared by target.c (event
 * loops, connections, sessions, the data path) and login.c (login phase,
 * negotiation, CHAP, SendTargets). Threads: each connection belongs to one
 * event loop and only that loop's thread touches it; all connections of a
 * session live on the same loop, so session state needs no lock. Workers
 * run scsi_exec and hand finished tasks back to the loop through its
 * mailbox. srv->lock guards the export list, the session list and export
 * updates. */
#ifndef STREAMER_ISCSI_INT_H
#define STREAMER_ISCSI_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "iscsi/iscsi.h"
#include "iscsi/loginlimit.h"
#include "iscsi/pdu.h"
#include "iscsi/scsi.h"

#define ISCSI_TPGT 1
#define ISCSI_CMD_WINDOW 128          /* MaxCmdSN - ExpCmdSN + 1 */
#define ISCSI_OUR_MAX_RECV_DSL 262144 /* what we declare (data segments we accept) */
#define ISCSI_MAX_LOGIN_TEXT 65536    /* all login/text key=value bytes of one exchange */
#define ISCSI_MAX_CONNS 8             /* MaxConnections we accept */
#define ISCSI_NOP_IDLE_MS 15000       /* send a NOP-In ping after this idle time */
#define ISCSI_NOP_TIMEOUT_MS 30000    /* drop the connection if unanswered this long */
#define ISCSI_LOGIN_TIMEOUT_MS 30000  /* a login phase must finish in this time */
#define ISCSI_LOGOUT_WAIT_MS 2000     /* after asking for a logout (target removed) */

/* Latency histogram buckets (microseconds) */
#define ISCSI_LAT_BUCKETS 7
extern const unsigned iscsi_lat_limits[ISCSI_LAT_BUCKETS - 1];

struct export {
  atomic_int ref;
  char *name, *alias, *unit_id;
  struct vol *vol;
  struct scsi_lu *lu;
  /* the following are replaced under srv->lock by iscsi_update */
  char **initiators;
  size_t ninitiators;
  int any_initiator;
  char *chap_name, *chap_secret, *mutual_name, *mutual_secret;
  int removed;   /* unexport in progress: no new logins */
  int nsessions; /* under srv->lock */
  atomic_uint_fast64_t lat[ISCSI_LAT_BUCKETS];
  struct export *next;
};

/* Negotiated session-wide values (RFC 7143 §13). */
struct sess_params {
  int initial_r2t, immediate_data, data_pdu_in_order, data_seq_in_order;
  uint32_t max_burst, first_burst, max_outstanding_r2t, max_conns;
  uint32_t time2wait, time2retain, erl;
};

struct conn;
struct task;

struct session {
  struct iscsi_srv *srv;
  struct loop *loop;
  struct export *exp; /* NULL for discovery sessions */
  int discovery;
  char *initiator;
  uint8_t isid[6];
  uint16_t tsih;
  struct scsi_nexus nexus;
  char port_name[300];
  struct sess_params p;
  uint32_t exp_cmdsn;
  /* CmdSNs received ahead of exp_cmdsn (bit i = exp_cmdsn + 1 + i) */
  uint64_t ahead[ISCSI_CMD_WINDOW / 64];
  struct conn *conns;
  int nconns;
  struct task *tasks; /* every live task of the session (by ITT for TMF) */
  int ntasks;
  int dying;
  int64_t started_ms;
  atomic_uint_fast64_t read_bytes, write_bytes, commands;
  struct session *next; /* srv->sessions, under srv->lock */
};

enum task_state { T_COLLECT, T_QUEUED, T_DONE, T_SENDING };

struct task {
  struct conn *conn;
  struct session *sess;
  struct task *snext, *sprev; /* session list */
  struct task *qnext;         /* work queue / mailbox */
  enum task_state state;
  int aborted; /* response suppressed */
  uint32_t itt, ttt, cmdsn;
  uint64_t lun;
  uint8_t lun_raw[8];
  uint8_t cdb[32];
  size_t cdb_len;
  int immediate;
  struct scsi_cmd cmd;
  /* write data collection */
  uint8_t *buf;
  uint32_t buf_len;   /* allocated */
  uint32_t edtl;      /* expected data transfer length */
  uint32_t want;      /* bytes we solicit up to (offset) */
  uint32_t unsol_end; /* end offset of unsolicited data */
  uint32_t got;       /* bytes received (stored or discarded) */
  int unsol_pending;  /* waiting for the F bit of unsolicited Data-Out */
  uint32_t unsol_datasn;
  uint32_t r2t_next; /* next offset to solicit */
  uint32_t r2tsn;
  uint32_t r2t_outstanding;
  uint32_t r2t_datasn; /* expected DataSN within the current R2T sequence */
  int64_t need;        /* bytes the CDB transfers (scsi_cdb_data_out_len) */
  int is_write, is_read;
  struct tmf *tmf; /* a TMF waiting for this task to finish */
  int64_t t0_us;
};

/* A TMF whose response waits for aborted tasks to leave the workers. */
struct tmf {
  struct conn *conn;
  uint32_t itt;
  int waiting;
  uint8_t response;
  int cold; /* TARGET COLD RESET: drop the connection after the response */
};

/* One outgoing PDU. */
struct txpdu {
  struct txpdu *next;
  uint8_t hdr[ISCSI_BHS_LEN + ISCSI_DIGEST_LEN];
  uint32_t hdr_len;
  const uint8_t *data;
  uint32_t data_len;
  uint8_t tail[3 + ISCSI_DIGEST_LEN]; /* pad + data digest */
  uint32_t tail_len;
  void *free_data;   /* freed after sending */
  struct task *task; /* task_release after sending */
  int close_after;   /* close the connection once sent */
  size_t sent;
};

enum conn_state { C_LOGIN, C_FULL, C_LOGOUT, C_DEAD };

struct login; /* login.c */

struct conn {
  struct iscsi_srv *srv;
  struct loop *loop;
  struct loop *migrate_to; /* set at the first Login Request */
  struct loop *grave_loop; /* frees c once unreferenced (the loop it was last on) */
  struct conn *gnext;
  int fd;
  int ref; /* the loop's own + one per task not yet released */
  enum conn_state state;
  struct conn *lnext, *lprev; /* loop list */
  struct conn *snext;         /* session list */
  struct session *sess;
  struct login *login;
  char peer[96], local[96];
  char local_ip[64];
  uint16_t cid;
  uint32_t stat_sn;
  int hdigest, ddigest;
  uint32_t max_xmit_dsl; /* initiator's MaxRecvDataSegmentLength */
  /* receive */
  uint8_t *rx;
  size_t rx_len, rx_off; /* bytes in rx, parse position */
  int rx_phase;          /* 0 header, 1 data */
  uint8_t hdr[ISCSI_BHS_LEN + 1024 + ISCSI_DIGEST_LEN];
  uint32_t hdr_need;
  struct bhs bhs;
  uint8_t *dst;                             /* where the data segment goes (NULL: discard) */
  uint8_t *own;                             /* malloc'd data segment of non-Data-Out PDUs */
  uint32_t data_need, data_got, data_total; /* data segment + pad (+ digest) */
  uint32_t dst_len;                         /* bytes of the segment that go to dst */
  uint8_t dig[ISCSI_DIGEST_LEN];
  uint32_t crc;         /* running data digest */
  struct task *rx_task; /* Data-Out / immediate data target */
  /* send */
  struct txpdu *tx_head, *tx_tail;
  int want_out, dirty;
  uint32_t next_ttt;
  /* text (SendTargets) continuation */
  char *text_pending;
  size_t text_len, text_off;
  uint32_t text_ttt;
  /* timers */
  int64_t last_rx_ms, login_start_ms, nop_sent_ms, kill_at_ms;
  uint32_t nop_ttt;
  int nop_answers; /* the initiator answers NOP-In pings (iPXE does not) */
  uint64_t rx_bytes, tx_bytes;
};

struct loop_msg;

struct loop {
  struct iscsi_srv *srv;
  int idx;
  pthread_t th;
  int epfd, evfd;
  pthread_mutex_t lock; /* mailbox */
  struct task *done_head, *done_tail;
  struct loop_msg *msgs;
  struct conn *conns; /* owned */
  struct conn *grave; /* unreferenced connections, freed at the end of the round */
  struct conn *dirty[1024];
  int ndirty;
};

struct iscsi_srv {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* nsessions changes */
  struct export *exports;
  struct session *sessions;
  uint16_t next_tsih;
  uint64_t next_nexus;
  int *lfds;
  char **portals;
  size_t nportals;
  struct loop *loops;
  int nloops;
  atomic_uint next_loop;
  /* work queue */
  pthread_mutex_t qlock;
  pthread_cond_t qcond;
  struct task *q_head, *q_tail;
  pthread_t *workers;
  int nworkers;
  atomic_int stopping;
  int no_inline; /* STREAMER_ISCSI_NO_INLINE=1: every command on a worker (benchmarks) */
  /* failed-login limiter (loginlimit.h) */
  pthread_mutex_t fail_lock;
  struct loginlimit fails;
};

/* target.c services for login.c */
struct export *srv_find_export(struct iscsi_srv *srv, const char *name); /* ref'd */
void export_put(struct export *x);
int export_allows(struct export *x, const char *initiator); /* under srv->lock */
void conn_queue(struct conn *c, struct txpdu *p);
struct txpdu *txpdu_new(struct conn *c, uint8_t opcode);
void txpdu_set_data(struct conn *c, struct txpdu *p, const void *data, uint32_t len, void *owned);
/* Record a failed login (CHAP, ACL, unknown target) from peer ("host:port") as initiator
 * (NULL or "" when not known yet); 1 if it may be logged (rate limit). Logs when a block
 * begins. */
int srv_login_failed(struct iscsi_srv *srv, const char *peer, const char *initiator);
/* A login refused for another reason (not counted): 1 if it may be logged (rate limit). */
int srv_login_refused(struct iscsi_srv *srv);
/* LL_OK, or LL_BLOCK_PAIR / LL_BLOCK_ADDR when a login from peer as initiator (NULL: not
 * known yet, the address bound only) must be refused (service unavailable). */
int srv_login_blocked(struct iscsi_srv *srv, const char *peer, const char *initiator);
/* Login phase done: create or join the session; 0 or a LOGIN_* status. */
int srv_session_bind(struct conn *c, const char *initiator, const uint8_t isid[6], uint16_t tsih,
                     struct export *x, int discovery, const struct sess_params *p,
                     uint16_t *tsih_out);
uint32_t sess_max_cmdsn(struct session *s);

/* login.c */
struct login *login_new(struct conn *c);
void login_free(struct login *l);
int login_started(const struct login *l);
/* One Login Request (header + its data segment); queues the response. 0 to
 * go on, 1 when the connection entered Full Feature Phase, -1 to close the
 * connection once the response is sent. */
int login_pdu(struct conn *c, const uint8_t *hdr, char *data, uint32_t len);
/* A Text Request in Full Feature Phase. */
void text_pdu(struct conn *c, const uint8_t *hdr, char *data, uint32_t len);
void sess_params_default(struct sess_params *p);

#endif
