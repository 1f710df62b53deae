/* util.c — logging, errors, ids, time, randomness and small file helpers. */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- logging ---------------------------------------------------------- */
static enum log_level log_level_min = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level lvl) { log_level_min = lvl; }

void log_msg(enum log_level lvl, const char *component, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (lvl < log_level_min) return;
  char ts[32], msg[2048];
  util_iso8601(util_now_ms(), ts);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Escape the message as a double-quoted logfmt value. */
  char esc[4200];
  size_t j = 0;
  for (size_t i = 0; msg[i] && j + 4 < sizeof esc; i++) {
    unsigned char c = (unsigned char)msg[i];
    if (c == '"' || c == '\\') {
      esc[j++] = '\\';
      esc[j++] = (char)c;
    } else if (c == '\n') {
      esc[j++] = '\\';
      esc[j++] = 'n';
    } else if (c < 0x20) {
      esc[j++] = '?';
    } else {
      esc[j++] = (char)c;
    }
  }
  esc[j] = 0;
  pthread_mutex_lock(&log_lock);
  fprintf(stderr, "ts=%s level=%s comp=%s msg=\"%s\"\n", ts, names[lvl], component, esc);
  pthread_mutex_unlock(&log_lock);
}

/* ---- errors ----------------------------------------------------------- */
void err_init(struct err *e) { memset(e, 0, sizeof *e); }

void err_clear(struct err *e) {
  if (!e) return;
  json_decref(e->nested);
  err_init(e);
}

/* Make s valid UTF-8 in place: every byte that does not start a complete,
 * well-formed sequence (a client's non-UTF-8 name quoted in a message, or a
 * character cut by a "%.200s" precision) becomes '?'. jansson refuses
 * invalid UTF-8, and an error document that cannot be built is an error
 * the client never sees. */
void util_utf8_repair(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    size_t k = c < 0x80             ? 0
               : (c & 0xe0) == 0xc0 ? 1
               : (c & 0xf0) == 0xe0 ? 2
               : (c & 0xf8) == 0xf0 ? 3
                                    : 4;
    unsigned cp = k == 1 ? c & 0x1f : k == 2 ? c & 0x0f : c & 0x07;
    size_t j = 1;
    for (; k < 4 && j <= k && (p[j] & 0xc0) == 0x80; j++)
      cp = cp << 6 | (p[j] & 0x3f);
    static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
    if (k == 0) {
      p++;
    } else if (k < 4 && j == k + 1 && cp >= min[k] && cp <= 0x10ffff &&
               !(cp >= 0xd800 && cp <= 0xdfff)) {
      p += k + 1;
    } else {
      *p++ = '?';
    }
  }
}

void err_set(struct err *e, int status, const char *code, const char *fmt, ...) {
  if (!e) return;
  e->status = status;
  snprintf(e->code, sizeof e->code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  util_utf8_repair(e->message);
}

void err_details(struct err *e, const char *fmt, ...) {
  if (!e) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->details, sizeof e->details, fmt, ap);
  va_end(ap);
  util_utf8_repair(e->details);
}

void err_action(struct err *e, const char *action) {
  if (!e) return;
  snprintf(e->action, sizeof e->action, "%s", action);
  util_utf8_repair(e->action);
}

static json_t *error_object(const char *code, const char *message, const char *details,
                            const char *action, json_t *nested) {
  return json_pack("{s:s, s:s, s:s, s:[s], s:o, s:n, s:{}}", "errorCode", code, "message", message,
                   "details", details ? details : "", "recommendedActions", action, "nestedErrors",
                   nested ? nested : json_array(), "errorSource", "data");
}

json_t *err_object(const char *code, const char *message, const char *action) {
  return error_object(code, message, "", action, NULL);
}

void err_nest(struct err *e, const char *code, const char *message, const char *action) {
  if (!e) return;
  if (!e->nested) e->nested = json_array();
  json_array_append_new(
      e->nested,
      error_object(code, message, "", action ? action : "Correct the value and retry.", NULL));
}

static const char *default_action(int status) {
  switch (status) {
  case 400: return "Verify the request parameters and body and try again.";
  case 401:
    return "Log in with POST /rest/login-sessions and send the sessionID in the auth header.";
  case 403: return "Ask an Infrastructure administrator for a role that allows this action.";
  case 404: return "Verify the URI of the resource and try again.";
  case 409: return "Resolve the conflict named in the message and try again.";
  case 412: return "GET the resource again to obtain its current eTag and retry.";
  case 413: return "Send a smaller request body.";
  case 415: return "Send the body as application/json.";
  default: return "Retry the operation; if it keeps failing, check the server log.";
  }
}

json_t *err_to_json(const struct err *e) {
  const char *action = e->action[0] ? e->action : default_action(e->status);
  return error_object(e->code[0] ? e->code : "INTERNAL_ERROR",
                      e->message[0] ? e->message : "Unknown error.", e->details, action,
                      e->nested ? json_deep_copy(e->nested) : NULL);
}

/* ---- ids, time, randomness -------------------------------------------- */
int util_random(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

void util_uuid(char out[37]) {
  unsigned char b[16];
  if (util_random(b, sizeof b) < 0) abort(); /* no entropy: nothing safe to do */
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

int64_t util_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_iso8601(int64_t ms, char out[32]) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[24];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 32, "%.20s.%03dZ", buf, (int)(ms % 1000));
}

char *util_token(size_t nbytes) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char buf[64];
  if (nbytes > sizeof buf || util_random(buf, nbytes) < 0) return NULL;
  char *out = malloc(nbytes * 2 + 1);
  if (!out) return NULL;
  size_t j = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < nbytes; i++) {
    acc = (acc << 8) | buf[i];
    bits += 8;
    while (bits >= 6) {
      out[j++] = alphabet[(acc >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) out[j++] = alphabet[(acc << (6 - bits)) & 63];
  out[j] = 0;
  return out;
}

/* ---- strings ---------------------------------------------------------- */
char *util_strdup_printf(const char *fmt, ...) {
  va_list ap;
  char *s = NULL;
  va_start(ap, fmt);
  int r = vasprintf(&s, fmt, ap);
  va_end(ap);
  return r < 0 ? NULL : s;
}

int util_strcaseeq(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcasecmp(a, b) == 0;
}

int util_json_bool(json_t *v) {
  if (json_is_boolean(v)) return json_is_true(v);
  if (json_is_string(v)) {
    if (strcasecmp(json_string_value(v), "true") == 0) return 1;
    if (strcasecmp(json_string_value(v), "false") == 0) return 0;
  }
  return -1;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                           struct err *e) {
  CLEANUP_FREE char *tmp = util_strdup_printf("%s.tmp.%d", path, (int)getpid());
  if (!tmp) {
    err_set(e, 500, "OUT_OF_MEMORY", "out of memory");
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    err_set(e, 500, "IO_ERROR", "%s: %s", tmp, strerror(errno));
    return -1;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      err_set(e, 500, "IO_ERROR", "write %s: %s", tmp, strerror(errno));
      close(fd);
      unlink(tmp);
      return -1;
    }
    p += w;
    left -= (size_t)w;
  }
  if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || close(fd) < 0) {
    err_set(e, 500, "IO_ERROR", "finish %s: %s", tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, path) < 0) {
    err_set(e, 500, "IO_ERROR", "rename %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

char *util_read_file(const char *path, size_t *len, struct err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    err_set(e, 404, "FILE_NOT_FOUND", "%s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int oom = buf == NULL;
  while (!oom) {
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        oom = 1;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(f) || oom;
  fclose(f);
  if (bad) {
    free(buf);
    err_set(e, 500, "IO_ERROR", "read %s failed", path);
    return NULL;
  }
  buf[n] = 0;
  if (len) *len = n;
  return buf;
}

/* ---- CRC-32C ---------------------------------------------------------------
 * Reflected polynomial 0x82F63B78. On x86-64 with SSE4.2 the crc32 instruction
 * does 8 bytes a cycle or so; elsewhere a slicing-by-8 table. */
static uint32_t crc32c_tab[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_hw;

static void crc32c_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc32c_tab[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc32c_tab[t][i] = (crc32c_tab[t - 1][i] >> 8) ^ crc32c_tab[0][crc32c_tab[t - 1][i] & 0xff];
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc32c_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p,
                                                               size_t len) {
  uint64_t c = crc;
  while (len && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    len--;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    len -= 8;
  }
  while (len--)
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return (uint32_t)c;
}
#endif

uint32_t util_crc32c(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc32c_once, crc32c_init);
#if defined(__x86_64__)
  if (crc32c_hw) return ~crc32c_sse42(~crc, buf, len);
#endif
  return util_crc32c_sw(crc, buf, len);
}

uint32_t util_crc32c_sw(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc32c_once, crc32c_init);
  const unsigned char *p = buf;
  crc = ~crc;
  while (len >= 8) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = crc32c_tab[7][lo & 0xff] ^ crc32c_tab[6][(lo >> 8) & 0xff] ^
          crc32c_tab[5][(lo >> 16) & 0xff] ^ crc32c_tab[4][lo >> 24] ^ crc32c_tab[3][hi & 0xff] ^
          crc32c_tab[2][(hi >> 8) & 0xff] ^ crc32c_tab[1][(hi >> 16) & 0xff] ^
          crc32c_tab[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = crc32c_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

int util_check_if_match(const char *etag, const char *if_match, struct err *e) {
  if (!if_match || !*if_match || strcmp(if_match, "*") == 0) return 0;
  size_t l = strlen(if_match);
  if (l >= 2 && if_match[0] == '"' && if_match[l - 1] == '"') {
    if (etag && strlen(etag) == l - 2 && strncmp(etag, if_match + 1, l - 2) == 0) return 0;
  } else if (etag && strcmp(etag, if_match) == 0) {
    return 0;
  }
  err_set(e, 412, "ETAG_MISMATCH",
          "the resource has changed since it was read (If-Match %.100s, current eTag \"%s\")",
          if_match, etag ? etag : "");
  return -1;
}

int util_pread_exact(int fd, void *buf, size_t n, uint64_t off) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      errno = ENODATA;
      return -1;
    }
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}
