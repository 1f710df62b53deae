/* profiles.c — machines and deployments over HTTP. The rules live in
 * deploy/hardware.c and deploy/profile.c; this file checks roles, parses
 * bodies and maps results to replies:
 *   GET    /rest/server-hardware                  collection (filter, query, sort, paging)
 *   POST   /rest/server-hardware                  201 + the machine
 *   GET    /rest/server-hardware/{id}             the machine (no CHAP secret)
 *   PUT    /rest/server-hardware/{id}             200 + the machine
 *   DELETE /rest/server-hardware/{id}             204 (409 while a profile uses it)
 *   GET    /rest/server-profiles                  collection
 *   POST   /rest/server-profiles                  202 + task "Deploy"
 *   GET    /rest/server-profiles/{id}             the profile (password values blank)
 *   PUT    /rest/server-profiles/{id}             202 + task "Redeploy" or "Update"
 *   DELETE /rest/server-profiles/{id}             202 + task "Delete"
 *   GET    /rest/deployment-groups[/{id}]         the one default group
 * Writes need the Server administrator role (or Infrastructure). */
#include <string.h>

#include "api/api_int.h"
#include "deploy/deploy.h"

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

static int ready(struct request *r) {
  if (r->api->cfg.deploy) return 0;
  reply_err(r, 503, "DEPLOYMENTS_UNAVAILABLE", "this server has no deployment service");
  return -1;
}

void route_server_hardware(struct request *r) {
  if (ready(r) < 0) return;
  struct deploy_service *d = r->api->cfg.deploy;
  struct err e;
  err_init(&e);
  struct store_entry *en = NULL;
  if (r->nseg == 1) {
    if (is(r->method, "GET")) return serve_collection(r, HW_COLL);
    if (!is(r->method, "POST")) return reply_method_not_allowed(r);
    if (auth_require(r, ROLE_SERVER) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    if (hw_create(d, b, &en, &e) < 0) return reply_error(r, &e);
    reply_entry(r, 201, en);
    snprintf(r->location, sizeof r->location, "/rest/%s/%s", HW_COLL, en->id);
    store_entry_release(en);
    return;
  }
  if (r->nseg != 2) return reply_no_resource(r);
  if (is(r->method, "GET")) return serve_one(r, HW_COLL, r->seg[1], "server hardware");
  if (is(r->method, "PUT")) {
    if (auth_require(r, ROLE_SERVER) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    if (hw_update(d, r->seg[1], b, req_header(r, "If-Match"), &en, &e) < 0)
      return reply_error(r, &e);
    reply_entry(r, 200, en);
    store_entry_release(en);
    return;
  }
  if (is(r->method, "DELETE")) {
    if (auth_require(r, ROLE_SERVER) < 0) return;
    if (hw_delete(d, r->seg[1], req_header(r, "If-Match"), &e) < 0) return reply_error(r, &e);
    return reply_no_content(r);
  }
  reply_method_not_allowed(r);
}

void route_server_profiles(struct request *r) {
  if (ready(r) < 0) return;
  struct deploy_service *d = r->api->cfg.deploy;
  struct err e;
  err_init(&e);
  json_t *task = NULL;
  if (r->nseg == 1) {
    if (is(r->method, "GET")) return serve_collection(r, PROFILE_COLL);
    if (!is(r->method, "POST")) return reply_method_not_allowed(r);
    if (auth_require(r, ROLE_SERVER) < 0) return;
    json_t *b = req_json(r);
    if (!b) return;
    task = profile_create(d, b, r->sess.user, &e);
  } else if (r->nseg == 2) {
    if (is(r->method, "GET")) return serve_one(r, PROFILE_COLL, r->seg[1], "server profile");
    if (is(r->method, "PUT")) {
      if (auth_require(r, ROLE_SERVER) < 0) return;
      json_t *b = req_json(r);
      if (!b) return;
      task = profile_update(d, r->seg[1], b, req_header(r, "If-Match"), r->sess.user, &e);
    } else if (is(r->method, "DELETE")) {
      if (auth_require(r, ROLE_SERVER) < 0) return;
      task = profile_delete(d, r->seg[1], req_header(r, "If-Match"), r->sess.user, &e);
    } else {
      return reply_method_not_allowed(r);
    }
  } else {
    return reply_no_resource(r);
  }
  if (!task) return reply_error(r, &e);
  reply_task(r, task);
}

void route_deployment_groups(struct request *r) {
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  json_t *g = deploy_group();
  if (!g) return reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  if (r->nseg == 2) {
    if (!is(r->seg[1], DEPLOY_GROUP_ID)) {
      json_decref(g);
      reply_err(r, 404, "RESOURCE_NOT_FOUND", "deployment group \"%.100s\" does not exist",
                r->seg[1]);
      return;
    }
    return reply_json(r, 200, g);
  }
  if (r->nseg != 1) {
    json_decref(g);
    return reply_no_resource(r);
  }
  reply_json(r, 200,
             json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:n, s:n, s:[o]}", "type",
                       "DeploymentGroupCollection", "category", "deployment-groups", "uri",
                       "/rest/deployment-groups", "start", 0, "count", 1, "total", 1, "prevPageUri",
                       "nextPageUri", "members", g));
}
