/* validate.c — POST /rest/build-plans/{id}/validate: an OS build plan run as
 * a deployment would run it, but on a throwaway overlay, and the files it
 * changed reported (HPE's AMVM without a VM).
 *
 * The request is checked completely before a task exists (the body, the
 * build plan and its plan scripts, the source, every attribute problem at
 * once); the source is opened then too (a golden volume, or a snapshot of
 * the OS volume taken at that moment), so the task sees the disk as it was
 * when it was asked for. The task:
 *   1. puts an overlay (vol_overlay_open, VALIDATE_OVERLAY_MAX) over the
 *      source and opens the disk on it (fs_disk_open);
 *   2. runs the steps in a session (script_session_run_plan: serialNumber
 *      order, the merged attribute values, passwords masked) in a fresh work
 *      directory DATA/volumes/validate/<id>.tmp, capturing its log;
 *   3. compares every filesystem of the disk (list-filesystems, paired by
 *      device name, else by filesystem UUID: a vgrename) on the source
 *      against the overlay, file by file: added, removed, modified (content,
 *      size, mode, owner, symlink target, type; times alone);
 *   4. completes with the result in the task's "data" — Completed also when
 *      the plan failed ("status": "Failed"): the validation itself worked.
 *      Only validation's own limits end the task in Error (the overlay full).
 * The overlay, the source and the work directory are gone afterwards. */
#include "deploy/validate.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "artifact/artifact.h"
#include "deploy/plan_int.h"
#include "fs/fs.h"
#include "script/attr.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/vol.h"

#define BP_COLL "build-plans"
#define COMPARE_CHUNK (256u << 10)
#define MAX_DEPTH 256
#define PATH_MAX_LEN 4096

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* ---- the job ------------------------------------------------------------------- */
struct job {
  struct validate_ctx ctx;
  struct plan plan; /* the build plan's steps and attribute values (plan_int.h) */
  char *source_key, *source_uri, *source_name, *volume_info;
  struct vol *base; /* read-only: the golden volume or the OS volume's snapshot */
};

static void job_free(void *p) {
  struct job *j = p;
  if (!j) return;
  plan_clear(&j->plan);
  free(j->source_key);
  free(j->source_uri);
  free(j->source_name);
  free(j->volume_info);
  vol_close(j->base);
  free(j);
}

/* ---- the request ------------------------------------------------------------------ */
static const char *const BODY_KEYS[] = {"goldenImageUri", "goldenImageURI",   "osVolumeUri",
                                        "osVolumeURI",    "customAttributes", NULL};

/* The source the body names: its kind and reference. */
static int body_source(json_t *body, enum validate_source *k, const char **ref, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY",
            "the body must be a JSON object: {\"goldenImageUri\" or \"osVolumeUri\", "
            "\"customAttributes\"}");
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    int ok = 0;
    for (const char *const *b = BODY_KEYS; *b && !ok; b++)
      ok = is(key, *b);
    if (!ok) {
      err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in the body", key);
      err_action(e, "Send goldenImageUri or osVolumeUri, and customAttributes.");
      return -1;
    }
  }
  const char *names[2][2] = {{"goldenImageUri", "goldenImageURI"}, {"osVolumeUri", "osVolumeURI"}};
  const char *got[2] = {NULL, NULL};
  for (int s = 0; s < 2; s++)
    for (int n = 0; n < 2; n++) {
      json_t *x = json_object_get(body, names[s][n]);
      if (!x || json_is_null(x) || (json_is_string(x) && !json_string_length(x))) continue;
      if (!json_is_string(x)) {
        err_set(e, 400, "INVALID_BODY", "\"%s\" must be a string (a URI, id or name)", names[s][n]);
        return -1;
      }
      got[s] = json_string_value(x);
    }
  if (!got[0] == !got[1]) {
    err_set(e, 400, "INVALID_BODY",
            got[0] ? "give either \"goldenImageUri\" or \"osVolumeUri\", not both"
                   : "the body needs \"goldenImageUri\" (a golden image's URI, id or name) or "
                     "\"osVolumeUri\" (an OS volume's)");
    return -1;
  }
  *k = got[0] ? VALIDATE_GOLDEN_IMAGE : VALIDATE_OS_VOLUME;
  *ref = got[0] ? got[0] : got[1];
  return 0;
}

static void human_size(uint64_t n, char *out, size_t size) {
  static const char *const u[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    i++;
  }
  snprintf(out, size, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static int validate_run(struct task *t, void *arg, struct err *e);
static void clean_leftovers(struct vol_store *vs);

json_t *validate_submit(const struct validate_ctx *c, const char *build_plan_id, json_t *body,
                        const char *owner, struct err *e) {
  enum validate_source k;
  const char *ref;
  if (body_source(body, &k, &ref, e) < 0) return NULL;
  struct store_entry *bp = store_get(c->store, BP_COLL, build_plan_id);
  if (!bp) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "build plan \"%.100s\" does not exist", build_plan_id);
    return NULL;
  }
  struct job *j = calloc(1, sizeof *j);
  json_t *source_doc = NULL;
  json_t *task = NULL;
  if (!j) {
    oom(e);
    goto out;
  }
  j->ctx = *c;
  if (plan_load(&j->plan, c->store, bp->id, bp->name, bp->doc, e) < 0 ||
      plan_attributes(&j->plan, "build plan validation", json_object_get(body, "customAttributes"),
                      NULL, NULL, e) < 0)
    goto out;
  if (validate_source_open(c, k, ref, &j->base, &source_doc, e) < 0) {
    if (e->status == 404) {
      char msg[sizeof e->message];
      snprintf(msg, sizeof msg, "%s", e->message);
      err_clear(e);
      err_set(e, 400, k == VALIDATE_GOLDEN_IMAGE ? "GOLDEN_IMAGE_NOT_FOUND" : "OS_VOLUME_NOT_FOUND",
              "%s", msg);
    }
    goto out;
  }
  const char *name = json_string_value(json_object_get(source_doc, "name"));
  char size[32];
  human_size(vol_size(j->base), size, sizeof size);
  j->source_key = strdup(k == VALIDATE_GOLDEN_IMAGE ? "goldenImageUri" : "osVolumeUri");
  j->source_uri = strdup(json_string_value(json_object_get(source_doc, "uri")) ?: "");
  j->source_name = strdup(name ? name : "");
  j->volume_info =
      util_strdup_printf("throwaway overlay of %s \"%s\" (%s)%s",
                         k == VALIDATE_GOLDEN_IMAGE ? "golden image" : "a snapshot of OS volume",
                         name ? name : "", size, " — validation: nothing is written to it");
  if (!j->source_key || !j->source_uri || !j->source_name || !j->volume_info) {
    oom(e);
    goto out;
  }
  clean_leftovers(c->volumes);
  json_t *assoc = task_assoc(BP_COLL, j->plan.bp_id, j->plan.bp_name);
  task = task_submit(c->tasks, "Validate", owner, assoc, validate_run, j, job_free, e);
  json_decref(assoc);
  j = NULL; /* the task owns it (freed already when task_submit failed) */
out:
  job_free(j);
  json_decref(source_doc);
  store_entry_release(bp);
  return task;
}

/* ---- work directories ------------------------------------------------------------ */
/* A validation's work directory is DATA/volumes/validate/<uuid>.tmp, so that
 * sandbox_cleanup("DATA/volumes/validate/<uuid>"), which removes
 * "<its argument>.tmp" the hardened way (never following links, any depth),
 * removes it; the session removes the work directory's private /tmp
 * (<uuid>.tmp.tmp) itself. */
static char *validate_dir(struct vol_store *vs) {
  return util_strdup_printf("%s/validate", vol_store_dir(vs));
}

static pthread_mutex_t leftovers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vol_store *leftovers_done;

/* What a stop left behind, removed before this process's first validation
 * on the volume store (none of its own can be running then). */
static void clean_leftovers(struct vol_store *vs) {
  if (!vs) return;
  pthread_mutex_lock(&leftovers_lock);
  if (leftovers_done == vs) {
    pthread_mutex_unlock(&leftovers_lock);
    return;
  }
  leftovers_done = vs;
  CLEANUP_FREE char *dir = validate_dir(vs);
  DIR *d = dir ? opendir(dir) : NULL;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n <= 4 || strcmp(de->d_name + n - 4, ".tmp") != 0) continue;
    CLEANUP_FREE char *base = util_strdup_printf("%s/%.*s", dir, (int)(n - 4), de->d_name);
    struct err e;
    err_init(&e);
    if (base && sandbox_cleanup(base, &e) < 0) log_warn("validate", "%s", e.message);
    err_clear(&e);
  }
  if (d) closedir(d);
  pthread_mutex_unlock(&leftovers_lock);
}

/* ---- the log ------------------------------------------------------------------------ */
/* The session's log, bounded: its first 3/4 of VALIDATE_LOG_MAX and its
 * last 1/4 (plan_int.h's logcap), where a failure is. */
#define LOG_HEAD (VALIDATE_LOG_MAX / 4 * 3)
#define LOG_TAIL (VALIDATE_LOG_MAX / 4)

/* ---- the diff --------------------------------------------------------------------------- */
struct diff {
  json_t *changes;  /* the first VALIDATE_CHANGES_MAX */
  json_t *skipped;  /* devices not compared */
  json_t *warnings; /* what could not be read */
  size_t added, removed, modified;
  uint64_t budget; /* file bytes left to compare */
  int all_compared;
  char *buf_a, *buf_b;
  char *path; /* PATH_MAX_LEN + 2 bytes: the path being compared */
};

static const char *type_name(uint32_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "symlink";
  return "special";
}

static void note(struct diff *d, const char *dev, const char *path, const char *what,
                 const char *why) {
  if (json_array_size(d->warnings) < 100)
    json_array_append_new(d->warnings, json_pack("{s:s, s:s, s:s}", "device", dev, "path", path,
                                                 "message", what, "reason", why));
}

/* One change. size/old_size < 0: not given. */
static void change(struct diff *d, const char *dev, const char *path, const char *kind,
                   const char *type, int64_t size, int64_t old_size, const char *details) {
  if (is(kind, "added"))
    d->added++;
  else if (is(kind, "removed"))
    d->removed++;
  else
    d->modified++;
  if (json_array_size(d->changes) >= VALIDATE_CHANGES_MAX) return;
  json_t *c =
      json_pack("{s:s, s:s, s:s, s:s}", "device", dev, "path", path, "change", kind, "type", type);
  if (!c) return;
  if (size >= 0) json_object_set_new(c, "size", json_integer(size));
  if (old_size >= 0) json_object_set_new(c, "oldSize", json_integer(old_size));
  json_object_set_new(c, "details", json_string(details ? details : ""));
  json_array_append_new(d->changes, c);
}

static int cmp_dirent(const void *a, const void *b) {
  return strcmp(((const struct fs_dirent *)a)->name, ((const struct fs_dirent *)b)->name);
}

/* d->path += "/name" (or "name" after the root); the old length, or -1 when
 * it would be too long. */
static long path_push(struct diff *d, const char *name) {
  size_t len = strlen(d->path), n = strlen(name);
  int slash = !(len == 1 && d->path[0] == '/');
  if (len + slash + n > PATH_MAX_LEN) return -1;
  if (slash) d->path[len] = '/';
  memcpy(d->path + len + slash, name, n + 1);
  return (long)len;
}

static void path_pop(struct diff *d, long len) { d->path[len > 0 ? len : 1] = 0; }

/* The sorted entries of a directory, or none (noted) when it cannot be read. */
static int list_dir(struct diff *d, struct fs *f, const char *dev, struct fs_dirent **ents,
                    size_t *n) {
  struct err e;
  err_init(&e);
  *ents = NULL;
  *n = 0;
  if (f->ops->readdir(f, d->path, ents, n, &e) < 0) {
    note(d, dev, d->path, "cannot list the directory", e.message);
    err_clear(&e);
    return -1;
  }
  if (*n > 1) qsort(*ents, *n, sizeof **ents, cmp_dirent);
  return 0;
}

/* d->path and everything under it, as added (present in `f` only) or removed. */
static void whole_tree(struct diff *d, struct fs *f, const char *dev, const char *kind, int depth) {
  struct err e;
  err_init(&e);
  struct fs_stat st;
  if (f->ops->lstat(f, d->path, &st, &e) < 0) {
    note(d, dev, d->path, "cannot stat", e.message);
    err_clear(&e);
    return;
  }
  int added = is(kind, "added");
  change(d, dev, d->path, kind, type_name(st.mode), added ? (int64_t)st.size : -1,
         added ? -1 : (int64_t)st.size, "");
  if (!S_ISDIR(st.mode) || depth >= MAX_DEPTH) return;
  struct fs_dirent *ents;
  size_t n;
  if (list_dir(d, f, dev, &ents, &n) < 0) return;
  for (size_t i = 0; i < n; i++) {
    long old = path_push(d, ents[i].name);
    if (old < 0) continue;
    whole_tree(d, f, dev, kind, depth + 1);
    path_pop(d, old);
  }
  fs_dirents_free(ents, n);
}

/* Do two regular files of the same size hold the same bytes? 1 yes, 0 no,
 * -1 unknown (the budget is spent, or a read failed: noted). */
static int same_content(struct diff *d, struct fs *a, struct fs *b, const char *dev,
                        uint64_t size) {
  if (size > d->budget) {
    d->all_compared = 0;
    return -1;
  }
  d->budget -= size;
  struct err e;
  err_init(&e);
  for (uint64_t off = 0; off < size;) {
    size_t want = size - off < COMPARE_CHUNK ? (size_t)(size - off) : COMPARE_CHUNK;
    size_t ga = 0, gb = 0;
    if (a->ops->read(a, d->path, d->buf_a, want, off, &ga, &e) < 0 ||
        b->ops->read(b, d->path, d->buf_b, want, off, &gb, &e) < 0) {
      note(d, dev, d->path, "cannot read the file", e.message);
      err_clear(&e);
      return -1;
    }
    if (ga != gb || memcmp(d->buf_a, d->buf_b, ga) != 0) return 0;
    if (ga == 0) break;
    off += ga;
  }
  return 1;
}

static void add_detail(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_detail(char *buf, size_t size, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len && len + 2 < size) {
    memcpy(buf + len, ", ", 3);
    len += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, size - len, fmt, ap);
  va_end(ap);
}

static void compare_tree(struct diff *d, struct fs *a, struct fs *b, const char *dev, int depth);

/* d->path exists on both sides: compare it (and below it). */
static void compare_entry(struct diff *d, struct fs *a, struct fs *b, const char *dev, int depth) {
  struct err e;
  err_init(&e);
  struct fs_stat sa, sb;
  if (a->ops->lstat(a, d->path, &sa, &e) < 0 || b->ops->lstat(b, d->path, &sb, &e) < 0) {
    note(d, dev, d->path, "cannot stat", e.message);
    err_clear(&e);
    return;
  }
  uint32_t ta = sa.mode & S_IFMT, tb = sb.mode & S_IFMT;
  if (ta != tb) { /* replaced by something else */
    char det[160];
    snprintf(det, sizeof det, "type %s -> %s", type_name(sa.mode), type_name(sb.mode));
    change(d, dev, d->path, "modified", type_name(sb.mode), (int64_t)sb.size, (int64_t)sa.size,
           det);
    if (depth >= MAX_DEPTH) return;
    struct fs_dirent *ents;
    size_t n;
    struct fs *side = S_ISDIR(sa.mode) ? a : b;
    if (!S_ISDIR(sa.mode) && !S_ISDIR(sb.mode)) return;
    if (list_dir(d, side, dev, &ents, &n) < 0) return;
    for (size_t i = 0; i < n; i++) {
      long old = path_push(d, ents[i].name);
      if (old < 0) continue;
      whole_tree(d, side, dev, side == a ? "removed" : "added", depth + 1);
      path_pop(d, old);
    }
    fs_dirents_free(ents, n);
    return;
  }
  char det[1200] = "";
  int content = 0;
  if (S_ISREG(sa.mode)) {
    if (sa.size != sb.size)
      content = 1;
    else if (sa.size > 0) {
      int same = same_content(d, a, b, dev, sa.size);
      /* not compared: the modification time decides (rsync's quick check) */
      content = same == 0 || (same < 0 && (sa.mtime != sb.mtime || sa.mtime_ns != sb.mtime_ns));
    }
    if (content) add_detail(det, sizeof det, "content");
    if (sa.size != sb.size)
      add_detail(det, sizeof det, "size %llu -> %llu", (unsigned long long)sa.size,
                 (unsigned long long)sb.size);
  } else if (S_ISLNK(sa.mode)) {
    char *la = NULL, *lb = NULL;
    if (a->ops->readlink(a, d->path, &la, &e) == 0 && b->ops->readlink(b, d->path, &lb, &e) == 0 &&
        strcmp(la, lb) != 0)
      add_detail(det, sizeof det, "target %.500s -> %.500s", la, lb);
    err_clear(&e);
    free(la);
    free(lb);
  }
  if ((sa.mode & 07777) != (sb.mode & 07777))
    add_detail(det, sizeof det, "mode %04o -> %04o", sa.mode & 07777, sb.mode & 07777);
  if (sa.uid != sb.uid || sa.gid != sb.gid)
    add_detail(det, sizeof det, "owner %u:%u -> %u:%u", sa.uid, sa.gid, sb.uid, sb.gid);
  if (!det[0] && !S_ISDIR(sa.mode) && (sa.mtime != sb.mtime || sa.mtime_ns != sb.mtime_ns))
    add_detail(det, sizeof det, "modification time");
  if (det[0])
    change(d, dev, d->path, "modified", type_name(sb.mode),
           S_ISDIR(sb.mode) ? -1 : (int64_t)sb.size, S_ISDIR(sa.mode) ? -1 : (int64_t)sa.size, det);
  if (S_ISDIR(sa.mode) && depth < MAX_DEPTH) compare_tree(d, a, b, dev, depth + 1);
}

/* The entries of directory d->path on both sides, merged by name. */
static void compare_tree(struct diff *d, struct fs *a, struct fs *b, const char *dev, int depth) {
  struct fs_dirent *ea, *eb;
  size_t na, nb;
  if (list_dir(d, a, dev, &ea, &na) < 0) return;
  if (list_dir(d, b, dev, &eb, &nb) < 0) {
    fs_dirents_free(ea, na);
    return;
  }
  size_t i = 0, k = 0;
  while (i < na || k < nb) {
    int c = i >= na ? 1 : k >= nb ? -1 : strcmp(ea[i].name, eb[k].name);
    const char *name = c <= 0 ? ea[i].name : eb[k].name;
    long old = path_push(d, name);
    if (old >= 0) {
      if (c < 0)
        whole_tree(d, a, dev, "removed", depth);
      else if (c > 0)
        whole_tree(d, b, dev, "added", depth);
      else
        compare_entry(d, a, b, dev, depth);
      path_pop(d, old);
    } else {
      note(d, dev, name, "path too long", "not compared");
    }
    if (c <= 0) i++;
    if (c >= 0) k++;
  }
  fs_dirents_free(ea, na);
  fs_dirents_free(eb, nb);
}

static void skip(struct diff *d, const char *dev, const char *type, const char *reason) {
  json_array_append_new(
      d->skipped, json_pack("{s:s, s:s, s:s}", "device", dev, "type", type, "reason", reason));
}

/* One filesystem: `va` on the source, `vb` on the overlay. */
static void compare_device(struct diff *d, struct vol *va, struct vol *vb, const char *dev,
                           const char *type) {
  struct fs *a = NULL, *b = NULL;
  struct err e;
  err_init(&e);
  if (fs_open(va, 1, &a, &e) < 0 || fs_open(vb, 1, &b, &e) < 0) {
    skip(d, dev, type, e.message);
    err_clear(&e);
    fs_close(a);
    return;
  }
  strcpy(d->path, "/");
  compare_entry(d, a, b, dev, 0);
  fs_close(a);
  fs_close(b);
}

static char *uuid_of(struct vol *v) {
  char *label = NULL, *uuid = NULL;
  fs_label_uuid(v, &label, &uuid);
  free(label);
  return uuid;
}

/* Every filesystem of disk `da` (the source) against `db` (the overlay). */
static int diff_disks(struct diff *d, struct fs_disk *da, struct fs_disk *db, struct err *e) {
  char **deva = NULL, **typa = NULL, **devb = NULL, **typb = NULL;
  int na = fs_list_filesystems(da, &deva, &typa);
  int nb = na < 0 ? -1 : fs_list_filesystems(db, &devb, &typb);
  char *matched = na >= 0 ? calloc((size_t)na + 1, 1) : NULL;
  if (na < 0 || nb < 0 || !matched) {
    fs_strv_free(deva);
    fs_strv_free(typa);
    free(matched);
    return oom(e);
  }
  for (int ib = 0; ib < nb; ib++) {
    struct err de;
    err_init(&de);
    struct vol *vb = fs_device(db, devb[ib], &de);
    int ia = -1;
    for (int i = 0; i < na && ia < 0; i++)
      if (!matched[i] && is(deva[i], devb[ib])) ia = i;
    char *ub = NULL;
    if (ia < 0 && vb && (ub = uuid_of(vb)) && *ub) { /* renamed (vgrename): the same filesystem */
      for (int i = 0; i < na && ia < 0; i++) {
        if (matched[i] || !is(typa[i], typb[ib])) continue;
        struct vol *va = fs_device(da, deva[i], &de);
        char *ua = va ? uuid_of(va) : NULL;
        if (ua && is(ua, ub)) ia = i;
        free(ua);
      }
    }
    free(ub);
    if (ia < 0) {
      change(d, devb[ib], "", "added", "device", vb ? (int64_t)vol_size(vb) : -1, -1, typb[ib]);
    } else {
      matched[ia] = 1;
      struct vol *va = fs_device(da, deva[ia], &de);
      if (!is(deva[ia], devb[ib])) {
        char det[600];
        snprintf(det, sizeof det, "renamed from %.500s", deva[ia]);
        change(d, devb[ib], "", "modified", "device", -1, -1, det);
      }
      if (!is(typa[ia], typb[ib])) {
        char det[200];
        snprintf(det, sizeof det, "filesystem %.80s -> %.80s", typa[ia], typb[ib]);
        change(d, devb[ib], "", "modified", "device", -1, -1, det);
      } else if (va && vb) {
        compare_device(d, va, vb, devb[ib], typb[ib]);
      }
    }
    err_clear(&de);
  }
  for (int i = 0; i < na; i++)
    if (!matched[i]) change(d, deva[i], "", "removed", "device", -1, -1, typa[i]);
  free(matched);
  fs_strv_free(deva);
  fs_strv_free(typa);
  fs_strv_free(devb);
  fs_strv_free(typb);
  return 0;
}

/* ---- the task ------------------------------------------------------------------------- */
struct run {
  struct job *j;
  struct vol *overlay;
  struct fs_disk *disk;
  char *base_dir; /* the work dir is base_dir + ".tmp" */
  char *workdir;
  struct logcap log;
};

/* The overlay's cap: VALIDATE_OVERLAY_MAX, or STREAMER_VALIDATE_OVERLAY_MAX
 * (bytes) from streamerd's environment (tests use a small one). */
static uint64_t overlay_cap(void) {
  const char *s = getenv("STREAMER_VALIDATE_OVERLAY_MAX");
  char *end = NULL;
  unsigned long long v = s && *s ? strtoull(s, &end, 10) : 0;
  return v > 0 && end && !*end ? (uint64_t)v : VALIDATE_OVERLAY_MAX;
}

static int run_prepare(struct run *r, struct err *e) {
  struct job *j = r->j;
  CLEANUP_FREE char *dir = validate_dir(j->ctx.volumes);
  char id[37];
  util_uuid(id);
  r->base_dir = dir ? util_strdup_printf("%s/%s", dir, id) : NULL;
  r->workdir = r->base_dir ? util_strdup_printf("%s.tmp", r->base_dir) : NULL;
  if (!r->workdir || logcap_init(&r->log, LOG_HEAD, LOG_TAIL) < 0) return oom(e);
  if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || mkdir(r->workdir, 0700) < 0) {
    err_set(e, 500, "IO_ERROR", "cannot create the work directory %s: %s", r->workdir,
            strerror(errno));
    free(r->workdir);
    r->workdir = NULL;
    return -1;
  }
  if (vol_overlay_open(j->base, overlay_cap(), &r->overlay, e) < 0 ||
      fs_disk_open(r->overlay, 0, &r->disk, e) < 0)
    return -1;
  return 0;
}

static void run_cleanup(struct run *r) {
  fs_disk_close(r->disk);
  vol_close(r->overlay);
  if (r->workdir) {
    struct err e;
    err_init(&e);
    if (sandbox_cleanup(r->base_dir, &e) < 0)
      log_warn("validate", "cannot remove %s: %s", r->workdir, e.message);
    err_clear(&e);
  }
  free(r->workdir);
  free(r->base_dir);
  logcap_free(&r->log);
}

static int validate_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  struct run r = {.j = j};
  int64_t t0 = util_mono_ms();
  task_progress(t, 5, "Validating build plan \"%s\" (%zu step(s)) on a throwaway overlay of %s",
                j->plan.bp_name, j->plan.nsteps, j->source_name);
  if (run_prepare(&r, e) < 0) {
    run_cleanup(&r);
    return -1;
  }
  /* 2: the plan */
  struct script_opts o = {.workdir = r.workdir,
                          .log = logcap_take,
                          .log_opaque = &r.log,
                          .guestfish = SCRIPT_GUESTFISH_AUTO,
                          .volume_info = j->volume_info};
  struct script_session *s = NULL;
  struct err pe;
  err_init(&pe);
  struct script_stats stats = {0};
  int failed = 0;
  if (script_session_new(r.disk, &o, &s, e) < 0) {
    run_cleanup(&r);
    return -1;
  }
  script_session_set_attributes(s, j->plan.values, j->plan.secrets);
  task_progress(t, 10, "Running the build plan");
  if (script_session_run_plan(s, j->plan.steps, j->plan.nsteps, &pe) < 0) failed = 1;
  script_session_stats(s, &stats);
  struct err ce;
  err_init(&ce);
  if (script_session_close(s, &ce) < 0 && !failed) { /* writing back what it changed failed */
    pe = ce;
    err_init(&ce);
    failed = 1;
  }
  err_clear(&ce);
  int64_t run_ms = util_mono_ms() - t0;
  fs_disk_close(r.disk);
  r.disk = NULL;
  uint64_t refused = vol_overlay_refused(r.overlay);

  /* 3: what changed */
  task_progress(t, 70, "Comparing the filesystems with the %s",
                is(j->source_key, "goldenImageUri") ? "golden image" : "OS volume");
  int64_t d0 = util_mono_ms();
  struct diff d = {.changes = json_array(),
                   .skipped = json_array(),
                   .warnings = json_array(),
                   .budget = VALIDATE_COMPARE_MAX,
                   .all_compared = 1,
                   .buf_a = malloc(COMPARE_CHUNK),
                   .buf_b = malloc(COMPARE_CHUNK),
                   .path = malloc(PATH_MAX_LEN + 2)};
  struct fs_disk *da = NULL, *db = NULL;
  int rc = 0;
  if (!d.changes || !d.skipped || !d.warnings || !d.buf_a || !d.buf_b || !d.path)
    rc = oom(e);
  else if (fs_disk_open(j->base, 1, &da, e) < 0 || fs_disk_open(r.overlay, 1, &db, e) < 0)
    rc = -1;
  else
    rc = diff_disks(&d, da, db, e);
  fs_disk_close(da);
  fs_disk_close(db);
  free(d.buf_a);
  free(d.buf_b);
  free(d.path);

  /* 4: the result */
  uint64_t cut = 0;
  char *log = logcap_text(&r.log, &cut);
  char *msg = failed ? plan_masked(pe.message, j->plan.secret_values) : NULL;
  json_t *res = rc < 0 || !log || (failed && !msg) ? NULL : json_object();
  if (res) {
    json_object_set_new(res, "type", json_string("BuildPlanValidation"));
    json_object_set_new(res, "status", json_string(failed ? "Failed" : "Succeeded"));
    char bpuri[96];
    snprintf(bpuri, sizeof bpuri, "/rest/%s/%s", BP_COLL, j->plan.bp_id);
    json_object_set_new(res, "buildPlanUri", json_string(bpuri));
    json_object_set_new(res, "buildPlanName", json_string(j->plan.bp_name));
    json_object_set_new(res, j->source_key, json_string(j->source_uri));
    json_object_set_new(res, "sourceName", json_string(j->source_name));
    if (failed)
      json_object_set_new(res, "error",
                          json_pack("{s:s, s:s}", "errorCode", pe.code, "message", msg));
    json_object_set_new(res, "log", json_string(log));
    json_object_set_new(res, "logTruncatedBytes", json_integer((json_int_t)cut));
    json_object_set_new(res, "changes", d.changes);
    json_object_set_new(res, "changeCounts",
                        json_pack("{s:I, s:I, s:I}", "added", (json_int_t)d.added, "removed",
                                  (json_int_t)d.removed, "modified", (json_int_t)d.modified));
    json_object_set_new(res, "changesTruncated",
                        json_boolean(d.added + d.removed + d.modified > VALIDATE_CHANGES_MAX));
    json_object_set_new(res, "contentsCompared", json_boolean(d.all_compared));
    json_object_set_new(res, "skipped", d.skipped);
    json_object_set_new(res, "warnings", d.warnings);
    json_object_set_new(res, "durationMs", json_integer(run_ms));
    json_object_set_new(res, "hostMs", json_integer(stats.host_ms));
    json_object_set_new(res, "diffMs", json_integer(util_mono_ms() - d0));
    json_object_set_new(res, "statements", json_integer(stats.statements));
    json_object_set_new(res, "errorsIgnored", json_integer(stats.errors_ignored));
    json_object_set_new(res, "hostCommands", json_integer(stats.host_commands));
    json_object_set_new(res, "guestfish", json_boolean(stats.delegated));
    json_object_set_new(res, "bytesWritten", json_integer((json_int_t)vol_allocated(r.overlay)));
    d.changes = d.skipped = d.warnings = NULL;
  } else if (rc == 0) {
    rc = oom(e);
  }
  json_decref(d.changes);
  json_decref(d.skipped);
  json_decref(d.warnings);
  free(log);
  size_t nchanges = d.added + d.removed + d.modified;
  if (res && refused) {
    err_set(e, 507, "VALIDATION_OVERLAY_FULL",
            "the build plan wrote more than validation keeps in memory (%llu KiB); %llu write(s) "
            "were refused, so the run is not what a deployment would do",
            (unsigned long long)(overlay_cap() >> 10), (unsigned long long)refused);
    err_action(e, "Validate on a smaller plan, or deploy to a test OS volume instead.");
    rc = -1;
  }
  if (res) {
    char line[1400];
    if (failed)
      snprintf(line, sizeof line, "Build plan \"%.200s\" failed: %.1000s", j->plan.bp_name, msg);
    else
      snprintf(line, sizeof line, "Build plan \"%.200s\" succeeded: %zu change(s)", j->plan.bp_name,
               nchanges);
    task_set_output(t, res, line);
    if (rc == 0) task_progress(t, 100, "%s", line);
  }
  free(msg);
  err_clear(&pe);
  run_cleanup(&r);
  return rc;
}
