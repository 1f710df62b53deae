/* profile.c — server profiles and the deploy / redeploy / delete pipelines.
 *
 * Create (POST): everything is checked in the request (the body, the
 * machine free, the deployment plan, its build plan and plan scripts, every
 * attribute against the plan at once — nothing exists yet on failure); then
 *   1. one transaction: the profile "Creating", the machine's
 *      serverProfileUri set to it;
 *   2. osvol_create_begin: the OS volume's document "Creating" (owned by the
 *      profile: serverProfileUri, deploymentPlanUri; ACL = the machine's
 *      initiator, one-way CHAP with its credentials);
 *   3. a task "Deploy": osvol_create_finish_with clones the golden volume
 *      (or makes an empty one of VolumeSize MiB), runs the build plan on it
 *      in one script session (prepare hook below; its masked log becomes the
 *      volume's deployment log) and exports it; then one transaction sets
 *      the profile "Normal" with its osVolumeUri and bootConnections.
 * Any failure: the volume and its target are gone (osvolume.c undoes its
 * own create), the profile and the machine's link are removed, the task
 * ends in Error naming the step ("clone", "plan", "export", "record").
 * Redeploy (PUT with another plan or other values): the profile "Updating",
 * a new volume as above, then the profile points to it and only then is
 * the old volume deleted; a failure puts the profile back to "Normal" as it
 * was. Delete: the profile "Deleting", its volume deleted, then the profile
 * and the machine's link.
 *
 * A stop at any point is resolved by deploy_service_open: osvol_service_open
 * has already removed volumes left "Creating"; profiles "Creating" are
 * removed, "Updating" go back to "Normal", "Deleting" are deleted; any OS
 * volume whose profile does not point to it (or no longer exists) is
 * deleted, and machines pointing to a missing profile are freed. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "artifact/artifact.h"
#include "deploy/deploy_int.h"
#include "deploy/osvolume.h"
#include "deploy/plan_int.h"
#include "fs/fs.h"
#include "iscsi/iscsi.h"
#include "script/sandbox.h"
#include "script/script.h"
#include "vol/vol.h"

#define DP_COLL "deployment-plans"
#define BP_COLL "build-plans"
#define LOG_HEAD (48u << 10) /* deployment log kept: head and tail */
#define LOG_TAIL (16u << 10)
#define DESC_MAX 65536

static int oom(struct err *e) {
  err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
  return -1;
}

static int is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* ---- rendering: no secrets ------------------------------------------------------- */
static char *render_profile(json_t *doc) {
  json_t *c = json_copy(doc);
  if (c) json_object_del(c, "secrets");
  char *s = c ? json_dumps(c, JSON_COMPACT) : NULL;
  json_decref(c);
  return s;
}

/* ---- fault injection (tests only: streamerd --fault-injection) --------------------- */
static int fault(struct deploy_service *d, const char *step, struct err *e) {
  if (!d->c.faults) return 0;
  const char *f = getenv("STREAMER_FAULT");
  char want[64];
  snprintf(want, sizeof want, "deploy:%s", step);
  for (const char *p = f ? strstr(f, want) : NULL; p; p = strstr(p + 1, want)) {
    char end = p[strlen(want)];
    if ((p == f || p[-1] == ',') && (end == 0 || end == ',')) {
      err_set(e, 500, "INJECTED_FAULT", "injected fault (STREAMER_FAULT=%s)", want);
      return -1;
    }
  }
  return 0;
}

/* ---- the job of one pipeline ------------------------------------------------------- */
enum kind { K_CREATE, K_REDEPLOY, K_UPDATE, K_DELETE };
static const char *const KIND_TASK[] = {"Deploy", "Redeploy", "Update", "Delete"};

struct job {
  struct deploy_service *d;
  enum kind kind;
  char pid[37];     /* the profile */
  char vid[37];     /* the new OS volume (create, redeploy) */
  char old_vid[64]; /* the volume replaced (redeploy) or deleted (delete) */
  char *pname, *new_name, *new_desc;
  char *dp_uri, *dp_name;
  struct plan plan;
  json_t *attrs_public, *attrs_full; /* the new osCustomAttributes */
  json_t *hw;                        /* the machine's document (with its secrets) */
  const char *step;                  /* the pipeline step running */
  char *volume_info;
  char *log; /* the build plan's masked log */
  int moved; /* an update that moved the profile to j->hw */
};

static void job_free(void *p) {
  struct job *j = p;
  if (!j) return;
  free(j->pname);
  free(j->new_name);
  free(j->new_desc);
  free(j->dp_uri);
  free(j->dp_name);
  plan_clear(&j->plan);
  json_decref(j->attrs_public);
  json_decref(j->attrs_full);
  json_decref(j->hw);
  free(j->volume_info);
  free(j->log);
  free(j);
}

/* ---- boot connections -------------------------------------------------------------- */
static int wildcard(const char *host) {
  return is(host, "0.0.0.0") || is(host, "::") || is(host, "*") || !*host;
}

/* The host's first non-loopback IPv4 address that is up; "" when none. */
static void detect_address(char out[64]) {
  out[0] = 0;
  struct ifaddrs *ifa = NULL;
  if (getifaddrs(&ifa) < 0) return;
  for (struct ifaddrs *i = ifa; i && !out[0]; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
        (i->ifa_flags & IFF_LOOPBACK))
      continue;
    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, out, 64);
  }
  freeifaddrs(ifa);
}

static void add_connection(json_t *a, const char *ip, long port, const char *target, json_t *hw) {
  size_t n = json_array_size(a);
  char name[64];
  snprintf(name, sizeof name, "%s iSCSI boot connection", n == 0 ? "Primary" : "Secondary");
  json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:O, s:s, s:i, s:s, s:I, s:O}", "id",
                                     (json_int_t)(n + 1), "name", name, "priority",
                                     n == 0 ? "Primary" : "Secondary", "initiatorName",
                                     json_object_get(hw, "initiatorName"), "targetName", target,
                                     "targetLun", 0, "targetIp", ip, "targetPort", (json_int_t)port,
                                     "chapName", json_object_get(hw, "chapName")));
}

/* One connection per portal; a wildcard portal gives one per advertised address. */
static json_t *boot_connections(struct deploy_service *d, const char *target, json_t *hw) {
  json_t *a = json_array();
  size_t n = 0;
  const char *const *portals = d->c.iscsi ? iscsi_portals(d->c.iscsi, &n) : NULL;
  for (size_t i = 0; a && i < n; i++) {
    char host[128];
    snprintf(host, sizeof host, "%s", portals[i][0] == '[' ? portals[i] + 1 : portals[i]);
    char *sep = portals[i][0] == '[' ? strchr(host, ']') : strrchr(host, ':');
    long port = 3260;
    if (sep) {
      char *colon = portals[i][0] == '[' ? strchr(sep, ':') : sep;
      if (colon) port = strtol(colon + 1, NULL, 10);
      *sep = 0;
    }
    if (!wildcard(host)) {
      add_connection(a, host, port, target, hw);
      continue;
    }
    if (d->c.nadvertise) {
      for (size_t k = 0; k < d->c.nadvertise; k++)
        add_connection(a, d->advertise[k], port, target, hw);
    } else {
      char ip[64];
      detect_address(ip);
      add_connection(a, ip[0] ? ip : "127.0.0.1", port, target, hw);
    }
  }
  return a;
}

/* ---- store helpers ----------------------------------------------------------------- */
/* The machine `hw_id` linked to `profile_uri` (or freed: NULL) inside t. */
static int hw_link(struct store_txn *t, const char *hw_id, const char *profile_uri, struct err *e) {
  struct store_entry *h = hw_id ? store_txn_get(t, HW_COLL, hw_id) : NULL;
  if (!h) return 0;
  json_t *doc = json_deep_copy(h->doc);
  int rc = -1;
  if (doc) {
    json_object_set_new(doc, "serverProfileUri",
                        profile_uri ? json_string(profile_uri) : json_null());
    json_object_set_new(doc, "state", json_string(profile_uri ? "ProfileApplied" : "Unused"));
    rc = store_put(t, HW_COLL, h->id, h->name, doc, e);
  } else {
    oom(e);
  }
  json_decref(doc);
  store_entry_release(h);
  return rc;
}

static const char *hw_id_of(json_t *profile) {
  return deploy_uri_id(json_string_value(json_object_get(profile, "serverHardwareUri")), HW_COLL);
}

/* Remove profile `pid` and free its machine (one transaction). */
static int profile_remove(struct deploy_service *d, const char *pid, struct err *e) {
  struct store_txn *t = store_begin(d->c.store);
  if (!t) return oom(e);
  struct store_entry *p = store_txn_get(t, PROFILE_COLL, pid);
  int rc = 0;
  if (p) {
    char hw[64];
    snprintf(hw, sizeof hw, "%s", hw_id_of(p->doc) ?: "");
    struct store_entry *h = hw[0] ? store_txn_get(t, HW_COLL, hw) : NULL;
    int mine = h && is(json_string_value(json_object_get(h->doc, "serverProfileUri")),
                       json_string_value(json_object_get(p->doc, "uri")));
    store_entry_release(h);
    rc = store_delete(t, PROFILE_COLL, pid, e);
    if (rc == 0 && mine) rc = hw_link(t, hw, NULL, e);
    store_entry_release(p);
  }
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

/* Store profile document doc (its "name" included) inside t; a name another profile
 * has is 409 NAME_CONFLICT. */
static int profile_put(struct store_txn *t, const char *pid, json_t *doc, struct err *e) {
  const char *name = json_string_value(json_object_get(doc, "name"));
  if (store_put(t, PROFILE_COLL, pid, name, doc, e) == 0) return 0;
  if (e->status == 409) {
    err_clear(e);
    err_set(e, 409, "NAME_CONFLICT", "a server profile named \"%s\" already exists", name);
    err_action(e, "Choose another name, or change or delete the existing server profile.");
  }
  return -1;
}

/* Machine h may take profile puri: it has no profile, or that one; else 409 HARDWARE_IN_USE. */
static int hw_available(struct store_entry *h, const char *puri, struct err *e) {
  const char *used = json_string_value(json_object_get(h->doc, "serverProfileUri"));
  if (!used || (puri && strcmp(used, puri) == 0)) return 0;
  err_set(e, 409, "HARDWARE_IN_USE", "server hardware \"%s\" is already used by server profile %s",
          h->name, used);
  err_action(e, "Delete or move that server profile first, or choose another machine.");
  return -1;
}

/* Edit profile `pid`: fn(doc, arg) on a copy, stored in one transaction. */
static int profile_edit(struct deploy_service *d, const char *pid,
                        int (*fn)(json_t *doc, void *arg, struct err *e), void *arg,
                        struct err *e) {
  struct store_txn *t = store_begin(d->c.store);
  if (!t) return oom(e);
  struct store_entry *p = store_txn_get(t, PROFILE_COLL, pid);
  if (!p) {
    store_rollback(t);
    err_set(e, 404, "RESOURCE_NOT_FOUND", "server profile \"%.100s\" does not exist", pid);
    return -1;
  }
  json_t *doc = json_deep_copy(p->doc);
  int rc = doc ? fn(doc, arg, e) : oom(e);
  if (rc == 0) rc = profile_put(t, pid, doc, e);
  json_decref(doc);
  store_entry_release(p);
  if (rc < 0) {
    store_rollback(t);
    return -1;
  }
  return store_commit(t, e);
}

struct state_arg {
  const char *state, *status, *message, *task_uri;
};

static int set_state(json_t *doc, void *arg, struct err *e) {
  struct state_arg *a = arg;
  if (a->state) json_object_set_new(doc, "state", json_string(a->state));
  if (a->status) json_object_set_new(doc, "status", json_string(a->status));
  if (a->message) json_object_set_new(doc, "statusMessage", json_string(a->message));
  if (a->task_uri) json_object_set_new(doc, "taskUri", json_string(a->task_uri));
  return 0;
}

static void set_state_quiet(struct deploy_service *d, const char *pid, struct state_arg *a) {
  struct err e;
  err_init(&e);
  if (profile_edit(d, pid, set_state, a, &e) < 0)
    log_error("deploy", "server profile %s: cannot record its state: %s", pid, e.message);
  err_clear(&e);
}

/* Delete OS volume `vid` (both steps); 0 when it is gone. */
static int volume_delete(struct deploy_service *d, const char *vid, struct task *t, struct err *e) {
  if (!vid || !vid[0]) return 0;
  if (osvol_delete_begin(d->c.osvols, vid, NULL, e) < 0) {
    if (e->status == 404) {
      err_clear(e);
      return 0;
    }
    return -1;
  }
  return osvol_delete_finish(d->c.osvols, vid, t, e);
}

/* ---- the build plan on the new volume (osvol_create_finish_with's prepare) ------------ */
static int personalize(void *arg, struct vol *v, char **log, struct err *e) {
  struct job *j = arg;
  struct deploy_service *d = j->d;
  j->step = "plan";
  if (fault(d, "plan", e) < 0) return -1;
  int rc = 0;
  if (j->plan.nsteps > 0) {
    struct fs_disk *disk = NULL;
    struct logcap cap;
    char id[37];
    util_uuid(id);
    char *base = util_strdup_printf("%s/%s", d->workdir, id);
    char *workdir = base ? util_strdup_printf("%s.tmp", base) : NULL;
    if (!workdir || logcap_init(&cap, LOG_HEAD, LOG_TAIL) < 0) {
      free(base);
      free(workdir);
      return oom(e);
    }
    if ((mkdir(d->workdir, 0700) < 0 && errno != EEXIST) || mkdir(workdir, 0700) < 0) {
      err_set(e, 500, "IO_ERROR", "cannot create the work directory %s: %s", workdir,
              strerror(errno));
      free(workdir);
      workdir = NULL;
      rc = -1;
    } else if (fs_disk_open(v, 0, &disk, e) < 0) {
      rc = -1;
    } else {
      struct script_opts o = {.workdir = workdir,
                              .log = logcap_take,
                              .log_opaque = &cap,
                              .guestfish = SCRIPT_GUESTFISH_AUTO,
                              .volume_info = j->volume_info};
      struct script_session *s = NULL;
      if (script_session_new(disk, &o, &s, e) < 0) {
        rc = -1;
      } else {
        script_session_set_attributes(s, j->plan.values, j->plan.secrets);
        struct err pe;
        err_init(&pe);
        rc = script_session_run_plan(s, j->plan.steps, j->plan.nsteps, &pe);
        struct err ce;
        err_init(&ce);
        if (script_session_close(s, &ce) < 0 && rc == 0) { /* writing back failed */
          pe = ce;
          err_init(&ce);
          rc = -1;
        }
        err_clear(&ce);
        if (rc < 0) {
          char *msg = plan_masked(pe.message, j->plan.secret_values);
          err_set(e, 400, pe.code[0] ? pe.code : "SCRIPT_FAILED",
                  "build plan \"%.200s\" failed: %.700s", j->plan.bp_name, msg ? msg : "");
          free(msg);
        }
        err_clear(&pe);
      }
    }
    fs_disk_close(disk);
    uint64_t cut = 0;
    char *text = logcap_text(&cap, &cut);
    logcap_free(&cap);
    j->log = text ? plan_masked(text, j->plan.secret_values) : NULL;
    free(text);
    if (j->log) *log = strdup(j->log);
    if (workdir) {
      struct err ce;
      err_init(&ce);
      if (sandbox_cleanup(base, &ce) < 0)
        log_warn("deploy", "cannot remove %s: %s", workdir, ce.message);
      err_clear(&ce);
    }
    free(base);
    free(workdir);
  } else {
    *log = util_strdup_printf("build plan \"%s\" has no steps: nothing to run\n", j->plan.bp_name);
  }
  if (rc < 0) return -1;
  j->step = "export";
  return fault(d, "export", e);
}

/* ---- the pipelines ----------------------------------------------------------------- */
static const char *step_what(const char *step) {
  if (is(step, "clone")) return "creating the OS volume";
  if (is(step, "plan")) return "running the build plan";
  if (is(step, "export")) return "exporting the iSCSI target";
  if (is(step, "record")) return "recording the deployment";
  if (is(step, "delete")) return "deleting the OS volume";
  return step;
}

/* e's message prefixed with the step that failed. */
static void step_failed(struct job *j, struct err *e) {
  char msg[sizeof e->message];
  snprintf(msg, sizeof msg, "%s", e->message);
  char code[sizeof e->code];
  snprintf(code, sizeof code, "%s", e->code[0] ? e->code : "DEPLOY_FAILED");
  int status = e->status ? e->status : 500;
  err_clear(e);
  err_set(e, status, code, "%s of server profile \"%.200s\" failed at step \"%s\" (%s): %.700s",
          KIND_TASK[j->kind], j->pname, j->step, step_what(j->step), msg);
}

struct record_arg {
  struct job *j;
  json_t *conns;
  const char *task_uri;
};

static int record_deployment(json_t *doc, void *arg, struct err *e) {
  struct record_arg *a = arg;
  struct job *j = a->j;
  json_t *ods = json_object_get(doc, "osDeploymentSettings");
  char vuri[96];
  snprintf(vuri, sizeof vuri, "/rest/%s/%s", OSVOL_COLL, j->vid);
  json_object_set_new(ods, "osDeploymentPlanUri", json_string(j->dp_uri));
  json_object_set(ods, "osCustomAttributes", j->attrs_public);
  json_object_set_new(ods, "osVolumeUri", json_string(vuri));
  json_object_set_new(json_object_get(doc, "secrets"), "osCustomAttributes",
                      json_incref(j->attrs_full));
  json_object_set(doc, "bootConnections", a->conns);
  if (j->new_name) json_object_set_new(doc, "name", json_string(j->new_name));
  if (j->new_desc) json_object_set_new(doc, "description", json_string(j->new_desc));
  json_object_set_new(doc, "state", json_string("Normal"));
  json_object_set_new(doc, "status", json_string("OK"));
  json_object_set_new(doc, "statusMessage", json_string(""));
  json_object_set_new(doc, "taskUri", json_string(a->task_uri));
  (void)e;
  return 0;
}

/* A failed create or redeploy: nothing of it stays. */
static void deploy_undo(struct job *j) {
  struct err e;
  err_init(&e);
  if (j->kind == K_CREATE) {
    if (profile_remove(j->d, j->pid, &e) < 0)
      log_error("deploy", "server profile %s: cannot remove it: %s", j->pid, e.message);
  } else {
    struct state_arg a = {.state = "Normal"};
    if (profile_edit(j->d, j->pid, set_state, &a, &e) < 0)
      log_error("deploy", "server profile %s: cannot reset its state: %s", j->pid, e.message);
  }
  err_clear(&e);
}

static int deploy_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  struct deploy_service *d = j->d;
  struct state_arg sa = {.task_uri = task_uri(t)};
  set_state_quiet(d, j->pid, &sa);
  task_progress(t, 5,
                "%s server profile \"%s\": deployment plan \"%s\", build plan \"%s\" (%zu "
                "step(s))",
                j->kind == K_CREATE ? "Deploying" : "Redeploying", j->pname, j->dp_name,
                j->plan.bp_name, j->plan.nsteps);
  j->step = "clone";
  int rc = fault(d, "clone", e);
  if (rc == 0)
    rc = osvol_create_finish_with(d->c.osvols, j->vid, t, personalize, j, e);
  else
    osvol_create_abort(d->c.osvols, j->vid);
  json_t *conns = NULL;
  if (rc == 0) {
    j->step = "record";
    struct store_entry *v = store_get(d->c.store, OSVOL_COLL, j->vid);
    const char *target =
        v ? json_string_value(json_object_get(json_object_get(v->doc, "iscsi"), "targetName"))
          : NULL;
    conns = target ? boot_connections(d, target, j->hw) : NULL;
    store_entry_release(v);
    if (!conns) {
      err_set(e, 500, "DEPLOY_FAILED", "the new OS volume's target is not known");
      rc = -1;
    }
    if (rc == 0) rc = fault(d, "record", e);
    struct record_arg ra = {.j = j, .conns = conns, .task_uri = task_uri(t)};
    if (rc == 0) rc = profile_edit(d, j->pid, record_deployment, &ra, e);
    if (rc < 0) { /* the volume exists and is exported: remove it */
      struct err ve;
      err_init(&ve);
      if (volume_delete(d, j->vid, NULL, &ve) < 0)
        log_error("deploy", "OS volume %s: cannot remove it: %s", j->vid, ve.message);
      err_clear(&ve);
    }
  }
  if (rc < 0) {
    step_failed(j, e);
    log_warn("deploy", "%s", e->message);
    if (j->log) task_set_output(t, json_pack("{s:s}", "log", j->log), NULL);
    deploy_undo(j);
    json_decref(conns);
    return -1;
  }
  char puri[96], vuri[96];
  snprintf(puri, sizeof puri, "/rest/%s/%s", PROFILE_COLL, j->pid);
  snprintf(vuri, sizeof vuri, "/rest/%s/%s", OSVOL_COLL, j->vid);
  /* A redeploy: the old volume goes only now. */
  if (j->kind == K_REDEPLOY && j->old_vid[0]) {
    struct err de;
    err_init(&de);
    j->step = "delete";
    if (fault(d, "remove-old", &de) < 0 || volume_delete(d, j->old_vid, NULL, &de) < 0) {
      log_warn("deploy",
               "server profile \"%s\": the replaced OS volume %s could not be removed "
               "now (%s); streamerd removes it at its next start",
               j->pname, j->old_vid, de.message);
      task_progress(t, 95, "The replaced OS volume %s could not be removed now: %s", j->old_vid,
                    de.message);
    }
    err_clear(&de);
  }
  json_t *c0 = json_array_get(conns, 0);
  char line[1200];
  snprintf(line, sizeof line,
           "Server profile \"%s\" deployed: OS volume %s, target %s at %s:%lld LUN 0 for "
           "initiator %s",
           j->new_name ? j->new_name : j->pname, vuri,
           json_string_value(json_object_get(c0, "targetName")),
           json_string_value(json_object_get(c0, "targetIp")),
           (long long)json_integer_value(json_object_get(c0, "targetPort")),
           json_string_value(json_object_get(j->hw, "initiatorName")));
  json_t *data =
      json_pack("{s:s, s:s, s:s, s:O, s:o, s:s}", "serverProfileUri", puri, "osVolumeUri", vuri,
                "serverHardwareUri", json_string_value(json_object_get(j->hw, "uri")),
                "initiatorName", json_object_get(j->hw, "initiatorName"), "bootConnections", conns,
                "deploymentPlanUri", j->dp_uri);
  task_set_output(t, data, line);
  task_progress(t, 100, "%s", line);
  log_info("deploy", "%s", line);
  return 0;
}

static int delete_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  struct deploy_service *d = j->d;
  struct state_arg sa = {.task_uri = task_uri(t)};
  set_state_quiet(d, j->pid, &sa);
  j->step = "delete";
  task_progress(t, 5, "Deleting server profile \"%s\"", j->pname);
  int rc = fault(d, "delete", e);
  if (rc == 0) rc = volume_delete(d, j->old_vid, t, e);
  if (rc < 0) {
    step_failed(j, e);
    struct state_arg a = {.state = "Normal", .status = "Warning", .message = e->message};
    set_state_quiet(d, j->pid, &a);
    return -1;
  }
  if (profile_remove(d, j->pid, e) < 0) return -1;
  task_progress(t, 100, "Deleted server profile \"%s\" and its OS volume", j->pname);
  log_info("deploy", "server profile \"%s\" (%s) deleted", j->pname, j->pid);
  return 0;
}

static int update_run(struct task *t, void *arg, struct err *e) {
  struct job *j = arg;
  if (j->moved)
    task_progress(t, 100, "Server profile \"%s\" moved to server hardware \"%s\"",
                  j->new_name ? j->new_name : j->pname,
                  json_string_value(json_object_get(j->hw, "name")));
  else
    task_progress(t, 100, "Server profile \"%s\" updated", j->new_name ? j->new_name : j->pname);
  (void)e;
  return 0;
}

/* ---- the request ------------------------------------------------------------------- */
static const char *str_of(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* The deployment plan a reference names: URI (/rest/deployment-plans/ or
 * OneView's /rest/os-deployment-plans/), id or exact name. */
static struct store_entry *dp_lookup(struct store *s, const char *ref) {
  static const char oneview[] = "/rest/os-deployment-plans/";
  struct store_entry *en = deploy_lookup(s, DP_COLL, ref);
  if (!en && ref && strncmp(ref, oneview, sizeof oneview - 1) == 0)
    en = store_get(s, DP_COLL, ref + sizeof oneview - 1);
  return en;
}

/* The system attributes scripts see, from the machine. */
static json_t *system_values(json_t *hw) {
  json_t *v = json_object();
  json_t *macs = json_object_get(hw, "macAddresses");
  /* NIC 1: the first MAC, ipv4Address, netmask; NIC 2: the second MAC,
   * ipv4Address2, netmask2 (hardware.c refuses those without a second MAC) */
  static const char *const ips[2] = {"ipv4Address", "ipv4Address2"};
  static const char *const masks[2] = {"netmask", "netmask2"};
  for (int i = 0; i < 2; i++) {
    char k[64];
    const char *mac = json_string_value(json_array_get(macs, (size_t)i));
    const char *ip = str_of(hw, ips[i]), *mask = str_of(hw, masks[i]);
    snprintf(k, sizeof k, "_Initiator%d.mac", i + 1);
    json_object_set_new(v, k, json_string(mac ? mac : ""));
    snprintf(k, sizeof k, "_Initiator%d.ip", i + 1);
    json_object_set_new(v, k, json_string(ip ? ip : ""));
    snprintf(k, sizeof k, "_Initiator%d.netmask", i + 1);
    json_object_set_new(v, k, json_string(mask ? mask : ""));
  }
  return v;
}

/* osCustomAttributes with password values blanked (what a GET shows). */
static json_t *attrs_masked(json_t *full, json_t *secret_names) {
  json_t *out = json_deep_copy(full);
  size_t i, k;
  json_t *a, *n;
  json_array_foreach(out, i, a) {
    json_array_foreach(secret_names, k, n) {
      if (util_strcaseeq(str_of(a, "name"), json_string_value(n)) &&
          json_string_length(json_object_get(a, "value")))
        json_object_set_new(a, "value", json_string(""));
    }
  }
  return out;
}

/* Resolve the deployment plan, load its build plan and check the attribute
 * values (given, over `carried`) for job j. The deployment plan's golden
 * image id goes to golden (may be ""). */
static int prepare_plan(struct job *j, json_t *ods, json_t *given, json_t *carried, char golden[64],
                        uint64_t *size, struct err *e) {
  struct store *s = j->d->c.store;
  const char *dpref = str_of(ods, "osDeploymentPlanUri");
  if (!dpref) dpref = str_of(ods, "osDeploymentPlanURI");
  if (!dpref || !*dpref) {
    err_set(e, 400, "INVALID_DEPLOYMENT_PLAN",
            "server profile: \"osDeploymentSettings\".\"osDeploymentPlanUri\" is required (the "
            "deployment plan to deploy)");
    return -1;
  }
  struct store_entry *dp = dp_lookup(s, dpref);
  if (!dp) {
    err_set(e, 400, "DEPLOYMENT_PLAN_NOT_FOUND", "deployment plan \"%.300s\" does not exist",
            dpref);
    err_action(e, "Give an existing deployment plan (GET /rest/deployment-plans lists them).");
    return -1;
  }
  j->dp_uri = util_strdup_printf("/rest/%s/%s", DP_COLL, dp->id);
  j->dp_name = strdup(dp->name ? dp->name : dp->id);
  const char *bpid = deploy_uri_id(str_of(dp->doc, "oeBuildPlanURI"), BP_COLL);
  struct store_entry *bp = bpid ? store_get(s, BP_COLL, bpid) : NULL;
  int rc = -1;
  if (!j->dp_uri || !j->dp_name) {
    oom(e);
    goto out;
  }
  if (!bp) {
    err_set(e, 400, "BUILD_PLAN_NOT_FOUND",
            "deployment plan \"%s\": its build plan \"%.300s\" does not exist", j->dp_name,
            str_of(dp->doc, "oeBuildPlanURI") ?: "");
    goto out;
  }
  if (plan_load(&j->plan, s, bp->id, bp->name, bp->doc, e) < 0) goto out;
  golden[0] = 0;
  const char *gid = deploy_uri_id(str_of(dp->doc, "goldenImageURI"), GOLDEN_COLL);
  if (gid) {
    struct store_entry *g = store_get(s, GOLDEN_COLL, gid);
    if (!g || golden_is_deleting(g->doc)) {
      err_set(e, g ? 409 : 400, g ? "GOLDEN_IMAGE_DELETING" : "GOLDEN_IMAGE_NOT_FOUND",
              "deployment plan \"%s\": its golden image %s %s", j->dp_name, gid,
              g ? "is being deleted" : "does not exist");
      store_entry_release(g);
      goto out;
    }
    store_entry_release(g);
    snprintf(golden, 64, "%s", gid);
  }
  json_t *sys = system_values(j->hw);
  char what[400];
  snprintf(what, sizeof what, "server profile \"%.200s\"", j->new_name ? j->new_name : j->pname);
  struct plan_attr_opts o = {.dp_decls = json_object_get(dp->doc, "customAttributes"),
                             .dp_name = j->dp_name,
                             .carried = carried,
                             .system = sys,
                             .nic_modes = 1,
                             .need_volume_size = !golden[0]};
  json_t *eff = NULL;
  int arc = plan_attributes(&j->plan, what, given, &o, &eff, e);
  json_decref(sys);
  if (arc < 0) goto out;
  j->attrs_full = eff;
  j->attrs_public = attrs_masked(eff, j->plan.secrets);
  *size = golden[0] ? 0 : (uint64_t)strtoull(plan_value(&j->plan, "VolumeSize"), NULL, 10) << 20;
  rc = 0;
out:
  store_entry_release(bp);
  store_entry_release(dp);
  return rc;
}

/* osvol_create_begin for the job's new volume, named after the profile. */
static int begin_volume(struct job *j, const char *golden, uint64_t size, int generation,
                        struct err *e) {
  const char *init = str_of(j->hw, "initiatorName");
  const char *inits[1] = {init};
  char puri[96];
  snprintf(puri, sizeof puri, "/rest/%s/%s", PROFILE_COLL, j->pid);
  char *desc = util_strdup_printf("OS volume of server profile \"%s\" (deployment plan \"%s\")",
                                  j->pname, j->dp_name);
  struct osvol_params p = {
      .description = desc,
      .size = size,
      .golden_ref = golden[0] ? golden : NULL,
      .initiators = inits,
      .ninitiators = 1,
      .chap = 1,
      .chap_name = str_of(j->hw, "chapName"),
      .chap_secret = str_of(json_object_get(j->hw, "secrets"), "chapSecret"),
      .server_profile_uri = puri,
      .deployment_plan_uri = j->dp_uri,
      .server_profile_name = j->new_name ? j->new_name : j->pname,
      .server_iqn = init,
  };
  int rc = -1;
  for (int attempt = 0; attempt < 8; attempt++) {
    char name[300];
    int g = generation + attempt;
    if (g <= 1)
      snprintf(name, sizeof name, "%.240s", j->pname);
    else
      snprintf(name, sizeof name, "%.240s (%d)", j->pname, g);
    p.name = name;
    err_clear(e);
    rc = osvol_create_begin(j->d->c.osvols, &p, j->vid, e);
    if (rc == 0 || !is(e->code, "NAME_CONFLICT")) break;
  }
  free(desc);
  if (rc == 0) {
    char *info = util_strdup_printf("OS volume %s of server profile \"%s\" (%s)", j->vid, j->pname,
                                    golden[0] ? "a clone of its golden image" : "empty");
    j->volume_info = info;
  }
  return rc;
}

static json_t *submit(struct job *j, const char *owner, struct err *e) {
  json_t *assoc = task_assoc(PROFILE_COLL, j->pid, j->pname);
  if (!assoc) {
    job_free(j);
    oom(e);
    return NULL;
  }
  task_fn fn = j->kind == K_DELETE ? delete_run : j->kind == K_UPDATE ? update_run : deploy_run;
  /* the task owns j from here (freed at once when it cannot be queued) */
  json_t *task = task_submit(j->d->c.tasks, KIND_TASK[j->kind], owner, assoc, fn, j, job_free, e);
  json_decref(assoc);
  return task;
}

static int check_body(json_t *body, struct err *e) {
  if (!json_is_object(body)) {
    err_set(e, 400, "INVALID_BODY", "the request body must be a JSON object (a server profile)");
    return -1;
  }
  json_t *ods = json_object_get(body, "osDeploymentSettings");
  if (ods && !json_is_null(ods) && !json_is_object(ods)) {
    err_set(e, 400, "INVALID_BODY", "server profile: \"osDeploymentSettings\" must be an object");
    return -1;
  }
  json_t *desc = json_object_get(body, "description");
  if (desc && !json_is_null(desc) &&
      (!json_is_string(desc) || json_string_length(desc) > DESC_MAX)) {
    err_set(e, 400, "INVALID_FIELD", "server profile: \"description\" must be a string");
    return -1;
  }
  return 0;
}

static const char *hw_ref_of(json_t *body) {
  const char *r = str_of(body, "serverHardwareUri");
  return r ? r : str_of(body, "serverHardwareURI");
}

json_t *profile_create(struct deploy_service *d, json_t *body, const char *owner, struct err *e) {
  if (check_body(body, e) < 0) return NULL;
  if (artifact_check_name("server profile", json_object_get(body, "name"), e) < 0) return NULL;
  if (!d->c.iscsi) {
    err_set(e, 409, "ISCSI_DISABLED",
            "deployments need the iSCSI target, which is disabled (--iscsi-listen none)");
    return NULL;
  }
  const char *hwref = hw_ref_of(body);
  if (!hwref || !*hwref) {
    err_set(e, 400, "INVALID_HARDWARE",
            "server profile: \"serverHardwareUri\" is required (the machine to deploy to)");
    return NULL;
  }
  json_t *ods = json_object_get(body, "osDeploymentSettings");
  if (!json_is_object(ods)) {
    err_set(e, 400, "INVALID_DEPLOYMENT_PLAN",
            "server profile: \"osDeploymentSettings\" with \"osDeploymentPlanUri\" is required");
    return NULL;
  }
  struct store_entry *h = hw_lookup(d->c.store, hwref);
  if (!h) {
    err_set(e, 400, "HARDWARE_NOT_FOUND", "server hardware \"%.300s\" does not exist", hwref);
    err_action(e, "Register the machine first (POST /rest/server-hardware).");
    return NULL;
  }
  struct job *j = calloc(1, sizeof *j);
  if (!j) {
    store_entry_release(h);
    oom(e);
    return NULL;
  }
  j->d = d;
  j->kind = K_CREATE;
  j->hw = json_deep_copy(h->doc);
  j->pname = strdup(str_of(body, "name"));
  util_uuid(j->pid);
  char hw_id[64];
  snprintf(hw_id, sizeof hw_id, "%s", h->id);
  store_entry_release(h);
  char golden[64];
  uint64_t size = 0;
  json_t *task = NULL;
  if (!j->hw || !j->pname) {
    oom(e);
    goto fail;
  }
  if (prepare_plan(j, ods, json_object_get(ods, "osCustomAttributes"), NULL, golden, &size, e) < 0)
    goto fail;
  /* 1: the profile and the machine's link */
  char puri[96];
  snprintf(puri, sizeof puri, "/rest/%s/%s", PROFILE_COLL, j->pid);
  json_t *doc = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:{s:s, s:O, s:n}, s:[], s:s, s:s, s:s, s:n,"
      " s:{s:O}}",
      "type", "ServerProfileV12", "id", j->pid, "uri", puri, "category", PROFILE_COLL, "name",
      j->pname, "description", str_of(body, "description") ?: "", "serverHardwareUri",
      json_object_get(j->hw, "uri"), "osDeploymentSettings", "osDeploymentPlanUri", j->dp_uri,
      "osCustomAttributes", j->attrs_public, "osVolumeUri", "bootConnections", "state", "Creating",
      "status", "Unknown", "statusMessage", "being deployed", "taskUri", "secrets",
      "osCustomAttributes", j->attrs_full);
  if (!doc) {
    oom(e);
    goto fail;
  }
  struct store_txn *t = store_begin(d->c.store);
  if (!t) {
    json_decref(doc);
    oom(e);
    goto fail;
  }
  struct store_entry *hh = store_txn_get(t, HW_COLL, hw_id);
  int rc = -1;
  if (!hh)
    err_set(e, 400, "HARDWARE_NOT_FOUND", "server hardware \"%.300s\" does not exist", hwref);
  else if (hw_available(hh, NULL, e) == 0 && profile_put(t, j->pid, doc, e) == 0)
    rc = hw_link(t, hw_id, puri, e);
  store_entry_release(hh);
  json_decref(doc);
  if (rc < 0) {
    store_rollback(t);
    goto fail;
  }
  if (store_commit(t, e) < 0) goto fail;
  /* 2: the OS volume's document */
  if (begin_volume(j, golden, size, 1, e) < 0) {
    struct err ue;
    err_init(&ue);
    profile_remove(d, j->pid, &ue);
    err_clear(&ue);
    goto fail;
  }
  /* 3: the task */
  char vid[37];
  memcpy(vid, j->vid, sizeof vid);
  char pid[37];
  memcpy(pid, j->pid, sizeof pid);
  task = submit(j, owner, e);
  if (!task) {
    osvol_create_abort(d->c.osvols, vid);
    struct err ue;
    err_init(&ue);
    profile_remove(d, pid, &ue);
    err_clear(&ue);
    return NULL;
  }
  return task;
fail:
  job_free(j);
  return NULL;
}

/* The profile's current volume id (from osVolumeUri) into out. */
static void volume_of(json_t *profile, char out[64]) {
  const char *id = deploy_uri_id(
      str_of(json_object_get(profile, "osDeploymentSettings"), "osVolumeUri"), OSVOL_COLL);
  snprintf(out, 64, "%s", id ? id : "");
}

/* Do two [{"name","value"}] lists hold the same values, in any order? */
static int same_values(json_t *a, json_t *b) {
  if (json_array_size(a) != json_array_size(b)) return 0;
  size_t i, k;
  json_t *x, *y;
  json_array_foreach(a, i, x) {
    int found = 0;
    json_array_foreach(b, k, y) {
      if (is(str_of(x, "name"), str_of(y, "name")))
        found = json_equal(json_object_get(x, "value"), json_object_get(y, "value"));
    }
    if (!found) return 0;
  }
  return 1;
}

static int profile_busy(json_t *doc, const char *what, struct err *e) {
  const char *st = str_of(doc, "state");
  if (is(st, "Normal")) return 0;
  err_set(e, 409, "PROFILE_BUSY", "server profile \"%s\" is %s and cannot be %s now",
          str_of(doc, "name"), st ? st : "busy", what);
  err_action(e, "Wait for its task to finish and try again.");
  return -1;
}

struct claim_arg {
  const char *state, *if_match, *what;
};

/* The profile moved to `state` if it is Normal and If-Match holds. */
static int claim(json_t *doc, void *arg, struct err *e) {
  struct claim_arg *a = arg;
  if (deploy_if_match(doc, a->if_match, e) < 0 || profile_busy(doc, a->what, e) < 0) return -1;
  json_object_set_new(doc, "state", json_string(a->state));
  return 0;
}

static int count_generation(struct deploy_service *d, const char *puri) {
  struct store_entry **v;
  size_t n;
  int g = 1;
  if (store_list(d->c.store, OSVOL_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++)
      if (is(str_of(v[i]->doc, "serverProfileUri"), puri)) g++;
    store_entries_release(v, n);
  }
  return g;
}

/* The profile of job j moves to machine `hw_id` (j->hw, its document), keeping
 * its OS volume, in one transaction: the volume's target admits only the new
 * machine's initiator and CHAP (refused while anyone is still logged in), the
 * profile's boot connections name it, the old machine is freed, the new one
 * linked. A new name or description in the same request is applied too. */
static int profile_move(struct job *j, const char *hw_id, const char *if_match, struct err *e) {
  struct deploy_service *d = j->d;
  struct store_txn *t = store_begin(d->c.store);
  if (!t) return oom(e);
  struct store_entry *cur = store_txn_get(t, PROFILE_COLL, j->pid);
  struct store_entry *hn = store_txn_get(t, HW_COLL, hw_id);
  struct osvol_rebind *undo = NULL;
  json_t *doc = NULL;
  int rc = -1;
  char puri[96], vid[64], old_hw[64];
  snprintf(puri, sizeof puri, "/rest/%s/%s", PROFILE_COLL, j->pid);
  if (!cur || !hn) {
    err_set(e, 409, cur ? "HARDWARE_NOT_FOUND" : "RESOURCE_NOT_FOUND",
            cur ? "server hardware %s no longer exists" : "server profile %s no longer exists",
            cur ? hw_id : j->pid);
    goto out;
  }
  if (deploy_if_match(cur->doc, if_match, e) < 0 || profile_busy(cur->doc, "moved", e) < 0)
    goto out;
  if (hw_available(hn, puri, e) < 0) goto out;
  const char *init = str_of(hn->doc, "initiatorName"), *cname = str_of(hn->doc, "chapName");
  const char *csecret = str_of(json_object_get(hn->doc, "secrets"), "chapSecret");
  if (!init || !cname || !csecret) {
    err_set(e, 409, "HARDWARE_INCOMPLETE",
            "server hardware \"%s\" has no initiator name or CHAP credentials", hn->name);
    goto out;
  }
  doc = json_deep_copy(cur->doc);
  if (!doc) {
    oom(e);
    goto out;
  }
  const char *name = j->new_name ? j->new_name : j->pname;
  snprintf(old_hw, sizeof old_hw, "%s", hw_id_of(cur->doc) ?: "");
  volume_of(cur->doc, vid);
  json_t *conns = json_object_get(doc, "bootConnections");
  const char *target = str_of(json_array_get(conns, 0), "targetName");
  if (vid[0] && osvol_rebind(d->c.osvols, t, vid, init, cname, csecret, name, puri, &undo, e) < 0)
    goto out;
  if (target) json_object_set_new(doc, "bootConnections", boot_connections(d, target, hn->doc));
  json_object_set_new(doc, "serverHardwareUri", json_string(str_of(hn->doc, "uri")));
  if (j->new_name) json_object_set_new(doc, "name", json_string(j->new_name));
  if (j->new_desc) json_object_set_new(doc, "description", json_string(j->new_desc));
  if (profile_put(t, j->pid, doc, e) < 0) goto out;
  struct store_entry *ho = old_hw[0] ? store_txn_get(t, HW_COLL, old_hw) : NULL;
  int mine = ho && is(str_of(ho->doc, "serverProfileUri"), puri);
  store_entry_release(ho);
  if ((mine && hw_link(t, old_hw, NULL, e) < 0) || hw_link(t, hw_id, puri, e) < 0) goto out;
  rc = 0;
out:
  store_entry_release(cur);
  store_entry_release(hn);
  json_decref(doc);
  if (rc < 0) {
    osvol_rebind_undo(undo);
    store_rollback(t);
  } else if (store_commit(t, e) < 0) {
    osvol_rebind_undo(undo);
    rc = -1;
  }
  osvol_rebind_free(undo);
  if (rc == 0)
    log_info("deploy", "server profile \"%s\" (%s) moved to server hardware \"%s\" (%s)",
             j->new_name ? j->new_name : j->pname, j->pid, str_of(j->hw, "name"), hw_id);
  return rc;
}

json_t *profile_update(struct deploy_service *d, const char *id, json_t *body, const char *if_match,
                       const char *owner, struct err *e) {
  if (check_body(body, e) < 0) return NULL;
  struct store_entry *p = store_get(d->c.store, PROFILE_COLL, id);
  if (!p) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "server profile \"%.100s\" does not exist", id);
    return NULL;
  }
  struct job *j = calloc(1, sizeof *j);
  json_t *task = NULL;
  if (!j) {
    store_entry_release(p);
    oom(e);
    return NULL;
  }
  j->d = d;
  memcpy(j->pid, p->id, sizeof j->pid);
  j->pname = strdup(p->name ? p->name : p->id);
  json_t *name = json_object_get(body, "name");
  if (name && !json_is_null(name) && !json_equal(name, json_object_get(p->doc, "name"))) {
    if (artifact_check_name("server profile", name, e) < 0) goto fail;
    j->new_name = strdup(json_string_value(name));
  }
  const char *desc = str_of(body, "description");
  if (desc && !is(desc, str_of(p->doc, "description"))) j->new_desc = strdup(desc);
  if (deploy_if_match(p->doc, if_match, e) < 0 || profile_busy(p->doc, "changed", e) < 0) goto fail;
  const char *hwref = hw_ref_of(body);
  struct store_entry *h = hwref && *hwref ? hw_lookup(d->c.store, hwref) : NULL;
  if (hwref && *hwref && !h) {
    err_set(e, 400, "HARDWARE_NOT_FOUND", "server hardware \"%.300s\" does not exist", hwref);
    goto fail;
  }
  char move_to[64] = "";
  if (h && !is(h->id, hw_id_of(p->doc))) snprintf(move_to, sizeof move_to, "%s", h->id);
  if (!move_to[0]) {
    store_entry_release(h);
    h = store_get(d->c.store, HW_COLL, hw_id_of(p->doc) ?: "");
  }
  if (!h) {
    err_set(e, 409, "HARDWARE_NOT_FOUND", "server profile \"%s\": its machine no longer exists",
            p->name);
    goto fail;
  }
  j->hw = json_deep_copy(h->doc);
  store_entry_release(h);
  json_t *ods_old = json_object_get(p->doc, "osDeploymentSettings");
  json_t *ods = json_object_get(body, "osDeploymentSettings");
  json_t *given = json_object_get(ods, "osCustomAttributes");
  json_t *carried = json_object_get(json_object_get(p->doc, "secrets"), "osCustomAttributes");
  json_t *merged_ods = json_deep_copy(ods_old);
  if (json_is_object(ods)) {
    const char *dpref = str_of(ods, "osDeploymentPlanUri");
    if (!dpref) dpref = str_of(ods, "osDeploymentPlanURI");
    if (dpref && *dpref) json_object_set_new(merged_ods, "osDeploymentPlanUri", json_string(dpref));
  }
  char golden[64];
  uint64_t size = 0;
  int rc =
      prepare_plan(j, merged_ods, json_is_null(given) ? NULL : given, carried, golden, &size, e);
  json_decref(merged_ods);
  if (rc < 0) goto fail;
  int redeploy = !is(j->dp_uri, str_of(ods_old, "osDeploymentPlanUri")) ||
                 !same_values(j->attrs_full, carried);
  volume_of(p->doc, j->old_vid);
  if (move_to[0] && redeploy) {
    err_set(e, 400, "PROFILE_MOVE_WITH_REDEPLOY",
            "server profile \"%s\": a move to another machine cannot also change the "
            "deployment plan or its attribute values",
            p->name);
    err_action(e, "Move the profile first (serverHardwareUri alone), then change its deployment "
                  "in a second request.");
    goto fail;
  }
  if (move_to[0]) {
    j->kind = K_UPDATE;
    if (profile_move(j, move_to, if_match, e) < 0) goto fail;
    j->moved = 1;
    store_entry_release(p);
    return submit(j, owner, e);
  }
  if (!redeploy) {
    /* name and description only */
    j->kind = K_UPDATE;
    if (j->new_name || j->new_desc) {
      struct store_txn *t = store_begin(d->c.store);
      struct store_entry *cur = t ? store_txn_get(t, PROFILE_COLL, id) : NULL;
      json_t *doc = cur ? json_deep_copy(cur->doc) : NULL;
      int urc = -1;
      if (!doc) {
        oom(e);
      } else if (deploy_if_match(doc, if_match, e) == 0 && profile_busy(doc, "changed", e) == 0) {
        if (j->new_name) json_object_set_new(doc, "name", json_string(j->new_name));
        if (j->new_desc) json_object_set_new(doc, "description", json_string(j->new_desc));
        urc = profile_put(t, id, doc, e);
        if (urc == 0 && j->new_name)
          urc = osvol_set_owner(t, j->old_vid, j->new_name, str_of(j->hw, "initiatorName"),
                                str_of(doc, "uri"), e);
      }
      json_decref(doc);
      store_entry_release(cur);
      if (urc < 0) {
        if (t) store_rollback(t);
        goto fail;
      }
      if (store_commit(t, e) < 0) goto fail;
    }
    store_entry_release(p);
    task = submit(j, owner, e);
    return task;
  }
  j->kind = K_REDEPLOY;
  struct claim_arg ca = {.state = "Updating", .if_match = if_match, .what = "redeployed"};
  if (profile_edit(d, id, claim, &ca, e) < 0) goto fail;
  char puri[96];
  snprintf(puri, sizeof puri, "/rest/%s/%s", PROFILE_COLL, id);
  if (begin_volume(j, golden, size, count_generation(d, puri), e) < 0) {
    struct state_arg a = {.state = "Normal"};
    set_state_quiet(d, id, &a);
    goto fail;
  }
  store_entry_release(p);
  p = NULL;
  char vid[37];
  memcpy(vid, j->vid, sizeof vid);
  task = submit(j, owner, e);
  if (!task) {
    osvol_create_abort(d->c.osvols, vid);
    struct state_arg a = {.state = "Normal"};
    set_state_quiet(d, id, &a);
  }
  return task;
fail:
  store_entry_release(p);
  job_free(j);
  return NULL;
}

json_t *profile_delete(struct deploy_service *d, const char *id, const char *if_match,
                       const char *owner, struct err *e) {
  struct store_entry *p = store_get(d->c.store, PROFILE_COLL, id);
  if (!p) {
    err_set(e, 404, "RESOURCE_NOT_FOUND", "server profile \"%.100s\" does not exist", id);
    return NULL;
  }
  struct job *j = calloc(1, sizeof *j);
  if (!j) {
    store_entry_release(p);
    oom(e);
    return NULL;
  }
  j->d = d;
  j->kind = K_DELETE;
  memcpy(j->pid, p->id, sizeof j->pid);
  j->pname = strdup(p->name ? p->name : p->id);
  volume_of(p->doc, j->old_vid);
  store_entry_release(p);
  struct claim_arg ca = {.state = "Deleting", .if_match = if_match, .what = "deleted"};
  if (!j->pname || profile_edit(d, id, claim, &ca, e) < 0) {
    if (!j->pname) oom(e);
    job_free(j);
    return NULL;
  }
  json_t *task = submit(j, owner, e);
  if (!task) {
    struct state_arg a = {.state = "Normal"};
    set_state_quiet(d, id, &a);
  }
  return task;
}

json_t *deploy_group(void) {
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:s}", "type", "DeploymentGroup",
                   "category", "deployment-groups", "id", DEPLOY_GROUP_ID, "uri",
                   "/rest/deployment-groups/" DEPLOY_GROUP_ID, "name", "default", "description",
                   "the deployment group of this Streamer server", "state", "Active",
                   "managementNetworkname", "", "managementNetworkuri", "status", "OK");
}

/* ---- open: recovery ------------------------------------------------------------------ */
/* The dependentArtifacts of profile p's volume vid, from p and its machine (logged on failure). */
static void owner_fill(struct deploy_service *d, struct store_entry *p, const char *vid) {
  struct err e;
  err_init(&e);
  struct store_entry *h = store_get(d->c.store, HW_COLL, hw_id_of(p->doc) ?: "");
  struct store_txn *t = h ? store_begin(d->c.store) : NULL;
  if (t && osvol_set_owner(t, vid, p->name, str_of(h->doc, "initiatorName"), str_of(p->doc, "uri"),
                           &e) == 0)
    store_commit(t, &e); /* frees t either way */
  else if (t)
    store_rollback(t);
  if (e.message[0]) log_warn("deploy", "OS volume %s: cannot record its owner: %s", vid, e.message);
  err_clear(&e);
  store_entry_release(h);
}

static void recover(struct deploy_service *d) {
  struct store_entry **v;
  size_t n;
  struct err e;
  err_init(&e);
  if (store_list(d->c.store, PROFILE_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *st = str_of(v[i]->doc, "state");
      if (is(st, "Creating")) {
        log_warn("deploy",
                 "server profile \"%s\" (%s) was being deployed when streamerd "
                 "stopped: removed",
                 v[i]->name, v[i]->id);
        if (profile_remove(d, v[i]->id, &e) < 0)
          log_error("deploy", "server profile %s: %s", v[i]->id, e.message);
      } else if (is(st, "Updating")) {
        log_warn("deploy",
                 "server profile \"%s\" (%s) was being redeployed when streamerd "
                 "stopped: back to its deployed OS volume",
                 v[i]->name, v[i]->id);
        struct state_arg a = {.state = "Normal"};
        set_state_quiet(d, v[i]->id, &a);
      } else if (is(st, "Deleting")) {
        char vid[64];
        volume_of(v[i]->doc, vid);
        log_warn("deploy",
                 "server profile \"%s\" (%s) was being deleted when streamerd "
                 "stopped: deleting it",
                 v[i]->name, v[i]->id);
        if (volume_delete(d, vid, NULL, &e) < 0 || profile_remove(d, v[i]->id, &e) < 0)
          log_error("deploy", "server profile %s: cannot finish its deletion: %s", v[i]->id,
                    e.message);
      }
      err_clear(&e);
    }
    store_entries_release(v, n);
  }
  /* OS volumes no profile points to; a profile's volume made before volumes named their
   * owner gets its dependentArtifacts */
  if (store_list(d->c.store, OSVOL_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *sp = str_of(v[i]->doc, "serverProfileUri");
      if (!sp) continue;
      const char *pid = deploy_uri_id(sp, PROFILE_COLL);
      struct store_entry *p = pid ? store_get(d->c.store, PROFILE_COLL, pid) : NULL;
      char vid[64];
      if (p) volume_of(p->doc, vid);
      int orphan = !p || !is(vid, v[i]->id);
      if (!orphan && json_array_size(json_object_get(v[i]->doc, "dependentArtifacts")) == 0)
        owner_fill(d, p, v[i]->id);
      store_entry_release(p);
      if (!orphan) continue;
      log_warn("deploy",
               "OS volume \"%s\" (%s) belongs to no deployment of %s any more: "
               "deleting it",
               v[i]->name, v[i]->id, sp);
      if (volume_delete(d, v[i]->id, NULL, &e) < 0)
        log_error("deploy", "OS volume %s: %s", v[i]->id, e.message);
      err_clear(&e);
    }
    store_entries_release(v, n);
  }
  /* machines linked to a profile that does not exist */
  if (store_list(d->c.store, HW_COLL, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *sp = str_of(v[i]->doc, "serverProfileUri");
      const char *pid = sp ? deploy_uri_id(sp, PROFILE_COLL) : NULL;
      struct store_entry *p = pid ? store_get(d->c.store, PROFILE_COLL, pid) : NULL;
      if (sp && !p) {
        struct store_txn *t = store_begin(d->c.store);
        if (t && hw_link(t, v[i]->id, NULL, &e) == 0)
          store_commit(t, &e);
        else if (t)
          store_rollback(t);
        err_clear(&e);
      }
      store_entry_release(p);
    }
    store_entries_release(v, n);
  }
  /* work directories of interrupted build plans */
  DIR *dir = opendir(d->workdir);
  struct dirent *de;
  while (dir && (de = readdir(dir))) {
    size_t len = strlen(de->d_name);
    if (len <= 4 || strcmp(de->d_name + len - 4, ".tmp") != 0) continue;
    char *base = util_strdup_printf("%s/%.*s", d->workdir, (int)(len - 4), de->d_name);
    if (base && sandbox_cleanup(base, &e) < 0) log_warn("deploy", "%s", e.message);
    err_clear(&e);
    free(base);
  }
  if (dir) closedir(dir);
}

struct deploy_service *deploy_service_open(const struct deploy_config *c, struct err *e) {
  struct deploy_service *d = calloc(1, sizeof *d);
  if (!d) {
    oom(e);
    return NULL;
  }
  d->c = *c;
  d->advertise = calloc(c->nadvertise + 1, sizeof *d->advertise);
  d->workdir = util_strdup_printf("%s/deploy", vol_store_dir(c->volumes));
  if (!d->advertise || !d->workdir) {
    deploy_service_close(d);
    oom(e);
    return NULL;
  }
  for (size_t i = 0; i < c->nadvertise; i++)
    d->advertise[i] = strdup(c->advertise[i]);
  d->c.advertise = (const char *const *)d->advertise;
  store_set_render(c->store, PROFILE_COLL, render_profile);
  hw_register(c->store);
  if (c->faults)
    log_warn("deploy", "fault injection is enabled (--fault-injection): for tests only");
  recover(d);
  return d;
}

void deploy_service_close(struct deploy_service *d) {
  if (!d) return;
  for (size_t i = 0; d->advertise && i < d->c.nadvertise; i++)
    free(d->advertise[i]);
  free(d->advertise);
  free(d->workdir);
  free(d);
}
