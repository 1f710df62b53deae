/* routes.c — the URI space: which handler serves what, who may call it,
 * collections (paging, filters, sort), artifacts, tasks, version. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/query.h"
#include "artifact/artifact.h"

#define API_CURRENT_VERSION 2020
#define API_MINIMUM_VERSION 300

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* ---- collections ------------------------------------------------------------ */
/* Collections whose stored documents hold secrets: filters and sort work on
 * the public rendering so that no filter can probe a secret. */
static int has_secrets(const char *coll) {
  return is(coll, "users") || is(coll, "build-plans") || is(coll, "deployment-plans") ||
         is(coll, "golden-images") || is(coll, "os-volumes") || is(coll, "server-hardware") ||
         is(coll, "server-profiles");
}

static const char *collection_type(const char *coll) {
  if (is(coll, "plan-scripts")) return "PlanScriptCollection";
  if (is(coll, "build-plans")) return "OeBuildPlanCollection";
  if (is(coll, "deployment-plans")) return "OEDeploymentPlanCollection";
  if (is(coll, "golden-images")) return "GoldenImageCollection";
  if (is(coll, "os-volumes")) return "OSVolumeCollection";
  if (is(coll, "tasks")) return "TaskResourceCollection";
  if (is(coll, "server-hardware")) return "server-hardware-list";
  if (is(coll, "server-profiles")) return "ServerProfileListV12";
  if (is(coll, "users")) return "UserAndPermissionsCollection";
  if (is(coll, "artifact-bundles")) return "ArtifactsBundleCollection";
  if (is(coll, "artifact-bundle-backups")) return "ArtifactsBundleBackupCollection";
  return "ResourceCollection";
}

static int parse_long(const char *s, long *out) {
  if (!s) return 0;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

/* Append `s` URL-encoded to buf. */
static void url_encode(char *buf, size_t size, const char *s) {
  size_t o = strlen(buf);
  for (; *s && o + 4 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        strchr("-_.~", c))
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, size - o, "%%%02X", c);
  }
  buf[o] = 0;
}

static json_t *page_uri(struct request *r, long start, long count, const char *const *filters,
                        int nf, const char *query, const char *sort) {
  char buf[4096];
  size_t o = (size_t)snprintf(buf, sizeof buf, "/rest");
  for (int i = 0; i < r->nseg && o < sizeof buf - 64; i++) /* e.g. /rest/artifact-bundles/backups */
    o += (size_t)snprintf(buf + o, sizeof buf - 64 - o, "/%s", r->seg[i]);
  if (o > sizeof buf - 64) o = sizeof buf - 64;
  snprintf(buf + o, sizeof buf - o, "?start=%ld&count=%ld", start, count);
  for (int i = 0; i < nf; i++) {
    strncat(buf, "&filter=", sizeof buf - strlen(buf) - 1);
    url_encode(buf, sizeof buf, filters[i]);
  }
  if (query) {
    strncat(buf, "&query=", sizeof buf - strlen(buf) - 1);
    url_encode(buf, sizeof buf, query);
  }
  if (sort) {
    strncat(buf, "&sort=", sizeof buf - strlen(buf) - 1);
    url_encode(buf, sizeof buf, sort);
  }
  return json_string(buf);
}

struct sortable {
  struct store_entry *en;
  json_t *view;
  size_t pos;
};

static int cmp_sortable(const void *a, const void *b, void *q) {
  const struct sortable *x = a, *y = b;
  int c = query_compare(q, x->view, y->view);
  if (c) return c;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void serve_collection(struct request *r, const char *coll) {
  const char *filters[MAX_FILTERS + 1]; /* one more, to notice a filter that would be dropped */
  int nf = req_args(r, "filter", filters, MAX_FILTERS + 1);
  if (nf > MAX_FILTERS) {
    reply_err(r, 400, "INVALID_FILTER", "at most %d \"filter\" parameters are allowed",
              MAX_FILTERS);
    return;
  }
  const char *query = req_arg(r, "query");
  const char *sort = req_arg(r, "sort");
  long start = 0, count = -1;
  if (parse_long(req_arg(r, "start"), &start) < 0 || start < 0) {
    reply_err(r, 400, "INVALID_START", "\"start\" must be an integer >= 0");
    return;
  }
  if (parse_long(req_arg(r, "count"), &count) < 0 || count < -1) {
    reply_err(r, 400, "INVALID_COUNT", "\"count\" must be an integer >= 0, or -1 for all");
    return;
  }
  /* Bound the work one request can cause: matches is O(value x pattern). */
  for (int i = 0; i < nf; i++)
    if (strlen(filters[i]) > 2048) {
      reply_err(r, 400, "INVALID_FILTER", "a filter is longer than 2048 bytes");
      return;
    }
  if ((query && strlen(query) > 2048) || (sort && strlen(sort) > 512)) {
    reply_err(r, 400, "INVALID_FILTER", "the query or sort parameter is too long");
    return;
  }
  if (query && !*query) query = NULL;
  if (sort && !*sort) sort = NULL;
  struct err e;
  err_init(&e);
  struct query *q = NULL;
  if (nf > 0 || query || sort) {
    q = query_parse(filters, (size_t)nf, query, sort, &e);
    if (!q) {
      reply_error(r, &e);
      return;
    }
  }
  /* The whole unfiltered collection is served from a cache of its rendered
   * body while the collection is unchanged (read the generation first). */
  struct api *a = r->api;
  int cacheable = !q && start == 0 && count < 0;
  uint64_t gen = cacheable ? store_generation(a->store, coll) : 0;
  int slot = -1;
  if (cacheable) {
    pthread_mutex_lock(&a->cache_lock);
    for (int i = 0; i < COLLECTION_CACHE_SLOTS && slot < 0; i++)
      if (strcmp(a->cache[i].coll, coll) == 0 || !a->cache[i].coll[0]) slot = i;
    struct blob *hit = slot >= 0 && a->cache[slot].body && a->cache[slot].gen == gen &&
                               strcmp(a->cache[slot].coll, coll) == 0
                           ? blob_ref(a->cache[slot].body)
                           : NULL;
    pthread_mutex_unlock(&a->cache_lock);
    if (hit) {
      reply_blob(r, 200, hit);
      return;
    }
  }
  struct store_entry **v;
  size_t n;
  if (store_list(r->api->store, coll, &v, &n) < 0) {
    query_free(q);
    reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
    return;
  }
  struct sortable *sel = calloc(n ? n : 1, sizeof *sel);
  size_t k = 0;
  int secrets = has_secrets(coll);
  for (size_t i = 0; sel && i < n; i++) {
    json_t *view = NULL;
    if (q) {
      view = secrets ? json_loadb(v[i]->text, v[i]->len, 0, NULL) : json_incref(v[i]->doc);
      if (!view || !query_match(q, view)) {
        json_decref(view);
        continue;
      }
    }
    sel[k].en = v[i];
    sel[k].view = view;
    sel[k].pos = i;
    k++;
  }
  if (q && sort && k > 1) qsort_r(sel, k, sizeof *sel, cmp_sortable, q);
  size_t total = k;
  size_t first = (size_t)start < total ? (size_t)start : total;
  size_t last = count < 0 ? total : (first + (size_t)count < total ? first + (size_t)count : total);
  /* Build the body: the header object, then the cached member texts. */
  json_t *head = json_pack(
      "{s:s, s:s, s:o, s:I, s:I, s:I, s:o, s:o}", "type", collection_type(coll), "category", coll,
      "uri", page_uri(r, start, count, filters, nf, query, sort), "start", (json_int_t)start,
      "count", (json_int_t)(last - first), "total", (json_int_t)total, "prevPageUri",
      start > 0 && count > 0
          ? page_uri(r, start > count ? start - count : 0, count, filters, nf, query, sort)
          : json_null(),
      "nextPageUri",
      count >= 0 && last < total ? page_uri(r, (long)last, count, filters, nf, query, sort)
                                 : json_null());
  char *hs = json_dumps(head, JSON_COMPACT);
  json_decref(head);
  size_t len = hs ? strlen(hs) : 0, need = len + 16;
  for (size_t i = first; i < last; i++)
    need += sel[i].en->len + 1;
  struct blob *b = hs ? blob_new(need) : NULL;
  char *out = b ? b->data : NULL;
  if (out) {
    size_t o = len - 1; /* drop the closing brace */
    memcpy(out, hs, o);
    memcpy(out + o, ",\"members\":[", 12);
    o += 12;
    for (size_t i = first; i < last; i++) {
      if (i > first) out[o++] = ',';
      memcpy(out + o, sel[i].en->text, sel[i].en->len);
      o += sel[i].en->len;
    }
    memcpy(out + o, "]}", 3);
    o += 2;
    b->len = o;
    if (slot >= 0 && strlen(coll) < sizeof a->cache[slot].coll) {
      pthread_mutex_lock(&a->cache_lock);
      struct collection_cache *c = &a->cache[slot];
      if (!c->body || c->gen <= gen || strcmp(c->coll, coll) != 0) {
        blob_release(c->body);
        snprintf(c->coll, sizeof c->coll, "%s", coll);
        c->gen = gen;
        c->body = blob_ref(b);
      }
      pthread_mutex_unlock(&a->cache_lock);
    }
    reply_blob(r, 200, b);
  } else {
    reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
  }
  free(hs);
  for (size_t i = 0; sel && i < k; i++)
    json_decref(sel[i].view);
  free(sel);
  store_entries_release(v, n);
  query_free(q);
}

void reply_entry(struct request *r, int status, struct store_entry *en) {
  char *t = malloc(en->len + 1);
  if (!t) {
    reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
    return;
  }
  memcpy(t, en->text, en->len + 1);
  reply_text(r, status, t, en->len);
  const char *etag = json_string_value(json_object_get(en->doc, "eTag"));
  if (etag) snprintf(r->etag, sizeof r->etag, "%s", etag);
}

void serve_one(struct request *r, const char *coll, const char *id, const char *what) {
  struct store_entry *en = store_get(r->api->store, coll, id);
  if (!en) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "%s \"%.100s\" does not exist", what, id);
    return;
  }
  reply_entry(r, 200, en);
  store_entry_release(en);
}

/* ---- artifacts --------------------------------------------------------------------- */
static const char *const KIND_NAMES[] = {"plan script", "build plan", "deployment plan"};

static void route_artifact(struct request *r, enum artifact_kind k) {
  struct store *s = r->api->store;
  const char *coll = artifact_coll(k);
  struct err e;
  err_init(&e);
  struct store_entry *en = NULL;
  if (r->nseg == 1) {
    if (is(r->method, "GET")) {
      serve_collection(r, coll);
    } else if (is(r->method, "POST")) {
      if (auth_require(r, ROLE_DEPLOY) < 0) return;
      json_t *b = req_json(r);
      if (!b) return;
      if (artifact_create(s, k, b, &en, &e) < 0) {
        reply_error(r, &e);
        return;
      }
      reply_entry(r, 201, en);
      snprintf(r->location, sizeof r->location, "/rest/%s/%s", coll, en->id);
      store_entry_release(en);
    } else {
      reply_method_not_allowed(r);
    }
    return;
  }
  /* POST /rest/plan-scripts/differences/{id} */
  if (k == ART_PLAN_SCRIPT && r->nseg == 3 && is(r->seg[1], "differences")) {
    if (!is(r->method, "POST")) return reply_method_not_allowed(r);
    json_t *b = req_json(r);
    if (!b) return;
    const char *content = json_string_value(b);
    if (!content && json_is_object(b)) content = json_string_value(json_object_get(b, "content"));
    if (!content && !json_is_null(b)) {
      reply_err(r, 400, "INVALID_BODY",
                "the body must be the new content as a JSON string (or empty)");
      return;
    }
    json_t *d = artifact_differences(s, r->seg[2], content, &e);
    if (!d) return reply_error(r, &e);
    reply_json(r, 200, d);
    return;
  }
  const char *id = r->seg[1];
  if (r->nseg == 2) {
    if (is(r->method, "GET")) {
      serve_one(r, coll, id, KIND_NAMES[k]);
    } else if (is(r->method, "PUT")) {
      if (auth_require(r, ROLE_DEPLOY) < 0) return;
      json_t *b = req_json(r);
      if (!b) return;
      if (artifact_update(s, k, id, b, req_header(r, "If-Match"), &en, &e) < 0) {
        reply_error(r, &e);
        return;
      }
      reply_entry(r, 200, en);
      store_entry_release(en);
    } else if (is(r->method, "DELETE")) {
      if (auth_require(r, ROLE_DEPLOY) < 0) return;
      if (artifact_delete(s, k, id, req_header(r, "If-Match"), &e) < 0) return reply_error(r, &e);
      reply_no_content(r);
    } else {
      reply_method_not_allowed(r);
    }
    return;
  }
  int usedby = r->nseg >= 3 && is(r->seg[2], "usedby");
  int readonly = r->nseg == 4 && usedby && is(r->seg[3], "readonly");
  if ((usedby && r->nseg == 3 && k != ART_PLAN_SCRIPT) || (readonly && k == ART_PLAN_SCRIPT)) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    json_t *u = artifact_used_by(s, k, id, readonly, &e);
    if (!u) return reply_error(r, &e);
    if (k == ART_DEPLOYMENT_PLAN) { /* server profiles: their URIs */
      json_t *uris = json_array();
      size_t i;
      json_t *p;
      json_array_foreach(u, i, p) { json_array_append(uris, json_object_get(p, "uri")); }
      json_decref(u);
      u = uris;
    }
    reply_json(r, 200, u);
    return;
  }
  /* GET /rest/deployment-plans/{id}/osdp: the OneView view of the plan. */
  if (k == ART_DEPLOYMENT_PLAN && r->nseg == 3 && is(r->seg[2], "osdp")) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    en = store_get(s, coll, id);
    if (!en) {
      reply_err(r, 404, "RESOURCE_NOT_FOUND", "deployment plan \"%.100s\" does not exist", id);
      return;
    }
    json_t *pub = json_loadb(en->text, en->len, 0, NULL);
    json_t *params = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(pub, "customAttributes"), i, a) {
      if (json_is_false(json_object_get(a, "visible"))) continue;
      json_array_append_new(
          params,
          json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "caConstraints",
                    json_object_get(a, "constraints"), "caEditable", json_object_get(a, "editable"),
                    "caId", json_object_get(a, "id"), "caType", json_object_get(a, "type"),
                    "description", json_object_get(a, "description"), "name",
                    json_object_get(a, "name"), "value", json_object_get(a, "value")));
    }
    reply_json(r, 200,
               json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:o}", "type", "Osdp", "deploymentType",
                         "i3s", "nativePlanUri", json_object_get(pub, "uri"), "name",
                         json_object_get(pub, "name"), "description",
                         json_object_get(pub, "description"), "additionalParameters", params));
    json_decref(pub);
    store_entry_release(en);
    return;
  }
  reply_no_resource(r);
}

/* ---- tasks, version, roles ------------------------------------------------------------- */
static void route_tasks(struct request *r) {
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  if (r->nseg == 1) return serve_collection(r, "tasks");
  if (r->nseg == 2) return serve_one(r, "tasks", r->seg[1], "task");
  reply_no_resource(r);
}

static void route_roles(struct request *r) {
  if (!is(r->method, "GET")) return reply_method_not_allowed(r);
  json_t *m = json_array();
  unsigned roles[] = {ROLE_INFRA, ROLE_DEPLOY, ROLE_SERVER, ROLE_READONLY};
  for (int i = 0; i < 4; i++)
    json_array_append_new(m,
                          json_pack("{s:s, s:s}", "type", "Role", "roleName", role_name(roles[i])));
  reply_json(r, 200,
             json_pack("{s:s, s:i, s:i, s:i, s:o}", "type", "RoleCollection", "start", 0, "count",
                       4, "total", 4, "members", m));
}

void route_dispatch(struct request *r) {
  const char *top = r->seg[0];
  if (is(top, "version") && r->nseg == 1) {
    if (!is(r->method, "GET")) return reply_method_not_allowed(r);
    reply_json(r, 200,
               json_pack("{s:i, s:i}", "currentVersion", API_CURRENT_VERSION, "minimumVersion",
                         API_MINIMUM_VERSION));
    return;
  }
  if (is(top, "login-sessions") && r->nseg == 1) return route_login_sessions(r);
  /* Everything else needs a session. */
  if (auth_check(r) < 0) return;
  if (is(top, "sessions") && r->nseg == 2 && is(r->seg[1], "idle-timeout"))
    return route_idle_timeout(r);
  if (is(top, "users")) return route_users(r);
  if (is(top, "roles") && r->nseg == 1) return route_roles(r);
  if (is(top, "build-plans") && r->nseg >= 3 && is(r->seg[2], "validate")) return route_validate(r);
  if ((is(top, "os-volumes") || is(top, "golden-images")) && r->nseg >= 3 &&
      !is(r->seg[1], "archive") && !is(r->seg[1], "download") &&
      (is(r->seg[2], "devices") || is(r->seg[2], "files")))
    return route_browse(r);
  if (is(top, "plan-scripts")) return route_artifact(r, ART_PLAN_SCRIPT);
  if (is(top, "build-plans")) return route_artifact(r, ART_BUILD_PLAN);
  if (is(top, "deployment-plans")) return route_artifact(r, ART_DEPLOYMENT_PLAN);
  if (is(top, "golden-images")) return route_golden_images(r);
  if (is(top, "artifact-bundles")) return route_artifact_bundles(r);
  if (is(top, "os-volumes")) return route_os_volumes(r);
  if (is(top, "iscsi")) return route_iscsi(r);
  if (is(top, "server-hardware")) return route_server_hardware(r);
  if (is(top, "server-profiles")) return route_server_profiles(r);
  if (is(top, "deployment-groups")) return route_deployment_groups(r);
  if (is(top, "tasks")) return route_tasks(r);
  reply_no_resource(r);
}
