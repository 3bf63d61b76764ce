/*
 * tests/test_wal.c — WAL segments, group commit and the recovery decision table, on the
 * fault-injecting file system (tests/io_fault.h).
 *
 * What must hold, whatever the fault:
 *   - every committed (synced) frame is recovered, exactly once and in order;
 *   - a torn tail is cut at the first torn byte and nothing before it is lost;
 *   - damage anywhere else fails closed with the file and offset, and no byte is rewritten;
 *   - after a failed write or sync the log refuses all further work.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "tests/check_main.h"
#include "tests/io_fault.h"
#include "wal/command.h"
#include "wal/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "/data"
#define SMALL_SEGMENT 4096
#define MAX_ENTRIES 65536 /* a group commit of several MB */

/* What the test appended, by LSN (1-based), so recovery can be compared entry by entry. */
struct expect {
    struct sm_command cmd[MAX_ENTRIES + 1];
    u64 slot[MAX_ENTRIES + 1];
    u64 count; /* last LSN appended */
};

static struct expect *ex;
static u64 rng_state;

static struct sm_command random_command(void)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    u64 r = splitmix_next(&rng_state);
    c.kind = (u8)(1 + r % 5);
    if (c.kind == SM_CMD_EXPIRE) {
        c.reservation_id = U128_MAKE(0, splitmix_next(&rng_state));
        c.deadline_slot = splitmix_next(&rng_state) % 1000;
        return c;
    }
    c.operation_id = U128_MAKE(splitmix_next(&rng_state), splitmix_next(&rng_state) | 1);
    c.client_id = splitmix_next(&rng_state) % 7;
    c.holder_id = splitmix_next(&rng_state) % 100;
    if (c.kind == SM_CMD_CREATE_RESOURCE || c.kind == SM_CMD_RESERVE)
        c.resource_id = splitmix_next(&rng_state) % 50;
    else
        c.reservation_id = splitmix_next(&rng_state) % 50;
    if (c.kind != SM_CMD_RESERVE && c.kind != SM_CMD_CREATE_RESOURCE)
        return c;
    if (c.kind == SM_CMD_RESERVE)
        c.ttl_slots = 1 + splitmix_next(&rng_state) % 10;
    else
        c.holder_id = 0;
    return c;
}

/* Appends n random entries (slots non-decreasing); returns the rc of the first failure. */
static int append_n(struct wal_log *w, u64 n)
{
    for (u64 i = 0; i < n; i++) {
        ck_assert_uint_lt(ex->count, MAX_ENTRIES);
        struct sm_command c = random_command();
        u64 slot = ex->count == 0 ? 1 : ex->slot[ex->count] + splitmix_next(&rng_state) % 3;
        u64 lsn;
        int rc = wal_log_append(w, slot, 0, &c, &lsn);
        if (rc != 0)
            return rc;
        ck_assert_uint_eq(lsn, ex->count + 1);
        ex->count = lsn;
        ex->cmd[lsn] = c;
        ex->slot[lsn] = slot;
    }
    return 0;
}

struct seen {
    u64 frames;
    u64 last_lsn;
};

static int check_frame(void *ctx, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct seen *s = ctx;
    ck_assert_uint_le(f->lsn, ex->count);
    ck_assert_uint_eq(f->request_slot, ex->slot[f->lsn]);
    ck_assert(memcmp(cmd, &ex->cmd[f->lsn], sizeof(*cmd)) == 0);
    if (s->frames > 0)
        ck_assert_uint_eq(f->lsn, s->last_lsn + 1);
    s->frames++;
    s->last_lsn = f->lsn;
    return 0;
}

static struct io_fault *fs;
static struct io *io;
static u64 fs_seed = 7; /* drives io_fault's choices (tears) */
static struct wal_log_options small = { .segment_bytes = SMALL_SEGMENT, .batch_bytes = 1024 };

static void setup(void)
{
    ex = calloc(1, sizeof(*ex));
    rng_state = 42;
    fs = io_fault_create(fs_seed);
    io = io_fault_io(fs);
    ck_assert_int_eq(io->ops->mkdir(io, DIR), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
    char why[256];
    ck_assert_msg(wal_log_format(io, DIR, &small, why, sizeof(why)) == 0, "%s", why);
}

static void teardown(void)
{
    io_fault_destroy(fs);
    free(ex);
}

/* Opens the log, replaying from LSN 1 and checking every frame; returns the rc. */
static int reopen(struct wal_log *w, struct wal_open_report *rep, struct seen *s, char *why, size_t n)
{
    memset(s, 0, sizeof(*s));
    return wal_log_open(w, io, DIR, &small, 1, check_frame, s, rep, why, n);
}

static void open_ok(struct wal_log *w, struct wal_open_report *rep, struct seen *s)
{
    char why[512] = "";
    int rc = reopen(w, rep, s, why, sizeof(why));
    ck_assert_msg(rc == 0, "open failed: %d %s", rc, why);
}

static void seg_file(char *out, size_t n, u64 first_lsn)
{
    char name[64];
    ck_assert(wal_segment_name(name, sizeof(name), first_lsn));
    ck_assert(io_path(out, n, DIR, name));
}

/* Copy of a file's current bytes (to prove a failed recovery rewrote nothing). */
static u8 *snapshot_file(const char *path, u64 *len)
{
    const u8 *data;
    ck_assert(io_fault_contents(fs, path, &data, len));
    u8 *copy = malloc(*len + 1);
    memcpy(copy, data, *len);
    return copy;
}

static void assert_unchanged(const char *path, const u8 *before, u64 len)
{
    const u8 *now;
    u64 now_len;
    ck_assert(io_fault_contents(fs, path, &now, &now_len));
    ck_assert_uint_eq(now_len, len);
    ck_assert(memcmp(now, before, len) == 0);
}

/* ---- basics ----------------------------------------------------------------------------- */

START_TEST(test_format_open_append_reopen)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(rep.frames, 0);
    ck_assert_uint_eq(rep.first_lsn, 1);
    ck_assert_uint_eq(rep.last_lsn, 0);
    for (int batch = 0; batch < 20; batch++) {
        ck_assert_int_eq(append_n(&w, 1 + (u64)batch % 7), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        ck_assert_uint_eq(w.durable_lsn, ex->count);
    }
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, ex->count);
    ck_assert_uint_eq(rep.last_lsn, ex->count);
    ck_assert(!rep.torn);
    ck_assert_uint_gt(rep.segments, 2); /* 4 KiB segments: the appends rolled over */
    /* Appending continues the chain after recovery. */
    ck_assert_int_eq(append_n(&w, 5), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, ex->count);
    wal_log_close(&w);
}
END_TEST

START_TEST(test_format_refuses_existing_and_open_refuses_missing)
{
    char why[256];
    ck_assert_int_eq(wal_log_format(io, DIR, &small, why, sizeof(why)), -EEXIST);
    ck_assert_int_eq(io->ops->mkdir(io, "/empty"), 0);
    struct wal_log w;
    struct wal_open_report rep;
    ck_assert_int_eq(wal_log_open(&w, io, "/empty", &small, 1, NULL, NULL, &rep, why, sizeof(why)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, "never formatted"));
}
END_TEST

START_TEST(test_group_commit_one_sync)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    struct wal_log_options big = { .segment_bytes = 1 << 20 };
    char why[256];
    /* a fresh dir with big segments so no rollover interferes */
    ck_assert_int_eq(io->ops->mkdir(io, "/g"), 0);
    ck_assert_int_eq(wal_log_format(io, "/g", &big, why, sizeof(why)), 0);
    ck_assert_int_eq(wal_log_open(&w, io, "/g", &big, 1, NULL, NULL, &rep, why, sizeof(why)), 0);
    u64 before = io_fault_mutations(fs);
    ck_assert_int_eq(append_n(&w, 1000), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    /* 1000 frames of <= 136 bytes in a 1 MiB batch: one pwrite and one fdatasync. */
    ck_assert_uint_eq(io_fault_mutations(fs) - before, 2);
    ck_assert_uint_eq(w.durable_lsn, 1000);
    wal_log_close(&w);
    (void)s;
}
END_TEST

START_TEST(test_short_writes_are_completed)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    for (int i = 1; i <= 40; i++) {
        io_fault_short_write(fs, 1);
        ck_assert_int_eq(append_n(&w, 3), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, ex->count);
    wal_log_close(&w);
}
END_TEST

/* ---- torn tail -------------------------------------------------------------------------- */

/* Commits `base` frames, then writes one more frame whose sync never happens. */
static u64 write_unsynced_frame(struct wal_log *w, u64 base, char *path, size_t n, u64 *at)
{
    ck_assert_int_eq(append_n(w, base), 0);
    ck_assert_int_eq(wal_log_commit(w), 0);
    *at = w->write_offset;
    u64 seg = w->segments[w->segment_count - 1].first_lsn;
    ck_assert_int_eq(append_n(w, 1), 0);
    seg_file(path, n, seg);
    io_fault_crash_after(fs, 1); /* the pwrite happens, the fdatasync does not */
    ck_assert_int_eq(wal_log_commit(w), -EIO);
    ck_assert(w->halted);
    return io_fault_unsynced_bytes(fs, path);
}

START_TEST(test_torn_tail_at_every_byte)
{
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    /* The frame written last: every prefix of it. */
    u64 frame_bytes = 0;
    for (u64 keep = 0;; keep++) {
        teardown();
        setup();
        struct wal_log w;
        open_ok(&w, &rep, &s);
        char path[WAL_PATH_MAX];
        u64 at;
        frame_bytes = write_unsynced_frame(&w, 6, path, sizeof(path), &at);
        ck_assert_uint_gt(frame_bytes, WAL_FRAME_HEADER_SIZE);
        /* Trailing zero bytes of the frame (small ids) are already on disk: the region is
         * preallocated with zeros. Keeping up to the last non-zero byte is keeping it whole. */
        const u8 *data;
        u64 len;
        ck_assert(io_fault_contents(fs, path, &data, &len));
        u64 significant = frame_bytes;
        while (significant > 0 && data[at + significant - 1] == 0)
            significant--;
        wal_log_close(&w);
        if (keep > frame_bytes)
            break;
        io_fault_power_loss_tear_file(fs, path, keep);
        int rc = reopen(&w, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "keep %llu: %s", (unsigned long long)keep, why);
        bool whole = keep >= significant;
        ck_assert_msg(s.frames == (whole ? 7u : 6u), "keep %llu of %llu (significant %llu): %llu frames", (unsigned long long)keep, (unsigned long long)frame_bytes, (unsigned long long)significant, (unsigned long long)s.frames);
        ck_assert(rep.torn == (keep > 0 && !whole));
        if (rep.torn)
            ck_assert_uint_le(rep.torn_bytes, keep); /* the cut write, up to its last non-zero byte */
        /* The log continues at the cut: the next frame gets the next LSN and survives. */
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 2), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        open_ok(&w, &rep, &s);
        ck_assert_uint_eq(s.frames, ex->count);
        ck_assert(!rep.torn);
        wal_log_close(&w);
    }
}
END_TEST

START_TEST(test_read_only_open_repairs_nothing)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    char path[WAL_PATH_MAX], why[512];
    u64 at, n = write_unsynced_frame(&w, 3, path, sizeof(path), &at);
    wal_log_close(&w);
    io_fault_power_loss_tear_file(fs, path, n / 2);
    u64 len;
    u8 *before = snapshot_file(path, &len);
    struct wal_log_options ro = small;
    ro.read_only = true;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &ro, 1, check_frame, &s, &rep, why, sizeof(why)), 0);
    ck_assert(rep.torn);
    ck_assert_uint_eq(s.frames, 3);
    assert_unchanged(path, before, len);
    free(before);
}
END_TEST

/* A reader that only needs LSNs up to a durable point stops there: frames after it (which a
 * writer may be appending, or garbage) are never read, across segments. */
START_TEST(test_read_only_stop_after_lsn)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 200), 0); /* several 4 KiB segments */
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_gt(w.segment_count, 2);
    u64 last_first = w.segments[w.segment_count - 1].first_lsn;
    wal_log_close(&w);
    char path[WAL_PATH_MAX], why[512];
    seg_file(path, sizeof(path), last_first);
    io_fault_flip_bit(fs, path, 64 + 10, 0); /* the newest segment's first frame is damaged */
    struct wal_log_options ro = small;
    ro.read_only = true;
    ro.synced_lsn = ex->count; /* so the damage is corruption, not a torn tail */
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &ro, 1, check_frame, &s, &rep, why, sizeof(why)), -EUCLEAN);
    ro.stop_after_lsn = last_first - 1; /* everything before the damaged segment */
    memset(&s, 0, sizeof(s));
    int rc = wal_log_open(&w, io, DIR, &ro, 1, check_frame, &s, &rep, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(s.frames, last_first - 1);
    ck_assert_uint_eq(s.last_lsn, last_first - 1);
    ro.stop_after_lsn = 17; /* mid-segment */
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &ro, 1, check_frame, &s, &rep, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.last_lsn, 17);
}
END_TEST

/* Offset of the nth frame (1-based) of the segment at path, which holds at least n frames. */
static u64 frame_offset(const char *path, u64 n)
{
    const u8 *data;
    u64 len, off = WAL_SEGMENT_HEADER_SIZE;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    for (u64 i = 1; i < n; i++) {
        struct wal_frame f;
        u32 fl;
        ck_assert_int_eq(wal_frame_decode(data + off, len - off, &f, &fl), WAL_FRAME_OK);
        off += fl;
    }
    return off;
}

/*
 * The reader's limit is where it stops looking, not where it stops delivering: the writer may be
 * writing the frames after it right now, and a view of pages being copied can show anything
 * there: a damaged frame followed by valid ones, or data further than one frame reaches. None of
 * it is the reader's business (without the limit each of these views is corruption or a tear).
 */
START_TEST(test_read_only_stop_never_reads_past_the_limit)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    wal_log_close(&w);
    char path[WAL_PATH_MAX], why[512];
    seg_file(path, sizeof(path), 1);
    u64 len, at = frame_offset(path, 18);
    u8 *written = snapshot_file(path, &len);
    u8 *view = malloc(len);
    for (int kind = 0; kind < 3; kind++) {
        memcpy(view, written, len);
        if (kind == 0) /* frame 18 half copied, 19 and 20 already there */
            memset(view + at + 20, 0, 30);
        else if (kind == 1) /* frame 18 garbage, and data beyond any one frame */
            memset(view + at, 0xEE, 2 * WAL_FRAME_MAX);
        else /* only frame 18's first bytes so far */
            memset(view + at + 7, 0, len - at - 7);
        ck_assert_int_eq(io_fault_put_file(fs, path, view, len), 0);
        struct wal_log_options ro = small;
        ro.read_only = true;
        ro.stop_after_lsn = 17;
        memset(&s, 0, sizeof(s));
        int rc = wal_log_open(&w, io, DIR, &ro, 1, check_frame, &s, &rep, why, sizeof(why));
        ck_assert_msg(rc == 0, "view %d: %s", kind, why);
        ck_assert_uint_eq(s.frames, 17);
        ck_assert_uint_eq(rep.last_lsn, 17);
        ck_assert(!rep.torn);
        wal_log_close(&w);
    }
    free(view);
    free(written);
}
END_TEST

/* ---- a torn group commit ------------------------------------------------------------------ */

#define GROUP_DIR "/g"

/* Appends until at least `bytes` more are in the segment or the batch; the LSN of the last. */
static u64 append_bytes(struct wal_log *w, u64 bytes)
{
    u64 start = w->batch_offset + w->batch_used;
    while (w->batch_offset + w->batch_used < start + bytes)
        ck_assert_int_eq(append_n(w, 1), 0);
    return ex->count;
}

static int open_group(struct wal_log *w, const struct wal_log_options *o, struct wal_open_report *rep,
                      struct seen *s, char *why, size_t n)
{
    memset(s, 0, sizeof(*s));
    return wal_log_open(w, io, GROUP_DIR, o, 1, check_frame, s, rep, why, n);
}

/*
 * A group commit of several megabytes in several pwrites, cut by a power loss before its
 * fdatasync on a disk that writes pages back in any order: whichever pages survive, the log
 * opens (a torn tail, valid frames after the damage included), keeps every frame synced before,
 * and the frames it keeps are a prefix of what was appended. Then it appends, and that survives.
 */
START_TEST(test_torn_group_commit_pages_out_of_order)
{
    const struct wal_log_options group = { .segment_bytes = 8 << 20 }; /* 1 MiB batches */
    u32 torn = 0, cut_valid_frames = 0;
    for (u64 seed = 1; seed <= 24; seed++) {
        teardown();
        fs_seed = seed;
        setup();
        char why[512];
        ck_assert_int_eq(io->ops->mkdir(io, GROUP_DIR), 0);
        ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
        ck_assert_int_eq(wal_log_format(io, GROUP_DIR, &group, why, sizeof(why)), 0);
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        ck_assert_int_eq(open_group(&w, &group, &rep, &s, why, sizeof(why)), 0);
        append_bytes(&w, 300 << 10);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        u64 acked = w.durable_lsn;
        append_bytes(&w, (7u << 20) / 2); /* three full batches written, a fourth pending */
        io_fault_crash_after(fs, 1);      /* its pwrite happens, the fdatasync does not */
        ck_assert_int_eq(wal_log_commit(&w), -EIO);
        ck_assert_uint_eq(w.durable_lsn, acked);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_TEAR_PAGES);

        int rc = open_group(&w, &group, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "seed %llu: %s", (unsigned long long)seed, why);
        ck_assert_uint_ge(s.frames, acked);
        ck_assert_uint_le(s.frames, ex->count);
        torn += rep.torn;
        cut_valid_frames += rep.torn && rep.torn_bytes > WAL_FRAME_MAX;
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 3), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        ck_assert_int_eq(open_group(&w, &group, &rep, &s, why, sizeof(why)), 0);
        ck_assert_uint_eq(s.frames, ex->count);
        ck_assert(!rep.torn);
        wal_log_close(&w);
    }
    ck_assert_uint_gt(torn, 12);
    ck_assert_uint_gt(cut_valid_frames, 6);
    fs_seed = 7;
}
END_TEST

/* The active segment of the log w in dir. */
static void active_file(const struct wal_log *w, const char *dir, char *out, size_t n)
{
    char name[64];
    ck_assert(wal_segment_name(name, sizeof(name), w->segments[w->segment_count - 1].first_lsn));
    ck_assert(io_path(out, n, dir, name));
}

static u32 header_window(const char *path)
{
    const u8 *data;
    u64 len;
    struct wal_segment_header h;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    ck_assert_int_eq(wal_segment_header_decode(data, len, &h), WAL_SEGMENT_OK);
    return h.sync_window;
}

/* Appends n frames one by one; after each, what is unsynced (written or batched) fits in the
 * window. Returns how many times durable_lsn moved on its own (an intermediate sync). */
static u64 append_within_window(struct wal_log *w, const char *dir, u64 n, u32 window, u64 *most)
{
    u64 syncs = 0;
    for (u64 i = 0; i < n; i++) {
        u64 durable = w->durable_lsn;
        ck_assert_int_eq(append_n(w, 1), 0);
        syncs += w->durable_lsn != durable;
        char path[WAL_PATH_MAX];
        active_file(w, dir, path, sizeof(path));
        u64 unsynced = io_fault_unsynced_bytes(fs, path) + w->batch_used;
        ck_assert_uint_le(unsynced, window);
        if (unsynced > *most)
            *most = unsynced;
    }
    return syncs;
}

/* The writer keeps its promise to recovery: never more than the sync window unsynced in a
 * segment (an append that would pass it commits first, so durable_lsn moves), the window written
 * in each header it creates, and a segment whose header promises less is held to that. */
START_TEST(test_sync_window_bounds_what_is_unsynced)
{
    struct wal_log_options o = { .segment_bytes = 64 << 10, .batch_bytes = 4096, .sync_window_bytes = 16 << 10 };
    char why[512], path[WAL_PATH_MAX];
    ck_assert_int_eq(io->ops->mkdir(io, "/w"), 0);
    ck_assert_int_eq(wal_log_format(io, "/w", &o, why, sizeof(why)), 0);
    struct wal_log w;
    struct wal_open_report rep;
    ck_assert_int_eq(wal_log_open(&w, io, "/w", &o, 1, NULL, NULL, &rep, why, sizeof(why)), 0);
    active_file(&w, "/w", path, sizeof(path));
    ck_assert_uint_eq(header_window(path), 16 << 10);
    u64 most = 0;
    ck_assert_uint_ge(append_within_window(&w, "/w", 300, 16 << 10, &most), 1);
    ck_assert_uint_gt(most, 12 << 10);
    ck_assert_uint_lt(w.durable_lsn, ex->count); /* the rest waits for a commit, as always */
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    wal_log_close(&w);

    /* A wider option: the open segment still promises 16 KiB, the next one 64 KiB. */
    o.sync_window_bytes = 64 << 10;
    ck_assert_int_eq(wal_log_open(&w, io, "/w", &o, 1, NULL, NULL, &rep, why, sizeof(why)), 0);
    most = 0;
    while (w.segment_count == 1)
        append_within_window(&w, "/w", 1, 16 << 10, &most);
    active_file(&w, "/w", path, sizeof(path));
    ck_assert_uint_eq(header_window(path), 64 << 10);
    most = 0;
    append_within_window(&w, "/w", 400, 64 << 10, &most);
    ck_assert_uint_gt(most, 16 << 10);
    wal_log_close(&w);
}
END_TEST

/* wal_log_options.synced_lsn reaches the decision: damage in the last window of the log is a
 * torn tail (cut with the valid frames after it) only above what the caller knows is synced. A
 * segment written before windows keeps the rule it was written under. */
START_TEST(test_synced_lsn_decides_damage_in_the_last_window)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512], path[WAL_PATH_MAX];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    wal_log_close(&w);
    seg_file(path, sizeof(path), 1);
    ck_assert_int_eq(io_fault_flip_bit(fs, path, frame_offset(path, 15) + 20, 3), 0);

    struct wal_log_options o = small;
    o.read_only = true;
    const u64 hints[] = { 0, 14, 15, 20, 100 };
    for (size_t i = 0; i < ADB_ARRAY_LEN(hints); i++) {
        o.synced_lsn = hints[i];
        memset(&s, 0, sizeof(s));
        int rc = wal_log_open(&w, io, DIR, &o, 1, check_frame, &s, &rep, why, sizeof(why));
        if (hints[i] < 15) {
            ck_assert_msg(rc == 0, "hint %llu: %s", (unsigned long long)hints[i], why);
            ck_assert(rep.torn);
            ck_assert_uint_eq(s.frames, 14);
        } else {
            ck_assert_int_eq(rc, -EUCLEAN);
            ck_assert_ptr_nonnull(strstr(why, "known synced"));
        }
    }

    /* The same segment as written before windows (header offsets 40..59 zero): corruption. */
    u64 len;
    u8 *bytes = snapshot_file(path, &len);
    struct wal_segment_header h;
    ck_assert_int_eq(wal_segment_header_decode(bytes, len, &h), WAL_SEGMENT_OK);
    ck_assert_uint_eq(h.sync_window, WAL_SYNC_WINDOW_DEFAULT);
    h.sync_window = 0;
    wal_segment_header_encode(bytes, &h);
    ck_assert_int_eq(io_fault_put_file(fs, path, bytes, len), 0);
    o.synced_lsn = 0;
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &o, 1, NULL, NULL, &rep, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "invalid frame"));
    free(bytes);
}
END_TEST

/* A torn tail with valid frames after the damage is zeroed whole: the log continues at the
 * damage with the next LSNs, and nothing of the cut frames comes back. */
START_TEST(test_out_of_order_tear_is_zeroed_whole)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char path[WAL_PATH_MAX];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    seg_file(path, sizeof(path), 1);
    u64 at = frame_offset(path, 15);
    ck_assert_int_eq(io_fault_flip_bit(fs, path, at + 20, 3), 0);
    open_ok(&w, &rep, &s); /* no hint: LSN 15..20 were never known synced */
    ck_assert(rep.torn);
    ck_assert_uint_eq(rep.torn_offset, at);
    ck_assert_uint_eq(s.frames, 14);
    ex->count = 14;
    ck_assert_int_eq(append_n(&w, 2), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    open_ok(&w, &rep, &s);
    ck_assert(!rep.torn);
    ck_assert_uint_eq(s.frames, 16);
    wal_log_close(&w);
}
END_TEST

/* ---- corruption fails closed ------------------------------------------------------------ */

/* Damage to synced frames fails closed: the caller knows them synced (synced_lsn), so no frame
 * but the last can be cut as a tear, whatever the window. */
START_TEST(test_bit_flip_in_any_non_final_frame_fails_closed)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 12), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    u64 end = w.write_offset;
    wal_log_close(&w);
    struct wal_log_options known = small;
    known.synced_lsn = 11; /* behind the last frame, as the metadata's commit point may be */
    char path[WAL_PATH_MAX];
    seg_file(path, sizeof(path), 1);
    /* Find where the last frame starts: walk the frames. */
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    u64 last_start = WAL_SEGMENT_HEADER_SIZE;
    for (u64 off = WAL_SEGMENT_HEADER_SIZE; off < end;) {
        struct wal_frame f;
        u32 fl;
        ck_assert_int_eq(wal_frame_decode(data + off, len - off, &f, &fl), WAL_FRAME_OK);
        last_start = off;
        off += fl;
    }
    /* Every byte of every frame but the last (and of the segment header), one bit each. */
    u64 flips = 0;
    for (u64 off = 0; off < last_start; off++) {
        unsigned bit = (unsigned)(off % 8);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
        u8 *before = snapshot_file(path, &len);
        memset(&s, 0, sizeof(s));
        why[0] = '\0';
        int rc = wal_log_open(&w, io, DIR, &known, 1, check_frame, &s, &rep, why, sizeof(why));
        ck_assert_msg(rc == -EUCLEAN, "flip at %llu: rc %d (%s)", (unsigned long long)off, rc, why);
        ck_assert_ptr_nonnull(strstr(why, path));
        ck_assert_ptr_nonnull(strstr(why, "offset"));
        assert_unchanged(path, before, len);
        free(before);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
        flips++;
    }
    ck_assert_uint_gt(flips, 12 * 50);
    /* Restored: opens cleanly again. */
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, 12);
    wal_log_close(&w);
}
END_TEST

/* ---- damage below from_lsn: frames the caller's snapshot covers (wal/scan.h, note (**)) ---- */

/* Opens DIR replaying from from_lsn; returns the rc. */
static int open_from(struct wal_log *w, const struct wal_log_options *o, u64 from_lsn, struct wal_open_report *rep,
                     struct seen *s, char *why, size_t n)
{
    memset(s, 0, sizeof(*s));
    why[0] = '\0';
    return wal_log_open(w, io, DIR, o, from_lsn, check_frame, s, rep, why, n);
}

/*
 * A damaged frame that the snapshot already covers (LSN < from_lsn) in the segment that holds
 * from_lsn: every byte of every such frame, one bit each. The open succeeds, delivers exactly
 * from_lsn..last, reports the damage (LSN, file, offset), treats none of it as a torn tail,
 * rewrites nothing, and the log appends after it. Before, each of these opens failed: the
 * damage, unsynced as far as the hint knew, was cut as a torn tail with every frame after it
 * (rewriting synced frames) and then the WAL ended before from_lsn.
 */
START_TEST(test_damage_below_from_lsn_is_passed_over)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[1024], path[WAL_PATH_MAX];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 24), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    wal_log_close(&w);
    seg_file(path, sizeof(path), 1);
    const u64 from = 16;
    u64 fo[26]; /* offsets of LSNs 1..25 (25: where the next frame goes), taken while intact */
    for (u64 i = 1; i <= 25; i++)
        fo[i] = frame_offset(path, i);
    u64 from_off = fo[from], opens = 0;
    for (u64 off = WAL_SEGMENT_HEADER_SIZE; off < from_off; off++) {
        unsigned bit = (unsigned)(off % 8);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
        u64 len;
        u8 *before = snapshot_file(path, &len);
        int rc = open_from(&w, &small, from, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "flip at %llu: rc %d (%s)", (unsigned long long)off, rc, why);
        ck_assert_uint_eq(s.frames, 24 - from + 1);
        ck_assert_uint_eq(s.last_lsn, 24);
        ck_assert_uint_eq(rep.last_lsn, 24);
        ck_assert(!rep.torn);
        ck_assert_uint_eq(rep.damaged, 1);
        ck_assert_uint_lt(rep.damage_lsn, from);
        ck_assert_uint_eq(rep.damage_offset, fo[rep.damage_lsn]);
        ck_assert_uint_le(rep.damage_offset, off);
        ck_assert_uint_gt(fo[rep.damage_lsn + 1], off);
        ck_assert_str_eq(rep.damage_file, path);
        ck_assert_uint_ge(rep.damage_floor_lsn, rep.damage_lsn);
        ck_assert_uint_lt(rep.damage_floor_lsn, from);
        ck_assert(rep.damage_reason[0] != '\0');
        wal_log_close(&w);
        assert_unchanged(path, before, len);
        free(before);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
        opens++;
    }
    ck_assert_uint_gt(opens, 15 * 50);
    ck_assert_int_eq(io_fault_flip_bit(fs, path, fo[5] + 30, 1), 0); /* stays for what follows */

    /* The log appends after it, and the next open still finds it, and everything after it. */
    ck_assert_int_eq(open_from(&w, &small, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_int_eq(append_n(&w, 3), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    ck_assert_int_eq(open_from(&w, &small, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.last_lsn, 27);
    ck_assert_uint_eq(s.frames, 27 - from + 1);
    ck_assert_uint_eq(rep.damaged, 1);
    ck_assert_uint_eq(rep.damage_lsn, 5);
    ck_assert_uint_eq(rep.damage_floor_lsn, 5);
    wal_log_close(&w);
    /* A reader with a limit (the applier) passes over it the same way. */
    struct wal_log_options ro = small;
    ro.read_only = true;
    ro.stop_after_lsn = 20;
    ck_assert_int_eq(open_from(&w, &ro, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, 20 - from + 1);
    ck_assert_uint_eq(rep.damaged, 1);
    wal_log_close(&w);
    /* Replaying from before it (a fallback to an older snapshot) fails closed, naming it. The
     * caller knows the frames up to the newer snapshot durable (replica/recovery.c says so in
     * synced_lsn): without that, damage in the last window is a torn tail, as always. */
    struct wal_log_options known = small;
    known.synced_lsn = from - 1;
    u64 len;
    u8 *before = snapshot_file(path, &len);
    ck_assert_int_eq(open_from(&w, &known, 5, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, path));
    ck_assert_ptr_nonnull(strstr(why, "offset"));
    ck_assert_int_eq(open_from(&w, &known, 0, &rep, &s, why, sizeof(why)), -EUCLEAN);
    assert_unchanged(path, before, len);
    free(before);
}
END_TEST

/* Damage at or after from_lsn is what the caller needs: it fails closed exactly as before. */
START_TEST(test_damage_at_or_after_from_lsn_fails_closed)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[1024], path[WAL_PATH_MAX];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 24), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    seg_file(path, sizeof(path), 1);
    struct wal_log_options known = small;
    known.synced_lsn = 24;
    const u64 from = 16;
    u64 a = frame_offset(path, 10), b = frame_offset(path, 18), first = frame_offset(path, from),
        end = frame_offset(path, 24);
    for (u64 off = first; off < end; off++) {
        unsigned bit = (unsigned)(off % 8);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
        u64 len;
        u8 *before = snapshot_file(path, &len);
        int rc = open_from(&w, &known, from, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == -EUCLEAN, "flip at %llu: rc %d (%s)", (unsigned long long)off, rc, why);
        ck_assert_ptr_nonnull(strstr(why, path));
        ck_assert_ptr_nonnull(strstr(why, "offset"));
        ck_assert_uint_eq(rep.damaged, 0);
        assert_unchanged(path, before, len);
        free(before);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, off, bit), 0);
    }
    /* Damage below from_lsn that reaches frame from_lsn: it cannot be found intact. */
    u64 len;
    u8 *bytes = snapshot_file(path, &len);
    memset(bytes + a + 5, 0xEE, b - a - 5);
    ck_assert_int_eq(io_fault_put_file(fs, path, bytes, len), 0);
    ck_assert_int_eq(open_from(&w, &known, from, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_msg(strstr(why, path) != NULL && strstr(why, "LSN 16 cannot be found intact") != NULL, "%s", why);
    /* ... unless the snapshot covers all of it. */
    ck_assert_int_eq(open_from(&w, &known, 19, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, 6);
    ck_assert_uint_eq(rep.damage_lsn, 10);
    ck_assert_uint_eq(rep.damage_floor_lsn, 17);
    wal_log_close(&w);
    free(bytes);
}
END_TEST

/*
 * from_lsn in the newest segment: the segment before it is read too (the newest may be a torn
 * creation), all of it covered. Damage there is passed over; damage running to its end is
 * anchored again by the newest segment's header, and when there is no such header (a torn
 * creation) the open fails closed and removes nothing.
 */
START_TEST(test_damage_in_the_covered_segment_before)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[1024];
    open_ok(&w, &rep, &s);
    while (w.segment_count < 3) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    ck_assert_int_eq(append_n(&w, 3), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    u64 second = w.segments[1].first_lsn, third = w.segments[2].first_lsn, last = ex->count;
    wal_log_close(&w);
    ck_assert_uint_gt(last, third);
    char p2[WAL_PATH_MAX];
    seg_file(p2, sizeof(p2), second);
    u64 len;
    u8 *saved = snapshot_file(p2, &len);
    const u64 from = third + 1;
    u64 at = frame_offset(p2, 3), end = frame_offset(p2, third - second + 1);
    char p3[WAL_PATH_MAX];
    seg_file(p3, sizeof(p3), third);
    u64 at3 = frame_offset(p3, 2);

    ck_assert_int_eq(io_fault_flip_bit(fs, p2, at + 40, 2), 0);
    ck_assert_int_eq(open_from(&w, &small, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, last - from + 1);
    ck_assert_uint_eq(rep.damaged, 1);
    ck_assert_uint_eq(rep.damage_lsn, second + 2);
    ck_assert_str_eq(rep.damage_file, p2);
    wal_log_close(&w);

    /* To the end of its data: the next header anchors the chain. */
    u8 *bad = malloc(len);
    memcpy(bad, saved, len);
    memset(bad + at + 1, 0x5A, end - at - 1);
    ck_assert_int_eq(io_fault_put_file(fs, p2, bad, len), 0);
    ck_assert_int_eq(open_from(&w, &small, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, last - from + 1);
    ck_assert_uint_eq(rep.damage_lsn, second + 2);
    ck_assert_uint_eq(rep.damage_floor_lsn, third - 1);
    ck_assert_int_eq(append_n(&w, 2), 0); /* and appends continue */
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(w.segment_count, 3);
    last = ex->count;
    wal_log_close(&w);
    ck_assert_int_eq(open_from(&w, &small, from, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.last_lsn, last);
    wal_log_close(&w);
    /* Not so when from_lsn is in it. */
    ck_assert_int_eq(open_from(&w, &small, third - 1, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, p2));

    /* A newest segment that is a torn creation cannot anchor it: fail closed, remove nothing. */
    char p4[WAL_PATH_MAX];
    seg_file(p4, sizeof(p4), last + 1);
    u8 *zeros = calloc(1, SMALL_SEGMENT);
    ck_assert_int_eq(io_fault_put_file(fs, p4, zeros, SMALL_SEGMENT), 0);
    u64 len3;
    u8 *saved3 = snapshot_file(p3, &len3);
    u8 *bad3 = malloc(len3);
    memcpy(bad3, saved3, len3);
    u64 end3 = len3;
    while (bad3[end3 - 1] == 0)
        end3--;
    memset(bad3 + at3 + 1, 0x5A, end3 - at3 - 1); /* from its second frame to its last byte */
    ck_assert_int_eq(io_fault_put_file(fs, p3, bad3, len3), 0);
    ck_assert_int_eq(open_from(&w, &small, last + 1, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_msg(strstr(why, p4) != NULL && strstr(why, "covered damage") != NULL, "%s", why);
    ck_assert(io_fault_exists(fs, p4));
    /* Without the damage it is the torn creation it looks like: removed, and the log goes on. */
    ck_assert_int_eq(io_fault_put_file(fs, p3, saved3, len3), 0);
    ck_assert_int_eq(open_from(&w, &small, last + 1, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(rep.removed_empty_segment, 1);
    ck_assert(!io_fault_exists(fs, p4));
    wal_log_close(&w);
    free(zeros);
    free(bad3);
    free(saved3);
    free(bad);
    free(saved);
}
END_TEST

START_TEST(test_segment_gap_and_header_damage_fail_closed)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_ok(&w, &rep, &s);
    while (w.segment_count < 4) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    u64 second = w.segments[1].first_lsn, third = w.segments[2].first_lsn;
    wal_log_close(&w);
    char p2[WAL_PATH_MAX], p3[WAL_PATH_MAX];
    seg_file(p2, sizeof(p2), second);
    seg_file(p3, sizeof(p3), third);

    /* Header damage in a sealed segment. */
    ck_assert_int_eq(io_fault_flip_bit(fs, p3, 9, 0), 0);
    ck_assert_int_eq(reopen(&w, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, p3));
    ck_assert_int_eq(io_fault_flip_bit(fs, p3, 9, 0), 0);

    /* A missing middle segment is a gap. */
    u64 len;
    u8 *saved = snapshot_file(p2, &len);
    ck_assert_int_eq(io->ops->unlink(io, p2), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, DIR), 0);
    ck_assert_int_eq(reopen(&w, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "gap"));
    ck_assert_int_eq(io_fault_put_file(fs, p2, saved, len), 0);
    free(saved);

    /* A segment whose name disagrees with its header. */
    char wrong[WAL_PATH_MAX];
    seg_file(wrong, sizeof(wrong), third + 1);
    ck_assert_int_eq(io->ops->rename(io, p3, wrong), 0);
    ck_assert_int_eq(reopen(&w, &rep, &s, why, sizeof(why)), -EUCLEAN);
    ck_assert_int_eq(io->ops->rename(io, wrong, p3), 0);

    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, ex->count);
    wal_log_close(&w);
}
END_TEST

START_TEST(test_torn_segment_creation_is_removed)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    /* Fill the segment, then crash in the middle of creating the next one, at every step. */
    for (u64 k = 0; k < 5; k++) {
        teardown();
        setup();
        open_ok(&w, &rep, &s);
        while (w.write_offset + WAL_FRAME_HEADER_SIZE + WAL_CMD_SIZE_MAX <= SMALL_SEGMENT) {
            ck_assert_int_eq(append_n(&w, 1), 0);
            ck_assert_int_eq(wal_log_commit(&w), 0);
        }
        u64 acked = ex->count;
        /* roll = commit (nothing pending) + create(open, write header, allocate, fsync, dirsync) */
        io_fault_crash_after(fs, k + 1);
        int rc = append_n(&w, 1);
        if (rc == 0)
            rc = wal_log_commit(&w);
        ck_assert_int_ne(rc, 0);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_ALL);
        open_ok(&w, &rep, &s);
        ck_assert_uint_ge(s.frames, acked);
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 3), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        open_ok(&w, &rep, &s);
        ck_assert_uint_eq(s.frames, ex->count);
        wal_log_close(&w);
    }
}
END_TEST

/* ---- I/O errors ------------------------------------------------------------------------- */

START_TEST(test_eio_on_write_halts)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 4), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    u64 acked = ex->count;
    ck_assert_int_eq(append_n(&w, 2), 0);
    io_fault_fail_write(fs, 1, -EIO);
    ck_assert_int_eq(wal_log_commit(&w), -EIO);
    ck_assert(w.halted);
    ck_assert_uint_eq(w.durable_lsn, acked);
    /* Halted for good: nothing more is accepted, even though the disk would work now. */
    u64 lsn;
    struct sm_command c = random_command();
    ck_assert_int_eq(wal_log_append(&w, 100, 0, &c, &lsn), -EIO);
    ck_assert_int_eq(wal_log_commit(&w), -EIO);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_TEAR);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, acked);
    wal_log_close(&w);
}
END_TEST

START_TEST(test_eio_on_sync_halts_and_recovers_acked)
{
    for (u64 seed = 1; seed <= 40; seed++) {
        teardown();
        setup();
        rng_state = seed;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        open_ok(&w, &rep, &s);
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        u64 acked = ex->count;
        ck_assert_int_eq(append_n(&w, 5), 0);
        io_fault_fail_sync(fs, 1, -EIO);
        ck_assert_int_eq(wal_log_commit(&w), -EIO);
        ck_assert(w.halted);
        ck_assert_uint_eq(w.durable_lsn, acked);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_TEAR);
        open_ok(&w, &rep, &s);
        /* Acknowledged entries are all there; unacknowledged ones may be, as a valid prefix
         * (check_frame compared each against what was appended). */
        ck_assert_uint_ge(s.frames, acked);
        ck_assert_uint_le(s.frames, ex->count);
        wal_log_close(&w);
    }
}
END_TEST

/* ---- crash points ----------------------------------------------------------------------- */

/*
 * A workload of appends and commits across several segments, with a simulated crash after
 * every possible number of mutating I/O operations and a torn power loss. Recovery must never
 * fail, must hold every acknowledged entry, and nothing but a prefix of what was appended.
 */
/* The crash tests' workload: 12 group commits of 4 to 8 entries, optionally preparing the next
 * segment between them (a slice per batch), until an I/O operation fails (the process died).
 * Returns the entries acknowledged: committed before the failure. */
static u64 crash_workload(struct wal_log *w, bool spare)
{
    u64 acked = 0;
    int rc = 0;
    for (int batch = 0; batch < 12 && rc == 0; batch++) {
        rc = append_n(w, 4 + (u64)batch % 5);
        if (rc == 0)
            rc = wal_log_commit(w);
        if (rc == 0)
            acked = ex->count;
        if (rc == 0 && spare)
            rc = wal_log_prepare(w, SMALL_SEGMENT / 3);
    }
    return acked;
}

/* The workload below, optionally preparing the next segment between batches (the spare); the
 * power loss tears a prefix of the unsynced writes, or their pages in any order. */
static void crash_at_every_step(bool spare, enum io_fault_loss loss)
{
    u64 points = 0;
    for (u64 k = 0;; k++) {
        teardown();
        setup();
        rng_state = 1000 + k;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        open_ok(&w, &rep, &s);
        io_fault_crash_after(fs, k);
        u64 acked = crash_workload(&w, spare);
        int rc;
        bool crashed = io_fault_crashed(fs);
        wal_log_close(&w);
        io_fault_power_loss(fs, loss);
        char why[512];
        rc = reopen(&w, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "crash after %llu mutations: %s", (unsigned long long)k, why);
        ck_assert_uint_ge(s.frames, acked);
        ck_assert_uint_le(s.frames, ex->count);
        /* And the recovered log accepts appends that survive the next restart. */
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 2), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        open_ok(&w, &rep, &s);
        ck_assert_uint_eq(s.frames, ex->count);
        wal_log_close(&w);
        points++;
        if (!crashed)
            break; /* the whole workload ran: every crash point has been tried */
    }
    ck_assert_uint_gt(points, 20);
}

START_TEST(test_crash_at_every_step)
{
    crash_at_every_step(false, IO_FAULT_TEAR);
}
END_TEST

START_TEST(test_crash_at_every_step_with_a_spare)
{
    crash_at_every_step(true, IO_FAULT_TEAR);
}
END_TEST

START_TEST(test_crash_at_every_step_pages_out_of_order)
{
    crash_at_every_step(false, IO_FAULT_TEAR_PAGES);
    crash_at_every_step(true, IO_FAULT_TEAR_PAGES);
}
END_TEST

/* ---- a killed process: the page cache outlives it --------------------------------------- */

/*
 * A writer killed between pwrite and fdatasync leaves frames that only the page cache holds. The
 * next open reads them back and reports them (the sequencer publishes them and counts them
 * durable), so it must make them durable before that: otherwise a power loss afterwards loses
 * entries that were reported, and their LSNs are handed out again.
 */
START_TEST(test_kill_before_sync_then_power_loss_keeps_what_open_reported)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 5), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(append_n(&w, 3), 0);
    io_fault_crash_after(fs, 1); /* the pwrite happens, the fdatasync does not */
    ck_assert_int_eq(wal_log_commit(&w), -EIO);
    wal_log_close(&w);
    io_fault_process_restart(fs);

    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(rep.last_lsn, 8);
    ck_assert_uint_eq(s.frames, 8);
    ck_assert_uint_eq(w.durable_lsn, 8);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(rep.last_lsn, 8);
    ck_assert_uint_eq(s.frames, 8);
    wal_log_close(&w);
}
END_TEST

/*
 * The same for every point of a workload that rolls segments (creating them, or renaming a
 * prepared spare): the process is killed after k I/O operations, restarted on the same page
 * cache and reopened; the reopened log appends and commits; then a power loss keeps only what
 * was synced. Every frame the reopen reported and every frame committed after it is there.
 */
static void kill_at_every_step(bool spare)
{
    u64 points = 0;
    for (u64 k = 0;; k++) {
        teardown();
        setup();
        rng_state = 2000 + k;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        open_ok(&w, &rep, &s);
        io_fault_crash_after(fs, k);
        u64 acked = crash_workload(&w, spare);
        int rc;
        bool crashed = io_fault_crashed(fs);
        wal_log_close(&w);
        io_fault_process_restart(fs);
        char why[512];
        rc = reopen(&w, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "killed after %llu mutations: %s", (unsigned long long)k, why);
        ck_assert_uint_ge(s.frames, acked);
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 2), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        rc = reopen(&w, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "killed after %llu mutations, then power loss: %s", (unsigned long long)k, why);
        ck_assert_msg(s.frames == ex->count, "killed after %llu mutations: %llu frames after the power loss, %llu reported and committed", (unsigned long long)k, (unsigned long long)s.frames, (unsigned long long)ex->count);
        wal_log_close(&w);
        points++;
        if (!crashed)
            break;
    }
    ck_assert_uint_gt(points, 20);
}

START_TEST(test_kill_at_every_step_then_power_loss)
{
    kill_at_every_step(false);
}
END_TEST

START_TEST(test_kill_at_every_step_with_a_spare_then_power_loss)
{
    kill_at_every_step(true);
}
END_TEST

/* A prepared spare becomes the next segment: the roll renames it (no new file is created and
 * filled on the commit path), and the log reads back across it. */
START_TEST(test_spare_becomes_the_next_segment)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    char spare[WAL_PATH_MAX];
    snprintf(spare, sizeof(spare), "%s/%s", DIR, WAL_SPARE_NAME);
    for (int i = 0; i < 3 && !w.spare_ready; i++)
        ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT / 2), 0);
    ck_assert(w.spare_ready);
    ck_assert(io_fault_exists(fs, spare));
    u32 before = w.segment_count;
    while (w.segment_count == before)
        ck_assert_int_eq(append_n(&w, 1), 0);
    ck_assert(!w.spare_ready);
    ck_assert(!io_fault_exists(fs, spare)); /* renamed into place */
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT / 2), 0); /* the next one, half done */
    wal_log_close(&w);
    ck_assert(io_fault_exists(fs, spare));
    open_ok(&w, &rep, &s); /* an unfinished spare is removed at open */
    ck_assert(!io_fault_exists(fs, spare));
    ck_assert_uint_eq(s.frames, ex->count);
    ck_assert_uint_eq(rep.segments, before + 1);
    wal_log_close(&w);
}
END_TEST

/* However small the budget, a spare prepared between batches keeps up with the active segment:
 * every roll finds it complete (the sequencer's 1 MiB slices fell behind at 120 MB/s of WAL). */
START_TEST(test_spare_keeps_up_with_any_write_rate)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    u32 start = w.segment_count, rolls_ready = 0;
    while (w.segment_count < start + 3) {
        bool ready = w.spare_ready;
        u32 before = w.segment_count;
        ck_assert_int_eq(append_n(&w, 1), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        if (w.segment_count != before) {
            ck_assert_msg(ready, "roll %u found the spare unprepared", w.segment_count - start);
            rolls_ready++;
        }
        ck_assert_int_eq(wal_log_prepare(&w, 1), 0); /* one byte of budget per batch */
    }
    ck_assert_uint_eq(rolls_ready, 3);
    wal_log_close(&w);
}
END_TEST

/* ---- pruning ---------------------------------------------------------------------------- */

START_TEST(test_prune_keeps_needed_segments)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_ok(&w, &rep, &s);
    while (w.segment_count < 5) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    u64 third = w.segments[2].first_lsn;
    u32 removed;
    /* Keep from an LSN inside the third segment: the first two go. */
    ck_assert_int_eq(wal_log_prune(&w, third + 1, &removed), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert_uint_eq(w.segments[0].first_lsn, third);
    /* Pruning never removes the active segment. */
    ck_assert_int_eq(wal_log_prune(&w, UINT64_MAX, &removed), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    u64 first = 0;
    memset(&s, 0, sizeof(s));
    /* Replay from before the WAL's start is refused... */
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &small, 1, check_frame, &s, &rep, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "begins at"));
    /* ...and from the start the WAL has works. */
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &small, 0, NULL, NULL, &rep, why, sizeof(why)), 0);
    first = rep.first_lsn;
    wal_log_close(&w);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &small, first, check_frame, &s, &rep, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.last_lsn, ex->count);
    ck_assert_uint_eq(s.frames, ex->count - first + 1);
    wal_log_close(&w);
}
END_TEST

/* ---- replication: appending another log's frames, truncating, reading by LSN ------------- */

#define STORE_MAX 2048

/* The frames as appended, by LSN, to compare what is read back byte for byte. */
struct frame_store {
    u8 bytes[STORE_MAX + 1][WAL_FRAME_MAX];
    u32 len[STORE_MAX + 1];
};

/* Appends n entries to w, keeping each frame's bytes (wal_log_last_frame) in st. */
static void append_keep(struct wal_log *w, u64 n, struct frame_store *st)
{
    for (u64 i = 0; i < n; i++) {
        ck_assert_int_eq(append_n(w, 1), 0);
        ck_assert_uint_le(ex->count, STORE_MAX);
        u32 len;
        const u8 *f = wal_log_last_frame(w, &len);
        memcpy(st->bytes[ex->count], f, len);
        st->len[ex->count] = len;
    }
}

/* Reads frame lsn and checks it is exactly what was appended. */
static void read_matches(struct wal_log *w, u64 lsn, const struct frame_store *st)
{
    u8 buf[WAL_FRAME_MAX];
    u32 len = 0;
    int rc = wal_log_read(w, lsn, buf, sizeof(buf), &len);
    ck_assert_msg(rc == 0, "read LSN %llu: %d", (unsigned long long)lsn, rc);
    ck_assert_uint_eq(len, st->len[lsn]);
    ck_assert(memcmp(buf, st->bytes[lsn], len) == 0);
}

static int open_dir(struct wal_log *w, const char *dir, const struct wal_log_options *o, struct wal_open_report *rep,
                    struct seen *s, char *why, size_t n)
{
    memset(s, 0, sizeof(*s));
    why[0] = '\0';
    return wal_log_open(w, io, dir, o, 1, check_frame, s, rep, why, n);
}

static void make_dir(const char *dir, const struct wal_log_options *o)
{
    char why[256];
    ck_assert_int_eq(io->ops->mkdir(io, dir), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
    ck_assert_msg(wal_log_format(io, dir, o, why, sizeof(why)) == 0, "%s", why);
}

/* A primary in DIR and a backup in /b, both new and open. */
static void open_pair(struct wal_log *p, struct wal_log *b)
{
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    make_dir("/b", &small);
    open_ok(p, &rep, &s);
    ck_assert_int_eq(open_dir(b, "/b", &small, &rep, &s, why, sizeof(why)), 0);
}

/* The chain state and batch of a log, to prove a refused call changed nothing. */
struct log_state {
    struct wal_cursor cur;
    u64 durable_lsn, write_offset, batch_offset;
    u32 batch_used, segment_count;
    bool halted;
};

static struct log_state state_of(const struct wal_log *w)
{
    return (struct log_state){ .cur = w->cur, .durable_lsn = w->durable_lsn, .write_offset = w->write_offset,
                               .batch_offset = w->batch_offset, .batch_used = w->batch_used,
                               .segment_count = w->segment_count, .halted = w->halted };
}

static void assert_state(const struct wal_log *w, const struct log_state *was)
{
    struct log_state now = state_of(w);
    ck_assert_uint_eq(now.cur.next_lsn, was->cur.next_lsn);
    ck_assert_uint_eq(now.cur.last_slot, was->cur.last_slot);
    ck_assert_uint_eq(now.cur.prev_crc, was->cur.prev_crc);
    ck_assert_uint_eq(now.durable_lsn, was->durable_lsn);
    ck_assert_uint_eq(now.write_offset, was->write_offset);
    ck_assert_uint_eq(now.batch_offset, was->batch_offset);
    ck_assert_uint_eq(now.batch_used, was->batch_used);
    ck_assert_uint_eq(now.segment_count, was->segment_count);
    ck_assert(!now.halted);
}

/* A backup fed the primary's frames one by one, committing as the primary does, holds the same
 * segment files byte for byte, hands out the same frames, and reopens to the same entries. */
START_TEST(test_append_frame_copies_another_log)
{
    struct frame_store *st = calloc(1, sizeof(*st));
    struct wal_log p, b;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_pair(&p, &b);
    for (int batch = 0; batch < 30; batch++) {
        for (int i = 0; i < 1 + batch % 9; i++) {
            append_keep(&p, 1, st);
            u32 len;
            const u8 *f = wal_log_last_frame(&p, &len);
            ck_assert_int_eq(wal_log_append_frame(&b, f, len), 0);
            u32 blen;
            const u8 *bf = wal_log_last_frame(&b, &blen);
            ck_assert_uint_eq(blen, len);
            ck_assert(memcmp(bf, f, len) == 0);
            ck_assert_uint_eq(wal_log_next_lsn(&b), wal_log_next_lsn(&p));
        }
        ck_assert_int_eq(wal_log_commit(&p), 0);
        ck_assert_int_eq(wal_log_commit(&b), 0);
        ck_assert_uint_eq(b.durable_lsn, p.durable_lsn);
    }
    ck_assert_uint_gt(b.segment_count, 3);
    ck_assert_uint_eq(b.segment_count, p.segment_count);
    for (u64 lsn = 1; lsn <= ex->count; lsn++)
        read_matches(&b, lsn, st);
    for (u32 i = 0; i < p.segment_count; i++) {
        char pp[WAL_PATH_MAX], bp[WAL_PATH_MAX], name[64];
        ck_assert(wal_segment_name(name, sizeof(name), p.segments[i].first_lsn));
        ck_assert(io_path(pp, sizeof(pp), DIR, name));
        ck_assert(io_path(bp, sizeof(bp), "/b", name));
        const u8 *pd, *bd;
        u64 pl, bl;
        ck_assert(io_fault_contents(fs, pp, &pd, &pl));
        ck_assert(io_fault_contents(fs, bp, &bd, &bl));
        ck_assert_uint_eq(pl, bl);
        ck_assert_msg(memcmp(pd, bd, pl) == 0, "segment %s differs", name);
    }
    wal_log_close(&p);
    wal_log_close(&b);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    ck_assert_int_eq(open_dir(&b, "/b", &small, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, ex->count);
    for (u64 lsn = 1; lsn <= ex->count; lsn++)
        read_matches(&b, lsn, st); /* the ring filled by the open's scan */
    wal_log_close(&b);
    free(st);
}
END_TEST

/* Encodes a copy of frame src with some fields changed (payload kept) into out. */
static u32 reencode(const u8 *src, u32 len, u8 *out, u64 lsn, u64 slot, u32 prev_crc)
{
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(src, len, &f), WAL_FRAME_OK);
    f.lsn = lsn;
    f.request_slot = slot;
    f.prev_crc = prev_crc;
    return wal_frame_encode(out, WAL_FRAME_MAX, &f);
}

/* A frame that does not follow the backup's log is refused with -EINVAL and nothing changes:
 * not halted, the chain, the batch and the files as they were; the right frame then goes in. */
START_TEST(test_append_frame_rejects_what_does_not_follow)
{
    struct frame_store *st = calloc(1, sizeof(*st));
    struct wal_log p, b;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_pair(&p, &b);
    append_keep(&p, 12, st);
    for (u64 lsn = 1; lsn <= 10; lsn++)
        ck_assert_int_eq(wal_log_append_frame(&b, st->bytes[lsn], st->len[lsn]), 0);
    ck_assert_int_eq(wal_log_commit(&b), 0);
    ck_assert_int_eq(wal_log_append_frame(&b, st->bytes[11], st->len[11]), 0); /* one in the batch */
    ck_assert_uint_gt(b.cur.last_slot, 0);
    struct log_state was = state_of(&b);
    u64 mutations = io_fault_mutations(fs);
    const u8 *next = st->bytes[12];
    u32 nlen = st->len[12];
    struct wal_frame nf;
    ck_assert_int_eq(wal_frame_decode_exact(next, nlen, &nf), WAL_FRAME_OK);
    u8 bad[WAL_FRAME_MAX + 1];
    u32 n;

    ck_assert_int_eq(wal_log_append_frame(&b, st->bytes[11], st->len[11]), -EINVAL); /* again */
    assert_state(&b, &was);
    ck_assert_int_eq(wal_log_append_frame(&b, st->bytes[10], st->len[10]), -EINVAL); /* behind */
    assert_state(&b, &was);
    n = reencode(next, nlen, bad, 13, nf.request_slot, nf.prev_crc); /* an LSN skipped */
    ck_assert_int_eq(wal_log_append_frame(&b, bad, n), -EINVAL);
    assert_state(&b, &was);
    n = reencode(next, nlen, bad, 12, nf.request_slot, nf.prev_crc ^ 1); /* another chain */
    ck_assert_int_eq(wal_log_append_frame(&b, bad, n), -EINVAL);
    assert_state(&b, &was);
    n = reencode(next, nlen, bad, 12, b.cur.last_slot - 1, nf.prev_crc); /* the slot goes back */
    ck_assert_int_eq(wal_log_append_frame(&b, bad, n), -EINVAL);
    assert_state(&b, &was);
    for (u32 off = 0; off < nlen; off += 7) { /* damaged bytes: a bit anywhere */
        memcpy(bad, next, nlen);
        bad[off] ^= (u8)(1u << (off % 8));
        ck_assert_msg(wal_log_append_frame(&b, bad, nlen) == -EINVAL, "flip at %u", off);
        assert_state(&b, &was);
    }
    memcpy(bad, next, nlen); /* trailing bytes, and a short frame */
    bad[nlen] = 0;
    ck_assert_int_eq(wal_log_append_frame(&b, bad, nlen + 1), -EINVAL);
    ck_assert_int_eq(wal_log_append_frame(&b, bad, nlen - 1), -EINVAL);
    assert_state(&b, &was);
    /* A well-formed frame whose payload is no command: recovery would refuse it. */
    struct wal_frame g = nf;
    u8 junk[WAL_PAYLOAD_MAX];
    memset(junk, 0xA5, sizeof(junk));
    g.payload = junk;
    g.payload_len = 40;
    n = wal_frame_encode(bad, sizeof(bad), &g);
    ck_assert_int_eq(wal_log_append_frame(&b, bad, n), -EINVAL);
    assert_state(&b, &was);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations);

    ck_assert_int_eq(wal_log_append_frame(&b, next, nlen), 0);
    ck_assert_int_eq(wal_log_commit(&b), 0);
    wal_log_close(&b);
    wal_log_close(&p);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    ck_assert_int_eq(open_dir(&b, "/b", &small, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, 12);
    wal_log_close(&b);
    free(st);
}
END_TEST

/* After a truncation: reopening (with the caller's synced_lsn at the cut) finds exactly the
 * frames up to it, cleanly; appending continues the chain and survives a power loss. */
static void check_truncated(struct wal_log *w, const struct wal_log_options *o, u64 after_lsn, u64 more)
{
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    struct wal_log_options known = *o;
    known.synced_lsn = after_lsn;
    wal_log_close(w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    int rc = open_dir(w, DIR, &known, &rep, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "after truncating to %llu: %s", (unsigned long long)after_lsn, why);
    ck_assert_uint_eq(rep.last_lsn, after_lsn);
    ck_assert_uint_eq(s.frames, after_lsn - rep.first_lsn + 1);
    ck_assert(!rep.torn);
    ck_assert_uint_eq(rep.damaged, 0);
    ex->count = after_lsn;
    ck_assert_int_eq(append_n(w, more), 0);
    ck_assert_int_eq(wal_log_commit(w), 0);
    wal_log_close(w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    rc = open_dir(w, DIR, o, &rep, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(s.frames, ex->count - rep.first_lsn + 1);
    ck_assert_uint_eq(rep.last_lsn, ex->count);
    wal_log_close(w);
}

/* Frames still in the batch are dropped without any I/O; the chain continues from the kept one. */
START_TEST(test_truncate_in_the_batch)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 10), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(append_n(&w, 5), 0);
    ck_assert_uint_gt(w.batch_used, 0);
    u64 mutations = io_fault_mutations(fs);
    ck_assert_int_eq(wal_log_truncate(&w, 12), 0);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations);
    ck_assert_uint_eq(wal_log_next_lsn(&w), 13);
    ck_assert_uint_eq(w.durable_lsn, 10);
    ck_assert_uint_eq(w.cur.last_slot, ex->slot[12]);
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    ck_assert_int_eq(wal_log_read(&w, 13, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(wal_log_read(&w, 12, buf, sizeof(buf), &len), 0);
    struct wal_frame f12;
    ck_assert_int_eq(wal_frame_decode_exact(buf, len, &f12), WAL_FRAME_OK);
    ck_assert_uint_eq(w.cur.prev_crc, f12.crc);
    ck_assert_int_eq(wal_log_truncate(&w, 10), 0); /* the whole batch */
    ck_assert_uint_eq(w.batch_used, 0);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations);
    ex->count = 10;
    ck_assert_int_eq(append_n(&w, 4), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(wal_log_truncate(&w, 14), 0); /* nothing after it: nothing to do */
    ck_assert_uint_eq(wal_log_next_lsn(&w), 15);
    ck_assert_int_eq(append_n(&w, 3), 0);
    ck_assert_int_eq(wal_log_truncate(&w, 15), 0);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations + 2); /* the commit's write and sync */
    ck_assert_int_eq(wal_log_commit(&w), 0);                  /* frame 15 */
    check_truncated(&w, &small, 15, 3);
}
END_TEST

/* Written frames of the active segment: gone durably, the segment continues at the cut (its
 * bytes after the kept frames are zeros), with the prepared spare used for the copy. */
START_TEST(test_truncate_in_the_active_segment)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 8), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    u64 cut_at = w.write_offset;
    ck_assert_int_eq(append_n(&w, 12), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(append_n(&w, 2), 0); /* and the batch */
    ck_assert_uint_eq(w.segment_count, 1);
    while (!w.spare_ready)
        ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
    ck_assert_int_eq(wal_log_truncate(&w, 8), 0);
    ck_assert(!w.spare_ready);
    ck_assert_uint_eq(wal_log_next_lsn(&w), 9);
    ck_assert_uint_eq(w.durable_lsn, 8);
    ck_assert_uint_eq(w.write_offset, cut_at);
    char path[WAL_PATH_MAX];
    seg_file(path, sizeof(path), 1);
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    ck_assert_uint_eq(len, SMALL_SEGMENT);
    for (u64 i = cut_at; i < len; i++)
        ck_assert_msg(data[i] == 0, "byte %llu", (unsigned long long)i);
    check_truncated(&w, &small, 8, 40); /* rolls on */
}
END_TEST

/* The cut in an older segment: the newer ones are removed, it becomes the active one with its
 * own capacity, and the log reopens to exactly the kept frames. Every kind of cut: inside a
 * segment, at its last frame, at its first, before every frame; with the ring of offsets, and
 * with a ring too small to know the cut (the segment is walked). */
START_TEST(test_truncate_across_segments)
{
    for (int ring = 0; ring < 2; ring++) {
        for (int kind = 0; kind < 5; kind++) {
            teardown();
            setup();
            struct wal_log_options o = small;
            o.index_frames = ring ? 4 : 0;
            struct wal_log w;
            struct wal_open_report rep;
            struct seen s;
            char why[512];
            ck_assert_int_eq(open_dir(&w, DIR, &o, &rep, &s, why, sizeof(why)), 0);
            while (w.segment_count < 5) {
                ck_assert_int_eq(append_n(&w, 6), 0);
                ck_assert_int_eq(wal_log_commit(&w), 0);
            }
            ck_assert_int_eq(append_n(&w, 2), 0);
            u64 firsts[5];
            for (u32 i = 0; i < 5; i++)
                firsts[i] = w.segments[i].first_lsn;
            u64 second = firsts[1], third = firsts[2];
            const u64 cuts[] = { second + 3, third - 1, second - 1, 0, ex->count - 3 };
            const u32 kept[] = { 2, 3, 2, 1, 5 }; /* segments left (a cut at a segment's start
                                                   * keeps it, empty) */
            u64 after = cuts[kind];
            ck_assert_int_eq(wal_log_truncate(&w, after), 0);
            ck_assert_uint_eq(wal_log_next_lsn(&w), after + 1);
            ck_assert_uint_eq(w.segment_count, kept[kind]);
            ck_assert_uint_eq(w.durable_lsn, after < w.durable_lsn ? after : w.durable_lsn);
            for (u32 i = 0; i < 5; i++) { /* the newer segments are gone from the directory */
                char p[WAL_PATH_MAX];
                seg_file(p, sizeof(p), firsts[i]);
                ck_assert(io_fault_exists(fs, p) == (i < kept[kind]));
            }
            ck_assert_uint_eq(w.write_offset, w.batch_offset + w.batch_used);
            check_truncated(&w, &o, after, 60);
        }
    }
}
END_TEST

/* A crash after every possible number of I/O operations inside a truncation (across segments,
 * or inside the active one using the spare), then a power loss keeping only synced data: the
 * log reopens to the old one or the truncated one, nothing else, and the truncated one once the
 * call returned. Also with the directory sync kept in part (TEAR): never damage, never
 * garbage, never less than the truncated log. */
static void truncate_crash(int shape, enum io_fault_loss loss)
{
    u64 points = 0, olds = 0, news = 0;
    for (u64 k = 0;; k++) {
        teardown();
        setup();
        rng_state = 3000 + k;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        char why[512];
        open_ok(&w, &rep, &s);
        while (w.segment_count < (shape == 0 ? 4u : 1u) || ex->count < 15) {
            ck_assert_int_eq(append_n(&w, 5), 0);
            ck_assert_int_eq(wal_log_commit(&w), 0);
        }
        if (shape == 1)
            while (!w.spare_ready)
                ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
        u64 old = ex->count, after = shape == 0 ? w.segments[1].first_lsn + 2 : old - 6;
        io_fault_crash_after(fs, k);
        int rc = wal_log_truncate(&w, after);
        bool crashed = io_fault_crashed(fs);
        ck_assert(rc == 0 || crashed);
        wal_log_close(&w);
        io_fault_power_loss(fs, loss);
        struct wal_log_options known = small;
        known.synced_lsn = after;
        rc = open_dir(&w, DIR, &known, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "crash after %llu: %s", (unsigned long long)k, why);
        ck_assert(!rep.torn);
        if (loss == IO_FAULT_KEEP_SYNCED)
            ck_assert_msg(s.frames == old || s.frames == after, "crash after %llu: %llu frames (old %llu, new %llu)",
                          (unsigned long long)k, (unsigned long long)s.frames, (unsigned long long)old,
                          (unsigned long long)after);
        else
            ck_assert(s.frames >= after && s.frames <= old);
        if (!crashed)
            ck_assert_uint_eq(s.frames, after);
        olds += s.frames == old;
        news += s.frames == after;
        ex->count = s.last_lsn;
        ck_assert_int_eq(append_n(&w, 3), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        ck_assert_int_eq(open_dir(&w, DIR, &small, &rep, &s, why, sizeof(why)), 0);
        ck_assert_uint_eq(s.frames, ex->count);
        wal_log_close(&w);
        points++;
        if (!crashed)
            break;
    }
    ck_assert_uint_gt(points, 4);
    ck_assert_uint_gt(olds, 0);
    ck_assert_uint_gt(news, 0);
}

START_TEST(test_truncate_crash_at_every_step)
{
    truncate_crash(0, IO_FAULT_KEEP_SYNCED);
    truncate_crash(1, IO_FAULT_KEEP_SYNCED);
    truncate_crash(0, IO_FAULT_TEAR);
    truncate_crash(1, IO_FAULT_TEAR_PAGES);
}
END_TEST

/* A failed write inside a truncation halts the log, like any failed write. */
START_TEST(test_truncate_failure_halts)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    io_fault_fail_write(fs, 1, -EIO);
    ck_assert_int_eq(wal_log_truncate(&w, 5), -EIO);
    ck_assert(w.halted);
    ck_assert_int_eq(wal_log_truncate(&w, 5), -EIO);
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    ck_assert_int_eq(wal_log_read(&w, 3, buf, sizeof(buf), &len), -EIO);
    wal_log_close(&w);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, 20); /* nothing changed before the switch */
    wal_log_close(&w);
}
END_TEST

/* Frames read back by LSN wherever the WAL holds them: the batch, written but unsynced, the
 * active segment, older segments; -ENOENT outside what it holds (never appended, pruned). */
START_TEST(test_read_frames_everywhere)
{
    struct frame_store *st = calloc(1, sizeof(*st));
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    open_ok(&w, &rep, &s);
    while (w.segment_count < 4) {
        append_keep(&w, 7, st);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    append_keep(&w, 3, st); /* in the batch */
    ck_assert_uint_gt(w.batch_used, 0);
    u64 last = ex->count;
    u64 active_first = w.segments[w.segment_count - 1].first_lsn;
    ck_assert_uint_lt(active_first, last - 3);
    for (u64 lsn = 1; lsn <= last; lsn++)
        read_matches(&w, lsn, st);
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    ck_assert_int_eq(wal_log_read(&w, last + 1, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(wal_log_read(&w, last + 1000, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(wal_log_read(&w, 0, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(wal_log_read(&w, last, buf, 10, &len), -ENOBUFS);
    ck_assert_uint_eq(len, st->len[last]);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    for (u64 lsn = 1; lsn <= last; lsn++)
        read_matches(&w, lsn, st);
    /* Pruned: no longer held. */
    u32 removed;
    u64 third = w.segments[2].first_lsn;
    ck_assert_int_eq(wal_log_prune(&w, third, &removed), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert_int_eq(wal_log_read(&w, 1, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(wal_log_read(&w, third - 1, buf, sizeof(buf), &len), -ENOENT);
    for (u64 lsn = third; lsn <= last; lsn++)
        read_matches(&w, lsn, st);
    ck_assert(!w.halted);
    wal_log_close(&w);
    /* A read-only log does not serve reads. */
    struct wal_log_options ro = small;
    ro.read_only = true;
    char why[512];
    ck_assert_int_eq(wal_log_open(&w, io, DIR, &ro, 0, NULL, NULL, &rep, why, sizeof(why)), 0);
    ck_assert_int_eq(wal_log_read(&w, last, buf, sizeof(buf), &len), -EBADF);
    wal_log_close(&w);
    free(st);
}
END_TEST

/* An LSN older than the ring of offsets is found by walking its segment, in every segment and
 * in the batch, after appends and after a reopen. */
START_TEST(test_read_older_than_the_ring)
{
    struct frame_store *st = calloc(1, sizeof(*st));
    struct wal_log_options o = small;
    o.index_frames = 3;
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    ck_assert_int_eq(open_dir(&w, DIR, &o, &rep, &s, why, sizeof(why)), 0);
    while (w.segment_count < 4) {
        append_keep(&w, 9, st);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    append_keep(&w, 5, st); /* more in the batch than the ring holds */
    for (u64 lsn = 1; lsn <= ex->count; lsn++)
        read_matches(&w, lsn, st);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    ck_assert_int_eq(open_dir(&w, DIR, &o, &rep, &s, why, sizeof(why)), 0);
    for (u64 lsn = ex->count; lsn >= 1; lsn--)
        read_matches(&w, lsn, st);
    wal_log_close(&w);
    free(st);
}
END_TEST

/* Bytes flipped on the disk: the frame is -EUCLEAN, never served; a frame found by walking past
 * the damage too; its neighbours still read, and the log is not halted. */
START_TEST(test_read_damaged_frame)
{
    for (int ring = 0; ring < 2; ring++) {
        teardown();
        setup();
        struct frame_store *st = calloc(1, sizeof(*st));
        struct wal_log_options o = small;
        o.index_frames = ring ? 0 : 2;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        char why[512];
        ck_assert_int_eq(open_dir(&w, DIR, &o, &rep, &s, why, sizeof(why)), 0);
        while (w.segment_count < 3) {
            append_keep(&w, 6, st);
            ck_assert_int_eq(wal_log_commit(&w), 0);
        }
        append_keep(&w, 6, st);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        u64 first = w.segments[0].first_lsn, active = w.segments[2].first_lsn;
        char p0[WAL_PATH_MAX], p2[WAL_PATH_MAX];
        seg_file(p0, sizeof(p0), first);
        seg_file(p2, sizeof(p2), active);
        u64 a = frame_offset(p0, 3), b = frame_offset(p2, 2);
        ck_assert_int_eq(io_fault_flip_bit(fs, p0, a + 50, 1), 0);  /* LSN 3, an older segment */
        ck_assert_int_eq(io_fault_flip_bit(fs, p2, b + 30, 6), 0);  /* active + 1, the active one */
        u8 buf[WAL_FRAME_MAX];
        u32 len;
        ck_assert_int_eq(wal_log_read(&w, 3, buf, sizeof(buf), &len), -EUCLEAN);
        ck_assert_int_eq(wal_log_read(&w, active + 1, buf, sizeof(buf), &len), -EUCLEAN);
        read_matches(&w, 2, st);
        read_matches(&w, active, st);
        if (ring) { /* the ring knows where the frames after the damage are */
            read_matches(&w, 4, st);
            read_matches(&w, active + 2, st);
        } else {    /* the walk cannot trust lengths past the damage */
            ck_assert_int_eq(wal_log_read(&w, 4, buf, sizeof(buf), &len), -EUCLEAN);
            read_matches(&w, ex->count, st); /* in the ring */
        }
        ck_assert(!w.halted);
        wal_log_close(&w);
        free(st);
    }
}
END_TEST

/* ---- restart: an empty log after a snapshot from a peer (wal_log_restart) ------------------ */

/* The restart point, as the peer's snapshot gives it: append_n continues after_lsn's slot. */
static void restart_point(u64 after_lsn, u64 slot)
{
    ck_assert_uint_lt(after_lsn, MAX_ENTRIES);
    ex->count = after_lsn;
    ex->slot[after_lsn] = slot;
}

/* The header of the segment starting at first_lsn, as the disk holds it. */
static struct wal_segment_header header_of(u64 first_lsn)
{
    char path[WAL_PATH_MAX];
    seg_file(path, sizeof(path), first_lsn);
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    struct wal_segment_header h;
    ck_assert_int_eq(wal_segment_header_decode(data, len, &h), WAL_SEGMENT_OK);
    return h;
}

/* Frame lsn, read back through the log into buf (WAL_FRAME_MAX bytes), decoded. */
static struct wal_frame frame_of(struct wal_log *w, u64 lsn, u8 *buf)
{
    u32 len;
    ck_assert_int_eq(wal_log_read(w, lsn, buf, WAL_FRAME_MAX, &len), 0);
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(buf, len, &f), WAL_FRAME_OK);
    return f;
}

/* Copies of the segment files a log has now, to put back later (a crash that kept them). */
struct seg_copies {
    u32 n;
    u64 first[8];
    u8 *bytes[8];
    u64 len[8];
};

static void copies_take(struct seg_copies *c, const struct wal_log *w)
{
    ck_assert_uint_le(c->n + w->segment_count, 8);
    for (u32 i = 0; i < w->segment_count; i++, c->n++) {
        char path[WAL_PATH_MAX];
        c->first[c->n] = w->segments[i].first_lsn;
        seg_file(path, sizeof(path), c->first[c->n]);
        c->bytes[c->n] = snapshot_file(path, &c->len[c->n]);
    }
}

static void copies_put_back(const struct seg_copies *c)
{
    for (u32 i = 0; i < c->n; i++) {
        char path[WAL_PATH_MAX];
        seg_file(path, sizeof(path), c->first[i]);
        ck_assert_int_eq(io_fault_put_file(fs, path, c->bytes[i], c->len[i]), 0);
    }
}

static void copies_free(struct seg_copies *c)
{
    for (u32 i = 0; i < c->n; i++)
        free(c->bytes[i]);
    c->n = 0;
}

static bool spare_exists(const char *dir)
{
    char path[WAL_PATH_MAX];
    ck_assert(io_path(path, sizeof(path), dir, WAL_SPARE_NAME));
    return io_fault_exists(fs, path);
}

/*
 * A restart past the frames held (a gap), with and without a ready spare; at the last frame held
 * with an empty segment starting at the restart point (the rename replaces it); at the last frame
 * with frames in the batch (dropped). Each time: the log is empty after after_lsn, the old
 * segments are gone, their LSNs read -ENOENT, appends continue from the given slot and crc
 * across rolls, and a reopen after a power loss finds exactly the new frames, from either kind
 * of snapshot start; pruning works as before.
 */
START_TEST(test_restart_then_append_and_reopen)
{
    for (int kind = 0; kind < 4; kind++) {
        teardown();
        setup();
        struct frame_store *st = calloc(1, sizeof(*st));
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        char why[512];
        open_ok(&w, &rep, &s);
        while (w.segment_count < 3) {
            ck_assert_int_eq(append_n(&w, 5), 0);
            ck_assert_int_eq(wal_log_commit(&w), 0);
        }
        if (kind == 2) { /* the log ends at a segment's start: that segment is empty */
            ex->count = w.segments[w.segment_count - 1].first_lsn - 1;
            ck_assert_int_eq(wal_log_truncate(&w, ex->count), 0);
        }
        if (kind == 1 || kind == 3)
            while (!w.spare_ready)
                ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
        if (kind == 3) {
            ck_assert_int_eq(append_n(&w, 2), 0);
            ck_assert_uint_gt(w.batch_used, 0);
        }
        u64 last = ex->count, after = kind < 2 ? last + 7 : last, slot = ex->slot[last] + 3;
        u32 crc = 0xC0FFEE00u + (u32)kind;
        u32 old_n = w.segment_count;
        u64 old_first[8];
        ck_assert_uint_le(old_n, 8);
        for (u32 i = 0; i < old_n; i++)
            old_first[i] = w.segments[i].first_lsn;
        ck_assert_uint_eq(old_first[old_n - 1] == after + 1, kind == 2);

        ck_assert_int_eq(wal_log_restart(&w, after, slot, crc), 0);
        ck_assert(!w.halted);
        ck_assert_uint_eq(wal_log_next_lsn(&w), after + 1);
        ck_assert_uint_eq(w.durable_lsn, after);
        ck_assert_uint_eq(w.cur.last_slot, slot);
        ck_assert_uint_eq(w.cur.prev_crc, crc);
        ck_assert_uint_eq(w.batch_used, 0);
        ck_assert_uint_eq(w.segment_count, 1);
        ck_assert_uint_eq(w.segments[0].first_lsn, after + 1);
        ck_assert(!w.spare_ready);
        ck_assert(!spare_exists(DIR));
        for (u32 i = 0; i < old_n; i++) {
            char p[WAL_PATH_MAX];
            seg_file(p, sizeof(p), old_first[i]);
            ck_assert(io_fault_exists(fs, p) == (old_first[i] == after + 1));
        }
        struct wal_segment_header h = header_of(after + 1);
        ck_assert_uint_eq(h.flags, WAL_SEGMENT_RESTART);
        ck_assert_uint_eq(h.prev_slot, slot);
        ck_assert_uint_eq(h.prev_crc, crc);
        ck_assert_uint_eq(h.capacity, SMALL_SEGMENT);
        ck_assert_uint_ne(h.sync_window, 0);
        u8 buf[WAL_FRAME_MAX];
        u32 len;
        const u64 gone[] = { 1, last, after, after + 1 };
        for (size_t i = 0; i < ADB_ARRAY_LEN(gone); i++)
            ck_assert_int_eq(wal_log_read(&w, gone[i], buf, sizeof(buf), &len), -ENOENT);
        ck_assert_int_eq(wal_log_commit(&w), 0); /* nothing to do */

        restart_point(after, slot);
        append_keep(&w, 60, st);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        ck_assert_uint_gt(w.segment_count, 1); /* rolled on */
        struct wal_frame f = frame_of(&w, after + 1, buf);
        ck_assert_uint_eq(f.prev_crc, crc);
        ck_assert_uint_ge(f.request_slot, slot);
        for (u64 lsn = after + 1; lsn <= ex->count; lsn++)
            read_matches(&w, lsn, st);
        ck_assert_int_eq(wal_log_read(&w, after, buf, sizeof(buf), &len), -ENOENT);
        wal_log_close(&w);

        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        const u64 froms[] = { 0, after + 1, after + 30 };
        for (size_t i = 0; i < ADB_ARRAY_LEN(froms); i++) {
            int rc = open_from(&w, &small, froms[i], &rep, &s, why, sizeof(why));
            ck_assert_msg(rc == 0, "from %llu: %s", (unsigned long long)froms[i], why);
            ck_assert_uint_eq(rep.first_lsn, after + 1);
            ck_assert_uint_eq(rep.last_lsn, ex->count);
            ck_assert_uint_eq(rep.obsolete_segments_removed, 0);
            ck_assert_uint_eq(s.frames, ex->count + 1 - (froms[i] == 0 ? after + 1 : froms[i]));
            ck_assert_uint_eq(wal_log_next_lsn(&w), ex->count + 1);
            for (u64 lsn = after + 1; lsn <= ex->count; lsn += 7)
                read_matches(&w, lsn, st);
            ck_assert_int_eq(wal_log_read(&w, 1, buf, sizeof(buf), &len), -ENOENT);
            ck_assert_int_eq(wal_log_read(&w, after, buf, sizeof(buf), &len), -ENOENT);
            for (u32 j = 0; j < old_n; j++) {
                char p[WAL_PATH_MAX];
                seg_file(p, sizeof(p), old_first[j]);
                ck_assert(io_fault_exists(fs, p) == (old_first[j] == after + 1));
            }
            wal_log_close(&w);
        }
        /* A snapshot below the restart point cannot be recovered from this log. */
        ck_assert_int_eq(open_from(&w, &small, after, &rep, &s, why, sizeof(why)), -EUCLEAN);
        ck_assert_ptr_nonnull(strstr(why, "begins at"));
        ck_assert_int_eq(open_from(&w, &small, 0, &rep, &s, why, sizeof(why)), 0);
        u32 removed;
        ck_assert_int_eq(wal_log_prune(&w, ex->count, &removed), 0);
        ck_assert_uint_gt(removed, 0);
        ck_assert_int_eq(wal_log_read(&w, after + 1, buf, sizeof(buf), &len), -ENOENT);
        read_matches(&w, ex->count, st);
        wal_log_close(&w);
        free(st);
    }
}
END_TEST

/* After a restart the chain continues from the given crc and slot only: a frame that carries the
 * old log's chain, another crc, the LSN after_lsn or one skipped, or a slot below the given one
 * is -EINVAL with nothing changed; the right frame goes in and survives a power loss. */
START_TEST(test_restart_chain_takes_only_the_given_crc)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 10), 0);
    u8 src[WAL_FRAME_MAX], bad[WAL_FRAME_MAX];
    u32 slen;
    const u8 *lf = wal_log_last_frame(&w, &slen);
    memcpy(src, lf, slen);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    struct wal_frame f10;
    ck_assert_int_eq(wal_frame_decode_exact(src, slen, &f10), WAL_FRAME_OK);
    const u64 after = 20, slot = ex->slot[10] + 30;
    const u32 crc = f10.crc ^ 0x5A5A5A5Au;
    ck_assert_int_eq(wal_log_restart(&w, after, slot, crc), 0);
    struct log_state was = state_of(&w);
    u64 mutations = io_fault_mutations(fs);
    u32 n;
    n = reencode(src, slen, bad, after + 1, slot, crc ^ 1); /* another crc */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    assert_state(&w, &was);
    n = reencode(src, slen, bad, after + 1, slot, f10.crc); /* the old log's chain */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    assert_state(&w, &was);
    n = reencode(src, slen, bad, 11, ex->slot[10], f10.crc); /* the old log's next frame */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    assert_state(&w, &was);
    n = reencode(src, slen, bad, after, slot, crc); /* at the restart point */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    n = reencode(src, slen, bad, after + 2, slot, crc); /* one skipped */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    n = reencode(src, slen, bad, after + 1, slot - 1, crc); /* the slot goes back */
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), -EINVAL);
    assert_state(&w, &was);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations);

    n = reencode(src, slen, bad, after + 1, slot, crc);
    ck_assert_int_eq(wal_log_append_frame(&w, bad, n), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    restart_point(after, slot);
    ex->count = after + 1;
    ex->slot[after + 1] = slot;
    ex->cmd[after + 1] = ex->cmd[10];
    ck_assert_int_eq(append_n(&w, 2), 0); /* and wal_log_append continues it */
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    ck_assert_int_eq(open_from(&w, &small, after + 1, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, 3);
    ck_assert_uint_eq(rep.last_lsn, after + 3);
    wal_log_close(&w);
}
END_TEST

/*
 * A crash after every possible number of I/O operations inside a restart (past the log's end;
 * with a ready spare; at the end, replacing an empty segment), then a power loss (only synced
 * state, or a directory sync kept in part, or pages in any order) or only the process killed:
 * the log reopens, always, to either the old log exactly or the restarted empty one, and the
 * restarted one once the call returned. A reopen of the restarted one removes the segments it
 * made obsolete that survived; whatever it reported survives a later power loss.
 */
static void restart_crash(int shape, bool kill, enum io_fault_loss loss)
{
    u64 points = 0, olds = 0, news = 0, dropped = 0;
    for (u64 k = 0;; k++) {
        teardown();
        setup();
        rng_state = 5000 + k;
        struct wal_log w;
        struct wal_open_report rep;
        struct seen s;
        char why[512];
        open_ok(&w, &rep, &s);
        while (w.segment_count < 3) {
            ck_assert_int_eq(append_n(&w, 5), 0);
            ck_assert_int_eq(wal_log_commit(&w), 0);
        }
        if (shape == 1)
            while (!w.spare_ready)
                ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
        if (shape == 2) { /* the log ends at a segment's start: that segment is empty */
            ex->count = w.segments[w.segment_count - 1].first_lsn - 1;
            ck_assert_int_eq(wal_log_truncate(&w, ex->count), 0);
        }
        u64 old = ex->count, after = shape == 2 ? old : old + 9, slot = ex->slot[old] + 2;
        u32 crc = 0x5EED0000u + (u32)k;
        u32 old_n = w.segment_count;
        u64 old_first[8];
        ck_assert_uint_le(old_n, 8);
        for (u32 i = 0; i < old_n; i++)
            old_first[i] = w.segments[i].first_lsn;
        io_fault_crash_after(fs, k);
        int rc = wal_log_restart(&w, after, slot, crc);
        bool crashed = io_fault_crashed(fs);
        ck_assert(rc == 0 || crashed);
        ck_assert(rc == 0 || w.halted);
        wal_log_close(&w);
        if (kill)
            io_fault_process_restart(fs);
        else
            io_fault_power_loss(fs, loss);
        rc = open_from(&w, &small, 0, &rep, &s, why, sizeof(why));
        ck_assert_msg(rc == 0, "crash after %llu: %s", (unsigned long long)k, why);
        ck_assert(!rep.torn);
        ck_assert_uint_eq(rep.damaged, 0);
        ck_assert(!spare_exists(DIR));
        bool restarted = rep.first_lsn == after + 1;
        if (restarted) {
            ck_assert_uint_eq(rep.last_lsn, after);
            ck_assert_uint_eq(s.frames, 0);
            ck_assert_uint_eq(rep.segments, 1);
            ck_assert_uint_eq(w.cur.last_slot, slot);
            ck_assert_uint_eq(w.cur.prev_crc, crc);
            for (u32 i = 0; i < old_n; i++) { /* the obsolete ones are gone */
                char p[WAL_PATH_MAX];
                seg_file(p, sizeof(p), old_first[i]);
                ck_assert(io_fault_exists(fs, p) == (old_first[i] == after + 1));
            }
            dropped += rep.obsolete_segments_removed > 0;
        } else {
            ck_assert_msg(rep.first_lsn == 1 && rep.last_lsn == old && s.frames == old && rep.segments == old_n,
                          "crash after %llu: first %llu last %llu frames %llu (old %llu, restart after %llu)",
                          (unsigned long long)k, (unsigned long long)rep.first_lsn,
                          (unsigned long long)rep.last_lsn, (unsigned long long)s.frames,
                          (unsigned long long)old, (unsigned long long)after);
            ck_assert_uint_eq(rep.obsolete_segments_removed, 0);
        }
        if (!crashed)
            ck_assert(restarted);
        olds += !restarted;
        news += restarted;
        if (restarted)
            restart_point(after, slot);
        ck_assert_int_eq(append_n(&w, 3), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
        if (restarted) {
            u8 buf[WAL_FRAME_MAX];
            ck_assert_uint_eq(frame_of(&w, after + 1, buf).prev_crc, crc);
        }
        wal_log_close(&w);
        io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
        ck_assert_int_eq(open_from(&w, &small, 0, &rep, &s, why, sizeof(why)), 0);
        ck_assert_uint_eq(rep.first_lsn, restarted ? after + 1 : 1);
        ck_assert_uint_eq(rep.last_lsn, ex->count);
        ck_assert_uint_eq(s.frames, restarted ? 3 : old + 3);
        ck_assert_uint_eq(rep.obsolete_segments_removed, 0);
        wal_log_close(&w);
        points++;
        if (!crashed)
            break;
    }
    ck_assert_uint_gt(points, 5);
    ck_assert_uint_gt(olds, 0);
    ck_assert_uint_gt(news, 1);
    ck_assert_uint_gt(dropped, 0); /* some crash left obsolete segments for the open to remove */
}

START_TEST(test_restart_crash_at_every_step)
{
    for (int shape = 0; shape < 3; shape++) {
        restart_crash(shape, false, IO_FAULT_KEEP_SYNCED);
        restart_crash(shape, false, IO_FAULT_TEAR);
        restart_crash(shape, true, IO_FAULT_KEEP_SYNCED);
    }
    restart_crash(1, false, IO_FAULT_TEAR_PAGES);
}
END_TEST

/*
 * Segments a restart made obsolete, still there (as a crash before its unlinks were durable
 * leaves them; here put back, after two restarts and rolls, one of them damaged, none chaining
 * to the restart): a read-only open reads none of them, counts them and leaves them; it starts
 * at the newest restart segment even when later segments follow it and an older restart segment
 * is among the obsolete. A read-write open removes them.
 */
START_TEST(test_restart_read_only_open_ignores_obsolete_segments)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    struct seg_copies old = { 0 };
    open_ok(&w, &rep, &s);
    while (w.segment_count < 3) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    copies_take(&old, &w);
    u64 first_restart = ex->count + 4;
    ck_assert_int_eq(wal_log_restart(&w, first_restart, ex->slot[ex->count], 0x1111u), 0);
    restart_point(first_restart, ex->slot[ex->count]);
    ck_assert_int_eq(append_n(&w, 40), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_ge(w.segment_count, 2);
    copies_take(&old, &w); /* the first restart segment among them */
    u64 after = ex->count + 2, slot = ex->slot[ex->count] + 1;
    ck_assert_int_eq(wal_log_restart(&w, after, slot, 0x2222u), 0);
    restart_point(after, slot);
    ck_assert_int_eq(append_n(&w, 40), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    u32 live = w.segment_count;
    ck_assert_uint_ge(live, 2); /* later segments follow the restart segment */
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    copies_put_back(&old);
    char p1[WAL_PATH_MAX];
    seg_file(p1, sizeof(p1), 1);
    ck_assert_int_eq(io_fault_flip_bit(fs, p1, frame_offset(p1, 2) + 20, 3), 0);
    u64 len1;
    u8 *before1 = snapshot_file(p1, &len1);

    struct wal_log_options ro = small;
    ro.read_only = true;
    int rc = open_from(&w, &ro, 0, &rep, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(rep.first_lsn, after + 1);
    ck_assert_uint_eq(rep.last_lsn, ex->count);
    ck_assert_uint_eq(rep.segments, live);
    ck_assert_uint_eq(s.frames, 40);
    ck_assert_uint_eq(rep.obsolete_segments_removed, old.n);
    wal_log_close(&w);
    for (u32 i = 0; i < old.n; i++) { /* left where they are */
        char p[WAL_PATH_MAX];
        seg_file(p, sizeof(p), old.first[i]);
        ck_assert(io_fault_exists(fs, p));
    }
    assert_unchanged(p1, before1, len1);
    /* A reader whose limit is the restart point finds the log ending there; one with a limit
     * inside it stops there; one whose snapshot is older cannot recover from this log. */
    ro.stop_after_lsn = after;
    ck_assert_int_eq(open_from(&w, &ro, 0, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(rep.last_lsn, after);
    ck_assert_uint_eq(s.frames, 0);
    wal_log_close(&w);
    ro.stop_after_lsn = after + 2;
    ck_assert_int_eq(open_from(&w, &ro, after + 1, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(rep.last_lsn, after + 2);
    ck_assert_uint_eq(s.frames, 2);
    wal_log_close(&w);
    ro.stop_after_lsn = 0;
    ck_assert_int_eq(open_from(&w, &ro, first_restart + 1, &rep, &s, why, sizeof(why)), -EUCLEAN);

    rc = open_from(&w, &small, 0, &rep, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(rep.obsolete_segments_removed, old.n);
    ck_assert_uint_eq(s.frames, 40);
    wal_log_close(&w);
    for (u32 i = 0; i < old.n; i++) {
        char p[WAL_PATH_MAX];
        seg_file(p, sizeof(p), old.first[i]);
        ck_assert(!io_fault_exists(fs, p));
    }
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED); /* the removal was synced */
    ck_assert_int_eq(open_from(&w, &small, 0, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(rep.obsolete_segments_removed, 0);
    ck_assert_uint_eq(rep.segments, live);
    wal_log_close(&w);
    free(before1);
    copies_free(&old);
}
END_TEST

/* Sets the flags of the segment at path to flags (its checksum made right again). */
static void set_flags(const char *path, u32 flags)
{
    u64 len;
    u8 *b = snapshot_file(path, &len);
    le_put_u32(b + 28, flags);
    le_put_u32(b + 60, crc32c(0, b, 60));
    ck_assert_int_eq(io_fault_put_file(fs, path, b, len), 0);
    free(b);
}

/*
 * A segment header with a flag bit this version does not know fails to open, read-write or
 * read-only, wherever the segment is (the only one, in the middle, the newest and frameless,
 * which is no torn creation then), and nothing is removed or rewritten. The restart bit on the
 * oldest segment of an ordinary log changes nothing.
 */
START_TEST(test_restart_unknown_segment_flag_fails_closed)
{
    const u32 unknown[] = { 1u << 1, 1u << 31, WAL_SEGMENT_RESTART | 1u << 8 };
    for (int where = 0; where < 3; where++) {
        for (size_t b = 0; b < ADB_ARRAY_LEN(unknown); b++) {
            teardown();
            setup();
            struct wal_log w;
            struct wal_open_report rep;
            struct seen s;
            char why[512], path[WAL_PATH_MAX];
            open_ok(&w, &rep, &s);
            if (where > 0)
                while (w.segment_count < 3) {
                    ck_assert_int_eq(append_n(&w, 5), 0);
                    ck_assert_int_eq(wal_log_commit(&w), 0);
                }
            if (where == 2) { /* the newest, frameless */
                ex->count = w.segments[2].first_lsn - 1;
                ck_assert_int_eq(wal_log_truncate(&w, ex->count), 0);
            }
            u64 first = w.segments[where == 0 ? 0 : where == 1 ? 1 : 2].first_lsn;
            wal_log_close(&w);
            seg_file(path, sizeof(path), first);
            set_flags(path, unknown[b]);
            u64 len;
            u8 *before = snapshot_file(path, &len);
            for (int ro = 0; ro < 2; ro++) {
                struct wal_log_options o = small;
                o.read_only = ro;
                ck_assert_int_eq(open_from(&w, &o, 0, &rep, &s, why, sizeof(why)), -EUCLEAN);
                ck_assert_msg(strstr(why, "unknown segment header flag") != NULL, "%s", why);
                assert_unchanged(path, before, len);
            }
            free(before);
        }
    }
    /* The restart bit on the oldest segment: nothing before it to drop. */
    teardown();
    setup();
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char path[WAL_PATH_MAX];
    open_ok(&w, &rep, &s);
    while (w.segment_count < 2) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    wal_log_close(&w);
    seg_file(path, sizeof(path), 1);
    set_flags(path, WAL_SEGMENT_RESTART);
    open_ok(&w, &rep, &s);
    ck_assert_uint_eq(s.frames, ex->count);
    ck_assert_uint_eq(rep.obsolete_segments_removed, 0);
    wal_log_close(&w);
}
END_TEST

/*
 * Truncation after a restart: at the restart point with nothing appended it is nothing; inside
 * the restart segment (rewritten through the spare) and back to the restart point, the segment
 * keeps its header, restart flag included, so an obsolete segment put back is still dropped at
 * open; the chain continues from the restart's crc and slot.
 */
START_TEST(test_restart_then_truncate_keeps_the_flag)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512];
    struct seg_copies old = { 0 };
    open_ok(&w, &rep, &s);
    while (w.segment_count < 2) {
        ck_assert_int_eq(append_n(&w, 5), 0);
        ck_assert_int_eq(wal_log_commit(&w), 0);
    }
    copies_take(&old, &w);
    u64 after = ex->count + 3, slot = ex->slot[ex->count] + 4;
    const u32 crc = 0xABCD1234u;
    ck_assert_int_eq(wal_log_restart(&w, after, slot, crc), 0);
    u64 mutations = io_fault_mutations(fs);
    ck_assert_int_eq(wal_log_truncate(&w, after), 0);
    ck_assert_uint_eq(io_fault_mutations(fs), mutations);
    restart_point(after, slot);
    ck_assert_int_eq(append_n(&w, 50), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_ge(w.segment_count, 2);
    while (!w.spare_ready)
        ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
    ck_assert_int_eq(wal_log_truncate(&w, after + 4), 0);
    ck_assert_uint_eq(w.segment_count, 1);
    ck_assert_uint_eq(wal_log_next_lsn(&w), after + 5);
    struct wal_segment_header h = header_of(after + 1);
    ck_assert_uint_eq(h.flags, WAL_SEGMENT_RESTART);
    ck_assert_uint_eq(h.prev_crc, crc);
    ck_assert_uint_eq(h.prev_slot, slot);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    copies_put_back(&old);
    int rc = open_from(&w, &small, 0, &rep, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(rep.obsolete_segments_removed, old.n);
    ck_assert_uint_eq(rep.first_lsn, after + 1);
    ck_assert_uint_eq(rep.last_lsn, after + 4);
    ck_assert_uint_eq(s.frames, 4);

    ck_assert_int_eq(wal_log_truncate(&w, after), 0); /* back to the restart point */
    ck_assert_uint_eq(wal_log_next_lsn(&w), after + 1);
    ck_assert_uint_eq(w.cur.last_slot, slot);
    ck_assert_uint_eq(w.cur.prev_crc, crc);
    ck_assert_uint_eq(header_of(after + 1).flags, WAL_SEGMENT_RESTART);
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    ck_assert_int_eq(wal_log_read(&w, after + 1, buf, sizeof(buf), &len), -ENOENT);
    ex->count = after;
    ck_assert_int_eq(append_n(&w, 3), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_uint_eq(frame_of(&w, after + 1, buf).prev_crc, crc);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    copies_put_back(&old);
    ck_assert_int_eq(open_from(&w, &small, 0, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(rep.obsolete_segments_removed, old.n);
    ck_assert_uint_eq(s.frames, 3);
    ck_assert_uint_eq(rep.last_lsn, after + 3);
    wal_log_close(&w);
    copies_free(&old);
}
END_TEST

/* No room for the restart segment (fresh, or the header into the ready spare): -ENOSPC, not
 * halted, nothing changed, no spare left; then it succeeds. A failed sync halts; the old log is
 * what a reopen finds. */
START_TEST(test_restart_failures)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct seen s;
    char why[512], p1[WAL_PATH_MAX], p31[WAL_PATH_MAX];
    seg_file(p1, sizeof(p1), 1);
    seg_file(p31, sizeof(p31), 31);
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    ck_assert_int_eq(append_n(&w, 1), 0); /* in the batch: kept when nothing changes */
    for (int spare = 0; spare < 2; spare++) {
        if (spare)
            while (!w.spare_ready)
                ck_assert_int_eq(wal_log_prepare(&w, SMALL_SEGMENT), 0);
        struct log_state was = state_of(&w);
        u64 len;
        u8 *before = snapshot_file(p1, &len);
        io_fault_fail_write(fs, 1, -ENOSPC);
        ck_assert_int_eq(wal_log_restart(&w, 30, 99, 0x77u), -ENOSPC);
        assert_state(&w, &was);
        assert_unchanged(p1, before, len);
        ck_assert(!io_fault_exists(fs, p31));
        ck_assert(!spare_exists(DIR));
        ck_assert(!w.spare_ready);
        free(before);
    }
    ck_assert_int_eq(wal_log_restart(&w, 30, 99, 0x77u), 0);
    ck_assert(io_fault_exists(fs, p31));
    ck_assert(!io_fault_exists(fs, p1));
    wal_log_close(&w);

    teardown();
    setup();
    open_ok(&w, &rep, &s);
    ck_assert_int_eq(append_n(&w, 20), 0);
    ck_assert_int_eq(wal_log_commit(&w), 0);
    io_fault_fail_sync(fs, 1, -EIO);
    ck_assert_int_eq(wal_log_restart(&w, 30, 99, 0x77u), -EIO);
    ck_assert(w.halted);
    ck_assert_int_eq(wal_log_restart(&w, 30, 99, 0x77u), -EIO);
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    ck_assert_int_eq(wal_log_read(&w, 3, buf, sizeof(buf), &len), -EIO);
    wal_log_close(&w);
    io_fault_power_loss(fs, IO_FAULT_KEEP_SYNCED);
    ck_assert_int_eq(open_from(&w, &small, 0, &rep, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s.frames, 20);
    ck_assert_uint_eq(rep.first_lsn, 1);
    ck_assert(!spare_exists(DIR));
    wal_log_close(&w);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("wal");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_format_open_append_reopen);
    tcase_add_test(tc, test_format_refuses_existing_and_open_refuses_missing);
    tcase_add_test(tc, test_group_commit_one_sync);
    tcase_add_test(tc, test_short_writes_are_completed);
    tcase_add_test(tc, test_torn_tail_at_every_byte);
    tcase_add_test(tc, test_read_only_open_repairs_nothing);
    tcase_add_test(tc, test_read_only_stop_after_lsn);
    tcase_add_test(tc, test_read_only_stop_never_reads_past_the_limit);
    tcase_add_test(tc, test_torn_group_commit_pages_out_of_order);
    tcase_add_test(tc, test_sync_window_bounds_what_is_unsynced);
    tcase_add_test(tc, test_synced_lsn_decides_damage_in_the_last_window);
    tcase_add_test(tc, test_out_of_order_tear_is_zeroed_whole);
    tcase_add_test(tc, test_bit_flip_in_any_non_final_frame_fails_closed);
    tcase_add_test(tc, test_damage_below_from_lsn_is_passed_over);
    tcase_add_test(tc, test_damage_at_or_after_from_lsn_fails_closed);
    tcase_add_test(tc, test_damage_in_the_covered_segment_before);
    tcase_add_test(tc, test_segment_gap_and_header_damage_fail_closed);
    tcase_add_test(tc, test_torn_segment_creation_is_removed);
    tcase_add_test(tc, test_eio_on_write_halts);
    tcase_add_test(tc, test_eio_on_sync_halts_and_recovers_acked);
    tcase_add_test(tc, test_crash_at_every_step);
    tcase_add_test(tc, test_crash_at_every_step_with_a_spare);
    tcase_add_test(tc, test_crash_at_every_step_pages_out_of_order);
    tcase_add_test(tc, test_kill_before_sync_then_power_loss_keeps_what_open_reported);
    tcase_add_test(tc, test_kill_at_every_step_then_power_loss);
    tcase_add_test(tc, test_kill_at_every_step_with_a_spare_then_power_loss);
    tcase_add_test(tc, test_spare_becomes_the_next_segment);
    tcase_add_test(tc, test_spare_keeps_up_with_any_write_rate);
    tcase_add_test(tc, test_prune_keeps_needed_segments);
    tcase_add_test(tc, test_append_frame_copies_another_log);
    tcase_add_test(tc, test_append_frame_rejects_what_does_not_follow);
    tcase_add_test(tc, test_truncate_in_the_batch);
    tcase_add_test(tc, test_truncate_in_the_active_segment);
    tcase_add_test(tc, test_truncate_across_segments);
    tcase_add_test(tc, test_truncate_crash_at_every_step);
    tcase_add_test(tc, test_truncate_failure_halts);
    tcase_add_test(tc, test_read_frames_everywhere);
    tcase_add_test(tc, test_read_older_than_the_ring);
    tcase_add_test(tc, test_read_damaged_frame);
    tcase_add_test(tc, test_restart_then_append_and_reopen);
    tcase_add_test(tc, test_restart_chain_takes_only_the_given_crc);
    tcase_add_test(tc, test_restart_crash_at_every_step);
    tcase_add_test(tc, test_restart_read_only_open_ignores_obsolete_segments);
    tcase_add_test(tc, test_restart_unknown_segment_flag_fails_closed);
    tcase_add_test(tc, test_restart_then_truncate_keeps_the_flag);
    tcase_add_test(tc, test_restart_failures);
    suite_add_tcase(s, tc);
    return s;
}
