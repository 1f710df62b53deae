/* cmds_disk.c — the mount table (mount, mount-ro, umount, umount-all,
 * mountpoints, mounts, sync), devices, partitions, filesystems and LVM
 * (list-*, vfs-*, pvs, vgs, lvs, vgrename), the builtins (echo, version,
 * quit) and the table from command names to handlers. Output as guestfish
 * prints it: one name per line, "device: value" for tables. */
#include <sys/stat.h>

#include "fs/fs.h"
#include "script/script_int.h"

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int no_disk(const char *cmd, struct err *e) {
  err_set(e, 400, SCRIPT_E_FAILED, "%s: no disk is attached to this session", cmd);
  return -1;
}

static int print_strv(struct sbuf *out, char **v, struct err *e) {
  int r = 0;
  for (size_t i = 0; v && v[i] && r == 0; i++)
    if (sbuf_adds(out, v[i]) || sbuf_addc(out, '\n')) r = oom(e);
  return r;
}

/* ======================================================================= */
/* the mount table                                                          */
/* ======================================================================= */

static int is_foreign(const char *type) {
  return strcmp(type, "xfs") == 0 || strcmp(type, "btrfs") == 0 || strcmp(type, "ntfs") == 0;
}

int mount_device(struct script_session *s, const char *cmd, const char *dev, const char *path,
                 int ro, struct err *e) {
  if (!s->disk) return no_disk(cmd, e);
  CLEANUP_FREE char *full = gpath_normalize(cmd, path, e);
  if (!full) return -1;
  struct err fe;
  err_init(&fe);
  if (strcmp(full, "/") != 0) { /* the mount point must be a directory of the mounted tree */
    struct gpath g;
    if (gpath_resolve(s, cmd, full, &g, e)) return -1;
    struct fs_stat st;
    int ok = g.fs->ops->stat(g.fs, g.inner, &st, &fe) == 0;
    gpath_free(&g);
    if (!ok || !S_ISDIR(st.mode)) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: mount point %s", cmd, full,
              ok ? "is not a directory" : "does not exist");
      err_clear(&fe);
      return -1;
    }
  }
  CLEANUP_FREE char *canon = fs_device_canonical(s->disk, dev, &fe);
  if (!canon) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, dev,
            fe.status == 404 || !fe.message[0] ? "No such file or directory" : fe.message);
    err_clear(&fe);
    return -1;
  }
  struct fsref *ref = NULL;
  for (size_t i = 0; i < s->nmounts && !ref; i++)
    if (strcmp(s->mounts[i].ref->device, canon) == 0) ref = s->mounts[i].ref;
  if (ref && !ro && !ref->rw) {
    err_set(e, 409, SCRIPT_E_FAILED,
            "%s: %s is already mounted read-only; unmount it before mounting it read-write", cmd,
            canon);
    return -1;
  }
  if (s->nmounts == s->capmounts) {
    size_t nc = s->capmounts ? s->capmounts * 2 : 8;
    struct mountent *nm = realloc(s->mounts, nc * sizeof *nm);
    if (!nm) return oom(e);
    s->mounts = nm;
    s->capmounts = nc;
  }
  if (!ref) {
    struct vol *v = fs_device(s->disk, canon, &fe);
    if (!v) {
      err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, dev, fe.message);
      err_clear(&fe);
      return -1;
    }
    int want_ro = ro || fs_disk_read_only(s->disk);
    struct fs *f = NULL;
    if (fs_open(v, want_ro, &f, &fe)) {
      const char *type = fs_probe(v);
      if (is_foreign(type))
        err_set(e, 422, SCRIPT_E_GUESTFISH,
                "%s: %s holds %s, which Streamer does not edit natively: this needs guestfish "
                "(Debian package libguestfs-tools)",
                cmd, canon, type);
      else
        err_set(e, fe.status >= 500 ? 500 : 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, canon,
                fe.message);
      err_clear(&fe);
      return -1;
    }
    ref = calloc(1, sizeof *ref);
    if (!ref || !(ref->device = strdup(canon))) {
      free(ref);
      fs_close(f);
      return oom(e);
    }
    ref->fs = f;
    ref->rw = !want_ro && !f->read_only;
  }
  struct mountent *m = &s->mounts[s->nmounts];
  if (!(m->path = strdup(full))) {
    if (!ref->refs) {
      fs_close(ref->fs);
      free(ref->device);
      free(ref);
    }
    return oom(e);
  }
  m->ref = ref;
  m->ro = ro;
  ref->refs++;
  s->nmounts++;
  return 0;
}

/* Remove mount i: the filesystem is written back and closed with its last
 * mount. */
static int drop_mount(struct script_session *s, size_t i, struct err *e) {
  struct mountent m = s->mounts[i];
  memmove(&s->mounts[i], &s->mounts[i + 1], (s->nmounts - i - 1) * sizeof m);
  s->nmounts--;
  free(m.path);
  int r = 0;
  if (--m.ref->refs == 0) {
    struct err fe;
    err_init(&fe);
    if (m.ref->rw && m.ref->fs->ops->sync(m.ref->fs, &fe)) {
      err_set(e, 500, SCRIPT_E_FAILED, "umount: %s: %s", m.ref->device, fe.message);
      r = -1;
    }
    fs_close(m.ref->fs);
    free(m.ref->device);
    free(m.ref);
  }
  return r;
}

int umount_all(struct script_session *s, struct err *e) {
  int r = 0;
  while (s->nmounts) { /* last mounted first: children before parents */
    struct err e2;
    err_init(&e2);
    if (drop_mount(s, s->nmounts - 1, &e2) && r == 0) {
      *e = e2;
      r = -1;
    }
  }
  return r;
}

static int cmd_mount(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                     struct sbuf *out, struct err *e) {
  return mount_device(s, "mount", argv[0], argv[1], 0, e);
}

static int cmd_mount_ro(struct script_session *s, const struct script_stmt *st, int argc,
                        char **argv, struct sbuf *out, struct err *e) {
  return mount_device(s, "mount-ro", argv[0], argv[1], 1, e);
}

static int cmd_umount(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                      struct sbuf *out, struct err *e) {
  for (int i = 1; i < argc; i++)
    if (strncmp(argv[i], "force:", 6) != 0 && strncmp(argv[i], "lazyunmount:", 12) != 0) {
      err_set(e, 400, SCRIPT_E_FAILED, "umount: unknown optional argument \"%s\"", argv[i]);
      return -1;
    }
  size_t found = s->nmounts;
  CLEANUP_FREE char *full = gpath_normalize("umount", argv[0], e);
  if (!full) return -1;
  for (size_t i = s->nmounts; i-- > 0 && found == s->nmounts;)
    if (strcmp(s->mounts[i].path, full) == 0) found = i;
  if (found == s->nmounts && s->disk) { /* a device name */
    struct err fe;
    err_init(&fe);
    CLEANUP_FREE char *canon = fs_device_canonical(s->disk, argv[0], &fe);
    err_clear(&fe);
    for (size_t i = s->nmounts; canon && i-- > 0 && found == s->nmounts;)
      if (strcmp(s->mounts[i].ref->device, canon) == 0) found = i;
  }
  if (found == s->nmounts) {
    err_set(e, 400, SCRIPT_E_FAILED, "umount: %s: not mounted", argv[0]);
    return -1;
  }
  if (gpath_has_submount(s, s->mounts[found].path)) {
    err_set(e, 409, SCRIPT_E_FAILED,
            "umount: %s: target is busy (a filesystem is mounted below it)", s->mounts[found].path);
    return -1;
  }
  return drop_mount(s, found, e);
}

static int cmd_umount_all(struct script_session *s, const struct script_stmt *st, int argc,
                          char **argv, struct sbuf *out, struct err *e) {
  return umount_all(s, e);
}

static int cmd_mountpoints(struct script_session *s, const struct script_stmt *st, int argc,
                           char **argv, struct sbuf *out, struct err *e) {
  for (size_t i = 0; i < s->nmounts; i++)
    if (sbuf_printf(out, "%s: %s\n", s->mounts[i].ref->device, s->mounts[i].path)) return oom(e);
  return 0;
}

static int cmd_mounts(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                      struct sbuf *out, struct err *e) {
  for (size_t i = 0; i < s->nmounts; i++)
    if (sbuf_printf(out, "%s\n", s->mounts[i].ref->device)) return oom(e);
  return 0;
}

static int cmd_sync(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                    struct sbuf *out, struct err *e) {
  for (size_t i = 0; i < s->nmounts; i++) {
    struct fsref *r = s->mounts[i].ref;
    struct err fe;
    err_init(&fe);
    if (r->rw && r->fs->ops->sync(r->fs, &fe)) {
      err_set(e, 500, SCRIPT_E_FAILED, "sync: %s: %s", r->device, fe.message);
      return -1;
    }
  }
  return 0;
}

/* ======================================================================= */
/* devices, filesystems, LVM                                                */
/* ======================================================================= */

static int cmd_list_devices(struct script_session *s, const struct script_stmt *st, int argc,
                            char **argv, struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("list-devices", e);
  char **v = fs_list_devices(s->disk);
  if (!v) return oom(e);
  int r = print_strv(out, v, e);
  fs_strv_free(v);
  return r;
}

static int cmd_list_partitions(struct script_session *s, const struct script_stmt *st, int argc,
                               char **argv, struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("list-partitions", e);
  char **v = fs_list_partitions(s->disk);
  if (!v) return oom(e);
  int r = print_strv(out, v, e);
  fs_strv_free(v);
  return r;
}

static int cmd_list_filesystems(struct script_session *s, const struct script_stmt *st, int argc,
                                char **argv, struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("list-filesystems", e);
  char **devs = NULL, **types = NULL;
  int n = fs_list_filesystems(s->disk, &devs, &types);
  if (n < 0) return oom(e);
  int r = 0;
  for (int i = 0; i < n && r == 0; i++)
    if (sbuf_printf(out, "%s: %s\n", devs[i], types[i])) r = oom(e);
  fs_strv_free(devs);
  fs_strv_free(types);
  return r;
}

static int vfs_info(struct script_session *s, const char *cmd, const char *dev, int what,
                    struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk(cmd, e);
  struct err fe;
  err_init(&fe);
  struct vol *v = fs_device(s->disk, dev, &fe);
  if (!v) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: %s: %s", cmd, dev, fe.message);
    err_clear(&fe);
    return -1;
  }
  if (what == 0) { /* blkid prints nothing for what it does not know */
    const char *t = fs_probe(v);
    return sbuf_printf(out, "%s\n", strcmp(t, "unknown") == 0 ? "" : t) ? oom(e) : 0;
  }
  char *label = NULL, *uuid = NULL;
  if (fs_label_uuid(v, &label, &uuid)) return oom(e);
  int r =
      sbuf_printf(out, "%s\n", what == 1 ? (label ? label : "") : (uuid ? uuid : "")) ? oom(e) : 0;
  free(label);
  free(uuid);
  return r;
}

static int cmd_vfs_type(struct script_session *s, const struct script_stmt *st, int argc,
                        char **argv, struct sbuf *out, struct err *e) {
  return vfs_info(s, "vfs-type", argv[0], 0, out, e);
}
static int cmd_vfs_label(struct script_session *s, const struct script_stmt *st, int argc,
                         char **argv, struct sbuf *out, struct err *e) {
  return vfs_info(s, "vfs-label", argv[0], 1, out, e);
}
static int cmd_vfs_uuid(struct script_session *s, const struct script_stmt *st, int argc,
                        char **argv, struct sbuf *out, struct err *e) {
  return vfs_info(s, "vfs-uuid", argv[0], 2, out, e);
}

static int cmd_pvs(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("pvs", e);
  char **lists[2] = {fs_list_devices(s->disk), fs_list_partitions(s->disk)};
  int r = lists[0] && lists[1] ? 0 : oom(e);
  for (int l = 0; l < 2 && r == 0; l++)
    for (size_t i = 0; lists[l][i] && r == 0; i++) {
      struct err fe;
      err_init(&fe);
      struct vol *v = fs_device(s->disk, lists[l][i], &fe);
      err_clear(&fe);
      if (v && strcmp(fs_probe(v), "LVM2_member") == 0 && sbuf_printf(out, "%s\n", lists[l][i]))
        r = oom(e);
    }
  fs_strv_free(lists[0]);
  fs_strv_free(lists[1]);
  return r;
}

static int cmd_vgs(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("vgs", e);
  char **v = fs_vgs(s->disk);
  if (!v) return oom(e);
  int r = print_strv(out, v, e);
  fs_strv_free(v);
  return r;
}

static int cmd_lvs(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("lvs", e);
  char **v = fs_lvs(s->disk);
  if (!v) return oom(e);
  int r = print_strv(out, v, e);
  fs_strv_free(v);
  return r;
}

static int cmd_vgrename(struct script_session *s, const struct script_stmt *st, int argc,
                        char **argv, struct sbuf *out, struct err *e) {
  if (!s->disk) return no_disk("vgrename", e);
  struct err fe;
  err_init(&fe);
  if (fs_vgrename(s->disk, argv[0], argv[1], &fe)) {
    err_set(e, fe.status >= 500 ? 500 : 400, SCRIPT_E_FAILED, "vgrename: %s", fe.message);
    err_clear(&fe);
    return -1;
  }
  return 0;
}

/* ======================================================================= */
/* builtins                                                                 */
/* ======================================================================= */

static int cmd_echo(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                    struct sbuf *out, struct err *e) {
  for (int i = 0; i < argc; i++)
    if ((i && sbuf_addc(out, ' ')) || sbuf_adds(out, argv[i])) return oom(e);
  return sbuf_addc(out, '\n') ? oom(e) : 0;
}

/* The libguestfs release whose dialect Streamer speaks (Debian 12's). */
static int cmd_version(struct script_session *s, const struct script_stmt *st, int argc,
                       char **argv, struct sbuf *out, struct err *e) {
  return sbuf_adds(out, "major: 1\nminor: 48\nrelease: 6\nextra: streamer\n") ? oom(e) : 0;
}

static int cmd_quit(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                    struct sbuf *out, struct err *e) {
  s->quit = 1;
  return 0;
}

/* ======================================================================= */
/* name -> handler                                                          */
/* ======================================================================= */

#define H(name)                                                                                    \
  int cmd_##name(struct script_session *, const struct script_stmt *, int, char **, struct sbuf *, \
                 struct err *)
H(upload);
H(download);
H(cat);
H(write);
H(write_append);
H(touch);
H(mkdir);
H(mkdir_p);
H(mkdir_mode);
H(rm);
H(rm_f);
H(rm_rf);
H(rmdir);
H(cp);
H(cp_a);
H(cp_r);
H(mv);
H(ln);
H(ln_f);
H(ln_s);
H(ln_sf);
H(chmod);
H(chown);
H(ls);
H(ll);
H(exists);
H(is_file);
H(is_dir);
H(filesize);
H(statvfs);
H(glob);
H(copy_in);
H(copy_out);
H(compress_out);
H(tar_in);
H(tar_out);
H(inspect_os);
H(inspect_get_roots);
H(inspect_get_type);
H(inspect_get_distro);
H(inspect_get_product_name);
H(inspect_get_major_version);
H(inspect_get_minor_version);
H(inspect_get_osinfo);
H(inspect_get_hostname);
#undef H

static const struct {
  const char *name;
  script_cmd_fn fn;
} HANDLERS[] = {
    {"cat", cmd_cat},
    {"chmod", cmd_chmod},
    {"chown", cmd_chown},
    {"compress-out", cmd_compress_out},
    {"copy-in", cmd_copy_in},
    {"copy-out", cmd_copy_out},
    {"cp", cmd_cp},
    {"cp-a", cmd_cp_a},
    {"cp-r", cmd_cp_r},
    {"download", cmd_download},
    {"echo", cmd_echo},
    {"exists", cmd_exists},
    {"exit", cmd_quit},
    {"filesize", cmd_filesize},
    {"glob", cmd_glob},
    {"inspect-get-distro", cmd_inspect_get_distro},
    {"inspect-get-hostname", cmd_inspect_get_hostname},
    {"inspect-get-major-version", cmd_inspect_get_major_version},
    {"inspect-get-minor-version", cmd_inspect_get_minor_version},
    {"inspect-get-osinfo", cmd_inspect_get_osinfo},
    {"inspect-get-product-name", cmd_inspect_get_product_name},
    {"inspect-get-roots", cmd_inspect_get_roots},
    {"inspect-get-type", cmd_inspect_get_type},
    {"inspect-os", cmd_inspect_os},
    {"is-dir", cmd_is_dir},
    {"is-file", cmd_is_file},
    {"list-devices", cmd_list_devices},
    {"list-filesystems", cmd_list_filesystems},
    {"list-partitions", cmd_list_partitions},
    {"ll", cmd_ll},
    {"ln", cmd_ln},
    {"ln-f", cmd_ln_f},
    {"ln-s", cmd_ln_s},
    {"ln-sf", cmd_ln_sf},
    {"ls", cmd_ls},
    {"lvs", cmd_lvs},
    {"mkdir", cmd_mkdir},
    {"mkdir-mode", cmd_mkdir_mode},
    {"mkdir-p", cmd_mkdir_p},
    {"mount", cmd_mount},
    {"mount-ro", cmd_mount_ro},
    {"mountpoints", cmd_mountpoints},
    {"mounts", cmd_mounts},
    {"mv", cmd_mv},
    {"pvs", cmd_pvs},
    {"q", cmd_quit},
    {"quit", cmd_quit},
    {"rm", cmd_rm},
    {"rm-f", cmd_rm_f},
    {"rm-rf", cmd_rm_rf},
    {"rmdir", cmd_rmdir},
    {"statvfs", cmd_statvfs},
    {"sync", cmd_sync},
    {"tar-in", cmd_tar_in},
    {"tar-out", cmd_tar_out},
    {"touch", cmd_touch},
    {"umount", cmd_umount},
    {"umount-all", cmd_umount_all},
    {"upload", cmd_upload},
    {"version", cmd_version},
    {"vfs-label", cmd_vfs_label},
    {"vfs-type", cmd_vfs_type},
    {"vfs-uuid", cmd_vfs_uuid},
    {"vgrename", cmd_vgrename},
    {"vgs", cmd_vgs},
    {"write", cmd_write},
    {"write-append", cmd_write_append},
};

script_cmd_fn script_cmd_handler(const struct script_cmd *d) {
  for (size_t i = 0; i < sizeof HANDLERS / sizeof HANDLERS[0]; i++)
    if (strcmp(HANDLERS[i].name, d->name) == 0) return HANDLERS[i].fn;
  return NULL;
}
