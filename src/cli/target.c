/* target.c — `streamer target ...`: the built-in iSCSI target as
 * GET /rest/iscsi/targets shows it (a Streamer extension): the exported
 * targets with their ACL and counters, and the live sessions with their
 * initiator, addresses, bytes and I/O rate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static const char TARGET_HELP[] =
    "usage: streamer target SUBCOMMAND [options]\n"
    "\n"
    "  list                               the iSCSI targets (one per OS volume) and portals\n"
    "  sessions [TARGET] [--interval SEC] live sessions: initiator, addresses, bytes, IOPS\n"
    "\n"
    "TARGET is a target name (IQN), an OS volume name or id.\n";
static const char LIST_USAGE[] = "usage: streamer target list\n";
static const char SESSIONS_USAGE[] =
    "usage: streamer target sessions [TARGET] [--interval SEC]\n"
    "\n"
    "List the live iSCSI sessions (of one target when TARGET, an IQN or an OS volume's\n"
    "name or id, is given). IOPS is the average since the session started; with\n"
    "--interval SEC, the rate over the next SEC seconds (two samples).\n";

static json_int_t num(json_t *o, const char *key) {
  return json_integer_value(json_object_get(o, key));
}

static int fetch(struct cli *c, json_t **out) {
  return api_call(c, "GET", "/rest/iscsi/targets", NULL, NULL, out);
}

static int target_list(struct cli *c, int argc, char **argv) {
  struct args a;
  int rc = args_parse(c, &a, argc, argv, NULL, 0, 0, LIST_USAGE);
  if (rc || a.help) return rc;
  json_t *list CLEANUP_JSON = NULL;
  if ((rc = fetch(c, &list))) return rc;
  if (c->json) {
    out_json(list);
    return CLI_OK;
  }
  if (!json_is_true(json_object_get(list, "enabled"))) {
    printf("The iSCSI target is disabled on this server (--iscsi-listen none).\n");
    return CLI_OK;
  }
  json_t *portals = json_object_get(list, "portals");
  printf("portals:");
  size_t i;
  json_t *p;
  json_array_foreach(portals, i, p) { printf(" %s", json_string_value(p) ?: ""); }
  printf("\n\n");
  static const char *const hdr[] = {"TARGET", "VOLUME",   "SIZE", "INITIATORS",
                                    "CHAP",   "SESSIONS", "READ", "WRITTEN"};
  struct table *t = table_new(8, hdr);
  json_t *m;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    char size[32], rd[32], wr[32], ns[16];
    json_t *st = json_object_get(m, "stats");
    out_human_bytes(num(m, "size"), size, sizeof size);
    out_human_bytes(num(st, "readBytes"), rd, sizeof rd);
    out_human_bytes(num(st, "writeBytes"), wr, sizeof wr);
    snprintf(ns, sizeof ns, "%zu", json_array_size(json_object_get(m, "sessions")));
    CLEANUP_FREE char *inits = out_text(json_object_get(m, "initiatorNames"));
    const char *row[] = {jstr(m, "targetName"),
                         jstr(m, "alias"),
                         size,
                         inits,
                         json_is_true(json_object_get(m, "chap")) ? "on" : "off",
                         ns,
                         rd,
                         wr};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  return CLI_OK;
}

/* Does target m match what the user typed (IQN, volume name or id)? */
static int matches(json_t *m, const char *ref) {
  if (!ref) return 1;
  if (util_strcaseeq(jstr(m, "targetName"), ref) || strcmp(jstr(m, "alias"), ref) == 0) return 1;
  const char *uri = jstr(m, "osVolumeUri");
  const char *slash = strrchr(uri, '/');
  return slash && strcmp(slash + 1, ref) == 0;
}

/* ms since the epoch of a session's "started" (an ISO 8601 time or a number). */
static int64_t started_ms(json_t *v) {
  if (json_is_integer(v)) return json_integer_value(v);
  const char *s = json_string_value(v);
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
  if (!rest) return 0;
  int ms = 0;
  if (*rest == '.') ms = atoi(rest + 1);
  return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The session of `sample` with the same target, isid and tsih as s. */
static json_t *same_session(json_t *sample, const char *target, json_t *s) {
  size_t i, j;
  json_t *m, *x;
  json_array_foreach(json_object_get(sample, "members"), i, m) {
    if (strcmp(jstr(m, "targetName"), target) != 0) continue;
    json_array_foreach(json_object_get(m, "sessions"), j, x) {
      if (json_equal(json_object_get(x, "isid"), json_object_get(s, "isid")) &&
          json_equal(json_object_get(x, "tsih"), json_object_get(s, "tsih")))
        return x;
    }
  }
  return NULL;
}

static int target_sessions(struct cli *c, int argc, char **argv) {
  static const struct opt_spec spec[] = {{"interval", 1}, {NULL, 0}};
  struct args a;
  int rc = args_parse(c, &a, argc, argv, spec, 0, 1, SESSIONS_USAGE);
  if (rc || a.help) return rc;
  const char *ref = a.npos ? a.pos[0] : NULL;
  double interval = 0;
  const char *iv = args_get(&a, "interval");
  if (iv) {
    char *end;
    interval = strtod(iv, &end);
    if (*end || !(interval > 0 && interval <= 3600))
      return cli_usage_error(SESSIONS_USAGE, "--interval must be a number of seconds (0 to 3600)");
  }
  json_t *first CLEANUP_JSON = NULL;
  json_t *list CLEANUP_JSON = NULL;
  if ((rc = fetch(c, &list))) return rc;
  if (ref) {
    int found = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(list, "members"), i, m) { found |= matches(m, ref); }
    if (!found) {
      fprintf(stderr, "error: no iSCSI target or OS volume \"%s\"\n", ref);
      fprintf(stderr, "hint: 'streamer target list' shows them\n");
      return CLI_ESERVER;
    }
  }
  if (interval > 0) {
    first = list;
    list = NULL;
    struct timespec ts = {(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)};
    nanosleep(&ts, NULL);
    if ((rc = fetch(c, &list))) return rc;
  }
  int64_t now = util_now_ms();
  json_t *rows = json_array();
  size_t i, j;
  json_t *m, *s;
  json_array_foreach(json_object_get(list, "members"), i, m) {
    if (!matches(m, ref)) continue;
    json_array_foreach(json_object_get(m, "sessions"), j, s) {
      double iops = 0;
      if (first) {
        json_t *old = same_session(first, jstr(m, "targetName"), s);
        json_int_t d = num(s, "commands") - (old ? num(old, "commands") : 0);
        iops = (double)d / interval;
      } else {
        int64_t t0 = started_ms(json_object_get(s, "started"));
        if (t0 > 0 && now > t0) iops = (double)num(s, "commands") * 1000.0 / (double)(now - t0);
      }
      json_t *row = json_deep_copy(s);
      json_object_set_new(row, "targetName", json_string(jstr(m, "targetName")));
      json_object_set_new(row, "volume", json_string(jstr(m, "alias")));
      json_object_set_new(row, "iops", json_real(iops));
      json_array_append_new(rows, row);
    }
  }
  if (c->json) {
    out_json(rows);
    json_decref(rows);
    return CLI_OK;
  }
  if (json_array_size(rows) == 0) {
    printf("No iSCSI sessions%s%s.\n", ref ? " on " : "", ref ? ref : "");
    json_decref(rows);
    return CLI_OK;
  }
  static const char *const hdr[] = {"VOLUME",  "INITIATOR", "ADDRESSES", "READ",
                                    "WRITTEN", "IOPS",      "TARGET"};
  struct table *t = table_new(7, hdr);
  json_array_foreach(rows, i, s) {
    char rd[32], wr[32], iops[32], addr[512] = "";
    out_human_bytes(num(s, "readBytes"), rd, sizeof rd);
    out_human_bytes(num(s, "writeBytes"), wr, sizeof wr);
    snprintf(iops, sizeof iops, "%.1f", json_real_value(json_object_get(s, "iops")));
    json_t *conn;
    json_array_foreach(json_object_get(s, "connections"), j, conn) {
      snprintf(addr + strlen(addr), sizeof addr - strlen(addr), "%s%s -> %s", j ? ", " : "",
               jstr(conn, "peer"), jstr(conn, "local"));
    }
    const char *row[] = {jstr(s, "volume"),    jstr(s, "initiatorName"), addr, rd, wr, iops,
                         jstr(s, "targetName")};
    table_add(t, row);
  }
  table_print(t, stdout, NULL);
  table_free(t);
  json_decref(rows);
  return CLI_OK;
}

int cmd_target(struct cli *c, int argc, char **argv) {
  static const struct subcmd subs[] = {
      {"list", target_list, NULL}, {"sessions", target_sessions, NULL}, {NULL, NULL, NULL}};
  return cli_dispatch(c, "target", TARGET_HELP, subs, argc, argv);
}
