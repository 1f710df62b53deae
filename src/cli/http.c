/* http.c — REST calls over libcurl: headers (X-API-Version, auth, If-Match),
 * JSON bodies, transport errors (exit 3), the HPE error JSON printed for a
 * 4xx/5xx answer (exit 1), collections with paging. */
#include <curl/curl.h>
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

int http_do(struct cli *c, const char *method, const char *path, json_t *body, const char *if_match,
            int auth, long *status, json_t **out, char **raw) {
  cli_resolve(c);
  *status = 0;
  if (out) *out = NULL;
  if (raw) *raw = NULL;
  if (!c->curl) {
    c->curl = curl_easy_init();
    if (!c->curl) {
      fprintf(stderr, "error: cannot initialise libcurl\n");
      return CLI_ECONN;
    }
  }
  CURL *h = c->curl;
  curl_easy_reset(h);

  CLEANUP_FREE char *url = util_strdup_printf("%s%s", c->server, request_path(path));
  CLEANUP_FREE char *payload = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  CLEANUP_FREE char *auth_hdr = NULL;
  CLEANUP_FREE char *match_hdr = NULL;
  struct curl_slist *hdrs = NULL;
  hdrs = curl_slist_append(hdrs, "X-API-Version: " CLI_API_VERSION);
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  hdrs = curl_slist_append(hdrs, "Expect:");
  if (payload) hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  if (auth && c->token) {
    auth_hdr = util_strdup_printf("auth: %s", c->token);
    hdrs = curl_slist_append(hdrs, auth_hdr);
  }
  if (if_match && *if_match) {
    match_hdr = util_strdup_printf("If-Match: %s", if_match);
    hdrs = curl_slist_append(hdrs, match_hdr);
  }
  struct buf b = {0};
  char errbuf[CURL_ERROR_SIZE] = "";

  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "streamer-cli/" STREAMER_VERSION);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
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
  if (rc != CURLE_OK) {
    free(b.data);
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (b.oom) why = "out of memory";
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
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  if (b.data && out) {
    json_error_t jerr;
    *out = json_loadb(b.data, b.len, JSON_DECODE_ANY, &jerr);
  }
  if (raw) {
    *raw = b.data;
  } else {
    free(b.data);
  }
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
