/* sandbox_int.h — what sandbox.c (bwrap, the command's life) and
 * sandbox_tree.c (walks of the work dir and /tmp, local paths) share. */
#ifndef STREAMER_SANDBOX_INT_H
#define STREAMER_SANDBOX_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"

#define SANDBOX_MAX_DEPTH 64        /* directory nesting the walks follow */
#define SANDBOX_MAX_ENTRIES 1000000 /* entries of the work dir and /tmp together */

/* Is `path` (canonical) `top` or under it? */
bool sandbox_path_under(const char *path, const char *top);

/* Create `dir` (mode 0700) if absent; it must be a directory, not a link. 0 or -1 with e set
 * (500 SANDBOX_UNAVAILABLE). */
int sandbox_ensure_dir(const char *dir, struct err *e);

/* Bytes the trees at the directory fds `fds` use together (n of them; -1 entries skipped):
 * regular files count the larger of their size and their blocks, other entries their blocks,
 * multiply-linked files once. -1 with *why set when a tree is nested deeper than
 * SANDBOX_MAX_DEPTH or holds more than SANDBOX_MAX_ENTRIES entries (over any limit); -2 with
 * *why set on a system error. Safe while a command changes the trees. */
int64_t sandbox_tree_usage(const int *fds, int n, const char **why);

/* lchown every entry of the tree at directory fd `root`, and root itself, to uid:uid (entries
 * deeper than SANDBOX_MAX_DEPTH stay as they are). 0, or -1 with errno set. Only while no
 * sandboxed process runs. */
int sandbox_tree_chown(int root, unsigned uid);

/* Remove the directory `path` and everything below it, however deep. 0 (also when it does not
 * exist), or -1 with e set (500 SANDBOX_CLEANUP_FAILED). */
int sandbox_tree_remove(const char *path, struct err *e);

/* ---- the supervisor (sandbox_super.c) and its protocol ------------------------------------
 * One AF_UNIX stream socket per running sandbox. The supervisor says READY once; then for each
 * command the daemon sends a struct sandbox_req carrying the command's stdin, stdout and stderr
 * (SCM_RIGHTS, in that order) followed by `len` bytes of script, and the supervisor answers
 * DONE with the exit status (128 + signal when killed) once every process of the command is
 * gone. Host byte order: both ends are the same executable. */
#define SANDBOX_SUPER_ARG "--streamer-sandbox-supervisor-v1"
#define SANDBOX_MAX_SCRIPT                                                                         \
  100000 /* bytes of a command (the kernel's limit for one argument is                             \
          * 128 KiB) */
#define SANDBOX_MSG_READY 0x31594452u /* "RDY1" */
#define SANDBOX_MSG_RUN 0x314e5552u   /* "RUN1" */
#define SANDBOX_MSG_DONE 0x31454e44u  /* "DNE1" */

struct sandbox_req {
  uint32_t magic; /* SANDBOX_MSG_RUN */
  uint32_t len;   /* bytes of script that follow */
};
struct sandbox_rep {
  uint32_t magic; /* SANDBOX_MSG_READY or SANDBOX_MSG_DONE */
  int32_t status;
};

/* The supervisor's command line: argv[SUP_ARG_*]. The rlimits are "soft:hard" decimal. */
enum {
  SUP_ARG_MAGIC = 1, /* SANDBOX_SUPER_ARG */
  SUP_ARG_SOCK,      /* its socket's descriptor number */
  SUP_ARG_UID,       /* the sandbox's uid (= gid) */
  SUP_ARG_WORKDIR,   /* cwd of each command */
  SUP_ARG_CPU,       /* RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC of each command */
  SUP_ARG_AS,
  SUP_ARG_FSIZE,
  SUP_ARG_NPROC,
  SUP_ARGC
};

/* Referenced by sandbox.c so that the supervisor (a constructor) is linked into every program
 * that can start a sandbox. Returns 1. */
int sandbox_super_linked(void);

#endif
