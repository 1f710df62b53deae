/* session.c — a plan-script session: guestfish's state over one disk (the
 * mount table), the work directory, the sandboxed host shell and the log;
 * the statement loop with guestfish's error rules ('-', <! nesting, pipes);
 * build plans run as one concatenated script with per-step logs. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/fs.h"
#include "script/attr.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "script/script_int.h"

#define MAX_INLINE_DEPTH 10
#define MASK "********"

/* ======================================================================= */
/* the log                                                                  */
/* ======================================================================= */

/* Copy text with every secret value replaced by MASK. */
static char *mask_text(struct script_session *s, const char *text, size_t len, size_t *out_len) {
  struct sbuf b = {0};
  size_t i = 0;
  while (i < len) {
    size_t hit = 0;
    for (size_t m = 0; m < s->nmasks && !hit; m++) {
      size_t ml = strlen(s->masks[m]);
      if (ml && ml <= len - i && memcmp(text + i, s->masks[m], ml) == 0) hit = ml;
    }
    if (hit) {
      if (sbuf_adds(&b, MASK)) goto oom;
      i += hit;
    } else {
      if (sbuf_addc(&b, text[i])) goto oom;
      i++;
    }
  }
  if (!b.p && sbuf_add(&b, "", 0)) goto oom;
  *out_len = b.len;
  return b.p;
oom:
  sbuf_free(&b);
  return NULL;
}

void slog_raw(struct script_session *s, const char *text, size_t len) {
  if (!s->log || !len) return;
  if (!s->nmasks) {
    s->log(s->log_opaque, text, len);
    return;
  }
  size_t ml;
  char *m = mask_text(s, text, len, &ml);
  if (m) s->log(s->log_opaque, m, ml);
  free(m);
}

void slog(struct script_session *s, const char *fmt, ...) {
  if (!s->log) return;
  va_list ap;
  va_start(ap, fmt);
  char *t = NULL;
  int n = vasprintf(&t, fmt, ap);
  va_end(ap);
  if (n >= 0) slog_raw(s, t, (size_t)n);
  free(t);
}

/* Log a command's output, ending it with a newline. */
static void slog_output(struct script_session *s, const char *p, size_t n) {
  if (!n) return;
  slog_raw(s, p, n);
  if (p[n - 1] != '\n') slog_raw(s, "\n", 1);
}

/* ======================================================================= */
/* guest paths                                                              */
/* ======================================================================= */

char *gpath_normalize(const char *cmd, const char *path, struct err *e) {
  if (!path || path[0] != '/') {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: path must start with a / character", cmd,
            path ? path : "");
    return NULL;
  }
  size_t n = strlen(path);
  char *out = malloc(n + 2);
  if (!out) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  size_t o = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p) break;
    const char *q = strchr(p, '/');
    size_t cl = q ? (size_t)(q - p) : strlen(p);
    if (cl == 1 && p[0] == '.') {
      /* nothing */
    } else if (cl == 2 && p[0] == '.' && p[1] == '.') {
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0) o--; /* the slash before it */
    } else {
      out[o++] = '/';
      memcpy(out + o, p, cl);
      o += cl;
    }
    p += cl;
  }
  if (o == 0) out[o++] = '/';
  out[o] = 0;
  return out;
}

/* Is mount path m a prefix of full on a component boundary? */
static int under(const char *m, const char *full) {
  if (strcmp(m, "/") == 0) return 1;
  size_t ml = strlen(m);
  return strncmp(full, m, ml) == 0 && (full[ml] == 0 || full[ml] == '/');
}

int gpath_resolve(struct script_session *s, const char *cmd, const char *path, struct gpath *g,
                  struct err *e) {
  memset(g, 0, sizeof *g);
  if (!(g->full = gpath_normalize(cmd, path, e))) return -1;
  const struct mountent *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < s->nmounts; i++) { /* the latest of equal length wins */
    const struct mountent *m = &s->mounts[i];
    size_t l = strlen(m->path);
    if (under(m->path, g->full) && (!best || l >= best_len)) {
      best = m;
      best_len = l;
    }
  }
  if (!best) {
    err_set(e, 400, SCRIPT_E_FAILED,
            "%s: %s: you must call 'mount' first to mount the root filesystem", cmd, g->full);
    gpath_free(g);
    return -1;
  }
  g->fs = best->ref->fs;
  g->ro = best->ro || !best->ref->rw;
  g->is_mountpoint = strcmp(best->path, g->full) == 0;
  const char *rest = strcmp(best->path, "/") == 0 ? g->full : g->full + best_len;
  g->inner = strdup(*rest ? rest : "/");
  if (!g->inner) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    gpath_free(g);
    return -1;
  }
  return 0;
}

void gpath_free(struct gpath *g) {
  free(g->inner);
  free(g->full);
  g->inner = g->full = NULL;
}

int gpath_has_submount(struct script_session *s, const char *full) {
  for (size_t i = 0; i < s->nmounts; i++)
    if (strcmp(s->mounts[i].path, full) != 0 && under(full, s->mounts[i].path)) return 1;
  return 0;
}

static const char *fs_reason(const struct err *fe) {
  static const struct {
    const char *code, *text;
  } map[] = {
      {FS_ENOENT, "No such file or directory"}, {FS_EEXIST, "File exists"},
      {FS_ENOTDIR, "Not a directory"},          {FS_EISDIR, "Is a directory"},
      {FS_ENOTEMPTY, "Directory not empty"},    {FS_ENOSPC, "No space left on device"},
      {FS_EROFS, "Read-only file system"},      {FS_ELOOP, "Too many levels of symbolic links"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(fe->code, map[i].code) == 0) return map[i].text;
  return NULL;
}

void gpath_error(struct err *e, const char *cmd, const char *path, const struct err *fe) {
  const char *r = fs_reason(fe);
  int status = fe->status >= 500 ? 500 : 400;
  if (r)
    err_set(e, status, SCRIPT_E_FAILED, "%s: %s: %s", cmd, path, r);
  else /* corruption, I/O, what the format cannot do: the filesystem's own words */
    err_set(e, status, SCRIPT_E_FAILED, "%s: %s: %s", cmd, path, fe->message);
}

int gpath_check_writable(const struct gpath *g, const char *cmd, struct err *e) {
  if (!g->ro) return 0;
  err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: Read-only file system", cmd, g->full);
  return -1;
}

/* ======================================================================= */
/* local paths: beneath the work directory                                   */
/* ======================================================================= */

/* Open local `path` as the sandboxed shell names it (sandbox_open_local: the
 * work dir, or the session's private /tmp), never blocking on a FIFO a host
 * command left there: regular files and directories only. */
int local_open(struct script_session *s, const char *cmd, const char *path, int flags, int mode,
               struct err *e) {
  struct err le;
  err_init(&le);
  if (!*path) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: empty local file name", cmd);
    return -1;
  }
  int fd = sandbox_open_local(s->workdir, path, flags | O_NONBLOCK | O_NOCTTY, (unsigned)mode, &le);
  if (fd < 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", cmd, le.message);
    err_clear(&le);
    return -1;
  }
  struct stat st;
  int want_dir = (flags & O_DIRECTORY) != 0;
  if (fstat(fd, &st) ||
      (want_dir ? !S_ISDIR(st.st_mode) : !(flags & O_PATH) && !S_ISREG(st.st_mode))) {
    int isdir = S_ISDIR(st.st_mode);
    close(fd);
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, path,
            want_dir ? "Not a directory"
            : isdir  ? "Is a directory"
                     : "not a regular file");
    return -1;
  }
  if (!(flags & O_PATH)) (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

/* Split a local path into its parent (opened as a directory) and its last
 * component; *name is malloc'd. "x/" names x. */
int local_parent(struct script_session *s, const char *cmd, const char *path, char **name,
                 struct err *e) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  size_t b = n;
  while (b > 0 && path[b - 1] != '/')
    b--;
  *name = NULL;
  char *parent = b == 0 ? strdup(".") : b == 1 ? strdup("/") : strndup(path, b - 1);
  char *nm = parent ? strndup(path + b, n - b) : NULL;
  int dfd = -1;
  if (!nm)
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  else if (!*nm || strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: not a file name", cmd, path);
  else
    dfd = local_open(s, cmd, parent, O_RDONLY | O_DIRECTORY, 0, e);
  free(parent);
  if (dfd < 0)
    free(nm);
  else
    *name = nm;
  return dfd;
}

int local_mkdir(struct script_session *s, const char *cmd, const char *path, int mode,
                struct err *e) {
  char *name = NULL;
  int dfd = local_parent(s, cmd, path, &name, e);
  if (dfd < 0) return -1;
  int r = mkdirat(dfd, name, (mode_t)mode);
  int er = errno;
  close(dfd);
  free(name);
  if (r) err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, path, strerror(er));
  return r ? -1 : 0;
}

/* ======================================================================= */
/* host commands                                                            */
/* ======================================================================= */

int host_run(struct script_session *s, const char *script, const void *in, size_t in_len,
             char **out, size_t *out_len, char **errout, size_t *errout_len, int *status,
             struct err *e) {
  int64_t t0 = util_mono_ms();
  int r;
  s->stats.host_commands++;
  if (s->host_run) {
    r = s->host_run(s->host_opaque, script, in, in_len, out, out_len, errout, errout_len, status,
                    e);
  } else {
    if (!s->sb && sandbox_new(s->workdir, s->limits, &s->sb, e)) return -1;
    r = sandbox_run(s->sb, script, in, in_len, out, out_len, errout, errout_len, status, e);
  }
  s->stats.host_ms += util_mono_ms() - t0;
  return r;
}

/* ======================================================================= */
/* sessions                                                                 */
/* ======================================================================= */

int script_session_new(struct fs_disk *disk, const struct script_opts *o,
                       struct script_session **out, struct err *e) {
  *out = NULL;
  if (!o || !o->workdir || !*o->workdir) {
    err_set(e, 400, SCRIPT_E_FAILED, "a plan-script session needs a work directory");
    return -1;
  }
  struct script_session *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->wfd = -1;
  s->disk = disk;
  if (!(s->workdir = realpath(o->workdir, NULL))) {
    err_set(e, 400, SCRIPT_E_FAILED, "work directory %s: %s", o->workdir, strerror(errno));
    goto fail;
  }
  s->wfd = open(s->workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (s->wfd < 0) {
    err_set(e, 400, SCRIPT_E_FAILED, "work directory %s: %s", s->workdir, strerror(errno));
    goto fail;
  }
  if (!(s->limits = malloc(sizeof *s->limits))) goto oom;
  if (o->limits)
    *s->limits = *o->limits;
  else
    sandbox_limits_default(s->limits);
  s->log = o->log;
  s->log_opaque = o->log_opaque;
  s->gmode = o->guestfish;
  s->host_run = o->host_run;
  s->host_opaque = o->host_opaque;
  if (o->volume_info && !(s->volume_info = strdup(o->volume_info))) goto oom;
  if (o->disk_path && !(s->disk_path = strdup(o->disk_path))) goto oom;
  *out = s;
  return 0;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
fail:
  if (s) {
    if (s->wfd >= 0) close(s->wfd);
    free(s->workdir);
    free(s->limits);
    free(s->volume_info);
    free(s);
  }
  return -1;
}

static void free_masks(struct script_session *s) {
  for (size_t i = 0; i < s->nmasks; i++)
    free(s->masks[i]);
  free(s->masks);
  s->masks = NULL;
  s->nmasks = 0;
}

void script_session_set_attributes(struct script_session *s, json_t *values, json_t *secrets) {
  json_decref(s->values);
  s->values = json_incref(values);
  free_masks(s);
  size_t i;
  json_t *name;
  json_array_foreach(secrets, i, name) {
    const char *v = json_string_value(json_object_get(values, json_string_value(name)));
    if (!v || !*v) continue;
    char **nm = realloc(s->masks, (s->nmasks + 1) * sizeof *nm);
    if (!nm) continue;
    s->masks = nm;
    if ((s->masks[s->nmasks] = strdup(v))) s->nmasks++;
  }
}

void script_session_stats(const struct script_session *s, struct script_stats *out) {
  *out = s->stats;
}

int script_session_close(struct script_session *s, struct err *e) {
  if (!s) return 0;
  int r = 0;
  struct err e2;
  err_init(&e2);
  if (s->gf && gf_stop(s, &e2)) {
    r = -1;
    *e = e2;
    err_init(&e2);
  }
  if (umount_all(s, &e2) && r == 0) {
    r = -1;
    *e = e2;
  } else {
    err_clear(&e2);
  }
  free(s->mounts);
  if (s->sb) {
    sandbox_free(s->sb); /* removes the private /tmp too */
  } else {
    err_init(&e2);
    if (sandbox_cleanup(s->workdir, &e2)) log_warn("script", "%s", e2.message);
    err_clear(&e2);
  }
  if (s->wfd >= 0) close(s->wfd);
  json_decref(s->values);
  free_masks(s);
  free(s->workdir);
  free(s->limits);
  free(s->volume_info);
  free(s->disk_path);
  free(s);
  return r;
}

/* ======================================================================= */
/* running statements                                                       */
/* ======================================================================= */

/* Where a statement comes from, for the log and messages. */
struct where {
  const char *name;   /* script (or build step) name */
  int line_base;      /* subtract from stmt lines (build plans: the step's first line - 1) */
  const char *prefix; /* "" or "12<" for lines of <! output */
};

static void fmt_line(char *buf, size_t n, const struct where *w, int line) {
  snprintf(buf, n, "%s%d", w->prefix, line - w->line_base);
}

static int run_statements(struct script_session *s, struct script *sc, const struct where *w,
                          int inherited_ignore, int (*before)(void *, size_t), void *before_arg,
                          struct err *e);

/* Run a COMMAND statement's command, its output into out. */
static int run_command(struct script_session *s, const struct script_stmt *st, struct sbuf *out,
                       struct err *e) {
  if (!st->def) {
    err_set(e, 400, SCRIPT_E_UNKNOWN, "%s: unknown command", st->cmd);
    return -1;
  }
  const struct script_cmd *d = st->def;
  if (st->argc < d->min_args || (d->max_args >= 0 && st->argc > d->max_args)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: incorrect number of arguments; usage: %s", d->name,
            d->synopsis);
    return -1;
  }
  /* with guestfish, only echo and quit stay here (glob and version go too) */
  if (s->gf && strcmp(d->name, "echo") != 0 && strcmp(d->name, "quit") != 0 &&
      strcmp(d->name, "exit") != 0 && strcmp(d->name, "q") != 0)
    return gf_command(s, st, st->argc, st->argv, out, e);
  if (d->cls == SCRIPT_CMD_GUEST) {
    err_set(e, 422, SCRIPT_E_GUESTFISH,
            "%s: runs a program of the guest, which needs guestfish (Debian package "
            "libguestfs-tools)",
            d->name);
    return -1;
  }
  script_cmd_fn fn = script_cmd_handler(d);
  if (!fn) {
    err_set(e, 500, SCRIPT_E_FAILED, "%s: not implemented", d->name);
    return -1;
  }
  return fn(s, st, st->argc, st->argv, out, e);
}

int cmd_run_named(struct script_session *s, const struct script_stmt *st, const char *name,
                  int argc, char **argv, struct sbuf *out, struct err *e) {
  struct script_stmt tmp = *st;
  tmp.cmd = (char *)name;
  tmp.def = script_cmd_find(name);
  tmp.argc = argc;
  tmp.argv = argv;
  tmp.heredoc_arg = -1;
  tmp.heredoc = NULL;
  tmp.pipe = NULL;
  return run_command(s, &tmp, out, e);
}

/* Log a shell command's captured output. */
static void log_streams(struct script_session *s, const char *o, size_t ol, const char *er,
                        size_t el) {
  slog_output(s, o, ol);
  slog_output(s, er, el);
}

/* Run one statement; 0 or -1 (e set). */
static int run_one(struct script_session *s, const struct script_stmt *st, const struct where *w,
                   int ignore, struct err *e) {
  char ln[48];
  fmt_line(ln, sizeof ln, w, st->line);
  s->stats.statements++;
  if (st->kind == SCRIPT_COMMAND && st->heredoc)
    slog(s, "[%s] %s\t(here-document: %zu bytes)\n", ln, st->text, st->heredoc_len);
  else
    slog(s, "[%s] %s\n", ln, st->text);
  if (st->error) {
    err_set(e, 400, SCRIPT_E_SYNTAX, "%s", st->error);
    return -1;
  }
  if (st->kind == SCRIPT_SHELL) {
    CLEANUP_FREE char *o = NULL, *er = NULL;
    size_t ol = 0, el = 0;
    int status = 0;
    if (host_run(s, st->shell, NULL, 0, &o, &ol, &er, &el, &status, e)) return -1;
    log_streams(s, o, ol, er, el);
    slog(s, "[%s] exit status %d\n", ln, status);
    if (status != 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "host command exited with status %d", status);
      return -1;
    }
    return 0;
  }
  if (st->kind == SCRIPT_INLINE) {
    if (s->depth >= MAX_INLINE_DEPTH) {
      err_set(e, 400, SCRIPT_E_FAILED, "<! nested more than %d levels deep", MAX_INLINE_DEPTH);
      return -1;
    }
    CLEANUP_FREE char *o = NULL, *er = NULL;
    size_t ol = 0, el = 0;
    int status = 0;
    if (host_run(s, st->shell, NULL, 0, &o, &ol, &er, &el, &status, e)) return -1;
    slog_output(s, er, el);
    struct script *gen;
    if (script_parse(o ? o : "", ol, w->name, &gen)) {
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      return -1;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s<", ln);
    struct where gw = {w->name, 0, prefix};
    s->depth++;
    int r = run_statements(s, gen, &gw, ignore, NULL, NULL, e);
    s->depth--;
    script_free(gen);
    if (r) return -1; /* a fatal failure inside: the run stops */
    if (status != 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "host command of <! exited with status %d", status);
      return -1;
    }
    return 0;
  }
  /* a command, maybe piped into a host shell */
  struct sbuf out = {0};
  int r = run_command(s, st, &out, e);
  if (!st->pipe) {
    slog_output(s, out.p, out.len);
  } else {
    /* guestfish starts the pipe's shell before the command and feeds it
     * whatever the command printed (nothing when it failed); the shell's
     * exit status is not looked at */
    CLEANUP_FREE char *o = NULL, *er = NULL;
    size_t ol = 0, el = 0;
    int status = 0;
    struct err pe;
    err_init(&pe);
    if (host_run(s, st->pipe, out.p, out.len, &o, &ol, &er, &el, &status, &pe)) {
      if (r == 0) {
        *e = pe;
        r = -1;
      } else {
        err_clear(&pe);
      }
    } else {
      log_streams(s, o, ol, er, el);
    }
  }
  sbuf_free(&out);
  return r;
}

/* Run the statements of sc in order. inherited_ignore: the <! line that
 * produced them had '-'. `before` (may be NULL) is called before statement
 * i (build plans log step boundaries there). Returns 0, or -1 when a failure
 * that is not ignored stops the run (e set). */
static int run_statements(struct script_session *s, struct script *sc, const struct where *w,
                          int inherited_ignore, int (*before)(void *, size_t), void *before_arg,
                          struct err *e) {
  for (size_t i = 0; i < sc->n && !s->quit; i++) {
    const struct script_stmt *st = &sc->stmts[i];
    if (before && before(before_arg, i)) continue;
    const struct where *wl = w;
    int ignore = inherited_ignore || st->ignore_errors;
    struct err se;
    err_init(&se);
    if (run_one(s, st, wl, ignore, &se) == 0) continue;
    char ln[48];
    fmt_line(ln, sizeof ln, wl, st->line);
    /* a failure inside <! output was logged and placed where it happened */
    int inner = strncmp(se.details, "at ", 3) == 0;
    if (!inner) slog(s, "%s\n", se.message);
    if (ignore && strcmp(se.code, SCRIPT_E_GUESTFISH) != 0 && se.status != 500 &&
        strncmp(se.code, "SANDBOX_", 8) != 0) {
      s->stats.errors_ignored++;
      slog(s, "[%s] error ignored ('-' prefix)\n", ln);
      err_clear(&se);
      continue;
    }
    *e = se;
    if (!inner) {
      slog(s, "[%s] error: the script stops here\n", ln);
      char *msg = util_strdup_printf("%s:%s: %s", w->name, ln, se.message);
      if (msg) {
        size_t ml = strlen(msg);
        if (ml >= sizeof e->message) ml = sizeof e->message - 1;
        memcpy(e->message, msg, ml);
        e->message[ml] = 0;
        free(msg);
      }
      err_details(e, "at %s line %s", w->name, ln);
    }
    return -1;
  }
  return 0;
}

/* ---- guestfish needs (checked before a run starts) -------------------------- */

/* Why does this script need guestfish? NULL if it does not. Only what is
 * visible before running: guest-program commands and mounts of filesystems
 * Streamer cannot open (lines produced by <! are checked when they run). */
static char *needs_guestfish(struct script_session *s, const struct script *sc) {
  for (size_t i = 0; i < sc->n; i++) {
    const struct script_stmt *st = &sc->stmts[i];
    if (st->kind != SCRIPT_COMMAND || !st->def || st->error) continue;
    if (st->def->cls == SCRIPT_CMD_GUEST)
      return util_strdup_printf("%s:%d: %s runs a program of the guest", sc->name, st->line,
                                st->def->name);
    if ((strcmp(st->def->name, "mount") == 0 || strcmp(st->def->name, "mount-ro") == 0) &&
        st->argc == 2 && s->disk) {
      struct err de;
      err_init(&de);
      struct vol *v = fs_device(s->disk, st->argv[0], &de);
      err_clear(&de);
      if (!v) continue;
      const char *t = fs_probe(v);
      if (strcmp(t, "xfs") == 0 || strcmp(t, "btrfs") == 0 || strcmp(t, "ntfs") == 0)
        return util_strdup_printf("%s:%d: %s holds %s, which Streamer does not edit natively",
                                  sc->name, st->line, st->argv[0], t);
    }
  }
  return NULL;
}

static int prepare_backend(struct script_session *s, const struct script *sc, struct err *e) {
  if (s->gf) return 0;
  CLEANUP_FREE char *why = s->gmode == SCRIPT_GUESTFISH_ALWAYS
                               ? strdup("guestfish was asked for every session")
                               : needs_guestfish(s, sc);
  if (!why) return 0;
  char na[256];
  if (s->gmode == SCRIPT_GUESTFISH_NEVER) {
    err_set(e, 422, SCRIPT_E_GUESTFISH,
            "%s: this needs guestfish (Debian package libguestfs-tools), which this server does "
            "not use",
            why);
    return -1;
  }
  if (!gf_available(na, sizeof na)) {
    err_set(e, 422, SCRIPT_E_GUESTFISH,
            "%s: this needs guestfish (Debian package libguestfs-tools): %s", why, na);
    return -1;
  }
  slog(s, "== %s: the session is handed to guestfish\n", why);
  return gf_start(s, e);
}

/* ---- the log's head ------------------------------------------------------------ */

static void log_header(struct script_session *s) {
  if (s->header_logged) return;
  s->header_logged = 1;
  slog(s, "== Streamer plan-script engine (guestfish 1.48 dialect)\n");
  if (s->volume_info) slog(s, "== Volume: %s\n", s->volume_info);
  if (!s->disk) return;
  struct err de;
  err_init(&de);
  struct vol *whole = fs_device(s->disk, "/dev/sda", &de);
  err_clear(&de);
  if (whole)
    slog(s, "== Disk /dev/sda: %llu bytes%s\n", (unsigned long long)vol_size(whole),
         fs_disk_read_only(s->disk) ? " (read-only)" : "");
  char **devs = NULL, **types = NULL;
  int n = fs_list_filesystems(s->disk, &devs, &types);
  for (int i = 0; i < n; i++)
    slog(s, "==   %s: %s\n", devs[i], types[i]);
  fs_strv_free(devs);
  fs_strv_free(types);
  const char *const *warn = fs_disk_warnings(s->disk);
  for (int i = 0; warn && warn[i]; i++)
    slog(s, "== warning: %s\n", warn[i]);
}

/* Substitute the session's attribute values (none: tokens become their
 * defaults or "", as on HPE). masked = the same with secrets hidden. */
static char *expand(struct script_session *s, const char *content, size_t len) {
  char *c = strndup(content, len);
  json_t *empty = s->values ? NULL : json_object();
  char *r = c && (s->values || empty) ? attr_substitute(c, s->values ? s->values : empty) : NULL;
  json_decref(empty);
  free(c);
  return r;
}

int script_session_run(struct script_session *s, const char *name, const char *content, size_t len,
                       struct err *e) {
  int64_t t0 = util_mono_ms();
  s->quit = 0;
  log_header(s);
  CLEANUP_FREE char *text = expand(s, content, len);
  struct script *sc = NULL;
  if (!text || script_parse(text, strlen(text), name ? name : "script", &sc)) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  slog(s, "== Plan script \"%s\"\n-- expansion\n", sc->name);
  slog_output(s, text, strlen(text));
  slog(s, "-- output\n");
  int r = prepare_backend(s, sc, e);
  struct where w = {sc->name, 0, ""};
  if (r == 0) r = run_statements(s, sc, &w, 0, NULL, NULL, e);
  int64_t ms = util_mono_ms() - t0;
  s->stats.total_ms += ms;
  if (r == 0)
    slog(s, "== \"%s\" succeeded in %lld ms\n", sc->name, (long long)ms);
  else
    slog(s, "== \"%s\" FAILED after %lld ms: %s\n", sc->name, (long long)ms, e->message);
  script_free(sc);
  return r;
}

/* ---- build plans ----------------------------------------------------------------- */

struct plan_step {
  const struct script_step *step;
  char *text;     /* expanded */
  int first_line; /* in the concatenation */
  int lines;
};

struct plan_run {
  struct script_session *s;
  struct script *sc;
  struct plan_step *steps;
  size_t n;
  size_t cur; /* index of the step being run + 1 (0 = none yet) */
  int64_t step_t0;
  int step_stmts0, step_ignored0;
  struct where where;
  char name_buf[512];
};

static long serial_num(const char *s) {
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  return s && *s && !*end ? v : 0;
}

static int cmp_steps(const void *a, const void *b) {
  const struct plan_step *x = a, *y = b;
  long sx = serial_num(x->step->serial), sy = serial_num(y->step->serial);
  if (sx != sy) return sx < sy ? -1 : 1;
  return x < y ? -1 : x > y; /* stable for equal serials */
}

static void step_end(struct plan_run *p) {
  if (!p->cur) return;
  struct script_session *s = p->s;
  slog(s, "-- step %zu done: %d statements, %d errors ignored, %lld ms\n", p->cur,
       s->stats.statements - p->step_stmts0, s->stats.errors_ignored - p->step_ignored0,
       (long long)(util_mono_ms() - p->step_t0));
}

static void step_begin(struct plan_run *p, size_t k) {
  struct script_session *s = p->s;
  struct plan_step *ps = &p->steps[k];
  slog(s, "== Build step %zu of %zu: \"%s\" (serialNumber %s)\n-- plan script expansion\n", k + 1,
       p->n, ps->step->name ? ps->step->name : "", ps->step->serial ? ps->step->serial : "?");
  slog_output(s, ps->text, strlen(ps->text));
  slog(s, "-- plan script output\n");
  p->cur = k + 1;
  p->step_t0 = util_mono_ms();
  p->step_stmts0 = s->stats.statements;
  p->step_ignored0 = s->stats.errors_ignored;
  snprintf(p->name_buf, sizeof p->name_buf, "%s", ps->step->name ? ps->step->name : "step");
  p->where.name = p->name_buf;
  p->where.line_base = ps->first_line - 1;
}

/* Before statement i: open the step it starts in (and any step a
 * here-document swallowed on the way). */
static int plan_before(void *arg, size_t i) {
  struct plan_run *p = arg;
  int line = p->sc->stmts[i].line;
  while (p->cur < p->n && line >= p->steps[p->cur].first_line) {
    step_end(p);
    step_begin(p, p->cur);
  }
  return 0;
}

int script_session_run_plan(struct script_session *s, const struct script_step *steps, size_t n,
                            struct err *e) {
  int64_t t0 = util_mono_ms();
  struct plan_run p;
  memset(&p, 0, sizeof p);
  p.s = s;
  s->quit = 0;
  log_header(s);
  int r = -1;
  struct sbuf all = {0};
  if (!(p.steps = calloc(n ? n : 1, sizeof *p.steps))) goto oom;
  p.n = n;
  for (size_t i = 0; i < n; i++) {
    p.steps[i].step = &steps[i];
    const char *c = steps[i].content ? steps[i].content : "";
    if (!(p.steps[i].text = expand(s, c, strlen(c)))) goto oom;
  }
  qsort(p.steps, n, sizeof *p.steps, cmp_steps);
  /* concatenate, each step starting on a new line */
  int line = 1;
  for (size_t i = 0; i < n; i++) {
    const char *t = p.steps[i].text;
    size_t tl = strlen(t);
    p.steps[i].first_line = line;
    for (size_t k = 0; k < tl; k++)
      line += t[k] == '\n';
    if (sbuf_add(&all, t, tl)) goto oom;
    if (tl && t[tl - 1] != '\n') {
      if (sbuf_addc(&all, '\n')) goto oom;
      line++;
    }
  }
  if (script_parse(all.p ? all.p : "", all.len, "build plan", &p.sc)) goto oom;
  p.where.name = "build plan";
  p.where.prefix = "";
  r = prepare_backend(s, p.sc, e);
  if (r == 0) r = run_statements(s, p.sc, &p.where, 0, plan_before, &p, e);
  if (r == 0) /* steps with no statement left at the end still get their section */
    while (p.cur < p.n) {
      step_end(&p);
      step_begin(&p, p.cur);
    }
  step_end(&p);
  int64_t ms = util_mono_ms() - t0;
  s->stats.total_ms += ms;
  if (r == 0)
    slog(s, "== Build plan succeeded: %zu steps in %lld ms (host commands %lld ms)\n", n,
         (long long)ms, (long long)s->stats.host_ms);
  else
    slog(s, "== Build plan FAILED at step %zu after %lld ms: %s\n", p.cur, (long long)ms,
         e->message);
  goto out;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  r = -1;
out:
  sbuf_free(&all);
  script_free(p.sc);
  for (size_t i = 0; p.steps && i < n; i++)
    free(p.steps[i].text);
  free(p.steps);
  return r;
}
