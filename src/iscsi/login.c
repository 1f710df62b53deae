/* login.c — the login phase (RFC 7143 §6, §11.12–11.13): stages, operational
 * negotiation of every key, CHAP one-way and mutual (§12.1.3, RFC 1994), the
 * ACL check, and SendTargets text exchanges (§11.10, appendix C). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "iscsi/iscsi_int.h"

enum { AUTH_UNSET = 0, AUTH_NONE, AUTH_CHAP };
enum { CHAP_WAIT_A = 0, CHAP_WAIT_R, CHAP_DONE };

struct login {
  int started;
  int stage; /* 0 security, 1 operational */
  uint8_t isid[6];
  uint16_t tsih, cid;
  uint32_t itt, cmdsn;
  char initiator[224];
  char target[224];
  int have_initiator, have_target, discovery;
  struct export *exp;
  int auth_required;
  int auth;
  int chap_state;
  uint8_t chap_id;
  uint8_t chal[16];
  char *chap_name, *chap_secret, *mutual_name, *mutual_secret;
  int authed;
  struct sess_params p;
  uint32_t max_xmit_dsl;
  int hdig, ddig;
  int declared_mrdsl;
  int sent_tpgt;
  char *acc; /* text of PDUs with the C bit */
  size_t acc_len;
};

void sess_params_default(struct sess_params *p) {
  p->initial_r2t = 1;
  p->immediate_data = 1;
  p->data_pdu_in_order = 1;
  p->data_seq_in_order = 1;
  p->max_burst = 262144;
  p->first_burst = 65536;
  p->max_outstanding_r2t = 1;
  p->max_conns = 1;
  p->time2wait = 2;
  p->time2retain = 20;
  p->erl = 0;
}

struct login *login_new(struct conn *c) {
  struct login *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  sess_params_default(&l->p);
  l->max_xmit_dsl = 8192;
  return l;
}

int login_started(const struct login *l) { return l->started; }

static void secret_free(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

void login_free(struct login *l) {
  if (!l) return;
  if (l->exp) export_put(l->exp);
  free(l->chap_name);
  secret_free(l->chap_secret);
  free(l->mutual_name);
  secret_free(l->mutual_secret);
  free(l->acc);
  free(l);
}

/* ---- responses ------------------------------------------------------------ */
static void login_respond(struct conn *c, struct login *l, int transit, int csg, int nsg,
                          int status, struct kvbuf *kv, uint16_t tsih) {
  struct txpdu *p = txpdu_new(c, OP_LOGIN_RSP);
  if (!p) return;
  uint8_t *h = p->hdr;
  h[1] = (uint8_t)((transit ? 0x80 : 0) | (csg & 3) << 2 | (transit ? (nsg & 3) : 0));
  h[2] = 0; /* VersionMax */
  h[3] = 0; /* VersionActive */
  memcpy(h + 8, l->isid, 6);
  put_be16(h + 14, tsih);
  put_be32(h + 16, l->itt);
  put_be32(h + 24, c->stat_sn++);
  uint32_t exp = c->sess ? c->sess->exp_cmdsn : l->cmdsn;
  put_be32(h + 28, exp);
  put_be32(h + 32, exp + ISCSI_CMD_WINDOW - 1);
  h[36] = (uint8_t)(status >> 8);
  h[37] = (uint8_t)status;
  if (kv && kv->len && !kv->oom) {
    txpdu_set_data(c, p, kv->data, (uint32_t)kv->len, kv->data);
    kv->data = NULL;
    kv->len = kv->cap = 0;
  }
  conn_queue(c, p);
}

static void login_fail(struct conn *c, struct login *l, int status, const char *why) {
  if (status == LOGIN_AUTH_FAILED || status == LOGIN_FORBIDDEN || status == LOGIN_NOT_FOUND) {
    /* counted per (address, initiator name) and per address: loginlimit.h */
    if (srv_login_failed(c->srv, c->peer, l->have_initiator ? l->initiator : NULL))
      log_msg(LOG_WARN, "iscsi",
              "event=login_failed peer=%s initiator=%s target=%s status=0x%04x reason=\"%s\"",
              c->peer, l->have_initiator ? l->initiator : "-", l->have_target ? l->target : "-",
              status, why);
  } else if (status == LOGIN_SERVICE_UNAVAILABLE) {
    /* refused by the limiter: it logged the block and counts the refusals (no flood) */
  } else if (srv_login_refused(c->srv)) {
    log_msg(LOG_INFO, "iscsi",
            "event=login_refused peer=%s initiator=%s status=0x%04x reason=\"%s\"", c->peer,
            l->have_initiator ? l->initiator : "-", status, why);
  }
  login_respond(c, l, 0, l->stage, 0, status, NULL, 0);
}

/* ---- key handling ---------------------------------------------------------- */
static int num_key(struct kvbuf *out, const char *key, const char *val, uint64_t lo, uint64_t hi,
                   uint64_t *res) {
  uint64_t v;
  if (kv_number(val, &v) < 0 || v < lo || v > hi) {
    kvbuf_add(out, key, "Reject");
    return -1;
  }
  *res = v;
  return 0;
}

static int bool_key(struct kvbuf *out, const char *key, const char *val, int *res) {
  if (kv_bool(val, res) < 0) {
    kvbuf_add(out, key, "Reject");
    return -1;
  }
  return 0;
}

static void digest_key(struct kvbuf *out, const char *key, const char *val, int *res) {
  /* a list in the initiator's order of preference: take the first we know */
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s", val);
  char *save = NULL;
  for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (!strcmp(t, "CRC32C")) {
      *res = 1;
      kvbuf_add(out, key, "CRC32C");
      return;
    }
    if (!strcmp(t, "None")) {
      *res = 0;
      kvbuf_add(out, key, "None");
      return;
    }
  }
  kvbuf_add(out, key, "Reject");
}

static int list_has(const char *list, const char *item) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s", list);
  char *save = NULL;
  for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (!strcmp(t, item)) return 1;
  return 0;
}

/* Load the target's CHAP settings (under srv->lock: iscsi_update may swap them). */
static void take_secrets(struct conn *c, struct login *l) {
  pthread_mutex_lock(&c->srv->lock);
  struct export *x = l->exp;
  l->auth_required = x->chap_secret != NULL;
  l->chap_name = x->chap_name ? strdup(x->chap_name) : NULL;
  l->chap_secret = x->chap_secret ? strdup(x->chap_secret) : NULL;
  l->mutual_name = x->mutual_name ? strdup(x->mutual_name) : NULL;
  l->mutual_secret = x->mutual_secret ? strdup(x->mutual_secret) : NULL;
  pthread_mutex_unlock(&c->srv->lock);
}

/* Returns 0, or a LOGIN_* failure status with *why set. */
static int chap_keys(struct conn *c, struct login *l, struct kv *kv, int n, struct kvbuf *out,
                     const char **why) {
  const char *a = NULL, *cn = NULL, *cr = NULL, *ci = NULL, *cc = NULL;
  for (int i = 0; i < n; i++) {
    if (!strcmp(kv[i].key, "CHAP_A"))
      a = kv[i].val;
    else if (!strcmp(kv[i].key, "CHAP_N"))
      cn = kv[i].val;
    else if (!strcmp(kv[i].key, "CHAP_R"))
      cr = kv[i].val;
    else if (!strcmp(kv[i].key, "CHAP_I"))
      ci = kv[i].val;
    else if (!strcmp(kv[i].key, "CHAP_C"))
      cc = kv[i].val;
  }
  if (l->chap_state == CHAP_WAIT_A) {
    if (!a) return 0; /* not yet */
    if (!list_has(a, "5")) {
      kvbuf_add(out, "CHAP_A", "Reject");
      *why = "CHAP algorithm other than MD5 (5) offered";
      return LOGIN_AUTH_FAILED;
    }
    if (util_random(&l->chap_id, 1) < 0 || util_random(l->chal, sizeof l->chal) < 0) {
      *why = "no randomness";
      return LOGIN_TARGET_ERROR;
    }
    char hex[2 * sizeof l->chal + 3];
    chap_hex(l->chal, sizeof l->chal, hex);
    kvbuf_add(out, "CHAP_A", "5");
    kvbuf_addf(out, "CHAP_I", "%u", l->chap_id);
    kvbuf_add(out, "CHAP_C", hex);
    l->chap_state = CHAP_WAIT_R;
    return 0;
  }
  if (l->chap_state == CHAP_WAIT_R) {
    if (!cn && !cr) return 0;
    if (!cn || !cr) {
      *why = "CHAP_N and CHAP_R must come together";
      return LOGIN_AUTH_FAILED;
    }
    uint8_t resp[64], want[16];
    int rl = chap_decode(cr, resp, sizeof resp);
    if (!l->chap_name || strcmp(cn, l->chap_name) != 0 || rl != 16 ||
        chap_response(l->chap_id, l->chap_secret, l->chal, sizeof l->chal, want) < 0) {
      *why = "CHAP name or response wrong";
      return LOGIN_AUTH_FAILED;
    }
    /* constant-time compare */
    unsigned diff = 0;
    for (int i = 0; i < 16; i++)
      diff |= (unsigned)(resp[i] ^ want[i]);
    if (diff) {
      *why = "CHAP response wrong";
      return LOGIN_AUTH_FAILED;
    }
    if (ci || cc) { /* mutual CHAP: the initiator challenges us */
      uint64_t id;
      uint8_t chal[1024];
      int cl = cc ? chap_decode(cc, chal, sizeof chal) : -1;
      if (!ci || !cc || kv_number(ci, &id) < 0 || id > 255 || cl < 1) {
        *why = "bad mutual CHAP_I / CHAP_C";
        return LOGIN_AUTH_FAILED;
      }
      if (!l->mutual_secret) {
        *why = "initiator asked for mutual CHAP, none is configured for this target";
        return LOGIN_AUTH_FAILED;
      }
      /* reflection: the initiator must not hand our own challenge back */
      if ((size_t)cl == sizeof l->chal && !memcmp(chal, l->chal, sizeof l->chal)) {
        *why = "mutual CHAP challenge reflects the target's";
        return LOGIN_AUTH_FAILED;
      }
      uint8_t r[16];
      char hex[2 * 16 + 3];
      if (chap_response((uint8_t)id, l->mutual_secret, chal, (size_t)cl, r) < 0) {
        *why = "md5";
        return LOGIN_TARGET_ERROR;
      }
      chap_hex(r, 16, hex);
      kvbuf_add(out, "CHAP_N", l->mutual_name ? l->mutual_name : l->exp->name);
      kvbuf_add(out, "CHAP_R", hex);
    }
    l->chap_state = CHAP_DONE;
    l->authed = 1;
    return 0;
  }
  return 0;
}

/* Operational keys (§13). Returns 0 or a LOGIN_* failure. */
static int op_key(struct login *l, const char *key, const char *val, struct kvbuf *out) {
  uint64_t v;
  int b;
  struct sess_params *p = &l->p;
  if (!strcmp(key, "HeaderDigest")) {
    digest_key(out, key, val, &l->hdig);
  } else if (!strcmp(key, "DataDigest")) {
    digest_key(out, key, val, &l->ddig);
  } else if (!strcmp(key, "MaxConnections")) {
    if (!num_key(out, key, val, 1, 65535, &v)) {
      p->max_conns = v < ISCSI_MAX_CONNS ? (uint32_t)v : ISCSI_MAX_CONNS;
      kvbuf_addf(out, key, "%u", p->max_conns);
    }
  } else if (!strcmp(key, "InitialR2T")) {
    if (!bool_key(out, key, val, &b)) { /* OR: we are happy with No */
      p->initial_r2t = b;
      kvbuf_add(out, key, b ? "Yes" : "No");
    }
  } else if (!strcmp(key, "ImmediateData")) {
    if (!bool_key(out, key, val, &b)) { /* AND: we say Yes */
      p->immediate_data = b;
      kvbuf_add(out, key, b ? "Yes" : "No");
    }
  } else if (!strcmp(key, "MaxRecvDataSegmentLength")) {
    if (kv_number(val, &v) < 0 || v < 512 || v > 16777215) return LOGIN_INITIATOR_ERROR;
    l->max_xmit_dsl = (uint32_t)v; /* declarative: no answer needed */
  } else if (!strcmp(key, "MaxBurstLength")) {
    if (!num_key(out, key, val, 512, 16777215, &v)) {
      p->max_burst = (uint32_t)v;
      kvbuf_addf(out, key, "%u", p->max_burst);
    }
  } else if (!strcmp(key, "FirstBurstLength")) {
    if (!num_key(out, key, val, 512, 16777215, &v)) {
      p->first_burst = (uint32_t)v;
      kvbuf_addf(out, key, "%u", p->first_burst);
    }
  } else if (!strcmp(key, "DefaultTime2Wait")) {
    if (!num_key(out, key, val, 0, 3600, &v)) { /* max(ours 2, theirs) */
      p->time2wait = v > 2 ? (uint32_t)v : 2;
      kvbuf_addf(out, key, "%u", p->time2wait);
    }
  } else if (!strcmp(key, "DefaultTime2Retain")) {
    if (!num_key(out, key, val, 0, 3600, &v)) { /* min(ours 20, theirs) */
      p->time2retain = v < 20 ? (uint32_t)v : 20;
      kvbuf_addf(out, key, "%u", p->time2retain);
    }
  } else if (!strcmp(key, "MaxOutstandingR2T")) {
    if (!num_key(out, key, val, 1, 65535, &v)) {
      p->max_outstanding_r2t = v < 16 ? (uint32_t)v : 16;
      kvbuf_addf(out, key, "%u", p->max_outstanding_r2t);
    }
  } else if (!strcmp(key, "DataPDUInOrder")) {
    if (!bool_key(out, key, val, &b)) { /* OR with our Yes */
      p->data_pdu_in_order = 1;
      kvbuf_add(out, key, "Yes");
    }
  } else if (!strcmp(key, "DataSequenceInOrder")) {
    if (!bool_key(out, key, val, &b)) {
      p->data_seq_in_order = 1;
      kvbuf_add(out, key, "Yes");
    }
  } else if (!strcmp(key, "ErrorRecoveryLevel")) {
    if (!num_key(out, key, val, 0, 2, &v)) { /* min with our 0 */
      p->erl = 0;
      kvbuf_add(out, key, "0");
    }
  } else if (!strcmp(key, "IFMarker") || !strcmp(key, "OFMarker")) {
    kvbuf_add(out, key, "No"); /* AND: markers are not supported */
  } else if (!strcmp(key, "IFMarkInt") || !strcmp(key, "OFMarkInt")) {
    kvbuf_add(out, key, "Irrelevant");
  } else if (!strcmp(key, "InitiatorAlias") || !strcmp(key, "TargetAlias") ||
             !strcmp(key, "TargetAddress") || !strcmp(key, "TargetPortalGroupTag")) {
    /* declarative or target-only: nothing to answer */
  } else {
    kvbuf_add(out, key, "NotUnderstood");
  }
  return 0;
}

static int security_key(const char *key) {
  return !strcmp(key, "AuthMethod") || !strncmp(key, "CHAP_", 5);
}

/* Resolve InitiatorName / SessionType / TargetName (first request). */
static int identify(struct conn *c, struct login *l, struct kv *kv, int n, const char **why) {
  /* the name first, whatever the order of the keys: the limiter refuses (and counts
   * failures of) this initiator name from this address, not every login from it */
  for (int i = 0; i < n; i++)
    if (!strcmp(kv[i].key, "InitiatorName") && kv[i].val[0] && strlen(kv[i].val) <= 223) {
      snprintf(l->initiator, sizeof l->initiator, "%s", kv[i].val);
      l->have_initiator = 1;
      break;
    }
  if (srv_login_blocked(c->srv, c->peer, l->initiator)) {
    *why = "too many failed logins of this initiator from this address";
    return LOGIN_SERVICE_UNAVAILABLE;
  }
  for (int i = 0; i < n; i++) {
    if (!strcmp(kv[i].key, "InitiatorName")) {
      if (!kv[i].val[0] || strlen(kv[i].val) > 223) {
        *why = "bad InitiatorName";
        return LOGIN_INITIATOR_ERROR;
      }
    } else if (!strcmp(kv[i].key, "TargetName")) {
      if (!kv[i].val[0] || strlen(kv[i].val) > 223) {
        *why = "bad TargetName";
        return LOGIN_NOT_FOUND;
      }
      snprintf(l->target, sizeof l->target, "%s", kv[i].val);
      l->have_target = 1;
    } else if (!strcmp(kv[i].key, "SessionType")) {
      if (!strcmp(kv[i].val, "Discovery"))
        l->discovery = 1;
      else if (!strcmp(kv[i].val, "Normal"))
        l->discovery = 0;
      else {
        *why = "unknown SessionType";
        return LOGIN_SESSION_TYPE_UNSUPPORTED;
      }
    }
  }
  if (!l->have_initiator) {
    *why = "InitiatorName missing in the first login request";
    return LOGIN_MISSING_PARAMETER;
  }
  if (l->discovery) return 0;
  if (!l->have_target) {
    *why = "TargetName missing";
    return LOGIN_MISSING_PARAMETER;
  }
  struct export *x = srv_find_export(c->srv, l->target);
  if (!x) {
    *why = "no such target";
    return LOGIN_NOT_FOUND;
  }
  pthread_mutex_lock(&c->srv->lock);
  int removed = x->removed, ok = export_allows(x, l->initiator);
  pthread_mutex_unlock(&c->srv->lock);
  if (removed) {
    export_put(x);
    *why = "target is being removed";
    return LOGIN_TARGET_REMOVED;
  }
  if (!ok) {
    export_put(x);
    *why = "initiator not in the target's access list";
    return LOGIN_FORBIDDEN;
  }
  l->exp = x;
  take_secrets(c, l);
  return 0;
}

int login_pdu(struct conn *c, const uint8_t *h, char *data, uint32_t len) {
  struct login *l = c->login;
  int transit = (h[1] & 0x80) != 0, cont = (h[1] & 0x40) != 0;
  int csg = (h[1] >> 2) & 3, nsg = h[1] & 3;
  const char *why = "protocol error";

  if (!l->started) {
    l->started = 1;
    memcpy(l->isid, h + 8, 6);
    l->tsih = (uint16_t)get_be16(h + 14);
    l->cid = (uint16_t)get_be16(h + 20);
    l->cmdsn = get_be32(h + 24);
    l->stage = csg;
    c->stat_sn = get_be32(h + 28); /* start where the initiator expects */
    c->cid = l->cid;
    if (h[3] > 0) { /* VersionMin */
      l->itt = get_be32(h + 16);
      login_fail(c, l, LOGIN_UNSUPPORTED_VERSION, "iSCSI version not supported");
      return -1;
    }
  } else if (memcmp(l->isid, h + 8, 6) || l->tsih != get_be16(h + 14) ||
             l->cid != get_be16(h + 20)) {
    l->itt = get_be32(h + 16);
    login_fail(c, l, LOGIN_INITIATOR_ERROR, "ISID/TSIH/CID changed during login");
    return -1;
  }
  l->itt = get_be32(h + 16);
  /* before the InitiatorName is known (first PDU): the address bound only; identify()
   * checks the name's own bound */
  if (srv_login_blocked(c->srv, c->peer, l->have_initiator ? l->initiator : NULL)) {
    login_fail(c, l, LOGIN_SERVICE_UNAVAILABLE, "too many failed logins");
    return -1;
  }
  if (csg == 2 || csg == 3 || csg != l->stage || (transit && (nsg <= csg || nsg == 2))) {
    login_fail(c, l, LOGIN_INITIATOR_ERROR, "invalid stage transition");
    return -1;
  }

  /* text spanning several PDUs (C bit) */
  if (l->acc_len + len > ISCSI_MAX_LOGIN_TEXT) {
    login_fail(c, l, LOGIN_OUT_OF_RESOURCES, "login text too long");
    return -1;
  }
  char *acc = realloc(l->acc, l->acc_len + len + 1);
  if (!acc) {
    login_fail(c, l, LOGIN_OUT_OF_RESOURCES, "out of memory");
    return -1;
  }
  l->acc = acc;
  if (len) memcpy(l->acc + l->acc_len, data, len);
  l->acc_len += len;
  l->acc[l->acc_len] = 0;
  if (cont) { /* an empty response asks for the rest */
    login_respond(c, l, 0, csg, 0, LOGIN_OK, NULL, l->tsih);
    return 0;
  }
  struct kv kv[128];
  int n = kv_parse(l->acc, l->acc_len, kv, 128);
  if (n < 0) {
    login_fail(c, l, LOGIN_INITIATOR_ERROR, "malformed key=value text");
    return -1;
  }

  struct kvbuf out = {0};
  int st = 0;
  if (!l->have_initiator && (st = identify(c, l, kv, n, &why)) != 0) goto fail;

  if (!l->sent_tpgt) {
    l->sent_tpgt = 1;
    if (!l->discovery) {
      kvbuf_addf(&out, "TargetPortalGroupTag", "%d", ISCSI_TPGT);
      if (l->exp->alias && l->exp->alias[0]) kvbuf_add(&out, "TargetAlias", l->exp->alias);
    }
  }

  if (csg == 0) {
    for (int i = 0; i < n; i++) {
      if (!strcmp(kv[i].key, "AuthMethod") && l->auth == AUTH_UNSET) {
        if (l->auth_required) {
          if (!list_has(kv[i].val, "CHAP")) {
            st = LOGIN_AUTH_FAILED;
            why = "target requires CHAP, initiator does not offer it";
            goto fail;
          }
          l->auth = AUTH_CHAP;
          kvbuf_add(&out, "AuthMethod", "CHAP");
        } else if (list_has(kv[i].val, "None")) {
          l->auth = AUTH_NONE;
          l->authed = 1;
          kvbuf_add(&out, "AuthMethod", "None");
        } else {
          kvbuf_add(&out, "AuthMethod", "Reject");
          st = LOGIN_AUTH_FAILED;
          why = "initiator offers only authentication the target is not configured for";
          goto fail;
        }
      } else if (!security_key(kv[i].key) && strcmp(kv[i].key, "InitiatorName") &&
                 strcmp(kv[i].key, "TargetName") && strcmp(kv[i].key, "SessionType")) {
        if ((st = op_key(l, kv[i].key, kv[i].val, &out)) != 0) {
          why = "bad operational key";
          goto fail;
        }
      }
    }
    if (l->auth == AUTH_CHAP && (st = chap_keys(c, l, kv, n, &out, &why)) != 0) goto fail;
    if (l->auth == AUTH_UNSET && transit) {
      /* no AuthMethod offered: only acceptable without CHAP */
      if (l->auth_required) {
        st = LOGIN_AUTH_FAILED;
        why = "target requires CHAP";
        goto fail;
      }
      l->auth = AUTH_NONE;
      l->authed = 1;
    }
    /* iPXE sets T on every CHAP round: answer T=0 until authentication is done */
    int go = transit && l->authed;
    if (go && nsg == 3) goto to_ffp;
    if (go) l->stage = nsg;
    login_respond(c, l, go, csg, nsg, LOGIN_OK, &out, 0);
    kvbuf_free(&out);
    free(l->acc);
    l->acc = NULL;
    l->acc_len = 0;
    return 0;
  }

  /* operational stage */
  if (l->auth_required && !l->authed) {
    st = LOGIN_AUTH_FAILED;
    why = "target requires CHAP: security negotiation skipped";
    goto fail;
  }
  l->authed = 1;
  for (int i = 0; i < n; i++) {
    if (security_key(kv[i].key) || !strcmp(kv[i].key, "InitiatorName") ||
        !strcmp(kv[i].key, "TargetName") || !strcmp(kv[i].key, "SessionType"))
      continue;
    if ((st = op_key(l, kv[i].key, kv[i].val, &out)) != 0) {
      why = "bad operational key";
      goto fail;
    }
  }
  if (!l->declared_mrdsl) {
    l->declared_mrdsl = 1;
    kvbuf_addf(&out, "MaxRecvDataSegmentLength", "%u", ISCSI_OUR_MAX_RECV_DSL);
  }
  if (!transit) {
    login_respond(c, l, 0, csg, nsg, LOGIN_OK, &out, 0);
    kvbuf_free(&out);
    free(l->acc);
    l->acc = NULL;
    l->acc_len = 0;
    return 0;
  }

to_ffp:
  if (!l->declared_mrdsl) {
    l->declared_mrdsl = 1;
    kvbuf_addf(&out, "MaxRecvDataSegmentLength", "%u", ISCSI_OUR_MAX_RECV_DSL);
  }
  if (l->p.first_burst > l->p.max_burst) l->p.first_burst = l->p.max_burst;
  {
    uint16_t tsih = 0;
    c->hdigest = l->hdig;
    c->ddigest = l->ddig;
    c->max_xmit_dsl = l->max_xmit_dsl;
    st = srv_session_bind(c, l->initiator, l->isid, l->tsih, l->exp, l->discovery, &l->p, &tsih);
    if (st) {
      why = st == LOGIN_NO_SUCH_SESSION        ? "no session with this TSIH"
            : st == LOGIN_TOO_MANY_CONNECTIONS ? "too many connections"
            : st == LOGIN_FORBIDDEN            ? "initiator no longer allowed (the target changed)"
            : st == LOGIN_NOT_FOUND            ? "target removed during the login"
                                               : "cannot create the session";
      goto fail;
    }
    /* the digests apply from the first PDU after the final login response */
    int hd = c->hdigest, dd = c->ddigest;
    c->hdigest = c->ddigest = 0;
    login_respond(c, l, 1, csg, 3, LOGIN_OK, &out, tsih);
    c->hdigest = hd;
    c->ddigest = dd;
    kvbuf_free(&out);
    log_msg(LOG_INFO, "iscsi", "event=login peer=%s initiator=%s target=%s tsih=%u cid=%u", c->peer,
            l->initiator, l->discovery ? "(discovery)" : l->target, tsih, c->cid);
    return 1;
  }

fail:
  kvbuf_free(&out);
  login_fail(c, l, st, why);
  return -1;
}

/* ---- text requests: SendTargets ------------------------------------------------ */
static void add_target(struct conn *c, struct kvbuf *out, struct export *x) {
  kvbuf_add(out, "TargetName", x->name);
  size_t n;
  const char *const *portals = iscsi_portals(c->srv, &n);
  for (size_t i = 0; i < n; i++) {
    char host[80];
    const char *pp = portals[i];
    const char *colon = strrchr(pp, ':');
    const char *port = colon ? colon + 1 : "3260";
    size_t hl = colon ? (size_t)(colon - pp) : strlen(pp);
    snprintf(host, sizeof host, "%.*s", (int)hl, pp);
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "[::]")) {
      if (strchr(c->local_ip, ':'))
        snprintf(host, sizeof host, "[%s]", c->local_ip);
      else
        snprintf(host, sizeof host, "%s", c->local_ip);
    }
    kvbuf_addf(out, "TargetAddress", "%s:%s,%d", host, port, ISCSI_TPGT);
  }
}

static void text_send(struct conn *c, uint32_t itt, int more_ok) {
  struct txpdu *p = txpdu_new(c, OP_TEXT_RSP);
  if (!p) return;
  size_t left = c->text_len - c->text_off;
  size_t chunk = left < c->max_xmit_dsl ? left : c->max_xmit_dsl;
  int final = chunk == left;
  uint8_t *h = p->hdr;
  h[1] = final ? 0x80 : 0x40;
  put_be32(h + 16, itt);
  if (!final) c->text_ttt = c->next_ttt++ | 0x40000000u;
  put_be32(h + 20, final ? 0xffffffffu : c->text_ttt);
  put_be32(h + 24, c->stat_sn++);
  put_be32(h + 28, c->sess->exp_cmdsn);
  put_be32(h + 32, sess_max_cmdsn(c->sess));
  if (chunk) {
    char *d = malloc(chunk);
    if (d) {
      memcpy(d, c->text_pending + c->text_off, chunk);
      txpdu_set_data(c, p, d, (uint32_t)chunk, d);
    }
  }
  c->text_off += chunk;
  if (final) {
    free(c->text_pending);
    c->text_pending = NULL;
    c->text_len = c->text_off = 0;
  }
  conn_queue(c, p);
}

void text_pdu(struct conn *c, const uint8_t *h, char *data, uint32_t len) {
  uint32_t itt = get_be32(h + 16), ttt = get_be32(h + 20);
  if (ttt != 0xffffffffu) { /* continuation of a long answer */
    if (c->text_pending && ttt == c->text_ttt) {
      text_send(c, itt, 1);
      return;
    }
  }
  free(c->text_pending);
  c->text_pending = NULL;
  c->text_len = c->text_off = 0;
  struct kv kv[32];
  struct kvbuf out = {0};
  int n = kv_parse(data, len, kv, 32);
  if (n < 0) n = 0;
  for (int i = 0; i < n; i++) {
    if (!strcmp(kv[i].key, "SendTargets")) {
      const char *v = kv[i].val;
      if (!c->sess->discovery && strcmp(v, "") && strcmp(v, c->sess->exp->name)) {
        /* a normal session may only ask about its own target */
        if (!strcmp(v, "All")) kvbuf_add(&out, "SendTargets", "Reject");
        continue;
      }
      if (!c->sess->discovery) {
        add_target(c, &out, c->sess->exp);
        continue;
      }
      pthread_mutex_lock(&c->srv->lock);
      for (struct export *x = c->srv->exports; x; x = x->next) {
        if (x->removed || !export_allows(x, c->sess->initiator)) continue;
        if (strcmp(v, "All") && strcmp(v, x->name)) continue;
        add_target(c, &out, x);
      }
      pthread_mutex_unlock(&c->srv->lock);
    } else if (!strcmp(kv[i].key, "MaxRecvDataSegmentLength")) {
      uint64_t v;
      if (!kv_number(kv[i].val, &v) && v >= 512 && v <= 16777215) c->max_xmit_dsl = (uint32_t)v;
    } else {
      kvbuf_add(&out, kv[i].key, "NotUnderstood");
    }
  }
  c->text_pending = out.data;
  c->text_len = out.oom ? 0 : out.len;
  c->text_off = 0;
  text_send(c, itt, 1);
}
