/* api_int.h — private to src/api: the request being served, response
 * helpers, sessions and roles shared by http.c, auth.c and routes.c. */
#ifndef STREAMER_API_INT_H
#define STREAMER_API_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#include "api/api.h"

enum role {
  ROLE_INFRA = 1 << 0,   /* Infrastructure administrator: everything */
  ROLE_DEPLOY = 1 << 1,  /* Deployment administrator: artifacts */
  ROLE_SERVER = 1 << 2,  /* Server administrator: server profiles, deployments */
  ROLE_READONLY = 1 << 3 /* Read only */
};

struct session {
  char token[64];
  char user[128];
  unsigned roles;
  int64_t last_used_ms;
  struct session *next;
};

/* A rendered response body shared by many replies (refcounted). */
struct blob {
  int refs;
  size_t len;
  char data[];
};
struct blob *blob_new(size_t len);
struct blob *blob_ref(struct blob *b);
void blob_release(struct blob *b);

/* The last unfiltered, unpaged body of a collection, valid while the store's
 * generation of the collection is unchanged. */
#define COLLECTION_CACHE_SLOTS 8
struct collection_cache {
  char coll[32];
  uint64_t gen;
  struct blob *body;
};

struct api {
  struct api_config cfg;
  struct store *store;
  struct task_engine *tasks;
  struct MHD_Daemon *mhd;
  char *tls_cert, *tls_key;
  pthread_mutex_t sess_lock;
  struct session *sessions[256];
  int idle_timeout_s;
  pthread_mutex_t cache_lock;
  struct collection_cache cache[COLLECTION_CACHE_SLOTS];
};

#define MAX_SEGS 8
#define MAX_FILTERS 16

struct request {
  struct api *api;
  struct MHD_Connection *conn;
  const char *method;
  const char *url;
  char *path;          /* normalized: no trailing '/', decoded */
  char *seg[MAX_SEGS]; /* path segments after "/rest/" */
  int nseg;
  char *body;
  size_t body_len, body_cap;
  int too_big;
  json_t *json; /* the parsed body (after req_json) */
  int api_version;
  struct session sess; /* copy of the caller's session */
  int authenticated;
  /* response */
  int status;
  char *resp;
  size_t resp_len;
  struct blob *resp_blob; /* shared body instead of resp, when set */
  const char *content_type;
  char location[256];
  char etag[64];
};

/* ---- responses (http.c) ---- */
void reply_json(struct request *r, int status, json_t *doc);            /* steals doc */
void reply_text(struct request *r, int status, char *text, size_t len); /* steals JSON text */
void reply_error(struct request *r, struct err *e);                     /* clears e */
void reply_err(struct request *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void reply_no_content(struct request *r);
void reply_blob(struct request *r, int status, struct blob *b); /* takes a reference */

/* ---- request helpers (http.c) ---- */
/* Parse the body as JSON (any value). Sets a 400/415 reply and returns NULL on error.
 * An empty body yields json null. */
json_t *req_json(struct request *r);
const char *req_header(struct request *r, const char *name);
const char *req_arg(struct request *r, const char *name);
/* Every value of a repeated query parameter. */
int req_args(struct request *r, const char *name, const char **out, int max);

/* ---- sessions and roles (auth.c) ---- */
int auth_check(struct request *r);                   /* 0 or reply 401 and -1 */
int auth_require(struct request *r, unsigned roles); /* 0 or reply 403 and -1 */
const char *role_name(unsigned role);
void auth_register(struct store *s);
void route_login_sessions(struct request *r);
void route_idle_timeout(struct request *r);
void route_users(struct request *r);
void sessions_drop_user(struct api *a, const char *user);
void sessions_free(struct api *a);

/* ---- resources (routes.c) ---- */
void route_dispatch(struct request *r);
/* Serve a collection GET over store entries with start/count/filter/query/sort. */
void serve_collection(struct request *r, const char *coll);

#endif
