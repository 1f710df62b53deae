/* cli.h — private interface shared by the files of the `streamer` command-line
 * client: global state, argument parsing, HTTP calls, session cache, output.
 * The client only speaks the REST API; it includes no server header except
 * util/util.h and script/attr.h (for the offline `plan-script attrs` and the
 * local check of `streamer deploy --attr` values). */
#ifndef STREAMER_CLI_H
#define STREAMER_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "util/util.h"

#ifndef STREAMER_VERSION
#define STREAMER_VERSION "0.1.0"
#endif

#define CLI_API_VERSION "2020"
#define CLI_DEFAULT_SERVER "https://127.0.0.1:8443"

/* Exit codes (docs/cli.md "Exit codes"). */
enum {
  CLI_OK = 0,
  CLI_ESERVER = 1, /* the server answered with an error, or a task failed */
  CLI_EUSAGE = 2,  /* bad command line or bad local input file */
  CLI_ECONN = 3,   /* cannot reach the server, TLS failure, not logged in */
};

/* Global options and the resolved connection. */
struct cli {
  /* From the command line (NULL / -1 when not given). */
  char *opt_server;
  char *opt_cacert;
  int opt_insecure; /* 1 when --insecure/-k was given */
  int json;         /* --json */
  int help;         /* --help seen before the command */
  int version;      /* --version */

  /* Resolved by cli_resolve() before the first request. */
  int resolved;
  char *server; /* base URL, no trailing slash */
  char *cacert; /* absolute path or NULL */
  int insecure;
  char *token; /* session token or NULL */
  char *user;  /* user name of the cached session, or NULL */
  int token_from_env;

  void *curl; /* CURL *, created lazily */
  int stderr_tty;
};

/* ---- main.c: command tables, help ------------------------------------ */
/* If argv[*i] is a global option (--server URL, --server=URL, --cacert FILE,
 * --insecure, -k, --json, --version), record it, advance *i past its value and
 * return 1; 0 if it is not a global option; -1 (message printed) if its value
 * is missing. --help is not handled here. */
int cli_global_opt(struct cli *c, int argc, char **argv, int *i);

/* ---- args.c: per-command option parsing ------------------------------ */
struct opt_spec {
  const char *name; /* long name without "--" */
  int has_value;    /* 1: takes a value (--name V or --name=V) */
};

#define ARGS_MAX 256
struct args {
  int npos;
  const char *pos[ARGS_MAX];
  int nopt;
  struct {
    const char *name;
    const char *value; /* "" for flags */
  } opt[ARGS_MAX];
  int help; /* --help was given: usage printed, the caller returns 0 */
};

/* Parse argv[0..argc) (the words after the subcommand). Global options are
 * accepted anywhere. `usage` is printed for --help and named in error hints.
 * Returns 0 or CLI_EUSAGE (message printed). Checks the positional count
 * against [min_pos, max_pos]. */
int args_parse(struct cli *c, struct args *a, int argc, char **argv, const struct opt_spec *spec,
               int min_pos, int max_pos, const char *usage);
const char *args_get(const struct args *a, const char *name); /* last value or NULL */
int args_has(const struct args *a, const char *name);
/* Print "error: <msg>" and a hint naming `usage`; return CLI_EUSAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- session.c: login cache, login/logout ---------------------------- */
/* Resolve server URL, TLS options and token from flags, environment and the
 * cached session. Idempotent. */
void cli_resolve(struct cli *c);
/* Path of the session file (malloc'd), or NULL if no home directory. */
char *session_path(void);
int cmd_login(struct cli *c, int argc, char **argv);
int cmd_logout(struct cli *c, int argc, char **argv);
/* Read a password: from `file` ("-" = stdin) when given, else prompt on the
 * terminal without echo. Returns malloc'd string or NULL (message printed,
 * *rc set to the exit code). */
char *cli_read_secret(const char *file, const char *prompt, const char *usage, int *rc);
/* Prompt on the terminal with echo; NULL if there is no terminal. */
char *cli_prompt_line(const char *prompt);
void cli_wipe(char *s); /* zero a secret string in place (NULL-safe) */

/* ---- http.c: REST calls ---------------------------------------------- */
/* Perform one request. `path` is "/rest/..." (or an absolute URL). `body` may
 * be NULL; `if_match` may be NULL; `auth` 1 sends the session token.
 * On a transport failure prints the reason and returns CLI_ECONN. Otherwise
 * stores the HTTP status in *status and the parsed body (or NULL when empty
 * or not JSON) in *out, and returns 0 whatever the status. *raw, if not NULL,
 * receives the raw body (malloc'd). */
int http_do(struct cli *c, const char *method, const char *path, json_t *body, const char *if_match,
            int auth, long *status, json_t **out, char **raw);
/* A file transfer: a multipart upload of `upload_path` as the form field
 * "file" named `upload_name`, and/or a download written to `download` (only
 * a 2xx body; an error body is parsed into *out / *raw as with http_do).
 * `progress` draws a progress bar labelled `label` on stderr. Returns like
 * http_do; CLI_EUSAGE when the local file cannot be read or written. */
struct http_xfer {
  const char *upload_path, *upload_name;
  FILE *download;
  int progress;
  const char *label;
};
int http_xfer(struct cli *c, const char *method, const char *path, const struct http_xfer *x,
              long *status, json_t **out, char **raw);
/* Like http_do with auth, requiring a token (else prints "not logged in",
 * returns CLI_ECONN). A non-2xx answer is printed (api_print_error) and
 * turned into CLI_ESERVER (CLI_ECONN for 401). On success *out holds the
 * body (may be NULL for 204); `out` may be NULL to discard it. */
int api_call(struct cli *c, const char *method, const char *path, json_t *body,
             const char *if_match, json_t **out);
/* Print a server error answer (HPE error JSON) on stderr; returns the exit code. */
int api_print_error(struct cli *c, long status, json_t *body, const char *raw);
/* Require a token; prints the "run streamer login" message and returns
 * CLI_ECONN when there is none. */
int api_require_login(struct cli *c);
/* GET a whole collection (start=0&count=-1, following nextPageUri), with an
 * optional filter expression (not yet URL-encoded). Returns 0 and the
 * collection object (members merged) in *out. */
int api_list(struct cli *c, const char *coll, const char *filter, const char *sort, json_t **out);
/* URL-encode a string (malloc'd). */
char *http_escape(const char *s);
void http_cleanup(struct cli *c);

/* ---- refs.c: resolving REF (id, uri, exact name) --------------------- */
struct coll_info {
  const char *coll; /* "plan-scripts" */
  const char *what; /* "plan script" */
  const char *name_field;
};
extern const struct coll_info COLL_PLAN_SCRIPTS, COLL_BUILD_PLANS, COLL_DEPLOYMENT_PLANS,
    COLL_GOLDEN_IMAGES, COLL_TASKS, COLL_USERS, COLL_SERVER_HARDWARE, COLL_SERVER_PROFILES,
    COLL_ARTIFACT_BUNDLES;
/* Resolve and GET the resource named by `ref`; *out = the resource. Prints
 * "no plan script named ..." and returns CLI_ESERVER when there is none. */
int ref_get(struct cli *c, const struct coll_info *ci, const char *ref, json_t **out);
/* The filter expression "FIELD='NAME'" (quotes doubled) for api_list; malloc'd. */
char *ref_name_filter(const char *field, const char *name);

/* ---- output.c: tables, key/value, JSON ------------------------------- */
void out_json(json_t *j);
/* The strings of a JSON array joined with sep, e.g. "a, b, c" (malloc'd; NULL
 * when out of memory). */
char *out_joined(json_t *arr, const char *sep);
/* A byte count (a JSON integer) as "1.5 GiB" / "512 B"; "" when v is not an integer. */
void out_human_size(json_t *v, char *out, size_t size);
/* The same for a number of bytes. */
void out_human_bytes(json_int_t n, char *out, size_t size);
struct table;
struct table *table_new(int ncols, const char *const *headers);
void table_add(struct table *t, const char *const *cells); /* copies the cells */
void table_print(struct table *t, FILE *f, const char *indent);
void table_free(struct table *t);
/* A JSON value as short text for a table cell or a key/value line (malloc'd):
 * strings as-is, null "", numbers and booleans in JSON form, arrays/objects
 * compact JSON. */
char *out_text(json_t *v);
/* "2024-01-02T03:04:05.678Z" -> "2024-01-02 03:04:05" (malloc'd). */
char *out_time(const char *iso);
/* Key/value printing with aligned keys. */
struct kv;
struct kv *kv_new(void);
void kv_add(struct kv *k, const char *key, const char *value);
void kv_add_json(struct kv *k, const char *key, json_t *value); /* skips absent */
void kv_print(struct kv *k, FILE *f);
void kv_free(struct kv *k);
const char *jstr(json_t *obj, const char *key); /* string member or "" */

/* ---- command groups -------------------------------------------------- */
int cmd_plan_script(struct cli *c, int argc, char **argv);
int cmd_build_plan(struct cli *c, int argc, char **argv);
int cmd_deployment_plan(struct cli *c, int argc, char **argv);
int cmd_task(struct cli *c, int argc, char **argv);
int cmd_user(struct cli *c, int argc, char **argv);
int cmd_golden_image(struct cli *c, int argc, char **argv);
int cmd_volume(struct cli *c, int argc, char **argv);   /* volume.c: OS volumes */
int cmd_target(struct cli *c, int argc, char **argv);   /* target.c: the iSCSI target */
int cmd_validate(struct cli *c, int argc, char **argv); /* validate.c: build-plan validation */
int cmd_capture(struct cli *c, int argc,
                char **argv); /* capture.c: golden image from an OS volume */
int cmd_hardware(struct cli *c, int argc, char **argv); /* hardware.c: server hardware */
int cmd_profile(struct cli *c, int argc, char **argv);  /* profile.c: server profiles */
int cmd_deploy(struct cli *c, int argc, char **argv);   /* profile.c: create a server profile */
int cmd_bundle(struct cli *c, int argc, char **argv);   /* bundle.c: artifact bundles, backups */

/* ---- golden_image.c: transfers shared with bundle.c -------------------- */
/* A non-2xx answer of a transfer: print it and return the exit code. */
int answer_error(struct cli *c, long status, json_t *res, const char *raw);
/* Upload the regular file `file` to `path` (multipart part "file", progress bar on a
 * terminal); *task receives the answer, a task (release it). */
int upload_file(struct cli *c, const char *file, const char *path, const char *usage,
                json_t **task);
/* GET path into FILE (- = standard output; else written as FILE.part and
 * renamed when complete), with a progress bar on a terminal. */
int download_to_file(struct cli *c, const char *path, const char *file, const char *usage);

/* ---- task.c: following a task ----------------------------------------- */
/* Poll *task (a task document, replaced by each newer version) until it
 * ends, with a progress bar on stderr when it is a terminal (and not
 * --json). CLI_OK when it Completed (or ended with a Warning); otherwise the
 * failure and its taskErrors are printed and CLI_ESERVER returned. */
int task_follow(struct cli *c, json_t **task);

/* A subcommand of a group. */
struct subcmd {
  const char *name;
  int (*fn)(struct cli *c, int argc, char **argv);
  const char *summary;
};
/* Find and run the subcommand in argv (after skipping global options);
 * prints the group help for --help / no subcommand. */
int cli_dispatch(struct cli *c, const char *group, const char *group_help,
                 const struct subcmd *subs, int argc, char **argv);

/* ---- args.c: local input files --------------------------------------- */
/* Read a local file ("-" = standard input); NULL with a usage error printed
 * and *rc = CLI_EUSAGE when it cannot be read or parsed. */
json_t *cli_load_json_file(const char *path, const char *usage, int *rc);
char *cli_load_text_file(const char *path, const char *usage, int *rc);

/* ---- resource.c: helpers shared by the resource commands ------------- */
/* The id of a resource: "id", else "buildPlanid", else the last uri segment. */
const char *res_id(json_t *res);
/* Add `fields` (NULL-terminated) of res to k in that order, skipping absent
 * ones; "created"/"modified" are shown as readable times. */
void kv_fields(struct kv *k, json_t *res, const char *const *fields);
/* Add every other scalar field of res not in `skip` (NULL-terminated). */
void kv_rest(struct kv *k, json_t *res, const char *const *skip);
/* PUT res (a full resource) back to its uri with If-Match: its eTag. */
int res_put(struct cli *c, json_t *res, json_t **out);
/* PUT body (the fields to change) to cur's uri with If-Match: cur's eTag. */
int res_update(struct cli *c, json_t *cur, json_t *body, json_t **out);
/* Print the outcome of a create/update: the resource as JSON with --json,
 * else "<verb> <what> "<name>" (id <id>)." */
void res_done(struct cli *c, const char *verb, const struct coll_info *ci, json_t *res);
/* Resolve REF and DELETE it. */
int res_delete(struct cli *c, const struct coll_info *ci, const char *ref);
/* Drop the fields the server owns (uri, id, eTag, created, modified, ...)
 * from a document read from a file before it is sent. */
void res_strip_server_fields(json_t *doc);
/* The customAttributes of a build or deployment plan, constraints given as
 * objects turned into the JSON strings the wire format wants. Returns 0 or
 * a usage error. */
int attrs_normalize(json_t *attrs, const char *usage);
/* Print a customAttributes array as an indented table with the given
 * columns ("name","type","value","constraints","visible","editable",
 * "description"). */
void attrs_table(json_t *attrs, const char *const *cols);
/* Name lookup table for list output: uri -> name of a collection, fetched
 * quietly (NULL on any failure). */
json_t *res_name_map(struct cli *c, const char *coll);
/* --filter FILTER and --sort for list commands. */
extern const struct opt_spec LIST_OPTS[];

#endif
