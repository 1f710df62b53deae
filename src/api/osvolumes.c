/* osvolumes.c — /rest/os-volumes and /rest/iscsi/targets over HTTP. The
 * rules live in deploy/osvolume.c; this file checks roles, parses bodies
 * and maps results to replies:
 *   GET    /rest/os-volumes                          collection (filter, query, sort, paging)
 *   POST   /rest/os-volumes                          202 + task (Streamer extension)
 *   GET    /rest/os-volumes/{id}                     the volume, current allocatedBytes
 *   PUT    /rest/os-volumes/{id}                     name, description, initiators, CHAP
 *   DELETE /rest/os-volumes/{id}                     202 + task
 *   GET    /rest/os-volumes/archive/{id|name}        the volume's log, text/plain
 *   GET    /rest/os-volumes/{id}/storage             {"name","snapshots":[]}
 *   GET    /rest/os-volumes/{id}/iscsi-credentials   CHAP secrets (Infrastructure administrator)
 *   GET    /rest/iscsi/targets[/{targetName}]        targets, sessions, counters */
#include <string.h>

#include "api/api_int.h"
#include "deploy/osvolume.h"

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* A document reply with its eTag. */
static void reply_doc(struct request *r, int status, json_t *doc) {
  const char *etag = json_string_value(json_object_get(doc, "eTag"));
  if (etag) snprintf(r->etag, sizeof r->etag, "%s", etag);
  reply_json(r, status, doc);
}

static void one_volume(struct request *r, struct osvol_service *svc, const char *id) {
  struct err e;
  err_init(&e);
  if (is(r->method, "GET")) {
    json_t *doc = osvol_get(svc, id, &e);
    if (!doc) return reply_error(r, &e);
    reply_doc(r, 200, doc);
  } else if (is(r->method, "PUT")) {
    if (auth_require(r, ROLE_DEPLOY) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    if (osvol_update(svc, id, b, req_header(r, "If-Match"), NULL, &e) < 0)
      return reply_error(r, &e);
    json_t *doc = osvol_get(svc, id, &e);
    if (!doc) return reply_error(r, &e);
    reply_doc(r, 200, doc);
  } else if (is(r->method, "DELETE")) {
    if (auth_require(r, ROLE_DEPLOY) < 0) return;
    json_t *task =
        osvol_delete(svc, r->api->tasks, id, req_header(r, "If-Match"), r->sess.user, &e);
    if (!task) return reply_error(r, &e);
    reply_task(r, task);
  } else {
    reply_method_not_allowed(r);
  }
}

void route_os_volumes(struct request *r) {
  struct osvol_service *svc = r->api->cfg.osvols;
  struct err e;
  err_init(&e);
  if (!svc) {
    reply_err(r, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return;
  }
  if (r->nseg == 1) {
    if (is(r->method, "GET")) return serve_collection(r, OSVOL_COLL);
    if (!is(r->method, "POST")) return reply_method_not_allowed(r);
    if (auth_require(r, ROLE_DEPLOY) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    json_t *task = osvol_create(svc, r->api->tasks, b, r->sess.user, &e);
    if (!task) return reply_error(r, &e);
    return reply_task(r, task);
  }
  if (r->nseg == 2) return one_volume(r, svc, r->seg[1]);
  if (r->nseg != 3) return reply_no_resource(r);
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  if (is(r->seg[1], "archive")) {
    char *text = osvol_archive(svc, r->seg[2], &e);
    if (!text) return reply_error(r, &e);
    reply_text(r, 200, text, strlen(text));
    r->content_type = "text/plain; charset=utf-8";
    return;
  }
  json_t *doc = NULL;
  if (is(r->seg[2], "storage")) {
    doc = osvol_storage(svc, r->seg[1], &e);
  } else if (is(r->seg[2], "iscsi-credentials")) {
    if (auth_require(r, ROLE_INFRA) < 0) return;
    doc = osvol_credentials(svc, r->seg[1], &e);
  } else {
    return reply_no_resource(r);
  }
  if (!doc) return reply_error(r, &e);
  reply_json(r, 200, doc);
}

void route_iscsi(struct request *r) {
  struct osvol_service *svc = r->api->cfg.osvols;
  if (r->nseg < 2 || r->nseg > 3 || !is(r->seg[1], "targets")) return reply_no_resource(r);
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  if (!svc) {
    reply_err(r, 503, "VOLUMES_UNAVAILABLE", "this server has no volume store");
    return;
  }
  json_t *list = osvol_targets(svc);
  if (!list) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  if (r->nseg == 2) return reply_json(r, 200, list);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    if (is(json_string_value(json_object_get(m, "targetName")) ?: "", r->seg[2])) {
      json_incref(m);
      json_decref(list);
      return reply_json(r, 200, m);
    }
  }
  json_decref(list);
  reply_err(r, 404, "RESOURCE_NOT_FOUND", "no iSCSI target \"%.200s\"", r->seg[2]);
}
