/* attr.c — HPE custom attributes: token scanning, derivation from plan scripts,
 * substitution, typed declarations and their constraints, value validation,
 * layer merging and password masking. Pure functions over jansson values: no
 * I/O, no HTTP, no global state. See src/script/README.md and docs/attributes.md. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "script/attr.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_MAX_TEXT 254 /* longest fqdn / hostname value */
/* Longest string value. HPE documents 254, but its own bundles carry longer
 * values (a 407-character SSH public key in an SAP bundle). */
#define ATTR_MAX_STRING 4096
#define ATTR_SHOW_MAX 120       /* longest value quoted verbatim in a message */
#define ATTR_INCREMENT_EPS 1e-9 /* tolerance of the number increment rule */

/* Regular expressions of string constraints are PCRE (HPE's appliance and
 * its bundles use Perl syntax such as (?!98|99)), compiled with PCRE2 in
 * UTF-8 mode. A value must match as a whole. */
static pcre2_code *regex_compile(const char *re, char *why, size_t whylen) {
  int code;
  PCRE2_SIZE off;
  pcre2_code *rx = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C, &code, &off, NULL);
  if (!rx && why) {
    PCRE2_UCHAR msg[120];
    pcre2_get_error_message(code, msg, sizeof msg);
    snprintf(why, whylen, "%s at offset %zu", (const char *)msg, (size_t)off);
  }
  return rx;
}

static int regex_full_match(pcre2_code *rx, const char *value) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(rx, NULL);
  pcre2_match_context *mc = pcre2_match_context_create(NULL);
  if (!md || !mc) {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return 0;
  }
  pcre2_set_match_limit(mc, 100000); /* a hostile pattern cannot run for long */
  int rc = pcre2_match(rx, (PCRE2_SPTR)value, strlen(value), 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                       md, mc);
  pcre2_match_data_free(md);
  pcre2_match_context_free(mc);
  return rc >= 0;
}

/* ---- character classes (ASCII only, independent of the locale) --------- */

static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool name_start(char c) { return is_alpha(c) || c == '_'; }
static bool name_char(char c) { return name_start(c) || is_digit(c) || c == '-'; }

/* Length of the name ([A-Za-z_][A-Za-z0-9_-]*) at s, 0 if none. */
static size_t name_span(const char *s) {
  if (!name_start(s[0])) return 0;
  size_t n = 1;
  while (name_char(s[n]))
    n++;
  return n;
}

static bool valid_name(const char *s) {
  size_t n = name_span(s);
  return n > 0 && s[n] == '\0';
}

/* ---- token scanning ----------------------------------------------------- */

struct token_span {
  size_t length; /* whole token, both '@' included; 0 = no token */
  size_t name_len;
  size_t sub_off, sub_len; /* sub_len 0 = no sub */
  size_t def_off, def_len;
  bool has_def;
};

/* Match a token whose opening '@' is s[0]. */
static bool match_token(const char *s, struct token_span *m) {
  memset(m, 0, sizeof *m);
  size_t i = 1;
  m->name_len = name_span(s + i);
  if (m->name_len == 0) return false;
  i += m->name_len;
  if (s[i] == '.') {
    m->sub_len = name_span(s + i + 1);
    if (m->sub_len == 0) return false;
    m->sub_off = i + 1;
    i += 1 + m->sub_len;
  }
  if (s[i] == ':') {
    m->has_def = true;
    m->def_off = i + 1;
    i++;
    while (s[i] != '\0' && s[i] != '@' && s[i] != '\n')
      i++;
    m->def_len = i - m->def_off;
  }
  if (s[i] != '@') return false;
  m->length = i + 1;
  return true;
}

/* Find the next token at or after *pos; returns its offset or SIZE_MAX. */
static size_t next_token(const char *text, size_t pos, struct token_span *m) {
  for (size_t i = pos; text[i] != '\0'; i++) {
    if (text[i] != '@') continue;
    if (i > 0 && text[i - 1] == '\\') continue; /* "\@" never opens a token */
    if (match_token(text + i, m)) return i;
  }
  return SIZE_MAX;
}

void attr_tokens_free(struct attr_token *t, size_t n) {
  if (!t) return;
  for (size_t i = 0; i < n; i++) {
    free(t[i].name);
    free(t[i].sub);
    free(t[i].def);
  }
  free(t);
}

int attr_scan(const char *text, struct attr_token **out) {
  *out = NULL;
  if (!text) return 0;
  struct attr_token *arr = NULL;
  size_t n = 0, cap = 0, pos = 0, at;
  struct token_span m;
  while ((at = next_token(text, pos, &m)) != SIZE_MAX) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      struct attr_token *tmp = realloc(arr, ncap * sizeof *arr);
      if (!tmp) goto oom;
      arr = tmp;
      cap = ncap;
    }
    struct attr_token *t = &arr[n];
    memset(t, 0, sizeof *t);
    n++;
    t->offset = at;
    t->length = m.length;
    t->name = strndup(text + at + 1, m.name_len);
    if (!t->name) goto oom;
    if (m.sub_len) {
      t->sub = strndup(text + at + m.sub_off, m.sub_len);
      if (!t->sub) goto oom;
    }
    if (m.has_def) {
      t->def = strndup(text + at + m.def_off, m.def_len);
      if (!t->def) goto oom;
    }
    pos = at + m.length;
  }
  if (n > INT32_MAX) goto oom;
  *out = arr;
  return (int)n;
oom:
  attr_tokens_free(arr, n);
  return -1;
}

/* "Name" or "Name.sub", malloc'd. */
static char *token_full_name(const struct attr_token *t) {
  if (!t->sub) return strdup(t->name);
  return util_strdup_printf("%s.%s", t->name, t->sub);
}

json_t *attr_derive(const char *content) {
  struct attr_token *toks = NULL;
  int n = attr_scan(content, &toks);
  if (n < 0) return NULL;
  json_t *out = json_array();
  json_t *seen = json_object(); /* full name -> true once a default was taken */
  if (!out || !seen) goto fail;
  for (int i = 0; i < n; i++) {
    if (toks[i].name[0] == '_') continue; /* appliance-provided system attribute */
    char *full = token_full_name(&toks[i]);
    if (!full) goto fail;
    json_t *state = json_object_get(seen, full);
    bool failed = false;
    if (!state) {
      json_t *entry = json_pack("{s:s,s:s}", "name", full, "value", toks[i].def ? toks[i].def : "");
      failed = !entry || json_array_append_new(out, entry) != 0 ||
               json_object_set_new(seen, full,
                                   json_pack("{s:I,s:b}", "index",
                                             (json_int_t)(json_array_size(out) - 1), "defaulted",
                                             toks[i].def != NULL)) != 0;
    } else if (!json_is_true(json_object_get(state, "defaulted")) && toks[i].def) {
      /* the first occurrence had no default: the first default given wins */
      size_t idx = (size_t)json_integer_value(json_object_get(state, "index"));
      json_object_set_new(json_array_get(out, idx), "value", json_string(toks[i].def));
      json_object_set_new(state, "defaulted", json_true());
    }
    free(full);
    if (failed) goto fail;
  }
  json_decref(seen);
  attr_tokens_free(toks, (size_t)n);
  return out;
fail:
  json_decref(seen);
  json_decref(out);
  attr_tokens_free(toks, (size_t)n);
  return NULL;
}

/* ---- growable output buffer ---------------------------------------------- */

struct buf {
  char *p;
  size_t len, cap;
  bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t ncap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > ncap)
      ncap *= 2;
    char *tmp = realloc(b->p, ncap);
    if (!tmp) {
      b->failed = true;
      return;
    }
    b->p = tmp;
    b->cap = ncap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Text form of a scalar JSON value: strings as they are, numbers and booleans
 * printed; NULL for null, absent, objects and arrays. `tmp` holds printed forms. */
static const char *scalar_text(json_t *v, char tmp[64]) {
  if (json_is_string(v)) return json_string_value(v);
  if (json_is_integer(v)) {
    snprintf(tmp, 64, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return tmp;
  }
  if (json_is_real(v)) {
    snprintf(tmp, 64, "%.17g", json_real_value(v));
    return tmp;
  }
  if (json_is_boolean(v)) return json_is_true(v) ? "true" : "false";
  return NULL;
}

char *attr_substitute(const char *text, json_t *values) {
  if (!text) return strdup("");
  struct buf b = {0};
  buf_add(&b, "", 0);
  size_t pos = 0, at;
  struct token_span m;
  while ((at = next_token(text, pos, &m)) != SIZE_MAX) {
    buf_add(&b, text + pos, at - pos);
    const char *val = NULL;
    char tmp[64];
    if (json_is_object(values)) {
      size_t klen = m.sub_len ? m.sub_off + m.sub_len - 1 : m.name_len;
      val = scalar_text(json_object_getn(values, text + at + 1, klen), tmp);
      if (val && !*val) val = NULL; /* an empty value is no value: the default applies */
    }
    if (val)
      buf_str(&b, val);
    else if (m.has_def)
      buf_add(&b, text + at + m.def_off, m.def_len);
    pos = at + m.length;
  }
  buf_str(&b, text + pos);
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

/* ---- types ---------------------------------------------------------------- */

static const char *const type_names[] = {"string", "number",   "password", "option",
                                         "fqdn",   "hostname", "ipv4",     "nic"};
#define TYPE_LIST "string, number, password, option, fqdn, hostname, ipv4, nic"

enum attr_type attr_type_parse(const char *s) {
  if (!s) return ATTR_STRING;
  for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
    if (util_strcaseeq(s, type_names[i])) return (enum attr_type)i;
  return ATTR_TYPE_INVALID;
}

/* ---- violations ------------------------------------------------------------- */

/* Append one INVALID_ATTRIBUTE error object; returns 1 (the count added). */
__attribute__((format(printf, 3, 4))) static int violation(json_t *violations, const char *name,
                                                           const char *fmt, ...) {
  if (!json_is_array(violations)) return 1;
  va_list ap;
  va_start(ap, fmt);
  char *rule = NULL;
  int r = vasprintf(&rule, fmt, ap);
  va_end(ap);
  if (r < 0) return 1;
  CLEANUP_FREE char *msg = util_strdup_printf("attribute \"%s\": %s", name ? name : "", rule);
  free(rule);
  if (!msg) return 1;
  json_t *probe = json_string(msg);
  if (!probe) /* not UTF-8 (a value given as raw bytes): keep the ASCII */
    for (char *p = msg; *p; p++)
      if ((unsigned char)*p >= 0x80) *p = '?';
  json_decref(probe);
  json_array_append_new(
      violations, err_object("INVALID_ATTRIBUTE", msg, "Correct the attribute value and retry."));
  return 1;
}

/* A value as quoted in a message: cut at ATTR_SHOW_MAX bytes on a UTF-8
 * character boundary, with "..." appended when cut. */
struct shown {
  char s[ATTR_SHOW_MAX + 4];
};
static struct shown show(const char *v) {
  struct shown out;
  size_t n = strlen(v);
  if (n <= ATTR_SHOW_MAX) {
    memcpy(out.s, v, n + 1);
    return out;
  }
  n = ATTR_SHOW_MAX;
  while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
    n--;
  memcpy(out.s, v, n);
  memcpy(out.s + n, "...", 4);
  return out;
}

/* ---- small parsers ------------------------------------------------------------- */

/* Number of UTF-8 characters (an invalid byte counts as one). */
static size_t utf8_len(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

/* Decode the UTF-8 character at *s, advancing *s. Invalid bytes decode as themselves. */
static uint32_t utf8_next(const char **s) {
  const unsigned char *p = (const unsigned char *)*s;
  uint32_t c = p[0];
  size_t len = 1;
  if (c >= 0xC0 && c < 0xE0)
    len = 2, c &= 0x1F;
  else if (c >= 0xE0 && c < 0xF0)
    len = 3, c &= 0x0F;
  else if (c >= 0xF0 && c < 0xF8)
    len = 4, c &= 0x07;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) { /* truncated sequence: take the lead byte alone */
      *s += 1;
      return p[0];
    }
    c = (c << 6) | (p[i] & 0x3F);
  }
  *s += len;
  return c;
}

static bool utf8_contains(const char *set, uint32_t c) {
  while (*set)
    if (utf8_next(&set) == c) return true;
  return false;
}

/* Strict decimal number: [+-]?(digits[.digits*]|.digits), nothing else. */
static bool parse_decimal(const char *s, double *out) {
  const char *p = s;
  if (*p == '+' || *p == '-') p++;
  size_t int_digits = 0, frac_digits = 0;
  while (is_digit(*p))
    p++, int_digits++;
  if (*p == '.') {
    p++;
    while (is_digit(*p))
      p++, frac_digits++;
  }
  if (*p != '\0' || int_digits + frac_digits == 0) return false;
  char *end;
  double d = strtod(s, &end);
  if (*end != '\0' || !isfinite(d)) return false;
  *out = d;
  return true;
}

/* Unsigned decimal integer of at most `maxdigits` digits. */
static bool parse_uint(const char *s, unsigned maxdigits, unsigned long *out) {
  size_t n = strlen(s);
  if (n == 0 || n > maxdigits) return false;
  unsigned long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i])) return false;
    v = v * 10 + (unsigned long)(s[i] - '0');
  }
  *out = v;
  return true;
}

/* Dotted quad, each part 0-255 without leading zeros (except "0"). */
static bool parse_ipv4(const char *s, uint32_t *out) {
  uint32_t addr = 0;
  for (int part = 0; part < 4; part++) {
    size_t n = 0;
    while (is_digit(s[n]))
      n++;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
      v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 255) return false;
    addr = (addr << 8) | v;
    s += n;
    if (part < 3) {
      if (*s != '.') return false;
      s++;
    }
  }
  if (*s != '\0') return false;
  if (out) *out = addr;
  return true;
}

static bool valid_ipv4(const char *s) { return parse_ipv4(s, NULL); }

/* A netmask: dotted quad with contiguous leading ones, or a prefix length 0-32. */
static bool valid_netmask(const char *s) {
  unsigned long prefix;
  if (parse_uint(s, 2, &prefix)) return prefix <= 32;
  uint32_t m;
  if (!parse_ipv4(s, &m)) return false;
  uint32_t inv = ~m;
  return (inv & (inv + 1)) == 0; /* ~mask must be 0...01...1 */
}

/* "none", or six hex pairs separated consistently by ':' or '-'. */
static bool valid_mac(const char *s) {
  if (util_strcaseeq(s, "none")) return true;
  if (strlen(s) != 17) return false;
  char sep = s[2];
  if (sep != ':' && sep != '-') return false;
  for (int i = 0; i < 17; i++) {
    if (i % 3 == 2) {
      if (s[i] != sep) return false;
    } else if (!is_hex(s[i])) {
      return false;
    }
  }
  return true;
}

/* fqdn (need_dot) or hostname (!need_dot) syntax. */
static bool valid_host(const char *s, bool need_dot) {
  size_t n = strlen(s);
  if (n == 0 || n > ATTR_MAX_TEXT) return false;
  bool dot = false;
  const char *label = s;
  for (const char *p = s;; p++) {
    if (*p == '.' || *p == '\0') {
      if (p == label) return false; /* empty label */
      if (*label == '-' || *label == '_') return false;
      if (*p == '\0') break;
      dot = true;
      label = p + 1;
      continue;
    }
    if (!is_alpha(*p) && !is_digit(*p) && *p != '-' && *p != '_') return false;
  }
  return need_dot ? dot : !dot;
}

/* ---- constraints ---------------------------------------------------------- */

/* The constraints of a declaration as a new object reference: JSON-encoded
 * string, object, or null/absent/"" (= {}). NULL if malformed. */
static json_t *constraints_load(json_t *c) {
  if (!c || json_is_null(c)) return json_object();
  if (json_is_object(c)) return json_incref(c);
  if (!json_is_string(c)) return NULL;
  const char *s = json_string_value(c);
  size_t i = strspn(s, " \t\r\n");
  if (s[i] == '\0') return json_object();
  json_t *o = json_loads(s, JSON_DECODE_ANY, NULL);
  if (!json_is_object(o)) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* A number constraint (string holding a decimal number, or a JSON number):
 * 1 present and valid, 0 absent (null or ""), -1 malformed. */
static int constraint_number(json_t *c, const char *key, double *out) {
  json_t *v = json_object_get(c, key);
  if (!v || json_is_null(v)) return 0;
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return 1;
  }
  if (!json_is_string(v)) return -1;
  if (json_string_value(v)[0] == '\0') return 0;
  return parse_decimal(json_string_value(v), out) ? 1 : -1;
}

/* A length constraint (non-negative integer, string or JSON): as above. */
static int constraint_length(json_t *c, const char *key, unsigned long *out) {
  json_t *v = json_object_get(c, key);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0) return -1;
    *out = (unsigned long)json_integer_value(v);
    return 1;
  }
  if (!json_is_string(v)) return -1;
  if (json_string_value(v)[0] == '\0') return 0;
  return parse_uint(json_string_value(v), 9, out) ? 1 : -1;
}

/* A boolean constraint: 1/0, or `dflt` when absent/null, -1 malformed. */
static int constraint_bool(json_t *c, const char *key, int dflt) {
  json_t *v = json_object_get(c, key);
  if (!v || json_is_null(v)) return dflt;
  return util_json_bool(v);
}

/* Options as given (strings; null elements are ignored). */
static bool options_contains(json_t *options, const char *value) {
  size_t i;
  json_t *o;
  json_array_foreach(options, i, o) {
    if (json_is_string(o) && strcmp(json_string_value(o), value) == 0) return true;
  }
  return false;
}

static size_t options_count(json_t *options) {
  size_t i, n = 0;
  json_t *o;
  json_array_foreach(options, i, o) {
    if (json_is_string(o)) n++;
  }
  return n;
}

/* "\"A\", \"B\"" for messages (malloc'd; never NULL unless out of memory). */
static char *options_list(json_t *options) {
  struct buf b = {0};
  buf_add(&b, "", 0);
  size_t i;
  json_t *o;
  bool first = true;
  json_array_foreach(options, i, o) {
    if (!json_is_string(o)) continue;
    if (b.len > 400) {
      buf_str(&b, ", ...");
      break;
    }
    if (!first) buf_str(&b, ", ");
    buf_str(&b, "\"");
    buf_str(&b, json_string_value(o));
    buf_str(&b, "\"");
    first = false;
  }
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

static bool key_allowed(enum attr_type t, const char *key) {
  static const char *const string_keys[] = {"regex", NULL};
  static const char *const number_keys[] = {"minimum", "maximum", "increment", "unit", NULL};
  static const char *const password_keys[] = {"minlen", "maxlen", "allowedchars", NULL};
  static const char *const ipv4_keys[] = {"ipType", NULL};
  static const char *const nic_keys[] = {"ipv4static",    "ipv4dhcp",   "ipv4disable",
                                         "ipv4noteaming", "parameters", NULL};
  static const char *const none[] = {NULL};
  if (strcmp(key, "helpText") == 0 || strcmp(key, "options") == 0) return true;
  const char *const *keys = none;
  switch (t) {
  case ATTR_STRING: keys = string_keys; break;
  case ATTR_NUMBER: keys = number_keys; break;
  case ATTR_PASSWORD: keys = password_keys; break;
  case ATTR_IPV4: keys = ipv4_keys; break;
  case ATTR_NIC: keys = nic_keys; break;
  default: break;
  }
  for (; *keys; keys++)
    if (strcmp(key, *keys) == 0) return true;
  return false;
}

/* Check the constraint keys of a declaration of type t and the shape of their
 * values. Returns the number of violations. */
static int check_constraints(const char *name, enum attr_type t, json_t *c, json_t *out) {
  int n = 0;
  const char *key;
  json_t *v;
  json_object_foreach(c, key, v) {
    if (!key_allowed(t, key)) {
      n += violation(out, name, "constraint \"%s\" is not allowed for type %s", key, type_names[t]);
      continue;
    }
    if (strcmp(key, "options") == 0) {
      size_t i;
      json_t *o;
      bool ok = json_is_array(v) || json_is_null(v);
      json_array_foreach(v, i, o) {
        if (!json_is_string(o) && !json_is_null(o)) ok = false;
      }
      if (!ok) n += violation(out, name, "constraint \"options\" must be an array of strings");
    } else if (strcmp(key, "parameters") == 0) {
      size_t i;
      json_t *o;
      bool ok = json_is_array(v) || json_is_null(v);
      json_array_foreach(v, i, o) {
        if (!json_is_string(o) || !valid_name(json_string_value(o))) ok = false;
      }
      if (!ok)
        n += violation(out, name,
                       "constraint \"parameters\" must be an array of sub-attribute names");
    } else if (strcmp(key, "ipv4static") == 0 || strcmp(key, "ipv4dhcp") == 0 ||
               strcmp(key, "ipv4disable") == 0 || strcmp(key, "ipv4noteaming") == 0) {
      if (!json_is_null(v) && util_json_bool(v) < 0)
        n += violation(out, name, "constraint \"%s\" must be true or false", key);
    } else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0 ||
               strcmp(key, "increment") == 0) {
      double d;
      if (constraint_number(c, key, &d) < 0)
        n += violation(out, name, "constraint \"%s\" must be a decimal number", key);
      else if (strcmp(key, "increment") == 0 && constraint_number(c, key, &d) > 0 && d <= 0)
        n += violation(out, name, "constraint \"increment\" must be greater than 0");
    } else if (strcmp(key, "minlen") == 0 || strcmp(key, "maxlen") == 0) {
      unsigned long l;
      if (constraint_length(c, key, &l) < 0)
        n += violation(out, name, "constraint \"%s\" must be a non-negative integer", key);
    } else if (strcmp(key, "regex") == 0) {
      if (!json_is_string(v) && !json_is_null(v)) {
        n += violation(out, name, "constraint \"regex\" must be a string");
      } else if (json_is_string(v) && json_string_value(v)[0]) {
        const char *re = json_string_value(v);
        char why[160];
        pcre2_code *rx = regex_compile(re, why, sizeof why);
        if (!rx)
          n += violation(out, name, "regex \"%s\" is not a valid regular expression: %s",
                         show(re).s, why);
        pcre2_code_free(rx);
      }
    } else { /* helpText, unit, allowedchars, ipType */
      if (!json_is_string(v) && !json_is_null(v))
        n += violation(out, name, "constraint \"%s\" must be a string", key);
    }
  }
  double lo, hi;
  if (constraint_number(c, "minimum", &lo) > 0 && constraint_number(c, "maximum", &hi) > 0 &&
      lo > hi)
    n += violation(out, name, "constraint \"minimum\" is greater than \"maximum\"");
  unsigned long minlen, maxlen;
  if (constraint_length(c, "minlen", &minlen) > 0 && constraint_length(c, "maxlen", &maxlen) > 0 &&
      minlen > maxlen)
    n += violation(out, name, "constraint \"minlen\" is greater than \"maxlen\"");
  return n;
}

/* ---- value checks ---------------------------------------------------------- */

static int check_string(const char *name, json_t *c, const char *value, json_t *out) {
  int n = 0;
  if (utf8_len(value) > ATTR_MAX_STRING)
    n += violation(out, name, "value \"%s\" is longer than %d characters", show(value).s,
                   ATTR_MAX_STRING);
  json_t *jre = json_object_get(c, "regex");
  if (json_is_string(jre) && json_string_value(jre)[0]) {
    /* An uncompilable regex is a fault of the declaration (attr_decl_check
     * reports it); values cannot be checked against it. */
    pcre2_code *rx = regex_compile(json_string_value(jre), NULL, 0);
    if (rx) {
      int ok = regex_full_match(rx, value);
      pcre2_code_free(rx);
      if (!ok)
        n += violation(out, name, "value \"%s\" does not match the regular expression \"%s\"",
                       show(value).s, show(json_string_value(jre)).s);
    }
  }
  json_t *options = json_object_get(c, "options");
  if (value[0] && options_count(options) > 0 && !options_contains(options, value)) {
    CLEANUP_FREE char *list = options_list(options);
    n += violation(out, name, "value \"%s\" is not one of the options %s", show(value).s,
                   list ? list : "");
  }
  return n;
}

static int check_number(const char *name, json_t *c, const char *value, json_t *out) {
  if (!value[0]) return violation(out, name, "a value is required (a decimal number)");
  double d, lo = 0, hi, inc;
  if (!parse_decimal(value, &d))
    return violation(out, name, "value \"%s\" is not a decimal number", show(value).s);
  int n = 0;
  bool has_lo = constraint_number(c, "minimum", &lo) > 0;
  if (has_lo && d < lo)
    n += violation(out, name, "value \"%s\" is less than the minimum %.15g", show(value).s, lo);
  if (constraint_number(c, "maximum", &hi) > 0 && d > hi)
    n += violation(out, name, "value \"%s\" is greater than the maximum %.15g", show(value).s, hi);
  /* Steps count from 0, not from the minimum: HPE's own Developer bundle
   * declares minimum 1, increment 10 with the value 50. */
  if (constraint_number(c, "increment", &inc) > 0 && inc > 0) {
    double q = d / inc;
    if (fabs(q - nearbyint(q)) > ATTR_INCREMENT_EPS * fmax(1.0, fabs(q)))
      n += violation(out, name, "value \"%s\" is not a multiple of the increment %.15g",
                     show(value).s, inc);
  }
  return n;
}

/* Never quote a password in a message. */
static int check_password(const char *name, json_t *c, const char *value, json_t *out) {
  unsigned long minlen = 0, maxlen = 0;
  bool has_min = constraint_length(c, "minlen", &minlen) > 0;
  bool has_max = constraint_length(c, "maxlen", &maxlen) > 0;
  if (!value[0]) {
    if (has_min && minlen > 0)
      return violation(out, name, "a password of at least %lu characters is required", minlen);
    return 0;
  }
  int n = 0;
  size_t len = utf8_len(value);
  if (has_min && len < minlen)
    n += violation(out, name, "the password is shorter than %lu characters", minlen);
  if (has_max && len > maxlen)
    n += violation(out, name, "the password is longer than %lu characters", maxlen);
  json_t *allowed = json_object_get(c, "allowedchars");
  if (json_is_string(allowed) && json_string_value(allowed)[0]) {
    const char *set = json_string_value(allowed);
    for (const char *p = value; *p;) {
      if (!utf8_contains(set, utf8_next(&p))) {
        n += violation(out, name, "the password contains characters that are not allowed");
        break;
      }
    }
  }
  return n;
}

static int check_option(const char *name, json_t *c, const char *value, json_t *out) {
  json_t *options = json_object_get(c, "options");
  CLEANUP_FREE char *list = options_list(options);
  if (!value[0])
    return violation(out, name, "a value is required (one of the options %s)", list ? list : "");
  if (!options_contains(options, value))
    return violation(out, name, "value \"%s\" is not one of the options %s", show(value).s,
                     list ? list : "");
  return 0;
}

/* One NIC sub-value as text; NULL when absent, null, empty, an object or an array. */
static const char *nic_text(json_t *nic_values, const char *sub, char tmp[64]) {
  const char *s = scalar_text(json_object_get(nic_values, sub), tmp);
  return s && s[0] ? s : NULL;
}

static bool param_declared(json_t *c, const char *sub) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(c, "parameters"), i, p) {
    if (json_is_string(p) && strcmp(json_string_value(p), sub) == 0) return true;
  }
  return false;
}

static int check_nic(const char *name, json_t *c, json_t *nic_values, json_t *out) {
  int n = 0;
  if (nic_values && !json_is_null(nic_values) && !json_is_object(nic_values))
    return violation(out, name, "NIC values must be an object of sub-attribute values");
  int allow_static = constraint_bool(c, "ipv4static", 0);
  int allow_dhcp = constraint_bool(c, "ipv4dhcp", 0);
  int allow_disable = constraint_bool(c, "ipv4disable", 0);
  char tmp[64];

  /* every key must be declared unless it is one the appliance itself manages */
  const char *sub;
  json_t *v;
  json_object_foreach(nic_values, sub, v) {
    static const char *const builtin[] = {"constraint", "connectionid", "networkuri", "dhcp",
                                          "ipv4disable"};
    bool known = false;
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
      if (strcmp(sub, builtin[i]) == 0) known = true;
    if (json_is_object(v) || json_is_array(v)) {
      n += violation(out, name, "sub-attribute \"%s\" must be a string", sub);
      continue;
    }
    if (!known && !param_declared(c, sub))
      n += violation(out, name, "sub-attribute \"%s\" is not one of the declared parameters", sub);
  }

  char tmp_mode[64], tmp_ip[64], tmp_ip1[64];
  const char *mode_text = nic_text(nic_values, "constraint", tmp_mode);
  const char *ip = nic_text(nic_values, "ipaddress", tmp_ip);
  const char *ip1 = nic_text(nic_values, "ipaddress1", tmp_ip1);
  enum { STATIC, DHCP, DISABLED } mode;
  if (!mode_text)
    mode = allow_dhcp == 1 ? DHCP : STATIC;
  else if (util_strcaseeq(mode_text, "static"))
    mode = STATIC;
  else if (util_strcaseeq(mode_text, "dhcp"))
    mode = DHCP;
  else if (util_strcaseeq(mode_text, "disabled"))
    mode = DISABLED;
  else if (util_strcaseeq(mode_text, "auto"))
    mode = (ip || ip1) ? STATIC : DHCP;
  else
    return n + violation(out, name, "constraint \"%s\" is not one of static, dhcp, disabled, auto",
                         show(mode_text).s);

  if (mode == STATIC && allow_static != 1)
    n += violation(out, name, "static IPv4 configuration is not allowed for this NIC");
  if (mode == DHCP && allow_dhcp != 1)
    n += violation(out, name, "DHCP is not allowed for this NIC");
  if (mode == DISABLED && allow_disable != 1)
    n += violation(out, name, "disabling IPv4 is not allowed for this NIC");

  if (mode == STATIC) {
    if (!ip && !ip1)
      n += violation(out, name, "static IPv4 configuration requires an IP address (ipaddress)");
    static const char *const addrs[] = {"ipaddress", "ipaddress1", "ipaddress2", "gateway",
                                        "dns1",      "dns2",       "dns3"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
      const char *a = nic_text(nic_values, addrs[i], tmp);
      if (a && !valid_ipv4(a))
        n += violation(out, name, "%s \"%s\" is not a valid IPv4 address", addrs[i], show(a).s);
    }
    const char *mask = nic_text(nic_values, "netmask", tmp);
    if (mask && !valid_netmask(mask))
      n += violation(out, name,
                     "netmask \"%s\" is not a valid IPv4 netmask (contiguous dotted quad or "
                     "prefix length 0-32)",
                     show(mask).s);
  }
  const char *vlan = nic_text(nic_values, "vlanid", tmp);
  unsigned long vid;
  if (vlan && (!parse_uint(vlan, 4, &vid) || vid > 4094))
    n += violation(out, name, "vlanid \"%s\" is not an integer from 0 to 4094", show(vlan).s);
  const char *mac = nic_text(nic_values, "mac", tmp);
  if (mac && !valid_mac(mac))
    n += violation(out, name, "mac \"%s\" is not \"none\" or a MAC address (aa:bb:cc:dd:ee:ff)",
                   show(mac).s);
  return n;
}

/* Check a value of type t (valid) against parsed constraints c. */
static int check_value(const char *name, enum attr_type t, json_t *c, const char *value,
                       json_t *nic_values, json_t *out) {
  if (!value) value = "";
  switch (t) {
  case ATTR_STRING: return check_string(name, c, value, out);
  case ATTR_NUMBER: return check_number(name, c, value, out);
  case ATTR_PASSWORD: return check_password(name, c, value, out);
  case ATTR_OPTION: return check_option(name, c, value, out);
  case ATTR_FQDN:
    if (!value[0])
      return violation(out, name, "a value is required (a fully qualified domain name)");
    if (!valid_host(value, true))
      return violation(out, name,
                       "value \"%s\" is not a valid fully qualified domain name (labels of "
                       "letters, digits, '-' and '_' joined by '.', not starting with '-' or "
                       "'_', at most %d characters)",
                       show(value).s, ATTR_MAX_TEXT);
    return 0;
  case ATTR_HOSTNAME:
    if (!value[0]) return violation(out, name, "a value is required (a host name)");
    if (!valid_host(value, false))
      return violation(out, name,
                       "value \"%s\" is not a valid host name (letters, digits, '-' and '_', no "
                       "'.', not starting with '-' or '_', at most %d characters)",
                       show(value).s, ATTR_MAX_TEXT);
    return 0;
  case ATTR_IPV4:
    if (!value[0]) return violation(out, name, "a value is required (an IPv4 address)");
    if (!valid_ipv4(value))
      return violation(out, name, "value \"%s\" is not a valid IPv4 address", show(value).s);
    return 0;
  case ATTR_NIC: return check_nic(name, c, nic_values, out);
  default: return 0;
  }
}

/* The type of a declaration (absent or null = string). *given is the type text
 * as sent, NULL when absent, null or not a string. */
static enum attr_type decl_type(json_t *decl, const char **given) {
  json_t *jt = json_object_get(decl, "type");
  *given = NULL;
  if (!jt || json_is_null(jt)) return ATTR_STRING;
  if (!json_is_string(jt)) return ATTR_TYPE_INVALID;
  *given = json_string_value(jt);
  return attr_type_parse(*given);
}

static int type_violation(json_t *out, const char *name, const char *given) {
  if (!given) return violation(out, name, "type must be a string (one of " TYPE_LIST ")");
  return violation(out, name, "type \"%s\" is not a known attribute type (" TYPE_LIST ")",
                   show(given).s);
}

int attr_decl_check(json_t *decl, json_t *violations) {
  if (!json_is_object(decl)) return violation(violations, "", "a declaration must be an object");
  int n = 0;
  json_t *jname = json_object_get(decl, "name");
  const char *name = json_is_string(jname) ? json_string_value(jname) : "";
  if (!name[0])
    n += violation(violations, name, "a name is required");
  else if (!valid_name(name))
    n += violation(violations, name,
                   "the name must consist of letters, digits, '_' and '-' and start with a "
                   "letter or '_'");

  const char *given;
  enum attr_type t = decl_type(decl, &given);
  if (t == ATTR_TYPE_INVALID) n += type_violation(violations, name, given);

  json_t *c = constraints_load(json_object_get(decl, "constraints"));
  if (!c)
    n += violation(violations, name,
                   "constraints must be a JSON object or a string holding a JSON object");
  else if (t != ATTR_TYPE_INVALID)
    n += check_constraints(name, t, c, violations);

  json_t *jv = json_object_get(decl, "value");
  char tmp[64];
  const char *value = scalar_text(jv, tmp);
  if (jv && !json_is_null(jv) && (!value || json_is_boolean(jv))) {
    n += violation(violations, name, "value must be a string");
  } else if (t == ATTR_NIC) {
    if (value && value[0])
      n += violation(violations, name,
                     "a NIC attribute has no value of its own; give its sub-attributes "
                     "(%s.ipaddress, ...) instead",
                     name);
  } else if (value && value[0] && c && t != ATTR_TYPE_INVALID) {
    n += check_value(name, t, c, value, NULL, violations);
  }

  static const char *const bools[] = {"visible", "editable"};
  for (size_t i = 0; i < 2; i++) {
    json_t *b = json_object_get(decl, bools[i]);
    if (b && !json_is_null(b) && util_json_bool(b) < 0)
      n += violation(violations, name, "\"%s\" must be true or false", bools[i]);
  }
  json_t *desc = json_object_get(decl, "description");
  if (desc && !json_is_null(desc) && !json_is_string(desc))
    n += violation(violations, name, "description must be a string");
  json_decref(c);
  return n;
}

int attr_value_check(json_t *decl, const char *value, json_t *nic_values, json_t *violations) {
  if (!json_is_object(decl)) return violation(violations, "", "a declaration must be an object");
  json_t *jname = json_object_get(decl, "name");
  const char *name = json_is_string(jname) ? json_string_value(jname) : "";
  const char *given;
  enum attr_type t = decl_type(decl, &given);
  if (t == ATTR_TYPE_INVALID) return type_violation(violations, name, given);
  json_t *c = constraints_load(json_object_get(decl, "constraints"));
  int n = 0;
  if (!c) {
    n += violation(violations, name,
                   "constraints must be a JSON object or a string holding a JSON object");
    c = json_object();
    if (!c) return n;
  }
  n += check_value(name, t, c, value, nic_values, violations);
  json_decref(c);
  return n;
}

/* ---- normalization ----------------------------------------------------------- */

/* Constraints as the JSON string HPE stores; NULL when malformed. New reference. */
static json_t *constraints_string(json_t *c) {
  if (!c || json_is_null(c)) return json_string("{}");
  if (json_is_string(c)) return json_string_value(c)[0] ? json_incref(c) : json_string("{}");
  if (json_is_object(c)) {
    char *s = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s) return NULL;
    json_t *r = json_string(s);
    free(s);
    return r;
  }
  return NULL;
}

int attr_decl_normalize(json_t *decl) {
  if (!json_is_object(decl)) return -1;
  json_t *cs = constraints_string(json_object_get(decl, "constraints"));
  if (cs) json_object_set_new(decl, "constraints", cs);

  const char *given;
  bool nic = decl_type(decl, &given) == ATTR_NIC;
  json_t *jv = json_object_get(decl, "value");
  if (!jv || json_is_null(jv)) {
    json_object_set_new(decl, "value", nic ? json_null() : json_string(""));
  } else if (json_is_number(jv)) {
    char tmp[64];
    json_object_set_new(decl, "value", json_string(scalar_text(jv, tmp)));
  }

  static const char *const bools[] = {"visible", "editable"};
  for (size_t i = 0; i < 2; i++) {
    json_t *b = json_object_get(decl, bools[i]);
    if (json_is_string(b) && util_json_bool(b) >= 0)
      json_object_set_new(decl, bools[i], json_boolean(util_json_bool(b)));
  }
  return 0;
}

/* ---- merging ------------------------------------------------------------------- */

/* A value that overrides a lower layer: non-empty text. */
static const char *layer_value(json_t *v, char tmp[64]) {
  const char *s = scalar_text(v, tmp);
  if (json_is_boolean(v)) return NULL;
  return s && s[0] ? s : NULL;
}

static json_t *new_decl(const char *name) {
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:b}", "name", name, "type", "string", "value", "",
                   "constraints", "{}", "description", "", "visible", 1, "editable", 1);
}

/* Overlay declaration `src` (a build or deployment plan entry) on `dst`.
 * `shape` records which of type/constraints/description a lower plan layer
 * already gave: the build plan's shape wins, the deployment plan only fills
 * gaps. Non-empty values, visible and editable of the higher layer win. */
static void overlay_decl(json_t *dst, json_t *src, json_t *shape) {
  char tmp[64];
  json_t *t = json_object_get(src, "type");
  if (json_is_string(t) && json_string_value(t)[0] && !json_object_get(shape, "type")) {
    json_object_set(dst, "type", t);
    json_object_set_new(shape, "type", json_true());
  }
  json_t *cs = json_object_get(src, "constraints");
  json_t *css = constraints_string(cs);
  if (cs && !json_is_null(cs) && css && !json_object_get(shape, "constraints")) {
    json_object_set(dst, "constraints", css);
    json_object_set_new(shape, "constraints", json_true());
  }
  json_decref(css);
  json_t *d = json_object_get(src, "description");
  if (json_is_string(d) && !json_object_get(shape, "description")) {
    json_object_set(dst, "description", d);
    json_object_set_new(shape, "description", json_true());
  }
  const char *v = layer_value(json_object_get(src, "value"), tmp);
  if (v) json_object_set_new(dst, "value", json_string(v));
  static const char *const bools[] = {"visible", "editable"};
  for (size_t i = 0; i < 2; i++) {
    int b = util_json_bool(json_object_get(src, bools[i]));
    if (b >= 0) json_object_set_new(dst, bools[i], json_boolean(b));
  }
}

/* Index in the result of the name name[0..len), or -1. */
static long merged_index(json_t *index, const char *name, size_t len) {
  json_t *i = json_object_getn(index, name, len);
  return i ? (long)json_integer_value(i) : -1;
}

static json_t *append_decl(json_t *out, json_t *index, const char *name) {
  json_t *d = new_decl(name);
  if (!d) return NULL;
  if (json_object_set_new(index, name, json_integer((json_int_t)json_array_size(out))) != 0 ||
      json_array_append_new(out, d) != 0)
    return NULL;
  return d;
}

static void merge_plan_layer(json_t *out, json_t *index, json_t *shapes, json_t *layer) {
  size_t i;
  json_t *d;
  json_array_foreach(layer, i, d) {
    const char *name = json_string_value(json_object_get(d, "name"));
    if (!name || !name[0]) continue;
    long at = merged_index(index, name, strlen(name));
    json_t *dst = at >= 0 ? json_array_get(out, (size_t)at) : append_decl(out, index, name);
    if (!dst) continue;
    json_t *shape = json_object_get(shapes, name);
    if (!shape) {
      shape = json_object();
      if (!shape || json_object_set_new(shapes, name, shape) != 0) continue;
    }
    overlay_decl(dst, d, shape);
  }
}

json_t *attr_merge(json_t *ps, json_t *bp, json_t *dp, json_t *profile) {
  json_t *out = json_array(), *index = json_object(), *shaped = json_object();
  json_t *nic_params = json_object(); /* undeclared NIC name -> subs its scripts use */
  if (!out || !index || !shaped || !nic_params) goto fail;

  /* build plan, then deployment plan on top (its shape only fills gaps; its
   * values, visible and editable win) */
  merge_plan_layer(out, index, shaped, bp);
  merge_plan_layer(out, index, shaped, dp);
  size_t declared = json_array_size(out);

  /* plan-script defaults: the lowest layer */
  size_t i;
  json_t *p;
  char tmp[64];
  json_array_foreach(ps, i, p) {
    const char *name = json_string_value(json_object_get(p, "name"));
    if (!name || !name[0]) continue;
    const char *dot = strchr(name, '.');
    if (dot) {
      long bat = merged_index(index, name, (size_t)(dot - name));
      if (bat >= 0 && (size_t)bat < declared) continue; /* folded into the declared base */
      /* An undeclared "Name.sub": only NIC attributes have sub-parameters, so
       * the scripts declare a NIC "Name" offering every sub they use. */
      char *base = strndup(name, (size_t)(dot - name));
      json_t *dst = !base      ? NULL
                    : bat >= 0 ? json_array_get(out, (size_t)bat)
                               : append_decl(out, index, base);
      free(base);
      if (!dst) continue;
      json_object_set_new(dst, "type", json_string("nic"));
      json_t *params = json_object_get(nic_params, json_string_value(json_object_get(dst, "name")));
      if (!params) {
        params = json_array();
        json_object_set_new(nic_params, json_string_value(json_object_get(dst, "name")), params);
      }
      json_array_append_new(params, json_string(dot + 1));
      continue;
    }
    long at = merged_index(index, name, strlen(name));
    json_t *dst = at >= 0 ? json_array_get(out, (size_t)at) : append_decl(out, index, name);
    if (!dst) continue;
    const char *v = layer_value(json_object_get(p, "value"), tmp);
    const char *cur = json_string_value(json_object_get(dst, "value"));
    if (v && (!cur || !cur[0])) json_object_set_new(dst, "value", json_string(v));
  }

  /* Undeclared NICs accept every mode and exactly the subs the scripts use. */
  const char *nic_name;
  json_t *subs;
  json_object_foreach(nic_params, nic_name, subs) {
    long at = merged_index(index, nic_name, strlen(nic_name));
    json_t *c = json_pack("{s:b, s:b, s:b, s:O}", "ipv4static", 1, "ipv4dhcp", 1, "ipv4disable", 1,
                          "parameters", subs);
    char *cs = c ? json_dumps(c, JSON_COMPACT) : NULL;
    json_decref(c);
    if (at >= 0 && cs)
      json_object_set_new(json_array_get(out, (size_t)at), "constraints", json_string(cs));
    free(cs);
  }

  /* profile values: the highest layer; "Name.sub" of a declared Name -> nicValues */
  json_array_foreach(profile, i, p) {
    const char *name = json_string_value(json_object_get(p, "name"));
    if (!name || !name[0]) continue;
    json_t *jv = json_object_get(p, "value");
    long at = merged_index(index, name, strlen(name));
    const char *dot = strchr(name, '.');
    if (at < 0 && dot) {
      long bat = merged_index(index, name, (size_t)(dot - name));
      if (bat >= 0) {
        json_t *dst = json_array_get(out, (size_t)bat);
        json_t *nv = json_object_get(dst, "nicValues");
        if (!json_is_object(nv)) {
          nv = json_object();
          json_object_set_new(dst, "nicValues", nv);
        }
        const char *s = scalar_text(jv, tmp);
        if (s) json_object_set_new(nv, dot + 1, json_string(s));
        continue;
      }
    }
    json_t *dst = at >= 0 ? json_array_get(out, (size_t)at) : append_decl(out, index, name);
    if (!dst) continue;
    const char *v = layer_value(jv, tmp);
    if (v) json_object_set_new(dst, "value", json_string(v));
  }

  /* NIC declarations: no value of their own unless one was given, and always nicValues */
  json_t *d;
  json_array_foreach(out, i, d) {
    const char *given;
    if (decl_type(d, &given) != ATTR_NIC) continue;
    if (!json_is_object(json_object_get(d, "nicValues")))
      json_object_set_new(d, "nicValues", json_object());
    const char *v = json_string_value(json_object_get(d, "value"));
    if (!v || !v[0]) json_object_set_new(d, "value", json_null());
  }
  json_decref(index);
  json_decref(shaped);
  json_decref(nic_params);
  return out;
fail:
  json_decref(out);
  json_decref(index);
  json_decref(shaped);
  json_decref(nic_params);
  return NULL;
}

int attr_validate_all(json_t *merged, json_t *violations) {
  int n = 0;
  size_t i;
  json_t *d;
  json_array_foreach(merged, i, d) {
    const char *given;
    char tmp[64];
    if (decl_type(d, &given) == ATTR_NIC)
      n += attr_value_check(d, NULL, json_object_get(d, "nicValues"), violations);
    else
      n += attr_value_check(d, scalar_text(json_object_get(d, "value"), tmp), NULL, violations);
  }
  return n;
}

void attr_mask_passwords(json_t *decls) {
  size_t i;
  json_t *d;
  json_array_foreach(decls, i, d) {
    const char *given;
    if (!json_is_object(d) || decl_type(d, &given) != ATTR_PASSWORD) continue;
    json_t *v = json_object_get(d, "value");
    if (!v || json_is_null(v)) continue;
    if (json_is_string(v) && json_string_value(v)[0] == '\0') continue;
    json_object_set_new(d, "value", json_string(""));
  }
}
