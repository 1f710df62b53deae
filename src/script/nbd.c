/* nbd.c — a minimal NBD server (fixed newstyle handshake; READ, WRITE,
 * FLUSH, TRIM, WRITE_ZEROES, DISC; simple replies) serving one struct vol
 * on a private Unix socket, so real guestfish (qemu) can open an OS volume
 * that is not a plain file. One thread; clients are served one at a time.
 * Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "script/script_int.h"
#include "vol/vol.h"

#define NBD_MAGIC 0x4e42444d41474943ULL
#define NBD_IHAVEOPT 0x49484156454F5054ULL
#define NBD_REPLY_MAGIC 0x3e889045565a9ULL
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

enum { OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_LIST = 3, OPT_INFO = 6, OPT_GO = 7 };
enum {
  REP_ACK = 1,
  REP_SERVER = 2,
  REP_INFO = 3,
  REP_ERR_UNSUP = 0x80000001u,
  REP_ERR_INVALID = 0x80000003u
};
enum {
  CMD_READ = 0,
  CMD_WRITE = 1,
  CMD_DISC = 2,
  CMD_FLUSH = 3,
  CMD_TRIM = 4,
  CMD_WRITE_ZEROES = 6
};
enum {
  FLAG_HAS_FLAGS = 1,
  FLAG_READ_ONLY = 2,
  FLAG_SEND_FLUSH = 4,
  FLAG_SEND_FUA = 8,
  FLAG_SEND_TRIM = 32,
  FLAG_SEND_WRITE_ZEROES = 64
};
#define CMD_FLAG_FUA 1
#define MAX_REQUEST (32u * 1024 * 1024)

struct nbd_server {
  struct vol *vol;
  int listen_fd;
  int stop_pipe[2];
  pthread_t thread;
  char *path;
};

static int rd(int fd, void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static int wr(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t r = send(fd, c, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static void be16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}
static void be32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (24 - 8 * i));
}
static void be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static int opt_reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len) {
  unsigned char h[20];
  be64(h, NBD_REPLY_MAGIC);
  be32(h + 8, opt);
  be32(h + 12, type);
  be32(h + 16, len);
  return wr(fd, h, sizeof h) || (len && wr(fd, data, len)) ? -1 : 0;
}

static uint16_t tx_flags(struct nbd_server *n) {
  uint16_t f =
      FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES;
  if (vol_read_only(n->vol)) f |= FLAG_READ_ONLY;
  return f;
}

/* The handshake: 1 = go to transmission, 0 = client left, -1 = error. */
static int handshake(struct nbd_server *n, int fd) {
  unsigned char h[18];
  be64(h, NBD_MAGIC);
  be64(h + 8, NBD_IHAVEOPT);
  be16(h + 16, 1 | 2); /* FIXED_NEWSTYLE | NO_ZEROES */
  if (wr(fd, h, sizeof h)) return -1;
  unsigned char cf[4];
  if (rd(fd, cf, 4)) return -1;
  int no_zeroes = (get32(cf) & 2) != 0;
  for (;;) {
    unsigned char oh[16];
    if (rd(fd, oh, 16) || get64(oh) != NBD_IHAVEOPT) return -1;
    uint32_t opt = get32(oh + 8), len = get32(oh + 12);
    if (len > 65536) return -1;
    unsigned char data[65536];
    if (len && rd(fd, data, len)) return -1;
    switch (opt) {
    case OPT_EXPORT_NAME: {
      unsigned char r[10 + 124];
      memset(r, 0, sizeof r);
      be64(r, vol_size(n->vol));
      be16(r + 8, tx_flags(n));
      return wr(fd, r, no_zeroes ? 10 : sizeof r) ? -1 : 1;
    }
    case OPT_ABORT: (void)opt_reply(fd, opt, REP_ACK, NULL, 0); return 0;
    case OPT_LIST: {
      unsigned char name[4] = {0, 0, 0, 0}; /* one export, named "" */
      if (opt_reply(fd, opt, REP_SERVER, name, 4) || opt_reply(fd, opt, REP_ACK, NULL, 0))
        return -1;
      break;
    }
    case OPT_INFO:
    case OPT_GO: {
      unsigned char info[12];
      be16(info, 0); /* NBD_INFO_EXPORT */
      be64(info + 2, vol_size(n->vol));
      be16(info + 10, tx_flags(n));
      if (len < 6) {
        if (opt_reply(fd, opt, REP_ERR_INVALID, NULL, 0)) return -1;
        break;
      }
      if (opt_reply(fd, opt, REP_INFO, info, sizeof info) || opt_reply(fd, opt, REP_ACK, NULL, 0))
        return -1;
      if (opt == OPT_GO) return 1;
      break;
    }
    default:
      if (opt_reply(fd, opt, REP_ERR_UNSUP, NULL, 0)) return -1;
    }
  }
}

static int simple_reply(int fd, uint32_t error, const unsigned char *handle, const void *data,
                        size_t len) {
  unsigned char r[16];
  be32(r, NBD_SIMPLE_REPLY_MAGIC);
  be32(r + 4, error);
  memcpy(r + 8, handle, 8);
  return wr(fd, r, sizeof r) || (len && wr(fd, data, len)) ? -1 : 0;
}

static void serve(struct nbd_server *n, int fd) {
  if (handshake(n, fd) != 1) return;
  char *buf = malloc(MAX_REQUEST);
  if (!buf) return;
  for (;;) {
    unsigned char q[28];
    if (rd(fd, q, sizeof q) || get32(q) != NBD_REQUEST_MAGIC) break;
    uint16_t flags = (uint16_t)(q[4] << 8 | q[5]), type = (uint16_t)(q[6] << 8 | q[7]);
    const unsigned char *handle = q + 8;
    uint64_t off = get64(q + 16);
    uint32_t len = get32(q + 24);
    struct err e;
    err_init(&e);
    uint32_t error = 0;
    if (type == CMD_DISC) break;
    if ((type == CMD_READ || type == CMD_WRITE) && len > MAX_REQUEST) break;
    int inrange = off <= vol_size(n->vol) && len <= vol_size(n->vol) - off;
    switch (type) {
    case CMD_READ:
      if (!inrange)
        error = 22; /* EINVAL */
      else if (vol_pread(n->vol, buf, len, off, &e))
        error = 5; /* EIO */
      if (simple_reply(fd, error, handle, buf, error ? 0 : len)) goto out;
      continue;
    case CMD_WRITE:
      if (rd(fd, buf, len)) goto out;
      if (!inrange)
        error = 22;
      else if (vol_read_only(n->vol))
        error = 1; /* EPERM */
      else if (vol_pwrite(n->vol, buf, len, off, &e) ||
               ((flags & CMD_FLAG_FUA) && vol_flush(n->vol, &e)))
        error = 5;
      break;
    case CMD_FLUSH:
      if (vol_flush(n->vol, &e)) error = 5;
      break;
    case CMD_TRIM:
    case CMD_WRITE_ZEROES:
      if (!inrange)
        error = 22;
      else if (vol_read_only(n->vol))
        error = 1;
      else if (vol_discard(n->vol, off, len, &e)) /* reads back as zeros afterwards */
        error = 5;
      break;
    default: error = 22;
    }
    err_clear(&e);
    if (simple_reply(fd, error, handle, NULL, 0)) break;
  }
out:
  free(buf);
}

static void *nbd_thread(void *arg) {
  struct nbd_server *n = arg;
  for (;;) {
    struct pollfd p[2] = {{n->listen_fd, POLLIN, 0}, {n->stop_pipe[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    int fd = accept4(n->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve(n, fd);
    close(fd);
  }
  return NULL;
}

int nbd_start(struct vol *vol, const char *path, struct nbd_server **out, struct err *e) {
  struct nbd_server *n = calloc(1, sizeof *n);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  if (!n || strlen(path) >= sizeof a.sun_path) {
    free(n);
    err_set(e, 500, SCRIPT_E_GUESTFISH, "NBD socket path too long: %s", path);
    return -1;
  }
  n->vol = vol;
  n->stop_pipe[0] = n->stop_pipe[1] = -1;
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, path, strlen(path) + 1);
  n->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (n->listen_fd < 0 || bind(n->listen_fd, (struct sockaddr *)&a, sizeof a) ||
      listen(n->listen_fd, 4) || pipe2(n->stop_pipe, O_CLOEXEC) || !(n->path = strdup(path)) ||
      pthread_create(&n->thread, NULL, nbd_thread, n)) {
    err_set(e, 500, SCRIPT_E_GUESTFISH, "NBD server on %s: %s", path, strerror(errno));
    if (n->listen_fd >= 0) close(n->listen_fd);
    if (n->stop_pipe[0] >= 0) close(n->stop_pipe[0]);
    if (n->stop_pipe[1] >= 0) close(n->stop_pipe[1]);
    free(n->path);
    free(n);
    return -1;
  }
  *out = n;
  return 0;
}

void nbd_stop(struct nbd_server *n) {
  if (!n) return;
  (void)!write(n->stop_pipe[1], "x", 1);
  pthread_join(n->thread, NULL);
  close(n->listen_fd);
  close(n->stop_pipe[0]);
  close(n->stop_pipe[1]);
  unlink(n->path);
  free(n->path);
  free(n);
}
