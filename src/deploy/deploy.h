/* deploy.h — deployments: server hardware (the machines, hardware.c) and
 * server profiles (profile.c), whose creation runs the deploy pipeline —
 * validate every attribute against the deployment plan, clone the golden
 * image (or make an empty volume of VolumeSize MiB), run the build plan on
 * the new OS volume in one script session, export it as an iSCSI target
 * bound to the machine's initiator with its CHAP credentials — and whose
 * change redeploys and whose deletion removes the OS volume and target.
 *
 * Documents: "server-hardware" and "server-profiles" in the store (secrets
 * under "secrets", never rendered); the OS volumes are ordinary
 * "os-volumes" documents (osvolume.h) with "serverProfileUri" and
 * "deploymentPlanUri". Every change is ordered so that a stop at any point
 * is finished or undone by deploy_service_open (see src/deploy/README.md).
 * No HTTP: src/api/profiles.c maps these calls to requests. */
#ifndef STREAMER_DEPLOY_H
#define STREAMER_DEPLOY_H

#include <jansson.h>
#include <stddef.h>

#include "deploy/task.h"
#include "store/store.h"
#include "util/util.h"

#define HW_COLL "server-hardware"
#define PROFILE_COLL "server-profiles"
#define DEPLOY_GROUP_ID "5e1f4c3a-0d6b-4c55-9b1e-2f6a3c7d8e90" /* the one deployment group */
#define HW_MAX_MACS 8

struct vol_store;
struct osvol_service;
struct iscsi_srv;
struct deploy_service;

struct deploy_config {
  struct store *store;
  struct vol_store *volumes;
  struct osvol_service *osvols;
  struct iscsi_srv *iscsi;   /* NULL: iSCSI disabled (deploys are refused) */
  struct task_engine *tasks; /* must be started */
  /* Addresses advertised in bootConnections for portals that listen on a
   * wildcard address (0.0.0.0, [::]): --iscsi-advertise. None given: the
   * host's first non-loopback IPv4 address. */
  const char *const *advertise;
  size_t nadvertise;
  /* Tests only (streamerd --fault-injection): honour STREAMER_FAULT=deploy:STEP. */
  int faults;
};

/* Register the renderings, finish or undo what a stop left (profiles
 * Creating: removed; Updating: back to their committed deployment; Deleting:
 * deleted), remove OS volumes no profile owns any more and the work
 * directories of interrupted runs. The config's objects must outlive it. */
struct deploy_service *deploy_service_open(const struct deploy_config *c, struct err *e);
void deploy_service_close(struct deploy_service *d);

/* ---- server hardware (hardware.c) -------------------------------------------
 * {"name", "macAddresses": [...] (1..8, unique across machines), "initiatorName"?
 * (generated), "chapName"? (default: the name), "chapSecret"? (12..16
 * characters, generated; never rendered), "ipv4Address"?, "netmask"? (NIC 1),
 * "ipv4Address2"?, "netmask2"? (NIC 2: only with a second MAC, not NIC 1's
 * address), "description"?}. Synchronous: *out receives the stored entry
 * (release it). */
int hw_create(struct deploy_service *d, json_t *body, struct store_entry **out, struct err *e);
/* PUT: the fields given replace the stored ones; initiatorName and CHAP
 * cannot change while a profile uses the machine (409 HARDWARE_IN_USE); MACs
 * and addresses can (they feed the next deployment's system attributes). */
int hw_update(struct deploy_service *d, const char *id, json_t *body, const char *if_match,
              struct store_entry **out, struct err *e);
/* 409 HARDWARE_IN_USE while a profile uses it. */
int hw_delete(struct deploy_service *d, const char *id, const char *if_match, struct err *e);
/* "52:54:00:12:34:56" from any of aa:bb.., AA-BB-.., aabb.ccdd.eeff; 0 or -1. */
int hw_mac_normalize(const char *in, char out[18]);
/* The machine with MAC `mac` (any spelling hw_mac_normalize takes); NULL if
 * none. Release it. (The iPXE endpoint finds machines with it.) */
struct store_entry *hw_find_by_mac(struct store *s, const char *mac);
/* The machine a reference names: URI, id or exact name; NULL if none. */
struct store_entry *hw_lookup(struct store *s, const char *ref);

/* ---- server profiles (profile.c) ---------------------------------------------
 * The REST operations return the 202 task document (a new reference) of a
 * task named "Deploy" / "Redeploy" / "Update" / "Delete"; everything that
 * can be checked is checked before (400 INVALID_ATTRIBUTES with every
 * problem nested, 404, 409 busy / hardware in use, 412 If-Match). */
json_t *profile_create(struct deploy_service *d, json_t *body, const char *owner, struct err *e);
/* PUT: a changed deployment plan or attribute value redeploys (a new OS
 * volume; the old one is removed once the new one is ready; values carry
 * across plans by name); name and description alone only rename. */
json_t *profile_update(struct deploy_service *d, const char *id, json_t *body, const char *if_match,
                       const char *owner, struct err *e);
json_t *profile_delete(struct deploy_service *d, const char *id, const char *if_match,
                       const char *owner, struct err *e);

/* The one deployment group, {"type":"DeploymentGroup", ...} (new reference). */
json_t *deploy_group(void);

#endif
