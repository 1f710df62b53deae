/* cmdtab.c — the guestfish commands Streamer knows: names, argument counts,
 * which argument may be a -<<MARKER here-document, and what each touches.
 * The parser needs it (a here-document is read only by a command that takes
 * a file argument and got the right number of arguments, exactly when
 * guestfish would read it); the checker and the interpreter use it too.
 * No dependencies beyond libc, so the offline checker links without fs/. */
#include <stddef.h>
#include <string.h>

#include "script/script.h"

#define B SCRIPT_CMD_BUILTIN
#define F SCRIPT_CMD_FILE
#define D SCRIPT_CMD_DISK
#define G SCRIPT_CMD_GUEST

/* Argument counts are guestfish 1.48's (required + optional arguments). */
static const struct script_cmd CMDS[] = {
    {"cat", 1, 1, -1, F, "cat path"},
    {"chmod", 2, 2, -1, F, "chmod mode path"},
    {"chown", 3, 3, -1, F, "chown owner group path"},
    {"command", 1, 1, -1, G, "command 'program args ...'"},
    {"command-lines", 1, 1, -1, G, "command-lines 'program args ...'"},
    {"compress-out", 3, 4, -1, F, "compress-out ctype file zfile [level:N]"},
    {"copy-in", 2, -1, -1, F, "copy-in local [local ...] /remotedir"},
    {"copy-out", 2, -1, -1, F, "copy-out remote [remote ...] localdir"},
    {"cp", 2, 2, -1, F, "cp src dest"},
    {"cp-a", 2, 2, -1, F, "cp-a src dest"},
    {"cp-r", 2, 2, -1, F, "cp-r src dest"},
    {"download", 2, 2, -1, F, "download remotefilename (filename|-)"},
    {"echo", 0, -1, -1, B, "echo [params ...]"},
    {"exists", 1, 1, -1, F, "exists path"},
    {"exit", 0, -1, -1, B, "exit"},
    {"filesize", 1, 1, -1, F, "filesize file"},
    {"glob", 1, -1, -1, B, "glob command args..."},
    {"inspect-get-distro", 1, 1, -1, D, "inspect-get-distro root"},
    {"inspect-get-hostname", 1, 1, -1, D, "inspect-get-hostname root"},
    {"inspect-get-major-version", 1, 1, -1, D, "inspect-get-major-version root"},
    {"inspect-get-minor-version", 1, 1, -1, D, "inspect-get-minor-version root"},
    {"inspect-get-osinfo", 1, 1, -1, D, "inspect-get-osinfo root"},
    {"inspect-get-product-name", 1, 1, -1, D, "inspect-get-product-name root"},
    {"inspect-get-roots", 0, 0, -1, D, "inspect-get-roots"},
    {"inspect-get-type", 1, 1, -1, D, "inspect-get-type root"},
    {"inspect-os", 0, 0, -1, D, "inspect-os"},
    {"is-dir", 1, 2, -1, F, "is-dir path [followsymlinks:true|false]"},
    {"is-file", 1, 2, -1, F, "is-file path [followsymlinks:true|false]"},
    {"list-devices", 0, 0, -1, D, "list-devices"},
    {"list-filesystems", 0, 0, -1, D, "list-filesystems"},
    {"list-partitions", 0, 0, -1, D, "list-partitions"},
    {"ll", 1, 1, -1, F, "ll directory"},
    {"ln", 2, 2, -1, F, "ln target linkname"},
    {"ln-f", 2, 2, -1, F, "ln-f target linkname"},
    {"ln-s", 2, 2, -1, F, "ln-s target linkname"},
    {"ln-sf", 2, 2, -1, F, "ln-sf target linkname"},
    {"ls", 1, 1, -1, F, "ls directory"},
    {"lvs", 0, 0, -1, D, "lvs"},
    {"mkdir", 1, 1, -1, F, "mkdir path"},
    {"mkdir-mode", 2, 2, -1, F, "mkdir-mode path mode"},
    {"mkdir-p", 1, 1, -1, F, "mkdir-p path"},
    {"mount", 2, 2, -1, D, "mount mountable mountpoint"},
    {"mount-ro", 2, 2, -1, D, "mount-ro mountable mountpoint"},
    {"mountpoints", 0, 0, -1, D, "mountpoints"},
    {"mounts", 0, 0, -1, D, "mounts"},
    {"mv", 2, 2, -1, F, "mv src dest"},
    {"pvs", 0, 0, -1, D, "pvs"},
    {"q", 0, -1, -1, B, "q"},
    {"quit", 0, -1, -1, B, "quit"},
    {"rm", 1, 1, -1, F, "rm path"},
    {"rm-f", 1, 1, -1, F, "rm-f path"},
    {"rm-rf", 1, 1, -1, F, "rm-rf path"},
    {"rmdir", 1, 1, -1, F, "rmdir path"},
    {"sh", 1, 1, -1, G, "sh command"},
    {"sh-lines", 1, 1, -1, G, "sh-lines command"},
    {"statvfs", 1, 1, -1, F, "statvfs path"},
    {"sync", 0, 0, -1, D, "sync"},
    {"tar-in", 2, 6, 0, F,
     "tar-in (tarfile|-) directory [compress:..] [xattrs:..] [selinux:..] "
     "[acls:..]"},
    {"tar-out", 2, 8, -1, F,
     "tar-out directory (tarfile|-) [compress:..] [numericowner:..] "
     "[excludes:..] [xattrs:..] [selinux:..] [acls:..]"},
    {"touch", 1, 1, -1, F, "touch path"},
    {"umount", 1, 3, -1, D, "umount pathordevice [force:true|false] [lazyunmount:true|false]"},
    {"umount-all", 0, 0, -1, D, "umount-all"},
    {"upload", 2, 2, 0, F, "upload (filename|-) remotefilename"},
    {"version", 0, 0, -1, B, "version"},
    {"vfs-label", 1, 1, -1, D, "vfs-label mountable"},
    {"vfs-type", 1, 1, -1, D, "vfs-type mountable"},
    {"vfs-uuid", 1, 1, -1, D, "vfs-uuid mountable"},
    {"vgrename", 2, 2, -1, D, "vgrename volgroup newvolgroup"},
    {"vgs", 0, 0, -1, D, "vgs"},
    {"write", 2, 2, -1, F, "write path content"},
    {"write-append", 2, 2, -1, F, "write-append path content"},
};

static const struct {
  const char *alias, *name;
} ALIASES[] = {
    {"unmount", "umount"},
    {"unmount-all", "umount-all"},
};

static const struct script_cmd *by_name(const char *canon) {
  size_t lo = 0, hi = sizeof CMDS / sizeof CMDS[0];
  while (lo < hi) { /* CMDS is sorted by name */
    size_t mid = (lo + hi) / 2;
    int c = strcmp(canon, CMDS[mid].name);
    if (c == 0) return &CMDS[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const struct script_cmd *script_cmd_find(const char *name) {
  char canon[64];
  size_t i;
  if (!name) return NULL;
  for (i = 0; name[i]; i++) {
    if (i + 1 >= sizeof canon) return NULL;
    char c = name[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c == '_') c = '-';
    canon[i] = c;
  }
  canon[i] = 0;
  const struct script_cmd *d = by_name(canon);
  if (d) return d;
  for (i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
    if (strcmp(canon, ALIASES[i].alias) == 0) return by_name(ALIASES[i].name);
  return NULL;
}

const struct script_cmd *script_cmd_all(size_t *n) {
  *n = sizeof CMDS / sizeof CMDS[0];
  return CMDS;
}
