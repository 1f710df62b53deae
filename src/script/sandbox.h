/* sandbox.h — the host shell of plan scripts (`!cmd`, `<!cmd`, `cmd | shell`)
 * run in a bubblewrap sandbox: no network, the host's system directories
 * read-only, the session's work directory the only writable place, an
 * unprivileged uid, rlimits, a wall-clock limit per command and per session,
 * capped output. See src/script/README.md and docs/plan-scripts.md. */
#ifndef STREAMER_SANDBOX_H
#define STREAMER_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct sandbox_limits {
  int cpu_seconds;         /* RLIMIT_CPU per command (default 60) */
  uint64_t memory_bytes;   /* RLIMIT_AS per command (default 1 GiB) */
  uint64_t file_bytes;     /* RLIMIT_FSIZE (default 4 GiB) */
  int processes;           /* RLIMIT_NPROC-like cap (default 64) */
  int command_wall_ms;     /* wall clock per command (default 120 s) */
  int session_wall_ms;     /* wall clock for all commands of a session (default 15 min) */
  uint64_t output_bytes;   /* stdout or stderr captured per command (default 16 MiB) */
  uint64_t workdir_bytes;  /* space the work dir may use (default 8 GiB; checked after each command) */
};
void sandbox_limits_default(struct sandbox_limits *l);

struct sandbox;

/* A sandbox for one plan-script session, with `workdir` (an existing,
 * empty directory owned by the daemon) as the only writable place. Fails
 * (500 SANDBOX_UNAVAILABLE, naming the Debian package bubblewrap) when the
 * sandbox cannot be set up. */
int sandbox_new(const char *workdir, const struct sandbox_limits *lim, struct sandbox **out,
                struct err *e);
void sandbox_free(struct sandbox *sb);

/* Run `script` with bash -c in the sandbox, cwd = the work dir. stdin_data
 * (may be NULL) is its standard input. Its stdout goes to *out (malloc'd,
 * NUL-terminated; pass out == NULL to discard it), its stderr to *errout
 * (same). *status = the exit status (128 + signal when killed). Returns 0 if
 * the command ran to an exit status — any status — and -1 with e set when it
 * could not run or was stopped at a limit (e->code SANDBOX_TIMEOUT,
 * SANDBOX_CPU_LIMIT, SANDBOX_MEMORY_LIMIT, SANDBOX_OUTPUT_LIMIT,
 * SANDBOX_SESSION_TIMEOUT, SANDBOX_DISK_LIMIT; the message says which limit
 * and its value). */
int sandbox_run(struct sandbox *sb, const char *script, const void *stdin_data, size_t stdin_len,
                char **out, size_t *out_len, char **errout, size_t *errout_len, int *status,
                struct err *e);

/* Is the sandbox usable on this machine? 1, or 0 with the reason in why. */
int sandbox_available(char *why, size_t n);

#endif
