/*
 * replica/image.c — state-transfer images as files (replica/image.h).
 */
#include "config.h"

#include "replica/image.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "common/why.h"
#include "replica/oplog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_CAP 4096
#define BUILD_RECORDS 4096 /* records buffered per write while building */

bool image_file_name(char *out, size_t cap, u64 lsn)
{
    return io_name_make(out, cap, "image-", lsn, IMAGE_IMG);
}

bool image_parse_name(const char *name, u64 *lsn)
{
    return io_name_parse(name, "image-", IMAGE_IMG, lsn);
}

bool image_path(const char *dir, u64 lsn, const char *suffix, char *out, size_t cap)
{
    char name[64];
    return io_name_make(name, sizeof(name), "image-", lsn, suffix) && io_path(out, cap, dir, name);
}

/* ---- build ------------------------------------------------------------------------------ */

struct builder {
    struct io *io;
    int fd;
    u64 off;
    u32 crc; /* of everything written */
    const char *path;
    char *why;
    size_t why_len;
};

static int put(struct builder *b, const u8 *bytes, u64 len)
{
    for (u64 done = 0; done < len;) {
        u64 n = len - done < IO_WRITEBACK_CHUNK ? len - done : IO_WRITEBACK_CHUNK;
        int rc = io_write_all(b->io, b->fd, bytes + done, (size_t)n, b->off);
        if (rc != 0) {
            why_set(b->why, b->why_len, "write %s: %s", b->path, strerror(-rc));
            return rc;
        }
        io_writeback_step(b->io, b->fd, b->off, n); /* never a burst that stalls the WAL's fsyncs */
        b->crc = crc32c(b->crc, bytes + done, (size_t)n);
        b->off += n;
        done += n;
    }
    return 0;
}

/* The snapshot's live records from the operation log, checked as decoding checks them. */
static int put_records(struct builder *b, const char *dir, const struct snapshot_info *in)
{
    u8 *buf = malloc((size_t)BUILD_RECORDS * OPLOG_RECORD_SIZE);
    struct oplog_reader *r = malloc(sizeof(*r));
    if (buf == NULL || r == NULL) {
        free(buf);
        free(r);
        why_set(b->why, b->why_len, "out of memory");
        return -ENOMEM;
    }
    int rc = oplog_reader_open(r, b->io, dir, in->last_applied_lsn, b->why, b->why_len);
    if (rc != 0) {
        free(buf);
        free(r);
        return rc;
    }
    u32 n = 0, held = 0, records_crc = 0;
    u64 oldest = 0, sum = 0;
    struct sm_operation o;
    for (;;) {
        int got = oplog_reader_next(r, &o, b->why, b->why_len);
        if (got < 0) {
            rc = got;
            break;
        }
        if (got == 0 || held == BUILD_RECORDS) {
            records_crc = crc32c(records_crc, buf, (size_t)held * OPLOG_RECORD_SIZE);
            rc = put(b, buf, (u64)held * OPLOG_RECORD_SIZE);
            held = 0;
            if (rc != 0 || got == 0)
                break;
        }
        if (!snapshot_operation_live(in, &o))
            continue;
        if (n == in->operations) {
            why_set(b->why, b->why_len, "the operation log holds more live records than the %u snapshot %" PRIu64 " counts",
                    in->operations, in->last_applied_lsn);
            rc = -EUCLEAN;
            break;
        }
        if (n++ == 0)
            oldest = o.applied_lsn;
        sum += sm_operation_hash(&o);
        oplog_put_record(buf + (size_t)held++ * OPLOG_RECORD_SIZE, &o);
    }
    if (rc == 0 && (n != in->operations || oldest != in->oldest_operation_lsn || sum != in->operations_sum)) {
        why_set(b->why, b->why_len,
                "the operation log gives %u live records from lsn %" PRIu64 ", snapshot %" PRIu64
                " counts %u from lsn %" PRIu64 " (damage in the log: %s)",
                n, oldest, in->last_applied_lsn, in->operations, in->oldest_operation_lsn,
                r->damage[0] ? r->damage : "none found");
        rc = r->damage[0] || n < in->operations ? -ENOENT : -EUCLEAN; /* pruned or torn: not this image */
    }
    oplog_reader_close(r);
    free(r);
    free(buf);
    if (rc == 0) {
        u8 c[SNAPSHOT_CRC_SIZE];
        le_put_u32(c, records_crc);
        rc = put(b, c, sizeof(c));
    }
    return rc;
}

int image_build(struct io *io, const char *dir, const struct vsr_entry_header *at, struct image_id *out, char *why,
                size_t why_len)
{
    char name[64], snap[PATH_CAP], tmp[PATH_CAP], final[PATH_CAP];
    if (!snapshot_file_name(name, sizeof(name), at->lsn) || !io_path(snap, sizeof(snap), dir, name) ||
        !image_path(dir, at->lsn, IMAGE_TMP, tmp, sizeof(tmp)) || !image_path(dir, at->lsn, IMAGE_IMG, final, sizeof(final))) {
        why_set(why, why_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    struct io_view v;
    int rc = io_view_file(io, snap, &v);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot read: %s", snap, strerror(-rc));
        return rc;
    }
    struct snapshot_info info;
    char reason[256];
    if (snapshot_decode_info(v.buf, v.len, &info, reason, sizeof(reason)) != SNAPSHOT_OK || info.version != SNAPSHOT_VERSION ||
        info.size != v.len || info.last_applied_lsn != at->lsn) {
        why_set(why, why_len, "%s: not a version %d snapshot of LSN %" PRIu64 " (%s)", snap, SNAPSHOT_VERSION, at->lsn,
                reason);
        io_view_release(io, &v);
        return -EUCLEAN;
    }
    (void)io->ops->unlink(io, tmp); /* a build that was cut */
    struct builder b = { .io = io, .path = tmp, .why = why, .why_len = why_len };
    rc = io->ops->open(io, tmp, IO_WRITE | IO_CREATE | IO_EXCL, &b.fd);
    if (rc != 0) {
        why_set(why, why_len, "create %s: %s", tmp, strerror(-rc));
        io_view_release(io, &v);
        return rc;
    }
    u8 head[VSR_ENTRY_HEADER_SIZE];
    vsr_entry_headers_encode(head, at, 1);
    rc = put(&b, head, sizeof(head));
    if (rc == 0)
        rc = put(&b, v.buf, v.len);
    io_view_release(io, &v);
    if (rc == 0)
        rc = put_records(&b, dir, &info);
    if (rc == 0 && (rc = io->ops->fsync(io, b.fd)) != 0)
        why_set(why, why_len, "fsync %s: %s", tmp, strerror(-rc));
    int crc = io->ops->close(io, b.fd);
    if (rc == 0 && crc != 0) {
        rc = crc;
        why_set(why, why_len, "close %s: %s", tmp, strerror(-rc));
    }
    if (rc == 0 && (rc = io->ops->rename(io, tmp, final)) != 0)
        why_set(why, why_len, "rename %s: %s", tmp, strerror(-rc));
    if (rc == 0 && (rc = io->ops->sync_dir(io, dir)) != 0) {
        why_set(why, why_len, "sync directory %s: %s", dir, strerror(-rc));
        (void)io->ops->unlink(io, final);
    }
    if (rc != 0) {
        (void)io->ops->unlink(io, tmp);
        return rc;
    }
    *out = (struct image_id){ .lsn = at->lsn, .size = b.off, .crc = b.crc };
    return 0;
}

/* ---- check and decode --------------------------------------------------------------------- */

enum snapshot_status image_check(const u8 *buf, u64 len, const struct sm_config *cfg, struct vsr_entry_header *at,
                                 char *why, size_t why_len)
{
    if (len < VSR_ENTRY_HEADER_SIZE) {
        why_set(why, why_len, "image: %" PRIu64 " bytes, short of an entry header", len);
        return SNAPSHOT_SHORT;
    }
    vsr_entry_header_decode(buf, at);
    const u8 *s = buf + VSR_ENTRY_HEADER_SIZE;
    u64 slen = len - VSR_ENTRY_HEADER_SIZE;
    struct snapshot_info in;
    enum snapshot_status st = snapshot_decode_info(s, slen, &in, why, why_len);
    if (st != SNAPSHOT_OK)
        return st;
    if (in.version != SNAPSHOT_VERSION) {
        why_set(why, why_len, "image: a snapshot of version %u", in.version);
        return SNAPSHOT_BAD_VERSION;
    }
    if (in.last_applied_lsn != at->lsn || at->lsn == 0 || in.last_request_slot != at->request_slot) {
        why_set(why, why_len, "image: its entry header says LSN %" PRIu64 " slot %" PRIu64 ", its snapshot LSN %" PRIu64
                " slot %" PRIu64, at->lsn, at->request_slot, in.last_applied_lsn, in.last_request_slot);
        return SNAPSHOT_BAD_HEADER;
    }
    u64 records = (u64)in.operations * SNAPSHOT_OPERATION_SIZE;
    if (in.size > slen || slen - in.size != records + SNAPSHOT_CRC_SIZE) {
        why_set(why, why_len, "image: %" PRIu64 " bytes after its entry header, not the snapshot's %" PRIu64
                " and %u operation records", slen, in.size, in.operations);
        return in.size > slen || slen - in.size < records + SNAPSHOT_CRC_SIZE ? SNAPSHOT_SHORT : SNAPSHOT_TRAILING;
    }
    st = snapshot_check_frame(s, in.size, cfg, NULL, why, why_len); /* config, section CRCs */
    if (st != SNAPSHOT_OK)
        return st;
    if (crc32c(0, s + in.size, (size_t)records) != le_get_u32(s + in.size + records)) {
        why_set(why, why_len, "image: operation records: CRC32C mismatch");
        return SNAPSHOT_BAD_CHECKSUM;
    }
    return SNAPSHOT_OK;
}

enum snapshot_status image_decode(const u8 *buf, u64 len, const struct sm_config *cfg, sm_t *sm,
                                  struct vsr_entry_header *at, char *why, size_t why_len)
{
    enum snapshot_status st = image_check(buf, len, cfg, at, why, why_len);
    if (st != SNAPSHOT_OK)
        return st;
    return snapshot_image_decode(buf + VSR_ENTRY_HEADER_SIZE, len - VSR_ENTRY_HEADER_SIZE, cfg, sm, why, why_len);
}

/* ---- the directory's images ---------------------------------------------------------------- */

struct scan {
    struct io *io;
    const char *dir;
    u64 keep, receiving, newest;
    int removed, rc;
};

static bool image_any_name(const char *name, u64 *lsn)
{
    return io_name_parse(name, "image-", IMAGE_IMG, lsn) || io_name_parse(name, "image-", IMAGE_TMP, lsn) ||
           io_name_parse(name, "image-", IMAGE_RECV, lsn);
}

static int remove_one(void *ctx, const char *name)
{
    struct scan *s = ctx;
    u64 lsn;
    if (!image_any_name(name, &lsn) || (lsn == s->keep && image_parse_name(name, &lsn)) ||
        (lsn == s->receiving && io_name_parse(name, "image-", IMAGE_RECV, &lsn)))
        return 0;
    char path[PATH_CAP];
    if (!io_path(path, sizeof(path), s->dir, name))
        return 0;
    int rc = s->io->ops->unlink(s->io, path);
    if (rc == 0)
        s->removed++;
    else if (rc != -ENOENT && s->rc == 0)
        s->rc = rc;
    return 0;
}

int image_remove_others(struct io *io, const char *dir, u64 keep, u64 receiving)
{
    struct scan s = { .io = io, .dir = dir, .keep = keep, .receiving = receiving };
    int rc = io->ops->list_dir(io, dir, remove_one, &s);
    if (rc == 0)
        rc = s.rc;
    if (rc == 0 && s.removed > 0)
        rc = io->ops->sync_dir(io, dir);
    return rc != 0 ? rc : s.removed;
}

static int newest_one(void *ctx, const char *name)
{
    struct scan *s = ctx;
    u64 lsn;
    if (image_parse_name(name, &lsn) && lsn > s->newest)
        s->newest = lsn;
    return 0;
}

u64 image_newest(struct io *io, const char *dir)
{
    struct scan s = { .io = io, .dir = dir };
    (void)io->ops->list_dir(io, dir, newest_one, &s);
    return s.newest;
}
