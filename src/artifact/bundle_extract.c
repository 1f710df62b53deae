/* bundle_extract.c — extraction and restore of a vetted bundle, all or
 * nothing: decide per artifact (create, reuse an identical one, rename,
 * replace, or conflict) with ids preserved where free and references
 * remapped; stream the golden payloads into new golden volumes (no temp file); then one
 * store transaction for every document (decisions checked again inside it).
 * Any failure removes the imported volumes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "artifact/artifact_int.h"
#include "artifact/bundle_int.h"
#include "vol/image.h"

static const char *const COLL[] = {"plan-scripts", "build-plans", "deployment-plans", GOLDEN_COLL};
static const char *const TYPE[] = {"PlanScript", "OeBuildPlan", "OEDeploymentPlan", "GoldenImage"};
static const char *const WHAT[] = {"plan script", "build plan", "deployment plan", "golden image"};

enum action { A_CREATE, A_REUSE, A_RENAME, A_REPLACE };

struct item {
  int kind;
  size_t idx;       /* in b->docs[kind] */
  json_t *doc;      /* borrowed from the bundle */
  const char *name; /* in the bundle */
  char *final;      /* name it gets */
  char id[65];      /* id it gets (or the reused / replaced one) */
  enum action action;
  int read_only;
  int imported; /* golden: a volume was imported for it */
  struct image_info info;
};

struct plan {
  struct bundle_read *b;
  struct item *it[4]; /* per kind, b->docs[kind] order */
  size_t n[4];
  json_t *conflicts;
  int restore;
};

static void plan_free(struct plan *p) {
  for (int k = 0; k < 4; k++) {
    for (size_t i = 0; i < p->n[k]; i++)
      free(p->it[k][i].final);
    free(p->it[k]);
    p->it[k] = NULL;
    p->n[k] = 0;
  }
  json_decref(p->conflicts);
  p->conflicts = NULL;
}

static const char *sv(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* null, absent and "" are the same; strings equal; else json_equal. */
static int loose_eq(json_t *a, json_t *b) {
  int ea = !a || json_is_null(a) || (json_is_string(a) && !json_string_length(a));
  int eb = !b || json_is_null(b) || (json_is_string(b) && !json_string_length(b));
  if (ea || eb) return ea && eb;
  if (json_is_string(a) && json_is_string(b))
    return strcmp(json_string_value(a), json_string_value(b)) == 0;
  return json_equal(a, b);
}

static int constraints_eq(json_t *a, json_t *b) {
  if (loose_eq(a, b)) return 1;
  if (!json_is_string(a) || !json_is_string(b)) return 0;
  json_t *x = json_loads(json_string_value(a), 0, NULL),
         *y = json_loads(json_string_value(b), 0, NULL);
  int eq = x && y && json_equal(x, y);
  json_decref(x);
  json_decref(y);
  return eq;
}

/* Attribute lists equal, element by element, on every key but "id". */
static int attrs_eq(json_t *a, json_t *b) {
  size_t na = json_array_size(a), nb = json_array_size(b);
  if (na != nb) return 0;
  for (size_t i = 0; i < na; i++) {
    json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
    const char *keys[] = {"name", "value", "type", "description", "visible", "editable"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      json_t *vx = json_object_get(x, keys[k]), *vy = json_object_get(y, keys[k]);
      if (k == 0 || k == 2) {
        if (!util_strcaseeq(json_string_value(vx), json_string_value(vy))) return 0;
      } else if ((k == 4 || k == 5) && (!vx || !vy)) {
        continue;
      } else if (!loose_eq(vx, vy)) {
        return 0;
      }
    }
    if (!constraints_eq(json_object_get(x, "constraints"), json_object_get(y, "constraints")))
      return 0;
  }
  return 1;
}

static struct item *find_item(struct plan *p, int k, long idx) {
  return idx >= 0 && (size_t)idx < p->n[k] ? &p->it[k][idx] : NULL;
}

/* Index of the bundle doc of kind k that ref (name, id or /rest URI) names. */
static long bundle_ref(struct bundle_read *b, int k, const char *ref) {
  if (!ref || !*ref) return -1;
  const char *id = artifact_uri_id(ref, COLL[k]);
  size_t i;
  json_t *d;
  json_array_foreach(b->docs[k], i, d) {
    const char *did = sv(d, k == 1 ? "buildPlanid" : "id");
    if (!did && k == 1) did = sv(d, "id");
    if (strncmp(ref, "/rest/", 6) == 0) {
      if (id && did && strcmp(id, did) == 0) return (long)i;
    } else if (strcmp(sv(d, "name"), ref) == 0) {
      return (long)i;
    }
  }
  if (strncmp(ref, "/rest/", 6) != 0) {
    json_array_foreach(b->docs[k], i, d) {
      const char *did = sv(d, k == 1 ? "buildPlanid" : "id");
      if (!did && k == 1) did = sv(d, "id");
      if (did && strcmp(did, ref) == 0) return (long)i;
    }
  }
  return -1;
}

/* Is the existing doc the same artifact as bundle item `it` (with its references mapped)? */
static int same(struct plan *p, struct item *it, json_t *ex) {
  json_t *d = it->doc;
  switch (it->kind) {
  case 0:
    return util_strcaseeq(sv(d, "planType"), sv(ex, "planType")) &&
           loose_eq(json_object_get(d, "content"), json_object_get(ex, "content")) &&
           loose_eq(json_object_get(d, "description"), json_object_get(ex, "description"));
  case 1: {
    if (!util_strcaseeq(sv(d, "oeBuildPlanType"), sv(ex, "oeBuildPlanType"))) return 0;
    json_t *sa = json_object_get(d, "buildStep"), *sb = json_object_get(ex, "buildStep");
    if (json_array_size(sa) != json_array_size(sb)) return 0;
    /* Bundle steps in serial order against the stored (sorted) steps. */
    size_t n = json_array_size(sa);
    for (size_t i = 0; i < n; i++) {
      json_t *st = NULL;
      for (size_t j = 0; j < n && !st; j++) {
        json_t *c = json_array_get(sa, j);
        json_t *sn = json_object_get(c, "serialNumber");
        long s = json_is_integer(sn)  ? (long)json_integer_value(sn)
                 : json_is_string(sn) ? atol(json_string_value(sn))
                                      : (long)j + 1;
        if (s == (long)i + 1) st = c;
      }
      if (!st) st = json_array_get(sa, i);
      struct item *ps = find_item(p, 0, bundle_ref(p->b, 0, sv(st, "planScriptUri")));
      const char *eid = artifact_uri_id(sv(json_array_get(sb, i), "planScriptUri"), COLL[0]);
      if (!ps || !eid || strcmp(ps->id, eid) != 0) return 0;
    }
    return attrs_eq(json_object_get(d, "customAttributes"),
                    json_object_get(ex, "customAttributes"));
  }
  case 2: {
    struct item *bp = find_item(p, 1, bundle_ref(p->b, 1, sv(d, "oeBuildPlanURI")));
    const char *ebp = artifact_uri_id(sv(ex, "oeBuildPlanURI"), COLL[1]);
    if (!bp || !ebp || strcmp(bp->id, ebp) != 0) return 0;
    struct item *gi = find_item(p, 3, bundle_ref(p->b, 3, sv(d, "goldenImageURI")));
    const char *egi = artifact_uri_id(sv(ex, "goldenImageURI"), COLL[3]);
    if (gi ? !egi || strcmp(gi->id, egi) != 0 : egi && *egi) return 0;
    return attrs_eq(json_object_get(d, "customAttributes"),
                    json_object_get(ex, "customAttributes"));
  }
  default: {
    uint64_t size = p->b->gi_size[it->idx];
    return size && json_integer_value(json_object_get(ex, "size")) == (json_int_t)size &&
           (uint32_t)json_integer_value(json_object_get(ex, "crc32")) == p->b->gi_crc[it->idx];
  }
  }
  return 0;
}

static int planned_name(struct plan *p, int k, const char *name, struct item *self) {
  for (size_t i = 0; i < p->n[k]; i++) {
    struct item *o = &p->it[k][i];
    if (o != self && o->final && o->action != A_REUSE && strcmp(o->final, name) == 0) return 1;
  }
  return 0;
}

static int planned_id(struct plan *p, int k, const char *id, struct item *self) {
  for (size_t i = 0; i < p->n[k]; i++) {
    struct item *o = &p->it[k][i];
    if (o != self && o->final && strcmp(o->id, id) == 0) return 1;
  }
  return 0;
}

static void conflict(struct plan *p, struct item *it, struct store_entry *ex, const char *reason) {
  char *uri = util_strdup_printf("/rest/%s/%s", COLL[it->kind], ex ? ex->id : "");
  /* "message" too: clients print a nested error's message (HPE's error shape). */
  char *msg =
      util_strdup_printf("%s \"%s\": %s (existing: %s)", TYPE[it->kind], it->name, reason, uri);
  json_array_append_new(p->conflicts,
                        json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s}", "type", TYPE[it->kind],
                                  "name", it->name, "newName", it->final, "existingUri", uri,
                                  "reason", reason, "errorCode", "BUNDLE_CONFLICT", "message",
                                  msg ? msg : reason));
  free(msg);
  free(uri);
}

/* The explicit new name for (kind, name), or NULL. */
static const char *explicit_rename(json_t *renames, int k, const char *name) {
  size_t i;
  json_t *r;
  json_array_foreach(renames, i, r) {
    const char *t = sv(r, "type");
    int rk = -1;
    for (int j = 0; j < 4; j++)
      if (util_strcaseeq(t, TYPE[j])) rk = j;
    if (util_strcaseeq(t, "OeBuildPlanV5")) rk = 1;
    if (util_strcaseeq(t, "OEDeploymentPlanV5")) rk = 2;
    if (rk == k && util_strcaseeq(sv(r, "name"), name)) return sv(r, "newName");
  }
  return NULL;
}

static int check_renames(struct bundle_read *b, json_t *renames, struct err *e) {
  if (!renames || json_is_null(renames)) return 0;
  if (!json_is_array(renames)) {
    err_set(e, 400, "INVALID_FIELD", "\"renames\" must be an array of {type, name, newName}");
    return -1;
  }
  size_t i;
  json_t *r;
  json_array_foreach(renames, i, r) {
    const char *t = sv(r, "type"), *n = sv(r, "name");
    int rk = -1;
    for (int j = 0; j < 4; j++)
      if (util_strcaseeq(t, TYPE[j])) rk = j;
    if (util_strcaseeq(t, "OeBuildPlanV5")) rk = 1;
    if (util_strcaseeq(t, "OEDeploymentPlanV5")) rk = 2;
    if (rk < 0) {
      err_set(e, 400, "INVALID_FIELD",
              "renames[%zu]: \"type\" must be PlanScript, OeBuildPlan, OEDeploymentPlan or "
              "GoldenImage",
              i);
      return -1;
    }
    int found = 0;
    size_t j;
    json_t *d;
    json_array_foreach(b->docs[rk], j, d) {
      if (util_strcaseeq(sv(d, "name"), n)) found = 1;
    }
    if (!found) {
      err_set(e, 400, "INVALID_FIELD", "renames[%zu]: the bundle has no %s named \"%.200s\"", i,
              WHAT[rk], n ? n : "");
      return -1;
    }
    json_t *nn = json_object_get(r, "newName");
    if (artifact_check_name(WHAT[rk], nn, e) < 0) return -1;
  }
  return 0;
}

/* Decide every item against the store's committed state (stable while a
 * transaction is open: writers are serialized). */
static int decide(struct store *s, struct plan *p, const struct bundle_extract_opts *o,
                  struct vol_store *vs, struct err *e) {
  int ro_bundle = bundle_contents_read_only(p->b->contents);
  p->conflicts = json_array();
  static const int ORDER[] = {3, 0, 1, 2};
  for (int oi = 0; oi < 4; oi++) {
    int k = ORDER[oi];
    p->n[k] = json_array_size(p->b->docs[k]);
    p->it[k] = calloc(p->n[k] ? p->n[k] : 1, sizeof **p->it);
    if (!p->it[k]) {
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      return -1;
    }
    for (size_t i = 0; i < p->n[k]; i++) {
      struct item *it = &p->it[k][i];
      it->kind = k;
      it->idx = i;
      it->doc = json_array_get(p->b->docs[k], i);
      it->name = sv(it->doc, "name");
      it->read_only = ro_bundle || bundle_doc_read_only(it->doc);
      const char *bid = sv(it->doc, k == 1 ? "buildPlanid" : "id");
      if (!bid && k == 1) bid = sv(it->doc, "id");
      if (!bid) bid = ""; /* bundle_inspect refuses documents without an id */
      const char *want = p->restore ? NULL : explicit_rename(o ? o->renames : NULL, k, it->name);
      it->final = strdup(want ? want : it->name);
      it->action = A_CREATE;
      struct store_entry *byid = store_get(s, COLL[k], bid);
      if (p->restore) {
        /* Back under its own id; another artifact holding the name is a conflict. */
        snprintf(it->id, sizeof it->id, "%s", bid);
        struct store_entry *byname = store_get_by_name(s, COLL[k], it->final);
        if (byname && strcmp(byname->id, bid) != 0)
          conflict(p, it, byname, "another artifact has this name since the backup");
        else if (byid && (k != 3 || same(p, it, byid->doc)))
          it->action = k == 3 || same(p, it, byid->doc) ? A_REUSE : A_REPLACE;
        else if (byid)
          conflict(p, it, byid, "the golden image changed since the backup; it cannot be replaced");
        else if (k == 3 && vs && vol_golden_exists(vs, bid))
          conflict(p, it, NULL, "a golden volume with this id exists without its document");
        store_entry_release(byname);
        store_entry_release(byid);
        continue;
      }
      struct store_entry *ex = store_get_by_name(s, COLL[k], it->final);
      if (!ex && planned_name(p, k, it->final, it)) {
        /* Two artifacts of the bundle with one name: the first wins the name. */
        if (o && o->on_conflict == BUNDLE_RENAME) {
          it->action = A_RENAME;
        } else {
          conflict(p, it, NULL, "the bundle holds two artifacts of this name");
        }
      } else if (ex && same(p, it, ex->doc)) {
        it->action = A_REUSE;
        snprintf(it->id, sizeof it->id, "%s", ex->id);
      } else if (ex) {
        enum bundle_conflict how = o ? o->on_conflict : BUNDLE_STOP;
        if (how == BUNDLE_RENAME) {
          it->action = A_RENAME;
        } else if (how == BUNDLE_REPLACE) {
          if (k == 3)
            conflict(p, it, ex, "a golden image cannot be replaced in place; rename it instead");
          else if (bundle_doc_read_only(ex->doc))
            conflict(p, it, ex, "the existing artifact is read-only");
          else {
            it->action = A_REPLACE;
            snprintf(it->id, sizeof it->id, "%s", ex->id);
          }
        } else {
          conflict(p, it, ex, "an artifact of this name with different content exists");
        }
      }
      if (it->action == A_RENAME) {
        for (int n = 2;; n++) {
          char *cand = util_strdup_printf("%s (%d)", it->final, n);
          struct store_entry *t = store_get_by_name(s, COLL[k], cand);
          int taken = t || planned_name(p, k, cand, it);
          store_entry_release(t);
          if (!taken) {
            free(it->final);
            it->final = cand;
            break;
          }
          free(cand);
        }
        if (strlen(it->final) > 255) conflict(p, it, ex, "no free name of at most 255 bytes");
      }
      if (it->action == A_CREATE || it->action == A_RENAME) {
        /* The bundle's id where free, else a new one. */
        int taken =
            byid || planned_id(p, k, bid, it) || (k == 3 && vs && vol_golden_exists(vs, bid));
        if (taken)
          util_uuid(it->id);
        else
          snprintf(it->id, sizeof it->id, "%s", bid);
      }
      store_entry_release(ex);
      store_entry_release(byid);
    }
  }
  if (json_array_size(p->conflicts) > 0) {
    json_t *first = json_array_get(p->conflicts, 0);
    err_set(e, 409, "BUNDLE_CONFLICTS",
            "%zu artifact(s) of the bundle conflict with existing ones, e.g. %s \"%.200s\": %s",
            json_array_size(p->conflicts), sv(first, "type"), sv(first, "name"),
            sv(first, "reason"));
    err_action(e, p->restore ? "Rename or delete the artifacts named, then restore again."
                             : "Extract with forceImport=true (or onConflict=rename), "
                               "onConflict=replace, or explicit renames.");
    e->nested = p->conflicts;
    p->conflicts = NULL;
    return -1;
  }
  return 0;
}

/* ---- golden payloads ------------------------------------------------------------ *
 * A payload (the HPE zip of one raw image) goes from the bundle's member straight
 * into a streamed golden volume import (vol/image.h): no temp file; zero blocks stay
 * holes; the SHA-256 thread follows the writes on the other core. */
struct gprog {
  const struct bundle_ctx *c;
  int base, span;
  struct image_stream *st;
  uint64_t done, total;
  int last;
};

static void gi_progress(void *arg, uint64_t done, uint64_t total) {
  struct gprog *g = arg;
  if (!g->c->progress || !total) return;
  int pct = g->base + (int)((double)done / (double)total * g->span);
  if (pct == g->last) return;
  g->last = pct;
  g->c->progress(g->c->progress_arg, pct, NULL);
}

static int to_stream(void *arg, const void *p, size_t n, struct err *e) {
  struct gprog *g = arg;
  if (image_stream_write(g->st, p, n, e) < 0) return -1;
  g->done += n;
  gi_progress(g, g->done, g->total);
  return 0;
}

static int import_payload(const struct bundle_ctx *c, struct plan *p, struct item *it, int base,
                          int span, struct err *e) {
  size_t m = p->b->payload[it->idx];
  struct gprog g = {c, base, span * 9 / 10, NULL, 0, p->b->z.m[m].usize, -1};
  if (image_stream_open(c->volumes, it->id, IMAGE_HPE_ZIP, &g.st, e) < 0) return -1;
  struct bz_member *bm = &p->b->z.m[m];
  int sha1 = bm->deferred && strlen(bm->expect) == 40;
  int rc = bz_stream(&p->b->z, m, to_stream, &g, sha1, c->stop, e);
  if (rc == 0 && bm->deferred && bm->expect[0] &&
      strcmp(bm->expect, sha1 ? bm->sha1 : bm->sha256) != 0) {
    err_set(e, 400, "BUNDLE_CHECKSUM_MISMATCH",
            "the bundle member \"%.200s\" does not match its digest in the checksum file",
            bm->name);
    rc = -1;
  }
  if (rc == 0) rc = image_stream_commit(g.st, NULL, NULL, &it->info, e);
  if (rc == 0) it->imported = 1; /* committed: a later failure removes it */
  if (rc == 0 && !it->info.sha256[0]) {
    struct gprog h = {c, base + span * 9 / 10, span - span * 9 / 10, NULL, 0, 0, -1};
    rc = image_stream_sha256(g.st, c->stop, gi_progress, &h, it->info.sha256, e);
  }
  image_stream_close(g.st);
  if (rc < 0) {
    char msg[sizeof e->message + 256];
    snprintf(msg, sizeof msg, "golden image \"%.200s\" of the bundle: %s", it->name, e->message);
    snprintf(e->message, sizeof e->message, "%.1000s", msg);
  }
  return rc;
}

static void remove_imported(const struct bundle_ctx *c, struct plan *p) {
  for (size_t i = 0; i < p->n[3]; i++)
    if (p->it[3][i].imported) {
      struct err e2;
      err_init(&e2);
      if (vol_golden_delete(c->volumes, p->it[3][i].id, &e2) < 0)
        log_warn("bundle", "cannot remove golden volume %s: %s", p->it[3][i].id, e2.message);
      err_clear(&e2);
      p->it[3][i].imported = 0;
    }
}

/* ---- documents ----------------------------------------------------------------- */
/* The body to store for item it: the bundle JSON with its final name, read-only
 * flag and references mapped to the final ids. */
static json_t *body_of(struct plan *p, struct item *it) {
  json_t *b = json_deep_copy(it->doc);
  json_object_set_new(b, "name", json_string(it->final));
  if (it->read_only) json_object_set_new(b, "readOnly", json_true());
  if (it->kind == 1) {
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(b, "buildStep"), i, st) {
      struct item *ps = find_item(p, 0, bundle_ref(p->b, 0, sv(st, "planScriptUri")));
      if (!ps) continue;
      char *uri = util_strdup_printf("/rest/plan-scripts/%s", ps->id);
      json_object_set_new(st, "planScriptUri", json_string(uri));
      json_object_set_new(st, "planScriptName", json_string(ps->final));
      free(uri);
    }
  } else if (it->kind == 2) {
    struct item *bp = find_item(p, 1, bundle_ref(p->b, 1, sv(b, "oeBuildPlanURI")));
    struct item *gi = find_item(p, 3, bundle_ref(p->b, 3, sv(b, "goldenImageURI")));
    char *u = util_strdup_printf("/rest/build-plans/%s", bp ? bp->id : "");
    json_object_set_new(b, "oeBuildPlanURI", json_string(u));
    free(u);
    if (gi) {
      u = util_strdup_printf("/rest/golden-images/%s", gi->id);
      json_object_set_new(b, "goldenImageURI", json_string(u));
      free(u);
    } else {
      json_object_set_new(b, "goldenImageURI", json_string(""));
    }
  }
  return b;
}

static json_t *report_entry(struct item *it) {
  char *uri = util_strdup_printf("/rest/%s/%s", COLL[it->kind], it->id);
  json_t *r = json_pack("{s:s, s:s, s:s}", "type", TYPE[it->kind], "name", it->name, "uri", uri);
  if (strcmp(it->final, it->name) != 0) json_object_set_new(r, "newName", json_string(it->final));
  free(uri);
  return r;
}

static int put_docs(struct store_txn *t, const struct bundle_ctx *c, struct plan *p,
                    const char *bundle_id, json_t *report, struct err *e) {
  const char *bname = NULL;
  struct store_entry *ben = bundle_id ? store_txn_get(t, BUNDLE_COLL, bundle_id) : NULL;
  bname = ben ? ben->name : sv(p->b->manifest, "artifactName");
  char *buri = bundle_id ? util_strdup_printf("/rest/%s/%s", BUNDLE_COLL, bundle_id) : NULL;
  static const int ORDER[] = {3, 0, 1, 2};
  int rc = 0;
  for (int oi = 0; oi < 4 && rc == 0; oi++) {
    int k = ORDER[oi];
    for (size_t i = 0; i < p->n[k] && rc == 0; i++) {
      struct item *it = &p->it[k][i];
      const char *list = it->action == A_REUSE                                   ? "reused"
                         : it->action == A_REPLACE                               ? "replaced"
                         : it->action == A_RENAME || strcmp(it->final, it->name) ? "renamed"
                                                                                 : "created";
      if (it->action != A_REUSE) {
        if (k == 3) {
          char *log =
              util_strdup_printf("Extracted from artifact bundle \"%s\"\n", bname ? bname : "");
          struct golden_new g = {.id = it->id,
                                 .name = it->final,
                                 .description = sv(it->doc, "description"),
                                 .format = image_format_name(it->info.format),
                                 .size = it->info.size,
                                 .allocated = it->info.allocated,
                                 .sha256 = it->info.sha256,
                                 .crc32 = it->info.crc32,
                                 .member = it->info.member,
                                 .log = log,
                                 .bundle_name = bname ? bname : "",
                                 .bundle_uri = buri,
                                 .read_only = it->read_only};
          rc = golden_txn_create(t, &g, e);
          free(log);
        } else {
          json_t *body = body_of(p, it);
          rc = artifact_txn_put(
              t, (enum artifact_kind)k, it->id, body,
              ARTIFACT_FROM_BUNDLE | (it->action == A_REPLACE ? ARTIFACT_REPLACE : 0), e);
          json_decref(body);
        }
        if (rc < 0) {
          char msg[sizeof e->message + 256];
          snprintf(msg, sizeof msg, "%s \"%.200s\" of the bundle: %s", WHAT[k], it->name,
                   e->message);
          snprintf(e->message, sizeof e->message, "%.1000s", msg);
        }
      }
      if (rc == 0) json_array_append_new(json_object_get(report, list), report_entry(it));
    }
  }
  if (rc == 0 && ben) {
    json_t *doc = json_deep_copy(ben->doc);
    char now[32];
    util_iso8601(util_now_ms(), now);
    json_object_set_new(doc, "extracted", json_true());
    json_object_set_new(doc, "lastExtracted", json_string(now));
    rc = store_put(t, BUNDLE_COLL, ben->id, ben->name, doc, e);
    json_decref(doc);
  }
  store_entry_release(ben);
  free(buri);
  return rc;
}

static int same_decisions(struct plan *a, struct plan *b) {
  for (int k = 0; k < 4; k++) {
    if (a->n[k] != b->n[k]) return 0;
    for (size_t i = 0; i < a->n[k]; i++) {
      struct item *x = &a->it[k][i], *y = &b->it[k][i];
      if (x->action != y->action || strcmp(x->final, y->final)) return 0;
      /* New ids were drawn at random; only kept ids must agree. */
      if ((x->action == A_REUSE || x->action == A_REPLACE) && strcmp(x->id, y->id)) return 0;
    }
  }
  return 1;
}

static void progress(const struct bundle_ctx *c, int pct, const char *line) {
  if (c->progress) c->progress(c->progress_arg, pct, line);
}

static int stopped(const struct bundle_ctx *c, struct err *e) {
  if (!c->stop || !*c->stop) return 0;
  err_set(e, 503, "SHUTTING_DOWN", "the extraction was stopped (streamerd is stopping)");
  return -1;
}

static int run(const struct bundle_ctx *c, const char *bundle_id, const char *path,
               const struct bundle_extract_opts *o, int restore, json_t **report, struct err *e) {
  if (report) *report = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err_set(e, errno == ENOENT ? 404 : 500, errno == ENOENT ? "RESOURCE_NOT_FOUND" : "BUNDLE_IO",
            "cannot open the bundle file: %s", strerror(errno));
    return -1;
  }
  struct bundle_read b;
  struct plan p = {0}, q = {0};
  int rc = -1;
  json_t *rep = NULL;
  progress(c, 1, restore ? "Checking the backup" : "Checking the bundle");
  /* A bundle of ours was vetted at its upload: its golden payloads are read once, when
   * they are imported (their digests checked then), not twice. */
  struct store_entry *doc = bundle_id ? store_get(c->store, BUNDLE_COLL, bundle_id) : NULL;
  int ok = bundle_read_open_known(&b, fd, o ? o->lenient : 0,
                                  doc ? json_object_get(doc->doc, "goldenimage") : NULL, e);
  store_entry_release(doc);
  if (ok < 0) {
    close(fd);
    return -1;
  }
  p.b = q.b = &b;
  p.restore = q.restore = restore;
  if (json_array_size(b.docs[3]) > 0 && !c->volumes) {
    err_set(e, 503, "GOLDEN_IMAGES_UNAVAILABLE",
            "this bundle holds golden images, but no volume store is available");
    goto out;
  }
  if (!restore && check_renames(&b, o ? o->renames : NULL, e) < 0) goto out;
  if (decide(c->store, &p, o, c->volumes, e) < 0) goto out;
  /* Golden payloads into new golden volumes (no transaction open meanwhile). */
  size_t ngi = 0, done = 0;
  for (size_t i = 0; i < p.n[3]; i++)
    ngi += p.it[3][i].action != A_REUSE;
  for (size_t i = 0; i < p.n[3]; i++) {
    struct item *it = &p.it[3][i];
    if (it->action == A_REUSE) continue;
    if (stopped(c, e) < 0) goto out;
    char line[400];
    snprintf(line, sizeof line, "Importing golden image \"%.300s\"", it->final);
    int base = 5 + (int)(80 * done / ngi);
    progress(c, base, line);
    if (import_payload(c, &p, it, base, (int)(80 / ngi), e) < 0) goto out;
    done++;
  }
  if (c->storage_quota) { /* as for an upload: what the images take once imported */
    uint64_t add = 0;
    for (size_t i = 0; i < p.n[3]; i++)
      if (p.it[3][i].imported) add += p.it[3][i].info.allocated;
    uint64_t used = golden_allocated_total(c->store);
    if (add && used + add > c->storage_quota) {
      err_set(e, 413, "QUOTA_EXCEEDED",
              "the bundle's golden images take %llu bytes, which would exceed the storage quota "
              "of %llu bytes (%llu in use)",
              (unsigned long long)add, (unsigned long long)c->storage_quota,
              (unsigned long long)used);
      err_action(e, "Delete golden images that are no longer needed, or raise --storage-quota.");
      goto out;
    }
  }
  if (stopped(c, e) < 0) goto out;
  progress(c, 90, restore ? "Restoring the artifacts" : "Creating the artifacts");
  struct store_txn *t = store_begin(c->store);
  if (!t) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  /* Decide again under the transaction: nothing may have changed meanwhile. */
  if (decide(c->store, &q, o, NULL, e) < 0) {
    store_rollback(t);
    goto out;
  }
  if (!same_decisions(&p, &q)) {
    store_rollback(t);
    err_set(e, 409, "BUNDLE_RETRY",
            "artifacts changed while the bundle was being extracted; extract it again");
    goto out;
  }
  rep = json_pack("{s:[], s:[], s:[], s:[]}", "created", "reused", "renamed", "replaced");
  if (put_docs(t, c, &p, bundle_id, rep, e) < 0) {
    store_rollback(t);
    goto out;
  }
  if (store_commit(t, e) < 0) goto out;
  rc = 0;
  progress(c, 100, NULL);
out:
  if (rc < 0) {
    if (c->volumes) remove_imported(c, &p);
    json_decref(rep);
    rep = NULL;
  }
  if (report)
    *report = rep;
  else
    json_decref(rep);
  plan_free(&p);
  plan_free(&q);
  bundle_read_close(&b);
  close(fd);
  return rc;
}

int bundle_extract(const struct bundle_ctx *c, const char *id, const char *path,
                   const struct bundle_extract_opts *o, json_t **report, struct err *e) {
  return run(c, id, path, o, 0, report, e);
}

int bundle_restore(const struct bundle_ctx *c, const char *path, json_t **report, struct err *e) {
  struct bundle_extract_opts o = {.on_conflict = BUNDLE_REPLACE, .renames = NULL, .lenient = 0};
  return run(c, NULL, path, &o, 1, report, e);
}
