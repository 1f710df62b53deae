/* main.c — the `streamer` command-line client: global options, the command
 * table, help and version. Each command group lives in its own file. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char MAIN_HELP[] =
    "usage: streamer [global options] COMMAND [SUBCOMMAND] [options]\n"
    "\n"
    "Client for a Streamer (HPE Image Streamer compatible) deployment server.\n"
    "\n"
    "Commands:\n"
    "  login              log in and cache the session (~/.config/streamer/session.json)\n"
    "  logout             end the server session and delete the cache\n"
    "  plan-script        list | show | create | update | delete | attrs (offline)\n"
    "  build-plan         list | show | create | update | delete\n"
    "  deployment-plan    list | show | create | update | delete\n"
    "  golden-image       list | show | upload | download | update | delete\n"
    "  bundle             create | upload | list | show | extract | download | delete | rename\n"
    "                     | backup | restore (artifact bundles)\n"
    "  volume             list | show | create | update | delete | credentials | ls | cat\n"
    "                     (OS volumes)\n"
    "  validate           run a build plan on a throwaway copy of a golden image or OS volume\n"
    "  capture            capture a golden image from an OS volume with a capture build plan\n"
    "  target             list | sessions (the iSCSI target)\n"
    "  hardware           add | list | show | delete (server hardware: the machines)\n"
    "  deploy             deploy a deployment plan to a machine (creates a server profile)\n"
    "  profile            list | show | delete (server profiles: the deployments)\n"
    "  task               list | show | wait\n"
    "  user               list | create | delete | passwd\n"
    "  help [COMMAND]     show help for a command\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --server URL       server base URL (env STREAMER_SERVER; default: the server of\n"
    "                     the cached login, else " CLI_DEFAULT_SERVER ")\n"
    "  -k, --insecure     do not verify the server's TLS certificate (env STREAMER_INSECURE=1)\n"
    "  --cacert FILE      verify the server's certificate against this CA / certificate\n"
    "  --json             print the server's JSON instead of tables\n"
    "  --help             show help (also after a command: streamer plan-script create --help)\n"
    "  --version          print the client version\n"
    "\n"
    "Environment: STREAMER_SERVER, STREAMER_TOKEN (overrides the cached session),\n"
    "STREAMER_USER, STREAMER_PASSWORD, STREAMER_INSECURE, XDG_CONFIG_HOME.\n"
    "\n"
    "A reference REF to a resource is its id, its uri (/rest/...) or its exact name.\n"
    "Exit status: 0 success, 1 the server answered an error, 2 usage error,\n"
    "3 cannot reach the server / TLS failure / not logged in.\n";

static int set_str(char **dst, const char *v) {
  free(*dst);
  *dst = strdup(v);
  return *dst ? 1 : -1;
}

int cli_global_opt(struct cli *c, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (strcmp(a, "--insecure") == 0 || strcmp(a, "-k") == 0) {
    c->opt_insecure = 1;
    return 1;
  }
  if (strcmp(a, "--json") == 0) {
    c->json = 1;
    return 1;
  }
  if (strcmp(a, "--version") == 0) {
    c->version = 1;
    return 1;
  }
  static const char *const valued[] = {"--server", "--cacert"};
  for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
    size_t n = strlen(valued[k]);
    if (strncmp(a, valued[k], n) != 0) continue;
    char **dst = k == 0 ? &c->opt_server : &c->opt_cacert;
    if (a[n] == '=') return set_str(dst, a + n + 1);
    if (a[n] != 0) continue;
    if (*i + 1 >= argc) {
      fprintf(stderr, "error: %s needs a value\nhint: streamer --help\n", valued[k]);
      return -1;
    }
    (*i)++;
    return set_str(dst, argv[*i]);
  }
  return 0;
}

struct command {
  const char *name;
  const char *alias;
  int (*fn)(struct cli *c, int argc, char **argv);
};

static const struct command COMMANDS[] = {
    {"login", NULL, cmd_login},
    {"logout", NULL, cmd_logout},
    {"plan-script", "plan-scripts", cmd_plan_script},
    {"build-plan", "build-plans", cmd_build_plan},
    {"deployment-plan", "deployment-plans", cmd_deployment_plan},
    {"golden-image", "golden-images", cmd_golden_image},
    {"bundle", "bundles", cmd_bundle},
    {"volume", "volumes", cmd_volume},
    {"target", "targets", cmd_target},
    {"task", "tasks", cmd_task},
    {"validate", NULL, cmd_validate},
    {"capture", NULL, cmd_capture},
    {"hardware", "server-hardware", cmd_hardware},
    {"deploy", NULL, cmd_deploy},
    {"profile", "profiles", cmd_profile},
    {"user", "users", cmd_user},
};

static const struct command *find_command(const char *name) {
  for (size_t k = 0; k < sizeof COMMANDS / sizeof COMMANDS[0]; k++) {
    if (strcmp(COMMANDS[k].name, name) == 0 ||
        (COMMANDS[k].alias && strcmp(COMMANDS[k].alias, name) == 0))
      return &COMMANDS[k];
  }
  return NULL;
}

int cli_dispatch(struct cli *c, const char *group, const char *group_help,
                 const struct subcmd *subs, int argc, char **argv) {
  int help = c->help;
  for (int i = 0; i < argc; i++) {
    int g = cli_global_opt(c, argc, argv, &i);
    if (g < 0) return CLI_EUSAGE;
    if (g > 0) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      help = 1;
      continue;
    }
    if (argv[i][0] == '-') {
      return cli_usage_error(group_help, "%s: unknown option %s before the subcommand", group,
                             argv[i]);
    }
    for (const struct subcmd *s = subs; s->name; s++) {
      if (strcmp(s->name, argv[i]) != 0) continue;
      /* Pass the rest; a --help seen before the subcommand is re-added by
       * the subcommand's parser through c->help. */
      c->help = help;
      return s->fn(c, argc - i - 1, argv + i + 1);
    }
    return cli_usage_error(group_help, "%s: unknown subcommand \"%s\"", group, argv[i]);
  }
  if (c->version && !help) {
    printf("streamer %s\n", STREAMER_VERSION);
    return CLI_OK;
  }
  fputs(group_help, help ? stdout : stderr);
  return help ? CLI_OK : CLI_EUSAGE;
}

static void cli_free(struct cli *c) {
  http_cleanup(c);
  free(c->opt_server);
  free(c->opt_cacert);
  free(c->server);
  free(c->cacert);
  cli_wipe(c->token);
  free(c->token);
  free(c->user);
}

int main(int argc, char **argv) {
  struct cli c;
  memset(&c, 0, sizeof c);
  c.stderr_tty = isatty(STDERR_FILENO);
  int rc = CLI_OK;
  int i = 1;
  const struct command *cmd = NULL;

  for (; i < argc; i++) {
    int g = cli_global_opt(&c, argc, argv, &i);
    if (g < 0) {
      rc = CLI_EUSAGE;
      goto out;
    }
    if (g > 0) continue;
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      c.help = 1;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (a[0] == '-') {
      rc = cli_usage_error(MAIN_HELP, "unknown global option %s", a);
      goto out;
    }
    break;
  }
  if (i < argc && strcmp(argv[i], "help") == 0) {
    c.help = 1; /* "streamer help COMMAND [SUBCOMMAND]" */
    i++;
  }
  if (i >= argc) {
    if (c.version && !c.help) {
      printf("streamer %s\n", STREAMER_VERSION);
      goto out;
    }
    fputs(MAIN_HELP, c.help ? stdout : stderr);
    rc = c.help ? CLI_OK : CLI_EUSAGE;
    goto out;
  }
  cmd = find_command(argv[i]);
  if (!cmd) {
    rc = cli_usage_error(MAIN_HELP, "unknown command \"%s\"", argv[i]);
    goto out;
  }
  if (c.version && !c.help) {
    printf("streamer %s\n", STREAMER_VERSION);
    goto out;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    fprintf(stderr, "error: cannot initialise libcurl\n");
    rc = CLI_ECONN;
    goto out;
  }
  rc = cmd->fn(&c, argc - i - 1, argv + i + 1);
  cli_free(&c);
  curl_global_cleanup();
  return rc;
out:
  cli_free(&c);
  return rc;
}
