/* artifact.c — plan scripts, OS build plans, OS deployment plans. */
#include "artifact/artifact.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "artifact/artifact_int.h"
#include "script/attr.h"

static const char *const COLLS[] = {"plan-scripts", "build-plans", "deployment-plans"};
static const char *const TYPES[] = {"PlanScript", "OeBuildPlan", "OEDeploymentPlan"};

const char *artifact_coll(enum artifact_kind k) { return COLLS[k]; }

/* Keys a client may send for each kind (everything the HPE SDKs, bundle
 * exports and the appliance itself put in these documents). Anything else
 * is rejected so that a misspelt field never passes silently. */
static const char *const COMMON_KEYS[] = {
    "type",       "uri",         "category",         "eTag",
    "etag",       "created",     "modified",         "id",
    "name",       "description", "status",           "state",
    "hpProvided", "readOnly",    "customAttributes", "dependentArtifacts",
    "ostype",     "osType",      "scopesUri",        "initialScopeUris",
    NULL};
static const char *const PS_KEYS[] = {"planType", "content", NULL};
static const char *const BP_KEYS[] = {"buildPlanid", "oeBuildPlanType", "buildStep", NULL};
static const char *const DP_KEYS[] = {"oeBuildPlanURI", "goldenImageURI", "importMetadata",
                                      "deploymentGroups", NULL};

static int in_list(const char *const *list, const char *k) {
  for (; *list; list++)
    if (strcmp(*list, k) == 0) return 1;
  return 0;
}

static int check_keys(enum artifact_kind k, json_t *body, struct err *e) {
  const char *const *own = k == ART_PLAN_SCRIPT ? PS_KEYS : k == ART_BUILD_PLAN ? BP_KEYS : DP_KEYS;
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    if (!in_list(COMMON_KEYS, key) && !in_list(own, key)) {
      err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in a %s", key, TYPES[k]);
      err_action(e, "Remove the field or correct its spelling (see docs/api.md).");
      return -1;
    }
  }
  return 0;
}

/* ---- field helpers ---------------------------------------------------------- */
int artifact_check_name(const char *what, json_t *name, struct err *e) {
  if (!json_is_string(name)) {
    err_set(e, 400, "INVALID_NAME", "%s: \"name\" is required and must be a string", what);
    return -1;
  }
  const char *s = json_string_value(name);
  size_t len = json_string_length(name);
  if (len == 0 || len > 255) {
    err_set(e, 400, "INVALID_NAME", "%s: the name must be 1 to 255 bytes long (got %zu)", what,
            len);
    return -1;
  }
  if (s[0] == ' ' || s[len - 1] == ' ') {
    err_set(e, 400, "INVALID_NAME", "%s: the name must not begin or end with a space", what);
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      continue;
    if (strchr(" -_.,()[]+:", c) && c != 0) continue;
    if (c < 0x20 || c == 0x7f)
      err_set(e, 400, "INVALID_NAME", "%s: the name contains a control character at byte %zu", what,
              i);
    else
      err_set(e, 400, "INVALID_NAME",
              "%s: the name contains the character '%c', which is not allowed", what, c);
    err_action(e, "Use letters, digits, spaces and - _ . , ( ) [ ] + : in names.");
    return -1;
  }
  return 0;
}

static int opt_string(json_t *body, const char *key, size_t maxlen, const char *what,
                      struct err *e) {
  json_t *v = json_object_get(body, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) {
    err_set(e, 400, "INVALID_FIELD", "%s: \"%s\" must be a string", what, key);
    return -1;
  }
  if (json_string_length(v) > maxlen) {
    err_set(e, 400, "INVALID_FIELD", "%s: \"%s\" is longer than %zu bytes", what, key, maxlen);
    return -1;
  }
  return 0;
}

/* Booleans may come as true/false or "true"/"false". Absent/null = dflt. */
static int get_bool(json_t *body, const char *key, int dflt, const char *what, struct err *e) {
  json_t *v = json_object_get(body, key);
  if (!v || json_is_null(v)) return dflt;
  int b = util_json_bool(v);
  if (b < 0) err_set(e, 400, "INVALID_FIELD", "%s: \"%s\" must be true or false", what, key);
  return b;
}

static int check_type(enum artifact_kind k, json_t *body, struct err *e) {
  json_t *t = json_object_get(body, "type");
  if (!t || json_is_null(t)) return 0;
  const char *s = json_string_value(t);
  int ok = s && (strcasecmp(s, TYPES[k]) == 0 ||
                 (k == ART_BUILD_PLAN && strcasecmp(s, "OeBuildPlanV5") == 0) ||
                 (k == ART_DEPLOYMENT_PLAN && strcasecmp(s, "OEDeploymentPlanV5") == 0));
  if (!ok) {
    err_set(e, 400, "INVALID_TYPE", "\"type\" must be \"%s\" for %s", TYPES[k], COLLS[k]);
    return -1;
  }
  return 0;
}

/* The id part of "/rest/<coll>/<id>" (or a bare id). NULL if another collection. */
const char *artifact_uri_id(const char *uri, const char *coll) {
  if (!uri) return NULL;
  size_t cl = strlen(coll);
  if (strncmp(uri, "/rest/", 6) == 0) {
    if (strncmp(uri + 6, coll, cl) != 0 || uri[6 + cl] != '/') return NULL;
    return uri + 7 + cl;
  }
  return strchr(uri, '/') ? NULL : uri;
}

static int is_read_only(json_t *doc) {
  return util_json_bool(json_object_get(doc, "hpProvided")) == 1 ||
         util_json_bool(json_object_get(doc, "readOnly")) == 1;
}

/* Build a JSON array of "name" strings for messages: "a", "b" (max 10). */
void artifact_names_list(json_t *docs, char *buf, size_t size) {
  size_t i, off = 0;
  json_t *d;
  buf[0] = 0;
  json_array_foreach(docs, i, d) {
    if (i == 10) {
      snprintf(buf + off, size - off, ", ...");
      return;
    }
    int n = snprintf(buf + off, size - off, "%s\"%s\"", i ? ", " : "",
                     json_string_value(json_object_get(d, "name")));
    if (n < 0 || (size_t)n >= size - off) return;
    off += (size_t)n;
  }
}

/* ---- renderings -------------------------------------------------------------- */
static char *render_masked(json_t *doc) {
  json_t *ca = json_object_get(doc, "customAttributes");
  if (!json_is_array(ca)) return json_dumps(doc, JSON_COMPACT);
  json_t *copy = json_copy(doc);
  json_t *cac = json_deep_copy(ca);
  attr_mask_passwords(cac);
  json_object_set_new(copy, "customAttributes", cac);
  char *s = json_dumps(copy, JSON_COMPACT);
  json_decref(copy);
  return s;
}

void artifact_register(struct store *s) {
  store_set_render(s, COLLS[ART_BUILD_PLAN], render_masked);
  store_set_render(s, COLLS[ART_DEPLOYMENT_PLAN], render_masked);
  golden_register(s);
}

/* ---- dependentArtifacts ---------------------------------------------------------
 * Plan scripts list the build plans that use them, build plans the deployment
 * plans; kept up to date in the same transaction as every change. */
static int uses(enum artifact_kind user, json_t *doc, const char *target_id) {
  if (user == ART_BUILD_PLAN) {
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(doc, "buildStep"), i, st) {
      const char *id =
          artifact_uri_id(json_string_value(json_object_get(st, "planScriptUri")), COLLS[0]);
      if (id && strcmp(id, target_id) == 0) return 1;
    }
    return 0;
  }
  if (user == ART_DEPLOYMENT_PLAN) {
    const char *id =
        artifact_uri_id(json_string_value(json_object_get(doc, "oeBuildPlanURI")), COLLS[1]);
    return id && strcmp(id, target_id) == 0;
  }
  if (user == 3) { /* server profiles (deployments issue) */
    json_t *ods = json_object_get(doc, "osDeploymentSettings");
    const char *id =
        artifact_uri_id(json_string_value(json_object_get(ods, "osDeploymentPlanUri")), COLLS[2]);
    return id && strcmp(id, target_id) == 0;
  }
  return 0;
}

static json_t *users_of(struct store_txn *t, struct store *s, enum artifact_kind target_kind,
                        const char *target_id) {
  static const char *const user_coll[] = {"build-plans", "deployment-plans", "server-profiles"};
  enum artifact_kind user = (enum artifact_kind)(target_kind + 1);
  struct store_entry **v;
  size_t n;
  int rc = t ? store_txn_list(t, user_coll[target_kind], &v, &n)
             : store_list(s, user_coll[target_kind], &v, &n);
  if (rc < 0) return NULL;
  json_t *out = json_array();
  for (size_t i = 0; i < n; i++)
    if (uses(user, v[i]->doc, target_id)) json_array_append(out, v[i]->doc);
  store_entries_release(v, n);
  return out;
}

/* Recompute dependentArtifacts (and, for plan scripts, the planScriptName of
 * the build steps that point at them) of `target_kind` resource `id`. */
static int refresh_deps(struct store_txn *t, enum artifact_kind target_kind, const char *id,
                        struct err *e) {
  struct store_entry *en = store_txn_get(t, COLLS[target_kind], id);
  if (!en) return 0; /* deleted in this transaction */
  json_t *users = users_of(t, NULL, target_kind, id);
  if (!users) {
    store_entry_release(en);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int rc = artifact_set_dependents(t, COLLS[target_kind], en, users, e);
  json_decref(users);
  store_entry_release(en);
  return rc;
}

int artifact_set_dependents(struct store_txn *t, const char *coll, struct store_entry *en,
                            json_t *users, struct err *e) {
  json_t *deps = json_array();
  size_t i;
  json_t *u;
  json_array_foreach(users, i, u) {
    json_array_append_new(deps, json_pack("{s:O?, s:O?}", "name", json_object_get(u, "name"), "uri",
                                          json_object_get(u, "uri")));
  }
  int rc = 0;
  if (!json_equal(deps, json_object_get(en->doc, "dependentArtifacts"))) {
    json_t *doc = json_deep_copy(en->doc);
    json_object_set(doc, "dependentArtifacts", deps);
    rc = store_put(t, coll, en->id, en->name, doc, e);
    json_decref(doc);
  }
  json_decref(deps);
  return rc;
}

/* After a plan script was renamed: rewrite planScriptName in its build plans. */
static int rename_in_steps(struct store_txn *t, const char *ps_id, const char *name,
                           struct err *e) {
  json_t *users = users_of(t, NULL, ART_PLAN_SCRIPT, ps_id);
  size_t i, j;
  json_t *bp, *st;
  int rc = 0;
  json_array_foreach(users, i, bp) {
    json_t *doc = json_deep_copy(bp);
    json_array_foreach(json_object_get(doc, "buildStep"), j, st) {
      const char *id =
          artifact_uri_id(json_string_value(json_object_get(st, "planScriptUri")), COLLS[0]);
      if (id && strcmp(id, ps_id) == 0)
        json_object_set_new(st, "planScriptName", json_string(name));
    }
    const char *bid = json_string_value(json_object_get(doc, "id"));
    if (rc == 0 && bid)
      rc = store_put(t, COLLS[1], bid, json_string_value(json_object_get(doc, "name")), doc, e);
    json_decref(doc);
  }
  json_decref(users);
  return rc;
}

/* ---- plan scripts ---------------------------------------------------------------- */
static json_t *normalize_plan_script(json_t *body, struct err *e) {
  const char *what = "plan script";
  if (artifact_check_name(what, json_object_get(body, "name"), e) < 0 ||
      opt_string(body, "description", 65536, what, e) < 0)
    return NULL;
  json_t *pt = json_object_get(body, "planType");
  const char *pts = json_string_value(pt);
  if (!pts ||
      (strcasecmp(pts, "deploy") && strcasecmp(pts, "capture") && strcasecmp(pts, "general"))) {
    err_set(e, 400, "INVALID_PLAN_TYPE",
            "plan script: \"planType\" is required and must be deploy, capture or general");
    return NULL;
  }
  json_t *content = json_object_get(body, "content");
  if (!json_is_string(content)) {
    err_set(e, 400, "INVALID_CONTENT", "plan script: \"content\" is required and must be a string");
    return NULL;
  }
  int hp = get_bool(body, "hpProvided", 0, what, e);
  int ro = hp < 0 ? -1 : get_bool(body, "readOnly", 0, what, e);
  if (ro < 0) return NULL;
  json_t *derived = attr_derive(json_string_value(content));
  char *ca = derived ? json_dumps(derived, JSON_COMPACT) : NULL;
  json_decref(derived);
  if (!ca) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  json_t *desc = json_object_get(body, "description");
  json_t *doc = json_pack("{s:s, s:O, s:o, s:O, s:O, s:s, s:b, s:b, s:s, s:n}", "type",
                          "PlanScript", "name", json_object_get(body, "name"), "description",
                          json_is_string(desc) ? json_incref(desc) : json_string(""), "planType",
                          pt, "content", content, "customAttributes", ca, "hpProvided", hp,
                          "readOnly", ro, "status", "OK", "state");
  free(ca);
  return doc;
}

/* ---- build plans ---------------------------------------------------------------- */
static int parse_serial(json_t *v, long *out) {
  char buf[32];
  const char *s = NULL;
  if (json_is_integer(v)) {
    snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    s = buf;
  } else {
    s = json_string_value(v);
  }
  if (!s || !*s || strlen(s) > 9) return -1;
  long n = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    n = n * 10 + (*p - '0');
  }
  if (n < 1) return -1;
  *out = n;
  return 0;
}

struct step {
  long serial;
  json_t *doc;
};

static int by_serial(const void *a, const void *b) {
  const struct step *x = a, *y = b;
  return x->serial < y->serial ? -1 : x->serial > y->serial;
}

static json_t *normalize_steps(struct store_txn *t, json_t *steps, struct err *e) {
  if (!steps || json_is_null(steps)) return json_array();
  if (!json_is_array(steps)) {
    err_set(e, 400, "INVALID_BUILD_STEP", "build plan: \"buildStep\" must be an array");
    return NULL;
  }
  size_t n = json_array_size(steps);
  if (n > 1000) {
    err_set(e, 400, "INVALID_BUILD_STEP", "build plan: more than 1000 build steps");
    return NULL;
  }
  struct step *v = calloc(n ? n : 1, sizeof *v);
  json_t *out = NULL;
  size_t i;
  json_t *st;
  if (!v) goto oom;
  json_array_foreach(steps, i, st) {
    if (!json_is_object(st)) {
      err_set(e, 400, "INVALID_BUILD_STEP", "build plan: buildStep[%zu] must be an object", i);
      goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(st, key, val) {
      if (strcmp(key, "serialNumber") && strcmp(key, "planScriptUri") &&
          strcmp(key, "planScriptName") && strcmp(key, "parameters")) {
        err_set(e, 400, "UNKNOWN_FIELD", "build plan: unknown field \"%.100s\" in buildStep[%zu]",
                key, i);
        goto fail;
      }
    }
    json_t *sn = json_object_get(st, "serialNumber");
    long serial = (long)i + 1;
    if (sn && !json_is_null(sn) && parse_serial(sn, &serial) < 0) {
      err_set(e, 400, "INVALID_BUILD_STEP",
              "build plan: buildStep[%zu].serialNumber must be a positive integer (as a string)",
              i);
      goto fail;
    }
    for (size_t j = 0; j < i; j++)
      if (v[j].serial == serial) {
        err_set(e, 400, "INVALID_BUILD_STEP", "build plan: serialNumber %ld is used twice", serial);
        goto fail;
      }
    json_t *params = json_object_get(st, "parameters");
    if (params && !json_is_null(params) && !json_is_string(params)) {
      err_set(e, 400, "INVALID_BUILD_STEP",
              "build plan: buildStep[%zu].parameters must be a string or null", i);
      goto fail;
    }
    /* The plan script: by URI, else by name. */
    const char *uri = json_string_value(json_object_get(st, "planScriptUri"));
    const char *psname = json_string_value(json_object_get(st, "planScriptName"));
    struct store_entry *ps = NULL;
    if (uri) {
      const char *id = artifact_uri_id(uri, COLLS[0]);
      ps = id ? store_txn_get(t, COLLS[0], id) : NULL;
      if (!ps) {
        err_set(e, 400, "PLAN_SCRIPT_NOT_FOUND",
                "build plan: buildStep[%zu] refers to plan script \"%.300s\", which does not exist",
                i, uri);
        goto fail;
      }
    } else if (psname) {
      ps = store_get_by_name(store_txn_store(t), COLLS[0], psname);
    }
    if (!ps) {
      err_set(e, 400, "INVALID_BUILD_STEP", "build plan: buildStep[%zu] needs a planScriptUri", i);
      goto fail;
    }
    char sbuf[24];
    snprintf(sbuf, sizeof sbuf, "%ld", serial);
    v[i].serial = serial;
    v[i].doc =
        json_pack("{s:s, s:O, s:O, s:O}", "serialNumber", sbuf, "planScriptUri",
                  json_object_get(ps->doc, "uri"), "planScriptName",
                  json_object_get(ps->doc, "name"), "parameters", params ? params : json_null());
    store_entry_release(ps);
    if (!v[i].doc) goto oom;
  }
  qsort(v, n, sizeof *v, by_serial);
  out = json_array();
  for (i = 0; i < n; i++)
    json_array_append(out, v[i].doc);
  goto done;
oom:
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
fail:
  out = NULL;
done:
  for (i = 0; v && i < n; i++)
    json_decref(v[i].doc);
  free(v);
  return out;
}

/* Validate and normalize a declaration array; keep only the keys of `kind`. */
/* from_bundle: a value that does not satisfy its constraints is kept (the
 * appliance exported it so); the declarations themselves are still checked. */
static json_t *normalize_decls(json_t *in, int with_ui, int from_bundle, const char *what,
                               struct err *e) {
  if (!in || json_is_null(in)) return json_array();
  if (!json_is_array(in)) {
    err_set(e, 400, "INVALID_ATTRIBUTES", "%s: \"customAttributes\" must be an array", what);
    return NULL;
  }
  if (json_array_size(in) > 1000) {
    err_set(e, 400, "INVALID_ATTRIBUTES", "%s: more than 1000 custom attributes", what);
    return NULL;
  }
  json_t *out = json_array();
  json_t *violations = json_array();
  size_t i;
  json_t *d;
  json_array_foreach(in, i, d) {
    json_t *c = json_deep_copy(d);
    if (attr_decl_normalize(c) < 0) {
      char msg[128];
      snprintf(msg, sizeof msg, "customAttributes[%zu] must be an object", i);
      json_array_append_new(
          violations, err_object("INVALID_ATTRIBUTE", msg, "Correct the attribute and retry."));
      json_decref(c);
      continue;
    }
    if (from_bundle) {
      json_t *nv = json_copy(c);
      json_object_del(nv, "value");
      attr_decl_check(nv, violations);
      json_decref(nv);
    } else {
      attr_decl_check(c, violations);
    }
    const char *name = json_string_value(json_object_get(c, "name"));
    size_t j;
    json_t *o;
    json_array_foreach(out, j, o) {
      if (name && util_strcaseeq(name, json_string_value(json_object_get(o, "name")))) {
        char msg[400];
        snprintf(msg, sizeof msg, "attribute \"%.200s\" is declared twice", name);
        json_array_append_new(violations,
                              err_object("INVALID_ATTRIBUTE", msg, "Declare each attribute once."));
        break;
      }
    }
    json_t *keep = json_pack(
        "{s:O?, s:O?, s:O?, s:O?, s:O?}", "name", json_object_get(c, "name"), "value",
        json_object_get(c, "value"), "type", json_object_get(c, "type"), "constraints",
        json_object_get(c, "constraints"), "description", json_object_get(c, "description"));
    if (!json_is_string(json_object_get(keep, "description"))) /* absent or null */
      json_object_set_new(keep, "description", json_string(""));
    if (with_ui) {
      const char *key[] = {"id", "visible", "editable"};
      for (int k = 0; k < 3; k++)
        if (json_object_get(c, key[k])) json_object_set(keep, key[k], json_object_get(c, key[k]));
    }
    json_array_append_new(out, keep);
    json_decref(c);
  }
  if (json_array_size(violations) > 0) {
    err_set(e, 400, "INVALID_ATTRIBUTES", "%s: %zu custom attribute problem(s): %s", what,
            json_array_size(violations),
            json_string_value(json_object_get(json_array_get(violations, 0), "message")));
    e->nested = violations;
    json_decref(out);
    return NULL;
  }
  json_decref(violations);
  return out;
}

static json_t *find_by_name(json_t *arr, const char *name);

/* A password sent back masked ("") keeps the stored value, as long as both the
 * stored and the new declaration are passwords (a retyped attribute must not
 * reveal the old secret). */
static void keep_masked_password(json_t *a, const char *new_type, json_t *prev) {
  const char *n = json_string_value(json_object_get(a, "name"));
  json_t *old = prev ? find_by_name(json_object_get(prev, "customAttributes"), n) : NULL;
  const char *v = json_string_value(json_object_get(a, "value"));
  if (old && util_strcaseeq(json_string_value(json_object_get(old, "type")), "password") &&
      util_strcaseeq(new_type, "password") && (!v || !*v))
    json_object_set(a, "value", json_object_get(old, "value"));
}

static json_t *normalize_build_plan(struct store_txn *t, json_t *body, json_t *prev,
                                    int from_bundle, struct err *e) {
  const char *what = "build plan";
  if (artifact_check_name(what, json_object_get(body, "name"), e) < 0 ||
      opt_string(body, "description", 65536, what, e) < 0)
    return NULL;
  json_t *bt = json_object_get(body, "oeBuildPlanType");
  const char *bts = json_string_value(bt);
  if (!bts || (strcasecmp(bts, "deploy") && strcasecmp(bts, "capture"))) {
    err_set(e, 400, "INVALID_BUILD_PLAN_TYPE",
            "build plan: \"oeBuildPlanType\" is required and must be deploy or capture");
    return NULL;
  }
  int hp = get_bool(body, "hpProvided", 0, what, e);
  int ro = hp < 0 ? -1 : get_bool(body, "readOnly", 0, what, e);
  if (ro < 0) return NULL;
  json_t *steps = normalize_steps(t, json_object_get(body, "buildStep"), e);
  if (!steps) return NULL;
  json_t *decls =
      normalize_decls(json_object_get(body, "customAttributes"), 0, from_bundle, what, e);
  if (!decls) {
    json_decref(steps);
    return NULL;
  }
  size_t i;
  json_t *a;
  json_array_foreach(decls, i, a) {
    keep_masked_password(a, json_string_value(json_object_get(a, "type")), prev);
  }
  json_t *desc = json_object_get(body, "description");
  return json_pack("{s:s, s:O, s:o, s:O, s:o, s:o, s:b, s:b, s:s, s:n}", "type", "OeBuildPlan",
                   "name", json_object_get(body, "name"), "description",
                   json_is_string(desc) ? json_incref(desc) : json_string(""), "oeBuildPlanType",
                   bt, "buildStep", steps, "customAttributes", decls, "hpProvided", hp, "readOnly",
                   ro, "status", "OK", "state");
}

/* ---- deployment plans ----------------------------------------------------------- */
/* Attributes derived from every plan script of a build plan, concatenated. */
static json_t *derived_of_build_plan(struct store_txn *t, json_t *bp) {
  json_t *all = json_array();
  size_t i, j;
  json_t *st, *a;
  json_array_foreach(json_object_get(bp, "buildStep"), i, st) {
    const char *id =
        artifact_uri_id(json_string_value(json_object_get(st, "planScriptUri")), COLLS[0]);
    struct store_entry *ps = id ? store_txn_get(t, COLLS[0], id) : NULL;
    if (!ps) continue;
    json_t *d = attr_derive(json_string_value(json_object_get(ps->doc, "content")));
    json_array_foreach(d, j, a) { json_array_append(all, a); }
    json_decref(d);
    store_entry_release(ps);
  }
  return all;
}

static json_t *find_by_name(json_t *arr, const char *name) {
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    if (util_strcaseeq(json_string_value(json_object_get(a, "name")), name)) return a;
  }
  return NULL;
}

/* Do the scripts use "n.sub" tokens, making n a NIC attribute? */
static int derived_nic(json_t *derived, const char *n) {
  size_t i, len = n ? strlen(n) : 0;
  json_t *a;
  json_array_foreach(derived, i, a) {
    const char *d = json_string_value(json_object_get(a, "name"));
    if (d && len && strncasecmp(d, n, len) == 0 && d[len] == '.') return 1;
  }
  return 0;
}

/* The merged attributes in the order of `raw` (a bundle's own list), with
 * its values as they are (null or ""), the rest after them. Consumes merged. */
static json_t *in_given_order(json_t *merged, json_t *raw) {
  json_t *out = json_array();
  size_t i;
  json_t *a;
  json_array_foreach(raw, i, a) {
    json_t *m = find_by_name(merged, json_string_value(json_object_get(a, "name")));
    if (m && !json_object_get(m, "__placed")) {
      json_array_append(out, m);
      json_object_set_new(m, "__placed", json_true());
      json_t *v = json_object_get(a, "value");
      if (v && (json_is_null(v) || json_is_string(v))) json_object_set(m, "value", v);
      json_t *d = json_object_get(a, "description");
      if (json_is_string(d)) json_object_set(m, "description", d);
      json_t *nv = json_object_get(m, "nicValues");
      if (!json_object_get(a, "nicValues") && json_is_object(nv) && !json_object_size(nv))
        json_object_del(m, "nicValues");
    }
  }
  json_array_foreach(merged, i, a) {
    if (!json_object_get(a, "__placed")) json_array_append(out, a);
  }
  json_array_foreach(out, i, a) { json_object_del(a, "__placed"); }
  json_decref(merged);
  return out;
}

static json_t *normalize_deployment_plan(struct store_txn *t, json_t *body, json_t *prev,
                                         int from_bundle, struct err *e) {
  const char *what = "deployment plan";
  if (artifact_check_name(what, json_object_get(body, "name"), e) < 0 ||
      opt_string(body, "description", 65536, what, e) < 0 ||
      opt_string(body, "goldenImageURI", 1024, what, e) < 0)
    return NULL;
  int hp = get_bool(body, "hpProvided", 0, what, e);
  int ro = hp < 0 ? -1 : get_bool(body, "readOnly", 0, what, e);
  if (ro < 0) return NULL;
  /* The build plan: URI, bare id, or (as bundles write it) its name. */
  const char *bpref = json_string_value(json_object_get(body, "oeBuildPlanURI"));
  if (!bpref || !*bpref) {
    err_set(e, 400, "INVALID_BUILD_PLAN_URI",
            "deployment plan: \"oeBuildPlanURI\" is required (the URI of an OS build plan)");
    return NULL;
  }
  const char *bpid = artifact_uri_id(bpref, COLLS[1]);
  struct store_entry *bp = bpid ? store_txn_get(t, COLLS[1], bpid) : NULL;
  if (!bp && strncmp(bpref, "/rest/", 6) != 0)
    bp = store_get_by_name(store_txn_store(t), COLLS[1], bpref);
  if (!bp) {
    err_set(e, 400, "BUILD_PLAN_NOT_FOUND", "deployment plan: build plan \"%.300s\" does not exist",
            bpref);
    return NULL;
  }
  /* The golden image, when given, must exist and not be being deleted: its
   * URI, bare id, or (as bundles write it) its name. Stored as its URI. */
  const char *gi = json_string_value(json_object_get(body, "goldenImageURI"));
  json_t *giuri = NULL;
  if (gi && *gi) {
    struct store_entry *g = golden_lookup(t, gi);
    if (!g || golden_is_deleting(g->doc)) {
      if (g)
        err_set(e, 409, "GOLDEN_IMAGE_DELETING",
                "deployment plan: golden image \"%.300s\" is being deleted", gi);
      else
        err_set(e, 400, "GOLDEN_IMAGE_NOT_FOUND",
                "deployment plan: golden image \"%.300s\" does not exist", gi);
      store_entry_release(g);
      store_entry_release(bp);
      return NULL;
    }
    giuri = json_incref(json_object_get(g->doc, "uri"));
    store_entry_release(g);
  }
  json_t *given =
      normalize_decls(json_object_get(body, "customAttributes"), 1, from_bundle, what, e);
  if (!given) {
    json_decref(giuri);
    store_entry_release(bp);
    return NULL;
  }
  json_t *derived = derived_of_build_plan(t, bp->doc);
  json_t *bpdecls = json_object_get(bp->doc, "customAttributes");
  json_t *violations = json_array();
  size_t i;
  json_t *a;
  /* Every attribute the plan sets must be one the build plan knows. */
  json_array_foreach(given, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    if (!find_by_name(bpdecls, n) && !find_by_name(derived, n) && !derived_nic(derived, n)) {
      char msg[600];
      snprintf(msg, sizeof msg,
               "attribute \"%.200s\" is not declared by build plan \"%.150s\" or its plan scripts",
               n, json_string_value(json_object_get(bp->doc, "name")));
      json_array_append_new(violations,
                            err_object("UNKNOWN_ATTRIBUTE", msg,
                                       "Remove the attribute or declare it in the build plan."));
    }
    /* The type the merge will give it: the build plan's, else the plan's own. */
    json_t *bpd = find_by_name(bpdecls, n);
    keep_masked_password(a, json_string_value(json_object_get(bpd ? bpd : a, "type")), prev);
  }
  json_t *merged = attr_merge(derived, bpdecls, given, NULL);
  json_decref(derived);
  /* Values that are set must satisfy their constraints. */
  json_array_foreach(merged, i, a) {
    const char *v = json_string_value(json_object_get(a, "value"));
    /* (Values of a bundle are the appliance's: kept as they are.) */
    if (v && *v && !from_bundle &&
        !util_strcaseeq(json_string_value(json_object_get(a, "type")), "nic"))
      attr_value_check(a, v, NULL, violations);
    /* Stable ids: keep the given one, else the previous revision's, else new. */
    json_t *g = find_by_name(given, json_string_value(json_object_get(a, "name")));
    const char *id = json_string_value(json_object_get(g, "id"));
    if (id && strlen(id) == 36)
      json_object_set_new(a, "id", json_string(id));
    else {
      json_t *old = prev ? find_by_name(json_object_get(prev, "customAttributes"),
                                        json_string_value(json_object_get(a, "name")))
                         : NULL;
      const char *oid = json_string_value(json_object_get(old, "id"));
      char nid[37];
      if (!oid) util_uuid(nid);
      json_object_set_new(a, "id", json_string(oid ? oid : nid));
    }
  }
  if (from_bundle) merged = in_given_order(merged, json_object_get(body, "customAttributes"));
  json_decref(given);
  if (json_array_size(violations) > 0) {
    err_set(e, 400, "INVALID_ATTRIBUTES", "deployment plan: %zu custom attribute problem(s): %s",
            json_array_size(violations),
            json_string_value(json_object_get(json_array_get(violations, 0), "message")));
    e->nested = violations;
    json_decref(merged);
    json_decref(giuri);
    store_entry_release(bp);
    return NULL;
  }
  json_decref(violations);
  json_t *desc = json_object_get(body, "description");
  json_t *doc = json_pack("{s:s, s:O, s:o, s:O, s:o, s:o, s:b, s:b, s:b, s:s, s:n}", "type",
                          "OEDeploymentPlan", "name", json_object_get(body, "name"), "description",
                          json_is_string(desc) ? json_incref(desc) : json_string(""),
                          "oeBuildPlanURI", json_object_get(bp->doc, "uri"), "goldenImageURI",
                          giuri ? giuri : json_string(""), "customAttributes", merged, "hpProvided",
                          hp, "readOnly", ro, "importMetadata", 0, "status", "OK", "state");
  store_entry_release(bp);
  return doc;
}

/* ---- create / update / delete ---------------------------------------------------------- */
static json_t *normalize(struct store_txn *t, enum artifact_kind k, json_t *body, json_t *prev,
                         int from_bundle, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "the request body must be a JSON object describing a %s",
            TYPES[k]);
    return NULL;
  }
  if (check_type(k, body, e) < 0 || check_keys(k, body, e) < 0) return NULL;
  switch (k) {
  case ART_PLAN_SCRIPT: return normalize_plan_script(body, e);
  case ART_BUILD_PLAN: return normalize_build_plan(t, body, prev, from_bundle, e);
  case ART_DEPLOYMENT_PLAN: return normalize_deployment_plan(t, body, prev, from_bundle, e);
  }
  return NULL;
}

static void set_identity(enum artifact_kind k, json_t *doc, const char *id) {
  char *uri = util_strdup_printf("/rest/%s/%s", COLLS[k], id);
  json_object_set_new(doc, "id", json_string(id));
  if (k == ART_BUILD_PLAN) json_object_set_new(doc, "buildPlanid", json_string(id));
  json_object_set_new(doc, "uri", json_string(uri));
  json_object_set_new(doc, "category", json_string(COLLS[k]));
  free(uri);
}

/* After `doc` (kind k) changed from `old` (NULL on create; doc NULL on
 * delete), refresh the dependentArtifacts of everything that changed users. */
static int after_change(struct store_txn *t, enum artifact_kind k, const char *id, json_t *old,
                        json_t *doc, struct err *e) {
  if (k == ART_PLAN_SCRIPT) {
    if (old && doc && !json_equal(json_object_get(old, "name"), json_object_get(doc, "name")))
      return rename_in_steps(t, id, json_string_value(json_object_get(doc, "name")), e);
    return 0;
  }
  if (k == ART_BUILD_PLAN) {
    json_t *both[2] = {old, doc};
    for (int b = 0; b < 2; b++) {
      size_t i;
      json_t *st;
      json_array_foreach(json_object_get(both[b], "buildStep"), i, st) {
        const char *pid =
            artifact_uri_id(json_string_value(json_object_get(st, "planScriptUri")), COLLS[0]);
        if (pid && refresh_deps(t, ART_PLAN_SCRIPT, pid, e) < 0) return -1;
      }
    }
    return doc ? refresh_deps(t, ART_BUILD_PLAN, id, e) : 0;
  }
  json_t *both[2] = {old, doc};
  for (int b = 0; b < 2; b++) {
    const char *bid =
        artifact_uri_id(json_string_value(json_object_get(both[b], "oeBuildPlanURI")), COLLS[1]);
    if (bid && refresh_deps(t, ART_BUILD_PLAN, bid, e) < 0) return -1;
    const char *gid =
        artifact_uri_id(json_string_value(json_object_get(both[b], "goldenImageURI")), GOLDEN_COLL);
    if (gid && *gid && golden_refresh_deps(t, gid, e) < 0) return -1;
  }
  return 0;
}

int artifact_check_if_match(json_t *doc, const char *if_match, struct err *e) {
  return util_check_if_match(json_string_value(json_object_get(doc, "eTag")), if_match, e);
}

static int finish(struct store_txn *t, struct store *s, enum artifact_kind k, const char *id,
                  struct store_entry **out, struct err *e) {
  if (store_commit(t, e) < 0) return -1;
  if (out) *out = store_get(s, COLLS[k], id);
  return 0;
}

int artifact_txn_put(struct store_txn *t, enum artifact_kind k, const char *id, json_t *body,
                     int flags, struct err *e) {
  struct store_entry *old = store_txn_get(t, COLLS[k], id);
  int rc = -1;
  json_t *doc = NULL;
  if (old && !(flags & ARTIFACT_REPLACE)) {
    err_set(e, 409, "RESOURCE_EXISTS", "%s id %s already exists", TYPES[k], id);
    goto out;
  }
  doc = normalize(t, k, body, old ? old->doc : NULL, flags & ARTIFACT_FROM_BUNDLE, e);
  if (!doc) goto out;
  set_identity(k, doc, id);
  if (old)
    json_object_set(doc, "dependentArtifacts", json_object_get(old->doc, "dependentArtifacts"));
  else
    json_object_set_new(doc, "dependentArtifacts", json_array());
  rc = store_put(t, COLLS[k], id, json_string_value(json_object_get(doc, "name")), doc, e);
  if (rc == 0) rc = after_change(t, k, id, old ? old->doc : NULL, doc, e);
out:
  json_decref(doc);
  store_entry_release(old);
  return rc;
}

int artifact_create(struct store *s, enum artifact_kind k, json_t *body, struct store_entry **out,
                    struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  char id[37];
  util_uuid(id);
  if (artifact_txn_put(t, k, id, body, 0, e) < 0) {
    store_rollback(t);
    return -1;
  }
  return finish(t, s, k, id, out, e);
}

static struct store_entry *get_existing(struct store_txn *t, enum artifact_kind k, const char *id,
                                        struct err *e) {
  struct store_entry *en = store_txn_get(t, COLLS[k], id);
  if (!en) err_set(e, 404, "RESOURCE_NOT_FOUND", "%s \"%.100s\" does not exist", TYPES[k], id);
  return en;
}

int artifact_update(struct store *s, enum artifact_kind k, const char *id, json_t *body,
                    const char *if_match, struct store_entry **out, struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = get_existing(t, k, id, e);
  json_t *doc = NULL;
  int rc = -1;
  if (!old || artifact_check_if_match(old->doc, if_match, e) < 0) goto out;
  if (is_read_only(old->doc)) {
    err_set(e, 409, "ARTIFACT_READ_ONLY", "%s \"%s\" is read-only and cannot be changed", TYPES[k],
            old->name);
    err_action(e, "Copy it under a new name and change the copy.");
    goto out;
  }
  const char *bid = json_string_value(json_object_get(body, "id"));
  if (k == ART_BUILD_PLAN && !bid) bid = json_string_value(json_object_get(body, "buildPlanid"));
  if (bid && *bid && strcmp(bid, id) != 0) {
    err_set(e, 400, "ID_MISMATCH", "the body's id \"%.100s\" does not match the URI's \"%s\"", bid,
            id);
    goto out;
  }
  doc = normalize(t, k, body, old->doc, 0, e);
  if (!doc) goto out;
  set_identity(k, doc, id);
  json_object_set(doc, "dependentArtifacts", json_object_get(old->doc, "dependentArtifacts"));
  rc = store_put(t, COLLS[k], id, json_string_value(json_object_get(doc, "name")), doc, e);
  if (rc == 0) rc = after_change(t, k, id, old->doc, doc, e);
out:
  json_decref(doc);
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return finish(t, s, k, id, out, e);
}

int artifact_delete(struct store *s, enum artifact_kind k, const char *id, const char *if_match,
                    struct err *e) {
  struct store_txn *t = store_begin(s);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  struct store_entry *old = get_existing(t, k, id, e);
  int rc = -1;
  if (!old || artifact_check_if_match(old->doc, if_match, e) < 0) goto out;
  if (is_read_only(old->doc)) {
    err_set(e, 409, "ARTIFACT_READ_ONLY", "%s \"%s\" is read-only and cannot be deleted", TYPES[k],
            old->name);
    goto out;
  }
  json_t *users = users_of(t, NULL, k, id);
  if (users && json_array_size(users) > 0) {
    char names[1024];
    artifact_names_list(users, names, sizeof names);
    static const char *const user_kind[] = {"build plan(s)", "deployment plan(s)",
                                            "server profile(s)"};
    err_set(e, 409, "RESOURCE_IN_USE", "%s \"%s\" is used by %s %s", TYPES[k], old->name,
            user_kind[k], names);
    err_action(e, "Remove it from the resources that use it first.");
    json_decref(users);
    goto out;
  }
  json_decref(users);
  rc = store_delete(t, COLLS[k], id, e);
  if (rc == 0) rc = after_change(t, k, id, old->doc, NULL, e);
out:
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

/* ---- differences, used-by ------------------------------------------------------------ */
json_t *artifact_differences(struct store *s, const char *id, const char *content, struct err *e) {
  struct store_entry *en = store_get(s, COLLS[0], id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "PlanScript \"%.100s\" does not exist", id);
    return NULL;
  }
  const char *old_content = json_string_value(json_object_get(en->doc, "content"));
  if (!content) content = old_content;
  json_t *a = attr_derive(old_content), *b = attr_derive(content);
  json_t *added = json_array(), *removed = json_array(), *changed = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(b, i, x) {
    const char *n = json_string_value(json_object_get(x, "name"));
    json_t *o = find_by_name(a, n);
    if (!o)
      json_array_append_new(added, json_string(n));
    else if (!json_equal(json_object_get(o, "value"), json_object_get(x, "value")))
      json_array_append_new(changed, json_string(n));
  }
  json_array_foreach(a, i, x) {
    const char *n = json_string_value(json_object_get(x, "name"));
    if (!find_by_name(b, n)) json_array_append_new(removed, json_string(n));
  }
  json_t *out =
      json_pack("{s:o, s:o, s:b, s:o}", "caAdded", added, "caRemoved", removed, "contentChanged",
                strcmp(content, old_content) != 0, "defaultValueChanged", changed);
  json_decref(a);
  json_decref(b);
  store_entry_release(en);
  return out;
}

json_t *artifact_used_by(struct store *s, enum artifact_kind k, const char *id, int readonly_only,
                         struct err *e) {
  struct store_entry *en = store_get(s, COLLS[k], id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "%s \"%.100s\" does not exist", TYPES[k], id);
    return NULL;
  }
  store_entry_release(en);
  json_t *users = users_of(NULL, s, k, id);
  if (!users) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *u;
  json_array_foreach(users, i, u) {
    if (readonly_only && !is_read_only(u)) continue;
    json_t *c = json_deep_copy(u);
    json_t *ca = json_object_get(c, "customAttributes");
    if (json_is_array(ca)) attr_mask_passwords(ca);
    json_array_append_new(out, c);
  }
  json_decref(users);
  return out;
}
