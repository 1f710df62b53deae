/* golden.c — golden image documents: HPE's GoldenImage shape, names,
 * rename/describe (PUT), the delete protocol (Deleting state while the
 * volume goes), dependentArtifacts (the deployment plans that use one), the
 * checksum state (an image is usable before its SHA-256 is known:
 * checkSumState "Pending", then "OK" with checkSum set). The image bytes are
 * the API layer's business (src/vol through src/api). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "artifact/artifact.h"
#include "artifact/artifact_int.h"

static const char *const DP_COLL = "deployment-plans";

/* Fields the store keeps but the API does not show. */
static const char *const HIDDEN[] = {"member", "importLog", NULL};

static char *render_golden(json_t *doc) {
  json_t *c = json_copy(doc);
  for (const char *const *h = HIDDEN; *h; h++)
    json_object_del(c, *h);
  if (!json_object_get(c, "checkSumState")) /* documents from before the field */
    json_object_set_new(c, "checkSumState", json_string("OK"));
  char *s = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  return s;
}

void golden_register(struct store *s) { store_set_render(s, GOLDEN_COLL, render_golden); }

int golden_checksum_pending(json_t *doc) {
  return util_strcaseeq(json_string_value(json_object_get(doc, "checkSumState")), "Pending");
}

int golden_is_deleting(json_t *doc) {
  return util_strcaseeq(json_string_value(json_object_get(doc, "state")), "Deleting");
}

static int is_read_only(json_t *doc) {
  return util_json_bool(json_object_get(doc, "readOnly")) == 1;
}

int golden_check_description(const char *description, struct err *e) {
  if (description && strlen(description) > 65536) {
    err_set(e, 400, "INVALID_FIELD", "golden image: \"description\" is longer than 65536 bytes");
    return -1;
  }
  json_t *d = description ? json_string(description) : NULL;
  if (description && !d) {
    err_set(e, 400, "INVALID_FIELD", "golden image: the description is not UTF-8 text");
    return -1;
  }
  json_decref(d);
  return 0;
}

int golden_check_new_name(struct store *s, const char *name, struct err *e) {
  json_t *n = json_string(name ? name : "");
  if (!n) {
    err_set(e, 400, "INVALID_NAME", "golden image: the name is not UTF-8 text");
    return -1;
  }
  int rc = artifact_check_name("golden image", n, e);
  json_decref(n);
  if (rc < 0) return -1;
  struct store_entry *en = store_get_by_name(s, GOLDEN_COLL, name);
  if (en) {
    store_entry_release(en);
    err_set(e, 409, "NAME_CONFLICT", "a golden image named \"%s\" already exists", name);
    err_action(e, "Choose another name, or delete or rename the existing golden image.");
    return -1;
  }
  return 0;
}

int golden_txn_create(struct store_txn *t, const struct golden_new *g, struct err *e) {
  if (golden_check_description(g->description, e) < 0) return -1;
  json_t *name = json_string(g->name ? g->name : "");
  if (artifact_check_name("golden image", name, e) < 0) {
    json_decref(name);
    return -1;
  }
  char *uri = util_strdup_printf("/rest/%s/%s", GOLDEN_COLL, g->id);
  int pending = !g->sha256 || !g->sha256[0];
  json_t *doc = json_pack(
      "{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s,"
      " s:s, s:n, s:n, s:s, s:n, s:n, s:s, s:n, s:n,"
      " s:s, s:s, s:[], s:b, s:b, s:b, s:I, s:I, s:s, s:I, s:s, s:s}",
      "type", "GoldenImage", "id", g->id, "uri", uri, "name", name, "description",
      g->description ? g->description : "", "category", GOLDEN_COLL, "state", "OK", "status", "OK",
      "artifactBundleCategory", "artifact-bundles", "bundleName", "bundleURI", "buildPlanCategory",
      "build-plans", "buildPlanName", "buildPlanUri", "osVolumeCategory", "os-volumes",
      "osVolumeName", "osVolumeURI", "checkSum", pending ? "" : g->sha256, "checkSumState",
      pending ? "Pending" : "OK", "dependentArtifacts", "imageCapture", 0, "importedFromBundle", 0,
      "readOnly", 0, "size", (json_int_t)g->size, "allocatedBytes", (json_int_t)g->allocated,
      "format", g->format ? g->format : "", "crc32", (json_int_t)g->crc32, "member",
      g->member ? g->member : g->id, "importLog", g->log ? g->log : "");
  free(uri);
  if (doc && g->os_volume_uri) { /* a capture: where it came from */
    json_object_set_new(doc, "imageCapture", json_true());
    json_object_set_new(doc, "osVolumeURI", json_string(g->os_volume_uri));
    json_object_set_new(doc, "osVolumeUri", json_string(g->os_volume_uri));
    json_object_set_new(doc, "osVolumeName",
                        json_string(g->os_volume_name ? g->os_volume_name : ""));
    json_object_set_new(doc, "buildPlanUri",
                        json_string(g->build_plan_uri ? g->build_plan_uri : ""));
    json_object_set_new(doc, "buildPlanName",
                        json_string(g->build_plan_name ? g->build_plan_name : ""));
  }
  if (doc && g->bundle_name) { /* extracted from a bundle */
    json_object_set_new(doc, "importedFromBundle", json_true());
    json_object_set_new(doc, "bundleName", json_string(g->bundle_name));
    json_object_set_new(doc, "bundleURI", g->bundle_uri ? json_string(g->bundle_uri) : json_null());
    json_object_set_new(doc, "readOnly", json_boolean(g->read_only));
  }
  if (!doc) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = store_txn_get(t, GOLDEN_COLL, g->id);
  if (old) {
    store_entry_release(old);
    json_decref(doc);
    err_set(e, 409, "GOLDEN_IMAGE_EXISTS", "golden image id %s already exists", g->id);
    return -1;
  }
  int rc = store_put(t, GOLDEN_COLL, g->id, g->name, doc, e);
  json_decref(doc);
  if (rc < 0 && e->status == 409)
    err_set(e, 409, "NAME_CONFLICT", "a golden image named \"%s\" already exists", g->name);
  return rc;
}

int golden_create(struct store *s, const struct golden_new *g, struct store_entry **out,
                  struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  if (golden_txn_create(t, g, e) < 0) {
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  if (out) *out = store_get(s, GOLDEN_COLL, g->id);
  return 0;
}

int golden_set_checksum(struct store *s, const char *id, const char *sha256, const char *log_line,
                        struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = store_txn_get(t, GOLDEN_COLL, id);
  if (!old) {
    store_rollback(t);
    err_set(e, 404, "RESOURCE_NOT_FOUND", "golden image \"%.100s\" does not exist", id);
    return -1;
  }
  json_t *doc = json_deep_copy(old->doc);
  json_object_set_new(doc, "checkSum", json_string(sha256));
  json_object_set_new(doc, "checkSumState", json_string("OK"));
  if (log_line) {
    const char *log = json_string_value(json_object_get(doc, "importLog"));
    char *both = util_strdup_printf("%s%s\n", log ? log : "", log_line);
    if (both) json_object_set_new(doc, "importLog", json_string(both));
    free(both);
  }
  int rc = store_put(t, GOLDEN_COLL, id, old->name, doc, e);
  json_decref(doc);
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

/* ---- dependentArtifacts ---------------------------------------------------- */
/* The deployment plans (as t sees them) whose goldenImageURI names `id`. */
static json_t *users_of(struct store_txn *t, const char *id) {
  struct store_entry **v;
  size_t n;
  if (store_txn_list(t, DP_COLL, &v, &n) < 0) return NULL;
  json_t *out = json_array();
  for (size_t i = 0; i < n; i++) {
    const char *gid = artifact_uri_id(
        json_string_value(json_object_get(v[i]->doc, "goldenImageURI")), GOLDEN_COLL);
    if (gid && strcmp(gid, id) == 0) json_array_append(out, v[i]->doc);
  }
  store_entries_release(v, n);
  return out;
}

int golden_refresh_deps(struct store_txn *t, const char *id, struct err *e) {
  struct store_entry *en = store_txn_get(t, GOLDEN_COLL, id);
  if (!en) return 0; /* no such image (or deleted in this transaction) */
  json_t *users = users_of(t, id);
  if (!users) {
    store_entry_release(en);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int rc = artifact_set_dependents(t, GOLDEN_COLL, en, users, e);
  json_decref(users);
  store_entry_release(en);
  return rc;
}

struct store_entry *golden_lookup(struct store_txn *t, const char *ref) {
  if (!ref || !*ref) return NULL;
  const char *id = artifact_uri_id(ref, GOLDEN_COLL);
  struct store_entry *g = id && *id ? store_txn_get(t, GOLDEN_COLL, id) : NULL;
  if (!g && strncmp(ref, "/rest/", 6) != 0)
    g = store_get_by_name(store_txn_store(t), GOLDEN_COLL, ref);
  return g;
}

uint64_t golden_allocated_total(struct store *s) {
  struct store_entry **v;
  size_t n;
  if (store_list(s, GOLDEN_COLL, &v, &n) < 0) return 0;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    json_int_t a = json_integer_value(json_object_get(v[i]->doc, "allocatedBytes"));
    if (a > 0) total += (uint64_t)a;
  }
  store_entries_release(v, n);
  return total;
}

/* ---- update ------------------------------------------------------------------ */
/* Keys a client may send back unchanged (or null) but never change. */
static const char *const FIXED[] = {"size",
                                    "checkSum",
                                    "allocatedBytes",
                                    "format",
                                    "crc32",
                                    "imageCapture",
                                    "importedFromBundle",
                                    "readOnly",
                                    "bundleName",
                                    "bundleURI",
                                    "artifactBundleCategory",
                                    "buildPlanName",
                                    "buildPlanUri",
                                    "buildPlanCategory",
                                    "osVolumeName",
                                    "osVolumeURI",
                                    "osVolumeUri",
                                    "osVolumeCategory",
                                    NULL};
/* Keys the server owns: whatever the client sends is ignored. */
static const char *const IGNORED[] = {"eTag",
                                      "etag",
                                      "created",
                                      "modified",
                                      "uri",
                                      "category",
                                      "state",
                                      "status",
                                      "dependentArtifacts",
                                      "checkSumState",
                                      "scopesUri",
                                      "initialScopeUris",
                                      NULL};

static int in_list(const char *const *list, const char *k) {
  for (; *list; list++)
    if (strcmp(*list, k) == 0) return 1;
  return 0;
}

/* Is the client's value the same as the stored one? Booleans may come as
 * strings, numbers as strings or reals. */
static int same_value(json_t *mine, json_t *theirs) {
  if (json_equal(mine, theirs)) return 1;
  if (json_is_boolean(mine)) return util_json_bool(theirs) == (json_is_true(mine) ? 1 : 0);
  if (json_is_integer(mine)) {
    json_int_t m = json_integer_value(mine);
    if (json_is_real(theirs)) return json_real_value(theirs) == (double)m;
    const char *s = json_string_value(theirs);
    if (s && *s) {
      char *end;
      long long v = strtoll(s, &end, 10);
      return !*end && v == m;
    }
  }
  return 0;
}

static int check_update_body(json_t *body, json_t *cur, const char *id, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY",
            "the request body must be a JSON object with the golden image's new name and/or "
            "description");
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    if (!strcmp(key, "name") || !strcmp(key, "description") || in_list(IGNORED, key)) continue;
    if (!strcmp(key, "type")) {
      const char *ts = json_string_value(v);
      if (!json_is_null(v) && (!ts || strcasecmp(ts, "GoldenImage") != 0)) {
        err_set(e, 400, "INVALID_TYPE", "\"type\" must be \"GoldenImage\" for golden-images");
        return -1;
      }
      continue;
    }
    if (!strcmp(key, "id")) {
      const char *bid = json_string_value(v);
      if (bid && *bid && strcmp(bid, id) != 0) {
        err_set(e, 400, "ID_MISMATCH", "the body's id \"%.100s\" does not match the URI's \"%s\"",
                bid, id);
        return -1;
      }
      continue;
    }
    if (in_list(FIXED, key)) {
      if (json_is_null(v) || same_value(json_object_get(cur, key), v)) continue;
      /* What a GET returned while the SHA-256 was still being computed. */
      if (!strcmp(key, "checkSum") && json_is_string(v) && !json_string_value(v)[0]) continue;
      err_set(e, 400, "GOLDEN_IMAGE_FIELD_READ_ONLY",
              "golden image: \"%s\" cannot be changed; only \"name\" and \"description\" can", key);
      err_action(e, "Send the current value of the field, or leave it out.");
      return -1;
    }
    err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in a GoldenImage", key);
    err_action(e, "Remove the field or correct its spelling (see docs/api.md).");
    return -1;
  }
  json_t *name = json_object_get(body, "name");
  if (name && !json_is_null(name) && artifact_check_name("golden image", name, e) < 0) return -1;
  json_t *desc = json_object_get(body, "description");
  if (desc && !json_is_null(desc) && !json_is_string(desc)) {
    err_set(e, 400, "INVALID_FIELD", "golden image: \"description\" must be a string");
    return -1;
  }
  return golden_check_description(json_string_value(desc), e);
}

static struct store_entry *get_existing(struct store_txn *t, const char *id, struct err *e) {
  struct store_entry *en = store_txn_get(t, GOLDEN_COLL, id);
  if (!en) err_set(e, 404, "RESOURCE_NOT_FOUND", "golden image \"%.100s\" does not exist", id);
  return en;
}

int golden_update(struct store *s, const char *id, json_t *body, const char *if_match,
                  struct store_entry **out, struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = get_existing(t, id, e);
  int rc = -1;
  if (!old || artifact_check_if_match(old->doc, if_match, e) < 0) goto out;
  if (is_read_only(old->doc)) {
    err_set(e, 409, "ARTIFACT_READ_ONLY", "golden image \"%s\" is read-only and cannot be changed",
            old->name);
    goto out;
  }
  if (golden_is_deleting(old->doc)) {
    err_set(e, 409, "GOLDEN_IMAGE_DELETING", "golden image \"%s\" is being deleted", old->name);
    goto out;
  }
  if (check_update_body(body, old->doc, id, e) < 0) goto out;
  json_t *doc = json_deep_copy(old->doc);
  json_t *name = json_object_get(body, "name");
  json_t *desc = json_object_get(body, "description");
  if (json_is_string(name)) json_object_set(doc, "name", name);
  if (json_is_string(desc)) json_object_set(doc, "description", desc);
  rc = store_put(t, GOLDEN_COLL, id, json_string_value(json_object_get(doc, "name")), doc, e);
  json_decref(doc);
  if (rc < 0 && e->status == 409)
    err_set(e, 409, "NAME_CONFLICT", "a golden image named \"%s\" already exists",
            json_string_value(name));
out:
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  if (out) *out = store_get(s, GOLDEN_COLL, id);
  return 0;
}

/* ---- delete ------------------------------------------------------------------ */
static int set_state(struct store_txn *t, struct store_entry *en, const char *state,
                     struct err *e) {
  json_t *doc = json_deep_copy(en->doc);
  json_object_set_new(doc, "state", json_string(state));
  int rc = store_put(t, GOLDEN_COLL, en->id, en->name, doc, e);
  json_decref(doc);
  return rc;
}

int golden_delete_begin(struct store *s, const char *id, const char *if_match,
                        struct store_entry **out, struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = get_existing(t, id, e);
  int rc = -1;
  if (!old || artifact_check_if_match(old->doc, if_match, e) < 0) goto out;
  if (is_read_only(old->doc)) {
    err_set(e, 409, "ARTIFACT_READ_ONLY", "golden image \"%s\" is read-only and cannot be deleted",
            old->name);
    goto out;
  }
  if (golden_is_deleting(old->doc)) {
    err_set(e, 409, "GOLDEN_IMAGE_DELETING", "golden image \"%s\" is already being deleted",
            old->name);
    goto out;
  }
  json_t *users = users_of(t, id);
  if (users && json_array_size(users) > 0) {
    char names[1024];
    artifact_names_list(users, names, sizeof names);
    err_set(e, 409, "RESOURCE_IN_USE", "golden image \"%s\" is used by deployment plan(s) %s",
            old->name, names);
    err_action(e, "Change or delete the deployment plans that use it first.");
    json_decref(users);
    goto out;
  }
  json_decref(users);
  rc = set_state(t, old, "Deleting", e);
out:
  if (rc < 0) {
    store_entry_release(old);
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) {
    store_entry_release(old);
    return -1;
  }
  if (out)
    *out = old;
  else
    store_entry_release(old);
  return 0;
}

int golden_delete_finish(struct store *s, const char *id, struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = store_txn_get(t, GOLDEN_COLL, id);
  if (!old) { /* already gone */
    store_rollback(t);
    return 0;
  }
  store_entry_release(old);
  if (store_delete(t, GOLDEN_COLL, id, e) < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

int golden_delete_cancel(struct store *s, const char *id, struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = store_txn_get(t, GOLDEN_COLL, id);
  int rc = old ? set_state(t, old, "OK", e) : 0;
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}
