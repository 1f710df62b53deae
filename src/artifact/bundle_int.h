/* bundle_int.h — private to the bundle files of src/artifact. */
#ifndef STREAMER_BUNDLE_INT_H
#define STREAMER_BUNDLE_INT_H

#include "artifact/bundle.h"

/* The readOnly of a contents object (its manifest's Read Only). */
int bundle_contents_read_only(json_t *contents);

#endif
