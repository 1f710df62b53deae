/* task.c — worker pool and TaskResourceV2 documents for long operations. */
#include "deploy/task.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct task {
  struct task_engine *te;
  char id[37];
  char uri[64];
  json_t *doc; /* private working copy, persisted on every change */
  task_fn fn;
  void *arg;
  void (*free_arg)(void *);
  struct task *next;
};

struct task_engine {
  struct store *s;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct task *head, *tail;
  int stopping;
  int nworkers;
  pthread_t *workers;
  long update_id;
};

static const char *COLL = "tasks";

static int persist(struct task_engine *te, const char *id, json_t *doc, struct err *e) {
  struct store_txn *t = store_begin(te->s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  /* The store keeps the object it is given and readers use it without a
   * lock, while the task goes on changing its working copy: store a copy. */
  json_t *copy = json_deep_copy(doc);
  if (!copy || store_put(t, COLL, id, NULL, copy, e) < 0) {
    if (!copy) err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    json_decref(copy);
    store_rollback(t);
    return -1;
  }
  static const char *const stamps[] = {"created", "modified", "eTag"};
  for (int i = 0; i < 3; i++)
    json_object_set(doc, stamps[i], json_object_get(copy, stamps[i]));
  json_decref(copy);
  return store_commit(t, e);
}

static void persist_or_log(struct task *t) {
  struct err e;
  err_init(&e);
  if (persist(t->te, t->id, t->doc, &e) < 0)
    log_error("task", "task %s: cannot record progress: %s", t->id, e.message);
  err_clear(&e);
}

static void set_state(json_t *doc, const char *state, const char *reason) {
  json_object_set_new(doc, "taskState", json_string(state));
  json_object_set_new(doc, "stateReason", json_string(reason));
}

static void add_update(struct task_engine *te, json_t *doc, const char *text) {
  char ts[32];
  util_iso8601(util_now_ms(), ts);
  long id = __atomic_add_fetch(&te->update_id, 1, __ATOMIC_RELAXED);
  json_t *ups = json_object_get(doc, "progressUpdates");
  if (json_is_array(ups))
    json_array_append_new(ups, json_pack("{s:s, s:s, s:I}", "timestamp", ts, "statusUpdate", text,
                                         "id", (json_int_t)id));
}

/* Mark every unfinished task from an earlier run as interrupted. */
static int recover(struct task_engine *te, struct err *e) {
  struct store_entry **v;
  size_t n;
  if (store_list(te->s, COLL, &v, &n) < 0) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *st = json_string_value(json_object_get(v[i]->doc, "taskState"));
    if (!st || strcmp(st, "New") == 0 || strcmp(st, "Running") == 0 || strcmp(st, "Pending") == 0 ||
        strcmp(st, "Starting") == 0 || strcmp(st, "Stopping") == 0) {
      json_t *doc = json_deep_copy(v[i]->doc);
      const char *msg = "The task was interrupted: streamerd stopped before it finished.";
      set_state(doc, "Error", "interrupted");
      json_object_set_new(doc, "taskStatus", json_string("Interrupted"));
      json_array_append_new(
          json_object_get(doc, "taskErrors"),
          err_object("TASK_INTERRUPTED", msg,
                     "Check the state of the associated resource and run the operation again."));
      add_update(te, doc, msg);
      rc = persist(te, v[i]->id, doc, e);
      json_decref(doc);
      if (rc == 0) log_warn("task", "task %s marked interrupted", v[i]->id);
    }
  }
  store_entries_release(v, n);
  return rc;
}

static void task_free(struct task *t) {
  if (t->free_arg) t->free_arg(t->arg);
  json_decref(t->doc);
  free(t);
}

static void run_one(struct task *t) {
  set_state(t->doc, "Running", "Running");
  json_object_set_new(t->doc, "taskStatus", json_string("Running"));
  persist_or_log(t);
  struct err e;
  err_init(&e);
  int rc = t->fn(t, t->arg, &e);
  if (rc == 0) {
    set_state(t->doc, "Completed", "Completed");
    json_object_set_new(t->doc, "taskStatus", json_string("Completed"));
    json_object_set_new(t->doc, "percentComplete", json_integer(100));
    json_object_set_new(t->doc, "computedPercentComplete", json_integer(100));
  } else {
    if (!e.message[0]) err_set(&e, 500, "TASK_FAILED", "the task failed");
    set_state(t->doc, "Error", "Error");
    json_object_set_new(t->doc, "taskStatus", json_string(e.message));
    json_array_append_new(json_object_get(t->doc, "taskErrors"), err_to_json(&e));
    add_update(t->te, t->doc, e.message);
  }
  persist_or_log(t);
  err_clear(&e);
}

static void *worker(void *p) {
  struct task_engine *te = p;
  for (;;) {
    pthread_mutex_lock(&te->lock);
    while (!te->head && !te->stopping)
      pthread_cond_wait(&te->cond, &te->lock);
    if (te->stopping) {
      pthread_mutex_unlock(&te->lock);
      return NULL;
    }
    struct task *t = te->head;
    te->head = t->next;
    if (!te->head) te->tail = NULL;
    pthread_mutex_unlock(&te->lock);
    run_one(t);
    task_free(t);
  }
}

struct task_engine *task_engine_start(struct store *s, int nworkers, struct err *e) {
  struct task_engine *te = calloc(1, sizeof *te);
  if (!te) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  te->s = s;
  te->update_id = util_now_ms();
  pthread_mutex_init(&te->lock, NULL);
  pthread_cond_init(&te->cond, NULL);
  if (recover(te, e) < 0) {
    free(te);
    return NULL;
  }
  te->workers = calloc((size_t)nworkers, sizeof *te->workers);
  for (int i = 0; te->workers && i < nworkers; i++) {
    if (pthread_create(&te->workers[i], NULL, worker, te) != 0) break;
    te->nworkers++;
  }
  if (te->nworkers == 0) {
    err_set(e, 500, "THREAD_ERROR", "cannot start task workers");
    free(te->workers);
    free(te);
    return NULL;
  }
  return te;
}

void task_engine_stop(struct task_engine *te) {
  if (!te) return;
  pthread_mutex_lock(&te->lock);
  te->stopping = 1;
  pthread_cond_broadcast(&te->cond);
  pthread_mutex_unlock(&te->lock);
  for (int i = 0; i < te->nworkers; i++)
    pthread_join(te->workers[i], NULL);
  for (struct task *t = te->head, *n; t; t = n) {
    n = t->next;
    task_free(t); /* stays New on disk: interrupted at the next start */
  }
  free(te->workers);
  pthread_mutex_destroy(&te->lock);
  pthread_cond_destroy(&te->cond);
  free(te);
}

/* A new task document in state `state`, persisted; NULL with e set. */
static struct task *task_new(struct task_engine *te, const char *name, const char *owner,
                             json_t *assoc, const char *state, struct err *e) {
  struct task *t = calloc(1, sizeof *t);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  t->te = te;
  util_uuid(t->id);
  snprintf(t->uri, sizeof t->uri, "/rest/tasks/%s", t->id);
  t->doc = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:n, s:n,"
      " s:O, s:[], s:[], s:[], s:n}",
      "type", "TaskResourceV2", "category", "tasks", "uri", t->uri, "id", t->id, "name", name,
      "owner", owner ? owner : "", "taskType", "User", "taskState", state, "taskStatus", name,
      "percentComplete", 0, "computedPercentComplete", 0, "completedSteps", 0, "totalSteps", 0,
      "expectedDuration", 0, "hidden", 0, "userInitiated", 1, "parentTaskUri", "associatedTaskUri",
      "associatedResource", assoc ? assoc : json_null(), "progressUpdates", "taskErrors",
      "taskOutput", "data");
  if (t->doc) json_object_set_new(t->doc, "stateReason", json_string(state));
  if (!t->doc || persist(te, t->id, t->doc, e) < 0) {
    if (!t->doc) err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    task_free(t);
    return NULL;
  }
  return t;
}

/* Record a task that will never run as Error with `why`. */
static void end_with_error(struct task *t, const struct err *why) {
  set_state(t->doc, "Error", "Error");
  json_object_set_new(t->doc, "taskStatus", json_string(why->message));
  json_array_append_new(json_object_get(t->doc, "taskErrors"), err_to_json(why));
  add_update(t->te, t->doc, why->message);
  persist_or_log(t);
}

int task_start(struct task *t, task_fn fn, void *arg, void (*free_arg)(void *), json_t **doc,
               struct err *e) {
  struct task_engine *te = t->te;
  t->fn = fn;
  t->arg = arg;
  t->free_arg = free_arg;
  json_t *out = doc ? json_deep_copy(t->doc) : NULL;
  pthread_mutex_lock(&te->lock);
  if (te->stopping) {
    pthread_mutex_unlock(&te->lock);
    err_set(e, 503, "SHUTTING_DOWN", "streamerd is shutting down; the task was not started");
    end_with_error(t, e);
    task_free(t);
    json_decref(out);
    return -1;
  }
  if (te->tail)
    te->tail->next = t;
  else
    te->head = t;
  te->tail = t;
  pthread_cond_signal(&te->cond);
  pthread_mutex_unlock(&te->lock);
  if (doc) *doc = out;
  return 0;
}

json_t *task_assoc(const char *category, const char *id, const char *name) {
  json_t *uri = id ? json_sprintf("/rest/%s/%s", category, id) : json_null();
  return json_pack("{s:o, s:s, s:s, s:s}", "resourceUri", uri, "resourceName", name ? name : "",
                   "resourceCategory", category, "associationType", "MANAGED_BY");
}

json_t *task_submit(struct task_engine *te, const char *name, const char *owner, json_t *assoc,
                    task_fn fn, void *arg, void (*free_arg)(void *), struct err *e) {
  struct task *t = task_new(te, name, owner, assoc, "New", e);
  if (!t) {
    if (free_arg) free_arg(arg);
    return NULL;
  }
  json_t *out = NULL;
  if (task_start(t, fn, arg, free_arg, &out, e) < 0) return NULL;
  return out;
}

struct task *task_create(struct task_engine *te, const char *name, const char *owner, json_t *assoc,
                         struct err *e) {
  return task_new(te, name, owner, assoc, "Running", e);
}

void task_abandon(struct task *t, const struct err *why) {
  if (!t) return;
  struct err e;
  err_init(&e);
  if (!why || !why->message[0]) {
    err_set(&e, 500, "TASK_FAILED", "the task was abandoned before it started");
    why = &e;
  }
  end_with_error(t, why);
  task_free(t);
  err_clear(&e);
}

void task_percent(struct task *t, int percent) {
  if (percent < 0) percent = 0;
  if (percent > 100) percent = 100;
  json_object_set_new(t->doc, "percentComplete", json_integer(percent));
  json_object_set_new(t->doc, "computedPercentComplete", json_integer(percent));
  persist_or_log(t);
}

void task_progress(struct task *t, int percent, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (percent < 0) percent = 0;
  if (percent > 100) percent = 100;
  json_object_set_new(t->doc, "percentComplete", json_integer(percent));
  json_object_set_new(t->doc, "computedPercentComplete", json_integer(percent));
  add_update(t->te, t->doc, msg);
  persist_or_log(t);
}

void task_set_resource(struct task *t, const char *uri, const char *name) {
  json_t *a = json_object_get(t->doc, "associatedResource");
  if (!json_is_object(a)) {
    a = json_object();
    json_object_set_new(t->doc, "associatedResource", a);
  }
  json_object_set_new(a, "resourceUri", uri ? json_string(uri) : json_null());
  if (name) json_object_set_new(a, "resourceName", json_string(name));
  persist_or_log(t);
}

void task_set_output(struct task *t, json_t *data, const char *line) {
  if (data) json_object_set_new(t->doc, "data", data);
  json_t *out = json_object_get(t->doc, "taskOutput");
  if (line && json_is_array(out)) json_array_append_new(out, json_string(line));
}

const char *task_uri(struct task *t) { return t->uri; }
