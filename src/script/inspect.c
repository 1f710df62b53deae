/* inspect.c — inspect-os and inspect-get-*: find the installed operating
 * systems' root filesystems and describe them, the way libguestfs'
 * inspection does for Linux (enough for the corpus' multi-distro scripts):
 * a root has /etc, /bin (or /usr/bin) and /etc/fstab (or /etc/hosts); its
 * distribution, version and product name come from /etc/os-release, else
 * /etc/redhat-release, /etc/SuSE-release, /etc/debian_version,
 * /etc/lsb-release. Windows roots live on NTFS, which Streamer does not
 * open natively (guestfish finds them when it runs the session); ESXi
 * bootbanks are not OS roots for libguestfs either.
 *
 * Like libguestfs, inspect-os unmounts everything first. */
#include <ctype.h>
#include <sys/stat.h>

#include "fs/fs.h"
#include "script/script_int.h"

struct osinfo {
  char type[16];
  char distro[32];
  char product[256];
  int major, minor;
  char hostname[256];
};

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int exists_kind(struct fs *f, const char *path, int want_dir) {
  struct fs_stat st;
  struct err fe;
  err_init(&fe);
  int ok = f->ops->stat(f, path, &st, &fe) == 0;
  err_clear(&fe);
  if (!ok) return 0;
  if (want_dir == 1) return S_ISDIR(st.mode);
  if (want_dir == 0) return S_ISREG(st.mode);
  return 1;
}

static char *read_small(struct fs *f, const char *path) {
  char *data = NULL;
  size_t len = 0;
  struct err fe;
  err_init(&fe);
  if (fs_read_file(f, path, 65536, &data, &len, &fe)) {
    err_clear(&fe);
    return NULL;
  }
  return data; /* fs_read_file NUL-terminates */
}

/* The value of KEY= in an os-release style file, unquoted. */
static int kv_get(const char *text, const char *key, char *out, size_t n) {
  size_t kl = strlen(key);
  for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    while (*l == ' ' || *l == '\t')
      l++;
    if (strncmp(l, key, kl) != 0 || l[kl] != '=') continue;
    const char *v = l + kl + 1;
    size_t vl = strcspn(v, "\n");
    if (vl && (v[0] == '"' || v[0] == '\'')) {
      char q = v[0];
      v++;
      vl--;
      const char *end = memchr(v, q, vl);
      if (end) vl = (size_t)(end - v);
    }
    snprintf(out, n, "%.*s", (int)vl, v);
    return 1;
  }
  return 0;
}

static void first_line(const char *text, char *out, size_t n) {
  size_t l = strcspn(text, "\n");
  while (l && (text[l - 1] == ' ' || text[l - 1] == '\r'))
    l--;
  snprintf(out, n, "%.*s", (int)l, text);
}

/* "7.4.1708" -> 7, 4 */
static void parse_version(const char *v, int *major, int *minor) {
  while (*v && !isdigit((unsigned char)*v))
    v++;
  *major = atoi(v);
  while (isdigit((unsigned char)*v))
    v++;
  *minor = *v == '.' ? atoi(v + 1) : 0;
}

static const char *map_os_release_id(const char *id) {
  static const struct {
    const char *id, *distro;
  } map[] = {
      {"rhel", "rhel"},
      {"centos", "centos"},
      {"fedora", "fedora"},
      {"sles", "sles"},
      {"sled", "sles"},
      {"opensuse", "opensuse"},
      {"opensuse-leap", "opensuse"},
      {"opensuse-tumbleweed", "opensuse"},
      {"ubuntu", "ubuntu"},
      {"debian", "debian"},
      {"ol", "oraclelinux"},
      {"rocky", "rocky"},
      {"almalinux", "almalinux"},
      {"alpine", "alpinelinux"},
      {"arch", "archlinux"},
      {"kali", "kalilinux"},
      {"mageia", "mageia"},
      {"void", "voidlinux"},
      {"altlinux", "altlinux"},
      {"linuxmint", "linuxmint"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(id, map[i].id) == 0) return map[i].distro;
  return NULL;
}

/* Is the filesystem an OS root? Fill oi if so. */
static int inspect_fs(struct fs *f, struct osinfo *oi) {
  memset(oi, 0, sizeof *oi);
  if (!exists_kind(f, "/etc", 1)) return 0;
  if (!exists_kind(f, "/bin", -1) && !exists_kind(f, "/usr/bin", 1)) return 0;
  if (!exists_kind(f, "/etc/fstab", 0) && !exists_kind(f, "/etc/hosts", 0)) return 0;
  snprintf(oi->type, sizeof oi->type, "linux");
  snprintf(oi->distro, sizeof oi->distro, "unknown");
  snprintf(oi->product, sizeof oi->product, "unknown");
  snprintf(oi->hostname, sizeof oi->hostname, "unknown");
  CLEANUP_FREE char *osr = read_small(f, "/etc/os-release");
  char id[64] = "", v[256] = "";
  int done = 0;
  if (osr && kv_get(osr, "ID", id, sizeof id)) {
    const char *d = map_os_release_id(id);
    if (d) {
      snprintf(oi->distro, sizeof oi->distro, "%s", d);
      if (kv_get(osr, "PRETTY_NAME", v, sizeof v))
        snprintf(oi->product, sizeof oi->product, "%s", v);
      if (kv_get(osr, "VERSION_ID", v, sizeof v)) parse_version(v, &oi->major, &oi->minor);
      done = 1;
    }
  }
  CLEANUP_FREE char *rh = done ? NULL : read_small(f, "/etc/redhat-release");
  CLEANUP_FREE char *suse = done || rh ? NULL : read_small(f, "/etc/SuSE-release");
  if (rh) {
    first_line(rh, oi->product, sizeof oi->product);
    const char *d = strstr(rh, "Red Hat Enterprise Linux") ? "rhel"
                    : strstr(rh, "CentOS")                 ? "centos"
                    : strstr(rh, "Fedora")                 ? "fedora"
                    : strstr(rh, "Scientific Linux")       ? "scientificlinux"
                    : strstr(rh, "Oracle Linux")           ? "oraclelinux"
                                                           : "redhat-based";
    snprintf(oi->distro, sizeof oi->distro, "%s", d);
    const char *rel = strstr(rh, "release ");
    if (rel) parse_version(rel + 8, &oi->major, &oi->minor);
  } else if (suse) {
    first_line(suse, oi->product, sizeof oi->product);
    snprintf(oi->distro, sizeof oi->distro, "%s",
             strstr(suse, "SUSE Linux Enterprise") ? "sles"
             : strstr(suse, "openSUSE")            ? "opensuse"
                                                   : "suse-based");
    char ver[32] = "", pl[32] = "";
    kv_get(suse, "VERSION", ver, sizeof ver);
    kv_get(suse, "PATCHLEVEL", pl, sizeof pl);
    /* "VERSION = 12" has blanks around '=' */
    const char *p = strstr(suse, "VERSION");
    if (!ver[0] && p && (p = strchr(p, '='))) oi->major = atoi(p + 1);
    p = strstr(suse, "PATCHLEVEL");
    if (!pl[0] && p && (p = strchr(p, '='))) oi->minor = atoi(p + 1);
    if (ver[0]) parse_version(ver, &oi->major, &oi->minor);
    if (pl[0]) oi->minor = atoi(pl);
  } else if (!done) {
    CLEANUP_FREE char *lsb = read_small(f, "/etc/lsb-release");
    CLEANUP_FREE char *deb = read_small(f, "/etc/debian_version");
    if (lsb && kv_get(lsb, "DISTRIB_ID", id, sizeof id) && strcmp(id, "Ubuntu") == 0) {
      snprintf(oi->distro, sizeof oi->distro, "ubuntu");
      if (kv_get(lsb, "DISTRIB_DESCRIPTION", v, sizeof v))
        snprintf(oi->product, sizeof oi->product, "%s", v);
      if (kv_get(lsb, "DISTRIB_RELEASE", v, sizeof v)) parse_version(v, &oi->major, &oi->minor);
    } else if (deb) {
      snprintf(oi->distro, sizeof oi->distro, "debian");
      first_line(deb, v, sizeof v);
      parse_version(v, &oi->major, &oi->minor);
      snprintf(oi->product, sizeof oi->product, "%s", v);
    }
  }
  CLEANUP_FREE char *hn = read_small(f, "/etc/hostname");
  CLEANUP_FREE char *net = hn ? NULL : read_small(f, "/etc/sysconfig/network");
  if (hn && *hn)
    first_line(hn, oi->hostname, sizeof oi->hostname);
  else if (net && kv_get(net, "HOSTNAME", v, sizeof v))
    snprintf(oi->hostname, sizeof oi->hostname, "%s", v);
  return 1;
}

/* Inspect one device (canonical name): 1 = a root (oi filled), 0 = not. */
static int inspect_device(struct script_session *s, const char *dev, struct osinfo *oi) {
  for (size_t i = 0; i < s->nmounts; i++) /* mounted: read through that instance */
    if (strcmp(s->mounts[i].ref->device, dev) == 0) return inspect_fs(s->mounts[i].ref->fs, oi);
  struct err fe;
  err_init(&fe);
  struct vol *v = fs_device(s->disk, dev, &fe);
  struct fs *f = NULL;
  int r = 0;
  if (v && fs_open(v, 1, &f, &fe) == 0) {
    r = inspect_fs(f, oi);
    fs_close(f);
  }
  err_clear(&fe);
  return r;
}

int cmd_inspect_os(struct script_session *s, const struct script_stmt *st, int argc, char **argv,
                   struct sbuf *out, struct err *e) {
  if (!s->disk) {
    err_set(e, 400, SCRIPT_E_FAILED, "inspect-os: no disk is attached to this session");
    return -1;
  }
  if (s->nmounts) {
    slog(s, "inspect-os: unmounting every filesystem first, as libguestfs does\n");
    if (umount_all(s, e)) return -1;
  }
  char **devs = NULL, **types = NULL;
  int n = fs_list_filesystems(s->disk, &devs, &types);
  if (n < 0) return oom(e);
  int r = 0;
  for (int i = 0; i < n && r == 0; i++) {
    struct osinfo oi;
    if (inspect_device(s, devs[i], &oi) && sbuf_printf(out, "%s\n", devs[i])) r = oom(e);
  }
  fs_strv_free(devs);
  fs_strv_free(types);
  return r;
}

int cmd_inspect_get_roots(struct script_session *s, const struct script_stmt *st, int argc,
                          char **argv, struct sbuf *out, struct err *e) {
  return cmd_inspect_os(s, st, argc, argv, out, e);
}

static int get_info(struct script_session *s, const char *cmd, const char *root, struct osinfo *oi,
                    struct err *e) {
  if (!s->disk) {
    err_set(e, 400, SCRIPT_E_FAILED, "%s: no disk is attached to this session", cmd);
    return -1;
  }
  struct err fe;
  err_init(&fe);
  CLEANUP_FREE char *canon = fs_device_canonical(s->disk, root, &fe);
  err_clear(&fe);
  if (!canon || !inspect_device(s, canon, oi)) {
    err_set(e, 400, SCRIPT_E_FAILED,
            "%s: %s: root device not found: only call this function with a root device "
            "previously returned by inspect-os",
            cmd, root);
    return -1;
  }
  return 0;
}

static int print_str(struct sbuf *out, const char *v, struct err *e) {
  return sbuf_printf(out, "%s\n", v) ? oom(e) : 0;
}

int cmd_inspect_get_type(struct script_session *s, const struct script_stmt *st, int argc,
                         char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  return get_info(s, "inspect-get-type", argv[0], &oi, e) ? -1 : print_str(out, oi.type, e);
}

int cmd_inspect_get_distro(struct script_session *s, const struct script_stmt *st, int argc,
                           char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  return get_info(s, "inspect-get-distro", argv[0], &oi, e) ? -1 : print_str(out, oi.distro, e);
}

int cmd_inspect_get_product_name(struct script_session *s, const struct script_stmt *st, int argc,
                                 char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  return get_info(s, "inspect-get-product-name", argv[0], &oi, e) ? -1
                                                                  : print_str(out, oi.product, e);
}

int cmd_inspect_get_hostname(struct script_session *s, const struct script_stmt *st, int argc,
                             char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  return get_info(s, "inspect-get-hostname", argv[0], &oi, e) ? -1 : print_str(out, oi.hostname, e);
}

int cmd_inspect_get_major_version(struct script_session *s, const struct script_stmt *st, int argc,
                                  char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  if (get_info(s, "inspect-get-major-version", argv[0], &oi, e)) return -1;
  return sbuf_printf(out, "%d\n", oi.major) ? oom(e) : 0;
}

int cmd_inspect_get_minor_version(struct script_session *s, const struct script_stmt *st, int argc,
                                  char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  if (get_info(s, "inspect-get-minor-version", argv[0], &oi, e)) return -1;
  return sbuf_printf(out, "%d\n", oi.minor) ? oom(e) : 0;
}

/* libosinfo short ids, as libguestfs derives them */
int cmd_inspect_get_osinfo(struct script_session *s, const struct script_stmt *st, int argc,
                           char **argv, struct sbuf *out, struct err *e) {
  struct osinfo oi;
  if (get_info(s, "inspect-get-osinfo", argv[0], &oi, e)) return -1;
  char id[96];
  const char *d = oi.distro;
  if (strcmp(d, "rhel") == 0 || strcmp(d, "oraclelinux") == 0 || strcmp(d, "rocky") == 0 ||
      strcmp(d, "almalinux") == 0 || strcmp(d, "scientificlinux") == 0)
    snprintf(id, sizeof id, "%s%d.%d", strcmp(d, "oraclelinux") == 0 ? "ol" : d, oi.major,
             oi.minor);
  else if (strcmp(d, "centos") == 0)
    snprintf(id, sizeof id, oi.major >= 8 ? "centos%d" : "centos%d.0", oi.major);
  else if (strcmp(d, "sles") == 0)
    snprintf(id, sizeof id, oi.minor ? "sles%dsp%d" : "sles%d", oi.major, oi.minor);
  else if (strcmp(d, "opensuse") == 0)
    snprintf(id, sizeof id, "opensuse%d.%d", oi.major, oi.minor);
  else if (strcmp(d, "ubuntu") == 0)
    snprintf(id, sizeof id, "ubuntu%d.%02d", oi.major, oi.minor);
  else if (strcmp(d, "debian") == 0 || strcmp(d, "fedora") == 0)
    snprintf(id, sizeof id, "%s%d", d, oi.major);
  else
    snprintf(id, sizeof id, "unknown");
  return print_str(out, id, e);
}
