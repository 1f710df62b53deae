/* sandbox.c — the host shell of plan scripts, run in a bubblewrap sandbox.
 *
 * One command = one bwrap process tree:
 *
 *   streamerd thread ── fork ── child: new process group, PDEATHSIG, rlimits, clean fds/env
 *                                 └ exec bwrap (as root, privileged mode: new mount, pid, net,
 *                                   ipc, uts, cgroup namespaces; keeps only SETUID, SETGID,
 *                                   SETPCAP, DAC_READ_SEARCH; loads our seccomp filter)
 *                                     └ exec setpriv: uid/gid = the sandbox's own, no groups,
 *                                       no capabilities (bounding set empty), no_new_privs
 *                                         └ exec /bin/bash -c SCRIPT, cwd = the work dir
 *
 * The filesystem seen inside: a tmpfs root holding read-only binds of /usr
 * (and the /bin, /sbin, /lib* links or directories), a few /etc entries the
 * tools need plus a generated passwd, group, hosts and nsswitch.conf, a fresh
 * /proc and minimal /dev, the session's private /tmp (<workdir>.tmp) and the
 * work dir at its own absolute path, both read-write. Nothing else of the host
 * exists there: not the daemon's data, /root, /home, /var, the host's /tmp.
 *
 * The parent feeds stdin, collects stdout/stderr, enforces the wall-clock
 * limits and output caps from one poll loop, checks the space the work dir
 * uses every second and after the command, and classifies how it ended. */
#include "script/sandbox.h"
#include "script/sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- constants -------------------------------------------------------- */

/* Each sandbox runs as its own uid/gid, taken from 65,536 ids starting at
 * 0x1F0000: above the 16-bit ids of system and login accounts, below tar's
 * 7-octal-digit ustar limit (2,097,151) so archives the scripts build stay
 * readable by any tar, and clear of the first subuid ranges (100000 + 65536
 * per user). RLIMIT_NPROC counts processes per uid, so a uid per sandbox
 * makes `processes` a per-session cap. */
#define SANDBOX_UID_BASE 0x1F0000u
#define SANDBOX_UID_SLOTS 65536u

/* bytes of a command line (the kernel's limit for one argument is 128 KiB) */
#define SANDBOX_MAX_SCRIPT 100000
#define SANDBOX_KILL_GRACE_MS 500  /* SIGTERM → SIGKILL */
#define SANDBOX_DRAIN_MS 2000      /* after exit, wait this long at most for the pipes' EOF */
#define SANDBOX_DISK_CHECK_MS 1000 /* work-dir size check period while a command runs */

static const char *const bwrap_paths[] = {"/usr/bin/bwrap", "/bin/bwrap", NULL};
static const char *const setpriv_paths[] = {"/usr/bin/setpriv", "/bin/setpriv", NULL};
/* Top-level system entries bound read-only (directories) or recreated (symlinks, as on merged-/usr
 * Debian). */
static const char *const sys_top[] = {"/usr",   "/bin",   "/sbin",   "/lib",
                                      "/lib32", "/lib64", "/libx32", NULL};
/* /etc entries the tools need; everything else of /etc (shadow, ssh keys, the daemon's config) is
 * absent. passwd, group, hosts and nsswitch.conf are generated. */
static const char *const etc_keep[] = {"/etc/alternatives",
                                       "/etc/ld.so.cache",
                                       "/etc/localtime",
                                       "/etc/timezone",
                                       "/etc/xml",
                                       "/etc/python3",
                                       "/etc/os-release",
                                       "/etc/debian_version",
                                       NULL};

void sandbox_limits_default(struct sandbox_limits *l) {
  l->cpu_seconds = 60;
  l->memory_bytes = 1ull << 30;
  l->file_bytes = 4ull << 30;
  l->processes = 64;
  l->command_wall_ms = 120 * 1000;
  l->session_wall_ms = 15 * 60 * 1000;
  l->output_bytes = 16ull << 20;
  l->workdir_bytes = 8ull << 30;
}

struct sandbox {
  char *workdir; /* canonical absolute path */
  char *tmpdir;  /* <workdir>.tmp */
  int work_fd;   /* O_PATH directory fds */
  int tmp_fd;
  unsigned uid; /* uid == gid */
  struct sandbox_limits lim;
  int64_t used_ms; /* wall time of the commands run so far */
  const char *bwrap;
  const char *setpriv;
  char *etc_files[4]; /* generated passwd, group, hosts, nsswitch.conf */
};
static const char *const etc_generated[] = {"/etc/passwd", "/etc/group", "/etc/hosts",
                                            "/etc/nsswitch.conf"};

/* ---- small helpers ---------------------------------------------------- */

static void fmt_bytes(uint64_t v, char *buf, size_t n) {
  static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  uint64_t x = v;
  while (u < 4 && x >= 1024 && x % 1024 == 0)
    x /= 1024, u++;
  snprintf(buf, n, "%" PRIu64 " %s", x, unit[u]);
}

static const char *first_existing(const char *const *paths) {
  for (; *paths; paths++)
    if (access(*paths, X_OK) == 0) return *paths;
  return NULL;
}

static void set_nomem(struct err *e) { err_set(e, 500, "OUT_OF_MEMORY", "out of memory"); }

static void set_unavailable(struct err *e, const char *fmt, const char *arg) {
  err_set(e, 500, "SANDBOX_UNAVAILABLE", fmt, arg);
  err_action(e, "Install the Debian package bubblewrap (apt-get install bubblewrap) and run "
                "streamerd as root; host-shell commands of plan scripts need both.");
}

/* ---- uid slots ---------------------------------------------------------- */

static pthread_mutex_t uid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t uid_used[SANDBOX_UID_SLOTS / 64];

/* A free uid, starting from a random slot so that two processes (tests beside a daemon) rarely
 * pick the same one. 0 when all are taken. */
static unsigned uid_take(void) {
  uint32_t start = 0;
  if (util_random(&start, sizeof start) < 0) start = (uint32_t)getpid() * 2654435761u;
  unsigned got = 0;
  pthread_mutex_lock(&uid_lock);
  for (unsigned i = 0; i < SANDBOX_UID_SLOTS; i++) {
    unsigned s = (start + i) % SANDBOX_UID_SLOTS;
    if (!(uid_used[s / 64] & (1ull << (s % 64)))) {
      uid_used[s / 64] |= 1ull << (s % 64);
      got = SANDBOX_UID_BASE + s;
      break;
    }
  }
  pthread_mutex_unlock(&uid_lock);
  return got;
}

static void uid_give(unsigned uid) {
  unsigned s = uid - SANDBOX_UID_BASE;
  if (s >= SANDBOX_UID_SLOTS) return;
  pthread_mutex_lock(&uid_lock);
  uid_used[s / 64] &= ~(1ull << (s % 64));
  pthread_mutex_unlock(&uid_lock);
}

/* ---- sandbox objects ------------------------------------------------------ */

void sandbox_free(struct sandbox *sb) {
  if (!sb) return;
  if (sb->tmpdir) {
    struct err e;
    err_init(&e);
    if (sandbox_tree_remove(sb->tmpdir, &e) < 0) log_warn("sandbox", "%s", e.message);
    err_clear(&e);
  }
  if (sb->work_fd >= 0) close(sb->work_fd);
  if (sb->tmp_fd >= 0) close(sb->tmp_fd);
  if (sb->uid) uid_give(sb->uid);
  for (size_t i = 0; i < 4; i++)
    free(sb->etc_files[i]);
  free(sb->workdir);
  free(sb->tmpdir);
  free(sb);
}

int sandbox_new(const char *workdir, const struct sandbox_limits *lim, struct sandbox **out,
                struct err *e) {
  *out = NULL;
  struct sandbox *sb = calloc(1, sizeof *sb);
  if (!sb) {
    set_nomem(e);
    return -1;
  }
  sb->work_fd = sb->tmp_fd = -1;
  if (lim)
    sb->lim = *lim;
  else
    sandbox_limits_default(&sb->lim);

  if (geteuid() != 0) {
    set_unavailable(e, "%s",
                    "the host-shell sandbox needs streamerd to run as root (it gives "
                    "each session a uid of its own)");
    goto fail;
  }
  sb->bwrap = first_existing(bwrap_paths);
  if (!sb->bwrap) {
    set_unavailable(e, "%s", "bwrap is not installed (Debian package bubblewrap)");
    goto fail;
  }
  sb->setpriv = first_existing(setpriv_paths);
  if (!sb->setpriv) {
    set_unavailable(e, "%s", "setpriv is not installed (Debian package util-linux)");
    goto fail;
  }
  sb->workdir = realpath(workdir, NULL);
  if (!sb->workdir) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "work directory %s: %s", workdir, strerror(errno));
    goto fail;
  }
  static const char *const forbidden[] = {"/usr",    "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                          "/libx32", "/etc", "/proc", "/dev", "/sys",   NULL};
  /* "/" and "/tmp" would hide the system or be hidden by the private /tmp; ':' and control
   * characters cannot go in the generated /etc/passwd (HOME) */
  bool bad = strcmp(sb->workdir, "/") == 0 || strcmp(sb->workdir, "/tmp") == 0;
  for (const char *c = sb->workdir; *c && !bad; c++)
    bad = *c == ':' || (unsigned char)*c < 0x20;
  for (const char *const *f = forbidden; *f && !bad; f++)
    bad = sandbox_path_under(sb->workdir, *f);
  if (bad) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE",
            "work directory %s cannot be a sandbox's: it is or is under a system directory, or "
            "its name holds ':' or a control character",
            sb->workdir);
    goto fail;
  }
  sb->tmpdir = util_strdup_printf("%s.tmp", sb->workdir);
  if (!sb->tmpdir) {
    set_nomem(e);
    goto fail;
  }
  if (sandbox_ensure_dir(sb->tmpdir, e) < 0) {
    free(sb->tmpdir);
    sb->tmpdir = NULL; /* not ours to remove */
    goto fail;
  }
  sb->work_fd = open(sb->workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  sb->tmp_fd = open(sb->tmpdir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sb->work_fd < 0 || sb->tmp_fd < 0) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "work directory %s: %s", sb->workdir, strerror(errno));
    goto fail;
  }
  sb->uid = uid_take();
  if (!sb->uid) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "all %u sandbox uids are in use", SANDBOX_UID_SLOTS);
    goto fail;
  }
  sb->etc_files[0] =
      util_strdup_printf("root:x:0:0:root:/root:/bin/bash\n"
                         "sandbox:x:%u:%u:plan-script host shell:%s:/bin/bash\n"
                         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                         sb->uid, sb->uid, sb->workdir);
  sb->etc_files[1] = util_strdup_printf("root:x:0:\nsandbox:x:%u:\nnogroup:x:65534:\n", sb->uid);
  sb->etc_files[2] = strdup("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
  sb->etc_files[3] = strdup("passwd: files\ngroup: files\nshadow: files\nhosts: files\n");
  for (size_t i = 0; i < 4; i++)
    if (!sb->etc_files[i]) {
      set_nomem(e);
      goto fail;
    }
  *out = sb;
  return 0;
fail:
  sandbox_free(sb);
  return -1;
}

/* ---- seccomp ---------------------------------------------------------------
 * Defence in depth on top of the uid, namespaces and empty capability sets:
 * the sandbox may not make user namespaces (the usual first step of kernel
 * exploits), use the kernel keyring, BPF, perf, userfaultfd, io_uring, ptrace
 * or personality changes, nor any syscall of a foreign ABI (x32, i386 through
 * int 0x80) that would skip these rules. clone3 answers ENOSYS so that libc
 * falls back to clone, whose flags a filter can see. */

#if defined(__x86_64__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef SANDBOX_AUDIT_ARCH
#define BPF_STMT_(c, k) ((struct sock_filter){(unsigned short)(c), 0, 0, (unsigned)(k)})
#define BPF_JUMP_(c, k, t, f)                                                                      \
  ((struct sock_filter){(unsigned short)(c), (unsigned char)(t), (unsigned char)(f), (unsigned)(k)})
#define SC_ERRNO(x) (SECCOMP_RET_ERRNO | ((x)&SECCOMP_RET_DATA))

/* The filter program; returns its length (at most `cap` instructions). */
static size_t seccomp_program(struct sock_filter *p, size_t cap) {
  static const long denied[] = {
#ifdef SYS_keyctl
      SYS_keyctl,
      SYS_add_key,
      SYS_request_key,
#endif
      SYS_bpf,
      SYS_perf_event_open,
      SYS_userfaultfd,
      SYS_ptrace,
      SYS_personality,
      SYS_process_vm_readv,
      SYS_process_vm_writev,
      SYS_kexec_load,
      SYS_init_module,
      SYS_finit_module,
      SYS_delete_module,
      SYS_mount,
      SYS_umount2,
      SYS_pivot_root,
      SYS_setns,
#ifdef SYS_io_uring_setup
      SYS_io_uring_setup,
      SYS_io_uring_enter,
      SYS_io_uring_register,
#endif
#ifdef SYS_open_tree
      SYS_open_tree,
      SYS_move_mount,
      SYS_fsopen,
      SYS_fsconfig,
      SYS_fsmount,
      SYS_fspick,
#endif
  };
  size_t n = 0;
#define EMIT(ins)                                                                                  \
  do {                                                                                             \
    if (n < cap) p[n] = (ins);                                                                     \
    n++;                                                                                           \
  } while (0)
  /* a foreign ABI gets ENOSYS for everything (the tools are native binaries) */
  EMIT(BPF_STMT_(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_AUDIT_ARCH, 1, 0));
  EMIT(BPF_STMT_(BPF_RET | BPF_K, SC_ERRNO(ENOSYS)));
  EMIT(BPF_STMT_(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
  /* x32 syscalls carry bit 30 */
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
  EMIT(BPF_STMT_(BPF_RET | BPF_K, SC_ERRNO(ENOSYS)));
#endif
  for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
    EMIT(BPF_JUMP_(BPF_JMP | BPF_JEQ | BPF_K, denied[i], 0, 1));
    EMIT(BPF_STMT_(BPF_RET | BPF_K, SC_ERRNO(EPERM)));
  }
#ifdef SYS_clone3
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1));
  EMIT(BPF_STMT_(BPF_RET | BPF_K, SC_ERRNO(ENOSYS)));
#endif
  /* clone / unshare with CLONE_NEWUSER (flags are the first argument of both) */
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0));
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 3));
  EMIT(BPF_STMT_(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
  EMIT(BPF_JUMP_(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1));
  EMIT(BPF_STMT_(BPF_RET | BPF_K, SC_ERRNO(EPERM)));
  EMIT(BPF_STMT_(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef EMIT
  return n;
}
#endif

/* ---- one command ------------------------------------------------------------ */

struct argv {
  char **v;
  size_t n, cap;
  bool nomem;
};

static void argv_add(struct argv *a, const char *s) {
  if (a->nomem) return;
  if (a->n + 2 > a->cap) {
    size_t nc = a->cap ? a->cap * 2 : 64;
    char **p = realloc(a->v, nc * sizeof *p);
    if (!p) {
      a->nomem = true;
      return;
    }
    a->v = p;
    a->cap = nc;
  }
  char *d = strdup(s);
  if (!d) {
    a->nomem = true;
    return;
  }
  a->v[a->n++] = d;
  a->v[a->n] = NULL;
}

static void argv_addf(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_addf(struct argv *a, const char *fmt, ...) {
  char buf[PATH_MAX + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  argv_add(a, buf);
}

/* Add each argument of a NULL-terminated list; argv_addv(a, "x", "y") spells it. */
static void argv_add_list(struct argv *a, const char *const *list) {
  for (; *list; list++)
    argv_add(a, *list);
}
#define argv_addv(a, ...) argv_add_list((a), (const char *const[]){__VA_ARGS__, NULL})

static void argv_free(struct argv *a) {
  for (size_t i = 0; i < a->n; i++)
    free(a->v[i]);
  free(a->v);
  memset(a, 0, sizeof *a);
}

/* Bind the system directories: real directories read-only, symlinks (merged /usr) recreated. */
static void add_system_binds(struct argv *a) {
  char link[PATH_MAX];
  for (const char *const *p = sys_top; *p; p++) {
    struct stat st;
    if (lstat(*p, &st) < 0) continue;
    if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlink(*p, link, sizeof link - 1);
      if (n <= 0) continue;
      link[n] = '\0';
      argv_add(a, "--symlink");
      argv_add(a, link);
      argv_add(a, *p);
    } else if (S_ISDIR(st.st_mode)) {
      argv_add(a, "--ro-bind");
      argv_add(a, *p);
      argv_add(a, *p);
    }
  }
  argv_add(a, "--dir");
  argv_add(a, "/etc");
  for (const char *const *p = etc_keep; *p; p++) {
    struct stat st;
    if (lstat(*p, &st) < 0) continue;
    if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlink(*p, link, sizeof link - 1);
      if (n <= 0) continue;
      link[n] = '\0';
      argv_add(a, "--symlink");
      argv_add(a, link);
      argv_add(a, *p);
    } else {
      argv_add(a, "--ro-bind");
      argv_add(a, *p);
      argv_add(a, *p);
    }
  }
  /* /etc/python3.N (Debian's sitecustomize) */
  DIR *d = opendir("/etc");
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)))
      if (!strncmp(de->d_name, "python3.", 8)) {
        argv_addf(a, "--ro-bind");
        argv_addf(a, "/etc/%s", de->d_name);
        argv_addf(a, "/etc/%s", de->d_name);
      }
    closedir(d);
  }
}

/* The child's descriptors, as bwrap's options name them. */
enum {
  FD_STDIN,
  FD_STDOUT,
  FD_STDERR,
  FD_ETC, /* 3..6: the generated /etc files */
  FD_INFO = FD_ETC + 4,
  FD_SECCOMP,
  CHILD_FDS
};

/* What the child needs, prepared before fork (after fork only async-signal-safe calls). */
struct child_plan {
  const char *exe;
  char **argv;
  char **envp;
  int src[CHILD_FDS]; /* src[i] becomes fd i */
  int nfds;
  int errpipe; /* CLOEXEC; written to when exec fails */
  pid_t parent;
  struct rlimit rl_cpu, rl_as, rl_fsize, rl_nproc, rl_nofile, rl_core;
};

__attribute__((noreturn)) static void child_run(const struct child_plan *p) {
  int saved, hi[CHILD_FDS];
  /* the exec-failure pipe first, above every target fd */
  int errfd = fcntl(p->errpipe, F_DUPFD_CLOEXEC, 16);
  if (errfd < 0) _exit(127);
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != p->parent) _exit(127);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++)
    sigaction(s, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* move every source above the targets, then into place (dup2 clears CLOEXEC) */
  for (int i = 0; i < p->nfds; i++) {
    hi[i] = fcntl(p->src[i], F_DUPFD_CLOEXEC, 16);
    if (hi[i] < 0) goto fail;
  }
  for (int i = 0; i < p->nfds; i++)
    if (dup2(hi[i], i) < 0) goto fail;
  if (dup2(errfd, p->nfds) < 0) goto fail;
  errfd = p->nfds;
  if (fcntl(errfd, F_SETFD, FD_CLOEXEC) < 0) goto fail;
  if (syscall(SYS_close_range, (unsigned)errfd + 1, ~0u, 0) < 0)
    for (int fd = errfd + 1; fd < 65536; fd++)
      close(fd);
  umask(022);
  if (setrlimit(RLIMIT_CPU, &p->rl_cpu) < 0 || setrlimit(RLIMIT_AS, &p->rl_as) < 0 ||
      setrlimit(RLIMIT_FSIZE, &p->rl_fsize) < 0 || setrlimit(RLIMIT_NPROC, &p->rl_nproc) < 0 ||
      setrlimit(RLIMIT_NOFILE, &p->rl_nofile) < 0 || setrlimit(RLIMIT_CORE, &p->rl_core) < 0)
    goto fail;
  execve(p->exe, p->argv, p->envp);
fail:
  saved = errno;
  if (write(errfd, &saved, sizeof saved) < 0) _exit(127);
  _exit(127);
}

/* An rlimit of `soft`/`hard`, never above the current hard limit (lowering needs no privilege;
 * raising needs CAP_SYS_RESOURCE, which streamerd may lack). */
static struct rlimit rlimit_capped(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit cur;
  if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY) {
    if (hard > cur.rlim_max) hard = cur.rlim_max;
    if (soft > hard) soft = hard;
  }
  return (struct rlimit){soft, hard};
}

struct capture {
  int fd; /* parent's read end, -1 once at EOF */
  char *buf;
  size_t len, cap;
  uint64_t limit;
  bool over;
};

/* Read what is there; false on a hard error. */
static bool capture_read(struct capture *c) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(c->fd, chunk, sizeof chunk);
    if (n > 0) {
      size_t take = (size_t)n;
      if (c->len + take > c->limit) {
        take = c->limit > c->len ? (size_t)(c->limit - c->len) : 0;
        c->over = true;
      }
      if (c->len + take + 1 > c->cap) {
        size_t nc = c->cap ? c->cap : 4096;
        while (nc < c->len + take + 1)
          nc *= 2;
        char *p = realloc(c->buf, nc);
        if (!p) return false;
        c->buf = p;
        c->cap = nc;
      }
      memcpy(c->buf + c->len, chunk, take);
      c->len += take;
      c->buf[c->len] = '\0';
      if (c->over) return true;
      continue;
    }
    if (n == 0) {
      close(c->fd);
      c->fd = -1;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return true;
    close(c->fd);
    c->fd = -1;
    return true;
  }
}

static bool has_text(const struct capture *c, size_t from, const char *s) {
  return c->buf && from < c->len && memmem(c->buf + from, c->len - from, s, strlen(s)) != NULL;
}

static bool fork_failed(const struct capture *c, size_t from) {
  return has_text(c, from, "fork: retry: ") || has_text(c, from, "fork: Resource temporarily") ||
         has_text(c, from, "Cannot fork") || has_text(c, from, "can't fork") ||
         has_text(c, from, "fork: Cannot allocate");
}

static bool memory_failed(const struct capture *c) {
  static const char *const pat[] = {"annot allocate",      "an't allocate",
                                    "ouldn't allocate",    "ould not allocate",
                                    "ouldn't re-allocate", "nable to allocate",
                                    "ailed to allocate",   "emory exhausted",
                                    "MemoryError",         "ut of memory",
                                    "bad_alloc",           "xmalloc:",
                                    "xrealloc:",           NULL};
  for (const char *const *p = pat; *p; p++)
    if (has_text(c, 0, *p)) return true;
  return false;
}

enum stop_reason { STOP_NONE, STOP_WALL, STOP_SESSION, STOP_OUTPUT, STOP_PROCESS, STOP_DISK };

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* One command's state, parent side. */
struct run {
  struct sandbox *sb;
  const struct sandbox_limits *L;
  int child_fd[CHILD_FDS]; /* become fds 0..nfds-1 of the child (FD_*) */
  int nfds;
  int exec_r, exec_w; /* exec-failure pipe */
  int in_fd;          /* write end of the child's stdin, -1 when done */
  const char *in_data;
  size_t in_len, in_off;
  struct capture out, err;
  size_t err_scanned;
  struct argv argv, env;
  pid_t pid;
  int pidfd;
  bool reaped;
  int info_fd; /* bwrap's --info-fd: {"child-pid": N, ...} */
  char info[1024];
  size_t info_len;
  int ns_pidfd; /* the sandbox's pid 1: when it is gone, so is every process of the sandbox */
  bool ns_done;
  int wstatus;
  struct rusage ru;
  int64_t t0, deadline, exit_at;
  bool session_bound;
  enum stop_reason stop;
  int64_t disk_used;
  const char *disk_why;
  bool got_epipe;
};

static void run_init(struct run *r, struct sandbox *sb) {
  memset(r, 0, sizeof *r);
  r->sb = sb;
  r->L = &sb->lim;
  for (int i = 0; i < CHILD_FDS; i++)
    r->child_fd[i] = -1;
  r->exec_r = r->exec_w = r->in_fd = r->pidfd = r->info_fd = r->ns_pidfd = -1;
  r->out.fd = r->err.fd = -1;
  r->out.limit = r->err.limit = sb->lim.output_bytes;
  r->pid = -1;
}

static void run_close_child_fds(struct run *r) {
  for (int i = 0; i < CHILD_FDS; i++)
    close_fd(&r->child_fd[i]);
  close_fd(&r->exec_w);
}

/* Kill what is left, close everything; the captures stay. */
static void run_finish(struct run *r) {
  if (r->pid > 0 && !r->reaped) {
    kill(-r->pid, SIGKILL);
    while (wait4(r->pid, &r->wstatus, 0, &r->ru) < 0 && errno == EINTR) {
    }
    r->reaped = true;
  }
  run_close_child_fds(r);
  close_fd(&r->exec_r);
  close_fd(&r->in_fd);
  close_fd(&r->out.fd);
  close_fd(&r->err.fd);
  close_fd(&r->pidfd);
  close_fd(&r->info_fd);
  if (r->ns_pidfd >= 0 && !r->ns_done) {
    /* normally gone already (run_loop waits for it); this is the error path */
    syscall(SYS_pidfd_send_signal, r->ns_pidfd, SIGKILL, NULL, 0);
    struct pollfd pf = {r->ns_pidfd, POLLIN, 0};
    while (poll(&pf, 1, SANDBOX_DRAIN_MS) < 0 && errno == EINTR) {
    }
    r->ns_done = true;
  }
  close_fd(&r->ns_pidfd);
  argv_free(&r->argv);
  argv_free(&r->env);
}

/* A pipe whose parent end is *mine and whose child end is child_fd[slot]. */
static int run_pipe(struct run *r, int slot, bool child_reads, int *mine) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return -1;
  r->child_fd[slot] = child_reads ? fds[0] : fds[1];
  *mine = child_reads ? fds[1] : fds[0];
  return 0;
}

/* A pipe preloaded with `len` bytes (< the pipe's 64 KiB) for the child to read. */
static int run_data_pipe(struct run *r, int slot, const void *data, size_t len) {
  int w = -1;
  if (run_pipe(r, slot, true, &w) < 0) return -1;
  ssize_t n = write(w, data, len);
  int saved = errno;
  close(w);
  if (n != (ssize_t)len) {
    errno = n < 0 ? saved : EIO;
    return -1;
  }
  return 0;
}

/* Pipes and command lines. */
static int run_prepare(struct run *r, const char *script, bool capture_out, struct err *e) {
  struct sandbox *sb = r->sb;
  if (r->in_data) {
    if (run_pipe(r, FD_STDIN, true, &r->in_fd) < 0) goto sys;
  } else if ((r->child_fd[FD_STDIN] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    goto sys;
  }
  if (capture_out) {
    if (run_pipe(r, FD_STDOUT, false, &r->out.fd) < 0) goto sys;
  } else if ((r->child_fd[FD_STDOUT] = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
    goto sys;
  }
  if (run_pipe(r, FD_STDERR, false, &r->err.fd) < 0) goto sys;
  for (int i = 0; i < 4; i++)
    if (run_data_pipe(r, FD_ETC + i, sb->etc_files[i], strlen(sb->etc_files[i])) < 0) goto sys;
  if (run_pipe(r, FD_INFO, false, &r->info_fd) < 0) goto sys;
  r->nfds = FD_INFO + 1;
#ifdef SANDBOX_AUDIT_ARCH
  {
    struct sock_filter prog[128];
    size_t n = seccomp_program(prog, 128);
    if (n > 128) {
      errno = E2BIG;
      goto sys;
    }
    if (run_data_pipe(r, FD_SECCOMP, prog, n * sizeof *prog) < 0) goto sys;
    r->nfds = FD_SECCOMP + 1;
  }
#endif
  {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    r->exec_r = fds[0];
    r->exec_w = fds[1];
  }

  struct argv *a = &r->argv;
  argv_add(a, sb->bwrap);
  add_system_binds(a);
  for (int i = 0; i < 4; i++) {
    argv_addv(a, "--perms", "0644", "--ro-bind-data");
    argv_addf(a, "%d", FD_ETC + i);
    argv_add(a, etc_generated[i]);
  }
  argv_addv(a, "--proc", "/proc", "--dev", "/dev");
  argv_addv(a, "--bind", sb->tmpdir, "/tmp");
  /* the work dir's ancestors, traversable (bwrap would make them 0700, root's, so that the work
   * dir could be reached by a relative path only) */
  for (char *p = strchr(sb->workdir + 1, '/'); p; p = strchr(p + 1, '/')) {
    *p = '\0';
    if (strcmp(sb->workdir, "/tmp") != 0) {
      argv_addv(a, "--perms", "0755", "--dir");
      argv_add(a, sb->workdir);
    }
    *p = '/';
  }
  argv_addv(a, "--bind", sb->workdir, sb->workdir, "--chdir", sb->workdir);
  argv_addv(a, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent", "--new-session");
  /* bwrap keeps only what setpriv needs to switch uid (and to reach the work dir, which belongs
   * to the sandbox's uid, for --chdir); setpriv drops them all */
  argv_addv(a, "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_DAC_READ_SEARCH");
  argv_add(a, "--info-fd");
  argv_addf(a, "%d", FD_INFO);
  if (r->nfds > FD_SECCOMP) {
    argv_add(a, "--seccomp");
    argv_addf(a, "%d", FD_SECCOMP);
  }
  argv_add(a, "--");
  argv_add(a, sb->setpriv);
  argv_addf(a, "--reuid=%u", sb->uid);
  argv_addf(a, "--regid=%u", sb->uid);
  argv_addv(a, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            "/bin/bash", "-c");
  argv_add(a, script);

  argv_add(&r->env, "PATH=/usr/local/bin:/usr/bin:/bin");
  argv_addf(&r->env, "HOME=%s", sb->workdir);
  argv_add(&r->env, "LANG=C.UTF-8");
  argv_add(&r->env, "TMPDIR=/tmp");
  /* Archives the scripts build hold root-owned files, as they did on HPE's appliance (its host
   * shell ran as root); the sandbox's uid would otherwise appear in them. */
  argv_add(&r->env, "TAR_OPTIONS=--owner=root:0 --group=root:0");
  if (a->nomem || r->env.nomem) {
    set_nomem(e);
    return -1;
  }
  return 0;
sys:
  err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot set up the host command's pipes: %s",
          strerror(errno));
  return -1;
}

/* fork + exec bwrap; 0 once it runs. */
static int run_start(struct run *r, int64_t wall, struct err *e) {
  const struct sandbox_limits *L = r->L;
  struct child_plan plan = {
      .exe = r->sb->bwrap,
      .argv = r->argv.v,
      .envp = r->env.v,
      .nfds = r->nfds,
      .errpipe = r->exec_w,
      .parent = getpid(),
  };
  memcpy(plan.src, r->child_fd, sizeof plan.src);
  /* CPU: SIGXCPU at the limit, SIGKILL a second later. */
  plan.rl_cpu = rlimit_capped(RLIMIT_CPU, (rlim_t)L->cpu_seconds, (rlim_t)L->cpu_seconds + 1);
  plan.rl_as = rlimit_capped(RLIMIT_AS, L->memory_bytes, L->memory_bytes);
  plan.rl_fsize = rlimit_capped(RLIMIT_FSIZE, L->file_bytes, L->file_bytes);
  plan.rl_nproc = rlimit_capped(RLIMIT_NPROC, (rlim_t)L->processes, (rlim_t)L->processes);
  plan.rl_nofile = rlimit_capped(RLIMIT_NOFILE, 1024, 1024);
  plan.rl_core = (struct rlimit){0, 0};

  r->t0 = util_mono_ms();
  r->deadline = r->t0 + wall;
  r->pid = fork();
  if (r->pid < 0) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "fork: %s", strerror(errno));
    return -1;
  }
  if (r->pid == 0) child_run(&plan);

  run_close_child_fds(r);
  int child_errno = 0;
  ssize_t n;
  do
    n = read(r->exec_r, &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  close_fd(&r->exec_r);
  if (n == (ssize_t)sizeof child_errno) {
    while (waitpid(r->pid, &r->wstatus, 0) < 0 && errno == EINTR) {
    }
    r->reaped = true;
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot start %s: %s", r->sb->bwrap,
            strerror(child_errno));
    return -1;
  }
  r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
  if (r->out.fd >= 0) fcntl(r->out.fd, F_SETFL, O_NONBLOCK);
  fcntl(r->err.fd, F_SETFL, O_NONBLOCK);
  fcntl(r->info_fd, F_SETFL, O_NONBLOCK);
  if (r->in_fd >= 0) {
    fcntl(r->in_fd, F_SETFL, O_NONBLOCK);
    if (r->in_len == 0) close_fd(&r->in_fd);
  }
  return 0;
}

/* Feed stdin as far as the pipe takes it. */
static void run_feed(struct run *r) {
  while (r->in_off < r->in_len) {
    size_t chunk = r->in_len - r->in_off;
    if (chunk > 65536) chunk = 65536;
    ssize_t n = write(r->in_fd, r->in_data + r->in_off, chunk);
    if (n > 0) {
      r->in_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0 && errno == EPIPE) r->got_epipe = true; /* it stopped reading: fine */
    break;
  }
  close_fd(&r->in_fd);
}

/* Measure the work dir and /tmp; over the limit → STOP_DISK. A system error (-2 in disk_used)
 * stops nothing: run_classify reports it if it persists after the command. */
static void run_check_disk(struct run *r) {
  int fds[2] = {r->sb->work_fd, r->sb->tmp_fd};
  r->disk_used = sandbox_tree_usage(fds, 2, &r->disk_why);
  if (r->stop == STOP_NONE &&
      (r->disk_used == -1 || (r->disk_used >= 0 && (uint64_t)r->disk_used > r->L->workdir_bytes)))
    r->stop = STOP_DISK;
}

/* Read bwrap's --info-fd; once it names the sandbox's pid 1, hold a pidfd on it. The pid cannot
 * have been reused: pid 1 stays a child of bwrap, unreaped, until bwrap is gone, and bwrap waits
 * for the command. */
static void run_read_info(struct run *r) {
  for (;;) {
    ssize_t n = read(r->info_fd, r->info + r->info_len, sizeof r->info - 1 - r->info_len);
    if (n > 0) {
      r->info_len += (size_t)n;
      r->info[r->info_len] = '\0';
      if (r->info_len < sizeof r->info - 1) continue;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      break;
    }
    close_fd(&r->info_fd); /* EOF, error or full */
    break;
  }
  const char *p = strstr(r->info, "\"child-pid\":");
  if (r->ns_pidfd < 0 && p) {
    long pid = strtol(p + 12, NULL, 10);
    if (pid > 1) r->ns_pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (r->ns_pidfd < 0) r->ns_done = true; /* already gone */
  }
}

/* Until bwrap is reaped, the sandbox's pid namespace is empty and the pipes are at EOF; enforces
 * the wall clock, the output caps, the process cap (seen on stderr) and the disk limit while the
 * command runs. -1 only on a system error or out of memory (e set). */
static int run_loop(struct run *r, struct err *e) {
  int64_t term_at = -1, next_disk = r->t0 + SANDBOX_DISK_CHECK_MS;
  bool killed = false;
  for (;;) {
    int64_t now = util_mono_ms();
    if (r->reaped && r->info_fd < 0 && (r->ns_pidfd < 0 || r->ns_done) && r->out.fd < 0 &&
        r->err.fd < 0)
      return 0;
    if (r->reaped && now - r->exit_at > SANDBOX_DRAIN_MS) return 0; /* run_finish kills the rest */
    if (!r->reaped && r->stop == STOP_NONE && now >= r->deadline)
      r->stop = r->session_bound ? STOP_SESSION : STOP_WALL;
    if (!r->reaped && r->stop == STOP_NONE && now >= next_disk) {
      run_check_disk(r);
      next_disk = util_mono_ms() + SANDBOX_DISK_CHECK_MS;
    }
    /* At a limit: SIGTERM to bwrap, whose death makes the kernel SIGKILL the whole pid namespace
     * (--die-with-parent); SIGKILL to bwrap and the namespace's pid 1 if they are still there
     * after the grace period. */
    if (!r->reaped && r->stop != STOP_NONE) {
      if (term_at < 0) {
        kill(-r->pid, SIGTERM);
        term_at = now;
      } else if (!killed && now - term_at >= SANDBOX_KILL_GRACE_MS) {
        kill(-r->pid, SIGKILL);
        if (r->ns_pidfd >= 0) syscall(SYS_pidfd_send_signal, r->ns_pidfd, SIGKILL, NULL, 0);
        killed = true;
      }
    }

    struct pollfd pf[6];
    int np = 0, i_out = -1, i_err = -1, i_in = -1, i_info = -1, i_ns = -1;
    if (r->out.fd >= 0) pf[i_out = np++] = (struct pollfd){r->out.fd, POLLIN, 0};
    if (r->err.fd >= 0) pf[i_err = np++] = (struct pollfd){r->err.fd, POLLIN, 0};
    if (r->in_fd >= 0) pf[i_in = np++] = (struct pollfd){r->in_fd, POLLOUT, 0};
    if (r->info_fd >= 0) pf[i_info = np++] = (struct pollfd){r->info_fd, POLLIN, 0};
    if (r->ns_pidfd >= 0 && !r->ns_done) pf[i_ns = np++] = (struct pollfd){r->ns_pidfd, POLLIN, 0};
    if (r->pidfd >= 0 && !r->reaped) pf[np++] = (struct pollfd){r->pidfd, POLLIN, 0};
    int64_t tmo;
    if (r->reaped)
      tmo = r->exit_at + SANDBOX_DRAIN_MS - now;
    else if (r->stop != STOP_NONE)
      tmo = killed ? 50 : term_at + SANDBOX_KILL_GRACE_MS - now;
    else
      tmo = (r->deadline < next_disk ? r->deadline : next_disk) - now;
    if (r->pidfd < 0 && !r->reaped && tmo > 20) tmo = 20; /* no pidfd: look for the exit */
    if (tmo < 0) tmo = 0;
    if (poll(pf, (nfds_t)np, (int)tmo) < 0 && errno != EINTR) {
      err_set(e, 500, "SANDBOX_UNAVAILABLE", "poll: %s", strerror(errno));
      return -1;
    }
    if (i_info >= 0 && pf[i_info].revents) run_read_info(r);
    if (i_ns >= 0 && pf[i_ns].revents) r->ns_done = true;
    if (i_out >= 0 && pf[i_out].revents) {
      if (!capture_read(&r->out)) goto nomem;
      if (r->out.over && r->stop == STOP_NONE) r->stop = STOP_OUTPUT;
    }
    if (i_err >= 0 && pf[i_err].revents) {
      if (!capture_read(&r->err)) goto nomem;
      if (r->err.over && r->stop == STOP_NONE) r->stop = STOP_OUTPUT;
      size_t from = r->err_scanned > 64 ? r->err_scanned - 64 : 0;
      if (r->stop == STOP_NONE && fork_failed(&r->err, from)) r->stop = STOP_PROCESS;
      r->err_scanned = r->err.len;
    }
    if (i_in >= 0 && pf[i_in].revents) {
      if (pf[i_in].revents & (POLLERR | POLLHUP))
        close_fd(&r->in_fd); /* the command closed its stdin */
      else
        run_feed(r);
    }
    if (!r->reaped && wait4(r->pid, &r->wstatus, WNOHANG, &r->ru) == r->pid) {
      r->reaped = true;
      r->exit_at = util_mono_ms();
      close_fd(&r->in_fd);
      if (r->info_fd >= 0) run_read_info(r);
      if (r->ns_pidfd < 0) r->ns_done = true; /* never learnt it: setup failed early */
    }
  }
nomem:
  set_nomem(e);
  return -1;
}

/* How did it end? 0 = an ordinary exit status; -1 with e set = a limit or a setup failure. */
static int run_classify(struct run *r, int st, int64_t elapsed, struct err *e) {
  const struct sandbox_limits *L = r->L;
  char b1[32], b2[32];
  enum stop_reason stop = r->stop;
  bool file_limit = false;
  if (stop == STOP_NONE) {
    /* bwrap's own setup failed (it and setpriv prefix their messages) */
    if (st == 1 && r->out.len == 0 && r->err.buf &&
        (!strncmp(r->err.buf, "bwrap: ", 7) || !strncmp(r->err.buf, "setpriv: ", 9))) {
      char msg[512];
      snprintf(msg, sizeof msg, "%.*s", (int)strcspn(r->err.buf, "\n"), r->err.buf);
      set_unavailable(e, "the sandbox could not be set up: %s", msg);
      return -1;
    }
    /* SIGXCPU comes from RLIMIT_CPU only (bwrap reports a signal death as 128 + signal, as bash
     * does for its children) */
    if (st == 128 + SIGXCPU) {
      err_set(e, 400, "SANDBOX_CPU_LIMIT",
              "host command stopped at the CPU limit (%d s of CPU time per process)",
              L->cpu_seconds);
      err_action(e, "Check the host command for endless loops.");
      return -1;
    }
    if (st == 128 + SIGXFSZ || (st != 0 && has_text(&r->err, 0, "File too large"))) {
      stop = STOP_DISK;
      file_limit = true;
    } else if (st != 0 && fork_failed(&r->err, 0)) {
      stop = STOP_PROCESS;
    } else if (st != 0 && memory_failed(&r->err)) {
      fmt_bytes(L->memory_bytes, b1, sizeof b1);
      err_set(e, 400, "SANDBOX_MEMORY_LIMIT",
              "host command failed at the memory limit (%s of address space per process)", b1);
      err_action(e, "Check the host command for runaway memory use.");
      return -1;
    } else {
      run_check_disk(r);
      stop = r->stop;
      if (stop == STOP_NONE && r->disk_used == -2) {
        err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot measure the work directory %s: %s",
                r->sb->workdir, r->disk_why);
        return -1;
      }
    }
  }
  switch (stop) {
  case STOP_NONE: return 0;
  case STOP_WALL:
    err_set(e, 400, "SANDBOX_TIMEOUT",
            "host command stopped after %" PRId64 " ms at its wall-clock limit of %d ms", elapsed,
            L->command_wall_ms);
    err_action(e, "Make the host command finish sooner, or find what it waits for (it has no "
                  "network and no terminal).");
    break;
  case STOP_SESSION:
    err_set(e, 400, "SANDBOX_SESSION_TIMEOUT",
            "host command stopped: the session's %d ms of host-command time are used up",
            L->session_wall_ms);
    err_action(e, "Make the plan scripts' host commands (!, <!, | shell) shorter or fewer.");
    break;
  case STOP_OUTPUT:
    fmt_bytes(L->output_bytes, b1, sizeof b1);
    err_set(e, 400, "SANDBOX_OUTPUT_LIMIT",
            "host command stopped: its %s passed the output limit of %s",
            r->out.over ? "standard output" : "standard error", b1);
    err_action(e, "Redirect large output to a file in the work directory.");
    break;
  case STOP_PROCESS:
    err_set(e, 400, "SANDBOX_PROCESS_LIMIT",
            "host command stopped at the process limit (%d processes): fork failed", L->processes);
    err_action(e, "Check the host command for runaway background jobs or recursion.");
    break;
  case STOP_DISK:
    if (file_limit) {
      fmt_bytes(L->file_bytes, b1, sizeof b1);
      err_set(e, 400, "SANDBOX_DISK_LIMIT",
              "host command stopped at the file size limit (%s per file)", b1);
    } else if (r->disk_used < 0) {
      err_set(e, 400, "SANDBOX_DISK_LIMIT",
              "host command stopped: the work directory and /tmp hold %s", r->disk_why);
    } else {
      fmt_bytes(L->workdir_bytes, b1, sizeof b1);
      fmt_bytes((uint64_t)r->disk_used, b2, sizeof b2);
      err_set(e, 400, "SANDBOX_DISK_LIMIT",
              "host command stopped: the work directory and /tmp use %s, over their limit of %s",
              b2, b1);
    }
    err_action(e, "Remove files the plan scripts no longer need from the work directory, and "
                  "check what the host command writes.");
    break;
  }
  return -1;
}

/* Hand the work dir and /tmp (and all they hold) to the sandbox's uid. */
static int hand_over(struct sandbox *sb, struct err *e) {
  if (sandbox_tree_chown(sb->work_fd, sb->uid) < 0 || sandbox_tree_chown(sb->tmp_fd, sb->uid) < 0) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot hand %s to the sandbox: %s", sb->workdir,
            strerror(errno));
    return -1;
  }
  return 0;
}

int sandbox_run(struct sandbox *sb, const char *script, const void *stdin_data, size_t stdin_len,
                char **out, size_t *out_len, char **errout, size_t *errout_len, int *status,
                struct err *e) {
  if (out) *out = NULL;
  if (out_len) *out_len = 0;
  if (errout) *errout = NULL;
  if (errout_len) *errout_len = 0;
  if (status) *status = -1;
  const struct sandbox_limits *L = &sb->lim;

  int64_t left = (int64_t)L->session_wall_ms - sb->used_ms;
  if (left <= 0) {
    err_set(e, 400, "SANDBOX_SESSION_TIMEOUT",
            "host command not run: the session's %d ms of host-command time are used up",
            L->session_wall_ms);
    err_action(e, "Make the plan scripts' host commands (!, <!, | shell) shorter or fewer.");
    return -1;
  }
  size_t slen = strlen(script);
  if (slen > SANDBOX_MAX_SCRIPT) {
    err_set(e, 400, "SANDBOX_COMMAND_TOO_LONG",
            "host command of %zu bytes is over the limit of %d bytes", slen, SANDBOX_MAX_SCRIPT);
    return -1;
  }
  if (hand_over(sb, e) < 0) return -1;

  /* A child that stops reading its stdin must not kill the daemon with SIGPIPE: block it in this
   * thread and consume the one our writes raise. */
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  bool pipe_was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);

  struct run r;
  run_init(&r, sb);
  r.in_data = stdin_data;
  r.in_len = stdin_data ? stdin_len : 0;
  r.session_bound = left <= L->command_wall_ms;
  int rc = -1;
  if (run_prepare(&r, script, out != NULL, e) == 0 &&
      run_start(&r, r.session_bound ? left : L->command_wall_ms, e) == 0) {
    int lrc = run_loop(&r, e);
    run_finish(&r); /* reaps (kills first if the loop failed) */
    int64_t elapsed = util_mono_ms() - r.t0;
    sb->used_ms += elapsed;
    int st = WIFEXITED(r.wstatus) ? WEXITSTATUS(r.wstatus) : 128 + WTERMSIG(r.wstatus);
    if (status) *status = st;
    if (lrc == 0) rc = run_classify(&r, st, elapsed, e);
  }
  run_finish(&r);

  if (r.got_epipe && !pipe_was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

  /* hand back what was captured */
  if (out) {
    *out = r.out.buf ? r.out.buf : strdup("");
    if (out_len) *out_len = r.out.len;
    r.out.buf = NULL;
  }
  if (errout) {
    *errout = r.err.buf ? r.err.buf : strdup("");
    if (errout_len) *errout_len = r.err.len;
    r.err.buf = NULL;
  }
  free(r.out.buf);
  free(r.err.buf);
  if (rc == 0 && ((out && !*out) || (errout && !*errout))) {
    set_nomem(e);
    rc = -1;
  }
  return rc;
}

/* ---- availability ------------------------------------------------------------ */

int sandbox_available(char *why, size_t n) {
  char dir[] = "/tmp/streamer-sandbox-check.XXXXXX";
  if (!mkdtemp(dir)) {
    snprintf(why, n, "cannot create a test work directory: %s", strerror(errno));
    return 0;
  }
  char wd[sizeof dir + 8];
  snprintf(wd, sizeof wd, "%s/work", dir);
  int ok = 0;
  struct err e;
  err_init(&e);
  struct sandbox *sb = NULL;
  if (mkdir(wd, 0700) < 0) {
    snprintf(why, n, "cannot create a test work directory: %s", strerror(errno));
  } else if (sandbox_new(wd, NULL, &sb, &e) < 0) {
    snprintf(why, n, "%s", e.message);
  } else {
    int st = -1;
    char *o = NULL, *er = NULL;
    if (sandbox_run(sb, "true", NULL, 0, &o, NULL, &er, NULL, &st, &e) < 0)
      snprintf(why, n, "%s", e.message);
    else if (st != 0)
      snprintf(why, n, "a sandboxed `true` exited with status %d: %.200s", st, er ? er : "");
    else
      ok = 1;
    free(o);
    free(er);
  }
  sandbox_free(sb);
  err_clear(&e);
  struct err e2;
  err_init(&e2);
  char *rm = util_strdup_printf("%s", dir);
  if (rm) sandbox_tree_remove(rm, &e2);
  free(rm);
  err_clear(&e2);
  return ok;
}
