/* pdu.c — iSCSI header fields, key=value lists, CHAP values and names. */
#include "iscsi/pdu.h"

#include <ctype.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bhs_parse(const uint8_t *h, struct bhs *out) {
  out->opcode = h[0] & 0x3f;
  out->immediate = (h[0] & 0x40) != 0;
  out->flags = h[1];
  out->ahs_len = (uint32_t)h[4] * 4;
  out->data_len = get_be24(h + 5);
  out->lun = get_be64(h + 8);
  out->itt = get_be32(h + 16);
}

uint64_t lun_decode(const uint8_t *p) {
  /* second..fourth levels must be zero for a single-level LUN */
  for (int i = 2; i < 8; i++)
    if (p[i]) return UINT64_MAX;
  switch (p[0] >> 6) {
  case 0: /* peripheral device addressing: bus 0 only */
    if (p[0] & 0x3f) return UINT64_MAX;
    return p[1];
  case 1: /* flat space addressing */ return ((uint64_t)(p[0] & 0x3f) << 8) | p[1];
  default: return UINT64_MAX;
  }
}

void lun_encode(uint64_t lun, uint8_t *p) {
  memset(p, 0, 8);
  if (lun < 256) {
    p[1] = (uint8_t)lun;
  } else {
    p[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
    p[1] = (uint8_t)lun;
  }
}

/* ---- key=value ------------------------------------------------------------ */
static int key_char_ok(int c) {
  return isalnum(c) || c == '.' || c == '-' || c == '+' || c == '@' || c == '_';
}

int kv_parse(char *buf, size_t len, struct kv *out, int max) {
  int n = 0;
  size_t i = 0;
  while (i < len) {
    char *s = buf + i;
    size_t l = 0;
    while (i + l < len && buf[i + l])
      l++;
    if (i + l == len) {
      /* the last pair lacks its NUL: only acceptable if we can terminate it
       * in place — the caller passes len < allocated size */
      buf[i + l] = 0;
    }
    if (l == 0) { /* stray NUL (padding) */
      i++;
      continue;
    }
    char *eq = memchr(s, '=', l);
    if (!eq || eq == s || eq - s > 63) return -1;
    for (char *k = s; k < eq; k++)
      if (!key_char_ok((unsigned char)*k)) return -1;
    if (l - (size_t)(eq - s) - 1 > 8192) return -1;
    if (n >= max) return -1;
    *eq = 0;
    out[n].key = s;
    out[n].val = eq + 1;
    n++;
    i += l + 1;
  }
  return n;
}

static void kvbuf_put(struct kvbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 512;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->oom = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

void kvbuf_add(struct kvbuf *b, const char *key, const char *val) {
  kvbuf_put(b, key, strlen(key));
  kvbuf_put(b, "=", 1);
  kvbuf_put(b, val, strlen(val));
  kvbuf_put(b, "", 1);
}

void kvbuf_addf(struct kvbuf *b, const char *key, const char *fmt, ...) {
  char v[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v, sizeof v, fmt, ap);
  va_end(ap);
  kvbuf_add(b, key, v);
}

void kvbuf_free(struct kvbuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

int kv_number(const char *s, uint64_t *out) {
  if (!*s) return -1;
  uint64_t v = 0;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s += 2;
    if (!*s || strlen(s) > 16) return -1;
    for (; *s; s++) {
      int c = tolower((unsigned char)*s);
      if (!isxdigit(c)) return -1;
      v = v * 16 + (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
  } else {
    if (strlen(s) > 19) return -1;
    for (; *s; s++) {
      if (!isdigit((unsigned char)*s)) return -1;
      v = v * 10 + (uint64_t)(*s - '0');
    }
  }
  *out = v;
  return 0;
}

int kv_bool(const char *s, int *out) {
  if (!strcmp(s, "Yes"))
    *out = 1;
  else if (!strcmp(s, "No"))
    *out = 0;
  else
    return -1;
  return 0;
}

/* ---- CHAP values ------------------------------------------------------------ */
static int b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int chap_decode(const char *s, uint8_t *out, size_t max) {
  if (s[0] != '0' || !s[1]) return -1;
  size_t n = 0;
  if (s[1] == 'x' || s[1] == 'X') {
    const char *p = s + 2;
    size_t l = strlen(p);
    if (l == 0) return -1;
    int odd = (int)(l & 1);
    while (*p) {
      int hi = 0, lo;
      if (odd) {
        odd = 0;
      } else {
        if (!isxdigit((unsigned char)*p)) return -1;
        hi = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
        p++;
      }
      if (!isxdigit((unsigned char)*p)) return -1;
      lo = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
      p++;
      if (n >= max) return -1;
      out[n++] = (uint8_t)(hi << 4 | lo);
    }
    return (int)n;
  }
  if (s[1] == 'b' || s[1] == 'B') {
    const char *p = s + 2;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    if (!*p) return -1;
    for (; *p; p++) {
      if (*p == '=') {
        pad++;
        continue;
      }
      if (pad) return -1; /* data after padding */
      int v = b64val((unsigned char)*p);
      if (v < 0) return -1;
      acc = (acc << 6) | (uint32_t)v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        if (n >= max) return -1;
        out[n++] = (uint8_t)(acc >> bits);
      }
    }
    if (pad > 2) return -1;
    return (int)n;
  }
  return -1;
}

void chap_hex(const uint8_t *v, size_t len, char *out) {
  static const char hx[] = "0123456789abcdef";
  *out++ = '0';
  *out++ = 'x';
  for (size_t i = 0; i < len; i++) {
    *out++ = hx[v[i] >> 4];
    *out++ = hx[v[i] & 15];
  }
  *out = 0;
}

int chap_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
                  uint8_t out[16]) {
  gnutls_hash_hd_t h;
  if (gnutls_hash_init(&h, GNUTLS_DIG_MD5) < 0) return -1;
  gnutls_hash(h, &id, 1);
  gnutls_hash(h, secret, strlen(secret));
  gnutls_hash(h, chal, chal_len);
  gnutls_hash_deinit(h, out);
  return 0;
}

/* ---- names -------------------------------------------------------------------- */
int iscsi_name_valid(const char *s) {
  size_t l = strlen(s);
  if (l < 5 || l > 223) return 0;
  if (!strncasecmp(s, "iqn.", 4)) {
    /* iqn.yyyy-mm.reversed.domain[:anything] */
    const char *p = s + 4;
    for (int i = 0; i < 4; i++)
      if (!isdigit((unsigned char)p[i])) return 0;
    if (p[4] != '-' || !isdigit((unsigned char)p[5]) || !isdigit((unsigned char)p[6])) return 0;
    if (p[7] != '.' || !p[8]) return 0;
    for (p += 8; *p; p++) {
      unsigned char c = (unsigned char)*p;
      if (!(isalnum(c) || c == '.' || c == '-' || c == ':' || c == '_' || c >= 0x80)) return 0;
    }
    return 1;
  }
  if (!strncasecmp(s, "eui.", 4)) {
    if (l != 20) return 0;
    for (const char *p = s + 4; *p; p++)
      if (!isxdigit((unsigned char)*p)) return 0;
    return 1;
  }
  if (!strncasecmp(s, "naa.", 4)) {
    if (l != 20 && l != 36) return 0;
    for (const char *p = s + 4; *p; p++)
      if (!isxdigit((unsigned char)*p)) return 0;
    return 1;
  }
  return 0;
}
