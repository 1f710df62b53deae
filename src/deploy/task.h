/* task.h — the asynchronous task engine: a worker pool running long
 * operations, each visible as an HPE TaskResourceV2 document in the store's
 * "tasks" collection (taskState, percentComplete, progressUpdates,
 * taskErrors, associatedResource). Tasks survive restarts as documents; a
 * task that was not finished when the daemon stopped is marked Error
 * ("interrupted") by task_engine_start. See src/deploy/README.md. */
#ifndef STREAMER_TASK_H
#define STREAMER_TASK_H

#include <jansson.h>

#include "store/store.h"
#include "util/util.h"

struct task_engine;
struct task; /* a running task, handed to its function */

/* The work of a task. Return 0 (Completed) or -1 with e set (Error; the
 * error becomes the task's taskErrors[0]). */
typedef int (*task_fn)(struct task *t, void *arg, struct err *e);

/* Start `nworkers` workers. Marks unfinished tasks from an earlier run as
 * Error with reason "interrupted". */
struct task_engine *task_engine_start(struct store *s, int nworkers, struct err *e);
/* Stop taking tasks, wait for running ones, join workers. Queued tasks that
 * never started stay New and are marked interrupted at the next start. */
void task_engine_stop(struct task_engine *te);

/* The associatedResource of a task on resource `id` of collection `category`
 * ("golden-images", ...): {resourceUri "/rest/<category>/<id>" (null when id is
 * NULL: a resource being deleted), resourceName, resourceCategory,
 * associationType "MANAGED_BY"}. A new reference; NULL when out of memory. */
json_t *task_assoc(const char *category, const char *id, const char *name);

/* Create a task (state New), persist it and queue it. `assoc` (borrowed) is
 * the associatedResource object {resourceUri, resourceName,
 * resourceCategory, associationType}. On success returns the task document
 * (a new reference) as the 202 body; free_arg(arg) is called when the task
 * is done (or at once on failure). */
json_t *task_submit(struct task_engine *te, const char *name, const char *owner, json_t *assoc,
                    task_fn fn, void *arg, void (*free_arg)(void *), struct err *e);

/* A task whose work starts later, e.g. an upload that the HTTP thread is
 * still receiving: task_create persists it as Running (the caller may report
 * progress on it with task_progress / task_percent meanwhile), then exactly
 * one of task_start (queue `fn` on the workers) or task_abandon (end it as
 * Error) must follow, from the same thread. */
struct task *task_create(struct task_engine *te, const char *name, const char *owner, json_t *assoc,
                         struct err *e);
/* Queue a task made by task_create. *doc (may be NULL) receives its document
 * (a new reference, the 202 body). The task then belongs to the engine. On
 * failure (the engine is stopping) the task is ended as Error, freed, and
 * free_arg(arg) is called; returns -1 with e set. */
int task_start(struct task *t, task_fn fn, void *arg, void (*free_arg)(void *), json_t **doc,
               struct err *e);
/* End a task made by task_create that will not run: Error, with `why` as its
 * taskErrors[0]. Frees t. */
void task_abandon(struct task *t, const struct err *why);

/* From inside a task: report progress (0..100) with a status line. */
void task_progress(struct task *t, int percent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Report progress (0..100) without a status line (frequent updates). */
void task_percent(struct task *t, int percent);
/* From inside a task: set the associated resource (e.g. once it exists). */
void task_set_resource(struct task *t, const char *uri, const char *name);
/* From inside a task: its result. `data` (stolen; an object, or NULL to keep
 * the current one) becomes the document's "data"; `line` (may be NULL) is
 * appended to "taskOutput". Recorded with the task's next change (at the
 * latest when it ends). */
void task_set_output(struct task *t, json_t *data, const char *line);
/* The task's uri, e.g. "/rest/tasks/<id>". */
const char *task_uri(struct task *t);

#endif
