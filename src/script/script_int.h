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
  if (more > SIZE_MAX / 2 - b->len) return -1;
  if (b->p && b->len + more + 1 <= b->cap) return 0;
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

/* ---- sessions ------------------------------------------------------------ */
struct fs;
struct fs_stat;
struct sandbox;
struct gf_delegate; /* guestfish.c */

/* One open filesystem, shared by every mount of its device. */
struct fsref {
  char *device; /* canonical: "/dev/sda1", "/dev/rhel/root" */
  struct fs *fs;
  int refs;
  int rw;
};

/* One mount: guest path -> filesystem; later mounts at the same path hide
 * earlier ones, as in Linux. */
struct mountent {
  char *path; /* normalized: "/", "/boot/efi" */
  struct fsref *ref;
  int ro; /* mount-ro: writes through this mount fail */
};

typedef int (*script_host_fn)(void *opaque, const char *script, const void *in, size_t in_len,
                              char **out, size_t *out_len, char **errout, size_t *errout_len,
                              int *status, struct err *e);

struct script_session {
  struct fs_disk *disk;
  char *workdir;
  int wfd; /* O_PATH descriptor of the work directory: every local path is opened beneath it */
  struct sandbox_limits *limits;
  struct sandbox *sb; /* created on the first host command */
  void (*log)(void *opaque, const char *text, size_t len);
  void *log_opaque;
  enum script_guestfish_mode gmode;
  char *volume_info, *disk_path;
  script_host_fn host_run;
  void *host_opaque;

  struct mountent *mounts;
  size_t nmounts, capmounts;

  json_t *values; /* attribute values (may be NULL) */
  char **masks;   /* secret values to hide in the log */
  size_t nmasks;

  struct script_stats stats;
  int quit;               /* quit/exit ran: stop the current run */
  int header_logged;      /* the volume details went to the log */
  int depth;              /* <! nesting */
  struct gf_delegate *gf; /* non-NULL while guestfish runs this session */
};

/* Error codes of a failed run (e->code). */
#define SCRIPT_E_FAILED "SCRIPT_FAILED"
#define SCRIPT_E_UNKNOWN "SCRIPT_UNKNOWN_COMMAND"
#define SCRIPT_E_SYNTAX "SCRIPT_SYNTAX"
#define SCRIPT_E_GUESTFISH "SCRIPT_NEEDS_GUESTFISH"

/* ---- session.c: logging, guest paths, local paths, host commands -------- */
void slog(struct script_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void slog_raw(struct script_session *s, const char *text, size_t len); /* masked */

/* A guest path resolved through the mount table. */
struct gpath {
  struct fs *fs;
  char *inner;       /* path inside fs (malloc'd): "/grub/grub.cfg" */
  char *full;        /* normalized guest path (malloc'd): "/boot/grub/grub.cfg" */
  int ro;            /* the mount is read-only */
  int is_mountpoint; /* full is the mount's own path */
};
/* Normalize an absolute guest path ("//a/./b/../c" -> "/a/c"); NULL (e set)
 * if it is not absolute. */
char *gpath_normalize(const char *cmd, const char *path, struct err *e);
int gpath_resolve(struct script_session *s, const char *cmd, const char *path, struct gpath *out,
                  struct err *e);
void gpath_free(struct gpath *g);
/* e = "<cmd>: <path>: <reason>" from a filesystem error fe. */
void gpath_error(struct err *e, const char *cmd, const char *path, const struct err *fe);
int gpath_check_writable(const struct gpath *g, const char *cmd, struct err *e);
/* Is any mount strictly below `full`? */
int gpath_has_submount(struct script_session *s, const char *full);

/* Local paths, named as the sandboxed shell sees them (sandbox_open_local):
 * relative or under the work dir's absolute path = the work dir; /tmp/... =
 * the session's private /tmp; nothing else. Never leave them, even through
 * symlinks; never block on a FIFO (regular files and directories only). */
int local_open(struct script_session *s, const char *cmd, const char *path, int flags, int mode,
               struct err *e);
/* The parent directory of a local path, opened (O_RDONLY | O_DIRECTORY), and
 * its last component in *name (malloc'd); -1 (e set) if there is none. */
int local_parent(struct script_session *s, const char *cmd, const char *path, char **name,
                 struct err *e);
/* mkdir of one local path (its parent must exist) */
int local_mkdir(struct script_session *s, const char *cmd, const char *path, int mode,
                struct err *e);

/* Run a host command (sandboxed); 0 when it ran to an exit status. */
int host_run(struct script_session *s, const char *script, const void *in, size_t in_len,
             char **out, size_t *out_len, char **errout, size_t *errout_len, int *status,
             struct err *e);

/* ---- the commands (cmds_*.c, inspect.c) ---------------------------------- */
/* A command's handler: arguments after quote removal; output appended to out. */
typedef int (*script_cmd_fn)(struct script_session *s, const struct script_stmt *st, int argc,
                             char **argv, struct sbuf *out, struct err *e);
script_cmd_fn script_cmd_handler(const struct script_cmd *d);
int cmd_run_named(struct script_session *s, const struct script_stmt *st, const char *name,
                  int argc, char **argv, struct sbuf *out, struct err *e);

/* cmds_disk.c */
int mount_device(struct script_session *s, const char *cmd, const char *dev, const char *path,
                 int ro, struct err *e);
int umount_all(struct script_session *s, struct err *e);

/* ---- guestfish.c ----------------------------------------------------------- */
/* Is real guestfish installed? 1, or 0 with the reason in why. */
int gf_available(char *why, size_t n);
int gf_start(struct script_session *s, struct err *e);
int gf_command(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e);
int gf_stop(struct script_session *s, struct err *e);

#endif
