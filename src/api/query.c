/* query.c — the OneView/HPE collection query language (filter, query, sort)
 * evaluated over jansson documents. query_parse() turns the parameter values
 * into a small tree once; query_match() and query_compare() walk it per
 * document and never allocate. User documentation: docs/api-collections.md.
 *
 * Robustness: the parser recurses only on '(' (at most QUERY_MAX_NESTING deep),
 * AND/OR chains are n-ary nodes built in a loop and NOT chains collapse to one
 * node, so neither parsing nor evaluation depth grows with the input length.
 * Every scan is bounded by an explicit length. */
#include "api/query.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUERY_MAX_NESTING 32    /* parentheses */
#define QUERY_MAX_JSON_DEPTH 64 /* nested arrays walked while resolving a field */
#define EXCERPT_PARAM 160       /* bytes of the parameter value quoted in errors */
#define EXCERPT_TOKEN 40        /* bytes of one token quoted in errors */

/* ---- numbers ------------------------------------------------------------ */

struct num {
  int is_int; /* i is exact; otherwise use d */
  long long i;
  double d;
};

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Decimal number syntax only ([+-] digits [. digits] [e [+-] digits]); no hex,
 * inf, nan or surrounding blanks. s[len] must be readable and not a digit
 * (every caller passes a NUL-terminated string). */
static int num_parse(const char *s, size_t len, struct num *out) {
  size_t k = 0, digits = 0;
  int is_int = 1;
  if (k < len && (s[k] == '+' || s[k] == '-')) k++;
  while (k < len && is_digit((unsigned char)s[k]))
    k++, digits++;
  if (k < len && s[k] == '.') {
    is_int = 0;
    k++;
    while (k < len && is_digit((unsigned char)s[k]))
      k++, digits++;
  }
  if (digits == 0) return 0;
  if (k < len && (s[k] == 'e' || s[k] == 'E')) {
    is_int = 0;
    k++;
    if (k < len && (s[k] == '+' || s[k] == '-')) k++;
    size_t first = k;
    while (k < len && is_digit((unsigned char)s[k]))
      k++;
    if (k == first) return 0;
  }
  if (k != len) return 0;
  char *end;
  if (is_int) {
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == 0 && end == s + len) {
      out->is_int = 1;
      out->i = v;
      out->d = (double)v;
      return 1;
    }
  }
  double d = strtod(s, &end); /* overflow gives ±HUGE_VAL, still ordered */
  if (end != s + len) return 0;
  out->is_int = 0;
  out->i = 0;
  out->d = d;
  return 1;
}

static int cmp_double(double a, double b) { return a < b ? -1 : a > b ? 1 : 0; }

/* Exact comparison of an integer with a double (no rounding of the integer). */
static int cmp_int_double(long long i, double d) {
  if (d >= 9223372036854775808.0) return -1;
  if (d < -9223372036854775808.0) return 1;
  long long t = (long long)d; /* truncation toward zero, exact in this range */
  if (i != t) return i < t ? -1 : 1;
  double frac = d - (double)t; /* exact */
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int num_cmp(const struct num *a, const struct num *b) {
  if (a->is_int && b->is_int) return a->i < b->i ? -1 : a->i > b->i ? 1 : 0;
  if (a->is_int) return cmp_int_double(a->i, b->d);
  if (b->is_int) return -cmp_int_double(b->i, a->d);
  return cmp_double(a->d, b->d);
}

/* ---- text --------------------------------------------------------------- */

static unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int text_casecmp(const char *a, size_t alen, const char *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  for (size_t k = 0; k < n; k++) {
    unsigned char x = fold((unsigned char)a[k]), y = fold((unsigned char)b[k]);
    if (x != y) return x < y ? -1 : 1;
  }
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int word_is(const char *s, size_t len, const char *kw) {
  size_t n = strlen(kw);
  return len == n && text_casecmp(s, len, kw, n) == 0;
}

/* Bytes of the UTF-8 character at s (1 for a stray or invalid byte), never more than n. */
static size_t u8len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t want = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 1;
  size_t k = 1;
  while (k < want && k < n && (s[k] & 0xC0) == 0x80)
    k++;
  return k;
}

/* Length of a well-formed UTF-8 sequence at s (no overlongs/surrogates), 0 if none. */
static size_t u8valid(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t want;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    want = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    want = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    want = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else
    return 0;
  if (n < want) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t k = 2; k < want; k++)
    if ((s[k] & 0xC0) != 0x80) return 0;
  return want;
}

/* A printable, valid-UTF-8 excerpt of s[0..len) for error messages: control
 * characters and invalid bytes become '?', and "..." marks a cut. */
static void excerpt(const char *s, size_t len, size_t max, char *out, size_t outsz) {
  size_t j = 0, k = 0;
  while (k < len) {
    size_t n = u8valid((const unsigned char *)s + k, len - k);
    if (j + (n ? n : 1) > max || j + (n ? n : 1) + 4 > outsz) {
      memcpy(out + j, "...", 3);
      j += 3;
      break;
    }
    unsigned char c = (unsigned char)s[k];
    if (n == 0 || c < 0x20 || c == 0x7f) {
      out[j++] = '?';
      k++;
    } else {
      memcpy(out + j, s + k, n);
      j += n;
      k += n;
    }
  }
  out[j] = 0;
}

/* ---- SQL LIKE ------------------------------------------------------------- */

enum { LK_LIT, LK_ONE, LK_ANY };
struct like_tok {
  unsigned char kind, c;
};

/* % any run, _ one character, \x the character x itself. */
static struct like_tok *like_compile(const char *pat, size_t len, size_t *ntok) {
  struct like_tok *t = malloc((len + 1) * sizeof *t);
  if (!t) return NULL;
  size_t n = 0;
  for (size_t k = 0; k < len; k++) {
    unsigned char c = (unsigned char)pat[k];
    if (c == '\\' && k + 1 < len) {
      t[n++] = (struct like_tok){LK_LIT, fold((unsigned char)pat[++k])};
    } else if (c == '%') {
      if (n == 0 || t[n - 1].kind != LK_ANY) t[n++] = (struct like_tok){LK_ANY, 0};
    } else if (c == '_') {
      t[n++] = (struct like_tok){LK_ONE, 0};
    } else {
      t[n++] = (struct like_tok){LK_LIT, fold(c)};
    }
  }
  *ntok = n;
  return t;
}

/* Classic single-backtrack wildcard matching: O(len * ntok) worst case. Segments
 * between '%' match deterministically, so retrying only from the last '%' is
 * enough. '_' consumes one UTF-8 character. */
static int like_match(const struct like_tok *p, size_t np, const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, j = 0, star_j = SIZE_MAX, star_i = 0;
  while (i < len) {
    if (j < np && p[j].kind == LK_ONE) {
      i += u8len(s + i, len - i);
      j++;
    } else if (j < np && p[j].kind == LK_LIT && p[j].c == fold(s[i])) {
      i++;
      j++;
    } else if (j < np && p[j].kind == LK_ANY) {
      star_j = j++;
      star_i = i;
    } else if (star_j != SIZE_MAX) {
      j = star_j + 1;
      star_i += u8len(s + star_i, len - star_i);
      i = star_i;
    } else {
      return 0;
    }
  }
  while (j < np && p[j].kind == LK_ANY)
    j++;
  return j == np;
}

/* ---- the tree ------------------------------------------------------------- */

enum node_kind { N_CMP, N_AND, N_OR, N_NOT };
enum cmp_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_MATCHES };

struct path {
  char **seg;
  size_t n;
};

struct node {
  enum node_kind kind;
  struct node **kids; /* AND/OR: >= 2, NOT: 1 */
  size_t nkids;
  /* N_CMP */
  struct path path;
  enum cmp_op op;
  int val_null;
  char *val;
  size_t val_len;
  int val_is_num;
  struct num val_num;
  struct like_tok *pat;
  size_t npat;
};

struct sort_key {
  struct path path;
  int desc;
};

struct query {
  struct node **roots; /* ANDed */
  size_t nroots;
  struct sort_key *keys;
  size_t nkeys;
};

static void path_free(struct path *p) {
  for (size_t k = 0; k < p->n; k++)
    free(p->seg[k]);
  free(p->seg);
  p->seg = NULL;
  p->n = 0;
}

static void node_free(struct node *n) {
  if (!n) return;
  for (size_t k = 0; k < n->nkids; k++)
    node_free(n->kids[k]);
  free(n->kids);
  path_free(&n->path);
  free(n->val);
  free(n->pat);
  free(n);
}

void query_free(struct query *q) {
  if (!q) return;
  for (size_t k = 0; k < q->nroots; k++)
    node_free(q->roots[k]);
  free(q->roots);
  for (size_t k = 0; k < q->nkeys; k++)
    path_free(&q->keys[k].path);
  free(q->keys);
  free(q);
}

/* Split "a.b.c" into segments; 0 ok, -1 empty segment, -2 out of memory. */
static int path_split(const char *s, size_t len, struct path *out) {
  size_t n = 1;
  for (size_t k = 0; k < len; k++)
    if (s[k] == '.') n++;
  out->seg = calloc(n, sizeof *out->seg);
  out->n = 0;
  if (!out->seg) return -2;
  size_t start = 0;
  for (size_t k = 0; k <= len; k++) {
    if (k < len && s[k] != '.') continue;
    if (k == start) {
      path_free(out);
      return -1;
    }
    char *seg = strndup(s + start, k - start);
    if (!seg) {
      path_free(out);
      return -2;
    }
    out->seg[out->n++] = seg;
    start = k + 1;
  }
  return 0;
}

/* ---- parser --------------------------------------------------------------- */

enum tok_kind { T_END, T_LPAREN, T_RPAREN, T_OP, T_WORD, T_STR, T_BAD };

struct tok {
  enum tok_kind kind;
  size_t start, end; /* raw span in the parsed text, quotes included */
  size_t next;       /* where the following token starts its search */
  enum cmp_op op;
};

struct parser {
  const char *what; /* "filter" or "query" */
  const char *full; /* the whole parameter value, quoted in messages */
  size_t full_len;
  const char *s; /* the text being parsed: full, or full without wrapping quotes */
  size_t len, base;
  int depth;
  struct err *e;
};

static void fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct parser *p, const char *fmt, ...) {
  char what[EXCERPT_PARAM + 8], msg[512];
  excerpt(p->full, p->full_len, EXCERPT_PARAM, what, sizeof what);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  err_set(p->e, 400, "INVALID_FILTER", "%s \"%s\": %s", p->what, what, msg);
}

static void fail_oom(struct parser *p) {
  err_set(p->e, 500, "OUT_OF_MEMORY", "out of memory while parsing the %s", p->what);
}

/* "at offset N" or "at the end of the filter", for the token t. */
static void where(const struct parser *p, const struct tok *t, char *buf, size_t sz) {
  if (t->kind == T_END)
    snprintf(buf, sz, "at the end of the %s", p->what);
  else
    snprintf(buf, sz, "at offset %zu", p->base + t->start);
}

/* The token t as quoted text for messages. */
static void tok_text(const struct parser *p, const struct tok *t, char *buf, size_t sz) {
  excerpt(p->s + t->start, t->end - t->start, EXCERPT_TOKEN, buf, sz);
}

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Characters that end a bare word. '!' only does when it starts "!=". */
static int ends_word(const char *s, size_t len, size_t k) {
  unsigned char c = (unsigned char)s[k];
  if (is_space(c)) return 1;
  switch (c) {
  case '(':
  case ')':
  case '=':
  case '<':
  case '>':
  case '\'':
  case '"': return 1;
  case '!': return k + 1 < len && s[k + 1] == '=';
  default: return 0;
  }
}

/* Scan the token starting at or after pos. Reports unterminated quotes and
 * stray characters itself (T_BAD). */
static struct tok lex(struct parser *p, size_t pos) {
  const char *s = p->s;
  size_t len = p->len;
  struct tok t = {T_END, 0, 0, 0, OP_EQ};
  while (pos < len && is_space((unsigned char)s[pos]))
    pos++;
  t.start = pos;
  if (pos >= len) {
    t.end = t.next = len;
    return t;
  }
  char c = s[pos];
  size_t k = pos + 1;
  switch (c) {
  case '(': t.kind = T_LPAREN; break;
  case ')': t.kind = T_RPAREN; break;
  case '=':
    t.kind = T_OP;
    t.op = OP_EQ;
    if (k < len && s[k] == '=') k++;
    break;
  case '<':
    t.kind = T_OP;
    t.op = OP_LT;
    if (k < len && s[k] == '=')
      t.op = OP_LE, k++;
    else if (k < len && s[k] == '>')
      t.op = OP_NE, k++;
    break;
  case '>':
    t.kind = T_OP;
    t.op = OP_GT;
    if (k < len && s[k] == '=') t.op = OP_GE, k++;
    break;
  case '!':
    if (k < len && s[k] == '=') {
      t.kind = T_OP;
      t.op = OP_NE;
      k++;
      break;
    }
    t.kind = T_WORD; /* a lone '!' is part of a bare word */
    while (k < len && !ends_word(s, len, k))
      k++;
    break;
  case '\'':
  case '"':
    t.kind = T_STR;
    for (;;) {
      if (k >= len) {
        fail(p, "unterminated quoted string starting at offset %zu", p->base + pos);
        t.kind = T_BAD;
        return t;
      }
      if (s[k] == c) {
        if (k + 1 < len && s[k + 1] == c) { /* doubled quote = one quote */
          k += 2;
          continue;
        }
        k++;
        break;
      }
      k++;
    }
    break;
  default:
    t.kind = T_WORD;
    while (k < len && !ends_word(s, len, k))
      k++;
    break;
  }
  t.end = t.next = k;
  return t;
}

static int tok_is_word(const struct parser *p, const struct tok *t, const char *kw) {
  return t->kind == T_WORD && word_is(p->s + t->start, t->end - t->start, kw);
}

/* A keyword operator (EQ, NE, LT, LE, GT, GE, MATCHES) turns the word into T_OP. */
static int tok_keyword_op(const struct parser *p, struct tok *t) {
  static const struct {
    const char *kw;
    enum cmp_op op;
  } ops[] = {{"eq", OP_EQ}, {"ne", OP_NE}, {"lt", OP_LT},          {"le", OP_LE},
             {"gt", OP_GT}, {"ge", OP_GE}, {"matches", OP_MATCHES}};
  if (t->kind != T_WORD) return t->kind == T_OP;
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    if (tok_is_word(p, t, ops[k].kw)) {
      t->kind = T_OP;
      t->op = ops[k].op;
      return 1;
    }
  }
  return 0;
}

/* The text of a T_WORD or T_STR token (quotes removed, doubled quotes undone). */
static char *tok_value(const struct parser *p, const struct tok *t, size_t *out_len) {
  const char *s = p->s + t->start;
  size_t n = t->end - t->start;
  if (t->kind == T_WORD) {
    *out_len = n;
    return strndup(s, n);
  }
  char q = s[0];
  char *v = malloc(n);
  if (!v) return NULL;
  size_t j = 0;
  for (size_t k = 1; k + 1 < n; k++) {
    v[j++] = s[k];
    if (s[k] == q) k++; /* skip the second of a doubled quote */
  }
  v[j] = 0;
  *out_len = j;
  return v;
}

static const char *op_name(enum cmp_op op) {
  static const char *names[] = {"=", "!=", "<", "<=", ">", ">=", "matches"};
  return names[op];
}

static struct node *parse_or(struct parser *p, size_t *pos);

/* condition := field op value */
static struct node *parse_condition(struct parser *p, struct tok field, size_t *pos) {
  char fbuf[EXCERPT_TOKEN + 8], wbuf[64], vbuf[EXCERPT_TOKEN + 8];
  tok_text(p, &field, fbuf, sizeof fbuf);
  struct tok op = lex(p, field.next);
  if (op.kind == T_BAD) return NULL;
  if (!tok_keyword_op(p, &op)) {
    where(p, &op, wbuf, sizeof wbuf);
    if (op.kind == T_END) {
      fail(p, "expected an operator after \"%s\" %s", fbuf, wbuf);
    } else {
      tok_text(p, &op, vbuf, sizeof vbuf);
      fail(p, "expected an operator after \"%s\" %s, found \"%s\"", fbuf, wbuf, vbuf);
    }
    return NULL;
  }
  struct tok val = lex(p, op.next);
  if (val.kind == T_BAD) return NULL;
  if (val.kind != T_WORD && val.kind != T_STR) {
    where(p, &val, wbuf, sizeof wbuf);
    if (val.kind == T_END) {
      fail(p, "expected a value after \"%s %s\" %s", fbuf, op_name(op.op), wbuf);
    } else {
      tok_text(p, &val, vbuf, sizeof vbuf);
      fail(p, "expected a value after \"%s %s\" %s, found \"%s\"", fbuf, op_name(op.op), wbuf,
           vbuf);
    }
    return NULL;
  }

  struct node *n = calloc(1, sizeof *n);
  if (!n) goto oom;
  n->kind = N_CMP;
  n->op = op.op;

  size_t flen;
  char *ftext = tok_value(p, &field, &flen);
  if (!ftext) goto oom;
  int rc = path_split(ftext, flen, &n->path);
  free(ftext);
  if (rc == -2) goto oom;
  if (rc == -1) {
    fail(p, "field \"%s\" at offset %zu has an empty name or path segment", fbuf,
         p->base + field.start);
    node_free(n);
    return NULL;
  }

  if (val.kind == T_WORD && tok_is_word(p, &val, "null")) {
    if (n->op == OP_MATCHES) {
      fail(p, "\"matches\" needs a pattern, not null, at offset %zu", p->base + val.start);
      node_free(n);
      return NULL;
    }
    n->val_null = 1;
  } else {
    n->val = tok_value(p, &val, &n->val_len);
    if (!n->val) goto oom;
    n->val_is_num = num_parse(n->val, n->val_len, &n->val_num);
    if (n->op == OP_MATCHES) {
      n->pat = like_compile(n->val, n->val_len, &n->npat);
      if (!n->pat) goto oom;
    }
  }
  *pos = val.next;
  return n;
oom:
  node_free(n);
  fail_oom(p);
  return NULL;
}

/* term := NOT* ( '(' expr ')' | condition ) */
static struct node *parse_term(struct parser *p, size_t *pos) {
  char wbuf[64], tbuf[EXCERPT_TOKEN + 8];
  int negate = 0;
  struct tok t = lex(p, *pos);
  for (;;) {
    if (t.kind == T_BAD) return NULL;
    if (!tok_is_word(p, &t, "not")) break;
    struct tok after = lex(p, t.next);
    if (after.kind == T_BAD) return NULL;
    if (tok_keyword_op(p, &after) || after.kind == T_END) break; /* a field named "not" */
    negate ^= 1;
    t = after;
  }

  struct node *n;
  if (t.kind == T_LPAREN) {
    if (p->depth >= QUERY_MAX_NESTING) {
      fail(p, "parentheses nested deeper than %d levels at offset %zu", QUERY_MAX_NESTING,
           p->base + t.start);
      return NULL;
    }
    p->depth++;
    size_t inner = t.next;
    n = parse_or(p, &inner);
    p->depth--;
    if (!n) return NULL;
    struct tok close = lex(p, inner);
    if (close.kind == T_BAD) goto fail;
    if (close.kind != T_RPAREN) {
      where(p, &close, wbuf, sizeof wbuf);
      if (close.kind == T_END) {
        fail(p, "missing \")\" for the \"(\" at offset %zu", p->base + t.start);
      } else {
        tok_text(p, &close, tbuf, sizeof tbuf);
        fail(p, "expected AND, OR or \")\" %s, found \"%s\" (the \"(\" is at offset %zu)", wbuf,
             tbuf, p->base + t.start);
      }
      goto fail;
    }
    *pos = close.next;
  } else if (t.kind == T_WORD || t.kind == T_STR) {
    n = parse_condition(p, t, pos);
    if (!n) return NULL;
  } else {
    where(p, &t, wbuf, sizeof wbuf);
    if (t.kind == T_END) {
      fail(p, "expected a condition %s", wbuf);
    } else {
      tok_text(p, &t, tbuf, sizeof tbuf);
      fail(p, "expected a condition %s, found \"%s\"", wbuf, tbuf);
    }
    return NULL;
  }

  if (negate) {
    struct node *neg = calloc(1, sizeof *neg);
    struct node **kids = malloc(sizeof *kids);
    if (!neg || !kids) {
      free(neg);
      free(kids);
      fail_oom(p);
      goto fail;
    }
    neg->kind = N_NOT;
    neg->kids = kids;
    neg->kids[0] = n;
    neg->nkids = 1;
    n = neg;
  }
  return n;
fail:
  node_free(n);
  return NULL;
}

/* A chain of terms (kind N_AND) or of AND-chains (kind N_OR), built in a loop. */
static struct node *parse_chain(struct parser *p, size_t *pos, enum node_kind kind) {
  const char *kw = kind == N_AND ? "and" : "or";
  struct node *first = kind == N_AND ? parse_term(p, pos) : parse_chain(p, pos, N_AND);
  if (!first) return NULL;
  struct node *chain = NULL;
  size_t cap = 0;
  for (;;) {
    struct tok t = lex(p, *pos);
    if (t.kind == T_BAD) goto fail;
    if (!tok_is_word(p, &t, kw)) break;
    *pos = t.next;
    struct node *next = kind == N_AND ? parse_term(p, pos) : parse_chain(p, pos, N_AND);
    if (!next) goto fail;
    if (!chain) {
      chain = calloc(1, sizeof *chain);
      if (!chain) {
        node_free(next);
        fail_oom(p);
        goto fail;
      }
      chain->kind = kind;
    }
    if (chain->nkids + 2 > cap) {
      size_t ncap = cap ? cap * 2 : 4;
      struct node **kids = realloc(chain->kids, ncap * sizeof *kids);
      if (!kids) {
        node_free(next);
        fail_oom(p);
        goto fail;
      }
      chain->kids = kids;
      cap = ncap;
    }
    if (chain->nkids == 0) chain->kids[chain->nkids++] = first;
    chain->kids[chain->nkids++] = next;
  }
  return chain ? chain : first;
fail:
  if (chain && chain->nkids > 0)
    node_free(chain); /* owns first */
  else {
    node_free(chain);
    node_free(first);
  }
  return NULL;
}

static struct node *parse_or(struct parser *p, size_t *pos) { return parse_chain(p, pos, N_OR); }

/* Parse s[0..len) (a slice of full starting at base) as a whole expression.
 * NULL with p->e set on error; *empty = 1 when there is nothing to parse. */
static struct node *parse_text(struct parser *p, int *empty) {
  size_t pos = 0;
  struct tok t = lex(p, 0);
  if (t.kind == T_BAD) return NULL;
  if (t.kind == T_END) {
    *empty = 1;
    return NULL;
  }
  struct node *n = parse_or(p, &pos);
  if (!n) return NULL;
  t = lex(p, pos);
  if (t.kind == T_BAD) goto fail;
  if (t.kind != T_END) {
    char tbuf[EXCERPT_TOKEN + 8];
    tok_text(p, &t, tbuf, sizeof tbuf);
    if (t.kind == T_RPAREN)
      fail(p, "unmatched \")\" at offset %zu", p->base + t.start);
    else
      fail(p, "expected AND, OR or the end of the %s at offset %zu, found \"%s\"", p->what,
           p->base + t.start, tbuf);
    goto fail;
  }
  return n;
fail:
  node_free(n);
  return NULL;
}

/* Does the text start with a double-quoted token that spans all of it? */
static int quote_spans_all(const char *s, size_t len) {
  size_t k = 1;
  while (k < len) {
    if (s[k] == '"') {
      if (k + 1 < len && s[k + 1] == '"') {
        k += 2;
        continue;
      }
      return k == len - 1;
    }
    k++;
  }
  return 0;
}

/* Parse one filter or query value. Returns 0 with *out = tree (NULL when the
 * value is empty), -1 with e set on error. A value wrapped in double quotes as
 * the Python SDK sends it ("name='x'") is unwrapped; when the unwrapped text
 * does not parse, the value is tried as written. */
static int parse_expression(const char *what, const char *text, struct node **out, struct err *e) {
  *out = NULL;
  if (!text) return 0;
  size_t len = strlen(text), start = 0;
  while (start < len && is_space((unsigned char)text[start]))
    start++;
  while (len > start && is_space((unsigned char)text[len - 1]))
    len--;
  if (start == len) return 0;

  struct parser p = {what, text, strlen(text), text + start, len - start, start, 0, e};
  int empty = 0;
  int wrapped = p.len >= 2 && p.s[0] == '"' && p.s[p.len - 1] == '"';
  if (wrapped) {
    struct err inner_err;
    err_init(&inner_err);
    struct parser inner = p;
    inner.s = p.s + 1;
    inner.len = p.len - 2;
    inner.base = p.base + 1;
    inner.e = &inner_err;
    *out = parse_text(&inner, &empty);
    if (*out || empty) return 0;
    if (inner_err.status != 400 || quote_spans_all(p.s, p.len)) {
      err_set(e, inner_err.status, inner_err.code, "%s", inner_err.message);
      return -1;
    }
    /* e.g. "a"="b": the quotes belong to the tokens; fall through. */
  }
  *out = parse_text(&p, &empty);
  return *out || empty ? 0 : -1;
}

/* ---- sort ----------------------------------------------------------------- */

static int sort_fail(struct err *e, const char *sort, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sort_fail(struct err *e, const char *sort, const char *fmt, ...) {
  char what[EXCERPT_PARAM + 8], msg[512];
  excerpt(sort, strlen(sort), EXCERPT_PARAM, what, sizeof what);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  err_set(e, 400, "INVALID_SORT", "sort \"%s\": %s", what, msg);
  return -1;
}

static void trim(const char *s, size_t *a, size_t *b) {
  while (*a < *b && is_space((unsigned char)s[*a]))
    (*a)++;
  while (*b > *a && is_space((unsigned char)s[*b - 1]))
    (*b)--;
}

static int parse_sort(struct query *q, const char *sort, struct err *e) {
  if (!sort) return 0;
  size_t len = strlen(sort), a = 0, b = len;
  trim(sort, &a, &b);
  if (a == b) return 0;
  size_t nkeys = 1;
  for (size_t k = a; k < b; k++)
    if (sort[k] == ',') nkeys++;
  q->keys = calloc(nkeys, sizeof *q->keys);
  if (!q->keys) goto oom;
  size_t item = a;
  while (item <= b) {
    size_t end = item;
    while (end < b && sort[end] != ',')
      end++;
    size_t fa = item, fb = end;
    const char *colon = memchr(sort + item, ':', end - item);
    size_t da = end, db = end;
    if (colon) {
      fb = (size_t)(colon - sort);
      da = fb + 1;
    }
    trim(sort, &fa, &fb);
    trim(sort, &da, &db);
    if (fb - fa >= 2 && (sort[fa] == '"' || sort[fa] == '\'') && sort[fb - 1] == sort[fa])
      fa++, fb--; /* "name":desc */
    char fbuf[EXCERPT_TOKEN + 8], dbuf[EXCERPT_TOKEN + 8];
    excerpt(sort + fa, fb - fa, EXCERPT_TOKEN, fbuf, sizeof fbuf);
    excerpt(sort + da, db - da, EXCERPT_TOKEN, dbuf, sizeof dbuf);
    if (fa == fb)
      return sort_fail(e, sort, "sort key %zu at offset %zu has no field name", q->nkeys + 1, item);
    int desc = 0;
    if (colon) {
      if (memchr(sort + da, ':', db - da))
        return sort_fail(e, sort, "too many \":\" in the sort key \"%s\" at offset %zu", fbuf, fa);
      if (word_is(sort + da, db - da, "asc") || word_is(sort + da, db - da, "ascending"))
        desc = 0;
      else if (word_is(sort + da, db - da, "desc") || word_is(sort + da, db - da, "descending"))
        desc = 1;
      else
        return sort_fail(e, sort,
                         "unknown direction \"%s\" for \"%s\" at offset %zu "
                         "(use asc, desc, ascending or descending)",
                         dbuf, fbuf, da);
    }
    for (size_t k = fa; k < fb; k++)
      if (is_space((unsigned char)sort[k]))
        return sort_fail(e, sort, "field \"%s\" at offset %zu contains a blank (use field:desc)",
                         fbuf, fa);
    struct sort_key *key = &q->keys[q->nkeys];
    int rc = path_split(sort + fa, fb - fa, &key->path);
    if (rc == -2) goto oom;
    if (rc == -1)
      return sort_fail(e, sort, "field \"%s\" at offset %zu has an empty path segment", fbuf, fa);
    key->desc = desc;
    q->nkeys++;
    item = end + 1;
  }
  return 0;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory while parsing the sort");
  return -1;
}

/* ---- parse entry point ---------------------------------------------------- */

struct query *query_parse(const char *const *filters, size_t nfilters, const char *query,
                          const char *sort, struct err *e) {
  struct query *q = calloc(1, sizeof *q);
  if (!q) goto oom;
  if (!filters) nfilters = 0;
  size_t cap = nfilters + 1;
  q->roots = calloc(cap, sizeof *q->roots);
  if (!q->roots) goto oom;
  for (size_t k = 0; k < nfilters; k++) {
    struct node *n;
    if (parse_expression("filter", filters[k], &n, e) < 0) goto fail;
    if (n) q->roots[q->nroots++] = n;
  }
  struct node *n;
  if (parse_expression("query", query, &n, e) < 0) goto fail;
  if (n) q->roots[q->nroots++] = n;
  if (parse_sort(q, sort, e) < 0) goto fail;
  return q;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory while parsing the query");
fail:
  query_free(q);
  return NULL;
}

/* ---- evaluation ----------------------------------------------------------- */

enum leaf_kind { LEAF_NULL, LEAF_TEXT, LEAF_OTHER };

/* A scalar JSON value seen as text and, when it is one, as a number. */
struct leaf {
  enum leaf_kind kind;
  json_t *v;
  int is_num;
  struct num num;
  const char *text; /* NULL until leaf_text() */
  size_t len;
  char buf[40];
};

static void leaf_init(struct leaf *l, json_t *v) {
  memset(l, 0, sizeof *l);
  l->v = v;
  if (!v || json_is_null(v)) {
    l->kind = LEAF_NULL;
  } else if (json_is_string(v)) {
    l->kind = LEAF_TEXT;
    l->text = json_string_value(v);
    l->len = json_string_length(v);
    l->is_num = num_parse(l->text, l->len, &l->num);
  } else if (json_is_integer(v)) {
    l->kind = LEAF_TEXT;
    l->is_num = 1;
    l->num.is_int = 1;
    l->num.i = (long long)json_integer_value(v);
    l->num.d = (double)l->num.i;
  } else if (json_is_real(v)) {
    l->kind = LEAF_TEXT;
    l->is_num = 1;
    l->num.d = json_real_value(v);
  } else if (json_is_boolean(v)) {
    l->kind = LEAF_TEXT;
    l->text = json_is_true(v) ? "true" : "false";
    l->len = strlen(l->text);
  } else {
    l->kind = LEAF_OTHER;
  }
}

/* The text of a LEAF_TEXT leaf; numbers are formatted on demand (shortest
 * form that reads back as the same double). */
static void leaf_text(struct leaf *l) {
  if (l->text) return;
  if (l->num.is_int) {
    snprintf(l->buf, sizeof l->buf, "%lld", l->num.i);
  } else {
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(l->buf, sizeof l->buf, "%.*g", prec, l->num.d);
      if (strtod(l->buf, NULL) == l->num.d) break;
    }
  }
  l->text = l->buf;
  l->len = strlen(l->buf);
}

/* One comparison against one scalar (or missing) value. */
static int leaf_test(const struct node *n, json_t *v) {
  struct leaf l;
  leaf_init(&l, v);
  if (n->val_null) {
    int is_null = l.kind == LEAF_NULL;
    switch (n->op) {
    case OP_EQ:
    case OP_LE:
    case OP_GE: return is_null;
    default: return 0;
    }
  }
  if (l.kind != LEAF_TEXT) return 0; /* missing/null equals only null */
  int c;
  if (n->op == OP_MATCHES) {
    leaf_text(&l);
    return like_match(n->pat, n->npat, l.text, l.len);
  }
  if (l.is_num && n->val_is_num) {
    c = num_cmp(&l.num, &n->val_num);
  } else {
    leaf_text(&l);
    c = text_casecmp(l.text, l.len, n->val, n->val_len);
  }
  switch (n->op) {
  case OP_EQ: return c == 0;
  case OP_LT: return c < 0;
  case OP_LE: return c <= 0;
  case OP_GT: return c > 0;
  case OP_GE: return c >= 0;
  default: return 0;
  }
}

/* Any value reached by path[i..] from cur satisfies n. Arrays fan out. */
static int path_any(const struct node *n, json_t *cur, size_t i, int depth) {
  if (depth > QUERY_MAX_JSON_DEPTH) return 0;
  if (json_is_array(cur)) {
    size_t k;
    json_t *el;
    json_array_foreach(cur, k, el) {
      if (path_any(n, el, i, depth + 1)) return 1;
    }
    return 0;
  }
  if (i == n->path.n) return leaf_test(n, cur);
  json_t *next = json_is_object(cur) ? json_object_get(cur, n->path.seg[i]) : NULL;
  if (!next) return leaf_test(n, NULL);
  return path_any(n, next, i + 1, depth);
}

static int node_eval(const struct node *n, json_t *doc) {
  switch (n->kind) {
  case N_CMP:
    if (n->op == OP_NE) { /* != is "not =": no value reached equals it */
      struct node eq = *n;
      eq.op = OP_EQ;
      return !path_any(&eq, doc, 0, 0);
    }
    return path_any(n, doc, 0, 0);
  case N_NOT: return !node_eval(n->kids[0], doc);
  case N_AND:
    for (size_t k = 0; k < n->nkids; k++)
      if (!node_eval(n->kids[k], doc)) return 0;
    return 1;
  case N_OR:
    for (size_t k = 0; k < n->nkids; k++)
      if (node_eval(n->kids[k], doc)) return 1;
    return 0;
  }
  return 0;
}

int query_match(const struct query *q, json_t *doc) {
  if (!q) return 1;
  for (size_t k = 0; k < q->nroots; k++)
    if (!node_eval(q->roots[k], doc)) return 0;
  return 1;
}

/* The first present value reached by path[i..] (arrays: first element that has one). */
static json_t *path_first(const struct path *p, json_t *cur, size_t i, int depth) {
  if (!cur || depth > QUERY_MAX_JSON_DEPTH) return NULL;
  if (json_is_array(cur)) {
    size_t k;
    json_t *el;
    json_array_foreach(cur, k, el) {
      json_t *v = path_first(p, el, i, depth + 1);
      if (v) return v;
    }
    return NULL;
  }
  if (json_is_null(cur)) return NULL;
  if (i == p->n) return cur;
  if (!json_is_object(cur)) return NULL;
  return path_first(p, json_object_get(cur, p->seg[i]), i + 1, depth);
}

/* A total order (so qsort is safe): missing/null < numbers < text < objects.
 * Numbers (and numeric strings) compare numerically, text case-insensitively. */
static int sort_class(const struct leaf *l) {
  if (l->kind == LEAF_NULL) return 0;
  if (l->kind == LEAF_OTHER) return 3;
  return l->is_num ? 1 : 2;
}

static int value_order(json_t *a, json_t *b) {
  struct leaf la, lb;
  leaf_init(&la, a);
  leaf_init(&lb, b);
  int ca = sort_class(&la), cb = sort_class(&lb);
  if (ca != cb) return ca < cb ? -1 : 1;
  if (ca == 1) return num_cmp(&la.num, &lb.num);
  if (ca == 2) return text_casecmp(la.text, la.len, lb.text, lb.len);
  return 0;
}

int query_compare(const struct query *q, json_t *a, json_t *b) {
  if (!q) return 0;
  for (size_t k = 0; k < q->nkeys; k++) {
    const struct sort_key *key = &q->keys[k];
    int c = value_order(path_first(&key->path, a, 0, 0), path_first(&key->path, b, 0, 0));
    if (c) return key->desc ? -c : c;
  }
  return 0;
}
