/* osvolume.c — OS volumes: document ("os-volumes"), volume (src/vol) and
 * iSCSI export (src/iscsi) kept consistent.
 *
 * The order of every change is chosen so that a crash at any point leaves a
 * state osvol_service_open can finish:
 *   create: document "Creating" -> vol_os_create -> iscsi_export -> "OK".
 *           Open finds "Creating": the task was interrupted, so the volume
 *           (if any) and the document are removed.
 *   delete: document "Deleting" -> iscsi_unexport (drops sessions) ->
 *           vol_os_delete (itself crash-safe) -> document removed.
 *           Open finds "Deleting": the volume (if any) and the document are
 *           removed.
 * Any other document is exported again at open.
 *
 * CHAP secrets live in the document's "secrets" object, which the public
 * rendering (every GET, list, filter) leaves out; they are never logged nor
 * written to the volume's log ("log", GET /rest/os-volumes/archive/{x}). */
#include "deploy/osvolume.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "artifact/artifact.h"
#include "iscsi/iscsi.h"
#include "vol/vol.h"

#define LOG_MAX (64u << 10) /* bytes of a volume's log kept (oldest lines dropped) */
#define DESC_MAX 65536
#define CHAP_NAME_MAX 255
#define CHAP_SECRET_MIN 12 /* RFC 7143 12.1.3 */
#define CHAP_SECRET_MAX 255
#define CHAP_TOKEN_BYTES 12 /* generated secrets: 16 characters (Windows takes 12..16) */

struct osvol_service {
  struct store *s;
  struct vol_store *vs;
  struct iscsi_srv *iscsi;
};

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

/* ---- the public rendering ------------------------------------------------------ */
static const char *const HIDDEN[] = {"secrets", "log", "deployLog", NULL};

static char *render_osvol(json_t *doc) {
  json_t *c = json_copy(doc);
  for (const char *const *h = HIDDEN; c && *h; h++)
    json_object_del(c, *h);
  char *s = c ? json_dumps(c, JSON_COMPACT) : NULL;
  json_decref(c);
  return s;
}

static json_t *public_doc(json_t *doc) {
  json_t *c = json_deep_copy(doc);
  for (const char *const *h = HIDDEN; c && *h; h++)
    json_object_del(c, *h);
  return c;
}

/* ---- the volume's log ------------------------------------------------------------- */
static void doc_log(json_t *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void doc_log(json_t *doc, const char *fmt, ...) {
  char line[1400], ts[32];
  util_iso8601(util_now_ms(), ts);
  int n = snprintf(line, sizeof line, "%s ", ts);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  strcat(line, "\n");
  const char *old = json_string_value(json_object_get(doc, "log"));
  if (!old) old = "";
  size_t ol = strlen(old), ll = strlen(line);
  const char *keep = old;
  if (ol + ll > LOG_MAX) { /* drop whole lines from the front */
    keep = old + (ol + ll - LOG_MAX);
    const char *nl = strchr(keep, '\n');
    keep = nl ? nl + 1 : old + ol;
  }
  char *text = util_strdup_printf("%s%s", keep, line);
  if (text) json_object_set_new(doc, "log", json_string(text));
  free(text);
}

/* ---- sizes ---------------------------------------------------------------------------- */
static int size_error(struct err *e, const char *what) {
  err_set(e, 400, "INVALID_SIZE",
          "OS volume: \"size\" must be a number of bytes or a string such as \"10G\", \"512M\" "
          "or \"1T\" (K, M, G, T are powers of 1024), not %.100s",
          what);
  return -1;
}

int osvol_parse_size(json_t *v, uint64_t *out, struct err *e) {
  *out = 0;
  if (!v || json_is_null(v)) return 0;
  uint64_t bytes = 0;
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0) return size_error(e, "a negative number");
    bytes = (uint64_t)json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d < 0 || d != (double)(uint64_t)d || d > (double)(1ull << 62))
      return size_error(e, "a fraction or negative number");
    bytes = (uint64_t)d;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v), *p = s;
    char shown[120];
    snprintf(shown, sizeof shown, "\"%.100s\"", s);
    while (*p == ' ')
      p++;
    if (*p < '0' || *p > '9') return size_error(e, shown);
    uint64_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
      if (n > (UINT64_MAX - 9) / 10) return size_error(e, shown);
      n = n * 10 + (uint64_t)(*p - '0');
    }
    while (*p == ' ')
      p++;
    unsigned shift = 0;
    static const char UNITS[] = "KMGTP";
    const char *u = *p ? strchr(UNITS, *p >= 'a' ? *p - 32 : *p) : NULL;
    if (u && *u) {
      shift = 10u * (unsigned)(u - UNITS + 1);
      p++;
      if (*p == 'i') p++;
    }
    if (*p == 'B' || *p == 'b') p++;
    while (*p == ' ')
      p++;
    if (*p) return size_error(e, shown);
    if (shift && n > (UINT64_MAX >> shift)) return size_error(e, shown);
    bytes = n << shift;
  } else {
    return size_error(e, "a value of another type");
  }
  if (bytes > OSVOL_MAX_SIZE) {
    err_set(e, 400, "INVALID_SIZE",
            "OS volume: a size of %llu bytes is more than the largest OS volume, 64 TiB",
            (unsigned long long)bytes);
    return -1;
  }
  *out = (bytes + 511) & ~511ull; /* whole 512-byte blocks */
  return 0;
}

/* ---- initiator names (RFC 3720 3.2.6.3) -------------------------------------------------- */
static int is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
  }
  return 1;
}

static int lower_alnum(char c) {
  c = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int osvol_initiator_valid(const char *n) {
  size_t len = n ? strlen(n) : 0;
  if (len < 5 || len > 223) return 0;
  if (!strncasecmp(n, "eui.", 4)) return len == 20 && is_hex(n + 4, 16);
  if (!strncasecmp(n, "naa.", 4)) return (len == 20 || len == 36) && is_hex(n + 4, len - 4);
  if (strncasecmp(n, "iqn.", 4)) return 0;
  /* iqn.YYYY-MM.<reversed domain name>[:<unique name>] */
  const char *p = n + 4;
  for (int i = 0; i < 7; i++)
    if (i == 4 ? p[i] != '-' : (p[i] < '0' || p[i] > '9')) return 0;
  int month = (p[5] - '0') * 10 + (p[6] - '0');
  if (month < 1 || month > 12 || p[7] != '.') return 0;
  p += 8;
  /* the naming authority: labels of letters, digits and '-', dot-separated */
  size_t label = 0;
  int labels = 0;
  for (; *p && *p != ':'; p++) {
    if (*p == '.') {
      if (!label) return 0;
      label = 0;
      continue;
    }
    if (!lower_alnum(*p) && *p != '-') return 0;
    if (!label++) labels++;
  }
  if (!label || !labels) return 0;
  if (!*p) return 1;
  p++; /* the unique name: letters, digits, '-', '.', ':' */
  if (!*p) return 0;
  for (; *p; p++)
    if (!lower_alnum(*p) && !strchr("-.:", *p)) return 0;
  return 1;
}

/* The stored form: iqn names lower-case (RFC 3722 stringprep folds case), eui
 * and naa with a lower-case prefix and upper-case hex. malloc'd. */
static char *initiator_normal(const char *n) {
  char *c = strdup(n);
  if (!c) return NULL;
  int iqn = !strncasecmp(c, "iqn.", 4);
  for (char *p = c; *p; p++) {
    if (iqn || p < c + 4)
      *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    else
      *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
  }
  return c;
}

/* Check the initiator list (a JSON array of strings, or a single string)
 * and return it normalized; NULL with e set. */
static json_t *initiators_check(json_t *list, int allow_any, struct err *e) {
  if (json_is_string(list)) {
    json_t *a = json_array();
    json_array_append(a, list);
    json_t *r = initiators_check(a, allow_any, e);
    json_decref(a);
    return r;
  }
  if (!json_is_array(list) || json_array_size(list) == 0) {
    err_set(e, 400, "INVALID_INITIATOR",
            "OS volume: \"initiatorNames\" must list the iSCSI initiator names (IQN, EUI or NAA) "
            "that may use the volume; at least one is needed");
    err_action(e, "Give the server's initiator name, e.g. \"initiatorNames\": "
                  "[\"iqn.2004-10.com.ubuntu:01:1a2b3c4d5e6f\"].");
    return NULL;
  }
  if (json_array_size(list) > OSVOL_MAX_INITIATORS) {
    err_set(e, 400, "INVALID_INITIATOR", "OS volume: at most %d initiator names are allowed",
            OSVOL_MAX_INITIATORS);
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    const char *n = json_string_value(v);
    if (!n) {
      err_set(e, 400, "INVALID_INITIATOR", "OS volume: \"initiatorNames\" must hold strings");
      goto fail;
    }
    if (is(n, "*")) {
      if (!allow_any || json_array_size(list) != 1) {
        err_set(e, 400, "INVALID_INITIATOR",
                "OS volume: the initiator name \"*\" (any initiator) is allowed only alone and "
                "with \"allowAnyInitiator\": true");
        err_action(e, "List the servers' initiator names, or send \"allowAnyInitiator\": true "
                      "for a volume any initiator may use.");
        goto fail;
      }
      json_array_append_new(out, json_string("*"));
      continue;
    }
    if (!osvol_initiator_valid(n)) {
      err_set(e, 400, "INVALID_INITIATOR",
              "OS volume: \"%.240s\" is not an iSCSI initiator name: expected "
              "iqn.YYYY-MM.reversed.domain[:name], eui. and 16 hex digits, or naa. and 16 or 32 "
              "hex digits (RFC 3720 3.2.6.3)",
              n);
      goto fail;
    }
    char *norm = initiator_normal(n);
    if (!norm) {
      oom(e);
      goto fail;
    }
    size_t j;
    json_t *w;
    json_array_foreach(out, j, w) {
      if (is(json_string_value(w), norm)) {
        err_set(e, 400, "INVALID_INITIATOR", "OS volume: the initiator \"%s\" is listed twice",
                norm);
        free(norm);
        goto fail;
      }
    }
    json_array_append_new(out, json_string(norm));
    free(norm);
  }
  return out;
fail:
  json_decref(out);
  return NULL;
}

/* ---- CHAP --------------------------------------------------------------------------------- */
static int printable(const char *s, int space_ok) {
  for (; *s; s++)
    if ((unsigned char)*s < (space_ok ? 0x20 : 0x21) || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

static int check_chap_name(const char *key, const char *v, struct err *e) {
  if (!v) return 0;
  size_t n = strlen(v);
  if (n == 0 || n > CHAP_NAME_MAX || !printable(v, 0)) {
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: \"%s\" must be 1 to %d printable ASCII characters without spaces", key,
            CHAP_NAME_MAX);
    return -1;
  }
  return 0;
}

static int check_chap_secret(const char *key, const char *v, struct err *e) {
  if (!v) return 0;
  size_t n = strlen(v);
  if (n < CHAP_SECRET_MIN || n > CHAP_SECRET_MAX || !printable(v, 1)) {
    /* the value itself is never repeated */
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: \"%s\" must be %d to %d printable ASCII characters (RFC 7143 12.1.3 wants "
            "at least 12 bytes); the one given has %zu",
            key, CHAP_SECRET_MIN, CHAP_SECRET_MAX, n);
    err_action(e, "Choose a longer secret, or leave it out and let the server generate one.");
    return -1;
  }
  return 0;
}

/* ---- body fields ---------------------------------------------------------------------------- */
static const char *const WRITABLE[] = {
    "name",       "description", "initiatorNames", "allowAnyInitiator", "chap",  "chapName",
    "chapSecret", "mutualChap",  "mutualChapName", "mutualChapSecret",  "iscsi", NULL};
/* Set only at creation. */
static const char *const CREATE_ONLY[] = {"size", "goldenImageUri", "goldenImageURI",
                                          "goldenVolumeUri", NULL};
/* The server's own: accepted and ignored. */
static const char *const IGNORED[] = {"uri",
                                      "category",
                                      "eTag",
                                      "etag",
                                      "created",
                                      "modified",
                                      "state",
                                      "status",
                                      "statusMessage",
                                      "oeVolumeId",
                                      "oeVolumeIQN",
                                      "oeVolumeIp",
                                      "allocatedBytes",
                                      "dependentArtifacts",
                                      "deploymentClusterUri",
                                      "statelessServerUri",
                                      "scopesUri",
                                      "initialScopeUris",
                                      NULL};

static int in_list(const char *const *list, const char *k) {
  for (; *list; list++)
    if (strcmp(*list, k) == 0) return 1;
  return 0;
}

/* A key of the body, or (for the keys a GET shows there) of its "iscsi" object. */
static json_t *field(json_t *body, const char *key) {
  json_t *v = json_object_get(body, key);
  if (v && !json_is_null(v)) return v;
  if (is(key, "initiatorNames") || is(key, "chap") || is(key, "chapName") ||
      is(key, "mutualChap")) {
    v = json_object_get(json_object_get(body, "iscsi"), key);
    if (v && !json_is_null(v)) return v;
  }
  return NULL;
}

static int check_keys(json_t *body, int create, const char *id, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "the request body must be a JSON object (an OS volume)");
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    if (in_list(WRITABLE, key) || in_list(IGNORED, key)) continue;
    if (in_list(CREATE_ONLY, key)) continue; /* an update compares them (check_fixed) */
    if (is(key, "type")) {
      const char *ts = json_string_value(v);
      if (!json_is_null(v) && (!ts || (strcasecmp(ts, "OSVolume") && strcasecmp(ts, "OeVolume")))) {
        err_set(e, 400, "INVALID_TYPE", "\"type\" must be \"OSVolume\" for os-volumes");
        return -1;
      }
      continue;
    }
    if (is(key, "id")) {
      const char *bid = json_string_value(v);
      if (!create && bid && *bid && !is(bid, id)) {
        err_set(e, 400, "ID_MISMATCH", "the body's id \"%.100s\" does not match the URI's \"%s\"",
                bid, id);
        return -1;
      }
      continue;
    }
    err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in an OSVolume", key);
    err_action(e, "Remove the field or correct its spelling (see docs/api.md#os-volumes).");
    return -1;
  }
  json_t *iscsi = json_object_get(body, "iscsi");
  if (iscsi && !json_is_null(iscsi) && !json_is_object(iscsi)) {
    err_set(e, 400, "INVALID_FIELD", "OS volume: \"iscsi\" must be an object");
    return -1;
  }
  return 0;
}

static int get_string(json_t *body, const char *key, const char **out, struct err *e) {
  json_t *v = field(body, key);
  *out = NULL;
  if (!v) return 0;
  if (!json_is_string(v)) {
    err_set(e, 400, "INVALID_FIELD", "OS volume: \"%s\" must be a string", key);
    return -1;
  }
  *out = json_string_value(v);
  return 0;
}

/* -1 absent, 0/1, or -2 (error set) when not a boolean. */
static int get_bool(json_t *body, const char *key, struct err *e) {
  json_t *v = field(body, key);
  if (!v) return -1;
  int b = util_json_bool(v);
  if (b < 0) {
    err_set(e, 400, "INVALID_FIELD", "OS volume: \"%s\" must be true or false", key);
    return -2;
  }
  return b;
}

static int check_description(json_t *v, struct err *e) {
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v) || strlen(json_string_value(v)) > DESC_MAX) {
    err_set(e, 400, "INVALID_FIELD",
            "OS volume: \"description\" must be a string of at most %d bytes", DESC_MAX);
    return -1;
  }
  return 0;
}

void osvol_params_free(struct osvol_params *p) {
  if (!p) return;
  free((void *)p->initiators);
  p->initiators = NULL;
  p->ninitiators = 0;
}

int osvol_params_parse(json_t *body, struct osvol_params *p, struct err *e) {
  memset(p, 0, sizeof *p);
  if (check_keys(body, 1, NULL, e) < 0) return -1;
  const char *golden = NULL, *g1 = NULL, *g2 = NULL, *g3 = NULL;
  if (get_string(body, "name", &p->name, e) < 0 ||
      get_string(body, "chapName", &p->chap_name, e) < 0 ||
      get_string(body, "chapSecret", &p->chap_secret, e) < 0 ||
      get_string(body, "mutualChapName", &p->mutual_name, e) < 0 ||
      get_string(body, "mutualChapSecret", &p->mutual_secret, e) < 0)
    return -1;
  json_t *gv[3] = {json_object_get(body, "goldenImageUri"), json_object_get(body, "goldenImageURI"),
                   json_object_get(body, "goldenVolumeUri")};
  const char **gs[3] = {&g1, &g2, &g3};
  for (int i = 0; i < 3; i++) {
    if (!gv[i] || json_is_null(gv[i])) continue;
    if (!json_is_string(gv[i])) {
      err_set(e, 400, "INVALID_FIELD", "OS volume: \"goldenImageUri\" must be a string");
      return -1;
    }
    *gs[i] = json_string_value(gv[i]);
    if (**gs[i]) golden = *gs[i];
  }
  p->golden_ref = golden;
  json_t *desc = json_object_get(body, "description");
  if (check_description(desc, e) < 0) return -1;
  p->description = json_string_value(desc);
  if (osvol_parse_size(json_object_get(body, "size"), &p->size, e) < 0) return -1;
  int any = get_bool(body, "allowAnyInitiator", e), chap = get_bool(body, "chap", e),
      mutual = get_bool(body, "mutualChap", e);
  if (any == -2 || chap == -2 || mutual == -2) return -1;
  p->allow_any_initiator = any == 1;
  /* A chosen secret or name turns CHAP on; "chap": false with one is a contradiction. */
  int chap_given = p->chap_secret || p->chap_name;
  int mutual_given = p->mutual_secret || p->mutual_name;
  if ((chap == 0 && chap_given) || (mutual == 0 && mutual_given)) {
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: a CHAP name or secret was given with \"chap\" (or \"mutualChap\") false");
    return -1;
  }
  p->mutual_chap = mutual == 1 || mutual_given;
  p->chap = chap == 1 || chap_given || p->mutual_chap;
  if (p->mutual_chap && chap == 0) {
    err_set(e, 400, "INVALID_CHAP", "OS volume: mutual CHAP needs one-way CHAP (\"chap\": true)");
    return -1;
  }
  json_t *inits = field(body, "initiatorNames");
  if (json_is_string(inits)) {
    p->initiators = malloc(sizeof(char *));
    if (!p->initiators) return oom(e);
    ((const char **)p->initiators)[0] = json_string_value(inits);
    p->ninitiators = 1;
  } else if (json_is_array(inits)) {
    size_t n = json_array_size(inits);
    p->initiators = calloc(n ? n : 1, sizeof(char *));
    if (!p->initiators) return oom(e);
    for (size_t i = 0; i < n; i++) {
      const char *s = json_string_value(json_array_get(inits, i));
      if (!s) {
        osvol_params_free(p);
        err_set(e, 400, "INVALID_INITIATOR", "OS volume: \"initiatorNames\" must hold strings");
        return -1;
      }
      ((const char **)p->initiators)[i] = s;
    }
    p->ninitiators = n;
  } else if (inits) {
    err_set(e, 400, "INVALID_INITIATOR",
            "OS volume: \"initiatorNames\" must be an array of initiator names");
    return -1;
  }
  return 0;
}

/* ---- iSCSI -------------------------------------------------------------------------------------
 */
static json_t *portals_json(struct osvol_service *svc) {
  json_t *a = json_array();
  if (!svc->iscsi) return a;
  size_t n = 0;
  const char *const *v = iscsi_portals(svc->iscsi, &n);
  for (size_t i = 0; v && i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* "10.0.0.5:3260" -> "10.0.0.5", "[fd00::1]:3260" -> "fd00::1"; "" when none. */
static json_t *portal_ip(json_t *portals) {
  const char *p = json_string_value(json_array_get(portals, 0));
  if (!p) return json_string("");
  char buf[128];
  snprintf(buf, sizeof buf, "%s", p[0] == '[' ? p + 1 : p);
  char *end = p[0] == '[' ? strchr(buf, ']') : strrchr(buf, ':');
  if (end) *end = 0;
  return json_string(buf);
}

struct spec_buf {
  struct iscsi_export_spec spec;
  const char *inits[OSVOL_MAX_INITIATORS];
};

/* The export of document `doc` (strings borrowed from it). */
static void spec_of(json_t *doc, struct vol *v, struct spec_buf *b) {
  memset(b, 0, sizeof *b);
  json_t *iscsi = json_object_get(doc, "iscsi"), *sec = json_object_get(doc, "secrets");
  b->spec.target_name = json_string_value(json_object_get(iscsi, "targetName"));
  b->spec.alias = json_string_value(json_object_get(doc, "name"));
  b->spec.unit_id = json_string_value(json_object_get(doc, "id"));
  b->spec.vol = v;
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(iscsi, "initiatorNames"), i, n) {
    if (i < OSVOL_MAX_INITIATORS) b->inits[b->spec.ninitiators++] = json_string_value(n);
  }
  b->spec.initiators = b->inits;
  if (json_is_true(json_object_get(iscsi, "chap"))) {
    b->spec.chap_name = json_string_value(json_object_get(iscsi, "chapName"));
    b->spec.chap_secret = json_string_value(json_object_get(sec, "chapSecret"));
    if (json_is_true(json_object_get(iscsi, "mutualChap"))) {
      b->spec.mutual_name = json_string_value(json_object_get(sec, "mutualChapName"));
      b->spec.mutual_secret = json_string_value(json_object_get(sec, "mutualChapSecret"));
    }
  }
}

static const char *target_of(json_t *doc) {
  return json_string_value(json_object_get(json_object_get(doc, "iscsi"), "targetName"));
}

/* Open volume `id` and export it as described by `doc`. */
static int export_doc(struct osvol_service *svc, json_t *doc, struct err *e) {
  struct vol *v = NULL;
  const char *id = json_string_value(json_object_get(doc, "id"));
  if (vol_os_open(svc->vs, id, &v, e) < 0) return -1;
  struct spec_buf b;
  spec_of(doc, v, &b);
  if (iscsi_export(svc->iscsi, &b.spec, e) < 0) {
    vol_close(v);
    return -1;
  }
  return 0;
}

/* Put the export of volume document `doc` back as doc says (its ACL, CHAP and alias),
 * after a change whose store commit failed; logged when even that fails. */
static void export_restore(struct osvol_service *svc, json_t *doc) {
  if (!svc->iscsi || !iscsi_exported(svc->iscsi, target_of(doc))) return;
  struct spec_buf b;
  spec_of(doc, NULL, &b);
  struct err e;
  err_init(&e);
  if (iscsi_update(svc->iscsi, &b.spec, &e) < 0)
    log_error("osvol", "OS volume %s: cannot put its target's ACL back: %s",
              json_string_value(json_object_get(doc, "id")), e.message);
  err_clear(&e);
}

/* ---- documents ----------------------------------------------------------------------------------
 */
/* Bytes the volume's own files take (DIR/os/<id>/{data,meta}, vol.h's layout). */
static uint64_t allocated_of(struct osvol_service *svc, const char *id) {
  uint64_t n = 0;
  static const char *const files[] = {"data", "meta"};
  for (int i = 0; i < 2; i++) {
    char *p = util_strdup_printf("%s/os/%s/%s", vol_store_dir(svc->vs), id, files[i]);
    struct stat st;
    if (p && stat(p, &st) == 0) n += (uint64_t)st.st_blocks * 512u;
    free(p);
  }
  return n;
}

struct doc_change {
  const char *state, *status, *message; /* NULL = unchanged */
  const char *log;                      /* a line for the volume's log, or NULL */
  int allocated;                        /* 1: refresh allocatedBytes */
  int portals;                          /* 1: refresh the portals and oeVolumeIp */
  const char *deploy_log;               /* the deployment's log (hidden "deployLog"), or NULL */
};

/* Apply c to document `id` in a transaction of its own. */
static int doc_apply(struct osvol_service *svc, const char *id, const struct doc_change *c,
                     struct err *e) {
  struct store_txn *t = store_begin(svc->s);
  if (!t) return oom(e);
  struct store_entry *en = store_txn_get(t, OSVOL_COLL, id);
  if (!en) {
    store_rollback(t);
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return -1;
  }
  json_t *doc = json_deep_copy(en->doc);
  if (!doc) {
    store_entry_release(en);
    store_rollback(t);
    return oom(e);
  }
  if (c->state) json_object_set_new(doc, "state", json_string(c->state));
  if (c->status) json_object_set_new(doc, "status", json_string(c->status));
  if (c->message) json_object_set_new(doc, "statusMessage", json_string(c->message));
  if (c->log) doc_log(doc, "%s", c->log);
  if (c->deploy_log) json_object_set_new(doc, "deployLog", json_string(c->deploy_log));
  if (c->allocated)
    json_object_set_new(doc, "allocatedBytes", json_integer((json_int_t)allocated_of(svc, id)));
  if (c->portals) {
    json_t *p = portals_json(svc);
    json_object_set_new(doc, "oeVolumeIp", portal_ip(p));
    json_object_set_new(json_object_get(doc, "iscsi"), "portals", p);
  }
  int rc = store_put(t, OSVOL_COLL, id, en->name, doc, e);
  json_decref(doc);
  store_entry_release(en);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

static int doc_remove(struct osvol_service *svc, const char *id, struct err *e) {
  struct store_txn *t = store_begin(svc->s);
  if (!t) return oom(e);
  struct store_entry *en = store_txn_get(t, OSVOL_COLL, id);
  if (!en) {
    store_rollback(t);
    return 0;
  }
  store_entry_release(en);
  if (store_delete(t, OSVOL_COLL, id, e) < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

/* Best effort: remove the volume and the document after a failed create. */
static void undo_create(struct osvol_service *svc, const char *id) {
  struct err e;
  err_init(&e);
  if (vol_os_exists(svc->vs, id) && vol_os_delete(svc->vs, id, &e) < 0)
    log_error("osvol", "OS volume %s: cannot remove its volume: %s", id, e.message);
  err_clear(&e);
  if (doc_remove(svc, id, &e) < 0)
    log_error("osvol", "OS volume %s: cannot remove its document: %s", id, e.message);
  err_clear(&e);
}

void osvol_create_abort(struct osvol_service *svc, const char *id) { undo_create(svc, id); }

/* A deployment's volume is managed through its server profile. */
static int owned(json_t *doc, const char *what, struct err *e) {
  const char *sp = json_string_value(json_object_get(doc, "serverProfileUri"));
  if (!sp) return 0;
  err_set(e, 409, "OS_VOLUME_IN_USE",
          "OS volume \"%s\" belongs to server profile %s and cannot be %s directly",
          json_string_value(json_object_get(doc, "name")), sp, what);
  err_action(e, "Change or delete the server profile that owns it instead.");
  return -1;
}

static int busy(json_t *doc, const char *what, struct err *e) {
  const char *st = json_string_value(json_object_get(doc, "state"));
  if (is(st, "Creating") || is(st, "Deleting")) {
    err_set(e, 409, "OS_VOLUME_BUSY", "OS volume \"%s\" is being %s and cannot be %s",
            json_string_value(json_object_get(doc, "name")),
            is(st, "Creating") ? "created" : "deleted", what);
    err_action(e, "Wait for its task to finish and try again.");
    return -1;
  }
  return 0;
}

/* ---- open: recovery and re-export
 * ------------------------------------------------------------------ */
static void reexport(struct osvol_service *svc, struct store_entry *en) {
  json_t *doc = en->doc;
  const char *id = en->id;
  struct err e;
  err_init(&e);
  struct doc_change c = {.allocated = 1};
  json_t *want = portals_json(svc);
  c.portals = !json_equal(want, json_object_get(json_object_get(doc, "iscsi"), "portals"));
  json_decref(want);
  char msg[1200] = "";
  if (!svc->iscsi) {
    c.status = "Warning";
    snprintf(msg, sizeof msg, "not exported: the iSCSI target is disabled (--iscsi-listen none)");
  } else if (!vol_os_exists(svc->vs, id)) {
    c.status = "Critical";
    snprintf(msg, sizeof msg,
             "the volume's files are missing (%s/os/%s): it cannot be served; delete the OS "
             "volume, or restore its files and restart streamerd",
             vol_store_dir(svc->vs), id);
  } else if (export_doc(svc, doc, &e) < 0) {
    c.status = "Critical";
    snprintf(msg, sizeof msg, "cannot be exported: %s", e.message);
  } else {
    c.status = "OK";
  }
  c.message = msg;
  const char *was = json_string_value(json_object_get(doc, "status"));
  const char *was_msg = json_string_value(json_object_get(doc, "statusMessage"));
  char line[1400];
  snprintf(line, sizeof line, "streamerd started: %s%s%s", c.status,
           msg[0] ? ": " : ", exported as ", msg[0] ? msg : target_of(doc));
  c.log = line;
  if (is(c.status, "Critical"))
    log_error("osvol", "OS volume \"%s\" (%s): %s", en->name, id, msg);
  else if (is(c.status, "Warning"))
    log_warn("osvol", "OS volume \"%s\" (%s): %s", en->name, id, msg);
  /* Write only what changed (a start normally changes nothing). */
  json_int_t alloc = (json_int_t)allocated_of(svc, id);
  if (c.portals || !is(was, c.status) || !is(was_msg, msg) ||
      json_integer_value(json_object_get(doc, "allocatedBytes")) != alloc) {
    err_clear(&e);
    if (doc_apply(svc, id, &c, &e) < 0)
      log_error("osvol", "OS volume %s: cannot record its status: %s", id, e.message);
  }
  err_clear(&e);
}

struct osvol_service *osvol_service_open(struct store *s, struct vol_store *vs,
                                         struct iscsi_srv *iscsi, struct err *e) {
  struct osvol_service *svc = calloc(1, sizeof *svc);
  if (!svc) {
    oom(e);
    return NULL;
  }
  svc->s = s;
  svc->vs = vs;
  svc->iscsi = iscsi;
  store_set_render(s, OSVOL_COLL, render_osvol);
  struct store_entry **v;
  size_t n;
  if (store_list(s, OSVOL_COLL, &v, &n) < 0) {
    free(svc);
    oom(e);
    return NULL;
  }
  size_t exported = 0;
  for (size_t i = 0; i < n; i++) {
    const char *st = json_string_value(json_object_get(v[i]->doc, "state"));
    if (is(st, "Creating") || is(st, "Deleting")) {
      undo_create(svc, v[i]->id); /* the same removal either way */
      log_warn("osvol", "OS volume \"%s\" (%s) was being %s when streamerd stopped: removed",
               v[i]->name, v[i]->id, is(st, "Creating") ? "created" : "deleted");
      continue;
    }
    reexport(svc, v[i]);
    if (svc->iscsi && iscsi_exported(svc->iscsi, target_of(v[i]->doc))) exported++;
  }
  if (n) log_info("osvol", "%zu OS volume(s) exported over iSCSI", exported);
  store_entries_release(v, n);
  return svc;
}

void osvol_service_close(struct osvol_service *svc) { free(svc); }

/* ---- create
 * ------------------------------------------------------------------------------------------ */
static char *chap_generate(void) { return util_token(CHAP_TOKEN_BYTES); }

/* Free a string that held a secret. */
static void secret_free(char *s) {
  if (s) memset(s, 0, strlen(s));
  free(s);
}

/* HPE's dependentArtifacts of an OS volume: the server profile using it. */
static json_t *owner_json(const char *name, const char *iqn, const char *uri) {
  json_t *o = json_pack("{s:s?, s:s?, s:s?}", "name", name, "serverIqn", iqn, "uri", uri);
  json_t *a = json_array();
  if (o && a) json_array_append(a, o);
  json_decref(o);
  return a;
}

/* The document of a new volume `id` (state Creating); NULL when out of memory. */
static json_t *new_doc(struct osvol_service *svc, const struct osvol_params *p, const char *id,
                       json_t *inits) {
  char *tname = iscsi_target_name(p->name, id);
  char *uri = util_strdup_printf("/rest/%s/%s", OSVOL_COLL, id);
  char *chap_name = NULL, *chap_secret = NULL, *mutual_secret = NULL;
  if (p->chap) {
    chap_name = p->chap_name ? strdup(p->chap_name) : util_strdup_printf("streamer-%.8s", id);
    chap_secret = p->chap_secret ? strdup(p->chap_secret) : chap_generate();
  }
  if (p->mutual_chap) mutual_secret = p->mutual_secret ? strdup(p->mutual_secret) : chap_generate();
  json_t *doc = NULL;
  if (tname && uri && (!p->chap || (chap_name && chap_secret)) &&
      (!p->mutual_chap || mutual_secret)) {
    json_t *portals = portals_json(svc);
    json_t *iscsi =
        json_pack("{s:s, s:O, s:i, s:O, s:b, s:b}", "targetName", tname, "portals", portals, "lun",
                  0, "initiatorNames", inits, "chap", p->chap, "mutualChap", p->mutual_chap);
    if (iscsi && p->chap) json_object_set_new(iscsi, "chapName", json_string(chap_name));
    json_t *secrets = json_object();
    if (p->chap) json_object_set_new(secrets, "chapSecret", json_string(chap_secret));
    if (p->mutual_chap) {
      json_object_set_new(secrets, "mutualChapName",
                          json_string(p->mutual_name ? p->mutual_name : tname));
      json_object_set_new(secrets, "mutualChapSecret", json_string(mutual_secret));
    }
    doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:n, s:n, s:n,"
        " s:[], s:o, s:o}",
        "type", "OSVolume", "id", id, "uri", uri, "name", p->name, "description",
        p->description ? p->description : "", "category", OSVOL_COLL, "state", "Creating", "status",
        "Unknown", "statusMessage", "being created", "oeVolumeId", id, "oeVolumeIQN", tname,
        "oeVolumeIp", portal_ip(portals), "size", (json_int_t)p->size, "allocatedBytes",
        (json_int_t)0, "goldenVolumeUri", "deploymentClusterUri", "statelessServerUri",
        "dependentArtifacts", "iscsi", iscsi ? iscsi : json_object(), "secrets", secrets);
    json_decref(portals);
    if (doc && p->server_profile_uri) {
      json_object_set_new(doc, "serverProfileUri", json_string(p->server_profile_uri));
      json_object_set_new(doc, "dependentArtifacts",
                          owner_json(p->server_profile_name, p->server_iqn, p->server_profile_uri));
      json_object_set_new(doc, "deploymentPlanUri",
                          p->deployment_plan_uri ? json_string(p->deployment_plan_uri)
                                                 : json_null());
    }
  }
  free(tname);
  free(uri);
  free(chap_name);
  secret_free(chap_secret);
  secret_free(mutual_secret);
  return doc;
}

int osvol_create_begin(struct osvol_service *svc, const struct osvol_params *p, char id_out[37],
                       struct err *e) {
  /* Everything that needs no store first. */
  json_t *name = json_string(p->name ? p->name : "");
  if (!name) {
    err_set(e, 400, "INVALID_NAME", "OS volume: the name is not UTF-8 text");
    return -1;
  }
  int rc = artifact_check_name("OS volume", name, e);
  json_decref(name);
  if (rc < 0) return -1;
  json_t *desc = p->description ? json_string(p->description) : NULL;
  if (p->description && (!desc || strlen(p->description) > DESC_MAX)) {
    json_decref(desc);
    err_set(e, 400, "INVALID_FIELD",
            "OS volume: \"description\" must be UTF-8 text of at most %d bytes", DESC_MAX);
    return -1;
  }
  json_decref(desc);
  if (p->size > OSVOL_MAX_SIZE || p->size % 512) {
    err_set(e, 400, "INVALID_SIZE", "OS volume: the size must be a multiple of 512 up to 64 TiB");
    return -1;
  }
  if (!p->golden_ref && p->size == 0) {
    err_set(e, 400, "INVALID_SIZE", "OS volume: an empty volume needs a \"size\" (e.g. \"10G\")");
    err_action(e, "Give a size, or a golden image to clone (\"goldenImageUri\").");
    return -1;
  }
  json_t *list = json_array();
  for (size_t i = 0; i < p->ninitiators; i++)
    json_array_append_new(list, json_string(p->initiators[i] ? p->initiators[i] : ""));
  json_t *inits = initiators_check(list, p->allow_any_initiator, e);
  json_decref(list);
  if (!inits) return -1;
  if ((p->mutual_chap && !p->chap) || check_chap_name("chapName", p->chap_name, e) < 0 ||
      check_chap_secret("chapSecret", p->chap_secret, e) < 0 ||
      check_chap_name("mutualChapName", p->mutual_name, e) < 0 ||
      check_chap_secret("mutualChapSecret", p->mutual_secret, e) < 0) {
    if (!e->message[0])
      err_set(e, 400, "INVALID_CHAP", "OS volume: mutual CHAP needs one-way CHAP");
    json_decref(inits);
    return -1;
  }
  if (p->mutual_chap && p->chap_secret && p->mutual_secret &&
      is(p->chap_secret, p->mutual_secret)) {
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: the mutual CHAP secret must differ from the CHAP secret (RFC 7143 12.1.3)");
    json_decref(inits);
    return -1;
  }
  char id[37];
  util_uuid(id);
  json_t *doc = new_doc(svc, p, id, inits);
  json_decref(inits);
  if (!doc) return oom(e);
  /* Against the store: the golden image, then the name (store_put). */
  struct store_txn *t = store_begin(svc->s);
  if (!t) {
    json_decref(doc);
    return oom(e);
  }
  rc = -1;
  struct store_entry *g = NULL;
  if (p->golden_ref) {
    g = golden_lookup(t, p->golden_ref);
    if (!g) {
      err_set(e, 400, "GOLDEN_IMAGE_NOT_FOUND",
              "OS volume: no golden image is named or has the id or URI \"%.200s\"", p->golden_ref);
      err_action(e, "Give an existing golden image (GET /rest/golden-images lists them).");
      goto out;
    }
    if (golden_is_deleting(g->doc)) {
      err_set(e, 409, "GOLDEN_IMAGE_DELETING", "golden image \"%s\" is being deleted", g->name);
      goto out;
    }
    uint64_t gsize = (uint64_t)json_integer_value(json_object_get(g->doc, "size"));
    uint64_t size = p->size ? p->size : gsize;
    if (size < gsize || size == 0) {
      err_set(e, 400, "INVALID_SIZE",
              "OS volume: %llu bytes is smaller than golden image \"%s\" (%llu bytes); a clone "
              "may be larger than its golden image, never smaller",
              (unsigned long long)size, g->name, (unsigned long long)gsize);
      goto out;
    }
    if (size > OSVOL_MAX_SIZE) {
      err_set(e, 400, "INVALID_SIZE", "OS volume: golden image \"%s\" is larger than 64 TiB",
              g->name);
      goto out;
    }
    char *guri = util_strdup_printf("/rest/%s/%s", GOLDEN_COLL, g->id);
    json_object_set_new(doc, "goldenVolumeUri", guri ? json_string(guri) : json_null());
    free(guri);
    json_object_set_new(doc, "size", json_integer((json_int_t)size));
    doc_log(doc, "creating OS volume \"%s\": a %llu-byte clone of golden image \"%s\" (%s)",
            p->name, (unsigned long long)size, g->name, g->id);
  } else {
    doc_log(doc, "creating OS volume \"%s\": an empty volume of %llu bytes", p->name,
            (unsigned long long)p->size);
  }
  if (store_put(t, OSVOL_COLL, id, p->name, doc, e) < 0) {
    if (e->status == 409) {
      err_set(e, 409, "NAME_CONFLICT", "an OS volume named \"%s\" already exists", p->name);
      err_action(e, "Choose another name, or delete or rename the existing OS volume.");
    }
    goto out;
  }
  rc = 0;
out:
  store_entry_release(g);
  json_decref(doc);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  memcpy(id_out, id, 37);
  return 0;
}

int osvol_create_finish(struct osvol_service *svc, const char *id, struct task *t, struct err *e) {
  return osvol_create_finish_with(svc, id, t, NULL, NULL, e);
}

/* Open the new volume, run `prepare` on it, flush and close it. */
static int prepare_volume(struct osvol_service *svc, const char *id, osvol_prepare_fn prepare,
                          void *arg, char **log, struct err *e) {
  struct vol *v = NULL;
  if (vol_os_open(svc->vs, id, &v, e) < 0) return -1;
  int rc = prepare(arg, v, log, e);
  if (rc == 0) rc = vol_flush(v, e);
  vol_close(v);
  return rc;
}

int osvol_create_finish_with(struct osvol_service *svc, const char *id, struct task *t,
                             osvol_prepare_fn prepare, void *arg, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return -1;
  }
  json_t *doc = en->doc;
  const char *guri = json_string_value(json_object_get(doc, "goldenVolumeUri"));
  const char *gid = guri ? strrchr(guri, '/') + 1 : NULL;
  uint64_t size = (uint64_t)json_integer_value(json_object_get(doc, "size"));
  int64_t t0 = util_mono_ms();
  if (t) task_progress(t, 10, gid ? "Cloning the golden image" : "Creating an empty volume");
  if (vol_os_create(svc->vs, id, gid, size, e) < 0) {
    if (is(e->code, "VOL_NOT_FOUND") && gid) {
      err_set(e, 400, "GOLDEN_IMAGE_NOT_FOUND",
              "OS volume \"%s\": its golden image (%s) no longer exists", en->name, gid);
    }
    log_warn("osvol", "OS volume \"%s\" (%s): cannot create its volume: %s", en->name, id,
             e->message);
    undo_create(svc, id);
    store_entry_release(en);
    return -1;
  }
  char *deploy_log = NULL;
  if (prepare && prepare_volume(svc, id, prepare, arg, &deploy_log, e) < 0) {
    log_warn("osvol", "OS volume \"%s\" (%s): not prepared: %s", en->name, id, e->message);
    free(deploy_log);
    undo_create(svc, id);
    store_entry_release(en);
    return -1;
  }
  if (svc->iscsi) {
    if (t) task_progress(t, 80, "Exporting it as iSCSI target %s", target_of(doc));
    if (export_doc(svc, doc, e) < 0) {
      log_warn("osvol", "OS volume \"%s\" (%s): cannot export it: %s", en->name, id, e->message);
      free(deploy_log);
      undo_create(svc, id);
      store_entry_release(en);
      return -1;
    }
  }
  char line[1200];
  snprintf(line, sizeof line, "created in %lld ms; %s", (long long)(util_mono_ms() - t0),
           svc->iscsi ? "exported as iSCSI target "
                      : "not exported (the iSCSI target is disabled)");
  if (svc->iscsi) strncat(line, target_of(doc), sizeof line - strlen(line) - 1);
  struct doc_change c = {
      .state = "OK",
      .status = svc->iscsi ? "OK" : "Warning",
      .message =
          svc->iscsi ? "" : "not exported: the iSCSI target is disabled (--iscsi-listen none)",
      .log = line,
      .allocated = 1,
      .deploy_log = deploy_log,
  };
  int applied = doc_apply(svc, id, &c, e);
  free(deploy_log);
  if (applied < 0) {
    struct err ue;
    err_init(&ue);
    if (svc->iscsi) iscsi_unexport(svc->iscsi, target_of(doc), &ue);
    err_clear(&ue);
    undo_create(svc, id);
    store_entry_release(en);
    return -1;
  }
  if (t) {
    json_t *portals = json_object_get(json_object_get(doc, "iscsi"), "portals");
    CLEANUP_FREE char *ps = json_dumps(portals, JSON_COMPACT);
    task_progress(t, 100, "Created OS volume \"%s\": target %s, portals %s, LUN 0", en->name,
                  target_of(doc), ps ? ps : "[]");
  }
  log_info("osvol", "OS volume \"%s\" (%s) created: %llu bytes%s%s, target %s", en->name, id,
           (unsigned long long)size, gid ? ", clone of golden image " : "", gid ? gid : "",
           target_of(doc));
  store_entry_release(en);
  return 0;
}

/* ---- delete
 * ------------------------------------------------------------------------------------------ */
int osvol_delete_begin(struct osvol_service *svc, const char *id, const char *if_match,
                       struct err *e) {
  struct store_txn *t = store_begin(svc->s);
  if (!t) return oom(e);
  struct store_entry *en = store_txn_get(t, OSVOL_COLL, id);
  int rc = -1;
  json_t *doc = NULL;
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    goto out;
  }
  if (util_check_if_match(json_string_value(json_object_get(en->doc, "eTag")), if_match, e) < 0 ||
      busy(en->doc, "deleted", e) < 0)
    goto out;
  doc = json_deep_copy(en->doc);
  if (!doc) {
    oom(e);
    goto out;
  }
  json_object_set_new(doc, "state", json_string("Deleting"));
  doc_log(doc, "deleting");
  rc = store_put(t, OSVOL_COLL, id, en->name, doc, e);
out:
  json_decref(doc);
  store_entry_release(en);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

/* The delete could not finish: the document back to "OK" (exported again if
 * the export was already dropped). */
static void delete_cancel(struct osvol_service *svc, const char *id, json_t *doc, const char *why) {
  struct err e;
  err_init(&e);
  char line[1200];
  snprintf(line, sizeof line, "delete failed: %s", why);
  struct doc_change c = {.state = "OK", .log = line};
  if (svc->iscsi && !iscsi_exported(svc->iscsi, target_of(doc)) && vol_os_exists(svc->vs, id)) {
    if (export_doc(svc, doc, &e) < 0) {
      c.status = "Critical";
      c.message = "not exported: the delete failed and the volume could not be exported again";
      log_error("osvol", "OS volume %s: cannot export it again: %s", id, e.message);
    }
  }
  err_clear(&e);
  if (doc_apply(svc, id, &c, &e) < 0)
    log_error("osvol", "OS volume %s: cannot reset its state: %s", id, e.message);
  err_clear(&e);
}

int osvol_delete_finish(struct osvol_service *svc, const char *id, struct task *t, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) return 0; /* already gone */
  const char *target = target_of(en->doc);
  if (svc->iscsi && target && iscsi_exported(svc->iscsi, target)) {
    if (t) task_progress(t, 10, "Ending the iSCSI sessions of target %s", target);
    if (iscsi_unexport(svc->iscsi, target, e) < 0 && e->status != 404) {
      delete_cancel(svc, id, en->doc, e->message);
      store_entry_release(en);
      return -1;
    }
    err_clear(e);
  }
  if (t) task_progress(t, 50, "Deleting the volume");
  /* The target closes the volume when its event loops let go of the export,
   * which may be just after iscsi_unexport returns: give it up to 10 s. */
  int rc = 0;
  for (int i = 0; i < 500 && vol_os_exists(svc->vs, id); i++) {
    err_clear(e);
    rc = vol_os_delete(svc->vs, id, e);
    if (rc == 0 || !is(e->code, "VOL_IN_USE")) break;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (rc < 0) {
    delete_cancel(svc, id, en->doc, e->message);
    store_entry_release(en);
    return -1;
  }
  if (doc_remove(svc, id, e) < 0) {
    store_entry_release(en);
    return -1;
  }
  if (t) task_progress(t, 100, "Deleted OS volume \"%s\"", en->name);
  log_info("osvol", "OS volume \"%s\" (%s) deleted", en->name, id);
  store_entry_release(en);
  return 0;
}

/* ---- the REST operations ------------------------------------------------------------------------
 */
struct job {
  struct osvol_service *svc;
  char id[37];
};

static int create_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  return osvol_create_finish(j->svc, j->id, t, e);
}

static int delete_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  return osvol_delete_finish(j->svc, j->id, t, e);
}

json_t *osvol_create(struct osvol_service *svc, struct task_engine *te, json_t *body,
                     const char *owner, struct err *e) {
  struct osvol_params p;
  if (osvol_params_parse(body, &p, e) < 0) return NULL;
  char id[37];
  int rc = osvol_create_begin(svc, &p, id, e);
  osvol_params_free(&p);
  if (rc < 0) return NULL;
  struct job *j = calloc(1, sizeof *j);
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  json_t *assoc = en ? task_assoc(OSVOL_COLL, en->id, en->name) : NULL;
  store_entry_release(en);
  json_t *doc = NULL;
  if (j && assoc) {
    j->svc = svc;
    memcpy(j->id, id, sizeof j->id);
    doc = task_submit(te, "Create", owner, assoc, create_run, j, free, e);
  } else {
    free(j);
    oom(e);
  }
  json_decref(assoc);
  if (!doc) undo_create(svc, id); /* only the document exists yet */
  return doc;
}

json_t *osvol_delete(struct osvol_service *svc, struct task_engine *te, const char *id,
                     const char *if_match, const char *owner, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return NULL;
  }
  if (owned(en->doc, "deleted", e) < 0) {
    store_entry_release(en);
    return NULL;
  }
  char *name = strdup(en->name ? en->name : "");
  store_entry_release(en);
  if (!name || osvol_delete_begin(svc, id, if_match, e) < 0) {
    if (!name) oom(e);
    free(name);
    return NULL;
  }
  /* resourceUri null: the Python SDK would read a deleted URI afterwards. */
  json_t *assoc = task_assoc(OSVOL_COLL, NULL, name);
  free(name);
  struct job *j = calloc(1, sizeof *j);
  json_t *doc = NULL;
  if (j && assoc) {
    j->svc = svc;
    snprintf(j->id, sizeof j->id, "%s", id);
    doc = task_submit(te, "Delete", owner, assoc, delete_run, j, free, e);
  } else {
    free(j);
    oom(e);
  }
  json_decref(assoc);
  if (!doc) {
    struct doc_change c = {.state = "OK", .log = "delete not started"};
    struct err ce;
    err_init(&ce);
    doc_apply(svc, id, &c, &ce);
    err_clear(&ce);
  }
  return doc;
}

/* ---- update
 * ------------------------------------------------------------------------------------------ */
/* Compare a create-only field of the body with the stored document. */
static int check_fixed(json_t *body, json_t *cur, struct err *e) {
  json_t *size = json_object_get(body, "size");
  if (size && !json_is_null(size)) {
    uint64_t n = 0;
    struct err ie;
    err_init(&ie);
    int bad = osvol_parse_size(size, &n, &ie) < 0 ||
              n != (uint64_t)json_integer_value(json_object_get(cur, "size"));
    err_clear(&ie);
    if (bad) {
      err_set(e, 400, "OS_VOLUME_FIELD_READ_ONLY",
              "OS volume: \"size\" cannot be changed after creation");
      return -1;
    }
  }
  static const char *const golden[] = {"goldenImageUri", "goldenImageURI", "goldenVolumeUri"};
  const char *cur_g = json_string_value(json_object_get(cur, "goldenVolumeUri"));
  for (int i = 0; i < 3; i++) {
    json_t *v = json_object_get(body, golden[i]);
    if (!v || json_is_null(v)) continue;
    const char *s = json_string_value(v);
    if (s && ((!*s && !cur_g) || is(s, cur_g))) continue;
    err_set(e, 400, "OS_VOLUME_FIELD_READ_ONLY",
            "OS volume: \"%s\" cannot be changed after creation", golden[i]);
    return -1;
  }
  return 0;
}

/* The CHAP settings of `doc` as `body` asks; 0 or -1. *changed set when they change. */
static int update_chap(json_t *doc, json_t *body, int *changed, struct err *e) {
  json_t *iscsi = json_object_get(doc, "iscsi");
  json_t *sec = json_object_get(doc, "secrets");
  if (!json_is_object(sec)) {
    sec = json_object();
    json_object_set_new(doc, "secrets", sec);
  }
  const char *name, *secret, *mname, *msecret;
  if (get_string(body, "chapName", &name, e) < 0 ||
      get_string(body, "chapSecret", &secret, e) < 0 ||
      get_string(body, "mutualChapName", &mname, e) < 0 ||
      get_string(body, "mutualChapSecret", &msecret, e) < 0)
    return -1;
  int chap = get_bool(body, "chap", e), mutual = get_bool(body, "mutualChap", e);
  if (chap == -2 || mutual == -2) return -1;
  int cur = json_is_true(json_object_get(iscsi, "chap"));
  int cur_m = json_is_true(json_object_get(iscsi, "mutualChap"));
  const char *cur_name = json_string_value(json_object_get(iscsi, "chapName"));
  /* A name equal to the current one (a GET document sent back) changes nothing. */
  if (name && cur && is(name, cur_name)) name = NULL;
  if ((chap == 0 && (name || secret)) || (mutual == 0 && (mname || msecret))) {
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: a CHAP name or secret was given with \"chap\" (or \"mutualChap\") false");
    return -1;
  }
  int want = chap >= 0 ? chap : (cur || name || secret || mname || msecret || mutual == 1);
  int want_m = want && (mutual >= 0 ? mutual : (cur_m || mname || msecret));
  if (!want && (mutual == 1 || mname || msecret)) {
    err_set(e, 400, "INVALID_CHAP", "OS volume: mutual CHAP needs one-way CHAP (\"chap\": true)");
    return -1;
  }
  if (check_chap_name("chapName", name, e) < 0 || check_chap_secret("chapSecret", secret, e) < 0 ||
      check_chap_name("mutualChapName", mname, e) < 0 ||
      check_chap_secret("mutualChapSecret", msecret, e) < 0)
    return -1;
  if (!want) {
    *changed |= cur;
    json_object_set_new(iscsi, "chap", json_false());
    json_object_set_new(iscsi, "mutualChap", json_false());
    json_object_del(iscsi, "chapName");
    json_object_clear(sec);
    return 0;
  }
  const char *id = json_string_value(json_object_get(doc, "id"));
  if (!cur || name) {
    char *n = name ? strdup(name) : util_strdup_printf("streamer-%.8s", id);
    json_object_set_new(iscsi, "chapName", json_string(n ? n : "streamer"));
    free(n);
  }
  if (!cur || secret) {
    char *s = secret ? strdup(secret) : chap_generate();
    if (!s) return oom(e);
    json_object_set_new(sec, "chapSecret", json_string(s));
    secret_free(s);
  }
  *changed |= !cur || name || secret;
  json_object_set_new(iscsi, "chap", json_true());
  if (!want_m) {
    *changed |= cur_m;
    json_object_set_new(iscsi, "mutualChap", json_false());
    json_object_del(sec, "mutualChapName");
    json_object_del(sec, "mutualChapSecret");
  } else {
    if (!cur_m || mname)
      json_object_set_new(
          sec, "mutualChapName",
          json_string(mname ? mname : json_string_value(json_object_get(iscsi, "targetName"))));
    if (!cur_m || msecret) {
      char *s = msecret ? strdup(msecret) : chap_generate();
      if (!s) return oom(e);
      json_object_set_new(sec, "mutualChapSecret", json_string(s));
      secret_free(s);
    }
    *changed |= !cur_m || mname || msecret;
    json_object_set_new(iscsi, "mutualChap", json_true());
  }
  if (is(json_string_value(json_object_get(sec, "chapSecret")),
         json_string_value(json_object_get(sec, "mutualChapSecret")))) {
    err_set(e, 400, "INVALID_CHAP",
            "OS volume: the mutual CHAP secret must differ from the CHAP secret (RFC 7143 12.1.3)");
    return -1;
  }
  return 0;
}

int osvol_update(struct osvol_service *svc, const char *id, json_t *body, const char *if_match,
                 struct store_entry **out, struct err *e) {
  struct store_txn *t = store_begin(svc->s);
  if (!t) return oom(e);
  struct store_entry *old = store_txn_get(t, OSVOL_COLL, id);
  json_t *doc = NULL, *inits = NULL;
  int rc = -1, exported = 0;
  if (!old) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    goto out;
  }
  if (util_check_if_match(json_string_value(json_object_get(old->doc, "eTag")), if_match, e) < 0 ||
      busy(old->doc, "changed", e) < 0 || owned(old->doc, "changed", e) < 0 ||
      check_keys(body, 0, id, e) < 0 || check_fixed(body, old->doc, e) < 0)
    goto out;
  doc = json_deep_copy(old->doc);
  if (!doc) {
    oom(e);
    goto out;
  }
  json_t *iscsi = json_object_get(doc, "iscsi");
  const char *what[4];
  int nwhat = 0, acl = 0, renamed = 0;
  json_t *name = json_object_get(body, "name");
  if (name && !json_is_null(name) && !json_equal(name, json_object_get(doc, "name"))) {
    if (artifact_check_name("OS volume", name, e) < 0) goto out;
    json_object_set(doc, "name", name);
    what[nwhat++] = "name";
    acl = renamed = 1; /* the target's alias */
  }
  json_t *desc = json_object_get(body, "description");
  if (check_description(desc, e) < 0) goto out;
  if (json_is_string(desc) && !json_equal(desc, json_object_get(doc, "description"))) {
    json_object_set(doc, "description", desc);
    what[nwhat++] = "description";
  }
  json_t *list = field(body, "initiatorNames");
  if (list) {
    int any = get_bool(body, "allowAnyInitiator", e);
    if (any == -2) goto out;
    json_t *cur = json_object_get(iscsi, "initiatorNames");
    /* Sent back unchanged ("*" included) needs no allowAnyInitiator again. */
    if (!json_equal(list, cur)) {
      inits = initiators_check(list, any == 1, e);
      if (!inits) goto out;
      if (!json_equal(inits, cur)) {
        json_object_set(iscsi, "initiatorNames", inits);
        what[nwhat++] = "initiatorNames";
        acl = 1;
      }
    }
  }
  int chap_changed = 0;
  if (update_chap(doc, body, &chap_changed, e) < 0) goto out;
  if (chap_changed) {
    what[nwhat++] = "CHAP";
    acl = 1;
  }
  if (nwhat) {
    char line[600] = "updated:";
    for (int i = 0; i < nwhat; i++)
      snprintf(line + strlen(line), sizeof line - strlen(line), " %s", what[i]);
    if (renamed)
      snprintf(line + strlen(line), sizeof line - strlen(line), " (now \"%s\")",
               json_string_value(json_object_get(doc, "name")));
    if (chap_changed)
      snprintf(line + strlen(line), sizeof line - strlen(line), " (CHAP %s%s)",
               json_is_true(json_object_get(iscsi, "chap")) ? "on" : "off",
               json_is_true(json_object_get(iscsi, "mutualChap")) ? ", mutual" : "");
    doc_log(doc, "%s", line);
  }
  const char *new_name = json_string_value(json_object_get(doc, "name"));
  if (store_put(t, OSVOL_COLL, id, new_name, doc, e) < 0) {
    if (e->status == 409) {
      err_set(e, 409, "NAME_CONFLICT", "an OS volume named \"%s\" already exists", new_name);
      err_action(e, "Choose another name, or delete or rename the existing OS volume.");
    }
    goto out;
  }
  exported = acl && svc->iscsi && iscsi_exported(svc->iscsi, target_of(doc));
  if (exported) {
    struct spec_buf b;
    spec_of(doc, NULL, &b);
    if (iscsi_update(svc->iscsi, &b.spec, e) < 0) goto out;
  }
  rc = 0;
out:
  if (rc < 0) {
    json_decref(doc);
    json_decref(inits);
    store_entry_release(old);
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) {
    if (exported) export_restore(svc, old->doc); /* the target as it was */
    json_decref(doc);
    json_decref(inits);
    store_entry_release(old);
    return -1;
  }
  log_info("osvol", "OS volume \"%s\" (%s) updated",
           json_string_value(json_object_get(doc, "name")), id);
  json_decref(doc);
  json_decref(inits);
  store_entry_release(old);
  if (out) *out = store_get(svc->s, OSVOL_COLL, id);
  return 0;
}

/* ---- the owner: a server profile, its machine -------------------------------------------- */
int osvol_set_owner(struct store_txn *t, const char *id, const char *profile_name,
                    const char *server_iqn, const char *profile_uri, struct err *e) {
  struct store_entry *en = id && *id ? store_txn_get(t, OSVOL_COLL, id) : NULL;
  if (!en) return 0;
  json_t *doc = json_deep_copy(en->doc);
  json_t *owner = owner_json(profile_name, server_iqn, profile_uri);
  int rc = -1;
  if (!doc || !owner) {
    oom(e);
  } else if (json_equal(owner, json_object_get(doc, "dependentArtifacts"))) {
    rc = 0;
  } else {
    json_object_set(doc, "dependentArtifacts", owner);
    rc = store_put(t, OSVOL_COLL, en->id, en->name, doc, e);
  }
  json_decref(owner);
  json_decref(doc);
  store_entry_release(en);
  return rc;
}

struct osvol_rebind {
  struct osvol_service *svc;
  json_t *old; /* the document before: its export is put back by undo */
};

void osvol_rebind_free(struct osvol_rebind *u) {
  if (!u) return;
  json_decref(u->old);
  free(u);
}

void osvol_rebind_undo(struct osvol_rebind *u) {
  if (u) export_restore(u->svc, u->old);
}

/* Initiators logged in to target `name` (a comma-separated list into buf). */
static size_t logged_in(struct osvol_service *svc, const char *name, char *buf, size_t size) {
  buf[0] = 0;
  json_t *ts = svc->iscsi ? iscsi_targets_json(svc->iscsi, name) : NULL;
  size_t n = 0, i;
  json_t *s;
  json_array_foreach(json_object_get(json_array_get(ts, 0), "sessions"), i, s) {
    size_t len = strlen(buf);
    snprintf(buf + len, size - len, "%s%s", n ? ", " : "",
             json_string_value(json_object_get(s, "initiatorName")));
    n++;
  }
  json_decref(ts);
  return n;
}

int osvol_rebind(struct osvol_service *svc, struct store_txn *t, const char *id,
                 const char *initiator, const char *chap_name, const char *chap_secret,
                 const char *profile_name, const char *profile_uri, struct osvol_rebind **undo,
                 struct err *e) {
  *undo = NULL;
  struct store_entry *en = store_txn_get(t, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 409, "OS_VOLUME_NOT_FOUND", "OS volume %s does not exist", id);
    return -1;
  }
  int rc = -1, exported = 0;
  json_t *doc = NULL;
  struct osvol_rebind *u = NULL;
  if (busy(en->doc, "handed to another machine", e) < 0) goto out;
  doc = json_deep_copy(en->doc);
  u = calloc(1, sizeof *u);
  json_t *iscsi = json_object_get(doc, "iscsi"), *secrets = json_object_get(doc, "secrets");
  json_t *owner = owner_json(profile_name, initiator, profile_uri);
  if (!doc || !u || !json_is_object(iscsi) || !json_is_object(secrets) || !owner ||
      !(u->old = json_deep_copy(en->doc))) {
    json_decref(owner);
    oom(e);
    goto out;
  }
  u->svc = svc;
  json_object_set_new(iscsi, "initiatorNames", json_pack("[s]", initiator));
  json_object_set_new(iscsi, "chap", json_true());
  json_object_set_new(iscsi, "chapName", json_string(chap_name));
  json_object_set_new(secrets, "chapSecret", json_string(chap_secret));
  json_object_set_new(doc, "dependentArtifacts", owner);
  doc_log(doc, "handed to initiator %s (server profile \"%s\")", initiator, profile_name);
  if (store_put(t, OSVOL_COLL, en->id, en->name, doc, e) < 0) goto out;
  exported = svc->iscsi && iscsi_exported(svc->iscsi, target_of(doc));
  if (exported) {
    struct spec_buf b;
    spec_of(doc, NULL, &b);
    if (iscsi_update(svc->iscsi, &b.spec, e) < 0) {
      exported = 0;
      goto out;
    }
    char who[400];
    if (logged_in(svc, target_of(doc), who, sizeof who)) {
      err_set(e, 409, "OS_VOLUME_LOGGED_IN",
              "OS volume \"%s\" is in use: %s still logged in to its iSCSI target", en->name, who);
      err_action(e, "Power the machine off (or shut its OS down) first; a machine powered off "
                    "without logging out is dropped within 45 s. Then try again.");
      goto out;
    }
  }
  rc = 0;
out:
  if (rc < 0) {
    if (exported) osvol_rebind_undo(u);
    osvol_rebind_free(u);
  } else {
    *undo = u;
  }
  json_decref(doc);
  store_entry_release(en);
  return rc;
}

/* ---- reads
 * ------------------------------------------------------------------------------------------ */
json_t *osvol_get(struct osvol_service *svc, const char *id, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return NULL;
  }
  json_t *doc = public_doc(en->doc);
  store_entry_release(en);
  if (!doc) {
    oom(e);
    return NULL;
  }
  json_object_set_new(doc, "allocatedBytes", json_integer((json_int_t)allocated_of(svc, id)));
  return doc;
}

int osvol_snapshot(struct osvol_service *svc, const char *id, struct vol **snap, json_t **doc,
                   struct err *e) {
  *snap = NULL;
  if (doc) *doc = NULL;
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return -1;
  }
  int rc = busy(en->doc, "read", e);
  if (rc == 0 && svc->iscsi) {
    /* the export holds the open volume */
    rc = iscsi_snapshot(svc->iscsi, target_of(en->doc), snap, e);
  } else if (rc == 0) {
    /* not exported (iSCSI disabled): open it for the snapshot's time only;
     * the snapshot keeps what it needs open */
    struct vol *v = NULL;
    rc = vol_os_open(svc->vs, id, &v, e);
    if (rc == 0) rc = vol_os_snapshot(v, snap, e);
    vol_close(v);
  }
  if (rc < 0 && e->status != 409) {
    const char *msg = json_string_value(json_object_get(en->doc, "statusMessage"));
    char why[sizeof e->message];
    snprintf(why, sizeof why, "%.1000s", msg && *msg ? msg : e->message);
    err_clear(e);
    err_set(e, 409, "OS_VOLUME_UNAVAILABLE", "OS volume \"%.200s\" cannot be read: %.700s",
            en->name, why);
  }
  if (rc == 0 && doc && !(*doc = public_doc(en->doc))) {
    vol_close(*snap);
    *snap = NULL;
    rc = oom(e);
  }
  store_entry_release(en);
  return rc;
}

json_t *osvol_credentials(struct osvol_service *svc, const char *id, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return NULL;
  }
  json_t *iscsi = json_object_get(en->doc, "iscsi"), *sec = json_object_get(en->doc, "secrets");
  json_t *out = NULL;
  if (!json_is_true(json_object_get(iscsi, "chap"))) {
    err_set(e, 409, "CHAP_NOT_ENABLED", "OS volume \"%s\" does not use CHAP", en->name);
    err_action(e, "Turn CHAP on with PUT {\"chap\": true}; the server then generates a secret.");
  } else {
    out = json_pack("{s:O, s:O}", "chapName", json_object_get(iscsi, "chapName"), "chapSecret",
                    json_object_get(sec, "chapSecret"));
    if (out && json_is_true(json_object_get(iscsi, "mutualChap"))) {
      json_object_set(out, "mutualChapName", json_object_get(sec, "mutualChapName"));
      json_object_set(out, "mutualChapSecret", json_object_get(sec, "mutualChapSecret"));
    }
    if (!out) oom(e);
  }
  store_entry_release(en);
  return out;
}

char *osvol_archive(struct osvol_service *svc, const char *ref, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, ref);
  if (!en) en = store_get_by_name(svc->s, OSVOL_COLL, ref);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "no OS volume has the id or name \"%.100s\"", ref);
    return NULL;
  }
  const char *log = json_string_value(json_object_get(en->doc, "log"));
  const char *dlog = json_string_value(json_object_get(en->doc, "deployLog"));
  char *text = dlog ? util_strdup_printf("%s\n==== deployment log ====\n%s", log ? log : "", dlog)
                    : strdup(log ? log : "");
  store_entry_release(en);
  if (!text) oom(e);
  return text;
}

json_t *osvol_storage(struct osvol_service *svc, const char *id, struct err *e) {
  struct store_entry *en = store_get(svc->s, OSVOL_COLL, id);
  if (!en) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "OS volume \"%.100s\" does not exist", id);
    return NULL;
  }
  json_t *out = json_pack("{s:s, s:[]}", "name", en->name ? en->name : "", "snapshots");
  store_entry_release(en);
  if (!out) oom(e);
  return out;
}

json_t *osvol_targets(struct osvol_service *svc) {
  json_t *members = svc->iscsi ? iscsi_targets_json(svc->iscsi, NULL) : json_array();
  if (!members) members = json_array();
  /* Each target's OS volume, by target name. */
  json_t *uris = json_object();
  struct store_entry **v;
  size_t n;
  if (store_list(svc->s, OSVOL_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *tn = target_of(v[i]->doc);
      if (tn) json_object_set(uris, tn, json_object_get(v[i]->doc, "uri"));
    }
    store_entries_release(v, n);
  }
  size_t i;
  json_t *m;
  json_array_foreach(members, i, m) {
    json_t *u = json_object_get(uris, json_string_value(json_object_get(m, "targetName")));
    json_object_set(m, "osVolumeUri", u ? u : json_null());
  }
  json_decref(uris);
  return json_pack("{s:s, s:b, s:o, s:I, s:I, s:o}", "type", "IscsiTargetList", "enabled",
                   svc->iscsi != NULL, "portals", portals_json(svc), "count",
                   (json_int_t)json_array_size(members), "total",
                   (json_int_t)json_array_size(members), "members", members);
}

size_t osvol_golden_users(struct store *s, struct vol_store *vs, const char *golden_id, char *buf,
                          size_t size) {
  size_t count = 0;
  if (size) buf[0] = 0;
  json_t *seen = json_object();
  char **clones = vol_golden_clones(vs, golden_id);
  for (size_t i = 0; clones && clones[i]; i++) {
    struct store_entry *en = store_get(s, OSVOL_COLL, clones[i]);
    json_object_set_new(seen, clones[i], json_true());
    const char *name = en && en->name ? en->name : clones[i];
    if (count < 10)
      snprintf(buf + strlen(buf), size - strlen(buf), "%s\"%s\"", count ? ", " : "", name);
    count++;
    store_entry_release(en);
  }
  vol_strings_free(clones);
  /* Volumes still being created (their clone may not exist yet). */
  struct store_entry **v;
  size_t n;
  if (store_list(s, OSVOL_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *g = json_string_value(json_object_get(v[i]->doc, "goldenVolumeUri"));
      const char *gid = g ? strrchr(g, '/') : NULL;
      if (!gid || !is(gid + 1, golden_id) || json_object_get(seen, v[i]->id)) continue;
      if (count < 10)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s\"%s\"", count ? ", " : "",
                 v[i]->name ? v[i]->name : v[i]->id);
      count++;
    }
    store_entries_release(v, n);
  }
  json_decref(seen);
  if (count > 10) snprintf(buf + strlen(buf), size - strlen(buf), ", ...");
  return count;
}
