/* artifact.h — the metadata artifacts of HPE Image Streamer: plan scripts,
 * OS build plans and OS deployment plans. Validation and normalization of
 * the HPE wire shapes, referential integrity, read-only rules, derived and
 * merged custom attributes, dependentArtifacts. No HTTP: the API layer
 * passes parsed JSON bodies and maps struct err to responses. */
#ifndef STREAMER_ARTIFACT_H
#define STREAMER_ARTIFACT_H

#include <jansson.h>

#include "store/store.h"
#include "util/util.h"

enum artifact_kind { ART_PLAN_SCRIPT, ART_BUILD_PLAN, ART_DEPLOYMENT_PLAN };

const char *artifact_coll(enum artifact_kind k); /* "plan-scripts", ... */

/* Register the public renderings (password values masked) with the store. */
void artifact_register(struct store *s);

/* Create from a client body. *out receives the stored entry (release it). */
int artifact_create(struct store *s, enum artifact_kind k, json_t *body, struct store_entry **out,
                    struct err *e);
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

#endif
