/* test_bundle.c — artifact bundles: inspection of every corpus bundle,
 * MANIFEST.MF and checksum-file parsing, each hostile-input refusal of the
 * reader (zips built with our writer, then damaged byte by byte), extraction
 * into an empty store with a field-by-field comparison against the zip's
 * JSON, conflicts, and the write → inspect round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "artifact/bundle.h"
#include "artifact/bundle_int.h"

static char dir[] = "/tmp/streamer-test-bundle-XXXXXX";

static int setup(void **state) {
  strcpy(dir, "/tmp/streamer-test-bundle-XXXXXX");
  assert_non_null(mkdtemp(dir));
  return 0;
}

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
  return system(cmd);
}

/* Every corpus bundle path (NULL-terminated, malloc'd), or NULL without the corpus. */
static char **corpus(void) {
  const char *research = getenv("STREAMER_RESEARCH");
  if (!research) research = "/work/shared/research";
  char root[512];
  snprintf(root, sizeof root, "%s/bundles", research);
  DIR *d = opendir(root);
  if (!d) return NULL;
  char **v = calloc(512, sizeof *v);
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/%s", root, de->d_name);
    DIR *s = opendir(sub);
    if (!s) continue;
    struct dirent *f;
    while ((f = readdir(s)) && n < 511) {
      size_t l = strlen(f->d_name);
      if (l > 4 && strcmp(f->d_name + l - 4, ".zip") == 0)
        v[n++] = util_strdup_printf("%s/%s", sub, f->d_name);
    }
    closedir(s);
  }
  closedir(d);
  return v;
}

static void free_list(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    free(v[i]);
  free(v);
}

static void test_corpus_inspect(void **state) {
  char **v = corpus();
  if (!v) skip();
  size_t n = 0, with_gi = 0;
  for (; v[n]; n++) {
    struct err e;
    err_init(&e);
    json_t *c = bundle_inspect(v[n], 0, &e);
    if (!c) fail_msg("%s: %s %s", v[n], e.code, e.message);
    assert_true(json_integer_value(json_object_get(c, "artifactsCount")) > 0);
    json_t *gi = json_object_get(c, "goldenimage");
    if (json_array_size(gi)) {
      with_gi++;
      assert_int_equal(json_integer_value(json_object_get(json_array_get(gi, 0), "size")),
                       104857600);
    }
    assert_true(json_is_object(json_object_get(c, "manifest")));
    json_decref(c);
  }
  assert_int_equal(n, 88);
  assert_true(with_gi >= 1);
  free_list(v);
}

static void test_manifest(void **state) {
  struct err e;
  err_init(&e);
  const char *t = "Artifact Name:X\nDescription:a \\\"b\\\"\\nc\nRead Only:true\n"
                  "Time Stamp:2020-12-10T15:28:13.352Z\nArtifact Type:USER";
  json_t *m = bundle_manifest_parse(t, strlen(t), &e);
  assert_non_null(m);
  assert_string_equal(json_string_value(json_object_get(m, "artifactName")), "X");
  assert_string_equal(json_string_value(json_object_get(m, "description")), "a \"b\"\nc");
  assert_true(json_is_true(json_object_get(m, "readOnly")));
  char *f = bundle_manifest_format("X", "a \"b\"\nc", 1, "2020-12-10T15:28:13.352Z");
  assert_string_equal(f, t); /* HPE's exact text: five keys, no final newline */
  free(f);
  json_decref(m);
  /* A continuation line and a final newline. */
  const char *c = "Artifact Name:Y\nDescription:one\ntwo\nRead Only:false\nTime Stamp:T\n"
                  "Artifact Type:USER\n";
  m = bundle_manifest_parse(c, strlen(c), &e);
  assert_non_null(m);
  assert_string_equal(json_string_value(json_object_get(m, "description")), "one\ntwo");
  assert_true(json_is_false(json_object_get(m, "readOnly")));
  assert_string_equal(json_string_value(json_object_get(m, "artifactType")), "USER");
  json_decref(m);
  const char *bad[] = {"Description:x\n", "nonsense", "Artifact Name:A\nRead Only:maybe",
                       "Artifact Name:A\nArtifact Name:B"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err_init(&e);
    assert_null(bundle_manifest_parse(bad[i], strlen(bad[i]), &e));
    assert_string_equal(e.code, "BUNDLE_MANIFEST");
  }
}

/* ---- building test zips ------------------------------------------------------------ */
struct mem {
  const char *name, *data;
  int stored; /* write with level 0 (still deflate framing) */
};

static const char *PS_ID = "11111111-2222-3333-4444-555555555555";
static const char *BP_ID = "aaaaaaaa-2222-3333-4444-555555555555";
static const char *MF = "Artifact Name:T\nDescription:d\nRead Only:false\nTime Stamp:"
                        "2021-01-01T00:00:00.000Z\nArtifact Type:USER";

static char *ps_json(const char *id, const char *name) {
  return util_strdup_printf(
      "{\"type\":\"PlanScript\",\"uri\":null,\"id\":\"%s\",\"name\":\"%s\",\"description\":"
      "\"x\",\"planType\":\"deploy\",\"content\":\"echo @A:1@\",\"customAttributes\":null,"
      "\"hpProvided\":false}",
      id, name);
}

static char *bp_json(const char *id, const char *ps_id) {
  return util_strdup_printf(
      "{\"type\":\"OeBuildPlan\",\"buildPlanid\":\"%s\",\"name\":\"BP\",\"description\":\"\","
      "\"oeBuildPlanType\":\"deploy\",\"hpProvided\":false,\"customAttributes\":[],"
      "\"buildStep\":[{\"serialNumber\":\"1\",\"planScriptUri\":\"/rest/plan-scripts/%s\","
      "\"planScriptName\":\"PS\",\"parameters\":null}]}",
      id, ps_id);
}

/* Write members (and a SHA256SUM of them when sums) to path. */
static void build(const char *path, const struct mem *m, size_t n, int sums) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  struct bzw *w = bzw_open(fd, 1600000000000LL);
  struct err e;
  err_init(&e);
  char *lines = strdup("");
  for (size_t i = 0; i < n; i++) {
    char hexd[65];
    assert_int_equal(bzw_begin(w, m[i].name, m[i].stored ? 0 : 6, 0, &e), 0);
    assert_int_equal(bzw_data(w, m[i].data, strlen(m[i].data), &e), 0);
    assert_int_equal(bzw_end(w, hexd, &e), 0);
    char *nl = util_strdup_printf("%s%s\t%s\n", lines, m[i].name, hexd);
    free(lines);
    lines = nl;
  }
  if (sums) {
    assert_int_equal(bzw_begin(w, "SHA256SUM.sha256sum", 6, 0, &e), 0);
    assert_int_equal(bzw_data(w, lines, strlen(lines), &e), 0);
    assert_int_equal(bzw_end(w, NULL, &e), 0);
  }
  free(lines);
  assert_int_equal(bzw_finish(w, &e), 0);
  bzw_free(w);
  close(fd);
}

static unsigned char *slurp(const char *path, size_t *len) {
  struct err e;
  err_init(&e);
  unsigned char *p = (unsigned char *)util_read_file(path, len, &e);
  assert_non_null(p);
  return p;
}

static void spit(const char *path, const unsigned char *p, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, len, f), len);
  fclose(f);
}

/* Offset of the central directory entry (or, local, the local header) of member `name`. */
static size_t find_hdr(const unsigned char *p, size_t len, const char *name, int local) {
  uint32_t sig = local ? 0x04034b50 : 0x02014b50;
  size_t nameoff = local ? 30 : 46, nl = strlen(name);
  for (size_t i = 0; i + nameoff + nl <= len; i++) {
    uint32_t s = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
                 (uint32_t)p[i + 3] << 24;
    if (s == sig && memcmp(p + i + nameoff, name, nl) == 0) return i;
  }
  fail_msg("no header for %s", name);
  return 0;
}

static void expect(const char *path, int lenient, const char *code) {
  struct err e;
  err_init(&e);
  json_t *c = bundle_inspect(path, lenient, &e);
  if (!code) {
    if (!c) fail_msg("expected success, got %s: %s", e.code, e.message);
    json_decref(c);
    return;
  }
  if (c) fail_msg("expected %s, got success", code);
  if (strcmp(e.code, code) != 0) fail_msg("expected %s, got %s: %s", code, e.code, e.message);
  assert_int_equal(e.status, 400);
  if (getenv("TEST_BUNDLE_VERBOSE")) printf("%-28s %s\n", code, e.message);
  err_clear(&e);
}

static void test_hostile(void **state) {
  char path[512];
  snprintf(path, sizeof path, "%s/h.zip", dir);
  char psn[128], bpn[128];
  snprintf(psn, sizeof psn, "%s_planscript.json", PS_ID);
  snprintf(bpn, sizeof bpn, "%s_buildplan.json", BP_ID);
  char *ps = ps_json(PS_ID, "PS"), *bp = bp_json(BP_ID, PS_ID);
  struct mem good[] = {{psn, ps, 0}, {bpn, bp, 0}, {"MANIFEST.MF", MF, 0}};
  build(path, good, 3, 1);
  expect(path, 0, NULL);
  build(path, good, 3, 0); /* no checksum file: accepted, not verified */
  expect(path, 0, NULL);

  size_t len;
  unsigned char *p;
  /* Not a zip; truncated. */
  spit(path, (const unsigned char *)"hello world, not a zip at all", 29);
  expect(path, 0, "BUNDLE_NOT_ZIP");
  build(path, good, 3, 1);
  p = slurp(path, &len);
  spit(path, p, len / 2);
  expect(path, 0, "BUNDLE_NOT_ZIP");
  free(p);

  /* Names. */
  const char *names[] = {"../evil_planscript.json",
                         "/etc/passwd",
                         "C:evil",
                         "a\\b",
                         "dir/",
                         "sub/x.json",
                         "bad\x01name"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    struct mem m[] = {{names[i], "{}", 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m, 2, 0);
    expect(path, 0, "BUNDLE_MEMBER_NAME");
  }
  { /* not UTF-8 */
    struct mem m[] = {{"caf\xe9", "{}", 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m, 2, 0);
    expect(path, 0, "BUNDLE_MEMBER_NAME");
  }
  /* Duplicate. */
  {
    struct mem m[] = {{psn, ps, 0}, {psn, ps, 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m, 3, 0);
    expect(path, 0, "BUNDLE_DUPLICATE_MEMBER");
  }
  /* Symlink: Unix creator, mode 0120777. */
  build(path, good, 3, 1);
  p = slurp(path, &len);
  size_t c = find_hdr(p, len, psn, 0);
  p[c + 5] = 3;
  p[c + 40] = 0xff;
  p[c + 41] = 0xa1;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_SYMLINK");
  free(p);
  /* Encrypted. */
  build(path, good, 3, 1);
  p = slurp(path, &len);
  c = find_hdr(p, len, psn, 0);
  p[c + 8] |= 1;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_ENCRYPTED");
  free(p);
  /* Unsupported method (bzip2) in both headers. */
  build(path, good, 3, 1);
  p = slurp(path, &len);
  p[find_hdr(p, len, psn, 0) + 10] = 12;
  p[find_hdr(p, len, psn, 1) + 8] = 12;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_UNSUPPORTED_METHOD");
  free(p);
  /* CRC. */
  build(path, good, 3, 1);
  p = slurp(path, &len);
  p[find_hdr(p, len, psn, 0) + 16] ^= 0x55;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_CRC");
  free(p);
  /* Declared size lying (larger, then smaller). */
  build(path, good, 3, 1);
  p = slurp(path, &len);
  c = find_hdr(p, len, psn, 0);
  p[c + 24] += 1;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_ZIP_BOMB");
  p[c + 24] -= 2;
  spit(path, p, len);
  expect(path, 0, "BUNDLE_ZIP_BOMB");
  free(p);
  /* A JSON member of 20 MiB (over the limit and the ratio). */
  {
    size_t big = 20u << 20;
    char *s = malloc(big + 1);
    memset(s, ' ', big);
    s[big] = 0;
    s[0] = '{';
    s[big - 1] = '}';
    struct mem m[] = {{psn, s, 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m, 2, 0);
    expect(path, 0, "BUNDLE_ZIP_BOMB");
    free(s);
  }
  /* Too many members. */
  {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    struct bzw *w = bzw_open(fd, 0);
    struct err e;
    err_init(&e);
    for (int i = 0; i < BUNDLE_MAX_MEMBERS + 1; i++) {
      char n[32];
      snprintf(n, sizeof n, "m%d", i);
      assert_int_equal(bzw_begin(w, n, 0, 0, &e), 0);
      assert_int_equal(bzw_end(w, NULL, &e), 0);
    }
    assert_int_equal(bzw_finish(w, &e), 0);
    bzw_free(w);
    close(fd);
    expect(path, 0, "BUNDLE_TOO_MANY_MEMBERS");
  }
  /* No manifest; a bad manifest. */
  {
    struct mem m[] = {{psn, ps, 0}};
    build(path, m, 1, 1);
    expect(path, 0, "BUNDLE_NO_MANIFEST");
    struct mem m2[] = {{psn, ps, 0}, {"MANIFEST.MF", "garbage", 0}};
    build(path, m2, 2, 1);
    expect(path, 0, "BUNDLE_MANIFEST");
  }
  /* Checksum mismatch: a plan script (always refused), MANIFEST.MF only (lenient accepts). */
  {
    build(path, good, 3, 1);
    p = slurp(path, &len);
    /* Flip a digit of the plan script's line in the checksum file: rebuild instead. */
    free(p);
    char *lines = util_strdup_printf("%s\t%064d\n", psn, 0);
    struct mem m[] = {{psn, ps, 0}, {"MANIFEST.MF", MF, 0}, {"SHA256SUM.sha256sum", lines, 0}};
    build(path, m, 3, 0);
    expect(path, 0, "BUNDLE_CHECKSUM_MISMATCH");
    expect(path, 1, "BUNDLE_CHECKSUM_MISMATCH");
    free(lines);
    /* Correct digest for the plan script, wrong one for MANIFEST.MF. */
    build(path, good, 1, 1); /* to learn the plan script's digest */
    struct err e;
    err_init(&e);
    json_t *ct = bundle_inspect(path, 0, &e);
    assert_null(ct); /* no manifest */
    int fd = open(path, O_RDONLY);
    struct bz z;
    assert_int_equal(bz_open(&z, fd, &e), 0);
    char *txt;
    size_t tl;
    assert_int_equal(bz_read_small(&z, 0, 0, &txt, &tl, &e), 0);
    lines = util_strdup_printf("%s\t%s\nMANIFEST.MF\t%064d\n", psn, z.m[0].sha256, 0);
    free(txt);
    bz_close(&z);
    close(fd);
    struct mem m2[] = {{psn, ps, 0}, {"MANIFEST.MF", MF, 0}, {"SHA256SUM.sha256sum", lines, 0}};
    build(path, m2, 3, 0);
    expect(path, 0, "BUNDLE_CHECKSUM_MISMATCH");
    ct = bundle_inspect(path, 1, &e);
    assert_non_null(ct);
    json_t *integ = json_object_get(ct, "integrity");
    assert_true(json_is_true(json_object_get(integ, "lenient")));
    assert_true(json_is_false(json_object_get(integ, "verified")));
    json_decref(ct);
    free(lines);
  }
  /* Unknown member; bad JSON; id not the member's; dangling step; dangling DP. */
  {
    struct mem m[] = {{psn, ps, 0}, {"README.txt", "hi", 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m, 3, 0);
    expect(path, 0, "BUNDLE_UNKNOWN_MEMBER");
    struct mem m2[] = {{psn, "{\"type\":", 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m2, 2, 0);
    expect(path, 0, "BUNDLE_JSON");
    char *other = ps_json("99999999-2222-3333-4444-555555555555", "PS");
    struct mem m3[] = {{psn, other, 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m3, 2, 0);
    expect(path, 0, "BUNDLE_JSON");
    free(other);
    struct mem m4[] = {{bpn, bp, 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m4, 2, 0);
    expect(path, 0, "BUNDLE_DANGLING_REFERENCE");
    char dpn[128];
    snprintf(dpn, sizeof dpn, "%s_deploymentplan.json", PS_ID);
    char *dp = util_strdup_printf("{\"type\":\"OEDeploymentPlan\",\"id\":\"%s\",\"name\":\"DP\","
                                  "\"oeBuildPlanURI\":\"nope\",\"goldenImageURI\":null}",
                                  PS_ID);
    struct mem m5[] = {{dpn, dp, 0}, {"MANIFEST.MF", MF, 0}};
    build(path, m5, 2, 0);
    expect(path, 0, "BUNDLE_DANGLING_REFERENCE");
    free(dp);
  }
  free(ps);
  free(bp);
}

/* ---- extraction ---------------------------------------------------------------- */
struct env {
  struct store *s;
  struct vol_store *vs;
  char sub[400];
};

static void env_open(struct env *v, const char *name) {
  struct err e;
  err_init(&e);
  snprintf(v->sub, sizeof v->sub, "%s/%s", dir, name);
  assert_int_equal(mkdir(v->sub, 0700), 0);
  char db[512], vols[512];
  snprintf(db, sizeof db, "%s/db", v->sub);
  snprintf(vols, sizeof vols, "%s/vols", v->sub);
  assert_int_equal(store_open(&v->s, db, &e), 0);
  artifact_register(v->s);
  bundle_register(v->s);
  if (vol_store_open(&v->vs, vols, &e) < 0) fail_msg("%s", e.message);
}

static void env_close(struct env *v) {
  store_close(v->s);
  vol_store_close(v->vs);
}

static int extract(struct env *v, const char *path, enum bundle_conflict how, json_t *renames,
                   json_t **report, struct err *e) {
  struct bundle_ctx c = {.store = v->s, .volumes = v->vs};
  struct bundle_extract_opts o = {.on_conflict = how, .renames = renames};
  return bundle_extract(&c, NULL, path, &o, report, e);
}

static const char *const IGNORED[] = {
    "uri",   "category",           "eTag",     "etag", "created", "modified", "status",
    "state", "dependentArtifacts", "readOnly", NULL};

/* Compare every field of the zip's JSON with the stored document. Returns a
 * malloc'd description of the first difference, or NULL. */
static char *diff(struct store *s, int kind, json_t *zip, json_t *got) {
  const char *k;
  json_t *zv;
  json_object_foreach(zip, k, zv) {
    int skip = 0;
    for (const char *const *i = IGNORED; *i; i++)
      skip |= strcmp(*i, k) == 0;
    if (skip || (kind == 0 && strcmp(k, "customAttributes") == 0)) continue;
    json_t *gv = json_object_get(got, k);
    if (kind == 2 && (strcmp(k, "oeBuildPlanURI") == 0 || strcmp(k, "goldenImageURI") == 0)) {
      const char *coll = k[0] == 'o' ? "build-plans" : "golden-images";
      const char *ref = json_string_value(gv);
      const char *id = ref && strrchr(ref, '/') ? strrchr(ref, '/') + 1 : NULL;
      struct store_entry *en = id && *id ? store_get(s, coll, id) : NULL;
      const char *want = json_string_value(zv);
      int ok = en ? want && strcmp(en->name, want) == 0 : !want || !*want;
      store_entry_release(en);
      if (!ok) return util_strdup_printf("%s: zip %s, stored %s", k, want, ref);
      continue;
    }
    if (json_is_array(zv) && json_is_array(gv) && json_array_size(zv) == json_array_size(gv)) {
      for (size_t i = 0; i < json_array_size(zv); i++) {
        json_t *x = json_array_get(zv, i), *y = json_array_get(gv, i);
        if (json_equal(x, y)) continue;
        const char *ak;
        json_t *av;
        json_object_foreach(x, ak, av) {
          if (!json_equal(av, json_object_get(y, ak))) {
            char *a = json_dumps(av, JSON_ENCODE_ANY | JSON_COMPACT),
                 *b = json_dumps(json_object_get(y, ak), JSON_ENCODE_ANY | JSON_COMPACT);
            char *r = util_strdup_printf("%s[%zu].%s: zip %.300s, stored %.300s", k, i, ak, a,
                                         b ? b : "(absent)");
            free(a);
            free(b);
            return r;
          }
        }
        json_object_foreach(y, ak, av) {
          if (!json_object_get(x, ak))
            return util_strdup_printf("%s[%zu].%s: not in the zip", k, i, ak);
        }
      }
      continue;
    }
    if (json_is_array(zv) && json_is_array(gv))
      return util_strdup_printf("%s: %zu in the zip, %zu stored", k, json_array_size(zv),
                                json_array_size(gv));
    if (!json_equal(zv, gv)) {
      char *a = json_dumps(zv, JSON_ENCODE_ANY | JSON_COMPACT),
           *b = json_dumps(gv, JSON_ENCODE_ANY | JSON_COMPACT);
      char *r = util_strdup_printf("%s: zip %.300s, stored %.300s", k, a, b ? b : "(absent)");
      free(a);
      free(b);
      return r;
    }
  }
  return NULL;
}

static const char *const COLLS4[] = {"plan-scripts", "build-plans", "deployment-plans",
                                     "golden-images"};

/* HPE's layout: flags 0x0808, MS-DOS creator, deflate, member order PS (GIJ GI)
 * BP DP MANIFEST.MF SHA256SUM.sha256sum, JSON first key "type", server fields null. */
static void check_layout(const char *path) {
  struct err e;
  err_init(&e);
  int fd = open(path, O_RDONLY);
  struct bz z;
  assert_int_equal(bz_open(&z, fd, &e), 0);
  int rank = 0;
  for (size_t i = 0; i < z.n; i++) {
    struct bz_member *m = &z.m[i];
    assert_int_equal(m->flags, 0x0808);
    assert_int_equal(m->made_by, 0x0014);
    assert_int_equal(m->method, 8);
    int r = m->kind == BZ_PLAN_SCRIPT                          ? 0
            : m->kind == BZ_GOLDEN_JSON || m->kind == BZ_OTHER ? 1
            : m->kind == BZ_BUILD_PLAN                         ? 2
            : m->kind == BZ_DEPLOYMENT_PLAN                    ? 3
            : m->kind == BZ_MANIFEST                           ? 4
                                                               : 5;
    assert_true(r >= rank);
    rank = r;
    if (m->kind <= BZ_GOLDEN_JSON) {
      char *t;
      size_t l;
      assert_int_equal(bz_read_small(&z, i, 0, &t, &l, &e), 0);
      assert_int_equal(strncmp(t, "{\"type\":", 8), 0);
      json_t *d = json_loads(t, 0, NULL);
      const char *nulls[] = {"uri",     "category", "eTag",
                             "created", "modified", "dependentArtifacts"};
      for (size_t k = 0; k < sizeof nulls / sizeof *nulls;
           k++) /* (DPs have no dependentArtifacts) */
        assert_true(json_is_null(json_object_get(d, nulls[k])) ||
                    (k == 5 && !json_object_get(d, nulls[k])));
      json_decref(d);
      free(t);
    }
  }
  assert_int_equal(z.m[z.n - 1].kind, BZ_SHA256SUM);
  assert_int_equal(z.m[z.n - 2].kind, BZ_MANIFEST);
  bz_close(&z);
  close(fd);
}

/* Every plan script, build plan and deployment plan of b, as stored in v. */
static int compare(struct env *v, struct bundle_read *b, const char *what, const char *when) {
  int failures = 0;
  for (int k = 0; k < 3; k++) {
    size_t i;
    json_t *d;
    json_array_foreach(b->docs[k], i, d) {
      const char *id = json_string_value(json_object_get(d, k == 1 ? "buildPlanid" : "id"));
      struct store_entry *got = store_get(v->s, COLLS4[k], id);
      if (!got) {
        printf("MISSING%s %s: %s %s\n", when, what, COLLS4[k], id);
        failures++;
        continue;
      }
      char *dd = diff(v->s, k, d, got->doc);
      if (dd) {
        printf("DIFF%s %s: %s \"%s\": %s\n", when, what, COLLS4[k], got->name, dd);
        failures++;
        free(dd);
      }
      store_entry_release(got);
    }
  }
  return failures;
}

static void test_corpus_extract(void **state) {
  char **v = corpus();
  if (!v) skip();
  int failures = 0;
  for (size_t n = 0; v[n]; n++) {
    struct env en;
    char name[32];
    snprintf(name, sizeof name, "c%zu", n);
    env_open(&en, name);
    struct err e;
    err_init(&e);
    json_t *report = NULL;
    if (extract(&en, v[n], BUNDLE_STOP, NULL, &report, &e) < 0) {
      printf("EXTRACT %s: %s %s\n", v[n], e.code, e.message);
      failures++;
      err_clear(&e);
      env_close(&en);
      continue;
    }
    json_decref(report);
    struct bundle_read b;
    int fd = open(v[n], O_RDONLY);
    assert_int_equal(bundle_read_open(&b, fd, 0, &e), 0);
    failures += compare(&en, &b, v[n], "");
    /* Write it back as a bundle of everything extracted, read-only as the
     * original, and extract that into another empty store: lossless. */
    int ro = bundle_contents_read_only(b.contents);
    json_t *body = json_pack("{s:s, s:s, s:b, s:[], s:[], s:[], s:[]}", "name", "round trip",
                             "description", "rt \"q\"\nline", "withGoldenImages", 1, "planScripts",
                             "buildPlans", "deploymentPlans", "goldenImages");
    static const char *const LISTS[] = {"planScripts", "buildPlans", "deploymentPlans",
                                        "goldenImages"};
    for (int k = 0; k < 4; k++) {
      size_t i;
      json_t *d;
      json_array_foreach(b.docs[k], i, d) {
        const char *id = json_string_value(json_object_get(d, k == 1 ? "buildPlanid" : "id"));
        char *uri = util_strdup_printf("/rest/%s/%s", COLLS4[k], id);
        json_array_append_new(json_object_get(body, LISTS[k]),
                              json_pack("{s:s, s:b}", "resourceUri", uri, "readOnly", ro));
        free(uri);
      }
    }
    json_t *plan = bundle_create_plan(en.s, body, &e);
    if (!plan) fail_msg("%s: create plan: %s", v[n], e.message);
    json_decref(body);
    char out[600];
    snprintf(out, sizeof out, "%s/rt.zip", en.sub);
    struct bundle_ctx c = {.store = en.s, .volumes = en.vs};
    if (bundle_write(&c, plan, out, &e) < 0) fail_msg("%s: write: %s", v[n], e.message);
    json_decref(plan);
    json_t *c2 = bundle_inspect(out, 0, &e);
    if (!c2) fail_msg("%s: inspect of the written bundle: %s %s", v[n], e.code, e.message);
    assert_int_equal(json_integer_value(json_object_get(c2, "artifactsCount")),
                     json_integer_value(json_object_get(b.contents, "artifactsCount")));
    assert_true(json_is_true(json_object_get(json_object_get(c2, "integrity"), "verified")));
    assert_int_equal(bundle_contents_read_only(c2), ro);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c2, "manifest"), "description")),
        "rt \"q\"\nline");
    json_decref(c2);
    check_layout(out);
    struct env en2;
    snprintf(name, sizeof name, "r%zu", n);
    env_open(&en2, name);
    if (extract(&en2, out, BUNDLE_STOP, NULL, &report, &e) < 0) {
      printf("RE-EXTRACT %s: %s %s\n", v[n], e.code, e.message);
      failures++;
      err_clear(&e);
    } else {
      json_decref(report);
      failures += compare(&en2, &b, v[n], " (after a round trip)");
    }
    env_close(&en2);
    bundle_read_close(&b);
    close(fd);
    env_close(&en);
  }
  free_list(v);
  assert_int_equal(failures, 0);
}

static size_t count(struct env *v, const char *coll) { return store_count(v->s, coll); }

static size_t rep_n(json_t *r, const char *list) {
  return json_array_size(json_object_get(r, list));
}

static void test_conflicts(void **state) {
  struct env v;
  env_open(&v, "x");
  char a[512], b[512], c[512];
  snprintf(a, sizeof a, "%s/a.zip", dir);
  snprintf(b, sizeof b, "%s/b.zip", dir);
  snprintf(c, sizeof c, "%s/c.zip", dir);
  char psn[128], bpn[128];
  snprintf(psn, sizeof psn, "%s_planscript.json", PS_ID);
  snprintf(bpn, sizeof bpn, "%s_buildplan.json", BP_ID);
  char *ps = ps_json(PS_ID, "PS"), *bp = bp_json(BP_ID, PS_ID);
  struct mem ma[] = {{psn, ps, 0}, {bpn, bp, 0}, {"MANIFEST.MF", MF, 0}};
  build(a, ma, 3, 1);
  /* B: the same names and ids, the plan script's content changed. */
  char *ps2 = util_strdup_printf(
      "{\"type\":\"PlanScript\",\"id\":\"%s\",\"name\":\"PS\",\"description\":\"x\","
      "\"planType\":\"deploy\",\"content\":\"echo changed\",\"hpProvided\":false}",
      PS_ID);
  struct mem mb[] = {{psn, ps2, 0}, {bpn, bp, 0}, {"MANIFEST.MF", MF, 0}};
  build(b, mb, 3, 1);
  struct err e;
  err_init(&e);
  json_t *r = NULL;
  /* Into an empty store: created, ids kept. */
  assert_int_equal(extract(&v, a, BUNDLE_STOP, NULL, &r, &e), 0);
  assert_int_equal(rep_n(r, "created"), 2);
  json_decref(r);
  struct store_entry *en = store_get(v.s, "plan-scripts", PS_ID);
  assert_non_null(en);
  assert_true(json_is_false(json_object_get(en->doc, "readOnly")));
  store_entry_release(en);
  /* Again: identical artifacts are reused, nothing new. */
  assert_int_equal(extract(&v, a, BUNDLE_STOP, NULL, &r, &e), 0);
  assert_int_equal(rep_n(r, "reused"), 2);
  assert_int_equal(rep_n(r, "created"), 0);
  json_decref(r);
  assert_int_equal(count(&v, "plan-scripts"), 1);
  /* Different content: stop lists the conflicts, nothing changes. */
  assert_int_equal(extract(&v, b, BUNDLE_STOP, NULL, &r, &e), -1);
  assert_int_equal(e.status, 409);
  assert_string_equal(e.code, "BUNDLE_CONFLICTS");
  assert_int_equal(json_array_size(e.nested), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(e.nested, 0), "type")),
                      "PlanScript");
  err_clear(&e);
  assert_int_equal(count(&v, "plan-scripts"), 1);
  assert_int_equal(count(&v, "build-plans"), 1);
  /* Rename: "PS (2)" under a new id, the build plan copy refers to it. */
  assert_int_equal(extract(&v, b, BUNDLE_RENAME, NULL, &r, &e), 0);
  assert_int_equal(rep_n(r, "renamed"), 2);
  json_decref(r);
  en = store_get_by_name(v.s, "plan-scripts", "PS (2)");
  assert_non_null(en);
  assert_string_not_equal(en->id, PS_ID);
  struct store_entry *bp2 = store_get_by_name(v.s, "build-plans", "BP (2)");
  assert_non_null(bp2);
  const char *uri = json_string_value(
      json_object_get(json_array_get(json_object_get(bp2->doc, "buildStep"), 0), "planScriptUri"));
  assert_non_null(strstr(uri, en->id));
  store_entry_release(en);
  store_entry_release(bp2);
  /* Explicit renames. */
  json_t *ren =
      json_pack("[{s:s, s:s, s:s}]", "type", "PlanScript", "name", "PS", "newName", "Mine");
  assert_int_equal(extract(&v, b, BUNDLE_RENAME, ren, &r, &e), 0);
  json_decref(r);
  en = store_get_by_name(v.s, "plan-scripts", "Mine");
  assert_non_null(en);
  store_entry_release(en);
  json_decref(ren);
  ren = json_pack("[{s:s, s:s, s:s}]", "type", "PlanScript", "name", "nope", "newName", "X");
  assert_int_equal(extract(&v, b, BUNDLE_RENAME, ren, &r, &e), -1);
  assert_int_equal(e.status, 400);
  json_decref(ren);
  /* Replace: in place, same id. */
  assert_int_equal(extract(&v, b, BUNDLE_REPLACE, NULL, &r, &e), 0);
  assert_int_equal(rep_n(r, "replaced"), 1);
  assert_int_equal(rep_n(r, "reused"), 1); /* the build plan is then identical */
  json_decref(r);
  en = store_get(v.s, "plan-scripts", PS_ID);
  assert_string_equal(json_string_value(json_object_get(en->doc, "content")), "echo changed");
  store_entry_release(en);
  /* A read-only bundle: artifacts read-only; replace refuses them. */
  const char *ro_mf = "Artifact Name:R\nDescription:\nRead Only:true\nTime Stamp:2021-01-01T00:00:"
                      "00.000Z\nArtifact Type:USER";
  char *ps3 = ps_json("33333333-2222-3333-4444-555555555555", "RO");
  char ps3n[128];
  snprintf(ps3n, sizeof ps3n, "%s_planscript.json", "33333333-2222-3333-4444-555555555555");
  struct mem mc[] = {{ps3n, ps3, 0}, {"MANIFEST.MF", ro_mf, 0}};
  build(c, mc, 2, 1);
  assert_int_equal(extract(&v, c, BUNDLE_STOP, NULL, &r, &e), 0);
  json_decref(r);
  en = store_get_by_name(v.s, "plan-scripts", "RO");
  assert_true(json_is_true(json_object_get(en->doc, "readOnly")));
  assert_int_equal(artifact_delete(v.s, ART_PLAN_SCRIPT, en->id, NULL, &e), -1);
  assert_string_equal(e.code, "ARTIFACT_READ_ONLY");
  store_entry_release(en);
  free(ps3);
  ps3 = util_strdup_printf("{\"type\":\"PlanScript\",\"id\":\"%s\",\"name\":\"RO\",\"planType\":"
                           "\"general\",\"content\":\"echo\"}",
                           "33333333-2222-3333-4444-555555555555");
  struct mem md[] = {{ps3n, ps3, 0}, {"MANIFEST.MF", MF, 0}};
  build(c, md, 2, 1);
  assert_int_equal(extract(&v, c, BUNDLE_REPLACE, NULL, &r, &e), -1);
  assert_string_equal(e.code, "BUNDLE_CONFLICTS");
  err_clear(&e);
  free(ps3);
  free(ps);
  free(ps2);
  free(bp);
  env_close(&v);
}

static void test_create_backup_restore(void **state) {
  struct env v;
  env_open(&v, "b");
  char a[512], out[512];
  snprintf(a, sizeof a, "%s/a.zip", dir);
  snprintf(out, sizeof out, "%s/backup.zip", dir);
  char psn[128], bpn[128];
  snprintf(psn, sizeof psn, "%s_planscript.json", PS_ID);
  snprintf(bpn, sizeof bpn, "%s_buildplan.json", BP_ID);
  char *ps = ps_json(PS_ID, "PS"), *bp = bp_json(BP_ID, PS_ID);
  struct mem ma[] = {{psn, ps, 0}, {bpn, bp, 0}, {"MANIFEST.MF", MF, 0}};
  build(a, ma, 3, 1);
  struct err e;
  err_init(&e);
  json_t *r = NULL;
  assert_int_equal(extract(&v, a, BUNDLE_STOP, NULL, &r, &e), 0);
  json_decref(r);
  /* Create: a missing artifact is 404; the build plan pulls in its plan script. */
  json_t *body = json_pack("{s:s, s:[{s:s}]}", "name", "N", "buildPlans", "resourceUri",
                           "/rest/build-plans/nope");
  assert_null(bundle_create_plan(v.s, body, &e));
  assert_int_equal(e.status, 404);
  json_decref(body);
  char *uri = util_strdup_printf("/rest/build-plans/%s", BP_ID);
  body = json_pack("{s:s, s:[{s:s, s:s}]}", "name", "N", "buildPlans", "resourceUri", uri,
                   "readOnly", "true");
  free(uri);
  json_t *plan = bundle_create_plan(v.s, body, &e);
  assert_non_null(plan);
  json_decref(body);
  assert_int_equal(json_array_size(json_object_get(plan, "planScripts")), 1);
  assert_true(json_is_true(json_object_get(plan, "readOnly")));
  json_decref(plan);
  body = json_pack("{s:s}", "name", "N");
  assert_null(bundle_create_plan(v.s, body, &e));
  assert_int_equal(e.status, 400);
  json_decref(body);
  /* Backup, change things, restore. */
  plan = bundle_backup_plan(v.s, &e);
  assert_non_null(plan);
  struct bundle_ctx c = {.store = v.s, .volumes = v.vs};
  assert_int_equal(bundle_write(&c, plan, out, &e), 0);
  json_decref(plan);
  assert_int_equal(artifact_delete(v.s, ART_BUILD_PLAN, BP_ID, NULL, &e), 0);
  json_t *upd = json_pack("{s:s, s:s, s:s, s:s}", "name", "PS renamed", "planType", "general",
                          "content", "echo new", "description", "");
  assert_int_equal(artifact_update(v.s, ART_PLAN_SCRIPT, PS_ID, upd, NULL, NULL, &e), 0);
  json_decref(upd);
  upd = json_pack("{s:s, s:s, s:s}", "name", "Kept", "planType", "general", "content", "echo");
  assert_int_equal(artifact_create(v.s, ART_PLAN_SCRIPT, upd, NULL, &e), 0);
  json_decref(upd);
  assert_int_equal(bundle_restore(&c, out, &r, &e), 0);
  json_decref(r);
  struct store_entry *en = store_get(v.s, "plan-scripts", PS_ID);
  assert_string_equal(en->name, "PS");
  assert_string_equal(json_string_value(json_object_get(en->doc, "content")), "echo @A:1@");
  store_entry_release(en);
  en = store_get(v.s, "build-plans", BP_ID);
  assert_non_null(en);
  store_entry_release(en);
  en = store_get_by_name(v.s, "plan-scripts", "Kept");
  assert_non_null(en);
  store_entry_release(en);
  free(ps);
  free(bp);
  env_close(&v);
}

/* A level-1 member made of 1 MiB chunks of every kind (random: stored blocks; zeros:
 * ready-made blocks; text and a chunk random in its first half only: deflated; a short
 * tail) inflates back to the same bytes with the CRC-32 the zip records, and the random
 * chunks cost their size plus block headers, no more. */
static void test_payload_chunks(void **state) {
  enum { MB = 1 << 20, N = 7 };
  unsigned char *data = malloc((size_t)N * MB + 1000);
  assert_non_null(data);
  uint32_t x = 12345;
  for (size_t i = 0; i < (size_t)N * MB + 1000; i++) {
    x = x * 1103515245u + 12345u;
    data[i] = (unsigned char)(x >> 23);
  }
  memset(data + 1 * (size_t)MB, 0, MB); /* zeros */
  for (size_t i = 0; i < MB; i++)       /* text */
    data[2 * (size_t)MB + i] = (unsigned char)("deflate me, please "[i % 19]);
  memset(data + 4 * (size_t)MB + MB / 2, 0, MB / 2); /* half random, half zeros */
  memset(data + 5 * (size_t)MB, 0, MB);              /* zeros again; 0, 3, 6 stay random */
  size_t total = (size_t)N * MB + 1000;
  char path[300];
  snprintf(path, sizeof path, "%s/chunks.zip", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  struct bzw *w = bzw_open(fd, 1600000000000LL);
  struct err e;
  err_init(&e);
  assert_int_equal(bzw_begin(w, "disk.raw", 1, total, &e), 0);
  for (size_t off = 0; off < total; off += MB)
    assert_int_equal(bzw_data(w, data + off, total - off < MB ? total - off : MB, &e), 0);
  assert_int_equal(bzw_end(w, NULL, &e), 0);
  assert_int_equal(bzw_finish(w, &e), 0);
  bzw_free(w);
  close(fd);
  size_t len;
  unsigned char *zip = slurp(path, &len);
  /* the local header, then the raw deflate data */
  assert_true(len > 30 && zip[0] == 'P' && zip[1] == 'K');
  size_t start = 30 + (zip[26] | zip[27] << 8) + (zip[28] | zip[29] << 8);
  unsigned char *out = malloc(total + 1);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(inflateInit2(&zs, -15), Z_OK);
  zs.next_in = zip + start;
  zs.avail_in = (uInt)(len - start);
  zs.next_out = out;
  zs.avail_out = (uInt)total + 1;
  assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
  assert_int_equal(zs.total_out, total);
  assert_memory_equal(out, data, total);
  size_t csize = zs.total_in;
  inflateEnd(&zs);
  /* the data descriptor after it: signature, CRC-32, sizes */
  const unsigned char *dd = zip + start + csize;
  assert_true(dd[0] == 'P' && dd[1] == 'K' && dd[2] == 7 && dd[3] == 8);
  uint32_t crc = (uint32_t)(dd[4] | dd[5] << 8 | dd[6] << 16 | (uint32_t)dd[7] << 24);
  assert_int_equal(crc, (uint32_t)crc32(0, data, (uInt)total));
  /* three random chunks stored (5 bytes per 64 KiB block), the rest far smaller */
  size_t stored = 3 * ((size_t)MB + 17 * 5);
  assert_true(csize >= stored);
  assert_true(csize < stored + MB / 2 + 64 * 1024);
  free(out);
  free(zip);
  free(data);
}

int main(void) {
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_corpus_inspect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_manifest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corpus_extract, setup, teardown),
      cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_backup_restore, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payload_chunks, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
