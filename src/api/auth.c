/* auth.c — users (yescrypt password hashes), login sessions with an idle
 * timeout, roles and the permission check run before every handler. */
#include <crypt.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"

static const char *USERS = "users";

static const struct {
  unsigned role;
  const char *name;
} ROLES[] = {
    {ROLE_INFRA, "Infrastructure administrator"},
    {ROLE_DEPLOY, "Deployment administrator"},
    {ROLE_SERVER, "Server administrator"},
    {ROLE_READONLY, "Read only"},
};

const char *role_name(unsigned role) {
  for (size_t i = 0; i < sizeof ROLES / sizeof *ROLES; i++)
    if (ROLES[i].role == role) return ROLES[i].name;
  return "?";
}

static unsigned role_parse(const char *s) {
  for (size_t i = 0; s && i < sizeof ROLES / sizeof *ROLES; i++)
    if (strcasecmp(ROLES[i].name, s) == 0) return ROLES[i].role;
  return 0;
}

/* ---- passwords ---------------------------------------------------------------- */
static char *hash_password(const char *pw) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) return NULL;
  struct crypt_data *cd = calloc(1, sizeof *cd);
  if (!cd) return NULL;
  char *h = crypt_r(pw, salt, cd);
  char *out = (h && h[0] == '$') ? strdup(h) : NULL;
  explicit_bzero(cd, sizeof *cd);
  free(cd);
  return out;
}

static int check_password(const char *pw, const char *hash) {
  if (!pw || !hash) return 0;
  struct crypt_data *cd = calloc(1, sizeof *cd);
  if (!cd) return 0;
  char *h = crypt_r(pw, hash, cd);
  int ok = h && h[0] == '$' && strlen(h) == strlen(hash);
  if (ok) {
    /* Constant-time comparison. */
    unsigned char diff = 0;
    for (size_t i = 0; hash[i]; i++)
      diff |= (unsigned char)(h[i] ^ hash[i]);
    ok = diff == 0;
  }
  explicit_bzero(cd, sizeof *cd);
  free(cd);
  return ok;
}

static char *render_user(json_t *doc) {
  json_t *c = json_copy(doc);
  json_object_del(c, "passwordHash");
  char *s = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  return s;
}

void auth_register(struct store *s) { store_set_render(s, USERS, render_user); }

static unsigned doc_roles(json_t *doc) {
  unsigned roles = 0;
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(doc, "permissions"), i, p) {
    roles |= role_parse(json_string_value(json_object_get(p, "roleName")));
  }
  return roles;
}

static json_t *user_doc(const char *name, const char *hash, unsigned roles, const char *full,
                        const char *email) {
  json_t *perms = json_array();
  for (size_t i = 0; i < sizeof ROLES / sizeof *ROLES; i++)
    if (roles & ROLES[i].role)
      json_array_append_new(perms, json_pack("{s:s}", "roleName", ROLES[i].name));
  char *uri = util_strdup_printf("/rest/users/%s", name);
  json_t *d = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:s}", "type", "UserAndPermissions",
      "category", "users", "uri", uri, "userName", name, "name", name, "fullName", full ? full : "",
      "emailAddress", email ? email : "", "enabled", 1, "permissions", perms, "passwordHash", hash);
  free(uri);
  return d;
}

int api_bootstrap_admin(struct store *s, const char *password_file, struct err *e) {
  if (store_count(s, USERS) > 0) return 0;
  char *pw = util_token(18);
  char *hash = pw ? hash_password(pw) : NULL;
  int rc = -1;
  if (!hash) {
    err_set(e, 500, "CRYPTO_ERROR", "cannot hash the first administrator password");
    goto out;
  }
  char line[64];
  snprintf(line, sizeof line, "%s\n", pw);
  if (util_write_file_atomic(password_file, line, strlen(line), 0600, e) < 0) goto out;
  explicit_bzero(line, sizeof line);
  json_t *doc = user_doc("administrator", hash, ROLE_INFRA, "Administrator", NULL);
  struct store_txn *t = store_begin(s);
  rc = t ? store_put(t, USERS, "administrator", "administrator", doc, e) : -1;
  json_decref(doc);
  if (t) rc = rc < 0 ? (store_rollback(t), -1) : store_commit(t, e);
  if (rc == 0)
    log_info("auth", "created user \"administrator\"; its password is in %s (mode 0600)",
             password_file);
out:
  if (pw) explicit_bzero(pw, strlen(pw));
  free(pw);
  free(hash);
  return rc;
}

static char *dummy;
static void dummy_init(void) { dummy = hash_password("streamer-dummy-password"); }
static const char *dummy_hash(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, dummy_init);
  return dummy;
}

/* ---- sessions -------------------------------------------------------------------- */
static unsigned bucket(const char *token) {
  unsigned h = 5381;
  for (; *token; token++)
    h = h * 33 + (unsigned char)*token;
  return h % 256;
}

static struct session *session_new(struct api *a, const char *user, unsigned roles) {
  struct session *s = calloc(1, sizeof *s);
  char *tok = util_token(32);
  if (!s || !tok) {
    free(s);
    free(tok);
    return NULL;
  }
  snprintf(s->token, sizeof s->token, "%s", tok);
  free(tok);
  snprintf(s->user, sizeof s->user, "%s", user);
  s->roles = roles;
  s->last_used_ms = util_mono_ms();
  pthread_mutex_lock(&a->sess_lock);
  unsigned b = bucket(s->token);
  s->next = a->sessions[b];
  a->sessions[b] = s;
  pthread_mutex_unlock(&a->sess_lock);
  return s;
}

/* Look a token up, touching it; copies the session into *out. Expired
 * sessions are removed on the way. */
static int session_lookup(struct api *a, const char *token, struct session *out) {
  if (!token || !*token || strlen(token) >= sizeof out->token) return -1;
  int64_t now = util_mono_ms();
  int found = -1;
  pthread_mutex_lock(&a->sess_lock);
  struct session **pp = &a->sessions[bucket(token)];
  while (*pp) {
    struct session *s = *pp;
    if (now - s->last_used_ms >
        (int64_t)__atomic_load_n(&a->idle_timeout_s, __ATOMIC_RELAXED) * 1000) {
      *pp = s->next;
      explicit_bzero(s, sizeof *s);
      free(s);
      continue;
    }
    if (strcmp(s->token, token) == 0) {
      s->last_used_ms = now;
      *out = *s;
      found = 0;
    }
    pp = &s->next;
  }
  pthread_mutex_unlock(&a->sess_lock);
  return found;
}

static void session_drop(struct api *a, const char *token) {
  pthread_mutex_lock(&a->sess_lock);
  for (struct session **pp = &a->sessions[bucket(token)]; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->token, token) == 0) {
      struct session *s = *pp;
      *pp = s->next;
      free(s);
      break;
    }
  }
  pthread_mutex_unlock(&a->sess_lock);
}

void sessions_drop_user(struct api *a, const char *user) {
  pthread_mutex_lock(&a->sess_lock);
  for (int b = 0; b < 256; b++) {
    struct session **pp = &a->sessions[b];
    while (*pp) {
      if (strcmp((*pp)->user, user) == 0) {
        struct session *s = *pp;
        *pp = s->next;
        free(s);
      } else {
        pp = &(*pp)->next;
      }
    }
  }
  pthread_mutex_unlock(&a->sess_lock);
}

void sessions_free(struct api *a) {
  for (int b = 0; b < 256; b++) {
    for (struct session *s = a->sessions[b], *n; s; s = n) {
      n = s->next;
      free(s);
    }
    a->sessions[b] = NULL;
  }
}

static const char *req_token(struct request *r) {
  const char *t = req_header(r, "auth"); /* header names are case-insensitive */
  if (!t) t = req_header(r, "Session-ID");
  if (!t) {
    const char *h = req_header(r, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) t = h + 7;
  }
  return t;
}

int auth_check(struct request *r) {
  if (session_lookup(r->api, req_token(r), &r->sess) < 0) {
    reply_err(r, 401, "AUTHORIZATION_REQUIRED",
              req_token(r) ? "the session is invalid or has expired"
                           : "this request needs a session: send the auth header");
    return -1;
  }
  r->authenticated = 1;
  return 0;
}

int auth_require(struct request *r, unsigned roles) {
  if (r->sess.roles & (roles | ROLE_INFRA)) return 0;
  char have[128] = "";
  for (size_t i = 0; i < sizeof ROLES / sizeof *ROLES; i++)
    if (r->sess.roles & ROLES[i].role)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "",
               ROLES[i].name);
  reply_err(r, 403, "INSUFFICIENT_PRIVILEGES", "user \"%s\" (%s) may not %s %s", r->sess.user, have,
            r->method, r->path);
  return -1;
}

/* ---- /rest/login-sessions ----------------------------------------------------------- */
void route_login_sessions(struct request *r) {
  struct api *a = r->api;
  if (strcmp(r->method, "POST") == 0) {
    json_t *b = req_json(r);
    if (!b) return;
    const char *user = json_string_value(json_object_get(b, "userName"));
    const char *pw = json_string_value(json_object_get(b, "password"));
    if (!json_is_object(b) || !user || !pw) {
      reply_err(r, 400, "INVALID_LOGIN",
                "the body must be {\"userName\": ..., \"password\": ..., \"authLoginDomain\": "
                "\"LOCAL\"}");
      return;
    }
    const char *domain = json_string_value(json_object_get(b, "authLoginDomain"));
    struct store_entry *u = strlen(user) < 128 ? store_get(a->store, USERS, user) : NULL;
    int ok = u && (!domain || !*domain || strcasecmp(domain, "LOCAL") == 0) &&
             util_json_bool(json_object_get(u->doc, "enabled")) != 0 &&
             check_password(pw, json_string_value(json_object_get(u->doc, "passwordHash")));
    if (!u) check_password(pw, dummy_hash()); /* same cost when the user is unknown */
    if (!ok) {
      store_entry_release(u);
      log_warn("auth", "failed login for user \"%.64s\"", user);
      reply_err(r, 401, "AUTHENTICATION_FAILED", "invalid user name or password");
      return;
    }
    struct session *s = session_new(a, user, doc_roles(u->doc));
    store_entry_release(u);
    if (!s) {
      reply_err(r, 500, "OUT_OF_MEMORY", "out of memory");
      return;
    }
    log_info("auth", "user \"%s\" logged in", user);
    reply_json(r, 200, json_pack("{s:s, s:{}}", "sessionID", s->token, "partnerData"));
    return;
  }
  if (auth_check(r) < 0) return;
  if (strcmp(r->method, "PUT") == 0) {
    reply_json(r, 200, json_pack("{s:s}", "sessionID", r->sess.token));
  } else if (strcmp(r->method, "DELETE") == 0) {
    session_drop(a, r->sess.token);
    reply_no_content(r);
  } else if (strcmp(r->method, "GET") == 0) {
    reply_json(r, 200,
               json_pack("{s:s, s:s}", "sessionID", r->sess.token, "userName", r->sess.user));
  } else {
    reply_err(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on /rest/login-sessions", r->method);
  }
}

void route_idle_timeout(struct request *r) {
  if (auth_check(r) < 0) return;
  if (strcmp(r->method, "GET") == 0) {
    reply_json(
        r, 200,
        json_pack("{s:I}", "idleTimeout",
                  (json_int_t)__atomic_load_n(&r->api->idle_timeout_s, __ATOMIC_RELAXED) * 1000));
    return;
  }
  if (strcmp(r->method, "POST") != 0 && strcmp(r->method, "PUT") != 0) {
    reply_err(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed here", r->method);
    return;
  }
  if (auth_require(r, ROLE_INFRA) < 0) return;
  json_t *b = req_json(r);
  if (!b) return;
  json_t *v = json_object_get(b, "idleTimeout");
  if (!json_is_integer(v) || json_integer_value(v) < 60000 ||
      json_integer_value(v) > 7LL * 86400 * 1000) {
    reply_err(
        r, 400, "INVALID_IDLE_TIMEOUT",
        "\"idleTimeout\" must be an integer number of milliseconds between 60000 and 604800000");
    return;
  }
  __atomic_store_n(&r->api->idle_timeout_s, (int)(json_integer_value(v) / 1000), __ATOMIC_RELAXED);
  reply_json(r, 200, json_pack("{s:I}", "idleTimeout", json_integer_value(v)));
}

/* ---- /rest/users ------------------------------------------------------------------- */
static int valid_username(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 64) return 0;
  /* The name is the last segment of /rest/users/{name}: "." and ".." would be
   * URIs that clients normalize away (to /rest/users or /rest). */
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-')) return 0;
  return 1;
}

static int valid_password(const char *pw, struct request *r) {
  size_t n = pw ? strlen(pw) : 0;
  if (n < 8 || n > 256) {
    reply_err(r, 400, "INVALID_PASSWORD", "a password must be 8 to 256 characters long");
    return 0;
  }
  return 1;
}

/* Roles from "permissions":[{"roleName"}] or "role":"...". 0 with a reply on error. */
static int body_roles(struct request *r, json_t *b, unsigned *out) {
  json_t *perms = json_object_get(b, "permissions");
  const char *role = json_string_value(json_object_get(b, "role"));
  unsigned roles = 0;
  if (role) {
    roles = role_parse(role);
    if (!roles) goto bad;
  } else if (json_is_array(perms)) {
    size_t i;
    json_t *p;
    json_array_foreach(perms, i, p) {
      unsigned one = role_parse(json_string_value(json_object_get(p, "roleName")));
      if (!one) goto bad;
      roles |= one;
    }
  } else if (perms && !json_is_null(perms)) {
    goto bad;
  }
  *out = roles;
  return 1;
bad:
  reply_err(
      r, 400, "INVALID_ROLE",
      "roles must be given as \"permissions\":[{\"roleName\":...}] with one of: "
      "Infrastructure administrator, Deployment administrator, Server administrator, Read only");
  return 0;
}

static int count_admins(struct store *s, const char *except) {
  struct store_entry **v;
  size_t n;
  int c = 0;
  if (store_list(s, USERS, &v, &n) < 0) return 1;
  for (size_t i = 0; i < n; i++)
    if ((doc_roles(v[i]->doc) & ROLE_INFRA) &&
        util_json_bool(json_object_get(v[i]->doc, "enabled")) != 0 &&
        (!except || strcmp(v[i]->id, except) != 0))
      c++;
  store_entries_release(v, n);
  return c;
}

static void put_user(struct request *r, const char *name, json_t *doc, int status) {
  struct err e;
  err_init(&e);
  struct store_txn *t = store_begin(r->api->store);
  int rc = t ? store_put(t, USERS, name, name, doc, &e) : -1;
  if (t) rc = rc < 0 ? (store_rollback(t), -1) : store_commit(t, &e);
  json_decref(doc);
  if (rc < 0) {
    reply_error(r, &e);
    return;
  }
  struct store_entry *en = store_get(r->api->store, USERS, name);
  if (!en) {
    reply_err(r, 500, "INTERNAL_ERROR", "user vanished");
    return;
  }
  reply_text(r, status, strndup(en->text, en->len), en->len);
  snprintf(r->location, sizeof r->location, "/rest/users/%s", name);
  store_entry_release(en);
}

void route_users(struct request *r) {
  struct store *s = r->api->store;
  static const char *const KEYS[] = {"type",        "uri",      "category",     "userName",
                                     "name",        "fullName", "emailAddress", "enabled",
                                     "permissions", "role",     "password",     "currentPassword",
                                     "eTag",        "created",  "modified",     NULL};
  if (r->nseg == 1) {
    if (strcmp(r->method, "GET") == 0) {
      serve_collection(r, USERS);
      return;
    }
    if (strcmp(r->method, "POST") != 0) {
      reply_err(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on /rest/users", r->method);
      return;
    }
    if (auth_require(r, ROLE_INFRA) < 0) return;
  }
  json_t *b = NULL;
  if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) {
    b = req_json(r);
    if (!b) return;
    if (!json_is_object(b)) {
      reply_err(r, 400, "INVALID_BODY", "the body must be a JSON object describing a user");
      return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
      int known = 0;
      for (int i = 0; KEYS[i]; i++)
        known |= strcmp(KEYS[i], k) == 0;
      if (!known) {
        reply_err(r, 400, "UNKNOWN_FIELD", "unknown field \"%.100s\" in a user", k);
        return;
      }
    }
    const char *sk[] = {"fullName", "emailAddress", "password", "currentPassword"};
    for (int i = 0; i < 4; i++) {
      json_t *v2 = json_object_get(b, sk[i]);
      if (v2 && !json_is_null(v2) && (!json_is_string(v2) || json_string_length(v2) > 256)) {
        reply_err(r, 400, "INVALID_FIELD", "\"%s\" must be a string of at most 256 bytes", sk[i]);
        return;
      }
    }
  }
  if (r->nseg == 1) { /* POST /rest/users */
    const char *name = json_string_value(json_object_get(b, "userName"));
    const char *pw = json_string_value(json_object_get(b, "password"));
    unsigned roles;
    if (!valid_username(name)) {
      reply_err(r, 400, "INVALID_USER_NAME",
                "\"userName\" is required: 1 to 64 letters, digits, '.', '_' or '-'");
      return;
    }
    if (!valid_password(pw, r) || !body_roles(r, b, &roles)) return;
    if (!roles) {
      reply_err(r, 400, "INVALID_ROLE", "a user needs a role (\"permissions\")");
      return;
    }
    struct store_entry *old = store_get(s, USERS, name);
    if (old) {
      store_entry_release(old);
      reply_err(r, 409, "NAME_CONFLICT", "user \"%s\" already exists", name);
      return;
    }
    char *hash = hash_password(pw);
    if (!hash) {
      reply_err(r, 500, "CRYPTO_ERROR", "cannot hash the password");
      return;
    }
    json_t *doc = user_doc(name, hash, roles, json_string_value(json_object_get(b, "fullName")),
                           json_string_value(json_object_get(b, "emailAddress")));
    free(hash);
    put_user(r, name, doc, 201);
    return;
  }
  if (r->nseg != 2) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "no resource at %s", r->path);
    return;
  }
  const char *name = r->seg[1];
  struct store_entry *u = store_get(s, USERS, name);
  if (!u) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "user \"%.64s\" does not exist", name);
    return;
  }
  int self = strcmp(name, r->sess.user) == 0;
  if (strcmp(r->method, "GET") == 0) {
    reply_text(r, 200, strndup(u->text, u->len), u->len);
  } else if (strcmp(r->method, "DELETE") == 0) {
    if (auth_require(r, ROLE_INFRA) == 0) {
      if ((doc_roles(u->doc) & ROLE_INFRA) && count_admins(s, name) == 0) {
        reply_err(r, 409, "LAST_ADMINISTRATOR",
                  "user \"%s\" is the last Infrastructure administrator and cannot be deleted",
                  name);
      } else {
        struct err e;
        err_init(&e);
        struct store_txn *t = store_begin(s);
        int rc = t ? store_delete(t, USERS, name, &e) : -1;
        if (t) rc = rc < 0 ? (store_rollback(t), -1) : store_commit(t, &e);
        if (rc < 0) {
          reply_error(r, &e);
        } else {
          sessions_drop_user(r->api, name);
          reply_no_content(r);
        }
      }
    }
  } else if (strcmp(r->method, "PUT") == 0) {
    /* Anyone may change their own password (with the current one); the rest
     * needs an Infrastructure administrator. */
    int admin = (r->sess.roles & ROLE_INFRA) != 0;
    json_t *perms = json_object_get(b, "permissions");
    int changes_roles = (perms && !json_is_null(perms)) || json_object_get(b, "role");
    const char *pw = json_string_value(json_object_get(b, "password"));
    if (!admin && (!self || changes_roles || json_object_get(b, "enabled"))) {
      auth_require(r, ROLE_INFRA);
    } else if (!admin && pw &&
               !check_password(json_string_value(json_object_get(b, "currentPassword")),
                               json_string_value(json_object_get(u->doc, "passwordHash")))) {
      reply_err(r, 400, "INVALID_CURRENT_PASSWORD",
                "\"currentPassword\" is required and must be the current password");
    } else {
      unsigned roles = doc_roles(u->doc);
      int enabled = util_json_bool(json_object_get(u->doc, "enabled"));
      json_t *en = json_object_get(b, "enabled");
      if (changes_roles && !body_roles(r, b, &roles)) goto done;
      if (en && !json_is_null(en) && (enabled = util_json_bool(en)) < 0) {
        reply_err(r, 400, "INVALID_FIELD", "\"enabled\" must be true or false");
        goto done;
      }
      if (!roles) {
        reply_err(r, 400, "INVALID_ROLE", "a user needs a role (\"permissions\")");
        goto done;
      }
      if ((doc_roles(u->doc) & ROLE_INFRA) && (!(roles & ROLE_INFRA) || !enabled) &&
          count_admins(s, name) == 0) {
        reply_err(r, 409, "LAST_ADMINISTRATOR",
                  "user \"%s\" is the last Infrastructure administrator", name);
        goto done;
      }
      if (pw && !valid_password(pw, r)) goto done;
      char *hash = pw ? hash_password(pw)
                      : strdup(json_string_value(json_object_get(u->doc, "passwordHash")));
      if (!hash) {
        reply_err(r, 500, "CRYPTO_ERROR", "cannot hash the password");
        goto done;
      }
      json_t *full = json_object_get(b, "fullName"), *mail = json_object_get(b, "emailAddress");
      json_t *doc = user_doc(
          name, hash, roles, json_string_value(full ? full : json_object_get(u->doc, "fullName")),
          json_string_value(mail ? mail : json_object_get(u->doc, "emailAddress")));
      json_object_set_new(doc, "enabled", json_boolean(enabled));
      free(hash);
      if (pw || changes_roles || !enabled) sessions_drop_user(r->api, name);
      put_user(r, name, doc, 200);
    }
  } else {
    reply_err(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s", r->method, r->path);
  }
done:
  store_entry_release(u);
}
