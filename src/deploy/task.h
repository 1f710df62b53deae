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

/* Create a task (state New), persist it and queue it. `assoc` (borrowed) is
 * the associatedResource object {resourceUri, resourceName,
 * resourceCategory, associationType}. On success returns the task document
 * (a new reference) as the 202 body; free_arg(arg) is called when the task
 * is done (or at once on failure). */
json_t *task_submit(struct task_engine *te, const char *name, const char *owner, json_t *assoc,
                    task_fn fn, void *arg, void (*free_arg)(void *), struct err *e);

/* From inside a task: report progress (0..100) with a status line. */
void task_progress(struct task *t, int percent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* From inside a task: set the associated resource (e.g. once it exists). */
void task_set_resource(struct task *t, const char *uri, const char *name);
/* The task's uri, e.g. "/rest/tasks/<id>". */
const char *task_uri(struct task *t);

#endif
