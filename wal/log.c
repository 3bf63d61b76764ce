/*
 * wal/log.c — segment files, group-commit appends, recovery and pruning (see log.h).
 *
 * Recovery order: list the segments, sort them by first LSN, and scan each with the decision
 * table of wal/scan.h. Between segments the header of the next one must continue the chain
 * exactly (first_lsn, prev_slot, prev_crc); anything else is a gap and fails closed. Only the
 * newest segment may end in a torn write, and only the newest may be a frameless file whose
 * creation a crash interrupted (removed, since it holds nothing).
 */
#include "config.h"

#include "wal/log.h"

#include "common/assert.h"
#include "common/le.h"
#include "common/why.h"
#include "wal/command.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------ */

#define SEG_PREFIX "wal-"
#define SEG_SUFFIX ".log"

bool wal_segment_name(char *out, size_t cap, u64 first_lsn)
{
    return io_name_make(out, cap, SEG_PREFIX, first_lsn, SEG_SUFFIX);
}

bool wal_segment_parse_name(const char *name, u64 *first_lsn)
{
    u64 v;
    if (!io_name_parse(name, SEG_PREFIX, SEG_SUFFIX, &v) || v == 0)
        return false;
    *first_lsn = v;
    return true;
}

static bool seg_path(const struct wal_log *w, u64 first_lsn, char *out, size_t cap)
{
    char name[64];
    return wal_segment_name(name, sizeof(name), first_lsn) && io_path(out, cap, w->dir, name);
}

/* ---- listing ---------------------------------------------------------------------------- */

/* Segments, ascending (snapshots, the operation log, metadata and temp files live here too). */
static int list_segments(struct wal_log *w, char *why, size_t why_len)
{
    w->segment_count = 0;
    u64 *lsns = malloc(sizeof(u64) * (WAL_SEGMENTS_MAX + 1));
    if (lsns == NULL)
        return -ENOMEM;
    u32 n;
    /* One more than fits: a name numbered 0 is no segment (wal_segment_parse_name) and skipped. */
    int rc = io_list_numbered(w->io, w->dir, SEG_PREFIX, SEG_SUFFIX, "WAL segments", lsns, WAL_SEGMENTS_MAX + 1, &n,
                              why, why_len);
    for (u32 i = 0; rc == 0 && i < n; i++) {
        if (lsns[i] == 0)
            continue;
        if (w->segment_count == WAL_SEGMENTS_MAX) {
            why_set(why, why_len, "%s: more than %d WAL segments", w->dir, WAL_SEGMENTS_MAX);
            rc = -EMFILE;
            break;
        }
        w->segments[w->segment_count++].first_lsn = lsns[i];
    }
    free(lsns);
    return rc;
}

/* ---- creating segments ------------------------------------------------------------------ */

static void options_resolve(struct wal_log_options *o, const struct wal_log_options *in)
{
    *o = in != NULL ? *in : (struct wal_log_options){ 0 };
    if (o->segment_bytes == 0)
        o->segment_bytes = WAL_SEGMENT_BYTES_DEFAULT;
    if (o->batch_bytes == 0)
        o->batch_bytes = WAL_BATCH_BYTES_DEFAULT;
    if (o->sync_window_bytes == 0)
        o->sync_window_bytes = o->batch_bytes > WAL_SYNC_WINDOW_DEFAULT ? o->batch_bytes : WAL_SYNC_WINDOW_DEFAULT;
    ADB_ASSERT(o->segment_bytes >= WAL_SEGMENT_BYTES_MIN && o->segment_bytes <= WAL_SEGMENT_BYTES_MAX);
    ADB_ASSERT(o->batch_bytes >= WAL_FRAME_MAX);
    ADB_ASSERT(o->sync_window_bytes >= o->batch_bytes); /* so >= WAL_FRAME_MAX too */
}

/*
 * Creates a segment file whose first frame will be h->first_lsn: header written, whole
 * capacity allocated, file fsynced (allocation changes metadata), directory fsynced. On success
 * *fd_out is open for writing. A crash part way leaves a frameless newest segment that recovery
 * removes.
 */
static int segment_create(struct io *io, const char *dir, const struct wal_segment_header *h,
                          int *fd_out, char *why, size_t why_len)
{
    char name[64], path[WAL_PATH_MAX];
    if (!wal_segment_name(name, sizeof(name), h->first_lsn) || !io_path(path, sizeof(path), dir, name)) {
        why_set(why, why_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    int fd, rc = io->ops->open(io, path, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot create: %s", path, strerror(-rc));
        return rc;
    }
    u8 header[WAL_SEGMENT_HEADER_SIZE];
    wal_segment_header_encode(header, h);
    const char *step = "write header";
    rc = io_write_all(io, fd, header, sizeof(header), 0);
    if (rc == 0) {
        step = "preallocate";
        rc = io->ops->allocate(io, fd, h->capacity);
    }
    if (rc == 0) {
        step = "fsync";
        rc = io->ops->fsync(io, fd);
    }
    if (rc == 0) {
        step = "fsync directory";
        rc = io->ops->sync_dir(io, dir);
    }
    if (rc != 0) {
        why_set(why, why_len, "%s: %s: %s", path, step, strerror(-rc));
        io->ops->close(io, fd);
        if (wal_log_no_space(rc))
            (void)io->ops->unlink(io, path); /* frameless: nothing lost; a later roll creates it again */
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int wal_log_format(struct io *io, const char *dir, const struct wal_log_options *opt, char *why,
                   size_t why_len)
{
    struct wal_log_options o;
    options_resolve(&o, opt);
    struct wal_log *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->io = io;
    int rc = 0;
    if (snprintf(w->dir, sizeof(w->dir), "%s", dir) >= (int)sizeof(w->dir)) {
        why_set(why, why_len, "%s: path too long", dir);
        rc = -ENAMETOOLONG;
    }
    if (rc == 0)
        rc = list_segments(w, why, why_len);
    if (rc == 0 && w->segment_count != 0) {
        why_set(why, why_len, "%s: already holds a WAL", dir);
        rc = -EEXIST;
    }
    if (rc == 0) {
        struct wal_segment_header h = { .first_lsn = 1, .prev_slot = 0, .prev_crc = 0,
                                        .capacity = o.segment_bytes, .sync_window = o.sync_window_bytes };
        int fd;
        rc = segment_create(io, dir, &h, &fd, why, why_len);
        if (rc == 0)
            io->ops->close(io, fd);
    }
    free(w);
    return rc;
}

/* ---- recovery --------------------------------------------------------------------------- */

struct replay_ctx {
    wal_replay_fn fn;
    void *ctx;
    u64 from_lsn;
    u64 delivered;
};

static int replay_one(void *ctx, const struct wal_frame *f, const struct sm_command *cmd, u64 offset)
{
    (void)offset;
    struct replay_ctx *r = ctx;
    if (r->fn == NULL || f->lsn < r->from_lsn)
        return 0;
    r->delivered++;
    return r->fn(r->ctx, f, cmd);
}

/* Reads a whole file into *buf (grown as needed). */
static int read_file(struct io *io, const char *path, u8 **buf, u64 *cap, u64 *len, int *fd_out)
{
    int fd, rc = io->ops->open(io, path, IO_READ, &fd);
    if (rc != 0)
        return rc;
    u64 size;
    rc = io->ops->size(io, fd, &size);
    if (rc == 0 && size > *cap) {
        u8 *n = realloc(*buf, size);
        if (n == NULL)
            rc = -ENOMEM;
        else {
            *buf = n;
            *cap = size;
        }
    }
    if (rc == 0)
        rc = io_read_all(io, fd, *buf, size, 0);
    if (rc != 0) {
        io->ops->close(io, fd);
        return rc;
    }
    *len = size;
    *fd_out = fd;
    return 0;
}

/* The newest segment has no valid header. Frameless (a crash during its creation)? */
static bool torn_creation(const u8 *buf, u64 len)
{
    return len <= WAL_SEGMENT_HEADER_SIZE || le_all_zero(buf + WAL_SEGMENT_HEADER_SIZE, len - WAL_SEGMENT_HEADER_SIZE);
}

/* Zeroes the torn write [off, end) (at most a sync window) and syncs, so appends continue at off. */
static int zero_tail(struct io *io, const char *path, u64 off, u64 end)
{
    int fd, rc = io->ops->open(io, path, IO_WRITE, &fd);
    if (rc != 0)
        return rc;
    static const u8 zeros[64 * 1024];
    for (u64 at = off; at < end && rc == 0; at += sizeof(zeros))
        rc = io_write_all(io, fd, zeros, end - at < sizeof(zeros) ? end - at : sizeof(zeros), at);
    if (rc == 0)
        rc = io->ops->datasync(io, fd);
    io->ops->close(io, fd);
    return rc;
}

static bool spare_path(const struct wal_log *w, char *out, size_t cap)
{
    return io_path(out, cap, w->dir, WAL_SPARE_NAME);
}

/*
 * A writer killed between pwrite and fdatasync leaves frames that reads return but only the page
 * cache holds. Recovery delivers what it reads (the sequencer publishes it and answers retries
 * from it) and counts it durable, so it is made durable first: the newest segment, the one before
 * it (the active one when the newest is a creation a crash cut short), then the directory, where
 * a roll's create or rename may not be durable yet. A read-only open never syncs.
 */
static int sync_tail(struct wal_log *w, char *why, size_t why_len)
{
    u32 from = w->segment_count > 2 ? w->segment_count - 2 : 0;
    for (u32 i = from; i < w->segment_count; i++) {
        char path[WAL_PATH_MAX];
        if (!seg_path(w, w->segments[i].first_lsn, path, sizeof(path))) {
            why_set(why, why_len, "%s: path too long", w->dir);
            return -ENAMETOOLONG;
        }
        int fd, rc = w->io->ops->open(w->io, path, IO_WRITE, &fd);
        if (rc == 0) {
            rc = w->io->ops->fsync(w->io, fd);
            w->io->ops->close(w->io, fd);
        }
        if (rc != 0) {
            why_set(why, why_len, "%s: cannot sync before recovery: %s", path, strerror(-rc));
            return rc;
        }
    }
    int rc = w->io->ops->sync_dir(w->io, w->dir);
    if (rc != 0)
        why_set(why, why_len, "%s: cannot fsync directory before recovery: %s", w->dir, strerror(-rc));
    return rc;
}

struct open_state {
    u8 *buf;
    u64 cap;
    struct replay_ctx replay;
    u64 covered;  /* frames below this LSN are the caller's snapshot's (0: none): wal/scan.h (**) */
    u64 lost_seg; /* covered damage ran to the end of the segment starting at this LSN (0: no):
                   * the chain state is unknown until the next segment's header anchors it */
    u64 lost_offset;
    char lost_reason[256];
};

/* Scans segment i; on success leaves its fd open in *fd_out if it is the last. */
static int open_segment(struct wal_log *w, u32 i, u32 first_scanned, struct open_state *st,
                        struct wal_open_report *rep, char *why, size_t why_len)
{
    bool last = i + 1 == w->segment_count;
    u64 first = w->segments[i].first_lsn;
    char path[WAL_PATH_MAX];
    if (!seg_path(w, first, path, sizeof(path))) {
        why_set(why, why_len, "%s: path too long", w->dir);
        return -ENAMETOOLONG;
    }
    u64 len;
    int fd, rc = read_file(w->io, path, &st->buf, &st->cap, &len, &fd);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    w->io->ops->close(w->io, fd);

    struct wal_segment_header h;
    enum wal_segment_status hs = wal_segment_header_decode(st->buf, len, &h);
    if (hs != WAL_SEGMENT_OK) {
        /* Not after covered damage ran to the end of the previous segment: that one could not
         * become the active one (where its chain ends is unknown), so fail closed, removing
         * nothing. */
        if (last && w->segment_count > 1 && st->lost_seg == 0 && torn_creation(st->buf, len)) {
            /* Decision: a crash while creating the next segment; it holds no frame. */
            if (!w->opt.read_only) {
                rc = w->io->ops->unlink(w->io, path);
                if (rc == 0)
                    rc = w->io->ops->sync_dir(w->io, w->dir);
                if (rc != 0) {
                    why_set(why, why_len, "%s: cannot remove torn new segment: %s", path, strerror(-rc));
                    return rc;
                }
            }
            rep->removed_empty_segment = 1;
            w->segment_count--;
            return 1; /* the previous segment is the active one */
        }
        why_set(why, why_len, "%s: offset 0: %s%s", path, wal_segment_status_name(hs),
            st->lost_seg != 0 ? " (the chain cannot be anchored again after covered damage in the previous segment)" : "");
        return -EUCLEAN;
    }
    if (h.capacity < WAL_SEGMENT_BYTES_MIN || h.capacity > WAL_SEGMENT_BYTES_MAX) {
        why_set(why, why_len, "%s: offset 32: segment capacity %" PRIu64 " out of range", path, h.capacity);
        return -EUCLEAN;
    }
    if (h.first_lsn != first) {
        why_set(why, why_len, "%s: offset 8: header first_lsn %" PRIu64 " does not match the file name",
            path, h.first_lsn);
        return -EUCLEAN;
    }
    if (i == first_scanned || st->lost_seg != 0) {
        /* The chain starts here, or starts again after covered damage that ran to the end of the
         * previous segment (its name, equal to this header, was checked to be <= covered). */
        w->cur = (struct wal_cursor){ .next_lsn = h.first_lsn, .last_slot = h.prev_slot,
                                      .prev_crc = h.prev_crc };
        st->lost_seg = 0;
    } else if (h.first_lsn != w->cur.next_lsn || h.prev_slot != w->cur.last_slot ||
               h.prev_crc != w->cur.prev_crc) {
        why_set(why, why_len,
            "%s: offset 0: gap between segments: starts at LSN %" PRIu64 " (prev_crc %08x), the previous "
            "segment ends before LSN %" PRIu64 " (crc %08x)",
            path, h.first_lsn, h.prev_crc, w->cur.next_lsn, w->cur.prev_crc);
        return -EUCLEAN;
    }

    struct wal_scan_options so = { .last = last, .stop_after_lsn = w->opt.stop_after_lsn,
                                   .sync_window = h.sync_window, .synced_lsn = w->opt.synced_lsn,
                                   .from_lsn = st->covered };
    struct wal_scan_result res;
    enum wal_scan_end end = wal_scan_segment(st->buf, len, &so, &w->cur, replay_one, &st->replay, &res);
    rep->frames += res.frames;
    if (res.damaged > 0) {
        /* Decision: covered damage is reported, never repaired; the caller warns and counts. */
        if (rep->damaged == 0) {
            rep->damage_lsn = res.damage_lsn;
            rep->damage_offset = res.damage_offset;
            snprintf(rep->damage_file, sizeof(rep->damage_file), "%s", path);
            snprintf(rep->damage_reason, sizeof(rep->damage_reason), "%s", res.damage_reason);
        }
        rep->damaged += res.damaged;
        if (res.damage_floor_lsn > rep->damage_floor_lsn)
            rep->damage_floor_lsn = res.damage_floor_lsn;
    }
    switch (end) {
    case WAL_SCAN_CLEAN:
        break;
    case WAL_SCAN_TORN:
        /* Decision: the one repair. Zero exactly the torn bytes; no valid frame is touched. */
        rep->torn = true;
        rep->torn_offset = res.bad_offset;
        rep->torn_bytes = res.torn_end - res.bad_offset;
        snprintf(rep->torn_file, sizeof(rep->torn_file), "%s", path);
        if (!w->opt.read_only) {
            rc = zero_tail(w->io, path, res.bad_offset, res.torn_end);
            if (rc != 0) {
                why_set(why, why_len, "%s: cannot truncate torn tail at offset %" PRIu64 ": %s", path,
                    res.bad_offset, strerror(-rc));
                return rc;
            }
        }
        break;
    case WAL_SCAN_CORRUPT:
        why_set(why, why_len, "%s: offset %" PRIu64 ": %s", path, res.bad_offset, res.reason);
        return -EUCLEAN;
    case WAL_SCAN_LIMIT:
        return 1; /* stop_after_lsn reached: nothing after it is read, in this segment or later */
    case WAL_SCAN_STOPPED:
        why_set(why, why_len, "%s: offset %" PRIu64 ": replay %s", path, res.bad_offset, res.reason);
        return -ECANCELED;
    case WAL_SCAN_LOST:
        /* Frames from the damage to the end of this segment are lost. Fine only if they are all
         * covered, i.e. the next segment starts at or below from_lsn; its header anchors the
         * chain again. */
        if (i + 1 >= w->segment_count || w->segments[i + 1].first_lsn > st->covered) {
            why_set(why, why_len, "%s: offset %" PRIu64 ": %s, and the next segment does not start at or below LSN %" PRIu64
                ": it cannot be found intact", path, res.bad_offset, res.reason, st->covered);
            return -EUCLEAN;
        }
        st->lost_seg = first;
        st->lost_offset = res.bad_offset;
        snprintf(st->lost_reason, sizeof(st->lost_reason), "%s", res.reason);
        if (w->segments[i + 1].first_lsn - 1 > rep->damage_floor_lsn)
            rep->damage_floor_lsn = w->segments[i + 1].first_lsn - 1;
        return 0;
    }
    if (last) {
        w->write_offset = res.valid_end;
        w->segment_capacity = h.capacity;
        w->segment_length = len;
        /* Never more unsynced than the header promises recovery. A segment from before windows
         * promises one frame, which no group commit keeps: it is written as before until the
         * next roll. */
        w->segment_window = h.sync_window != 0 && h.sync_window < w->opt.sync_window_bytes ? h.sync_window
                                                                                          : w->opt.sync_window_bytes;
    }
    return 0;
}

static int activate(struct wal_log *w, char *why, size_t why_len)
{
    char path[WAL_PATH_MAX];
    u64 first = w->segments[w->segment_count - 1].first_lsn;
    if (!seg_path(w, first, path, sizeof(path)))
        return -ENAMETOOLONG;
    int rc = w->io->ops->open(w->io, path, IO_WRITE, &w->fd);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot open for append: %s", path, strerror(-rc));
        return rc;
    }
    if (w->segment_length < w->segment_capacity) {
        /* A crash cut the segment's creation short after its header: finish preallocating. */
        rc = w->io->ops->allocate(w->io, w->fd, w->segment_capacity);
        if (rc == 0)
            rc = w->io->ops->fsync(w->io, w->fd);
        if (rc != 0) {
            why_set(why, why_len, "%s: cannot preallocate: %s", path, strerror(-rc));
            return rc;
        }
    }
    w->batch = malloc(w->opt.batch_bytes);
    if (w->batch == NULL)
        return -ENOMEM;
    w->batch_used = 0;
    w->batch_offset = w->write_offset;
    w->synced_offset = w->write_offset; /* sync_tail and zero_tail synced everything before it */
    return 0;
}

int wal_log_open(struct wal_log *w, struct io *io, const char *dir,
                 const struct wal_log_options *opt, u64 from_lsn, wal_replay_fn replay,
                 void *ctx, struct wal_open_report *rep, char *why, size_t why_len)
{
    memset(w, 0, sizeof(*w));
    memset(rep, 0, sizeof(*rep));
    w->io = io;
    w->fd = -1;
    w->spare_fd = -1;
    options_resolve(&w->opt, opt);
    if (snprintf(w->dir, sizeof(w->dir), "%s", dir) >= (int)sizeof(w->dir)) {
        why_set(why, why_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    int rc = list_segments(w, why, why_len);
    if (rc != 0)
        return rc;
    if (w->segment_count == 0) {
        why_set(why, why_len, "%s: no WAL segment (wal-*.log); the directory was never formatted", dir);
        return -ENOENT;
    }

    ADB_ASSERT(w->opt.stop_after_lsn == 0 || w->opt.read_only);
    if (!w->opt.read_only && (rc = sync_tail(w, why, why_len)) != 0)
        return rc; /* before the first frame is delivered or counted durable */
    struct open_state st = { .replay = { .fn = replay, .ctx = ctx, .from_lsn = from_lsn },
                             .covered = replay != NULL ? from_lsn : 0 };
    u32 start = 0;
    if (replay != NULL && from_lsn != 0) {
        if (from_lsn < w->segments[0].first_lsn) {
            why_set(why, why_len, "%s: the WAL begins at LSN %" PRIu64 " but replay needs LSN %" PRIu64, dir,
                w->segments[0].first_lsn, from_lsn);
            return -EUCLEAN;
        }
        /* Segments wholly before from_lsn are kept for fallback and for peers, not needed here:
         * the chain can start from any segment header, so skip reading them. Never start at
         * the newest of several: it may be a torn creation that recovery removes. */
        while (start + 2 < w->segment_count && w->segments[start + 1].first_lsn <= from_lsn)
            start++;
    }
    rep->first_lsn = w->segments[0].first_lsn;
    for (u32 i = start; i < w->segment_count && rc == 0; i++) {
        if (w->opt.stop_after_lsn != 0 && w->segments[i].first_lsn > w->opt.stop_after_lsn)
            break; /* wholly after the reader's limit: not read at all */
        rc = open_segment(w, i, start, &st, rep, why, why_len);
    }
    if (rc == 1)
        rc = 0;
    if (rc == 0 && st.lost_seg != 0) {
        /* Covered damage ran to the end of a segment and no later header was read to anchor the
         * chain: the next segment lies wholly past the reader's limit. */
        char path[WAL_PATH_MAX];
        if (!seg_path(w, st.lost_seg, path, sizeof(path)))
            path[0] = '\0';
        why_set(why, why_len, "%s: offset %" PRIu64 ": %s; no later segment header anchors the chain again", path,
            st.lost_offset, st.lost_reason);
        rc = -EUCLEAN;
    }
    free(st.buf);
    if (rc < 0)
        return rc;

    rep->segments = w->segment_count;
    rep->last_lsn = w->cur.next_lsn - 1;
    rep->last_slot = w->cur.last_slot;
    rep->frames_delivered = st.replay.delivered;
    w->durable_lsn = rep->last_lsn;
    if (replay != NULL && from_lsn != 0 && from_lsn > w->cur.next_lsn) {
        why_set(why, why_len, "%s: the WAL ends at LSN %" PRIu64 " but replay needs LSN %" PRIu64
            " (entries the snapshot holds are missing from the WAL)", dir, rep->last_lsn, from_lsn);
        return -EUCLEAN;
    }
    if (w->opt.read_only)
        return 0;
    char spare[WAL_PATH_MAX];
    if (spare_path(w, spare, sizeof(spare)))
        (void)io->ops->unlink(io, spare); /* an unfinished spare from before: prepared again */
    return activate(w, why, why_len);
}

void wal_log_close(struct wal_log *w)
{
    if (w->fd >= 0)
        w->io->ops->close(w->io, w->fd);
    w->fd = -1;
    if (w->spare_fd >= 0) /* the file stays; the next open removes it */
        w->io->ops->close(w->io, w->spare_fd);
    w->spare_fd = -1;
    w->spare_ready = false;
    free(w->batch);
    w->batch = NULL;
}

/* ---- appending -------------------------------------------------------------------------- */

static int halt(struct wal_log *w, int rc, const char *step)
{
    ADB_ASSERT(rc < 0);
    if (!w->halted) {
        w->halted = true;
        w->halt_errno = -rc;
        snprintf(w->halt_reason, sizeof(w->halt_reason), "%s: %s (LSN %" PRIu64 ")", step,
                 strerror(-rc), w->cur.next_lsn - 1);
    }
    return rc;
}

/* Writes the batch at its offset (no sync). */
static int flush(struct wal_log *w)
{
    if (w->batch_used == 0)
        return 0;
    int rc = io_write_all(w->io, w->fd, w->batch, w->batch_used, w->batch_offset);
    if (rc != 0)
        return halt(w, rc, "WAL write");
    w->batch_offset += w->batch_used;
    w->batch_used = 0;
    return 0;
}

int wal_log_commit(struct wal_log *w)
{
    if (w->halted)
        return -EIO;
    int rc = flush(w);
    if (rc != 0)
        return rc;
    u64 last = w->cur.next_lsn - 1;
    if (last == w->durable_lsn)
        return 0;
    rc = w->io->ops->datasync(w->io, w->fd);
    if (rc != 0)
        return halt(w, rc, "WAL fdatasync");
    w->durable_lsn = last;
    w->synced_offset = w->batch_offset;
    return 0;
}

/* Seals the active segment (everything in it synced) and starts the next one. */
/* ---- the spare segment ------------------------------------------------------------------ */
/*
 * Creating a segment writes and syncs its whole capacity (64 MiB: about 100 ms here), which on
 * the commit path stalls every writer. So the owner prepares the next one ahead, a slice at a
 * time between batches (wal_log_prepare): WAL_SPARE_NAME is zero-filled and synced slice by
 * slice. A roll then only writes the header into it, syncs one page, renames it to its segment
 * name and syncs the directory. A crash before the rename leaves only the spare, which open
 * removes; after it, a frameless newest segment, which recovery already removes.
 */

int wal_log_prepare(struct wal_log *w, u64 budget_bytes)
{
    if (w->halted)
        return -EIO;
    if (w->spare_ready || budget_bytes == 0 || w->opt.read_only)
        return 0;
    char path[WAL_PATH_MAX];
    if (!spare_path(w, path, sizeof(path)))
        return -ENAMETOOLONG;
    int rc;
    if (w->spare_fd < 0) {
        rc = w->io->ops->open(w->io, path, IO_WRITE | IO_CREATE | IO_EXCL, &w->spare_fd);
        if (rc != 0)
            return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL spare create");
        w->spare_written = 0;
    }
    static const u8 zeros[64 * 1024];
    /* At least `budget` more, and never behind 9/8 of the active segment's fill (scaled to the
     * spare's size): however fast frames arrive, the spare is complete by the time the active
     * segment is 8/9 full, and each call writes about 9/8 of what was logged since the last. */
    u64 cap = w->opt.segment_bytes;
    u64 due = w->segment_capacity == 0 ? 0 : (u64)((u128)w->write_offset * cap / w->segment_capacity);
    due += due / 8;
    u64 end = (w->spare_written > due ? w->spare_written : due) + budget_bytes;
    if (end > cap)
        end = cap;
    while (w->spare_written < end) {
        u64 n = end - w->spare_written < sizeof(zeros) ? end - w->spare_written : sizeof(zeros);
        rc = io_write_all(w->io, w->spare_fd, zeros, n, w->spare_written);
        if (rc != 0) /* the spare holds no frame: a full disk only delays it */
            return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL spare write");
        w->spare_written += n;
    }
    /* Each slice is synced as it goes, so no single call flushes the whole file. */
    rc = w->spare_written == cap ? w->io->ops->fsync(w->io, w->spare_fd) : w->io->ops->datasync(w->io, w->spare_fd);
    if (rc != 0)
        return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL spare sync");
    w->spare_ready = w->spare_written == cap;
    return 0;
}

/* Turns the prepared spare into the segment h describes; on success *fd_out is open on it. */
static int spare_take(struct wal_log *w, const struct wal_segment_header *h, int *fd_out)
{
    char from[WAL_PATH_MAX], name[64], to[WAL_PATH_MAX];
    if (!spare_path(w, from, sizeof(from)) || !wal_segment_name(name, sizeof(name), h->first_lsn) ||
        !io_path(to, sizeof(to), w->dir, name))
        return -ENAMETOOLONG;
    ADB_ASSERT(h->capacity == w->spare_written);
    u8 header[WAL_SEGMENT_HEADER_SIZE];
    wal_segment_header_encode(header, h);
    int rc = io_write_all(w->io, w->spare_fd, header, sizeof(header), 0);
    if (rc == 0)
        rc = w->io->ops->datasync(w->io, w->spare_fd);
    if (rc == 0)
        rc = w->io->ops->rename(w->io, from, to);
    if (rc == 0)
        rc = w->io->ops->sync_dir(w->io, w->dir);
    if (rc != 0)
        return rc;
    *fd_out = w->spare_fd;
    w->spare_fd = -1;
    w->spare_ready = false;
    w->spare_written = 0;
    return 0;
}

static int roll(struct wal_log *w)
{
    if (w->segment_count == WAL_SEGMENTS_MAX)
        return -EMFILE; /* not a halt: nothing is lost; a checkpoint must prune first */
    int rc = wal_log_commit(w);
    if (rc != 0)
        return rc;
    struct wal_segment_header h = { .first_lsn = w->cur.next_lsn, .prev_slot = w->cur.last_slot,
                                    .prev_crc = w->cur.prev_crc, .capacity = w->opt.segment_bytes,
                                    .sync_window = w->opt.sync_window_bytes };
    int fd;
    if (w->spare_ready) {
        rc = spare_take(w, &h, &fd);
        if (rc != 0)
            return halt(w, rc, "WAL segment from the spare");
    } else {
        char why[WAL_PATH_MAX + 64];
        rc = segment_create(w->io, w->dir, &h, &fd, why, sizeof(why));
        if (rc != 0) /* a full disk: nothing was appended, the active segment stays as it is */
            return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL segment create");
    }
    w->io->ops->close(w->io, w->fd);
    w->fd = fd;
    w->segments[w->segment_count++].first_lsn = h.first_lsn;
    w->segment_capacity = h.capacity;
    w->segment_length = h.capacity;
    w->write_offset = WAL_SEGMENT_HEADER_SIZE;
    w->batch_offset = WAL_SEGMENT_HEADER_SIZE;
    w->synced_offset = WAL_SEGMENT_HEADER_SIZE;
    w->segment_window = h.sync_window;
    return 0;
}

int wal_log_append(struct wal_log *w, u64 request_slot, u64 view, const struct sm_command *cmd,
                   u64 *lsn_out)
{
    if (w->halted)
        return -EIO;
    ADB_ASSERT(w->fd >= 0);
    ADB_ASSERT(request_slot >= w->cur.last_slot);
    u32 size = wal_frame_size(wal_cmd_size(cmd));
    if (w->batch_offset + w->batch_used + size > w->segment_capacity) {
        int rc = roll(w);
        if (rc != 0)
            return rc;
    }
    if (w->batch_offset + w->batch_used + size - w->synced_offset > w->segment_window) {
        int rc = wal_log_commit(w); /* the sync window: see log.h */
        if (rc != 0)
            return rc;
    }
    if (w->batch_used + size > w->opt.batch_bytes) {
        int rc = flush(w);
        if (rc != 0)
            return rc;
    }
    u8 *at = w->batch + w->batch_used;
    struct wal_frame f = {
        .lsn = w->cur.next_lsn,
        .request_slot = request_slot,
        .view = view,
        .prev_crc = w->cur.prev_crc,
        .record_type = wal_cmd_record_type(cmd),
        .payload = at + WAL_FRAME_HEADER_SIZE,
    };
    f.payload_len = wal_cmd_encode(at + WAL_FRAME_HEADER_SIZE, WAL_PAYLOAD_MAX, cmd);
    u32 n = wal_frame_encode(at, w->opt.batch_bytes - w->batch_used, &f);
    ADB_ASSERT(n == size);
    w->batch_used += n;
    w->last_frame_len = n;
    w->write_offset = w->batch_offset + w->batch_used;
    w->cur.next_lsn = f.lsn + 1;
    w->cur.last_slot = request_slot;
    w->cur.prev_crc = f.crc;
    *lsn_out = f.lsn;
    return 0;
}

/* ---- pruning ---------------------------------------------------------------------------- */

int wal_log_prune(struct wal_log *w, u64 keep_from_lsn, u32 *removed)
{
    *removed = 0;
    if (w->halted)
        return -EIO;
    u32 n = 0;
    int rc = 0;
    /* Oldest first, so a crash part way leaves a contiguous suffix of the log. */
    while (n + 1 < w->segment_count && w->segments[n + 1].first_lsn <= keep_from_lsn) {
        char path[WAL_PATH_MAX];
        if (!seg_path(w, w->segments[n].first_lsn, path, sizeof(path)))
            return -ENAMETOOLONG;
        rc = w->io->ops->unlink(w->io, path);
        if (rc != 0)
            break;
        n++;
    }
    if (n > 0) {
        memmove(w->segments, w->segments + n, (w->segment_count - n) * sizeof(w->segments[0]));
        w->segment_count -= n;
        int src = w->io->ops->sync_dir(w->io, w->dir);
        if (rc == 0)
            rc = src;
    }
    *removed = n;
    return rc;
}
