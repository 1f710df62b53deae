/* loginlimit.c — the failed-login limiter (see loginlimit.h for the rules,
 * the numbers and the eviction trade-off). */
#include "iscsi/loginlimit.h"

#include <stdio.h>
#include <string.h>

static int expired(int64_t start, int64_t now) { return now - start >= LL_WINDOW_MS; }

/* Which of two used entries to give up first: fewer failures, then the older window. */
static int weaker(int count_a, int64_t start_a, int count_b, int64_t start_b) {
  return count_a < count_b || (count_a == count_b && start_a < start_b);
}

static void global_roll(struct loginlimit *l, int64_t now, struct ll_report *r) {
  if (l->glob_start && !expired(l->glob_start, now)) return;
  r->glob_suppressed = l->glob_suppressed;
  l->glob_start = now ? now : 1;
  l->glob_logged = l->glob_suppressed = 0;
}

/* One line out of the global budget: 1 if it may be logged, else it is counted. */
static int global_take(struct loginlimit *l) {
  if (l->glob_logged >= LL_LOG_GLOBAL) {
    l->glob_suppressed++;
    return 0;
  }
  l->glob_logged++;
  return 1;
}

/* The address's summary line, if it has one, into r (at most one per call); it takes
 * from the global budget like any line, so many addresses cannot flood with summaries. */
static void addr_summary(struct loginlimit *l, const struct ll_addr *a, struct ll_report *r) {
  if ((!a->suppressed && !a->refused) || r->sum_addr[0] || !global_take(l)) return;
  snprintf(r->sum_addr, sizeof r->sum_addr, "%s", a->addr);
  r->sum_suppressed = a->suppressed;
  r->sum_refused = a->refused;
}

/* The live entry of addr (an expired one is summarized and freed), or NULL. */
static struct ll_addr *addr_find(struct loginlimit *l, const char *addr, int64_t now,
                                 struct ll_report *r) {
  for (int i = 0; i < LL_ADDR_SLOTS; i++) {
    struct ll_addr *a = &l->addrs[i];
    if (!a->used || strcmp(a->addr, addr)) continue;
    if (!expired(a->start, now)) return a;
    addr_summary(l, a, r);
    memset(a, 0, sizeof *a);
    return NULL;
  }
  return NULL;
}

static struct ll_addr *addr_get(struct loginlimit *l, const char *addr, int64_t now,
                                struct ll_report *r) {
  struct ll_addr *a = addr_find(l, addr, now, r);
  if (a) return a;
  struct ll_addr *victim = NULL;
  for (int i = 0; i < LL_ADDR_SLOTS; i++) {
    struct ll_addr *x = &l->addrs[i];
    if (!x->used || expired(x->start, now)) {
      victim = x;
      break;
    }
    if (!victim || weaker(x->count, x->start, victim->count, victim->start)) victim = x;
  }
  if (victim->used) addr_summary(l, victim, r);
  memset(victim, 0, sizeof *victim);
  victim->used = 1;
  snprintf(victim->addr, sizeof victim->addr, "%s", addr);
  victim->start = now;
  return victim;
}

static struct ll_pair *pair_find(struct loginlimit *l, const char *addr, const char *name,
                                 int64_t now) {
  for (int i = 0; i < LL_PAIR_SLOTS; i++) {
    struct ll_pair *p = &l->pairs[i];
    if (!p->used || strcmp(p->addr, addr) || strcmp(p->name, name)) continue;
    if (!expired(p->start, now)) return p;
    memset(p, 0, sizeof *p);
    return NULL;
  }
  return NULL;
}

static struct ll_pair *pair_get(struct loginlimit *l, const char *addr, const char *name,
                                int64_t now) {
  struct ll_pair *p = pair_find(l, addr, name, now);
  if (p) return p;
  struct ll_pair *victim = NULL;
  for (int i = 0; i < LL_PAIR_SLOTS; i++) {
    struct ll_pair *x = &l->pairs[i];
    if (!x->used || expired(x->start, now)) {
      victim = x;
      break;
    }
    if (!victim || weaker(x->count, x->start, victim->count, victim->start)) victim = x;
  }
  memset(victim, 0, sizeof *victim);
  victim->used = 1;
  snprintf(victim->addr, sizeof victim->addr, "%s", addr);
  snprintf(victim->name, sizeof victim->name, "%s", name);
  victim->start = now;
  return victim;
}

int ll_failed(struct loginlimit *l, const char *addr, const char *name, int64_t now,
              struct ll_report *r) {
  memset(r, 0, sizeof *r);
  if (!name) name = "";
  global_roll(l, now, r);
  struct ll_addr *a = addr_get(l, addr, now, r);
  struct ll_pair *p = pair_get(l, addr, name, now);
  a->count++;
  p->count++;
  if (a->logged >= LL_LOG_PER_ADDR)
    a->suppressed++; /* in the address's summary line */
  else if (global_take(l)) {
    a->logged++;
    r->log = 1;
  } /* else counted in the global summary line */
  int block = LL_OK;
  if (a->count == LL_ADDR_MAX) {
    block = LL_BLOCK_ADDR;
    r->block_ms = a->start + LL_WINDOW_MS - now;
  } else if (p->count == LL_PAIR_MAX && a->count < LL_ADDR_MAX) {
    block = LL_BLOCK_PAIR;
    r->block_ms = p->start + LL_WINDOW_MS - now;
  }
  if (block) r->log_block = global_take(l);
  return block;
}

int ll_blocked(struct loginlimit *l, const char *addr, const char *name, int64_t now,
               struct ll_report *r) {
  memset(r, 0, sizeof *r);
  global_roll(l, now, r);
  struct ll_addr *a = addr_find(l, addr, now, r);
  int block = LL_OK;
  if (a && a->count >= LL_ADDR_MAX) {
    block = LL_BLOCK_ADDR;
  } else if (name) {
    struct ll_pair *p = pair_find(l, addr, name, now);
    if (p && p->count >= LL_PAIR_MAX) block = LL_BLOCK_PAIR;
  }
  if (block && a) a->refused++;
  return block;
}

int ll_refused(struct loginlimit *l, int64_t now, struct ll_report *r) {
  memset(r, 0, sizeof *r);
  if (!l->ref_start || expired(l->ref_start, now)) {
    r->ref_suppressed = l->ref_suppressed;
    l->ref_start = now ? now : 1;
    l->ref_logged = l->ref_suppressed = 0;
  }
  if (l->ref_logged >= LL_LOG_REFUSED) {
    l->ref_suppressed++;
    return 0;
  }
  l->ref_logged++;
  return 1;
}
