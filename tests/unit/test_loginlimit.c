/* test_loginlimit.c — the iSCSI target's failed-login limiter (loginlimit.h)
 * with a clock the test drives: the per-(address, initiator) bound leaves other
 * names at the same address alone, the per-address bound stops name rotation,
 * windows end, failures before the name is known count under the empty name,
 * eviction cannot wipe a busy counter, and logging stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/loginlimit.h"

#define T0 1000000
static const char *NAT = "192.0.2.7"; /* many servers behind one address */
static const char *GOOD = "iqn.2024-01.test:good";
static const char *BAD = "iqn.2024-01.test:wrong-chap";

static struct loginlimit *new_limit(void) {
  struct loginlimit *l = calloc(1, sizeof *l);
  assert_non_null(l);
  return l;
}

static int failed(struct loginlimit *l, const char *addr, const char *name, int64_t now) {
  struct ll_report r;
  return ll_failed(l, addr, name, now, &r);
}

static int blocked(struct loginlimit *l, const char *addr, const char *name, int64_t now) {
  struct ll_report r;
  return ll_blocked(l, addr, name, now, &r);
}

static void pair_bound_spares_other_names(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  for (int i = 1; i < LL_PAIR_MAX; i++) {
    assert_int_equal(failed(l, NAT, BAD, T0 + i), LL_OK);
    assert_int_equal(blocked(l, NAT, BAD, T0 + i), LL_OK);
  }
  struct ll_report r;
  assert_int_equal(ll_failed(l, NAT, BAD, T0 + 100, &r), LL_BLOCK_PAIR);
  assert_int_equal(r.log_block, 1);
  assert_true(r.block_ms > 0 && r.block_ms <= LL_WINDOW_MS);
  /* the failing name is refused; the good server at the same address, a login whose
   * name is not known yet, and the failing name from another address are not */
  assert_int_equal(blocked(l, NAT, BAD, T0 + 200), LL_BLOCK_PAIR);
  assert_int_equal(blocked(l, NAT, GOOD, T0 + 200), LL_OK);
  assert_int_equal(blocked(l, NAT, NULL, T0 + 200), LL_OK);
  assert_int_equal(blocked(l, "192.0.2.8", BAD, T0 + 200), LL_OK);
  /* refusals do not count: a looping initiator never reaches the address bound */
  for (int i = 0; i < 10 * LL_ADDR_MAX; i++)
    assert_int_equal(blocked(l, NAT, BAD, T0 + 300), LL_BLOCK_PAIR);
  assert_int_equal(blocked(l, NAT, GOOD, T0 + 300), LL_OK);
  /* a failure that raced past the check does not start a second block */
  assert_int_equal(ll_failed(l, NAT, BAD, T0 + 400, &r), LL_OK);
  assert_int_equal(r.log_block, 0);
  free(l);
}

static void window_ends(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  for (int i = 0; i < LL_PAIR_MAX; i++)
    failed(l, NAT, BAD, T0 + i);
  assert_int_equal(blocked(l, NAT, BAD, T0 + LL_WINDOW_MS - 1), LL_BLOCK_PAIR);
  assert_int_equal(blocked(l, NAT, BAD, T0 + LL_WINDOW_MS), LL_OK);
  /* a new window: the count starts again */
  for (int i = 1; i < LL_PAIR_MAX; i++)
    assert_int_equal(failed(l, NAT, BAD, T0 + LL_WINDOW_MS + i), LL_OK);
  assert_int_equal(blocked(l, NAT, BAD, T0 + LL_WINDOW_MS + 100), LL_OK);
  assert_int_equal(failed(l, NAT, BAD, T0 + LL_WINDOW_MS + 100), LL_BLOCK_PAIR);
  /* the address block ends too */
  char name[64];
  int64_t t = T0 + 10 * LL_WINDOW_MS;
  for (int i = 0; i < LL_ADDR_MAX; i++) {
    snprintf(name, sizeof name, "iqn.2024-01.test:rot%d", i);
    failed(l, NAT, name, t);
  }
  assert_int_equal(blocked(l, NAT, GOOD, t + LL_WINDOW_MS - 1), LL_BLOCK_ADDR);
  assert_int_equal(blocked(l, NAT, GOOD, t + LL_WINDOW_MS), LL_OK);
  assert_int_equal(blocked(l, NAT, NULL, t + LL_WINDOW_MS), LL_OK);
  free(l);
}

static void address_bound_stops_rotation(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  char name[64];
  /* each made-up name stays below its own bound; the address total does not */
  int got = LL_OK, at = -1;
  for (int i = 0; i < 2 * LL_ADDR_MAX && got == LL_OK; i++) {
    snprintf(name, sizeof name, "iqn.2024-01.attacker:n%d", i / (LL_PAIR_MAX - 1));
    got = failed(l, NAT, name, T0 + i);
    at = i + 1;
  }
  assert_int_equal(got, LL_BLOCK_ADDR);
  assert_int_equal(at, LL_ADDR_MAX);
  assert_int_equal(blocked(l, NAT, "iqn.2024-01.attacker:fresh", T0 + 1000), LL_BLOCK_ADDR);
  assert_int_equal(blocked(l, NAT, GOOD, T0 + 1000), LL_BLOCK_ADDR);
  assert_int_equal(blocked(l, NAT, NULL, T0 + 1000), LL_BLOCK_ADDR);
  assert_int_equal(blocked(l, "192.0.2.99", GOOD, T0 + 1000), LL_OK);
  free(l);
}

static void unknown_name_counts_under_empty(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  for (int i = 0; i < LL_PAIR_MAX - 1; i++)
    assert_int_equal(failed(l, NAT, NULL, T0 + i), LL_OK);
  assert_int_equal(failed(l, NAT, "", T0 + 50), LL_BLOCK_PAIR); /* NULL and "" are one bucket */
  assert_int_equal(blocked(l, NAT, "", T0 + 60), LL_BLOCK_PAIR);
  assert_int_equal(blocked(l, NAT, GOOD, T0 + 60), LL_OK);
  /* and they count against the address */
  for (int i = LL_PAIR_MAX; i < LL_ADDR_MAX - 1; i++)
    assert_int_equal(failed(l, NAT, NULL, T0 + 100), LL_OK);
  assert_int_equal(failed(l, NAT, BAD, T0 + 100), LL_BLOCK_ADDR);
  assert_int_equal(blocked(l, NAT, GOOD, T0 + 100), LL_BLOCK_ADDR);
  free(l);
}

static void eviction_keeps_busy_counters(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  char name[64], addr[64];
  /* the attacker's address is well on its way to the address bound, and one victim
   * pair is blocked */
  for (int i = 0; i < LL_ADDR_MAX - 10; i++) {
    snprintf(name, sizeof name, "iqn.2024-01.attacker:n%d", i / (LL_PAIR_MAX - 1));
    assert_int_equal(failed(l, NAT, name, T0 + i), LL_OK);
  }
  for (int i = 0; i < LL_PAIR_MAX; i++)
    failed(l, "198.51.100.1", BAD, T0 + i);
  /* churn: many times more addresses and pairs than the tables hold, 1 failure each */
  for (int i = 0; i < 8 * (LL_ADDR_SLOTS + LL_PAIR_SLOTS); i++) {
    snprintf(addr, sizeof addr, "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
    snprintf(name, sizeof name, "iqn.2024-01.churn:%d", i);
    assert_int_equal(failed(l, addr, name, T0 + 1000 + i / 100), LL_OK);
  }
  /* neither counter was wiped: 10 more failures block the attacker's address, and the
   * blocked pair is still refused */
  assert_int_equal(blocked(l, "198.51.100.1", BAD, T0 + 2000), LL_BLOCK_PAIR);
  int got = LL_OK;
  for (int i = 0; i < 10; i++)
    got = failed(l, NAT, "iqn.2024-01.attacker:last", T0 + 2000);
  assert_int_equal(got, LL_BLOCK_ADDR);
  /* an attacker at one address rotating names only creates pairs: the other blocked
   * pair (another address) stays blocked whatever it does */
  free(l);
  l = new_limit();
  for (int i = 0; i < LL_PAIR_MAX; i++)
    failed(l, "198.51.100.1", BAD, T0);
  for (int i = 0; i < 4 * LL_PAIR_SLOTS; i++) {
    snprintf(name, sizeof name, "iqn.2024-01.attacker:r%d", i);
    snprintf(addr, sizeof addr, "203.0.113.%d", i % 50); /* 50 addresses, below their bound */
    failed(l, addr, name, T0 + 1);
  }
  assert_int_equal(blocked(l, "198.51.100.1", BAD, T0 + 2), LL_BLOCK_PAIR);
  /* expired entries are reused first: after the window everything is forgotten */
  assert_int_equal(blocked(l, "198.51.100.1", BAD, T0 + LL_WINDOW_MS + 1), LL_OK);
  free(l);
}

static void logging_is_bounded(void **state) {
  (void)state;
  struct loginlimit *l = new_limit();
  struct ll_report r;
  int logged = 0, block_lines = 0;
  for (int i = 0; i < 50; i++) {
    ll_failed(l, NAT, BAD, T0 + i, &r);
    logged += r.log;
    block_lines += r.log_block;
    assert_int_equal(r.sum_addr[0], 0);
  }
  assert_int_equal(logged, LL_LOG_PER_ADDR);
  assert_int_equal(block_lines, 1);
  for (int i = 0; i < 7; i++)
    ll_blocked(l, NAT, BAD, T0 + 100, &r);
  /* the window ends: one summary with what was not logged and what was refused */
  assert_int_equal(ll_blocked(l, NAT, BAD, T0 + LL_WINDOW_MS + 5, &r), LL_OK);
  assert_string_equal(r.sum_addr, NAT);
  assert_int_equal(r.sum_suppressed, 50 - LL_LOG_PER_ADDR);
  assert_int_equal(r.sum_refused, 7);
  ll_blocked(l, NAT, BAD, T0 + LL_WINDOW_MS + 6, &r);
  assert_int_equal(r.sum_addr[0], 0); /* only once */
  free(l);

  /* many addresses: at most LL_LOG_GLOBAL lines a window, then a count */
  l = new_limit();
  char addr[64];
  logged = 0;
  int naddr = 2 * LL_LOG_GLOBAL / LL_LOG_PER_ADDR;
  for (int i = 0; i < naddr * LL_LOG_PER_ADDR; i++) {
    snprintf(addr, sizeof addr, "10.0.%d.%d", (i % naddr) >> 8, (i % naddr) & 255);
    ll_failed(l, addr, BAD, T0 + 1, &r);
    logged += r.log;
  }
  assert_int_equal(logged, LL_LOG_GLOBAL);
  ll_failed(l, "10.9.9.9", BAD, T0 + LL_WINDOW_MS + 1, &r);
  assert_int_equal(r.glob_suppressed, naddr * LL_LOG_PER_ADDR - LL_LOG_GLOBAL);
  assert_int_equal(r.log, 1);
  /* other refusals (protocol errors) have their own budget: they neither count as
   * failures nor use up the failure lines */
  logged = 0;
  for (int i = 0; i < 3 * LL_LOG_REFUSED; i++)
    logged += ll_refused(l, T0 + LL_WINDOW_MS + 2, &r);
  assert_int_equal(logged, LL_LOG_REFUSED);
  assert_int_equal(blocked(l, "10.9.9.9", BAD, T0 + LL_WINDOW_MS + 2), LL_OK);
  assert_int_equal(ll_failed(l, "10.9.9.8", BAD, T0 + LL_WINDOW_MS + 2, &r), LL_OK);
  assert_int_equal(r.log, 1);
  assert_int_equal(ll_refused(l, T0 + 2 * LL_WINDOW_MS + 2, &r), 1);
  assert_int_equal(r.ref_suppressed, 2 * LL_LOG_REFUSED);
  free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pair_bound_spares_other_names),
      cmocka_unit_test(window_ends),
      cmocka_unit_test(address_bound_stops_rotation),
      cmocka_unit_test(unknown_name_counts_under_empty),
      cmocka_unit_test(eviction_keeps_busy_counters),
      cmocka_unit_test(logging_is_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
