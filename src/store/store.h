/* store.h — the metadata store: named collections of JSON documents with id,
 * optional unique name, revision/eTag and timestamps, in SQLite (WAL) with a
 * write-through in-memory cache so that reads never touch the disk.
 *
 * Documents held by the store are immutable: store_get/store_list hand out
 * references to entries; to change a document, deep-copy it, edit the copy
 * and store_put it inside a transaction. Writers are serialized; readers
 * never wait for a writer's disk I/O. See src/store/README.md. */
#ifndef STREAMER_STORE_H
#define STREAMER_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define STORE_SCHEMA_VERSION 3

struct store;
struct store_txn;

/* One stored document. Read-only for everyone but the store. */
struct store_entry {
  char *coll, *id, *name; /* name NULL when the collection has no unique names */
  json_t *doc;            /* the full document (may hold secrets) */
  char *text;             /* its public rendering (secrets removed), cached */
  size_t len;
  int64_t rev;               /* revision, starts at 1 */
  int refs;                  /* atomic reference count */
  uint64_t seq;              /* insertion order */
  struct store_entry *hnext; /* chain in the id index */
  struct store_entry *nnext; /* chain in the name index */
};

/* Render the public JSON text of a document (e.g. strip password hashes,
 * mask password values). Returns a malloc'd string. Default: json_dumps. */
typedef char *(*store_render_fn)(json_t *doc);

/* Open (creating if needed) the database at `path`, run migrations up to
 * STORE_SCHEMA_VERSION, load every document into memory. A database with a
 * newer schema is refused with a clear message. */
int store_open(struct store **out, const char *path, struct err *e);
/* Same, but migrate only up to `version` (tests of migrations). */
int store_open_version(struct store **out, const char *path, int version, struct err *e);
void store_close(struct store *s);
int store_schema_version(struct store *s);

void store_set_render(struct store *s, const char *coll, store_render_fn fn);

/* Reads (committed state). Release every entry you get. */
struct store_entry *store_get(struct store *s, const char *coll, const char *id);
struct store_entry *store_get_by_name(struct store *s, const char *coll, const char *name);
/* All entries of a collection in insertion order; *out is malloc'd. */
int store_list(struct store *s, const char *coll, struct store_entry ***out, size_t *n);
size_t store_count(struct store *s, const char *coll);
/* A number that changes whenever a commit changes the collection (for caches
 * of derived data: read it before reading the collection). */
uint64_t store_generation(struct store *s, const char *coll);
void store_entry_release(struct store_entry *en);
void store_entries_release(struct store_entry **v, size_t n);

/* The eTag of an entry, "<modified ms>/<revision>", as written into its doc. */

/* Writes. store_begin serializes writers (one at a time) and opens an SQLite
 * transaction; nothing is visible to readers until store_commit. */
struct store_txn *store_begin(struct store *s);
/* Insert or replace document `id` of `coll`. `name` (may be NULL) must be
 * unique in the collection (409 NAME_CONFLICT otherwise). The store sets the
 * doc's "eTag", "created" (kept from the previous revision) and "modified".
 * Takes a reference to doc (caller keeps its own). Returns 0 / -1. */
int store_put(struct store_txn *t, const char *coll, const char *id, const char *name, json_t *doc,
              struct err *e);
int store_delete(struct store_txn *t, const char *coll, const char *id, struct err *e);
/* Reads inside a transaction see the transaction's own writes. */
struct store_entry *store_txn_get(struct store_txn *t, const char *coll, const char *id);
struct store *store_txn_store(struct store_txn *t);
/* Entries of a collection as the transaction sees them (insertion order). */
int store_txn_list(struct store_txn *t, const char *coll, struct store_entry ***out, size_t *n);
int store_commit(struct store_txn *t, struct err *e); /* frees t */
void store_rollback(struct store_txn *t);             /* frees t */

/* Key/value metadata (schema info, settings). */
int store_meta_get(struct store *s, const char *key, char **value);
int store_meta_set(struct store *s, const char *key, const char *value, struct err *e);

#endif
