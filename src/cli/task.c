/* task.c — `streamer task list | show | wait`: the asynchronous tasks the
 * server runs (deploy, capture, uploads), with a progress bar while waiting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static const char TASK_HELP[] =
    "usage: streamer task SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]   list tasks (newest first)\n"
    "  show ID                        show one task, its progress and errors\n"
    "  wait ID [--timeout SECONDS]    wait until the task ends; exit 0 when it\n"
    "                                 Completed (or ended with a Warning), 1 when it\n"
    "                                 failed or the timeout passed\n"
    "\n"
    "ID is a task id or uri (/rest/tasks/ID).\n";
static const char LIST_USAGE[] = "usage: streamer task list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] = "usage: streamer task show ID\n";
static const char WAIT_USAGE[] =
    "usage: streamer task wait ID [--timeout SECONDS]\n"
    "\n"
    "Poll the task every 200 ms until it ends. On a terminal, a progress bar\n"
    "(percentComplete and the last status update) is drawn on stderr. Exit 0 when\n"
    "the task Completed or ended with a Warning; 1 when it ended in Error, Killed,\n"
    "Terminated or Interrupted (its taskErrors are printed), or when SECONDS passed.\n"
    "With --json the final task document is printed.\n";

static int task_running(const char *state) {
  static const char *const running[] = {"New",       "Starting", "Pending", "Running",
                                        "Suspended", "Stopping", NULL};
  for (const char *const *r = running; *r; r++)
    if (util_strcaseeq(state, *r)) return 1;
  return 0;
}

static int task_succeeded(const char *state) {
  return util_strcaseeq(state, "Completed") || util_strcaseeq(state, "Warning");
}

static const char *last_status(json_t *task) {
  json_t *ups = json_object_get(task, "progressUpdates");
  for (size_t i = json_array_size(ups); i > 0; i--) {
    const char *s = jstr(json_array_get(ups, i - 1), "statusUpdate");
    if (*s) return s;
  }
  return "";
}

static int task_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "tasks", args_get(&a, "filter"), sort ? sort : "created:desc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "STATE", "%", "RESOURCE", "OWNER", "CREATED", "ID"};
  struct table *t = table_new(7, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    CLEANUP_FREE char *pct = out_text(json_object_get(m, "percentComplete"));
    CLEANUP_FREE char *created = out_time(jstr(m, "created"));
    json_t *ar = json_object_get(m, "associatedResource");
    const char *resname = jstr(ar, "resourceName");
    const char *row[] = {jstr(m, "name"),
                         jstr(m, "taskState"),
                         pct,
                         *resname ? resname : jstr(ar, "resourceUri"),
                         jstr(m, "owner"),
                         created,
                         res_id(m)};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static void print_task_errors(json_t *task, FILE *f) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(task, "taskErrors"), i, e) {
    const char *m = jstr(e, "message"), *d = jstr(e, "details");
    fprintf(f, "  - %s%s%s\n", *m ? m : jstr(e, "errorCode"), *d ? ": " : "", d);
    size_t k;
    json_t *act;
    json_array_foreach(json_object_get(e, "recommendedActions"), k, act) {
      if (json_is_string(act) && *json_string_value(act))
        fprintf(f, "    recommended action: %s\n", json_string_value(act));
    }
    size_t n;
    json_t *ne;
    json_array_foreach(json_object_get(e, "nestedErrors"), n, ne) {
      if (*jstr(ne, "message")) /* else e.g. a bundle conflict: {type, name, existingUri, reason} */
        fprintf(f, "    - %s\n", jstr(ne, "message"));
      else
        fprintf(f, "    - %s \"%s\"%s%s%s%s\n", jstr(ne, "type"), jstr(ne, "name"),
                *jstr(ne, "existingUri") ? " exists as " : "", jstr(ne, "existingUri"),
                *jstr(ne, "reason") ? ": " : "", jstr(ne, "reason"));
    }
  }
}

static void task_print(json_t *task) {
  static const char *const order[] = {
      "name",  "uri",      "taskState", "taskStatus", "stateReason", "percentComplete",
      "owner", "taskType", "created",   "modified",   NULL};
  struct kv *k = kv_new();
  kv_fields(k, task, order);
  json_t *ar = json_object_get(task, "associatedResource");
  if (json_is_object(ar)) {
    if (*jstr(ar, "resourceName")) kv_add(k, "resourceName", jstr(ar, "resourceName"));
    if (*jstr(ar, "resourceUri")) kv_add(k, "resourceUri", jstr(ar, "resourceUri"));
  }
  kv_print(k, stdout);
  kv_free(k);
  json_t *ups = json_object_get(task, "progressUpdates");
  if (json_array_size(ups)) {
    printf("\nprogressUpdates:\n");
    static const char *const hdr[] = {"TIME", "STATUS"};
    struct table *t = table_new(2, hdr);
    size_t i;
    json_t *u;
    json_array_foreach(ups, i, u) {
      CLEANUP_FREE char *ts = out_time(jstr(u, "timestamp"));
      const char *row[] = {ts, jstr(u, "statusUpdate")};
      table_add(t, row);
    }
    table_print(t, stdout, "  ");
    table_free(t);
  }
  if (json_array_size(json_object_get(task, "taskErrors"))) {
    printf("\ntaskErrors:\n");
    print_task_errors(task, stdout);
  }
}

static int task_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *task CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_TASKS, a.pos[0], &task);
  if (rc) return rc;
  if (c->json)
    out_json(task);
  else
    task_print(task);
  return CLI_OK;
}

static void draw_bar(json_t *task) {
  json_t *p = json_object_get(task, "percentComplete");
  long pct = json_is_integer(p) ? (long)json_integer_value(p) : (long)json_number_value(p);
  if (pct < 0) pct = 0;
  if (pct > 100) pct = 100;
  char bar[31];
  int fill = (int)(pct * 30 / 100);
  for (int i = 0; i < 30; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  const char *st = last_status(task);
  fprintf(stderr, "\r\033[K[%s] %3ld%% %s%s%.60s", bar, pct, jstr(task, "taskState"),
          *st ? ": " : "", st);
  fflush(stderr);
}

/* Poll *task (replaced by each new version) at `uri` until it ends or the
 * timeout passes. Returns 0 or the exit code of a failed GET. */
static int task_poll(struct cli *c, const char *uri, json_t **task, double timeout, int bar,
                     int *timed_out) {
  int64_t start = util_mono_ms();
  *timed_out = 0;
  while (task_running(jstr(*task, "taskState"))) {
    if (bar) draw_bar(*task);
    if (timeout > 0 && (double)(util_mono_ms() - start) >= timeout * 1000) {
      *timed_out = 1;
      break;
    }
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    json_t *next = NULL;
    int rc = api_call(c, "GET", uri, NULL, NULL, &next);
    if (rc) {
      if (bar) fputc('\n', stderr);
      return rc;
    }
    json_decref(*task);
    *task = next;
  }
  if (bar) {
    if (!*timed_out) draw_bar(*task);
    fputc('\n', stderr);
  }
  return CLI_OK;
}

static int task_wait(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"timeout", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, WAIT_USAGE);
  if (rc || a.help) return rc;
  double timeout = 0;
  const char *ts = args_get(&a, "timeout");
  if (ts) {
    char *end;
    timeout = strtod(ts, &end);
    if (*end || end == ts || !(timeout > 0))
      return cli_usage_error(WAIT_USAGE, "--timeout needs a positive number of seconds");
  }
  json_t *task = NULL;
  rc = ref_get(c, &COLL_TASKS, a.pos[0], &task);
  if (rc) return rc;
  char *uri = *jstr(task, "uri") ? strdup(jstr(task, "uri")) : NULL;
  if (!uri) {
    char *esc = http_escape(a.pos[0]);
    uri = util_strdup_printf("/rest/tasks/%s", esc ? esc : "");
    free(esc);
  }
  int timed_out = 0;
  rc = uri ? task_poll(c, uri, &task, timeout, c->stderr_tty && !c->json, &timed_out) : CLI_EUSAGE;
  const char *state = jstr(task, "taskState");
  const char *name = jstr(task, "name");
  if (rc) {
    /* the failed request was reported */
  } else if (timed_out) {
    if (c->json) out_json(task);
    fprintf(stderr, "error: task \"%s\" (%s) is still %s after %g s\n", name, uri, state, timeout);
    rc = CLI_ESERVER;
  } else if (task_succeeded(state)) {
    if (c->json)
      out_json(task);
    else
      printf("Task \"%s\" %s.\n", name, state);
    if (json_array_size(json_object_get(task, "taskErrors"))) {
      fprintf(stderr, "warning: task \"%s\" reported:\n", name);
      print_task_errors(task, stderr);
    }
  } else {
    if (c->json) out_json(task);
    fprintf(stderr, "error: task \"%s\" ended %s%s%s\n", name, state,
            *last_status(task) ? ": " : "", last_status(task));
    print_task_errors(task, stderr);
    rc = CLI_ESERVER;
  }
  free(uri);
  json_decref(task);
  return rc;
}

int cmd_task(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", task_list, NULL},
                                       {"show", task_show, NULL},
                                       {"wait", task_wait, NULL},
                                       {NULL, NULL, NULL}};
  return cli_dispatch(c, "task", TASK_HELP, subs, argc, argv);
}

int task_follow(struct cli *c, json_t **task) {
  const char *u = jstr(*task, "uri");
  if (!*u) {
    fprintf(stderr, "error: the server's answer is not a task (no uri)\n");
    return CLI_ESERVER;
  }
  char *uri = strdup(u);
  if (!uri) return CLI_ESERVER;
  int timed_out = 0;
  int rc = task_poll(c, uri, task, 0, c->stderr_tty && !c->json, &timed_out);
  free(uri);
  if (rc) return rc;
  const char *state = jstr(*task, "taskState");
  if (task_succeeded(state)) {
    if (json_array_size(json_object_get(*task, "taskErrors"))) {
      fprintf(stderr, "warning: task \"%s\" reported:\n", jstr(*task, "name"));
      print_task_errors(*task, stderr);
    }
    return CLI_OK;
  }
  fprintf(stderr, "error: task \"%s\" ended %s%s%s\n", jstr(*task, "name"), state,
          *last_status(*task) ? ": " : "", last_status(*task));
  print_task_errors(*task, stderr);
  return CLI_ESERVER;
}
