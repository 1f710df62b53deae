/* plan_int.h — private to src/deploy: an OS build plan made ready to run
 * (its steps and plan scripts loaded, the custom attribute values merged and
 * checked as deployment plans do), and the bounded, masked log of a run.
 * Shared by build-plan validation (validate.c), deployments (profile.c) and
 * capture, so that every one of them sees the same attribute rules. */
#ifndef STREAMER_DEPLOY_PLAN_INT_H
#define STREAMER_DEPLOY_PLAN_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "script/script.h"
#include "store/store.h"
#include "util/util.h"

/* A build plan ready to run in a script session. */
struct plan {
  char bp_id[64];
  char *bp_name;
  json_t *values;        /* name -> value substituted (NIC subs keyed "Name.sub") */
  json_t *secrets;       /* password attribute names */
  json_t *secret_values; /* their values, masked in logs and messages */
  json_t *step_docs;     /* [{serial, name, content}], owns the strings of steps */
  json_t *derived;       /* the attributes the plan scripts derive */
  json_t *bp_decls;      /* the build plan's customAttributes */
  struct script_step *steps;
  size_t nsteps;
};

/* What plan_attributes checks the given values against. */
struct plan_attr_opts {
  json_t *dp_decls; /* the deployment plan's customAttributes (NULL: none) */
  const char *dp_name;
  /* Values a caller may leave out (a redeploy's carried values): names the
   * plan does not know are dropped instead of reported. Array of
   * {"name","value"}, below the given ones; may be NULL. */
  json_t *carried;
  /* The server's own values (system attributes such as "_Initiator1.ip"):
   * object name -> string, substituted as given; may be NULL. */
  json_t *system;
  /* 1: NIC attributes expose their mode: Name.constraint, Name.dhcp
   * ("true"/"false"), and empty values for the addresses the mode does not
   * set (a deployment). 0: sub-values as given (validation). */
  int nic_modes;
  /* 1: the deployment plan has no golden image: "VolumeSize" (MiB) must be
   * a whole number from 1 to OSVOL_MAX_SIZE in MiB. */
  int need_volume_size;
};

/* Load build plan `bp` (its stored document, id and name): its steps in
 * order and their plan scripts' content. 400 PLAN_SCRIPT_NOT_FOUND. */
int plan_load(struct plan *p, struct store *s, const char *bp_id, const char *bp_name, json_t *bp,
              struct err *e);
/* Merge and check the attribute values: every given name must be known (by
 * the build plan, its scripts or the deployment plan; "_" names are the
 * server's), every value given or set must satisfy its declaration, a
 * deployment plan's non-editable value cannot be changed. All problems in
 * one 400 INVALID_ATTRIBUTES (nested UNKNOWN_ATTRIBUTE / INVALID_ATTRIBUTE)
 * whose message starts with `what`. `given`: array of {"name","value"} or
 * object name -> value (NULL: none). *effective (may be NULL) receives the
 * values that count, as [{"name","value"}] (given and carried ones known to
 * the plan), for storing in a profile. */
int plan_attributes(struct plan *p, const char *what, json_t *given, const struct plan_attr_opts *o,
                    json_t **effective, struct err *e);
/* The value the merged attributes give `name` (NULL when none). */
const char *plan_value(const struct plan *p, const char *name);
void plan_clear(struct plan *p);

/* ---- a run's log, bounded: its head and its tail (where a failure is) ---- */
struct logcap {
  size_t head_max, tail_max;
  char *head;
  size_t head_len;
  char *ring;
  size_t ring_pos;
  int wrapped;
  uint64_t total;
};
/* 0, or -1 when out of memory. */
int logcap_init(struct logcap *l, size_t head_max, size_t tail_max);
void logcap_free(struct logcap *l);
/* A script_opts log function (opaque = the logcap). */
void logcap_take(void *opaque, const char *text, size_t len);
/* The log as one string (malloc'd); *cut = bytes left out. */
char *logcap_text(struct logcap *l, uint64_t *cut);

/* `text` with every value of `secret_values` replaced by ********; malloc'd. */
char *plan_masked(const char *text, json_t *secret_values);

#endif
