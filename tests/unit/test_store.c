/* test_store.c — the document store: put/get/list/delete, name uniqueness,
 * transactions (rollback leaves nothing), persistence across reopen,
 * migrations from an older schema, refusal of a newer schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static char dir[] = "/tmp/streamer-test-store-XXXXXX";
static char path[256];

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-store-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/streamer.db", dir);
  return 0;
}

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static struct store *open_store(void) {
  struct store *s = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  return s;
}

static int put(struct store *s, const char *coll, const char *id, const char *name,
               const char *json, struct err *e) {
  json_t *doc = json_loads(json, 0, NULL);
  struct store_txn *t = store_begin(s);
  int rc = store_put(t, coll, id, name, doc, e);
  json_decref(doc);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

static void test_put_get_list_delete(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  assert_int_equal(put(s, "things", "a", "A", "{\"x\":1}", &e), 0);
  assert_int_equal(put(s, "things", "b", "B", "{\"x\":2}", &e), 0);
  struct store_entry *en = store_get(s, "things", "a");
  assert_non_null(en);
  assert_int_equal(json_integer_value(json_object_get(en->doc, "x")), 1);
  assert_non_null(json_object_get(en->doc, "eTag"));
  assert_non_null(json_object_get(en->doc, "created"));
  assert_int_equal(en->rev, 1);
  store_entry_release(en);
  /* An update bumps the revision and keeps "created". */
  en = store_get(s, "things", "a");
  char *created = strdup(json_string_value(json_object_get(en->doc, "created")));
  store_entry_release(en);
  assert_int_equal(put(s, "things", "a", "A", "{\"x\":3}", &e), 0);
  en = store_get(s, "things", "a");
  assert_int_equal(en->rev, 2);
  assert_string_equal(json_string_value(json_object_get(en->doc, "created")), created);
  free(created);
  store_entry_release(en);
  struct store_entry **v;
  size_t n;
  assert_int_equal(store_list(s, "things", &v, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(v[0]->id, "a"); /* insertion order survives updates */
  assert_string_equal(v[1]->id, "b");
  store_entries_release(v, n);
  en = store_get_by_name(s, "things", "B");
  assert_non_null(en);
  assert_string_equal(en->id, "b");
  store_entry_release(en);
  struct store_txn *t = store_begin(s);
  assert_int_equal(store_delete(t, "things", "a", &e), 0);
  assert_int_equal(store_commit(t, &e), 0);
  assert_null(store_get(s, "things", "a"));
  assert_int_equal(store_count(s, "things"), 1);
  store_close(s);
}

static void test_name_unique(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  assert_int_equal(put(s, "things", "a", "same", "{}", &e), 0);
  assert_int_equal(put(s, "things", "b", "same", "{}", &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "NAME_CONFLICT");
  assert_null(store_get(s, "things", "b"));
  /* Another collection may use the name. */
  assert_int_equal(put(s, "others", "b", "same", "{}", &e), 0);
  /* Unnamed documents never conflict. */
  assert_int_equal(put(s, "tasks", "t1", NULL, "{}", &e), 0);
  assert_int_equal(put(s, "tasks", "t2", NULL, "{}", &e), 0);
  store_close(s);
}

/* The name index follows renames, deletes and table growth. */
static void test_name_index(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  char id[16], name[16];
  for (int i = 0; i < 600; i++) {
    snprintf(id, sizeof id, "id%d", i);
    snprintf(name, sizeof name, "n%d", i);
    assert_int_equal(put(s, "things", id, name, "{}", &e), 0);
  }
  for (int i = 0; i < 600; i += 37) {
    snprintf(name, sizeof name, "n%d", i);
    struct store_entry *en = store_get_by_name(s, "things", name);
    assert_non_null(en);
    snprintf(id, sizeof id, "id%d", i);
    assert_string_equal(en->id, id);
    store_entry_release(en);
  }
  /* rename id5: the old name is free, the new one is taken */
  assert_int_equal(put(s, "things", "id5", "renamed", "{}", &e), 0);
  assert_null(store_get_by_name(s, "things", "n5"));
  struct store_entry *en = store_get_by_name(s, "things", "renamed");
  assert_string_equal(en->id, "id5");
  store_entry_release(en);
  assert_int_equal(put(s, "things", "other", "n5", "{}", &e), 0);
  assert_int_equal(put(s, "things", "again", "renamed", "{}", &e), -1);
  assert_int_equal(e.status, 409);
  /* delete frees the name */
  struct store_txn *t = store_begin(s);
  assert_int_equal(store_delete(t, "things", "id7", &e), 0);
  assert_int_equal(store_commit(t, &e), 0);
  assert_null(store_get_by_name(s, "things", "n7"));
  assert_int_equal(put(s, "things", "new7", "n7", "{}", &e), 0);
  store_close(s);
  /* and all of it after a reopen */
  s = open_store();
  en = store_get_by_name(s, "things", "n7");
  assert_string_equal(en->id, "new7");
  store_entry_release(en);
  assert_int_equal(store_count(s, "things"), 601);
  store_close(s);
}

static void test_rollback_leaves_nothing(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  struct store_txn *t = store_begin(s);
  json_t *doc = json_object();
  assert_int_equal(store_put(t, "things", "x", "X", doc, &e), 0);
  /* The transaction sees its own write; others do not. */
  struct store_entry *en = store_txn_get(t, "things", "x");
  assert_non_null(en);
  store_entry_release(en);
  assert_null(store_get(s, "things", "x"));
  struct store_entry **v;
  size_t n;
  assert_int_equal(store_txn_list(t, "things", &v, &n), 0);
  assert_int_equal(n, 1);
  store_entries_release(v, n);
  store_rollback(t);
  json_decref(doc);
  assert_null(store_get(s, "things", "x"));
  store_close(s);
  /* Nor on disk. */
  s = open_store();
  assert_null(store_get(s, "things", "x"));
  store_close(s);
}

static void test_persistence(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  assert_int_equal(put(s, "things", "a", "A", "{\"k\":\"v\"}", &e), 0);
  struct store_entry *en = store_get(s, "things", "a");
  char *etag = strdup(json_string_value(json_object_get(en->doc, "eTag")));
  store_entry_release(en);
  store_close(s);
  s = open_store();
  en = store_get(s, "things", "a");
  assert_non_null(en);
  assert_string_equal(json_string_value(json_object_get(en->doc, "k")), "v");
  assert_string_equal(json_string_value(json_object_get(en->doc, "eTag")), etag);
  assert_string_equal(en->name, "A");
  store_entry_release(en);
  free(etag);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_close(s);
}

static void test_migration_from_v1(void **state) {
  struct store *s = NULL;
  struct err e;
  err_init(&e);
  /* A database at schema 1 with data written the way version 1 wrote it. */
  assert_int_equal(store_open_version(&s, path, 1, &e), 0);
  assert_int_equal(store_schema_version(s), 1);
  store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO docs (coll,id,uname,rev,body) VALUES"
                                " ('things','b','B',1,'{\"n\":2}'),"
                                " ('things','a','A',1,'{\"n\":1}')",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store();
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  struct store_entry **v;
  size_t n;
  assert_int_equal(store_list(s, "things", &v, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(v[0]->id, "b"); /* order of insertion kept by the migration */
  assert_string_equal(v[1]->id, "a");
  store_entries_release(v, n);
  /* New writes work on the migrated schema. */
  assert_int_equal(put(s, "things", "c", "C", "{}", &e), 0);
  store_close(s);
  s = open_store();
  assert_int_equal(store_count(s, "things"), 3);
  store_close(s);
}

static void test_newer_schema_refused(void **state) {
  struct store *s = open_store();
  store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  struct err e;
  err_init(&e);
  s = NULL;
  assert_int_equal(store_open(&s, path, &e), -1);
  assert_null(s);
  assert_string_equal(e.code, "STORE_SCHEMA_TOO_NEW");
  assert_non_null(strstr(e.message, "newer"));
  assert_non_null(strstr(e.message, "99"));
}

static void test_corrupt_document_refused(void **state) {
  struct store *s = open_store();
  store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO docs (coll,id,uname,rev,body,seq) VALUES"
                                " ('things','a','A',1,'{not json',1)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), -1);
  assert_string_equal(e.code, "STORE_CORRUPT");
  assert_non_null(strstr(e.message, "things/a"));
}

static char *render_secret(json_t *doc) {
  json_t *c = json_copy(doc);
  json_object_del(c, "secret");
  char *s = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  return s;
}

static void test_render(void **state) {
  struct store *s = open_store();
  struct err e;
  err_init(&e);
  store_set_render(s, "users", render_secret);
  assert_int_equal(put(s, "users", "u", "u", "{\"secret\":\"hash\",\"name\":\"u\"}", &e), 0);
  struct store_entry *en = store_get(s, "users", "u");
  assert_null(strstr(en->text, "hash"));
  assert_non_null(json_object_get(en->doc, "secret")); /* the full doc keeps it */
  store_entry_release(en);
  store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get_list_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_name_unique, setup, teardown),
      cmocka_unit_test_setup_teardown(test_name_index, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rollback_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_document_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_render, setup, teardown),
  };
  log_set_level(LOG_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
