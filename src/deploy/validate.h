/* validate.h — build plans checked without a server (HPE's AMVM), and
 * volumes browsed read-only.
 *
 * Validation (validate.c): the steps of an OS build plan run, as a
 * deployment would run them, on a throwaway overlay (vol_overlay_open) of a
 * golden image or of a snapshot of an OS volume (which keeps serving); the
 * task's result is the run's log and a file-level diff of every filesystem
 * on the disk, base against overlay. Nothing on disk changes.
 *
 * Browsing (browse.c): the filesystems of a golden image or of an OS
 * volume's snapshot — devices, directory listings, file contents.
 *
 * Both know no HTTP: src/api/validate.c maps them to requests. See
 * docs/plan-scripts.md "Validating a build plan" and docs/api.md. */
#ifndef STREAMER_VALIDATE_H
#define STREAMER_VALIDATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "deploy/task.h"
#include "store/store.h"
#include "util/util.h"

struct vol;
struct vol_store;
struct osvol_service;

struct validate_ctx {
  struct store *store;
  struct vol_store *volumes;    /* golden images and the work directories */
  struct osvol_service *osvols; /* NULL: OS volumes cannot be read */
  struct task_engine *tasks;
};

/* Limits of one validation. */
#define VALIDATE_OVERLAY_MAX (1ull << 30) /* bytes the plan may write (the overlay's cap) */
#define VALIDATE_LOG_MAX (1u << 20)       /* log bytes kept: the head and the tail */
#define VALIDATE_CHANGES_MAX 10000        /* change entries listed (all are counted) */
#define VALIDATE_COMPARE_MAX (4ull << 30) /* file bytes compared (per side) */

/* POST /rest/build-plans/{id}/validate. `body`: {"goldenImageUri" | "osVolumeUri"
 * (URI, id or name; the ...URI spellings too), "customAttributes": [{"name",
 * "value"}] or {"name": "value"}}. Everything is checked before a task
 * exists: 400 INVALID_BODY / UNKNOWN_FIELD, 404 RESOURCE_NOT_FOUND (the build
 * plan), 400 GOLDEN_IMAGE_NOT_FOUND / OS_VOLUME_NOT_FOUND, 409 busy or being
 * deleted, 400 INVALID_ATTRIBUTES (every problem nested: UNKNOWN_ATTRIBUTE,
 * INVALID_ATTRIBUTE). Returns the 202 task document (new reference) of a
 * task named "Validate" whose data holds the result when it Completes. */
json_t *validate_submit(const struct validate_ctx *c, const char *build_plan_id, json_t *body,
                        const char *owner, struct err *e);

/* ---- browsing (browse.c) ----------------------------------------------------- */
enum validate_source { VALIDATE_GOLDEN_IMAGE, VALIDATE_OS_VOLUME };

/* A read-only view of golden image or OS volume `ref` (URI, id or exact
 * name): the golden volume itself, or a snapshot of the OS volume. *vol:
 * close it; *doc (may be NULL): the public document (new reference). 404
 * RESOURCE_NOT_FOUND; 409 GOLDEN_IMAGE_DELETING, OS_VOLUME_BUSY,
 * OS_VOLUME_UNAVAILABLE; 503 VOLUMES_UNAVAILABLE. */
int validate_source_open(const struct validate_ctx *c, enum validate_source k, const char *ref,
                         struct vol **vol, json_t **doc, struct err *e);

/* {"devices":[{"device","type","size","label","uuid"}], "warnings":[...]}:
 * guestfish's list-filesystems of the disk, with sizes, labels and UUIDs. */
json_t *browse_devices(const struct validate_ctx *c, enum validate_source k, const char *ref,
                       struct err *e);

/* The directory `path` of the filesystem on `device`:
 * {"device","path","count","members":[{"name","type","size","mode","uid",
 * "gid","modified","target"?}]} sorted by name; "type" is file, directory,
 * symlink or special. At most BROWSE_LIST_MAX members ("truncated": true
 * beyond). 400 FS_NOT_A_DIRECTORY for a file, 404 FS_NOT_FOUND, 422
 * FS_NOT_SUPPORTED for a device without a filesystem Streamer reads. */
#define BROWSE_LIST_MAX 100000
json_t *browse_list(const struct validate_ctx *c, enum validate_source k, const char *ref,
                    const char *device, const char *path, struct err *e);

/* A regular file, opened for reading (symlinks followed inside its
 * filesystem); 400 FS_IS_A_DIRECTORY for a directory. */
struct browse_file;
struct browse_file *browse_open(const struct validate_ctx *c, enum validate_source k,
                                const char *ref, const char *device, const char *path,
                                struct err *e);
uint64_t browse_file_size(const struct browse_file *f);
/* Up to len bytes at off; the count (0 at the end), or -1 with e set. */
long browse_file_read(struct browse_file *f, uint64_t off, void *buf, size_t len, struct err *e);
void browse_file_close(struct browse_file *f);

#endif
