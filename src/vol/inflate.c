/* inflate.c — our own raw deflate (RFC 1951) decoder for golden image zips
 * (docs/formats/golden-image.md, "The inflater").
 *
 * Why not zlib: a golden image is mostly zeros, which deflate encodes as
 * length-258 matches at distance 1, and zlib 1.2.13's inflate_fast copies
 * overlapping matches one byte at a time (≈430 MB/s here). This decoder
 * copies a distance-1 match with memset, other overlapping matches by
 * doubling chunks and the rest 16 bytes at a time, so zero runs decode at
 * memory speed.
 *
 * Streaming with bounded memory: the caller passes input as it arrives and
 * an output buffer preceded by the last 32 KiB produced (the window), and
 * calls again when the output is full or more input is needed. The decoder
 * only stops between items (a block header, a symbol) or inside a stored
 * block or a match copy, so its state is small: the bit buffer (fewer than 8
 * bits between calls: whole bytes go back to the caller), the block's
 * Huffman tables, the bytes left of a stored block or of a match cut by the
 * end of the output. Until the caller says the input is complete, an item is
 * only started when enough input is there for the longest one; after that,
 * reading past the end is detected (zero bits are supplied, and consuming one
 * is INFLATE_TRUNCATED).
 *
 * Acceptance follows zlib's inflate exactly (tests/unit/test_image.c compares
 * the two on random and adversarial streams): over-subscribed codes and
 * incomplete ones (but a single code of length 1) are refused, as are the
 * fixed code's literal/length symbols 286-287 and distances 30-31, distances
 * beyond the output produced so far, stored lengths whose complement does
 * not match, block type 3, more than 286 literal/length or 30 distance codes,
 * a repeat with no previous length or past the end, and a literal/length code
 * without end-of-block. Messages are zlib's. */
#include <stdint.h>
#include <string.h>

#include "vol/image_int.h"

#define LBITS 10          /* root table bits: literal/length */
#define DBITS 8           /* root table bits: distance */
#define HEADER_BYTES 1024 /* a dynamic block header fits (at most ≈570 bytes) */
#define ITEM_BITS 64      /* the longest symbol + extra bits + distance: 48 bits */
#define FAST_IN 32        /* input bytes the fast loop keeps in hand */
#define FAST_OUT (258 + 32)

/* A table entry: bits 0-7 the code's length (in a subtable: the bits past
 * the root), bits 8-11 extra bits (or a subtable's index bits), bits 12-15
 * the kind, bits 16-31 the value (literal, length or distance base, subtable
 * offset). Zero is an invalid code. */
#define E_EXTRA(e) (((e) >> 8) & 0xfu)
#define E_BITS(e) ((e)&0xffu)
#define E_VAL(e) ((e) >> 16)
#define K_LIT 0x1000u
#define K_LEN 0x2000u /* a length, or a distance in the distance table */
#define K_END 0x4000u
#define K_SUB 0x8000u

enum { ST_HEADER, ST_STORED, ST_CODES, ST_DONE, ST_FAILED };

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
/* The order code length code lengths are sent in. */
static const uint8_t cl_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                     11, 4,  12, 3, 13, 2, 14, 1, 15};

void inflater_init(struct inflater *z) {
  memset(z, 0, sizeof *z);
  z->state = ST_HEADER;
}

/* ---- Huffman tables -------------------------------------------------------- */

static unsigned reverse(unsigned code, unsigned len) {
  unsigned r = 0;
  for (unsigned i = 0; i < len; i++, code >>= 1)
    r = (r << 1) | (code & 1);
  return r;
}

/* What symbol s decodes to in a table of kind: literal/length (0), distance
 * (1) or code lengths (2). Symbols that exist in the code but may not be
 * used (fixed 286-287, 30-31) decode to 0: invalid. */
static uint32_t entry_of(int kind, unsigned s, unsigned bits) {
  if (kind == 2) return (uint32_t)s << 16 | K_LIT | bits;
  if (kind == 1) {
    if (s >= 30) return 0;
    return (uint32_t)dist_base[s] << 16 | K_LEN | (uint32_t)dist_extra[s] << 8 | bits;
  }
  if (s < 256) return (uint32_t)s << 16 | K_LIT | bits;
  if (s == 256) return K_END | bits;
  if (s >= 286) return 0;
  return (uint32_t)len_base[s - 257] << 16 | K_LEN | (uint32_t)len_extra[s - 257] << 8 | bits;
}

/* Build the decoding table of n code lengths: a root table of `root` bits
 * and subtables for longer codes. Returns 0, or -1 if the lengths are
 * over-subscribed or incomplete (zlib allows one incomplete code: a single
 * code of length 1, and, except for the code length code, no code at all —
 * every symbol then being invalid). */
static int build(uint32_t *table, size_t cap, const uint8_t *lens, unsigned n, unsigned root,
                 int kind) {
  unsigned count[16] = {0}, next[16];
  unsigned max = 0;
  for (unsigned s = 0; s < n; s++) {
    count[lens[s]]++;
    if (lens[s] > max) max = lens[s];
  }
  size_t root_size = (size_t)1 << root;
  memset(table, 0, root_size * sizeof *table);
  if (max == 0) return kind == 2 ? -1 : 0;
  int left = 1;
  for (unsigned l = 1; l <= 15; l++) {
    left = (left << 1) - (int)count[l];
    if (left < 0) return -1; /* over-subscribed */
  }
  if (left > 0 && (kind == 2 || max != 1)) return -1; /* incomplete */
  unsigned code = 0;
  count[0] = 0;
  for (unsigned l = 1; l <= 15; l++) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
  /* Subtables: for each root prefix of a long code, 2^(longest - root). */
  uint8_t sub_bits[1u << LBITS];
  memset(sub_bits, 0, root_size);
  unsigned codes[320];
  for (unsigned s = 0; s < n; s++) {
    if (!lens[s]) continue;
    codes[s] = reverse(next[lens[s]]++, lens[s]);
    if (lens[s] > root) {
      unsigned prefix = codes[s] & ((1u << root) - 1);
      if (lens[s] - root > sub_bits[prefix]) sub_bits[prefix] = (uint8_t)(lens[s] - root);
    }
  }
  size_t used = root_size;
  for (size_t p = 0; p < root_size; p++) {
    if (!sub_bits[p]) continue;
    size_t size = (size_t)1 << sub_bits[p];
    if (used + size > cap) return -1; /* cannot happen for a valid code */
    table[p] = (uint32_t)used << 16 | K_SUB | (uint32_t)sub_bits[p] << 8 | root;
    memset(table + used, 0, size * sizeof *table);
    used += size;
  }
  for (unsigned s = 0; s < n; s++) {
    unsigned l = lens[s];
    if (!l) continue;
    if (l <= root) {
      uint32_t e = entry_of(kind, s, l);
      for (size_t i = codes[s]; i < root_size; i += (size_t)1 << l)
        table[i] = e;
    } else {
      uint32_t link = table[codes[s] & ((1u << root) - 1)];
      uint32_t *sub = table + E_VAL(link);
      unsigned sb = E_EXTRA(link), rest = l - root;
      uint32_t e = entry_of(kind, s, rest);
      for (size_t i = codes[s] >> root; i < ((size_t)1 << sb); i += (size_t)1 << rest)
        sub[i] = e;
    }
  }
  return 0;
}

/* ---- bits ------------------------------------------------------------------ */

struct bits {
  const unsigned char *p, *end;
  uint64_t buf;
  unsigned cnt;
  unsigned pad; /* zero bytes supplied past the end of the final input */
  int last;
};

static uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* At least 57 bits in the buffer (zeros past the end of the final input). */
static void refill(struct bits *b) {
  while (b->cnt <= 56) {
    if (b->p < b->end) {
      b->buf |= (uint64_t)*b->p++ << b->cnt;
    } else if (b->last) {
      b->pad++;
    } else {
      return;
    }
    b->cnt += 8;
  }
}

/* Bits that came from input (the padding zeros sit above them). */
static unsigned real_bits(const struct bits *b) {
  return b->cnt > b->pad * 8 ? b->cnt - b->pad * 8 : 0;
}

static int overrun(const struct bits *b) { return b->cnt < b->pad * 8; }

static unsigned take(struct bits *b, unsigned n) {
  unsigned v = (unsigned)(b->buf & ((1ull << n) - 1));
  b->buf >>= n;
  b->cnt -= n;
  return v;
}

/* Decode one symbol through a table (enough bits are in the buffer). */
static uint32_t decode(struct bits *b, const uint32_t *t, unsigned root) {
  uint32_t e = t[b->buf & ((1u << root) - 1)];
  if (e & K_SUB) {
    take(b, root);
    e = t[E_VAL(e) + (b->buf & ((1u << E_EXTRA(e)) - 1))];
  }
  take(b, E_BITS(e));
  return e;
}

/* Give whole unread bytes back to the input (at most 7 bits stay). */
static void unload(struct bits *b) {
  if (b->pad) {
    unsigned k = b->cnt / 8 < b->pad ? b->cnt / 8 : b->pad;
    b->cnt -= k * 8;
    b->pad -= k;
  }
  b->p -= b->cnt >> 3;
  b->cnt &= 7;
  b->buf &= (1ull << b->cnt) - 1;
}

/* ---- block headers --------------------------------------------------------- */

static int fixed_tables(struct inflater *z) {
  uint8_t lens[288 + 32];
  unsigned s = 0;
  for (; s < 144; s++)
    lens[s] = 8;
  for (; s < 256; s++)
    lens[s] = 9;
  for (; s < 280; s++)
    lens[s] = 7;
  for (; s < 288; s++)
    lens[s] = 8;
  for (s = 0; s < 32; s++)
    lens[288 + s] = 5;
  if (build(z->lit, INFLATE_LIT_TABLE, lens, 288, LBITS, 0) < 0 ||
      build(z->dist, INFLATE_DIST_TABLE, lens + 288, 32, DBITS, 1) < 0)
    return -1;
  return 0;
}

static int fail(struct inflater *z, const char *msg) {
  z->msg = msg;
  z->state = ST_FAILED;
  return INFLATE_ERROR;
}

/* A dynamic block's code lengths and tables; the buffer holds the header
 * (HEADER_BYTES of input, or the final input padded with zeros). */
static int dynamic_tables(struct inflater *z, struct bits *b) {
  refill(b);
  unsigned nlen = take(b, 5) + 257, ndist = take(b, 5) + 1, ncode = take(b, 4) + 4;
  if (nlen > 286 || ndist > 30) return fail(z, "too many length or distance symbols");
  uint8_t cl[19] = {0};
  for (unsigned i = 0; i < ncode; i++) {
    refill(b);
    cl[cl_order[i]] = (uint8_t)take(b, 3);
  }
  uint32_t cl_table[1u << 7];
  if (build(cl_table, 1u << 7, cl, 19, 7, 2) < 0) return fail(z, "invalid code lengths set");
  uint8_t lens[286 + 30];
  unsigned have = 0;
  while (have < nlen + ndist) {
    refill(b);
    if (overrun(b)) return INFLATE_TRUNCATED;
    unsigned sym = E_VAL(decode(b, cl_table, 7));
    if (sym < 16) {
      lens[have++] = (uint8_t)sym;
      continue;
    }
    unsigned rep, val = 0;
    if (sym == 16) {
      if (have == 0) return fail(z, "invalid bit length repeat");
      val = lens[have - 1];
      rep = 3 + take(b, 2);
    } else if (sym == 17) {
      rep = 3 + take(b, 3);
    } else {
      rep = 11 + take(b, 7);
    }
    if (have + rep > nlen + ndist) return fail(z, "invalid bit length repeat");
    while (rep--)
      lens[have++] = (uint8_t)val;
  }
  if (overrun(b)) return INFLATE_TRUNCATED;
  if (lens[256] == 0) return fail(z, "invalid code -- missing end-of-block");
  if (build(z->lit, INFLATE_LIT_TABLE, lens, nlen, LBITS, 0) < 0)
    return fail(z, "invalid literal/lengths set");
  if (build(z->dist, INFLATE_DIST_TABLE, lens + nlen, ndist, DBITS, 1) < 0)
    return fail(z, "invalid distances set");
  return 0;
}

/* ---- copies ----------------------------------------------------------------- */

/* Copy len bytes from dst - dist to dst, overlapping allowed; may write up
 * to 16 bytes past dst + len when wide (the fast loop leaves that room). */
static void copy_match(unsigned char *dst, unsigned dist, unsigned len, int wide) {
  const unsigned char *src = dst - dist;
  if (dist == 1) {
    memset(dst, *src, len);
  } else if (dist >= 16 && wide) {
    for (unsigned i = 0; i < len; i += 16)
      memcpy(dst + i, src + i, 16);
  } else if (dist >= len) {
    memcpy(dst, src, len);
  } else {
    /* Overlapping: the pattern of period dist doubles with every copy. */
    unsigned done = 0, step = dist;
    while (done < len) {
      unsigned n = len - done < step ? len - done : step;
      memcpy(dst + done, dst + done - step, n);
      done += n;
      step *= 2;
    }
  }
}

/* ---- the decoder ------------------------------------------------------------ */

int inflater_run(struct inflater *z, const unsigned char **in, size_t *in_len, int last,
                 unsigned char *out, size_t *pos, size_t cap) {
  struct bits b = {
      .p = *in, .end = *in + *in_len, .buf = z->bitbuf, .cnt = z->bitcnt, .last = last};
  unsigned char *const begin = out + *pos, *dst = begin, *const end = out + cap;
  /* The oldest byte a distance may reach. */
  const unsigned char *const floor = begin - (z->total_out < 32768 ? z->total_out : 32768);
  int rc = INFLATE_OK;
  if (z->state == ST_DONE || z->state == ST_FAILED) {
    rc = z->state == ST_DONE ? INFLATE_END : INFLATE_ERROR;
    goto out;
  }
  if (z->copy_len) { /* a match cut by the end of the last output */
    unsigned n = z->copy_len < (size_t)(end - dst) ? z->copy_len : (unsigned)(end - dst);
    copy_match(dst, z->copy_dist, n, 0);
    dst += n;
    z->copy_len -= n;
    if (z->copy_len) {
      rc = INFLATE_FULL;
      goto out;
    }
  }
  for (;;) {
    if (z->state == ST_HEADER) {
      if (z->final) {
        z->state = ST_DONE;
        rc = INFLATE_END;
        break;
      }
      if (!last && real_bits(&b) + 8 * (size_t)(b.end - b.p) < 8 * HEADER_BYTES) {
        rc = INFLATE_MORE;
        break;
      }
      refill(&b);
      z->final = (int)take(&b, 1);
      unsigned type = take(&b, 2);
      if (type == 0) {
        take(&b, b.cnt & 7);
        refill(&b);
        unsigned len = take(&b, 16), nlen = take(&b, 16);
        if (overrun(&b)) {
          rc = INFLATE_TRUNCATED;
          break;
        }
        if (len != (~nlen & 0xffffu)) {
          rc = fail(z, "invalid stored block lengths");
          break;
        }
        unload(&b); /* byte aligned: the data is read from the input directly */
        z->stored_left = len;
        z->state = ST_STORED;
      } else if (type == 1) {
        if (fixed_tables(z) < 0) {
          rc = fail(z, "internal error: fixed tables");
          break;
        }
        z->state = ST_CODES;
      } else if (type == 2) {
        rc = dynamic_tables(z, &b);
        if (rc != INFLATE_OK) break;
        z->state = ST_CODES;
      } else {
        rc = fail(z, "invalid block type");
        break;
      }
      if (overrun(&b)) {
        rc = INFLATE_TRUNCATED;
        break;
      }
    }
    if (z->state == ST_STORED) {
      size_t n = z->stored_left;
      if (n > (size_t)(b.end - b.p)) n = (size_t)(b.end - b.p);
      if (n > (size_t)(end - dst)) n = (size_t)(end - dst);
      memcpy(dst, b.p, n);
      dst += n;
      b.p += n;
      z->stored_left -= (uint32_t)n;
      if (z->stored_left == 0) {
        z->state = ST_HEADER;
        continue;
      }
      rc = dst == end ? INFLATE_FULL : last ? INFLATE_TRUNCATED : INFLATE_MORE;
      break;
    }
    /* ST_CODES. The fast loop: enough input for any item without checks,
     * room for the longest match and the wide copy's overshoot. */
    const uint32_t *lit = z->lit, *dt = z->dist;
    while (b.end - b.p >= FAST_IN && end - dst >= FAST_OUT) {
      b.buf |= load64(b.p) << b.cnt;
      b.p += (63 - b.cnt) >> 3;
      b.cnt |= 56;
      uint32_t e = lit[b.buf & ((1u << LBITS) - 1)];
      if (e & K_SUB) {
        b.buf >>= LBITS;
        b.cnt -= LBITS;
        e = lit[E_VAL(e) + (b.buf & ((1u << E_EXTRA(e)) - 1))];
      }
      b.buf >>= E_BITS(e);
      b.cnt -= E_BITS(e);
      if (e & K_LIT) {
        *dst++ = (unsigned char)E_VAL(e);
        continue;
      }
      if (!(e & K_LEN)) {
        if (e & K_END) {
          z->state = ST_HEADER;
          goto next_block;
        }
        b.buf &= (1ull << b.cnt) - 1;
        rc = fail(z, "invalid literal/length code");
        goto out;
      }
      unsigned len = E_VAL(e) + (unsigned)(b.buf & ((1u << E_EXTRA(e)) - 1));
      b.buf >>= E_EXTRA(e);
      b.cnt -= E_EXTRA(e);
      /* At most 20 bits used since the refill: 36 or more left for the distance's 28. */
      e = dt[b.buf & ((1u << DBITS) - 1)];
      if (e & K_SUB) {
        b.buf >>= DBITS;
        b.cnt -= DBITS;
        e = dt[E_VAL(e) + (b.buf & ((1u << E_EXTRA(e)) - 1))];
      }
      b.buf >>= E_BITS(e);
      b.cnt -= E_BITS(e);
      if (!(e & K_LEN)) {
        b.buf &= (1ull << b.cnt) - 1;
        rc = fail(z, "invalid distance code");
        goto out;
      }
      unsigned dist = E_VAL(e) + (unsigned)(b.buf & ((1u << E_EXTRA(e)) - 1));
      b.buf >>= E_EXTRA(e);
      b.cnt -= E_EXTRA(e);
      if (dist > (size_t)(dst - floor)) {
        b.buf &= (1ull << b.cnt) - 1;
        rc = fail(z, "invalid distance too far back");
        goto out;
      }
      copy_match(dst, dist, len, 1);
      dst += len;
    }
    b.buf &= (1ull << b.cnt) - 1; /* the fast refill may leave bits above cnt */
    /* One item at a time, near the end of the input or of the output. */
    if (dst == end) {
      rc = INFLATE_FULL;
      break;
    }
    if (!last && real_bits(&b) + 8 * (size_t)(b.end - b.p) < ITEM_BITS) {
      rc = INFLATE_MORE;
      break;
    }
    refill(&b);
    uint32_t e = decode(&b, lit, LBITS);
    if (overrun(&b)) {
      rc = INFLATE_TRUNCATED;
      break;
    }
    if (e & K_LIT) {
      *dst++ = (unsigned char)E_VAL(e);
      continue;
    }
    if (!(e & K_LEN)) {
      if (e & K_END) {
        z->state = ST_HEADER;
        continue;
      }
      rc = fail(z, "invalid literal/length code");
      break;
    }
    unsigned len = E_VAL(e) + take(&b, E_EXTRA(e));
    refill(&b);
    e = decode(&b, dt, DBITS);
    if (overrun(&b)) {
      rc = INFLATE_TRUNCATED;
      break;
    }
    if (!(e & K_LEN)) {
      rc = fail(z, "invalid distance code");
      break;
    }
    unsigned dist = E_VAL(e) + take(&b, E_EXTRA(e));
    if (overrun(&b)) {
      rc = INFLATE_TRUNCATED;
      break;
    }
    if (dist > (size_t)(dst - floor)) {
      rc = fail(z, "invalid distance too far back");
      break;
    }
    unsigned n = len < (size_t)(end - dst) ? len : (unsigned)(end - dst);
    copy_match(dst, dist, n, 0);
    dst += n;
    if (n < len) {
      z->copy_len = len - n;
      z->copy_dist = dist;
      rc = INFLATE_FULL;
      break;
    }
    continue;
  next_block:
    b.buf &= (1ull << b.cnt) - 1;
  }
out:
  if (rc == INFLATE_TRUNCATED) {
    z->msg = "the deflate stream is cut short";
    z->state = ST_FAILED;
  }
  unload(&b); /* whole bytes (after the end, too) go back; padding zeros vanish */
  if (rc == INFLATE_END) {
    b.cnt = 0; /* the rest of the last byte is padding */
    b.buf = 0;
  }
  z->bitbuf = b.buf;
  z->bitcnt = b.cnt;
  z->total_out += (uint64_t)(dst - begin);
  *pos += (size_t)(dst - begin);
  *in_len -= (size_t)(b.p - *in);
  *in = b.p;
  return rc;
}
