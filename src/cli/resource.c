/* resource.c — helpers shared by the resource commands: ids, key/value
 * display, PUT with If-Match, delete by reference, attribute tables. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

const struct opt_spec LIST_OPTS[] = {{"filter", 1}, {"sort", 1}, {NULL, 0}};

const char *res_id(json_t *res) {
  const char *id = jstr(res, "id");
  if (*id) return id;
  id = jstr(res, "buildPlanid");
  if (*id) return id;
  const char *uri = jstr(res, "uri");
  const char *slash = strrchr(uri, '/');
  return slash ? slash + 1 : uri;
}

static int is_time_field(const char *f) {
  return strcmp(f, "created") == 0 || strcmp(f, "modified") == 0;
}

void kv_fields(struct kv *k, json_t *res, const char *const *fields) {
  for (const char *const *f = fields; *f; f++) {
    json_t *v = json_object_get(res, *f);
    if (!v) continue;
    if (is_time_field(*f) && json_is_string(v)) {
      CLEANUP_FREE char *t = out_time(json_string_value(v));
      kv_add(k, *f, t);
    } else {
      kv_add_json(k, *f, v);
    }
  }
}

void kv_rest(struct kv *k, json_t *res, const char *const *skip) {
  const char *key;
  json_t *v;
  json_object_foreach(res, key, v) {
    int skipped = 0;
    for (const char *const *s = skip; *s && !skipped; s++)
      skipped = strcmp(*s, key) == 0;
    if (skipped || json_is_array(v) || json_is_object(v)) continue;
    kv_add_json(k, key, v);
  }
}

int res_update(struct cli *c, json_t *cur, json_t *body, json_t **out) {
  /* Both strings live in cur, which the call only reads. */
  const char *uri = jstr(cur, "uri"), *etag = jstr(cur, "eTag");
  if (!*uri) {
    fprintf(stderr, "error: the resource has no uri to update\n");
    return CLI_ESERVER;
  }
  return api_call(c, "PUT", uri, body, *etag ? etag : NULL, out);
}

int res_put(struct cli *c, json_t *res, json_t **out) { return res_update(c, res, res, out); }

void res_done(struct cli *c, const char *verb, const struct coll_info *ci, json_t *res) {
  if (c->json) {
    out_json(res);
    return;
  }
  printf("%s %s \"%s\" (id %s).\n", verb, ci->what, jstr(res, ci->name_field), res_id(res));
}

int res_delete(struct cli *c, const struct coll_info *ci, const char *ref) {
  json_t *res CLEANUP_JSON = NULL;
  int rc = ref_get(c, ci, ref, &res);
  if (rc) return rc;
  const char *uri = jstr(res, "uri");
  CLEANUP_FREE char *fallback = NULL;
  if (!*uri) {
    CLEANUP_FREE char *esc = http_escape(jstr(res, ci->name_field));
    fallback = util_strdup_printf("/rest/%s/%s", ci->coll, esc ? esc : "");
    uri = fallback;
  }
  rc = api_call(c, "DELETE", uri, NULL, NULL, NULL);
  if (rc) return rc;
  if (c->json) {
    json_t *o CLEANUP_JSON =
        json_pack("{s:s, s:s, s:b}", "uri", uri, "name", jstr(res, ci->name_field), "deleted", 1);
    out_json(o);
  } else {
    printf("Deleted %s \"%s\".\n", ci->what, jstr(res, ci->name_field));
  }
  return CLI_OK;
}

void res_strip_server_fields(json_t *doc) {
  static const char *const fields[] = {"uri",      "id",       "buildPlanid", "eTag",   "created",
                                       "modified", "category", "state",       "status", NULL};
  for (const char *const *f = fields; *f; f++)
    json_object_del(doc, *f);
}

int attrs_normalize(json_t *attrs, const char *usage) {
  if (!json_is_array(attrs))
    return cli_usage_error(usage, "customAttributes must be a JSON array of declarations");
  size_t i;
  json_t *d;
  json_array_foreach(attrs, i, d) {
    if (!json_is_object(d) || !*jstr(d, "name"))
      return cli_usage_error(usage, "attribute #%zu: an object with a \"name\" is needed", i + 1);
    json_t *cons = json_object_get(d, "constraints");
    if (json_is_object(cons) || json_is_array(cons)) {
      char *s = json_dumps(cons, JSON_COMPACT);
      if (s) json_object_set_new(d, "constraints", json_string(s));
      free(s);
    } else if (!cons || json_is_null(cons)) {
      json_object_set_new(d, "constraints", json_string("{}"));
    }
    if (!json_object_get(d, "type")) json_object_set_new(d, "type", json_string("string"));
    if (!json_object_get(d, "description")) json_object_set_new(d, "description", json_string(""));
    json_t *v = json_object_get(d, "value");
    if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
      /* Attribute values are strings on the wire. */
      CLEANUP_FREE char *t = out_text(v);
      json_object_set_new(d, "value", json_string(t));
    } else if (!v) {
      json_object_set_new(d, "value", json_string(""));
    }
  }
  return CLI_OK;
}

static const char *col_header(const char *col) {
  if (strcmp(col, "value") == 0) return "VALUE";
  if (strcmp(col, "name") == 0) return "NAME";
  if (strcmp(col, "type") == 0) return "TYPE";
  if (strcmp(col, "constraints") == 0) return "CONSTRAINTS";
  if (strcmp(col, "visible") == 0) return "VISIBLE";
  if (strcmp(col, "editable") == 0) return "EDITABLE";
  if (strcmp(col, "description") == 0) return "DESCRIPTION";
  return col;
}

void attrs_table(json_t *attrs, const char *const *cols) {
  int n = 0;
  const char *hdr[16];
  for (; n < 16 && cols[n]; n++)
    hdr[n] = col_header(cols[n]);
  struct table *t = table_new(n, hdr);
  size_t i;
  json_t *d;
  json_array_foreach(attrs, i, d) {
    char *cells[16];
    for (int k = 0; k < n; k++) {
      json_t *v = json_object_get(d, cols[k]);
      if (strcmp(cols[k], "value") == 0 && util_strcaseeq(jstr(d, "type"), "password") &&
          json_is_string(v) && *json_string_value(v))
        cells[k] = strdup("********");
      else if (strcmp(cols[k], "constraints") == 0 && json_is_string(v) &&
               strcmp(json_string_value(v), "{}") == 0)
        cells[k] = strdup("");
      else
        cells[k] = out_text(v);
    }
    table_add(t, (const char *const *)cells);
    for (int k = 0; k < n; k++)
      free(cells[k]);
  }
  table_print(t, stdout, "  ");
  table_free(t);
}

json_t *res_name_map(struct cli *c, const char *coll) {
  CLEANUP_FREE char *path = util_strdup_printf("/rest/%s?start=0&count=-1", coll);
  long status;
  json_t *res CLEANUP_JSON = NULL;
  if (http_do(c, "GET", path, NULL, NULL, 1, &status, &res, NULL) != CLI_OK || status != 200)
    return NULL;
  json_t *map = json_object();
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(res, "members"), i, m) {
    const char *uri = jstr(m, "uri");
    if (*uri) json_object_set_new(map, uri, json_string(jstr(m, "name")));
  }
  return map;
}
