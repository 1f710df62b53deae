/* user.c — `streamer user list | create | update | delete | passwd` over
 * /rest/users (local users and their roles). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char USER_HELP[] =
    "usage: streamer user SUBCOMMAND [options]\n"
    "\n"
    "  list                                   list users and their roles\n"
    "  create --name U --role ROLE [--full-name F] [--email E]\n"
    "         [--password P | --password-file F]\n"
    "  update U [--role ROLE]... [--full-name F] [--email E]\n"
    "  delete U\n"
    "  passwd [U] [--password P | --password-file F] [--current-password P |\n"
    "         --current-password-file F]      change a password (default: your own)\n"
    "\n"
    "ROLE is one of: infrastructure (\"Infrastructure administrator\"),\n"
    "deployment (\"Deployment administrator\"), server (\"Server administrator\"),\n"
    "readonly (\"Read only\"); the full names are accepted too.\n";
static const char LIST_USAGE[] = "usage: streamer user list [--filter F] [--sort S]\n";
static const char CREATE_USAGE[] =
    "usage: streamer user create --name U --role ROLE [--role ROLE]... [--full-name F]\n"
    "       [--email E] [--password P | --password-file F]\n"
    "\n"
    "Without --password / --password-file the password is asked twice on the terminal.\n"
    "ROLE: infrastructure, deployment, server, readonly (or the full role names).\n";
static const char UPDATE_USAGE[] =
    "usage: streamer user update U [--role ROLE]... [--full-name F] [--email E]\n"
    "\n"
    "--role replaces all roles of the user with the ones given.\n";
static const char DELETE_USAGE[] = "usage: streamer user delete U\n";
static const char PASSWD_USAGE[] =
    "usage: streamer user passwd [U] [--password P | --password-file F]\n"
    "       [--current-password P | --current-password-file F]\n"
    "\n"
    "Change the password of U (default: the user of the cached login). Changing\n"
    "your own password needs the current one; an Infrastructure administrator can\n"
    "set another user's password without it. Missing passwords are asked on the\n"
    "terminal without echo.\n";

static const char *role_name(const char *r) {
  static const struct {
    const char *alias, *name;
  } roles[] = {
      {"infrastructure", "Infrastructure administrator"},
      {"infra", "Infrastructure administrator"},
      {"admin", "Infrastructure administrator"},
      {"deployment", "Deployment administrator"},
      {"server", "Server administrator"},
      {"readonly", "Read only"},
      {"read-only", "Read only"},
      {"read_only", "Read only"},
  };
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
    if (util_strcaseeq(r, roles[i].alias) || util_strcaseeq(r, roles[i].name)) return roles[i].name;
  return r;
}

static json_t *permissions_from_args(const struct args *a) {
  json_t *perms = json_array();
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "role") == 0)
      json_array_append_new(perms, json_pack("{s:s}", "roleName", role_name(a->opt[i].value)));
  }
  return perms;
}

static char *roles_text(json_t *user) {
  json_t *perms = json_object_get(user, "permissions");
  size_t len = 1, i;
  json_t *p;
  json_array_foreach(perms, i, p) { len += strlen(jstr(p, "roleName")) + 2; }
  char *s = calloc(1, len);
  if (!s) return NULL;
  json_array_foreach(perms, i, p) {
    if (i) strcat(s, ", ");
    strcat(s, jstr(p, "roleName"));
  }
  return s;
}

static int user_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "users", args_get(&a, "filter"), sort ? sort : "userName:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "FULL NAME", "ROLES", "ENABLED", "MODIFIED"};
  struct table *t = table_new(5, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    CLEANUP_FREE char *roles = roles_text(m);
    CLEANUP_FREE char *enabled = out_text(json_object_get(m, "enabled"));
    CLEANUP_FREE char *mod = out_time(jstr(m, "modified"));
    const char *row[] = {jstr(m, "userName"), jstr(m, "fullName"), roles, enabled, mod};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

/* A new password from --password / --password-file, else asked twice. */
static char *new_password(const struct args *a, const char *who, const char *usage, int *rc) {
  *rc = CLI_OK;
  if (args_get(a, "password")) {
    if (args_get(a, "password-file"))
      *rc = cli_usage_error(usage, "give either --password or --password-file");
    return *rc ? NULL : strdup(args_get(a, "password"));
  }
  CLEANUP_FREE char *prompt = util_strdup_printf("New password for %s: ", who);
  char *p1 = cli_read_secret(args_get(a, "password-file"), prompt, usage, rc);
  if (!p1 || args_get(a, "password-file")) return p1;
  CLEANUP_FREE char *p2 = cli_read_secret(NULL, "Retype the new password: ", usage, rc);
  if (!p2 || strcmp(p1, p2) != 0) {
    if (p2) *rc = cli_usage_error(usage, "the passwords do not match");
    cli_wipe(p1);
    free(p1);
    if (p2) cli_wipe(p2);
    return NULL;
  }
  cli_wipe(p2);
  return p1;
}

static void wipe_json_field(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (json_is_string(v)) cli_wipe((char *)json_string_value(v));
}

static int user_create(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"name", 1},     {"role", 1},          {"full-name", 1},
                                         {"password", 1}, {"password-file", 1}, {"email", 1},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 0, CREATE_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name");
  if (!name || !*name) return cli_usage_error(CREATE_USAGE, "--name is required");
  if (!args_has(&a, "role")) return cli_usage_error(CREATE_USAGE, "--role is required");
  if ((rc = api_require_login(c))) return rc;
  CLEANUP_FREE char *pw = new_password(&a, name, CREATE_USAGE, &rc);
  if (!pw) return rc;
  const char *full = args_get(&a, "full-name");
  json_t *body CLEANUP_JSON =
      json_pack("{s:s, s:s, s:s, s:o}", "userName", name, "password", pw, "fullName",
                full ? full : "", "permissions", permissions_from_args(&a));
  cli_wipe(pw);
  if (args_get(&a, "email"))
    json_object_set_new(body, "emailAddress", json_string(args_get(&a, "email")));
  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/users", body, NULL, &res);
  wipe_json_field(body, "password");
  if (rc) return rc;
  json_object_del(res, "password");
  if (c->json) {
    out_json(res);
  } else {
    char *roles = roles_text(res);
    printf("Created user \"%s\" (%s).\n", *jstr(res, "userName") ? jstr(res, "userName") : name,
           roles && *roles ? roles : "no role");
    free(roles);
  }
  return CLI_OK;
}

static int user_update(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"role", 1}, {"full-name", 1}, {"email", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  if (a.nopt == 0) return cli_usage_error(UPDATE_USAGE, "nothing to update");
  json_t *body CLEANUP_JSON = json_object();
  if (args_has(&a, "role")) json_object_set_new(body, "permissions", permissions_from_args(&a));
  if (args_get(&a, "full-name"))
    json_object_set_new(body, "fullName", json_string(args_get(&a, "full-name")));
  if (args_get(&a, "email"))
    json_object_set_new(body, "emailAddress", json_string(args_get(&a, "email")));
  CLEANUP_FREE char *esc = http_escape(a.pos[0]);
  CLEANUP_FREE char *path = util_strdup_printf("/rest/users/%s", esc ? esc : "");
  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "PUT", path, body, NULL, &res);
  if (rc) return rc;
  json_object_del(res, "password");
  if (c->json) {
    out_json(res ? res : body);
  } else {
    char *roles = roles_text(res);
    printf("Updated user \"%s\"%s%s%s.\n", a.pos[0], roles && *roles ? " (" : "",
           roles ? roles : "", roles && *roles ? ")" : "");
    free(roles);
  }
  return CLI_OK;
}

static int user_delete(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  CLEANUP_FREE char *esc = http_escape(a.pos[0]);
  CLEANUP_FREE char *path = util_strdup_printf("/rest/users/%s", esc ? esc : "");
  rc = api_call(c, "DELETE", path, NULL, NULL, NULL);
  if (rc) return rc;
  if (c->json) {
    json_t *o CLEANUP_JSON =
        json_pack("{s:s, s:s, s:b}", "uri", path, "userName", a.pos[0], "deleted", 1);
    out_json(o);
  } else {
    printf("Deleted user \"%s\".\n", a.pos[0]);
  }
  return CLI_OK;
}

static int user_passwd(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"password", 1},
                                         {"password-file", 1},
                                         {"current-password", 1},
                                         {"current-password-file", 1},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 1, PASSWD_USAGE);
  if (rc || a.help) return rc;
  if ((rc = api_require_login(c))) return rc;
  const char *who = a.npos ? a.pos[0] : c->user;
  if (!who)
    return cli_usage_error(PASSWD_USAGE, "give the user name (the cached session names none)");
  int own = c->user && strcmp(who, c->user) == 0;
  CLEANUP_FREE char *current = NULL;
  if (args_get(&a, "current-password")) {
    current = strdup(args_get(&a, "current-password"));
  } else if (args_get(&a, "current-password-file") || own) {
    current = cli_read_secret(args_get(&a, "current-password-file"),
                              "Current password: ", PASSWD_USAGE, &rc);
    if (!current) return rc;
  }
  CLEANUP_FREE char *pw = new_password(&a, who, PASSWD_USAGE, &rc);
  if (!pw) {
    cli_wipe(current);
    return rc;
  }
  json_t *body CLEANUP_JSON = json_pack("{s:s}", "password", pw);
  if (current) json_object_set_new(body, "currentPassword", json_string(current));
  cli_wipe(pw);
  cli_wipe(current);
  CLEANUP_FREE char *esc = http_escape(who);
  CLEANUP_FREE char *path = util_strdup_printf("/rest/users/%s", esc ? esc : "");
  json_t *res CLEANUP_JSON = NULL;
  rc = api_call(c, "PUT", path, body, NULL, &res);
  wipe_json_field(body, "password");
  wipe_json_field(body, "currentPassword");
  if (rc) return rc;
  if (c->json) {
    json_t *o CLEANUP_JSON = json_pack("{s:s, s:b}", "userName", who, "passwordChanged", 1);
    out_json(o);
  } else {
    printf("Changed the password of \"%s\".\n", who);
  }
  if (own && !c->token_from_env)
    fprintf(stderr,
            "note: the server ends the sessions of %s when its password changes; "
            "run 'streamer login' again\n",
            who);
  return CLI_OK;
}

int cmd_user(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", user_list, NULL},     {"create", user_create, NULL},
                                       {"update", user_update, NULL}, {"delete", user_delete, NULL},
                                       {"passwd", user_passwd, NULL}, {NULL, NULL, NULL}};
  return cli_dispatch(c, "user", USER_HELP, subs, argc, argv);
}
