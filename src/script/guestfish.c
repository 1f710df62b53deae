/* guestfish.c — handing a session to real guestfish (Debian
 * libguestfs-tools) for what Streamer cannot do natively: programs of the
 * guest (command, sh, ...) and filesystems it does not edit (xfs, btrfs,
 * ntfs).
 *
 * How: one `guestfish --listen` server per session (its qemu appliance
 * boots once, with LIBGUESTFS_BACKEND=direct and
 * LIBGUESTFS_BACKEND_SETTINGS=force_tcg: KVM is not usable on these
 * machines), driven through guestfish's own remote-control protocol (XDR on
 * /tmp/.guestfish-UID/socket-PID: hello {version}, call {cmd, args,
 * exit_on_error}, reply {r}; our stdout descriptor passed with SCM_RIGHTS).
 * Streamer's interpreter keeps the script: line rules, '-', <!, pipes, the
 * host shell in its sandbox and the log stay ours; each guest command goes
 * to the server. The disk is the plain file opts.disk_path when there is
 * one, else the session's disk served over NBD on a private Unix socket
 * (nbd.c). Local files never reach guestfish directly: uploads are staged
 * from the work directory (sandbox_open_local rules) into a private
 * directory, downloads land there and are copied into the work directory.
 * The server runs below a subreaper child of ours, so every process is
 * reaped and nothing outlives the session. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "script/script_int.h"

struct nbd_server;
int nbd_start(struct vol *vol, const char *path, struct nbd_server **out, struct err *e);
void nbd_stop(struct nbd_server *n);

struct gf_delegate {
  pid_t reaper;  /* our child: subreaper of the server */
  pid_t server;  /* GUESTFISH_PID */
  char *stage;   /* private directory (0700) */
  char *version; /* "1.48.6": the hello must match exactly */
  int outfd;     /* the server's stdout for one call */
  int errfd;     /* the server's stderr (a file) */
  off_t erroff;  /* what of it was read */
  struct nbd_server *nbd;
  unsigned counter;
};

static const char *const GF_PATHS[] = {"/usr/bin/guestfish", "/bin/guestfish", NULL};

static const char *gf_path(void) {
  for (int i = 0; GF_PATHS[i]; i++)
    if (access(GF_PATHS[i], X_OK) == 0) return GF_PATHS[i];
  return NULL;
}

int gf_available(char *why, size_t n) {
  if (gf_path()) return 1;
  snprintf(why, n, "guestfish is not installed");
  return 0;
}

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

/* ---- running helpers --------------------------------------------------------- */

/* `guestfish --version` -> "1.48.6" */
static char *gf_version(struct err *e) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "pipe: %s", strerror(errno));
    return NULL;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    int nul = open("/dev/null", O_RDWR);
    dup2(nul, 0);
    dup2(nul, 2);
    execl(gf_path(), "guestfish", "--version", (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  char buf[256];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof buf - 1 && (r = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)r;
  buf[len] = 0;
  close(p[0]);
  int st;
  while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  const char *v = strchr(buf, ' ');
  if (pid < 0 || !v) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "guestfish --version: unexpected answer \"%s\"", buf);
    return NULL;
  }
  v++;
  return strndup(v, strcspn(v, " \n"));
}

static void rm_tree_at(int dfd, const char *name, int depth) {
  if (depth > 64) return;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    DIR *d = fdopendir(fd);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
      if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
        rm_tree_at(dirfd(d), de->d_name, depth + 1);
    if (d)
      closedir(d);
    else
      close(fd);
    (void)unlinkat(dfd, name, AT_REMOVEDIR);
  } else {
    (void)unlinkat(dfd, name, 0);
  }
}

/* ---- the remote-control protocol ------------------------------------------------- */

static int xdr_u32(struct sbuf *b, uint32_t v) {
  unsigned char c[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  return sbuf_add(b, c, 4);
}

static int xdr_str(struct sbuf *b, const char *s) {
  size_t n = strlen(s);
  static const char pad[4];
  return xdr_u32(b, (uint32_t)n) || sbuf_add(b, s, n) || sbuf_add(b, pad, (4 - n % 4) % 4);
}

/* Read the bytes the server wrote to its stderr since the last call. */
static char *new_stderr(struct gf_delegate *g) {
  struct sbuf b = {0};
  char buf[4096];
  ssize_t n;
  while ((n = pread(g->errfd, buf, sizeof buf, g->erroff)) > 0) {
    if (sbuf_add(&b, buf, (size_t)n)) break;
    g->erroff += n;
  }
  return b.p;
}

/* One call: 0 when guestfish's command succeeded (reply 0). Output goes to
 * out; the server's error text becomes the message. */
static int rc_call(struct script_session *s, const char *cmd, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  struct gf_delegate *g = s->gf;
  struct sbuf msg = {0};
  int fd = -1, r = -1;
  char *errtext = NULL;
  if (ftruncate(g->outfd, 0) || lseek(g->outfd, 0, SEEK_SET) < 0) goto io;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "/tmp/.guestfish-%ju/socket-%ju", (uintmax_t)geteuid(),
           (uintmax_t)g->server);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) goto io;
  struct timeval tv = {1800, 0}; /* an appliance boot under TCG takes tens of seconds */
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  /* our stdout descriptor, with one byte */
  char byte = 0;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.space;
  mh.msg_controllen = sizeof ctl.space;
  struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
  ch->cmsg_level = SOL_SOCKET;
  ch->cmsg_type = SCM_RIGHTS;
  ch->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(ch), &g->outfd, sizeof(int));
  if (sendmsg(fd, &mh, MSG_NOSIGNAL) != 1) goto io;
  if (xdr_str(&msg, g->version) || xdr_str(&msg, cmd) || xdr_u32(&msg, (uint32_t)argc)) goto nomem;
  for (int i = 0; i < argc; i++)
    if (xdr_str(&msg, argv[i])) goto nomem;
  if (xdr_u32(&msg, 0)) goto nomem; /* exit_on_error: false, the server must live on */
  for (size_t off = 0; off < msg.len;) {
    ssize_t n = send(fd, msg.p + off, msg.len - off, MSG_NOSIGNAL);
    if (n <= 0) goto io;
    off += (size_t)n;
  }
  unsigned char rep[4];
  for (size_t got = 0; got < 4;) {
    ssize_t n = read(fd, rep + got, 4 - got);
    if (n <= 0) goto io;
    got += (size_t)n;
  }
  int32_t rv =
      (int32_t)((uint32_t)rep[0] << 24 | (uint32_t)rep[1] << 16 | (uint32_t)rep[2] << 8 | rep[3]);
  /* the output */
  char buf[65536];
  ssize_t n;
  off_t o = 0;
  while ((n = pread(g->outfd, buf, sizeof buf, o)) > 0) {
    if (out && sbuf_add(out, buf, (size_t)n)) goto nomem;
    o += n;
  }
  errtext = new_stderr(g);
  if (rv == 0) {
    if (errtext && *errtext) slog(s, "%s", errtext); /* warnings */
    r = 0;
  } else {
    size_t l = errtext ? strlen(errtext) : 0;
    while (l && errtext[l - 1] == '\n')
      errtext[--l] = 0;
    err_set(e, 400, SCRIPT_E_FAILED, "%s", l ? errtext : "guestfish: the command failed");
  }
  goto done;
io:
  err_set(e, 500, SCRIPT_E_GUESTFISH, "guestfish (pid %jd): %s: %s", (intmax_t)g->server, cmd,
          strerror(errno));
  goto done;
nomem:
  oom(e);
done:
  if (fd >= 0) close(fd);
  free(errtext);
  sbuf_free(&msg);
  return r;
}

/* ---- starting and stopping ------------------------------------------------------------ */

static void gf_free(struct gf_delegate *g) {
  if (!g) return;
  if (g->nbd) nbd_stop(g->nbd);
  if (g->outfd >= 0) close(g->outfd);
  if (g->errfd >= 0) close(g->errfd);
  if (g->stage) { /* "/tmp/streamer-gf-XXXXXX": remove it below /tmp */
    const char *slash = strrchr(g->stage, '/');
    int pfd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0 && slash && strncmp(g->stage, "/tmp/", 5) == 0) rm_tree_at(pfd, slash + 1, 0);
    if (pfd >= 0) close(pfd);
  }
  free(g->stage);
  free(g->version);
  free(g);
}

/* Wait for our reaper child (and so the whole guestfish tree) to end. */
static void reap(struct gf_delegate *g, int timeout_ms) {
  if (g->reaper <= 0) return;
  int64_t until = util_mono_ms() + timeout_ms;
  int st;
  for (;;) {
    pid_t r = waitpid(g->reaper, &st, WNOHANG);
    if (r == g->reaper || (r < 0 && errno != EINTR)) break;
    if (util_mono_ms() > until) {
      if (g->server > 0) kill(g->server, SIGKILL); /* the server we started */
      kill(g->reaper, SIGKILL);
      while (waitpid(g->reaper, &st, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  g->reaper = 0;
}

int gf_start(struct script_session *s, struct err *e) {
  struct gf_delegate *g = calloc(1, sizeof *g);
  if (!g) return oom(e);
  g->outfd = g->errfd = -1;
  char tmpl[] = "/tmp/streamer-gf-XXXXXX";
  if (!mkdtemp(tmpl) || !(g->stage = strdup(tmpl))) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "guestfish staging directory: %s", strerror(errno));
    gf_free(g);
    return -1;
  }
  if (!(g->version = gf_version(e))) {
    gf_free(g);
    return -1;
  }
  CLEANUP_FREE char *outp = util_strdup_printf("%s/stdout", g->stage);
  CLEANUP_FREE char *errp = util_strdup_printf("%s/stderr", g->stage);
  CLEANUP_FREE char *sock = util_strdup_printf("%s/nbd.sock", g->stage);
  if (!outp || !errp || !sock) {
    gf_free(g);
    return oom(e);
  }
  g->outfd = open(outp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g->errfd = open(errp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (g->outfd < 0 || g->errfd < 0) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "guestfish staging files: %s", strerror(errno));
    gf_free(g);
    return -1;
  }
  if (!s->disk_path) {
    struct vol *whole = s->disk ? fs_device(s->disk, "/dev/sda", e) : NULL;
    if (!whole || nbd_start(whole, sock, &g->nbd, e)) {
      if (!whole && !e->message[0])
        err_set(e, 400, SCRIPT_E_GUESTFISH, "guestfish: no disk is attached to this session");
      gf_free(g);
      return -1;
    }
  }
  /* guestfish --listen below a subreaper of ours; its first line is the pid */
  int p[2];
  if (pipe2(p, O_CLOEXEC)) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "pipe: %s", strerror(errno));
    gf_free(g);
    return -1;
  }
  const char *gfp = gf_path();
  g->reaper = fork();
  if (g->reaper == 0) {
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    pid_t c = fork();
    if (c == 0) {
      setpgid(0, 0);
      if (chdir(g->stage)) _exit(127);
      int nul = open("/dev/null", O_RDWR);
      dup2(nul, 0);
      dup2(p[1], 1);
      dup2(g->errfd, 2);
      setenv("LIBGUESTFS_BACKEND", "direct", 1);
      setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg", 1);
      execl(gfp, "guestfish", "--listen", (char *)NULL);
      _exit(127);
    }
    close(p[1]);
    while (wait(NULL) > 0 || errno == EINTR) {
    }
    _exit(0);
  }
  close(p[1]);
  if (g->reaper < 0) {
    close(p[0]);
    err_set(e, 500, SCRIPT_E_GUESTFISH, "fork: %s", strerror(errno));
    gf_free(g);
    return -1;
  }
  char line[256];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof line - 1 && (n = read(p[0], line + len, sizeof line - 1 - len)) > 0)
    len += (size_t)n;
  line[len] = 0;
  close(p[0]);
  const char *pid = strstr(line, "GUESTFISH_PID=");
  g->server = pid ? (pid_t)atol(pid + 14) : 0;
  s->gf = g;
  if (g->server <= 0) {
    CLEANUP_FREE char *why = new_stderr(g);
    err_set(e, 500, SCRIPT_E_GUESTFISH, "guestfish --listen did not start: %s",
            why && *why ? why : line);
    s->gf = NULL;
    reap(g, 5000);
    gf_free(g);
    return -1;
  }
  /* the server creates its socket right after forking: wait for it */
  CLEANUP_FREE char *sp = util_strdup_printf("/tmp/.guestfish-%ju/socket-%ju", (uintmax_t)geteuid(),
                                             (uintmax_t)g->server);
  for (int i = 0; sp && i < 100 && access(sp, F_OK) != 0; i++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  int ro = s->disk && fs_disk_read_only(s->disk);
  /* one writer at a time: the native mounts are written back and closed now,
   * and mounted again in guestfish once its appliance runs */
  size_t nm = s->nmounts;
  char **mdev = calloc(nm + 1, sizeof *mdev), **mpath = calloc(nm + 1, sizeof *mpath);
  int *mro = calloc(nm + 1, sizeof *mro);
  int bad = !mdev || !mpath || !mro;
  for (size_t i = 0; i < nm && !bad; i++) {
    mdev[i] = strdup(s->mounts[i].ref->device);
    mpath[i] = strdup(s->mounts[i].path);
    mro[i] = s->mounts[i].ro;
    bad = !mdev[i] || !mpath[i];
  }
  if (bad || (nm && umount_all(s, e))) {
    if (bad) oom(e);
    s->gf = NULL;
    reap(g, 5000);
    gf_free(g);
    for (size_t i = 0; i < nm && mdev && mpath; i++) {
      free(mdev[i]);
      free(mpath[i]);
    }
    free(mdev);
    free(mpath);
    free(mro);
    return -1;
  }
  char *add[6];
  int na = 0;
  CLEANUP_FREE char *server_arg = util_strdup_printf("server:unix:%s", sock);
  add[na++] = s->disk_path ? s->disk_path : (char *)"";
  add[na++] = (char *)"format:raw";
  if (!s->disk_path) {
    add[na++] = (char *)"protocol:nbd";
    add[na++] = server_arg;
  }
  add[na++] = ro ? (char *)"readonly:true" : (char *)"readonly:false";
  slog(s, "== guestfish %s (pid %jd): launching its appliance (TCG)\n", g->version,
       (intmax_t)g->server);
  int64_t t0 = util_mono_ms();
  if (rc_call(s, "add-drive", na, add, NULL, e) || rc_call(s, "run", 0, NULL, NULL, e)) {
    struct err e2;
    err_init(&e2);
    gf_stop(s, &e2);
    err_clear(&e2);
    for (size_t i = 0; i < nm; i++) {
      free(mdev[i]);
      free(mpath[i]);
    }
    free(mdev);
    free(mpath);
    free(mro);
    return -1;
  }
  slog(s, "== guestfish ready in %lld ms\n", (long long)(util_mono_ms() - t0));
  int r = 0;
  for (size_t i = 0; i < nm && r == 0; i++) {
    char *ma[2] = {mdev[i], mpath[i]};
    r = rc_call(s, mro[i] ? "mount-ro" : "mount", 2, ma, NULL, e);
  }
  for (size_t i = 0; i < nm; i++) {
    free(mdev[i]);
    free(mpath[i]);
  }
  free(mdev);
  free(mpath);
  free(mro);
  if (r) {
    struct err e2;
    err_init(&e2);
    gf_stop(s, &e2);
    err_clear(&e2);
    return -1;
  }
  s->stats.delegated = 1;
  return 0;
}

int gf_stop(struct script_session *s, struct err *e) {
  struct gf_delegate *g = s->gf;
  if (!g) return 0;
  int r = 0;
  struct err e2;
  err_init(&e2);
  /* write everything back, shut the appliance down, end the server */
  if (rc_call(s, "umount-all", 0, NULL, NULL, &e2) || rc_call(s, "sync", 0, NULL, NULL, &e2) ||
      rc_call(s, "shutdown", 0, NULL, NULL, &e2)) {
    *e = e2;
    r = -1;
  } else {
    err_clear(&e2);
  }
  (void)rc_call(s, "quit", 0, NULL, NULL, &e2);
  err_clear(&e2);
  reap(g, 60000);
  s->gf = NULL;
  gf_free(g);
  return r;
}

/* ---- staging local files ------------------------------------------------------------ */

/* Copy a local tree entry `name` of directory sfd into directory dfd. */
static int copy_tree_at(int sfd, const char *name, int dfd, const char *dname, int depth,
                        struct err *e) {
  struct stat st;
  if (depth > 64 || fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", name,
            depth > 64 ? "nested too deeply" : strerror(errno));
    return -1;
  }
  if (S_ISLNK(st.st_mode)) {
    char t[4096];
    ssize_t n = readlinkat(sfd, name, t, sizeof t - 1);
    if (n < 0) return 0;
    t[n] = 0;
    (void)unlinkat(dfd, dname, 0);
    return symlinkat(t, dfd, dname)
               ? (err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", dname, strerror(errno)), -1)
               : 0;
  }
  if (S_ISREG(st.st_mode)) {
    int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                     st.st_mode & 0777);
    int r = in >= 0 && out >= 0 ? 0 : -1;
    char buf[65536];
    ssize_t n;
    while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
      if (write(out, buf, (size_t)n) != n) r = -1;
    if (out >= 0) (void)fchmod(out, st.st_mode & 0777);
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    if (r) err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", name, strerror(errno));
    return r;
  }
  if (!S_ISDIR(st.st_mode)) return 0;
  if (mkdirat(dfd, dname, 0700) && errno != EEXIST) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", dname, strerror(errno));
    return -1;
  }
  int s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int d2 = openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int r = s2 >= 0 && d2 >= 0 ? 0 : -1;
  DIR *d = r == 0 ? fdopendir(dup(s2)) : NULL;
  struct dirent *de;
  while (d && r == 0 && (de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      r = copy_tree_at(s2, de->d_name, d2, de->d_name, depth + 1, e);
  if (d) closedir(d);
  if (d2 >= 0) (void)fchmod(d2, st.st_mode & 0777);
  if (s2 >= 0) close(s2);
  if (d2 >= 0) close(d2);
  if (r && !e->message[0]) err_set(e, 400, SCRIPT_E_FAILED, "%s: %s", name, strerror(errno));
  return r;
}

static char *stage_name(struct gf_delegate *g, const char *what) {
  return util_strdup_printf("%s/%s-%u", g->stage, what, ++g->counter);
}

/* A local file (or here-document) staged for guestfish to read. */
static char *stage_in(struct script_session *s, const struct script_stmt *st, const char *cmd,
                      const char *arg, int is_heredoc, struct err *e) {
  CLEANUP_FREE char *p = stage_name(s->gf, "in");
  if (!p) return oom(e), NULL;
  int out = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "%s: staging: %s", cmd, strerror(errno));
    return NULL;
  }
  int r = 0;
  if (is_heredoc) {
    if (st->heredoc_len && write(out, st->heredoc, st->heredoc_len) != (ssize_t)st->heredoc_len)
      r = -1;
  } else if (strcmp(arg, "-") == 0) {
    err_set(e, 400, SCRIPT_E_FAILED,
            "%s: a file argument \"-\" (the script's own input) is not supported", cmd);
    r = -2;
  } else {
    int in = local_open(s, cmd, arg, O_RDONLY, 0, e);
    if (in < 0) {
      r = -2;
    } else {
      char buf[65536];
      ssize_t n;
      while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) r = -1;
      if (n < 0) r = -1;
      close(in);
    }
  }
  if (close(out)) r = r ? r : -1;
  if (r == -1) err_set(e, 500, SCRIPT_E_GUESTFISH, "%s: staging: %s", cmd, strerror(errno));
  return r ? NULL : strdup(p);
}

/* After a successful download-like command: the staged file into `local`. */
static int unstage_out(struct script_session *s, const char *cmd, const char *staged,
                       const char *local, struct err *e) {
  int in = open(staged, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "%s: staged output: %s", cmd, strerror(errno));
    return -1;
  }
  int out = local_open(s, cmd, local, O_WRONLY | O_CREAT | O_TRUNC, 0644, e);
  int r = out < 0 ? -1 : 0;
  char buf[65536];
  ssize_t n;
  while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, local, strerror(errno));
      r = -1;
    }
  close(in);
  if (out >= 0) close(out);
  return r;
}

/* Which argument of a command is a local file read (in), written (out), or
 * a list of local trees (copy-in) / a local directory (copy-out). */
int gf_command(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
               struct sbuf *out, struct err *e) {
  struct gf_delegate *g = s->gf;
  const char *name = st->def->name;
  char **av = calloc((size_t)argc + 1, sizeof *av);
  char **owned = calloc((size_t)argc + 1, sizeof *owned);
  if (!av || !owned) {
    free(av);
    free(owned);
    return oom(e);
  }
  memcpy(av, argv, (size_t)argc * sizeof *av);
  int r = -1, in_arg = -1, out_arg = -1;
  const char *local_out = NULL;
  CLEANUP_FREE char *coutdir = NULL;
  if (strcmp(name, "glob") == 0) {
    const struct script_cmd *inner = argc ? script_cmd_find(argv[0]) : NULL;
    if (inner && inner->cls == SCRIPT_CMD_FILE &&
        (inner->filein_arg >= 0 || strstr(inner->name, "copy") || strstr(inner->name, "-out") ||
         strcmp(inner->name, "download") == 0)) {
      err_set(e, 400, SCRIPT_E_FAILED,
              "glob %s: local files in a glob are not supported when guestfish runs the session",
              inner->name);
      goto done;
    }
  } else if (strcmp(name, "upload") == 0 || strcmp(name, "tar-in") == 0) {
    in_arg = 0;
  } else if (strcmp(name, "download") == 0 || strcmp(name, "tar-out") == 0) {
    out_arg = 1;
  } else if (strcmp(name, "compress-out") == 0) {
    out_arg = 2;
  }
  if (in_arg >= 0 && !(owned[in_arg] = av[in_arg] =
                           stage_in(s, st, name, argv[in_arg], st->heredoc_arg == in_arg, e)))
    goto done;
  if (out_arg >= 0 && strcmp(argv[out_arg], "-") != 0) {
    local_out = argv[out_arg];
    if (!(owned[out_arg] = av[out_arg] = stage_name(g, "out"))) goto nomem;
  }
  if (strcmp(name, "copy-in") == 0) {
    for (int i = 0; i < argc - 1; i++) {
      CLEANUP_FREE char *base = NULL;
      int dfd = local_parent(s, name, argv[i], &base, e);
      if (dfd < 0) goto done;
      CLEANUP_FREE char *sd = stage_name(g, "cin");
      int sfd = -1, cr = -1;
      if (sd && mkdir(sd, 0700) == 0 && (sfd = open(sd, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        cr = copy_tree_at(dfd, base, sfd, base, 0, e);
      close(dfd);
      if (sfd >= 0) close(sfd);
      if (cr) {
        if (!e->message[0]) err_set(e, 500, SCRIPT_E_GUESTFISH, "copy-in: staging failed");
        goto done;
      }
      if (!(owned[i] = av[i] = util_strdup_printf("%s/%s", sd, base))) goto nomem;
    }
  } else if (strcmp(name, "copy-out") == 0) {
    if (!(coutdir = stage_name(g, "cout")) || mkdir(coutdir, 0700)) goto nomem;
    av[argc - 1] = coutdir;
  }
  r = rc_call(s, name, argc, av, out, e);
  if (r == 0 && local_out) r = unstage_out(s, name, av[out_arg], local_out, e);
  if (r == 0 && coutdir) { /* the staged tree into the local directory */
    int dfd = local_open(s, name, argv[argc - 1], O_RDONLY | O_DIRECTORY, 0, e);
    int sfd = open(coutdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 && sfd >= 0 ? fdopendir(dup(sfd)) : NULL;
    struct dirent *de;
    r = d ? 0 : -1;
    while (d && r == 0 && (de = readdir(d)) != NULL)
      if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
        r = copy_tree_at(sfd, de->d_name, dfd, de->d_name, 0, e);
    if (d) closedir(d);
    if (dfd >= 0) close(dfd);
    if (sfd >= 0) close(sfd);
    if (r && !e->message[0]) err_set(e, 400, SCRIPT_E_FAILED, "copy-out: %s", strerror(errno));
  }
  goto done;
nomem:
  oom(e);
  r = -1;
done:
  for (int i = 0; i < argc; i++) /* staged copies go as soon as the command is done */
    if (owned[i]) {
      if (strncmp(owned[i], g->stage, strlen(g->stage)) == 0) (void)unlink(owned[i]);
      free(owned[i]);
    }
  if (coutdir) {
    int pfd = open(g->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0) {
      rm_tree_at(pfd, strrchr(coutdir, '/') + 1, 0);
      close(pfd);
    }
  }
  free(owned);
  free(av);
  return r;
}
