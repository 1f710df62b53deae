/* test_iscsi_pdu.c — the pure parts of the iSCSI target: key=value lists,
 * numbers and booleans, CHAP value encodings and responses (RFC 1994 MD5),
 * iSCSI names, LUN encodings and serial number arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "iscsi/iscsi.h"
#include "iscsi/pdu.h"

static void kv_lists(void **state) {
  (void)state;
  char buf[128];
  const char in[] = "InitiatorName=iqn.2024-01.x:y\0SessionType=Normal\0Empty=\0";
  memcpy(buf, in, sizeof in);
  struct kv kv[8];
  int n = kv_parse(buf, sizeof in - 1, kv, 8);
  assert_int_equal(n, 3);
  assert_string_equal(kv[0].key, "InitiatorName");
  assert_string_equal(kv[0].val, "iqn.2024-01.x:y");
  assert_string_equal(kv[1].val, "Normal");
  assert_string_equal(kv[2].key, "Empty");
  assert_string_equal(kv[2].val, "");
  /* last pair without its NUL (the buffer has room for one) */
  const char in2[] = "A=1\0B=2";
  memcpy(buf, in2, sizeof in2);
  n = kv_parse(buf, sizeof in2 - 1, kv, 8);
  assert_int_equal(n, 2);
  assert_string_equal(kv[1].val, "2");
  /* malformed: no '=', empty key, bad key character, too many pairs */
  const char *bad[] = {"NoEquals", "=x", "Ke y=1"};
  for (size_t i = 0; i < 3; i++) {
    size_t l = strlen(bad[i]);
    memcpy(buf, bad[i], l + 1);
    assert_int_equal(kv_parse(buf, l, kv, 8), -1);
  }
  const char many[] = "a=1\0b=2\0c=3";
  memcpy(buf, many, sizeof many);
  assert_int_equal(kv_parse(buf, sizeof many - 1, kv, 2), -1);
  /* key longer than 63 bytes */
  char longkey[100];
  memset(longkey, 'K', 70);
  strcpy(longkey + 70, "=1");
  assert_int_equal(kv_parse(longkey, strlen(longkey), kv, 8), -1);
}

static void numbers(void **state) {
  (void)state;
  uint64_t v;
  assert_int_equal(kv_number("262144", &v), 0);
  assert_int_equal(v, 262144);
  assert_int_equal(kv_number("0x10", &v), 0);
  assert_int_equal(v, 16);
  assert_int_equal(kv_number("", &v), -1);
  assert_int_equal(kv_number("12a", &v), -1);
  assert_int_equal(kv_number("0x", &v), -1);
  assert_int_equal(kv_number("99999999999999999999999", &v), -1);
  int b;
  assert_int_equal(kv_bool("Yes", &b), 0);
  assert_int_equal(b, 1);
  assert_int_equal(kv_bool("No", &b), 0);
  assert_int_equal(b, 0);
  assert_int_equal(kv_bool("yes", &b), -1);
}

static void chap_values(void **state) {
  (void)state;
  uint8_t out[32];
  assert_int_equal(chap_decode("0x0102ff", out, sizeof out), 3);
  assert_int_equal(out[2], 0xff);
  assert_int_equal(chap_decode("0x102", out, sizeof out), 2); /* odd length: leading nibble */
  assert_int_equal(out[0], 0x01);
  assert_int_equal(out[1], 0x02);
  assert_int_equal(chap_decode("0bAQL/", out, sizeof out), 3);
  assert_int_equal(out[0], 0x01);
  assert_int_equal(out[1], 0x02);
  assert_int_equal(out[2], 0xff);
  assert_int_equal(chap_decode("0bAQ==", out, sizeof out), 1);
  assert_int_equal(chap_decode("0xZZ", out, sizeof out), -1);
  assert_int_equal(chap_decode("1234", out, sizeof out), -1);
  assert_int_equal(chap_decode("0x", out, sizeof out), -1);
  assert_int_equal(chap_decode("0x0102030405", out, 2), -1);
  char hex[16];
  uint8_t v[3] = {0xde, 0xad, 0x01};
  chap_hex(v, 3, hex);
  assert_string_equal(hex, "0xdead01");
  /* RFC 1994 response: MD5(id || secret || challenge), checked against a
   * value computed independently (python3 hashlib) */
  uint8_t r[16], chal[4] = {1, 2, 3, 4};
  assert_int_equal(chap_response(7, "secretsecret", chal, 4, r), 0);
  char rh[40];
  chap_hex(r, 16, rh);
  assert_string_equal(rh, "0x58790ef51aee070417b98462576c2a40");
}

static void names(void **state) {
  (void)state;
  assert_true(iscsi_name_valid("iqn.2024-01.org.example:disk1"));
  assert_true(iscsi_name_valid("iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"));
  assert_true(iscsi_name_valid("eui.02004567A425678D"));
  assert_true(iscsi_name_valid("naa.52004567BA64678D"));
  assert_false(iscsi_name_valid("iqn.24-01.x"));
  assert_false(iscsi_name_valid("iqn.2024-01."));
  assert_false(iscsi_name_valid("iqn.2024-01.a b"));
  assert_false(iscsi_name_valid("eui.123"));
  assert_false(iscsi_name_valid("foo"));
  char *t = iscsi_target_name("Web Server #1", "3F2504E0-4F89-11D3-9A0C-0305E82C3301");
  assert_string_equal(t, "iqn.2024-11.org.streamer:vol.web-server--1.3f2504e0");
  assert_true(iscsi_name_valid(t));
  free(t);
}

static void luns_and_sn(void **state) {
  (void)state;
  uint8_t l[8];
  lun_encode(0, l);
  assert_int_equal(lun_decode(l), 0);
  lun_encode(5, l);
  assert_int_equal(lun_decode(l), 5);
  lun_encode(300, l);
  assert_int_equal(l[0], 0x41);
  assert_int_equal(lun_decode(l), 300);
  uint8_t bad[8] = {0x80, 0, 0, 0, 0, 0, 0, 0};
  assert_true(lun_decode(bad) == UINT64_MAX);
  uint8_t two[8] = {0, 1, 0, 2, 0, 0, 0, 0};
  assert_true(lun_decode(two) == UINT64_MAX);
  assert_true(sn_lt(1, 2));
  assert_true(sn_lt(0xfffffff0u, 5));
  assert_false(sn_lt(5, 0xfffffff0u));
  assert_true(sn_le(7, 7));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kv_lists), cmocka_unit_test(numbers),     cmocka_unit_test(chap_values),
      cmocka_unit_test(names),    cmocka_unit_test(luns_and_sn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
