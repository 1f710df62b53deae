/* osvolume.h — OS volumes: a copy-on-write clone of a golden image (or an
 * empty volume) in src/vol, its document in the store's "os-volumes"
 * collection, and its export as LUN 0 of an iSCSI target of its own
 * (src/iscsi), with an initiator ACL and optional CHAP.
 *
 * The REST API (src/api/osvolumes.c) and, later, deployments use this
 * service; it knows no HTTP. Every change keeps the three places (document,
 * volume, export) consistent across errors and crashes: a volume is created
 * under a document in state "Creating" and deleted under one in state
 * "Deleting", and osvol_service_open finishes or undoes what a stop left in
 * either state. See src/deploy/README.md and docs/api.md#os-volumes. */
#ifndef STREAMER_OSVOLUME_H
#define STREAMER_OSVOLUME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "deploy/task.h"
#include "store/store.h"
#include "util/util.h"

#define OSVOL_COLL "os-volumes"
#define OSVOL_MAX_SIZE (64ull << 40) /* 64 TiB */
#define OSVOL_MAX_INITIATORS 64

struct osvol_service;
struct vol_store;
struct iscsi_srv;
struct vol;

/* Register the public rendering (CHAP secrets and the log left out), finish
 * what a stop left "Creating" (undone) or "Deleting" (done), and export every
 * stored volume again. A volume that cannot be opened (files missing,
 * corrupt) gets status "Critical" with a statusMessage; the service still
 * opens. `iscsi` NULL: the target is disabled and nothing is exported
 * (volumes get status "Warning"). All three must outlive the service. */
struct osvol_service *osvol_service_open(struct store *s, struct vol_store *vs,
                                         struct iscsi_srv *iscsi, struct err *e);
/* Forget the service (exports stay with the target until iscsi_stop). */
void osvol_service_close(struct osvol_service *svc);

/* What a new OS volume is made of (validated by osvol_params_parse or by
 * the caller). Strings are borrowed. */
struct osvol_params {
  const char *name;
  const char *description;       /* NULL = "" */
  uint64_t size;                 /* bytes, a multiple of 512; 0 = the golden image's size */
  const char *golden_ref;        /* golden image URI, id or name; NULL = empty volume */
  const char *const *initiators; /* IQN / EUI / NAA names, or "*" alone */
  size_t ninitiators;
  int allow_any_initiator; /* needed for "*" */
  int chap;                /* one-way CHAP: chap_name / chap_secret, generated when NULL */
  const char *chap_name, *chap_secret;
  int mutual_chap; /* mutual CHAP (needs chap): mutual_name / mutual_secret */
  const char *mutual_name, *mutual_secret;
  /* A deployment's volume (NULL otherwise): the server profile that owns it
   * and the deployment plan it was made from, shown in the document
   * ("serverProfileUri", "deploymentPlanUri"); REST PUT and DELETE of the
   * volume are then refused (the profile manages it). */
  const char *server_profile_uri, *deployment_plan_uri;
  /* ... and, for its "dependentArtifacts" ([{name, serverIqn, uri}], HPE's
   * shape), the profile's name and the machine's initiator name. */
  const char *server_profile_name, *server_iqn;
};

/* Parse and check a POST /rest/os-volumes body into *p (which then borrows
 * from body). 400 INVALID_BODY / UNKNOWN_FIELD / INVALID_NAME / INVALID_SIZE
 * / INVALID_INITIATOR / INVALID_CHAP ... p->initiators is malloc'd: free it
 * with osvol_params_free. */
int osvol_params_parse(json_t *body, struct osvol_params *p, struct err *e);
void osvol_params_free(struct osvol_params *p);

/* Creation in two steps, for callers that run their own task (deployments):
 * begin checks everything against the store (name free, golden image exists
 * and is not being deleted, size not below its size) and stores the
 * document in state "Creating" (id_out receives its id); finish creates the
 * volume, exports it and sets the state "OK" — or, on any failure, removes
 * the volume and the document again. `t` (may be NULL) gets progress. */
int osvol_create_begin(struct osvol_service *svc, const struct osvol_params *p, char id_out[37],
                       struct err *e);
int osvol_create_finish(struct osvol_service *svc, const char *id, struct task *t, struct err *e);
/* The same, with `prepare` run on the new volume (open read-write, not yet
 * exported) between its creation and its export: a deployment personalizes
 * it there. prepare returns 0, or -1 with e set: the volume and document are
 * then removed like any failed create. *log (malloc'd, may stay NULL) is
 * kept as the volume's deployment log (hidden; part of the archive). */
typedef int (*osvol_prepare_fn)(void *arg, struct vol *v, char **log, struct err *e);
int osvol_create_finish_with(struct osvol_service *svc, const char *id, struct task *t,
                             osvol_prepare_fn prepare, void *arg, struct err *e);
/* Undo a begin whose finish will not run (the task could not be queued):
 * the document (and a volume, if any) removed. */
void osvol_create_abort(struct osvol_service *svc, const char *id);
/* Deletion in two steps likewise: begin checks (404, 412 If-Match, 409
 * busy) and sets the state "Deleting"; finish drops the export and its
 * sessions, deletes the volume, then the document. */
int osvol_delete_begin(struct osvol_service *svc, const char *id, const char *if_match,
                       struct err *e);
int osvol_delete_finish(struct osvol_service *svc, const char *id, struct task *t, struct err *e);

/* The REST operations. create and delete return the 202 task document (a
 * new reference) of a task that runs finish. */
json_t *osvol_create(struct osvol_service *svc, struct task_engine *te, json_t *body,
                     const char *owner, struct err *e);
json_t *osvol_delete(struct osvol_service *svc, struct task_engine *te, const char *id,
                     const char *if_match, const char *owner, struct err *e);
/* PUT: name, description, initiatorNames, CHAP; the target's ACL and CHAP
 * change at once (live sessions stay). The other fields must be absent or
 * unchanged. *out receives the new entry (release it). */
int osvol_update(struct osvol_service *svc, const char *id, json_t *body, const char *if_match,
                 struct store_entry **out, struct err *e);
/* Inside the caller's transaction t: the "dependentArtifacts" of deployment
 * volume `id` become [{name: profile_name, serverIqn, uri: profile_uri}].
 * 0 when the volume does not exist (nothing to do). */
int osvol_set_owner(struct store_txn *t, const char *id, const char *profile_name,
                    const char *server_iqn, const char *profile_uri, struct err *e);
/* Inside t: hand deployment volume `id` to another machine (a server profile
 * moving): its ACL becomes that machine's `initiator` alone with one-way CHAP
 * chap_name/chap_secret, its dependentArtifacts name the profile and the
 * initiator. The target's ACL changes at once, so the old machine cannot log
 * in again; if an initiator is still logged in, the target is put back as it
 * was and the answer is 409 OS_VOLUME_LOGGED_IN (the old machine must be off
 * first: a machine powered off without logging out is dropped within 45 s).
 * On success *undo can put the target back should the caller's commit fail
 * (osvol_rebind_undo), and must be freed with osvol_rebind_free either way. */
struct osvol_rebind;
int osvol_rebind(struct osvol_service *svc, struct store_txn *t, const char *id,
                 const char *initiator, const char *chap_name, const char *chap_secret,
                 const char *profile_name, const char *profile_uri, struct osvol_rebind **undo,
                 struct err *e);
void osvol_rebind_undo(struct osvol_rebind *u);
void osvol_rebind_free(struct osvol_rebind *u);
/* The public document with the current allocatedBytes (new reference). */
json_t *osvol_get(struct osvol_service *svc, const char *id, struct err *e);
/* A read-only point-in-time view of OS volume `id` (a snapshot: the volume
 * keeps serving its initiators; close it with vol_close). 404, 409
 * OS_VOLUME_BUSY while it is created or deleted, 409 OS_VOLUME_UNAVAILABLE
 * when it cannot be served (status Critical). *doc (may be NULL) receives
 * the public document (a new reference). */
int osvol_snapshot(struct osvol_service *svc, const char *id, struct vol **snap, json_t **doc,
                   struct err *e);
/* {"chapName","chapSecret","mutualChapName"?,"mutualChapSecret"?}; 404, or
 * 409 CHAP_NOT_ENABLED when the volume has no CHAP. */
json_t *osvol_credentials(struct osvol_service *svc, const char *id, struct err *e);
/* The volume's life as text (malloc'd); `ref` is its id (= oeVolumeId) or name. */
char *osvol_archive(struct osvol_service *svc, const char *ref, struct err *e);
/* {"name","snapshots":[]} */
json_t *osvol_storage(struct osvol_service *svc, const char *id, struct err *e);
/* {"enabled","portals":[...],"count","members":[targets of iscsi_targets_json
 * with "osVolumeUri" added]} */
json_t *osvol_targets(struct osvol_service *svc);

/* Names of the OS volumes cloned from (or being cloned from) golden image
 * `golden_id`, comma-separated into buf; returns how many there are. */
size_t osvol_golden_users(struct store *s, struct vol_store *vs, const char *golden_id, char *buf,
                          size_t size);

/* Helpers shared with the CLI's rules and tests: "10G" / "512M" / "1T" /
 * bytes (binary units) -> bytes; 0 or -1. */
int osvol_parse_size(json_t *v, uint64_t *out, struct err *e);
/* RFC 3720 3.2.6.3 iqn. / eui. / naa. names; 1 when valid. */
int osvol_initiator_valid(const char *name);

#endif
