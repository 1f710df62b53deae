/* script_int.h — private to src/script: the growable buffer, the one-line
 * parser the interpreter reuses for <! output, and (below) the session
 * state shared by session.c, the cmds_*.c files, inspect.c and guestfish.c. */
#ifndef STREAMER_SCRIPT_INT_H
#define STREAMER_SCRIPT_INT_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script.h"

/* ---- a growable byte buffer (always NUL-terminated when p != NULL) ------ */
struct sbuf {
  char *p;
  size_t len, cap;
};
static inline int sbuf_reserve(struct sbuf *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return 0;
  size_t ncap = b->cap ? b->cap : 64;
  while (ncap < b->len + more + 1) {
    if (ncap > SIZE_MAX / 2) return -1;
    ncap *= 2;
  }
  char *np = realloc(b->p, ncap);
  if (!np) return -1;
  b->p = np;
  b->cap = ncap;
  return 0;
}
static inline int sbuf_add(struct sbuf *b, const void *data, size_t n) {
  if (sbuf_reserve(b, n)) return -1;
  if (n) memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}
static inline int sbuf_addc(struct sbuf *b, char c) { return sbuf_add(b, &c, 1); }
static inline int sbuf_adds(struct sbuf *b, const char *s) { return sbuf_add(b, s, strlen(s)); }
int sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void sbuf_free(struct sbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- parse.c ------------------------------------------------------------ */
/* One line (NUL-terminated, no newline): 1 = a statement in *st, 0 = blank or
 * comment, -1 = out of memory. Syntax errors are statements with st->error. */
int script_parse_line(const char *line, struct script_stmt *st);
void script_stmt_clear(struct script_stmt *st);

#endif
