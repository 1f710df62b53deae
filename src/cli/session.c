/* session.c — where the client talks to and as whom: server URL, TLS options
 * and token from flags, environment and the cached login
 * ($XDG_CONFIG_HOME/streamer/session.json, mode 0600 in a 0700 directory);
 * `streamer login` / `streamer logout`; reading passwords without echo. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_wipe(char *s) {
  if (!s) return;
  size_t n = strlen(s);
  volatile char *p = s;
  for (size_t i = 0; i < n; i++)
    p[i] = 0;
}

static const char *home_dir(void) {
  const char *h = getenv("HOME");
  if (h && *h) return h;
  struct passwd *pw = getpwuid(getuid());
  return pw ? pw->pw_dir : NULL;
}

/* The directory holding session.json (malloc'd). */
static char *session_dir(void) {
  const char *x = getenv("XDG_CONFIG_HOME");
  if (x && x[0] == '/') return util_strdup_printf("%s/streamer", x);
  const char *h = home_dir();
  return h ? util_strdup_printf("%s/.config/streamer", h) : NULL;
}

char *session_path(void) {
  CLEANUP_FREE char *d = session_dir();
  return d ? util_strdup_printf("%s/session.json", d) : NULL;
}

/* mkdir -p; the last component (our own directory) is forced to 0700. */
static int make_dirs(char *p) {
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0700) < 0 && errno != EEXIST) return -1;
    *s = '/';
  }
  if (mkdir(p, 0700) < 0 && errno != EEXIST) return -1;
  struct stat st;
  if (lstat(p, &st) < 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  if ((st.st_mode & 07777) != 0700 && chmod(p, 0700) < 0) return -1;
  return 0;
}

static int make_private_dir(const char *dir) {
  char *p = strdup(dir);
  int rc = p ? make_dirs(p) : -1;
  int saved = errno;
  free(p);
  errno = saved;
  return rc;
}

static json_t *session_load(void) {
  CLEANUP_FREE char *path = session_path();
  if (!path) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
    fprintf(stderr, "warning: %s is readable by other users; making it private\n", path);
    if (fchmod(fd, 0600) < 0) fprintf(stderr, "warning: chmod %s: %s\n", path, strerror(errno));
  }
  json_error_t jerr;
  json_t *j = json_loadfd(fd, 0, &jerr);
  close(fd);
  if (!json_is_object(j)) {
    fprintf(stderr, "warning: ignoring %s: %s\n", path, j ? "not a JSON object" : jerr.text);
    json_decref(j);
    return NULL;
  }
  return j;
}

/* Write the session atomically: a new file created 0600 with O_EXCL (never
 * wider, not even for an instant), fsync, rename over the old one. */
static int session_save(json_t *sess, char **path_out) {
  CLEANUP_FREE char *dir = session_dir();
  if (!dir) {
    fprintf(stderr, "error: no home directory to keep the session in (set HOME)\n");
    return -1;
  }
  if (make_private_dir(dir) < 0) {
    fprintf(stderr, "error: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
  }
  CLEANUP_FREE char *path = util_strdup_printf("%s/session.json", dir);
  CLEANUP_FREE char *tmp = util_strdup_printf("%s/.session.json.%d", dir, (int)getpid());
  CLEANUP_FREE char *text = json_dumps(sess, JSON_INDENT(2));
  if (!path || !tmp || !text) return -1;
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "error: cannot create %s: %s\n", tmp, strerror(errno));
    return -1;
  }
  size_t len = strlen(text), off = 0;
  int bad = 0;
  while (off < len && !bad) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      bad = 1;
    else
      off += (size_t)w;
  }
  if (!bad && (write(fd, "\n", 1) != 1 || fchmod(fd, 0600) < 0 || fsync(fd) < 0)) bad = 1;
  if (close(fd) < 0) bad = 1;
  if (bad || rename(tmp, path) < 0) {
    fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  cli_wipe(text);
  if (path_out) *path_out = strdup(path);
  return 0;
}

static char *normalize_server(const char *s) {
  CLEANUP_FREE char *u = strstr(s, "://") ? strdup(s) : util_strdup_printf("https://%s", s);
  if (!u) return NULL;
  size_t n = strlen(u);
  while (n > 0 && u[n - 1] == '/')
    u[--n] = 0;
  char *r = u;
  u = NULL;
  return r;
}

static int env_true(const char *name) {
  const char *v = getenv(name);
  return v && (strcmp(v, "1") == 0 || util_strcaseeq(v, "true") || util_strcaseeq(v, "yes"));
}

static char *absolute_path(const char *p) {
  char buf[PATH_MAX];
  if (realpath(p, buf)) return strdup(buf);
  return strdup(p); /* curl will report the missing file */
}

void cli_resolve(struct cli *c) {
  if (c->resolved) return;
  c->resolved = 1;
  json_t *sess CLEANUP_JSON = session_load();
  const char *env_server = getenv("STREAMER_SERVER");
  const char *cached = jstr(sess, "server");
  if (c->opt_server)
    c->server = normalize_server(c->opt_server);
  else if (env_server && *env_server)
    c->server = normalize_server(env_server);
  else if (*cached)
    c->server = normalize_server(cached);
  else
    c->server = strdup(CLI_DEFAULT_SERVER);
  if (!c->server) c->server = strdup(CLI_DEFAULT_SERVER);

  /* The cached token and TLS settings only apply to the server they came from. */
  char *cached_norm = *cached ? normalize_server(cached) : NULL;
  int use_cache = cached_norm && c->server && strcmp(cached_norm, c->server) == 0;
  free(cached_norm);

  c->insecure = c->opt_insecure || env_true("STREAMER_INSECURE") ||
                (use_cache && json_is_true(json_object_get(sess, "insecure")));
  const char *env_ca = getenv("STREAMER_CACERT");
  if (c->opt_cacert)
    c->cacert = absolute_path(c->opt_cacert);
  else if (env_ca && *env_ca)
    c->cacert = absolute_path(env_ca);
  else if (use_cache && *jstr(sess, "cacert"))
    c->cacert = strdup(jstr(sess, "cacert"));

  const char *env_tok = getenv("STREAMER_TOKEN");
  if (env_tok && *env_tok) {
    c->token = strdup(env_tok);
    c->token_from_env = 1;
  } else if (use_cache && *jstr(sess, "token")) {
    c->token = strdup(jstr(sess, "token"));
  }
  if (use_cache && *jstr(sess, "user")) c->user = strdup(jstr(sess, "user"));
  json_t *tok = json_object_get(sess, "token");
  if (json_is_string(tok)) cli_wipe((char *)json_string_value(tok));
}

/* ---- reading secrets ------------------------------------------------- */
static struct termios saved_tio;
static int tio_fd = -1;

static void restore_tty(int sig) {
  if (tio_fd >= 0) tcsetattr(tio_fd, TCSAFLUSH, &saved_tio);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void strip_newline(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = 0;
}

/* Prompt on the controlling terminal; echo off when `secret`. */
static char *tty_prompt(const char *prompt, int secret) {
  if (!isatty(STDIN_FILENO)) return NULL;
  FILE *tty = fopen("/dev/tty", "r+");
  FILE *in = tty ? tty : stdin;
  FILE *outf = tty ? tty : stderr;
  int fd = fileno(in);
  struct termios tio;
  int echo_off = 0;
  if (secret && tcgetattr(fd, &saved_tio) == 0) {
    tio = saved_tio;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    tio.c_lflag |= ICANON;
    tio_fd = fd;
    signal(SIGINT, restore_tty);
    signal(SIGTERM, restore_tty);
    signal(SIGHUP, restore_tty);
    if (tcsetattr(fd, TCSAFLUSH, &tio) == 0) echo_off = 1;
  }
  fputs(prompt, outf);
  fflush(outf);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, in);
  if (echo_off) {
    tcsetattr(fd, TCSAFLUSH, &saved_tio);
    fputc('\n', outf);
  }
  if (secret) {
    tio_fd = -1;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
  }
  if (tty) fclose(tty);
  if (n < 0) {
    free(line);
    return NULL;
  }
  strip_newline(line);
  return line;
}

char *cli_prompt_line(const char *prompt) { return tty_prompt(prompt, 0); }

char *cli_read_secret(const char *file, const char *prompt, const char *usage, int *rc) {
  *rc = CLI_OK;
  if (file) {
    char *line = NULL;
    if (strcmp(file, "-") == 0) {
      size_t cap = 0;
      if (getline(&line, &cap, stdin) < 0) {
        free(line);
        *rc = cli_usage_error(usage, "no password on standard input");
        return NULL;
      }
    } else {
      struct err e;
      err_init(&e);
      line = util_read_file(file, NULL, &e);
      if (!line) {
        *rc = cli_usage_error(usage, "cannot read the password file: %s", e.message);
        err_clear(&e);
        return NULL;
      }
      char *nl = strchr(line, '\n');
      if (nl) *nl = 0;
    }
    strip_newline(line);
    return line;
  }
  char *p = tty_prompt(prompt, 1);
  if (!p)
    *rc = cli_usage_error(usage, "no password given and no terminal to ask on: use --password, "
                                 "--password-file FILE (or -) or STREAMER_PASSWORD");
  return p;
}

/* ---- login / logout -------------------------------------------------- */
static const char LOGIN_USAGE[] =
    "usage: streamer login [--server URL] [--user U] [--password P | --password-file F] "
    "[-k | --cacert FILE]\n"
    "\n"
    "Log in and cache the session token in $XDG_CONFIG_HOME/streamer/session.json\n"
    "(default ~/.config/streamer/session.json, mode 0600). Later commands use the\n"
    "cached server, token and TLS options.\n"
    "\n"
    "  --user U             user name (env STREAMER_USER; asked on a terminal;\n"
    "                       default administrator)\n"
    "  --password P         password (env STREAMER_PASSWORD; asked without echo on a\n"
    "                       terminal). Prefer --password-file: arguments are visible\n"
    "                       to other users in ps.\n"
    "  --password-file F    read the password from the first line of F (- = stdin)\n";

/* The user name and password for login (malloc'd), from options,
 * environment or the terminal. Returns 0 or an exit code. */
static int login_credentials(struct cli *c, const struct args *a, char **user, char **password) {
  const char *env_user = getenv("STREAMER_USER");
  const char *env_pw = getenv("STREAMER_PASSWORD");
  int rc = CLI_OK;
  *password = NULL;
  if (args_get(a, "user")) {
    *user = strdup(args_get(a, "user"));
  } else if (env_user && *env_user) {
    *user = strdup(env_user);
  } else {
    *user = cli_prompt_line("User [administrator]: ");
    if (*user && !**user) {
      free(*user);
      *user = NULL;
    }
    if (!*user) *user = strdup("administrator");
  }
  if (!*user) return CLI_EUSAGE;
  if (args_get(a, "password")) {
    *password = strdup(args_get(a, "password"));
  } else if (args_get(a, "password-file") || !env_pw) {
    char *prompt = util_strdup_printf("Password for %s at %s: ", *user, c->server);
    *password = cli_read_secret(args_get(a, "password-file"),
                                prompt ? prompt : "Password: ", LOGIN_USAGE, &rc);
    free(prompt);
  } else {
    *password = strdup(env_pw);
  }
  if (!*password) return rc ? rc : CLI_EUSAGE;
  return CLI_OK;
}

/* Cache the session; prints the outcome. */
static int login_save(struct cli *c, const char *user, const char *token) {
  json_t *sess = json_pack("{s:s, s:s, s:s, s:b}", "server", c->server, "user", user, "token",
                           token, "insecure", c->opt_insecure || c->insecure);
  if (!sess) return CLI_EUSAGE;
  if (c->cacert) json_object_set_new(sess, "cacert", json_string(c->cacert));
  char *path = NULL;
  int saved = session_save(sess, &path);
  json_t *t = json_object_get(sess, "token");
  if (t) cli_wipe((char *)json_string_value(t));
  json_decref(sess);
  if (saved < 0) {
    free(path);
    return CLI_EUSAGE;
  }
  if (c->json) {
    json_t *o =
        json_pack("{s:s, s:s, s:s?}", "server", c->server, "userName", user, "sessionFile", path);
    out_json(o);
    json_decref(o);
  } else {
    printf("Logged in to %s as %s.\n", c->server, user);
  }
  free(path);
  if (c->token_from_env)
    fprintf(stderr, "note: STREAMER_TOKEN is set and overrides the cached session\n");
  return CLI_OK;
}

int cmd_login(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"user", 1}, {"password", 1}, {"password-file", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 0, LOGIN_USAGE);
  if (rc || a.help) return rc;
  if (args_has(&a, "password") && args_has(&a, "password-file"))
    return cli_usage_error(LOGIN_USAGE, "give either --password or --password-file");
  cli_resolve(c);

  char *user = NULL, *password = NULL, *raw = NULL;
  json_t *body = NULL, *res = NULL;
  rc = login_credentials(c, &a, &user, &password);
  if (rc) goto out;
  body = json_pack("{s:s, s:s, s:s}", "userName", user, "password", password, "authLoginDomain",
                   "LOCAL");
  cli_wipe(password);
  if (!body) {
    rc = CLI_EUSAGE;
    goto out;
  }
  long status;
  rc = http_do(c, "POST", "/rest/login-sessions", body, NULL, 0, &status, &res, &raw);
  json_t *pw = json_object_get(body, "password");
  if (pw) cli_wipe((char *)json_string_value(pw));
  if (rc) goto out;
  if (status < 200 || status > 299) {
    if (status == 401 || status == 403) {
      /* The server's recommended action is written for API clients. */
      if (c->json && res) out_json(res);
      const char *m = jstr(res, "message");
      fprintf(stderr, "error: login to %s as %s failed: %s\n", c->server, user,
              *m ? m : "HTTP 401");
      fprintf(stderr, "hint: check the user name (--user) and the password\n");
    } else {
      api_print_error(c, status, res, raw);
    }
    rc = CLI_ESERVER;
    goto out;
  }
  const char *tok = jstr(res, "sessionID");
  if (!*tok) {
    fprintf(stderr, "error: the server's login answer has no sessionID\n");
    rc = CLI_ESERVER;
    goto out;
  }
  rc = login_save(c, user, tok);
  cli_wipe((char *)tok);
out:
  if (raw) cli_wipe(raw);
  free(raw);
  json_decref(res);
  json_decref(body);
  if (password) cli_wipe(password);
  free(password);
  free(user);
  return rc;
}

static const char LOGOUT_USAGE[] = "usage: streamer logout [--server URL]\n"
                                   "\n"
                                   "End the server session (DELETE /rest/login-sessions) and "
                                   "delete the cached session file.\n";

int cmd_logout(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 0, 0, LOGOUT_USAGE);
  if (rc || a.help) return rc;
  cli_resolve(c);
  CLEANUP_FREE char *path = session_path();
  int from_file = c->token && !c->token_from_env;
  if (!c->token) {
    fprintf(stderr, "not logged in to %s\n", c->server);
    return CLI_OK;
  }
  long status = 0;
  json_t *res CLEANUP_JSON = NULL;
  CLEANUP_FREE char *raw = NULL;
  rc = http_do(c, "DELETE", "/rest/login-sessions", NULL, NULL, 1, &status, &res, &raw);
  if (from_file && path && unlink(path) < 0 && errno != ENOENT) {
    fprintf(stderr, "error: cannot delete %s: %s\n", path, strerror(errno));
    return CLI_EUSAGE;
  }
  if (rc) {
    if (from_file) fprintf(stderr, "note: the cached session %s was deleted anyway\n", path);
    return rc;
  }
  if (status != 401 && (status < 200 || status > 299)) return api_print_error(c, status, res, raw);
  if (c->json) {
    json_t *o CLEANUP_JSON = json_pack("{s:s, s:b}", "server", c->server, "loggedOut", 1);
    out_json(o);
  } else {
    printf("Logged out of %s.\n", c->server);
  }
  return CLI_OK;
}
