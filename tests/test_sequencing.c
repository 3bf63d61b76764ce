/*
 * tests/test_sequencing.c — the sequencer's core (wal/sequencing.h) with its WAL on a simulated
 * disk (tests/io_fault.h), event by event: batching limits, frames handed out only once durable,
 * a retry inside and outside the cache, a failed fsync, refusals while the disk is full and the
 * retry of growth, restart reconciliation (durable but unpublished frames, a batch published in
 * part, fed on through the applier's entry rule), slots that never go backwards across a restart
 * nor follow a wall-clock step, and metadata and prune maintenance.
 */
#include "config.h"

#include "replica/apply_policy.h"
#include "tests/check_main.h"
#include "tests/io_fault.h"
#include "wal/log.h"
#include "wal/sequencing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 80 /* the retry cache's window (margin 80/8 + 1 = 11 slots) */
#define DIR "/data"
#define SEGMENT 4096 /* small: segments roll after a few dozen frames */

static const struct sequencing_config cfg = { .batch_max = 64,
                                              .slot_ms = 100,
                                              .segment_bytes = SEGMENT,
                                              .meta_interval_ms = 1000,
                                              .meta_idle_ms = 60000,
                                              .meta_backoff_max_ms = 30000,
                                              .space_retry_ms = 1000 };

static struct retry_cache cache;
static void *cache_mem;
static struct sequencing_frame batch[64];
static struct sequencing s;
static struct io_fault *fs; /* the disk */

/* A new sequencer process (its memory fresh, the disk as it is). */
static void new_process(void)
{
    sequencing_close(&s);
    free(cache_mem);
    cache_mem = calloc(1, retry_cache_bytes(256));
    ck_assert_ptr_nonnull(cache_mem);
    retry_cache_init(&cache, cache_mem, 256, WINDOW);
    sequencing_init(&s, &cfg, &cache, batch);
}

struct republished {
    u64 lsns[64]; /* LSNs published again at open */
    u32 count;
};

static int on_republish(void *ctx, const u8 *frame, u32 len, u64 lsn)
{
    struct republished *r = ctx;
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(frame, len, &f), WAL_FRAME_OK); /* a whole, valid frame */
    ck_assert_uint_eq(f.lsn, lsn);
    ck_assert_uint_lt(r->count, 64);
    r->lsns[r->count++] = lsn;
    return 0;
}

/* Starts a sequencer process on the disk after it saw `seen`; returns the plan and verdict. */
static struct sequencing_open start(const struct sequencing_restart *seen, struct republished *r,
                                    struct wal_open_report *rep, enum sequencing_opened *verdict)
{
    new_process();
    struct sequencing_open plan;
    char why[256] = "";
    memset(r, 0, sizeof(*r));
    ck_assert_msg(sequencing_open(&s, io_fault_io(fs), DIR, seen, on_republish, r, &plan, rep, verdict, why,
                                  sizeof(why)) == 0, "%s", why);
    /* A timeline of this boot at logical 100000 ms (slot 1000) at boot clock 0. */
    sequencing_join_clock(&s, 100000, 0, rep->last_slot);
    return plan;
}

static void setup(void)
{
    fs = io_fault_create(1);
    struct io *io = io_fault_io(fs);
    char why[256];
    ck_assert_int_eq(io->ops->mkdir(io, DIR), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
    struct wal_log_options o = { .segment_bytes = SEGMENT };
    ck_assert_msg(wal_log_format(io, DIR, &o, why, sizeof(why)) == 0, "%s", why);
    struct sequencing_restart fresh = { 0 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    start(&fresh, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_OPENED);
}

static void teardown(void)
{
    sequencing_close(&s);
    free(cache_mem);
    cache_mem = NULL;
    io_fault_destroy(fs);
}

static struct sm_command reserve(u128 op, u128 resource)
{
    struct sm_command cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.kind = SM_CMD_RESERVE;
    cmd.operation_id = op;
    cmd.client_id = 9;
    cmd.resource_id = resource;
    cmd.holder_id = 5;
    cmd.ttl_slots = 10;
    return cmd;
}

/* Writes reserve(op, 100 + op) for op in [from, to] at boot clock `boot`, committing each batch of `per`. */
static void write_range(u32 from, u32 to, u32 per, u64 boot)
{
    for (u32 op = from; op <= to; op++) {
        struct sm_command c = reserve(op, 100 + op);
        struct sequencing_result r = sequencing_write(&s, &c, false, boot, 0);
        ck_assert_int_eq(r.action, SEQUENCING_APPENDED);
        if ((op - from + 1) % per == 0 || op == to) {
            u32 n;
            ck_assert_int_eq(sequencing_commit(&s, &n), 0);
        }
    }
}

START_TEST(test_batch_limit)
{
    ck_assert_uint_eq(sequencing_batch_limit(&s, 0), 0);  /* the shared log is full: wait */
    ck_assert_uint_eq(sequencing_batch_limit(&s, 10), 10); /* never more than it has room for */
    ck_assert_uint_eq(sequencing_batch_limit(&s, 64), 64);
    ck_assert_uint_eq(sequencing_batch_limit(&s, 1u << 20), 64); /* at most batch_max per fsync */
}
END_TEST

START_TEST(test_a_batch_is_published_only_once_durable)
{
    for (u32 i = 0; i < 3; i++) {
        struct sm_command c = reserve(i + 1, 100 + i);
        struct sequencing_result r = sequencing_write(&s, &c, false, 0, 0);
        ck_assert_int_eq(r.action, SEQUENCING_APPENDED);
        ck_assert_uint_eq(r.index, i);
        ck_assert_uint_eq(r.lsn, i + 1);
    }
    struct sequencing_result e = sequencing_expire(&s, 77, 990, 0, 0);
    ck_assert_int_eq(e.action, SEQUENCING_APPENDED);
    ck_assert_uint_eq(e.lsn, 4);
    ck_assert_uint_eq(s.wal.durable_lsn, 0); /* nothing durable before the commit */
    ck_assert_uint_gt(s.wal.batch_used, 0); /* still in memory */
    u32 n;
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(s.wal.durable_lsn, 4);
    ck_assert_uint_eq(io_fault_unsynced_bytes(fs, DIR "/wal-00000000000000000001.log"), 0);
    for (u32 i = 0; i < n; i++) { /* the frames to publish, in LSN order, stamped with slot 1000 */
        struct wal_frame f;
        ck_assert_int_eq(wal_frame_decode_exact(batch[i].bytes, batch[i].len, &f), WAL_FRAME_OK);
        ck_assert_uint_eq(f.lsn, i + 1);
        ck_assert_uint_eq(f.request_slot, 1000);
    }
    ck_assert_uint_eq(s.batch_count, 0);
}
END_TEST

START_TEST(test_retry_inside_and_outside_the_cache)
{
    struct sm_command a = reserve(1, 100);
    struct sequencing_result r = sequencing_write(&s, &a, false, 0, 0);
    ck_assert_int_eq(r.action, SEQUENCING_APPENDED);
    /* Logged but not yet durable: a retry is logged again (the state machine dedupes it). */
    ck_assert_int_eq(sequencing_write(&s, &a, false, 0, 0).action, SEQUENCING_APPENDED);
    u32 n;
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    /* Durable: answered from LSN 1 without a frame. */
    r = sequencing_write(&s, &a, false, 0, 0);
    ck_assert_int_eq(r.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_uint_eq(r.lsn, 1);
    ck_assert_uint_eq(s.batch_count, 0);
    /* The ingress forces logging (the applier did not find the record): a frame. */
    ck_assert_int_eq(sequencing_write(&s, &a, true, 0, 0).action, SEQUENCING_APPENDED);
    /* The same id with another command: logged, the state machine answers operation_conflict. */
    struct sm_command b = reserve(1, 101);
    ck_assert_int_eq(sequencing_write(&s, &b, false, 0, 0).action, SEQUENCING_APPENDED);
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    /* Late in the window (fewer than 11 slots left): logged. */
    ck_assert_int_eq(sequencing_write(&s, &a, false, (WINDOW - 10) * 100, 0).action, SEQUENCING_APPENDED);
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    /* Past the window: the entry retired, the id is new again (and cached anew). */
    ck_assert_int_eq(sequencing_write(&s, &a, false, (WINDOW + 2) * 100, 0).action, SEQUENCING_APPENDED);
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    r = sequencing_write(&s, &a, false, (WINDOW + 2) * 100, 0);
    ck_assert_int_eq(r.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_uint_eq(r.lsn, s.wal.durable_lsn);
}
END_TEST

START_TEST(test_lsn_exhausted)
{
    struct sm_command a = reserve(1, 100);
    s.wal.cur.next_lsn = UINT64_MAX; /* the last LSN was used */
    ck_assert_int_eq(sequencing_write(&s, &a, false, 0, 0).action, SEQUENCING_REJECT_EXHAUSTED);
    ck_assert_uint_eq(s.batch_count, 0);
}
END_TEST

START_TEST(test_a_failed_fsync_stops_the_log)
{
    write_range(1, 3, 3, 0);
    struct sm_command c = reserve(4, 104);
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 0).action, SEQUENCING_APPENDED);
    io_fault_fail_sync(fs, 1, -EIO);
    u32 n = 99;
    ck_assert_int_eq(sequencing_commit(&s, &n), -EIO);
    ck_assert_uint_eq(n, 0);               /* nothing to publish */
    ck_assert_uint_eq(s.batch_count, 1);   /* one write to answer indefinite */
    ck_assert_uint_eq(s.wal.durable_lsn, 3);
    struct sm_command d = reserve(5, 105);
    struct sequencing_result r = sequencing_write(&s, &d, false, 0, 0);
    ck_assert_int_eq(r.action, SEQUENCING_STORAGE_FAILED); /* halted: never written after a failed fsync */
    ck_assert_int_lt(r.rc, 0);
}
END_TEST

START_TEST(test_full_disk_refuses_and_tries_again)
{
    /* Fill the first segment up to the frame that needs the next one. */
    u32 op = 1;
    struct sm_command c = reserve(op, 100);
    u32 size = wal_frame_size(wal_cmd_size(&c));
    for (; s.wal.batch_offset + s.wal.batch_used + size <= SEGMENT; op++)
        write_range(op, op, 1, 0);
    /* The next segment cannot be created at t=5000: refused (definite), nothing logged, the
     * log goes on; an expiration is dropped meanwhile (proposed again later, never early). */
    io_fault_fail_write(fs, 1, -ENOSPC);
    c = reserve(op, 100 + op);
    u64 last = s.wal.durable_lsn;
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 5000).action, SEQUENCING_REFUSE_NO_SPACE);
    ck_assert(sequencing_writes_refused(&s));
    ck_assert_int_eq(sequencing_space_level(&s), 2);
    ck_assert_int_eq(s.no_space_rc, -ENOSPC);
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 5999).action, SEQUENCING_REFUSE_NO_SPACE);
    ck_assert_int_eq(sequencing_expire(&s, 1, 990, 0, 5999).action, SEQUENCING_DROPPED);
    /* A retry is still answered from the cache while writes are refused. */
    struct sm_command first = reserve(1, 101);
    ck_assert_int_eq(sequencing_write(&s, &first, false, 0, 5999).action, SEQUENCING_ANSWER_RETRY);
    /* Once the retry interval has passed, one write tries to grow again: still full. */
    io_fault_fail_write(fs, 1, -ENOSPC);
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 6000).action, SEQUENCING_REFUSE_NO_SPACE);
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 6999).action, SEQUENCING_REFUSE_NO_SPACE);
    ck_assert_uint_eq(s.wal.cur.next_lsn, last + 1); /* no LSN was used by any of it */
    /* Space returned: the next try rolls and logs it, writes flow again. */
    struct sequencing_result r = sequencing_write(&s, &c, false, 0, 7000);
    ck_assert_int_eq(r.action, SEQUENCING_APPENDED);
    ck_assert_uint_eq(r.lsn, last + 1);
    ck_assert_int_eq(sequencing_space_level(&s), 0);
    ck_assert_int_eq(sequencing_expire(&s, 1, 990, 0, 7000).action, SEQUENCING_APPENDED);
    /* The metadata cannot grow: every new write is refused, whatever the time. */
    sequencing_space(&s, SEQUENCING_META, true, 8000);
    struct sm_command b = reserve(1000, 100);
    ck_assert_int_eq(sequencing_write(&s, &b, false, 0, 100000).action, SEQUENCING_REFUSE_NO_SPACE);
    sequencing_space(&s, SEQUENCING_META, false, 9000);
    ck_assert_int_eq(sequencing_write(&s, &b, false, 0, 100000).action, SEQUENCING_APPENDED);
}
END_TEST

START_TEST(test_spare_that_cannot_grow_only_warns)
{
    io_fault_fail_write(fs, 1, -ENOSPC);
    ck_assert_int_eq(sequencing_prepare(&s, SEGMENT, 1000), 0);
    ck_assert_int_eq(sequencing_space_level(&s), 1);
    ck_assert(!sequencing_writes_refused(&s));
    struct sm_command c = reserve(1, 100);
    ck_assert_int_eq(sequencing_write(&s, &c, false, 0, 1000).action, SEQUENCING_APPENDED);
    /* Not tried again before the retry interval (a failing write would show it). */
    io_fault_fail_write(fs, 1, -EIO);
    ck_assert_int_eq(sequencing_prepare(&s, SEGMENT, 1999), 0);
    u32 n;
    ck_assert_int_eq(sequencing_commit(&s, &n), -EIO); /* the planned failure hit the commit instead */
    new_process();
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 0 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    start(&seen, &r, &rep, &v);
    ck_assert_int_eq(sequencing_prepare(&s, SEGMENT, 3000), 0); /* room again: prepared */
    ck_assert_int_eq(sequencing_space_level(&s), 0);
    ck_assert(s.wal.spare_ready);
}
END_TEST

/* ---- restart reconciliation -------------------------------------------------------------- */

START_TEST(test_restart_publishes_durable_unpublished_frames)
{
    write_range(1, 6, 6, 0);
    write_range(7, 10, 4, 0);
    /* Crashed after the fsync of batch 7..10, before publishing any of it; a snapshot at 8
     * exists (the applier cannot be past 6, but the file name is all the sequencer sees). */
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 6, .newest_snapshot_lsn = 8,
                                       .meta_commit_lsn = 3 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    struct sequencing_open plan = start(&seen, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_OPENED);
    ck_assert(!plan.first_start);
    ck_assert_uint_eq(plan.read_from_lsn, 7); /* not after the snapshot: 7 and 8 must be read */
    ck_assert_uint_eq(plan.synced_lsn, 6);    /* published only once durable */
    ck_assert_uint_eq(r.count, 4);
    for (u32 i = 0; i < r.count; i++)
        ck_assert_uint_eq(r.lsns[i], 7 + i);
    /* The cache learned what was read: a retry of LSN 9's command is answered. */
    struct sm_command c9 = reserve(9, 109);
    struct sequencing_result w = sequencing_write(&s, &c9, false, 0, 0);
    ck_assert_int_eq(w.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_uint_eq(w.lsn, 9);
    /* An LSN is never reused: the log goes on after the last durable frame. */
    struct sm_command c11 = reserve(11, 111);
    ck_assert_uint_eq(sequencing_write(&s, &c11, false, 0, 0).lsn, 11);
}
END_TEST

START_TEST(test_restart_after_a_partly_published_batch)
{
    write_range(1, 6, 6, 0);
    write_range(7, 10, 4, 0);
    /* The crash came while publishing the second batch: 7 and 8 reached the shared log,
     * published_lsn still says 6. */
    u64 shlog[32];
    u32 n = 0;
    for (u64 l = 1; l <= 8; l++)
        shlog[n++] = l;
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 6, .meta_commit_lsn = 6 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    start(&seen, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_OPENED);
    ck_assert_uint_eq(r.count, 4);
    for (u32 i = 0; i < r.count; i++)
        shlog[n++] = r.lsns[i];
    /* The applier (it had applied up to 5 when the sequencer died) sees 1..8, 7..10: every LSN
     * applied exactly once, in order, and no gap is reported. */
    u64 applied = 5, applied_slot = 1000, times[11] = { 0 };
    for (u32 i = 0; i < n; i++) {
        enum apply_entry e = apply_policy_entry(applied, applied_slot, shlog[i], 1000);
        ck_assert_int_ne(e, APPLY_ENTRY_GAP);
        if (e == APPLY_ENTRY_APPLY) {
            applied = shlog[i];
            times[applied]++;
        }
    }
    ck_assert_uint_eq(applied, 10);
    for (u32 l = 6; l <= 10; l++)
        ck_assert_uint_eq(times[l], 1);
}
END_TEST

START_TEST(test_first_start_publishes_nothing)
{
    write_range(1, 10, 5, 0);
    struct sequencing_restart seen = { .ever_ready = false, .published_lsn = 0, .newest_snapshot_lsn = 4,
                                       .meta_commit_lsn = 2 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    struct sequencing_open plan = start(&seen, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_OPENED);
    ck_assert(plan.first_start);
    ck_assert_uint_eq(plan.read_from_lsn, 5); /* after the snapshot only */
    ck_assert_uint_eq(plan.synced_lsn, 2);    /* only the metadata's commit point is known */
    ck_assert_uint_eq(r.count, 0);            /* the applier recovers from disk itself */
}
END_TEST

START_TEST(test_restart_refuses_a_short_wal)
{
    write_range(1, 10, 10, 0);
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 12, .meta_commit_lsn = 9 };
    struct republished r;
    struct wal_open_report rep;
    enum sequencing_opened v;
    start(&seen, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_WAL_BEHIND_SHARED_LOG);
    struct sequencing_restart meta = { .ever_ready = false, .meta_commit_lsn = 11 };
    start(&meta, &r, &rep, &v);
    ck_assert_int_eq(v, SEQUENCING_META_AHEAD_OF_WAL);
}
END_TEST

/* ---- slots ------------------------------------------------------------------------------- */

START_TEST(test_slot_never_backwards)
{
    /* A predecessor whose timeline ran ahead logged an entry at slot 1500. */
    sequencing_join_clock(&s, 150000, 0, 0);
    ck_assert_int_eq(sequencing_expire(&s, 1, 990, 0, 0).action, SEQUENCING_APPENDED);
    u32 n;
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    /* Restarted on a timeline that says slot 1000: the WAL's last slot is the floor, so nothing
     * is stamped below 1500 ... */
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 1 };
    struct republished rp;
    struct wal_open_report rep;
    enum sequencing_opened v;
    start(&seen, &rp, &rep, &v);
    ck_assert_uint_eq(rep.last_slot, 1500);
    ck_assert_uint_eq(sequencing_slot(&s, 0), 1500);
    struct sm_command c = reserve(1, 100);
    struct sequencing_result r = sequencing_write(&s, &c, false, 0, 0);
    ck_assert_int_eq(r.action, SEQUENCING_APPENDED);
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(batch[r.index].bytes, batch[r.index].len, &f), WAL_FRAME_OK);
    ck_assert_uint_eq(f.request_slot, 1500);
    ck_assert_int_eq(sequencing_commit(&s, &n), 0);
    /* ... and a clock reading from before (a caller's older sample) changes nothing. */
    ck_assert_uint_eq(sequencing_slot(&s, 0), 1500);
    ck_assert_uint_eq(sequencing_slot(&s, 60000), 1600); /* then it advances with the boot clock */
    /* What was logged raises the floor: an entry at 1600, then an older clock sample. */
    struct sm_command d = reserve(2, 100);
    ck_assert_int_eq(sequencing_write(&s, &d, false, 60000, 0).action, SEQUENCING_APPENDED);
    ck_assert_uint_eq(sequencing_slot(&s, 0), 1600);
    /* A daemon restart in the same boot from an anchor whose clock is behind the log. */
    struct clock_anchor saved = { .logical_ms = 150000, .wall_ms = 1000000, .boot_ms = 5000, .boot_id = 77 };
    struct clock_reading now = { .wall_ms = 1001000, .boot_ms = 6000, .boot_id = 77 };
    sequencing_start_clock(&s, 2000, &saved, &now);
    ck_assert_uint_ge(sequencing_slot(&s, 6000), 2000);
}
END_TEST

START_TEST(test_slot_ignores_a_wall_clock_step)
{
    /* The daemon restarts 1 s after its anchor (same boot), and meanwhile the wall clock was
     * stepped one hour forward: the slot follows the boot clock, not the step. */
    struct clock_anchor saved = { .logical_ms = 500000, .wall_ms = 1000000, .boot_ms = 5000, .boot_id = 77 };
    struct clock_reading now = { .wall_ms = 1001000 + 3600000, .boot_ms = 6000, .boot_id = 77 };
    sequencing_start_clock(&s, 0, &saved, &now);
    ck_assert_uint_eq(sequencing_slot(&s, 6000), 5010);
    /* And one stepped back an hour changes nothing either. */
    now.wall_ms = 1001000 - 3600000;
    sequencing_start_clock(&s, 0, &saved, &now);
    ck_assert_uint_eq(sequencing_slot(&s, 6000), 5010);
}
END_TEST

/* ---- maintenance ------------------------------------------------------------------------- */

START_TEST(test_commit_point_timing)
{
    s.meta_commit = 10; /* as the metadata said at start */
    u64 lsn = 0;
    ck_assert(sequencing_commit_due(&s, 1000, 12, &lsn)); /* the WAL moved: once per interval */
    ck_assert_uint_eq(lsn, 12);
    sequencing_committed(&s, 12);
    ck_assert(!sequencing_commit_due(&s, 1999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 2000, 15, &lsn));
    sequencing_committed(&s, 15);
    /* Idle: only the clock anchor needs refreshing, once per idle interval. */
    ck_assert(!sequencing_commit_due(&s, 61999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 62000, 15, &lsn));
    ck_assert_uint_eq(lsn, 15);
    /* Never backwards, even if asked with an older durable point. */
    ck_assert(sequencing_commit_due(&s, 200000, 3, &lsn));
    ck_assert_uint_eq(lsn, 15);
    /* The metadata could not grow: retried every space interval. */
    sequencing_space(&s, SEQUENCING_META, true, 200000);
    ck_assert(!sequencing_commit_due(&s, 200999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 201000, 15, &lsn));
}
END_TEST

START_TEST(test_snapshot_anchor_and_backoff)
{
    s.meta_commit = 100; /* as the metadata said at start */
    s.meta_snapshot = 50;
    ck_assert(!sequencing_anchor_due(&s, 0, 50));  /* not newer */
    ck_assert(!sequencing_anchor_due(&s, 0, 101)); /* never past the commit point */
    ck_assert(sequencing_anchor_due(&s, 0, 100));
    /* Failures back off 1 s, 2 s, 4 s ... up to 30 s. */
    ck_assert_uint_eq(sequencing_meta_failed(&s, 0), 1000);
    ck_assert(!sequencing_anchor_due(&s, 999, 100));
    ck_assert(!sequencing_meta_open_due(&s, 999));
    ck_assert(sequencing_meta_open_due(&s, 1000));
    ck_assert_uint_eq(sequencing_meta_failed(&s, 1000), 2000);
    ck_assert_uint_eq(sequencing_meta_failed(&s, 3000), 4000);
    for (int i = 0; i < 10; i++)
        sequencing_meta_failed(&s, 10000);
    ck_assert_uint_eq(s.meta_backoff_ms, 30000);
    ck_assert(sequencing_anchor_due(&s, 40000, 100));
    sequencing_anchored(&s, 100);
    ck_assert(!sequencing_anchor_due(&s, 40000, 100));
    ck_assert_uint_eq(sequencing_meta_failed(&s, 50000), 1000); /* a success reset it */
}
END_TEST

START_TEST(test_prune_only_forward)
{
    /* Segments of ~40 frames: 200 frames fill five. */
    write_range(1, 200, 20, 0);
    ck_assert_uint_ge(s.wal.segment_count, 5);
    u32 removed = 99;
    ck_assert_int_eq(sequencing_prune(&s, 0, &removed), 0);
    ck_assert_uint_eq(removed, 0);
    u32 before = s.wal.segment_count;
    ck_assert_int_eq(sequencing_prune(&s, 120, &removed), 0);
    ck_assert_uint_gt(removed, 0);
    ck_assert_uint_eq(s.wal.segment_count, before - removed);
    ck_assert_uint_le(s.wal.segments[0].first_lsn, 120); /* LSN 120 on is kept */
    ck_assert_uint_eq(s.pruned_below, 120);
    ck_assert_int_eq(sequencing_prune(&s, 100, &removed), 0); /* never backwards */
    ck_assert_uint_eq(removed, 0);
    ck_assert_uint_eq(s.pruned_below, 120);
}
END_TEST

Suite *test_suite(void)
{
    Suite *su = suite_create("sequencing");
    TCase *tc = tcase_create("sequencing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_batch_limit);
    tcase_add_test(tc, test_a_batch_is_published_only_once_durable);
    tcase_add_test(tc, test_retry_inside_and_outside_the_cache);
    tcase_add_test(tc, test_lsn_exhausted);
    tcase_add_test(tc, test_a_failed_fsync_stops_the_log);
    tcase_add_test(tc, test_full_disk_refuses_and_tries_again);
    tcase_add_test(tc, test_spare_that_cannot_grow_only_warns);
    tcase_add_test(tc, test_restart_publishes_durable_unpublished_frames);
    tcase_add_test(tc, test_restart_after_a_partly_published_batch);
    tcase_add_test(tc, test_first_start_publishes_nothing);
    tcase_add_test(tc, test_restart_refuses_a_short_wal);
    tcase_add_test(tc, test_slot_never_backwards);
    tcase_add_test(tc, test_slot_ignores_a_wall_clock_step);
    tcase_add_test(tc, test_commit_point_timing);
    tcase_add_test(tc, test_snapshot_anchor_and_backoff);
    tcase_add_test(tc, test_prune_only_forward);
    suite_add_tcase(su, tc);
    return su;
}
