/* bundles.c — /rest/artifact-bundles over HTTP: the collection and
 * resources (documents kept by artifact/bundle.c), uploads (golden.c's
 * streamed multipart machinery writes VOLUMES/bundles/<id>.part; the task
 * here inspects, renames to <id>.zip and records), downloads with an exact
 * Content-Length, extraction with its conflict options, rename, delete,
 * creation from selected artifacts (stoppable: stopArtifactCreate), and the
 * backups (/rest/artifact-bundles/backups: create, list, download, upload and
 * restore, restore of the stored one). Every long operation is a task with
 * progress; the format and every artifact rule are artifact/bundle.h's.
 *
 * Files: VOLUMES/bundles/<id>.zip (bundles), VOLUMES/bundles/backup-<id>.zip
 * (the backup), *.part while received or written (removed at start). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_int.h"
#include "artifact/bundle.h"
#include "deploy/deploy.h"

#define PROGRESS_MS 250 /* at most 4 percent-only task updates a second */
#define GROUP_URI "/rest/deployment-groups/" DEPLOY_GROUP_ID

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* ---- jobs: the work of a bundle task ---------------------------------------------
 * Every job is listed from its creation to its end (stopArtifactCreate finds
 * a create by its task's uri). At stop, bundle_api_fini raises `stopping` and
 * every job's stop flag (bundle.h gives up) and waits until none runs. */
enum job_op { OP_UPLOAD, OP_EXTRACT, OP_CREATE, OP_DELETE, OP_BACKUP, OP_RESTORE_FILE, OP_RESTORE };

struct job {
  struct api *api;
  enum job_op op;
  char id[37]; /* the bundle's (or backup's) id */
  char *path;  /* the received file (upload, restore of an upload): removed at the end */
  char *name, *description;
  char sha256[65];
  uint64_t size;
  int lenient;
  struct bundle_extract_opts opts; /* extract: renames owned */
  json_t *plan;                    /* create */
  struct task *task;
  char task_uri[96];
  int stop;
  int last_pct;
  int64_t last_ms;
  struct job *next;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running;
  int stopping;
  struct job *list;
} jobs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};

static struct job *job_new(struct api *a, enum job_op op, const char *id) {
  struct job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->api = a;
  j->op = op;
  snprintf(j->id, sizeof j->id, "%s", id);
  j->last_pct = -1;
  pthread_mutex_lock(&jobs.mu);
  j->next = jobs.list;
  jobs.list = j;
  pthread_mutex_unlock(&jobs.mu);
  return j;
}

/* The task's free_arg: never uses the api (it may be gone at the engine's stop). */
static void job_free(void *arg) {
  struct job *j = arg;
  if (!j) return;
  pthread_mutex_lock(&jobs.mu);
  for (struct job **p = &jobs.list; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      break;
    }
  pthread_mutex_unlock(&jobs.mu);
  if (j->path) unlink(j->path);
  free(j->path);
  free(j->name);
  free(j->description);
  json_decref(j->opts.renames);
  json_decref(j->plan);
  free(j);
}

static int job_enter(struct job *j, struct task *t, struct err *e) {
  pthread_mutex_lock(&jobs.mu);
  int stopping = jobs.stopping;
  if (!stopping) jobs.running++;
  j->task = t;
  pthread_mutex_unlock(&jobs.mu);
  if (stopping) err_set(e, 503, "SHUTTING_DOWN", "streamerd is stopping");
  j->last_ms = util_mono_ms();
  return stopping ? -1 : 0;
}

static void job_leave(void) {
  pthread_mutex_lock(&jobs.mu);
  jobs.running--;
  pthread_cond_broadcast(&jobs.cv);
  pthread_mutex_unlock(&jobs.mu);
}

/* bundle_ctx.progress: lines always, bare percentages at most 4 times a second. */
static void job_progress(void *arg, int pct, const char *line) {
  struct job *j = arg;
  if (pct > 99) pct = 99;
  if (pct < 0) pct = 0;
  if (line) {
    j->last_pct = pct;
    j->last_ms = util_mono_ms();
    task_progress(j->task, pct, "%s", line);
    return;
  }
  int64_t now = util_mono_ms();
  if (pct == j->last_pct || (now - j->last_ms < PROGRESS_MS && pct < j->last_pct + 5)) return;
  j->last_pct = pct;
  j->last_ms = now;
  task_percent(j->task, pct);
}

static struct bundle_ctx job_ctx(struct job *j) {
  struct bundle_ctx c = {.store = j->api->store,
                         .volumes = j->api->cfg.volumes,
                         .storage_quota = j->api->cfg.storage_quota,
                         .stop = &j->stop,
                         .progress = job_progress,
                         .progress_arg = j};
  return c;
}

/* ---- files ------------------------------------------------------------------------ */
static char *bundle_file(struct api *a, const char *id) {
  return util_strdup_printf("%s/%s.zip", a->bundles_dir, id);
}

static char *backup_file(struct api *a, const char *id) {
  return util_strdup_printf("%s/backup-%s.zip", a->bundles_dir, id);
}

/* SHA-256 (hex) and size of a file, flushed to disk on the way. */
static int file_digest(const char *path, char hex[65], uint64_t *size, struct err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err_set(e, 500, "IO_ERROR", "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  gnutls_hash_hd_t h;
  char *buf = malloc(1u << 20);
  if (!buf || gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
    free(buf);
    close(fd);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  uint64_t total = 0;
  ssize_t n;
  while ((n = read(fd, buf, 1u << 20)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err_set(e, 500, "IO_ERROR", "cannot read %s: %s", path, strerror(errno));
      break;
    }
    gnutls_hash(h, buf, (size_t)n);
    total += (uint64_t)n;
  }
  unsigned char dig[32];
  gnutls_hash_deinit(h, dig);
  free(buf);
  if (n == 0 && fsync(fd) < 0)
    err_set(e, 507, "INSUFFICIENT_STORAGE", "cannot flush %s: %s", path, strerror(errno));
  close(fd);
  if (e->status) return -1;
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", dig[i]);
  *size = total;
  return 0;
}

static int file_fsync(const char *path, struct err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) {
    err_set(e, 507, "INSUFFICIENT_STORAGE", "cannot flush %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

static int file_rename(const char *from, const char *to, struct err *e) {
  if (rename(from, to) == 0) return 0;
  err_set(e, 500, "IO_ERROR", "cannot rename %s to %s: %s", from, to, strerror(errno));
  return -1;
}

static json_t *group_assoc(void) {
  json_t *g = deploy_group();
  const char *name = json_string_value(json_object_get(g, "name"));
  json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "resourceUri", GROUP_URI, "resourceName",
                        name ? name : "default", "resourceCategory", "deployment-groups",
                        "associationType", "MANAGED_BY");
  json_decref(g);
  return a;
}

/* 202 + Location + the task document. */
static json_t *submit(struct request *r, struct job *j, const char *task_name, json_t *assoc,
                      task_fn fn, struct err *e) {
  json_t *doc = task_submit(r->api->tasks, task_name, r->sess.user, assoc, fn, j, job_free, e);
  json_decref(assoc);
  if (doc) {
    pthread_mutex_lock(&jobs.mu);
    struct job *k = jobs.list; /* j may already be done and freed */
    while (k && k != j)
      k = k->next;
    if (k)
      snprintf(k->task_uri, sizeof k->task_uri, "%s",
               json_string_value(json_object_get(doc, "uri")));
    pthread_mutex_unlock(&jobs.mu);
  }
  return doc;
}

/* "true"/"false" (any case), "1"/"0"; -1 otherwise, 0 when absent. */
static int flag(const char *v) {
  if (!v || !*v) return 0;
  if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) return 1;
  if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) return 0;
  return -1;
}

/* A deployment group URI (or id) that names the one group; NULL/"" = that group. */
static int check_group(const char *g, struct err *e) {
  if (!g || !*g || is(g, GROUP_URI) || is(g, DEPLOY_GROUP_ID)) return 0;
  err_set(e, 404, "RESOURCE_NOT_FOUND",
          "deployment group \"%.200s\" does not exist (this server "
          "has the one group %s)",
          g, GROUP_URI);
  return -1;
}

/* ---- upload (golden.c receives, these finish) ------------------------------------------- */
static int upload_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  struct api *a = j->api;
  int rc = -1;
  char *final = bundle_file(a, j->id);
  json_t *contents = NULL;
  task_progress(t, 50, "Received %llu bytes; checking the bundle", (unsigned long long)j->size);
  if (!final) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  contents = bundle_inspect(j->path, j->lenient, e);
  if (!contents) goto out;
  task_progress(t, 80, "Checked the bundle: %lld artifact(s)",
                (long long)json_integer_value(json_object_get(contents, "artifactsCount")));
  if (file_fsync(j->path, e) < 0 || file_rename(j->path, final, e) < 0) goto out;
  free(j->path);
  j->path = NULL;
  struct store_entry *en = NULL;
  if (bundle_record(a->store, j->id, j->name, j->description ? j->description : "", contents,
                    j->size, j->sha256, 1, &en, e) < 0) {
    unlink(final);
    goto out;
  }
  store_entry_release(en);
  char uri[96];
  snprintf(uri, sizeof uri, "/rest/%s/%s", BUNDLE_COLL, j->id);
  task_set_resource(t, uri, j->name);
  task_progress(t, 100, "Uploaded bundle \"%s\" (%llu bytes, sha256 %s)", j->name,
                (unsigned long long)j->size, j->sha256);
  log_info("bundles", "bundle \"%s\" (%s) uploaded: %llu bytes", j->name, j->id,
           (unsigned long long)j->size);
  rc = 0;
out:
  json_decref(contents);
  free(final);
  job_leave();
  return rc;
}

static json_t *report_line(const char *what, json_t *report, char *line, size_t size) {
  snprintf(line, size, "%s: %zu created, %zu reused, %zu renamed, %zu replaced", what,
           json_array_size(json_object_get(report, "created")),
           json_array_size(json_object_get(report, "reused")),
           json_array_size(json_object_get(report, "renamed")),
           json_array_size(json_object_get(report, "replaced")));
  return report;
}

static int restore_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  struct api *a = j->api;
  char *path = j->op == OP_RESTORE ? backup_file(a, j->id) : NULL;
  const char *from = j->op == OP_RESTORE ? path : j->path;
  int rc = -1;
  task_progress(t, j->op == OP_RESTORE ? 0 : 50, "Restoring the artifacts of the backup");
  if (!from) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  } else {
    struct bundle_ctx c = job_ctx(j);
    json_t *report = NULL;
    rc = bundle_restore(&c, from, &report, e);
    if (rc == 0) {
      char line[300];
      report_line("Restored the backup", report, line, sizeof line);
      task_set_output(t, report, line);
      task_progress(t, 100, "%s", line);
    } else {
      json_decref(report);
    }
  }
  free(path);
  job_leave();
  return rc;
}

/* The name an upload gets from the uploadfilename header (the Python SDK
 * sends the file's base name there): directories, quotes and .zip removed. */
static char *name_from_header(const char *h) {
  if (!h) return NULL;
  const char *p = h;
  for (const char *q = h; *q; q++)
    if (*q == '/' || *q == '\\') p = q + 1;
  char *n = strdup(p);
  if (!n) return NULL;
  size_t o = 0;
  for (size_t i = 0; n[i]; i++)
    if (n[i] != '"' && n[i] != '\'') n[o++] = n[i];
  n[o] = 0;
  if (o > 4 && strcasecmp(n + o - 4, ".zip") == 0) n[o - 4] = 0;
  return n;
}

int bundle_upload_check(struct request *r, enum upload_kind k, const char *name) {
  struct err e;
  err_init(&e);
  if (k == UPLOAD_BUNDLE) {
    /* A name known before the body (the query's, else uploadfilename's) is
     * checked now, so that a taken name is refused before the upload. */
    char *hn = name && *name ? NULL : name_from_header(req_header(r, "uploadfilename"));
    if (hn && *hn) name = hn;
    int taken = name && *name && bundle_check_new_name(r->api->store, name, &e) < 0;
    free(hn);
    if (taken) {
      reply_error(r, &e);
      return -1;
    }
    int l = flag(req_arg(r, "lenient"));
    if (l < 0) {
      reply_err(r, 400, "INVALID_PARAMETER", "lenient must be true or false");
      return -1;
    }
  } else if (check_group(req_arg(r, "deploymentGrpUri"), &e) < 0) {
    reply_error(r, &e);
    return -1;
  }
  return 0;
}

json_t *bundle_upload_assoc(enum upload_kind k, const char *id, const char *name) {
  return k == UPLOAD_BUNDLE ? task_assoc(BUNDLE_COLL, id, name) : group_assoc();
}

int bundle_upload_finish(struct request *r, enum upload_kind k, struct upload_done *d,
                         struct err *e) {
  struct api *a = r->api;
  int lenient = flag(d->lenient);
  if (lenient < 0) {
    err_set(e, 400, "INVALID_PARAMETER", "lenient must be true or false, not \"%.40s\"",
            d->lenient);
    return -1;
  }
  if (k == UPLOAD_BUNDLE && bundle_check_new_name(a->store, d->name ? d->name : "", e) < 0)
    return -1;
  if (k == UPLOAD_BACKUP && check_group(d->group, e) < 0) return -1;
  struct job *j = job_new(a, k == UPLOAD_BUNDLE ? OP_UPLOAD : OP_RESTORE_FILE, d->id);
  if (!j) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  j->path = strdup(d->path);
  j->name = strdup(d->name ? d->name : "");
  j->description = d->description ? strdup(d->description) : NULL;
  j->size = d->size;
  j->lenient = lenient;
  memcpy(j->sha256, d->sha256, sizeof j->sha256);
  if (!j->path || !j->name) {
    job_free(j); /* its copy of the path is unlinked: the caller's is the same file */
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  json_t *doc = NULL;
  struct task *t = d->task;
  d->task = NULL; /* task_start ends it in every case */
  if (task_start(t, k == UPLOAD_BUNDLE ? upload_run : restore_run, j, job_free, &doc, e) < 0)
    return -1;
  pthread_mutex_lock(&jobs.mu);
  struct job *x = jobs.list;
  while (x && x != j)
    x = x->next;
  if (x)
    snprintf(x->task_uri, sizeof x->task_uri, "%s", json_string_value(json_object_get(doc, "uri")));
  pthread_mutex_unlock(&jobs.mu);
  reply_task(r, doc);
  return 0;
}

/* ---- download ------------------------------------------------------------------------- */
static void serve_file(struct request *r, const char *path, const char *name) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0) close(fd);
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "the file of \"%.200s\" is missing", name);
    return;
  }
  struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
  if (!resp) {
    close(fd);
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  char cd[2600];
  download_disposition(name, cd, sizeof cd);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, cd);
  r->resp_custom = resp;
  r->status = 200;
  r->content_type = "application/octet-stream";
}

static void download(struct request *r, const char *coll, const char *id, int backup) {
  /* A bundle holds its deployment plans' password values in clear (as HPE's do, so that a
   * re-import is lossless), which every GET masks: only Deploy may download. */
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  struct store_entry *en = store_get(r->api->store, coll, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "%s \"%.100s\" does not exist",
              backup ? "backup" : "artifact bundle", id);
    return;
  }
  char *path = backup ? backup_file(r->api, id) : bundle_file(r->api, id);
  if (path)
    serve_file(r, path, en->name ? en->name : id);
  else
    reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  free(path);
  store_entry_release(en);
}

/* ---- extract ---------------------------------------------------------------------------- */
static int extract_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  char *path = bundle_file(j->api, j->id);
  int rc = -1;
  task_progress(t, 0, "Extracting bundle \"%s\"", j->name);
  if (!path) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  } else {
    struct bundle_ctx c = job_ctx(j);
    json_t *report = NULL;
    rc = bundle_extract(&c, j->id, path, &j->opts, &report, e);
    if (rc == 0) {
      char line[300];
      report_line("Extracted", report, line, sizeof line);
      task_set_output(t, report, line);
      task_progress(t, 100, "Extracted bundle \"%s\": %s", j->name, line + 11);
    } else {
      json_decref(report);
    }
  }
  free(path);
  job_leave();
  return rc;
}

static int parse_conflict(const char *v, enum bundle_conflict *out, struct err *e) {
  if (!strcasecmp(v, "stop"))
    *out = BUNDLE_STOP;
  else if (!strcasecmp(v, "rename"))
    *out = BUNDLE_RENAME;
  else if (!strcasecmp(v, "replace"))
    *out = BUNDLE_REPLACE;
  else {
    err_set(e, 400, "INVALID_PARAMETER",
            "onConflict must be stop, rename or replace, not \"%.40s\"", v);
    return -1;
  }
  return 0;
}

/* A body flag: JSON true/false or a string; -1 when it is something else. */
static int body_flag(json_t *b, const char *key) {
  json_t *v = json_is_object(b) ? json_object_get(b, key) : NULL;
  if (!v || json_is_null(v)) return 0;
  if (json_is_boolean(v)) return json_is_true(v);
  return json_is_string(v) ? flag(json_string_value(v)) : -1;
}

static void extract(struct request *r, struct store_entry *en, json_t *b) {
  struct err e;
  err_init(&e);
  int force = flag(req_arg(r, "forceImport")), lenient = flag(req_arg(r, "lenient"));
  if (force == 0) force = body_flag(b, "forceImport");
  if (lenient == 0) lenient = body_flag(b, "lenient");
  if (force < 0 || lenient < 0)
    return reply_err(r, 400, "INVALID_PARAMETER", "forceImport and lenient must be true or false");
  /* A bundle accepted leniently at upload stays accepted: the clients' extract
   * requests (?extract=true&forceImport=true) have no way to say it again. */
  if (!lenient)
    lenient = json_is_true(json_object_get(json_object_get(en->doc, "integrity"), "lenient"));
  struct bundle_extract_opts o = {
      .on_conflict = force ? BUNDLE_RENAME : BUNDLE_STOP, .renames = NULL, .lenient = lenient};
  const char *oc = req_arg(r, "onConflict");
  json_t *boc = json_is_object(b) ? json_object_get(b, "onConflict") : NULL;
  if (!oc && boc && !json_is_null(boc)) {
    oc = json_string_value(boc);
    if (!oc) return reply_err(r, 400, "INVALID_PARAMETER", "onConflict must be a string");
  }
  if (oc && *oc && parse_conflict(oc, &o.on_conflict, &e) < 0) return reply_error(r, &e);
  json_t *ren = json_is_object(b) ? json_object_get(b, "renames") : NULL;
  if (ren && !json_is_null(ren) && !json_is_array(ren))
    return reply_err(r, 400, "INVALID_PARAMETER",
                     "renames must be an array of {\"type\",\"name\",\"newName\"}");
  struct job *j = job_new(r->api, OP_EXTRACT, en->id);
  if (!j) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  j->opts = o;
  j->opts.renames = json_is_array(ren) ? json_incref(ren) : NULL;
  j->name = strdup(en->name ? en->name : en->id);
  json_t *doc = submit(r, j, "Extract", task_assoc(BUNDLE_COLL, en->id, en->name), extract_run, &e);
  if (!doc) return reply_error(r, &e);
  reply_task(r, doc);
}

/* PUT /rest/artifact-bundles/{id}: extract (?extract=true, or the bodies the
 * clients send for it: none, null, text/plain, extract options) or rename
 * (a JSON object with another name). */
static void put_bundle(struct request *r, const char *id) {
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  struct store *s = r->api->store;
  json_t *b = req_json(r);
  if (!b) return;
  struct store_entry *en = store_get(s, BUNDLE_COLL, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "artifact bundle \"%.100s\" does not exist", id);
    return;
  }
  int ex = flag(req_arg(r, "extract"));
  if (ex < 0) {
    store_entry_release(en);
    return reply_err(r, 400, "INVALID_PARAMETER", "extract must be true or false");
  }
  const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  const char *name = json_string_value(json_object_get(b, "name"));
  int rename = 0;
  if (!ex && req_arg(r, "extract")) {
    rename = 1; /* extract=false */
  } else if (!ex) {
    /* No query: an object with a name, sent as JSON, is a rename; anything else
     * (no body, null, text/plain — the full resource included) an extract. */
    rename = json_is_object(b) && name && !(ct && media_is(ct, "text/plain")) &&
             !json_object_get(b, "renames") && !json_object_get(b, "onConflict");
  }
  if (!rename) {
    extract(r, en, b);
    store_entry_release(en);
    return;
  }
  store_entry_release(en);
  if (!json_is_object(b) || !name)
    return reply_err(r, 400, "INVALID_NAME", "a rename needs {\"name\":\"the new name\"}");
  struct err e;
  err_init(&e);
  struct store_entry *out = NULL;
  if (bundle_rename(s, id, name, req_header(r, "If-Match"), &out, &e) < 0)
    return reply_error(r, &e);
  reply_entry(r, 200, out);
  store_entry_release(out);
}

/* ---- delete ------------------------------------------------------------------------------ */
static int delete_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  int rc = -1;
  char *path = bundle_file(j->api, j->id);
  task_progress(t, 0, "Deleting bundle \"%s\"", j->name);
  if (!path) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  } else if (bundle_delete_doc(j->api->store, j->id, e) == 0) {
    if (unlink(path) < 0 && errno != ENOENT)
      log_warn("bundles", "cannot remove %s: %s", path, strerror(errno));
    task_progress(t, 100, "Deleted bundle \"%s\"", j->name);
    rc = 0;
  }
  free(path);
  job_leave();
  return rc;
}

static void delete_bundle(struct request *r, const char *id) {
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  struct store_entry *en = store_get(r->api->store, BUNDLE_COLL, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "artifact bundle \"%.100s\" does not exist", id);
    return;
  }
  struct err e;
  err_init(&e);
  if (util_check_if_match(json_string_value(json_object_get(en->doc, "eTag")),
                          req_header(r, "If-Match"), &e) < 0) {
    store_entry_release(en);
    return reply_error(r, &e);
  }
  struct job *j = job_new(r->api, OP_DELETE, id);
  if (!j) {
    store_entry_release(en);
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  j->name = strdup(en->name ? en->name : id);
  json_t *assoc = task_assoc(BUNDLE_COLL, NULL, en->name ? en->name : id);
  store_entry_release(en);
  json_t *doc = submit(r, j, "Delete", assoc, delete_run, &e);
  if (!doc) return reply_error(r, &e);
  reply_task(r, doc);
}

/* ---- create ------------------------------------------------------------------------------ */
static int stopped(struct job *j, struct err *e) {
  if (!__atomic_load_n(&j->stop, __ATOMIC_RELAXED)) return 0;
  err_set(e, 409, "STOPPED", "the creation of bundle \"%s\" was stopped", j->name);
  return -1;
}

static int create_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  struct api *a = j->api;
  int rc = -1;
  char *part = util_strdup_printf("%s/%s.part", a->bundles_dir, j->id);
  char *final = bundle_file(a, j->id);
  json_t *contents = NULL;
  task_progress(t, 0, "Writing bundle \"%s\"", j->name);
  if (!part || !final) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  struct bundle_ctx c = job_ctx(j);
  if (stopped(j, e) < 0 || bundle_write(&c, j->plan, part, e) < 0) goto out;
  j->path = part; /* removed by job_free unless renamed */
  part = NULL;
  if (stopped(j, e) < 0) goto out;
  task_progress(t, 90, "Checking the written bundle");
  contents = bundle_inspect(j->path, 0, e);
  if (!contents || stopped(j, e) < 0 || file_digest(j->path, j->sha256, &j->size, e) < 0 ||
      file_rename(j->path, final, e) < 0)
    goto out;
  free(j->path);
  j->path = NULL;
  struct store_entry *en = NULL;
  if (bundle_record(a->store, j->id, j->name, j->description ? j->description : "", contents,
                    j->size, j->sha256, 0, &en, e) < 0) {
    unlink(final);
    goto out;
  }
  store_entry_release(en);
  task_progress(t, 100, "Created bundle \"%s\": %lld artifact(s), %llu bytes", j->name,
                (long long)json_integer_value(json_object_get(contents, "artifactsCount")),
                (unsigned long long)j->size);
  rc = 0;
out:
  pthread_mutex_lock(&jobs.mu);
  int shutting_down = jobs.stopping;
  pthread_mutex_unlock(&jobs.mu);
  if (rc < 0 && __atomic_load_n(&j->stop, __ATOMIC_RELAXED) &&
      !shutting_down) /* stopArtifactCreate */
    err_set(e, 409, "STOPPED",
            "stopped: the creation of bundle \"%s\" was stopped; nothing was "
            "kept",
            j->name);
  json_decref(contents);
  free(part);
  free(final);
  job_leave();
  return rc;
}

static void create_bundle(struct request *r) {
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  struct err e;
  err_init(&e);
  const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ct && *ct && !media_is(ct, "application/json") && !media_is(ct, "text/plain")) {
    err_set(&e, 415, "UNSUPPORTED_MEDIA_TYPE",
            "artifact bundles are created with a JSON body (application/json) or uploaded as "
            "multipart/form-data with the .zip in the field \"file\" (Content-Type \"%.100s\" "
            "was sent)",
            ct);
    return reply_error(r, &e);
  }
  json_t *b = req_json(r);
  if (!b) return;
  if (!json_is_object(b))
    return reply_err(r, 400, "INVALID_BODY", "the body must be an ArtifactsBundle JSON object");
  json_t *plan = bundle_create_plan(r->api->store, b, &e);
  if (!plan) return reply_error(r, &e);
  char id[37];
  util_uuid(id);
  struct job *j = job_new(r->api, OP_CREATE, id);
  if (!j) {
    json_decref(plan);
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  j->plan = plan;
  const char *name = json_string_value(json_object_get(plan, "name"));
  const char *desc = json_string_value(json_object_get(plan, "description"));
  j->name = strdup(name ? name : "");
  j->description = desc ? strdup(desc) : NULL;
  json_t *doc = submit(r, j, "Create", task_assoc(BUNDLE_COLL, id, name), create_run, &e);
  if (!doc) return reply_error(r, &e);
  reply_task(r, doc);
}

/* PUT /rest/artifact-bundles/{id}/stopArtifactCreate {"taskUri":...} */
static void stop_create(struct request *r, const char *id) {
  if (!is(r->method, "PUT")) return reply_method_not_allowed(r);
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  json_t *b = req_json(r);
  if (!b) return;
  const char *uri = json_string_value(json_object_get(b, "taskUri"));
  if (json_is_object(b) && json_object_get(b, "taskUri") && !uri)
    return reply_err(r, 400, "INVALID_PARAMETER", "taskUri must be a string");
  int found = 0;
  char task[96] = "";
  pthread_mutex_lock(&jobs.mu);
  for (struct job *j = jobs.list; j; j = j->next) {
    if (j->op != OP_CREATE || !is(j->id, id)) continue;
    if (uri && *uri && !strstr(uri, j->task_uri[0] ? j->task_uri : "\x01")) continue;
    __atomic_store_n(&j->stop, 1, __ATOMIC_RELAXED);
    snprintf(task, sizeof task, "%s", j->task_uri);
    found = 1;
  }
  pthread_mutex_unlock(&jobs.mu);
  if (!found)
    return reply_err(r, 404, "RESOURCE_NOT_FOUND",
                     "no creation of artifact bundle \"%.100s\" is running%s%.200s", id,
                     uri ? " under the task " : "", uri ? uri : "");
  reply_json(r, 200,
             json_pack("{s:s, s:s, s:s}", "message", "the bundle creation is being stopped",
                       "taskUri", task, "uri", r->path));
}

/* ---- backups -------------------------------------------------------------------------------- */
static int backup_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (job_enter(j, t, e) < 0) return -1;
  struct api *a = j->api;
  int rc = -1;
  char *part = util_strdup_printf("%s/backup-%s.part", a->bundles_dir, j->id);
  char *final = backup_file(a, j->id);
  json_t *plan = NULL;
  task_progress(t, 0, "Backing up every artifact");
  if (!part || !final) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  plan = bundle_backup_plan(a->store, e);
  struct bundle_ctx c = job_ctx(j);
  if (!plan || bundle_write(&c, plan, part, e) < 0) goto out;
  j->path = part;
  part = NULL;
  if (file_digest(j->path, j->sha256, &j->size, e) < 0 || file_rename(j->path, final, e) < 0)
    goto out;
  free(j->path);
  j->path = NULL;
  struct store_entry *en = NULL;
  char old[37] = "";
  if (bundle_backup_record(a->store, j->id, GROUP_URI, j->size, j->sha256, &en, old, e) < 0) {
    unlink(final);
    goto out;
  }
  char uri[128], dl[160];
  snprintf(uri, sizeof uri, "/rest/artifact-bundles/backups/%s", j->id);
  snprintf(dl, sizeof dl, "/rest/artifact-bundles/backups/archive/%s", j->id);
  task_set_output(t,
                  json_pack("{s:s, s:s, s:s, s:I}", "type", "ArtifactsBundleBackup", "uri", uri,
                            "downloadURI", dl, "size", (json_int_t)j->size),
                  NULL);
  store_entry_release(en);
  if (old[0] && !is(old, j->id)) {
    char *op = backup_file(a, old);
    if (op && unlink(op) < 0 && errno != ENOENT)
      log_warn("bundles", "cannot remove the previous backup %s: %s", op, strerror(errno));
    free(op);
  }
  task_progress(t, 100, "Backed up every artifact: %llu bytes", (unsigned long long)j->size);
  rc = 0;
out:
  json_decref(plan);
  free(part);
  free(final);
  job_leave();
  return rc;
}

static const char *body_group(struct request *r, json_t *b) {
  const char *g = json_string_value(json_object_get(b, "deploymentGroupURI"));
  if (!g) g = json_string_value(json_object_get(b, "deploymentGroupUri"));
  if (!g) g = req_arg(r, "deploymentGrpUri");
  return g;
}

static void backup_submit(struct request *r, enum job_op op, const char *id) {
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  json_t *b = req_json(r);
  if (!b) return;
  struct err e;
  err_init(&e);
  if (!json_is_null(b) && !json_is_object(b))
    return reply_err(r, 400, "INVALID_BODY", "the body must be {\"deploymentGroupURI\":\"...\"}");
  if (check_group(body_group(r, b), &e) < 0) return reply_error(r, &e);
  char nid[37];
  if (op == OP_BACKUP) {
    util_uuid(nid);
    id = nid;
  } else if (!id) { /* legacy PUT .../backups/archive: the stored backup */
    struct store_entry **v;
    size_t n;
    if (store_list(r->api->store, BUNDLE_BACKUP_COLL, &v, &n) < 0)
      return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
    if (n) snprintf(nid, sizeof nid, "%s", v[0]->id);
    store_entries_release(v, n);
    if (!n) return reply_err(r, 404, "RESOURCE_NOT_FOUND", "there is no backup to restore");
    id = nid;
  } else {
    struct store_entry *en = store_get(r->api->store, BUNDLE_BACKUP_COLL, id);
    if (!en) return reply_err(r, 404, "RESOURCE_NOT_FOUND", "backup \"%.100s\" does not exist", id);
    store_entry_release(en);
  }
  struct job *j = job_new(r->api, op, id);
  if (!j) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  json_t *doc = submit(r, j, op == OP_BACKUP ? "Backup" : "Restore", group_assoc(),
                       op == OP_BACKUP ? backup_run : restore_run, &e);
  if (!doc) return reply_error(r, &e);
  reply_task(r, doc);
}

static void route_backups(struct request *r) {
  if (r->nseg == 2) {
    if (is(r->method, "GET")) return serve_collection(r, BUNDLE_BACKUP_COLL);
    if (is(r->method, "POST")) return backup_submit(r, OP_BACKUP, NULL);
    return reply_method_not_allowed(r);
  }
  if (r->nseg == 3 && is(r->seg[2], "archive")) {
    if (is(r->method, "PUT")) return backup_submit(r, OP_RESTORE, NULL);
    if (is(r->method, "POST")) {
      if (auth_require(r, ROLE_DEPLOY) < 0) return;
      return reply_err(r, 415, "UNSUPPORTED_MEDIA_TYPE",
                       "a backup is restored from an upload: POST multipart/form-data with the "
                       "backup .zip in the field \"file\"");
    }
    return reply_method_not_allowed(r);
  }
  if (r->nseg == 4 && is(r->seg[2], "archive")) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    return download(r, BUNDLE_BACKUP_COLL, r->seg[3], 1);
  }
  if (r->nseg == 3) {
    if (is(r->method, "GET")) return serve_one(r, BUNDLE_BACKUP_COLL, r->seg[2], "backup");
    if (is(r->method, "PUT")) return backup_submit(r, OP_RESTORE, r->seg[2]);
    return reply_method_not_allowed(r);
  }
  reply_no_resource(r);
}

/* ---- routes -----------------------------------------------------------------------------------
 */
void route_artifact_bundles(struct request *r) {
  struct api *a = r->api;
  if (!a->bundles_dir && !is(r->method, "GET")) {
    reply_err(r, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store for bundles");
    return;
  }
  if (r->nseg == 1) {
    if (is(r->method, "GET")) return serve_collection(r, BUNDLE_COLL);
    if (is(r->method, "POST")) return create_bundle(r);
    return reply_method_not_allowed(r);
  }
  if (is(r->seg[1], "backups")) return route_backups(r);
  if (r->nseg == 3 && is(r->seg[1], "download")) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    return download(r, BUNDLE_COLL, r->seg[2], 0);
  }
  if (r->nseg == 3 && is(r->seg[2], "stopArtifactCreate")) return stop_create(r, r->seg[1]);
  if (r->nseg != 2) {
    reply_no_resource(r);
    return;
  }
  const char *id = r->seg[1];
  if (is(r->method, "GET")) {
    serve_one(r, BUNDLE_COLL, id, "artifact bundle");
  } else if (is(r->method, "PUT")) {
    put_bundle(r, id);
  } else if (is(r->method, "DELETE")) {
    delete_bundle(r, id);
  } else {
    reply_method_not_allowed(r);
  }
}

/* ---- start / stop -------------------------------------------------------------------------- */
int bundle_api_init(struct api *a, struct err *e) {
  bundle_register(a->store);
  pthread_mutex_lock(&jobs.mu);
  jobs.stopping = 0;
  pthread_mutex_unlock(&jobs.mu);
  if (!a->cfg.volumes) return 0;
  a->bundles_dir = util_strdup_printf("%s/bundles", vol_store_dir(a->cfg.volumes));
  if (!a->bundles_dir) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  if (mkdir(a->bundles_dir, 0700) < 0 && errno != EEXIST) {
    err_set(e, 500, "IO_ERROR", "cannot create %s: %s", a->bundles_dir, strerror(errno));
    return -1;
  }
  /* What a stop left half received or half written. */
  DIR *d = opendir(a->bundles_dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n > 5 && strcmp(de->d_name + n - 5, ".part") == 0) {
      char *p = util_strdup_printf("%s/%s", a->bundles_dir, de->d_name);
      if (p && unlink(p) == 0) log_info("bundles", "removed the unfinished bundle file %s", p);
      free(p);
    } else if (n > 4 && n < 64 && strcmp(de->d_name + n - 4, ".zip") == 0) {
      /* A file without its document: a stop between the rename and the record. */
      int backup = strncmp(de->d_name, "backup-", 7) == 0;
      char id[64];
      snprintf(id, sizeof id, "%.*s", (int)(n - 4 - (backup ? 7 : 0)),
               de->d_name + (backup ? 7 : 0));
      struct store_entry *en = store_get(a->store, backup ? BUNDLE_BACKUP_COLL : BUNDLE_COLL, id);
      if (en) {
        store_entry_release(en);
        continue;
      }
      char *p = util_strdup_printf("%s/%s", a->bundles_dir, de->d_name);
      if (p && unlink(p) == 0) log_warn("bundles", "removed %s: no bundle or backup uses it", p);
      free(p);
    }
  }
  if (d) closedir(d);
  return 0;
}

void bundle_api_fini(struct api *a) {
  pthread_mutex_lock(&jobs.mu);
  jobs.stopping = 1;
  for (struct job *j = jobs.list; j; j = j->next)
    __atomic_store_n(&j->stop, 1, __ATOMIC_RELAXED);
  while (jobs.running > 0)
    pthread_cond_wait(&jobs.cv, &jobs.mu);
  pthread_mutex_unlock(&jobs.mu);
  free(a->bundles_dir);
  a->bundles_dir = NULL;
}
