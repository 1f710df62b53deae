/* test_attr.c — unit tests of src/script/attr.c (custom attributes). Run with
 * the repository root as the working directory: the corpus tests read the
 * real plan scripts under ../shared/research/planscripts. */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

// clang-format on

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "script/attr.h"

/* The corpus: $STREAMER_RESEARCH/planscripts (the Makefile sets it), else
 * ../shared/research/planscripts beside the checkout. */
static const char *corpus_dir(void) {
  static char buf[4096];
  const char *r = getenv("STREAMER_RESEARCH");
  snprintf(buf, sizeof buf, "%s/planscripts", r && *r ? r : "../shared/research");
  return buf;
}

/* ---- helpers ---------------------------------------------------------------- */

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
  if (!j) fail_msg("bad test JSON %s: %s", s, e.text);
  return j;
}

/* A declaration {"name","type","constraints","value"}; constraints is the
 * JSON-encoded string form HPE uses (NULL = absent). */
static json_t *mkdecl(const char *name, const char *type, const char *constraints,
                      const char *value) {
  json_t *d = json_object();
  json_object_set_new(d, "name", json_string(name));
  if (type) json_object_set_new(d, "type", json_string(type));
  if (constraints) json_object_set_new(d, "constraints", json_string(constraints));
  json_object_set_new(d, "value", value ? json_string(value) : json_null());
  json_object_set_new(d, "description", json_string(""));
  return d;
}

static int count_substr(json_t *violations, const char *needle) {
  int n = 0;
  size_t i;
  json_t *v;
  json_array_foreach(violations, i, v) {
    const char *m = json_string_value(json_object_get(v, "message"));
    if (m && strstr(m, needle)) n++;
  }
  return n;
}

/* Value check of one value against (type, constraints); returns the count and
 * leaves the violations in *out (caller decrefs) when out is non-NULL. */
static int vcheck_out(const char *type, const char *constraints, const char *value, json_t **out) {
  json_t *d = mkdecl("A", type, constraints, NULL);
  json_t *v = json_array();
  int n = attr_value_check(d, value, NULL, v);
  assert_int_equal((size_t)n, json_array_size(v));
  json_decref(d);
  if (out)
    *out = v;
  else
    json_decref(v);
  return n;
}

static int vcheck(const char *type, const char *constraints, const char *value) {
  return vcheck_out(type, constraints, value, NULL);
}

#define NIC_ALL                                                                                    \
  "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":true,\"parameters\":[\"dns1\","          \
  "\"dns2\",\"domain\",\"gateway\",\"ipaddress\",\"mac\",\"netmask\",\"vlanid\"]}"
#define NIC_STATIC_ONLY                                                                            \
  "{\"ipv4static\":true,\"ipv4dhcp\":false,\"ipv4disable\":false,\"parameters\":[\"dns1\","        \
  "\"gateway\",\"ipaddress\",\"mac\",\"netmask\"]}"

static int nic_check_out(const char *constraints, const char *values_json, json_t **out) {
  json_t *d = mkdecl("ManagementNIC", "nic", constraints, NULL);
  json_t *nv = values_json ? parse(values_json) : NULL;
  json_t *v = json_array();
  int n = attr_value_check(d, NULL, nv, v);
  assert_int_equal((size_t)n, json_array_size(v));
  json_decref(nv);
  json_decref(d);
  if (out)
    *out = v;
  else
    json_decref(v);
  return n;
}

static int nic_check(const char *constraints, const char *values_json) {
  return nic_check_out(constraints, values_json, NULL);
}

static char *subst(const char *text, const char *values_json) {
  json_t *v = values_json ? parse(values_json) : NULL;
  char *s = attr_substitute(text, v);
  json_decref(v);
  assert_non_null(s);
  return s;
}

static void assert_subst(const char *text, const char *values_json, const char *want) {
  char *s = subst(text, values_json);
  assert_string_equal(s, want);
  free(s);
}

/* ---- scanning ----------------------------------------------------------------- */

static void test_scan_plain(void **state) {
  struct attr_token *t;
  int n = attr_scan("hostname @HostName@\n", &t);
  assert_int_equal(n, 1);
  assert_int_equal(t[0].offset, 9);
  assert_int_equal(t[0].length, 10);
  assert_string_equal(t[0].name, "HostName");
  assert_null(t[0].sub);
  assert_null(t[0].def);
  attr_tokens_free(t, (size_t)n);
}

static void test_scan_default(void **state) {
  struct attr_token *t;
  const char *text = "echo \"@ExampleString:Hello World! /x.y #z@\"";
  int n = attr_scan(text, &t);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].name, "ExampleString");
  assert_null(t[0].sub);
  assert_string_equal(t[0].def, "Hello World! /x.y #z");
  assert_int_equal(t[0].offset, 6);
  assert_int_equal(t[0].offset + t[0].length, strlen(text) - 1);
  attr_tokens_free(t, (size_t)n);
}

static void test_scan_empty_default(void **state) {
  struct attr_token *t;
  int n = attr_scan("x=@Foo:@;", &t);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].name, "Foo");
  assert_non_null(t[0].def);
  assert_string_equal(t[0].def, "");
  assert_int_equal(t[0].length, 6);
  attr_tokens_free(t, (size_t)n);
}

static void test_scan_sub(void **state) {
  struct attr_token *t;
  int n = attr_scan("mac=@ManagementNIC.mac@ vlan=@ManagementNIC.vlanid:0@", &t);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].name, "ManagementNIC");
  assert_string_equal(t[0].sub, "mac");
  assert_null(t[0].def);
  assert_int_equal(t[0].offset, 4);
  assert_int_equal(t[0].length, 19);
  assert_string_equal(t[1].name, "ManagementNIC");
  assert_string_equal(t[1].sub, "vlanid");
  assert_string_equal(t[1].def, "0");
  attr_tokens_free(t, (size_t)n);
}

static void test_scan_name_charset(void **state) {
  struct attr_token *t;
  int n = attr_scan("@Datacenter-VC@ @_Initiator1.ip@ @a_1-b.c-2_d@", &t);
  assert_int_equal(n, 3);
  assert_string_equal(t[0].name, "Datacenter-VC");
  assert_string_equal(t[1].name, "_Initiator1");
  assert_string_equal(t[1].sub, "ip");
  assert_string_equal(t[2].name, "a_1-b");
  assert_string_equal(t[2].sub, "c-2_d");
  attr_tokens_free(t, (size_t)n);
}

static void assert_no_tokens(const char *text) {
  struct attr_token *t;
  int n = attr_scan(text, &t);
  if (n != 0) fail_msg("expected no token in \"%s\", got %d", text, n);
  assert_null(t);
  /* and substitution leaves the text unchanged */
  assert_subst(text, "{\"host\":\"X\",\"Foo\":\"X\",\"array\":\"X\"}", text);
}

static void test_scan_not_tokens(void **state) {
  assert_no_tokens("for user in \"${array[@]}\"");
  assert_no_tokens("_check_options \"$@\"");
  assert_no_tokens("scp file user@host:/tmp");
  assert_no_tokens("ssh user@host \"uptime\"");
  assert_no_tokens("mail admin@example.com");
  assert_no_tokens("escaped \\@Foo@ here");
  assert_no_tokens("[[ $x =~ ^[a-z]+\\@[a-z]+\\.@ ]]");
  assert_no_tokens("a lone @ sign");
  assert_no_tokens("@");
  assert_no_tokens("@@");
  assert_no_tokens("@1abc@");
  assert_no_tokens("@-abc@");
  assert_no_tokens("@abc.@");
  assert_no_tokens("@abc.1x@");
  assert_no_tokens("@a.b.c@");
  assert_no_tokens("@a b@");
  assert_no_tokens("@Foo\n@");
  assert_no_tokens("@Foo:bar\nbaz@");
  assert_no_tokens("@Foo:never closed");
  assert_no_tokens("");
}

static void test_scan_null(void **state) {
  struct attr_token *t = (struct attr_token *)&t;
  assert_int_equal(attr_scan(NULL, &t), 0);
  assert_null(t);
  attr_tokens_free(NULL, 0);
}

/* The SQL Server RA form: the first '@' is literal, the second opens the token. */
static void test_scan_sql_ra_double_at(void **state) {
  struct attr_token *t;
  int n = attr_scan("ssh-copy-id -o StrictHostKeyChecking=no root@@Node1Hostname@ ;", &t);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].name, "Node1Hostname");
  assert_int_equal(t[0].offset, 45);
  assert_int_equal(t[0].length, 15);
  attr_tokens_free(t, (size_t)n);
  assert_subst("root@@Node1Hostname@ ;", "{\"Node1Hostname\":\"n1\"}", "root@n1 ;");
}

/* The Oracle RAC RA form: two surplus '@' stay literal, one token. */
static void test_scan_oracle_ra_triple_at(void **state) {
  struct attr_token *t;
  int n = attr_scan("su - oracle -c \"ssh oracle@@@OtherHostname@ date\"", &t);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].name, "OtherHostname");
  assert_null(t[0].sub);
  assert_int_equal(t[0].offset, 28);
  attr_tokens_free(t, (size_t)n);
  assert_subst("oracle@@@OtherHostname@", "{\"OtherHostname\":\"rac2\"}", "oracle@@rac2");
}

static void test_scan_adjacent(void **state) {
  struct attr_token *t;
  int n = attr_scan("@ca1@@ca2@", &t);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].name, "ca1");
  assert_int_equal(t[0].offset, 0);
  assert_int_equal(t[0].length, 5);
  assert_string_equal(t[1].name, "ca2");
  assert_int_equal(t[1].offset, 5);
  attr_tokens_free(t, (size_t)n);
  assert_subst("@ca1@@ca2@", "{\"ca1\":\"1\",\"ca2\":\"2\"}", "12");
  assert_subst("@a:x@@b:y@", NULL, "xy");
}

/* A default ends at the first '@': "/dev/sda" then a literal "1". */
static void test_scan_default_then_literal(void **state) {
  struct attr_token *t;
  int n = attr_scan("pvcreate @DiskName:/dev/sda@1 @DiskName:/dev/sda@2", &t);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].def, "/dev/sda");
  assert_string_equal(t[1].def, "/dev/sda");
  attr_tokens_free(t, (size_t)n);
  assert_subst("pvcreate @DiskName:/dev/sda@1 @DiskName:/dev/sda@2", NULL,
               "pvcreate /dev/sda1 /dev/sda2");
  assert_subst("pvcreate @DiskName:/dev/sda@1", "{\"DiskName\":\"/dev/sdb\"}",
               "pvcreate /dev/sdb1");
}

/* A failed match consumes only its '@': the scan resumes right after it. */
static void test_scan_resume_after_failed_match(void **state) {
  struct attr_token *t;
  int n = attr_scan("user@host @Foo@ \\@Bar@Baz@ x@ @Qux@", &t);
  assert_int_equal(n, 3);
  assert_string_equal(t[0].name, "Foo");
  assert_string_equal(t[1].name, "Baz"); /* "\@" is literal, "Bar@" too, "@Baz@" a token */
  assert_string_equal(t[2].name, "Qux");
  attr_tokens_free(t, (size_t)n);
}

/* ---- derive ----------------------------------------------------------------------- */

static void test_derive(void **state) {
  const char *content =
      "echo @HostName@ @DomainName:example.com@\n"
      "echo @HostName:ignored@ @DiskName@ @DiskName:/dev/sda@ @DiskName:/dev/sdb@\n"
      "mac=@ManagementNIC.mac@ vlan=@ManagementNIC.vlanid:0@\n"
      "iscsi=@_Initiator1.ip@ @_System@ \"$@\" @Empty:@\n";
  json_t *d = attr_derive(content);
  json_t *want = parse("[{\"name\":\"HostName\",\"value\":\"ignored\"},"
                       "{\"name\":\"DomainName\",\"value\":\"example.com\"},"
                       "{\"name\":\"DiskName\",\"value\":\"/dev/sda\"},"
                       "{\"name\":\"ManagementNIC.mac\",\"value\":\"\"},"
                       "{\"name\":\"ManagementNIC.vlanid\",\"value\":\"0\"},"
                       "{\"name\":\"Empty\",\"value\":\"\"}]");
  assert_true(json_equal(d, want));
  json_decref(d);
  json_decref(want);
}

/* The first default given wins, even an empty one. */
static void test_derive_first_default(void **state) {
  json_t *d = attr_derive("@A:@ @A:x@ @B:1@ @B:2@");
  json_t *want = parse("[{\"name\":\"A\",\"value\":\"\"},{\"name\":\"B\",\"value\":\"1\"}]");
  assert_true(json_equal(d, want));
  json_decref(d);
  json_decref(want);
  d = attr_derive("");
  assert_true(json_is_array(d));
  assert_int_equal(json_array_size(d), 0);
  json_decref(d);
  d = attr_derive(NULL);
  assert_int_equal(json_array_size(d), 0);
  json_decref(d);
}

/* ---- substitute ------------------------------------------------------------------ */

static void test_substitute(void **state) {
  const char *vals = "{\"HostName\":\"esx01\",\"ManagementNIC.ipaddress\":\"10.0.0.5\","
                     "\"Size\":42,\"Empty\":\"\",\"Null\":null}";
  assert_subst("h=@HostName@ ip=@ManagementNIC.ipaddress@", vals, "h=esx01 ip=10.0.0.5");
  assert_subst("@HostName:dflt@", vals, "esx01");            /* value beats default */
  assert_subst("@Missing:dflt@|@Missing@|", vals, "dflt||"); /* default, then "" */
  assert_subst("@ManagementNIC.netmask@", vals, "");
  assert_subst("@Size@", vals, "42");
  assert_subst("@Empty:d@ @Null:d@ @Empty@", vals, "d d ");
  assert_subst("@ManagementNIC@", vals, "");
  assert_subst("for x in \"${a[@]}\"; do f \"$@\" \\@HostName@; done @HostName@", vals,
               "for x in \"${a[@]}\"; do f \"$@\" \\@HostName@; done esx01");
  assert_subst("@HostName@", NULL, "");
  /* values are inserted literally, never re-scanned */
  assert_subst("@A@", "{\"A\":\"@B@\",\"B\":\"no\"}", "@B@");
  char *s = attr_substitute(NULL, NULL);
  assert_string_equal(s, "");
  free(s);
}

/* ---- types ------------------------------------------------------------------------ */

static void test_type_parse(void **state) {
  assert_int_equal(attr_type_parse(NULL), ATTR_STRING);
  assert_int_equal(attr_type_parse("string"), ATTR_STRING);
  assert_int_equal(attr_type_parse("String"), ATTR_STRING);
  assert_int_equal(attr_type_parse("NUMBER"), ATTR_NUMBER);
  assert_int_equal(attr_type_parse("password"), ATTR_PASSWORD);
  assert_int_equal(attr_type_parse("Option"), ATTR_OPTION);
  assert_int_equal(attr_type_parse("fqdn"), ATTR_FQDN);
  assert_int_equal(attr_type_parse("HostName"), ATTR_HOSTNAME);
  assert_int_equal(attr_type_parse("IPv4"), ATTR_IPV4);
  assert_int_equal(attr_type_parse("nic"), ATTR_NIC);
  assert_int_equal(attr_type_parse("integer"), ATTR_TYPE_INVALID);
  assert_int_equal(attr_type_parse(""), ATTR_TYPE_INVALID);
}

/* ---- declaration checks ---------------------------------------------------------- */

static int dcheck_out(json_t *decl, json_t **out) {
  json_t *v = json_array();
  int n = attr_decl_check(decl, v);
  assert_int_equal((size_t)n, json_array_size(v));
  json_decref(decl);
  if (out)
    *out = v;
  else
    json_decref(v);
  return n;
}

static int dcheck(json_t *decl) { return dcheck_out(decl, NULL); }

static void test_decl_valid_real_examples(void **state) {
  assert_int_equal(dcheck(mkdecl("ManagementNIC2", "nic", NIC_ALL, NULL)), 0);
  assert_int_equal(dcheck(mkdecl("ManagementNIC", "nic",
                                 "{\"ipv4static\":\"true\",\"ipv4dhcp\":"
                                 "\"false\",\"ipv4disable\":false,"
                                 "\"ipv4noteaming\":false,\"parameters\":["
                                 "\"dhcp\",\"ipaddress1\",\"mac1\"],"
                                 "\"options\":[null]}",
                                 "")),
                   0);
  assert_int_equal(
      dcheck(mkdecl("DiskName", "string", "{\"regex\":\"\",\"helpText\":\"\"}", "/dev/sda")), 0);
  assert_int_equal(
      dcheck(mkdecl("FirstNicTeamName", "String", "{\"options\":[\"team0\"]}", "team0")), 0);
  assert_int_equal(dcheck(mkdecl("Name", "string", "{\"regex\":\"[A-Z][a-z]*[0-9]*\"}", "Abc1")),
                   0);
  assert_int_equal(dcheck(mkdecl("Size", "number",
                                 "{\"minimum\":\"1\",\"maximum\":\"100\",\"increment\":\"10\","
                                 "\"unit\":\"Centi-Units\"}",
                                 "50")), /* HPE's own ExampleNumber1 */
                   0);
  assert_int_equal(dcheck(mkdecl("VolumeSize", "number", "{\"unit\":\"MiB\"}", "")), 0);
  assert_int_equal(dcheck(mkdecl("Password", "password",
                                 "{\"minlen\":\"8\",\"maxlen\":\"12\",\"allowedchars\":"
                                 "\"ABCabc123!@#\",\"options\":[\"\"]}",
                                 "abcABC12")),
                   0);
  assert_int_equal(
      dcheck(mkdecl("SSH", "option", "{\"options\":[\"Enabled\",\"Disabled\"]}", "Enabled")), 0);
  assert_int_equal(
      dcheck(mkdecl("DomainName", "fqdn", "{\"helpText\":\"\",\"options\":[\"\"]}", "example.com")),
      0);
  assert_int_equal(dcheck(mkdecl("HostName", "hostname", "{\"helpText\":\"\"}", "esx01")), 0);
  assert_int_equal(dcheck(mkdecl("Vip_IP", "ipv4",
                                 "{\"ipType\":\"manage-externally\","
                                 "\"helpText\":\"\"}",
                                 "10.1.2.3")),
                   0);
  /* constraints given as an object, or null, or absent; deployment-plan fields */
  json_t *d = mkdecl("X", "string", NULL, "v");
  json_object_set_new(d, "constraints", parse("{\"regex\":\"v+\"}"));
  json_object_set_new(d, "visible", json_string("false"));
  json_object_set_new(d, "editable", json_true());
  json_object_set_new(d, "id", json_string("7f18d534-619d-4fa3-a9d6-eaf28e7b9a87"));
  assert_int_equal(dcheck(d), 0);
  d = mkdecl("X", NULL, NULL, NULL);
  json_object_set_new(d, "constraints", json_null());
  assert_int_equal(dcheck(d), 0);
}

/* A declaration needs no value, whatever its type. */
static void test_decl_no_value_required(void **state) {
  assert_int_equal(dcheck(mkdecl("H", "hostname", "{}", "")), 0);
  assert_int_equal(dcheck(mkdecl("H", "fqdn", "{}", NULL)), 0);
  assert_int_equal(dcheck(mkdecl("H", "ipv4", "{}", "")), 0);
  assert_int_equal(dcheck(mkdecl("H", "number", "{\"minimum\":\"1\"}", "")), 0);
  assert_int_equal(dcheck(mkdecl("H", "option", "{\"options\":[\"a\"]}", "")), 0);
  assert_int_equal(dcheck(mkdecl("H", "password", "{\"minlen\":\"8\"}", "")), 0);
}

static void test_decl_violation_shape(void **state) {
  json_t *v;
  assert_int_equal(dcheck_out(mkdecl("Hostname", "hostname", "{}", "bad.name"), &v), 1);
  json_t *e = json_array_get(v, 0);
  assert_string_equal(json_string_value(json_object_get(e, "errorCode")), "INVALID_ATTRIBUTE");
  const char *msg = json_string_value(json_object_get(e, "message"));
  assert_non_null(strstr(msg, "attribute \"Hostname\": "));
  assert_int_equal(strncmp(msg, "attribute \"Hostname\": ", 22), 0);
  assert_non_null(strstr(msg, "bad.name"));
  assert_string_equal(json_string_value(json_object_get(e, "details")), "");
  json_t *ra = json_object_get(e, "recommendedActions");
  assert_int_equal(json_array_size(ra), 1);
  assert_string_equal(json_string_value(json_array_get(ra, 0)),
                      "Correct the attribute value and retry.");
  assert_true(json_is_array(json_object_get(e, "nestedErrors")));
  assert_int_equal(json_array_size(json_object_get(e, "nestedErrors")), 0);
  assert_true(json_is_null(json_object_get(e, "errorSource")));
  assert_true(json_is_object(json_object_get(e, "data")));
  assert_int_equal(json_object_size(json_object_get(e, "data")), 0);
  assert_int_equal(json_object_size(e), 7);
  json_decref(v);
}

static void test_decl_bad_name(void **state) {
  json_t *v;
  assert_int_equal(dcheck(mkdecl("bad name", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("1abc", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("-abc", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("a.b", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("a@b", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("", "string", "{}", "")), 1);
  assert_int_equal(dcheck(mkdecl("_Sys-1_x", "string", "{}", "")), 0);
  json_t *d = json_pack("{s:i,s:s}", "name", 5, "type", "string");
  assert_int_equal(dcheck(d), 1);
  assert_int_equal(dcheck_out(json_string("not an object"), &v), 1);
  json_decref(v);
}

static void test_decl_bad_type(void **state) {
  json_t *v;
  assert_int_equal(dcheck_out(mkdecl("Count", "integer", "{}", "5"), &v), 1);
  assert_int_equal(count_substr(v, "\"integer\""), 1);
  assert_int_equal(count_substr(v, "attribute \"Count\""), 1);
  json_decref(v);
  json_t *d = mkdecl("Count", NULL, "{}", "");
  json_object_set_new(d, "type", json_integer(3));
  assert_int_equal(dcheck(d), 1);
  assert_int_equal(dcheck(mkdecl("Count", "NUMBER", "{}", "5")), 0);
}

static void test_decl_bad_constraints(void **state) {
  json_t *v;
  assert_int_equal(dcheck(mkdecl("A", "string", "not json", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "string", "[1,2]", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "string", "", "")), 0); /* "" = {} */
  json_t *d = mkdecl("A", "string", NULL, "");
  json_object_set_new(d, "constraints", json_integer(1));
  assert_int_equal(dcheck(d), 1);
  /* unknown keys for the type, each named */
  assert_int_equal(
      dcheck_out(mkdecl("A", "string", "{\"minimum\":\"1\",\"ipType\":\"x\"}", ""), &v), 2);
  assert_int_equal(count_substr(v, "\"minimum\""), 1);
  assert_int_equal(count_substr(v, "\"ipType\""), 1);
  json_decref(v);
  assert_int_equal(dcheck(mkdecl("A", "hostname", "{\"ipType\":\"manage-externally\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "fqdn", "{\"regex\":\"x\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"maxlen\":\"3\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "password", "{\"regex\":\"x\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "option", "{\"parameters\":[]}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "nic", "{\"unit\":\"GB\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "ipv4",
                                 "{\"ipType\":\"manage-externally\","
                                 "\"helpText\":\"h\",\"options\":[\"\"]}",
                                 "")),
                   0);
  /* malformed values of known keys */
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"minimum\":\"one\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"minimum\":\"10\",\"maximum\":\"1\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"increment\":\"0\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"minimum\":5,\"maximum\":\"\"}", "")), 0);
  assert_int_equal(dcheck(mkdecl("A", "password", "{\"minlen\":\"-1\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "password", "{\"minlen\":\"9\",\"maxlen\":\"8\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "option", "{\"options\":\"a,b\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "option", "{\"options\":[1]}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "nic", "{\"ipv4static\":\"yes\"}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "nic", "{\"parameters\":[\"bad name\"]}", "")), 1);
  assert_int_equal(dcheck(mkdecl("A", "string", "{\"helpText\":5}", "")), 1);
}

static void test_decl_regex(void **state) {
  json_t *v;
  assert_int_equal(dcheck_out(mkdecl("A", "string", "{\"regex\":\"([a-z\"}", ""), &v), 1);
  assert_int_equal(count_substr(v, "is not a valid regular expression"), 1);
  json_decref(v);
  /* HPE's regexes are Perl-style: the SAP bundles' lookahead compiles ... */
  assert_int_equal(dcheck(mkdecl("SapInstanceNumber", "string",
                                 "{\"regex\":\"^(?!(98|99))[0-9]{2}$\",\"helpText\":\"\"}", "00")),
                   0);
  /* ... and values are checked against it, as a whole */
  assert_int_equal(vcheck("string", "{\"regex\":\"^(?!(98|99))[0-9]{2}$\"}", "98"), 1);
  assert_int_equal(vcheck("string", "{\"regex\":\"^(?!(98|99))[0-9]{2}$\"}", "42"), 0);
  assert_int_equal(vcheck("string", "{\"regex\":\"[0-9]{2}\"}", "123"), 1);
  assert_int_equal(vcheck("string", "{\"regex\":\"\\\\d+\"}", "123"), 0);
  /* a catastrophic pattern is bounded by the match limit, never hangs */
  assert_int_equal(vcheck("string", "{\"regex\":\"(a+)+b\"}", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"),
                   1);
}

static void test_decl_value_checked(void **state) {
  assert_int_equal(dcheck(mkdecl("A", "string", "{\"regex\":\"[0-9]+\"}", "12a")), 1);
  assert_int_equal(dcheck(mkdecl("A", "ipv4", "{}", "300.1.1.1")), 1);
  assert_int_equal(dcheck(mkdecl("A", "number", "{\"maximum\":\"4\"}", "5")), 1);
  assert_int_equal(dcheck(mkdecl("A", "option", "{\"options\":[\"a\",\"b\"]}", "c")), 1);
  /* numbers sent as JSON numbers are values too */
  json_t *d = mkdecl("A", "number", "{\"maximum\":\"4\"}", NULL);
  json_object_set_new(d, "value", json_integer(7));
  assert_int_equal(dcheck(d), 1);
  d = mkdecl("A", "string", "{}", NULL);
  json_object_set_new(d, "value", json_pack("[s]", "x"));
  assert_int_equal(dcheck(d), 1);
  /* a NIC has no value of its own */
  assert_int_equal(dcheck(mkdecl("N", "nic", NIC_ALL, "10.0.0.1")), 1);
  /* visible / editable must be booleans */
  d = mkdecl("A", "string", "{}", "");
  json_object_set_new(d, "visible", json_string("maybe"));
  json_object_set_new(d, "editable", json_integer(1));
  assert_int_equal(dcheck(d), 2);
}

/* Every violation of one declaration is reported at once. */
static void test_decl_many_violations(void **state) {
  json_t *v;
  int n = dcheck_out(mkdecl("bad name", "number", "{\"regex\":\"x\",\"minimum\":\"a\"}", "zz"), &v);
  assert_int_equal(n, 4); /* name, regex key, minimum, value */
  json_decref(v);
  json_t *d = mkdecl("x", "integer", "{}", "");
  assert_int_equal(attr_decl_check(d, NULL), 1); /* counted even without an array */
  json_decref(d);
}

/* ---- value checks ----------------------------------------------------------------- */

static void test_value_string(void **state) {
  const char *re = "{\"regex\":\"[A-Z][a-z]*[0-9]*\"}";
  assert_int_equal(vcheck("string", re, "Abc1"), 0);
  assert_int_equal(vcheck("string", re, "A"), 0);
  assert_int_equal(vcheck("string", re, "xAbc1"), 1); /* anchored at the start */
  assert_int_equal(vcheck("string", re, "Abc1x"), 1); /* and at the end */
  assert_int_equal(vcheck("string", re, ""), 1);      /* "" does not match */
  assert_int_equal(vcheck("string", "{\"regex\":\"a|ab\"}", "ab"), 0);
  assert_int_equal(vcheck("string", "{\"regex\":\"[0-9]*\"}", ""), 0);
  assert_int_equal(vcheck("string", "{\"regex\":\"\"}", "anything"), 0);
  assert_int_equal(vcheck("string", "{}", ""), 0);
  assert_int_equal(vcheck("string", NULL, "x"), 0);
  char big[5000];
  memset(big, 'a', 4096);
  big[4096] = '\0';
  assert_int_equal(vcheck("string", "{}", big), 0);
  big[4096] = 'a';
  big[4097] = '\0';
  assert_int_equal(vcheck("string", "{}", big), 1);
  /* 4096 two-byte characters are 4096 characters */
  static char utf[8200] = "";
  for (int i = 0; i < 4096; i++)
    strcat(utf, "\xc3\xa9");
  assert_int_equal(vcheck("string", "{}", utf), 0);
  /* options, when given, restrict the value */
  assert_int_equal(vcheck("string", "{\"options\":[\"team0\"]}", "team0"), 0);
  assert_int_equal(vcheck("string", "{\"options\":[\"team0\"]}", "team1"), 1);
  assert_int_equal(vcheck("string", "{\"options\":[\"team0\"]}", ""), 0);
  json_t *v;
  assert_int_equal(vcheck_out("string", re, "nope", &v), 1);
  assert_int_equal(count_substr(v, "\"nope\""), 1);
  json_decref(v);
}

static void test_value_number(void **state) {
  json_t *v;
  const char *c = "{\"minimum\":\"1\",\"maximum\":\"100\"}";
  assert_int_equal(vcheck("number", c, "50"), 0);
  assert_int_equal(vcheck("number", c, "1"), 0);
  assert_int_equal(vcheck("number", c, "100"), 0);
  assert_int_equal(vcheck("number", c, "100.5"), 1);
  assert_int_equal(vcheck("number", c, "0"), 1);
  assert_int_equal(vcheck("number", c, "abc"), 1);
  assert_int_equal(vcheck("number", c, ""), 1);
  assert_int_equal(vcheck("number", c, "1e1"), 1);
  assert_int_equal(vcheck("number", c, " 5"), 1);
  assert_int_equal(vcheck("number", c, "0x10"), 1);
  assert_int_equal(vcheck("number", "{}", "-2.5"), 0);
  assert_int_equal(vcheck("number", "{}", ".5"), 0);
  assert_int_equal(vcheck("number", "{}", "5."), 0);
  assert_int_equal(vcheck("number", "{}", "."), 1);
  assert_int_equal(vcheck("number", "{}", "nan"), 1);
  assert_int_equal(vcheck("number", "{\"unit\":\"GiB\"}", "40"), 0);
  /* increments count from 0, as HPE's own bundles need (minimum 1, increment 10, value 50) */
  const char *inc = "{\"minimum\":\"10\",\"maximum\":\"100\",\"increment\":\"10\"}";
  assert_int_equal(vcheck("number", inc, "50"), 0);
  assert_int_equal(vcheck("number", inc, "55"), 1);
  assert_int_equal(vcheck("number", "{\"minimum\":\"1\",\"increment\":\"10\"}", "50"), 0);
  assert_int_equal(vcheck("number", "{\"minimum\":\"1\",\"increment\":\"10\"}", "51"), 1);
  const char *dec = "{\"minimum\":\"0\",\"maximum\":\"100\",\"increment\":\"0.1\"}";
  assert_int_equal(vcheck("number", dec, "0.3"), 0);
  assert_int_equal(vcheck("number", dec, "99.9"), 0);
  assert_int_equal(vcheck("number", dec, "0.35"), 1);
  assert_int_equal(vcheck("number", "{\"increment\":\"5\"}", "15"), 0); /* no minimum: from 0 */
  assert_int_equal(vcheck_out("number", "{\"increment\":\"5\"}", "16", &v), 1);
  assert_int_equal(count_substr(v, "value \"16\" is not a multiple of the increment 5"), 1);
  json_decref(v);
  assert_int_equal(vcheck_out("number", inc, "55", &v), 1);
  assert_int_equal(count_substr(v, "value \"55\" is not a multiple of the increment 10"), 1);
  json_decref(v);
  assert_int_equal(vcheck_out("number", c, "250", &v), 1);
  assert_int_equal(count_substr(v, "\"250\""), 1);
  json_decref(v);
}

static void test_value_password_never_shown(void **state) {
  const char *secret = "S3cr3t~Pass";
  const char *c =
      "{\"minlen\":\"12\",\"maxlen\":\"10\",\"allowedchars\":\"abcdefghijklmnopqrstuvwxyz"
      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\",\"options\":[\"\"]}";
  json_t *v;
  assert_int_equal(vcheck_out("password", c, secret, &v), 3); /* short, long, '~' not allowed */
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e) {
    const char *m = json_string_value(json_object_get(e, "message"));
    assert_null(strstr(m, secret));
    assert_null(strstr(m, "S3cr3t"));
    assert_null(strstr(m, "~"));
  }
  json_decref(v);
  assert_int_equal(vcheck("password", "{\"minlen\":\"8\",\"maxlen\":\"12\"}", "abcdefgh"), 0);
  assert_int_equal(vcheck("password", "{\"minlen\":\"8\"}", "abcdefg"), 1);
  assert_int_equal(vcheck("password", "{\"maxlen\":\"3\"}", "abcd"), 1);
  assert_int_equal(vcheck("password", "{\"minlen\":\"8\"}", ""), 1);
  assert_int_equal(vcheck("password", "{\"minlen\":\"0\"}", ""), 0);
  assert_int_equal(vcheck("password", "{\"maxlen\":\"10\"}", ""), 0);
  assert_int_equal(vcheck("password", "{\"allowedchars\":\"ab!@#\"}", "a@b!"), 0);
  assert_int_equal(vcheck("password", "{\"allowedchars\":\"ab\xc3\xa9\"}",
                          "\xc3\xa9"
                          "a"),
                   0);
  assert_int_equal(vcheck("password", "{\"allowedchars\":\"ab\"}", "\xc3\xa9"), 1);
  assert_int_equal(vcheck("password", "{\"maxlen\":\"2\"}", "\xc3\xa9\xc3\xa9"), 0);
}

static void test_value_option(void **state) {
  const char *c = "{\"options\":[\"Enabled\",\"Disabled\"]}";
  assert_int_equal(vcheck("option", c, "Enabled"), 0);
  assert_int_equal(vcheck("option", c, "enabled"), 1); /* exact */
  assert_int_equal(vcheck("option", c, "Enabled "), 1);
  assert_int_equal(vcheck("option", c, ""), 1);
  assert_int_equal(vcheck("option", "{}", "x"), 1);
  json_t *v;
  assert_int_equal(vcheck_out("option", c, "Maybe", &v), 1);
  assert_int_equal(count_substr(v, "\"Maybe\""), 1);
  assert_int_equal(count_substr(v, "\"Enabled\", \"Disabled\""), 1);
  json_decref(v);
}

static void test_value_fqdn(void **state) {
  assert_int_equal(vcheck("fqdn", "{}", "example.com"), 0);
  assert_int_equal(vcheck("fqdn", "{}", "host-1.sub_d.example.com"), 0);
  assert_int_equal(vcheck("fqdn", "{}", "1host.example.com"), 0);
  assert_int_equal(vcheck("fqdn", "{}", "host"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "-host.example.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "_host.example.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "host.-example.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "a..com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", ".example.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "example.com."), 1);
  assert_int_equal(vcheck("fqdn", "{}", "a b.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", "a@b.com"), 1);
  assert_int_equal(vcheck("fqdn", "{}", ""), 1);
  char big[300];
  memset(big, 'a', 255);
  big[100] = '.';
  big[255] = '\0';
  assert_int_equal(vcheck("fqdn", "{}", big), 1);
  big[254] = '\0';
  assert_int_equal(vcheck("fqdn", "{}", big), 0);
}

static void test_value_hostname(void **state) {
  assert_int_equal(vcheck("hostname", "{}", "esx01"), 0);
  assert_int_equal(vcheck("hostname", "{}", "ESX-01_a"), 0);
  assert_int_equal(vcheck("hostname", "{}", "esx01.example.com"), 1);
  assert_int_equal(vcheck("hostname", "{}", "-esx"), 1);
  assert_int_equal(vcheck("hostname", "{}", "_esx"), 1);
  assert_int_equal(vcheck("hostname", "{}", "es x"), 1);
  assert_int_equal(vcheck("hostname", "{}", ""), 1);
  char big[300];
  memset(big, 'h', 254);
  big[254] = '\0';
  assert_int_equal(vcheck("hostname", "{}", big), 0);
  big[254] = 'h';
  big[255] = '\0';
  assert_int_equal(vcheck("hostname", "{}", big), 1);
}

static void test_value_ipv4(void **state) {
  assert_int_equal(vcheck("ipv4", "{}", "10.0.0.1"), 0);
  assert_int_equal(vcheck("ipv4", "{}", "0.0.0.0"), 0);
  assert_int_equal(vcheck("ipv4", "{}", "255.255.255.255"), 0);
  assert_int_equal(vcheck("ipv4", "{\"ipType\":\"manage-externally\"}", "192.168.1.10"), 0);
  assert_int_equal(vcheck("ipv4", "{}", "256.0.0.1"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "01.2.3.4"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2.3.00"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2.3"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2.3.4.5"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2.3.4 "), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2..4"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1.2.3.4."), 1);
  assert_int_equal(vcheck("ipv4", "{}", "a.b.c.d"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "1234.1.1.1"), 1);
  assert_int_equal(vcheck("ipv4", "{}", "[DepotHost]"), 1);
  assert_int_equal(vcheck("ipv4", "{}", ""), 1);
  /* a value that is not UTF-8 still yields one well-formed violation */
  json_t *v;
  assert_int_equal(vcheck_out("ipv4", "{}", "1.2.3.\xff", &v), 1);
  assert_non_null(
      strstr(json_string_value(json_object_get(json_array_get(v, 0), "message")), "\"1.2.3.?\""));
  json_decref(v);
}

static void test_value_unknown_type(void **state) {
  json_t *v;
  assert_int_equal(vcheck_out("integer", "{}", "5", &v), 1);
  assert_int_equal(count_substr(v, "\"integer\""), 1);
  json_decref(v);
  assert_int_equal(vcheck("string", "{broken", "x"), 1);
}

/* ---- NIC values ------------------------------------------------------------------------ */

static void test_nic_static(void **state) {
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\","
                                      "\"netmask\":\"255.255.255.0\",\"gateway\":\"10.0.0.1\","
                                      "\"dns1\":\"10.0.0.2\",\"dns2\":\"\",\"domain\":\"ex.com\","
                                      "\"mac\":\"aa:bb:cc:dd:ee:ff\",\"vlanid\":\"0\"}"),
                   0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\","
                                      "\"netmask\":\"24\"}"),
                   0);
  /* static without an address */
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"static\"}"), 1);
  json_t *v;
  assert_int_equal(nic_check_out(NIC_ALL,
                                 "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.300\","
                                 "\"netmask\":\"255.0.255.0\",\"gateway\":\"gw\","
                                 "\"dns1\":\"1.1.1\",\"dns2\":\"8.8.8.8\"}",
                                 &v),
                   4);
  assert_int_equal(count_substr(v, "\"10.0.0.300\""), 1);
  assert_int_equal(count_substr(v, "\"255.0.255.0\""), 1);
  assert_int_equal(count_substr(v, "\"gw\""), 1);
  assert_int_equal(count_substr(v, "\"1.1.1\""), 1);
  assert_int_equal(count_substr(v, "attribute \"ManagementNIC\": "), 4);
  json_decref(v);
  const char *masks_ok[] = {"0.0.0.0", "255.255.255.255", "255.255.254.0", "128.0.0.0", "0", "32"};
  const char *masks_bad[] = {"255.255.255.1", "0.255.255.255", "33", "/24", "255.255.255"};
  for (size_t i = 0; i < sizeof masks_ok / sizeof masks_ok[0]; i++) {
    char buf[200];
    snprintf(buf, sizeof buf,
             "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\",\"netmask\":\"%s\"}",
             masks_ok[i]);
    assert_int_equal(nic_check(NIC_ALL, buf), 0);
  }
  for (size_t i = 0; i < sizeof masks_bad / sizeof masks_bad[0]; i++) {
    char buf[200];
    snprintf(buf, sizeof buf,
             "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\",\"netmask\":\"%s\"}",
             masks_bad[i]);
    assert_int_equal(nic_check(NIC_ALL, buf), 1);
  }
  /* a teamed NIC: ipaddress1 is the address */
  const char *teamed = "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":false,"
                       "\"ipv4noteaming\":false,\"parameters\":[\"dhcp\",\"dns1\",\"dns2\","
                       "\"gateway\",\"ipaddress1\",\"ipaddress2\",\"mac1\",\"mac2\",\"netmask\"]}";
  assert_int_equal(nic_check(teamed, "{\"constraint\":\"static\",\"ipaddress1\":\"10.0.0.5\","
                                     "\"ipaddress2\":\"10.0.0.6\",\"mac1\":\"none\"}"),
                   0);
  assert_int_equal(nic_check(teamed, "{\"constraint\":\"static\",\"ipaddress1\":\"10.0.0.5\","
                                     "\"ipaddress2\":\"10.0.0.256\"}"),
                   1);
}

static void test_nic_modes(void **state) {
  const char *dhcp_only = "{\"ipv4static\":false,\"ipv4dhcp\":true,\"ipv4disable\":false,"
                          "\"parameters\":[\"mac\",\"ipaddress\"]}";
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\"}"), 0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"DHCP\"}"), 0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"disabled\"}"), 0);
  assert_int_equal(nic_check(NIC_STATIC_ONLY, "{\"constraint\":\"dhcp\"}"), 1);
  assert_int_equal(nic_check(NIC_STATIC_ONLY, "{\"constraint\":\"disabled\"}"), 1);
  assert_int_equal(nic_check(dhcp_only, "{\"constraint\":\"static\",\"ipaddress\":\"1.2.3.4\"}"),
                   1);
  /* an unknown mode is named */
  json_t *v;
  assert_int_equal(nic_check_out(NIC_ALL, "{\"constraint\":\"manual\"}", &v), 1);
  assert_int_equal(count_substr(v, "\"manual\""), 1);
  json_decref(v);
  /* auto: static when an address is given, else dhcp */
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"auto\"}"), 0);
  assert_int_equal(nic_check(NIC_STATIC_ONLY, "{\"constraint\":\"auto\"}"), 1); /* = dhcp */
  assert_int_equal(
      nic_check(NIC_STATIC_ONLY, "{\"constraint\":\"auto\",\"ipaddress\":\"1.2.3.4\"}"), 0);
  assert_int_equal(nic_check(dhcp_only, "{\"constraint\":\"auto\",\"ipaddress\":\"1.2.3.4\"}"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"auto\",\"ipaddress\":\"1.2.3\"}"), 1);
  /* missing: dhcp when allowed, else static */
  assert_int_equal(nic_check(NIC_ALL, "{\"mac\":\"none\"}"), 0);
  assert_int_equal(nic_check(NIC_ALL, NULL), 0);
  assert_int_equal(nic_check(NIC_ALL, "{}"), 0);
  assert_int_equal(nic_check(NIC_STATIC_ONLY, "{}"), 1);
  assert_int_equal(nic_check(NIC_STATIC_ONLY, "{\"ipaddress\":\"10.1.1.1\"}"), 0);
  /* booleans given as strings */
  assert_int_equal(nic_check("{\"ipv4static\":\"false\",\"ipv4dhcp\":\"true\",\"parameters\":[]}",
                             "{\"constraint\":\"dhcp\"}"),
                   0);
  assert_int_equal(nic_check("{\"ipv4static\":\"false\",\"ipv4dhcp\":\"true\",\"parameters\":[]}",
                             "{\"constraint\":\"static\",\"ipaddress\":\"1.1.1.1\"}"),
                   2); /* static not allowed, ipaddress not declared */
}

static void test_nic_parameters(void **state) {
  json_t *v;
  /* keys the appliance manages are always accepted */
  assert_int_equal(nic_check(NIC_STATIC_ONLY,
                             "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\","
                             "\"connectionid\":\"3\",\"networkuri\":\"/rest/ethernet-networks/x\","
                             "\"dhcp\":\"false\",\"ipv4disable\":\"false\"}"),
                   0);
  assert_int_equal(nic_check_out(NIC_STATIC_ONLY,
                                 "{\"constraint\":\"static\",\"ipaddress\":\"10.0.0.5\","
                                 "\"vlanid\":\"7\",\"dns2\":\"1.1.1.1\"}",
                                 &v),
                   2);
  assert_int_equal(count_substr(v, "\"vlanid\""), 1);
  assert_int_equal(count_substr(v, "\"dns2\""), 1);
  json_decref(v);
  assert_int_equal(nic_check("{\"ipv4dhcp\":true}", "{\"mac\":\"none\"}"), 1);
  /* vlanid and mac are checked in every mode */
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"vlanid\":\"4094\"}"), 0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"vlanid\":\"4095\"}"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"vlanid\":\"-1\"}"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"vlanid\":\"abc\"}"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"vlanid\":5}"), 0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"mac\":\"AA-BB-CC-DD-EE-0F\"}"),
                   0);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"mac\":\"aa:bb-cc:dd:ee:ff\"}"),
                   1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"mac\":\"aabbccddeeff\"}"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"mac\":\"aa:bb:cc:dd:ee:gg\"}"),
                   1);
  /* addresses are only checked in static mode */
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"gateway\":\"x\"}"), 0);
  /* non-object values */
  assert_int_equal(nic_check(NIC_ALL, "[1]"), 1);
  assert_int_equal(nic_check(NIC_ALL, "{\"constraint\":\"dhcp\",\"mac\":{}}"), 1);
}

/* ---- normalize, merge, validate_all, mask ------------------------------------------------ */

static void test_normalize(void **state) {
  json_t *d =
      parse("{\"name\":\"A\",\"type\":\"string\",\"value\":null,"
            "\"constraints\":{\"regex\":\"a\"},\"visible\":\"false\",\"editable\":\"TRUE\"}");
  assert_int_equal(attr_decl_normalize(d), 0);
  assert_string_equal(json_string_value(json_object_get(d, "constraints")), "{\"regex\":\"a\"}");
  assert_string_equal(json_string_value(json_object_get(d, "value")), "");
  assert_true(json_is_false(json_object_get(d, "visible")));
  assert_true(json_is_true(json_object_get(d, "editable")));
  json_decref(d);
  d = parse("{\"name\":\"N\",\"type\":\"NIC\",\"value\":null,\"constraints\":null}");
  assert_int_equal(attr_decl_normalize(d), 0);
  assert_true(json_is_null(json_object_get(d, "value")));
  assert_string_equal(json_string_value(json_object_get(d, "constraints")), "{}");
  json_decref(d);
  d = parse("{\"name\":\"N\",\"value\":5}");
  assert_int_equal(attr_decl_normalize(d), 0);
  assert_string_equal(json_string_value(json_object_get(d, "constraints")), "{}");
  assert_string_equal(json_string_value(json_object_get(d, "value")), "5");
  json_decref(d);
  d = parse("{\"name\":\"N\",\"constraints\":\"{\\\"unit\\\":\\\"GB\\\"}\",\"value\":\"x\"}");
  json_t *copy = json_deep_copy(d);
  assert_int_equal(attr_decl_normalize(d), 0);
  assert_true(json_equal(d, copy));
  json_decref(copy);
  json_decref(d);
  d = json_string("x");
  assert_int_equal(attr_decl_normalize(d), -1);
  json_decref(d);
}

static json_t *find_decl(json_t *arr, const char *name) {
  size_t i;
  json_t *d;
  json_array_foreach(arr, i, d) {
    if (strcmp(json_string_value(json_object_get(d, "name")), name) == 0) return d;
  }
  return NULL;
}

static const char *value_of(json_t *arr, const char *name) {
  json_t *d = find_decl(arr, name);
  assert_non_null(d);
  return json_string_value(json_object_get(d, "value"));
}

static void test_merge_precedence(void **state) {
  json_t *ps = attr_derive("@A:psA@ @B:psB@ @C:psC@ @D:psD@ @E@ @F:psF@");
  json_t *bp =
      parse("[{\"name\":\"A\",\"type\":\"string\",\"value\":\"\",\"constraints\":\"{}\"},"
            "{\"name\":\"B\",\"type\":\"string\",\"value\":\"bpB\",\"constraints\":\"{}\"},"
            "{\"name\":\"C\",\"type\":\"string\",\"value\":\"bpC\",\"constraints\":\"{}\"},"
            "{\"name\":\"D\",\"type\":\"string\",\"value\":\"bpD\",\"constraints\":\"{}\"}]");
  json_t *dp = parse("[{\"name\":\"C\",\"type\":\"string\",\"value\":\"dpC\"},"
                     "{\"name\":\"D\",\"type\":\"string\",\"value\":\"dpD\"},"
                     "{\"name\":\"B\",\"type\":\"string\",\"value\":\"\"}]");
  json_t *prof = parse("[{\"name\":\"D\",\"value\":\"pD\"},{\"name\":\"F\",\"value\":\"pF\"},"
                       "{\"name\":\"B\",\"value\":\"\"}]");
  json_t *m = attr_merge(ps, bp, dp, prof);
  assert_int_equal(json_array_size(m), 6);
  assert_string_equal(value_of(m, "A"), "psA"); /* script default under an empty plan value */
  assert_string_equal(value_of(m, "B"), "bpB"); /* empty higher layers do not erase */
  assert_string_equal(value_of(m, "C"), "dpC");
  assert_string_equal(value_of(m, "D"), "pD");
  assert_string_equal(value_of(m, "E"), "");
  assert_string_equal(value_of(m, "F"), "pF");
  json_decref(m);
  json_decref(ps);
  json_decref(bp);
  json_decref(dp);
  json_decref(prof);
}

static void test_merge_shape_and_order(void **state) {
  json_t *ps = attr_derive("@Z:z@ @HostName@ @ManagementNIC.mac@ @ManagementNIC.vlanid:0@ "
                           "@Other.sub@ @Y@ @_Initiator1.ip@ @Z@");
  json_t *bp =
      parse("[{\"name\":\"HostName\",\"type\":\"hostname\",\"value\":\"h1\","
            "\"constraints\":{\"helpText\":\"x\"},\"description\":\"The host\"},"
            "{\"name\":\"ManagementNIC\",\"type\":\"nic\",\"value\":null,\"constraints\":\"" /**/
            "{\\\"ipv4static\\\":true,\\\"ipv4dhcp\\\":true,\\\"parameters\\\":[\\\"mac\\\","
            "\\\"ipaddress\\\"]}\"},"
            "{\"name\":\"Pw\",\"type\":\"password\",\"value\":\"bpsecret\",\"constraints\":null}]");
  json_t *dp = parse("[{\"name\":\"Pw\",\"type\":\"password\",\"value\":\"\",\"visible\":\"false\","
                     "\"editable\":false,\"id\":\"1\"},"
                     "{\"name\":\"HostName\",\"type\":\"string\",\"value\":\"h2\","
                     "\"visible\":true,\"description\":\"ignored\"},"
                     "{\"name\":\"DpOnly\",\"type\":\"option\",\"value\":\"a\","
                     "\"constraints\":\"{\\\"options\\\":[\\\"a\\\"]}\"}]");
  json_t *prof = parse("[{\"name\":\"ManagementNIC.ipaddress\",\"value\":\"10.0.0.5\"},"
                       "{\"name\":\"ManagementNIC.constraint\",\"value\":\"auto\"},"
                       "{\"name\":\"Undeclared\",\"value\":\"u\"}]");
  json_t *m = attr_merge(ps, bp, dp, prof);
  const char *order[] = {"HostName", "ManagementNIC", "Pw", "DpOnly",
                         "Z",        "Other",         "Y",  "Undeclared"};
  assert_int_equal(json_array_size(m), sizeof order / sizeof order[0]);
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, i), "name")), order[i]);

  json_t *h = find_decl(m, "HostName");
  assert_string_equal(json_string_value(json_object_get(h, "type")), "hostname"); /* bp's */
  assert_string_equal(json_string_value(json_object_get(h, "value")), "h2");
  assert_string_equal(json_string_value(json_object_get(h, "constraints")), "{\"helpText\":\"x\"}");
  assert_string_equal(json_string_value(json_object_get(h, "description")), "The host");
  assert_true(json_is_true(json_object_get(h, "visible")));
  assert_true(json_is_true(json_object_get(h, "editable")));

  json_t *nic = find_decl(m, "ManagementNIC");
  assert_true(json_is_null(json_object_get(nic, "value")));
  json_t *want_nv = parse("{\"ipaddress\":\"10.0.0.5\",\"constraint\":\"auto\"}");
  assert_true(json_equal(json_object_get(nic, "nicValues"), want_nv));
  json_decref(want_nv);

  json_t *pw = find_decl(m, "Pw");
  assert_string_equal(json_string_value(json_object_get(pw, "value")), "bpsecret");
  assert_string_equal(json_string_value(json_object_get(pw, "constraints")), "{}");
  assert_true(json_is_false(json_object_get(pw, "visible"))); /* the deployment plan wins */
  assert_true(json_is_false(json_object_get(pw, "editable")));
  assert_null(json_object_get(pw, "id"));

  json_t *dpo = find_decl(m, "DpOnly");
  assert_string_equal(json_string_value(json_object_get(dpo, "type")), "option");
  assert_string_equal(json_string_value(json_object_get(dpo, "constraints")),
                      "{\"options\":[\"a\"]}");

  json_t *want_z = parse("{\"name\":\"Z\",\"type\":\"string\",\"value\":\"z\",\"constraints\":"
                         "\"{}\",\"description\":\"\",\"visible\":true,\"editable\":true}");
  assert_true(json_equal(find_decl(m, "Z"), want_z));
  json_decref(want_z);
  assert_string_equal(value_of(m, "Undeclared"), "u");
  assert_null(find_decl(m, "ManagementNIC.mac"));
  assert_null(find_decl(m, "_Initiator1.ip"));
  /* "@Other.sub@" without a declaration: a NIC "Other" offering exactly "sub" */
  json_t *other = find_decl(m, "Other");
  assert_string_equal(json_string_value(json_object_get(other, "type")), "nic");
  assert_true(json_is_null(json_object_get(other, "value")));
  assert_string_equal(json_string_value(json_object_get(other, "constraints")),
                      "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":true,"
                      "\"parameters\":[\"sub\"]}");
  assert_null(find_decl(m, "Other.sub"));

  json_t *v = json_array();
  assert_int_equal(attr_validate_all(m, v), 0);
  json_decref(v);

  json_decref(m);
  json_decref(ps);
  json_decref(bp);
  json_decref(dp);
  json_decref(prof);
}

static void test_merge_empty(void **state) {
  json_t *m = attr_merge(NULL, NULL, NULL, NULL);
  assert_true(json_is_array(m));
  assert_int_equal(json_array_size(m), 0);
  json_decref(m);
  /* only a script: string declarations with the derived defaults, NICs for "N.sub" */
  json_t *ps = attr_derive("@A:1@ @N.mac@ @N.ipaddress@");
  m = attr_merge(ps, NULL, NULL, NULL);
  assert_int_equal(json_array_size(m), 2);
  assert_string_equal(value_of(m, "A"), "1");
  assert_string_equal(json_string_value(json_object_get(find_decl(m, "N"), "type")), "nic");
  assert_non_null(strstr(json_string_value(json_object_get(find_decl(m, "N"), "constraints")),
                         "[\"mac\",\"ipaddress\"]"));
  json_decref(m);
  json_decref(ps);
}

static void test_validate_all(void **state) {
  json_t *bp =
      parse("[{\"name\":\"HostName\",\"type\":\"hostname\",\"value\":\"bad.host\",\"constraints\":"
            "\"{}\"},"
            "{\"name\":\"Domain\",\"type\":\"fqdn\",\"value\":\"\",\"constraints\":\"{}\"},"
            "{\"name\":\"Ok\",\"type\":\"string\",\"value\":\"fine\",\"constraints\":\"{}\"},"
            "{\"name\":\"Size\",\"type\":\"number\",\"value\":\"500\","
            "\"constraints\":\"{\\\"maximum\\\":\\\"100\\\"}\"},"
            "{\"name\":\"Pw\",\"type\":\"password\",\"value\":\"tooshort\","
            "\"constraints\":\"{\\\"minlen\\\":\\\"12\\\"}\"},"
            "{\"name\":\"Nic\",\"type\":\"nic\",\"value\":null,\"constraints\":\"" /**/
            "{\\\"ipv4static\\\":true,\\\"parameters\\\":[\\\"ipaddress\\\"]}\"}]");
  json_t *prof = parse("[{\"name\":\"Nic.ipaddress\",\"value\":\"10.0.0.999\"},"
                       "{\"name\":\"Nic.constraint\",\"value\":\"static\"}]");
  json_t *m = attr_merge(NULL, bp, NULL, prof);
  json_t *v = json_array();
  assert_int_equal(attr_validate_all(m, v), 5);
  assert_int_equal(json_array_size(v), 5);
  assert_int_equal(count_substr(v, "attribute \"HostName\""), 1);
  assert_int_equal(count_substr(v, "attribute \"Domain\""), 1);
  assert_int_equal(count_substr(v, "attribute \"Size\""), 1);
  assert_int_equal(count_substr(v, "attribute \"Pw\""), 1);
  assert_int_equal(count_substr(v, "attribute \"Nic\""), 1);
  assert_int_equal(count_substr(v, "tooshort"), 0);
  json_decref(v);
  json_decref(m);
  json_decref(bp);
  json_decref(prof);
}

static void test_mask_passwords(void **state) {
  json_t *d = parse("[{\"name\":\"P1\",\"type\":\"password\",\"value\":\"secret\"},"
                    "{\"name\":\"P2\",\"type\":\"Password\",\"value\":\"x\"},"
                    "{\"name\":\"P3\",\"type\":\"password\",\"value\":\"\"},"
                    "{\"name\":\"P4\",\"type\":\"password\",\"value\":null},"
                    "{\"name\":\"S\",\"type\":\"string\",\"value\":\"visible\"},"
                    "{\"name\":\"U\",\"value\":\"untyped\"}, 7]");
  json_t *want = parse("[{\"name\":\"P1\",\"type\":\"password\",\"value\":\"\"},"
                       "{\"name\":\"P2\",\"type\":\"Password\",\"value\":\"\"},"
                       "{\"name\":\"P3\",\"type\":\"password\",\"value\":\"\"},"
                       "{\"name\":\"P4\",\"type\":\"password\",\"value\":null},"
                       "{\"name\":\"S\",\"type\":\"string\",\"value\":\"visible\"},"
                       "{\"name\":\"U\",\"value\":\"untyped\"}, 7]");
  attr_mask_passwords(d);
  assert_true(json_equal(d, want));
  attr_mask_passwords(NULL);
  json_decref(d);
  json_decref(want);
}

/* ---- the corpus of real plan scripts ---------------------------------------------------- */

struct corpus_stats {
  size_t files, tokens, with_tokens;
};

static void check_corpus_file(const char *path, struct corpus_stats *st) {
  struct err e;
  err_init(&e);
  size_t len;
  char *text = util_read_file(path, &len, &e);
  if (!text) fail_msg("%s: %s", path, e.message);
  struct attr_token *t;
  int n = attr_scan(text, &t);
  assert_true(n >= 0);
  for (int i = 0; i < n; i++) {
    assert_true(t[i].offset + t[i].length <= len);
    assert_int_equal(text[t[i].offset], '@');
    assert_int_equal(text[t[i].offset + t[i].length - 1], '@');
    assert_true(t[i].name[0] != '\0');
    if (i > 0) assert_true(t[i].offset >= t[i - 1].offset + t[i - 1].length);
  }
  attr_tokens_free(t, (size_t)n);
  json_t *derived = attr_derive(text);
  assert_non_null(derived);
  json_decref(derived);

  json_t *empty = json_object();
  char *out = attr_substitute(text, empty);
  assert_non_null(out);
  int again = attr_scan(out, &t);
  if (again != 0)
    fail_msg("%s: %d token(s) left after substitution, first \"%.*s\"", path, again,
             (int)t[0].length, out + t[0].offset);
  free(out);
  json_decref(empty);
  free(text);
  st->files++;
  st->tokens += (size_t)n;
  if (n > 0) st->with_tokens++;
}

static void walk_corpus(const char *dir, struct corpus_stats *st) {
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot open %s (the plan-script corpus must exist)", dir);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char *path = util_strdup_printf("%s/%s", dir, de->d_name);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    size_t nl = strlen(de->d_name);
    if (S_ISDIR(sb.st_mode))
      walk_corpus(path, st);
    else if (nl > 4 && strcmp(de->d_name + nl - 4, ".txt") == 0)
      check_corpus_file(path, st);
    free(path);
  }
  closedir(d);
}

static void test_corpus(void **state) {
  struct corpus_stats st = {0};
  walk_corpus(corpus_dir(), &st);
  assert_true(st.files >= 500);
  assert_true(st.with_tokens >= 250);
  assert_true(st.tokens >= 3000);
}

/* The real SQL Server RA script: "root@@Node1Hostname@" and "root@@@Node1Hostname@". */
static void test_corpus_sql_ra(void **state) {
  struct err e;
  err_init(&e);
  char path[4200];
  snprintf(path, sizeof path, "%s/rhel/RHEL_Configure_sshkey_and_deploy_cluster.txt", corpus_dir());
  char *text = util_read_file(path, NULL, &e);
  if (!text) fail_msg("%s", e.message);
  json_t *vals = parse("{\"Node1Hostname\":\"n1\",\"Node2Hostname\":\"n2\","
                       "\"Node3Hostname\":\"n3\",\"RootUserPassword\":\"pw\"}");
  char *out = attr_substitute(text, vals);
  assert_non_null(strstr(out, "StrictHostKeyChecking=no root@n1 ;"));
  assert_non_null(strstr(out, "ssh root@@n1 \"(sshpass -p pw"));
  assert_null(strstr(out, "Hostname@"));
  free(out);
  json_decref(vals);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scan_plain),
      cmocka_unit_test(test_scan_default),
      cmocka_unit_test(test_scan_empty_default),
      cmocka_unit_test(test_scan_sub),
      cmocka_unit_test(test_scan_name_charset),
      cmocka_unit_test(test_scan_not_tokens),
      cmocka_unit_test(test_scan_null),
      cmocka_unit_test(test_scan_sql_ra_double_at),
      cmocka_unit_test(test_scan_oracle_ra_triple_at),
      cmocka_unit_test(test_scan_adjacent),
      cmocka_unit_test(test_scan_default_then_literal),
      cmocka_unit_test(test_scan_resume_after_failed_match),
      cmocka_unit_test(test_derive),
      cmocka_unit_test(test_derive_first_default),
      cmocka_unit_test(test_substitute),
      cmocka_unit_test(test_type_parse),
      cmocka_unit_test(test_decl_valid_real_examples),
      cmocka_unit_test(test_decl_no_value_required),
      cmocka_unit_test(test_decl_violation_shape),
      cmocka_unit_test(test_decl_bad_name),
      cmocka_unit_test(test_decl_bad_type),
      cmocka_unit_test(test_decl_bad_constraints),
      cmocka_unit_test(test_decl_regex),
      cmocka_unit_test(test_decl_value_checked),
      cmocka_unit_test(test_decl_many_violations),
      cmocka_unit_test(test_value_string),
      cmocka_unit_test(test_value_number),
      cmocka_unit_test(test_value_password_never_shown),
      cmocka_unit_test(test_value_option),
      cmocka_unit_test(test_value_fqdn),
      cmocka_unit_test(test_value_hostname),
      cmocka_unit_test(test_value_ipv4),
      cmocka_unit_test(test_value_unknown_type),
      cmocka_unit_test(test_nic_static),
      cmocka_unit_test(test_nic_modes),
      cmocka_unit_test(test_nic_parameters),
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_merge_precedence),
      cmocka_unit_test(test_merge_shape_and_order),
      cmocka_unit_test(test_merge_empty),
      cmocka_unit_test(test_validate_all),
      cmocka_unit_test(test_mask_passwords),
      cmocka_unit_test(test_corpus),
      cmocka_unit_test(test_corpus_sql_ra),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
