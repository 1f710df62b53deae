/* check.c — the offline checker (`streamer plan-script check`): parse a
 * script with the interpreter's own parser and report, per line, what
 * guestfish would reject before touching a disk: syntax errors, unknown
 * commands, wrong argument counts, bad integers; plus warnings for legal
 * traps and notes for what only a run can tell. No I/O. */
#include "script/attr.h"
#include "script/script.h"
#include "script/script_int.h"

struct checker {
  const char *name;
  script_diag_fn diag;
  void *opaque;
  int errors;
};

static void report(struct checker *c, int line, enum script_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(struct checker *c, int line, enum script_severity sev, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (sev == SCRIPT_ERROR) c->errors++;
  if (c->diag) c->diag(c->opaque, c->name, line, sev, msg);
}

static int has_token(const char *s) {
  struct attr_token *t = NULL;
  int n = attr_scan(s, &t);
  if (n > 0) attr_tokens_free(t, (size_t)n);
  return n != 0; /* -1 (out of memory): be quiet rather than wrong */
}

/* Substitute only the tokens that have a non-empty value; leave the others
 * as written (a checker cannot know them). */
static char *substitute_known(const char *text, json_t *values) {
  struct attr_token *t = NULL;
  int n = attr_scan(text, &t);
  if (n < 0) return NULL;
  struct sbuf b = {0};
  size_t at = 0;
  int bad = 0;
  for (int i = 0; i < n && !bad; i++) {
    char *full = t[i].sub ? util_strdup_printf("%s.%s", t[i].name, t[i].sub) : strdup(t[i].name);
    const char *v = full ? json_string_value(json_object_get(values, full)) : NULL;
    free(full);
    if (!full) bad = 1;
    if (!v || !*v) continue;
    bad |= sbuf_add(&b, text + at, t[i].offset - at) || sbuf_adds(&b, v);
    at = t[i].offset + t[i].length;
  }
  attr_tokens_free(t, (size_t)n);
  if (bad || sbuf_adds(&b, text + at)) {
    sbuf_free(&b);
    return NULL;
  }
  return b.p ? b.p : strdup("");
}

static int is_plain_decimal(const char *s) {
  if (!*s || *s == '0') return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return 0;
  return 1;
}

static void check_int_arg(struct checker *c, const struct script_stmt *st, const char *cmd,
                          const char *what, const char *arg) {
  if (has_token(arg)) return;
  int64_t v;
  char why[256];
  if (script_parse_int(arg, &v, why, sizeof why))
    report(c, st->line, SCRIPT_ERROR, "%s: %s: %s", cmd, what, why);
}

/* The checks of one guestfish command (cmd with argv), also used for the
 * command a glob runs. */
static void check_command(struct checker *c, const struct script_stmt *st, const char *word,
                          int argc, char **argv) {
  const struct script_cmd *d = script_cmd_find(word);
  if (!d) {
    if (has_token(word))
      report(c, st->line, SCRIPT_NOTE,
             "the command \"%s\" is an attribute value: it is known only when the script runs",
             word);
    else
      report(c, st->line, SCRIPT_ERROR, "unknown command \"%s\"%s", word,
             st->ignore_errors ? " (the '-' prefix makes it non-fatal when run)" : "");
    return;
  }
  if (argc < d->min_args || (d->max_args >= 0 && argc > d->max_args)) {
    report(c, st->line, SCRIPT_ERROR, "%s: incorrect number of arguments (%d); usage: %s", d->name,
           argc, d->synopsis);
    return;
  }
  if (d->filein_arg >= 0 && strcmp(argv[d->filein_arg], "-") == 0)
    report(c, st->line, SCRIPT_ERROR,
           "%s: a file argument \"-\" (the script's own input) is not supported", d->name);
  for (int i = 0; i < argc; i++)
    if (i != d->filein_arg && strncmp(argv[i], "-<<", 3) == 0)
      report(c, st->line, SCRIPT_WARNING,
             "%s: argument %d \"%s\" is not a here-document (only a file argument can be one): "
             "the lines after it are script lines",
             d->name, i + 1, argv[i]);
  if (strcmp(d->name, "chmod") == 0) {
    check_int_arg(c, st, d->name, "mode", argv[0]);
    if (is_plain_decimal(argv[0]) && atoll(argv[0]) > 7)
      report(c, st->line, SCRIPT_WARNING,
             "chmod %s: guestfish reads the mode as the decimal number %s (octal 0%llo); write "
             "0%s for the octal mode",
             argv[0], argv[0], (unsigned long long)atoll(argv[0]), argv[0]);
  } else if (strcmp(d->name, "mkdir-mode") == 0) {
    check_int_arg(c, st, d->name, "mode", argv[1]);
  } else if (strcmp(d->name, "chown") == 0) {
    check_int_arg(c, st, d->name, "owner", argv[0]);
    check_int_arg(c, st, d->name, "group", argv[1]);
  } else if (strcmp(d->name, "compress-out") == 0 && !has_token(argv[0])) {
    static const char *const types[] = {"compress", "gzip", "bzip2", "xz", "lzop", NULL};
    int ok = 0;
    for (int i = 0; types[i]; i++)
      ok |= strcmp(argv[0], types[i]) == 0;
    if (!ok)
      report(c, st->line, SCRIPT_ERROR,
             "compress-out: unknown compression type \"%s\" (compress, gzip, bzip2, xz, lzop)",
             argv[0]);
  } else if (strcmp(d->name, "glob") == 0) {
    check_command(c, st, argv[0], argc - 1, argv + 1);
  } else if (d->cls == SCRIPT_CMD_GUEST) {
    report(c, st->line, SCRIPT_NOTE,
           "%s runs a program of the guest: Streamer hands such a session to guestfish "
           "(Debian package libguestfs-tools)",
           d->name);
  }
}

int script_check(const char *text, size_t len, const char *name, json_t *values,
                 script_diag_fn diag, void *opaque) {
  struct checker c = {name ? name : "script", diag, opaque, 0};
  char *subst = NULL;
  if (values && json_object_size(values)) {
    /* attr_scan needs a C string */
    char *copy = strndup(text, len);
    subst = copy ? substitute_known(copy, values) : NULL;
    free(copy);
    if (!subst) return -1;
    text = subst;
    len = strlen(subst);
  }
  struct script *sc;
  int pr = script_parse(text, len, c.name, &sc);
  free(subst);
  if (pr) return -1;
  for (size_t i = 0; i < sc->n; i++) {
    const struct script_stmt *st = &sc->stmts[i];
    if (st->error) {
      report(&c, st->line, SCRIPT_ERROR, "%s%s", st->error,
             st->ignore_errors ? " (the '-' prefix makes it non-fatal when run)" : "");
      continue;
    }
    if (st->kind == SCRIPT_COMMAND) check_command(&c, st, st->cmd, st->argc, st->argv);
  }
  script_free(sc);
  return c.errors;
}
