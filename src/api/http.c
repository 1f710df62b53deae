/* http.c — libmicrohttpd glue: listening (HTTP or HTTPS), request bodies
 * with a size cap, path normalization, API-version check, replies. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_int.h"

#define API_VERSION_MIN 300
#define API_VERSION_MAX 2020

/* ---- replies ------------------------------------------------------------- */
void reply_text(struct request *r, int status, char *text, size_t len) {
  free(r->resp);
  blob_release(r->resp_blob);
  r->resp_blob = NULL;
  r->status = status;
  r->resp = text;
  r->resp_len = len;
  r->content_type = "application/json";
}

struct blob *blob_new(size_t len) {
  struct blob *b = malloc(sizeof *b + len + 1);
  if (!b) return NULL;
  b->refs = 1;
  b->len = len;
  b->data[len] = 0;
  return b;
}

struct blob *blob_ref(struct blob *b) {
  if (b) __atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
  return b;
}

void blob_release(struct blob *b) {
  if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) free(b);
}

static void blob_release_cb(void *b) { blob_release(b); }

void reply_blob(struct request *r, int status, struct blob *b) {
  free(r->resp);
  r->resp = NULL;
  blob_release(r->resp_blob);
  r->status = status;
  r->resp_blob = b;
  r->resp_len = b->len;
  r->content_type = "application/json";
}

void reply_json(struct request *r, int status, json_t *doc) {
  char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(doc);
  if (!s) {
    s = strdup("{\"errorCode\":\"OUT_OF_MEMORY\",\"message\":\"out of memory\"}");
    status = 500;
  }
  reply_text(r, status, s, s ? strlen(s) : 0);
}

/* Error texts quote what the client sent (path, ids, field names, header
 * values), maybe cut by a %.Ns inside a character. JSON strings must be
 * UTF-8, so every byte that does not start a valid sequence becomes '?';
 * otherwise the error body could not be built and the client got a 500. */
void utf8_sanitize(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    int n = *p < 0x80             ? 1
            : (*p & 0xe0) == 0xc0 ? 2
            : (*p & 0xf0) == 0xe0 ? 3
            : (*p & 0xf8) == 0xf0 ? 4
                                  : 0;
    unsigned cp = n == 1 ? *p : n == 2 ? (*p & 0x1fu) : n == 3 ? (*p & 0x0fu) : (*p & 0x07u);
    int ok = n > 0;
    for (int i = 1; ok && i < n; i++) {
      ok = (p[i] & 0xc0) == 0x80;
      cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (ok &&
        ((n == 2 && cp < 0x80) || (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
         (n == 4 && (cp < 0x10000 || cp > 0x10ffff))))
      ok = 0;
    if (!ok) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

void reply_error(struct request *r, struct err *e) {
  int status = e->status >= 400 && e->status <= 599 ? e->status : 500;
  utf8_sanitize(e->message);
  utf8_sanitize(e->details);
  if (status >= 500) log_error("api", "%s %s: %s (%s)", r->method, r->path, e->message, e->code);
  reply_json(r, status, err_to_json(e));
  err_clear(e);
}

void reply_err(struct request *r, int status, const char *code, const char *fmt, ...) {
  struct err e;
  err_init(&e);
  e.status = status;
  snprintf(e.code, sizeof e.code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  reply_error(r, &e);
}

void reply_method_not_allowed(struct request *r) {
  reply_err(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s", r->method, r->path);
}

void reply_no_resource(struct request *r) {
  reply_err(r, 404, "RESOURCE_NOT_FOUND", "no resource at %.200s", r->path);
}

void reply_task(struct request *r, json_t *task) {
  snprintf(r->location, sizeof r->location, "%s", json_string_value(json_object_get(task, "uri")));
  reply_json(r, 202, task);
}

void reply_no_content(struct request *r) {
  free(r->resp);
  r->resp = NULL;
  blob_release(r->resp_blob);
  r->resp_blob = NULL;
  r->resp_len = 0;
  r->status = 204;
}

/* ---- request helpers ------------------------------------------------------ */
const char *req_header(struct request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *req_arg(struct request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct args_ctx {
  const char *name;
  const char **out;
  int max, n;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
  struct args_ctx *c = cls;
  if (key && strcmp(key, c->name) == 0 && c->n < c->max) c->out[c->n++] = value ? value : "";
  return MHD_YES;
}

int req_args(struct request *r, const char *name, const char **out, int max) {
  struct args_ctx c = {name, out, max, 0};
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &c);
  return c.n;
}

/* Is the media type of Content-Type `ct` exactly `type` (parameters such as
 * "; charset=utf-8" allowed)? "application/jsonx" is not application/json. */
int media_is(const char *ct, const char *type) {
  size_t n = strlen(type);
  return strncasecmp(ct, type, n) == 0 &&
         (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

json_t *req_json(struct request *r) {
  if (r->json) return r->json;
  const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (r->body_len > 0 && ct && *ct && !media_is(ct, "application/json") &&
      !media_is(ct, "text/plain") && !media_is(ct, "none") &&
      !media_is(ct, "application/octet-stream")) {
    reply_err(r, 415, "UNSUPPORTED_MEDIA_TYPE",
              "the request body has Content-Type \"%.100s\"; this endpoint takes application/json",
              ct);
    return NULL;
  }
  size_t n = r->body_len;
  while (n > 0 && isspace((unsigned char)r->body[n - 1]))
    n--;
  size_t i = 0;
  while (i < n && isspace((unsigned char)r->body[i]))
    i++;
  if (i == n) {
    r->json = json_null();
    return r->json;
  }
  json_error_t je;
  r->json = json_loadb(r->body + i, n - i, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
  if (!r->json) {
    reply_err(r, 400, "INVALID_JSON", "the request body is not valid JSON: %s at line %d column %d",
              je.text, je.line, je.column);
    return NULL;
  }
  return r->json;
}

/* ---- path ------------------------------------------------------------------ */
static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Split "/rest/a/b/" into segments (libmicrohttpd has already decoded the
 * URL with unescape() below). -1 if malformed, 1 if not under /rest. */
static int split_path(struct request *r) {
  r->path = strdup(r->url);
  if (!r->path) return -1;
  size_t len = strlen(r->path);
  while (len > 1 && r->path[len - 1] == '/')
    r->path[--len] = 0;
  const char *p = r->path;
  if (strncmp(p, "/rest/", 6) == 0)
    p += 6;
  else if (strcmp(p, "/rest") == 0)
    p += 5;
  else
    return 1;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n > 0) {
      if (r->nseg == MAX_SEGS) return -1;
      if (!(r->seg[r->nseg++] = strndup(p, n))) return -1;
    }
    p += n;
    if (*p == '/') p++;
  }
  return 0;
}

/* URL decoding for paths and query arguments: %XX, and '+' as a space (the
 * Go SDK encodes spaces in filters that way). %00 stays as it is: a NUL
 * would silently cut the string (".../<id>%00junk" must not find <id>). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
  char *o = s;
  for (char *i = s; *i; i++) {
    if (*i == '%' && hexval(i[1]) >= 0 && hexval(i[2]) >= 0 && (i[1] != '0' || i[2] != '0')) {
      *o++ = (char)(hexval(i[1]) * 16 + hexval(i[2]));
      i += 2;
    } else if (*i == '+') {
      *o++ = ' ';
    } else {
      *o++ = *i;
    }
  }
  *o = 0;
  return strlen(s);
}

static int check_api_version(struct request *r) {
  const char *v = req_header(r, "X-API-Version");
  r->api_version = API_VERSION_MIN;
  if (!v || !*v) return 0;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end) {
    reply_err(r, 400, "INVALID_API_VERSION", "X-API-Version \"%.40s\" is not a number", v);
    return -1;
  }
  if (n < API_VERSION_MIN) {
    reply_err(r, 400, "UNSUPPORTED_API_VERSION",
              "X-API-Version %ld is not supported; the minimum is %d", n, API_VERSION_MIN);
    return -1;
  }
  r->api_version = n > API_VERSION_MAX ? API_VERSION_MAX : (int)n;
  return 0;
}

/* ---- the libmicrohttpd callbacks ------------------------------------------------ */
static void request_free(struct request *r) {
  if (!r) return;
  free(r->path);
  for (int i = 0; i < r->nseg; i++)
    free(r->seg[i]);
  free(r->body);
  json_decref(r->json);
  free(r->resp);
  blob_release(r->resp_blob);
  if (r->resp_custom) MHD_destroy_response(r->resp_custom);
  upload_free(r->upload);
  free(r);
}

static enum MHD_Result send_reply(struct request *r) {
  struct MHD_Response *resp;
  if (r->resp_custom) {
    resp = r->resp_custom;
    r->resp_custom = NULL;
  } else if (r->resp_blob && r->status != 204) {
    resp = MHD_create_response_from_buffer_with_free_callback_cls(
        r->resp_blob->len, r->resp_blob->data, blob_release_cb, r->resp_blob);
    if (resp) r->resp_blob = NULL; /* MHD releases it */
  } else if (r->status == 204 || !r->resp) {
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  } else {
    resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
    r->resp = NULL;
  }
  if (!resp) return MHD_NO;
  if (r->status != 204 && r->content_type)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
  if (r->location[0]) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
  if (r->etag[0]) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (r->status == 413 || r->close_conn)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

int req_prepare(struct request *r) {
  int rc = split_path(r);
  if (rc < 0) {
    reply_err(r, 400, "INVALID_URI", "the request URI is malformed");
    return -1;
  }
  if (rc > 0 || r->nseg == 0) {
    reply_err(r, 404, "RESOURCE_NOT_FOUND", "no resource at \"%.200s\"; the API is under /rest/",
              r->url);
    return -1;
  }
  return check_api_version(r);
}

static void handle(struct request *r) {
  if (boot_path(r->url)) return route_boot(r); /* no session, no API version */
  if (req_prepare(r) < 0) return;
  if (r->too_big) {
    reply_err(r, 413, "REQUEST_TOO_LARGE",
              "the request body is larger than the limit of %zu bytes (--max-body)",
              r->api->cfg.max_body);
    return;
  }
  route_dispatch(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  struct api *a = cls;
  struct request *r = *con_cls;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->api = a;
    r->conn = conn;
    r->method = method;
    r->url = url;
    *con_cls = r;
    /* A golden image upload streams to disk: no --max-body, no buffering. */
    int kind = upload_wanted(conn, method, url);
    if (kind) {
      upload_begin(r, kind);
      if (!r->status) return MHD_YES;
      r->close_conn = 1; /* answered before the body was read */
      log_info("api", "%s %s -> %d user=%s", method, r->path ? r->path : url, r->status,
               r->authenticated ? r->sess.user : "-");
      return send_reply(r);
    }
    /* Refuse an announced oversized body before reading it. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > a->cfg.max_body) {
      r->too_big = 1;
      r->path = strdup(url);
      reply_err(r, 413, "REQUEST_TOO_LARGE",
                "the request body (%s bytes) is larger than the limit of %zu bytes (--max-body)",
                cl, a->cfg.max_body);
      return send_reply(r);
    }
    return MHD_YES;
  }
  if (r->upload && !r->status) {
    if (*upload_size > 0) {
      upload_data(r, upload, *upload_size);
      *upload_size = 0;
      return MHD_YES;
    }
    upload_end(r);
    if (!r->status) reply_err(r, 500, "INTERNAL_ERROR", "no reply was produced");
    log_info("api", "%s %s -> %d user=%s", method, r->path ? r->path : url, r->status,
             r->authenticated ? r->sess.user : "-");
    return send_reply(r);
  }
  if (*upload_size > 0) {
    if (!r->too_big) {
      if (r->body_len + *upload_size > a->cfg.max_body) {
        r->too_big = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
      } else {
        if (r->body_len + *upload_size + 1 > r->body_cap) {
          size_t cap = r->body_cap ? r->body_cap : 4096;
          while (cap < r->body_len + *upload_size + 1)
            cap *= 2;
          char *nb = realloc(r->body, cap);
          if (!nb) return MHD_NO;
          r->body = nb;
          r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload, *upload_size);
        r->body_len += *upload_size;
        r->body[r->body_len] = 0;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->status) return MHD_YES; /* already answered (413 up front) */
  handle(r);
  if (!r->status) reply_err(r, 500, "INTERNAL_ERROR", "no reply was produced");
  if ((strcmp(method, "GET") != 0 || r->status >= 400) && !boot_path(url))
    log_info("api", "%s %s -> %d user=%s", method, r->path ? r->path : url, r->status,
             r->authenticated ? r->sess.user : "-");
  return send_reply(r);
}

/* libmicrohttpd's own messages (malformed requests, TLS handshake errors,
 * pool exhaustion) go through the structured log like everything else. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  buf[strcspn(buf, "\r\n")] = 0;
  if (buf[0]) log_warn("http", "%s", buf);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  request_free(*con_cls);
  *con_cls = NULL;
}

/* ---- addresses ---------------------------------------------------------------------- */
int api_parse_addr(const char *s, void *ss, unsigned *len, int *is_loopback, struct err *e) {
  char host[256];
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) {
    err_set(e, 400, "INVALID_ADDRESS", "address \"%s\": expected ADDR:PORT", s);
    return -1;
  }
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 1 || port > 65535) {
    err_set(e, 400, "INVALID_ADDRESS", "address \"%s\": the port must be 1..65535", s);
    return -1;
  }
  memset(ss, 0, sizeof(struct sockaddr_storage));
  if (host[0] == '[') {
    size_t hl = strlen(host);
    if (hl < 2 || host[hl - 1] != ']') {
      err_set(e, 400, "INVALID_ADDRESS", "address \"%s\": unbalanced [ ]", s);
      return -1;
    }
    host[hl - 1] = 0;
    struct sockaddr_in6 *a6 = ss;
    if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1) {
      err_set(e, 400, "INVALID_ADDRESS", "address \"%s\": not an IPv6 address", s);
      return -1;
    }
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = sizeof *a6;
    *is_loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    return 0;
  }
  struct sockaddr_in *a4 = ss;
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
    err_set(e, 400, "INVALID_ADDRESS", "address \"%s\": not an IPv4 address", s);
    return -1;
  }
  a4->sin_family = AF_INET;
  a4->sin_port = htons((uint16_t)port);
  *len = sizeof *a4;
  *is_loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
  return 0;
}

/* The plain-HTTP boot listener serves /boot/ and nothing else. */
static enum MHD_Result on_boot_request(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version, const char *upload,
                                       size_t *upload_size, void **con_cls) {
  struct api *a = cls;
  if (!*con_cls && !boot_path(url)) {
    struct request *r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->api = a;
    r->conn = conn;
    r->method = method;
    r->url = url;
    r->path = strdup(url);
    r->close_conn = 1;
    *con_cls = r;
    reply_err(r, 404, "RESOURCE_NOT_FOUND",
              "this listener (--boot-listen) serves only /boot/ipxe; the API is on %s",
              a->cfg.listen);
    return send_reply(r);
  }
  return on_request(cls, conn, url, method, version, upload, upload_size, con_cls);
}

/* ---- start / stop ------------------------------------------------------------------- */
/* --boot-listen: a second daemon, plain HTTP, for iPXE clients (which cannot
 * check a self-signed certificate); on_boot_request serves it /boot/ only. */
static int boot_listen_start(struct api *a, const struct api_config *cfg, struct err *e) {
  struct sockaddr_storage ss;
  unsigned sslen;
  int loopback;
  if (api_parse_addr(cfg->boot_listen, &ss, &sslen, &loopback, e) < 0) return -1;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  struct MHD_OptionItem opts[] = {
      {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
      {MHD_OPTION_SOCK_ADDR, 0, &ss},
      {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL},
      {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, 1024, NULL},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 32 * 1024, NULL},
      {MHD_OPTION_END, 0, NULL},
  };
  a->boot_mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_boot_request, a, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
  if (!a->boot_mhd) {
    err_set(e, 500, "LISTEN_FAILED", "cannot serve boot scripts on %s: %s", cfg->boot_listen,
            errno ? strerror(errno) : "libmicrohttpd refused to start");
    return -1;
  }
  log_info("api", "serving boot scripts on http://%s/boot/ipxe", cfg->boot_listen);
  return 0;
}

struct api *api_start(const struct api_config *cfg, struct store *s, struct task_engine *te,
                      struct err *e) {
  struct sockaddr_storage ss;
  unsigned sslen;
  int loopback;
  if (api_parse_addr(cfg->listen, &ss, &sslen, &loopback, e) < 0) return NULL;
  if (cfg->insecure_http && !loopback) {
    err_set(e, 400, "INSECURE_HTTP_NOT_LOOPBACK",
            "--insecure-http is allowed only on loopback addresses (127.0.0.0/8, ::1), not %s",
            cfg->listen);
    return NULL;
  }
  struct api *a = calloc(1, sizeof *a);
  if (!a) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return NULL;
  }
  a->cfg = *cfg;
  a->store = s;
  a->tasks = te;
  a->idle_timeout_s = cfg->session_idle_timeout;
  pthread_mutex_init(&a->sess_lock, NULL);
  pthread_mutex_init(&a->cache_lock, NULL);
  auth_register(s);
  if (boot_nets_parse(cfg->boot_clients, &a->boot_nets, e) < 0) {
    api_stop(a);
    return NULL;
  }
  if (golden_api_init(a, e) < 0 || bundle_api_init(a, e) < 0) {
    api_stop(a);
    return NULL;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (!cfg->insecure_http) {
    a->tls_cert = util_read_file(cfg->tls_cert_path, NULL, e);
    a->tls_key = a->tls_cert ? util_read_file(cfg->tls_key_path, NULL, e) : NULL;
    if (!a->tls_key) {
      api_stop(a);
      return NULL;
    }
    flags |= MHD_USE_TLS;
  }
  struct MHD_OptionItem opts[] = {
      {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
      {MHD_OPTION_SOCK_ADDR, 0, &ss},
      {MHD_OPTION_THREAD_POOL_SIZE, cfg->threads > 0 ? cfg->threads : 2, NULL},
      {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL},
      {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, 4096, NULL},
      {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
      {cfg->insecure_http ? MHD_OPTION_END : MHD_OPTION_HTTPS_MEM_KEY, 0, a->tls_key},
      {MHD_OPTION_HTTPS_MEM_CERT, 0, a->tls_cert},
      {MHD_OPTION_END, 0, NULL},
  };
  a->mhd =
      MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
  if (!a->mhd) {
    err_set(e, 500, "LISTEN_FAILED", "cannot serve the API on %s: %s", cfg->listen,
            errno ? strerror(errno) : "libmicrohttpd refused to start");
    api_stop(a);
    return NULL;
  }
  log_info("api", "serving the REST API on %s://%s", cfg->insecure_http ? "http" : "https",
           cfg->listen);
  if (cfg->boot_listen && boot_listen_start(a, cfg, e) < 0) {
    api_stop(a);
    return NULL;
  }
  return a;
}

void api_stop(struct api *a) {
  if (!a) return;
  if (a->boot_mhd) MHD_stop_daemon(a->boot_mhd);
  if (a->mhd) MHD_stop_daemon(a->mhd);
  bundle_api_fini(a);
  golden_api_fini(a);
  sessions_free(a);
  for (int i = 0; i < COLLECTION_CACHE_SLOTS; i++) {
    blob_release(a->cache[i].body);
  }
  pthread_mutex_destroy(&a->cache_lock);
  free(a->tls_cert);
  free(a->tls_key);
  pthread_mutex_destroy(&a->sess_lock);
  free(a);
}
