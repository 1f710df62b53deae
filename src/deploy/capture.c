/* capture.c — POST /rest/golden-images {"imageCapture": true, ...}: a golden
 * image made from an OS volume by a capture build plan (HPE's capture).
 *
 * The request is checked completely before a task exists (body, name, OS
 * volume, build plan type, plan scripts, attribute values — a capture takes
 * none, so every value a script needs must have a default), and the OS
 * volume's snapshot is taken then (osvol_snapshot: the server may keep
 * writing; the snapshot sees the volume as it was when asked). The task:
 *   1. puts a throwaway overlay (vol_overlay_open) over the snapshot and runs
 *      the plan's steps in one script session in a fresh work directory
 *      DATA/volumes/capture/<uuid>.tmp, its log captured (head and tail);
 *   2. streams the overlay into a new golden volume (image_stream_from_vol:
 *      deallocated runs as holes unread, zero blocks found, CRC-32; the
 *      SHA-256 on a thread that follows the writes), commits it (durable,
 *      renamed into place) and creates the golden image document — usable
 *      from then on — with the capture log as its archive; the task ends
 *      there (Completed);
 *   3. the SHA-256, unless already done, is handed over (with the stream
 *      whose thread is computing it) to a follow-up task "Compute checksum"
 *      (ctx.checksum) named in the output (checksumTaskUri); the document is
 *      checkSumState "Pending" until that task records it.
 * A failure before the document exists removes the temp file (the stream
 * does) or the committed volume; the OS volume is only ever read. A stop
 * or a crash: the golden volume's temp file, a volume without a document
 * and the work directory are removed at the next start (src/api/golden.c,
 * capture_clean_leftovers); a document whose SHA-256 was pending gets it
 * computed then. */
#include "deploy/capture.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "artifact/artifact.h"
#include "deploy/deploy_int.h"
#include "deploy/osvolume.h"
#include "deploy/plan_int.h"
#include "fs/fs.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/image.h"
#include "vol/vol.h"

#define BP_COLL "build-plans"
#define PROGRESS_MS 250
/* percentComplete: the plan 0..PCT_PLAN, the copy ..PCT_COPIED, the commit
 * ..PCT_USABLE, the document 100. */
#define PCT_PLAN 10
#define PCT_COPIED 85
#define PCT_USABLE 99

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* ---- names of captures under way ------------------------------------------------
 * A name is checked against the documents at submit, but the document is
 * made at the end: names of running captures are kept here, so that a second
 * capture of the same name is refused at once rather than at its end. */
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *names_running; /* object: name -> true */

static int name_reserve(const char *name, struct err *e) {
  pthread_mutex_lock(&names_lock);
  if (!names_running) names_running = json_object();
  int rc = -1;
  if (!names_running) {
    oom(e);
  } else if (json_object_get(names_running, name)) {
    err_set(e, 409, "NAME_CONFLICT", "a golden image named \"%s\" is being captured", name);
    err_action(e, "Choose another name, or wait for that capture to end.");
  } else if (json_object_set_new(names_running, name, json_true()) < 0) {
    oom(e);
  } else {
    rc = 0;
  }
  pthread_mutex_unlock(&names_lock);
  return rc;
}

static void name_release(const char *name) {
  pthread_mutex_lock(&names_lock);
  if (names_running) json_object_del(names_running, name);
  pthread_mutex_unlock(&names_lock);
}

/* ---- the job ------------------------------------------------------------------- */
struct job {
  struct capture_ctx ctx;
  char id[37]; /* the new golden image's */
  char *name, *description;
  int name_held;
  struct plan plan;
  char *vol_uri, *vol_name, *volume_info;
  uint64_t vol_size;
  struct vol *snap; /* the OS volume's snapshot (read-only) */
  struct task *task;
  int last_pct, pct_lo, pct_hi;
  int64_t last_ms;
};

static void job_free(void *p) {
  struct job *j = p;
  if (!j) return;
  if (j->name_held) name_release(j->name);
  plan_clear(&j->plan);
  free(j->name);
  free(j->description);
  free(j->vol_uri);
  free(j->vol_name);
  free(j->volume_info);
  vol_close(j->snap);
  free(j);
}

/* ---- the request ------------------------------------------------------------------ */
static const char *const BODY_KEYS[] = {"type",         "name",         "description",
                                        "imageCapture", "osVolumeURI",  "osVolumeUri",
                                        "buildPlanUri", "buildPlanURI", NULL};

/* The string at one of two spellings of a key: NULL when absent, null or
 * empty; -1 when both are given or it is not a string. */
static int ref_field(json_t *body, const char *k1, const char *k2, const char **out,
                     struct err *e) {
  *out = NULL;
  const char *keys[2] = {k1, k2};
  for (int i = 0; i < 2; i++) {
    json_t *v = json_object_get(body, keys[i]);
    if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v))) continue;
    if (!json_is_string(v)) {
      err_set(e, 400, "INVALID_BODY", "\"%s\" must be a string (a URI, id or name)", keys[i]);
      return -1;
    }
    if (*out && strcmp(*out, json_string_value(v)) != 0) {
      err_set(e, 400, "INVALID_BODY", "\"%s\" and \"%s\" name different resources", k1, k2);
      return -1;
    }
    *out = json_string_value(v);
  }
  return 0;
}

static int check_body(json_t *body, const char **name, const char **desc, const char **vol,
                      const char **bp, struct err *e) {
  static const char shape[] =
      "{\"type\":\"GoldenImage\",\"name\",\"description\",\"imageCapture\":true,"
      "\"osVolumeURI\",\"buildPlanUri\"}";
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "a capture's body must be a JSON object: %s", shape);
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    int ok = 0;
    for (const char *const *b = BODY_KEYS; *b && !ok; b++)
      ok = is(key, *b);
    if (!ok && !json_is_null(v)) { /* SDKs send templates with nulls */
      err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in a capture request", key);
      err_action(e, "Send only the fields of a capture: type, name, description, imageCapture, "
                    "osVolumeURI, buildPlanUri.");
      return -1;
    }
  }
  json_t *type = json_object_get(body, "type");
  if (type && !json_is_null(type) && !util_strcaseeq(json_string_value(type), "GoldenImage")) {
    err_set(e, 400, "INVALID_TYPE", "\"type\" must be \"GoldenImage\"");
    return -1;
  }
  if (util_json_bool(json_object_get(body, "imageCapture")) != 1) {
    err_set(e, 400, "INVALID_BODY", "\"imageCapture\" must be true for a capture");
    return -1;
  }
  json_t *n = json_object_get(body, "name");
  if (!json_is_string(n) || !json_string_length(n)) {
    err_set(e, 400, "INVALID_NAME", "a capture needs the new golden image's \"name\" (a string)");
    return -1;
  }
  *name = json_string_value(n);
  json_t *d = json_object_get(body, "description");
  if (d && !json_is_null(d) && !json_is_string(d)) {
    err_set(e, 400, "INVALID_FIELD", "\"description\" must be a string");
    return -1;
  }
  *desc = json_is_string(d) ? json_string_value(d) : "";
  if (ref_field(body, "osVolumeURI", "osVolumeUri", vol, e) < 0 ||
      ref_field(body, "buildPlanUri", "buildPlanURI", bp, e) < 0)
    return -1;
  if (!*vol || !*bp) {
    err_set(e, 400, "INVALID_BODY", "a capture needs \"%s\" (its URI, id or name)",
            !*vol ? "osVolumeURI" : "buildPlanUri");
    err_action(e, "Send {\"type\":\"GoldenImage\",\"name\",\"description\",\"imageCapture\":true,"
                  "\"osVolumeURI\",\"buildPlanUri\"}.");
    return -1;
  }
  return 0;
}

/* A capture takes no attribute values: every one its scripts use must get a
 * value from a default (the build plan's or the token's own). */
static int check_needed(struct plan *p, struct err *e) {
  json_t *violations CLEANUP_JSON = json_array();
  if (!violations) return oom(e);
  size_t i;
  json_t *a;
  json_array_foreach(p->derived, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    if (!n || n[0] == '_') continue;
    char base[256];
    snprintf(base, sizeof base, "%s", n);
    char *dot = strchr(base, '.');
    if (dot) *dot = 0;
    size_t k;
    json_t *d;
    int nic = 0;
    json_array_foreach(p->bp_decls, k, d) {
      if (util_strcaseeq(json_string_value(json_object_get(d, "name")), base))
        nic = util_strcaseeq(json_string_value(json_object_get(d, "type")), "nic");
    }
    const char *v = plan_value(p, n);
    if (nic || (v && *v)) continue;
    char msg[600];
    snprintf(msg, sizeof msg,
             "attribute \"%.200s\" has no value: a capture takes no attribute values, so build "
             "plan \"%.200s\" must give it a default",
             n, p->bp_name);
    json_array_append_new(violations,
                          err_object("INVALID_ATTRIBUTE", msg,
                                     "Give the attribute a default value in the build plan."));
  }
  if (!json_array_size(violations)) return 0;
  err_set(e, 400, "INVALID_ATTRIBUTES", "capture: %zu custom attribute problem(s): %s",
          json_array_size(violations),
          json_string_value(json_object_get(json_array_get(violations, 0), "message")));
  e->nested = json_incref(violations);
  return -1;
}

static int capture_run(struct task *t, void *arg, struct err *e);

json_t *capture_submit(const struct capture_ctx *c, json_t *body, const char *owner,
                       struct err *e) {
  if (!c->volumes || !c->osvols) {
    err_set(e, 503, "VOLUMES_UNAVAILABLE", "this server has no OS volumes to capture");
    return NULL;
  }
  const char *name, *desc, *vref, *bref;
  if (check_body(body, &name, &desc, &vref, &bref, e) < 0 ||
      golden_check_new_name(c->store, name, e) < 0 || golden_check_description(desc, e) < 0)
    return NULL;
  if (c->quota) {
    uint64_t used = golden_allocated_total(c->store) +
                    (c->reserved ? __atomic_load_n(c->reserved, __ATOMIC_RELAXED) : 0);
    if (used >= c->quota) {
      err_set(e, 413, "QUOTA_EXCEEDED",
              "golden images already use %llu bytes of the storage quota of %llu bytes",
              (unsigned long long)used, (unsigned long long)c->quota);
      err_action(e, "Delete golden images that are no longer needed, or raise --storage-quota.");
      return NULL;
    }
  }
  struct job *j = calloc(1, sizeof *j);
  struct store_entry *bp = NULL, *ve = NULL;
  json_t *vdoc = NULL, *task = NULL;
  if (!j) {
    oom(e);
    goto out;
  }
  j->ctx = *c;
  j->last_pct = -1;
  util_uuid(j->id);
  if (!(j->name = strdup(name)) || !(j->description = strdup(desc))) {
    oom(e);
    goto out;
  }
  /* the build plan: a capture plan, its scripts, values for what they need */
  bp = deploy_lookup(c->store, BP_COLL, bref);
  if (!bp) {
    err_set(e, 400, "BUILD_PLAN_NOT_FOUND", "build plan \"%.300s\" does not exist", bref);
    goto out;
  }
  const char *type = json_string_value(json_object_get(bp->doc, "oeBuildPlanType"));
  if (!util_strcaseeq(type, "capture")) {
    err_set(e, 400, "BUILD_PLAN_NOT_CAPTURE",
            "build plan \"%.200s\" is a \"%.50s\" plan; a capture runs a \"capture\" plan",
            bp->name ? bp->name : bp->id, type ? type : "");
    err_action(e, "Name a build plan whose oeBuildPlanType is \"capture\".");
    goto out;
  }
  if (plan_load(&j->plan, c->store, bp->id, bp->name, bp->doc, e) < 0 ||
      plan_attributes(&j->plan, "capture", NULL, NULL, NULL, e) < 0 ||
      check_needed(&j->plan, e) < 0)
    goto out;
  /* the OS volume, as it is now */
  ve = deploy_lookup(c->store, OSVOL_COLL, vref);
  if (!ve) {
    err_set(e, 400, "OS_VOLUME_NOT_FOUND", "OS volume \"%.300s\" does not exist", vref);
    goto out;
  }
  if (name_reserve(name, e) < 0) goto out;
  j->name_held = 1;
  if (osvol_snapshot(c->osvols, ve->id, &j->snap, &vdoc, e) < 0) goto out;
  const char *vname = json_string_value(json_object_get(vdoc, "name"));
  j->vol_uri = strdup(json_string_value(json_object_get(vdoc, "uri")) ?: "");
  j->vol_name = strdup(vname ? vname : "");
  j->vol_size = vol_size(j->snap);
  j->volume_info = util_strdup_printf(
      "throwaway overlay of a snapshot of OS volume \"%s\" (%llu MiB) — capture: the OS volume "
      "is not written; the result becomes golden image \"%s\"",
      vname ? vname : "", (unsigned long long)(j->vol_size >> 20), name);
  if (!j->vol_uri || !j->vol_name || !j->volume_info) {
    oom(e);
    goto out;
  }
  json_t *assoc = task_assoc(GOLDEN_COLL, j->id, name);
  task = task_submit(c->tasks, "Capture", owner, assoc, capture_run, j, job_free, e);
  json_decref(assoc);
  j = NULL; /* the task owns it (freed already when task_submit failed) */
out:
  job_free(j);
  json_decref(vdoc);
  store_entry_release(bp);
  store_entry_release(ve);
  return task;
}

/* ---- work directories ------------------------------------------------------------ */
/* DATA/volumes/capture/<uuid>.tmp, removed by sandbox_cleanup(".../<uuid>")
 * the hardened way (never following links, any depth). */
static char *capture_dir(struct vol_store *vs) {
  return util_strdup_printf("%s/capture", vol_store_dir(vs));
}

void capture_clean_leftovers(struct vol_store *vs) {
  if (!vs) return;
  CLEANUP_FREE char *dir = capture_dir(vs);
  DIR *d = dir ? opendir(dir) : NULL;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n <= 4 || strcmp(de->d_name + n - 4, ".tmp") != 0) continue;
    CLEANUP_FREE char *base = util_strdup_printf("%s/%.*s", dir, (int)(n - 4), de->d_name);
    struct err e;
    err_init(&e);
    if (base && sandbox_cleanup(base, &e) < 0)
      log_warn("capture", "%s", e.message);
    else if (base)
      log_warn("capture", "removed %s.tmp: a capture was interrupted", base);
    err_clear(&e);
  }
  if (d) closedir(d);
}

/* ---- the task ------------------------------------------------------------------------- */
/* The overlay's cap: CAPTURE_OVERLAY_MAX, or STREAMER_CAPTURE_OVERLAY_MAX (bytes). */
static uint64_t overlay_cap(void) {
  const char *s = getenv("STREAMER_CAPTURE_OVERLAY_MAX");
  char *end = NULL;
  unsigned long long v = s && *s ? strtoull(s, &end, 10) : 0;
  return v > 0 && end && !*end ? (uint64_t)v : CAPTURE_OVERLAY_MAX;
}

static void progress(void *arg, uint64_t done, uint64_t total) {
  struct job *j = arg;
  if (!total) return;
  int pct = j->pct_lo + (int)(done * (uint64_t)(j->pct_hi - j->pct_lo) / total);
  if (pct > 99) pct = 99;
  int64_t now = util_mono_ms();
  if (pct <= j->last_pct || (now - j->last_ms < PROGRESS_MS && pct < j->last_pct + 5)) return;
  j->last_pct = pct;
  j->last_ms = now;
  task_percent(j->task, pct);
}

/* A line of the capture log (timestamped), appended to `log`. */
static void log_add(char **log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_add(char **log, const char *fmt, ...) {
  char line[1200], ts[32];
  util_iso8601(util_now_ms(), ts);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  char *n = util_strdup_printf("%s%s %s\n", *log ? *log : "", ts, line);
  if (!n) return;
  free(*log);
  *log = n;
}

struct run {
  struct job *j;
  char *base_dir, *workdir; /* the work dir is base_dir + ".tmp" */
  struct vol *overlay;
  struct fs_disk *disk;
  struct logcap cap;
  char *log; /* the capture log: header, the plan's log, the result */
  struct image_stream *stream;
};

static void run_cleanup(struct run *r) {
  fs_disk_close(r->disk);
  r->disk = NULL;
  image_stream_close(r->stream); /* an uncommitted golden volume's temp file goes */
  r->stream = NULL;
  vol_close(r->overlay);
  r->overlay = NULL;
  if (r->workdir) {
    struct err e;
    err_init(&e);
    if (sandbox_cleanup(r->base_dir, &e) < 0)
      log_warn("capture", "cannot remove %s: %s", r->workdir, e.message);
    err_clear(&e);
  }
  free(r->workdir);
  free(r->base_dir);
  logcap_free(&r->cap);
  free(r->log);
}

/* 1: the plan on an overlay of the snapshot. -1 with e: it failed (the log
 * and the failing step go into the task's output). */
static int run_plan(struct task *t, struct run *r, struct err *e) {
  struct job *j = r->j;
  CLEANUP_FREE char *dir = capture_dir(j->ctx.volumes);
  char id[37];
  util_uuid(id);
  r->base_dir = dir ? util_strdup_printf("%s/%s", dir, id) : NULL;
  r->workdir = r->base_dir ? util_strdup_printf("%s.tmp", r->base_dir) : NULL;
  if (!r->workdir || logcap_init(&r->cap, CAPTURE_LOG_MAX / 4 * 3, CAPTURE_LOG_MAX / 4) < 0)
    return oom(e);
  if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || mkdir(r->workdir, 0700) < 0) {
    err_set(e, 500, "IO_ERROR", "cannot create the work directory %s: %s", r->workdir,
            strerror(errno));
    free(r->workdir);
    r->workdir = NULL;
    return -1;
  }
  if (vol_overlay_open(j->snap, overlay_cap(), &r->overlay, e) < 0 ||
      fs_disk_open(r->overlay, 0, &r->disk, e) < 0)
    return -1;
  struct script_opts o = {.workdir = r->workdir,
                          .log = logcap_take,
                          .log_opaque = &r->cap,
                          .guestfish = SCRIPT_GUESTFISH_AUTO,
                          .volume_info = j->volume_info};
  struct script_session *s = NULL;
  if (script_session_new(r->disk, &o, &s, e) < 0) return -1;
  script_session_set_attributes(s, j->plan.values, j->plan.secrets);
  task_progress(t, 1,
                "Running capture build plan \"%s\" (%zu step(s)) on a snapshot of OS volume "
                "\"%s\"",
                j->plan.bp_name, j->plan.nsteps, j->vol_name);
  struct err pe;
  err_init(&pe);
  int failed = script_session_run_plan(s, j->plan.steps, j->plan.nsteps, &pe) < 0;
  struct err ce;
  err_init(&ce);
  if (script_session_close(s, &ce) < 0 && !failed) { /* writing back what it changed failed */
    pe = ce;
    err_init(&ce);
    failed = 1;
  }
  err_clear(&ce);
  fs_disk_close(r->disk);
  r->disk = NULL;
  uint64_t cut = 0;
  char *text = logcap_text(&r->cap, &cut);
  char *masked = text ? plan_masked(text, j->plan.secret_values) : NULL;
  free(text);
  if (!masked) {
    err_clear(&pe);
    return oom(e);
  }
  char *both = util_strdup_printf("%s%s%s", r->log ? r->log : "", masked,
                                  masked[0] && masked[strlen(masked) - 1] != '\n' ? "\n" : "");
  free(masked);
  if (!both) {
    err_clear(&pe);
    return oom(e);
  }
  free(r->log);
  r->log = both;
  uint64_t refused = vol_overlay_refused(r->overlay);
  if (failed) {
    char *msg = plan_masked(pe.message, j->plan.secret_values);
    err_set(e, 400, "CAPTURE_PLAN_FAILED", "capture build plan \"%.200s\" failed: %.700s",
            j->plan.bp_name, msg ? msg : pe.code);
    err_action(e, "Read the capture log in the task's data, fix the plan (validate it with POST "
                  "/rest/build-plans/{id}/validate on the OS volume) and capture again.");
    free(msg);
    err_clear(&pe);
    return -1;
  }
  err_clear(&pe);
  if (refused) {
    err_set(e, 507, "CAPTURE_OVERLAY_FULL",
            "the capture build plan wrote more than a capture keeps in memory (%llu KiB); %llu "
            "write(s) were refused",
            (unsigned long long)(overlay_cap() >> 10), (unsigned long long)refused);
    err_action(e, "Make the capture plan write less (it should only generalize the OS).");
    return -1;
  }
  return 0;
}

/* The failure's log in the task's data (there is no golden image to keep it). */
static void fail_output(struct task *t, struct run *r, const struct err *e) {
  log_add(&r->log, "capture failed: %s (%s); no golden image was created", e->message, e->code);
  json_t *data = json_pack("{s:s, s:s}", "type", "GoldenImageCapture", "log", r->log ? r->log : "");
  char line[400];
  snprintf(line, sizeof line, "Capture failed: %.300s", e->code);
  task_set_output(t, data, line);
}

static int capture_work(struct task *t, struct job *j, struct run *r, struct err *e) {
  int64_t t0 = util_mono_ms();
  char bp_uri[96], gi_uri[96];
  snprintf(bp_uri, sizeof bp_uri, "/rest/%s/%s", BP_COLL, j->plan.bp_id);
  snprintf(gi_uri, sizeof gi_uri, "/rest/%s/%s", GOLDEN_COLL, j->id);
  log_add(&r->log, "capture of OS volume \"%s\" (%s, %llu bytes) into golden image \"%s\"",
          j->vol_name, j->vol_uri, (unsigned long long)j->vol_size, j->name);
  log_add(&r->log, "build plan \"%s\" (%s), %zu step(s), on a throwaway overlay of the snapshot",
          j->plan.bp_name, bp_uri, j->plan.nsteps);
  if (run_plan(t, r, e) < 0) return -1;
  int64_t t_plan = util_mono_ms();
  log_add(&r->log, "build plan done in %.2f s; %llu bytes changed in the overlay",
          (double)(t_plan - t0) / 1000.0, (unsigned long long)vol_allocated(r->overlay));

  /* 2: the golden volume */
  task_progress(t, PCT_PLAN, "Writing golden image \"%s\"", j->name);
  j->pct_lo = PCT_PLAN;
  j->pct_hi = PCT_COPIED;
  if (image_stream_open(j->ctx.volumes, j->id, IMAGE_RAW, &r->stream, e) < 0 ||
      image_stream_from_vol(r->stream, r->overlay, j->ctx.stopping, progress, j, e) < 0)
    return -1;
  j->pct_lo = PCT_COPIED;
  j->pct_hi = PCT_USABLE;
  task_progress(t, PCT_COPIED, "Committing golden image \"%s\"", j->name);
  struct image_info info;
  memset(&info, 0, sizeof info);
  if (image_stream_commit(r->stream, progress, j, &info, e) < 0) return -1;
  int64_t t_commit = util_mono_ms();
  /* The snapshot is no longer needed: the live volume's writes stop paying
   * for copy-before-write, and the overlay's memory goes. */
  vol_close(r->overlay);
  r->overlay = NULL;
  vol_close(j->snap);
  j->snap = NULL;
  /* From here on the golden volume exists: it goes again on failure. */
  int rc = 0;
  uint64_t quota = j->ctx.quota;
  if (quota && golden_allocated_total(j->ctx.store) + info.allocated > quota) {
    err_set(e, 413, "QUOTA_EXCEEDED",
            "the captured image takes %llu bytes, which would exceed the storage quota of %llu "
            "bytes",
            (unsigned long long)info.allocated, (unsigned long long)quota);
    err_action(e, "Delete golden images that are no longer needed, or raise --storage-quota.");
    rc = -1;
  }
  if (rc == 0) {
    log_add(&r->log,
            "golden volume written and committed in %.2f s: %llu bytes, %llu allocated, "
            "crc32 %08x",
            (double)(t_commit - t_plan) / 1000.0, (unsigned long long)info.size,
            (unsigned long long)info.allocated, info.crc32);
    log_add(&r->log, "golden image \"%s\" created (%s); usable %.2f s after the capture started",
            j->name, gi_uri, (double)(t_commit - t0) / 1000.0);
    struct golden_new g = {.id = j->id,
                           .name = j->name,
                           .description = j->description,
                           .format = "capture",
                           .size = info.size,
                           .allocated = info.allocated,
                           .sha256 = info.sha256,
                           .crc32 = info.crc32,
                           .member = j->id,
                           .log = r->log,
                           .os_volume_uri = j->vol_uri,
                           .os_volume_name = j->vol_name,
                           .build_plan_uri = bp_uri,
                           .build_plan_name = j->plan.bp_name};
    rc = golden_create(j->ctx.store, &g, NULL, e);
  }
  if (rc < 0) {
    struct err ve;
    err_init(&ve);
    if (vol_golden_delete(j->ctx.volumes, j->id, &ve) < 0)
      log_error("capture", "cannot remove golden volume %s: %s", j->id, ve.message);
    err_clear(&ve);
    return -1;
  }
  log_info("capture",
           "golden image \"%s\" (%s) captured from OS volume \"%s\": %llu bytes, %llu "
           "allocated",
           j->name, j->id, j->vol_name, (unsigned long long)info.size,
           (unsigned long long)info.allocated);

  /* 3: the SHA-256, by a follow-up task unless already done */
  json_t *data =
      json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "type", "GoldenImageCapture",
                "goldenImageUri", gi_uri, "osVolumeUri", j->vol_uri, "buildPlanUri", bp_uri, "size",
                (json_int_t)info.size, "allocatedBytes", (json_int_t)info.allocated, "checkSum",
                info.sha256, "checkSumState", info.sha256[0] ? "OK" : "Pending");
  if (!data) return oom(e);
  if (!info.sha256[0]) {
    struct err ce;
    err_init(&ce);
    struct image_stream *s = r->stream;
    r->stream = NULL; /* the follow-up task's now */
    json_t *ct = j->ctx.checksum ? j->ctx.checksum(j->ctx.checksum_arg, j->id, j->name, s, &ce)
                                 : (image_stream_close(s), NULL);
    const char *ct_uri = json_string_value(json_object_get(ct, "uri"));
    if (ct_uri) {
      json_object_set_new(data, "checksumTaskUri", json_string(ct_uri));
    } else {
      log_warn("capture",
               "golden image \"%s\": cannot start its SHA-256 (%s); it stays Pending "
               "until the next start",
               j->name, ce.message[0] ? ce.message : "no checksum task");
    }
    json_decref(ct);
    err_clear(&ce);
  }
  char line[600];
  snprintf(line, sizeof line, "Captured golden image \"%.200s\" from OS volume \"%.200s\"", j->name,
           j->vol_name);
  task_set_output(t, data, line);
  if (info.sha256[0])
    task_progress(t, 100, "Captured golden image \"%s\": %llu bytes, sha256 %s", j->name,
                  (unsigned long long)info.size, info.sha256);
  else
    task_progress(t, 100,
                  "Captured golden image \"%s\": %llu bytes, usable; its SHA-256 is being "
                  "computed by the task Compute checksum",
                  j->name, (unsigned long long)info.size);
  return 0;
}

static int capture_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (j->ctx.enter && j->ctx.enter(e) < 0) return -1;
  j->task = t;
  j->last_ms = util_mono_ms();
  struct run r = {.j = j};
  int rc = capture_work(t, j, &r, e);
  if (rc < 0) {
    log_warn("capture", "capture of OS volume \"%s\" into \"%s\" failed: %s (%s)", j->vol_name,
             j->name, e->message, e->code);
    if (!vol_golden_exists(j->ctx.volumes, j->id)) fail_output(t, &r, e);
  }
  run_cleanup(&r);
  if (j->ctx.leave) j->ctx.leave();
  return rc;
}
