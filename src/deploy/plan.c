/* plan.c — an OS build plan made ready to run: its steps loaded, the custom
 * attribute values merged (script/attr.h: plan-script defaults < build plan
 * < deployment plan < the values given) and checked, every problem at once;
 * and the bounded, masked log of a run. Used by validation, deployments and
 * capture (plan_int.h). */
#include "deploy/plan_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "deploy/osvolume.h"
#include "script/attr.h"

#define PS_COLL "plan-scripts"

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

void plan_clear(struct plan *p) {
  if (!p) return;
  free(p->bp_name);
  json_decref(p->values);
  json_decref(p->secrets);
  json_decref(p->secret_values);
  json_decref(p->step_docs);
  json_decref(p->derived);
  json_decref(p->bp_decls);
  free(p->steps);
  memset(p, 0, sizeof *p);
}

static json_t *find_by_name(json_t *arr, const char *name) {
  size_t i;
  json_t *a;
  json_array_foreach(arr, i, a) {
    if (name && util_strcaseeq(json_string_value(json_object_get(a, "name")), name)) return a;
  }
  return NULL;
}

/* The text of a value as clients send it: strings, numbers, booleans; null = "". */
static json_t *value_text(json_t *v) {
  if (!v || json_is_null(v)) return json_string("");
  if (json_is_string(v)) return json_incref(v);
  if (json_is_integer(v)) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
    return json_string(b);
  }
  if (json_is_real(v)) {
    char b[64];
    snprintf(b, sizeof b, "%.17g", json_real_value(v));
    return json_string(b);
  }
  if (json_is_boolean(v)) return json_string(json_is_true(v) ? "true" : "false");
  return NULL;
}

static void violation(json_t *v, const char *code, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void violation(json_t *v, const char *code, const char *action, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_array_append_new(v, err_object(code, msg, action));
}

/* The given values as [{"name","value"}] (strings); problems of shape go to
 * `violations`. `in` is an array of {"name","value"} or an object name ->
 * value; absent/null = none. NULL when `in` is neither (e set). */
static json_t *given_values(json_t *in, json_t *violations, struct err *e) {
  json_t *out = json_array();
  if (!out) {
    oom(e);
    return NULL;
  }
  if (!in || json_is_null(in)) return out;
  const char *act = "Give each attribute as {\"name\": ..., \"value\": ...}.";
  if (json_is_object(in)) {
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
      json_t *t = value_text(v);
      if (!t)
        violation(violations, "INVALID_ATTRIBUTE", act,
                  "attribute \"%.200s\": the value must be a string, a number or a boolean", k);
      else
        json_array_append_new(out, json_pack("{s:s, s:o}", "name", k, "value", t));
    }
    return out;
  }
  if (!json_is_array(in) || json_array_size(in) > 1000) {
    json_decref(out);
    err_set(e, 400, "INVALID_BODY",
            "the custom attributes must be an array of {\"name\",\"value\"} (at most 1000) or an "
            "object of name: value");
    return NULL;
  }
  size_t i;
  json_t *a;
  json_array_foreach(in, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    json_t *t = json_is_object(a) ? value_text(json_object_get(a, "value")) : NULL;
    if (!n || !*n || !t) {
      json_decref(t);
      violation(violations, "INVALID_ATTRIBUTE", act,
                "customAttributes[%zu] must be {\"name\": string, \"value\": string, number or "
                "boolean}",
                i);
      continue;
    }
    if (find_by_name(out, n)) {
      json_decref(t);
      violation(violations, "INVALID_ATTRIBUTE", "Give each attribute once.",
                "attribute \"%.200s\" is given twice", n);
      continue;
    }
    json_array_append_new(out, json_pack("{s:s, s:o}", "name", n, "value", t));
  }
  return out;
}

/* Do the scripts use "n.sub" tokens, making n a NIC attribute? */
static int derived_nic(json_t *derived, const char *n) {
  size_t i, len = strlen(n);
  json_t *a;
  json_array_foreach(derived, i, a) {
    const char *d = json_string_value(json_object_get(a, "name"));
    if (d && len && strncasecmp(d, n, len) == 0 && d[len] == '.') return 1;
  }
  return 0;
}

/* Is `n` declared in `decls`, or "Name.sub" of a declared NIC Name? */
static int declared(json_t *decls, const char *n) {
  if (find_by_name(decls, n)) return 1;
  const char *dot = strchr(n, '.');
  if (!dot) return 0;
  char base[256];
  snprintf(base, sizeof base, "%.*s", (int)(dot - n), n);
  json_t *d = find_by_name(decls, base);
  return d && util_strcaseeq(json_string_value(json_object_get(d, "type")), "nic");
}

/* Is `n` an attribute the build plan, its scripts or the deployment plan
 * know? "Name.sub" is one when the scripts use it or Name is a declared NIC. */
static int known_attribute(const struct plan *p, json_t *dp, const char *n) {
  return declared(p->bp_decls, n) || declared(dp, n) || find_by_name(p->derived, n) ||
         derived_nic(p->derived, n);
}

int plan_load(struct plan *p, struct store *s, const char *bp_id, const char *bp_name, json_t *bp,
              struct err *e) {
  memset(p, 0, sizeof *p);
  snprintf(p->bp_id, sizeof p->bp_id, "%s", bp_id);
  p->bp_name = strdup(bp_name ? bp_name : bp_id);
  json_t *bs = json_object_get(bp, "buildStep");
  p->step_docs = json_array();
  p->derived = json_array();
  p->bp_decls = json_incref(json_object_get(bp, "customAttributes"));
  p->steps = calloc(json_array_size(bs) + 1, sizeof *p->steps);
  if (!p->bp_name || !p->step_docs || !p->derived || !p->steps) return oom(e);
  size_t i;
  json_t *st;
  json_array_foreach(bs, i, st) {
    const char *uri = json_string_value(json_object_get(st, "planScriptUri"));
    const char *id = uri && strncmp(uri, "/rest/" PS_COLL "/", 19) == 0 ? uri + 19 : uri;
    struct store_entry *ps = id ? store_get(s, PS_COLL, id) : NULL;
    if (!ps) {
      err_set(e, 400, "PLAN_SCRIPT_NOT_FOUND",
              "build plan \"%.200s\": step %zu names plan script \"%.200s\", which does not exist",
              p->bp_name, i + 1, uri ? uri : "");
      return -1;
    }
    const char *content = json_string_value(json_object_get(ps->doc, "content"));
    json_t *serial = json_object_get(st, "serialNumber");
    char sbuf[32];
    if (json_is_integer(serial))
      snprintf(sbuf, sizeof sbuf, "%lld", (long long)json_integer_value(serial));
    else
      snprintf(sbuf, sizeof sbuf, "%.20s", json_string_value(serial) ?: "");
    json_t *doc = json_pack("{s:s, s:s, s:s}", "serial", sbuf, "name", ps->name ? ps->name : id,
                            "content", content ? content : "");
    json_t *d = attr_derive(content ? content : "");
    store_entry_release(ps);
    if (!doc || !d || json_array_extend(p->derived, d) < 0 ||
        json_array_append_new(p->step_docs, doc) < 0) {
      json_decref(d);
      return oom(e);
    }
    json_decref(d);
    p->steps[p->nsteps].serial = json_string_value(json_object_get(doc, "serial"));
    p->steps[p->nsteps].name = json_string_value(json_object_get(doc, "name"));
    p->steps[p->nsteps].content = json_string_value(json_object_get(doc, "content"));
    p->nsteps++;
  }
  return 0;
}

static const char *const NIC_ADDRESSES[] = {
    "ipaddress", "ipaddress1", "ipaddress2", "netmask", "gateway", "dns1", "dns2", "dns3", NULL};

static int nic_allows(json_t *decl, const char *key) {
  json_t *c = json_loads(json_string_value(json_object_get(decl, "constraints")) ?: "{}", 0, NULL);
  json_t *v = json_object_get(c, key);
  int yes = json_is_true(v) || util_strcaseeq(json_string_value(v), "true");
  json_decref(c);
  return yes;
}

/* The values a NIC attribute gives scripts in a deployment: its mode as
 * Name.constraint and Name.dhcp, its addresses only in static mode. */
static void nic_mode_values(json_t *values, const char *n, json_t *decl, json_t *nv) {
  const char *mode = json_string_value(json_object_get(nv, "constraint"));
  int has_ip = json_string_length(json_object_get(nv, "ipaddress")) ||
               json_string_length(json_object_get(nv, "ipaddress1"));
  const char *m;
  if (!mode || !*mode)
    m = nic_allows(decl, "ipv4dhcp") ? "dhcp" : "static";
  else if (util_strcaseeq(mode, "auto"))
    m = has_ip ? "static" : "dhcp";
  else if (util_strcaseeq(mode, "dhcp"))
    m = "dhcp";
  else if (util_strcaseeq(mode, "disabled"))
    m = "disabled";
  else
    m = "static";
  char key[600];
  snprintf(key, sizeof key, "%s.constraint", n);
  json_object_set_new(values, key, json_string(m));
  snprintf(key, sizeof key, "%s.dhcp", n);
  json_object_set_new(values, key, json_string(is(m, "dhcp") ? "true" : "false"));
  if (is(m, "static")) return;
  for (const char *const *a = NIC_ADDRESSES; *a; a++) {
    snprintf(key, sizeof key, "%s.%s", n, *a);
    json_object_set_new(values, key, json_string(""));
  }
  if (is(m, "disabled")) {
    snprintf(key, sizeof key, "%s.domain", n);
    json_object_set_new(values, key, json_string(""));
  }
}

/* The profile layer: carried values the plan knows, then the given ones on
 * top (an empty password value keeps the carried one: GETs mask them). */
static json_t *layer_of(struct plan *p, json_t *given, const struct plan_attr_opts *o,
                        json_t *merged_pw) {
  json_t *out = json_array();
  json_t *carried = o ? o->carried : NULL, *dp = o ? o->dp_decls : NULL;
  size_t i;
  json_t *a;
  json_array_foreach(carried, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    if (!n || n[0] == '_' || !known_attribute(p, dp, n) || find_by_name(given, n)) continue;
    json_array_append(out, a);
  }
  json_array_foreach(given, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    const char *v = json_string_value(json_object_get(a, "value"));
    json_t *old = find_by_name(carried, n);
    if (v && !*v && old && json_object_get(merged_pw, n)) {
      json_array_append(out, old);
      continue;
    }
    json_array_append(out, a);
  }
  return out;
}

int plan_attributes(struct plan *p, const char *what, json_t *given_in,
                    const struct plan_attr_opts *o, json_t **effective, struct err *e) {
  if (effective) *effective = NULL;
  json_t *violations CLEANUP_JSON = json_array();
  if (!violations) return oom(e);
  json_t *given CLEANUP_JSON = given_values(given_in, violations, e);
  if (!given) return -1;
  json_t *dp = o ? o->dp_decls : NULL;
  size_t i;
  json_t *a;
  json_array_foreach(given, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    if (n[0] == '_') {
      violation(violations, "INVALID_ATTRIBUTE", "Remove the attribute from the request.",
                "attribute \"%.200s\" is a system attribute: the server sets it", n);
      continue;
    }
    if (!known_attribute(p, dp, n)) {
      if (dp)
        violation(violations, "UNKNOWN_ATTRIBUTE",
                  "Remove the attribute or declare it in the deployment plan.",
                  "attribute \"%.200s\" is not declared by deployment plan \"%.150s\", build plan "
                  "\"%.150s\" or its plan scripts",
                  n, o && o->dp_name ? o->dp_name : "", p->bp_name);
      else
        violation(violations, "UNKNOWN_ATTRIBUTE",
                  "Remove the attribute or declare it in the build plan.",
                  "attribute \"%.200s\" is not declared by build plan \"%.150s\" or its plan "
                  "scripts",
                  n, p->bp_name);
      continue;
    }
    json_t *d = find_by_name(dp, n);
    if (d && json_is_false(json_object_get(d, "editable"))) {
      json_t *dv = value_text(json_object_get(d, "value"));
      if (!json_equal(dv, json_object_get(a, "value")))
        violation(violations, "INVALID_ATTRIBUTE",
                  "Leave the attribute out: the deployment plan fixes its value.",
                  "attribute \"%.200s\" is not editable in deployment plan \"%.150s\"", n,
                  o && o->dp_name ? o->dp_name : "");
      json_decref(dv);
    }
  }
  /* the password attributes, for the layer's masked values */
  json_t *pw CLEANUP_JSON = json_object();
  json_t *probe CLEANUP_JSON = attr_merge(p->derived, p->bp_decls, dp, NULL);
  if (!pw || !probe) return oom(e);
  json_array_foreach(probe, i, a) {
    if (util_strcaseeq(json_string_value(json_object_get(a, "type")), "password"))
      json_object_set_new(pw, json_string_value(json_object_get(a, "name")), json_true());
  }
  json_t *layer CLEANUP_JSON = layer_of(p, given, o, pw);
  if (!layer) return oom(e);
  json_t *merged CLEANUP_JSON = attr_merge(p->derived, p->bp_decls, dp, layer);
  if (!merged) return oom(e);
  json_decref(p->values);
  json_decref(p->secrets);
  json_decref(p->secret_values);
  p->values = json_object();
  p->secrets = json_array();
  p->secret_values = json_array();
  if (!p->values || !p->secrets || !p->secret_values) return oom(e);
  json_array_foreach(merged, i, a) {
    const char *n = json_string_value(json_object_get(a, "name"));
    const char *type = json_string_value(json_object_get(a, "type"));
    const char *v = json_string_value(json_object_get(a, "value"));
    if (!n) continue;
    if (util_strcaseeq(type, "nic")) {
      json_t *nv = json_object_get(a, "nicValues");
      if (o && o->nic_modes && json_is_object(nv) && !json_object_get(nv, "constraint") &&
          (json_string_length(json_object_get(nv, "ipaddress")) ||
           json_string_length(json_object_get(nv, "ipaddress1"))))
        json_object_set_new(nv, "constraint", json_string("auto")); /* addresses given: static */
      if (json_object_size(nv) || (o && o->nic_modes)) attr_value_check(a, NULL, nv, violations);
      const char *sub;
      json_t *sv;
      json_object_foreach(nv, sub, sv) {
        char key[600];
        snprintf(key, sizeof key, "%s.%s", n, sub);
        if (json_string_length(sv)) json_object_set(p->values, key, sv);
      }
      if (o && o->nic_modes) nic_mode_values(p->values, n, a, nv);
      continue;
    }
    if (v && *v) {
      attr_value_check(a, v, NULL, violations);
      json_object_set_new(p->values, n, json_string(v));
    }
    if (util_strcaseeq(type, "password")) {
      json_array_append_new(p->secrets, json_string(n));
      if (v && *v) json_array_append_new(p->secret_values, json_string(v));
    }
  }
  if (o && o->system) {
    const char *k;
    json_t *v;
    json_object_foreach(o->system, k, v) { json_object_set(p->values, k, v); }
  }
  if (o && o->need_volume_size) {
    const char *vs = plan_value(p, "VolumeSize");
    char *end = NULL;
    unsigned long long mib = vs ? strtoull(vs, &end, 10) : 0;
    if (!vs || !*vs)
      violation(violations, "INVALID_ATTRIBUTE",
                "Give VolumeSize, the size of the empty OS volume in MiB.",
                "deployment plan \"%.150s\" has no golden image: attribute \"VolumeSize\" (MiB) is "
                "needed for the empty OS volume",
                o->dp_name ? o->dp_name : "");
    else if (!end || *end || mib == 0 || mib > (OSVOL_MAX_SIZE >> 20))
      violation(violations, "INVALID_ATTRIBUTE", "Give a whole number of MiB, e.g. 10240.",
                "attribute \"VolumeSize\": \"%.40s\" is not a size in MiB from 1 to %llu", vs,
                (unsigned long long)(OSVOL_MAX_SIZE >> 20));
  }
  if (json_array_size(violations) > 0) {
    err_set(e, 400, "INVALID_ATTRIBUTES", "%s: %zu custom attribute problem(s): %s", what,
            json_array_size(violations),
            json_string_value(json_object_get(json_array_get(violations, 0), "message")));
    err_action(e, "Correct every attribute listed in \"nestedErrors\" and send the request again.");
    e->nested = json_incref(violations);
    return -1;
  }
  if (effective) *effective = json_incref(layer);
  return 0;
}

const char *plan_value(const struct plan *p, const char *name) {
  return json_string_value(json_object_get(p->values, name));
}

/* ---- the log ------------------------------------------------------------------------ */
int logcap_init(struct logcap *l, size_t head_max, size_t tail_max) {
  memset(l, 0, sizeof *l);
  l->head_max = head_max;
  l->tail_max = tail_max;
  l->head = malloc(head_max);
  l->ring = malloc(tail_max);
  if (!l->head || !l->ring) {
    logcap_free(l);
    return -1;
  }
  return 0;
}

void logcap_free(struct logcap *l) {
  free(l->head);
  free(l->ring);
  l->head = l->ring = NULL;
}

void logcap_take(void *opaque, const char *text, size_t len) {
  struct logcap *l = opaque;
  l->total += len;
  if (l->head_len < l->head_max && l->head) {
    size_t n = len < l->head_max - l->head_len ? len : l->head_max - l->head_len;
    memcpy(l->head + l->head_len, text, n);
    l->head_len += n;
    text += n;
    len -= n;
  }
  while (len > 0 && l->ring) {
    size_t n = len < l->tail_max - l->ring_pos ? len : l->tail_max - l->ring_pos;
    memcpy(l->ring + l->ring_pos, text, n);
    l->ring_pos += n;
    text += n;
    len -= n;
    if (l->ring_pos == l->tail_max) {
      l->ring_pos = 0;
      l->wrapped = 1;
    }
  }
}

char *logcap_text(struct logcap *l, uint64_t *cut) {
  size_t tail_len = l->wrapped ? l->tail_max : l->ring_pos;
  char *out = malloc(l->head_len + tail_len + 128);
  if (!out) return NULL;
  memcpy(out, l->head ? l->head : "", l->head_len);
  size_t o = l->head_len;
  *cut = 0;
  if (!l->wrapped) {
    memcpy(out + o, l->ring ? l->ring : "", l->ring_pos);
    o += l->ring_pos;
  } else {
    /* the ring from its oldest byte, starting at a line */
    size_t start = l->ring_pos, skip = 0, tail = l->tail_max;
    while (skip < tail / 2 && l->ring[(start + skip) % tail] != '\n')
      skip++;
    if (skip < tail / 2) skip++;
    *cut = l->total - l->head_len - (tail - skip);
    o += (size_t)snprintf(out + o, 128, "\n[... %llu bytes of the log left out ...]\n",
                          (unsigned long long)*cut);
    for (size_t i = skip; i < tail; i++)
      out[o++] = l->ring[(start + i) % tail];
  }
  out[o] = 0;
  return out;
}

char *plan_masked(const char *text, json_t *secret_values) {
  char *out = strdup(text ? text : "");
  size_t i;
  json_t *sv;
  json_array_foreach(secret_values, i, sv) {
    const char *v = json_string_value(sv);
    size_t vl = v ? strlen(v) : 0;
    if (!vl || !out) continue;
    size_t n = 0;
    for (const char *p = strstr(out, v); p; p = strstr(p + vl, v))
      n++;
    if (!n) continue;
    char *m = malloc(strlen(out) + n * 8 + 1);
    if (!m) {
      free(out);
      return NULL;
    }
    char *w = m;
    const char *r = out;
    for (const char *p = strstr(r, v); p; p = strstr(r, v)) {
      memcpy(w, r, (size_t)(p - r));
      w += p - r;
      memcpy(w, "********", 8);
      w += 8;
      r = p + vl;
    }
    strcpy(w, r);
    free(out);
    out = m;
  }
  return out;
}
