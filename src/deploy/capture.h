/* capture.h — a golden image captured from an OS volume (HPE's
 * POST /rest/golden-images with "imageCapture": true).
 *
 * capture_submit checks the request completely before a task exists (the
 * name, the OS volume, the capture build plan and its attribute values),
 * takes a snapshot of the OS volume (which keeps serving its server and is
 * never written), and queues a task "Capture" that runs the build plan on a
 * throwaway overlay of the snapshot, writes the result as a new golden
 * volume (vol/image.h: sparse, SHA-256 and CRC-32 of the raw content) and
 * creates its golden image document, with the run's log as its archive.
 * The task ends there (the image is usable); the SHA-256, if not done yet,
 * is recorded by a follow-up task "Compute checksum" (ctx.checksum) while
 * the document's checkSumState is "Pending".
 * Any failure leaves no document and no file. Knows no HTTP. See
 * src/deploy/README.md and docs/api.md "Capture". */
#ifndef STREAMER_CAPTURE_H
#define STREAMER_CAPTURE_H

#include <jansson.h>
#include <stdint.h>

#include "deploy/task.h"
#include "store/store.h"
#include "util/util.h"

struct vol_store;
struct osvol_service;
struct image_stream;

struct capture_ctx {
  struct store *store;
  struct vol_store *volumes;
  struct osvol_service *osvols;
  struct task_engine *tasks;
  /* The storage quota of golden images (0 = none) and the bytes other
   * imports have reserved (read atomically; may be NULL). */
  uint64_t quota;
  const uint64_t *reserved;
  /* Raised when streamerd stops: the copy and the SHA-256 give up (may be NULL). */
  const int *stopping;
  /* Called by the task around its work (may be NULL): enter fails (503) once
   * stopping, so that whoever owns the pointers above can wait for leave. */
  int (*enter)(struct err *e);
  void (*leave)(void);
  /* Queue the task "Compute checksum" of the new golden image `id`, which
   * finishes the SHA-256 of `stream` (committed; the callee owns it in every
   * case). Returns the task document (a new reference) or NULL with e set:
   * the image then stays Pending until the next start. */
  json_t *(*checksum)(void *arg, const char *id, const char *name, struct image_stream *stream,
                      struct err *e);
  void *checksum_arg;
};

/* Limits of one capture. */
#define CAPTURE_OVERLAY_MAX                                                                        \
  (1ull << 30)                     /* bytes the plan may write (STREAMER_CAPTURE_OVERLAY_MAX) */
#define CAPTURE_LOG_MAX (1u << 20) /* log bytes kept: the head and the tail */

/* POST /rest/golden-images {"type":"GoldenImage","name","description",
 * "imageCapture":true,"osVolumeURI" | "osVolumeUri" (URI, id or name),
 * "buildPlanUri" (URI, id or name)}. 400 INVALID_BODY / UNKNOWN_FIELD /
 * INVALID_NAME / INVALID_FIELD, 409 NAME_CONFLICT, 400 OS_VOLUME_NOT_FOUND,
 * 409 OS_VOLUME_BUSY / OS_VOLUME_UNAVAILABLE, 400 BUILD_PLAN_NOT_FOUND /
 * BUILD_PLAN_NOT_CAPTURE / PLAN_SCRIPT_NOT_FOUND / INVALID_ATTRIBUTES, 413
 * QUOTA_EXCEEDED, 503 VOLUMES_UNAVAILABLE. Returns the 202 task document (a
 * new reference). */
json_t *capture_submit(const struct capture_ctx *c, json_t *body, const char *owner, struct err *e);

/* Remove the work directories a stop left (DATA/volumes/capture/). Call at
 * start, before any capture runs. */
void capture_clean_leftovers(struct vol_store *vs);

#endif
