/* samples.c — streamerd --samples DIR: the project's sample artifacts (examples/) loaded
 * into a data directory at start, so a new user has a working deployment plan at once.
 *
 * DIR holds plan-scripts/, build-plans/, golden-images/ and deployment-plans/, each with
 * *.json files taken in name order. Plan scripts, build plans and deployment plans are the
 * bodies the REST API takes (created through artifact_create, as a POST would); a
 * golden-images/NAME.json is {"name", "description", "file"}, the file (relative to DIR) being
 * imported like an upload and kept. Dependencies load first: plan scripts, build plans,
 * golden images, deployment plans.
 *
 * Each sample is loaded once per data directory: the store's meta key "samples.loaded"
 * lists "<kind>/<name>" of every sample loaded (or found already there under its name), so
 * a sample the user deleted stays deleted, and one that could not load (a golden image
 * not built yet, the deployment plan that names it) is tried again at the next start. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_int.h"
#include "artifact/artifact.h"
#include "deploy/task.h"

#define META_KEY "samples.loaded"
#define IMPORT_WAIT_MS (600 * 1000)

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The *.json names of dir/sub, sorted; NULL-terminated (NULL if none or unreadable). */
static char **json_files(const char *dir, const char *sub) {
  char *path = util_strdup_printf("%s/%s", dir, sub);
  DIR *d = path ? opendir(path) : NULL;
  free(path);
  if (!d) return NULL;
  char **v = NULL;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
    char **nv = realloc(v, (n + 2) * sizeof *v);
    if (!nv) break;
    v = nv;
    v[n++] = strdup(de->d_name);
    v[n] = NULL;
  }
  closedir(d);
  if (v) qsort(v, n, sizeof *v, cmp_str);
  return v;
}

static void free_list(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

static int loaded_has(json_t *loaded, const char *key) {
  size_t i;
  json_t *x;
  json_array_foreach(loaded, i, x) {
    if (json_is_string(x) && !strcmp(json_string_value(x), key)) return 1;
  }
  return 0;
}

/* Wait for a task (its document in the store) to end; 0 if Completed. */
static int wait_task(struct store *s, const char *uri, struct err *e) {
  const char *id = strrchr(uri, '/');
  id = id ? id + 1 : uri;
  for (int waited = 0; waited < IMPORT_WAIT_MS; waited += 50) {
    struct store_entry *en = store_get(s, "tasks", id);
    const char *st = en ? json_string_value(json_object_get(en->doc, "taskState")) : NULL;
    if (st && strcmp(st, "New") && strcmp(st, "Starting") && strcmp(st, "Running") &&
        strcmp(st, "Pending") && strcmp(st, "Stopping")) {
      int ok = !strcmp(st, "Completed");
      if (!ok) {
        json_t *te = json_array_get(json_object_get(en->doc, "taskErrors"), 0);
        const char *m = json_string_value(json_object_get(te, "message"));
        err_set(e, 500, "SAMPLE_IMPORT_FAILED", "task %s ended %s: %s", uri, st, m ? m : "");
      }
      store_entry_release(en);
      return ok ? 0 : -1;
    }
    store_entry_release(en);
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
  }
  err_set(e, 500, "SAMPLE_IMPORT_FAILED", "task %s did not end within %d s", uri,
          IMPORT_WAIT_MS / 1000);
  return -1;
}

/* A golden-images/NAME.json: {"name","description","file"}. */
static int load_golden(struct api *a, const char *dir, json_t *doc, struct err *e) {
  const char *name = json_string_value(json_object_get(doc, "name"));
  const char *file = json_string_value(json_object_get(doc, "file"));
  const char *desc = json_string_value(json_object_get(doc, "description"));
  if (!name || !file) {
    err_set(e, 400, "INVALID_BODY", "a sample golden image needs \"name\" and \"file\"");
    return -1;
  }
  char *path = file[0] == '/' ? strdup(file) : util_strdup_printf("%s/%s", dir, file);
  if (!path) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  if (access(path, R_OK) < 0) {
    err_set(e, 404, "FILE_NOT_FOUND", "%s: %s", path, strerror(errno));
    const char *hint = json_string_value(json_object_get(doc, "buildWith"));
    if (hint) {
      char act[256];
      snprintf(act, sizeof act, "Build it with: %s", hint);
      err_action(e, act);
    }
    free(path);
    return -1;
  }
  json_t *task = api_golden_import_file(a, path, name, desc, e);
  free(path);
  if (!task) return -1;
  char *uri = strdup(json_string_value(json_object_get(task, "uri")));
  json_decref(task);
  int rc = uri ? wait_task(a->store, uri, e) : -1;
  free(uri);
  return rc;
}

int api_samples_load(struct api *a, const char *dir, struct err *e) {
  static const struct {
    const char *sub;
    int kind; /* enum artifact_kind, or -1: golden images */
  } order[] = {{"plan-scripts", ART_PLAN_SCRIPT},
               {"build-plans", ART_BUILD_PLAN},
               {"golden-images", -1},
               {"deployment-plans", ART_DEPLOYMENT_PLAN}};
  struct stat st;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    err_set(e, 400, "FILE_NOT_FOUND", "--samples %s: not a directory", dir);
    return -1;
  }
  char *raw = NULL;
  json_t *loaded = NULL;
  if (store_meta_get(a->store, META_KEY, &raw) == 0 && raw) loaded = json_loads(raw, 0, NULL);
  free(raw);
  if (!json_is_array(loaded)) {
    json_decref(loaded);
    loaded = json_array();
  }
  int added = 0, failed = 0, present = 0;
  for (size_t k = 0; k < sizeof order / sizeof *order; k++) {
    char **files = json_files(dir, order[k].sub);
    const char *coll = order[k].kind < 0 ? GOLDEN_COLL : artifact_coll(order[k].kind);
    for (size_t i = 0; files && files[i]; i++) {
      char *path = util_strdup_printf("%s/%s/%s", dir, order[k].sub, files[i]);
      json_error_t je;
      json_t *doc = path ? json_load_file(path, 0, &je) : NULL;
      const char *name = json_string_value(json_object_get(doc, "name"));
      if (!json_is_object(doc) || !name) {
        log_warn("samples", "%s: not a JSON object with a \"name\"%s%s", path, doc ? "" : ": ",
                 doc ? "" : je.text);
        failed++;
        json_decref(doc);
        free(path);
        continue;
      }
      char *key = util_strdup_printf("%s/%s", order[k].sub, name);
      struct store_entry *there = store_get_by_name(a->store, coll, name);
      if (loaded_has(loaded, key)) {
        present++;
      } else if (there) {
        present++; /* a resource of that name: leave it, and do not try again */
        json_array_append_new(loaded, json_string(key));
      } else {
        struct err ie;
        err_init(&ie);
        int rc;
        if (order[k].kind < 0) {
          rc = load_golden(a, dir, doc, &ie);
        } else {
          struct store_entry *out = NULL;
          rc = artifact_create(a->store, (enum artifact_kind)order[k].kind, doc, &out, &ie);
          store_entry_release(out);
        }
        if (rc == 0) {
          added++;
          json_array_append_new(loaded, json_string(key));
          log_info("samples", "loaded %s \"%s\" from %s", order[k].sub, name, path);
        } else {
          failed++;
          log_warn("samples", "%s \"%s\" (%s) not loaded: %s%s%s", order[k].sub, name, path,
                   ie.message, ie.action[0] ? ". " : "", ie.action);
        }
        err_clear(&ie);
      }
      store_entry_release(there);
      free(key);
      json_decref(doc);
      free(path);
    }
    free_list(files);
  }
  char *text = json_dumps(loaded, JSON_COMPACT);
  int rc = text ? store_meta_set(a->store, META_KEY, text, e) : -1;
  if (!text) err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  free(text);
  json_decref(loaded);
  log_info("samples", "samples from %s: %d loaded, %d already loaded or present, %d not loaded",
           dir, added, present, failed);
  return rc;
}
