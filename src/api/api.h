/* api.h — the REST API server: HTTP(S) with libmicrohttpd, sessions and
 * roles, the HPE i3s wire format for every resource, error JSON. */
#ifndef STREAMER_API_H
#define STREAMER_API_H

#include <stddef.h>
#include <stdint.h>

#include "deploy/task.h"
#include "store/store.h"
#include "util/util.h"

struct api_config {
  const char *listen;        /* "ADDR:PORT" */
  int insecure_http;         /* plain HTTP (loopback only) */
  const char *tls_cert_path; /* PEM files, used unless insecure_http */
  const char *tls_key_path;
  size_t max_body;           /* bytes; larger bodies get 413 */
  int session_idle_timeout;  /* seconds */
  int threads;               /* HTTP worker threads */
  struct vol_store *volumes; /* golden images live here (must outlive the api) */
  uint64_t storage_quota;    /* bytes golden images and uploads may use; 0 = no limit */

  /* OS volumes and their iSCSI exports (deploy/osvolume.h); NULL = none */
  struct osvol_service *osvols;

  /* GET /boot/ipxe: client networks allowed ("10.0.0.0/8,fd00::/64"; NULL or
   * "" = any), and an optional second, plain-HTTP listener serving only /boot/
   * ("ADDR:PORT", NULL = none) for iPXE builds that cannot check our certificate. */
  const char *boot_clients;
  const char *boot_listen;
  /* Server hardware and server profiles (deploy/deploy.h); NULL = none */
  struct deploy_service *deploy;
};

struct api;
struct vol_store;
struct osvol_service;
struct deploy_service;

/* Start serving. The store and task engine must outlive the api. */
struct api *api_start(const struct api_config *cfg, struct store *s, struct task_engine *te,
                      struct err *e);
void api_stop(struct api *a);

/* streamerd --samples DIR (samples.c): create the sample plan scripts, build plans, golden
 * images and deployment plans of DIR that this data directory never loaded. A sample that
 * fails is logged and skipped (tried again at the next start); -1 only when DIR is not a
 * directory or the record of loaded samples cannot be written. */
int api_samples_load(struct api *a, const char *dir, struct err *e);
/* Import the image file `path` of this host (kept) as golden image `name`, by a task like an
 * upload's (golden.c). Returns the task document (a new reference) or NULL with e set. */
json_t *api_golden_import_file(struct api *a, const char *path, const char *name,
                               const char *description, struct err *e);

/* First start: create the "administrator" user with a random password
 * written to `password_file` (mode 0600). No-op when users exist. */
int api_bootstrap_admin(struct store *s, const char *password_file, struct err *e);

/* Create a self-signed certificate and key (PEM) unless both files exist. */
int api_tls_ensure(const char *cert_path, const char *key_path, struct err *e);

/* Parse "ADDR:PORT" / "[v6]:PORT". 0 or -1 with e set. */
int api_parse_addr(const char *s, void *sockaddr_storage, unsigned *len, int *is_loopback,
                   struct err *e);

#endif
