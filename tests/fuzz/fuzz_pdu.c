/* fuzz_pdu.c — libFuzzer target for the iSCSI target's PDU parser and every
 * state behind it (login phase, Full Feature Phase, data path, TMF, text).
 * The real target runs in this process on a loopback port with a 4 MiB file
 * volume exported to any initiator; each input is a byte stream written to a
 * fresh connection (the corpus starts with whole valid sessions made by
 * tests/fuzz/make_corpus.py), from a loopback address of its own, after which
 * the client half-closes and drains the answers. Crashes, sanitizer reports and hangs in the target
 * threads fail the run; a connection the target has not closed 40 s after the client's EOF (longer
 * than its 30 s login timeout) is a hang. Built and run by `make fuzz`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "iscsi/iscsi.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct iscsi_srv *srv;
static int port;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() for up to timeout_ms in all, resumed after signals: libFuzzer's
 * -timeout sets an interval timer whose SIGALRM interrupts poll() with EINTR
 * (every 31 s with -timeout=60), which must not count as a timeout. Returns
 * poll()'s answer, 0 on timeout. */
static int poll_for(struct pollfd *pf, int timeout_ms) {
  int64_t end = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = end - now_ms();
    int r = poll(pf, 1, left > 0 ? (int)left : 0);
    if (r >= 0 || errno != EINTR) return r;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  log_set_level(LOG_ERROR);
  static char path[] = "/tmp/streamer-fuzz-pdu-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || ftruncate(fd, 4 << 20) < 0) abort();
  close(fd);
  struct err e;
  err_init(&e);
  struct vol *v = NULL;
  if (vol_file_open(path, 0, &v, &e) < 0) abort();
  unlink(path);
  const char *portals[] = {"127.0.0.1:0"};
  struct iscsi_config cfg = {.portals = portals, .nportals = 1, .net_threads = 2, .io_threads = 2};
  if (iscsi_start(&cfg, &srv, &e) < 0) abort();
  size_t n;
  const char *const *p = iscsi_portals(srv, &n);
  port = atoi(strrchr(p[0], ':') + 1);
  const char *any[] = {"*"};
  struct iscsi_export_spec s = {.target_name = "iqn.2024-11.org.streamer:fuzz",
                                .alias = "fuzz",
                                .unit_id = "fuzz",
                                .vol = v,
                                .initiators = any,
                                .ninitiators = 1};
  if (iscsi_export(srv, &s, &e) < 0) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  /* Each input from its own loopback address (127.0.0.0/8): the target's
   * failed-login limiter refuses an address after 200 failures a minute, which
   * mutated target names reach in seconds — from one address the rest of the
   * run would only see refused logins. */
  static uint32_t next_src;
  next_src = next_src % 0xfffffdu + 1;
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr = htonl(0x7f000000u | (next_src + 1));
  if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
    close(fd);
    return 0;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return 0;
  }
  size_t off = 0;
  char sink[65536];
  while (off < size) {
    ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    /* the target may be waiting for us to read its answers */
    struct pollfd pf = {.fd = fd, .events = POLLIN | POLLOUT};
    if (poll_for(&pf, 2000) <= 0) break;
    if (pf.revents & POLLIN) {
      ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (r == 0) break;
    }
    if (pf.revents & (POLLERR | POLLHUP)) break;
  }
  shutdown(fd, SHUT_WR);
  /* drain until the target closes (it sees our EOF) */
  for (;;) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int r = poll_for(&pf, 40000);
    if (r < 0) {
      perror("fuzz_pdu: poll");
      abort();
    }
    if (r == 0) {
      fprintf(stderr, "fuzz_pdu: target did not close the connection within 40 s (its login "
                      "timeout is 30 s)\n");
      if (getenv("FUZZ_PAUSE_ON_HANG")) pause(); /* attach a debugger */
      abort();
    }
    ssize_t n = recv(fd, sink, sizeof sink, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  close(fd);
  return 0;
}
