/* args.c — option parsing for one subcommand: long options (--name V,
 * --name=V, flags), positional words, "--" to end options, global options
 * accepted anywhere, --help. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_usage_error(const char *usage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (usage) {
    /* Show the first line of the usage text (the synopsis). */
    const char *nl = strchr(usage, '\n');
    int len = nl ? (int)(nl - usage) : (int)strlen(usage);
    fprintf(stderr, "%.*s\n", len, usage);
  }
  fputs("hint: add --help for the full usage\n", stderr);
  return CLI_EUSAGE;
}

static const struct opt_spec *find_spec(const struct opt_spec *spec, const char *name, size_t n) {
  for (const struct opt_spec *s = spec; s && s->name; s++) {
    if (strlen(s->name) == n && strncmp(s->name, name, n) == 0) return s;
  }
  return NULL;
}

int args_parse(struct cli *c, struct args *a, int argc, char **argv, const struct opt_spec *spec,
               int min_pos, int max_pos, const char *usage) {
  memset(a, 0, sizeof *a);
  a->help = c->help;
  int only_pos = 0;
  for (int i = 0; i < argc; i++) {
    const char *w = argv[i];
    if (only_pos || w[0] != '-' || strcmp(w, "-") == 0) {
      if (a->npos >= ARGS_MAX) return cli_usage_error(usage, "too many arguments");
      a->pos[a->npos++] = w;
      continue;
    }
    if (strcmp(w, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0) {
      a->help = 1;
      continue;
    }
    int g = cli_global_opt(c, argc, argv, &i);
    if (g < 0) return CLI_EUSAGE;
    if (g > 0) continue;
    if (strncmp(w, "--", 2) != 0) return cli_usage_error(usage, "unknown option %s", w);
    const char *name = w + 2;
    const char *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const struct opt_spec *s = find_spec(spec, name, n);
    if (!s) return cli_usage_error(usage, "unknown option --%.*s", (int)n, name);
    if (a->nopt >= ARGS_MAX) return cli_usage_error(usage, "too many options");
    const char *value = "";
    if (s->has_value) {
      if (eq) {
        value = eq + 1;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return cli_usage_error(usage, "option --%s needs a value", s->name);
      }
    } else if (eq) {
      return cli_usage_error(usage, "option --%s takes no value", s->name);
    }
    a->opt[a->nopt].name = s->name;
    a->opt[a->nopt].value = value;
    a->nopt++;
  }
  if (a->help) {
    fputs(usage, stdout);
    return CLI_OK;
  }
  if (c->version) {
    printf("streamer %s\n", STREAMER_VERSION);
    a->help = 1;
    return CLI_OK;
  }
  if (a->npos < min_pos) return cli_usage_error(usage, "missing argument");
  if (max_pos >= 0 && a->npos > max_pos)
    return cli_usage_error(usage, "unexpected argument \"%s\"", a->pos[max_pos]);
  return CLI_OK;
}

const char *args_get(const struct args *a, const char *name) {
  for (int i = a->nopt - 1; i >= 0; i--) {
    if (strcmp(a->opt[i].name, name) == 0) return a->opt[i].value;
  }
  return NULL;
}

int args_has(const struct args *a, const char *name) { return args_get(a, name) != NULL; }

/* ---- local input files ------------------------------------------------ */
char *cli_load_text_file(const char *path, const char *usage, int *rc) {
  *rc = CLI_OK;
  struct err e;
  err_init(&e);
  char *text = NULL;
  if (strcmp(path, "-") == 0) {
    size_t cap = 0, len = 0;
    text = NULL;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
      if (len + n + 1 > cap) {
        cap = (len + n + 1) * 2;
        char *nt = realloc(text, cap);
        if (!nt) {
          free(text);
          *rc = cli_usage_error(usage, "out of memory reading standard input");
          return NULL;
        }
        text = nt;
      }
      memcpy(text + len, chunk, n);
      len += n;
    }
    if (!text)
      text = strdup("");
    else
      text[len] = 0;
    return text;
  }
  text = util_read_file(path, NULL, &e);
  if (!text) *rc = cli_usage_error(usage, "cannot read %s", e.message);
  err_clear(&e);
  return text;
}

json_t *cli_load_json_file(const char *path, const char *usage, int *rc) {
  char *text = cli_load_text_file(path, usage, rc);
  if (!text) return NULL;
  json_error_t jerr;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
  free(text);
  if (!j)
    *rc = cli_usage_error(usage, "%s: line %d column %d: %s", path, jerr.line, jerr.column,
                          jerr.text);
  return j;
}
