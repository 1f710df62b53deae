/* browse.c — golden images and OS volumes read without changing them: the
 * view validation and browsing work on (validate_source_open: the golden
 * volume itself, or a snapshot of an OS volume that keeps serving), and the
 * browsing calls over it: devices (list-filesystems with sizes, labels and
 * UUIDs), a directory's entries, a file's bytes. Every call opens its own
 * view and disk read-only and closes them, so nothing is held between
 * requests. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "artifact/artifact.h"
#include "deploy/deploy_int.h"
#include "deploy/osvolume.h"
#include "deploy/validate.h"
#include "fs/fs.h"
#include "vol/vol.h"

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

int validate_source_open(const struct validate_ctx *c, enum validate_source k, const char *ref,
                         struct vol **vol, json_t **doc, struct err *e) {
  *vol = NULL;
  if (doc) *doc = NULL;
  if (!ref || !*ref) {
    err_set(e, 400, "INVALID_BODY", "no %s given",
            k == VALIDATE_GOLDEN_IMAGE ? "golden image" : "OS volume");
    return -1;
  }
  if (k == VALIDATE_OS_VOLUME) {
    if (!c->osvols) {
      err_set(e, 503, "VOLUMES_UNAVAILABLE", "this server has no OS volumes");
      return -1;
    }
    struct store_entry *en = deploy_lookup(c->store, OSVOL_COLL, ref);
    if (!en) {
      err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.300s\" does not exist", ref);
      return -1;
    }
    int rc = osvol_snapshot(c->osvols, en->id, vol, doc, e);
    store_entry_release(en);
    return rc;
  }
  if (!c->volumes) {
    err_set(e, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return -1;
  }
  struct store_entry *en = deploy_lookup(c->store, GOLDEN_COLL, ref);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "golden image \"%.300s\" does not exist", ref);
    return -1;
  }
  int rc = 0;
  if (golden_is_deleting(en->doc)) {
    err_set(e, 409, "GOLDEN_IMAGE_DELETING", "golden image \"%.300s\" is being deleted", en->name);
    rc = -1;
  }
  if (rc == 0) rc = vol_golden_open(c->volumes, en->id, vol, e);
  if (rc == 0 && doc && !(*doc = json_loadb(en->text, en->len, 0, NULL))) {
    vol_close(*vol);
    *vol = NULL;
    rc = oom(e);
  }
  store_entry_release(en);
  return rc;
}

/* ---- one filesystem, opened read-only ------------------------------------------ */
struct view {
  struct vol *vol;
  struct fs_disk *disk;
  struct fs *fs;
};

static void view_close(struct view *v) {
  fs_close(v->fs);
  fs_disk_close(v->disk);
  vol_close(v->vol);
  memset(v, 0, sizeof *v);
}

static int check_path(const char *path, struct err *e) {
  if (!path || path[0] != '/') {
    err_set(e, 400, "INVALID_PATH", "the path \"%.300s\" must be absolute (start with '/')",
            path ? path : "");
    return -1;
  }
  if (strlen(path) > 4096) {
    err_set(e, 400, "INVALID_PATH", "the path is longer than 4096 bytes");
    return -1;
  }
  return 0;
}

static int view_open(const struct validate_ctx *c, enum validate_source k, const char *ref,
                     const char *device, struct view *v, struct err *e) {
  memset(v, 0, sizeof *v);
  if (!device || !*device) {
    err_set(e, 400, "INVALID_DEVICE",
            "no device: name the filesystem's device, e.g. device=/dev/sda1 (GET .../devices "
            "lists them)");
    return -1;
  }
  if (validate_source_open(c, k, ref, &v->vol, NULL, e) < 0 ||
      fs_disk_open(v->vol, 1, &v->disk, e) < 0) {
    view_close(v);
    return -1;
  }
  struct vol *dev = fs_device(v->disk, device, e);
  if (!dev || fs_open(dev, 1, &v->fs, e) < 0) {
    view_close(v);
    return -1;
  }
  return 0;
}

/* ---- devices ---------------------------------------------------------------------- */
json_t *browse_devices(const struct validate_ctx *c, enum validate_source k, const char *ref,
                       struct err *e) {
  struct vol *vol = NULL;
  struct fs_disk *disk = NULL;
  if (validate_source_open(c, k, ref, &vol, NULL, e) < 0) return NULL;
  if (fs_disk_open(vol, 1, &disk, e) < 0) {
    vol_close(vol);
    return NULL;
  }
  char **devs = NULL, **types = NULL;
  json_t *list = json_array(), *warn = json_array();
  int n = fs_list_filesystems(disk, &devs, &types);
  for (int i = 0; list && i < n; i++) {
    struct err de;
    err_init(&de);
    struct vol *dev = fs_device(disk, devs[i], &de);
    char *label = NULL, *uuid = NULL;
    if (dev) fs_label_uuid(dev, &label, &uuid);
    json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:s, s:s}", "device", devs[i], "type",
                                          types[i], "size", (json_int_t)(dev ? vol_size(dev) : 0),
                                          "label", label ? label : "", "uuid", uuid ? uuid : ""));
    free(label);
    free(uuid);
    err_clear(&de);
  }
  for (const char *const *w = fs_disk_warnings(disk); w && *w && warn; w++)
    json_array_append_new(warn, json_string(*w));
  fs_strv_free(devs);
  fs_strv_free(types);
  fs_disk_close(disk);
  vol_close(vol);
  if (n < 0 || !list || !warn) {
    json_decref(list);
    json_decref(warn);
    oom(e);
    return NULL;
  }
  return json_pack("{s:o, s:o}", "devices", list, "warnings", warn);
}

/* ---- directories ------------------------------------------------------------------- */
static const char *type_name(uint32_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "symlink";
  return "special";
}

static int cmp_dirent(const void *a, const void *b) {
  return strcmp(((const struct fs_dirent *)a)->name, ((const struct fs_dirent *)b)->name);
}

static json_t *member_of(struct fs *f, const char *dir, const char *name) {
  char *p = util_strdup_printf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
  if (!p) return NULL;
  struct err e;
  err_init(&e);
  struct fs_stat st;
  json_t *m;
  if (f->ops->lstat(f, p, &st, &e) < 0) {
    m = json_pack("{s:s, s:s, s:s}", "name", name, "type", "unreadable", "error", e.message);
  } else {
    char mode[8], ts[32];
    snprintf(mode, sizeof mode, "%04o", st.mode & 07777);
    util_iso8601(st.mtime * 1000 + st.mtime_ns / 1000000, ts);
    m = json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:s}", "name", name, "type", type_name(st.mode),
                  "size", (json_int_t)st.size, "mode", mode, "uid", (json_int_t)st.uid, "gid",
                  (json_int_t)st.gid, "modified", ts);
    char *target = NULL;
    if (m && S_ISLNK(st.mode) && f->ops->readlink(f, p, &target, &e) == 0)
      json_object_set_new(m, "target", json_string(target));
    free(target);
  }
  err_clear(&e);
  free(p);
  return m;
}

json_t *browse_list(const struct validate_ctx *c, enum validate_source k, const char *ref,
                    const char *device, const char *path, struct err *e) {
  if (check_path(path, e) < 0) return NULL;
  struct view v;
  if (view_open(c, k, ref, device, &v, e) < 0) return NULL;
  struct fs_stat st;
  struct fs_dirent *ents = NULL;
  size_t n = 0;
  json_t *out = NULL;
  if (v.fs->ops->stat(v.fs, path, &st, e) < 0) goto done;
  if (!S_ISDIR(st.mode)) {
    err_set(e, 400, FS_ENOTDIR, "%s: %s is a %s, not a directory", device, path,
            type_name(st.mode));
    err_action(e, "Read a file's content with GET .../files/content.");
    goto done;
  }
  if (v.fs->ops->readdir(v.fs, path, &ents, &n, e) < 0) goto done;
  if (n > 1) qsort(ents, n, sizeof *ents, cmp_dirent);
  json_t *members = json_array();
  size_t shown = n < BROWSE_LIST_MAX ? n : BROWSE_LIST_MAX;
  for (size_t i = 0; members && i < shown; i++) {
    json_t *m = member_of(v.fs, path, ents[i].name);
    if (!m || json_array_append_new(members, m) < 0) {
      json_decref(members);
      members = NULL;
    }
  }
  if (!members) {
    oom(e);
    goto done;
  }
  out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:o}", "type", "FileListing", "device", device,
                  "path", path, "count", (json_int_t)shown, "total", (json_int_t)n, "truncated",
                  shown < n, "members", members);
  if (!out) oom(e);
done:
  fs_dirents_free(ents, n);
  view_close(&v);
  return out;
}

/* ---- file contents -------------------------------------------------------------------- */
struct browse_file {
  struct view v;
  char *path;
  uint64_t size;
};

struct browse_file *browse_open(const struct validate_ctx *c, enum validate_source k,
                                const char *ref, const char *device, const char *path,
                                struct err *e) {
  if (check_path(path, e) < 0) return NULL;
  struct browse_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    oom(e);
    return NULL;
  }
  if (view_open(c, k, ref, device, &f->v, e) < 0) {
    browse_file_close(f);
    return NULL;
  }
  struct fs_stat st;
  if (f->v.fs->ops->stat(f->v.fs, path, &st, e) < 0) {
    browse_file_close(f);
    return NULL;
  }
  if (!S_ISREG(st.mode)) {
    err_set(e, 400, S_ISDIR(st.mode) ? FS_EISDIR : FS_EINVAL, "%s: %s is a %s, not a file", device,
            path, type_name(st.mode));
    if (S_ISDIR(st.mode)) err_action(e, "List a directory with GET .../files.");
    browse_file_close(f);
    return NULL;
  }
  f->size = st.size;
  return f;
}

uint64_t browse_file_size(const struct browse_file *f) { return f->size; }

long browse_file_read(struct browse_file *f, uint64_t off, void *buf, size_t len, struct err *e) {
  size_t got = 0;
  if (f->v.fs->ops->read(f->v.fs, f->path, buf, len, off, &got, e) < 0) return -1;
  return (long)got;
}

void browse_file_close(struct browse_file *f) {
  if (!f) return;
  view_close(&f->v);
  free(f->path);
  free(f);
}
