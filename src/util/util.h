/* util.h — the shared ground floor: logging, errors, cleanup helpers, ids, time,
 * randomness, small string helpers. Knows nothing of any other module. */
#ifndef STREAMER_UTIL_H
#define STREAMER_UTIL_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- cleanup helpers (nbdkit style) ---------------------------------- */
static inline void util_free_ptr(void *p) { free(*(void **)p); }
static inline void util_json_decref_ptr(json_t **p) { json_decref(*p); }
#define CLEANUP_FREE __attribute__((cleanup(util_free_ptr)))
#define CLEANUP_JSON __attribute__((cleanup(util_json_decref_ptr)))

/* ---- logging: one line per event, key=value, on stderr ----------------- */
enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
void log_set_level(enum log_level lvl);
void log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define log_debug(c, ...) log_msg(LOG_DEBUG, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(LOG_INFO, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(LOG_WARN, c, __VA_ARGS__)
#define log_error(c, ...) log_msg(LOG_ERROR, c, __VA_ARGS__)

/* ---- errors ------------------------------------------------------------
 * A function that fails returns -1 (or NULL) after filling the caller's
 * struct err. `status` is the HTTP status the API will answer with, `code`
 * the stable HPE-style errorCode (docs/errors.md), `message` the sentence a
 * user reads. `nested` (optional, owned) is a JSON array of further error
 * objects, e.g. one per violated attribute rule. */
struct err {
  int status;
  char code[64];
  char message[1024];
  char details[1024];
  char action[256]; /* recommended action; empty = default for the status */
  json_t *nested;
};
void err_init(struct err *e);
void err_clear(struct err *e); /* frees nested, resets */
void err_set(struct err *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void err_details(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_action(struct err *e, const char *action);
/* Replace what is not well-formed UTF-8 in s by '?' (err_set, err_details and err_action
 * do it to their text: jansson refuses invalid UTF-8). */
void util_utf8_repair(char *s);
/* Append {"errorCode","message","details":"","recommendedActions":[...],...} to e->nested. */
void err_nest(struct err *e, const char *code, const char *message, const char *action);
/* One HPE error document {"errorCode","message","details":"","recommendedActions":[action],
 * "nestedErrors":[],"errorSource":null,"data":{}} (the shape of taskErrors and nestedErrors). */
json_t *err_object(const char *code, const char *message, const char *action);
/* The HPE error document for e. */
json_t *err_to_json(const struct err *e);

/* ---- ids, time, randomness -------------------------------------------- */
void util_uuid(char out[37]);         /* random v4 uuid, lower case */
int util_random(void *buf, size_t n); /* getrandom(2); 0 or -1 */
/* CRC-32C (Castagnoli, as iSCSI digests and the OS volume format use it);
 * crc is the previous result (0 to start). SSE4.2 instruction when present. */
uint32_t util_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t util_crc32c_sw(uint32_t crc, const void *buf, size_t len); /* table path (tests) */
int64_t util_now_ms(void);                                          /* wall clock, ms since epoch */
int64_t util_mono_ms(void);                                         /* monotonic clock, ms */
void util_iso8601(int64_t ms, char out[32]);                        /* 2015-09-10T20:12:50.006Z */
/* URL-safe random token of `nbytes` random bytes (base64url, no padding). */
char *util_token(size_t nbytes);

/* ---- strings ---------------------------------------------------------- */
char *util_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int util_strcaseeq(const char *a, const char *b); /* NULL-safe, ASCII case-insensitive */
/* HTTP If-Match against a document's eTag (NULL = none): 0 when it holds
 * (if_match NULL, empty or "*", or equal to etag, bare or in RFC 7232 quotes),
 * else -1 with e set to 412 ETAG_MISMATCH. */
int util_check_if_match(const char *etag, const char *if_match, struct err *e);
/* Parse a boolean that clients send as true/false, "true"/"false" (any case). -1 if neither. */
int util_json_bool(json_t *v);
/* Write `len` bytes to `path` atomically (tmp file + fsync + rename) with `mode`. */
int util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                           struct err *e);
/* Read a whole (small) file; NULL with e set on error. */
char *util_read_file(const char *path, size_t *len, struct err *e);

/* pread exactly n bytes at off (EINTR retried); 0, or -1 with errno (ENODATA at the end of
 * the file). */
int util_pread_exact(int fd, void *buf, size_t n, uint64_t off);

#endif
