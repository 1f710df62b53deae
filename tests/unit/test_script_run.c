/* test_script_run.c — plan-script sessions over real disk images built in
 * the test with Debian's tools (sfdisk, mkfs.fat, mkfs.ext4 -d, mtools,
 * tar), corpus-style scripts run natively, and the results checked with
 * independent tools (mtools, debugfs, e2fsck -fn, fsck.vfat -n). Host
 * commands run through a plain bash in the work directory (the test's
 * host_run hook), except in test_real_sandbox, which uses bubblewrap.
 * Needs root only for the real-sandbox test. */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

// clang-format on

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/fs.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/vol.h"

/* ---- shell helpers ---------------------------------------------------------- */

static char dir[256]; /* the test's scratch directory */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* stdout of a shell command (malloc'd) */
static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    memcpy(buf + len, chunk, n);
    len += n;
  }
  pclose(p);
  if (!buf)
    buf = strdup("");
  else
    buf[len] = 0;
  return buf;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char *buf = calloc(1, 1 << 20);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* ---- host commands without the sandbox (the tests' hook) ----------------- */

static int plain_host(void *opaque, const char *script, const void *in, size_t in_len, char **out,
                      size_t *out_len, char **errout, size_t *errout_len, int *status,
                      struct err *e) {
  const char *workdir = opaque;
  char inf[512], outf[512], errf[512];
  snprintf(inf, sizeof inf, "%s/host.in", dir);
  snprintf(outf, sizeof outf, "%s/host.out", dir);
  snprintf(errf, sizeof errf, "%s/host.err", dir);
  FILE *f = fopen(inf, "w");
  if (in_len) fwrite(in, 1, in_len, f);
  fclose(f);
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(workdir)) _exit(127);
    int i = open(inf, O_RDONLY), o = open(outf, O_WRONLY | O_CREAT | O_TRUNC, 0600),
        er = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(i, 0);
    dup2(o, 1);
    dup2(er, 2);
    execl("/bin/bash", "bash", "-c", script, (char *)NULL);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  char *o = read_text(outf), *er = read_text(errf);
  if (out) {
    *out = o;
    *out_len = strlen(o);
  } else {
    free(o);
  }
  if (errout) {
    *errout = er;
    *errout_len = strlen(er);
  } else {
    free(er);
  }
  (void)e;
  return 0;
}

/* ---- sessions ------------------------------------------------------------------ */

static char logbuf[1 << 20];
static size_t loglen;
static void log_cb(void *opaque, const char *text, size_t len) {
  (void)opaque;
  if (loglen + len >= sizeof logbuf) len = sizeof logbuf - loglen - 1;
  memcpy(logbuf + loglen, text, len);
  loglen += len;
  logbuf[loglen] = 0;
}

struct env {
  char img[512], work[512];
  struct vol *vol;
  struct fs_disk *disk;
  struct script_session *s;
};

static void env_open(struct env *v, const char *img, int real_sandbox,
                     enum script_guestfish_mode gm) {
  struct err e;
  err_init(&e);
  snprintf(v->img, sizeof v->img, "%s", img);
  snprintf(v->work, sizeof v->work, "%s/work", dir);
  sh("rm -rf '%s' '%s.tmp' && mkdir -p '%s'", v->work, v->work, v->work);
  if (vol_file_open(img, 0, &v->vol, &e)) fail_msg("vol_file_open: %s", e.message);
  if (fs_disk_open(v->vol, 0, &v->disk, &e)) fail_msg("fs_disk_open: %s", e.message);
  struct script_opts o;
  memset(&o, 0, sizeof o);
  o.workdir = v->work;
  o.log = log_cb;
  o.guestfish = gm;
  o.volume_info = "test image";
  if (!real_sandbox) {
    o.host_run = plain_host;
    o.host_opaque = v->work;
  }
  loglen = 0;
  logbuf[0] = 0;
  if (script_session_new(v->disk, &o, &v->s, &e)) fail_msg("session: %s", e.message);
}

static void env_close(struct env *v) {
  struct err e;
  err_init(&e);
  if (v->s && script_session_close(v->s, &e)) fail_msg("close: %s", e.message);
  v->s = NULL;
  fs_disk_close(v->disk);
  vol_close(v->vol);
}

/* Run a script; it must succeed. */
static void run_ok(struct env *v, const char *name, const char *text) {
  struct err e;
  err_init(&e);
  if (script_session_run(v->s, name, text, strlen(text), &e))
    fail_msg("%s failed: %s (%s)\nlog:\n%s", name, e.message, e.code, logbuf);
}

/* Run a script; it must fail with `code`; returns the message. */
static void run_fail(struct env *v, const char *text, const char *code, const char *msg_part) {
  struct err e;
  err_init(&e);
  if (script_session_run(v->s, "t", text, strlen(text), &e) == 0)
    fail_msg("succeeded, want %s\nlog:\n%s", code, logbuf);
  if (strcmp(e.code, code) != 0 || (msg_part && !strstr(e.message, msg_part)))
    fail_msg("failed with %s: %s; want %s containing \"%s\"", e.code, e.message, code,
             msg_part ? msg_part : "");
  err_clear(&e);
}

static char *work_file(struct env *v, const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", v->work, name);
  return read_text(p);
}

/* ---- images ---------------------------------------------------------------- */

/* GPT, 64 MiB: p1 ESP FAT16 (sectors 2048+32768), p2 ext4 (34816+81920)
 * holding a RHEL-like root. */
#define P1_OFF (2048ULL * 512)
#define P2_OFF (34816ULL * 512)
static void make_gpt_image(const char *img) {
  char root[512];
  snprintf(root, sizeof root, "%s/rootfs", dir);
  sh("rm -rf '%s' && mkdir -p '%s'/etc/sysconfig/network-scripts '%s'/etc/ssh '%s'/etc/rc.d "
     "'%s'/usr/bin '%s'/etc/systemd/system/multi-user.target.wants '%s'/home/alice",
     root, root, root, root, root, root, root);
  sh("cd '%s' && ln -s usr/bin bin && printf 'ID=\"rhel\"\\nVERSION_ID=\"7.4\"\\n"
     "PRETTY_NAME=\"Red Hat Enterprise Linux Server 7.4 (Maipo)\"\\n' > etc/os-release && "
     "printf '/dev/sda2 / ext4 defaults 1 1\\n' > etc/fstab && echo 127.0.0.1 localhost > "
     "etc/hosts && echo old-host > etc/hostname && echo 0123456789abcdef > etc/machine-id && "
     "printf 'NETWORKING=yes\\n' > etc/sysconfig/network && for k in rsa ecdsa ed25519; do echo "
     "key > etc/ssh/ssh_host_${k}_key; done && echo cfg > etc/ssh/sshd_config && "
     "printf '#!/bin/bash\\ntouch /var/lock/subsys/local\\n' > etc/rc.d/rc.local && "
     "printf 'DEVICE=eth0\\n' > etc/sysconfig/network-scripts/ifcfg-eth0 && printf "
     "'DEVICE=lo\\n' > etc/sysconfig/network-scripts/ifcfg-lo && echo hi > home/alice/notes "
     "&& printf 'server 0.pool.ntp.org\\n' > etc/chrony.conf && mkdir -p etc/selinux etc/init.d "
     "var/log var/mail root && printf 'SELINUX=enforcing\\n' > etc/selinux/config && printf "
     "'root:x:0:0:root:/root:/bin/bash\\nalice:x:1000:1000::/home/alice:/bin/bash\\n' > "
     "etc/passwd && printf 'root:x:0:\\nalice:x:1000:\\n' > etc/group && printf "
     "'root:*:1::::::\\nalice:*:1::::::\\n' > etc/shadow && echo 'nameserver 10.0.0.2' > "
     "etc/resolv.conf && touch var/log/messages var/log/wtmp",
     root);
  assert_int_equal(
      sh("rm -f '%s' && truncate -s 64M '%s' && printf 'label: gpt\\n"
         "start=2048, size=32768, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\n"
         "start=34816, size=81920, type=0FC63DAF-8483-4772-8E69-3D69D8477DE4\\n' | "
         "sfdisk -q '%s' && mkfs.fat -F 16 --offset=2048 '%s' 16384 >/dev/null 2>&1 && "
         "mkfs.ext4 -q -F -E offset=%llu -d '%s' '%s' 40M && "
         "MTOOLS_SKIP_CHECK=1 mmd -i '%s@@1M' ::/EFI ::/EFI/BOOT && "
         "printf 'UEFI loader message\\n' > '%s/msg' && "
         "MTOOLS_SKIP_CHECK=1 mcopy -i '%s@@1M' '%s/msg' ::/EFI/BOOT/message.txt",
         img, img, img, img, P2_OFF, root, img, img, dir, img, dir),
      0);
}

/* debugfs on the ext4 partition, extracted */
static char *debugfs(const char *img, const char *req) {
  sh("dd if='%s' of='%s/p2.img' bs=512 skip=34816 count=81920 status=none", img, dir);
  return sh_out("debugfs -R '%s' '%s/p2.img' 2>/dev/null", req, dir);
}

static char *mtype(const char *img, const char *off, const char *path) {
  return sh_out("MTOOLS_SKIP_CHECK=1 mtype -i '%s@@%s' '::%s' 2>&1", img, off, path);
}

/* MBR, 96 MiB, like an ESXi boot disk: p1 vfat (ESP), p2 extended with
 * p5 and p6 FAT16 bootbanks (boot.cfg, state.tgz holding local.tgz holding
 * etc/rc.local.d/local.sh) and p7 FAT32 "ISDEPLOY". */
static void make_esxi_image(const char *img) {
  char st[512];
  snprintf(st, sizeof st, "%s/state", dir);
  assert_int_equal(
      sh("rm -rf '%s' && mkdir -p '%s/etc/rc.local.d' && cd '%s' && printf '#!/bin/sh\\nexit 0\\n' "
         "> etc/rc.local.d/local.sh && tar czf local.tgz etc && tar czf state.tgz local.tgz && "
         "printf 'bootstate=0\\nupdated=3\\nkernelopt=no-auto-partition\\nmodules=a.b --- "
         "state.tgz\\n' > boot5.cfg && printf 'bootstate=0\\nupdated=1\\nmodules=a.b --- "
         "state.tgz\\n' > boot6.cfg && printf 'x' > jumpstrt && printf '' | gzip > jumpstrt.gz && "
         "printf 'opts' | gzip > useropts.gz",
         st, st, st),
      0);
  assert_int_equal(
      sh("rm -f '%s' && truncate -s 96M '%s' && printf 'label: dos\\n"
         "start=2048, size=8192, type=ef\\nstart=10240, type=5\\n"
         "start=12288, size=32768, type=6\\nstart=47104, size=32768, type=6\\n"
         "start=81920, size=98304, type=c\\n' | sfdisk -q '%s' && "
         "mkfs.fat --offset=2048 '%s' 4096 >/dev/null 2>&1 && "
         "mkfs.fat -F 16 --offset=12288 '%s' 16384 >/dev/null 2>&1 && "
         "mkfs.fat -F 16 --offset=47104 '%s' 16384 >/dev/null 2>&1 && "
         "mkfs.fat -F 32 -s 1 -n ISDEPLOY --offset=81920 '%s' 49152 >/dev/null 2>&1 && "
         "cd '%s' && M='MTOOLS_SKIP_CHECK=1' && "
         "env $M mcopy -i '%s@@%llu' boot5.cfg ::/boot.cfg && "
         "env $M mcopy -i '%s@@%llu' state.tgz ::/state.tgz && "
         "env $M mcopy -i '%s@@%llu' jumpstrt ::/jumpstrt && "
         "env $M mcopy -i '%s@@%llu' jumpstrt.gz ::/jumpstrt.gz && "
         "env $M mcopy -i '%s@@%llu' useropts.gz ::/useropts.gz && "
         "env $M mcopy -i '%s@@%llu' boot6.cfg ::/boot.cfg",
         img, img, img, img, img, img, img, st, img, 12288ULL * 512, img, 12288ULL * 512, img,
         12288ULL * 512, img, 12288ULL * 512, img, 12288ULL * 512, img, 47104ULL * 512),
      0);
}

/* ---- fixtures ---------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/test_script_run.XXXXXX");
  assert_non_null(mkdtemp(dir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  sh("rm -rf '%s' '%s/work.tmp'", dir, dir);
  return 0;
}

/* ======================================================================= */
/* tests                                                                    */
/* ======================================================================= */

/* The Developer bundle's UEFI personalization, in its own words (§8.1 of
 * hpe-artifacts.md), with attributes: message.txt in the FAT16 ESP holds the
 * values (checked with mtools); the password is masked in the log. */
static void test_developer_uefi(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  json_t *values = json_pack("{s:s,s:s,s:s}", "ExampleString1", "Hello World!", "ExamplePassword",
                             "s3cr3t-pw", "ExampleNumber1", "42");
  json_t *secrets = json_pack("[s]", "ExamplePassword");
  script_session_set_attributes(v.s, values, secrets);
  static const char script[] = "# Example Image Streamer Plan Script for UEFI deployment demo\n"
                               "\n"
                               "!echo \"File Systems in Golden Image:\"\n"
                               "list-filesystems\n"
                               "\n"
                               "!echo \"Mounting File Systems:\"\n"
                               "mount /dev/sda1 /\n"
                               "\n"
                               "upload -<<EOF /EFI/BOOT/message.txt\n"
                               "\n"
                               "UEFI loader message.txt has been personalized!\n"
                               "    ExampleString1: @ExampleString1@\n"
                               "    ExampleString3: @ExampleString3:Script Default@\n"
                               "    ExampleNumber1: @ExampleNumber1@\n"
                               "    ExamplePassword: @ExamplePassword@\n"
                               "\n"
                               "EOF\n"
                               "\n"
                               "umount /\n";
  run_ok(&v, "HPE - Developer 1.0 - example UEFI personalization script", script);
  env_close(&v);
  char *m = mtype(img, "1M", "/EFI/BOOT/message.txt");
  assert_string_equal(m, "\nUEFI loader message.txt has been personalized!\n"
                         "    ExampleString1: Hello World!\n"
                         "    ExampleString3: Script Default\n"
                         "    ExampleNumber1: 42\n"
                         "    ExamplePassword: s3cr3t-pw\n\n");
  free(m);
  /* the log: expansion with the password masked, command output */
  assert_non_null(strstr(logbuf, "ExamplePassword: ********"));
  assert_null(strstr(logbuf, "s3cr3t-pw"));
  assert_non_null(strstr(logbuf, "/dev/sda1: vfat\n/dev/sda2: ext4\n"));
  assert_non_null(strstr(logbuf, "File Systems in Golden Image:\n"));
  assert_non_null(strstr(logbuf, "[7] mount /dev/sda1 /\n"));
  assert_int_equal(sh("dd if='%s' of='%s/p1.img' bs=512 skip=2048 count=32768 status=none && "
                      "fsck.vfat -n '%s/p1.img' >/dev/null 2>&1",
                      img, dir, dir),
                   0);
  json_decref(values);
  json_decref(secrets);
}

/* Output formats scripts parse: byte for byte as guestfish prints them. */
static void test_output_formats(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "formats",
         "list-filesystems | cat > ./list-fs\n"
         "list-devices | cat > ./devs\n"
         "list-partitions | cat > ./parts\n"
         "version | cat > ./version\n"
         "inspect-os | cat > ./OS-Dev\n"
         "mount /dev/sda2 /\n"
         "cat /etc/os-release | awk -F '\"' '/^ID=/ {print $2}' > ./OS-Type\n"
         "cat /etc/hostname | od -c > ./cat-od\n"
         "ls /etc/ssh | cat > ./ls\n"
         "statvfs / | cut -d: -f1 | tr '\\n' ' ' > ./statvfs\n"
         "exists /etc/fstab | cat > ./t1\n"
         "is-dir /etc/fstab | cat >> ./t1\n"
         "is-file /bin | cat >> ./t1\n"
         "is-dir /bin followsymlinks:true | cat >> ./t1\n"
         "exists /nope | cat >> ./t1\n"
         "echo a \"b c\"  'd' | cat > ./echo\n"
         "<!awk '{print \"-inspect-get-osinfo\", $NF}' ./OS-Dev\n"
         "inspect-get-distro /dev/sda2 | cat > ./distro\n"
         "inspect-get-product-name /dev/sda2 | cat >> ./distro\n"
         "inspect-get-major-version /dev/sda2 | cat >> ./distro\n"
         "inspect-get-minor-version /dev/sda2 | cat >> ./distro\n"
         "inspect-get-osinfo /dev/sda2 | cat >> ./distro\n"
         "inspect-get-type /dev/sda2 | cat >> ./distro\n"
         "mountpoints | cat > ./mp\n"
         "filesize /etc/hostname | cat > ./size\n"
         "umount /\n");
  char *f;
  assert_string_equal((f = work_file(&v, "list-fs")), "/dev/sda1: vfat\n/dev/sda2: ext4\n");
  free(f);
  assert_string_equal((f = work_file(&v, "devs")), "/dev/sda\n");
  free(f);
  assert_string_equal((f = work_file(&v, "parts")), "/dev/sda1\n/dev/sda2\n");
  free(f);
  assert_string_equal((f = work_file(&v, "version")),
                      "major: 1\nminor: 48\nrelease: 6\nextra: streamer\n");
  free(f);
  assert_string_equal((f = work_file(&v, "OS-Dev")), "/dev/sda2\n");
  free(f);
  assert_string_equal((f = work_file(&v, "OS-Type")), "rhel\n");
  free(f);
  /* cat: the content and guestfish's newline after it */
  assert_string_equal((f = work_file(&v, "cat-od")),
                      "0000000   o   l   d   -   h   o   s   t  \\n  \\n\n0000012\n");
  free(f);
  assert_string_equal((f = work_file(&v, "ls")),
                      "ssh_host_ecdsa_key\nssh_host_ed25519_key\nssh_host_rsa_key\nsshd_config\n");
  free(f);
  assert_string_equal((f = work_file(&v, "statvfs")),
                      "bsize frsize blocks bfree bavail files ffree favail fsid flag namemax ");
  free(f);
  assert_string_equal((f = work_file(&v, "t1")), "true\nfalse\nfalse\ntrue\nfalse\n");
  free(f);
  assert_string_equal((f = work_file(&v, "echo")), "a b c d\n");
  free(f);
  assert_string_equal((f = work_file(&v, "distro")),
                      "rhel\nRed Hat Enterprise Linux Server 7.4 (Maipo)\n7\n4\nrhel7.4\nlinux\n");
  free(f);
  assert_string_equal((f = work_file(&v, "mp")), "/dev/sda2: /\n");
  free(f);
  assert_string_equal((f = work_file(&v, "size")), "9\n");
  free(f);
  assert_non_null(strstr(logbuf, "[17<1] -inspect-get-osinfo /dev/sda2\nrhel7.4\n"));
  env_close(&v);
}

/* A RHEL-legacy deploy and capture on the ext4 root: here-documents,
 * glob rm-rf, machine-id, write-append, ln-s, chmod (decimal and octal),
 * download / host edit / upload of rc.local, copy-out / host edit /
 * copy-in of network-scripts, cp-a, mv; checked with debugfs and e2fsck. */
static void test_rhel_legacy(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  json_t *values = json_pack("{s:s,s:s}", "HostName", "web01", "NtpServer", "10.1.1.1");
  script_session_set_attributes(v.s, values, NULL);
  json_decref(values);
  static const struct script_step steps[] = {
      {"2", "configure",
       "upload -<<END /etc/sysconfig/network\n"
       "NETWORKING=yes\n"
       "HOSTNAME=@HostName@\n"
       "END\n"
       "upload -<<END /etc/hostname\n"
       "@HostName@\n"
       "END\n"
       "upload -<<END /etc/resolv.conf\n"
       "END\n"
       "-glob rm-rf /etc/ssh/ssh_host_*\n"
       "rm /etc/machine-id\n"
       "touch /etc/machine-id\n"
       "write-append /etc/chrony.conf \"server @NtpServer:10.0.0.1@ iburst\\n\"\n"
       "upload -<<END /etc/systemd/system/firstboot.service\n"
       "[Unit]\n"
       "Description=first boot\n"
       "END\n"
       "ln-s /etc/systemd/system/firstboot.service "
       "/etc/systemd/system/multi-user.target.wants/firstboot.service\n"
       "download /etc/rc.d/rc.local ./rc.local\n"
       "!echo 'sh /temp/firstboot.sh' >> ./rc.local\n"
       "upload ./rc.local /etc/rc.d/rc.local\n"
       "chmod 0755 /etc/rc.d/rc.local\n"
       "chmod 755 /etc/sysconfig/network\n"
       "mkdir-p /temp/ImageStreamer\n"
       "cp-a /etc/hosts /temp/hosts.orig\n"
       "mv /temp/hosts.orig /temp/ImageStreamer/\n"},
      {"3", "generalize network",
       "!mkdir -p new_network\n"
       "copy-out /etc/sysconfig/network-scripts/ new_network/\n"
       "!rm -f new_network/network-scripts/ifcfg-eth0\n"
       "rm-rf /etc/sysconfig/network-scripts\n"
       "copy-in new_network/network-scripts/ /etc/sysconfig/\n"
       "copy-out /home .\n"},
      {"1", "mount",
       "vgs\n"
       "lvs\n"
       "-mount /dev/rhel/root /\n"
       "-mount /dev/sda2 /\n"
       "mkdir-p /boot/efi\n"
       "mount /dev/sda1 /boot/efi\n"
       "mkdir-p /boot/efi/EFI/HPE/isdeploy\n"},
      {"4", "unmount",
       "umount /boot/efi\n"
       "unmount /\n"},
  };
  struct err e;
  err_init(&e);
  if (script_session_run_plan(v.s, steps, 4, &e))
    fail_msg("plan failed: %s\nlog:\n%s", e.message, logbuf);
  char *f = work_file(&v, "home/alice/notes");
  assert_non_null(f);
  assert_string_equal(f, "hi\n");
  free(f);
  env_close(&v);
  /* the log: steps in serialNumber order, each with its expansion and time */
  char *p1 = strstr(logbuf, "== Build step 1 of 4: \"mount\" (serialNumber 1)");
  char *p2 = strstr(logbuf, "== Build step 2 of 4: \"configure\" (serialNumber 2)");
  char *p4 = strstr(logbuf, "== Build step 4 of 4: \"unmount\" (serialNumber 4)");
  assert_true(p1 && p2 && p4 && p1 < p2 && p2 < p4);
  assert_non_null(strstr(logbuf, "HOSTNAME=web01\n"));
  assert_non_null(strstr(logbuf, "[3] -mount /dev/rhel/root /\n"));
  assert_non_null(strstr(logbuf, "error ignored ('-' prefix)"));
  assert_non_null(strstr(logbuf, "-- step 4 done:"));
  assert_non_null(strstr(logbuf, "== Build plan succeeded: 4 steps"));
  /* the filesystem, by debugfs */
  char *o = debugfs(img, "cat /etc/sysconfig/network");
  assert_string_equal(o, "NETWORKING=yes\nHOSTNAME=web01\n");
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/hostname")), "web01\n");
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/resolv.conf")), "");
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/machine-id")), "");
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/chrony.conf")),
                      "server 0.pool.ntp.org\nserver 10.1.1.1 iburst\n");
  free(o);
  o = debugfs(img, "ls /etc/ssh");
  assert_null(strstr(o, "ssh_host_"));
  assert_non_null(strstr(o, "sshd_config"));
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/systemd/system/firstboot.service")),
                      "[Unit]\nDescription=first boot\n");
  free(o);
  o = debugfs(img, "stat /etc/systemd/system/multi-user.target.wants/firstboot.service");
  assert_non_null(strstr(o, "Fast link dest: \"/etc/systemd/system/firstboot.service\""));
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/rc.d/rc.local")),
                      "#!/bin/bash\ntouch /var/lock/subsys/local\nsh /temp/firstboot.sh\n");
  free(o);
  o = debugfs(img, "stat /etc/rc.d/rc.local");
  assert_non_null(strstr(o, "Mode:  0755"));
  free(o);
  o = debugfs(img, "stat /etc/sysconfig/network"); /* decimal 755 = octal 01363, as guestfish */
  assert_non_null(strstr(o, "Mode:  01363"));
  free(o);
  o = debugfs(img, "ls /etc/sysconfig/network-scripts");
  assert_null(strstr(o, "ifcfg-eth0"));
  assert_non_null(strstr(o, "ifcfg-lo"));
  free(o);
  assert_string_equal((o = debugfs(img, "cat /temp/ImageStreamer/hosts.orig")),
                      "127.0.0.1 localhost\n");
  free(o);
  assert_int_equal(sh("e2fsck -fn '%s/p2.img' >/dev/null 2>&1", dir), 0);
  assert_int_equal(sh("MTOOLS_SKIP_CHECK=1 mdir -i '%s@@1M' ::/EFI/HPE/isdeploy >/dev/null", img),
                   0);
}

/* ESXi-like bootbanks: the mount step picks the bank with a host script
 * and <!cat ./guestfishmount; state.tgz is unpacked, edited and repacked;
 * compress-out gzip; statvfs; checked with mtools and tar. */
static void test_esxi_bootbank(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/esxi.img", dir);
  make_esxi_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "HPE - ESXi - mount",
         "echo \"Devices:\"\n"
         "-list-devices\n"
         "-list-partitions\n"
         "-list-filesystems\n"
         "mount /dev/sda5 /\n"
         "-statvfs /\n"
         "download /boot.cfg boot5.cfg\n"
         "-download /onetime.tgz onetime.tgz\n"
         "upload -<<END /getpartition\n"
         "#! /bin/bash\n"
         "boot6=$(grep -i ^bootstate ./boot6.cfg | awk -F'=' '{print $2}')\n"
         "boot5=$(grep -i ^bootstate ./boot5.cfg | awk -F'=' '{print $2}')\n"
         "boot6update=$(grep -i ^updated ./boot6.cfg | awk -F'=' '{print $2}')\n"
         "boot5update=$(grep -i ^updated ./boot5.cfg | awk -F'=' '{print $2}')\n"
         "if [ $boot6 -eq 0 ] && [ $boot6update -gt $boot5update ]\n"
         "then\n"
         "  echo \"mount /dev/sda6 /\" >> guestfishmount\n"
         "elif [ $boot5 -eq 0 ]\n"
         "then\n"
         "  echo \"mount /dev/sda5 /\" >> guestfishmount\n"
         "fi\n"
         "END\n"
         "download /getpartition getpartition\n"
         "umount /\n"
         "mount /dev/sda6 /\n"
         "download /boot.cfg boot6.cfg\n"
         "-download /onetime.tgz onetime.tgz\n"
         "umount /\n"
         "!source ./getpartition\n"
         "<!cat ./guestfishmount\n");
  run_ok(&v, "unpack, configure, repack",
         "rm-f /getpartition\n"
         "download /state.tgz ./state.tgz\n"
         "!mkdir -p x && cd x && tar xzf ../state.tgz && tar xzf local.tgz\n"
         "!echo 'esxcli system hostname set --host=esx01' >> x/etc/rc.local.d/local.sh\n"
         "!cd x && tar czf local.tgz etc && tar czf ../state.tgz local.tgz\n"
         "upload state.tgz /state.tgz\n"
         "touch /jumpstrt\n"
         "compress-out gzip /jumpstrt ./jumpstrt.gz\n"
         "upload ./jumpstrt.gz /jumpstrt.gz\n"
         "ls /\n"
         "umount /\n");
  env_close(&v);
  /* onetime.tgz does not exist: no empty local file was left behind */
  char p[1024];
  snprintf(p, sizeof p, "%s/onetime.tgz", v.work);
  assert_int_equal(access(p, F_OK), -1);
  /* sda5 was chosen (updated=3 > 1) */
  char *o = sh_out("cd '%s' && MTOOLS_SKIP_CHECK=1 mcopy -n -i '%s@@%llu' ::/state.tgz s.tgz && "
                   "rm -rf u && mkdir u && cd u && tar xzf ../s.tgz && tar xzf local.tgz && cat "
                   "etc/rc.local.d/local.sh",
                   dir, img, 12288ULL * 512);
  assert_string_equal(o, "#!/bin/sh\nexit 0\nesxcli system hostname set --host=esx01\n");
  free(o);
  o = sh_out("cd '%s' && MTOOLS_SKIP_CHECK=1 mcopy -n -i '%s@@%llu' ::/jumpstrt.gz j.gz && gzip "
             "-dc j.gz | od -c",
             dir, img, 12288ULL * 512);
  assert_string_equal(o, "0000000   x\n0000001\n");
  free(o);
  o = sh_out("MTOOLS_SKIP_CHECK=1 mdir -b -i '%s@@%llu' ::/ | sort", img, 12288ULL * 512);
  assert_string_equal(o,
                      "::/boot.cfg\n::/jumpstrt\n::/jumpstrt.gz\n::/state.tgz\n::/useropts.gz\n");
  free(o);
  assert_non_null(strstr(logbuf, "[30<1] mount /dev/sda5 /\n"));
  assert_non_null(strstr(logbuf, "bsize: "));
  assert_non_null(strstr(logbuf, "boot.cfg\njumpstrt\njumpstrt.gz\nstate.tgz\nuseropts.gz\n"));
  assert_int_equal(sh("dd if='%s' of='%s/p5.img' bs=512 skip=12288 count=32768 status=none && "
                      "fsck.vfat -n '%s/p5.img' >/dev/null 2>&1",
                      img, dir, dir),
                   0);
}

/* Windows ISDEPLOY (FAT32 label ISDEPLOY at /dev/sda7 here): the Unattend
 * tree, a conditional <! mv, copy-out, a host script assembling the XML,
 * upload back; checked with mtools. */
static void test_windows_isdeploy(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/esxi.img", dir);
  make_esxi_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  json_t *values = json_pack("{s:s,s:s}", "Hostname", "WIN01", "RemoteDesktop", "Allow");
  script_session_set_attributes(v.s, values, NULL);
  json_decref(values);
  run_ok(&v, "HPE - Windows - Unattend",
         "vfs-label /dev/sda7 | cat > ./label\n"
         "mount /dev/sda7 /\n"
         "-mkdir-p /ISdeploy/SetupComplete\n"
         "-mkdir-p /ISdeploy/Unattend/specialize/Microsoft-Windows-Shell-Setup\n"
         "-mkdir-p /ISdeploy/Temp\n"
         "-upload -<<END_COMPUTER_NAME "
         "/ISdeploy/Unattend/specialize/Microsoft-Windows-Shell-Setup/ComputerName.xml\n"
         "<ComputerName>@Hostname@</ComputerName>\n"
         "END_COMPUTER_NAME\n"
         "upload -<<END /ISdeploy/Temp/RDPSettings.xml\n"
         "<RDP/>\n"
         "END\n"
         "<! if [ \"@RemoteDesktop@\" != \"Disallow\" ] ; then echo 'mv "
         "/ISdeploy/Temp/RDPSettings.xml "
         "/ISdeploy/Unattend/specialize/Microsoft-Windows-Shell-Setup/RDPSettings.xml' ; fi\n"
         "copy-out /ISdeploy/Unattend .\n"
         "!find Unattend -name '*.xml' | sort | xargs cat > Unattend.xml\n"
         "upload ./Unattend.xml /ISdeploy/Unattend.xml\n"
         "-cat /ISdeploy/Unattend.xml\n"
         "umount /\n");
  env_close(&v);
  char *o = work_file(&v, "label");
  assert_string_equal(o, "ISDEPLOY\n");
  free(o);
  o = mtype(img, "40M", "/ISdeploy/Unattend.xml");
  assert_string_equal(o, "<ComputerName>WIN01</ComputerName>\n<RDP/>\n");
  free(o);
  o = sh_out("MTOOLS_SKIP_CHECK=1 mdir -b -i '%s@@40M' ::/ISdeploy/Temp", img);
  assert_string_equal(o, "");
  free(o);
}

/* guestfish's error rules: the first failure not prefixed by '-' stops the
 * run; an unknown command is such a failure; syntax errors fail when
 * reached; <! inherits '-'; quit ends the script. */
static void test_error_rules(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_fail(&v, "echo 1 > x\n!echo a > ./ran1\nIntentionally_Fail_OS_Deployment\n!echo b > ./ran2\n",
           "SCRIPT_UNKNOWN_COMMAND", "t:3: Intentionally_Fail_OS_Deployment: unknown command");
  char *f = work_file(&v, "ran1");
  assert_non_null(f);
  free(f);
  assert_null(work_file(&v, "ran2"));
  /* the '-' prefix: failures go on, unknown commands too */
  run_ok(&v, "dash",
         "-frobnicate\n-mount /dev/sda9 /\n-!false\n-echo \"bad \\q\"\n"
         "-<!echo mount /dev/nope /; echo '!exit 3'\n!echo ok > ./dash\n");
  f = work_file(&v, "dash");
  assert_string_equal(f, "ok\n");
  free(f);
  struct script_stats st;
  script_session_stats(v.s, &st);
  assert_int_equal(st.errors_ignored, 6);
  /* a failing host command */
  run_fail(&v, "!exit 7\n", "SCRIPT_FAILED", "t:1: host command exited with status 7");
  /* a syntax error fails when it is reached */
  run_fail(&v, "!echo a > ./before\necho \"x\n!echo b > ./after\n", "SCRIPT_SYNTAX",
           "t:2: unterminated double quote");
  assert_null(work_file(&v, "after"));
  /* a here-document without its marker */
  run_fail(&v, "mount /dev/sda1 /\nupload -<<END /x\nbody\n", "SCRIPT_SYNTAX",
           "end of input reached without finding 'END'");
  run_ok(&v, "u", "umount-all\n");
  /* <! : generated lines run with the same rules; a failure inside stops */
  run_fail(&v, "<!printf 'echo one\\nfrobnicate\\necho three\\n'\n", "SCRIPT_UNKNOWN_COMMAND",
           "t:1<2: frobnicate: unknown command");
  assert_non_null(strstr(logbuf, "[1<1] echo one\none\n"));
  assert_null(strstr(logbuf, "[1<3]"));
  /* a failing <! command after its lines ran */
  run_fail(&v, "<!echo '!echo ran > ./inl'; exit 2\n", "SCRIPT_FAILED", "exited with status 2");
  f = work_file(&v, "inl");
  assert_string_equal(f, "ran\n");
  free(f);
  /* nesting: <! printing <! printing ... stops at 10 levels */
  run_fail(&v, "<!echo \"<!echo '<!echo \\\"<!echo ok\\\"'\"\n", "SCRIPT_UNKNOWN_COMMAND",
           "ok: unknown command");
  run_fail(&v, "!printf '%s\\n' '<!cat ./loop' > ./loop\n<!cat ./loop\n", "SCRIPT_FAILED",
           "<! nested more than 10 levels deep");
  /* quit ends the script successfully */
  run_ok(&v, "q", "!echo 1 > ./q1\nquit\n!echo 2 > ./q2\n");
  assert_null(work_file(&v, "q2"));
  /* pipes: the shell's exit status does not matter; the command's does */
  run_ok(&v, "pipe", "echo hello | tr a-z A-Z > ./up; exit 3\n");
  f = work_file(&v, "up");
  assert_string_equal(f, "HELLO\n");
  free(f);
  run_fail(&v, "cat /etc/hostname | cat > ./c\n", "SCRIPT_FAILED",
           "you must call 'mount' first to mount the root filesystem");
  f = work_file(&v, "c"); /* the shell ran all the same, with nothing to read */
  assert_string_equal(f, "");
  free(f);
  /* a wrong argument count */
  run_fail(&v, "mount /dev/sda1\n", "SCRIPT_FAILED", "mount: incorrect number of arguments");
  env_close(&v);
}

/* The mount table: nested mounts, busy unmounts, mount points that must
 * exist, read-only mounts, paths through the longest prefix. */
static void test_mount_table(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_fail(&v, "mount /dev/sda2 /\nmount /dev/sda1 /boot/efi\n", "SCRIPT_FAILED",
           "mount point does not exist");
  run_ok(&v, "m",
         "mkdir-p /boot/efi\nmount /dev/sda1 /boot/efi\n"
         "write /boot/efi/hello.txt \"in the ESP\"\nls /boot/efi | cat > ./lsefi\n"
         "mounts | cat > ./mounts\n");
  char *f = work_file(&v, "lsefi");
  assert_string_equal(f, "EFI\nhello.txt\n");
  free(f);
  f = work_file(&v, "mounts");
  assert_string_equal(f, "/dev/sda2\n/dev/sda1\n");
  free(f);
  run_fail(&v, "umount /\n", "SCRIPT_FAILED", "target is busy");
  run_fail(&v, "umount /nothing\n", "SCRIPT_FAILED", "not mounted");
  run_ok(&v, "u", "umount /dev/sda1\numount /\n");
  /* mount-ro: reads work, writes do not */
  run_ok(&v, "ro", "mount-ro /dev/sda2 /\ncat /etc/hostname | cat > ./h\n");
  run_fail(&v, "touch /new\n", "SCRIPT_FAILED", "Read-only file system");
  run_fail(&v, "mount /dev/sda2 /home\n", "SCRIPT_FAILED", "already mounted read-only");
  run_ok(&v, "u", "umount-all\n");
  /* relative guest paths are refused, like guestfish */
  run_ok(&v, "m", "mount /dev/sda2 /\n");
  run_fail(&v, "mkdir etc/x\n", "SCRIPT_FAILED", "path must start with a / character");
  /* a device that does not exist */
  run_fail(&v, "mount /dev/sda7 /home\n", "SCRIPT_FAILED", "/dev/sda7");
  env_close(&v);
  f = debugfs(img, "cat /boot/efi/hello.txt"); /* not on the root filesystem */
  assert_null(strstr(f, "in the ESP"));
  free(f);
  f = mtype(img, "1M", "/hello.txt");
  assert_string_equal(f, "in the ESP");
  free(f);
}

/* Local paths never leave the work directory (and its private /tmp). */
static void test_local_paths(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "m", "mount /dev/sda2 /\n");
  run_fail(&v, "upload /etc/passwd /x\n", "SCRIPT_FAILED", "outside the work directory");
  run_fail(&v, "download /etc/hostname ../escape\n", "SCRIPT_FAILED", "outside");
  run_fail(&v, "!ln -s /etc/passwd ./pw\nupload ./pw /x\n", "SCRIPT_FAILED", "outside");
  run_fail(&v, "!mkfifo ./fifo\nupload ./fifo /x\n", "SCRIPT_FAILED", "not a regular file");
  run_fail(&v, "copy-out /etc /nonexistent-dir\n", "SCRIPT_FAILED", "is not a directory");
  /* absolute paths inside the work dir are fine */
  char script[2048];
  snprintf(script, sizeof script, "download /etc/hostname %s/abs\n", v.work);
  run_ok(&v, "abs", script);
  char *f = work_file(&v, "abs");
  assert_string_equal(f, "old-host\n");
  free(f);
  char p[1024];
  snprintf(p, sizeof p, "%s/../escape", v.work);
  assert_int_equal(access(p, F_OK), -1);
  env_close(&v);
}

/* tar-out / tar-in round trip, cp, ln, rm, mkdir-mode, chown; checked
 * with tar and debugfs. */
static void test_archives_and_files(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "a",
         "mount /dev/sda2 /\n"
         "tar-out /etc/sysconfig ./sc.tar\n"
         "tar-out /etc/sysconfig ./sc.tgz compress:gzip\n"
         "!tar tf sc.tar | sort > ./list && tar tzf sc.tgz | sort > ./list2\n"
         "mkdir /restore\n"
         "tar-in ./sc.tgz /restore compress:gzip\n"
         "mkdir-mode /private 0700\n"
         "chown 1000 1000 /private\n"
         "cp /etc/hosts /private\n"
         "ln /etc/hosts /etc/hosts.link\n"
         "ln-sf ../hosts /etc/ssh/hosts\n"
         "rm-rf /etc/ssh/nothing\n"
         "-rm /etc/ssh\n"
         "rm-f /etc/nothing\n"
         "mkdir /restore/empty\n"
         "rmdir /home/alice/../../restore/./empty/ \n"
         "is-dir /restore/empty | cat > ./gone\n");
  char *f = work_file(&v, "list");
  assert_string_equal(f, "./\n./network\n./network-scripts/\n./network-scripts/ifcfg-eth0\n"
                         "./network-scripts/ifcfg-lo\n");
  free(f);
  f = work_file(&v, "gone");
  assert_string_equal(f, "false\n");
  free(f);
  f = work_file(&v, "list2");
  assert_string_equal(f, "./\n./network\n./network-scripts/\n./network-scripts/ifcfg-eth0\n"
                         "./network-scripts/ifcfg-lo\n");
  free(f);
  env_close(&v);
  char *o = debugfs(img, "cat /restore/network-scripts/ifcfg-eth0");
  assert_string_equal(o, "DEVICE=eth0\n");
  free(o);
  o = debugfs(img, "stat /private");
  assert_non_null(strstr(o, "Mode:  0700"));
  assert_non_null(strstr(o, "User:  1000"));
  free(o);
  assert_string_equal((o = debugfs(img, "cat /private/hosts")), "127.0.0.1 localhost\n");
  free(o);
  o = debugfs(img, "stat /etc/hosts");
  assert_non_null(strstr(o, "Links: 2"));
  free(o);
  o = debugfs(img, "stat /etc/ssh/hosts");
  assert_non_null(strstr(o, "Fast link dest: \"../hosts\""));
  free(o);
  assert_int_equal(sh("e2fsck -fn '%s/p2.img' >/dev/null 2>&1", dir), 0);
}

/* Guest programs need guestfish: without it the run fails before any
 * statement ran, naming the command and the package. */
static void test_needs_guestfish(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_fail(&v, "!echo ran > ./ran\nmount /dev/sda2 /\ncommand /tmp/ImageStreamer/x.sh\n",
           "SCRIPT_NEEDS_GUESTFISH", "libguestfs-tools");
  assert_null(work_file(&v, "ran"));
  /* through <! it is found when it runs, and is not ignorable */
  run_fail(&v, "-<!echo 'sh \"echo hi\"'\n", "SCRIPT_NEEDS_GUESTFISH", "sh: runs a program");
  env_close(&v);
}

/* A here-document left open swallows the following build steps, as HPE's
 * concatenation does; every step still gets its section in the log. */
static void test_plan_concatenation(void **state) {
  (void)state;
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  static const struct script_step steps[] = {
      {"1", "mount", "mount /dev/sda1 /"}, /* no final newline */
      {"2", "open", "upload -<<EOF /a.txt\nline"},
      {"3", "more", "EOF\nwrite /b.txt b\n"},
      {"4", "empty", ""},
      {"10", "last", "umount /\n"},
  };
  struct err e;
  err_init(&e);
  if (script_session_run_plan(v.s, steps, 5, &e)) fail_msg("%s\n%s", e.message, logbuf);
  env_close(&v);
  char *o = mtype(img, "1M", "/a.txt");
  assert_string_equal(o, "line\n");
  free(o);
  o = mtype(img, "1M", "/b.txt");
  assert_string_equal(o, "b");
  free(o);
  assert_non_null(strstr(logbuf, "== Build step 4 of 5: \"empty\""));
  assert_non_null(strstr(logbuf, "== Build step 5 of 5: \"last\" (serialNumber 10)"));
  /* a failing step names itself and its own line */
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  static const struct script_step bad[] = {
      {"1", "mount", "mount /dev/sda1 /\n"},
      {"2", "broken", "# comment\nmkdir /x\nfrobnicate\n"},
  };
  assert_int_equal(script_session_run_plan(v.s, bad, 2, &e), -1);
  assert_string_equal(e.message, "broken:3: frobnicate: unknown command");
  assert_string_equal(e.code, "SCRIPT_UNKNOWN_COMMAND");
  assert_non_null(strstr(logbuf, "== Build plan FAILED at step 2"));
  err_clear(&e);
  env_close(&v);
}

/* Host commands through the real sandbox: the work dir and its private
 * /tmp are what local paths name (HPE's Windows example downloads to
 * /tmp/Unattend.xml, edits it on the host, uploads it back). */
static void test_real_sandbox(void **state) {
  (void)state;
  char why[512];
  if (!sandbox_available(why, sizeof why)) {
    print_message("sandbox unavailable (%s): test skipped\n", why);
    skip();
  }
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 1, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "sandbox",
         "mount /dev/sda1 /\n"
         "download /EFI/BOOT/message.txt /tmp/message.txt\n"
         "!sed -i 's/UEFI/EFI/' /tmp/message.txt && id -u > ./uid\n"
         "upload /tmp/message.txt /EFI/BOOT/message.txt\n"
         "!cat /etc/shadow > ./shadow 2>&1 || echo denied > ./shadow\n"
         "umount /\n");
  char *f = work_file(&v, "shadow");
  assert_string_equal(f, "denied\n");
  free(f);
  f = work_file(&v, "uid");
  assert_string_not_equal(f, "0\n");
  free(f);
  env_close(&v);
  f = mtype(img, "1M", "/EFI/BOOT/message.txt");
  assert_string_equal(f, "EFI loader message\n");
  free(f);
}

/* An ext4 root on LVM2, the images made by lvm2 itself
 * (tests/unit/fs_disk_fixtures.py: loop devices, activation off): vgs, lvs,
 * mounts by /dev/VG/LV and /dev/mapper/VG-LV, vgrename as the Oracle RA does,
 * then the LV's bytes checked with debugfs and e2fsck and the PVs with
 * lvm2's vgs, vgck and pvck. Needs root and loop devices. */
static void test_lvm_root(void **state) {
  (void)state;
  char fx[512], manifest[600], img[600];
  snprintf(fx, sizeof fx, "%s/fx", dir);
  snprintf(manifest, sizeof manifest, "%s/manifest.json", fx);
  snprintf(img, sizeof img, "%s/mbr.img", fx);
  assert_int_equal(sh("python3 tests/unit/fs_disk_fixtures.py '%s' >/dev/null 2>&1", fx), 0);
  json_error_t je;
  json_t *m = json_load_file(manifest, 0, &je);
  assert_non_null(m);
  if (!json_is_true(json_object_get(m, "lvm"))) {
    json_decref(m);
    print_message("lvm2 images need root and loop devices: test skipped\n");
    skip();
  }
  json_t *mbr = json_object_get(json_object_get(m, "images"), "mbr");
  json_t *seg = json_array_get(
      json_object_get(json_object_get(json_object_get(mbr, "lvs"), "/dev/vg0/root"), "segments"),
      0);
  long long root_off =
      (long long)json_integer_value(json_array_get(json_object_get(seg, "disk_offsets"), 0));
  long long root_len = (long long)json_integer_value(json_object_get(seg, "len"));
  json_t *parts = json_object_get(mbr, "partitions");
  long long p3o = json_integer_value(json_object_get(json_object_get(parts, "3"), "start"));
  long long p3s = json_integer_value(json_object_get(json_object_get(parts, "3"), "size"));
  long long p7o = json_integer_value(json_object_get(json_object_get(parts, "7"), "start"));
  long long p7s = json_integer_value(json_object_get(json_object_get(parts, "7"), "size"));
  json_decref(m);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  json_t *values = json_pack("{s:s,s:s}", "OrigHostname", "vg0", "Hostname", "web01");
  script_session_set_attributes(v.s, values, NULL);
  json_decref(values);
  run_ok(&v, "lvm",
         "vgs | cat > ./vgs\n"
         "lvs | cat > ./lvs\n"
         "list-filesystems | grep vg0 > ./fs\n"
         "-mount /dev/rhel/root /\n"
         "mount /dev/vg0/root /\n"
         "mkdir-p /etc/sysconfig\n"
         "upload -<<END /etc/hostname\n"
         "@Hostname@\n"
         "END\n"
         "umount /\n"
         "mount-ro /dev/mapper/vg0-root /\n"
         "cat /etc/hostname | cat > ./h\n"
         "umount /\n"
         "vgrename @OrigHostname@ rhel_@Hostname@\n"
         "vgs | cat > ./vgs2\n"
         "mount /dev/rhel_web01/root /\n"
         "write-append /etc/hostname \"again\\n\"\n"
         "umount /\n");
  char *f = work_file(&v, "vgs");
  assert_string_equal(f, "vg0\n");
  free(f);
  f = work_file(&v, "lvs");
  assert_string_equal(f, "/dev/vg0/data\n/dev/vg0/my-lv\n/dev/vg0/root\n/dev/vg0/split\n");
  free(f);
  f = work_file(&v, "fs");
  assert_non_null(strstr(f, "/dev/vg0/root: ext4\n"));
  free(f);
  f = work_file(&v, "h");
  assert_string_equal(f, "web01\n\n");
  free(f);
  f = work_file(&v, "vgs2");
  assert_string_equal(f, "rhel_web01\n");
  free(f);
  env_close(&v);
  assert_int_equal(sh("dd if='%s' of='%s/root.img' bs=1M iflag=skip_bytes,count_bytes skip=%lld "
                      "count=%lld status=none",
                      img, dir, root_off, root_len),
                   0);
  char *o = sh_out("debugfs -R 'cat /etc/hostname' '%s/root.img' 2>/dev/null", dir);
  assert_string_equal(o, "web01\nagain\n");
  free(o);
  assert_int_equal(sh("e2fsck -fn '%s/root.img' >/dev/null 2>&1", dir), 0);
  o = sh_out("python3 tests/unit/fs_disk_fixtures.py --lvm-check '%s' %lld:%lld %lld:%lld", img,
             p3o, p3s, p7o, p7s);
  json_t *chk = json_loads(o, 0, &je);
  if (!chk) fail_msg("lvm-check: %s", o);
  free(o);
  json_t *vg = json_array_get(json_object_get(chk, "vgs"), 0);
  assert_string_equal(json_string_value(json_array_get(vg, 0)), "rhel_web01");
  assert_int_equal(json_integer_value(json_object_get(chk, "vgck")), 0);
  json_t *pv;
  size_t k;
  json_array_foreach(json_object_get(chk, "pvck"), k, pv)
      assert_int_equal(json_integer_value(pv), 0);
  assert_string_equal(json_string_value(json_object_get(chk, "stderr")), "");
  json_decref(chk);
}

/* What Streamer cannot do natively goes to real guestfish: `sh` runs a
 * program of the guest (busybox here), so the whole session is handed to
 * one guestfish --listen (TCG appliance) driven through its remote
 * protocol, with the disk served over NBD; the script's line rules, host
 * commands and local files stay Streamer's. Checked with debugfs. */
static void test_guestfish_delegation(void **state) {
  (void)state;
  if (access("/usr/bin/guestfish", X_OK) != 0 || getenv("STREAMER_NO_GUESTFISH")) {
    print_message("guestfish (libguestfs-tools) is not installed: test skipped\n");
    skip();
  }
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  /* a guest that can run a program: busybox as /usr/bin/sh (rebuilt p2) */
  assert_int_equal(sh("cd '%s/rootfs' && cp /bin/busybox usr/bin/busybox && ln -s busybox "
                      "usr/bin/sh && mkdir -p dev proc sys tmp && mkfs.ext4 -q -F -E offset=%llu "
                      "-d . '%s' 40M",
                      dir, P2_OFF, img),
                   0);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_AUTO);
  run_ok(&v, "delegated",
         "mount /dev/sda2 /\n"
         "upload -<<END /etc/hostname\n"
         "web02\n"
         "END\n"
         "sh \"echo from-the-guest > /etc/motd\"\n"
         "download /etc/motd ./motd\n"
         "!echo local >> ./motd\n"
         "upload ./motd /etc/motd2\n"
         "!mkdir -p out\n"
         "copy-out /etc/sysconfig out\n"
         "list-filesystems | cat > ./list-fs\n"
         "<!echo mkdir-p /var/lib/streamer\n"
         "-frobnicate\n"
         "umount /\n");
  struct script_stats st;
  script_session_stats(v.s, &st);
  assert_int_equal(st.delegated, 1);
  char *f = work_file(&v, "motd");
  assert_string_equal(f, "from-the-guest\nlocal\n");
  free(f);
  f = work_file(&v, "list-fs");
  assert_string_equal(f, "/dev/sda1: vfat\n/dev/sda2: ext4\n");
  free(f);
  f = work_file(&v, "out/sysconfig/network");
  assert_string_equal(f, "NETWORKING=yes\n");
  free(f);
  env_close(&v);
  char *o = debugfs(img, "cat /etc/hostname");
  assert_string_equal(o, "web02\n");
  free(o);
  assert_string_equal((o = debugfs(img, "cat /etc/motd2")), "from-the-guest\nlocal\n");
  free(o);
  o = debugfs(img, "ls /var/lib");
  assert_non_null(strstr(o, "streamer"));
  free(o);
  assert_int_equal(sh("e2fsck -fn '%s/p2.img' >/dev/null 2>&1", dir), 0);
  assert_non_null(strstr(logbuf, "the session is handed to guestfish"));
}

/* HPE's Developer bundle, as published: its golden image (a zip inside the
 * bundle zip: a 100 MiB GPT disk whose FAT16 ESP starts at sector 128) and
 * its deploy and capture build plans, steps in serialNumber order with the
 * build plans' attribute values plus ours. message.txt must hold the
 * substituted values (mtools), the "attempt or fail" step must fail with
 * its default and pass with #Attempt_OS_Deployment, the ESP stays clean
 * (fsck.vfat -n). The bundle is read from $STREAMER_RESEARCH. */
static const char EXTRACT_PY[] =
    "import json, sys, zipfile, io\n"
    "z = zipfile.ZipFile(sys.argv[1]); out = sys.argv[2]\n"
    "ps = {}; plans = []\n"
    "for n in z.namelist():\n"
    "    if n.endswith('_planscript.json'):\n"
    "        d = json.loads(z.read(n)); ps[d['id']] = d\n"
    "    if n.endswith('_goldenimage.json'):\n"
    "        gi = json.loads(z.read(n))['name']\n"
    "        inner = zipfile.ZipFile(io.BytesIO(z.read(gi)))\n"
    "        open(out + '/golden.img', 'wb').write(inner.read(inner.namelist()[0]))\n"
    "for n in sorted(z.namelist()):\n"
    "    if n.endswith('_buildplan.json'):\n"
    "        d = json.loads(z.read(n))\n"
    "        vals = {a['name']: a['value'] for a in d['customAttributes'] if a.get('value')}\n"
    "        sec = [a['name'] for a in d['customAttributes'] if a['type'] == 'password']\n"
    "        steps = [{'serial': s['serialNumber'], 'name': ps[s['planScriptUri'].split('/')[-1]]"
    "['name'],\n"
    "                  'content': ps[s['planScriptUri'].split('/')[-1]]['content']}\n"
    "                 for s in d['buildStep']]\n"
    "        plans.append({'name': d['name'], 'values': vals, 'secrets': sec, 'steps': steps})\n"
    "json.dump(plans, open(out + '/plans.json', 'w'))\n";

static int run_bundle_plan(const char *golden, json_t *plan, const char *deployment_testing,
                           struct err *e) {
  char img[512];
  snprintf(img, sizeof img, "%s/deploy.img", dir);
  assert_int_equal(sh("cp --sparse=always '%s' '%s'", golden, img), 0);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  json_t *values = json_deep_copy(json_object_get(plan, "values"));
  json_object_set_new(values, "ExampleString1", json_string("Hello from Streamer"));
  json_object_set_new(values, "ExampleNumber1", json_string("7"));
  json_object_set_new(values, "ExamplePassword", json_string("pa55word"));
  json_object_set_new(values, "ExampleUnteamedNIC.mac", json_string("aa:bb:cc:dd:ee:ff"));
  if (deployment_testing)
    json_object_set_new(values, "DeploymentTesting", json_string(deployment_testing));
  script_session_set_attributes(v.s, values, json_object_get(plan, "secrets"));
  json_decref(values);
  json_t *steps = json_object_get(plan, "steps");
  size_t n = json_array_size(steps);
  struct script_step *st = calloc(n + 1, sizeof *st);
  for (size_t i = 0; i < n; i++) {
    json_t *x = json_array_get(steps, i);
    st[i].serial = json_string_value(json_object_get(x, "serial"));
    st[i].name = json_string_value(json_object_get(x, "name"));
    st[i].content = json_string_value(json_object_get(x, "content"));
  }
  int r = script_session_run_plan(v.s, st, n, e);
  free(st);
  env_close(&v);
  assert_null(strstr(logbuf, "pa55word"));
  /* fsck.vfat finds what it finds in HPE's pristine image (an invalid empty
   * label in the boot sector) and nothing else */
  char *before = sh_out("dd if='%s' of='%s/esp.img' bs=512 skip=128 count=204545 status=none && "
                        "fsck.vfat -n '%s/esp.img' 2>&1 | grep -v ' files, '",
                        golden, dir, dir);
  char *after = sh_out("dd if='%s' of='%s/esp.img' bs=512 skip=128 count=204545 status=none && "
                       "fsck.vfat -n '%s/esp.img' 2>&1 | grep -v ' files, '",
                       img, dir, dir);
  assert_string_equal(after, before);
  free(before);
  free(after);
  return r;
}

static void test_developer_bundle(void **state) {
  (void)state;
  const char *r = getenv("STREAMER_RESEARCH");
  char bundle[1024], py[512], golden[512];
  snprintf(bundle, sizeof bundle,
           "%s/bundles/HewlettPackard__image-streamer-tools/"
           "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip",
           r && *r ? r : "../shared/research");
  if (access(bundle, R_OK) != 0) fail_msg("the research bundle is missing: %s", bundle);
  snprintf(py, sizeof py, "%s/extract.py", dir);
  FILE *f = fopen(py, "w");
  fputs(EXTRACT_PY, f);
  fclose(f);
  assert_int_equal(sh("python3 '%s' '%s' '%s'", py, bundle, dir), 0);
  snprintf(golden, sizeof golden, "%s/golden.img", dir);
  char plans_path[512];
  snprintf(plans_path, sizeof plans_path, "%s/plans.json", dir);
  json_error_t je;
  json_t *plans = json_load_file(plans_path, 0, &je);
  assert_non_null(plans);
  assert_int_equal(json_array_size(plans), 5);
  int ran = 0;
  size_t i;
  json_t *plan;
  json_array_foreach(plans, i, plan) {
    const char *name = json_string_value(json_object_get(plan, "name"));
    struct err e;
    err_init(&e);
    int has_attempt = 0;
    json_t *steps = json_object_get(plan, "steps");
    for (size_t k = 0; k < json_array_size(steps); k++)
      if (strstr(json_string_value(json_object_get(json_array_get(steps, k), "name")),
                 "attempt or fail"))
        has_attempt = 1;
    if (has_attempt) { /* the default value fails the deployment, on purpose */
      assert_int_equal(run_bundle_plan(golden, plan, NULL, &e), -1);
      assert_string_equal(e.code, "SCRIPT_UNKNOWN_COMMAND");
      assert_non_null(strstr(e.message, "Fail_OS_Deployment: unknown command"));
      err_clear(&e);
    }
    if (run_bundle_plan(golden, plan, "#Attempt_OS_Deployment", &e))
      fail_msg("%s: %s\n%s", name, e.message, logbuf);
    char img[512];
    snprintf(img, sizeof img, "%s/deploy.img", dir);
    char *m = mtype(img, "65536", "/EFI/BOOT/message.txt");
    if (strstr(name, "deploy") && strstr(name, "UEFI")) {
      assert_non_null(strstr(m, "ExampleString1: Hello from Streamer\n"));
      assert_non_null(strstr(m, "ExampleString3: Script Default\n"));
      assert_non_null(strstr(m, "ExampleNumber1: 7\n"));
      assert_non_null(strstr(m, "ExampleNumber2: 9999\n"));
      assert_non_null(strstr(m, "pa55word"));
    } else if (strstr(name, "capture")) {
      assert_non_null(strstr(m, "has been generalized"));
    } else { /* attribute types: messages only, the image is untouched */
      assert_non_null(strstr(logbuf, "ExampleUnteamedNIC.mac: aa:bb:cc:dd:ee:ff\n"));
      assert_non_null(strstr(logbuf, "ExamplePassword: ********\n"));
    }
    free(m);
    ran++;
  }
  assert_int_equal(ran, 5);
  json_decref(plans);
}

static const char BUNDLE_PLANS_PY[] =
    "import io, json, sys, zipfile\n"
    "\n"
    "def consts(a):\n"
    "    c = a.get('constraints')\n"
    "    if isinstance(c, str):\n"
    "        try:\n"
    "            c = json.loads(c or '{}')\n"
    "        except ValueError:\n"
    "            c = {}\n"
    "    return c or {}\n"
    "\n"
    "NIC = {'mac': 'aa:bb:cc:dd:ee:0%d', 'ipaddress': '10.0.0.1%d', 'netmask': '255.255.255.0',\n"
    "       'gateway': '10.0.0.1', 'dns1': '10.0.0.2', 'dns2': '10.0.0.3', 'domain': "
    "'example.com',\n"
    "       'vlanid': '0', 'ipaddress1': '10.0.1.1%d', 'ipaddress2': '10.0.2.1%d',\n"
    "       'mac1': 'aa:bb:cc:dd:e1:0%d', 'mac2': 'aa:bb:cc:dd:e2:0%d', 'dns3': '10.0.0.4'}\n"
    "\n"
    "def values(decls):\n"
    "    v, sec, k = {}, [], 0\n"
    "    for a in decls:\n"
    "        t = (a.get('type') or 'string').lower()\n"
    "        c = consts(a)\n"
    "        name = a['name']\n"
    "        if t == 'password':\n"
    "            sec.append(name)\n"
    "        if t == 'nic':\n"
    "            k += 1\n"
    "            for p in c.get('parameters') or ['mac', 'ipaddress', 'netmask', 'gateway', "
    "'dns1']:\n"
    "                if p in NIC:\n"
    "                    v[name + '.' + p] = NIC[p] % k if '%d' in NIC[p] else NIC[p]\n"
    "            continue\n"
    "        if a.get('value'):\n"
    "            v[name] = a['value']\n"
    "        elif t == 'hostname':\n"
    "            v[name] = 'host01'\n"
    "        elif t == 'fqdn':\n"
    "            v[name] = 'example.com'\n"
    "        elif t == 'ipv4':\n"
    "            v[name] = '10.0.0.5'\n"
    "        elif t == 'password':\n"
    "            v[name] = 'Passw0rd1'\n"
    "        elif t == 'number':\n"
    "            v[name] = str(c.get('minimum') or '1')\n"
    "        elif t == 'option' and c.get('options'):\n"
    "            v[name] = c['options'][0]\n"
    "    return v, sec\n"
    "\n"
    "out = []\n"
    "for path in sys.argv[1:]:\n"
    "    z = zipfile.ZipFile(path)\n"
    "    ps = {}\n"
    "    for n in z.namelist():\n"
    "        if n.endswith('_planscript.json'):\n"
    "            d = json.loads(z.read(n))\n"
    "            ps[d['id']] = d\n"
    "    for n in sorted(z.namelist()):\n"
    "        if not n.endswith('_buildplan.json'):\n"
    "            continue\n"
    "        d = json.loads(z.read(n))\n"
    "        if not d['buildStep']:\n"
    "            continue\n"
    "        v, sec = values(d.get('customAttributes') or [])\n"
    "        steps = [{'serial': s['serialNumber'],\n"
    "                  'name': ps[s['planScriptUri'].split('/')[-1]]['name'],\n"
    "                  'content': ps[s['planScriptUri'].split('/')[-1]]['content']}\n"
    "                 for s in d['buildStep']]\n"
    "        out.append({'bundle': path.split('/')[-1], 'name': d['name'],\n"
    "                    'type': d['oeBuildPlanType'], 'values': v, 'secrets': sec, 'steps': "
    "steps})\n"
    "json.dump(out, sys.stdout)\n"
    "\n";

/* GPT, 96 MiB, a legacy RHEL/SLES disk: p1 ESP FAT16, p2 /boot ext4,
 * p3 the root (ext4, the same tree as make_gpt_image's). */
static void make_legacy_image(const char *img) {
  char g[512];
  snprintf(g, sizeof g, "%s/tmp-gpt.img", dir);
  make_gpt_image(g); /* builds dir/rootfs */
  assert_int_equal(
      sh("rm -f '%s' && truncate -s 96M '%s' && printf 'label: gpt\\n"
         "start=2048, size=32768, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\n"
         "start=34816, size=32768, type=0FC63DAF-8483-4772-8E69-3D69D8477DE4\\n"
         "start=67584, size=102400, type=0FC63DAF-8483-4772-8E69-3D69D8477DE4\\n' | "
         "sfdisk -q '%s' && mkfs.fat -F 16 --offset=2048 '%s' 16384 >/dev/null 2>&1 && "
         "mkfs.ext4 -q -F -E offset=%llu '%s' 16M && "
         "mkfs.ext4 -q -F -E offset=%llu -d '%s/rootfs' '%s' 50M",
         img, img, img, img, 34816ULL * 512, img, 67584ULL * 512, dir, img),
      0);
}

/* Real HPE build plans from the research bundles (RHEL 8 and SLES 15 EFI,
 * ESXi 8.0 and 6.x, Windows 2019, RHEL 7.3 legacy: 16 deploy and capture
 * plans) on images built here, with valid values for every declared
 * attribute, host commands in the real sandbox: every plan must run to its
 * end, and fsck.vfat -n / e2fsck -fn must find every filesystem clean. */
static void test_corpus_bundles(void **state) {
  (void)state;
  char why[512];
  if (!sandbox_available(why, sizeof why)) {
    print_message("sandbox unavailable (%s): test skipped\n", why);
    skip();
  }
  const char *r = getenv("STREAMER_RESEARCH");
  char b[1024];
  snprintf(b, sizeof b, "%s/bundles", r && *r ? r : "../shared/research");
  char py[512], plans_path[512];
  snprintf(py, sizeof py, "%s/plans.py", dir);
  snprintf(plans_path, sizeof plans_path, "%s/plans.json", dir);
  FILE *f = fopen(py, "w");
  fputs(BUNDLE_PLANS_PY, f);
  fclose(f);
  assert_int_equal(
      sh("python3 '%s' '%s/HewlettPackard__image-streamer-rhel/HPE-RHEL8-EFI-2020-04-08-v5.2.zip' "
         "'%s/LaudateCorpus1__image-streamer-sles/HPE-SLES15-EFI-2021-12-03-v6.40.zip' "
         "'%s/HewlettPackard__image-streamer-esxi/HPE-ESXi-8.0-2022-11-03-v6.40.zip' "
         "'%s/HewlettPackard__image-streamer-esxi/HPE-ESXi-2020-12-10-v5.2.zip' "
         "'%s/LaudateCorpus1__image-streamer-windows/HPE - Windows - 2019-07-16 - v5.0.zip' "
         "'%s/HewlettPackard__image-streamer-rhel/HPE-RHEL-7.3-2017-08-21-v3.1.zip' > '%s'",
         py, b, b, b, b, b, b, plans_path),
      0);
  json_error_t je;
  json_t *plans = json_load_file(plans_path, 0, &je);
  assert_non_null(plans);
  assert_int_equal(json_array_size(plans), 16);
  char gpt[512], esxi[512], legacy[512], img[512];
  snprintf(gpt, sizeof gpt, "%s/gpt.img", dir);
  snprintf(esxi, sizeof esxi, "%s/esxi.img", dir);
  snprintf(legacy, sizeof legacy, "%s/legacy.img", dir);
  snprintf(img, sizeof img, "%s/run.img", dir);
  make_gpt_image(gpt);
  make_esxi_image(esxi);
  make_legacy_image(legacy);
  size_t i;
  json_t *plan;
  int failures = 0;
  json_array_foreach(plans, i, plan) {
    const char *bundle = json_string_value(json_object_get(plan, "bundle"));
    const char *name = json_string_value(json_object_get(plan, "name"));
    const char *base = strstr(bundle, "EFI") ? gpt : strstr(bundle, "RHEL-7.3") ? legacy : esxi;
    assert_int_equal(sh("cp --sparse=always '%s' '%s'", base, img), 0);
    if (base == gpt) /* prepared as HPE's EFI bundle documents ask */
      assert_int_equal(sh("MTOOLS_SKIP_CHECK=1 mmd -i '%s@@1M' ::/EFI/HPE ::/EFI/HPE/isdeploy "
                          "::/EFI/HPE/isdeploy/scripts ::/EFI/HPE/isdeploy/tmp",
                          img),
                       0);
    struct env v;
    env_open(&v, img, 1, SCRIPT_GUESTFISH_NEVER);
    script_session_set_attributes(v.s, json_object_get(plan, "values"),
                                  json_object_get(plan, "secrets"));
    json_t *steps = json_object_get(plan, "steps");
    size_t n = json_array_size(steps);
    struct script_step *st = calloc(n + 1, sizeof *st);
    for (size_t k = 0; k < n; k++) {
      json_t *x = json_array_get(steps, k);
      st[k].serial = json_string_value(json_object_get(x, "serial"));
      st[k].name = json_string_value(json_object_get(x, "name"));
      st[k].content = json_string_value(json_object_get(x, "content"));
    }
    struct err e;
    err_init(&e);
    int rr = script_session_run_plan(v.s, st, n, &e);
    free(st);
    struct script_stats stats;
    script_session_stats(v.s, &stats);
    print_message("%-60.60s %3d statements %4lld ms, of which host commands %4lld ms (%d)\n", name,
                  stats.statements, (long long)stats.total_ms, (long long)stats.host_ms,
                  stats.host_commands);
    env_close(&v);
    if (rr) {
      char lp[600];
      snprintf(lp, sizeof lp, "/tmp/test_script_run-failed-%zu.log", i);
      FILE *lf = fopen(lp, "w");
      if (lf) {
        fputs(logbuf, lf);
        fclose(lf);
      }
      print_message("FAILED %s / %s: %s (log: %s)\n", bundle, name, e.message, lp);
      failures++;
      err_clear(&e);
      continue;
    }
    /* every filesystem of the disk, by the independent checkers */
    char *chk = sh_out(
        "cd '%s' && for p in $(sfdisk -d '%s' | awk -F'[=, ]+' '/start=/ {print $4 \":\" $6 "
        "\":\" $8}'); do s=${p%%%%:*}; rest=${p#*:}; z=${rest%%%%:*}; t=${rest#*:}; "
        "dd if='%s' of=part.img bs=512 skip=$s count=$z status=none; "
        "case $(blkid -o value -s TYPE part.img) in vfat) fsck.vfat -n part.img >/dev/null 2>&1 "
        "|| echo \"vfat at $s\";; ext*) e2fsck -fn part.img >/dev/null 2>&1 || echo \"ext at "
        "$s\";; esac; done",
        dir, img, img);
    if (*chk) {
      print_message("DAMAGED %s / %s: %s\n", bundle, name, chk);
      failures++;
    }
    free(chk);
  }
  json_decref(plans);
  assert_int_equal(failures, 0);
}

/* Differential: the same read-only script natively and through real
 * guestfish on the same image; every output scripts parse must be
 * byte-identical (statvfs: the fields that describe the filesystem, not
 * the kernel's fsid and mount flags). */
static const char *const DIFF_FILES[] = {"list-devices",
                                         "list-partitions",
                                         "list-filesystems",
                                         "vgs",
                                         "lvs",
                                         "inspect-os",
                                         "distro",
                                         "cat",
                                         "cat2",
                                         "ls",
                                         "ls2",
                                         "tests",
                                         "echo",
                                         "ls-esp",
                                         "cat-esp",
                                         "statvfs-esp",
                                         "statvfs",
                                         "mountpoints",
                                         "vfs",
                                         NULL};
static const char DIFF_SCRIPT[] =
    "list-devices | cat > ./list-devices\n"
    "list-partitions | cat > ./list-partitions\n"
    "list-filesystems | cat > ./list-filesystems\n"
    "vgs | cat > ./vgs\n"
    "lvs | cat > ./lvs\n"
    "inspect-os | cat > ./inspect-os\n"
    "<!awk '{print \"inspect-get-distro\", $1, \"| cat >> ./distro\"; print "
    "\"inspect-get-major-version\", $1, \"| cat >> ./distro\"; print "
    "\"inspect-get-osinfo\", $1, \"| cat >> ./distro\"; print \"inspect-get-type\", $1, \"| "
    "cat >> ./distro\"}' ./inspect-os\n"
    "!touch ./distro\n"
    "mount-ro /dev/sda2 /\n"
    "mountpoints | cat > ./mountpoints\n"
    "cat /etc/os-release | cat > ./cat\n"
    "cat /etc/hostname | cat > ./cat2\n"
    "ls /etc | cat > ./ls\n"
    "ls /etc/ssh | cat > ./ls2\n"
    "exists /etc/fstab | cat > ./tests\n"
    "exists /nope | cat >> ./tests\n"
    "is-file /bin | cat >> ./tests\n"
    "is-dir /bin followsymlinks:true | cat >> ./tests\n"
    "is-dir /etc | cat >> ./tests\n"
    "statvfs / | grep -E '^(bsize|frsize|blocks|files|namemax):' > ./statvfs\n"
    "echo a \"b c\" '' d | cat > ./echo\n"
    "umount /\n"
    "mount-ro /dev/sda1 /\n"
    "ls /EFI/BOOT | cat > ./ls-esp\n"
    "cat /EFI/BOOT/message.txt | cat > ./cat-esp\n"
    "statvfs / | grep -E '^(bsize|frsize|blocks|namemax):' > ./statvfs-esp\n"
    "umount /\n"
    "vfs-type /dev/sda1 | cat > ./vfs\n"
    "vfs-type /dev/sda2 | cat >> ./vfs\n";

static void test_guestfish_differential(void **state) {
  (void)state;
  if (access("/usr/bin/guestfish", X_OK) != 0 || getenv("STREAMER_NO_GUESTFISH")) {
    print_message("guestfish (libguestfs-tools) is not installed: test skipped\n");
    skip();
  }
  char img[512];
  snprintf(img, sizeof img, "%s/gpt.img", dir);
  make_gpt_image(img);
  struct env v;
  env_open(&v, img, 0, SCRIPT_GUESTFISH_NEVER);
  run_ok(&v, "native", DIFF_SCRIPT);
  env_close(&v);
  assert_int_equal(sh("mv '%s/work' '%s/native'", dir, dir), 0);
  env_open(&v, img, 0, SCRIPT_GUESTFISH_ALWAYS);
  run_ok(&v, "guestfish", DIFF_SCRIPT);
  struct script_stats st;
  script_session_stats(v.s, &st);
  assert_int_equal(st.delegated, 1);
  env_close(&v);
  int diffs = 0;
  for (int i = 0; DIFF_FILES[i]; i++) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/native/%s", dir, DIFF_FILES[i]);
    snprintf(b, sizeof b, "%s/work/%s", dir, DIFF_FILES[i]);
    char *x = read_text(a), *y = read_text(b);
    if (getenv("SHOW_DIFF")) print_message("== %s\n%s", DIFF_FILES[i], y ? y : "(missing)\n");
    if (!x || !y || strcmp(x, y) != 0) {
      print_message("%s differs:\n--- native\n%s--- guestfish\n%s", DIFF_FILES[i],
                    x ? x : "(missing)\n", y ? y : "(missing)\n");
      diffs++;
    }
    free(x);
    free(y);
  }
  assert_int_equal(diffs, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_developer_uefi, setup, teardown),
      cmocka_unit_test_setup_teardown(test_output_formats, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rhel_legacy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_esxi_bootbank, setup, teardown),
      cmocka_unit_test_setup_teardown(test_windows_isdeploy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lvm_root, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mount_table, setup, teardown),
      cmocka_unit_test_setup_teardown(test_local_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_archives_and_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_needs_guestfish, setup, teardown),
      cmocka_unit_test_setup_teardown(test_plan_concatenation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_developer_bundle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_real_sandbox, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corpus_bundles, setup, teardown),
      cmocka_unit_test_setup_teardown(test_guestfish_delegation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_guestfish_differential, setup, teardown),
  };
  /* TEST_FILTER=test_name runs one test (cmocka's own pattern syntax) */
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
