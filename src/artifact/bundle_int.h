/* bundle_int.h — private to the bundle files of src/artifact: the zip
 * reader/writer (bundle_zip.c) and the parsed bundle (bundle_read.c) that
 * extraction and restore (bundle.c) work from. */
#ifndef STREAMER_BUNDLE_INT_H
#define STREAMER_BUNDLE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "artifact/bundle.h"

#define BUNDLE_MAX_MEMBERS 10000
#define BUNDLE_MAX_JSON (16u << 20) /* a JSON / manifest / checksum member, uncompressed */
#define BUNDLE_MAX_RATIO 1000u      /* of such members */

/* ---- the zip reader (bundle_zip.c) ------------------------------------------ */
enum bz_kind {
  BZ_PLAN_SCRIPT = 0,
  BZ_BUILD_PLAN,
  BZ_DEPLOYMENT_PLAN,
  BZ_GOLDEN_JSON,
  BZ_MANIFEST,
  BZ_SHA256SUM,
  BZ_SHA1SUM,
  BZ_OTHER /* a golden payload, or unknown */
};

struct bz_member {
  char *name;
  uint16_t flags, method, made_by;
  uint32_t crc, ext_attr;
  uint64_t csize, usize, lho, data; /* data: offset of the member's bytes */
  enum bz_kind kind;
  char id[65];     /* the <id> of <id>_<kind>.json */
  char sha256[65]; /* hex of the content, once read */
  char sha1[41];
  int deferred;    /* a golden payload not read by bundle_read_open_known: its digest is */
  char expect[65]; /* checked against `expect` (from the checksum file) when it is imported */
};

struct bz {
  int fd;
  uint64_t fsize;
  struct bz_member *m;
  size_t n;
};

/* Open and vet the zip in fd: the end of central directory (zip64 aware),
 * every central entry and its local header (names, encryption, methods,
 * symlinks, duplicates, overlaps, counts). 400 BUNDLE_* errors. */
int bz_open(struct bz *z, int fd, struct err *e);
void bz_close(struct bz *z);
/* Inflate member i to `sink` (may be NULL: only the checks and digests),
 * checking the declared size and the CRC-32; fills m->sha256 (and sha1 when
 * want_sha1). sink returns 0 or -1 (e set). */
typedef int (*bz_sink_fn)(void *arg, const void *p, size_t n, struct err *e);
int bz_stream(struct bz *z, size_t i, bz_sink_fn sink, void *arg, int want_sha1, const int *stop,
              struct err *e);
/* Member i (a JSON, manifest or checksum member) in memory, NUL-terminated;
 * the size and ratio limits of BUNDLE_MAX_JSON / BUNDLE_MAX_RATIO. */
int bz_read_small(struct bz *z, size_t i, int want_sha1, char **out, size_t *len, struct err *e);

/* ---- the zip writer (bundle_zip.c) ------------------------------------------- */
struct bzw;
struct bzw *bzw_open(int fd, int64_t time_ms);
/* Begin a member (deflate at `level`; size_hint: its expected size, for
 * zip64), add its bytes, end it. sha256 of the
 * content (hex) into hex when not NULL. */
int bzw_begin(struct bzw *w, const char *name, int level, uint64_t size_hint, struct err *e);
int bzw_data(struct bzw *w, const void *p, size_t n, struct err *e);
int bzw_end(struct bzw *w, char hex[65], struct err *e);
/* The central directory and end records; frees w. */
int bzw_finish(struct bzw *w, struct err *e);
void bzw_free(struct bzw *w);

/* ---- MANIFEST.MF and checksum files (bundle_zip.c) ---------------------------- */
/* {"artifactName","description","readOnly","timeStamp","artifactType"} or NULL
 * (400 BUNDLE_MANIFEST). */
json_t *bundle_manifest_parse(const char *text, size_t len, struct err *e);
/* HPE's text (five keys, LF, no final newline); malloc'd. */
char *bundle_manifest_format(const char *name, const char *description, int read_only,
                             const char *time_stamp);
/* {member: hex} from a checksum file of `hexlen` digits, or NULL (400). */
json_t *bundle_sums_parse(const char *text, size_t len, size_t hexlen, const char *file,
                          struct err *e);

/* ---- a vetted, parsed bundle (bundle_read.c) ------------------------------------ */
struct bundle_read {
  struct bz z;
  json_t *docs[4];    /* per kind (BZ_PLAN_SCRIPT..BZ_GOLDEN_JSON): arrays of the member JSON */
  json_t *members[4]; /* per kind: the member name of each doc */
  size_t *payload;    /* per golden image: its payload member's index */
  uint64_t *gi_size;  /* per golden image: the raw image size (0: unknown) */
  uint32_t *gi_crc;   /* per golden image: the raw image CRC-32 */
  json_t *manifest;   /* parsed MANIFEST.MF */
  json_t *contents;   /* the contents object of the contract's §3 */
};
/* Vet and parse the bundle in fd (every member read and checked). */
int bundle_read_open(struct bundle_read *b, int fd, int lenient, struct err *e);
/* The same for a bundle this server vetted at its upload: the golden payloads whose raw size
 * and CRC-32 `known` records (the contents' "goldenimage" array: giID, size, crc32) are not
 * read now; each is checked against the checksum file when it is streamed (import). */
int bundle_read_open_known(struct bundle_read *b, int fd, int lenient, json_t *known,
                           struct err *e);
void bundle_read_close(struct bundle_read *b);

/* The readOnly of a contents object (its manifest's Read Only). */
int bundle_contents_read_only(json_t *contents);
/* Does this member doc declare itself read-only (hpProvided / readOnly true)? */
int bundle_doc_read_only(json_t *doc);

/* Put bundle document `id` named `name` in t and commit (409 NAME_CONFLICT worded for
 * bundles); on failure t is rolled back. *out (may be NULL): the stored entry. */
int bundle_put_commit(struct store *s, struct store_txn *t, const char *id, const char *name,
                      json_t *doc, struct store_entry **out, struct err *e);

#endif
