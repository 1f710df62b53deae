/* sandbox.h — the host shell of plan scripts (`!cmd`, `<!cmd`, `cmd | shell`)
 * run in a bubblewrap sandbox: no network, the host's system directories
 * read-only, the session's work directory and private /tmp the only writable
 * places, an unprivileged uid of its own, rlimits, a wall-clock limit per
 * command and per session, capped output. See src/script/README.md ("Host-shell
 * sandbox") and docs/plan-scripts.md ("The host shell"). */
#ifndef STREAMER_SANDBOX_H
#define STREAMER_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct sandbox_limits {
  int cpu_seconds;        /* RLIMIT_CPU per process (default 60) */
  uint64_t memory_bytes;  /* RLIMIT_AS per process (default 1 GiB) */
  uint64_t file_bytes;    /* RLIMIT_FSIZE (default 4 GiB) */
  int processes;          /* RLIMIT_NPROC of the sandbox's own uid (default 64) */
  int command_wall_ms;    /* wall clock per command (default 120 s) */
  int session_wall_ms;    /* wall clock for all commands of a session (default 15 min) */
  uint64_t output_bytes;  /* stdout or stderr captured per command (default 16 MiB) */
  uint64_t workdir_bytes; /* space the work dir and /tmp may use together (default 8 GiB;
                           * checked every second while a command runs and after it) */
};
void sandbox_limits_default(struct sandbox_limits *l);

struct sandbox;

/* A sandbox for one plan-script session, with `workdir` (an existing
 * directory, absolute or relative, owned by the daemon; it may already hold
 * files) as its writable place, seen inside at the same absolute path, and
 * the session's private /tmp (the directory sandbox_tmpdir(workdir), created
 * if absent). The sandbox gets a uid/gid of its own for its life. Before each
 * command every entry of both directories is handed to that uid (lchown, never
 * following links), so files the daemon wrote there are the script's to
 * change. Fails with 500 SANDBOX_UNAVAILABLE (naming the Debian package
 * bubblewrap, or saying why) when the sandbox cannot be set up: bwrap
 * missing, the daemon not root, a work directory under a system directory.
 * bwrap itself starts at the first sandbox_run, and again after a command
 * stopped at a limit (which ends the sandbox). */
int sandbox_new(const char *workdir, const struct sandbox_limits *lim, struct sandbox **out,
                struct err *e);
/* Ends the sandbox, frees it, releases its uid and removes its /tmp (not the work dir). */
void sandbox_free(struct sandbox *sb);

/* Run `script` with bash -c in the sandbox, cwd = the work dir. stdin_data
 * (may be NULL: /dev/null) is its standard input; the child need not read it.
 * Its stdout goes to *out (malloc'd, NUL-terminated; pass out == NULL to
 * discard it), its stderr to *errout (same). *status = the exit status (128 +
 * signal when killed). Returns 0 if the command ran to an exit status — any
 * status — and -1 with e set when it could not run or was stopped at a limit.
 * Codes, all status 400 but the first:
 *   SANDBOX_UNAVAILABLE (500)  bubblewrap could not set the sandbox up, or the
 *                              sandbox ended while the command ran
 *   SANDBOX_TIMEOUT            command_wall_ms reached
 *   SANDBOX_SESSION_TIMEOUT    session_wall_ms reached (or already used up)
 *   SANDBOX_CPU_LIMIT          a process used cpu_seconds of CPU
 *   SANDBOX_MEMORY_LIMIT       an allocation failed at memory_bytes (non-zero
 *                              exit with an out-of-memory message on stderr)
 *   SANDBOX_PROCESS_LIMIT      fork failed at `processes`
 *   SANDBOX_OUTPUT_LIMIT       stdout or stderr passed output_bytes
 *   SANDBOX_DISK_LIMIT         a file passed file_bytes, or the work dir and
 *                              /tmp together passed workdir_bytes
 *   SANDBOX_COMMAND_TOO_LONG   the command line is over 100,000 bytes
 * The message says which limit and its value. On every return *out and
 * *errout are NULL or malloc'd (what was captured until the stop) and the
 * caller frees them; *status is the status, or -1 when there was none.
 * One command at a time per sandbox; different sandboxes run in parallel from
 * any threads (a sandbox dies with the thread that started it — PDEATHSIG —
 * and the next command then starts a new one). When it returns, every
 * process the command started is gone. */
int sandbox_run(struct sandbox *sb, const char *script, const void *stdin_data, size_t stdin_len,
                char **out, size_t *out_len, char **errout, size_t *errout_len, int *status,
                struct err *e);

/* How many times this sandbox object has started bwrap: 1 after the first command, one more
 * after each command stopped at a limit (the sandbox ends with such a command) or after the
 * sandbox ended between commands. */
unsigned sandbox_starts(const struct sandbox *sb);

/* Is the sandbox usable on this machine? 1, or 0 with the reason in why
 * (runs a sandboxed `true` in a throwaway work dir). */
int sandbox_available(char *why, size_t n);

/* ---- local paths --------------------------------------------------------
 * Local paths of plan scripts (upload's source, download's target, copy-in,
 * copy-out, compress-out...) name what the sandboxed shell sees: a relative
 * path or one under the work dir's absolute path is in the work dir; /tmp and
 * paths under it are in the session's private /tmp (HPE's Windows scripts do
 * `download /ISdeploy/Unattend.xml /tmp/Unattend.xml`, `!unix2dos
 * /tmp/Unattend.xml`, `upload /tmp/Unattend.xml ...`). Nothing else is
 * reachable. Both directories hold whatever earlier host commands left, so
 * symlinks may point anywhere and FIFOs may block: open only through
 * sandbox_open_local, or below its directory fds with openat2(...,
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), and check fstat before reading. */

/* The session's private /tmp for `workdir`: "<workdir>.tmp" (malloc'd, not
 * created). NULL when out of memory. */
char *sandbox_tmpdir(const char *workdir);

/* Open local `path` as the sandboxed shell would name it, with open(2)
 * `flags` (O_CLOEXEC is added; O_CREAT uses `mode`), resolved beneath the work
 * dir or the private /tmp (created when needed) without leaving it: a `..` or
 * a symlink that leads outside fails, as does any other absolute path (400
 * SANDBOX_PATH_OUTSIDE). Non-blocking opens of FIFOs are the caller's choice
 * (add O_NONBLOCK). Returns the fd, or -1 with e set (400 SANDBOX_PATH_OUTSIDE,
 * or 400 LOCAL_FILE_ERROR with the errno text, e.g. "No such file or
 * directory"). Needs no sandbox object: the interpreter may use it before its
 * first host command. */
int sandbox_open_local(const char *workdir, const char *path, int flags, unsigned mode,
                       struct err *e);

/* Remove `workdir`'s private /tmp and everything in it (never following
 * links). For sessions that used /tmp paths without ever creating a sandbox;
 * sandbox_free does it otherwise. 0, or -1 with e set. */
int sandbox_cleanup(const char *workdir, struct err *e);

#endif
