/* image_int.h — private to the golden image code in src/vol: what image.c
 * (the import/export pipeline: checksums, sparse writes, progress, the
 * stored-zip export), zip.c (the zip reader) and qemu.c (the qemu-img runner)
 * share. Nothing else includes this; the interface is image.h. */
#ifndef STREAMER_IMAGE_INT_H
#define STREAMER_IMAGE_INT_H

#include <gnutls/crypto.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "util/util.h"
#include "vol/image.h"

#define CHUNK (1u << 20) /* read / inflate / write unit */

/* ---- little helpers (image.c) -------------------------------------------- */

/* 500 OUT_OF_MEMORY; returns -1. */
int image_oom(struct err *e);
/* 500 VOL_IO_ERROR "<what> <path>: strerror(errnum)"; returns -1. */
int image_io_error(struct err *e, int errnum, const char *what, const char *path);
/* pread exactly n bytes; 0, or -1 with errno (EIO-like ENODATA at end of file). */
int image_read_exact(int fd, void *buf, size_t n, uint64_t off);
/* The largest image accepted (STREAMER_IMAGE_MAX_BYTES, default 16 TiB). */
uint64_t image_max_size(void);
/* 400 IMAGE_NOT_A_DISK unless size is more than 0 bytes and a whole number of
 * 512-byte sectors; `what` names the image in the message. */
int image_check_disk_size(const char *what, uint64_t size, struct err *e);
/* Bytes the volume store keeps free (STREAMER_IMAGE_RESERVE_BYTES, default 64 MiB). */
uint64_t image_space_reserve(void);
/* Has fd's file system more than the reserve free (or cannot it tell)? */
int image_free_space_ok(int fd);

/* ---- progress (image.c) -------------------------------------------------- */

struct progress {
  image_progress_fn fn;
  void *arg;
  uint64_t total, next;
  int reported_end;
};

/* Report done of total when it is at least 1% past the last report (and the end once). */
void progress_at(struct progress *p, uint64_t done);

/* ---- the sink: checksums, zero detection, sparse writes (image.c) -------- */

struct sink {
  int fd;              /* the temp file; -1 = checksums only */
  const char *path;    /* for messages */
  const char *what;    /* "golden image <id>" */
  uint64_t size;       /* bytes expected in all */
  uint64_t off;        /* bytes received so far */
  uint64_t unchecked;  /* bytes written since the last free-space check */
  uint64_t next_check; /* check again when unchecked reaches this */
  gnutls_hash_hd_t sha;
  uLong crc;
  struct progress *prog;
  uint64_t prog_base; /* progress already reported by earlier passes */
};

/* Take the next len bytes of the raw image. zero: they are known to be zeros
 * (p may be NULL). */
int sink_put(struct sink *s, const unsigned char *p, size_t len, int zero, struct err *e);
/* Feed [base, base+size) of fd to the sink, skipping the source's holes
 * (SEEK_DATA) when the file system can tell them; buf holds CHUNK bytes. */
int sink_copy_fd(struct sink *s, int fd, const char *src, uint64_t base, uint64_t size,
                 unsigned char *buf, struct err *e);

/* ---- the zip reader (zip.c) ---------------------------------------------- */

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define SIG_DESCRIPTOR 0x08074b50u

struct zip_member {
  char name[256];
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize;
  uint64_t data_off; /* first byte of the member's (compressed) data */
  uint64_t limit;    /* the data and its descriptor end at or before this */
};

/* 400 IMAGE_ZIP_PATH unless name (n bytes) is a plain file name: not empty, not
 * a directory (by its trailing slash or ext_attr for made_by), no path
 * separator or control character, at most 255 bytes, not "." or "..". */
int zip_member_name_ok(const char *what, const unsigned char *name, size_t n, uint32_t ext_attr,
                       uint16_t made_by, struct err *e);
/* Locate and vet the one member of the zip at fd (fsize bytes). */
int zip_locate(int fd, uint64_t fsize, const char *src, const char *what, struct zip_member *m,
               struct err *e);
/* Stream the member's data through the sink; sizes and CRC checked. */
int zip_extract(int fd, const char *src, const struct zip_member *m, struct sink *s, struct err *e);

/* ---- qemu-img (qemu.c) --------------------------------------------------- */

/* qemu-img's path (malloc'd), from STREAMER_QEMU_IMG or PATH; NULL if none. */
char *qemu_img_find(void);
/* Vet an image with `qemu-img info` (format forced, resource-limited): its
 * virtual size, and no file but itself that qemu would open. */
int qemu_info(const char *qemu, const char *fmt, const char *src_arg, const char *what,
              uint64_t *vsize, struct err *e);
/* `qemu-img convert -O raw -n --target-is-zero` of src_arg into dst_arg (open
 * as dst_fd, already vsize bytes), reporting to prog; stopped with 507
 * INSUFFICIENT_STORAGE when the store runs down to its reserve. */
int qemu_convert(const char *qemu, const char *fmt, const char *src_arg, const char *dst_arg,
                 int dst_fd, uint64_t vsize, const char *what, struct progress *prog,
                 struct err *e);

#endif
