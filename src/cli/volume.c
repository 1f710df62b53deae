/* volume.c — `streamer volume ...`: OS volumes over /rest/os-volumes: list,
 * show, create (waits for the task, then prints how to reach the iSCSI
 * target, and generated CHAP credentials once), update, delete (a task),
 * credentials (GET .../iscsi-credentials, Infrastructure administrator), and
 * read-only browsing of a volume's files: ls (GET .../devices, .../files)
 * and cat (GET .../files/content). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct coll_info COLL_OS_VOLUMES = {"os-volumes", "OS volume", "name"};

static const char VOL_HELP[] =
    "usage: streamer volume SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]       list OS volumes\n"
    "  show REF                           show one OS volume and its iSCSI target\n"
    "  create --name N --initiator IQN [--initiator IQN]... [--size SIZE]\n"
    "         [--golden-image REF] [--chap] [--mutual-chap] [--description D] [--no-wait]\n"
    "                                     create an OS volume (empty, or a clone of a golden\n"
    "                                     image) and export it over iSCSI\n"
    "  update REF [--name N] [--description D] [--initiator IQN]... [--chap | --no-chap]\n"
    "  delete REF [--no-wait]             drop its iSCSI sessions and delete it\n"
    "  credentials REF                    print its CHAP name and secret\n"
    "  ls REF [DEVICE[:PATH] | DEVICE PATH]  list its filesystems, or a directory\n"
    "  cat REF DEVICE:PATH | DEVICE PATH  write a file's bytes to standard output\n"
    "\n"
    "REF is an id, a uri (/rest/os-volumes/ID) or an exact name.\n";
static const char LIST_USAGE[] = "usage: streamer volume list [--filter F] [--sort S]\n"
                                 "\n"
                                 "  --filter F   server-side filter, e.g. \"status='Critical'\"\n"
                                 "  --sort S     e.g. name:desc (default name:asc)\n";
static const char SHOW_USAGE[] = "usage: streamer volume show REF\n";
static const char CREATE_USAGE[] =
    "usage: streamer volume create --name N --initiator IQN [--initiator IQN]... [--size SIZE]\n"
    "                              [--golden-image REF] [--chap] [--mutual-chap]\n"
    "                              [--chap-secret-file F] [--mutual-chap-secret-file F]\n"
    "                              [--allow-any-initiator] [--description D] [--no-wait]\n"
    "\n"
    "Create an OS volume and export it as an iSCSI target that only the given initiators\n"
    "may log in to. SIZE is bytes or a number with K, M, G or T (powers of 1024), e.g. 10G;\n"
    "an empty volume needs one, a clone of --golden-image defaults to the image's size and\n"
    "may be larger. --chap turns on CHAP with a generated secret (or the first line of\n"
    "--chap-secret-file); a generated secret is printed once, 'streamer volume credentials'\n"
    "shows it again. --allow-any-initiator with --initiator '*' lets any initiator log in\n"
    "(test setups only). Waits for the creation task unless --no-wait.\n";
static const char UPDATE_USAGE[] =
    "usage: streamer volume update REF [--name N] [--description D] [--initiator IQN]...\n"
    "                              [--allow-any-initiator] [--chap | --no-chap]\n"
    "\n"
    "--initiator replaces the list of initiators allowed to log in; live sessions stay.\n";
static const char DELETE_USAGE[] =
    "usage: streamer volume delete REF [--no-wait]\n"
    "\n"
    "Delete the OS volume: its iSCSI sessions are ended, then the volume and its document\n"
    "are removed. Waits for the delete task unless --no-wait.\n";
static const char CRED_USAGE[] =
    "usage: streamer volume credentials REF\n"
    "\n"
    "Print the CHAP name and secret an initiator needs to log in to the volume's target\n"
    "(and the mutual CHAP ones). Needs the Infrastructure administrator role.\n";

static const char LS_USAGE[] =
    "usage: streamer volume ls REF [DEVICE[:PATH] | DEVICE PATH]\n"
    "\n"
    "Read the OS volume without changing it (a snapshot; the volume keeps serving).\n"
    "Without DEVICE: its filesystems (device, type, size, label, UUID). With DEVICE\n"
    "(/dev/sda1, /dev/VG/LV): the directory PATH of that filesystem (default /), one\n"
    "entry per line: type, mode, owner, size, modification time, name (-> link target).\n"
    "Examples: streamer volume ls web01 /dev/sda1:/EFI/BOOT\n"
    "          streamer volume ls web01 /dev/rhel/root /etc\n";
static const char CAT_USAGE[] =
    "usage: streamer volume cat REF DEVICE:PATH | DEVICE PATH\n"
    "\n"
    "Write the file PATH of the filesystem on DEVICE to standard output, byte for byte,\n"
    "read from a snapshot of the OS volume (which keeps serving). Needs the Deployment\n"
    "or Infrastructure administrator role: deployed files hold secrets.\n"
    "Example: streamer volume cat web01 /dev/sda1:/EFI/BOOT/message.txt\n";

static int vol_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "os-volumes", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  json_t *golden CLEANUP_JSON = res_name_map(c, "golden-images");
  static const char *const hdr[] = {"NAME", "SIZE", "GOLDEN IMAGE", "STATUS", "TARGET", "ID"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char size[32];
    out_human_size(json_object_get(m, "size"), size, sizeof size);
    const char *guri = jstr(m, "goldenVolumeUri");
    const char *gname = *guri ? jstr(golden, guri) : "(empty)";
    const char *status = jstr(m, "state");
    if (strcmp(status, "OK") == 0) status = jstr(m, "status");
    const char *row[] = {jstr(m, "name"),
                         size,
                         *gname ? gname : guri,
                         status,
                         jstr(json_object_get(m, "iscsi"), "targetName"),
                         res_id(m)};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

/* The lines that tell how to reach the target. */
static void print_target(json_t *vol, const char *indent) {
  json_t *iscsi = json_object_get(vol, "iscsi");
  char *portals = out_joined(json_object_get(iscsi, "portals"), ", ");
  char *inits = out_joined(json_object_get(iscsi, "initiatorNames"), ", ");
  printf("%starget:      %s\n", indent, jstr(iscsi, "targetName"));
  printf("%sportals:     %s\n", indent, portals && *portals ? portals : "(iSCSI disabled)");
  printf("%sLUN:         %lld\n", indent,
         (long long)json_integer_value(json_object_get(iscsi, "lun")));
  printf("%sinitiators:  %s\n", indent, inits ? inits : "");
  if (json_is_true(json_object_get(iscsi, "chap")))
    printf("%sCHAP:        on, name %s%s\n", indent, jstr(iscsi, "chapName"),
           json_is_true(json_object_get(iscsi, "mutualChap")) ? ", mutual" : "");
  else
    printf("%sCHAP:        off\n", indent);
  free(portals);
  free(inits);
}

static void vol_print(struct cli *c, json_t *vol) {
  static const char *const order[] = {"name",    "id",       "uri",           "description",
                                      "state",   "status",   "statusMessage", "oeVolumeIQN",
                                      "created", "modified", "eTag",          NULL};
  struct kv *k = kv_new();
  kv_fields(k, vol, order);
  char size[32], alloc[32];
  out_human_size(json_object_get(vol, "size"), size, sizeof size);
  out_human_size(json_object_get(vol, "allocatedBytes"), alloc, sizeof alloc);
  CLEANUP_FREE char *sz = util_strdup_printf(
      "%s (%lld bytes)", size, (long long)json_integer_value(json_object_get(vol, "size")));
  kv_add(k, "size", sz);
  kv_add(k, "allocated", alloc);
  const char *guri = jstr(vol, "goldenVolumeUri");
  json_t *gi CLEANUP_JSON = NULL;
  if (*guri) {
    long status = 0;
    if (http_do(c, "GET", guri, NULL, NULL, 1, &status, &gi, NULL) != CLI_OK || status != 200) {
      json_decref(gi);
      gi = NULL;
    }
  }
  char *g =
      *guri ? util_strdup_printf("%s (%s)", gi ? jstr(gi, "name") : "?", guri) : strdup("(empty)");
  kv_add(k, "golden image", g);
  free(g);
  kv_print(k, stdout);
  kv_free(k);
  printf("\niSCSI:\n");
  print_target(vol, "  ");
}

static int vol_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *vol CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol);
  if (rc) return rc;
  if (c->json)
    out_json(vol);
  else
    vol_print(c, vol);
  return CLI_OK;
}

/* --initiator values (repeatable) as a JSON array; NULL when none. */
static json_t *initiators_of(const struct args *a) {
  json_t *arr = NULL;
  for (int i = 0; i < a->nopt; i++) {
    if (strcmp(a->opt[i].name, "initiator") != 0) continue;
    if (!arr) arr = json_array();
    json_array_append_new(arr, json_string(a->opt[i].value));
  }
  return arr;
}

/* The first line of a secret file into body[key]; 0 or a usage error. */
static int secret_from_file(json_t *body, const char *key, const char *file, const char *usage) {
  if (!file) return CLI_OK;
  int rc = CLI_OK;
  char *s = cli_read_secret(file, NULL, usage, &rc);
  if (!s) return rc;
  json_object_set_new(body, key, json_string(s));
  cli_wipe(s);
  free(s);
  return CLI_OK;
}

static int vol_create(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"name", 1},
                                         {"size", 1},
                                         {"initiator", 1},
                                         {"golden-image", 1},
                                         {"description", 1},
                                         {"chap", 0},
                                         {"mutual-chap", 0},
                                         {"chap-secret-file", 1},
                                         {"mutual-chap-secret-file", 1},
                                         {"allow-any-initiator", 0},
                                         {"no-wait", 0},
                                         {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 0, CREATE_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name"), *size = args_get(&a, "size");
  const char *golden = args_get(&a, "golden-image"), *desc = args_get(&a, "description");
  if (!name || !*name) return cli_usage_error(CREATE_USAGE, "--name is required");
  json_t *inits CLEANUP_JSON = initiators_of(&a);
  if (!inits)
    return cli_usage_error(CREATE_USAGE,
                           "--initiator is required: the iSCSI initiator name (IQN) of the "
                           "server that will use the volume");
  if (!size && !golden)
    return cli_usage_error(CREATE_USAGE, "an empty volume needs --size (or give --golden-image)");
  json_t *body CLEANUP_JSON = json_pack("{s:s, s:O}", "name", name, "initiatorNames", inits);
  if (size) json_object_set_new(body, "size", json_string(size));
  if (desc) json_object_set_new(body, "description", json_string(desc));
  if (args_has(&a, "allow-any-initiator"))
    json_object_set_new(body, "allowAnyInitiator", json_true());
  int chap = args_has(&a, "chap") || args_has(&a, "chap-secret-file");
  int mutual = args_has(&a, "mutual-chap") || args_has(&a, "mutual-chap-secret-file");
  if (chap || mutual) json_object_set_new(body, "chap", json_true());
  if (mutual) json_object_set_new(body, "mutualChap", json_true());
  if ((rc = secret_from_file(body, "chapSecret", args_get(&a, "chap-secret-file"), CREATE_USAGE)) ||
      (rc = secret_from_file(body, "mutualChapSecret", args_get(&a, "mutual-chap-secret-file"),
                             CREATE_USAGE)))
    return rc;
  int generated = (chap || mutual) && (!args_has(&a, "chap-secret-file") ||
                                       (mutual && !args_has(&a, "mutual-chap-secret-file")));
  if (golden) {
    json_t *gi CLEANUP_JSON = NULL;
    rc = ref_get(c, &COLL_GOLDEN_IMAGES, golden, &gi);
    if (rc) return rc;
    json_object_set_new(body, "goldenImageUri", json_string(jstr(gi, "uri")));
  }
  json_t *task CLEANUP_JSON = NULL;
  rc = api_call(c, "POST", "/rest/os-volumes", body, NULL, &task);
  json_t *cs = json_object_get(body, "chapSecret"), *ms = json_object_get(body, "mutualChapSecret");
  if (cs) cli_wipe((char *)json_string_value(cs));
  if (ms) cli_wipe((char *)json_string_value(ms));
  if (rc) return rc;
  if (args_has(&a, "no-wait")) {
    if (c->json)
      out_json(task);
    else
      printf("Creating OS volume \"%s\" in task %s (streamer task wait %s).\n", name,
             jstr(task, "uri"), res_id(task));
    return CLI_OK;
  }
  rc = task_follow(c, &task);
  if (rc) return rc;
  const char *uri = jstr(json_object_get(task, "associatedResource"), "resourceUri");
  json_t *vol CLEANUP_JSON = NULL;
  if (!*uri) {
    fprintf(stderr, "error: the creation task names no OS volume\n");
    return CLI_ESERVER;
  }
  rc = api_call(c, "GET", uri, NULL, NULL, &vol);
  if (rc) return rc;
  /* Generated CHAP secrets are shown once, now (Infrastructure administrators). */
  json_t *cred CLEANUP_JSON = NULL;
  long status = 0;
  if (generated) {
    CLEANUP_FREE char *cp = util_strdup_printf("%s/iscsi-credentials", uri);
    if (http_do(c, "GET", cp, NULL, NULL, 1, &status, &cred, NULL) != CLI_OK || status != 200) {
      json_decref(cred);
      cred = NULL;
    }
  }
  if (c->json) {
    if (cred) json_object_set(vol, "credentials", cred);
    out_json(vol);
  } else {
    char sz[32];
    out_human_size(json_object_get(vol, "size"), sz, sizeof sz);
    printf("Created OS volume \"%s\" (id %s): %s%s.\n", jstr(vol, "name"), res_id(vol), sz,
           *jstr(vol, "goldenVolumeUri") ? ", a clone of the golden image" : ", empty");
    print_target(vol, "  ");
    if (cred) {
      printf("  CHAP name:   %s\n  CHAP secret: %s\n", jstr(cred, "chapName"),
             jstr(cred, "chapSecret"));
      if (*jstr(cred, "mutualChapSecret"))
        printf("  mutual CHAP name:   %s\n  mutual CHAP secret: %s\n", jstr(cred, "mutualChapName"),
               jstr(cred, "mutualChapSecret"));
      printf("  (shown once; 'streamer volume credentials %s' shows them again)\n", res_id(vol));
    } else if (generated) {
      fprintf(stderr,
              "note: the generated CHAP secret can be read by an Infrastructure "
              "administrator: streamer volume credentials %s\n",
              res_id(vol));
    }
  }
  if (cred) {
    json_t *s = json_object_get(cred, "chapSecret"), *m = json_object_get(cred, "mutualChapSecret");
    if (s) cli_wipe((char *)json_string_value(s));
    if (m) cli_wipe((char *)json_string_value(m));
  }
  return CLI_OK;
}

static int vol_update(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"name", 1}, {"description", 1}, {"initiator", 1}, {"allow-any-initiator", 0},
      {"chap", 0}, {"no-chap", 0},     {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name"), *desc = args_get(&a, "description");
  json_t *inits CLEANUP_JSON = initiators_of(&a);
  if (args_has(&a, "chap") && args_has(&a, "no-chap"))
    return cli_usage_error(UPDATE_USAGE, "--chap and --no-chap contradict each other");
  if (!name && !desc && !inits && !args_has(&a, "chap") && !args_has(&a, "no-chap"))
    return cli_usage_error(UPDATE_USAGE,
                           "nothing to update: give --name, --description, --initiator or "
                           "--chap / --no-chap");
  if (name && !*name) return cli_usage_error(UPDATE_USAGE, "--name cannot be empty");
  json_t *vol CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol);
  if (rc) return rc;
  json_t *body CLEANUP_JSON = json_object();
  if (name) json_object_set_new(body, "name", json_string(name));
  if (desc) json_object_set_new(body, "description", json_string(desc));
  if (inits) json_object_set(body, "initiatorNames", inits);
  if (args_has(&a, "allow-any-initiator"))
    json_object_set_new(body, "allowAnyInitiator", json_true());
  if (args_has(&a, "chap")) json_object_set_new(body, "chap", json_true());
  if (args_has(&a, "no-chap")) json_object_set_new(body, "chap", json_false());
  json_t *res CLEANUP_JSON = NULL;
  if ((rc = res_update(c, vol, body, &res))) return rc;
  res_done(c, "Updated", &COLL_OS_VOLUMES, res);
  return CLI_OK;
}

static int vol_delete(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  json_t *vol CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol);
  if (rc) return rc;
  json_t *task CLEANUP_JSON = NULL;
  rc = api_call(c, "DELETE", jstr(vol, "uri"), NULL, NULL, &task);
  if (rc) return rc;
  int wait = !args_has(&a, "no-wait");
  if (json_is_object(task) && *jstr(task, "uri") && wait) {
    rc = task_follow(c, &task);
    if (rc) return rc;
  }
  if (c->json) {
    json_t *o CLEANUP_JSON = json_pack("{s:s, s:s, s:b, s:O?}", "uri", jstr(vol, "uri"), "name",
                                       jstr(vol, "name"), "deleted", wait, "task", task);
    out_json(o);
  } else if (!wait) {
    printf("Deleting OS volume \"%s\" in task %s.\n", jstr(vol, "name"), jstr(task, "uri"));
  } else {
    printf("Deleted OS volume \"%s\".\n", jstr(vol, "name"));
  }
  return CLI_OK;
}

static int vol_credentials(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, CRED_USAGE);
  if (rc || a.help) return rc;
  json_t *vol CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol);
  if (rc) return rc;
  CLEANUP_FREE char *path = util_strdup_printf("%s/iscsi-credentials", jstr(vol, "uri"));
  json_t *cred CLEANUP_JSON = NULL;
  rc = api_call(c, "GET", path, NULL, NULL, &cred);
  if (rc) return rc;
  if (c->json) {
    out_json(cred);
  } else {
    printf("target:      %s\n", jstr(json_object_get(vol, "iscsi"), "targetName"));
    printf("chapName:    %s\nchapSecret:  %s\n", jstr(cred, "chapName"), jstr(cred, "chapSecret"));
    if (*jstr(cred, "mutualChapSecret"))
      printf("mutualChapName:    %s\nmutualChapSecret:  %s\n", jstr(cred, "mutualChapName"),
             jstr(cred, "mutualChapSecret"));
  }
  json_t *s = json_object_get(cred, "chapSecret"), *m = json_object_get(cred, "mutualChapSecret");
  if (s) cli_wipe((char *)json_string_value(s));
  if (m) cli_wipe((char *)json_string_value(m));
  return CLI_OK;
}

/* ---- browsing --------------------------------------------------------------------- */
/* DEVICE and PATH from "DEVICE:PATH", "DEVICE" or "DEVICE" "PATH" (malloc'd;
 * *path NULL when not given). A usage error when DEVICE is not a /dev/ name. */
static int device_path(const struct args *a, const char *usage, char **device, char **path) {
  *device = *path = NULL;
  const char *w = a->pos[1];
  if (strncmp(w, "/dev/", 5) != 0)
    return cli_usage_error(usage,
                           "\"%s\": name the filesystem's device first, e.g. /dev/sda1:/etc "
                           "('streamer volume ls REF' lists them)",
                           w);
  const char *colon = strchr(w, ':');
  if (colon && a->npos > 2)
    return cli_usage_error(usage, "give DEVICE:PATH or DEVICE PATH, not both");
  *device = util_strdup_printf("%.*s", colon ? (int)(colon - w) : (int)strlen(w), w);
  if (colon && colon[1])
    *path = util_strdup_printf("%s", colon + 1);
  else if (a->npos > 2)
    *path = util_strdup_printf("%s", a->pos[2]);
  return CLI_OK;
}

/* "/rest/os-volumes/ID/<what>?device=D&path=P" (malloc'd). */
static char *browse_path(json_t *vol, const char *what, const char *device, const char *path) {
  CLEANUP_FREE char *d = http_escape(device);
  CLEANUP_FREE char *p = http_escape(path ? path : "/");
  return util_strdup_printf("%s/%s?device=%s&path=%s", jstr(vol, "uri"), what, d ? d : "",
                            p ? p : "");
}

static int ls_devices(struct cli *c, json_t *vol) {
  CLEANUP_FREE char *path = util_strdup_printf("%s/devices", jstr(vol, "uri"));
  json_t *res CLEANUP_JSON = NULL;
  int rc = api_call(c, "GET", path, NULL, NULL, &res);
  if (rc) return rc;
  if (c->json) {
    out_json(res);
    return CLI_OK;
  }
  static const char *const hdr[] = {"DEVICE", "TYPE", "SIZE", "LABEL", "UUID"};
  struct table *t = table_new(5, hdr);
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(res, "devices"), i, d) {
    char size[32];
    out_human_size(json_object_get(d, "size"), size, sizeof size);
    const char *row[] = {jstr(d, "device"), jstr(d, "type"), size, jstr(d, "label"),
                         jstr(d, "uuid")};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  json_array_foreach(json_object_get(res, "warnings"), i, d) {
    fprintf(stderr, "warning: %s\n", json_string_value(d) ?: "");
  }
  return CLI_OK;
}

static int vol_ls(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 3, LS_USAGE);
  if (rc || a.help) return rc;
  json_t *vol CLEANUP_JSON = NULL;
  CLEANUP_FREE char *device = NULL;
  CLEANUP_FREE char *path = NULL;
  if (a.npos > 1 && (rc = device_path(&a, LS_USAGE, &device, &path))) return rc;
  if ((rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol))) return rc;
  if (!device) return ls_devices(c, vol);
  CLEANUP_FREE char *url = browse_path(vol, "files", device, path);
  json_t *res CLEANUP_JSON = NULL;
  if ((rc = api_call(c, "GET", url, NULL, NULL, &res))) return rc;
  if (c->json) {
    out_json(res);
    return CLI_OK;
  }
  static const char *const hdr[] = {"TYPE", "MODE", "OWNER", "SIZE", "MODIFIED", "NAME"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(res, "members"), i, m) {
    CLEANUP_FREE char *owner =
        util_strdup_printf("%lld:%lld", (long long)json_integer_value(json_object_get(m, "uid")),
                           (long long)json_integer_value(json_object_get(m, "gid")));
    CLEANUP_FREE char *size = out_text(json_object_get(m, "size"));
    CLEANUP_FREE char *when = out_time(jstr(m, "modified"));
    CLEANUP_FREE char *name =
        *jstr(m, "target") ? util_strdup_printf("%s -> %s", jstr(m, "name"), jstr(m, "target"))
                           : strdup(jstr(m, "name"));
    const char *row[] = {jstr(m, "type"), jstr(m, "mode"), owner, size, when, name};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  if (json_is_true(json_object_get(res, "truncated")))
    fprintf(stderr, "note: %lld of %lld entries shown\n",
            (long long)json_integer_value(json_object_get(res, "count")),
            (long long)json_integer_value(json_object_get(res, "total")));
  return CLI_OK;
}

static int vol_cat(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 2, 3, CAT_USAGE);
  if (rc || a.help) return rc;
  CLEANUP_FREE char *device = NULL;
  CLEANUP_FREE char *path = NULL;
  if ((rc = device_path(&a, CAT_USAGE, &device, &path))) return rc;
  if (!path || !*path) return cli_usage_error(CAT_USAGE, "which file? give DEVICE:PATH");
  json_t *vol CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_OS_VOLUMES, a.pos[0], &vol))) return rc;
  CLEANUP_FREE char *url = browse_path(vol, "files/content", device, path);
  struct http_xfer x = {.download = stdout};
  long status = 0;
  json_t *err CLEANUP_JSON = NULL;
  CLEANUP_FREE char *raw = NULL;
  if ((rc = http_xfer(c, "GET", url, &x, &status, &err, &raw))) return rc;
  if (fflush(stdout) != 0) {
    fprintf(stderr, "error: cannot write standard output\n");
    return CLI_EUSAGE;
  }
  if (status < 200 || status > 299) {
    rc = api_print_error(c, status, err, raw);
    return status == 401 ? CLI_ECONN : rc;
  }
  return CLI_OK;
}

int cmd_volume(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {{"list", vol_list, NULL},
                                       {"show", vol_show, NULL},
                                       {"create", vol_create, NULL},
                                       {"update", vol_update, NULL},
                                       {"delete", vol_delete, NULL},
                                       {"credentials", vol_credentials, NULL},
                                       {"ls", vol_ls, NULL},
                                       {"cat", vol_cat, NULL},
                                       {NULL, NULL, NULL}};
  return cli_dispatch(c, "volume", VOL_HELP, subs, argc, argv);
}
