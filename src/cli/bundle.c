/* bundle.c — `streamer bundle ...`: artifact bundles over /rest/artifact-bundles:
 * create (from deployment plans, build plans, plan scripts, golden images),
 * upload (a streamed multipart POST, then the check task), list, show (the
 * contents before extraction), extract (conflict options), download, delete,
 * rename, and the backup of every artifact (backup, restore). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

static const char BUNDLE_HELP[] =
    "usage: streamer bundle SUBCOMMAND [options]\n"
    "\n"
    "  create NAME --deployment-plan DP... [--build-plan BP...] [--plan-script PS...]\n"
    "         [--golden-image GI...] [--with-golden-images] [--read-only] [--description D]\n"
    "                                     make a bundle of artifacts and their dependencies\n"
    "  upload FILE [--name N] [--lenient] upload a bundle .zip (it is checked, not extracted)\n"
    "  list [--filter F] [--sort S]       list bundles\n"
    "  show REF                           show a bundle and its contents\n"
    "  extract REF [--force-import] [--on-conflict stop|rename|replace]\n"
    "          [--rename TYPE:OLD=NEW...] create the bundle's artifacts\n"
    "  download REF FILE                  download the bundle .zip (- = stdout)\n"
    "  delete REF                         delete the bundle (its extracted artifacts stay)\n"
    "  rename REF NEW                     rename the bundle\n"
    "  backup [FILE]                      back up every artifact (and download the backup)\n"
    "  restore FILE                       restore the artifacts of a backup .zip\n"
    "\n"
    "REF is an id, a uri (/rest/artifact-bundles/ID) or an exact name. Long operations\n"
    "wait for their task with a progress bar unless --no-wait.\n";
static const char CREATE_USAGE[] =
    "usage: streamer bundle create NAME [--deployment-plan DP]... [--build-plan BP]...\n"
    "         [--plan-script PS]... [--golden-image GI]... [--with-golden-images]\n"
    "         [--read-only] [--description D] [--no-wait]\n"
    "\n"
    "Make the bundle NAME of the artifacts named (ids, uris or exact names; each option\n"
    "may be repeated) and what they need: a deployment plan brings its build plan and\n"
    "that plan's plan scripts, and its golden image with --with-golden-images. With\n"
    "--read-only the artifacts are read-only where the bundle is extracted. Waits for\n"
    "the task (--wait, the default) unless --no-wait.\n";
static const char UPLOAD_USAGE[] =
    "usage: streamer bundle upload FILE [--name N] [--lenient] [--no-wait]\n"
    "\n"
    "Upload FILE (a .zip artifact bundle, as HPE Image Streamer exports it). The server\n"
    "checks it (members, checksums) and lists its contents; nothing is extracted\n"
    "(streamer bundle extract). The name defaults to the file name without .zip.\n"
    "--lenient accepts a wrong checksum of MANIFEST.MF (and only of it).\n";
static const char LIST_USAGE[] = "usage: streamer bundle list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] =
    "usage: streamer bundle show REF\n"
    "\n"
    "Show the bundle and its contents: each artifact's type, name, whether it is\n"
    "read-only, and whether its checksum matched.\n";
static const char EXTRACT_USAGE[] =
    "usage: streamer bundle extract REF [--force-import] [--on-conflict stop|rename|replace]\n"
    "         [--rename TYPE:OLD=NEW]... [--lenient] [--no-wait]\n"
    "\n"
    "Create the bundle's artifacts, all or none. An artifact equal to an existing one of\n"
    "the same name is reused. Another one of the same name is a conflict:\n"
    "  stop (default)  nothing is created; the conflicts are listed\n"
    "  rename          created as \"NAME (2)\" (--force-import is --on-conflict rename)\n"
    "  replace         the existing artifact is replaced (not read-only ones)\n"
    "--rename TYPE:OLD=NEW creates the artifact OLD as NEW; TYPE is plan-script,\n"
    "build-plan, deployment-plan or golden-image.\n";
static const char DOWNLOAD_USAGE[] = "usage: streamer bundle download REF FILE\n"
                                     "\n"
                                     "Download the bundle .zip into FILE (- = standard output).\n";
static const char DELETE_USAGE[] =
    "usage: streamer bundle delete REF [--no-wait]\n"
    "\n"
    "Delete the bundle and its file; the artifacts extracted from it stay.\n";
static const char RENAME_USAGE[] = "usage: streamer bundle rename REF NEW\n";
static const char BACKUP_USAGE[] =
    "usage: streamer bundle backup [FILE] [--no-wait]\n"
    "\n"
    "Back up every plan script, build plan, deployment plan and golden image into the\n"
    "server's one backup (it replaces the previous one), and download it into FILE when\n"
    "given.\n";
static const char RESTORE_USAGE[] =
    "usage: streamer bundle restore FILE [--no-wait]\n"
    "\n"
    "Upload the backup FILE and restore its artifacts: each one is put back under its own\n"
    "id as it was in the backup; artifacts made since are kept.\n";

static const char *yes_no(json_t *v) { return json_is_true(v) ? "yes" : "no"; }

/* Every value of a repeated option. */
static int opt_values(const struct args *a, const char *name, const char **out, int max) {
  int n = 0;
  for (int i = 0; i < a->nopt && n < max; i++)
    if (strcmp(a->opt[i].name, name) == 0) out[n++] = a->opt[i].value;
  return n;
}

/* Follow a task unless --no-wait; prints "<verb> in task URI" for --no-wait. */
static int follow(struct cli *c, const struct args *a, json_t **task, const char *what) {
  if (!json_is_object(*task) || !*jstr(*task, "uri")) {
    fprintf(stderr, "error: the server's answer is not a task\n");
    return CLI_ESERVER;
  }
  if (args_has(a, "no-wait")) {
    if (c->json)
      out_json(*task);
    else
      printf("%s in task %s (streamer task wait %s).\n", what, jstr(*task, "uri"), res_id(*task));
    return -1; /* done, nothing more to print */
  }
  return task_follow(c, task);
}

/* ---- create -------------------------------------------------------------------- */
static int add_refs(struct cli *c, const struct args *a, const char *opt,
                    const struct coll_info *ci, int read_only, json_t *arr) {
  const char *v[ARGS_MAX];
  int n = opt_values(a, opt, v, ARGS_MAX);
  for (int i = 0; i < n; i++) {
    json_t *res CLEANUP_JSON = NULL;
    int rc = ref_get(c, ci, v[i], &res);
    if (rc) return rc;
    json_array_append_new(arr, json_pack("{s:s, s:s}", "resourceUri", jstr(res, "uri"), "readOnly",
                                         read_only ? "true" : "false"));
  }
  return CLI_OK;
}

static int b_create(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"deployment-plan", 1},
                                         {"build-plan", 1},
                                         {"plan-script", 1},
                                         {"golden-image", 1},
                                         {"with-golden-images", 0},
                                         {"read-only", 0},
                                         {"description", 1},
                                         {"wait", 0},
                                         {"no-wait", 0},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, CREATE_USAGE);
  if (rc || a.help) return rc;
  if (!args_has(&a, "deployment-plan") && !args_has(&a, "build-plan") &&
      !args_has(&a, "plan-script") && !args_has(&a, "golden-image"))
    return cli_usage_error(CREATE_USAGE, "name at least one artifact (--deployment-plan DP, ...)");
  if (!*a.pos[0]) return cli_usage_error(CREATE_USAGE, "the bundle name cannot be empty");
  if ((rc = api_require_login(c))) return rc;
  int ro = args_has(&a, "read-only");
  const char *desc = args_get(&a, "description");
  json_t *body CLEANUP_JSON = json_pack(
      "{s:s, s:s, s:s, s:[], s:[], s:[], s:[], s:b}", "type", "ArtifactsBundle", "name", a.pos[0],
      "description", desc ? desc : "", "deploymentPlans", "buildPlans", "planScripts",
      "goldenImages", "withGoldenImages", args_has(&a, "with-golden-images"));
  if (!body) return cli_usage_error(CREATE_USAGE, "the name or description is not UTF-8 text");
  if ((rc = add_refs(c, &a, "deployment-plan", &COLL_DEPLOYMENT_PLANS, ro,
                     json_object_get(body, "deploymentPlans"))) ||
      (rc = add_refs(c, &a, "build-plan", &COLL_BUILD_PLANS, ro,
                     json_object_get(body, "buildPlans"))) ||
      (rc = add_refs(c, &a, "plan-script", &COLL_PLAN_SCRIPTS, ro,
                     json_object_get(body, "planScripts"))) ||
      (rc = add_refs(c, &a, "golden-image", &COLL_GOLDEN_IMAGES, ro,
                     json_object_get(body, "goldenImages"))))
    return rc;
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "POST", "/rest/artifact-bundles", body, NULL, &task))) return rc;
  rc = follow(c, &a, &task, "Creating the bundle");
  if (rc) return rc < 0 ? CLI_OK : rc;
  json_t *b CLEANUP_JSON = NULL;
  const char *uri = jstr(json_object_get(task, "associatedResource"), "resourceUri");
  if ((rc = api_call(c, "GET", uri, NULL, NULL, &b))) return rc;
  if (c->json) {
    out_json(b);
    return CLI_OK;
  }
  char size[32];
  out_human_size(json_object_get(b, "size"), size, sizeof size);
  printf("Created bundle \"%s\" (id %s): %lld artifact(s), %s.\n", jstr(b, "name"), res_id(b),
         (long long)json_integer_value(json_object_get(b, "artifactsCount")), size);
  return CLI_OK;
}

/* ---- upload ---------------------------------------------------------------------- */
/* POST FILE as multipart to path; *task = the answer. */
static void print_counts(json_t *b) {
  printf("  %zu plan script(s), %zu build plan(s), %zu deployment plan(s), %zu golden image(s)\n",
         json_array_size(json_object_get(b, "planScripts")),
         json_array_size(json_object_get(b, "buildPlans")),
         json_array_size(json_object_get(b, "deploymentPlans")),
         json_array_size(json_object_get(b, "goldenimage")));
}

static int b_upload(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"name", 1}, {"lenient", 0}, {"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPLOAD_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name");
  if (name && !*name) return cli_usage_error(UPLOAD_USAGE, "--name cannot be empty");
  CLEANUP_FREE char *qn = name ? http_escape(name) : NULL;
  CLEANUP_FREE char *path = util_strdup_printf(
      "/rest/artifact-bundles%s%s%s%s", qn || args_has(&a, "lenient") ? "?" : "", qn ? "name=" : "",
      qn ? qn : "", args_has(&a, "lenient") ? (qn ? "&lenient=true" : "lenient=true") : "");
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = upload_file(c, a.pos[0], path, UPLOAD_USAGE, &task))) return rc;
  rc = follow(c, &a, &task, "Uploaded; the server checks the bundle");
  if (rc) return rc < 0 ? CLI_OK : rc;
  json_t *b CLEANUP_JSON = NULL;
  const char *uri = jstr(json_object_get(task, "associatedResource"), "resourceUri");
  if ((rc = api_call(c, "GET", uri, NULL, NULL, &b))) return rc;
  if (c->json) {
    out_json(b);
    return CLI_OK;
  }
  printf("Uploaded bundle \"%s\" (id %s); not extracted (streamer bundle extract %s):\n",
         jstr(b, "name"), res_id(b), res_id(b));
  print_counts(b);
  json_t *integ = json_object_get(b, "integrity");
  if (json_is_true(json_object_get(integ, "lenient")))
    printf("  checksums: accepted with --lenient (see streamer bundle show)\n");
  else if (!json_is_true(json_object_get(integ, "verified")))
    printf("  checksums: none in the bundle\n");
  return CLI_OK;
}

/* ---- list, show -------------------------------------------------------------------- */
static int b_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "artifact-bundles", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "ARTIFACTS", "READ-ONLY", "SIZE", "EXTRACTED", "ID"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char size[32], count[32];
    out_human_size(json_object_get(m, "size"), size, sizeof size);
    snprintf(count, sizeof count, "%lld",
             (long long)json_integer_value(json_object_get(m, "artifactsCount")));
    const char *row[] = {jstr(m, "name"),
                         count,
                         yes_no(json_object_get(m, "readOnly")),
                         size,
                         yes_no(json_object_get(m, "extracted")),
                         res_id(m)};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

/* "ok", "MISMATCH" or "-" for the member `id``suffix` in the integrity report. */
static const char *member_check(json_t *integ, const char *id, const char *suffix) {
  if (!json_is_true(json_object_get(integ, "verified")) &&
      !json_is_true(json_object_get(integ, "lenient")))
    return "-";
  size_t i;
  json_t *m;
  size_t il = strlen(id), sl = strlen(suffix);
  json_array_foreach(json_object_get(integ, "members"), i, m) {
    const char *n = jstr(m, "name");
    if (strlen(n) == il + sl && strncmp(n, id, il) == 0 && strcmp(n + il, suffix) == 0)
      return json_is_false(json_object_get(m, "ok")) ? "MISMATCH" : "ok";
  }
  return "-";
}

static void contents_table(json_t *b) {
  static const char *const hdr[] = {"TYPE", "NAME", "READ-ONLY", "CHECKSUM"};
  static const struct {
    const char *arr, *type, *id, *name, *suffix;
  } kinds[] = {
      {"planScripts", "plan script", "psID", "planScriptName", "_planscript.json"},
      {"buildPlans", "build plan", "bpID", "buildPlanName", "_buildplan.json"},
      {"deploymentPlans", "deployment plan", "dpId", "deploymentplanName", "_deploymentplan.json"},
      {"goldenimage", "golden image", "giID", "goldenimageName", "_goldenimage.json"}};
  json_t *integ = json_object_get(b, "integrity");
  struct table *t = table_new(4, hdr);
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(b, kinds[k].arr), i, m) {
      const char *row[] = {kinds[k].type, jstr(m, kinds[k].name),
                           yes_no(json_object_get(m, "readOnly")),
                           member_check(integ, jstr(m, kinds[k].id), kinds[k].suffix)};
      table_add(t, row);
    }
  }
  table_print(t, stdout, "  ");
  table_free(t);
}

static int b_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *b CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_ARTIFACT_BUNDLES, a.pos[0], &b))) return rc;
  if (c->json) {
    out_json(b);
    return CLI_OK;
  }
  static const char *const order[] = {
      "name",           "id",           "uri",           "description",
      "readOnly",       "importbundle", "size",          "checksum",
      "artifactsCount", "extracted",    "lastExtracted", "status",
      "downloadURI",    "created",      "modified",      NULL};
  struct kv *k = kv_new();
  kv_fields(k, b, order);
  json_t *integ = json_object_get(b, "integrity");
  if (json_is_object(integ)) {
    const char *cf = jstr(integ, "checksumFile");
    char line[300];
    snprintf(line, sizeof line, "%s%s%s", *cf ? cf : "none",
             json_is_true(json_object_get(integ, "verified")) ? ", verified" : ", not verified",
             json_is_true(json_object_get(integ, "lenient")) ? " (lenient)" : "");
    kv_add(k, "checksums", line);
  }
  kv_print(k, stdout);
  kv_free(k);
  printf("\ncontents:\n");
  contents_table(b);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(integ, "members"), i, m) {
    if (json_is_false(json_object_get(m, "ok")))
      printf("checksum mismatch: %s (expected %s, actual %s)\n", jstr(m, "name"),
             jstr(m, "expected"), jstr(m, "actual"));
  }
  return CLI_OK;
}

/* ---- extract -------------------------------------------------------------------------- */
static const char *wire_type(const char *t, size_t n) {
  static const struct {
    const char *cli, *wire;
  } map[] = {{"plan-script", "PlanScript"},          {"planscript", "PlanScript"},
             {"build-plan", "OeBuildPlan"},          {"buildplan", "OeBuildPlan"},
             {"oebuildplan", "OeBuildPlan"},         {"deployment-plan", "OEDeploymentPlan"},
             {"deploymentplan", "OEDeploymentPlan"}, {"oedeploymentplan", "OEDeploymentPlan"},
             {"golden-image", "GoldenImage"},        {"goldenimage", "GoldenImage"}};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (strlen(map[i].cli) == n && strncasecmp(map[i].cli, t, n) == 0) return map[i].wire;
  return NULL;
}

static void print_report(json_t *data) {
  static const char *const keys[] = {"created", "reused", "renamed", "replaced"};
  for (int k = 0; k < 4; k++) {
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(data, keys[k]), i, m) {
      if (*jstr(m, "newName"))
        printf("  %-8s %s \"%s\" as \"%s\"\n", keys[k], jstr(m, "type"), jstr(m, "name"),
               jstr(m, "newName"));
      else
        printf("  %-8s %s \"%s\"\n", keys[k], jstr(m, "type"), jstr(m, "name"));
    }
  }
}

/* After a failed extraction (its conflicts are printed by task_follow). */
static void print_conflicts(json_t *task) {
  json_t *e0 = json_array_get(json_object_get(task, "taskErrors"), 0);
  if (!strcmp(jstr(e0, "errorCode"), "BUNDLE_CONFLICTS"))
    fprintf(stderr, "hint: --on-conflict rename (or --force-import), --on-conflict replace, or "
                    "--rename TYPE:OLD=NEW\n");
}

static int b_extract(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"force-import", 0}, {"on-conflict", 1}, {"rename", 1},
                                         {"lenient", 0},      {"no-wait", 0},     {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, EXTRACT_USAGE);
  if (rc || a.help) return rc;
  const char *oc = args_get(&a, "on-conflict");
  if (oc && strcasecmp(oc, "stop") && strcasecmp(oc, "rename") && strcasecmp(oc, "replace"))
    return cli_usage_error(EXTRACT_USAGE, "--on-conflict is stop, rename or replace, not \"%s\"",
                           oc);
  json_t *body CLEANUP_JSON = json_pack("{s:[]}", "renames");
  const char *rn[ARGS_MAX];
  int n = opt_values(&a, "rename", rn, ARGS_MAX);
  for (int i = 0; i < n; i++) {
    const char *colon = strchr(rn[i], ':');
    const char *eq = colon ? strchr(colon + 1, '=') : NULL;
    const char *type = colon ? wire_type(rn[i], (size_t)(colon - rn[i])) : NULL;
    if (!type || !eq || eq == colon + 1 || !eq[1])
      return cli_usage_error(EXTRACT_USAGE,
                             "--rename %s: use TYPE:OLD=NEW with TYPE plan-script, build-plan, "
                             "deployment-plan or golden-image",
                             rn[i]);
    char *old = strndup(colon + 1, (size_t)(eq - colon - 1));
    json_array_append_new(
        json_object_get(body, "renames"),
        json_pack("{s:s, s:s, s:s}", "type", type, "name", old ? old : "", "newName", eq + 1));
    free(old);
  }
  json_t *b CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_ARTIFACT_BUNDLES, a.pos[0], &b))) return rc;
  CLEANUP_FREE char *path = util_strdup_printf(
      "%s?extract=true%s%s%s%s", jstr(b, "uri"),
      args_has(&a, "force-import") ? "&forceImport=true" : "", oc ? "&onConflict=" : "",
      oc ? oc : "", args_has(&a, "lenient") ? "&lenient=true" : "");
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "PUT", path, n ? body : NULL, NULL, &task))) return rc;
  rc = follow(c, &a, &task, "Extracting");
  if (rc > 0) print_conflicts(task);
  if (rc) return rc < 0 ? CLI_OK : rc;
  json_t *data = json_object_get(task, "data");
  if (c->json) {
    out_json(data ? data : task);
    return CLI_OK;
  }
  printf("Extracted bundle \"%s\":\n", jstr(b, "name"));
  print_report(data);
  return CLI_OK;
}

/* ---- download, delete, rename ------------------------------------------------------------- */
static int b_download(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 2, 2, DOWNLOAD_USAGE);
  if (rc || a.help) return rc;
  json_t *b CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_ARTIFACT_BUNDLES, a.pos[0], &b))) return rc;
  CLEANUP_FREE char *id = http_escape(res_id(b));
  CLEANUP_FREE char *path = util_strdup_printf("/rest/artifact-bundles/download/%s", id ? id : "");
  if ((rc = download_to_file(c, path, a.pos[1], DOWNLOAD_USAGE))) return rc;
  if (strcmp(a.pos[1], "-") == 0) return CLI_OK;
  if (c->json) {
    json_t *o CLEANUP_JSON = json_pack("{s:s, s:s, s:s}", "name", jstr(b, "name"), "uri",
                                       jstr(b, "uri"), "file", a.pos[1]);
    out_json(o);
  } else {
    printf("Downloaded bundle \"%s\" to %s.\n", jstr(b, "name"), a.pos[1]);
  }
  return CLI_OK;
}

static int b_delete(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  json_t *b CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_ARTIFACT_BUNDLES, a.pos[0], &b))) return rc;
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "DELETE", jstr(b, "uri"), NULL, NULL, &task))) return rc;
  rc = follow(c, &a, &task, "Deleting the bundle");
  if (rc) return rc < 0 ? CLI_OK : rc;
  if (c->json) {
    json_t *o CLEANUP_JSON =
        json_pack("{s:s, s:s, s:b}", "uri", jstr(b, "uri"), "name", jstr(b, "name"), "deleted", 1);
    out_json(o);
  } else {
    printf("Deleted bundle \"%s\".\n", jstr(b, "name"));
  }
  return CLI_OK;
}

static int b_rename(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 2, 2, RENAME_USAGE);
  if (rc || a.help) return rc;
  if (!*a.pos[1]) return cli_usage_error(RENAME_USAGE, "the new name cannot be empty");
  json_t *b CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_ARTIFACT_BUNDLES, a.pos[0], &b))) return rc;
  json_t *body CLEANUP_JSON = json_pack("{s:s, s:s}", "type", "ArtifactsBundle", "name", a.pos[1]);
  json_t *res CLEANUP_JSON = NULL;
  if ((rc = res_update(c, b, body, &res))) return rc;
  res_done(c, "Renamed", &COLL_ARTIFACT_BUNDLES, res);
  return CLI_OK;
}

/* ---- backup, restore --------------------------------------------------------------------- */
static int b_backup(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 1, BACKUP_USAGE);
  if (rc || a.help) return rc;
  if (a.npos && args_has(&a, "no-wait"))
    return cli_usage_error(BACKUP_USAGE, "FILE needs the backup: drop --no-wait");
  if ((rc = api_require_login(c))) return rc;
  json_t *groups CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", "/rest/deployment-groups", NULL, NULL, &groups))) return rc;
  const char *group = jstr(json_array_get(json_object_get(groups, "members"), 0), "uri");
  json_t *body CLEANUP_JSON = json_pack("{s:s}", "deploymentGroupURI", group);
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "POST", "/rest/artifact-bundles/backups", body, NULL, &task))) return rc;
  rc = follow(c, &a, &task, "Backing up");
  if (rc) return rc < 0 ? CLI_OK : rc;
  json_t *list CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", "/rest/artifact-bundles/backups", NULL, NULL, &list))) return rc;
  json_t *bk = json_array_get(json_object_get(list, "members"), 0);
  if (!bk) {
    fprintf(stderr, "error: the backup task completed but the server lists no backup\n");
    return CLI_ESERVER;
  }
  if (a.npos && (rc = download_to_file(c, jstr(bk, "downloadURI"), a.pos[0], BACKUP_USAGE)))
    return rc;
  if (c->json) {
    out_json(bk);
    return CLI_OK;
  }
  char size[32];
  out_human_size(json_object_get(bk, "size"), size, sizeof size);
  printf("Backed up every artifact: backup %s (%s)%s%s.\n", res_id(bk), size,
         a.npos ? ", downloaded to " : "", a.npos ? a.pos[0] : "");
  return CLI_OK;
}

static int b_restore(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, RESTORE_USAGE);
  if (rc || a.help) return rc;
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = upload_file(c, a.pos[0], "/rest/artifact-bundles/backups/archive", RESTORE_USAGE,
                        &task)))
    return rc;
  rc = follow(c, &a, &task, "Uploaded; the server restores the backup");
  if (rc) return rc < 0 ? CLI_OK : rc;
  json_t *data = json_object_get(task, "data");
  if (c->json) {
    out_json(data ? data : task);
    return CLI_OK;
  }
  printf("Restored the backup %s:\n", a.pos[0]);
  print_report(data);
  return CLI_OK;
}

int cmd_bundle(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"create", b_create, NULL},
                                       {"upload", b_upload, NULL},
                                       {"list", b_list, NULL},
                                       {"show", b_show, NULL},
                                       {"extract", b_extract, NULL},
                                       {"download", b_download, NULL},
                                       {"delete", b_delete, NULL},
                                       {"rename", b_rename, NULL},
                                       {"backup", b_backup, NULL},
                                       {"restore", b_restore, NULL},
                                       {NULL, NULL, NULL}};
  return cli_dispatch(c, "bundle", BUNDLE_HELP, subs, argc, argv);
}
