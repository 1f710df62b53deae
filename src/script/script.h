/* script.h — HPE plan scripts: guestfish's dialect, parsed with guestfish's
 * own line rules, checked offline, and run natively on an OS volume's disk
 * (src/fs) with the host shell in a sandbox (sandbox.h). Attribute tokens
 * (@name@) are substituted before parsing (attr.h). See src/script/README.md
 * and docs/plan-scripts.md. Must not know about HTTP or the store. */
#ifndef STREAMER_SCRIPT_H
#define STREAMER_SCRIPT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct fs_disk;        /* fs/fs.h */
struct sandbox_limits; /* script/sandbox.h */

/* ======================================================================= */
/* the command vocabulary (cmdtab.c)                                        */
/* ======================================================================= */
enum script_cmd_class {
  SCRIPT_CMD_BUILTIN, /* no disk access: echo, glob, version, quit */
  SCRIPT_CMD_FILE,    /* files of the mounted filesystems */
  SCRIPT_CMD_DISK,    /* mount table, devices, partitions, LVM, inspection */
  SCRIPT_CMD_GUEST,   /* runs a program of the guest (command, sh): real guestfish only */
};

struct script_cmd {
  const char *name;       /* canonical guestfish name: "mkdir-p" */
  int min_args, max_args; /* max_args -1: any number (a line holds at most 63) */
  int filein_arg;         /* index of the argument that may be -<<MARKER, else -1 */
  enum script_cmd_class cls;
  const char *synopsis; /* "mkdir-p path" */
};

/* Look a command up the way guestfish does: ASCII case-insensitive, '_' and
 * '-' equivalent, aliases (unmount = umount, unmount-all = umount-all).
 * NULL if guestfish would say "unknown command". */
const struct script_cmd *script_cmd_find(const char *name);
/* Every known command, sorted by name: *n entries (for docs and tests). */
const struct script_cmd *script_cmd_all(size_t *n);

/* ======================================================================= */
/* parsing (parse.c)                                                        */
/* ======================================================================= */
enum script_kind {
  SCRIPT_COMMAND, /* cmd args [| shell] */
  SCRIPT_SHELL,   /* !shell: run on the host; a non-zero exit status is an error */
  SCRIPT_INLINE,  /* <!shell: run on the host, its output run as script lines */
};

/* One statement: a script line that is not blank or a comment, with the
 * here-document it consumed. */
struct script_stmt {
  enum script_kind kind;
  int line;          /* 1-based number of the line it starts on */
  int last_line;     /* its last line (the end marker of a here-document) */
  int ignore_errors; /* the line started with '-': a failure is logged, not fatal */
  char *text;        /* the line as written (no newline) */
  /* SCRIPT_COMMAND */
  char *cmd;                    /* command word as written ("Mount", "list_devices") */
  const struct script_cmd *def; /* its definition, NULL if unknown */
  int argc;                     /* arguments after quote removal */
  char **argv;                  /* argc strings + NULL */
  char *pipe;                   /* shell text after a word starting with '|', or NULL */
  int heredoc_arg;              /* argv index of -<<MARKER whose body was read, else -1 */
  char *heredoc;                /* that body: each line with its newline */
  size_t heredoc_len;
  /* SCRIPT_SHELL / SCRIPT_INLINE */
  char *shell; /* the host command: the text after '!' or "<!" */
  /* A line guestfish cannot parse (bad quoting, a bad escape, too many
   * arguments, a here-document without its end marker): the message, and
   * running the statement fails with it (non-fatal with '-', like
   * guestfish). NULL when the line parsed. */
  char *error;
};

struct script {
  char *name; /* for messages: a file or plan-script name */
  size_t n;
  struct script_stmt *stmts;
  int lines; /* lines in the text */
};

/* Parse `len` bytes of `text` (need not be NUL-terminated) under guestfish's
 * line rules (docs/plan-scripts.md "Line rules"). Never fails on bad syntax:
 * a line that does not parse becomes a statement with `error` set. Returns 0,
 * or -1 on out of memory. Free with script_free. */
int script_parse(const char *text, size_t len, const char *name, struct script **out);
void script_free(struct script *sc);

/* guestfish's integer argument syntax (chmod's mode, chown's ids): strtoll
 * base 0 (0755 octal, 0x1ed hex, 493 decimal) and an optional k/K/M/G/T/P/E
 * suffix; 0 or -1 (message in `why`) on a bad number. */
int script_parse_int(const char *s, int64_t *v, char *why, size_t why_len);

/* ======================================================================= */
/* offline check (lint.c)                                                   */
/* ======================================================================= */
enum script_severity { SCRIPT_NOTE, SCRIPT_WARNING, SCRIPT_ERROR };

typedef void (*script_diag_fn)(void *opaque, const char *name, int line, enum script_severity sev,
                               const char *message);

/* Check a script without running it: every line that does not parse, every
 * unknown command, every wrong argument count and bad integer argument is
 * an error; dubious but legal uses (chmod 755, which guestfish reads as
 * decimal) are warnings; what only a run can tell (<! output, a command
 * word that is an @attribute@, guest programs that need guestfish) is a
 * note. `values` (object name -> string, may be NULL) is substituted first;
 * tokens without a value are left as written. Calls `diag` per finding in
 * line order and returns the number of errors (-1 on out of memory). */
int script_check(const char *text, size_t len, const char *name, json_t *values,
                 script_diag_fn diag, void *opaque);

/* ======================================================================= */
/* sessions (session.c, cmds_*.c, inspect.c, guestfish.c)                   */
/* ======================================================================= */
/* When to hand a session to real guestfish (libguestfs-tools): */
enum script_guestfish_mode {
  SCRIPT_GUESTFISH_AUTO,   /* only when a script needs it (command, sh; xfs, btrfs, ntfs) */
  SCRIPT_GUESTFISH_NEVER,  /* never: such scripts fail with an error naming the need */
  SCRIPT_GUESTFISH_ALWAYS, /* every session (differential tests, benchmarks) */
};

struct script_opts {
  /* An existing directory, empty at the start: the work directory every step
   * shares, cwd of host commands, where relative local paths of upload,
   * download, copy-in, copy-out, compress-out, tar-in and tar-out point.
   * Local paths never leave it. */
  const char *workdir;
  const struct sandbox_limits *limits; /* host-shell limits; NULL: sandbox_limits_default */
  /* The run's log, in order, as it is produced (volume details, each step's
   * expanded script with password values masked, each command with its
   * output and status, time per step). NULL: discarded. */
  void (*log)(void *opaque, const char *text, size_t len);
  void *log_opaque;
  enum script_guestfish_mode guestfish;
  /* One line describing the volume for the log ("OS volume 42 (20 GiB),
   * clone of golden image RHEL 8"); may be NULL. */
  const char *volume_info;
  /* For guestfish only: a plain raw file holding the disk's bytes, given to
   * guestfish as is. NULL: the disk is served to guestfish over NBD on a
   * private Unix socket for the session's duration. */
  const char *disk_path;
  /* Tests only: run host commands (!, <!, pipes) with this function instead
   * of the sandbox; same contract as sandbox_run. NULL in production. */
  int (*host_run)(void *opaque, const char *script, const void *in, size_t in_len, char **out,
                  size_t *out_len, char **errout, size_t *errout_len, int *status, struct err *e);
  void *host_opaque;
};

struct script_session;

/* A session over `disk` (borrowed; must outlive the session): guestfish's
 * state — the mount table (nothing mounted at first), the work directory and
 * a host-shell sandbox. The disk is /dev/sda; its partitions /dev/sdaN; LVs
 * /dev/VG/LV. Fails (e set) when the work directory is unusable. The sandbox
 * is set up on the first host command, so scripts without one run where
 * bubblewrap is missing. */
int script_session_new(struct fs_disk *disk, const struct script_opts *opts,
                       struct script_session **out, struct err *e);

/* Substitute `values` (attr_substitute) into scripts before they run and
 * mask the values of `secrets` (array of attribute names, e.g. the password
 * attributes of the build plan) wherever they would appear in the log.
 * Both may be NULL; the session keeps references. */
void script_session_set_attributes(struct script_session *s, json_t *values, json_t *secrets);

/* Run one plan script's content (tokens substituted first) as its own unit.
 * Returns 0 when it ran to its end (or to quit/exit), -1 with e set at the
 * first error not prefixed by '-' (e->message names the script and line:
 * "Set hostname:12: mount: /dev/sda9: no such device"). e->code is
 * SCRIPT_FAILED, SCRIPT_UNKNOWN_COMMAND, SCRIPT_SYNTAX, SCRIPT_NEEDS_GUESTFISH
 * or a SANDBOX_* limit. */
int script_session_run(struct script_session *s, const char *name, const char *content, size_t len,
                       struct err *e);

/* One build step of an OS build plan. */
struct script_step {
  const char *serial;  /* buildStep serialNumber ("1".."n"); steps run in its numeric order */
  const char *name;    /* plan script name */
  const char *content; /* plan script content, with its @tokens@ */
};

/* Run a build plan as HPE does: the steps' contents, substituted, are
 * concatenated in serialNumber order and run as one script in this session
 * (a here-document left open swallows the following steps, as it does on
 * HPE). Stops at the first error not prefixed by '-'. Logs each step's
 * expansion, output and time. */
int script_session_run_plan(struct script_session *s, const struct script_step *steps, size_t n,
                            struct err *e);

/* Counters of what ran (for tests, benchmarks and the API's answer). */
struct script_stats {
  int statements;     /* statements run (including generated by <!) */
  int errors_ignored; /* failures of '-' statements */
  int host_commands;  /* !, <! and | shells run */
  int64_t host_ms;    /* wall time spent inside host commands */
  int64_t total_ms;   /* wall time of every run so far */
  int delegated;      /* 1 when guestfish ran this session */
};
void script_session_stats(const struct script_session *s, struct script_stats *out);

/* Unmount everything (writing every change through to the disk) and free
 * the session. Returns 0, or -1 with e set when a filesystem could not be
 * written back (the session is freed either way). */
int script_session_close(struct script_session *s, struct err *e);

#endif
