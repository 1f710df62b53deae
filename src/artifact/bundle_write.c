/* bundle_write.c — creating bundles: the create body checked into a plan
 * (selected artifacts, the dependency closure, per-artifact read-only), the
 * backup plan (everything), and the zip in HPE's exact layout: plan scripts,
 * (golden image JSON + payload) per image, build plans, deployment plans,
 * MANIFEST.MF, SHA256SUM.sha256sum last; JSON members compact with HPE's
 * field order, server-side fields null, references by name. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact/artifact_int.h"
#include "artifact/bundle_int.h"
#include "vol/image.h"

static const char *const COLL[] = {"plan-scripts", "build-plans", "deployment-plans", GOLDEN_COLL};
static const char *const WHAT[] = {"plan script", "build plan", "deployment plan", "golden image"};
static const char *const LIST[] = {"planScripts", "buildPlans", "deploymentPlans", "goldenImages"};

static const char *sv(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static int doc_read_only(int k, json_t *doc) {
  if (k == 3) return util_json_bool(json_object_get(doc, "readOnly")) == 1;
  return util_json_bool(json_object_get(doc, "hpProvided")) == 1 ||
         util_json_bool(json_object_get(doc, "readOnly")) == 1;
}

/* plan[LIST[k]] = [{"id","readOnly"}]; add or raise the read-only flag. */
static void add(json_t *plan, int k, const char *id, int ro) {
  json_t *arr = json_object_get(plan, LIST[k]);
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) {
    if (strcmp(sv(x, "id"), id) == 0) {
      if (ro) json_object_set_new(x, "readOnly", json_true());
      return;
    }
  }
  json_array_append_new(arr, json_pack("{s:s, s:b}", "id", id, "readOnly", ro));
}

static json_t *new_plan(const char *name, const char *desc) {
  return json_pack("{s:s, s:s, s:[], s:[], s:[], s:[]}", "name", name, "description",
                   desc ? desc : "", LIST[0], LIST[1], LIST[2], LIST[3]);
}

/* Pull in what build plan `id` needs. */
static void closure_bp(struct store *s, json_t *plan, const char *id, int ro) {
  struct store_entry *bp = store_get(s, COLL[1], id);
  if (!bp) return;
  size_t i;
  json_t *st;
  json_array_foreach(json_object_get(bp->doc, "buildStep"), i, st) {
    const char *ps = artifact_uri_id(sv(st, "planScriptUri"), COLL[0]);
    if (ps) add(plan, 0, ps, ro);
  }
  store_entry_release(bp);
}

json_t *bundle_create_plan(struct store *s, json_t *body, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "the body must be an ArtifactsBundle JSON object");
    return NULL;
  }
  const char *name = sv(body, "name");
  if (bundle_check_new_name(s, name, e) < 0) return NULL;
  json_t *dv = json_object_get(body, "description");
  if (dv && !json_is_null(dv) && !json_is_string(dv)) {
    err_set(e, 400, "INVALID_FIELD", "artifact bundle: \"description\" must be a string");
    return NULL;
  }
  int with_gi = util_json_bool(json_object_get(body, "withGoldenImages")) == 1;
  json_t *plan = new_plan(name, json_string_value(dv));
  json_t *sel = new_plan(name, NULL); /* the explicit selection */
  size_t total = 0;
  for (int k = 0; k < 4; k++) {
    json_t *arr = json_object_get(body, LIST[k]);
    if (k == 3 && !arr) arr = json_object_get(body, "goldenimage");
    if (!arr || json_is_null(arr)) continue;
    if (!json_is_array(arr)) {
      err_set(e, 400, "INVALID_FIELD", "artifact bundle: \"%s\" must be an array", LIST[k]);
      goto fail;
    }
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
      const char *uri = json_is_string(x) ? json_string_value(x) : sv(x, "resourceUri");
      if (!uri) uri = sv(x, "uri");
      if (!uri || !*uri) {
        err_set(e, 400, "INVALID_FIELD", "artifact bundle: %s[%zu] needs a \"resourceUri\"",
                LIST[k], i);
        goto fail;
      }
      const char *id = artifact_uri_id(uri, COLL[k]);
      if (!id || !*id) {
        err_set(e, 400, "INVALID_FIELD",
                "artifact bundle: %s[%zu] \"%.200s\" is not the URI of a %s (/rest/%s/{id})",
                LIST[k], i, uri, WHAT[k], COLL[k]);
        goto fail;
      }
      struct store_entry *en = store_get(s, COLL[k], id);
      if (!en) {
        err_set(e, 404, "RESOURCE_NOT_FOUND", "artifact bundle: %s \"%.200s\" does not exist",
                WHAT[k], uri);
        goto fail;
      }
      if (k == 3 && golden_is_deleting(en->doc)) {
        store_entry_release(en);
        err_set(e, 409, "GOLDEN_IMAGE_DELETING", "golden image \"%.200s\" is being deleted", uri);
        goto fail;
      }
      store_entry_release(en);
      int ro = 0;
      json_t *rv = json_is_object(x) ? json_object_get(x, "readOnly") : NULL;
      if (rv && !json_is_null(rv)) {
        ro = util_json_bool(rv);
        if (ro < 0) {
          err_set(e, 400, "INVALID_FIELD",
                  "artifact bundle: %s[%zu].readOnly must be true or false", LIST[k], i);
          goto fail;
        }
      }
      add(sel, k, id, ro);
      total++;
    }
  }
  if (total == 0) {
    err_set(e, 400, "INVALID_FIELD",
            "artifact bundle: select at least one plan script, build plan, deployment plan or "
            "golden image");
    goto fail;
  }
  /* The closure: deployment plan -> build plan (-> plan scripts) and, when
   * asked, its golden image; build plan -> plan scripts. */
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(sel, LIST[2]), i, x) {
    int ro = json_is_true(json_object_get(x, "readOnly"));
    add(plan, 2, sv(x, "id"), ro);
    struct store_entry *dp = store_get(s, COLL[2], sv(x, "id"));
    if (!dp) continue;
    const char *bp = artifact_uri_id(sv(dp->doc, "oeBuildPlanURI"), COLL[1]);
    if (bp) {
      add(plan, 1, bp, ro);
      closure_bp(s, plan, bp, ro);
    }
    const char *gi = artifact_uri_id(sv(dp->doc, "goldenImageURI"), COLL[3]);
    if (gi && *gi && with_gi) add(plan, 3, gi, ro);
    store_entry_release(dp);
  }
  json_array_foreach(json_object_get(sel, LIST[1]), i, x) {
    int ro = json_is_true(json_object_get(x, "readOnly"));
    add(plan, 1, sv(x, "id"), ro);
    closure_bp(s, plan, sv(x, "id"), ro);
  }
  json_array_foreach(json_object_get(sel, LIST[0]), i, x) {
    add(plan, 0, sv(x, "id"), json_is_true(json_object_get(x, "readOnly")));
  }
  json_array_foreach(json_object_get(sel, LIST[3]), i, x) {
    add(plan, 3, sv(x, "id"), json_is_true(json_object_get(x, "readOnly")));
  }
  int all_ro = 1;
  for (int k = 0; k < 4; k++)
    json_array_foreach(json_object_get(plan, LIST[k]), i, x) {
      if (!json_is_true(json_object_get(x, "readOnly"))) all_ro = 0;
    }
  json_object_set_new(plan, "readOnly", json_boolean(all_ro));
  json_decref(sel);
  return plan;
fail:
  json_decref(plan);
  json_decref(sel);
  return NULL;
}

json_t *bundle_backup_plan(struct store *s, struct err *e) {
  char now[32];
  util_iso8601(util_now_ms(), now);
  char *name = util_strdup_printf("backup-%.10s", now);
  json_t *plan =
      new_plan(name, "Backup of every plan script, build plan, deployment plan and golden image");
  free(name);
  for (int k = 0; k < 4; k++) {
    struct store_entry **v;
    size_t n;
    if (store_list(s, COLL[k], &v, &n) < 0) {
      json_decref(plan);
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      return NULL;
    }
    for (size_t i = 0; i < n; i++)
      if (k != 3 || !golden_is_deleting(v[i]->doc))
        add(plan, k, v[i]->id, doc_read_only(k, v[i]->doc));
    store_entries_release(v, n);
  }
  json_object_set_new(plan, "readOnly", json_false());
  json_object_set_new(plan, "backup", json_true());
  return plan;
}

/* ---- member JSON in HPE's shape ----------------------------------------------- */
static json_t *orn(json_t *v) { return v ? json_incref(v) : json_null(); }
static json_t *ostr(json_t *v) { return json_is_string(v) ? json_incref(v) : json_string(""); }

static json_t *export_ps(json_t *d) {
  return json_pack("{s:s, s:n, s:n, s:n, s:n, s:n, s:O, s:O, s:o, s:n, s:n, s:O, s:O, s:n, s:b, "
                   "s:n}",
                   "type", "PlanScript", "uri", "category", "eTag", "created", "modified", "id",
                   json_object_get(d, "id"), "name", json_object_get(d, "name"), "description",
                   ostr(json_object_get(d, "description")), "status", "state", "planType",
                   json_object_get(d, "planType"), "content", json_object_get(d, "content"),
                   "customAttributes", "hpProvided",
                   util_json_bool(json_object_get(d, "hpProvided")) == 1, "dependentArtifacts");
}

static json_t *export_bp(struct store *s, json_t *d) {
  json_t *steps = json_array(), *attrs = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(d, "buildStep"), i, x) {
    const char *id = artifact_uri_id(sv(x, "planScriptUri"), COLL[0]);
    struct store_entry *ps = id ? store_get(s, COLL[0], id) : NULL;
    char *uri = util_strdup_printf("/rest/plan-scripts/%s", id ? id : "");
    json_array_append_new(
        steps, json_pack("{s:s, s:o, s:o, s:o}", "planScriptUri", uri, "serialNumber",
                         json_is_string(json_object_get(x, "serialNumber"))
                             ? json_incref(json_object_get(x, "serialNumber"))
                             : json_sprintf("%zu", i + 1),
                         "parameters", orn(json_object_get(x, "parameters")), "planScriptName",
                         ps ? json_string(ps->name) : ostr(json_object_get(x, "planScriptName"))));
    free(uri);
    store_entry_release(ps);
  }
  json_array_foreach(json_object_get(d, "customAttributes"), i, x) {
    json_array_append_new(attrs,
                          json_pack("{s:O, s:o, s:o, s:o, s:o}", "name", json_object_get(x, "name"),
                                    "description", ostr(json_object_get(x, "description")), "value",
                                    orn(json_object_get(x, "value")), "constraints",
                                    orn(json_object_get(x, "constraints")), "type",
                                    orn(json_object_get(x, "type"))));
  }
  return json_pack("{s:s, s:n, s:n, s:n, s:n, s:n, s:O, s:O, s:o, s:n, s:b, s:O, s:o, s:o, s:n}",
                   "type", "OeBuildPlan", "uri", "category", "eTag", "created", "modified",
                   "buildPlanid", json_object_get(d, "id"), "name", json_object_get(d, "name"),
                   "description", ostr(json_object_get(d, "description")), "status", "hpProvided",
                   util_json_bool(json_object_get(d, "hpProvided")) == 1, "oeBuildPlanType",
                   json_object_get(d, "oeBuildPlanType"), "buildStep", steps, "customAttributes",
                   attrs, "dependentArtifacts");
}

static json_t *name_of(struct store *s, const char *coll, const char *uri, json_t *plan_list) {
  const char *id = artifact_uri_id(uri, coll);
  if (!id || !*id) return json_null();
  if (plan_list) { /* only what the bundle holds */
    int in = 0;
    size_t i;
    json_t *x;
    json_array_foreach(plan_list, i, x) { in |= strcmp(sv(x, "id"), id) == 0; }
    if (!in) return json_null();
  }
  struct store_entry *en = store_get(s, coll, id);
  json_t *n = en ? json_string(en->name) : json_null();
  store_entry_release(en);
  return n;
}

static json_t *export_dp(struct store *s, json_t *d, json_t *plan) {
  json_t *attrs = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(d, "customAttributes"), i, x) {
    json_t *a = json_pack(
        "{s:O, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", json_object_get(x, "name"), "visible",
        json_object_get(x, "visible") ? json_incref(json_object_get(x, "visible")) : json_true(),
        "value", orn(json_object_get(x, "value")), "description",
        ostr(json_object_get(x, "description")), "type", orn(json_object_get(x, "type")),
        "constraints", orn(json_object_get(x, "constraints")), "editable",
        json_object_get(x, "editable") ? json_incref(json_object_get(x, "editable")) : json_true(),
        "id", orn(json_object_get(x, "id")));
    json_array_append_new(attrs, a);
  }
  return json_pack("{s:s, s:b, s:n, s:n, s:n, s:n, s:n, s:O, s:O, s:o, s:n, s:n, s:o, s:o, s:b, "
                   "s:o}",
                   "type", "OEDeploymentPlan", "hpProvided",
                   util_json_bool(json_object_get(d, "hpProvided")) == 1, "uri", "category", "eTag",
                   "created", "modified", "id", json_object_get(d, "id"), "name",
                   json_object_get(d, "name"), "description",
                   ostr(json_object_get(d, "description")), "status", "state", "goldenImageURI",
                   name_of(s, COLL[3], sv(d, "goldenImageURI"), json_object_get(plan, LIST[3])),
                   "oeBuildPlanURI", name_of(s, COLL[1], sv(d, "oeBuildPlanURI"), NULL),
                   "importMetadata", 0, "customAttributes", attrs);
}

static json_t *export_gi(json_t *d, const char *bundle_name, int ro) {
  return json_pack("{s:s, s:n, s:n, s:n, s:n, s:n, s:O, s:O, s:o, s:n, s:i, s:n, s:b, s:b, s:s, "
                   "s:n, s:s, s:b, s:n, s:n, s:n, s:n, s:n, s:n, s:n}",
                   "type", "GoldenImage", "uri", "category", "eTag", "created", "modified", "id",
                   json_object_get(d, "id"), "name", json_object_get(d, "name"), "description",
                   ostr(json_object_get(d, "description")), "status", "size", 0, "checkSum",
                   "readOnly", ro, "importedFromBundle", 1, "bundleName", bundle_name, "bundleURI",
                   "artifactBundleCategory", "artifact-bundles", "imageCapture", 0, "osVolumeURI",
                   "osVolumeName", "osVolumeCategory", "buildPlanUri", "buildPlanName",
                   "buildPlanCategory", "dependentArtifacts");
}

/* ---- writing ----------------------------------------------------------------------- */
struct wctx {
  const struct bundle_ctx *c;
  struct bzw *w;
  char *sums;
  size_t sums_len;
  uint64_t done, total; /* payload bytes, for progress */
};

static int stopped(const struct bundle_ctx *c, struct err *e) {
  if (!c->stop || !*c->stop) return 0;
  err_set(e, 409, "STOPPED", "the creation of the bundle was stopped");
  return -1;
}

static int add_sum(struct wctx *x, const char *name, const char *hex, struct err *e) {
  char *line = util_strdup_printf("%s\t%s\n", name, hex);
  size_t l = line ? strlen(line) : 0;
  char *n = line ? realloc(x->sums, x->sums_len + l + 1) : NULL;
  if (!n) {
    free(line);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  memcpy(n + x->sums_len, line, l + 1);
  x->sums = n;
  x->sums_len += l;
  free(line);
  return 0;
}

static int put_text(struct wctx *x, const char *name, const char *text, struct err *e) {
  char hex[65];
  if (bzw_begin(x->w, name, 6, strlen(text), e) < 0 || bzw_data(x->w, text, strlen(text), e) < 0 ||
      bzw_end(x->w, hex, e) < 0)
    return -1;
  return add_sum(x, name, hex, e);
}

static int put_json(struct wctx *x, const char *id, const char *suffix, json_t *doc,
                    struct err *e) {
  if (!doc) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char *name = util_strdup_printf("%s_%s.json", id, suffix);
  int rc = text && name ? put_text(x, name, text, e) : -1;
  if (!text || !name) err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  free(text);
  free(name);
  return rc;
}

static int put_payload(struct wctx *x, json_t *gi, struct err *e) {
  struct image_export *ex = NULL;
  const char *id = sv(gi, "id");
  const char *member = sv(gi, "member");
  if (image_export_open(x->c->volumes, id, member && *member ? member : id,
                        (uint64_t)json_integer_value(json_object_get(gi, "size")),
                        (uint32_t)json_integer_value(json_object_get(gi, "crc32")), &ex, e) < 0)
    return -1;
  uint64_t len = image_export_length(ex), off = 0;
  size_t bs = 1u << 20;
  char *buf = malloc(bs), hex[65];
  int rc = -1;
  if (!buf) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  if (bzw_begin(x->w, sv(gi, "name"), 1, len, e) < 0) goto out;
  while (off < len) {
    if (stopped(x->c, e) < 0) goto out;
    long n = image_export_read(ex, off, buf, bs, e);
    if (n <= 0) {
      if (n == 0) err_set(e, 500, "BUNDLE_IO", "golden image %s: the export ended early", id);
      goto out;
    }
    if (bzw_data(x->w, buf, (size_t)n, e) < 0) goto out;
    off += (uint64_t)n;
    x->done += (uint64_t)n;
    if (x->c->progress && x->total)
      x->c->progress(x->c->progress_arg, 5 + (int)(90.0 * (double)x->done / (double)x->total),
                     NULL);
  }
  if (bzw_end(x->w, hex, e) < 0) goto out;
  rc = add_sum(x, sv(gi, "name"), hex, e);
out:
  free(buf);
  image_export_close(ex);
  return rc;
}

/* The current documents of plan list k, in the plan's order; NULL (404) if one is gone. */
static struct store_entry **docs_of(struct store *s, json_t *plan, int k, size_t *n,
                                    struct err *e) {
  json_t *arr = json_object_get(plan, LIST[k]);
  *n = json_array_size(arr);
  struct store_entry **v = calloc(*n ? *n : 1, sizeof *v);
  if (!v) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < *n; i++) {
    const char *id = sv(json_array_get(arr, i), "id");
    v[i] = id ? store_get(s, COLL[k], id) : NULL;
    if (!v[i]) {
      err_set(e, 404, "RESOURCE_NOT_FOUND", "%s %s was deleted while the bundle was being written",
              WHAT[k], id ? id : "?");
      store_entries_release(v, i);
      return NULL;
    }
  }
  return v;
}

int bundle_write(const struct bundle_ctx *c, json_t *plan, const char *path, struct err *e) {
  struct store *s = c->store;
  struct store_entry **d[4] = {0};
  size_t n[4] = {0};
  int rc = -1, fd = -1;
  struct wctx x = {.c = c};
  int bundle_ro = json_is_true(json_object_get(plan, "readOnly"));
  const char *bname = sv(plan, "name");
  for (int k = 0; k < 4; k++)
    if (!(d[k] = docs_of(s, plan, k, &n[k], e))) goto out;
  if (n[3] && !c->volumes) {
    err_set(e, 503, "GOLDEN_IMAGES_UNAVAILABLE",
            "no volume store: golden images cannot be bundled");
    goto out;
  }
  for (size_t i = 0; i < n[3]; i++)
    x.total += (uint64_t)json_integer_value(json_object_get(d[3][i]->doc, "size"));
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    err_set(e, 500, "BUNDLE_IO", "cannot create %s: %s", path, strerror(errno));
    goto out;
  }
  int64_t now = util_now_ms();
  x.w = bzw_open(fd, now);
  if (!x.w) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  if (c->progress) c->progress(c->progress_arg, 2, "Writing the bundle");
  /* The per-artifact read-only flag, written only where it differs from the bundle's. */
  for (int k = 0; k < 4; k++) {
    if (k == 1) { /* golden images come right after the plan scripts */
      for (size_t i = 0; i < n[3]; i++) {
        json_t *pe = json_array_get(json_object_get(plan, LIST[3]), i);
        int ro = json_is_true(json_object_get(pe, "readOnly"));
        json_t *gj = export_gi(d[3][i]->doc, bname ? bname : "", ro);
        int bad = stopped(c, e) < 0 || put_json(&x, d[3][i]->id, "goldenimage", gj, e) < 0 ||
                  put_payload(&x, d[3][i]->doc, e) < 0;
        json_decref(gj);
        if (bad) goto out;
      }
    }
    if (k == 3) break;
    static const char *const SUFFIX[] = {"planscript", "buildplan", "deploymentplan"};
    for (size_t i = 0; i < n[k]; i++) {
      if (stopped(c, e) < 0) goto out;
      json_t *pe = json_array_get(json_object_get(plan, LIST[k]), i);
      int ro = json_is_true(json_object_get(pe, "readOnly"));
      json_t *doc = k == 0   ? export_ps(d[k][i]->doc)
                    : k == 1 ? export_bp(s, d[k][i]->doc)
                             : export_dp(s, d[k][i]->doc, plan);
      if (doc && ro && !bundle_ro) json_object_set_new(doc, "readOnly", json_true());
      if (put_json(&x, d[k][i]->id, SUFFIX[k], doc, e) < 0) {
        json_decref(doc);
        goto out;
      }
      json_decref(doc);
    }
  }
  char ts[32];
  util_iso8601(now, ts);
  char *mf = bundle_manifest_format(bname ? bname : "", sv(plan, "description"), bundle_ro, ts);
  if (!mf) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  rc = put_text(&x, "MANIFEST.MF", mf, e);
  free(mf);
  if (rc < 0) goto out;
  rc = -1;
  char hex[65];
  if (bzw_begin(x.w, "SHA256SUM.sha256sum", 6, x.sums_len, e) < 0 ||
      bzw_data(x.w, x.sums ? x.sums : "", x.sums_len, e) < 0 || bzw_end(x.w, hex, e) < 0 ||
      bzw_finish(x.w, e) < 0)
    goto out;
  if (fsync(fd) < 0) {
    err_set(e, 500, "BUNDLE_IO", "cannot write %s: %s", path, strerror(errno));
    goto out;
  }
  rc = 0;
  if (c->progress) c->progress(c->progress_arg, 100, NULL);
out:
  bzw_free(x.w);
  free(x.sums);
  for (int k = 0; k < 4; k++)
    if (d[k]) store_entries_release(d[k], n[k]);
  if (fd >= 0 && close(fd) < 0 && rc == 0) {
    err_set(e, 500, "BUNDLE_IO", "cannot write %s: %s", path, strerror(errno));
    rc = -1;
  }
  if (rc < 0 && fd >= 0) unlink(path);
  return rc;
}
