/* build_plan.c — `streamer build-plan ...` over /rest/build-plans: ordered
 * plan-script steps and typed custom attribute declarations. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char BP_HELP[] =
    "usage: streamer build-plan SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]       list OS build plans\n"
    "  show REF                           show one build plan, its steps and attributes\n"
    "  create --name N --type deploy|capture [--description D] [--step PLANSCRIPT]...\n"
    "         [--attrs FILE.json]\n"
    "  create --from-json FILE            create from a JSON document\n"
    "  update REF [--from-json FILE] [--name N] [--description D] [--type T]\n"
    "         [--step PLANSCRIPT]... [--attrs FILE.json]\n"
    "  delete REF\n"
    "\n"
    "REF and PLANSCRIPT are ids, uris or exact names.\n";

static const char LIST_USAGE[] = "usage: streamer build-plan list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] = "usage: streamer build-plan show REF\n";
static const char CREATE_USAGE[] =
    "usage: streamer build-plan create --name N --type deploy|capture [--description D]\n"
    "       [--step PLANSCRIPT]... [--attrs FILE.json] | --from-json FILE\n"
    "\n"
    "  --step PLANSCRIPT   add a step running this plan script (id, uri or name);\n"
    "                      repeat in execution order\n"
    "  --attrs FILE.json   custom attribute declarations: a JSON array of\n"
    "                      {\"name\",\"type\",\"value\",\"constraints\",\"description\"};\n"
    "                      constraints may be written as an object\n"
    "  --from-json FILE    start from this OeBuildPlan document (- = stdin); the\n"
    "                      other options override its fields. Steps that give only\n"
    "                      a planScriptName are resolved by name.\n";
static const char UPDATE_USAGE[] =
    "usage: streamer build-plan update REF [--from-json FILE] [--name N] [--description D]\n"
    "       [--type T] [--step PLANSCRIPT]... [--attrs FILE.json]\n"
    "\n"
    "Fields in --from-json replace those of the current plan; --step replaces all\n"
    "steps; --attrs replaces all custom attribute declarations.\n";
static const char DELETE_USAGE[] = "usage: streamer build-plan delete REF\n";

static const struct opt_spec EDIT_OPTS[] = {{"name", 1}, {"type", 1},  {"description", 1},
                                            {"step", 1}, {"attrs", 1}, {"from-json", 1},
                                            {NULL, 0}};

static int bp_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "build-plans", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "TYPE", "STEPS", "ATTRS", "ID", "MODIFIED"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char steps[32], attrs[32];
    snprintf(steps, sizeof steps, "%zu", json_array_size(json_object_get(m, "buildStep")));
    snprintf(attrs, sizeof attrs, "%zu", json_array_size(json_object_get(m, "customAttributes")));
    CLEANUP_FREE char *mod = out_time(jstr(m, "modified"));
    const char *row[] = {jstr(m, "name"), jstr(m, "oeBuildPlanType"), steps, attrs, res_id(m), mod};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static void bp_print(json_t *bp) {
  static const char *const order[] = {"name",    "buildPlanid",     "id",          "uri",
                                      "type",    "oeBuildPlanType", "description", "hpProvided",
                                      "created", "modified",        "eTag",        NULL};
  static const char *const skip[] = {"name",
                                     "buildPlanid",
                                     "id",
                                     "uri",
                                     "type",
                                     "oeBuildPlanType",
                                     "description",
                                     "hpProvided",
                                     "created",
                                     "modified",
                                     "eTag",
                                     "buildStep",
                                     "customAttributes",
                                     NULL};
  struct kv *k = kv_new();
  kv_fields(k, bp, order);
  kv_rest(k, bp, skip);
  kv_print(k, stdout);
  kv_free(k);

  json_t *steps = json_object_get(bp, "buildStep");
  printf("\nbuildStep:%s\n", json_array_size(steps) ? "" : " (none)");
  if (json_array_size(steps)) {
    static const char *const hdr[] = {"#", "PLAN SCRIPT", "URI", "PARAMETERS"};
    struct table *t = table_new(4, hdr);
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s) {
      CLEANUP_FREE char *serial = out_text(json_object_get(s, "serialNumber"));
      CLEANUP_FREE char *params = out_text(json_object_get(s, "parameters"));
      const char *row[] = {serial, jstr(s, "planScriptName"), jstr(s, "planScriptUri"), params};
      table_add(t, row);
    }
    table_print(t, stdout, "  ");
    table_free(t);
  }
  json_t *attrs = json_object_get(bp, "customAttributes");
  printf("\ncustomAttributes:%s\n", json_array_size(attrs) ? "" : " (none)");
  if (json_array_size(attrs)) {
    static const char *const cols[] = {"name", "type", "value", "constraints", "description", NULL};
    attrs_table(attrs, cols);
  }
}

static int bp_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *bp CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_BUILD_PLANS, a.pos[0], &bp);
  if (rc) return rc;
  if (c->json)
    out_json(bp);
  else
    bp_print(bp);
  return CLI_OK;
}

/* Build the buildStep array from the --step options, in order. */
static int steps_from_args(struct cli *c, const struct args *a, json_t **out) {
  *out = json_array();
  int serial = 0;
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "step") != 0) continue;
    json_t *ps CLEANUP_JSON = NULL;
    int rc = ref_get(c, &COLL_PLAN_SCRIPTS, a->opt[i].value, &ps);
    if (rc) {
      json_decref(*out);
      *out = NULL;
      return rc;
    }
    char sn[32];
    snprintf(sn, sizeof sn, "%d", ++serial);
    json_array_append_new(*out, json_pack("{s:s, s:s, s:s, s:n}", "serialNumber", sn,
                                          "planScriptUri", jstr(ps, "uri"), "planScriptName",
                                          jstr(ps, "name"), "parameters"));
  }
  return CLI_OK;
}

/* Steps in a document that name a plan script but carry no uri (e.g. written
 * by hand) are resolved by name; serial numbers are strings. */
static int steps_resolve(struct cli *c, json_t *steps, const char *usage) {
  if (!steps || json_is_null(steps)) return CLI_OK;
  if (!json_is_array(steps)) return cli_usage_error(usage, "buildStep must be an array");
  size_t i;
  json_t *s;
  json_array_foreach(steps, i, s) {
    if (!json_is_object(s)) return cli_usage_error(usage, "buildStep #%zu is not an object", i + 1);
    json_t *sn = json_object_get(s, "serialNumber");
    if (!sn) {
      char b[32];
      snprintf(b, sizeof b, "%zu", i + 1);
      json_object_set_new(s, "serialNumber", json_string(b));
    } else if (json_is_integer(sn)) {
      CLEANUP_FREE char *t = out_text(sn);
      json_object_set_new(s, "serialNumber", json_string(t));
    }
    if (*jstr(s, "planScriptUri")) continue;
    const char *name = jstr(s, "planScriptName");
    if (!*name)
      return cli_usage_error(usage, "buildStep #%zu has neither planScriptUri nor planScriptName",
                             i + 1);
    json_t *ps CLEANUP_JSON = NULL;
    int rc = ref_get(c, &COLL_PLAN_SCRIPTS, name, &ps);
    if (rc) return rc;
    json_object_set_new(s, "planScriptUri", json_string(jstr(ps, "uri")));
    if (!json_object_get(s, "parameters")) json_object_set_new(s, "parameters", json_null());
  }
  return CLI_OK;
}

static int check_bp_type(const char *t, const char *usage) {
  if (util_strcaseeq(t, "deploy") || util_strcaseeq(t, "capture")) return CLI_OK;
  return cli_usage_error(usage, "--type must be deploy or capture, not \"%s\"", t);
}

/* Load the --attrs file: an array of declarations (or an object holding one
 * in "customAttributes"). */
static json_t *load_attrs(const char *path, const char *usage, int *rc) {
  json_t *j = cli_load_json_file(path, usage, rc);
  if (!j) return NULL;
  if (json_is_object(j) && json_is_array(json_object_get(j, "customAttributes"))) {
    json_t *arr = json_incref(json_object_get(j, "customAttributes"));
    json_decref(j);
    j = arr;
  }
  if ((*rc = attrs_normalize(j, usage))) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* Apply the edit options to doc (a new or fetched build plan). */
static int bp_apply(struct cli *c, const struct args *a, json_t *doc, const char *usage) {
  int rc;
  const char *v;
  if ((v = args_get(a, "name"))) {
    if (!*v) return cli_usage_error(usage, "--name cannot be empty");
    json_object_set_new(doc, "name", json_string(v));
  }
  if ((v = args_get(a, "type"))) {
    if ((rc = check_bp_type(v, usage))) return rc;
    json_object_set_new(doc, "oeBuildPlanType", json_string(v));
  }
  if ((v = args_get(a, "description"))) json_object_set_new(doc, "description", json_string(v));
  if ((v = args_get(a, "attrs"))) {
    json_t *attrs = load_attrs(v, usage, &rc);
    if (!attrs) return rc;
    json_object_set_new(doc, "customAttributes", attrs);
  } else if (json_is_array(json_object_get(doc, "customAttributes"))) {
    if ((rc = attrs_normalize(json_object_get(doc, "customAttributes"), usage))) return rc;
  }
  if (args_has(a, "step")) {
    json_t *steps = NULL;
    if ((rc = steps_from_args(c, a, &steps))) return rc;
    json_object_set_new(doc, "buildStep", steps);
  } else if ((rc = steps_resolve(c, json_object_get(doc, "buildStep"), usage))) {
    return rc;
  }
  return CLI_OK;
}

static json_t *load_doc(const char *path, const char *usage, int *rc) {
  json_t *doc = cli_load_json_file(path, usage, rc);
  if (doc && !json_is_object(doc)) {
    json_decref(doc);
    *rc = cli_usage_error(usage, "%s: a JSON object is needed", path);
    return NULL;
  }
  if (doc) res_strip_server_fields(doc);
  return doc;
}

static int bp_create(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, EDIT_OPTS, 0, 0, CREATE_USAGE);
  if (rc || a.help) return rc;
  json_t *doc CLEANUP_JSON = NULL;
  if (args_get(&a, "from-json")) {
    doc = load_doc(args_get(&a, "from-json"), CREATE_USAGE, &rc);
    if (!doc) return rc;
  } else {
    doc = json_object();
  }
  /* Check the purely local arguments before any request. */
  if (!args_get(&a, "name") && !*jstr(doc, "name"))
    return cli_usage_error(CREATE_USAGE, "--name is required");
  const char *type = args_get(&a, "type");
  if (!type && !*jstr(doc, "oeBuildPlanType"))
    return cli_usage_error(CREATE_USAGE, "--type is required");
  if (type && (rc = check_bp_type(type, CREATE_USAGE))) return rc;
  if (!json_object_get(doc, "type")) json_object_set_new(doc, "type", json_string("OeBuildPlan"));
  if (!json_object_get(doc, "description"))
    json_object_set_new(doc, "description", json_string(""));
  if (!json_object_get(doc, "hpProvided")) json_object_set_new(doc, "hpProvided", json_false());
  if ((rc = bp_apply(c, &a, doc, CREATE_USAGE))) return rc;
  if (!json_object_get(doc, "buildStep")) json_object_set_new(doc, "buildStep", json_array());
  if (!json_object_get(doc, "customAttributes"))
    json_object_set_new(doc, "customAttributes", json_array());
  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/build-plans", doc, NULL, &res);
  if (rc) return rc;
  res_done(c, "Created", &COLL_BUILD_PLANS, res);
  return CLI_OK;
}

static int bp_update(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, EDIT_OPTS, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  if (a.nopt == 0) return cli_usage_error(UPDATE_USAGE, "nothing to update");
  json_t *patch CLEANUP_JSON = NULL;
  if (args_get(&a, "from-json")) {
    patch = load_doc(args_get(&a, "from-json"), UPDATE_USAGE, &rc);
    if (!patch) return rc;
  }
  const char *type = args_get(&a, "type");
  if (type && (rc = check_bp_type(type, UPDATE_USAGE))) return rc;
  json_t *bp CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_BUILD_PLANS, a.pos[0], &bp);
  if (rc) return rc;
  if (patch) json_object_update(bp, patch);
  if ((rc = bp_apply(c, &a, bp, UPDATE_USAGE))) return rc;
  json_t *res CLEANUP_JSON = NULL;
  rc = res_put(c, bp, &res);
  if (rc) return rc;
  res_done(c, "Updated", &COLL_BUILD_PLANS, res);
  return CLI_OK;
}

static int bp_delete(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  return res_delete(c, &COLL_BUILD_PLANS, a.pos[0]);
}

int cmd_build_plan(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", bp_list, NULL},     {"show", bp_show, NULL},
                                       {"create", bp_create, NULL}, {"update", bp_update, NULL},
                                       {"delete", bp_delete, NULL}, {NULL, NULL, NULL}};
  return cli_dispatch(c, "build-plan", BP_HELP, subs, argc, argv);
}
