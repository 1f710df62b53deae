/* fuzz_bundle.c — libFuzzer target for bundle inspection: the multi-member
 * zip reader and its vetting (end records, central entries against local
 * headers, names, methods, sizes, CRC-32), MANIFEST.MF and checksum-file
 * parsing, artifact JSON checks and references. Input: a zip; the first
 * byte's low bit also selects lenient mode. Invariants checked: a success is
 * an object whose artifactsCount is the sum of its four lists; a failure is a
 * 400 with a BUNDLE_* code (or 500 for an allocation failure). Seeds:
 * tests/fuzz/corpus/fuzz_bundle (tests/fuzz/make_corpus_bundle.py: synthetic
 * bundles in HPE's layout, never the HPE corpus itself). Built and run by
 * `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "artifact/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int fd = -1;
  if (fd < 0) fd = memfd_create("fuzz_bundle", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
  struct err e;
  err_init(&e);
  json_t *c = bundle_inspect_fd(fd, size > 0 && (data[0] & 1), &e);
  if (c) {
    static const char *const lists[] = {"planScripts", "buildPlans", "deploymentPlans",
                                        "goldenimage"};
    size_t n = 0;
    for (int k = 0; k < 4; k++) {
      json_t *a = json_object_get(c, lists[k]);
      if (!json_is_array(a)) __builtin_trap();
      n += json_array_size(a);
    }
    if ((size_t)json_integer_value(json_object_get(c, "artifactsCount")) != n) __builtin_trap();
    if (!json_is_object(json_object_get(c, "manifest"))) __builtin_trap();
    json_decref(c);
  } else {
    if (e.status != 400 && e.status != 500) __builtin_trap();
    if (e.status == 400 && strncmp(e.code, "BUNDLE_", 7) != 0) __builtin_trap();
  }
  err_clear(&e);
  return 0;
}
