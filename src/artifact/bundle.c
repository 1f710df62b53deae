/* bundle.c — artifact bundle documents, extraction, creation, backup and
 * restore. The zip format itself (reading, vetting, writing) is bundle_zip.c. */
#include <stdio.h>
#include <string.h>

#include "artifact/bundle.h"
#include "artifact/bundle_int.h"

static char *render_bundle(json_t *doc) { return json_dumps(doc, JSON_COMPACT); }

void bundle_register(struct store *s) {
  store_set_render(s, BUNDLE_COLL, render_bundle);
  store_set_render(s, BUNDLE_BACKUP_COLL, render_bundle);
}

int bundle_record(struct store *s, const char *id, const char *name, const char *description,
                  json_t *contents, uint64_t size, const char *sha256, int imported,
                  struct store_entry **out, struct err *e) {
  json_t *jn = json_string(name ? name : "");
  if (artifact_check_name("artifact bundle", jn, e) < 0) {
    json_decref(jn);
    return -1;
  }
  json_decref(jn);
  json_t *doc = json_deep_copy(contents);
  if (!doc) doc = json_object();
  char *uri = util_strdup_printf("/rest/%s/%s", BUNDLE_COLL, id);
  char *dl = util_strdup_printf("/rest/%s/download/%s", BUNDLE_COLL, id);
  json_t *head = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:I, s:s, s:s, s:s, s:s, s:s}",
      "type", "ArtifactsBundle", "uri", uri, "category", BUNDLE_COLL, "id", id, "artifactsbundleID",
      id, "name", name, "description", description ? description : "", "readOnly",
      bundle_contents_read_only(contents), "importbundle", imported, "recoverBundle", 0,
      "backupService", 0, "size", (json_int_t)size, "checksum", sha256 ? sha256 : "", "checkSum",
      sha256 ? sha256 : "", "downloadURI", dl, "status", "OK", "state", "OK");
  free(uri);
  free(dl);
  if (!head) {
    json_decref(doc);
    err_set(e, 400, "INVALID_FIELD", "artifact bundle: the name or description is not UTF-8 text");
    return -1;
  }
  /* head's fields first, then the contents (keys already in head skipped). */
  const char *k;
  json_t *v;
  json_object_foreach(doc, k, v) {
    if (!json_object_get(head, k)) json_object_set(head, k, v);
  }
  json_decref(doc);
  if (!json_object_get(head, "extracted")) json_object_set_new(head, "extracted", json_false());
  json_object_set_new(head, "lastExtracted", json_null());
  json_object_set_new(head, "lastBackUpDownloadTime", json_null());
  struct store_txn *t = store_begin(s);
  if (!t) {
    json_decref(head);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int rc = bundle_put_commit(s, t, id, name, head, out, e);
  json_decref(head);
  return rc;
}
