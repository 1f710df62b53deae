/* fuzz_script_parse.c — libFuzzer target for the plan-script parser
 * (guestfish's line rules, here-documents, quoting), attribute substitution
 * and the offline checker. Input: a script; after an optional "\0\0", lines
 * NAME=VALUE of attribute values. Invariants checked: line numbers grow,
 * here-document bodies hold no NUL, argument vectors are NULL-terminated and
 * shorter than guestfish's 64. Seeds: tests/fuzz/corpus/fuzz_script_parse
 * (our own scripts in the corpus' style). Built and run by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "script/attr.h"
#include "script/script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_script(const char *text, size_t len) {
  struct script *sc;
  if (script_parse(text, len, "fuzz", &sc)) return;
  int last = 0;
  for (size_t i = 0; i < sc->n; i++) {
    const struct script_stmt *st = &sc->stmts[i];
    if (st->line <= last || st->last_line < st->line || st->last_line > sc->lines) __builtin_trap();
    last = st->last_line;
    if (!st->text) __builtin_trap();
    if (st->kind == SCRIPT_COMMAND) {
      if (!st->cmd || !st->argv || st->argc > 63 || st->argv[st->argc]) __builtin_trap();
      for (int a = 0; a < st->argc; a++)
        if (!st->argv[a]) __builtin_trap();
      if (st->heredoc && strlen(st->heredoc) != st->heredoc_len) __builtin_trap();
      if (st->heredoc && st->heredoc_arg < 0) __builtin_trap();
    } else if (!st->shell) {
      __builtin_trap();
    }
  }
  script_free(sc);
}

static void noop(void *o, const char *n, int l, enum script_severity s, const char *m) {
  (void)o, (void)n, (void)l, (void)s;
  if (!m) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 200000) return 0;
  const char *text = (const char *)data;
  size_t tlen = size;
  const uint8_t *sep = NULL;
  for (size_t i = 0; i + 1 < size; i++)
    if (data[i] == 0 && data[i + 1] == 0) {
      sep = data + i;
      break;
    }
  json_t *values = json_object();
  if (sep) {
    tlen = (size_t)(sep - data);
    char *v = strndup((const char *)sep + 2, size - tlen - 2);
    for (char *line = v, *next; line && *line; line = next) {
      next = strchr(line, '\n');
      if (next) *next++ = 0;
      char *eq = strchr(line, '=');
      if (!eq) continue;
      *eq = 0;
      json_object_set_new(values, line, json_string(eq + 1)); /* NULL for non-UTF-8: skipped */
    }
    free(v);
  }
  check_script(text, tlen); /* raw bytes, NULs included */
  char *ctext = strndup(text, tlen);
  if (ctext) {
    char *subst = attr_substitute(ctext, values);
    if (subst) {
      check_script(subst, strlen(subst));
      (void)script_check(subst, strlen(subst), "fuzz", NULL, noop, NULL);
      free(subst);
    }
    (void)script_check(ctext, strlen(ctext), "fuzz", values, noop, NULL);
    json_decref(attr_derive(ctext));
    free(ctext);
  }
  json_decref(values);
  return 0;
}
