/* golden.c — /rest/golden-images over HTTP: the collection and resources
 * (documents kept by artifact/golden.c), streamed multipart uploads imported
 * by a task (vol/image.h), downloads as the HPE zip straight from the golden
 * volume, the import log, PUT and the asynchronous DELETE.
 *
 * An upload never sits in memory: http.c hands POST /rest/golden-images with
 * a multipart/form-data body to upload_begin at the first call (headers
 * only: session, role, name, quota and free space are checked there, before
 * a byte of the body is read), then every chunk to upload_data, which runs
 * libmicrohttpd's post processor. A raw image or an HPE zip in the `file`
 * part is imported while it arrives (image_stream_*: into the golden
 * volume's temp file, no upload file); the task then checks and commits it,
 * creates the document (the image is usable from then on) and waits for the
 * SHA-256, which it records last. qcow2, vmdk and vhdx files are written to
 * VOLUMES/uploads/<uuid>.part through a 1 MiB buffer and imported by the
 * task with qemu-img. The task exists from the first byte of the file on;
 * percentComplete shows the receive, then the import (see docs/api.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "api/api_int.h"
#include "artifact/artifact.h"
#include "deploy/capture.h"
#include "deploy/osvolume.h"
#include "vol/image.h"
#include "vol/vol.h"

#define UPLOAD_BUF (1u << 20)       /* write buffer of an upload */
#define HOLE_BLOCK (64u << 10)      /* zero blocks of this size stay holes in the upload file */
#define PP_BUF (64u << 10)          /* libmicrohttpd post processor buffer */
#define DOWNLOAD_BLOCK (256u << 10) /* bytes per download read */
#define FREE_MARGIN (64ull << 20)   /* disk space an upload must leave free */
#define PROGRESS_MS 250             /* at most 4 task updates a second */
#define SCAN_MAX (128u << 10)       /* body bytes searched for the file part's header */
#define NAME_MAX_LEN 255
#define DESC_MAX_LEN 65536

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* ---- golden tasks and the stop ---------------------------------------------------
 * Import and checksum tasks can run long (a SHA-256 of a large image). At
 * stop, golden_api_fini raises `stopping` (which interrupts a SHA-256: it is
 * computed again at the next start) and waits until no golden task runs, as
 * they use the api that is freed after it. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running;
  int stopping;
} golden_tasks = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static int golden_task_enter(struct err *e) {
  pthread_mutex_lock(&golden_tasks.mu);
  int stopping = golden_tasks.stopping;
  if (!stopping) golden_tasks.running++;
  pthread_mutex_unlock(&golden_tasks.mu);
  if (stopping) err_set(e, 503, "SHUTTING_DOWN", "streamerd is stopping");
  return stopping ? -1 : 0;
}

static void golden_task_leave(void) {
  pthread_mutex_lock(&golden_tasks.mu);
  golden_tasks.running--;
  pthread_cond_broadcast(&golden_tasks.cv);
  pthread_mutex_unlock(&golden_tasks.mu);
}

/* ---- the import log ------------------------------------------------------------ */
struct logbuf {
  char *text;
  size_t len, cap;
};

static void log_line(struct logbuf *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(struct logbuf *l, const char *fmt, ...) {
  char line[1200], ts[32];
  util_iso8601(util_now_ms(), ts);
  int n = snprintf(line, sizeof line, "%s ", ts);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  if (l->len + len + 1 > l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 1024;
    while (cap < l->len + len + 1)
      cap *= 2;
    char *t = realloc(l->text, cap);
    if (!t) return;
    l->text = t;
    l->cap = cap;
  }
  memcpy(l->text + l->len, line, len);
  l->len += len;
  l->text[l->len] = 0;
}

/* ---- storage accounting ---------------------------------------------------------- */
static uint64_t quota_used(struct api *a) {
  return golden_allocated_total(a->store) + __atomic_load_n(&a->upload_bytes, __ATOMIC_RELAXED);
}

static void reserve(struct api *a, uint64_t n) {
  __atomic_add_fetch(&a->upload_bytes, n, __ATOMIC_RELAXED);
}

static void unreserve(struct api *a, uint64_t n) {
  __atomic_sub_fetch(&a->upload_bytes, n, __ATOMIC_RELAXED);
}

static void err_quota(struct err *e, struct api *a, uint64_t need) {
  err_set(e, 413, "QUOTA_EXCEEDED",
          "storing %llu more bytes would exceed the storage quota of %llu bytes (%llu in use)",
          (unsigned long long)need, (unsigned long long)a->cfg.storage_quota,
          (unsigned long long)quota_used(a));
  err_action(e, "Delete golden images that are no longer needed, or raise --storage-quota.");
}

/* 0 if `need` bytes (plus a margin) fit on the file system of `dir`. */
static int check_free(const char *dir, uint64_t need, struct err *e) {
  struct statvfs sv;
  if (statvfs(dir, &sv) < 0) return 0; /* cannot tell: let the writes decide */
  uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
  if (need + FREE_MARGIN > avail) {
    err_set(e, 507, "INSUFFICIENT_STORAGE",
            "the upload needs %llu bytes but only %llu are free on the volume store's file "
            "system (keeping %llu in reserve)",
            (unsigned long long)need, (unsigned long long)avail, (unsigned long long)FREE_MARGIN);
    err_action(e, "Free disk space on the server (delete unused golden images) and retry.");
    return -1;
  }
  return 0;
}

/* ---- file names ------------------------------------------------------------------- */
/* The base name of an uploaded file: quotes and any directory part (also
 * C:\x\y.zip) removed. malloc'd; NULL if nothing is left. */
static char *clean_filename(const char *raw) {
  if (!raw) return NULL;
  const char *p = raw;
  for (const char *q = raw; *q; q++)
    if (*q == '/' || *q == '\\') p = q + 1;
  if (p == raw && strlen(raw) >= 2 && raw[1] == ':') p = raw + 2; /* C:file.zip */
  char *out = strdup(p);
  if (!out) return NULL;
  utf8_sanitize(out); /* it goes into messages, the task and the log */
  size_t o = 0;
  for (size_t i = 0; out[i]; i++)
    if (out[i] != '"' && out[i] != '\'') out[o++] = out[i];
  out[o] = 0;
  while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
    out[--o] = 0;
  if (!out[0] || is(out, ".") || is(out, "..")) {
    free(out);
    return NULL;
  }
  return out;
}

/* The format a file name's extension announces; -1 if none we take. */
static int format_of(const char *fn) {
  const char *dot = strrchr(fn, '.');
  if (!dot) return -1;
  static const struct {
    const char *ext;
    enum image_format fmt;
  } map[] = {{".zip", IMAGE_HPE_ZIP}, {".raw", IMAGE_RAW},   {".img", IMAGE_RAW},
             {".qcow2", IMAGE_QCOW2}, {".vmdk", IMAGE_VMDK}, {".vhdx", IMAGE_VHDX}};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (strcasecmp(dot, map[i].ext) == 0) return (int)map[i].fmt;
  return -1;
}

/* The "format" of a golden image document. */
static const char *format_label(enum image_format f) {
  return f == IMAGE_HPE_ZIP ? "hpe-zip" : image_format_name(f);
}

/* ---- uploads ------------------------------------------------------------------------ */
struct field {
  char *v;
  size_t len;
  int too_long;
};

struct upload {
  struct api *api;
  enum upload_kind kind; /* a golden image, or a bundle / backup handed to bundles.c */
  struct MHD_PostProcessor *pp;
  char id[37]; /* the new golden image's (or bundle's) id */
  char *path;  /* VOLUMES/uploads/<id>.part (qcow2, vmdk, vhdx), VOLUMES/bundles/<id>.part */
  gnutls_hash_hd_t hash; /* bundles: the SHA-256 of the file as it arrives */
  int fd;
  struct image_stream *stream; /* raw and HPE zip: imported while they arrive */
  char *buf;
  size_t buf_len;
  uint64_t received;   /* bytes of the file part */
  uint64_t body_total; /* Content-Length, 0 if unknown */
  uint64_t body_seen;
  uint64_t reserved; /* bytes counted in api->upload_bytes */
  char *filename;
  enum image_format fmt;
  int file_parts;
  int parts_seen; /* the post processor found at least one part */
  /* the part being parsed */
  char *cur_key, *cur_filename;
  uint64_t cur_end;
  int in_file;
  const char *q_name, *q_desc; /* from the query; NULL when absent or empty */
  const char *hdr_filename;    /* the uploadfilename header (Python SDK) */
  char *scan;                  /* the body's start, searched for the file part's header */
  size_t scan_len;
  int scan_done;
  char *raw_filename;              /* its filename= as sent, also when not quoted */
  struct field f_name, f_desc;     /* form fields */
  struct field f_lenient, f_group; /* bundles: lenient, deploymentGrpUri */
  struct task *task;
  char owner[128];
  int last_pct;
  int64_t last_ms, t0;
  struct logbuf log;
  int failed;
  struct err err;
};

static void upload_fail(struct upload *u, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void upload_fail(struct upload *u, int status, const char *code, const char *fmt, ...) {
  if (u->failed) return;
  u->failed = 1;
  u->err.status = status;
  snprintf(u->err.code, sizeof u->err.code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(u->err.message, sizeof u->err.message, fmt, ap);
  va_end(ap);
}

static void upload_fail_err(struct upload *u, struct err *e) {
  if (!u->failed) {
    u->failed = 1;
    u->err = *e;
    e->nested = NULL;
  }
  err_clear(e);
}

/* Close and remove the partial file, or abandon the streamed import. */
static void drop_file(struct upload *u) {
  if (u->fd >= 0) close(u->fd);
  u->fd = -1;
  if (u->path) unlink(u->path);
  image_stream_close(u->stream); /* removes its temp file */
  u->stream = NULL;
}

static int is_zero(const char *p, size_t n) {
  if (n == 0) return 1;
  if (p[0] || memcmp(p, p + 1, n - 1) != 0) return 0;
  return 1;
}

/* Uploads without a Content-Length reserve quota as they go. */
static int reserve_received(struct upload *u) {
  struct api *a = u->api;
  if (u->received > u->reserved) {
    uint64_t more = u->received - u->reserved;
    if (a->cfg.storage_quota && quota_used(a) + more > a->cfg.storage_quota) {
      struct err e;
      err_init(&e);
      err_quota(&e, a, more);
      upload_fail_err(u, &e);
      drop_file(u);
      return -1;
    }
    reserve(a, more);
    u->reserved += more;
  }
  return 0;
}

static int flush_buf(struct upload *u) {
  if (u->failed || u->fd < 0 || u->buf_len == 0) return u->failed ? -1 : 0;
  if (reserve_received(u) < 0) return -1;
  /* Blocks of zeros are left as holes (most of a disk image is zeros): the
   * file is written at the offsets of the data and its length set at the
   * end (upload_end). */
  uint64_t base = u->received - u->buf_len;
  size_t off = 0;
  while (off < u->buf_len) {
    size_t blk = u->buf_len - off < HOLE_BLOCK ? u->buf_len - off : HOLE_BLOCK;
    if (is_zero(u->buf + off, blk)) {
      off += blk;
      continue;
    }
    size_t end = off + blk; /* extend the run over the following data blocks */
    while (end < u->buf_len) {
      size_t b = u->buf_len - end < HOLE_BLOCK ? u->buf_len - end : HOLE_BLOCK;
      if (is_zero(u->buf + end, b)) break;
      end += b;
    }
    while (off < end) {
      ssize_t n = pwrite(u->fd, u->buf + off, end - off, (off_t)(base + off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : ENOSPC;
        if (err == ENOSPC || err == EDQUOT)
          upload_fail(
              u, 507, "INSUFFICIENT_STORAGE",
              "the server's disk filled up after %llu bytes of the upload; nothing was kept",
              (unsigned long long)(base + off));
        else
          upload_fail(u, 500, "IO_ERROR", "cannot write the upload to %s: %s", u->path,
                      strerror(err));
        drop_file(u);
        return -1;
      }
      off += (size_t)n;
    }
  }
  u->buf_len = 0;
  return 0;
}

/* Percent of the task when the body has arrived: a streamed import is then
 * done but for its checks and commit; a file import has not started. */
#define PCT_RECEIVED_STREAM 80
#define PCT_RECEIVED_FILE 50
#define PCT_USABLE 90 /* streamed: the document exists, the SHA-256 follows */

static void progress_receive(struct upload *u) {
  if (!u->task || !u->body_total) return;
  int top = u->stream ? PCT_RECEIVED_STREAM : PCT_RECEIVED_FILE;
  int pct = (int)(u->body_seen * (uint64_t)top / u->body_total);
  if (pct > top - 1) pct = top - 1; /* top = received and queued for import */
  int64_t now = util_mono_ms();
  if (pct == u->last_pct || (now - u->last_ms < PROGRESS_MS && pct < u->last_pct + 5)) return;
  u->last_pct = pct;
  u->last_ms = now;
  task_percent(u->task, pct);
}

/* The name the image will get: the query's, else the form's, else the file
 * name without its extension. */
static char *final_name(struct upload *u) {
  if (u->q_name) return strdup(u->q_name);
  if (u->f_name.v && u->f_name.len) return strdup(u->f_name.v);
  if (!u->filename) return strdup("");
  char *n = strdup(u->filename);
  char *dot = n ? strrchr(n, '.') : NULL;
  if (dot && dot != n) *dot = 0;
  return n;
}

static int open_part_file(struct upload *u) {
  u->fd = open(u->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (u->fd < 0) {
    upload_fail(u, 500, "IO_ERROR", "cannot create %s: %s", u->path, strerror(errno));
    return -1;
  }
  u->buf = malloc(UPLOAD_BUF);
  if (!u->buf) {
    upload_fail(u, 500, "OUT_OF_MEMORY", "out of memory");
    drop_file(u);
    return -1;
  }
  return 0;
}

/* The upload's task, from the file part's first byte on (its associated resource: the golden
 * image, or the bundle / backup of bundles.c). 0, or -1 with the upload failed. */
static int upload_task_start(struct upload *u) {
  char *name = final_name(u);
  json_t *assoc = u->kind == UPLOAD_GOLDEN ? task_assoc(GOLDEN_COLL, u->id, name ? name : "")
                                           : bundle_upload_assoc(u->kind, u->id, name ? name : "");
  free(name);
  struct err e;
  err_init(&e);
  u->task = task_create(u->api->tasks, "Upload", u->owner, assoc, &e);
  json_decref(assoc);
  if (!u->task) {
    upload_fail_err(u, &e);
    drop_file(u);
    return -1;
  }
  u->last_ms = util_mono_ms();
  task_progress(u->task, 0, "Receiving \"%s\"", u->filename);
  return 0;
}

/* A bundle or backup (.zip only): written to VOLUMES/bundles/<id>.part and
 * hashed as it arrives; the task is bundles.c's (bundle_upload_assoc). */
static void file_part_start_bundle(struct upload *u) {
  size_t n = strlen(u->filename);
  if (n < 5 || strcasecmp(u->filename + n - 4, ".zip") != 0) {
    upload_fail(u, 400, "BUNDLE_NOT_ZIP",
                "\"%.200s\": artifact bundles and backups are uploaded as .zip files", u->filename);
    err_action(&u->err, "Upload the bundle's .zip file as it was downloaded.");
    return;
  }
  if (open_part_file(u) < 0) return;
  if (gnutls_hash_init(&u->hash, GNUTLS_DIG_SHA256) < 0) {
    u->hash = NULL;
    upload_fail(u, 500, "OUT_OF_MEMORY", "out of memory");
    drop_file(u);
    return;
  }
  upload_task_start(u);
}

/* The first bytes of the file part: check its name and format, open the
 * file, create the task. */
static void file_part_start(struct upload *u, const char *raw_filename) {
  u->file_parts++;
  if (u->file_parts > 1) {
    upload_fail(u, 400, "UPLOAD_MULTIPLE_FILES",
                "the upload has more than one \"file\" part; send one image per request");
    drop_file(u);
    return;
  }
  if (!raw_filename || !*raw_filename) raw_filename = u->raw_filename;
  if (!raw_filename || !*raw_filename) raw_filename = u->hdr_filename;
  u->filename = clean_filename(raw_filename);
  if (!u->filename) {
    upload_fail(u, 400, "UPLOAD_NO_FILENAME",
                "the \"file\" part has no file name (Content-Disposition: form-data; "
                "name=\"file\"; filename=\"image.zip\")");
    return;
  }
  if (u->kind != UPLOAD_GOLDEN) {
    file_part_start_bundle(u);
    return;
  }
  int fmt = format_of(u->filename);
  if (fmt < 0) {
    upload_fail(u, 415, "UNSUPPORTED_IMAGE_FORMAT",
                "\"%.200s\": golden images are uploaded as .zip (HPE), .raw or .img (raw disk), "
                ".qcow2, .vmdk or .vhdx files",
                u->filename);
    err_action(&u->err,
               "Name the file after its format: .zip, .raw, .img, .qcow2, .vmdk or .vhdx.");
    return;
  }
  u->fmt = (enum image_format)fmt;
  struct err e;
  err_init(&e);
  if (u->fmt == IMAGE_RAW || u->fmt == IMAGE_HPE_ZIP) {
    if (image_stream_open(u->api->cfg.volumes, u->id, u->fmt, &u->stream, &e) < 0) {
      upload_fail_err(u, &e);
      return;
    }
  } else if (open_part_file(u) < 0) {
    return;
  }
  if (upload_task_start(u) < 0) return;
  log_line(&u->log, "upload of \"%s\" started (format by extension: %s; %s)", u->filename,
           format_label(u->fmt),
           u->stream ? "imported while it arrives" : "stored, then converted by qemu-img");
}

static void field_add(struct field *f, const char *data, size_t size, size_t max) {
  if (f->too_long) return;
  if (f->len + size > max) {
    f->too_long = 1;
    return;
  }
  char *n = realloc(f->v, f->len + size + 1);
  if (!n) {
    f->too_long = 1;
    return;
  }
  memcpy(n + f->len, data, size);
  f->v = n;
  f->len += size;
  f->v[f->len] = 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
  struct upload *u = cls;
  if (u->failed) return MHD_NO;
  u->parts_seen = 1;
  if (!key) key = "";
  /* A new part starts at offset 0 (libmicrohttpd may call once with 0 bytes
   * at offset 0 before the data of the same part). */
  int same = u->cur_key && is(u->cur_key, key) &&
             ((!u->cur_filename && !filename) ||
              (u->cur_filename && filename && is(u->cur_filename, filename)));
  if (off == 0 && (!same || u->cur_end > 0)) {
    free(u->cur_key);
    free(u->cur_filename);
    u->cur_key = strdup(key);
    u->cur_filename = filename ? strdup(filename) : NULL;
    u->cur_end = 0;
    u->in_file = is(key, "file");
    if (u->in_file) file_part_start(u, filename);
    if (u->failed) return MHD_NO;
  }
  u->cur_end = off + size;
  if (u->in_file && u->stream) {
    u->received += size;
    if (reserve_received(u) < 0) return MHD_NO;
    struct err e;
    err_init(&e);
    if (image_stream_write(u->stream, data, size, &e) < 0) {
      /* The import is lost (its temp file is gone); the body is still read
       * to its end, where the task reports the error. */
      log_line(&u->log, "import failed after %llu bytes: %s", (unsigned long long)u->received,
               e.message);
      err_clear(&e);
    }
  } else if (u->in_file) {
    if (u->hash) gnutls_hash(u->hash, data, size);
    const char *p = data;
    size_t left = size;
    while (left > 0) {
      size_t n = UPLOAD_BUF - u->buf_len < left ? UPLOAD_BUF - u->buf_len : left;
      memcpy(u->buf + u->buf_len, p, n);
      u->buf_len += n;
      u->received += n;
      p += n;
      left -= n;
      if (u->buf_len == UPLOAD_BUF && flush_buf(u) < 0) return MHD_NO;
    }
  } else if (is(key, "name")) {
    field_add(&u->f_name, data, size, NAME_MAX_LEN);
  } else if (is(key, "description")) {
    field_add(&u->f_desc, data, size, DESC_MAX_LEN);
  } else if (is(key, "lenient")) {
    field_add(&u->f_lenient, data, size, 16);
  } else if (is(key, "deploymentGrpUri") || is(key, "deploymentGroupURI")) {
    field_add(&u->f_group, data, size, 512);
  }
  return MHD_YES;
}

/* libmicrohttpd's post processor only understands a quoted filename=; the
 * PowerShell scripts send the local path unquoted (filename=C:\x\y.zip).
 * So the start of the body is also searched for the Content-Disposition
 * header of the "file" part, and its filename taken as it is written. */
static const char *param(const char *line, const char *end, const char *key, size_t *len) {
  size_t kl = strlen(key);
  for (const char *p = line; p + kl < end; p++) {
    if ((p != line && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t') ||
        strncasecmp(p, key, kl) != 0 || p[kl] != '=')
      continue;
    const char *v = p + kl + 1;
    if (v < end && *v == '"') {
      const char *q = memchr(v + 1, '"', (size_t)(end - v - 1));
      if (!q) return NULL;
      *len = (size_t)(q - v - 1);
      return v + 1;
    }
    const char *q = v;
    while (q < end && *q != ';')
      q++;
    while (q > v && (q[-1] == ' ' || q[-1] == '\t'))
      q--;
    *len = (size_t)(q - v);
    return v;
  }
  return NULL;
}

static void scan_filename(struct upload *u, const char *data, size_t size) {
  if (u->scan_done) return;
  size_t n = size < SCAN_MAX - u->scan_len ? size : SCAN_MAX - u->scan_len;
  char *b = realloc(u->scan, u->scan_len + n + 1);
  if (!b) {
    u->scan_done = 1;
    return;
  }
  u->scan = b;
  memcpy(b + u->scan_len, data, n);
  u->scan_len += n;
  b[u->scan_len] = 0;
  const char *end = b + u->scan_len;
  for (const char *line = b; line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    if (!nl) break; /* an incomplete line: wait for more */
    const char *le = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
    size_t nlen, flen;
    const char *name;
    const char *fn;
    if ((size_t)(le - line) > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0 &&
        (name = param(line + 20, le, "name", &nlen)) && nlen == 4 &&
        strncmp(name, "file", 4) == 0 && (fn = param(line + 20, le, "filename", &flen))) {
      u->raw_filename = strndup(fn, flen);
      u->scan_done = 1;
      break;
    }
    line = nl + 1;
  }
  if (u->scan_done || u->scan_len >= SCAN_MAX) {
    u->scan_done = 1;
    free(u->scan);
    u->scan = NULL;
    u->scan_len = 0;
  }
}

static int url_is(const char *url, size_t n, const char *path) {
  return n == strlen(path) && strncmp(url, path, n) == 0;
}

int upload_wanted(struct MHD_Connection *conn, const char *method, const char *url) {
  if (!is(method, "POST")) return 0;
  size_t n = strlen(url);
  while (n > 1 && url[n - 1] == '/')
    n--;
  int kind = url_is(url, n, "/rest/golden-images")                      ? UPLOAD_GOLDEN
             : url_is(url, n, "/rest/artifact-bundles")                 ? UPLOAD_BUNDLE
             : url_is(url, n, "/rest/artifact-bundles/backups/archive") ? UPLOAD_BACKUP
                                                                        : 0;
  if (!kind) return 0;
  const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  return ct && media_is(ct, "multipart/form-data") ? kind : 0;
}

void upload_free(struct upload *u) {
  if (!u) return;
  if (!u->failed && u->task)
    upload_fail(u, 400, "UPLOAD_INCOMPLETE",
                "the connection ended after %llu bytes, before the upload was complete",
                (unsigned long long)u->body_seen);
  u->failed = 1; /* the post processor may flush into on_part: ignore it */
  if (u->pp) MHD_destroy_post_processor(u->pp);
  drop_file(u);
  if (u->hash) gnutls_hash_deinit(u->hash, NULL);
  if (u->task) task_abandon(u->task, &u->err);
  if (u->reserved) unreserve(u->api, u->reserved);
  err_clear(&u->err);
  free(u->path);
  free(u->buf);
  free(u->filename);
  free(u->cur_key);
  free(u->cur_filename);
  free(u->f_name.v);
  free(u->f_desc.v);
  free(u->f_lenient.v);
  free(u->f_group.v);
  free(u->log.text);
  free(u->scan);
  free(u->raw_filename);
  free(u);
}

void upload_begin(struct request *r, int kind) {
  if (req_prepare(r) < 0) return;
  if (auth_check(r) < 0 || auth_require(r, ROLE_DEPLOY) < 0) return;
  struct api *a = r->api;
  if (!a->cfg.volumes || !a->uploads_dir || (kind != UPLOAD_GOLDEN && !a->bundles_dir)) {
    reply_err(r, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return;
  }
  struct err e;
  err_init(&e);
  const char *qn = req_arg(r, "name"), *qd = req_arg(r, "description");
  if (kind != UPLOAD_GOLDEN) {
    if (bundle_upload_check(r, (enum upload_kind)kind, qn) < 0) return;
  } else {
    if (qn && *qn && golden_check_new_name(a->store, qn, &e) < 0) return reply_error(r, &e);
    if (qd && golden_check_description(qd, &e) < 0) return reply_error(r, &e);
  }
  uint64_t total = 0;
  const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl) total = strtoull(cl, NULL, 10);
  if (total && a->cfg.storage_quota && quota_used(a) + total > a->cfg.storage_quota) {
    err_quota(&e, a, total);
    return reply_error(r, &e);
  }
  if (total && check_free(a->uploads_dir, total, &e) < 0) return reply_error(r, &e);
  struct upload *u = calloc(1, sizeof *u);
  if (!u) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  u->api = a;
  u->kind = (enum upload_kind)kind;
  snprintf(u->owner, sizeof u->owner, "%s", r->sess.user);
  u->fd = -1;
  u->last_pct = -1;
  u->t0 = util_mono_ms();
  err_init(&u->err);
  util_uuid(u->id);
  u->path = util_strdup_printf("%s/%s.part",
                               kind == UPLOAD_GOLDEN ? a->uploads_dir : a->bundles_dir, u->id);
  u->q_name = qn && *qn ? qn : NULL; /* live as long as the connection */
  u->q_desc = qd && *qd ? qd : NULL;
  u->hdr_filename = req_header(r, "uploadfilename");
  u->body_total = total;
  if (total) {
    reserve(a, total);
    u->reserved = total;
  }
  u->pp = MHD_create_post_processor(r->conn, PP_BUF, on_part, u);
  if (!u->pp || !u->path) {
    upload_free(u);
    reply_err(r, 400, "INVALID_MULTIPART",
              "the multipart/form-data Content-Type has no usable boundary parameter");
    return;
  }
  r->upload = u;
}

void upload_data(struct request *r, const char *data, size_t size) {
  struct upload *u = r->upload;
  u->body_seen += size;
  if (u->failed) return; /* the rest of the body is read and dropped */
  if (!u->file_parts) scan_filename(u, data, size);
  if (MHD_post_process(u->pp, data, size) != MHD_YES && !u->failed)
    upload_fail(u, 400, "INVALID_MULTIPART", "the multipart/form-data body is malformed");
  if (u->failed) {
    drop_file(u);
    return;
  }
  progress_receive(u);
}

/* ---- the import task -------------------------------------------------------------------- */
struct import {
  struct api *api;
  char id[37];
  char *path;                  /* the upload file (qcow2, vmdk, vhdx) */
  int keep_path;               /* path is the caller's file (api_golden_import_file): kept */
  struct image_stream *stream; /* or the streamed import (raw, HPE zip) */
  char *name, *description, *filename;
  enum image_format fmt;
  uint64_t received, reserved;
  int64_t t0; /* when the upload started (util_mono_ms) */
  struct logbuf log;
  struct task *task;
  int pct_lo, pct_hi; /* import_progress maps done/total into [lo, hi) */
  int last_pct;
  int64_t last_ms;
};

static void import_free(void *p) {
  struct import *im = p;
  if (im->path && !im->keep_path) unlink(im->path);
  image_stream_close(im->stream); /* an uncommitted import's temp file goes */
  /* After the stop the api is gone (a task that never ran is freed by the engine's stop). */
  pthread_mutex_lock(&golden_tasks.mu);
  int stopping = golden_tasks.stopping;
  pthread_mutex_unlock(&golden_tasks.mu);
  if (im->reserved && !stopping) unreserve(im->api, im->reserved);
  free(im->path);
  free(im->name);
  free(im->description);
  free(im->filename);
  free(im->log.text);
  free(im);
}

static void import_progress(void *arg, uint64_t done, uint64_t total) {
  struct import *im = arg;
  if (!total) return;
  int pct = im->pct_lo + (int)(done * (uint64_t)(im->pct_hi - im->pct_lo) / total);
  if (pct > 99) pct = 99;
  int64_t now = util_mono_ms();
  if (pct == im->last_pct || (now - im->last_ms < PROGRESS_MS && pct < im->last_pct + 5)) return;
  im->last_pct = pct;
  im->last_ms = now;
  task_percent(im->task, pct);
}

/* The image's space is known only now (zero blocks take none, a qcow2 may
 * expand): past the quota, the volume goes. */
static int import_check_quota(struct import *im, const struct image_info *info, struct err *e) {
  struct api *a = im->api;
  uint64_t quota = a->cfg.storage_quota;
  if (!quota || golden_allocated_total(a->store) + info->allocated <= quota) return 0;
  struct err ve;
  err_init(&ve);
  if (vol_golden_delete(a->cfg.volumes, im->id, &ve) < 0)
    log_error("golden", "cannot remove golden volume %s: %s", im->id, ve.message);
  err_clear(&ve);
  err_set(e, 413, "QUOTA_EXCEEDED",
          "the imported image takes %llu bytes, which would exceed the storage quota of %llu "
          "bytes",
          (unsigned long long)info->allocated, (unsigned long long)quota);
  err_action(e, "Delete golden images that are no longer needed, or raise --storage-quota.");
  return -1;
}

/* The document; the volume goes if it cannot be made. */
static int import_document(struct import *im, const struct image_info *info, struct err *e) {
  struct api *a = im->api;
  struct golden_new g = {
      .id = im->id,
      .name = im->name,
      .description = im->description,
      .format = format_label(info->format),
      .size = info->size,
      .allocated = info->allocated,
      .sha256 = info->sha256,
      .crc32 = info->crc32,
      .member = info->member[0] ? info->member : im->id,
      .log = im->log.text,
  };
  if (golden_create(a->store, &g, NULL, e) == 0) return 0;
  struct err ve;
  err_init(&ve);
  if (vol_golden_delete(a->cfg.volumes, im->id, &ve) < 0)
    log_error("golden", "cannot remove golden volume %s: %s", im->id, ve.message);
  err_clear(&ve);
  return -1;
}

static void import_log_info(struct import *im, const struct image_info *info) {
  log_line(&im->log, "format: %s", format_label(info->format));
  if (info->member[0]) log_line(&im->log, "zip member: %s", info->member);
  log_line(&im->log, "size: %llu bytes", (unsigned long long)info->size);
  log_line(&im->log, "allocated: %llu bytes", (unsigned long long)info->allocated);
  log_line(&im->log, "crc32: %08x", info->crc32);
}

/* A raw image or HPE zip imported while it arrived: check and commit it, make
 * the document (usable from here on), then record the SHA-256. */
static int import_streamed(struct task *t, struct import *im, struct err *e) {
  struct api *a = im->api;
  int64_t t_end = util_mono_ms();
  im->pct_lo = PCT_RECEIVED_STREAM;
  im->pct_hi = PCT_USABLE;
  task_progress(t, PCT_RECEIVED_STREAM, "Checking and committing the %s image",
                format_label(im->fmt));
  struct image_info info;
  memset(&info, 0, sizeof info);
  if (image_stream_commit(im->stream, import_progress, im, &info, e) < 0) {
    log_warn("golden", "import of \"%s\" (%s) failed: %s (%s)", im->name, im->filename, e->message,
             e->code);
    return -1;
  }
  if (import_check_quota(im, &info, e) < 0) return -1;
  import_log_info(im, &info);
  int64_t usable = util_mono_ms();
  log_line(&im->log, "committed %.1f s after the end of the upload, %.1f s after its start",
           (double)(usable - t_end) / 1000.0, (double)(usable - im->t0) / 1000.0);
  if (info.sha256[0]) log_line(&im->log, "sha256: %s", info.sha256);
  log_line(&im->log, "golden image \"%s\" created", im->name);
  if (import_document(im, &info, e) < 0) return -1;
  if (im->reserved) { /* the document's allocatedBytes counts for the quota now */
    unreserve(a, im->reserved);
    im->reserved = 0;
  }
  log_info("golden", "golden image \"%s\" (%s) usable: %llu bytes, %llu allocated, format %s",
           im->name, im->id, (unsigned long long)info.size, (unsigned long long)info.allocated,
           format_label(info.format));
  char sha[65];
  if (info.sha256[0]) {
    memcpy(sha, info.sha256, sizeof sha);
  } else {
    task_progress(t, PCT_USABLE, "Golden image \"%s\" is usable; computing its SHA-256", im->name);
    im->pct_lo = PCT_USABLE;
    im->pct_hi = 99;
    if (image_stream_sha256(im->stream, &golden_tasks.stopping, import_progress, im, sha, e) < 0) {
      log_warn("golden", "golden image \"%s\" (%s): SHA-256 not computed: %s", im->name, im->id,
               e->message);
      if (!strcmp(e->code, "CHECKSUM_INTERRUPTED"))
        err_set(e, 503, "CHECKSUM_INTERRUPTED",
                "golden image \"%s\" is usable, but streamerd stopped before its SHA-256 was "
                "computed; it is computed again at the next start",
                im->name);
      return -1;
    }
    char line[200], ts[32];
    util_iso8601(util_now_ms(), ts);
    snprintf(line, sizeof line, "%s sha256: %s (%.1f s after the image became usable)", ts, sha,
             (double)(util_mono_ms() - usable) / 1000.0);
    if (golden_set_checksum(a->store, im->id, sha, line, e) < 0) {
      if (e->status == 404) { /* deleted meanwhile */
        err_clear(e);
        task_progress(t, 100, "Golden image \"%s\" was deleted before its SHA-256 was recorded",
                      im->name);
        return 0;
      }
      return -1;
    }
  }
  task_progress(t, 100, "Imported golden image \"%s\": %llu bytes, sha256 %s", im->name,
                (unsigned long long)info.size, sha);
  return 0;
}

/* qcow2, vmdk, vhdx: the upload file converted by qemu-img. */
static int import_file(struct task *t, struct import *im, struct err *e) {
  int64_t t0 = util_mono_ms();
  im->pct_lo = PCT_RECEIVED_FILE;
  im->pct_hi = 99;
  task_progress(t, PCT_RECEIVED_FILE, "Importing the %s image", format_label(im->fmt));
  struct image_info info;
  memset(&info, 0, sizeof info);
  if (image_import(im->api->cfg.volumes, im->id, im->path, im->fmt, import_progress, im, &info, e) <
      0) {
    log_warn("golden", "import of \"%s\" (%s) failed: %s (%s)", im->name, im->filename, e->message,
             e->code);
    return -1;
  }
  if (!im->keep_path) unlink(im->path); /* not needed any more: free the space now */
  import_log_info(im, &info);
  log_line(&im->log, "sha256: %s", info.sha256);
  log_line(&im->log, "imported in %.1f s", (double)(util_mono_ms() - t0) / 1000.0);
  if (import_check_quota(im, &info, e) < 0) return -1;
  log_line(&im->log, "golden image \"%s\" created", im->name);
  if (import_document(im, &info, e) < 0) return -1;
  task_progress(t, 100, "Imported golden image \"%s\": %llu bytes, sha256 %s", im->name,
                (unsigned long long)info.size, info.sha256);
  log_info("golden", "golden image \"%s\" (%s) imported: %llu bytes, %llu allocated, format %s",
           im->name, im->id, (unsigned long long)info.size, (unsigned long long)info.allocated,
           format_label(info.format));
  return 0;
}

static int import_run(struct task *t, void *arg, struct err *e) {
  struct import *im = arg;
  if (golden_task_enter(e) < 0) return -1;
  im->task = t;
  im->last_ms = util_mono_ms();
  int rc = im->stream ? import_streamed(t, im, e) : import_file(t, im, e);
  golden_task_leave();
  return rc;
}

/* A golden image imported from a file of this host (streamerd --samples): the same
 * import task as an upload's, the file read in place and kept. */
json_t *api_golden_import_file(struct api *a, const char *path, const char *name,
                               const char *description, struct err *e) {
  if (!a->cfg.volumes) {
    err_set(e, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return NULL;
  }
  int fmt = format_of(path);
  if (fmt < 0) {
    err_set(e, 400, "IMAGE_UNSUPPORTED", "%s: not a .raw, .img, .qcow2, .vmdk or .vhdx file", path);
    return NULL;
  }
  struct stat st;
  errno = 0;
  if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
    err_set(e, 400, "FILE_NOT_FOUND", "%s: %s", path, errno ? strerror(errno) : "not a file");
    return NULL;
  }
  if (golden_check_new_name(a->store, name, e) < 0 ||
      golden_check_description(description ? description : "", e) < 0)
    return NULL;
  struct import *im = calloc(1, sizeof *im);
  if (!im) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  im->api = a;
  util_uuid(im->id);
  im->path = strdup(path);
  im->keep_path = 1;
  im->name = strdup(name);
  im->description = strdup(description ? description : "");
  const char *base = strrchr(path, '/');
  im->filename = strdup(base ? base + 1 : path);
  im->fmt = (enum image_format)fmt;
  im->received = (uint64_t)st.st_size;
  im->t0 = util_mono_ms();
  im->last_pct = -1;
  if (!im->path || !im->name || !im->description || !im->filename) {
    import_free(im);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  log_line(&im->log, "imported from the file %s of the server (%llu bytes)", path,
           (unsigned long long)st.st_size);
  json_t *assoc = task_assoc(GOLDEN_COLL, im->id, im->name);
  json_t *doc = task_submit(a->tasks, "Import", "streamerd", assoc, import_run, im, import_free, e);
  json_decref(assoc);
  return doc; /* on failure the engine freed im */
}

/* ---- "Compute checksum": the SHA-256 of a golden image recorded after it is usable ----
 * Started for each image a stop left Pending (at start: hashed from the file)
 * and by a capture (which hands over the stream whose SHA-256 thread follows
 * its writes: the hashing goes on where it is). */
struct checksum {
  struct api *api;
  char id[37 + 64];
  char name[300];
  struct image_stream *stream; /* NULL: hash the committed file */
  struct task *task;
  int last_pct;
  int64_t last_ms;
};

static void checksum_free(void *arg) {
  struct checksum *c = arg;
  image_stream_close(c->stream); /* committed: only its SHA-256 thread goes */
  free(c);
}

static void checksum_progress(void *arg, uint64_t done, uint64_t total) {
  struct checksum *c = arg;
  if (!total) return;
  int pct = (int)(done * 99 / total);
  int64_t now = util_mono_ms();
  if (pct == c->last_pct || (now - c->last_ms < PROGRESS_MS && pct < c->last_pct + 5)) return;
  c->last_pct = pct;
  c->last_ms = now;
  task_percent(c->task, pct);
}

static int checksum_run(struct task *t, void *arg, struct err *e) {
  struct checksum *c = arg;
  if (golden_task_enter(e) < 0) return -1;
  c->task = t;
  c->last_ms = util_mono_ms();
  int64_t t0 = util_mono_ms();
  task_progress(t, 0, "Computing the SHA-256 of golden image \"%s\"", c->name);
  char sha[65];
  int rc = c->stream ? image_stream_sha256(c->stream, &golden_tasks.stopping, checksum_progress, c,
                                           sha, e)
                     : image_sha256(c->api->cfg.volumes, c->id, &golden_tasks.stopping,
                                    checksum_progress, c, sha, e);
  if (rc < 0 && !strcmp(e->code, "CHECKSUM_INTERRUPTED"))
    err_set(e, 503, "CHECKSUM_INTERRUPTED",
            "streamerd stopped before the SHA-256 of golden image \"%s\" was computed; it stays "
            "Pending and is computed again at the next start",
            c->name);
  if (rc == 0) {
    char line[240], ts[32];
    util_iso8601(util_now_ms(), ts);
    snprintf(line, sizeof line, "%s sha256: %s (task Compute checksum, %.1f s%s)", ts, sha,
             (double)(util_mono_ms() - t0) / 1000.0,
             c->stream ? " after the image was usable" : " at start: streamerd had stopped before");
    rc = golden_set_checksum(c->api->store, c->id, sha, line, e);
  }
  if (rc == 0) {
    char uri[160];
    snprintf(uri, sizeof uri, "/rest/golden-images/%s", c->id);
    json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "type", "GoldenImageChecksum",
                             "goldenImageUri", uri, "checkSum", sha, "checkSumState", "OK");
    char line[400];
    snprintf(line, sizeof line, "Golden image \"%.200s\": sha256 %s", c->name, sha);
    task_set_output(t, data, line);
    task_progress(t, 100, "Golden image \"%s\": sha256 %s", c->name, sha);
  }
  golden_task_leave();
  return rc;
}

/* Queue "Compute checksum" for golden image id; takes `stream` (may be NULL)
 * in every case. Returns the task document (a new reference) or NULL. */
static json_t *checksum_submit(struct api *a, const char *id, const char *name,
                               struct image_stream *stream, struct err *e) {
  struct checksum *c = calloc(1, sizeof *c);
  if (!c) {
    image_stream_close(stream);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  c->api = a;
  c->last_pct = -1;
  c->stream = stream;
  snprintf(c->id, sizeof c->id, "%s", id);
  snprintf(c->name, sizeof c->name, "%s", name ? name : id);
  json_t *assoc = task_assoc(GOLDEN_COLL, id, c->name);
  json_t *doc = task_submit(a->tasks, "Compute checksum", "streamerd", assoc, checksum_run, c,
                            checksum_free, e);
  json_decref(assoc);
  return doc; /* on failure the engine freed c */
}

/* capture_ctx.checksum: the capture's follow-up task. */
static json_t *capture_checksum(void *arg, const char *id, const char *name,
                                struct image_stream *stream, struct err *e) {
  return checksum_submit(arg, id, name, stream, e);
}

/* Golden images whose SHA-256 a stop interrupted: computed again, by a task each. */
static void resume_checksums(struct api *a) {
  struct store_entry **v;
  size_t n;
  if (store_list(a->store, GOLDEN_COLL, &v, &n) < 0) return;
  for (size_t i = 0; i < n; i++) {
    if (!golden_checksum_pending(v[i]->doc) || golden_is_deleting(v[i]->doc)) continue;
    struct err e;
    err_init(&e);
    json_t *doc = checksum_submit(a, v[i]->id, v[i]->name, NULL, &e);
    if (!doc)
      log_error("golden", "golden image %s: cannot compute its pending SHA-256: %s", v[i]->id,
                e.message);
    else
      log_warn("golden", "golden image %s: computing the SHA-256 that a stop interrupted",
               v[i]->id);
    json_decref(doc);
    err_clear(&e);
  }
  store_entries_release(v, n);
}

/* A failed upload's answer: the file goes and the task ends before the
 * client hears of it (upload_free, at the end of the request, is later). */
static void upload_refuse(struct request *r, struct upload *u) {
  drop_file(u);
  if (u->task) task_abandon(u->task, &u->err);
  u->task = NULL;
  struct err copy = u->err;
  copy.nested = json_incref(u->err.nested);
  reply_error(r, &copy);
}

void upload_end(struct request *r) {
  struct upload *u = r->upload;
  struct err e;
  err_init(&e);
  if (!u->failed) {
    enum MHD_Result done = MHD_destroy_post_processor(u->pp);
    u->pp = NULL;
    if (done != MHD_YES && !u->failed)
      upload_fail(u, 400, "INVALID_MULTIPART",
                  "the multipart/form-data body is incomplete (no closing boundary)");
  }
  if (!u->failed && !u->parts_seen && u->body_seen > 0)
    upload_fail(u, 400, "INVALID_MULTIPART",
                "no part of the body is delimited by the boundary that Content-Type gives "
                "(boundary= must be the last parameter)");
  if (!u->failed && u->file_parts == 0)
    upload_fail(u, 400, "UPLOAD_NO_FILE",
                "the upload has no \"file\" part (multipart/form-data field \"file\" with the "
                "image)");
  if (!u->failed) flush_buf(u);
  if (!u->failed && u->received == 0)
    upload_fail(u, 400, "UPLOAD_EMPTY_FILE", "the uploaded file \"%s\" is empty", u->filename);
  if (!u->failed && (u->f_name.too_long || u->f_desc.too_long))
    upload_fail(u, 400, u->f_name.too_long ? "INVALID_NAME" : "INVALID_FIELD",
                "the %s form field is longer than %d bytes",
                u->f_name.too_long ? "name" : "description",
                u->f_name.too_long ? NAME_MAX_LEN : DESC_MAX_LEN);
  char *name = u->failed ? NULL : final_name(u);
  const char *desc = u->q_desc ? u->q_desc : u->f_desc.v ? u->f_desc.v : "";
  if (!u->failed && u->kind == UPLOAD_GOLDEN &&
      (golden_check_new_name(r->api->store, name ? name : "", &e) < 0 ||
       golden_check_description(desc, &e) < 0))
    upload_fail_err(u, &e);
  if (!u->failed && u->fd >= 0 && ftruncate(u->fd, (off_t)u->received) < 0)
    upload_fail(u, 507, "INSUFFICIENT_STORAGE", "cannot complete the upload file: %s",
                strerror(errno));
  if (!u->failed && u->fd >= 0 && close(u->fd) < 0) {
    u->fd = -1;
    upload_fail(u, 507, "INSUFFICIENT_STORAGE", "cannot complete the upload file: %s",
                strerror(errno));
  } else if (!u->failed) {
    u->fd = -1;
  }
  if (u->failed) {
    free(name);
    return upload_refuse(r, u);
  }
  if (u->kind != UPLOAD_GOLDEN) {
    struct upload_done d = {
        .path = u->path,
        .filename = u->filename,
        .size = u->received,
        .task = u->task,
        .name = name,
        .description = u->q_desc ? u->q_desc : u->f_desc.v,
        .lenient = req_arg(r, "lenient") ? req_arg(r, "lenient") : u->f_lenient.v,
        .group = req_arg(r, "deploymentGrpUri") ? req_arg(r, "deploymentGrpUri") : u->f_group.v};
    memcpy(d.id, u->id, sizeof d.id);
    unsigned char dig[32];
    gnutls_hash_deinit(u->hash, dig);
    u->hash = NULL;
    for (int i = 0; i < 32; i++)
      snprintf(d.sha256 + 2 * i, 3, "%02x", dig[i]);
    int rc = bundle_upload_finish(r, (enum upload_kind)u->kind, &d, &e);
    u->task = d.task; /* NULL once task_start has it (or has ended it) */
    free(name);
    if (rc < 0) {
      upload_fail_err(u, &e);
      return upload_refuse(r, u);
    }
    free(u->path); /* the file is bundles.c's now (its own copy of the path), with the task */
    u->path = NULL;
    return;
  }
  log_line(&u->log, "received %llu bytes (file \"%s\") in %.1f s", (unsigned long long)u->received,
           u->filename, (double)(util_mono_ms() - u->t0) / 1000.0);
  struct import *im = calloc(1, sizeof *im);
  if (!im) {
    free(name);
    upload_fail(u, 500, "OUT_OF_MEMORY", "out of memory");
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  im->api = r->api;
  memcpy(im->id, u->id, sizeof im->id);
  if (u->stream) {
    im->stream = u->stream; /* the import owns it now */
    u->stream = NULL;
  } else {
    im->path = u->path;
    u->path = NULL; /* the import owns the file now */
  }
  im->t0 = u->t0;
  im->name = name;
  im->description = strdup(desc);
  im->filename = u->filename;
  u->filename = NULL;
  im->fmt = u->fmt;
  im->received = u->received;
  im->reserved = u->reserved;
  u->reserved = 0;
  im->log = u->log;
  memset(&u->log, 0, sizeof u->log);
  im->last_pct = -1;
  struct task *t = u->task;
  u->task = NULL;
  char uri[80];
  snprintf(uri, sizeof uri, "/rest/%s/%s", GOLDEN_COLL, im->id);
  task_set_resource(t, uri, im->name);
  task_progress(t, im->stream ? PCT_RECEIVED_STREAM : PCT_RECEIVED_FILE, "Received %llu bytes",
                (unsigned long long)im->received);
  json_t *doc = NULL;
  if (task_start(t, import_run, im, import_free, &doc, &e) < 0) return reply_error(r, &e);
  reply_task(r, doc);
}

/* ---- downloads ------------------------------------------------------------------------- */
static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max) {
  struct image_export *x = cls;
  if (pos >= image_export_length(x)) return MHD_CONTENT_READER_END_OF_STREAM;
  struct err e;
  err_init(&e);
  long n = image_export_read(x, pos, buf, max, &e);
  if (n < 0) {
    log_error("golden", "download read at %llu failed: %s", (unsigned long long)pos, e.message);
    err_clear(&e);
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (n == 0) return MHD_CONTENT_READER_END_WITH_ERROR; /* shorter than announced */
  return (ssize_t)n;
}

static void download_free(void *cls) { image_export_close(cls); }

/* attachment; filename="<name>.zip" (',' and ':' as '.', quotes escaped),
 * plus filename*= (RFC 5987) when the name is not ASCII. */
void download_disposition(const char *name, char *out, size_t size) {
  char plain[600], ext[1800];
  size_t o = 0, x = 0;
  int ascii = 1;
  for (const char *p = name; *p && o + 3 < sizeof plain - 5; p++) {
    char c = *p;
    if ((unsigned char)c >= 0x80) ascii = 0;
    if (c == ',' || c == ':') c = '.';
    if (c == '"' || c == '\\') plain[o++] = '\\';
    plain[o++] = c;
  }
  memcpy(plain + o, ".zip", 5);
  if (ascii) {
    snprintf(out, size, "attachment; filename=\"%s\"", plain);
    return;
  }
  for (const unsigned char *p = (const unsigned char *)name; *p && x + 4 < sizeof ext - 5; p++) {
    unsigned char c = *p;
    if (c == ',' || c == ':') c = '.';
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        strchr("-._~", c))
      ext[x++] = (char)c;
    else
      x += (size_t)snprintf(ext + x, sizeof ext - x, "%%%02X", c);
  }
  memcpy(ext + x, ".zip", 5);
  snprintf(out, size, "attachment; filename=\"%s\"; filename*=UTF-8''%s", plain, ext);
}

static void serve_download(struct request *r, const char *id) {
  struct store_entry *en = store_get(r->api->store, GOLDEN_COLL, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "golden image \"%.100s\" does not exist", id);
    return;
  }
  json_t *d = en->doc;
  struct err e;
  err_init(&e);
  struct image_export *x = NULL;
  const char *member = json_string_value(json_object_get(d, "member"));
  if (image_export_open(r->api->cfg.volumes, id, member && *member ? member : id,
                        (uint64_t)json_integer_value(json_object_get(d, "size")),
                        (uint32_t)json_integer_value(json_object_get(d, "crc32")), &x, &e) < 0) {
    store_entry_release(en);
    return reply_error(r, &e);
  }
  struct MHD_Response *resp = MHD_create_response_from_callback(
      image_export_length(x), DOWNLOAD_BLOCK, download_read, x, download_free);
  if (!resp) {
    image_export_close(x);
    store_entry_release(en);
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  char cd[2600];
  download_disposition(en->name ? en->name : id, cd, sizeof cd);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, cd);
  store_entry_release(en);
  r->resp_custom = resp;
  r->status = 200;
  r->content_type = "application/octet-stream";
}

/* ---- delete ------------------------------------------------------------------------------ */
struct deletion {
  struct api *api;
  char id[37 + 64];
};

static int delete_run(struct task *t, void *arg, struct err *e) {
  struct deletion *d = arg;
  struct api *a = d->api;
  if (vol_golden_exists(a->cfg.volumes, d->id) && vol_golden_delete(a->cfg.volumes, d->id, e) < 0) {
    struct err ce;
    err_init(&ce);
    if (golden_delete_cancel(a->store, d->id, &ce) < 0)
      log_error("golden", "golden image %s: cannot reset its state: %s", d->id, ce.message);
    err_clear(&ce);
    return -1;
  }
  if (golden_delete_finish(a->store, d->id, e) < 0) return -1;
  task_progress(t, 100, "Deleted the golden image and its volume");
  return 0;
}

/* 409 when OS volumes are cloned (or being cloned) from golden image `id`. */
static int check_clones(struct request *r, const char *id) {
  char names[1024];
  size_t n = osvol_golden_users(r->api->store, r->api->cfg.volumes, id, names, sizeof names);
  if (!n) return 0;
  struct store_entry *en = store_get(r->api->store, GOLDEN_COLL, id);
  struct err e;
  err_init(&e);
  err_set(&e, 409, "GOLDEN_VOLUME_IN_USE",
          "golden image \"%.100s\" has %zu OS volume(s) cloned from it: %s",
          en && en->name ? en->name : id, n, names);
  err_action(&e, "Delete those OS volumes first (DELETE /rest/os-volumes/{id}).");
  store_entry_release(en);
  reply_error(r, &e);
  return -1;
}

static void delete_golden(struct request *r, const char *id) {
  struct api *a = r->api;
  struct err e;
  err_init(&e);
  struct store_entry *en = store_get(a->store, GOLDEN_COLL, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "golden image \"%.100s\" does not exist", id);
    return;
  }
  store_entry_release(en);
  if (check_clones(r, id) < 0) return;
  struct store_entry *old = NULL;
  if (golden_delete_begin(a->store, id, req_header(r, "If-Match"), &old, &e) < 0)
    return reply_error(r, &e);
  struct deletion *d = calloc(1, sizeof *d);
  json_t *assoc = task_assoc(GOLDEN_COLL, NULL, old->name);
  store_entry_release(old);
  json_t *doc = NULL;
  if (d) {
    d->api = a;
    snprintf(d->id, sizeof d->id, "%s", id);
    doc = task_submit(a->tasks, "Delete", r->sess.user, assoc, delete_run, d, free, &e);
  } else {
    err_set(&e, 500, "OUT_OF_MEMORY", "out of memory");
  }
  json_decref(assoc);
  if (!doc) {
    struct err ce;
    err_init(&ce);
    golden_delete_cancel(a->store, id, &ce);
    err_clear(&ce);
    return reply_error(r, &e);
  }
  reply_task(r, doc);
}

/* ---- routes ---------------------------------------------------------------------------- */
/* POST /rest/golden-images that is not a multipart upload. */
static void post_not_upload(struct request *r) {
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  struct err e;
  err_init(&e);
  const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  json_t *b = NULL;
  if (!ct || !*ct || media_is(ct, "application/json")) {
    b = req_json(r);
    if (!b) return;
  }
  if (json_is_object(b) && util_json_bool(json_object_get(b, "imageCapture")) == 1) {
    struct api *a = r->api;
    struct capture_ctx c = {.store = a->store,
                            .volumes = a->cfg.volumes,
                            .osvols = a->cfg.osvols,
                            .tasks = a->tasks,
                            .quota = a->cfg.storage_quota,
                            .reserved = &a->upload_bytes,
                            .stopping = &golden_tasks.stopping,
                            .enter = golden_task_enter,
                            .leave = golden_task_leave,
                            .checksum = capture_checksum,
                            .checksum_arg = a};
    json_t *task = capture_submit(&c, b, r->sess.user, &e);
    if (!task) return reply_error(r, &e);
    return reply_task(r, task);
  }
  err_set(&e, 415, "UNSUPPORTED_MEDIA_TYPE",
          "golden images are created by uploading a file: POST multipart/form-data with the "
          "image in the \"file\" field, and the name and description in the query or the form "
          "(Content-Type \"%.100s\" was sent)",
          ct ? ct : "");
  err_action(&e, "Send the image as multipart/form-data in the field \"file\".");
  reply_error(r, &e);
}

void route_golden_images(struct request *r) {
  struct api *a = r->api;
  struct err e;
  err_init(&e);
  if (!a->cfg.volumes) {
    reply_err(r, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return;
  }
  if (r->nseg == 1) {
    if (is(r->method, "GET")) return serve_collection(r, GOLDEN_COLL);
    if (is(r->method, "POST")) return post_not_upload(r);
    return reply_method_not_allowed(r);
  }
  if (r->nseg == 3 && (is(r->seg[1], "download") || is(r->seg[1], "archive"))) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    if (is(r->seg[1], "download")) return serve_download(r, r->seg[2]);
    struct store_entry *en = store_get(a->store, GOLDEN_COLL, r->seg[2]);
    if (!en) {
      reply_err(r, 404, "RESOURCE_NOT_FOUND", "golden image \"%.100s\" does not exist", r->seg[2]);
      return;
    }
    const char *log = json_string_value(json_object_get(en->doc, "importLog"));
    char *text = strdup(log ? log : "");
    store_entry_release(en);
    if (!text) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
    reply_text(r, 200, text, strlen(text));
    r->content_type = "text/plain; charset=utf-8";
    return;
  }
  if (r->nseg != 2) {
    reply_no_resource(r);
    return;
  }
  const char *id = r->seg[1];
  if (is(r->method, "GET")) {
    serve_one(r, GOLDEN_COLL, id, "golden image");
  } else if (is(r->method, "PUT")) {
    if (auth_require(r, ROLE_DEPLOY) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    struct store_entry *en = NULL;
    if (golden_update(a->store, id, b, req_header(r, "If-Match"), &en, &e) < 0)
      return reply_error(r, &e);
    reply_entry(r, 200, en);
    store_entry_release(en);
  } else if (is(r->method, "DELETE")) {
    if (auth_require(r, ROLE_DEPLOY) < 0) return;
    delete_golden(r, id);
  } else {
    reply_method_not_allowed(r);
  }
}

/* ---- start / stop ------------------------------------------------------------------------ */
/* Remove what an earlier run left in the uploads directory. */
static void clean_uploads(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n > 5 && strcmp(de->d_name + n - 5, ".part") == 0) {
      char *p = util_strdup_printf("%s/%s", dir, de->d_name);
      if (p && unlink(p) == 0) log_info("golden", "removed the unfinished upload %s", p);
      free(p);
    }
  }
  closedir(d);
}

/* Images left "Deleting" by a stop: gone if their volume is, else back to OK. */
static void recover_deleting(struct api *a) {
  struct store_entry **v;
  size_t n;
  if (store_list(a->store, GOLDEN_COLL, &v, &n) < 0) return;
  for (size_t i = 0; i < n; i++) {
    if (!golden_is_deleting(v[i]->doc)) continue;
    struct err e;
    err_init(&e);
    int gone = !vol_golden_exists(a->cfg.volumes, v[i]->id);
    int rc = gone ? golden_delete_finish(a->store, v[i]->id, &e)
                  : golden_delete_cancel(a->store, v[i]->id, &e);
    if (rc < 0)
      log_error("golden", "golden image %s: %s", v[i]->id, e.message);
    else
      log_warn("golden", "golden image %s was being deleted when streamerd stopped: %s", v[i]->id,
               gone ? "deleted" : "kept");
    err_clear(&e);
  }
  store_entries_release(v, n);
}

/* Golden volumes without a document are what a stop between an import and
 * its document left (or an import's temp file): removed at start, when
 * nothing can be importing. Found through vol.h's layout (DIR/golden/<id>.raw,
 * .<id>.tmp), each checked against vol_golden_path / vol_golden_tmp_path. */
static void clean_orphans(struct api *a) {
  struct vol_store *vs = a->cfg.volumes;
  char *probe = vol_golden_path(vs, "probe");
  char *slash = probe ? strrchr(probe, '/') : NULL;
  if (!slash) {
    free(probe);
    return;
  }
  *slash = 0;
  DIR *d = opendir(probe);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    char id[128];
    size_t n = strlen(de->d_name);
    int tmp = de->d_name[0] == '.' && n > 5 && strcmp(de->d_name + n - 4, ".tmp") == 0;
    int raw = !tmp && n > 4 && strcmp(de->d_name + n - 4, ".raw") == 0;
    if ((!tmp && !raw) || n - 4 - (size_t)tmp >= sizeof id) continue;
    memcpy(id, de->d_name + tmp, n - 4 - (size_t)tmp);
    id[n - 4 - (size_t)tmp] = 0;
    char *expect = tmp ? vol_golden_tmp_path(vs, id) : vol_golden_path(vs, id);
    char *have = util_strdup_printf("%s/%s", probe, de->d_name);
    struct store_entry *en = store_get(a->store, GOLDEN_COLL, id);
    if (expect && have && strcmp(expect, have) == 0 && !en) {
      struct err e;
      err_init(&e);
      if (tmp ? unlink(have) : vol_golden_delete(vs, id, &e)) {
        log_warn("golden", "cannot remove %s, which no golden image uses: %s", have,
                 tmp ? strerror(errno) : e.message);
      } else {
        log_warn("golden", "removed %s: no golden image uses it (an import was interrupted)", have);
      }
      err_clear(&e);
    }
    store_entry_release(en);
    free(expect);
    free(have);
  }
  if (d) closedir(d);
  free(probe);
}

int golden_api_init(struct api *a, struct err *e) {
  if (!a->cfg.volumes) return 0;
  a->uploads_dir = util_strdup_printf("%s/uploads", vol_store_dir(a->cfg.volumes));
  if (!a->uploads_dir) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  if (mkdir(a->uploads_dir, 0700) < 0 && errno != EEXIST) {
    err_set(e, 500, "IO_ERROR", "cannot create %s: %s", a->uploads_dir, strerror(errno));
    return -1;
  }
  pthread_mutex_lock(&golden_tasks.mu);
  __atomic_store_n(&golden_tasks.stopping, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&golden_tasks.mu);
  clean_uploads(a->uploads_dir);
  capture_clean_leftovers(a->cfg.volumes);
  recover_deleting(a);
  clean_orphans(a);
  resume_checksums(a);
  return 0;
}

void golden_api_fini(struct api *a) {
  /* Interrupt SHA-256s (resumed at the next start) and wait for the golden
   * tasks that run: they use `a`. */
  pthread_mutex_lock(&golden_tasks.mu);
  __atomic_store_n(&golden_tasks.stopping, 1, __ATOMIC_RELAXED);
  while (golden_tasks.running > 0)
    pthread_cond_wait(&golden_tasks.cv, &golden_tasks.mu);
  pthread_mutex_unlock(&golden_tasks.mu);
  free(a->uploads_dir);
  a->uploads_dir = NULL;
}
