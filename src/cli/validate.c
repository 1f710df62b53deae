/* validate.c — `streamer validate`: run a build plan on a throwaway overlay
 * of a golden image or OS volume (POST /rest/build-plans/{id}/validate),
 * wait for the task, print the run's log and the files it changed; exit 1
 * when the plan failed. Nothing on the server's disks changes. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct coll_info COLL_VOLUMES = {"os-volumes", "OS volume", "name"};

static const char USAGE[] =
    "usage: streamer validate --build-plan BP (--golden-image GI | --os-volume V)\n"
    "                         [--attr NAME=VALUE]... [--no-log] [--no-wait]\n"
    "\n"
    "Run the build plan BP as a deployment would, on a throwaway copy-on-write overlay of\n"
    "the golden image GI or of a snapshot of the OS volume V (which keeps serving): nothing\n"
    "on the server's disks changes. Then print the run's log and every file the plan\n"
    "changed (added, removed, modified), filesystem by filesystem. BP, GI and V are ids,\n"
    "uris or exact names.\n"
    "\n"
    "  --attr NAME=VALUE  a custom attribute's value (everything after the first '='),\n"
    "                     repeatable; NIC sub-values as NAME.sub=VALUE. The server merges\n"
    "                     them with the build plan's and checks them all at once.\n"
    "  --no-log           print only the changes and the outcome\n"
    "  --no-wait          print the validation task and return (streamer task wait ID)\n"
    "\n"
    "Exit status: 0 the plan succeeded, 1 it failed (its error is printed) or the server\n"
    "refused the validation, 2 usage error, 3 cannot reach the server.\n"
    "With --json the result document (the task's data) is printed.\n";

/* --attr values as [{"name","value"}]; a usage error for one without '='. */
static int attrs_of(const struct args *a, json_t **out) {
  *out = json_array();
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "attr") != 0) continue;
    const char *v = a->opt[i].value, *eq = strchr(v, '=');
    if (!eq || eq == v) {
      json_decref(*out);
      *out = NULL;
      return cli_usage_error(USAGE, "--attr %s: write NAME=VALUE", v);
    }
    json_array_append_new(*out,
                          json_pack("{s:s%, s:s}", "name", v, (size_t)(eq - v), "value", eq + 1));
  }
  return CLI_OK;
}

static void print_changes(json_t *res) {
  json_t *changes = json_object_get(res, "changes");
  json_t *counts = json_object_get(res, "changeCounts");
  json_int_t total = json_integer_value(json_object_get(counts, "added")) +
                     json_integer_value(json_object_get(counts, "removed")) +
                     json_integer_value(json_object_get(counts, "modified"));
  printf("\nChanges (%lld: %lld added, %lld removed, %lld modified)%s\n", (long long)total,
         (long long)json_integer_value(json_object_get(counts, "added")),
         (long long)json_integer_value(json_object_get(counts, "removed")),
         (long long)json_integer_value(json_object_get(counts, "modified")), total ? ":" : "");
  if (json_array_size(changes)) {
    static const char *const hdr[] = {"CHANGE", "DEVICE", "PATH", "TYPE", "DETAILS"};
    struct table *t = table_new(5, hdr);
    size_t i;
    json_t *c;
    json_array_foreach(changes, i, c) {
      char det[1400];
      const char *d = jstr(c, "details");
      if (!*d && json_is_integer(json_object_get(c, "size")))
        snprintf(det, sizeof det, "%lld bytes",
                 (long long)json_integer_value(json_object_get(c, "size")));
      else
        snprintf(det, sizeof det, "%s", d);
      const char *row[] = {jstr(c, "change"), jstr(c, "device"),
                           *jstr(c, "path") ? jstr(c, "path") : "-", jstr(c, "type"), det};
      table_add(t, row);
    }
    table_print(t, stdout, "  ");
    table_free(t);
  }
  if (json_is_true(json_object_get(res, "changesTruncated")))
    printf("  (only the first %zu are listed)\n", json_array_size(changes));
  if (json_is_false(json_object_get(res, "contentsCompared")))
    printf("  (not every file's content was compared: unchanged sizes and times were trusted)\n");
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(res, "skipped"), i, s) {
    printf("  not compared: %s (%s): %s\n", jstr(s, "device"), jstr(s, "type"), jstr(s, "reason"));
  }
  json_array_foreach(json_object_get(res, "warnings"), i, s) {
    fprintf(stderr, "warning: %s %s: %s: %s\n", jstr(s, "device"), jstr(s, "path"),
            jstr(s, "message"), jstr(s, "reason"));
  }
}

int cmd_validate(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"build-plan", 1}, {"golden-image", 1}, {"os-volume", 1},
                                         {"attr", 1},       {"no-log", 0},       {"no-wait", 0},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 0, USAGE);
  if (rc || a.help) return rc;
  const char *bpref = args_get(&a, "build-plan");
  const char *gi = args_get(&a, "golden-image"), *vol = args_get(&a, "os-volume");
  if (!bpref) return cli_usage_error(USAGE, "--build-plan is required");
  if (!gi == !vol)
    return cli_usage_error(USAGE, "give --golden-image or --os-volume (one of them)");
  json_t *attrs CLEANUP_JSON = NULL;
  if ((rc = attrs_of(&a, &attrs))) return rc;
  json_t *bp CLEANUP_JSON = NULL, *src CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_BUILD_PLANS, bpref, &bp)) ||
      (rc = ref_get(c, gi ? &COLL_GOLDEN_IMAGES : &COLL_VOLUMES, gi ? gi : vol, &src)))
    return rc;
  json_t *body CLEANUP_JSON = json_pack("{s:s, s:O}", gi ? "goldenImageUri" : "osVolumeUri",
                                        jstr(src, "uri"), "customAttributes", attrs);
  CLEANUP_FREE char *path = util_strdup_printf("%s/validate", jstr(bp, "uri"));
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "POST", path, body, NULL, &task))) return rc;
  if (args_has(&a, "no-wait")) {
    if (c->json)
      out_json(task);
    else
      printf("Validating build plan \"%s\" in task %s (streamer task wait %s).\n", jstr(bp, "name"),
             jstr(task, "uri"), res_id(task));
    return CLI_OK;
  }
  rc = task_follow(c, &task);
  json_t *res = json_object_get(task, "data");
  if (!json_is_object(res)) return rc ? rc : CLI_ESERVER;
  int failed = strcmp(jstr(res, "status"), "Succeeded") != 0;
  if (c->json) {
    out_json(res);
  } else {
    if (!args_has(&a, "no-log")) fputs(jstr(res, "log"), stdout);
    print_changes(res);
    printf("\nBuild plan \"%s\" on %s \"%s\": %s in %lld ms (host commands %lld ms)\n",
           jstr(bp, "name"), gi ? "golden image" : "OS volume", jstr(src, "name"),
           failed ? "FAILED" : "succeeded",
           (long long)json_integer_value(json_object_get(res, "durationMs")),
           (long long)json_integer_value(json_object_get(res, "hostMs")));
  }
  if (failed && !rc) {
    json_t *err = json_object_get(res, "error");
    fprintf(stderr, "error: the build plan failed: %s (%s)\n", jstr(err, "message"),
            jstr(err, "errorCode"));
  }
  return rc ? rc : failed ? CLI_ESERVER : CLI_OK;
}
