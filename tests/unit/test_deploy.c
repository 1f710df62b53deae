/* test_deploy.c — the pure pieces of deployments: MAC addresses
 * (hw_mac_normalize) and the attribute merge of plan.c as a deployment uses
 * it — the deployment plan's layer, non-editable values, system attributes,
 * NIC modes by sub-parameter (constraint, dhcp, addresses emptied outside
 * static mode), values carried across plans, VolumeSize, every problem in
 * one error. The pipeline itself is tested end to end by
 * tests/e2e/test_deploy.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "deploy/deploy.h"
#include "deploy/plan_int.h"
#include "script/attr.h"

static void test_macs(void **state) {
  (void)state;
  char out[18];
  static const char *const good[][2] = {{"52:54:00:12:34:56", "52:54:00:12:34:56"},
                                        {"52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"},
                                        {"5254.00ab.cdef", "52:54:00:ab:cd:ef"},
                                        {"525400ABCDEF", "52:54:00:ab:cd:ef"}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    assert_int_equal(hw_mac_normalize(good[i][0], out), 0);
    assert_string_equal(out, good[i][1]);
  }
  static const char *const bad[] = {"",
                                    "52:54:00:12:34",
                                    "52:54:00:12:34:56:78",
                                    "52:54-00:12:34:56",
                                    "g2:54:00:12:34:56",
                                    "52:54:00:12:3456",
                                    "52::54:00:12:34:56"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (hw_mac_normalize(bad[i], out) == 0) fail_msg("accepted \"%s\"", bad[i]);
  assert_int_equal(hw_mac_normalize(NULL, out), -1);
}

/* A plan whose one script uses `content`, declared attributes `bp` (JSON). */
static void make_plan(struct plan *p, const char *content, const char *bp) {
  memset(p, 0, sizeof *p);
  snprintf(p->bp_id, sizeof p->bp_id, "bp1");
  p->bp_name = strdup("BP");
  p->derived = attr_derive(content);
  p->bp_decls = json_loads(bp, 0, NULL);
  assert_non_null(p->bp_decls);
}

static const char *val(struct plan *p, const char *n) {
  const char *v = plan_value(p, n);
  return v ? v : "(none)";
}

static const char *NIC_DECL =
    "[{\"name\":\"MgmtNIC\",\"type\":\"nic\",\"value\":null,"
    "\"constraints\":\"{\\\"ipv4static\\\":true,\\\"ipv4dhcp\\\":true,\\\"ipv4disable\\\":false,"
    "\\\"parameters\\\":[\\\"dhcp\\\",\\\"dns1\\\",\\\"gateway\\\",\\\"ipaddress\\\",\\\"mac\\\","
    "\\\"netmask\\\"]}\"},"
    "{\"name\":\"Hostname\",\"type\":\"hostname\",\"value\":\"\"},"
    "{\"name\":\"Pw\",\"type\":\"password\",\"value\":\"\"}]";

static void test_nic_modes(void **state) {
  (void)state;
  struct plan p;
  struct err e;
  err_init(&e);
  make_plan(&p, "@MgmtNIC.ipaddress@ @MgmtNIC.dhcp@ @Hostname@ @_Initiator1.ip@", NIC_DECL);
  json_t *given = json_loads("[{\"name\":\"MgmtNIC.ipaddress\",\"value\":\"10.0.0.5\"},"
                             "{\"name\":\"MgmtNIC.netmask\",\"value\":\"255.255.255.0\"},"
                             "{\"name\":\"Hostname\",\"value\":\"node-17\"}]",
                             0, NULL);
  json_t *sys = json_pack("{s:s}", "_Initiator1.ip", "10.9.9.9");
  struct plan_attr_opts o = {.system = sys, .nic_modes = 1};
  json_t *eff = NULL;
  assert_int_equal(plan_attributes(&p, "profile", given, &o, &eff, &e), 0);
  /* an address given without a constraint: static */
  assert_string_equal(val(&p, "MgmtNIC.constraint"), "static");
  assert_string_equal(val(&p, "MgmtNIC.dhcp"), "false");
  assert_string_equal(val(&p, "MgmtNIC.ipaddress"), "10.0.0.5");
  assert_string_equal(val(&p, "Hostname"), "node-17");
  assert_string_equal(val(&p, "_Initiator1.ip"), "10.9.9.9");
  assert_int_equal(json_array_size(eff), 3);
  json_decref(eff);
  json_decref(given);
  /* dhcp: the addresses are empty for scripts */
  given = json_loads("[{\"name\":\"MgmtNIC.constraint\",\"value\":\"dhcp\"},"
                     "{\"name\":\"MgmtNIC.ipaddress\",\"value\":\"10.0.0.5\"}]",
                     0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o, NULL, &e), 0);
  assert_string_equal(val(&p, "MgmtNIC.constraint"), "dhcp");
  assert_string_equal(val(&p, "MgmtNIC.dhcp"), "true");
  assert_string_equal(val(&p, "MgmtNIC.ipaddress"), "");
  json_decref(given);
  /* disabled is not allowed by this NIC; a bad address in static mode; an
   * undeclared sub-parameter; a system attribute given; all at once */
  given = json_loads("[{\"name\":\"MgmtNIC.constraint\",\"value\":\"disabled\"},"
                     "{\"name\":\"Hostname\",\"value\":\"bad host name\"},"
                     "{\"name\":\"_Initiator1.ip\",\"value\":\"1.2.3.4\"},"
                     "{\"name\":\"Nope\",\"value\":\"x\"}]",
                     0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o, NULL, &e), -1);
  assert_string_equal(e.code, "INVALID_ATTRIBUTES");
  assert_int_equal(json_array_size(e.nested), 4);
  err_clear(&e);
  json_decref(given);
  given = json_loads("[{\"name\":\"MgmtNIC.constraint\",\"value\":\"static\"},"
                     "{\"name\":\"MgmtNIC.ipaddress\",\"value\":\"10.0.0.300\"},"
                     "{\"name\":\"MgmtNIC.vlanid\",\"value\":\"5\"}]",
                     0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o, NULL, &e), -1);
  assert_int_equal(json_array_size(e.nested), 2);
  err_clear(&e);
  json_decref(given);
  json_decref(sys);
  plan_clear(&p);
}

static void test_layers_and_carry(void **state) {
  (void)state;
  struct plan p;
  struct err e;
  err_init(&e);
  make_plan(&p, "@Hostname@ @Pw@ @Old@", NIC_DECL);
  json_t *dp = json_loads("[{\"name\":\"Hostname\",\"type\":\"hostname\",\"value\":\"fixed\","
                          "\"editable\":false,\"visible\":true}]",
                          0, NULL);
  json_t *carried = json_loads("[{\"name\":\"Pw\",\"value\":\"s3cret\"},"
                               "{\"name\":\"Gone\",\"value\":\"dropped\"}]",
                               0, NULL);
  struct plan_attr_opts o = {.dp_decls = dp, .dp_name = "DP", .carried = carried, .nic_modes = 1};
  /* an empty password value keeps the carried one; unknown carried names are dropped */
  json_t *given = json_loads("[{\"name\":\"Pw\",\"value\":\"\"}]", 0, NULL);
  json_t *eff = NULL;
  assert_int_equal(plan_attributes(&p, "profile", given, &o, &eff, &e), 0);
  assert_string_equal(val(&p, "Hostname"), "fixed");
  assert_string_equal(val(&p, "Pw"), "s3cret");
  assert_int_equal(json_array_size(eff), 1);
  assert_int_equal(json_array_size(p.secret_values), 1);
  char *m = plan_masked("pw is s3cret and s3cret", p.secret_values);
  assert_string_equal(m, "pw is ******** and ********");
  free(m);
  json_decref(eff);
  json_decref(given);
  /* the deployment plan's non-editable value cannot change */
  given = json_loads("[{\"name\":\"Hostname\",\"value\":\"other\"}]", 0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o, NULL, &e), -1);
  assert_non_null(strstr(e.message, "not editable"));
  err_clear(&e);
  json_decref(given);
  /* VolumeSize for an empty volume */
  o.need_volume_size = 1;
  assert_int_equal(plan_attributes(&p, "profile", NULL, &o, NULL, &e), -1);
  assert_non_null(strstr(e.message, "VolumeSize"));
  err_clear(&e);
  json_decref(dp);
  json_decref(carried);
  plan_clear(&p);
  make_plan(&p, "@VolumeSize@", "[{\"name\":\"VolumeSize\",\"type\":\"number\",\"value\":\"\"}]");
  struct plan_attr_opts o2 = {.need_volume_size = 1};
  given = json_loads("{\"VolumeSize\":\"0\"}", 0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o2, NULL, &e), -1);
  err_clear(&e);
  json_decref(given);
  given = json_loads("{\"VolumeSize\":64}", 0, NULL);
  assert_int_equal(plan_attributes(&p, "profile", given, &o2, NULL, &e), 0);
  assert_string_equal(val(&p, "VolumeSize"), "64");
  json_decref(given);
  plan_clear(&p);
}

static void test_logcap(void **state) {
  (void)state;
  struct logcap l;
  assert_int_equal(logcap_init(&l, 16, 16), 0);
  for (int i = 0; i < 20; i++)
    logcap_take(&l, "line of text\n", 13);
  uint64_t cut = 0;
  char *t = logcap_text(&l, &cut);
  assert_non_null(strstr(t, "bytes of the log left out"));
  assert_true(cut > 0);
  assert_int_equal(strncmp(t, "line of text\nlin", 16), 0);
  free(t);
  logcap_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_macs),
      cmocka_unit_test(test_nic_modes),
      cmocka_unit_test(test_layers_and_carry),
      cmocka_unit_test(test_logcap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
