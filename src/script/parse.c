/* parse.c — guestfish's line rules (libguestfs fish/fish.c: the script
 * reader, parse_command_line, parse_quoted_string, file_in_heredoc),
 * written anew from their observable behaviour:
 *
 *   - leading white space (space, \t, \n, \v, \f, \r) is skipped;
 *   - an empty line or one starting with '#' is nothing;
 *   - '!' runs the rest of the line on the host; "<!" runs it and reads its
 *     output as script lines; '-' makes a failure of what follows non-fatal
 *     and the rules start again after it (so "-!cmd", "- cmd", "--cmd");
 *   - the command word runs to the first space or tab; arguments are
 *     separated by spaces and tabs; an argument starting with '"' is a
 *     double-quoted string with C escapes (\\ \a \b \f \n \r \t \v \" \'
 *     \? \ooo \xHH, values 1..255; anything else is an error), one starting
 *     with '\'' runs to the next '\'' with no escapes, and either must be
 *     followed by a space, a tab or the end of the line; a word starting
 *     with '|' ends the arguments and the rest of the line is a host shell
 *     that reads the command's output; quotes inside a bare word are plain
 *     characters; trailing blanks are ignored; at most 63 arguments;
 *   - a file argument "-<<MARKER" of a command that got the right number
 *     of arguments takes the following lines, each with its newline, up to
 *     a line that is exactly MARKER; no marker before the end is an error.
 *
 * A line is cut at a NUL byte, as C strings are. */
#include <stdlib.h>
#include <string.h>

#include "script/script.h"
#include "script/script_int.h"

#define MAX_ARGS 64 /* guestfish's argv[64]: at most 63 arguments */

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode a double-quoted string starting after the opening quote. On
 * success *end points at the closing quote and the decoded bytes are in
 * out. On error returns -1 with the message in err. */
static int parse_dquoted(const char *p, const char **end, struct sbuf *out, char **err) {
  for (; *p && *p != '"'; p++) {
    if (*p != '\\') {
      if (sbuf_addc(out, *p)) return -2;
      continue;
    }
    int c = -1, skip = 1;
    switch (p[1]) {
    case '\\': c = '\\'; break;
    case 'a': c = '\a'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'v': c = '\v'; break;
    case '"': c = '"'; break;
    case '\'': c = '\''; break;
    case '?': c = '?'; break;
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
      skip = 3; /* always three octal digits */
      if (p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
        c = (p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0');
        if (c < 1 || c > 255) c = -1;
      }
      break;
    case 'x':
      skip = 3; /* always two hex digits */
      if (hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
        c = hexval(p[2]) * 16 + hexval(p[3]);
        if (c < 1) c = -1;
      }
      break;
    default: break;
    }
    if (c < 0) {
      /* guestfish counts the offset in the partly decoded string */
      *err = util_strdup_printf("invalid escape sequence in string (starting at offset %zu)",
                                out->len);
      return -1;
    }
    if (sbuf_addc(out, (char)c)) return -2;
    p += skip;
  }
  if (!*p) {
    *err = strdup("unterminated double quote");
    return -1;
  }
  *end = p;
  return 0;
}

/* Append a (owned by st on success; the caller frees it on failure). */
static int push_arg(struct script_stmt *st, char *a) {
  char **nv = realloc(st->argv, (size_t)(st->argc + 2) * sizeof *nv);
  if (!nv) return -1;
  st->argv = nv;
  st->argv[st->argc++] = a;
  st->argv[st->argc] = NULL;
  return 0;
}

/* Parse one line (NUL-terminated, no newline) into st. Returns 1 if it is a
 * statement, 0 if it is blank or a comment, -1 on out of memory. A syntax
 * error is a statement with st->error set. */
int script_parse_line(const char *line, struct script_stmt *st) {
  const char *p = line;
  memset(st, 0, sizeof *st);
  st->heredoc_arg = -1;
again:
  while (*p && is_space(*p))
    p++;
  if (!*p || *p == '#') return 0;
  if (*p == '!' || (p[0] == '<' && p[1] == '!')) {
    st->kind = *p == '!' ? SCRIPT_SHELL : SCRIPT_INLINE;
    st->shell = strdup(p + (*p == '!' ? 1 : 2));
    st->text = strdup(line);
    return st->shell && st->text ? 1 : -1;
  }
  if (*p == '-') {
    st->ignore_errors = 1;
    p++;
    goto again;
  }
  st->kind = SCRIPT_COMMAND;
  if (!(st->text = strdup(line))) return -1;
  size_t len = strcspn(p, " \t");
  if (!(st->cmd = strndup(p, len))) return -1;
  st->def = script_cmd_find(st->cmd);
  if (!(st->argv = calloc(1, sizeof *st->argv))) return -1;
  p += len;
  p += strspn(p, " \t");
  while (*p) {
    if (st->argc == MAX_ARGS - 1 && *p != '|') {
      st->error = strdup("too many arguments");
      return st->error ? 1 : -1;
    }
    struct sbuf b = {0};
    const char *next;
    if (*p == '"' || *p == '\'') {
      const char *close;
      if (*p == '"') {
        int r = parse_dquoted(p + 1, &close, &b, &st->error);
        if (r) {
          free(b.p);
          return r == -1 && st->error ? 1 : -1;
        }
      } else {
        close = strchr(p + 1, '\'');
        if (!close) {
          st->error = strdup("unterminated single quote");
          return st->error ? 1 : -1;
        }
        if (sbuf_add(&b, p + 1, (size_t)(close - p - 1))) return -1;
      }
      if (close[1] && !is_blank(close[1])) {
        free(b.p);
        st->error = strdup("command arguments not separated by whitespace");
        return st->error ? 1 : -1;
      }
      next = close[1] ? close + 2 : close + 1;
    } else if (*p == '|') {
      if (!(st->pipe = strdup(p + 1))) return -1;
      break;
    } else {
      len = strcspn(p, " \t");
      if (sbuf_add(&b, p, len)) return -1;
      next = p + len + (p[len] ? 1 : 0);
    }
    if (sbuf_addc(&b, 0) || push_arg(st, b.p)) {
      free(b.p);
      return -1;
    }
    p = next;
    p += strspn(p, " \t");
  }
  return 1;
}

void script_stmt_clear(struct script_stmt *st) {
  free(st->text);
  free(st->cmd);
  if (st->argv)
    for (int i = 0; i < st->argc; i++)
      free(st->argv[i]);
  free(st->argv);
  free(st->pipe);
  free(st->heredoc);
  free(st->shell);
  free(st->error);
  memset(st, 0, sizeof *st);
}

void script_free(struct script *sc) {
  if (!sc) return;
  for (size_t i = 0; i < sc->n; i++)
    script_stmt_clear(&sc->stmts[i]);
  free(sc->stmts);
  free(sc->name);
  free(sc);
}

/* A line of the text: [start, start+len) without its newline; has_nl says
 * whether a newline followed. */
struct line {
  const char *start;
  size_t len;
  int has_nl;
};

static int next_line(const char *text, size_t tlen, size_t *pos, struct line *l) {
  if (*pos >= tlen) return 0;
  const char *s = text + *pos;
  const char *nl = memchr(s, '\n', tlen - *pos);
  l->start = s;
  l->len = nl ? (size_t)(nl - s) : tlen - *pos;
  l->has_nl = nl != NULL;
  *pos += l->len + (nl ? 1 : 0);
  return 1;
}

/* Does the command take a here-document now (its argument index, else -1)?
 * guestfish reads it when the command runs: a known command with a file
 * argument, the right argument count (checked before the file argument is
 * opened) and "-<<" there. */
static int heredoc_arg(const struct script_stmt *st) {
  const struct script_cmd *d = st->def;
  if (st->kind != SCRIPT_COMMAND || st->error || !d || !st->argv || d->filein_arg < 0) return -1;
  if (st->argc < d->min_args || (d->max_args >= 0 && st->argc > d->max_args)) return -1;
  if (st->argc <= d->filein_arg) return -1;
  return strncmp(st->argv[d->filein_arg], "-<<", 3) == 0 ? d->filein_arg : -1;
}

/* Read the here-document of st from the lines after *pos. */
static int read_heredoc(struct script_stmt *st, int arg, const char *text, size_t tlen, size_t *pos,
                        int *lineno) {
  if (!st->argv || arg >= st->argc) return 0;
  const char *marker = st->argv[arg] + 3;
  size_t mlen = strlen(marker);
  st->heredoc_arg = arg;
  if (mlen == 0) {
    st->error = strdup("missing end marker in -<< expression");
    return st->error ? 0 : -1;
  }
  struct sbuf body = {0};
  struct line l;
  while (next_line(text, tlen, pos, &l)) {
    (*lineno)++;
    /* guestfish reads C strings: a NUL ends the line's content and its
     * newline with it */
    const char *nul = memchr(l.start, 0, l.len);
    size_t clen = nul ? (size_t)(nul - l.start) : l.len;
    if (clen == mlen && memcmp(l.start, marker, mlen) == 0) {
      st->last_line = *lineno;
      st->heredoc = body.p ? body.p : strdup("");
      st->heredoc_len = body.len;
      return st->heredoc ? 0 : -1;
    }
    if (sbuf_add(&body, l.start, clen) || (!nul && l.has_nl && sbuf_addc(&body, '\n'))) {
      free(body.p);
      return -1;
    }
  }
  free(body.p);
  st->last_line = *lineno;
  st->error = util_strdup_printf("end of input reached without finding '%s'", marker);
  return st->error ? 0 : -1;
}

int script_parse(const char *text, size_t tlen, const char *name, struct script **out) {
  struct script *sc = calloc(1, sizeof *sc);
  size_t cap = 0, pos = 0;
  int lineno = 0;
  struct line l;
  char *buf = NULL;
  *out = NULL;
  if (!sc || !(sc->name = strdup(name ? name : "script"))) goto oom;
  while (next_line(text, tlen, &pos, &l)) {
    lineno++;
    char *nb = realloc(buf, l.len + 1);
    if (!nb) goto oom;
    buf = nb;
    memcpy(buf, l.start, l.len);
    buf[l.len] = 0; /* an embedded NUL cuts the line here, as in C */
    struct script_stmt st;
    int r = script_parse_line(buf, &st);
    if (r < 0) {
      script_stmt_clear(&st);
      goto oom;
    }
    if (r == 0) continue;
    st.line = st.last_line = lineno;
    int hd = heredoc_arg(&st);
    if (hd >= 0 && read_heredoc(&st, hd, text, tlen, &pos, &lineno) < 0) {
      script_stmt_clear(&st);
      goto oom;
    }
    if (sc->n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      struct script_stmt *ns = realloc(sc->stmts, ncap * sizeof *ns);
      if (!ns) {
        script_stmt_clear(&st);
        goto oom;
      }
      sc->stmts = ns;
      cap = ncap;
    }
    sc->stmts[sc->n++] = st;
  }
  sc->lines = lineno;
  free(buf);
  *out = sc;
  return 0;
oom:
  free(buf);
  script_free(sc);
  return -1;
}

/* ---- guestfish integers (gnulib xstrtoll, base 0, suffixes "0kKMGTPEZY") -- */
int script_parse_int(const char *s, int64_t *v, char *why, size_t why_len) {
  const char *p = s;
  while (is_space(*p))
    p++;
  if (!*p) {
    snprintf(why, why_len, "\"%s\" is not a number", s);
    return -1;
  }
  char *end;
  errno = 0;
  long long n = strtoll(s, &end, 0);
  if (end == s) {
    snprintf(why, why_len, "\"%s\" is not a number", s);
    return -1;
  }
  if (errno == ERANGE) {
    snprintf(why, why_len, "\"%s\" is out of range", s);
    return -1;
  }
  if (*end) {
    static const char units[] = "kKMGTPE";
    const char *u = strchr(units, *end);
    if (!u || !*u) {
      snprintf(why, why_len, "\"%s\" is not a number", s);
      return -1;
    }
    int power = u - units < 2 ? 1 : (int)(u - units);
    int base = 1024;
    end++;
    /* gnulib's '0' suffix option: "KiB" is 1024-based, "KB"/"KD" 1000-based */
    if (end[0] == 'i' && end[1] == 'B')
      end += 2;
    else if (end[0] == 'B' || end[0] == 'D') {
      base = 1000;
      end++;
    }
    if (*end) {
      snprintf(why, why_len, "\"%s\" is not a number", s);
      return -1;
    }
    for (int i = 0; i < power; i++) {
      if (n > INT64_MAX / base || n < INT64_MIN / base) {
        snprintf(why, why_len, "\"%s\" is out of range", s);
        return -1;
      }
      n *= base;
    }
  }
  *v = n;
  return 0;
}

int sbuf_printf(struct sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || sbuf_reserve(b, (size_t)n)) return -1;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}
