/* bundle_doc.c — the changes the api makes to bundle and backup documents
 * besides recording them (bundle.c): name checks, rename, delete, and the one
 * backup document. */
#include <stdio.h>
#include <string.h>

#include "artifact/bundle.h"

int bundle_check_new_name(struct store *s, const char *name, struct err *e) {
  json_t *jn = json_string(name ? name : "");
  int rc = artifact_check_name("artifact bundle", jn, e);
  json_decref(jn);
  if (rc < 0) return -1;
  struct store_entry *en = store_get_by_name(s, BUNDLE_COLL, name);
  if (!en) return 0;
  store_entry_release(en);
  err_set(e, 409, "NAME_CONFLICT", "an artifact bundle named \"%s\" already exists", name);
  err_action(e, "Choose another name, or delete or rename the existing bundle.");
  return -1;
}

/* A transaction and bundle document `id` in it; NULL (404, or 500) with nothing open. */
static struct store_entry *begin_on(struct store *s, const char *id, struct store_txn **t,
                                    struct err *e) {
  *t = store_begin(s);
  if (!*t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  struct store_entry *en = store_txn_get(*t, BUNDLE_COLL, id);
  if (!en) {
    store_rollback(*t);
    *t = NULL;
    err_set(e, 404, "RESOURCE_NOT_FOUND", "artifact bundle \"%.100s\" does not exist", id);
  }
  return en;
}

int bundle_put_commit(struct store *s, struct store_txn *t, const char *id, const char *name,
                      json_t *doc, struct store_entry **out, struct err *e) {
  int rc = store_put(t, BUNDLE_COLL, id, name, doc, e);
  if (rc < 0) {
    if (e->status == 409) {
      err_set(e, 409, "NAME_CONFLICT", "an artifact bundle named \"%s\" already exists", name);
      err_action(e, "Choose another name, or delete or rename the existing bundle.");
    }
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  if (out) *out = store_get(s, BUNDLE_COLL, id);
  return 0;
}

int bundle_rename(struct store *s, const char *id, const char *name, const char *if_match,
                  struct store_entry **out, struct err *e) {
  json_t *jn = json_string(name ? name : "");
  int rc = artifact_check_name("artifact bundle", jn, e);
  json_decref(jn);
  if (rc < 0) return -1;
  struct store_txn *t = NULL;
  struct store_entry *en = begin_on(s, id, &t, e);
  if (!en) return -1;
  if (util_check_if_match(json_string_value(json_object_get(en->doc, "eTag")), if_match, e) < 0) {
    store_entry_release(en);
    store_rollback(t);
    return -1;
  }
  if (en->name && strcmp(en->name, name) == 0) { /* nothing to change */
    store_rollback(t);
    if (out)
      *out = en;
    else
      store_entry_release(en);
    return 0;
  }
  json_t *doc = json_deep_copy(en->doc);
  store_entry_release(en);
  json_object_set_new(doc, "name", json_string(name));
  rc = bundle_put_commit(s, t, id, name, doc, out, e);
  json_decref(doc);
  return rc;
}

int bundle_delete_doc(struct store *s, const char *id, struct err *e) {
  struct store_txn *t = NULL;
  struct store_entry *en = begin_on(s, id, &t, e);
  if (!en) return -1;
  store_entry_release(en);
  if (store_delete(t, BUNDLE_COLL, id, e) < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

int bundle_backup_record(struct store *s, const char *id, const char *group_uri, uint64_t size,
                         const char *sha256, struct store_entry **out, char old_id[37],
                         struct err *e) {
  old_id[0] = 0;
  char name[64], uri[128], dl[160];
  char ts[32];
  util_iso8601(util_now_ms(), ts);
  snprintf(name, sizeof name, "backup-%.10s", ts);
  snprintf(uri, sizeof uri, "/rest/artifact-bundles/backups/%s", id);
  snprintf(dl, sizeof dl, "/rest/artifact-bundles/backups/archive/%s", id);
  json_t *doc =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "type",
                "ArtifactsBundleBackup", "uri", uri, "category", BUNDLE_BACKUP_COLL, "id", id,
                "name", name, "downloadURI", dl, "size", (json_int_t)size, "checksum", sha256,
                "checkSum", sha256, "deploymentGroupURI", group_uri, "status", "OK", "state", "OK");
  struct store_txn *t = doc ? store_begin(s) : NULL;
  if (!t) {
    json_decref(doc);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry **v = NULL;
  size_t n = 0;
  if (store_txn_list(t, BUNDLE_BACKUP_COLL, &v, &n) < 0) {
    json_decref(doc);
    store_rollback(t);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (strcmp(v[i]->id, id) == 0) continue;
    snprintf(old_id, 37, "%s", v[i]->id);
    rc = store_delete(t, BUNDLE_BACKUP_COLL, v[i]->id, e);
  }
  store_entries_release(v, n);
  if (rc == 0) rc = store_put(t, BUNDLE_BACKUP_COLL, id, NULL, doc, e);
  json_decref(doc);
  if (rc < 0) {
    store_rollback(t);
    old_id[0] = 0;
    return -1;
  }
  if (store_commit(t, e) < 0) {
    old_id[0] = 0;
    return -1;
  }
  if (out) *out = store_get(s, BUNDLE_BACKUP_COLL, id);
  return 0;
}
