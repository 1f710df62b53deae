/* image.h — golden image archives: import (HPE zip of one raw image, raw,
 * qcow2/vmdk/vhdx through qemu-img) into a golden volume, streaming, zero runs
 * as holes, with SHA-256 and CRC-32 of the raw content; export as the HPE
 * zip (one stored raw member, zip64 when needed) with an exact length and
 * random access, so that HTTP can serve any byte range from any thread.
 * Must not know about HTTP or the store. See docs/formats/golden-image.md. */
#ifndef STREAMER_IMAGE_H
#define STREAMER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"
#include "vol/vol.h"

enum image_format { IMAGE_AUTO = 0, IMAGE_HPE_ZIP, IMAGE_RAW, IMAGE_QCOW2, IMAGE_VMDK, IMAGE_VHDX };

struct image_info {
  enum image_format format; /* what the input was */
  uint64_t size;            /* bytes of the raw image */
  uint64_t allocated;       /* bytes not in holes after import */
  char sha256[65];          /* hex, of the raw content (holes as zeros) */
  uint32_t crc32;           /* of the raw content (the export's zip CRC) */
  char member[256];         /* the zip member name for HPE zips, else "" */
};

/* Called now and then with bytes done and total (total 0 = unknown). */
typedef void (*image_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Import `src_path` into golden volume `id` of vs (through its temp path,
 * committed with vol_golden_commit only on success; on any error nothing is
 * left behind). `fmt` IMAGE_AUTO detects by content. Errors are 400 with
 * codes IMAGE_CORRUPT, IMAGE_NOT_A_DISK, IMAGE_ZIP_MEMBERS, IMAGE_ZIP_PATH,
 * IMAGE_ZIP_BOMB, IMAGE_CRC_MISMATCH, IMAGE_TRUNCATED, IMAGE_UNSUPPORTED;
 * 501 QEMU_IMG_MISSING (message names Debian's qemu-utils); 507
 * INSUFFICIENT_STORAGE. */
int image_import(struct vol_store *vs, const char *id, const char *src_path, enum image_format fmt,
                 image_progress_fn progress, void *progress_arg, struct image_info *info,
                 struct err *e);

/* ---- streamed import (stream.c) ---------------------------------------------
 * An upload's bytes go straight into the golden volume's temp file while
 * they arrive: a raw image as it is, an HPE zip inflated (the zip's directory
 * at its end is vetted last); zero blocks stay holes; the SHA-256 is computed
 * by a thread that follows the writes through the file and may finish after
 * the volume is committed. Only IMAGE_RAW and IMAGE_HPE_ZIP stream. */
struct image_stream;
/* Begin golden volume `id` (its temp file is created and locked now: 409
 * VOL_EXISTS, GOLDEN_VOLUME_BUSY, 507 as image_import). */
int image_stream_open(struct vol_store *vs, const char *id, enum image_format fmt,
                      struct image_stream **out, struct err *e);
/* The next n bytes of the file. On the first error the temp file is removed
 * and -1 returned (e set); later calls return 0 and only keep what the final
 * error needs (a zip's directory): keep calling until the end, then
 * image_stream_commit gives the error to report. */
int image_stream_write(struct image_stream *s, const void *p, size_t n, struct err *e);
/* Instead of image_stream_write, on a new IMAGE_RAW stream: the whole
 * content of volume `src` (any struct vol: e.g. an overlay over a snapshot of
 * an OS volume, for a capture). Runs that src's block_status reports
 * deallocated become holes without being read; the rest is read in 1 MiB
 * chunks straight into the sink's buffers (zero blocks found there stay
 * holes too). The SHA-256 follows the writes at normal priority. Gives up
 * with 503 SHUTTING_DOWN once *stop (may be NULL) is non-zero. progress:
 * (bytes done, size). Then image_stream_commit as for an upload. */
int image_stream_from_vol(struct image_stream *s, struct vol *src, const int *stop,
                          image_progress_fn progress, void *progress_arg, struct err *e);
/* The end of the file: check it (sizes, CRC-32, the zip's directory), make
 * its data durable and commit the golden volume: from then on it can be
 * cloned and exported. info->sha256 is "" while the SHA-256 is still being
 * computed (image_stream_sha256). */
int image_stream_commit(struct image_stream *s, image_progress_fn progress, void *progress_arg,
                        struct image_info *info, struct err *e);
/* After a commit: wait for the SHA-256 (hex into sha256), reporting (hashed,
 * size) to progress; gives up with 503 CHECKSUM_INTERRUPTED once *stop (may
 * be NULL) is non-zero. */
int image_stream_sha256(struct image_stream *s, const int *stop, image_progress_fn progress,
                        void *progress_arg, char sha256[65], struct err *e);
/* Release; an uncommitted stream's temp file is removed. */
void image_stream_close(struct image_stream *s);

/* SHA-256 (hex) of golden volume `id`, holes read as zeros without reading
 * them: for a checksum that a stop left pending. Same stop and progress as
 * image_stream_sha256. */
int image_sha256(struct vol_store *vs, const char *id, const int *stop, image_progress_fn progress,
                 void *progress_arg, char sha256[65], struct err *e);

/* The HPE zip of golden volume `id`: one stored member named `member` (the
 * raw image). The export is a pure function of (size, crc32, member) and the
 * volume's bytes, so its length is known up front. */
struct image_export;
int image_export_open(struct vol_store *vs, const char *id, const char *member, uint64_t size,
                      uint32_t crc32, struct image_export **out, struct err *e);
uint64_t image_export_length(struct image_export *x);
/* Fill buf with bytes [off, off+len) of the zip; returns bytes (< len only at
 * the end) or -1. Thread-safe. */
long image_export_read(struct image_export *x, uint64_t off, void *buf, size_t len, struct err *e);
void image_export_close(struct image_export *x);

const char *image_format_name(enum image_format f);

#endif
