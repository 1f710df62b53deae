/* loginlimit.h — the iSCSI target's failed-login limiter: which logins to refuse
 * after repeated failures, and which failures to log. Pure (no lock, no clock,
 * no logging): target.c holds srv->fail_lock around every call, passes the
 * monotonic time and writes the log lines this reports.
 *
 * What counts: a login refused for authentication (CHAP), authorization (ACL)
 * or an unknown target. A login refused by the limiter itself does not count
 * (it made no guess), so an initiator retrying in a loop while refused never
 * pushes its address towards the address bound.
 *
 * Two bounds, each over a fixed window that starts at the first failure:
 *  - per (address, initiator name): LL_PAIR_MAX failures refuse that name from
 *    that address until its window ends. A failure before the InitiatorName is
 *    known counts under the empty name. Servers behind one NAT address, jump
 *    host or lab router each have their own name, so one misconfigured server
 *    retrying a wrong CHAP secret locks out only itself.
 *  - per address, all names together: LL_ADDR_MAX failures refuse every login
 *    from that address until its window ends, so an attacker rotating made-up
 *    initiator names from one address is still stopped.
 *
 * The numbers. 20 per name and minute is the old per-address bound: it lets a
 * firmware or iPXE initiator with a typo retry for a while (each logs a line)
 * and stops guessing at 20 a minute per name. 200 per address and minute is 10
 * names' worth: at 20 failures per blocked name (refused attempts do not
 * count), 10 servers behind one address can be misconfigured at the same time
 * before the others at that address are refused, while a name-rotating guesser
 * gets at most 200 guesses a minute from one address — 288 000 a day, nothing
 * against a generated CHAP secret (96 random bits), and about 10^15 years on
 * average to exhaust the shortest random secret accepted (12 printable
 * characters, 95^12 ≈ 5·10^23).
 *
 * Memory is bounded: LL_ADDR_SLOTS addresses and LL_PAIR_SLOTS pairs (about
 * 90 KiB). A new entry takes a free or expired slot, else the slot with the
 * FEWEST failures in its window (ties: the oldest window) — never simply the
 * oldest, which would let an attacker wipe counts by creating entries. An
 * attacker at one address creates pair entries (one per name) but only one
 * address entry, its own, so it cannot evict its address count at all; its
 * new pair entries start at 1 failure and evict each other (or other
 * near-empty pairs) before any pair close to its bound, and every failure
 * also counts against the address bound, which pair eviction cannot touch.
 * Evicting an address entry needs LL_ADDR_SLOTS other addresses each with at
 * least as many failures in the current window: someone who owns that many
 * addresses already has that many times the per-address budget, which no
 * per-address limit can take away (that is what secret strength is for).
 * What eviction can lose is counts of entries far below their bound (a few
 * failures): the limiter then errs on the lenient side, never locks out
 * anyone who has not failed. Known limits: an attacker sharing a legitimate
 * server's address can still lock that address out by failing LL_ADDR_MAX
 * times (10 times more work than before), or lock out one name by using it;
 * IPv6 privacy addresses of one host count as different addresses.
 *
 * Logging: at most LL_LOG_PER_ADDR failure lines per address and window and
 * LL_LOG_GLOBAL lines per window in all, then one summary line per address
 * (lines not logged, logins refused) when its window ends or its entry is
 * reused; one line when a block begins; logins the limiter refuses are
 * counted, not logged one by one; other refusals (protocol errors) are
 * logged at most LL_LOG_REFUSED times per window, then counted. */
#ifndef STREAMER_ISCSI_LOGINLIMIT_H
#define STREAMER_ISCSI_LOGINLIMIT_H

#include <stdint.h>

#define LL_WINDOW_MS 60000 /* both bounds: failures within this time after the first one */
#define LL_PAIR_MAX 20     /* failures of one initiator name from one address */
#define LL_ADDR_MAX 200    /* failures from one address, every name together */
#define LL_LOG_PER_ADDR 5  /* failure lines per address and window */
#define LL_LOG_GLOBAL 100  /* lines per window, every address together */
#define LL_LOG_REFUSED 100 /* lines per window for other refusals (protocol errors...) */
#define LL_ADDR_SLOTS 128
#define LL_PAIR_SLOTS 256
#define LL_ADDR_LEN 64  /* numeric host as getnameinfo gives it */
#define LL_NAME_LEN 224 /* iSCSI names are at most 223 bytes */

struct ll_addr {
  int used;
  char addr[LL_ADDR_LEN];
  int64_t start; /* window start (first failure) */
  int count;     /* failures in the window */
  int logged, suppressed, refused;
};

struct ll_pair {
  int used;
  char addr[LL_ADDR_LEN];
  char name[LL_NAME_LEN];
  int64_t start;
  int count;
};

struct loginlimit { /* all zero: empty */
  struct ll_addr addrs[LL_ADDR_SLOTS];
  struct ll_pair pairs[LL_PAIR_SLOTS];
  int64_t glob_start;
  int glob_logged, glob_suppressed;
  int64_t ref_start; /* other refusals: their own budget, so they cannot hide failures */
  int ref_logged, ref_suppressed;
};

enum { LL_OK = 0, LL_BLOCK_PAIR, LL_BLOCK_ADDR };

/* What the caller logs besides the event itself. */
struct ll_report {
  int log;       /* ll_failed: this failure may be logged */
  int log_block; /* ll_failed returned a block that begins now: it may be logged */
  int64_t block_ms;
  /* an address window that ended (or whose entry was reused) with lines not logged or
   * logins refused: one summary line; both 0 = none */
  char sum_addr[LL_ADDR_LEN];
  int sum_suppressed, sum_refused;
  int glob_suppressed; /* lines dropped by LL_LOG_GLOBAL in the global window that ended */
  int ref_suppressed;  /* ll_refused: lines dropped in the window that ended */
};

/* A failed login from addr (the numeric host, no port) as initiator name (NULL or ""
 * when not known yet). Returns LL_BLOCK_PAIR or LL_BLOCK_ADDR when this failure reaches
 * that bound (the block begins; block_ms = how long), else LL_OK. */
int ll_failed(struct loginlimit *l, const char *addr, const char *name, int64_t now,
              struct ll_report *r);

/* Whether a login from addr as initiator name (NULL: not known yet — the address bound
 * only) is refused now: LL_BLOCK_ADDR, LL_BLOCK_PAIR or LL_OK. A refusal is counted for
 * the address's summary line. */
int ll_blocked(struct loginlimit *l, const char *addr, const char *name, int64_t now,
               struct ll_report *r);

/* A login refused for another reason (protocol error, unsupported version, out of
 * resources...): not counted (no guess was made), but its log line comes out of its own
 * budget of LL_LOG_REFUSED per window, so malformed logins in a loop cannot flood the log.
 * 1 if it may be logged. */
int ll_refused(struct loginlimit *l, int64_t now, struct ll_report *r);

#endif
