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
#include "fs/fs.h"
#include "script/attr.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/vol.h"

#define BP_COLL "build-plans"
#define PS_COLL "plan-scripts"
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
  char bp_id[64];
  char *bp_name, *source_key, *source_uri, *source_name, *volume_info;
  struct vol *base;      /* read-only: the golden volume or the OS volume's snapshot */
  json_t *values;        /* name -> value substituted */
  json_t *secrets;       /* password attribute names */
  json_t *secret_values; /* their values, masked in what the result says */
  json_t *step_docs;     /* [{serial, name, content}], owns the strings of steps */
  struct script_step *steps;
  size_t nsteps;
};

static void job_free(void *p) {
  struct job *j = p;
  if (!j) return;
  free(j->bp_name);
  free(j->source_key);
  free(j->source_uri);
  free(j->source_name);
  free(j->volume_info);
  vol_close(j->base);
  json_decref(j->values);
  json_decref(j->secrets);
  json_decref(j->secret_values);
  json_decref(j->step_docs);
  free(j->steps);
  free(j);
}

/* ---- the request ------------------------------------------------------------------ */
static json_t *find_by_name(json_t *arr, const char *name) {
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    if (name && util_strcaseeq(json_string_value(json_object_get(a, "name")), name)) return a;
  }
  return NULL;
}

/* The text of a value as clients send it: strings, numbers, booleans; null = "". */
static json_t *value_text(json_t *v) {
  if (!v || json_is_null(v)) return json_string("");
  if (json_is_string(v)) return json_incref(v);
  if (json_is_integer(v)) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
    return json_string(b);
  }
  if (json_is_real(v)) {
    char b[64];
    snprintf(b, sizeof b, "%.17g", json_real_value(v));
    return json_string(b);
  }
  if (json_is_boolean(v)) return json_string(json_is_true(v) ? "true" : "false");
  return NULL;
}

static void violation(json_t *v, const char *code, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void violation(json_t *v, const char *code, const char *action, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_array_append_new(v, err_object(code, msg, action));
}

/* The given values as [{"name","value"}] (strings); problems of shape go to
 * `violations`. `in` is an array of {"name","value"} or an object name ->
 * value; absent/null = none. NULL when `in` is neither (e set). */
static json_t *given_values(json_t *in, json_t *violations, struct err *e) {
  json_t *out = json_array();
  if (!out) {
    oom(e);
    return NULL;
  }
  if (!in || json_is_null(in)) return out;
  const char *act = "Give each attribute as {\"name\": ..., \"value\": ...}.";
  if (json_is_object(in)) {
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
      json_t *t = value_text(v);
      if (!t)
        violation(violations, "INVALID_ATTRIBUTE", act,
                  "attribute \"%.200s\": the value must be a string, a number or a boolean", k);
      else
        json_array_append_new(out, json_pack("{s:s, s:o}", "name", k, "value", t));
    }
    return out;
  }
  if (!json_is_array(in) || json_array_size(in) > 1000) {
    json_decref(out);
    err_set(e, 400, "INVALID_BODY",
            "\"customAttributes\" must be an array of {\"name\",\"value\"} (at most 1000) or an "
            "object of name: value");
    return NULL;
  }
  size_t i;
  json_t *a;
  json_array_foreach(in, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    json_t *t = json_is_object(a) ? value_text(json_object_get(a, "value")) : NULL;
    if (!n || !*n || !t) {
      json_decref(t);
      violation(violations, "INVALID_ATTRIBUTE", act,
                "customAttributes[%zu] must be {\"name\": string, \"value\": string, number or "
                "boolean}",
                i);
      continue;
    }
    if (find_by_name(out, n)) {
      json_decref(t);
      violation(violations, "INVALID_ATTRIBUTE", "Give each attribute once.",
                "attribute \"%.200s\" is given twice", n);
      continue;
    }
    json_array_append_new(out, json_pack("{s:s, s:o}", "name", n, "value", t));
  }
  return out;
}

/* Do the scripts use "n.sub" tokens, making n a NIC attribute? */
static int derived_nic(json_t *derived, const char *n) {
  size_t i, len = strlen(n);
  json_t *a;
  json_array_foreach(derived, i, a) {
    const char *d = json_string_value(json_object_get(a, "name"));
    if (d && len && strncasecmp(d, n, len) == 0 && d[len] == '.') return 1;
  }
  return 0;
}

/* Is `n` an attribute the build plan or its scripts know? "Name.sub" is one
 * when the scripts use it or Name is a declared NIC. */
static int known_attribute(json_t *bpdecls, json_t *derived, const char *n) {
  if (find_by_name(bpdecls, n) || find_by_name(derived, n) || derived_nic(derived, n)) return 1;
  const char *dot = strchr(n, '.');
  if (!dot) return 0;
  char base[256];
  snprintf(base, sizeof base, "%.*s", (int)(dot - n), n);
  json_t *d = find_by_name(bpdecls, base);
  return d && util_strcaseeq(json_string_value(json_object_get(d, "type")), "nic");
}

/* The steps of the build plan and the attributes its scripts derive. */
static int load_steps(struct job *j, json_t *bp, json_t *derived, struct err *e) {
  json_t *bs = json_object_get(bp, "buildStep");
  j->step_docs = json_array();
  j->steps = calloc(json_array_size(bs) + 1, sizeof *j->steps);
  if (!j->step_docs || !j->steps) return oom(e);
  size_t i;
  json_t *st;
  json_array_foreach(bs, i, st) {
    const char *uri = json_string_value(json_object_get(st, "planScriptUri"));
    const char *id = uri && strncmp(uri, "/rest/" PS_COLL "/", 19) == 0 ? uri + 19 : uri;
    struct store_entry *ps = id ? store_get(j->ctx.store, PS_COLL, id) : NULL;
    if (!ps) {
      err_set(e, 400, "PLAN_SCRIPT_NOT_FOUND",
              "build plan \"%.200s\": step %zu names plan script \"%.200s\", which does not exist",
              j->bp_name, i + 1, uri ? uri : "");
      return -1;
    }
    const char *content = json_string_value(json_object_get(ps->doc, "content"));
    json_t *serial = json_object_get(st, "serialNumber");
    char sbuf[32];
    if (json_is_integer(serial))
      snprintf(sbuf, sizeof sbuf, "%lld", (long long)json_integer_value(serial));
    else
      snprintf(sbuf, sizeof sbuf, "%.20s", json_string_value(serial) ?: "");
    json_t *doc = json_pack("{s:s, s:s, s:s}", "serial", sbuf, "name", ps->name ? ps->name : id,
                            "content", content ? content : "");
    json_t *d = attr_derive(content ? content : "");
    store_entry_release(ps);
    if (!doc || !d || json_array_extend(derived, d) < 0 ||
        json_array_append_new(j->step_docs, doc) < 0) {
      json_decref(d);
      return oom(e);
    }
    json_decref(d);
    j->steps[j->nsteps].serial = json_string_value(json_object_get(doc, "serial"));
    j->steps[j->nsteps].name = json_string_value(json_object_get(doc, "name"));
    j->steps[j->nsteps].content = json_string_value(json_object_get(doc, "content"));
    j->nsteps++;
  }
  return 0;
}

/* Merge and check the attributes as deployment plans do: every given name
 * must be known, every value given or set must satisfy its declaration. All
 * problems in one 400 INVALID_ATTRIBUTES. Fills the values substituted
 * (non-empty ones: an empty value lets a token's own default apply) and the
 * password names and values. */
static int attributes(struct job *j, json_t *bp, json_t *derived, json_t *given_in, struct err *e) {
  json_t *violations CLEANUP_JSON = json_array();
  if (!violations) return oom(e);
  json_t *given CLEANUP_JSON = given_values(given_in, violations, e);
  if (!given) return -1;
  json_t *bpdecls = json_object_get(bp, "customAttributes");
  size_t i;
  json_t *a;
  json_array_foreach(given, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    if (!known_attribute(bpdecls, derived, n))
      violation(violations, "UNKNOWN_ATTRIBUTE",
                "Remove the attribute or declare it in the build plan.",
                "attribute \"%.200s\" is not declared by build plan \"%.150s\" or its plan scripts",
                n, j->bp_name);
  }
  json_t *merged CLEANUP_JSON = attr_merge(derived, bpdecls, NULL, given);
  if (!merged) return oom(e);
  j->values = json_object();
  j->secrets = json_array();
  j->secret_values = json_array();
  if (!j->values || !j->secrets || !j->secret_values) return oom(e);
  json_array_foreach(merged, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    const char *type = json_string_value(json_object_get(a, "type"));
    const char *v = json_string_value(json_object_get(a, "value"));
    if (!n) continue;
    if (util_strcaseeq(type, "nic")) {
      json_t *nv = json_object_get(a, "nicValues");
      if (json_object_size(nv)) attr_value_check(a, NULL, nv, violations);
      const char *sub;
      json_t *sv;
      json_object_foreach(nv, sub, sv) {
        char key[600];
        snprintf(key, sizeof key, "%s.%s", n, sub);
        if (json_string_length(sv)) json_object_set(j->values, key, sv);
      }
      continue;
    }
    if (v && *v) {
      attr_value_check(a, v, NULL, violations);
      json_object_set_new(j->values, n, json_string(v));
    }
    if (util_strcaseeq(type, "password")) {
      json_array_append_new(j->secrets, json_string(n));
      if (v && *v) json_array_append_new(j->secret_values, json_string(v));
    }
  }
  if (json_array_size(violations) > 0) {
    err_set(e, 400, "INVALID_ATTRIBUTES",
            "build plan validation: %zu custom attribute problem(s): %s",
            json_array_size(violations),
            json_string_value(json_object_get(json_array_get(violations, 0), "message")));
    e->nested = json_incref(violations);
    return -1;
  }
  return 0;
}

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
  json_t *derived = json_array();
  json_t *source_doc = NULL;
  json_t *task = NULL;
  if (!j || !derived) {
    oom(e);
    goto out;
  }
  j->ctx = *c;
  snprintf(j->bp_id, sizeof j->bp_id, "%s", bp->id);
  if (!(j->bp_name = strdup(bp->name ? bp->name : bp->id))) {
    oom(e);
    goto out;
  }
  if (load_steps(j, bp->doc, derived, e) < 0 ||
      attributes(j, bp->doc, derived, json_object_get(body, "customAttributes"), e) < 0)
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
  char uri[96];
  snprintf(uri, sizeof uri, "/rest/%s/%s", BP_COLL, j->bp_id);
  json_t *assoc = json_pack("{s:s, s:s, s:s, s:s}", "resourceUri", uri, "resourceName", j->bp_name,
                            "resourceCategory", BP_COLL, "associationType", "MANAGED_BY");
  task = task_submit(c->tasks, "Validate", owner, assoc, validate_run, j, job_free, e);
  json_decref(assoc);
  j = NULL; /* the task owns it (freed already when task_submit failed) */
out:
  job_free(j);
  json_decref(derived);
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
 * last 1/4 (a ring), where a failure is. */
#define LOG_HEAD (VALIDATE_LOG_MAX / 4 * 3)
#define LOG_TAIL (VALIDATE_LOG_MAX / 4)
struct logcap {
  char *head;
  size_t head_len;
  char *ring;
  size_t ring_pos;
  int wrapped;
  uint64_t total;
};

static void log_take(void *opaque, const char *text, size_t len) {
  struct logcap *l = opaque;
  l->total += len;
  if (l->head_len < LOG_HEAD && l->head) {
    size_t n = len < LOG_HEAD - l->head_len ? len : LOG_HEAD - l->head_len;
    memcpy(l->head + l->head_len, text, n);
    l->head_len += n;
    text += n;
    len -= n;
  }
  while (len > 0 && l->ring) {
    size_t n = len < LOG_TAIL - l->ring_pos ? len : LOG_TAIL - l->ring_pos;
    memcpy(l->ring + l->ring_pos, text, n);
    l->ring_pos += n;
    text += n;
    len -= n;
    if (l->ring_pos == LOG_TAIL) {
      l->ring_pos = 0;
      l->wrapped = 1;
    }
  }
}

/* The log as one string (malloc'd); *cut = bytes left out. */
static char *log_text(struct logcap *l, uint64_t *cut) {
  size_t tail_len = l->wrapped ? LOG_TAIL : l->ring_pos;
  char *out = malloc(l->head_len + tail_len + 128);
  if (!out) return NULL;
  memcpy(out, l->head ? l->head : "", l->head_len);
  size_t o = l->head_len;
  *cut = 0;
  if (!l->wrapped) {
    memcpy(out + o, l->ring ? l->ring : "", l->ring_pos);
    o += l->ring_pos;
  } else {
    /* the ring from its oldest byte, starting at a line */
    size_t start = l->ring_pos, skip = 0;
    while (skip < LOG_TAIL / 2 && l->ring[(start + skip) % LOG_TAIL] != '\n')
      skip++;
    if (skip < LOG_TAIL / 2) skip++;
    *cut = l->total - l->head_len - (LOG_TAIL - skip);
    o += (size_t)snprintf(out + o, 128, "\n[... %llu bytes of the log left out ...]\n",
                          (unsigned long long)*cut);
    for (size_t i = skip; i < LOG_TAIL; i++)
      out[o++] = l->ring[(start + i) % LOG_TAIL];
  }
  out[o] = 0;
  return out;
}

/* `text` with every secret value replaced by ********; malloc'd. */
static char *masked(const char *text, json_t *secret_values) {
  char *out = strdup(text ? text : "");
  size_t i;
  json_t *sv;
  json_array_foreach(secret_values, i, sv) {
    const char *v = json_string_value(sv);
    size_t vl = v ? strlen(v) : 0;
    if (!vl || !out) continue;
    size_t n = 0;
    for (const char *p = strstr(out, v); p; p = strstr(p + vl, v))
      n++;
    if (!n) continue;
    char *m = malloc(strlen(out) + n * 8 + 1);
    if (!m) {
      free(out);
      return NULL;
    }
    char *w = m;
    const char *r = out;
    for (const char *p = strstr(r, v); p; p = strstr(r, v)) {
      memcpy(w, r, (size_t)(p - r));
      w += p - r;
      memcpy(w, "********", 8);
      w += 8;
      r = p + vl;
    }
    strcpy(w, r);
    free(out);
    out = m;
  }
  return out;
}

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
  r->log.head = malloc(LOG_HEAD);
  r->log.ring = malloc(LOG_TAIL);
  if (!r->workdir || !r->log.head || !r->log.ring) return oom(e);
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
  free(r->log.head);
  free(r->log.ring);
}

static int validate_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  struct run r = {.j = j};
  int64_t t0 = util_mono_ms();
  task_progress(t, 5, "Validating build plan \"%s\" (%zu step(s)) on a throwaway overlay of %s",
                j->bp_name, j->nsteps, j->source_name);
  if (run_prepare(&r, e) < 0) {
    run_cleanup(&r);
    return -1;
  }
  /* 2: the plan */
  struct script_opts o = {.workdir = r.workdir,
                          .log = log_take,
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
  script_session_set_attributes(s, j->values, j->secrets);
  task_progress(t, 10, "Running the build plan");
  if (script_session_run_plan(s, j->steps, j->nsteps, &pe) < 0) failed = 1;
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
  char *log = log_text(&r.log, &cut);
  char *msg = failed ? masked(pe.message, j->secret_values) : NULL;
  json_t *res = rc < 0 || !log || (failed && !msg) ? NULL : json_object();
  if (res) {
    json_object_set_new(res, "type", json_string("BuildPlanValidation"));
    json_object_set_new(res, "status", json_string(failed ? "Failed" : "Succeeded"));
    char bpuri[96];
    snprintf(bpuri, sizeof bpuri, "/rest/%s/%s", BP_COLL, j->bp_id);
    json_object_set_new(res, "buildPlanUri", json_string(bpuri));
    json_object_set_new(res, "buildPlanName", json_string(j->bp_name));
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
      snprintf(line, sizeof line, "Build plan \"%.200s\" failed: %.1000s", j->bp_name, msg);
    else
      snprintf(line, sizeof line, "Build plan \"%.200s\" succeeded: %zu change(s)", j->bp_name,
               nchanges);
    task_set_output(t, res, line);
    if (rc == 0) task_progress(t, 100, "%s", line);
  }
  free(msg);
  err_clear(&pe);
  run_cleanup(&r);
  return rc;
}
