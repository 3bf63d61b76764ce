/*
 * replica/oplog.c — the operation log's codec, writer, reader and pruning (see oplog.h).
 */
#include "config.h"

#include "replica/oplog.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"
#include "common/why.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAGIC 0x4f424441u  /* "ADBO" */
#define BLOCK_MAGIC 0x42424441u /* "ADBB" */
#define FILE_VERSION 1
#define F_MAGIC 0
#define F_VERSION 4
#define F_HEADER_SIZE 6
#define F_START 8
#define F_ZERO 16
#define F_CRC 60
#define B_MAGIC 0
#define B_COUNT 4
#define B_THROUGH 8
#define B_ZERO 16
#define B_CRC 28
ADB_STATIC_ASSERT(F_CRC + 4 == OPLOG_FILE_HEADER_SIZE, "file header size");
ADB_STATIC_ASSERT(B_CRC + 4 == OPLOG_BLOCK_HEADER_SIZE, "block header size");
#define BLOCK_BYTES (OPLOG_BLOCK_HEADER_SIZE + (u64)OPLOG_BLOCK_RECORDS * OPLOG_RECORD_SIZE)
#define NAME_PREFIX "ops-"
#define SEGMENTS_MAX 65536

typedef unsigned long long ull;

/* ---- codec ----------------------------------------------------------------------------------- */

void oplog_put_record(u8 *p, const struct sm_operation *o)
{
    le_put_u128(p, o->operation_id);
    le_put_u64(p + 16, o->fingerprint_code);
    le_put_u64(p + 24, o->result_deadline_slot);
    le_put_u64(p + 32, o->applied_lsn);
    le_put_u64(p + 40, o->retire_after_slot);
}

void oplog_get_record(const u8 *p, struct sm_operation *o)
{
    memset(o, 0, sizeof(*o));
    o->operation_id = le_get_u128(p);
    o->fingerprint_code = le_get_u64(p + 16);
    o->result_deadline_slot = le_get_u64(p + 24);
    o->applied_lsn = le_get_u64(p + 32);
    o->retire_after_slot = le_get_u64(p + 40);
}

bool oplog_file_name(char *out, size_t cap, u64 start_lsn)
{
    return io_name_make(out, cap, NAME_PREFIX, start_lsn, ".log");
}

bool oplog_parse_name(const char *name, u64 *start_lsn)
{
    return io_name_parse(name, NAME_PREFIX, ".log", start_lsn);
}

static void put_file_header(u8 *h, u64 start_lsn)
{
    memset(h, 0, OPLOG_FILE_HEADER_SIZE);
    le_put_u32(h + F_MAGIC, FILE_MAGIC);
    le_put_u16(h + F_VERSION, FILE_VERSION);
    le_put_u16(h + F_HEADER_SIZE, OPLOG_FILE_HEADER_SIZE);
    le_put_u64(h + F_START, start_lsn);
    le_put_u32(h + F_CRC, crc32c(0, h, F_CRC));
}

/* Seals the block of `count` records at b (header in place); returns its size in bytes. */
static u64 seal_block(u8 *b, u32 count, u64 through_lsn)
{
    u64 size = OPLOG_BLOCK_HEADER_SIZE + (u64)count * OPLOG_RECORD_SIZE;
    le_put_u32(b + B_MAGIC, BLOCK_MAGIC);
    le_put_u32(b + B_COUNT, count);
    le_put_u64(b + B_THROUGH, through_lsn);
    memset(b + B_ZERO, 0, B_CRC - B_ZERO);
    u32 crc = crc32c(0, b, B_CRC);
    crc = crc32c(crc, b + OPLOG_BLOCK_HEADER_SIZE, (size_t)(size - OPLOG_BLOCK_HEADER_SIZE));
    le_put_u32(b + B_CRC, crc);
    return size;
}

/* ---- segments in a directory ------------------------------------------------------------------ */

struct seg_list {
    u64 *starts;
    u32 count;
};

/* Segment starts, ascending, in a malloc'd array (free it). */
static int list_segments(struct io *io, const char *dir, struct seg_list *l, char *why, size_t why_len)
{
    l->count = 0;
    l->starts = malloc(sizeof(u64) * SEGMENTS_MAX);
    if (l->starts == NULL)
        return -ENOMEM;
    int rc = io_list_numbered(io, dir, NAME_PREFIX, ".log", "operation log segments", l->starts, SEGMENTS_MAX,
                              &l->count, why, why_len);
    if (rc != 0) {
        free(l->starts);
        l->starts = NULL;
    }
    return rc;
}

static bool seg_path(const char *dir, u64 start, char *out, size_t cap)
{
    char name[64];
    return oplog_file_name(name, sizeof(name), start) && io_path(out, cap, dir, name);
}

static int remove_segment(struct io *io, const char *dir, u64 start, char *why, size_t why_len)
{
    char path[4096];
    if (!seg_path(dir, start, path, sizeof(path)))
        return -ENAMETOOLONG;
    int rc = io->ops->unlink(io, path);
    if (rc != 0 && rc != -ENOENT) {
        why_set(why, why_len, "%s: cannot remove: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

/* ---- writer ------------------------------------------------------------------------------------ */

static int fail(char *why, size_t why_len, int rc, const char *what, const char *path)
{
    why_set(why, why_len, "%s %s: %s", what, path, strerror(-rc));
    return rc;
}

/* Creates segment `start` (replacing a leftover of that name) and writes its header. */
static int start_segment(struct oplog *w, u64 start, char *why, size_t why_len)
{
    char path[4096];
    if (!seg_path(w->dir, start, path, sizeof(path)))
        return -ENAMETOOLONG;
    int rc = w->io->ops->unlink(w->io, path);
    if (rc != 0 && rc != -ENOENT)
        return fail(why, why_len, rc, "remove stale", path);
    int fd;
    rc = w->io->ops->open(w->io, path, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
    if (rc != 0)
        return fail(why, why_len, rc, "create", path);
    u8 h[OPLOG_FILE_HEADER_SIZE];
    put_file_header(h, start);
    rc = io_write_all(w->io, fd, h, sizeof(h), 0);
    if (rc != 0) {
        w->io->ops->close(w->io, fd);
        return fail(why, why_len, rc, "write", path);
    }
    w->fd = fd;
    w->start_lsn = start;
    w->offset = sizeof(h);
    w->bytes_written += sizeof(h);
    w->segments_started++;
    return 0;
}

/* Writes the block being built (even empty: it carries through_lsn) and rolls if due. */
static int write_block(struct oplog *w, u64 through_lsn, char *why, size_t why_len)
{
    u64 size = seal_block(w->block, w->block_count, through_lsn);
    int rc = io_write_all(w->io, w->fd, w->block, (size_t)size, w->offset);
    if (rc != 0) {
        why_set(why, why_len, "%s: writing the operation log segment %" PRIu64 ": %s", w->dir, w->start_lsn,
                strerror(-rc));
        return rc;
    }
    w->offset += size;
    w->bytes_written += size;
    w->block_count = 0;
    if (w->offset < w->segment_bytes)
        return 0;
    /* Roll: the full segment is synced by the next checkpoint (or now, if too many wait). */
    if (w->unsynced_count == OPLOG_UNSYNCED_MAX) {
        rc = w->io->ops->datasync(w->io, w->unsynced[0]);
        if (rc != 0) {
            why_set(why, why_len, "%s: fdatasync of an operation log segment: %s", w->dir, strerror(-rc));
            return rc;
        }
        w->io->ops->close(w->io, w->unsynced[0]);
        memmove(w->unsynced, w->unsynced + 1, sizeof(int) * (OPLOG_UNSYNCED_MAX - 1));
        w->unsynced_count--;
        w->forced_syncs++;
    }
    w->unsynced[w->unsynced_count++] = w->fd;
    w->fd = -1;
    return start_segment(w, through_lsn, why, why_len);
}

static int append(struct oplog *w, const struct sm_operation *o, char *why, size_t why_len)
{
    if (w->block_count == OPLOG_BLOCK_RECORDS) {
        int rc = write_block(w, w->last_lsn, why, why_len);
        if (rc != 0)
            return rc;
    }
    ADB_ASSERT(o->applied_lsn > w->last_lsn);
    oplog_put_record(w->block + OPLOG_BLOCK_HEADER_SIZE + (u64)w->block_count * OPLOG_RECORD_SIZE, o);
    w->block_count++;
    w->last_lsn = o->applied_lsn;
    return 0;
}

int oplog_open(struct oplog *w, struct io *io, const char *dir, const sm_t *sm, u64 after_lsn, char *why,
               size_t why_len)
{
    memset(w, 0, sizeof(*w));
    w->io = io;
    w->fd = -1;
    w->segment_bytes = OPLOG_SEGMENT_BYTES;
    if (snprintf(w->dir, sizeof(w->dir), "%s", dir) >= (int)sizeof(w->dir))
        return -ENAMETOOLONG;
    w->block = malloc(BLOCK_BYTES);
    if (w->block == NULL)
        return -ENOMEM;
    struct seg_list l;
    int rc = list_segments(io, dir, &l, why, why_len);
    for (u32 i = 0; rc == 0 && i < l.count; i++)
        if (l.starts[i] >= after_lsn) /* replay writes all of it again */
            rc = remove_segment(io, dir, l.starts[i], why, why_len);
    free(l.starts);
    if (rc == 0)
        rc = start_segment(w, after_lsn, why, why_len);
    if (rc != 0) {
        oplog_close(w);
        return rc;
    }
    /* The live records newer than after_lsn (those replay made) are still to be exported. */
    u32 newer = 0;
    while (newer < sm->operation_count && sm_operation_at(sm, sm->operation_count - 1 - newer)->applied_lsn > after_lsn)
        newer++;
    w->exported = sm->operation_appended - newer;
    w->last_lsn = after_lsn;
    return oplog_export(w, sm, why, why_len);
}

int oplog_export(struct oplog *w, const sm_t *sm, char *why, size_t why_len)
{
    u64 fresh = sm->operation_appended - w->exported;
    u32 n = fresh < sm->operation_count ? (u32)fresh : sm->operation_count; /* the rest retired: not needed */
    for (u32 i = sm->operation_count - n; i < sm->operation_count; i++) {
        int rc = append(w, sm_operation_at(sm, i), why, why_len);
        if (rc != 0)
            return rc;
    }
    w->exported = sm->operation_appended;
    return 0;
}

int oplog_flush(struct oplog *w, const sm_t *sm, char *why, size_t why_len)
{
    int rc = oplog_export(w, sm, why, why_len);
    return rc != 0 ? rc : write_block(w, sm->last_applied_lsn, why, why_len);
}

/* Writes the file back a chunk at a time (io_writeback_step), so a gigabyte of log never sits
 * in the disk's queue ahead of the WAL's fsyncs; the datasync that follows has little left. */
static void paced_writeback(struct io *io, int fd)
{
    u64 size = 0;
    if (io->ops->writeback == NULL || io->ops->size(io, fd, &size) != 0)
        return;
    for (u64 off = 0; off < size; off += IO_WRITEBACK_CHUNK)
        io_writeback_step(io, fd, off, size - off < IO_WRITEBACK_CHUNK ? size - off : IO_WRITEBACK_CHUNK);
}

int oplog_sync(struct oplog *w, char *why, size_t why_len)
{
    for (u32 i = 0; i < w->unsynced_count; i++) {
        paced_writeback(w->io, w->unsynced[i]);
        int rc = w->io->ops->datasync(w->io, w->unsynced[i]);
        if (rc != 0) {
            why_set(why, why_len, "%s: fdatasync of an operation log segment: %s", w->dir, strerror(-rc));
            return rc;
        }
    }
    if (w->fd >= 0)
        paced_writeback(w->io, w->fd);
    int rc = w->fd >= 0 ? w->io->ops->datasync(w->io, w->fd) : 0;
    if (rc != 0)
        why_set(why, why_len, "%s: fdatasync of operation log segment %" PRIu64 ": %s", w->dir, w->start_lsn,
                strerror(-rc));
    return rc;
}

void oplog_synced(struct oplog *w, u32 count)
{
    ADB_ASSERT(count <= w->unsynced_count);
    for (u32 i = 0; i < count; i++)
        w->io->ops->close(w->io, w->unsynced[i]);
    memmove(w->unsynced, w->unsynced + count, sizeof(int) * (w->unsynced_count - count));
    w->unsynced_count -= count;
}

void oplog_close(struct oplog *w)
{
    oplog_synced(w, w->unsynced_count);
    if (w->fd >= 0)
        w->io->ops->close(w->io, w->fd);
    w->fd = -1;
    free(w->block);
    w->block = NULL;
}

int oplog_write_all(struct io *io, const char *dir, const sm_t *sm, char *why, size_t why_len)
{
    u64 start = sm->operation_count > 0 ? sm_operation_at(sm, 0)->applied_lsn - 1 : sm->last_applied_lsn;
    char name[64], tmp[4096], final[4096];
    if (!oplog_file_name(name, sizeof(name), start) || !io_path(final, sizeof(final), dir, name) ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", final) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    u64 blocks = sm->operation_count / OPLOG_BLOCK_RECORDS + 1;
    u64 size = OPLOG_FILE_HEADER_SIZE + blocks * OPLOG_BLOCK_HEADER_SIZE + (u64)sm->operation_count * OPLOG_RECORD_SIZE;
    u8 *buf = size <= SIZE_MAX ? malloc((size_t)size) : NULL;
    if (buf == NULL)
        return -ENOMEM;
    put_file_header(buf, start);
    u64 off = OPLOG_FILE_HEADER_SIZE;
    for (u32 i = 0; i < sm->operation_count || off == OPLOG_FILE_HEADER_SIZE;) {
        u32 n = sm->operation_count - i < OPLOG_BLOCK_RECORDS ? sm->operation_count - i : OPLOG_BLOCK_RECORDS;
        for (u32 k = 0; k < n; k++)
            oplog_put_record(buf + off + OPLOG_BLOCK_HEADER_SIZE + (u64)k * OPLOG_RECORD_SIZE, sm_operation_at(sm, i + k));
        i += n;
        off += seal_block(buf + off, n, i == sm->operation_count ? sm->last_applied_lsn : sm_operation_at(sm, i - 1)->applied_lsn);
    }
    int fd;
    (void)io->ops->unlink(io, tmp);
    int rc = io->ops->open(io, tmp, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
    if (rc != 0) {
        free(buf);
        return fail(why, why_len, rc, "create", tmp);
    }
    rc = io_write_all(io, fd, buf, (size_t)off, 0);
    if (rc == 0)
        rc = io->ops->datasync(io, fd);
    io->ops->close(io, fd);
    free(buf);
    if (rc == 0)
        rc = io->ops->rename(io, tmp, final);
    if (rc != 0) {
        (void)io->ops->unlink(io, tmp);
        return fail(why, why_len, rc, "write", final);
    }
    return 0; /* the caller syncs the directory (the snapshot's rename does) */
}

/* ---- reader ------------------------------------------------------------------------------------ */

int oplog_reader_open(struct oplog_reader *r, struct io *io, const char *dir, u64 upto_lsn, char *why,
                      size_t why_len)
{
    memset(r, 0, sizeof(*r));
    r->io = io;
    r->upto_lsn = upto_lsn;
    if (snprintf(r->dir, sizeof(r->dir), "%s", dir) >= (int)sizeof(r->dir))
        return -ENAMETOOLONG;
    struct seg_list l;
    int rc = list_segments(io, dir, &l, why, why_len);
    if (rc != 0)
        return rc;
    r->starts = l.starts;
    r->count = l.count;
    return 0;
}

static void note_damage(struct oplog_reader *r, u64 start, u64 off, const char *what)
{
    if (r->damage[0] == '\0')
        snprintf(r->damage, sizeof(r->damage), "ops-%020" PRIu64 ".log at byte %" PRIu64 ": %s", start, off, what);
}

/* Opens the next segment whose header checks; false at the end. */
static int next_segment(struct oplog_reader *r, char *why, size_t why_len)
{
    while (r->next < r->count) {
        u64 start = r->starts[r->next++];
        char path[4096];
        if (!seg_path(r->dir, start, path, sizeof(path)))
            return -ENAMETOOLONG;
        int rc = io_view_file(r->io, path, &r->view);
        if (rc != 0) {
            why_set(why, why_len, "%s: cannot read: %s", path, strerror(-rc));
            return rc;
        }
        const u8 *h = r->view.buf;
        if (r->view.len < OPLOG_FILE_HEADER_SIZE || le_get_u32(h + F_MAGIC) != FILE_MAGIC ||
            le_get_u16(h + F_VERSION) != FILE_VERSION || le_get_u16(h + F_HEADER_SIZE) != OPLOG_FILE_HEADER_SIZE ||
            le_get_u32(h + F_CRC) != crc32c(0, h, F_CRC) || le_get_u64(h + F_START) != start) {
            note_damage(r, start, 0, "bad file header");
            io_view_release(r->io, &r->view);
            continue;
        }
        r->open = true;
        r->pos = OPLOG_FILE_HEADER_SIZE;
        r->block_left = 0;
        return 1;
    }
    return 0;
}

/* Moves to the next block of the open segment that checks; false at its end or at damage. */
static bool next_block(struct oplog_reader *r)
{
    const u8 *buf = r->view.buf;
    u64 len = r->view.len, start = r->starts[r->next - 1];
    while (r->pos < len) {
        if (len - r->pos < OPLOG_BLOCK_HEADER_SIZE) {
            note_damage(r, start, r->pos, "a partial block header");
            return false;
        }
        const u8 *b = buf + r->pos;
        u32 count = le_get_u32(b + B_COUNT);
        u64 size = OPLOG_BLOCK_HEADER_SIZE + (u64)count * OPLOG_RECORD_SIZE;
        if (le_get_u32(b + B_MAGIC) != BLOCK_MAGIC || count > OPLOG_BLOCK_RECORDS || size > len - r->pos) {
            note_damage(r, start, r->pos, "not a whole block");
            return false;
        }
        u32 crc = crc32c(crc32c(0, b, B_CRC), b + OPLOG_BLOCK_HEADER_SIZE, (size_t)(size - OPLOG_BLOCK_HEADER_SIZE));
        if (crc != le_get_u32(b + B_CRC)) {
            note_damage(r, start, r->pos, "block checksum mismatch");
            return false;
        }
        r->pos += size;
        if (count > 0) {
            r->block_left = count;
            r->rec = b + OPLOG_BLOCK_HEADER_SIZE;
            return true;
        }
    }
    return false;
}

int oplog_reader_next(struct oplog_reader *r, struct sm_operation *out, char *why, size_t why_len)
{
    for (;;) {
        while (r->open && r->block_left > 0) {
            oplog_get_record(r->rec, out);
            r->rec += OPLOG_RECORD_SIZE;
            r->block_left--;
            if (out->applied_lsn <= r->last_lsn)
                continue; /* an earlier segment had it (written again after a restart) */
            if (out->applied_lsn > r->upto_lsn) {
                r->block_left = 0; /* later records of this segment are past the limit too */
                r->pos = r->view.len;
                continue;
            }
            r->last_lsn = out->applied_lsn;
            return 1;
        }
        if (r->open && next_block(r))
            continue;
        if (r->open) {
            io_view_release(r->io, &r->view);
            r->open = false;
        }
        int rc = next_segment(r, why, why_len);
        if (rc <= 0)
            return rc;
    }
}

void oplog_reader_close(struct oplog_reader *r)
{
    if (r->open)
        io_view_release(r->io, &r->view);
    r->open = false;
    free(r->starts);
    r->starts = NULL;
}

/* ---- pruning ----------------------------------------------------------------------------------- */

int oplog_prune(struct io *io, const char *dir, u64 keep_from_lsn, u32 *removed, char *why, size_t why_len)
{
    *removed = 0;
    struct seg_list l;
    int rc = list_segments(io, dir, &l, why, why_len);
    if (rc != 0)
        return rc;
    for (u32 i = 0; i + 1 < l.count && rc == 0; i++) {
        if (l.starts[i + 1] >= keep_from_lsn)
            break;
        rc = remove_segment(io, dir, l.starts[i], why, why_len);
        *removed += rc == 0;
    }
    free(l.starts);
    return rc;
}
