/* artifact_int.h — private to src/artifact: helpers shared by artifact.c
 * (plan scripts, build plans, deployment plans) and golden.c (golden images). */
#ifndef STREAMER_ARTIFACT_INT_H
#define STREAMER_ARTIFACT_INT_H

#include "artifact/artifact.h"

/* The id part of "/rest/<coll>/<id>" (or a bare id). NULL if another collection. */
const char *artifact_uri_id(const char *uri, const char *coll);
/* 0 when `if_match` is absent, empty, "*" or the doc's eTag (bare or quoted);
 * else -1 with 412 ETAG_MISMATCH. */
int artifact_check_if_match(json_t *doc, const char *if_match, struct err *e);
/* "a", "b", ... (at most 10) from the "name" of each doc of an array. */
void artifact_names_list(json_t *docs, char *buf, size_t size);
/* Set the "dependentArtifacts" of entry `en` of `coll` to [{name, uri}] of
 * each doc of `users` (borrowed), writing only when it changed. */
int artifact_set_dependents(struct store_txn *t, const char *coll, struct store_entry *en,
                            json_t *users, struct err *e);

#endif
