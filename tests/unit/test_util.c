/* test_util.c — CRC-32C against the RFC 3720 appendix B.4 vectors and the
 * check value, the hardware and table paths agreeing on every length and
 * alignment, and incremental use equal to one pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "util/util.h"

static void utf8_repair(void **state) {
  (void)state;
  char a[] = "ok \xc3\xa9 \xe2\x80\x9c \xf0\x9f\x98\x80 end";
  util_utf8_repair(a);
  assert_string_equal(a, "ok \xc3\xa9 \xe2\x80\x9c \xf0\x9f\x98\x80 end"); /* valid: unchanged */
  char b[] = "Q\xff\xfeQ \xc3 \xe2\x80 \xc0\xaf \xed\xa0\x80 x\xe2\x80";
  util_utf8_repair(b); /* stray, cut, overlong, surrogate, cut at the end */
  assert_string_equal(b, "Q??Q ? ?? ?? ??? x??");
  struct err e;
  err_init(&e);
  err_set(&e, 400, "X", "member \"%.3s\"", "ab\xc3\xa9"); /* the precision cuts the é */
  assert_string_equal(e.message, "member \"ab?\"");
  json_t *j = err_to_json(&e);
  assert_non_null(j);
  json_decref(j);
}

static void crc32c_vectors(void **state) {
  (void)state;
  assert_int_equal(util_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(util_crc32c_sw(0, "123456789", 9), 0xE3069283u);
  unsigned char b[32];
  memset(b, 0, sizeof b);
  assert_int_equal(util_crc32c(0, b, 32), 0x8A9136AAu);
  memset(b, 0xff, sizeof b);
  assert_int_equal(util_crc32c(0, b, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; i++)
    b[i] = (unsigned char)i;
  assert_int_equal(util_crc32c(0, b, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; i++)
    b[i] = (unsigned char)(31 - i);
  assert_int_equal(util_crc32c(0, b, 32), 0x113FDB5Cu);
}

static void crc32c_incremental(void **state) {
  (void)state;
  unsigned char buf[1031];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(i * 131 + 7);
  for (size_t off = 0; off < 9; off++)
    for (size_t len = 0; len + off <= sizeof buf; len += 37) {
      uint32_t whole = util_crc32c(0, buf + off, len);
      size_t cut = len / 3;
      uint32_t part = util_crc32c(util_crc32c(0, buf + off, cut), buf + off + cut, len - cut);
      assert_int_equal(whole, part);
      assert_int_equal(whole, util_crc32c_sw(0, buf + off, len));
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(utf8_repair),
      cmocka_unit_test(crc32c_vectors),
      cmocka_unit_test(crc32c_incremental),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
