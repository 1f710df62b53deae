/* test_boot.c — iPXE boot scripts (deploy/boot.c): MAC forms, every kind of
 * answer, multipath order, CHAP, wildcard portals, values iPXE would misread,
 * the store lookup (by MAC, by the profile link or the profile's hardware
 * URI), and the client networks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deploy/boot.h"
#include "store/store.h"

#define MAC "52:54:00:12:34:56"

static json_t *hw_doc(const char *extra) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"type\":\"server-hardware\",\"id\":\"h1\",\"uri\":\"/rest/server-hardware/h1\","
           "\"name\":\"node1\",\"macAddresses\":[\"52:54:00:12:34:56\",\"52:54:00:AA:BB:CC\"],"
           "\"initiatorName\":\"iqn.2024-11.org.streamer:host.node1.h1\",\"chapName\":\"node1\","
           "\"serverProfileUri\":\"/rest/server-profiles/p1\"%s%s}",
           extra ? "," : "", extra ? extra : "");
  json_error_t je;
  json_t *d = json_loads(buf, 0, &je);
  assert_non_null(d);
  return d;
}

static const char *CONN1 =
    "{\"id\":1,\"name\":\"Primary iSCSI boot connection\",\"priority\":"
    "\"Primary\",\"initiatorName\":\"iqn.2024-11.org.streamer:host.node1.h1\","
    "\"targetName\":\"iqn.2024-11.org.streamer:vol.web1.0123abcd\","
    "\"targetLun\":0,\"targetIp\":\"10.0.0.2\",\"targetPort\":3260,"
    "\"chapName\":\"node1\"}";
static const char *CONN2 =
    "{\"id\":2,\"name\":\"Secondary iSCSI boot connection\",\"priority\":"
    "\"Secondary\",\"initiatorName\":\"iqn.2024-11.org.streamer:host.node1.h1\","
    "\"targetName\":\"iqn.2024-11.org.streamer:vol.web1.0123abcd\","
    "\"targetLun\":0,\"targetIp\":\"10.0.1.2\",\"targetPort\":3261,"
    "\"chapName\":\"node1\"}";

static json_t *profile_doc(const char *state, const char *conns) {
  char buf[8192];
  snprintf(buf, sizeof buf,
           "{\"type\":\"ServerProfileV12\",\"id\":\"p1\",\"uri\":\"/rest/server-profiles/p1\","
           "\"name\":\"web1\",\"serverHardwareUri\":\"/rest/server-hardware/h1\","
           "\"state\":\"%s\",\"bootConnections\":[%s]}",
           state, conns);
  json_error_t je;
  json_t *d = json_loads(buf, 0, &je);
  assert_non_null(d);
  return d;
}

static void test_mac_forms(void **state) {
  char out[18];
  assert_int_equal(boot_mac_normalize("52:54:00:12:34:56", out), 0);
  assert_string_equal(out, MAC);
  assert_int_equal(boot_mac_normalize("52-54-00-AB-cd-EF", out), 0);
  assert_string_equal(out, "52:54:00:ab:cd:ef");
  const char *bad[] = {"",
                       "52:54:00:12:34",
                       "52:54:00:12:34:56:78",
                       "52:54-00:12:34:56",
                       "525400123456",
                       "52:54:00:12:34:5g",
                       "52 54 00 12 34 56",
                       "52:54:00:12:34:56 ",
                       NULL};
  for (int i = 0; bad[i]; i++)
    assert_int_equal(boot_mac_normalize(bad[i], out), -1);
  assert_int_equal(boot_mac_normalize(NULL, out), -1);
}

static void test_exit_answers(void **state) {
  struct boot_answer a = {0};
  assert_int_equal(boot_script_for(NULL, NULL, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNKNOWN_MAC);
  assert_string_equal(a.script,
                      "#!ipxe\necho no OS volume for " MAC ": booting from local disk\nexit\n");
  json_t *hw = hw_doc("\"secrets\":{\"chapSecret\":\"s3cretS3cret\"}");
  assert_int_equal(boot_script_for(hw, NULL, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_NO_PROFILE);
  assert_non_null(strstr(a.script, "\nexit\n"));
  assert_null(strstr(a.script, "sanboot"));
  assert_null(strstr(a.script, "s3cret"));
  const char *states[] = {"Creating", "Updating", "Deleting", "Error", NULL};
  for (int i = 0; states[i]; i++) {
    json_t *p = profile_doc(states[i], CONN1);
    assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
    assert_int_equal(a.kind, BOOT_NOT_READY);
    assert_null(strstr(a.script, "sanboot"));
    assert_null(strstr(a.script, "s3cret"));
    assert_non_null(strstr(a.reason, states[i]));
    json_decref(p);
  }
  json_t *p = profile_doc("Normal", "");
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_NO_CONNECTIONS);
  json_decref(p);
  boot_answer_free(&a);
  json_decref(hw);
}

static void test_sanboot_multipath_chap(void **state) {
  json_t *hw = hw_doc("\"secrets\":{\"chapSecret\":\"s3cret-S3cret_x\"}");
  char conns[2048];
  snprintf(conns, sizeof conns, "%s,%s", CONN2, CONN1); /* Secondary listed first */
  json_t *p = profile_doc("Normal", conns);
  struct boot_answer a = {0};
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_int_equal(a.paths, 2);
  assert_string_equal(a.hardware, "node1");
  assert_string_equal(a.profile, "web1");
  const char *want = "#!ipxe\n"
                     "# Streamer: server profile web1 on server hardware node1\n"
                     "set initiator-iqn iqn.2024-11.org.streamer:host.node1.h1\n"
                     "set username node1\n"
                     "set password s3cret-S3cret_x\n"
                     "sanboot iscsi:10.0.0.2:::0:iqn.2024-11.org.streamer:vol.web1.0123abcd "
                     "iscsi:10.0.1.2::3261:0:iqn.2024-11.org.streamer:vol.web1.0123abcd"
                     " || goto streamer_failed\n"
                     "exit\n"
                     ":streamer_failed\n"
                     "echo Streamer: sanboot failed: booting from local disk\n"
                     "exit 1\n";
  assert_string_equal(a.script, want);
  assert_null(strstr(a.reason, "s3cret"));
  boot_answer_free(&a);
  json_decref(p);
  json_decref(hw);
}

static void test_at_most_two_paths(void **state) {
  json_t *hw = hw_doc(NULL);
  char conns[4096];
  const char *c3 = "{\"id\":3,\"priority\":\"Secondary\",\"targetName\":\"iqn.2024-11.org.s:v\","
                   "\"targetLun\":0,\"targetIp\":\"10.0.2.2\",\"targetPort\":3260}";
  snprintf(conns, sizeof conns, "%s,%s,%s", c3, CONN2, CONN1);
  json_t *p = profile_doc("Normal", conns);
  struct boot_answer a = {0};
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_int_equal(a.paths, 2);
  assert_non_null(strstr(a.script, "iscsi:10.0.0.2:"));
  assert_non_null(strstr(a.script, "iscsi:10.0.1.2:"));
  assert_null(strstr(a.script, "iscsi:10.0.2.2:"));
  assert_non_null(strstr(a.reason, "1 boot connections beyond the first 2"));
  boot_answer_free(&a);
  json_decref(p);
  json_decref(hw);
}

static void test_sanboot_without_chap(void **state) {
  json_t *hw = hw_doc(NULL);
  json_t *p = profile_doc("Normal", CONN1);
  struct boot_answer a = {0};
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_int_equal(a.paths, 1);
  assert_null(strstr(a.script, "username"));
  assert_null(strstr(a.script, "password"));
  assert_non_null(strstr(a.script, "set initiator-iqn iqn.2024-11.org.streamer:host.node1.h1\n"));
  boot_answer_free(&a);
  json_decref(p);
  json_decref(hw);
}

static void test_wildcard_and_ipv6_portals(void **state) {
  json_t *hw = hw_doc(NULL);
  const char *c = "{\"id\":1,\"priority\":\"Primary\",\"targetName\":\"iqn.2024-11.org.s:v\","
                  "\"targetLun\":0,\"targetIp\":\"0.0.0.0\",\"targetPort\":3260},"
                  "{\"id\":2,\"priority\":\"Secondary\",\"targetName\":\"iqn.2024-11.org.s:v\","
                  "\"targetLun\":0,\"targetIp\":\"fd00::2\",\"targetPort\":3260}";
  json_t *p = profile_doc("Normal", c);
  struct boot_answer a = {0};
  /* No local address known: a wildcard portal cannot be written. */
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNSAFE);
  assert_non_null(strstr(a.reason, "wildcard"));
  assert_int_equal(boot_script_for(hw, p, MAC, "192.168.7.1", &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_non_null(strstr(a.script, "sanboot iscsi:192.168.7.1:::0:iqn.2024-11.org.s:v "
                                   "iscsi:[fd00::2]:::0:iqn.2024-11.org.s:v ||"));
  /* the connections carry no initiator: the hardware's is used */
  assert_non_null(strstr(a.script, "set initiator-iqn iqn.2024-11.org.streamer:host.node1.h1\n"));
  boot_answer_free(&a);
  json_decref(p);
  json_decref(hw);
}

static void test_unsafe_values(void **state) {
  struct boot_answer a = {0};
  /* A CHAP secret with '$' would be expanded by iPXE: refuse, never print it. */
  json_t *hw = hw_doc("\"secrets\":{\"chapSecret\":\"abc${net0/mac}xyz\"}");
  json_t *p = profile_doc("Normal", CONN1);
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNSAFE);
  assert_null(strstr(a.script, "abc"));
  assert_null(strstr(a.script, "sanboot"));
  json_decref(hw);
  json_decref(p);
  /* A CHAP name with a newline. */
  hw = hw_doc("\"secrets\":{\"chapSecret\":\"goodsecret12\"}");
  json_object_set_new(hw, "chapName", json_string("evil\nshell"));
  const char *c = "{\"id\":1,\"priority\":\"Primary\",\"targetName\":\"iqn.2024-11.org.s:v\","
                  "\"targetLun\":0,\"targetIp\":\"10.0.0.2\",\"targetPort\":3260}";
  p = profile_doc("Normal", c);
  assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNSAFE);
  json_decref(p);
  /* Bad portals: not an IP, port out of range, target with a space. */
  const char *bad[] = {"\"targetName\":\"iqn.x:v\",\"targetIp\":\"host.example\"",
                       "\"targetName\":\"iqn.x:v\",\"targetIp\":\"10.0.0.2\",\"targetPort\":0",
                       "\"targetName\":\"iqn.x:v\",\"targetIp\":\"10.0.0.2\",\"targetLun\":-1",
                       "\"targetName\":\"iqn.x v\",\"targetIp\":\"10.0.0.2\"",
                       "\"targetIp\":\"10.0.0.2\"",
                       NULL};
  for (int i = 0; bad[i]; i++) {
    char conn[512];
    snprintf(conn, sizeof conn, "{\"id\":1,\"priority\":\"Primary\",%s}", bad[i]);
    p = profile_doc("Normal", conn);
    assert_int_equal(boot_script_for(hw, p, MAC, NULL, &a), 0);
    assert_int_equal(a.kind, BOOT_UNSAFE);
    assert_null(strstr(a.script, "goodsecret12"));
    json_decref(p);
  }
  boot_answer_free(&a);
  json_decref(hw);
}

/* ---- the store ---- */
static char dir[] = "/tmp/streamer-test-boot-XXXXXX";

static void put(struct store *s, const char *coll, const char *id, const char *name, json_t *doc) {
  struct err e;
  err_init(&e);
  struct store_txn *t = store_begin(s);
  assert_int_equal(store_put(t, coll, id, name, doc, &e), 0);
  assert_int_equal(store_commit(t, &e), 0);
}

static void test_store_lookup(void **state) {
  strcpy(dir, "/tmp/streamer-test-boot-XXXXXX");
  assert_non_null(mkdtemp(dir));
  char path[300];
  snprintf(path, sizeof path, "%s/streamer.db", dir);
  struct store *s = NULL;
  struct err e;
  err_init(&e);
  assert_int_equal(store_open(&s, path, &e), 0);
  struct boot_answer a;
  assert_int_equal(boot_script(s, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNKNOWN_MAC);
  boot_answer_free(&a);

  json_t *hw = hw_doc("\"secrets\":{\"chapSecret\":\"s3cretS3cret\"}");
  put(s, "server-hardware", "h1", "node1", hw);
  /* the second MAC, stored in upper case */
  assert_int_equal(boot_script(s, "52:54:00:aa:bb:cc", NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_NO_PROFILE); /* the linked profile does not exist yet */
  boot_answer_free(&a);
  json_t *p = profile_doc("Normal", CONN1);
  put(s, "server-profiles", "p1", "web1", p);
  assert_int_equal(boot_script(s, "52:54:00:aa:bb:cc", NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_non_null(strstr(a.script, "set password s3cretS3cret\n"));
  boot_answer_free(&a);
  /* No link on the hardware: the profile naming it is found. */
  json_object_set_new(hw, "serverProfileUri", json_null());
  put(s, "server-hardware", "h1", "node1", hw);
  assert_int_equal(boot_script(s, MAC, NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_SANBOOT);
  assert_string_equal(a.profile, "web1");
  boot_answer_free(&a);
  /* Another MAC is unknown. */
  assert_int_equal(boot_script(s, "52:54:00:12:34:57", NULL, &a), 0);
  assert_int_equal(a.kind, BOOT_UNKNOWN_MAC);
  boot_answer_free(&a);
  json_decref(hw);
  json_decref(p);
  store_close(s);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* ---- client networks ---- */
static struct sockaddr_storage sa(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1)
    a4->sin_family = AF_INET;
  else {
    assert_int_equal(inet_pton(AF_INET6, ip, &a6->sin6_addr), 1);
    a6->sin6_family = AF_INET6;
  }
  return ss;
}

static int allow(const struct boot_nets *n, const char *ip) {
  struct sockaddr_storage ss = sa(ip);
  return boot_nets_allow(n, (struct sockaddr *)&ss);
}

static void test_client_networks(void **state) {
  struct boot_nets n;
  struct err e;
  err_init(&e);
  assert_int_equal(boot_nets_parse(NULL, &n, &e), 0);
  assert_true(allow(&n, "203.0.113.9"));
  assert_int_equal(boot_nets_parse("10.0.0.0/8,192.168.1.7,fd00::/64,172.16.0.0/12", &n, &e), 0);
  assert_int_equal(n.n, 4);
  assert_true(allow(&n, "10.200.3.4"));
  assert_true(allow(&n, "192.168.1.7"));
  assert_false(allow(&n, "192.168.1.8"));
  assert_true(allow(&n, "172.31.255.255"));
  assert_false(allow(&n, "172.32.0.1"));
  assert_true(allow(&n, "fd00::1234"));
  assert_false(allow(&n, "fd00:0:0:1::1"));
  assert_true(allow(&n, "::ffff:10.1.2.3")); /* IPv4-mapped */
  assert_false(allow(&n, "::ffff:11.1.2.3"));
  assert_false(allow(&n, "127.0.0.1"));
  assert_int_equal(boot_nets_parse("0.0.0.0/0", &n, &e), 0);
  assert_true(allow(&n, "8.8.8.8"));
  assert_false(allow(&n, "2001:db8::1"));
  const char *bad[] = {"10.0.0.0/33",  "10.0.0.0/",
                       "10.0.0.0/-1",  "10.0.0.0/8,",
                       ",10.0.0.0/8",  "10.0.0.0/8,,10.1.0.0/16",
                       "host.example", "fd00::/129",
                       "10.0.0.0/8 ",  NULL};
  for (int i = 0; bad[i]; i++) {
    err_clear(&e);
    assert_int_equal(boot_nets_parse(bad[i], &n, &e), -1);
    assert_string_equal(e.code, "INVALID_BOOT_CLIENTS");
  }
  err_clear(&e);
}

static void test_chain_script(void **state) {
  char *s = boot_chain_script(0, "10.0.2.2:8080");
  assert_string_equal(s, "#!ipxe\nchain http://10.0.2.2:8080/boot/ipxe?mac=${netX/mac}\n");
  free(s);
  s = boot_chain_script(1, "[fd00::1]:8443");
  assert_string_equal(s, "#!ipxe\nchain https://[fd00::1]:8443/boot/ipxe?mac=${netX/mac}\n");
  free(s);
  s = boot_chain_script(1, "streamer.example.com");
  assert_non_null(strstr(s, "https://streamer.example.com/boot/ipxe?"));
  free(s);
  const char *bad[] = {"", "a b", "x/y", "h${net0/mac}", "h\nexit", "user@host", NULL};
  for (int i = 0; bad[i]; i++)
    assert_null(boot_chain_script(0, bad[i]));
  assert_null(boot_chain_script(0, NULL));
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mac_forms),
      cmocka_unit_test(test_exit_answers),
      cmocka_unit_test(test_sanboot_multipath_chap),
      cmocka_unit_test(test_sanboot_without_chap),
      cmocka_unit_test(test_at_most_two_paths),
      cmocka_unit_test(test_wildcard_and_ipv6_portals),
      cmocka_unit_test(test_unsafe_values),
      cmocka_unit_test(test_store_lookup),
      cmocka_unit_test(test_client_networks),
      cmocka_unit_test(test_chain_script),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
