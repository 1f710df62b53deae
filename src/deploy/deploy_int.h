/* deploy_int.h — private to src/deploy: the deployment service shared by
 * hardware.c and profile.c. */
#ifndef STREAMER_DEPLOY_INT_H
#define STREAMER_DEPLOY_INT_H

#include "deploy/deploy.h"

struct deploy_service {
  struct deploy_config c;
  char **advertise; /* owned copies of c.advertise */
  char *workdir;    /* DATA/volumes/deploy: the build plans' work directories */
};

/* Register the machines' public rendering (hardware.c). */
void hw_register(struct store *s);
/* "/rest/<coll>/<id>" -> id; a bare id as is; NULL for another collection. */
const char *deploy_uri_id(const char *ref, const char *coll);
/* The entry `ref` names in `coll`: "/rest/<coll>/<id>", a bare id, or (not
 * for URIs) an exact name; NULL when none (release it). */
struct store_entry *deploy_lookup(struct store *s, const char *coll, const char *ref);
/* Does a document's If-Match check pass? 0, or -1 with 412 set. */
int deploy_if_match(json_t *doc, const char *if_match, struct err *e);

#endif
