/* sandbox.c — the host shell of plan scripts, run in a bubblewrap sandbox.
 *
 * One sandbox per session, started at its first host command and kept for the
 * next ones:
 *
 *   streamerd thread ── fork ── child: new process group, PDEATHSIG, clean fds/env
 *                                 └ exec bwrap (as root, privileged mode: new mount, pid, net,
 *                                   ipc, uts, cgroup namespaces; keeps only SETUID, SETGID,
 *                                   SETPCAP, DAC_READ_SEARCH, KILL; loads our seccomp filter)
 *                                     └ exec the supervisor (sandbox_super.c: this program's
 *                                       own executable, by descriptor), cwd = the work dir
 *                                         └ per command: fork → uid/gid = the sandbox's own,
 *                                           no groups, no capabilities, no_new_privs, the
 *                                           command's rlimits → exec /bin/bash -c SCRIPT
 *
 * The filesystem seen inside: a tmpfs root holding read-only binds of /usr
 * (and the /bin, /sbin, /lib* links or directories), a few /etc entries the
 * tools need plus a generated passwd, group, hosts and nsswitch.conf, a fresh
 * /proc and minimal /dev, the session's private /tmp (<workdir>.tmp) and the
 * work dir at its own absolute path, both read-write. Nothing else of the host
 * exists there: not the daemon's data, /root, /home, /var, the host's /tmp.
 *
 * For each command the daemon makes its stdin/stdout/stderr pipes, hands the
 * far ends and the script to the supervisor over a socket, feeds stdin,
 * collects stdout/stderr, enforces the wall-clock limits and output caps from
 * one poll loop, checks the space the work dir uses every second and after the
 * command, and classifies how it ended. The supervisor answers with the exit
 * status once every process of the command is gone. At a limit the daemon ends
 * the whole sandbox (the kernel kills its pid namespace); the next command
 * starts a new one, as does a command after the sandbox ended for any other
 * reason between commands. A sandbox that ends during a command fails that
 * command with SANDBOX_UNAVAILABLE. */
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
#include <sys/socket.h>
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

#define SANDBOX_KILL_GRACE_MS 500  /* SIGTERM → SIGKILL */
#define SANDBOX_DRAIN_MS 2000      /* after exit, wait this long at most for the pipes' EOF */
#define SANDBOX_DISK_CHECK_MS 1000 /* work-dir size check period while a command runs */
#define SANDBOX_START_MS 30000     /* bwrap and the supervisor must be up within this */
#define SANDBOX_STOP_MS 2000       /* at free: the supervisor's own exit, then SIGKILL */

static const char *const bwrap_paths[] = {"/usr/bin/bwrap", "/bin/bwrap", NULL};
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

struct capture {
  int fd; /* parent's read end, -1 once at EOF */
  char *buf;
  size_t len, cap;
  uint64_t limit;
  bool over;
};

/* The running sandbox (bwrap and its supervisor), if any. */
struct sbproc {
  pid_t pid;    /* bwrap's, -1 when none runs */
  int pidfd;    /* bwrap's (-1 on kernels without pidfd_open: polled) */
  bool reaped;  /* bwrap waited for */
  int ns_pidfd; /* the sandbox's pid 1: when it is gone, so is every process of the sandbox */
  bool ns_done;
  int info_fd; /* bwrap's --info-fd until read: {"child-pid": N, ...} */
  char info[1024];
  size_t info_len;
  int sock;            /* our end of the supervisor's socket */
  struct capture diag; /* bwrap's and the supervisor's stderr */
  int64_t started_at;
};

struct sandbox {
  char *workdir; /* canonical absolute path */
  char *tmpdir;  /* <workdir>.tmp */
  int work_fd;   /* O_PATH directory fds */
  int tmp_fd;
  unsigned uid; /* uid == gid */
  struct sandbox_limits lim;
  int64_t used_ms; /* wall time of the commands run so far (and of starting the sandbox) */
  const char *bwrap;
  char *etc_files[4]; /* generated passwd, group, hosts, nsswitch.conf */
  struct sbproc proc;
  unsigned starts; /* sandboxes started so far */
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

static void proc_shutdown(struct sandbox *sb);

void sandbox_free(struct sandbox *sb) {
  if (!sb) return;
  proc_shutdown(sb); /* before /tmp goes: nothing of the sandbox runs any more */
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
  sb->proc.pid = -1;
  sb->proc.pidfd = sb->proc.ns_pidfd = sb->proc.info_fd = sb->proc.sock = sb->proc.diag.fd = -1;
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
  (void)sandbox_super_linked(); /* the supervisor comes with this object */
  sb->bwrap = first_existing(bwrap_paths);
  if (!sb->bwrap) {
    set_unavailable(e, "%s", "bwrap is not installed (Debian package bubblewrap)");
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

/* ---- bwrap's command line ------------------------------------------------------ */

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

/* bwrap's descriptors, as its options name them. */
enum {
  FD_STDIN,
  FD_STDOUT,
  FD_STDERR,
  FD_ETC, /* 3..6: the generated /etc files */
  FD_INFO = FD_ETC + 4,
  FD_SOCK, /* the supervisor's end of its socket */
  FD_EXE,  /* this program's executable: the supervisor */
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
  /* bwrap and the supervisor: few descriptors, no core files; the commands' own limits are the
   * supervisor's to set */
  struct rlimit nofile = {1024, 1024}, core = {0, 0}, cur;
  if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY &&
      cur.rlim_max < nofile.rlim_max)
    nofile.rlim_cur = nofile.rlim_max = cur.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0) goto fail;
  execve(p->exe, p->argv, p->envp);
fail:
  saved = errno;
  if (write(errfd, &saved, sizeof saved) < 0) _exit(127);
  _exit(127);
}

/* An rlimit of `soft`/`hard`, never above the current hard limit (lowering needs no privilege;
 * raising needs CAP_SYS_RESOURCE, which streamerd may lack), as the supervisor's "soft:hard". */
static void rlimit_arg(struct argv *a, int resource, rlim_t soft, rlim_t hard) {
  struct rlimit cur;
  if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY) {
    if (hard > cur.rlim_max) hard = cur.rlim_max;
    if (soft > hard) soft = hard;
  }
  argv_addf(a, "%llu:%llu", (unsigned long long)soft, (unsigned long long)hard);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* A pipe preloaded with `len` bytes (< the pipe's 64 KiB) for the child to read; its read end
 * in *rd. */
static int data_pipe(int *rd, const void *data, size_t len) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return -1;
  ssize_t n = write(fds[1], data, len);
  int saved = errno;
  close(fds[1]);
  if (n != (ssize_t)len) {
    close(fds[0]);
    errno = n < 0 ? saved : EIO;
    return -1;
  }
  *rd = fds[0];
  return 0;
}

/* ---- the sandbox's processes -------------------------------------------------------------- */

/* Read bwrap's --info-fd; once it names the sandbox's pid 1, hold a pidfd on it. The pid cannot
 * have been reused: pid 1 stays a child of bwrap, unreaped, until bwrap is gone. */
static void proc_read_info(struct sbproc *p) {
  for (;;) {
    ssize_t n = read(p->info_fd, p->info + p->info_len, sizeof p->info - 1 - p->info_len);
    if (n > 0) {
      p->info_len += (size_t)n;
      p->info[p->info_len] = '\0';
      if (p->info_len < sizeof p->info - 1) continue;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      break;
    }
    close_fd(&p->info_fd); /* EOF, error or full */
    break;
  }
  const char *c = strstr(p->info, "\"child-pid\":");
  if (p->ns_pidfd < 0 && !p->ns_done && c) {
    long pid = strtol(c + 12, NULL, 10);
    if (pid > 1) p->ns_pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (p->ns_pidfd < 0) p->ns_done = true; /* already gone */
  }
}

/* Reap bwrap if it has exited (or wait for it: block). true once reaped. */
static bool proc_reap(struct sbproc *p, bool block) {
  if (p->pid <= 0 || p->reaped) return true;
  int ws;
  pid_t got;
  do
    got = waitpid(p->pid, &ws, block ? 0 : WNOHANG);
  while (got < 0 && errno == EINTR);
  if (got == p->pid || (got < 0 && errno == ECHILD)) {
    p->reaped = true;
    if (p->info_fd >= 0) proc_read_info(p);
    if (p->ns_pidfd < 0) p->ns_done = true; /* never learnt it: set-up failed early */
  }
  return p->reaped;
}

/* Is every process of the sandbox gone? */
static bool proc_gone(const struct sbproc *p) { return p->reaped && p->ns_done; }

/* SIGKILL to bwrap (its death makes the kernel SIGKILL the pid namespace: --die-with-parent)
 * and to the namespace's pid 1. */
static void proc_kill(struct sbproc *p, int sig) {
  if (p->pid > 0 && !p->reaped) kill(-p->pid, sig);
  if (sig == SIGKILL && p->ns_pidfd >= 0 && !p->ns_done)
    syscall(SYS_pidfd_send_signal, p->ns_pidfd, SIGKILL, NULL, 0);
}

/* Make sure nothing of the sandbox runs any more (killing what is left), then forget it. */
static void proc_end(struct sandbox *sb) {
  struct sbproc *p = &sb->proc;
  if (p->pid > 0 && !p->reaped) {
    proc_kill(p, SIGKILL);
    proc_reap(p, true);
  }
  if (p->ns_pidfd >= 0 && !p->ns_done) {
    syscall(SYS_pidfd_send_signal, p->ns_pidfd, SIGKILL, NULL, 0);
    struct pollfd pf = {p->ns_pidfd, POLLIN, 0};
    while (poll(&pf, 1, SANDBOX_DRAIN_MS) < 0 && errno == EINTR) {
    }
  }
  close_fd(&p->pidfd);
  close_fd(&p->ns_pidfd);
  close_fd(&p->info_fd);
  close_fd(&p->sock);
  close_fd(&p->diag.fd);
  free(p->diag.buf);
  memset(p, 0, sizeof *p);
  p->pid = -1;
  p->pidfd = p->ns_pidfd = p->info_fd = p->sock = p->diag.fd = -1;
}

/* At the end of the session: EOF on the socket makes the supervisor exit, and the sandbox with
 * it; SIGKILL if that takes longer than SANDBOX_STOP_MS. */
static void proc_shutdown(struct sandbox *sb) {
  struct sbproc *p = &sb->proc;
  if (p->pid <= 0) return;
  if (p->sock >= 0) shutdown(p->sock, SHUT_RDWR); /* whoever else holds a copy */
  int64_t until = util_mono_ms() + SANDBOX_STOP_MS;
  while (!proc_reap(p, false)) {
    int64_t left = until - util_mono_ms();
    if (left <= 0) break;
    struct pollfd pf = {p->pidfd, POLLIN, 0};
    if (p->pidfd >= 0)
      poll(&pf, 1, (int)left);
    else
      poll(NULL, 0, left < 20 ? (int)left : 20);
  }
  proc_end(sb);
}

/* The first line of what bwrap or the supervisor said, for an error message. */
static const char *proc_diag(struct sbproc *p, char *buf, size_t n) {
  if (p->diag.fd >= 0) capture_read(&p->diag);
  const char *d = p->diag.buf ? p->diag.buf : "";
  snprintf(buf, n, "%.*s", (int)strcspn(d, "\n"), d);
  return buf;
}

/* The reply of the supervisor, once complete: 1 (in *rep), 0 not yet, -1 EOF or error. */
static int proc_read_reply(struct sbproc *p, struct sandbox_rep *rep, size_t *have) {
  while (*have < sizeof *rep) {
    ssize_t n = recv(p->sock, (char *)rep + *have, sizeof *rep - *have, MSG_DONTWAIT);
    if (n > 0) {
      *have += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  *have = 0;
  return 1;
}

/* Start bwrap and the supervisor; 0 once the supervisor has said READY. */
static int proc_start(struct sandbox *sb, struct err *e) {
  struct sbproc *p = &sb->proc;
  int child_fd[CHILD_FDS], nfds = FD_SECCOMP, exec_r = -1, exec_w = -1, sv[2] = {-1, -1};
  for (int i = 0; i < CHILD_FDS; i++)
    child_fd[i] = -1;
  struct argv a = {0}, env = {0};
  int rc = -1;
  int64_t t_start = util_mono_ms();
  p->diag.limit = 64 << 10;

  {
    int fds[2];
    if ((child_fd[FD_STDIN] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 ||
        (child_fd[FD_STDOUT] = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
      goto sys;
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    p->diag.fd = fds[0];
    child_fd[FD_STDERR] = fds[1];
    for (int i = 0; i < 4; i++)
      if (data_pipe(&child_fd[FD_ETC + i], sb->etc_files[i], strlen(sb->etc_files[i])) < 0)
        goto sys;
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    p->info_fd = fds[0];
    child_fd[FD_INFO] = fds[1];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) goto sys;
    p->sock = sv[0];
    child_fd[FD_SOCK] = sv[1];
    if ((child_fd[FD_EXE] = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)) < 0) goto sys;
#ifdef SANDBOX_AUDIT_ARCH
    struct sock_filter prog[128];
    size_t n = seccomp_program(prog, 128);
    if (n > 128) {
      errno = E2BIG;
      goto sys;
    }
    if (data_pipe(&child_fd[FD_SECCOMP], prog, n * sizeof *prog) < 0) goto sys;
    nfds = FD_SECCOMP + 1;
#endif
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    exec_r = fds[0];
    exec_w = fds[1];
  }

  argv_add(&a, sb->bwrap);
  add_system_binds(&a);
  for (int i = 0; i < 4; i++) {
    argv_addv(&a, "--perms", "0644", "--ro-bind-data");
    argv_addf(&a, "%d", FD_ETC + i);
    argv_add(&a, etc_generated[i]);
  }
  argv_addv(&a, "--proc", "/proc", "--dev", "/dev");
  argv_addv(&a, "--bind", sb->tmpdir, "/tmp");
  /* the work dir's ancestors, traversable (bwrap would make them 0700, root's, so that the work
   * dir could be reached by a relative path only) */
  for (char *s = strchr(sb->workdir + 1, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (strcmp(sb->workdir, "/tmp") != 0) {
      argv_addv(&a, "--perms", "0755", "--dir");
      argv_add(&a, sb->workdir);
    }
    *s = '/';
  }
  argv_addv(&a, "--bind", sb->workdir, sb->workdir, "--chdir", sb->workdir);
  argv_addv(&a, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent", "--new-session");
  /* bwrap keeps only what the supervisor needs to switch each command to the sandbox's uid (and
   * to reach the work dir, which belongs to that uid, for --chdir); commands get none */
  argv_addv(&a, "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_DAC_READ_SEARCH", "--cap-add",
            "CAP_KILL");
  argv_add(&a, "--info-fd");
  argv_addf(&a, "%d", FD_INFO);
  if (nfds > FD_SECCOMP) {
    argv_add(&a, "--seccomp");
    argv_addf(&a, "%d", FD_SECCOMP);
  }
  argv_add(&a, "--");
  /* argv[SUP_ARG_*] of sandbox_super.c */
  argv_addf(&a, "/proc/self/fd/%d", FD_EXE);
  argv_add(&a, SANDBOX_SUPER_ARG);
  argv_addf(&a, "%d", FD_SOCK);
  argv_addf(&a, "%u", sb->uid);
  argv_add(&a, sb->workdir);
  const struct sandbox_limits *L = &sb->lim;
  /* CPU: SIGXCPU at the limit, SIGKILL a second later */
  rlimit_arg(&a, RLIMIT_CPU, (rlim_t)L->cpu_seconds, (rlim_t)L->cpu_seconds + 1);
  rlimit_arg(&a, RLIMIT_AS, L->memory_bytes, L->memory_bytes);
  rlimit_arg(&a, RLIMIT_FSIZE, L->file_bytes, L->file_bytes);
  rlimit_arg(&a, RLIMIT_NPROC, (rlim_t)L->processes, (rlim_t)L->processes);

  argv_add(&env, "PATH=/usr/local/bin:/usr/bin:/bin");
  argv_addf(&env, "HOME=%s", sb->workdir);
  argv_add(&env, "LANG=C.UTF-8");
  argv_add(&env, "TMPDIR=/tmp");
  /* Archives the scripts build hold root-owned files, as they did on HPE's appliance (its host
   * shell ran as root); the sandbox's uid would otherwise appear in them. */
  argv_add(&env, "TAR_OPTIONS=--owner=root:0 --group=root:0");
  if (a.nomem || env.nomem) {
    set_nomem(e);
    goto out;
  }

  struct child_plan plan = {
      .exe = sb->bwrap,
      .argv = a.v,
      .envp = env.v,
      .nfds = nfds,
      .errpipe = exec_w,
      .parent = getpid(),
  };
  memcpy(plan.src, child_fd, sizeof plan.src);
  p->started_at = t_start;
  p->pid = fork();
  if (p->pid < 0) {
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "fork: %s", strerror(errno));
    goto out;
  }
  if (p->pid == 0) child_run(&plan);
  sb->starts++;

  for (int i = 0; i < CHILD_FDS; i++)
    close_fd(&child_fd[i]);
  close_fd(&exec_w);
  int child_errno = 0;
  ssize_t n;
  do
    n = read(exec_r, &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  if (n == (ssize_t)sizeof child_errno) {
    proc_reap(p, true);
    err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot start %s: %s", sb->bwrap, strerror(child_errno));
    goto out;
  }
  p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
  fcntl(p->diag.fd, F_SETFL, O_NONBLOCK);
  fcntl(p->info_fd, F_SETFL, O_NONBLOCK);

  /* until READY (and bwrap's info): bwrap's own set-up failures end it with a message */
  struct sandbox_rep rep;
  size_t have = 0;
  bool ready = false;
  int64_t until = p->started_at + SANDBOX_START_MS;
  for (;;) {
    if (ready && (p->ns_pidfd >= 0 || p->ns_done || p->info_fd < 0)) break;
    int64_t left = until - util_mono_ms();
    if (left <= 0) {
      err_set(e, 500, "SANDBOX_UNAVAILABLE", "the sandbox did not start within %d s",
              SANDBOX_START_MS / 1000);
      goto out;
    }
    struct pollfd pf[4];
    int np = 0;
    pf[np++] = (struct pollfd){p->sock, POLLIN, 0};
    if (p->info_fd >= 0) pf[np++] = (struct pollfd){p->info_fd, POLLIN, 0};
    if (p->diag.fd >= 0) pf[np++] = (struct pollfd){p->diag.fd, POLLIN, 0};
    if (p->pidfd >= 0) pf[np++] = (struct pollfd){p->pidfd, POLLIN, 0};
    if (p->pidfd < 0 && left > 20) left = 20;
    if (poll(pf, (nfds_t)np, (int)left) < 0 && errno != EINTR) goto sys;
    if (p->info_fd >= 0) proc_read_info(p);
    if (p->diag.fd >= 0 && !capture_read(&p->diag)) {
      set_nomem(e);
      goto out;
    }
    if (!ready) {
      int got = proc_read_reply(p, &rep, &have);
      if (got > 0 && rep.magic == SANDBOX_MSG_READY) {
        ready = true;
        continue;
      }
      if (got != 0 || proc_reap(p, false)) {
        char msg[512];
        proc_reap(p, true);
        proc_diag(p, msg, sizeof msg);
        set_unavailable(e, "the sandbox could not be set up: %s",
                        *msg ? msg : "it ended without a word");
        goto out;
      }
    }
  }
  rc = 0;
  goto out;
sys:
  err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot start the sandbox: %s", strerror(errno));
out:
  for (int i = 0; i < CHILD_FDS; i++)
    close_fd(&child_fd[i]);
  close_fd(&exec_r);
  close_fd(&exec_w);
  argv_free(&a);
  argv_free(&env);
  if (rc < 0) proc_end(sb);
  sb->used_ms += util_mono_ms() - t_start;
  return rc;
}

/* Is the sandbox up? A sandbox that ended between commands (its starting thread exited, or it
 * was killed) is reaped here, and the next command starts a new one. */
static bool proc_alive(struct sandbox *sb) {
  struct sbproc *p = &sb->proc;
  if (p->pid <= 0) return false;
  if (!proc_reap(p, false) && p->sock >= 0) return true;
  char msg[512];
  proc_diag(p, msg, sizeof msg);
  log_warn("sandbox", "the sandbox of %s ended between commands%s%s; starting a new one",
           sb->workdir, *msg ? ": " : "", msg);
  proc_end(sb);
  return false;
}

/* ---- one command ------------------------------------------------------------------------ */

enum stop_reason {
  STOP_NONE,
  STOP_WALL,
  STOP_SESSION,
  STOP_OUTPUT,
  STOP_PROCESS,
  STOP_DISK,
  STOP_DIED /* the sandbox ended during the command, not by our hand */
};

/* One command's state, parent side. */
struct run {
  struct sandbox *sb;
  const struct sandbox_limits *L;
  int child_fd[3]; /* the command's stdin, stdout, stderr: handed to the supervisor */
  int in_fd;       /* write end of the command's stdin, -1 when done */
  const char *in_data;
  size_t in_len, in_off;
  struct capture out, err;
  size_t err_scanned;
  int64_t t0, deadline, finished_at;
  bool session_bound;
  bool replied; /* the supervisor's DONE came: every process of the command is gone */
  int status;
  struct sandbox_rep rep;
  size_t rep_have;
  enum stop_reason stop;
  int64_t disk_used;
  const char *disk_why;
  bool got_epipe;
};

static void run_init(struct run *r, struct sandbox *sb) {
  memset(r, 0, sizeof *r);
  r->sb = sb;
  r->L = &sb->lim;
  for (int i = 0; i < 3; i++)
    r->child_fd[i] = -1;
  r->in_fd = -1;
  r->out.fd = r->err.fd = -1;
  r->out.limit = r->err.limit = sb->lim.output_bytes;
  r->status = -1;
  r->finished_at = -1;
}

/* Close everything of the command; the captures stay. */
static void run_close(struct run *r) {
  for (int i = 0; i < 3; i++)
    close_fd(&r->child_fd[i]);
  close_fd(&r->in_fd);
  close_fd(&r->out.fd);
  close_fd(&r->err.fd);
}

/* The command's pipes (or /dev/null). */
static int run_pipes(struct run *r, bool capture_out, struct err *e) {
  int fds[2];
  if (r->in_data) {
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    r->child_fd[0] = fds[0];
    r->in_fd = fds[1];
  } else if ((r->child_fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    goto sys;
  }
  if (capture_out) {
    if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
    r->out.fd = fds[0];
    r->child_fd[1] = fds[1];
  } else if ((r->child_fd[1] = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
    goto sys;
  }
  if (pipe2(fds, O_CLOEXEC) < 0) goto sys;
  r->err.fd = fds[0];
  r->child_fd[2] = fds[1];
  return 0;
sys:
  err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot set up the host command's pipes: %s",
          strerror(errno));
  return -1;
}

/* Hand the command to the supervisor. 0 sent; -1 with errno set (EPIPE etc.: the sandbox is
 * gone). */
static int run_send(struct run *r, const char *script, size_t len) {
  struct sandbox_req rq = {SANDBOX_MSG_RUN, (uint32_t)len};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(3 * sizeof(int))];
  } cm;
  memset(&cm, 0, sizeof cm);
  struct iovec iov[2] = {{&rq, sizeof rq}, {(void *)script, len}};
  struct msghdr mh = {
      .msg_iov = iov, .msg_iovlen = 2, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(3 * sizeof(int));
  memcpy(CMSG_DATA(c), r->child_fd, 3 * sizeof(int));
  size_t total = sizeof rq + len, sent = 0;
  ssize_t n;
  do
    n = sendmsg(r->sb->proc.sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  sent = (size_t)n;
  /* the rest of a long script, without the descriptors */
  while (sent < total) {
    if (sent < sizeof rq) { /* the header goes first, whole (8 bytes < any socket buffer) */
      errno = EPROTO;
      return -1;
    }
    size_t off = sent - sizeof rq;
    n = send(r->sb->proc.sock, script + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    sent += (size_t)n;
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

/* Until the supervisor says DONE — or, at a limit, until the whole sandbox is gone — and the
 * pipes are at EOF; enforces the wall clock, the output caps, the process cap (seen on stderr)
 * and the disk limit while the command runs. -1 only on a system error or out of memory (e
 * set). */
static int run_loop(struct run *r, struct err *e) {
  struct sbproc *p = &r->sb->proc;
  int64_t term_at = -1, next_disk = r->t0 + SANDBOX_DISK_CHECK_MS;
  bool killed = false;
  for (;;) {
    int64_t now = util_mono_ms();
    bool gone = proc_gone(p);
    if (r->stop == STOP_NONE && !r->replied && gone) r->stop = STOP_DIED;
    bool finished = r->stop == STOP_NONE ? r->replied : gone;
    if (finished && r->finished_at < 0) {
      r->finished_at = now;
      close_fd(&r->in_fd);
    }
    if (finished && r->out.fd < 0 && r->err.fd < 0) return 0;
    if (finished && now - r->finished_at > SANDBOX_DRAIN_MS) return 0; /* a stray writer */
    if (!finished && r->stop == STOP_NONE && now >= r->deadline)
      r->stop = r->session_bound ? STOP_SESSION : STOP_WALL;
    if (!finished && r->stop == STOP_NONE && now >= next_disk) {
      run_check_disk(r);
      next_disk = util_mono_ms() + SANDBOX_DISK_CHECK_MS;
    }
    /* At a limit the whole sandbox goes: SIGTERM to bwrap, whose death makes the kernel SIGKILL
     * the pid namespace (--die-with-parent); SIGKILL to bwrap and the namespace's pid 1 if they
     * are still there after the grace period. The next command starts a new sandbox. */
    if (!gone && r->stop != STOP_NONE) {
      if (term_at < 0) {
        proc_kill(p, SIGTERM);
        term_at = now;
      } else if (!killed && now - term_at >= SANDBOX_KILL_GRACE_MS) {
        proc_kill(p, SIGKILL);
        killed = true;
      }
    }

    struct pollfd pf[7];
    int np = 0, i_out = -1, i_err = -1, i_in = -1, i_sock = -1, i_info = -1, i_ns = -1;
    if (r->out.fd >= 0) pf[i_out = np++] = (struct pollfd){r->out.fd, POLLIN, 0};
    if (r->err.fd >= 0) pf[i_err = np++] = (struct pollfd){r->err.fd, POLLIN, 0};
    if (r->in_fd >= 0) pf[i_in = np++] = (struct pollfd){r->in_fd, POLLOUT, 0};
    if (!r->replied && p->sock >= 0) pf[i_sock = np++] = (struct pollfd){p->sock, POLLIN, 0};
    if (p->info_fd >= 0) pf[i_info = np++] = (struct pollfd){p->info_fd, POLLIN, 0};
    if (p->ns_pidfd >= 0 && !p->ns_done) pf[i_ns = np++] = (struct pollfd){p->ns_pidfd, POLLIN, 0};
    if (p->pidfd >= 0 && !p->reaped) pf[np++] = (struct pollfd){p->pidfd, POLLIN, 0};
    int64_t tmo;
    if (finished)
      tmo = r->finished_at + SANDBOX_DRAIN_MS - now;
    else if (r->stop != STOP_NONE)
      tmo = killed ? 50 : term_at + SANDBOX_KILL_GRACE_MS - now;
    else
      tmo = (r->deadline < next_disk ? r->deadline : next_disk) - now;
    if (p->pidfd < 0 && !p->reaped && tmo > 20) tmo = 20; /* no pidfd: look for the exit */
    if (tmo < 0) tmo = 0;
    if (poll(pf, (nfds_t)np, (int)tmo) < 0 && errno != EINTR) {
      err_set(e, 500, "SANDBOX_UNAVAILABLE", "poll: %s", strerror(errno));
      return -1;
    }
    if (i_info >= 0 && pf[i_info].revents) proc_read_info(p);
    if (i_ns >= 0 && pf[i_ns].revents) p->ns_done = true;
    if (i_sock >= 0 && pf[i_sock].revents) {
      int got = proc_read_reply(p, &r->rep, &r->rep_have);
      if (got > 0 && r->rep.magic == SANDBOX_MSG_DONE) {
        r->replied = true;
        r->status = r->rep.status;
      } else if (got != 0) {
        /* EOF or garbage: the supervisor is gone; end the sandbox */
        close_fd(&p->sock);
        if (r->stop == STOP_NONE) r->stop = STOP_DIED;
      }
    }
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
    proc_reap(p, false);
  }
nomem:
  set_nomem(e);
  return -1;
}

/* How did it end? 0 = an ordinary exit status; -1 with e set = a limit or the sandbox's end. */
static int run_classify(struct run *r, int st, int64_t elapsed, struct err *e) {
  const struct sandbox_limits *L = r->L;
  char b1[32], b2[32];
  enum stop_reason stop = r->stop;
  bool file_limit = false;
  if (stop == STOP_NONE) {
    /* SIGXCPU comes from RLIMIT_CPU only (the supervisor reports a signal death as 128 +
     * signal, as bash does for its children) */
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
  case STOP_DIED: {
    char msg[512], why[600];
    proc_diag(&r->sb->proc, msg, sizeof msg);
    snprintf(why, sizeof why, "%s%s", *msg ? ": " : "",
             *msg ? msg : " (killed from outside, or its supervisor failed)");
    set_unavailable(e, "the sandbox ended while the host command ran%s", why);
    break;
  }
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
  int rc = -1;
  if (run_pipes(&r, out != NULL, e) == 0) {
    /* the sandbox: the running one, else a new one; a sandbox found dead when the command is
     * handed over never got it, so a new one gets it */
    int sent = -1;
    for (int attempt = 0; attempt < 2 && sent < 0; attempt++) {
      if (!proc_alive(sb) && proc_start(sb, e) < 0) break;
      sent = run_send(&r, script, slen);
      if (sent < 0) {
        if (attempt == 0 && (errno == EPIPE || errno == ECONNRESET)) {
          proc_end(sb);
          continue;
        }
        err_set(e, 500, "SANDBOX_UNAVAILABLE", "cannot hand the command to the sandbox: %s",
                strerror(errno));
        proc_end(sb);
      }
    }
    for (int i = 0; i < 3; i++)
      close_fd(&r.child_fd[i]); /* the supervisor has them now */
    if (sent == 0) {
      left = (int64_t)L->session_wall_ms - sb->used_ms; /* a start may have used some */
      r.session_bound = left <= L->command_wall_ms;
      r.t0 = util_mono_ms();
      r.deadline = r.t0 + (r.session_bound ? (left > 0 ? left : 0) : L->command_wall_ms);
      if (r.out.fd >= 0) fcntl(r.out.fd, F_SETFL, O_NONBLOCK);
      fcntl(r.err.fd, F_SETFL, O_NONBLOCK);
      if (r.in_fd >= 0) {
        fcntl(r.in_fd, F_SETFL, O_NONBLOCK);
        if (r.in_len == 0) close_fd(&r.in_fd);
      }
      int lrc = run_loop(&r, e);
      int64_t elapsed = util_mono_ms() - r.t0;
      sb->used_ms += elapsed;
      if (status) *status = r.status;
      if (lrc == 0) rc = run_classify(&r, r.status, elapsed, e);
      if (lrc < 0 || r.stop != STOP_NONE) proc_end(sb); /* nothing of it runs any more */
    }
  }
  run_close(&r);

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

unsigned sandbox_starts(const struct sandbox *sb) { return sb ? sb->starts : 0; }

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
