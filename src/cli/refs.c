/* refs.c — turn what the user typed (an id, a /rest/... uri or an exact
 * name) into the resource it names. Names are looked up with the collection
 * filter name='X' and checked again here, so a server that ignores the
 * filter still gives the right answer. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

const struct coll_info COLL_PLAN_SCRIPTS = {"plan-scripts", "plan script", "name"};
const struct coll_info COLL_BUILD_PLANS = {"build-plans", "build plan", "name"};
const struct coll_info COLL_DEPLOYMENT_PLANS = {"deployment-plans", "deployment plan", "name"};
const struct coll_info COLL_GOLDEN_IMAGES = {"golden-images", "golden image", "name"};
const struct coll_info COLL_TASKS = {"tasks", "task", "name"};
const struct coll_info COLL_USERS = {"users", "user", "userName"};
const struct coll_info COLL_SERVER_HARDWARE = {"server-hardware", "server hardware", "name"};
const struct coll_info COLL_SERVER_PROFILES = {"server-profiles", "server profile", "name"};
const struct coll_info COLL_ARTIFACT_BUNDLES = {"artifact-bundles", "artifact bundle", "name"};

/* name='X' with quotes doubled, wrapped in double quotes like the HPE SDKs. */
char *ref_name_filter(const char *field, const char *name) {
  size_t n = strlen(name);
  char *q = malloc(2 * n + 1);
  if (!q) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '\'') q[j++] = '\'';
    q[j++] = name[i];
  }
  q[j] = 0;
  char *f = util_strdup_printf("\"%s='%s'\"", field, q);
  free(q);
  return f;
}

static int looks_like_id(const char *s) {
  if (!*s) return 0;
  for (const char *p = s; *p; p++) {
    if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
          (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
      return 0;
  }
  return 1;
}

static int not_found(const struct coll_info *ci, const char *ref) {
  fprintf(stderr, "error: no %s named or with id \"%s\"\n", ci->what, ref);
  if (ci == &COLL_SERVER_HARDWARE || ci == &COLL_SERVER_PROFILES || ci == &COLL_ARTIFACT_BUNDLES)
    fprintf(stderr, "hint: 'streamer %s list' shows them\n",
            ci == &COLL_SERVER_HARDWARE   ? "hardware"
            : ci == &COLL_SERVER_PROFILES ? "profile"
                                          : "bundle");
  else
    fprintf(stderr, "hint: 'streamer %.*s list' shows them\n", (int)strlen(ci->coll) - 1, ci->coll);
  return CLI_ESERVER;
}

int ref_get(struct cli *c, const struct coll_info *ci, const char *ref, json_t **out) {
  *out = NULL;
  if (!*ref) return cli_usage_error(NULL, "empty %s reference", ci->what);
  if (strncmp(ref, "/rest/", 6) == 0) {
    CLEANUP_FREE char *prefix = util_strdup_printf("/rest/%s/", ci->coll);
    if (strncmp(ref, prefix, strlen(prefix)) != 0)
      return cli_usage_error(NULL, "\"%s\" is not a %s uri (%s...)", ref, ci->what, prefix);
    return api_call(c, "GET", ref, NULL, NULL, out);
  }
  int rc = api_require_login(c);
  if (rc) return rc;

  /* Users and tasks are addressed by name / id directly. */
  if (ci == &COLL_USERS || ci == &COLL_TASKS) {
    CLEANUP_FREE char *esc = http_escape(ref);
    CLEANUP_FREE char *path = util_strdup_printf("/rest/%s/%s", ci->coll, esc ? esc : "");
    long status;
    json_t *res = NULL;
    CLEANUP_FREE char *raw = NULL;
    rc = http_do(c, "GET", path, NULL, NULL, 1, &status, &res, &raw);
    if (rc) return rc;
    if (status == 404) {
      json_decref(res);
      fprintf(stderr, "error: no %s \"%s\"\n", ci->what, ref);
      return CLI_ESERVER;
    }
    if (status < 200 || status > 299) {
      rc = api_print_error(c, status, res, raw);
      json_decref(res);
      return status == 401 ? CLI_ECONN : rc;
    }
    *out = res;
    return CLI_OK;
  }

  CLEANUP_FREE char *filter = ref_name_filter(ci->name_field, ref);
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, ci->coll, filter, NULL, &list);
  if (rc) return rc;
  json_t *exact = NULL, *folded = NULL;
  int nexact = 0, nfolded = 0;
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    const char *name = jstr(m, ci->name_field);
    if (strcmp(name, ref) == 0) {
      exact = m;
      nexact++;
    } else if (util_strcaseeq(name, ref)) {
      folded = m;
      nfolded++;
    }
  }
  json_t *hit = nexact ? exact : (nfolded == 1 ? folded : NULL);
  if (nexact > 1 || (!nexact && nfolded > 1)) {
    fprintf(stderr, "error: %d %ss are named \"%s\"; give the id or uri instead\n",
            nexact > 1 ? nexact : nfolded, ci->what, ref);
    return CLI_ESERVER;
  }
  if (hit) {
    /* GET the resource itself: members may be abbreviated, and an update
     * needs the current eTag. */
    const char *uri = jstr(hit, "uri");
    if (*uri) return api_call(c, "GET", uri, NULL, NULL, out);
    *out = json_incref(hit);
    return CLI_OK;
  }
  if (!looks_like_id(ref)) return not_found(ci, ref);

  CLEANUP_FREE char *path = util_strdup_printf("/rest/%s/%s", ci->coll, ref);
  long status;
  json_t *res = NULL;
  CLEANUP_FREE char *raw = NULL;
  rc = http_do(c, "GET", path, NULL, NULL, 1, &status, &res, &raw);
  if (rc) return rc;
  if (status == 404 || status == 400) {
    json_decref(res);
    return not_found(ci, ref);
  }
  if (status < 200 || status > 299) {
    rc = api_print_error(c, status, res, raw);
    json_decref(res);
    return status == 401 ? CLI_ECONN : rc;
  }
  *out = res;
  return CLI_OK;
}
