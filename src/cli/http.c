/* http.c — REST calls over libcurl: headers (X-API-Version, auth, If-Match),
 * JSON bodies, transport errors (exit 3), the HPE error JSON printed for a
 * 4xx/5xx answer (exit 1), collections with paging. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct buf {
  char *data;
  size_t len, cap;
  int oom;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
  struct buf *b = userdata;
  size_t n = size * nmemb;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *nd = realloc(b->data, cap);
    if (!nd) {
      b->oom = 1;
      return 0;
    }
    b->data = nd;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = 0;
  return n;
}

char *http_escape(const char *s) {
  CURL *h = curl_easy_init();
  if (!h) return NULL;
  char *e = curl_easy_escape(h, s, 0);
  char *out = e ? strdup(e) : NULL;
  curl_free(e);
  curl_easy_cleanup(h);
  return out;
}

void http_cleanup(struct cli *c) {
  if (c->curl) curl_easy_cleanup(c->curl);
  c->curl = NULL;
}

static int is_tls_error(CURLcode rc) {
  switch (rc) {
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS: return 1;
  default: return 0;
  }
}

/* The path part to request: "/rest/..." kept as is; an absolute URL (a
 * nextPageUri some servers send) is cut down to its path so the token is
 * only ever sent to the configured server. */
static const char *request_path(const char *path) {
  if (path[0] == '/') return path;
  const char *p = strstr(path, "://");
  if (p) {
    p = strchr(p + 3, '/');
    if (p) return p;
  }
  return "/";
}

/* A reset handle with the common options (URL, TLS, timeouts, headers);
 * *hdrs must be freed by the caller with curl_slist_free_all. */
static CURL *prepare(struct cli *c, const char *method, const char *path, int auth,
                     const char *if_match, int json_body, int no_expect, struct curl_slist **hdrs,
                     char **auth_hdr, char **url, char *errbuf) {
  if (!c->curl) {
    c->curl = curl_easy_init();
    if (!c->curl) {
      fprintf(stderr, "error: cannot initialise libcurl\n");
      return NULL;
    }
  }
  CURL *h = c->curl;
  curl_easy_reset(h);
  *url = util_strdup_printf("%s%s", c->server, request_path(path));
  *hdrs = curl_slist_append(*hdrs, "X-API-Version: " CLI_API_VERSION);
  *hdrs = curl_slist_append(*hdrs, "Accept: application/json");
  if (no_expect) *hdrs = curl_slist_append(*hdrs, "Expect:");
  if (json_body) *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
  if (auth && c->token) {
    *auth_hdr = util_strdup_printf("auth: %s", c->token);
    *hdrs = curl_slist_append(*hdrs, *auth_hdr);
  }
  if (if_match && *if_match) {
    char *m = util_strdup_printf("If-Match: %s", if_match);
    *hdrs = curl_slist_append(*hdrs, m);
    free(m);
  }
  curl_easy_setopt(h, CURLOPT_URL, *url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "streamer-cli/" STREAMER_VERSION);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  /* Give up on a server that stops answering for a minute. */
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (c->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (c->cacert) {
    curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
  }
  if (strcmp(method, "GET") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  return h;
}

/* Print why a transfer failed; returns CLI_ECONN. */
static int transport_error(struct cli *c, CURLcode rc, const char *errbuf, int oom) {
  const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  if (oom) why = "out of memory";
  if (is_tls_error(rc)) {
    fprintf(stderr, "error: TLS failure talking to %s: %s\n", c->server, why);
    fprintf(stderr, "hint: pass --cacert FILE with the server's certificate "
                    "(DATA_DIR/tls/cert.pem), or --insecure to skip verification\n");
  } else if (rc == CURLE_GOT_NOTHING && strncmp(c->server, "http://", 7) == 0) {
    fprintf(stderr, "error: cannot talk to the server %s: %s\n", c->server, why);
    fprintf(stderr, "hint: the server may speak HTTPS: try --server https://%s\n", c->server + 7);
  } else {
    fprintf(stderr, "error: cannot reach the server %s: %s\n", c->server, why);
    fprintf(stderr, "hint: is streamerd running there? Set --server URL (or STREAMER_SERVER) "
                    "and run 'streamer login'\n");
  }
  return CLI_ECONN;
}

static void finish_body(struct buf *b, json_t **out, char **raw) {
  if (b->data && out) {
    json_error_t jerr;
    *out = json_loadb(b->data, b->len, JSON_DECODE_ANY, &jerr);
  }
  if (raw) {
    *raw = b->data;
  } else {
    free(b->data);
  }
}

int http_do(struct cli *c, const char *method, const char *path, json_t *body, const char *if_match,
            int auth, long *status, json_t **out, char **raw) {
  cli_resolve(c);
  *status = 0;
  if (out) *out = NULL;
  if (raw) *raw = NULL;
  CLEANUP_FREE char *payload = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  CLEANUP_FREE char *url = NULL;
  char *auth_hdr = NULL;
  struct curl_slist *hdrs = NULL;
  char errbuf[CURL_ERROR_SIZE] = "";
  CURL *h =
      prepare(c, method, path, auth, if_match, payload != NULL, 1, &hdrs, &auth_hdr, &url, errbuf);
  if (!h) {
    curl_slist_free_all(hdrs);
    return CLI_ECONN;
  }
  struct buf b = {0};
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  if (payload) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
  } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  }

  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  if (auth_hdr) cli_wipe(auth_hdr);
  free(auth_hdr);
  if (rc != CURLE_OK) {
    free(b.data);
    return transport_error(c, rc, errbuf, b.oom);
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  finish_body(&b, out, raw);
  return CLI_OK;
}

/* ---- file transfers ----------------------------------------------------------- */
struct xfer_state {
  const struct http_xfer *x;
  CURL *h;
  struct buf err; /* the body of a non-2xx answer */
  int to_file;    /* decided at the first byte: 2xx goes to x->download */
  int decided;
  int write_failed;
  int64_t last_draw;
  int drawn;
};

static size_t on_xfer_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
  struct xfer_state *st = userdata;
  size_t n = size * nmemb;
  if (!st->decided) {
    long code = 0;
    curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &code);
    st->to_file = st->x->download && code >= 200 && code <= 299;
    st->decided = 1;
  }
  if (st->to_file) {
    if (fwrite(ptr, 1, n, st->x->download) != n) {
      st->write_failed = 1;
      return 0;
    }
    return n;
  }
  return on_write(ptr, size, nmemb, &st->err);
}

static void human(double v, char *out, size_t size) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void draw_xfer(struct xfer_state *st, double now, double total) {
  char a[32], b[32], r[32];
  human(now, a, sizeof a);
  human(total, b, sizeof b);
  double secs = 0;
  curl_easy_getinfo(st->h, CURLINFO_TOTAL_TIME, &secs);
  human(secs > 0 ? now / secs : 0, r, sizeof r);
  int pct = total > 0 ? (int)(now * 100 / total) : 0;
  if (pct > 100) pct = 100;
  char bar[31];
  int fill = pct * 30 / 100;
  for (int i = 0; i < 30; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\r\033[K[%s] %3d%% %s: %s of %s, %s/s", bar, pct, st->x->label, a,
          total > 0 ? b : "?", r);
  fflush(stderr);
  st->drawn = 1;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  struct xfer_state *st = p;
  int64_t now = util_mono_ms();
  if (now - st->last_draw < 100) return 0;
  st->last_draw = now;
  if (st->x->download)
    draw_xfer(st, (double)dlnow, (double)dltotal);
  else
    draw_xfer(st, (double)ulnow, (double)ultotal);
  return 0;
}

int http_xfer(struct cli *c, const char *method, const char *path, const struct http_xfer *x,
              long *status, json_t **out, char **raw) {
  cli_resolve(c);
  *status = 0;
  if (out) *out = NULL;
  if (raw) *raw = NULL;
  CLEANUP_FREE char *url = NULL;
  char *auth_hdr = NULL;
  struct curl_slist *hdrs = NULL;
  char errbuf[CURL_ERROR_SIZE] = "";
  /* Uploads keep "Expect: 100-continue", so a refusal (403, 409, 413, 507)
   * arrives before the file is sent. */
  CURL *h =
      prepare(c, method, path, 1, NULL, 0, x->upload_path == NULL, &hdrs, &auth_hdr, &url, errbuf);
  if (!h) {
    curl_slist_free_all(hdrs);
    return CLI_ECONN;
  }
  struct xfer_state st = {.x = x, .h = h};
  curl_mime *mime = NULL;
  if (x->upload_path) {
    mime = curl_mime_init(h);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filedata(part, x->upload_path); /* streamed from the file */
    curl_mime_filename(part, x->upload_name);
    curl_mime_type(part, "application/octet-stream");
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_xfer_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
  if (x->progress) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
  }
  CURLcode rc = curl_easy_perform(h);
  if (st.drawn) {
    if (rc == CURLE_OK) {
      curl_off_t total = 0;
      curl_easy_getinfo(h, x->download ? CURLINFO_SIZE_DOWNLOAD_T : CURLINFO_SIZE_UPLOAD_T, &total);
      draw_xfer(&st, (double)total, (double)total);
    }
    fputc('\n', stderr);
  }
  curl_slist_free_all(hdrs);
  curl_mime_free(mime);
  if (auth_hdr) cli_wipe(auth_hdr);
  free(auth_hdr);
  if (st.write_failed) {
    free(st.err.data);
    fprintf(stderr, "error: cannot write the download: %s\n", strerror(errno));
    return CLI_EUSAGE;
  }
  if (rc != CURLE_OK) {
    free(st.err.data);
    if (rc == CURLE_READ_ERROR && x->upload_path) {
      fprintf(stderr, "error: cannot read %s\n", x->upload_path);
      return CLI_EUSAGE;
    }
    return transport_error(c, rc, errbuf, st.err.oom);
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  finish_body(&st.err, out, raw);
  return CLI_OK;
}

int api_require_login(struct cli *c) {
  cli_resolve(c);
  if (c->token) return CLI_OK;
  fprintf(stderr, "error: not logged in to %s\n", c->server);
  fprintf(stderr, "hint: run 'streamer login%s%s' (or set STREAMER_TOKEN)\n",
          c->opt_server ? " --server " : "", c->opt_server ? c->server : "");
  return CLI_ECONN;
}

static void print_nested(json_t *nested, int depth) {
  size_t i;
  json_t *n;
  json_array_foreach(nested, i, n) {
    const char *m = jstr(n, "message");
    const char *d = jstr(n, "details");
    fprintf(stderr, "%*s- %s%s%s\n", depth * 2, "", *m ? m : jstr(n, "errorCode"), *d ? ": " : "",
            d);
    json_t *deeper = json_object_get(n, "nestedErrors");
    if (json_is_array(deeper) && depth < 8) print_nested(deeper, depth + 1);
  }
}

int api_print_error(struct cli *c, long status, json_t *body, const char *raw) {
  if (c->json && body) out_json(body);
  const char *msg = jstr(body, "message");
  if (*msg) {
    fprintf(stderr, "error: %s\n", msg);
  } else if (raw && *raw && !body) {
    fprintf(stderr, "error: HTTP %ld: %.300s\n", status, raw);
  } else {
    fprintf(stderr, "error: the server answered HTTP %ld\n", status);
  }
  const char *details = jstr(body, "details");
  if (*details) fprintf(stderr, "details: %s\n", details);
  json_t *nested = json_object_get(body, "nestedErrors");
  /* One nested error that the message already ends with adds nothing. */
  const char *only = json_array_size(nested) == 1 ? jstr(json_array_get(nested, 0), "message") : "";
  size_t ml = strlen(msg), ol = strlen(only);
  int repeated = ol > 0 && ml >= ol && strcmp(msg + ml - ol, only) == 0 &&
                 json_array_size(json_object_get(json_array_get(nested, 0), "nestedErrors")) == 0;
  if (json_is_array(nested) && json_array_size(nested) > 0 && !repeated) print_nested(nested, 1);
  json_t *acts = json_object_get(body, "recommendedActions");
  size_t i;
  json_t *act;
  /* A 401's advice is written for API clients; the caller adds the CLI's. */
  if (status == 401) acts = NULL;
  json_array_foreach(acts, i, act) {
    if (json_is_string(act) && *json_string_value(act))
      fprintf(stderr, "recommended action: %s\n", json_string_value(act));
  }
  return CLI_ESERVER;
}

int api_call(struct cli *c, const char *method, const char *path, json_t *body,
             const char *if_match, json_t **out) {
  if (out) *out = NULL;
  int rc = api_require_login(c);
  if (rc) return rc;
  long status;
  json_t *res = NULL;
  CLEANUP_FREE char *raw = NULL;
  rc = http_do(c, method, path, body, if_match, 1, &status, &res, &raw);
  if (rc) return rc;
  if (status < 200 || status > 299) {
    rc = api_print_error(c, status, res, raw);
    json_decref(res);
    if (status == 401) {
      fprintf(stderr, "hint: the session is missing or has expired; run 'streamer login'\n");
      rc = CLI_ECONN;
    }
    return rc;
  }
  if (!res && raw && *raw) {
    fprintf(stderr, "error: %s %s: the server's answer is not JSON: %.200s\n", method, path, raw);
    return CLI_ESERVER;
  }
  if (out) {
    *out = res;
  } else {
    json_decref(res);
  }
  return CLI_OK;
}

int api_list(struct cli *c, const char *coll, const char *filter, const char *sort, json_t **out) {
  *out = NULL;
  CLEANUP_FREE char *f = filter ? http_escape(filter) : NULL;
  CLEANUP_FREE char *s = sort ? http_escape(sort) : NULL;
  CLEANUP_FREE char *path =
      util_strdup_printf("/rest/%s?start=0&count=-1%s%s%s%s", coll, f ? "&filter=" : "", f ? f : "",
                         s ? "&sort=" : "", s ? s : "");
  json_t *first = NULL;
  int rc = api_call(c, "GET", path, NULL, NULL, &first);
  if (rc) return rc;
  json_t *members = json_object_get(first, "members");
  if (!json_is_array(members)) {
    /* A few endpoints answer with a bare array; wrap it. */
    if (json_is_array(first)) {
      json_t *wrap = json_pack("{s:o}", "members", first);
      first = wrap;
      members = json_object_get(first, "members");
    } else {
      fprintf(stderr, "error: GET %s: the answer is not a collection\n", path);
      json_decref(first);
      return CLI_ESERVER;
    }
  }
  /* Follow nextPageUri until it is null, repeats, or a page is empty. */
  char *next = strdup(jstr(first, "nextPageUri"));
  char *cur = strdup(jstr(first, "uri"));
  for (int pages = 0; pages < 100000; pages++) {
    if (!next || !*next || (cur && strcmp(next, cur) == 0)) break;
    json_t *page = NULL;
    rc = api_call(c, "GET", next, NULL, NULL, &page);
    if (rc) {
      free(next);
      free(cur);
      json_decref(first);
      return rc;
    }
    json_t *pm = json_object_get(page, "members");
    if (!json_is_array(pm) || json_array_size(pm) == 0) {
      json_decref(page);
      break;
    }
    json_array_extend(members, pm);
    free(cur);
    cur = next;
    next = strdup(jstr(page, "nextPageUri"));
    json_decref(page);
  }
  free(next);
  free(cur);
  json_object_set_new(first, "count", json_integer((json_int_t)json_array_size(members)));
  json_object_set_new(first, "nextPageUri", json_null());
  *out = first;
  return CLI_OK;
}
