/* output.c — what the user reads: aligned tables for lists, key: value lines
 * for one resource, pretty JSON for --json. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

const char *jstr(json_t *obj, const char *key) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  return json_is_string(v) ? json_string_value(v) : "";
}

void out_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
  if (s) {
    fputs(s, stdout);
    fputc('\n', stdout);
  }
  free(s);
}

char *out_text(json_t *v) {
  if (!v || json_is_null(v)) return strdup("");
  if (json_is_string(v)) return strdup(json_string_value(v));
  return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

char *out_time(const char *iso) {
  if (!iso || strlen(iso) < 19 || iso[10] != 'T') return strdup(iso ? iso : "");
  return util_strdup_printf("%.10s %.8s", iso, iso + 11);
}

/* Display width of a UTF-8 string, counting code points; control characters
 * are printed as '?' by cell_print and count 1. */
static size_t text_width(const char *s) {
  size_t w = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p & 0xC0) != 0x80) w++;
  }
  return w;
}

/* Print a cell, replacing newlines and other control characters so that one
 * row stays one line. */
static void cell_print(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    fputc(*p < 0x20 || *p == 0x7f ? ' ' : *p, f);
}

struct table {
  int ncols, nrows, cap;
  char **cells; /* (nrows + 1) * ncols, row 0 = headers */
};

struct table *table_new(int ncols, const char *const *headers) {
  struct table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ncols = ncols;
  table_add(t, headers);
  return t;
}

void table_add(struct table *t, const char *const *cells) {
  if (!t) return;
  if (t->nrows + 1 > t->cap) {
    int cap = t->cap ? t->cap * 2 : 16;
    char **nc = realloc(t->cells, sizeof(char *) * (size_t)cap * (size_t)t->ncols);
    if (!nc) return;
    t->cells = nc;
    t->cap = cap;
  }
  for (int i = 0; i < t->ncols; i++)
    t->cells[t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "");
  t->nrows++;
}

void table_print(struct table *t, FILE *f, const char *indent) {
  if (!t) return;
  size_t width[64] = {0};
  int nc = t->ncols < 64 ? t->ncols : 64;
  for (int r = 0; r < t->nrows; r++) {
    for (int i = 0; i < nc; i++) {
      const char *s = t->cells[r * t->ncols + i];
      size_t w = s ? text_width(s) : 0;
      if (w > width[i]) width[i] = w;
    }
  }
  for (int r = 0; r < t->nrows; r++) {
    fputs(indent ? indent : "", f);
    for (int i = 0; i < nc; i++) {
      const char *s = t->cells[r * t->ncols + i];
      if (!s) s = "";
      cell_print(f, s);
      if (i + 1 < nc) {
        for (size_t k = text_width(s); k < width[i] + 2; k++)
          fputc(' ', f);
      }
    }
    fputc('\n', f);
  }
}

void table_free(struct table *t) {
  if (!t) return;
  for (int i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
  free(t);
}

struct kv {
  int n, cap;
  char **keys, **values;
};

struct kv *kv_new(void) {
  return calloc(1, sizeof(struct kv));
}

void kv_add(struct kv *k, const char *key, const char *value) {
  if (!k) return;
  if (k->n + 1 > k->cap) {
    int cap = k->cap ? k->cap * 2 : 32;
    char **nk = realloc(k->keys, sizeof(char *) * (size_t)cap);
    if (!nk) return;
    k->keys = nk;
    char **nv = realloc(k->values, sizeof(char *) * (size_t)cap);
    if (!nv) return;
    k->values = nv;
    k->cap = cap;
  }
  k->keys[k->n] = strdup(key);
  k->values[k->n] = strdup(value ? value : "");
  k->n++;
}

void kv_add_json(struct kv *k, const char *key, json_t *value) {
  if (!value) return;
  char *t = out_text(value);
  kv_add(k, key, t);
  free(t);
}

void kv_print(struct kv *k, FILE *f) {
  if (!k) return;
  size_t w = 0;
  for (int i = 0; i < k->n; i++) {
    size_t n = text_width(k->keys[i]);
    if (n > w) w = n;
  }
  for (int i = 0; i < k->n; i++) {
    fprintf(f, "%s:", k->keys[i]);
    for (size_t j = text_width(k->keys[i]); j < w + 1; j++)
      fputc(' ', f);
    /* Multi-line values continue under the value column. */
    for (const char *p = k->values[i]; *p; p++) {
      fputc(*p, f);
      if (*p == '\n' && p[1]) {
        for (size_t j = 0; j < w + 2; j++)
          fputc(' ', f);
      }
    }
    fputc('\n', f);
  }
}

void kv_free(struct kv *k) {
  if (!k) return;
  for (int i = 0; i < k->n; i++) {
    free(k->keys[i]);
    free(k->values[i]);
  }
  free(k->keys);
  free(k->values);
  free(k);
}

char *out_joined(json_t *arr, const char *sep) {
  size_t len = 1, i;
  json_t *v;
  json_array_foreach(arr, i, v) { len += strlen(json_string_value(v) ?: "") + strlen(sep); }
  char *s = calloc(1, len);
  if (!s) return NULL;
  json_array_foreach(arr, i, v) {
    if (i) strcat(s, sep);
    strcat(s, json_string_value(v) ?: "");
  }
  return s;
}

void out_human_size(json_t *v, char *out, size_t size) {
  if (!json_is_integer(v)) {
    snprintf(out, size, "%s", "");
    return;
  }
  out_human_bytes(json_integer_value(v), out, size);
}

void out_human_bytes(json_int_t n, char *out, size_t size) {
  double b = (double)n;
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    u++;
  }
  snprintf(out, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}
