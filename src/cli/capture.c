/* capture.c — `streamer capture OSVOL --build-plan BP --name N`: make a
 * golden image from an OS volume with a capture build plan (POST
 * /rest/golden-images {"imageCapture": true, ...}), wait for the task with a
 * progress bar, print the new golden image (usable; its SHA-256 may still be
 * computed by the follow-up task, which --wait-checksum waits for). The OS
 * volume is not changed. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct coll_info COLL_VOLUMES = {"os-volumes", "OS volume", "name"};

static const char USAGE[] =
    "usage: streamer capture OSVOL --build-plan BP --name NAME [--description TEXT]\n"
    "                        [--wait-checksum | --no-wait]\n"
    "\n"
    "Capture a new golden image NAME from the OS volume OSVOL: the server snapshots the\n"
    "volume (its server may keep running: the OS volume is never written), runs the capture\n"
    "build plan BP (oeBuildPlanType \"capture\", e.g. one that generalizes the OS) on a\n"
    "throwaway overlay of the snapshot, and writes the result as a golden image, which can\n"
    "then be downloaded and deployed. The capture log is its archive\n"
    "(streamer golden-image archive NAME). OSVOL and BP are ids, uris or exact names.\n"
    "The capture ends as soon as the image is usable; its SHA-256 (every byte, zeros\n"
    "included) may still be computed then by a \"Compute checksum\" task (checkSumState\n"
    "Pending until it is recorded).\n"
    "\n"
    "  --wait-checksum  also wait for the SHA-256 and print it\n"
    "  --no-wait        print the capture task and return (streamer task wait ID)\n"
    "\n"
    "Exit status: 0 captured, 1 the server refused or the capture failed (its error and\n"
    "log are printed), 2 usage error, 3 cannot reach the server.\n"
    "With --json the new golden image is printed.\n";

int cmd_capture(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"build-plan", 1},    {"name", 1},
                                         {"description", 1},   {"no-wait", 0},
                                         {"wait-checksum", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, USAGE);
  if (rc || a.help) return rc;
  const char *bpref = args_get(&a, "build-plan"), *name = args_get(&a, "name");
  const char *desc = args_get(&a, "description");
  if (!bpref) return cli_usage_error(USAGE, "--build-plan is required");
  if (!name || !*name) return cli_usage_error(USAGE, "--name is required");
  if (args_has(&a, "no-wait") && args_has(&a, "wait-checksum"))
    return cli_usage_error(USAGE, "--no-wait and --wait-checksum exclude each other");
  json_t *bp CLEANUP_JSON = NULL, *vol CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_VOLUMES, a.pos[0], &vol)) ||
      (rc = ref_get(c, &COLL_BUILD_PLANS, bpref, &bp)))
    return rc;
  json_t *body CLEANUP_JSON =
      json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "type", "GoldenImage", "name", name,
                "description", desc ? desc : "", "imageCapture", 1, "osVolumeURI", jstr(vol, "uri"),
                "buildPlanUri", jstr(bp, "uri"));
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "POST", "/rest/golden-images", body, NULL, &task))) return rc;
  if (args_has(&a, "no-wait")) {
    if (c->json)
      out_json(task);
    else
      printf("Capturing golden image \"%s\" from OS volume \"%s\" in task %s (streamer task wait "
             "%s).\n",
             name, jstr(vol, "name"), jstr(task, "uri"), res_id(task));
    return CLI_OK;
  }
  rc = task_follow(c, &task);
  if (rc) {
    const char *log = jstr(json_object_get(task, "data"), "log");
    if (*log && !c->json) fprintf(stderr, "\nCapture log:\n%s", log);
    return rc;
  }
  const char *uri = jstr(json_object_get(task, "associatedResource"), "resourceUri");
  const char *ct_uri = jstr(json_object_get(task, "data"), "checksumTaskUri");
  if (*ct_uri && args_has(&a, "wait-checksum")) {
    json_t *ct CLEANUP_JSON = NULL;
    if (!c->json)
      fprintf(stderr, "Golden image \"%s\" is usable; computing its SHA-256...\n", name);
    if ((rc = api_call(c, "GET", ct_uri, NULL, NULL, &ct)) || (rc = task_follow(c, &ct))) return rc;
  }
  json_t *gi CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", uri, NULL, NULL, &gi))) return rc;
  if (c->json) {
    out_json(gi);
  } else if (!strcmp(jstr(gi, "checkSumState"), "Pending")) {
    printf("Captured golden image \"%s\" (id %s) from OS volume \"%s\" with build plan \"%s\":\n"
           "  %lld bytes, %lld allocated; usable now, its SHA-256 is being computed by task %s\n"
           "  (streamer task wait %s)\n",
           jstr(gi, "name"), jstr(gi, "id"), jstr(vol, "name"), jstr(bp, "name"),
           (long long)json_integer_value(json_object_get(gi, "size")),
           (long long)json_integer_value(json_object_get(gi, "allocatedBytes")),
           *ct_uri ? ct_uri : "Compute checksum",
           strrchr(ct_uri, '/') ? strrchr(ct_uri, '/') + 1 : "ID");
  } else {
    printf("Captured golden image \"%s\" (id %s) from OS volume \"%s\" with build plan \"%s\":\n"
           "  %lld bytes, %lld allocated, sha256 %s\n",
           jstr(gi, "name"), jstr(gi, "id"), jstr(vol, "name"), jstr(bp, "name"),
           (long long)json_integer_value(json_object_get(gi, "size")),
           (long long)json_integer_value(json_object_get(gi, "allocatedBytes")),
           jstr(gi, "checkSum"));
  }
  return CLI_OK;
}
