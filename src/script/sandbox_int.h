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

#endif
