/* target.c — the iSCSI target's exports, event loops, connections, sessions
 * and data path (RFC 7143). Threads: net_threads event loops (epoll) own the
 * connections; io_threads workers run scsi_exec. A connection moves, at its
 * first Login Request, to the loop chosen by hash(InitiatorName, ISID), so
 * every connection of a session (and a reinstated session) lives on one loop
 * and session state needs no lock. See src/iscsi/README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "iscsi/iscsi_int.h"

#define RXBUF 65536
#define TX_IOV 64

const unsigned iscsi_lat_limits[ISCSI_LAT_BUCKETS - 1] = {50, 100, 250, 1000, 10000, 100000};

enum { MSG_ADOPT = 1, MSG_KILL_ALL, MSG_KILL_EXPORT, MSG_ABORT_EXPORT, MSG_UNEXPORT };

struct loop_msg {
  int type;
  void *ptr;
  struct export *exp;
  struct loop_msg *next;
};

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ======================================================================= */
/* exports                                                                  */
/* ======================================================================= */
static void strv_free(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void secret_free(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

void export_put(struct export *x) {
  if (!x || atomic_fetch_sub(&x->ref, 1) != 1) return;
  scsi_lu_free(x->lu);
  vol_close(x->vol);
  free(x->name);
  free(x->alias);
  free(x->unit_id);
  strv_free(x->initiators, x->ninitiators);
  free(x->chap_name);
  secret_free(x->chap_secret);
  free(x->mutual_name);
  secret_free(x->mutual_secret);
  free(x);
}

struct export *srv_find_export(struct iscsi_srv *srv, const char *name) {
  pthread_mutex_lock(&srv->lock);
  struct export *x = srv->exports;
  for (; x; x = x->next)
    if (!strcasecmp(x->name, name)) break;
  if (x) atomic_fetch_add(&x->ref, 1);
  pthread_mutex_unlock(&srv->lock);
  return x;
}

int export_allows(struct export *x, const char *initiator) {
  if (x->any_initiator) return 1;
  for (size_t i = 0; i < x->ninitiators; i++)
    if (!strcasecmp(x->initiators[i], initiator)) return 1;
  return 0;
}

char *iscsi_target_name(const char *volume_name, const char *volume_id) {
  char name[160];
  size_t n = 0;
  for (const char *p = volume_name ? volume_name : ""; *p && n < 100; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-')) ch = '-';
    name[n++] = (char)ch;
  }
  name[n] = 0;
  char id8[9] = {0};
  size_t k = 0;
  for (const char *p = volume_id ? volume_id : ""; *p && k < 8; p++)
    if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))
      id8[k++] = (char)((*p >= 'A' && *p <= 'F') ? *p - 'A' + 'a' : *p);
  return util_strdup_printf("iqn.2024-11.org.streamer:vol.%s%s%s", n ? name : "volume",
                            k ? "." : "", id8);
}

static int spec_check(const struct iscsi_export_spec *s, struct err *e) {
  if (!s->target_name || !iscsi_name_valid(s->target_name)) {
    err_set(e, 400, "ISCSI_BAD_TARGET_NAME", "Target name '%s' is not a valid iSCSI name.",
            s->target_name ? s->target_name : "");
    return -1;
  }
  for (size_t i = 0; i < s->ninitiators; i++) {
    const char *n = s->initiators[i];
    if (!n || (strcmp(n, "*") && !iscsi_name_valid(n))) {
      err_set(e, 400, "ISCSI_BAD_INITIATOR_NAME", "Initiator name '%s' is not a valid iSCSI name.",
              n ? n : "");
      return -1;
    }
  }
  if ((s->chap_secret && (strlen(s->chap_secret) < 12 || strlen(s->chap_secret) > 255)) ||
      (s->mutual_secret && (strlen(s->mutual_secret) < 12 || strlen(s->mutual_secret) > 255))) {
    err_set(e, 400, "ISCSI_BAD_CHAP_SECRET", "CHAP secrets must be 12 to 255 bytes long.");
    return -1;
  }
  if ((s->chap_secret && (!s->chap_name || !*s->chap_name)) ||
      (s->mutual_secret && !s->chap_secret)) {
    err_set(e, 400, "ISCSI_BAD_CHAP",
            "CHAP needs a name and a secret; mutual CHAP needs one-way CHAP.");
    return -1;
  }
  return 0;
}

/* Fill the replaceable fields of x from s (x not yet visible or under srv->lock). */
static int export_fill_acl(struct export *x, const struct iscsi_export_spec *s) {
  char **ini = calloc(s->ninitiators + 1, sizeof *ini);
  if (!ini) return -1;
  int any = 0;
  for (size_t i = 0; i < s->ninitiators; i++) {
    if (!strcmp(s->initiators[i], "*")) any = 1;
    if (!(ini[i] = strdup(s->initiators[i]))) {
      strv_free(ini, i);
      return -1;
    }
  }
  strv_free(x->initiators, x->ninitiators);
  x->initiators = ini;
  x->ninitiators = s->ninitiators;
  x->any_initiator = any;
  free(x->chap_name);
  secret_free(x->chap_secret);
  free(x->mutual_name);
  secret_free(x->mutual_secret);
  x->chap_name = s->chap_secret && s->chap_name ? strdup(s->chap_name) : NULL;
  x->chap_secret = s->chap_secret ? strdup(s->chap_secret) : NULL;
  x->mutual_name = s->mutual_secret && s->mutual_name ? strdup(s->mutual_name) : NULL;
  x->mutual_secret = s->mutual_secret ? strdup(s->mutual_secret) : NULL;
  return 0;
}

int iscsi_export(struct iscsi_srv *srv, const struct iscsi_export_spec *s, struct err *e) {
  if (spec_check(s, e) < 0) return -1;
  if (!s->vol) {
    err_set(e, 400, "ISCSI_NO_VOLUME", "No volume to export.");
    return -1;
  }
  struct export *x = calloc(1, sizeof *x);
  if (!x) goto oom;
  atomic_init(&x->ref, 1);
  x->name = strdup(s->target_name);
  x->alias = s->alias ? strdup(s->alias) : NULL;
  x->unit_id = strdup(s->unit_id ? s->unit_id : s->target_name);
  if (!x->name || !x->unit_id || export_fill_acl(x, s) < 0) goto oom;
  struct scsi_lu_config lc = {.vol = s->vol,
                              .unit_id = x->unit_id,
                              .target_name = x->name,
                              .rel_port = 1,
                              .tpg = 1,
                              .block_status = s->vol->ops->block_status};
  x->lu = scsi_lu_new(&lc, e);
  if (!x->lu) {
    x->vol = NULL;
    export_put(x);
    return -1;
  }
  pthread_mutex_lock(&srv->lock);
  for (struct export *o = srv->exports; o; o = o->next)
    if (!strcasecmp(o->name, x->name)) {
      pthread_mutex_unlock(&srv->lock);
      err_set(e, 409, "ISCSI_TARGET_EXISTS", "Target %s is already exported.", x->name);
      x->vol = NULL; /* the caller keeps its volume on failure */
      export_put(x);
      return -1;
    }
  x->vol = s->vol;
  x->next = srv->exports;
  srv->exports = x;
  pthread_mutex_unlock(&srv->lock);
  log_msg(LOG_INFO, "iscsi", "event=export target=%s size=%llu read_only=%d chap=%d initiators=%zu",
          x->name, (unsigned long long)vol_size(s->vol), vol_read_only(s->vol),
          x->chap_secret != NULL, x->ninitiators);
  return 0;
oom:
  if (x) {
    x->vol = NULL;
    export_put(x);
  }
  err_set(e, 500, "OUT_OF_MEMORY", "Out of memory.");
  return -1;
}

int iscsi_update(struct iscsi_srv *srv, const struct iscsi_export_spec *s, struct err *e) {
  if (spec_check(s, e) < 0) return -1;
  pthread_mutex_lock(&srv->lock);
  struct export *x = srv->exports;
  for (; x; x = x->next)
    if (!strcasecmp(x->name, s->target_name) && !x->removed) break;
  if (!x) {
    pthread_mutex_unlock(&srv->lock);
    err_set(e, 404, "ISCSI_TARGET_NOT_FOUND", "Target %s is not exported.", s->target_name);
    return -1;
  }
  int rc = export_fill_acl(x, s);
  if (rc == 0 && s->alias) {
    char *a = strdup(s->alias);
    if (a) {
      free(x->alias);
      x->alias = a;
    }
  }
  pthread_mutex_unlock(&srv->lock);
  if (rc < 0) {
    err_set(e, 500, "OUT_OF_MEMORY", "Out of memory.");
    return -1;
  }
  return 0;
}

int iscsi_exported(struct iscsi_srv *srv, const char *name) {
  struct export *x = srv_find_export(srv, name);
  int r = x && !x->removed;
  export_put(x);
  return r;
}

int iscsi_snapshot(struct iscsi_srv *srv, const char *name, struct vol **snap, struct err *e) {
  struct export *x = srv_find_export(srv, name); /* the reference keeps x->vol open */
  int rc = -1;
  if (!x || x->removed)
    err_set(e, 404, "ISCSI_TARGET_NOT_FOUND", "Target %s is not exported.", name);
  else
    rc = vol_os_snapshot(x->vol, snap, e);
  export_put(x);
  return rc;
}

static void loop_post(struct loop *l, int type, void *ptr, struct export *x);

int iscsi_unexport(struct iscsi_srv *srv, const char *name, struct err *e) {
  pthread_mutex_lock(&srv->lock);
  struct export **pp = &srv->exports, *x = NULL;
  for (; *pp; pp = &(*pp)->next)
    if (!strcasecmp((*pp)->name, name) && !(*pp)->removed) {
      x = *pp;
      break;
    }
  if (!x) {
    pthread_mutex_unlock(&srv->lock);
    err_set(e, 404, "ISCSI_TARGET_NOT_FOUND", "Target %s is not exported.", name);
    return -1;
  }
  x->removed = 1;
  pthread_mutex_unlock(&srv->lock);
  for (int i = 0; i < srv->nloops; i++) {
    atomic_fetch_add(&x->ref, 1);
    loop_post(&srv->loops[i], MSG_UNEXPORT, NULL, x);
  }
  pthread_mutex_lock(&srv->lock);
  while (x->nsessions > 0)
    pthread_cond_wait(&srv->cond, &srv->lock);
  for (pp = &srv->exports; *pp; pp = &(*pp)->next)
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  pthread_mutex_unlock(&srv->lock);
  /* the loops drop their message references right after the sessions end:
   * wait for them so the volume is closed when we return */
  for (int i = 0; i < 20000 && atomic_load(&x->ref) > 1; i++)
    usleep(500);
  log_msg(LOG_INFO, "iscsi", "event=unexport target=%s", x->name);
  export_put(x);
  return 0;
}

const char *const *iscsi_portals(struct iscsi_srv *srv, size_t *n) {
  *n = srv->nportals;
  return (const char *const *)srv->portals;
}

/* ======================================================================= */
/* transmit                                                                 */
/* ======================================================================= */
struct txpdu *txpdu_new(struct conn *c, uint8_t opcode) {
  struct txpdu *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->hdr[0] = opcode;
  p->hdr_len = ISCSI_BHS_LEN + (c->hdigest ? ISCSI_DIGEST_LEN : 0);
  return p;
}

void txpdu_set_data(struct conn *c, struct txpdu *p, const void *data, uint32_t len, void *owned) {
  p->data = data;
  p->data_len = len;
  p->free_data = owned;
}

static void task_release(struct task *t);

static void txpdu_free(struct txpdu *p) {
  free(p->free_data);
  if (p->task) task_release(p->task);
  free(p);
}

static void conn_mark_dirty(struct conn *c) {
  if (c->dirty || c->state == C_DEAD) return;
  struct loop *l = c->loop;
  if (l->ndirty < (int)(sizeof l->dirty / sizeof l->dirty[0])) {
    c->dirty = 1;
    c->ref++; /* dropped after the flush at the end of the loop round */
    l->dirty[l->ndirty++] = c;
  }
}

static void conn_flush(struct conn *c);

void conn_queue(struct conn *c, struct txpdu *p) {
  uint8_t *h = p->hdr;
  put_be24(h + 5, p->data_len);
  if (c->hdigest) {
    uint32_t crc = util_crc32c(0, h, ISCSI_BHS_LEN);
    memcpy(h + ISCSI_BHS_LEN, &crc, 4); /* little-endian on the wire; x86 and ARM LE */
  }
  uint32_t pad = pad4(p->data_len) - p->data_len;
  p->tail_len = pad;
  memset(p->tail, 0, 3);
  if (c->ddigest && p->data_len) {
    uint32_t crc = util_crc32c(0, p->data, p->data_len);
    if (pad) crc = util_crc32c(crc, p->tail, pad);
    memcpy(p->tail + pad, &crc, 4);
    p->tail_len += 4;
  }
  if (c->state == C_DEAD) {
    txpdu_free(p);
    return;
  }
  if (c->tx_tail)
    c->tx_tail->next = p;
  else
    c->tx_head = p;
  c->tx_tail = p;
  if (!c->dirty) {
    if (c->loop->ndirty >= (int)(sizeof c->loop->dirty / sizeof c->loop->dirty[0]))
      conn_flush(c);
    else
      conn_mark_dirty(c);
  }
}

static void conn_close(struct conn *c, const char *why);

static void conn_flush(struct conn *c) {
  while (c->tx_head && c->state != C_DEAD) {
    struct iovec iov[TX_IOV];
    int n = 0;
    for (struct txpdu *p = c->tx_head; p && n < TX_IOV - 3; p = p->next) {
      size_t skip = p->sent;
      const void *parts[3] = {p->hdr, p->data, p->tail};
      size_t lens[3] = {p->hdr_len, p->data_len, p->tail_len};
      for (int k = 0; k < 3; k++) {
        if (!lens[k]) continue;
        if (skip >= lens[k]) {
          skip -= lens[k];
          continue;
        }
        iov[n].iov_base = (uint8_t *)parts[k] + skip;
        iov[n].iov_len = lens[k] - skip;
        skip = 0;
        n++;
      }
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!c->want_out) {
          struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
          epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
          c->want_out = 1;
        }
        return;
      }
      conn_close(c, "send failed");
      return;
    }
    c->tx_bytes += (uint64_t)w;
    size_t left = (size_t)w;
    while (c->tx_head && left) {
      struct txpdu *p = c->tx_head;
      size_t total = p->hdr_len + p->data_len + p->tail_len;
      size_t rem = total - p->sent;
      if (left < rem) {
        p->sent += left;
        break;
      }
      left -= rem;
      c->tx_head = p->next;
      if (!c->tx_head) c->tx_tail = NULL;
      int close_after = p->close_after;
      txpdu_free(p);
      if (close_after) {
        conn_close(c, "logout");
        return;
      }
    }
    /* zero-length PDUs are impossible (header is always sent) */
  }
  if (c->want_out && c->state != C_DEAD && !c->tx_head) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = 0;
  }
}

/* ======================================================================= */
/* sessions                                                                 */
/* ======================================================================= */
uint32_t sess_max_cmdsn(struct session *s) { return s->exp_cmdsn + ISCSI_CMD_WINDOW - 1; }

static void sess_fill_sn(struct conn *c, uint8_t *h) {
  put_be32(h + 28, c->sess->exp_cmdsn);
  put_be32(h + 32, sess_max_cmdsn(c->sess));
}

/* Accept a non-immediate CmdSN: 1 to process, 0 to drop silently. */
static int cmdsn_accept(struct session *s, uint32_t sn) {
  if (sn == s->exp_cmdsn) {
    s->exp_cmdsn++;
    while (s->ahead[0] & 1) {
      /* shift the window by one */
      for (int i = 0; i < ISCSI_CMD_WINDOW / 64; i++) {
        s->ahead[i] >>= 1;
        if (i + 1 < ISCSI_CMD_WINDOW / 64) s->ahead[i] |= (s->ahead[i + 1] & 1) << 63;
      }
      s->exp_cmdsn++;
    }
    /* shift once more for the slot exp itself occupied */
    for (int i = 0; i < ISCSI_CMD_WINDOW / 64; i++) {
      s->ahead[i] >>= 1;
      if (i + 1 < ISCSI_CMD_WINDOW / 64) s->ahead[i] |= (s->ahead[i + 1] & 1) << 63;
    }
    return 1;
  }
  if (sn_lt(sn, s->exp_cmdsn)) return 0;
  uint32_t d = sn - s->exp_cmdsn; /* 1.. */
  if (d >= ISCSI_CMD_WINDOW) return 0;
  uint32_t bit = d - 1;
  uint64_t m = 1ull << (bit % 64);
  if (s->ahead[bit / 64] & m) return 0;
  s->ahead[bit / 64] |= m;
  return 1;
}

static void session_maybe_free(struct session *s) {
  if (s->nconns || s->ntasks) return;
  struct iscsi_srv *srv = s->srv;
  pthread_mutex_lock(&srv->lock);
  for (struct session **pp = &srv->sessions; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_cond_broadcast(&srv->cond);
  pthread_mutex_unlock(&srv->lock);
  if (s->exp) {
    scsi_lu_nexus_remove(s->exp->lu, s->nexus.id);
    pthread_mutex_lock(&srv->lock);
    s->exp->nsessions--;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    log_msg(LOG_INFO, "iscsi", "event=session_end target=%s initiator=%s tsih=%u", s->exp->name,
            s->initiator, s->tsih);
    export_put(s->exp);
  }
  free(s->initiator);
  free(s);
}

int srv_session_bind(struct conn *c, const char *initiator, const uint8_t isid[6], uint16_t tsih,
                     struct export *x, int discovery, const struct sess_params *p,
                     uint16_t *tsih_out) {
  struct iscsi_srv *srv = c->srv;
  struct loop *lp = c->loop;
  if (tsih != 0) { /* join an existing session */
    pthread_mutex_lock(&srv->lock);
    struct session *s = srv->sessions;
    for (; s; s = s->next)
      if (s->tsih == tsih && !memcmp(s->isid, isid, 6) && !strcasecmp(s->initiator, initiator) &&
          !s->dying && s->exp == x && s->discovery == discovery)
        break;
    if (!s) {
      pthread_mutex_unlock(&srv->lock);
      return LOGIN_NO_SUCH_SESSION;
    }
    if (s->loop != lp) {
      pthread_mutex_unlock(&srv->lock);
      return LOGIN_CANT_INCLUDE;
    }
    /* connection reinstatement: an old connection with this CID goes */
    struct conn *old = NULL;
    for (struct conn *o = s->conns; o; o = o->snext)
      if (o->cid == c->cid && o != c) old = o;
    if (!old && (uint32_t)s->nconns >= s->p.max_conns) {
      pthread_mutex_unlock(&srv->lock);
      return LOGIN_TOO_MANY_CONNECTIONS;
    }
    pthread_mutex_unlock(&srv->lock);
    if (old) conn_close(old, "connection reinstated");
    pthread_mutex_lock(&srv->lock);
    c->sess = s;
    c->snext = s->conns;
    s->conns = c;
    s->nconns++;
    pthread_mutex_unlock(&srv->lock);
    *tsih_out = tsih;
    return 0;
  }
  struct session *s = calloc(1, sizeof *s);
  if (!s || !(s->initiator = strdup(initiator))) {
    free(s);
    return LOGIN_OUT_OF_RESOURCES;
  }
  s->srv = srv;
  s->loop = lp;
  s->discovery = discovery;
  memcpy(s->isid, isid, 6);
  s->p = *p;
  s->exp_cmdsn = get_be32(c->hdr + 24); /* the login request's CmdSN */
  s->started_ms = util_now_ms();
  snprintf(s->port_name, sizeof s->port_name, "%s,i,0x%02x%02x%02x%02x%02x%02x", initiator, isid[0],
           isid[1], isid[2], isid[3], isid[4], isid[5]);
  struct session *victims[64];
  int nv = 0;
  pthread_mutex_lock(&srv->lock);
  /* The ACL again, under the lock iscsi_update and iscsi_unexport take: a
   * login that passed its check just before the target changed hands (an OS
   * volume moving to another machine) or went away must not become a session. */
  if (x && (x->removed || !export_allows(x, initiator))) {
    pthread_mutex_unlock(&srv->lock);
    free(s->initiator);
    free(s);
    return x->removed ? LOGIN_NOT_FOUND : LOGIN_FORBIDDEN;
  }
  /* session reinstatement: same initiator, ISID and target */
  for (struct session **pp = &srv->sessions; *pp;) {
    struct session *o = *pp;
    if (!o->dying && o->exp == x && o->discovery == discovery && !memcmp(o->isid, isid, 6) &&
        !strcasecmp(o->initiator, initiator) && nv < 64) {
      o->dying = 1;
      victims[nv++] = o;
    }
    pp = &o->next;
  }
  do {
    s->tsih = srv->next_tsih++;
  } while (s->tsih == 0);
  s->nexus.id = ++srv->next_nexus;
  s->nexus.initiator = s->initiator;
  s->nexus.port_name = s->port_name;
  if (x) {
    atomic_fetch_add(&x->ref, 1);
    s->exp = x;
    x->nsessions++;
  }
  s->next = srv->sessions;
  srv->sessions = s;
  c->sess = s;
  c->snext = NULL;
  s->conns = c;
  s->nconns = 1;
  pthread_mutex_unlock(&srv->lock);
  for (int i = 0; i < nv; i++) {
    /* same (initiator, ISID) hashes to this loop: close its connections here */
    struct session *o = victims[i];
    log_msg(LOG_INFO, "iscsi", "event=session_reinstated initiator=%s old_tsih=%u new_tsih=%u",
            initiator, o->tsih, s->tsih);
    /* the last close frees o: take the list first */
    struct conn *olds[ISCSI_MAX_CONNS + 1];
    int no = 0;
    for (struct conn *oc = o->conns; oc && no < ISCSI_MAX_CONNS + 1; oc = oc->snext)
      olds[no++] = oc;
    for (int k = 0; k < no; k++)
      conn_close(olds[k], "session reinstated");
  }
  if (x) scsi_lu_nexus_add(x->lu, &s->nexus);
  *tsih_out = s->tsih;
  return 0;
}

/* ======================================================================= */
/* tasks                                                                    */
/* ======================================================================= */
static void task_unlink(struct task *t) {
  struct session *s = t->sess;
  if (t->sprev)
    t->sprev->snext = t->snext;
  else if (s->tasks == t)
    s->tasks = t->snext;
  if (t->snext) t->snext->sprev = t->sprev;
  t->snext = t->sprev = NULL;
  s->ntasks--;
}

static void conn_unref(struct conn *c);
static void tmf_task_done(struct tmf *m);

static void task_release(struct task *t) {
  struct session *s = t->sess;
  struct conn *c = t->conn;
  task_unlink(t);
  if (t->tmf) tmf_task_done(t->tmf);
  free(t->buf);
  free(t->cmd.data_in);
  free(t);
  conn_unref(c);
  session_maybe_free(s);
}

static struct task *task_find(struct session *s, uint32_t itt) {
  for (struct task *t = s->tasks; t; t = t->snext)
    if (t->itt == itt) return t;
  return NULL;
}

static void worker_push(struct iscsi_srv *srv, struct task *t) {
  t->state = T_QUEUED;
  t->qnext = NULL;
  pthread_mutex_lock(&srv->qlock);
  if (srv->q_tail)
    srv->q_tail->qnext = t;
  else
    srv->q_head = t;
  srv->q_tail = t;
  pthread_cond_signal(&srv->qcond);
  pthread_mutex_unlock(&srv->qlock);
}

static void *worker_main(void *arg) {
  struct iscsi_srv *srv = arg;
  for (;;) {
    pthread_mutex_lock(&srv->qlock);
    while (!srv->q_head && !atomic_load(&srv->stopping))
      pthread_cond_wait(&srv->qcond, &srv->qlock);
    struct task *t = srv->q_head;
    if (!t) {
      pthread_mutex_unlock(&srv->qlock);
      return NULL;
    }
    srv->q_head = t->qnext;
    if (!srv->q_head) srv->q_tail = NULL;
    pthread_mutex_unlock(&srv->qlock);

    if (!t->aborted) {
      t->cmd.data_out = t->buf;
      scsi_exec(t->sess->exp->lu, &t->cmd);
    }
    /* hand back to the connection's loop */
    struct loop *l = t->conn->loop;
    t->qnext = NULL;
    pthread_mutex_lock(&l->lock);
    int was_empty = l->done_head == NULL;
    if (l->done_tail)
      l->done_tail->qnext = t;
    else
      l->done_head = t;
    l->done_tail = t;
    pthread_mutex_unlock(&l->lock);
    if (was_empty) {
      uint64_t one = 1;
      ssize_t w = write(l->evfd, &one, sizeof one);
      (void)w;
    }
  }
}

static void send_reject(struct conn *c, const uint8_t *hdr, uint8_t reason) {
  struct txpdu *p = txpdu_new(c, OP_REJECT);
  if (!p) return;
  uint8_t *h = p->hdr;
  h[1] = 0x80;
  h[2] = reason;
  put_be32(h + 16, 0xffffffffu);
  put_be32(h + 24, c->stat_sn++);
  if (c->sess) sess_fill_sn(c, h);
  uint8_t *d = malloc(ISCSI_BHS_LEN);
  if (d) {
    memcpy(d, hdr, ISCSI_BHS_LEN);
    txpdu_set_data(c, p, d, ISCSI_BHS_LEN, d);
  }
  conn_queue(c, p);
}

static void send_scsi_rsp(struct conn *c, struct task *t, int with_task, uint32_t datasn) {
  struct txpdu *p = txpdu_new(c, OP_SCSI_RSP);
  if (!p) {
    if (with_task) task_release(t);
    return;
  }
  uint8_t *h = p->hdr;
  struct scsi_cmd *cmd = &t->cmd;
  uint8_t flags = 0x80;
  uint32_t resid = 0;
  if (t->is_read) {
    if (cmd->status == SCSI_GOOD || cmd->data_in_len) {
      if (cmd->data_in_len > t->edtl) {
        flags |= 0x04;
        resid = cmd->data_in_len - t->edtl;
      } else if (cmd->data_in_len < t->edtl) {
        flags |= 0x02;
        resid = t->edtl - cmd->data_in_len;
      }
    } else if (t->edtl) {
      flags |= 0x02;
      resid = t->edtl;
    }
  } else if (t->is_write || t->edtl) {
    uint64_t need = t->need > 0 ? (uint64_t)t->need : 0;
    if (need > t->edtl) {
      flags |= 0x04;
      resid = (uint32_t)(need - t->edtl);
    } else if (need < t->edtl) {
      flags |= 0x02;
      resid = t->edtl - (uint32_t)need;
    }
  }
  h[1] = flags;
  h[2] = 0; /* command completed at target */
  h[3] = cmd->status;
  put_be32(h + 16, t->itt);
  put_be32(h + 20, 0);
  put_be32(h + 24, c->stat_sn++);
  sess_fill_sn(c, h);
  put_be32(h + 36, datasn);
  put_be32(h + 44, resid);
  if (cmd->sense_len) {
    uint8_t *d = malloc(2 + cmd->sense_len);
    if (d) {
      put_be16(d, cmd->sense_len);
      memcpy(d + 2, cmd->sense, cmd->sense_len);
      txpdu_set_data(c, p, d, 2 + cmd->sense_len, d);
    }
  }
  if (with_task) {
    t->state = T_SENDING;
    p->task = t;
  }
  conn_queue(c, p);
}

static void task_respond(struct conn *c, struct task *t) {
  struct scsi_cmd *cmd = &t->cmd;
  uint32_t len = cmd->data_in_len < t->edtl ? cmd->data_in_len : t->edtl;
  if (!t->is_read || !len || !cmd->data_in) {
    send_scsi_rsp(c, t, 1, 0);
    return;
  }
  uint32_t mdsl = c->max_xmit_dsl ? c->max_xmit_dsl : 8192;
  uint32_t off = 0, datasn = 0;
  int collapse = cmd->status == SCSI_GOOD && !cmd->sense_len;
  t->state = T_SENDING;
  while (off < len) {
    uint32_t n = len - off < mdsl ? len - off : mdsl;
    int last = off + n == len;
    struct txpdu *p = txpdu_new(c, OP_DATA_IN);
    if (!p) {
      conn_close(c, "out of memory");
      task_release(t);
      return;
    }
    uint8_t *h = p->hdr;
    uint8_t flags = 0;
    if (last) flags |= 0x80;
    if (last && collapse) {
      flags |= 0x01;
      uint32_t resid = 0;
      if (cmd->data_in_len > t->edtl) {
        flags |= 0x04;
        resid = cmd->data_in_len - t->edtl;
      } else if (cmd->data_in_len < t->edtl) {
        flags |= 0x02;
        resid = t->edtl - cmd->data_in_len;
      }
      h[3] = cmd->status;
      put_be32(h + 24, c->stat_sn++);
      put_be32(h + 44, resid);
    }
    h[1] = flags;
    memcpy(h + 8, t->lun_raw, 8);
    put_be32(h + 16, t->itt);
    put_be32(h + 20, 0xffffffffu);
    sess_fill_sn(c, h);
    put_be32(h + 36, datasn++);
    put_be32(h + 40, off);
    txpdu_set_data(c, p, cmd->data_in + off, n, NULL);
    if (last && collapse) p->task = t;
    conn_queue(c, p);
    off += n;
  }
  if (!collapse) send_scsi_rsp(c, t, 1, datasn);
}

/* Completed tasks come back from the workers. */
static void task_done(struct task *t) {
  struct conn *c = t->conn;
  t->state = T_DONE;
  struct session *s = t->sess;
  if (t->aborted || c->state == C_DEAD) {
    task_release(t);
    return;
  }
  int64_t lat = now_us() - t->t0_us;
  int b = 0;
  while (b < ISCSI_LAT_BUCKETS - 1 && lat > (int64_t)iscsi_lat_limits[b])
    b++;
  atomic_fetch_add(&s->exp->lat[b], 1);
  atomic_fetch_add(&s->commands, 1);
  if (t->is_read) atomic_fetch_add(&s->read_bytes, t->cmd.data_in_len);
  if (t->is_write) atomic_fetch_add(&s->write_bytes, t->got);
  task_respond(c, t);
}

/* R2Ts for what is still to solicit, within MaxOutstandingR2T. */
static void task_send_r2ts(struct conn *c, struct task *t) {
  struct session *s = t->sess;
  while (t->r2t_next < t->want && t->r2t_outstanding < s->p.max_outstanding_r2t) {
    uint32_t n = t->want - t->r2t_next;
    if (n > s->p.max_burst) n = s->p.max_burst;
    struct txpdu *p = txpdu_new(c, OP_R2T);
    if (!p) return;
    uint8_t *h = p->hdr;
    h[1] = 0x80;
    memcpy(h + 8, t->lun_raw, 8);
    put_be32(h + 16, t->itt);
    put_be32(h + 20, t->ttt);
    put_be32(h + 24, c->stat_sn);
    sess_fill_sn(c, h);
    put_be32(h + 36, t->r2tsn++);
    put_be32(h + 40, t->r2t_next);
    put_be32(h + 44, n);
    conn_queue(c, p);
    t->r2t_next += n;
    t->r2t_outstanding++;
  }
}

static void task_maybe_run(struct conn *c, struct task *t) {
  if (t->state != T_COLLECT) return;
  if (t->unsol_pending || t->r2t_outstanding || t->r2t_next < t->want) return;
  t->cmd.data_out_len = t->got < t->buf_len ? t->got : t->buf_len;
  if (t->need >= 0 && t->cmd.data_out_len > (uint64_t)t->need)
    t->cmd.data_out_len = (uint32_t)t->need;
  worker_push(c->srv, t);
}

static void task_abort(struct task *t) {
  if (t->aborted) return;
  t->aborted = 1;
  if (t->state == T_COLLECT) {
    /* nothing in flight: drop now (Data-Out that still arrives is discarded) */
    if (t->conn->rx_task == t) t->conn->rx_task = NULL, t->conn->dst = NULL;
    task_release(t);
  }
}

/* ======================================================================= */
/* connections                                                              */
/* ======================================================================= */
/* Take c off its loop's connection list. */
static void loop_unlink(struct loop *l, struct conn *c) {
  if (c->lprev)
    c->lprev->lnext = c->lnext;
  else if (l->conns == c)
    l->conns = c->lnext;
  if (c->lnext) c->lnext->lprev = c->lprev;
  c->lnext = c->lprev = NULL;
}

static void conn_free(struct conn *c) {
  login_free(c->login);
  free(c->rx);
  free(c->own);
  free(c->text_pending);
  free(c);
}

/* The last reference puts c in its loop's graveyard: it is freed at the end
 * of the loop round, so a handler that closed c may still look at it. */
static void conn_unref(struct conn *c) {
  if (--c->ref == 0) {
    c->gnext = c->grave_loop->grave;
    c->grave_loop->grave = c;
  }
}

static void loop_bury(struct loop *l) {
  while (l->grave) {
    struct conn *c = l->grave;
    l->grave = c->gnext;
    conn_free(c);
  }
}

static void conn_close(struct conn *c, const char *why) {
  if (c->state == C_DEAD) return;
  int was_full = c->state != C_LOGIN;
  c->state = C_DEAD;
  struct loop *l = c->loop;
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  loop_unlink(l, c);
  while (c->tx_head) {
    struct txpdu *p = c->tx_head;
    c->tx_head = p->next;
    txpdu_free(p);
  }
  c->tx_tail = NULL;
  struct session *s = c->sess;
  if (s) {
    if (was_full)
      log_msg(LOG_INFO, "iscsi",
              "event=conn_closed peer=%s initiator=%s tsih=%u cid=%u reason=\"%s\"", c->peer,
              s->initiator, s->tsih, c->cid, why);
    /* abort this connection's tasks (ERL 0) */
    struct task *t = s->tasks;
    while (t) {
      struct task *nx = t->snext;
      if (t->conn == c) task_abort(t);
      t = nx;
    }
    pthread_mutex_lock(&c->srv->lock);
    for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->snext)
      if (*pp == c) {
        *pp = c->snext;
        s->nconns--;
        break;
      }
    pthread_mutex_unlock(&c->srv->lock);
    c->sess = NULL;
    session_maybe_free(s);
  }
  conn_unref(c);
}

/* ---- full feature phase PDUs ------------------------------------------------ */
static void handle_nop_out(struct conn *c, const uint8_t *h, uint8_t *data, uint32_t len) {
  uint32_t itt = get_be32(h + 16), ttt = get_be32(h + 20);
  if (!(h[0] & 0x40)) cmdsn_accept(c->sess, get_be32(h + 24));
  if (ttt != 0xffffffffu) { /* the answer to our ping */
    if (ttt == c->nop_ttt) {
      c->nop_sent_ms = 0;
      c->nop_answers = 1;
    }
    c->nop_ttt = 0;
    return;
  }
  if (itt == 0xffffffffu) return; /* no reply wanted */
  struct txpdu *p = txpdu_new(c, OP_NOP_IN);
  if (!p) return;
  uint8_t *hh = p->hdr;
  hh[1] = 0x80;
  memcpy(hh + 8, h + 8, 8);
  put_be32(hh + 16, itt);
  put_be32(hh + 20, 0xffffffffu);
  put_be32(hh + 24, c->stat_sn++);
  sess_fill_sn(c, hh);
  if (len) {
    if (len > c->max_xmit_dsl) len = c->max_xmit_dsl;
    txpdu_set_data(c, p, data, len, c->own); /* hand the buffer over */
    c->own = NULL;
  }
  conn_queue(c, p);
}

static void send_tmf_rsp(struct conn *c, uint32_t itt, uint8_t response) {
  struct txpdu *p = txpdu_new(c, OP_TMF_RSP);
  if (!p) return;
  uint8_t *h = p->hdr;
  h[1] = 0x80;
  h[2] = response;
  put_be32(h + 16, itt);
  put_be32(h + 24, c->stat_sn++);
  sess_fill_sn(c, h);
  conn_queue(c, p);
}

static void tmf_task_done(struct tmf *m) {
  if (--m->waiting > 0) return;
  struct conn *c = m->conn;
  if (c->state != C_DEAD) {
    send_tmf_rsp(c, m->itt, m->response);
    if (m->cold) {
      /* drop the connection once the response is out */
      if (c->tx_tail) c->tx_tail->close_after = 1;
    }
  }
  conn_unref(c);
  free(m);
}

/* Abort the tasks of session s matching (lun / all); attach them to m. */
static void abort_tasks(struct session *s, struct tmf *m, int all_luns, uint64_t lun,
                        uint32_t except_itt) {
  struct task *t = s->tasks;
  while (t) {
    struct task *nx = t->snext;
    if ((all_luns || t->lun == lun) && t->itt != except_itt && !t->aborted &&
        (t->state == T_COLLECT || t->state == T_QUEUED)) {
      if (t->state == T_QUEUED && m && !t->tmf) {
        t->tmf = m;
        m->waiting++;
      }
      task_abort(t);
    }
    t = nx;
  }
}

static void handle_tmf(struct conn *c, const uint8_t *h) {
  struct session *s = c->sess;
  int fn = h[1] & 0x7f;
  uint32_t itt = get_be32(h + 16), rtt = get_be32(h + 20);
  uint64_t lun = lun_decode(h + 8);
  if (!(h[0] & 0x40)) cmdsn_accept(s, get_be32(h + 24));
  if (s->discovery) {
    send_reject(c, h, REJ_PROTOCOL_ERROR);
    return;
  }
  struct tmf *m = calloc(1, sizeof *m);
  if (!m) {
    send_tmf_rsp(c, itt, 255);
    return;
  }
  m->conn = c;
  m->itt = itt;
  c->ref++;
  m->waiting = 1; /* released at the end of this function */
  switch (fn) {
  case 1: { /* ABORT TASK */
    struct task *t = task_find(s, rtt);
    if (!t || t->state == T_DONE || t->state == T_SENDING) {
      /* unknown, or completed: its response is already on the way, so for
       * the initiator it no longer exists (libiscsi's AbortTaskSimpleAsync
       * accepts exactly "WRITE good + task does not exist") */
      m->response = 1;
      break;
    }
    if (t->aborted) { /* already being aborted (by an earlier TMF) */
      m->response = 0;
      break;
    }
    if (lun != t->lun) {
      m->response = 1;
      break;
    }
    if (t->state == T_QUEUED && !t->tmf) {
      t->tmf = m;
      m->waiting++;
    }
    task_abort(t);
    m->response = 0;
    break;
  }
  case 2: /* ABORT TASK SET */
  case 4: /* CLEAR TASK SET */
    if (lun != 0) {
      m->response = 2;
      break;
    }
    abort_tasks(s, m, 0, lun, itt);
    if (fn == 4)
      for (int i = 0; i < c->srv->nloops; i++) {
        atomic_fetch_add(&s->exp->ref, 1);
        loop_post(&c->srv->loops[i], MSG_ABORT_EXPORT, s, s->exp);
      }
    m->response = 0;
    break;
  case 3: /* CLEAR ACA: no ACA is ever established (NACA unsupported) */ m->response = 0; break;
  case 5: /* LOGICAL UNIT RESET */
  case 6: /* TARGET WARM RESET */
  case 7: /* TARGET COLD RESET */
    if (fn == 5 && lun != 0) {
      m->response = 2;
      break;
    }
    abort_tasks(s, m, 1, 0, itt);
    for (int i = 0; i < c->srv->nloops; i++) {
      atomic_fetch_add(&s->exp->ref, 1);
      loop_post(&c->srv->loops[i], fn == 7 ? MSG_KILL_EXPORT : MSG_ABORT_EXPORT, s, s->exp);
    }
    scsi_lu_reset(s->exp->lu, s->nexus.id, fn == 7);
    m->cold = fn == 7;
    m->response = 0;
    log_msg(LOG_INFO, "iscsi", "event=reset kind=%s target=%s initiator=%s",
            fn == 5   ? "lun"
            : fn == 6 ? "target_warm"
                      : "target_cold",
            s->exp->name, s->initiator);
    break;
  case 8: /* TASK REASSIGN: needs ERL 2 */ m->response = 4; break;
  default: m->response = 5; break;
  }
  tmf_task_done(m);
}

static void handle_logout(struct conn *c, const uint8_t *h) {
  struct session *s = c->sess;
  int reason = h[1] & 0x7f;
  uint16_t cid = (uint16_t)get_be16(h + 20);
  if (!(h[0] & 0x40)) cmdsn_accept(s, get_be32(h + 24));
  uint8_t response = 0;
  struct conn *target = NULL;
  if (reason == 0) {
    /* close the session: every other connection goes now */
    for (struct conn *o = s->conns; o;) {
      struct conn *nx = o->snext;
      if (o != c) conn_close(o, "session logout");
      o = nx;
    }
    target = c;
  } else if (reason == 1) {
    for (struct conn *o = s->conns; o; o = o->snext)
      if (o->cid == cid) target = o;
    if (!target) response = 1;
  } else {
    response = 2; /* recovery needs ERL 2 */
  }
  if (target && target != c) conn_close(target, "logout by another connection");
  struct txpdu *p = txpdu_new(c, OP_LOGOUT_RSP);
  if (!p) return;
  uint8_t *hh = p->hdr;
  hh[1] = 0x80;
  hh[2] = response;
  put_be32(hh + 16, get_be32(h + 16));
  put_be32(hh + 24, c->stat_sn++);
  sess_fill_sn(c, hh);
  put_be16(hh + 40, s->p.time2wait);
  put_be16(hh + 42, 0);
  if (target == c) {
    p->close_after = 1;
    c->state = C_LOGOUT;
  }
  conn_queue(c, p);
}

/* A SCSI Command header arrived (its immediate data, if any, follows). */
static int begin_scsi_cmd(struct conn *c, const uint8_t *h) {
  struct session *s = c->sess;
  if (s->discovery) {
    send_reject(c, h, REJ_PROTOCOL_ERROR);
    return -1;
  }
  int immediate = (h[0] & 0x40) != 0;
  uint32_t cmdsn = get_be32(h + 24);
  if (!immediate && !cmdsn_accept(s, cmdsn)) return -1; /* outside the window: drop silently */
  uint32_t itt = get_be32(h + 16);
  if (task_find(s, itt)) {
    send_reject(c, h, REJ_TASK_IN_PROGRESS);
    return -1;
  }
  struct task *t = calloc(1, sizeof *t);
  if (!t) {
    send_reject(c, h, REJ_OUT_OF_RESOURCES);
    return -1;
  }
  t->conn = c;
  t->sess = s;
  c->ref++;
  t->snext = s->tasks;
  if (s->tasks) s->tasks->sprev = t;
  s->tasks = t;
  s->ntasks++;
  t->state = T_COLLECT;
  t->itt = itt;
  t->cmdsn = cmdsn;
  t->immediate = immediate;
  t->ttt = c->next_ttt++ & 0x3fffffffu;
  memcpy(t->lun_raw, h + 8, 8);
  t->lun = lun_decode(h + 8);
  t->edtl = get_be32(h + 20);
  t->is_read = (h[1] & 0x40) != 0;
  t->is_write = (h[1] & 0x20) != 0;
  t->t0_us = now_us();
  memcpy(t->cdb, h + 32, 16);
  t->cdb_len = 16;
  if (c->bhs.ahs_len >= 4) { /* extended CDB AHS (type 1) */
    const uint8_t *a = h + ISCSI_BHS_LEN;
    uint32_t alen = get_be16(a);
    if (a[2] == 1 && alen > 1 && alen - 1 <= 16 && alen + 3 <= c->bhs.ahs_len) {
      memcpy(t->cdb + 16, a + 4, alen - 1);
      t->cdb_len = 16 + alen - 1;
    }
  }
  t->cmd.cdb = t->cdb;
  t->cmd.cdb_len = t->cdb_len;
  t->cmd.lun = t->lun;
  t->cmd.nexus = &s->nexus;
  t->cmd.exp_len = t->edtl;
  t->cmd.dir = (t->is_read ? SCSI_DIR_READ : 0) | (t->is_write ? SCSI_DIR_WRITE : 0);
  t->need = scsi_cdb_data_out_len(t->cdb, t->cdb_len);
  if (t->is_read && t->is_write) {
    scsi_set_sense(&t->cmd, 0x05, 0x24, 0x00); /* bidirectional commands are not supported */
    t->is_write = 0;
  }
  if (t->is_write && t->edtl) {
    uint32_t lim = SCSI_MAX_XFER_BYTES + 65536;
    int64_t need = t->need;
    uint32_t want = t->edtl;
    if (need >= 0 && (uint64_t)need < want) want = (uint32_t)need;
    if (need < 0 || (uint64_t)need > SCSI_MAX_XFER_BYTES) want = 0;
    if (want > lim) want = 0;
    uint32_t fb = s->p.first_burst < t->edtl ? s->p.first_burst : t->edtl;
    int f = (h[1] & 0x80) != 0;
    t->unsol_end = (!s->p.initial_r2t && !f) ? fb : 0;
    t->unsol_pending = !s->p.initial_r2t && !f;
    uint32_t bl = want > fb ? want : fb;
    if (bl > lim) bl = lim;
    if (bl > t->edtl) bl = t->edtl;
    if (bl && !(t->buf = malloc(bl))) {
      send_reject(c, h, REJ_OUT_OF_RESOURCES);
      task_release(t);
      return -1;
    }
    t->buf_len = bl;
    t->want = want;
    uint32_t imm = c->bhs.data_len;
    if (imm && !s->p.immediate_data) {
      send_reject(c, h, REJ_PROTOCOL_ERROR);
      task_release(t);
      return -1;
    }
    if (imm > t->edtl || imm > fb) {
      send_reject(c, h, REJ_PROTOCOL_ERROR);
      task_release(t);
      return -1;
    }
    t->r2t_next = t->unsol_end > imm ? t->unsol_end : imm;
    if (t->r2t_next > t->want) t->r2t_next = t->want;
    c->rx_task = t;
    return 0;
  }
  if (c->bhs.data_len) { /* immediate data on a command without W */
    send_reject(c, h, REJ_PROTOCOL_ERROR);
    task_release(t);
    return -1;
  }
  c->rx_task = t;
  return 0;
}

/* Commands the loop may run itself: no volume I/O at all (1), or reads that
 * are tried without blocking (2: vol_nowait, a page-cache miss goes to a
 * worker). Everything else — writes, flushes, unmaps — goes to the workers. */
static int inline_kind(const uint8_t *cdb) {
  switch (cdb[0]) {
  case 0x08:
  case 0x28:
  case 0xa8:
  case 0x88: /* READ 6/10/12/16 */ return 2;
  case 0x00: /* TEST UNIT READY */
  case 0x03: /* REQUEST SENSE */
  case 0x12: /* INQUIRY */
  case 0x1a: /* MODE SENSE 6 */
  case 0x25: /* READ CAPACITY 10 */
  case 0x5a: /* MODE SENSE 10 */
  case 0x5e: /* PERSISTENT RESERVE IN */
  case 0xa0: /* REPORT LUNS */
  case 0xa3: /* MAINTENANCE IN: target port groups, supported opcodes */ return 1;
  case 0x9e: /* SERVICE ACTION IN 16: READ CAPACITY 16 only */
    return (cdb[1] & 0x1f) == 0x10 ? 1 : 0;
  default: return 0;
  }
}

static void run_task(struct conn *c, struct task *t) {
  int kind = inline_kind(t->cdb);
  if (!kind || c->srv->no_inline) {
    worker_push(c->srv, t);
    return;
  }
  t->cmd.data_out = t->buf;
  vol_nowait = 1;
  vol_would_block = 0;
  scsi_exec(t->sess->exp->lu, &t->cmd);
  vol_nowait = 0;
  if (vol_would_block) {
    vol_would_block = 0;
    free(t->cmd.data_in);
    t->cmd.data_in = NULL;
    t->cmd.data_in_len = 0;
    t->cmd.status = 0;
    t->cmd.sense_len = 0;
    worker_push(c->srv, t);
    return;
  }
  task_done(t);
}

static void finish_scsi_cmd(struct conn *c, struct task *t, uint32_t imm) {
  t->got += imm;
  if (t->cmd.status == SCSI_CHECK_CONDITION && t->cmd.sense_len) { /* refused up front */
    t->state = T_DONE;
    task_respond(c, t);
    return;
  }
  if (t->is_write && t->edtl) {
    task_send_r2ts(c, t);
    task_maybe_run(c, t);
    return;
  }
  run_task(c, t);
}

/* A Data-Out header: find the task and where the data goes. */
static int begin_data_out(struct conn *c, const uint8_t *h) {
  struct session *s = c->sess;
  uint32_t itt = get_be32(h + 16), ttt = get_be32(h + 20);
  uint32_t off = get_be32(h + 40), len = c->bhs.data_len;
  struct task *t = task_find(s, itt);
  c->rx_task = NULL;
  if (!t || t->conn != c || t->state != T_COLLECT) {
    /* aborted or unknown task: discard the data quietly if it was ours */
    if (!t) return 0;
    send_reject(c, h, REJ_PROTOCOL_ERROR);
    return 0;
  }
  if (ttt == 0xffffffffu) {
    if (!t->unsol_pending || off + (uint64_t)len > t->unsol_end ||
        get_be32(h + 36) != t->unsol_datasn) {
      send_reject(c, h, REJ_PROTOCOL_ERROR);
      task_abort(t);
      return 0;
    }
    t->unsol_datasn++;
  } else {
    if (ttt != t->ttt || !t->r2t_outstanding || off + (uint64_t)len > t->want ||
        get_be32(h + 36) != t->r2t_datasn) {
      send_reject(c, h, REJ_PROTOCOL_ERROR);
      task_abort(t);
      return 0;
    }
    t->r2t_datasn++;
  }
  c->rx_task = t;
  return 0;
}

static void finish_data_out(struct conn *c, const uint8_t *h) {
  struct task *t = c->rx_task;
  c->rx_task = NULL;
  if (!t || t->aborted) return;
  t->got += c->bhs.data_len;
  if (h[1] & 0x80) {
    if (get_be32(h + 20) == 0xffffffffu) {
      t->unsol_pending = 0;
    } else {
      t->r2t_outstanding--;
      t->r2t_datasn = 0;
      task_send_r2ts(c, t);
    }
  }
  task_maybe_run(c, t);
}

/* ======================================================================= */
/* receive                                                                  */
/* ======================================================================= */
static void conn_migrate(struct conn *c);

/* Header complete: decide where the data segment goes. 0 on, -1 closed. */
static int rx_header_done(struct conn *c) {
  struct bhs *b = &c->bhs;
  uint8_t *h = c->hdr;
  c->dst = NULL;
  c->dst_len = 0;
  c->rx_task = NULL;
  uint32_t limit = c->state == C_LOGIN ? 65536 : ISCSI_OUR_MAX_RECV_DSL;
  if (b->data_len > limit) {
    conn_close(c, "data segment longer than MaxRecvDataSegmentLength");
    return -1;
  }
  if (c->state == C_LOGIN) {
    if (b->opcode != OP_LOGIN_REQ) {
      conn_close(c, "non-login PDU during login");
      return -1;
    }
  } else if (c->state != C_FULL) {
    goto data; /* logging out or failed login: read past and ignore */
  } else if (b->opcode == OP_SCSI_CMD) {
    if (begin_scsi_cmd(c, h) == 0 && c->rx_task && c->rx_task->buf) {
      c->dst = c->rx_task->buf;
      c->dst_len = b->data_len < c->rx_task->buf_len ? b->data_len : c->rx_task->buf_len;
    }
    goto data;
  } else if (b->opcode == OP_DATA_OUT) {
    begin_data_out(c, h);
    struct task *t = c->rx_task;
    if (t && t->buf) {
      uint32_t off = get_be32(h + 40);
      if (off < t->buf_len) {
        c->dst = t->buf + off;
        c->dst_len = b->data_len < t->buf_len - off ? b->data_len : t->buf_len - off;
      }
    }
    goto data;
  }
  if (b->data_len) {
    free(c->own);
    c->own = malloc(b->data_len + 1);
    if (!c->own) {
      conn_close(c, "out of memory");
      return -1;
    }
    c->dst = c->own;
    c->dst_len = b->data_len;
  }
data:
  c->data_total = pad4(b->data_len) + (c->ddigest && b->data_len ? ISCSI_DIGEST_LEN : 0);
  c->data_got = 0;
  return 0;
}

/* The whole PDU is in: act on it. 0 on, -1 closed, 1 migrated away. */
static int rx_pdu_done(struct conn *c) {
  struct bhs *b = &c->bhs;
  uint8_t *h = c->hdr;
  if (c->ddigest && b->data_len && c->dst && c->dst_len == b->data_len) {
    uint32_t crc = util_crc32c(0, c->dst, b->data_len);
    uint32_t pad = pad4(b->data_len) - b->data_len;
    static const uint8_t zeros[4];
    if (pad) crc = util_crc32c(crc, zeros, pad);
    uint32_t got;
    memcpy(&got, c->dig, 4);
    if (got != crc) {
      send_reject(c, h, REJ_DIGEST_ERROR);
      if (b->opcode == OP_DATA_OUT || b->opcode == OP_SCSI_CMD) {
        /* ERL 0: the command cannot complete; abort it */
        if (c->rx_task) task_abort(c->rx_task);
        c->rx_task = NULL;
      }
      return 0;
    }
  }
  c->last_rx_ms = util_mono_ms();
  if (c->state == C_LOGIN) {
    if (!login_started(c->login) && c->srv->nloops > 1) {
      /* first Login Request: move to the loop of hash(InitiatorName, ISID) */
      conn_migrate(c);
      if (c->migrate_to) return 1; /* the PDU is handled on the new loop */
    }
    int r = login_pdu(c, h, (char *)c->own, b->data_len);
    if (r < 0) {
      if (c->tx_tail)
        c->tx_tail->close_after = 1;
      else
        conn_close(c, "login failed");
      c->state = C_LOGOUT; /* ignore anything else */
      return 0;
    }
    if (r == 1) {
      c->state = C_FULL;
      login_free(c->login);
      c->login = NULL;
    }
    return 0;
  }
  if (c->state != C_FULL) return 0;
  switch (b->opcode) {
  case OP_SCSI_CMD:
    if (c->rx_task) {
      struct task *t = c->rx_task;
      c->rx_task = NULL;
      finish_scsi_cmd(c, t, b->data_len);
    }
    break;
  case OP_DATA_OUT: finish_data_out(c, h); break;
  case OP_NOP_OUT: handle_nop_out(c, h, c->own, b->data_len); break;
  case OP_TMF_REQ: handle_tmf(c, h); break;
  case OP_TEXT_REQ:
    if (!(h[0] & 0x40)) cmdsn_accept(c->sess, get_be32(h + 24));
    text_pdu(c, h, (char *)(c->own ? c->own : (uint8_t *)""), b->data_len);
    break;
  case OP_LOGOUT_REQ: handle_logout(c, h); break;
  case OP_SNACK: send_reject(c, h, REJ_SNACK_REJECT); break;
  case OP_LOGIN_REQ: send_reject(c, h, REJ_PROTOCOL_ERROR); break;
  default: send_reject(c, h, REJ_CMD_NOT_SUPPORTED); break;
  }
  return 0;
}

/* Consume bytes from c->rx. Returns -1 if the connection closed or moved. */
static int rx_consume(struct conn *c) {
  while (c->state != C_DEAD) {
    size_t avail = c->rx_len - c->rx_off;
    if (c->rx_phase == 0) {
      uint32_t have = c->data_got; /* header bytes so far */
      uint32_t need = c->hdr_need - have;
      if (!avail) return 0;
      uint32_t n = avail < need ? (uint32_t)avail : need;
      memcpy(c->hdr + have, c->rx + c->rx_off, n);
      c->rx_off += n;
      c->data_got += n;
      if (c->data_got < c->hdr_need) continue;
      if (c->hdr_need == ISCSI_BHS_LEN) {
        bhs_parse(c->hdr, &c->bhs);
        if (c->bhs.ahs_len > 1020) {
          conn_close(c, "AHS too long");
          return -1;
        }
        uint32_t full = ISCSI_BHS_LEN + c->bhs.ahs_len + (c->hdigest ? ISCSI_DIGEST_LEN : 0);
        if (full > ISCSI_BHS_LEN) {
          c->hdr_need = full;
          continue;
        }
      }
      if (c->hdigest) {
        uint32_t hl = ISCSI_BHS_LEN + c->bhs.ahs_len, got;
        memcpy(&got, c->hdr + hl, 4);
        if (util_crc32c(0, c->hdr, hl) != got) {
          conn_close(c, "header digest error");
          return -1;
        }
      }
      if (rx_header_done(c) < 0) return -1;
      c->rx_phase = 1;
      c->data_got = 0;
    }
    /* data segment + pad + digest */
    while (c->data_got < c->data_total) {
      avail = c->rx_len - c->rx_off;
      uint32_t dl = c->bhs.data_len;
      if (c->data_got < dl) {
        uint32_t want = dl - c->data_got;
        if (!avail) {
          /* large remainder: read straight into the destination */
          if (c->dst && c->data_got < c->dst_len && c->dst_len - c->data_got >= 4096) {
            ssize_t r = recv(c->fd, c->dst + c->data_got, c->dst_len - c->data_got, MSG_DONTWAIT);
            if (r > 0) {
              c->rx_bytes += (uint64_t)r;
              c->data_got += (uint32_t)r;
              continue;
            }
            if (r == 0) {
              conn_close(c, "peer closed");
              return -1;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
            conn_close(c, "recv failed");
            return -1;
          }
          return 0;
        }
        uint32_t n = avail < want ? (uint32_t)avail : want;
        if (c->dst && c->data_got < c->dst_len) {
          uint32_t m = c->dst_len - c->data_got < n ? c->dst_len - c->data_got : n;
          memcpy(c->dst + c->data_got, c->rx + c->rx_off, m);
        }
        c->rx_off += n;
        c->data_got += n;
        continue;
      }
      if (!avail) return 0;
      uint32_t pad = pad4(dl) - dl;
      uint32_t pos = c->data_got - dl; /* within pad + digest */
      uint32_t rest = c->data_total - c->data_got;
      uint32_t n = avail < rest ? (uint32_t)avail : rest;
      for (uint32_t i = 0; i < n; i++) {
        uint32_t q = pos + i;
        if (q >= pad) c->dig[q - pad] = c->rx[c->rx_off + i];
      }
      c->rx_off += n;
      c->data_got += n;
    }
    if (c->own && c->dst == c->own) c->own[c->bhs.data_len] = 0;
    c->rx_phase = 0;
    c->hdr_need = ISCSI_BHS_LEN;
    c->data_got = 0;
    int r = rx_pdu_done(c);
    if (r == 1) return -1; /* moving to another loop: keep c->own for it */
    free(c->own);
    c->own = NULL;
    if (r != 0) return -1;
  }
  return -1;
}

static void conn_readable(struct conn *c) {
  for (int rounds = 0; rounds < 16 && c->state != C_DEAD; rounds++) {
    if (c->rx_off == c->rx_len) c->rx_off = c->rx_len = 0;
    if (c->rx_len < RXBUF) {
      ssize_t r = recv(c->fd, c->rx + c->rx_len, RXBUF - c->rx_len, MSG_DONTWAIT);
      if (r == 0) {
        conn_close(c, "peer closed");
        return;
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          conn_close(c, "recv failed");
        else if (c->rx_off < c->rx_len)
          rx_consume(c);
        return;
      }
      c->rx_bytes += (uint64_t)r;
      c->rx_len += (size_t)r;
    }
    if (rx_consume(c) < 0) return;
    if (c->rx_off == c->rx_len)
      c->rx_off = c->rx_len = 0;
    else if (c->rx_off) { /* keep the partial PDU at the front */
      memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
      c->rx_len -= c->rx_off;
      c->rx_off = 0;
    }
  }
}

/* ======================================================================= */
/* event loops                                                              */
/* ======================================================================= */
static void loop_post(struct loop *l, int type, void *ptr, struct export *x) {
  struct loop_msg *m = calloc(1, sizeof *m);
  if (!m) {
    /* the caller holds its own reference: dropping this one never frees x */
    if (x) atomic_fetch_sub(&x->ref, 1);
    return;
  }
  m->type = type;
  m->ptr = ptr;
  m->exp = x;
  pthread_mutex_lock(&l->lock);
  m->next = l->msgs;
  l->msgs = m;
  pthread_mutex_unlock(&l->lock);
  uint64_t one = 1;
  ssize_t w = write(l->evfd, &one, sizeof one);
  (void)w;
}

static void conn_attach(struct loop *l, struct conn *c) {
  c->loop = l;
  c->grave_loop = l;
  c->lnext = l->conns;
  c->lprev = NULL;
  if (l->conns) l->conns->lprev = c;
  l->conns = c;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) conn_close(c, "epoll");
}

/* First Login Request: choose the loop of hash(InitiatorName, ISID). The
 * hand-over itself happens in loop_main once the handlers let go of c. */
static void conn_migrate(struct conn *c) {
  uint32_t hsh = 2166136261u;
  const uint8_t *isid = c->hdr + 8;
  for (int i = 0; i < 6; i++)
    hsh = (hsh ^ isid[i]) * 16777619u;
  const char *d = (const char *)c->own;
  uint32_t len = c->bhs.data_len;
  for (uint32_t i = 0; d && i + 14 < len; i++) {
    if (!memcmp(d + i, "InitiatorName=", 14) && (i == 0 || d[i - 1] == 0)) {
      for (uint32_t k = i + 14; k < len && d[k]; k++)
        hsh = (hsh ^ (uint8_t)(d[k] | 0x20)) * 16777619u;
      break;
    }
  }
  struct loop *to = &c->srv->loops[hsh % (uint32_t)c->srv->nloops];
  if (to != c->loop) c->migrate_to = to;
}

static void conn_handoff(struct conn *c) {
  struct loop *from = c->loop, *to = c->migrate_to;
  c->migrate_to = NULL;
  epoll_ctl(from->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  loop_unlink(from, c);
  c->loop = NULL;
  loop_post(to, MSG_ADOPT, c, NULL);
}

static void send_async_logout(struct conn *c) {
  struct txpdu *p = txpdu_new(c, OP_ASYNC);
  if (!p) return;
  uint8_t *h = p->hdr;
  h[1] = 0x80;
  put_be32(h + 16, 0xffffffffu);
  put_be32(h + 24, c->stat_sn++);
  sess_fill_sn(c, h);
  h[36] = 1;                                     /* AsyncEvent: the target requests a logout */
  put_be16(h + 42, ISCSI_LOGOUT_WAIT_MS / 1000); /* Parameter3: seconds to log out in */
  conn_queue(c, p);
}

static void loop_messages(struct loop *l) {
  pthread_mutex_lock(&l->lock);
  struct loop_msg *m = l->msgs;
  l->msgs = NULL;
  struct task *done = l->done_head;
  l->done_head = l->done_tail = NULL;
  pthread_mutex_unlock(&l->lock);
  /* oldest message first */
  struct loop_msg *rev = NULL;
  while (m) {
    struct loop_msg *nx = m->next;
    m->next = rev;
    rev = m;
    m = nx;
  }
  for (m = rev; m;) {
    struct loop_msg *nx = m->next;
    if (m->type == MSG_ADOPT) {
      struct conn *c = m->ptr;
      conn_attach(l, c);
      if (c->state != C_DEAD) {
        /* process the login request that triggered the move */
        int r = login_pdu(c, c->hdr, (char *)c->own, c->bhs.data_len);
        free(c->own);
        c->own = NULL;
        if (r < 0) {
          if (c->tx_tail)
            c->tx_tail->close_after = 1;
          else
            conn_close(c, "login failed");
          if (c->state != C_DEAD) c->state = C_LOGOUT;
        } else if (r == 1) {
          c->state = C_FULL;
          login_free(c->login);
          c->login = NULL;
        }
        if (c->state != C_DEAD && c->rx_off < c->rx_len) rx_consume(c);
      }
    } else if (m->type == MSG_KILL_ALL) {
      while (l->conns)
        conn_close(l->conns, "target stopping");
    } else if (m->type == MSG_UNEXPORT) {
      /* ask each initiator to log out (Async Message, event 1) and drop
       * the connection if it has not within ISCSI_LOGOUT_WAIT_MS */
      int64_t now = util_mono_ms();
      for (struct conn *c = l->conns; c;) {
        struct conn *nx2 = c->lnext;
        if (c->sess && c->sess->exp == m->exp) {
          if (c->state == C_FULL && !c->kill_at_ms) {
            send_async_logout(c);
            c->kill_at_ms = now + ISCSI_LOGOUT_WAIT_MS;
          } else if (c->state != C_FULL) {
            conn_close(c, "target removed");
          }
        }
        c = nx2;
      }
      export_put(m->exp);
    } else if (m->type == MSG_KILL_EXPORT || m->type == MSG_ABORT_EXPORT) {
      struct conn *c = l->conns;
      while (c) {
        struct conn *nx2 = c->lnext;
        struct session *s = c->sess;
        if (s && s->exp == m->exp && s != m->ptr) {
          if (m->type == MSG_KILL_EXPORT) {
            conn_close(c, "target removed or reset");
          } else {
            abort_tasks(s, NULL, 1, 0, 0xffffffffu);
          }
        }
        c = nx2;
      }
      export_put(m->exp);
    }
    free(m);
    m = nx;
  }
  while (done) {
    struct task *nx = done->qnext;
    task_done(done);
    done = nx;
  }
}

static void loop_timers(struct loop *l, int64_t now) {
  struct conn *c = l->conns;
  while (c) {
    struct conn *nx = c->lnext;
    if (c->kill_at_ms && now >= c->kill_at_ms) {
      conn_close(c, "target removed (no logout in time)");
    } else if (c->state == C_LOGIN && now - c->login_start_ms > ISCSI_LOGIN_TIMEOUT_MS) {
      conn_close(c, "login timeout");
    } else if (c->state == C_FULL) {
      if (c->nop_sent_ms && now - c->nop_sent_ms > ISCSI_NOP_TIMEOUT_MS && c->nop_answers) {
        conn_close(c, "no answer to NOP-In (dead peer)");
      } else if (!c->nop_sent_ms && now - c->last_rx_ms > ISCSI_NOP_IDLE_MS) {
        struct txpdu *p = txpdu_new(c, OP_NOP_IN);
        if (p) {
          uint8_t *h = p->hdr;
          h[1] = 0x80;
          put_be32(h + 16, 0xffffffffu);
          c->nop_ttt = (c->next_ttt++ & 0x3fffffffu) | 0x80000000u;
          put_be32(h + 20, c->nop_ttt);
          put_be32(h + 24, c->stat_sn);
          sess_fill_sn(c, h);
          conn_queue(c, p);
          c->nop_sent_ms = now;
        }
      }
    }
    c = nx;
  }
}

static void *loop_main(void *arg) {
  struct loop *l = arg;
  struct iscsi_srv *srv = l->srv;
  struct epoll_event evs[64];
  int64_t last_timer = util_mono_ms();
  while (!atomic_load(&srv->stopping)) {
    int n = epoll_wait(l->epfd, evs, 64, 250);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == l) { /* eventfd: mailbox */
        uint64_t v;
        ssize_t r = read(l->evfd, &v, sizeof v);
        (void)r;
        loop_messages(l);
        continue;
      }
      if ((uintptr_t)p < 4096) { /* listener index + 1 */
        int lfd = srv->lfds[(uintptr_t)p - 1];
        for (int k = 0; k < 32; k++) {
          struct sockaddr_storage ss;
          socklen_t sl = sizeof ss;
          int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          struct conn *c = calloc(1, sizeof *c);
          if (c) c->rx = malloc(RXBUF);
          if (!c || !c->rx) {
            if (c) free(c);
            close(fd);
            continue;
          }
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
          int idle = 30, intvl = 10, cnt = 3;
          setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
          setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
          setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
          c->srv = srv;
          c->fd = fd;
          c->ref = 1;
          c->state = C_LOGIN;
          c->hdr_need = ISCSI_BHS_LEN;
          c->max_xmit_dsl = 8192;
          c->login = login_new(c);
          c->login_start_ms = c->last_rx_ms = util_mono_ms();
          char host[NI_MAXHOST < 64 ? NI_MAXHOST : 64], serv[16];
          if (!getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv,
                           NI_NUMERICHOST | NI_NUMERICSERV))
            snprintf(c->peer, sizeof c->peer, "%s:%s", host, serv);
          struct sockaddr_storage ls;
          socklen_t ll = sizeof ls;
          if (!getsockname(fd, (struct sockaddr *)&ls, &ll) &&
              !getnameinfo((struct sockaddr *)&ls, ll, host, sizeof host, serv, sizeof serv,
                           NI_NUMERICHOST | NI_NUMERICSERV)) {
            snprintf(c->local_ip, sizeof c->local_ip, "%s", host);
            snprintf(c->local, sizeof c->local, "%s:%s", host, serv);
          }
          if (!c->login) {
            close(fd);
            free(c->rx);
            free(c);
            continue;
          }
          conn_attach(l, c);
        }
        continue;
      }
      struct conn *c = p;
      if (c->state == C_DEAD) continue;
      c->ref++; /* keep c alive across the handlers */
      if (evs[i].events & EPOLLOUT) conn_flush(c);
      if (c->state != C_DEAD && evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_readable(c);
      int handoff = c->migrate_to && c->state != C_DEAD; /* then c keeps its base ref */
      conn_unref(c);
      if (handoff) conn_handoff(c);
    }
    /* send everything queued in this round, one sendmsg per connection */
    for (int i = 0; i < l->ndirty; i++) {
      struct conn *c = l->dirty[i];
      if (!c) continue;
      c->dirty = 0;
      if (c->state != C_DEAD) conn_flush(c);
      conn_unref(c);
    }
    l->ndirty = 0;
    int64_t now = util_mono_ms();
    if (now - last_timer >= 250) {
      last_timer = now;
      loop_timers(l, now);
    }
    loop_bury(l);
  }
  /* stopping: close everything this loop owns */
  loop_messages(l);
  while (l->conns)
    conn_close(l->conns, "target stopping");
  loop_bury(l);
  return NULL;
}

/* ======================================================================= */
/* failed logins                                                            */
/* ======================================================================= */
static void addr_only(const char *peer, char *out, size_t n) {
  snprintf(out, n, "%s", peer);
  char *colon = strrchr(out, ':');
  if (colon) *colon = 0;
}

/* The lines a limiter call asks for, written after the lock is released. */
static void fail_report_log(const struct ll_report *r) {
  if (r->sum_addr[0])
    log_msg(LOG_WARN, "iscsi", "event=login_failed_suppressed addr=%s count=%d refused=%d",
            r->sum_addr, r->sum_suppressed, r->sum_refused);
  if (r->glob_suppressed)
    log_msg(LOG_WARN, "iscsi", "event=login_failed_suppressed addr=* count=%d", r->glob_suppressed);
}

int srv_login_failed(struct iscsi_srv *srv, const char *peer, const char *initiator) {
  char a[LL_ADDR_LEN];
  addr_only(peer, a, sizeof a);
  struct ll_report r;
  pthread_mutex_lock(&srv->fail_lock);
  int block = ll_failed(&srv->fails, a, initiator, util_mono_ms(), &r);
  pthread_mutex_unlock(&srv->fail_lock);
  fail_report_log(&r);
  if (block == LL_BLOCK_PAIR && r.log_block)
    log_msg(LOG_WARN, "iscsi",
            "event=login_blocked addr=%s initiator=%s failures=%d seconds=%d reason=\"too many "
            "failed logins of this initiator from this address\"",
            a, initiator && initiator[0] ? initiator : "-", LL_PAIR_MAX,
            (int)((r.block_ms + 999) / 1000));
  else if (block == LL_BLOCK_ADDR && r.log_block)
    log_msg(LOG_WARN, "iscsi",
            "event=login_blocked addr=%s initiator=* failures=%d seconds=%d reason=\"too many "
            "failed logins from this address\"",
            a, LL_ADDR_MAX, (int)((r.block_ms + 999) / 1000));
  return r.log;
}

int srv_login_refused(struct iscsi_srv *srv) {
  struct ll_report r;
  pthread_mutex_lock(&srv->fail_lock);
  int log = ll_refused(&srv->fails, util_mono_ms(), &r);
  pthread_mutex_unlock(&srv->fail_lock);
  if (r.ref_suppressed)
    log_msg(LOG_INFO, "iscsi", "event=login_refused_suppressed count=%d", r.ref_suppressed);
  return log;
}

int srv_login_blocked(struct iscsi_srv *srv, const char *peer, const char *initiator) {
  char a[LL_ADDR_LEN];
  addr_only(peer, a, sizeof a);
  struct ll_report r;
  pthread_mutex_lock(&srv->fail_lock);
  int block = ll_blocked(&srv->fails, a, initiator, util_mono_ms(), &r);
  pthread_mutex_unlock(&srv->fail_lock);
  fail_report_log(&r);
  return block;
}

/* ======================================================================= */
/* start / stop                                                             */
/* ======================================================================= */
static int parse_portal(const char *s, struct sockaddr_storage *ss, socklen_t *sl) {
  char host[128], port[16] = "3260";
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || (size_t)(end - s - 1) >= sizeof host) return -1;
    snprintf(host, sizeof host, "%.*s", (int)(end - s - 1), s + 1);
    if (end[1] == ':')
      snprintf(port, sizeof port, "%s", end + 2);
    else if (end[1])
      return -1;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon && strchr(s, ':') == colon) {
      snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
      snprintf(port, sizeof port, "%s", colon + 1);
    } else {
      snprintf(host, sizeof host, "%s", s);
    }
  }
  struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                           .ai_socktype = SOCK_STREAM};
  struct addrinfo *ai = NULL;
  if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) != 0 || !ai) return -1;
  memcpy(ss, ai->ai_addr, ai->ai_addrlen);
  *sl = ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

static int ncpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int iscsi_start(const struct iscsi_config *cfg, struct iscsi_srv **out, struct err *e) {
  *out = NULL;
  if (!cfg->nportals) {
    err_set(e, 400, "ISCSI_NO_PORTAL", "No iSCSI portal to listen on.");
    return -1;
  }
  struct iscsi_srv *srv = calloc(1, sizeof *srv);
  if (!srv) goto oom;
  pthread_mutex_init(&srv->lock, NULL);
  pthread_cond_init(&srv->cond, NULL);
  pthread_mutex_init(&srv->qlock, NULL);
  pthread_cond_init(&srv->qcond, NULL);
  pthread_mutex_init(&srv->fail_lock, NULL);
  srv->next_tsih = 1;
  const char *ni = getenv("STREAMER_ISCSI_NO_INLINE");
  srv->no_inline = ni && *ni == '1';
  srv->lfds = calloc(cfg->nportals, sizeof *srv->lfds);
  srv->portals = calloc(cfg->nportals + 1, sizeof *srv->portals);
  if (!srv->lfds || !srv->portals) goto oom;
  for (size_t i = 0; i < cfg->nportals; i++)
    srv->lfds[i] = -1;
  for (size_t i = 0; i < cfg->nportals; i++) {
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_portal(cfg->portals[i], &ss, &sl) < 0) {
      err_set(e, 400, "ISCSI_BAD_PORTAL", "iSCSI portal '%s' is not ADDR[:PORT].", cfg->portals[i]);
      goto fail;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
      err_set(e, 500, "ISCSI_LISTEN_FAILED", "Cannot listen on iSCSI portal %s: %s.",
              cfg->portals[i], strerror(errno));
      if (fd >= 0) close(fd);
      goto fail;
    }
    srv->lfds[i] = fd;
    srv->nportals++;
    struct sockaddr_storage bs = {0};
    socklen_t bl = sizeof bs;
    char host[64] = "?", serv[16] = "?";
    if (getsockname(fd, (struct sockaddr *)&bs, &bl) == 0)
      getnameinfo((struct sockaddr *)&bs, bl, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV);
    srv->portals[i] = bs.ss_family == AF_INET6 ? util_strdup_printf("[%s]:%s", host, serv)
                                               : util_strdup_printf("%s:%s", host, serv);
  }
  int cpus = ncpus();
  srv->nloops = cfg->net_threads > 0 ? cfg->net_threads : (cpus < 8 ? cpus : 8);
  srv->nworkers = cfg->io_threads > 0 ? cfg->io_threads : (2 * cpus < 4 ? 4 : 2 * cpus);
  srv->loops = calloc((size_t)srv->nloops, sizeof *srv->loops);
  srv->workers = calloc((size_t)srv->nworkers, sizeof *srv->workers);
  if (!srv->loops || !srv->workers) goto oom;
  for (int i = 0; i < srv->nloops; i++) {
    struct loop *l = &srv->loops[i];
    l->srv = srv;
    l->idx = i;
    pthread_mutex_init(&l->lock, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0) {
      err_set(e, 500, "ISCSI_START_FAILED", "epoll/eventfd: %s.", strerror(errno));
      goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev);
    for (size_t k = 0; k < srv->nportals; k++) {
      struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = (void *)(k + 1)};
      epoll_ctl(l->epfd, EPOLL_CTL_ADD, srv->lfds[k], &lev);
    }
  }
  for (int i = 0; i < srv->nworkers; i++)
    if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
      srv->nworkers = i;
      err_set(e, 500, "ISCSI_START_FAILED", "Cannot start I/O threads.");
      goto fail;
    }
  for (int i = 0; i < srv->nloops; i++)
    if (pthread_create(&srv->loops[i].th, NULL, loop_main, &srv->loops[i]) != 0) {
      for (int k = i; k < srv->nloops; k++)
        srv->loops[k].th = 0;
      err_set(e, 500, "ISCSI_START_FAILED", "Cannot start network threads.");
      goto fail;
    }
  for (size_t i = 0; i < srv->nportals; i++)
    log_msg(LOG_INFO, "iscsi", "event=listen portal=%s net_threads=%d io_threads=%d",
            srv->portals[i], srv->nloops, srv->nworkers);
  *out = srv;
  return 0;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "Out of memory.");
fail:
  if (srv) iscsi_stop(srv);
  return -1;
}

void iscsi_stop(struct iscsi_srv *srv) {
  if (!srv) return;
  for (size_t i = 0; i < srv->nportals; i++)
    if (srv->lfds[i] >= 0) {
      for (int k = 0; k < srv->nloops; k++)
        if (srv->loops && srv->loops[k].epfd > 0)
          epoll_ctl(srv->loops[k].epfd, EPOLL_CTL_DEL, srv->lfds[i], NULL);
      close(srv->lfds[i]);
      srv->lfds[i] = -1;
    }
  int running = srv->loops && srv->nloops && srv->loops[0].th;
  if (running) {
    for (int i = 0; i < srv->nloops; i++)
      loop_post(&srv->loops[i], MSG_KILL_ALL, NULL, NULL);
    pthread_mutex_lock(&srv->lock);
    while (srv->sessions)
      pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
  }
  atomic_store(&srv->stopping, 1);
  for (int i = 0; srv->loops && i < srv->nloops; i++) {
    struct loop *l = &srv->loops[i];
    if (l->th) {
      uint64_t one = 1;
      ssize_t w = write(l->evfd, &one, sizeof one);
      (void)w;
      pthread_join(l->th, NULL);
    }
  }
  pthread_mutex_lock(&srv->qlock);
  pthread_cond_broadcast(&srv->qcond);
  pthread_mutex_unlock(&srv->qlock);
  for (int i = 0; i < srv->nworkers; i++)
    pthread_join(srv->workers[i], NULL);
  for (int i = 0; srv->loops && i < srv->nloops; i++) {
    struct loop *l = &srv->loops[i];
    if (l->epfd > 0) close(l->epfd);
    if (l->evfd > 0) close(l->evfd);
    while (l->msgs) {
      struct loop_msg *m = l->msgs;
      l->msgs = m->next;
      if (m->exp) export_put(m->exp);
      free(m);
    }
    pthread_mutex_destroy(&l->lock);
  }
  while (srv->exports) {
    struct export *x = srv->exports;
    srv->exports = x->next;
    export_put(x);
  }
  for (size_t i = 0; srv->portals && srv->portals[i]; i++)
    free(srv->portals[i]);
  free(srv->portals);
  free(srv->lfds);
  free(srv->loops);
  free(srv->workers);
  free(srv);
}

/* ======================================================================= */
/* stats                                                                    */
/* ======================================================================= */
json_t *iscsi_targets_json(struct iscsi_srv *srv, const char *target_name) {
  json_t *arr = json_array();
  pthread_mutex_lock(&srv->lock);
  for (struct export *x = srv->exports; x; x = x->next) {
    if (x->removed) continue;
    if (target_name && strcasecmp(target_name, x->name)) continue;
    json_t *ini = json_array();
    for (size_t i = 0; i < x->ninitiators; i++)
      json_array_append_new(ini, json_string(x->initiators[i]));
    struct scsi_lu_stats st;
    scsi_lu_stats(x->lu, &st);
    json_t *lat = json_object();
    for (int b = 0; b < ISCSI_LAT_BUCKETS; b++) {
      char k[24];
      if (b < ISCSI_LAT_BUCKETS - 1)
        snprintf(k, sizeof k, "le%u", iscsi_lat_limits[b]);
      else
        snprintf(k, sizeof k, "inf");
      json_object_set_new(lat, k, json_integer((json_int_t)atomic_load(&x->lat[b])));
    }
    json_t *sess = json_array();
    for (struct session *s = srv->sessions; s; s = s->next) {
      if (s->exp != x || s->dying) continue;
      json_t *conns = json_array();
      for (struct conn *c = s->conns; c; c = c->snext)
        json_array_append_new(conns, json_pack("{s:s,s:s,s:i}", "peer", c->peer, "local", c->local,
                                               "cid", (int)c->cid));
      char isid[16], started[32];
      snprintf(isid, sizeof isid, "%02x%02x%02x%02x%02x%02x", s->isid[0], s->isid[1], s->isid[2],
               s->isid[3], s->isid[4], s->isid[5]);
      util_iso8601(s->started_ms, started);
      json_array_append_new(
          sess, json_pack("{s:s,s:s,s:i,s:o,s:I,s:I,s:I,s:s}", "initiatorName", s->initiator,
                          "isid", isid, "tsih", (int)s->tsih, "connections", conns, "readBytes",
                          (json_int_t)atomic_load(&s->read_bytes), "writeBytes",
                          (json_int_t)atomic_load(&s->write_bytes), "commands",
                          (json_int_t)atomic_load(&s->commands), "started", started));
    }
    json_t *o =
        json_pack("{s:s,s:s?,s:o,s:b,s:b,s:I,s:{s:I,s:I,s:I,s:I,s:o},s:o}", "targetName", x->name,
                  "alias", x->alias, "initiatorNames", ini, "chap", x->chap_secret != NULL,
                  "readOnly", vol_read_only(x->vol), "size", (json_int_t)vol_size(x->vol), "stats",
                  "readBytes", (json_int_t)st.read_bytes, "writeBytes", (json_int_t)st.write_bytes,
                  "commands", (json_int_t)st.commands, "errors", (json_int_t)st.errors, "latencyUs",
                  lat, "sessions", sess);
    if (o) json_array_append_new(arr, o);
  }
  pthread_mutex_unlock(&srv->lock);
  return arr;
}
