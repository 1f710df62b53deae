/* store.c — SQLite-backed document store with an in-memory cache.
 *
 * On disk (schema version 2):
 *   docs(coll TEXT, id TEXT, uname TEXT, rev INTEGER, body TEXT)  PK(coll,id), UNIQUE(coll,uname)
 *   meta(key TEXT PRIMARY KEY, value TEXT)
 *   PRAGMA user_version = schema version; journal_mode = WAL.
 * In memory: one hash table per collection (by id and by name), entries
 * refcounted so that readers can keep using an entry after it is replaced. */
#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

struct coll {
  char *name;
  store_render_fn render;
  struct store_entry **byid;   /* chained by hnext */
  struct store_entry **byname; /* named entries, chained by nnext */
  size_t nbuckets, count;
  uint64_t gen; /* bumped by every commit that changes the collection */
  struct coll *next;
};

struct store {
  sqlite3 *db;
  pthread_rwlock_t cache_lock; /* guards the cache */
  pthread_mutex_t write_lock;  /* one writer at a time */
  struct coll *colls;
  uint64_t seq;           /* cache insertion order */
  int64_t db_seq;         /* highest docs.seq on disk (writers only) */
  sqlite3_stmt *put_stmt; /* prepared upsert, used under write_lock */
  int version;
};

struct op {
  struct store_entry *en; /* new entry, or NULL for delete */
  char *coll, *id;
  struct op *next;
};

struct store_txn {
  struct store *s;
  struct op *ops, *last;
  int failed;
};

/* ---- entries ------------------------------------------------------------ */
static void entry_free(struct store_entry *en) {
  free(en->coll);
  free(en->id);
  free(en->name);
  json_decref(en->doc);
  free(en->text);
  free(en);
}

void store_entry_release(struct store_entry *en) {
  if (en && __atomic_sub_fetch(&en->refs, 1, __ATOMIC_ACQ_REL) == 0) entry_free(en);
}

void store_entries_release(struct store_entry **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    store_entry_release(v[i]);
  free(v);
}

static struct store_entry *entry_ref(struct store_entry *en) {
  if (en) __atomic_add_fetch(&en->refs, 1, __ATOMIC_ACQ_REL);
  return en;
}

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* ---- collections (cache) ------------------------------------------------- */
static struct coll *coll_find(struct store *s, const char *name, int create) {
  for (struct coll *c = s->colls; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  if (!create) return NULL;
  struct coll *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->name = strdup(name);
  c->nbuckets = 64;
  c->byid = calloc(c->nbuckets, sizeof *c->byid);
  c->byname = calloc(c->nbuckets, sizeof *c->byname);
  if (!c->name || !c->byid || !c->byname) {
    free(c->name);
    free(c->byid);
    free(c->byname);
    free(c);
    return NULL;
  }
  c->next = s->colls;
  s->colls = c;
  return c;
}

static struct store_entry *coll_lookup(struct coll *c, const char *id) {
  if (!c) return NULL;
  for (struct store_entry *en = c->byid[hash_str(id) % c->nbuckets]; en; en = en->hnext)
    if (strcmp(en->id, id) == 0) return en;
  return NULL;
}

static void name_link(struct coll *c, struct store_entry *en) {
  if (!en->name) return;
  size_t b = hash_str(en->name) % c->nbuckets;
  en->nnext = c->byname[b];
  c->byname[b] = en;
}

static void name_unlink(struct coll *c, struct store_entry *en) {
  if (!en->name) return;
  for (struct store_entry **pp = &c->byname[hash_str(en->name) % c->nbuckets]; *pp;
       pp = &(*pp)->nnext) {
    if (*pp == en) {
      *pp = en->nnext;
      en->nnext = NULL;
      return;
    }
  }
}

static void coll_grow(struct coll *c) {
  size_t nb = c->nbuckets * 2;
  struct store_entry **nt = calloc(nb, sizeof *nt), **nn = calloc(nb, sizeof *nn);
  if (!nt || !nn) { /* keep the longer chains */
    free(nt);
    free(nn);
    return;
  }
  for (size_t i = 0; i < c->nbuckets; i++) {
    struct store_entry *en = c->byid[i];
    while (en) {
      struct store_entry *next = en->hnext;
      size_t b = hash_str(en->id) % nb;
      en->hnext = nt[b];
      nt[b] = en;
      if (en->name) {
        size_t bn = hash_str(en->name) % nb;
        en->nnext = nn[bn];
        nn[bn] = en;
      }
      en = next;
    }
  }
  free(c->byid);
  free(c->byname);
  c->byid = nt;
  c->byname = nn;
  c->nbuckets = nb;
}

/* Insert or replace; takes over the caller's reference to en. */
static void coll_set(struct coll *c, struct store_entry *en) {
  struct store_entry **pp = &c->byid[hash_str(en->id) % c->nbuckets];
  for (; *pp; pp = &(*pp)->hnext) {
    if (strcmp((*pp)->id, en->id) == 0) {
      struct store_entry *old = *pp;
      name_unlink(c, old);
      en->hnext = old->hnext;
      en->seq = old->seq;
      *pp = en;
      name_link(c, en);
      old->hnext = NULL;
      store_entry_release(old);
      return;
    }
  }
  en->hnext = NULL;
  *pp = en;
  name_link(c, en);
  c->count++;
  if (c->count > c->nbuckets * 2) coll_grow(c);
}

static void coll_remove(struct coll *c, const char *id) {
  if (!c) return;
  struct store_entry **pp = &c->byid[hash_str(id) % c->nbuckets];
  for (; *pp; pp = &(*pp)->hnext) {
    if (strcmp((*pp)->id, id) == 0) {
      struct store_entry *old = *pp;
      *pp = old->hnext;
      old->hnext = NULL;
      name_unlink(c, old);
      c->count--;
      store_entry_release(old);
      return;
    }
  }
}

static char *render(struct store *s, const char *coll, json_t *doc, size_t *len) {
  struct coll *c = coll_find(s, coll, 0);
  char *text = (c && c->render) ? c->render(doc) : json_dumps(doc, JSON_COMPACT);
  *len = text ? strlen(text) : 0;
  return text;
}

static struct store_entry *entry_new(struct store *s, const char *coll, const char *id,
                                     const char *name, json_t *doc, int64_t rev) {
  struct store_entry *en = calloc(1, sizeof *en);
  if (!en) return NULL;
  en->coll = strdup(coll);
  en->id = strdup(id);
  en->name = name ? strdup(name) : NULL;
  en->doc = json_incref(doc);
  en->rev = rev;
  en->refs = 1;
  en->text = render(s, coll, doc, &en->len);
  if (!en->coll || !en->id || (name && !en->name) || !en->text) {
    entry_free(en);
    return NULL;
  }
  return en;
}

/* ---- open, migrations ----------------------------------------------------- */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 1: documents and metadata */
    ("CREATE TABLE docs (coll TEXT NOT NULL, id TEXT NOT NULL, uname TEXT, rev INTEGER NOT NULL,"
     " body TEXT NOT NULL, PRIMARY KEY (coll, id));"
     "CREATE UNIQUE INDEX docs_name ON docs (coll, uname);"
     "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"),
    /* 2: insertion order survives restarts (lists keep creation order) */
    ("ALTER TABLE docs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
     "UPDATE docs SET seq = rowid;"),
    /* 3: loading in insertion order without a sort */
    "CREATE INDEX docs_seq ON docs (seq);",
};

static int exec_sql(sqlite3 *db, const char *sql, struct err *e) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    err_set(e, 500, "STORE_ERROR", "database: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static int user_version(sqlite3 *db) {
  sqlite3_stmt *st;
  int v = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int migrate(struct store *s, const char *path, int target, struct err *e) {
  int v = user_version(s->db);
  if (v < 0) {
    err_set(e, 500, "STORE_ERROR", "%s: cannot read the schema version: %s", path,
            sqlite3_errmsg(s->db));
    return -1;
  }
  if (v > STORE_SCHEMA_VERSION) {
    err_set(e, 500, "STORE_SCHEMA_TOO_NEW",
            "%s: the database has schema version %d, newer than this streamerd supports (%d); "
            "run a newer streamerd or restore a backup made by this version",
            path, v, STORE_SCHEMA_VERSION);
    return -1;
  }
  for (; v < target; v++) {
    if (exec_sql(s->db, "BEGIN IMMEDIATE", e) < 0) return -1;
    char *pragma = util_strdup_printf("PRAGMA user_version = %d", v + 1);
    if (exec_sql(s->db, migrations[v], e) < 0 || !pragma || exec_sql(s->db, pragma, e) < 0) {
      free(pragma);
      exec_sql(s->db, "ROLLBACK", NULL);
      err_details(e, "migration %d -> %d failed; the database is unchanged", v, v + 1);
      return -1;
    }
    free(pragma);
    if (exec_sql(s->db, "COMMIT", e) < 0) return -1;
    log_info("store", "migrated %s to schema version %d", path, v + 1);
  }
  s->version = v;
  return 0;
}

static int load_all(struct store *s, struct err *e) {
  sqlite3_stmt *st;
  if (s->version >= 2 && sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(seq), 0) FROM docs", -1,
                                            &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) s->db_seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  const char *sql = s->version >= 2 ? "SELECT coll, id, uname, rev, body FROM docs ORDER BY seq"
                                    : "SELECT coll, id, uname, rev, body FROM docs ORDER BY rowid";
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
    err_set(e, 500, "STORE_ERROR", "database: %s", sqlite3_errmsg(s->db));
    return -1;
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *coll = (const char *)sqlite3_column_text(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    const char *name = (const char *)sqlite3_column_text(st, 2);
    json_error_t je;
    json_t *doc = json_loads((const char *)sqlite3_column_text(st, 4), 0, &je);
    if (!doc) {
      err_set(e, 500, "STORE_CORRUPT", "database: document %s/%s is not valid JSON: %s", coll, id,
              je.text);
      sqlite3_finalize(st);
      return -1;
    }
    struct coll *c = coll_find(s, coll, 1);
    struct store_entry *en =
        c ? entry_new(s, coll, id, name, doc, sqlite3_column_int64(st, 3)) : NULL;
    json_decref(doc);
    if (!en) {
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory loading the store");
      sqlite3_finalize(st);
      return -1;
    }
    en->seq = ++s->seq;
    coll_set(c, en);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    err_set(e, 500, "STORE_ERROR", "database: %s", sqlite3_errmsg(s->db));
    return -1;
  }
  return 0;
}

int store_open_version(struct store **out, const char *path, int version, struct err *e) {
  struct store *s = calloc(1, sizeof *s);
  if (!s) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  pthread_rwlock_init(&s->cache_lock, NULL);
  pthread_mutex_init(&s->write_lock, NULL);
  if (sqlite3_open_v2(path, &s->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      NULL) != SQLITE_OK) {
    err_set(e, 500, "STORE_ERROR", "%s: cannot open the database: %s", path,
            s->db ? sqlite3_errmsg(s->db) : "out of memory");
    store_close(s);
    return -1;
  }
  sqlite3_busy_timeout(s->db, 5000);
  if (exec_sql(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", e) < 0 ||
      migrate(s, path, version, e) < 0 || load_all(s, e) < 0) {
    store_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

int store_open(struct store **out, const char *path, struct err *e) {
  return store_open_version(out, path, STORE_SCHEMA_VERSION, e);
}

void store_close(struct store *s) {
  if (!s) return;
  for (struct coll *c = s->colls, *n; c; c = n) {
    n = c->next;
    for (size_t i = 0; i < c->nbuckets; i++) {
      for (struct store_entry *en = c->byid[i], *nx; en; en = nx) {
        nx = en->hnext;
        store_entry_release(en);
      }
    }
    free(c->byid);
    free(c->byname);
    free(c->name);
    free(c);
  }
  sqlite3_finalize(s->put_stmt);
  if (s->db) sqlite3_close(s->db);
  pthread_rwlock_destroy(&s->cache_lock);
  pthread_mutex_destroy(&s->write_lock);
  free(s);
}

int store_schema_version(struct store *s) { return s->version; }

void store_set_render(struct store *s, const char *coll, store_render_fn fn) {
  pthread_rwlock_wrlock(&s->cache_lock);
  struct coll *c = coll_find(s, coll, 1);
  if (c) {
    c->render = fn;
    c->gen++;
    /* Re-render what was loaded before the renderer was known. */
    for (size_t i = 0; i < c->nbuckets; i++) {
      for (struct store_entry *en = c->byid[i]; en; en = en->hnext) {
        size_t len;
        char *t = render(s, coll, en->doc, &len);
        if (t) {
          free(en->text);
          en->text = t;
          en->len = len;
        }
      }
    }
  }
  pthread_rwlock_unlock(&s->cache_lock);
}

/* ---- reads ------------------------------------------------------------------ */
struct store_entry *store_get(struct store *s, const char *coll, const char *id) {
  pthread_rwlock_rdlock(&s->cache_lock);
  struct store_entry *en = entry_ref(coll_lookup(coll_find(s, coll, 0), id));
  pthread_rwlock_unlock(&s->cache_lock);
  return en;
}

static struct store_entry *lookup_name_locked(struct store *s, const char *coll, const char *name) {
  struct coll *c = coll_find(s, coll, 0);
  if (!c) return NULL;
  for (struct store_entry *en = c->byname[hash_str(name) % c->nbuckets]; en; en = en->nnext)
    if (strcmp(en->name, name) == 0) return en;
  return NULL;
}

struct store_entry *store_get_by_name(struct store *s, const char *coll, const char *name) {
  pthread_rwlock_rdlock(&s->cache_lock);
  struct store_entry *en = entry_ref(lookup_name_locked(s, coll, name));
  pthread_rwlock_unlock(&s->cache_lock);
  return en;
}

static int by_seq(const void *a, const void *b) {
  const struct store_entry *x = *(struct store_entry *const *)a;
  const struct store_entry *y = *(struct store_entry *const *)b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int store_list(struct store *s, const char *coll, struct store_entry ***out, size_t *n) {
  pthread_rwlock_rdlock(&s->cache_lock);
  struct coll *c = coll_find(s, coll, 0);
  size_t cnt = c ? c->count : 0, k = 0;
  struct store_entry **v = malloc((cnt ? cnt : 1) * sizeof *v);
  if (!v) {
    pthread_rwlock_unlock(&s->cache_lock);
    return -1;
  }
  if (c)
    for (size_t i = 0; i < c->nbuckets; i++)
      for (struct store_entry *en = c->byid[i]; en; en = en->hnext)
        v[k++] = entry_ref(en);
  pthread_rwlock_unlock(&s->cache_lock);
  qsort(v, k, sizeof *v, by_seq);
  *out = v;
  *n = k;
  return 0;
}

uint64_t store_generation(struct store *s, const char *coll) {
  pthread_rwlock_rdlock(&s->cache_lock);
  struct coll *c = coll_find(s, coll, 0);
  uint64_t g = c ? c->gen : 0;
  pthread_rwlock_unlock(&s->cache_lock);
  return g;
}

size_t store_count(struct store *s, const char *coll) {
  pthread_rwlock_rdlock(&s->cache_lock);
  struct coll *c = coll_find(s, coll, 0);
  size_t n = c ? c->count : 0;
  pthread_rwlock_unlock(&s->cache_lock);
  return n;
}

/* ---- writes ----------------------------------------------------------------- */
struct store_txn *store_begin(struct store *s) {
  struct store_txn *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  pthread_mutex_lock(&s->write_lock);
  t->s = s;
  if (exec_sql(s->db, "BEGIN IMMEDIATE", NULL) < 0) t->failed = 1;
  return t;
}

static struct op *txn_find(struct store_txn *t, const char *coll, const char *id) {
  struct op *found = NULL;
  for (struct op *o = t->ops; o; o = o->next)
    if (strcmp(o->coll, coll) == 0 && strcmp(o->id, id) == 0) found = o;
  return found;
}

struct store_entry *store_txn_get(struct store_txn *t, const char *coll, const char *id) {
  struct op *o = txn_find(t, coll, id);
  if (o) return entry_ref(o->en);
  return store_get(t->s, coll, id);
}

struct store *store_txn_store(struct store_txn *t) {
  return t->s;
}

int store_txn_list(struct store_txn *t, const char *coll, struct store_entry ***out, size_t *n) {
  struct store_entry **v;
  size_t k;
  if (store_list(t->s, coll, &v, &k) < 0) return -1;
  size_t extra = 0;
  for (struct op *o = t->ops; o; o = o->next)
    extra++;
  struct store_entry **w = realloc(v, (k + extra + 1) * sizeof *w);
  if (!w) {
    store_entries_release(v, k);
    return -1;
  }
  v = w;
  /* Replace or drop committed entries the transaction changed. */
  size_t j = 0;
  for (size_t i = 0; i < k; i++) {
    struct op *o = txn_find(t, coll, v[i]->id);
    if (!o) {
      v[j++] = v[i];
      continue;
    }
    store_entry_release(v[i]);
    if (o->en) v[j++] = entry_ref(o->en);
  }
  /* Then entries the transaction created. */
  for (struct op *o = t->ops; o; o = o->next) {
    if (!o->en || strcmp(o->coll, coll) != 0 || txn_find(t, coll, o->id) != o) continue;
    int seen = 0;
    for (size_t i = 0; i < j && !seen; i++)
      seen = strcmp(v[i]->id, o->id) == 0;
    if (!seen) v[j++] = entry_ref(o->en);
  }
  *out = v;
  *n = j;
  return 0;
}

/* Is `name` taken in `coll` by another id, as seen by the transaction? */
static int name_taken(struct store_txn *t, const char *coll, const char *name, const char *id) {
  for (struct op *o = t->ops; o; o = o->next) {
    if (strcmp(o->coll, coll) != 0) continue;
    struct op *latest = txn_find(t, coll, o->id);
    if (latest != o) continue;
    if (o->en && o->en->name && strcmp(o->en->name, name) == 0 && strcmp(o->id, id) != 0) return 1;
  }
  pthread_rwlock_rdlock(&t->s->cache_lock);
  struct store_entry *en = lookup_name_locked(t->s, coll, name);
  int taken = en && strcmp(en->id, id) != 0 && !txn_find(t, coll, en->id);
  pthread_rwlock_unlock(&t->s->cache_lock);
  return taken;
}

static int txn_add(struct store_txn *t, const char *coll, const char *id, struct store_entry *en) {
  struct op *o = calloc(1, sizeof *o);
  if (!o || !(o->coll = strdup(coll)) || !(o->id = strdup(id))) {
    if (o) free(o->coll);
    free(o);
    return -1;
  }
  o->en = en;
  if (t->last)
    t->last->next = o;
  else
    t->ops = o;
  t->last = o;
  return 0;
}

int store_put(struct store_txn *t, const char *coll, const char *id, const char *name, json_t *doc,
              struct err *e) {
  if (t->failed) {
    err_set(e, 500, "STORE_ERROR", "the transaction has already failed");
    return -1;
  }
  if (name && name_taken(t, coll, name, id)) {
    err_set(e, 409, "NAME_CONFLICT", "a resource named \"%s\" already exists in %s", name, coll);
    err_action(e, "Choose another name, or update the existing resource.");
    return -1;
  }
  struct store_entry *prev = store_txn_get(t, coll, id);
  int64_t rev = prev ? prev->rev + 1 : 1;
  int64_t now = util_now_ms();
  char ts[32], etag[48];
  util_iso8601(now, ts);
  snprintf(etag, sizeof etag, "%lld/%lld", (long long)now, (long long)rev);
  json_t *created = prev ? json_object_get(prev->doc, "created") : NULL;
  json_object_set_new(doc, "created",
                      json_is_string(created) ? json_copy(created) : json_string(ts));
  json_object_set_new(doc, "modified", json_string(ts));
  json_object_set_new(doc, "eTag", json_string(etag));
  store_entry_release(prev);

  char *body = json_dumps(doc, JSON_COMPACT);
  struct store *s = t->s;
  if (!s->put_stmt &&
      sqlite3_prepare_v2(s->db,
                         "INSERT INTO docs (coll, id, uname, rev, body, seq) VALUES (?,?,?,?,?,?)"
                         " ON CONFLICT(coll, id) DO UPDATE SET uname=excluded.uname,"
                         " rev=excluded.rev, body=excluded.body",
                         -1, &s->put_stmt, NULL) != SQLITE_OK)
    s->put_stmt = NULL;
  sqlite3_stmt *st = s->put_stmt;
  int ok = body && st;
  if (ok) {
    sqlite3_bind_text(st, 1, coll, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (name)
      sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    else
      sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, rev);
    sqlite3_bind_text(st, 5, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, s->db_seq + 1); /* ignored on update */
    ok = sqlite3_step(st) == SQLITE_DONE;
    if (ok) s->db_seq++;
  }
  if (!ok) {
    err_set(e, 500, "STORE_ERROR", "database write %s/%s: %s", coll, id, sqlite3_errmsg(t->s->db));
    t->failed = 1;
  }
  if (st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  free(body);
  if (!ok) return -1;
  pthread_rwlock_rdlock(&t->s->cache_lock); /* renderer lookup */
  struct store_entry *en = entry_new(t->s, coll, id, name, doc, rev);
  pthread_rwlock_unlock(&t->s->cache_lock);
  if (!en || txn_add(t, coll, id, en) < 0) {
    if (en) entry_free(en);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    t->failed = 1;
    return -1;
  }
  return 0;
}

int store_delete(struct store_txn *t, const char *coll, const char *id, struct err *e) {
  if (t->failed) {
    err_set(e, 500, "STORE_ERROR", "the transaction has already failed");
    return -1;
  }
  sqlite3_stmt *st = NULL;
  int ok = sqlite3_prepare_v2(t->s->db, "DELETE FROM docs WHERE coll=? AND id=?", -1, &st, NULL) ==
           SQLITE_OK;
  if (ok) {
    sqlite3_bind_text(st, 1, coll, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (!ok || txn_add(t, coll, id, NULL) < 0) {
    err_set(e, 500, "STORE_ERROR", "database delete %s/%s: %s", coll, id, sqlite3_errmsg(t->s->db));
    t->failed = 1;
    return -1;
  }
  return 0;
}

static void txn_free(struct store_txn *t) {
  for (struct op *o = t->ops, *n; o; o = n) {
    n = o->next;
    if (o->en) store_entry_release(o->en);
    free(o->coll);
    free(o->id);
    free(o);
  }
  pthread_mutex_unlock(&t->s->write_lock);
  free(t);
}

int store_commit(struct store_txn *t, struct err *e) {
  struct store *s = t->s;
  if (t->failed || exec_sql(s->db, "COMMIT", e) < 0) {
    if (t->failed) err_set(e, 500, "STORE_ERROR", "the transaction failed and was rolled back");
    exec_sql(s->db, "ROLLBACK", NULL);
    txn_free(t);
    return -1;
  }
  pthread_rwlock_wrlock(&s->cache_lock);
  for (struct op *o = t->ops; o; o = o->next) {
    struct coll *c = coll_find(s, o->coll, 1);
    if (!c) continue;
    c->gen++;
    if (o->en) {
      if (!coll_lookup(c, o->id)) o->en->seq = ++s->seq;
      coll_set(c, entry_ref(o->en));
    } else {
      coll_remove(c, o->id);
    }
  }
  pthread_rwlock_unlock(&s->cache_lock);
  txn_free(t);
  return 0;
}

void store_rollback(struct store_txn *t) {
  exec_sql(t->s->db, "ROLLBACK", NULL);
  txn_free(t);
}

/* ---- meta ------------------------------------------------------------------- */
int store_meta_get(struct store *s, const char *key, char **value) {
  sqlite3_stmt *st;
  *value = NULL;
  pthread_mutex_lock(&s->write_lock);
  int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      *value = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  pthread_mutex_unlock(&s->write_lock);
  return *value ? 0 : -1;
}

int store_meta_set(struct store *s, const char *key, const char *value, struct err *e) {
  sqlite3_stmt *st;
  pthread_mutex_lock(&s->write_lock);
  int ok = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", -1,
                              &st, NULL) == SQLITE_OK;
  if (ok) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
  }
  if (!ok) err_set(e, 500, "STORE_ERROR", "database: %s", sqlite3_errmsg(s->db));
  pthread_mutex_unlock(&s->write_lock);
  return ok ? 0 : -1;
}
