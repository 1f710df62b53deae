/* deployment_plan.c — `streamer deployment-plan ...` over
 * /rest/deployment-plans: a build plan plus a golden image, with the build
 * plan's custom attributes given values and visible/editable flags. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char DP_HELP[] =
    "usage: streamer deployment-plan SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]       list deployment plans\n"
    "  show REF                           show one deployment plan and its attributes\n"
    "  create --name N --build-plan BP [--golden-image GI] [--description D]\n"
    "         [--set NAME=VALUE]... [--hide NAME]... [--show NAME]...\n"
    "  create --from-json FILE            create from a JSON document\n"
    "  update REF [--set NAME=VALUE]... [--hide NAME]... [--show NAME]...\n"
    "         [--name N] [--description D] [--build-plan BP] [--golden-image GI]\n"
    "         [--from-json FILE]\n"
    "  delete REF\n"
    "\n"
    "REF and BP are ids, uris or exact names; GI a golden image uri, id or name.\n";

static const char LIST_USAGE[] = "usage: streamer deployment-plan list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] = "usage: streamer deployment-plan show REF\n";
static const char CREATE_USAGE[] =
    "usage: streamer deployment-plan create --name N --build-plan BP [--golden-image GI]\n"
    "       [--description D] [--set NAME=VALUE]... [--hide NAME]... [--show NAME]...\n"
    "       | --from-json FILE\n"
    "\n"
    "The plan's custom attributes start as the build plan's declarations (all\n"
    "visible and editable); then, in command-line order:\n"
    "  --set NAME=VALUE   give attribute NAME this value\n"
    "  --hide NAME        make NAME invisible to server profiles (visible=false)\n"
    "  --show NAME        make NAME visible again\n"
    "  --golden-image GI  golden image uri, id or name (none: an empty OS volume)\n"
    "  --from-json FILE   start from this OEDeploymentPlan document (- = stdin);\n"
    "                     oeBuildPlanURI may hold a build plan name\n";
static const char UPDATE_USAGE[] =
    "usage: streamer deployment-plan update REF [--set NAME=VALUE]... [--hide NAME]...\n"
    "       [--show NAME]... [--name N] [--description D] [--build-plan BP]\n"
    "       [--golden-image GI] [--from-json FILE]\n"
    "\n"
    "A new --build-plan replaces the attribute list with the new build plan's,\n"
    "keeping the values and flags of attributes with the same name.\n";
static const char DELETE_USAGE[] = "usage: streamer deployment-plan delete REF\n";

static const struct opt_spec EDIT_OPTS[] = {
    {"name", 1},         {"description", 1}, {"build-plan", 1},
    {"golden-image", 1}, {"set", 1},         {"hide", 1},
    {"show", 1},         {"from-json", 1},   {NULL, 0}};

static int dp_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "deployment-plans", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  json_t *members = json_object_get(list, "members");
  json_t *bps CLEANUP_JSON = json_array_size(members) ? res_name_map(c, "build-plans") : NULL;
  json_t *gis CLEANUP_JSON = json_array_size(members) ? res_name_map(c, "golden-images") : NULL;
  static const char *const hdr[] = {"NAME",  "BUILD PLAN", "GOLDEN IMAGE",
                                    "ATTRS", "ID",         "MODIFIED"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(members, i, m) {
    const char *bpu = jstr(m, "oeBuildPlanURI"), *giu = jstr(m, "goldenImageURI");
    const char *bp = json_string_value(json_object_get(bps, bpu));
    const char *gi = json_string_value(json_object_get(gis, giu));
    char attrs[32];
    snprintf(attrs, sizeof attrs, "%zu", json_array_size(json_object_get(m, "customAttributes")));
    CLEANUP_FREE char *mod = out_time(jstr(m, "modified"));
    const char *row[] = {jstr(m, "name"),
                         bp ? bp : (*bpu ? bpu : "-"),
                         gi ? gi : (*giu ? giu : "-"),
                         attrs,
                         res_id(m),
                         mod};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static void dp_print(struct cli *c, json_t *dp) {
  static const char *const order[] = {
      "name",           "id",         "uri",     "type",     "description", "oeBuildPlanURI",
      "goldenImageURI", "hpProvided", "created", "modified", "eTag",        NULL};
  static const char *const skip[] = {"name",
                                     "id",
                                     "uri",
                                     "type",
                                     "description",
                                     "oeBuildPlanURI",
                                     "goldenImageURI",
                                     "hpProvided",
                                     "created",
                                     "modified",
                                     "eTag",
                                     "customAttributes",
                                     NULL};
  struct kv *k = kv_new();
  kv_fields(k, dp, order);
  /* The names behind the uris, when they can be read. */
  const char *bpu = jstr(dp, "oeBuildPlanURI");
  if (strncmp(bpu, "/rest/", 6) == 0) {
    long status;
    json_t *bp CLEANUP_JSON = NULL;
    if (http_do(c, "GET", bpu, NULL, NULL, 1, &status, &bp, NULL) == CLI_OK && status == 200)
      kv_add(k, "buildPlanName", jstr(bp, "name"));
  }
  const char *giu = jstr(dp, "goldenImageURI");
  if (strncmp(giu, "/rest/", 6) == 0) {
    long status;
    json_t *gi CLEANUP_JSON = NULL;
    if (http_do(c, "GET", giu, NULL, NULL, 1, &status, &gi, NULL) == CLI_OK && status == 200)
      kv_add(k, "goldenImageName", jstr(gi, "name"));
  }
  kv_rest(k, dp, skip);
  kv_print(k, stdout);
  kv_free(k);
  json_t *attrs = json_object_get(dp, "customAttributes");
  printf("\ncustomAttributes:%s\n", json_array_size(attrs) ? "" : " (none)");
  if (json_array_size(attrs)) {
    static const char *const cols[] = {"name",     "type",        "value", "visible",
                                       "editable", "constraints", NULL};
    attrs_table(attrs, cols);
  }
}

static int dp_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *dp CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_DEPLOYMENT_PLANS, a.pos[0], &dp);
  if (rc) return rc;
  if (c->json)
    out_json(dp);
  else
    dp_print(c, dp);
  return CLI_OK;
}

/* Deployment-plan declarations made from a build plan's: every field kept,
 * visible/editable added. */
static json_t *attrs_from_build_plan(json_t *bp) {
  json_t *out = json_array();
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(bp, "customAttributes"), i, d) {
    if (!json_is_object(d)) continue;
    json_t *n = json_deep_copy(d);
    json_object_del(n, "id");
    if (!json_object_get(n, "visible")) json_object_set_new(n, "visible", json_true());
    if (!json_object_get(n, "editable")) json_object_set_new(n, "editable", json_true());
    json_array_append_new(out, n);
  }
  return out;
}

static json_t *find_attr(json_t *attrs, const char *name, size_t len) {
  size_t i;
  json_t *d, *folded = NULL;
  json_array_foreach(attrs, i, d) {
    const char *n = jstr(d, "name");
    if (strlen(n) == len && strncmp(n, name, len) == 0) return d;
    if (strlen(n) == len && strncasecmp(n, name, len) == 0) folded = d;
  }
  return folded;
}

static int unknown_attr(json_t *attrs, const char *opt, const char *name, size_t len,
                        const char *usage) {
  size_t cap = 64, i;
  json_t *d;
  json_array_foreach(attrs, i, d) { cap += strlen(jstr(d, "name")) + 2; }
  CLEANUP_FREE char *names = calloc(1, cap);
  if (names) {
    json_array_foreach(attrs, i, d) {
      if (i) strcat(names, ", ");
      strcat(names, jstr(d, "name"));
    }
  }
  return cli_usage_error(usage, "%s: the plan has no custom attribute \"%.*s\" (%s%s)", opt,
                         (int)len, name, json_array_size(attrs) ? "it has: " : "it has none",
                         names ? names : "");
}

/* Check the syntax of every --set before anything is sent. */
static int check_sets(const struct args *a, const char *usage) {
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "set") != 0) continue;
    const char *eq = strchr(a->opt[i].value, '=');
    if (!eq || eq == a->opt[i].value)
      return cli_usage_error(usage, "--set needs NAME=VALUE, not \"%s\"", a->opt[i].value);
  }
  return CLI_OK;
}

/* The name an attribute option refers to: NAME of NAME=VALUE, or the value. */
static size_t opt_attr_name(const char *opt, const char *v) {
  if (strcmp(opt, "set") == 0) return (size_t)(strchr(v, '=') - v);
  return strlen(v);
}

static int is_attr_opt(const char *opt) {
  return strcmp(opt, "set") == 0 || strcmp(opt, "hide") == 0 || strcmp(opt, "show") == 0;
}

/* Attributes the build plan's plan scripts declare with @tokens@ (from their
 * derived customAttributes), which the server also accepts in a deployment
 * plan. New array of {"name","value"}. */
static int derived_attrs(struct cli *c, json_t *bp, json_t **out) {
  *out = json_array();
  size_t i, j;
  json_t *st, *d;
  json_array_foreach(json_object_get(bp, "buildStep"), i, st) {
    const char *uri = jstr(st, "planScriptUri");
    if (!*uri) continue;
    json_t *ps CLEANUP_JSON = NULL;
    int rc = api_call(c, "GET", uri, NULL, NULL, &ps);
    if (rc) return rc;
    json_t *ca = json_object_get(ps, "customAttributes");
    json_t *arr CLEANUP_JSON =
        json_is_string(ca) ? json_loads(json_string_value(ca), 0, NULL) : json_incref(ca);
    json_array_foreach(arr, j, d) {
      if (json_is_object(d)) json_array_append(*out, d);
    }
  }
  return CLI_OK;
}

/* Before --set/--hide/--show on a new plan: an attribute the build plan does
 * not declare but one of its plan scripts does is added (type string, the
 * script's default) so it can be given a value. */
static int add_referenced_derived(struct cli *c, const struct args *a, json_t *bp, json_t *attrs) {
  json_t *derived CLEANUP_JSON = NULL;
  for (int i = 0; i < a->nopt; i++) {
    if (!is_attr_opt(a->opt[i].name)) continue;
    const char *v = a->opt[i].value;
    size_t len = opt_attr_name(a->opt[i].name, v);
    if (find_attr(attrs, v, len)) continue;
    if (!derived) {
      int rc = derived_attrs(c, bp, &derived);
      if (rc) return rc;
    }
    json_t *d = find_attr(derived, v, len);
    if (!d) continue; /* reported by apply_attr_opts */
    json_array_append_new(attrs,
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "name", jstr(d, "name"),
                                    "value", jstr(d, "value"), "type", "string", "constraints",
                                    "{}", "description", "", "visible", 1, "editable", 1));
  }
  return CLI_OK;
}

/* Apply --set/--hide/--show in command-line order. */
static int apply_attr_opts(const struct args *a, json_t *attrs, const char *usage) {
  for (int i = 0; i < a->nopt; i++) {
    const char *opt = a->opt[i].name, *v = a->opt[i].value;
    if (!is_attr_opt(opt)) continue;
    size_t len = opt_attr_name(opt, v);
    json_t *d = find_attr(attrs, v, len);
    if (!d) {
      CLEANUP_FREE char *flag = util_strdup_printf("--%s", opt);
      return unknown_attr(attrs, flag, v, len, usage);
    }
    if (strcmp(opt, "set") == 0)
      json_object_set_new(d, "value", json_string(v + len + 1));
    else
      json_object_set_new(d, "visible", json_boolean(strcmp(opt, "show") == 0));
  }
  return CLI_OK;
}

static int resolve_golden_image(struct cli *c, const char *ref, json_t *doc) {
  if (!*ref || strncmp(ref, "/rest/", 6) == 0) {
    json_object_set_new(doc, "goldenImageURI", json_string(ref));
    return CLI_OK;
  }
  json_t *gi CLEANUP_JSON = NULL;
  int rc = ref_get(c, &COLL_GOLDEN_IMAGES, ref, &gi);
  if (rc) return rc;
  json_object_set_new(doc, "goldenImageURI", json_string(jstr(gi, "uri")));
  return CLI_OK;
}

/* Keep values and flags of same-named attributes when the build plan changes. */
static void carry_over(json_t *fresh, json_t *old) {
  size_t i;
  json_t *d;
  json_array_foreach(fresh, i, d) {
    const char *n = jstr(d, "name");
    json_t *o = find_attr(old, n, strlen(n));
    if (!o) continue;
    static const char *const keep[] = {"value", "visible", "editable", NULL};
    for (const char *const *k = keep; *k; k++) {
      json_t *v = json_object_get(o, *k);
      if (v) json_object_set(d, *k, v);
    }
  }
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

/* Settle doc's build plan (from --build-plan, or a name/uri already in the
 * document) and, when `rebase`, its attribute list from that build plan. */
static int set_build_plan(struct cli *c, const char *ref, json_t *doc, int rebase,
                          json_t **bp_out) {
  json_t *bp CLEANUP_JSON = NULL;
  int rc = ref_get(c, &COLL_BUILD_PLANS, ref, &bp);
  if (rc) return rc;
  if (bp_out) *bp_out = json_incref(bp);
  json_object_set_new(doc, "oeBuildPlanURI", json_string(jstr(bp, "uri")));
  if (rebase) {
    json_t *fresh = attrs_from_build_plan(bp);
    json_t *old = json_object_get(doc, "customAttributes");
    if (json_is_array(old)) carry_over(fresh, old);
    json_object_set_new(doc, "customAttributes", fresh);
  }
  return CLI_OK;
}

static int dp_create(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, EDIT_OPTS, 0, 0, CREATE_USAGE);
  if (rc || a.help) return rc;
  if ((rc = check_sets(&a, CREATE_USAGE))) return rc;
  json_t *doc CLEANUP_JSON = NULL;
  if (args_get(&a, "from-json")) {
    doc = load_doc(args_get(&a, "from-json"), CREATE_USAGE, &rc);
    if (!doc) return rc;
  } else {
    doc = json_object();
  }
  const char *v;
  if ((v = args_get(&a, "name"))) json_object_set_new(doc, "name", json_string(v));
  if (!*jstr(doc, "name")) return cli_usage_error(CREATE_USAGE, "--name is required");
  const char *bpref = args_get(&a, "build-plan");
  if (!bpref) bpref = jstr(doc, "oeBuildPlanURI");
  if (!*bpref) return cli_usage_error(CREATE_USAGE, "--build-plan is required");
  if ((v = args_get(&a, "description"))) json_object_set_new(doc, "description", json_string(v));

  int have_attrs = json_is_array(json_object_get(doc, "customAttributes"));
  if (have_attrs && (rc = attrs_normalize(json_object_get(doc, "customAttributes"), CREATE_USAGE)))
    return rc;
  json_t *bp CLEANUP_JSON = NULL;
  if ((rc = set_build_plan(c, bpref, doc, !have_attrs, &bp))) return rc;
  if ((v = args_get(&a, "golden-image")) && (rc = resolve_golden_image(c, v, doc))) return rc;
  if (!json_is_array(json_object_get(doc, "customAttributes")))
    json_object_set_new(doc, "customAttributes", json_array());
  json_t *attrs = json_object_get(doc, "customAttributes");
  if ((rc = add_referenced_derived(c, &a, bp, attrs))) return rc;
  if ((rc = apply_attr_opts(&a, attrs, CREATE_USAGE))) return rc;
  if (!json_object_get(doc, "type"))
    json_object_set_new(doc, "type", json_string("OEDeploymentPlan"));
  if (!json_object_get(doc, "description"))
    json_object_set_new(doc, "description", json_string(""));
  if (!json_object_get(doc, "goldenImageURI"))
    json_object_set_new(doc, "goldenImageURI", json_string(""));
  if (!json_object_get(doc, "hpProvided")) json_object_set_new(doc, "hpProvided", json_false());

  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/deployment-plans", doc, NULL, &res);
  if (rc) return rc;
  res_done(c, "Created", &COLL_DEPLOYMENT_PLANS, res);
  return CLI_OK;
}

static int dp_update(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, EDIT_OPTS, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  if (a.nopt == 0) return cli_usage_error(UPDATE_USAGE, "nothing to update");
  if ((rc = check_sets(&a, UPDATE_USAGE))) return rc;
  json_t *patch CLEANUP_JSON = NULL;
  if (args_get(&a, "from-json")) {
    patch = load_doc(args_get(&a, "from-json"), UPDATE_USAGE, &rc);
    if (!patch) return rc;
    if (json_is_array(json_object_get(patch, "customAttributes")) &&
        (rc = attrs_normalize(json_object_get(patch, "customAttributes"), UPDATE_USAGE)))
      return rc;
  }
  json_t *dp CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_DEPLOYMENT_PLANS, a.pos[0], &dp);
  if (rc) return rc;
  if (patch) json_object_update(dp, patch);
  const char *v;
  if ((v = args_get(&a, "name"))) {
    if (!*v) return cli_usage_error(UPDATE_USAGE, "--name cannot be empty");
    json_object_set_new(dp, "name", json_string(v));
  }
  if ((v = args_get(&a, "description"))) json_object_set_new(dp, "description", json_string(v));
  if ((v = args_get(&a, "build-plan")) && (rc = set_build_plan(c, v, dp, 1, NULL))) return rc;
  if ((v = args_get(&a, "golden-image")) && (rc = resolve_golden_image(c, v, dp))) return rc;
  if (!json_is_array(json_object_get(dp, "customAttributes")))
    json_object_set_new(dp, "customAttributes", json_array());
  if ((rc = apply_attr_opts(&a, json_object_get(dp, "customAttributes"), UPDATE_USAGE))) return rc;
  json_t *res CLEANUP_JSON = NULL;
  rc = res_put(c, dp, &res);
  if (rc) return rc;
  res_done(c, "Updated", &COLL_DEPLOYMENT_PLANS, res);
  return CLI_OK;
}

static int dp_delete(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  return res_delete(c, &COLL_DEPLOYMENT_PLANS, a.pos[0]);
}

int cmd_deployment_plan(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", dp_list, NULL},     {"show", dp_show, NULL},
                                       {"create", dp_create, NULL}, {"update", dp_update, NULL},
                                       {"delete", dp_delete, NULL}, {NULL, NULL, NULL}};
  return cli_dispatch(c, "deployment-plan", DP_HELP, subs, argc, argv);
}
