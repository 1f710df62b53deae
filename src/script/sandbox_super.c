/* sandbox_super.c — the supervisor inside a session's sandbox.
 *
 * sandbox.c starts one bubblewrap sandbox per session, at its first host
 * command, and bwrap execs this program's own executable (the daemon's, or a
 * test's: /proc/self/exe handed over as a descriptor) with SANDBOX_SUPER_ARG.
 * The constructor below recognises that command line before main() and runs
 * the supervisor instead of the program:
 *
 *   bwrap (sandbox's pid 1) └ supervisor (pid 2, root in the sandbox, keeps only CAP_SETUID,
 *                                CAP_SETGID, CAP_SETPCAP, CAP_DAC_READ_SEARCH and CAP_KILL,
 * seccomp) └ per command: fork → setsid, the command's three descriptors, rlimits, no groups, the
 * sandbox's uid/gid (which clears every capability), exec /bin/bash -c SCRIPT
 *
 * It reads framed requests from its socket (struct sandbox_req + the command's stdin, stdout and
 * stderr as SCM_RIGHTS + the script), runs each command, and when the command's shell has
 * exited kills every other process of the sandbox (kill(-1): background jobs, daemons it
 * started), reaps them all (it is their subreaper) and answers with the exit status (struct
 * sandbox_rep). Commands run as another uid, so they cannot signal or trace it. At EOF on its
 * socket it exits, and the sandbox ends with it. The wall clock, output caps and disk checks
 * are the daemon's (sandbox.c), which ends the whole sandbox at a limit.
 *
 * Everything here runs in a fresh process image with nothing but libc: no logging, no heap
 * beyond the script buffer, messages to its stderr (the daemon reads them when the sandbox
 * ends unexpectedly) or to the command's stderr. */
#include "script/sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
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

int sandbox_super_linked(void) { return 1; }

enum { RL_CPU, RL_AS, RL_FSIZE, RL_NPROC, RL_COUNT };

struct super {
  int sock;
  unsigned uid;
  const char *workdir;
  struct rlimit rl[RL_COUNT];
};

static void say(int fd, const char *what, int err) {
  dprintf(fd, "sandbox: %s: %s\n", what, strerror(err));
}

/* "soft:hard" */
static int parse_rlimit(const char *s, struct rlimit *rl) {
  char *end = NULL;
  errno = 0;
  unsigned long long soft = strtoull(s, &end, 10);
  if (errno || end == s || *end != ':') return -1;
  const char *h = end + 1;
  unsigned long long hard = strtoull(h, &end, 10);
  if (errno || end == h || *end) return -1;
  rl->rlim_cur = (rlim_t)soft;
  rl->rlim_max = (rlim_t)hard;
  return 0;
}

static int parse_args(int argc, char **argv, struct super *s) {
  if (argc != SUP_ARGC) return -1;
  char *end = NULL;
  long sock = strtol(argv[SUP_ARG_SOCK], &end, 10);
  if (*end || sock < 3 || sock > 1000) return -1;
  s->sock = (int)sock;
  unsigned long uid = strtoul(argv[SUP_ARG_UID], &end, 10);
  if (*end || uid == 0 || uid > 0x7fffffffUL) return -1;
  s->uid = (unsigned)uid;
  s->workdir = argv[SUP_ARG_WORKDIR];
  if (s->workdir[0] != '/') return -1;
  for (int i = 0; i < RL_COUNT; i++)
    if (parse_rlimit(argv[SUP_ARG_CPU + i], &s->rl[i]) < 0) return -1;
  return 0;
}

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int send_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int reply(const struct super *s, uint32_t magic, int32_t status) {
  struct sandbox_rep rep = {magic, status};
  return send_full(s->sock, &rep, sizeof rep);
}

/* The command, in the forked child: never returns. */
__attribute__((noreturn)) static void command_exec(const struct super *s, const int fds[3],
                                                   const char *script) {
  static const int rl_res[RL_COUNT] = {RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC};
  setsid();
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* the received descriptors are all above 2 (0-2 stay open in the supervisor) */
  for (int i = 0; i < 3; i++)
    if (dup2(fds[i], i) < 0) _exit(127);
  if (syscall(SYS_close_range, 3u, ~0u, 0) < 0)
    for (int fd = 3; fd < 1024; fd++)
      close(fd);
  umask(022);
  /* as root with CAP_DAC_READ_SEARCH, like bwrap's --chdir: a work dir the script made 0 stays
   * its cwd */
  if (chdir(s->workdir) < 0) {
    say(2, s->workdir, errno);
    _exit(127);
  }
  /* no groups, then the gid, then the uid: a root → non-root setresuid clears the permitted,
   * effective and ambient capabilities; the bounding and inheritable sets are already empty and
   * no_new_privs is set (super_main), so nothing comes back at exec */
  if (setgroups(0, NULL) < 0 || setresgid(s->uid, s->uid, s->uid) < 0 ||
      setresuid(s->uid, s->uid, s->uid) < 0) {
    say(2, "cannot switch to the sandbox's uid", errno);
    _exit(127);
  }
  struct rlimit nofile = {1024, 1024}, core = {0, 0};
  if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0) {
    say(2, "setrlimit", errno);
    _exit(127);
  }
  for (int i = 0; i < RL_COUNT; i++)
    if (setrlimit(rl_res[i], &s->rl[i]) < 0) {
      say(2, "setrlimit", errno);
      _exit(127);
    }
  char *const argv[] = {(char *)"/bin/bash", (char *)"-c", (char *)script, NULL};
  execv(argv[0], argv);
  say(2, "cannot run /bin/bash", errno);
  _exit(127);
}

/* Kill every process of the sandbox but pid 1 and ourselves, and reap them all (orphans come to
 * us: we are the subreaper). -1 when that fails (kill(-1) refused): the supervisor then exits,
 * and the whole sandbox ends with it, rather than wait for processes it cannot stop. */
static int reap_all(void) {
  for (;;) {
    if (kill(-1, SIGKILL) < 0 && errno != ESRCH) {
      say(2, "kill(-1)", errno);
      return -1;
    }
    pid_t p = waitpid(-1, NULL, __WALL);
    if (p < 0 && errno == ECHILD) return 0;
    if (p < 0 && errno != EINTR) {
      say(2, "waitpid", errno);
      return -1;
    }
  }
}

/* Receive one request: 1 with the script (malloc'd) and the three descriptors, 0 at EOF, -1 on
 * a protocol error (message on stderr). */
static int receive(const struct super *s, char **script, int fds[3]) {
  struct sandbox_req rq;
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(3 * sizeof(int))];
  } cm;
  struct iovec iov = {&rq, sizeof rq};
  struct msghdr mh = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
  ssize_t n;
  do
    n = recvmsg(s->sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n == 0) return 0;
  if (n < 0) {
    say(2, "recvmsg", errno);
    return -1;
  }
  int got = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char *data = CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, data + i * sizeof(int), sizeof fd);
      if (got < 3)
        fds[got++] = fd;
      else
        close(fd);
    }
  }
  if ((size_t)n < sizeof rq && read_full(s->sock, (char *)&rq + n, sizeof rq - (size_t)n) < 0)
    goto bad;
  if (got != 3 || (mh.msg_flags & MSG_CTRUNC) || rq.magic != SANDBOX_MSG_RUN ||
      rq.len > SANDBOX_MAX_SCRIPT)
    goto bad;
  *script = malloc((size_t)rq.len + 1);
  if (!*script || read_full(s->sock, *script, rq.len) < 0) {
    free(*script);
    *script = NULL;
    goto bad;
  }
  (*script)[rq.len] = '\0';
  return 1;
bad:
  dprintf(2, "sandbox: malformed request\n");
  for (int i = 0; i < got; i++)
    close(fds[i]);
  return -1;
}

static int super_main(int argc, char **argv) {
  struct super s;
  if (parse_args(argc, argv, &s) < 0) {
    dprintf(2, "sandbox: bad supervisor command line\n");
    return 2;
  }
  /* keep 0-2 (bwrap's: /dev/null and the daemon's diagnostics pipe) and the socket */
  if (syscall(SYS_close_range, 3u, (unsigned)s.sock - 1, 0) < 0 ||
      syscall(SYS_close_range, (unsigned)s.sock + 1, ~0u, 0) < 0) {
    say(2, "close_range", errno);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Our own capabilities stay (we need SETUID, SETGID, DAC_READ_SEARCH per command, and KILL:
   * root without it may not signal the commands, which run as another uid); what a
   * command could ever get back goes: the bounding set, the inheritable and ambient sets, and
   * no_new_privs (set-uid binaries do nothing). */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    say(2, "PR_SET_CHILD_SUBREAPER", errno);
    return 2;
  }
  for (unsigned long c = 0; c < 64; c++)
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past the last capability */
      say(2, "PR_CAPBSET_DROP", errno);
      return 2;
    }
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) < 0) {
    say(2, "capget", errno);
    return 2;
  }
  data[0].inheritable = data[1].inheritable = 0;
  if (syscall(SYS_capset, &hdr, data) < 0 ||
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ||
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    say(2, "dropping capabilities", errno);
    return 2;
  }
  if (reply(&s, SANDBOX_MSG_READY, 0) < 0) return 0; /* the daemon is gone already */
  for (;;) {
    char *script = NULL;
    int fds[3] = {-1, -1, -1};
    int got = receive(&s, &script, fds);
    if (got <= 0) {
      reap_all();
      return got == 0 ? 0 : 2;
    }
    int32_t status = 127;
    pid_t pid = fork();
    if (pid == 0) command_exec(&s, fds, script);
    if (pid < 0) say(fds[2], "fork", errno);
    for (int i = 0; i < 3; i++)
      close(fds[i]);
    free(script);
    if (pid > 0) {
      int ws = 0;
      while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
      }
      status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    }
    /* the command's background jobs die with it, as in a sandbox of its own */
    if (reap_all() < 0) return 2;
    if (reply(&s, SANDBOX_MSG_DONE, status) < 0) return 0;
  }
}

/* glibc passes (argc, argv, envp) to ELF constructors. Any program linking the sandbox carries
 * the supervisor; only bwrap's command line (SANDBOX_SUPER_ARG at argv[1]) starts it. */
__attribute__((constructor)) static void sandbox_super_ctor(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc == SUP_ARGC && argv && argv[1] && strcmp(argv[1], SANDBOX_SUPER_ARG) == 0)
    _exit(super_main(argc, argv));
}
