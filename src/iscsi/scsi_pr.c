/* scsi_pr.c — reservations: PERSISTENT RESERVE IN / OUT (SPC-4 5.12, 6.15,
 * 6.16) with every reservation type (Write Exclusive, Exclusive Access, their
 * Registrants Only and All Registrants variants), the SPC-2 RESERVE /
 * RELEASE (6)/(10) pair with the SPC-4 5.13.3 rules for living next to
 * persistent reservations, and the conflict check scsi_exec runs while any
 * reservation exists.
 *
 * A registration belongs to an I_T nexus, named by its initiator port
 * ("<iqn>,i,0x<isid>"), so it outlives the session and is found again when
 * that initiator port logs in again. Registrations do not survive a restart
 * of the target: APTPL (persist through power loss) is refused with INVALID
 * FIELD IN PARAMETER LIST, and REPORT CAPABILITIES says so (PTPL_C 0).
 * PREEMPT AND ABORT preempts like PREEMPT; the preempted nexuses' commands
 * already running complete normally (the transport owns task abort).
 * Everything here runs under lu->lock. */
#include <stdlib.h>
#include <string.h>

#include "iscsi/scsi_int.h"

enum {
  PR_REGISTER = 0,
  PR_RESERVE = 1,
  PR_RELEASE = 2,
  PR_CLEAR = 3,
  PR_PREEMPT = 4,
  PR_PREEMPT_AND_ABORT = 5,
  PR_REGISTER_AND_IGNORE = 6,
};

static int type_valid(uint8_t t) {
  return t == PR_WRITE_EXCLUSIVE || t == PR_EXCLUSIVE_ACCESS || t == PR_WRITE_EXCLUSIVE_RO ||
         t == PR_EXCLUSIVE_ACCESS_RO || t == PR_WRITE_EXCLUSIVE_AR || t == PR_EXCLUSIVE_ACCESS_AR;
}
static int type_all_registrants(uint8_t t) {
  return t == PR_WRITE_EXCLUSIVE_AR || t == PR_EXCLUSIVE_ACCESS_AR;
}
static int type_registrants(uint8_t t) { /* registrants only or all registrants */
  return t == PR_WRITE_EXCLUSIVE_RO || t == PR_EXCLUSIVE_ACCESS_RO || type_all_registrants(t);
}

static const char *nexus_port(const struct scsi_cmd *c) {
  return c->nexus && c->nexus->port_name ? c->nexus->port_name : "";
}

static struct scsi_pr_reg *reg_find(struct scsi_lu *lu, const char *port) {
  for (struct scsi_pr_reg *r = lu->regs; r; r = r->next)
    if (!strcmp(r->port_name, port)) return r;
  return NULL;
}

/* Is registration r a reservation holder? Every registrant is one under an
 * all-registrants type. */
static int is_holder(const struct scsi_lu *lu, const struct scsi_pr_reg *r) {
  if (!r || lu->pr_type == PR_TYPE_NONE) return 0;
  return type_all_registrants(lu->pr_type) || lu->holder == r;
}

static void reg_free(struct scsi_pr_reg *r) {
  free(r->port_name);
  free(r->initiator);
  free(r);
}

void scsi_pr_free(struct scsi_lu *lu) {
  while (lu->regs) {
    struct scsi_pr_reg *r = lu->regs;
    lu->regs = r->next;
    reg_free(r);
  }
  lu->nregs = 0;
  lu->holder = NULL;
  lu->pr_type = PR_TYPE_NONE;
}

static void pr_release(struct scsi_lu *lu) {
  lu->pr_type = PR_TYPE_NONE;
  lu->holder = NULL;
  scsi_res_update_locked(lu);
}

/* Unit attention for every registrant but initiator port `except`. */
static void ua_registrants(struct scsi_lu *lu, const char *except, uint16_t asc) {
  for (struct scsi_pr_reg *r = lu->regs; r; r = r->next)
    if (!except || strcmp(r->port_name, except)) scsi_ua_port_locked(lu, r->port_name, asc);
}

/* Remove registration r. A holder leaving releases the reservation (under
 * all-registrants types only the last one does); a Registrants Only
 * reservation released this way tells the remaining registrants. */
static void reg_remove(struct scsi_lu *lu, struct scsi_pr_reg *r) {
  for (struct scsi_pr_reg **pp = &lu->regs; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      lu->nregs--;
      break;
    }
  if (lu->pr_type != PR_TYPE_NONE) {
    if (type_all_registrants(lu->pr_type)) {
      if (!lu->regs) pr_release(lu);
    } else if (lu->holder == r) {
      uint8_t old = lu->pr_type;
      pr_release(lu);
      if (old == PR_WRITE_EXCLUSIVE_RO || old == PR_EXCLUSIVE_ACCESS_RO)
        ua_registrants(lu, r->port_name, ASC_RESERVATIONS_RELEASED);
    }
  }
  reg_free(r);
}

/* Remove every registration with `key` (any key when `all`) but the
 * issuer's, telling each preempted nexus; returns how many went. The
 * caller sets the reservation that follows. */
static int preempt_regs(struct scsi_lu *lu, uint64_t key, int all, struct scsi_pr_reg *issuer) {
  int n = 0;
  for (struct scsi_pr_reg **pp = &lu->regs; *pp;) {
    struct scsi_pr_reg *r = *pp;
    if (r == issuer || (!all && r->key != key)) {
      pp = &r->next;
      continue;
    }
    scsi_ua_port_locked(lu, r->port_name, ASC_REGISTRATIONS_PREEMPTED);
    if (lu->holder == r) lu->holder = NULL;
    *pp = r->next;
    lu->nregs--;
    reg_free(r);
    n++;
  }
  return n;
}

/* ---- the conflict check ------------------------------------------------------------- */

int scsi_pr_conflict_locked(struct scsi_lu *lu, const struct scsi_op *op,
                            const struct scsi_cmd *c) {
  uint64_t id = c->nexus ? c->nexus->id : 0;
  if (lu->spc2_reserved && lu->spc2_holder != id) return !(op->flags & OPF_SPC2_OK);
  if (lu->pr_type == PR_TYPE_NONE) return 0;
  int cls = op->pr_class;
  if (cls == PRC_SPECIAL) {
    switch (c->cdb[0]) {
    case 0x1b: cls = (c->cdb[4] & 0x01) ? PRC_ALLOWED : PRC_WRITE; break; /* START: allowed */
    case 0x1e: cls = (c->cdb[4] & 0x03) ? PRC_WRITE : PRC_ALLOWED; break; /* PREVENT 0: allowed */
    default: return 0; /* PR OUT, RESERVE, RELEASE decide themselves */
    }
  }
  if (cls == PRC_ALLOWED) return 0;
  struct scsi_pr_reg *r = reg_find(lu, nexus_port(c));
  if (is_holder(lu, r)) return 0;
  switch (lu->pr_type) {
  case PR_WRITE_EXCLUSIVE: return cls == PRC_WRITE;
  case PR_EXCLUSIVE_ACCESS: return 1;
  case PR_WRITE_EXCLUSIVE_RO:
  case PR_WRITE_EXCLUSIVE_AR: return cls == PRC_WRITE && !r;
  default: /* Exclusive Access, Registrants Only / All Registrants */ return !r;
  }
}

/* ---- SPC-2 RESERVE / RELEASE ---------------------------------------------------------- */

/* SPC-4 5.13.3 with CRH 1: while a persistent reservation exists, RESERVE
 * and RELEASE from its holder (or from a registrant, for the registrants
 * types) complete with GOOD and change nothing; from anyone else they
 * conflict. Returns 1 when that decided the command. */
static int spc2_under_pr(struct scsi_lu *lu, struct scsi_cmd *c) {
  if (lu->pr_type == PR_TYPE_NONE) return 0;
  struct scsi_pr_reg *r = reg_find(lu, nexus_port(c));
  if (!(is_holder(lu, r) || (r && type_registrants(lu->pr_type))))
    c->status = SCSI_RESERVATION_CONFLICT;
  return 1;
}

void scsi_cmd_reserve(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint64_t id = c->nexus ? c->nexus->id : 0;
  pthread_mutex_lock(&lu->lock);
  if (!spc2_under_pr(lu, c)) {
    if (lu->spc2_reserved && lu->spc2_holder != id) {
      c->status = SCSI_RESERVATION_CONFLICT;
    } else {
      lu->spc2_reserved = 1;
      lu->spc2_holder = id;
      scsi_res_update_locked(lu);
    }
  }
  pthread_mutex_unlock(&lu->lock);
}

void scsi_cmd_release(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint64_t id = c->nexus ? c->nexus->id : 0;
  pthread_mutex_lock(&lu->lock);
  /* Releasing someone else's reservation, or none, is GOOD and does nothing. */
  if (!spc2_under_pr(lu, c) && lu->spc2_reserved && lu->spc2_holder == id) {
    lu->spc2_reserved = 0;
    scsi_res_update_locked(lu);
  }
  pthread_mutex_unlock(&lu->lock);
}

/* ---- PERSISTENT RESERVE IN ------------------------------------------------------------ */

/* iSCSI TransportID, initiator port format (SPC-4 7.6.4.6): "<iqn>,i,0x<isid>",
 * NUL-terminated, padded to a multiple of 4 (at least 20 bytes). */
static size_t transport_id(uint8_t *p, const char *port_name) {
  size_t n = strlen(port_name);
  if (n > 250) n = 250;
  size_t len = (n + 1 + 3) & ~(size_t)3;
  if (len < 20) len = 20;
  memset(p, 0, 4 + len);
  p[0] = 0x40 | 0x05; /* format 01b, protocol iSCSI */
  put_be16(p + 2, (uint16_t)len);
  memcpy(p + 4, port_name, n);
  return 4 + len;
}

void scsi_cmd_pr_in(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t sa = c->cdb[1] & 0x1f;
  uint32_t alloc = get_be16(c->cdb + 7);
  pthread_mutex_lock(&lu->lock);
  size_t cap = 8 + (size_t)lu->nregs * (24 + 4 + 256) + 16;
  uint8_t *b = calloc(1, cap);
  if (!b) {
    pthread_mutex_unlock(&lu->lock);
    scsi_busy(c);
    return;
  }
  size_t n = 8;
  put_be32(b, lu->pr_generation);
  switch (sa) {
  case 0: /* READ KEYS */
    for (struct scsi_pr_reg *r = lu->regs; r; r = r->next, n += 8)
      put_be64(b + n, r->key);
    put_be32(b + 4, (uint32_t)(n - 8));
    break;
  case 1: /* READ RESERVATION */
    if (lu->pr_type != PR_TYPE_NONE) {
      /* all-registrants types have no one key: 0 */
      put_be64(b + 8, lu->holder ? lu->holder->key : 0);
      b[8 + 13] = lu->pr_type; /* scope 0: logical unit */
      n += 16;
    }
    put_be32(b + 4, (uint32_t)(n - 8));
    break;
  case 2: /* REPORT CAPABILITIES */
    put_be16(b, 8);
    b[2] = 0x10;                             /* CRH; no SIP_C, ATP_C, PTPL_C */
    b[3] = 0x80;                             /* TMV: the type mask is valid */
    b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX */
    b[5] = 0x01;                             /* EX_AC_AR */
    break;
  case 3: /* READ FULL STATUS */
    for (struct scsi_pr_reg *r = lu->regs; r; r = r->next) {
      uint8_t *d = b + n;
      put_be64(d, r->key);
      if (is_holder(lu, r)) {
        d[12] = 0x01; /* R_HOLDER */
        d[13] = lu->pr_type;
      }
      put_be16(d + 18, lu->rel_port);
      size_t tl = transport_id(d + 24, r->port_name);
      put_be32(d + 20, (uint32_t)tl);
      n += 24 + tl;
    }
    put_be32(b + 4, (uint32_t)(n - 8));
    break;
  }
  pthread_mutex_unlock(&lu->lock);
  scsi_data_in(c, b, n, alloc);
  free(b);
}

/* ---- PERSISTENT RESERVE OUT ------------------------------------------------------------ */

static void conflict(struct scsi_cmd *c) { c->status = SCSI_RESERVATION_CONFLICT; }

static void pr_register(struct scsi_lu *lu, struct scsi_cmd *c, struct scsi_pr_reg *r, int ignore,
                        uint64_t rk, uint64_t sark) {
  if (!r) {
    if (!ignore && rk != 0) {
      conflict(c);
      return;
    }
    if (sark == 0) return; /* unregistering while not registered: nothing */
    if (lu->nregs >= SCSI_PR_MAX_REGISTRATIONS) {
      scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REGISTRATION_RESOURCES);
      return;
    }
    r = calloc(1, sizeof *r);
    if (r) {
      r->port_name = strdup(nexus_port(c));
      r->initiator = strdup(c->nexus && c->nexus->initiator ? c->nexus->initiator : "");
    }
    if (!r || !r->port_name || !r->initiator) {
      if (r) reg_free(r);
      {
        scsi_busy(c);
        return;
      }
    }
    r->key = sark;
    r->next = lu->regs;
    lu->regs = r;
    lu->nregs++;
    lu->pr_generation++;
    return;
  }
  if (!ignore && rk != r->key) {
    conflict(c);
    return;
  }
  if (sark == 0)
    reg_remove(lu, r);
  else
    r->key = sark;
  lu->pr_generation++;
}

static void pr_reserve(struct scsi_lu *lu, struct scsi_cmd *c, struct scsi_pr_reg *r,
                       uint8_t type) {
  if (lu->pr_type != PR_TYPE_NONE) {
    /* the holder may repeat itself; anything else conflicts */
    if (!is_holder(lu, r) || lu->pr_type != type) conflict(c);
    return;
  }
  lu->pr_type = type;
  lu->holder = type_all_registrants(type) ? NULL : r;
  scsi_res_update_locked(lu);
}

static void pr_release_cmd(struct scsi_lu *lu, struct scsi_cmd *c, struct scsi_pr_reg *r,
                           uint8_t scope, uint8_t type) {
  if (!is_holder(lu, r)) return; /* no reservation, or not ours: GOOD, nothing */
  if (scope != 0 || type != lu->pr_type) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
    return;
  }
  uint8_t old = lu->pr_type;
  pr_release(lu);
  if (type_registrants(old)) ua_registrants(lu, r->port_name, ASC_RESERVATIONS_RELEASED);
}

static void pr_clear(struct scsi_lu *lu, struct scsi_pr_reg *r) {
  ua_registrants(lu, r->port_name, ASC_RESERVATIONS_PREEMPTED);
  scsi_pr_free(lu);
  scsi_res_update_locked(lu);
  lu->pr_generation++;
}

static void pr_preempt(struct scsi_lu *lu, struct scsi_cmd *c, struct scsi_pr_reg *r, uint64_t sark,
                       uint8_t type) {
  if (lu->pr_type == PR_TYPE_NONE) {
    /* no reservation: remove the registrations with that key */
    if (sark == 0) {
      scsi_sense_field(c, 0, 8, -1);
      return;
    }
    if (!preempt_regs(lu, sark, 0, r)) {
      conflict(c);
      return;
    }
    lu->pr_generation++;
    return;
  }
  if (type_all_registrants(lu->pr_type)) {
    if (sark != 0) { /* remove those registrants; the reservation stays */
      if (!preempt_regs(lu, sark, 0, r)) {
        conflict(c);
        return;
      }
      lu->pr_generation++;
      return;
    }
    /* key 0: everyone else goes and the issuer holds the new reservation */
    preempt_regs(lu, 0, 1, r);
  } else if (lu->holder && sark == lu->holder->key) {
    /* preempting the holder: its key's registrations go (the issuer's own
     * stays even if it shares the key), the issuer holds the new reservation */
    uint8_t old = lu->pr_type;
    preempt_regs(lu, sark, 0, r);
    if (old != type) ua_registrants(lu, r->port_name, ASC_RESERVATIONS_RELEASED);
  } else {
    if (sark == 0) {
      scsi_sense_field(c, 0, 8, -1);
      return;
    }
    if (!preempt_regs(lu, sark, 0, r)) {
      conflict(c);
      return;
    }
    lu->pr_generation++;
    return;
  }
  lu->pr_type = type;
  lu->holder = type_all_registrants(type) ? NULL : r;
  scsi_res_update_locked(lu);
  lu->pr_generation++;
}

void scsi_cmd_pr_out(struct scsi_lu *lu, struct scsi_cmd *c) {
  uint8_t sa = c->cdb[1] & 0x1f;
  uint8_t scope = c->cdb[2] >> 4, type = c->cdb[2] & 0x0f;
  uint32_t plen = get_be32(c->cdb + 5);
  /* The basic 24-byte parameter list; SPEC_I_PT lists and REGISTER AND
   * MOVE are not supported. */
  if (plen != 24 || c->data_out_len < 24) {
    scsi_sense(c, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
    return;
  }
  const uint8_t *p = c->data_out;
  uint64_t rk = get_be64(p), sark = get_be64(p + 8);
  int registering = sa == PR_REGISTER || sa == PR_REGISTER_AND_IGNORE;
  if (p[20] & 0x08) { /* SPEC_I_PT: registering other initiator ports */
    scsi_sense_field(c, 0, 20, 3);
    return;
  }
  if (registering && (p[20] & 0x04)) { /* ALL_TG_PT (ATP_C 0) */
    scsi_sense_field(c, 0, 20, 2);
    return;
  }
  if (registering && (p[20] & 0x01)) { /* APTPL: nothing persists a restart */
    scsi_sense_field(c, 0, 20, 0);
    return;
  }
  /* scope and type matter where a reservation may be made */
  if (sa == PR_RESERVE || sa == PR_PREEMPT || sa == PR_PREEMPT_AND_ABORT) {
    if (scope != 0) {
      scsi_sense_field(c, 1, 2, 7);
      return;
    }
    if (!type_valid(type)) {
      scsi_sense_field(c, 1, 2, 3);
      return;
    }
  }
  pthread_mutex_lock(&lu->lock);
  struct scsi_pr_reg *r = reg_find(lu, nexus_port(c));
  if (registering) {
    pr_register(lu, c, r, sa == PR_REGISTER_AND_IGNORE, rk, sark);
  } else if (!r || rk != r->key) {
    /* every other action needs a registered nexus quoting its own key */
    conflict(c);
  } else {
    switch (sa) {
    case PR_RESERVE: pr_reserve(lu, c, r, type); break;
    case PR_RELEASE: pr_release_cmd(lu, c, r, scope, type); break;
    case PR_CLEAR: pr_clear(lu, r); break;
    case PR_PREEMPT:
    case PR_PREEMPT_AND_ABORT: pr_preempt(lu, c, r, sark, type); break;
    default: scsi_sense_field(c, 1, 1, 4); break;
    }
  }
  pthread_mutex_unlock(&lu->lock);
}
