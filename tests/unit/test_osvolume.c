/* test_osvolume.c — the pure rules of deploy/osvolume.c: sizes ("10G", bytes,
 * rounding to 512, the 64 TiB limit) and iSCSI initiator names (RFC 3720
 * 3.2.6.3: iqn. / eui. / naa.), and the body parser's CHAP implications. The
 * service itself (store, volumes, target) is tested end to end by
 * tests/e2e/test_os_volumes.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "deploy/osvolume.h"

static uint64_t size_of(json_t *v, int *ok) {
  struct err e;
  err_init(&e);
  uint64_t n = 12345;
  *ok = osvol_parse_size(v, &n, &e) == 0;
  if (!*ok) assert_string_equal(e.code, "INVALID_SIZE");
  err_clear(&e);
  json_decref(v);
  return n;
}

static void expect_size(json_t *v, uint64_t want) {
  int ok;
  uint64_t n = size_of(v, &ok);
  assert_true(ok);
  assert_int_equal(n, want);
}

static void expect_bad_size(json_t *v) {
  int ok;
  size_of(v, &ok);
  assert_false(ok);
}

static void test_sizes(void **state) {
  expect_size(NULL, 0);
  expect_size(json_null(), 0);
  expect_size(json_integer(0), 0);
  expect_size(json_integer(1), 512);
  expect_size(json_integer(512), 512);
  expect_size(json_integer(513), 1024);
  expect_size(json_real(4096.0), 4096);
  expect_size(json_string("10G"), 10ull << 30);
  expect_size(json_string("512M"), 512ull << 20);
  expect_size(json_string("1T"), 1ull << 40);
  expect_size(json_string("64T"), 64ull << 40);
  expect_size(json_string("3k"), 3072);
  expect_size(json_string(" 2 GiB "), 2ull << 30);
  expect_size(json_string("100MB"), 100ull << 20);
  expect_size(json_string("1000"), 1024);
  expect_size(json_string("7B"), 512);
  expect_bad_size(json_integer(-1));
  expect_bad_size(json_real(1.5));
  expect_bad_size(json_real(-2.0));
  expect_bad_size(json_string(""));
  expect_bad_size(json_string("G"));
  expect_bad_size(json_string("-1G"));
  expect_bad_size(json_string("1.5G"));
  expect_bad_size(json_string("10X"));
  expect_bad_size(json_string("10 G B"));
  expect_bad_size(json_string("65T"));
  expect_bad_size(json_string("1P"));
  expect_bad_size(json_string("99999999999999999999999"));
  expect_bad_size(json_string("18446744073709551615K"));
  expect_bad_size(json_integer((json_int_t)(64ull << 40) + 1));
  expect_bad_size(json_true());
  expect_bad_size(json_array());
}

static void test_initiator_names(void **state) {
  static const char *const good[] = {
      "iqn.2004-10.com.ubuntu:01:c0ffee",
      "iqn.1991-05.com.microsoft:web01.example.com",
      "iqn.2024-11.org.streamer",
      "IQN.2004-10.COM.Example:Host-1",
      "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
      "iqn.2000-01.x",
      "eui.02004567A425678D",
      "eui.02004567a425678d",
      "naa.52004567BA64678D",
      "naa.60000000000000000000000000000001",
  };
  static const char *const bad[] = {
      "",
      "*",
      "iqn",
      "iqn.",
      "iqn.2004-10",
      "iqn.2004-10.",
      "iqn.2004-13.com.x",
      "iqn.2004-00.com.x",
      "iqn.04-10.com.x",
      "iqn.2004-1.com.x",
      "iqn.2004-10com.x",
      "iqn.2004-10.com..x",
      "iqn.2004-10..com",
      "iqn.2004-10.com.x.",
      "iqn.2004-10.com.x:",
      "iqn.2004-10.com_x",
      "iqn.2004-10.com.x:a b",
      "iqn.2004-10.com.x:a_b",
      "iqn.2004-10.com.x:a/b",
      "iqn.2004-10.com.x:\xc3\xa9",
      "eui.0123",
      "eui.0123456789ABCDEG",
      "eui.0123456789ABCDEF0",
      "naa.1234",
      "naa.0123456789ABCDEF0",
      "naa.6000000000000000000000000000000Z",
      "nqn.2014-08.org.nvmexpress:uuid:x",
      "host.example.com",
  };
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    if (!osvol_initiator_valid(good[i])) fail_msg("refused %s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (osvol_initiator_valid(bad[i])) fail_msg("accepted %s", bad[i]);
  /* 223 bytes at most (RFC 3720) */
  char name[300] = "iqn.2004-10.com.x:";
  size_t n = strlen(name);
  memset(name + n, 'a', 223 - n);
  name[223] = 0;
  assert_true(osvol_initiator_valid(name));
  name[223] = 'a';
  name[224] = 0;
  assert_false(osvol_initiator_valid(name));
  assert_false(osvol_initiator_valid(NULL));
}

static int parse(const char *text, struct osvol_params *p, char code[64]) {
  json_error_t je;
  json_t *body = json_loads(text, 0, &je);
  assert_non_null(body);
  struct err e;
  err_init(&e);
  int rc = osvol_params_parse(body, p, &e);
  snprintf(code, 64, "%s", e.code);
  err_clear(&e);
  json_decref(body); /* p borrows from body: only flags and counts are read below */
  return rc;
}

static void test_params(void **state) {
  struct osvol_params p;
  char code[64];
  assert_int_equal(parse("{\"name\":\"a\",\"size\":\"1G\",\"initiatorNames\":[\"iqn.2000-01.x\","
                         "\"iqn.2000-01.y\"]}",
                         &p, code),
                   0);
  assert_int_equal(p.size, 1ull << 30);
  assert_int_equal(p.ninitiators, 2);
  assert_false(p.chap);
  assert_false(p.mutual_chap);
  osvol_params_free(&p);
  /* a chosen secret turns CHAP on; a mutual secret turns both on */
  assert_int_equal(parse("{\"name\":\"a\",\"chapSecret\":\"0123456789abc\"}", &p, code), 0);
  assert_true(p.chap);
  assert_false(p.mutual_chap);
  osvol_params_free(&p);
  assert_int_equal(parse("{\"name\":\"a\",\"mutualChapSecret\":\"0123456789abc\"}", &p, code), 0);
  assert_true(p.chap);
  assert_true(p.mutual_chap);
  osvol_params_free(&p);
  assert_int_equal(
      parse("{\"name\":\"a\",\"chap\":\"TRUE\",\"allowAnyInitiator\":\"true\"}", &p, code), 0);
  assert_true(p.chap);
  assert_true(p.allow_any_initiator);
  osvol_params_free(&p);
  /* refusals */
  static const struct {
    const char *body, *code;
  } bad[] = {
      {"[]", "INVALID_BODY"},
      {"{\"name\":\"a\",\"sizeGiB\":1}", "UNKNOWN_FIELD"},
      {"{\"name\":\"a\",\"type\":\"GoldenImage\"}", "INVALID_TYPE"},
      {"{\"name\":5}", "INVALID_FIELD"},
      {"{\"name\":\"a\",\"size\":\"big\"}", "INVALID_SIZE"},
      {"{\"name\":\"a\",\"chap\":false,\"chapSecret\":\"0123456789abc\"}", "INVALID_CHAP"},
      {"{\"name\":\"a\",\"chap\":false,\"mutualChap\":true}", "INVALID_CHAP"},
      {"{\"name\":\"a\",\"chap\":\"maybe\"}", "INVALID_FIELD"},
      {"{\"name\":\"a\",\"initiatorNames\":[1]}", "INVALID_INITIATOR"},
      {"{\"name\":\"a\",\"initiatorNames\":{}}", "INVALID_INITIATOR"},
      {"{\"name\":\"a\",\"goldenImageUri\":5}", "INVALID_FIELD"},
      {"{\"name\":\"a\",\"iscsi\":5}", "INVALID_FIELD"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (parse(bad[i].body, &p, code) == 0) fail_msg("accepted %s", bad[i].body);
    if (strcmp(code, bad[i].code) != 0) fail_msg("%s: %s, not %s", bad[i].body, code, bad[i].code);
    osvol_params_free(&p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_initiator_names),
      cmocka_unit_test(test_params),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
