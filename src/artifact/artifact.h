/* artifact.h — the metadata artifacts of HPE Image Streamer: plan scripts,
 * OS build plans and OS deployment plans. Validation and normalization of
 * the HPE wire shapes, referential integrity, read-only rules, derived and
 * merged custom attributes, dependentArtifacts. No HTTP: the API layer
 * passes parsed JSON bodies and maps struct err to responses. */
#ifndef STREAMER_ARTIFACT_H
#define STREAMER_ARTIFACT_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"
#include "util/util.h"

enum artifact_kind { ART_PLAN_SCRIPT, ART_BUILD_PLAN, ART_DEPLOYMENT_PLAN };

const char *artifact_coll(enum artifact_kind k); /* "plan-scripts", ... */

/* Register the public renderings (password values masked) with the store. */
void artifact_register(struct store *s);

/* Create from a client body. *out receives the stored entry (release it). */
int artifact_create(struct store *s, enum artifact_kind k, json_t *body, struct store_entry **out,
                    struct err *e);
/* Inside transaction t: create resource `id` (409 RESOURCE_EXISTS if taken,
 * unless ARTIFACT_REPLACE) from `body` as artifact_create would, or with
 * ARTIFACT_REPLACE replace an existing `id` (no read-only or If-Match check:
 * bundles and restores). ARTIFACT_FROM_BUNDLE: a deployment plan keeps its
 * attributes' values and order as the bundle has them (the appliance's data,
 * e.g. placeholder values that do not satisfy their constraints). References
 * (planScriptUri, oeBuildPlanURI, goldenImageURI) are resolved as t sees
 * them; dependentArtifacts kept up to date in t. */
#define ARTIFACT_REPLACE 1
#define ARTIFACT_FROM_BUNDLE 2
int artifact_txn_put(struct store_txn *t, enum artifact_kind k, const char *id, json_t *body,
                     int flags, struct err *e);
/* Replace resource `id` with `body` (PUT). `if_match` NULL or "*" = no check. */
int artifact_update(struct store *s, enum artifact_kind k, const char *id, json_t *body,
                    const char *if_match, struct store_entry **out, struct err *e);
int artifact_delete(struct store *s, enum artifact_kind k, const char *id, const char *if_match,
                    struct err *e);

/* POST /rest/plan-scripts/differences/{id}: compare the stored script with
 * `content` (NULL = the stored content itself). */
json_t *artifact_differences(struct store *s, const char *id, const char *content, struct err *e);

/* Resources that use artifact `id`: for a plan script the build plans (only
 * read-only ones when readonly_only), for a build plan the deployment plans,
 * for a deployment plan the server profiles. A JSON array of documents. */
json_t *artifact_used_by(struct store *s, enum artifact_kind k, const char *id, int readonly_only,
                         struct err *e);

/* Check a resource name: 1..255 characters, no control characters, none of
 * the characters that HPE rejects. 0 or -1 with e set (400). */
int artifact_check_name(const char *what, json_t *name, struct err *e);

/* ---- golden images (golden.c) ------------------------------------------------
 * The "golden-images" documents: HPE's GoldenImage fields plus Streamer's
 * size, allocatedBytes, format and crc32. The bytes live in a golden volume
 * of the same id (src/vol), which the API layer imports, exports and deletes;
 * this module keeps the documents and their rules. */
#define GOLDEN_COLL "golden-images"

/* What an import produced, for golden_create. */
struct golden_new {
  const char *id; /* the golden volume's id, also the document's */
  const char *name;
  const char *description; /* NULL = "" */
  const char *format;      /* "hpe-zip", "raw", "qcow2", ... */
  uint64_t size;           /* bytes of the raw image */
  uint64_t allocated;      /* bytes stored */
  const char *sha256;      /* hex of the raw image; "" or NULL: still being computed */
  uint32_t crc32;          /* of the raw image */
  const char *member;      /* zip member name of its export */
  const char *log;         /* the import log (GET /rest/golden-images/archive/{id}) */
  /* A capture (imageCapture true): the OS volume and the build plan it was
   * made from (NULL for imports). */
  const char *os_volume_uri, *os_volume_name;
  const char *build_plan_uri, *build_plan_name;
  /* Extracted from an artifact bundle (NULL otherwise): importedFromBundle
   * true, bundleName / bundleURI set; read_only from the bundle. */
  const char *bundle_name, *bundle_uri;
  int read_only;
};

void golden_register(struct store *s);
/* Check a name for a new golden image: the name rules and not taken
 * (400 INVALID_NAME, 409 NAME_CONFLICT). */
int golden_check_new_name(struct store *s, const char *name, struct err *e);
int golden_check_description(const char *description, struct err *e);
int golden_create(struct store *s, const struct golden_new *g, struct store_entry **out,
                  struct err *e);
/* The same inside transaction t (409 GOLDEN_IMAGE_EXISTS / NAME_CONFLICT). */
int golden_txn_create(struct store_txn *t, const struct golden_new *g, struct err *e);
/* A pending checksum computed: checkSum set, checkSumState "OK", log_line
 * appended to the import log. 404 if the image is gone. */
int golden_set_checksum(struct store *s, const char *id, const char *sha256, const char *log_line,
                        struct err *e);
/* Is the image's SHA-256 still being computed (checkSumState "Pending")? */
int golden_checksum_pending(json_t *doc);
/* PUT: name and description may change; other fields must be absent, null
 * or equal to the current value (400 GOLDEN_IMAGE_FIELD_READ_ONLY). */
int golden_update(struct store *s, const char *id, json_t *body, const char *if_match,
                  struct store_entry **out, struct err *e);
/* Deleting is three steps around the volume's removal: golden_delete_begin
 * checks (404, 412 If-Match, 409 read-only / in use by deployment plans /
 * already being deleted) and marks the image state "Deleting" (deployment
 * plans can then no longer refer to it); golden_delete_finish removes the
 * document; golden_delete_cancel puts it back to "OK". *out of begin (may be
 * NULL) receives the entry as it was. */
int golden_delete_begin(struct store *s, const char *id, const char *if_match,
                        struct store_entry **out, struct err *e);
int golden_delete_finish(struct store *s, const char *id, struct err *e);
int golden_delete_cancel(struct store *s, const char *id, struct err *e);
int golden_is_deleting(json_t *doc);
/* Sum of allocatedBytes of every golden image (for the storage quota). */
uint64_t golden_allocated_total(struct store *s);
/* The golden image a reference names (URI, bare id or exact name), as seen
 * by transaction t; NULL if none. Release it. */
struct store_entry *golden_lookup(struct store_txn *t, const char *ref);
/* Recompute dependentArtifacts (the deployment plans using it) of golden
 * image `id` inside t. */
int golden_refresh_deps(struct store_txn *t, const char *id, struct err *e);

#endif
