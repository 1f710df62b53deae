/* test_query.c — the collection query language: filter spellings sent by the
 * HPE SDKs, operators, precedence, LIKE, numbers, booleans, arrays, missing
 * fields, sort, every syntax error, and a randomized robustness loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/query.h"

/* A plan-script-like resource used by most tests. */
static const char *DOC =
    "{\"type\":\"PlanScriptV5\",\"name\":\"Demo Plan Script\",\"planType\":\"capture\","
    "\"oeBuildPlanType\":\"Capture\",\"importedFromBundle\":true,\"hpProvided\":false,"
    "\"state\":\"OK\",\"status\":\"ok\",\"size\":10,\"ratio\":2.5,\"version\":\"10\","
    "\"label\":\"v1.2.3\",\"nothing\":null,\"empty\":\"\",\"flagText\":\"TRUE\","
    "\"tags\":[\"alpha\",\"Beta\"],\"numbers\":[1,5,9],\"none\":[],"
    "\"customAttributes\":[{\"name\":\"Hostname\",\"value\":\"web01\"},"
    "{\"name\":\"DomainName\",\"type\":\"fqdn\"}],"
    "\"owner\":{\"team\":{\"name\":\"Ops\"}},\"big\":9007199254740993,"
    "\"descr\":\"100% sure_thing\",\"utf\":\"Caf\\u00e9\"}";

static json_t *doc_load(const char *text) {
  json_error_t jerr;
  json_t *d = json_loads(text, 0, &jerr);
  if (!d) fail_msg("bad test JSON: %s", jerr.text);
  return d;
}

/* Parse one filter (must succeed) and match it against json. */
static int match_json(const char *filter, const char *json) {
  struct err e;
  err_init(&e);
  const char *f[] = {filter};
  struct query *q = query_parse(f, 1, NULL, NULL, &e);
  if (!q) fail_msg("filter %s rejected: %s", filter, e.message);
  json_t *d = doc_load(json);
  int r = query_match(q, d);
  json_decref(d);
  query_free(q);
  return r;
}

static int m(const char *filter) { return match_json(filter, DOC); }

/* Parsing must fail with a 400 whose message contains every given fragment. */
static void expect_error_v(const char *filter, const char *query, const char *sort,
                           const char *code, const char *frag, va_list ap) {
  struct err e;
  err_init(&e);
  const char *f[] = {filter};
  struct query *q = query_parse(filter ? f : NULL, filter ? 1 : 0, query, sort, &e);
  if (q) {
    query_free(q);
    fail_msg("accepted: filter=%s query=%s sort=%s", filter ? filter : "(null)",
             query ? query : "(null)", sort ? sort : "(null)");
  }
  assert_int_equal(e.status, 400);
  assert_string_equal(e.code, code);
  for (; frag; frag = va_arg(ap, const char *)) {
    if (!strstr(e.message, frag)) fail_msg("message \"%s\" lacks \"%s\"", e.message, frag);
  }
  /* The message must be valid UTF-8 so the error JSON can carry it. */
  json_t *s = json_string(e.message);
  assert_non_null(s);
  json_decref(s);
  err_clear(&e);
}

static void bad_filter(const char *filter, ...) {
  va_list ap;
  va_start(ap, filter);
  const char *frag = va_arg(ap, const char *);
  expect_error_v(filter, NULL, NULL, "INVALID_FILTER", frag, ap);
  va_end(ap);
}

static void bad_sort(const char *sort, ...) {
  va_list ap;
  va_start(ap, sort);
  const char *frag = va_arg(ap, const char *);
  expect_error_v(NULL, NULL, sort, "INVALID_SORT", frag, ap);
  va_end(ap);
}

/* ---- spellings the clients send ------------------------------------------ */

static void test_python_sdk_wrapped(void **state) {
  (void)state;
  assert_true(m("\"name='Demo Plan Script'\""));
  assert_false(m("\"name='Other'\""));
  assert_true(m("  \"name='demo plan script'\"  "));
  /* "a"="b" is not a wrapped filter: the quotes belong to the tokens. */
  assert_true(m("\"name\"=\"Demo Plan Script\""));
  /* A value holding a double quote inside a wrapped filter still works. */
  assert_true(match_json("\"name='say \"hi\"'\"", "{\"name\":\"say \\\"hi\\\"\"}"));
  /* Wrapped, whitespace only inside: no filter. */
  assert_true(m("\"  \""));
}

static void test_matches_go_java(void **state) {
  (void)state;
  assert_true(m("name matches 'Demo Plan Script'"));
  assert_true(m("name MATCHES 'demo%'"));
  assert_true(m("name matches '%plan%'"));
  assert_true(m("name matches 'Demo_Plan_Script'")); /* Java replaces ',' with '_' */
  assert_true(m("name matches '____ ____ ______'"));
  assert_false(m("name matches 'Demo'"));
  assert_false(m("name matches '_Demo%'"));
  assert_true(m("name matches '%'"));
  assert_true(m("empty matches '%'"));
  assert_false(m("empty matches '_'"));
  assert_false(m("nothing matches '%'"));
  assert_false(m("missing matches '%'"));
  assert_true(m("size matches '1_'")); /* numbers match by their text */
  assert_true(m("ratio matches '2.5'"));
  assert_true(m("importedFromBundle matches 'T%'"));
  assert_true(m("utf matches 'caf_'")); /* '_' is one character, not one byte */
  assert_false(m("utf matches 'caf__'"));
  assert_true(m("utf matches 'CAFé'"));
  /* after a failed try, '%' gives up whole characters, never half of one */
  assert_false(match_json("x matches '%__A_'", "{\"x\":\"€A😀\"}"));
  assert_true(match_json("x matches '%_A_'", "{\"x\":\"€A😀\"}"));
  assert_true(m("name matches '%%Script%%'"));
  assert_true(m("name matches 'D%e%o%t'"));
  assert_true(match_json("a matches '%ab%ab%'", "{\"a\":\"xxabyyababzz\"}"));
  assert_false(match_json("a matches '%ab%abc'", "{\"a\":\"xxabyyababzz\"}"));
}

static void test_matches_escapes(void **state) {
  (void)state;
  assert_true(m("descr matches '100\\% sure\\_thing'"));
  assert_true(m("descr matches '100\\%%'"));
  assert_false(match_json("a matches '100\\%'", "{\"a\":\"1000\"}"));
  assert_true(match_json("a matches '100\\%'", "{\"a\":\"100%\"}"));
  assert_false(match_json("a matches 'a\\_c'", "{\"a\":\"abc\"}"));
  assert_true(match_json("a matches 'a\\_c'", "{\"a\":\"a_c\"}"));
  assert_true(match_json("a matches 'a\\\\b'", "{\"a\":\"a\\\\b\"}"));
  assert_true(match_json("a matches 'ab\\'", "{\"a\":\"ab\\\\\"}")); /* trailing '\' literal */
  assert_true(match_json("a matches 'it''s%'", "{\"a\":\"It's here\"}"));
}

static void test_unquoted_values(void **state) {
  (void)state;
  assert_true(m("oeBuildPlanType=capture"));
  assert_true(m("planType=capture"));
  assert_true(m("importedFromBundle=true"));
  assert_true(m("state=OK"));
  assert_true(m("status=OK"));
  assert_false(m("state=active"));
  assert_true(m("hpProvided=false"));
  assert_false(m("hpProvided=true"));
  assert_true(m("type=planscriptv5"));
  assert_true(match_json("uri=/rest/build-plans/ab-12", "{\"uri\":\"/rest/build-plans/AB-12\"}"));
  assert_true(match_json("x=hello!", "{\"x\":\"hello!\"}"));
  assert_true(match_json("x!=hello!", "{\"x\":\"bye\"}"));
}

static void test_operators(void **state) {
  (void)state;
  assert_true(m("name = 'Demo Plan Script'"));
  assert_true(m("name == 'Demo Plan Script'"));
  assert_true(m("name EQ 'Demo Plan Script'"));
  assert_true(m("name eq \"Demo Plan Script\""));
  assert_true(m("name != 'x'"));
  assert_true(m("name <> 'x'"));
  assert_true(m("name ne 'x'"));
  assert_false(m("name != 'demo plan script'"));
  assert_true(m("size > 9"));
  assert_true(m("size gt 9"));
  assert_true(m("size >= 10"));
  assert_true(m("size GE 10"));
  assert_true(m("size < 11"));
  assert_true(m("size lt 11"));
  assert_true(m("size <= 10"));
  assert_true(m("size le 10"));
  assert_false(m("size < 10"));
  assert_false(m("size > 10"));
  assert_true(m("name < 'E'"));
  assert_true(m("name > 'demo'"));
  assert_true(m("size>9 and size<11"));
  assert_true(m("(size>9)and(size<11)"));
}

static void test_quoting(void **state) {
  (void)state;
  assert_true(m("'name'='Demo Plan Script'"));
  assert_true(m("\"name\" = 'Demo Plan Script'"));
  assert_true(match_json("name='it''s'", "{\"name\":\"it's\"}"));
  assert_true(match_json("name=\"say \"\"hi\"\"\"", "{\"name\":\"say \\\"hi\\\"\"}"));
  assert_true(match_json("name=''", "{\"name\":\"\"}"));
  assert_false(match_json("name=''", "{}"));
  assert_true(match_json("name='a AND b'", "{\"name\":\"a and b\"}"));
  assert_true(match_json("name=and", "{\"name\":\"AND\"}"));
  assert_true(match_json("not = 1", "{\"not\":1}"));
  assert_true(match_json("NOT not = 2", "{\"not\":1}"));
  assert_true(match_json("and=1 and or=2", "{\"and\":1,\"or\":2}"));
  assert_true(match_json("'a b'=1", "{\"a b\":1}"));
}

/* ---- boolean logic ------------------------------------------------------- */

static void test_precedence(void **state) {
  (void)state;
  /* AND binds tighter than OR: true OR (false AND false) = true */
  assert_true(m("state=OK or state=x and state=y"));
  /* (false AND false) OR true */
  assert_true(m("state=x and state=y or state=OK"));
  /* false OR (true AND false) */
  assert_false(m("state=x or state=OK and state=y"));
  /* parentheses override: (true OR false) AND false */
  assert_false(m("(state=OK or state=x) and state=y"));
  assert_true(m("state=OK OR (state=x AND state=y)"));
  assert_true(m("((state=OK))"));
  assert_true(m("( ( state = OK ) and ( size = 10 or size = 11 ) )"));
  assert_true(m("a=1 or b=2 or c=3 or state=ok"));
  assert_false(m("state=ok and size=10 and hpProvided=true"));
}

static void test_not(void **state) {
  (void)state;
  assert_false(m("NOT state=OK"));
  assert_true(m("not state=x"));
  assert_true(m("NOT NOT state=OK"));
  assert_false(m("not not not state=OK"));
  /* NOT binds to the term: (NOT a) AND b */
  assert_false(m("not state=OK and size=10"));
  assert_true(m("not state=x and size=10"));
  assert_true(m("not (state=OK and size=11)"));
  assert_false(m("not (state=OK or size=11)"));
  assert_true(m("not(state=x)"));
}

static void test_multiple_filters_and_query(void **state) {
  (void)state;
  struct err e;
  err_init(&e);
  const char *f[] = {"state=OK", "\"name='Demo Plan Script'\"", "", NULL, "size=10"};
  struct query *q = query_parse(f, 5, "planType matches 'cap%'", NULL, &e);
  assert_non_null(q);
  json_t *d = doc_load(DOC);
  assert_true(query_match(q, d));
  query_free(q);

  q = query_parse(f, 5, "planType = deploy", NULL, &e);
  assert_non_null(q);
  assert_false(query_match(q, d));
  query_free(q);

  const char *g[] = {"state=OK", "size=11"};
  q = query_parse(g, 2, NULL, NULL, &e);
  assert_non_null(q);
  assert_false(query_match(q, d)); /* filters are ANDed */
  query_free(q);

  /* Nothing at all: everything matches, nothing sorts. */
  q = query_parse(NULL, 0, NULL, NULL, &e);
  assert_non_null(q);
  assert_true(query_match(q, d));
  assert_int_equal(query_compare(q, d, d), 0);
  query_free(q);
  const char *blank[] = {"", "   ", "\t\n"};
  q = query_parse(blank, 3, " ", "  ", &e);
  assert_non_null(q);
  assert_true(query_match(q, d));
  query_free(q);
  q = query_parse(NULL, 3, NULL, NULL, &e); /* NULL array with a count */
  assert_non_null(q);
  query_free(q);

  /* NULL query and NULL doc are tolerated. */
  assert_true(query_match(NULL, d));
  assert_int_equal(query_compare(NULL, d, d), 0);
  const char *h[] = {"missing = null"};
  q = query_parse(h, 1, NULL, NULL, &e);
  assert_non_null(q);
  assert_true(query_match(q, NULL));
  query_free(q);
  json_decref(d);
}

/* ---- values --------------------------------------------------------------- */

static void test_numbers(void **state) {
  (void)state;
  assert_true(m("size=10"));
  assert_true(m("size='10'"));
  assert_true(m("size=10.0"));
  assert_true(m("size=1e1"));
  assert_true(m("size=+10"));
  assert_false(m("size=1"));
  assert_true(m("size>9.5"));
  assert_true(m("size>-3"));
  /* a numeric string compares numerically with a number value... */
  assert_true(m("version > 9"));
  assert_true(m("version = 10.00"));
  /* ...but text compares as text */
  assert_true(match_json("v > '9'", "{\"v\":\"9a\"}"));
  assert_true(m("label > 'v1.10'")); /* "v1.2.3" vs "v1.10": text order */
  assert_false(m("label = 1.2"));
  assert_true(m("ratio = 2.5"));
  assert_true(m("ratio < 3"));
  assert_true(m("ratio > 2.49999"));
  assert_true(m("ratio = '2.50'"));
  /* a number against a non-number compares by text */
  assert_false(m("size = ten"));
  assert_true(m("size < 'a'"));
  /* big integers compare exactly */
  assert_true(m("big = 9007199254740993"));
  assert_false(m("big = 9007199254740992"));
  assert_true(m("big > 9007199254740992"));
  assert_true(m("big > 9007199254740992.0"));
  assert_true(m("big < 9007199254740994.0"));
  /* not numbers: hex, inf, blanks, lone sign or dot */
  assert_false(match_json("x = 16", "{\"x\":\"0x10\"}"));
  assert_false(match_json("x = 1", "{\"x\":\" 1\"}"));
  assert_true(match_json("x = inf", "{\"x\":\"INF\"}"));
  assert_false(match_json("x = 0", "{\"x\":\"-\"}"));
  assert_false(match_json("x = 0", "{\"x\":\".\"}"));
  assert_true(match_json("x = 0", "{\"x\":\"-0\"}"));
  assert_true(match_json("x = 0.5", "{\"x\":\".5\"}"));
  assert_true(match_json("x > 1e308", "{\"x\":\"1e999\"}"));
  assert_true(match_json("x = 99999999999999999999", "{\"x\":1e20}")); /* both doubles */
  assert_true(match_json("x matches '0.1'", "{\"x\":0.1}"));
}

static void test_booleans(void **state) {
  (void)state;
  assert_true(m("importedFromBundle=true"));
  assert_true(m("importedFromBundle='true'"));
  assert_true(m("importedFromBundle=\"TRUE\""));
  assert_true(m("importedFromBundle EQ True"));
  assert_false(m("importedFromBundle=false"));
  assert_false(m("importedFromBundle=1"));
  assert_true(m("importedFromBundle!=false"));
  assert_true(m("hpProvided='false'"));
  assert_true(m("flagText=true")); /* the string "TRUE" */
}

static void test_null_and_missing(void **state) {
  (void)state;
  assert_true(m("missing = null"));
  assert_true(m("missing = NULL"));
  assert_true(m("nothing = null"));
  assert_false(m("name = null"));
  assert_true(m("name != null"));
  assert_false(m("missing != null"));
  assert_false(m("nothing != null"));
  assert_false(m("missing = 'x'"));
  assert_true(m("missing != 'x'"));
  assert_false(m("missing = ''"));
  assert_false(m("missing < 'zzz'"));
  assert_false(m("missing > ''"));
  assert_false(m("nothing = 'null'")); /* a quoted 'null' is the text */
  assert_true(match_json("x = 'null'", "{\"x\":\"null\"}"));
  assert_false(match_json("x = null", "{\"x\":\"null\"}"));
  assert_true(m("missing <= null"));
  assert_false(m("missing < null"));
  assert_false(m("size > null"));
  assert_false(m("empty = null"));
  /* a path through a scalar or through a missing object is missing */
  assert_true(m("name.first = null"));
  assert_true(m("missing.deeper.still = null"));
  assert_false(m("owner = 'x'")); /* objects equal nothing */
  assert_true(m("owner != 'x'"));
  assert_false(m("owner = null"));
}

static void test_arrays_and_paths(void **state) {
  (void)state;
  assert_true(m("tags = alpha"));
  assert_true(m("tags = 'beta'"));
  assert_false(m("tags = gamma"));
  assert_false(m("tags != alpha")); /* != is "no element equals" */
  assert_true(m("tags != gamma"));
  assert_true(m("tags matches 'B%'"));
  assert_true(m("numbers > 8"));
  assert_false(m("numbers > 9"));
  assert_true(m("numbers = 5"));
  assert_true(m("numbers < 2"));
  assert_false(m("none = null")); /* an empty array has no element */
  assert_true(m("none != 'x'"));
  assert_false(m("none matches '%'"));
  assert_true(m("customAttributes.name = 'hostname'"));
  assert_true(m("customAttributes.name = DomainName"));
  assert_false(m("customAttributes.name = 'Other'"));
  assert_true(m("customAttributes.type = fqdn"));
  assert_true(m("customAttributes.type = null")); /* Hostname has no type */
  assert_true(m("customAttributes.value matches 'web%'"));
  assert_true(m("owner.team.name = ops"));
  assert_true(m("'owner.team.name' = ops"));
  assert_false(m("owner.team = ops"));
  assert_true(match_json("a.b = 3", "{\"a\":[[{\"b\":1}],[{\"b\":[2,3]}]]}"));
  assert_true(match_json("a = 3", "{\"a\":[[1],[2,[3]]]}"));
  assert_true(match_json("a.b.c = x", "{\"a\":[{\"b\":[{\"c\":\"y\"},{\"c\":\"X\"}]}]}"));
  assert_true(match_json("x = null", "{\"x\":[1,null]}"));
}

static void test_case_insensitive(void **state) {
  (void)state;
  assert_true(m("NAME = 'Demo Plan Script'") == 0); /* field names are exact */
  assert_true(m("name = 'DEMO PLAN SCRIPT'"));
  assert_true(m("name MaTcHeS 'DEMO%'"));
  assert_true(m("state=ok AnD size=10 Or state=x"));
  assert_true(m("name < 'DEMP'"));
  assert_true(m("name > 'DEMO'"));
}

static void test_long_and_wide(void **state) {
  (void)state;
  /* 20,000 ANDed terms: no recursion per term. */
  size_t n = 20000;
  char *f = malloc(n * 16 + 32);
  assert_non_null(f);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    k += (size_t)sprintf(f + k, "%ssize=10", i ? " and " : "");
  assert_true(m(f));
  strcpy(f + k, " and size=11");
  assert_false(m(f));
  /* 20,000 ORed terms, the last one true. */
  k = 0;
  for (size_t i = 0; i < n; i++)
    k += (size_t)sprintf(f + k, "%ssize=%zu", i ? " or " : "", i + 11);
  strcpy(f + k, " or size=10");
  assert_true(m(f));
  free(f);
  /* 10,001 NOTs collapse */
  char *g = malloc(10001 * 4 + 16);
  assert_non_null(g);
  k = 0;
  for (int i = 0; i < 10001; i++)
    k += (size_t)sprintf(g + k, "not ");
  strcpy(g + k, "size=10");
  assert_false(m(g));
  free(g);
  /* a 1 MB value */
  size_t big = 1 << 20;
  char *h = malloc(big + 16);
  char *j = malloc(big + 16);
  assert_non_null(h);
  assert_non_null(j);
  memcpy(h, "v='", 3);
  memset(h + 3, 'x', big);
  strcpy(h + 3 + big, "'");
  sprintf(j, "{\"v\":\"%.*s\"}", (int)big, h + 3);
  assert_true(match_json(h, j));
  assert_true(match_json("v matches '%x'", j));
  assert_true(match_json("v matches 'x%x'", j));
  assert_false(match_json("v matches '%y%'", j));
  assert_false(match_json("v matches '%xy'", j));
  free(h);
  free(j);
}

static void test_nesting_limit(void **state) {
  (void)state;
  char f[200];
  /* 32 levels are fine */
  size_t k = 0;
  for (int i = 0; i < 32; i++)
    f[k++] = '(';
  k += (size_t)sprintf(f + k, "size=10");
  for (int i = 0; i < 32; i++)
    f[k++] = ')';
  f[k] = 0;
  assert_true(m(f));
  /* 33 are not */
  k = 0;
  for (int i = 0; i < 33; i++)
    f[k++] = '(';
  k += (size_t)sprintf(f + k, "size=10");
  for (int i = 0; i < 33; i++)
    f[k++] = ')';
  f[k] = 0;
  bad_filter(f, "nested deeper than 32", "offset 32", NULL);
  /* lots of open parentheses alone */
  char *g = malloc(100001);
  assert_non_null(g);
  memset(g, '(', 100000);
  g[100000] = 0;
  bad_filter(g, "nested deeper than 32", "...", NULL);
  /* siblings do not add up */
  k = 0;
  for (int i = 0; i < 500; i++)
    k += (size_t)sprintf(g + k, "%s(((size=10)))", i ? " and " : "");
  assert_true(m(g));
  free(g);
}

/* ---- errors ---------------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  bad_filter("name", "filter \"name\"", "expected an operator after \"name\"",
             "at the end of the filter", NULL);
  bad_filter("name 'x'", "expected an operator after \"name\" at offset 5", "found \"'x'\"", NULL);
  bad_filter("name=", "expected a value after \"name =\"", "end of the filter", NULL);
  bad_filter("name = (", "expected a value after \"name =\" at offset 7", NULL);
  bad_filter("name matches", "expected a value after \"name matches\"", NULL);
  bad_filter("name='x", "unterminated quoted string starting at offset 5", NULL);
  bad_filter("name=\"x", "unterminated quoted string starting at offset 5", NULL);
  bad_filter("name='x''", "unterminated", NULL);
  bad_filter("'name=x", "unterminated quoted string starting at offset 0", NULL);
  bad_filter("\"name='x'", "unterminated quoted string starting at offset 0", NULL);
  bad_filter("name='x' and", "expected a condition at the end of the filter", NULL);
  bad_filter("name='x' or )", "expected a condition at offset 12", "found \")\"", NULL);
  bad_filter("and name='x'", "expected an operator after \"and\"", NULL);
  bad_filter("(name='x'", "missing \")\" for the \"(\" at offset 0", NULL);
  bad_filter("((name='x')", "missing \")\" for the \"(\" at offset 0", NULL);
  bad_filter("name='x')", "unmatched \")\" at offset 8", NULL);
  bad_filter("()", "expected a condition at offset 1", NULL);
  bad_filter("(name='x' size=1)", "expected AND, OR or \")\" at offset 10", "found \"size\"", NULL);
  bad_filter("name='x' size=1", "expected AND, OR or the end of the filter at offset 9",
             "found \"size\"", NULL);
  bad_filter("name=x=y", "expected AND, OR or the end of the filter at offset 6", NULL);
  bad_filter("=x", "expected a condition at offset 0", "found \"=\"", NULL);
  bad_filter("name matches null", "\"matches\" needs a pattern, not null, at offset 13", NULL);
  bad_filter("a..b=1", "field \"a..b\" at offset 0 has an empty name or path segment", NULL);
  bad_filter(".a=1", "empty name or path segment", NULL);
  bad_filter("a.=1", "empty name or path segment", NULL);
  bad_filter("''=1", "empty name or path segment", NULL);
  bad_filter("not", "expected an operator after \"not\"", NULL);
  bad_filter("not (", "expected a condition at the end", NULL);
  bad_filter("name ! 'x'", "expected an operator after \"name\" at offset 5", "found \"!\"", NULL);
  bad_filter("name ~ 'x'", "found \"~\"", NULL);
  bad_filter("name === 'x'", "expected a value after \"name =\" at offset 7", NULL);
  /* A wrapped filter reports offsets in the value as sent. */
  bad_filter("\"name 'x'\"", "filter \"\"name 'x'\"\"", "after \"name\" at offset 6", NULL);
  bad_filter("\"\"\"", "unterminated", NULL);
  /* Odd bytes are shown as '?', invalid UTF-8 never reaches the message. */
  bad_filter("na\x01me \xff\xfe", "na?me", "found \"??\"", NULL);
  bad_filter("caf\xc3\xa9", "expected an operator after \"café\"", NULL);
  /* Long filters are cut in the message. */
  char longf[4096];
  memset(longf, 'a', sizeof longf - 1);
  longf[sizeof longf - 1] = 0;
  bad_filter(longf, "...", "expected an operator", NULL);
  struct err e;
  err_init(&e);
  const char *f[] = {longf};
  assert_null(query_parse(f, 1, NULL, NULL, &e));
  assert_true(strlen(e.message) < 600);
  /* The second of several filters is the one reported. */
  const char *two[] = {"state=OK", "size>"};
  err_init(&e);
  assert_null(query_parse(two, 2, NULL, NULL, &e));
  assert_non_null(strstr(e.message, "filter \"size>\""));
  /* The query parameter is named as such. */
  err_init(&e);
  assert_null(query_parse(NULL, 0, "name=", NULL, &e));
  assert_string_equal(e.code, "INVALID_FILTER");
  assert_non_null(strstr(e.message, "query \"name=\""));
  /* An error in sort after good filters frees everything (ASan checks). */
  err_init(&e);
  const char *good[] = {"state=OK and (size=10 or not size=3)"};
  assert_null(query_parse(good, 1, "name matches 'x%'", "name:sideways", &e));
  assert_string_equal(e.code, "INVALID_SORT");
}

/* ---- sort ------------------------------------------------------------------ */

static struct query *sort_query(const char *sort) {
  struct err e;
  err_init(&e);
  struct query *q = query_parse(NULL, 0, NULL, sort, &e);
  if (!q) fail_msg("sort %s rejected: %s", sort, e.message);
  return q;
}

static const struct query *cmp_q;
static int cmp_docs(const void *a, const void *b) {
  return query_compare(cmp_q, *(json_t *const *)a, *(json_t *const *)b);
}

/* Sort the array `json` by `sort` and return the "id" fields joined by ','. */
static char *sorted_ids(const char *json, const char *sort) {
  json_t *arr = doc_load(json);
  size_t n = json_array_size(arr);
  json_t **v = calloc(n + 1, sizeof *v);
  assert_non_null(v);
  for (size_t k = 0; k < n; k++)
    v[k] = json_array_get(arr, k);
  struct query *q = sort_query(sort);
  cmp_q = q;
  qsort(v, n, sizeof *v, cmp_docs);
  static char out[1024];
  out[0] = 0;
  for (size_t k = 0; k < n; k++) {
    if (k) strcat(out, ",");
    strcat(out, json_string_value(json_object_get(v[k], "id")));
  }
  query_free(q);
  free(v);
  json_decref(arr);
  return out;
}

static const char *PEOPLE = "["
                            "{\"id\":\"a\",\"name\":\"bob\",\"age\":30,\"team\":\"x\"},"
                            "{\"id\":\"b\",\"name\":\"Alice\",\"age\":25,\"team\":\"y\"},"
                            "{\"id\":\"c\",\"name\":\"carol\",\"age\":\"4\",\"team\":\"x\"},"
                            "{\"id\":\"d\",\"age\":100,\"team\":\"Y\"},"
                            "{\"id\":\"e\",\"name\":\"alan\",\"age\":null,\"team\":\"x\"}"
                            "]";

static void test_sort_basic(void **state) {
  (void)state;
  assert_string_equal(sorted_ids(PEOPLE, "name"), "d,e,b,a,c"); /* missing first */
  assert_string_equal(sorted_ids(PEOPLE, "name:asc"), "d,e,b,a,c");
  assert_string_equal(sorted_ids(PEOPLE, "name:ascending"), "d,e,b,a,c");
  assert_string_equal(sorted_ids(PEOPLE, "name:ASC"), "d,e,b,a,c");
  assert_string_equal(sorted_ids(PEOPLE, "name:desc"), "c,a,b,e,d");
  assert_string_equal(sorted_ids(PEOPLE, "name:descending"), "c,a,b,e,d");
  assert_string_equal(sorted_ids(PEOPLE, " name : DESC "), "c,a,b,e,d");
  assert_string_equal(sorted_ids(PEOPLE, "'name':desc"), "c,a,b,e,d");
  /* numbers numerically, numeric strings too; null sorts with missing */
  assert_string_equal(sorted_ids(PEOPLE, "age"), "e,c,b,a,d");
  assert_string_equal(sorted_ids(PEOPLE, "age:desc"), "d,a,b,c,e");
}

static void test_sort_multi_key(void **state) {
  (void)state;
  assert_string_equal(sorted_ids(PEOPLE, "team,age"), "e,c,a,b,d");
  assert_string_equal(sorted_ids(PEOPLE, "team:asc,age:desc"), "a,c,e,d,b");
  assert_string_equal(sorted_ids(PEOPLE, "team:desc, name:asc"), "d,b,e,a,c");
  struct query *q = sort_query("team");
  json_t *a = doc_load("{\"team\":\"X\"}"), *b = doc_load("{\"team\":\"x\"}");
  assert_int_equal(query_compare(q, a, b), 0); /* ties are the caller's to break */
  json_decref(a);
  json_decref(b);
  query_free(q);
}

static void test_sort_mixed_and_nested(void **state) {
  (void)state;
  /* missing (an empty array too) < numbers < text < objects; booleans are text */
  const char *mixed = "["
                      "{\"id\":\"obj\",\"v\":{\"a\":1}},"
                      "{\"id\":\"txt\",\"v\":\"Zed\"},"
                      "{\"id\":\"num\",\"v\":-2.5},"
                      "{\"id\":\"numstr\",\"v\":\"10\"},"
                      "{\"id\":\"bool\",\"v\":true},"
                      "{\"id\":\"emptyarr\",\"v\":[]},"
                      "{\"id\":\"arr\",\"v\":[null,3]}"
                      "]";
  assert_string_equal(sorted_ids(mixed, "v"), "emptyarr,num,arr,numstr,bool,txt,obj");
  assert_string_equal(sorted_ids(mixed, "v:desc"), "obj,txt,bool,numstr,arr,num,emptyarr");
  const char *nested = "["
                       "{\"id\":\"1\",\"o\":{\"p\":{\"q\":\"b\"}}},"
                       "{\"id\":\"2\",\"o\":{\"p\":{\"q\":\"A\"}}},"
                       "{\"id\":\"3\",\"o\":[{\"p\":{\"q\":\"c\"}}]},"
                       "{\"id\":\"4\",\"o\":\"scalar\"}"
                       "]";
  assert_string_equal(sorted_ids(nested, "o.p.q"), "4,2,1,3");
  /* big integers keep their order against doubles */
  const char *big = "["
                    "{\"id\":\"i1\",\"v\":9007199254740993},"
                    "{\"id\":\"d\",\"v\":9007199254740992.0},"
                    "{\"id\":\"i0\",\"v\":9007199254740992},"
                    "{\"id\":\"i2\",\"v\":9007199254740994}"
                    "]";
  const char *r = sorted_ids(big, "v");
  assert_true(strcmp(r, "d,i0,i1,i2") == 0 || strcmp(r, "i0,d,i1,i2") == 0);
}

static void test_sort_errors(void **state) {
  (void)state;
  bad_sort("name:up", "sort \"name:up\"", "unknown direction \"up\" for \"name\" at offset 5",
           NULL);
  bad_sort("name:", "unknown direction \"\"", NULL);
  bad_sort(":asc", "sort key 1 at offset 0 has no field name", NULL);
  bad_sort("name,", "sort key 2 at offset 5 has no field name", NULL);
  bad_sort("name,,age", "sort key 2", NULL);
  bad_sort("name:asc:desc", "too many \":\"", NULL);
  bad_sort("a..b", "empty path segment", NULL);
  bad_sort("first name", "contains a blank", NULL);
  bad_sort("name:\xff", "unknown direction \"?\"", NULL);
}

/* ---- robustness -------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint32_t rng(void) { /* xorshift64*, fixed seed: reproducible */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545F4DD2CE66F6Du) >> 32);
}

static void test_random_robustness(void **state) {
  (void)state;
  static const char *atoms[] = {
      "a",   "b",  "n",   "name", "x.y",  "tags", ".",    "=",       "==",   "!",    "!=", "<",
      ">",   "<=", ">=",  "<>",   "'",    "\"",   "''",   "(",       ")",    " ",    "\t", "%",
      "_",   "\\", "and", "OR",   "not",  "NOT",  "eq",   "matches", "null", "true", "1",  "-2.5e3",
      "0x1", ",",  ":",   "asc",  "desc", "\xff", "\xc3", "\xa9",    "\x01", "()",   "'x'"};
  size_t natoms = sizeof atoms / sizeof atoms[0];
  json_t *d = doc_load("{\"a\":\"1\",\"b\":[1,\"x\",null,{\"c\":2}],\"name\":\"Demo\","
                       "\"x\":{\"y\":[true,false]},\"tags\":[[\"a\"],[]],\"n\":null}");
  json_t *d2 = doc_load("{\"a\":2,\"name\":\"demo\",\"x\":[{\"y\":\"z\"}]}");
  char buf[256];
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = 0, natoms_here = rng() % 16;
    for (size_t k = 0; k < natoms_here; k++) {
      const char *a = atoms[rng() % natoms];
      size_t alen = strlen(a);
      if (len + alen >= sizeof buf) break;
      memcpy(buf + len, a, alen);
      len += alen;
    }
    buf[len] = 0;
    struct err e;
    err_init(&e);
    const char *f[] = {buf};
    int which = iter % 3;
    struct query *q = query_parse(which == 0 ? f : NULL, which == 0, which == 1 ? buf : NULL,
                                  which == 2 ? buf : NULL, &e);
    if (q) {
      parsed++;
      (void)query_match(q, d);
      (void)query_match(q, d2);
      int c1 = query_compare(q, d, d2), c2 = query_compare(q, d2, d);
      assert_true((c1 > 0) == (c2 < 0) && (c1 == 0) == (c2 == 0)); /* antisymmetric */
      assert_int_equal(query_compare(q, d, d), 0);
      query_free(q);
    } else {
      rejected++;
      assert_int_equal(e.status, 400);
      assert_true(e.message[0] != 0);
      json_t *s = json_string(e.message);
      if (!s) fail_msg("non-UTF-8 message for input %s", buf);
      json_decref(s);
    }
  }
  assert_true(parsed > 100);
  assert_true(rejected > 100);
  json_decref(d);
  json_decref(d2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_python_sdk_wrapped),
      cmocka_unit_test(test_matches_go_java),
      cmocka_unit_test(test_matches_escapes),
      cmocka_unit_test(test_unquoted_values),
      cmocka_unit_test(test_operators),
      cmocka_unit_test(test_quoting),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_not),
      cmocka_unit_test(test_multiple_filters_and_query),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_booleans),
      cmocka_unit_test(test_null_and_missing),
      cmocka_unit_test(test_arrays_and_paths),
      cmocka_unit_test(test_case_insensitive),
      cmocka_unit_test(test_long_and_wide),
      cmocka_unit_test(test_nesting_limit),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_sort_basic),
      cmocka_unit_test(test_sort_multi_key),
      cmocka_unit_test(test_sort_mixed_and_nested),
      cmocka_unit_test(test_sort_errors),
      cmocka_unit_test(test_random_robustness),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
