/* test_task.c — the task engine: a task runs to Completed with progress, a
 * failing task ends in Error with taskErrors, unfinished tasks of an earlier
 * run are marked interrupted at start. Synchronization by polling the store
 * for a terminal state (bounded), never by sleeping a fixed time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deploy/task.h"

static char dir[64];
static char path[256];

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-task-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/streamer.db", dir);
  return 0;
}

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

/* Wait (bounded) until task `id` reaches a terminal state; return its doc. */
static json_t *wait_done(struct store *s, const char *id) {
  for (int i = 0; i < 20000; i++) {
    struct store_entry *en = store_get(s, "tasks", id);
    if (en) {
      const char *st = json_string_value(json_object_get(en->doc, "taskState"));
      if (st && (!strcmp(st, "Completed") || !strcmp(st, "Error"))) {
        json_t *d = json_deep_copy(en->doc);
        store_entry_release(en);
        return d;
      }
      store_entry_release(en);
    }
    usleep(1000);
  }
  fail_msg("task %s did not finish", id);
  return NULL;
}

static int work_ok(struct task *t, void *arg, struct err *e) {
  int *ran = arg;
  task_progress(t, 50, "half way");
  task_set_resource(t, "/rest/things/1", "thing one");
  *ran = 1;
  return 0;
}

static int work_fail(struct task *t, void *arg, struct err *e) {
  err_set(e, 400, "THING_BROKEN", "the thing is broken: %s", (const char *)arg);
  return -1;
}

static int freed;
static void free_arg(void *p) { freed++; }

static void test_complete(void **state) {
  struct store *s;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  struct task_engine *te = task_engine_start(s, 2, &e);
  assert_non_null(te);
  int ran = 0;
  freed = 0;
  json_t *assoc =
      json_pack("{s:s, s:s}", "resourceUri", "/rest/things/1", "resourceCategory", "things");
  json_t *t = task_submit(te, "Create", "administrator", assoc, work_ok, &ran, free_arg, &e);
  json_decref(assoc);
  assert_non_null(t);
  assert_string_equal(json_string_value(json_object_get(t, "type")), "TaskResourceV2");
  assert_string_equal(json_string_value(json_object_get(t, "category")), "tasks");
  const char *uri = json_string_value(json_object_get(t, "uri"));
  assert_true(strncmp(uri, "/rest/tasks/", 12) == 0);
  json_t *d = wait_done(s, uri + 12);
  assert_string_equal(json_string_value(json_object_get(d, "taskState")), "Completed");
  assert_int_equal(json_integer_value(json_object_get(d, "percentComplete")), 100);
  assert_int_equal(json_array_size(json_object_get(d, "taskErrors")), 0);
  json_t *ups = json_object_get(d, "progressUpdates");
  assert_true(json_array_size(ups) >= 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(ups, 0), "statusUpdate")),
                      "half way");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(d, "associatedResource"), "resourceName")),
      "thing one");
  assert_int_equal(ran, 1);
  json_decref(d);
  json_decref(t);
  task_engine_stop(te);
  assert_int_equal(freed, 1);
  store_close(s);
}

static void test_error(void **state) {
  struct store *s;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  struct task_engine *te = task_engine_start(s, 1, &e);
  json_t *t = task_submit(te, "Break", "administrator", NULL, work_fail, "gears", NULL, &e);
  assert_non_null(t);
  json_t *d = wait_done(s, json_string_value(json_object_get(t, "id")));
  assert_string_equal(json_string_value(json_object_get(d, "taskState")), "Error");
  json_t *errs = json_object_get(d, "taskErrors");
  assert_int_equal(json_array_size(errs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 0), "errorCode")),
                      "THING_BROKEN");
  assert_non_null(
      strstr(json_string_value(json_object_get(json_array_get(errs, 0), "message")), "gears"));
  json_decref(d);
  json_decref(t);
  task_engine_stop(te);
  store_close(s);
}

static void test_interrupted(void **state) {
  struct store *s;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  /* Tasks as a crashed daemon left them. */
  const char *states[] = {"Running", "New", "Completed"};
  const char *ids[] = {"t-running", "t-new", "t-done"};
  struct store_txn *t = store_begin(s);
  for (int i = 0; i < 3; i++) {
    json_t *doc = json_pack("{s:s, s:s, s:s, s:[], s:[]}", "type", "TaskResourceV2", "taskState",
                            states[i], "name", "Create", "taskErrors", "progressUpdates");
    assert_int_equal(store_put(t, "tasks", ids[i], NULL, doc, &e), 0);
    json_decref(doc);
  }
  assert_int_equal(store_commit(t, &e), 0);
  struct task_engine *te = task_engine_start(s, 1, &e);
  assert_non_null(te);
  for (int i = 0; i < 3; i++) {
    struct store_entry *en = store_get(s, "tasks", ids[i]);
    const char *st = json_string_value(json_object_get(en->doc, "taskState"));
    if (i < 2) {
      assert_string_equal(st, "Error");
      assert_string_equal(json_string_value(json_object_get(en->doc, "stateReason")),
                          "interrupted");
      json_t *errs = json_object_get(en->doc, "taskErrors");
      assert_int_equal(json_array_size(errs), 1);
      assert_non_null(strstr(json_string_value(json_object_get(json_array_get(errs, 0), "message")),
                             "interrupted"));
    } else {
      assert_string_equal(st, "Completed");
    }
    store_entry_release(en);
  }
  task_engine_stop(te);
  store_close(s);
}

/* task_create: visible as Running at once, progress before the work starts,
 * then task_start queues the work; task_abandon ends one as Error. */
static void test_create_start(void **state) {
  struct store *s;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  struct task_engine *te = task_engine_start(s, 1, &e);
  struct task *t = task_create(te, "Upload", "administrator", NULL, &e);
  assert_non_null(t);
  char id[64];
  snprintf(id, sizeof id, "%s", task_uri(t) + 12);
  struct store_entry *en = store_get(s, "tasks", id);
  assert_non_null(en);
  assert_string_equal(json_string_value(json_object_get(en->doc, "taskState")), "Running");
  store_entry_release(en);
  task_percent(t, 20);
  task_progress(t, 40, "received %d bytes", 40);
  en = store_get(s, "tasks", id);
  assert_int_equal(json_integer_value(json_object_get(en->doc, "percentComplete")), 40);
  assert_int_equal(json_array_size(json_object_get(en->doc, "progressUpdates")), 1);
  store_entry_release(en);
  int ran = 0;
  freed = 0;
  json_t *doc = NULL;
  assert_int_equal(task_start(t, work_ok, &ran, free_arg, &doc, &e), 0);
  assert_non_null(doc);
  assert_string_equal(json_string_value(json_object_get(doc, "uri")) + 12, id);
  assert_non_null(json_string_value(json_object_get(doc, "eTag")));
  assert_int_equal(json_integer_value(json_object_get(doc, "percentComplete")), 40);
  json_decref(doc);
  json_t *d = wait_done(s, id);
  assert_string_equal(json_string_value(json_object_get(d, "taskState")), "Completed");
  assert_int_equal(json_array_size(json_object_get(d, "progressUpdates")), 2);
  assert_int_equal(ran, 1);
  json_decref(d);

  struct task *t2 = task_create(te, "Upload", "administrator", NULL, &e);
  assert_non_null(t2);
  snprintf(id, sizeof id, "%s", task_uri(t2) + 12);
  struct err why;
  err_init(&why);
  err_set(&why, 400, "BAD_UPLOAD", "the upload was bad");
  task_abandon(t2, &why);
  en = store_get(s, "tasks", id);
  assert_string_equal(json_string_value(json_object_get(en->doc, "taskState")), "Error");
  json_t *errs = json_object_get(en->doc, "taskErrors");
  assert_int_equal(json_array_size(errs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 0), "errorCode")),
                      "BAD_UPLOAD");
  store_entry_release(en);
  task_engine_stop(te);
  assert_int_equal(freed, 1);

  store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_complete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_interrupted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_start, setup, teardown),
  };
  log_set_level(LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
