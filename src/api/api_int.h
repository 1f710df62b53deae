/* api_int.h — private to src/api: the request being served, response
 * helpers, sessions and roles shared by http.c, auth.c and routes.c. */
#ifndef STREAMER_API_INT_H
#define STREAMER_API_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#include "api/api.h"
#include "deploy/boot.h"

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
  char *uploads_dir;           /* VOLUMES/uploads: golden image uploads being received */
  char *bundles_dir;           /* VOLUMES/bundles: artifact bundles and backups (bundles.c) */
  uint64_t upload_bytes;       /* bytes reserved by uploads in progress (atomic) */
  struct boot_nets boot_nets;  /* --boot-clients */
  struct MHD_Daemon *boot_mhd; /* --boot-listen: plain HTTP, /boot/ only */
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
  struct MHD_Response *resp_custom; /* a ready response (downloads) instead of resp */
  int close_conn;                   /* answered before the body was read: close after */
  struct upload *upload;            /* a streamed golden image upload (golden.c) */
};

/* ---- responses (http.c) ---- */
void reply_json(struct request *r, int status, json_t *doc);            /* steals doc */
void reply_text(struct request *r, int status, char *text, size_t len); /* steals JSON text */
/* A stored document's public text, with its eTag. */
void reply_entry(struct request *r, int status, struct store_entry *en);
void reply_error(struct request *r, struct err *e); /* clears e */
void reply_err(struct request *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 405 METHOD_NOT_ALLOWED naming the method and path. */
void reply_method_not_allowed(struct request *r);
/* 404 RESOURCE_NOT_FOUND: nothing at this path. */
void reply_no_resource(struct request *r);
/* 202 Accepted with the task document (reference taken) and Location: its uri. */
void reply_task(struct request *r, json_t *task);
void reply_no_content(struct request *r);
void reply_blob(struct request *r, int status, struct blob *b); /* takes a reference */

/* ---- request helpers (http.c) ---- */
/* Split and check the path and X-API-Version (done by the normal path before
 * routing); 0, or -1 with a reply set. */
int req_prepare(struct request *r);
/* Replace every byte that does not start a valid UTF-8 sequence with '?'. */
void utf8_sanitize(char *s);
/* Is the media type of Content-Type `ct` exactly `type` (parameters allowed)? */
int media_is(const char *ct, const char *type);
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

/* ---- golden images (golden.c) ---- */
int golden_api_init(struct api *a, struct err *e); /* uploads dir, recovery; at start */
void golden_api_fini(struct api *a);
void route_golden_images(struct request *r);
/* What is uploaded: POST multipart/form-data to /rest/golden-images, to
 * /rest/artifact-bundles or to /rest/artifact-bundles/backups/archive. */
enum upload_kind { UPLOAD_GOLDEN = 1, UPLOAD_BUNDLE, UPLOAD_BACKUP };
/* Is this the first call of an upload? Returns its kind (0: not an upload).
 * Then the body is streamed to upload_data instead of being buffered, and
 * upload_end produces the reply. */
int upload_wanted(struct MHD_Connection *conn, const char *method, const char *url);
void upload_begin(struct request *r, int kind); /* headers only; may reply at once */
void upload_data(struct request *r, const char *data, size_t size);
void upload_end(struct request *r);
void upload_free(struct upload *u); /* also when the client went away */
/* Content-Disposition of a download: attachment; filename="<name>.zip" (',' and
 * ':' as '.'), plus filename*= (RFC 5987) when the name is not ASCII. */
void download_disposition(const char *name, char *out, size_t size);

/* ---- artifact bundles and backups (bundles.c) ---- */
int bundle_api_init(struct api *a, struct err *e); /* VOLUMES/bundles, stale .part files */
void bundle_api_fini(struct api *a);               /* stops and waits for bundle tasks */
void route_artifact_bundles(struct request *r);
/* A bundle or backup upload received to a file by golden.c's upload machinery. */
struct upload_done {
  char id[37];
  char *path;           /* VOLUMES/bundles/<id>.part; bundles.c's after a 0 return */
  const char *filename; /* as sent, without directories */
  uint64_t size;
  char sha256[65];
  struct task *task; /* created at the first byte; bundles.c's after a 0 return */
  const char *name;  /* query, form field or file name without .zip */
  const char *description, *lenient, *group; /* query or form; may be NULL */
};
/* Before the body: checks of the query (name); 0, or -1 with a reply set. */
int bundle_upload_check(struct request *r, enum upload_kind k, const char *name);
/* The task's associatedResource (a new reference). */
json_t *bundle_upload_assoc(enum upload_kind k, const char *id, const char *name);
/* The body is in: start the task (202 reply), or -1 with e set (the caller
 * removes the file and ends the task). */
int bundle_upload_finish(struct request *r, enum upload_kind k, struct upload_done *d,
                         struct err *e);

/* ---- OS volumes and iSCSI targets (osvolumes.c) ---- */
void route_os_volumes(struct request *r);
void route_iscsi(struct request *r);

/* ---- server hardware, server profiles, deployment groups (profiles.c) ---- */
void route_server_hardware(struct request *r);
void route_server_profiles(struct request *r);
void route_deployment_groups(struct request *r);

/* ---- build-plan validation, volume browsing (validate.c) ---- */
void route_validate(struct request *r); /* /rest/build-plans/{id}/validate */
void route_browse(struct request *r);   /* /rest/{os-volumes,golden-images}/{id}/{devices,files} */

/* ---- boot scripts (boot.c): GET /boot/ipxe, no session ---- */
int boot_path(const char *url); /* "/boot" or under "/boot/" */
void route_boot(struct request *r);

/* ---- resources (routes.c) ---- */
void route_dispatch(struct request *r);
/* Serve a collection GET over store entries with start/count/filter/query/sort. */
void serve_collection(struct request *r, const char *coll);
/* GET of one stored document: 200 with its eTag, or 404 naming it as `what` ("golden image"). */
void serve_one(struct request *r, const char *coll, const char *id, const char *what);

#endif
