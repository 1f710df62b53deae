/* iscsi_load.c — an iSCSI load generator over libiscsi's async API (Debian
 * libiscsi-dev), for bench/iscsi_bench.py: what iscsi-perf cannot do (writes,
 * many sessions at once, a fixed amount of data per session with per-session
 * times), in one process and one poll() loop so that the client's CPU cost stays
 * small on a 2-CPU machine.
 *
 *   iscsi_load [-i IQN] [-m randread|randwrite|seqread|seqwrite] [-b BYTES]
 *              [-q DEPTH] [-t SECONDS] [-n BYTES] [-s BYTES] URL [URL ...]
 *
 * One session per URL (iscsi://[user%secret@]host:port/iqn/lun). -q commands in
 * flight per session, -b bytes each (READ16 / WRITE16, FUA off). Random offsets are
 * -b aligned within the first -s bytes of the LUN (default: all of it); sequential
 * runs start at 0 and wrap at -s. A session stops after -n bytes (sequential: the
 * first -n bytes once) or when -t seconds have passed. Data-In lands directly in a
 * per-slot buffer (scsi_task_add_data_in_buffer: no copy in libiscsi); writes send
 * pseudo-random bytes. HeaderDigest and DataDigest None.
 *
 * Prints one JSON object on stdout: totals, IOPS, MB/s (10^6), latency percentiles
 * (µs, from submission to completion), login time, and per session its bytes and
 * seconds. Exit status 1 on a setup error or any failed command. */
#include <errno.h>
#include <getopt.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum mode { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };

#define LAT_BUCKETS 1000000 /* 1 µs resolution up to 1 s, then overflow */

struct session;

struct slot {
  struct session *s;
  unsigned char *buf;
  double t0;
};

struct session {
  struct iscsi_context *iscsi;
  int lun;
  uint32_t block;
  uint64_t span;       /* bytes */
  uint64_t next_off;   /* sequential */
  uint64_t issued;     /* bytes submitted */
  uint64_t done_bytes; /* bytes completed */
  uint64_t ops;
  int inflight;
  int stopped;
  double t_start, t_end;
  uint64_t rng;
  struct slot *slots;
  struct slot **free_slots;
  int nfree;
};

static enum mode g_mode = RANDREAD;
static uint32_t g_bs = 4096;
static int g_qd = 32;
static double g_seconds = 0;
static uint64_t g_limit = 0, g_span = 0;
static uint32_t *g_lat;
static uint64_t g_lat_over, g_errors;
static double g_deadline;
static const char *g_first_error;
static char g_errbuf[512];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static int submit(struct session *s);

static void record_error(struct session *s, const char *what) {
  g_errors++;
  if (!g_first_error) {
    snprintf(g_errbuf, sizeof g_errbuf, "%s: %s", what, iscsi_get_error(s->iscsi));
    g_first_error = g_errbuf;
  }
}

static void done_cb(struct iscsi_context *iscsi, int status, void *command_data,
                    void *private_data) {
  struct slot *sl = private_data;
  struct session *s = sl->s;
  struct scsi_task *task = command_data;
  double t = now();
  uint64_t us = (uint64_t)((t - sl->t0) * 1e6);
  (void)iscsi;
  if (us < LAT_BUCKETS)
    g_lat[us]++;
  else
    g_lat_over++;
  if (status != SCSI_STATUS_GOOD) {
    char what[160];
    snprintf(what, sizeof what, "command failed, status %d, sense key %d ascq 0x%04x", status,
             task ? (int)task->sense.key : -1, task ? (int)task->sense.ascq : 0);
    record_error(s, what);
  } else {
    s->done_bytes += g_bs;
    s->ops++;
  }
  if (task) scsi_free_scsi_task(task);
  s->inflight--;
  s->free_slots[s->nfree++] = sl;
  if (!s->stopped) submit(s);
  if (s->stopped && s->inflight == 0 && s->t_end == 0) s->t_end = t;
}

static int submit(struct session *s) {
  while (s->nfree > 0 && !s->stopped) {
    double t = now();
    if ((g_limit && s->issued >= g_limit) || (g_deadline > 0 && t >= g_deadline)) {
      s->stopped = 1;
      break;
    }
    uint64_t off;
    if (g_mode == RANDREAD || g_mode == RANDWRITE) {
      off = (xorshift(&s->rng) % (s->span / g_bs)) * g_bs;
    } else {
      if (s->next_off + g_bs > s->span) s->next_off = 0;
      off = s->next_off;
      s->next_off += g_bs;
    }
    struct slot *sl = s->free_slots[--s->nfree];
    int is_write = g_mode == RANDWRITE || g_mode == SEQWRITE;
    struct scsi_task *task =
        is_write ? scsi_cdb_write16(off / s->block, g_bs, (int)s->block, 0, 0, 0, 0, 0)
                 : scsi_cdb_read16(off / s->block, g_bs, (int)s->block, 0, 0, 0, 0, 0);
    if (!task) {
      record_error(s, "out of memory");
      s->free_slots[s->nfree++] = sl;
      s->stopped = 1;
      return -1;
    }
    struct iscsi_data d = {.size = g_bs, .data = sl->buf};
    if (!is_write) scsi_task_add_data_in_buffer(task, (int)g_bs, sl->buf);
    sl->t0 = t;
    if (iscsi_scsi_command_async(s->iscsi, s->lun, task, done_cb, is_write ? &d : NULL, sl) != 0) {
      record_error(s, "iscsi_scsi_command_async");
      scsi_free_scsi_task(task);
      s->free_slots[s->nfree++] = sl;
      s->stopped = 1;
      return -1;
    }
    s->inflight++;
    s->issued += g_bs;
  }
  return 0;
}

static int connect_session(struct session *s, const char *initiator, const char *url_s) {
  s->iscsi = iscsi_create_context(initiator);
  if (!s->iscsi) return fprintf(stderr, "iscsi_create_context failed\n"), -1;
  struct iscsi_url *url = iscsi_parse_full_url(s->iscsi, url_s);
  if (!url) return fprintf(stderr, "bad URL %s: %s\n", url_s, iscsi_get_error(s->iscsi)), -1;
  iscsi_set_targetname(s->iscsi, url->target);
  iscsi_set_session_type(s->iscsi, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(s->iscsi, ISCSI_HEADER_DIGEST_NONE);
  if (url->user[0]) iscsi_set_initiator_username_pwd(s->iscsi, url->user, url->passwd);
  s->lun = url->lun;
  if (iscsi_full_connect_sync(s->iscsi, url->portal, url->lun) != 0) {
    fprintf(stderr, "login to %s failed: %s\n", url_s, iscsi_get_error(s->iscsi));
    iscsi_destroy_url(url);
    return -1;
  }
  iscsi_destroy_url(url);
  struct scsi_task *t = iscsi_readcapacity16_sync(s->iscsi, s->lun);
  struct scsi_readcapacity16 *rc =
      t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
  if (!rc) {
    fprintf(stderr, "READ CAPACITY (16) on %s failed: %s\n", url_s, iscsi_get_error(s->iscsi));
    if (t) scsi_free_scsi_task(t);
    return -1;
  }
  s->block = rc->block_length;
  uint64_t size = (rc->returned_lba + 1) * (uint64_t)rc->block_length;
  scsi_free_scsi_task(t);
  s->span = g_span && g_span < size ? g_span : size;
  if (g_bs % s->block || s->span < g_bs) {
    fprintf(stderr, "block size %u of %s does not fit -b %u / -s\n", s->block, url_s, g_bs);
    return -1;
  }
  s->slots = calloc((size_t)g_qd, sizeof *s->slots);
  s->free_slots = calloc((size_t)g_qd, sizeof *s->free_slots);
  if (!s->slots || !s->free_slots) return -1;
  for (int i = 0; i < g_qd; i++) {
    s->slots[i].s = s;
    if (posix_memalign((void **)&s->slots[i].buf, 4096, g_bs)) return -1;
    for (uint32_t j = 0; j < g_bs; j += 8) {
      uint64_t v = xorshift(&s->rng);
      memcpy(s->slots[i].buf + j, &v, g_bs - j < 8 ? g_bs - j : 8);
    }
    s->free_slots[s->nfree++] = &s->slots[i];
  }
  return 0;
}

static uint64_t percentile(uint64_t total, double p) {
  uint64_t want = (uint64_t)(p * (double)total), acc = 0;
  for (uint64_t i = 0; i < LAT_BUCKETS; i++) {
    acc += g_lat[i];
    if (acc > want) return i;
  }
  return LAT_BUCKETS;
}

static void usage(void) {
  fprintf(
      stderr,
      "usage: iscsi_load [-i IQN] [-m randread|randwrite|seqread|seqwrite] [-b BYTES] [-q DEPTH]\n"
      "                  [-t SECONDS] [-n BYTES-PER-SESSION] [-s SPAN-BYTES] URL [URL ...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *initiator = "iqn.2024-11.org.streamer:bench";
  int c;
  while ((c = getopt(argc, argv, "i:m:b:q:t:n:s:h")) != -1) {
    switch (c) {
    case 'i': initiator = optarg; break;
    case 'm':
      if (!strcmp(optarg, "randread"))
        g_mode = RANDREAD;
      else if (!strcmp(optarg, "randwrite"))
        g_mode = RANDWRITE;
      else if (!strcmp(optarg, "seqread"))
        g_mode = SEQREAD;
      else if (!strcmp(optarg, "seqwrite"))
        g_mode = SEQWRITE;
      else
        usage();
      break;
    case 'b': g_bs = (uint32_t)strtoul(optarg, NULL, 0); break;
    case 'q': g_qd = atoi(optarg); break;
    case 't': g_seconds = atof(optarg); break;
    case 'n': g_limit = strtoull(optarg, NULL, 0); break;
    case 's': g_span = strtoull(optarg, NULL, 0); break;
    default: usage();
    }
  }
  int n = argc - optind;
  if (n < 1 || g_bs == 0 || g_qd < 1 || (!g_seconds && !g_limit)) usage();
  g_lat = calloc(LAT_BUCKETS, sizeof *g_lat);
  struct session *ss = calloc((size_t)n, sizeof *ss);
  struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
  if (!g_lat || !ss || !pfd) return 1;

  double tl0 = now();
  for (int i = 0; i < n; i++) {
    ss[i].rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)(i + 1) * 0xD1B54A32D192ED03ull);
    if (connect_session(&ss[i], initiator, argv[optind + i]) != 0) return 1;
  }
  double login_s = now() - tl0;

  double t0 = now();
  g_deadline = g_seconds > 0 ? t0 + g_seconds : 0;
  for (int i = 0; i < n; i++) {
    ss[i].t_start = t0;
    submit(&ss[i]);
  }
  for (;;) {
    int active = 0;
    for (int i = 0; i < n; i++) {
      struct session *s = &ss[i];
      if (s->stopped && s->inflight == 0) {
        if (s->t_end == 0) s->t_end = now();
        pfd[i].fd = -1;
        continue;
      }
      active++;
      pfd[i].fd = iscsi_get_fd(s->iscsi);
      pfd[i].events = (short)iscsi_which_events(s->iscsi);
    }
    if (!active) break;
    int r = poll(pfd, (nfds_t)n, 100);
    if (r < 0 && errno != EINTR) return perror("poll"), 1;
    double t = now();
    for (int i = 0; i < n; i++) {
      struct session *s = &ss[i];
      if (pfd[i].fd < 0) continue;
      if (r > 0 && pfd[i].revents && iscsi_service(s->iscsi, pfd[i].revents) < 0) {
        record_error(s, "iscsi_service");
        s->stopped = 1;
        s->inflight = 0; /* the connection is gone: its commands with it */
        continue;
      }
      if (g_deadline > 0 && t >= g_deadline) s->stopped = 1;
      if (!s->stopped) submit(s);
    }
  }
  double t1 = now();

  uint64_t ops = 0, bytes = 0;
  double slowest = 0, fastest = 1e30;
  for (int i = 0; i < n; i++) {
    ops += ss[i].ops;
    bytes += ss[i].done_bytes;
    double e = ss[i].t_end - ss[i].t_start;
    if (e > slowest) slowest = e;
    if (e < fastest) fastest = e;
  }
  double el = t1 - t0;
  uint64_t lat_total = ops + g_errors;
  static const char *modes[] = {"randread", "randwrite", "seqread", "seqwrite"};
  printf(
      "{\"mode\":\"%s\",\"sessions\":%d,\"block_bytes\":%u,\"queue_depth\":%d,\"elapsed_s\":%.4f,"
      "\"login_s\":%.4f,\"ops\":%llu,\"bytes\":%llu,\"errors\":%llu,\"iops\":%.1f,\"mb_s\":%.2f,"
      "\"lat_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"over_1s\":%llu},"
      "\"slowest_session_s\":%.4f,\"fastest_session_s\":%.4f,\"per_session\":[",
      modes[g_mode], n, g_bs, g_qd, el, login_s, (unsigned long long)ops, (unsigned long long)bytes,
      (unsigned long long)g_errors, el > 0 ? (double)ops / el : 0,
      el > 0 ? (double)bytes / el / 1e6 : 0, (unsigned long long)percentile(lat_total, 0.50),
      (unsigned long long)percentile(lat_total, 0.90),
      (unsigned long long)percentile(lat_total, 0.99),
      (unsigned long long)percentile(lat_total, 0.999), (unsigned long long)g_lat_over, slowest,
      fastest);
  for (int i = 0; i < n; i++) {
    double e = ss[i].t_end - ss[i].t_start;
    printf("%s{\"bytes\":%llu,\"s\":%.4f,\"mb_s\":%.2f}", i ? "," : "",
           (unsigned long long)ss[i].done_bytes, e, e > 0 ? (double)ss[i].done_bytes / e / 1e6 : 0);
  }
  printf("]");
  if (g_first_error) {
    printf(",\"first_error\":\"");
    for (const char *p = g_first_error; *p; p++)
      if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) putchar(*p);
    printf("\"");
  }
  printf("}\n");
  for (int i = 0; i < n; i++) {
    if (!g_errors) iscsi_logout_sync(ss[i].iscsi);
    iscsi_destroy_context(ss[i].iscsi);
    for (int j = 0; j < g_qd; j++)
      free(ss[i].slots[j].buf);
    free(ss[i].slots);
    free(ss[i].free_slots);
  }
  free(ss);
  free(pfd);
  free(g_lat);
  return g_errors ? 1 : 0;
}
