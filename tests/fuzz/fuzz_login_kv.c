/* fuzz_login_kv.c — libFuzzer target for the login / text key=value parser
 * and the value decoders the login phase applies to what an initiator sends
 * (numbers, booleans, CHAP hex/base64 values, iSCSI names). Built and run by
 * `make fuzz` (clang, -fsanitize=fuzzer,address,undefined). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 70000) return 0;
  char *buf = malloc(size + 1); /* kv_parse may terminate the last pair in place */
  if (!buf) return 0;
  memcpy(buf, data, size);
  struct kv kv[128];
  int n = kv_parse(buf, size, kv, 128);
  for (int i = 0; i < n; i++) {
    uint64_t v;
    int b;
    uint8_t out[1024];
    if (strlen(kv[i].key) > 63) __builtin_trap();
    (void)kv_number(kv[i].val, &v);
    (void)kv_bool(kv[i].val, &b);
    int l = chap_decode(kv[i].val, out, sizeof out);
    if (l > (int)sizeof out) __builtin_trap();
    (void)iscsi_name_valid(kv[i].val);
  }
  free(buf);
  return 0;
}
