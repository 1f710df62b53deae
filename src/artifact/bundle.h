/* bundle.h — HPE artifact bundles: the zip format (flat members
 * <uuid>_planscript.json, <uuid>_buildplan.json, <uuid>_deploymentplan.json,
 * <uuid>_goldenimage.json + the golden payload, MANIFEST.MF, SHA256SUM.sha256sum),
 * inspection of untrusted bundles (every hostile-input check), extraction
 * with conflict handling (all-or-nothing), creation, backup and restore.
 * No HTTP: the API layer owns uploads, tasks and files' final paths.
 * Format: docs/formats/bundle.md. Contract: issue 7. */
#ifndef STREAMER_BUNDLE_H
#define STREAMER_BUNDLE_H

#include <jansson.h>
#include <stdint.h>

#include "artifact/artifact.h"
#include "store/store.h"
#include "util/util.h"
#include "vol/vol.h"

#define BUNDLE_COLL "artifact-bundles" /* bundle documents */
#define BUNDLE_BACKUP_COLL "artifact-bundle-backups"

enum bundle_conflict { BUNDLE_STOP = 0, BUNDLE_RENAME, BUNDLE_REPLACE };

struct bundle_ctx {
  struct store *store;
  struct vol_store *volumes; /* NULL: bundles with golden images are refused (503) */
  const int *stop;           /* non-zero: give up with 503 SHUTTING_DOWN / 409 STOPPED */
  void (*progress)(void *arg, int percent, const char *line); /* line may be NULL */
  void *progress_arg;
  uint64_t storage_quota; /* bytes golden images may take (--storage-quota); 0 = no limit */
};

void bundle_register(struct store *s); /* renderers for both collections */

/* Vet and read a bundle zip file without changing anything. Returns the
 * "contents" object (issue-7 contract §3) or NULL with e set (400 BUNDLE_*).
 * lenient: a MANIFEST.MF digest mismatch is reported, not fatal. */
json_t *bundle_inspect(const char *path, int lenient, struct err *e);
/* Same over an open file descriptor (read with pread; not closed). */
json_t *bundle_inspect_fd(int fd, int lenient, struct err *e);

/* Record an uploaded/created bundle whose file is already at its final path
 * (the api chooses VOLUMES/bundles/<id>.zip). contents from bundle_inspect
 * (borrowed). name unique in the collection (409 NAME_CONFLICT). */
int bundle_record(struct store *s, const char *id, const char *name, const char *description,
                  json_t *contents, uint64_t size, const char *sha256, int imported,
                  struct store_entry **out, struct err *e);

struct bundle_extract_opts {
  enum bundle_conflict on_conflict;
  json_t *renames; /* NULL or [{"type":"PlanScript|OeBuildPlan|OEDeploymentPlan|GoldenImage",
                      "name":"in the bundle","newName":"..."}] */
  int lenient;
};
/* Extract bundle `id` (its file at path): all-or-nothing. On conflicts with
 * BUNDLE_STOP: 409 BUNDLE_CONFLICTS, e->nested = [{type,name,existingUri,reason}].
 * *report (on success) = {"created":[{type,name,uri}],"reused":[...],
 * "renamed":[{type,name,newName,uri}],"replaced":[...]}. id may be NULL (no
 * bundle document to mark extracted). */
int bundle_extract(const struct bundle_ctx *c, const char *id, const char *path,
                   const struct bundle_extract_opts *o, json_t **report, struct err *e);

/* POST /rest/artifact-bundles (create) body, checked synchronously: resolves
 * every resourceUri (404/400), the dependency closure, readOnly flags, name
 * (400/409). Returns a plan object to hand to bundle_write, or NULL. The
 * plan's "name" and "description" are the bundle's. */
json_t *bundle_create_plan(struct store *s, json_t *body, struct err *e);
/* Backup: a plan of every plan script, build plan, deployment plan and golden image. */
json_t *bundle_backup_plan(struct store *s, struct err *e);
/* Write the zip of `plan` to path (created 0600, fsync'd; removed on failure). */
int bundle_write(const struct bundle_ctx *c, json_t *plan, const char *path, struct err *e);

/* Restore a backup zip: every artifact of the backup is put back under its
 * own id (replacing the current version; read-only artifacts included),
 * artifacts created since the backup are kept. All-or-nothing. */
int bundle_restore(const struct bundle_ctx *c, const char *path, json_t **report, struct err *e);

/* Bundle and backup documents as the api changes them (bundle_doc.c). */
/* 0 if `name` is a valid bundle name not yet taken (400 / 409 NAME_CONFLICT). */
int bundle_check_new_name(struct store *s, const char *name, struct err *e);
/* Rename bundle `id` (404, 400, 409 NAME_CONFLICT, 412 If-Match); the same name is a no-op. */
int bundle_rename(struct store *s, const char *id, const char *name, const char *if_match,
                  struct store_entry **out, struct err *e);
/* Remove bundle `id`'s document (404 when gone); its file is the caller's. */
int bundle_delete_doc(struct store *s, const char *id, struct err *e);
/* Record the backup `id` (its file already at its final path), replacing the
 * previous backup document in the same transaction; old_id = the previous
 * backup's id ("" if none) so that the caller removes its file. */
int bundle_backup_record(struct store *s, const char *id, const char *group_uri, uint64_t size,
                         const char *sha256, struct store_entry **out, char old_id[37],
                         struct err *e);

#endif
