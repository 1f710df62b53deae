/* hardware.c — the "server-hardware" documents: a machine's MAC addresses
 * (how the iPXE endpoint recognizes it), its iSCSI initiator name and the
 * one-way CHAP credentials its OS volume's target demands, the IPv4 addresses
 * of its two iSCSI NICs (plan scripts' _Initiator1/2.ip and .netmask).
 * Synchronous create / update / delete; the CHAP secret lives in the hidden
 * "secrets" object and is never rendered, logged or returned. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "artifact/artifact.h"
#include "deploy/deploy_int.h"
#include "deploy/osvolume.h"

#define CHAP_MIN 12
#define CHAP_MAX 16
#define DESC_MAX 65536

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

const char *deploy_uri_id(const char *ref, const char *coll) {
  if (!ref || !*ref) return NULL;
  if (strncmp(ref, "/rest/", 6) != 0) return ref;
  size_t n = strlen(coll);
  if (strncmp(ref + 6, coll, n) != 0 || ref[6 + n] != '/' || !ref[7 + n]) return NULL;
  return ref + 7 + n;
}

int deploy_if_match(json_t *doc, const char *if_match, struct err *e) {
  return util_check_if_match(json_string_value(json_object_get(doc, "eTag")), if_match, e);
}

/* ---- the public rendering: no secrets ------------------------------------------- */
static char *render_hw(json_t *doc) {
  json_t *c = json_copy(doc);
  if (c) json_object_del(c, "secrets");
  char *s = c ? json_dumps(c, JSON_COMPACT) : NULL;
  json_decref(c);
  return s;
}

void hw_register(struct store *s) { store_set_render(s, HW_COLL, render_hw); }

/* ---- fields --------------------------------------------------------------------- */
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int hw_mac_normalize(const char *in, char out[18]) {
  if (!in) return -1;
  int digits[12], nd = 0;
  char sep = 0;
  for (const char *p = in; *p; p++) {
    int h = hexval(*p);
    if (h >= 0) {
      if (nd == 12) return -1;
      digits[nd++] = h;
      continue;
    }
    if (*p != ':' && *p != '-' && *p != '.') return -1;
    if (sep && *p != sep) return -1;
    sep = *p;
  }
  if (nd != 12) return -1;
  /* separators only between whole bytes (or groups of 4 with '.') */
  size_t len = strlen(in);
  if (sep && !((sep == '.' && len == 14) || (sep != '.' && len == 17))) return -1;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 6; i++) {
    out[i * 3] = hex[digits[i * 2]];
    out[i * 3 + 1] = hex[digits[i * 2 + 1]];
    out[i * 3 + 2] = i < 5 ? ':' : 0;
  }
  return 0;
}

static int printable_nospace(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

static int valid_ipv4(const char *s) {
  struct in_addr a;
  return s && inet_pton(AF_INET, s, &a) == 1;
}

static int valid_netmask(const char *s) {
  struct in_addr a;
  if (!s || inet_pton(AF_INET, s, &a) != 1) return 0;
  uint32_t m = ntohl(a.s_addr), inv = ~m;
  return m != 0 && (inv & (inv + 1)) == 0; /* ones, then zeros */
}

static const char *const WRITABLE[] = {
    "name",        "description", "macAddresses", "initiatorName", "chapName", "chapSecret",
    "ipv4Address", "netmask",     "ipv4Address2", "netmask2",      NULL};
static const char *const IGNORED[] = {"type",
                                      "id",
                                      "uri",
                                      "eTag",
                                      "etag",
                                      "created",
                                      "modified",
                                      "category",
                                      "state",
                                      "status",
                                      "serverProfileUri",
                                      NULL};

static int in_list(const char *const *l, const char *k) {
  for (; *l; l++)
    if (!strcmp(*l, k)) return 1;
  return 0;
}

static int str_field(json_t *body, const char *key, const char **out, struct err *e) {
  json_t *v = json_object_get(body, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) {
    err_set(e, 400, "INVALID_FIELD", "server hardware: \"%s\" must be a string", key);
    return -1;
  }
  *out = json_string_value(v);
  return 0;
}

/* The normalized MAC list of `v`; NULL with e set. */
static json_t *macs_check(json_t *v, struct err *e) {
  if (json_is_string(v)) {
    json_t *a = json_pack("[O]", v);
    json_t *r = a ? macs_check(a, e) : NULL;
    json_decref(a);
    return r;
  }
  if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > HW_MAX_MACS) {
    err_set(e, 400, "INVALID_MAC",
            "server hardware: \"macAddresses\" must list the machine's 1 to %d MAC addresses "
            "(\"52:54:00:12:34:56\")",
            HW_MAX_MACS);
    err_action(e, "Give the MAC address of each NIC the machine may network-boot from.");
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(v, i, m) {
    char mac[18];
    if (hw_mac_normalize(json_string_value(m), mac) < 0) {
      err_set(e, 400, "INVALID_MAC",
              "server hardware: \"%.60s\" is not a MAC address (six hex bytes separated by ':' "
              "or '-')",
              json_string_value(m) ? json_string_value(m) : "(not a string)");
      json_decref(out);
      return NULL;
    }
    if (!strcmp(mac, "00:00:00:00:00:00") || !strcmp(mac, "ff:ff:ff:ff:ff:ff") ||
        (hexval(mac[1]) & 1)) {
      err_set(e, 400, "INVALID_MAC",
              "server hardware: %s is not a NIC's own address (zero, broadcast or multicast)", mac);
      json_decref(out);
      return NULL;
    }
    size_t j;
    json_t *w;
    json_array_foreach(out, j, w) {
      if (is(json_string_value(w), mac)) {
        err_set(e, 400, "INVALID_MAC", "server hardware: MAC %s is listed twice", mac);
        json_decref(out);
        return NULL;
      }
    }
    json_array_append_new(out, json_string(mac));
  }
  return out;
}

/* An initiator name for a machine: iqn.2024-11.org.streamer:host.<name>.<id8>. */
static char *initiator_for(const char *name, const char *id) {
  char clean[160];
  size_t o = 0;
  for (const char *p = name; *p && o < sizeof clean - 1; p++) {
    char c = *p >= 'A' && *p <= 'Z' ? (char)(*p + 32) : *p;
    clean[o++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ? c : '-';
  }
  clean[o] = 0;
  return util_strdup_printf("iqn.2024-11.org.streamer:host.%s.%.8s", o ? clean : "machine", id);
}

static char *chap_name_for(const char *name) {
  char *c = strdup(name);
  for (char *p = c; p && *p; p++)
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) *p = '-';
  if (c && strlen(c) > 255) c[255] = 0;
  return c;
}

static int check_keys(json_t *body, const char *id, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "the request body must be a JSON object (server hardware)");
    return -1;
  }
  const char *k;
  json_t *v;
  json_object_foreach(body, k, v) {
    if (in_list(WRITABLE, k) || in_list(IGNORED, k)) {
      if (is(k, "id") && id && json_string_length(v) && !is(json_string_value(v), id)) {
        err_set(e, 400, "ID_MISMATCH", "the body's id \"%.100s\" does not match the URI's \"%s\"",
                json_string_value(v), id);
        return -1;
      }
      continue;
    }
    err_set(e, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in server hardware", k);
    err_action(e, "Remove the field or correct its spelling (see docs/api.md#server-hardware).");
    return -1;
  }
  return 0;
}

/* Field `key` of doc from the body's value `v` (NULL: not given; "": none,
 * stored as null): an IPv4 address, or with `mask` a contiguous netmask. */
static int set_addr(json_t *doc, const char *key, const char *v, int mask, int create,
                    struct err *e) {
  if (!v) {
    if (create) json_object_set_new(doc, key, json_null());
    return 0;
  }
  if (*v && !mask && !valid_ipv4(v)) {
    err_set(e, 400, "INVALID_FIELD", "server hardware: \"%s\" \"%.60s\" is not an IPv4 address",
            key, v);
    return -1;
  }
  if (*v && mask && !valid_netmask(v)) {
    err_set(e, 400, "INVALID_FIELD",
            "server hardware: \"%s\" \"%.60s\" is not an IPv4 netmask (255.255.255.0)", key, v);
    return -1;
  }
  json_object_set_new(doc, key, *v ? json_string(v) : json_null());
  return 0;
}

/* The second NIC's address (ipv4Address2, netmask2: _Initiator2.ip and
 * .netmask for plan scripts) belongs to the NIC of the second MAC, and is not
 * the first NIC's address. Checked on the resulting document, so that a PUT
 * dropping the second MAC while an address is set is refused too. */
static int second_nic_check(json_t *doc, struct err *e) {
  const char *ip = json_string_value(json_object_get(doc, "ipv4Address"));
  const char *ip2 = json_string_value(json_object_get(doc, "ipv4Address2"));
  const char *mask2 = json_string_value(json_object_get(doc, "netmask2"));
  if ((ip2 || mask2) && json_array_size(json_object_get(doc, "macAddresses")) < 2) {
    err_set(e, 400, "INVALID_FIELD",
            "server hardware: \"%s\" is the address of the second NIC, but \"macAddresses\" "
            "lists no second MAC",
            ip2 ? "ipv4Address2" : "netmask2");
    err_action(e, "Give the second NIC's MAC as the second entry of macAddresses, or set "
                  "ipv4Address2 and netmask2 to \"\".");
    return -1;
  }
  if (ip2 && is(ip, ip2)) {
    err_set(e, 400, "INVALID_FIELD",
            "server hardware: \"ipv4Address2\" %s is the first NIC's \"ipv4Address\" too: "
            "two NICs cannot share an address",
            ip2);
    err_action(e, "Give each NIC its own address.");
    return -1;
  }
  return 0;
}

/* Apply the body's fields to doc (a new or copied document). */
static int apply_fields(json_t *doc, json_t *body, int create, struct err *e) {
  json_t *name = json_object_get(body, "name");
  if (create || (name && !json_is_null(name))) {
    if (artifact_check_name("server hardware", name, e) < 0) return -1;
    json_object_set(doc, "name", name);
  }
  const char *desc, *init, *cname, *csecret, *ip, *mask, *ip2, *mask2;
  if (str_field(body, "description", &desc, e) < 0 ||
      str_field(body, "initiatorName", &init, e) < 0 ||
      str_field(body, "chapName", &cname, e) < 0 ||
      str_field(body, "chapSecret", &csecret, e) < 0 ||
      str_field(body, "ipv4Address", &ip, e) < 0 || str_field(body, "netmask", &mask, e) < 0 ||
      str_field(body, "ipv4Address2", &ip2, e) < 0 || str_field(body, "netmask2", &mask2, e) < 0)
    return -1;
  if (desc) {
    if (strlen(desc) > DESC_MAX) {
      err_set(e, 400, "INVALID_FIELD", "server hardware: \"description\" is too long");
      return -1;
    }
    json_object_set_new(doc, "description", json_string(desc));
  } else if (create) {
    json_object_set_new(doc, "description", json_string(""));
  }
  json_t *macs = json_object_get(body, "macAddresses");
  if (create || (macs && !json_is_null(macs))) {
    json_t *m = macs_check(macs, e);
    if (!m) return -1;
    json_object_set_new(doc, "macAddresses", m);
  }
  const char *id = json_string_value(json_object_get(doc, "id"));
  const char *hwname = json_string_value(json_object_get(doc, "name"));
  if (init && *init) {
    if (!osvol_initiator_valid(init)) {
      err_set(e, 400, "INVALID_INITIATOR",
              "server hardware: \"%.240s\" is not an iSCSI initiator name: expected "
              "iqn.YYYY-MM.reversed.domain[:name], eui. and 16 hex digits, or naa. and 16 or 32 "
              "hex digits (RFC 3720 3.2.6.3)",
              init);
      return -1;
    }
    char *n = strdup(init);
    if (!n) return oom(e);
    if (!strncasecmp(n, "iqn.", 4))
      for (char *p = n; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    json_object_set_new(doc, "initiatorName", json_string(n));
    free(n);
  } else if (create) {
    char *n = initiator_for(hwname, id);
    if (!n) return oom(e);
    json_object_set_new(doc, "initiatorName", json_string(n));
    free(n);
  }
  if (cname && *cname) {
    if (strlen(cname) > 255 || !printable_nospace(cname)) {
      err_set(e, 400, "INVALID_CHAP",
              "server hardware: \"chapName\" must be 1 to 255 printable ASCII characters without "
              "spaces");
      return -1;
    }
    json_object_set_new(doc, "chapName", json_string(cname));
  } else if (create) {
    char *n = chap_name_for(hwname);
    if (!n) return oom(e);
    json_object_set_new(doc, "chapName", json_string(n));
    free(n);
  }
  json_t *sec = json_object_get(doc, "secrets");
  if (!json_is_object(sec)) {
    sec = json_object();
    json_object_set_new(doc, "secrets", sec);
  }
  if (csecret && *csecret) {
    size_t n = strlen(csecret);
    if (n < CHAP_MIN || n > CHAP_MAX || !printable_nospace(csecret)) {
      /* the value is never repeated */
      err_set(e, 400, "INVALID_CHAP",
              "server hardware: \"chapSecret\" must be %d to %d printable ASCII characters "
              "without spaces (RFC 7143 wants at least 12; UEFI and Windows initiators take at "
              "most 16); the one given has %zu",
              CHAP_MIN, CHAP_MAX, n);
      err_action(e, "Choose another secret, or leave it out and let the server generate one.");
      return -1;
    }
    json_object_set_new(sec, "chapSecret", json_string(csecret));
  } else if (create) {
    char *t = util_token(12); /* 16 characters */
    if (!t) return oom(e);
    json_object_set_new(sec, "chapSecret", json_string(t));
    memset(t, 0, strlen(t));
    free(t);
  }
  if (set_addr(doc, "ipv4Address", ip, 0, create, e) < 0 ||
      set_addr(doc, "netmask", mask, 1, create, e) < 0 ||
      set_addr(doc, "ipv4Address2", ip2, 0, create, e) < 0 ||
      set_addr(doc, "netmask2", mask2, 1, create, e) < 0)
    return -1;
  return second_nic_check(doc, e);
}

/* No other machine has one of doc's MACs. */
static int macs_unique(struct store_txn *t, json_t *doc, const char *id, struct err *e) {
  struct store_entry **v;
  size_t n;
  if (store_txn_list(t, HW_COLL, &v, &n) < 0) return oom(e);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (is(v[i]->id, id)) continue;
    size_t a, b;
    json_t *x, *y;
    json_array_foreach(json_object_get(doc, "macAddresses"), a, x) {
      json_array_foreach(json_object_get(v[i]->doc, "macAddresses"), b, y) {
        if (rc == 0 && json_equal(x, y)) {
          err_set(e, 409, "MAC_CONFLICT", "MAC %s already belongs to server hardware \"%s\"",
                  json_string_value(x), v[i]->name ? v[i]->name : v[i]->id);
          err_action(e, "A MAC address identifies one machine: remove it there first.");
          rc = -1;
        }
      }
    }
  }
  store_entries_release(v, n);
  return rc;
}

static int put_doc(struct store_txn *t, const char *id, json_t *doc, struct err *e) {
  const char *name = json_string_value(json_object_get(doc, "name"));
  if (store_put(t, HW_COLL, id, name, doc, e) < 0) {
    if (e->status == 409) {
      err_clear(e);
      err_set(e, 409, "NAME_CONFLICT", "server hardware named \"%s\" already exists", name);
      err_action(e, "Choose another name, or change or delete the existing machine.");
    }
    return -1;
  }
  return 0;
}

int hw_create(struct deploy_service *d, json_t *body, struct store_entry **out, struct err *e) {
  if (out) *out = NULL;
  if (check_keys(body, NULL, e) < 0) return -1;
  char id[37];
  util_uuid(id);
  char *uri = util_strdup_printf("/rest/%s/%s", HW_COLL, id);
  json_t *doc = uri ? json_pack("{s:s, s:s, s:s, s:s, s:n}", "type", "server-hardware", "id", id,
                                "uri", uri, "category", HW_COLL, "serverProfileUri")
                    : NULL;
  free(uri);
  if (!doc) return oom(e);
  if (apply_fields(doc, body, 1, e) < 0) {
    json_decref(doc);
    return -1;
  }
  json_object_set_new(doc, "state", json_string("Unused"));
  json_object_set_new(doc, "status", json_string("OK"));
  struct store_txn *t = store_begin(d->c.store);
  if (!t) {
    json_decref(doc);
    return oom(e);
  }
  if (macs_unique(t, doc, id, e) < 0 || put_doc(t, id, doc, e) < 0) {
    json_decref(doc);
    store_rollback(t);
    return -1;
  }
  json_decref(doc);
  if (store_commit(t, e) < 0) return -1;
  log_info("deploy", "server hardware %s created", id);
  if (out) *out = store_get(d->c.store, HW_COLL, id);
  return 0;
}

int hw_update(struct deploy_service *d, const char *id, json_t *body, const char *if_match,
              struct store_entry **out, struct err *e) {
  if (out) *out = NULL;
  if (check_keys(body, id, e) < 0) return -1;
  struct store_txn *t = store_begin(d->c.store);
  if (!t) return oom(e);
  struct store_entry *old = store_txn_get(t, HW_COLL, id);
  json_t *doc = NULL;
  int rc = -1;
  if (!old) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "server hardware \"%.100s\" does not exist", id);
    goto out;
  }
  if (deploy_if_match(old->doc, if_match, e) < 0) goto out;
  doc = json_deep_copy(old->doc);
  if (!doc) {
    oom(e);
    goto out;
  }
  if (apply_fields(doc, body, 0, e) < 0) goto out;
  const char *sp = json_string_value(json_object_get(old->doc, "serverProfileUri"));
  static const char *const bound[] = {"initiatorName", "chapName", NULL};
  int changed = !json_equal(json_object_get(json_object_get(doc, "secrets"), "chapSecret"),
                            json_object_get(json_object_get(old->doc, "secrets"), "chapSecret"));
  for (const char *const *b = bound; *b; b++)
    changed |= !json_equal(json_object_get(doc, *b), json_object_get(old->doc, *b));
  if (sp && changed) {
    err_set(e, 409, "HARDWARE_IN_USE",
            "server hardware \"%s\" is used by server profile %s: its initiator name and CHAP "
            "credentials are bound to that profile's OS volume and cannot change now",
            old->name, sp);
    err_action(e, "Delete the server profile first, or leave initiatorName and CHAP unchanged.");
    goto out;
  }
  if (macs_unique(t, doc, id, e) < 0 || put_doc(t, id, doc, e) < 0) goto out;
  rc = 0;
out:
  json_decref(doc);
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  if (out) *out = store_get(d->c.store, HW_COLL, id);
  return 0;
}

int hw_delete(struct deploy_service *d, const char *id, const char *if_match, struct err *e) {
  struct store_txn *t = store_begin(d->c.store);
  if (!t) return oom(e);
  struct store_entry *old = store_txn_get(t, HW_COLL, id);
  int rc = -1;
  if (!old) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "server hardware \"%.100s\" does not exist", id);
    goto out;
  }
  if (deploy_if_match(old->doc, if_match, e) < 0) goto out;
  const char *sp = json_string_value(json_object_get(old->doc, "serverProfileUri"));
  if (sp) {
    err_set(e, 409, "HARDWARE_IN_USE", "server hardware \"%s\" is used by server profile %s",
            old->name, sp);
    err_action(e, "Delete the server profile first.");
    goto out;
  }
  rc = store_delete(t, HW_COLL, id, e);
out:
  store_entry_release(old);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  if (store_commit(t, e) < 0) return -1;
  log_info("deploy", "server hardware %s deleted", id);
  return 0;
}

struct store_entry *hw_find_by_mac(struct store *s, const char *mac) {
  char want[18];
  if (hw_mac_normalize(mac, want) < 0) return NULL;
  struct store_entry **v;
  size_t n;
  if (store_list(s, HW_COLL, &v, &n) < 0) return NULL;
  char id[64] = "";
  for (size_t i = 0; i < n && !id[0]; i++) {
    size_t j;
    json_t *m;
    json_array_foreach(json_object_get(v[i]->doc, "macAddresses"), j, m) {
      if (is(json_string_value(m), want)) snprintf(id, sizeof id, "%s", v[i]->id);
    }
  }
  store_entries_release(v, n);
  return id[0] ? store_get(s, HW_COLL, id) : NULL;
}

struct store_entry *deploy_lookup(struct store *s, const char *coll, const char *ref) {
  const char *id = deploy_uri_id(ref, coll);
  struct store_entry *en = id ? store_get(s, coll, id) : NULL;
  if (!en && ref && strncmp(ref, "/rest/", 6) != 0) en = store_get_by_name(s, coll, ref);
  return en;
}

struct store_entry *hw_lookup(struct store *s, const char *ref) {
  return deploy_lookup(s, HW_COLL, ref);
}
