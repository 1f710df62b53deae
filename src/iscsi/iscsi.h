/* iscsi.h — Streamer's built-in iSCSI target (RFC 7143) serving struct vol
 * volumes as LUN 0 of one target each. See src/iscsi/README.md.
 * Must not know about artifacts, HTTP or the store: the caller (streamerd,
 * the os-volumes API, deployments) decides what to export and with which
 * initiators and CHAP secrets. */
#ifndef STREAMER_ISCSI_H
#define STREAMER_ISCSI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"
#include "vol/vol.h"

struct iscsi_srv;

struct iscsi_config {
  /* "ip:port", "[v6]:port" or "ip" (port 3260); at least one. */
  const char *const *portals;
  size_t nportals;
  int net_threads; /* event loops (epoll); 0 = number of CPUs, at most 8 */
  int io_threads;  /* workers doing volume I/O; 0 = 2 x CPUs, at least 4 */
};

int iscsi_start(const struct iscsi_config *cfg, struct iscsi_srv **out, struct err *e);
/* Drops every session, waits for in-flight I/O, closes the exported volumes. */
void iscsi_stop(struct iscsi_srv *srv);
/* The portals actually listened on ("127.0.0.1:3260"), for answers and
 * SendTargets; the array lives as long as srv. */
const char *const *iscsi_portals(struct iscsi_srv *srv, size_t *n);

/* Streamer's target names: iqn.2024-11.org.streamer:vol.<name> where name is
 * the OS volume name lower-cased, characters outside [a-z0-9.-] turned into
 * '-', and ".<first 8 hex of the volume id>" appended so renames and equal
 * names never collide. Malloc'd. */
char *iscsi_target_name(const char *volume_name, const char *volume_id);

struct iscsi_export_spec {
  const char *target_name; /* IQN (iscsi_target_name) */
  const char *alias;       /* TargetAlias, e.g. the OS volume name; may be NULL */
  const char *unit_id;     /* stable id of the volume (UUID): VPD 0x80 serial
                              and the NAA identifier of VPD 0x83 derive from it */
  struct vol *vol;         /* ownership passes to the target on success */
  /* Initiator IQNs allowed to discover and log in (case-insensitive match).
   * None = nobody; "*" alone = any initiator (test volumes only). */
  const char *const *initiators;
  size_t ninitiators;
  /* One-way CHAP: the initiator proves it knows chap_secret for chap_name.
   * Mutual: the target then proves mutual_secret under mutual_name. NULL = off.
   * Secrets are 12..255 bytes (RFC 7143 §12.1.3 wants >= 12 for CHAP). */
  const char *chap_name, *chap_secret;
  const char *mutual_name, *mutual_secret;
};

/* Export a volume as LUN 0 of a new target. 409 ISCSI_TARGET_EXISTS when the
 * name is taken. A read-only vol (snapshot) is exported write-protected. */
int iscsi_export(struct iscsi_srv *srv, const struct iscsi_export_spec *spec, struct err *e);
/* Change the ACL / CHAP of an existing target; live sessions stay. */
int iscsi_update(struct iscsi_srv *srv, const struct iscsi_export_spec *spec, struct err *e);
/* Remove a target: refuses new logins, ends its sessions (Async Message
 * "logout requested", then drop), waits for their commands, closes the vol.
 * 404 ISCSI_TARGET_NOT_FOUND. */
int iscsi_unexport(struct iscsi_srv *srv, const char *target_name, struct err *e);
int iscsi_exported(struct iscsi_srv *srv, const char *target_name);
/* A read-only point-in-time view (vol_os_snapshot) of the OS volume exported
 * as target_name, which keeps serving; close it with vol_close. 404
 * ISCSI_TARGET_NOT_FOUND; vol_os_snapshot's errors for other volumes. */
int iscsi_snapshot(struct iscsi_srv *srv, const char *target_name, struct vol **snap,
                   struct err *e);

/* Targets with their sessions and counters:
 * [{"targetName","alias","initiatorNames":[...],"chap":bool,"readOnly":bool,
 *   "size":bytes,"stats":{"readBytes","writeBytes","commands","errors",
 *   "latencyUs":{"le100":n,"le1000":n,...,"inf":n}},
 *   "sessions":[{"initiatorName","isid","tsih","connections":[{"peer","local"}],
 *                "readBytes","writeBytes","commands","started"}]}]
 * target_name NULL = all. Secrets never appear. New reference. */
json_t *iscsi_targets_json(struct iscsi_srv *srv, const char *target_name);

#endif
