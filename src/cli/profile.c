/* profile.c — server profiles over /rest/server-profiles: `streamer deploy`
 * (fetch the deployment plan, its build plan and plan scripts, check the
 * --attr values locally with the server's rules from script/attr.h, show the
 * visible attributes, create the profile, follow its task, print the boot
 * connections) and `streamer profile list / show / delete`. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "script/attr.h"

static const char PROFILE_HELP[] =
    "usage: streamer profile SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]   list server profiles (deployments)\n"
    "  show REF                       show one: hardware, plan, attributes, OS volume,\n"
    "                                 boot connections\n"
    "  delete REF [--no-wait]         delete it with its OS volume and iSCSI target\n"
    "  move REF --hardware H          hand it, with its OS volume, to another machine\n"
    "\n"
    "Create one with 'streamer deploy'. REF is an id, a uri (/rest/server-profiles/ID)\n"
    "or an exact name.\n";
static const char LIST_USAGE[] = "usage: streamer profile list [--filter F] [--sort S]\n";
static const char SHOW_USAGE[] = "usage: streamer profile show REF\n";
static const char DELETE_USAGE[] =
    "usage: streamer profile delete REF [--no-wait]\n"
    "\n"
    "Delete the server profile, its OS volume and the volume's iSCSI target (the machine's\n"
    "sessions end). The machine's next boot gets the 'exit' script (local disk). Waits for\n"
    "the task unless --no-wait.\n";
static const char MOVE_USAGE[] =
    "usage: streamer profile move REF --hardware H [--no-wait]\n"
    "\n"
    "Move the server profile to machine H (id, uri or exact name), e.g. a spare for a\n"
    "failed server: the same OS volume, nothing redeployed. Its iSCSI target then admits\n"
    "only H's initiator with H's CHAP credentials, H's next boot gets the volume and the\n"
    "old machine's the 'exit' script. Refused while anyone is still logged in to the\n"
    "volume (power the old machine off first; one powered off without logging out is\n"
    "dropped within 45 s) or when H is used by another profile.\n";
static const char DEPLOY_USAGE[] =
    "usage: streamer deploy PROFILE --hardware H --plan DP [--attr NAME=VALUE]...\n"
    "                       [--description D] [--check] [--no-wait]\n"
    "\n"
    "Deploy the OS deployment plan DP to the machine H: create the server profile PROFILE,\n"
    "whose task clones the plan's golden image into a new OS volume, personalizes it with\n"
    "the plan's build plan and exports it over iSCSI to H's initiator. H and DP are ids,\n"
    "uris or exact names.\n"
    "\n"
    "  --attr NAME=VALUE  a custom attribute's value (everything after the first '='),\n"
    "                     repeatable; NIC attributes per sub-parameter: NAME.ipaddress=...,\n"
    "                     NAME.constraint=static|dhcp|disabled\n"
    "  --check            check the values against the plan and show them, create nothing\n"
    "                     (--hardware is then optional)\n"
    "  --no-wait          print the task and return (streamer task wait ID)\n"
    "\n"
    "The values are checked here first with the server's rules (types and constraints of\n"
    "the plan's custom attributes): every problem is listed and nothing is sent. Then the\n"
    "plan's visible attributes are shown with the values the deployment will use, the\n"
    "task is followed with a progress bar, and the boot connections printed: the machine\n"
    "boots its OS volume through GET /boot/ipxe?mac=... (docs/boot.md).\n"
    "\n"
    "When a server profile named PROFILE exists already, its machine is redeployed\n"
    "(PUT /rest/server-profiles/ID): a new OS volume is made with DP and the values given\n"
    "laid over the profile's current ones, and the old volume is removed only once the new\n"
    "one is ready (--hardware, if given, must name the profile's machine: 'streamer\n"
    "profile move' moves a profile).\n"
    "\n"
    "Exit status: 0 deployed, 1 the server refused or the deployment failed, 2 usage\n"
    "error or invalid attribute values, 3 cannot reach the server.\n";

/* ---- list / show / delete ------------------------------------------------------------------ */
static int prof_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "server-profiles", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  json_t *hw CLEANUP_JSON = res_name_map(c, "server-hardware");
  json_t *dps CLEANUP_JSON = res_name_map(c, "deployment-plans");
  static const char *const hdr[] = {"NAME", "STATE", "STATUS", "HARDWARE", "DEPLOYMENT PLAN", "ID"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    const char *huri = jstr(m, "serverHardwareUri");
    const char *duri = jstr(json_object_get(m, "osDeploymentSettings"), "osDeploymentPlanUri");
    const char *hn = jstr(hw, huri), *dn = jstr(dps, duri);
    const char *row[] = {jstr(m, "name"), jstr(m, "state"), jstr(m, "status"),
                         *hn ? hn : huri, *dn ? dn : duri,  res_id(m)};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

/* The name of the resource at `uri` (GET), or "?" — for display only. */
static char *name_of(struct cli *c, const char *uri) {
  if (!uri || !*uri) return strdup("(none)");
  json_t *res = NULL;
  long status = 0;
  char *out;
  if (http_do(c, "GET", uri, NULL, NULL, 1, &status, &res, NULL) == CLI_OK && status == 200)
    out = util_strdup_printf("%s (%s)", jstr(res, "name"), uri);
  else
    out = util_strdup_printf("? (%s)", uri);
  json_decref(res);
  return out;
}

static void print_boot_connections(json_t *prof, const char *indent) {
  json_t *bc = json_object_get(prof, "bootConnections");
  if (!json_array_size(bc)) {
    printf("%s(no boot connections)\n", indent);
    return;
  }
  static const char *const hdr[] = {"ID",  "PRIORITY", "TARGET IP", "PORT",
                                    "LUN", "TARGET",   "INITIATOR", "CHAP NAME"};
  struct table *t = table_new(8, hdr);
  size_t i;
  json_t *b;
  json_array_foreach(bc, i, b) {
    CLEANUP_FREE char *id = out_text(json_object_get(b, "id"));
    CLEANUP_FREE char *port = out_text(json_object_get(b, "targetPort"));
    CLEANUP_FREE char *lun = out_text(json_object_get(b, "targetLun"));
    const char *row[] = {id,  jstr(b, "priority"),   jstr(b, "targetIp"),      port,
                         lun, jstr(b, "targetName"), jstr(b, "initiatorName"), jstr(b, "chapName")};
    table_add(t, row);
  }
  table_print(t, stdout, indent);
  table_free(t);
}

static void prof_print(struct cli *c, json_t *prof) {
  static const char *const order[] = {
      "name", "id", "uri", "description", "state", "status", "statusMessage", "taskUri", NULL};
  struct kv *k = kv_new();
  kv_fields(k, prof, order);
  json_t *ods = json_object_get(prof, "osDeploymentSettings");
  char *hw = name_of(c, jstr(prof, "serverHardwareUri"));
  char *dp = name_of(c, jstr(ods, "osDeploymentPlanUri"));
  char *vol = name_of(c, jstr(ods, "osVolumeUri"));
  kv_add(k, "server hardware", hw);
  kv_add(k, "deployment plan", dp);
  kv_add(k, "OS volume", vol);
  free(hw);
  free(dp);
  free(vol);
  static const char *const times[] = {"created", "modified", "eTag", NULL};
  kv_fields(k, prof, times);
  kv_print(k, stdout);
  kv_free(k);
  json_t *attrs = json_object_get(ods, "osCustomAttributes");
  printf("\nattributes:%s\n", json_array_size(attrs) ? "" : " (none given)");
  if (json_array_size(attrs)) {
    static const char *const hdr[] = {"NAME", "VALUE"};
    struct table *t = table_new(2, hdr);
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
      CLEANUP_FREE char *v = out_text(json_object_get(a, "value"));
      const char *row[] = {jstr(a, "name"), v};
      table_add(t, row);
    }
    table_print(t, stdout, "  ");
    table_free(t);
  }
  printf("\nboot connections:\n");
  print_boot_connections(prof, "  ");
}

static int prof_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *prof CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_SERVER_PROFILES, a.pos[0], &prof);
  if (rc) return rc;
  if (c->json)
    out_json(prof);
  else
    prof_print(c, prof);
  return CLI_OK;
}

/* A reply that is a task document (or names one in taskUri): follow it. */
static int follow_reply(struct cli *c, json_t **reply, int wait) {
  if (!json_is_object(*reply)) return CLI_OK;
  if (!*jstr(*reply, "taskState")) {
    const char *turi = jstr(*reply, "taskUri");
    if (!*turi || !wait) return CLI_OK;
    json_t *task = NULL;
    int rc = api_call(c, "GET", turi, NULL, NULL, &task);
    if (rc) return rc;
    json_decref(*reply);
    *reply = task;
  }
  return wait ? task_follow(c, reply) : CLI_OK;
}

static int prof_delete(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  json_t *prof CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_SERVER_PROFILES, a.pos[0], &prof);
  if (rc) return rc;
  json_t *reply CLEANUP_JSON = NULL;
  rc = api_call(c, "DELETE", jstr(prof, "uri"), NULL, NULL, &reply);
  if (rc) return rc;
  int wait = !args_has(&a, "no-wait");
  if ((rc = follow_reply(c, &reply, wait))) return rc;
  if (c->json) {
    json_t *o CLEANUP_JSON = json_pack("{s:s, s:s, s:b, s:O?}", "uri", jstr(prof, "uri"), "name",
                                       jstr(prof, "name"), "deleted", wait, "task", reply);
    out_json(o);
  } else if (!wait && *jstr(reply, "uri")) {
    printf("Deleting server profile \"%s\" in task %s.\n", jstr(prof, "name"), jstr(reply, "uri"));
  } else {
    printf("Deleted server profile \"%s\" and its OS volume.\n", jstr(prof, "name"));
  }
  return CLI_OK;
}

static int prof_move(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"hardware", 1}, {"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, MOVE_USAGE);
  if (rc || a.help) return rc;
  const char *hwref = args_get(&a, "hardware");
  if (!hwref || !*hwref) return cli_usage_error(MOVE_USAGE, "--hardware is required");
  json_t *prof CLEANUP_JSON = NULL, *hw CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_SERVER_PROFILES, a.pos[0], &prof)) ||
      (rc = ref_get(c, &COLL_SERVER_HARDWARE, hwref, &hw)))
    return rc;
  if (strcmp(jstr(hw, "uri"), jstr(prof, "serverHardwareUri")) == 0) {
    printf("Server profile \"%s\" is on \"%s\" already.\n", jstr(prof, "name"), jstr(hw, "name"));
    return CLI_OK;
  }
  json_t *body CLEANUP_JSON = json_pack("{s:s}", "serverHardwareUri", jstr(hw, "uri"));
  json_t *reply CLEANUP_JSON = NULL;
  if ((rc = res_update(c, prof, body, &reply))) return rc;
  int wait = !args_has(&a, "no-wait");
  if ((rc = follow_reply(c, &reply, wait))) return rc;
  if (!wait) {
    if (c->json)
      out_json(reply);
    else
      printf("Moving server profile \"%s\" in task %s.\n", jstr(prof, "name"), jstr(reply, "uri"));
    return CLI_OK;
  }
  json_t *now CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", jstr(prof, "uri"), NULL, NULL, &now))) return rc;
  if (c->json) {
    out_json(now);
    return CLI_OK;
  }
  printf("Moved server profile \"%s\" to \"%s\" with its OS volume (nothing redeployed).\n",
         jstr(prof, "name"), jstr(hw, "name"));
  printf("boot connections:\n");
  print_boot_connections(now, "  ");
  return CLI_OK;
}

int cmd_profile(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {
      {"list", prof_list, "list server profiles"},
      {"ls", prof_list, "same as list"},
      {"show", prof_show, "show one"},
      {"delete", prof_delete, "delete one"},
      {"rm", prof_delete, "same as delete"},
      {"move", prof_move, "move to another machine"},
      {NULL, NULL, NULL},
  };
  return cli_dispatch(c, "profile", PROFILE_HELP, subs, argc, argv);
}

/* ---- deploy ---------------------------------------------------------------------------------- */
static json_t *find_by_name(json_t *arr, const char *name) {
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    if (strcmp(jstr(a, "name"), name) == 0) return a;
  }
  return NULL;
}

/* Known to the plan: declared (deployment plan, build plan) or used by a plan
 * script, by its full name or, for NIC sub-values ("Name.sub"), its base name. */
static int known(json_t *derived, json_t *bp, json_t *dp, const char *n) {
  if (find_by_name(derived, n) || find_by_name(bp, n) || find_by_name(dp, n)) return 1;
  const char *dot = strchr(n, '.');
  if (!dot) return 0;
  char base[256];
  snprintf(base, sizeof base, "%.*s", (int)(dot - n), n);
  json_t *d = find_by_name(dp, base);
  if (!d) d = find_by_name(bp, base);
  if (d) return util_strcaseeq(jstr(d, "type"), "nic");
  size_t i;
  json_t *a;
  json_array_foreach(derived, i, a) {
    const char *dn = jstr(a, "name");
    if (strncmp(dn, base, strlen(base)) == 0 && dn[strlen(base)] == '.') return 1;
  }
  return 0;
}

static void violation(json_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(json_t *v, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_array_append_new(v, json_pack("{s:s}", "message", msg));
}

/* The text a value shows: passwords masked, NIC sub-values joined. */
static char *shown_value(json_t *d) {
  if (util_strcaseeq(jstr(d, "type"), "nic")) {
    json_t *nv = json_object_get(d, "nicValues");
    size_t len = 1;
    const char *k;
    json_t *v;
    json_object_foreach(nv, k, v) { len += strlen(k) + json_string_length(v) + 2; }
    char *s = calloc(1, len);
    if (!s) return NULL;
    json_object_foreach(nv, k, v) {
      if (*s) strcat(s, " ");
      strcat(s, k);
      strcat(s, "=");
      strcat(s, json_string_value(v) ?: "");
    }
    return s;
  }
  json_t *v = json_object_get(d, "value");
  if (util_strcaseeq(jstr(d, "type"), "password"))
    return strdup(json_is_string(v) && !*json_string_value(v) ? "" : "********");
  return out_text(v);
}

/* Everything the local check needs: the plan's layers. */
struct plan_info {
  json_t *dp, *bp, *derived;
};

static void plan_info_clear(struct plan_info *p) {
  json_decref(p->dp);
  json_decref(p->bp);
  json_decref(p->derived);
}

static int plan_info_load(struct cli *c, const char *ref, struct plan_info *p) {
  memset(p, 0, sizeof *p);
  int rc = ref_get(c, &COLL_DEPLOYMENT_PLANS, ref, &p->dp);
  if (rc) return rc;
  const char *bpref = jstr(p->dp, "oeBuildPlanURI");
  if (!*bpref) {
    fprintf(stderr, "error: deployment plan \"%s\" names no build plan\n", jstr(p->dp, "name"));
    return CLI_ESERVER;
  }
  if ((rc = ref_get(c, &COLL_BUILD_PLANS, bpref, &p->bp))) return rc;
  p->derived = json_array();
  size_t i;
  json_t *step;
  json_array_foreach(json_object_get(p->bp, "buildStep"), i, step) {
    const char *ps = jstr(step, "planScriptUri");
    if (!*ps) continue;
    json_t *script CLEANUP_JSON = NULL;
    if ((rc = ref_get(c, &COLL_PLAN_SCRIPTS, ps, &script))) return rc;
    json_t *d CLEANUP_JSON = attr_derive(jstr(script, "content"));
    if (d) json_array_extend(p->derived, d);
  }
  return CLI_OK;
}

/* Check `given` as the server will (plan_attributes in src/deploy/plan.c):
 * names known, not system, not fixed by the deployment plan, values fitting
 * their declarations. Returns the merged declarations; violations appended. */
static json_t *check_values(struct plan_info *p, json_t *given, json_t *violations) {
  json_t *bp = json_object_get(p->bp, "customAttributes");
  json_t *dp = json_object_get(p->dp, "customAttributes");
  size_t i;
  json_t *a;
  json_array_foreach(given, i, a) {
    const char *n = jstr(a, "name");
    if (n[0] == '_') {
      violation(violations, "attribute \"%s\" is a system attribute: the server sets it", n);
      continue;
    }
    if (!known(p->derived, bp, dp, n)) {
      violation(violations,
                "attribute \"%s\" is not declared by deployment plan \"%s\", build plan \"%s\" "
                "or its plan scripts",
                n, jstr(p->dp, "name"), jstr(p->bp, "name"));
      continue;
    }
    json_t *d = find_by_name(dp, n);
    if (d && json_is_false(json_object_get(d, "editable"))) {
      CLEANUP_FREE char *dv = out_text(json_object_get(d, "value"));
      if (strcmp(dv ? dv : "", jstr(a, "value")) != 0)
        violation(violations, "attribute \"%s\" is not editable in deployment plan \"%s\"", n,
                  jstr(p->dp, "name"));
    }
  }
  json_t *merged = attr_merge(p->derived, bp, dp, given);
  json_array_foreach(merged, i, a) {
    const char *type = jstr(a, "type");
    if (util_strcaseeq(type, "nic")) {
      json_t *nv = json_object_get(a, "nicValues");
      if (json_is_object(nv) && !json_object_get(nv, "constraint") &&
          (json_string_length(json_object_get(nv, "ipaddress")) ||
           json_string_length(json_object_get(nv, "ipaddress1"))))
        json_object_set_new(nv, "constraint", json_string("auto"));
      attr_value_check(a, NULL, nv, violations);
      continue;
    }
    CLEANUP_FREE char *v = out_text(json_object_get(a, "value"));
    if (v && *v) attr_value_check(a, v, NULL, violations);
  }
  return merged;
}

static void print_plan(struct cli *c, struct plan_info *p, json_t *merged) {
  const char *gi = jstr(p->dp, "goldenImageURI");
  CLEANUP_FREE char *gname = *gi ? name_of(c, gi) : NULL;
  printf("Deployment plan \"%s\": build plan \"%s\", %s%s\n", jstr(p->dp, "name"),
         jstr(p->bp, "name"), gname ? "golden image " : "no golden image", gname ? gname : "");
  static const char *const hdr[] = {"ATTRIBUTE", "TYPE", "VALUE"};
  struct table *t = table_new(3, hdr);
  size_t i;
  json_t *d;
  int shown = 0;
  json_array_foreach(merged, i, d) {
    if (json_is_false(json_object_get(d, "visible"))) continue;
    CLEANUP_FREE char *v = shown_value(d);
    const char *type = jstr(d, "type");
    const char *row[] = {jstr(d, "name"), *type ? type : "string", v ? v : ""};
    table_add(t, row);
    shown++;
  }
  if (shown)
    table_print(t, stdout, "  ");
  else
    printf("  (no visible attributes)\n");
  table_free(t);
}

int cmd_deploy(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"hardware", 1},    {"plan", 1},  {"attr", 1},
                                         {"description", 1}, {"check", 0}, {"no-wait", 0},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, DEPLOY_USAGE);
  if (rc || a.help) return rc;
  const char *name = a.pos[0], *hwref = args_get(&a, "hardware"), *dpref = args_get(&a, "plan");
  if (!*name) return cli_usage_error(DEPLOY_USAGE, "PROFILE cannot be empty");
  if (!dpref) return cli_usage_error(DEPLOY_USAGE, "--plan is required");
  json_t *given CLEANUP_JSON = json_array();
  for (int i = 0; i < a.nopt; i++) {
    if (strcmp(a.opt[i].name, "attr") != 0) continue;
    const char *v = a.opt[i].value, *eq = strchr(v, '=');
    if (!eq || eq == v) return cli_usage_error(DEPLOY_USAGE, "--attr %s: write NAME=VALUE", v);
    json_array_append_new(given,
                          json_pack("{s:s%, s:s}", "name", v, (size_t)(eq - v), "value", eq + 1));
  }
  struct plan_info p;
  rc = plan_info_load(c, dpref, &p);
  if (rc) {
    plan_info_clear(&p);
    return rc;
  }
  json_t *violations CLEANUP_JSON = json_array();
  json_t *merged CLEANUP_JSON = check_values(&p, given, violations);
  if (json_array_size(violations)) {
    fprintf(stderr,
            "error: %zu custom attribute problem(s) for deployment plan \"%s\" (checked here; "
            "nothing was sent):\n",
            json_array_size(violations), jstr(p.dp, "name"));
    size_t i;
    json_t *v;
    json_array_foreach(violations, i, v) { fprintf(stderr, "  - %s\n", jstr(v, "message")); }
    plan_info_clear(&p);
    return CLI_EUSAGE;
  }
  if (args_has(&a, "check")) {
    if (!c->json) print_plan(c, &p, merged);
    if (c->json)
      out_json(merged);
    else
      printf("The values are valid for deployment plan \"%s\"; nothing was created.\n",
             jstr(p.dp, "name"));
    plan_info_clear(&p);
    return CLI_OK;
  }
  /* An existing profile of that name: redeploy it. */
  json_t *existing CLEANUP_JSON = NULL;
  {
    CLEANUP_FREE char *filter = ref_name_filter("name", name);
    json_t *list CLEANUP_JSON = NULL;
    if ((rc = api_list(c, "server-profiles", filter, NULL, &list))) {
      plan_info_clear(&p);
      return rc;
    }
    json_t *m = json_array_get(json_object_get(list, "members"), 0);
    if (json_is_object(m) && strcmp(jstr(m, "name"), name) == 0) existing = json_incref(m);
  }
  if (!existing && !hwref) {
    plan_info_clear(&p);
    return cli_usage_error(DEPLOY_USAGE, "--hardware is required (no server profile \"%s\" yet)",
                           name);
  }
  json_t *hw CLEANUP_JSON = NULL;
  if (existing && !hwref) {
    rc = api_call(c, "GET", jstr(existing, "serverHardwareUri"), NULL, NULL, &hw);
  } else {
    rc = ref_get(c, &COLL_SERVER_HARDWARE, hwref, &hw);
  }
  if (rc) {
    plan_info_clear(&p);
    return rc;
  }
  if (existing && strcmp(jstr(hw, "uri"), jstr(existing, "serverHardwareUri")) != 0) {
    plan_info_clear(&p);
    return cli_usage_error(DEPLOY_USAGE,
                           "server profile \"%s\" is deployed to another machine (%s): "
                           "move it first with 'streamer profile move', then redeploy",
                           name, jstr(existing, "serverHardwareUri"));
  }
  if (!c->json) print_plan(c, &p, merged);
  json_t *body CLEANUP_JSON = NULL;
  if (existing)
    body = json_pack("{s:{s:s, s:O}}", "osDeploymentSettings", "osDeploymentPlanUri",
                     jstr(p.dp, "uri"), "osCustomAttributes", given);
  else
    body = json_pack("{s:s, s:s, s:s, s:{s:s, s:O}}", "type", "ServerProfileV12", "name", name,
                     "serverHardwareUri", jstr(hw, "uri"), "osDeploymentSettings",
                     "osDeploymentPlanUri", jstr(p.dp, "uri"), "osCustomAttributes", given);
  plan_info_clear(&p);
  const char *desc = args_get(&a, "description");
  if (desc) json_object_set_new(body, "description", json_string(desc));
  json_t *reply CLEANUP_JSON = NULL;
  if (existing)
    rc = res_update(c, existing, body, &reply);
  else
    rc = api_call(c, "POST", "/rest/server-profiles", body, NULL, &reply);
  if (rc) return rc;
  int wait = !args_has(&a, "no-wait");
  if (!wait) {
    if (c->json)
      out_json(reply);
    else
      printf("%s server profile \"%s\" in task %s (streamer task wait %s).\n",
             existing ? "Redeploying" : "Deploying", name,
             *jstr(reply, "taskState") ? jstr(reply, "uri") : jstr(reply, "taskUri"),
             *jstr(reply, "taskState") ? res_id(reply) : jstr(reply, "taskUri"));
    return CLI_OK;
  }
  /* The reply is the task (202) or the profile naming its task. */
  json_t *first CLEANUP_JSON = json_incref(reply);
  if ((rc = follow_reply(c, &reply, 1))) return rc;
  const char *uri = *jstr(first, "taskState")
                        ? jstr(json_object_get(reply, "associatedResource"), "resourceUri")
                        : jstr(first, "uri");
  if (!*uri) {
    fprintf(stderr, "error: the deployment task names no server profile\n");
    return CLI_ESERVER;
  }
  json_t *prof CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", uri, NULL, NULL, &prof))) return rc;
  if (c->json) {
    out_json(prof);
    return CLI_OK;
  }
  char *vol = name_of(c, jstr(json_object_get(prof, "osDeploymentSettings"), "osVolumeUri"));
  printf("%s server profile \"%s\" (id %s) to \"%s\": OS volume %s, state %s.\n",
         existing ? "Redeployed" : "Deployed", jstr(prof, "name"), res_id(prof), jstr(hw, "name"),
         vol, jstr(prof, "state"));
  free(vol);
  printf("boot connections:\n");
  print_boot_connections(prof, "  ");
  json_t *mac = json_array_get(json_object_get(hw, "macAddresses"), 0);
  if (json_is_string(mac))
    printf("The machine boots it with iPXE from /boot/ipxe?mac=%s (docs/boot.md).\n",
           json_string_value(mac));
  return CLI_OK;
}
