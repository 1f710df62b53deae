/* bundle_read.c — a vetted, parsed bundle: every member read once (sizes,
 * ratios, CRC-32, digests), MANIFEST.MF and the checksum file checked, each
 * artifact JSON checked for its shape and its id against its member name,
 * references resolved inside the bundle, unknown members refused; and the
 * "contents" object that inspection returns. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "artifact/bundle_int.h"

static const char *const KIND_TYPE[] = {"PlanScript", "OeBuildPlan", "OEDeploymentPlan",
                                        "GoldenImage"};
static const char *const KIND_WHAT[] = {"plan script", "build plan", "deployment plan",
                                        "golden image"};

int bundle_contents_read_only(json_t *contents) {
  json_t *m = json_object_get(contents, "manifest");
  return util_json_bool(json_object_get(m, "readOnly")) == 1;
}

int bundle_doc_read_only(json_t *doc) {
  return util_json_bool(json_object_get(doc, "hpProvided")) == 1 ||
         util_json_bool(json_object_get(doc, "readOnly")) == 1;
}

void bundle_read_close(struct bundle_read *b) {
  bz_close(&b->z);
  for (int k = 0; k < 4; k++) {
    json_decref(b->docs[k]);
    json_decref(b->members[k]);
    b->docs[k] = b->members[k] = NULL;
  }
  free(b->payload);
  free(b->gi_size);
  free(b->gi_crc);
  b->payload = NULL;
  b->gi_size = NULL;
  b->gi_crc = NULL;
  json_decref(b->manifest);
  json_decref(b->contents);
  b->manifest = b->contents = NULL;
}

static int json_error(struct err *e, const char *member, const char *why) {
  err_set(e, 400, "BUNDLE_JSON", "the bundle member \"%.200s\" %s", member, why);
  return -1;
}

static int dangling(struct err *e, const char *member, const char *fmt, const char *ref) {
  char why[600];
  snprintf(why, sizeof why, fmt, ref);
  err_set(e, 400, "BUNDLE_DANGLING_REFERENCE", "the bundle member \"%.200s\" %s", member, why);
  err_action(e, "Bundle every artifact that the bundled artifacts refer to.");
  return -1;
}

/* Index of the doc of kind k whose name (or id, or /rest/<coll>/<id>) is ref; -1 if none. */
static long find_ref(struct bundle_read *b, int k, const char *ref, int by_name) {
  static const char *const COLL[] = {"plan-scripts", "build-plans", "deployment-plans",
                                     "golden-images"};
  if (!ref) return -1;
  const char *id = NULL;
  size_t cl = strlen(COLL[k]);
  if (strncmp(ref, "/rest/", 6) == 0 && strncmp(ref + 6, COLL[k], cl) == 0 && ref[6 + cl] == '/')
    id = ref + 7 + cl;
  size_t i;
  json_t *d;
  json_array_foreach(b->docs[k], i, d) {
    const char *did = json_string_value(json_object_get(d, k == 1 ? "buildPlanid" : "id"));
    if (!did && k == 1) did = json_string_value(json_object_get(d, "id"));
    if (id && did && strcmp(id, did) == 0) return (long)i;
    if (!id && by_name && strcmp(json_string_value(json_object_get(d, "name")), ref) == 0)
      return (long)i;
  }
  if (!id) { /* a bare id */
    json_array_foreach(b->docs[k], i, d) {
      const char *did = json_string_value(json_object_get(d, k == 1 ? "buildPlanid" : "id"));
      if (!did && k == 1) did = json_string_value(json_object_get(d, "id"));
      if (did && strcmp(did, ref) == 0) return (long)i;
    }
  }
  return -1;
}

/* The shape of one artifact JSON (before references are resolved). */
static int check_doc(int k, const char *member, const char *fid, json_t *d, struct err *e) {
  char why[600];
  if (!json_is_object(d)) return json_error(e, member, "is not a JSON object");
  const char *type = json_string_value(json_object_get(d, "type"));
  json_t *tv = json_object_get(d, "type");
  if (tv && !json_is_null(tv)) {
    int ok = type && (strcasecmp(type, KIND_TYPE[k]) == 0 ||
                      (k == 1 && strcasecmp(type, "OeBuildPlanV5") == 0) ||
                      (k == 2 && strcasecmp(type, "OEDeploymentPlanV5") == 0));
    if (!ok) {
      snprintf(why, sizeof why, "has \"type\" %.100s; a %s must say \"%s\"",
               type ? type : "(not a string)", KIND_WHAT[k], KIND_TYPE[k]);
      return json_error(e, member, why);
    }
  }
  const char *idkey = k == 1 ? "buildPlanid" : "id";
  json_t *idv = json_object_get(d, idkey);
  if (k == 1 && !idv) idv = json_object_get(d, "id");
  if (!json_is_string(idv) || strcmp(json_string_value(idv), fid) != 0) {
    snprintf(why, sizeof why, "has \"%s\" %.100s, which is not the id %s of its member name", idkey,
             json_is_string(idv) ? json_string_value(idv) : "(missing)", fid);
    return json_error(e, member, why);
  }
  struct err ne;
  err_init(&ne);
  if (artifact_check_name(KIND_WHAT[k], json_object_get(d, "name"), &ne) < 0) {
    snprintf(why, sizeof why, "has a bad name: %.500s", ne.message);
    err_clear(&ne);
    return json_error(e, member, why);
  }
  json_t *desc = json_object_get(d, "description");
  if (desc && !json_is_null(desc) && !json_is_string(desc))
    return json_error(e, member, "has a \"description\" that is not a string");
  if (k == 0) {
    if (!json_is_string(json_object_get(d, "planType")))
      return json_error(e, member, "has no \"planType\" string");
    if (!json_is_string(json_object_get(d, "content")))
      return json_error(e, member, "has no \"content\" string");
  } else if (k == 1) {
    if (!json_is_string(json_object_get(d, "oeBuildPlanType")))
      return json_error(e, member, "has no \"oeBuildPlanType\" string");
    json_t *st = json_object_get(d, "buildStep");
    if (st && !json_is_null(st) && !json_is_array(st))
      return json_error(e, member, "has a \"buildStep\" that is not an array");
    size_t i;
    json_t *s;
    json_array_foreach(st, i, s) {
      if (!json_is_object(s))
        return json_error(e, member, "has a build step that is not an object");
    }
    json_t *ca = json_object_get(d, "customAttributes");
    if (ca && !json_is_null(ca) && !json_is_array(ca))
      return json_error(e, member, "has \"customAttributes\" that are not an array");
  } else if (k == 2) {
    json_t *bp = json_object_get(d, "oeBuildPlanURI");
    if (!json_is_string(bp) || !json_string_length(bp))
      return json_error(e, member, "has no \"oeBuildPlanURI\" (the build plan's name)");
    json_t *gi = json_object_get(d, "goldenImageURI");
    if (gi && !json_is_null(gi) && !json_is_string(gi))
      return json_error(e, member, "has a \"goldenImageURI\" that is not a string");
    json_t *ca = json_object_get(d, "customAttributes");
    if (ca && !json_is_null(ca) && !json_is_array(ca))
      return json_error(e, member, "has \"customAttributes\" that are not an array");
  }
  return 0;
}

/* The raw size of an HPE golden image zip from its last bytes (its only
 * central directory entry); 0 when it cannot tell. */
struct tail {
  unsigned char *buf;
  size_t cap, len;
  uint64_t total;
};

static int keep_tail(void *arg, const void *p, size_t n, struct err *e) {
  struct tail *t = arg;
  t->total += n;
  const unsigned char *c = p;
  if (n >= t->cap) {
    memcpy(t->buf, c + n - t->cap, t->cap);
    t->len = t->cap;
    return 0;
  }
  if (t->len + n > t->cap) {
    size_t drop = t->len + n - t->cap;
    memmove(t->buf, t->buf + drop, t->len - drop);
    t->len -= drop;
  }
  memcpy(t->buf + t->len, c, n);
  t->len += n;
  return 0;
}

static uint64_t inner_size(const struct tail *t, uint32_t *crc) {
#define R16(p) ((unsigned)(p)[0] | (unsigned)(p)[1] << 8)
#define R32(p) ((uint32_t)R16(p) | (uint32_t)R16((p) + 2) << 16)
  if (t->len < 22) return 0;
  const unsigned char *b = t->buf;
  uint64_t base = t->total - t->len;
  for (long i = (long)t->len - 22; i >= 0; i--) {
    if (R32(b + i) != 0x06054b50) continue;
    uint64_t cd = R32(b + i + 16);
    if (cd == 0xffffffffu) { /* zip64: the locator before it */
      if (i < 20 || R32(b + i - 20) != 0x07064b50) return 0;
      uint64_t z = R32(b + i - 12) | (uint64_t)R32(b + i - 8) << 32;
      if (z < base || z + 56 > t->total) return 0;
      const unsigned char *r = b + (z - base);
      cd = R32(r + 48) | (uint64_t)R32(r + 52) << 32;
    }
    if (cd < base || cd + 46 > t->total) return 0;
    const unsigned char *c = b + (cd - base);
    if (R32(c) != 0x02014b50) return 0;
    *crc = R32(c + 16);
    uint64_t us = R32(c + 24);
    if (us != 0xffffffffu) return us;
    size_t nl = R16(c + 28), xl = R16(c + 30);
    const unsigned char *x = c + 46 + nl, *xe = x + xl;
    if ((uint64_t)(xe - b) > t->len) return 0;
    while (x + 4 <= xe) {
      if (R16(x) == 1 && R16(x + 2) >= 8) return R32(x + 4) | (uint64_t)R32(x + 8) << 32;
      x += 4 + R16(x + 2);
    }
    return 0;
  }
  return 0;
#undef R16
#undef R32
}

static json_t *str_or_empty(json_t *v) {
  return json_is_string(v) ? json_incref(v) : json_string("");
}

static json_t *build_contents(struct bundle_read *b, json_t *integrity, uint64_t *gi_sizes) {
  int ro = util_json_bool(json_object_get(b->manifest, "readOnly")) == 1;
  json_t *ps = json_array(), *bp = json_array(), *dp = json_array(), *gi = json_array();
  size_t i, j;
  json_t *d;
  json_array_foreach(b->docs[0], i, d) {
    const char *mname = json_string_value(json_array_get(b->members[0], i));
    const char *sum = "";
    for (size_t m = 0; m < b->z.n; m++)
      if (strcmp(b->z.m[m].name, mname) == 0) sum = b->z.m[m].sha256;
    json_array_append_new(ps, json_pack("{s:O, s:O, s:o, s:b, s:O, s:s}", "psID",
                                        json_object_get(d, "id"), "planScriptName",
                                        json_object_get(d, "name"), "description",
                                        str_or_empty(json_object_get(d, "description")), "readOnly",
                                        ro || bundle_doc_read_only(d), "planType",
                                        json_object_get(d, "planType"), "checksum", sum));
  }
  json_array_foreach(b->docs[1], i, d) {
    json_t *names = json_array(), *s;
    json_array_foreach(json_object_get(d, "buildStep"), j, s) {
      long at = find_ref(b, 0, json_string_value(json_object_get(s, "planScriptUri")), 0);
      json_t *n = at >= 0 ? json_object_get(json_array_get(b->docs[0], (size_t)at), "name")
                          : json_object_get(s, "planScriptName");
      json_array_append_new(names, str_or_empty(n));
    }
    json_array_append_new(
        bp, json_pack("{s:O, s:O, s:o, s:b, s:O, s:o}", "bpID", json_object_get(d, "buildPlanid"),
                      "buildPlanName", json_object_get(d, "name"), "description",
                      str_or_empty(json_object_get(d, "description")), "readOnly",
                      ro || bundle_doc_read_only(d), "oeBuildPlanType",
                      json_object_get(d, "oeBuildPlanType"), "planScriptName", names));
  }
  json_array_foreach(b->docs[2], i, d) {
    long g = find_ref(b, 3, json_string_value(json_object_get(d, "goldenImageURI")), 1);
    long p = find_ref(b, 1, json_string_value(json_object_get(d, "oeBuildPlanURI")), 1);
    json_array_append_new(
        dp, json_pack(
                "{s:O, s:O, s:o, s:b, s:o, s:o}", "dpId", json_object_get(d, "id"),
                "deploymentplanName", json_object_get(d, "name"), "description",
                str_or_empty(json_object_get(d, "description")), "readOnly",
                ro || bundle_doc_read_only(d), "goldenImageName",
                g >= 0 ? json_incref(json_object_get(json_array_get(b->docs[3], (size_t)g), "name"))
                       : json_string(""),
                "oebpName",
                p >= 0 ? json_incref(json_object_get(json_array_get(b->docs[1], (size_t)p), "name"))
                       : json_string("")));
  }
  json_array_foreach(b->docs[3], i, d) {
    json_array_append_new(
        gi, json_pack("{s:O, s:O, s:O, s:o, s:b, s:I}", "giID", json_object_get(d, "id"), "giId",
                      json_object_get(d, "id"), "goldenimageName", json_object_get(d, "name"),
                      "description", str_or_empty(json_object_get(d, "description")), "readOnly",
                      ro || util_json_bool(json_object_get(d, "readOnly")) == 1, "size",
                      (json_int_t)gi_sizes[i]));
    json_object_set_new(json_array_get(gi, json_array_size(gi) - 1), "crc32",
                        json_integer((json_int_t)b->gi_crc[i]));
  }
  size_t count =
      json_array_size(ps) + json_array_size(bp) + json_array_size(dp) + json_array_size(gi);
  json_t *c = json_pack("{s:b, s:I, s:o, s:o, s:o, s:O, s:o, s:O, s:O, s:b}", "readOnly", ro,
                        "artifactsCount", (json_int_t)count, "planScripts", ps, "buildPlans", bp,
                        "deploymentPlans", dp, "goldenimage", gi, "goldenImages", gi, "manifest",
                        b->manifest, "integrity", integrity, "extracted", 0);
  return c;
}

int bundle_read_open(struct bundle_read *b, int fd, int lenient, struct err *e) {
  return bundle_read_open_known(b, fd, lenient, NULL, e);
}

/* The recorded {size, crc32} of golden image `id` in `known`; 0 if none. */
static int known_image(json_t *known, const char *id, uint64_t *size, uint32_t *crc) {
  size_t i;
  json_t *g;
  json_array_foreach(known, i, g) {
    json_t *c = json_object_get(g, "crc32"), *sz = json_object_get(g, "size");
    const char *gid = json_string_value(json_object_get(g, "giID"));
    if (id && gid && json_is_integer(c) && json_is_integer(sz) && strcmp(gid, id) == 0) {
      *size = (uint64_t)json_integer_value(sz);
      *crc = (uint32_t)json_integer_value(c);
      return 1;
    }
  }
  return 0;
}

int bundle_read_open_known(struct bundle_read *b, int fd, int lenient, json_t *known,
                           struct err *e) {
  memset(b, 0, sizeof *b);
  if (bz_open(&b->z, fd, e) < 0) return -1;
  struct bz *z = &b->z;
  for (int k = 0; k < 4; k++) {
    b->docs[k] = json_array();
    b->members[k] = json_array();
  }
  long mf = -1, s256 = -1, s1 = -1;
  for (size_t i = 0; i < z->n; i++) {
    if (z->m[i].kind == BZ_MANIFEST) mf = (long)i;
    if (z->m[i].kind == BZ_SHA256SUM) s256 = (long)i;
    if (z->m[i].kind == BZ_SHA1SUM) s1 = (long)i;
  }
  int want_sha1 = s256 < 0 && s1 >= 0;
  json_t *integrity = NULL, *sums = NULL;
  uint64_t *gi_sizes = NULL;
  char *text = NULL;
  size_t len;
  if (mf < 0) {
    err_set(e, 400, "BUNDLE_NO_MANIFEST", "the bundle has no MANIFEST.MF");
    err_action(e, "Upload an artifact bundle exported by Image Streamer.");
    goto fail;
  }
  if (bz_read_small(z, (size_t)mf, want_sha1, &text, &len, e) < 0) goto fail;
  b->manifest = bundle_manifest_parse(text, len, e);
  free(text);
  text = NULL;
  if (!b->manifest) goto fail;
  /* The artifact JSON members. */
  for (size_t i = 0; i < z->n; i++) {
    struct bz_member *m = &z->m[i];
    if (m->kind > BZ_GOLDEN_JSON) continue;
    if (bz_read_small(z, i, want_sha1, &text, &len, e) < 0) goto fail;
    const char *p = text;
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
      p += 3;
      len -= 3;
    }
    json_error_t je;
    json_t *d = json_loadb(p, len, 0, &je);
    free(text);
    text = NULL;
    if (!d) {
      char why[300];
      snprintf(why, sizeof why, "is not valid JSON (line %d: %s)", je.line, je.text);
      json_error(e, m->name, why);
      goto fail;
    }
    if (check_doc((int)m->kind, m->name, m->id, d, e) < 0) {
      json_decref(d);
      goto fail;
    }
    json_array_append_new(b->docs[m->kind], d);
    json_array_append_new(b->members[m->kind], json_string(m->name));
  }
  /* Golden payloads: the member named by each golden image. */
  size_t ngi = json_array_size(b->docs[3]);
  b->payload = calloc(ngi ? ngi : 1, sizeof *b->payload);
  gi_sizes = calloc(ngi ? ngi : 1, sizeof *gi_sizes);
  b->gi_crc = calloc(ngi ? ngi : 1, sizeof *b->gi_crc);
  char *claimed = calloc(z->n, 1);
  if (!b->payload || !gi_sizes || !b->gi_crc || !claimed) {
    free(claimed);
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    goto fail;
  }
  for (size_t g = 0; g < ngi; g++) {
    json_t *d = json_array_get(b->docs[3], g);
    const char *name = json_string_value(json_object_get(d, "name"));
    long at = -1;
    for (size_t i = 0; i < z->n; i++)
      if (z->m[i].kind == BZ_OTHER && strcmp(z->m[i].name, name) == 0) at = (long)i;
    if (at < 0) {
      free(claimed);
      dangling(e, json_string_value(json_array_get(b->members[3], g)),
               "describes golden image \"%.200s\", but the bundle has no member of that name",
               name);
      goto fail;
    }
    if (claimed[at]) {
      free(claimed);
      json_error(e, json_string_value(json_array_get(b->members[3], g)),
                 "names a golden image payload that another golden image already uses");
      goto fail;
    }
    claimed[at] = 1;
    b->payload[g] = (size_t)at;
    if (known_image(known, json_string_value(json_object_get(d, "id")), &gi_sizes[g],
                    &b->gi_crc[g])) {
      z->m[at].deferred = 1;
      continue;
    }
    struct tail t = {malloc(70000), 70000, 0, 0};
    if (!t.buf) {
      free(claimed);
      err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
      goto fail;
    }
    int rc = bz_stream(z, (size_t)at, keep_tail, &t, want_sha1, NULL, e);
    gi_sizes[g] = rc == 0 ? inner_size(&t, &b->gi_crc[g]) : 0;
    free(t.buf);
    if (rc < 0) {
      free(claimed);
      goto fail;
    }
  }
  for (size_t i = 0; i < z->n; i++) {
    if (z->m[i].kind == BZ_OTHER && !claimed[i]) {
      err_set(e, 400, "BUNDLE_UNKNOWN_MEMBER",
              "the bundle member \"%.200s\" is not an artifact of a known kind, MANIFEST.MF, a "
              "checksum file or the payload of a bundled golden image",
              z->m[i].name);
      free(claimed);
      goto fail;
    }
  }
  free(claimed);
  /* References between the bundled artifacts. */
  size_t i, j;
  json_t *d, *s;
  json_array_foreach(b->docs[1], i, d) {
    const char *mname = json_string_value(json_array_get(b->members[1], i));
    json_array_foreach(json_object_get(d, "buildStep"), j, s) {
      const char *uri = json_string_value(json_object_get(s, "planScriptUri"));
      if (find_ref(b, 0, uri, 0) < 0) {
        dangling(e, mname,
                 "has a build step that uses plan script \"%.300s\", which is not in the bundle",
                 uri ? uri : json_string_value(json_object_get(s, "planScriptName")));
        goto fail;
      }
    }
  }
  json_array_foreach(b->docs[2], i, d) {
    const char *mname = json_string_value(json_array_get(b->members[2], i));
    const char *bp = json_string_value(json_object_get(d, "oeBuildPlanURI"));
    if (find_ref(b, 1, bp, 1) < 0) {
      dangling(e, mname, "uses build plan \"%.300s\", which is not in the bundle", bp);
      goto fail;
    }
    const char *gi = json_string_value(json_object_get(d, "goldenImageURI"));
    if (gi && *gi && find_ref(b, 3, gi, 1) < 0) {
      dangling(e, mname, "uses golden image \"%.300s\", which is not in the bundle", gi);
      goto fail;
    }
  }
  /* The checksum file; every other member's digest was computed as it was read. */
  long sf = s256 >= 0 ? s256 : s1;
  json_t *members = json_array();
  integrity = json_pack("{s:s?, s:s?, s:b, s:b, s:o}", "checksumFile",
                        sf >= 0 ? z->m[sf].name : NULL, "algorithm",
                        s256 >= 0 ? "sha256"
                        : s1 >= 0 ? "sha1"
                                  : NULL,
                        "verified", sf >= 0, "lenient", 0, "members", members);
  if (sf >= 0) {
    if (bz_read_small(z, (size_t)sf, 0, &text, &len, e) < 0) goto fail;
    sums = bundle_sums_parse(text, len, s256 >= 0 ? 64 : 40, z->m[sf].name, e);
    free(text);
    text = NULL;
    if (!sums) goto fail;
    if (s256 >= 0 && s1 >= 0) /* the other checksum file: read (CRC) but not compared */
      if (bz_stream(z, (size_t)s1, NULL, NULL, 0, NULL, e) < 0) goto fail;
    char bad[900] = "";
    int nbad = 0, manifest_only = 1;
    for (i = 0; i < z->n; i++) {
      struct bz_member *m = &z->m[i];
      if ((long)i == s256 || (long)i == s1) continue;
      const char *exp = json_string_value(json_object_get(sums, m->name));
      const char *act = s256 >= 0 ? m->sha256 : m->sha1;
      if (m->deferred && exp) { /* checked when it is streamed */
        snprintf(m->expect, sizeof m->expect, "%s", exp);
        act = exp;
      }
      int ok = exp && strcmp(exp, act) == 0;
      json_array_append_new(members, json_pack("{s:s, s:s?, s:s, s:b}", "name", m->name, "expected",
                                               exp, "actual", act, "ok", ok));
      if (!ok) {
        if (m->kind != BZ_MANIFEST) manifest_only = 0;
        size_t bl = strlen(bad);
        if (nbad < 5)
          snprintf(bad + bl, sizeof bad - bl, "%s\"%.120s\"%s", nbad ? ", " : "", m->name,
                   exp ? "" : " (not listed)");
        nbad++;
      }
    }
    const char *key;
    json_t *v;
    json_object_foreach(sums, key, v) {
      int found = 0;
      for (i = 0; i < z->n && !found; i++)
        found = strcmp(z->m[i].name, key) == 0;
      if (!found) {
        err_set(e, 400, "BUNDLE_CHECKSUM_MISMATCH",
                "%s lists \"%.200s\", which is not in the bundle", z->m[sf].name, key);
        goto fail;
      }
    }
    if (nbad > 0 && !(lenient && manifest_only)) {
      err_set(e, 400, "BUNDLE_CHECKSUM_MISMATCH",
              "%d bundle member(s) do not match their digest in %s: %s%s", nbad, z->m[sf].name, bad,
              nbad > 5 ? ", ..." : "");
      if (manifest_only)
        err_action(e, "Only MANIFEST.MF differs (known for some hand-edited HPE bundles): upload "
                      "it again with lenient=true to accept it.");
      else
        err_action(e, "The bundle is damaged or was changed after it was exported; export it "
                      "again.");
      e->nested = json_deep_copy(members);
      goto fail;
    }
    if (nbad > 0) json_object_set_new(integrity, "lenient", json_true());
    json_object_set_new(integrity, "verified", json_boolean(nbad == 0));
  }
  b->contents = build_contents(b, integrity, gi_sizes);
  json_decref(integrity);
  json_decref(sums);
  b->gi_size = gi_sizes;
  if (!b->contents) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    bundle_read_close(b);
    return -1;
  }
  return 0;
fail:
  free(text);
  if (gi_sizes != b->gi_size) free(gi_sizes);
  json_decref(integrity);
  json_decref(sums);
  bundle_read_close(b);
  return -1;
}

json_t *bundle_inspect_fd(int fd, int lenient, struct err *e) {
  struct bundle_read b;
  if (bundle_read_open(&b, fd, lenient, e) < 0) return NULL;
  json_t *c = json_incref(b.contents);
  bundle_read_close(&b);
  return c;
}

json_t *bundle_inspect(const char *path, int lenient, struct err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err_set(e, 500, "BUNDLE_IO", "cannot open the bundle file: %s", strerror(errno));
    return NULL;
  }
  json_t *r = bundle_inspect_fd(fd, lenient, e);
  close(fd);
  return r;
}
