/* plan_script.c — `streamer plan-script ...`: list, show, create, update,
 * delete over /rest/plan-scripts, and the offline `attrs FILE` that lists
 * the @attributes@ a script declares (attr_derive) and `check FILE...` that
 * lints scripts with the engine's parser (script_check); no server needed. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "script/attr.h"
#include "script/script.h"

/* The NAME / DEFAULT table of a plan script's derived attributes. */
static void print_attr_defaults(json_t *attrs, const char *indent) {
  static const char *const hdr[] = {"NAME", "DEFAULT"};
  struct table *t = table_new(2, hdr);
  size_t i;
  json_t *d;
  json_array_foreach(attrs, i, d) {
    CLEANUP_FREE char *v = out_text(json_object_get(d, "value"));
    const char *row[] = {jstr(d, "name"), v};
    table_add(t, row);
  }
  table_print(t, stdout, indent);
  table_free(t);
}
static const char PS_HELP[] =
    "usage: streamer plan-script SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]       list plan scripts\n"
    "  show REF                           show one plan script, its attributes and content\n"
    "  create --name N --type T --file F [--description D]\n"
    "                                     create from a script file (- = stdin);\n"
    "                                     T is deploy, capture or general\n"
    "  update REF [--name N] [--description D] [--type T] [--file F]\n"
    "  delete REF\n"
    "  attrs FILE                         list the custom attributes FILE declares\n"
    "                                     (offline, no server needed)\n"
    "  check [--attr NAME=VALUE]... FILE...\n"
    "                                     lint plan scripts: every syntax error and\n"
    "                                     unknown command with FILE:LINE (offline)\n"
    "\n"
    "REF is an id, a uri (/rest/plan-scripts/ID) or an exact name.\n";

static const char LIST_USAGE[] = "usage: streamer plan-script list [--filter F] [--sort S]\n"
                                 "\n"
                                 "  --filter F   server-side filter, e.g. \"planType='deploy'\"\n"
                                 "  --sort S     e.g. name:desc (default name:asc)\n";
static const char SHOW_USAGE[] = "usage: streamer plan-script show REF\n";
static const char CREATE_USAGE[] =
    "usage: streamer plan-script create --name N --type deploy|capture|general --file F "
    "[--description D]\n"
    "\n"
    "Create a plan script from the file F (- = standard input). The server derives\n"
    "its customAttributes from the @name@ / @name:default@ tokens in the content.\n";
static const char UPDATE_USAGE[] =
    "usage: streamer plan-script update REF [--name N] [--description D] [--type T] [--file F]\n"
    "\n"
    "Change the given fields; --file replaces the content.\n";
static const char DELETE_USAGE[] = "usage: streamer plan-script delete REF\n";
static const char ATTRS_USAGE[] =
    "usage: streamer plan-script attrs FILE\n"
    "\n"
    "Offline: print the custom attributes the plan script FILE (- = stdin) declares,\n"
    "with the default each token gives (table NAME / DEFAULT; --json: the array the\n"
    "server would store as customAttributes).\n";

static const char CHECK_USAGE[] =
    "usage: streamer plan-script check [--attr NAME=VALUE]... FILE...\n"
    "\n"
    "Offline: parse each plan script FILE (- = stdin) with guestfish's line rules, as\n"
    "Streamer runs them, and print every finding as FILE:LINE: error|warning|note: MESSAGE.\n"
    "Errors: lines that do not parse, unknown commands, wrong argument counts, bad\n"
    "numbers. Warnings: legal traps (chmod 755 is decimal). Notes: what only a run can\n"
    "tell. --attr gives attribute values to substitute first (other @tokens@ stay as\n"
    "written). Exit status 1 if any FILE has an error, else 0.\n";

static int check_plan_type(const char *t, const char *usage) {
  if (util_strcaseeq(t, "deploy") || util_strcaseeq(t, "capture") || util_strcaseeq(t, "general"))
    return CLI_OK;
  return cli_usage_error(usage, "--type must be deploy, capture or general, not \"%s\"", t);
}

/* The plan script's customAttributes: a JSON-encoded string on the wire
 * (an array in some exports); returned as an array (new reference). */
static json_t *ps_attrs(json_t *ps) {
  json_t *ca = json_object_get(ps, "customAttributes");
  if (json_is_array(ca)) return json_incref(ca);
  if (json_is_string(ca)) {
    json_t *arr = json_loads(json_string_value(ca), JSON_DECODE_ANY, NULL);
    if (json_is_array(arr)) return arr;
    json_decref(arr);
  }
  return json_array();
}

static int ps_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "plan-scripts", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "TYPE", "ATTRS", "ID", "MODIFIED"};
  struct table *t = table_new(5, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    json_t *attrs CLEANUP_JSON = ps_attrs(m);
    char n[32];
    snprintf(n, sizeof n, "%zu", json_array_size(attrs));
    CLEANUP_FREE char *mod = out_time(jstr(m, "modified"));
    const char *row[] = {jstr(m, "name"), jstr(m, "planType"), n, res_id(m), mod};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static void ps_print(json_t *ps) {
  static const char *const order[] = {"name",     "id",          "uri",        "type",
                                      "planType", "description", "hpProvided", "created",
                                      "modified", "eTag",        NULL};
  static const char *const skip[] = {
      "name",    "id",       "uri",  "type",    "planType",         "description", "hpProvided",
      "created", "modified", "eTag", "content", "customAttributes", NULL};
  struct kv *k = kv_new();
  kv_fields(k, ps, order);
  kv_rest(k, ps, skip);
  kv_print(k, stdout);
  kv_free(k);

  json_t *attrs CLEANUP_JSON = ps_attrs(ps);
  printf("\ncustomAttributes:%s\n", json_array_size(attrs) ? "" : " (none)");
  if (json_array_size(attrs)) {
    print_attr_defaults(attrs, "  ");
  }
  const char *content = jstr(ps, "content");
  printf("\ncontent:\n");
  const char *p = content;
  while (*p) {
    const char *nl = strchr(p, '\n');
    int len = nl ? (int)(nl - p) : (int)strlen(p);
    printf("  %.*s\n", len, p);
    p += len + (nl ? 1 : 0);
  }
}

static int ps_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *ps CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_PLAN_SCRIPTS, a.pos[0], &ps);
  if (rc) return rc;
  if (c->json)
    out_json(ps);
  else
    ps_print(ps);
  return CLI_OK;
}

/* Read a script file as a JSON string (it must be UTF-8 text). */
static json_t *load_content(const char *path, const char *usage, int *rc) {
  CLEANUP_FREE char *text = cli_load_text_file(path, usage, rc);
  if (!text) return NULL;
  json_t *s = json_string(text);
  if (!s) *rc = cli_usage_error(usage, "%s is not UTF-8 text", path);
  return s;
}

static void report_attrs(struct cli *c, json_t *ps) {
  if (c->json) return;
  json_t *attrs CLEANUP_JSON = ps_attrs(ps);
  size_t n = json_array_size(attrs);
  if (n == 0) return;
  printf("Custom attributes (%zu):", n);
  size_t i;
  json_t *d;
  json_array_foreach(attrs, i, d) { printf("%s %s", i ? "," : "", jstr(d, "name")); }
  printf("\n");
}

static int ps_create(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"name", 1}, {"type", 1}, {"description", 1}, {"file", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 0, CREATE_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name"), *type = args_get(&a, "type");
  const char *file = args_get(&a, "file");
  if (!name || !*name) return cli_usage_error(CREATE_USAGE, "--name is required");
  if (!type) return cli_usage_error(CREATE_USAGE, "--type is required");
  if ((rc = check_plan_type(type, CREATE_USAGE))) return rc;
  if (!file) return cli_usage_error(CREATE_USAGE, "--file is required");
  json_t *content = load_content(file, CREATE_USAGE, &rc);
  if (!content) return rc;
  const char *desc = args_get(&a, "description");
  json_t *body CLEANUP_JSON =
      json_pack("{s:s, s:s, s:s, s:s, s:o, s:b}", "type", "PlanScript", "name", name, "description",
                desc ? desc : "", "planType", type, "content", content, "hpProvided", 0);
  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/plan-scripts", body, NULL, &res);
  if (rc) return rc;
  res_done(c, "Created", &COLL_PLAN_SCRIPTS, res);
  report_attrs(c, res);
  return CLI_OK;
}

static int ps_update(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"name", 1}, {"type", 1}, {"description", 1}, {"file", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  if (a.nopt == 0)
    return cli_usage_error(UPDATE_USAGE, "nothing to update: give --name, --description, "
                                         "--type or --file");
  const char *type = args_get(&a, "type");
  if (type && (rc = check_plan_type(type, UPDATE_USAGE))) return rc;
  const char *name = args_get(&a, "name");
  if (name && !*name) return cli_usage_error(UPDATE_USAGE, "--name cannot be empty");
  json_t *content = NULL;
  if (args_get(&a, "file")) {
    content = load_content(args_get(&a, "file"), UPDATE_USAGE, &rc);
    if (!content) return rc;
  }
  json_t *ps CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_PLAN_SCRIPTS, a.pos[0], &ps);
  if (rc) {
    json_decref(content);
    return rc;
  }
  if (name) json_object_set_new(ps, "name", json_string(name));
  if (type) json_object_set_new(ps, "planType", json_string(type));
  if (args_get(&a, "description"))
    json_object_set_new(ps, "description", json_string(args_get(&a, "description")));
  if (content) json_object_set_new(ps, "content", content);
  json_t *res CLEANUP_JSON = NULL;
  rc = res_put(c, ps, &res);
  if (rc) return rc;
  res_done(c, "Updated", &COLL_PLAN_SCRIPTS, res);
  if (args_get(&a, "file")) report_attrs(c, res);
  return CLI_OK;
}

static int ps_delete(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  return res_delete(c, &COLL_PLAN_SCRIPTS, a.pos[0]);
}

static int ps_attrs_cmd(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, ATTRS_USAGE);
  if (rc || a.help) return rc;
  CLEANUP_FREE char *text = cli_load_text_file(a.pos[0], ATTRS_USAGE, &rc);
  if (!text) return rc;
  json_t *attrs CLEANUP_JSON = attr_derive(text);
  if (!attrs) {
    fprintf(stderr, "error: cannot scan %s (out of memory)\n", a.pos[0]);
    return CLI_EUSAGE;
  }
  if (c->json) {
    out_json(attrs);
    return CLI_OK;
  }
  if (json_array_size(attrs) == 0) {
    fprintf(stderr, "%s declares no custom attributes\n", a.pos[0]);
    return CLI_OK;
  }
  print_attr_defaults(attrs, NULL);
  return CLI_OK;
}

struct check_count {
  int warnings, notes;
};
static void print_diag(void *opaque, const char *name, int line, enum script_severity sev,
                       const char *msg) {
  struct check_count *n = opaque;
  static const char *const label[] = {"note", "warning", "error"};
  if (sev == SCRIPT_WARNING) n->warnings++;
  if (sev == SCRIPT_NOTE) n->notes++;
  printf("%s:%d: %s: %s\n", name, line, label[sev], msg);
}

static int ps_check(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"attr", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, -1, CHECK_USAGE);
  if (rc || a.help) return rc;
  json_t *values CLEANUP_JSON = json_object();
  for (int i = 0; i < a.nopt; i++) {
    const char *eq = strchr(a.opt[i].value, '=');
    if (!eq || eq == a.opt[i].value)
      return cli_usage_error(CHECK_USAGE, "--attr needs NAME=VALUE, not \"%s\"", a.opt[i].value);
    if (json_object_setn_new(values, a.opt[i].value, (size_t)(eq - a.opt[i].value),
                             json_string(eq + 1)) < 0)
      return cli_usage_error(CHECK_USAGE, "--attr \"%s\": the name and value must be UTF-8 text",
                             a.opt[i].value);
  }
  struct check_count n = {0, 0};
  int errors = 0, bad_files = 0;
  for (int i = 0; i < a.npos; i++) {
    CLEANUP_FREE char *text = cli_load_text_file(a.pos[i], CHECK_USAGE, &rc);
    if (!text) return rc;
    int r = script_check(text, strlen(text), strcmp(a.pos[i], "-") ? a.pos[i] : "<stdin>", values,
                         print_diag, &n);
    if (r < 0) {
      fprintf(stderr, "error: cannot check %s (out of memory)\n", a.pos[i]);
      return CLI_EUSAGE;
    }
    errors += r;
    bad_files += r > 0;
  }
  fflush(stdout);
  fprintf(stderr, "%d file%s checked: %d error%s in %d file%s, %d warning%s, %d note%s\n", a.npos,
          a.npos == 1 ? "" : "s", errors, errors == 1 ? "" : "s", bad_files,
          bad_files == 1 ? "" : "s", n.warnings, n.warnings == 1 ? "" : "s", n.notes,
          n.notes == 1 ? "" : "s");
  return errors ? CLI_ESERVER : CLI_OK;
}

int cmd_plan_script(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", ps_list, NULL},     {"show", ps_show, NULL},
                                       {"create", ps_create, NULL}, {"update", ps_update, NULL},
                                       {"delete", ps_delete, NULL}, {"attrs", ps_attrs_cmd, NULL},
                                       {"check", ps_check, NULL},   {NULL, NULL, NULL}};
  return cli_dispatch(c, "plan-script", PS_HELP, subs, argc, argv);
}
