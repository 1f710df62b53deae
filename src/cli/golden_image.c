/* golden_image.c — `streamer golden-image ...`: list, show, upload (a
 * streamed multipart POST, then the import task), download (the HPE zip),
 * update (name, description), delete (a task) and archive (the import or
 * capture log) over /rest/golden-images. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

static const char GI_HELP[] =
    "usage: streamer golden-image SUBCOMMAND [options]\n"
    "\n"
    "  list [--filter F] [--sort S]       list golden images\n"
    "  show REF                           show one golden image\n"
    "  upload FILE [--name N] [--description D] [--no-wait]\n"
    "                                     upload an image (.zip as HPE exports it, .raw,\n"
    "                                     .img, .qcow2, .vmdk, .vhdx) and wait for its import\n"
    "  download REF FILE                  download it as an HPE golden image zip (- = stdout)\n"
    "  update REF [--name N] [--description D]\n"
    "  delete REF [--no-wait]\n"
    "  archive REF                        print its log (the import's, or the capture's)\n"
    "\n"
    "REF is an id, a uri (/rest/golden-images/ID) or an exact name.\n";
static const char LIST_USAGE[] = "usage: streamer golden-image list [--filter F] [--sort S]\n"
                                 "\n"
                                 "  --filter F   server-side filter, e.g. \"format='qcow2'\"\n"
                                 "  --sort S     e.g. name:desc (default name:asc)\n";
static const char SHOW_USAGE[] = "usage: streamer golden-image show REF\n";
static const char UPLOAD_USAGE[] =
    "usage: streamer golden-image upload FILE [--name N] [--description D] [--no-wait]\n"
    "\n"
    "Upload FILE as a new golden image. Its extension says what it is: .zip (a golden\n"
    "image as HPE Image Streamer exports it), .raw or .img (a raw disk image), .qcow2,\n"
    ".vmdk or .vhdx. The name defaults to the file name without its extension. On a\n"
    "terminal a progress bar shows the upload, then the server's import. Exit 0 once\n"
    "the golden image exists; with --no-wait, once the server has the file (the import\n"
    "task's id is printed: streamer task wait ID).\n";
static const char DOWNLOAD_USAGE[] =
    "usage: streamer golden-image download REF FILE\n"
    "\n"
    "Download the golden image as the zip HPE Image Streamer exports (one raw disk image\n"
    "inside), into FILE (- = standard output). FILE is written under a temporary name\n"
    "and renamed when complete.\n";
static const char UPDATE_USAGE[] =
    "usage: streamer golden-image update REF [--name N] [--description D]\n";
static const char DELETE_USAGE[] =
    "usage: streamer golden-image delete REF [--no-wait]\n"
    "\n"
    "Delete the golden image and its volume (refused while deployment plans use it or\n"
    "OS volumes are cloned from it). Waits for the delete task unless --no-wait.\n";

static const char ARCHIVE_USAGE[] =
    "usage: streamer golden-image archive REF\n"
    "\n"
    "Print the golden image's log (GET /rest/golden-images/archive/{id}): for an upload,\n"
    "the import's; for a capture (streamer capture), the capture build plan's run and the\n"
    "copy's figures.\n";

static int gi_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, LIST_OPTS, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  const char *sort = args_get(&a, "sort");
  json_t *list CLEANUP_JSON = NULL;
  rc = api_list(c, "golden-images", args_get(&a, "filter"), sort ? sort : "name:asc", &list);
  if (rc) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  static const char *const hdr[] = {"NAME", "FORMAT", "SIZE", "STATE", "ID", "MODIFIED"};
  struct table *t = table_new(6, hdr);
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char size[32];
    out_human_size(json_object_get(m, "size"), size, sizeof size);
    CLEANUP_FREE char *mod = out_time(jstr(m, "modified"));
    const char *row[] = {jstr(m, "name"),  jstr(m, "format"), size,
                         jstr(m, "state"), res_id(m),         mod};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

static void gi_print(json_t *gi) {
  static const char *const order[] = {
      "name",           "id",       "uri",   "description", "format",   "size",
      "allocatedBytes", "checkSum", "state", "status",      "readOnly", "created",
      "modified",       "eTag",     NULL};
  static const char *const skip[] = {
      "name",           "id",       "uri",   "description", "format",   "size",
      "allocatedBytes", "checkSum", "state", "status",      "readOnly", "created",
      "modified",       "eTag",     "type",  "category",    "crc32",    NULL};
  struct kv *k = kv_new();
  kv_fields(k, gi, order);
  kv_rest(k, gi, skip);
  kv_print(k, stdout);
  kv_free(k);
  json_t *deps = json_object_get(gi, "dependentArtifacts");
  printf("\nused by:%s\n", json_array_size(deps) ? "" : " (no deployment plan)");
  size_t i;
  json_t *d;
  json_array_foreach(deps, i, d) { printf("  %s  %s\n", jstr(d, "name"), jstr(d, "uri")); }
}

static int gi_show(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, SHOW_USAGE);
  if (rc || a.help) return rc;
  json_t *gi CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_GOLDEN_IMAGES, a.pos[0], &gi);
  if (rc) return rc;
  if (c->json)
    out_json(gi);
  else
    gi_print(gi);
  return CLI_OK;
}

int answer_error(struct cli *c, long status, json_t *res, const char *raw) {
  int rc = api_print_error(c, status, res, raw);
  if (status == 401) {
    fprintf(stderr, "hint: the session is missing or has expired; run 'streamer login'\n");
    rc = CLI_ECONN;
  }
  return rc;
}

int upload_file(struct cli *c, const char *file, const char *path, const char *usage,
                json_t **task) {
  struct stat st;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    if (fd >= 0) close(fd);
    return cli_usage_error(usage, "cannot upload %s: %s", file,
                           fd >= 0 ? "not a regular file" : strerror(err));
  }
  close(fd);
  int rc = api_require_login(c);
  if (rc) return rc;
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  struct http_xfer x = {.upload_path = file,
                        .upload_name = base,
                        .progress = c->stderr_tty && !c->json,
                        .label = "upload"};
  long status;
  CLEANUP_FREE char *raw = NULL;
  rc = http_xfer(c, "POST", path, &x, &status, task, &raw);
  if (rc) return rc;
  if (status < 200 || status > 299) return answer_error(c, status, *task, raw);
  if (!json_is_object(*task)) {
    fprintf(stderr, "error: the server's answer to the upload is not a task: %.200s\n",
            raw ? raw : "");
    return CLI_ESERVER;
  }
  return CLI_OK;
}

static int gi_upload(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {
      {"name", 1}, {"description", 1}, {"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPLOAD_USAGE);
  if (rc || a.help) return rc;
  const char *file = a.pos[0];
  const char *name = args_get(&a, "name"), *desc = args_get(&a, "description");
  if (name && !*name) return cli_usage_error(UPLOAD_USAGE, "--name cannot be empty");
  CLEANUP_FREE char *qn = name ? http_escape(name) : NULL;
  CLEANUP_FREE char *qd = desc ? http_escape(desc) : NULL;
  CLEANUP_FREE char *path =
      util_strdup_printf("/rest/golden-images%s%s%s%s%s%s", qn || qd ? "?" : "", qn ? "name=" : "",
                         qn ? qn : "", qn && qd ? "&" : "", qd ? "description=" : "", qd ? qd : "");
  json_t *task CLEANUP_JSON = NULL;
  if ((rc = upload_file(c, file, path, UPLOAD_USAGE, &task))) return rc;
  if (args_has(&a, "no-wait")) {
    if (c->json)
      out_json(task);
    else
      printf("Uploaded %s; the server imports it in task %s (streamer task wait %s).\n", file,
             jstr(task, "uri"), res_id(task));
    return CLI_OK;
  }
  rc = task_follow(c, &task);
  if (rc) return rc;
  const char *gi_uri = jstr(json_object_get(task, "associatedResource"), "resourceUri");
  json_t *gi CLEANUP_JSON = NULL;
  if (!*gi_uri) {
    fprintf(stderr, "error: the import task names no golden image\n");
    return CLI_ESERVER;
  }
  rc = api_call(c, "GET", gi_uri, NULL, NULL, &gi);
  if (rc) return rc;
  if (c->json) {
    out_json(gi);
    return CLI_OK;
  }
  char size[32];
  out_human_size(json_object_get(gi, "size"), size, sizeof size);
  printf("Uploaded golden image \"%s\" (id %s): %s %s, sha256 %s.\n", jstr(gi, "name"), res_id(gi),
         size, jstr(gi, "format"), jstr(gi, "checkSum"));
  return CLI_OK;
}

int download_to_file(struct cli *c, const char *path, const char *file, const char *usage) {
  int rc = CLI_OK;
  int to_stdout = strcmp(file, "-") == 0;
  CLEANUP_FREE char *tmp = to_stdout ? NULL : util_strdup_printf("%s.part", file);
  FILE *f = stdout;
  if (!to_stdout) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
      int err = errno;
      if (fd >= 0) close(fd);
      return cli_usage_error(usage, "cannot write %s: %s", tmp, strerror(err));
    }
  }
  struct http_xfer x = {
      .download = f, .progress = c->stderr_tty && !c->json && !to_stdout, .label = "download"};
  long status;
  json_t *res CLEANUP_JSON = NULL;
  CLEANUP_FREE char *raw = NULL;
  rc = http_xfer(c, "GET", path, &x, &status, &res, &raw);
  if (rc == CLI_OK && (status < 200 || status > 299)) rc = answer_error(c, status, res, raw);
  if (fflush(f) != 0 || (!to_stdout && fsync(fileno(f)) < 0)) {
    if (rc == CLI_OK) {
      fprintf(stderr, "error: cannot write %s: %s\n", to_stdout ? "standard output" : file,
              strerror(errno));
      rc = CLI_EUSAGE;
    }
  }
  if (!to_stdout) {
    if (fclose(f) != 0 && rc == CLI_OK) {
      fprintf(stderr, "error: cannot write %s: %s\n", file, strerror(errno));
      rc = CLI_EUSAGE;
    }
    if (rc == CLI_OK && rename(tmp, file) < 0) {
      fprintf(stderr, "error: cannot rename %s to %s: %s\n", tmp, file, strerror(errno));
      rc = CLI_EUSAGE;
    }
    if (rc != CLI_OK) unlink(tmp);
  }
  return rc;
}

static int gi_download(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 2, 2, DOWNLOAD_USAGE);
  if (rc || a.help) return rc;
  const char *file = a.pos[1];
  json_t *gi CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_GOLDEN_IMAGES, a.pos[0], &gi);
  if (rc) return rc;
  CLEANUP_FREE char *id = http_escape(res_id(gi));
  CLEANUP_FREE char *path = util_strdup_printf("/rest/golden-images/download/%s", id ? id : "");
  rc = download_to_file(c, path, file, DOWNLOAD_USAGE);
  if (rc) return rc;
  if (strcmp(file, "-") != 0) {
    if (c->json) {
      json_t *o CLEANUP_JSON = json_pack("{s:s, s:s, s:s}", "name", jstr(gi, "name"), "uri",
                                         jstr(gi, "uri"), "file", file);
      out_json(o);
    } else {
      printf("Downloaded golden image \"%s\" to %s.\n", jstr(gi, "name"), file);
    }
  }
  return CLI_OK;
}

static int gi_update(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"name", 1}, {"description", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, UPDATE_USAGE);
  if (rc || a.help) return rc;
  const char *name = args_get(&a, "name"), *desc = args_get(&a, "description");
  if (!name && !desc)
    return cli_usage_error(UPDATE_USAGE, "nothing to update: give --name or --description");
  if (name && !*name) return cli_usage_error(UPDATE_USAGE, "--name cannot be empty");
  json_t *gi CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_GOLDEN_IMAGES, a.pos[0], &gi);
  if (rc) return rc;
  if (name) json_object_set_new(gi, "name", json_string(name));
  if (desc) json_object_set_new(gi, "description", json_string(desc));
  json_t *res CLEANUP_JSON = NULL;
  rc = res_put(c, gi, &res);
  if (rc) return rc;
  res_done(c, "Updated", &COLL_GOLDEN_IMAGES, res);
  return CLI_OK;
}

static int gi_delete(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"no-wait", 0}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 1, 1, DELETE_USAGE);
  if (rc || a.help) return rc;
  json_t *gi CLEANUP_JSON = NULL;
  rc = ref_get(c, &COLL_GOLDEN_IMAGES, a.pos[0], &gi);
  if (rc) return rc;
  json_t *task CLEANUP_JSON = NULL;
  rc = api_call(c, "DELETE", jstr(gi, "uri"), NULL, NULL, &task);
  if (rc) return rc;
  if (json_is_object(task) && *jstr(task, "uri") && !args_has(&a, "no-wait")) {
    rc = task_follow(c, &task);
    if (rc) return rc;
  }
  if (c->json) {
    json_t *o CLEANUP_JSON =
        json_pack("{s:s, s:s, s:b, s:O?}", "uri", jstr(gi, "uri"), "name", jstr(gi, "name"),
                  "deleted", !args_has(&a, "no-wait"), "task", task);
    out_json(o);
  } else if (args_has(&a, "no-wait")) {
    printf("Deleting golden image \"%s\" in task %s.\n", jstr(gi, "name"), jstr(task, "uri"));
  } else {
    printf("Deleted golden image \"%s\".\n", jstr(gi, "name"));
  }
  return CLI_OK;
}

static int gi_archive(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 1, 1, ARCHIVE_USAGE);
  if (rc || a.help) return rc;
  json_t *gi CLEANUP_JSON = NULL;
  if ((rc = ref_get(c, &COLL_GOLDEN_IMAGES, a.pos[0], &gi))) return rc;
  CLEANUP_FREE char *path = util_strdup_printf("/rest/golden-images/archive/%s", res_id(gi));
  long status = 0;
  json_t *body CLEANUP_JSON = NULL;
  CLEANUP_FREE char *raw = NULL;
  if ((rc = http_do(c, "GET", path, NULL, NULL, 1, &status, &body, &raw))) return rc;
  if (status < 200 || status > 299) return answer_error(c, status, body, raw);
  fputs(raw ? raw : "", stdout);
  return CLI_OK;
}

int cmd_golden_image(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {
      {"list", gi_list, NULL},         {"show", gi_show, NULL},     {"upload", gi_upload, NULL},
      {"download", gi_download, NULL}, {"update", gi_update, NULL}, {"delete", gi_delete, NULL},
      {"archive", gi_archive, NULL},   {NULL, NULL, NULL}};
  return cli_dispatch(c, "golden-image", GI_HELP, subs, argc, argv);
}
