/*
 * wal/log.c — segment files, group-commit appends, recovery and pruning (see log.h).
 *
 * Recovery order: list the segments, sort them by first LSN, leave out those a restart made
 * obsolete (the segments before the newest one whose header has WAL_SEGMENT_RESTART), and scan
 * each with the decision table of wal/scan.h. Between segments the header of the next one must
 * continue the chain exactly (first_lsn, prev_slot, prev_crc); anything else is a gap and fails
 * closed. Only the newest segment may end in a torn write, and only the newest may be a
 * frameless file whose creation a crash interrupted (removed, since it holds nothing).
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
    if (o->index_frames == 0)
        o->index_frames = WAL_INDEX_FRAMES_DEFAULT;
    ADB_ASSERT(o->index_frames <= WAL_INDEX_FRAMES_MAX);
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
    struct wal_log *w; /* its offset ring records every frame scanned */
    u64 indexed_last;  /* the last LSN recorded (0: none) */
};

/* Records where frame lsn starts (in the segment that holds it); the frames recorded since
 * index_lo are consecutive. */
static void index_put(struct wal_log *w, u64 lsn, u64 offset)
{
    if (w->index == NULL)
        return;
    if (w->index_lo == 0)
        w->index_lo = lsn;
    w->index[lsn % w->opt.index_frames] = offset;
}

static int replay_one(void *ctx, const struct wal_frame *f, const struct sm_command *cmd, u64 offset)
{
    struct replay_ctx *r = ctx;
    if (r->w->index != NULL) {
        if (r->indexed_last == 0 || f->lsn != r->indexed_last + 1)
            r->w->index_lo = 0; /* a new run: the first frame scanned, or after covered damage */
        index_put(r->w, f->lsn, offset);
        r->indexed_last = f->lsn;
    }
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

/* Segment i's header into *h; *valid false if the file is too short or it does not decode (a
 * torn creation, damage: the scan judges it if the segment is kept). */
static int read_header(struct wal_log *w, u32 i, struct wal_segment_header *h, bool *valid, char *why,
                       size_t why_len)
{
    char path[WAL_PATH_MAX];
    if (!seg_path(w, w->segments[i].first_lsn, path, sizeof(path))) {
        why_set(why, why_len, "%s: path too long", w->dir);
        return -ENAMETOOLONG;
    }
    u8 hb[WAL_SEGMENT_HEADER_SIZE];
    int fd, rc = w->io->ops->open(w->io, path, IO_READ, &fd);
    if (rc == 0) {
        rc = io_read_all(w->io, fd, hb, sizeof(hb), 0);
        w->io->ops->close(w->io, fd);
    }
    *valid = rc == 0 && wal_segment_header_decode(hb, sizeof(hb), h) == WAL_SEGMENT_OK;
    if (rc == -ENODATA)
        rc = 0;
    if (rc != 0)
        why_set(why, why_len, "%s: cannot read the segment header: %s", path, strerror(-rc));
    return rc;
}

/*
 * A restart (wal_log_restart) leaves the segments before its own until its unlinks are
 * durable: the newest segment whose header has WAL_SEGMENT_RESTART makes every one with a
 * smaller first LSN obsolete. They hold only LSNs the caller's snapshot covers, may not chain to
 * it at all, and are never read: a read-write open unlinks them, oldest first, and syncs the
 * directory; a read-only one leaves them out. Looked for from the newest back (a header that
 * does not decode is passed: if the segment is kept, the scan judges it); the oldest segment
 * has nothing before it, so its flag is not read. A read-only reader beside a writer is safe: a
 * restart's header is whole and synced before its name appears, and a header a roll is still
 * writing (segment_create names the file first) does not decode yet.
 */
static int drop_obsolete(struct wal_log *w, struct wal_open_report *rep, char *why, size_t why_len)
{
    u32 at = 0;
    for (u32 i = w->segment_count; i-- > 1 && at == 0;) {
        struct wal_segment_header h;
        bool valid;
        int rc = read_header(w, i, &h, &valid, why, why_len);
        if (rc != 0)
            return rc;
        if (valid && (h.flags & WAL_SEGMENT_RESTART) != 0)
            at = i;
    }
    if (at == 0)
        return 0;
    if (!w->opt.read_only) {
        for (u32 i = 0; i < at; i++) {
            char path[WAL_PATH_MAX];
            if (!seg_path(w, w->segments[i].first_lsn, path, sizeof(path))) {
                why_set(why, why_len, "%s: path too long", w->dir);
                return -ENAMETOOLONG;
            }
            int rc = w->io->ops->unlink(w->io, path);
            if (rc != 0) {
                why_set(why, why_len, "%s: cannot remove a segment obsolete since a restart: %s", path,
                    strerror(-rc));
                return rc;
            }
        }
        int rc = w->io->ops->sync_dir(w->io, w->dir);
        if (rc != 0) {
            why_set(why, why_len, "%s: cannot fsync directory after removing obsolete segments: %s", w->dir,
                strerror(-rc));
            return rc;
        }
    }
    memmove(w->segments, w->segments + at, (w->segment_count - at) * sizeof(w->segments[0]));
    w->segment_count -= at;
    rep->obsolete_segments_removed = at;
    return 0;
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
        /* Nor a header whose one fault is a flag this version does not know: a creation writes
         * known flags and a tear leaves a prefix of them, so it is a later version's segment,
         * whose meaning (as a restart's for the segments before it) must not be guessed. */
        if (last && w->segment_count > 1 && st->lost_seg == 0 && hs != WAL_SEGMENT_BAD_FLAGS &&
            torn_creation(st->buf, len)) {
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

static int open_log(struct wal_log *w, struct io *io, const char *dir,
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
    /* After sync_tail: a restart's rename, if a killed writer left it unsynced, is durable
     * before the segments it made obsolete are unlinked. */
    if ((rc = drop_obsolete(w, rep, why, why_len)) != 0)
        return rc;
    if (!w->opt.read_only) { /* wal_log_read's, allocated once */
        w->index = malloc(sizeof(u64) * w->opt.index_frames);
        w->read_buf = malloc(WAL_READ_CHUNK);
        if (w->index == NULL || w->read_buf == NULL)
            return -ENOMEM;
    }
    struct open_state st = { .replay = { .fn = replay, .ctx = ctx, .from_lsn = from_lsn, .w = w },
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
    /* What a reader whose limit lies before every segment read finds: nothing, ending before
     * the first (the scan of the first segment read sets the whole chain state). */
    w->cur.next_lsn = w->segments[start].first_lsn;
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
    /* The ring holds a run of consecutive frames ending at the last one (a torn tail cut after
     * it: those offsets are past the end and never looked up). */
    if (w->index_lo != 0 && (st.replay.indexed_last < rep->last_lsn || w->index_lo > rep->last_lsn))
        w->index_lo = 0;
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

int wal_log_open(struct wal_log *w, struct io *io, const char *dir,
                 const struct wal_log_options *opt, u64 from_lsn, wal_replay_fn replay,
                 void *ctx, struct wal_open_report *rep, char *why, size_t why_len)
{
    int rc = open_log(w, io, dir, opt, from_lsn, replay, ctx, rep, why, why_len);
    if (rc != 0) {
        free(w->index);
        free(w->read_buf);
        free(w->batch);
        w->index = NULL;
        w->read_buf = NULL;
        w->batch = NULL;
    }
    return rc;
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
    free(w->index);
    w->index = NULL;
    w->index_lo = 0;
    free(w->read_buf);
    w->read_buf = NULL;
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

/* Makes room at the batch's end for the next frame of `size` bytes: rolls to the next segment
 * when it does not fit, commits first when it would pass the sync window, writes the batch when
 * it is full. What both appends share. */
static int make_room(struct wal_log *w, u32 size)
{
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
    return 0;
}

/* The frame f, n bytes, now at the batch's end: the chain and the ring move past it. */
static void appended(struct wal_log *w, const struct wal_frame *f, u32 n)
{
    index_put(w, f->lsn, w->batch_offset + w->batch_used);
    w->batch_used += n;
    w->last_frame_len = n;
    w->write_offset = w->batch_offset + w->batch_used;
    w->cur.next_lsn = f->lsn + 1;
    w->cur.last_slot = f->request_slot;
    w->cur.prev_crc = f->crc;
}

int wal_log_append(struct wal_log *w, u64 request_slot, u64 view, const struct sm_command *cmd,
                   u64 *lsn_out)
{
    if (w->halted)
        return -EIO;
    ADB_ASSERT(w->fd >= 0);
    ADB_ASSERT(request_slot >= w->cur.last_slot);
    u32 size = wal_frame_size(wal_cmd_size(cmd));
    int rc = make_room(w, size);
    if (rc != 0)
        return rc;
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
    appended(w, &f, n);
    *lsn_out = f.lsn;
    return 0;
}

int wal_log_append_frame(struct wal_log *w, const u8 *frame, u32 len)
{
    if (w->halted)
        return -EIO;
    ADB_ASSERT(w->fd >= 0);
    struct wal_frame f;
    struct sm_command cmd;
    /* What the scan of recovery would check of it (wal/scan.h): anything else would fail the
     * next open closed. */
    if (wal_frame_decode_exact(frame, len, &f) != WAL_FRAME_OK || f.lsn != w->cur.next_lsn ||
        f.prev_crc != w->cur.prev_crc || f.request_slot < w->cur.last_slot ||
        wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd) != WAL_CMD_OK)
        return -EINVAL;
    int rc = make_room(w, len);
    if (rc != 0)
        return rc;
    memcpy(w->batch + w->batch_used, frame, len);
    appended(w, &f, len);
    return 0;
}

/* ---- reading frames back ---------------------------------------------------------------- */

/* The segment that holds lsn (>= the oldest segment's first LSN): the newest starting at or
 * before it. */
static u32 segment_of(const struct wal_log *w, u64 lsn)
{
    u32 lo = 0, hi = w->segment_count; /* segments[lo].first_lsn <= lsn < segments[hi].first_lsn */
    while (hi - lo > 1) {
        u32 mid = lo + (hi - lo) / 2;
        if (w->segments[mid].first_lsn <= lsn)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static bool is_active(const struct wal_log *w, u32 seg)
{
    return seg + 1 == w->segment_count;
}

/* A descriptor to read segment seg: the active one's, or an older one opened read-only (closed
 * by seg_release). */
static int seg_acquire(struct wal_log *w, u32 seg, int *fd)
{
    if (is_active(w, seg)) {
        *fd = w->fd;
        return 0;
    }
    char path[WAL_PATH_MAX];
    if (!seg_path(w, w->segments[seg].first_lsn, path, sizeof(path)))
        return -ENAMETOOLONG;
    return w->io->ops->open(w->io, path, IO_READ, fd);
}

static void seg_release(struct wal_log *w, u32 seg, int fd)
{
    if (!is_active(w, seg))
        w->io->ops->close(w->io, fd);
}

/* Up to len bytes of segment seg (open as fd) at off, as the WAL holds them: in the active
 * segment, the bytes from batch_offset on are the batch's. *got (OUT) is short where what the
 * WAL holds ends (the file, or the batch). */
static int seg_fetch(struct wal_log *w, u32 seg, int fd, u64 off, u8 *buf, u32 len, u32 *got)
{
    *got = 0;
    u64 end = UINT64_MAX;
    if (is_active(w, seg)) {
        if (off >= w->batch_offset) {
            u64 held = w->batch_offset + w->batch_used;
            u64 n = off >= held ? 0 : held - off < len ? held - off : len;
            memcpy(buf, w->batch + (off - w->batch_offset), n);
            *got = (u32)n;
            return 0;
        }
        end = w->batch_offset;
    }
    u32 want = end - off < len ? (u32)(end - off) : len;
    while (*got < want) {
        size_t done;
        int rc = w->io->ops->pread(w->io, fd, buf + *got, want - *got, off + *got, &done);
        if (rc != 0)
            return rc;
        if (done == 0)
            break;
        *got += (u32)done;
    }
    return 0;
}

/* Where frame lsn starts in segment seg, walking its frames from the header, WAL_READ_CHUNK at
 * a time: each frame before it must decode with the next LSN, else -EUCLEAN (lengths after
 * damage cannot be trusted: the frame cannot be found intact). */
static int seg_walk(struct wal_log *w, u32 seg, int fd, u64 lsn, u64 *off_out)
{
    u64 off = WAL_SEGMENT_HEADER_SIZE, at = 0;
    u32 have = 0;
    for (u64 n = w->segments[seg].first_lsn; n < lsn; n++) {
        if (off + WAL_FRAME_MAX > at + have) { /* the frame may run past what is in the buffer */
            int rc = seg_fetch(w, seg, fd, off, w->read_buf, WAL_READ_CHUNK, &have);
            if (rc != 0)
                return rc;
            at = off;
        }
        struct wal_frame f;
        u32 flen;
        if (wal_frame_decode(w->read_buf + (off - at), have - (off - at), &f, &flen) != WAL_FRAME_OK || f.lsn != n)
            return -EUCLEAN;
        off += flen;
    }
    *off_out = off;
    return 0;
}

/* Where frame lsn (held by segment seg, open as fd) starts: the ring, else the walk. */
static int frame_locate(struct wal_log *w, u64 lsn, u32 seg, int fd, u64 *off)
{
    if (w->index_lo != 0 && lsn >= w->index_lo && lsn < w->cur.next_lsn &&
        w->cur.next_lsn - lsn <= w->opt.index_frames) {
        *off = w->index[lsn % w->opt.index_frames];
        return 0;
    }
    return seg_walk(w, seg, fd, lsn, off);
}

/* Frame lsn into out (WAL_FRAME_MAX bytes), decoded into *f, *len bytes, found at *off. */
static int frame_get(struct wal_log *w, u64 lsn, u32 seg, int fd, u8 *out, u32 *len, struct wal_frame *f,
                     u64 *off)
{
    int rc = frame_locate(w, lsn, seg, fd, off);
    u32 got = 0;
    if (rc == 0)
        rc = seg_fetch(w, seg, fd, *off, out, WAL_FRAME_MAX, &got);
    if (rc != 0)
        return rc;
    if (wal_frame_decode(out, got, f, len) != WAL_FRAME_OK || f->lsn != lsn)
        return -EUCLEAN;
    return 0;
}

int wal_log_read(struct wal_log *w, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    *len = 0;
    if (w->halted)
        return -EIO;
    if (w->index == NULL || w->fd < 0)
        return -EBADF;
    if (lsn == 0 || lsn < w->segments[0].first_lsn || lsn >= w->cur.next_lsn)
        return -ENOENT;
    u32 seg = segment_of(w, lsn);
    int fd, rc = seg_acquire(w, seg, &fd);
    if (rc != 0)
        return rc;
    u8 frame[WAL_FRAME_MAX];
    struct wal_frame f;
    u32 flen;
    u64 off;
    rc = frame_get(w, lsn, seg, fd, frame, &flen, &f, &off);
    seg_release(w, seg, fd);
    if (rc != 0)
        return rc;
    *len = flen;
    if (flen > cap)
        return -ENOBUFS;
    memcpy(buf, frame, flen);
    if (wal_frame_decode_exact(buf, flen, &f) != WAL_FRAME_OK || f.lsn != lsn)
        return -EUCLEAN;
    return 0;
}

/* ---- truncation ------------------------------------------------------------------------- */

/*
 * Truncation of written frames (log.h, NOTES): segment seg (open as src) keeps its header and
 * its bytes before off, rewritten into the spare file; newer segments are unlinked, newest
 * first; the copy is renamed over the segment; one directory sync makes it all durable. Nothing
 * the old log can be read from changes before that sync. The segment becomes the active one.
 */
static int rewrite_segment(struct wal_log *w, u32 seg, int src, u64 off)
{
    struct io *io = w->io;
    char tmp[WAL_PATH_MAX], path[WAL_PATH_MAX];
    u8 hb[WAL_SEGMENT_HEADER_SIZE];
    struct wal_segment_header h;
    u32 got = 0;
    int fd = -1, rc = 0;
    if (!spare_path(w, tmp, sizeof(tmp)) || !seg_path(w, w->segments[seg].first_lsn, path, sizeof(path)))
        rc = -ENAMETOOLONG;
    if (rc == 0)
        rc = seg_fetch(w, seg, src, 0, hb, sizeof(hb), &got);
    if (rc == 0 && (got != sizeof(hb) || wal_segment_header_decode(hb, sizeof(hb), &h) != WAL_SEGMENT_OK))
        rc = -EUCLEAN;
    /* The copy goes into the prepared spare when it has this capacity (zeros, synced), else
     * into a new file of that name (open removes either if a crash leaves it). */
    bool fresh = rc != 0 || !(w->spare_ready && w->spare_written == h.capacity);
    if (rc == 0 && fresh) {
        if (w->spare_fd >= 0)
            io->ops->close(io, w->spare_fd);
        w->spare_fd = -1;
        (void)io->ops->unlink(io, tmp);
        rc = io->ops->open(io, tmp, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
    } else if (rc == 0) {
        fd = w->spare_fd;
        w->spare_fd = -1;
    }
    if (rc == 0) {
        w->spare_ready = false;
        w->spare_written = 0;
        rc = io_write_all(io, fd, hb, sizeof(hb), 0);
    }
    for (u64 at = WAL_SEGMENT_HEADER_SIZE; rc == 0 && at < off; at += got) {
        u32 n = off - at < WAL_READ_CHUNK ? (u32)(off - at) : WAL_READ_CHUNK;
        rc = seg_fetch(w, seg, src, at, w->read_buf, n, &got);
        if (rc == 0 && got != n)
            rc = -EUCLEAN; /* the segment ends before frames the WAL counts */
        if (rc == 0)
            rc = io_write_all(io, fd, w->read_buf, n, at);
    }
    if (rc == 0 && fresh)
        rc = io->ops->allocate(io, fd, h.capacity);
    if (rc == 0)
        rc = fresh ? io->ops->fsync(io, fd) : io->ops->datasync(io, fd);
    seg_release(w, seg, src);
    if (rc != 0) {
        if (fd >= 0) {
            io->ops->close(io, fd);
            (void)io->ops->unlink(io, tmp);
        }
        /* Nothing of the log changed: a full disk only refuses. */
        return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL truncate: copy of the kept frames");
    }
    for (u32 i = w->segment_count - 1; rc == 0 && i > seg; i--) {
        char newer[WAL_PATH_MAX];
        rc = seg_path(w, w->segments[i].first_lsn, newer, sizeof(newer)) ? io->ops->unlink(io, newer) : -ENAMETOOLONG;
    }
    if (rc == 0)
        rc = io->ops->rename(io, tmp, path);
    if (rc == 0)
        rc = io->ops->sync_dir(io, w->dir);
    if (rc != 0) {
        io->ops->close(io, fd);
        return halt(w, rc, "WAL truncate: switch to the copy");
    }
    io->ops->close(io, w->fd);
    w->fd = fd;
    w->segment_count = seg + 1;
    w->segment_capacity = h.capacity;
    w->segment_length = h.capacity;
    w->batch_used = 0;
    w->batch_offset = off;
    w->synced_offset = off;
    w->segment_window = h.sync_window != 0 && h.sync_window < w->opt.sync_window_bytes ? h.sync_window
                                                                                      : w->opt.sync_window_bytes;
    return 0;
}

int wal_log_truncate(struct wal_log *w, u64 after_lsn)
{
    if (w->halted)
        return -EIO;
    ADB_ASSERT(w->fd >= 0 && w->index != NULL);
    ADB_ASSERT(after_lsn + 1 >= w->segments[0].first_lsn && after_lsn < w->cur.next_lsn);
    const u64 cut = after_lsn + 1;
    if (cut == w->cur.next_lsn)
        return 0;
    u32 seg = segment_of(w, cut);
    int fd, rc = seg_acquire(w, seg, &fd);
    if (rc != 0)
        return halt(w, rc, "WAL truncate: open segment");
    /* Where the first removed frame starts, and the chain after the last kept one: that frame,
     * or the segment header when the cut is at the segment's start. */
    u64 off;
    struct wal_cursor cur = { .next_lsn = cut };
    rc = frame_locate(w, cut, seg, fd, &off);
    if (rc == 0 && cut > w->segments[seg].first_lsn) {
        u8 frame[WAL_FRAME_MAX];
        struct wal_frame f;
        u32 flen;
        u64 at;
        rc = frame_get(w, after_lsn, seg, fd, frame, &flen, &f, &at);
        if (rc == 0 && at + flen != off)
            rc = -EUCLEAN;
        if (rc == 0) {
            cur.last_slot = f.request_slot;
            cur.prev_crc = f.crc;
        }
    } else if (rc == 0) {
        u8 hb[WAL_SEGMENT_HEADER_SIZE];
        struct wal_segment_header h;
        u32 got;
        rc = seg_fetch(w, seg, fd, 0, hb, sizeof(hb), &got);
        if (rc == 0 && (got != sizeof(hb) || wal_segment_header_decode(hb, sizeof(hb), &h) != WAL_SEGMENT_OK ||
                        h.first_lsn != cut))
            rc = -EUCLEAN;
        if (rc == 0) {
            cur.last_slot = h.prev_slot;
            cur.prev_crc = h.prev_crc;
        }
    }
    if (rc != 0) {
        seg_release(w, seg, fd);
        return halt(w, rc, "WAL truncate: find the cut");
    }
    if (is_active(w, seg) && off >= w->batch_offset) {
        w->batch_used = (u32)(off - w->batch_offset); /* only frames of the batch go */
    } else {
        rc = rewrite_segment(w, seg, fd, off); /* releases fd */
        if (rc != 0)
            return rc;
    }
    w->write_offset = w->batch_offset + w->batch_used;
    w->last_frame_len = 0;
    w->cur = cur;
    if (w->durable_lsn > after_lsn)
        w->durable_lsn = after_lsn;
    if (w->index_lo > after_lsn)
        w->index_lo = 0;
    return 0;
}

/* ---- restarting after a snapshot from a peer ---------------------------------------------- */

/*
 * The restart segment h (log.h, NOTES), prepared under the spare name: the ready spare gets the
 * header (its zeros are synced already), else a new file gets the header and the capacity and is
 * fsynced. It is no segment yet: nothing of the log has changed. *fd_out is open on it.
 */
static int restart_prepare(struct wal_log *w, const struct wal_segment_header *h, const char *tmp, int *fd_out)
{
    struct io *io = w->io;
    u8 header[WAL_SEGMENT_HEADER_SIZE];
    wal_segment_header_encode(header, h);
    bool fresh = !(w->spare_ready && w->spare_written == h->capacity);
    int fd = -1, rc = 0;
    if (fresh) {
        if (w->spare_fd >= 0)
            io->ops->close(io, w->spare_fd);
        w->spare_fd = -1;
        (void)io->ops->unlink(io, tmp); /* an unfinished spare: this file replaces it */
        rc = io->ops->open(io, tmp, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
        if (rc != 0)
            fd = -1;
    } else {
        fd = w->spare_fd;
        w->spare_fd = -1;
    }
    w->spare_ready = false;
    w->spare_written = 0;
    if (rc == 0)
        rc = io_write_all(io, fd, header, sizeof(header), 0);
    if (rc == 0 && fresh)
        rc = io->ops->allocate(io, fd, h->capacity);
    if (rc == 0)
        rc = fresh ? io->ops->fsync(io, fd) : io->ops->datasync(io, fd);
    if (rc != 0) {
        if (fd >= 0) {
            io->ops->close(io, fd);
            (void)io->ops->unlink(io, tmp); /* open would remove it; a full disk wants the room now */
        }
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int wal_log_restart(struct wal_log *w, u64 after_lsn, u64 prev_slot, u32 prev_crc)
{
    if (w->halted)
        return -EIO;
    ADB_ASSERT(w->fd >= 0 && w->index != NULL);
    /* Every segment held starts at or before next_lsn <= after_lsn + 1: the rename below can
     * replace only an empty one, and every other one is older. */
    ADB_ASSERT(after_lsn >= w->cur.next_lsn - 1 && after_lsn < UINT64_MAX);
    struct io *io = w->io;
    struct wal_segment_header h = { .first_lsn = after_lsn + 1, .prev_slot = prev_slot, .prev_crc = prev_crc,
                                    .flags = WAL_SEGMENT_RESTART, .capacity = w->opt.segment_bytes,
                                    .sync_window = w->opt.sync_window_bytes };
    char tmp[WAL_PATH_MAX], path[WAL_PATH_MAX];
    if (!spare_path(w, tmp, sizeof(tmp)) || !seg_path(w, h.first_lsn, path, sizeof(path)))
        return halt(w, -ENAMETOOLONG, "WAL restart: path");
    int fd, rc = restart_prepare(w, &h, tmp, &fd);
    if (rc != 0) /* nothing of the log changed: a full disk only refuses */
        return wal_log_no_space(rc) ? rc : halt(w, rc, "WAL restart: prepare the segment");
    /* The commit point: once this directory sync is done, a reopen finds the restarted log. */
    rc = io->ops->rename(io, tmp, path);
    if (rc == 0)
        rc = io->ops->sync_dir(io, w->dir);
    if (rc != 0) {
        io->ops->close(io, fd);
        return halt(w, rc, "WAL restart: switch to the new segment");
    }
    /* Committed: the older segments are obsolete whatever happens to them now (open drops
     * any left), so a failure here halts with the log already restarted. */
    for (u32 i = 0; rc == 0 && i < w->segment_count; i++) {
        char older[WAL_PATH_MAX];
        if (w->segments[i].first_lsn == h.first_lsn)
            continue; /* the empty segment the rename replaced */
        rc = seg_path(w, w->segments[i].first_lsn, older, sizeof(older)) ? io->ops->unlink(io, older) : -ENAMETOOLONG;
    }
    if (rc == 0)
        rc = io->ops->sync_dir(io, w->dir);
    io->ops->close(io, w->fd);
    w->fd = fd;
    w->segments[0].first_lsn = h.first_lsn;
    w->segment_count = 1;
    w->segment_capacity = h.capacity;
    w->segment_length = h.capacity;
    w->segment_window = h.sync_window;
    w->write_offset = WAL_SEGMENT_HEADER_SIZE;
    w->batch_offset = WAL_SEGMENT_HEADER_SIZE;
    w->synced_offset = WAL_SEGMENT_HEADER_SIZE;
    w->batch_used = 0; /* at or below after_lsn: obsolete with the rest */
    w->last_frame_len = 0;
    w->cur = (struct wal_cursor){ .next_lsn = h.first_lsn, .last_slot = prev_slot, .prev_crc = prev_crc };
    w->durable_lsn = after_lsn;
    w->index_lo = 0; /* no frame held: reads up to after_lsn are -ENOENT */
    if (rc != 0)
        return halt(w, rc, "WAL restart: remove the obsolete segments");
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
