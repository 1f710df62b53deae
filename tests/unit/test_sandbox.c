/* test_sandbox.c — the host-shell sandbox (src/script/sandbox.c): exit
 * statuses, capture, stdin, the work dir and private /tmp, what a script
 * cannot reach (the daemon's data, /etc/shadow, the network, anything outside
 * its work dir), its uid, every limit and its error code, every host tool of
 * the plan-script corpus, and local-path resolution for the interpreter.
 * Needs root and bubblewrap (make test-deps installs it). */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

// clang-format on

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "script/sandbox.h"

/* ---- fixture ---------------------------------------------------------------
 * base/               a fresh directory per test under the host's /tmp
 *   data/secret       stands for the daemon's data directory (world-readable on purpose)
 *   work/             the session's work dir; work.tmp/ its private /tmp */

struct fx {
  char base[64];
  char data[96];
  char secret[128];
  char work[96];
  struct sandbox *sb;
  struct sandbox_limits lim;
};

static const char SECRET[] = "TOP-SECRET-9f3c1e";

static int fx_setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->base, sizeof f->base, "/var/tmp/test_sandbox.XXXXXX");
  if (!mkdtemp(f->base)) return -1;
  snprintf(f->data, sizeof f->data, "%s/data", f->base);
  snprintf(f->secret, sizeof f->secret, "%s/secret", f->data);
  snprintf(f->work, sizeof f->work, "%s/work", f->base);
  if (mkdir(f->data, 0755) < 0 || mkdir(f->work, 0700) < 0) return -1;
  FILE *fp = fopen(f->secret, "w");
  if (!fp) return -1;
  fputs(SECRET, fp);
  fclose(fp);
  chmod(f->secret, 0644);
  sandbox_limits_default(&f->lim);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  struct fx *f = *state;
  sandbox_free(f->sb);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->base);
  int rc = system(cmd);
  free(f);
  return rc == 0 ? 0 : -1;
}

/* The sandbox of the test, made on first use with f->lim. */
static struct sandbox *sb_of(struct fx *f) {
  if (!f->sb) {
    struct err e;
    err_init(&e);
    if (sandbox_new(f->work, &f->lim, &f->sb, &e) < 0)
      fail_msg("sandbox_new: %s: %s", e.code, e.message);
  }
  return f->sb;
}

struct res {
  int rc;
  int status;
  char *out, *err;
  size_t out_len, err_len;
  struct err e;
};

static void res_free(struct res *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static void run_in(struct fx *f, const char *script, const void *in, size_t in_len, struct res *r) {
  res_free(r);
  err_init(&r->e);
  r->rc = sandbox_run(sb_of(f), script, in, in_len, &r->out, &r->out_len, &r->err, &r->err_len,
                      &r->status, &r->e);
}

static void run(struct fx *f, const char *script, struct res *r) { run_in(f, script, NULL, 0, r); }

/* Run and require an ordinary exit status 0; returns stdout. */
static const char *ok(struct fx *f, const char *script, struct res *r) {
  run(f, script, r);
  if (r->rc != 0 || r->status != 0)
    fail_msg("`%s`: rc %d status %d (%s: %s) stderr: %s", script, r->rc, r->status, r->e.code,
             r->e.message, r->err ? r->err : "");
  return r->out;
}

/* Run and require a failure status (the command ran and was refused something). */
static void refused(struct fx *f, const char *script, struct res *r) {
  run(f, script, r);
  if (r->rc != 0) fail_msg("`%s`: rc %d (%s: %s)", script, r->rc, r->e.code, r->e.message);
  if (r->status == 0) fail_msg("`%s` succeeded; stdout: %s", script, r->out);
}

/* Run and require the limit error `code`. */
static void limited(struct fx *f, const char *script, const char *code, struct res *r) {
  run(f, script, r);
  if (r->rc != -1 || strcmp(r->e.code, code) != 0)
    fail_msg("`%s`: expected %s, got rc %d status %d code '%s' (%s); stderr: %.300s", script, code,
             r->rc, r->status, r->e.code, r->e.message, r->err ? r->err : "");
}

/* Processes of `uid` alive on the host. */
static int procs_of_uid(unsigned uid) {
  DIR *d = opendir("/proc");
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    char path[300], line[256];
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/status", de->d_name);
    FILE *fp = fopen(path, "r");
    if (!fp) continue;
    bool zombie = false;
    unsigned u = 0;
    while (fgets(line, sizeof line, fp)) {
      if (!strncmp(line, "State:", 6) && strchr(line, 'Z')) zombie = true;
      if (sscanf(line, "Uid: %u", &u) == 1) break;
    }
    fclose(fp);
    if (u == uid && !zombie) n++;
  }
  if (d) closedir(d);
  return n;
}

static unsigned sandbox_uid(struct fx *f) {
  struct res r = {0};
  unsigned uid = (unsigned)strtoul(ok(f, "id -u", &r), NULL, 10);
  res_free(&r);
  return uid;
}

/* ---- statuses, capture, stdin -------------------------------------------------- */

static void exit_statuses(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  run(f, "exit 0", &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 0);
  run(f, "exit 7", &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 7);
  run(f, "false", &r);
  assert_int_equal(r.status, 1);
  run(f, "kill -KILL $$", &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 128 + 9);
  run(f, "sh -c 'kill -TERM $$'", &r);
  assert_int_equal(r.status, 128 + 15);
  res_free(&r);
}

static void capture(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  run(f, "echo out; echo err >&2; printf 'a\\0b'", &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.out_len, 7);
  assert_memory_equal(r.out, "out\na\0b", 7);
  assert_string_equal(r.err, "err\n");
  /* out == NULL discards stdout; stderr still comes back */
  res_free(&r);
  err_init(&r.e);
  r.rc = sandbox_run(sb_of(f), "echo gone; echo kept >&2; exit 3", NULL, 0, NULL, NULL, &r.err,
                     &r.err_len, &r.status, &r.e);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 3);
  assert_string_equal(r.err, "kept\n");
  res_free(&r);
}

static void stdin_delivery(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  size_t n = 4u << 20;
  char *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)('a' + i % 26);
  run_in(f, "wc -c", big, n, &r);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.out, "4194304\n");
  /* echoed back whole */
  run_in(f, "cat", big, 1u << 20, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.out_len, 1u << 20);
  assert_memory_equal(r.out, big, 1u << 20);
  /* the child does not read, or reads a little: no deadlock, no SIGPIPE in the daemon */
  run_in(f, "true", big, n, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 0);
  run_in(f, "head -c 5; sleep 0.1", big, n, &r);
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.out, "abcde");
  run_in(f, "exec 0<&-; sleep 0.1; echo closed", big, n, &r);
  assert_string_equal(r.out, "closed\n");
  /* no stdin: /dev/null */
  run(f, "cat; echo end", &r);
  assert_string_equal(r.out, "end\n");
  free(big);
  res_free(&r);
}

/* ---- the work dir and /tmp ----------------------------------------------------- */

static void workdir_persists(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  ok(f, "echo one > f; mkdir -p d/e; echo two > d/e/g; pwd > where", &r);
  char want[256];
  snprintf(want, sizeof want, "one\ntwo\n%s\n", f->work);
  assert_string_equal(ok(f, "cat f d/e/g; echo $HOME", &r), want);
  /* by absolute path too (python3 opens its script that way) */
  assert_string_equal(ok(f, "cat \"$PWD/f\" $HOME/d/e/g", &r), "one\ntwo\n");
  ok(f, "echo 'print(\"py\")' > p.py", &r);
  assert_string_equal(ok(f, "python3 ./p.py", &r), "py\n");
  char path[256];
  snprintf(path, sizeof path, "%s/where", f->work);
  struct err e;
  err_init(&e);
  size_t len = 0;
  char *where = util_read_file(path, &len, &e);
  assert_non_null(where);
  snprintf(want, sizeof want, "%s\n", f->work);
  assert_string_equal(where, want); /* the work dir is at its own path inside */
  free(where);
  /* files the daemon writes there (as root, 0600, in a 0700 dir) are the script's next time */
  snprintf(path, sizeof path, "%s/daemon-dir", f->work);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof path, "%s/daemon-dir/file", f->work);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "root\n", 5), 5);
  close(fd);
  ok(f, "echo appended >> daemon-dir/file; touch daemon-dir/new", &r);
  char *content = util_read_file(path, &len, &e);
  assert_non_null(content);
  assert_string_equal(content, "root\nappended\n");
  free(content);
  res_free(&r);
}

static void private_tmp(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  char marker[64], script[256], host[256];
  snprintf(marker, sizeof marker, "sandbox-marker-%d", (int)getpid());
  snprintf(script, sizeof script, "echo inside > /tmp/%s && ls /tmp", marker);
  snprintf(host, sizeof host, "/tmp/%s", marker);
  unlink(host);
  ok(f, script, &r);
  assert_int_equal(access(host, F_OK), -1); /* not the host's /tmp */
  char *tmpdir = sandbox_tmpdir(f->work);
  snprintf(host, sizeof host, "%s/%s", tmpdir, marker);
  assert_int_equal(access(host, F_OK), 0); /* the session's /tmp, on the host */
  /* and it persists from one command to the next */
  snprintf(script, sizeof script, "cat /tmp/%s", marker);
  assert_string_equal(ok(f, script, &r), "inside\n");
  /* the host's /tmp entries are not visible */
  run(f, "ls -a /tmp | grep -c . ", &r);
  assert_string_equal(r.out, "3\n"); /* . .. marker */
  sandbox_free(f->sb);
  f->sb = NULL;
  assert_int_equal(access(tmpdir, F_OK), -1); /* removed with the sandbox */
  free(tmpdir);
  res_free(&r);
}

/* ---- what a script cannot do ----------------------------------------------------- */

static void cannot_read_data_dir(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  char script[512];
  snprintf(script, sizeof script, "cat %s", f->secret);
  refused(f, script, &r);
  assert_null(strstr(r.out, SECRET));
  snprintf(script, sizeof script, "ls %s", f->data);
  refused(f, script, &r);
  snprintf(script, sizeof script, "cat %s/../data/secret", f->work);
  refused(f, script, &r);
  assert_null(strstr(r.out, SECRET));
  /* nothing of the host but the system directories exists */
  ok(f,
     "for p in /root /home /var/lib /var/log /var/cache /srv /opt /mnt /media /run /boot /work "
     "/sys /old_root; do "
     "[ -e $p ] && echo $p; done; true",
     &r);
  assert_string_equal(r.out, "");
  /* a symlink to it leads nowhere either */
  snprintf(script, sizeof script, "ln -s %s link && cat link", f->secret);
  refused(f, script, &r);
  assert_null(strstr(r.out, SECRET));
  res_free(&r);
}

static void cannot_read_shadow(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  refused(f, "cat /etc/shadow", &r);
  refused(f, "cat /etc/gshadow", &r);
  refused(f, "cat /proc/1/root/etc/shadow", &r);
  /* nor through the supervisor (pid 2, root inside the sandbox) */
  refused(f, "cat /proc/2/root/etc/shadow", &r);
  refused(f, "ls /proc/2/fd", &r);
  refused(f, "cat /proc/2/environ", &r);
  /* /etc holds only what the tools need */
  ok(f, "ls /etc", &r);
  assert_null(strstr(r.out, "shadow"));
  assert_null(strstr(r.out, "ssh"));
  assert_null(strstr(r.out, "sudoers"));
  assert_non_null(strstr(r.out, "passwd"));
  assert_non_null(strstr(r.out, "alternatives"));
  /* the generated passwd knows root, the sandbox user and nobody, no more */
  assert_string_equal(ok(f, "cut -d: -f1 /etc/passwd | tr '\\n' ' '", &r), "root sandbox nobody ");
  res_free(&r);
}

static void no_network(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(ls >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(ls, 8), 0);
  socklen_t al = sizeof a;
  assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
  int port = ntohs(a.sin_port);
  char script[512];
  snprintf(script, sizeof script, "exec 3<>/dev/tcp/127.0.0.1/%d && echo connected", port);
  refused(f, script, &r);
  assert_null(strstr(r.out, "connected"));
  snprintf(script, sizeof script,
           "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", %d), 2); "
           "print(\"connected\")'",
           port);
  refused(f, script, &r);
  assert_null(strstr(r.out, "connected"));
  refused(f, "exec 3<>/dev/tcp/192.0.2.1/80 && echo connected", &r);
  /* the listener never saw a connection */
  assert_int_equal(accept(ls, NULL, NULL), -1);
  assert_int_equal(errno, EAGAIN);
  close(ls);
  /* only a loopback interface of its own */
  ok(f, "ls /sys/class/net 2>/dev/null; awk 'NR>2 {print $1}' /proc/net/dev", &r);
  assert_string_equal(r.out, "lo:\n");
  res_free(&r);
}

static void cannot_write_outside(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  /* one command tries them all and names any that worked */
  char script[2048];
  snprintf(script, sizeof script,
           "for t in 'touch /usr/x' 'touch /usr/bin/x' 'touch /etc/x' 'echo x >> /etc/passwd' "
           "'touch /x' 'mkdir /newdir' 'touch /proc/x' 'touch /dev/x' 'touch /lib/x' "
           "'chmod 777 /etc' 'rm -f /etc/hosts' 'touch /var/x' 'touch %s/../escape' "
           "'ln -s /x /usr/y'; do eval \"$t\" 2>/dev/null && echo \"$t\"; done; "
           "test -e /etc/hosts || echo gone",
           f->work);
  assert_string_equal(ok(f, script, &r), "");
  char path[256];
  snprintf(path, sizeof path, "%s/escape", f->base);
  assert_int_equal(access(path, F_OK), -1);
  res_free(&r);
}

static void unprivileged(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  unsigned uid = sandbox_uid(f);
  assert_true(uid != 0);
  assert_true(uid >= 0x1F0000 && uid < 0x200000);
  char want[64];
  snprintf(want, sizeof want, "%u %u sandbox\n", uid, uid);
  assert_string_equal(ok(f, "echo $(id -u) $(id -g) $(id -un)", &r), want);
  snprintf(want, sizeof want, "%u\n", uid);
  assert_string_equal(ok(f, "id -G", &r), want); /* no supplementary groups */
  /* root's files stay root's */
  refused(f, "echo x > /usr/bin/bash", &r);
  res_free(&r);
}

static void capabilities_and_fds(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  ok(f, "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
     &r);
  assert_string_equal(r.out, "CapInh:\t0000000000000000\n"
                             "CapPrm:\t0000000000000000\n"
                             "CapEff:\t0000000000000000\n"
                             "CapBnd:\t0000000000000000\n"
                             "CapAmb:\t0000000000000000\n"
                             "NoNewPrivs:\t1\n"
                             "Seccomp:\t2\n");
  /* no user namespaces (seccomp), no ptrace */
  refused(f, "unshare -U true", &r);
  refused(f, "python3 -c 'import os; os.unshare(0x10000000)'", &r);
  /* no descriptor of the daemon leaks in (this one is not O_CLOEXEC) */
  int leak = open(f->secret, O_RDONLY);
  assert_true(leak >= 0);
  ok(f, "ls /proc/$$/fd; true", &r); /* not last: bash would exec ls itself */
  assert_string_equal(r.out, "0\n1\n2\n");
  close(leak);
  /* a clean environment */
  setenv("STREAMER_TEST_SECRET", SECRET, 1);
  ok(f, "env | sort | grep -v -E '^(_|SHLVL|PWD|OLDPWD)='", &r);
  char want[512];
  snprintf(want, sizeof want,
           "HOME=%s\nLANG=C.UTF-8\nPATH=/usr/local/bin:/usr/bin:/bin\n"
           "TAR_OPTIONS=--owner=root:0 --group=root:0\nTMPDIR=/tmp\n",
           f->work);
  assert_string_equal(r.out, want);
  unsetenv("STREAMER_TEST_SECRET");
  res_free(&r);
}

/* ---- limits ------------------------------------------------------------------------ */

static void limit_cpu(void **state) {
  struct fx *f = *state;
  f->lim.cpu_seconds = 1;
  struct res r = {0};
  limited(f, "while :; do :; done", "SANDBOX_CPU_LIMIT", &r);
  assert_non_null(strstr(r.e.message, "1 s"));
  res_free(&r);
}

static void limit_wall(void **state) {
  struct fx *f = *state;
  f->lim.command_wall_ms = 1000; /* room for bwrap and bash to start on a loaded machine */
  struct res r = {0};
  unsigned uid = sandbox_uid(f);
  int64_t t0 = util_mono_ms();
  limited(f, "sleep 60 & trap '' TERM; echo started; sleep 30", "SANDBOX_TIMEOUT", &r);
  assert_true(util_mono_ms() - t0 < 8000);
  assert_string_equal(r.out, "started\n"); /* what was captured until the stop */
  assert_non_null(strstr(r.e.message, "1000 ms"));
  assert_int_equal(procs_of_uid(uid), 0); /* nothing survives, background jobs included */
  /* the sandbox went with the command; the next command gets a new one, same uid */
  assert_int_equal(sandbox_starts(f->sb), 1);
  assert_int_equal(sandbox_uid(f), uid);
  assert_int_equal(sandbox_starts(f->sb), 2);
  res_free(&r);
}

static void limit_memory(void **state) {
  struct fx *f = *state;
  f->lim.memory_bytes = 128u << 20;
  struct res r = {0};
  limited(f, "python3 -c 'b = bytearray(512 << 20)'", "SANDBOX_MEMORY_LIMIT", &r);
  assert_non_null(strstr(r.e.message, "128 MiB"));
  limited(f, "x=a; while :; do x=$x$x; done", "SANDBOX_MEMORY_LIMIT", &r);
  /* under the limit is fine */
  ok(f, "python3 -c 'b = bytearray(32 << 20)'", &r);
  res_free(&r);
}

static void limit_processes(void **state) {
  struct fx *f = *state;
  f->lim.processes = 16;
  f->lim.command_wall_ms = 20000;
  struct res r = {0};
  unsigned uid = sandbox_uid(f);
  int64_t t0 = util_mono_ms();
  /* the shell waits (a shell that exited first would end the command, and the bomb with it) */
  limited(f, "bomb() { bomb | bomb & }; bomb; sleep 10", "SANDBOX_PROCESS_LIMIT", &r);
  assert_true(util_mono_ms() - t0 < 15000); /* stopped at the cap, not by the clock */
  assert_non_null(strstr(r.e.message, "16 processes"));
  assert_int_equal(procs_of_uid(uid), 0);
  /* a few processes are fine */
  ok(f, "for i in 1 2 3 4 5; do sleep 0.1 & done; wait", &r);
  res_free(&r);
}

static void limit_output(void **state) {
  struct fx *f = *state;
  f->lim.output_bytes = 64 << 10;
  struct res r = {0};
  limited(f, "yes", "SANDBOX_OUTPUT_LIMIT", &r);
  assert_int_equal(r.out_len, 64 << 10);
  assert_non_null(strstr(r.e.message, "standard output"));
  assert_non_null(strstr(r.e.message, "64 KiB"));
  limited(f, "yes >&2", "SANDBOX_OUTPUT_LIMIT", &r);
  assert_non_null(strstr(r.e.message, "standard error"));
  /* exactly at the cap is fine */
  ok(f, "head -c 65536 /dev/zero", &r);
  assert_int_equal(r.out_len, 65536);
  res_free(&r);
}

static void limit_file_size(void **state) {
  struct fx *f = *state;
  f->lim.file_bytes = 1 << 20;
  struct res r = {0};
  limited(f, "head -c 2M /dev/zero > big", "SANDBOX_DISK_LIMIT", &r);
  assert_non_null(strstr(r.e.message, "file size limit (1 MiB per file)"));
  limited(f, "truncate -s 5G sparse", "SANDBOX_DISK_LIMIT", &r);
  ok(f, "head -c 1M /dev/zero > fits", &r);
  res_free(&r);
}

static void limit_disk(void **state) {
  struct fx *f = *state;
  f->lim.workdir_bytes = 2 << 20;
  f->lim.command_wall_ms = 30000;
  struct res r = {0};
  ok(f, "head -c 1M /dev/urandom > a", &r);
  /* the total, checked after the command */
  limited(f, "head -c 1M /dev/urandom > b; head -c 512K /dev/urandom > c", "SANDBOX_DISK_LIMIT",
          &r);
  assert_non_null(strstr(r.e.message, "over their limit of 2 MiB"));
  ok(f, "rm b c", &r);
  /* /tmp counts too */
  limited(f, "head -c 1536K /dev/urandom > /tmp/t", "SANDBOX_DISK_LIMIT", &r);
  ok(f, "rm /tmp/t", &r);
  /* hard links count once */
  ok(f, "ln a a2; ln a a3", &r);
  /* and while a command runs: stopped within a second or two, not at the wall clock */
  int64_t t0 = util_mono_ms();
  limited(f, "head -c 1536K /dev/urandom > d; sleep 25", "SANDBOX_DISK_LIMIT", &r);
  assert_true(util_mono_ms() - t0 < 10000);
  /* directories nested past the walk's depth are refused, and still removed at the end */
  ok(f, "rm d", &r);
  limited(f, "cd /tmp; for i in $(seq 80); do mkdir d; cd d; done", "SANDBOX_DISK_LIMIT", &r);
  if (!strstr(r.e.message, "nested deeper")) fail_msg("%s", r.e.message);
  char *tmpdir = sandbox_tmpdir(f->work);
  sandbox_free(f->sb);
  f->sb = NULL;
  assert_int_equal(access(tmpdir, F_OK), -1);
  free(tmpdir);
  res_free(&r);
}

static void limit_session(void **state) {
  struct fx *f = *state;
  f->lim.session_wall_ms = 1000;
  f->lim.command_wall_ms = 10000;
  struct res r = {0};
  ok(f, "sleep 0.2", &r);
  limited(f, "sleep 5", "SANDBOX_SESSION_TIMEOUT", &r);
  /* used up: the next one does not even start */
  int64_t t0 = util_mono_ms();
  limited(f, "echo never", "SANDBOX_SESSION_TIMEOUT", &r);
  assert_true(util_mono_ms() - t0 < 100);
  assert_null(strstr(r.out ? r.out : "", "never"));
  res_free(&r);
}

static void command_too_long(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  size_t n = 200000;
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, ':', n);
  s[n] = '\0';
  limited(f, s, "SANDBOX_COMMAND_TOO_LONG", &r);
  free(s);
  res_free(&r);
}

/* ---- one sandbox per session ------------------------------------------------------ */

/* The pid namespace of a command: the same for all commands of one sandbox. */
static char *pidns(struct fx *f, struct res *r) {
  return strdup(ok(f, "readlink /proc/self/ns/pid", r));
}

static void one_sandbox_per_session(void **state) {
  struct fx *f = *state;
  f->lim.command_wall_ms = 15000; /* a command held by a job that was not killed fails soon */
  struct res r = {0};
  unsigned uid = sandbox_uid(f);
  char *ns = pidns(f, &r);
  /* a background job does not outlive its command, nor do processes that left its session */
  assert_string_equal(ok(f,
                         "sleep 60 & setsid sleep 61 & (trap '' HUP TERM; exec sleep 62) & "
                         "sleep 0.3; cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$'",
                         &r),
                      "3\n"); /* they run */
  assert_int_equal(procs_of_uid(uid), 0);
  assert_string_equal(ok(f, "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$'; true", &r),
                      "0\n");
  /* a command cannot end the supervisor: it runs as another uid */
  assert_string_equal(ok(f, "sleep 60 & kill -KILL -1; wait; echo survived", &r), "survived\n");
  refused(f, "kill -KILL 2", &r);
  refused(f, "kill -KILL 1", &r);
  char *ns2 = pidns(f, &r);
  assert_string_equal(ns, ns2); /* all of them in the same sandbox */
  assert_int_equal(sandbox_starts(f->sb), 1);
  free(ns);
  free(ns2);
  res_free(&r);
}

/* bwrap of this test's sandbox (our child, its command line naming the work dir). */
static pid_t bwrap_of(struct fx *f) {
  DIR *d = opendir("/proc");
  pid_t found = -1;
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    char path[300], buf[4096];
    snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
    FILE *fp = fopen(path, "r");
    if (!fp) continue;
    int ppid = -1;
    if (!fgets(buf, sizeof buf, fp)) buf[0] = '\0';
    fclose(fp);
    const char *rp = strrchr(buf, ')');
    if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1 || ppid != getpid()) continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
    fp = fopen(path, "r");
    if (!fp) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    if (!strstr(buf, "bwrap")) continue;
    for (size_t i = 0; i + 1 < n; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    if (strstr(buf, f->work)) found = (pid_t)atoi(de->d_name);
  }
  if (d) closedir(d);
  return found;
}

static void sandbox_restarts(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  ok(f, "echo one > f", &r);
  /* killed from outside between commands: the next command starts a new one, files stay */
  pid_t bw = bwrap_of(f);
  assert_true(bw > 0);
  assert_int_equal(kill(bw, SIGKILL), 0);
  for (int i = 0; i < 200; i++) { /* until it is a zombie (nobody reaps it but the sandbox) */
    char path[64], st[512] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)bw);
    FILE *fp = fopen(path, "r");
    if (fp && fgets(st, sizeof st, fp) && strstr(st, ") Z")) i = 200;
    if (fp) fclose(fp);
    if (i < 200) usleep(10000);
  }
  assert_string_equal(ok(f, "cat f", &r), "one\n");
  assert_int_equal(sandbox_starts(f->sb), 2);
  res_free(&r);
}

/* ---- the corpus' host tools ------------------------------------------------------- */

static void corpus_tools(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  /* bash: here-docs, source, [[ ]], ${v,,}, <<<, arrays, $( ) */
  ok(f, "cat > helper.sh <<'EOF'\nGREETING=Hello\nlower() { echo \"${1,,}\"; }\nEOF\n", &r);
  assert_string_equal(
      ok(f,
         "source ./helper.sh; [[ $GREETING == H* ]] && lower $GREETING; read -r w rest <<< 'word "
         "two'; echo $w; a=(x y z); echo ${#a[@]} $(echo sub)",
         &r),
      "hello\nword\n3 sub\n");
  assert_string_equal(ok(f, "echo 'a:b:c' | awk -F: '{print $2}'", &r), "b\n");
  assert_string_equal(ok(f, "awk --version | head -1 | cut -d' ' -f1,2", &r), "GNU Awk\n");
  assert_string_equal(ok(f, "echo hello | sed 's/h/H/'; echo xyz | sed -E 's/(y)/[\\1]/'", &r),
                      "Hello\nx[y]z\n");
  assert_string_equal(ok(f, "printf 'a\\nb\\n' | grep -c -E '^(a|b)$'", &r), "2\n");
  ok(f,
     "mkdir -p t/etc/rc.local.d && echo 'esxcli' > t/etc/rc.local.d/local.sh && "
     "chmod 1777 t/etc/rc.local.d/local.sh && cd t && tar cvpzf ../state.tgz etc >/dev/null",
     &r);
  assert_string_equal(ok(f, "tar tvzf state.tgz | awk '{print $2}' | sort -u", &r),
                      "root/root\n"); /* TAR_OPTIONS: owned by root as on HPE */
  assert_string_equal(
      ok(f, "mkdir u && tar xvpzf state.tgz -C u >/dev/null && cat u/etc/rc.local.d/local.sh", &r),
      "esxcli\n");
  assert_string_equal(ok(f, "echo zip | gzip -c > z.gz && gunzip -c z.gz && gzip -t z.gz", &r),
                      "zip\n");
  assert_string_equal(ok(f, "date -u -d @0 +%Y-%m-%dT%H:%M:%S", &r), "1970-01-01T00:00:00\n");
  ok(f, "date +%s", &r);
  assert_string_equal(ok(f,
                         "python3 -c 'import xml.etree.ElementTree as ET; "
                         "print(ET.fromstring(\"<a><b>x</b></a>\").find(\"b\").text)'",
                         &r),
                      "x\n");
  ok(f, "printf 'a\\nb\\n' > d.txt && unix2dos d.txt 2>/dev/null", &r);
  assert_string_equal(ok(f, "od -An -c d.txt | tr -s ' '", &r), " a \\r \\n b \\r \\n\n");
  ok(f, "/usr/bin/unix2dos -q d.txt", &r);
  run(f, "xmllint --version", &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.err, "xmllint: using libxml version"));
  assert_string_equal(
      ok(f, "echo '<u><c n=\"1\">v</c></u>' > u.xml && xmllint --xpath 'string(//c/@n)' u.xml", &r),
      "1\n");
  assert_string_equal(
      ok(f, "echo $'x\\ty' | cut -f2; basename /a/b; dirname /a/b; wc -l < d.txt", &r),
      "y\nb\n/a\n2\n");
  res_free(&r);
}

/* ---- sessions in parallel ------------------------------------------------------------- */

struct par {
  char work[160];
  int idx;
  int failures;
  unsigned uid;
};

static void *par_thread(void *arg) {
  struct par *p = arg;
  struct sandbox *sb = NULL;
  struct err e;
  err_init(&e);
  if (sandbox_new(p->work, NULL, &sb, &e) < 0) {
    p->failures++;
    return NULL;
  }
  char in[64], want[128];
  snprintf(in, sizeof in, "input-%d\n", p->idx);
  for (int i = 0; i < 5; i++) {
    char *out = NULL, *er = NULL;
    int st = -1;
    char script[128];
    snprintf(script, sizeof script, "echo %d-%d $(id -u); cat; echo %d >> log", p->idx, i, i);
    if (sandbox_run(sb, script, in, strlen(in), &out, NULL, &er, NULL, &st, &e) < 0 || st != 0)
      p->failures++;
    unsigned uid = 0;
    int a = -1, b = -1;
    if (!out || sscanf(out, "%d-%d %u", &a, &b, &uid) != 3 || a != p->idx || b != i) p->failures++;
    snprintf(want, sizeof want, "%d-%d %u\n%s", p->idx, i, uid, in);
    if (!out || strcmp(out, want) != 0) p->failures++;
    p->uid = uid;
    free(out);
    free(er);
  }
  sandbox_free(sb);
  return NULL;
}

static void parallel_sessions(void **state) {
  struct fx *f = *state;
  enum { N = 4 };
  struct par p[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    memset(&p[i], 0, sizeof p[i]);
    p[i].idx = i;
    snprintf(p[i].work, sizeof p[i].work, "%s/par%d", f->base, i);
    assert_int_equal(mkdir(p[i].work, 0700), 0);
    assert_int_equal(pthread_create(&t[i], NULL, par_thread, &p[i]), 0);
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(p[i].failures, 0);
    for (int j = 0; j < i; j++)
      assert_true(p[i].uid != p[j].uid); /* a uid per session */
    char path[1024];
    snprintf(path, sizeof path, "%s/log", p[i].work);
    struct err e;
    err_init(&e);
    size_t len = 0;
    char *log = util_read_file(path, &len, &e);
    assert_non_null(log);
    assert_string_equal(log, "0\n1\n2\n3\n4\n");
    free(log);
  }
}

/* ---- corpus flows: HPE's own helper scripts, as the interpreter hands them over ------------ */

/* The corpus: $STREAMER_RESEARCH/planscripts (the Makefile sets it), else ../shared/research. */
static const char *corpus_file(const char *rel) {
  static char buf[4096];
  const char *r = getenv("STREAMER_RESEARCH");
  snprintf(buf, sizeof buf, "%s/planscripts/%s", r && *r ? r : "../shared/research", rel);
  return buf;
}

/* The body of the here-document `upload -<<MARKER guest_path` of a corpus script, written to
 * `local` in the work dir the way the interpreter's download would (as root, through
 * sandbox_open_local). */
static void put_heredoc(struct fx *f, const char *script, const char *guest_path,
                        const char *local) {
  struct err e;
  err_init(&e);
  size_t len = 0;
  char *text = util_read_file(corpus_file(script), &len, &e);
  if (!text) fail_msg("corpus script %s: %s", script, e.message);
  char *line = text, *body = NULL, marker[64] = "";
  while (line && *line) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) : strlen(line);
    if (!body && !strncmp(line, "upload -<<", 10)) {
      const char *sp = memchr(line + 10, ' ', n - 10); /* after the marker */
      size_t mlen = sp ? (size_t)(sp - (line + 10)) : 0;
      if (sp && mlen < sizeof marker && !strncmp(sp + 1, guest_path, strlen(guest_path))) {
        memcpy(marker, line + 10, mlen);
        marker[mlen] = '\0';
        body = nl + 1;
      }
    } else if (body && n == strlen(marker) && !strncmp(line, marker, n)) {
      int fd = sandbox_open_local(f->work, local, O_WRONLY | O_CREAT | O_TRUNC, 0644, &e);
      assert_true(fd >= 0);
      size_t blen = (size_t)(line - body);
      assert_int_equal(write(fd, body, blen), (ssize_t)blen);
      close(fd);
      free(text);
      return;
    }
    line = nl ? nl + 1 : NULL;
  }
  fail_msg("%s: no here-document for %s", script, guest_path);
}

static void corpus_esxi_state(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  static const char esxi[] = "esxi/HPE_-_ESXi_6.7_-_unpack_state_-_2018-08-02__80e75252.txt";
  put_heredoc(f, esxi, "/ImageStreamer/esxi_unpack", "./esxi_unpack");
  put_heredoc(f, esxi, "/ImageStreamer/esxi_repack", "./esxi_repack");
  /* state.tgz holding local.tgz holding etc/rc.local.d/local.sh, made by root on the host as
   * `download /state.tgz state.tgz` would leave it */
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "set -e; t=%s/mk; mkdir -p $t/l/etc/rc.local.d $t/s; "
           "printf '#!/bin/sh\\nexit 0\\n' > $t/l/etc/rc.local.d/local.sh; "
           "tar czf $t/s/local.tgz -C $t/l etc; tar czf %s/state.tgz -C $t/s local.tgz",
           f->base, f->work);
  assert_int_equal(system(cmd), 0);
  ok(f, "source ./esxi_unpack", &r);
  assert_non_null(strstr(r.out, "Unpacking ESXi host state complete."));
  ok(f, "echo 'esxcli system hostname set --host=srv42' >> ./local.sh", &r);
  ok(f, "source ./esxi_repack", &r);
  assert_non_null(strstr(r.out, "Repacking ESXi host state complete."));
  /* checked on the host, independently */
  snprintf(cmd, sizeof cmd,
           "tar xzOf %s/state.tgz local.tgz | tar xzO etc/rc.local.d/local.sh | grep -q srv42 && "
           "tar tvzf %s/state.tgz | grep -q ' root/root '",
           f->work, f->work);
  assert_int_equal(system(cmd), 0);
  res_free(&r);
}

static void corpus_windows_unattend(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  static const char win[] = "windows/HPE_-_Windows_-_Unattend_-_Save_-_2019-07-16.txt";
  put_heredoc(f, win, "/ISdeploy/Temp/CreateUnattend.sh", "CreateUnattend.sh");
  put_heredoc(f, win, "/ISdeploy/Temp/ReorderUnattend.py", "ReorderUnattend.py");
  /* the Unattend tree `copy-out /ISdeploy/Unattend .` leaves (as root) */
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "set -e; u=%s/Unattend; c=$u/oobeSystem/Microsoft-Windows-Shell-Setup; "
           "mkdir -p $u/specialize/Microsoft-Windows-Shell-Setup $c/FirstLogonCommands; "
           "echo '<ComputerName>srv42</ComputerName>' > "
           "$u/specialize/Microsoft-Windows-Shell-Setup/ComputerName; "
           "for n in a b; do echo \"<SynchronousCommand wcm:action=\\\"add\\\"><Order>1</Order>"
           "<CommandLine>$n</CommandLine></SynchronousCommand>\" > $c/FirstLogonCommands/$n; done",
           f->work);
  assert_int_equal(system(cmd), 0);
  ok(f, "source ./CreateUnattend.sh", &r);
  ok(f, "python3 ./ReorderUnattend.py", &r);
  assert_non_null(strstr(r.out, "= ordernew 2"));
  char path[256];
  snprintf(path, sizeof path, "%s/Unattend.xml", f->work);
  struct err e;
  err_init(&e);
  size_t len = 0;
  char *xml = util_read_file(path, &len, &e);
  assert_non_null(xml);
  assert_non_null(strstr(xml, "<ComputerName>srv42</ComputerName>"));
  assert_non_null(strstr(xml, "<Order>2</Order>"));
  free(xml);
  res_free(&r);
}

/* ---- local paths -------------------------------------------------------------------- */

static void local_paths(void **state) {
  struct fx *f = *state;
  struct res r = {0};
  struct err e;
  err_init(&e);
  /* before any sandbox exists: the interpreter's download targets */
  int fd = sandbox_open_local(f->work, "./rc.local", O_WRONLY | O_CREAT | O_TRUNC, 0644, &e);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "rc\n", 3), 3);
  close(fd);
  fd = sandbox_open_local(f->work, "/tmp/Unattend.xml", O_WRONLY | O_CREAT | O_TRUNC, 0644, &e);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "<u/>\n", 5), 5);
  close(fd);
  char abs[256];
  snprintf(abs, sizeof abs, "%s/rc.local", f->work);
  fd = sandbox_open_local(f->work, abs, O_RDONLY, 0, &e);
  assert_true(fd >= 0);
  close(fd);
  fd = sandbox_open_local(f->work, ".", O_RDONLY | O_DIRECTORY, 0, &e);
  assert_true(fd >= 0);
  close(fd);
  /* the script sees and edits both */
  assert_string_equal(
      ok(f, "unix2dos -q /tmp/Unattend.xml && echo more >> rc.local && cat rc.local", &r),
      "rc\nmore\n");
  fd = sandbox_open_local(f->work, "/tmp/Unattend.xml", O_RDONLY, 0, &e);
  assert_true(fd >= 0);
  char buf[16] = {0};
  assert_int_equal(read(fd, buf, sizeof buf), 6);
  assert_string_equal(buf, "<u/>\r\n");
  close(fd);
  /* nothing else */
  ok(f, "mkdir d", &r);
  static const char *const outside[] = {
      "/etc/passwd", "../data/secret", "/tmp/../etc/shadow", "d/../../data/secret", "/tmpx", NULL};
  for (const char *const *p = outside; *p; p++) {
    err_clear(&e);
    fd = sandbox_open_local(f->work, *p, O_RDONLY, 0, &e);
    if (fd >= 0) fail_msg("%s opened", *p);
    assert_string_equal(e.code, "SANDBOX_PATH_OUTSIDE");
  }
  /* symlinks the script leaves do not lead out */
  char script[512];
  snprintf(script, sizeof script, "ln -s %s evil; ln -s ../data/secret evil2; ln -s /etc evil3",
           f->secret);
  ok(f, script, &r);
  static const char *const links[] = {"evil", "./evil2", "evil3/passwd", NULL};
  for (const char *const *p = links; *p; p++) {
    err_clear(&e);
    fd = sandbox_open_local(f->work, *p, O_RDONLY, 0, &e);
    if (fd >= 0) fail_msg("%s opened", *p);
    assert_string_equal(e.code, "SANDBOX_PATH_OUTSIDE");
  }
  err_clear(&e);
  fd = sandbox_open_local(f->work, "missing", O_RDONLY, 0, &e);
  assert_int_equal(fd, -1);
  assert_string_equal(e.code, "LOCAL_FILE_ERROR");
  err_clear(&e);
  res_free(&r);
}

static void new_refusals(void **state) {
  struct fx *f = *state;
  char colon[160];
  snprintf(colon, sizeof colon, "%s/a:b", f->base);
  assert_int_equal(mkdir(colon, 0700), 0);
  const char *const bad[] = {"/",    "/usr/share",       "/etc", "/proc",
                             "/tmp", "/nonexistent/dir", colon,  NULL};
  for (const char *const *p = bad; *p; p++) {
    struct sandbox *sb = (struct sandbox *)1;
    struct err e;
    err_init(&e);
    if (sandbox_new(*p, NULL, &sb, &e) == 0) fail_msg("sandbox_new(%s) succeeded", *p);
    assert_null(sb);
    assert_string_equal(e.code, "SANDBOX_UNAVAILABLE");
    err_clear(&e);
  }
}

static void available(void **state) {
  (void)state;
  char why[512] = "";
  int a = sandbox_available(why, sizeof why);
  if (!a) fail_msg("sandbox unavailable: %s", why);
}

int main(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "test_sandbox: must run as root (streamerd does)\n");
    return 1;
  }
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(available),
      T(exit_statuses),
      T(capture),
      T(stdin_delivery),
      T(workdir_persists),
      T(private_tmp),
      T(cannot_read_data_dir),
      T(cannot_read_shadow),
      T(no_network),
      T(cannot_write_outside),
      T(unprivileged),
      T(capabilities_and_fds),
      T(limit_cpu),
      T(limit_wall),
      T(one_sandbox_per_session),
      T(sandbox_restarts),
      T(limit_memory),
      T(limit_processes),
      T(limit_output),
      T(limit_file_size),
      T(limit_disk),
      T(limit_session),
      T(command_too_long),
      T(corpus_tools),
      T(parallel_sessions),
      T(corpus_esxi_state),
      T(corpus_windows_unattend),
      T(local_paths),
      T(new_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
