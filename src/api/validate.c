/* validate.c — build-plan validation and read-only browsing over HTTP. The
 * work is deploy/validate.h's; this file checks roles, reads the query and
 * the body, and maps results to replies:
 *   POST /rest/build-plans/{id}/validate                202 + task "Validate"
 *   GET  /rest/os-volumes/{id}/devices                  list-filesystems
 *   GET  /rest/os-volumes/{id}/files?device=D&path=P    a directory's entries
 *   GET  /rest/os-volumes/{id}/files/content?device=D&path=P   a file's bytes
 *   (the same three under /rest/golden-images/{id}/)
 * Validation runs the plan's code (its host commands too): Deploy. Listings:
 * any role, like every GET of the volumes. File contents: Deploy, because
 * deployed files hold what the API never shows (password attribute values
 * written by plan scripts, /etc/shadow, keys). */
#include <string.h>

#include "api/api_int.h"
#include "deploy/validate.h"

#define CONTENT_BLOCK (256u << 10) /* bytes per read of a streamed file */

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

static struct validate_ctx ctx_of(struct request *r) {
  struct validate_ctx c = {.store = r->api->store,
                           .volumes = r->api->cfg.volumes,
                           .osvols = r->api->cfg.osvols,
                           .tasks = r->api->tasks};
  return c;
}

void route_validate(struct request *r) {
  if (r->nseg != 3) {
    reply_no_resource(r);
    return;
  }
  if (!is(r->method, "POST")) return reply_method_not_allowed(r);
  if (auth_require(r, ROLE_DEPLOY) < 0) return;
  json_t *b = req_json(r);
  if (!b) return;
  struct err e;
  err_init(&e);
  struct validate_ctx c = ctx_of(r);
  json_t *task = validate_submit(&c, r->seg[1], b, r->sess.user, &e);
  if (!task) return reply_error(r, &e);
  reply_task(r, task);
}

/* ---- browsing ----------------------------------------------------------------------- */
static ssize_t content_read(void *cls, uint64_t pos, char *buf, size_t max) {
  struct browse_file *f = cls;
  if (pos >= browse_file_size(f)) return MHD_CONTENT_READER_END_OF_STREAM;
  struct err e;
  err_init(&e);
  long n = browse_file_read(f, pos, buf, max, &e);
  if (n < 0) log_error("api", "file read at %llu failed: %s", (unsigned long long)pos, e.message);
  err_clear(&e);
  if (n <= 0) return MHD_CONTENT_READER_END_WITH_ERROR; /* failed, or shorter than announced */
  return (ssize_t)n;
}

static void content_free(void *cls) { browse_file_close(cls); }

static void serve_content(struct request *r, const struct validate_ctx *c, enum validate_source k,
                          const char *device, const char *path) {
  struct err e;
  err_init(&e);
  struct browse_file *f = browse_open(c, k, r->seg[1], device, path, &e);
  if (!f) return reply_error(r, &e);
  struct MHD_Response *resp = MHD_create_response_from_callback(browse_file_size(f), CONTENT_BLOCK,
                                                                content_read, f, content_free);
  if (!resp) {
    browse_file_close(f);
    return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  r->resp_custom = resp;
  r->status = 200;
  r->content_type = "application/octet-stream";
}

void route_browse(struct request *r) {
  enum validate_source k =
      is(r->seg[0], "golden-images") ? VALIDATE_GOLDEN_IMAGE : VALIDATE_OS_VOLUME;
  int devices = r->nseg == 3 && is(r->seg[2], "devices");
  int files = r->nseg == 3 && is(r->seg[2], "files");
  int content = r->nseg == 4 && is(r->seg[2], "files") && is(r->seg[3], "content");
  if (!devices && !files && !content) {
    reply_no_resource(r);
    return;
  }
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  if (content && auth_require(r, ROLE_DEPLOY) < 0) return;
  struct validate_ctx c = ctx_of(r);
  struct err e;
  err_init(&e);
  json_t *doc;
  if (devices) {
    doc = browse_devices(&c, k, r->seg[1], &e);
  } else {
    const char *device = req_arg(r, "device");
    const char *path = req_arg(r, "path");
    if (!path || !*path) path = "/";
    if (content) return serve_content(r, &c, k, device, path);
    doc = browse_list(&c, k, r->seg[1], device, path, &e);
  }
  if (!doc) return reply_error(r, &e);
  reply_json(r, 200, doc);
}
