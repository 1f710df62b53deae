/* bundle_zip.c — the bundle zip: a multi-member reader that vets untrusted
 * input, a writer in HPE's exact layout, MANIFEST.MF and checksum files. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "artifact/bundle.h"
#include "artifact/bundle_int.h"

int bundle_contents_read_only(json_t *contents) {
  json_t *m = json_object_get(contents, "manifest");
  return util_json_bool(json_object_get(m, "readOnly")) == 1;
}

json_t *bundle_inspect_fd(int fd, int lenient, struct err *e) {
  err_set(e, 501, "NOT_IMPLEMENTED", "artifact bundles: inspection is not implemented yet");
  return NULL;
}

json_t *bundle_inspect(const char *path, int lenient, struct err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err_set(e, 500, "BUNDLE_IO", "cannot open the bundle file: %s", strerror(errno));
    return NULL;
  }
  json_t *r = bundle_inspect_fd(fd, lenient, e);
  close(fd);
  return r;
}
